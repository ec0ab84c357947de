//! VMware AppCatalyst: a REST client for its 13 operations (with the quirks its real clients
//! relied on), a [`Hypervisor`](crate::Hypervisor) over it, and, with the `server` feature, an
//! AppCatalyst-compatible server over any backend.

mod backend;
mod client;
#[cfg(feature = "server")]
pub mod server;

pub use backend::{AppCatalystHypervisor, DEFAULT_TEMPLATE, power_from_state, state_from_power};
pub use client::{AppCatalystClient, FolderState, NewVm, PowerOp, VmInfo};
