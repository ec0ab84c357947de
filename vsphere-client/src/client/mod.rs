//! The session-aware SOAP client: connect, negotiate the API release, log in, keep the session
//! alive, re-login transparently when it expires, and retrieve properties page by page.
//!
//! ```no_run
//! use vsphere_client::client::{Client, ConnectOptions};
//! use vsphere_client::mo::ServiceInstance;
//!
//! # async fn demo() -> Result<(), vsphere_client::Error> {
//! let client = Client::connect(ConnectOptions::from_env()?).await?;
//! let now = ServiceInstance::new("ServiceInstance").current_time(&client).await?;
//! println!("{} says it is {now:?}", client.url());
//! client.logout().await?;
//! # Ok(()) }
//! ```
//!
//! # Sessions that survive
//!
//! When a call fails with the `NotAuthenticated` fault (the session expired or was terminated)
//! and the client has credentials, it logs in again and repeats the call **once**, but only if
//! the call is safe to repeat (see [`is_retry_safe`]). A call that fails again is reported as
//! it is, so a real permission problem surfaces instead of looping. Concurrent calls that hit
//! the same expiry share one re-login.
//!
//! A keepalive task calls `CurrentTime` every [`ConnectOptions::keepalive`] interval while the
//! [`Client`] lives; dropping the client stops it.
//!
//! # Beyond the session
//!
//! - [`Collector`]: `WaitForUpdatesEx` on a private property collector (never the session's).
//! - [`TaskWatch`], [`Client::wait_task`]: task progress, typed results and typed faults;
//!   [`TaskWaiter`]: one shared filter that waits for many tasks at once.
//! - [`View`]: `ContainerView` and `ListView`, destroyed when dropped or closed; on an
//!   `Arc<Client>`, [`OwnedView`] (`'static`, for long-lived watchers).
//! - [`Finder`]: inventory paths with globs, default datacenter/datastore/resource pool.
//! - Typed handles ([`VmHandle`], [`HostHandle`], [`DatastoreHandle`], [`FolderHandle`],
//!   [`DatacenterHandle`], [`ClusterHandle`]) and First Class Disks ([`Disks`]).
//! - NICs ([`VmHandle::add_nic`], [`VmNic`]) and datastore files ([`DatastoreHandle::browse`],
//!   [`DatastoreHandle::upload`], [`DatastoreHandle::download`], [`DatastorePath`]).
//!
//! # Session cache
//!
//! [`ConnectOptions::session_cache`] (or `VSPHERE_SESSION_CACHE=<dir>`) keeps the session
//! cookie on disk ([`SessionCache`]: one 0600 file per URL and user, the cookie only), so a
//! later process reuses the session while the server still knows it.
//!
//! # SAML token login
//!
//! [`ConnectOptions::login_by_token`] (or `VSPHERE_STS_URL`) gets a bearer token from the
//! Security Token Service ([`StsClient`]) and logs in with `LoginByToken`;
//! [`Client::login_by_token`] takes a token obtained elsewhere. Holder-of-key tokens are not
//! built.

mod collector;
mod datastore;
mod fcd;
mod finder;
mod handles;
mod nic;
mod options;
mod props;
mod retrieve;
mod session_cache;
mod sts;
mod task;
mod task_waiter;
mod transport;
mod versions;
mod view;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tracing::Instrument;
use url::Url;

pub use collector::Collector;
pub use datastore::{
    BrowseSpec, DatastoreFile, DatastoreFileKind, DatastorePath, folder_url, search_results_files,
};
pub use fcd::{Disks, backing_file, fcd_id};
pub use finder::{Finder, InventoryObject, build_paths, glob_match, path_matches};
pub use handles::{
    ClusterHandle, DatacenterFolders, DatacenterHandle, DatastoreHandle, DatastoreSpace,
    FolderHandle, HostHandle, VmDisk, VmDiskDetails, VmHandle, free_scsi_unit, scsi_slot,
};
pub use nic::{NicBacking, NicModel, VmNic, nic_add_spec};
pub use options::{ConnectOptions, Credentials, DEFAULT_KEEPALIVE, DEFAULT_TIMEOUT};
pub use props::{Properties, upcast};
pub use retrieve::{PageStream, PropertyPages, RetrieveSpec};
pub use session_cache::SessionCache;
pub use sts::{
    DEFAULT_TOKEN_LIFETIME, SamlToken, StsClient, WS_TRUST_ISSUE, default_sts_url, issue_request,
    parse_issue_response, security_header,
};
pub use task::{TaskWatch, is_finished, task_error};
pub use task_waiter::{TaskWaiter, task_end_filter};
pub use transport::{
    Cookie, FileRequest, HttpResponse, HttpTransport, SoapRequest, Thumbprint, TlsPolicy, Transport,
};
pub use versions::negotiate_release;
pub use view::{OwnedView, View, view_filter};

