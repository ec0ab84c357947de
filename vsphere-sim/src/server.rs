//! The vim25 SOAP endpoint: sessions and method dispatch over the inventory, through the SDK's
//! own codec (`decode_request`, `encode_response`, `encode_fault`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vsphere_client::codec::{
    Any, AnyArray, DataObject, DateTime, Decoder, FieldInfo, FieldKind, ManagedObjectReference,
    MethodInfo, Obj, Request, Service, Since, Value, decode_request, encode_fault, encode_response,
};
use vsphere_client::types::{
    InvalidArgument, InvalidLogin, InvalidProperty, InvalidRequest, ManagedObjectNotFound,
    MethodNotFound, NotAuthenticated, NotImplemented, ObjectContent, PropertyFilterSpec,
    RetrieveOptions, RetrieveResult, ServiceContent, UserSession,
};

use crate::collector::{self, CollectError};
use crate::inventory::{Inventory, MoObject, ROOT_FOLDER, about};

/// The session cookie vCenter sets.
pub(crate) const COOKIE: &str = "vmware_soap_session";

/// The fixed ids of the service objects.
const SERVICE_INSTANCE: &str = "ServiceInstance";
const PROPERTY_COLLECTOR: &str = "propertyCollector";
const VIEW_MANAGER: &str = "ViewManager";
const SESSION_MANAGER: &str = "SessionManager";

/// Credentials and session policy.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) idle_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

struct Session {
    user: String,
    last_active: Instant,
    /// Paged results of RetrievePropertiesEx, by token.
    pages: HashMap<String, Vec<ObjectContent>>,
}

/// Everything the server mutates, behind one lock (no await happens while it is held).
pub(crate) struct SimState {
    pub(crate) inv: Inventory,
    sessions: HashMap<String, Session>,
    pub(crate) config: Config,
    next_token: u64,
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
        ] {
            inv.insert(MoObject {
                moref: ManagedObjectReference::new(t, id),
                props: Vec::new(),
            });
        }
        Self {
            inv,
            sessions: HashMap::new(),
            config,
            next_token: 0,
            rest: crate::rest::Store::default(),
        }
    }

    /// Ends every session now (the fault-injection "session expiry").
    pub(crate) fn expire_sessions(&mut self) -> usize {
        let n = self.sessions.len();
        self.sessions.clear();
        n + self.rest.expire_sessions()
    }
}

pub(crate) type Shared = Arc<Mutex<SimState>>;

/// The HTTP routes.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/sdk", post(soap))
        .route("/sdk/vimService", post(soap))
        .route("/sdk/vimServiceVersions.xml", get(versions))
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

/// A SOAP fault to send.
#[derive(Debug)]
struct Fault {
    message: String,
    detail: Box<dyn DataObject>,
}

impl Fault {
    fn new(message: impl Into<String>, detail: impl DataObject + 'static) -> Self {
        Self {
            message: message.into(),
            detail: Box::new(detail),
        }
    }

