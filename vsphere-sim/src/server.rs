//! The vim25 SOAP endpoint: sessions and method dispatch over the inventory, through the SDK's
//! own codec (`decode_request`, `encode_response`, `encode_fault`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vsphere_client::codec::{
    Any, AnyArray, DateTime, Decoder, FieldInfo, FieldKind, ManagedObjectReference, MethodInfo,
    Obj, Poly, Request, Service, Since, Value, decode_request, encode_response,
};
use vsphere_client::types::{
    ID, InvalidLogin, InvalidProperty, KeyValue, MethodNotFound, NotAuthenticated,
    PropertyFilterSpec, RequestCanceled, RetrieveOptions, RetrieveVStorageObjSpec, ServiceContent,
    UpdateSet, UserSession, VirtualDiskSpec, VirtualMachineCloneSpec, VirtualMachineConfigSpec,
    VslmCloneSpec, VslmCreateSpec, VslmRelocateSpec, WaitOptions,
};

use crate::collector::{self, CollectError};
use crate::fault::{Fault, bad_request, invalid_argument, not_found, not_implemented};
use crate::inventory::{Inventory, MoObject, ROOT_FOLDER, about};
use crate::task::{self, Job, TASK_MANAGER};
use crate::updates::Filter;
use crate::vm::{self, PowerOp};
use crate::{fcd, inject, search, wire};

/// The session cookie vCenter sets.
pub(crate) const COOKIE: &str = "vmware_soap_session";

/// The fixed ids of the service objects.
const SERVICE_INSTANCE: &str = "ServiceInstance";
const PROPERTY_COLLECTOR: &str = "propertyCollector";
const VIEW_MANAGER: &str = "ViewManager";
const SESSION_MANAGER: &str = "SessionManager";
const SEARCH_INDEX: &str = "SearchIndex";
const VSTORAGE_OBJECT_MANAGER: &str = "VStorageObjectManager";
const VIRTUAL_DISK_MANAGER: &str = "VirtualDiskManager";

/// Credentials and session policy.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) idle_timeout: Duration,
    /// How long a task stays queued, and then running, before it ends.
    pub(crate) task_step: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("idle_timeout", &self.idle_timeout)
            .field("task_step", &self.task_step)
            .finish()
    }
}

struct Session {
    user: String,
    last_active: Instant,
    /// Paged results of RetrievePropertiesEx, by token.
    pages: HashMap<String, Pending>,
}

/// The objects of a RetrievePropertiesEx that later pages report (written when their page is
/// asked for, from the objects as they are then; deleted ones drop out).
struct Pending {
    specs: Vec<PropertyFilterSpec>,
    items: Vec<(usize, ManagedObjectReference)>,
}

/// A property collector's wait state (the default collector has one per session).
#[derive(Debug, Default)]
struct Collector {
    session: String,
    /// The last version handed out by a wait.
    version: u64,
    /// Waits in progress.
    waiting: u32,
    /// `CancelWaitForUpdates` was called while a wait was in progress.
    cancel: bool,
}

/// Everything the server mutates, behind one lock (no await happens while it is held).
pub(crate) struct SimState {
    pub(crate) inv: Inventory,
    sessions: HashMap<String, Session>,
    pub(crate) config: Config,
    next_token: u64,
    /// Bumped on every change, so waits wake up.
    changes: tokio::sync::watch::Sender<u64>,
    collectors: HashMap<String, Collector>,
    filters: Vec<Filter>,
    /// Tasks created by the current call, for the server to run.
    pending: Vec<(String, Job)>,
    pub(crate) inject: inject::Injection,
    /// The Automation REST side: its sessions and the tagging store.
    pub(crate) rest: crate::rest::Store,
}

impl SimState {
    pub(crate) fn new(inv: Inventory, config: Config) -> Self {
        let mut inv = inv;
        for (t, id) in [
            ("ServiceInstance", SERVICE_INSTANCE),
            ("PropertyCollector", PROPERTY_COLLECTOR),
            ("ViewManager", VIEW_MANAGER),
            ("SessionManager", SESSION_MANAGER),
            ("TaskManager", TASK_MANAGER),
            ("SearchIndex", SEARCH_INDEX),
            ("VcenterVStorageObjectManager", VSTORAGE_OBJECT_MANAGER),
            ("VirtualDiskManager", VIRTUAL_DISK_MANAGER),
        ] {
            inv.insert(MoObject {
                moref: ManagedObjectReference::new(t, id),
                props: Vec::new(),
            });
        }
        if let Some(tm) = inv.get_mut(TASK_MANAGER) {
            tm.set("recentTask", crate::inventory::refs(&[]));
        }
        if let Some(si) = inv.get_mut(SERVICE_INSTANCE) {
            si.set("content", Any::Data(Box::new(service_content())));
        }
        Self {
            inv,
            sessions: HashMap::new(),
            config,
            next_token: 0,
            changes: tokio::sync::watch::channel(0).0,
            collectors: HashMap::new(),
            filters: Vec::new(),
            pending: Vec::new(),
            inject: inject::Injection::default(),
            rest: crate::rest::Store::default(),
        }
    }

    /// Ends every session now (the fault-injection "session expiry").
    pub(crate) fn expire_sessions(&mut self) -> usize {
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        for k in &keys {
            self.end_session(k);
        }
        self.changed();
        keys.len() + self.rest.expire_sessions()
    }

    /// Ends a session with its collectors and filters.
    pub(crate) fn end_session(&mut self, key: &str) {
        self.sessions.remove(key);
        let gone: Vec<String> = self
            .collectors
            .iter()
            .filter(|(_, c)| c.session == key)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.drop_collector(&k);
        }
    }

    fn drop_collector(&mut self, ckey: &str) {
        self.collectors.remove(ckey);
        let inv = &mut self.inv;
        self.filters.retain(|f| {
            let keep = f.collector != ckey;
            if !keep {
                inv.remove(&f.moref.value);
            }
            keep
        });
        inv.remove(ckey);
    }

    /// Drops idle sessions.
    fn expire_idle(&mut self) {
        let timeout = self.config.idle_timeout;
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.last_active.elapsed() >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.end_session(&k);
        }
    }

    /// Everything `--state-dir` keeps, as the state file's XML.
    pub(crate) fn encode_state(&self) -> String {
        crate::state::encode(&self.inv, &self.rest.tags_json())
    }

    /// A receiver that sees every change.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records that something changed: container views follow the inventory, and waits wake.
    pub(crate) fn changed(&mut self) {
        refresh_views(&mut self.inv);
        self.changes.send_modify(|v| *v += 1);
    }
}

