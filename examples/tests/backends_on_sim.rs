//! The vSphere halves of volume-core and vmenv-core against the SDK's own simulator.
//!
//! `volume-core` and `vmenv-core` may not depend on `vsphere-sim` (layering: only `examples`
//! depends on everything), so the runs of their conformance kits on the embedded simulator live
//! here; the same kits run on govmomi's vcsim in those crates' own `tests/`.

use std::sync::Arc;

use async_trait::async_trait;
use volume_core::backend::Backend;
use volume_core::backend::vsphere::FcdBackend;
use volume_core::conformance::{Factory, case_names, convergence_property, run_all};
use volume_core::{Epoch, Error, NodeId, PoolId, Result, VolumeName, VolumeSpec};
use vsphere_client::client::{Client, ConnectOptions};
use vsphere_client::types::VirtualMachineCloneSpec;
use vsphere_sim::Simulator;

/// The simulator's local datastore (vcsim's name for it).
const POOL: &str = "LocalDS_0";
/// VMs the kit attaches to: its three nodes, the unicode node of case f02 and the eight racers
/// of `conc_attach_one_winner`.
const VMS: &[&str] = &[
    "node-a",
    "node-b",
    "node-c",
    "nœud-ü-東京",
    "racer-0",
    "racer-1",
    "racer-2",
    "racer-3",
    "racer-4",
    "racer-5",
    "racer-6",
    "racer-7",
];

struct Fcd {
    client: Arc<Client>,
    _sim: Simulator,
}

impl Fcd {
    async fn new() -> Self {
        let sim = Simulator::builder()
            .task_step(std::time::Duration::from_millis(1))
            .start()
            .await
            .expect("start the simulator");
        let options = ConnectOptions::new(&sim.url_with_credentials()).expect("simulator URL");
        let client = Arc::new(Client::connect(options).await.expect("connect"));
        let finder = client.finder().await.expect("finder");
        let template = finder
            .virtual_machine("/DC0/vm/DC0_H0_VM0")
            .expect("the template VM")
            .reference
            .clone();
        let folder = finder
            .find("/DC0/vm")
            .first()
            .expect("the VM folder")
            .reference
            .clone();
        for name in VMS {
            client
                .vm(template.clone())
                .clone_to(&folder, name, &VirtualMachineCloneSpec::default())
                .await
                .expect("clone a node VM");
        }
        Self { client, _sim: sim }
    }
}

#[async_trait]
impl Factory for Fcd {
    async fn backend(&self) -> Result<Arc<dyn Backend>> {
        let b = FcdBackend::connect(self.client.clone(), [PoolId::new(POOL)?]).await?;
        // A fresh backend has no volumes: remove what earlier cases left on the datastore.
        for v in b.list().await? {
            b.detach(&v.id, Epoch(u64::MAX)).await?;
            b.destroy(&v.id).await?;
        }
        Ok(Arc::new(b))
    }

    fn pool(&self) -> PoolId {
        PoolId::new(POOL).expect("valid pool")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn fcd_backend_passes_the_conformance_kit_on_vsphere_sim() {
    runtime().block_on(async {
        let f = Fcd::new().await;
        let report = run_all(&f).await;
        assert!(report.failed.is_empty(), "{report}");
        assert_eq!(report.passed.len(), case_names().len());
    });
}

#[test]
fn fcd_backend_converges_from_any_state_to_any_state_on_vsphere_sim() {
    let rt = runtime();
    let f = rt.block_on(Fcd::new());
    convergence_property(&f, 6).unwrap();
    drop(rt);
}

#[test]
fn fcd_backend_uses_attach_disk_and_refuses_a_second_vm_on_vsphere_sim() {
    runtime().block_on(async {
        let f = Fcd::new().await;
        let b = f.backend().await.unwrap();
        let spec = VolumeSpec::new(VolumeName::new("data").unwrap(), f.pool(), 3 << 20);
        let v = b.create(&spec).await.unwrap();
        assert_eq!(
            b.create(&spec).await.unwrap().id,
            v.id,
            "create is idempotent"
        );
        let a = NodeId::new("node-a").unwrap();
        b.attach(&v.id, &a, Epoch(1)).await.unwrap();
        // The simulator refuses server-side too; the backend sees the attachment first.
        match b
            .attach(&v.id, &NodeId::new("node-b").unwrap(), Epoch(1))
            .await
        {
            Err(Error::AttachedElsewhere { .. }) => {}
            other => panic!("expected AttachedElsewhere, got {other:?}"),
        }
        b.detach(&v.id, Epoch(2)).await.unwrap();
        b.attach(&v.id, &NodeId::new("node-b").unwrap(), Epoch(3))
            .await
            .unwrap();
        b.detach(&v.id, Epoch(4)).await.unwrap();
        b.destroy(&v.id).await.unwrap();
        assert!(b.get(&v.id).await.unwrap().is_none());
    });
}
