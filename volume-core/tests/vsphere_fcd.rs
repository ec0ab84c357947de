//! The conformance kit against the First Class Disk backend, on govmomi's vcsim 0.24.2.
//!
//! vcsim 0.24.2 implements CreateDisk/List/Retrieve/Delete of First Class Disks but not
//! `AttachDisk_Task`/`DetachDisk_Task` (the backend then attaches the FCD's VMDK through
//! `ReconfigVM_Task`, as it does on any server without them) nor `ExtendDisk_Task` (the
//! backend then reports no resize capability, and the kit checks that resize is refused as
//! `Unsupported`). Every case of the kit runs; none is skipped.
//!
//! Skips (with a printed reason) only when Go is absent and `CI` is unset.

#![cfg(feature = "vsphere")]

use std::sync::Arc;

use test_support::fcd::FcdFactory;
use test_support::runtime;
use test_support::vcsim::Vcsim;
use volume_core::backend::Backend;
use volume_core::backend::vsphere::{AttachMode, FcdBackend};
use volume_core::conformance::{Factory, case_names, convergence_property, run_all};
use volume_core::journal::vcenter::VcenterStore;
use volume_core::journal::{MemoryStore, Store, Table};
use volume_core::{Epoch, Error, NodeId, VolumeName, VolumeSpec};

/// A fresh backend instance (no bookkeeping) on the factory's client.
async fn b_fcd(f: &FcdFactory) -> FcdBackend {
    f.connect().await.unwrap()
}

/// The kit's factory on a running vcsim (the vcsim process stays with the test).
async fn factory(sim: &Vcsim) -> FcdFactory {
    FcdFactory::new(sim.client().await, ()).await
}

#[test]
fn fcd_backend_passes_the_conformance_kit_on_vcsim() {
    let Some(sim) = Vcsim::start(&[]) else { return };
    runtime().block_on(async {
        let f = factory(&sim).await;
        let report = run_all(&f).await;
        assert!(report.failed.is_empty(), "{report}");
        assert_eq!(report.passed.len(), case_names().len());
    });
}

#[test]
fn fcd_backend_converges_from_any_state_to_any_state_on_vcsim() {
    let Some(sim) = Vcsim::start(&[]) else { return };
    let rt = runtime();
    let f = rt.block_on(factory(&sim));
    // The property's runtime is its own; the client's keepalive runs on `rt`, kept alive here.
    convergence_property(&f, 6).unwrap();
    drop(rt);
}

