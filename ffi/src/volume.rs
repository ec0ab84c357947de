//! Volumes (`volume-core`): create, attach, detach, move and destroy through the journaled
//! orchestrator, on a chosen backend (`vsdk_volumes_*`, `vsdk_volume_*`).

use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Runtime;
use volume_core::backend::Backend;
use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::backend::memory::MemoryBackend;
use volume_core::backend::vsphere::FcdBackend;
use volume_core::journal::RedbStore;
use volume_core::orchestrator::{MovePolicy, MoveRecord, Orchestrator, StepHook};
use volume_core::{NodeId, PoolId, VolumeId, VolumeName, VolumeSpec};
use vsphere_client::client::Client;

use crate::boundary::{
    Callback, block_on, emit, free_box, guard, handle, out, owned_string, runtime, string,
    vsdk_event_callback,
};
use crate::client::vsdk_client;
use crate::error::Error;
use crate::vsdk_result;

/// Forwards the steps of a move to the callback of the call in progress.
#[derive(Debug, Default)]
struct Progress(Mutex<Option<Callback>>);

impl StepHook for Progress {
    fn reached(&self, record: &MoveRecord, point: &'static str) -> volume_core::Result<()> {
        let cb = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let from = record.from.as_ref().map_or("-", NodeId::as_str);
        emit(
            cb.as_ref(),
            &format!(
                "{point} {} {from} -> {} epoch {}",
                record.volume, record.to, record.epoch.0
            ),
        );
        Ok(())
    }
}

/// Volumes on one backend and pool, with a journal (for moves that survive crashes) in a
/// state directory. Free it with [`vsdk_volumes_free`].
pub struct vsdk_volumes {
    orch: Orchestrator,
    backend: Arc<dyn Backend>,
    pool: PoolId,
    progress: Arc<Progress>,
    /// One call at a time (the progress callback belongs to it).
    calls: Mutex<()>,
    /// The session of the First Class Disk backend (kept alive with the handle).
    _client: Option<Arc<Client>>,
    /// Declared last: dropped after everything that may use it.
    rt: Arc<Runtime>,
}

impl std::fmt::Debug for vsdk_volumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("vsdk_volumes")
            .field("backend", &self.backend.info().kind)
            .field("pool", &self.pool.as_str())
            .finish_non_exhaustive()
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn open(
    rt: Arc<Runtime>,
    backend: Arc<dyn Backend>,
    pool: PoolId,
    state_dir: &str,
    client: Option<Arc<Client>>,
    out_volumes: crate::boundary::Out<*mut vsdk_volumes>,
) -> Result<(), Error> {
    let dir = Path::new(state_dir);
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let store = Arc::new(RedbStore::open(dir.join("journal.redb"))?);
    let progress = Arc::new(Progress::default());
    let orch = Orchestrator::new(Arc::clone(&backend), store).with_hook(progress.clone());
    out_volumes.put(Box::into_raw(Box::new(vsdk_volumes {
        orch,
        backend,
        pool,
        progress,
        calls: Mutex::new(()),
        _client: client,
        rt,
    })));
    Ok(())
}

/// Volumes in memory (pool `local`, 1 TiB; gone when the handle is freed), journaled in
/// `state_dir` (created if missing). Nodes are any names.
///
/// # Safety
///
/// `state_dir` NULL or NUL-terminated; `out_volumes` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volumes_open_memory(
    state_dir: *const c_char,
    out_volumes: *mut *mut vsdk_volumes,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let dir = unsafe { string(state_dir, "state_dir")? };
        let out_volumes = out(out_volumes, "out_volumes")?;
        let pool = PoolId::new("local")?;
        let backend = Arc::new(
            MemoryBackend::builder()
                .pool_id(pool.clone(), 1 << 40)
                .build(),
        );
        open(Arc::new(runtime()?), backend, pool, dir, None, out_volumes)
    })
}

/// Volumes as sparse image files under `state_dir/data` (pool `local`), journaled in
/// `state_dir`. Attaching moves the image into the node's directory
/// (`state_dir/data/nodes/NODE`), so no root and no loop devices are needed. Nodes are any
/// names.
///
/// # Safety
///
/// `state_dir` NULL or NUL-terminated; `out_volumes` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volumes_open_local(
    state_dir: *const c_char,
    out_volumes: *mut *mut vsdk_volumes,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let dir = unsafe { string(state_dir, "state_dir")? };
        let out_volumes = out(out_volumes, "out_volumes")?;
        let pool = PoolId::new("local")?;
        let backend = Arc::new(
            LoopFileBackend::new(Path::new(dir).join("data"), LoopMode::PlainFiles)?
                .with_pool(pool.clone(), None),
        );
        open(Arc::new(runtime()?), backend, pool, dir, None, out_volumes)
    })
}

