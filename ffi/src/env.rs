//! Environments (`vmenv-core`): a hypervisor backend (`vsdk_hypervisor_*`) and YAML
//! environments of VMs on it, brought up, inspected and torn down (`vsdk_env_*`,
//! `vsdk_vm_list_*`).

use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use vmenv_core::env::{self, Environment};
use vmenv_core::qemu::{QemuConfig, QemuHypervisor, Template, qemu_available};
use vmenv_core::vsphere::{VsphereConfig, VsphereHypervisor};
use vmenv_core::{Event, Hypervisor, VmState};
use vsphere_client::client::Client;

use crate::boundary::{
    Callback, Out, OwnedList, block_on, c_string, emit, free_box, guard, handle, list_get,
    list_len, optional_string, out, runtime, string, vsdk_event_callback,
};
use crate::client::vsdk_client;
use crate::error::Error;
use crate::vsdk_result;

/// How long [`vsdk_env_status`] asks a running VM for its address before reporting none.
const STATUS_IP_WAIT: Duration = Duration::from_millis(250);

/// A hypervisor backend: the vSphere backend on a connected client, or local QEMU. Free it
/// with [`vsdk_hypervisor_free`].
pub struct vsdk_hypervisor {
    backend: Backend,
}

impl std::fmt::Debug for vsdk_hypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("vsdk_hypervisor")
            .field("kind", &self.backend.hv.kind())
            .finish_non_exhaustive()
    }
}

/// What a hypervisor handle and the environments opened on it share.
#[derive(Clone)]
struct Backend {
    hv: Arc<dyn Hypervisor>,
    kind: &'static std::ffi::CStr,
    /// The vSphere session the backend uses (kept alive with the handle).
    _client: Option<Arc<Client>>,
    /// Declared last: dropped after everything that may use it.
    rt: Arc<Runtime>,
}

/// A VM's state, in Docker Machine's state set (as `vmenv-core` reports it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum vsdk_vm_state {
    /// Not created (unknown to the backend).
    None = 0,
    /// Running.
    Running = 1,
    /// Paused (CPUs stopped, memory kept).
    Paused = 2,
    /// Saved (suspended to disk).
    Saved = 3,
    /// Powered off.
    Stopped = 4,
    /// Shutting down.
    Stopping = 5,
    /// Booting.
    Starting = 6,
    /// In an error state (or a state this library does not know).
    Error = 7,
    /// The backend did not answer in time.
    Timeout = 8,
}

impl From<VmState> for vsdk_vm_state {
    fn from(s: VmState) -> Self {
        match s {
            VmState::None => Self::None,
            VmState::Running => Self::Running,
            VmState::Paused => Self::Paused,
            VmState::Saved => Self::Saved,
            VmState::Stopped => Self::Stopped,
            VmState::Stopping => Self::Stopping,
            VmState::Starting => Self::Starting,
            VmState::Timeout => Self::Timeout,
            _ => Self::Error,
        }
    }
}

/// One VM of an environment, as [`vsdk_vm_list_get`] and [`vsdk_vm_list_find`] copy it out.
/// The strings are borrowed from the list and live until it is freed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct vsdk_vm_record {
    /// The VM's name, as in the environment file.
    pub name: *const c_char,
    /// Its state.
    pub state: vsdk_vm_state,
    /// The backend's own word for the state (`poweredOn`, `running`, `not created`, ...).
    pub raw_state: *const c_char,
    /// The guest's IP address (`10.0.0.7`), or NULL when it has none (not running, or not
    /// known yet).
    pub ip: *const c_char,
}

/// One VM's record, owned.
#[derive(Debug)]
pub(crate) struct Vm {
    name: CString,
    state: vsdk_vm_state,
    raw: CString,
    ip: Option<CString>,
}

impl Vm {
    fn record(&self) -> vsdk_vm_record {
        vsdk_vm_record {
            name: self.name.as_ptr(),
            state: self.state,
            raw_state: self.raw.as_ptr(),
            ip: self.ip.as_ref().map_or(std::ptr::null(), |ip| ip.as_ptr()),
        }
    }
}

/// An owned list of VM records, from [`vsdk_env_status`]. Free it with
/// [`vsdk_vm_list_free`].
#[derive(Debug, Default)]
pub struct vsdk_vm_list {
    items: Vec<Vm>,
}

