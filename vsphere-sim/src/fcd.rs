//! First Class Disks (`VcenterVStorageObjectManager`): create, list, retrieve, extend, delete,
//! and their attachment to VMs (`AttachDisk_Task` / `DetachDisk_Task`).
//!
//! An attachment is recorded in one place only, the VM's device list: a `VirtualDisk` whose
//! `vDiskId.id` is the disk's id. So a VM's destruction or a reconfiguration that removes the
//! disk detaches it without further bookkeeping.

use vsphere_client::codec::{Any, DateTime, ManagedObjectReference, Obj, Poly};
use vsphere_client::types::{
    BaseConfigInfoBackingInfo, BaseConfigInfoDiskFileBackingInfo, FileLocked, ID, InvalidState,
    KeyNotFound, KeyValue, NoDiskSpace, NotFound, VStorageObject, VStorageObjectAssociations,
    VStorageObjectAssociationsVmDiskAssociations, VStorageObjectConfigInfo,
    VStorageObjectSnapshotDetails, VStorageObjectSnapshotInfo,
    VStorageObjectSnapshotInfoVStorageObjectSnapshot, VirtualMachineConfigInfo, VslmCloneSpec,
    VslmCreateSpec, VslmMigrateSpec, VslmRelocateSpec, VslmTagEntry,
};

use crate::fault::{Fault, invalid_argument, with_cause};
use crate::inventory::{Inventory, uuid_for};
use crate::task::TaskOutcome;
use crate::vm::{self, Plan};

/// One First Class Disk.
#[derive(Clone, Debug)]
pub(crate) struct Fcd {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) datastore: ManagedObjectReference,
    pub(crate) capacity_mb: i64,
    pub(crate) path: String,
    pub(crate) create_time: DateTime,
    pub(crate) keep_after_delete_vm: bool,
    pub(crate) metadata: Vec<KeyValue>,
    /// Snapshots, oldest first.
    pub(crate) snapshots: Vec<FcdSnapshot>,
}

/// One snapshot of a First Class Disk (with the metadata the disk had when it was taken).
#[derive(Clone, Debug)]
pub(crate) struct FcdSnapshot {
    pub(crate) id: String,
    pub(crate) backing_object_id: String,
    pub(crate) description: String,
    pub(crate) create_time: DateTime,
    pub(crate) metadata: Vec<KeyValue>,
}

fn id(value: &str) -> ID {
    let mut i = ID::default();
    i.id = value.to_owned();
    i
}

fn not_found(id: &str) -> Fault {
    Fault::new(
        format!("The object or item referred to could not be found (disk {id})."),
        NotFound::default(),
    )
}

pub(crate) fn no_space(inv: &Inventory, ds: &ManagedObjectReference) -> Fault {
    let name = inv.name_of(&ds.value).unwrap_or_default().to_owned();
    let mut f = NoDiskSpace::default();
    f.datastore.clone_from(&name);
    f.file = format!("[{name}]");
    Fault::new(
        format!("There is not enough space on the file system ({name})."),
        f,
    )
}

/// The disk, checked against the datastore the caller names (vCenter answers `NotFound` for
/// a disk on another datastore).
fn lookup<'a>(
    inv: &'a Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
) -> Result<&'a Fcd, Fault> {
    inv.fcds
        .get(disk)
        .filter(|f| ds.is_none_or(|d| d.value == f.datastore.value))
        .ok_or_else(|| not_found(disk))
}

/// The VM (and device key) a disk is attached to.
pub(crate) fn attached_to(inv: &Inventory, disk: &str) -> Option<(ManagedObjectReference, i32)> {
    inv.of_type("VirtualMachine").find_map(|o| {
        let c = inv.data::<VirtualMachineConfigInfo>(&o.moref.value, "config")?;
        let d = c
            .hardware
            .as_ref()?
            .device
            .iter()
            .find(|d| vm::fcd_id(d).as_deref() == Some(disk))?;
        Some((o.moref.clone(), d.key))
    })
}

