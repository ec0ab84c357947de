//! The Automation REST endpoints, in both styles vCenter has served:
//!
//! - `/api/session` (`POST` with basic auth answers the session id as a bare JSON string,
//!   `GET` the session's user, `DELETE` ends it) and `/rest/com/vmware/cis/session` (the same,
//!   wrapped in `{"value": ...}`, plus the `vmware-api-session-id` cookie and `?~action=get`);
//! - `GET /api/vcenter/{vm,host,datastore,cluster,network}` and `/rest/vcenter/...` from the live
//!   inventory (ids are managed object ids; filters `names=`/`filter.names=` and the others
//!   vCenter documents; more than 4,000 results is `unable_to_allocate_resource`);
//! - tagging on `/api/cis/tagging/...` and `/rest/com/vmware/cis/tagging/...`: categories and
//!   tags (create, list, get, delete, `list-tags-for-category`) and tag associations (`attach`,
//!   `detach`, `list-attached-objects`, `list-attached-tags`, `list-attached-tags-on-objects`,
//!   `attach-tag-to-multiple-objects`), one store for both styles.
//!
//! Sessions take the SOAP side's credentials and idle timeout but have their own ids;
//! [`Simulator::expire_sessions`](crate::Simulator::expire_sessions) ends them too. Errors come
//! in each style's documented shape (`{"error_type": "NOT_FOUND", "messages": [...]}` on
//! `/api`, `{"type": "com.vmware.vapi.std.errors.not_found", "value": {...}}` on `/rest`).
//! Updates (`PATCH`), `used_by`, `attach-multiple-tags-to-object` and
//! `detach-multiple-tags-from-object` answer `unsupported` (HTTP 501).

mod tagging;
mod vcenter;

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use vsphere_client::rest::{
    ApiStyle, CategorySpec, LocalizableMessage, ObjectId, RestErrorKind, SESSION_HEADER, TagSpec,
};

use crate::server::{Shared, SimState};

pub(crate) use tagging::TagStore;

/// An error to answer in the request's style.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) kind: RestErrorKind,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(kind: RestErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn unsupported(what: &str) -> Self {
        Self::new(
            RestErrorKind::Unsupported,
            format!("{what} is not built in this release of vsphere-sim"),
        )
    }
}

struct RestSession {
    user: String,
    created: SystemTime,
    last_active: Instant,
}

/// The REST side's state: sessions and the tagging store.
#[derive(Default)]
pub(crate) struct Store {
    sessions: HashMap<String, RestSession>,
    tags: TagStore,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("sessions", &self.sessions.len())
            .field("tags", &self.tags)
            .finish()
    }
}

/// The tagging association type of First Class Disks (as govmomi's simulator names them).
pub(crate) const FCD_TYPE: &str = "fcd";

fn fcd_object(disk: &str) -> ObjectId {
    ObjectId::new(FCD_TYPE, disk)
}

/// A tagging error as the vim25 fault the FCD tagging methods give.
fn to_fault(e: ApiError) -> crate::fault::Fault {
    use vsphere_client::types::{InvalidArgument, InvalidState, NotFound};
    match e.kind {
        RestErrorKind::NotFound => crate::fault::Fault::new(e.message, NotFound::default()),
        RestErrorKind::InvalidArgument => {
            crate::fault::Fault::new(e.message, InvalidArgument::default())
        }
        _ => crate::fault::Fault::new(e.message, InvalidState::default()),
    }
}

fn tag_not_found(category: &str, tag: &str) -> crate::fault::Fault {
    crate::fault::Fault::new(
        format!(
            "The object or item referred to could not be found (tag {tag:?} in category {category:?})."
        ),
        vsphere_client::types::NotFound::default(),
    )
}

impl Store {
    /// The id of the tag named `tag` in the category named `category`.
    fn tag_id(&self, category: &str, tag: &str) -> Result<String, crate::fault::Fault> {
        self.tags
            .find_by_names(category, tag)
            .map(|t| t.id.clone())
            .ok_or_else(|| tag_not_found(category, tag))
    }

    /// AttachTagToVStorageObject: the tag (by category and tag name) must exist in the
    /// tagging store, and its category must take `fcd` objects (or any).
    pub(crate) fn attach_fcd_tag(
        &mut self,
        disk: &str,
        category: &str,
        tag: &str,
    ) -> Result<(), crate::fault::Fault> {
        let id = self.tag_id(category, tag)?;
        self.tags
            .attach(&id, &fcd_object(disk), true)
            .map_err(to_fault)
    }

