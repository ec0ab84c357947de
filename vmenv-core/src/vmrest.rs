//! A client for VMware Fusion/Workstation's `vmrest` API (1.3.0), the successor of AppCatalyst.
//!
//! `vmrest` listens on `http://127.0.0.1:8697/api`, needs HTTP Basic auth (set up with
//! `vmrest -C`), and speaks `application/vnd.vmware.vmw.rest-v1+json` in both directions. VM ids
//! are opaque 32-character strings: [`VmrestClient::id_for_name`] maps a VM name to its id
//! through the `.vmx` path. Power changes are a raw-string `PUT`. Errors are
//! `{code,message}`. `vmrest` has no snapshots, guest commands or console.
//! [`VmrestHypervisor`] is a [`Hypervisor`] over the client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::appcatalyst::PowerOp;
use crate::error::{Error, Result};
use crate::hypervisor::{Hypervisor, Nics, SharedFolders};
use crate::model::{
    GuestAddress, IpSource, Nic, SharedFolder, Source, StopOutcome, VmName, VmSpec, VmState,
    VmStatus,
};
use crate::rest::{body_or_error, parse, transport};

const API: &str = "vmrest";

/// The media type `vmrest` consumes and produces.
pub const MEDIA_TYPE: &str = "application/vnd.vmware.vmw.rest-v1+json";

/// Basic-auth credentials. The password never appears in `Debug` output or errors.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// The user and password configured with `vmrest -C`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A VM in `GET /vms`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct VmRef {
    /// The opaque id.
    pub id: String,
    /// The `.vmx` path.
    pub path: String,
}

/// `VMInformation`: CPU and memory.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct VmSettings {
    /// The opaque id.
    pub id: String,
    /// CPU settings.
    pub cpu: Cpu,
    /// Memory in MB.
    pub memory: u32,
}

/// `{"processors": n}`.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Cpu {
    /// Virtual CPUs.
    pub processors: u32,
}

/// A shared folder in `vmrest`'s snake_case.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct VmrestFolder {
    /// The share's id (its name).
    pub folder_id: String,
    /// The host directory.
    pub host_path: String,
    /// `4` = read/write.
    pub flags: i64,
}

/// A NIC.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmrestNic {
    /// The NIC's index.
    pub index: i64,
    /// `bridged`, `nat`, `hostonly` or `custom`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The vmnet (for `custom`).
    #[serde(default)]
    pub vmnet: String,
    /// The MAC address.
    #[serde(default)]
    pub mac_address: String,
}

/// A port forward on a vmnet.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct VmrestPortForward {
    /// The host port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// A description.
    #[serde(default)]
    pub desc: String,
    /// The guest side.
    pub guest: GuestEnd,
}

/// The guest side of a port forward.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct GuestEnd {
    /// The guest's IP.
    pub ip: String,
    /// The guest's port.
    #[serde(default)]
    pub port: u16,
}

/// Maps `vmrest` power states onto Docker Machine's states.
pub fn state_from_power(raw: &str) -> VmState {
    match raw {
        "poweredOn" => VmState::Running,
        "poweredOff" => VmState::Stopped,
        "paused" => VmState::Paused,
        "suspended" => VmState::Saved,
        _ => VmState::Error,
    }
}

/// A client for one `vmrest` daemon.
#[derive(Clone, Debug)]
pub struct VmrestClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
}

fn seg(s: &str) -> Result<&str> {
    if s.is_empty() || s.contains(['/', '?', '#', '%']) || s == "." || s == ".." {
        return Err(Error::invalid("vmrest path segment", format!("{s:?}")));
    }
    Ok(s)
}

