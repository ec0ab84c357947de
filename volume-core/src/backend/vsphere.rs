//! The vSphere First Class Disk backend (feature `vsphere`): volumes are First Class Disks
//! (FCDs, `VStorageObject`s) on datastores, attached to VMs, through `vsphere-client`.
//!
//! | volume-core | vSphere |
//! |---|---|
//! | volume id | the FCD id |
//! | pool | a datastore, by name (resolved once, through the client's finder) |
//! | node | a VM: its moref value (`vm-42`), inventory path (`/DC0/vm/web-1`) or unique name |
//! | create | `CreateDisk_Task`, thin, `keepAfterDeleteVm = true`, labels in the disk's metadata |
//! | attach | `AttachDisk_Task`; where the server lacks it, `ReconfigVM_Task` adding the FCD's VMDK as an `independent_persistent` disk |
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
//! - **Tasks end through one filter**: the backend's [`TaskWaiter`](self) holds one private
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
//! - `AttachDisk_Task` has no disk-mode parameter, so disks attached through it get the mode
//!   vCenter chooses; only the `ReconfigVM_Task` path sets `independent_persistent`;
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
use vsphere_client::client::{Client, RetrieveSpec, backing_file, fcd_id, view_filter};
use vsphere_client::codec::{ManagedObjectReference, Poly};
use vsphere_client::mo::{SearchIndex, VcenterVStorageObjectManager, ViewManager, VirtualMachine};
use vsphere_client::rpc::{Call, PendingTask};
use vsphere_client::types::{
    ID, KeyValue, VStorageObject, VslmCreateSpec, VslmCreateSpecBackingSpec,
    VslmCreateSpecDiskFileBackingSpec,
};

use super::rules::{self, AttachDecision, CreateDecision, DetachDecision};
use super::vsphere_specs::{self as specs, DiskDevice, VmDevices};
use super::vsphere_tasks::TaskWaiter;
use super::{Backend, BackendInfo, Capabilities};
use crate::error::{BoxedSource, Error, Result};
use crate::model::{
    Allocation, Device, DeviceFormat, Epoch, Generation, Labels, NodeId, PoolId, Volume, VolumeId,
    VolumeName, VolumeSpec,
};

const MIB: u64 = 1 << 20;
/// The metadata key prefix under which labels are stored on the disk.
const LABEL_PREFIX: &str = "volume-core.label.";
/// The metadata key holding the size the creator asked for (rounded up), so that `create` with
/// the original spec stays idempotent after a resize grew the disk.
const REQUESTED_KEY: &str = "volume-core.requested-bytes";

/// Wraps a client error as [`Error::Remote`].
fn remote(op: &'static str, e: ClientError) -> Error {
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

fn is_missing(e: &ClientError) -> bool {
    e.is_fault("NotFound") || e.is_fault("InvalidArgument") || e.is_fault("FileNotFound")
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
        let mut pools = HashMap::new();
        for p in wanted {
            let ds = finder
                .one("datastore", &["Datastore"], Some(p.as_str()), None)
                .map_err(|_| Error::UnknownPool { pool: p.clone() })?;
            pools.insert(p, ds.reference.clone());
        }
        let probe_ds = pools.values().next().cloned().expect("at least one pool");
        let probe = manager
            .extend_disk_task(
                &*client,
                &ID {
                    id: "volume-core-capability-probe".to_owned(),
                    ..ID::default()
                },
                &probe_ds,
                1,
            )
            .await;
        let resize = match probe {
            Err(e) => !e.is_not_implemented(),
            // A task for a disk that does not exist: it fails on its own; the method exists.
            Ok(_) => true,
        };
        let tasks = TaskWaiter::new();
        tasks.prepare(&client).await;
        Ok(Self {
            client,
            manager,
            pools,
            allocation: Allocation::new(MIB, MIB).expect("valid allocation"),
            resize,
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
        if !self.attach_disk_missing.load(Ordering::Relaxed) {
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
        // The server has no AttachDisk_Task (vcsim 0.24.2) and does not refuse a disk file that
        // another VM uses: read every VM's devices (safety and a free SCSI unit), then add the
        // FCD's VMDK by reconfiguring the VM.
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
        let (ctrl, unit) = devices.free_unit().ok_or_else(|| Error::InUse {
            id: f.id.clone(),
            reason: "the VM has no SCSI controller with a free unit",
        })?;
        let spec = specs::add_disk_spec(
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
                // The device key is the server's: the next scan learns it.
                lock(&self.attachments).remove(&f.id);
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
                snapshot: false,
                clone: false,
                placement: false,
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
}
