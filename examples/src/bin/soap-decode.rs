//! Decodes `RetrievePropertiesEx` response envelopes fully into typed values, and times it.
//!
//! ```text
//! soap-decode [--repeat N] [--stats] FILE...
//! ```
//!
//! For each file it prints the number of objects and properties, the size, the best decode
//! time over N repeats and the throughput. With `--stats` it prints one JSON object per file:
//! `{"file":..., "objects":N, "properties":M, "types":{"VirtualDisk":n, ...}}`, where `types`
//! counts every decoded data object by the type it decoded as (an unknown subtype counts as
//! the base it decoded to). A file that does not decode is reported and the exit code is 1.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vsphere_client::codec::{DataObject, Visitor, walk};
use vsphere_client::mo::methods::RETRIEVE_PROPERTIES_EX;
use vsphere_client::rpc;
use vsphere_client::types::RetrieveResult;

struct Args {
    repeat: u32,
    stats: bool,
    files: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        repeat: 1,
        stats: false,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--repeat" => {
                let n = it.next().ok_or("--repeat needs a number")?;
                args.repeat = n.parse().map_err(|_| format!("bad --repeat {n}"))?;
                if args.repeat == 0 {
                    return Err("--repeat must be at least 1".into());
                }
            }
            "--stats" => args.stats = true,
            "-h" | "--help" => return Err(String::new()),
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            f => args.files.push(f.to_owned()),
        }
    }
    if args.files.is_empty() {
        return Err("no FILE given".into());
    }
    Ok(args)
}

/// Counts decoded data objects by type name.
#[derive(Default)]
struct Census(BTreeMap<&'static str, u64>);

impl Visitor for Census {
    fn visit(&mut self, object: &dyn DataObject) {
        *self.0.entry(object.type_name()).or_default() += 1;
    }
}

fn decode(body: &str) -> Result<Option<RetrieveResult>, vsphere_client::Error> {
    rpc::opt::<RetrieveResult>(body, &RETRIEVE_PROPERTIES_EX)
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn run_file(path: &str, args: &Args) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let body = std::str::from_utf8(&bytes).map_err(|e| format!("{path}: not UTF-8: {e}"))?;
    let mut best = Duration::MAX;
    let mut result = None;
    for _ in 0..args.repeat {
        let t = Instant::now();
        let r = decode(body).map_err(|e| format!("{path}: {}", error_chain(&e)))?;
        best = best.min(t.elapsed());
        result = Some(r);
    }
    let result = result.flatten();
    let objects = result.as_ref().map_or(0, |r| r.objects.len());
    let properties: usize = result
        .as_ref()
        .map_or(0, |r| r.objects.iter().map(|o| o.prop_set.len()).sum());
    if args.stats {
        let mut census = Census::default();
        if let Some(r) = &result {
            walk(r, &mut census);
        }
        let types: Vec<String> = census
            .0
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_str(k)))
            .collect();
        println!(
            "{{\"file\":{},\"objects\":{objects},\"properties\":{properties},\"types\":{{{}}}}}",
            json_str(path),
            types.join(",")
        );
    } else {
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "{path}: {objects} objects, {properties} properties, {} bytes, best {:.3} ms of {}, {:.1} MB/s",
            bytes.len(),
            best.as_secs_f64() * 1e3,
            args.repeat,
            mb / best.as_secs_f64()
        );
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("soap-decode: {e}");
            }
            eprintln!("usage: soap-decode [--repeat N] [--stats] FILE...");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for f in &args.files {
        if let Err(e) = run_file(f, &args) {
            eprintln!("soap-decode: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