/// Volumes as First Class Disks on datastore `datastore` (the pool) of the vCenter behind
/// `client`, journaled in `state_dir`. Nodes are VMs: a moref (`vm-42`), an inventory path or
/// a unique name (`DC0_H0_VM0`). The handle shares the client's session and runtime: free
/// it before disconnecting the client.
///
/// # Safety
///
/// `client` NULL or a live handle; strings NULL or NUL-terminated; `out_volumes` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volumes_open_fcd(
    client: *const vsdk_client,
    datastore: *const c_char,
    state_dir: *const c_char,
    out_volumes: *mut *mut vsdk_volumes,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (c, ds, dir) = unsafe {
            (
                handle(client, "client")?,
                string(datastore, "datastore")?,
                string(state_dir, "state_dir")?,
            )
        };
        let out_volumes = out(out_volumes, "out_volumes")?;
        let pool = PoolId::new(ds)?;
        let backend = block_on(
            &c.rt,
            FcdBackend::connect(Arc::clone(&c.client), [pool.clone()]),
        )??;
        open(
            Arc::clone(&c.rt),
            Arc::new(backend),
            pool,
            dir,
            Some(Arc::clone(&c.client)),
            out_volumes,
        )
    })
}

/// Frees a volumes handle (the volumes stay on their backend, except in memory). NULL is a
/// no-op.
///
/// # Safety
///
/// `volumes` is NULL or a handle that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volumes_free(volumes: *mut vsdk_volumes) {
    free_box(volumes);
}

/// Runs one call on the handle: one at a time, with `cb` receiving its move steps.
fn call<T>(
    v: &vsdk_volumes,
    cb: Option<Callback>,
    f: impl AsyncFnOnce(&vsdk_volumes) -> Result<T, Error>,
) -> Result<T, Error> {
    crate::boundary::not_nested()?;
    let _one = v.calls.lock().unwrap_or_else(PoisonError::into_inner);
    *v.progress.0.lock().unwrap_or_else(PoisonError::into_inner) = cb;
    let r = block_on(&v.rt, f(v));
    *v.progress.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    r?
}

/// Creates volume `name` of `size_bytes` bytes in the handle's pool (idempotent: the same
/// name and size returns the existing volume; another size is
/// `VSDK_RESULT_VOLUME_NAME_CONFLICT`). On success `*out_id` is the volume's id (free it with
/// [`vsdk_string_free`](crate::vsdk_string_free)).
///
/// # Safety
///
/// `volumes` NULL or a live handle; `name` NULL or NUL-terminated; `out_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volume_create(
    volumes: *const vsdk_volumes,
    name: *const c_char,
    size_bytes: u64,
    out_id: *mut *mut c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (v, name) = unsafe { (handle(volumes, "volumes")?, string(name, "name")?) };
        let out_id = out(out_id, "out_id")?;
        let spec = VolumeSpec::new(VolumeName::new(name)?, v.pool.clone(), size_bytes);
        let vol = call(v, None, async |v| Ok(v.backend.create(&spec).await?))?;
        out_id.put(owned_string(vol.id.as_str())?);
        Ok(())
    })
}

/// Moves volume `id` to node `node` as one journaled operation (fence, detach, attach,
/// lease), reporting each step to `progress` (may be NULL) as lines
/// `after-attach VOLUME FROM -> TO epoch N`. Attaching a detached volume is a move too.
///
/// Without `preempt`, a live lease of another node refuses with `VSDK_RESULT_LEASE_HELD`
/// (that node gives it up with [`vsdk_volume_release`]); with `preempt` the volume is taken.
///
/// # Safety
///
/// `volumes` NULL or a live handle; strings NULL or NUL-terminated; `progress` NULL or a
/// function valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volume_move(
    volumes: *const vsdk_volumes,
    id: *const c_char,
    node: *const c_char,
    preempt: bool,
    progress: vsdk_event_callback,
    user_data: *mut c_void,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (v, id, node) = unsafe {
            (
                handle(volumes, "volumes")?,
                string(id, "id")?,
                string(node, "node")?,
            )
        };
        let (id, node) = (VolumeId::new(id)?, NodeId::new(node)?);
        let policy = if preempt {
            MovePolicy::Preempt
        } else {
            MovePolicy::Polite
        };
        call(v, Callback::new(progress, user_data), async |v| {
            v.orch.move_volume(&id, &node, policy).await?;
            Ok(())
        })
    })
}

