//! `laptop-dc`: a data center on a laptop, from an environment file, on local QEMU VMs.
//!
//! ```text
//! laptop-dc up FILE               create what is missing, start what is stopped, wait for IPs
//! laptop-dc status FILE           the state of every VM in the file
//! laptop-dc ssh FILE VM -- CMD    run CMD in VM over SSH
//! laptop-dc down FILE             stop and destroy every VM in the file
//! ```
//!
//! VMs live under `$VMENV_ROOT` (default `/tmp/vmenv-<user>`: QMP socket paths must stay short).
//! The `tiny` template is the SDK's test guest, built on first use from Debian packages by
//! `vmenv-core/guest/build.sh` (needs `qemu-system-x86`, `qemu-utils`, `genisoimage`,
//! `busybox-static`, `cpio`, `openssh-client`; see `ci/apt-packages.txt`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use vmenv_core::env::{self, Environment};
use vmenv_core::qemu::{QemuConfig, QemuHypervisor, Template};
use vmenv_core::{Event, Hypervisor, VmName};

const USAGE: &str = "usage: laptop-dc up FILE | status FILE | ssh FILE VM -- CMD | down FILE";

fn root() -> PathBuf {
    std::env::var_os("VMENV_ROOT").map_or_else(
        || {
            let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
            std::env::temp_dir().join(format!("vmenv-{user}"))
        },
        PathBuf::from,
    )
}

async fn backend() -> Result<Arc<QemuHypervisor>, Box<dyn std::error::Error>> {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vmenv-guest");
    let template = Template::test_guest(&guest).await?;
    Ok(Arc::new(QemuHypervisor::new(
        QemuConfig::new(root()).with_template(template),
    )))
}

fn bar_for(
    multi: &MultiProgress,
    bars: &mut Vec<(VmName, ProgressBar)>,
    name: &VmName,
) -> ProgressBar {
    if let Some((_, b)) = bars.iter().find(|(n, _)| n == name) {
        return b.clone();
    }
    let style = ProgressStyle::with_template("{spinner} {prefix:>10} [{bar:20}] {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let b = multi.add(
        ProgressBar::new(6)
            .with_style(style)
            .with_prefix(name.to_string()),
    );
    b.enable_steady_tick(Duration::from_millis(120));
    bars.push((name.clone(), b.clone()));
    b
}

/// Draws one progress bar per VM from the event stream: created, started, boot phases, IP.
fn show_progress(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let multi = MultiProgress::new();
        let mut bars = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Creating(n) => bar_for(&multi, &mut bars, &n).set_message("creating"),
                Event::Started(n) => {
                    let b = bar_for(&multi, &mut bars, &n);
                    b.set_position(1);
                    b.set_message("booting");
                }
                Event::BootPhase(n, phase) => {
                    let b = bar_for(&multi, &mut bars, &n);
                    b.inc(1);
                    b.set_message(phase);
                }
                Event::IpAcquired(n, ip) => {
                    bar_for(&multi, &mut bars, &n).finish_with_message(format!("up, IP {ip}"));
                }
                Event::Unchanged(n) => {
                    bar_for(&multi, &mut bars, &n).finish_with_message("running, unchanged");
                }
                Event::Stopped(n) => bar_for(&multi, &mut bars, &n).set_message("stopped"),
                Event::Destroyed(n) => {
                    bar_for(&multi, &mut bars, &n).finish_with_message("destroyed");
                }
                _ => {}
            }
        }
    })
}

async fn run(args: &[String]) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (cmd, file) = match args {
        [cmd, file, ..] => (cmd.as_str(), Path::new(file)),
        _ => return Err(USAGE.into()),
    };
    let environment = Environment::load(file)?;
    let hv = backend().await?;
    match cmd {
        "up" => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let ui = show_progress(rx);
            let result = env::up(
                hv.clone(),
                &environment,
                Duration::from_secs(180),
                Some(&tx),
            )
            .await;
            drop(tx);
            ui.await?;
            result?;
            for spec in &environment.vms {
                let ssh = hv.ip(&spec.name, Duration::from_secs(5)).await?.ssh;
                print!(
                    "{}: ssh -p {} root@127.0.0.1 -i {}",
                    spec.name,
                    ssh.port(),
                    hv.ssh_key(&spec.name).display()
                );
                if let Some(url) = env::docker_endpoint(hv.as_ref(), &spec.name).await? {
                    print!("  DOCKER_HOST={url}");
                }
                println!();
            }
        }
        "status" => {
            for (name, status) in env::status(hv.as_ref(), &environment).await? {
                println!("{name:<16} {:<9} ({})", status.state.as_str(), status.raw);
            }
        }
        "down" => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let ui = show_progress(rx);
            let result = env::down(
                hv.as_ref(),
                &environment,
                Duration::from_secs(30),
                Some(&tx),
            )
            .await;
            drop(tx);
            ui.await?;
            result?;
        }
        "ssh" => {
            let (vm, command) = match &args[2..] {
                [vm, dashes, rest @ ..] if dashes == "--" && !rest.is_empty() => {
                    (vm, rest.join(" "))
                }
                _ => return Err(USAGE.into()),
            };
            let name = VmName::new(vm.as_str())?;
            if !environment.vms.iter().any(|v| v.name == name) {
                return Err(format!("{} names no VM {name}", file.display()).into());
            }
            let out = hv.require_guest_exec()?.exec(&name, &command).await?;
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            return Ok(ExitCode::from(u8::try_from(out.status).unwrap_or(1)));
        }
        _ => return Err(USAGE.into()),
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("laptop-dc: {e}");
            ExitCode::FAILURE
        }
    }
}