pub(crate) type Shared = Arc<Mutex<SimState>>;

/// The HTTP routes.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/sdk", post(soap))
        .route("/sdk/vimService", post(soap))
        .route("/sdk/vimServiceVersions.xml", get(versions))
        .route("/vslm/sdk", post(soap))
        .route("/pbm/sdk", post(soap))
        .merge(crate::rest::router())
        .with_state(state)
}

async fn versions() -> Response {
    let body = concat!(
        r#"<?xml version="1.0" encoding="UTF-8" ?>"#,
        "\n<namespaces version=\"1.0\">\n <namespace>\n  <name>urn:vim25</name>\n",
        "  <version>8.0.3.0</version>\n  <priorVersions>\n",
        "   <version>8.0.2.0</version>\n   <version>8.0.1.0</version>\n",
        "   <version>8.0.0.0</version>\n   <version>7.0.3.0</version>\n",
        "   <version>7.0</version>\n   <version>6.7</version>\n   <version>6.5</version>\n",
        "  </priorVersions>\n </namespace>\n</namespaces>\n"
    );
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

pub(crate) fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE)
}

/// The value of cookie `name` among the request's cookies (unquoted).
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// The `vcSessionCookie` SOAP header the pbm and vslm clients send (pyVmomi's request
/// context, govmomi's `soap.Header.Cookie`), when there is no HTTP cookie.
fn vc_session_cookie(body: &str) -> Option<String> {
    let header_end = body.find("Body>")?;
    let head = &body[..header_end];
    let start = head.find("vcSessionCookie")?;
    let rest = &head[start..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')? + open;
    let v = rest[open..close].trim().trim_matches('"');
    (!v.is_empty()).then(|| v.to_owned())
}

fn new_session_key() -> String {
    let (a, b) = crate::inventory::random_bits(SystemTime::now());
    crate::inventory::uuid_shape(a, b)
}

pub(crate) fn now() -> DateTime {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

impl From<CollectError> for Fault {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::InvalidProperty(name) => {
                let mut f = InvalidProperty::default();
                f.name.clone_from(&name);
                Fault::new(format!("invalid property: {name}"), f)
            }
            CollectError::NotFound(obj) => not_found(&obj),
            CollectError::UnknownSelection(name) => invalid_argument(
                format!(
                    "A specified parameter was not correct: selectSet (no TraversalSpec named {name:?})"
                ),
                Some("selectSet"),
            ),
        }
    }
}

macro_rules! param {
    ($req:expr, $kind:ident, $name:literal) => {
        $req.$kind($name).map_err(bad_request)?
    };
}

/// Methods that change nothing (no wake-up of waits after them).
fn read_only(method: &str) -> bool {
    matches!(
        method,
        "RetrieveProperties"
            | "RetrievePropertiesEx"
            | "ContinueRetrievePropertiesEx"
            | "CurrentTime"
            | "SessionIsActive"
            | "RetrieveServiceContent"
            | "ListVStorageObject"
            | "RetrieveVStorageObject"
            | "RetrieveVStorageObjectAssociations"
            | "RetrieveSnapshotInfo"
            | "RetrieveSnapshotDetails"
            | "ListTagsAttachedToVStorageObject"
            | "ListVStorageObjectsAttachedToTag"
            | "FindByInventoryPath"
            | "FindByUuid"
            | "FindChild"
            | "QueryVirtualDiskUuid"
    )
}

async fn soap(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the body is not UTF-8").into_response();
    };
    let cookie = session_cookie(&headers).or_else(|| vc_session_cookie(text));
    let req = match decode_request(text) {
        Ok(r) => r,
        Err(e) => {
            if let Some(fetch) = decode_fetch(text) {
                let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                return match fetch_property(&mut st, cookie.as_deref(), &fetch) {
                    Ok(body) => xml(StatusCode::OK, body),
                    Err(f) => f.into_response(),
                };
            }
            // An unknown method is a MethodNotFound fault; anything else an InvalidRequest.
            let msg = e.to_string();
            if msg.contains("unknown method") {
                let mut f = MethodNotFound::default();
                f.method = msg.clone();
                return Fault::new(msg, f).into_response();
            }
            return bad_request(msg).into_response();
        }
    };
    let name = req.method.name;
    let (latency, injected) = state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .inject
        .on_call(name);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(f) = injected {
        return f.into_response();
    }
    if matches!(
        name,
        "WaitForUpdatesEx" | "WaitForUpdates" | "CheckForUpdates"
    ) {
        return wait_for_updates(state, req, cookie).await;
    }
    let (reply, jobs, step) = {
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        let reply = dispatch(&mut st, req, cookie.as_deref());
        if reply.is_ok() && !read_only(name) {
            st.changed();
        }
        let jobs = std::mem::take(&mut st.pending);
        (reply, jobs, st.config.task_step)
    };
    for (id, job) in jobs {
        tokio::spawn(run_task(Arc::clone(&state), id, job, step));
    }
    match reply {
        Ok((body, set_cookie)) => {
            let mut resp = xml(StatusCode::OK, body);
            if let Some(c) = set_cookie
                && let Ok(v) = HeaderValue::from_str(&c)
            {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(f) => f.into_response(),
    }
}

async fn pause(d: Duration) {
    if d.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(d).await;
    }
}

/// Runs a task: queued for one step, running (progress 0, then 50) for another, then its job
/// decides success or error. Each transition is a change collectors see.
async fn run_task(state: Shared, id: String, job: Job, step: Duration) {
    pause(step).await;
    {
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        task::start(&mut st.inv, &id);
        st.changed();
    }
    pause(step / 2).await;
    {
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        task::progress(&mut st.inv, &id, 50);
        st.changed();
    }
    pause(step / 2).await;
    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
    let outcome = job(&mut st);
    task::finish(&mut st.inv, &id, outcome);
    st.changed();
}

/// The key of a collector's wait state: private collectors by id, the default one per session.
fn collector_key(session: &str, this: &ManagedObjectReference) -> String {
    if this.value == PROPERTY_COLLECTOR {
        format!("{session}#{PROPERTY_COLLECTOR}")
    } else {
        this.value.clone()
    }
}

/// Counts a wait in progress; uncounts it however the wait ends (also when the client goes).
struct Waiting {
    state: Shared,
    key: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = st.collectors.get_mut(&self.key) {
            c.waiting = c.waiting.saturating_sub(1);
        }
    }
}

