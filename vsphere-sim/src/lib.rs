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
//!   clusters of hosts with a resource pool, standalone hosts, VMs (PCI and paravirtual SCSI
//!   controllers, a disk, a NIC), local and shared datastores (with capacity accounting) and the
//!   `VM Network`, stored as the SDK's generated data types;
//! - `POST /sdk` (and `/sdk/vimService`): `RetrieveServiceContent`, `Login` (`InvalidLogin` for
//!   bad credentials), `Logout`, `SessionIsActive`, `CurrentTime`, the `vmware_soap_session`
//!   cookie, `NotAuthenticated` without a session, an idle timeout;
//! - the PropertyCollector: `RetrieveProperties`, `RetrievePropertiesEx` with `maxObjects`
//!   paging, `ContinueRetrievePropertiesEx`, `CancelRetrievePropertiesEx`, with ObjectSpec,
//!   TraversalSpec and named recursive SelectionSpec, `skip`, `pathSet`/`all` and nested paths;
//!   `CreateFilter`, `WaitForUpdatesEx` (versions, `maxWaitSeconds`, `maxObjectUpdates`),
//!   `WaitForUpdates`, `CheckForUpdates`, `CancelWaitForUpdates`, `DestroyPropertyFilter`,
//!   private collectors (`CreatePropertyCollector`, `DestroyPropertyCollector`), with
//!   incremental `enter`/`modify`/`leave` updates;
//! - the ViewManager: `CreateContainerView` (recursive, type filter; views follow the
//!   inventory), `CreateListView`, `CreateListViewFromView`, `ModifyListView`,
//!   `ResetListView` and `DestroyView`;
//! - tasks whose `info` moves queued -> running (with progress) -> success or error, one
//!   [`SimulatorBuilder::task_step`] per stage (none by default, as vcsim), listed in
//!   `TaskManager.recentTask` and the entity's `recentTask`;
//! - VM operations: power on/off/reset/suspend, `ReconfigVM_Task` (disks and NICs with
//!   vCenter's keys and unit numbers, `extraConfig`), `CloneVM_Task` (from templates too),
//!   `CreateVM_Task`, `Destroy_Task`, `MarkAsTemplate`/`MarkAsVirtualMachine`,
//!   `ShutdownGuest`/`RebootGuest`/`StandbyGuest`, with datastore capacity accounting;
//! - `CreateFolder`, `CreateResourcePool`, and `Destroy_Task` on folders, pools, cluster hosts,
//!   compute resources and datacenters (`ResourceInUse` while they hold VMs, `NotSupported` for
//!   the inventory's own folders and root pools);
//! - guest identity of powered-on VMs (`guest.ipAddress` from a deterministic 10.x.y.z pool,
//!   `guest.net`, tools running, `summary.guest`), cleared on power off, overridden by vcsim's
//!   `SET.guest.ipAddress` / `SET.guest.hostName` extraConfig keys;
//! - First Class Disks (`VcenterVStorageObjectManager`: create, list, retrieve, extend, delete,
//!   associations, snapshots, metadata, rename, clone, relocate, revert, tags from the REST tagging
//!   store) and `AttachDisk_Task`/`DetachDisk_Task`, a disk attached to one VM at a time;
//! - `VirtualDiskManager` (create, delete, extend, copy, move, inflate, shrink, query the uuid of
//!   virtual disk files);
//! - `/vslm/sdk` (its `ServiceInstance` and a `VslmVStorageObjectManager` over the same disks,
//!   `VslmTask`s) and `/pbm/sdk` (default storage profiles, compatibility, matching hubs and
//!   compliance);
//! - `SearchIndex`: `FindByInventoryPath`, `FindChild`, `FindByUuid`;
//! - faults as vCenter sends them (typed detail, `faultCause`);
//! - fault injection: [`Simulator::set_latency`], [`Simulator::set_error_rate`],
//!   [`Simulator::fail_next`], [`Simulator::expire_sessions`],
//!   [`Simulator::set_session_idle_timeout`], and the same over `POST /_sim/...` (see the
//!   README);
//! - `GET /sdk/vimServiceVersions.xml`;
//! - the Automation REST API on `/api` and `/rest` (sessions, vcenter listing of VMs, hosts,
//!   datastores, clusters and networks, tagging with associations; see the README).
//!
//! `--state-dir` ([`SimulatorBuilder::state_dir`]): everything the simulated vCenter holds
//! (inventory, tasks, First Class Disks with metadata and snapshots, tags, loose virtual disks,
//! compliance results) survives a restart; sessions and views do not, as on vCenter.
//!
//! HTTPS with [`SimulatorBuilder::tls`]: a self-signed certificate generated at start, whose
//! thumbprint [`Simulator::thumbprint`] gives for pinning.
//!
//! Every other method answers the `NotImplemented` fault, naming itself.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), vsphere_sim::Error> {
//! let sim = vsphere_sim::Simulator::builder()
//!     .task_step(std::time::Duration::from_millis(1))
//!     .start()
//!     .await?;
//! // The next two power-ons fail with a typed fault; so does one call in ten, at random.
//! sim.fail_next("PowerOnVM_Task", "InvalidState", 2)?;
//! sim.set_error_rate(0.1, "HostCommunication")?;
//! sim.clear_fault_injection();
//! # Ok(()) }
//! ```
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