impl OwnedList for vsdk_vm_list {
    type Item = Vm;
    const ARG: &'static str = "vms";
    fn items(&self) -> &[Vm] {
        &self.items
    }
}

/// A parsed, validated environment on a hypervisor. Free it with [`vsdk_env_free`].
pub struct vsdk_env {
    env: Environment,
    /// One call at a time (its progress callback belongs to it).
    calls: Mutex<()>,
    backend: Backend,
}

impl std::fmt::Debug for vsdk_env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.vms.iter().map(|v| v.name.as_str()).collect();
        f.debug_struct("vsdk_env")
            .field("kind", &self.backend.hv.kind())
            .field("vms", &names)
            .finish_non_exhaustive()
    }
}

fn put_hypervisor(backend: Backend, out_hv: Out<*mut vsdk_hypervisor>) {
    out_hv.put(Box::into_raw(Box::new(vsdk_hypervisor { backend })));
}

/// The vSphere backend on the session of `client`: VMs are clones of template VMs (an
/// environment's `template:` is an inventory path such as `/DC0/vm/DC0_H0_VM0`, or a VM name in
/// the folder), made in the VM folder `folder` (an inventory path, `/DC0/vm`) and run in the
/// resource pool `resource_pool` (`/DC0/host/DC0_C0/Resources`). A VM's address is the one
/// VMware Tools report; with `ssh_port` not 0, `up` also waits until that port accepts a
/// connection. Shared folders, port forwards and disk images are `VSDK_RESULT_UNSUPPORTED` on
/// vSphere (VMs are routable). The handle shares the client's session and runtime: free it
/// (and its environments) before disconnecting the client.
///
/// A folder or pool that does not exist is `VSDK_RESULT_INVALID_ENVIRONMENT`.
///
/// # Safety
///
/// `client` NULL or a live handle; strings NULL or NUL-terminated; `out_hypervisor` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_hypervisor_open_vsphere(
    client: *const vsdk_client,
    folder: *const c_char,
    resource_pool: *const c_char,
    ssh_port: u16,
    out_hypervisor: *mut *mut vsdk_hypervisor,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (c, folder, pool) = unsafe {
            (
                handle(client, "client")?,
                string(folder, "folder")?,
                string(resource_pool, "resource_pool")?,
            )
        };
        let out_hv = out(out_hypervisor, "out_hypervisor")?;
        let mut config = VsphereConfig::new(folder, pool);
        config.ssh_port = (ssh_port != 0).then_some(ssh_port);
        let hv = block_on(
            &c.rt,
            VsphereHypervisor::connect(Arc::clone(&c.client), config),
        )??;
        put_hypervisor(
            Backend {
                hv: Arc::new(hv),
                kind: c"vsphere",
                _client: Some(Arc::clone(&c.client)),
                rt: Arc::clone(&c.rt),
            },
            out_hv,
        );
        Ok(())
    })
}

/// The local QEMU backend: VMs live under `root_dir` (keep the path short: QEMU's monitor
/// sockets must fit in 107 bytes), run under TCG with user-mode networking, and get a
/// copy-on-write overlay on their `image:` (an absolute qcow2 or raw disk). With `guest_dir`
/// (may be NULL) the template `tiny` is the SDK's test guest, built from Debian packages by
/// `vmenv-core/guest/build.sh` into that directory (or reused from it: the script caches; it
/// needs the SDK's source tree and the packages listed in the README).
///
/// Without `qemu-system-x86_64` and `qemu-img` this is `VSDK_RESULT_UNSUPPORTED`. Nothing
/// boots until [`vsdk_env_up`].
///
/// # Safety
///
/// Strings NULL or NUL-terminated; `out_hypervisor` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_hypervisor_open_qemu(
    root_dir: *const c_char,
    guest_dir: *const c_char,
    out_hypervisor: *mut *mut vsdk_hypervisor,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (root, guest) = unsafe {
            (
                string(root_dir, "root_dir")?,
                optional_string(guest_dir, "guest_dir")?,
            )
        };
        let out_hv = out(out_hypervisor, "out_hypervisor")?;
        if root.is_empty() {
            return Err(Error::invalid("root_dir", "empty"));
        }
        if !qemu_available() {
            return Err(Error::Unsupported {
                feature: "the QEMU backend on this machine (qemu-system-x86_64 and qemu-img are not installed)",
            });
        }
        let rt = Arc::new(runtime()?);
        let mut config = QemuConfig::new(absolute(root)?);
        if let Some(dir) = guest {
            let dir = absolute(dir)?;
            config = config.with_template(block_on(&rt, Template::test_guest(&dir))??);
        }
        put_hypervisor(
            Backend {
                hv: Arc::new(QemuHypervisor::new(config)),
                kind: c"qemu",
                _client: None,
                rt,
            },
            out_hv,
        );
        Ok(())
    })
}

