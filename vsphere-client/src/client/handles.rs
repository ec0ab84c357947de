//! Typed handles for the common work: thin wrappers over the generated methods that start a
//! task and wait for it ([`Client::wait_task`]), plus the few reads each needs.
//!
//! A handle is a reference plus the client: `client.vm(reference)`, `client.host(...)`,
//! `client.datastore(...)`, `client.folder(...)`, `client.datacenter(...)`,
//! `client.cluster(...)`. Everything else stays reachable through the generated wrapper
//! ([`VmHandle::mo`] and friends).

use super::{Client, Properties};
use crate::Error;
use crate::codec::{ManagedObjectReference, Poly};
use crate::mo::{
    ClusterComputeResource, Datacenter, Datastore, Folder, HostSystem, VirtualMachine,
};
use crate::types::{
    HostSystemConnectionState, ID, VirtualDevice, VirtualDeviceConfigSpec,
    VirtualDeviceConfigSpecFileOperation, VirtualDeviceConfigSpecOperation,
    VirtualDeviceFileBackingInfo, VirtualDisk, VirtualDiskFlatVer2BackingInfo,
    VirtualDiskLocalPMemBackingInfo, VirtualDiskRawDiskMappingVer1BackingInfo,
    VirtualDiskSeSparseBackingInfo, VirtualDiskSparseVer2BackingInfo, VirtualMachineCloneSpec,
    VirtualMachineConfigSpec, VirtualMachinePowerState, VirtualSCSIController,
};

/// A virtual machine.
#[derive(Clone, Debug)]
pub struct VmHandle<'c> {
    pub(super) client: &'c Client,
    pub(super) vm: VirtualMachine,
}

/// A disk of a VM, as the VM's device list shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmDisk {
    /// The device key.
    pub key: i32,
    /// The controller's key.
    pub controller_key: Option<i32>,
    /// The unit number on the controller.
    pub unit_number: Option<i32>,
    /// The capacity in KiB.
    pub capacity_kb: i64,
    /// The backing file (`[ds] vm/vm.vmdk`), when file-backed.
    pub file: Option<String>,
    /// The First Class Disk id, when the disk is an FCD.
    pub fcd_id: Option<String>,
}

impl VmDisk {
    /// The disk described by a device, if the device is a `VirtualDisk`.
    pub fn from_device(device: &Poly<VirtualDevice>) -> Option<Self> {
        let disk = device.downcast_ref::<VirtualDisk>()?;
        let file = disk.virtual_device.backing.as_ref().and_then(|b| {
            super::upcast::<VirtualDeviceFileBackingInfo>(b.as_object())
                .map(|f| f.file_name.clone())
        });
        Some(Self {
            key: disk.virtual_device.key,
            controller_key: disk.virtual_device.controller_key,
            unit_number: disk.virtual_device.unit_number,
            capacity_kb: disk.capacity_in_kb,
            file,
            fcd_id: disk.v_disk_id.as_ref().map(|i| i.id.clone()),
        })
    }
}

/// A disk of a VM with what its backing says: the [`VmDisk`] plus the disk's UUID (the
/// guest's WWN, `/dev/disk/by-id/wwn-0x...`), its datastore, its exact capacity in bytes, its
/// mode and provisioning. [`VmHandle::disk_details`] lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmDiskDetails {
    /// Key, controller, unit, capacity in KiB, backing file and First Class Disk id.
    pub disk: VmDisk,
    /// The backing's UUID (`backing.uuid`), when the server reports one.
    pub uuid: Option<String>,
    /// The datastore of the backing file.
    pub datastore: Option<ManagedObjectReference>,
    /// The capacity in bytes (`capacityInBytes`; from `capacityInKB` on servers without it).
    pub capacity_bytes: i64,
    /// The disk mode (`persistent`, `independent_persistent`, ...), when the backing has one.
    pub disk_mode: Option<String>,
    /// Whether the disk is thin-provisioned, when the backing says.
    pub thin: Option<bool>,
}

