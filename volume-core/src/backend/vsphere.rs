//! The vSphere First Class Disk backend (feature `vsphere`): volumes are First Class Disks
//! (FCDs, `VStorageObject`s) on datastores, attached to VMs, through `vsphere-client`.
//!
//! | volume-core | vSphere |
//! |---|---|
//! | volume id | the FCD id |
//! | pool | a datastore, by name (resolved once, through the client's finder) |
//! | node | a VM: its moref value (`vm-42`), inventory path (`/DC0/vm/web-1`) or unique name |
//! | create | `CreateDisk_Task`, thin, `keepAfterDeleteVm = true`, labels in the disk's metadata |
//! | attach | [`AttachMode::Persistent`] (default): `AttachDisk_Task`; [`AttachMode::IndependentPersistent`], or a server without `AttachDisk_Task`: `ReconfigVM_Task` adding the FCD's VMDK (its `vDiskId`, no file operation) in the mode |
//! | detach | `DetachDisk_Task`; where the server lacks it, `ReconfigVM_Task` removing the device (the file is kept) |
//! | list | `ListVStorageObject` + `RetrieveVStorageObject`, attachments from every VM's `config.hardware.device` |
//! | destroy | `DeleteVStorageObject_Task`, refused while attached |
//! | resize | `ExtendDisk_Task` (capability probed at connect) |
//!
//! Rules the backend keeps:
//!
//! - **Resolved once**: datastores at connect, VMs the first time a node id is used (every
//!   device scan also learns every VM's name), the disk facts (name, datastore, file, size)
//!   the first time a volume is seen, the `VStorageObjectManager` and a container view of the
//!   VMs.
//! - **Tasks end through one filter**: the backend's
//!   [`TaskWaiter`] (vsphere-client's) holds one private
//!   property collector with one filter on the end of every recent task, created at connect;
//!   a task costs its call and two `WaitForUpdatesEx` (the task entering, then ending).
//! - **Attachment bookkeeping, corrected by the server**: the instance remembers where each
//!   volume it has seen is attached (from its own attaches and detaches and from every scan).
//!   Where the server itself refuses a second attachment (`AttachDisk_Task` fails with
//!   `InvalidState`/`FileLocked` when the disk is attached anywhere, as vCenter and vsphere-sim
//!   do) an attach trusts the bookkeeping and needs no read: the refusal, followed by one
//!   scan to name the holder, is [`Error::AttachedElsewhere`]. A stale "attached to A" is
//!   corrected by `DetachDisk_Task`'s `NotFound` fault (one scan, then the real holder is
//!   detached). **The full scan stays where the server does not decide**: on servers without
//!   `AttachDisk_Task` (govmomi's vcsim 0.24.2), a `ReconfigVM_Task` adding the disk's file is
//!   not refused when another VM has it, so every attach there reads every VM's devices first;
//!   `destroy` also scans before deleting (the bookkeeping of another instance may differ).
//! - **One reconfiguration per VM at a time** (one async mutex per VM), and one operation per
//!   volume at a time (one async mutex per volume), inside this process. Reconfigurations from
//!   other processes are serialized by vCenter itself (`TaskInProgress`).
//! - **Create by name is idempotent**: an FCD of the same name on the datastore with the same
//!   size and labels is returned; another size is [`Error::NameConflict`]. The size asked for
//!   is kept in the disk's creation metadata (`volume-core.requested-bytes`), so the original
//!   spec still matches after `ExtendDisk_Task` grew the disk.
//!
//! What this backend does not do yet (typed errors say so where they apply):
//!
//! - the backend's own record of each volume's fencing epoch, generation and labels lives in
//!   the instance (labels also in the disk's creation metadata), so a restarted backend starts
//!   again at epoch 0. The epochs the orchestrator hands out, its leases and its journal can
//!   live on the disk itself: [`VcenterStore`](crate::journal::vcenter::VcenterStore) keeps
//!   them in the disk's metadata (`VCenterUpdateVStorageObjectMetadataEx_Task`, which
//!   vsphere-sim serves and govmomi's vcsim 0.24.2 does not), shared by every host; such hosts
//!   build their backends with [`FcdBackend::shared`];
//! - snapshots, clones and placement by policy are [`Error::Unsupported`].
//!
//! ```no_run
//! # async fn demo() -> volume_core::Result<()> {
//! use std::sync::Arc;
//! use vsphere_client::client::{Client, ConnectOptions};
//! use volume_core::backend::{vsphere::FcdBackend, Backend};
//! use volume_core::{Epoch, NodeId, PoolId, VolumeName, VolumeSpec};
//!
//! let options = ConnectOptions::new("https://user:pass@vcenter.example/sdk")
//!     .map_err(|e| volume_core::Error::Remote { op: "connect", source: Box::new(e) })?;
//! let client = Client::connect(options)
//!     .await
//!     .map_err(|e| volume_core::Error::Remote { op: "connect", source: Box::new(e) })?;
//! let b = FcdBackend::connect(Arc::new(client), [PoolId::new("datastore1")?]).await?;
//! let spec = VolumeSpec::new(VolumeName::new("db")?, PoolId::new("datastore1")?, 1 << 30);
//! let v = b.create(&spec).await?;
//! b.attach(&v.id, &NodeId::new("/DC0/vm/web-1")?, Epoch::ZERO).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tokio::sync::{Mutex as AsyncMutex, OnceCell};
use vsphere_client::Error as ClientError;
use vsphere_client::client::{Client, RetrieveSpec, TaskWaiter, backing_file, fcd_id, view_filter};
use vsphere_client::codec::{ManagedObjectReference, Poly, VimEnum};
use vsphere_client::mo::{SearchIndex, VcenterVStorageObjectManager, ViewManager, VirtualMachine};
use vsphere_client::rpc::{Call, PendingTask};
use vsphere_client::types::{
    ID, KeyValue, VStorageObject, VirtualMachineConnectionState, VirtualMachinePowerState,
    VslmCloneSpec, VslmCreateSpec, VslmCreateSpecBackingSpec, VslmCreateSpecDiskFileBackingSpec,
    VslmMigrateSpec,
};

use super::rules::{self, AttachDecision, CreateDecision, DetachDecision};
use super::vsphere_specs::{self as specs, DiskDevice, VmDevices};
use super::{Backend, BackendInfo, Capabilities, CloneSource, Snapshot};
use crate::error::{BoxedSource, Error, Result};
use crate::model::{
    Allocation, Device, DeviceFormat, Epoch, Generation, Labels, NodeId, PoolId, Volume, VolumeId,
    VolumeName, VolumeSpec,
};
use crate::orchestrator::{Liveness, NodeLiveness};

const MIB: u64 = 1 << 20;
/// The metadata key prefix under which labels are stored on the disk.
const LABEL_PREFIX: &str = "volume-core.label.";
/// The metadata key holding the size the creator asked for (rounded up), so that `create` with
/// the original spec stays idempotent after a resize grew the disk.
const REQUESTED_KEY: &str = "volume-core.requested-bytes";

