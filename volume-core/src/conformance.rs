//! The conformance kit: one generic suite that every backend runs by supplying a [`Factory`].
//!
//! - Flocker's 27 block-device tests (`make_iblockdeviceapi_tests`), adapted to CSI semantics
//!   (attaching to the same node, detaching a detached or unknown volume and destroying a missing
//!   one succeed), numbered `f01`..`f27` after Flocker's list;
//! - CSI idempotency and typed errors (`csi_*`), fencing epochs, run-time capabilities;
//! - concurrent operations on one volume (`conc_*`);
//! - journaled moves with crash injection at every step (`move_*`);
//! - [`convergence_property`]: a proptest that the convergence loop reaches any desired state
//!   from any state within 20 iterations over a backend whose listing lags two calls.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use volume_core::backend::{memory::MemoryBackend, Backend};
//! use volume_core::conformance::{run_all, Factory};
//! use volume_core::{PoolId, Result};
//!
//! struct Memory;
//! #[async_trait]
//! impl Factory for Memory {
//!     async fn backend(&self) -> Result<Arc<dyn Backend>> {
//!         Ok(Arc::new(MemoryBackend::builder().pool("pool", 1 << 40).build()))
//!     }
//!     fn pool(&self) -> PoolId { PoolId::new("pool").unwrap() }
//! }
//! let report = run_all(&Memory).await;
//! assert!(report.failed.is_empty(), "{report}");
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{Backend, CloneSource, memory::LaggingListing};
use crate::error::{Error, Result};
use crate::journal::{MemoryStore, Store};
use crate::model::{
    Device, DeviceFormat, Epoch, Labels, NodeId, PoolId, Volume, VolumeId, VolumeName, VolumeSpec,
};
use crate::orchestrator::{
    CRASH_POINTS, CrashAt, Desired, DesiredState, MovePolicy, MoveStep, Orchestrator,
};

/// Makes fresh, empty backends for the suite.
#[async_trait]
pub trait Factory: Send + Sync {
    /// A fresh backend with no volumes.
    async fn backend(&self) -> Result<Arc<dyn Backend>>;

    /// The pool volumes are created in.
    fn pool(&self) -> PoolId;

    /// Whether device paths are real files or block devices on this machine (checked for size
    /// and existence). Default: false.
    fn real_devices(&self) -> bool {
        false
    }

    /// Nodes volumes are attached to (at least three). Default: `node-a`, `node-b`, `node-c`.
    fn nodes(&self) -> Vec<NodeId> {
        ["node-a", "node-b", "node-c"]
            .into_iter()
            .filter_map(|n| NodeId::new(n).ok())
            .collect()
    }

    /// The journal store the orchestrators of one case share (each case asks once, after
    /// [`Factory::backend`]). Default: a fresh [`MemoryStore`]. A store whose state lives with
    /// the volumes (vCenter disk metadata) returns an instance over the same backend's disks.
    async fn store(&self, backend: &Arc<dyn Backend>) -> Result<Arc<dyn Store>> {
        let _ = backend;
        Ok(Arc::new(MemoryStore::default()))
    }

    /// Releases what a case left behind (loop devices, VMs). Default: nothing.
    async fn teardown(&self, backend: Arc<dyn Backend>) {
        let _ = backend;
    }
}

/// The outcome of [`run_all`].
#[derive(Debug, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: Vec<&'static str>,
    /// Cases that failed, with why.
    pub failed: Vec<(&'static str, String)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} passed, {} failed",
            self.passed.len(),
            self.failed.len()
        )?;
        for (name, why) in &self.failed {
            writeln!(f, "  FAILED {name}: {why}")?;
        }
        Ok(())
    }
}

type Outcome = std::result::Result<(), String>;
type CaseFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What a case gets.
#[derive(Clone)]
struct Ctx {
    b: Arc<dyn Backend>,
    pool: PoolId,
    nodes: Vec<NodeId>,
    real: bool,
    store: Arc<dyn Store>,
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

#[expect(clippy::needless_pass_by_value, reason = "used as map_err(e2s)")]
fn e2s(e: Error) -> String {
    format!("unexpected error: {e} ({e:?})")
}

impl Ctx {
    fn spec(&self, name: &str, size: u64) -> VolumeSpec {
        VolumeSpec::new(
            VolumeName::new(name).expect("valid test name"),
            self.pool.clone(),
            size,
        )
    }

    async fn create(&self, name: &str) -> std::result::Result<Volume, String> {
        self.b.create(&self.spec(name, 1)).await.map_err(e2s)
    }

    fn a(&self) -> &NodeId {
        &self.nodes[0]
    }

    fn b_node(&self) -> &NodeId {
        &self.nodes[1]
    }

    async fn get(&self, id: &VolumeId) -> std::result::Result<Option<Volume>, String> {
        self.b.get(id).await.map_err(e2s)
    }

    async fn listed(&self, id: &VolumeId) -> std::result::Result<Volume, String> {
        self.b
            .list()
            .await
            .map_err(e2s)?
            .into_iter()
            .find(|v| &v.id == id)
            .ok_or_else(|| format!("volume {id} not listed"))
    }

