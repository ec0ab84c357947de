//! `pipeline-bench`: times `pipeline-core` against its goals and prints one line per figure.
//!
//! ```text
//! cargo run --release -p examples --bin pipeline-bench [-- --state-dir DIR] [--only commit|runs]
//! ```
//!
//! 1. load and plan (validate, bind, order) a 10,000-task pipeline: goal < 1 s;
//! 2. scheduling overhead per task, running 10,000 no-op tasks through the engine with the
//!    in-memory journal: goal < 100 µs per task;
//! 3. durable commit latency of the file journal (append until `fdatasync`ed), p50 and p99 over
//!    2,000 commits by one writer, then 6,400 commits by 64 concurrent writers (one run each,
//!    sharing the group commit): goal p99 < 5 ms; measured between two runs of the device's
//!    own flush floor (200-byte `pwrite` + `fdatasync` into a pre-zeroed file), with the load
//!    average;
//! 4. 1,000 concurrent runs of a 3-task pipeline on the file journal: wall time and peak RSS.
//!
//! `--state-dir` chooses where the file journal goes (default: the system temp directory);
//! `--only commit` runs figure 3 alone, `--only runs` figure 4.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_core::engine::{Engine, Outcome};
use pipeline_core::journal::{Entry, FileStore, JournalStore, MemoryStore, Record, Timestamp};
use pipeline_core::load::load_pipeline;
use pipeline_core::model::ValueType;
use pipeline_core::task::{FieldSpec, TaskContext, TaskFailure, TaskKind, TaskRegistry};
use serde_json::{Value, json};

/// A task kind that does nothing: what is left is the engine's own cost.
struct Noop;

const NOOP_INPUTS: &[FieldSpec] = &[FieldSpec {
    name: "value",
    ty: ValueType::Any,
    required: false,
}];
const NOOP_OUTPUTS: &[FieldSpec] = &[FieldSpec {
    name: "value",
    ty: ValueType::Any,
    required: false,
}];

#[pipeline_core::async_trait]
impl TaskKind for Noop {
    fn type_name(&self) -> &'static str {
        "Noop"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        NOOP_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        NOOP_OUTPUTS
    }
    async fn run(&self, ctx: TaskContext) -> Result<Value, TaskFailure> {
        Ok(json!({ "value": ctx.input.get("value").cloned().unwrap_or(Value::Null) }))
    }
}

