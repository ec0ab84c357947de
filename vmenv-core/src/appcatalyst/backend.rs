//! [`Hypervisor`] over an AppCatalyst daemon.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;

use super::client::{AppCatalystClient, FolderState, NewVm, PowerOp};
use crate::error::{Error, Result};
use crate::hypervisor::{Hypervisor, SharedFolders};
use crate::model::{
    GuestAddress, IpSource, SharedFolder, Source, StopOutcome, VmName, VmSpec, VmState, VmStatus,
};

/// The template name that means "AppCatalyst's default template" (Photon OS).
pub const DEFAULT_TEMPLATE: &str = "default";

/// Maps AppCatalyst's power strings onto Docker Machine's states, as its Docker Machine driver
/// did (`tools_running` counts as running; `blocked on msg` is an error).
pub fn state_from_power(raw: &str) -> VmState {
    match raw {
        "powered on" | "tools_running" => VmState::Running,
        "powering on" => VmState::Starting,
        "powering off" | "suspending" => VmState::Stopping,
        "suspended" => VmState::Saved,
        "paused" => VmState::Paused,
        "powered off" | "reseting" => VmState::Stopped,
        _ => VmState::Error,
    }
}

/// The AppCatalyst power string for a state (what the vmenv server reports).
pub fn power_from_state(state: VmState) -> &'static str {
    match state {
        VmState::Running => "powered on",
        VmState::Starting => "powering on",
        VmState::Stopping => "powering off",
        VmState::Saved => "suspended",
        VmState::Paused => "paused",
        VmState::Stopped | VmState::None => "powered off",
        VmState::Error | VmState::Timeout => "blocked on msg",
    }
}

/// An AppCatalyst daemon as a [`Hypervisor`].
///
/// AppCatalyst has no API for CPU and memory (clients edited the `.vmx`), port forwards, NICs,
/// snapshots, disk hot-plug or guest commands: those are [`Error::Unsupported`]. A spec asking
/// for other than 1 CPU and 256 MiB is refused rather than silently ignored.
#[derive(Clone, Debug)]
pub struct AppCatalystHypervisor {
    client: AppCatalystClient,
}

impl AppCatalystHypervisor {
    /// A backend over a client.
    pub fn new(client: AppCatalystClient) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &AppCatalystClient {
        &self.client
    }
}