/// The disk as `RetrieveVStorageObject` returns it.
pub(crate) fn object(inv: &Inventory, f: &Fcd) -> VStorageObject {
    let mut backing = BaseConfigInfoDiskFileBackingInfo::default();
    backing.provisioning_type = "thin".to_owned();
    backing
        .base_config_info_file_backing_info
        .file_path
        .clone_from(&f.path);
    backing
        .base_config_info_file_backing_info
        .base_config_info_backing_info
        .datastore = f.datastore.clone();
    let mut c = VStorageObjectConfigInfo::default();
    c.base_config_info.id = Some(Obj::new(id(&f.id)));
    c.base_config_info.name.clone_from(&f.name);
    c.base_config_info.create_time = f.create_time;
    c.base_config_info.keep_after_delete_vm = Some(f.keep_after_delete_vm);
    c.base_config_info.relocation_disabled = Some(false);
    c.base_config_info.native_snapshot_supported = Some(false);
    c.base_config_info.changed_block_tracking_enabled = Some(false);
    c.base_config_info.backing = Some(Poly::<BaseConfigInfoBackingInfo>::new(backing));
    c.base_config_info.metadata.clone_from(&f.metadata);
    c.capacity_in_mb = f.capacity_mb;
    c.consumption_type = vec!["disk".to_owned()];
    if let Some((vm, _)) = attached_to(inv, &f.id)
        && let Some(cfg) = inv.data::<VirtualMachineConfigInfo>(&vm.value, "config")
    {
        c.consumer_id = vec![id(&cfg.instance_uuid.clone().unwrap_or(cfg.uuid.clone()))];
    }
    let mut o = VStorageObject::default();
    o.config = Some(Obj::new(c));
    o
}

/// CreateDisk_Task: a thin disk on the spec's datastore, taken from its free space.
pub(crate) fn create(inv: &mut Inventory, spec: &VslmCreateSpec) -> TaskOutcome {
    if spec.name.is_empty() {
        return Err(invalid_argument("the disk needs a name", Some("name")));
    }
    if spec.capacity_in_mb <= 0 {
        return Err(invalid_argument(
            "capacityInMB must be positive",
            Some("capacityInMB"),
        ));
    }
    let Some(backing) = &spec.backing_spec else {
        return Err(invalid_argument(
            "the spec has no backingSpec",
            Some("backingSpec"),
        ));
    };
    let ds = backing.datastore.clone();
    if inv.resolve(&ds).is_none() {
        return Err(crate::fault::not_found(&ds));
    }
    let bytes = spec.capacity_in_mb << 20;
    if inv.free_space(&ds.value).unwrap_or(0) < bytes {
        return Err(no_space(inv, &ds));
    }
    let seq = inv.new_id("fcd");
    let disk_id = uuid_for(&format!("{seq}-{}", spec.name));
    let ds_name = inv.name_of(&ds.value).unwrap_or_default().to_owned();
    let dir = backing.path.clone().unwrap_or_else(|| "fcd".to_owned());
    let dir = dir.trim_end_matches('/');
    let path = format!("[{ds_name}] {dir}/{}.vmdk", disk_id.replace('-', ""));
    let f = Fcd {
        id: disk_id.clone(),
        name: spec.name.clone(),
        datastore: ds.clone(),
        capacity_mb: spec.capacity_in_mb,
        path,
        create_time: crate::server::now(),
        keep_after_delete_vm: spec.keep_after_delete_vm.unwrap_or(true),
        metadata: spec.metadata.clone(),
        snapshots: Vec::new(),
    };
    inv.adjust_free_space(&ds.value, -bytes);
    let result = object(inv, &f);
    inv.fcds.insert(disk_id, f);
    Ok(Some(Any::Data(Box::new(result))))
}

