//! Typed vSphere bindings for Rust.
//!
//! `vsphere-client` speaks to vCenter and ESXi: the SOAP API (`vim25`, `vslm` and `pbm`, every
//! type, enum, fault and method generated from the published schema) and, in later releases,
//! the Automation REST API, with sessions, property collection, views, a finder and tasks.
//!
//! # What is here
//!
//! - [`types`]: every data object and enum type of vim25, vslm and pbm, generated from the
//!   normalized schema in `schema/` (exported from pyVmomi 9.1.1.0's type information). Data
//!   types embed their base type and `Deref` to it; a property whose declared type has
//!   subtypes is a [`codec::Poly`]; `anyType` values are [`codec::Any`]; enums keep values they
//!   do not know in an `Other` variant; secrets are [`codec::SecretString`].
//! - [`mo`]: a typed wrapper per managed object type, with one method per API method
//!   (typed parameters, typed result; `*_Task` methods give a typed [`rpc::PendingTask`]).
//! - [`codec`]: the table-driven SOAP encoder and decoder (namespace-aware, on quick-xml),
//!   shared with `vsphere-sim`.
//! - [`rpc`]: the [`rpc::Caller`] trait through which methods reach a server.
//! - [`client`]: the session-aware [`client::Client`] (transport with TLS pinning, version
//!   negotiation, login, transparent re-login, keepalive) and paged property retrieval.
//! - [`rest`]: the Automation REST API ([`rest::RestClient`]): sessions on `/api/session` with
//!   fallback to `/rest/com/vmware/cis/session`, vcenter listing and tagging.
//!
//! ```
//! use vsphere_client::codec::{Decoder, FieldInfo, FieldKind, Service, Since, Value};
//! use vsphere_client::types::VirtualDisk;
//!
//! let xml = r#"<device xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
//!     xsi:type="VirtualDisk"><key>2000</key><capacityInKB>1024</capacityInKB></device>"#;
//! let mut d = Decoder::new(xml);
//! let start = d.next_child().unwrap().unwrap();
//! let field = FieldInfo::new("device", FieldKind::Any, 0, Service::Vim25, 0);
//! let disk = VirtualDisk::decode_value(&mut d, &start, &field).unwrap();
//! assert_eq!(disk.capacity_in_kb, 1024);
//! assert_eq!(disk.key, 2000); // inherited from VirtualDevice
//! ```
//!
//! # Layering
//!
//! This crate is the bottom of the SDK's workspace. It depends on **no other workspace crate**.
//! `vsphere-sim` builds on its codec; `volume-core` and `vmenv-core` use it behind their `vsphere`
//! feature; the examples and the C API use it directly. Nothing in this crate may ever depend on
//! those crates.

pub mod client;
pub mod codec;
mod error;
#[rustfmt::skip]
mod generated;
pub mod rest;
pub mod rpc;

pub use error::Error;
pub use generated::{mo, types};
pub use rest::RestClient;

/// A short, human-readable statement of what this crate can do in this build.
///
/// The SDK's `tour` example prints it.
///
/// ```
/// assert!(vsphere_client::CAPABILITY.contains("vSphere"));
/// ```
pub const CAPABILITY: &str = "vSphere SOAP (vim25, vslm, pbm) and Automation REST bindings";
