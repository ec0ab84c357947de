//! The Docker volume plugin protocol (v1.2), as a handler with no transport: the example binary
//! `docker-volume-plugin` serves it over a unix socket.
//!
//! `Mount` moves the volume to this node through the [`Orchestrator`] (a polite, journaled
//! move), then mounts it through a [`Mounter`]; mounts are reference-counted by Docker's mount
//! ID, and the last `Unmount` unmounts and releases the lease so another node may take the
//! volume. Malformed requests get `{"Err": ...}` and change nothing. Scope is `global`: the
//! volumes live on shared storage.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use volume_core::backend::memory::MemoryBackend;
//! use volume_core::docker::{DockerPlugin, Ext4Mounter};
//! use volume_core::journal::MemoryStore;
//! use volume_core::orchestrator::Orchestrator;
//! use volume_core::{NodeId, PoolId};
//!
//! let backend = Arc::new(MemoryBackend::builder().pool("pool", 1 << 30).build());
//! let orch = Arc::new(Orchestrator::new(backend, Arc::new(MemoryStore::default())));
//! let plugin = DockerPlugin::new(
//!     orch,
//!     NodeId::new("vm-a").unwrap(),
//!     PoolId::new("pool").unwrap(),
//!     Arc::new(Ext4Mounter::new("/run/volume-core")),
//! );
//! let r = plugin.handle("/VolumeDriver.Capabilities", b"{}").await;
//! assert_eq!(r.body["Capabilities"]["Scope"], "global");
//! let r = plugin.handle("/VolumeDriver.Create", b"{\"Name\": 7}").await;
//! assert!(r.body["Err"].as_str().unwrap().contains("malformed"));
//! # });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::backend::fsutil;
use crate::error::{Error, Result};
use crate::journal::Table;
use crate::model::{Device, DeviceFormat, NodeId, PoolId, Volume, VolumeName, VolumeSpec};
use crate::orchestrator::{MovePolicy, Orchestrator};

/// The media type Docker sends and expects.
pub const MEDIA_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The default size of a volume created without a `size` option: 1 GiB.
pub const DEFAULT_SIZE: u64 = 1 << 30;

/// Puts a device's filesystem at a mount point on this node.
#[async_trait]
pub trait Mounter: Send + Sync + Debug {
    /// Mounts the device for the volume (making a filesystem when it has none) and returns the
    /// mount point. Idempotent.
    async fn mount(&self, device: &Device, name: &VolumeName) -> Result<PathBuf>;
    /// Unmounts the volume; an unmounted volume is success.
    async fn unmount(&self, name: &VolumeName) -> Result<()>;
    /// Where the volume is (or would be) mounted.
    fn mountpoint(&self, name: &VolumeName) -> PathBuf;
    /// Whether the volume is mounted now.
    fn is_mounted(&self, name: &VolumeName) -> bool;
}

/// Mounts raw block devices as ext4 under a root directory (`mkfs.ext4` when the device has no
/// filesystem yet, then `mount`). Needs root.
#[derive(Debug, Clone)]
pub struct Ext4Mounter {
    root: PathBuf,
}

impl Ext4Mounter {
    /// Mount points go under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

fn is_mounted(mp: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mp.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| p == want)
}

#[async_trait]
impl Mounter for Ext4Mounter {
    async fn mount(&self, device: &Device, name: &VolumeName) -> Result<PathBuf> {
        if device.format != DeviceFormat::Raw {
            return Err(Error::Unsupported {
                feature: "mounting a qcow2 device (plug it into a VM instead)",
            });
        }
        let mp = self.mountpoint(name);
        fsutil::mkdirs(&mp)?;
        if is_mounted(&mp) {
            return Ok(mp);
        }
        let dev = device.path.to_string_lossy().into_owned();
        // `blkid -p` exits 2 when it finds no filesystem signature.
        let probe = tokio::process::Command::new("blkid")
            .args(["-p", &dev])
            .output()
            .await
            .map_err(|e| Error::Command {
                program: "blkid",
                status: format!("cannot run: {e}"),
                stderr: String::new(),
            })?;
        if probe.status.code() == Some(2) {
            fsutil::run("mkfs.ext4", &["-q", "-F", &dev]).await?;
        }
        fsutil::run("mount", &[&dev, &mp.to_string_lossy()]).await?;
        Ok(mp)
    }