use crate::Error;
use crate::codec::{MethodInfo, ResponseError, SecretString, Service, decode_response};
use crate::mo::{PropertyCollector, ServiceInstance, SessionManager};
use crate::rpc::{BoxFuture, Caller};
use crate::types::{RetrieveOptions, ServiceContent, UserSession};

/// The session cookie vCenter and ESXi set on login.
pub const SESSION_COOKIE: &str = "vmware_soap_session";

/// Whether a failed call may be repeated after a transparent re-login.
///
/// The rule, from the method name: reads are safe; anything that changes state, starts a
/// task, or depends on state held by the lost session is not.
/// - safe: names starting with `Retrieve`, `Query`, `Find`, `Has`, `Fetch`, and
///   `CurrentTime`;
/// - never: `*_Task` methods, the login methods, and `ContinueRetrievePropertiesEx`,
///   `CancelRetrievePropertiesEx`, `WaitForUpdates*`, `CheckForUpdates` (their tokens,
///   collectors and filters die with the session; [`PropertyPages`] restarts a paged
///   retrieval itself instead).
///
/// ```
/// use vsphere_client::client::is_retry_safe;
/// use vsphere_client::mo::methods;
/// assert!(is_retry_safe(&methods::RETRIEVE_PROPERTIES_EX));
/// assert!(is_retry_safe(&methods::CURRENT_TIME));
/// assert!(!is_retry_safe(&methods::CONTINUE_RETRIEVE_PROPERTIES_EX));
/// assert!(!is_retry_safe(&methods::POWER_ON_VM_TASK));
/// assert!(!is_retry_safe(&methods::DESTROY_TASK));
/// ```
pub fn is_retry_safe(method: &MethodInfo) -> bool {
    let name = method.name;
    if name.ends_with("_Task") || name.starts_with("Login") {
        return false;
    }
    name == "CurrentTime"
        || ["Retrieve", "Query", "Find", "Has", "Fetch"]
            .iter()
            .any(|p| name.starts_with(p))
}

fn is_login(method: &MethodInfo) -> bool {
    method.name.starts_with("Login")
}

/// Whether a response envelope is the `NotAuthenticated` fault.
fn is_not_authenticated(body: &str) -> bool {
    body.contains("NotAuthenticated")
        && matches!(
            decode_response(body, None),
            Err(ResponseError::Fault(f)) if f.fault_type() == "NotAuthenticated"
        )
}

/// The `_this` reference of a request envelope (`VirtualMachine:vm-42`), for tracing.
fn this_of(body: &str) -> String {
    const OPEN: &str = "<_this type=\"";
    let found = body.find(OPEN).and_then(|start| {
        let rest = &body[start + OPEN.len()..];
        let (type_, rest) = rest.split_once("\">")?;
        let (value, _) = rest.split_once("</_this>")?;
        Some(format!("{type_}:{value}"))
    });
    found.unwrap_or_default()
}

#[derive(Default)]
struct Session {
    cookie: Option<SecretString>,
    /// Bumped by every re-login: tells concurrent callers whether someone already renewed.
    generation: u64,
}

struct Endpoints {
    sdk: Url,
    vslm: Url,
    pbm: Url,
}

struct Inner {
    transport: Arc<dyn Transport>,
    endpoints: Endpoints,
    credentials: Option<Credentials>,
    timeout: Duration,
    vim_release: OnceLock<String>,
    vslm_release: OnceLock<String>,
    pbm_release: OnceLock<String>,
    content: OnceLock<ServiceContent>,
    session: Mutex<Session>,
    relogin: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    session_cache: Option<SessionCache>,
    sts: Option<StsClient>,
}

/// Sends one call with a SOAP header (the WS-Security header of `LoginByToken`).
struct WithHeader<'a> {
    inner: &'a Inner,
    header: String,
}

impl Caller for WithHeader<'_> {
    fn send<'a>(
        &'a self,
        method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(async move {
            let body = sts::with_header(&body, &self.header).ok_or(Error::Unsupported {
                feature: "a SOAP header on an envelope without a soapenv:Body",
            })?;
            self.inner.exchange(method, body).await.map(|(_, b)| b)
        })
    }

    fn release(&self, service: Service) -> Option<&str> {
        self.inner.release_of(service)
    }
}

