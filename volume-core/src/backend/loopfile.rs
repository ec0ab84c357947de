//! Local loop files: a port of Flocker's loopback backend, made crash-safe.
//!
//! Each volume is a sparse image file plus an atomically written JSON sidecar under one root
//! directory. Two modes:
//!
//! - [`LoopMode::Losetup`] (needs root): images stay in `images/`; attach writes the attachment
//!   to the sidecar, then binds a loop device with `losetup --find --show` while holding an
//!   exclusive `flock` on the image (loop devices give no exclusivity of their own). The device
//!   list (`losetup -j`) is the truth about what is bound: `device` re-binds a device lost in a
//!   crash, and `detach` unbinds every device of the image.
//! - [`LoopMode::PlainFiles`] (no root): as Flocker's loopback did, attach moves the image from
//!   `unattached/` into `nodes/<node>/`, and the image's location *is* the attachment, so a crash
//!   between the move and the sidecar update loses nothing.
//!
//! Every mutation runs under a per-volume lock (an in-process mutex, then a `flock` on
//! `volumes/<id>.lock`), so several processes may share one root; `create` runs under a root-wide
//! lock so names stay unique per pool.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::fsutil::{self, FileLock, VolumeLocks};
use super::rules::{self, AttachDecision, CreateDecision, DetachDecision};
use super::{Backend, BackendInfo, Capabilities};
use crate::error::{Error, Result};
use crate::model::{
    Allocation, Device, DeviceFormat, Epoch, NodeId, PoolId, Volume, VolumeId, VolumeSpec,
};

/// How attachments are realized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopMode {
    /// Loop block devices via `losetup` (root only).
    Losetup,
    /// Image files moved between node directories (no root needed).
    PlainFiles,
}

impl LoopMode {
    /// `Losetup` when running as root with `/dev/loop-control` present, else `PlainFiles`.
    pub fn detect() -> Self {
        if fsutil::running_as_root() && Path::new("/dev/loop-control").exists() {
            LoopMode::Losetup
        } else {
            LoopMode::PlainFiles
        }
    }
}

/// The sidecar stored next to each image.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sidecar {
    volume: Volume,
    /// The loop device last bound (losetup mode); a hint, `losetup -j` is the truth.
    #[serde(default)]
    loop_device: Option<PathBuf>,
}

/// The loop-file backend. See the [module documentation](self).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
/// use volume_core::backend::Backend;
/// use volume_core::{Epoch, NodeId, PoolId, VolumeName, VolumeSpec};
///
/// let dir = tempfile::tempdir().unwrap();
/// let pool = PoolId::new("local").unwrap();
/// let b = LoopFileBackend::new(dir.path(), LoopMode::PlainFiles).unwrap().with_pool(pool.clone(), None);
/// let v = b.create(&VolumeSpec::new(VolumeName::new("db").unwrap(), pool, 1)).await.unwrap();
/// let node = NodeId::new("vm-a").unwrap();
/// b.attach(&v.id, &node, Epoch::ZERO).await.unwrap();
/// let dev = b.device(&v.id, &node).await.unwrap();
/// assert!(dev.path.starts_with(dir.path().join("nodes/vm-a")));
/// # });
/// ```
#[derive(Debug)]
pub struct LoopFileBackend {
    root: PathBuf,
    mode: LoopMode,
    pools: BTreeMap<PoolId, Option<u64>>,
    allocation: Allocation,
    locks: VolumeLocks,
    create_lock: tokio::sync::Mutex<()>,
    image_locks: Mutex<HashMap<VolumeId, FileLock>>,
}