/// The disk mode a volume is attached in.
///
/// `AttachDisk_Task` takes no disk mode (vCenter gives the disk the mode it chooses,
/// `persistent` on vsphere-sim), so [`AttachMode::IndependentPersistent`] attaches with
/// `ReconfigVM_Task` instead: a `VirtualDisk` device whose backing is the First Class Disk's own
/// VMDK (no file operation) with `diskMode = independent_persistent`, named by its `vDiskId`.
/// That is still one task per attach (a move stays at two), but, because a reconfiguration
/// is not refused when another VM has the file, the attach first reads every VM's devices
/// (one more round trip: 7 per move instead of 6). Independent disks are skipped by VM
/// snapshots, as vDVS did for its volumes. Detach is `DetachDisk_Task` in both modes.
///
/// ```
/// use volume_core::backend::vsphere::AttachMode;
/// assert_eq!(AttachMode::default(), AttachMode::Persistent);
/// assert_eq!(AttachMode::IndependentPersistent.disk_mode(), "independent_persistent");
/// assert_eq!(AttachMode::from_disk_mode("persistent"), Some(AttachMode::Persistent));
/// assert_eq!(AttachMode::from_disk_mode("nonpersistent"), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttachMode {
    /// `persistent` (through `AttachDisk_Task`): the disk takes part in VM snapshots.
    #[default]
    Persistent,
    /// `independent_persistent` (through `ReconfigVM_Task`): VM snapshots skip the disk.
    IndependentPersistent,
}

impl AttachMode {
    /// The `VirtualDiskMode` string of the mode.
    pub fn disk_mode(self) -> &'static str {
        match self {
            AttachMode::Persistent => "persistent",
            AttachMode::IndependentPersistent => "independent_persistent",
        }
    }

    /// The mode of a `VirtualDiskMode` string, if it is one of these.
    pub fn from_disk_mode(mode: &str) -> Option<Self> {
        match mode {
            "persistent" => Some(AttachMode::Persistent),
            "independent_persistent" => Some(AttachMode::IndependentPersistent),
            _ => None,
        }
    }
}

/// Node liveness from vSphere: a node is its VM, dead when powered off, orphaned,
/// disconnected, inaccessible or deleted ([`FcdBackend::node_liveness`]). Give it to an
/// orchestrator ([`Orchestrator::with_liveness`](crate::orchestrator::Orchestrator::with_liveness))
/// so that a polite move takes a live lease from a VM that cannot be using the disk (and
/// force-detaches it). A read that fails says nothing (`Unknown`, treated as alive).
#[derive(Debug, Clone)]
pub struct VmLiveness {
    backend: Arc<FcdBackend>,
}

impl VmLiveness {
    /// Liveness read through `backend` (its client and VM resolution).
    pub fn new(backend: Arc<FcdBackend>) -> Self {
        Self { backend }
    }
}

#[async_trait]
impl NodeLiveness for VmLiveness {
    async fn liveness(&self, node: &NodeId) -> Liveness {
        self.backend
            .node_liveness(node)
            .await
            .unwrap_or(Liveness::Unknown)
    }
}

/// The placement policy [`FcdBackend`] knows: the usable datastore with the most free space.
pub const PLACE_FREE_SPACE: &str = "free-space";

/// Whether a datastore takes new disks: accessible (unset counts as yes) and not in or
/// entering maintenance mode (the vSphere backend rules: skip datastores in maintenance).
fn datastore_usable(accessible: Option<bool>, maintenance: Option<&str>) -> bool {
    accessible != Some(false)
        && !matches!(maintenance, Some("inMaintenance" | "enteringMaintenance"))
}

/// Wraps a client error as [`Error::Remote`].
pub(crate) fn remote(op: &'static str, e: ClientError) -> Error {
    Error::Remote {
        op,
        source: Box::new(e) as BoxedSource,
    }
}

/// What the backend knows about one FCD from `RetrieveVStorageObject`.
#[derive(Clone, Debug)]
struct Fcd {
    id: VolumeId,
    name: VolumeName,
    pool: PoolId,
    datastore: ManagedObjectReference,
    capacity_mb: i64,
    file: String,
    labels: Option<Labels>,
    /// The creator's rounded size, from the disk's metadata (`None` for disks made elsewhere).
    requested_bytes: Option<u64>,
}

/// Per-volume state this instance keeps (see the module documentation).
#[derive(Clone, Debug, Default)]
struct Ledger {
    labels: Labels,
    epoch: Epoch,
    generation: Generation,
}

/// Where an FCD is attached: the VM, and the disk device when a scan has seen it.
#[derive(Clone, Debug)]
struct Holder {
    vm: ManagedObjectReference,
    disk: Option<DiskDevice>,
}

/// A node id looked up among the VMs of the last scan.
enum Lookup {
    Found(ManagedObjectReference),
    /// Several VMs have this name.
    Ambiguous,
    Missing,
}

/// The First Class Disk backend. Build it with [`FcdBackend::connect`].
#[derive(Debug)]
pub struct FcdBackend {
    client: Arc<Client>,
    manager: VcenterVStorageObjectManager,
    pools: HashMap<PoolId, ManagedObjectReference>,
    allocation: Allocation,
    resize: bool,
    /// FCD snapshots (`RetrieveSnapshotInfo` and friends) exist on the server.
    snapshot: bool,
    /// `CloneVStorageObject_Task` exists.
    clone: bool,
    /// `CreateDiskFromSnapshot_Task` exists.
    clone_from_snapshot: bool,
    tasks: TaskWaiter,
    view: OnceCell<ManagedObjectReference>,
    /// Disk facts, by volume id (dropped when the server says the disk is gone).
    fcds: Mutex<HashMap<VolumeId, Fcd>>,
    /// Where each volume seen is attached (`None`: detached), see the module documentation.
    attachments: Mutex<HashMap<VolumeId, Option<Holder>>>,
    ledger: Mutex<HashMap<VolumeId, Ledger>>,
    /// Node ids as callers gave them, by VM moref value (how attachments are reported back).
    node_names: Mutex<HashMap<String, NodeId>>,
    /// Node ids already resolved to VMs.
    nodes: Mutex<HashMap<NodeId, ManagedObjectReference>>,
    /// VM names seen by the last scan (a name seen twice maps to `None`).
    vm_names: Mutex<HashMap<String, Option<ManagedObjectReference>>>,
    volume_locks: Mutex<HashMap<VolumeId, Arc<AsyncMutex<()>>>>,
    vm_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    create_lock: AsyncMutex<()>,
    attach_disk_missing: AtomicBool,
    detach_disk_missing: AtomicBool,
    /// Other hosts attach and detach these disks too: attachments are always read from the
    /// server (see [`FcdBackend::shared`]).
    shared: bool,
    /// The disk mode of attachments (see [`AttachMode`]).
    mode: AttachMode,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map operation, so a poisoned lock holds no half-made
    // change.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn keyed<K: std::hash::Hash + Eq + Clone>(
    m: &Mutex<HashMap<K, Arc<AsyncMutex<()>>>>,
    k: &K,
) -> Arc<AsyncMutex<()>> {
    lock(m).entry(k.clone()).or_default().clone()
}

/// Whether a task's fault says the disk is attached somewhere already (vCenter answers
/// `InvalidState`/`FileLocked`/`ResourceInUse`; vsphere-sim `InvalidState` caused by
/// `FileLocked`).
fn is_in_use(e: &ClientError) -> bool {
    ["InvalidState", "FileLocked", "ResourceInUse"]
        .iter()
        .any(|f| e.is_fault(f))
}

/// Whether a fault says that the disk (or its file) does not exist.
pub(crate) fn is_missing(e: &ClientError) -> bool {
    e.is_fault("NotFound") || e.is_fault("InvalidArgument") || e.is_fault("FileNotFound")
}

