//! Pure decisions for the QEMU backend: the command line, the NoCloud seed, the run-state
//! mapping. No IO here, so unit tests cover them without QEMU.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{PortForward, SharedFolder, VmSpec, VmState};

/// The slirp network every VM gets: QEMU's user-mode DHCP server hands the first lease,
/// `GUEST_IP`, to the guest. These are passed to QEMU explicitly, not assumed.
pub(crate) const SLIRP_NET: &str = "10.0.2.0/24";
/// The address slirp's DHCP server leases to the guest (`dhcpstart=`).
pub(crate) const GUEST_IP: &str = "10.0.2.15";

/// How the guest boots: from its disk (firmware), or directly from a kernel and initrd.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
pub struct DirectBoot {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initial ramdisk, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
}

/// Which accelerator QEMU uses.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Accel {
    /// Software emulation: slow but works everywhere. The default.
    #[default]
    Tcg,
    /// KVM; use only after [`super::probe_kvm`] proved that it boots a guest here.
    Kvm,
}

/// What the backend persists for each VM (`vm.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct VmRecord {
    pub(crate) spec: VmSpec,
    pub(crate) boot: Option<DirectBoot>,
    pub(crate) ssh_user: String,
    pub(crate) mac: String,
    /// Host ports chosen at the last start: SSH, then the spec's forwards resolved.
    #[serde(default)]
    pub(crate) ssh_port: u16,
    #[serde(default)]
    pub(crate) forwards: Vec<PortForward>,
}

/// The files of one VM.
#[derive(Clone, Debug)]
pub(crate) struct VmPaths {
    pub(crate) dir: PathBuf,
}