/// WaitForUpdatesEx, WaitForUpdates and CheckForUpdates: the changes of the collector's filters
/// since `version` (everything when it is empty), waiting for some unless `maxWaitSeconds`
/// runs out (then the answer is empty, `null`).
async fn wait_for_updates(state: Shared, mut req: Request, cookie: Option<String>) -> Response {
    match wait_inner(&state, &mut req, cookie.as_deref()).await {
        Ok(Some(set)) => xml(StatusCode::OK, encode_response(req.method, &[&&set])),
        Ok(None) => xml(StatusCode::OK, encode_response(req.method, &[])),
        Err(f) => f.into_response(),
    }
}

async fn wait_inner(
    state: &Shared,
    req: &mut Request,
    cookie: Option<&str>,
) -> Result<Option<UpdateSet>, Fault> {
    let name = req.method.name;
    let version: Option<String> = param!(req, opt, "version");
    let options: Option<WaitOptions> = if name == "WaitForUpdatesEx" {
        param!(req, opt, "options")
    } else {
        None
    };
    let max_wait = match name {
        "CheckForUpdates" => Some(Duration::ZERO),
        "WaitForUpdates" => None,
        _ => options
            .as_ref()
            .and_then(|o| o.max_wait_seconds)
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0))),
    };
    let budget = options
        .as_ref()
        .and_then(|o| o.max_object_updates)
        .and_then(|m| usize::try_from(m).ok())
        .filter(|m| *m > 0)
        .unwrap_or(usize::MAX);
    let deadline = max_wait.map(|d| tokio::time::Instant::now() + d);
    let (session, ckey, mut rx) = {
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        let session = authenticate(&mut st, cookie, req)?;
        if st.inv.resolve(&req.this).is_none() {
            return Err(not_found(&req.this));
        }
        let ckey = collector_key(&session, &req.this);
        let c = st.collectors.entry(ckey.clone()).or_default();
        c.session.clone_from(&session);
        c.waiting += 1;
        if let Some(v) = version.as_deref().filter(|v| !v.is_empty())
            && v.parse::<u64>().ok().is_none_or(|n| n > c.version)
        {
            c.waiting -= 1;
            return Err(Fault::new(
                format!("The collector version {v:?} is not valid for this collector."),
                vsphere_client::types::InvalidCollectorVersion::default(),
            ));
        }
        if version.as_deref().is_none_or(str::is_empty) {
            for f in st.filters.iter_mut().filter(|f| f.collector == ckey) {
                f.reset();
            }
        }
        (session, ckey, st.changes.subscribe())
    };
    let _waiting = Waiting {
        state: Arc::clone(state),
        key: ckey.clone(),
    };
    loop {
        {
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            rx.borrow_and_update();
            if !st.sessions.contains_key(&session) {
                let mut f = NotAuthenticated::default();
                f.object = Some(req.this.clone());
                return Err(Fault::new("The session is not authenticated.", f));
            }
            let SimState {
                inv,
                filters,
                collectors,
                ..
            } = &mut *st;
            let Some(c) = collectors.get_mut(&ckey) else {
                return Err(not_found(&req.this));
            };
            if c.cancel {
                c.cancel = false;
                return Err(Fault::new(
                    "The request was canceled by the user.",
                    RequestCanceled::default(),
                ));
            }
            let (mut left, mut truncated) = (budget, false);
            let mut set = UpdateSet::default();
            for f in filters.iter_mut().filter(|f| f.collector == ckey) {
                if let Some(u) = f.updates(inv, &mut left, &mut truncated)? {
                    set.filter_set.push(u);
                }
                if truncated {
                    break;
                }
            }
            if !set.filter_set.is_empty() {
                c.version += 1;
                set.version = c.version.to_string();
                set.truncated = truncated.then_some(true);
                return Ok(Some(set));
            }
        }
        let woke = match deadline {
            Some(d) => tokio::time::timeout_at(d, rx.changed()).await.ok(),
            None => Some(rx.changed().await),
        };
        match woke {
            Some(Ok(())) => {}
            // Timed out, or the simulator is stopping.
            _ => return Ok(None),
        }
    }
}

pub(crate) type Reply = Result<(String, Option<String>), Fault>;

#[expect(
    clippy::unnecessary_wraps,
    reason = "the success arm of every dispatch branch"
)]
pub(crate) fn ok(body: String) -> Reply {
    Ok((body, None))
}

/// The internal `Fetch` method through which pyVmomi reads one property of a managed object
/// (`vm.name`). It is in no WSDL, so the generated tables do not have it: its descriptor is
/// here, and the codec encodes its answer like any other.
static FETCH: MethodInfo = MethodInfo {
    name: "Fetch",
    managed_type: "ManagedObject",
    service: Service::Vim25,
    since: Since {
        service: Service::Vim25,
        release: 0,
    },
    params: &[FieldInfo::new(
        "prop",
        FieldKind::String,
        0,
        Service::Vim25,
        0,
    )],
    result: Some(FieldInfo::new(
        "returnval",
        FieldKind::Any,
        FieldInfo::OPTIONAL,
        Service::Vim25,
        0,
    )),
    task_result: None,
    faults: &[],
    privilege: Some("System.View"),
};

/// A decoded `Fetch` request: the object and the property path.
struct Fetch {
    this: ManagedObjectReference,
    prop: String,
}

/// Decodes `<Fetch><_this type=..>..</_this><prop>..</prop></Fetch>` with the codec's decoder.
fn decode_fetch(body: &str) -> Option<Fetch> {
    let mut d = Decoder::new(body);
    let envelope = d.next_child().ok()??;
    if envelope.local() != "Envelope" {
        return None;
    }
    let method = loop {
        let child = d.next_child().ok()??;
        if child.local() == "Body" {
            break d.next_child().ok()??;
        }
        d.skip(&child).ok()?;
    };
    if method.local() != "Fetch" {
        return None;
    }
    let (mut this, mut prop) = (None, None);
    while let Some(child) = d.next_child().ok()? {
        match child.local() {
            "_this" => {
                let f = FieldInfo::new("_this", FieldKind::MoRef(None), 0, Service::Vim25, 0);
                this = Some(ManagedObjectReference::decode_value(&mut d, &child, &f).ok()?);
            }
            "prop" => prop = Some(d.read_text(&child).ok()?.trim().to_owned()),
            _ => d.skip(&child).ok()?,
        }
    }
    Some(Fetch {
        this: this?,
        prop: prop?,
    })
}

