//! The tour's chapter for `volume-core`: a volume moves from one VM to another, crash-safe.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use volume_core::backend::Backend;
use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::journal::RedbStore;
use volume_core::orchestrator::{CrashAt, MovePolicy, Orchestrator};
use volume_core::{DeviceFormat, NodeId, PoolId, VolumeName, VolumeSpec};

use crate::{ChapterResult, Outcome};

/// Tells this chapter's story: create a volume on local loop files, attach it to `vm-a`, write
/// on it, move it to `vm-b` with a crash in the middle of the move, recover, and read the data
/// back on `vm-b`.
pub(crate) fn run() -> ChapterResult {
    println!("   volume-core: {}", volume_core::CAPABILITY);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(story())
}

async fn story() -> ChapterResult {
    let root = std::env::temp_dir().join(format!("tour-volume-{}", std::process::id()));
    let mode = LoopMode::detect();
    let pool = PoolId::new("local")?;
    let backend: Arc<dyn Backend> =
        Arc::new(LoopFileBackend::new(root.join("data"), mode)?.with_pool(pool.clone(), None));
    let journal = root.join("journal.redb");
    let (vm_a, vm_b) = (NodeId::new("vm-a")?, NodeId::new("vm-b")?);
    println!(
        "   backend: local loop files ({}) under {}",
        if mode == LoopMode::Losetup {
            "loop devices"
        } else {
            "node directories, no root"
        },
        root.display()
    );

    let t = Instant::now();
    let v = backend
        .create(&VolumeSpec::new(VolumeName::new("pgdata")?, pool, 32 << 20))
        .await?;
    println!(
        "   created {} ({} MiB) in {:?}",
        v.name,
        v.size_bytes >> 20,
        t.elapsed()
    );

    let store = Arc::new(RedbStore::open(&journal)?);
    let orch = Orchestrator::new(backend.clone(), store);
    let lease = orch.move_volume(&v.id, &vm_a, MovePolicy::Polite).await?;
    let dev = orch.device(&v.id, &vm_a).await?;
    if dev.format == DeviceFormat::Raw {
        let mut f = std::fs::OpenOptions::new().write(true).open(&dev.path)?;
        f.write_all(b"hello from vm-a")?;
        f.sync_all()?;
    }
    println!(
        "   attached to vm-a at {} (epoch {}), wrote 15 bytes",
        dev.path.display(),
        lease.epoch
    );
    orch.release(&v.id, &vm_a).await?;
    drop(orch);

    // The move to vm-b crashes right after the detach, before the attach.
    let store = Arc::new(RedbStore::open(&journal)?);
    let crashing =
        Orchestrator::new(backend.clone(), store).with_hook(Arc::new(CrashAt::new("after-detach")));
    let Err(crash) = crashing.move_volume(&v.id, &vm_b, MovePolicy::Polite).await else {
        return Err("the injected crash did not fire".into());
    };
    let now = backend.get(&v.id).await?.ok_or("the volume was lost")?;
    println!(
        "   move to vm-b: {crash}; the volume is attached to {:?}, the journal holds {} move",
        now.attached_to.as_ref().map(NodeId::as_str),
        crashing.pending().await?.len()
    );
    drop(crashing);

    // A fresh orchestrator over the same journal rolls the move forward.
    let store = Arc::new(RedbStore::open(&journal)?);
    let orch = Orchestrator::new(backend.clone(), store);
    let t = Instant::now();
    let finished = orch.recover().await?;
    let lease = orch.lease(&v.id).await?.ok_or("no lease after recovery")?;
    println!(
        "   restart: recovered {finished} move in {:?}; vm-b holds the lease at epoch {}",
        t.elapsed(),
        lease.epoch
    );
    if let Err(e) = orch.device(&v.id, &vm_a).await {
        println!("   vm-a is fenced: {e}");
    }
    let dev = orch.device(&v.id, &vm_b).await?;
    if dev.format == DeviceFormat::Raw {
        let mut buf = [0u8; 15];
        std::fs::File::open(&dev.path)?.read_exact(&mut buf)?;
        println!(
            "   vm-b reads {:?} from {}",
            String::from_utf8_lossy(&buf),
            dev.path.display()
        );
        if &buf != b"hello from vm-a" {
            return Err("the data did not follow the volume".into());
        }
    }
    orch.destroy(&v.id, MovePolicy::Preempt).await?;
    drop(orch);
    let _ = std::fs::remove_dir_all(&root);
    Ok(Outcome::Done)
}
