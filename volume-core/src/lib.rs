//! Datastore-agnostic volume mobility.
//!
//! A volume lives on shared storage and follows its container from one node (a VM) to another,
//! in the spirit of Flocker and VMware's Flocker driver for vSphere: nothing is lost on the way
//! and a volume is never attached to two nodes at once.
//!
//! - [`model`]: ids, names (unique per pool, the idempotency key), sizes rounded to the
//!   backend's allocation unit, pools, labels, attachments, generations, fencing epochs.
//! - [`backend`]: the dyn-compatible [`Backend`] trait with CSI controller semantics and run-time
//!   capability discovery, and the local backends: [`backend::memory`], [`backend::loopfile`]
//!   (loop devices as root, node directories without), [`backend::qcow2`] (`qemu-img`).
//! - [`orchestrator`]: journaled moves with leases and fencing epochs, crash recovery, and the
//!   desired-state convergence loop, over a [`journal::Store`] (embedded redb by default).
//! - [`liveness`]: node liveness beyond an explicit list: heartbeats with a TTL and node
//!   epochs (a silent node is suspect, dead only once fenced), and, with `vsphere`, the node
//!   VM's power and connection state.
//! - [`docker`]: the Docker volume plugin protocol (v1.2) as a transport-free handler.
//! - `conformance` (feature `conformance`, on by default): the generic suite every backend runs.
//!
//! # Layering
//!
//! Without features this crate depends on no other workspace crate. The `vsphere` feature adds
//! `vsphere-client` for the First Class Disk backend (`backend::vsphere`). `vsphere-client`,
//! `vsphere-sim`, `vmenv-core` and `pipeline-core` must never
//! depend on `volume-core`; only the examples and the C API sit above it. QMP hot-plug into VMs
//! comes in through [`backend::qcow2::HotPlug`], which the layer that owns the VMs implements.

pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "vsphere")]
pub mod demo;
pub mod docker;
mod error;
pub mod journal;
pub mod liveness;
pub mod model;
pub mod orchestrator;

pub use backend::Backend;
pub use error::{BoxedSource, Error, Result};
pub use model::{
    Allocation, Device, DeviceFormat, Epoch, Generation, Labels, NodeId, PoolId, Volume, VolumeId,
    VolumeName, VolumeSpec,
};

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(volume_core::CAPABILITY.contains("volume"));
/// ```
pub const CAPABILITY: &str = "volume mobility across nodes (memory, local loop files, qcow2 \
     hot-plugged into QEMU VMs, vSphere First Class Disks; journaled moves with fencing, the \
     journal optionally in the disks' vCenter metadata; a Docker volume plugin)";
