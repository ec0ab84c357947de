//! The vSphere First Class Disk backend (feature `vsphere`): volumes are First Class Disks
//! (FCDs, `VStorageObject`s) on datastores, attached to VMs, through `vsphere-client`.
//!
//! | volume-core | vSphere |
//! |---|---|
//! | volume id | the FCD id |
//! | pool | a datastore, by name |
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
//! - **Attachment truth comes from the VMs**: every decision reads `config.hardware.device` of
//!   all VMs (one property-collector round trip through a container view) and looks for a
//!   `VirtualDisk` whose `vDiskId` is the volume's id (or whose backing file is the FCD's file).
//!   A volume found on a VM other than the asked-for node is [`Error::AttachedElsewhere`]; the
//!   metadata is never trusted for this.
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
//! - fencing epochs, generations and labels live in the backend instance (and labels also in
//!   the disk's creation metadata where the server keeps it); writing epochs to the disk's
//!   metadata (`VCenterUpdateVStorageObjectMetadataEx_Task`, vSphere 7.0.2+) is not built, so a
//!   restarted backend starts again at epoch 0 (the orchestrator's journal still holds the
//!   epochs it issued);
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
use vsphere_client::client::Client;
use vsphere_client::codec::{ManagedObjectReference, Poly};
use vsphere_client::mo::{SearchIndex, VcenterVStorageObjectManager, VirtualMachine};
use vsphere_client::types::{
    BaseConfigInfoDiskFileBackingInfo, ID, KeyValue, VStorageObject, VslmCreateSpec,
    VslmCreateSpecBackingSpec, VslmCreateSpecDiskFileBackingSpec,
};

use super::rules::{self, AttachDecision, CreateDecision, DetachDecision};
use super::vsphere_glue::{
    self as glue, DiskDevice, TaskError, VmDevices, is_not_implemented, remote, run_task,
};
use super::{Backend, BackendInfo, Capabilities};
use crate::error::{Error, Result};
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

/// Where an FCD is attached, from the VM device scan.
#[derive(Clone, Debug)]
struct Holder {
    vm: ManagedObjectReference,
    disk: DiskDevice,
}

/// The First Class Disk backend. Build it with [`FcdBackend::connect`].
#[derive(Debug)]
pub struct FcdBackend {
    client: Arc<Client>,
    manager: VcenterVStorageObjectManager,
    pools: HashMap<PoolId, ManagedObjectReference>,
    allocation: Allocation,
    resize: bool,
    view: OnceCell<ManagedObjectReference>,
    ledger: Mutex<HashMap<VolumeId, Ledger>>,
    /// Node ids as callers gave them, by VM moref value (how attachments are reported back).
    node_names: Mutex<HashMap<String, NodeId>>,
    /// Inventory paths already resolved.
    paths: Mutex<HashMap<NodeId, ManagedObjectReference>>,
    volume_locks: Mutex<HashMap<VolumeId, Arc<AsyncMutex<()>>>>,
    vm_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    create_lock: AsyncMutex<()>,
    attach_disk_missing: AtomicBool,
    detach_disk_missing: AtomicBool,
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

impl FcdBackend {
    /// Connects the backend to a logged-in client, with the datastores (by name) that serve as
    /// pools. Resolves the datastores (one round trip) and probes whether the server implements
    /// `ExtendDisk_Task` (one round trip, with an id that names no disk).
    pub async fn connect(
        client: Arc<Client>,
        pools: impl IntoIterator<Item = PoolId>,
    ) -> Result<Self> {
        let content = client.service_content();
        let manager = content
            .v_storage_object_manager
            .clone()
            .map(VcenterVStorageObjectManager::from_reference)
            .ok_or(Error::Unsupported {
                feature: "First Class Disks on a server without a VStorageObjectManager",
            })?;
        let wanted: Vec<PoolId> = pools.into_iter().collect();
        if wanted.is_empty() {
            return Err(Error::invalid("pools", "name at least one datastore"));
        }
        let names: Vec<&str> = wanted.iter().map(PoolId::as_str).collect();
        let found = glue::find_by_name(&client, "Datastore", &names).await?;
        let mut pools = HashMap::new();
        for p in wanted {
            let ds = found
                .get(p.as_str())
                .cloned()
                .ok_or_else(|| Error::UnknownPool { pool: p.clone() })?;
            pools.insert(p, ds);
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
            Err(e) => !is_not_implemented(&e),
            // A task for a disk that does not exist: it fails on its own; the method exists.
            Ok(_) => true,
        };
        Ok(Self {
            client,
            manager,
            pools,
            allocation: Allocation::new(MIB, MIB).expect("valid allocation"),
            resize,
            view: OnceCell::new(),
            ledger: Mutex::default(),
            node_names: Mutex::default(),
            paths: Mutex::default(),
            volume_locks: Mutex::default(),
            vm_locks: Mutex::default(),
            create_lock: AsyncMutex::new(()),
            attach_disk_missing: AtomicBool::new(false),
            detach_disk_missing: AtomicBool::new(false),
        })
    }