/// ListVStorageObject: the ids of the disks on a datastore.
pub(crate) fn list(inv: &Inventory, ds: &ManagedObjectReference) -> Result<Vec<ID>, Fault> {
    if inv.resolve(ds).is_none() {
        return Err(crate::fault::not_found(ds));
    }
    Ok(inv
        .fcds
        .values()
        .filter(|f| f.datastore.value == ds.value)
        .map(|f| id(&f.id))
        .collect())
}

/// RetrieveVStorageObject.
pub(crate) fn retrieve(
    inv: &Inventory,
    disk: &str,
    ds: &ManagedObjectReference,
) -> Result<VStorageObject, Fault> {
    let f = lookup(inv, disk, Some(ds))?;
    Ok(object(inv, f))
}

/// Removes a disk and gives its space back (the caller has checked it may).
pub(crate) fn delete_unchecked(inv: &mut Inventory, disk: &str) {
    if let Some(f) = inv.fcds.remove(disk) {
        inv.adjust_free_space(&f.datastore.value, f.capacity_mb << 20);
    }
}

fn in_use(inv: &Inventory, f: &Fcd, vm: &ManagedObjectReference) -> Fault {
    let mut locked = FileLocked::default();
    locked.file.clone_from(&f.path);
    let cause = Fault::new(
        format!("Unable to access file {} since it is locked", f.path),
        locked,
    );
    let vm_name = inv.name_of(&vm.value).unwrap_or(&vm.value);
    let outer = Fault::new(
        format!(
            "The operation is not allowed in the current state: disk {} is attached to VM {vm_name}.",
            f.id
        ),
        InvalidState::default(),
    );
    with_cause(outer, cause)
}

/// DeleteVStorageObject_Task: refused while the disk is attached.
pub(crate) fn delete(inv: &mut Inventory, disk: &str, ds: &ManagedObjectReference) -> TaskOutcome {
    let f = lookup(inv, disk, Some(ds))?;
    if let Some((vm, _)) = attached_to(inv, disk) {
        return Err(in_use(inv, f, &vm));
    }
    delete_unchecked(inv, disk);
    Ok(None)
}

/// ExtendDisk_Task: grows the disk (and the attached VM's device with it).
pub(crate) fn extend(
    inv: &mut Inventory,
    disk: &str,
    ds: &ManagedObjectReference,
    new_mb: i64,
) -> TaskOutcome {
    let f = lookup(inv, disk, Some(ds))?.clone();
    if new_mb <= f.capacity_mb {
        return Err(invalid_argument(
            format!(
                "newCapacityInMB ({new_mb}) must be larger than the disk's {} MB",
                f.capacity_mb
            ),
            Some("newCapacityInMB"),
        ));
    }
    let delta = (new_mb - f.capacity_mb) << 20;
    if inv.free_space(&f.datastore.value).unwrap_or(0) < delta {
        return Err(no_space(inv, &f.datastore));
    }
    inv.adjust_free_space(&f.datastore.value, -delta);
    if let Some(x) = inv.fcds.get_mut(disk) {
        x.capacity_mb = new_mb;
    }
    if let Some((vm, key)) = attached_to(inv, disk) {
        let mut devs = vm::device_list(inv, &vm.value)?;
        for d in &mut devs {
            if d.key == key
                && let Some(v) = d
                    .as_object_mut()
                    .as_any_mut()
                    .downcast_mut::<vsphere_client::types::VirtualDisk>()
            {
                v.capacity_in_kb = new_mb * 1024;
                v.capacity_in_bytes = Some(new_mb << 20);
            }
        }
        vm::set_devices(inv, &vm.value, devs);
    }
    Ok(None)
}

