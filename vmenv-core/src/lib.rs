//! A data center on a laptop.
//!
//! One hypervisor abstraction, in the spirit of VMware AppCatalyst: VMs from templates, shared
//! folders, Docker hosts and a REST API, backed by real local QEMU VMs, by vSphere, and by the
//! AppCatalyst and Fusion/Workstation REST APIs.
//!
//! - [`Hypervisor`] is the lifecycle core (create, clone, start, stop with a hard fallback,
//!   kill, pause/resume, suspend, destroy, state in Docker Machine's set, IP discovery with a
//!   deadline); optional capabilities ([`Snapshots`], [`SharedFolders`], [`PortForwards`],
//!   [`Nics`], [`DiskHotplug`], [`GuestExec`]) are discovered at run time, and a missing one is
//!   a typed [`Error::Unsupported`].
//! - [`qemu`] is the local backend: real `qemu-system-x86_64` VMs over QMP.
//! - [`appcatalyst`] is a client and backend for VMware AppCatalyst's REST API and, with the
//!   `server` feature, an AppCatalyst-compatible server over any backend.
//! - [`env`](mod@env) reads environment files (YAML) and converges them: `up`, `status`, `down`.
//! - [`vmrest`] is a client and backend for VMware Fusion/Workstation's `vmrest` API.
//! - `vsphere` (feature `vsphere`) is the vSphere backend: clones of template VMs on vCenter.
//!
//! # Layering
//!
//! Without features this crate depends on no other workspace crate. The `vsphere` feature adds
//! `vsphere-client` for the vSphere backend (`vsphere`). `vsphere-client`, `vsphere-sim`,
//! `volume-core` and `pipeline-core` must never depend on `vmenv-core`; only the examples and the
//! C API sit above it.

pub mod appcatalyst;
pub mod env;
mod error;
mod hypervisor;
mod model;
pub mod qemu;
mod rest;
pub mod vmrest;
#[cfg(feature = "vsphere")]
pub mod vsphere;

pub use error::{Error, Result};
pub use hypervisor::{
    Capabilities, Capability, DiskHotplug, GuestExec, Hypervisor, Nics, PortForwards,
    SharedFolders, Snapshots,
};
pub use model::{
    AttachedDisk, Event, ExecOutput, GuestAddress, IpSource, Nic, PortForward, SharedFolder,
    SnapshotInfo, Source, StopOutcome, VmName, VmSpec, VmState, VmStatus,
};
pub use rest::CodeMessage;

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(vmenv_core::CAPABILITY.contains("VM"));
/// ```
pub const CAPABILITY: &str = "VM environments over one hypervisor trait: local QEMU VMs, the \
     AppCatalyst and Fusion/Workstation (vmrest) REST APIs, and vSphere (feature `vsphere`)";
