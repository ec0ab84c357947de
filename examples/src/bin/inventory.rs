//! `inventory`: walks a vSphere inventory and prints one line per object.
//!
//! ```text
//! inventory [--url URL] [--insecure] [--json] [PATH-GLOB...]
//! ```
//!
//! Connection settings come from `--url` / `--insecure` or the `VSPHERE_URL`,
//! `VSPHERE_USERNAME`, `VSPHERE_PASSWORD`, `VSPHERE_INSECURE` and `VSPHERE_THUMBPRINT`
//! environment variables. Globs match one path element each (`/DC0/vm/*`, `*/host/*`);
//! without one, everything is listed. With `--json`, each line is a JSON object with `path`,
//! `type`, `moref` and `name`, plus `power_state`, `num_cpu`, `memory_mb` for VMs, `capacity`
//! and `free_space` for datastores and `connection_state` for hosts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::{Map, Value, json};
use vsphere_client::Error;
use vsphere_client::client::{Client, ConnectOptions, InventoryObject, Properties};
use vsphere_client::codec::Any;

struct Args {
    url: Option<String>,
    insecure: bool,
    json: bool,
    patterns: Vec<String>,
}

const USAGE: &str = "usage: inventory [--url URL] [--insecure] [--json] [PATH-GLOB...]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: None,
        insecure: false,
        json: false,
        patterns: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--url" => a.url = Some(it.next().ok_or("--url needs a value")?),
            "--insecure" => a.insecure = true,
            "--json" => a.json = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => a.patterns.push(arg),
        }
    }
    Ok(a)
}

/// Connection options from `--url`/`--insecure` over the `VSPHERE_*` environment.
fn options(url: Option<&str>, insecure: bool) -> Result<ConnectOptions, Error> {
    let o = ConnectOptions::from_lookup(|k| match (k, url) {
        ("VSPHERE_URL", Some(u)) => Some(u.to_owned()),
        _ => std::env::var(k).ok(),
    })?;
    Ok(if insecure { o.insecure(true) } else { o })
}

/// An error line that names the fault kind (`InvalidLogin`, `NotFound`, ...).
fn describe(e: &Error) -> String {
    let kind = match e {
        Error::InvalidLogin { .. } => "InvalidLogin",
        Error::NotFound { .. } => "NotFound",
        Error::Ambiguous { .. } => "Ambiguous",
        Error::Fault { fault, .. } => fault.fault_type(),
        _ => "error",
    };
    format!("inventory: {kind}: {e}")
}

fn scalar(v: &Any) -> Value {
    match v {
        Any::Bool(b) => json!(b),
        Any::Int(i) => json!(i),
        Any::Long(i) => json!(i),
        Any::Short(i) => json!(i),
        Any::String(s) => json!(s),
        Any::Enum(e) => json!(e.as_str()),
        Any::MoRef(r) => json!(r.value),
        _ => Value::Null,
    }
}

/// The extra properties printed per type: (property path, output key).
fn extras(type_name: &str) -> &'static [(&'static str, &'static str)] {
    match type_name {
        "VirtualMachine" => &[
            ("runtime.powerState", "power_state"),
            ("config.hardware.numCPU", "num_cpu"),
            ("config.hardware.memoryMB", "memory_mb"),
        ],
        "Datastore" => &[
            ("summary.capacity", "capacity"),
            ("summary.freeSpace", "free_space"),
        ],
        "HostSystem" => &[("runtime.connectionState", "connection_state")],
        _ => &[],
    }
}

async fn run(args: &Args) -> Result<(), Error> {
    let opts = options(args.url.as_deref(), args.insecure)?.with_keepalive(None);
    let client = Client::connect(opts).await?;
    let lines = listing(&client, &args.patterns, args.json).await;
    let logout = client.logout().await;
    let mut out = std::io::stdout().lock();
    for line in lines? {
        use std::io::Write as _;
        if writeln!(out, "{line}").is_err() {
            break; // the reader went away (a closed pipe)
        }
    }
    logout
}

