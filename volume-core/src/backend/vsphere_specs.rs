//! The First Class Disk backend's pure parts: what a VM's device list says about its disks and
//! SCSI units, and the `ReconfigVM_Task` specs that add an FCD as an independent-persistent
//! disk or remove it (for servers without `AttachDisk_Task`/`DetachDisk_Task`). Everything
//! that talks to the server goes through `vsphere-client` (tasks, views, handles).

use vsphere_client::client::{Properties, VmDisk, free_scsi_unit, upcast};
use vsphere_client::codec::{ManagedObjectReference, Obj, Poly};
use vsphere_client::types::{
    ID, ObjectContent, VirtualDevice, VirtualDeviceConfigSpec, VirtualDeviceConfigSpecOperation,
    VirtualDeviceFileBackingInfo, VirtualDisk, VirtualDiskFlatVer2BackingInfo,
    VirtualMachineConfigSpec, VirtualSCSIController,
};

/// One VM as the device scan sees it.
#[derive(Debug, Clone)]
pub(super) struct VmDevices {
    /// The VM.
    pub(super) vm: ManagedObjectReference,
    /// Its name.
    pub(super) name: String,
    /// Its virtual disks.
    pub(super) disks: Vec<DiskDevice>,
    /// Its SCSI controllers (key) and the units in use on each (the controller's own included).
    pub(super) scsi: Vec<(i32, Vec<i32>)>,
}

impl VmDevices {
    /// The first SCSI controller with a free unit, and the unit.
    pub(super) fn free_unit(&self) -> Option<(i32, i32)> {
        free_scsi_unit(&self.scsi)
    }
}

/// A virtual disk on a VM: the client's [`VmDisk`] and the disk's UUID.
#[derive(Debug, Clone)]
pub(super) struct DiskDevice {
    /// Key, controller, unit, capacity, backing file and First Class Disk id.
    pub(super) disk: VmDisk,
    /// The disk's UUID, when the server reports one (the guest's WWN).
    pub(super) uuid: Option<String>,
}

impl DiskDevice {
    /// The disk of a device, if it is one.
    pub(super) fn from_device(device: &Poly<VirtualDevice>) -> Option<Self> {
        let disk = VmDisk::from_device(device)?;
        let uuid = device
            .downcast_ref::<VirtualDisk>()
            .and_then(|d| d.virtual_device.backing.as_ref())
            .and_then(|b| b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>())
            .and_then(|f| f.uuid.clone());
        Some(Self { disk, uuid })
    }

    /// Whether this disk is the First Class Disk `id` (by its `vDiskId`, or by its file).
    pub(super) fn is_fcd(&self, id: &str, file: &str) -> bool {
        self.disk.fcd_id.as_deref() == Some(id)
            || (!file.is_empty() && self.disk.file.as_deref() == Some(file))
    }
}

/// A VM's `name` and `config.hardware.device`, as one property-collector object.
pub(super) fn vm_devices(content: ObjectContent) -> VmDevices {
    let mut p = Properties::from(content);
    let devices: Vec<Poly<VirtualDevice>> = p.take_many("config.hardware.device");
    let name = p.get::<String>("name").unwrap_or_default();
    let scsi = devices
        .iter()
        .filter_map(|d| {
            let c = upcast::<VirtualSCSIController>(d.as_object())?;
            let key = c.virtual_controller.virtual_device.key;
            let mut used = vec![c.scsi_ctlr_unit_number.unwrap_or(7)];
            used.extend(
                devices
                    .iter()
                    .filter(|x| x.base().controller_key == Some(key))
                    .filter_map(|x| x.base().unit_number),
            );
            Some((key, used))
        })
        .collect();
    VmDevices {
        vm: p.reference().clone(),
        name,
        disks: devices.iter().filter_map(DiskDevice::from_device).collect(),
        scsi,
    }
}

/// A `ReconfigVM_Task` spec that adds the First Class Disk `fcd_id` (backed by `file_name` on
/// `datastore`) as an independent-persistent disk at `controller_key:unit`.
pub(super) fn add_disk_spec(
    fcd_id: &str,
    file_name: &str,
    datastore: &ManagedObjectReference,
    capacity_mb: i64,
    controller_key: i32,
    unit: i32,
) -> VirtualMachineConfigSpec {
    let backing = VirtualDiskFlatVer2BackingInfo {
        virtual_device_file_backing_info: VirtualDeviceFileBackingInfo {
            file_name: file_name.to_owned(),
            datastore: Some(datastore.clone()),
            ..VirtualDeviceFileBackingInfo::default()
        },
        disk_mode: "independent_persistent".to_owned(),
        ..VirtualDiskFlatVer2BackingInfo::default()
    };
    let disk = VirtualDisk {
        virtual_device: VirtualDevice {
            key: -100,
            backing: Some(Poly::new(backing)),
            controller_key: Some(controller_key),
            unit_number: Some(unit),
            ..VirtualDevice::default()
        },
        capacity_in_kb: capacity_mb * 1024,
        v_disk_id: Some(Obj::new(ID {
            id: fcd_id.to_owned(),
            ..ID::default()
        })),
        ..VirtualDisk::default()
    };
    device_change(VirtualDeviceConfigSpecOperation::Add, disk)
}

