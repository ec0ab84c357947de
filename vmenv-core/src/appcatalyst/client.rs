//! The AppCatalyst REST client (`http://localhost:8080/api`, no auth).
//!
//! Quirks it follows, from the daemon's swagger and its two official clients (the Vagrant
//! provider and the Docker Machine driver):
//! - power and folder-enable `PATCH` bodies are raw text (`on`, `true`), not JSON strings;
//! - every reply, success or failure, may be a `{code,message}` envelope; the power state and
//!   the IP address are the `message` of a successful one;
//! - shared folder ids are strings (the share names), though the swagger says integers;
//! - `GET /vms/{id}/ipaddress` answers 408 until VMware Tools reports an address: the client
//!   polls (the official clients poll 60 × 2 s);
//! - the version probe is `GET /json/swagger.json`, whose `info.version` must start `1.0.0`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rest::{CodeMessage, body_or_error, parse, transport};

const API: &str = "AppCatalyst";

/// A VM as AppCatalyst describes it.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct VmInfo {
    /// The VM's id (its folder name under `~/Documents/AppCatalyst`).
    pub id: String,
    /// Its display name.
    #[serde(default)]
    pub name: String,
    /// Its tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The body of `POST /vms`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewVm {
    /// The new VM's id.
    pub id: String,
    /// The VM to clone; without it (and without a source) the default template is cloned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A tag (`photon` from Docker Machine, `vagrant` from Vagrant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A `.vmx` (or, for the vmenv server, a disk image) to import, as Vagrant sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_reference: Option<String>,
}

/// A shared folder (`folderState`).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderState {
    /// Despite its name, the share's name: the guest sees it as `.host:/<guestPath>`.
    pub guest_path: String,
    /// The directory on the host.
    pub host_path: String,
    /// `4` means writable, the only value in use.
    pub flags: i64,
}

/// A power operation for `PATCH /vms/power/{id}`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum PowerOp {
    /// Power on.
    On,
    /// Power off hard.
    Off,
    /// Ask the guest to shut down.
    Shutdown,
    /// Suspend to disk.
    Suspend,
    /// Pause.
    Pause,
    /// Continue after a pause.
    Unpause,
}

impl PowerOp {
    /// The raw body the daemon expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Shutdown => "shutdown",
            Self::Suspend => "suspend",
            Self::Pause => "pause",
            Self::Unpause => "unpause",
        }
    }

    /// Parses a raw body (trimmed; a JSON-quoted string is accepted too).
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.trim().trim_matches('"') {
            "on" => Self::On,
            "off" => Self::Off,
            "shutdown" => Self::Shutdown,
            "suspend" => Self::Suspend,
            "pause" => Self::Pause,
            "unpause" => Self::Unpause,
            _ => return None,
        })
    }
}

/// A client for one AppCatalyst daemon.
#[derive(Clone, Debug)]
pub struct AppCatalystClient {
    http: reqwest::Client,
    base: String,
}

/// Takes the value out of a reply that may be a `{code,message}` envelope or a bare JSON string.
fn message_of(body: &str) -> String {
    if let Ok(cm) = serde_json::from_str::<CodeMessage>(body) {
        return cm.message;
    }
    if let Ok(s) = serde_json::from_str::<String>(body) {
        return s;
    }
    body.trim().to_owned()
}

fn segment(id: &str) -> Result<&str> {
    if id.is_empty() || id.contains(['/', '?', '#', '%']) || id == "." || id == ".." {
        return Err(Error::invalid("AppCatalyst id", format!("{id:?}")));
    }
    Ok(id)
}

