//! An in-memory backend for tests and examples, with every optional capability, pool
//! capacities, and a wrapper whose listing lags (an eventually consistent backend).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::rules::{self, AttachDecision, CreateDecision, DetachDecision};
use super::{Backend, BackendInfo, Capabilities, CloneSource, Snapshot};
use crate::error::{Error, Result};
use crate::model::{Allocation, Device, DeviceFormat, Epoch, NodeId, PoolId, Volume, VolumeId};

#[derive(Debug, Default)]
struct State {
    volumes: BTreeMap<VolumeId, Volume>,
    snapshots: BTreeMap<VolumeId, Vec<Snapshot>>,
}

/// An in-memory backend. Devices are virtual paths under `/dev/volume-core-memory/`; nothing
/// touches the disk. Pools are declared up front with their capacity.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use volume_core::backend::{memory::MemoryBackend, Backend};
/// use volume_core::{Epoch, NodeId, PoolId, VolumeName, VolumeSpec};
///
/// let b = MemoryBackend::builder().pool("pool", 1 << 30).build();
/// let spec = VolumeSpec::new(VolumeName::new("db").unwrap(), PoolId::new("pool").unwrap(), 1);
/// let v = b.create(&spec).await.unwrap();
/// let node = NodeId::new("vm-a").unwrap();
/// b.attach(&v.id, &node, Epoch::ZERO).await.unwrap();
/// assert_eq!(b.get(&v.id).await.unwrap().unwrap().attached_to, Some(node));
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryBackend {
    state: Mutex<State>,
    pools: BTreeMap<PoolId, u64>,
    policies: BTreeMap<String, PoolId>,
    allocation: Allocation,
    /// The nodes volumes may be attached to; empty: any node.
    nodes: BTreeSet<NodeId>,
}

/// Builds a [`MemoryBackend`].
#[derive(Debug)]
pub struct MemoryBackendBuilder {
    pools: BTreeMap<PoolId, u64>,
    policies: BTreeMap<String, PoolId>,
    allocation: Allocation,
    nodes: BTreeSet<NodeId>,
}

impl MemoryBackendBuilder {
    /// Adds a pool with a capacity in bytes. Panics on an invalid pool name (a programming
    /// error in a test or example); use [`MemoryBackendBuilder::pool_id`] for checked input.
    #[must_use]
    pub fn pool(self, name: &str, capacity: u64) -> Self {
        let id = PoolId::new(name).expect("valid pool name");
        self.pool_id(id, capacity)
    }

    /// Adds a pool with a capacity in bytes.
    #[must_use]
    pub fn pool_id(mut self, id: PoolId, capacity: u64) -> Self {
        self.pools.insert(id, capacity);
        self
    }

    /// Maps a storage policy name to a pool, for [`Backend::place`].
    #[must_use]
    pub fn policy(mut self, policy: &str, pool: PoolId) -> Self {
        self.policies.insert(policy.to_owned(), pool);
        self
    }

    /// Sets the allocation policy (default: 1 MiB units, 1 MiB minimum).
    #[must_use]
    pub fn allocation(mut self, allocation: Allocation) -> Self {
        self.allocation = allocation;
        self
    }

    /// Declares a node volumes may be attached to. Once any node is declared, attaching to an
    /// undeclared one is [`Error::UnknownNode`] (as a hypervisor refuses a VM it does not have);
    /// without declared nodes every node is known.
    #[must_use]
    pub fn node(mut self, node: NodeId) -> Self {
        self.nodes.insert(node);
        self
    }

    /// Builds the backend.
    pub fn build(self) -> MemoryBackend {
        MemoryBackend {
            state: Mutex::default(),
            pools: self.pools,
            policies: self.policies,
            allocation: self.allocation,
            nodes: self.nodes,
        }
    }
}