fn absolute(path: &str) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::Io {
        context: format!("cannot resolve {path}"),
        source,
    })
}

/// The backend's kind: `"vsphere"` or `"qemu"`. Borrowed, static.
///
/// # Safety
///
/// `hypervisor` NULL or a live handle; `out_kind` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_hypervisor_kind(
    hypervisor: *const vsdk_hypervisor,
    out_kind: *mut *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let h = unsafe { handle(hypervisor, "hypervisor")? };
        out(out_kind, "out_kind")?.put(h.backend.kind.as_ptr());
        Ok(())
    })
}

/// Frees a hypervisor handle (its VMs keep running; environments opened on it stay usable).
/// NULL is a no-op.
///
/// # Safety
///
/// `hypervisor` is NULL or a handle that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_hypervisor_free(hypervisor: *mut vsdk_hypervisor) {
    free_box(hypervisor);
}

fn put_env(h: &vsdk_hypervisor, env: Environment, out_env: Out<*mut vsdk_env>) {
    out_env.put(Box::into_raw(Box::new(vsdk_env {
        env,
        calls: Mutex::new(()),
        backend: h.backend.clone(),
    })));
}

/// Reads and validates the environment file at `path` (YAML: `vms:` mapping names to
/// `template`/`image`, `cpus`, `memory`, `shared_folders`, `ports`, `docker`; see the README)
/// for the backend `hypervisor`. Relative host paths are resolved against the file's
/// directory. A file that cannot be read is `VSDK_RESULT_IO`; invalid YAML, an unknown key or
/// an invalid VM `VSDK_RESULT_INVALID_ENVIRONMENT`. Nothing is created until
/// [`vsdk_env_up`].
///
/// # Safety
///
/// `hypervisor` NULL or a live handle; `path` NULL or NUL-terminated; `out_env` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_env_load(
    hypervisor: *const vsdk_hypervisor,
    path: *const c_char,
    out_env: *mut *mut vsdk_env,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (h, path) = unsafe { (handle(hypervisor, "hypervisor")?, string(path, "path")?) };
        let out_env = out(out_env, "out_env")?;
        // A missing or unreadable file is an IO error, not an invalid environment.
        std::fs::metadata(path).map_err(|source| Error::Io {
            context: format!("cannot read {path}"),
            source,
        })?;
        let env = Environment::load(Path::new(path))?;
        put_env(h, env, out_env);
        Ok(())
    })
}

/// [`vsdk_env_load`] from YAML text; relative host paths are resolved against `base_dir`
/// (may be NULL: the current directory).
///
/// # Safety
///
/// `hypervisor` NULL or a live handle; strings NULL or NUL-terminated; `out_env` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_env_parse(
    hypervisor: *const vsdk_hypervisor,
    yaml: *const c_char,
    base_dir: *const c_char,
    out_env: *mut *mut vsdk_env,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (h, yaml, base) = unsafe {
            (
                handle(hypervisor, "hypervisor")?,
                string(yaml, "yaml")?,
                optional_string(base_dir, "base_dir")?,
            )
        };
        let out_env = out(out_env, "out_env")?;
        let base = absolute(base.unwrap_or("."))?;
        let env = Environment::parse(yaml, &base)?;
        put_env(h, env, out_env);
        Ok(())
    })
}

/// Frees an environment handle (its VMs stay as they are). NULL is a no-op.
///
/// # Safety
///
/// `env` is NULL or a handle that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_env_free(env: *mut vsdk_env) {
    free_box(env);
}

/// One line for a progress event: `creating web`, `started web`, `boot web modules`,
/// `ip web 10.0.0.7`, `unchanged web`, `stopped web`, `destroyed web`.
fn describe(e: &Event) -> String {
    match e {
        Event::Creating(n) => format!("creating {n}"),
        Event::Started(n) => format!("started {n}"),
        Event::BootPhase(n, phase) => format!("boot {n} {phase}"),
        Event::IpAcquired(n, ip) => format!("ip {n} {ip}"),
        Event::Unchanged(n) => format!("unchanged {n}"),
        Event::Stopped(n) => format!("stopped {n}"),
        Event::Destroyed(n) => format!("destroyed {n}"),
        other => format!("{other:?}"),
    }
}