    /// DetachTagFromVStorageObject.
    pub(crate) fn detach_fcd_tag(
        &mut self,
        disk: &str,
        category: &str,
        tag: &str,
    ) -> Result<(), crate::fault::Fault> {
        let id = self.tag_id(category, tag)?;
        self.tags.detach(&id, &fcd_object(disk)).map_err(to_fault)
    }

    /// ListTagsAttachedToVStorageObject: (category name, tag name) pairs.
    pub(crate) fn fcd_tags(&self, disk: &str) -> Vec<(String, String)> {
        self.tags
            .attached_tags(&fcd_object(disk))
            .into_iter()
            .filter_map(|id| {
                let t = self.tags.tag(&id).ok()?;
                Some((self.tags.category_name(&id)?.to_owned(), t.name.clone()))
            })
            .collect()
    }

    /// ListVStorageObjectsAttachedToTag: the disk ids.
    pub(crate) fn fcds_with_tag(
        &self,
        category: &str,
        tag: &str,
    ) -> Result<Vec<String>, crate::fault::Fault> {
        let id = self.tag_id(category, tag)?;
        Ok(self
            .tags
            .attached_objects(&id)
            .map_err(to_fault)?
            .into_iter()
            .filter(|o| o.type_ == FCD_TYPE)
            .map(|o| o.id)
            .collect())
    }

    /// Forgets a deleted disk's tags.
    pub(crate) fn forget_fcd(&mut self, disk: &str) {
        self.tags.forget(&fcd_object(disk));
    }

    /// The tagging store as JSON (kept by `--state-dir`).
    pub(crate) fn tags_json(&self) -> String {
        // A map of strings and plain structs: serialising it cannot fail.
        serde_json::to_string(&self.tags).unwrap_or_default()
    }

    /// Replaces the tagging store with a saved one.
    pub(crate) fn restore_tags(&mut self, json: &str) -> Result<(), String> {
        self.tags = serde_json::from_str(json).map_err(|e| format!("saved tags: {e}"))?;
        Ok(())
    }

    /// Ends every REST session; how many there were.
    pub(crate) fn expire_sessions(&mut self) -> usize {
        let n = self.sessions.len();
        self.sessions.clear();
        n
    }
}

/// The REST routes, to merge into the simulator's router (which supplies the state).
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/api/{*path}", any(handle))
        .route("/rest/{*path}", any(handle))
}

/// A successful answer: status, payload (unwrapped), and a cookie to set.
struct Reply {
    status: StatusCode,
    value: Option<Json>,
    cookie: Option<String>,
}

impl Reply {
    fn ok(value: Json) -> Self {
        Self {
            status: StatusCode::OK,
            value: Some(value),
            cookie: None,
        }
    }

    fn created(style: ApiStyle, value: Json) -> Self {
        Self {
            status: match style {
                ApiStyle::Api => StatusCode::CREATED,
                ApiStyle::Rest => StatusCode::OK,
            },
            value: Some(value),
            cookie: None,
        }
    }

