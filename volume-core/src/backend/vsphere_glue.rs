//! The small, private vSphere glue of the First Class Disk backend: task waiting, property
//! reads, the VM device scan and the device specs. Everything here speaks only through
//! `vsphere-client`'s generated methods and [`Client`]; when the client grows typed handles, a
//! finder and a task waiter, this module is what switches to them.

use std::collections::HashMap;
use std::time::Duration;

use vsphere_client::Error as ClientError;
use vsphere_client::client::{Client, RetrieveSpec};
use vsphere_client::codec::{Any, AnyArray, DataObject, ManagedObjectReference, Obj, Poly};
use vsphere_client::mo::{ContainerView, ViewManager};
use vsphere_client::rpc::{Call, PendingTask};
use vsphere_client::types::{
    ID, ObjectContent, TaskInfo, TaskInfoState, VirtualDevice, VirtualDeviceBackingInfo,
    VirtualDeviceConfigSpec, VirtualDeviceConfigSpecOperation, VirtualDeviceFileBackingInfo,
    VirtualDisk, VirtualDiskFlatVer2BackingInfo, VirtualMachineConfigSpec, VirtualSCSIController,
};

use crate::error::{BoxedSource, Error, Result};

/// Wraps a client error as [`Error::Remote`].
pub(super) fn remote(op: &'static str, e: ClientError) -> Error {
    Error::Remote {
        op,
        source: Box::new(e) as BoxedSource,
    }
}

/// The fault type name of a client error, or `""`.
pub(super) fn fault_name(e: &ClientError) -> &str {
    e.fault().map_or("", |f| f.fault_type())
}

/// Whether the server does not implement the method at all (vcsim answers `MethodNotFound`;
/// a vCenter older than the method's release answers `MethodNotFound` or an unknown-method
/// `InvalidRequest`).
pub(super) fn is_not_implemented(e: &ClientError) -> bool {
    matches!(
        fault_name(e),
        "MethodNotFound" | "NotImplemented" | "NotSupported" | "InvalidRequest"
    )
}

/// Sends a `*_Task` call and waits for its task: the task's result, or the task's fault as
/// [`Error::Remote`] carrying the client's `Fault` error.
pub(super) async fn run_task<R>(
    client: &Client,
    call: Call<'_, PendingTask<R>>,
) -> std::result::Result<R, TaskError> {
    let pending = call.await.map_err(TaskError::Call)?;
    let result = wait_task(client, pending.task().reference()).await?;
    pending.result_from(result).map_err(TaskError::Call)
}

/// Why a task did not produce its result.
#[derive(Debug)]
pub(super) enum TaskError {
    /// The call (or a poll of the task) failed.
    Call(ClientError),
    /// The task ran and failed: its fault's type name and message.
    Failed {
        /// The fault type (`NotFound`, `InvalidArgument`, ...), or `""`.
        fault: String,
        /// The server's message.
        message: String,
    },
}

impl TaskError {
    /// The fault type name of the failure (`""` for transport errors).
    pub(super) fn fault(&self) -> &str {
        match self {
            Self::Call(e) => fault_name(e),
            Self::Failed { fault, .. } => fault,
        }
    }

    /// Converts into the crate's error.
    pub(super) fn into_error(self, op: &'static str) -> Error {
        match self {
            Self::Call(e) => remote(op, e),
            Self::Failed { fault, message } => Error::Remote {
                op,
                source: format!("task failed with {fault}: {message}").into(),
            },
        }
    }
}

