//! The backend trait: what a datastore must offer, with CSI controller semantics.
//!
//! Every call is idempotent in CSI's sense:
//!
//! | call | already in the asked-for state | error cases |
//! |---|---|---|
//! | `create` | same name, compatible spec: returns the existing volume | [`Error::NameConflict`], [`Error::CapacityExhausted`], [`Error::UnknownPool`] |
//! | `destroy` | missing volume: `Ok` | [`Error::AttachedElsewhere`] while attached |
//! | `attach` | attached to that node: `Ok` | [`Error::UnknownVolume`], [`Error::AttachedElsewhere`], [`Error::StaleEpoch`] |
//! | `detach` | detached or missing volume: `Ok` | [`Error::StaleEpoch`] |
//! | `check_node` | – | [`Error::UnknownNode`] |
//! | `device` | – | [`Error::UnknownVolume`], [`Error::NotAttached`], [`Error::AttachedElsewhere`] |
//!
//! Mutating calls carry a fencing [`Epoch`]; a backend records the newest epoch per volume and
//! refuses older ones ([`Error::StaleEpoch`]), so a node fenced by the orchestrator cannot act
//! on the volume again. The decisions are written once, in [`rules`], as plain functions over a
//! volume record; each backend only performs the IO they call for.
//!
//! Optional capabilities (resize, snapshots, clones, placement by policy) are discovered at run
//! time through [`Backend::capabilities`]; a backend that lacks one returns
//! [`Error::Unsupported`] from its method.
//!
//! # How the vSphere First Class Disk backend slots in
//!
//! The backend is built (`vsphere`, feature `vsphere`); what it does not do yet is listed in its
//! module documentation. The design it follows:
//!
//! The trait is shaped so that the FCD backend (behind the `vsphere` feature) is one more
//! implementation that passes the same kit:
//!
//! - `create`: `CreateDisk_Task` with `keepAfterDeleteVm`, the volume name and pool (datastore)
//!   in the disk's metadata, so the name stays the idempotency key across restarts;
//! - `attach`/`detach`: `AttachDisk_Task`/`DetachDisk_Task` as `independent_persistent`,
//!   serialized per VM (one reconfiguration at a time), with the attachment read back from
//!   `vm.config.hardware.device` rather than trusted from metadata;
//! - `fence`: the epoch is kept in the disk's metadata
//!   (`VCenterUpdateVStorageObjectMetadataEx_Task`) and checked by every mutating call;
//! - `device`: the guest path `/dev/disk/by-id/wwn-0x<uuid>`;
//! - `resize`/`snapshot`/`clone`: `ExtendDisk_Task`, `VStorageObjectCreateSnapshot_Task`,
//!   `CreateDiskFromSnapshot_Task`, advertised only where the server supports them.

pub mod counting;
pub(crate) mod fsutil;
pub mod loopfile;
pub mod memory;
pub mod qcow2;
#[cfg(feature = "qemu-hotplug")]
pub mod qemu_hotplug;
pub mod rules;
#[cfg(feature = "vsphere")]
pub mod vsphere;
#[cfg(feature = "vsphere")]
mod vsphere_specs;

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use fsutil::running_as_root;

use crate::error::{Error, Result};
use crate::model::{Allocation, Device, Epoch, NodeId, PoolId, Volume, VolumeId, VolumeSpec};

/// Optional capabilities a backend offers, discovered at run time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// [`Backend::resize`] grows volumes.
    pub resize: bool,
    /// Whether resize works while the volume is attached.
    pub online_resize: bool,
    /// [`Backend::snapshot`] and [`Backend::snapshots`] work.
    pub snapshot: bool,
    /// [`Backend::clone_volume`] works (from a volume).
    pub clone: bool,
    /// [`Backend::clone_volume`] also works from a [`CloneSource::Snapshot`].
    pub clone_from_snapshot: bool,
    /// [`Backend::place`] chooses a pool by policy.
    pub placement: bool,
}

/// Fixed facts about a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// A short name of the backend kind (`memory`, `loopfile`, `qcow2`, `fcd`).
    pub kind: &'static str,
    /// How sizes are rounded.
    pub allocation: Allocation,
    /// Optional capabilities.
    pub capabilities: Capabilities,
}

