//! A wrapper that counts the calls reaching a backend: the "round trips" of a move, whatever
//! the backend (for vSphere, each call is one or more vCenter requests).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{Backend, BackendInfo, CloneSource, Snapshot};
use crate::error::Result;
use crate::model::{Device, Epoch, NodeId, PoolId, Volume, VolumeId, VolumeSpec};

/// Counts calls to the wrapped backend.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use volume_core::backend::{counting::Counting, memory::MemoryBackend, Backend};
/// let b = Counting::new(Arc::new(MemoryBackend::builder().pool("p", 1 << 30).build()));
/// b.list().await.unwrap();
/// assert_eq!(b.calls(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn Backend>,
    calls: AtomicU64,
}

impl Counting {
    /// Wraps a backend.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
        }
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Resets the count and returns the previous value.
    pub fn take(&self) -> u64 {
        self.calls.swap(0, Ordering::Relaxed)
    }

    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Backend for Counting {
    fn info(&self) -> BackendInfo {
        self.inner.info()
    }
    async fn create(&self, spec: &VolumeSpec) -> Result<Volume> {
        self.tick();
        self.inner.create(spec).await
    }
    async fn destroy(&self, id: &VolumeId) -> Result<()> {
        self.tick();
        self.inner.destroy(id).await
    }
    async fn check_node(&self, node: &NodeId) -> Result<()> {
        self.tick();
        self.inner.check_node(node).await
    }
    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume> {
        self.tick();
        self.inner.attach(id, node, epoch).await
    }
    async fn detach(&self, id: &VolumeId, epoch: Epoch) -> Result<()> {
        self.tick();
        self.inner.detach(id, epoch).await
    }
    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume> {
        self.tick();
        self.inner.fence(id, epoch).await
    }
    async fn list(&self) -> Result<Vec<Volume>> {
        self.tick();
        self.inner.list().await
    }
    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        self.tick();
        self.inner.get(id).await
    }
    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        self.tick();
        self.inner.device(id, node).await
    }
    async fn resize(&self, id: &VolumeId, size_bytes: u64, epoch: Epoch) -> Result<Volume> {
        self.tick();
        self.inner.resize(id, size_bytes, epoch).await
    }
    async fn snapshot(&self, id: &VolumeId, name: &str) -> Result<Snapshot> {
        self.tick();
        self.inner.snapshot(id, name).await
    }
    async fn snapshots(&self, id: &VolumeId) -> Result<Vec<Snapshot>> {
        self.tick();
        self.inner.snapshots(id).await
    }
    async fn clone_volume(&self, source: &CloneSource, spec: &VolumeSpec) -> Result<Volume> {
        self.tick();
        self.inner.clone_volume(source, spec).await
    }
    async fn place(&self, policy: &str, size_bytes: u64) -> Result<PoolId> {
        self.tick();
        self.inner.place(policy, size_bytes).await
    }
}
