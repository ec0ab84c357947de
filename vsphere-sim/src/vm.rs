//! Virtual machine operations, as decisions on the inventory: power state changes,
//! reconfiguration (adding and removing disks and NICs with vCenter's device keys and unit
//! numbers), clone, create and destroy, with datastore capacity accounting.
//!
//! Each function checks everything before it changes anything, so a failed operation leaves
//! the VM as it was.

use std::collections::HashMap;

use vsphere_client::codec::{Any, ManagedObjectReference, Obj, Poly};
use vsphere_client::types::{
    DuplicateName, InvalidDeviceSpec, InvalidPowerState, NoDiskSpace, NotSupported,
    ToolsUnavailable, VirtualDevice, VirtualDeviceConfigSpec, VirtualDeviceConfigSpecFileOperation,
    VirtualDeviceConfigSpecOperation, VirtualDisk, VirtualMachineCloneSpec,
    VirtualMachineConfigInfo, VirtualMachineConfigSpec, VirtualMachineConfigSummary,
    VirtualMachinePowerState, VirtualMachineRuntimeInfo, VirtualMachineStorageSummary,
    VirtualMachineSummary, VirtualPCIController,
};

use crate::devices::{self, Class};
use crate::fault::{Fault, invalid_argument};
use crate::inventory::{Inventory, label};
use crate::task::TaskOutcome;

/// A power operation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum PowerOp {
    On,
    Off,
    Reset,
    Suspend,
}

fn state_text(s: &VirtualMachinePowerState) -> &'static str {
    match s {
        VirtualMachinePowerState::PoweredOn => "Powered on",
        VirtualMachinePowerState::Suspended => "Suspended",
        _ => "Powered off",
    }
}

/// The state a power operation leads to, or the `InvalidPowerState` fault vCenter answers.
pub(crate) fn power_transition(
    current: &VirtualMachinePowerState,
    op: PowerOp,
) -> Result<VirtualMachinePowerState, Fault> {
    use VirtualMachinePowerState as S;
    Ok(match (op, current) {
        (PowerOp::On, S::PoweredOff | S::Suspended) | (PowerOp::Reset, S::PoweredOn) => {
            S::PoweredOn
        }
        (PowerOp::Off, S::PoweredOn | S::Suspended) => S::PoweredOff,
        (PowerOp::Suspend, S::PoweredOn) => S::Suspended,
        _ => return Err(invalid_power_state(current, op)),
    })
}

fn invalid_power_state(current: &VirtualMachinePowerState, op: PowerOp) -> Fault {
    let mut f = InvalidPowerState::default();
    f.existing_state = current.clone();
    f.requested_state = Some(match op {
        PowerOp::On | PowerOp::Reset => VirtualMachinePowerState::PoweredOn,
        PowerOp::Off => VirtualMachinePowerState::PoweredOff,
        PowerOp::Suspend => VirtualMachinePowerState::Suspended,
    });
    Fault::new(
        format!(
            "The attempted operation cannot be performed in the current state ({}).",
            state_text(current)
        ),
        f,
    )
}

fn vm_missing(vm: &str) -> Fault {
    crate::fault::not_found(&ManagedObjectReference::new("VirtualMachine", vm))
}

/// The VM's power state.
pub(crate) fn power_state(inv: &Inventory, vm: &str) -> Result<VirtualMachinePowerState, Fault> {
    inv.data::<VirtualMachineRuntimeInfo>(vm, "runtime")
        .map(|r| r.power_state.clone())
        .ok_or_else(|| vm_missing(vm))
}

fn set_power_state(inv: &mut Inventory, vm: &str, state: &VirtualMachinePowerState) {
    let boot = (*state == VirtualMachinePowerState::PoweredOn).then(crate::server::now);
    let apply = |r: &mut VirtualMachineRuntimeInfo| {
        r.power_state = state.clone();
        r.boot_time.clone_from(&boot);
    };
    if let Some(r) = inv.data_mut::<VirtualMachineRuntimeInfo>(vm, "runtime") {
        apply(r);
    }
}

/// PowerOnVM_Task, PowerOffVM_Task, ResetVM_Task, SuspendVM_Task (templates cannot be
/// powered on: `NotSupported`).
pub(crate) fn power(inv: &mut Inventory, vm: &str, op: PowerOp) -> TaskOutcome {
    if is_template(inv, vm) {
        return Err(template_not_supported("power operations"));
    }
    let next = power_transition(&power_state(inv, vm)?, op)?;
    set_power_state(inv, vm, &next);
    Ok(None)
}

/// A guest operation (through VMware Tools).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum GuestOp {
    Shutdown,
    Reboot,
    Standby,
}

/// ShutdownGuest, RebootGuest, StandbyGuest: the VM must be powered on with its tools running
/// (`InvalidPowerState`, `ToolsUnavailable`). The guest acts at once: a shutdown powers the VM
/// off, a reboot boots it again (new `bootTime`), standby suspends it.
pub(crate) fn guest_op(inv: &mut Inventory, vm: &str, op: GuestOp) -> Result<(), Fault> {
    if is_template(inv, vm) {
        return Err(template_not_supported("guest operations"));
    }
    let state = power_state(inv, vm)?;
    if state != VirtualMachinePowerState::PoweredOn {
        return Err(invalid_power_state(&state, PowerOp::On));
    }
    let tools = crate::guest::info(inv, vm).and_then(|g| g.tools_running_status);
    if tools.as_deref() != Some("guestToolsRunning") {
        return Err(Fault::new(
            "Cannot complete operation because VMware Tools is not running in this virtual machine.",
            ToolsUnavailable::default(),
        ));
    }
    let next = match op {
        GuestOp::Shutdown => VirtualMachinePowerState::PoweredOff,
        GuestOp::Reboot => VirtualMachinePowerState::PoweredOn,
        GuestOp::Standby => VirtualMachinePowerState::Suspended,
    };
    set_power_state(inv, vm, &next);
    Ok(())
}

/// Whether the VM is a template (`config.template`).
pub(crate) fn is_template(inv: &Inventory, vm: &str) -> bool {
    inv.data::<VirtualMachineConfigInfo>(vm, "config")
        .is_some_and(|c| c.template)
}

