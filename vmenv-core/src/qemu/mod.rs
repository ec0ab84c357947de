//! The QEMU backend: real local VMs under `qemu-system-x86_64`, driven over QMP.
//!
//! Each VM lives in `<root>/vms/<name>/`: a qcow2 overlay on its template's base image, a
//! NoCloud `cidata` seed (hostname, an SSH key generated for the VM, 9p mounts), the QMP socket,
//! the serial log and the pid file. QEMU runs daemonized, so VMs outlive the process that started
//! them and any later [`QemuHypervisor`] on the same root finds them again.
//!
//! Networking is user-mode (slirp): the guest is not routable from the host, so SSH and app
//! ports are forwarded from `127.0.0.1`. Shared folders are 9p. Snapshots are `savevm`/`loadvm`
//! (with the 9p shares unmounted in the guest around them, because a mounted share blocks
//! `savevm`) or `qemu-img snapshot` while stopped. Disks hot-plug through `pcie-root-port`s
//! created at boot (q35's `pcie.0` does not hot-plug). TCG by default; KVM only after
//! [`probe_kvm`] proved that it boots the guest.

mod plan;
mod qmp;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

pub use plan::{Accel, DirectBoot};
use plan::{VmPaths, VmRecord};
use qmp::Qmp;

use crate::error::{Error, Result};
use crate::hypervisor::{
    DiskHotplug, GuestExec, Hypervisor, Nics, PortForwards, SharedFolders, Snapshots,
};
use crate::model::{
    AttachedDisk, ExecOutput, GuestAddress, IpSource, Nic, PortForward, SharedFolder, SnapshotInfo,
    Source, StopOutcome, VmName, VmSpec, VmState, VmStatus,
};

/// A template: a base disk image and, for kernels booted directly, the kernel and initrd.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Template {
    /// The template's name, used in [`Source::Template`].
    pub name: String,
    /// The base image VMs get a copy-on-write overlay on (qcow2 or raw).
    pub base_image: PathBuf,
    /// Direct kernel boot, or `None` to boot the disk's own boot loader.
    pub boot: Option<DirectBoot>,
    /// The user SSH logs in as.
    pub ssh_user: String,
}

impl Template {
    /// The SDK's tiny test guest: Debian's generic kernel, a busybox initramfs and dropbear,
    /// built by `vmenv-core/guest/build.sh` from Debian packages (cached under `out_dir`), on an
    /// empty 1 GiB qcow2 base disk.
    ///
    /// The guest takes its hostname, SSH key and 9p mounts from the NoCloud seed, reports
    /// `vmenv: <phase>` boot phases on its serial console, and shuts down on ACPI powerdown.
    pub async fn test_guest(out_dir: &Path) -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/build.sh");
        run_tool(Command::new(&script).arg(out_dir), "guest/build.sh").await?;
        let base = out_dir.join("base.qcow2");
        if !base.exists() {
            let tmp = out_dir.join("base.qcow2.tmp");
            run_tool(
                Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2"])
                    .arg(&tmp)
                    .arg("1G"),
                "qemu-img create",
            )
            .await?;
            tokio::fs::rename(&tmp, &base)
                .await
                .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        }
        Ok(Self {
            name: "tiny".into(),
            base_image: base,
            boot: Some(DirectBoot {
                kernel: out_dir.join("vmlinuz"),
                initrd: Some(out_dir.join("initrd.gz")),
                cmdline: "console=ttyS0 loglevel=3 panic=-1".into(),
            }),
            ssh_user: "root".into(),
        })
    }
}

/// Settings of a [`QemuHypervisor`].
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// Where VMs live (`<root>/vms/<name>`). Keep it short: QMP socket paths must fit in 107
    /// bytes.
    pub root: PathBuf,
    /// The emulator binary.
    pub qemu: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// How many `pcie-root-port`s each VM gets for hot-plugged disks.
    pub hotplug_ports: u8,
    /// Templates by name.
    pub templates: Vec<Template>,
}

impl QemuConfig {
    /// TCG, `qemu-system-x86_64` from `PATH`, 4 hot-plug ports, no templates.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            hotplug_ports: 4,
            templates: Vec::new(),
        }
    }

    /// Adds a template.
    #[must_use]
    pub fn with_template(mut self, t: Template) -> Self {
        self.templates.push(t);
        self
    }
}

/// The QEMU backend. See the [module docs](self).
#[derive(Debug)]
pub struct QemuHypervisor {
    config: QemuConfig,
}