    /// The client this backend speaks through.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    fn id_of(id: &VolumeId) -> ID {
        ID {
            id: id.as_str().to_owned(),
            ..ID::default()
        }
    }

    fn fcd_from(pool: &PoolId, ds: &ManagedObjectReference, o: VStorageObject) -> Option<Fcd> {
        let config = o.config?.into_inner();
        let base = &config.base_config_info;
        let id = VolumeId::new(base.id.as_ref()?.id.clone()).ok()?;
        let name = VolumeName::new(base.name.clone()).ok()?;
        let file = base
            .backing
            .as_ref()
            .and_then(|b| b.downcast_ref::<BaseConfigInfoDiskFileBackingInfo>())
            .map(|f| f.base_config_info_file_backing_info.file_path.clone())
            .unwrap_or_default();
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
            file,
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
            Ok(o) => Ok(Self::fcd_from(pool, ds, o)),
            Err(e) if matches!(glue::fault_name(&e), "NotFound" | "InvalidArgument") => Ok(None),
            Err(e) => Err(remote("RetrieveVStorageObject", e)),
        }
    }

    /// The FCD with this id on any of the backend's datastores.
    async fn fcd(&self, id: &VolumeId) -> Result<Option<Fcd>> {
        for (pool, ds) in &self.pools {
            if let Some(f) = self.retrieve_on(pool, ds, id).await? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    async fn scan(&self) -> Result<Vec<VmDevices>> {
        let view = self
            .view
            .get_or_try_init(|| glue::vm_view(&self.client))
            .await?;
        glue::scan_vms(&self.client, view)
            .await
            .map_err(|e| remote("RetrievePropertiesEx(config.hardware.device)", e))
    }

    fn holder(scan: &[VmDevices], f: &Fcd) -> Option<Holder> {
        scan.iter().find_map(|vm| {
            vm.disks
                .iter()
                .find(|d| {
                    d.fcd_id.as_deref() == Some(f.id.as_str())
                        || (!f.file.is_empty() && d.file_name.as_deref() == Some(f.file.as_str()))
                })
                .map(|d| Holder {
                    vm: vm.vm.clone(),
                    disk: d.clone(),
                })
        })
    }

    /// The node id to report for a VM: the one a caller used, else the moref value.
    fn node_of(&self, vm: &ManagedObjectReference) -> NodeId {
        lock(&self.node_names)
            .get(&vm.value)
            .cloned()
            .or_else(|| NodeId::new(vm.value.clone()).ok())
            .unwrap_or_else(|| NodeId::new("unknown-vm").expect("valid node id"))
    }

    /// Resolves a node id to a VM: a moref value, an inventory path, or a unique VM name.
    async fn resolve(&self, node: &NodeId, scan: &[VmDevices]) -> Result<ManagedObjectReference> {
        let s = node.as_str();
        let vm = if let Some(vm) = scan.iter().find(|v| v.vm.value == s) {
            vm.vm.clone()
        } else if s.contains('/') {
            let cached = lock(&self.paths).get(node).cloned();
            if let Some(vm) = cached {
                vm
            } else {
                let index = self.client.service_content().search_index.clone().ok_or(
                    Error::Unsupported {
                        feature: "inventory paths on a server without a SearchIndex",
                    },
                )?;
                let found = SearchIndex::from_reference(index)
                    .find_by_inventory_path(&*self.client, s)
                    .await
                    .map_err(|e| remote("FindByInventoryPath", e))?
                    .filter(|r| r.type_ == "VirtualMachine")
                    .ok_or_else(|| Error::UnknownNode {
                        node: node.clone(),
                        reason: "no VM at this inventory path".to_owned(),
                    })?;
                lock(&self.paths).insert(node.clone(), found.clone());
                found
            }
        } else {
            let mut named = scan.iter().filter(|v| v.name == s);
            match (named.next(), named.next()) {
                (Some(v), None) => v.vm.clone(),
                (Some(_), Some(_)) => {
                    return Err(Error::UnknownNode {
                        node: node.clone(),
                        reason: "several VMs have this name; use the moref or inventory path"
                            .to_owned(),
                    });
                }
                (None, _) => {
                    return Err(Error::UnknownNode {
                        node: node.clone(),
                        reason: "no VM with this moref or name".to_owned(),
                    });
                }
            }
        };
        lock(&self.node_names).insert(vm.value.clone(), node.clone());
        Ok(vm)
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

    fn attached_volume(&self, f: &Fcd, scan: &[VmDevices]) -> (Volume, Option<Holder>) {
        let h = Self::holder(scan, f);
        let v = self.volume(f, h.as_ref().map(|h| self.node_of(&h.vm)));
        (v, h)
    }

    async fn attach_disk(
        &self,
        f: &Fcd,
        vm: &ManagedObjectReference,
        scan: &[VmDevices],
    ) -> Result<()> {
        let machine = VirtualMachine::from_reference(vm.clone());
        if !self.attach_disk_missing.load(Ordering::Relaxed) {
            let call = machine.attach_disk_task(
                &*self.client,
                &Self::id_of(&f.id),
                &f.datastore,
                None,
                None,
            );
            match run_task(&self.client, call).await {
                Ok(()) => return Ok(()),
                Err(TaskError::Call(e)) if is_not_implemented(&e) => {
                    self.attach_disk_missing.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(Self::task_error(e, "AttachDisk_Task", f)),
            }
        }
        // The server has no AttachDisk_Task (vcsim 0.24.2): add the FCD's VMDK by
        // reconfiguring the VM, on the first SCSI controller with a free unit.
        let devices = scan
            .iter()
            .find(|v| &v.vm == vm)
            .ok_or_else(|| Error::UnknownNode {
                node: self.node_of(vm),
                reason: "the VM vanished during the attach".to_owned(),
            })?;
        let (ctrl, unit) = devices
            .scsi
            .iter()
            .find_map(|c| c.free_unit().map(|u| (c.key, u)))
            .ok_or_else(|| Error::InUse {
                id: f.id.clone(),
                reason: "the VM has no SCSI controller with a free unit",
            })?;
        let spec = glue::add_disk_spec(
            f.id.as_str(),
            &f.file,
            &f.datastore,
            f.capacity_mb,
            ctrl,
            unit,
        );
        run_task(&self.client, machine.reconfig_vm_task(&*self.client, &spec))
            .await
            .map_err(|e| Self::task_error(e, "ReconfigVM_Task(add disk)", f))
    }

    async fn detach_disk(&self, f: &Fcd, h: &Holder) -> Result<()> {
        let machine = VirtualMachine::from_reference(h.vm.clone());
        let r = if self.detach_disk_missing.load(Ordering::Relaxed) {
            None
        } else {
            let call = machine.detach_disk_task(&*self.client, &Self::id_of(&f.id));
            match run_task(&self.client, call).await {
                Ok(()) => Some(Ok(())),
                Err(TaskError::Call(e)) if is_not_implemented(&e) => {
                    self.detach_disk_missing.store(true, Ordering::Relaxed);
                    None
                }
                Err(e) => Some(Err(e)),
            }
        };
        let r = if let Some(r) = r {
            r
        } else {
            let spec = glue::remove_disk_spec(&h.disk);
            run_task(&self.client, machine.reconfig_vm_task(&*self.client, &spec)).await
        };
        match r {
            Ok(()) => Ok(()),
            // The VM is gone: so is the attachment.
            Err(e) if e.fault() == "ManagedObjectNotFound" => Ok(()),
            Err(e) => Err(Self::task_error(e, "DetachDisk_Task", f)),
        }
    }

    fn task_error(e: TaskError, op: &'static str, f: &Fcd) -> Error {
        if e.fault() == "NotFound" {
            Error::UnknownVolume { id: f.id.clone() }
        } else {
            e.into_error(op)
        }
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
            if let Some(f) = self.retrieve_on(&spec.pool, &ds, &vid).await?
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
                let scan = self.scan().await?;
                Ok(self.attached_volume(f, &scan).0)
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
                let o = run_task(
                    &self.client,
                    self.manager.create_disk_task(&*self.client, &create),
                )
                .await
                .map_err(|e| {
                    if matches!(e.fault(), "InsufficientDiskSpace" | "OutOfBounds") {
                        Error::CapacityExhausted {
                            pool: spec.pool.clone(),
                            requested: allocated,
                            available: 0,
                        }
                    } else {
                        e.into_error("CreateDisk_Task")
                    }
                })?;
                let mut f = Self::fcd_from(&spec.pool, &ds, o).ok_or_else(|| Error::Corrupt {
                    what: "CreateDisk_Task result".to_owned(),
                    reason: "no usable id or name".to_owned(),
                })?;
                f.labels = Some(spec.labels.clone());
                let v = self.volume(&f, None);
                self.record(&v);
                Ok(v)
            }
        }
    }

    async fn destroy(&self, id: &VolumeId) -> Result<()> {
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let Some(f) = self.fcd(id).await? else {
            return Ok(());
        };
        let scan = self.scan().await?;
        let (v, _) = self.attached_volume(&f, &scan);
        if rules::decide_destroy(Some(&v))? {
            let call = self.manager.delete_v_storage_object_task(
                &*self.client,
                &Self::id_of(id),
                &f.datastore,
            );
            match run_task(&self.client, call).await {
                Ok(()) => {}
                Err(e) if matches!(e.fault(), "NotFound" | "InvalidArgument") => {}
                Err(e) => return Err(e.into_error("DeleteVStorageObject_Task")),
            }
            lock(&self.ledger).remove(id);
        }
        Ok(())
    }

    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume> {
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let scan = self.scan().await?;
        let vm = self.resolve(node, &scan).await?;
        let (mut v, holder) = self.attached_volume(&f, &scan);
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
        self.attach_disk(&f, &vm, &scan).await?;
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
        let scan = self.scan().await?;
        let (mut v, holder) = self.attached_volume(&f, &scan);
        if let (DetachDecision::Detach(_), Some(h)) =
            (rules::decide_detach(Some(&v), epoch)?, holder)
        {
            let vm_guard = keyed(&self.vm_locks, &h.vm.value);
            let _vg = vm_guard.lock().await;
            self.detach_disk(&f, &h).await?;
            rules::apply_detach(&mut v, epoch);
            self.record(&v);
        }
        Ok(())
    }

    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume> {
        let guard = keyed(&self.volume_locks, id);
        let _g = guard.lock().await;
        let f = self.fcd(id).await?;
        let mut v = match &f {
            Some(f) => {
                let scan = self.scan().await?;
                Some(self.attached_volume(f, &scan).0)
            }
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
        if fcds.is_empty() {
            return Ok(Vec::new());
        }
        let scan = self.scan().await?;
        Ok(fcds
            .iter()
            .map(|f| self.attached_volume(f, &scan).0)
            .collect())
    }

    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        let Some(f) = self.fcd(id).await? else {
            return Ok(None);
        };
        let scan = self.scan().await?;
        Ok(Some(self.attached_volume(&f, &scan).0))
    }

    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        let f = self
            .fcd(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let scan = self.scan().await?;
        let Some(h) = Self::holder(&scan, &f) else {
            return Err(Error::NotAttached { id: id.clone() });
        };
        let vm = self.resolve(node, &scan).await?;
        if h.vm != vm {
            return Err(Error::AttachedElsewhere {
                id: id.clone(),
                node: self.node_of(&h.vm),
            });
        }
        Ok(Device {
            path: PathBuf::from(glue::device_path(&h.disk, f.id.as_str())),
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
        let f = self.fcd(id).await?;
        let scan = match &f {
            Some(_) => self.scan().await?,
            None => Vec::new(),
        };
        let mut v = f.as_ref().map(|f| self.attached_volume(f, &scan).0);
        let Some(want) =
            rules::decide_resize(v.as_ref(), id, size_bytes, self.allocation, false, epoch)?
        else {
            return Ok(v.expect("decide_resize refuses a missing volume"));
        };
        let f = f.expect("decide_resize refuses a missing volume");
        let call = self.manager.extend_disk_task(
            &*self.client,
            &Self::id_of(id),
            &f.datastore,
            (want / MIB) as i64,
        );
        run_task(&self.client, call)
            .await
            .map_err(|e| Self::task_error(e, "ExtendDisk_Task", &f))?;
        let v = v.as_mut().expect("decide_resize refuses a missing volume");
        rules::apply_resize(v, want, epoch);
        self.record(v);
        Ok(v.clone())
    }
}