    fn unknown_id() -> VolumeId {
        VolumeId::generate()
    }
}

/// The size of the bytes behind a device: a raw file or block device, or a qcow2 image's
/// virtual size.
fn device_size(d: &Device) -> std::result::Result<u64, String> {
    let mut f =
        std::fs::File::open(&d.path).map_err(|e| format!("open {}: {e}", d.path.display()))?;
    match d.format {
        DeviceFormat::Qcow2 => {
            let mut h = [0u8; 32];
            f.read_exact(&mut h).map_err(|e| e.to_string())?;
            crate::backend::qcow2::virtual_size(&h).ok_or_else(|| "not a qcow2 header".to_owned())
        }
        _ => f.seek(SeekFrom::End(0)).map_err(|e| e.to_string()),
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        const CASES: &[(&str, fn(Ctx) -> CaseFuture)] = &[
            $((stringify!($name), |c| Box::pin($name(c)))),*
        ];
    };
}

cases!(
    f01_interface,
    f02_node_id_unicode,
    f03_node_id_nonempty,
    f04_list_volume_empty,
    f05_created_is_listed,
    f06_listed_volume_attributes,
    f07_created_volume_attributes,
    f08_attach_unknown_volume,
    f09_device_size,
    f10_attach_attached_volume_same_node,
    f11_attach_elsewhere_attached_volume,
    f12_attach_unattached_volume,
    f13_attached_volume_listed,
    f14_list_attached_and_unattached,
    f15_multiple_volumes_attached_to_node,
    f16_device_unknown_volume,
    f17_device_unattached_volume,
    f18_device_is_a_device,
    f19_device_repeatable_results,
    f20_destroy_unknown_volume,
    f21_destroy_volume,
    f22_destroy_destroyed_volume,
    f23_detach_unknown_volume,
    f24_detach_detached_volume,
    f25_detach_volume,
    f26_reattach_detached_volume,
    f27_attach_destroyed_volume,
    csi_create_same_name_same_spec,
    csi_create_same_name_other_spec,
    csi_name_reusable_after_destroy,
    csi_invalid_sizes_and_pools,
    csi_destroy_attached_refused,
    csi_stale_epoch_refused,
    csi_device_elsewhere,
    csi_capabilities_honoured,
    conc_attach_one_winner,
    conc_create_one_volume,
    conc_attach_detach_consistent,
    conc_moves_one_volume,
    move_moves_and_fences,
    move_crash_at_every_step,
    move_converges_with_lagging_listing,
);

/// The names of every case [`run_all`] runs.
pub fn case_names() -> Vec<&'static str> {
    CASES.iter().map(|(n, _)| *n).collect()
}

/// The cases whose orchestrators use [`Factory::store`]: what a journal store must pass.
pub const STORE_CASES: &[&str] = &[
    "conc_moves_one_volume",
    "move_moves_and_fences",
    "move_crash_at_every_step",
    "move_converges_with_lagging_listing",
];

/// Runs every case, each on a fresh backend, and reports.
pub async fn run_all(factory: &dyn Factory) -> Report {
    run_only(factory, &case_names()).await
}

/// Runs the named cases (see [`case_names`], [`STORE_CASES`]), each on a fresh backend, and
/// reports. Unknown names are reported as failed.
pub async fn run_only(factory: &dyn Factory, names: &[&str]) -> Report {
    let mut report = Report::default();
    for n in names {
        if !CASES.iter().any(|(name, _)| name == n) {
            report.failed.push(("unknown case", (*n).to_owned()));
        }
    }
    for (name, case) in CASES.iter().filter(|(name, _)| names.contains(name)) {
        let (name, case) = (*name, *case);
        let b = match factory.backend().await {
            Ok(b) => b,
            Err(e) => {
                report.failed.push((name, format!("factory failed: {e}")));
                continue;
            }
        };
        let store = match factory.store(&b).await {
            Ok(s) => s,
            Err(e) => {
                report
                    .failed
                    .push((name, format!("store factory failed: {e}")));
                factory.teardown(b).await;
                continue;
            }
        };
        let ctx = Ctx {
            b: b.clone(),
            pool: factory.pool(),
            nodes: factory.nodes(),
            real: factory.real_devices(),
            store,
        };
        let r = case(ctx).await;
        factory.teardown(b).await;
        match r {
            Ok(()) => report.passed.push(name),
            Err(why) => report.failed.push((name, why)),
        }
    }
    report
}

async fn f01_interface(c: Ctx) -> Outcome {
    let info = c.b.info();
    ensure!(!info.kind.is_empty(), "empty kind");
    ensure!(info.allocation.unit() > 0, "zero allocation unit");
    ensure!(
        info.allocation
            .minimum()
            .is_multiple_of(info.allocation.unit()),
        "minimum not a multiple of the unit"
    );
    ensure!(
        c.b.capabilities() == info.capabilities,
        "capabilities() disagrees with info()"
    );
    Ok(())
}

