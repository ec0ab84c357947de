//! The C API's costs, measured from C (an example-style benchmark that times itself; run with
//! `cargo bench -p sdk-ffi --bench boundary`):
//!
//! 1. the boundary: `benches/c/boundary.c`, compiled with `cc -O2` against the `libvsdk.a`
//!    cargo built for this benchmark, times a call that does no work (`vsdk_result_name`), a
//!    call through the whole entry-point guard (`vsdk_strings_len`) and listing the VMs (name,
//!    power state) of an embedded vsphere-sim with `vsdk_client_list`; this binary times the
//!    same listing through `vsphere-client` in Rust against the same simulator, so the
//!    difference per call is what the C API adds (guard, blocking on the handle's runtime,
//!    copying values into C strings);
//! 2. the wall time of the C full flow (`tests/c/full_flow.c`) and of the C example
//!    (`examples/c/vsdk_example.c`), best and median of several runs.
//!
//! It prints `BENCHMARKS.md` rows with the load average. Without `cc` it says so and exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vsphere_client::client::{Client, ConnectOptions};
use vsphere_client::codec::Any;

const NATIVE_LIBS: &[&str] = &[
    "-lgit2",
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];
const CHEAP_CALLS: u32 = 2_000_000;
const LISTS: u32 = 300;
const FLOW_RUNS: usize = 5;

type BoxError = Box<dyn std::error::Error>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ffi/ has a parent")
        .to_path_buf()
}

/// The `libvsdk.a` cargo built with this benchmark (beside it in `deps/`, or one level up).
fn library() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().ok_or("the bench's directory")?;
    [
        deps.to_path_buf(),
        deps.parent().unwrap_or(deps).to_path_buf(),
    ]
    .iter()
    .map(|d| d.join("libvsdk.a"))
    .find(|p| p.exists())
    .ok_or_else(|| "libvsdk.a is missing: cargo builds it with the bench (staticlib)".into())
}

fn compile(source: &Path, out: &Path, lib: &Path) -> Result<(), BoxError> {
    let root = workspace();
    let o = Command::new("cc")
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("ffi/include"))
        .arg("-I")
        .arg(root.join("ffi/tests/c"))
        .arg(source)
        .arg(lib)
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(out)
        .output()?;
    if !o.status.success() {
        return Err(format!(
            "cc {}: {}",
            source.display(),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// The same listing as `boundary.c`, through vsphere-client in Rust; microseconds per list.
async fn rust_lists(client: &Client, n: u32) -> Result<(f64, usize), vsphere_client::Error> {
    let props = ["name", "runtime.powerState"];
    let mut vms = 0;
    let mut bytes = 0;
    let mut once = async || {
        let root = client.service_content().root_folder.clone();
        let view = client
            .container_view(&root, &["VirtualMachine"], true)
            .await?;
        let all = view
            .retrieve(&[("VirtualMachine", &props[..])], None)
            .collect_all()
            .await;
        view.close().await?;
        let all = all?;
        for oc in &all {
            for p in &oc.prop_set {
                bytes += match &p.val {
                    Any::String(s) => s.len(),
                    Any::Enum(e) => e.as_str().len(),
                    _ => 0,
                };
            }
        }
        Ok::<_, vsphere_client::Error>(all.len())
    };
    for _ in 0..5 {
        vms = once().await?;
    }
    let t = Instant::now();
    for _ in 0..n {
        once().await?;
    }
    assert!(bytes > 0);
    Ok((t.elapsed().as_secs_f64() * 1e6 / f64::from(n), vms))
}

fn figures(output: &str) -> Vec<(String, f64)> {
    output
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn wall(program: &Path, arg: &Path) -> Result<(Duration, Duration), BoxError> {
    let mut runs = Vec::new();
    for i in 0..FLOW_RUNS {
        let dir = arg.join(format!("run-{i}"));
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        let o = Command::new(program).arg(&dir).output()?;
        runs.push(t.elapsed());
        if !o.status.success() {
            return Err(format!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&o.stderr)
            )
            .into());
        }
    }
    runs.sort();
    Ok((runs[0], runs[runs.len() / 2]))
}

fn main() -> Result<(), BoxError> {
    if !Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("SKIPPED: cc is not installed (apt-get install gcc)");
        return Ok(());
    }
    let load_before = loadavg();
    let lib = library()?;
    let scratch = std::env::temp_dir().join(format!("vsdk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let root = workspace();

    // 1. The boundary, from C and from Rust, against one simulator.
    let boundary = scratch.join("boundary");
    compile(&root.join("ffi/benches/c/boundary.c"), &boundary, &lib)?;
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sim = sim_rt.block_on(vsphere_sim::Simulator::builder().start())?;
    let url = sim.url_with_credentials();
    let o = Command::new(&boundary)
        .arg(&url)
        .arg(CHEAP_CALLS.to_string())
        .arg(LISTS.to_string())
        .output()?;
    if !o.status.success() {
        return Err(format!("boundary failed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let c = figures(&String::from_utf8_lossy(&o.stdout));
    let get = |k: &str| c.iter().find(|(n, _)| n == k).map_or(f64::NAN, |(_, v)| *v);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (rust_us, vms) = rt.block_on(async {
        let client = Client::connect(ConnectOptions::new(&url)?).await?;
        let r = rust_lists(&client, LISTS).await?;
        client.logout().await?;
        Ok::<_, vsphere_client::Error>(r)
    })?;
    let c_us = get("list_vms_us");

    // 2. The C full flow and the C example, wall time.
    let full_flow = scratch.join("full_flow");
    compile(&root.join("ffi/tests/c/full_flow.c"), &full_flow, &lib)?;
    let example = scratch.join("vsdk_example");
    compile(&root.join("examples/c/vsdk_example.c"), &example, &lib)?;
    let (flow_best, flow_median) = wall(&full_flow, &scratch.join("flow"))?;
    let (ex_best, ex_median) = wall(&example, &scratch.join("example"))?;
    drop(sim);
    let load_after = loadavg();
    let _ = std::fs::remove_dir_all(&scratch);

    println!("load average before: {load_before}; after: {load_after}");
    println!(
        "vsdk_result_name (no work): {:.2} ns/call",
        get("result_name_ns")
    );
    println!(
        "vsdk_strings_len (full guard): {:.2} ns/call",
        get("guarded_call_ns")
    );
    println!(
        "list {vms} VMs (name, power state): C API {c_us:.1} us, Rust {rust_us:.1} us, \
         boundary {:.1} us/call ({:+.1} %)",
        c_us - rust_us,
        (c_us / rust_us - 1.0) * 100.0
    );
    println!(
        "full_flow.c: best {:.2} s, median {:.2} s; vsdk_example.c: best {:.2} s, median {:.2} s ({FLOW_RUNS} runs each)",
        flow_best.as_secs_f64(),
        flow_median.as_secs_f64(),
        ex_best.as_secs_f64(),
        ex_median.as_secs_f64()
    );
    Ok(())
}