/// The server's `VStorageObjectManager` and the datastores the pools name (by name or
/// inventory path), resolved through the client's finder, in order; at least one pool.
pub(crate) async fn resolve_pools(
    client: &Client,
    pools: impl IntoIterator<Item = PoolId>,
) -> Result<(
    VcenterVStorageObjectManager,
    Vec<(PoolId, ManagedObjectReference)>,
)> {
    let manager = client
        .disks()
        .map_err(|_| Error::Unsupported {
            feature: "First Class Disks on a server without a VStorageObjectManager",
        })?
        .mo()
        .clone();
    let wanted: Vec<PoolId> = pools.into_iter().collect();
    if wanted.is_empty() {
        return Err(Error::invalid("pools", "name at least one datastore"));
    }
    let finder = client
        .finder()
        .await
        .map_err(|e| remote("finder (inventory)", e))?;
    let mut resolved = Vec::with_capacity(wanted.len());
    for p in wanted {
        let ds = finder
            .one("datastore", &["Datastore"], Some(p.as_str()), None)
            .map_err(|_| Error::UnknownPool { pool: p.clone() })?;
        resolved.push((p, ds.reference.clone()));
    }
    Ok((manager, resolved))
}

impl FcdBackend {
    /// Connects the backend to a logged-in client, with the datastores (by name or inventory
    /// path) that serve as pools. Resolves the datastores through the client's finder, creates
    /// the task collector, and probes whether the server implements `ExtendDisk_Task` (one
    /// round trip, with an id that names no disk).
    pub async fn connect(
        client: Arc<Client>,
        pools: impl IntoIterator<Item = PoolId>,
    ) -> Result<Self> {
        let (manager, pools) = resolve_pools(&client, pools).await?;
        let pools: HashMap<PoolId, ManagedObjectReference> = pools.into_iter().collect();
        let probe_ds = pools.values().next().cloned().expect("at least one pool");
        let probe_id = ID {
            id: "volume-core-capability-probe".to_owned(),
            ..ID::default()
        };
        // Each probe names a disk that does not exist: a server that has the method answers
        // with a fault about the disk (or starts a task that fails on its own); one without it
        // answers `NotImplemented`/`MethodNotFound`.
        let exists = |r: std::result::Result<(), ClientError>| match r {
            Err(e) => !e.is_not_implemented(),
            Ok(()) => true,
        };
        let resize = exists(
            manager
                .extend_disk_task(&*client, &probe_id, &probe_ds, 1)
                .await
                .map(drop),
        );
        // Snapshots count only where the server answers like vCenter (and vsphere-sim) for
        // a disk that is not there, `NotFound`: govmomi's vcsim 0.24.2 answers
        // `InvalidArgument`, and its RetrieveSnapshotInfo also fails so on disks it has.
        let snapshot = match manager
            .retrieve_snapshot_info(&*client, &probe_id, &probe_ds)
            .await
        {
            Ok(_) => true,
            Err(e) => e.is_fault("NotFound"),
        };
        let clone = exists(
            manager
                .clone_v_storage_object_task(
                    &*client,
                    &probe_id,
                    &probe_ds,
                    &VslmCloneSpec {
                        name: "volume-core-capability-probe".to_owned(),
                        ..VslmCloneSpec::default()
                    },
                )
                .await
                .map(drop),
        );
        let clone_from_snapshot = snapshot
            && exists(
                manager
                    .create_disk_from_snapshot_task(
                        &*client,
                        &probe_id,
                        &probe_ds,
                        &probe_id,
                        "volume-core-capability-probe",
                        &[],
                        None,
                        None,
                        None,
                        None,
                        None,
                    )
                    .await
                    .map(drop),
            );
        let tasks = TaskWaiter::new();
        tasks.prepare(&client).await;
        Ok(Self {
            client,
            manager,
            pools,
            allocation: Allocation::new(MIB, MIB).expect("valid allocation"),
            resize,
            snapshot,
            clone,
            clone_from_snapshot,
            tasks,
            view: OnceCell::new(),
            fcds: Mutex::default(),
            attachments: Mutex::default(),
            ledger: Mutex::default(),
            node_names: Mutex::default(),
            nodes: Mutex::default(),
            vm_names: Mutex::default(),
            volume_locks: Mutex::default(),
            vm_locks: Mutex::default(),
            create_lock: AsyncMutex::new(()),
            attach_disk_missing: AtomicBool::new(false),
            detach_disk_missing: AtomicBool::new(false),
            shared: false,
            mode: AttachMode::default(),
        })
    }

    /// Declares that other hosts (other backend instances, other processes) attach and detach
    /// the same disks, as when several orchestrators share a
    /// [`VcenterStore`](crate::journal::vcenter::VcenterStore): the instance then never trusts
    /// its own record of where a volume is attached, and reads it from every VM's devices
    /// before each decision (one more round trip per attach, detach or read).
    #[must_use]
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Attaches volumes in `mode` from now on (see [`AttachMode`]; the default is
    /// [`AttachMode::Persistent`]).
    #[must_use]
    pub fn with_attach_mode(mut self, mode: AttachMode) -> Self {
        self.mode = mode;
        self
    }

    /// The disk mode of attachments.
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    /// Where the volume is attached and the disk mode the VM reports for it, read from every
    /// VM's `config.hardware.device` now (the truth, not the bookkeeping); `None` when it is
    /// attached nowhere. The mode is the raw `diskMode` string (see
    /// [`AttachMode::from_disk_mode`]), empty when the server reports none.
    pub async fn attachment(&self, id: &VolumeId) -> Result<Option<(NodeId, String)>> {
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let scan = self.scan().await?;
        Ok(Self::holder_in(&scan, &f).map(|h| {
            let mode = h.disk.and_then(|d| d.disk_mode).unwrap_or_default();
            (self.node_of(&h.vm), mode)
        }))
    }

    /// The node VM's liveness from vSphere: its `runtime.powerState` and
    /// `runtime.connectionState` (one round trip), judged by
    /// [`vm_liveness`](crate::liveness::vm_liveness); a VM that no longer exists (the server
    /// answers `ManagedObjectNotFound`, or no VM has the node's name or path) is
    /// [`Liveness::Dead`].
    pub async fn node_liveness(&self, node: &NodeId) -> Result<Liveness> {
        let vm = match self.resolve(node).await {
            Ok(vm) => vm,
            Err(Error::UnknownNode { .. }) => return Ok(Liveness::Dead),
            Err(e) => return Err(e),
        };
        let p = match self
            .client
            .properties(&vm, &["runtime.powerState", "runtime.connectionState"])
            .await
        {
            Ok(p) => p,
            Err(e) if e.is_fault("ManagedObjectNotFound") => {
                lock(&self.nodes).remove(node);
                return Ok(Liveness::Dead);
            }
            Err(e) => return Err(remote("RetrievePropertiesEx(runtime)", e)),
        };
        let power = p.get::<VirtualMachinePowerState>("runtime.powerState");
        let connection = p.get::<VirtualMachineConnectionState>("runtime.connectionState");
        Ok(crate::liveness::vm_liveness(
            power.as_ref().map(VimEnum::as_wire),
            connection.as_ref().map(VimEnum::as_wire),
        ))
    }

    /// Deletes the volume's snapshot `name` (`DeleteSnapshot_Task`); a missing snapshot is
    /// success.
    pub async fn delete_snapshot(&self, id: &VolumeId, name: &str) -> Result<()> {
        Self::require(self.snapshot, "snapshots (the server has no FCD snapshots)")?;
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let Some(f) = self.fcd(id).await? else {
            return Ok(());
        };
        for (snap_id, _) in self
            .fcd_snapshots(&f)
            .await?
            .into_iter()
            .filter(|(_, s)| s.name == name)
        {
            let call = self.manager.delete_snapshot_task(
                &*self.client,
                &Self::id_of(id),
                &f.datastore,
                &snap_id,
            );
            match self.run(call).await {
                Ok(()) => {}
                Err(e) if e.is_fault("NotFound") => {}
                Err(e) => return Err(self.task_error(e, "DeleteSnapshot_Task", id).await),
            }
        }
        Ok(())
    }

    /// Reverts a detached volume to its snapshot `name` (`RevertVStorageObject_Task`):
    /// [`Error::UnknownSnapshot`] when it has none of that name; a server without the method
    /// is [`Error::Unsupported`].
    pub async fn revert_snapshot(&self, id: &VolumeId, name: &str, epoch: Epoch) -> Result<()> {
        Self::require(self.snapshot, "snapshots (the server has no FCD snapshots)")?;
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let (v, _) = self.current(&f, true).await?;
        if epoch < v.epoch {
            return Err(Error::StaleEpoch {
                id: id.clone(),
                presented: epoch,
                current: v.epoch,
            });
        }
        if let Some(node) = v.attached_to {
            return Err(Error::AttachedElsewhere {
                id: id.clone(),
                node,
            });
        }
        let snap_id = self.snapshot_id(&f, name).await?;
        let call = self.manager.revert_v_storage_object_task(
            &*self.client,
            &Self::id_of(id),
            &f.datastore,
            &snap_id,
        );
        match self.run(call).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_implemented() => Err(Error::Unsupported {
                feature: "reverting a First Class Disk (the server has no RevertVStorageObject_Task)",
            }),
            Err(e) => Err(self.task_error(e, "RevertVStorageObject_Task", id).await),
        }
    }