async fn f02_node_id_unicode(c: Ctx) -> Outcome {
    let v = c.create("f02").await?;
    let n = NodeId::new("nœud-ü-東京").map_err(e2s)?;
    c.b.attach(&v.id, &n, Epoch::ZERO).await.map_err(e2s)?;
    ensure!(
        c.listed(&v.id).await?.attached_to == Some(n.clone()),
        "not listed on the unicode node"
    );
    c.b.device(&v.id, &n).await.map_err(e2s)?;
    Ok(())
}

async fn f03_node_id_nonempty(c: Ctx) -> Outcome {
    ensure!(NodeId::new("").is_err(), "empty node id accepted");
    ensure!(
        c.nodes.iter().all(|n| !n.as_str().is_empty()),
        "factory node empty"
    );
    ensure!(c.nodes.len() >= 3, "factory must supply three nodes");
    Ok(())
}

async fn f04_list_volume_empty(c: Ctx) -> Outcome {
    ensure!(
        c.b.list().await.map_err(e2s)?.is_empty(),
        "fresh backend lists volumes"
    );
    Ok(())
}

async fn f05_created_is_listed(c: Ctx) -> Outcome {
    let v = c.create("f05").await?;
    c.listed(&v.id).await?;
    Ok(())
}

async fn f06_listed_volume_attributes(c: Ctx) -> Outcome {
    let v = c.create("f06").await?;
    let l = c.listed(&v.id).await?;
    ensure!(l == v, "listed {l:?} differs from created {v:?}");
    Ok(())
}

async fn f07_created_volume_attributes(c: Ctx) -> Outcome {
    let alloc = c.b.info().allocation;
    let mut spec = c.spec("f07", alloc.minimum().max(alloc.unit()) + 1);
    let mut labels = Labels::default();
    labels.insert("app", "db").map_err(e2s)?;
    spec.labels = labels.clone();
    let v = c.b.create(&spec).await.map_err(e2s)?;
    let want = alloc.round_up(spec.size_bytes).map_err(e2s)?;
    ensure!(
        v.size_bytes == want,
        "size {} is not the rounded {want}",
        v.size_bytes
    );
    ensure!(
        v.size_bytes % alloc.unit() == 0,
        "size not a multiple of the unit"
    );
    ensure!(
        v.name == spec.name && v.pool == spec.pool,
        "name or pool differs"
    );
    ensure!(v.labels == labels, "labels differ");
    ensure!(v.attached_to.is_none(), "a new volume is attached");
    Ok(())
}

async fn f08_attach_unknown_volume(c: Ctx) -> Outcome {
    let id = Ctx::unknown_id();
    match c.b.attach(&id, c.a(), Epoch::ZERO).await {
        Err(Error::UnknownVolume { id: got }) if got == id => Ok(()),
        other => Err(format!("expected UnknownVolume, got {other:?}")),
    }
}

async fn f09_device_size(c: Ctx) -> Outcome {
    let v = c.create("f09").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    let d = c.b.device(&v.id, c.a()).await.map_err(e2s)?;
    if c.real {
        let size = device_size(&d)?;
        ensure!(
            size == v.size_bytes,
            "device has {size} bytes, volume {}",
            v.size_bytes
        );
    }
    ensure!(
        c.listed(&v.id).await?.size_bytes == v.size_bytes,
        "listed size changed"
    );
    Ok(())
}

async fn f10_attach_attached_volume_same_node(c: Ctx) -> Outcome {
    let v = c.create("f10").await?;
    let first = c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    let again = c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    ensure!(
        again.attached_to == first.attached_to,
        "second attach changed the attachment"
    );
    Ok(())
}

async fn f11_attach_elsewhere_attached_volume(c: Ctx) -> Outcome {
    let v = c.create("f11").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    match c.b.attach(&v.id, c.b_node(), Epoch::ZERO).await {
        Err(Error::AttachedElsewhere { node, .. }) if &node == c.a() => {}
        other => return Err(format!("expected AttachedElsewhere(a), got {other:?}")),
    }
    ensure!(
        c.listed(&v.id).await?.attached_to.as_ref() == Some(c.a()),
        "refused attach changed the attachment"
    );
    Ok(())
}

async fn f12_attach_unattached_volume(c: Ctx) -> Outcome {
    let v = c.create("f12").await?;
    let a = c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    ensure!(
        a.attached_to.as_ref() == Some(c.a()),
        "attach result not attached"
    );
    ensure!(a.generation > v.generation, "generation did not increase");
    Ok(())
}

async fn f13_attached_volume_listed(c: Ctx) -> Outcome {
    let v = c.create("f13").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    ensure!(
        c.listed(&v.id).await?.attached_to.as_ref() == Some(c.a()),
        "attachment not listed"
    );
    Ok(())
}