/// Whether `qemu-system-x86_64` and `qemu-img` can run here.
pub fn qemu_available() -> bool {
    ["qemu-system-x86_64", "qemu-img"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Probes whether KVM boots `boot`'s kernel to its first userspace output within `deadline`.
///
/// On machines where `/dev/kvm` exists but cannot run ordinary guests (paravirtual `kvm_pvm`,
/// no vmx/svm), QEMU either aborts or hangs; both count as "no". Without `/dev/kvm` it answers
/// at once.
pub async fn probe_kvm(boot: &DirectBoot, scratch: &Path, deadline: Duration) -> Result<bool> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(false);
    }
    tokio::fs::create_dir_all(scratch)
        .await
        .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    let serial = scratch.join("kvm-probe.log");
    let _ = tokio::fs::remove_file(&serial).await;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "128",
    ])
    .args(["-nodefaults", "-display", "none", "-no-reboot"])
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .arg("-kernel")
    .arg(&boot.kernel)
    .args(
        boot.initrd
            .iter()
            .flat_map(|i| [PathBuf::from("-initrd"), i.clone()]),
    )
    .arg("-append")
    .arg(format!("{} panic=-1", boot.cmdline))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("spawning qemu-system-x86_64 for the KVM probe", e))?;
    let start = tokio::time::Instant::now();
    let booted = loop {
        if let Ok(log) = tokio::fs::read_to_string(&serial).await
            && log.contains("vmenv: ")
        {
            break true;
        }
        if start.elapsed() > deadline || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill().await;
    Ok(booted)
}

async fn run_tool(cmd: &mut Command, tool: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Tool {
            tool: tool.to_owned(),
            detail: format!("cannot run: {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: tool.to_owned(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Picks a free TCP port on 127.0.0.1 (the OS chooses; the port is released at once, so a race
/// with another process is possible but unlikely).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("choosing a free port on 127.0.0.1", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("choosing a free port on 127.0.0.1", e))
}

/// QEMU's pid from the VM's pid file, if that process is alive.
fn running_pid(paths: &VmPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(paths.pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    pid_alive(pid).then_some(pid)
}

/// Whether a process with this pid is alive and not a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn validate_tag(tag: &str) -> Result<()> {
    VmName::new(tag).map(|_| ()).map_err(|_| {
        Error::invalid(
            "snapshot tag",
            format!("{tag:?}: use ASCII letters, digits, '-' or '_'"),
        )
    })
}

impl QemuHypervisor {
    /// A backend over `config`. Nothing is started; the root directory is created on first use.
    pub fn new(config: QemuConfig) -> Self {
        Self { config }
    }

    /// The backend's settings.
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    fn paths(&self, name: &VmName) -> VmPaths {
        VmPaths {
            dir: self.config.root.join("vms").join(name.as_str()),
        }
    }

    /// The serial console log of a VM (for the test guest it holds `vmenv: <phase>` lines).
    pub fn serial_log(&self, name: &VmName) -> PathBuf {
        self.paths(name).serial()
    }

    /// The private SSH key generated for a VM.
    pub fn ssh_key(&self, name: &VmName) -> PathBuf {
        self.paths(name).key()
    }

    /// QEMU's process id, while the VM runs.
    pub fn pid(&self, name: &VmName) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.paths(name).pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        pid_alive(pid).then_some(pid)
    }

    async fn load(&self, name: &VmName) -> Result<(VmPaths, VmRecord)> {
        let paths = self.paths(name);
        let text = match tokio::fs::read_to_string(paths.record()).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    name: name.to_string(),
                });
            }
            Err(e) => {
                return Err(Error::io(
                    format!("reading {}", paths.record().display()),
                    e,
                ));
            }
        };
        let record = serde_json::from_str(&text).map_err(|e| {
            Error::invalid("VM record", format!("{}: {e}", paths.record().display()))
        })?;
        Ok((paths, record))
    }

    async fn save(paths: &VmPaths, record: &VmRecord) -> Result<()> {
        let text = serde_json::to_string_pretty(record)
            .map_err(|e| Error::invalid("VM record", e.to_string()))?;
        let tmp = paths.dir.join("vm.json.tmp");
        tokio::fs::write(&tmp, text)
            .await
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        tokio::fs::rename(&tmp, paths.record())
            .await
            .map_err(|e| Error::io(format!("writing {}", paths.record().display()), e))
    }

    async fn qmp(&self, paths: &VmPaths) -> Result<Qmp> {
        Qmp::connect_with_retry(&paths.qmp(), Duration::from_secs(5)).await
    }

    async fn require_running(
        &self,
        name: &VmName,
        operation: &'static str,
    ) -> Result<(VmPaths, VmRecord)> {
        let (paths, record) = self.load(name).await?;
        if running_pid(&paths).is_none() {
            return Err(Error::WrongState {
                name: name.to_string(),
                operation,
                state: "stopped".into(),
            });
        }
        Ok((paths, record))
    }

    async fn require_stopped(
        &self,
        name: &VmName,
        operation: &'static str,
    ) -> Result<(VmPaths, VmRecord)> {
        let (paths, record) = self.load(name).await?;
        if running_pid(&paths).is_some() {
            return Err(Error::WrongState {
                name: name.to_string(),
                operation,
                state: "running".into(),
            });
        }
        Ok((paths, record))
    }

    async fn write_seed(paths: &VmPaths, record: &VmRecord) -> Result<()> {
        let pubkey_path = paths.key().with_extension("pub");
        let pubkey = tokio::fs::read_to_string(&pubkey_path)
            .await
            .map_err(|e| Error::io(format!("reading {}", pubkey_path.display()), e))?;
        let dir = paths.seed_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        for (file, text) in [
            ("user-data", plan::user_data(&record.spec, &pubkey)),
            ("meta-data", plan::meta_data(&record.spec)),
        ] {
            tokio::fs::write(dir.join(file), text)
                .await
                .map_err(|e| Error::io(format!("writing {}", dir.join(file).display()), e))?;
        }
        run_tool(
            Command::new("genisoimage")
                .arg("-quiet")
                .arg("-output")
                .arg(paths.seed())
                .args(["-volid", "cidata", "-joliet", "-rock"])
                .arg(dir.join("user-data"))
                .arg(dir.join("meta-data")),
            "genisoimage",
        )
        .await
        .map(|_| ())
    }

    async fn image_format(image: &Path) -> Result<String> {
        let out = run_tool(
            Command::new("qemu-img")
                .args(["info", "-U", "--output=json"])
                .arg(image),
            "qemu-img info",
        )
        .await?;
        let v: Value = serde_json::from_str(&out).map_err(|e| Error::Tool {
            tool: "qemu-img info".into(),
            detail: format!("unreadable output: {e}"),
        })?;
        v["format"]
            .as_str()
            .map(ToOwned::to_owned)
            .ok_or_else(|| Error::Tool {
                tool: "qemu-img info".into(),
                detail: "no format in output".into(),
            })
    }

    /// Runs `script` in the guest over SSH when it is non-empty.
    async fn guest_sh(&self, name: &VmName, script: &str) -> Result<()> {
        if script.is_empty() {
            return Ok(());
        }
        let out = self.exec(name, script).await?;
        if out.status != 0 {
            return Err(Error::GuestExec {
                name: name.to_string(),
                detail: format!("`{script}` exited {}: {}", out.status, out.stderr.trim()),
            });
        }
        Ok(())
    }

    async fn wait_exit(&self, paths: &VmPaths, timeout: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while start.elapsed() < timeout {
            if running_pid(paths).is_none() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running_pid(paths).is_none()
    }

    async fn hard_stop(&self, paths: &VmPaths) -> Result<()> {
        if let Ok(mut q) = Qmp::connect(&paths.qmp()).await {
            let _ = q.execute("quit", None).await;
        }
        if self.wait_exit(paths, Duration::from_secs(5)).await {
            return Ok(());
        }
        if let Some(pid) = running_pid(paths) {
            run_tool(
                Command::new("kill").args(["-KILL", &pid.to_string()]),
                "kill",
            )
            .await?;
        }
        if self.wait_exit(paths, Duration::from_secs(5)).await {
            Ok(())
        } else {
            Err(Error::Timeout {
                what: "QEMU to exit after SIGKILL".into(),
                seconds: 5.0,
            })
        }
    }
}

