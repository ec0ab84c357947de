//! `vsphere-sim`: runs the simulator standalone.
//!
//! ```text
//! vsphere-sim [--listen 127.0.0.1:0] [--user U --password P] [--tls] [--state-dir DIR]
//!             [--datacenters N --clusters N --hosts-per-cluster N --standalone-hosts N
//!              --vms-per-host N --datastores N]
//! ```
//!
//! The first line of stdout is the SDK URL with credentials (`https://...` with `--tls`, whose
//! self-signed certificate's SHA-1 and SHA-256 thumbprints go to stderr); it then serves until
//! SIGINT or SIGTERM.

use std::io::Write as _;
use std::process::ExitCode;

use vsphere_sim::{Error, InventoryShape, Simulator, SimulatorBuilder};

const USAGE: &str = "usage: vsphere-sim [--listen ADDR] [--user U --password P] [--tls] [--state-dir DIR] \
[--datacenters N --clusters N --hosts-per-cluster N --standalone-hosts N --vms-per-host N --datastores N]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<SimulatorBuilder, Error> {
    let mut b = Simulator::builder();
    let mut shape = InventoryShape::default();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let invalid = |problem: &str| Error::InvalidArgument {
            arg: flag.clone(),
            problem: problem.to_owned(),
        };
        match flag.as_str() {
            "--tls" => b = b.tls(true),
            "--listen"
            | "--state-dir"
            | "--user"
            | "--password"
            | "--datacenters"
            | "--clusters"
            | "--hosts-per-cluster"
            | "--standalone-hosts"
            | "--vms-per-host"
            | "--datastores" => {
                let value = it.next().ok_or_else(|| invalid("needs a value"))?;
                let count = || {
                    value
                        .parse::<u32>()
                        .map_err(|_| invalid("expects a whole number"))
                };
                match flag.as_str() {
                    "--listen" => {
                        b = b.listen(value.parse().map_err(|_| invalid("expects HOST:PORT"))?);
                    }
                    "--user" => b = b.user(value),
                    "--password" => b = b.password(value),
                    "--state-dir" => b = b.state_dir(value),
                    "--datacenters" => shape.datacenters = count()?,
                    "--clusters" => shape.clusters = count()?,
                    "--hosts-per-cluster" => shape.hosts_per_cluster = count()?,
                    "--standalone-hosts" => shape.standalone_hosts = count()?,
                    "--vms-per-host" => shape.vms_per_host = count()?,
                    _ => shape.datastores = count()?,
                }
            }
            _ => return Err(invalid("unknown flag")),
        }
    }
    Ok(b.shape(shape))
}

async fn stopped() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let builder = match parse_args(std::env::args().skip(1)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("vsphere-sim: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim = match builder.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vsphere-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", sim.url_with_credentials());
    if let (Ok(sha1), Ok(sha256)) = (sim.thumbprint(), sim.thumbprint_sha256()) {
        eprintln!("vsphere-sim: certificate thumbprint SHA-1 {sha1}");
        eprintln!("vsphere-sim: certificate thumbprint SHA-256 {sha256}");
    }
    let _ = out.flush();
    drop(out);
    stopped().await;
    let saved = sim.save_state();
    sim.stop().await;
    if let Err(e) = saved {
        eprintln!("vsphere-sim: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_set_the_shape_and_credentials() {
        let b = parse_args(args(
            "--user alice --password pw --vms-per-host 5 --clusters 2",
        ))
        .unwrap();
        let dbg = format!("{b:?}");
        assert!(dbg.contains("alice"));
        assert!(dbg.contains("vms_per_host: 5"));
        assert!(dbg.contains("clusters: 2"));
        assert!(!dbg.contains("pw,"));
    }

    #[test]
    fn bad_flags_are_typed_errors() {
        assert!(matches!(
            parse_args(args("--clusters many")),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            parse_args(args("--bogus")),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            parse_args(args("--listen")),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(
            format!("{:?}", parse_args(args("--state-dir /tmp/x")).unwrap()).contains("/tmp/x")
        );
        assert!(format!("{:?}", parse_args(args("--tls")).unwrap()).contains("tls: true"));
    }
}
