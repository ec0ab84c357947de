//! The vSphere backend (feature `vsphere`): VMs cloned from template VMs on vCenter, through
//! `vsphere-client`.
//!
//! | vmenv-core | vSphere |
//! |---|---|
//! | create | `CloneVM_Task` of the template VM (an inventory path, or a VM name in the folder) into the configured folder and resource pool, with the spec's CPUs and memory; the source is kept in the VM's annotation |
//! | list | the VMs (not templates) directly in the folder |
//! | start / kill | `PowerOnVM_Task` / `PowerOffVM_Task` |
//! | stop | `ShutdownGuest`, then `PowerOffVM_Task` when the guest is not off within the grace time (or has no Tools) |
//! | suspend | `SuspendVM_Task`; start resumes |
//! | destroy | `Destroy_Task` of a stopped VM |
//! | status | `runtime.powerState`: `poweredOn` = Running, `poweredOff` = Stopped, `suspended` = Saved |
//! | ip | `guest.ipAddress` from VMware Tools, polled until the deadline; then, if configured, the SSH port must accept a connection |
//! | disk hot-plug | `ReconfigVM_Task` adding or removing a `VirtualDisk` backed by an existing VMDK (`[datastore] path.vmdk`) on a free SCSI unit; the file is never created or deleted |
//!
//! Pause and resume are [`Error::Unsupported`] (vSphere has no CPU pause; suspend is the
//! nearest), as are creating from a disk image, snapshots, shared folders, port forwarding
//! (VMs are routable), NIC listing and guest command execution, none of which is built here.
//!
//! ```no_run
//! # async fn demo() -> vmenv_core::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use vmenv_core::vsphere::{VsphereConfig, VsphereHypervisor};
//! use vmenv_core::{Hypervisor, Source, VmName, VmSpec};
//! use vsphere_client::client::{Client, ConnectOptions};
//!
//! let remote = |e| vmenv_core::Error::Remote { op: "connect", source: Box::new(e) };
//! let client = Client::connect(ConnectOptions::new("https://user:pass@vc/sdk").map_err(remote)?)
//!     .await
//!     .map_err(remote)?;
//! let hv = VsphereHypervisor::connect(Arc::new(client), VsphereConfig::new("/DC0/vm", "/DC0/host/DC0_C0/Resources")).await?;
//! let web = VmName::new("web-1")?;
//! hv.create(&VmSpec::new(web.clone(), Source::Template("/DC0/vm/photon-tpl".into()))).await?;
//! hv.start(&web).await?;
//! let addr = hv.ip(&web, Duration::from_secs(120)).await?;
//! println!("{}", addr.guest_ip);
//! # Ok(()) }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vsphere_client::Error as ClientError;
use vsphere_client::client::{Client, VmDisk, VmHandle, scsi_slot};
use vsphere_client::codec::{ManagedObjectReference, Obj, Poly, VimEnum as _};
use vsphere_client::mo::SearchIndex;
use vsphere_client::types::{
    VirtualDevice, VirtualDeviceConfigSpec, VirtualDeviceConfigSpecOperation,
    VirtualDeviceFileBackingInfo, VirtualDisk, VirtualDiskFlatVer2BackingInfo,
    VirtualMachineCloneSpec, VirtualMachineConfigSpec, VirtualMachineRelocateSpec,
};

use crate::error::{Error, Result};
use crate::hypervisor::{DiskHotplug, Hypervisor};
use crate::model::{
    AttachedDisk, GuestAddress, IpSource, Source, StopOutcome, VmName, VmSpec, VmState, VmStatus,
};

/// Wraps a client error (a call's, or a task's typed `TaskFailed`) as [`Error::Remote`].
fn remote(op: &'static str, e: ClientError) -> Error {
    Error::Remote {
        op,
        source: Box::new(e),
    }
}

/// The annotation prefix that records a VM's source.
const SOURCE_NOTE: &str = "vmenv-core source: ";

/// Where the backend puts and finds VMs.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct VsphereConfig {
    /// The inventory path of the VM folder the backend manages (`/DC0/vm/dev`).
    pub folder: String,
    /// The inventory path of the resource pool clones run in (`/DC0/host/C0/Resources`).
    pub resource_pool: String,
    /// When set, [`Hypervisor::ip`] also waits for this TCP port (SSH) on the guest to accept
    /// a connection; when `None`, the address VMware Tools reports is enough.
    pub ssh_port: Option<u16>,
}