impl VmDiskDetails {
    /// The details of a device, if the device is a `VirtualDisk`. The UUID and mode are read
    /// from flat, sparse, SE-sparse, raw-mapping and PMem backings.
    ///
    /// ```
    /// use vsphere_client::client::VmDiskDetails;
    /// use vsphere_client::codec::Poly;
    /// use vsphere_client::types::{VirtualDevice, VirtualDisk, VirtualDiskFlatVer2BackingInfo};
    /// let mut backing = VirtualDiskFlatVer2BackingInfo {
    ///     disk_mode: "independent_persistent".into(),
    ///     uuid: Some("6000C29a-bcde-0000".into()),
    ///     thin_provisioned: Some(true),
    ///     ..Default::default()
    /// };
    /// backing.virtual_device_file_backing_info.file_name = "[ds] fcd/a.vmdk".into();
    /// let mut disk = VirtualDisk { capacity_in_kb: 2048, ..Default::default() };
    /// disk.virtual_device.key = 2001;
    /// disk.virtual_device.backing = Some(Poly::new(backing));
    /// let d = VmDiskDetails::from_device(&Poly::<VirtualDevice>::new(disk)).unwrap();
    /// assert_eq!(d.uuid.as_deref(), Some("6000C29a-bcde-0000"));
    /// assert_eq!(d.disk.file.as_deref(), Some("[ds] fcd/a.vmdk"));
    /// assert_eq!(d.capacity_bytes, 2048 * 1024);
    /// assert_eq!(d.thin, Some(true));
    /// ```
    pub fn from_device(device: &Poly<VirtualDevice>) -> Option<Self> {
        let disk = VmDisk::from_device(device)?;
        let vd = device.downcast_ref::<VirtualDisk>()?;
        let backing = vd.virtual_device.backing.as_ref();
        let object = backing.map(Poly::as_object);
        let datastore = object
            .and_then(super::upcast::<VirtualDeviceFileBackingInfo>)
            .and_then(|f| f.datastore.clone());
        let (uuid, disk_mode, thin) = backing.map_or((None, None, None), |b| {
            if let Some(f) = b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>() {
                (
                    f.uuid.clone(),
                    Some(f.disk_mode.clone()),
                    f.thin_provisioned,
                )
            } else if let Some(f) = b.downcast_ref::<VirtualDiskSeSparseBackingInfo>() {
                (f.uuid.clone(), Some(f.disk_mode.clone()), None)
            } else if let Some(f) = b.downcast_ref::<VirtualDiskSparseVer2BackingInfo>() {
                (f.uuid.clone(), Some(f.disk_mode.clone()), None)
            } else if let Some(f) = b.downcast_ref::<VirtualDiskRawDiskMappingVer1BackingInfo>() {
                (f.uuid.clone(), f.disk_mode.clone(), None)
            } else if let Some(f) = b.downcast_ref::<VirtualDiskLocalPMemBackingInfo>() {
                (f.uuid.clone(), Some(f.disk_mode.clone()), None)
            } else {
                (None, None, None)
            }
        });
        Some(Self {
            capacity_bytes: vd
                .capacity_in_bytes
                .unwrap_or_else(|| disk.capacity_kb.saturating_mul(1024)),
            disk,
            uuid: uuid.filter(|u| !u.is_empty()),
            datastore,
            disk_mode: disk_mode.filter(|m| !m.is_empty()),
            thin,
        })
    }
}

