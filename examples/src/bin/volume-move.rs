//! Moves a volume from VM A to VM B and shows each step with its time and its backend round
//! trips.
//!
//! ```text
//! volume-move [--backend loopfile|qcow2|memory] [--root DIR] [--json]
//! ```
//!
//! The default backend is local loop files in a temporary directory (loop devices as root, node
//! directories otherwise). Steps: create a volume, attach it to `vm-a` (a journaled move), write
//! a label onto the volume's device, move it to `vm-b` (fence, detach, attach, lease), read the
//! label back on `vm-b`. `--json` prints one JSON document for machines.
//!
//! Once the vSphere First Class Disk backend lands, the embedded vsphere-sim becomes the default
//! and `--url` moves a disk on a real vCenter; in this build `--url` is refused with a typed
//! "not supported" error.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use volume_core::backend::Backend;
use volume_core::backend::counting::Counting;
use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::backend::memory::MemoryBackend;
use volume_core::backend::qcow2::{ImageHandoff, Qcow2Backend};
use volume_core::journal::RedbStore;
use volume_core::orchestrator::{MovePolicy, Orchestrator};
use volume_core::{DeviceFormat, NodeId, PoolId, VolumeName, VolumeSpec};

type BoxError = Box<dyn std::error::Error>;

/// One step of the story.
struct Step {
    name: &'static str,
    ms: f64,
    calls: u64,
    detail: String,
}

/// The label written at the start of the volume.
const LABEL: &[u8] = b"volume-core label: written on vm-a\n";

struct Args {
    backend: String,
    root: Option<PathBuf>,
    json: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut a = Args {
        backend: "loopfile".to_owned(),
        root: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--backend" => a.backend = it.next().ok_or("--backend needs a value")?,
            "--root" => a.root = Some(PathBuf::from(it.next().ok_or("--root needs a value")?)),
            "--json" => a.json = true,
            "--url" => {
                return Err(Box::new(volume_core::Error::Unsupported {
                    feature: "moving a First Class Disk on vCenter (--url; vsphere-sim becomes \
                              the default once the FCD backend lands)",
                }));
            }
            "-h" | "--help" => {
                return Err(
                    "usage: volume-move [--backend loopfile|qcow2|memory] [--root DIR] \
                            [--json]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn make_backend(
    kind: &str,
    root: &std::path::Path,
    pool: &PoolId,
) -> Result<Arc<dyn Backend>, BoxError> {
    Ok(match kind {
        "loopfile" => Arc::new(
            LoopFileBackend::new(root.join("data"), LoopMode::detect())?
                .with_pool(pool.clone(), None),
        ),
        "qcow2" => Arc::new(
            Qcow2Backend::new(root.join("data"), Box::new(ImageHandoff::default()))?
                .with_pool(pool.clone(), None),
        ),
        "memory" => Arc::new(
            MemoryBackend::builder()
                .pool_id(pool.clone(), 1 << 40)
                .build(),
        ),
        other => return Err(format!("unknown backend {other}").into()),
    })
}

async fn story(args: &Args) -> Result<(String, Vec<Step>), BoxError> {
    let tmp;
    let root = if let Some(r) = &args.root {
        r.clone()
    } else {
        tmp = std::env::temp_dir().join(format!("volume-move-{}", std::process::id()));
        tmp.clone()
    };
    std::fs::create_dir_all(&root)?;
    let pool = PoolId::new("local")?;
    let inner = make_backend(&args.backend, &root, &pool)?;
    let counting = Arc::new(Counting::new(inner.clone()));
    let store = Arc::new(RedbStore::open(root.join("journal.redb"))?);
    let orch = Orchestrator::new(counting.clone(), store);
    let (vm_a, vm_b) = (NodeId::new("vm-a")?, NodeId::new("vm-b")?);
    let mut steps = Vec::new();
    let mut step = |name, t: Instant, detail: String| {
        steps.push(Step {
            name,
            ms: t.elapsed().as_secs_f64() * 1000.0,
            calls: counting.take(),
            detail,
        });
    };

    let t = Instant::now();
    let spec = VolumeSpec::new(VolumeName::new("move-demo")?, pool, 64 << 20);
    let v = counting.create(&spec).await?;
    step("create", t, format!("{} ({} bytes)", v.id, v.size_bytes));

    let t = Instant::now();
    let lease_a = orch.move_volume(&v.id, &vm_a, MovePolicy::Polite).await?;
    step("attach to vm-a", t, format!("epoch {}", lease_a.epoch));

    let t = Instant::now();
    let dev = orch.device(&v.id, &vm_a).await?;
    let real = dev.format == DeviceFormat::Raw && dev.path.exists();
    if real {
        let mut f = std::fs::OpenOptions::new().write(true).open(&dev.path)?;
        f.write_all(LABEL)?;
        f.sync_all()?;
    }
    step(
        "write label on vm-a",
        t,
        if real {
            format!("{} bytes to {}", LABEL.len(), dev.path.display())
        } else {
            format!(
                "{} is not a raw local device ({:?}); label skipped",
                dev.path.display(),
                dev.format
            )
        },
    );
    orch.release(&v.id, &vm_a).await?;
    counting.take();

    let t = Instant::now();
    let lease_b = orch.move_volume(&v.id, &vm_b, MovePolicy::Polite).await?;
    step(
        "move to vm-b",
        t,
        format!("fence+detach, attach, lease; epoch {}", lease_b.epoch),
    );

    let t = Instant::now();
    let dev = orch.device(&v.id, &vm_b).await?;
    let detail = if real {
        let mut f = std::fs::File::open(&dev.path)?;
        f.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0; LABEL.len()];
        f.read_exact(&mut buf)?;
        if buf != LABEL {
            return Err("the label did not survive the move".into());
        }
        format!("label intact at {}", dev.path.display())
    } else {
        format!("device {}", dev.path.display())
    };
    step("read label on vm-b", t, detail);

    // Clean up: detach and destroy, and remove the temporary root.
    orch.destroy(&v.id, MovePolicy::Preempt).await?;
    if args.root.is_none() {
        drop(orch);
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok((inner.info().kind.to_owned(), steps))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("volume-move: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volume-move: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(story(&args)) {
        Ok((kind, steps)) => {
            if args.json {
                let doc = json!({
                    "backend": kind,
                    "steps": steps.iter().map(|s| json!({
                        "step": s.name, "ms": s.ms, "backend_calls": s.calls, "detail": s.detail,
                    })).collect::<Vec<_>>(),
                });
                println!("{doc}");
            } else {
                println!("volume-move on the {kind} backend");
                for s in &steps {
                    println!(
                        "  {:<22} {:>8.2} ms  {:>2} backend calls  {}",
                        s.name, s.ms, s.calls, s.detail
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("volume-move: {e}");
            ExitCode::FAILURE
        }
    }
}
