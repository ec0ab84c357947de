//! Listing many VMs with five properties from a simulator, through a ContainerView and the
//! paged retrieval stream, beside govmomi's own client on the same simulator and the same
//! request, in one run. Timed by the binary itself.
//!
//! ```text
//! cargo bench -p test-support --bench list_vms -- [--vms 10000] [--repeat 3] [--url URL | --sim]
//! ```
//!
//! The server is `vcsim -vms N` (govmomi's simulator, `GOVMOMI_VCSIM` or
//! `target/peers/bin/vcsim` from `peers/build.sh`, its own process), or with `--sim` the SDK's
//! `vsphere-sim` in this process (on its own two-worker runtime, the same VM count in vcsim's
//! topology), or with `--url` a running server. Then, after one untimed warm-up listing by each
//! client (the simulator's first large answer pays for heap growth), `--repeat` rounds, each:
//!
//! - Rust: create a `ContainerView` of every `VirtualMachine` from the root folder, stream
//!   `RetrievePropertiesEx` pages (`maxObjects` 1000, `ContinueRetrievePropertiesEx` while the
//!   server returns a token) of `name`, `runtime.powerState`, `config.hardware.numCPU`,
//!   `config.hardware.memoryMB`, `summary.config.guestFullName`, decode each object into a
//!   typed row, destroy the view;
//! - govmomi: `rpex list -n-props 5 -repeat 1` (the same five properties through
//!   `ContainerView.Retrieve` into `[]mo.VirtualMachine`: create view, retrieve, destroy).
//!
//! The two alternate, so both meet the same machine load. Reported: best and median wall time
//! and best client CPU time, in total and per object, and the round trips of one Rust
//! listing. The Rust client's CPU time is that of the thread running it (a current-thread
//! Tokio runtime on the main thread; `/proc/thread-self/stat`), so an in-process simulator's
//! work is not counted; rpex's is its process's `getrusage`. The load average is printed
//! before and after.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use test_support::vsphere_sim::{InventoryShape, Simulator};
use vsphere_client::client::{Client, ConnectOptions, Properties};
use vsphere_client::types::VirtualMachinePowerState;

const PROPS: [&str; 5] = [
    "name",
    "runtime.powerState",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "summary.config.guestFullName",
];

/// The page size asked for (`maxObjects`).
const PAGE: u32 = 1000;

/// This thread's CPU time (user + system), from `/proc/thread-self/stat` (ticks of 10 ms).
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// One listed VM, typed.
struct Row {
    name: String,
    power: Option<VirtualMachinePowerState>,
    cpus: Option<i32>,
    memory_mb: Option<i32>,
    guest: Option<String>,
}

/// One listing: the rows, the pages received and the time of each phase (create view,
/// retrieve + decode, destroy view).
struct Listing {
    rows: Vec<Row>,
    pages: usize,
    phases: [Duration; 3],
}