/// The SCSI controller and free unit for a new disk, read from a VM's device list: the first
/// SCSI controller (in device order) with a free unit, skipping the units its devices use and
/// the controller's own (`scsiCtlrUnitNumber`, 7 when unset). `None` when every controller is
/// full or the VM has none.
///
/// ```
/// use vsphere_client::client::scsi_slot;
/// use vsphere_client::codec::Poly;
/// use vsphere_client::types::{VirtualDevice, VirtualDisk, VirtualLsiLogicSASController};
/// let mut ctl = VirtualLsiLogicSASController::default();
/// ctl.virtual_scsi_controller.virtual_controller.virtual_device.key = 1000;
/// let mut disk = VirtualDisk::default();
/// disk.virtual_device.controller_key = Some(1000);
/// disk.virtual_device.unit_number = Some(0);
/// let devices: Vec<Poly<VirtualDevice>> = vec![Poly::new(ctl), Poly::new(disk)];
/// assert_eq!(scsi_slot(&devices), Some((1000, 1)));
/// ```
pub fn scsi_slot(devices: &[Poly<VirtualDevice>]) -> Option<(i32, i32)> {
    let controllers: Vec<(i32, Vec<i32>)> = devices
        .iter()
        .filter_map(|d| {
            let c = super::upcast::<VirtualSCSIController>(d.as_object())?;
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
    free_scsi_unit(&controllers)
}

/// The free unit on the first SCSI controller for a new disk (unit 7 is the controller's own).
///
/// ```
/// use vsphere_client::client::free_scsi_unit;
/// assert_eq!(free_scsi_unit(&[(1000, vec![0, 1, 2])]), Some((1000, 3)));
/// assert_eq!(free_scsi_unit(&[(1000, (0..7).chain(8..16).collect())]), None);
/// assert_eq!(free_scsi_unit(&[(1000, vec![0, 1, 2, 3, 4, 5, 6])]), Some((1000, 8)));
/// ```
pub fn free_scsi_unit(controllers: &[(i32, Vec<i32>)]) -> Option<(i32, i32)> {
    controllers.iter().find_map(|(key, used)| {
        (0..16)
            .filter(|u| *u != 7)
            .find(|u| !used.contains(u))
            .map(|u| (*key, u))
    })
}

impl Client {
    /// A handle on the VM `reference`.
    pub fn vm(&self, reference: ManagedObjectReference) -> VmHandle<'_> {
        VmHandle {
            client: self,
            vm: VirtualMachine::from_reference(reference),
        }
    }

    /// A handle on the host `reference`.
    pub fn host(&self, reference: ManagedObjectReference) -> HostHandle<'_> {
        HostHandle {
            client: self,
            host: HostSystem::from_reference(reference),
        }
    }

    /// A handle on the datastore `reference`.
    pub fn datastore(&self, reference: ManagedObjectReference) -> DatastoreHandle<'_> {
        DatastoreHandle {
            client: self,
            datastore: Datastore::from_reference(reference),
        }
    }

    /// A handle on the folder `reference`.
    pub fn folder(&self, reference: ManagedObjectReference) -> FolderHandle<'_> {
        FolderHandle {
            client: self,
            folder: Folder::from_reference(reference),
        }
    }

    /// A handle on the datacenter `reference`.
    pub fn datacenter(&self, reference: ManagedObjectReference) -> DatacenterHandle<'_> {
        DatacenterHandle {
            client: self,
            datacenter: Datacenter::from_reference(reference),
        }
    }

    /// A handle on the cluster `reference`.
    pub fn cluster(&self, reference: ManagedObjectReference) -> ClusterHandle<'_> {
        ClusterHandle {
            client: self,
            cluster: ClusterComputeResource::from_reference(reference),
        }
    }
}