fn fetch_property(st: &mut SimState, cookie: Option<&str>, fetch: &Fetch) -> Result<String, Fault> {
    st.expire_idle();
    let Some(s) = cookie.and_then(|c| st.sessions.get_mut(c)) else {
        let mut f = NotAuthenticated::default();
        f.object = Some(fetch.this.clone());
        f.privilege_id = Some("System.View".to_owned());
        return Err(Fault::new("The session is not authenticated.", f));
    };
    s.last_active = Instant::now();
    let Some(obj) = st.inv.resolve(&fetch.this) else {
        return Err(not_found(&fetch.this));
    };
    let segments: Vec<&str> = fetch.prop.split('.').collect();
    let value = match st.inv.value(obj, segments[0]) {
        None => None,
        Some(top) => crate::path::read(&top, &segments[1..])
            .map_err(|_| Fault::from(CollectError::InvalidProperty(fetch.prop.clone())))?,
    };
    Ok(match value {
        Some(v) => encode_response(&FETCH, &[&&v]),
        None => encode_response(&FETCH, &[]),
    })
}

/// Checks the session; `Ok(key)` when the call may proceed.
fn authenticate(st: &mut SimState, cookie: Option<&str>, req: &Request) -> Result<String, Fault> {
    st.expire_idle();
    if let Some(key) = cookie
        && let Some(s) = st.sessions.get_mut(key)
    {
        s.last_active = Instant::now();
        return Ok(key.to_owned());
    }
    let mut f = NotAuthenticated::default();
    f.object = Some(req.this.clone());
    f.privilege_id = req.method.privilege.map(str::to_owned);
    Err(Fault::new("The session is not authenticated.", f))
}

