//! A data center on a laptop.
//!
//! One hypervisor abstraction, in the spirit of VMware AppCatalyst: VMs from templates, shared
//! folders, Docker hosts and a REST API, backed by real local QEMU VMs, by vSphere, and by the
//! AppCatalyst and Fusion/Workstation REST APIs.
//!
//! # Layering
//!
//! Without features this crate depends on no other workspace crate. The `vsphere` feature adds
//! `vsphere-client` for the vSphere backend. `vsphere-client`, `vsphere-sim`, `volume-core` and
//! `pipeline-core` must never depend on `vmenv-core`; only the examples and the C API sit above it.

mod error;

pub use error::Error;

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(vmenv_core::CAPABILITY.contains("VM"));
/// ```
pub const CAPABILITY: &str = "VM environments on QEMU, AppCatalyst, vmrest and vSphere";