    async fn unmount(&self, name: &VolumeName) -> Result<()> {
        let mp = self.mountpoint(name);
        if is_mounted(&mp) {
            fsutil::run("umount", &[&mp.to_string_lossy()]).await?;
        }
        Ok(())
    }

    fn mountpoint(&self, name: &VolumeName) -> PathBuf {
        let node = NodeId::new(name.as_str())
            .map_or_else(|_| "invalid".to_owned(), |n| fsutil::node_dir_name(&n));
        self.root.join(node)
    }

    fn is_mounted(&self, name: &VolumeName) -> bool {
        is_mounted(&self.mountpoint(name))
    }
}

/// A response: an HTTP status and a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The HTTP status (200 also for protocol errors, which Docker reads from `Err`).
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

fn ok(body: Value) -> Response {
    Response { status: 200, body }
}

fn err(msg: impl std::fmt::Display) -> Response {
    Response {
        status: 200,
        body: json!({ "Err": msg.to_string() }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Opts", default)]
    opts: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameReq {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MountReq {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ID")]
    id: String,
}

/// Parses a size option: bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers of 1024).
///
/// ```
/// use volume_core::docker::parse_size;
/// assert_eq!(parse_size("10M").unwrap(), 10 << 20);
/// assert_eq!(parse_size("4096").unwrap(), 4096);
/// assert!(parse_size("ten").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(Error::invalid("size", format!("unknown unit in {s:?}"))),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| Error::invalid("size", format!("{s:?} is not a size")))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| Error::invalid("size", "too large"))
}

/// The plugin: one per node. See the [module documentation](self).
#[derive(Debug)]
pub struct DockerPlugin {
    orch: Arc<Orchestrator>,
    node: NodeId,
    pool: PoolId,
    mounter: Arc<dyn Mounter>,
    mounts: tokio::sync::Mutex<BTreeMap<VolumeName, BTreeSet<String>>>,
}

impl DockerPlugin {
    /// A plugin for `node`, creating volumes in `pool`.
    pub fn new(
        orch: Arc<Orchestrator>,
        node: NodeId,
        pool: PoolId,
        mounter: Arc<dyn Mounter>,
    ) -> Self {
        Self {
            orch,
            node,
            pool,
            mounter,
            mounts: tokio::sync::Mutex::default(),
        }
    }

    fn mounts_key(&self, name: &VolumeName) -> String {
        format!("{}\u{0}{}\u{0}{}", self.node, self.pool, name)
    }

    /// Records a volume's mount IDs durably, so a restarted plugin knows them.
    async fn persist(&self, name: &VolumeName, ids: Option<&BTreeSet<String>>) -> Result<()> {
        let value = match ids {
            Some(ids) if !ids.is_empty() => {
                Some(serde_json::to_vec(ids).map_err(|e| Error::Corrupt {
                    what: "mount record".to_owned(),
                    reason: e.to_string(),
                })?)
            }
            _ => None,
        };
        self.orch
            .store()
            .put(Table::Mounts, &self.mounts_key(name), value.as_deref())
            .await
    }

    /// Rebuilds the mount reference counts after a restart from the durable record, keeping
    /// only volumes that are still mounted (a reboot unmounted the others, so their records are
    /// dropped). Returns how many volumes were restored.
    pub async fn restore(&self) -> Result<usize> {
        let prefix = format!("{}\u{0}{}\u{0}", self.node, self.pool);
        let mut mounts = self.mounts.lock().await;
        let mut restored = 0;
        for (key, value) in self.orch.store().list(Table::Mounts).await? {
            let Some(name) = key.strip_prefix(&prefix) else {
                continue;
            };
            let name = VolumeName::new(name)?;
            let ids: BTreeSet<String> =
                serde_json::from_slice(&value).map_err(|e| Error::Corrupt {
                    what: format!("mount record of {name}"),
                    reason: e.to_string(),
                })?;
            if self.mounter.is_mounted(&name) && !ids.is_empty() {
                mounts.insert(name, ids);
                restored += 1;
            } else {
                self.orch.store().put(Table::Mounts, &key, None).await?;
            }
        }
        Ok(restored)
    }

    async fn find(&self, name: &VolumeName) -> Result<Option<Volume>> {
        Ok(self
            .orch
            .backend()
            .list()
            .await?
            .into_iter()
            .find(|v| &v.name == name && v.pool == self.pool))
    }

    /// Handles one request: `endpoint` is the URL path (`/VolumeDriver.Mount`), `body` the JSON.
    pub async fn handle(&self, endpoint: &str, body: &[u8]) -> Response {
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            body
        };
        let r = match endpoint {
            "/Plugin.Activate" => Ok(ok(json!({ "Implements": ["VolumeDriver"] }))),
            "/VolumeDriver.Capabilities" => {
                Ok(ok(json!({ "Capabilities": { "Scope": "global" } })))
            }
            "/VolumeDriver.Create" => match parse::<CreateReq>(body) {
                Ok(r) => self.create(r).await,
                Err(e) => return e,
            },
            "/VolumeDriver.Remove" => match parse::<NameReq>(body) {
                Ok(r) => self.remove(&r.name).await,
                Err(e) => return e,
            },
            "/VolumeDriver.Mount" => match parse::<MountReq>(body) {
                Ok(r) => self.mount(&r.name, r.id).await,
                Err(e) => return e,
            },
            "/VolumeDriver.Unmount" => match parse::<MountReq>(body) {
                Ok(r) => self.unmount(&r.name, &r.id).await,
                Err(e) => return e,
            },
            "/VolumeDriver.Path" => match parse::<NameReq>(body) {
                Ok(r) => self.path(&r.name).await,
                Err(e) => return e,
            },
            "/VolumeDriver.Get" => match parse::<NameReq>(body) {
                Ok(r) => self.get(&r.name).await,
                Err(e) => return e,
            },
            "/VolumeDriver.List" => self.list().await,
            _ => {
                return Response {
                    status: 404,
                    body: json!({ "Err": format!("unknown endpoint {endpoint}") }),
                };
            }
        };
        r.unwrap_or_else(err)
    }

    async fn create(&self, r: CreateReq) -> Result<Response> {
        let name = VolumeName::new(r.name)?;
        let mut size = DEFAULT_SIZE;
        for (k, v) in r.opts.unwrap_or_default() {
            match k.as_str() {
                "size" => size = parse_size(&v)?,
                _ => return Err(Error::invalid("option", format!("unknown option {k:?}"))),
            }
        }
        let mut spec = VolumeSpec::new(name, self.pool.clone(), size);
        spec.labels.insert("created-by", "docker-volume-plugin")?;
        self.orch.backend().create(&spec).await?;
        Ok(ok(json!({ "Err": "" })))
    }

    async fn remove(&self, name: &str) -> Result<Response> {
        let name = VolumeName::new(name)?;
        let mounts = self.mounts.lock().await;
        if mounts.get(&name).is_some_and(|m| !m.is_empty()) {
            return Err(Error::invalid(
                "remove",
                format!("volume {name} is mounted on this node"),
            ));
        }
        if let Some(v) = self.find(&name).await? {
            self.orch.destroy(&v.id, MovePolicy::Polite).await?;
        }
        Ok(ok(json!({ "Err": "" })))
    }

    async fn mount(&self, name: &str, mount_id: String) -> Result<Response> {
        let name = VolumeName::new(name)?;
        if mount_id.is_empty() {
            return Err(Error::invalid("mount ID", "must not be empty"));
        }
        let mut mounts = self.mounts.lock().await;
        let v = self
            .find(&name)
            .await?
            .ok_or_else(|| Error::invalid("volume", format!("no volume named {name}")))?;
        let mp = if mounts.get(&name).is_some_and(|m| !m.is_empty()) {
            self.mounter.mountpoint(&name)
        } else {
            self.orch
                .move_volume(&v.id, &self.node, MovePolicy::Polite)
                .await?;
            let dev = self.orch.device(&v.id, &self.node).await?;
            self.mounter.mount(&dev, &name).await?
        };
        let set = mounts.entry(name.clone()).or_default();
        set.insert(mount_id);
        self.persist(&name, Some(set)).await?;
        Ok(ok(json!({ "Mountpoint": mp, "Err": "" })))
    }

    async fn unmount(&self, name: &str, mount_id: &str) -> Result<Response> {
        let name = VolumeName::new(name)?;
        let mut mounts = self.mounts.lock().await;
        let Some(set) = mounts.get_mut(&name) else {
            return Ok(ok(json!({ "Err": "" })));
        };
        set.remove(mount_id);
        if set.is_empty() {
            self.mounter.unmount(&name).await?;
            mounts.remove(&name);
            self.persist(&name, None).await?;
            if let Some(v) = self.find(&name).await? {
                self.orch.release(&v.id, &self.node).await?;
            }
        } else {
            self.persist(&name, Some(set)).await?;
        }
        Ok(ok(json!({ "Err": "" })))
    }

    /// Renews the leases of every volume mounted on this node; call it well within the lease
    /// time to live (the example binary does every 10 s). Returns the volumes whose lease could
    /// not be renewed: they were fenced, and this node must stop using them.
    pub async fn renew_leases(&self) -> Vec<(VolumeName, Error)> {
        let names: Vec<VolumeName> = self.mounts.lock().await.keys().cloned().collect();
        let mut lost = Vec::new();
        for name in names {
            let r = async {
                let v = self
                    .find(&name)
                    .await?
                    .ok_or_else(|| Error::invalid("volume", format!("no volume named {name}")))?;
                let lease = self.orch.lease(&v.id).await?.ok_or(Error::LeaseLapsed {
                    id: v.id.clone(),
                    node: self.node.clone(),
                })?;
                self.orch.renew(&v.id, &self.node, lease.epoch).await
            }
            .await;
            if let Err(e) = r {
                lost.push((name, e));
            }
        }
        lost
    }

    async fn mountpoint_if_mounted(&self, name: &VolumeName) -> Option<PathBuf> {
        self.mounts
            .lock()
            .await
            .get(name)
            .filter(|m| !m.is_empty())
            .map(|_| self.mounter.mountpoint(name))
    }

    async fn path(&self, name: &str) -> Result<Response> {
        let name = VolumeName::new(name)?;
        let mp = self.mountpoint_if_mounted(&name).await;
        Ok(ok(
            json!({ "Mountpoint": mp.map(|p| p.display().to_string()).unwrap_or_default(), "Err": "" }),
        ))
    }

    async fn get(&self, name: &str) -> Result<Response> {
        let name = VolumeName::new(name)?;
        let v = self
            .find(&name)
            .await?
            .ok_or_else(|| Error::invalid("volume", format!("no volume named {name}")))?;
        let mp = self.mountpoint_if_mounted(&name).await;
        Ok(ok(json!({
            "Volume": {
                "Name": name.as_str(),
                "Mountpoint": mp.map(|p| p.display().to_string()).unwrap_or_default(),
                "Status": {
                    "id": v.id.as_str(),
                    "size": v.size_bytes,
                    "attached_to": v.attached_to.as_ref().map(NodeId::as_str),
                    "epoch": v.epoch.0,
                }
            },
            "Err": ""
        })))
    }

    async fn list(&self) -> Result<Response> {
        let mut out = Vec::new();
        for v in self.orch.backend().list().await? {
            if v.pool != self.pool {
                continue;
            }
            let mp = self.mountpoint_if_mounted(&v.name).await;
            out.push(json!({
                "Name": v.name.as_str(),
                "Mountpoint": mp.map(|p| p.display().to_string()).unwrap_or_default(),
            }));
        }
        Ok(ok(json!({ "Volumes": out, "Err": "" })))
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> std::result::Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| err(format!("malformed request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_overflow() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000T").is_err());
        assert!(parse_size("5X").is_err());
    }
}
