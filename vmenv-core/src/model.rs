//! The data model shared by every backend: names, states, specs, capabilities.
//!
//! Everything here is plain data and validation, free of IO.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A VM's name: 1 to 63 characters of ASCII letters, digits, `-` and `_`, starting with a letter
/// or digit. The same rule keeps names safe as directory names, QEMU ids and URL path segments.
///
/// ```
/// use vmenv_core::VmName;
/// assert!(VmName::new("web-1").is_ok());
/// assert!(VmName::new("../etc").is_err());
/// ```
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VmName(String);

impl VmName {
    /// Validates and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok_len = (1..=63).contains(&name.len());
        let ok_first = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok_len && ok_first && ok_chars {
            Ok(Self(name))
        } else {
            Err(Error::invalid(
                "VM name",
                format!(
                    "{name:?}: use 1-63 ASCII letters, digits, '-' or '_', starting with a letter or digit"
                ),
            ))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for VmName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for VmName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<VmName> for String {
    fn from(n: VmName) -> Self {
        n.0
    }
}

/// A VM's state, in Docker Machine's state set (`libmachine/state`).
///
/// Backends map their own vocabulary onto it (AppCatalyst's nine power strings, vmrest's four,
/// QEMU's run states) and keep the raw string in [`VmStatus::raw`].
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VmState {
    /// Unknown to the backend (Docker Machine's `None`): not created.
    None,
    /// Running.
    Running,
    /// Paused: CPUs stopped, memory kept in the hypervisor process.
    Paused,
    /// Saved (suspended to disk).
    Saved,
    /// Powered off.
    Stopped,
    /// Shutting down.
    Stopping,
    /// Booting.
    Starting,
    /// In an error state.
    Error,
    /// The backend did not answer in time.
    Timeout,
}

impl VmState {
    /// Docker Machine's spelling of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Running => "Running",
            Self::Paused => "Paused",
            Self::Saved => "Saved",
            Self::Stopped => "Stopped",
            Self::Stopping => "Stopping",
            Self::Starting => "Starting",
            Self::Error => "Error",
            Self::Timeout => "Timeout",
        }
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state plus the backend's own word for it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct VmStatus {
    /// The state in Docker Machine's set.
    pub state: VmState,
    /// The backend's raw state string (`"powered on"`, `"poweredOff"`, `"running"`, ...).
    pub raw: String,
}

/// Where a VM's disk comes from.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A template registered with the backend, by name.
    Template(String),
    /// A disk image on the host; the VM gets a copy-on-write overlay on it.
    Image(PathBuf),
    /// Another VM of the same backend, which must be stopped.
    CloneOf(VmName),
}

/// A host port forwarded to a guest port (TCP).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
pub struct PortForward {
    /// The port on the host's loopback interface; 0 lets the backend choose a free one.
    pub host: u16,
    /// The port in the guest.
    pub guest: u16,
}

/// A host directory shared with the guest.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct SharedFolder {
    /// The share's name (the 9p mount tag, the HGFS share name): 1-63 ASCII letters, digits,
    /// `-` or `_` (Vagrant names shares after their path, `/vagrant` → `_vagrant`).
    pub name: String,
    /// The directory on the host.
    pub host_path: PathBuf,
    /// Where the guest mounts it.
    pub guest_path: String,
    /// Whether the guest may write.
    pub writable: bool,
}

impl SharedFolder {
    /// Checks the share's name and paths.
    pub fn validate(&self) -> Result<()> {
        let ok = (1..=63).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(Error::invalid(
                "shared folder name",
                format!(
                    "{:?}: use 1-63 ASCII letters, digits, '-' or '_'",
                    self.name
                ),
            ));
        }
        if !self.guest_path.starts_with('/') || self.guest_path.contains(['"', '\n', ' ']) {
            return Err(Error::invalid(
                "shared folder guest path",
                format!(
                    "{:?}: must be absolute, without spaces or quotes",
                    self.guest_path
                ),
            ));
        }
        if !self.host_path.is_absolute() {
            return Err(Error::invalid(
                "shared folder host path",
                format!("{}: must be absolute", self.host_path.display()),
            ));
        }
        Ok(())
    }
}

/// What to create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmSpec {
    /// The VM's name.
    pub name: VmName,
    /// Where its disk comes from.
    pub source: Source,
    /// Virtual CPUs (1 to 64).
    pub cpus: u8,
    /// Memory in MiB (64 to 1 TiB).
    pub memory_mib: u32,
    /// Host directories shared with the guest.
    #[serde(default)]
    pub shared_folders: Vec<SharedFolder>,
    /// Ports forwarded from the host to the guest (besides SSH, which backends forward
    /// themselves where the guest is not routable).
    #[serde(default)]
    pub port_forwards: Vec<PortForward>,
    /// Whether the VM is meant as a Docker host (its Docker endpoint is forwarded and reported).
    #[serde(default)]
    pub docker_host: bool,
}

impl VmSpec {
    /// A spec with 1 CPU, 256 MiB and nothing shared or forwarded.
    pub fn new(name: VmName, source: Source) -> Self {
        Self {
            name,
            source,
            cpus: 1,
            memory_mib: 256,
            shared_folders: Vec::new(),
            port_forwards: Vec::new(),
            docker_host: false,
        }
    }