fn dispatch(st: &mut SimState, mut req: Request, cookie: Option<&str>) -> Reply {
    let name = req.method.name;
    match name {
        "RetrieveServiceContent" => return ok(encode_response(req.method, &[&&service_content()])),
        "Login" => return login(st, &mut req),
        "PbmRetrieveServiceContent" => return crate::pbm::service_content(&req),
        "RetrieveContent" if req.method.service == Service::Vslm => {
            return crate::vslm::service_content(&req);
        }
        _ => {}
    }
    let key = authenticate(st, cookie, &req)?;
    match req.method.service {
        Service::Vslm => return crate::vslm::dispatch(st, &key, req),
        Service::Pbm => return crate::pbm::dispatch(st, req),
        _ => {}
    }
    if st.inv.resolve(&req.this).is_none() {
        return Err(not_found(&req.this));
    }
    match name {
        "Logout" => {
            st.end_session(&key);
            ok(encode_response(req.method, &[]))
        }
        "SessionIsActive" => {
            let id: String = param!(req, one, "sessionID");
            let user: String = param!(req, one, "userName");
            let active = st.sessions.get(&id).is_some_and(|s| s.user == user);
            ok(encode_response(req.method, &[&&active]))
        }
        "CurrentTime" => ok(encode_response(req.method, &[&&now()])),
        "RetrieveProperties" => {
            let specs: Vec<PropertyFilterSpec> = param!(req, many, "specSet");
            let items = wire::plan(&st.inv, &specs)?;
            ok(wire::retrieve_properties(
                req.method, &st.inv, &specs, &items,
            )?)
        }
        "RetrievePropertiesEx" => {
            let specs: Vec<PropertyFilterSpec> = param!(req, many, "specSet");
            let options: RetrieveOptions = param!(req, one, "options");
            let items = wire::plan(&st.inv, &specs)?;
            let max = options.max_objects.filter(|m| *m > 0).map(|m| m as usize);
            page(st, &key, req.method, specs, items, max)
        }
        "ContinueRetrievePropertiesEx" => {
            let token: String = param!(req, one, "token");
            let Some(rest) = st
                .sessions
                .get_mut(&key)
                .and_then(|s| s.pages.remove(&token))
            else {
                return Err(invalid_token(&token));
            };
            // Later pages keep the page size the first call chose.
            let size = rest.items.len().min(page_size_of(&token));
            page(st, &key, req.method, rest.specs, rest.items, Some(size))
        }
        "CancelRetrievePropertiesEx" => {
            let token: String = param!(req, one, "token");
            let removed = st
                .sessions
                .get_mut(&key)
                .and_then(|s| s.pages.remove(&token));
            if removed.is_none() {
                return Err(invalid_token(&token));
            }
            ok(encode_response(req.method, &[]))
        }
        "CreateVirtualDisk_Task" => {
            let name: String = param!(req, one, "name");
            let dc: Option<ManagedObjectReference> = param!(req, opt, "datacenter");
            let spec: Poly<VirtualDiskSpec> = param!(req, one, "spec");
            start_task(st, &key, &req, None, move |st| {
                crate::vdisk::create(&mut st.inv, &name, dc.as_ref(), &spec)
            })
        }
        "DeleteVirtualDisk_Task" => {
            let name: String = param!(req, one, "name");
            let dc: Option<ManagedObjectReference> = param!(req, opt, "datacenter");
            start_task(st, &key, &req, None, move |st| {
                crate::vdisk::delete(&mut st.inv, &name, dc.as_ref())
            })
        }
        "ExtendVirtualDisk_Task" => {
            let name: String = param!(req, one, "name");
            let dc: Option<ManagedObjectReference> = param!(req, opt, "datacenter");
            let new_kb: i64 = param!(req, one, "newCapacityKb");
            let _eager_zero: Option<bool> = param!(req, opt, "eagerZero");
            start_task(st, &key, &req, None, move |st| {
                crate::vdisk::extend(&mut st.inv, &name, dc.as_ref(), new_kb)
            })
        }
        "CopyVirtualDisk_Task" | "MoveVirtualDisk_Task" => {
            let source: String = param!(req, one, "sourceName");
            let source_dc: Option<ManagedObjectReference> = param!(req, opt, "sourceDatacenter");
            let dest: String = param!(req, one, "destName");
            let dest_dc: Option<ManagedObjectReference> = param!(req, opt, "destDatacenter");
            let force: Option<bool> = param!(req, opt, "force");
            let spec: Option<Poly<VirtualDiskSpec>> = if name == "CopyVirtualDisk_Task" {
                param!(req, opt, "destSpec")
            } else {
                None
            };
            let copy = name == "CopyVirtualDisk_Task";
            start_task(st, &key, &req, None, move |st| {
                let t = crate::vdisk::Transfer {
                    source: &source,
                    source_dc: source_dc.as_ref(),
                    dest: &dest,
                    dest_dc: dest_dc.as_ref(),
                    force: force.unwrap_or(false),
                };
                if copy {
                    crate::vdisk::copy(&mut st.inv, &t, spec.as_ref())
                } else {
                    crate::vdisk::move_disk(&mut st.inv, &t)
                }
            })
        }
        "InflateVirtualDisk_Task" | "ShrinkVirtualDisk_Task" => {
            let disk: String = param!(req, one, "name");
            let dc: Option<ManagedObjectReference> = param!(req, opt, "datacenter");
            let inflate = name == "InflateVirtualDisk_Task";
            start_task(st, &key, &req, None, move |st| {
                if inflate {
                    crate::vdisk::inflate(&mut st.inv, &disk, dc.as_ref())
                } else {
                    crate::vdisk::shrink(&mut st.inv, &disk, dc.as_ref())
                }
            })
        }
        "QueryVirtualDiskUuid" => {
            let name: String = param!(req, one, "name");
            let dc: Option<ManagedObjectReference> = param!(req, opt, "datacenter");
            let uuid = crate::vdisk::query_uuid(&st.inv, &name, dc.as_ref())?;
            ok(encode_response(req.method, &[&&uuid]))
        }
        "CreateContainerView" => {
            let container: ManagedObjectReference = param!(req, one, "container");
            let types: Vec<String> = param!(req, many, "type");
            let recursive: bool = param!(req, one, "recursive");
            let view = create_container_view(st, &container, &types, recursive)?;
            ok(encode_response(req.method, &[&&view]))
        }
        "DestroyView" => {
            st.inv.remove(&req.this.value);
            ok(encode_response(req.method, &[]))
        }
        "CreateFilter" => {
            let spec: PropertyFilterSpec = param!(req, one, "spec");
            let _partial: Option<bool> = param!(req, opt, "partialUpdates");
            collector::select(&st.inv, &spec)?;
            let ckey = collector_key(&key, &req.this);
            st.collectors
                .entry(ckey.clone())
                .or_default()
                .session
                .clone_from(&key);
            let id = st.inv.new_id("session[sim]filter");
            let r = ManagedObjectReference::new("PropertyFilter", &id);
            let mut o = MoObject::new("PropertyFilter", &id);
            o.set("spec", Any::Data(Box::new(spec.clone())));
            o.set("partialUpdates", Any::Bool(false));
            st.inv.insert(o);
            st.filters.push(Filter::new(r.clone(), ckey, spec));
            ok(encode_response(req.method, &[&&r]))
        }
        "DestroyPropertyFilter" => {
            let id = req.this.value.clone();
            st.filters.retain(|f| f.moref.value != id);
            st.inv.remove(&id);
            ok(encode_response(req.method, &[]))
        }
        "CreatePropertyCollector" => {
            let id = st.inv.new_id("session[sim]pc");
            st.inv.insert(MoObject::new("PropertyCollector", &id));
            st.collectors.insert(
                id.clone(),
                Collector {
                    session: key,
                    ..Collector::default()
                },
            );
            let r = ManagedObjectReference::new("PropertyCollector", id);
            ok(encode_response(req.method, &[&&r]))
        }
        "DestroyPropertyCollector" => {
            if req.this.value == PROPERTY_COLLECTOR {
                return Err(invalid_argument(
                    "The default property collector cannot be destroyed.",
                    Some("_this"),
                ));
            }
            st.drop_collector(&req.this.value);
            ok(encode_response(req.method, &[]))
        }
        "CancelWaitForUpdates" => {
            let ckey = collector_key(&key, &req.this);
            if let Some(c) = st.collectors.get_mut(&ckey)
                && c.waiting > 0
            {
                c.cancel = true;
            }
            ok(encode_response(req.method, &[]))
        }
        "PowerOnVM_Task" | "PowerOffVM_Task" | "ResetVM_Task" | "SuspendVM_Task" => {
            let op = match name {
                "PowerOnVM_Task" => PowerOp::On,
                "PowerOffVM_Task" => PowerOp::Off,
                "ResetVM_Task" => PowerOp::Reset,
                _ => PowerOp::Suspend,
            };
            let vm_id = req.this.value.clone();
            let entity = req.this.clone();
            start_task(st, &key, &req, Some(&entity), move |st| {
                vm::power(&mut st.inv, &vm_id, op)
            })
        }
        "MarkAsTemplate" => {
            vm::mark_as_template(&mut st.inv, &req.this.value)?;
            ok(encode_response(req.method, &[]))
        }
        "MarkAsVirtualMachine" => {
            let pool: ManagedObjectReference = param!(req, one, "pool");
            let host: Option<ManagedObjectReference> = param!(req, opt, "host");
            vm::mark_as_virtual_machine(&mut st.inv, &req.this.value, &pool, host.as_ref())?;
            ok(encode_response(req.method, &[]))
        }
        "ShutdownGuest" | "RebootGuest" | "StandbyGuest" => {
            let op = match name {
                "ShutdownGuest" => vm::GuestOp::Shutdown,
                "RebootGuest" => vm::GuestOp::Reboot,
                _ => vm::GuestOp::Standby,
            };
            vm::guest_op(&mut st.inv, &req.this.value, op)?;
            ok(encode_response(req.method, &[]))
        }
        "ReconfigVM_Task" => {
            let spec: VirtualMachineConfigSpec = param!(req, one, "spec");
            let vm_id = req.this.value.clone();
            let entity = req.this.clone();
            start_task(st, &key, &req, Some(&entity), move |st| {
                vm::reconfigure(&mut st.inv, &vm_id, &spec)
            })
        }
        "CloneVM_Task" => {
            let folder: ManagedObjectReference = param!(req, one, "folder");
            let clone_name: String = param!(req, one, "name");
            let spec: VirtualMachineCloneSpec = param!(req, one, "spec");
            let vm_id = req.this.value.clone();
            let entity = req.this.clone();
            start_task(st, &key, &req, Some(&entity), move |st| {
                vm::clone(&mut st.inv, &vm_id, &folder, &clone_name, &spec)
            })
        }
        "Destroy_Task" if req.this.type_ == "VirtualMachine" => {
            let vm_id = req.this.value.clone();
            let entity = req.this.clone();
            start_task(st, &key, &req, Some(&entity), move |st| {
                vm::destroy(&mut st.inv, &vm_id)
            })
        }
        "Destroy_Task" => {
            let entity = req.this.clone();
            let target = entity.clone();
            start_task(st, &key, &req, Some(&entity), move |st| {
                crate::entity::destroy(&mut st.inv, &target)
            })
        }
        "CreateFolder" => {
            let name: String = param!(req, one, "name");
            let parent = req.this.clone();
            let folder = crate::entity::create_folder(&mut st.inv, &parent, &name)?;
            ok(encode_response(req.method, &[&&folder]))
        }
        "CreateResourcePool" => {
            let name: String = param!(req, one, "name");
            let parent = req.this.clone();
            let pool = crate::entity::create_pool(&mut st.inv, &parent, &name)?;
            ok(encode_response(req.method, &[&&pool]))
        }
        "CreateVM_Task" => {
            let config: VirtualMachineConfigSpec = param!(req, one, "config");
            let pool: ManagedObjectReference = param!(req, one, "pool");
            let host: Option<ManagedObjectReference> = param!(req, opt, "host");
            let folder = req.this.clone();
            start_task(st, &key, &req, Some(&folder.clone()), move |st| {
                vm::create(&mut st.inv, &folder, &config, &pool, host.as_ref())
            })
        }
        "AttachDisk_Task" => {
            let disk: ID = param!(req, one, "diskId");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let controller: Option<i32> = param!(req, opt, "controllerKey");
            let unit: Option<i32> = param!(req, opt, "unitNumber");
            let vm_id = req.this.value.clone();
            let entity = req.this.clone();
            start_task(st, &key, &req, Some(&entity), move |st| {
                fcd::attach(&mut st.inv, &vm_id, &disk.id, &ds, controller, unit)
            })
        }
        "DetachDisk_Task" => {
            let disk: ID = param!(req, one, "diskId");
            let vm_id = req.this.value.clone();
            let entity = req.this.clone();
            start_task(st, &key, &req, Some(&entity), move |st| {
                fcd::detach(&mut st.inv, &vm_id, &disk.id)
            })
        }
        "CreateDisk_Task" => {
            let spec: VslmCreateSpec = param!(req, one, "spec");
            let ds = spec.backing_spec.as_ref().map(|b| b.datastore.clone());
            start_task(st, &key, &req, ds.as_ref(), move |st| {
                fcd::create(&mut st.inv, &spec)
            })
        }
        "DeleteVStorageObject_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                let r = fcd::delete(&mut st.inv, &disk.id, &ds);
                if r.is_ok() {
                    st.rest.forget_fcd(&disk.id);
                }
                r
            })
        }
        "ExtendDisk_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let mb: i64 = param!(req, one, "newCapacityInMB");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                fcd::extend(&mut st.inv, &disk.id, &ds, mb)
            })
        }
        "ListVStorageObject" => {
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let ids = fcd::list(&st.inv, &ds)?;
            ok(encode_response(req.method, &[&ids.as_slice()]))
        }
        "RetrieveVStorageObject" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let o = fcd::retrieve(&st.inv, &disk.id, &ds)?;
            ok(encode_response(req.method, &[&&o]))
        }
        "RetrieveVStorageObjectAssociations" => {
            let specs: Vec<RetrieveVStorageObjSpec> = param!(req, many, "ids");
            let a = fcd::associations(&st.inv, &specs);
            ok(encode_response(req.method, &[&a.as_slice()]))
        }
        "VStorageObjectCreateSnapshot_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let description: String = param!(req, one, "description");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                fcd::create_snapshot(&mut st.inv, &disk.id, Some(&ds), &description)
            })
        }
        "RevertVStorageObject_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let snap: ID = param!(req, one, "snapshotId");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                fcd::revert(&mut st.inv, &disk.id, Some(&ds), &snap.id)
            })
        }
        "RetrieveSnapshotInfo" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let info = fcd::snapshot_info(&st.inv, &disk.id, Some(&ds))?;
            ok(encode_response(req.method, &[&&info]))
        }
        "RetrieveSnapshotDetails" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let snap: ID = param!(req, one, "snapshotId");
            let d = fcd::snapshot_details(&st.inv, &disk.id, Some(&ds), &snap.id)?;
            ok(encode_response(req.method, &[&&d]))
        }
        "DeleteSnapshot_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let snap: ID = param!(req, one, "snapshotId");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                fcd::delete_snapshot(&mut st.inv, &disk.id, Some(&ds), &snap.id)
            })
        }
        "RenameVStorageObject" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let new_name: String = param!(req, one, "name");
            fcd::rename(&mut st.inv, &disk.id, Some(&ds), &new_name)?;
            ok(encode_response(req.method, &[]))
        }
        "VCenterUpdateVStorageObjectMetadataEx_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let metadata: Vec<KeyValue> = param!(req, many, "metadata");
            let delete_keys: Vec<String> = param!(req, many, "deleteKeys");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                let o = fcd::update_metadata(
                    &mut st.inv,
                    &disk.id,
                    Some(&ds),
                    &metadata,
                    &delete_keys,
                )?;
                Ok(Some(Any::Data(Box::new(o))))
            })
        }
        "CloneVStorageObject_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let spec: VslmCloneSpec = param!(req, one, "spec");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                fcd::clone(&mut st.inv, &disk.id, Some(&ds), &spec)
            })
        }
        "RelocateVStorageObject_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds: ManagedObjectReference = param!(req, one, "datastore");
            let spec: VslmRelocateSpec = param!(req, one, "spec");
            start_task(st, &key, &req, Some(&ds.clone()), move |st| {
                fcd::relocate(&mut st.inv, &disk.id, Some(&ds), &spec)
            })
        }
        "AttachTagToVStorageObject"
        | "DetachTagFromVStorageObject"
        | "ListTagsAttachedToVStorageObject" => fcd::tag_call(st, &mut req),
        "ListVStorageObjectsAttachedToTag" => {
            let category: String = param!(req, one, "category");
            let tag: String = param!(req, one, "tag");
            let ids: Vec<ID> = st
                .rest
                .fcds_with_tag(&category, &tag)?
                .into_iter()
                .filter(|d| st.inv.fcds.contains_key(d))
                .map(|d| {
                    let mut i = ID::default();
                    i.id = d;
                    i
                })
                .collect();
            ok(encode_response(req.method, &[&ids.as_slice()]))
        }
        "CreateListView" => {
            let objs: Vec<ManagedObjectReference> = param!(req, many, "obj");
            let view = create_list_view(st, &objs);
            ok(encode_response(req.method, &[&&view]))
        }
        "CreateListViewFromView" => {
            let from: ManagedObjectReference = param!(req, one, "view");
            let objs = st
                .inv
                .resolve(&from)
                .map(|_| st.inv.refs_of(&from.value, "view"))
                .ok_or_else(|| not_found(&from))?;
            let view = create_list_view(st, &objs);
            ok(encode_response(req.method, &[&&view]))
        }
        "ModifyListView" | "ResetListView" => {
            if st.inv.resolve(&req.this).is_none() {
                return Err(not_found(&req.this));
            }
            let (add, remove): (Vec<ManagedObjectReference>, Vec<ManagedObjectReference>) =
                if name == "ModifyListView" {
                    (param!(req, many, "add"), param!(req, many, "remove"))
                } else {
                    (param!(req, many, "obj"), Vec::new())
                };
            let mut view = if name == "ModifyListView" {
                st.inv.refs_of(&req.this.value, "view")
            } else {
                Vec::new()
            };
            view.retain(|r| !remove.contains(r));
            let mut unresolved = Vec::new();
            for r in add {
                if st.inv.resolve(&r).is_none() {
                    unresolved.push(r);
                } else if !view.contains(&r) {
                    view.push(r);
                }
            }
            if let Some(o) = st.inv.get_mut(&req.this.value) {
                o.set("view", Any::Array(AnyArray::MoRef(view)));
            }
            ok(encode_response(req.method, &[&unresolved.as_slice()]))
        }
        "FindByInventoryPath" => {
            let path: String = param!(req, one, "inventoryPath");
            reply_opt_ref(req.method, search::find_by_inventory_path(&st.inv, &path))
        }
        "FindChild" => {
            let entity: ManagedObjectReference = param!(req, one, "entity");
            let child: String = param!(req, one, "name");
            if st.inv.resolve(&entity).is_none() {
                return Err(not_found(&entity));
            }
            reply_opt_ref(
                req.method,
                search::find_child(&st.inv, &entity.value, &child),
            )
        }
        "FindByUuid" => {
            let uuid: String = param!(req, one, "uuid");
            let vm_search: bool = param!(req, one, "vmSearch");
            let instance: Option<bool> = param!(req, opt, "instanceUuid");
            reply_opt_ref(
                req.method,
                search::find_by_uuid(&st.inv, &uuid, vm_search, instance.unwrap_or(false)),
            )
        }
        _ => Err(not_implemented(name)),
    }
}

