//! The conformance kit against the loop-file backend: plain-file mode (no root needed) always,
//! and `losetup` mode when the tests run as root (the test command does).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::backend::{Backend, running_as_root};
use volume_core::conformance::{Factory, convergence_property, run_all};
use volume_core::{PoolId, Result};

struct Loop {
    mode: LoopMode,
    /// A pool capacity makes `create` read every sidecar; without one it uses name markers.
    capacity: Option<u64>,
    dirs: Mutex<Vec<tempfile::TempDir>>,
    backends: Mutex<Vec<Arc<LoopFileBackend>>>,
}

impl Loop {
    fn new(mode: LoopMode, capacity: Option<u64>) -> Self {
        Self {
            mode,
            capacity,
            dirs: Mutex::default(),
            backends: Mutex::default(),
        }
    }
}

#[async_trait]
impl Factory for Loop {
    async fn backend(&self) -> Result<Arc<dyn Backend>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = Arc::new(
            LoopFileBackend::new(dir.path(), self.mode)?.with_pool(self.pool(), self.capacity),
        );
        self.dirs.lock().unwrap().push(dir);
        self.backends.lock().unwrap().push(b.clone());
        Ok(b)
    }
    fn pool(&self) -> PoolId {
        PoolId::new("local").expect("valid pool")
    }
    fn real_devices(&self) -> bool {
        true
    }
    async fn teardown(&self, _backend: Arc<dyn Backend>) {
        let all: Vec<_> = self.backends.lock().unwrap().drain(..).collect();
        for b in all {
            b.release_devices().await.expect("release loop devices");
        }
        self.dirs.lock().unwrap().clear();
    }
}

#[tokio::test]
async fn plain_file_mode_passes_the_conformance_kit() {
    let report = run_all(&Loop::new(LoopMode::PlainFiles, None)).await;
    assert!(report.failed.is_empty(), "{report}");
}

#[tokio::test]
async fn plain_file_mode_with_a_pool_capacity_passes_the_conformance_kit() {
    let report = run_all(&Loop::new(LoopMode::PlainFiles, Some(1 << 40))).await;
    assert!(report.failed.is_empty(), "{report}");
}

#[test]
fn plain_file_mode_converges_from_any_state_to_any_state() {
    convergence_property(&Loop::new(LoopMode::PlainFiles, None), 16).unwrap();
}

#[tokio::test]
async fn losetup_mode_passes_the_conformance_kit() {
    if !running_as_root() {
        // Without root there are no loop devices; the plain-file mode above covers the backend.
        eprintln!("skipped: losetup mode needs root (the test command runs as root)");
        return;
    }
    let report = run_all(&Loop::new(LoopMode::Losetup, Some(1 << 40))).await;
    assert!(report.failed.is_empty(), "{report}");
}

#[test]
fn losetup_mode_converges_from_any_state_to_any_state() {
    if !running_as_root() {
        eprintln!("skipped: losetup mode needs root (the test command runs as root)");
        return;
    }
    convergence_property(&Loop::new(LoopMode::Losetup, None), 8).unwrap();
}

#[tokio::test]
async fn a_stale_name_marker_does_not_block_or_duplicate() {
    use volume_core::{VolumeName, VolumeSpec};
    let dir = tempfile::tempdir().unwrap();
    let pool = PoolId::new("local").unwrap();
    let b = LoopFileBackend::new(dir.path(), LoopMode::PlainFiles)
        .unwrap()
        .with_pool(pool.clone(), None);
    // A crash between writing the marker and the sidecar leaves a marker naming no volume.
    std::fs::write(dir.path().join("names/local@db"), "vol-never-committed").unwrap();
    let spec = VolumeSpec::new(VolumeName::new("db").unwrap(), pool.clone(), 1);
    let v = b.create(&spec).await.unwrap();
    assert_eq!(b.create(&spec).await.unwrap().id, v.id);
    assert_eq!(b.list().await.unwrap().len(), 1);
    // Names too long for a marker file fall back to reading every sidecar.
    let long = VolumeSpec::new(VolumeName::new("n".repeat(128)).unwrap(), pool.clone(), 1);
    let l = b.create(&long).await.unwrap();
    assert_eq!(b.create(&long).await.unwrap().id, l.id);
    assert_eq!(b.list().await.unwrap().len(), 2);
    // Destroying removes the marker, and the name is free again with a new id.
    b.destroy(&v.id).await.unwrap();
    assert!(!dir.path().join("names/local@db").exists());
    let w = b.create(&spec).await.unwrap();
    assert_ne!(w.id, v.id);
}

#[tokio::test]
async fn orphan_images_are_found_and_collected_but_volumes_are_not() {
    use volume_core::{VolumeName, VolumeSpec};
    let dir = tempfile::tempdir().unwrap();
    let pool = PoolId::new("local").unwrap();
    let b = LoopFileBackend::new(dir.path(), LoopMode::PlainFiles)
        .unwrap()
        .with_pool(pool.clone(), None);
    let v = b
        .create(&VolumeSpec::new(VolumeName::new("keep").unwrap(), pool, 1))
        .await
        .unwrap();
    // A crash between the image and the sidecar leaves an image no volume owns.
    let orphan = dir.path().join("unattached/vol-crashed.img");
    std::fs::write(&orphan, b"").unwrap();
    let found = b.collect_garbage(true).await.unwrap();
    assert_eq!(found, vec![orphan.clone()]);
    assert!(orphan.exists(), "a dry run deleted");
    assert_eq!(
        b.collect_garbage(false).await.unwrap(),
        vec![orphan.clone()]
    );
    assert!(!orphan.exists());
    assert!(b.collect_garbage(false).await.unwrap().is_empty());
    assert_eq!(b.list().await.unwrap()[0].id, v.id, "the volume survived");
}
