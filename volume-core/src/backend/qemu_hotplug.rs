//! Hot-plug of qcow2 volumes into running QEMU VMs (feature `qemu-hotplug`): a
//! [`HotPlug`] for the [qcow2 backend](super::qcow2) over vmenv-core's `DiskHotplug`
//! capability (QMP `blockdev-add` + `device_add virtio-blk-pci` on a `pcie-root-port`, and
//! `device_del` + `blockdev-del` to unplug).
//!
//! Nodes are declared: [`QemuHotPlug::vm`] says that a node is a VM of the hypervisor; every
//! other node is served by a fallback [`HotPlug`] (by default [`ImageHandoff`]: the node is a
//! host-side consumer that gets the image file under an exclusive lock). A node declared as a
//! VM that the hypervisor does not know is [`Error::UnknownNode`], and one that is not running
//! [`Error::NodeUnavailable`], both found before a move journals anything.
//!
//! - **plug** is idempotent: the VM's hot-plugged disks are read first (vmenv-core records them
//!   per VM), and an image already plugged is returned as it is. A VM that is not running is
//!   refused before the attach ([`Error::NodeUnavailable`]): QEMU cannot hot-plug into a VM
//!   that has no process.
//! - **unplug** detaches the disk whose image is the volume's; a VM that does not run has no
//!   disk plugged (its QEMU process, and with it the image's write lock, is gone), so that is
//!   success: a dead VM is force-detached by the orchestrator after it fenced the node.
//! - **device**: the path inside the guest, `/dev/disk/by-id/virtio-<serial>`, format raw (the
//!   guest sees a plain block device; QEMU reads the qcow2). The disk is plugged with
//!   `serial=<serial>` ([`guest_serial`]: the volume id's last 20 characters, since virtio-blk
//!   reports at most 20 bytes and the ids the crate generates start with `vol-` and the
//!   creation time, while their ends carry the process id and a counter), so a guest without
//!   udev finds it too, by `/sys/block/*/serial`.
//!
//! ```no_run
//! # async fn demo() -> volume_core::Result<()> {
//! use std::sync::Arc;
//! use vmenv_core::qemu::{QemuConfig, QemuHypervisor};
//! use volume_core::backend::qcow2::Qcow2Backend;
//! use volume_core::backend::qemu_hotplug::QemuHotPlug;
//! use volume_core::NodeId;
//!
//! let hv = Arc::new(QemuHypervisor::new(QemuConfig::new("/var/lib/vms")));
//! let plug = QemuHotPlug::new(hv).vm(NodeId::new("vm-a")?, vmenv_core::VmName::new("a").unwrap());
//! let backend = Qcow2Backend::new("/var/lib/volumes", Box::new(plug))?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use vmenv_core::{Hypervisor, VmName, VmState};

use super::qcow2::{HotPlug, ImageHandoff};
use crate::error::{BoxedSource, Error, Result};
use crate::model::{Device, DeviceFormat, NodeId, VolumeId};