impl VmPaths {
    pub(crate) fn record(&self) -> PathBuf {
        self.dir.join("vm.json")
    }
    pub(crate) fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub(crate) fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    pub(crate) fn seed_dir(&self) -> PathBuf {
        self.dir.join("seed")
    }
    pub(crate) fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub(crate) fn serial(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    pub(crate) fn pid(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub(crate) fn suspended(&self) -> PathBuf {
        self.dir.join("suspended")
    }
    pub(crate) fn attached(&self) -> PathBuf {
        self.dir.join("attached.json")
    }
}

/// The snapshot tag `suspend` saves to and `start` resumes from.
pub(crate) const SUSPEND_TAG: &str = "vmenv-suspend";

/// The id of the network backend, used by `hostfwd_add`/`hostfwd_remove`.
pub(crate) const NETDEV_ID: &str = "n0";

/// Root-port id `n` (1-based) for hot-plugged disks.
pub(crate) fn root_port_id(n: u8) -> String {
    format!("vmenv-rp{n}")
}

/// Builds the `qemu-system-x86_64` argument list for a VM.
pub(crate) fn qemu_args(
    record: &VmRecord,
    paths: &VmPaths,
    accel: Accel,
    hotplug_ports: u8,
    loadvm: Option<&str>,
) -> Vec<String> {
    let spec = &record.spec;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    match accel {
        Accel::Tcg => push(&["-accel", "tcg"]),
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
    }
    push(&[
        "-name",
        spec.name.as_str(),
        "-machine",
        "q35",
        "-m",
        &spec.memory_mib.to_string(),
        "-smp",
        &spec.cpus.to_string(),
        "-nodefaults",
        "-display",
        "none",
        "-vga",
        "none",
        "-monitor",
        "none",
        "-serial",
        &format!("file:{}", paths.serial().display()),
        "-qmp",
        &format!("unix:{},server=on,wait=off", paths.qmp().display()),
        "-pidfile",
        &paths.pid().display().to_string(),
        "-daemonize",
    ]);
    if let Some(boot) = &record.boot {
        push(&["-kernel", &boot.kernel.display().to_string()]);
        if let Some(initrd) = &boot.initrd {
            push(&["-initrd", &initrd.display().to_string()]);
        }
        push(&["-append", &boot.cmdline]);
    }
    let mut netdev = format!("user,id={NETDEV_ID},net={SLIRP_NET},dhcpstart={GUEST_IP}");
    let _ = write!(netdev, ",hostfwd=tcp:127.0.0.1:{}-:22", record.ssh_port);
    for f in &record.forwards {
        let _ = write!(netdev, ",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest);
    }
    push(&["-netdev", &netdev]);
    push(&[
        "-device",
        &format!("virtio-net-pci,netdev={NETDEV_ID},mac={}", record.mac),
    ]);
    for n in 1..=hotplug_ports {
        push(&[
            "-device",
            &format!("pcie-root-port,id={},chassis={n},slot={n}", root_port_id(n)),
        ]);
    }
    for (i, f) in spec.shared_folders.iter().enumerate() {
        let ro = if f.writable { "" } else { ",readonly=on" };
        push(&[
            "-virtfs",
            &format!(
                "local,path={},mount_tag={},security_model=none,id=fs{i}{ro}",
                escape_opt(&f.host_path),
                f.name
            ),
        ]);
    }
    push(&[
        "-drive",
        &format!(
            "file={},if=virtio,format=qcow2,id=disk0",
            escape_opt(&paths.disk())
        ),
        "-drive",
        &format!(
            "file={},if=virtio,format=raw,readonly=on,id=seed",
            escape_opt(&paths.seed())
        ),
    ]);
    if let Some(tag) = loadvm {
        push(&["-loadvm", tag]);
    }
    a
}

/// QEMU option values separate with commas; a literal comma is written twice.
fn escape_opt(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// The 9p mount options for a share.
pub(crate) fn mount_options(f: &SharedFolder) -> String {
    let ro = if f.writable { "" } else { ",ro" };
    format!("trans=virtio,version=9p2000.L,msize=262144{ro}")
}

/// The NoCloud `user-data` (cloud-config): hostname, the SSH key, the 9p mounts.
pub(crate) fn user_data(spec: &VmSpec, ssh_public_key: &str) -> String {
    let mut s = String::from("#cloud-config\n");
    let _ = writeln!(s, "hostname: {}", spec.name);
    s.push_str("ssh_authorized_keys:\n");
    let _ = writeln!(s, "  - {}", ssh_public_key.trim());
    if !spec.shared_folders.is_empty() {
        s.push_str("mounts:\n");
        for f in &spec.shared_folders {
            let _ = writeln!(
                s,
                "  - [ \"{}\", \"{}\", \"9p\", \"{}\", \"0\", \"0\" ]",
                f.name,
                f.guest_path,
                mount_options(f)
            );
        }
    }
    s
}

/// The NoCloud `meta-data`.
pub(crate) fn meta_data(spec: &VmSpec) -> String {
    format!(
        "instance-id: {0}\nlocal-hostname: {0}\n",
        spec.name.as_str()
    )
}

/// A stable locally administered MAC address derived from the VM's name.
pub(crate) fn mac_for(name: &str) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Maps QMP `query-status` run states onto Docker Machine's set.
pub(crate) fn state_from_run_state(status: &str) -> VmState {
    match status {
        "running" => VmState::Running,
        "paused" | "suspended" | "restore-vm" | "debug" | "io-error" | "watchdog" => {
            VmState::Paused
        }
        "shutdown" | "save-vm" | "finish-migrate" | "postmigrate" => VmState::Stopping,
        "prelaunch" | "inmigrate" => VmState::Starting,
        // "internal-error", "guest-panicked" and states this mapping does not know.
        _ => VmState::Error,
    }
}

/// The guest shell command that mounts every share that is not mounted yet.
pub(crate) fn guest_mount_script(folders: &[SharedFolder]) -> String {
    folders
        .iter()
        .map(|f| {
            format!(
                "grep -q ' {dir} 9p ' /proc/mounts || {{ mkdir -p {dir} && mount -t 9p -o {opts} {tag} {dir}; }}",
                dir = f.guest_path,
                opts = mount_options(f),
                tag = f.name
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The guest shell command that unmounts every share (a mounted 9p share blocks `savevm`).
pub(crate) fn guest_unmount_script(folders: &[SharedFolder]) -> String {
    folders
        .iter()
        .map(|f| {
            format!(
                "{{ ! grep -q ' {dir} 9p ' /proc/mounts || umount {dir}; }}",
                dir = f.guest_path
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Source, VmName};

    fn record() -> VmRecord {
        let mut spec = VmSpec::new(VmName::new("web").unwrap(), Source::Template("t".into()));
        spec.shared_folders.push(SharedFolder {
            name: "src".into(),
            host_path: "/home/a,b".into(),
            guest_path: "/mnt/src".into(),
            writable: false,
        });
        VmRecord {
            spec,
            boot: Some(DirectBoot {
                kernel: "/k".into(),
                initrd: Some("/i".into()),
                cmdline: "console=ttyS0".into(),
            }),
            ssh_user: "root".into(),
            mac: mac_for("web"),
            ssh_port: 2222,
            forwards: vec![PortForward {
                host: 8080,
                guest: 80,
            }],
        }
    }

    #[test]
    fn command_line_has_the_pieces() {
        let paths = VmPaths {
            dir: "/vms/web".into(),
        };
        let args = qemu_args(&record(), &paths, Accel::Tcg, 2, Some(SUSPEND_TAG));
        let line = args.join(" ");
        assert!(line.starts_with("-accel tcg -name web -machine q35 -m 256 -smp 1"));
        assert!(line.contains(
            "user,id=n0,net=10.0.2.0/24,dhcpstart=10.0.2.15,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80"
        ));
        assert!(line.contains("pcie-root-port,id=vmenv-rp1,chassis=1,slot=1"));
        assert!(line.contains("pcie-root-port,id=vmenv-rp2,chassis=2,slot=2"));
        assert!(!line.contains("vmenv-rp3"));
        assert!(line.contains(
            "local,path=/home/a,,b,mount_tag=src,security_model=none,id=fs0,readonly=on"
        ));
        assert!(line.contains("-kernel /k -initrd /i -append console=ttyS0"));
        assert!(line.contains("file=/vms/web/disk.qcow2,if=virtio,format=qcow2"));
        assert!(line.ends_with("-loadvm vmenv-suspend"));
        // The -append value is one argument even with spaces.
        assert!(args.iter().any(|a| a == "console=ttyS0"));
    }

    #[test]
    fn seed_carries_hostname_key_and_mounts() {
        let r = record();
        let ud = user_data(&r.spec, "ssh-ed25519 AAAA vmenv\n");
        assert!(ud.starts_with("#cloud-config\nhostname: web\n"));
        assert!(ud.contains("  - ssh-ed25519 AAAA vmenv\n"));
        assert!(ud.contains(
            "  - [ \"src\", \"/mnt/src\", \"9p\", \"trans=virtio,version=9p2000.L,msize=262144,ro\", \"0\", \"0\" ]"
        ));
        assert_eq!(
            meta_data(&r.spec),
            "instance-id: web\nlocal-hostname: web\n"
        );
    }

    #[test]
    fn macs_are_stable_and_local() {
        assert_eq!(mac_for("a"), mac_for("a"));
        assert_ne!(mac_for("a"), mac_for("b"));
        assert!(mac_for("a").starts_with("52:54:00:"));
    }

    #[test]
    fn run_states_map_to_docker_machine_states() {
        assert_eq!(state_from_run_state("running"), VmState::Running);
        assert_eq!(state_from_run_state("paused"), VmState::Paused);
        assert_eq!(state_from_run_state("restore-vm"), VmState::Paused);
        assert_eq!(state_from_run_state("shutdown"), VmState::Stopping);
        assert_eq!(state_from_run_state("guest-panicked"), VmState::Error);
    }

    #[test]
    fn guest_scripts_cover_every_share() {
        let r = record();
        let m = guest_mount_script(&r.spec.shared_folders);
        assert!(
            m.contains("mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro src /mnt/src")
        );
        let u = guest_unmount_script(&r.spec.shared_folders);
        assert_eq!(
            u,
            "{ ! grep -q ' /mnt/src 9p ' /proc/mounts || umount /mnt/src; }"
        );
    }
}
