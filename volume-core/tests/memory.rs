//! The conformance kit against the in-memory backend.

use std::sync::Arc;

use async_trait::async_trait;
use volume_core::backend::Backend;
use volume_core::backend::memory::MemoryBackend;
use volume_core::conformance::{Factory, convergence_property, run_all};
use volume_core::{PoolId, Result};

struct Memory;

#[async_trait]
impl Factory for Memory {
    async fn backend(&self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(
            MemoryBackend::builder()
                .pool("pool", 1 << 40)
                .policy("gold", PoolId::new("pool")?)
                .build(),
        ))
    }
    fn pool(&self) -> PoolId {
        PoolId::new("pool").expect("valid pool")
    }
}

#[tokio::test]
async fn memory_backend_passes_the_conformance_kit() {
    let report = run_all(&Memory).await;
    assert!(report.failed.is_empty(), "{report}");
    assert_eq!(
        report.passed.len(),
        volume_core::conformance::case_names().len()
    );
}

#[test]
fn memory_backend_converges_from_any_state_to_any_state() {
    convergence_property(&Memory, 64).unwrap();
}

mod common;

#[tokio::test]
async fn a_refused_move_changes_nothing_on_memory() {
    let node = |s: &str| volume_core::NodeId::new(s).unwrap();
    let backend: Arc<dyn Backend> = Arc::new(
        MemoryBackend::builder()
            .pool("pool", 1 << 30)
            .node(node("vm-a"))
            .node(node("vm-b"))
            .build(),
    );
    let v = backend
        .create(&volume_core::VolumeSpec::new(
            volume_core::VolumeName::new("refused").unwrap(),
            PoolId::new("pool").unwrap(),
            1,
        ))
        .await
        .unwrap();
    let o = volume_core::orchestrator::Orchestrator::new(
        backend,
        Arc::new(volume_core::journal::MemoryStore::default()),
    );
    common::refused_moves_change_nothing(
        &o,
        &v.id,
        &node("vm-a"),
        &node("vm-b"),
        &node("vm-ghost"),
    )
    .await;
}
