//! qcow2 images through `qemu-img`: thin volumes with snapshots, clones and resize.
//!
//! Images live in `<root>/images/<id>.qcow2` with a JSON sidecar each. Attaching hands the image
//! to the node through a [`HotPlug`] the caller supplies: with the feature `qemu-hotplug`,
//! `qemu_hotplug::QemuHotPlug` hot-plugs it into running QEMU VMs through
//! vmenv-core's `DiskHotplug` (QMP `blockdev-add` + `device_add` on a `pcie-root-port`). Without
//! a VM, [`ImageHandoff`] hands the image file itself to the node under an exclusive lock.
//!
//! The attachment is recorded in the sidecar before the image is plugged, so a crash between the
//! two leaves a recorded attachment that [`Backend::device`] completes by plugging again.
//! Resize is offline only (a running VM would need QMP `block_resize`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::fsutil::{self, FileLock, VolumeLocks};
use super::rules::{self, AttachDecision, CreateDecision, DetachDecision};
use super::{Backend, BackendInfo, Capabilities, CloneSource, Snapshot};
use crate::error::{Error, Result};
use crate::model::{
    Allocation, Device, DeviceFormat, Epoch, NodeId, PoolId, Volume, VolumeId, VolumeSpec,
};

/// Plugs images into nodes and unplugs them: the seam for QMP hot-plug into a running VM.
/// Both calls must be idempotent (plugging a plugged image returns its device again).
#[async_trait]
pub trait HotPlug: Send + Sync + Debug {
    /// Makes `image` (a qcow2 file) visible on `node` and says where.
    async fn plug(&self, node: &NodeId, volume: &VolumeId, image: &Path) -> Result<Device>;
    /// Removes the volume's image from `node`; unplugging an unplugged image is success.
    async fn unplug(&self, node: &NodeId, volume: &VolumeId, image: &Path) -> Result<()>;
    /// Whether images can be plugged into `node` ([`Error::UnknownNode`] if not); read-only.
    /// Default: every node.
    async fn check_node(&self, node: &NodeId) -> Result<()> {
        let _ = node;
        Ok(())
    }
}

/// A [`HotPlug`] for nodes without a VM: the node gets the image file itself, held under an
/// exclusive `flock` by this process while plugged, so that a second consumer on this machine
/// that honours the lock is refused.
#[derive(Debug, Default)]
pub struct ImageHandoff {
    held: Mutex<HashMap<VolumeId, FileLock>>,
}

#[async_trait]
impl HotPlug for ImageHandoff {
    async fn plug(&self, _node: &NodeId, volume: &VolumeId, image: &Path) -> Result<Device> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !held.contains_key(volume) {
            let lock = FileLock::try_acquire(image)?
                .ok_or_else(|| Error::Locked { id: volume.clone() })?;
            held.insert(volume.clone(), lock);
        }
        Ok(Device {
            path: image.to_path_buf(),
            format: DeviceFormat::Qcow2,
        })
    }

    async fn unplug(&self, _node: &NodeId, volume: &VolumeId, _image: &Path) -> Result<()> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(volume);
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sidecar {
    volume: Volume,
    #[serde(default)]
    snapshots: Vec<Snapshot>,
}

/// The qcow2 backend. See the [module documentation](self).
#[derive(Debug)]
pub struct Qcow2Backend {
    root: PathBuf,
    pools: BTreeMap<PoolId, Option<u64>>,
    allocation: Allocation,
    hotplug: Box<dyn HotPlug>,
    locks: VolumeLocks,
    create_lock: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct ImageInfo {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(default)]
    snapshots: Vec<ImageSnapshot>,
}

#[derive(Deserialize)]
struct ImageSnapshot {
    name: String,
}

async fn image_info(img: &Path) -> Result<ImageInfo> {
    let out = fsutil::run(
        "qemu-img",
        &["info", "-U", "--output=json", &img.to_string_lossy()],
    )
    .await?;
    serde_json::from_str(&out).map_err(|e| Error::Corrupt {
        what: format!("qemu-img info of {}", img.display()),
        reason: e.to_string(),
    })
}

