//! The vSphere Automation REST API: sessions, vcenter inventory listing and tagging.
//!
//! [`RestClient`] speaks both styles vCenter has offered:
//!
//! - **`/api`** (vSphere 7.0 U2 and later): `POST /api/session` with basic auth answers the
//!   session id as a bare JSON string; bodies are plain JSON; actions are `?action=...`;
//!   errors are `{"error_type": "NOT_FOUND", "messages": [...]}`.
//! - **`/rest`** (vSphere 6.5 to 7.0, and govmomi's simulator): `POST
//!   /rest/com/vmware/cis/session` answers `{"value": "..."}`; every response wraps its body in
//!   `{"value": ...}`; create bodies wrap in `{"create_spec": ...}`; ids in paths are `id:...`;
//!   actions are `?~action=...`; errors are `{"type": "com.vmware.vapi.std.errors.not_found",
//!   "value": {"messages": [...]}}`.
//!
//! [`RestClient::connect`] tries `/api/session` first and falls back to `/rest` when the server
//! does not have it (HTTP 404, 405 or 501); [`RestClient::style`] says which it found, and every
//! call then uses that style. The session id travels in the `vmware-api-session-id` header.
//!
//! ```no_run
//! use vsphere_client::client::ConnectOptions;
//! use vsphere_client::rest::{Cardinality, CategorySpec, ObjectId, RestClient, TagSpec, VmFilter};
//!
//! # async fn demo() -> Result<(), vsphere_client::Error> {
//! let rest = RestClient::connect(ConnectOptions::new("https://user:pass@vc.example.com")?).await?;
//! let vms = rest.list_vms(&VmFilter::new().names("web-1")).await?;
//! let env = rest
//!     .create_category(&CategorySpec::new("env", Cardinality::Single).associable_type("VirtualMachine"))
//!     .await?;
//! let prod = rest.create_tag(&TagSpec::new("prod", &env)).await?;
//! rest.attach(&prod, &ObjectId::vm(&vms[0].vm)).await?;
//! rest.logout().await?;
//! # Ok(()) }
//! ```
//!
//! # Sessions
//!
//! The session id is a secret: it is never in `Debug` output, logs or errors. When a call
//! answers HTTP 401 (the session expired or was deleted) the client logs in again, once, and
//! repeats the call if it only reads (listings, gets, `list-*` actions); a call that changes
//! state is not repeated and fails with [`RestErrorKind::Unauthenticated`], but the next call
//! finds a fresh session. [`RestClient::logout`] deletes the session on the server.
//!
//! # Not built yet
//!
//! Category and tag updates (`PATCH`), `used_by` management, content libraries and the other
//! vAPI services are not part of this module yet.

mod error;
mod types;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use url::Url;

pub use error::RestErrorKind;
pub use types::{
    BatchResult, Cardinality, Category, CategorySpec, ClusterFilter, ClusterSummary,
    DatastoreFilter, DatastoreSummary, HostConnectionState, HostFilter, HostPowerState,
    HostSummary, LocalizableMessage, NetworkFilter, NetworkSummary, NetworkType, ObjectId,
    ObjectTags, Tag, TagSpec, VmFilter, VmPowerState, VmSummary,
};

use crate::Error;
use crate::client::{ConnectOptions, Credentials, HttpTransport};
use crate::codec::SecretString;

/// The header (and cookie) that carries the session id.
pub const SESSION_HEADER: &str = "vmware-api-session-id";

/// Which of the two REST styles a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiStyle {
    /// `/api/...` (vSphere 7.0 U2+): plain bodies, `?action=`.
    Api,
    /// `/rest/...` (vSphere 6.5+, govmomi's simulator): `{"value": ...}` bodies, `?~action=`.
    Rest,
}

impl ApiStyle {
    /// The query key of an action (`action` or `~action`).
    fn action_key(self) -> &'static str {
        match self {
            Self::Api => "action",
            Self::Rest => "~action",
        }
    }

    /// The path segments of the session resource.
    fn session_path(self) -> &'static [&'static str] {
        match self {
            Self::Api => &["api", "session"],
            Self::Rest => &["rest", "com", "vmware", "cis", "session"],
        }
    }
}

/// Which style [`RestClient::connect_with`] uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StylePreference {
    /// `/api`, falling back to `/rest` when the server has no `/api/session` (the default).
    #[default]
    Auto,
    /// Only this style.
    Only(ApiStyle),
}

