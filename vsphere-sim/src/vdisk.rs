//! `VirtualDiskManager`: virtual disk files on the simulated datastores, by datastore path
//! (`[LocalDS_0] dir/disk.vmdk`). The files it sees are those the simulator already tracks
//! (the disks of VMs and the files of First Class Disks) and the loose disks it creates.
//!
//! - `CreateVirtualDisk_Task` makes a loose disk (a `FileBackedVirtualDiskSpec`'s capacity is
//!   taken from the datastore's free space); `FileAlreadyExists` for a file that exists.
//! - `DeleteVirtualDisk_Task` deletes a loose disk and frees its space; a VM's disk or a First
//!   Class Disk's file is `FileLocked` (delete those through the VM or the disk).
//! - `ExtendVirtualDisk_Task` grows a loose disk, a powered-off VM's disk or a detached First
//!   Class Disk (the VM's device and the disk's capacity follow); never shrinks.
//! - `CopyVirtualDisk_Task` copies any tracked disk to a new loose disk (space taken from the
//!   destination datastore); `MoveVirtualDisk_Task` moves a loose disk (its space moves with it);
//!   `force` replaces a loose disk at the destination, never a VM's or a First Class Disk's file.
//! - `InflateVirtualDisk_Task` makes a thin loose disk `eagerZeroedThick`;
//!   `ShrinkVirtualDisk_Task` checks a loose disk and keeps its capacity.
//! - `QueryVirtualDiskUuid`: the disk's uuid as vCenter writes it (`60 00 C2 ...-...`).
//!
//! `FileNotFound` for a missing file, `InvalidDatastorePath` for a name that is no datastore
//! path, `InvalidDatastore` for an unknown datastore.

use vsphere_client::codec::{Any, ManagedObjectReference, Poly};
use vsphere_client::types::{
    FileAlreadyExists, FileBackedVirtualDiskSpec, FileLocked, FileNotFound, InvalidDatastore,
    InvalidDatastorePath, VirtualDisk, VirtualDiskFlatVer2BackingInfo, VirtualDiskSpec,
    VirtualMachineConfigInfo, VirtualMachinePowerState,
};

use crate::devices::{self, Class};
use crate::fault::{Fault, invalid_argument, not_found};
use crate::inventory::{Inventory, uuid_for};
use crate::task::TaskOutcome;

/// A loose virtual disk file made by `CreateVirtualDisk_Task`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DiskFile {
    pub(crate) datastore: ManagedObjectReference,
    pub(crate) capacity_kb: i64,
    pub(crate) uuid: String,
    pub(crate) disk_type: String,
    pub(crate) adapter_type: String,
}

/// Who a disk file belongs to.
#[derive(Debug, PartialEq)]
enum Owner {
    Loose,
    /// A VM's disk: the VM and the device key.
    Vm(String, i32),
    /// A First Class Disk's file: its id.
    Fcd(String),
}

fn file_fault<F>(mut f: F, file: &str) -> F
where
    F: std::ops::DerefMut<Target = vsphere_client::types::FileFault>,
{
    f.file = file.to_owned();
    f
}

/// The datastore of a datastore path, checked: in `dc` when given.
fn resolve(
    inv: &Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
) -> Result<ManagedObjectReference, Fault> {
    let parsed = name
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .filter(|(ds, rest)| !ds.is_empty() && !rest.trim().is_empty());
    let Some((ds_name, _)) = parsed else {
        let mut f = InvalidDatastorePath::default();
        f.datastore_path = name.to_owned();
        return Err(Fault::new(format!("Invalid datastore path '{name}'."), f));
    };
    if let Some(dc) = dc
        && inv.resolve(dc).is_none()
    {
        return Err(not_found(dc));
    }
    let ds = crate::vm::datastore_by_name(inv, ds_name)
        .filter(|ds| dc.is_none_or(|dc| inv.refs_of(&dc.value, "datastore").contains(ds)));
    ds.ok_or_else(|| {
        let mut f = InvalidDatastore::default();
        f.name = Some(ds_name.to_owned());
        Fault::new(format!("Invalid datastore '{ds_name}'."), f)
    })
}

