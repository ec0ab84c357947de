//! The First Class Disk backend and the vCenter-metadata journal store on the SDK's embedded
//! simulator (vsphere-sim), which serves `AttachDisk_Task`, `DetachDisk_Task` and disk metadata.

#![cfg(feature = "vsphere")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use test_support::fcd::FcdFactory;
use test_support::sim::Sim;
use volume_core::backend::Backend;
use volume_core::backend::vsphere::FcdBackend;
use volume_core::conformance::{Factory, STORE_CASES, run_only};
use volume_core::journal::vcenter::VcenterStore;
use volume_core::journal::{MemoryStore, Store, Table};
use volume_core::orchestrator::{Lease, MovePolicy, Orchestrator};
use volume_core::{Epoch, Error, NodeId, VolumeName, VolumeSpec};

async fn factory() -> FcdFactory {
    let sim = Sim::start(Duration::from_millis(1)).await;
    let client = sim.client().await;
    FcdFactory::new(client, sim).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_move_to_an_unknown_vm_changes_nothing() {
    let f = factory().await;
    let b = f.backend().await.unwrap();
    let v = b
        .create(&VolumeSpec::new(
            VolumeName::new("refused").unwrap(),
            f.pool(),
            1 << 20,
        ))
        .await
        .unwrap();
    let o = Orchestrator::new(b, Arc::new(MemoryStore::default()));
    let node = |s: &str| NodeId::new(s).unwrap();
    common::refused_moves_change_nothing(
        &o,
        &v.id,
        &node("node-a"),
        &node("node-b"),
        &node("no-such-vm"),
    )
    .await;
}

/// The kit's factory with the journal in the disks' metadata (a `VcenterStore` per case, on
/// the factory's client).
struct WithVcenterStore(FcdFactory);

#[async_trait::async_trait]
impl Factory for WithVcenterStore {
    async fn backend(&self) -> volume_core::Result<Arc<dyn Backend>> {
        self.0.backend().await
    }
    fn pool(&self) -> volume_core::PoolId {
        self.0.pool()
    }
    async fn store(&self, _backend: &Arc<dyn Backend>) -> volume_core::Result<Arc<dyn Store>> {
        Ok(Arc::new(
            VcenterStore::connect(
                self.0.client.clone(),
                [self.0.pool()],
                Arc::new(MemoryStore::default()),
            )
            .await?,
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_store_cases_pass_with_the_journal_in_disk_metadata() {
    // The cases whose orchestrators take the store: concurrent moves from two orchestrators,
    // moves and fencing, a crash at every step of a move then recovery, convergence over a
    // lagging listing. (The backend cases are the same with any store; examples'
    // backends_on_sim runs them all on this simulator.)
    let f = WithVcenterStore(factory().await);
    let report = run_only(&f, STORE_CASES).await;
    assert!(report.failed.is_empty(), "{report}");
    assert_eq!(report.passed.len(), STORE_CASES.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcenter_store_semantics_fencing_and_sharing() {
    let f = factory().await;
    let b = f.backend().await.unwrap();
    let v = b
        .create(&VolumeSpec::new(
            VolumeName::new("st").unwrap(),
            f.pool(),
            1 << 20,
        ))
        .await
        .unwrap();
    let k = v.id.as_str();
    let s1 = VcenterStore::connect(
        f.client.clone(),
        [f.pool()],
        Arc::new(MemoryStore::default()),
    )
    .await
    .unwrap();
    // A second store instance (another writer id; the two-host test below uses two sessions).
    let s2 = VcenterStore::connect(
        f.client.clone(),
        [f.pool()],
        Arc::new(MemoryStore::default()),
    )
    .await
    .unwrap();
    assert_ne!(s1.writer(), s2.writer());

    assert_eq!(s1.get(Table::Operations, k).await.unwrap(), None);
    assert!(
        s1.cas(Table::Operations, k, None, Some(b"rec-1"))
            .await
            .unwrap()
    );
    assert!(
        !s2.cas(Table::Operations, k, None, Some(b"rec-2"))
            .await
            .unwrap()
    );
    assert_eq!(
        s2.get(Table::Operations, k).await.unwrap(),
        Some(b"rec-1".to_vec())
    );
    assert!(
        s2.cas(Table::Operations, k, Some(b"rec-1"), Some(&[0, 1, 255]))
            .await
            .unwrap()
    );
    assert_eq!(
        s1.get(Table::Operations, k).await.unwrap(),
        Some(vec![0, 1, 255])
    );
    assert_eq!(
        s1.list(Table::Operations).await.unwrap(),
        vec![(k.to_owned(), vec![0, 1, 255])]
    );
    assert!(
        s1.cas(Table::Operations, k, Some(&[0, 1, 255]), None)
            .await
            .unwrap()
    );
    assert!(s2.list(Table::Operations).await.unwrap().is_empty());

    // The state is on the disk: it is in the disk's metadata under the journal's prefix.
    let disk = f
        .client
        .disks()
        .unwrap()
        .retrieve(
            k,
            &test_support::find(&f.client, "/DC0/datastore/LocalDS_0").await,
        )
        .await
        .unwrap();
    let meta = disk.config.unwrap().base_config_info.metadata.clone();
    assert!(meta.iter().any(|kv| {
        kv.key
            .starts_with(volume_core::journal::vcenter::KEY_PREFIX)
    }));

    // Epochs only rise.
    assert!(s1.cas(Table::Epochs, k, None, Some(b"3")).await.unwrap());
    assert!(matches!(
        s2.put(Table::Epochs, k, Some(b"2")).await,
        Err(Error::StaleEpoch { .. })
    ));
    assert_eq!(s2.get(Table::Epochs, k).await.unwrap(), Some(b"3".to_vec()));

    // A stale holder's lease write is refused.
    let lease = |node: &str, epoch: u64| {
        serde_json::to_vec(&Lease {
            volume: v.id.clone(),
            holder: NodeId::new(node).unwrap(),
            epoch: Epoch(epoch),
            expires_ms: u64::MAX,
            released: false,
        })
        .unwrap()
    };
    s1.put(Table::Leases, k, Some(&lease("a", 3)))
        .await
        .unwrap();
    s2.put(Table::Leases, k, Some(&lease("b", 4)))
        .await
        .unwrap();
    assert!(matches!(
        s1.put(Table::Leases, k, Some(&lease("a", 3))).await,
        Err(Error::StaleEpoch { .. })
    ));
    assert_eq!(s1.get(Table::Leases, k).await.unwrap(), Some(lease("b", 4)));

    // Tables that are not per disk live in the local store; unknown disks hold nothing.
    s1.put(Table::Desired, "p\0n", Some(b"d")).await.unwrap();
    assert_eq!(s2.get(Table::Desired, "p\0n").await.unwrap(), None);
    assert_eq!(s1.get(Table::Leases, "no-such-disk").await.unwrap(), None);
    assert!(matches!(
        s1.put(Table::Leases, "no-such-disk", Some(b"x")).await,
        Err(Error::UnknownVolume { .. })
    ));
    s1.put(Table::Leases, "no-such-disk", None).await.unwrap();

    // Destroying the disk takes its journal with it.
    s1.put(Table::Leases, k, None).await.unwrap();
    b.destroy(&v.id).await.unwrap();
    assert!(s1.list(Table::Epochs).await.unwrap().is_empty());
}

/// One host: its own session, backend (in shared mode), store and orchestrator.
async fn host(sim_url: &str, pool: volume_core::PoolId) -> (Arc<FcdBackend>, Arc<Orchestrator>) {
    let client = Arc::new(
        vsphere_client::client::Client::connect(
            vsphere_client::client::ConnectOptions::new(sim_url).unwrap(),
        )
        .await
        .unwrap(),
    );
    let b = Arc::new(
        FcdBackend::connect(client.clone(), [pool.clone()])
            .await
            .unwrap()
            .shared(),
    );
    let store = VcenterStore::connect(client, [pool], Arc::new(MemoryStore::default()))
        .await
        .unwrap();
    let o = Arc::new(Orchestrator::new(b.clone(), Arc::new(store)));
    (b, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_sharing_one_vcenter_never_attach_a_volume_twice() {
    let sim = Sim::start(Duration::from_millis(1)).await;
    let url = sim.url.clone();
    let f = FcdFactory::new(sim.client().await, sim).await;
    let pool = f.pool();
    let (b1, o1) = host(&url, pool.clone()).await;
    let (_b2, o2) = host(&url, pool.clone()).await;
    let (observer, _) = host(&url, pool.clone()).await;
    let (na, nb) = (
        NodeId::new("node-a").unwrap(),
        NodeId::new("node-b").unwrap(),
    );
    observer.check_node(&na).await.unwrap();
    observer.check_node(&nb).await.unwrap();

    let mut ids = Vec::new();
    for i in 0..3 {
        let v = b1
            .create(&VolumeSpec::new(
                VolumeName::new(format!("shared-{i}")).unwrap(),
                pool.clone(),
                1 << 20,
            ))
            .await
            .unwrap();
        ids.push(v.id);
    }

    // Both hosts pull every volume to their own VM, over and over, at the same time, while an
    // observer reads every VM's devices.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (observer, ids, stop) = (observer.clone(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let mut audits = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for id in &ids {
                    let h = observer.holders(id).await.unwrap();
                    assert!(h.len() <= 1, "{id} attached to {h:?}");
                }
                audits += 1;
            }
            audits
        })
    };
    let mut set = tokio::task::JoinSet::new();
    for round in 0..4 {
        for id in &ids {
            for (o, n) in [(o1.clone(), na.clone()), (o2.clone(), nb.clone())] {
                let id = id.clone();
                set.spawn(async move {
                    let policy = if round % 2 == 0 {
                        MovePolicy::Preempt
                    } else {
                        MovePolicy::Polite
                    };
                    o.move_volume(&id, &n, policy).await
                });
            }
        }
        let mut ok = 0;
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(
                    Error::Busy { .. }
                    | Error::StaleEpoch { .. }
                    | Error::AttachedElsewhere { .. }
                    | Error::LeaseHeld { .. },
                ) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(ok > 0, "round {round}: no move succeeded");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(watch.await.unwrap() > 0);

    // Both hosts recover whatever was left half-done; then every volume is on at most one VM,
    // no move is pending, and host 1 can take every volume.
    o1.recover().await.unwrap();
    o2.recover().await.unwrap();
    for id in &ids {
        assert!(observer.holders(id).await.unwrap().len() <= 1);
        assert!(o1.pending().await.unwrap().is_empty());
        let l = o1.move_volume(id, &na, MovePolicy::Preempt).await.unwrap();
        assert_eq!(l.holder, na);
        assert_eq!(observer.holders(id).await.unwrap(), vec![na.clone()]);
        // Host 2 sees host 1's lease (the store is shared) and may not use the volume.
        assert_eq!(o2.lease(id).await.unwrap().unwrap().holder, na);
        assert!(o2.device(id, &nb).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_modes_are_read_back_from_the_vms_devices() {
    use volume_core::backend::vsphere::AttachMode;
    let f = factory().await;
    let node = |s: &str| NodeId::new(s).unwrap();
    let persistent = Arc::new(f.connect().await.unwrap());
    assert_eq!(persistent.attach_mode(), AttachMode::Persistent);
    let v = persistent
        .create(&VolumeSpec::new(
            VolumeName::new("modes").unwrap(),
            f.pool(),
            1 << 20,
        ))
        .await
        .unwrap();
    assert_eq!(persistent.attachment(&v.id).await.unwrap(), None);
    persistent
        .attach(&v.id, &node("node-a"), Epoch(1))
        .await
        .unwrap();
    let (holder, mode) = persistent.attachment(&v.id).await.unwrap().unwrap();
    assert_eq!(holder, node("node-a"));
    assert_eq!(
        AttachMode::from_disk_mode(&mode),
        Some(AttachMode::Persistent)
    );
    persistent.detach(&v.id, Epoch(2)).await.unwrap();

    // Independent-persistent: a journaled move between two VMs, read back on each.
    let independent = Arc::new(
        f.connect()
            .await
            .unwrap()
            .with_attach_mode(AttachMode::IndependentPersistent),
    );
    let o = Orchestrator::new(independent.clone(), Arc::new(MemoryStore::default()));
    for to in ["node-a", "node-b"] {
        o.move_volume(&v.id, &node(to), MovePolicy::Preempt)
            .await
            .unwrap();
        let (holder, mode) = independent.attachment(&v.id).await.unwrap().unwrap();
        assert_eq!(holder, node(to));
        assert_eq!(mode, "independent_persistent");
        assert_eq!(independent.holders(&v.id).await.unwrap(), vec![node(to)]);
    }
    // The server still refuses a second attachment of an independently attached disk
    // (AttachDisk_Task from the persistent backend), and the backend names the holder.
    match persistent.attach(&v.id, &node("node-c"), Epoch(9)).await {
        Err(Error::AttachedElsewhere { .. }) => {}
        other => panic!("expected AttachedElsewhere, got {other:?}"),
    }
    // DetachDisk_Task detaches a disk that ReconfigVM_Task attached.
    independent.detach(&v.id, Epoch(9)).await.unwrap();
    assert_eq!(independent.attachment(&v.id).await.unwrap(), None);
    independent.destroy(&v.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_powered_off_holder_vm_is_dead_and_loses_its_lease_to_a_polite_move() {
    use volume_core::backend::vsphere::VmLiveness;
    use volume_core::orchestrator::{Liveness, NodeLiveness};
    let f = factory().await;
    let node = |s: &str| NodeId::new(s).unwrap();
    let b = Arc::new(f.connect().await.unwrap());
    let liveness = Arc::new(VmLiveness::new(b.clone()));
    // The factory's clones start powered off: dead for the purpose of force-detach.
    let vm_a = test_support::find(&f.client, "/DC0/vm/node-a").await;
    assert_eq!(liveness.liveness(&node("node-a")).await, Liveness::Dead);
    f.client.vm(vm_a.clone()).power_on().await.unwrap();
    assert_eq!(liveness.liveness(&node("node-a")).await, Liveness::Alive);
    assert_eq!(
        liveness.liveness(&node("no-such-vm")).await,
        Liveness::Dead,
        "a VM that does not exist cannot write"
    );
    let v = b
        .create(&VolumeSpec::new(
            VolumeName::new("live").unwrap(),
            f.pool(),
            1 << 20,
        ))
        .await
        .unwrap();
    let o = Orchestrator::new(b.clone(), Arc::new(MemoryStore::default()))
        .with_liveness(liveness.clone())
        .with_lease_ttl(Duration::from_secs(3600));
    o.move_volume(&v.id, &node("node-a"), MovePolicy::Polite)
        .await
        .unwrap();
    // node-a runs: its live lease holds.
    match o
        .move_volume(&v.id, &node("node-b"), MovePolicy::Polite)
        .await
    {
        Err(Error::LeaseHeld { .. }) => {}
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    f.client.vm(vm_a).power_off().await.unwrap();
    assert_eq!(liveness.liveness(&node("node-a")).await, Liveness::Dead);
    // Powered off: dead for the purpose of force-detach, so the polite move proceeds.
    o.move_volume(&v.id, &node("node-b"), MovePolicy::Polite)
        .await
        .unwrap();
    assert_eq!(b.holders(&v.id).await.unwrap(), vec![node("node-b")]);
    b.detach(&v.id, Epoch(u64::MAX)).await.unwrap();
    b.destroy(&v.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcd_capabilities_snapshots_clones_placement_and_no_growth_with_snapshots() {
    use volume_core::backend::CloneSource;
    use volume_core::backend::vsphere::PLACE_FREE_SPACE;
    let f = factory().await;
    // The kit's capability case: what is advertised works, what is not is Unsupported.
    let report = run_only(&f, &["csi_capabilities_honoured"]).await;
    assert!(report.failed.is_empty(), "{report}");

    let b = f.connect().await.unwrap();
    let caps = b.capabilities();
    assert!(caps.resize && caps.snapshot && caps.clone && caps.placement);
    assert!(
        !caps.clone_from_snapshot,
        "vsphere-sim has no CreateDiskFromSnapshot_Task: discovered at connect"
    );
    let mut spec = VolumeSpec::new(VolumeName::new("snappy").unwrap(), f.pool(), 2 << 20);
    spec.labels.insert("app", "db").unwrap();
    let v = b.create(&spec).await.unwrap();

    // Snapshots: idempotent by name, listed, and they block growth (typed).
    let s1 = b.snapshot(&v.id, "before-upgrade").await.unwrap();
    assert_eq!(b.snapshot(&v.id, "before-upgrade").await.unwrap(), s1);
    b.snapshot(&v.id, "second").await.unwrap();
    let names: Vec<String> = b
        .snapshots(&v.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["before-upgrade", "second"]);
    match b.resize(&v.id, 4 << 20, Epoch(1)).await {
        Err(Error::HasSnapshots { count: 2, .. }) => {}
        other => panic!("expected HasSnapshots, got {other:?}"),
    }
    assert_eq!(b.get(&v.id).await.unwrap().unwrap().size_bytes, 2 << 20);
    match b.revert_snapshot(&v.id, "no-such", Epoch(1)).await {
        Err(Error::UnknownSnapshot { .. }) => {}
        other => panic!("expected UnknownSnapshot, got {other:?}"),
    }
    // Reverting to the newest snapshot keeps both snapshots and the volume as it was.
    b.revert_snapshot(&v.id, "second", Epoch(1)).await.unwrap();
    assert_eq!(b.snapshots(&v.id).await.unwrap().len(), 2);
    let reverted = b.get(&v.id).await.unwrap().unwrap();
    assert_eq!(reverted.size_bytes, 2 << 20);
    assert_eq!(reverted.attached_to, None);
    match b
        .clone_volume(
            &CloneSource::Snapshot {
                volume: v.id.clone(),
                name: "second".to_owned(),
            },
            &VolumeSpec::new(VolumeName::new("from-snap").unwrap(), f.pool(), 1),
        )
        .await
    {
        Err(Error::Unsupported { .. }) => {}
        other => panic!("expected Unsupported, got {other:?}"),
    }
    b.delete_snapshot(&v.id, "before-upgrade").await.unwrap();
    b.delete_snapshot(&v.id, "second").await.unwrap();
    b.delete_snapshot(&v.id, "second").await.unwrap();
    assert!(b.snapshots(&v.id).await.unwrap().is_empty());
    assert_eq!(
        b.resize(&v.id, 4 << 20, Epoch(1)).await.unwrap().size_bytes,
        4 << 20
    );

    // Clones: a new First Class Disk with the source's size and the spec's labels,
    // idempotent by name, listed.
    let cspec = VolumeSpec::new(VolumeName::new("snappy-copy").unwrap(), f.pool(), 1);
    let c = b
        .clone_volume(&CloneSource::Volume(v.id.clone()), &cspec)
        .await
        .unwrap();
    assert_ne!(c.id, v.id);
    assert_eq!(c.size_bytes, 4 << 20);
    assert_eq!(
        b.clone_volume(&CloneSource::Volume(v.id.clone()), &cspec)
            .await
            .unwrap()
            .id,
        c.id
    );
    let fresh = f.connect().await.unwrap();
    assert!(fresh.get(&c.id).await.unwrap().is_some());
    match b
        .clone_volume(
            &CloneSource::Volume(v.id.clone()),
            &VolumeSpec::new(VolumeName::new("too-big").unwrap(), f.pool(), 64 << 20),
        )
        .await
    {
        Err(Error::InvalidArgument { .. }) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }

    // Placement by free space; unknown policies and impossible sizes are typed.
    assert_eq!(b.place(PLACE_FREE_SPACE, 1 << 20).await.unwrap(), f.pool());
    match b.place("gold", 1).await {
        Err(Error::InvalidArgument { .. }) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    match b.place(PLACE_FREE_SPACE, 1 << 60).await {
        Err(Error::CapacityExhausted { .. }) => {}
        other => panic!("expected CapacityExhausted, got {other:?}"),
    }
    b.destroy(&c.id).await.unwrap();
    b.destroy(&v.id).await.unwrap();
}