impl VmHandle<'_> {
    /// The generated wrapper, for every other method.
    pub fn mo(&self) -> &VirtualMachine {
        &self.vm
    }

    /// The VM's reference.
    pub fn reference(&self) -> &ManagedObjectReference {
        self.vm.reference()
    }

    /// The power state (`runtime.powerState`).
    pub async fn power_state(&self) -> Result<VirtualMachinePowerState, Error> {
        let p = self
            .client
            .properties(self.reference(), &["runtime.powerState"])
            .await?;
        p.get("runtime.powerState").ok_or(Error::MissingResult {
            method: "VirtualMachine.runtime.powerState",
        })
    }

    /// Powers the VM on and waits for the task.
    pub async fn power_on(&self) -> Result<(), Error> {
        let t = self.vm.power_on_vm_task(self.client, None).await?;
        self.client.wait_task(t).await
    }

    /// Powers the VM off and waits for the task.
    pub async fn power_off(&self) -> Result<(), Error> {
        let t = self.vm.power_off_vm_task(self.client).await?;
        self.client.wait_task(t).await
    }

    /// Applies `spec` (`ReconfigVM_Task`) and waits.
    pub async fn reconfigure(&self, spec: &VirtualMachineConfigSpec) -> Result<(), Error> {
        let t = self.vm.reconfig_vm_task(self.client, spec).await?;
        self.client.wait_task(t).await
    }

    /// Clones the VM into `folder` as `name` and returns the new VM.
    pub async fn clone_to(
        &self,
        folder: &ManagedObjectReference,
        name: &str,
        spec: &VirtualMachineCloneSpec,
    ) -> Result<ManagedObjectReference, Error> {
        let t = self
            .vm
            .clone_vm_task(self.client, folder, name, spec)
            .await?;
        self.client.wait_task(t).await
    }

    /// Destroys the VM (and its files) and waits.
    pub async fn destroy(&self) -> Result<(), Error> {
        let t = self.vm.destroy_task(self.client).await?;
        self.client.wait_task(t).await
    }

    /// The VM's devices (`config.hardware.device`).
    pub async fn devices(&self) -> Result<Vec<Poly<VirtualDevice>>, Error> {
        let mut p = self
            .client
            .properties(self.reference(), &["config.hardware.device"])
            .await?;
        Ok(p.take_many("config.hardware.device"))
    }

    /// The VM's disks.
    pub async fn disks(&self) -> Result<Vec<VmDisk>, Error> {
        Ok(self
            .devices()
            .await?
            .iter()
            .filter_map(VmDisk::from_device)
            .collect())
    }

    /// The VM's disks with their backing details (UUID, datastore, bytes, mode): one read of
    /// `config.hardware.device`.
    pub async fn disk_details(&self) -> Result<Vec<VmDiskDetails>, Error> {
        Ok(self
            .devices()
            .await?
            .iter()
            .filter_map(VmDiskDetails::from_device)
            .collect())
    }

    /// Where a new disk goes: the SCSI controller key and free unit ([`scsi_slot`] on the
    /// VM's devices, one read), or `None` when every SCSI controller is full or there is none.
    pub async fn free_scsi_slot(&self) -> Result<Option<(i32, i32)>, Error> {
        Ok(scsi_slot(&self.devices().await?))
    }

    /// Adds a new thin disk of `capacity_kb` on the first SCSI controller with a free unit,
    /// in the VM's folder on its datastore (`ReconfigVM_Task` with a `create` file operation).
    pub async fn add_disk(&self, capacity_kb: i64) -> Result<(), Error> {
        let Some((controller, unit)) = self.free_scsi_slot().await? else {
            return Err(Error::Unsupported {
                feature: "adding a disk to a VM without a free SCSI controller unit",
            });
        };
        let mut backing = VirtualDiskFlatVer2BackingInfo {
            disk_mode: "persistent".to_owned(),
            thin_provisioned: Some(true),
            ..VirtualDiskFlatVer2BackingInfo::default()
        };
        backing.virtual_device_file_backing_info.file_name = String::new();
        let mut disk = VirtualDisk {
            capacity_in_kb: capacity_kb,
            ..VirtualDisk::default()
        };
        disk.virtual_device.key = -1;
        disk.virtual_device.controller_key = Some(controller);
        disk.virtual_device.unit_number = Some(unit);
        disk.virtual_device.backing = Some(Poly::new(backing));
        let change = VirtualDeviceConfigSpec {
            operation: Some(VirtualDeviceConfigSpecOperation::Add),
            file_operation: Some(VirtualDeviceConfigSpecFileOperation::Create),
            device: Some(Poly::new(disk)),
            ..VirtualDeviceConfigSpec::default()
        };
        self.reconfigure(&VirtualMachineConfigSpec {
            device_change: vec![Poly::new(change)],
            ..VirtualMachineConfigSpec::default()
        })
        .await
    }

    /// Removes the disk with device key `key`; with `destroy_file` its backing file is deleted.
    pub async fn remove_disk(&self, key: i32, destroy_file: bool) -> Result<(), Error> {
        let devices = self.devices().await?;
        let Some(device) = devices.into_iter().find(|d| d.base().key == key) else {
            return Err(Error::NotFound {
                kind: "disk",
                path: format!("{} device key {key}", self.reference().value),
            });
        };
        let change = VirtualDeviceConfigSpec {
            operation: Some(VirtualDeviceConfigSpecOperation::Remove),
            file_operation: destroy_file.then_some(VirtualDeviceConfigSpecFileOperation::Destroy),
            device: Some(device),
            ..VirtualDeviceConfigSpec::default()
        };
        self.reconfigure(&VirtualMachineConfigSpec {
            device_change: vec![Poly::new(change)],
            ..VirtualMachineConfigSpec::default()
        })
        .await
    }

    /// Attaches the First Class Disk `id` on `datastore` (`AttachDisk_Task`), after checking
    /// that no VM has it already: [`Error::AttachedElsewhere`] names the VM that does.
    pub async fn attach_disk(
        &self,
        id: &str,
        datastore: &ManagedObjectReference,
    ) -> Result<(), Error> {
        let file = self
            .client
            .disks()?
            .retrieve(id, datastore)
            .await
            .ok()
            .and_then(|o| super::fcd::backing_file(&o));
        if let Some(vm) = self.client.fcd_consumer(id, file.as_deref()).await? {
            return Err(Error::AttachedElsewhere {
                disk: id.to_owned(),
                vm,
            });
        }
        let disk_id = ID {
            id: id.to_owned(),
            ..ID::default()
        };
        let t = self
            .vm
            .attach_disk_task(self.client, &disk_id, datastore, None, None)
            .await?;
        self.client.wait_task(t).await
    }

    /// Detaches the First Class Disk `id` (`DetachDisk_Task`); the disk itself is kept.
    pub async fn detach_disk(&self, id: &str) -> Result<(), Error> {
        let disk_id = ID {
            id: id.to_owned(),
            ..ID::default()
        };
        let t = self.vm.detach_disk_task(self.client, &disk_id).await?;
        self.client.wait_task(t).await
    }
}

