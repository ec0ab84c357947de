//! Environments: a declarative YAML file naming VMs, and `up` / `status` / `down` over any
//! [`Hypervisor`].
//!
//! ```yaml
//! vms:
//!   web:
//!     template: tiny          # or `image: /abs/disk.qcow2`
//!     cpus: 1
//!     memory: 256             # MiB
//!     shared_folders:
//!       - { name: src, host: ./src, guest: /mnt/src }   # host paths relative to the file
//!     ports:
//!       - { host: 8080, guest: 80 }                      # host 0: any free port
//!     docker: true            # a Docker host: guest port 2376 is forwarded
//! ```
//!
//! `up` converges: it creates what is missing, starts what is stopped, and leaves what matches;
//! a VM that exists but differs from the file is reported and nothing is changed. Progress comes
//! as a stream of [`Event`]s. Planning ([`plan_up`]) is plain code apart from the IO.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, Result};
use crate::hypervisor::Hypervisor;
use crate::model::{Event, PortForward, SharedFolder, Source, VmName, VmSpec, VmState, VmStatus};

/// The guest port of Docker's TLS endpoint (`tcp://<host>:2376`, as Docker Machine's `GetURL`).
pub const DOCKER_PORT: u16 = 2376;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVm {
    template: Option<String>,
    image: Option<PathBuf>,
    #[serde(default = "one")]
    cpus: u8,
    #[serde(default = "default_memory")]
    memory: u32,
    #[serde(default)]
    shared_folders: Vec<FileFolder>,
    #[serde(default)]
    ports: Vec<PortForward>,
    #[serde(default)]
    docker: bool,
}

fn one() -> u8 {
    1
}

fn default_memory() -> u32 {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFolder {
    name: String,
    host: PathBuf,
    guest: String,
    #[serde(default = "yes")]
    writable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vms: BTreeMap<String, FileVm>,
}

/// A parsed, validated environment: the VMs it names, in name order.
#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    /// The VMs.
    pub vms: Vec<VmSpec>,
}

impl Environment {
    /// Reads and validates an environment file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Environment {
            path: path.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(base).map_err(|e| Error::Environment {
            path: path.to_owned(),
            reason: format!("cannot resolve its directory: {e}"),
        })?;
        Self::parse(&text, &base).map_err(|e| Error::Environment {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Parses YAML text; relative host paths are resolved against `base`.
    ///
    /// ```
    /// use vmenv_core::env::Environment;
    /// let env = Environment::parse("vms:\n  web:\n    template: tiny\n    memory: 128\n", "/tmp".as_ref()).unwrap();
    /// assert_eq!(env.vms[0].name.as_str(), "web");
    /// assert_eq!(env.vms[0].memory_mib, 128);
    /// assert!(Environment::parse("vms:\n  web:\n    memroy: 1\n", "/tmp".as_ref()).is_err());
    /// ```
    pub fn parse(yaml: &str, base: &Path) -> Result<Self> {
        let file: File = serde_norway::from_str(yaml)
            .map_err(|e| Error::invalid("environment", e.to_string()))?;
        let mut vms = Vec::new();
        for (name, vm) in file.vms {
            let name = VmName::new(name)?;
            let source = match (vm.template, vm.image) {
                (Some(t), None) => Source::Template(t),
                (None, Some(i)) => Source::Image(base.join(i)),
                _ => {
                    return Err(Error::invalid(
                        "environment",
                        format!("VM {name}: give exactly one of `template` or `image`"),
                    ));
                }
            };
            let mut spec = VmSpec::new(name, source);
            spec.cpus = vm.cpus;
            spec.memory_mib = vm.memory;
            spec.port_forwards = vm.ports;
            spec.docker_host = vm.docker;
            if vm.docker && !spec.port_forwards.iter().any(|p| p.guest == DOCKER_PORT) {
                spec.port_forwards.push(PortForward {
                    host: 0,
                    guest: DOCKER_PORT,
                });
            }
            spec.shared_folders = vm
                .shared_folders
                .into_iter()
                .map(|f| SharedFolder {
                    name: f.name,
                    host_path: base.join(f.host),
                    guest_path: f.guest,
                    writable: f.writable,
                })
                .collect();
            spec.validate()?;
            vms.push(spec);
        }
        Ok(Self { vms })
    }
}

/// What `up` does for one VM.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// Create it, then start it.
    CreateAndStart(VmSpec),
    /// It exists but is not running: start it.
    Start(VmName),
    /// It runs and matches: leave it.
    Leave(VmName),
}

/// What is known about one VM before `up`.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Its state.
    pub status: VmStatus,
    /// Its spec, when the backend can tell.
    pub spec: Option<VmSpec>,
}