impl LoopFileBackend {
    /// Opens (creating when needed) a backend rooted at `root`. Allocation: 1 MiB units and a
    /// 16 MiB minimum, Flocker's figures ("enough for an ext4 journal").
    pub fn new(root: impl Into<PathBuf>, mode: LoopMode) -> Result<Self> {
        let root = root.into();
        for d in ["volumes", "images", "unattached", "nodes", "names"] {
            fsutil::mkdirs(&root.join(d))?;
        }
        Ok(Self {
            root,
            mode,
            pools: BTreeMap::new(),
            allocation: Allocation::new(1 << 20, 16 << 20)?,
            locks: VolumeLocks::default(),
            create_lock: tokio::sync::Mutex::new(()),
            image_locks: Mutex::default(),
        })
    }

    /// Declares a pool, optionally with a capacity in bytes (sum of allocated sizes).
    #[must_use]
    pub fn with_pool(mut self, pool: PoolId, capacity: Option<u64>) -> Self {
        self.pools.insert(pool, capacity);
        self
    }

    /// The mode in use.
    pub fn mode(&self) -> LoopMode {
        self.mode
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds images that no volume owns (left by a crash between writing an image and its
    /// sidecar, or between removing them) and, unless `dry_run`, deletes them. Runs under the
    /// create lock, so an image being created is never taken for an orphan. Returns the paths.
    pub async fn collect_garbage(&self, dry_run: bool) -> Result<Vec<PathBuf>> {
        let _g = self.create_lock.lock().await;
        let _f = FileLock::acquire(self.root.join("create.lock")).await?;
        let sidecars = self.root.join("volumes");
        let mut found = fsutil::orphan_images(&self.root.join("images"), ".img", &sidecars)?;
        found.extend(fsutil::orphan_images(
            &self.root.join("unattached"),
            ".img",
            &sidecars,
        )?);
        if !dry_run {
            for p in &found {
                if self.mode == LoopMode::Losetup {
                    for dev in scan_bound_devices(p).await? {
                        fsutil::run("losetup", &["-d", &dev.to_string_lossy()]).await?;
                    }
                }
                fs::remove_file(p).map_err(|e| Error::io("remove orphan", p, e))?;
            }
        }
        Ok(found)
    }

    /// Unbinds every loop device of every image under the root (losetup mode) and releases the
    /// image locks: for tests and shutdown. The attachments stay recorded.
    pub async fn release_devices(&self) -> Result<()> {
        if self.mode == LoopMode::Losetup {
            for s in self.sidecars()? {
                let img = self.image_path(&s.volume.id);
                for dev in scan_bound_devices(&img).await? {
                    fsutil::run("losetup", &["-d", &dev.to_string_lossy()]).await?;
                }
            }
        }
        self.image_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        Ok(())
    }

    /// The file that maps a (pool, name) to its volume id, or `None` when the encoded name is
    /// too long for a file name.
    fn name_marker(&self, spec: &VolumeSpec) -> Option<PathBuf> {
        let key = format!(
            "{}@{}",
            fsutil::encode_component(spec.pool.as_str()),
            fsutil::encode_component(spec.name.as_str())
        );
        (key.len() <= 250).then(|| self.root.join("names").join(key))
    }

    fn sidecar_path(&self, id: &VolumeId) -> PathBuf {
        self.root.join("volumes").join(format!("{id}.json"))
    }

    fn image_path(&self, id: &VolumeId) -> PathBuf {
        self.root.join("images").join(format!("{id}.img"))
    }

    fn unattached_path(&self, id: &VolumeId) -> PathBuf {
        self.root.join("unattached").join(format!("{id}.img"))
    }

    fn node_path(&self, id: &VolumeId, node: &NodeId) -> PathBuf {
        self.root
            .join("nodes")
            .join(fsutil::node_dir_name(node))
            .join(format!("{id}.img"))
    }

    /// Where the image is in plain-file mode, and the node that implies.
    fn locate_plain(&self, id: &VolumeId) -> Result<Option<(PathBuf, Option<NodeId>)>> {
        let un = self.unattached_path(id);
        if un.exists() {
            return Ok(Some((un, None)));
        }
        let nodes = self.root.join("nodes");
        for entry in fs::read_dir(&nodes).map_err(|e| Error::io("read directory", &nodes, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", &nodes, e))?;
            let p = entry.path().join(format!("{id}.img"));
            if p.exists() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let node = fsutil::node_from_dir_name(&name).ok_or_else(|| Error::Corrupt {
                    what: entry.path().display().to_string(),
                    reason: "not a node directory name".to_owned(),
                })?;
                return Ok(Some((p, Some(node))));
            }
        }
        Ok(None)
    }

    /// Reads one sidecar with the attachment as the images say (plain mode).
    fn load(&self, id: &VolumeId) -> Result<Option<Sidecar>> {
        let Some(mut s) = fsutil::read_json::<Sidecar>(&self.sidecar_path(id))? else {
            return Ok(None);
        };
        if self.mode == LoopMode::PlainFiles {
            let (_, node) = self.locate_plain(id)?.ok_or_else(|| Error::Corrupt {
                what: format!("volume {id}"),
                reason: "sidecar without image".to_owned(),
            })?;
            s.volume.attached_to = node;
        }
        Ok(Some(s))
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
            let used: u64 = all
                .iter()
                .filter(|v| &v.pool == pool)
                .map(|v| v.size_bytes)
                .sum();
            c.saturating_sub(used)
        }))
    }

    /// Binds a loop device for an attached volume if none is bound (losetup mode), holding the
    /// image lock while this process knows the attachment.
    async fn realize(&self, s: &mut Sidecar) -> Result<PathBuf> {
        let id = s.volume.id.clone();
        let img = self.image_path(&id);
        let bound = bound_devices(&img, s.loop_device.as_deref()).await?;
        let have_lock = self
            .image_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&id);
        if !have_lock {
            let lock = FileLock::try_acquire(&img)?.ok_or(Error::Locked { id: id.clone() })?;
            self.image_locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.clone(), lock);
        }
        let dev = if let Some(d) = bound.into_iter().next() {
            d
        } else {
            PathBuf::from(bind_loop_device(&img).await?.trim())
        };
        if s.loop_device.as_ref() != Some(&dev) {
            s.loop_device = Some(dev.clone());
            self.store(s)?;
        }
        Ok(dev)
    }
}