    fn require(has: bool, feature: &'static str) -> Result<()> {
        if has {
            Ok(())
        } else {
            Err(Error::Unsupported { feature })
        }
    }

    fn snapshot_of(f: &Fcd, name: &str) -> Snapshot {
        Snapshot {
            volume: f.id.clone(),
            name: name.to_owned(),
            size_bytes: (f.capacity_mb.max(0) as u64) * MIB,
        }
    }

    /// The disk's snapshots (`RetrieveSnapshotInfo`): their ids and, named by their
    /// descriptions, as [`Snapshot`]s.
    async fn fcd_snapshots(&self, f: &Fcd) -> Result<Vec<(ID, Snapshot)>> {
        let info = self
            .manager
            .retrieve_snapshot_info(&*self.client, &Self::id_of(&f.id), &f.datastore)
            .await;
        let info = match info {
            Ok(i) => i,
            Err(e) => return Err(self.task_error(e, "RetrieveSnapshotInfo", &f.id).await),
        };
        Ok(info
            .snapshots
            .into_iter()
            .filter_map(|s| {
                let id = s.id?.into_inner();
                Some((id, Self::snapshot_of(f, &s.description)))
            })
            .collect())
    }

    /// The id of the disk's snapshot named `name`, or [`Error::UnknownSnapshot`].
    async fn snapshot_id(&self, f: &Fcd, name: &str) -> Result<ID> {
        self.fcd_snapshots(f)
            .await?
            .into_iter()
            .find(|(_, s)| s.name == name)
            .map(|(snap_id, _)| snap_id)
            .ok_or_else(|| Error::UnknownSnapshot {
                id: f.id.clone(),
                snapshot: name.to_owned(),
            })
    }