fn owner(inv: &Inventory, path: &str) -> Option<Owner> {
    if inv.disk_files.contains_key(path) {
        return Some(Owner::Loose);
    }
    for vm in inv.of_type("VirtualMachine") {
        let id = &vm.moref.value;
        for d in crate::vm::device_list(inv, id).unwrap_or_default() {
            if devices::class(&d) == Class::Disk && crate::vm::disk_file(&d).0 == path {
                return Some(match crate::vm::fcd_id(&d) {
                    Some(fcd) => Owner::Fcd(fcd),
                    None => Owner::Vm(id.clone(), d.key),
                });
            }
        }
    }
    inv.fcds
        .values()
        .find(|f| f.path == path)
        .map(|f| Owner::Fcd(f.id.clone()))
}

fn missing(name: &str) -> Fault {
    Fault::new(
        format!("File {name} was not found"),
        file_fault(FileNotFound::default(), name),
    )
}

fn locked(name: &str, why: &str) -> Fault {
    Fault::new(
        format!("Unable to access file {name} since it is locked ({why})."),
        file_fault(FileLocked::default(), name),
    )
}

/// `CreateVirtualDisk_Task`; the task's result is the disk's path.
pub(crate) fn create(
    inv: &mut Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
    spec: &Poly<VirtualDiskSpec>,
) -> TaskOutcome {
    let ds = resolve(inv, name, dc)?;
    if owner(inv, name).is_some() {
        return Err(Fault::new(
            format!("Cannot complete the operation because the file {name} already exists"),
            file_fault(FileAlreadyExists::default(), name),
        ));
    }
    let Some(sized) = spec.downcast_ref::<FileBackedVirtualDiskSpec>() else {
        return Err(invalid_argument(
            "the spec must be a FileBackedVirtualDiskSpec (with capacityKb)",
            Some("spec"),
        ));
    };
    if sized.capacity_kb <= 0 {
        return Err(invalid_argument(
            "capacityKb must be positive",
            Some("spec.capacityKb"),
        ));
    }
    take_space(inv, &ds, sized.capacity_kb)?;
    inv.disk_files.insert(
        name.to_owned(),
        DiskFile {
            datastore: ds,
            capacity_kb: sized.capacity_kb,
            uuid: uuid_for(name),
            disk_type: spec.disk_type.clone(),
            adapter_type: spec.adapter_type.clone(),
        },
    );
    Ok(Some(Any::String(name.to_owned())))
}

fn take_space(inv: &mut Inventory, ds: &ManagedObjectReference, kb: i64) -> Result<(), Fault> {
    let bytes = kb.saturating_mul(1024);
    if inv.free_space(&ds.value).unwrap_or(0) < bytes {
        return Err(crate::fcd::no_space(inv, ds));
    }
    inv.adjust_free_space(&ds.value, -bytes);
    Ok(())
}

/// `DeleteVirtualDisk_Task`.
pub(crate) fn delete(
    inv: &mut Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
) -> TaskOutcome {
    resolve(inv, name, dc)?;
    match owner(inv, name) {
        None => Err(missing(name)),
        Some(Owner::Vm(vm, _)) => Err(locked(name, &format!("a disk of {vm}"))),
        Some(Owner::Fcd(id)) => Err(locked(name, &format!("First Class Disk {id}"))),
        Some(Owner::Loose) => {
            if let Some(f) = inv.disk_files.remove(name) {
                inv.adjust_free_space(&f.datastore.value, f.capacity_kb.saturating_mul(1024));
            }
            Ok(None)
        }
    }
}

