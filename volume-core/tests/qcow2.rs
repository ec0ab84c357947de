//! The conformance kit against the qcow2 backend (`qemu-img`), attaching by image hand-off.

use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use volume_core::backend::Backend;
use volume_core::backend::qcow2::{ImageHandoff, Qcow2Backend};
use volume_core::conformance::{Factory, convergence_property, run_all};
use volume_core::{PoolId, Result};

#[derive(Default)]
struct Qcow2 {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

#[async_trait]
impl Factory for Qcow2 {
    async fn backend(&self) -> Result<Arc<dyn Backend>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = Qcow2Backend::new(dir.path(), Box::new(ImageHandoff::default()))?
            .with_pool(self.pool(), None);
        self.dirs.lock().unwrap().push(dir);
        Ok(Arc::new(b))
    }
    fn pool(&self) -> PoolId {
        PoolId::new("images").expect("valid pool")
    }
    fn real_devices(&self) -> bool {
        true
    }
    async fn teardown(&self, _backend: Arc<dyn Backend>) {
        self.dirs.lock().unwrap().clear();
    }
}

#[tokio::test]
async fn qcow2_backend_passes_the_conformance_kit() {
    let report = run_all(&Qcow2::default()).await;
    assert!(report.failed.is_empty(), "{report}");
}

#[test]
fn qcow2_backend_converges_from_any_state_to_any_state() {
    convergence_property(&Qcow2::default(), 8).unwrap();
}

/// Runs `qemu-io` on an image and returns whether the command succeeded.
fn qemu_io(image: &std::path::Path, cmd: &str) -> bool {
    std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd, &image.to_string_lossy()])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed")
        })
}

#[tokio::test]
async fn snapshots_and_clones_carry_the_data_of_their_moment() {
    use volume_core::backend::CloneSource;
    use volume_core::{Epoch, NodeId, VolumeName, VolumeSpec};

    let dir = tempfile::tempdir().unwrap();
    let pool = PoolId::new("images").unwrap();
    let b = Qcow2Backend::new(dir.path(), Box::new(ImageHandoff::default()))
        .unwrap()
        .with_pool(pool.clone(), None);
    let v = b
        .create(&VolumeSpec::new(
            VolumeName::new("db").unwrap(),
            pool.clone(),
            4 << 20,
        ))
        .await
        .unwrap();
    let img = b.image_path(&v.id);
    // Write 0xab, snapshot, overwrite with 0xcd: the snapshot keeps 0xab.
    assert!(qemu_io(&img, "write -P 0xab 0 64k"));
    b.snapshot(&v.id, "before").await.unwrap();
    assert!(qemu_io(&img, "write -P 0xcd 0 64k"));
    let from_snap = b
        .clone_volume(
            &CloneSource::Snapshot {
                volume: v.id.clone(),
                name: "before".to_owned(),
            },
            &VolumeSpec::new(VolumeName::new("db-then").unwrap(), pool.clone(), 1),
        )
        .await
        .unwrap();
    assert!(qemu_io(&b.image_path(&from_snap.id), "read -P 0xab 0 64k"));
    assert!(!qemu_io(&b.image_path(&from_snap.id), "read -P 0xcd 0 64k"));
    let from_live = b
        .clone_volume(
            &CloneSource::Volume(v.id.clone()),
            &VolumeSpec::new(VolumeName::new("db-now").unwrap(), pool.clone(), 8 << 20),
        )
        .await
        .unwrap();
    assert!(qemu_io(&b.image_path(&from_live.id), "read -P 0xcd 0 64k"));
    assert_eq!(
        from_live.size_bytes,
        8 << 20,
        "a clone may be larger than its source"
    );
    // Cloning the live content of an attached volume is refused; its snapshot is not.
    b.attach(&v.id, &NodeId::new("vm-a").unwrap(), Epoch::ZERO)
        .await
        .unwrap();
    let refused = b
        .clone_volume(
            &CloneSource::Volume(v.id.clone()),
            &VolumeSpec::new(VolumeName::new("db-busy").unwrap(), pool.clone(), 1),
        )
        .await;
    assert!(
        matches!(refused, Err(volume_core::Error::InUse { .. })),
        "{refused:?}"
    );
    // Offline resize only: refused while attached, done after the detach.
    assert!(matches!(
        b.resize(&v.id, 16 << 20, Epoch::ZERO).await,
        Err(volume_core::Error::InUse { .. })
    ));
    b.detach(&v.id, Epoch::ZERO).await.unwrap();
    let grown = b.resize(&v.id, 16 << 20, Epoch::ZERO).await.unwrap();
    assert_eq!(grown.size_bytes, 16 << 20);
    assert!(qemu_io(&img, "read -P 0xcd 0 64k"), "resize kept the data");
}

#[tokio::test]
async fn qcow2_orphans_are_collected() {
    use volume_core::{VolumeName, VolumeSpec};
    let dir = tempfile::tempdir().unwrap();
    let pool = PoolId::new("images").unwrap();
    let b = Qcow2Backend::new(dir.path(), Box::new(ImageHandoff::default()))
        .unwrap()
        .with_pool(pool.clone(), None);
    let v = b
        .create(&VolumeSpec::new(VolumeName::new("keep").unwrap(), pool, 1))
        .await
        .unwrap();
    let orphan = dir.path().join("images/vol-crashed.qcow2");
    std::fs::write(&orphan, b"").unwrap();
    assert_eq!(
        b.collect_garbage(false).await.unwrap(),
        vec![orphan.clone()]
    );
    assert!(!orphan.exists());
    assert!(b.image_path(&v.id).exists(), "the volume's image survived");
}