impl VsphereConfig {
    /// A config for `folder` and `resource_pool`, waiting for SSH on port 22 in `ip`.
    pub fn new(folder: impl Into<String>, resource_pool: impl Into<String>) -> Self {
        Self {
            folder: folder.into(),
            resource_pool: resource_pool.into(),
            ssh_port: Some(22),
        }
    }
}

/// The vSphere hypervisor backend. Build it with [`VsphereHypervisor::connect`].
#[derive(Debug)]
pub struct VsphereHypervisor {
    client: Arc<Client>,
    index: SearchIndex,
    folder: ManagedObjectReference,
    pool: ManagedObjectReference,
    config: VsphereConfig,
}

/// How a VM's `runtime.powerState` maps onto Docker Machine's states.
///
/// ```
/// use vmenv_core::VmState;
/// use vmenv_core::vsphere::power_state;
/// assert_eq!(power_state("poweredOn"), VmState::Running);
/// assert_eq!(power_state("suspended"), VmState::Saved);
/// assert_eq!(power_state("poweredOff"), VmState::Stopped);
/// assert_eq!(power_state("unheard-of"), VmState::Error);
/// ```
pub fn power_state(raw: &str) -> VmState {
    match raw {
        "poweredOn" => VmState::Running,
        "poweredOff" => VmState::Stopped,
        "suspended" => VmState::Saved,
        _ => VmState::Error,
    }
}

fn source_note(source: &Source) -> Result<String> {
    let s = match source {
        Source::Template(t) => format!("template {t}"),
        Source::CloneOf(vm) => format!("clone-of {vm}"),
        Source::Image(_) => {
            return Err(Error::Unsupported {
                feature: "creating a vSphere VM from a disk image (clone a template VM)",
            });
        }
    };
    Ok(format!("{SOURCE_NOTE}{s}"))
}

fn parse_source_note(note: &str) -> Option<Source> {
    let rest = note.lines().find_map(|l| l.strip_prefix(SOURCE_NOTE))?;
    if let Some(t) = rest.strip_prefix("template ") {
        return Some(Source::Template(t.to_owned()));
    }
    rest.strip_prefix("clone-of ")
        .and_then(|n| VmName::new(n).ok())
        .map(Source::CloneOf)
}

/// A VM's power state as read.
struct Power {
    raw: String,
    state: VmState,
}