    fn empty(style: ApiStyle) -> Self {
        Self {
            status: match style {
                ApiStyle::Api => StatusCode::NO_CONTENT,
                ApiStyle::Rest => StatusCode::OK,
            },
            value: None,
            cookie: None,
        }
    }
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn render(style: ApiStyle, result: Result<Reply, ApiError>) -> Response {
    match result {
        Ok(r) => {
            let mut resp = match (style, r.value) {
                (_, None) => r.status.into_response(),
                (ApiStyle::Api, Some(v)) => json_response(r.status, &v),
                (ApiStyle::Rest, Some(v)) => json_response(r.status, &json!({ "value": v })),
            };
            if let Some(c) = r.cookie
                && let Ok(v) = HeaderValue::from_str(&c)
            {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let messages = vec![LocalizableMessage {
                id: e.kind.rest_name(),
                default_message: e.message,
                args: Vec::new(),
            }];
            let body = match style {
                ApiStyle::Api => json!({ "error_type": e.kind.api_name(), "messages": messages }),
                ApiStyle::Rest => json!({
                    "type": e.kind.rest_name(),
                    "value": { "messages": messages },
                }),
            };
            json_response(status, &body)
        }
    }
}

/// Decodes `%XX` escapes of a path segment (ids carry `:`; clients may escape it).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed request.
struct Req<'a> {
    style: ApiStyle,
    method: &'a Method,
    /// Path segments after `/api` or `/rest`, with `/rest`'s `com/vmware` dropped.
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Req<'_> {
    fn action(&self) -> Option<&str> {
        let key = match self.style {
            ApiStyle::Api => "action",
            ApiStyle::Rest => "~action",
        };
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(self.body).map_err(|e| {
            ApiError::new(
                RestErrorKind::InvalidArgument,
                format!("the request body is not the documented JSON: {e}"),
            )
        })
    }

    /// The id in segment `i`: bare on `/api`, `id:...` on `/rest`.
    fn id(&self, i: usize) -> Result<String, ApiError> {
        let seg = &self.segments[i];
        match self.style {
            ApiStyle::Api => Ok(seg.clone()),
            ApiStyle::Rest => seg.strip_prefix("id:").map(str::to_owned).ok_or_else(|| {
                ApiError::new(
                    RestErrorKind::NotFound,
                    format!("/rest ids are written id:..., not {seg:?}"),
                )
            }),
        }
    }
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let (style, rest) = if let Some(r) = path.strip_prefix("/api/") {
        (ApiStyle::Api, r)
    } else if let Some(r) = path.strip_prefix("/rest/") {
        (ApiStyle::Rest, r)
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if style == ApiStyle::Rest
        && segments.len() >= 2
        && segments[0] == "com"
        && segments[1] == "vmware"
    {
        segments.drain(..2);
    }
    let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let req = Req {
        style,
        method: &method,
        segments,
        query,
        headers: &headers,
        body: &body,
    };
    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
    let reply = dispatch(&mut st, &req);
    // A tagging change is state `--state-dir` keeps: tell the saver (sessions are not kept).
    let is_session = req.segments.last().is_some_and(|s| s == "session");
    if reply.is_ok() && method != Method::GET && !is_session {
        st.changed();
    }
    render(style, reply)
}

fn dispatch(st: &mut SimState, req: &Req<'_>) -> Result<Reply, ApiError> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let session_path = match req.style {
        ApiStyle::Api => &["session"][..],
        ApiStyle::Rest => &["cis", "session"][..],
    };
    if segs == session_path {
        return session(st, req);
    }
    authenticate(st, req)?;
    match segs.as_slice() {
        ["vcenter", resource] => {
            if *req.method != Method::GET {
                return Err(method_not_allowed(req));
            }
            let prefix = match req.style {
                ApiStyle::Api => "",
                ApiStyle::Rest => "filter.",
            };
            vcenter::list(&st.inv, resource, &req.query, prefix).map(Reply::ok)
        }
        ["cis", "tagging", "category", rest @ ..] => category(st, req, rest.len()),
        ["cis", "tagging", "tag", rest @ ..] => tag(st, req, rest.len()),
        ["cis", "tagging", "tag-association", rest @ ..] => association(st, req, rest.len()),
        _ => Err(ApiError::new(
            RestErrorKind::NotFound,
            format!("no such resource: {}", req.segments.join("/")),
        )),
    }
}

fn method_not_allowed(req: &Req<'_>) -> ApiError {
    ApiError::new(
        RestErrorKind::InvalidArgument,
        format!("{} is not an operation of this resource", req.method),
    )
}

fn new_token() -> String {
    let (a, b) = crate::inventory::random_bits(SystemTime::now());
    format!("{a:016x}{b:016x}")
}

/// The session id a request carries (header, or the cookie `/rest` sets).
fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    crate::server::cookie(headers, SESSION_HEADER)
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        RestErrorKind::Unauthenticated,
        "This method requires authentication.",
    )
}