/// Plans `up`: pure, no IO. Fails, changing nothing, when an existing VM differs from its
/// description (the error lists every difference).
///
/// ```
/// use vmenv_core::env::{Step, plan_up};
/// use vmenv_core::{Source, VmName, VmSpec};
/// let spec = VmSpec::new(VmName::new("a").unwrap(), Source::Template("t".into()));
/// let plan = plan_up(&[spec.clone()], &|_| None).unwrap();
/// assert_eq!(plan, vec![Step::CreateAndStart(spec)]);
/// ```
pub fn plan_up(
    desired: &[VmSpec],
    observed: &dyn Fn(&VmName) -> Option<Observed>,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut drift = Vec::new();
    for want in desired {
        let Some(have) = observed(&want.name) else {
            steps.push(Step::CreateAndStart(want.clone()));
            continue;
        };
        if have.status.state == VmState::None {
            steps.push(Step::CreateAndStart(want.clone()));
            continue;
        }
        if let Some(spec) = &have.spec {
            let mut diffs = Vec::new();
            if spec.cpus != want.cpus {
                diffs.push(format!("cpus {} -> {}", spec.cpus, want.cpus));
            }
            if spec.memory_mib != want.memory_mib {
                diffs.push(format!(
                    "memory {} -> {} MiB",
                    spec.memory_mib, want.memory_mib
                ));
            }
            if spec.source != want.source {
                diffs.push("source".to_owned());
            }
            if spec.shared_folders != want.shared_folders {
                diffs.push("shared folders".to_owned());
            }
            if spec.port_forwards != want.port_forwards {
                diffs.push("ports".to_owned());
            }
            if !diffs.is_empty() {
                drift.push(format!("{}: {}", want.name, diffs.join(", ")));
                continue;
            }
        }
        steps.push(match have.status.state {
            VmState::Running | VmState::Starting => Step::Leave(want.name.clone()),
            _ => Step::Start(want.name.clone()),
        });
    }
    if drift.is_empty() {
        Ok(steps)
    } else {
        Err(Error::invalid(
            "environment",
            format!(
                "existing VMs differ from the file (run `down` first): {}",
                drift.join("; ")
            ),
        ))
    }
}

fn emit(events: Option<&UnboundedSender<Event>>, e: Event) {
    if let Some(tx) = events {
        // A caller that stopped listening does not stop the work.
        let _ = tx.send(e);
    }
}

async fn observe(hv: &dyn Hypervisor, env: &Environment) -> Result<BTreeMap<VmName, Observed>> {
    let mut out = BTreeMap::new();
    for spec in &env.vms {
        let status = hv.status(&spec.name).await?;
        let have = if status.state == VmState::None {
            None
        } else {
            match hv.spec(&spec.name).await {
                Ok(s) => Some(s),
                Err(e) if e.is_unsupported() => None,
                Err(e) => return Err(e),
            }
        };
        out.insert(spec.name.clone(), Observed { status, spec: have });
    }
    Ok(out)
}