fn template_not_supported(what: &str) -> Fault {
    Fault::new(
        format!("The operation is not supported on the object: {what} on a template."),
        NotSupported::default(),
    )
}

fn set_template(inv: &mut Inventory, vm: &str, template: bool) {
    if let Some(c) = inv.data_mut::<VirtualMachineConfigInfo>(vm, "config") {
        c.template = template;
    }
}

/// MarkAsTemplate: a powered-off VM becomes a template and leaves its resource pool
/// (`NotSupported` when it already is one, `InvalidPowerState` unless powered off).
pub(crate) fn mark_as_template(inv: &mut Inventory, vm: &str) -> Result<(), Fault> {
    if is_template(inv, vm) {
        return Err(template_not_supported("MarkAsTemplate"));
    }
    let state = power_state(inv, vm)?;
    if state != VirtualMachinePowerState::PoweredOff {
        return Err(invalid_power_state(&state, PowerOp::Off));
    }
    if let Some(p) = inv.refs_of(vm, "resourcePool").first() {
        inv.remove_ref(&p.value, "vm", vm);
    }
    if let Some(o) = inv.get_mut(vm) {
        o.props.retain(|(n, _)| *n != "resourcePool");
    }
    set_template(inv, vm, true);
    Ok(())
}

/// MarkAsVirtualMachine: a template becomes a VM again, in `pool` (on `host` when given).
pub(crate) fn mark_as_virtual_machine(
    inv: &mut Inventory,
    vm: &str,
    pool: &ManagedObjectReference,
    host: Option<&ManagedObjectReference>,
) -> Result<(), Fault> {
    if !is_template(inv, vm) {
        return Err(Fault::new(
            "The operation is not supported on the object: the VM is not a template.",
            NotSupported::default(),
        ));
    }
    if inv.resolve(pool).is_none() {
        return Err(crate::fault::not_found(pool));
    }
    if let Some(h) = host {
        if inv.resolve(h).is_none() {
            return Err(crate::fault::not_found(h));
        }
        let old = inv
            .data::<VirtualMachineRuntimeInfo>(vm, "runtime")
            .and_then(|r| r.host.clone());
        if let Some(old) = old {
            inv.remove_ref(&old.value, "vm", vm);
        }
        inv.push_ref(
            &h.value,
            "vm",
            ManagedObjectReference::new("VirtualMachine", vm),
        );
        if let Some(r) = inv.data_mut::<VirtualMachineRuntimeInfo>(vm, "runtime") {
            r.host = Some(h.clone());
        }
    }
    inv.push_ref(
        &pool.value,
        "vm",
        ManagedObjectReference::new("VirtualMachine", vm),
    );
    if let Some(o) = inv.get_mut(vm) {
        o.set("resourcePool", Any::MoRef(pool.clone()));
    }
    set_template(inv, vm, false);
    Ok(())
}

fn config<'a>(inv: &'a Inventory, vm: &str) -> Result<&'a VirtualMachineConfigInfo, Fault> {
    inv.data::<VirtualMachineConfigInfo>(vm, "config")
        .ok_or_else(|| vm_missing(vm))
}

/// The VM's devices.
pub(crate) fn device_list(inv: &Inventory, vm: &str) -> Result<Vec<Poly<VirtualDevice>>, Fault> {
    Ok(config(inv, vm)?
        .hardware
        .as_ref()
        .map(|h| h.device.clone())
        .unwrap_or_default())
}

/// A disk's backing file and datastore.
pub(crate) fn disk_file(d: &Poly<VirtualDevice>) -> (String, Option<ManagedObjectReference>) {
    match &d.backing {
        Some(b) => (
            devices::get_one::<String>(b.as_object(), "fileName").unwrap_or_default(),
            devices::get_opt::<ManagedObjectReference>(b.as_object(), "datastore"),
        ),
        None => (String::new(), None),
    }
}

/// Points a file-backed device at `file` on `ds`.
fn set_backing_file(d: &mut Poly<VirtualDevice>, file: String, ds: &ManagedObjectReference) {
    if let Some(mut b) = d.backing.clone() {
        devices::set_one(b.as_object_mut(), "fileName", file);
        devices::set_opt(b.as_object_mut(), "datastore", Some(ds.clone()));
        devices::set_opt(d.as_object_mut(), "backing", Some(b));
    }
}

/// A disk's capacity in bytes.
pub(crate) fn disk_bytes(d: &Poly<VirtualDevice>) -> i64 {
    d.downcast_ref::<VirtualDisk>().map_or(0, |disk| {
        disk.capacity_in_bytes
            .unwrap_or(disk.capacity_in_kb.saturating_mul(1024))
    })
}

/// The First Class Disk id a disk is backed by.
pub(crate) fn fcd_id(d: &Poly<VirtualDevice>) -> Option<String> {
    d.downcast_ref::<VirtualDisk>()
        .and_then(|disk| disk.v_disk_id.as_ref())
        .map(|id| id.id.clone())
}

pub(crate) fn datastore_by_name(inv: &Inventory, name: &str) -> Option<ManagedObjectReference> {
    inv.of_type("Datastore")
        .find(|o| o.prop("name").and_then(Any::as_str) == Some(name))
        .map(|o| o.moref.clone())
}

/// `[LocalDS_0] a/b.vmdk` -> `LocalDS_0`.
pub(crate) fn datastore_of_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('[')?;
    rest.split_once(']').map(|(n, _)| n)
}

fn invalid_device(index: usize, message: &str) -> Fault {
    let mut f = InvalidDeviceSpec::default();
    f.device_index = i32::try_from(index).unwrap_or(i32::MAX);
    Fault::new(message.to_owned(), f)
}

/// The next key not in use, from `base`.
fn next_key(devs: &[Poly<VirtualDevice>], base: i32) -> i32 {
    let mut k = base;
    while devs.iter().any(|d| d.key == k) {
        k += 1;
    }
    k
}

