//! The vSphere halves of volume-core and vmenv-core against the SDK's own simulator.
//!
//! `volume-core` and `vmenv-core` may not depend on `vsphere-sim` (layering: only `examples`
//! depends on everything), so the runs of their conformance kits on the embedded simulator live
//! here; the same kits run on govmomi's vcsim in those crates' own `tests/`.

use std::time::Duration;

use test_support::fcd::FcdFactory;
use test_support::runtime;
use test_support::sim::Sim;
use volume_core::conformance::{Factory, case_names, convergence_property, run_all};
use volume_core::{Epoch, Error, NodeId, VolumeName, VolumeSpec};

/// The kit's factory on a fresh embedded simulator (1 ms per task stage).
async fn factory() -> FcdFactory {
    let sim = Sim::start(Duration::from_millis(1)).await;
    let client = sim.client().await;
    FcdFactory::new(client, sim).await
}

#[test]
fn fcd_backend_passes_the_conformance_kit_on_vsphere_sim() {
    runtime().block_on(async {
        let f = factory().await;
        let report = run_all(&f).await;
        assert!(report.failed.is_empty(), "{report}");
        assert_eq!(report.passed.len(), case_names().len());
    });
}

#[test]
fn fcd_backend_converges_from_any_state_to_any_state_on_vsphere_sim() {
    let rt = runtime();
    let f = rt.block_on(factory());
    convergence_property(&f, 6).unwrap();
    drop(rt);
}

#[test]
fn fcd_backend_uses_attach_disk_and_refuses_a_second_vm_on_vsphere_sim() {
    runtime().block_on(async {
        let f = factory().await;
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
