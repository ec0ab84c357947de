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
