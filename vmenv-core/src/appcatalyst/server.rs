//! An AppCatalyst-compatible REST server over any [`Hypervisor`], so that existing AppCatalyst
//! clients (its Vagrant provider, its Docker Machine driver) drive vmenv VMs.
//!
//! It serves the 13 operations under `/api` and the version probe `/json/swagger.json`
//! (version `1.0.0`), with AppCatalyst's wire quirks: raw-text `PATCH` bodies (quoted or not),
//! `{code,message}` replies for power state, IP and every error, string folder ids, and 408 from
//! `/ipaddress` until the guest answers.
//!
//! Where the backend differs from AppCatalyst it says so in the `{code,message}` reply rather
//! than pretending:
//! - importing a `.vmx` (`sourceReference`) is refused with 501; a disk image path is accepted
//!   and becomes [`Source::Image`];
//! - with the QEMU backend, shares (9p) can only be added while the VM is off (409 otherwise);
//!   the guest mounts share `<name>` at `/mnt/hgfs/<name>`;
//! - under user-mode networking the guest address is not routable: `/ipaddress` reports the
//!   guest's own address and adds an `X-Vmenv-Ssh: 127.0.0.1:<port>` header with the forwarded
//!   SSH endpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::backend::power_from_state;
use super::client::{FolderState, NewVm, PowerOp, VmInfo};
use crate::error::{Error, Result};
use crate::hypervisor::Hypervisor;
use crate::model::{SharedFolder, Source, VmName, VmSpec, VmState};

/// How long a graceful `shutdown` may take before the VM is powered off hard.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Where the guest mounts a share.
fn guest_mount_point(share: &str) -> String {
    format!("/mnt/hgfs/{share}")
}

#[derive(Clone)]
struct AppState {
    hv: Arc<dyn Hypervisor>,
    template: String,
}

/// A reply: a status and a JSON body.
struct Reply(StatusCode, serde_json::Value, Option<(String, String)>);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(self.1)).into_response();
        if let Some((k, v)) = self.2
            && let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::try_from(k),
                HeaderValue::try_from(v),
            )
        {
            r.headers_mut().insert(name, value);
        }
        r
    }
}

fn envelope(status: StatusCode, message: impl Into<String>) -> Reply {
    Reply(
        status,
        json!({ "code": status.as_u16(), "message": message.into() }),
        None,
    )
}

fn ok_json(v: serde_json::Value) -> Reply {
    Reply(StatusCode::OK, v, None)
}

