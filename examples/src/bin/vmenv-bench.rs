//! `vmenv-bench`: times boot-to-SSH-ready of the test guest through the library against the
//! same guest started by a bare `qemu-system-x86_64` command, and measures QEMU's memory per VM.
//!
//! ```text
//! cargo run -p examples --bin vmenv-bench [RUNS]    (default 3 runs of each)
//! ```
//!
//! "SSH-ready" is the moment the forwarded port answers with an `SSH-` banner. The library run
//! covers everything `create` + `start` + `ip` do (qcow2 overlay, SSH key, cidata seed, QEMU,
//! QMP, the wait); the bare run starts from a ready overlay and seed. Memory is QEMU's VmRSS and
//! VmHWM at SSH-ready, for `-m 256`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use vmenv_core::qemu::{QemuConfig, QemuHypervisor, Template, qemu_available};
use vmenv_core::{Hypervisor, Source, VmName, VmSpec};

fn ssh_banner(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

fn proc_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vmenv-guest");
    let template = Template::test_guest(&guest).await?;
    let boot = template
        .boot
        .clone()
        .ok_or("the test guest boots its kernel directly")?;
    let root = std::env::temp_dir().join(format!("vmenv-bench-{}", std::process::id()));
    let hv = QemuHypervisor::new(QemuConfig::new(&root).with_template(template));
    let (mut lib, mut bare, mut rss, mut hwm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        // Through the library.
        let name = VmName::new(format!("lib{i}"))?;
        let t = Instant::now();
        hv.create(&VmSpec::new(name.clone(), Source::Template("tiny".into())))
            .await?;
        hv.start(&name).await?;
        hv.ip(&name, Duration::from_secs(180)).await?;
        lib.push(t.elapsed().as_secs_f64());
        let pid = hv.pid(&name).ok_or("QEMU is not running")?;
        rss.push(proc_kb(pid, "VmRSS:") as f64 / 1024.0);
        hwm.push(proc_kb(pid, "VmHWM:") as f64 / 1024.0);
        hv.kill(&name).await?;
        hv.destroy(&name).await?;

        // Bare qemu-system-x86_64 on a ready overlay and seed (made by the library, untimed).
        let name = VmName::new(format!("bare{i}"))?;
        hv.create(&VmSpec::new(name.clone(), Source::Template("tiny".into())))
            .await?;
        let dir = root.join("vms").join(name.as_str());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-m", "256", "-smp", "1", "-machine", "q35"])
            .arg("-kernel")
            .arg(&boot.kernel)
            .arg("-initrd")
            .arg(boot.initrd.as_ref().ok_or("no initrd")?)
            .args([
                "-append",
                &boot.cmdline,
                "-display",
                "none",
                "-monitor",
                "none",
            ])
            .args(["-serial", "null", "-netdev"])
            .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"))
            .args(["-device", "virtio-net-pci,netdev=n0", "-drive"])
            .arg(format!(
                "file={},if=virtio,format=qcow2",
                dir.join("disk.qcow2").display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                dir.join("seed.iso").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let mut child = cmd.spawn()?;
        while !ssh_banner(port) {
            if t.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                return Err("the bare guest did not answer on SSH within 180 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bare.push(t.elapsed().as_secs_f64());
        child.kill()?;
        child.wait()?;
        hv.destroy(&name).await?;
        println!(
            "run {}: library {:.2} s, bare {:.2} s",
            i + 1,
            lib[i],
            bare[i]
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let (l, b) = (median(&mut lib), median(&mut bare));
    println!(
        "boot to SSH-ready, median of {runs}: library {l:.2} s, bare qemu {b:.2} s, library/bare {:.3}",
        l / b
    );
    println!(
        "QEMU memory per VM (-m 256) at SSH-ready, median: VmRSS {:.0} MiB, VmHWM {:.0} MiB",
        median(&mut rss),
        median(&mut hwm)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    if !qemu_available() {
        eprintln!("vmenv-bench: qemu-system-x86_64 and qemu-img are needed");
        return ExitCode::FAILURE;
    }
    let runs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    match run(runs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmenv-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
