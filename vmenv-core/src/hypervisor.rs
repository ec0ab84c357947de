//! The hypervisor abstraction: a lifecycle core every backend implements, and optional
//! capabilities discovered at run time.
//!
//! The split follows Lima's driver model: [`Hypervisor`] is the lifecycle core; each optional
//! capability is its own trait ([`Snapshots`], [`SharedFolders`], [`PortForwards`], [`Nics`],
//! [`DiskHotplug`], [`GuestExec`]) that a backend hands out through an accessor returning
//! `Option`. [`Hypervisor::capabilities`] summarises them, and the `require_*` helpers turn a
//! missing one into a typed [`Error::Unsupported`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::model::{
    AttachedDisk, ExecOutput, GuestAddress, Nic, PortForward, SharedFolder, SnapshotInfo,
    StopOutcome, VmName, VmSpec, VmStatus,
};

/// One optional capability.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum Capability {
    /// Snapshots: create, list, apply, delete.
    Snapshots,
    /// Host folders shared with the guest.
    SharedFolders,
    /// Host-to-guest port forwards.
    PortForwards,
    /// Listing NICs.
    Nics,
    /// Attaching and detaching disks while the VM runs.
    DiskHotplug,
    /// Running commands in the guest (over SSH).
    GuestExec,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Snapshots,
        Self::SharedFolders,
        Self::PortForwards,
        Self::Nics,
        Self::DiskHotplug,
        Self::GuestExec,
    ];

    /// A short name, as used in [`Error::Unsupported`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshots => "snapshots",
            Self::SharedFolders => "shared folders",
            Self::PortForwards => "port forwarding",
            Self::Nics => "NIC listing",
            Self::DiskHotplug => "disk hot-plug",
            Self::GuestExec => "guest command execution",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Capability`]s.
///
/// ```
/// use vmenv_core::{Capabilities, Capability};
/// let caps = Capabilities::empty().with(Capability::Snapshots);
/// assert!(caps.contains(Capability::Snapshots));
/// assert!(!caps.contains(Capability::Nics));
/// assert_eq!(caps.iter().count(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct Capabilities(u8);

impl Capabilities {
    /// No capabilities.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The set plus one capability.
    #[must_use]
    pub const fn with(self, c: Capability) -> Self {
        Self(self.0 | c.bit())
    }

    /// Whether the set holds `c`.
    pub const fn contains(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }

    /// The capabilities in the set.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

/// The lifecycle core every backend implements.
///
/// Implementations are `Send + Sync` and used as `dyn Hypervisor`.
#[async_trait]
pub trait Hypervisor: Send + Sync {
    /// The backend's kind (`"qemu"`, `"appcatalyst"`, `"vmrest"`, ...).
    fn kind(&self) -> &'static str;

    /// Creates a VM from a template, an image or a clone of another VM. It is left stopped.
    async fn create(&self, spec: &VmSpec) -> Result<()>;

    /// The VMs this backend knows.
    async fn list(&self) -> Result<Vec<VmName>>;

    /// The spec a VM was created with, as far as the backend can tell.
    async fn spec(&self, name: &VmName) -> Result<VmSpec>;

    /// Powers a VM on (or resumes a suspended one).
    async fn start(&self, name: &VmName) -> Result<()>;

    /// Asks the guest to shut down; after `grace` powers it off hard.
    async fn stop(&self, name: &VmName, grace: Duration) -> Result<StopOutcome>;

    /// Powers a VM off hard, at once.
    async fn kill(&self, name: &VmName) -> Result<()>;

    /// Stops the VM's CPUs, keeping its memory in the hypervisor.
    async fn pause(&self, name: &VmName) -> Result<()>;

    /// Continues a paused VM.
    async fn resume(&self, name: &VmName) -> Result<()>;

    /// Saves the VM's state to disk and stops it; [`Hypervisor::start`] resumes it.
    async fn suspend(&self, name: &VmName) -> Result<()>;

    /// Deletes a stopped VM and its files.
    async fn destroy(&self, name: &VmName) -> Result<()>;

    /// The VM's state; [`crate::VmState::None`] when it does not exist.
    async fn status(&self, name: &VmName) -> Result<VmStatus>;

    /// Waits until the guest has an address and its SSH server answers, at most `deadline`.
    async fn ip(&self, name: &VmName, deadline: Duration) -> Result<GuestAddress>;

    /// The boot phases the guest reported so far, for progress displays; empty when the
    /// backend has no console to read them from.
    async fn boot_phases(&self, _name: &VmName) -> Vec<String> {
        Vec::new()
    }

    /// Snapshots, if the backend has them.
    fn snapshots(&self) -> Option<&dyn Snapshots> {
        None
    }

    /// Shared folders, if the backend has them.
    fn shared_folders(&self) -> Option<&dyn SharedFolders> {
        None
    }

    /// Port forwarding, if the backend has it.
    fn port_forwards(&self) -> Option<&dyn PortForwards> {
        None
    }

    /// NIC listing, if the backend has it.
    fn nics(&self) -> Option<&dyn Nics> {
        None
    }

    /// Disk hot-plug, if the backend has it.
    fn disk_hotplug(&self) -> Option<&dyn DiskHotplug> {
        None
    }

    /// Guest command execution, if the backend has it.
    fn guest_exec(&self) -> Option<&dyn GuestExec> {
        None
    }

    /// The optional capabilities this backend offers, discovered from the accessors.
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::empty();
        let present = [
            (Capability::Snapshots, self.snapshots().is_some()),
            (Capability::SharedFolders, self.shared_folders().is_some()),
            (Capability::PortForwards, self.port_forwards().is_some()),
            (Capability::Nics, self.nics().is_some()),
            (Capability::DiskHotplug, self.disk_hotplug().is_some()),
            (Capability::GuestExec, self.guest_exec().is_some()),
        ];
        for (c, p) in present {
            if p {
                caps = caps.with(c);
            }
        }
        caps
    }