/// A point-in-time snapshot of a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The volume.
    pub volume: VolumeId,
    /// The snapshot's name, unique per volume.
    pub name: String,
    /// The volume's size when it was taken.
    pub size_bytes: u64,
}

/// What a clone copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloneSource {
    /// The current content of a (detached) volume.
    Volume(VolumeId),
    /// A snapshot of a volume.
    Snapshot {
        /// The volume.
        volume: VolumeId,
        /// The snapshot's name.
        name: String,
    },
}

/// A storage backend with CSI controller semantics. Dyn-compatible: the orchestrator holds an
/// `Arc<dyn Backend>`.
#[async_trait]
pub trait Backend: Send + Sync + Debug {
    /// Fixed facts: kind, allocation policy, capabilities.
    fn info(&self) -> BackendInfo;

    /// The optional capabilities, as [`BackendInfo::capabilities`].
    fn capabilities(&self) -> Capabilities {
        self.info().capabilities
    }

    /// Creates a volume, or returns the existing one of the same name and a compatible spec.
    async fn create(&self, spec: &VolumeSpec) -> Result<Volume>;

    /// Destroys a volume; a missing volume is success. An attached volume is refused with
    /// [`Error::AttachedElsewhere`] naming its node: detach first, so data is never destroyed
    /// under a node that uses it.
    async fn destroy(&self, id: &VolumeId) -> Result<()>;

    /// Whether volumes can be attached to `node`: [`Error::UnknownNode`] when the backend
    /// cannot find it (a VM that does not exist, a node outside a declared set). Read-only: the
    /// orchestrator asks before it journals a move, so a move to an unknown node changes
    /// nothing. Default: every node is known.
    async fn check_node(&self, node: &NodeId) -> Result<()> {
        let _ = node;
        Ok(())
    }

    /// Attaches a volume to a node; already attached there is success.
    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume>;

    /// Detaches a volume from whatever node it is on; detached or missing is success.
    async fn detach(&self, id: &VolumeId, epoch: Epoch) -> Result<()>;

    /// Raises the volume's fencing epoch without changing anything else, so that every caller
    /// holding an older epoch is refused from now on. Missing volume: [`Error::UnknownVolume`].
    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume>;

    /// All volumes of this backend.
    async fn list(&self) -> Result<Vec<Volume>>;

    /// One volume, or `None`.
    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        Ok(self.list().await?.into_iter().find(|v| &v.id == id))
    }

    /// Where the volume is visible on `node`. The same answer every time while the attachment
    /// lasts; refused once it is detached.
    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device>;

    /// Grows a volume to at least `size_bytes` (rounded up). Shrinking is refused.
    async fn resize(&self, id: &VolumeId, size_bytes: u64, epoch: Epoch) -> Result<Volume> {
        let _ = (id, size_bytes, epoch);
        Err(Error::Unsupported { feature: "resize" })
    }

    /// Takes a named snapshot of a volume.
    async fn snapshot(&self, id: &VolumeId, name: &str) -> Result<Snapshot> {
        let _ = (id, name);
        Err(Error::Unsupported {
            feature: "snapshot",
        })
    }

    /// The snapshots of a volume.
    async fn snapshots(&self, id: &VolumeId) -> Result<Vec<Snapshot>> {
        let _ = id;
        Err(Error::Unsupported {
            feature: "snapshot",
        })
    }

    /// Creates a new volume (named by `spec`) with the content of `source`.
    async fn clone_volume(&self, source: &CloneSource, spec: &VolumeSpec) -> Result<Volume> {
        let _ = (source, spec);
        Err(Error::Unsupported { feature: "clone" })
    }

    /// Chooses a pool for a volume by a storage policy name.
    async fn place(&self, policy: &str, size_bytes: u64) -> Result<PoolId> {
        let _ = (policy, size_bytes);
        Err(Error::Unsupported {
            feature: "placement by policy",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_dyn_compatible() {
        fn takes(_: Option<&dyn Backend>) {}
        takes(None);
        let caps = Capabilities::default();
        assert!(!caps.resize && !caps.snapshot && !caps.clone && !caps.placement);
    }
}
