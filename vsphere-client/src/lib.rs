//! Typed vSphere bindings for Rust.
//!
//! `vsphere-client` speaks to vCenter and ESXi: the SOAP API (`vim25`, `vslm` and `pbm`, every
//! type, enum, fault and method generated from the published schema) and the Automation REST API
//! (`/api` and the legacy `/rest`), with sessions, property collection, views, a finder and tasks.
//!
//! # Layering
//!
//! This crate is the bottom of the SDK's workspace. It depends on **no other workspace crate**.
//! `vsphere-sim` builds on its codec; `volume-core` and `vmenv-core` use it behind their `vsphere`
//! feature; the examples and the C API use it directly. Nothing in this crate may ever depend on
//! those crates: a dependency pointing upward would make the simulator, the volume and hypervisor
//! backends and the client one compile unit again.
//!
//! # Status
//!
//! The workspace foundation is in place; the generated bindings, the codec and the client runtime
//! arrive in the following issues. Until then every entry point that is not built yet returns
//! [`Error::Unsupported`], never a silent default.

mod error;

pub use error::Error;

/// A short, human-readable statement of what this crate can do in this build.
///
/// The SDK's `tour` example prints it.
///
/// ```
/// assert!(vsphere_client::CAPABILITY.contains("vSphere"));
/// ```
pub const CAPABILITY: &str = "vSphere SOAP (vim25, vslm, pbm) and Automation REST bindings";
