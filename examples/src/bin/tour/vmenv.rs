//! The tour's chapter for `vmenv-core`: a one-VM environment comes up on real local QEMU (TCG),
//! answers over SSH with a shared folder mounted, and goes down again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmenv_core::env::{self, Environment};
use vmenv_core::qemu::{QemuConfig, QemuHypervisor, Template, qemu_available};
use vmenv_core::{Event, Hypervisor, VmName};

use crate::{ChapterResult, Outcome};

/// Tells this chapter's story.
pub(crate) fn run() -> ChapterResult {
    println!("   vmenv-core: {}", vmenv_core::CAPABILITY);
    if !qemu_available() {
        return Ok(Outcome::Skipped(
            "qemu-system-x86_64 or qemu-img is not installed (apt-get install qemu-system-x86 qemu-utils); \
             the QEMU demonstration needs them"
                .to_owned(),
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(story())
}

async fn story() -> ChapterResult {
    let started = Instant::now();
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vmenv-guest");
    println!("   Building (or reusing) the test guest from Debian packages...");
    let template = match Template::test_guest(&guest).await {
        Ok(t) => t,
        // No Debian mirror reachable, or a tool missing: say so and move on.
        Err(e) => {
            return Ok(Outcome::Skipped(format!(
                "the test guest could not be built from Debian packages: {e}"
            )));
        }
    };
    let root = std::env::temp_dir().join(format!("vmenv-tour-{}", std::process::id()));
    let share = root.join("share");
    std::fs::create_dir_all(&share)?;
    std::fs::write(share.join("note.txt"), "written on the laptop\n")?;
    std::fs::write(
        root.join("env.yaml"),
        "vms:\n  tour:\n    template: tiny\n    shared_folders:\n      - { name: share, host: ./share, guest: /mnt/share }\n",
    )?;
    let environment = Environment::load(&root.join("env.yaml"))?;
    let hv = Arc::new(QemuHypervisor::new(
        QemuConfig::new(&root).with_template(template),
    ));
    let caps: Vec<_> = hv
        .capabilities()
        .iter()
        .map(vmenv_core::Capability::as_str)
        .collect();
    println!("   QEMU backend (TCG) capabilities: {}", caps.join(", "));

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            match e {
                Event::Creating(n) => println!("   up: creating {n}"),
                Event::Started(n) => println!("   up: {n} started, booting"),
                Event::BootPhase(n, p) => println!("   up: {n}: {p}"),
                Event::IpAcquired(n, ip) => println!("   up: {n} has IP {ip}"),
                Event::Stopped(n) => println!("   down: {n} stopped"),
                Event::Destroyed(n) => println!("   down: {n} destroyed"),
                _ => {}
            }
        }
    });
    let result = async {
        env::up(
            hv.clone(),
            &environment,
            Duration::from_secs(120),
            Some(&tx),
        )
        .await?;
        let vm = VmName::new("tour")?;
        let out = hv
            .require_guest_exec()?
            .exec(&vm, "hostname; uname -r; cat /mnt/share/note.txt")
            .await?;
        for line in out.stdout.lines() {
            println!("   ssh tour: {line}");
        }
        env::down(
            hv.as_ref(),
            &environment,
            Duration::from_secs(20),
            Some(&tx),
        )
        .await?;
        Ok::<_, vmenv_core::Error>(())
    }
    .await;
    if result.is_err() {
        // Leave nothing running behind a failed chapter.
        let _ = env::down(hv.as_ref(), &environment, Duration::from_secs(5), None).await;
    }
    drop(tx);
    printer.await?;
    let _ = std::fs::remove_dir_all(&root);
    result?;
    println!(
        "   A VM came up, answered over SSH with a 9p share and went down in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(Outcome::Done)
}