/// Sends calls without the transparent re-login (for checking whether a session is alive).
struct NoRetry<'a>(&'a Inner);

impl Caller for NoRetry<'_> {
    fn send<'a>(
        &'a self,
        method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(async move { self.0.exchange(method, body).await.map(|(_, b)| b) })
    }

    fn release(&self, service: Service) -> Option<&str> {
        self.0.release_of(service)
    }
}

impl Inner {
    fn url(&self, service: Service) -> &Url {
        match service {
            Service::Vslm => &self.endpoints.vslm,
            Service::Pbm => &self.endpoints.pbm,
            _ => &self.endpoints.sdk,
        }
    }

    fn release_of(&self, service: Service) -> Option<&str> {
        match service {
            Service::Vslm => self.vslm_release.get(),
            Service::Pbm => self.pbm_release.get(),
            _ => self.vim_release.get(),
        }
        .map(String::as_str)
    }

    fn session_state(&self) -> (Option<SecretString>, u64) {
        let s = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (s.cookie.clone(), s.generation)
    }

    fn set_cookie(&self, cookie: SecretString) {
        let mut s = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.cookie = Some(cookie);
    }

    /// One POST, traced; returns the generation of the session it used and the envelope.
    async fn exchange(
        &self,
        method: &'static MethodInfo,
        body: String,
    ) -> Result<(u64, String), Error> {
        let (cookie, generation) = self.session_state();
        let cookie = if is_login(method) { None } else { cookie };
        let service = method.service;
        let action = match self.release_of(service) {
            Some(r) => format!("{}/{r}", service.namespace()),
            None => service.namespace().to_owned(),
        };
        let span = tracing::debug_span!(
            "vsphere_call",
            method = method.name,
            this = %this_of(&body),
            service = service.prefix(),
            request_bytes = body.len(),
            response_bytes = tracing::field::Empty,
            status = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let request = SoapRequest {
            url: self.url(service),
            soap_action: &action,
            cookie: cookie.as_ref(),
            body,
            timeout: self.timeout,
        };
        let response = self
            .transport
            .post_soap(request)
            .instrument(span.clone())
            .await;
        span.record("elapsed_ms", started.elapsed().as_millis() as u64);
        let response = match response {
            Ok(r) => r,
            Err(Error::Timeout { .. }) => return Err(Error::Timeout { what: method.name }),
            Err(e) => return Err(e),
        };
        span.record("response_bytes", response.body.len());
        span.record("status", response.status);
        if let Some(c) = response.cookie(SESSION_COOKIE) {
            self.set_cookie(c.clone());
        }
        let is_fault = response.status == 500 && response.body.contains("Fault>");
        if response.status != 200 && !is_fault {
            return Err(Error::HttpStatus {
                what: method.name,
                status: response.status,
            });
        }
        Ok((generation, response.body))
    }

    async fn call(&self, method: &'static MethodInfo, body: String) -> Result<String, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::SessionClosed);
        }
        let retry = (self.credentials.is_some() && is_retry_safe(method)).then(|| body.clone());
        let (generation, response) = self.exchange(method, body).await?;
        match retry {
            Some(again) if is_not_authenticated(&response) => {
                tracing::info!(
                    method = method.name,
                    "session not authenticated: logging in again and retrying once"
                );
                self.renew(generation).await?;
                Ok(self.exchange(method, again).await?.1)
            }
            _ => Ok(response),
        }
    }

    /// Logs in again unless another caller already did since `generation`.
    async fn renew(&self, generation: u64) -> Result<(), Error> {
        let _one_at_a_time = self.relogin.lock().await;
        if self.session_state().1 != generation {
            return Ok(());
        }
        self.login().await?;
        self.save_session();
        let mut s = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.generation += 1;
        Ok(())
    }

    /// `LoginByToken` with `token` in the WS-Security header.
    async fn login_by_token(&self, token: &SamlToken) -> Result<UserSession, Error> {
        let content = self.content.get().ok_or(Error::Unsupported {
            feature: "login before the service content is known",
        })?;
        let sm = content.session_manager.clone().ok_or(Error::Unsupported {
            feature: "login on a server without a SessionManager",
        })?;
        let caller = WithHeader {
            inner: self,
            header: security_header(token, sts::now()),
        };
        SessionManager::from_reference(sm)
            .login_by_token(&caller, None)
            .await
            .map_err(|e| {
                if e.is_fault("InvalidLogin") {
                    Error::InvalidLogin {
                        username: token.subject().unwrap_or_default(),
                    }
                } else {
                    e
                }
            })
    }