/// `ExtendVirtualDisk_Task`.
pub(crate) fn extend(
    inv: &mut Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
    new_kb: i64,
) -> TaskOutcome {
    let ds = resolve(inv, name, dc)?;
    let current = match owner(inv, name) {
        None => return Err(missing(name)),
        Some(Owner::Loose) => inv.disk_files.get(name).map_or(0, |f| f.capacity_kb),
        Some(Owner::Vm(vm, key)) => {
            if crate::vm::power_state(inv, &vm)? != VirtualMachinePowerState::PoweredOff {
                return Err(locked(name, &format!("{vm} is powered on")));
            }
            vm_disk(inv, &vm, key).map_or(0, |d| d.capacity_in_kb)
        }
        Some(Owner::Fcd(id)) => {
            if crate::fcd::attached_to(inv, &id).is_some() {
                return Err(locked(name, &format!("First Class Disk {id} is attached")));
            }
            inv.fcds.get(&id).map_or(0, |f| f.capacity_mb * 1024)
        }
    };
    if new_kb < current {
        return Err(invalid_argument(
            format!("a disk cannot shrink ({current} KB to {new_kb} KB)"),
            Some("newCapacityKb"),
        ));
    }
    take_space(inv, &ds, new_kb - current)?;
    match owner(inv, name) {
        Some(Owner::Loose) => {
            if let Some(f) = inv.disk_files.get_mut(name) {
                f.capacity_kb = new_kb;
            }
        }
        Some(Owner::Vm(vm, key)) => {
            if let Some(d) = vm_disk_mut(inv, &vm, key) {
                d.capacity_in_kb = new_kb;
                d.capacity_in_bytes = Some(new_kb * 1024);
            }
        }
        Some(Owner::Fcd(id)) => {
            if let Some(f) = inv.fcds.get_mut(&id) {
                // First Class Disks count whole megabytes.
                f.capacity_mb = (new_kb + 1023) / 1024;
            }
        }
        None => {}
    }
    Ok(None)
}

/// A tracked disk file's capacity in KB.
fn capacity_kb(inv: &Inventory, name: &str, owner: &Owner) -> i64 {
    match owner {
        Owner::Loose => inv.disk_files.get(name).map_or(0, |f| f.capacity_kb),
        Owner::Vm(vm, key) => vm_disk(inv, vm, *key).map_or(0, |d| d.capacity_in_kb),
        Owner::Fcd(id) => inv.fcds.get(id).map_or(0, |f| f.capacity_mb * 1024),
    }
}

/// The destination of a copy or a move: free, or a loose disk replaced when `force`. The bytes
/// the replaced disk gives back to the destination datastore.
fn destination(inv: &Inventory, dest: &str, force: bool) -> Result<i64, Fault> {
    match owner(inv, dest) {
        None => Ok(0),
        Some(Owner::Loose) if force => Ok(inv
            .disk_files
            .get(dest)
            .map_or(0, |f| f.capacity_kb.saturating_mul(1024))),
        Some(Owner::Loose) => Err(Fault::new(
            format!("Cannot complete the operation because the file {dest} already exists"),
            file_fault(FileAlreadyExists::default(), dest),
        )),
        Some(Owner::Vm(vm, _)) => Err(locked(dest, &format!("a disk of {vm}"))),
        Some(Owner::Fcd(id)) => Err(locked(dest, &format!("First Class Disk {id}"))),
    }
}

/// Takes `kb` from `ds`, counting `freed` bytes that the same call gives back on it first.
fn take_space_after(
    inv: &mut Inventory,
    ds: &ManagedObjectReference,
    kb: i64,
    freed: i64,
) -> Result<(), Fault> {
    let bytes = kb.saturating_mul(1024);
    if inv.free_space(&ds.value).unwrap_or(0).saturating_add(freed) < bytes {
        return Err(crate::fcd::no_space(inv, ds));
    }
    inv.adjust_free_space(&ds.value, freed - bytes);
    Ok(())
}

/// Where a copy or a move goes, and how.
pub(crate) struct Transfer<'a> {
    pub(crate) source: &'a str,
    pub(crate) source_dc: Option<&'a ManagedObjectReference>,
    pub(crate) dest: &'a str,
    pub(crate) dest_dc: Option<&'a ManagedObjectReference>,
    pub(crate) force: bool,
}

