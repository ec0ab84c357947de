//! Listing many VMs with five properties from govmomi's vCenter simulator, through a
//! ContainerView and the paged retrieval stream, beside govmomi's own client on the same
//! simulator and the same request. Timed by the binary itself.
//!
//! ```text
//! cargo bench -p vsphere-client --bench list_vms -- [--vms 10000] [--repeat 3] [--url URL]
//! ```
//!
//! It starts `vcsim -vms N` (`GOVMOMI_VCSIM`, or `target/peers/bin/vcsim` from
//! `peers/build.sh`) unless `--url` names a running one, then, `--repeat` times each:
//!
//! - Rust: create a `ContainerView` of every `VirtualMachine` from the root folder, stream
//!   `RetrievePropertiesEx` pages (`maxObjects` 1000) of `name`, `runtime.powerState`,
//!   `config.hardware.numCPU`, `config.hardware.memoryMB`, `summary.config.guestFullName`,
//!   decode each object into a typed row, destroy the view;
//! - govmomi: `rpex list -n-props 5` (the same five properties through
//!   `ContainerView.Retrieve` into `[]mo.VirtualMachine`: create view, retrieve, destroy).
//!
//! Both report the best wall time and the best client CPU time (this process's user + system
//! time from `/proc/self/stat`; rpex uses `getrusage`; vcsim is another process), in total and
//! per object. The Rust side runs on a current-thread Tokio runtime.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use vsphere_client::client::{Client, ConnectOptions, Properties};
use vsphere_client::types::VirtualMachinePowerState;

const PROPS: [&str; 5] = [
    "name",
    "runtime.powerState",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "summary.config.guestFullName",
];

/// This process's CPU time (user + system), from `/proc/self/stat` (clock ticks of 10 ms).
fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// One listed VM, typed.
struct Row {
    name: String,
    power: Option<VirtualMachinePowerState>,
    cpus: Option<i32>,
    memory_mb: Option<i32>,
    guest: Option<String>,
}

/// One listing; also returns the time of each phase (create view, retrieve, destroy view).
async fn list_once(client: &Client) -> Result<(Vec<Row>, [Duration; 3]), vsphere_client::Error> {
    let t0 = Instant::now();
    let root = client.service_content().root_folder.clone();
    let view = client
        .container_view(&root, &["VirtualMachine"], true)
        .await?;
    let t1 = Instant::now();
    let mut pages = view.retrieve(&[("VirtualMachine", &PROPS)], Some(1000));
    let mut rows = Vec::new();
    while let Some(page) = pages.next_page().await? {
        rows.extend(page.into_iter().map(|o| {
            let mut p = Properties::from(o);
            Row {
                name: p.take("name").unwrap_or_default(),
                power: p.take("runtime.powerState"),
                cpus: p.take("config.hardware.numCPU"),
                memory_mb: p.take("config.hardware.memoryMB"),
                guest: p.take("summary.config.guestFullName"),
            }
        }));
    }
    drop(pages);
    let t2 = Instant::now();
    view.close().await?;
    Ok((
        rows,
        [t1.duration_since(t0), t2.duration_since(t1), t2.elapsed()],
    ))
}

struct Args {
    vms: u32,
    repeat: u32,
    url: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        vms: 10_000,
        repeat: 3,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--vms" => a.vms = value("--vms")?.parse().map_err(|e| format!("--vms: {e}"))?,
            "--repeat" => {
                a.repeat = value("--repeat")?
                    .parse()
                    .map_err(|e| format!("--repeat: {e}"))?;
            }
            "--url" => a.url = Some(value("--url")?),
            "--bench" => {} // cargo bench passes it
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.repeat == 0 {
        return Err("--repeat must be at least 1".to_owned());
    }
    Ok(a)
}

fn peer(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if name == "vcsim"
        && let Some(p) = std::env::var_os("GOVMOMI_VCSIM")
    {
        return PathBuf::from(p);
    }
    let path = root.join("target/peers/bin").join(name);
    if !path.exists() {
        let status = Command::new(root.join("peers/build.sh"))
            .stdout(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "peers/build.sh failed");
    }
    path
}