/// AttachDisk_Task: refused (`InvalidState` caused by `FileLocked`) when the disk is attached
/// anywhere already.
pub(crate) fn attach(
    inv: &mut Inventory,
    vm_id: &str,
    disk: &str,
    ds: &ManagedObjectReference,
    controller_key: Option<i32>,
    unit_number: Option<i32>,
) -> TaskOutcome {
    let f = lookup(inv, disk, Some(ds))?.clone();
    if let Some((holder, _)) = attached_to(inv, disk) {
        return Err(in_use(inv, &f, &holder));
    }
    let mut dev = vm::fcd_disk(&f.id, &f.path, &f.datastore, f.capacity_mb);
    crate::devices::set_opt(dev.as_object_mut(), "controllerKey", controller_key);
    crate::devices::set_opt(dev.as_object_mut(), "unitNumber", unit_number);
    let mut plan = Plan::new(inv, vm_id)?;
    plan.add(0, &dev, None)?;
    plan.finish()?.commit(inv, vm_id);
    Ok(None)
}

/// DetachDisk_Task: the disk must be attached to this VM (`NotFound` otherwise); the disk
/// itself stays.
pub(crate) fn detach(inv: &mut Inventory, vm_id: &str, disk: &str) -> TaskOutcome {
    lookup(inv, disk, None)?;
    let key = match attached_to(inv, disk) {
        Some((vm, key)) if vm.value == vm_id => key,
        _ => {
            return Err(Fault::new(
                format!("Disk {disk} is not attached to this virtual machine."),
                NotFound::default(),
            ));
        }
    };
    let mut plan = Plan::new(inv, vm_id)?;
    plan.remove(0, key, None)?;
    plan.finish()?.commit(inv, vm_id);
    Ok(None)
}

/// RetrieveVStorageObjectAssociations: which VM (and device key) each disk is attached to.
pub(crate) fn associations(
    inv: &Inventory,
    specs: &[vsphere_client::types::RetrieveVStorageObjSpec],
) -> Vec<VStorageObjectAssociations> {
    specs
        .iter()
        .map(|s| {
            let disk = s.id.as_ref().map(|i| i.id.clone()).unwrap_or_default();
            let mut a = VStorageObjectAssociations::default();
            a.id = Some(Obj::new(id(&disk)));
            match lookup(inv, &disk, Some(&s.datastore)) {
                Err(f) => a.fault = Some(Obj::new(f.localized())),
                Ok(_) => {
                    if let Some((vm, key)) = attached_to(inv, &disk) {
                        let mut v = VStorageObjectAssociationsVmDiskAssociations::default();
                        v.vm_id = vm.value;
                        v.disk_key = key;
                        a.vm_disk_associations = vec![v];
                    }
                }
            }
            a
        })
        .collect()
}

fn snapshot_not_found(disk: &str, snap: &str) -> Fault {
    Fault::new(
        format!(
            "The object or item referred to could not be found (snapshot {snap} of disk {disk})."
        ),
        NotFound::default(),
    )
}

/// The lookup shared by the vslm endpoint, which names disks without a datastore.
pub(crate) fn get<'a>(
    inv: &'a Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
) -> Result<&'a Fcd, Fault> {
    lookup(inv, disk, ds)
}

/// VStorageObjectCreateSnapshot_Task: a snapshot of the disk (attached or not); the result is
/// the snapshot's id.
pub(crate) fn create_snapshot(
    inv: &mut Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    description: &str,
) -> TaskOutcome {
    lookup(inv, disk, ds)?;
    let seq = inv.new_id("fcd-snapshot");
    let snap = FcdSnapshot {
        id: uuid_for(&format!("{disk}-{seq}")),
        backing_object_id: uuid_for(&format!("{disk}-{seq}-backing")),
        description: description.to_owned(),
        create_time: crate::server::now(),
        metadata: Vec::new(),
    };
    let result = id(&snap.id);
    if let Some(f) = inv.fcds.get_mut(disk) {
        let mut snap = snap;
        snap.metadata.clone_from(&f.metadata);
        f.snapshots.push(snap);
    }
    Ok(Some(Any::Data(Box::new(result))))
}