/// Polls the task's `info` through the PropertyCollector with a short backoff (2 ms doubling
/// to 100 ms) until it succeeds or fails. Returns `info.result`.
async fn wait_task(
    client: &Client,
    task: &ManagedObjectReference,
) -> std::result::Result<Any, TaskError> {
    let mut delay = Duration::from_millis(2);
    loop {
        let spec = RetrieveSpec::objects("Task", &["info"], [task.clone()]);
        let objects = client
            .retrieve_pages(spec)
            .collect_all()
            .await
            .map_err(TaskError::Call)?;
        let info = objects
            .into_iter()
            .flat_map(|o| o.prop_set)
            .find(|p| p.name == "info")
            .and_then(|p| match p.val {
                Any::Data(obj) => obj.into_any().downcast::<TaskInfo>().ok(),
                _ => None,
            })
            .ok_or_else(|| {
                TaskError::Call(ClientError::UnexpectedResult {
                    found: "a Task without info".to_owned(),
                })
            })?;
        match info.state {
            TaskInfoState::Success => return Ok(info.result.unwrap_or(Any::Absent)),
            TaskInfoState::Error => {
                let (fault, message) = info.error.map_or_else(
                    || (String::new(), String::new()),
                    |e| {
                        let e = e.into_inner();
                        let fault = e
                            .fault
                            .as_ref()
                            .map(|f| f.type_name().to_owned())
                            .unwrap_or_default();
                        (fault, e.localized_message.unwrap_or_default())
                    },
                );
                return Err(TaskError::Failed { fault, message });
            }
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// One VM as the device scan sees it.
#[derive(Debug, Clone)]
pub(super) struct VmDevices {
    /// The VM.
    pub(super) vm: ManagedObjectReference,
    /// Its name.
    pub(super) name: String,
    /// Its virtual disks.
    pub(super) disks: Vec<DiskDevice>,
    /// Its SCSI controllers (key, own unit number) and the units in use on each.
    pub(super) scsi: Vec<ScsiController>,
}

/// A virtual disk on a VM.
#[derive(Debug, Clone)]
pub(super) struct DiskDevice {
    /// The device key.
    pub(super) key: i32,
    /// The controller key and unit, when set.
    pub(super) controller_key: Option<i32>,
    /// The unit number.
    pub(super) unit_number: Option<i32>,
    /// The First Class Disk id (`vDiskId`), when the disk is one.
    pub(super) fcd_id: Option<String>,
    /// The backing file (`[ds] path.vmdk`).
    pub(super) file_name: Option<String>,
    /// The disk's UUID, when the server reports one (the guest's WWN).
    pub(super) uuid: Option<String>,
    /// Capacity in KiB.
    pub(super) capacity_kb: i64,
}

/// A SCSI controller on a VM and its used unit numbers.
#[derive(Debug, Clone)]
pub(super) struct ScsiController {
    /// The controller's device key.
    pub(super) key: i32,
    /// Units taken on its bus (the controller's own unit, 7, is added).
    pub(super) used: Vec<i32>,
}

impl ScsiController {
    /// The lowest free unit (0..16, never 7).
    pub(super) fn free_unit(&self) -> Option<i32> {
        (0..16).find(|u| *u != 7 && !self.used.contains(u))
    }
}

/// Creates a container view of every object of `type_name` under the root folder (one call).
async fn container_view(client: &Client, type_name: &str) -> Result<ManagedObjectReference> {
    let content = client.service_content();
    let manager = content.view_manager.clone().ok_or(Error::Unsupported {
        feature: "a vCenter without a ViewManager",
    })?;
    ViewManager::from_reference(manager)
        .create_container_view(client, &content.root_folder, &[type_name.to_owned()], true)
        .await
        .map_err(|e| remote("CreateContainerView", e))
}

/// Creates a container view of every `VirtualMachine` under the root folder (one call).
pub(super) async fn vm_view(client: &Client) -> Result<ManagedObjectReference> {
    container_view(client, "VirtualMachine").await
}

/// Reads `paths` of every object of `type_name` in the view (one round trip per page).
async fn read_view(
    client: &Client,
    view: &ManagedObjectReference,
    type_name: &str,
    paths: &[&str],
) -> std::result::Result<Vec<ObjectContent>, ClientError> {
    use vsphere_client::types::{ObjectSpec, PropertyFilterSpec, PropertySpec, TraversalSpec};
    let traversal = TraversalSpec {
        type_: "ContainerView".to_owned(),
        path: "view".to_owned(),
        skip: Some(false),
        ..TraversalSpec::default()
    };
    let filter = PropertyFilterSpec {
        prop_set: vec![PropertySpec {
            type_: type_name.to_owned(),
            path_set: paths.iter().map(|p| (*p).to_owned()).collect(),
            ..PropertySpec::default()
        }],
        object_set: vec![ObjectSpec {
            obj: view.clone(),
            skip: Some(true),
            select_set: vec![Poly::new(traversal)],
            ..ObjectSpec::default()
        }],
        ..PropertyFilterSpec::default()
    };
    let spec = RetrieveSpec {
        specs: vec![filter],
        max_objects: None,
    };
    client.retrieve_pages(spec).collect_all().await
}

/// The objects of `type_name` whose `name` is one of `names` (three calls: view, read,
/// destroy view).
pub(super) async fn find_by_name(
    client: &Client,
    type_name: &str,
    names: &[&str],
) -> Result<HashMap<String, ManagedObjectReference>> {
    let view = container_view(client, type_name).await?;
    let objects = read_view(client, &view, type_name, &["name"]).await;
    let _ = ContainerView::from_reference(view)
        .destroy_view(client)
        .await;
    let mut found = HashMap::new();
    for o in objects.map_err(|e| remote("RetrievePropertiesEx(name)", e))? {
        for p in o.prop_set {
            if let Any::String(n) = p.val
                && names.contains(&n.as_str())
            {
                found.insert(n, o.obj.clone());
            }
        }
    }
    Ok(found)
}

/// Reads `name` and `config.hardware.device` of every VM in the view (one round trip per page).
pub(super) async fn scan_vms(
    client: &Client,
    view: &ManagedObjectReference,
) -> std::result::Result<Vec<VmDevices>, ClientError> {
    let objects = read_view(
        client,
        view,
        "VirtualMachine",
        &["name", "config.hardware.device"],
    )
    .await?;
    Ok(objects.into_iter().map(vm_devices).collect())
}

fn vm_devices(o: ObjectContent) -> VmDevices {
    let mut out = VmDevices {
        vm: o.obj,
        name: String::new(),
        disks: Vec::new(),
        scsi: Vec::new(),
    };
    let mut devices: Vec<Box<dyn DataObject>> = Vec::new();
    for p in o.prop_set {
        match (p.name.as_str(), p.val) {
            ("name", Any::String(s)) => out.name = s,
            ("config.hardware.device", Any::Array(AnyArray::Data { items, .. })) => {
                devices = items;
            }
            _ => {}
        }
    }
    let mut units: Vec<(i32, i32)> = Vec::new();
    for d in &devices {
        if let Some(c) = d.upcast_ref::<VirtualSCSIController>() {
            let base = &c.virtual_controller.virtual_device;
            out.scsi.push(ScsiController {
                key: base.key,
                used: vec![c.scsi_ctlr_unit_number.unwrap_or(7)],
            });
        }
        if let Some(base) = d.upcast_ref::<VirtualDevice>()
            && let (Some(ck), Some(u)) = (base.controller_key, base.unit_number)
        {
            units.push((ck, u));
        }
        if let Some(disk) = d.downcast_ref::<VirtualDisk>() {
            out.disks.push(disk_device(disk));
        }
    }
    for c in &mut out.scsi {
        c.used
            .extend(units.iter().filter(|(k, _)| *k == c.key).map(|(_, u)| *u));
    }
    out
}

/// The file backing of a virtual disk (every file-backed disk backing type of the API).
fn disk_file(b: &Poly<VirtualDeviceBackingInfo>) -> Option<&VirtualDeviceFileBackingInfo> {
    use vsphere_client::types::{
        VirtualDiskFlatVer1BackingInfo, VirtualDiskLocalPMemBackingInfo,
        VirtualDiskRawDiskMappingVer1BackingInfo, VirtualDiskSeSparseBackingInfo,
        VirtualDiskSparseVer1BackingInfo, VirtualDiskSparseVer2BackingInfo,
    };
    // `Poly::as_object` hands out a non-'static trait object, which `upcast_ref` cannot take,
    // so the concrete types are tried one by one.
    if let Some(x) = b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskSeSparseBackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskSparseVer2BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskSparseVer1BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskFlatVer1BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskRawDiskMappingVer1BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskLocalPMemBackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    b.downcast_ref::<VirtualDeviceFileBackingInfo>()
}

fn disk_device(disk: &VirtualDisk) -> DiskDevice {
    let base = &disk.virtual_device;
    let backing = base.backing.as_ref();
    let file = backing.and_then(disk_file);
    let flat = backing.and_then(|b| b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>());
    DiskDevice {
        key: base.key,
        controller_key: base.controller_key,
        unit_number: base.unit_number,
        fcd_id: disk.v_disk_id.as_ref().map(|id| id.id.clone()),
        file_name: file.map(|f| f.file_name.clone()),
        uuid: flat.and_then(|f| f.uuid.clone()),
        capacity_kb: disk.capacity_in_kb,
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

    #[test]
    fn free_unit_skips_seven_and_used_units() {
        let c = ScsiController {
            key: 1000,
            used: vec![7, 0, 1, 2, 3, 4, 5, 6],
        };
        assert_eq!(c.free_unit(), Some(8));
        let full = ScsiController {
            key: 1000,
            used: (0..16).collect(),
        };
        assert_eq!(full.free_unit(), None);
    }

    #[test]
    fn device_path_prefers_the_disk_uuid() {
        let mut d = DiskDevice {
            key: 2001,
            controller_key: Some(1000),
            unit_number: Some(1),
            fcd_id: Some("0b2c-11".to_owned()),
            file_name: None,
            uuid: Some("6000C29a-BCDE-0000".to_owned()),
            capacity_kb: 1024,
        };
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