#[async_trait]
impl Hypervisor for QemuHypervisor {
    fn kind(&self) -> &'static str {
        "qemu"
    }

    async fn create(&self, spec: &VmSpec) -> Result<()> {
        spec.validate()?;
        let paths = self.paths(&spec.name);
        if paths.record().exists() {
            return Err(Error::AlreadyExists {
                name: spec.name.to_string(),
            });
        }
        // Resolve the source before touching the disk.
        let (backing, boot, ssh_user, clone_disk) = match &spec.source {
            Source::Template(t) => {
                let t = self
                    .config
                    .templates
                    .iter()
                    .find(|x| &x.name == t)
                    .ok_or_else(|| Error::invalid("source", format!("no template named {t:?}")))?;
                (
                    Some(t.base_image.clone()),
                    t.boot.clone(),
                    t.ssh_user.clone(),
                    None,
                )
            }
            Source::Image(p) => {
                if !p.is_absolute() || !p.exists() {
                    return Err(Error::invalid(
                        "source",
                        format!("image {} must be an existing absolute path", p.display()),
                    ));
                }
                (Some(p.clone()), None, "root".to_owned(), None)
            }
            Source::CloneOf(of) => {
                let (src_paths, src) = self.require_stopped(of, "clone").await?;
                (None, src.boot, src.ssh_user, Some(src_paths.disk()))
            }
        };
        tokio::fs::create_dir_all(&paths.dir)
            .await
            .map_err(|e| Error::io(format!("creating {}", paths.dir.display()), e))?;
        let result = async {
            if let Some(src) = clone_disk {
                tokio::fs::copy(&src, paths.disk())
                    .await
                    .map_err(|e| Error::io(format!("copying {}", src.display()), e))?;
            } else if let Some(base) = backing {
                let fmt = Self::image_format(&base).await?;
                run_tool(
                    Command::new("qemu-img")
                        .args(["create", "-q", "-f", "qcow2", "-F", &fmt, "-b"])
                        .arg(&base)
                        .arg(paths.disk()),
                    "qemu-img create",
                )
                .await?;
            }
            run_tool(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                    .arg(format!("vmenv-{}", spec.name))
                    .arg("-f")
                    .arg(paths.key()),
                "ssh-keygen",
            )
            .await?;
            let record = VmRecord {
                spec: spec.clone(),
                boot,
                ssh_user,
                mac: plan::mac_for(spec.name.as_str()),
                ssh_port: 0,
                forwards: Vec::new(),
            };
            Self::write_seed(&paths, &record).await?;
            Self::save(&paths, &record).await
        }
        .await;
        if result.is_err() {
            // Leave nothing half-made behind.
            let _ = tokio::fs::remove_dir_all(&paths.dir).await;
        }
        result
    }

    async fn list(&self) -> Result<Vec<VmName>> {
        let dir = self.config.root.join("vms");
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(&dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        while let Some(entry) = rd
            .next_entry()
            .await
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        {
            if entry.path().join("vm.json").exists()
                && let Some(n) = entry.file_name().to_str()
                && let Ok(name) = VmName::new(n)
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn spec(&self, name: &VmName) -> Result<VmSpec> {
        Ok(self.load(name).await?.1.spec)
    }

    async fn start(&self, name: &VmName) -> Result<()> {
        let (paths, mut record) = self.load(name).await?;
        if running_pid(&paths).is_some() {
            return Ok(());
        }
        record.ssh_port = free_port()?;
        record.forwards = record
            .spec
            .port_forwards
            .iter()
            .map(|f| {
                Ok(PortForward {
                    host: if f.host == 0 { free_port()? } else { f.host },
                    guest: f.guest,
                })
            })
            .collect::<Result<_>>()?;
        Self::save(&paths, &record).await?;
        let resume = paths.suspended().exists();
        for stale in [paths.qmp(), paths.pid(), paths.serial(), paths.attached()] {
            let _ = tokio::fs::remove_file(stale).await;
        }
        let args = plan::qemu_args(
            &record,
            &paths,
            self.config.accel,
            self.config.hotplug_ports,
            resume.then_some(plan::SUSPEND_TAG),
        );
        run_tool(
            Command::new(&self.config.qemu).args(&args),
            "qemu-system-x86_64",
        )
        .await?;
        if resume {
            let _ = tokio::fs::remove_file(paths.suspended()).await;
            let mut q = self.qmp(&paths).await?;
            q.hmp(&format!("delvm {}", plan::SUSPEND_TAG)).await?;
            drop(q);
            // The shares were unmounted before the state was saved.
            if !record.spec.shared_folders.is_empty() {
                self.ip(name, Duration::from_secs(60)).await?;
                self.guest_sh(name, &plan::guest_mount_script(&record.spec.shared_folders))
                    .await?;
            }
        }
        Ok(())
    }

    async fn stop(&self, name: &VmName, grace: Duration) -> Result<StopOutcome> {
        let (paths, _) = self.load(name).await?;
        if running_pid(&paths).is_none() {
            return Ok(StopOutcome::AlreadyStopped);
        }
        let graceful = async {
            let mut q = self.qmp(&paths).await?;
            let status = q.execute("query-status", None).await?;
            if status["running"] != json!(true) {
                // A paused guest (or one left paused by a failed loadvm) ignores the power
                // button.
                q.execute("cont", None).await?;
            }
            q.execute("system_powerdown", None).await?;
            Ok::<_, Error>(())
        }
        .await;
        if graceful.is_ok() && self.wait_exit(&paths, grace).await {
            return Ok(StopOutcome::Graceful);
        }
        self.hard_stop(&paths).await?;
        Ok(StopOutcome::Forced)
    }

    async fn kill(&self, name: &VmName) -> Result<()> {
        let (paths, _) = self.load(name).await?;
        if running_pid(&paths).is_none() {
            return Ok(());
        }
        self.hard_stop(&paths).await
    }

    async fn pause(&self, name: &VmName) -> Result<()> {
        let (paths, _) = self.require_running(name, "pause").await?;
        self.qmp(&paths)
            .await?
            .execute("stop", None)
            .await
            .map(|_| ())
    }

    async fn resume(&self, name: &VmName) -> Result<()> {
        let (paths, _) = self.require_running(name, "resume").await?;
        self.qmp(&paths)
            .await?
            .execute("cont", None)
            .await
            .map(|_| ())
    }

    async fn suspend(&self, name: &VmName) -> Result<()> {
        let (paths, record) = self.require_running(name, "suspend").await?;
        self.guest_sh(
            name,
            &plan::guest_unmount_script(&record.spec.shared_folders),
        )
        .await?;
        let mut q = self.qmp(&paths).await?;
        q.hmp(&format!("savevm {}", plan::SUSPEND_TAG)).await?;
        tokio::fs::write(paths.suspended(), plan::SUSPEND_TAG)
            .await
            .map_err(|e| Error::io(format!("writing {}", paths.suspended().display()), e))?;
        let _ = q.execute("quit", None).await;
        drop(q);
        if self.wait_exit(&paths, Duration::from_secs(10)).await {
            Ok(())
        } else {
            self.hard_stop(&paths).await
        }
    }

    async fn destroy(&self, name: &VmName) -> Result<()> {
        let (paths, _) = self.require_stopped(name, "destroy").await?;
        tokio::fs::remove_dir_all(&paths.dir)
            .await
            .map_err(|e| Error::io(format!("removing {}", paths.dir.display()), e))
    }

    async fn status(&self, name: &VmName) -> Result<VmStatus> {
        let (paths, _) = match self.load(name).await {
            Ok(x) => x,
            Err(Error::NotFound { .. }) => {
                return Ok(VmStatus {
                    state: VmState::None,
                    raw: "not created".into(),
                });
            }
            Err(e) => return Err(e),
        };
        if running_pid(&paths).is_none() {
            return Ok(if paths.suspended().exists() {
                VmStatus {
                    state: VmState::Saved,
                    raw: "suspended".into(),
                }
            } else {
                VmStatus {
                    state: VmState::Stopped,
                    raw: "stopped".into(),
                }
            });
        }
        match self.qmp(&paths).await {
            Ok(mut q) => {
                let s = q.execute("query-status", None).await?;
                let raw = s["status"].as_str().unwrap_or("unknown").to_owned();
                Ok(VmStatus {
                    state: plan::state_from_run_state(&raw),
                    raw,
                })
            }
            Err(_) => Ok(VmStatus {
                state: VmState::Timeout,
                raw: "monitor not answering".into(),
            }),
        }
    }

    async fn ip(&self, name: &VmName, deadline: Duration) -> Result<GuestAddress> {
        let start = tokio::time::Instant::now();
        loop {
            let (paths, record) = self.require_running(name, "wait for the IP of").await?;
            let ssh = SocketAddr::from(([127, 0, 0, 1], record.ssh_port));
            if ssh_banner(ssh).await {
                let guest_ip: IpAddr = plan::GUEST_IP
                    .parse()
                    .map_err(|_| Error::invalid("guest IP", plan::GUEST_IP))?;
                drop(paths);
                return Ok(GuestAddress {
                    guest_ip,
                    source: IpSource::UserModeLease,
                    ssh,
                });
            }
            if start.elapsed() >= deadline {
                return Err(Error::Timeout {
                    what: format!("VM {name} to answer on SSH"),
                    seconds: deadline.as_secs_f64(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The boot phases the guest reported on its serial console so far (`vmenv: <phase>` lines).
    async fn boot_phases(&self, name: &VmName) -> Vec<String> {
        let log = tokio::fs::read_to_string(self.paths(name).serial())
            .await
            .unwrap_or_default();
        log.lines()
            .filter_map(|l| l.trim().strip_prefix("vmenv: "))
            .map(ToOwned::to_owned)
            .collect()
    }

    fn snapshots(&self) -> Option<&dyn Snapshots> {
        Some(self)
    }

    fn shared_folders(&self) -> Option<&dyn SharedFolders> {
        Some(self)
    }

    fn port_forwards(&self) -> Option<&dyn PortForwards> {
        Some(self)
    }

    fn nics(&self) -> Option<&dyn Nics> {
        Some(self)
    }

    fn disk_hotplug(&self) -> Option<&dyn DiskHotplug> {
        Some(self)
    }

    fn guest_exec(&self) -> Option<&dyn GuestExec> {
        Some(self)
    }
}

/// Whether an SSH server answers with its `SSH-` banner at `addr` (slirp accepts connections on
/// forwarded ports even while nothing listens in the guest, so a connect alone proves nothing).
async fn ssh_banner(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"SSH-")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Some(true))
    )
}

#[async_trait]
impl Snapshots for QemuHypervisor {
    async fn create_snapshot(&self, name: &VmName, tag: &str) -> Result<()> {
        validate_tag(tag)?;
        let (paths, record) = self.load(name).await?;
        if running_pid(&paths).is_none() {
            return run_tool(
                Command::new("qemu-img")
                    .args(["snapshot", "-c", tag])
                    .arg(paths.disk()),
                "qemu-img snapshot",
            )
            .await
            .map(|_| ());
        }
        let folders = &record.spec.shared_folders;
        self.guest_sh(name, &plan::guest_unmount_script(folders))
            .await?;
        let saved = async { self.qmp(&paths).await?.hmp(&format!("savevm {tag}")).await }.await;
        let remounted = self
            .guest_sh(name, &plan::guest_mount_script(folders))
            .await;
        saved?;
        remounted
    }

    async fn list_snapshots(&self, name: &VmName) -> Result<Vec<SnapshotInfo>> {
        let (paths, _) = self.load(name).await?;
        let out = run_tool(
            Command::new("qemu-img")
                .args(["info", "-U", "--output=json"])
                .arg(paths.disk()),
            "qemu-img info",
        )
        .await?;
        parse_snapshots(&out)
    }

    async fn apply_snapshot(&self, name: &VmName, tag: &str) -> Result<()> {
        validate_tag(tag)?;
        let (paths, record) = self.load(name).await?;
        if running_pid(&paths).is_none() {
            return run_tool(
                Command::new("qemu-img")
                    .args(["snapshot", "-a", tag])
                    .arg(paths.disk()),
                "qemu-img snapshot",
            )
            .await
            .map(|_| ());
        }
        let mut q = self.qmp(&paths).await?;
        if let Err(e) = q.hmp(&format!("loadvm {tag}")).await {
            // A failed loadvm leaves the VM paused in restore-vm; get it running again.
            let _ = q.execute("cont", None).await;
            return Err(e);
        }
        drop(q);
        // The snapshot was taken with the shares unmounted.
        self.guest_sh(name, &plan::guest_mount_script(&record.spec.shared_folders))
            .await
    }

    async fn delete_snapshot(&self, name: &VmName, tag: &str) -> Result<()> {
        validate_tag(tag)?;
        let (paths, _) = self.load(name).await?;
        if running_pid(&paths).is_none() {
            return run_tool(
                Command::new("qemu-img")
                    .args(["snapshot", "-d", tag])
                    .arg(paths.disk()),
                "qemu-img snapshot",
            )
            .await
            .map(|_| ());
        }
        self.qmp(&paths)
            .await?
            .hmp(&format!("delvm {tag}"))
            .await
            .map(|_| ())
    }
}

fn parse_snapshots(qemu_img_info_json: &str) -> Result<Vec<SnapshotInfo>> {
    let v: Value = serde_json::from_str(qemu_img_info_json).map_err(|e| Error::Tool {
        tool: "qemu-img info".into(),
        detail: format!("unreadable output: {e}"),
    })?;
    Ok(v["snapshots"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| SnapshotInfo {
                    tag: s["name"].as_str().unwrap_or_default().to_owned(),
                    vm_state_bytes: s["vm-state-size"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default())
}

#[async_trait]
impl SharedFolders for QemuHypervisor {
    async fn add_shared_folder(&self, name: &VmName, folder: &SharedFolder) -> Result<()> {
        let (paths, mut record) = self.require_stopped(name, "add a 9p share to").await?;
        let mut spec = record.spec.clone();
        spec.shared_folders.push(folder.clone());
        spec.validate()?;
        record.spec = spec;
        Self::write_seed(&paths, &record).await?;
        Self::save(&paths, &record).await
    }

    async fn list_shared_folders(&self, name: &VmName) -> Result<Vec<SharedFolder>> {
        Ok(self.load(name).await?.1.spec.shared_folders)
    }

    async fn remove_shared_folder(&self, name: &VmName, share: &str) -> Result<()> {
        let (paths, mut record) = self.require_stopped(name, "remove a 9p share from").await?;
        let before = record.spec.shared_folders.len();
        record.spec.shared_folders.retain(|f| f.name != share);
        if record.spec.shared_folders.len() == before {
            return Err(Error::invalid(
                "shared folder name",
                format!("{share:?} is not shared"),
            ));
        }
        Self::write_seed(&paths, &record).await?;
        Self::save(&paths, &record).await
    }
}

#[async_trait]
impl PortForwards for QemuHypervisor {
    async fn add_port_forward(&self, name: &VmName, forward: PortForward) -> Result<PortForward> {
        if forward.guest == 0 {
            return Err(Error::invalid("port forward", "guest port 0"));
        }
        let (paths, mut record) = self.load(name).await?;
        if record
            .spec
            .port_forwards
            .iter()
            .any(|f| f.guest == forward.guest)
        {
            return Err(Error::invalid(
                "port forward",
                format!("guest port {} is forwarded already", forward.guest),
            ));
        }
        let mut resolved = forward;
        if running_pid(&paths).is_some() {
            if resolved.host == 0 {
                resolved.host = free_port()?;
            }
            self.qmp(&paths)
                .await?
                .hmp(&format!(
                    "hostfwd_add {} tcp:127.0.0.1:{}-:{}",
                    plan::NETDEV_ID,
                    resolved.host,
                    resolved.guest
                ))
                .await?;
            record.forwards.push(resolved);
        }
        record.spec.port_forwards.push(forward);
        Self::save(&paths, &record).await?;
        Ok(resolved)
    }

    async fn list_port_forwards(&self, name: &VmName) -> Result<Vec<PortForward>> {
        let (paths, record) = self.load(name).await?;
        if running_pid(&paths).is_some() {
            let mut all = vec![PortForward {
                host: record.ssh_port,
                guest: 22,
            }];
            all.extend(record.forwards);
            Ok(all)
        } else {
            Ok(record.spec.port_forwards)
        }
    }

    async fn remove_port_forward(&self, name: &VmName, host_port: u16) -> Result<()> {
        let (paths, mut record) = self.load(name).await?;
        let running = running_pid(&paths).is_some();
        let live = record.forwards.iter().position(|f| f.host == host_port);
        let Some(guest) = live.map(|i| record.forwards[i].guest).or_else(|| {
            record
                .spec
                .port_forwards
                .iter()
                .find(|f| f.host == host_port)
                .map(|f| f.guest)
        }) else {
            return Err(Error::invalid(
                "port forward",
                format!("no forward from host port {host_port}"),
            ));
        };
        if running && let Some(i) = live {
            self.qmp(&paths)
                .await?
                .hmp(&format!(
                    "hostfwd_remove {} tcp:127.0.0.1:{host_port}",
                    plan::NETDEV_ID
                ))
                .await?;
            record.forwards.remove(i);
        }
        record.spec.port_forwards.retain(|f| f.guest != guest);
        Self::save(&paths, &record).await
    }
}

#[async_trait]
impl Nics for QemuHypervisor {
    async fn list_nics(&self, name: &VmName) -> Result<Vec<Nic>> {
        let (_, record) = self.load(name).await?;
        Ok(vec![Nic {
            id: plan::NETDEV_ID.into(),
            model: "virtio-net-pci".into(),
            network: "user".into(),
            mac: Some(record.mac),
        }])
    }
}

#[async_trait]
impl DiskHotplug for QemuHypervisor {
    async fn attach_disk(&self, name: &VmName, image: &Path) -> Result<AttachedDisk> {
        self.hotplug_disk(name, image, None).await
    }

    /// The serial is set on the `virtio-blk-pci` device: at most 20 bytes (`VIRTIO_BLK_ID_BYTES`,
    /// what the guest driver reads; QEMU's `scsi-hd` would take 36), ASCII letters, digits,
    /// `-` and `_` (what udev keeps in `/dev/disk/by-id/virtio-<serial>`).
    async fn attach_disk_with_serial(
        &self,
        name: &VmName,
        image: &Path,
        serial: &str,
    ) -> Result<AttachedDisk> {
        validate_disk_serial(serial)?;
        self.hotplug_disk(name, image, Some(serial)).await
    }

    async fn detach_disk(&self, name: &VmName, id: &str) -> Result<()> {
        self.unplug_disk(name, id).await
    }

    async fn list_attached_disks(&self, name: &VmName) -> Result<Vec<AttachedDisk>> {
        let (paths, _) = self.load(name).await?;
        if running_pid(&paths).is_none() {
            return Ok(Vec::new());
        }
        Ok(read_attached(&paths).await)
    }
}

/// The longest serial a `virtio-blk` device reports to the guest (`VIRTIO_BLK_ID_BYTES`).
pub const VIRTIO_BLK_SERIAL_MAX: usize = 20;

/// Checks a disk serial for [`DiskHotplug::attach_disk_with_serial`]: 1 to
/// [`VIRTIO_BLK_SERIAL_MAX`] ASCII letters, digits, `-` or `_`.
///
/// ```
/// use vmenv_core::qemu::validate_disk_serial;
/// assert!(validate_disk_serial("vol-1a2b").is_ok());
/// assert!(validate_disk_serial("").is_err());
/// assert!(validate_disk_serial("a-serial-of-21-chars!").is_err());
/// assert!(validate_disk_serial("x,drive=evil").is_err());
/// ```
pub fn validate_disk_serial(serial: &str) -> Result<()> {
    if serial.is_empty()
        || serial.len() > VIRTIO_BLK_SERIAL_MAX
        || !serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "disk serial",
            format!(
                "{serial:?} must be 1 to {VIRTIO_BLK_SERIAL_MAX} ASCII letters, digits, '-' or '_'"
            ),
        ));
    }
    Ok(())
}

impl QemuHypervisor {
    async fn hotplug_disk(
        &self,
        name: &VmName,
        image: &Path,
        serial: Option<&str>,
    ) -> Result<AttachedDisk> {
        if !image.is_absolute() || !image.exists() {
            return Err(Error::invalid(
                "disk image",
                format!("{} must be an existing absolute path", image.display()),
            ));
        }
        let (paths, _) = self.require_running(name, "hot-plug a disk into").await?;
        let format = Self::image_format(image).await?;
        let mut attached = read_attached(&paths).await;
        let used: HashSet<&str> = attached.iter().map(|d| d.id.as_str()).collect();
        let n = (1..=self.config.hotplug_ports)
            .find(|n| !used.contains(format!("vmenv-disk{n}").as_str()))
            .ok_or_else(|| Error::WrongState {
                name: name.to_string(),
                operation: "hot-plug a disk into",
                state: format!("using all {} hot-plug ports", self.config.hotplug_ports),
            })?;
        let id = format!("vmenv-disk{n}");
        let node = format!("vmenv-node{n}");
        let mut q = self.qmp(&paths).await?;
        q.execute(
            "blockdev-add",
            Some(json!({
                "driver": format,
                "node-name": node,
                "file": { "driver": "file", "filename": image },
            })),
        )
        .await?;
        let mut device = json!({
            "driver": "virtio-blk-pci",
            "drive": node,
            "id": id,
            "bus": plan::root_port_id(n),
        });
        if let Some(serial) = serial {
            device["serial"] = json!(serial);
        }
        if let Err(e) = q.execute("device_add", Some(device)).await {
            let _ = q
                .execute("blockdev-del", Some(json!({ "node-name": node })))
                .await;
            return Err(e);
        }
        let disk = AttachedDisk {
            id,
            path: image.to_owned(),
        };
        attached.push(disk.clone());
        write_attached(&paths, &attached).await?;
        Ok(disk)
    }

    async fn unplug_disk(&self, name: &VmName, id: &str) -> Result<()> {
        let (paths, _) = self.require_running(name, "hot-unplug a disk from").await?;
        let mut attached = read_attached(&paths).await;
        let Some(pos) = attached.iter().position(|d| d.id == id) else {
            return Err(Error::invalid("disk id", format!("{id:?} is not attached")));
        };
        let node = id.replace("vmenv-disk", "vmenv-node");
        let mut q = self.qmp(&paths).await?;
        q.execute("device_del", Some(json!({ "id": id }))).await?;
        q.wait_event("DEVICE_DELETED", Duration::from_secs(30), |d| {
            d["device"] == id
        })
        .await?;
        q.execute("blockdev-del", Some(json!({ "node-name": node })))
            .await?;
        attached.remove(pos);
        write_attached(&paths, &attached).await
    }
}

async fn read_attached(paths: &VmPaths) -> Vec<AttachedDisk> {
    let text = tokio::fs::read_to_string(paths.attached())
        .await
        .unwrap_or_default();
    let list: Vec<(String, PathBuf)> = serde_json::from_str(&text).unwrap_or_default();
    list.into_iter()
        .map(|(id, path)| AttachedDisk { id, path })
        .collect()
}

async fn write_attached(paths: &VmPaths, disks: &[AttachedDisk]) -> Result<()> {
    let list: Vec<(&str, &Path)> = disks
        .iter()
        .map(|d| (d.id.as_str(), d.path.as_path()))
        .collect();
    let text = serde_json::to_string(&list)
        .map_err(|e| Error::invalid("attached disks", e.to_string()))?;
    tokio::fs::write(paths.attached(), text)
        .await
        .map_err(|e| Error::io(format!("writing {}", paths.attached().display()), e))
}

#[async_trait]
impl GuestExec for QemuHypervisor {
    async fn exec(&self, name: &VmName, command: &str) -> Result<ExecOutput> {
        let (paths, record) = self.require_running(name, "run a command in").await?;
        let out = Command::new("ssh")
            .arg("-i")
            .arg(paths.key())
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=20",
                "-p",
            ])
            .arg(record.ssh_port.to_string())
            .arg(format!("{}@127.0.0.1", record.ssh_user))
            .arg("--")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::GuestExec {
                name: name.to_string(),
                detail: format!("cannot run ssh: {e}"),
            })?;
        let status = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // ssh itself exits 255 when it cannot connect or authenticate.
        if status == 255 {
            return Err(Error::GuestExec {
                name: name.to_string(),
                detail: format!("ssh failed: {}", stderr.trim()),
            });
        }
        Ok(ExecOutput {
            status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_read_from_qemu_img_info() {
        let json =
            r#"{"format":"qcow2","snapshots":[{"name":"s1","vm-state-size":95158272,"id":"1"}]}"#;
        let s = parse_snapshots(json).unwrap();
        assert_eq!(
            s,
            vec![SnapshotInfo {
                tag: "s1".into(),
                vm_state_bytes: 95_158_272
            }]
        );
        assert!(parse_snapshots(r#"{"format":"qcow2"}"#).unwrap().is_empty());
        assert!(parse_snapshots("nonsense").is_err());
    }

    #[test]
    fn snapshot_tags_are_validated() {
        assert!(validate_tag("s1").is_ok());
        assert!(validate_tag("a;quit").is_err());
    }

    #[test]
    fn our_own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }

    /// QMP against a real QEMU with no guest (`-machine none`): starts in well under a second.
    #[tokio::test]
    async fn qmp_talks_to_a_machineless_qemu() {
        if !qemu_available() {
            eprintln!("skipped: qemu-system-x86_64 is not installed");
            return;
        }
        let dir = std::env::temp_dir().join(format!("vmenv-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("q.sock");
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "none",
                "-nodefaults",
                "-display",
                "none",
                "-qmp",
            ])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut q = Qmp::connect_with_retry(&sock, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            q.version.starts_with(|c: char| c.is_ascii_digit()),
            "{}",
            q.version
        );
        let s = q.execute("query-status", None).await.unwrap();
        assert!(s["status"].is_string());
        let e = q.execute("no-such-command", None).await.unwrap_err();
        assert!(
            matches!(e, Error::Qmp { ref class, .. } if class == "CommandNotFound"),
            "{e}"
        );
        let e = q.hmp("savevm x").await.unwrap_err();
        assert!(
            matches!(e, Error::Qmp { ref class, .. } if class == "HmpError"),
            "{e}"
        );
        q.execute("quit", None).await.unwrap();
        assert!(child.wait().await.unwrap().success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