#[test]
#[expect(clippy::many_single_char_names, reason = "short names in a short test")]
fn fcd_backend_specifics_on_vcsim() {
    let Some(sim) = Vcsim::start(&[]) else { return };
    runtime().block_on(async {
        let f = factory(&sim).await;
        let b = f.backend().await.unwrap();
        let info = b.info();
        assert_eq!(info.kind, "fcd");
        assert!(
            !info.capabilities.resize,
            "vcsim 0.24.2 has no ExtendDisk_Task, so resize must not be advertised"
        );
        assert!(
            !info.capabilities.snapshot,
            "vcsim 0.24.2's RetrieveSnapshotInfo answers InvalidArgument, not NotFound: no snapshots"
        );

        // Create is idempotent by name; the FCD keeps its disk after its VM is deleted.
        let spec = VolumeSpec::new(VolumeName::new("data").unwrap(), f.pool(), 3 << 20);
        let v = b.create(&spec).await.unwrap();
        assert_eq!(v.size_bytes, 3 << 20);
        assert_eq!(b.create(&spec).await.unwrap().id, v.id);

        // Node ids: a VM's moref value, its inventory path, or its unique name all name it.
        let vm_a = test_support::find(&f.client, "/DC0/vm/node-a").await;
        let by_moref = NodeId::new(vm_a.value.clone()).unwrap();
        let by_path = NodeId::new("/DC0/vm/node-a").unwrap();
        let by_name = NodeId::new("node-a").unwrap();
        let a = b.attach(&v.id, &by_path, Epoch(1)).await.unwrap();
        assert_eq!(a.attached_to.as_ref(), Some(&by_path));
        // The same VM under another of its names: already attached, not elsewhere.
        b.attach(&v.id, &by_moref, Epoch(1)).await.unwrap();
        b.attach(&v.id, &by_name, Epoch(1)).await.unwrap();
        let d = b.device(&v.id, &by_moref).await.unwrap();
        assert!(
            d.path
                .to_string_lossy()
                .starts_with("/dev/disk/by-id/wwn-0x"),
            "{d:?}"
        );

        // Attachment truth is read from the VM: the disk is a VirtualDisk with this vDiskId in
        // node-a's config.hardware.device, in the backend's default mode (persistent; vcsim
        // has no AttachDisk_Task, so the backend reconfigured the VM).
        assert_eq!(
            b_fcd(&f).await.attachment(&v.id).await.unwrap(),
            Some((by_moref.clone(), "persistent".to_owned()))
        );
        let other = NodeId::new("node-b").unwrap();
        match b.attach(&v.id, &other, Epoch(1)).await {
            Err(Error::AttachedElsewhere { .. }) => {}
            other => panic!("expected AttachedElsewhere, got {other:?}"),
        }
        // A second backend instance (another process) sees the attachment too.
        let fresh = FcdBackend::connect(f.client.clone(), [f.pool()])
            .await
            .unwrap();
        let seen = fresh.get(&v.id).await.unwrap().unwrap();
        assert_eq!(
            seen.attached_to,
            Some(NodeId::new(vm_a.value.clone()).unwrap())
        );
        match fresh.attach(&v.id, &other, Epoch(1)).await {
            Err(Error::AttachedElsewhere { node, .. }) => assert_eq!(node.as_str(), vm_a.value),
            other => panic!("expected AttachedElsewhere, got {other:?}"),
        }

        // Unknown nodes are typed errors and change nothing.
        match b
            .attach(&v.id, &NodeId::new("no-such-vm").unwrap(), Epoch(1))
            .await
        {
            Err(Error::UnknownNode { .. } | Error::AttachedElsewhere { .. }) => {}
            other => panic!("expected UnknownNode, got {other:?}"),
        }
        b.detach(&v.id, Epoch(2)).await.unwrap();
        match b
            .attach(&v.id, &NodeId::new("no-such-vm").unwrap(), Epoch(2))
            .await
        {
            Err(Error::UnknownNode { .. }) => {}
            other => panic!("expected UnknownNode, got {other:?}"),
        }
        assert!(b.get(&v.id).await.unwrap().unwrap().attached_to.is_none());

        // Independent-persistent attachment, read back from the VM's devices.
        let independent = b_fcd(&f)
            .await
            .with_attach_mode(AttachMode::IndependentPersistent);
        independent.attach(&v.id, &by_name, Epoch(3)).await.unwrap();
        assert_eq!(
            independent.attachment(&v.id).await.unwrap(),
            Some((by_name.clone(), "independent_persistent".to_owned()))
        );
        independent.detach(&v.id, Epoch(3)).await.unwrap();
        assert_eq!(independent.attachment(&v.id).await.unwrap(), None);

        // Resize is refused as unsupported on this server.
        match b.resize(&v.id, 8 << 20, Epoch(2)).await {
            Err(Error::Unsupported { .. }) => {}
            other => panic!("expected Unsupported, got {other:?}"),
        }

        // vcsim 0.24.2 keeps no disk metadata updates (it has no
        // VCenterUpdateVStorageObjectMetadataEx_Task): the vCenter journal store reads (the
        // metadata comes with RetrieveVStorageObject) and refuses writes with a typed error.
        let store = VcenterStore::connect(
            f.client.clone(),
            [f.pool()],
            Arc::new(MemoryStore::default()),
        )
        .await
        .unwrap();
        assert_eq!(store.get(Table::Leases, v.id.as_str()).await.unwrap(), None);
        match store
            .cas(Table::Leases, v.id.as_str(), None, Some(b"x"))
            .await
        {
            Err(Error::Unsupported { .. }) => {}
            other => panic!("expected Unsupported, got {other:?}"),
        }
        b.destroy(&v.id).await.unwrap();
        assert!(b.get(&v.id).await.unwrap().is_none());
    });
}
