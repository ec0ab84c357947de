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
    dirs: Mutex<Vec<tempfile::TempDir>>,
    backends: Mutex<Vec<Arc<LoopFileBackend>>>,
}

impl Loop {
    fn new(mode: LoopMode) -> Self {
        Self {
            mode,
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
            LoopFileBackend::new(dir.path(), self.mode)?.with_pool(self.pool(), Some(1 << 40)),
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
    let report = run_all(&Loop::new(LoopMode::PlainFiles)).await;
    assert!(report.failed.is_empty(), "{report}");
}

#[test]
fn plain_file_mode_converges_from_any_state_to_any_state() {
    convergence_property(&Loop::new(LoopMode::PlainFiles), 16).unwrap();
}

#[tokio::test]
async fn losetup_mode_passes_the_conformance_kit() {
    if !running_as_root() {
        // Without root there are no loop devices; the plain-file mode above covers the backend.
        eprintln!("skipped: losetup mode needs root (the test command runs as root)");
        return;
    }
    let report = run_all(&Loop::new(LoopMode::Losetup)).await;
    assert!(report.failed.is_empty(), "{report}");
}

#[test]
fn losetup_mode_converges_from_any_state_to_any_state() {
    if !running_as_root() {
        eprintln!("skipped: losetup mode needs root (the test command runs as root)");
        return;
    }
    convergence_property(&Loop::new(LoopMode::Losetup), 8).unwrap();
}