/// A device list being edited, with the bookkeeping a reconfiguration needs.
pub(crate) struct Plan<'a> {
    vm_name: String,
    default_ds: Option<ManagedObjectReference>,
    pub(crate) devs: Vec<Poly<VirtualDevice>>,
    keys: HashMap<i32, i32>,
    /// Free-space changes by datastore id (negative: consumed).
    space: Vec<(String, i64)>,
    /// First Class Disks to delete with their files.
    fcd_deletes: Vec<String>,
    inv: &'a Inventory,
}

impl<'a> Plan<'a> {
    pub(crate) fn new(inv: &'a Inventory, vm: &str) -> Result<Self, Fault> {
        Ok(Self {
            vm_name: inv.name_of(vm).unwrap_or(vm).to_owned(),
            default_ds: inv.refs_of(vm, "datastore").into_iter().next(),
            devs: device_list(inv, vm)?,
            keys: HashMap::new(),
            space: Vec::new(),
            fcd_deletes: Vec::new(),
            inv,
        })
    }

    fn controller(&self, key: i32) -> Option<&Poly<VirtualDevice>> {
        self.devs
            .iter()
            .find(|d| d.key == key && devices::class(d) == Class::Controller)
    }

    fn link(&mut self, controller: i32, child: i32, add: bool) {
        if let Some(c) = self.devs.iter_mut().find(|d| d.key == controller) {
            let mut kids = devices::children(c);
            kids.retain(|k| *k != child);
            if add {
                kids.push(child);
            }
            devices::set_many(c.as_object_mut(), "device", kids);
        }
    }

    fn free_unit(&self, controller: i32, scsi: bool) -> Option<i32> {
        (0..if scsi { 16 } else { 32 })
            .filter(|u| !(scsi && *u == 7))
            .find(|u| {
                !self
                    .devs
                    .iter()
                    .any(|d| d.controller_key == Some(controller) && d.unit_number == Some(*u))
            })
    }