/// Attaches volume `id` to `node`: [`vsdk_volume_move`] without preempting.
///
/// # Safety
///
/// As [`vsdk_volume_move`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volume_attach(
    volumes: *const vsdk_volumes,
    id: *const c_char,
    node: *const c_char,
    progress: vsdk_event_callback,
    user_data: *mut c_void,
) -> vsdk_result {
    // SAFETY: the same contract.
    unsafe { vsdk_volume_move(volumes, id, node, false, progress, user_data) }
}

/// Node `node` gives its lease on volume `id` up (after unmounting), so a polite move may
/// take the volume. Releasing a lease one does not hold is success.
///
/// # Safety
///
/// `volumes` NULL or a live handle; strings NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volume_release(
    volumes: *const vsdk_volumes,
    id: *const c_char,
    node: *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (v, id, node) = unsafe {
            (
                handle(volumes, "volumes")?,
                string(id, "id")?,
                string(node, "node")?,
            )
        };
        let (id, node) = (VolumeId::new(id)?, NodeId::new(node)?);
        call(v, None, async |v| Ok(v.orch.release(&id, &node).await?))
    })
}

/// Detaches volume `id` from its node, fencing first (a detached volume is success; an
/// unknown id is `VSDK_RESULT_UNKNOWN_VOLUME`). Without `preempt`, a live lease refuses.
///
/// # Safety
///
/// `volumes` NULL or a live handle; `id` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volume_detach(
    volumes: *const vsdk_volumes,
    id: *const c_char,
    preempt: bool,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (v, id) = unsafe { (handle(volumes, "volumes")?, string(id, "id")?) };
        let id = VolumeId::new(id)?;
        let policy = if preempt {
            MovePolicy::Preempt
        } else {
            MovePolicy::Polite
        };
        call(v, None, async |v| {
            if v.backend.get(&id).await?.is_none() {
                return Err(volume_core::Error::UnknownVolume { id: id.clone() }.into());
            }
            Ok(v.orch.detach(&id, policy).await?)
        })
    })
}

/// Destroys volume `id`, detaching it first (preempting any lease); an unknown id is
/// `VSDK_RESULT_UNKNOWN_VOLUME`.
///
/// # Safety
///
/// `volumes` NULL or a live handle; `id` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volume_destroy(
    volumes: *const vsdk_volumes,
    id: *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (v, id) = unsafe { (handle(volumes, "volumes")?, string(id, "id")?) };
        let id = VolumeId::new(id)?;
        call(v, None, async |v| {
            if v.backend.get(&id).await?.is_none() {
                return Err(volume_core::Error::UnknownVolume { id: id.clone() }.into());
            }
            Ok(v.orch.destroy(&id, MovePolicy::Preempt).await?)
        })
    })
}

/// The node volume `id` is attached to: `*out_node` is a new string (free it with
/// [`vsdk_string_free`](crate::vsdk_string_free)), or NULL when the volume is detached. An
/// unknown id is `VSDK_RESULT_UNKNOWN_VOLUME`.
///
/// # Safety
///
/// `volumes` NULL or a live handle; `id` NULL or NUL-terminated; `out_node` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_volume_node(
    volumes: *const vsdk_volumes,
    id: *const c_char,
    out_node: *mut *mut c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (v, id) = unsafe { (handle(volumes, "volumes")?, string(id, "id")?) };
        let out_node = out(out_node, "out_node")?;
        let id = VolumeId::new(id)?;
        let vol = call(v, None, async |v| Ok(v.backend.get(&id).await?))?
            .ok_or(volume_core::Error::UnknownVolume { id })?;
        let node = match vol.attached_to {
            Some(n) => owned_string(n.as_str())?,
            None => std::ptr::null_mut(),
        };
        out_node.put(node);
        Ok(())
    })
}