struct Vcsim(Child);

impl Drop for Vcsim {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn start_vcsim(vms: u32) -> (Vcsim, String) {
    let started = Instant::now();
    let mut child = Command::new(peer("vcsim"))
        .args(["-listen", "127.0.0.1:0", "-exit-on-stdin-eof", "-vms"])
        .arg(vms.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("vcsim starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("vcsim prints its URL");
    eprintln!(
        "vcsim with {vms} VMs ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (Vcsim(child), line.trim().to_owned())
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("list_vms: {e}");
            return ExitCode::from(2);
        }
    };
    let (_sim, url) = if let Some(u) = &a.url {
        (None, u.clone())
    } else {
        let (sim, url) = start_vcsim(a.vms);
        (Some(sim), url)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        let options = ConnectOptions::new(&url)?
            .with_keepalive(None)
            .with_timeout(Duration::from_secs(600));
        let client = Client::connect(options).await?;
        let mut best_wall = Duration::MAX;
        let mut best_cpu = Duration::MAX;
        let mut walls = Vec::new();
        let mut objects = 0;
        let mut total_cpus = 0i64;
        let mut total_memory_mb = 0i64;
        let mut with_guest = 0usize;
        for _ in 0..a.repeat {
            let (w0, c0) = (Instant::now(), process_cpu());
            let (rows, phases) = list_once(&client).await?;
            eprintln!(
                "phases: create view {:.3} s, retrieve + decode {:.3} s, destroy view {:.3} s",
                phases[0].as_secs_f64(),
                phases[1].as_secs_f64(),
                phases[2].as_secs_f64()
            );
            let wall = w0.elapsed();
            if let (Some(c0), Some(c1)) = (c0, process_cpu()) {
                best_cpu = best_cpu.min(c1.saturating_sub(c0));
            }
            best_wall = best_wall.min(wall);
            walls.push(wall);
            objects = rows.len();
            total_cpus = rows.iter().map(|r| i64::from(r.cpus.unwrap_or(0))).sum();
            total_memory_mb = rows
                .iter()
                .map(|r| i64::from(r.memory_mb.unwrap_or(0)))
                .sum();
            with_guest = rows.iter().filter(|r| r.guest.is_some()).count();
            assert!(
                rows.iter().all(|r| !r.name.is_empty() && r.power.is_some()),
                "every VM has a name and a power state"
            );
        }
        walls.sort();
        client.logout().await?;
        eprintln!(
            "decoded: {total_cpus} vCPUs, {total_memory_mb} MB, {with_guest} VMs with a guest name"
        );
        Ok::<_, vsphere_client::Error>((objects, best_wall, walls[walls.len() / 2], best_cpu))
    });
    let (objects, best_wall, median, best_cpu) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("list_vms: {e}");
            return ExitCode::FAILURE;
        }
    };
    let per = |d: Duration| d.as_secs_f64() * 1e6 / objects.max(1) as f64;
    println!(
        "vsphere-client: list {objects} VMs x 5 props: best of {} wall {:.3} s (median {:.3} s), \
         client CPU {:.3} s; per object: wall {:.1} us, client CPU {:.1} us",
        a.repeat,
        best_wall.as_secs_f64(),
        median.as_secs_f64(),
        best_cpu.as_secs_f64(),
        per(best_wall),
        per(best_cpu),
    );
    let out = Command::new(peer("rpex"))
        .args(["list", "-url", &url, "-n-props", "5", "-repeat"])
        .arg(a.repeat.to_string())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            print!(
                "govmomi 0.24.2 (rpex): {}",
                String::from_utf8_lossy(&o.stdout)
            );
            ExitCode::SUCCESS
        }
        Ok(o) => {
            eprintln!("rpex list failed: {}", String::from_utf8_lossy(&o.stderr));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rpex cannot run: {e}");
            ExitCode::FAILURE
        }
    }
}
