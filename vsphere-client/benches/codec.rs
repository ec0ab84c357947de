//! Codec throughput on real `RetrievePropertiesEx` envelopes: typed decode, and encode of the
//! decoded result (the simulator's direction), timed by the binary itself.
//!
//! ```text
//! cargo bench -p vsphere-client --bench codec -- [--repeat N] [FILE...]
//! ```
//!
//! Without FILE it reads `target/payloads/vms-1000-{all,name-powerstate}.xml` (written by
//! `peers/gen-payloads.sh`). For each file it prints, for decode and for encode: the best wall
//! time over N repeats with its MB/s and objects/s (objects: `ObjectContent`s, one per VM), and
//! the mean over the run measured in this thread's CPU time, which a shared, loaded machine
//! disturbs less than wall time. Encode throughput counts the bytes it writes.
//!
//! The encoded envelope is decoded again and must hold the same objects and properties; a
//! mismatch or a decode error exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vsphere_client::codec::{FieldMut, decode_response, encode_response};
use vsphere_client::mo::methods::RETRIEVE_PROPERTIES_EX;
use vsphere_client::types::RetrieveResult;

/// This thread's CPU time (user + system), from `/proc/thread-self/schedstat` (nanoseconds),
/// if the kernel exposes it.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn decode(body: &str) -> Result<RetrieveResult, String> {
    let f = RETRIEVE_PROPERTIES_EX
        .result
        .as_ref()
        .ok_or("RetrievePropertiesEx has no result")?;
    let mut v: Option<RetrieveResult> = None;
    decode_response(body, Some((f, FieldMut::Opt(&mut v)))).map_err(|e| format!("{e:?}"))?;
    v.ok_or_else(|| "no returnval".to_owned())
}

fn encode(r: &RetrieveResult) -> String {
    encode_response(&RETRIEVE_PROPERTIES_EX, &[&r])
}

fn counts(r: &RetrieveResult) -> (usize, usize) {
    (
        r.objects.len(),
        r.objects.iter().map(|o| o.prop_set.len()).sum(),
    )
}

/// Times `f` `repeat` times: the best wall time and the mean CPU time per run.
fn time<T>(repeat: u32, mut f: impl FnMut() -> T) -> (Duration, Option<Duration>, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    let cpu0 = thread_cpu();
    for _ in 0..repeat {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        // Dropping the previous result is not part of the next run's time.
        drop(last.replace(v));
    }
    let cpu = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) / repeat),
        _ => None,
    };
    (best, cpu, last.expect("repeat >= 1"))
}

fn line(what: &str, bytes: usize, objects: usize, best: Duration, cpu: Option<Duration>) {
    let rate = |d: Duration| {
        let s = d.as_secs_f64();
        format!(
            "{:.3} ms, {:.1} MB/s, {:.0} objects/s",
            s * 1e3,
            bytes as f64 / 1e6 / s,
            objects as f64 / s
        )
    };
    let cpu = cpu.map_or_else(|| "n/a".to_owned(), rate);
    println!("  {what}: best wall {}; mean CPU {cpu}", rate(best));
}

fn run(path: &Path, repeat: u32) -> Result<(), String> {
    let body = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (best, cpu, result) = time(repeat, || decode(&body));
    let result = result?;
    let (objects, properties) = counts(&result);
    println!(
        "{}: {} bytes, {objects} objects, {properties} properties, {repeat} repeats",
        path.display(),
        body.len()
    );
    line("decode", body.len(), objects, best, cpu);
    let (best, cpu, xml) = time(repeat, || encode(&result));
    line("encode", xml.len(), objects, best, cpu);
    let again = decode(&xml).map_err(|e| format!("re-decoding the encoded envelope: {e}"))?;
    if counts(&again) != (objects, properties) {
        return Err(format!(
            "the encoded envelope decodes to {:?} objects/properties, not {:?}",
            counts(&again),
            (objects, properties)
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut repeat = 10;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repeat" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => repeat = n,
                _ => {
                    eprintln!("codec bench: --repeat needs a positive number");
                    return ExitCode::from(2);
                }
            },
            // `cargo bench` passes `--bench`; other libtest flags are not ours.
            "--bench" => {}
            f if f.starts_with("--") => {
                eprintln!("codec bench: unknown option {f}");
                return ExitCode::from(2);
            }
            f => files.push(PathBuf::from(f)),
        }
    }
    if files.is_empty() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/payloads");
        files = ["vms-1000-all.xml", "vms-1000-name-powerstate.xml"]
            .iter()
            .map(|f| dir.join(f))
            .collect();
    }
    let mut failed = false;
    for f in &files {
        if let Err(e) = run(f, repeat) {
            eprintln!("codec bench: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