/// `stages` stages of `groups` taskOrder groups of `width` parallel tasks; each task binds an
/// output of a task in the previous group.
fn big_pipeline(stages: usize, groups: usize, width: usize) -> String {
    let mut y = String::from("kind: PIPELINE\nname: big\nconcurrency: 64\ninput:\n  seed: x\n");
    let names: Vec<String> = (0..stages).map(|s| format!("S{s}")).collect();
    let _ = writeln!(y, "stageOrder: [{}]\nstages:", names.join(", "));
    for s in &names {
        let _ = writeln!(y, "  {s}:\n    taskOrder:");
        for g in 0..groups {
            let group: Vec<String> = (0..width).map(|w| format!("t{g}_{w}")).collect();
            let _ = writeln!(y, "      - \"{}\"", group.join(","));
        }
        let _ = writeln!(y, "    tasks:");
        for g in 0..groups {
            for w in 0..width {
                let value = if g == 0 {
                    "${input.seed}".to_owned()
                } else {
                    format!("${{{s}.t{}_{w}.output.value}}", g - 1)
                };
                let _ = writeln!(
                    y,
                    "      t{g}_{w}:\n        type: Noop\n        input:\n          value: \"{value}\""
                );
            }
        }
    }
    y
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One journal record of a typical size.
fn record(n: u64) -> Record {
    Record::TaskFinished {
        stage: "Build".into(),
        task: format!("t{n}"),
        status: pipeline_core::journal::TaskStatus::Succeeded,
        outputs: json!({"exitCode": 0, "stdout": "ok\n"}),
        message: String::new(),
    }
}

/// `writers` concurrent writers, each appending `commits` single-record entries to its own
/// run, one after the other; returns every commit's latency (append until durable), sorted.
async fn commit_latencies(
    store: &Arc<FileStore>,
    writers: usize,
    commits: u64,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(store);
        set.spawn(async move {
            let run = format!("commits-{writers}-{w}");
            let mut lat = Vec::with_capacity(usize::try_from(commits).unwrap_or(0));
            for v in 1..=commits {
                let e = Entry {
                    version: v,
                    at: Timestamp::now(),
                    record: record(v),
                };
                let t = Instant::now();
                store.append(&run, v - 1, vec![e]).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, pipeline_core::Error>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    all.sort();
    Ok(all)
}

/// 1,000 concurrent runs of a 3-task pipeline on the file journal; returns how many succeeded.
async fn concurrent_runs(state_dir: &std::path::Path) -> Result<usize, Box<dyn std::error::Error>> {
    let work = state_dir.join("work");
    let small = load_pipeline(&big_pipeline(1, 3, 1), &registry())?;
    let engine = Engine::builder(
        Arc::new(FileStore::open(state_dir.join("runs"))?),
        registry(),
    )
    .task_slots(256)
    .build();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let e = engine.clone();
        let p = small.clone();
        let w = work.clone();
        set.spawn(async move { e.run(&p, BTreeMap::new(), "bench", &w).await });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        if r?.map(|(_, o)| o == Outcome::Succeeded)? {
            ok += 1;
        }
    }
    let took = started.elapsed();
    println!(
        "concurrent: {ok}/1000 runs of 3 tasks (fsynced journal) in {:.2} s; peak RSS {:.0} MB",
        took.as_secs_f64(),
        peak_rss_mb()
    );
    Ok(ok)
}

/// Durable commit latency: append + fsync of one record, by one writer, then by 64 writers at
/// once (each on its own run; group commit shares their fsyncs), between two measures of the
/// device's own flush floor, with the load average, so that the figures can be judged.
async fn commits(state_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    println!("load average: {}", load_average());
    let floor = state_dir.join("floor");
    println!("floor: {}", flush_floor(&floor, 1000)?);
    let store = Arc::new(FileStore::open(state_dir.join("commits"))?);
    let lat = commit_latencies(&store, 1, 2000).await?;
    println!("commit: 1 writer, {}", summary(&lat));
    let lat = commit_latencies(&store, 64, 100).await?;
    println!("commit: 64 concurrent writers, {}", summary(&lat));
    println!("floor: {}", flush_floor(&floor, 1000)?);
    println!("load average: {}", load_average());
    Ok(())
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// The device's flush floor: `n` times a 200-byte `pwrite` into a pre-zeroed file, then
/// `fdatasync` (what one commit of the journal log costs at the least).
fn flush_floor(path: &std::path::Path, n: usize) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt as _;
    std::fs::create_dir_all(path.parent().unwrap_or(path))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    f.write_all_at(&vec![0u8; n * 200 + 4096], 0)?;
    f.sync_all()?;
    let record = [b'x'; 200];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f.write_all_at(&record, (i * 200) as u64)?;
        f.sync_data()?;
        lat.push(started.elapsed());
    }
    lat.sort();
    Ok(summary(&lat).replace("append until durable", "raw pwrite + fdatasync"))
}

/// p50, p99 and max of sorted latencies.
fn summary(lat: &[Duration]) -> String {
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    format!(
        "append until durable: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} commits)",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
        lat.len()
    )
}

fn registry() -> TaskRegistry {
    let mut r = TaskRegistry::builtin();
    r.register(Arc::new(Noop));
    r
}

async fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let state_dir = std::env::args()
        .skip_while(|a| a != "--state-dir")
        .nth(1)
        .map_or_else(
            || std::env::temp_dir().join(format!("pipeline-bench-{}", std::process::id())),
            PathBuf::from,
        );
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let only = only.as_deref();
    let _ = std::fs::remove_dir_all(&state_dir);
    match only {
        Some("commit") => {
            commits(&state_dir).await?;
            let _ = std::fs::remove_dir_all(&state_dir);
            return Ok(());
        }
        Some("runs") => {
            concurrent_runs(&state_dir).await?;
            let _ = std::fs::remove_dir_all(&state_dir);
            return Ok(());
        }
        _ => {}
    }

    // 1. Load and plan 10,000 tasks.
    let yaml = big_pipeline(10, 100, 10);
    let started = Instant::now();
    let pipeline = load_pipeline(&yaml, &registry())?;
    let load = started.elapsed();
    println!(
        "load+plan: {} tasks ({} KiB of YAML) in {:.1} ms",
        pipeline.task_count(),
        yaml.len() / 1024,
        load.as_secs_f64() * 1e3
    );

    // 2. Scheduling overhead: run the 10,000 no-op tasks with the in-memory journal.
    let engine = Engine::builder(Arc::new(MemoryStore::new()), registry())
        .task_slots(64)
        .build();
    let work = state_dir.join("work");
    let started = Instant::now();
    let (_, outcome) = engine
        .run(&pipeline, BTreeMap::new(), "bench", &work)
        .await?;
    let run = started.elapsed();
    assert_eq!(outcome, Outcome::Succeeded);
    println!(
        "schedule: {} no-op tasks in {:.0} ms = {:.1} us per task (4 journal records each)",
        pipeline.task_count(),
        run.as_secs_f64() * 1e3,
        run.as_secs_f64() * 1e6 / pipeline.task_count() as f64
    );

    // 3. Durable commit latency.
    commits(&state_dir).await?;

    // 4. 1,000 concurrent runs on the file journal.
    let ok = concurrent_runs(&state_dir).await?;
    let _ = std::fs::remove_dir_all(&state_dir);
    if load > Duration::from_secs(1) || ok != 1000 {
        return Err("a goal was missed".into());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