    /// Checks every field; on error nothing has been created.
    ///
    /// ```
    /// use vmenv_core::{Source, VmName, VmSpec};
    /// let mut spec = VmSpec::new(VmName::new("a").unwrap(), Source::Template("tiny".into()));
    /// assert!(spec.validate().is_ok());
    /// spec.memory_mib = 1;
    /// assert!(spec.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if !(1..=64).contains(&self.cpus) {
            return Err(Error::invalid(
                "cpus",
                format!("{} (use 1 to 64)", self.cpus),
            ));
        }
        if !(64..=1_048_576).contains(&self.memory_mib) {
            return Err(Error::invalid(
                "memory",
                format!("{} MiB (use 64 MiB to 1 TiB)", self.memory_mib),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.shared_folders {
            f.validate()?;
            if !names.insert(f.name.as_str()) {
                return Err(Error::invalid(
                    "shared folder name",
                    format!("{:?} is used twice", f.name),
                ));
            }
        }
        let mut guest_ports = std::collections::HashSet::new();
        for p in &self.port_forwards {
            if p.guest == 0 {
                return Err(Error::invalid("port forward", "guest port 0"));
            }
            if !guest_ports.insert(p.guest) {
                return Err(Error::invalid(
                    "port forward",
                    format!("guest port {} is forwarded twice", p.guest),
                ));
            }
        }
        if let Source::CloneOf(of) = &self.source
            && of == &self.name
        {
            return Err(Error::invalid("source", "a VM cannot be a clone of itself"));
        }
        Ok(())
    }
}

/// How a guest address was found.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum IpSource {
    /// The lease the backend's own user-mode DHCP server hands out, confirmed by the forwarded
    /// SSH port answering (QEMU slirp: the guest is not routable from the host).
    UserModeLease,
    /// Reported by the guest's tools through the hypervisor's API (VMware Tools).
    GuestTools,
}

/// Where to reach a guest.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GuestAddress {
    /// The guest's own IP address.
    pub guest_ip: IpAddr,
    /// How it was found.
    pub source: IpSource,
    /// Where the host reaches the guest's SSH server (`127.0.0.1:<forwarded>` under user-mode
    /// networking, `<guest_ip>:22` when the guest is routable).
    pub ssh: std::net::SocketAddr,
}

/// A snapshot as listed by a backend.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SnapshotInfo {
    /// The snapshot's tag.
    pub tag: String,
    /// Size of the saved VM state in bytes (0 for disk-only snapshots).
    pub vm_state_bytes: u64,
}

/// A disk attached at run time.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AttachedDisk {
    /// The backend's id for the attachment, used to detach it.
    pub id: String,
    /// The image file.
    pub path: PathBuf,
}

/// A guest NIC.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Nic {
    /// The backend's id for the NIC.
    pub id: String,
    /// The device model (`virtio-net-pci`, `vmxnet3`, ...).
    pub model: String,
    /// The network type (`user`, `nat`, `bridged`, ...).
    pub network: String,
    /// The MAC address, if known.
    pub mac: Option<String>,
}

/// The result of a command run in the guest.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ExecOutput {
    /// The command's exit code.
    pub status: i32,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

/// How a stop ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum StopOutcome {
    /// The guest shut down when asked.
    Graceful,
    /// The guest did not shut down within the grace period and was powered off hard.
    Forced,
    /// The VM was not running.
    AlreadyStopped,
}

/// A progress event, emitted while VMs are created and booted.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A VM is being created.
    Creating(VmName),
    /// A VM's hypervisor process was started.
    Started(VmName),
    /// A boot phase the guest reported (for the QEMU test guest: `modules`, `ip ...`,
    /// `ready`, ...).
    BootPhase(VmName, String),
    /// The guest's address was found.
    IpAcquired(VmName, IpAddr),
    /// The VM matched its description; nothing was done.
    Unchanged(VmName),
    /// A VM was stopped.
    Stopped(VmName),
    /// A VM was destroyed.
    Destroyed(VmName),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> VmName {
        VmName::new(s).unwrap()
    }

    #[test]
    fn names_are_validated() {
        for good in ["a", "web-1", "db_2", "A9"] {
            assert_eq!(VmName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "-a", "a/b", "a b", "ü", &"x".repeat(64), ".."] {
            let e = VmName::new(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Invalid {
                        what: "VM name",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_round_trip_through_serde_and_reject_bad_input() {
        let n: VmName = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(n, name("web"));
        assert!(serde_json::from_str::<VmName>("\"../x\"").is_err());
    }

    #[test]
    fn spec_validation_names_the_field() {
        let mut spec = VmSpec::new(name("a"), Source::CloneOf(name("a")));
        assert!(matches!(
            spec.validate(),
            Err(Error::Invalid { what: "source", .. })
        ));
        spec.source = Source::Template("t".into());
        spec.cpus = 0;
        assert!(matches!(
            spec.validate(),
            Err(Error::Invalid { what: "cpus", .. })
        ));
        spec.cpus = 2;
        spec.port_forwards = vec![
            PortForward { host: 0, guest: 80 },
            PortForward { host: 1, guest: 80 },
        ];
        assert!(matches!(
            spec.validate(),
            Err(Error::Invalid {
                what: "port forward",
                ..
            })
        ));
        spec.port_forwards.clear();
        spec.shared_folders = vec![SharedFolder {
            name: "s".into(),
            host_path: "/tmp".into(),
            guest_path: "relative".into(),
            writable: true,
        }];
        assert!(spec.validate().is_err());
        spec.shared_folders[0].guest_path = "/mnt/s".into();
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn states_use_docker_machine_spelling() {
        assert_eq!(VmState::Saved.to_string(), "Saved");
        assert_eq!(VmState::None.as_str(), "None");
    }
}