/// Binds a free loop device to the image. Concurrent `losetup --find` calls can pick the same
/// free device, and the loser fails with "Device or resource busy": it retries.
async fn bind_loop_device(img: &Path) -> Result<String> {
    let img = img.to_string_lossy();
    let mut attempt = 0u64;
    loop {
        match fsutil::run("losetup", &["--find", "--show", &img]).await {
            Err(Error::Command { ref stderr, .. }) if stderr.contains("busy") && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            r => return r,
        }
    }
}

/// The loop devices bound to an image. The sidecar's hint is checked against the kernel's
/// record of that one device (`/sys/block/loopN/loop/backing_file`); without a hint, or when it
/// is wrong, every device is scanned (`losetup -j`), which costs a walk over all loop devices.
async fn bound_devices(img: &Path, hint: Option<&Path>) -> Result<Vec<PathBuf>> {
    if let Some(dev) = hint
        && let Some(name) = dev.file_name()
    {
        let backing = Path::new("/sys/block").join(name).join("loop/backing_file");
        if let (Ok(b), Ok(canon)) = (fs::read_to_string(&backing), fs::canonicalize(img))
            && Path::new(b.trim_end_matches('\n')) == canon
        {
            return Ok(vec![dev.to_path_buf()]);
        }
    }
    scan_bound_devices(img).await
}

/// The loop devices bound to an image, from `losetup -j` (the kernel's truth).
async fn scan_bound_devices(img: &Path) -> Result<Vec<PathBuf>> {
    let out = fsutil::run("losetup", &["-j", &img.to_string_lossy()]).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect())
}

fn create_sparse(path: &Path, size: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io("create image", path, e))?;
    f.set_len(size)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("size image", path, e))
}