/// The serial a volume's disk carries inside a VM: the id's last
/// [`VIRTIO_BLK_SERIAL_MAX`](vmenv_core::qemu::VIRTIO_BLK_SERIAL_MAX) characters (all of it
/// when shorter), with every character udev would not keep (anything but ASCII letters,
/// digits, `-` and `_`) replaced by `_`.
///
/// ```
/// use volume_core::backend::qemu_hotplug::{guest_device_path, guest_serial};
/// use volume_core::VolumeId;
/// let id = VolumeId::new("vol-187c2a9d4e5f6a7b-1f2e-3").unwrap();
/// assert_eq!(guest_serial(&id), "c2a9d4e5f6a7b-1f2e-3");
/// assert_eq!(guest_serial(&VolumeId::new("db.1").unwrap()), "db_1");
/// assert_eq!(
///     guest_device_path(&VolumeId::new("db.1").unwrap()).to_str(),
///     Some("/dev/disk/by-id/virtio-db_1")
/// );
/// ```
pub fn guest_serial(id: &VolumeId) -> String {
    let s = id.as_str();
    let max = vmenv_core::qemu::VIRTIO_BLK_SERIAL_MAX;
    let tail: Vec<char> = s.chars().collect();
    let start = tail.len().saturating_sub(max);
    tail[start..]
        .iter()
        .map(|c| {
            if c.is_ascii_alphanumeric() || *c == '-' || *c == '_' {
                *c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where a guest with udev finds the volume's disk: `/dev/disk/by-id/virtio-<serial>`.
pub fn guest_device_path(id: &VolumeId) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/disk/by-id/virtio-{}", guest_serial(id)))
}

/// Plugs qcow2 images into QEMU VMs; see the [module documentation](self).
pub struct QemuHotPlug {
    hv: Arc<dyn Hypervisor>,
    vms: BTreeMap<NodeId, VmName>,
    fallback: Box<dyn HotPlug>,
}

impl Debug for QemuHotPlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QemuHotPlug")
            .field("hypervisor", &self.hv.kind())
            .field("vms", &self.vms)
            .field("fallback", &self.fallback)
            .finish()
    }
}

fn hv_error(op: &'static str, node: &NodeId, e: vmenv_core::Error) -> Error {
    Error::Hypervisor {
        op,
        node: node.clone(),
        source: Box::new(e) as BoxedSource,
    }
}

impl QemuHotPlug {
    /// Hot-plug through `hv` (which must offer disk hot-plug), no VM nodes declared yet, and
    /// [`ImageHandoff`] for every other node.
    pub fn new(hv: Arc<dyn Hypervisor>) -> Self {
        Self {
            hv,
            vms: BTreeMap::new(),
            fallback: Box::new(ImageHandoff::default()),
        }
    }

    /// Declares that `node` is the VM `vm` of the hypervisor.
    #[must_use]
    pub fn vm(mut self, node: NodeId, vm: VmName) -> Self {
        self.vms.insert(node, vm);
        self
    }

    /// Serves the nodes that are not VMs with `fallback`.
    #[must_use]
    pub fn fallback(mut self, fallback: Box<dyn HotPlug>) -> Self {
        self.fallback = fallback;
        self
    }
}

#[async_trait]
impl HotPlug for QemuHotPlug {
    async fn check_node(&self, node: &NodeId) -> Result<()> {
        let Some(vm) = self.vms.get(node) else {
            return self.fallback.check_node(node).await;
        };
        self.hv
            .require_disk_hotplug()
            .map_err(|e| hv_error("hot-plug", node, e))?;
        match self.hv.status(vm).await {
            Ok(s) if s.state == VmState::Running => Ok(()),
            Ok(s) if s.state == VmState::None => Err(Error::UnknownNode {
                node: node.clone(),
                reason: format!("the hypervisor has no VM {vm}"),
            }),
            Ok(s) => Err(Error::NodeUnavailable {
                node: node.clone(),
                reason: format!(
                    "VM {vm} is {}: only a running VM takes a hot-plugged disk",
                    s.raw
                ),
            }),
            Err(vmenv_core::Error::NotFound { .. }) => Err(Error::UnknownNode {
                node: node.clone(),
                reason: format!("the hypervisor has no VM {vm}"),
            }),
            Err(e) => Err(hv_error("status", node, e)),
        }
    }

    async fn plug(&self, node: &NodeId, volume: &VolumeId, image: &Path) -> Result<Device> {
        let Some(vm) = self.vms.get(node) else {
            return self.fallback.plug(node, volume, image).await;
        };
        let disks = self
            .hv
            .require_disk_hotplug()
            .map_err(|e| hv_error("hot-plug", node, e))?;
        let plugged = disks
            .list_attached_disks(vm)
            .await
            .map_err(|e| hv_error("list hot-plugged disks", node, e))?;
        if !plugged.iter().any(|d| d.path == image) {
            disks
                .attach_disk_with_serial(vm, image, &guest_serial(volume))
                .await
                .map_err(|e| hv_error("hot-plug", node, e))?;
        }
        Ok(Device {
            path: guest_device_path(volume),
            format: DeviceFormat::Raw,
        })
    }

    async fn unplug(&self, node: &NodeId, volume: &VolumeId, image: &Path) -> Result<()> {
        let Some(vm) = self.vms.get(node) else {
            return self.fallback.unplug(node, volume, image).await;
        };
        let disks = self
            .hv
            .require_disk_hotplug()
            .map_err(|e| hv_error("hot-unplug", node, e))?;
        // A VM that does not run lists nothing: nothing to unplug.
        let plugged = disks
            .list_attached_disks(vm)
            .await
            .map_err(|e| hv_error("list hot-plugged disks", node, e))?;
        for d in plugged.iter().filter(|d| d.path == image) {
            disks
                .detach_disk(vm, &d.id)
                .await
                .map_err(|e| hv_error("hot-unplug", node, e))?;
        }
        Ok(())
    }
}