impl Client {
    /// The name of the VM that has the First Class Disk `id` (matched by `vDiskId`, or by
    /// `backing_file` when given), if any: one property-collector scan over every VM's
    /// `config.hardware.device`, which works on every server version.
    pub async fn fcd_consumer(
        &self,
        id: &str,
        backing_file: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let root = self.service_content().root_folder.clone();
        let view = self
            .container_view(&root, &["VirtualMachine"], true)
            .await?;
        let mut pages = view.retrieve(
            &[("VirtualMachine", &["name", "config.hardware.device"])],
            Some(500),
        );
        let mut found = None;
        while let Some(page) = pages.next_page().await? {
            for content in page {
                let mut p = Properties::from(content);
                let devices: Vec<Poly<VirtualDevice>> = p.take_many("config.hardware.device");
                let has = devices.iter().filter_map(VmDisk::from_device).any(|d| {
                    d.fcd_id.as_deref() == Some(id)
                        || (backing_file.is_some() && d.file.as_deref() == backing_file)
                });
                if has {
                    found = Some(
                        p.get::<String>("name")
                            .unwrap_or_else(|| p.reference().value.clone()),
                    );
                    break;
                }
            }
            if found.is_some() {
                break;
            }
        }
        drop(pages);
        view.close().await?;
        Ok(found)
    }
}

/// A host.
#[derive(Clone, Debug)]
pub struct HostHandle<'c> {
    client: &'c Client,
    host: HostSystem,
}

impl HostHandle<'_> {
    /// The generated wrapper.
    pub fn mo(&self) -> &HostSystem {
        &self.host
    }

    /// The connection state (`runtime.connectionState`).
    pub async fn connection_state(&self) -> Result<HostSystemConnectionState, Error> {
        let p = self
            .client
            .properties(self.host.reference(), &["runtime.connectionState"])
            .await?;
        p.get("runtime.connectionState")
            .ok_or(Error::MissingResult {
                method: "HostSystem.runtime.connectionState",
            })
    }

    /// The VMs on the host (`vm`).
    pub async fn vms(&self) -> Result<Vec<ManagedObjectReference>, Error> {
        let mut p = self
            .client
            .properties(self.host.reference(), &["vm"])
            .await?;
        Ok(p.take_many("vm"))
    }
}