fn move_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fsutil::mkdirs(dir)?;
    }
    fs::rename(from, to).map_err(|e| Error::io("move image to", to, e))?;
    for d in [from.parent(), to.parent()].into_iter().flatten() {
        fsutil::sync_dir(d)?;
    }
    Ok(())
}

#[async_trait]
impl Backend for LoopFileBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "loopfile",
            allocation: self.allocation,
            capabilities: Capabilities {
                resize: true,
                online_resize: true,
                ..Capabilities::default()
            },
        }
    }

    async fn create(&self, spec: &VolumeSpec) -> Result<Volume> {
        let _g = self.create_lock.lock().await;
        let _f = FileLock::acquire(self.root.join("create.lock")).await?;
        let marker = self.name_marker(spec);
        let capped = self
            .pools
            .get(&spec.pool)
            .ok_or_else(|| Error::UnknownPool {
                pool: spec.pool.clone(),
            })?
            .is_some();
        // Without a capacity to check, the name marker answers in O(1); otherwise (or for names
        // too long for a file name) every sidecar is read.
        let existing: Vec<Volume> = match (&marker, capped) {
            (Some(m), false) => match fsutil::read_text(m)? {
                Some(id) => VolumeId::new(id.trim())
                    .ok()
                    .map(|id| self.load(&id))
                    .transpose()?
                    .flatten()
                    .map(|s| vec![s.volume])
                    .unwrap_or_default(),
                None => Vec::new(),
            },
            _ => self.sidecars()?.into_iter().map(|s| s.volume).collect(),
        };
        let left = self.capacity_left(&existing, &spec.pool)?;
        match rules::decide_create(spec, &existing, self.allocation, left)? {
            CreateDecision::Existing(v) => Ok(v),
            CreateDecision::Create { allocated } => {
                let v = rules::new_volume(spec, self.allocation)?;
                let img = match self.mode {
                    LoopMode::Losetup => self.image_path(&v.id),
                    LoopMode::PlainFiles => self.unattached_path(&v.id),
                };
                // The name marker first (a marker whose sidecar is missing counts as absent),
                // then the image, then the sidecar: the sidecar is the commit point, and a crash
                // before it leaves an unlisted image, never a listed volume without data.
                if let Some(m) = &marker {
                    fsutil::write_text_atomic(m, v.id.as_str())?;
                }
                create_sparse(&img, allocated)?;
                self.store(&Sidecar {
                    volume: v.clone(),
                    loop_device: None,
                })?;
                Ok(v)
            }
        }
    }

    async fn destroy(&self, id: &VolumeId) -> Result<()> {
        let _l = self.lock_volume(id).await?;
        let s = self.load(id)?;
        if !rules::decide_destroy(s.as_ref().map(|s| &s.volume))? {
            return Ok(());
        }
        let img = match self.mode {
            LoopMode::Losetup => self.image_path(id),
            LoopMode::PlainFiles => self.unattached_path(id),
        };
        // The sidecar first (the commit point), then the image.
        let side = self.sidecar_path(id);
        fs::remove_file(&side).map_err(|e| Error::io("remove", &side, e))?;
        fsutil::sync_dir(side.parent().unwrap_or(&self.root))?;
        match fs::remove_file(&img) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &img, e)),
        }
        let _ = fs::remove_file(self.root.join("volumes").join(format!("{id}.lock")));
        // Remove the name marker only if it still names this volume, under the create lock, so
        // a volume created meanwhile under the same name keeps its marker.
        if let Some(v) = s.map(|s| s.volume) {
            let spec = VolumeSpec::new(v.name, v.pool, 1);
            if let Some(m) = self.name_marker(&spec) {
                let _g = self.create_lock.lock().await;
                let _f = FileLock::acquire(self.root.join("create.lock")).await?;
                if fsutil::read_text(&m)?.is_some_and(|t| t.trim() == id.as_str()) {
                    let _ = fs::remove_file(&m);
                }
            }
        }
        Ok(())
    }

    async fn attach(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Volume> {
        let _l = self.lock_volume(id).await?;
        let mut s = self
            .load(id)?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let decision = rules::decide_attach(&s.volume, node, epoch)?;
        match self.mode {
            LoopMode::PlainFiles => {
                if decision == AttachDecision::Attach {
                    move_file(&self.unattached_path(id), &self.node_path(id, node))?;
                    rules::apply_attach(&mut s.volume, node, epoch);
                    self.store(&s)?;
                }
            }
            LoopMode::Losetup => {
                if decision == AttachDecision::Attach {
                    // Record the attachment first: a crash before the device is bound leaves
                    // a recorded attachment that `device` completes, never an unrecorded device.
                    rules::apply_attach(&mut s.volume, node, epoch);
                    self.store(&s)?;
                }
                self.realize(&mut s).await?;
            }
        }
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
        match self.mode {
            LoopMode::PlainFiles => {
                move_file(&self.node_path(id, &node), &self.unattached_path(id))?;
            }
            LoopMode::Losetup => {
                for dev in bound_devices(&self.image_path(id), s.loop_device.as_deref()).await? {
                    fsutil::run("losetup", &["-d", &dev.to_string_lossy()]).await?;
                }
                self.image_locks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(id);
                s.loop_device = None;
            }
        }
        rules::apply_detach(&mut s.volume, epoch);
        self.store(&s)
    }

    async fn fence(&self, id: &VolumeId, epoch: Epoch) -> Result<Volume> {
        let _l = self.lock_volume(id).await?;
        let mut s = self.load(id)?;
        if rules::decide_fence(s.as_ref().map(|s| &s.volume), id, epoch)?
            && let Some(s) = s.as_mut()
        {
            rules::apply_fence(&mut s.volume, epoch);
            self.store(s)?;
        }
        s.map(|s| s.volume)
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })
    }

    async fn list(&self) -> Result<Vec<Volume>> {
        Ok(self.sidecars()?.into_iter().map(|s| s.volume).collect())
    }

    async fn get(&self, id: &VolumeId) -> Result<Option<Volume>> {
        Ok(self.load(id)?.map(|s| s.volume))
    }

    async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        let _l = self.lock_volume(id).await?;
        let mut s = self.load(id)?;
        rules::decide_device(s.as_ref().map(|s| &s.volume), id, node)?;
        let s = s
            .as_mut()
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let path = match self.mode {
            LoopMode::PlainFiles => self.node_path(id, node),
            LoopMode::Losetup => self.realize(s).await?,
        };
        Ok(Device {
            path,
            format: DeviceFormat::Raw,
        })
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
            true,
            epoch,
        )?
        else {
            return Ok(s.volume);
        };
        let capped = matches!(self.pools.get(&s.volume.pool), Some(Some(_)));
        let all: Vec<Volume> = if capped {
            self.sidecars()?.into_iter().map(|s| s.volume).collect()
        } else {
            Vec::new()
        };
        if let Some(left) = self.capacity_left(&all, &s.volume.pool)?
            && new - s.volume.size_bytes > left
        {
            return Err(Error::CapacityExhausted {
                pool: s.volume.pool.clone(),
                requested: new - s.volume.size_bytes,
                available: left,
            });
        }
        let img = match (self.mode, &s.volume.attached_to) {
            (LoopMode::Losetup, _) => self.image_path(id),
            (LoopMode::PlainFiles, Some(n)) => self.node_path(id, n),
            (LoopMode::PlainFiles, None) => self.unattached_path(id),
        };
        let f = OpenOptions::new()
            .write(true)
            .open(&img)
            .map_err(|e| Error::io("open image", &img, e))?;
        f.set_len(new)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("grow image", &img, e))?;
        if self.mode == LoopMode::Losetup {
            for dev in bound_devices(&img, s.loop_device.as_deref()).await? {
                fsutil::run("losetup", &["-c", &dev.to_string_lossy()]).await?;
            }
        }
        rules::apply_resize(&mut s.volume, new, epoch);
        self.store(&s)?;
        Ok(s.volume)
    }
}