#[derive(Default)]
struct Session {
    token: Option<SecretString>,
    /// Bumped by every login: tells concurrent callers whether someone already renewed.
    generation: u64,
}

struct Inner {
    http: reqwest::Client,
    /// `https://host[:port]/`.
    base: Url,
    credentials: Credentials,
    timeout: Duration,
    style: OnceLock<ApiStyle>,
    session: Mutex<Session>,
    relogin: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

/// A session on the Automation REST API of a vCenter (see the [module docs](self)).
///
/// Cheap to clone: clones share the session.
#[derive(Clone)]
pub struct RestClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.inner.base.as_str())
            .field("style", &self.inner.style.get())
            .field("username", &self.inner.credentials.username)
            .field("session", &"<redacted>")
            .finish()
    }
}

fn http_error(e: reqwest::Error, what: &'static str) -> Error {
    if e.is_timeout() {
        Error::Timeout { what }
    } else {
        Error::Http {
            what,
            source: e.without_url(),
        }
    }
}

/// One request: what it is for, where it goes, whether it may be repeated after a re-login.
struct Call {
    what: &'static str,
    method: Method,
    path: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<Json>,
    /// Reads only: may be repeated after a re-login.
    safe: bool,
}

impl Call {
    fn new(what: &'static str, method: Method, path: &[&str]) -> Self {
        Self {
            what,
            method,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
            safe: false,
        }
    }

    fn safe(mut self) -> Self {
        self.safe = true;
        self
    }

    fn segment(mut self, s: impl Into<String>) -> Self {
        self.path.push(s.into());
        self
    }

    fn query(mut self, pairs: Vec<(String, String)>) -> Self {
        self.query.extend(pairs);
        self
    }

    fn action(mut self, style: ApiStyle, name: &str) -> Self {
        self.query
            .push((style.action_key().to_owned(), name.to_owned()));
        self
    }

    fn body(mut self, body: Json) -> Self {
        self.body = Some(body);
        self
    }
}

/// The path of a tagging resource in `style` (`/api/cis/tagging/{kind}`,
/// `/rest/com/vmware/cis/tagging/{kind}`).
fn tagging(style: ApiStyle, kind: &str) -> Vec<&str> {
    match style {
        ApiStyle::Api => vec!["api", "cis", "tagging", kind],
        ApiStyle::Rest => vec!["rest", "com", "vmware", "cis", "tagging", kind],
    }
}

/// An id as a path segment: bare on `/api`, `id:...` on `/rest`.
fn id_segment(style: ApiStyle, id: &str) -> String {
    match style {
        ApiStyle::Api => id.to_owned(),
        ApiStyle::Rest => format!("id:{id}"),
    }
}

/// A create body: the spec on `/api`, `{"create_spec": spec}` on `/rest`.
fn create_body(style: ApiStyle, spec: &impl Serialize) -> Result<Json, Error> {
    let spec = serde_json::to_value(spec).map_err(|source| Error::RestDecode {
        what: "encoding a create spec",
        source,
    })?;
    Ok(match style {
        ApiStyle::Api => spec,
        ApiStyle::Rest => json!({ "create_spec": spec }),
    })
}

fn decode<T: DeserializeOwned>(what: &'static str, v: Json) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|source| Error::RestDecode { what, source })
}

/// A list that `/rest` servers may send as `null` or leave out when empty.
fn decode_list<T: DeserializeOwned>(what: &'static str, v: Json) -> Result<Vec<T>, Error> {
    if v.is_null() {
        Ok(Vec::new())
    } else {
        decode(what, v)
    }
}

impl RestClient {
    /// Connects and logs in, choosing the style automatically (see the module docs).
    ///
    /// `options` is the same [`ConnectOptions`] the SOAP client takes: its URL's scheme, host
    /// and port (the path is ignored), its credentials (required), TLS policy and timeout.
    pub async fn connect(options: ConnectOptions) -> Result<Self, Error> {
        Self::connect_with(options, StylePreference::Auto).await
    }