    fn cache_user(&self) -> &str {
        self.credentials
            .as_ref()
            .map_or("", |c| c.username.as_str())
    }

    /// Writes the current cookie to the session cache, if there is one (failures are logged:
    /// the session itself is fine).
    fn save_session(&self) {
        let (Some(cache), (Some(cookie), _)) = (&self.session_cache, self.session_state()) else {
            return;
        };
        if let Err(e) = cache.store(&self.endpoints.sdk, self.cache_user(), &cookie) {
            tracing::warn!(error = %e, "cannot write the session cache");
        }
    }

    /// Takes the cached cookie and keeps it if the server still knows the session (its
    /// `currentSession` is set, as govc checks); returns whether it did.
    async fn resume_cached_session(&self) -> bool {
        let Some(cache) = &self.session_cache else {
            return false;
        };
        let cookie = match cache.load(&self.endpoints.sdk, self.cache_user()) {
            Ok(Some(c)) => c,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the session cache");
                return false;
            }
        };
        self.set_cookie(cookie);
        let active = match self.current_session().await {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(e) => {
                tracing::debug!(error = %e, "the cached session is not usable");
                false
            }
        };
        if !active {
            self.session
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .cookie = None;
        }
        tracing::debug!(reused = active, "session cache");
        active
    }

    /// The session manager's `currentSession`, read without re-login (`None`: not logged in).
    async fn current_session(&self) -> Result<Option<UserSession>, Error> {
        let content = self.content.get().ok_or(Error::Unsupported {
            feature: "a session check before the service content is known",
        })?;
        let Some(sm) = content.session_manager.clone() else {
            return Ok(None);
        };
        let collector = PropertyCollector::from_reference(content.property_collector.clone());
        let spec = RetrieveSpec::objects("SessionManager", &["currentSession"], [sm]);
        let result = collector
            .retrieve_properties_ex(&NoRetry(self), &spec.specs, &RetrieveOptions::default())
            .await;
        let result = match result {
            Err(e) if e.is_fault("NotAuthenticated") => return Ok(None),
            other => other?,
        };
        let value = result
            .into_iter()
            .flat_map(|r| r.objects)
            .flat_map(|o| o.prop_set)
            .find(|p| p.name == "currentSession")
            .map(|p| p.val);
        Ok(value.and_then(|v| <UserSession as crate::codec::Value>::from_any(v).ok()))
    }

    async fn login(&self) -> Result<UserSession, Error> {
        let Some(creds) = &self.credentials else {
            return Err(Error::InvalidOption {
                option: "credentials",
                reason: "no user name and password to log in with".to_owned(),
            });
        };
        let content = self.content.get().ok_or(Error::Unsupported {
            feature: "login before the service content is known",
        })?;
        let sm = content.session_manager.clone().ok_or(Error::Unsupported {
            feature: "login on a server without a SessionManager",
        })?;
        if let Some(sts) = &self.sts {
            let token = sts
                .issue(&creds.username, &creds.password, DEFAULT_TOKEN_LIFETIME)
                .await?;
            return self.login_by_token(&token).await;
        }
        SessionManager::from_reference(sm)
            .login(self, &creds.username, creds.password.expose(), None)
            .await
            .map_err(|e| {
                if e.is_fault("InvalidLogin") {
                    Error::InvalidLogin {
                        username: creds.username.clone(),
                    }
                } else {
                    e
                }
            })
    }
}

impl Caller for Inner {
    fn send<'a>(
        &'a self,
        method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(self.call(method, body))
    }

    fn release(&self, service: Service) -> Option<&str> {
        self.release_of(service)
    }
}

/// A connected, logged-in vSphere client. Every generated method takes it as its
/// [`Caller`].
///
/// Dropping it stops the keepalive; call [`Client::logout`] to end the server's session.
pub struct Client {
    inner: Arc<Inner>,
    keepalive: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.endpoints.sdk.as_str())
            .field("release", &self.inner.vim_release.get())
            .field(
                "username",
                &self.inner.credentials.as_ref().map(|c| c.username.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
    }
}

fn service_url(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    u.set_path(path);
    u
}