async fn list_once(client: &Client) -> Result<Listing, vsphere_client::Error> {
    let t0 = Instant::now();
    let root = client.service_content().root_folder.clone();
    let view = client
        .container_view(&root, &["VirtualMachine"], true)
        .await?;
    let t1 = Instant::now();
    let mut pages = view.retrieve(&[("VirtualMachine", &PROPS)], Some(PAGE));
    let mut rows = Vec::new();
    let mut count = 0;
    while let Some(page) = pages.next_page().await? {
        count += 1;
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
    Ok(Listing {
        rows,
        pages: count,
        phases: [t1.duration_since(t0), t2.duration_since(t1), t2.elapsed()],
    })
}

enum Server {
    Vcsim,
    Url(String),
    Sim,
}

struct Args {
    vms: u32,
    repeat: u32,
    server: Server,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        vms: 10_000,
        repeat: 3,
        server: Server::Vcsim,
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
            "--url" => a.server = Server::Url(value("--url")?),
            "--sim" => a.server = Server::Sim,
            "--bench" => {} // cargo bench passes it
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.repeat == 0 {
        return Err("--repeat must be at least 1".to_owned());
    }
    if matches!(a.server, Server::Sim) && !a.vms.is_multiple_of(4) {
        return Err("--sim needs --vms to be a multiple of 4 (four hosts)".to_owned());
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

/// Starts the server: what keeps it alive for the run (the vcsim process, or the simulator
/// and its runtime), its URL and a description.
fn start(a: &Args) -> (Box<dyn std::any::Any>, String, &'static str) {
    match &a.server {
        Server::Url(u) => (Box::new(()), u.clone(), "the server at --url"),
        Server::Vcsim => {
            let (sim, url) = start_vcsim(a.vms);
            (Box::new(sim), url, "vcsim 0.24.2 (its own process)")
        }
        Server::Sim => {
            let started = Instant::now();
            let rt = test_support::runtime();
            // vcsim's VPX topology: a cluster of three hosts and a standalone host.
            let shape = InventoryShape {
                vms_per_host: a.vms / 4,
                ..InventoryShape::default()
            };
            let sim = rt
                .block_on(Simulator::builder().shape(shape).start())
                .expect("vsphere-sim starts");
            let url = sim.url_with_credentials();
            eprintln!(
                "vsphere-sim with {} VMs ready in {:.1} s",
                a.vms,
                started.elapsed().as_secs_f64()
            );
            // The simulator first: it stops while its runtime still runs.
            (
                Box::new((sim, rt)),
                url,
                "vsphere-sim (in this process, two worker threads)",
            )
        }
    }
}

/// One `rpex list -repeat 1 -json`: (wall, client CPU, response bytes, objects), or why it
/// failed.
fn rpex_once(url: &str) -> Result<(Duration, Duration, u64, usize), String> {
    let out = Command::new(peer("rpex"))
        .args([
            "list", "-url", url, "-n-props", "5", "-repeat", "1", "-json",
        ])
        .output()
        .map_err(|e| format!("rpex cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rpex list failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("rpex printed no JSON ({e})"))?;
    let secs = |k: &str| {
        v[k].as_f64()
            .map(Duration::from_secs_f64)
            .ok_or(format!("rpex JSON lacks {k}"))
    };
    Ok((
        secs("best_wall_s")?,
        secs("best_client_cpu_s")?,
        v["response_bytes"].as_u64().unwrap_or(0),
        v["objects"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0),
    ))
}

/// Best, median.
fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

struct Figures {
    objects: usize,
    walls: Vec<Duration>,
    cpus: Vec<Duration>,
}

impl Figures {
    fn print(&self, who: &str, repeat: u32, extra: &str) {
        let (best, median) = summary(self.walls.clone());
        let (cpu, _) = summary(self.cpus.clone());
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.objects.max(1) as f64;
        println!(
            "{who}: list {} VMs x 5 props: best of {repeat} wall {:.3} s (median {:.3} s), \
             client CPU {:.3} s; per object: wall {:.1} us, client CPU {:.1} us{extra}",
            self.objects,
            best.as_secs_f64(),
            median.as_secs_f64(),
            cpu.as_secs_f64(),
            per(best),
            per(cpu),
        );
    }
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("list_vms: {e}");
            return ExitCode::from(2);
        }
    };
    let (_running, url, server) = start(&a);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let load_before = loadavg();
    let mut govmomi = Figures {
        objects: 0,
        walls: Vec::new(),
        cpus: Vec::new(),
    };
    let mut govmomi_error = None;
    let mut response_bytes = 0;
    let result = rt.block_on(async {
        let options = ConnectOptions::new(&url)?
            .with_keepalive(None)
            .with_timeout(Duration::from_secs(600));
        let client = Client::connect(options).await?;
        let mut ours = Figures {
            objects: 0,
            walls: Vec::new(),
            cpus: Vec::new(),
        };
        let mut pages = 0;
        // Warm-up, untimed: one listing by each client.
        list_once(&client).await?;
        if let Err(e) = rpex_once(&url) {
            govmomi_error = Some(e);
        }
        for _ in 0..a.repeat {
            let (w0, c0) = (Instant::now(), thread_cpu());
            let listing = list_once(&client).await?;
            let wall = w0.elapsed();
            if let (Some(c0), Some(c1)) = (c0, thread_cpu()) {
                ours.cpus.push(c1.saturating_sub(c0));
            }
            ours.walls.push(wall);
            let [view, retrieve, destroy] = listing.phases.map(|d| d.as_secs_f64());
            eprintln!(
                "vsphere-client: {:.3} s (create view {view:.3} s, retrieve + decode \
                 {retrieve:.3} s in {} page(s), destroy view {destroy:.3} s)",
                wall.as_secs_f64(),
                listing.pages
            );
            let rows = &listing.rows;
            assert!(
                rows.iter().all(|r| !r.name.is_empty() && r.power.is_some()),
                "every VM has a name and a power state"
            );
            let cpus: i64 = rows.iter().map(|r| i64::from(r.cpus.unwrap_or(0))).sum();
            let memory: i64 = rows
                .iter()
                .map(|r| i64::from(r.memory_mb.unwrap_or(0)))
                .sum();
            let guests = rows.iter().filter(|r| r.guest.is_some()).count();
            assert!(cpus > 0 && memory > 0, "the numeric properties decoded");
            ours.objects = rows.len();
            pages = listing.pages;
            if ours.walls.len() == 1 {
                eprintln!("decoded: {cpus} vCPUs, {memory} MB, {guests} VMs with a guest name");
            }
            if govmomi_error.is_none() {
                match rpex_once(&url) {
                    Ok((wall, cpu, bytes, objects)) => {
                        eprintln!("govmomi (rpex): {:.3} s", wall.as_secs_f64());
                        govmomi.walls.push(wall);
                        govmomi.cpus.push(cpu);
                        response_bytes = bytes;
                        govmomi.objects = objects;
                    }
                    Err(e) => govmomi_error = Some(e),
                }
            }
        }
        client.logout().await?;
        Ok::<_, vsphere_client::Error>((ours, pages))
    });
    let (ours, pages) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("list_vms: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "server: {server}; load average before {load_before}, after {}",
        loadavg()
    );
    ours.print(
        "vsphere-client",
        a.repeat,
        &format!(
            "; {} round trips per listing (CreateContainerView, {pages} page(s) of maxObjects \
             {PAGE}, DestroyView)",
            pages + 2
        ),
    );
    match govmomi_error {
        None => {
            govmomi.print(
                "govmomi 0.24.2 (rpex)",
                a.repeat,
                &format!("; response {response_bytes} bytes"),
            );
            ExitCode::SUCCESS
        }
        Some(e) => {
            println!("govmomi 0.24.2 (rpex): not measured: {e}");
            if matches!(a.server, Server::Vcsim) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