impl MemoryBackend {
    /// A builder with no pools.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder {
            pools: BTreeMap::new(),
            policies: BTreeMap::new(),
            allocation: Allocation::new(1 << 20, 1 << 20).expect("valid default allocation"),
            nodes: BTreeSet::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied record: every mutation is
        // one assignment. So a poisoned lock is safe to reuse.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn available(&self, state: &State, pool: &PoolId) -> Result<u64> {
        let cap = *self
            .pools
            .get(pool)
            .ok_or_else(|| Error::UnknownPool { pool: pool.clone() })?;
        let used: u64 = state
            .volumes
            .values()
            .filter(|v| &v.pool == pool)
            .map(|v| v.size_bytes)
            .sum();
        Ok(cap.saturating_sub(used))
    }

    fn known<'a>(state: &'a mut State, id: &VolumeId) -> Result<&'a mut Volume> {
        state
            .volumes
            .get_mut(id)
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "memory",
            allocation: self.allocation,
            capabilities: Capabilities {
                resize: true,
                online_resize: true,
                snapshot: true,
                clone: true,
                clone_from_snapshot: true,
                placement: !self.policies.is_empty(),
            },
        }
    }

    async fn create(&self, spec: &crate::model::VolumeSpec) -> Result<Volume> {
        let mut s = self.lock();
        let available = self.available(&s, &spec.pool)?;
        match rules::decide_create(spec, s.volumes.values(), self.allocation, Some(available))? {
            CreateDecision::Existing(v) => Ok(v),
            CreateDecision::Create { .. } => {
                let v = rules::new_volume(spec, self.allocation)?;
                s.volumes.insert(v.id.clone(), v.clone());
                Ok(v)
            }
        }
    }

    async fn destroy(&self, id: &VolumeId) -> Result<()> {
        let mut s = self.lock();
        if rules::decide_destroy(s.volumes.get(id))? {
            s.volumes.remove(id);
            s.snapshots.remove(id);
        }
        Ok(())
    }

    async fn check_node(&self, node: &NodeId) -> Result<()> {
        if self.nodes.is_empty() || self.nodes.contains(node) {
            Ok(())
        } else {
            Err(Error::UnknownNode {
                node: node.clone(),
                reason: "not one of the backend's declared nodes".to_owned(),
            })
        }
    }

    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume> {
        self.check_node(node).await?;
        let mut s = self.lock();
        let v = Self::known(&mut s, id)?;
        if rules::decide_attach(v, node, epoch)? == AttachDecision::Attach {
            rules::apply_attach(v, node, epoch);
        }
        Ok(v.clone())
    }

    async fn detach(&self, id: &VolumeId, epoch: Epoch) -> Result<()> {
        let mut s = self.lock();
        if let DetachDecision::Detach(_) = rules::decide_detach(s.volumes.get(id), epoch)? {
            let v = Self::known(&mut s, id)?;
            rules::apply_detach(v, epoch);
        }
        Ok(())
    }

    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume> {
        let mut s = self.lock();
        rules::decide_fence(s.volumes.get(id), id, epoch)?;
        let v = Self::known(&mut s, id)?;
        rules::apply_fence(v, epoch);
        Ok(v.clone())
    }

    async fn list(&self) -> Result<Vec<Volume>> {
        Ok(self.lock().volumes.values().cloned().collect())
    }

    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        Ok(self.lock().volumes.get(id).cloned())
    }

    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        let s = self.lock();
        rules::decide_device(s.volumes.get(id), id, node)?;
        Ok(Device {
            path: PathBuf::from(format!("/dev/volume-core-memory/{id}")),
            format: DeviceFormat::Raw,
        })
    }

    async fn resize(&self, id: &VolumeId, size_bytes: u64, epoch: Epoch) -> Result<Volume> {
        let mut s = self.lock();
        let v = s
            .volumes
            .get(id)
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?
            .clone();
        let Some(new) =
            rules::decide_resize(Some(&v), id, size_bytes, self.allocation, true, epoch)?
        else {
            return Ok(v);
        };
        let available = self.available(&s, &v.pool)?;
        if new - v.size_bytes > available {
            return Err(Error::CapacityExhausted {
                pool: v.pool,
                requested: new - v.size_bytes,
                available,
            });
        }
        let v = Self::known(&mut s, id)?;
        rules::apply_resize(v, new, epoch);
        Ok(v.clone())
    }

    async fn snapshot(&self, id: &VolumeId, name: &str) -> Result<Snapshot> {
        rules::check_snapshot_name(name)?;
        let mut s = self.lock();
        let size = Self::known(&mut s, id)?.size_bytes;
        let list = s.snapshots.entry(id.clone()).or_default();
        if let Some(existing) = list.iter().find(|x| x.name == name) {
            return Ok(existing.clone());
        }
        let snap = Snapshot {
            volume: id.clone(),
            name: name.to_owned(),
            size_bytes: size,
        };
        list.push(snap.clone());
        Ok(snap)
    }

    async fn snapshots(&self, id: &VolumeId) -> Result<Vec<Snapshot>> {
        let mut s = self.lock();
        Self::known(&mut s, id)?;
        Ok(s.snapshots.get(id).cloned().unwrap_or_default())
    }

    async fn clone_volume(
        &self,
        source: &CloneSource,
        spec: &crate::model::VolumeSpec,
    ) -> Result<Volume> {
        let mut s = self.lock();
        let min = match source {
            CloneSource::Volume(id) => Self::known(&mut s, id)?.size_bytes,
            CloneSource::Snapshot { volume, name } => {
                Self::known(&mut s, volume)?;
                s.snapshots
                    .get(volume)
                    .and_then(|l| l.iter().find(|x| &x.name == name))
                    .ok_or_else(|| Error::UnknownSnapshot {
                        id: volume.clone(),
                        snapshot: name.clone(),
                    })?
                    .size_bytes
            }
        };
        let mut spec = spec.clone();
        spec.size_bytes = spec.size_bytes.max(min);
        let available = self.available(&s, &spec.pool)?;
        match rules::decide_create(&spec, s.volumes.values(), self.allocation, Some(available))? {
            CreateDecision::Existing(v) => Ok(v),
            CreateDecision::Create { .. } => {
                let v = rules::new_volume(&spec, self.allocation)?;
                s.volumes.insert(v.id.clone(), v.clone());
                Ok(v)
            }
        }
    }

    async fn place(&self, policy: &str, size_bytes: u64) -> Result<PoolId> {
        if self.policies.is_empty() {
            return Err(Error::Unsupported {
                feature: "placement by policy",
            });
        }
        let pool = self
            .policies
            .get(policy)
            .ok_or_else(|| Error::invalid("storage policy", format!("unknown policy {policy}")))?;
        let want = self.allocation.round_up(size_bytes)?;
        let available = self.available(&self.lock(), pool)?;
        if want > available {
            return Err(Error::CapacityExhausted {
                pool: pool.clone(),
                requested: want,
                available,
            });
        }
        Ok(pool.clone())
    }
}