mod admin;
mod collector;
mod devices;
mod entity;
mod error;
mod fault;
mod fcd;
mod guest;
mod inject;
mod inventory;
mod path;
mod pbm;
mod rest;
mod search;
mod server;
mod state;
mod task;
mod tls;
mod updates;
mod vdisk;
mod vm;
mod vslm;
mod wire;

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
pub const CAPABILITY: &str = "an in-process vCenter simulator (vim25 sessions, PropertyCollector \
     with WaitForUpdatesEx, container and list views, tasks, VM operations with guest identity, \
     First Class Disks with snapshots, metadata and tags, VirtualDiskManager, /vslm/sdk and \
     /pbm/sdk with compliance, SearchIndex, fault injection, state kept across restarts)";

/// Configures and starts a [`Simulator`].
#[derive(Clone)]
pub struct SimulatorBuilder {
    listen: SocketAddr,
    user: String,
    password: String,
    shape: InventoryShape,
    idle_timeout: Duration,
    task_step: Duration,
    tls: bool,
    state_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SimulatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorBuilder")
            .field("listen", &self.listen)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("shape", &self.shape)
            .field("idle_timeout", &self.idle_timeout)
            .field("task_step", &self.task_step)
            .field("tls", &self.tls)
            .field("state_dir", &self.state_dir)
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
            task_step: Duration::ZERO,
            tls: false,
            state_dir: None,
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

    /// How long a task stays queued, and then running, before its outcome is decided. The
    /// default is no delay, as vcsim's: a task still passes through `queued` and `running`
    /// (each a change collectors are told of), but usually ends before a client looks. Set a
    /// step (a few milliseconds) where a test must see every state, or to simulate slow tasks.
    pub fn task_step(mut self, step: Duration) -> Self {
        self.task_step = step;
        self
    }