    /// Snapshots, or [`Error::Unsupported`].
    fn require_snapshots(&self) -> Result<&dyn Snapshots> {
        self.snapshots().ok_or(unsupported(Capability::Snapshots))
    }

    /// Shared folders, or [`Error::Unsupported`].
    fn require_shared_folders(&self) -> Result<&dyn SharedFolders> {
        self.shared_folders()
            .ok_or(unsupported(Capability::SharedFolders))
    }

    /// Port forwarding, or [`Error::Unsupported`].
    fn require_port_forwards(&self) -> Result<&dyn PortForwards> {
        self.port_forwards()
            .ok_or(unsupported(Capability::PortForwards))
    }

    /// NIC listing, or [`Error::Unsupported`].
    fn require_nics(&self) -> Result<&dyn Nics> {
        self.nics().ok_or(unsupported(Capability::Nics))
    }

    /// Disk hot-plug, or [`Error::Unsupported`].
    fn require_disk_hotplug(&self) -> Result<&dyn DiskHotplug> {
        self.disk_hotplug()
            .ok_or(unsupported(Capability::DiskHotplug))
    }

    /// Guest command execution, or [`Error::Unsupported`].
    fn require_guest_exec(&self) -> Result<&dyn GuestExec> {
        self.guest_exec().ok_or(unsupported(Capability::GuestExec))
    }
}

fn unsupported(c: Capability) -> Error {
    Error::Unsupported {
        feature: c.as_str(),
    }
}

/// Snapshots of a VM.
#[async_trait]
pub trait Snapshots: Send + Sync {
    /// Takes a snapshot (with memory state when the VM runs).
    async fn create_snapshot(&self, name: &VmName, tag: &str) -> Result<()>;
    /// Lists snapshots.
    async fn list_snapshots(&self, name: &VmName) -> Result<Vec<SnapshotInfo>>;
    /// Returns the VM to a snapshot.
    async fn apply_snapshot(&self, name: &VmName, tag: &str) -> Result<()>;
    /// Deletes a snapshot.
    async fn delete_snapshot(&self, name: &VmName, tag: &str) -> Result<()>;
}

/// Host folders shared with a guest.
#[async_trait]
pub trait SharedFolders: Send + Sync {
    /// Adds a share (backends may require the VM to be stopped).
    async fn add_shared_folder(&self, name: &VmName, folder: &SharedFolder) -> Result<()>;
    /// Lists shares.
    async fn list_shared_folders(&self, name: &VmName) -> Result<Vec<SharedFolder>>;
    /// Removes a share by name.
    async fn remove_shared_folder(&self, name: &VmName, share: &str) -> Result<()>;
}

/// Host-to-guest port forwards.
#[async_trait]
pub trait PortForwards: Send + Sync {
    /// Adds a forward; returns it with the host port the backend chose when it was 0.
    async fn add_port_forward(&self, name: &VmName, forward: PortForward) -> Result<PortForward>;
    /// Lists forwards.
    async fn list_port_forwards(&self, name: &VmName) -> Result<Vec<PortForward>>;
    /// Removes the forward of a host port.
    async fn remove_port_forward(&self, name: &VmName, host_port: u16) -> Result<()>;
}

/// NICs of a VM.
#[async_trait]
pub trait Nics: Send + Sync {
    /// Lists the NICs.
    async fn list_nics(&self, name: &VmName) -> Result<Vec<Nic>>;
}

/// Disks attached while the VM runs.
#[async_trait]
pub trait DiskHotplug: Send + Sync {
    /// Attaches a disk image to a running VM.
    async fn attach_disk(&self, name: &VmName, image: &Path) -> Result<AttachedDisk>;
    /// Attaches a disk image to a running VM with a serial number the guest sees
    /// (`/sys/block/<dev>/serial`, `/dev/disk/by-id/virtio-<serial>`), so the guest can find the
    /// disk by a name of the caller's choosing. Backends that cannot set a serial refuse with
    /// [`Error::Unsupported`] (the default).
    async fn attach_disk_with_serial(
        &self,
        name: &VmName,
        image: &Path,
        serial: &str,
    ) -> Result<AttachedDisk> {
        let _ = (name, image, serial);
        Err(Error::Unsupported {
            feature: "disk serial numbers on this backend",
        })
    }
    /// Detaches a disk attached with [`DiskHotplug::attach_disk`].
    async fn detach_disk(&self, name: &VmName, id: &str) -> Result<()>;
    /// Lists disks attached at run time.
    async fn list_attached_disks(&self, name: &VmName) -> Result<Vec<AttachedDisk>>;
}

/// Commands run in the guest.
#[async_trait]
pub trait GuestExec: Send + Sync {
    /// Runs a shell command in the guest and returns its output; a non-zero exit is a result,
    /// not an error.
    async fn exec(&self, name: &VmName, command: &str) -> Result<ExecOutput>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bits_are_distinct() {
        let mut all = Capabilities::empty();
        for c in Capability::ALL {
            assert!(!all.contains(c));
            all = all.with(c);
        }
        assert_eq!(all.iter().collect::<Vec<_>>(), Capability::ALL.to_vec());
    }

    #[test]
    fn missing_capability_is_a_typed_unsupported_error() {
        let e = unsupported(Capability::Snapshots);
        assert!(matches!(
            e,
            Error::Unsupported {
                feature: "snapshots"
            }
        ));
    }
}
