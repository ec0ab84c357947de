//! `fcd`: First Class Disks: create, list, attach, detach, remove.
//!
//! ```text
//! fcd [--url URL] [--insecure] create NAME --size-mb N --datastore DS   # prints the new id
//! fcd [--url URL] [--insecure] ls [--datastore DS] [--json]
//! fcd [--url URL] [--insecure] attach ID --vm PATH
//! fcd [--url URL] [--insecure] detach ID --vm PATH
//! fcd [--url URL] [--insecure] rm ID --datastore DS
//! ```
//!
//! Connection settings come from `--url` / `--insecure` or the `VSPHERE_*` environment
//! variables. `DS` and `PATH` are inventory paths, globs matching exactly one object, or
//! names. `attach` refuses a disk that any VM already has (the error names that VM).

use std::process::ExitCode;

use serde_json::json;
use vsphere_client::Error;
use vsphere_client::client::{Client, ConnectOptions, Finder, fcd_id};
use vsphere_client::codec::ManagedObjectReference;

const USAGE: &str = "usage: fcd [--url URL] [--insecure] (create NAME --size-mb N --datastore DS | ls [--datastore DS] [--json] | attach ID --vm PATH | detach ID --vm PATH | rm ID --datastore DS)";

#[derive(Debug, PartialEq)]
enum Command {
    Create {
        name: String,
        size_mb: i64,
        datastore: String,
    },
    Ls {
        datastore: Option<String>,
        json: bool,
    },
    Attach {
        id: String,
        vm: String,
    },
    Detach {
        id: String,
        vm: String,
    },
    Rm {
        id: String,
        datastore: String,
    },
}

struct Args {
    url: Option<String>,
    insecure: bool,
    command: Command,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut url = None;
    let mut insecure = false;
    let mut json = false;
    let mut size_mb = None;
    let mut datastore = None;
    let mut vm = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value("--url")?),
            "--insecure" => insecure = true,
            "--json" => json = true,
            "--size-mb" => {
                let v = value("--size-mb")?;
                size_mb = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--size-mb: {v:?} is not a positive number"))?,
                );
            }
            "--datastore" => datastore = Some(value("--datastore")?),
            "--vm" => vm = Some(value("--vm")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => positional.push(arg.clone()),
        }
    }
    let need = |v: Option<String>, what: &str| v.ok_or(format!("{what} is required\n{USAGE}"));
    let command = match positional.as_slice() {
        [c, name] if c == "create" => Command::Create {
            name: name.clone(),
            size_mb: size_mb.ok_or(format!("--size-mb is required\n{USAGE}"))?,
            datastore: need(datastore, "--datastore")?,
        },
        [c] if c == "ls" => Command::Ls { datastore, json },
        [c, id] if c == "attach" => Command::Attach {
            id: id.clone(),
            vm: need(vm, "--vm")?,
        },
        [c, id] if c == "detach" => Command::Detach {
            id: id.clone(),
            vm: need(vm, "--vm")?,
        },
        [c, id] if c == "rm" => Command::Rm {
            id: id.clone(),
            datastore: need(datastore, "--datastore")?,
        },
        _ => return Err(USAGE.to_owned()),
    };
    Ok(Args {
        url,
        insecure,
        command,
    })
}

fn options(url: Option<&str>, insecure: bool) -> Result<ConnectOptions, Error> {
    let o = ConnectOptions::from_lookup(|k| match (k, url) {
        ("VSPHERE_URL", Some(u)) => Some(u.to_owned()),
        _ => std::env::var(k).ok(),
    })?;
    let o = o.with_keepalive(None);
    Ok(if insecure { o.insecure(true) } else { o })
}

fn describe(e: &Error) -> String {
    let kind = match e {
        Error::InvalidLogin { .. } => "InvalidLogin",
        Error::NotFound { .. } => "NotFound",
        Error::Ambiguous { .. } => "Ambiguous",
        Error::AttachedElsewhere { .. } => "AttachedElsewhere",
        Error::TaskFailed { kind, .. } => kind,
        Error::Fault { fault, .. } => fault.fault_type(),
        _ => "error",
    };
    format!("fcd: {kind}: {e}")
}

/// The datastore that holds disk `id` (searching every datastore).
async fn datastore_of(
    client: &Client,
    finder: &Finder,
    id: &str,
) -> Result<ManagedObjectReference, Error> {
    let disks = client.disks()?;
    for ds in finder.all().iter().filter(|o| o.type_name() == "Datastore") {
        if disks.list(&ds.reference).await?.iter().any(|d| d == id) {
            return Ok(ds.reference.clone());
        }
    }
    Err(Error::NotFound {
        kind: "First Class Disk",
        path: id.to_owned(),
    })
}

async fn run(args: &Args) -> Result<(), Error> {
    let client = Client::connect(options(args.url.as_deref(), args.insecure)?).await?;
    let result = execute(&client, &args.command).await;
    let logout = client.logout().await;
    for line in result? {
        println!("{line}");
    }
    logout
}