    /// Serve HTTPS with a self-signed certificate generated at start (for `localhost`,
    /// `127.0.0.1` and the listen address), instead of plain HTTP. Clients pin it with
    /// [`Simulator::thumbprint`] or trust [`Simulator::certificate_pem`].
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Keep the simulator's state in `dir` (`dir/inventory.xml`): the inventory (tasks
    /// included), First Class Disks with their metadata and snapshots, and the tagging store.
    /// Loaded at start when present (the shape is then ignored), saved half a second after
    /// changes and at [`Simulator::stop`] (or with [`Simulator::save_state`]), through a
    /// temporary file renamed over the old one. Sessions, views, filters and paged results
    /// belong to clients and are not kept, as a vCenter restart loses them too.
    pub fn state_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Builds the inventory, binds the address and starts serving on the current tokio
    /// runtime.
    pub async fn start(self) -> Result<Simulator, Error> {
        let saved = match &self.state_dir {
            Some(dir) => state::load(dir)?,
            None => None,
        };
        let (inv, tags) = match saved {
            Some(saved) => (saved.inv, saved.tags),
            None => (inventory::Inventory::build(&self.shape), None),
        };
        let config = server::Config {
            user: self.user.clone(),
            password: self.password.clone(),
            idle_timeout: self.idle_timeout,
            task_step: self.task_step,
        };
        let mut sim_state = server::SimState::new(inv, config);
        if let Some(json) = tags {
            sim_state
                .rest
                .restore_tags(&json)
                .map_err(|problem| Error::State {
                    path: self
                        .state_dir
                        .as_deref()
                        .map(state::file)
                        .unwrap_or_default(),
                    problem,
                })?;
        }
        let state = Arc::new(Mutex::new(sim_state));
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
        let app = server::router(Arc::clone(&state)).merge(admin::router(Arc::clone(&state)));
        let cert = if self.tls {
            Some(tls::generate(addr)?)
        } else {
            None
        };
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = match &cert {
            Some(c) => {
                let listener = tls::TlsListener::new(listener, c)?;
                tokio::spawn(async move {
                    // A serve error ends the simulator; `Simulator::stop` reports nothing more.
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await;
                })
            }
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await;
            }),
        };
        let saver = self.state_dir.clone().map(|dir| {
            let mut rx = state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .subscribe();
            let st = Arc::clone(&state);
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    // Changes come in bursts (a task's three steps): save once after them.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    rx.borrow_and_update();
                    let xml = st
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .encode_state();
                    let dir = dir.clone();
                    // A failed background save is retried at the next change, and reported by
                    // the save at `stop` / `save_state`.
                    let _ = tokio::task::spawn_blocking(move || state::save(&dir, &xml)).await;
                }
            })
        });
        Ok(Simulator {
            addr,
            user: self.user,
            password: self.password,
            cert,
            state_dir: self.state_dir,
            saver,
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
    cert: Option<tls::Certificate>,
    state_dir: Option<std::path::PathBuf>,
    saver: Option<tokio::task::JoinHandle<()>>,
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

    fn scheme(&self) -> &'static str {
        if self.cert.is_some() { "https" } else { "http" }
    }

    /// The SDK URL, `http://127.0.0.1:PORT/sdk` (`https://` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}/sdk", self.scheme(), self.addr)
    }

    /// The SDK URL with credentials, `http://USER:PASSWORD@127.0.0.1:PORT/sdk`, as govc and
    /// vcsim print it (user and password percent-encoded).
    pub fn url_with_credentials(&self) -> String {
        format!(
            "{}://{}:{}@{}/sdk",
            self.scheme(),
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

    /// The TLS certificate's SHA-1 thumbprint, as vCenter and govc print it
    /// (`AB:CD:...`); [`Error::NoTls`] when the simulator serves plain HTTP.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), vsphere_sim::Error> {
    /// let sim = vsphere_sim::Simulator::builder().tls(true).start().await?;
    /// assert!(sim.url().starts_with("https://"));
    /// assert_eq!(sim.thumbprint()?.len(), 20 * 3 - 1);
    /// # Ok(()) }
    /// ```
    pub fn thumbprint(&self) -> Result<String, Error> {
        let c = self.cert.as_ref().ok_or(Error::NoTls)?;
        Ok(vsphere_client::client::Thumbprint::sha1_of(&c.der).to_string())
    }

    /// The TLS certificate's SHA-256 thumbprint (`AB:CD:...`); [`Error::NoTls`] without TLS.
    pub fn thumbprint_sha256(&self) -> Result<String, Error> {
        let c = self.cert.as_ref().ok_or(Error::NoTls)?;
        Ok(vsphere_client::client::Thumbprint::sha256_of(&c.der).to_string())
    }

    /// The TLS certificate in DER; `None` without TLS.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.cert.as_ref().map(|c| c.der.as_slice())
    }

    /// The TLS certificate in PEM, for a client's trust store; `None` without TLS.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.cert.as_ref().map(|c| c.pem.as_str())
    }

    /// Ends every session now, as an expired session would; returns how many there were.
    pub fn expire_sessions(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expire_sessions()
    }

    /// Changes the session idle timeout from now on.
    pub fn set_session_idle_timeout(&self, timeout: Duration) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .idle_timeout = timeout;
    }

    /// Adds `latency` before every call of `method` (`"*"`: every method without a setting of
    /// its own); a zero latency removes the setting.
    pub fn set_latency(&self, method: &str, latency: Duration) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inject
            .set_latency(method, latency);
    }

    /// Makes each call fail with probability `rate` (0 turns it off), answering a `fault` of
    /// that vim25 type (`SystemError`, `HostCommunication`, ...). The random sequence is fixed,
    /// so runs are reproducible.
    pub fn set_error_rate(&self, rate: f64, fault: &str) -> Result<(), Error> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inject
            .set_error_rate(rate, fault)
            .map_err(|e| Error::InvalidArgument {
                arg: "error rate".to_owned(),
                problem: e.to_string(),
            })
    }

    /// Makes the next `count` calls of `method` fail with a fault of type `fault` (0 removes
    /// the setting).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), vsphere_sim::Error> {
    /// let sim = vsphere_sim::Simulator::builder().start().await?;
    /// sim.fail_next("PowerOnVM_Task", "InvalidState", 2)?;
    /// assert!(sim.fail_next("PowerOnVM_Task", "NoSuchFault", 1).is_err());
    /// # Ok(()) }
    /// ```
    pub fn fail_next(&self, method: &str, fault: &str, count: u32) -> Result<(), Error> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inject
            .fail_next(method, fault, count)
            .map_err(|e| Error::InvalidArgument {
                arg: "fault".to_owned(),
                problem: e.to_string(),
            })
    }

    /// Removes every latency, error rate and forced fault.
    pub fn clear_fault_injection(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inject
            .clear();
    }

    /// The number of managed objects in the inventory (service objects and views included).
    pub fn object_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inv
            .len()
    }

    /// Saves the state (see [`SimulatorBuilder::state_dir`]) now; `Ok(false)` without a state
    /// directory.
    pub fn save_state(&self) -> Result<bool, Error> {
        let Some(dir) = &self.state_dir else {
            return Ok(false);
        };
        let xml = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .encode_state();
        state::save(dir, &xml)?;
        Ok(true)
    }

    /// Stops serving and waits for the server task to end; with a state directory, saves the
    /// inventory a last time (see [`Simulator::save_state`] to learn whether that worked).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(s) = self.saver.take() {
            s.abort();
        }
        let _ = self.save_state();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(s) = self.saver.take() {
            s.abort();
            // Dropped without `stop`: keep the state all the same.
            let _ = self.save_state();
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