/// Runs `fut` while forwarding the events it sends on `rx` to the callback, on this thread.
async fn forwarding<T>(
    fut: impl Future<Output = T>,
    mut rx: UnboundedReceiver<Event>,
    cb: Option<&Callback>,
) -> T {
    tokio::pin!(fut);
    let out = loop {
        tokio::select! {
            biased;
            Some(ev) = rx.recv() => emit(cb, &describe(&ev)),
            o = &mut fut => break o,
        }
    };
    while let Ok(ev) = rx.try_recv() {
        emit(cb, &describe(&ev));
    }
    out
}

/// Runs one call on the environment: one at a time, blocking on the backend's runtime.
fn call<T>(e: &vsdk_env, f: impl AsyncFnOnce(&vsdk_env) -> Result<T, Error>) -> Result<T, Error> {
    crate::boundary::not_nested()?;
    let _one = e.calls.lock().unwrap_or_else(PoisonError::into_inner);
    block_on(&e.backend.rt, f(e))?
}

/// Converges the environment: creates the VMs that are missing, starts those that are
/// stopped, leaves those that run and match; then waits, at most `ip_timeout_ms` per VM,
/// until each has an address. Progress goes to `progress` (may be NULL) as lines
/// `creating web`, `started web`, `boot web <phase>`, `ip web 10.0.0.7`, `unchanged web`.
///
/// An existing VM that differs from the file is `VSDK_RESULT_INVALID_ENVIRONMENT` and nothing
/// is changed; a template that does not exist is `VSDK_RESULT_INVALID_ENVIRONMENT`; a VM
/// without an address in time `VSDK_RESULT_TIMEOUT`; what the backend cannot do (shared
/// folders on vSphere, ...) `VSDK_RESULT_UNSUPPORTED`.
///
/// # Safety
///
/// `env` NULL or a live handle; `progress` NULL or a function valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_env_up(
    env: *const vsdk_env,
    ip_timeout_ms: u64,
    progress: vsdk_event_callback,
    user_data: *mut c_void,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let e = unsafe { handle(env, "env")? };
        let cb = Callback::new(progress, user_data);
        let deadline = Duration::from_millis(ip_timeout_ms);
        call(e, async |e| {
            let (tx, rx) = unbounded_channel();
            let hv = Arc::clone(&e.backend.hv);
            let up = async move { env::up(hv, &e.env, deadline, Some(&tx)).await };
            forwarding(up, rx, cb.as_ref()).await?;
            Ok(())
        })
    })
}

/// The state of every VM the environment names, in name order: `*out_vms` is a new list of
/// records (name, state, the backend's raw state, the guest's IP address or NULL). A running
/// VM is asked for its address for at most a quarter of a second.
///
/// # Safety
///
/// `env` NULL or a live handle; `out_vms` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_env_status(
    env: *const vsdk_env,
    out_vms: *mut *mut vsdk_vm_list,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let e = unsafe { handle(env, "env")? };
        let out_vms = out(out_vms, "out_vms")?;
        let rows = call(e, async |e| {
            let hv = e.backend.hv.as_ref();
            let mut rows = Vec::new();
            for (name, status) in env::status(hv, &e.env).await? {
                let ip = if status.state == VmState::Running {
                    match hv.ip(&name, STATUS_IP_WAIT).await {
                        Ok(addr) => Some(addr.guest_ip.to_string()),
                        Err(vmenv_core::Error::Timeout { .. }) => None,
                        Err(err) if err.is_unsupported() => None,
                        Err(err) => return Err(err.into()),
                    }
                } else {
                    None
                };
                rows.push((name, status, ip));
            }
            Ok(rows)
        })?;
        let mut items = Vec::with_capacity(rows.len());
        for (name, status, ip) in rows {
            items.push(Vm {
                name: c_string(name.as_str())?,
                state: status.state.into(),
                raw: c_string(status.raw)?,
                ip: ip.map(c_string).transpose()?,
            });
        }
        out_vms.put(Box::into_raw(Box::new(vsdk_vm_list { items })));
        Ok(())
    })
}

