//! A client for VMware Fusion/Workstation's `vmrest` API (1.3.0), the successor of AppCatalyst.
//!
//! `vmrest` listens on `http://127.0.0.1:8697/api`, needs HTTP Basic auth (set up with
//! `vmrest -C`), and speaks `application/vnd.vmware.vmw.rest-v1+json` in both directions. VM ids
//! are opaque 32-character strings: [`VmrestClient::id_for_name`] maps a VM name to its id
//! through the `.vmx` path. Power changes are a raw-string `PUT`. Errors are
//! `{code,message}`. `vmrest` has no snapshots, guest commands or console.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::appcatalyst::PowerOp;
use crate::error::{Error, Result};
use crate::model::VmState;
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