    fn into_response(self) -> Response {
        let body = encode_fault("ServerFaultCode", &self.message, &*self.detail);
        xml(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

fn new_session_key() -> String {
    let a = RandomState::new().hash_one(SystemTime::now());
    let b = RandomState::new().hash_one(a);
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn now() -> DateTime {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

fn bad_request(problem: impl std::fmt::Display) -> Fault {
    Fault::new(
        format!("invalid request: {problem}"),
        InvalidRequest::default(),
    )
}

fn invalid_argument(message: String, property: Option<&str>) -> Fault {
    let mut f = InvalidArgument::default();
    f.invalid_property = property.map(str::to_owned);
    Fault::new(message, f)
}

fn not_found(obj: &ManagedObjectReference) -> Fault {
    let mut f = ManagedObjectNotFound::default();
    f.obj = obj.clone();
    Fault::new(
        format!(
            "The object '{}:{}' has already been deleted or has not been completely created",
            obj.type_, obj.value
        ),
        f,
    )
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

async fn soap(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the body is not UTF-8").into_response();
    };
    let cookie = session_cookie(&headers);
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
    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
    match dispatch(&mut st, req, cookie.as_deref()) {
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

type Reply = Result<(String, Option<String>), Fault>;

#[expect(
    clippy::unnecessary_wraps,
    reason = "the success arm of every dispatch branch"
)]
fn ok(body: String) -> Reply {
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
    let timeout = st.config.idle_timeout;
    st.sessions.retain(|_, s| s.last_active.elapsed() < timeout);
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
    let value = match obj.prop(segments[0]) {
        None => None,
        Some(top) => crate::path::read(top, &segments[1..])
            .map_err(|_| Fault::from(CollectError::InvalidProperty(fetch.prop.clone())))?,
    };
    Ok(match value {
        Some(v) => encode_response(&FETCH, &[&&v]),
        None => encode_response(&FETCH, &[]),
    })
}

/// Checks the session; `Ok(key)` when the call may proceed.
fn authenticate(st: &mut SimState, cookie: Option<&str>, req: &Request) -> Result<String, Fault> {
    let timeout = st.config.idle_timeout;
    st.sessions.retain(|_, s| s.last_active.elapsed() < timeout);
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
        _ => {}
    }
    let key = authenticate(st, cookie, &req)?;
    if st.inv.resolve(&req.this).is_none() {
        return Err(not_found(&req.this));
    }
    match name {
        "Logout" => {
            st.sessions.remove(&key);
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
            let objs = collector::retrieve(&st.inv, &specs)?;
            ok(encode_response(req.method, &[&objs.as_slice()]))
        }
        "RetrievePropertiesEx" => {
            let specs: Vec<PropertyFilterSpec> = param!(req, many, "specSet");
            let options: RetrieveOptions = param!(req, one, "options");
            let objs = collector::retrieve(&st.inv, &specs)?;
            let max = options.max_objects.filter(|m| *m > 0).map(|m| m as usize);
            let result = page(st, &key, objs, max);
            ok(encode_response(req.method, &[&result.as_ref()]))
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
            let size = rest.len().min(page_size_of(&token));
            let result = page(st, &key, rest, Some(size)).unwrap_or_default();
            ok(encode_response(req.method, &[&&result]))
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
        _ => {
            let mut f = NotImplemented::default();
            f.msg = Some(format!(
                "{name} is not built in this release of vsphere-sim"
            ));
            Err(Fault::new(
                format!("{name} is not built in this release of vsphere-sim"),
                f,
            ))
        }
    }
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

/// Splits results into a page and, when more remain, a token under which the rest waits.
fn page(
    st: &mut SimState,
    key: &str,
    mut objs: Vec<ObjectContent>,
    max: Option<usize>,
) -> Option<RetrieveResult> {
    if objs.is_empty() {
        return None;
    }
    let mut result = RetrieveResult::default();
    if let Some(max) = max.filter(|m| *m < objs.len()) {
        let rest = objs.split_off(max);
        st.next_token += 1;
        let token = format!("{max}-{}", st.next_token);
        if let Some(s) = st.sessions.get_mut(key) {
            s.pages.insert(token.clone(), rest);
        }
        result.token = Some(token);
    }
    result.objects = objs;
    Some(result)
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

fn create_container_view(
    st: &mut SimState,
    container: &ManagedObjectReference,
    types: &[String],
    recursive: bool,
) -> Result<ManagedObjectReference, Fault> {
    let Some(root) = st.inv.resolve(container) else {
        return Err(not_found(container));
    };
    let mut seen = std::collections::HashSet::new();
    let mut view = Vec::new();
    let mut queue: std::collections::VecDeque<ManagedObjectReference> =
        children(&st.inv, root).into();
    while let Some(r) = queue.pop_front() {
        if !seen.insert(r.value.clone()) {
            continue;
        }
        let Some(o) = st.inv.get(&r.value) else {
            continue;
        };
        if types.is_empty() || types.iter().any(|t| collector::is_a(&r.type_, t)) {
            view.push(r.clone());
        }
        if recursive {
            queue.extend(children(&st.inv, o));
        }
    }
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