/// `CopyVirtualDisk_Task`: any tracked disk (loose, a VM's, a First Class Disk's file) is copied
/// to a new loose disk of the same capacity, taken from the destination datastore; `destSpec`'s
/// disk and adapter types when given. The task's result is the new disk's path.
pub(crate) fn copy(
    inv: &mut Inventory,
    t: &Transfer<'_>,
    spec: Option<&Poly<VirtualDiskSpec>>,
) -> TaskOutcome {
    resolve(inv, t.source, t.source_dc)?;
    let dest_ds = resolve(inv, t.dest, t.dest_dc)?;
    let Some(src) = owner(inv, t.source) else {
        return Err(missing(t.source));
    };
    if t.source == t.dest {
        return Err(invalid_argument(
            "the source and the destination are the same file",
            Some("destName"),
        ));
    }
    let kb = capacity_kb(inv, t.source, &src);
    let (disk_type, adapter_type) = match (spec, inv.disk_files.get(t.source)) {
        (Some(s), _) => (s.disk_type.clone(), s.adapter_type.clone()),
        (None, Some(f)) => (f.disk_type.clone(), f.adapter_type.clone()),
        (None, None) => ("thin".to_owned(), "lsiLogic".to_owned()),
    };
    let freed = destination(inv, t.dest, t.force)?;
    take_space_after(inv, &dest_ds, kb, freed)?;
    inv.disk_files.insert(
        t.dest.to_owned(),
        DiskFile {
            datastore: dest_ds,
            capacity_kb: kb,
            uuid: uuid_for(t.dest),
            disk_type,
            adapter_type,
        },
    );
    Ok(Some(Any::String(t.dest.to_owned())))
}

/// `MoveVirtualDisk_Task`: a loose disk moves (or is renamed), keeping its uuid; its space
/// moves to the destination datastore; the task's result is the new path. A VM's disk or a
/// First Class Disk's file is `FileLocked`.
pub(crate) fn move_disk(inv: &mut Inventory, t: &Transfer<'_>) -> TaskOutcome {
    resolve(inv, t.source, t.source_dc)?;
    let dest_ds = resolve(inv, t.dest, t.dest_dc)?;
    match owner(inv, t.source) {
        None => return Err(missing(t.source)),
        Some(Owner::Vm(vm, _)) => return Err(locked(t.source, &format!("a disk of {vm}"))),
        Some(Owner::Fcd(id)) => {
            return Err(locked(t.source, &format!("First Class Disk {id}")));
        }
        Some(Owner::Loose) => {}
    }
    if t.source == t.dest {
        return Ok(Some(Any::String(t.dest.to_owned())));
    }
    let freed = destination(inv, t.dest, t.force)?;
    let Some(file) = inv.disk_files.get(t.source).cloned() else {
        return Err(missing(t.source));
    };
    // On the same datastore the space only changes hands.
    let back = if file.datastore == dest_ds {
        file.capacity_kb.saturating_mul(1024)
    } else {
        0
    };
    take_space_after(inv, &dest_ds, file.capacity_kb, freed + back)?;
    if back == 0 {
        inv.adjust_free_space(&file.datastore.value, file.capacity_kb.saturating_mul(1024));
    }
    inv.disk_files.remove(t.source);
    inv.disk_files.insert(
        t.dest.to_owned(),
        DiskFile {
            datastore: dest_ds,
            ..file
        },
    );
    Ok(Some(Any::String(t.dest.to_owned())))
}