/// RetrieveSnapshotInfo: the disk's snapshots, oldest first.
pub(crate) fn snapshot_info(
    inv: &Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
) -> Result<VStorageObjectSnapshotInfo, Fault> {
    let f = lookup(inv, disk, ds)?;
    let mut info = VStorageObjectSnapshotInfo::default();
    info.snapshots = f
        .snapshots
        .iter()
        .map(|s| {
            let mut v = VStorageObjectSnapshotInfoVStorageObjectSnapshot::default();
            v.id = Some(Obj::new(id(&s.id)));
            v.backing_object_id = Some(s.backing_object_id.clone());
            v.create_time = s.create_time;
            v.description.clone_from(&s.description);
            v
        })
        .collect();
    Ok(info)
}

fn snapshot<'a>(f: &'a Fcd, snap: &str) -> Result<&'a FcdSnapshot, Fault> {
    f.snapshots
        .iter()
        .find(|s| s.id == snap)
        .ok_or_else(|| snapshot_not_found(&f.id, snap))
}

/// RetrieveSnapshotDetails: the snapshot's file.
pub(crate) fn snapshot_details(
    inv: &Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    snap: &str,
) -> Result<VStorageObjectSnapshotDetails, Fault> {
    let f = lookup(inv, disk, ds)?;
    let s = snapshot(f, snap)?;
    let mut d = VStorageObjectSnapshotDetails::default();
    let stem = f.path.trim_end_matches(".vmdk");
    d.path = Some(format!("{stem}-{}.vmdk", &s.backing_object_id[..8]));
    Ok(d)
}

/// DeleteSnapshot_Task: `NotFound` for a snapshot the disk does not have.
pub(crate) fn delete_snapshot(
    inv: &mut Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    snap: &str,
) -> TaskOutcome {
    snapshot(lookup(inv, disk, ds)?, snap)?;
    if let Some(f) = inv.fcds.get_mut(disk) {
        f.snapshots.retain(|s| s.id != snap);
    }
    Ok(None)
}

/// RevertVStorageObject_Task: the disk goes back to the snapshot (its metadata as the snapshot
/// recorded it) and the snapshots taken after it are deleted, as vCenter does; the snapshot
/// itself stays. Refused (`InvalidState` caused by `FileLocked`) while the disk is attached:
/// vCenter reverts detached disks only.
pub(crate) fn revert(
    inv: &mut Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    snap: &str,
) -> TaskOutcome {
    let f = lookup(inv, disk, ds)?;
    snapshot(f, snap)?;
    if let Some((vm, _)) = attached_to(inv, disk) {
        return Err(in_use(inv, f, &vm));
    }
    if let Some(f) = inv.fcds.get_mut(disk)
        && let Some(pos) = f.snapshots.iter().position(|s| s.id == snap)
    {
        f.snapshots.truncate(pos + 1);
        f.metadata.clone_from(&f.snapshots[pos].metadata);
    }
    Ok(None)
}

/// RenameVStorageObject: a new, non-empty name.
pub(crate) fn rename(
    inv: &mut Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    name: &str,
) -> Result<(), Fault> {
    lookup(inv, disk, ds)?;
    if name.trim().is_empty() {
        return Err(invalid_argument("the disk needs a name", Some("name")));
    }
    if let Some(f) = inv.fcds.get_mut(disk) {
        f.name = name.to_owned();
    }
    Ok(())
}

/// VCenterUpdateVStorageObjectMetadataEx_Task (and vslm's update): sets the given keys,
/// removes `delete_keys`; returns the disk.
pub(crate) fn update_metadata(
    inv: &mut Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    metadata: &[KeyValue],
    delete_keys: &[String],
) -> Result<VStorageObject, Fault> {
    lookup(inv, disk, ds)?;
    if let Some(k) = metadata.iter().find(|k| k.key.is_empty()) {
        return Err(invalid_argument(
            format!("a metadata entry has an empty key (value {:?})", k.value),
            Some("metadata"),
        ));
    }
    if let Some(f) = inv.fcds.get_mut(disk) {
        f.metadata.retain(|k| !delete_keys.contains(&k.key));
        for kv in metadata {
            match f.metadata.iter_mut().find(|k| k.key == kv.key) {
                Some(slot) => slot.value.clone_from(&kv.value),
                None => f.metadata.push(kv.clone()),
            }
        }
    }
    let f = lookup(inv, disk, ds)?;
    Ok(object(inv, f))
}