/// The live session of the request (its idle clock restarted), or `unauthenticated`.
fn authenticate<'s>(st: &'s mut SimState, req: &Req<'_>) -> Result<&'s mut RestSession, ApiError> {
    let token = token_of(req.headers).ok_or_else(unauthenticated)?;
    let idle = st.config.idle_timeout;
    let expired = st
        .rest
        .sessions
        .get(&token)
        .is_some_and(|s| s.last_active.elapsed() > idle);
    if expired {
        st.rest.sessions.remove(&token);
    }
    let s = st
        .rest
        .sessions
        .get_mut(&token)
        .ok_or_else(unauthenticated)?;
    s.last_active = Instant::now();
    Ok(s)
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn session_info(s: &RestSession) -> Json {
    let secs = s
        .created
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    json!({
        "user": s.user,
        "created_time": secs.to_string(),
        "last_accessed_time": s.last_active.elapsed().as_secs().to_string(),
    })
}

fn session(st: &mut SimState, req: &Req<'_>) -> Result<Reply, ApiError> {
    let is_login = *req.method == Method::POST && req.action().is_none();
    if is_login {
        let ok = basic_auth(req.headers)
            .filter(|(u, p)| *u == st.config.user && *p == st.config.password);
        let Some((user, _)) = ok else {
            return Err(ApiError::new(
                RestErrorKind::Unauthenticated,
                "Authentication required: wrong user name or password.",
            ));
        };
        let token = new_token();
        st.rest.sessions.insert(
            token.clone(),
            RestSession {
                user,
                created: SystemTime::now(),
                last_active: Instant::now(),
            },
        );
        let mut reply = Reply::created(req.style, Json::String(token.clone()));
        if req.style == ApiStyle::Rest {
            reply.cookie = Some(format!("{SESSION_HEADER}={token}; Path=/rest; HttpOnly"));
        }
        return Ok(reply);
    }
    match (req.method.as_str(), req.action()) {
        ("GET", None) | ("POST", Some("get")) => {
            let s = authenticate(st, req)?;
            Ok(Reply::ok(session_info(s)))
        }
        ("DELETE", None) => {
            authenticate(st, req)?;
            if let Some(t) = token_of(req.headers) {
                st.rest.sessions.remove(&t);
            }
            Ok(Reply::empty(req.style))
        }
        _ => Err(method_not_allowed(req)),
    }
}

/// A create body: the spec on `/api`, `{"create_spec": spec}` on `/rest`.
fn create_spec<T: DeserializeOwned>(req: &Req<'_>) -> Result<T, ApiError> {
    #[derive(Deserialize)]
    struct Wrapped<T> {
        create_spec: T,
    }
    match req.style {
        ApiStyle::Api => req.json(),
        ApiStyle::Rest => req.json::<Wrapped<T>>().map(|w| w.create_spec),
    }
}

fn to_json(v: impl serde::Serialize) -> Result<Json, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(RestErrorKind::Internal, e.to_string()))
}

/// `category` (`n == 0`) and `category/{id}` (`n == 1`).
fn category(st: &mut SimState, req: &Req<'_>, n: usize) -> Result<Reply, ApiError> {
    let tags = &mut st.rest.tags;
    match (n, req.method.as_str(), req.action()) {
        (0, "POST", None) => {
            let spec: CategorySpec = create_spec(req)?;
            let id = tags.create_category(spec)?;
            Ok(Reply::created(req.style, Json::String(id)))
        }
        (0, "GET", None) => to_json(tags.category_ids()).map(Reply::ok),
        (1, "GET", None) => to_json(tags.category(&req.id(3)?)?).map(Reply::ok),
        (1, "DELETE", None) => {
            tags.delete_category(&req.id(3)?)?;
            Ok(Reply::empty(req.style))
        }
        (0 | 1, "PATCH", _) => Err(ApiError::unsupported("updating a category")),
        (_, _, Some(a)) => Err(ApiError::unsupported(&format!("the category action {a:?}"))),
        _ => Err(method_not_allowed(req)),
    }
}