/// The loose disk `name`, for `InflateVirtualDisk_Task` and `ShrinkVirtualDisk_Task`: a VM's
/// disk or a First Class Disk's file is `FileLocked` (those change through the VM or the disk).
fn loose_mut<'a>(
    inv: &'a mut Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
) -> Result<&'a mut DiskFile, Fault> {
    resolve(inv, name, dc)?;
    match owner(inv, name) {
        None => return Err(missing(name)),
        Some(Owner::Vm(vm, _)) => return Err(locked(name, &format!("a disk of {vm}"))),
        Some(Owner::Fcd(id)) => return Err(locked(name, &format!("First Class Disk {id}"))),
        Some(Owner::Loose) => {}
    }
    inv.disk_files.get_mut(name).ok_or_else(|| missing(name))
}

/// `InflateVirtualDisk_Task`: a thin loose disk becomes `eagerZeroedThick` (its capacity was
/// taken from the datastore when it was made, so the free space does not change).
pub(crate) fn inflate(
    inv: &mut Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
) -> TaskOutcome {
    let f = loose_mut(inv, name, dc)?;
    if f.disk_type == "thin" {
        "eagerZeroedThick".clone_into(&mut f.disk_type);
    }
    Ok(None)
}

/// `ShrinkVirtualDisk_Task`: reclaims a loose disk's unused blocks. Its capacity stays (vCenter
/// never changes a disk's capacity here) and the simulator counts no unused blocks, so only the
/// checks are made: `FileNotFound`, `FileLocked`, the datastore path's faults.
pub(crate) fn shrink(
    inv: &mut Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
) -> TaskOutcome {
    loose_mut(inv, name, dc)?;
    Ok(None)
}

fn vm_disk<'a>(inv: &'a Inventory, vm: &str, key: i32) -> Option<&'a VirtualDisk> {
    inv.data::<VirtualMachineConfigInfo>(vm, "config")?
        .hardware
        .as_ref()?
        .device
        .iter()
        .find(|d| d.key == key)?
        .downcast_ref::<VirtualDisk>()
}

fn vm_disk_mut<'a>(inv: &'a mut Inventory, vm: &str, key: i32) -> Option<&'a mut VirtualDisk> {
    inv.data_mut::<VirtualMachineConfigInfo>(vm, "config")?
        .hardware
        .as_deref_mut()?
        .device
        .iter_mut()
        .find(|d| d.key == key)?
        .as_object_mut()
        .as_any_mut()
        .downcast_mut::<VirtualDisk>()
}

/// `QueryVirtualDiskUuid`: `60 00 C2 9a 4c 8b 5f 66-0e 3c 8a 15 0e 0e 2d 96`.
pub(crate) fn query_uuid(
    inv: &Inventory,
    name: &str,
    dc: Option<&ManagedObjectReference>,
) -> Result<String, Fault> {
    resolve(inv, name, dc)?;
    let uuid = match owner(inv, name) {
        None => return Err(missing(name)),
        Some(Owner::Loose) => inv.disk_files.get(name).map(|f| f.uuid.clone()),
        Some(Owner::Vm(vm, key)) => vm_disk(inv, &vm, key)
            .and_then(|d| d.backing.as_ref())
            .and_then(|b| b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>())
            .and_then(|b| b.uuid.clone()),
        Some(Owner::Fcd(_)) => None,
    }
    .unwrap_or_else(|| uuid_for(name));
    Ok(vmdk_uuid(&uuid))
}