/// Stops every VM the environment names (gracefully, within `grace_ms`, then hard) and
/// destroys it; VMs that do not exist are skipped. Progress goes to `progress` (may be NULL)
/// as lines `stopped web`, `destroyed web`.
///
/// # Safety
///
/// `env` NULL or a live handle; `progress` NULL or a function valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_env_down(
    env: *const vsdk_env,
    grace_ms: u64,
    progress: vsdk_event_callback,
    user_data: *mut c_void,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let e = unsafe { handle(env, "env")? };
        let cb = Callback::new(progress, user_data);
        let grace = Duration::from_millis(grace_ms);
        call(e, async |e| {
            let (tx, rx) = unbounded_channel();
            let hv = e.backend.hv.as_ref();
            let down = async move { env::down(hv, &e.env, grace, Some(&tx)).await };
            forwarding(down, rx, cb.as_ref()).await?;
            Ok(())
        })
    })
}

/// The number of records in `vms`.
///
/// # Safety
///
/// `vms` NULL or a live list; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_vm_list_len(
    vms: *const vsdk_vm_list,
    out_len: *mut usize,
) -> vsdk_result {
    // SAFETY: as the caller guarantees.
    unsafe { list_len(vms, out_len) }
}

/// Copies record `index` of `vms` into `*out_vm` (its strings are borrowed from the list).
///
/// # Safety
///
/// `vms` NULL or a live list; `out_vm` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_vm_list_get(
    vms: *const vsdk_vm_list,
    index: usize,
    out_vm: *mut vsdk_vm_record,
) -> vsdk_result {
    // SAFETY: as the caller guarantees.
    unsafe { list_get(vms, index, out_vm, "out_vm", Vm::record) }
}

/// Copies the record of the VM named `name` into `*out_vm`; a name the list does not hold is
/// `VSDK_RESULT_UNKNOWN_VM`.
///
/// # Safety
///
/// `vms` NULL or a live list; `name` NULL or NUL-terminated; `out_vm` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_vm_list_find(
    vms: *const vsdk_vm_list,
    name: *const c_char,
    out_vm: *mut vsdk_vm_record,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (list, name) = unsafe { (handle(vms, "vms")?, string(name, "name")?) };
        let out_vm = out(out_vm, "out_vm")?;
        let vm = list
            .items
            .iter()
            .find(|v| v.name.as_bytes() == name.as_bytes())
            .ok_or_else(|| {
                Error::from(vmenv_core::Error::NotFound {
                    name: name.to_owned(),
                })
            })?;
        out_vm.put(vm.record());
        Ok(())
    })
}

/// Frees a VM list. NULL is a no-op.
///
/// # Safety
///
/// `vms` is NULL or a list from [`vsdk_env_status`] that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_vm_list_free(vms: *mut vsdk_vm_list) {
    free_box(vms);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_one_to_one() {
        assert_eq!(
            vsdk_vm_state::from(VmState::Running),
            vsdk_vm_state::Running
        );
        assert_eq!(vsdk_vm_state::from(VmState::None), vsdk_vm_state::None);
        assert_eq!(vsdk_vm_state::from(VmState::Saved), vsdk_vm_state::Saved);
        assert_eq!(
            vsdk_vm_state::from(VmState::Timeout),
            vsdk_vm_state::Timeout
        );
    }

    #[test]
    fn events_read_as_one_line_each() {
        let web = vmenv_core::VmName::new("web").unwrap();
        assert_eq!(describe(&Event::Creating(web.clone())), "creating web");
        assert_eq!(
            describe(&Event::IpAcquired(web.clone(), [10, 0, 0, 7].into())),
            "ip web 10.0.0.7"
        );
        assert_eq!(
            describe(&Event::BootPhase(web, "ready".to_owned())),
            "boot web ready"
        );
    }

    #[test]
    fn records_borrow_from_the_list_and_a_missing_ip_is_null() {
        let vm = Vm {
            name: c"web".to_owned(),
            state: vsdk_vm_state::Stopped,
            raw: c"poweredOff".to_owned(),
            ip: None,
        };
        let r = vm.record();
        assert_eq!(r.name, vm.name.as_ptr());
        assert!(r.ip.is_null());
        assert_eq!(r.state, vsdk_vm_state::Stopped);
    }
}