    /// Connects and logs in with a style preference.
    pub async fn connect_with(
        options: ConnectOptions,
        preference: StylePreference,
    ) -> Result<Self, Error> {
        let credentials = options
            .credentials()
            .cloned()
            .ok_or_else(|| Error::InvalidOption {
                option: "credentials",
                reason: "the REST API needs a user name and password".to_owned(),
            })?;
        let transport = HttpTransport::new(options.tls())?;
        let mut base = options.url().clone();
        base.set_path("/");
        let client = Self {
            inner: Arc::new(Inner {
                http: transport.reqwest_client().clone(),
                base,
                credentials,
                timeout: options.timeout(),
                style: OnceLock::new(),
                session: Mutex::new(Session::default()),
                relogin: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
            }),
        };
        let (style, token) = match preference {
            StylePreference::Only(style) => (style, client.login(style).await?),
            StylePreference::Auto => match client.login(ApiStyle::Api).await {
                Ok(token) => (ApiStyle::Api, token),
                Err(Error::Rest {
                    status: 404 | 405 | 501,
                    ..
                }) => (ApiStyle::Rest, client.login(ApiStyle::Rest).await?),
                Err(e) => return Err(e),
            },
        };
        let _ = client.inner.style.set(style);
        client.set_token(token);
        Ok(client)
    }

    /// The style the server speaks (decided at login).
    pub fn style(&self) -> ApiStyle {
        *self.inner.style.get().unwrap_or(&ApiStyle::Api)
    }

    /// The server's base URL (`https://vc.example.com/`).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    fn url(&self, path: &[String], query: &[(String, String)]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.clear();
            segments.extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn session_state(&self) -> (Option<SecretString>, u64) {
        let s = self
            .inner
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (s.token.clone(), s.generation)
    }

    fn set_token(&self, token: SecretString) {
        let mut s = self
            .inner
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.token = Some(token);
        s.generation += 1;
    }