impl Qcow2Backend {
    /// Opens (creating when needed) a backend rooted at `root`, attaching through `hotplug`.
    /// Allocation: 1 MiB units, 1 MiB minimum.
    pub fn new(root: impl Into<PathBuf>, hotplug: Box<dyn HotPlug>) -> Result<Self> {
        let root = root.into();
        for d in ["volumes", "images"] {
            fsutil::mkdirs(&root.join(d))?;
        }
        Ok(Self {
            root,
            pools: BTreeMap::new(),
            allocation: Allocation::new(1 << 20, 1 << 20)?,
            hotplug,
            locks: VolumeLocks::default(),
            create_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Declares a pool, optionally with a capacity in bytes (sum of virtual sizes).
    #[must_use]
    pub fn with_pool(mut self, pool: PoolId, capacity: Option<u64>) -> Self {
        self.pools.insert(pool, capacity);
        self
    }

    /// Finds images that no volume owns (left by a crash between writing an image and its
    /// sidecar, or between removing them) and, unless `dry_run`, deletes them. Runs under the
    /// create lock, so an image being created is never taken for an orphan. Returns the paths.
    pub async fn collect_garbage(&self, dry_run: bool) -> Result<Vec<PathBuf>> {
        let _g = self.create_lock.lock().await;
        let _f = FileLock::acquire(self.root.join("create.lock")).await?;
        let found = fsutil::orphan_images(
            &self.root.join("images"),
            ".qcow2",
            &self.root.join("volumes"),
        )?;
        if !dry_run {
            for p in &found {
                fs::remove_file(p).map_err(|e| Error::io("remove orphan", p, e))?;
            }
        }
        Ok(found)
    }

    /// The image file of a volume.
    pub fn image_path(&self, id: &VolumeId) -> PathBuf {
        self.root.join("images").join(format!("{id}.qcow2"))
    }

    fn sidecar_path(&self, id: &VolumeId) -> PathBuf {
        self.root.join("volumes").join(format!("{id}.json"))
    }

    fn load(&self, id: &VolumeId) -> Result<Option<Sidecar>> {
        fsutil::read_json(&self.sidecar_path(id))
    }

    fn store(&self, s: &Sidecar) -> Result<()> {
        fsutil::write_json_atomic(&self.sidecar_path(&s.volume.id), s)
    }

    fn sidecars(&self) -> Result<Vec<Sidecar>> {
        let dir = self.root.join("volumes");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(id) = VolumeId::new(id) else { continue };
            if let Some(s) = self.load(&id)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    async fn lock_volume(
        &self,
        id: &VolumeId,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, FileLock)> {
        let guard = self.locks.of(id).lock_owned().await;
        let file = FileLock::acquire(self.root.join("volumes").join(format!("{id}.lock"))).await?;
        Ok((guard, file))
    }

    fn capacity_left(&self, all: &[Volume], pool: &PoolId) -> Result<Option<u64>> {
        let cap = self
            .pools
            .get(pool)
            .ok_or_else(|| Error::UnknownPool { pool: pool.clone() })?;
        Ok(cap.map(|c| {
            c.saturating_sub(
                all.iter()
                    .filter(|v| &v.pool == pool)
                    .map(|v| v.size_bytes)
                    .sum(),
            )
        }))
    }

    /// Creates a volume whose image is made by `make(image_path, allocated_size)`.
    async fn create_with<F, Fut>(&self, spec: &VolumeSpec, make: F) -> Result<Volume>
    where
        F: FnOnce(PathBuf, u64) -> Fut + Send,
        Fut: Future<Output = Result<()>> + Send,
    {
        let _g = self.create_lock.lock().await;
        let _f = FileLock::acquire(self.root.join("create.lock")).await?;
        let all: Vec<Volume> = self.sidecars()?.into_iter().map(|s| s.volume).collect();
        let left = self.capacity_left(&all, &spec.pool)?;
        match rules::decide_create(spec, &all, self.allocation, left)? {
            CreateDecision::Existing(v) => Ok(v),
            CreateDecision::Create { allocated } => {
                let v = rules::new_volume(spec, self.allocation)?;
                make(self.image_path(&v.id), allocated).await?;
                self.store(&Sidecar {
                    volume: v.clone(),
                    snapshots: Vec::new(),
                })?;
                Ok(v)
            }
        }
    }
}

#[async_trait]
impl Backend for Qcow2Backend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "qcow2",
            allocation: self.allocation,
            capabilities: Capabilities {
                resize: true,
                online_resize: false,
                snapshot: true,
                clone: true,
                clone_from_snapshot: true,
                placement: false,
            },
        }
    }

    async fn create(&self, spec: &VolumeSpec) -> Result<Volume> {
        self.create_with(spec, |img, size| async move {
            fsutil::run(
                "qemu-img",
                &[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    &img.to_string_lossy(),
                    &size.to_string(),
                ],
            )
            .await
            .map(drop)
        })
        .await
    }

    async fn destroy(&self, id: &VolumeId) -> Result<()> {
        let _l = self.lock_volume(id).await?;
        let s = self.load(id)?;
        if !rules::decide_destroy(s.as_ref().map(|s| &s.volume))? {
            return Ok(());
        }
        let side = self.sidecar_path(id);
        fs::remove_file(&side).map_err(|e| Error::io("remove", &side, e))?;
        fsutil::sync_dir(side.parent().unwrap_or(&self.root))?;
        let img = self.image_path(id);
        match fs::remove_file(&img) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &img, e)),
        }
        let _ = fs::remove_file(self.root.join("volumes").join(format!("{id}.lock")));
        Ok(())
    }

    async fn check_node(&self, node: &NodeId) -> Result<()> {
        self.hotplug.check_node(node).await
    }

    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume> {
        self.hotplug.check_node(node).await?;
        let _l = self.lock_volume(id).await?;
        let mut s = self
            .load(id)?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        if rules::decide_attach(&s.volume, node, epoch)? == AttachDecision::Attach {
            rules::apply_attach(&mut s.volume, node, epoch);
            self.store(&s)?;
        }
        self.hotplug.plug(node, id, &self.image_path(id)).await?;
        Ok(s.volume)
    }

    async fn detach(&self, id: &VolumeId, epoch: Epoch) -> Result<()> {
        let _l = self.lock_volume(id).await?;
        let Some(mut s) = self.load(id)? else {
            return Ok(());
        };
        let DetachDecision::Detach(node) = rules::decide_detach(Some(&s.volume), epoch)? else {
            return Ok(());
        };
        self.hotplug.unplug(&node, id, &self.image_path(id)).await?;
        rules::apply_detach(&mut s.volume, epoch);
        self.store(&s)
    }

    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume> {
        let _l = self.lock_volume(id).await?;
        let mut s = self
            .load(id)?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        if rules::decide_fence(Some(&s.volume), id, epoch)? {
            rules::apply_fence(&mut s.volume, epoch);
            self.store(&s)?;
        }
        Ok(s.volume)
    }

    async fn list(&self) -> Result<Vec<Volume>> {
        Ok(self.sidecars()?.into_iter().map(|s| s.volume).collect())
    }

    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        Ok(self.load(id)?.map(|s| s.volume))
    }

    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        let _l = self.lock_volume(id).await?;
        let s = self.load(id)?;
        rules::decide_device(s.as_ref().map(|s| &s.volume), id, node)?;
        self.hotplug.plug(node, id, &self.image_path(id)).await
    }

    async fn resize(&self, id: &VolumeId, size_bytes: u64, epoch: Epoch) -> Result<Volume> {
        let _l = self.lock_volume(id).await?;
        let mut s = self
            .load(id)?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let Some(new) = rules::decide_resize(
            Some(&s.volume),
            id,
            size_bytes,
            self.allocation,
            false,
            epoch,
        )?
        else {
            return Ok(s.volume);
        };
        let all: Vec<Volume> = self.sidecars()?.into_iter().map(|s| s.volume).collect();
        if let Some(left) = self.capacity_left(&all, &s.volume.pool)?
            && new - s.volume.size_bytes > left
        {
            return Err(Error::CapacityExhausted {
                pool: s.volume.pool.clone(),
                requested: new - s.volume.size_bytes,
                available: left,
            });
        }
        let img = self.image_path(id);
        // qemu-img refuses to resize images with internal snapshots on old versions; the typed
        // error says which command failed and why.
        fsutil::run(
            "qemu-img",
            &[
                "resize",
                "-q",
                "-f",
                "qcow2",
                &img.to_string_lossy(),
                &new.to_string(),
            ],
        )
        .await?;
        rules::apply_resize(&mut s.volume, new, epoch);
        self.store(&s)?;
        Ok(s.volume)
    }

    async fn snapshot(&self, id: &VolumeId, name: &str) -> Result<Snapshot> {
        rules::check_snapshot_name(name)?;
        let _l = self.lock_volume(id).await?;
        let mut s = self
            .load(id)?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        if let Some(x) = s.snapshots.iter().find(|x| x.name == name) {
            return Ok(x.clone());
        }
        let img = self.image_path(id);
        let info = image_info(&img).await?;
        if !info.snapshots.iter().any(|x| x.name == name) {
            fsutil::run(
                "qemu-img",
                &["snapshot", "-q", "-c", name, &img.to_string_lossy()],
            )
            .await?;
        }
        let snap = Snapshot {
            volume: id.clone(),
            name: name.to_owned(),
            size_bytes: info.virtual_size,
        };
        s.snapshots.push(snap.clone());
        self.store(&s)?;
        Ok(snap)
    }

    async fn snapshots(&self, id: &VolumeId) -> Result<Vec<Snapshot>> {
        let s = self
            .load(id)?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        Ok(s.snapshots)
    }

    async fn clone_volume(&self, source: &CloneSource, spec: &VolumeSpec) -> Result<Volume> {
        let (src_id, snap) = match source {
            CloneSource::Volume(id) => (id.clone(), None),
            CloneSource::Snapshot { volume, name } => (volume.clone(), Some(name.clone())),
        };
        let src = self
            .load(&src_id)?
            .ok_or_else(|| Error::UnknownVolume { id: src_id.clone() })?;
        let min = match &snap {
            None => {
                if src.volume.attached_to.is_some() {
                    return Err(Error::InUse {
                        id: src_id,
                        reason: "cloning the live content needs a detached volume; clone a snapshot",
                    });
                }
                src.volume.size_bytes
            }
            Some(n) => {
                src.snapshots
                    .iter()
                    .find(|x| &x.name == n)
                    .ok_or_else(|| Error::UnknownSnapshot {
                        id: src_id.clone(),
                        snapshot: n.clone(),
                    })?
                    .size_bytes
            }
        };
        let mut spec = spec.clone();
        spec.size_bytes = spec.size_bytes.max(min);
        let src_img = self.image_path(&src_id);
        self.create_with(&spec, |img, size| async move {
            let src = src_img.to_string_lossy().into_owned();
            let dst = img.to_string_lossy().into_owned();
            let snap_arg = snap.map(|n| format!("snapshot.name={n}"));
            let mut args = vec!["convert", "-U", "-O", "qcow2"];
            if let Some(a) = &snap_arg {
                args.extend(["-l", a.as_str()]);
            }
            args.extend([src.as_str(), dst.as_str()]);
            fsutil::run("qemu-img", &args).await?;
            if image_info(&img).await?.virtual_size < size {
                fsutil::run(
                    "qemu-img",
                    &["resize", "-q", "-f", "qcow2", &dst, &size.to_string()],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }
}

/// Reads the virtual size from a qcow2 header (big-endian `u64` at byte 24), checking the magic.
///
/// ```
/// let mut h = vec![0u8; 32];
/// h[..4].copy_from_slice(b"QFI\xfb");
/// h[24..32].copy_from_slice(&(16u64 << 20).to_be_bytes());
/// assert_eq!(volume_core::backend::qcow2::virtual_size(&h), Some(16 << 20));
/// ```
pub fn virtual_size(header: &[u8]) -> Option<u64> {
    if header.get(..4)? != b"QFI\xfb" {
        return None;
    }
    Some(u64::from_be_bytes(header.get(24..32)?.try_into().ok()?))
}
