//! An embedded vCenter simulator.
//!
//! `vsphere-sim` is the SDK's embedded default: an in-process vCenter that every example, the
//! `tour` and most tests run against on a fresh machine with no vCenter, and that real clients
//! (pyVmomi, govmomi) accept. It serves vim25 SOAP on `/sdk` through `vsphere-client`'s own codec,
//! plus the Automation REST session and tagging endpoints.
//!
//! # Layering
//!
//! It depends on `vsphere-client` (for the generated types and the SOAP codec) and on nothing else
//! in the workspace. `volume-core`, `vmenv-core` and `pipeline-core` must never depend on it: they
//! take a vSphere URL, and only tests and the examples start a simulator for them.
//!
//! # Status
//!
//! The crate builds and documents its purpose; the server arrives with its issue.

mod error;

pub use error::Error;

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(vsphere_sim::CAPABILITY.contains("simulator"));
/// ```
pub const CAPABILITY: &str = "an in-process vCenter simulator";