/// The output lines for the objects matching `patterns` (everything when empty).
async fn listing(client: &Client, patterns: &[String], json: bool) -> Result<Vec<String>, Error> {
    let finder = client.finder().await?;
    let mut selected: Vec<&InventoryObject> = Vec::new();
    if patterns.is_empty() {
        selected.extend(finder.all().iter().filter(|o| o.parent.is_some()));
    } else {
        for p in patterns {
            let found = finder.find(p);
            if found.is_empty() {
                return Err(Error::NotFound {
                    kind: "inventory object",
                    path: p.clone(),
                });
            }
            for o in found {
                if !selected.contains(&o) {
                    selected.push(o);
                }
            }
        }
    }
    // One retrieval per type with extra properties.
    let mut details: HashMap<(String, String), Properties> = HashMap::new();
    for type_name in ["VirtualMachine", "Datastore", "HostSystem"] {
        let refs: Vec<_> = selected
            .iter()
            .filter(|o| o.type_name() == type_name)
            .map(|o| o.reference.clone())
            .collect();
        if refs.is_empty() {
            continue;
        }
        let paths: Vec<&str> = extras(type_name).iter().map(|(p, _)| *p).collect();
        for p in client.properties_of(type_name, refs, &paths).await? {
            let r = p.reference();
            details.insert((r.type_.clone(), r.value.clone()), p);
        }
    }
    let mut lines = Vec::with_capacity(selected.len());
    for o in selected {
        let mut obj = Map::new();
        obj.insert("path".into(), json!(o.path));
        obj.insert("type".into(), json!(o.type_name()));
        obj.insert("moref".into(), json!(o.reference.value));
        obj.insert("name".into(), json!(o.name));
        if let Some(p) = details.get(&(o.reference.type_.clone(), o.reference.value.clone())) {
            for (path, key) in extras(o.type_name()) {
                if let Some(v) = p.raw(path) {
                    obj.insert((*key).into(), scalar(v));
                }
            }
        }
        lines.push(if json {
            Value::Object(obj).to_string()
        } else {
            let mut s = format!("{}\t{}\t{}", o.path, o.type_name(), o.reference.value);
            for (_, key) in extras(o.type_name()) {
                if let Some(v) = obj.get(*key) {
                    let _ = write!(s, "\t{key}={}", v.to_string().trim_matches('"'));
                }
            }
            s
        });
    }
    Ok(lines)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("inventory: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    //! The listing against govmomi's simulator (vcsim, built by `peers/build.sh`): skipped
    //! with a reason when Go is absent and `CI` is unset.

    use super::*;
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    fn vcsim() -> Option<(std::process::Child, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = if let Some(p) = std::env::var_os("GOVMOMI_VCSIM") {
            std::path::PathBuf::from(p)
        } else {
            let go = Command::new("go").arg("version").output().is_ok();
            if !go && std::env::var_os("CI").is_none() {
                eprintln!("skipping: Go is not installed and CI is unset");
                return None;
            }
            let out = Command::new(root.join("peers/build.sh")).output().unwrap();
            assert!(out.status.success(), "peers/build.sh failed");
            let text = String::from_utf8(out.stdout).unwrap();
            std::path::PathBuf::from(text.lines().next().unwrap().trim())
        };
        let mut child = Command::new(bin)
            .args(["-listen", "127.0.0.1:0", "-exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut url = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        Some((child, url.trim().to_owned()))
    }

    #[tokio::test]
    async fn lists_the_vcsim_inventory_as_json() {
        let Some((mut child, url)) = vcsim() else {
            return;
        };
        let opts = options(Some(&url), false).unwrap().with_keepalive(None);
        let client = Client::connect(opts).await.unwrap();
        let lines = listing(&client, &[], true).await.unwrap();
        let objs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let of = |t: &str| objs.iter().filter(|o| o["type"] == t).collect::<Vec<_>>();
        assert_eq!(of("Datacenter").len(), 1);
        assert_eq!(of("HostSystem").len(), 4);
        let vms = of("VirtualMachine");
        assert_eq!(vms.len(), 4);
        for vm in vms {
            assert!(vm["path"].as_str().unwrap().starts_with("/DC0/vm/"));
            assert_eq!(vm["power_state"], "poweredOn");
            assert!(vm["num_cpu"].as_i64().unwrap() >= 1);
            assert!(vm["memory_mb"].as_i64().unwrap() >= 1);
        }
        let ds = &of("Datastore")[0];
        assert!(ds["capacity"].as_i64().unwrap() >= ds["free_space"].as_i64().unwrap());
        assert_eq!(of("HostSystem")[0]["connection_state"], "connected");
        // Globs select; a glob that matches nothing is a typed error.
        let hosts = listing(&client, &["*/host/*".to_owned()], false)
            .await
            .unwrap();
        assert_eq!(hosts.len(), 2, "{hosts:?}");
        assert!(matches!(
            listing(&client, &["/nope/*".to_owned()], false).await,
            Err(Error::NotFound { .. })
        ));
        client.logout().await.unwrap();
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}
