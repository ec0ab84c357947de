//! The tour's chapter for `volume-core`: a First Class Disk moves from one VM to another on the
//! embedded vCenter simulator, each step with its time and its vCenter round trips, then a move
//! interrupted by a crash is finished by a restarted orchestrator.

use std::sync::Arc;
use std::time::Instant;

use volume_core::backend::Backend;
use volume_core::backend::vsphere::FcdBackend;
use volume_core::demo::{CountingTransport, MoveReport, move_and_report};
use volume_core::journal::RedbStore;
use volume_core::orchestrator::{CrashAt, MovePolicy, Orchestrator};
use volume_core::{NodeId, PoolId, VolumeName, VolumeSpec};
use vsphere_client::client::{Client, ConnectOptions};

use crate::{ChapterResult, Outcome};

/// Tells this chapter's story.
pub(crate) fn run() -> ChapterResult {
    println!("   volume-core: {}", volume_core::CAPABILITY);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(story())
}

fn show(step: &str, t: Instant, counter: &CountingTransport, detail: &str) {
    let (trips, tasks) = counter.take();
    line(
        step,
        t.elapsed().as_secs_f64() * 1000.0,
        trips,
        tasks,
        detail,
    );
}

fn line(step: &str, ms: f64, trips: u64, tasks: u64, detail: &str) {
    println!(
        "   {step:<18} {ms:>7.1} ms  {trips:>2} vCenter round trips, {tasks} task{}  {detail}",
        if tasks == 1 { "" } else { "s" }
    );
}

fn show_move(step: &str, r: &MoveReport, detail: &str) {
    line(step, r.ms, r.round_trips, r.tasks, detail);
}

async fn story() -> ChapterResult {
    let sim = vsphere_sim::Simulator::builder().start().await?;
    let options = ConnectOptions::new(&sim.url_with_credentials())?;
    let counter = Arc::new(CountingTransport::new(&options)?);
    let client = Arc::new(Client::connect_with(options, counter.clone()).await?);
    let pool = PoolId::new("LocalDS_0")?;
    let backend = Arc::new(FcdBackend::connect(client.clone(), [pool.clone()]).await?);
    let datastore = client
        .finder()
        .await?
        .one("datastore", &["Datastore"], Some("LocalDS_0"), None)?
        .reference
        .clone();
    let root = std::env::temp_dir().join(format!("tour-volume-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let journal = root.join("journal.redb");
    let (vm_a, vm_b) = (NodeId::new("DC0_H0_VM0")?, NodeId::new("DC0_H0_VM1")?);
    println!(
        "   First Class Disks on datastore {pool} of the embedded vCenter simulator; VM A is \
         {vm_a}, VM B is {vm_b}; the journal is {}",
        journal.display()
    );
    counter.take();

    let t = Instant::now();
    let v = backend
        .create(&VolumeSpec::new(VolumeName::new("pgdata")?, pool, 64 << 20))
        .await?;
    show(
        "create",
        t,
        &counter,
        &format!("{} ({} MiB, keepAfterDeleteVm)", v.id, v.size_bytes >> 20),
    );

    let orch = Orchestrator::new(backend.clone(), Arc::new(RedbStore::open(&journal)?));
    let r = move_and_report(&orch, &v.id, &vm_a, MovePolicy::Polite, Some(&counter)).await?;
    show_move(
        "attach to VM A",
        &r,
        &format!("lease for {vm_a} at epoch {}", r.lease.epoch),
    );

    // The label goes into the disk's own metadata, so it travels with the disk.
    let t = Instant::now();
    client
        .disks()?
        .update_metadata(
            v.id.as_str(),
            &datastore,
            &[("volume-core.label.written-on", vm_a.as_str())],
            &[],
        )
        .await?;
    show(
        "label on VM A",
        t,
        &counter,
        "volume-core.label.written-on in the disk's metadata",
    );
    orch.release(&v.id, &vm_a).await?;
    counter.take();

    let r = move_and_report(&orch, &v.id, &vm_b, MovePolicy::Polite, Some(&counter)).await?;
    show_move(
        "move to VM B",
        &r,
        &format!(
            "{}; lease for {vm_b} at epoch {}",
            r.methods.join(" "),
            r.lease.epoch
        ),
    );

    let t = Instant::now();
    let disk = client.disks()?.retrieve(v.id.as_str(), &datastore).await?;
    let label = disk
        .config
        .as_ref()
        .and_then(|c| {
            c.base_config_info
                .metadata
                .iter()
                .find(|kv| kv.key == "volume-core.label.written-on")
        })
        .map(|kv| kv.value.clone())
        .ok_or("the label did not travel with the disk")?;
    if label != vm_a.as_str() {
        return Err(format!("the label reads {label:?}").into());
    }
    let device = orch.device(&v.id, &vm_b).await?;
    show(
        "read on VM B",
        t,
        &counter,
        &format!("label {label:?}; the guest sees {}", device.path.display()),
    );
    if orch.device(&v.id, &vm_a).await.is_ok() {
        return Err("VM A still holds the volume".into());
    }
    orch.release(&v.id, &vm_b).await?;
    drop(orch);

    // The move back crashes after the detach, before the attach; a restart finishes it.
    let crashing = Orchestrator::new(backend.clone(), Arc::new(RedbStore::open(&journal)?))
        .with_hook(Arc::new(CrashAt::new("after-detach")));
    let Err(crash) = crashing.move_volume(&v.id, &vm_a, MovePolicy::Polite).await else {
        return Err("the injected crash did not fire".into());
    };
    let now = backend.get(&v.id).await?.ok_or("the volume was lost")?;
    println!(
        "   move back to VM A: {crash}; the disk is attached to {:?}, the journal holds {} move",
        now.attached_to.as_ref().map(NodeId::as_str),
        crashing.pending().await?.len()
    );
    drop(crashing);
    counter.take();
    let orch = Orchestrator::new(backend.clone(), Arc::new(RedbStore::open(&journal)?));
    let t = Instant::now();
    let finished = orch.recover().await?;
    let lease = orch.lease(&v.id).await?.ok_or("no lease after recovery")?;
    show(
        "restart + recover",
        t,
        &counter,
        &format!(
            "{finished} move finished; {} holds the lease at epoch {}",
            lease.holder, lease.epoch
        ),
    );
    if lease.holder != vm_a {
        return Err("the recovered move did not reach VM A".into());
    }
    orch.destroy(&v.id, MovePolicy::Preempt).await?;
    drop(orch);
    let _ = std::fs::remove_dir_all(&root);
    Ok(Outcome::Done)
}