/// `tag` (`n == 0`) and `tag/{id}` (`n == 1`).
fn tag(st: &mut SimState, req: &Req<'_>, n: usize) -> Result<Reply, ApiError> {
    let tags = &mut st.rest.tags;
    match (n, req.method.as_str(), req.action()) {
        (0, "POST", None) => {
            let spec: TagSpec = create_spec(req)?;
            let id = tags.create_tag(spec)?;
            Ok(Reply::created(req.style, Json::String(id)))
        }
        (0, "GET", None) => to_json(tags.tag_ids()).map(Reply::ok),
        // `/api`: the category in the body; `/rest`: in the path.
        (0, "POST", Some("list-tags-for-category")) if req.style == ApiStyle::Api => {
            #[derive(Deserialize)]
            struct Body {
                category_id: String,
            }
            let b: Body = req.json()?;
            to_json(tags.tags_for_category(&b.category_id)?).map(Reply::ok)
        }
        (1, "POST", Some("list-tags-for-category")) if req.style == ApiStyle::Rest => {
            to_json(tags.tags_for_category(&req.id(3)?)?).map(Reply::ok)
        }
        (1, "GET", None) => to_json(tags.tag(&req.id(3)?)?).map(Reply::ok),
        (1, "DELETE", None) => {
            tags.delete_tag(&req.id(3)?)?;
            Ok(Reply::empty(req.style))
        }
        (0 | 1, "PATCH", _) => Err(ApiError::unsupported("updating a tag")),
        (_, _, Some(a)) => Err(ApiError::unsupported(&format!("the tag action {a:?}"))),
        _ => Err(method_not_allowed(req)),
    }
}

#[derive(Deserialize)]
struct OneObject {
    object_id: ObjectId,
}

#[derive(Deserialize)]
struct ManyObjects {
    object_ids: Vec<ObjectId>,
}

/// `tag-association` (`n == 0`) and `tag-association/{tag_id}` (`n == 1`); all `POST` actions.
fn association(st: &mut SimState, req: &Req<'_>, n: usize) -> Result<Reply, ApiError> {
    if *req.method != Method::POST {
        return Err(method_not_allowed(req));
    }
    let action = req.action().ok_or_else(|| {
        ApiError::new(
            RestErrorKind::InvalidArgument,
            "tag associations are actions: ?action=attach, detach, list-attached-objects, ...",
        )
    })?;
    let SimState { inv, rest, .. } = st;
    let tags = &mut rest.tags;
    match (n, action) {
        (1, "attach") => {
            let b: OneObject = req.json()?;
            let exists = vcenter::exists(inv, &b.object_id.type_, &b.object_id.id);
            tags.attach(&req.id(3)?, &b.object_id, exists)?;
            Ok(Reply::empty(req.style))
        }
        (1, "detach") => {
            let b: OneObject = req.json()?;
            tags.detach(&req.id(3)?, &b.object_id)?;
            Ok(Reply::empty(req.style))
        }
        (1, "list-attached-objects") => to_json(tags.attached_objects(&req.id(3)?)?).map(Reply::ok),
        (1, "attach-tag-to-multiple-objects") => {
            let b: ManyObjects = req.json()?;
            let objects: Vec<(ObjectId, bool)> = b
                .object_ids
                .into_iter()
                .map(|o| {
                    let e = vcenter::exists(inv, &o.type_, &o.id);
                    (o, e)
                })
                .collect();
            to_json(tags.attach_to_objects(&req.id(3)?, &objects)?).map(Reply::ok)
        }
        (0, "list-attached-tags") => {
            let b: OneObject = req.json()?;
            to_json(tags.attached_tags(&b.object_id)).map(Reply::ok)
        }
        (0, "list-attached-tags-on-objects") => {
            let b: ManyObjects = req.json()?;
            let out: Vec<Json> = b
                .object_ids
                .iter()
                .map(|o| json!({ "object_id": o, "tag_ids": tags.attached_tags(o) }))
                .collect();
            Ok(Reply::ok(Json::Array(out)))
        }
        (_, a) => Err(ApiError::unsupported(&format!(
            "the tag-association action {a:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_in_each_style() {
        let e = || ApiError::new(RestErrorKind::NotFound, "gone");
        let api = render(ApiStyle::Api, Err(e()));
        assert_eq!(api.status(), StatusCode::NOT_FOUND);
        let rest = render(ApiStyle::Rest, Err(e()));
        assert_eq!(rest.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn segments_decode_and_tokens_come_from_header_or_cookie() {
        assert_eq!(percent_decode("id%3Aurn%3Ax"), "id:urn:x");
        assert_eq!(percent_decode("100%"), "100%");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; vmware-api-session-id=tok"),
        );
        assert_eq!(token_of(&h).as_deref(), Some("tok"));
        h.insert(SESSION_HEADER, HeaderValue::from_static("hdr"));
        assert_eq!(token_of(&h).as_deref(), Some("hdr"));
    }

    #[test]
    fn basic_auth_decodes() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYTpzcw=="),
        );
        assert_eq!(basic_auth(&h), Some(("user".into(), "pa:ss".into())));
    }
}