impl VsphereHypervisor {
    /// Connects the backend to a logged-in client: resolves the folder and the resource pool
    /// (two round trips).
    pub async fn connect(client: Arc<Client>, config: VsphereConfig) -> Result<Self> {
        let index = client
            .service_content()
            .search_index
            .clone()
            .map(SearchIndex::from_reference)
            .ok_or(Error::Unsupported {
                feature: "a vSphere server without a SearchIndex",
            })?;
        let find = async |path: &str, what: &'static str| -> Result<ManagedObjectReference> {
            index
                .find_by_inventory_path(&*client, path)
                .await
                .map_err(|e| remote("FindByInventoryPath", e))?
                .ok_or_else(|| Error::invalid(what, format!("nothing at inventory path {path:?}")))
        };
        let folder = find(&config.folder, "VM folder").await?;
        let pool = find(&config.resource_pool, "resource pool").await?;
        Ok(Self {
            client: client.clone(),
            index,
            folder,
            pool,
            config,
        })
    }

    /// The VM of this name in the folder, if any (one round trip).
    async fn find(&self, name: &str) -> Result<Option<ManagedObjectReference>> {
        Ok(self
            .index
            .find_child(&*self.client, &self.folder, name)
            .await
            .map_err(|e| remote("FindChild", e))?
            .filter(|r| r.type_ == "VirtualMachine"))
    }

    async fn vm(&self, name: &VmName) -> Result<VmHandle<'_>> {
        self.find(name.as_str())
            .await?
            .map(|r| self.client.vm(r))
            .ok_or_else(|| Error::NotFound {
                name: name.to_string(),
            })
    }

    async fn power(&self, vm: &VmHandle<'_>) -> Result<Power> {
        let raw = vm
            .power_state()
            .await
            .map_err(|e| remote("RetrievePropertiesEx(runtime.powerState)", e))?
            .as_wire()
            .to_owned();
        Ok(Power {
            state: power_state(&raw),
            raw,
        })
    }

    async fn power_off(&self, vm: &VmHandle<'_>) -> Result<()> {
        match vm.power_off().await {
            Ok(()) => Ok(()),
            Err(e) if e.is_fault("InvalidPowerState") => Ok(()),
            Err(e) => Err(remote("PowerOffVM_Task", e)),
        }
    }

    async fn template(&self, source: &Source) -> Result<VmHandle<'_>> {
        let (path, what) = match source {
            Source::Template(t) => (t.as_str(), "template"),
            Source::CloneOf(vm) => (vm.as_str(), "clone source"),
            Source::Image(_) => {
                return Err(Error::Unsupported {
                    feature: "creating a vSphere VM from a disk image (clone a template VM)",
                });
            }
        };
        let found = if path.starts_with('/') {
            self.index
                .find_by_inventory_path(&*self.client, path)
                .await
                .map_err(|e| remote("FindByInventoryPath", e))?
                .filter(|r| r.type_ == "VirtualMachine")
        } else {
            self.find(path).await?
        };
        found
            .map(|r| self.client.vm(r))
            .ok_or_else(|| Error::invalid(what, format!("no VM {path:?}")))
    }

    /// The VM's devices: its disks (key, file) and the first free unit on a SCSI controller.
    /// The VM's disks (device key, backing file) and a free SCSI unit (one round trip).
    async fn disks(&self, vm: &VmHandle<'_>) -> Result<(Vec<(i32, String)>, Option<(i32, i32)>)> {
        let devices = vm
            .devices()
            .await
            .map_err(|e| remote("RetrievePropertiesEx(config.hardware.device)", e))?;
        let disks = devices
            .iter()
            .filter_map(VmDisk::from_device)
            .map(|d| (d.key, d.file.unwrap_or_default()))
            .collect();
        Ok((disks, scsi_slot(&devices)))
    }

    async fn reconfigure(&self, vm: &VmHandle<'_>, change: VirtualDeviceConfigSpec) -> Result<()> {
        let spec = VirtualMachineConfigSpec {
            device_change: vec![Poly::new(change)],
            ..VirtualMachineConfigSpec::default()
        };
        vm.reconfigure(&spec)
            .await
            .map_err(|e| remote("ReconfigVM_Task", e))
    }
}