impl AppCatalystClient {
    /// A client for the daemon at `base` (`http://localhost:8080`; `/api` is appended).
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| transport(API, &e))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String> {
        let resp = req
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| transport(API, &e))?;
        body_or_error(API, resp).await
    }

    /// Checks the daemon speaks API 1.0.0 (`GET /json/swagger.json`), as the Vagrant provider
    /// does; returns the version.
    pub async fn probe_version(&self) -> Result<String> {
        let body = self
            .send(self.http.get(format!("{}/json/swagger.json", self.base)))
            .await?;
        let doc: serde_json::Value = parse(API, &body)?;
        let version = doc["info"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !version.starts_with("1.0.0") {
            return Err(Error::Unsupported {
                feature: "an AppCatalyst API version other than 1.0.0",
            });
        }
        Ok(version)
    }

    /// `GET /vms[?tags=..]`: the VM ids.
    pub async fn list_vms(&self, tags: &[&str]) -> Result<Vec<String>> {
        let mut url = self.url("/vms");
        if !tags.is_empty() {
            for t in tags {
                if t.is_empty()
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(Error::invalid("AppCatalyst tag", format!("{t:?}")));
                }
            }
            url.push_str("?tags=");
            url.push_str(&tags.join(","));
        }
        parse(API, &self.send(self.http.get(url)).await?)
    }

    /// `POST /vms`: creates (clones) a VM.
    pub async fn create_vm(&self, vm: &NewVm) -> Result<VmInfo> {
        segment(&vm.id)?;
        let body = serde_json::to_string(vm).map_err(|e| Error::invalid("VM", e.to_string()))?;
        let reply = self
            .send(
                self.http
                    .post(self.url("/vms"))
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await?;
        parse(API, &reply)
    }

    /// `GET /vms/{id}`.
    pub async fn get_vm(&self, id: &str) -> Result<VmInfo> {
        let reply = self
            .send(self.http.get(self.url(&format!("/vms/{}", segment(id)?))))
            .await?;
        parse(API, &reply)
    }

    /// `DELETE /vms/{id}`.
    pub async fn delete_vm(&self, id: &str) -> Result<()> {
        self.send(
            self.http
                .delete(self.url(&format!("/vms/{}", segment(id)?))),
        )
        .await
        .map(|_| ())
    }

    /// `GET /vms/power/{id}`: the raw power state (`powered on`, ...).
    pub async fn power_state(&self, id: &str) -> Result<String> {
        let reply = self
            .send(
                self.http
                    .get(self.url(&format!("/vms/power/{}", segment(id)?))),
            )
            .await?;
        Ok(message_of(&reply))
    }

    /// `PATCH /vms/power/{id}` with a raw-text body; returns the daemon's message.
    pub async fn set_power(&self, id: &str, op: PowerOp) -> Result<String> {
        let reply = self
            .send(
                self.http
                    .patch(self.url(&format!("/vms/power/{}", segment(id)?)))
                    .header("Content-Type", "application/json")
                    .body(op.as_str()),
            )
            .await?;
        Ok(message_of(&reply))
    }

    /// `GET /vms/{id}/folders`: the share names (strings, whatever the swagger says).
    pub async fn list_folders(&self, id: &str) -> Result<Vec<String>> {
        let reply = self
            .send(
                self.http
                    .get(self.url(&format!("/vms/{}/folders", segment(id)?))),
            )
            .await?;
        let v: Vec<serde_json::Value> = parse(API, &reply)?;
        Ok(v.into_iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), ToOwned::to_owned))
            .collect())
    }

    /// `PATCH /vms/{id}/folders` with raw `true`/`false`: turns shared folders on or off.
    pub async fn enable_folders(&self, id: &str, enabled: bool) -> Result<()> {
        self.send(
            self.http
                .patch(self.url(&format!("/vms/{}/folders", segment(id)?)))
                .header("Content-Type", "application/json")
                .body(if enabled { "true" } else { "false" }),
        )
        .await
        .map(|_| ())
    }

    /// `POST /vms/{id}/folders`.
    pub async fn add_folder(&self, id: &str, folder: &FolderState) -> Result<FolderState> {
        let body =
            serde_json::to_string(folder).map_err(|e| Error::invalid("folder", e.to_string()))?;
        let reply = self
            .send(
                self.http
                    .post(self.url(&format!("/vms/{}/folders", segment(id)?)))
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await?;
        parse(API, &reply)
    }

    /// `GET /vms/{id}/folders/{folderId}` (the folder id is the share name).
    pub async fn get_folder(&self, id: &str, folder: &str) -> Result<FolderState> {
        let url = self.url(&format!(
            "/vms/{}/folders/{}",
            segment(id)?,
            segment(folder)?
        ));
        parse(API, &self.send(self.http.get(url)).await?)
    }

    /// `PATCH /vms/{id}/folders/{folderId}`.
    pub async fn update_folder(&self, id: &str, folder: &FolderState) -> Result<FolderState> {
        let url = self.url(&format!(
            "/vms/{}/folders/{}",
            segment(id)?,
            segment(&folder.guest_path)?
        ));
        let body =
            serde_json::to_string(folder).map_err(|e| Error::invalid("folder", e.to_string()))?;
        let reply = self
            .send(
                self.http
                    .patch(url)
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await?;
        parse(API, &reply)
    }

    /// `DELETE /vms/{id}/folders/{folderId}`.
    pub async fn remove_folder(&self, id: &str, folder: &str) -> Result<()> {
        let url = self.url(&format!(
            "/vms/{}/folders/{}",
            segment(id)?,
            segment(folder)?
        ));
        self.send(self.http.delete(url)).await.map(|_| ())
    }

    /// `GET /vms/{id}/ipaddress` once: `None` while the daemon answers 408 (no address yet).
    pub async fn ip_address(&self, id: &str) -> Result<Option<String>> {
        let url = self.url(&format!("/vms/{}/ipaddress", segment(id)?));
        match self.send(self.http.get(url)).await {
            Ok(body) => Ok(Some(message_of(&body))),
            Err(Error::Api { status: 408, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls [`Self::ip_address`] every `interval` until an address comes or `deadline` passes
    /// (the official clients used 60 × 2 s).
    pub async fn wait_ip(
        &self,
        id: &str,
        deadline: Duration,
        interval: Duration,
    ) -> Result<String> {
        let start = tokio::time::Instant::now();
        loop {
            if let Some(ip) = self.ip_address(id).await? {
                return Ok(ip);
            }
            if start.elapsed() + interval > deadline {
                return Err(Error::Timeout {
                    what: format!("an IP address for AppCatalyst VM {id}"),
                    seconds: deadline.as_secs_f64(),
                });
            }
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_out_of_envelopes_and_strings() {
        assert_eq!(
            message_of(r#"{"code":200,"message":"powered on"}"#),
            "powered on"
        );
        assert_eq!(message_of(r#""powered off""#), "powered off");
        assert_eq!(message_of("192.168.2.128\n"), "192.168.2.128");
    }

    #[test]
    fn power_ops_round_trip_and_accept_quoted_bodies() {
        for op in [
            PowerOp::On,
            PowerOp::Off,
            PowerOp::Shutdown,
            PowerOp::Suspend,
            PowerOp::Pause,
            PowerOp::Unpause,
        ] {
            assert_eq!(PowerOp::parse(op.as_str()), Some(op));
        }
        assert_eq!(PowerOp::parse("\"on\"\n"), Some(PowerOp::On));
        assert_eq!(PowerOp::parse("reboot"), None);
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert!(segment("photon1").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a%2f"] {
            assert!(segment(bad).is_err(), "{bad}");
        }
    }
}