    /// Adds a device, numbering it like vCenter.
    pub(crate) fn add(
        &mut self,
        index: usize,
        dev: &Poly<VirtualDevice>,
        file_op: Option<&VirtualDeviceConfigSpecFileOperation>,
    ) -> Result<i32, Fault> {
        let mut d = dev.clone();
        let class = devices::class(&d);
        let old = d.key;
        let key = if old <= 0 || self.devs.iter().any(|x| x.key == old) {
            next_key(&self.devs, devices::key_base(class, &d))
        } else {
            old
        };
        self.keys.insert(old, key);
        devices::set_one(d.as_object_mut(), "key", key);
        let controller = d
            .controller_key
            .map(|k| self.keys.get(&k).copied().unwrap_or(k))
            .or_else(|| match class {
                Class::Disk => self
                    .devs
                    .iter()
                    .find(|c| devices::is_scsi(c))
                    .map(|c| c.key),
                Class::Nic => self.controller(100).map(|c| c.key),
                _ => None,
            });
        if class == Class::Disk && controller.is_none() {
            return Err(invalid_device(
                index,
                "the VM has no SCSI controller for the disk",
            ));
        }
        if let Some(ck) = controller {
            let Some(c) = self.controller(ck) else {
                return Err(invalid_device(
                    index,
                    &format!("controller {ck} does not exist"),
                ));
            };
            let scsi = devices::is_scsi(c);
            let unit = match d.unit_number {
                Some(u) => {
                    let taken = self
                        .devs
                        .iter()
                        .any(|x| x.controller_key == Some(ck) && x.unit_number == Some(u));
                    if taken || (scsi && u == 7) {
                        return Err(invalid_device(
                            index,
                            &format!("unit number {u} on controller {ck} is in use"),
                        ));
                    }
                    u
                }
                None => self
                    .free_unit(ck, scsi)
                    .ok_or_else(|| invalid_device(index, "the controller has no free unit"))?,
            };
            devices::set_opt(d.as_object_mut(), "controllerKey", Some(ck));
            devices::set_opt(d.as_object_mut(), "unitNumber", Some(unit));
            self.link(ck, key, true);
        }
        let count = self
            .devs
            .iter()
            .filter(|x| devices::class(x) == class)
            .count()
            + 1;
        match class {
            Class::Disk => self.add_disk(index, &mut d, file_op, count)?,
            Class::Nic => {
                if devices::get_opt::<String>(d.as_object(), "macAddress").is_none() {
                    let h = crate::inventory::uuid_for(&format!("{}-{key}", self.vm_name));
                    let mac = format!("00:50:56:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6]);
                    devices::set_opt(d.as_object_mut(), "macAddress", Some(mac));
                    devices::set_opt(
                        d.as_object_mut(),
                        "addressType",
                        Some("generated".to_owned()),
                    );
                }
                if d.device_info.is_none() {
                    let l = label(&format!("Network adapter {count}"), "VM Network");
                    devices::set_opt(
                        d.as_object_mut(),
                        "deviceInfo",
                        Some(Poly::<vsphere_client::types::Description>::new(l)),
                    );
                }
            }
            _ => {}
        }
        self.devs.push(d);
        Ok(key)
    }

    fn add_disk(
        &mut self,
        index: usize,
        d: &mut Poly<VirtualDevice>,
        file_op: Option<&VirtualDeviceConfigSpecFileOperation>,
        count: usize,
    ) -> Result<(), Fault> {
        let bytes = disk_bytes(d);
        let (mut file, ds) = disk_file(d);
        let ds = ds
            .or_else(|| datastore_of_path(&file).and_then(|n| datastore_by_name(self.inv, n)))
            .or_else(|| self.default_ds.clone())
            .ok_or_else(|| invalid_device(index, "no datastore for the disk"))?;
        let creating = matches!(file_op, Some(VirtualDeviceConfigSpecFileOperation::Create));
        if creating {
            if bytes <= 0 {
                return Err(invalid_device(index, "a new disk needs a capacity"));
            }
            let ds_name = self.inv.name_of(&ds.value).unwrap_or_default().to_owned();
            if file.is_empty() || file.ends_with(']') || file.ends_with("] ") {
                let suffix = if count > 1 {
                    format!("_{}", count - 1)
                } else {
                    String::new()
                };
                file = format!("[{ds_name}] {0}/{0}{suffix}.vmdk", self.vm_name);
            }
            self.space.push((ds.value.clone(), -bytes));
        }
        set_backing_file(d, file, &ds);
        if let Some(disk) = d.as_object_mut().as_any_mut().downcast_mut::<VirtualDisk>() {
            disk.capacity_in_bytes = Some(bytes);
            disk.capacity_in_kb = bytes / 1024;
            if disk.device_info.is_none() {
                disk.device_info = Some(Poly::new(label(
                    &format!("Hard disk {count}"),
                    &format!("{} KB", bytes / 1024),
                )));
            }
        }
        Ok(())
    }

    /// Removes a device by key.
    pub(crate) fn remove(
        &mut self,
        index: usize,
        key: i32,
        file_op: Option<&VirtualDeviceConfigSpecFileOperation>,
    ) -> Result<Poly<VirtualDevice>, Fault> {
        let Some(pos) = self.devs.iter().position(|d| d.key == key) else {
            return Err(invalid_device(index, &format!("no device with key {key}")));
        };
        let d = self.devs.remove(pos);
        if let Some(ck) = d.controller_key {
            self.link(ck, key, false);
        }
        if devices::class(&d) == Class::Disk
            && matches!(file_op, Some(VirtualDeviceConfigSpecFileOperation::Destroy))
        {
            match fcd_id(&d) {
                Some(id) => self.fcd_deletes.push(id),
                None => {
                    if let (_, Some(ds)) = disk_file(&d) {
                        self.space.push((ds.value, disk_bytes(&d)));
                    }
                }
            }
        }
        Ok(d)
    }

    /// Replaces a device (same key); a disk may grow, taking space from its datastore.
    fn edit(&mut self, index: usize, dev: &Poly<VirtualDevice>) -> Result<(), Fault> {
        let Some(pos) = self.devs.iter().position(|d| d.key == dev.key) else {
            return Err(invalid_device(
                index,
                &format!("no device with key {}", dev.key),
            ));
        };
        let old = &self.devs[pos];
        let mut d = dev.clone();
        if d.controller_key.is_none() {
            devices::set_opt(d.as_object_mut(), "controllerKey", old.controller_key);
        }
        if d.unit_number.is_none() {
            devices::set_opt(d.as_object_mut(), "unitNumber", old.unit_number);
        }
        if devices::class(&d) == Class::Disk {
            let (before, after) = (disk_bytes(old), disk_bytes(&d));
            if after < before {
                return Err(invalid_device(index, "a disk cannot shrink"));
            }
            if d.backing.is_none() {
                devices::set_opt(d.as_object_mut(), "backing", old.backing.clone());
            }
            if let Some(disk) = d.as_object_mut().as_any_mut().downcast_mut::<VirtualDisk>() {
                disk.capacity_in_bytes = Some(after);
                disk.capacity_in_kb = after / 1024;
            }
            if after > before
                && let (_, Some(ds)) = disk_file(&d)
            {
                self.space.push((ds.value, before - after));
            }
        }
        self.devs[pos] = d;
        Ok(())
    }

    /// Applies a spec's device changes in order.
    pub(crate) fn apply(&mut self, changes: &[Poly<VirtualDeviceConfigSpec>]) -> Result<(), Fault> {
        for (i, c) in changes.iter().enumerate() {
            let Some(dev) = &c.device else {
                return Err(invalid_device(i, "a device change without a device"));
            };
            match c.operation.as_ref() {
                Some(VirtualDeviceConfigSpecOperation::Add) => {
                    self.add(i, dev, c.file_operation.as_ref())?;
                }
                Some(VirtualDeviceConfigSpecOperation::Remove) => {
                    self.remove(i, dev.key, c.file_operation.as_ref())?;
                }
                Some(VirtualDeviceConfigSpecOperation::Edit) => self.edit(i, dev)?,
                _ => return Err(invalid_device(i, "a device change needs an operation")),
            }
        }
        Ok(())
    }

    /// Checks that every datastore has the space the plan takes.
    fn check_space(&self) -> Result<(), Fault> {
        let mut by_ds: HashMap<&str, i64> = HashMap::new();
        for (ds, delta) in &self.space {
            *by_ds.entry(ds).or_default() += delta;
        }
        for (ds, delta) in by_ds {
            let free = self.inv.free_space(ds).unwrap_or(0);
            if delta < 0 && free < -delta {
                let name = self.inv.name_of(ds).unwrap_or(ds).to_owned();
                let mut f = NoDiskSpace::default();
                f.datastore.clone_from(&name);
                f.file = format!("[{name}]");
                return Err(Fault::new(
                    format!("There is not enough space on the file system ({name})."),
                    f,
                ));
            }
        }
        Ok(())
    }

    /// The plan's outcome, to commit.
    pub(crate) fn finish(self) -> Result<Committed, Fault> {
        self.check_space()?;
        Ok(Committed {
            devs: self.devs,
            space: self.space,
            fcd_deletes: self.fcd_deletes,
        })
    }
}

/// A checked plan, ready to write into the inventory.
pub(crate) struct Committed {
    devs: Vec<Poly<VirtualDevice>>,
    space: Vec<(String, i64)>,
    fcd_deletes: Vec<String>,
}

impl Committed {
    /// Writes the devices and the capacity changes.
    pub(crate) fn commit(self, inv: &mut Inventory, vm: &str) {
        for (ds, delta) in self.space {
            inv.adjust_free_space(&ds, delta);
        }
        for id in self.fcd_deletes {
            crate::fcd::delete_unchecked(inv, &id);
        }
        set_devices(inv, vm, self.devs);
    }
}

/// Writes a VM's device list and its change version (the summary's counts and committed
/// storage derive from it, see [`summary`]).
pub(crate) fn set_devices(inv: &mut Inventory, vm: &str, devs: Vec<Poly<VirtualDevice>>) {
    if let Some(c) = inv.data_mut::<VirtualMachineConfigInfo>(vm, "config") {
        if let Some(h) = c.hardware.as_deref_mut() {
            h.device = devs;
        }
        let v: u64 = c.change_version.parse().unwrap_or(0);
        c.change_version = (v + 1).to_string();
        c.modified = crate::server::now();
    }
}

/// A VM's `summary`, derived from its stored `config`, `runtime` and guest identity, as
/// vCenter fills it.
pub(crate) fn summary(inv: &Inventory, vm: &str) -> Option<VirtualMachineSummary> {
    let config = inv.data::<VirtualMachineConfigInfo>(vm, "config")?;
    let runtime = inv.data::<VirtualMachineRuntimeInfo>(vm, "runtime")?;
    let devs: &[Poly<VirtualDevice>] = config.hardware.as_ref().map_or(&[], |h| &h.device);
    let count =
        |c: Class| i32::try_from(devs.iter().filter(|d| devices::class(d) == c).count()).ok();
    let mut sc = VirtualMachineConfigSummary::default();
    sc.name.clone_from(&config.name);
    sc.template = config.template;
    sc.vm_path_name = config
        .files
        .as_ref()
        .and_then(|f| f.vm_path_name.clone())
        .unwrap_or_default();
    if let Some(h) = config.hardware.as_ref() {
        sc.memory_size_mb = Some(h.memory_mb);
        sc.num_cpu = Some(h.num_cpu);
    }
    sc.num_ethernet_cards = count(Class::Nic);
    sc.num_virtual_disks = count(Class::Disk);
    sc.uuid = Some(config.uuid.clone());
    sc.instance_uuid.clone_from(&config.instance_uuid);
    sc.guest_id = Some(config.guest_id.clone());
    sc.guest_full_name = Some(config.guest_full_name.clone());
    sc.annotation.clone_from(&config.annotation);
    let mut storage = VirtualMachineStorageSummary::default();
    storage.committed = devs.iter().map(disk_bytes).sum();
    storage.timestamp = vsphere_client::codec::DateTime::from_unix(0, 0);
    let mut s = VirtualMachineSummary::default();
    s.vm = Some(ManagedObjectReference::new("VirtualMachine", vm));
    s.runtime = Some(Obj::new(runtime.clone()));
    s.config = Some(Obj::new(sc));
    s.storage = Some(Obj::new(storage));
    s.guest = crate::guest::info(inv, vm).map(|g| Obj::new(crate::guest::summary(&g)));
    s.overall_status = vsphere_client::types::ManagedEntityStatus::Green;
    Some(s)
}

fn rename(inv: &mut Inventory, vm: &str, name: &str) {
    if let Some(o) = inv.get_mut(vm) {
        o.set("name", Any::String(name.to_owned()));
    }
    if let Some(c) = inv.data_mut::<VirtualMachineConfigInfo>(vm, "config") {
        c.name = name.to_owned();
    }
}

fn set_cpu_memory(inv: &mut Inventory, vm: &str, cpus: Option<i32>, memory_mb: Option<i64>) {
    if let Some(c) = inv.data_mut::<VirtualMachineConfigInfo>(vm, "config")
        && let Some(h) = c.hardware.as_deref_mut()
    {
        if let Some(n) = cpus {
            h.num_cpu = n;
        }
        if let Some(m) = memory_mb {
            h.memory_mb = i32::try_from(m).unwrap_or(i32::MAX);
        }
    }
}

/// ReconfigVM_Task.
pub(crate) fn reconfigure(
    inv: &mut Inventory,
    vm: &str,
    spec: &VirtualMachineConfigSpec,
) -> TaskOutcome {
    if let Some(n) = spec.num_cp_us
        && n < 1
    {
        return Err(invalid_argument(
            "numCPUs must be at least 1",
            Some("numCPUs"),
        ));
    }
    if let Some(m) = spec.memory_mb
        && m < 4
    {
        return Err(invalid_argument(
            "memoryMB must be at least 4",
            Some("memoryMB"),
        ));
    }
    let mut plan = Plan::new(inv, vm)?;
    plan.apply(&spec.device_change)?;
    let committed = plan.finish()?;
    committed.commit(inv, vm);
    if let Some(name) = &spec.name {
        rename(inv, vm, name);
    }
    set_cpu_memory(inv, vm, spec.num_cp_us, spec.memory_mb);
    if let Some(a) = &spec.annotation
        && let Some(c) = inv.data_mut::<VirtualMachineConfigInfo>(vm, "config")
    {
        // vCenter keeps an empty annotation as unset.
        c.annotation = Some(a.clone()).filter(|a| !a.is_empty());
    }
    if !spec.extra_config.is_empty()
        && let Some(c) = inv.data_mut::<VirtualMachineConfigInfo>(vm, "config")
    {
        crate::guest::apply_extra_config(c, &spec.extra_config);
    }
    Ok(None)
}

/// Destroy_Task on a VM: it must be powered off; its disks' space is freed (First Class Disks
/// are kept when `keepAfterDeleteVm` says so, else deleted).
pub(crate) fn destroy(inv: &mut Inventory, vm: &str) -> TaskOutcome {
    let state = power_state(inv, vm)?;
    if state != VirtualMachinePowerState::PoweredOff {
        return Err(invalid_power_state(&state, PowerOp::Off));
    }
    for d in device_list(inv, vm)? {
        if devices::class(&d) != Class::Disk {
            continue;
        }
        match fcd_id(&d) {
            Some(id) => {
                if !inv.fcds.get(&id).is_some_and(|f| f.keep_after_delete_vm) {
                    crate::fcd::delete_unchecked(inv, &id);
                }
            }
            None => {
                if let (_, Some(ds)) = disk_file(&d) {
                    inv.adjust_free_space(&ds.value, disk_bytes(&d));
                }
            }
        }
    }
    unlink(inv, vm);
    inv.remove(vm);
    Ok(None)
}

fn unlink(inv: &mut Inventory, vm: &str) {
    if let Some(p) = inv.refs_of(vm, "parent").first() {
        inv.remove_ref(&p.value, "childEntity", vm);
    }
    if let Some(p) = inv.refs_of(vm, "resourcePool").first() {
        inv.remove_ref(&p.value, "vm", vm);
    }
    if let Some(h) = inv
        .data::<VirtualMachineRuntimeInfo>(vm, "runtime")
        .and_then(|r| r.host.clone())
    {
        inv.remove_ref(&h.value, "vm", vm);
    }
    for ds in inv.refs_of(vm, "datastore") {
        inv.remove_ref(&ds.value, "vm", vm);
    }
    for n in inv.refs_of(vm, "network") {
        inv.remove_ref(&n.value, "vm", vm);
    }
}

fn check_name_free(
    inv: &Inventory,
    folder: &ManagedObjectReference,
    name: &str,
) -> Result<(), Fault> {
    if let Some(existing) = inv
        .refs_of(&folder.value, "childEntity")
        .into_iter()
        .find(|r| inv.name_of(&r.value) == Some(name))
    {
        let mut f = DuplicateName::default();
        f.name = name.to_owned();
        f.object = existing;
        return Err(Fault::new(format!("The name '{name}' already exists."), f));
    }
    Ok(())
}

/// Empties a freshly added VM of its default disk and NIC (giving the disk's space back),
/// keeping the PCI controller.
fn strip_to_bare(inv: &mut Inventory, vm: &ManagedObjectReference) -> Result<(), Fault> {
    let devs = device_list(inv, &vm.value)?;
    for d in &devs {
        if let (Class::Disk, (_, Some(ds))) = (devices::class(d), disk_file(d)) {
            inv.adjust_free_space(&ds.value, disk_bytes(d));
        }
    }
    let mut pci = VirtualPCIController::default();
    pci.key = 100;
    pci.device_info = Some(Poly::new(label("PCI controller 0", "PCI controller 0")));
    set_devices(inv, &vm.value, vec![Poly::<VirtualDevice>::new(pci)]);
    Ok(())
}

/// CloneVM_Task: a copy of the VM (its disks copied to new files, First Class Disks becoming
/// ordinary disks of the clone), powered on when the spec says so.
pub(crate) fn clone(
    inv: &mut Inventory,
    src: &str,
    folder: &ManagedObjectReference,
    name: &str,
    spec: &VirtualMachineCloneSpec,
) -> TaskOutcome {
    let runtime = inv
        .data::<VirtualMachineRuntimeInfo>(src, "runtime")
        .ok_or_else(|| vm_missing(src))?;
    let loc = spec.location.as_deref();
    let host = loc
        .and_then(|l| l.host.clone())
        .or_else(|| runtime.host.clone())
        .ok_or_else(|| invalid_argument("the source VM has no host", Some("host")))?;
    // A template has no pool: the clone goes to its host's compute resource's root pool.
    let pool = loc
        .and_then(|l| l.pool.clone())
        .or_else(|| inv.refs_of(src, "resourcePool").into_iter().next())
        .or_else(|| {
            let cr = inv.refs_of(&host.value, "parent").into_iter().next()?;
            inv.refs_of(&cr.value, "resourcePool").into_iter().next()
        })
        .ok_or_else(|| invalid_argument("no resource pool", Some("pool")))?;
    if spec.template && spec.power_on {
        return Err(invalid_argument(
            "a clone marked as template cannot be powered on",
            Some("powerOn"),
        ));
    }
    let ds = loc
        .and_then(|l| l.datastore.clone())
        .or_else(|| inv.refs_of(src, "datastore").into_iter().next())
        .ok_or_else(|| invalid_argument("no datastore", Some("datastore")))?;
    let network = inv
        .refs_of(src, "network")
        .into_iter()
        .next()
        .or_else(|| inv.refs_of(&host.value, "network").into_iter().next())
        .ok_or_else(|| invalid_argument("no network", Some("network")))?;
    if inv.resolve(folder).is_none() {
        return Err(crate::fault::not_found(folder));
    }
    check_name_free(inv, folder, name)?;
    let src_devs = device_list(inv, src)?;
    let src_config = config(inv, src)?;
    let (cpus, mem) = src_config
        .hardware
        .as_ref()
        .map_or((1, 32), |h| (h.num_cpu, h.memory_mb));
    // The source's extraConfig, without vcsim's `SET.` guest overrides (a clone gets its own
    // identity).
    let extra: Vec<_> = src_config
        .extra_config
        .iter()
        .filter(|o| !o.key.starts_with("SET."))
        .cloned()
        .collect();
    let guest_id = src_config.guest_id.clone();
    let guest_full_name = src_config.guest_full_name.clone();
    // The copies' space, checked before anything is created.
    let need: i64 = src_devs
        .iter()
        .filter(|d| devices::class(d) == Class::Disk)
        .map(disk_bytes)
        .sum();
    if inv.free_space(&ds.value).unwrap_or(0) < need + (1 << 30) {
        let name = inv.name_of(&ds.value).unwrap_or_default().to_owned();
        let mut f = NoDiskSpace::default();
        f.datastore.clone_from(&name);
        f.file = format!("[{name}]");
        return Err(Fault::new(
            format!("There is not enough space on the file system ({name})."),
            f,
        ));
    }
    let vm = inv.add_vm(name, folder, &host, &pool, &ds, &network);
    strip_to_bare(inv, &vm)?;
    let ds_name = inv.name_of(&ds.value).unwrap_or_default().to_owned();
    let mut devs = Vec::new();
    let mut n = 0;
    for d in src_devs {
        let mut d = d.clone();
        if devices::class(&d) == Class::Disk {
            let suffix = if n > 0 {
                format!("_{n}")
            } else {
                String::new()
            };
            n += 1;
            let file = format!("[{ds_name}] {name}/{name}{suffix}.vmdk");
            set_backing_file(&mut d, file, &ds);
            if let Some(disk) = d.as_object_mut().as_any_mut().downcast_mut::<VirtualDisk>() {
                disk.v_disk_id = None;
            }
            inv.adjust_free_space(&ds.value, -disk_bytes(&d));
        }
        devs.push(d);
    }
    set_devices(inv, &vm.value, devs);
    set_cpu_memory(inv, &vm.value, Some(cpus), Some(i64::from(mem)));
    if let Some(c) = inv.data_mut::<VirtualMachineConfigInfo>(&vm.value, "config") {
        c.extra_config = extra;
        c.guest_id = guest_id;
        c.guest_full_name = guest_full_name;
    }
    if spec.template {
        if let Some(o) = inv.get_mut(&vm.value) {
            o.props.retain(|(n, _)| *n != "resourcePool");
        }
        inv.remove_ref(&pool.value, "vm", &vm.value);
        set_template(inv, &vm.value, true);
    }
    let state = if spec.power_on {
        VirtualMachinePowerState::PoweredOn
    } else {
        VirtualMachinePowerState::PoweredOff
    };
    set_power_state(inv, &vm.value, &state);
    if let Some(c) = &spec.config
        && let Err(e) = reconfigure(inv, &vm.value, c)
    {
        let _ = destroy_any_state(inv, &vm.value);
        return Err(e);
    }
    Ok(Some(Any::MoRef(vm)))
}

fn destroy_any_state(inv: &mut Inventory, vm: &str) -> TaskOutcome {
    set_power_state(inv, vm, &VirtualMachinePowerState::PoweredOff);
    destroy(inv, vm)
}

/// CreateVM_Task on a folder: a powered-off VM from a config spec (name, CPUs, memory,
/// `files.vmPathName` naming the datastore, device changes).
pub(crate) fn create(
    inv: &mut Inventory,
    folder: &ManagedObjectReference,
    spec: &VirtualMachineConfigSpec,
    pool: &ManagedObjectReference,
    host: Option<&ManagedObjectReference>,
) -> TaskOutcome {
    let Some(name) = spec.name.clone().filter(|n| !n.is_empty()) else {
        return Err(invalid_argument(
            "the config spec has no name",
            Some("name"),
        ));
    };
    if inv.resolve(pool).is_none() {
        return Err(crate::fault::not_found(pool));
    }
    check_name_free(inv, folder, &name)?;
    let owner = inv.refs_of(&pool.value, "owner").into_iter().next();
    let host = match host {
        Some(h) => h.clone(),
        None => owner
            .as_ref()
            .and_then(|o| inv.refs_of(&o.value, "host").into_iter().next())
            .ok_or_else(|| invalid_argument("the pool has no host", Some("host")))?,
    };
    let path = spec
        .files
        .as_ref()
        .and_then(|f| f.vm_path_name.clone())
        .unwrap_or_default();
    let ds = datastore_of_path(&path)
        .and_then(|n| datastore_by_name(inv, n))
        .or_else(|| inv.refs_of(&host.value, "datastore").into_iter().next())
        .ok_or_else(|| invalid_argument("no datastore for the VM's files", Some("files")))?;
    let network = inv
        .refs_of(&host.value, "network")
        .into_iter()
        .next()
        .ok_or_else(|| invalid_argument("the host has no network", Some("host")))?;
    let vm = inv.add_vm(&name, folder, &host, pool, &ds, &network);
    strip_to_bare(inv, &vm)?;
    set_power_state(inv, &vm.value, &VirtualMachinePowerState::PoweredOff);
    let mut devices_only = VirtualMachineConfigSpec::default();
    devices_only.device_change = spec.device_change.clone();
    devices_only.num_cp_us = spec.num_cp_us;
    devices_only.memory_mb = spec.memory_mb;
    devices_only.annotation.clone_from(&spec.annotation);
    if let Err(e) = reconfigure(inv, &vm.value, &devices_only) {
        let _ = destroy(inv, &vm.value);
        return Err(e);
    }
    Ok(Some(Any::MoRef(vm)))
}

/// A VirtualDisk device for a First Class Disk (`vDiskId` and the FCD's file), for AttachDisk.
pub(crate) fn fcd_disk(
    id: &str,
    path: &str,
    ds: &ManagedObjectReference,
    capacity_mb: i64,
) -> Poly<VirtualDevice> {
    let mut file = vsphere_client::types::VirtualDeviceFileBackingInfo::default();
    file.file_name = path.to_owned();
    file.datastore = Some(ds.clone());
    let mut backing = vsphere_client::types::VirtualDiskFlatVer2BackingInfo::default();
    backing.virtual_device_file_backing_info = file;
    backing.disk_mode = "persistent".to_owned();
    backing.thin_provisioned = Some(true);
    let mut disk = VirtualDisk::default();
    disk.key = -1;
    disk.backing = Some(Poly::new(backing));
    disk.capacity_in_kb = capacity_mb * 1024;
    disk.capacity_in_bytes = Some(capacity_mb << 20);
    let mut vid = vsphere_client::types::ID::default();
    vid.id = id.to_owned();
    disk.v_disk_id = Some(Obj::new(vid));
    Poly::new(disk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::types::{
        VirtualDeviceFileBackingInfo, VirtualDiskFlatVer2BackingInfo, VirtualE1000,
    };

    fn setup() -> (Inventory, String) {
        let inv = Inventory::build(&crate::InventoryShape::default());
        let vm = inv.first_id("VirtualMachine");
        (inv, vm)
    }

    fn new_disk(kb: i64) -> VirtualDeviceConfigSpec {
        let mut b = VirtualDiskFlatVer2BackingInfo::default();
        b.virtual_device_file_backing_info = VirtualDeviceFileBackingInfo::default();
        b.disk_mode = "persistent".into();
        let mut d = VirtualDisk::default();
        d.key = -42;
        d.capacity_in_kb = kb;
        d.backing = Some(Poly::new(b));
        let mut c = VirtualDeviceConfigSpec::default();
        c.operation = Some(VirtualDeviceConfigSpecOperation::Add);
        c.file_operation = Some(VirtualDeviceConfigSpecFileOperation::Create);
        c.device = Some(Poly::new(d));
        c
    }

    #[test]
    fn power_transitions_follow_vcenter() {
        use VirtualMachinePowerState as S;
        assert_eq!(
            power_transition(&S::PoweredOff, PowerOp::On).unwrap(),
            S::PoweredOn
        );
        assert_eq!(
            power_transition(&S::Suspended, PowerOp::Off).unwrap(),
            S::PoweredOff
        );
        let e = power_transition(&S::PoweredOn, PowerOp::On).unwrap_err();
        assert_eq!(e.type_name(), "InvalidPowerState");
        assert!(power_transition(&S::PoweredOff, PowerOp::Suspend).is_err());
        assert!(power_transition(&S::PoweredOff, PowerOp::Reset).is_err());
    }

    #[test]
    fn the_annotation_is_set_read_back_and_cleared() {
        let (mut inv, vm) = setup();
        let annotation = |inv: &Inventory| {
            let c = inv
                .data::<VirtualMachineConfigInfo>(vm.as_str(), "config")
                .unwrap();
            let s = summary(inv, &vm).unwrap();
            let from_summary = s.config.as_ref().unwrap().annotation.clone();
            assert_eq!(c.annotation, from_summary, "config and summary agree");
            c.annotation.clone()
        };
        assert_eq!(annotation(&inv), None);
        let mut spec = VirtualMachineConfigSpec::default();
        spec.annotation = Some("owner: team <db>".into());
        reconfigure(&mut inv, &vm, &spec).unwrap();
        assert_eq!(annotation(&inv).as_deref(), Some("owner: team <db>"));
        // A spec without an annotation leaves it as it is; an empty one clears it.
        reconfigure(&mut inv, &vm, &VirtualMachineConfigSpec::default()).unwrap();
        assert_eq!(annotation(&inv).as_deref(), Some("owner: team <db>"));
        spec.annotation = Some(String::new());
        reconfigure(&mut inv, &vm, &spec).unwrap();
        assert_eq!(annotation(&inv), None);
    }

    #[test]
    fn adding_a_disk_numbers_it_and_takes_space() {
        let (mut inv, vm) = setup();
        let ds = inv.refs_of(&vm, "datastore")[0].value.clone();
        let free = inv.free_space(&ds).unwrap();
        let mut spec = VirtualMachineConfigSpec::default();
        spec.device_change = vec![Poly::new(new_disk(2048)), {
            let mut c = VirtualDeviceConfigSpec::default();
            c.operation = Some(VirtualDeviceConfigSpecOperation::Add);
            c.device = Some(Poly::new(VirtualE1000::default()));
            Poly::new(c)
        }];
        reconfigure(&mut inv, &vm, &spec).unwrap();
        let devs = device_list(&inv, &vm).unwrap();
        let disk = devs
            .iter()
            .find(|d| d.key == 2001)
            .expect("new disk key 2001");
        assert_eq!(disk.controller_key, Some(1000));
        assert_eq!(disk.unit_number, Some(1));
        assert!(
            disk_file(disk).0.ends_with("_1.vmdk"),
            "{}",
            disk_file(disk).0
        );
        let nic = devs
            .iter()
            .find(|d| d.key == 4001)
            .expect("new NIC key 4001");
        assert_eq!(nic.controller_key, Some(100));
        assert_eq!(inv.free_space(&ds).unwrap(), free - 2048 * 1024);
        let summary = summary(&inv, &vm).unwrap();
        assert_eq!(summary.config.as_ref().unwrap().num_virtual_disks, Some(2));

        // Remove it with its file: the space comes back.
        let mut rm = VirtualDeviceConfigSpec::default();
        rm.operation = Some(VirtualDeviceConfigSpecOperation::Remove);
        rm.file_operation = Some(VirtualDeviceConfigSpecFileOperation::Destroy);
        rm.device = Some(disk.clone());
        let mut spec = VirtualMachineConfigSpec::default();
        spec.device_change = vec![Poly::new(rm)];
        reconfigure(&mut inv, &vm, &spec).unwrap();
        assert_eq!(inv.free_space(&ds).unwrap(), free);
        assert!(
            device_list(&inv, &vm)
                .unwrap()
                .iter()
                .all(|d| d.key != 2001)
        );
    }

    #[test]
    fn a_disk_larger_than_the_datastore_is_refused_and_nothing_changes() {
        let (mut inv, vm) = setup();
        let before = device_list(&inv, &vm).unwrap().len();
        let mut spec = VirtualMachineConfigSpec::default();
        spec.device_change = vec![Poly::new(new_disk(1 << 40))];
        let e = reconfigure(&mut inv, &vm, &spec).unwrap_err();
        assert_eq!(e.type_name(), "NoDiskSpace");
        assert_eq!(device_list(&inv, &vm).unwrap().len(), before);
    }

    #[test]
    fn destroy_needs_power_off_and_frees_space() {
        let (mut inv, vm) = setup();
        let ds = inv.refs_of(&vm, "datastore")[0].value.clone();
        let free = inv.free_space(&ds).unwrap();
        assert_eq!(
            destroy(&mut inv, &vm).unwrap_err().type_name(),
            "InvalidPowerState"
        );
        power(&mut inv, &vm, PowerOp::Off).unwrap();
        destroy(&mut inv, &vm).unwrap();
        assert!(inv.get(&vm).is_none());
        assert_eq!(inv.free_space(&ds).unwrap(), free + (1 << 30));
        assert!(inv.refs_of(&ds, "vm").iter().all(|r| r.value != vm));
    }

    #[test]
    fn clone_and_create() {
        let (mut inv, vm) = setup();
        let folder = inv.refs_of(&vm, "parent")[0].clone();
        let mut spec = VirtualMachineCloneSpec::default();
        spec.power_on = false;
        let Some(Any::MoRef(c)) = clone(&mut inv, &vm, &folder, "copy", &spec).unwrap() else {
            panic!("no clone")
        };
        assert_eq!(inv.name_of(&c.value), Some("copy"));
        assert_eq!(
            power_state(&inv, &c.value).unwrap(),
            VirtualMachinePowerState::PoweredOff
        );
        assert_eq!(device_list(&inv, &c.value).unwrap().len(), 4);
        assert_eq!(
            clone(&mut inv, &vm, &folder, "copy", &spec)
                .unwrap_err()
                .type_name(),
            "DuplicateName"
        );
        let pool = inv.refs_of(&vm, "resourcePool")[0].clone();
        let mut cs = VirtualMachineConfigSpec::default();
        cs.name = Some("fresh".into());
        cs.num_cp_us = Some(2);
        let Some(Any::MoRef(n)) = create(&mut inv, &folder, &cs, &pool, None).unwrap() else {
            panic!("no VM")
        };
        assert_eq!(device_list(&inv, &n.value).unwrap().len(), 1);
        assert_eq!(
            config(&inv, &n.value)
                .unwrap()
                .hardware
                .as_ref()
                .unwrap()
                .num_cpu,
            2
        );
    }
}