#[async_trait]
impl Hypervisor for AppCatalystHypervisor {
    fn kind(&self) -> &'static str {
        "appcatalyst"
    }

    async fn create(&self, spec: &VmSpec) -> Result<()> {
        spec.validate()?;
        if spec.cpus != 1 || spec.memory_mib != 256 {
            return Err(Error::Unsupported {
                feature: "setting CPU or memory through the AppCatalyst API",
            });
        }
        if !spec.port_forwards.is_empty() {
            return Err(Error::Unsupported {
                feature: "port forwarding on AppCatalyst",
            });
        }
        let mut vm = NewVm {
            id: spec.name.to_string(),
            name: Some(spec.name.to_string()),
            tag: Some("vmenv".into()),
            ..NewVm::default()
        };
        match &spec.source {
            Source::Template(t) if t == DEFAULT_TEMPLATE => {}
            Source::Template(t) => vm.parent_id = Some(t.clone()),
            Source::CloneOf(of) => vm.parent_id = Some(of.to_string()),
            Source::Image(p) => vm.source_reference = Some(p.display().to_string()),
        }
        self.client.create_vm(&vm).await?;
        for f in &spec.shared_folders {
            self.add_shared_folder(&spec.name, f).await?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<VmName>> {
        Ok(self
            .client
            .list_vms(&[])
            .await?
            .into_iter()
            .filter_map(|id| VmName::new(id).ok())
            .collect())
    }

    async fn spec(&self, _name: &VmName) -> Result<VmSpec> {
        Err(Error::Unsupported {
            feature: "reading a VM's CPU and memory from AppCatalyst",
        })
    }

    async fn start(&self, name: &VmName) -> Result<()> {
        // As the Vagrant provider's Resume: unpause a paused VM, otherwise power on.
        let op = if self.status(name).await?.state == VmState::Paused {
            PowerOp::Unpause
        } else {
            PowerOp::On
        };
        self.client.set_power(name.as_str(), op).await.map(|_| ())
    }

    async fn stop(&self, name: &VmName, grace: Duration) -> Result<StopOutcome> {
        if matches!(self.status(name).await?.state, VmState::Stopped) {
            return Ok(StopOutcome::AlreadyStopped);
        }
        // As the Vagrant provider's PowerOff: shutdown, falling back to off.
        if self
            .client
            .set_power(name.as_str(), PowerOp::Shutdown)
            .await
            .is_ok()
        {
            let start = tokio::time::Instant::now();
            while start.elapsed() < grace {
                if self.status(name).await?.state == VmState::Stopped {
                    return Ok(StopOutcome::Graceful);
                }
                tokio::time::sleep(Duration::from_millis(500).min(grace)).await;
            }
        }
        self.client.set_power(name.as_str(), PowerOp::Off).await?;
        Ok(StopOutcome::Forced)
    }

    async fn kill(&self, name: &VmName) -> Result<()> {
        self.client
            .set_power(name.as_str(), PowerOp::Off)
            .await
            .map(|_| ())
    }

    async fn pause(&self, name: &VmName) -> Result<()> {
        self.client
            .set_power(name.as_str(), PowerOp::Pause)
            .await
            .map(|_| ())
    }

    async fn resume(&self, name: &VmName) -> Result<()> {
        self.client
            .set_power(name.as_str(), PowerOp::Unpause)
            .await
            .map(|_| ())
    }

    async fn suspend(&self, name: &VmName) -> Result<()> {
        self.client
            .set_power(name.as_str(), PowerOp::Suspend)
            .await
            .map(|_| ())
    }

    async fn destroy(&self, name: &VmName) -> Result<()> {
        self.client.delete_vm(name.as_str()).await
    }

    async fn status(&self, name: &VmName) -> Result<VmStatus> {
        match self.client.power_state(name.as_str()).await {
            Ok(raw) => Ok(VmStatus {
                state: state_from_power(&raw),
                raw,
            }),
            Err(Error::Api { status: 404, .. }) => Ok(VmStatus {
                state: VmState::None,
                raw: "not found".into(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn ip(&self, name: &VmName, deadline: Duration) -> Result<GuestAddress> {
        let raw = self
            .client
            .wait_ip(
                name.as_str(),
                deadline,
                Duration::from_secs(2).min(deadline),
            )
            .await?;
        let guest_ip: IpAddr = raw
            .parse()
            .map_err(|_| Error::invalid("IP address from AppCatalyst", raw.clone()))?;
        Ok(GuestAddress {
            guest_ip,
            source: IpSource::GuestTools,
            ssh: SocketAddr::new(guest_ip, 22),
        })
    }

    fn shared_folders(&self) -> Option<&dyn SharedFolders> {
        Some(self)
    }
}

#[async_trait]
impl SharedFolders for AppCatalystHypervisor {
    async fn add_shared_folder(&self, name: &VmName, folder: &SharedFolder) -> Result<()> {
        folder.validate()?;
        self.client.enable_folders(name.as_str(), true).await?;
        self.client
            .add_folder(
                name.as_str(),
                &FolderState {
                    guest_path: folder.name.clone(),
                    host_path: folder.host_path.display().to_string(),
                    flags: if folder.writable { 4 } else { 0 },
                },
            )
            .await
            .map(|_| ())
    }

    async fn list_shared_folders(&self, name: &VmName) -> Result<Vec<SharedFolder>> {
        let mut out = Vec::new();
        for share in self.client.list_folders(name.as_str()).await? {
            let f = self.client.get_folder(name.as_str(), &share).await?;
            out.push(SharedFolder {
                guest_path: format!("/mnt/hgfs/{}", f.guest_path),
                name: f.guest_path,
                host_path: f.host_path.into(),
                writable: f.flags & 4 != 0,
            });
        }
        Ok(out)
    }

    async fn remove_shared_folder(&self, name: &VmName, share: &str) -> Result<()> {
        self.client.remove_folder(name.as_str(), share).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_strings_map_like_the_docker_machine_driver() {
        assert_eq!(state_from_power("powered on"), VmState::Running);
        assert_eq!(state_from_power("tools_running"), VmState::Running);
        assert_eq!(state_from_power("reseting"), VmState::Stopped);
        assert_eq!(state_from_power("blocked on msg"), VmState::Error);
        for s in [
            VmState::Running,
            VmState::Stopped,
            VmState::Paused,
            VmState::Saved,
        ] {
            assert_eq!(state_from_power(power_from_state(s)), s);
        }
    }
}