/// A `ReconfigVM_Task` spec that removes the disk device `d` and keeps its file.
pub(super) fn remove_disk_spec(d: &DiskDevice) -> VirtualMachineConfigSpec {
    let d = &d.disk;
    let disk = VirtualDisk {
        virtual_device: VirtualDevice {
            key: d.key,
            controller_key: d.controller_key,
            unit_number: d.unit_number,
            ..VirtualDevice::default()
        },
        capacity_in_kb: d.capacity_kb,
        v_disk_id: d.fcd_id.as_ref().map(|id| {
            Obj::new(ID {
                id: id.clone(),
                ..ID::default()
            })
        }),
        ..VirtualDisk::default()
    };
    device_change(VirtualDeviceConfigSpecOperation::Remove, disk)
}

fn device_change(
    op: VirtualDeviceConfigSpecOperation,
    disk: VirtualDisk,
) -> VirtualMachineConfigSpec {
    let change = VirtualDeviceConfigSpec {
        operation: Some(op),
        file_operation: None,
        device: Some(Poly::new(disk)),
        ..VirtualDeviceConfigSpec::default()
    };
    VirtualMachineConfigSpec {
        device_change: vec![Poly::new(change)],
        ..VirtualMachineConfigSpec::default()
    }
}

/// The guest-visible device path of a disk: `/dev/disk/by-id/wwn-0x<uuid>` from the disk's
/// UUID (what Linux shows with `disk.EnableUUID`), or, when the server reports no UUID (vcsim
/// 0.24.2), from the First Class Disk id.
pub(super) fn device_path(disk: &DiskDevice, fcd_id: &str) -> String {
    let token: String = disk
        .uuid
        .as_deref()
        .unwrap_or(fcd_id)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("/dev/disk/by-id/wwn-0x{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(scsi: Vec<(i32, Vec<i32>)>) -> VmDevices {
        VmDevices {
            vm: ManagedObjectReference::new("VirtualMachine", "vm-1"),
            name: "vm".to_owned(),
            disks: Vec::new(),
            scsi,
        }
    }

    #[test]
    fn free_unit_skips_seven_and_used_units() {
        assert_eq!(
            vm(vec![(1000, vec![7, 0, 1, 2, 3, 4, 5, 6])]).free_unit(),
            Some((1000, 8))
        );
        assert_eq!(vm(vec![(1000, (0..16).collect())]).free_unit(), None);
    }

    #[test]
    fn device_path_prefers_the_disk_uuid() {
        let mut d = DiskDevice {
            disk: VmDisk {
                key: 2001,
                controller_key: Some(1000),
                unit_number: Some(1),
                capacity_kb: 1024,
                file: None,
                fcd_id: Some("0b2c-11".to_owned()),
            },
            uuid: Some("6000C29a-BCDE-0000".to_owned()),
        };
        assert!(d.is_fcd("0b2c-11", ""));
        assert!(!d.is_fcd("other", ""));
        assert_eq!(
            device_path(&d, "0b2c-11"),
            "/dev/disk/by-id/wwn-0x6000c29abcde0000"
        );
        d.uuid = None;
        assert_eq!(device_path(&d, "0b2c-11"), "/dev/disk/by-id/wwn-0x0b2c11");
    }

    #[test]
    fn add_spec_is_independent_persistent_and_names_the_fcd() {
        let ds = ManagedObjectReference::new("Datastore", "datastore-1");
        let spec = add_disk_spec("fcd-1", "[ds] fcd/x.vmdk", &ds, 2, 1000, 3);
        let change = spec.device_change[0].base();
        assert_eq!(
            change.operation,
            Some(VirtualDeviceConfigSpecOperation::Add)
        );
        assert!(
            change.file_operation.is_none(),
            "an FCD's file must never be created"
        );
        let disk = change
            .device
            .as_ref()
            .and_then(|d| d.downcast_ref::<VirtualDisk>())
            .unwrap();
        assert_eq!(disk.capacity_in_kb, 2048);
        assert_eq!(disk.v_disk_id.as_ref().unwrap().id, "fcd-1");
        let backing = disk
            .virtual_device
            .backing
            .as_ref()
            .and_then(|b| b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>())
            .unwrap();
        assert_eq!(backing.disk_mode, "independent_persistent");
    }
}