/// Converges the environment: creates what is missing, starts what is stopped, leaves what
/// matches; then waits (at most `ip_deadline` per VM) until every VM has an address, reporting
/// boot phases and addresses as events.
pub async fn up(
    hv: Arc<dyn Hypervisor>,
    env: &Environment,
    ip_deadline: Duration,
    events: Option<&UnboundedSender<Event>>,
) -> Result<Vec<Step>> {
    let seen = observe(hv.as_ref(), env).await?;
    let steps = plan_up(&env.vms, &|n| seen.get(n).cloned())?;
    let mut booting = Vec::new();
    for step in &steps {
        match step {
            Step::CreateAndStart(spec) => {
                emit(events, Event::Creating(spec.name.clone()));
                hv.create(spec).await?;
                hv.start(&spec.name).await?;
                emit(events, Event::Started(spec.name.clone()));
                booting.push(spec.name.clone());
            }
            Step::Start(name) => {
                hv.start(name).await?;
                emit(events, Event::Started(name.clone()));
                booting.push(name.clone());
            }
            Step::Leave(name) => emit(events, Event::Unchanged(name.clone())),
        }
    }
    // The VMs boot in parallel; wait for each, reporting its boot phases as they appear.
    for name in booting {
        let start = tokio::time::Instant::now();
        let mut reported = 0;
        loop {
            let phases = hv.boot_phases(&name).await;
            for p in phases.iter().skip(reported) {
                emit(events, Event::BootPhase(name.clone(), p.clone()));
            }
            reported = reported.max(phases.len());
            let left = ip_deadline.saturating_sub(start.elapsed());
            match hv.ip(&name, Duration::from_millis(500).min(left)).await {
                Ok(addr) => {
                    // Phases the guest reported while the address was awaited come first.
                    for p in hv.boot_phases(&name).await.iter().skip(reported) {
                        emit(events, Event::BootPhase(name.clone(), p.clone()));
                    }
                    emit(events, Event::IpAcquired(name.clone(), addr.guest_ip));
                    break;
                }
                Err(Error::Timeout { .. }) if !left.is_zero() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(steps)
}

/// The state of every VM the file names.
pub async fn status(hv: &dyn Hypervisor, env: &Environment) -> Result<Vec<(VmName, VmStatus)>> {
    let mut out = Vec::new();
    for spec in &env.vms {
        out.push((spec.name.clone(), hv.status(&spec.name).await?));
    }
    Ok(out)
}

/// Stops (gracefully, within `grace`, then hard) and destroys every VM the file names.
pub async fn down(
    hv: &dyn Hypervisor,
    env: &Environment,
    grace: Duration,
    events: Option<&UnboundedSender<Event>>,
) -> Result<()> {
    for spec in &env.vms {
        if hv.status(&spec.name).await?.state == VmState::None {
            continue;
        }
        hv.stop(&spec.name, grace).await?;
        emit(events, Event::Stopped(spec.name.clone()));
        hv.destroy(&spec.name).await?;
        emit(events, Event::Destroyed(spec.name.clone()));
    }
    Ok(())
}

/// The Docker endpoint of a running Docker-host VM (`tcp://127.0.0.1:<port>` under user-mode
/// networking), or `None` when the VM forwards no Docker port.
pub async fn docker_endpoint(hv: &dyn Hypervisor, name: &VmName) -> Result<Option<String>> {
    let forwards = hv.require_port_forwards()?.list_port_forwards(name).await?;
    Ok(forwards
        .iter()
        .find(|f| f.guest == DOCKER_PORT && f.host != 0)
        .map(|f| format!("tcp://127.0.0.1:{}", f.host)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
vms:
  web:
    template: tiny
    cpus: 2
    memory: 512
    shared_folders:
      - { name: src, host: ./src, guest: /mnt/src }
      - { name: ro, host: /etc, guest: /mnt/etc, writable: false }
    ports:
      - { host: 8080, guest: 80 }
    docker: true
  db:
    image: disks/db.qcow2
";

    fn status(state: VmState) -> VmStatus {
        VmStatus {
            state,
            raw: String::new(),
        }
    }

    #[test]
    fn a_file_becomes_validated_specs() {
        let env = Environment::parse(FILE, Path::new("/work")).unwrap();
        let names: Vec<_> = env.vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["db", "web"]);
        let db = &env.vms[0];
        assert_eq!(db.source, Source::Image("/work/disks/db.qcow2".into()));
        assert_eq!((db.cpus, db.memory_mib), (1, 256));
        let web = &env.vms[1];
        assert_eq!((web.cpus, web.memory_mib), (2, 512));
        assert_eq!(web.shared_folders[0].host_path, Path::new("/work/src"));
        assert!(web.shared_folders[0].writable);
        assert!(!web.shared_folders[1].writable);
        assert!(web.docker_host);
        assert_eq!(
            web.port_forwards,
            vec![
                PortForward {
                    host: 8080,
                    guest: 80
                },
                PortForward {
                    host: 0,
                    guest: DOCKER_PORT
                }
            ]
        );
    }

    #[test]
    fn bad_files_get_clear_errors() {
        for (yaml, needle) in [
            ("vms:\n  a:\n    cpus: 1\n", "exactly one of"),
            (
                "vms:\n  a:\n    template: t\n    image: x\n",
                "exactly one of",
            ),
            (
                "vms:\n  a:\n    template: t\n    colour: red\n",
                "unknown field",
            ),
            ("vms:\n  a/b:\n    template: t\n", "VM name"),
            ("vms:\n  a:\n    template: t\n    memory: 1\n", "memory"),
            ("vms: [", "environment"),
        ] {
            let e = Environment::parse(yaml, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn up_creates_starts_and_leaves() {
        let env = Environment::parse(FILE, Path::new("/w")).unwrap();
        let db = env.vms[0].clone();
        let web = env.vms[1].clone();
        // Nothing exists: create both.
        let plan = plan_up(&env.vms, &|_| None).unwrap();
        assert_eq!(
            plan,
            vec![
                Step::CreateAndStart(db.clone()),
                Step::CreateAndStart(web.clone())
            ]
        );
        // db stopped, web running and matching.
        let plan = plan_up(&env.vms, &|n| {
            Some(Observed {
                status: status(if n.as_str() == "db" {
                    VmState::Stopped
                } else {
                    VmState::Running
                }),
                spec: Some(if n.as_str() == "db" {
                    db.clone()
                } else {
                    web.clone()
                }),
            })
        })
        .unwrap();
        assert_eq!(
            plan,
            vec![Step::Start(db.name.clone()), Step::Leave(web.name.clone())]
        );
    }

    #[test]
    fn drift_is_reported_and_nothing_is_planned() {
        let env = Environment::parse(FILE, Path::new("/w")).unwrap();
        let mut other = env.vms[1].clone();
        other.memory_mib = 1024;
        let e = plan_up(&env.vms, &|n| {
            (n.as_str() == "web").then(|| Observed {
                status: status(VmState::Running),
                spec: Some(other.clone()),
            })
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("web: memory 1024 -> 512 MiB"), "{e}");
    }
}