fn reply_opt_ref(method: &MethodInfo, r: Option<ManagedObjectReference>) -> Reply {
    match r {
        Some(r) => ok(encode_response(method, &[&&r])),
        None => ok(encode_response(method, &[])),
    }
}

/// Creates a queued task whose job the server runs after answering (see [`run_task`]).
fn start_task(
    st: &mut SimState,
    session: &str,
    req: &Request,
    entity: Option<&ManagedObjectReference>,
    job: impl FnOnce(&mut SimState) -> task::TaskOutcome + Send + 'static,
) -> Reply {
    let t = queue_task(st, session, req, entity, job);
    ok(encode_response(req.method, &[&&t]))
}

/// Creates a queued task (a vim25 `Task`) and schedules its job; its reference.
pub(crate) fn queue_task(
    st: &mut SimState,
    session: &str,
    req: &Request,
    entity: Option<&ManagedObjectReference>,
    job: impl FnOnce(&mut SimState) -> task::TaskOutcome + Send + 'static,
) -> ManagedObjectReference {
    let user = st
        .sessions
        .get(session)
        .map(|s| s.user.clone())
        .unwrap_or_default();
    let entity = entity.filter(|e| st.inv.resolve(e).is_some());
    let t = task::create(&mut st.inv, &user, req.method, entity);
    st.pending.push((t.value.clone(), Box::new(job)));
    t
}