/// A UUID (`6000c29a-4c8b-5f66-0e3c-8a150e0e2d96`) as a VMDK's `ddb.uuid` reads.
fn vmdk_uuid(uuid: &str) -> String {
    let hex: Vec<char> = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    let bytes: Vec<String> = hex.chunks(2).map(|c| c.iter().collect()).collect();
    let half = bytes.len() / 2;
    format!("{}-{}", bytes[..half].join(" "), bytes[half..].join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kb: i64) -> Poly<VirtualDiskSpec> {
        let mut s = FileBackedVirtualDiskSpec::default();
        s.capacity_kb = kb;
        s.disk_type = "thin".into();
        s.adapter_type = "lsiLogic".into();
        Poly::new(s)
    }

    fn fault(r: TaskOutcome) -> &'static str {
        r.unwrap_err().type_name()
    }

    #[test]
    fn create_query_extend_delete_a_loose_disk() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let ds = crate::vm::datastore_by_name(&inv, "LocalDS_0").unwrap();
        let free = inv.free_space(&ds.value).unwrap();
        let name = "[LocalDS_0] disks/a.vmdk";
        let r = create(&mut inv, name, None, &spec(1024)).unwrap();
        assert!(matches!(r, Some(Any::String(p)) if p == name));
        assert_eq!(inv.free_space(&ds.value), Some(free - (1 << 20)));
        assert_eq!(
            fault(create(&mut inv, name, None, &spec(1))),
            "FileAlreadyExists"
        );
        let uuid = query_uuid(&inv, name, None).unwrap();
        assert_eq!(uuid.len(), 47, "{uuid}");
        assert_eq!(uuid.as_bytes()[23], b'-', "{uuid}");
        extend(&mut inv, name, None, 4096).unwrap();
        assert_eq!(inv.disk_files[name].capacity_kb, 4096);
        assert_eq!(inv.free_space(&ds.value), Some(free - (4 << 20)));
        assert_eq!(fault(extend(&mut inv, name, None, 10)), "InvalidArgument");
        delete(&mut inv, name, None).unwrap();
        assert_eq!(inv.free_space(&ds.value), Some(free));
        assert_eq!(fault(delete(&mut inv, name, None)), "FileNotFound");
        assert_eq!(
            query_uuid(&inv, name, None).unwrap_err().type_name(),
            "FileNotFound"
        );
    }

    #[test]
    fn faults_for_paths_datastores_space_and_vm_disks() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        assert_eq!(
            fault(create(&mut inv, "a.vmdk", None, &spec(1))),
            "InvalidDatastorePath"
        );
        assert_eq!(
            fault(create(&mut inv, "[NoSuchDS] a.vmdk", None, &spec(1))),
            "InvalidDatastore"
        );
        assert_eq!(
            fault(create(
                &mut inv,
                "[LocalDS_0] big.vmdk",
                None,
                &spec(1 << 40)
            )),
            "NoDiskSpace"
        );
        assert_eq!(
            fault(create(&mut inv, "[LocalDS_0] z.vmdk", None, &spec(0))),
            "InvalidArgument"
        );
        let dc = ManagedObjectReference::new("Datacenter", "datacenter-404");
        assert_eq!(
            fault(create(&mut inv, "[LocalDS_0] a.vmdk", Some(&dc), &spec(1))),
            "ManagedObjectNotFound"
        );
        // A VM's disk: its uuid is the backing's; locked while the VM runs or at all for delete.
        let vm = inv.first_id("VirtualMachine");
        let disk = crate::vm::device_list(&inv, &vm)
            .unwrap()
            .into_iter()
            .find(|d| d.key == 2000)
            .unwrap();
        let path = crate::vm::disk_file(&disk).0;
        let backing_uuid = uuid_for(&format!("{vm}-disk"));
        assert_eq!(
            query_uuid(&inv, &path, None).unwrap(),
            vmdk_uuid(&backing_uuid)
        );
        assert_eq!(fault(delete(&mut inv, &path, None)), "FileLocked");
        assert_eq!(fault(extend(&mut inv, &path, None, 1 << 21)), "FileLocked");
        crate::vm::power(&mut inv, &vm, crate::vm::PowerOp::Off).unwrap();
        extend(&mut inv, &path, None, 1 << 21).unwrap();
        assert_eq!(vm_disk(&inv, &vm, 2000).unwrap().capacity_in_kb, 1 << 21);
    }

    #[test]
    fn copy_move_inflate_shrink_keep_the_space_right() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let ds = crate::vm::datastore_by_name(&inv, "LocalDS_0").unwrap();
        let shared = crate::vm::datastore_by_name(&inv, "SharedDS_0").unwrap();
        let free =
            |inv: &Inventory, ds: &ManagedObjectReference| inv.free_space(&ds.value).unwrap();
        let (local0, shared0) = (free(&inv, &ds), free(&inv, &shared));
        create(&mut inv, "[LocalDS_0] a.vmdk", None, &spec(1024)).unwrap();
        let t = |source, dest, force| Transfer {
            source,
            source_dc: None,
            dest,
            dest_dc: None,
            force,
        };
        copy(
            &mut inv,
            &t("[LocalDS_0] a.vmdk", "[SharedDS_0] b.vmdk", false),
            None,
        )
        .unwrap();
        assert_eq!(free(&inv, &ds), local0 - (1 << 20));
        assert_eq!(free(&inv, &shared), shared0 - (1 << 20));
        assert_eq!(inv.disk_files["[SharedDS_0] b.vmdk"].disk_type, "thin");
        // The destination exists: FileAlreadyExists, unless force replaces it.
        let again = t("[LocalDS_0] a.vmdk", "[SharedDS_0] b.vmdk", false);
        assert_eq!(fault(copy(&mut inv, &again, None)), "FileAlreadyExists");
        let forced = t("[LocalDS_0] a.vmdk", "[SharedDS_0] b.vmdk", true);
        copy(&mut inv, &forced, None).unwrap();
        assert_eq!(free(&inv, &shared), shared0 - (1 << 20));
        // A move to the other datastore carries the space; a rename on one datastore keeps it.
        move_disk(
            &mut inv,
            &t("[LocalDS_0] a.vmdk", "[SharedDS_0] c.vmdk", false),
        )
        .unwrap();
        assert_eq!(free(&inv, &ds), local0);
        assert_eq!(free(&inv, &shared), shared0 - (2 << 20));
        move_disk(
            &mut inv,
            &t("[SharedDS_0] c.vmdk", "[SharedDS_0] d.vmdk", false),
        )
        .unwrap();
        assert_eq!(free(&inv, &shared), shared0 - (2 << 20));
        assert!(!inv.disk_files.contains_key("[SharedDS_0] c.vmdk"));
        // A VM's disk can be copied but not moved, inflated or shrunk.
        let vm_disk = "[LocalDS_0] DC0_H0_VM0/DC0_H0_VM0.vmdk";
        copy(&mut inv, &t(vm_disk, "[LocalDS_0] e.vmdk", false), None).unwrap();
        assert_eq!(inv.disk_files["[LocalDS_0] e.vmdk"].capacity_kb, 1 << 20);
        assert_eq!(
            fault(move_disk(
                &mut inv,
                &t(vm_disk, "[LocalDS_0] f.vmdk", false)
            )),
            "FileLocked"
        );
        assert_eq!(fault(inflate(&mut inv, vm_disk, None)), "FileLocked");
        assert_eq!(fault(shrink(&mut inv, vm_disk, None)), "FileLocked");
        inflate(&mut inv, "[SharedDS_0] d.vmdk", None).unwrap();
        assert_eq!(
            inv.disk_files["[SharedDS_0] d.vmdk"].disk_type,
            "eagerZeroedThick"
        );
        shrink(&mut inv, "[SharedDS_0] d.vmdk", None).unwrap();
        assert_eq!(inv.disk_files["[SharedDS_0] d.vmdk"].capacity_kb, 1024);
        assert_eq!(
            fault(shrink(&mut inv, "[SharedDS_0] none.vmdk", None)),
            "FileNotFound"
        );
        let missing = t("[LocalDS_0] none.vmdk", "[LocalDS_0] g.vmdk", false);
        assert_eq!(fault(copy(&mut inv, &missing, None)), "FileNotFound");
    }

    #[test]
    fn vmdk_uuids_read_like_vcenter() {
        assert_eq!(
            vmdk_uuid("6000c29a-4c8b-5f66-0e3c-8a150e0e2d96"),
            "60 00 c2 9a 4c 8b 5f 66-0e 3c 8a 15 0e 0e 2d 96"
        );
    }
}