/// Runs one command; returns the lines to print.
async fn execute(client: &Client, command: &Command) -> Result<Vec<String>, Error> {
    let finder = client.finder().await?;
    let disks = client.disks()?;
    let mut out = Vec::new();
    match command {
        Command::Create {
            name,
            size_mb,
            datastore,
        } => {
            let ds = finder.datastore(Some(datastore))?;
            let disk = disks.create(name, *size_mb, &ds.reference).await?;
            out.push(fcd_id(&disk).unwrap_or_default());
        }
        Command::Ls { datastore, json } => {
            let stores: Vec<_> = match datastore {
                Some(d) => vec![finder.datastore(Some(d))?],
                None => finder
                    .all()
                    .iter()
                    .filter(|o| o.type_name() == "Datastore")
                    .collect(),
            };
            for ds in stores {
                for id in disks.list(&ds.reference).await? {
                    let disk = disks.retrieve(&id, &ds.reference).await?;
                    let (name, mb) = disk.config.as_ref().map_or((String::new(), 0), |c| {
                        (c.base_config_info.name.clone(), c.capacity_in_mb)
                    });
                    if *json {
                        out.push(
                            json!({"id": id, "name": name, "capacity_mb": mb, "datastore": ds.name})
                                .to_string(),
                        );
                    } else {
                        out.push(format!("{id}\t{name}\t{mb} MB\t{}", ds.name));
                    }
                }
            }
        }
        Command::Attach { id, vm } => {
            let vm = finder.virtual_machine(vm)?;
            let ds = datastore_of(client, &finder, id).await?;
            client.vm(vm.reference.clone()).attach_disk(id, &ds).await?;
        }
        Command::Detach { id, vm } => {
            let vm = finder.virtual_machine(vm)?;
            client.vm(vm.reference.clone()).detach_disk(id).await?;
        }
        Command::Rm { id, datastore } => {
            let ds = finder.datastore(Some(datastore))?;
            disks.delete(id, &ds.reference).await?;
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
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
            eprintln!("fcd: cannot start the runtime: {e}");
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
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(&s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn commands_parse_with_their_options() {
        let a = args("--url http://x/sdk create vol --size-mb 64 --datastore ds1").unwrap();
        assert_eq!(a.url.as_deref(), Some("http://x/sdk"));
        assert_eq!(
            a.command,
            Command::Create {
                name: "vol".into(),
                size_mb: 64,
                datastore: "ds1".into()
            }
        );
        assert_eq!(
            args("ls --json").unwrap().command,
            Command::Ls {
                datastore: None,
                json: true
            }
        );
        assert!(
            args("attach abc")
                .err()
                .unwrap()
                .contains("--vm is required")
        );
        assert!(
            args("create v --size-mb -3 --datastore d")
                .err()
                .unwrap()
                .contains("positive")
        );
        assert!(args("frobnicate").is_err());
    }

    fn vcsim() -> Option<(std::process::Child, String)> {
        use std::io::BufRead as _;
        use std::process::{Command as Cmd, Stdio};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = if let Some(p) = std::env::var_os("GOVMOMI_VCSIM") {
            std::path::PathBuf::from(p)
        } else {
            let go = Cmd::new("go").arg("version").output().is_ok();
            if !go && std::env::var_os("CI").is_none() {
                eprintln!("skipping: Go is not installed and CI is unset");
                return None;
            }
            let out = Cmd::new(root.join("peers/build.sh")).output().unwrap();
            assert!(out.status.success(), "peers/build.sh failed");
            let text = String::from_utf8(out.stdout).unwrap();
            std::path::PathBuf::from(text.lines().next().unwrap().trim())
        };
        let mut child = Cmd::new(bin)
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

    /// create, ls, rm against govmomi's simulator (vcsim 0.24.2 has no AttachDisk_Task, so
    /// `attach` meets the server's fault there; the SDK's own simulator covers it).
    #[tokio::test]
    async fn create_list_remove_against_vcsim() {
        let Some((mut child, url)) = vcsim() else {
            return;
        };
        let client = Client::connect(options(Some(&url), false).unwrap())
            .await
            .unwrap();
        let created = execute(
            &client,
            &Command::Create {
                name: "t-vol".into(),
                size_mb: 16,
                datastore: "LocalDS_0".into(),
            },
        )
        .await
        .unwrap();
        let id = created.last().unwrap().clone();
        assert!(!id.is_empty());
        let ls = execute(
            &client,
            &Command::Ls {
                datastore: None,
                json: true,
            },
        )
        .await
        .unwrap();
        let row: serde_json::Value =
            serde_json::from_str(ls.iter().find(|l| l.contains(&id)).expect("listed")).unwrap();
        assert_eq!(row["name"], "t-vol");
        assert_eq!(row["capacity_mb"], 16);
        assert_eq!(row["datastore"], "LocalDS_0");
        let attach = execute(
            &client,
            &Command::Attach {
                id: id.clone(),
                vm: "/DC0/vm/DC0_H0_VM0".into(),
            },
        )
        .await;
        assert!(attach.is_err(), "vcsim 0.24.2 has no AttachDisk_Task");
        execute(
            &client,
            &Command::Rm {
                id: id.clone(),
                datastore: "/DC0/datastore/LocalDS_0".into(),
            },
        )
        .await
        .unwrap();
        let ls = execute(
            &client,
            &Command::Ls {
                datastore: Some("LocalDS_0".into()),
                json: false,
            },
        )
        .await
        .unwrap();
        assert!(!ls.iter().any(|l| l.contains(&id)));
        client.logout().await.unwrap();
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}