impl VmrestClient {
    /// A client for `base` (`http://127.0.0.1:8697`; `/api` is appended).
    pub fn new(base: &str, credentials: Credentials) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| transport(API, &e))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<String> {
        let mut req = self
            .http
            .request(method, format!("{}/api{path}", self.base))
            .basic_auth(&self.credentials.user, Some(&self.credentials.password))
            .header("Accept", MEDIA_TYPE);
        if let Some(b) = body {
            req = req.header("Content-Type", MEDIA_TYPE).body(b);
        }
        let resp = req.send().await.map_err(|e| transport(API, &e))?;
        body_or_error(API, resp).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        parse(API, &self.call(reqwest::Method::GET, path, None).await?)
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<T> {
        parse(API, &self.call(method, path, Some(body.to_string())).await?)
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.call(reqwest::Method::DELETE, path, None)
            .await
            .map(|_| ())
    }

    /// `GET /vms`.
    pub async fn list_vms(&self) -> Result<Vec<VmRef>> {
        self.get("/vms").await
    }

    /// Maps a VM name (the `.vmx` file's stem) to its opaque id.
    pub async fn id_for_name(&self, name: &str) -> Result<String> {
        self.list_vms()
            .await?
            .into_iter()
            .find(|v| {
                let file = v.path.rsplit(['/', '\\']).next().unwrap_or_default();
                file.strip_suffix(".vmx") == Some(name)
            })
            .map(|v| v.id)
            .ok_or_else(|| Error::NotFound {
                name: name.to_owned(),
            })
    }

    /// `GET /vms/{id}`.
    pub async fn get_vm(&self, id: &str) -> Result<VmSettings> {
        self.get(&format!("/vms/{}", seg(id)?)).await
    }

    /// `PUT /vms/{id}`: sets CPUs and memory (MB).
    pub async fn update_vm(&self, id: &str, processors: u32, memory: u32) -> Result<VmSettings> {
        self.send_json(
            reqwest::Method::PUT,
            &format!("/vms/{}", seg(id)?),
            &json!({ "processors": processors, "memory": memory }),
        )
        .await
    }

    /// `POST /vms`: clones `parent_id` as `name`.
    pub async fn clone_vm(&self, name: &str, parent_id: &str) -> Result<VmSettings> {
        self.send_json(
            reqwest::Method::POST,
            "/vms",
            &json!({ "name": name, "parentId": parent_id }),
        )
        .await
    }

    /// `DELETE /vms/{id}`.
    pub async fn delete_vm(&self, id: &str) -> Result<()> {
        self.delete(&format!("/vms/{}", seg(id)?)).await
    }

    /// `POST /vms/registration`: registers an existing `.vmx`.
    pub async fn register_vm(&self, name: &str, vmx_path: &str) -> Result<VmRef> {
        self.send_json(
            reqwest::Method::POST,
            "/vms/registration",
            &json!({ "name": name, "path": vmx_path }),
        )
        .await
    }

    /// `GET /vms/{id}/restrictions`.
    pub async fn restrictions(&self, id: &str) -> Result<Value> {
        self.get(&format!("/vms/{}/restrictions", seg(id)?)).await
    }

    /// `GET /vms/{id}/params/{name}`: a `.vmx` key's value.
    pub async fn get_param(&self, id: &str, name: &str) -> Result<String> {
        let v: Value = self
            .get(&format!("/vms/{}/params/{}", seg(id)?, seg(name)?))
            .await?;
        Ok(v["value"].as_str().unwrap_or_default().to_owned())
    }

    /// `PUT /vms/{id}/configparams`: writes a `.vmx` key.
    pub async fn set_config_param(&self, id: &str, name: &str, value: &str) -> Result<()> {
        self.call(
            reqwest::Method::PUT,
            &format!("/vms/{}/configparams", seg(id)?),
            Some(json!({ "name": name, "value": value }).to_string()),
        )
        .await
        .map(|_| ())
    }

    /// `GET /vms/{id}/power`: `poweredOn`, `poweredOff`, `paused` or `suspended`.
    pub async fn power_state(&self, id: &str) -> Result<String> {
        let v: Value = self.get(&format!("/vms/{}/power", seg(id)?)).await?;
        Ok(v["power_state"].as_str().unwrap_or_default().to_owned())
    }

    /// `PUT /vms/{id}/power` with a raw-string body; returns the new state.
    pub async fn set_power(&self, id: &str, op: PowerOp) -> Result<String> {
        let body = self
            .call(
                reqwest::Method::PUT,
                &format!("/vms/{}/power", seg(id)?),
                Some(op.as_str().to_owned()),
            )
            .await?;
        let v: Value = parse(API, &body)?;
        Ok(v["power_state"].as_str().unwrap_or_default().to_owned())
    }

    /// `GET /vms/{id}/sharedfolders`.
    pub async fn list_shared_folders(&self, id: &str) -> Result<Vec<VmrestFolder>> {
        self.get(&format!("/vms/{}/sharedfolders", seg(id)?)).await
    }

    /// `POST /vms/{id}/sharedfolders`; returns the whole list.
    pub async fn add_shared_folder(&self, id: &str, f: &VmrestFolder) -> Result<Vec<VmrestFolder>> {
        self.send_json(
            reqwest::Method::POST,
            &format!("/vms/{}/sharedfolders", seg(id)?),
            &json!(f),
        )
        .await
    }

    /// `PUT /vms/{id}/sharedfolders/{folder id}`; returns the whole list.
    pub async fn update_shared_folder(
        &self,
        id: &str,
        f: &VmrestFolder,
    ) -> Result<Vec<VmrestFolder>> {
        self.send_json(
            reqwest::Method::PUT,
            &format!("/vms/{}/sharedfolders/{}", seg(id)?, seg(&f.folder_id)?),
            &json!({ "host_path": f.host_path, "flags": f.flags }),
        )
        .await
    }

    /// `DELETE /vms/{id}/sharedfolders/{folder id}`.
    pub async fn delete_shared_folder(&self, id: &str, folder_id: &str) -> Result<()> {
        self.delete(&format!(
            "/vms/{}/sharedfolders/{}",
            seg(id)?,
            seg(folder_id)?
        ))
        .await
    }

    /// `GET /vms/{id}/nic`.
    pub async fn list_nics(&self, id: &str) -> Result<Vec<VmrestNic>> {
        let v: Value = self.get(&format!("/vms/{}/nic", seg(id)?)).await?;
        serde_json::from_value(v["nics"].clone()).map_err(|e| Error::Transport {
            api: API,
            detail: format!("unexpected NIC list: {e}"),
        })
    }

    /// `POST /vms/{id}/nic`.
    pub async fn add_nic(&self, id: &str, kind: &str, vmnet: Option<&str>) -> Result<VmrestNic> {
        let mut body = json!({ "type": kind });
        if let Some(n) = vmnet {
            body["vmnet"] = json!(n);
        }
        self.send_json(
            reqwest::Method::POST,
            &format!("/vms/{}/nic", seg(id)?),
            &body,
        )
        .await
    }

    /// `PUT /vms/{id}/nic/{index}`.
    pub async fn update_nic(
        &self,
        id: &str,
        index: i64,
        kind: &str,
        vmnet: Option<&str>,
    ) -> Result<VmrestNic> {
        let mut body = json!({ "type": kind });
        if let Some(n) = vmnet {
            body["vmnet"] = json!(n);
        }
        self.send_json(
            reqwest::Method::PUT,
            &format!("/vms/{}/nic/{index}", seg(id)?),
            &body,
        )
        .await
    }

    /// `DELETE /vms/{id}/nic/{index}`.
    pub async fn delete_nic(&self, id: &str, index: i64) -> Result<()> {
        self.delete(&format!("/vms/{}/nic/{index}", seg(id)?)).await
    }

    /// `GET /vms/{id}/ip`: needs VMware Tools in the guest.
    pub async fn ip(&self, id: &str) -> Result<String> {
        let v: Value = self.get(&format!("/vms/{}/ip", seg(id)?)).await?;
        v["ip"]
            .as_str()
            .map(ToOwned::to_owned)
            .ok_or_else(|| Error::Transport {
                api: API,
                detail: format!("no ip in {v}"),
            })
    }

    /// `GET /vms/{id}/nicips`.
    pub async fn nic_ips(&self, id: &str) -> Result<Value> {
        self.get(&format!("/vms/{}/nicips", seg(id)?)).await
    }

    /// `GET /vmnet`: the virtual networks.
    pub async fn list_vmnets(&self) -> Result<Value> {
        self.get("/vmnet").await
    }

    /// `POST /vmnets`: creates a `nat` or `hostOnly` network.
    pub async fn create_vmnet(&self, name: &str, kind: &str) -> Result<Value> {
        self.send_json(
            reqwest::Method::POST,
            "/vmnets",
            &json!({ "name": name, "type": kind }),
        )
        .await
    }

    /// `GET /vmnet/{vmnet}/mactoip`.
    pub async fn mac_to_ip(&self, vmnet: &str) -> Result<Value> {
        self.get(&format!("/vmnet/{}/mactoip", seg(vmnet)?)).await
    }

    /// `PUT /vmnet/{vmnet}/mactoip/{mac}`: a DHCP reservation.
    pub async fn set_mac_to_ip(&self, vmnet: &str, mac: &str, ip: &str) -> Result<()> {
        self.call(
            reqwest::Method::PUT,
            &format!("/vmnet/{}/mactoip/{}", seg(vmnet)?, seg(mac)?),
            Some(json!({ "IP": ip }).to_string()),
        )
        .await
        .map(|_| ())
    }

    /// `GET /vmnet/{vmnet}/portforward`.
    pub async fn list_port_forwards(&self, vmnet: &str) -> Result<Vec<VmrestPortForward>> {
        let v: Value = self
            .get(&format!("/vmnet/{}/portforward", seg(vmnet)?))
            .await?;
        serde_json::from_value(v["port_forwardings"].clone()).map_err(|e| Error::Transport {
            api: API,
            detail: format!("unexpected port forward list: {e}"),
        })
    }

    /// `PUT /vmnet/{vmnet}/portforward/{protocol}/{port}`.
    pub async fn set_port_forward(
        &self,
        vmnet: &str,
        protocol: &str,
        port: u16,
        guest_ip: &str,
        guest_port: u16,
        desc: &str,
    ) -> Result<()> {
        self.call(
            reqwest::Method::PUT,
            &format!(
                "/vmnet/{}/portforward/{}/{port}",
                seg(vmnet)?,
                seg(protocol)?
            ),
            Some(json!({ "guestIp": guest_ip, "guestPort": guest_port, "desc": desc }).to_string()),
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /vmnet/{vmnet}/portforward/{protocol}/{port}`.
    pub async fn delete_port_forward(&self, vmnet: &str, protocol: &str, port: u16) -> Result<()> {
        self.delete(&format!(
            "/vmnet/{}/portforward/{}/{port}",
            seg(vmnet)?,
            seg(protocol)?
        ))
        .await
    }
}

/// A `vmrest` daemon as a [`Hypervisor`].
///
/// VM names are the `.vmx` file stems; [`Source::Template`] and [`Source::CloneOf`] name the VM
/// to clone (vmrest creates VMs only by cloning). CPU and memory are set after the clone.
/// vmrest has no snapshots, port forwards per VM, disk hot-plug or guest commands: those are
/// [`Error::Unsupported`], as is [`Source::Image`] and reading back a VM's source.
#[derive(Clone, Debug)]
pub struct VmrestHypervisor {
    client: VmrestClient,
}

impl VmrestHypervisor {
    /// A backend over a client.
    pub fn new(client: VmrestClient) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &VmrestClient {
        &self.client
    }

    async fn power(&self, name: &VmName, op: PowerOp) -> Result<()> {
        let id = self.client.id_for_name(name.as_str()).await?;
        self.client.set_power(&id, op).await.map(|_| ())
    }
}

#[async_trait]
impl Hypervisor for VmrestHypervisor {
    fn kind(&self) -> &'static str {
        "vmrest"
    }

    async fn create(&self, spec: &VmSpec) -> Result<()> {
        spec.validate()?;
        let parent = match &spec.source {
            Source::Template(t) => t.clone(),
            Source::CloneOf(of) => of.to_string(),
            Source::Image(_) => {
                return Err(Error::Unsupported {
                    feature: "creating a vmrest VM from a disk image (vmrest only clones)",
                });
            }
        };
        if !spec.port_forwards.is_empty() {
            return Err(Error::Unsupported {
                feature: "per-VM port forwarding on vmrest (forwards belong to a vmnet)",
            });
        }
        if self.client.id_for_name(spec.name.as_str()).await.is_ok() {
            return Err(Error::AlreadyExists {
                name: spec.name.to_string(),
            });
        }
        let parent_id = self.client.id_for_name(&parent).await.map_err(|_| {
            Error::invalid("source", format!("no vmrest VM named {parent:?} to clone"))
        })?;
        let vm = self.client.clone_vm(spec.name.as_str(), &parent_id).await?;
        self.client
            .update_vm(&vm.id, u32::from(spec.cpus), spec.memory_mib)
            .await?;
        for f in &spec.shared_folders {
            f.validate()?;
            self.client
                .add_shared_folder(
                    &vm.id,
                    &VmrestFolder {
                        folder_id: f.name.clone(),
                        host_path: f.host_path.display().to_string(),
                        flags: if f.writable { 4 } else { 0 },
                    },
                )
                .await?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<VmName>> {
        let mut out: Vec<VmName> = self
            .client
            .list_vms()
            .await?
            .iter()
            .filter_map(|v| {
                let file = v.path.rsplit(['/', '\\']).next()?;
                VmName::new(file.strip_suffix(".vmx")?).ok()
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn spec(&self, _name: &VmName) -> Result<VmSpec> {
        Err(Error::Unsupported {
            feature: "reading back which template a vmrest VM was cloned from",
        })
    }

    async fn start(&self, name: &VmName) -> Result<()> {
        let op = if self.status(name).await?.state == VmState::Paused {
            PowerOp::Unpause
        } else {
            PowerOp::On
        };
        self.power(name, op).await
    }

    async fn stop(&self, name: &VmName, grace: Duration) -> Result<StopOutcome> {
        if self.status(name).await?.state == VmState::Stopped {
            return Ok(StopOutcome::AlreadyStopped);
        }
        if self.power(name, PowerOp::Shutdown).await.is_ok() {
            let start = tokio::time::Instant::now();
            while start.elapsed() < grace {
                if self.status(name).await?.state == VmState::Stopped {
                    return Ok(StopOutcome::Graceful);
                }
                tokio::time::sleep(Duration::from_millis(500).min(grace)).await;
            }
        }
        self.power(name, PowerOp::Off).await?;
        Ok(StopOutcome::Forced)
    }

    async fn kill(&self, name: &VmName) -> Result<()> {
        self.power(name, PowerOp::Off).await
    }

    async fn pause(&self, name: &VmName) -> Result<()> {
        self.power(name, PowerOp::Pause).await
    }

    async fn resume(&self, name: &VmName) -> Result<()> {
        self.power(name, PowerOp::Unpause).await
    }

    async fn suspend(&self, name: &VmName) -> Result<()> {
        self.power(name, PowerOp::Suspend).await
    }

    async fn destroy(&self, name: &VmName) -> Result<()> {
        let id = self.client.id_for_name(name.as_str()).await?;
        self.client.delete_vm(&id).await
    }

    async fn status(&self, name: &VmName) -> Result<VmStatus> {
        let id = match self.client.id_for_name(name.as_str()).await {
            Ok(id) => id,
            Err(Error::NotFound { .. }) => {
                return Ok(VmStatus {
                    state: VmState::None,
                    raw: "not registered".into(),
                });
            }
            Err(e) => return Err(e),
        };
        let raw = self.client.power_state(&id).await?;
        Ok(VmStatus {
            state: state_from_power(&raw),
            raw,
        })
    }

    async fn ip(&self, name: &VmName, deadline: Duration) -> Result<GuestAddress> {
        let id = self.client.id_for_name(name.as_str()).await?;
        let start = tokio::time::Instant::now();
        loop {
            // vmrest answers with an error until VMware Tools report an address.
            match self.client.ip(&id).await {
                Ok(raw) => {
                    let guest_ip: IpAddr = raw
                        .parse()
                        .map_err(|_| Error::invalid("IP address from vmrest", raw.clone()))?;
                    return Ok(GuestAddress {
                        guest_ip,
                        source: IpSource::GuestTools,
                        ssh: SocketAddr::new(guest_ip, 22),
                    });
                }
                Err(Error::Api { .. }) if start.elapsed() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1).min(deadline)).await;
                }
                Err(Error::Api { message, .. }) => {
                    return Err(Error::Timeout {
                        what: format!("an IP address for vmrest VM {name} (last: {message})"),
                        seconds: deadline.as_secs_f64(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn shared_folders(&self) -> Option<&dyn SharedFolders> {
        Some(self)
    }

    fn nics(&self) -> Option<&dyn Nics> {
        Some(self)
    }
}

#[async_trait]
impl SharedFolders for VmrestHypervisor {
    async fn add_shared_folder(&self, name: &VmName, folder: &SharedFolder) -> Result<()> {
        folder.validate()?;
        let id = self.client.id_for_name(name.as_str()).await?;
        self.client
            .add_shared_folder(
                &id,
                &VmrestFolder {
                    folder_id: folder.name.clone(),
                    host_path: folder.host_path.display().to_string(),
                    flags: if folder.writable { 4 } else { 0 },
                },
            )
            .await
            .map(|_| ())
    }

    async fn list_shared_folders(&self, name: &VmName) -> Result<Vec<SharedFolder>> {
        let id = self.client.id_for_name(name.as_str()).await?;
        Ok(self
            .client
            .list_shared_folders(&id)
            .await?
            .into_iter()
            .map(|f| SharedFolder {
                guest_path: format!("/mnt/hgfs/{}", f.folder_id),
                name: f.folder_id,
                host_path: f.host_path.into(),
                writable: f.flags & 4 != 0,
            })
            .collect())
    }

    async fn remove_shared_folder(&self, name: &VmName, share: &str) -> Result<()> {
        let id = self.client.id_for_name(name.as_str()).await?;
        self.client.delete_shared_folder(&id, share).await
    }
}

#[async_trait]
impl Nics for VmrestHypervisor {
    async fn list_nics(&self, name: &VmName) -> Result<Vec<Nic>> {
        let id = self.client.id_for_name(name.as_str()).await?;
        Ok(self
            .client
            .list_nics(&id)
            .await?
            .into_iter()
            .map(|n| Nic {
                id: n.index.to_string(),
                model: "vmrest".into(),
                network: if n.vmnet.is_empty() {
                    n.kind
                } else {
                    format!("{} ({})", n.kind, n.vmnet)
                },
                mac: (!n.mac_address.is_empty()).then_some(n.mac_address),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let c = Credentials::new("admin", "s3cret!");
        let client = VmrestClient::new("http://127.0.0.1:8697", c).unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn power_states_map() {
        assert_eq!(state_from_power("poweredOn"), VmState::Running);
        assert_eq!(state_from_power("poweredOff"), VmState::Stopped);
        assert_eq!(state_from_power("paused"), VmState::Paused);
        assert_eq!(state_from_power("suspended"), VmState::Saved);
        assert_eq!(state_from_power("weird"), VmState::Error);
    }
}