/// The disk's (or one snapshot's) metadata whose keys start with `prefix`.
pub(crate) fn metadata(
    inv: &Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    snap: Option<&str>,
    prefix: Option<&str>,
) -> Result<Vec<KeyValue>, Fault> {
    let f = lookup(inv, disk, ds)?;
    let all = match snap {
        Some(s) => &snapshot(f, s)?.metadata,
        None => &f.metadata,
    };
    Ok(all
        .iter()
        .filter(|k| prefix.is_none_or(|p| k.key.starts_with(p)))
        .cloned()
        .collect())
}

/// One metadata value; `KeyNotFound` when the disk has no such key.
pub(crate) fn metadata_value(
    inv: &Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    snap: Option<&str>,
    key: &str,
) -> Result<String, Fault> {
    metadata(inv, disk, ds, snap, None)?
        .into_iter()
        .find(|k| k.key == key)
        .map(|k| k.value)
        .ok_or_else(|| {
            let mut f = KeyNotFound::default();
            f.key = key.to_owned();
            Fault::new(format!("The key {key:?} was not found."), f)
        })
}

/// The datastore a clone or relocation names (its backing spec), else the disk's own.
fn target_datastore(
    inv: &Inventory,
    spec: &VslmMigrateSpec,
    current: &ManagedObjectReference,
) -> Result<ManagedObjectReference, Fault> {
    let ds = spec
        .backing_spec
        .as_ref()
        .map_or_else(|| current.clone(), |b| b.datastore.clone());
    if inv.resolve(&ds).is_none() {
        return Err(crate::fault::not_found(&ds));
    }
    Ok(ds)
}

/// CloneVStorageObject_Task: a new disk with the source's size, on the spec's datastore.
pub(crate) fn clone(
    inv: &mut Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    spec: &VslmCloneSpec,
) -> TaskOutcome {
    let src = lookup(inv, disk, ds)?.clone();
    let target = target_datastore(inv, &spec.vslm_migrate_spec, &src.datastore)?;
    let mut create_spec = VslmCreateSpec::default();
    create_spec.name.clone_from(&spec.name);
    create_spec.capacity_in_mb = src.capacity_mb;
    create_spec.keep_after_delete_vm = spec.keep_after_delete_vm.or(Some(src.keep_after_delete_vm));
    create_spec.metadata = if spec.metadata.is_empty() {
        src.metadata.clone()
    } else {
        spec.metadata.clone()
    };
    let mut backing = vsphere_client::types::VslmCreateSpecDiskFileBackingSpec::default();
    backing.vslm_create_spec_backing_spec.datastore = target;
    create_spec.backing_spec = Some(Poly::new(backing));
    create(inv, &create_spec)
}

/// RelocateVStorageObject_Task: moves a detached disk to another datastore (space moves with
/// it); an attached disk is `InvalidState`.
pub(crate) fn relocate(
    inv: &mut Inventory,
    disk: &str,
    ds: Option<&ManagedObjectReference>,
    spec: &VslmRelocateSpec,
) -> TaskOutcome {
    let f = lookup(inv, disk, ds)?.clone();
    if let Some((vm, _)) = attached_to(inv, disk) {
        return Err(in_use(inv, &f, &vm));
    }
    let target = target_datastore(inv, &spec.vslm_migrate_spec, &f.datastore)?;
    if target.value != f.datastore.value {
        let bytes = f.capacity_mb << 20;
        if inv.free_space(&target.value).unwrap_or(0) < bytes {
            return Err(no_space(inv, &target));
        }
        inv.adjust_free_space(&target.value, -bytes);
        inv.adjust_free_space(&f.datastore.value, bytes);
        let name = inv.name_of(&target.value).unwrap_or_default().to_owned();
        let file = f.path.split_once("] ").map_or(f.path.as_str(), |(_, p)| p);
        let path = format!("[{name}] {file}");
        if let Some(x) = inv.fcds.get_mut(disk) {
            x.datastore = target;
            x.path = path;
        }
    }
    let f = lookup(inv, disk, None)?;
    Ok(Some(Any::Data(Box::new(object(inv, f)))))
}