/// The newest release of `service` not newer than the vim25 release `vim`.
fn companion_release(service: Service, vim: &str) -> Option<String> {
    let releases = service.releases();
    releases
        .get(usize::from(service.release_ordinal(vim)))
        .map(|r| (*r).to_owned())
}

impl Client {
    /// Connects with the reqwest transport: negotiates the release, fetches the service
    /// content, logs in if `options` carry credentials, and starts the keepalive.
    ///
    /// Must run inside a Tokio runtime (the keepalive is a task).
    pub async fn connect(options: ConnectOptions) -> Result<Self, Error> {
        let transport = HttpTransport::new(options.tls())?;
        Self::connect_with(options, Arc::new(transport)).await
    }

    /// [`Client::connect`] over any [`Transport`].
    pub async fn connect_with(
        options: ConnectOptions,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, Error> {
        let sdk = options.url().clone();
        let sts = options
            .sts_url()
            .map(|u| StsClient::with_transport(u.clone(), transport.clone()));
        let inner = Arc::new(Inner {
            transport,
            endpoints: Endpoints {
                vslm: service_url(&sdk, "/vslm/sdk"),
                pbm: service_url(&sdk, "/pbm/sdk"),
                sdk,
            },
            credentials: options.credentials().cloned(),
            timeout: options.timeout(),
            vim_release: OnceLock::new(),
            vslm_release: OnceLock::new(),
            pbm_release: OnceLock::new(),
            content: OnceLock::new(),
            session: Mutex::new(Session::default()),
            relogin: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            session_cache: options.session_cache_dir().map(SessionCache::new),
            sts,
        });

        // 1. The releases the server speaks, from /sdk/vimServiceVersions.xml.
        let versions_url = service_url(&inner.endpoints.sdk, "/sdk/vimServiceVersions.xml");
        let negotiated = match inner.transport.get(&versions_url, inner.timeout).await {
            Ok(r) if r.status == 200 => negotiate_release(&r.body, Service::Vim25.releases()),
            Ok(r) => {
                tracing::debug!(status = r.status, "no vimServiceVersions.xml");
                None
            }
            // Not a missing file: the server is unreachable or the TLS check failed.
            Err(e) => return Err(e),
        };
        if let Some(r) = &negotiated {
            let _ = inner.vim_release.set(r.clone());
        }

        // 2. The service content (anonymous).
        let si = ServiceInstance::new("ServiceInstance");
        let content = si.retrieve_service_content(&*inner).await?;
        if negotiated.is_none() {
            let api = content
                .about
                .as_ref()
                .map(|a| a.api_version.clone())
                .unwrap_or_default();
            if !api.is_empty() {
                let known = Service::Vim25.releases();
                let r = known[usize::from(Service::Vim25.release_ordinal(&api))];
                let _ = inner.vim_release.set(r.to_owned());
            }
        }
        if let Some(vim) = inner.vim_release.get() {
            if let Some(r) = companion_release(Service::Vslm, vim) {
                let _ = inner.vslm_release.set(r);
            }
            if let Some(r) = companion_release(Service::Pbm, vim) {
                let _ = inner.pbm_release.set(r);
            }
        }
        let _ = inner.content.set(content);
        tracing::debug!(release = ?inner.vim_release.get(), "connected");

        // 3. Login, unless a cached session is still alive.
        if !inner.resume_cached_session().await && inner.credentials.is_some() {
            inner.login().await?;
            inner.save_session();
        }

        // 4. Keepalive.
        let keepalive = options
            .keepalive()
            .map(|every| tokio::spawn(keepalive(Arc::downgrade(&inner), every)));
        Ok(Self { inner, keepalive })
    }

    /// The SOAP endpoint.
    pub fn url(&self) -> &Url {
        &self.inner.endpoints.sdk
    }

    /// The negotiated vim25 release (`"8.0.2.0"`), if the server told one.
    pub fn api_release(&self) -> Option<&str> {
        self.inner.vim_release.get().map(String::as_str)
    }

    /// The server's service content (root folder, property collector, managers, about).
    pub fn service_content(&self) -> &ServiceContent {
        self.inner
            .content
            .get()
            .expect("connect sets the service content before it returns a Client")
    }

    /// Logs in with a SAML token obtained elsewhere (`LoginByToken`), replacing the current
    /// session. Without credentials in the options, a later expiry cannot be renewed and
    /// surfaces as `NotAuthenticated`.
    pub async fn login_by_token(&self, token: &SamlToken) -> Result<UserSession, Error> {
        let _one_at_a_time = self.inner.relogin.lock().await;
        let session = self.inner.login_by_token(token).await?;
        self.inner.save_session();
        self.inner
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .generation += 1;
        Ok(session)
    }

    /// Logs in again now (normally not needed: expiry is handled transparently).
    pub async fn relogin(&self) -> Result<(), Error> {
        let generation = self.inner.session_state().1;
        self.inner.renew(generation).await
    }

    /// The session generation: bumped by every re-login.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.session_state().1
    }