async fn f14_list_attached_and_unattached(c: Ctx) -> Outcome {
    let v1 = c.create("f14-1").await?;
    let v2 = c.create("f14-2").await?;
    c.b.attach(&v1.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    let l = c.b.list().await.map_err(e2s)?;
    ensure!(l.len() == 2, "listed {} volumes", l.len());
    ensure!(
        c.listed(&v2.id).await?.attached_to.is_none(),
        "unattached listed as attached"
    );
    Ok(())
}

async fn f15_multiple_volumes_attached_to_node(c: Ctx) -> Outcome {
    let v1 = c.create("f15-1").await?;
    let v2 = c.create("f15-2").await?;
    c.b.attach(&v1.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    c.b.attach(&v2.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    let d1 = c.b.device(&v1.id, c.a()).await.map_err(e2s)?;
    let d2 = c.b.device(&v2.id, c.a()).await.map_err(e2s)?;
    ensure!(d1.path != d2.path, "two volumes share a device path");
    Ok(())
}

async fn f16_device_unknown_volume(c: Ctx) -> Outcome {
    match c.b.device(&Ctx::unknown_id(), c.a()).await {
        Err(Error::UnknownVolume { .. }) => Ok(()),
        other => Err(format!("expected UnknownVolume, got {other:?}")),
    }
}

async fn f17_device_unattached_volume(c: Ctx) -> Outcome {
    let v = c.create("f17").await?;
    match c.b.device(&v.id, c.a()).await {
        Err(Error::NotAttached { .. }) => Ok(()),
        other => Err(format!("expected NotAttached, got {other:?}")),
    }
}

async fn f18_device_is_a_device(c: Ctx) -> Outcome {
    let v = c.create("f18").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    let d = c.b.device(&v.id, c.a()).await.map_err(e2s)?;
    ensure!(d.path.is_absolute(), "device path {:?} is relative", d.path);
    if c.real {
        let meta = std::fs::metadata(&d.path).map_err(|e| format!("{}: {e}", d.path.display()))?;
        let ft = meta.file_type();
        ensure!(
            ft.is_block_device() || ft.is_file(),
            "{:?} is neither a block device nor a file",
            d.path
        );
        if d.path.starts_with("/dev/") {
            ensure!(ft.is_block_device(), "{:?} is not a block device", d.path);
        }
    }
    Ok(())
}

async fn f19_device_repeatable_results(c: Ctx) -> Outcome {
    let v = c.create("f19").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    let d1 = c.b.device(&v.id, c.a()).await.map_err(e2s)?;
    let d2 = c.b.device(&v.id, c.a()).await.map_err(e2s)?;
    ensure!(d1 == d2, "device path changed: {d1:?} then {d2:?}");
    Ok(())
}

async fn f20_destroy_unknown_volume(c: Ctx) -> Outcome {
    c.b.destroy(&Ctx::unknown_id()).await.map_err(e2s)
}

async fn f21_destroy_volume(c: Ctx) -> Outcome {
    let v1 = c.create("f21-1").await?;
    let v2 = c.create("f21-2").await?;
    c.b.destroy(&v1.id).await.map_err(e2s)?;
    ensure!(
        c.get(&v1.id).await?.is_none(),
        "destroyed volume still there"
    );
    ensure!(c.listed(&v2.id).await? == v2, "the other volume changed");
    Ok(())
}

async fn f22_destroy_destroyed_volume(c: Ctx) -> Outcome {
    let v = c.create("f22").await?;
    c.b.destroy(&v.id).await.map_err(e2s)?;
    c.b.destroy(&v.id).await.map_err(e2s)
}

async fn f23_detach_unknown_volume(c: Ctx) -> Outcome {
    c.b.detach(&Ctx::unknown_id(), Epoch::ZERO)
        .await
        .map_err(e2s)
}

async fn f24_detach_detached_volume(c: Ctx) -> Outcome {
    let v = c.create("f24").await?;
    c.b.detach(&v.id, Epoch::ZERO).await.map_err(e2s)?;
    ensure!(
        c.listed(&v.id).await?.attached_to.is_none(),
        "became attached"
    );
    Ok(())
}

async fn f25_detach_volume(c: Ctx) -> Outcome {
    let v1 = c.create("f25-1").await?;
    let v2 = c.create("f25-2").await?;
    c.b.attach(&v1.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    c.b.attach(&v2.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    let old = c.b.device(&v1.id, c.a()).await.map_err(e2s)?;
    c.b.detach(&v1.id, Epoch::ZERO).await.map_err(e2s)?;
    ensure!(
        c.listed(&v1.id).await?.attached_to.is_none(),
        "still attached"
    );
    ensure!(
        c.listed(&v2.id).await?.attached_to.as_ref() == Some(c.a()),
        "the other volume was detached"
    );
    match c.b.device(&v1.id, c.a()).await {
        Err(Error::NotAttached { .. }) => {}
        other => return Err(format!("expected NotAttached, got {other:?}")),
    }
    if c.real && old.format == DeviceFormat::Raw && !old.path.starts_with("/dev/") {
        ensure!(
            !old.path.exists(),
            "old device path {:?} still usable",
            old.path
        );
    }
    Ok(())
}

async fn f26_reattach_detached_volume(c: Ctx) -> Outcome {
    let v = c.create("f26").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    c.b.detach(&v.id, Epoch::ZERO).await.map_err(e2s)?;
    let r =
        c.b.attach(&v.id, c.b_node(), Epoch::ZERO)
            .await
            .map_err(e2s)?;
    ensure!(r.attached_to.as_ref() == Some(c.b_node()), "not reattached");
    c.b.device(&v.id, c.b_node()).await.map_err(e2s)?;
    Ok(())
}

async fn f27_attach_destroyed_volume(c: Ctx) -> Outcome {
    let v = c.create("f27").await?;
    c.b.destroy(&v.id).await.map_err(e2s)?;
    match c.b.attach(&v.id, c.a(), Epoch::ZERO).await {
        Err(Error::UnknownVolume { .. }) => Ok(()),
        other => Err(format!("expected UnknownVolume, got {other:?}")),
    }
}

async fn csi_create_same_name_same_spec(c: Ctx) -> Outcome {
    let v = c.create("csi-a").await?;
    let again = c.create("csi-a").await?;
    ensure!(v.id == again.id, "a second volume was created");
    ensure!(
        c.b.list().await.map_err(e2s)?.len() == 1,
        "two volumes listed"
    );
    Ok(())
}

async fn csi_create_same_name_other_spec(c: Ctx) -> Outcome {
    let v = c.create("csi-b").await?;
    let big = v.size_bytes + c.b.info().allocation.unit();
    match c.b.create(&c.spec("csi-b", big)).await {
        Err(Error::NameConflict { .. }) => {}
        other => return Err(format!("expected NameConflict, got {other:?}")),
    }
    ensure!(
        c.listed(&v.id).await? == v,
        "the conflict changed the volume"
    );
    Ok(())
}

async fn csi_name_reusable_after_destroy(c: Ctx) -> Outcome {
    let v = c.create("csi-c").await?;
    c.b.destroy(&v.id).await.map_err(e2s)?;
    let w = c.create("csi-c").await?;
    ensure!(w.id != v.id, "an id was reused");
    Ok(())
}

async fn csi_invalid_sizes_and_pools(c: Ctx) -> Outcome {
    match c.b.create(&c.spec("csi-d", 0)).await {
        Err(Error::InvalidArgument { .. }) => {}
        other => return Err(format!("expected InvalidArgument, got {other:?}")),
    }
    let mut s = c.spec("csi-d", 1);
    s.pool = PoolId::new("no-such-pool-in-this-backend").map_err(e2s)?;
    match c.b.create(&s).await {
        Err(Error::UnknownPool { .. }) => {}
        other => return Err(format!("expected UnknownPool, got {other:?}")),
    }
    ensure!(
        c.b.list().await.map_err(e2s)?.is_empty(),
        "a refused create left a volume"
    );
    Ok(())
}

async fn csi_destroy_attached_refused(c: Ctx) -> Outcome {
    let v = c.create("csi-e").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    match c.b.destroy(&v.id).await {
        Err(Error::AttachedElsewhere { .. }) => {}
        other => return Err(format!("expected AttachedElsewhere, got {other:?}")),
    }
    ensure!(c.get(&v.id).await?.is_some(), "attached volume destroyed");
    Ok(())
}

async fn csi_stale_epoch_refused(c: Ctx) -> Outcome {
    let v = c.create("csi-f").await?;
    let f = c.b.fence(&v.id, Epoch(5)).await.map_err(e2s)?;
    ensure!(f.epoch == Epoch(5), "fence did not raise the epoch");
    match c.b.attach(&v.id, c.a(), Epoch(4)).await {
        Err(Error::StaleEpoch {
            current: Epoch(5), ..
        }) => {}
        other => return Err(format!("expected StaleEpoch, got {other:?}")),
    }
    match c.b.fence(&v.id, Epoch(4)).await {
        Err(Error::StaleEpoch { .. }) => {}
        other => return Err(format!("fence went backwards: {other:?}")),
    }
    let a = c.b.attach(&v.id, c.a(), Epoch(6)).await.map_err(e2s)?;
    ensure!(a.epoch == Epoch(6), "attach did not record its epoch");
    match c.b.detach(&v.id, Epoch(5)).await {
        Err(Error::StaleEpoch { .. }) => {}
        other => return Err(format!("expected StaleEpoch on detach, got {other:?}")),
    }
    match c.b.fence(&Ctx::unknown_id(), Epoch(1)).await {
        Err(Error::UnknownVolume { .. }) => Ok(()),
        other => Err(format!("expected UnknownVolume, got {other:?}")),
    }
}

async fn csi_device_elsewhere(c: Ctx) -> Outcome {
    let v = c.create("csi-g").await?;
    c.b.attach(&v.id, c.a(), Epoch::ZERO).await.map_err(e2s)?;
    match c.b.device(&v.id, c.b_node()).await {
        Err(Error::AttachedElsewhere { .. }) => Ok(()),
        other => Err(format!("expected AttachedElsewhere, got {other:?}")),
    }
}

async fn csi_capabilities_honoured(c: Ctx) -> Outcome {
    let caps = c.b.capabilities();
    let alloc = c.b.info().allocation;
    let v = c.create("csi-h").await?;
    let grown = v.size_bytes + alloc.unit();
    match c.b.resize(&v.id, grown, Epoch::ZERO).await {
        Ok(r) if caps.resize => {
            ensure!(r.size_bytes == grown, "resize gave {} bytes", r.size_bytes);
            ensure!(
                c.listed(&v.id).await?.size_bytes == grown,
                "resize not listed"
            );
            match c.b.resize(&v.id, v.size_bytes, Epoch::ZERO).await {
                Err(Error::InvalidArgument { .. }) => {}
                other => return Err(format!("shrink not refused: {other:?}")),
            }
            // The original spec still matches: create stays idempotent after a resize.
            ensure!(
                c.create("csi-h").await?.id == v.id,
                "create after resize made a new volume"
            );
        }
        Err(Error::Unsupported { .. }) if !caps.resize => {}
        other => return Err(format!("resize vs capability {}: {other:?}", caps.resize)),
    }
    match c.b.snapshot(&v.id, "s1").await {
        Ok(s) if caps.snapshot => {
            let again = c.b.snapshot(&v.id, "s1").await.map_err(e2s)?;
            ensure!(s == again, "snapshot not idempotent");
            let l = c.b.snapshots(&v.id).await.map_err(e2s)?;
            ensure!(l.len() == 1 && l[0].name == "s1", "snapshots listed {l:?}");
        }
        Err(Error::Unsupported { .. }) if !caps.snapshot => {}
        other => {
            return Err(format!(
                "snapshot vs capability {}: {other:?}",
                caps.snapshot
            ));
        }
    }
    let source = if caps.snapshot && caps.clone_from_snapshot {
        CloneSource::Snapshot {
            volume: v.id.clone(),
            name: "s1".to_owned(),
        }
    } else {
        CloneSource::Volume(v.id.clone())
    };
    match c.b.clone_volume(&source, &c.spec("csi-h-clone", 1)).await {
        Ok(cl) if caps.clone => {
            ensure!(cl.id != v.id, "clone has the source's id");
            ensure!(
                cl.size_bytes >= v.size_bytes,
                "clone smaller than its source"
            );
            c.listed(&cl.id).await?;
        }
        Err(Error::Unsupported { .. }) if !caps.clone => {}
        other => return Err(format!("clone vs capability {}: {other:?}", caps.clone)),
    }
    match c.b.place("gold", 1).await {
        Ok(_) | Err(Error::InvalidArgument { .. } | Error::CapacityExhausted { .. })
            if caps.placement => {}
        Err(Error::Unsupported { .. }) if !caps.placement => {}
        other => return Err(format!("place vs capability {}: {other:?}", caps.placement)),
    }
    Ok(())
}

#[expect(clippy::many_single_char_names, reason = "short names in a short test")]
async fn conc_attach_one_winner(c: Ctx) -> Outcome {
    let v = c.create("conc-a").await?;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (b, id) = (c.b.clone(), v.id.clone());
        let n = NodeId::new(format!("racer-{i}")).map_err(e2s)?;
        set.spawn(async move { (n.clone(), b.attach(&id, &n, Epoch::ZERO).await) });
    }
    let mut winners = Vec::new();
    while let Some(r) = set.join_next().await {
        let (n, r) = r.map_err(|e| e.to_string())?;
        match r {
            Ok(_) => winners.push(n),
            Err(Error::AttachedElsewhere { .. } | Error::Locked { .. }) => {}
            Err(e) => return Err(e2s(e)),
        }
    }
    ensure!(
        winners.len() == 1,
        "{} attaches won: {winners:?}",
        winners.len()
    );
    ensure!(
        c.listed(&v.id).await?.attached_to.as_ref() == Some(&winners[0]),
        "listing disagrees with the winner"
    );
    Ok(())
}

async fn conc_create_one_volume(c: Ctx) -> Outcome {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let b = c.b.clone();
        let spec = c.spec("conc-b", 1);
        set.spawn(async move { b.create(&spec).await });
    }
    let mut ids = Vec::new();
    while let Some(r) = set.join_next().await {
        ids.push(r.map_err(|e| e.to_string())?.map_err(e2s)?.id);
    }
    ids.dedup();
    ensure!(
        ids.len() == 1,
        "concurrent creates made {} volumes",
        ids.len()
    );
    ensure!(
        c.b.list().await.map_err(e2s)?.len() == 1,
        "more than one listed"
    );
    Ok(())
}

async fn conc_attach_detach_consistent(c: Ctx) -> Outcome {
    let v = c.create("conc-c").await?;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (b, id) = (c.b.clone(), v.id.clone());
        let n = c.nodes[i % 2].clone();
        set.spawn(async move {
            if i % 3 == 0 {
                b.detach(&id, Epoch::ZERO).await
            } else {
                b.attach(&id, &n, Epoch::ZERO).await.map(drop)
            }
        });
    }
    while let Some(r) = set.join_next().await {
        match r.map_err(|e| e.to_string())? {
            Ok(()) | Err(Error::AttachedElsewhere { .. } | Error::Locked { .. }) => {}
            Err(e) => return Err(e2s(e)),
        }
    }
    let l = c.listed(&v.id).await?;
    if let Some(n) = &l.attached_to {
        c.b.device(&v.id, n).await.map_err(e2s)?;
        let other = if n == c.a() { c.b_node() } else { c.a() };
        ensure!(
            c.b.device(&v.id, other).await.is_err(),
            "device visible on two nodes"
        );
    }
    Ok(())
}

async fn conc_moves_one_volume(c: Ctx) -> Outcome {
    let v = c.create("conc-d").await?;
    // Two orchestrators over one store, as two control-plane replicas would be.
    let store = c.store.clone();
    let o1 = Arc::new(Orchestrator::new(c.b.clone(), store.clone()));
    let o2 = Arc::new(Orchestrator::new(c.b.clone(), store.clone()));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..9 {
        let o = if i % 2 == 0 { o1.clone() } else { o2.clone() };
        let (id, n) = (v.id.clone(), c.nodes[i % 3].clone());
        set.spawn(async move { o.move_volume(&id, &n, MovePolicy::Preempt).await });
    }
    let mut epochs = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.map_err(|e| e.to_string())? {
            Ok(lease) => epochs.push(lease.epoch),
            Err(
                Error::Busy { .. }
                | Error::StaleEpoch { .. }
                | Error::AttachedElsewhere { .. }
                | Error::Locked { .. },
            ) => {}
            Err(e) => return Err(e2s(e)),
        }
    }
    ensure!(!epochs.is_empty(), "no move succeeded");
    o1.recover().await.map_err(e2s)?;
    let l = c.listed(&v.id).await?;
    let on = l
        .attached_to
        .clone()
        .ok_or("attached nowhere after the moves")?;
    let lease = o1.lease(&v.id).await.map_err(e2s)?.ok_or("no lease")?;
    ensure!(
        lease.holder == on,
        "lease with {} but attached to {on}",
        lease.holder
    );
    ensure!(
        lease.epoch == l.epoch,
        "lease epoch {} != volume epoch {}",
        lease.epoch,
        l.epoch
    );
    o1.device(&v.id, &on).await.map_err(e2s)?;
    for n in c.nodes.iter().filter(|n| **n != on) {
        ensure!(
            c.b.device(&v.id, n).await.is_err(),
            "device visible on {n} too"
        );
    }
    ensure!(
        o2.pending().await.map_err(e2s)?.is_empty(),
        "journal not empty"
    );
    Ok(())
}

async fn move_moves_and_fences(c: Ctx) -> Outcome {
    let v = c.create("move-a").await?;
    let o = Orchestrator::new(c.b.clone(), c.store.clone());
    let la = o
        .move_volume(&v.id, c.a(), MovePolicy::Polite)
        .await
        .map_err(e2s)?;
    ensure!(
        c.listed(&v.id).await?.attached_to.as_ref() == Some(c.a()),
        "not on a"
    );
    match o.move_volume(&v.id, c.b_node(), MovePolicy::Polite).await {
        Err(Error::LeaseHeld { .. }) => {}
        other => return Err(format!("polite move took a live lease: {other:?}")),
    }
    let lb = o
        .move_volume(&v.id, c.b_node(), MovePolicy::Preempt)
        .await
        .map_err(e2s)?;
    ensure!(lb.epoch > la.epoch, "epoch did not advance");
    ensure!(
        c.listed(&v.id).await?.attached_to.as_ref() == Some(c.b_node()),
        "not on b"
    );
    ensure!(
        o.device(&v.id, c.a()).await.is_err(),
        "old holder still has a device"
    );
    o.device(&v.id, c.b_node()).await.map_err(e2s)?;
    match c.b.attach(&v.id, c.a(), la.epoch).await {
        Err(Error::StaleEpoch { .. } | Error::AttachedElsewhere { .. }) => {}
        other => return Err(format!("fenced node could act: {other:?}")),
    }
    ensure!(
        o.pending().await.map_err(e2s)?.is_empty(),
        "journal not empty"
    );
    Ok(())
}

async fn move_crash_at_every_step(c: Ctx) -> Outcome {
    for (i, point) in CRASH_POINTS.iter().enumerate() {
        let store = c.store.clone();
        let v = c.create(&format!("crash-{i}")).await?;
        let first = Orchestrator::new(c.b.clone(), store.clone());
        first
            .move_volume(&v.id, c.a(), MovePolicy::Polite)
            .await
            .map_err(e2s)?;
        let crashing =
            Orchestrator::new(c.b.clone(), store.clone()).with_hook(Arc::new(CrashAt::new(point)));
        match crashing
            .move_volume(&v.id, c.b_node(), MovePolicy::Preempt)
            .await
        {
            Err(Error::InjectedCrash { .. }) => {}
            other => {
                return Err(format!(
                    "{point}: expected the injected crash, got {other:?}"
                ));
            }
        }
        let after = c.get(&v.id).await?.ok_or(format!("{point}: volume lost"))?;
        ensure!(
            after.attached_to.is_none()
                || after.attached_to.as_ref() == Some(c.a())
                || after.attached_to.as_ref() == Some(c.b_node()),
            "{point}: attached to a stranger"
        );
        let pending = crashing.pending().await.map_err(e2s)?;
        ensure!(
            pending.len() == 1,
            "{point}: {} pending records",
            pending.len()
        );
        let restarted = Orchestrator::new(c.b.clone(), store);
        ensure!(
            restarted.recover().await.map_err(e2s)? == 1,
            "{point}: nothing recovered"
        );
        let v2 = c.get(&v.id).await?.ok_or(format!("{point}: volume lost"))?;
        ensure!(
            v2.attached_to.as_ref() == Some(c.b_node()),
            "{point}: after recovery on {:?}",
            v2.attached_to
        );
        let lease = restarted.lease(&v.id).await.map_err(e2s)?;
        ensure!(
            lease.is_some_and(|l| &l.holder == c.b_node()),
            "{point}: lease not with b"
        );
        restarted.device(&v.id, c.b_node()).await.map_err(e2s)?;
        ensure!(
            restarted.pending().await.map_err(e2s)?.is_empty(),
            "{point}: journal not empty"
        );
        ensure!(
            pending[0].step <= MoveStep::Leased,
            "{point}: impossible step"
        );
    }
    Ok(())
}

async fn move_converges_with_lagging_listing(c: Ctx) -> Outcome {
    let lagging: Arc<dyn Backend> = Arc::new(LaggingListing::new(c.b.clone(), 2));
    let o = Orchestrator::new(lagging, c.store.clone());
    let d = |name: &str, state| Desired {
        spec: c.spec(name, 1),
        state,
    };
    let first = [
        d("conv-1", DesiredState::AttachedTo(c.a().clone())),
        d("conv-2", DesiredState::Detached),
        d("conv-3", DesiredState::AttachedTo(c.b_node().clone())),
    ];
    o.converge(&first, 20, 3).await.map_err(e2s)?;
    check_converged(&c.b, &first).await?;
    let second = [
        d("conv-1", DesiredState::AttachedTo(c.b_node().clone())),
        d("conv-2", DesiredState::Absent),
        d("conv-3", DesiredState::Detached),
    ];
    o.converge(&second, 20, 3).await.map_err(e2s)?;
    check_converged(&c.b, &second).await
}

/// Checks the backend's real (not lagging) state against a desired state: every desired volume
/// in its state, no name twice.
async fn check_converged(b: &Arc<dyn Backend>, desired: &[Desired]) -> Outcome {
    let all = b.list().await.map_err(e2s)?;
    for d in desired {
        let found: Vec<&Volume> = all
            .iter()
            .filter(|v| v.name == d.spec.name && v.pool == d.spec.pool)
            .collect();
        ensure!(
            found.len() <= 1,
            "{} volumes named {}",
            found.len(),
            d.spec.name
        );
        let ok = match (&d.state, found.first()) {
            (DesiredState::Absent, None) => true,
            (DesiredState::Detached, Some(v)) => v.attached_to.is_none(),
            (DesiredState::AttachedTo(n), Some(v)) => v.attached_to.as_ref() == Some(n),
            _ => false,
        };
        ensure!(
            ok,
            "{} is not {:?}: {:?}",
            d.spec.name,
            d.state,
            found.first()
        );
    }
    Ok(())
}

/// The convergence property: from an empty backend, converge to a random desired state, then to
/// another, each within 20 iterations, over a backend whose listing lags two calls (Flocker's
/// `test_simple_transitions` with `EventuallyConsistentBlockDeviceAPI`). Runs `cases` random
/// cases, each on a fresh backend, on its own runtime. Call it from a plain `#[test]`.
pub fn convergence_property(factory: &dyn Factory, cases: u32) -> std::result::Result<(), String> {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let nodes = factory.nodes();
    let pool = factory.pool();
    let state = prop_oneof![
        Just(None),
        Just(Some(None)),
        (0..nodes.len()).prop_map(|i| Some(Some(i))),
    ];
    let desired = proptest::collection::vec(state, 1..=4);
    let strategy = (desired.clone(), desired);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let to_desired = |states: &Vec<Option<Option<usize>>>| -> Vec<Desired> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| Desired {
                spec: VolumeSpec::new(
                    VolumeName::new(format!("prop-{i}")).expect("valid name"),
                    pool.clone(),
                    1,
                ),
                state: match s {
                    None => DesiredState::Absent,
                    Some(None) => DesiredState::Detached,
                    Some(Some(n)) => DesiredState::AttachedTo(nodes[*n].clone()),
                },
            })
            .collect()
    };
    runner
        .run(&strategy, |(first, second)| {
            rt.block_on(async {
                let b = factory
                    .backend()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let lagging: Arc<dyn Backend> = Arc::new(LaggingListing::new(b.clone(), 2));
                let o = Orchestrator::new(lagging, Arc::new(MemoryStore::default()));
                let mut result = Ok(());
                for d in [to_desired(&first), to_desired(&second)] {
                    let r = o
                        .converge(&d, 20, 3)
                        .await
                        .map_err(|e| e.to_string())
                        .and(check_converged(&b, &d).await);
                    if let Err(e) = r {
                        result = Err(TestCaseError::fail(e));
                        break;
                    }
                }
                factory.teardown(b).await;
                result
            })
        })
        .map_err(|e| e.to_string())
}