/// The tag methods of First Class Disks, which vim25 (`AttachTagToVStorageObject`,
/// `DetachTagFromVStorageObject`, `ListTagsAttachedToVStorageObject`) and `/vslm/sdk` (the same
/// names with `Vslm` in front) serve alike: tags are named by category and tag name in the
/// REST tagging store.
pub(crate) fn tag_call(
    st: &mut crate::server::SimState,
    req: &mut vsphere_client::codec::Request,
) -> crate::server::Reply {
    use crate::fault::bad_request;
    use vsphere_client::codec::encode_response;
    let op = req
        .method
        .name
        .strip_prefix("Vslm")
        .unwrap_or(req.method.name);
    let disk: ID = req.one("id").map_err(bad_request)?;
    get(&st.inv, &disk.id, None)?;
    if op == "ListTagsAttachedToVStorageObject" {
        let entries: Vec<VslmTagEntry> = st
            .rest
            .fcd_tags(&disk.id)
            .into_iter()
            .map(|(c, t)| {
                let mut e = VslmTagEntry::default();
                e.parent_category_name = c;
                e.tag_name = t;
                e
            })
            .collect();
        return crate::server::ok(encode_response(req.method, &[&entries.as_slice()]));
    }
    let category: String = req.one("category").map_err(bad_request)?;
    let tag: String = req.one("tag").map_err(bad_request)?;
    if op == "AttachTagToVStorageObject" {
        st.rest.attach_fcd_tag(&disk.id, &category, &tag)?;
    } else {
        st.rest.detach_fcd_tag(&disk.id, &category, &tag)?;
    }
    crate::server::ok(encode_response(req.method, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::types::VslmCreateSpecDiskFileBackingSpec;

    fn spec(ds: &ManagedObjectReference, mb: i64) -> VslmCreateSpec {
        let mut b = VslmCreateSpecDiskFileBackingSpec::default();
        b.vslm_create_spec_backing_spec.datastore = ds.clone();
        b.provisioning_type = Some("thin".into());
        let mut s = VslmCreateSpec::default();
        s.name = "vol".into();
        s.capacity_in_mb = mb;
        s.backing_spec = Some(Poly::new(b));
        s
    }

    fn created(inv: &mut Inventory, ds: &ManagedObjectReference) -> String {
        let Some(Any::Data(o)) = create(inv, &spec(ds, 64)).unwrap() else {
            panic!("no object")
        };
        let o = o.downcast_ref::<VStorageObject>().unwrap();
        o.config
            .as_ref()
            .unwrap()
            .base_config_info
            .id
            .as_ref()
            .unwrap()
            .id
            .clone()
    }

    #[test]
    fn revert_drops_later_snapshots_and_restores_metadata() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let ds = inv.of_type("Datastore").next().unwrap().moref.clone();
        let vm = inv.first_id("VirtualMachine");
        let disk = created(&mut inv, &ds);
        let kv = |k: &str, v: &str| {
            let mut x = KeyValue::default();
            x.key = k.into();
            x.value = v.into();
            x
        };
        update_metadata(&mut inv, &disk, Some(&ds), &[kv("stage", "one")], &[]).unwrap();
        let snap_id = |r: TaskOutcome| match r {
            Ok(Some(Any::Data(d))) => d.downcast_ref::<ID>().unwrap().id.clone(),
            _ => panic!("no snapshot id"),
        };
        let first = snap_id(create_snapshot(&mut inv, &disk, Some(&ds), "first"));
        update_metadata(&mut inv, &disk, Some(&ds), &[kv("stage", "two")], &[]).unwrap();
        let second = snap_id(create_snapshot(&mut inv, &disk, Some(&ds), "second"));
        assert_eq!(
            revert(&mut inv, &disk, Some(&ds), "no-such")
                .unwrap_err()
                .type_name(),
            "NotFound"
        );
        attach(&mut inv, &vm, &disk, &ds, None, None).unwrap();
        assert_eq!(
            revert(&mut inv, &disk, Some(&ds), &first)
                .unwrap_err()
                .type_name(),
            "InvalidState"
        );
        detach(&mut inv, &vm, &disk).unwrap();
        revert(&mut inv, &disk, Some(&ds), &first).unwrap();
        let f = &inv.fcds[&disk];
        assert_eq!(f.snapshots.len(), 1);
        assert_eq!(f.snapshots[0].id, first);
        assert_ne!(first, second);
        let meta: Vec<(&str, &str)> = f
            .metadata
            .iter()
            .map(|k| (k.key.as_str(), k.value.as_str()))
            .collect();
        assert_eq!(meta, [("stage", "one")]);
    }

    #[test]
    fn lifecycle_with_attachment_rules() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let ds = inv.of_type("Datastore").next().unwrap().moref.clone();
        let vms: Vec<String> = inv
            .of_type("VirtualMachine")
            .take(2)
            .map(|o| o.moref.value.clone())
            .collect();
        let free = inv.free_space(&ds.value).unwrap();
        let disk = created(&mut inv, &ds);
        assert_eq!(inv.free_space(&ds.value).unwrap(), free - (64 << 20));
        assert_eq!(list(&inv, &ds).unwrap().len(), 1);

        attach(&mut inv, &vms[0], &disk, &ds, None, None).unwrap();
        let devs = vm::device_list(&inv, &vms[0]).unwrap();
        let d = devs
            .iter()
            .find(|d| vm::fcd_id(d).as_deref() == Some(disk.as_str()))
            .unwrap();
        assert_eq!(vm::disk_file(d).0, inv.fcds[&disk].path);
        assert_eq!(d.controller_key, Some(1000));
        let obj = retrieve(&inv, &disk, &ds).unwrap();
        assert_eq!(obj.config.as_ref().unwrap().consumer_id.len(), 1);

        let e = attach(&mut inv, &vms[1], &disk, &ds, None, None).unwrap_err();
        assert_eq!(e.type_name(), "InvalidState");
        assert_eq!(
            delete(&mut inv, &disk, &ds).unwrap_err().type_name(),
            "InvalidState"
        );
        assert_eq!(
            detach(&mut inv, &vms[1], &disk).unwrap_err().type_name(),
            "NotFound"
        );

        extend(&mut inv, &disk, &ds, 128).unwrap();
        let devs = vm::device_list(&inv, &vms[0]).unwrap();
        assert!(devs.iter().any(|d| vm::disk_bytes(d) == 128 << 20));

        detach(&mut inv, &vms[0], &disk).unwrap();
        attach(&mut inv, &vms[1], &disk, &ds, None, None).unwrap();
        let assoc = associations(
            &inv,
            &[{
                let mut s = vsphere_client::types::RetrieveVStorageObjSpec::default();
                s.id = Some(Obj::new(id(&disk)));
                s.datastore = ds.clone();
                s
            }],
        );
        assert_eq!(assoc[0].vm_disk_associations[0].vm_id, vms[1]);
        detach(&mut inv, &vms[1], &disk).unwrap();
        delete(&mut inv, &disk, &ds).unwrap();
        assert!(list(&inv, &ds).unwrap().is_empty());
        assert_eq!(inv.free_space(&ds.value).unwrap(), free);
        assert_eq!(
            retrieve(&inv, &disk, &ds).unwrap_err().type_name(),
            "NotFound"
        );
    }
}