#[async_trait]
impl Hypervisor for VsphereHypervisor {
    fn kind(&self) -> &'static str {
        "vsphere"
    }

    async fn create(&self, spec: &VmSpec) -> Result<()> {
        spec.validate()?;
        let note = source_note(&spec.source)?;
        if !spec.shared_folders.is_empty() {
            return Err(Error::Unsupported {
                feature: "shared folders on vSphere (use sshfs or rsync)",
            });
        }
        if !spec.port_forwards.is_empty() {
            return Err(Error::Unsupported {
                feature: "port forwarding on vSphere (VMs are routable)",
            });
        }
        if self.find(spec.name.as_str()).await?.is_some() {
            return Err(Error::AlreadyExists {
                name: spec.name.to_string(),
            });
        }
        let template = self.template(&spec.source).await?;
        let clone = VirtualMachineCloneSpec {
            location: Some(Obj::new(VirtualMachineRelocateSpec {
                pool: Some(self.pool.clone()),
                ..VirtualMachineRelocateSpec::default()
            })),
            config: Some(Obj::new(VirtualMachineConfigSpec {
                num_cp_us: Some(i32::from(spec.cpus)),
                memory_mb: Some(i64::from(spec.memory_mib)),
                annotation: Some(note),
                ..VirtualMachineConfigSpec::default()
            })),
            power_on: false,
            template: false,
            ..VirtualMachineCloneSpec::default()
        };
        let vm = template
            .clone_to(&self.folder, spec.name.as_str(), &clone)
            .await
            .map_err(|e| {
                if e.is_fault("DuplicateName") {
                    Error::AlreadyExists {
                        name: spec.name.to_string(),
                    }
                } else {
                    remote("CloneVM_Task", e)
                }
            })?;
        // CPUs and memory: clones copy the template's; apply the spec's where the clone call
        // did not (vcsim copies the template's hardware and ignores the clone spec's config).
        let resize = VirtualMachineConfigSpec {
            num_cp_us: Some(i32::from(spec.cpus)),
            memory_mb: Some(i64::from(spec.memory_mib)),
            annotation: clone.config.as_ref().and_then(|c| c.annotation.clone()),
            ..VirtualMachineConfigSpec::default()
        };
        self.client
            .vm(vm)
            .reconfigure(&resize)
            .await
            .map_err(|e| remote("ReconfigVM_Task(cpus, memory)", e))
    }

    async fn list(&self) -> Result<Vec<VmName>> {
        let vms: Vec<ManagedObjectReference> = self
            .client
            .folder(self.folder.clone())
            .children()
            .await
            .map_err(|e| remote("RetrievePropertiesEx(childEntity)", e))?
            .into_iter()
            .filter(|r| r.type_ == "VirtualMachine")
            .collect();
        if vms.is_empty() {
            return Ok(Vec::new());
        }
        let spec = vsphere_client::client::RetrieveSpec::objects(
            "VirtualMachine",
            &["name", "config.template"],
            vms,
        );
        let objects = self
            .client
            .retrieve_pages(spec)
            .collect_all()
            .await
            .map_err(|e| remote("RetrievePropertiesEx(name)", e))?;
        let mut names = Vec::new();
        for o in objects {
            let p = vsphere_client::client::Properties::from(o);
            let template = p.get::<bool>("config.template").unwrap_or(false);
            if let (Some(n), false) = (p.get::<String>("name"), template)
                && let Ok(n) = VmName::new(n)
            {
                names.push(n);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn spec(&self, name: &VmName) -> Result<VmSpec> {
        let vm = self.vm(name).await?;
        let p = self
            .client
            .properties(
                vm.reference(),
                &[
                    "config.hardware.numCPU",
                    "config.hardware.memoryMB",
                    "config.annotation",
                ],
            )
            .await
            .map_err(|e| remote("RetrievePropertiesEx(config)", e))?;
        let mut spec = VmSpec::new(name.clone(), Source::Template(String::new()));
        if let Some(n) = p.get::<i32>("config.hardware.numCPU") {
            spec.cpus = u8::try_from(n).unwrap_or(u8::MAX);
        }
        if let Some(m) = p.get::<i32>("config.hardware.memoryMB") {
            spec.memory_mib = u32::try_from(m).unwrap_or(0);
        }
        if let Some(s) = p
            .get::<String>("config.annotation")
            .and_then(|a| parse_source_note(&a))
        {
            spec.source = s;
        }
        Ok(spec)
    }

    async fn start(&self, name: &VmName) -> Result<()> {
        let vm = self.vm(name).await?;
        match vm.power_on().await {
            Ok(()) => Ok(()),
            Err(e) if e.is_fault("InvalidPowerState") => match self.power(&vm).await?.state {
                VmState::Running => Ok(()),
                other => Err(Error::WrongState {
                    name: name.to_string(),
                    operation: "start",
                    state: other.to_string(),
                }),
            },
            Err(e) => Err(remote("PowerOnVM_Task", e)),
        }
    }

    async fn stop(&self, name: &VmName, grace: Duration) -> Result<StopOutcome> {
        let vm = self.vm(name).await?;
        match self.power(&vm).await?.state {
            VmState::Stopped => return Ok(StopOutcome::AlreadyStopped),
            VmState::Running => {}
            _ => {
                self.power_off(&vm).await?;
                return Ok(StopOutcome::Forced);
            }
        }
        if vm.mo().shutdown_guest(&*self.client).await.is_ok() {
            let until = Instant::now() + grace;
            let mut delay = Duration::from_millis(20);
            loop {
                if self.power(&vm).await?.state == VmState::Stopped {
                    return Ok(StopOutcome::Graceful);
                }
                if Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(delay.min(until.saturating_duration_since(Instant::now())))
                    .await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
        // No Tools, a refused shutdown, or a guest that did not stop in time.
        self.power_off(&vm).await?;
        Ok(StopOutcome::Forced)
    }

    async fn kill(&self, name: &VmName) -> Result<()> {
        let vm = self.vm(name).await?;
        self.power_off(&vm).await
    }

    async fn pause(&self, _name: &VmName) -> Result<()> {
        Err(Error::Unsupported {
            feature: "pause on vSphere (no CPU pause; use suspend)",
        })
    }

    async fn resume(&self, _name: &VmName) -> Result<()> {
        Err(Error::Unsupported {
            feature: "resume on vSphere (no CPU pause; start resumes a suspended VM)",
        })
    }

    async fn suspend(&self, name: &VmName) -> Result<()> {
        let vm = self.vm(name).await?;
        let power = self.power(&vm).await?;
        match power.state {
            VmState::Saved => Ok(()),
            VmState::Running => {
                let task = vm
                    .mo()
                    .suspend_vm_task(&*self.client)
                    .await
                    .map_err(|e| remote("SuspendVM_Task", e))?;
                self.client
                    .wait_task(task)
                    .await
                    .map_err(|e| remote("SuspendVM_Task", e))
            }
            other => Err(Error::WrongState {
                name: name.to_string(),
                operation: "suspend",
                state: other.to_string(),
            }),
        }
    }

    async fn destroy(&self, name: &VmName) -> Result<()> {
        let vm = self.vm(name).await?;
        let power = self.power(&vm).await?;
        if power.state != VmState::Stopped {
            return Err(Error::WrongState {
                name: name.to_string(),
                operation: "destroy",
                state: power.state.to_string(),
            });
        }
        vm.destroy().await.map_err(|e| remote("Destroy_Task", e))
    }

    async fn status(&self, name: &VmName) -> Result<VmStatus> {
        let Some(vm) = self.find(name.as_str()).await? else {
            return Ok(VmStatus {
                state: VmState::None,
                raw: String::new(),
            });
        };
        let power = self.power(&self.client.vm(vm)).await?;
        Ok(VmStatus {
            state: power.state,
            raw: power.raw,
        })
    }

    async fn ip(&self, name: &VmName, deadline: Duration) -> Result<GuestAddress> {
        let start = Instant::now();
        let until = start + deadline;
        let vm = self.vm(name).await?;
        let mut delay = Duration::from_millis(20);
        loop {
            let ip = self
                .client
                .properties(vm.reference(), &["guest.ipAddress"])
                .await
                .map_err(|e| remote("RetrievePropertiesEx(guest.ipAddress)", e))?
                .get::<String>("guest.ipAddress")
                .and_then(|s| s.parse::<IpAddr>().ok());
            if let Some(ip) = ip {
                let port = self.config.ssh_port.unwrap_or(22);
                let ssh = SocketAddr::new(ip, port);
                let ready = if self.config.ssh_port.is_some() {
                    let left = until.saturating_duration_since(Instant::now());
                    matches!(
                        tokio::time::timeout(
                            left.min(Duration::from_secs(1)),
                            tokio::net::TcpStream::connect(ssh)
                        )
                        .await,
                        Ok(Ok(_))
                    )
                } else {
                    true
                };
                if ready {
                    return Ok(GuestAddress {
                        guest_ip: ip,
                        source: IpSource::GuestTools,
                        ssh,
                    });
                }
            }
            if Instant::now() >= until {
                return Err(Error::Timeout {
                    what: format!("the IP address of VM {name} from VMware Tools"),
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
            tokio::time::sleep(delay.min(until.saturating_duration_since(Instant::now()))).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    fn disk_hotplug(&self) -> Option<&dyn DiskHotplug> {
        Some(self)
    }
}

/// Checks a datastore path (`[datastore] dir/disk.vmdk`).
fn datastore_path(image: &Path) -> Result<&str> {
    let s = image.to_str().unwrap_or_default();
    let ok = s.starts_with('[')
        && s.find("] ").is_some_and(|i| i > 1 && s.len() > i + 2)
        && Path::new(s)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("vmdk"));
    if ok {
        Ok(s)
    } else {
        Err(Error::invalid(
            "disk image",
            format!("{s:?}: give a datastore path such as \"[datastore1] dir/disk.vmdk\""),
        ))
    }
}

#[async_trait]
impl DiskHotplug for VsphereHypervisor {
    async fn attach_disk(&self, name: &VmName, image: &Path) -> Result<AttachedDisk> {
        let file = datastore_path(image)?;
        let vm = self.vm(name).await?;
        let (disks, free) = self.disks(&vm).await?;
        if let Some((key, _)) = disks.iter().find(|(_, f)| f == file) {
            return Ok(AttachedDisk {
                id: key.to_string(),
                path: image.to_path_buf(),
            });
        }
        let (controller, unit) = free.ok_or_else(|| Error::WrongState {
            name: name.to_string(),
            operation: "attach a disk to",
            state: "without a free SCSI unit".to_owned(),
        })?;
        let backing = VirtualDiskFlatVer2BackingInfo {
            virtual_device_file_backing_info: VirtualDeviceFileBackingInfo {
                file_name: file.to_owned(),
                ..VirtualDeviceFileBackingInfo::default()
            },
            disk_mode: "persistent".to_owned(),
            ..VirtualDiskFlatVer2BackingInfo::default()
        };
        let disk = VirtualDisk {
            virtual_device: VirtualDevice {
                key: -100,
                backing: Some(Poly::new(backing)),
                controller_key: Some(controller),
                unit_number: Some(unit),
                ..VirtualDevice::default()
            },
            ..VirtualDisk::default()
        };
        self.reconfigure(
            &vm,
            VirtualDeviceConfigSpec {
                operation: Some(VirtualDeviceConfigSpecOperation::Add),
                file_operation: None,
                device: Some(Poly::new(disk)),
                ..VirtualDeviceConfigSpec::default()
            },
        )
        .await?;
        let (disks, _) = self.disks(&vm).await?;
        let (key, _) = disks
            .into_iter()
            .find(|(_, f)| f == file)
            .ok_or_else(|| Error::Remote {
                op: "ReconfigVM_Task(add disk)",
                source: "the disk is not in the VM's devices after the reconfiguration".into(),
            })?;
        Ok(AttachedDisk {
            id: key.to_string(),
            path: image.to_path_buf(),
        })
    }

    async fn detach_disk(&self, name: &VmName, id: &str) -> Result<()> {
        let key: i32 = id
            .parse()
            .map_err(|_| Error::invalid("disk id", format!("{id:?} is not a device key")))?;
        let vm = self.vm(name).await?;
        let (disks, _) = self.disks(&vm).await?;
        if !disks.iter().any(|(k, _)| *k == key) {
            return Ok(());
        }
        let disk = VirtualDisk {
            virtual_device: VirtualDevice {
                key,
                ..VirtualDevice::default()
            },
            ..VirtualDisk::default()
        };
        self.reconfigure(
            &vm,
            VirtualDeviceConfigSpec {
                operation: Some(VirtualDeviceConfigSpecOperation::Remove),
                // Never `destroy`: the VMDK outlives the attachment.
                file_operation: None,
                device: Some(Poly::new(disk)),
                ..VirtualDeviceConfigSpec::default()
            },
        )
        .await
    }

    async fn list_attached_disks(&self, name: &VmName) -> Result<Vec<AttachedDisk>> {
        let vm = self.vm(name).await?;
        let (disks, _) = self.disks(&vm).await?;
        Ok(disks
            .into_iter()
            .map(|(key, file)| AttachedDisk {
                id: key.to_string(),
                path: file.into(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_survives_the_annotation() {
        for s in [
            Source::Template("/DC0/vm/tpl".to_owned()),
            Source::CloneOf(VmName::new("web-1").unwrap()),
        ] {
            let note = source_note(&s).unwrap();
            assert_eq!(parse_source_note(&format!("user text\n{note}")), Some(s));
        }
        assert!(source_note(&Source::Image("/x.qcow2".into())).is_err());
        assert_eq!(parse_source_note("no note here"), None);
    }

    #[test]
    fn disk_images_must_be_datastore_paths() {
        assert!(datastore_path(Path::new("[LocalDS_0] a/b.vmdk")).is_ok());
        for bad in ["/tmp/x.qcow2", "[ds]x.vmdk", "[] x.vmdk", "[ds] x.img"] {
            assert!(datastore_path(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