/// A datastore's capacity and free space, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatastoreSpace {
    /// `summary.capacity`.
    pub capacity: i64,
    /// `summary.freeSpace`.
    pub free_space: i64,
}

/// A datastore.
#[derive(Clone, Debug)]
pub struct DatastoreHandle<'c> {
    pub(super) client: &'c Client,
    pub(super) datastore: Datastore,
}

impl DatastoreHandle<'_> {
    /// The generated wrapper.
    pub fn mo(&self) -> &Datastore {
        &self.datastore
    }

    /// Capacity and free space (`summary.capacity`, `summary.freeSpace`).
    pub async fn space(&self) -> Result<DatastoreSpace, Error> {
        let p = self
            .client
            .properties(
                self.datastore.reference(),
                &["summary.capacity", "summary.freeSpace"],
            )
            .await?;
        match (p.get("summary.capacity"), p.get("summary.freeSpace")) {
            (Some(capacity), Some(free_space)) => Ok(DatastoreSpace {
                capacity,
                free_space,
            }),
            _ => Err(Error::MissingResult {
                method: "Datastore.summary",
            }),
        }
    }
}

/// A folder.
#[derive(Clone, Debug)]
pub struct FolderHandle<'c> {
    client: &'c Client,
    folder: Folder,
}

impl FolderHandle<'_> {
    /// The generated wrapper.
    pub fn mo(&self) -> &Folder {
        &self.folder
    }

    /// The folder's children (`childEntity`).
    pub async fn children(&self) -> Result<Vec<ManagedObjectReference>, Error> {
        let mut p = self
            .client
            .properties(self.folder.reference(), &["childEntity"])
            .await?;
        Ok(p.take_many("childEntity"))
    }

    /// Creates a subfolder `name`.
    pub async fn create_folder(&self, name: &str) -> Result<ManagedObjectReference, Error> {
        self.folder.create_folder(self.client, name).await
    }
}

/// A datacenter's four top folders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatacenterFolders {
    /// `vmFolder`.
    pub vm: ManagedObjectReference,
    /// `hostFolder`.
    pub host: ManagedObjectReference,
    /// `datastoreFolder`.
    pub datastore: ManagedObjectReference,
    /// `networkFolder`.
    pub network: ManagedObjectReference,
}

/// A datacenter.
#[derive(Clone, Debug)]
pub struct DatacenterHandle<'c> {
    client: &'c Client,
    datacenter: Datacenter,
}

impl DatacenterHandle<'_> {
    /// The generated wrapper.
    pub fn mo(&self) -> &Datacenter {
        &self.datacenter
    }

    /// The datacenter's folders.
    pub async fn folders(&self) -> Result<DatacenterFolders, Error> {
        let p = self
            .client
            .properties(
                self.datacenter.reference(),
                &["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"],
            )
            .await?;
        let get = |k: &str| {
            p.get::<ManagedObjectReference>(k)
                .ok_or(Error::MissingResult {
                    method: "Datacenter folders",
                })
        };
        Ok(DatacenterFolders {
            vm: get("vmFolder")?,
            host: get("hostFolder")?,
            datastore: get("datastoreFolder")?,
            network: get("networkFolder")?,
        })
    }
}

/// A cluster.
#[derive(Clone, Debug)]
pub struct ClusterHandle<'c> {
    client: &'c Client,
    cluster: ClusterComputeResource,
}

impl ClusterHandle<'_> {
    /// The generated wrapper.
    pub fn mo(&self) -> &ClusterComputeResource {
        &self.cluster
    }

    /// The cluster's hosts (`host`).
    pub async fn hosts(&self) -> Result<Vec<ManagedObjectReference>, Error> {
        let mut p = self
            .client
            .properties(self.cluster.reference(), &["host"])
            .await?;
        Ok(p.take_many("host"))
    }

    /// The cluster's root resource pool (`resourcePool`).
    pub async fn resource_pool(&self) -> Result<ManagedObjectReference, Error> {
        let p = self
            .client
            .properties(self.cluster.reference(), &["resourcePool"])
            .await?;
        p.get("resourcePool").ok_or(Error::MissingResult {
            method: "ClusterComputeResource.resourcePool",
        })
    }
}