    /// `POST` the session resource of `style` with basic auth; the new session id.
    async fn login(&self, style: ApiStyle) -> Result<SecretString, Error> {
        const WHAT: &str = "REST login";
        let path: Vec<String> = style
            .session_path()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let c = &self.inner.credentials;
        let resp = self
            .inner
            .http
            .post(self.url(&path, &[]))
            .timeout(self.inner.timeout)
            .basic_auth(&c.username, Some(c.password.expose()))
            .send()
            .await
            .map_err(|e| http_error(e, WHAT))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| http_error(e, WHAT))?;
        tracing::debug!(style = ?style, status, "vsphere_rest_login");
        if status == 401 || status == 403 {
            return Err(Error::InvalidLogin {
                username: c.username.clone(),
            });
        }
        if !(200..300).contains(&status) {
            let (kind, message) = error::parse_error(status, &body);
            return Err(Error::Rest {
                what: WHAT,
                status,
                kind,
                message,
            });
        }
        // `/api`: "id"; `/rest`: {"value": "id"}. The body is never echoed: it is the secret.
        let parsed: Option<Json> = serde_json::from_str(&body).ok();
        let token = match (style, parsed) {
            (ApiStyle::Api, Some(Json::String(s))) => Some(s),
            (ApiStyle::Rest, Some(Json::Object(mut o))) => match o.remove("value") {
                Some(Json::String(s)) => Some(s),
                _ => None,
            },
            _ => None,
        };
        token
            .filter(|t| !t.is_empty())
            .map(SecretString::from)
            .ok_or(Error::UnexpectedResult {
                found: format!("a {style:?}-style login answer without a session id"),
            })
    }

    /// Logs in again unless another caller already did since `generation`.
    async fn relogin(&self, generation: u64) -> Result<(), Error> {
        let _guard = self.inner.relogin.lock().await;
        if self.session_state().1 != generation {
            return Ok(());
        }
        let token = self.login(self.style()).await?;
        self.set_token(token);
        Ok(())
    }

    /// Sends `call` (re-logging in once on 401); the response's payload: the body on `/api`,
    /// its `value` on `/rest` (`null` when there is none).
    async fn call(&self, call: Call) -> Result<Json, Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::SessionClosed);
        }
        let url = self.url(&call.path, &call.query);
        let mut relogged = false;
        loop {
            let (token, generation) = self.session_state();
            let started = Instant::now();
            let mut req = self
                .inner
                .http
                .request(call.method.clone(), url.clone())
                .timeout(self.inner.timeout);
            if let Some(t) = &token {
                req = req.header(SESSION_HEADER, t.expose());
            }
            if let Some(body) = &call.body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let resp = req.send().await.map_err(|e| http_error(e, call.what))?;
            let status = resp.status().as_u16();
            let body = resp.text().await.map_err(|e| http_error(e, call.what))?;
            tracing::debug!(
                what = call.what,
                method = %call.method,
                path = url.path(),
                status,
                response_bytes = body.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "vsphere_rest_call"
            );
            if (200..300).contains(&status) {
                return self.payload(call.what, &body);
            }
            if status == 401 && !relogged {
                relogged = true;
                self.relogin(generation).await?;
                if call.safe {
                    continue;
                }
                return Err(Error::Rest {
                    what: call.what,
                    status,
                    kind: RestErrorKind::Unauthenticated,
                    message: "the session had expired; logged in again, but the call changes \
                              state and was not repeated"
                        .to_owned(),
                });
            }
            let (kind, message) = error::parse_error(status, &body);
            return Err(Error::Rest {
                what: call.what,
                status,
                kind,
                message,
            });
        }
    }

    fn payload(&self, what: &'static str, body: &str) -> Result<Json, Error> {
        if body.trim().is_empty() {
            return Ok(Json::Null);
        }
        let v: Json =
            serde_json::from_str(body).map_err(|source| Error::RestDecode { what, source })?;
        Ok(match (self.style(), v) {
            (ApiStyle::Rest, Json::Object(mut o)) => o.remove("value").unwrap_or(Json::Null),
            (_, v) => v,
        })
    }

    /// Deletes the session on the server. Later calls fail with [`Error::SessionClosed`].
    pub async fn logout(&self) -> Result<(), Error> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let style = self.style();
        let (token, _) = self.session_state();
        let path: Vec<String> = style
            .session_path()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut req = self
            .inner
            .http
            .delete(self.url(&path, &[]))
            .timeout(self.inner.timeout);
        if let Some(t) = &token {
            req = req.header(SESSION_HEADER, t.expose());
        }
        let resp = req.send().await.map_err(|e| http_error(e, "REST logout"))?;
        let status = resp.status().as_u16();
        // 401: the session had already ended, which is what logout wants.
        if (200..300).contains(&status) || status == 401 {
            Ok(())
        } else {
            let body = resp.text().await.unwrap_or_default();
            let (kind, message) = error::parse_error(status, &body);
            Err(Error::Rest {
                what: "REST logout",
                status,
                kind,
                message,
            })
        }
    }

    // ---- vcenter listing ----

    async fn list<T: DeserializeOwned>(
        &self,
        what: &'static str,
        resource: &str,
        filter: Vec<(String, String)>,
    ) -> Result<Vec<T>, Error> {
        let path: &[&str] = match self.style() {
            ApiStyle::Api => &["api", "vcenter"],
            ApiStyle::Rest => &["rest", "vcenter"],
        };
        let call = Call::new(what, Method::GET, path)
            .segment(resource)
            .query(filter)
            .safe();
        decode_list(what, self.call(call).await?)
    }

    fn filter_prefix(&self) -> &'static str {
        match self.style() {
            ApiStyle::Api => "",
            ApiStyle::Rest => "filter.",
        }
    }

    /// Lists VMs (`GET /api/vcenter/vm`). vCenter answers at most 4,000 and fails with
    /// `unable_to_allocate_resource` beyond; filter to stay under it.
    pub async fn list_vms(&self, filter: &VmFilter) -> Result<Vec<VmSummary>, Error> {
        self.list("list VMs", "vm", filter.query(self.filter_prefix()))
            .await
    }

    /// Lists hosts (`GET /api/vcenter/host`).
    pub async fn list_hosts(&self, filter: &HostFilter) -> Result<Vec<HostSummary>, Error> {
        self.list("list hosts", "host", filter.query(self.filter_prefix()))
            .await
    }

    /// Lists datastores (`GET /api/vcenter/datastore`).
    pub async fn list_datastores(
        &self,
        filter: &DatastoreFilter,
    ) -> Result<Vec<DatastoreSummary>, Error> {
        self.list(
            "list datastores",
            "datastore",
            filter.query(self.filter_prefix()),
        )
        .await
    }

    /// Lists clusters (`GET /api/vcenter/cluster`).
    pub async fn list_clusters(
        &self,
        filter: &ClusterFilter,
    ) -> Result<Vec<ClusterSummary>, Error> {
        self.list(
            "list clusters",
            "cluster",
            filter.query(self.filter_prefix()),
        )
        .await
    }

    /// Lists networks (`GET /api/vcenter/network`).
    pub async fn list_networks(
        &self,
        filter: &NetworkFilter,
    ) -> Result<Vec<NetworkSummary>, Error> {
        self.list(
            "list networks",
            "network",
            filter.query(self.filter_prefix()),
        )
        .await
    }

    // ---- tagging: categories ----

    /// Creates a category; its id.
    pub async fn create_category(&self, spec: &CategorySpec) -> Result<String, Error> {
        const WHAT: &str = "create category";
        let style = self.style();
        let call = Call::new(WHAT, Method::POST, &tagging(style, "category"))
            .body(create_body(style, spec)?);
        decode(WHAT, self.call(call).await?)
    }

    /// The ids of all categories.
    pub async fn list_categories(&self) -> Result<Vec<String>, Error> {
        const WHAT: &str = "list categories";
        let call = Call::new(WHAT, Method::GET, &tagging(self.style(), "category")).safe();
        decode_list(WHAT, self.call(call).await?)
    }

    /// One category.
    pub async fn get_category(&self, id: &str) -> Result<Category, Error> {
        const WHAT: &str = "get category";
        let style = self.style();
        let call = Call::new(WHAT, Method::GET, &tagging(style, "category"))
            .segment(id_segment(style, id))
            .safe();
        decode(WHAT, self.call(call).await?)
    }

    /// Deletes a category, and with it its tags and their associations.
    pub async fn delete_category(&self, id: &str) -> Result<(), Error> {
        let style = self.style();
        let call = Call::new(
            "delete category",
            Method::DELETE,
            &tagging(style, "category"),
        )
        .segment(id_segment(style, id));
        self.call(call).await.map(drop)
    }

    // ---- tagging: tags ----

    /// Creates a tag; its id.
    pub async fn create_tag(&self, spec: &TagSpec) -> Result<String, Error> {
        const WHAT: &str = "create tag";
        let style = self.style();
        let call =
            Call::new(WHAT, Method::POST, &tagging(style, "tag")).body(create_body(style, spec)?);
        decode(WHAT, self.call(call).await?)
    }

    /// The ids of all tags.
    pub async fn list_tags(&self) -> Result<Vec<String>, Error> {
        const WHAT: &str = "list tags";
        let call = Call::new(WHAT, Method::GET, &tagging(self.style(), "tag")).safe();
        decode_list(WHAT, self.call(call).await?)
    }

    /// The ids of the tags of one category.
    pub async fn list_tags_for_category(&self, category_id: &str) -> Result<Vec<String>, Error> {
        const WHAT: &str = "list tags for category";
        let style = self.style();
        let call = match style {
            ApiStyle::Api => Call::new(WHAT, Method::POST, &tagging(style, "tag"))
                .body(json!({ "category_id": category_id })),
            ApiStyle::Rest => Call::new(WHAT, Method::POST, &tagging(style, "tag"))
                .segment(id_segment(style, category_id)),
        }
        .action(style, "list-tags-for-category")
        .safe();
        decode_list(WHAT, self.call(call).await?)
    }

    /// One tag.
    pub async fn get_tag(&self, id: &str) -> Result<Tag, Error> {
        const WHAT: &str = "get tag";
        let style = self.style();
        let call = Call::new(WHAT, Method::GET, &tagging(style, "tag"))
            .segment(id_segment(style, id))
            .safe();
        decode(WHAT, self.call(call).await?)
    }

    /// Deletes a tag and its associations.
    pub async fn delete_tag(&self, id: &str) -> Result<(), Error> {
        let style = self.style();
        let call = Call::new("delete tag", Method::DELETE, &tagging(style, "tag"))
            .segment(id_segment(style, id));
        self.call(call).await.map(drop)
    }

    // ---- tagging: associations ----

    fn association(&self, what: &'static str, tag_id: &str, action: &str) -> Call {
        let style = self.style();
        Call::new(what, Method::POST, &tagging(style, "tag-association"))
            .segment(id_segment(style, tag_id))
            .action(style, action)
    }

    /// Attaches a tag to an object.
    pub async fn attach(&self, tag_id: &str, object: &ObjectId) -> Result<(), Error> {
        let call = self
            .association("attach tag", tag_id, "attach")
            .body(json!({ "object_id": object }));
        self.call(call).await.map(drop)
    }

    /// Detaches a tag from an object.
    pub async fn detach(&self, tag_id: &str, object: &ObjectId) -> Result<(), Error> {
        let call = self
            .association("detach tag", tag_id, "detach")
            .body(json!({ "object_id": object }));
        self.call(call).await.map(drop)
    }

    /// The objects a tag is attached to.
    pub async fn list_attached_objects(&self, tag_id: &str) -> Result<Vec<ObjectId>, Error> {
        const WHAT: &str = "list attached objects";
        let call = self
            .association(WHAT, tag_id, "list-attached-objects")
            .body(json!({}))
            .safe();
        decode_list(WHAT, self.call(call).await?)
    }

    /// The ids of the tags attached to an object.
    pub async fn list_attached_tags(&self, object: &ObjectId) -> Result<Vec<String>, Error> {
        const WHAT: &str = "list attached tags";
        let style = self.style();
        let call = Call::new(WHAT, Method::POST, &tagging(style, "tag-association"))
            .action(style, "list-attached-tags")
            .body(json!({ "object_id": object }))
            .safe();
        decode_list(WHAT, self.call(call).await?)
    }

    /// The tags attached to each of `objects`, in one call.
    pub async fn list_attached_tags_on_objects(
        &self,
        objects: &[ObjectId],
    ) -> Result<Vec<ObjectTags>, Error> {
        const WHAT: &str = "list attached tags on objects";
        let style = self.style();
        let call = Call::new(WHAT, Method::POST, &tagging(style, "tag-association"))
            .action(style, "list-attached-tags-on-objects")
            .body(json!({ "object_ids": objects }))
            .safe();
        decode_list(WHAT, self.call(call).await?)
    }

    /// Attaches one tag to many objects in one call (govmomi#2208's batch attach). A server
    /// that reports per-object failures makes this an [`Error::Rest`] naming them; one that
    /// answers no body (govmomi's simulator) reports none.
    pub async fn attach_to_objects(
        &self,
        tag_id: &str,
        objects: &[ObjectId],
    ) -> Result<BatchResult, Error> {
        const WHAT: &str = "attach tag to multiple objects";
        let call = self
            .association(WHAT, tag_id, "attach-tag-to-multiple-objects")
            .body(json!({ "object_ids": objects }));
        let v = self.call(call).await?;
        let result = if v.is_null() {
            BatchResult {
                success: true,
                error_messages: Vec::new(),
            }
        } else {
            decode::<BatchResult>(WHAT, v)?
        };
        if result.success {
            Ok(result)
        } else {
            Err(Error::Rest {
                what: WHAT,
                status: 200,
                kind: RestErrorKind::InvalidArgument,
                message: result
                    .error_messages
                    .iter()
                    .map(|m| m.default_message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_spell_paths_and_actions_their_way() {
        assert_eq!(
            tagging(ApiStyle::Rest, "tag"),
            ["rest", "com", "vmware", "cis", "tagging", "tag"]
        );
        assert_eq!(
            tagging(ApiStyle::Api, "tag"),
            ["api", "cis", "tagging", "tag"]
        );
        assert_eq!(id_segment(ApiStyle::Rest, "urn:x"), "id:urn:x");
        assert_eq!(id_segment(ApiStyle::Api, "urn:x"), "urn:x");
        assert_eq!(ApiStyle::Rest.action_key(), "~action");
    }

    #[test]
    fn create_bodies_wrap_only_on_rest() {
        let spec = TagSpec::new("t", "c");
        let api = create_body(ApiStyle::Api, &spec).unwrap();
        assert_eq!(api["name"], "t");
        let rest = create_body(ApiStyle::Rest, &spec).unwrap();
        assert_eq!(rest["create_spec"]["category_id"], "c");
    }

    #[test]
    fn null_lists_are_empty() {
        let v: Vec<String> = decode_list("x", Json::Null).unwrap();
        assert!(v.is_empty());
        let e = decode_list::<String>("x", json!(5)).unwrap_err();
        assert!(matches!(e, Error::RestDecode { what: "x", .. }));
    }
}