fn invalid_token(token: &str) -> Fault {
    let mut f = InvalidProperty::default();
    f.name = "token".to_owned();
    Fault::new(format!("unknown or finished retrieval token {token:?}"), f)
}

/// Tokens carry their page size: `{size}-{n}`.
fn page_size_of(token: &str) -> usize {
    token
        .split_once('-')
        .and_then(|(s, _)| s.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Answers one page of results and, when more remain, keeps the rest under a token.
fn page(
    st: &mut SimState,
    key: &str,
    method: &MethodInfo,
    specs: Vec<PropertyFilterSpec>,
    mut items: Vec<(usize, ManagedObjectReference)>,
    max: Option<usize>,
) -> Reply {
    if items.is_empty() {
        return ok(encode_response(method, &[]));
    }
    let mut rest = None;
    if let Some(max) = max.filter(|m| *m < items.len()) {
        st.next_token += 1;
        rest = Some((format!("{max}-{}", st.next_token), items.split_off(max)));
    }
    let token = rest.as_ref().map(|(t, _)| t.as_str());
    let body = wire::retrieve_result(method, &st.inv, &specs, &items, token)?;
    if let Some((token, items)) = rest
        && let Some(s) = st.sessions.get_mut(key)
    {
        s.pages.insert(token, Pending { specs, items });
    }
    ok(body)
}

fn login(st: &mut SimState, req: &mut Request) -> Reply {
    let user: String = param!(req, one, "userName");
    let password: String = param!(req, one, "password");
    if user != st.config.user || password != st.config.password {
        return Err(Fault::new(
            "Cannot complete login due to an incorrect user name or password.",
            InvalidLogin::default(),
        ));
    }
    let key = new_session_key();
    let login_time = now();
    let mut us = UserSession::default();
    us.key.clone_from(&key);
    us.user_name.clone_from(&user);
    us.full_name.clone_from(&user);
    us.login_time = login_time;
    us.last_active_time = login_time;
    us.locale = "en".to_owned();
    us.message_locale = "en".to_owned();
    st.sessions.insert(
        key.clone(),
        Session {
            user,
            last_active: Instant::now(),
            pages: HashMap::new(),
        },
    );
    let cookie = format!("{COOKIE}=\"{key}\"; Path=/; HttpOnly");
    Ok((encode_response(req.method, &[&&us]), Some(cookie)))
}

fn service_content() -> ServiceContent {
    let mut c = ServiceContent::default();
    c.root_folder = ManagedObjectReference::new("Folder", ROOT_FOLDER);
    c.property_collector = ManagedObjectReference::new("PropertyCollector", PROPERTY_COLLECTOR);
    c.view_manager = Some(ManagedObjectReference::new("ViewManager", VIEW_MANAGER));
    c.session_manager = Some(ManagedObjectReference::new(
        "SessionManager",
        SESSION_MANAGER,
    ));
    c.task_manager = Some(ManagedObjectReference::new("TaskManager", TASK_MANAGER));
    c.search_index = Some(ManagedObjectReference::new("SearchIndex", SEARCH_INDEX));
    c.v_storage_object_manager = Some(ManagedObjectReference::new(
        "VcenterVStorageObjectManager",
        VSTORAGE_OBJECT_MANAGER,
    ));
    c.virtual_disk_manager = Some(ManagedObjectReference::new(
        "VirtualDiskManager",
        VIRTUAL_DISK_MANAGER,
    ));
    c.about = Some(Obj::new(about()));
    c
}

/// The entities directly inside a container, as a ContainerView sees them.
fn children(inv: &Inventory, obj: &MoObject) -> Vec<ManagedObjectReference> {
    let props: &[&str] = match obj.moref.type_.as_str() {
        "Folder" => &["childEntity"],
        "Datacenter" => &["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"],
        "ComputeResource" | "ClusterComputeResource" => &["host", "resourcePool"],
        "ResourcePool" | "VirtualApp" => &["resourcePool", "vm"],
        "HostSystem" => &["vm"],
        _ => &[],
    };
    props
        .iter()
        .flat_map(|p| inv.refs_of(&obj.moref.value, p))
        .collect()
}

/// The objects a container view shows.
fn view_contents(
    inv: &Inventory,
    root: &MoObject,
    types: &[String],
    recursive: bool,
) -> Vec<ManagedObjectReference> {
    let mut seen = std::collections::HashSet::new();
    let mut view = Vec::new();
    let mut queue: std::collections::VecDeque<ManagedObjectReference> = children(inv, root).into();
    while let Some(r) = queue.pop_front() {
        if !seen.insert(r.value.clone()) {
            continue;
        }
        let Some(o) = inv.get(&r.value) else {
            continue;
        };
        if types.is_empty() || types.iter().any(|t| collector::is_a(&r.type_, t)) {
            view.push(r.clone());
        }
        if recursive {
            queue.extend(children(inv, o));
        }
    }
    view
}

/// Recomputes every container view's `view` (views follow the inventory, as vCenter's do).
fn refresh_views(inv: &mut Inventory) {
    let views: Vec<(String, ManagedObjectReference, Vec<String>, bool)> = inv
        .of_type("ContainerView")
        .filter_map(|o| {
            let Some(Any::MoRef(c)) = o.prop("container") else {
                return None;
            };
            let types = match o.prop("type") {
                Some(Any::Array(AnyArray::String(t))) => t.clone(),
                _ => Vec::new(),
            };
            let recursive = matches!(o.prop("recursive"), Some(Any::Bool(true)));
            Some((o.moref.value.clone(), c.clone(), types, recursive))
        })
        .collect();
    let lists: Vec<String> = inv
        .of_type("ListView")
        .map(|o| o.moref.value.clone())
        .collect();
    for id in lists {
        let mut v = inv.refs_of(&id, "view");
        let before = v.len();
        v.retain(|r| inv.resolve(r).is_some());
        if v.len() != before
            && let Some(o) = inv.get_mut(&id)
        {
            o.set("view", Any::Array(AnyArray::MoRef(v)));
        }
    }
    for (id, container, types, recursive) in views {
        let contents = match inv.resolve(&container) {
            Some(root) => view_contents(inv, root, &types, recursive),
            None => Vec::new(),
        };
        if let Some(o) = inv.get_mut(&id) {
            o.set("view", Any::Array(AnyArray::MoRef(contents)));
        }
    }
}

/// A ListView of the given objects (those that do not exist are left out, as vCenter does).
fn create_list_view(st: &mut SimState, objs: &[ManagedObjectReference]) -> ManagedObjectReference {
    let mut view: Vec<ManagedObjectReference> = Vec::new();
    for r in objs {
        if st.inv.resolve(r).is_some() && !view.contains(r) {
            view.push(r.clone());
        }
    }
    let id = st.inv.new_id("session[sim]listview");
    st.inv.insert(MoObject {
        moref: ManagedObjectReference::new("ListView", &id),
        props: vec![("view", Any::Array(AnyArray::MoRef(view)))],
    });
    ManagedObjectReference::new("ListView", id)
}

fn create_container_view(
    st: &mut SimState,
    container: &ManagedObjectReference,
    types: &[String],
    recursive: bool,
) -> Result<ManagedObjectReference, Fault> {
    let Some(root) = st.inv.resolve(container) else {
        return Err(not_found(container));
    };
    let view = view_contents(&st.inv, root, types, recursive);
    let id = st.inv.new_id("session[sim]view");
    st.inv.insert(MoObject {
        moref: ManagedObjectReference::new("ContainerView", &id),
        props: vec![
            ("view", Any::Array(AnyArray::MoRef(view))),
            ("container", Any::MoRef(container.clone())),
            ("type", Any::Array(AnyArray::String(types.to_vec()))),
            ("recursive", Any::Bool(recursive)),
        ],
    });
    Ok(ManagedObjectReference::new("ContainerView", id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others_and_unquoted() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; vmware_soap_session=\"52ab\"; c=d"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("52ab"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn session_keys_differ() {
        assert_ne!(new_session_key(), new_session_key());
        assert_eq!(new_session_key().len(), 36);
    }

    #[test]
    fn config_debug_redacts_the_password() {
        let c = Config {
            user: "u".into(),
            password: "hunter2".into(),
            idle_timeout: Duration::from_secs(1),
            task_step: Duration::ZERO,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn fetch_requests_decode() {
        let body = r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header/><soapenv:Body><Fetch xmlns="urn:vim25"><_this type="VirtualMachine">vm-1</_this><prop>runtime.powerState</prop></Fetch></soapenv:Body></soapenv:Envelope>"#;
        let f = decode_fetch(body).unwrap();
        assert_eq!(
            f.this,
            ManagedObjectReference::new("VirtualMachine", "vm-1")
        );
        assert_eq!(f.prop, "runtime.powerState");
        assert!(decode_fetch(&body.replace("Fetch", "Other")).is_none());
        assert!(decode_fetch("not xml").is_none());
    }

    #[test]
    fn fetch_reads_a_property_with_its_type() {
        let inv = Inventory::build(&crate::InventoryShape::default());
        let config = Config {
            user: "u".into(),
            password: "p".into(),
            idle_timeout: Duration::from_secs(60),
            task_step: Duration::ZERO,
        };
        let mut st = SimState::new(inv, config);
        let this = ManagedObjectReference::new("Folder", ROOT_FOLDER);
        let fetch = || Fetch {
            this: this.clone(),
            prop: "name".into(),
        };
        assert!(fetch_property(&mut st, None, &fetch()).is_err());
        st.sessions.insert(
            "k".into(),
            Session {
                user: "u".into(),
                last_active: Instant::now(),
                pages: HashMap::new(),
            },
        );
        let body = fetch_property(&mut st, Some("k"), &fetch()).unwrap();
        assert!(
            body.contains(r#"<returnval xsi:type="xsd:string">Datacenters</returnval>"#),
            "{body}"
        );
    }

    #[test]
    fn page_tokens_carry_their_size() {
        assert_eq!(page_size_of("5-12"), 5);
        assert_eq!(page_size_of("junk"), usize::MAX);
    }
}
