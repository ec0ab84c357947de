//! The First Class Disk backend's pure parts: what a VM's device list says about its disks and
//! SCSI units, and the `ReconfigVM_Task` specs that add an FCD as an independent-persistent
//! disk or remove it (for servers without `AttachDisk_Task`/`DetachDisk_Task`). Everything
//! that talks to the server goes through `vsphere-client` (tasks, views, handles).

use vsphere_client::client::{Properties, VmDisk, scsi_slot};
use vsphere_client::codec::{ManagedObjectReference, Obj, Poly};
use vsphere_client::types::{
    ID, ObjectContent, VirtualDevice, VirtualDeviceConfigSpec, VirtualDeviceConfigSpecOperation,
    VirtualDeviceFileBackingInfo, VirtualDisk, VirtualDiskFlatVer2BackingInfo,
    VirtualMachineConfigSpec,
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
    /// Where a new disk goes: the first SCSI controller with a free unit, and the unit
    /// (vsphere-client's [`scsi_slot`]).
    pub(super) free_unit: Option<(i32, i32)>,
}

/// A virtual disk on a VM: the client's [`VmDisk`] and the disk's UUID.
#[derive(Debug, Clone)]
pub(super) struct DiskDevice {
    /// Key, controller, unit, capacity, backing file and First Class Disk id.
    pub(super) disk: VmDisk,
    /// The disk's UUID, when the server reports one (the guest's WWN).
    pub(super) uuid: Option<String>,
    /// The backing's `diskMode` (`persistent`, `independent_persistent`, ...), when reported.
    pub(super) disk_mode: Option<String>,
}

impl DiskDevice {
    /// The disk of a device, if it is one.
    pub(super) fn from_device(device: &Poly<VirtualDevice>) -> Option<Self> {
        let disk = VmDisk::from_device(device)?;
        let flat = device
            .downcast_ref::<VirtualDisk>()
            .and_then(|d| d.virtual_device.backing.as_ref())
            .and_then(|b| b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>());
        Some(Self {
            disk,
            uuid: flat.and_then(|f| f.uuid.clone()),
            disk_mode: flat.map(|f| f.disk_mode.clone()).filter(|m| !m.is_empty()),
        })
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
    VmDevices {
        free_unit: scsi_slot(&devices),
        vm: p.reference().clone(),
        name,
        disks: devices.iter().filter_map(DiskDevice::from_device).collect(),
    }
}

/// A `ReconfigVM_Task` spec that adds the First Class Disk `fcd_id` (backed by `file_name` on
/// `datastore`, named by `vDiskId`) as a disk in `disk_mode` at `controller_key:unit`, without
/// a file operation (the FCD's file exists and must be kept).
pub(super) fn add_disk_spec(
    disk_mode: &str,
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
        disk_mode: disk_mode.to_owned(),
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

/// The guest-visible device path of a disk: [`wwn_device_path`] of the disk's UUID (what
/// Linux shows with `disk.EnableUUID = TRUE`), or, when the server reports no usable UUID
/// (vcsim 0.24.2), a path of the same shape from the First Class Disk id, which names the
/// volume but is not a path a guest has.
pub(super) fn device_path(disk: &DiskDevice, fcd_id: &str) -> String {
    if let Some(p) = disk.uuid.as_deref().and_then(wwn_device_path) {
        return p;
    }
    let token: String = fcd_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("/dev/disk/by-id/wwn-0x{token}")
}

/// The path under which a Linux guest with `disk.EnableUUID = TRUE` finds a virtual disk, as
/// the vSphere CSI driver computes it: the disk's UUID (`VirtualDiskFlatVer2BackingInfo.uuid`,
/// `6000C29d-b1b6-...`, or `QueryVirtualDiskUuid`'s `60 00 C2 9d ...`) lower-cased without
/// dashes and spaces, after `/dev/disk/by-id/wwn-0x`. `None` unless it is 32 hex digits.
pub(super) fn wwn_device_path(uuid: &str) -> Option<String> {
    let hex: String = uuid
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("/dev/disk/by-id/wwn-0x{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            uuid: Some("6000C29a-BCDE-0123-4567-89ABCDEF0123".to_owned()),
            disk_mode: None,
        };
        assert!(d.is_fcd("0b2c-11", ""));
        assert!(!d.is_fcd("other", ""));
        assert_eq!(
            device_path(&d, "0b2c-11"),
            "/dev/disk/by-id/wwn-0x6000c29abcde0123456789abcdef0123"
        );
        d.uuid = Some("not-a-uuid".to_owned());
        assert_eq!(device_path(&d, "0b2c-11"), "/dev/disk/by-id/wwn-0x0b2c11");
        d.uuid = None;
        assert_eq!(device_path(&d, "0b2c-11"), "/dev/disk/by-id/wwn-0x0b2c11");
    }

    #[test]
    fn wwn_paths_are_computed_as_the_csi_driver_does() {
        // The backing UUID form and QueryVirtualDiskUuid's spaced form give one path.
        let want = "/dev/disk/by-id/wwn-0x6000c29d1a2b3c4d5e6f708192a3b4c5";
        assert_eq!(
            wwn_device_path("6000C29d-1a2b-3c4d-5e6f-708192a3b4c5").as_deref(),
            Some(want)
        );
        assert_eq!(
            wwn_device_path("60 00 C2 9d 1a 2b 3c 4d-5e 6f 70 81 92 a3 b4 c5").as_deref(),
            Some(want)
        );
        assert_eq!(wwn_device_path("6000C29d-1a2b"), None, "too short");
        assert_eq!(
            wwn_device_path("6000C29d-1a2b-3c4d-5e6f-708192a3b4cz"),
            None,
            "not hex"
        );
    }

    #[test]
    fn add_spec_is_independent_persistent_and_names_the_fcd() {
        let ds = ManagedObjectReference::new("Datastore", "datastore-1");
        let spec = add_disk_spec(
            "independent_persistent",
            "fcd-1",
            "[ds] fcd/x.vmdk",
            &ds,
            2,
            1000,
            3,
        );
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