/// Wraps a backend so that `list` answers with the listing from `lag` calls ago: Flocker's
/// `EventuallyConsistentBlockDeviceAPI`. Every other call goes straight through.
#[derive(Debug)]
pub struct LaggingListing {
    inner: Arc<dyn Backend>,
    lag: usize,
    history: Mutex<VecDeque<Vec<Volume>>>,
}

impl LaggingListing {
    /// Wraps `inner`; listings lag `lag` calls behind.
    pub fn new(inner: Arc<dyn Backend>, lag: usize) -> Self {
        Self {
            inner,
            lag,
            history: Mutex::default(),
        }
    }
}

#[async_trait]
impl Backend for LaggingListing {
    fn info(&self) -> BackendInfo {
        self.inner.info()
    }
    async fn create(&self, spec: &crate::model::VolumeSpec) -> Result<Volume> {
        self.inner.create(spec).await
    }
    async fn destroy(&self, id: &VolumeId) -> Result<()> {
        self.inner.destroy(id).await
    }
    async fn check_node(&self, node: &NodeId) -> Result<()> {
        self.inner.check_node(node).await
    }
    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume> {
        self.inner.attach(id, node, epoch).await
    }
    async fn detach(&self, id: &VolumeId, epoch: Epoch) -> Result<()> {
        self.inner.detach(id, epoch).await
    }
    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume> {
        self.inner.fence(id, epoch).await
    }
    async fn list(&self) -> Result<Vec<Volume>> {
        let now = self.inner.list().await?;
        let mut h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.push_back(now);
        while h.len() > self.lag + 1 {
            h.pop_front();
        }
        Ok(h.front().cloned().unwrap_or_default())
    }
    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        Ok(self.list().await?.into_iter().find(|v| &v.id == id))
    }
    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        self.inner.device(id, node).await
    }
    async fn resize(&self, id: &VolumeId, size_bytes: u64, epoch: Epoch) -> Result<Volume> {
        self.inner.resize(id, size_bytes, epoch).await
    }
    async fn snapshot(&self, id: &VolumeId, name: &str) -> Result<Snapshot> {
        self.inner.snapshot(id, name).await
    }
    async fn snapshots(&self, id: &VolumeId) -> Result<Vec<Snapshot>> {
        self.inner.snapshots(id).await
    }
    async fn clone_volume(
        &self,
        source: &CloneSource,
        spec: &crate::model::VolumeSpec,
    ) -> Result<Volume> {
        self.inner.clone_volume(source, spec).await
    }
    async fn place(&self, policy: &str, size_bytes: u64) -> Result<PoolId> {
        self.inner.place(policy, size_bytes).await
    }
}