    /// Logs in again unless that happened since `generation` (one re-login for many callers).
    pub(crate) async fn renew_since(&self, generation: u64) -> Result<(), Error> {
        self.inner.renew(generation).await
    }

    /// Whether the client can log in again by itself.
    pub(crate) fn has_credentials(&self) -> bool {
        self.inner.credentials.is_some()
    }

    /// Ends the server's session (`Logout`) and stops the keepalive. Later calls fail with
    /// [`Error::SessionClosed`]. A session that had already expired counts as logged out.
    pub async fn logout(&self) -> Result<(), Error> {
        if let Some(k) = &self.keepalive {
            k.abort();
        }
        let result = match self.service_content().session_manager.clone() {
            // A session that already expired is as logged out as it gets.
            Some(sm) => match SessionManager::from_reference(sm).logout(self).await {
                Err(e) if e.is_fault("NotAuthenticated") => Ok(()),
                other => other,
            },
            None => Ok(()),
        };
        self.inner.closed.store(true, Ordering::Release);
        if let Some(cache) = &self.inner.session_cache
            && let Err(e) = cache.remove(&self.inner.endpoints.sdk, self.inner.cache_user())
        {
            tracing::warn!(error = %e, "cannot remove the cached session");
        }
        self.inner
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cookie = None;
        result
    }
}

impl Caller for Client {
    fn send<'a>(
        &'a self,
        method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, Error>> {
        self.inner.send(method, body)
    }

    fn release(&self, service: Service) -> Option<&str> {
        self.inner.release_of(service)
    }
}

async fn keepalive(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { break };
        if inner.closed.load(Ordering::Acquire) {
            break;
        }
        let si = ServiceInstance::new("ServiceInstance");
        match si.current_time(&*inner).await {
            Ok(_) => tracing::trace!("keepalive"),
            Err(e) => tracing::warn!(error = %e, "keepalive failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mo::methods;

    #[test]
    fn retry_rule_follows_the_method_name() {
        assert!(is_retry_safe(&methods::RETRIEVE_SERVICE_CONTENT));
        assert!(is_retry_safe(&methods::FIND_BY_INVENTORY_PATH));
        assert!(is_retry_safe(&methods::QUERY_VIRTUAL_DISK_UUID));
        assert!(!is_retry_safe(&methods::LOGIN));
        assert!(!is_retry_safe(&methods::LOGOUT));
        assert!(!is_retry_safe(&methods::WAIT_FOR_UPDATES_EX));
        assert!(!is_retry_safe(&methods::CANCEL_RETRIEVE_PROPERTIES_EX));
        assert!(!is_retry_safe(&methods::CREATE_CONTAINER_VIEW));
    }

    #[test]
    fn not_authenticated_is_told_from_other_faults() {
        use crate::codec::encode_fault;
        use crate::types::{InvalidLogin, NotAuthenticated};
        let na = encode_fault(
            "ServerFaultCode",
            "not authenticated",
            &NotAuthenticated::default(),
        );
        let il = encode_fault(
            "ServerFaultCode",
            "NotAuthenticated",
            &InvalidLogin::default(),
        );
        assert!(is_not_authenticated(&na));
        assert!(!is_not_authenticated(&il));
        assert!(!is_not_authenticated("<NotAuthenticated/>"));
    }

    #[test]
    fn the_managed_object_of_a_request_is_traced() {
        let this = crate::codec::ManagedObjectReference::new("VirtualMachine", "vm-42");
        let body = crate::codec::encode_request(&methods::POWER_ON_VM_TASK, &this, None, &[]);
        assert_eq!(this_of(&body), "VirtualMachine:vm-42");
        assert_eq!(this_of("<x/>"), "");
    }

    #[test]
    fn companion_releases_follow_vim25() {
        assert_eq!(
            companion_release(Service::Vslm, "8.0.2.0").as_deref(),
            Some("7.0.2.0")
        );
        assert_eq!(
            companion_release(Service::Pbm, "8.0.2.0").as_deref(),
            Some("8.0.2.0")
        );
    }
}