/// Maps a library error onto the `{code,message}` reply the clients parse.
fn error_reply(e: &Error) -> Reply {
    let status = match e {
        Error::Invalid { .. } => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::AlreadyExists { .. } | Error::WrongState { .. } => StatusCode::CONFLICT,
        Error::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
        Error::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    envelope(status, e.to_string())
}

type Handled = std::result::Result<Reply, Reply>;

fn lift<T>(r: Result<T>) -> std::result::Result<T, Reply> {
    r.map_err(|e| error_reply(&e))
}

fn vm_name(id: &str) -> std::result::Result<VmName, Reply> {
    lift(VmName::new(id))
}

async fn existing(st: &AppState, id: &str) -> std::result::Result<VmName, Reply> {
    let name = vm_name(id)?;
    if lift(st.hv.status(&name).await)?.state == VmState::None {
        return Err(envelope(
            StatusCode::NOT_FOUND,
            format!("VM {id} not found"),
        ));
    }
    Ok(name)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &str) -> std::result::Result<T, Reply> {
    serde_json::from_str(body)
        .map_err(|e| envelope(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

/// The router: mount it on any listener with [`serve`] or `axum::serve`.
pub fn router(hv: Arc<dyn Hypervisor>, default_template: impl Into<String>) -> Router {
    let state = AppState {
        hv,
        template: default_template.into(),
    };
    Router::new()
        .route("/json/swagger.json", get(swagger))
        .route("/api/vms", get(list_vms).post(create_vm))
        .route("/api/vms/{id}", get(get_vm).delete(delete_vm))
        .route("/api/vms/power/{id}", get(get_power).patch(patch_power))
        .route(
            "/api/vms/{id}/folders",
            get(list_folders).patch(enable_folders).post(add_folder),
        )
        .route(
            "/api/vms/{id}/folders/{folder}",
            get(get_folder).patch(update_folder).delete(remove_folder),
        )
        .route("/api/vms/{id}/ipaddress", get(ip_address))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(state)
}

/// Serves the router on `listener` until the future is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hv: Arc<dyn Hypervisor>,
    default_template: impl Into<String>,
) -> Result<()> {
    axum::serve(listener, router(hv, default_template))
        .await
        .map_err(|e| Error::io("serving the AppCatalyst API", e))
}

async fn not_found(uri: Uri) -> Reply {
    envelope(
        StatusCode::NOT_FOUND,
        format!("no such resource: {}", uri.path()),
    )
}

async fn not_allowed() -> Reply {
    envelope(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

async fn swagger() -> Reply {
    ok_json(json!({
        "swagger": "2.0",
        "info": { "title": "VMware AppCatalyst", "version": "1.0.0",
                  "description": "served by vmenv-core" },
        "basePath": "/api",
        "schemes": ["http"],
        "paths": {
            "/vms": {}, "/vms/{id}": {}, "/vms/power/{id}": {}, "/vms/{id}/folders": {},
            "/vms/{id}/folders/{folderId}": {}, "/vms/{id}/ipaddress": {}
        }
    }))
}

async fn list_vms(State(st): State<AppState>, uri: Uri) -> Handled {
    if uri.query().is_some_and(|q| q.contains("tags=")) {
        return Err(envelope(
            StatusCode::NOT_IMPLEMENTED,
            "filtering by tags is not supported by the vmenv server",
        ));
    }
    let names = lift(st.hv.list().await)?;
    Ok(ok_json(json!(
        names.iter().map(VmName::as_str).collect::<Vec<_>>()
    )))
}

async fn create_vm(State(st): State<AppState>, body: String) -> Handled {
    let req: NewVm = parse_body(&body)?;
    let name = vm_name(&req.id)?;
    let source = match (&req.parent_id, &req.source_reference) {
        (Some(parent), _) => Source::CloneOf(vm_name(parent)?),
        (None, Some(r)) if r.to_ascii_lowercase().ends_with(".vmx") => {
            return Err(envelope(
                StatusCode::NOT_IMPLEMENTED,
                "importing a .vmx is not supported by the vmenv server; give a disk image path",
            ));
        }
        (None, Some(r)) => Source::Image(PathBuf::from(r)),
        (None, None) => Source::Template(st.template.clone()),
    };
    lift(st.hv.create(&VmSpec::new(name, source)).await)?;
    Ok(ok_json(json!(VmInfo {
        name: req.name.clone().unwrap_or_else(|| req.id.clone()),
        id: req.id,
        tag: req.tag,
    })))
}

async fn get_vm(State(st): State<AppState>, Path(id): Path<String>) -> Handled {
    existing(&st, &id).await?;
    Ok(ok_json(json!({ "id": id, "name": id })))
}

async fn delete_vm(State(st): State<AppState>, Path(id): Path<String>) -> Handled {
    let name = existing(&st, &id).await?;
    lift(st.hv.destroy(&name).await)?;
    Ok(Reply(StatusCode::NO_CONTENT, serde_json::Value::Null, None))
}

async fn get_power(State(st): State<AppState>, Path(id): Path<String>) -> Handled {
    let name = existing(&st, &id).await?;
    let status = lift(st.hv.status(&name).await)?;
    Ok(envelope(StatusCode::OK, power_from_state(status.state)))
}

async fn patch_power(State(st): State<AppState>, Path(id): Path<String>, body: String) -> Handled {
    let Some(op) = PowerOp::parse(&body) else {
        return Err(envelope(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown power operation {:?}: use on, off, shutdown, suspend, pause or unpause",
                body.trim()
            ),
        ));
    };
    let name = existing(&st, &id).await?;
    let hv = &st.hv;
    let message = match op {
        PowerOp::On => lift(hv.start(&name).await).map(|()| "The VM is powered on."),
        PowerOp::Off => lift(hv.kill(&name).await).map(|()| "The VM is powered off."),
        PowerOp::Shutdown => {
            lift(hv.stop(&name, SHUTDOWN_GRACE).await).map(|_| "The VM is powered off.")
        }
        PowerOp::Suspend => lift(hv.suspend(&name).await).map(|()| "The VM is suspended."),
        PowerOp::Pause => lift(hv.pause(&name).await).map(|()| "The VM is paused."),
        PowerOp::Unpause => lift(hv.resume(&name).await).map(|()| "The VM is unpaused."),
    }?;
    Ok(envelope(StatusCode::OK, message))
}

async fn list_folders(State(st): State<AppState>, Path(id): Path<String>) -> Handled {
    let name = existing(&st, &id).await?;
    let folders = lift(
        lift(st.hv.require_shared_folders())?
            .list_shared_folders(&name)
            .await,
    )?;
    Ok(ok_json(json!(
        folders.iter().map(|f| f.name.as_str()).collect::<Vec<_>>()
    )))
}

async fn enable_folders(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: String,
) -> Handled {
    existing(&st, &id).await?;
    lift(st.hv.require_shared_folders())?;
    match body.trim().trim_matches('"') {
        "true" => Ok(envelope(StatusCode::OK, "true")),
        "false" => Err(envelope(
            StatusCode::NOT_IMPLEMENTED,
            "shared folders cannot be switched off as a whole here; remove them one by one",
        )),
        other => Err(envelope(
            StatusCode::BAD_REQUEST,
            format!("expected true or false, got {other:?}"),
        )),
    }
}

fn to_folder(f: &FolderState) -> SharedFolder {
    SharedFolder {
        name: f.guest_path.clone(),
        host_path: PathBuf::from(&f.host_path),
        guest_path: guest_mount_point(&f.guest_path),
        writable: f.flags & 4 != 0,
    }
}

fn from_folder(f: &SharedFolder) -> serde_json::Value {
    json!(FolderState {
        guest_path: f.name.clone(),
        host_path: f.host_path.display().to_string(),
        flags: if f.writable { 4 } else { 0 },
    })
}

async fn add_folder(State(st): State<AppState>, Path(id): Path<String>, body: String) -> Handled {
    let req: FolderState = parse_body(&body)?;
    let name = existing(&st, &id).await?;
    let folder = to_folder(&req);
    lift(
        lift(st.hv.require_shared_folders())?
            .add_shared_folder(&name, &folder)
            .await,
    )?;
    Ok(ok_json(from_folder(&folder)))
}

async fn find_folder(
    st: &AppState,
    name: &VmName,
    share: &str,
) -> std::result::Result<SharedFolder, Reply> {
    let folders = lift(
        lift(st.hv.require_shared_folders())?
            .list_shared_folders(name)
            .await,
    )?;
    folders
        .into_iter()
        .find(|f| f.name == share)
        .ok_or_else(|| envelope(StatusCode::NOT_FOUND, format!("folder {share} not found")))
}

async fn get_folder(
    State(st): State<AppState>,
    Path((id, share)): Path<(String, String)>,
) -> Handled {
    let name = existing(&st, &id).await?;
    Ok(ok_json(from_folder(
        &find_folder(&st, &name, &share).await?,
    )))
}

async fn update_folder(
    State(st): State<AppState>,
    Path((id, share)): Path<(String, String)>,
    body: String,
) -> Handled {
    let mut req: FolderState = parse_body(&body)?;
    let name = existing(&st, &id).await?;
    find_folder(&st, &name, &share).await?;
    req.guest_path = share.clone();
    let folders = lift(st.hv.require_shared_folders())?;
    lift(folders.remove_shared_folder(&name, &share).await)?;
    let folder = to_folder(&req);
    lift(folders.add_shared_folder(&name, &folder).await)?;
    Ok(ok_json(from_folder(&folder)))
}

async fn remove_folder(
    State(st): State<AppState>,
    Path((id, share)): Path<(String, String)>,
) -> Handled {
    let name = existing(&st, &id).await?;
    find_folder(&st, &name, &share).await?;
    lift(
        lift(st.hv.require_shared_folders())?
            .remove_shared_folder(&name, &share)
            .await,
    )?;
    Ok(Reply(StatusCode::NO_CONTENT, serde_json::Value::Null, None))
}

async fn ip_address(State(st): State<AppState>, Path(id): Path<String>, _h: HeaderMap) -> Handled {
    let name = existing(&st, &id).await?;
    let timeout = || envelope(StatusCode::REQUEST_TIMEOUT, "Request timeout");
    if lift(st.hv.status(&name).await)?.state != VmState::Running {
        return Err(timeout());
    }
    match st.hv.ip(&name, Duration::from_millis(500)).await {
        Ok(addr) => {
            let mut reply = envelope(StatusCode::OK, addr.guest_ip.to_string());
            reply.2 = Some(("x-vmenv-ssh".into(), addr.ssh.to_string()));
            Ok(reply)
        }
        Err(Error::Timeout { .. }) => Err(timeout()),
        Err(e) => Err(error_reply(&e)),
    }
}
