//! Datastore-agnostic volume mobility.
//!
//! A volume lives on shared storage and follows its container from one node (a VM) to another,
//! in the spirit of Flocker and VMware's Flocker driver for vSphere: nothing is lost on the way
//! and a volume is never attached to two nodes at once. Backends: local files and qcow2 images,
//! and vSphere First Class Disks.
//!
//! # Layering
//!
//! Without features this crate depends on no other workspace crate. The `vsphere` feature adds
//! `vsphere-client` for the First Class Disk backend. `vsphere-client`, `vsphere-sim`,
//! `vmenv-core` and `pipeline-core` must never depend on `volume-core`; only the examples and the
//! C API sit above it.

mod error;

pub use error::Error;

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(volume_core::CAPABILITY.contains("volume"));
/// ```
pub const CAPABILITY: &str = "volume mobility across nodes (local files, qcow2, First Class Disks)";
