//! An embedded vCenter simulator.
//!
//! `vsphere-sim` is the SDK's embedded default: an in-process vCenter that the examples, the
//! `tour` and most tests run against on a fresh machine with no vCenter, and that real clients
//! (pyVmomi, govmomi) accept. It serves vim25 SOAP on `/sdk` through `vsphere-client`'s own
//! codec.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), vsphere_sim::Error> {
//! let sim = vsphere_sim::Simulator::builder().start().await?;
//! assert!(sim.url().starts_with("http://127.0.0.1:"));
//! assert!(sim.url_with_credentials().contains("user:pass@"));
//! # Ok(()) }
//! ```
//!
//! # What this release serves
//!
//! - an inventory shaped like govmomi vcsim's VPX model ([`InventoryShape`]): datacenters,
//!   clusters of hosts with a resource pool, standalone hosts, VMs, local and shared
//!   datastores (with capacity accounting) and the `VM Network`, stored as the SDK's generated
//!   data types (`VirtualMachineConfigInfo`, `HostListSummary`, `DatastoreSummary`, ...);
//! - `POST /sdk` (and `/sdk/vimService`): `RetrieveServiceContent`, `Login` (`InvalidLogin` for
//!   bad credentials), `Logout`, `SessionIsActive`, `CurrentTime`, the `vmware_soap_session`
//!   cookie, `NotAuthenticated` without a session, an idle timeout;
//! - the PropertyCollector: `RetrieveProperties`, `RetrievePropertiesEx` with `maxObjects`
//!   paging, `ContinueRetrievePropertiesEx`, `CancelRetrievePropertiesEx`, with ObjectSpec,
//!   TraversalSpec and named recursive SelectionSpec, `skip`, `pathSet`/`all` and nested paths;
//! - the ViewManager: `CreateContainerView` (recursive, type filter) and `DestroyView`;
//! - `GET /sdk/vimServiceVersions.xml`;
//! - the Automation REST API on `/api` and `/rest` (sessions, vcenter listing of VMs, hosts,
//!   datastores, clusters and networks, tagging with associations; see the `rest` module).
//!
//! Every other method answers the `NotImplemented` fault, naming itself. Tasks, VM
//! operations, First Class Disks, TLS, `--state-dir` and fault injection are not built
//! yet.
//!
//! # Layering
//!
//! It depends on `vsphere-client` (for the generated types and the SOAP codec) and on nothing else
//! in the workspace. `volume-core`, `vmenv-core` and `pipeline-core` must never depend on it: they
//! take a vSphere URL, and only tests and the examples start a simulator for them.

// The generated vSphere types are filled field by field from `Default` (base properties are
// reached through `Deref`), which reads like the API reference; nothing is reused by cloning
// into an existing string.
#![allow(
    clippy::field_reassign_with_default,
    clippy::assigning_clones,
    reason = "generated data objects are built from Default, field by field"
)]

mod collector;
mod error;
mod inventory;
mod path;
mod rest;
mod server;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use error::Error;
pub use inventory::InventoryShape;

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(vsphere_sim::CAPABILITY.contains("simulator"));
/// ```
pub const CAPABILITY: &str =
    "an in-process vCenter simulator (vim25 sessions, PropertyCollector, container views)";

/// Configures and starts a [`Simulator`].
#[derive(Clone)]
pub struct SimulatorBuilder {
    listen: SocketAddr,
    user: String,
    password: String,
    shape: InventoryShape,
    idle_timeout: Duration,
}

impl std::fmt::Debug for SimulatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorBuilder")
            .field("listen", &self.listen)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("shape", &self.shape)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            user: "user".to_owned(),
            password: "pass".to_owned(),
            shape: InventoryShape::default(),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl SimulatorBuilder {
    /// The address to listen on (default `127.0.0.1:0`: a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The user name `Login` accepts (default `user`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// The password `Login` accepts (default `pass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// The inventory's size (default: vcsim's VPX model).
    pub fn shape(mut self, shape: InventoryShape) -> Self {
        self.shape = shape;
        self
    }

    /// How long a session may stay idle before it ends (default 30 minutes, as vCenter).
    pub fn session_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Builds the inventory, binds the address and starts serving on the current tokio
    /// runtime.
    pub async fn start(self) -> Result<Simulator, Error> {
        let inv = inventory::Inventory::build(&self.shape);
        let config = server::Config {
            user: self.user.clone(),
            password: self.password.clone(),
            idle_timeout: self.idle_timeout,
        };
        let state = Arc::new(Mutex::new(server::SimState::new(inv, config)));
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: self.listen,
            source,
        })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = server::router(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            // A serve error ends the simulator; `Simulator::stop` reports nothing more to do.
            let _ = serve.await;
        });
        Ok(Simulator {
            addr,
            user: self.user,
            password: self.password,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    addr: SocketAddr,
    user: String,
    password: String,
    state: server::Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A builder with the defaults: `127.0.0.1:0`, user `user`, password `pass`, vcsim's VPX
    /// inventory.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SDK URL, `http://127.0.0.1:PORT/sdk`.
    pub fn url(&self) -> String {
        format!("http://{}/sdk", self.addr)
    }

    /// The SDK URL with credentials, `http://USER:PASSWORD@127.0.0.1:PORT/sdk`, as govc and
    /// vcsim print it (user and password percent-encoded).
    pub fn url_with_credentials(&self) -> String {
        format!(
            "http://{}:{}@{}/sdk",
            userinfo_escape(&self.user),
            userinfo_escape(&self.password),
            self.addr
        )
    }

    /// The user name `Login` accepts.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password `Login` accepts.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The TLS certificate's SHA-1 thumbprint: TLS is not built in this release.
    pub fn thumbprint(&self) -> Result<String, Error> {
        Err(Error::Unsupported {
            feature: "TLS (and so a certificate thumbprint)",
        })
    }

    /// Ends every session now, as an expired session would; returns how many there were.
    pub fn expire_sessions(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expire_sessions()
    }

    /// The number of managed objects in the inventory (service objects and views included).
    pub fn object_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inv
            .len()
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Percent-encodes what may not appear in a URL's userinfo.
fn userinfo_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_escaped() {
        assert_eq!(userinfo_escape("a@b:c d"), "a%40b%3Ac%20d");
        assert_eq!(userinfo_escape("plain-1.x"), "plain-1.x");
    }

    #[test]
    fn builder_debug_redacts_the_password() {
        let b = Simulator::builder().password("s3cret");
        assert!(!format!("{b:?}").contains("s3cret"));
    }
}