    /// The First Class Disk named `name` on `ds`, if any.
    async fn named(
        &self,
        pool: &PoolId,
        ds: &ManagedObjectReference,
        name: &VolumeName,
    ) -> Result<Option<Fcd>> {
        let ids = self
            .manager
            .list_v_storage_object(&*self.client, ds)
            .await
            .map_err(|e| remote("ListVStorageObject", e))?;
        for id in ids {
            let Ok(vid) = VolumeId::new(id.id) else {
                continue;
            };
            let known = lock(&self.fcds).get(&vid).cloned();
            let f = match known {
                Some(f) => Some(f),
                None => self.retrieve_on(pool, ds, &vid).await?,
            };
            if let Some(f) = f
                && &f.name == name
            {
                lock(&self.fcds).insert(f.id.clone(), f.clone());
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    /// The creation metadata of a volume: its labels and the creator's rounded size.
    fn metadata(spec: &VolumeSpec, requested: u64) -> Vec<KeyValue> {
        spec.labels
            .iter()
            .map(|(k, v)| KeyValue {
                key: format!("{LABEL_PREFIX}{k}"),
                value: v.to_owned(),
                ..KeyValue::default()
            })
            .chain((requested > 0).then(|| KeyValue {
                key: REQUESTED_KEY.to_owned(),
                value: requested.to_string(),
                ..KeyValue::default()
            }))
            .collect()
    }

    /// The client this backend speaks through.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Every VM that has the volume's disk among its devices, read from the server now (one
    /// scan of every VM's `config.hardware.device`, not the bookkeeping): an audit for tests
    /// and operators. More than one entry would be a double attachment. A volume that does not
    /// exist is [`Error::UnknownVolume`].
    pub async fn holders(&self, id: &VolumeId) -> Result<Vec<NodeId>> {
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let scan = self.scan().await?;
        Ok(scan
            .iter()
            .filter(|vm| vm.disks.iter().any(|d| d.is_fcd(f.id.as_str(), &f.file)))
            .map(|vm| self.node_of(&vm.vm))
            .collect())
    }

    /// Sends a `*_Task` call and waits for its end through the backend's task filter.
    async fn run<R>(&self, call: Call<'_, PendingTask<R>>) -> std::result::Result<R, ClientError> {
        let pending = call.await?;
        self.tasks.wait(&self.client, pending).await
    }

    fn id_of(id: &VolumeId) -> ID {
        ID {
            id: id.as_str().to_owned(),
            ..ID::default()
        }
    }

    fn fcd_from(pool: &PoolId, ds: &ManagedObjectReference, o: &VStorageObject) -> Option<Fcd> {
        let id = VolumeId::new(fcd_id(o)?).ok()?;
        let config = o.config.as_ref()?;
        let base = &config.base_config_info;
        let name = VolumeName::new(base.name.clone()).ok()?;
        let mut labels = Labels::default();
        let mut any = false;
        let mut requested_bytes = None;
        for kv in &base.metadata {
            if kv.key == REQUESTED_KEY {
                requested_bytes = kv.value.parse().ok();
            } else if let Some(k) = kv.key.strip_prefix(LABEL_PREFIX) {
                any = true;
                let _ = labels.insert(k, kv.value.clone());
            }
        }
        Some(Fcd {
            id,
            name,
            pool: pool.clone(),
            datastore: ds.clone(),
            capacity_mb: config.capacity_in_mb,
            file: backing_file(o).unwrap_or_default(),
            labels: any.then_some(labels),
            requested_bytes,
        })
    }

    /// `RetrieveVStorageObject` on one datastore; `None` when the disk is not there.
    async fn retrieve_on(
        &self,
        pool: &PoolId,
        ds: &ManagedObjectReference,
        id: &VolumeId,
    ) -> Result<Option<Fcd>> {
        match self
            .manager
            .retrieve_v_storage_object(&*self.client, &Self::id_of(id), ds, &[])
            .await
        {
            Ok(o) => Ok(Self::fcd_from(pool, ds, &o)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(remote("RetrieveVStorageObject", e)),
        }
    }

    /// The FCD with this id on any of the backend's datastores, read from the server.
    async fn fetch(&self, id: &VolumeId) -> Result<Option<Fcd>> {
        for (pool, ds) in &self.pools {
            if let Some(f) = self.retrieve_on(pool, ds, id).await? {
                lock(&self.fcds).insert(id.clone(), f.clone());
                return Ok(Some(f));
            }
        }
        self.forget(id);
        Ok(None)
    }

    /// The FCD with this id: the facts already known, else read from the server.
    async fn fcd(&self, id: &VolumeId) -> Result<Option<Fcd>> {
        let known = lock(&self.fcds).get(id).cloned();
        match known {
            Some(f) => Ok(Some(f)),
            None => self.fetch(id).await,
        }
    }

    /// Drops everything known about a volume whose disk is gone.
    fn forget(&self, id: &VolumeId) {
        lock(&self.fcds).remove(id);
        lock(&self.attachments).remove(id);
        lock(&self.ledger).remove(id);
    }

    /// Reads `name` and `config.hardware.device` of every VM (one round trip per page, through
    /// a container view created once) and refreshes the VM names and the attachments of every
    /// known volume.
    async fn scan(&self) -> Result<Vec<VmDevices>> {
        let view = self
            .view
            .get_or_try_init(|| async {
                let content = self.client.service_content();
                let manager = content.view_manager.clone().ok_or(Error::Unsupported {
                    feature: "a vCenter without a ViewManager",
                })?;
                ViewManager::from_reference(manager)
                    .create_container_view(
                        &*self.client,
                        &content.root_folder,
                        &["VirtualMachine".to_owned()],
                        true,
                    )
                    .await
                    .map_err(|e| remote("CreateContainerView", e))
            })
            .await?;
        let spec = RetrieveSpec {
            specs: vec![view_filter(
                view,
                &[("VirtualMachine", &["name", "config.hardware.device"])],
            )],
            max_objects: None,
        };
        let scan: Vec<VmDevices> = self
            .client
            .retrieve_pages(spec)
            .collect_all()
            .await
            .map_err(|e| remote("RetrievePropertiesEx(config.hardware.device)", e))?
            .into_iter()
            .map(specs::vm_devices)
            .collect();
        {
            let mut names = lock(&self.vm_names);
            names.clear();
            for vm in &scan {
                names
                    .entry(vm.name.clone())
                    .and_modify(|e| *e = None)
                    .or_insert_with(|| Some(vm.vm.clone()));
            }
        }
        Ok(scan)
    }

    fn holder_in(scan: &[VmDevices], f: &Fcd) -> Option<Holder> {
        scan.iter().find_map(|vm| {
            vm.disks
                .iter()
                .find(|d| d.is_fcd(f.id.as_str(), &f.file))
                .map(|d| Holder {
                    vm: vm.vm.clone(),
                    disk: Some(d.clone()),
                })
        })
    }

    /// Where the volume is attached: the bookkeeping when it knows, else a scan. Only a
    /// caller holding the volume's lock may `remember` what the scan found (a scan that raced
    /// with an attach of the same volume would otherwise overwrite the newer truth).
    async fn holder(&self, f: &Fcd, remember: bool) -> Result<Option<Holder>> {
        let known = lock(&self.attachments).get(&f.id).cloned();
        if let Some(h) = known
            && !self.shared
        {
            return Ok(h);
        }
        let h = Self::holder_in(&self.scan().await?, f);
        if remember {
            self.set_holder(&f.id, h.clone());
        }
        Ok(h)
    }

    fn set_holder(&self, id: &VolumeId, holder: Option<Holder>) {
        lock(&self.attachments).insert(id.clone(), holder);
    }

    /// The node id to report for a VM: the one a caller used, else the moref value.
    fn node_of(&self, vm: &ManagedObjectReference) -> NodeId {
        lock(&self.node_names)
            .get(&vm.value)
            .cloned()
            .or_else(|| NodeId::new(vm.value.clone()).ok())
            .unwrap_or_else(|| NodeId::new("unknown-vm").expect("valid node id"))
    }

    /// Resolves a node id to a VM once: a moref value, an inventory path, or a unique VM name.
    async fn resolve(&self, node: &NodeId) -> Result<ManagedObjectReference> {
        let cached = lock(&self.nodes).get(node).cloned();
        if let Some(vm) = cached {
            return Ok(vm);
        }
        let s = node.as_str();
        let vm =
            if s.contains('/') {
                let index = self.client.service_content().search_index.clone().ok_or(
                    Error::Unsupported {
                        feature: "inventory paths on a server without a SearchIndex",
                    },
                )?;
                SearchIndex::from_reference(index)
                    .find_by_inventory_path(&*self.client, s)
                    .await
                    .map_err(|e| remote("FindByInventoryPath", e))?
                    .filter(|r| r.type_ == "VirtualMachine")
                    .ok_or_else(|| Error::UnknownNode {
                        node: node.clone(),
                        reason: "no VM at this inventory path".to_owned(),
                    })?
            } else {
                let mut found = self.by_name_or_moref(s);
                if matches!(found, Lookup::Missing) {
                    self.scan().await?;
                    found = self.by_name_or_moref(s);
                }
                match found {
                    Lookup::Found(vm) => vm,
                    Lookup::Ambiguous => {
                        return Err(Error::UnknownNode {
                            node: node.clone(),
                            reason: "several VMs have this name; use the moref or inventory path"
                                .to_owned(),
                        });
                    }
                    Lookup::Missing => {
                        return Err(Error::UnknownNode {
                            node: node.clone(),
                            reason: "no VM with this moref or name".to_owned(),
                        });
                    }
                }
            };
        lock(&self.nodes).insert(node.clone(), vm.clone());
        lock(&self.node_names).insert(vm.value.clone(), node.clone());
        Ok(vm)
    }

    /// A VM by moref value or name from the last scan.
    fn by_name_or_moref(&self, s: &str) -> Lookup {
        let names = lock(&self.vm_names);
        if let Some(vm) = names.values().flatten().find(|vm| vm.value == s) {
            return Lookup::Found(vm.clone());
        }
        match names.get(s) {
            Some(Some(vm)) => Lookup::Found(vm.clone()),
            Some(None) => Lookup::Ambiguous,
            None => Lookup::Missing,
        }
    }

    fn ledger(&self, id: &VolumeId) -> Ledger {
        lock(&self.ledger)
            .get(id)
            .cloned()
            .unwrap_or_else(|| Ledger {
                generation: Generation(1),
                ..Ledger::default()
            })
    }

    fn volume(&self, f: &Fcd, attached_to: Option<NodeId>) -> Volume {
        let l = self.ledger(&f.id);
        let size = (f.capacity_mb.max(0) as u64) * MIB;
        Volume {
            id: f.id.clone(),
            name: f.name.clone(),
            pool: f.pool.clone(),
            size_bytes: size,
            requested_bytes_rounded: f.requested_bytes.unwrap_or(size),
            labels: f.labels.clone().unwrap_or(l.labels),
            attached_to,
            generation: l.generation,
            epoch: l.epoch,
        }
    }

    fn record(&self, v: &Volume) {
        lock(&self.ledger).insert(
            v.id.clone(),
            Ledger {
                labels: v.labels.clone(),
                epoch: v.epoch,
                generation: v.generation,
            },
        );
    }

    /// The volume and where it is attached (bookkeeping, else a scan; see [`Self::holder`]).
    async fn current(&self, f: &Fcd, locked: bool) -> Result<(Volume, Option<Holder>)> {
        let h = self.holder(f, locked).await?;
        let v = self.volume(f, h.as_ref().map(|h| self.node_of(&h.vm)));
        Ok((v, h))
    }

    /// The server refused the attach because the disk is in use: one scan names the holder.
    async fn refused_attach(&self, f: &Fcd, vm: &ManagedObjectReference, e: ClientError) -> Error {
        match self.scan().await {
            Ok(scan) => match Self::holder_in(&scan, f) {
                Some(h) if &h.vm != vm => Error::AttachedElsewhere {
                    id: f.id.clone(),
                    node: self.node_of(&h.vm),
                },
                _ => remote("AttachDisk_Task", e),
            },
            Err(scan_error) => scan_error,
        }
    }

    /// Attaches the disk to `vm`; `Ok(())` also when it turns out to be there already.
    async fn attach_disk(&self, f: &Fcd, vm: &ManagedObjectReference) -> Result<()> {
        let machine = VirtualMachine::from_reference(vm.clone());
        if self.mode == AttachMode::Persistent && !self.attach_disk_missing.load(Ordering::Relaxed)
        {
            let call = machine.attach_disk_task(
                &*self.client,
                &Self::id_of(&f.id),
                &f.datastore,
                None,
                None,
            );
            match self.run(call).await {
                Ok(()) => {
                    self.set_holder(
                        &f.id,
                        Some(Holder {
                            vm: vm.clone(),
                            disk: None,
                        }),
                    );
                    return Ok(());
                }
                Err(e) if e.is_not_implemented() => {
                    self.attach_disk_missing.store(true, Ordering::Relaxed);
                }
                Err(e) if is_in_use(&e) => return Err(self.refused_attach(f, vm, e).await),
                Err(e) => return Err(self.task_error(e, "AttachDisk_Task", &f.id).await),
            }
        }
        // An independent-persistent attach, or a server without AttachDisk_Task (vcsim 0.24.2):
        // a reconfiguration is not refused when another VM uses the disk's file, so read every
        // VM's devices (safety and a free SCSI unit), then add the FCD's VMDK in the mode.
        let scan = self.scan().await?;
        match Self::holder_in(&scan, f) {
            Some(h) if &h.vm == vm => return Ok(()),
            Some(h) => {
                return Err(Error::AttachedElsewhere {
                    id: f.id.clone(),
                    node: self.node_of(&h.vm),
                });
            }
            None => {}
        }
        let devices = scan
            .iter()
            .find(|v| &v.vm == vm)
            .ok_or_else(|| Error::UnknownNode {
                node: self.node_of(vm),
                reason: "the VM vanished during the attach".to_owned(),
            })?;
        let (ctrl, unit) = devices.free_unit.ok_or_else(|| Error::InUse {
            id: f.id.clone(),
            reason: "the VM has no SCSI controller with a free unit",
        })?;
        let spec = specs::add_disk_spec(
            self.mode.disk_mode(),
            f.id.as_str(),
            &f.file,
            &f.datastore,
            f.capacity_mb,
            ctrl,
            unit,
        );
        match self
            .run(machine.reconfig_vm_task(&*self.client, &spec))
            .await
        {
            Ok(()) => {
                // The device key is the server's: a detach through DetachDisk_Task needs only
                // the VM; the ReconfigVM_Task fallback scans for the key when it needs it.
                self.set_holder(
                    &f.id,
                    Some(Holder {
                        vm: vm.clone(),
                        disk: None,
                    }),
                );
                Ok(())
            }
            Err(e) => Err(self.task_error(e, "ReconfigVM_Task(add disk)", &f.id).await),
        }
    }

    /// Detaches the disk from the holder the bookkeeping names; a stale holder (the server
    /// answers `NotFound`) is corrected by one scan and the real holder is detached.
    async fn detach_disk(&self, f: &Fcd, h: Holder) -> Result<()> {
        let mut h = h;
        for attempt in 0..2 {
            let vm_guard = keyed(&self.vm_locks, &h.vm.value);
            let vg = vm_guard.lock().await;
            let r = self.detach_from(f, &h).await;
            match r {
                Ok(()) => {
                    self.set_holder(&f.id, None);
                    return Ok(());
                }
                // The VM is gone: so is the attachment.
                Err(e) if e.is_fault("ManagedObjectNotFound") => {
                    self.set_holder(&f.id, None);
                    return Ok(());
                }
                Err(e) if attempt == 0 && (e.is_fault("NotFound") || h.disk.is_none()) => {
                    drop(vg);
                    let scan = self.scan().await?;
                    match Self::holder_in(&scan, f) {
                        None => return Ok(()),
                        Some(real) => h = real,
                    }
                }
                Err(e) => return Err(self.task_error(e, "DetachDisk_Task", &f.id).await),
            }
        }
        Err(Error::Remote {
            op: "DetachDisk_Task",
            source: "the disk moved between VMs while it was being detached".into(),
        })
    }

    async fn detach_from(&self, f: &Fcd, h: &Holder) -> std::result::Result<(), ClientError> {
        let machine = VirtualMachine::from_reference(h.vm.clone());
        if !self.detach_disk_missing.load(Ordering::Relaxed) {
            let call = machine.detach_disk_task(&*self.client, &Self::id_of(&f.id));
            match self.run(call).await {
                Err(e) if e.is_not_implemented() => {
                    self.detach_disk_missing.store(true, Ordering::Relaxed);
                }
                r => return r,
            }
        }
        let Some(disk) = &h.disk else {
            // The device key is unknown: the caller scans and comes back.
            return Err(ClientError::NotFound {
                kind: "disk device",
                path: f.id.as_str().to_owned(),
            });
        };
        let spec = specs::remove_disk_spec(disk);
        self.run(machine.reconfig_vm_task(&*self.client, &spec))
            .await
    }

    /// A failed task: `NotFound` because the disk is gone is [`Error::UnknownVolume`].
    async fn task_error(&self, e: ClientError, op: &'static str, id: &VolumeId) -> Error {
        if e.is_fault("NotFound") || e.is_fault("FileNotFound") {
            match self.fetch(id).await {
                Ok(None) => return Error::UnknownVolume { id: id.clone() },
                Ok(Some(_)) => {}
                Err(other) => return other,
            }
        }
        remote(op, e)
    }
}

#[async_trait]
impl Backend for FcdBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "fcd",
            allocation: self.allocation,
            capabilities: Capabilities {
                resize: self.resize,
                online_resize: false,
                snapshot: self.snapshot,
                clone: self.clone,
                clone_from_snapshot: self.clone_from_snapshot,
                placement: true,
            },
        }
    }

    async fn create(&self, spec: &VolumeSpec) -> Result<Volume> {
        let allocated = self.allocation.round_up(spec.size_bytes)?;
        let ds = self
            .pools
            .get(&spec.pool)
            .cloned()
            .ok_or_else(|| Error::UnknownPool {
                pool: spec.pool.clone(),
            })?;
        let _serial = self.create_lock.lock().await;
        let ids = self
            .manager
            .list_v_storage_object(&*self.client, &ds)
            .await
            .map_err(|e| remote("ListVStorageObject", e))?;
        let mut same_name = Vec::new();
        for id in ids {
            let Ok(vid) = VolumeId::new(id.id) else {
                continue;
            };
            let known = lock(&self.fcds).get(&vid).cloned();
            let f = match known {
                Some(f) => Some(f),
                None => self.retrieve_on(&spec.pool, &ds, &vid).await?,
            };
            if let Some(f) = f
                && f.name == spec.name
            {
                same_name.push(f);
            }
        }
        let existing: Vec<Volume> = same_name.iter().map(|f| self.volume(f, None)).collect();
        match rules::decide_create(spec, &existing, self.allocation, None)? {
            CreateDecision::Existing(v) => {
                let f = same_name
                    .iter()
                    .find(|f| f.id == v.id)
                    .expect("the decision picked a listed volume");
                lock(&self.fcds).insert(f.id.clone(), f.clone());
                Ok(self.current(f, false).await?.0)
            }
            CreateDecision::Create { .. } => {
                let capacity_mb = (allocated / MIB) as i64;
                let backing = VslmCreateSpecDiskFileBackingSpec {
                    vslm_create_spec_backing_spec: VslmCreateSpecBackingSpec {
                        datastore: ds.clone(),
                        ..VslmCreateSpecBackingSpec::default()
                    },
                    provisioning_type: Some("thin".to_owned()),
                };
                let create = VslmCreateSpec {
                    name: spec.name.as_str().to_owned(),
                    keep_after_delete_vm: Some(true),
                    backing_spec: Some(Poly::new(backing)),
                    capacity_in_mb: capacity_mb,
                    metadata: spec
                        .labels
                        .iter()
                        .map(|(k, v)| KeyValue {
                            key: format!("{LABEL_PREFIX}{k}"),
                            value: v.to_owned(),
                            ..KeyValue::default()
                        })
                        .chain(std::iter::once(KeyValue {
                            key: REQUESTED_KEY.to_owned(),
                            value: allocated.to_string(),
                            ..KeyValue::default()
                        }))
                        .collect(),
                    ..VslmCreateSpec::default()
                };
                let o = self
                    .run(self.manager.create_disk_task(&*self.client, &create))
                    .await
                    .map_err(|e| {
                        if e.is_fault("InsufficientDiskSpace") || e.is_fault("OutOfBounds") {
                            Error::CapacityExhausted {
                                pool: spec.pool.clone(),
                                requested: allocated,
                                available: 0,
                            }
                        } else {
                            remote("CreateDisk_Task", e)
                        }
                    })?;
                let mut f = Self::fcd_from(&spec.pool, &ds, &o).ok_or_else(|| Error::Corrupt {
                    what: "CreateDisk_Task result".to_owned(),
                    reason: "no usable id or name".to_owned(),
                })?;
                f.labels = Some(spec.labels.clone());
                lock(&self.fcds).insert(f.id.clone(), f.clone());
                // A new disk is attached nowhere.
                self.set_holder(&f.id, None);
                let v = self.volume(&f, None);
                self.record(&v);
                Ok(v)
            }
        }
    }

    async fn destroy(&self, id: &VolumeId) -> Result<()> {
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let Some(f) = self.fetch(id).await? else {
            return Ok(());
        };
        // The truth, not the bookkeeping: a disk in use must never be deleted.
        let scan = self.scan().await?;
        let h = Self::holder_in(&scan, &f);
        let v = self.volume(&f, h.as_ref().map(|h| self.node_of(&h.vm)));
        if rules::decide_destroy(Some(&v))? {
            let call = self.manager.delete_v_storage_object_task(
                &*self.client,
                &Self::id_of(id),
                &f.datastore,
            );
            match self.run(call).await {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(remote("DeleteVStorageObject_Task", e)),
            }
            self.forget(id);
        }
        Ok(())
    }

    async fn check_node(&self, node: &NodeId) -> Result<()> {
        self.resolve(node).await.map(drop)
    }

    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume> {
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let vm = self.resolve(node).await?;
        let (mut v, holder) = self.current(&f, true).await?;
        if let Some(h) = &holder
            && h.vm == vm
        {
            // Attached to this very VM, whichever form of its id was used.
            v.attached_to = Some(node.clone());
        }
        if rules::decide_attach(&v, node, epoch)? == AttachDecision::AlreadyAttached {
            return Ok(v);
        }
        let vm_guard = keyed(&self.vm_locks, &vm.value);
        let _vg = vm_guard.lock().await;
        self.attach_disk(&f, &vm).await?;
        rules::apply_attach(&mut v, node, epoch);
        self.record(&v);
        Ok(v)
    }

    async fn detach(&self, id: &VolumeId, epoch: Epoch) -> Result<()> {
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let Some(f) = self.fcd(id).await? else {
            return Ok(());
        };
        let (mut v, mut holder) = self.current(&f, true).await?;
        if holder.is_none() {
            // "Detached" is never taken on trust here: another process may have attached it,
            // and no server fault would tell. One scan (outside the move's path: a move only
            // detaches a volume it saw attached).
            holder = Self::holder_in(&self.scan().await?, &f);
            v.attached_to = holder.as_ref().map(|h| self.node_of(&h.vm));
            self.set_holder(&f.id, holder.clone());
        }
        if let (DetachDecision::Detach(_), Some(h)) =
            (rules::decide_detach(Some(&v), epoch)?, holder)
        {
            self.detach_disk(&f, h).await?;
            rules::apply_detach(&mut v, epoch);
            self.record(&v);
        }
        Ok(())
    }

    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume> {
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let mut v = match self.fcd(id).await? {
            Some(f) => Some(self.current(&f, true).await?.0),
            None => None,
        };
        rules::decide_fence(v.as_ref(), id, epoch)?;
        let v = v.as_mut().expect("decide_fence refuses a missing volume");
        rules::apply_fence(v, epoch);
        self.record(v);
        Ok(v.clone())
    }

    async fn list(&self) -> Result<Vec<Volume>> {
        let mut fcds = Vec::new();
        for (pool, ds) in &self.pools {
            let ids = self
                .manager
                .list_v_storage_object(&*self.client, ds)
                .await
                .map_err(|e| remote("ListVStorageObject", e))?;
            for id in ids {
                let Ok(vid) = VolumeId::new(id.id) else {
                    continue;
                };
                if let Some(f) = self.retrieve_on(pool, ds, &vid).await? {
                    fcds.push(f);
                }
            }
        }
        {
            let mut known = lock(&self.fcds);
            known.clear();
            for f in &fcds {
                known.insert(f.id.clone(), f.clone());
            }
        }
        lock(&self.attachments).retain(|id, _| fcds.iter().any(|f| &f.id == id));
        if fcds.is_empty() {
            return Ok(Vec::new());
        }
        let scan = self.scan().await?;
        Ok(fcds
            .iter()
            .map(|f| {
                let h = Self::holder_in(&scan, f);
                self.volume(f, h.as_ref().map(|h| self.node_of(&h.vm)))
            })
            .collect())
    }

    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        let Some(f) = self.fcd(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.current(&f, false).await?.0))
    }

    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        let f = self
            .fetch(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let vm = self.resolve(node).await?;
        // The guest-visible path needs the disk's UUID: read the devices.
        let scan = self.scan().await?;
        let Some(h) = Self::holder_in(&scan, &f) else {
            return Err(Error::NotAttached { id: id.clone() });
        };
        if h.vm != vm {
            return Err(Error::AttachedElsewhere {
                id: id.clone(),
                node: self.node_of(&h.vm),
            });
        }
        let disk = h.disk.as_ref().expect("a scanned holder has its disk");
        Ok(Device {
            path: PathBuf::from(specs::device_path(disk, f.id.as_str())),
            format: DeviceFormat::Raw,
        })
    }

    async fn resize(&self, id: &VolumeId, size_bytes: u64, epoch: Epoch) -> Result<Volume> {
        if !self.resize {
            return Err(Error::Unsupported {
                feature: "resize (the server has no ExtendDisk_Task)",
            });
        }
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let f = self.fetch(id).await?;
        let mut v = match &f {
            Some(f) => Some(self.current(f, true).await?.0),
            None => None,
        };
        let Some(want) =
            rules::decide_resize(v.as_ref(), id, size_bytes, self.allocation, false, epoch)?
        else {
            return Ok(v.expect("decide_resize refuses a missing volume"));
        };
        let mut f = f.expect("decide_resize refuses a missing volume");
        if self.snapshot {
            let count = self.fcd_snapshots(&f).await?.len();
            if count > 0 {
                return Err(Error::HasSnapshots {
                    id: id.clone(),
                    count,
                });
            }
        }
        let call = self.manager.extend_disk_task(
            &*self.client,
            &Self::id_of(id),
            &f.datastore,
            (want / MIB) as i64,
        );
        if let Err(e) = self.run(call).await {
            return Err(self.task_error(e, "ExtendDisk_Task", id).await);
        }
        f.capacity_mb = (want / MIB) as i64;
        lock(&self.fcds).insert(id.clone(), f);
        let v = v.as_mut().expect("decide_resize refuses a missing volume");
        rules::apply_resize(v, want, epoch);
        self.record(v);
        Ok(v.clone())
    }

    async fn snapshot(&self, id: &VolumeId, name: &str) -> Result<Snapshot> {
        Self::require(self.snapshot, "snapshots (the server has no FCD snapshots)")?;
        if name.is_empty() {
            return Err(Error::invalid("snapshot name", "must not be empty"));
        }
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        if let Some((_, s)) = self
            .fcd_snapshots(&f)
            .await?
            .into_iter()
            .find(|(_, s)| s.name == name)
        {
            return Ok(s);
        }
        let call = self.manager.v_storage_object_create_snapshot_task(
            &*self.client,
            &Self::id_of(id),
            &f.datastore,
            name,
        );
        if let Err(e) = self.run(call).await {
            return Err(self
                .task_error(e, "VStorageObjectCreateSnapshot_Task", id)
                .await);
        }
        Ok(Self::snapshot_of(&f, name))
    }

    async fn snapshots(&self, id: &VolumeId) -> Result<Vec<Snapshot>> {
        Self::require(self.snapshot, "snapshots (the server has no FCD snapshots)")?;
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        Ok(self
            .fcd_snapshots(&f)
            .await?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    async fn clone_volume(&self, source: &CloneSource, spec: &VolumeSpec) -> Result<Volume> {
        Self::require(
            self.clone,
            "clones (the server has no CloneVStorageObject_Task)",
        )?;
        let (src_id, snapshot) = match source {
            CloneSource::Volume(id) => (id, None),
            CloneSource::Snapshot { volume, name } => {
                Self::require(
                    self.clone_from_snapshot,
                    "clones from snapshots (the server has no CreateDiskFromSnapshot_Task)",
                )?;
                (volume, Some(name))
            }
        };
        let ds = self
            .pools
            .get(&spec.pool)
            .cloned()
            .ok_or_else(|| Error::UnknownPool {
                pool: spec.pool.clone(),
            })?;
        let src = self
            .fcd(src_id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: src_id.clone() })?;
        let want = self.allocation.round_up(spec.size_bytes)?;
        if want > (src.capacity_mb.max(0) as u64) * MIB {
            return Err(Error::invalid(
                "size",
                format!("a clone has its source's size; {want} bytes is larger: resize the clone"),
            ));
        }
        let _serial = self.create_lock.lock().await;
        // Idempotent by name, as create: a volume of this name in the pool is the clone.
        if let Some(existing) = self.named(&spec.pool, &ds, &spec.name).await? {
            return Ok(self.current(&existing, false).await?.0);
        }
        let target = VslmCreateSpecBackingSpec {
            datastore: ds.clone(),
            ..VslmCreateSpecBackingSpec::default()
        };
        let o = match snapshot {
            None => {
                let clone = VslmCloneSpec {
                    vslm_migrate_spec: VslmMigrateSpec {
                        backing_spec: Some(Poly::new(target)),
                        ..VslmMigrateSpec::default()
                    },
                    name: spec.name.as_str().to_owned(),
                    keep_after_delete_vm: Some(true),
                    metadata: Self::metadata(spec, 0),
                };
                let call = self.manager.clone_v_storage_object_task(
                    &*self.client,
                    &Self::id_of(src_id),
                    &src.datastore,
                    &clone,
                );
                self.run(call).await
            }
            Some(name) => {
                let snap_id = self.snapshot_id(&src, name).await?;
                let call = self.manager.create_disk_from_snapshot_task(
                    &*self.client,
                    &Self::id_of(src_id),
                    &src.datastore,
                    &snap_id,
                    spec.name.as_str(),
                    &[],
                    None,
                    None,
                    None,
                    None,
                    Some(&ds),
                );
                self.run(call).await
            }
        };
        let o = match o {
            Ok(o) => o,
            Err(e) if e.is_fault("InsufficientDiskSpace") || e.is_fault("OutOfBounds") => {
                return Err(Error::CapacityExhausted {
                    pool: spec.pool.clone(),
                    requested: (src.capacity_mb.max(0) as u64) * MIB,
                    available: 0,
                });
            }
            Err(e) => return Err(self.task_error(e, "CloneVStorageObject_Task", src_id).await),
        };
        let mut f = Self::fcd_from(&spec.pool, &ds, &o).ok_or_else(|| Error::Corrupt {
            what: "clone result".to_owned(),
            reason: "no usable id or name".to_owned(),
        })?;
        if f.labels.is_none() {
            f.labels = Some(spec.labels.clone());
        }
        lock(&self.fcds).insert(f.id.clone(), f.clone());
        self.set_holder(&f.id, None);
        let v = self.volume(&f, None);
        self.record(&v);
        Ok(v)
    }

    /// Placement by policy over the backend's datastores. Policies: `free-space` (the
    /// accessible datastore, not in or entering maintenance mode, with the most free space
    /// that fits `size_bytes`). Any other policy is [`Error::InvalidArgument`]; none that fits is
    /// [`Error::CapacityExhausted`]. One round trip per datastore.
    async fn place(&self, policy: &str, size_bytes: u64) -> Result<PoolId> {
        if policy != PLACE_FREE_SPACE {
            return Err(Error::invalid(
                "placement policy",
                format!("{policy:?} is not one of: {PLACE_FREE_SPACE}"),
            ));
        }
        let want = self.allocation.round_up(size_bytes)?;
        let mut best: Option<(u64, PoolId)> = None;
        let mut largest = 0;
        for (pool, ds) in &self.pools {
            let p = self
                .client
                .properties(
                    ds,
                    &[
                        "summary.freeSpace",
                        "summary.accessible",
                        "summary.maintenanceMode",
                    ],
                )
                .await
                .map_err(|e| remote("RetrievePropertiesEx(datastore summary)", e))?;
            let free = p
                .get::<i64>("summary.freeSpace")
                .map_or(0, |f| u64::try_from(f).unwrap_or(0));
            let usable = datastore_usable(
                p.get::<bool>("summary.accessible"),
                p.get::<String>("summary.maintenanceMode").as_deref(),
            );
            if !usable {
                continue;
            }
            largest = largest.max(free);
            if free >= want && best.as_ref().is_none_or(|(b, _)| free > *b) {
                best = Some((free, pool.clone()));
            }
        }
        best.map(|(_, p)| p)
            .ok_or_else(|| Error::CapacityExhausted {
                pool: PoolId::new(PLACE_FREE_SPACE).expect("valid pool id"),
                requested: want,
                available: largest,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_skips_inaccessible_datastores_and_those_in_maintenance() {
        assert!(datastore_usable(Some(true), Some("normal")));
        assert!(datastore_usable(None, None), "unset facts do not exclude");
        assert!(!datastore_usable(Some(false), Some("normal")));
        assert!(!datastore_usable(Some(true), Some("inMaintenance")));
        assert!(!datastore_usable(Some(true), Some("enteringMaintenance")));
    }

    #[test]
    fn labels_and_the_requested_size_become_creation_metadata() {
        let mut spec =
            VolumeSpec::new(VolumeName::new("v").unwrap(), PoolId::new("ds").unwrap(), 1);
        spec.labels.insert("app", "db".to_owned()).unwrap();
        let m = FcdBackend::metadata(&spec, 1 << 20);
        assert!(
            m.iter()
                .any(|kv| kv.key == "volume-core.label.app" && kv.value == "db")
        );
        assert!(
            m.iter()
                .any(|kv| kv.key == REQUESTED_KEY && kv.value == "1048576")
        );
        assert_eq!(
            FcdBackend::metadata(&spec, 0).len(),
            1,
            "no size when none is known"
        );
    }
}
