//! Times volume-core at scale: N volumes created concurrently, attached to `node-a`
//! concurrently, then moved to `node-b` concurrently, each move a journaled, fenced operation
//! over the durable redb journal.
//!
//! ```text
//! volume-bench [--volumes N] [--backend memory|loopfile-plain|loopfile-losetup|qcow2] [--json]
//! ```
//!
//! Prints each phase's wall time and throughput, and the p50/p99 latency of single moves.
//! `loopfile-losetup` binds one loop device per volume and needs root.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use volume_core::backend::Backend;
use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::backend::memory::MemoryBackend;
use volume_core::backend::qcow2::{ImageHandoff, Qcow2Backend};
use volume_core::journal::RedbStore;
use volume_core::orchestrator::{MovePolicy, Orchestrator};
use volume_core::{NodeId, PoolId, VolumeId, VolumeName, VolumeSpec};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Phase {
    name: &'static str,
    wall: Duration,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn timed_all<F, Fut>(n: usize, f: F) -> Result<(Duration, Vec<Duration>), BoxError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let fut = f(i);
        set.spawn(async move {
            let t = Instant::now();
            fut.await.map(|()| t.elapsed())
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        lat.push(r??);
    }
    lat.sort();
    Ok((start.elapsed(), lat))
}

async fn bench(kind: &str, n: usize) -> Result<Vec<Phase>, BoxError> {
    let dir = std::env::temp_dir().join(format!("volume-bench-{}", std::process::id()));
    let r = bench_in(kind, n, &dir).await;
    if r.is_err() && kind == "loopfile-losetup" {
        // Unbind what a failed run left bound, so no loop device outlives the benchmark.
        if let Ok(b) = LoopFileBackend::new(dir.join("data"), LoopMode::Losetup) {
            let _ = b.release_devices().await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    r
}

async fn bench_in(kind: &str, n: usize, dir: &std::path::Path) -> Result<Vec<Phase>, BoxError> {
    std::fs::create_dir_all(dir)?;
    let pool = PoolId::new("local")?;
    let backend: Arc<dyn Backend> = match kind {
        "memory" => Arc::new(
            MemoryBackend::builder()
                .pool_id(pool.clone(), 1 << 50)
                .build(),
        ),
        "loopfile-plain" => Arc::new(
            LoopFileBackend::new(dir.join("data"), LoopMode::PlainFiles)?
                .with_pool(pool.clone(), None),
        ),
        "loopfile-losetup" => Arc::new(
            LoopFileBackend::new(dir.join("data"), LoopMode::Losetup)?
                .with_pool(pool.clone(), None),
        ),
        "qcow2" => Arc::new(
            Qcow2Backend::new(dir.join("data"), Box::new(ImageHandoff::default()))?
                .with_pool(pool.clone(), None),
        ),
        other => return Err(format!("unknown backend {other}").into()),
    };
    let store = Arc::new(RedbStore::open(dir.join("journal.redb"))?);
    let orch = Arc::new(Orchestrator::new(backend.clone(), store));
    let mut phases = Vec::new();

    let (wall, lat) = timed_all(n, |i| {
        let (b, pool) = (backend.clone(), pool.clone());
        async move {
            let name = VolumeName::new(format!("bench-{i:05}"))?;
            b.create(&VolumeSpec::new(name, pool, 16 << 20)).await?;
            Ok(())
        }
    })
    .await?;
    phases.push(Phase {
        name: "create",
        wall,
        latencies: lat,
    });
    let ids: Arc<Vec<VolumeId>> =
        Arc::new(backend.list().await?.into_iter().map(|v| v.id).collect());
    if ids.len() != n {
        return Err(format!("{} volumes listed, {n} created", ids.len()).into());
    }

    for (name, node, policy) in [
        ("attach to node-a", "node-a", MovePolicy::Polite),
        ("move to node-b", "node-b", MovePolicy::Preempt),
    ] {
        let node = NodeId::new(node)?;
        let (wall, lat) = timed_all(n, |i| {
            let (o, ids, node) = (orch.clone(), ids.clone(), node.clone());
            async move {
                o.move_volume(&ids[i], &node, policy).await?;
                Ok(())
            }
        })
        .await?;
        phases.push(Phase {
            name,
            wall,
            latencies: lat,
        });
    }
    let on_b = backend
        .list()
        .await?
        .iter()
        .filter(|v| v.attached_to.as_ref().map(NodeId::as_str) == Some("node-b"))
        .count();
    if on_b != n {
        return Err(format!("{on_b} of {n} volumes on node-b after the moves").into());
    }
    // Clean up (loop devices in losetup mode).
    for id in ids.iter() {
        orch.destroy(id, MovePolicy::Preempt).await?;
    }
    Ok(phases)
}

fn main() -> ExitCode {
    let mut n = 1000usize;
    let mut kind = "memory".to_owned();
    let mut json_out = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--volumes", Some(v)) if v.parse::<usize>().is_ok() => n = v.parse().unwrap_or(n),
            ("--backend", Some(v)) => kind = v,
            ("--json", next) => {
                json_out = true;
                if let Some(v) = next {
                    eprintln!("volume-bench: unexpected argument {v}");
                    return ExitCode::from(2);
                }
            }
            _ => {
                eprintln!(
                    "usage: volume-bench [--volumes N] \
                     [--backend memory|loopfile-plain|loopfile-losetup|qcow2] [--json]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volume-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(&kind, n)) {
        Ok(phases) => {
            if json_out {
                let doc = json!({
                    "backend": kind, "volumes": n,
                    "phases": phases.iter().map(|p| json!({
                        "phase": p.name,
                        "wall_ms": p.wall.as_secs_f64() * 1000.0,
                        "per_second": n as f64 / p.wall.as_secs_f64(),
                        "p50_ms": percentile(&p.latencies, 0.5).as_secs_f64() * 1000.0,
                        "p99_ms": percentile(&p.latencies, 0.99).as_secs_f64() * 1000.0,
                    })).collect::<Vec<_>>(),
                });
                println!("{doc}");
            } else {
                println!("volume-bench: {n} volumes on the {kind} backend, all concurrent");
                for p in &phases {
                    println!(
                        "  {:<18} {:>9.1} ms wall  {:>8.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms",
                        p.name,
                        p.wall.as_secs_f64() * 1000.0,
                        n as f64 / p.wall.as_secs_f64(),
                        percentile(&p.latencies, 0.5).as_secs_f64() * 1000.0,
                        percentile(&p.latencies, 0.99).as_secs_f64() * 1000.0,
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("volume-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
