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
