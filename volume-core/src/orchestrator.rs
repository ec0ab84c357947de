//! The mobility orchestrator: journaled moves with leases and fencing epochs, crash recovery,
//! and the desired-state convergence loop.
//!
//! A move is one journaled operation, a saga whose every step is idempotent:
//!
//! 0. **validation**, which writes nothing: the target node is known to the backend
//!    ([`Backend::check_node`]), the volume exists, and its lease allows the move
//!    ([`decide_move`]); a refused move returns a typed error ([`Error::UnknownNode`],
//!    [`Error::UnknownVolume`], [`Error::LeaseHeld`], [`Error::Busy`]) and leaves the journal and
//!    the backend untouched;
//! 1. **intent**: the record `{op, volume, to, epoch}` is written (compare-and-swap: one pending
//!    operation per volume) *before* any backend call;
//! 2. **fence and detach**: one backend call at the move's epoch, which the backend records so
//!    that the old holder's calls are refused from then on: `detach` when the volume is on
//!    another node, `fence` when it is not;
//! 3. **attach** to the new node;
//! 4. **lease**: the new node gets a lease `{holder, epoch, expires}`;
//! 5. the record is removed.
//!
//! A move is three backend calls (read, fence-and-detach, attach), so two reconfigurations
//! on a hypervisor.
//!
//! After each step the record's step is updated. A crash (even `kill -9`) at any point leaves a
//! record; [`Orchestrator::recover`] rolls every pending move forward from its recorded step, and
//! since each backend call is idempotent, a step that ran but was not recorded runs again
//! harmlessly. The backend refuses to attach a volume that is attached elsewhere, and the saga
//! detaches before it attaches, so a volume is never attached to two nodes.
//!
//! Leases: a node may use a volume ([`Orchestrator::device`]) only while it holds a live lease
//! with the volume's current epoch; a lapsed or superseded lease is refused. A polite move
//! ([`MovePolicy::Polite`], what a node agent such as the Docker plugin asks for) refuses to take
//! a volume whose holder has a live lease and is not known to be dead ([`NodeLiveness`]); a
//! preempting move ([`MovePolicy::Preempt`], what the desired-state loop does on the operator's
//! behalf) takes it. Both fence the old holder no later than they detach it.
//!
//! The decisions ([`decide_move`], [`plan`]) are plain functions; the IO is in [`Orchestrator`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::journal::{Store, Table};
use crate::model::{Device, Epoch, NodeId, Volume, VolumeId, VolumeSpec};

/// A clock in milliseconds since the Unix epoch (injectable for tests).
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Advances the clock.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What is known about a node's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Running.
    Alive,
    /// Confirmed dead or fenced off (powered off, deleted): its lease may be broken.
    Dead,
    /// Missed its heartbeats but not fenced yet: treated as alive (a slow node is not a dead
    /// one); only fencing it ([`crate::liveness::Heartbeats::fence`]) makes it `Dead`.
    Suspect,
    /// Not known: treated as alive.
    Unknown,
}

/// Tells whether a node is alive (Flocker's `ICloudAPI.list_live_nodes`, the vSphere power
/// state, a local pid).
#[async_trait]
pub trait NodeLiveness: Send + Sync + Debug {
    /// The node's liveness.
    async fn liveness(&self, node: &NodeId) -> Liveness;
}

/// A liveness source that knows nothing: every node is `Unknown`, so only a lapsed or released
/// lease lets a polite move take a volume.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLiveness;

#[async_trait]
impl NodeLiveness for NoLiveness {
    async fn liveness(&self, _node: &NodeId) -> Liveness {
        Liveness::Unknown
    }
}

/// A liveness source with an explicit set of dead nodes (tests, operators).
#[derive(Debug, Default)]
pub struct DeadNodes(Mutex<Vec<NodeId>>);

impl DeadNodes {
    /// Declares a node dead.
    pub fn declare_dead(&self, node: NodeId) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(node);
    }
}

#[async_trait]
impl NodeLiveness for DeadNodes {
    async fn liveness(&self, node: &NodeId) -> Liveness {
        if self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(node)
        {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }
}

/// A node's right to use a volume, with the fencing epoch it acts under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The volume.
    pub volume: VolumeId,
    /// The node holding it.
    pub holder: NodeId,
    /// The epoch the holder acts under.
    pub epoch: Epoch,
    /// When it lapses, in ms since the Unix epoch.
    pub expires_ms: u64,
    /// Whether the holder gave it up.
    pub released: bool,
}

impl Lease {
    /// Whether the lease still binds others at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.released && now_ms < self.expires_ms
    }
}

/// The steps of a move, in order. The journal records the last step completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MoveStep {
    /// The intent is recorded; nothing else done.
    Intent,
    /// The volume is fenced at the move's epoch and detached from the old node.
    Detached,
    /// The volume is attached to the new node.
    Attached,
    /// The new node holds the lease.
    Leased,
}

/// A pending move, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// A unique id of the operation.
    pub op: String,
    /// The volume.
    pub volume: VolumeId,
    /// The node it was on when the move began.
    pub from: Option<NodeId>,
    /// The node it moves to.
    pub to: NodeId,
    /// The epoch the move acts under.
    pub epoch: Epoch,
    /// The last step completed.
    pub step: MoveStep,
}

/// Every point at which a move can be interrupted, in order, for crash injection: `after-*`
/// points follow the journal update of a step, `unjournaled-*` points follow a backend call
/// whose step is not yet journaled.
pub const CRASH_POINTS: &[&str] = &[
    "after-intent",
    "unjournaled-detach",
    "after-detach",
    "unjournaled-attach",
    "after-attach",
    "unjournaled-lease",
    "after-lease",
];

/// Called at every [`CRASH_POINTS`] point of a move; an error aborts the move there, as a crash
/// would (the journal keeps the record).
pub trait StepHook: Send + Sync + Debug {
    /// The move reached `point`.
    fn reached(&self, record: &MoveRecord, point: &'static str) -> Result<()>;
}

/// A hook that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

impl StepHook for NoHook {
    fn reached(&self, _record: &MoveRecord, _point: &'static str) -> Result<()> {
        Ok(())
    }
}

/// A hook that fails once at one point: in-process crash injection.
#[derive(Debug)]
pub struct CrashAt {
    point: &'static str,
    fired: Mutex<bool>,
}

impl CrashAt {
    /// Crashes the first move that reaches `point`.
    pub fn new(point: &'static str) -> Self {
        Self {
            point,
            fired: Mutex::new(false),
        }
    }
}

impl StepHook for CrashAt {
    fn reached(&self, _record: &MoveRecord, point: &'static str) -> Result<()> {
        let mut fired = self
            .fired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if point == self.point && !*fired {
            *fired = true;
            return Err(Error::InjectedCrash { step: point });
        }
        Ok(())
    }
}

/// Whether a move may take a volume from a node that holds a live lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MovePolicy {
    /// Refuse with [`Error::LeaseHeld`] unless the holder's lease lapsed or was released, or the
    /// holder is dead.
    Polite,
    /// Fence the holder and take the volume (the operator's desired state says so).
    Preempt,
}

/// What a move must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveDecision {
    /// The volume is on the node with a live lease at the volume's epoch: nothing to do.
    AlreadyThere,
    /// Run the saga at this epoch.
    Proceed {
        /// The new epoch.
        epoch: Epoch,
    },
}

/// Decides a move of `volume` to `to` given its lease, the time and the holder's liveness.
///
/// ```
/// use volume_core::orchestrator::{decide_move, Liveness, MoveDecision, MovePolicy};
/// use volume_core::backend::rules;
/// use volume_core::{Allocation, Epoch, NodeId, PoolId, VolumeName, VolumeSpec};
///
/// let spec = VolumeSpec::new(VolumeName::new("db").unwrap(), PoolId::new("p").unwrap(), 1);
/// let v = rules::new_volume(&spec, Allocation::new(1, 1).unwrap()).unwrap();
/// let to = NodeId::new("b").unwrap();
/// let d = decide_move(&v, None, &to, 0, Liveness::Unknown, MovePolicy::Polite).unwrap();
/// assert_eq!(d, MoveDecision::Proceed { epoch: Epoch(1) });
/// ```
pub fn decide_move(
    volume: &Volume,
    lease: Option<&Lease>,
    to: &NodeId,
    now_ms: u64,
    holder_liveness: Liveness,
    policy: MovePolicy,
) -> Result<MoveDecision> {
    let lease_epoch = lease.map_or(Epoch::ZERO, |l| l.epoch);
    if volume.attached_to.as_ref() == Some(to)
        && lease.is_some_and(|l| &l.holder == to && l.is_live(now_ms) && l.epoch >= volume.epoch)
    {
        return Ok(MoveDecision::AlreadyThere);
    }
    if let Some(l) = lease
        && &l.holder != to
        && l.is_live(now_ms)
        && holder_liveness != Liveness::Dead
        && policy == MovePolicy::Polite
    {
        return Err(Error::LeaseHeld {
            id: volume.id.clone(),
            holder: l.holder.clone(),
            epoch: l.epoch,
        });
    }
    Ok(MoveDecision::Proceed {
        epoch: volume.epoch.max(lease_epoch).next(),
    })
}

/// The state a volume should be in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesiredState {
    /// Destroyed.
    Absent,
    /// Existing, attached nowhere.
    Detached,
    /// Existing, attached to this node.
    AttachedTo(NodeId),
}

/// One volume's desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// The spec (its pool and name identify the volume).
    pub spec: VolumeSpec,
    /// The state.
    pub state: DesiredState,
}

/// One step towards the desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create (idempotent by name).
    Create(VolumeSpec),
    /// Destroy a detached volume.
    Destroy(VolumeId),
    /// Detach (fencing first).
    Detach(VolumeId),
    /// Move to a node (journaled).
    Move(VolumeId, NodeId),
}

/// Plans one round of actions from the desired state and an observed listing. Volumes that are
/// not in the desired state are left alone: the loop never destroys what it was not told about.
pub fn plan(desired: &[Desired], observed: &[Volume]) -> Vec<Action> {
    let mut out = Vec::new();
    for d in desired {
        let found = observed
            .iter()
            .find(|v| v.name == d.spec.name && v.pool == d.spec.pool);
        match (&d.state, found) {
            (DesiredState::Absent, None) => {}
            (DesiredState::Absent, Some(v)) if v.attached_to.is_some() => {
                out.push(Action::Detach(v.id.clone()));
            }
            (DesiredState::Absent, Some(v)) => out.push(Action::Destroy(v.id.clone())),
            (_, None) => out.push(Action::Create(d.spec.clone())),
            (DesiredState::Detached, Some(v)) => {
                if v.attached_to.is_some() {
                    out.push(Action::Detach(v.id.clone()));
                }
            }
            (DesiredState::AttachedTo(n), Some(v)) => {
                if v.attached_to.as_ref() != Some(n) {
                    out.push(Action::Move(v.id.clone(), n.clone()));
                }
            }
        }
    }
    out
}

/// The result of a convergence run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Convergence {
    /// Iterations run.
    pub iterations: u32,
    /// Actions executed.
    pub actions: usize,
    /// Actions that failed (and were retried in later iterations).
    pub failures: usize,
}

/// The orchestrator. See the [module documentation](self).
#[derive(Debug)]
pub struct Orchestrator {
    backend: Arc<dyn Backend>,
    store: Arc<dyn Store>,
    liveness: Arc<dyn NodeLiveness>,
    clock: Arc<dyn Clock>,
    hook: Arc<dyn StepHook>,
    lease_ttl: Duration,
    locks: Mutex<HashMap<VolumeId, Arc<tokio::sync::Mutex<()>>>>,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Corrupt {
        what: "journal record".to_owned(),
        reason: e.to_string(),
    })
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

impl Orchestrator {
    /// An orchestrator over a backend and a store, with no liveness source, the system clock,
    /// no hook and a 30 s lease.
    pub fn new(backend: Arc<dyn Backend>, store: Arc<dyn Store>) -> Self {
        Self {
            backend,
            store,
            liveness: Arc::new(NoLiveness),
            clock: Arc::new(SystemClock),
            hook: Arc::new(NoHook),
            lease_ttl: Duration::from_secs(30),
            locks: Mutex::default(),
        }
    }

    /// Sets the liveness source.
    #[must_use]
    pub fn with_liveness(mut self, l: Arc<dyn NodeLiveness>) -> Self {
        self.liveness = l;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Sets the step hook (crash injection).
    #[must_use]
    pub fn with_hook(mut self, h: Arc<dyn StepHook>) -> Self {
        self.hook = h;
        self
    }

    /// Sets the lease time to live.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The store (journal, leases, desired state).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Records one volume's desired state in the store (keyed by pool and name).
    pub async fn set_desired(&self, d: &Desired) -> Result<()> {
        let key = format!("{}\u{0}{}", d.spec.pool, d.spec.name);
        self.store
            .put(Table::Desired, &key, Some(&encode(d)?))
            .await
    }

    /// The desired state recorded in the store.
    pub async fn desired(&self) -> Result<Vec<Desired>> {
        self.store
            .list(Table::Desired)
            .await?
            .into_iter()
            .map(|(_, b)| decode("desired state", &b))
            .collect()
    }

    /// Converges to the desired state recorded in the store (see [`Orchestrator::converge`]).
    pub async fn converge_recorded(
        &self,
        max_iterations: u32,
        confirmations: u32,
    ) -> Result<Convergence> {
        let desired = self.desired().await?;
        self.converge(&desired, max_iterations, confirmations).await
    }

    fn lock_of(&self, id: &VolumeId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .clone()
    }

    /// The lease of a volume, if any.
    pub async fn lease(&self, id: &VolumeId) -> Result<Option<Lease>> {
        self.store
            .get(Table::Leases, id.as_str())
            .await?
            .map(|b| decode("lease", &b))
            .transpose()
    }

    /// The moves that are journaled and not finished.
    pub async fn pending(&self) -> Result<Vec<MoveRecord>> {
        self.store
            .list(Table::Operations)
            .await?
            .into_iter()
            .map(|(_, b)| decode("move record", &b))
            .collect()
    }

    /// Moves a volume to a node, as one journaled operation; see the module documentation.
    /// Returns the lease the node now holds.
    pub async fn move_volume(
        &self,
        id: &VolumeId,
        to: &NodeId,
        policy: MovePolicy,
    ) -> Result<Lease> {
        let lock = self.lock_of(id);
        let _g = lock.lock().await;
        if let Some(b) = self.store.get(Table::Operations, id.as_str()).await? {
            let rec: MoveRecord = decode("move record", &b)?;
            if &rec.to != to {
                return Err(Error::Busy { id: id.clone() });
            }
            return self.run(rec, None).await;
        }
        // Validation first: a move the backend cannot finish is refused before anything is
        // written (no epoch handed out, no intent journaled, no backend call that changes
        // state), so the volume stays usable where it is.
        self.backend.check_node(to).await?;
        let volume = self
            .backend
            .get(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        let lease = self.lease(id).await?;
        let holder_liveness = match &lease {
            Some(l) => self.liveness.liveness(&l.holder).await,
            None => Liveness::Unknown,
        };
        let now = self.clock.now_ms();
        let epoch = match decide_move(&volume, lease.as_ref(), to, now, holder_liveness, policy)? {
            MoveDecision::AlreadyThere => {
                return lease.ok_or_else(|| Error::Corrupt {
                    what: format!("lease of {id}"),
                    reason: "missing".to_owned(),
                });
            }
            MoveDecision::Proceed { epoch } => self.allocate_epoch(id, epoch).await?,
        };
        let rec = MoveRecord {
            op: format!("move-{}", VolumeId::generate()),
            volume: id.clone(),
            from: volume.attached_to.clone(),
            to: to.clone(),
            epoch,
            step: MoveStep::Intent,
        };
        if !self
            .store
            .cas(Table::Operations, id.as_str(), None, Some(&encode(&rec)?))
            .await?
        {
            return Err(Error::Busy { id: id.clone() });
        }
        self.hook.reached(&rec, "after-intent")?;
        self.run(rec, Some(volume)).await
    }

    /// Hands out a fencing epoch of at least `min` that no other operation on the volume has
    /// had or will get (a compare-and-swap on the store's counter), so two movers never share
    /// an epoch even when they read the same stale state.
    async fn allocate_epoch(&self, id: &VolumeId, min: Epoch) -> Result<Epoch> {
        loop {
            let cur = self.store.get(Table::Epochs, id.as_str()).await?;
            let last = match &cur {
                Some(b) => decode::<Epoch>("epoch counter", b)?,
                None => Epoch::ZERO,
            };
            let next = last.next().max(min);
            if self
                .store
                .cas(
                    Table::Epochs,
                    id.as_str(),
                    cur.as_deref(),
                    Some(&encode(&next)?),
                )
                .await?
            {
                return Ok(next);
            }
        }
    }

    async fn advance(&self, rec: &mut MoveRecord, step: MoveStep) -> Result<()> {
        let old = encode(&*rec)?;
        rec.step = step;
        if !self
            .store
            .cas(
                Table::Operations,
                rec.volume.as_str(),
                Some(&old),
                Some(&encode(&*rec)?),
            )
            .await?
        {
            return Err(Error::Busy {
                id: rec.volume.clone(),
            });
        }
        Ok(())
    }

    /// Runs a journaled move forward from its recorded step. A move that can never finish
    /// (its volume is gone, a newer epoch superseded it, or its target node vanished after the
    /// validation) is removed from the journal.
    async fn run(&self, rec: MoveRecord, seen: Option<Volume>) -> Result<Lease> {
        let key = rec.volume.clone();
        match self.run_steps(rec, seen).await {
            Err(
                e @ (Error::UnknownVolume { .. }
                | Error::StaleEpoch { .. }
                | Error::UnknownNode { .. }),
            ) => {
                self.store
                    .put(Table::Operations, key.as_str(), None)
                    .await?;
                Err(e)
            }
            r => r,
        }
    }

    async fn run_steps(&self, mut rec: MoveRecord, seen: Option<Volume>) -> Result<Lease> {
        let id = rec.volume.clone();
        if rec.step < MoveStep::Detached {
            // One backend call fences the old holder: a detach at the move's epoch when the
            // volume is on another node (it raises the epoch as it detaches), else a fence.
            // Never a detach from the target: after a crash past the attach, rolling forward
            // must not take the volume away again. A fresh move reuses the state it decided on;
            // a recovered one reads it again.
            let current = match seen {
                Some(v) => Some(v),
                None => self.backend.get(&id).await?,
            };
            let elsewhere = current.as_ref().is_some_and(|v| {
                v.attached_to.is_some() && v.attached_to.as_ref() != Some(&rec.to)
            });
            if elsewhere {
                self.backend.detach(&id, rec.epoch).await?;
            } else {
                self.backend.fence(&id, rec.epoch).await?;
            }
            self.hook.reached(&rec, "unjournaled-detach")?;
            self.advance(&mut rec, MoveStep::Detached).await?;
            self.hook.reached(&rec, "after-detach")?;
        }
        if rec.step < MoveStep::Attached {
            self.backend.attach(&id, &rec.to, rec.epoch).await?;
            self.hook.reached(&rec, "unjournaled-attach")?;
            self.advance(&mut rec, MoveStep::Attached).await?;
            self.hook.reached(&rec, "after-attach")?;
        }
        let lease = Lease {
            volume: id.clone(),
            holder: rec.to.clone(),
            epoch: rec.epoch,
            expires_ms: self
                .clock
                .now_ms()
                .saturating_add(self.lease_ttl.as_millis() as u64),
            released: false,
        };
        if rec.step < MoveStep::Leased {
            self.store
                .put(Table::Leases, id.as_str(), Some(&encode(&lease)?))
                .await?;
            self.hook.reached(&rec, "unjournaled-lease")?;
            self.advance(&mut rec, MoveStep::Leased).await?;
            self.hook.reached(&rec, "after-lease")?;
        }
        self.store
            .cas(Table::Operations, id.as_str(), Some(&encode(&rec)?), None)
            .await?;
        Ok(self.lease(&id).await?.unwrap_or(lease))
    }

    /// Rolls every pending move forward (after a crash). Returns how many were finished.
    pub async fn recover(&self) -> Result<usize> {
        let pending = self.pending().await?;
        let n = pending.len();
        for rec in pending {
            let lock = self.lock_of(&rec.volume);
            let _g = lock.lock().await;
            // The record may have finished meanwhile; read it again under the lock.
            if let Some(b) = self
                .store
                .get(Table::Operations, rec.volume.as_str())
                .await?
            {
                let rec: MoveRecord = decode("move record", &b)?;
                match self.run(rec, None).await {
                    Ok(_)
                    | Err(
                        Error::UnknownVolume { .. }
                        | Error::StaleEpoch { .. }
                        | Error::UnknownNode { .. },
                    ) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }

    /// Detaches a volume from its node, fencing first; a detached or missing volume is success.
    /// With [`MovePolicy::Polite`], a live lease of a live holder refuses.
    pub async fn detach(&self, id: &VolumeId, policy: MovePolicy) -> Result<()> {
        let lock = self.lock_of(id);
        let _g = lock.lock().await;
        if self
            .store
            .get(Table::Operations, id.as_str())
            .await?
            .is_some()
        {
            return Err(Error::Busy { id: id.clone() });
        }
        let Some(volume) = self.backend.get(id).await? else {
            return Ok(());
        };
        let lease = self.lease(id).await?;
        if volume.attached_to.is_none() {
            return Ok(());
        }
        if let Some(l) = &lease
            && policy == MovePolicy::Polite
            && l.is_live(self.clock.now_ms())
            && self.liveness.liveness(&l.holder).await != Liveness::Dead
        {
            return Err(Error::LeaseHeld {
                id: id.clone(),
                holder: l.holder.clone(),
                epoch: l.epoch,
            });
        }
        let floor = volume
            .epoch
            .max(lease.as_ref().map_or(Epoch::ZERO, |l| l.epoch))
            .next();
        let epoch = self.allocate_epoch(id, floor).await?;
        self.backend.fence(id, epoch).await?;
        self.backend.detach(id, epoch).await?;
        self.store.put(Table::Leases, id.as_str(), None).await
    }

    /// The holder gives its lease up (after unmounting), so a polite move may take the volume.
    /// Releasing a lease one does not hold is success.
    pub async fn release(&self, id: &VolumeId, node: &NodeId) -> Result<()> {
        if let Some(mut l) = self.lease(id).await?
            && &l.holder == node
            && !l.released
        {
            l.released = true;
            self.store
                .put(Table::Leases, id.as_str(), Some(&encode(&l)?))
                .await?;
        }
        Ok(())
    }

    /// Extends a live lease held by `node` at `epoch`; a lapsed or superseded lease is refused
    /// with [`Error::LeaseLapsed`].
    pub async fn renew(&self, id: &VolumeId, node: &NodeId, epoch: Epoch) -> Result<Lease> {
        let now = self.clock.now_ms();
        match self.lease(id).await? {
            Some(mut l) if &l.holder == node && l.epoch == epoch && l.is_live(now) => {
                l.expires_ms = now.saturating_add(self.lease_ttl.as_millis() as u64);
                self.store
                    .put(Table::Leases, id.as_str(), Some(&encode(&l)?))
                    .await?;
                Ok(l)
            }
            _ => Err(Error::LeaseLapsed {
                id: id.clone(),
                node: node.clone(),
            }),
        }
    }

    /// Where `node` may use the volume: only with a live lease at the volume's current epoch.
    pub async fn device(&self, id: &VolumeId, node: &NodeId) -> Result<Device> {
        let now = self.clock.now_ms();
        let volume = self
            .backend
            .get(id)
            .await?
            .ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
        match self.lease(id).await? {
            Some(l) if &l.holder == node && l.is_live(now) && l.epoch >= volume.epoch => {
                self.backend.device(id, node).await
            }
            _ => Err(Error::LeaseLapsed {
                id: id.clone(),
                node: node.clone(),
            }),
        }
    }

    /// Destroys a volume (detaching it first, with `policy`); a missing volume is success.
    pub async fn destroy(&self, id: &VolumeId, policy: MovePolicy) -> Result<()> {
        self.detach(id, policy).await?;
        self.backend.destroy(id).await?;
        self.store.put(Table::Leases, id.as_str(), None).await
    }

    /// Runs the convergence loop: observe, plan, act, until `confirmations` consecutive
    /// observations need no action, or `max_iterations` pass ([`Error::DidNotConverge`]).
    /// Failed actions are counted and retried in later iterations (the observation may lag).
    pub async fn converge(
        &self,
        desired: &[Desired],
        max_iterations: u32,
        confirmations: u32,
    ) -> Result<Convergence> {
        self.recover().await?;
        let mut report = Convergence {
            iterations: 0,
            actions: 0,
            failures: 0,
        };
        let mut quiet = 0;
        let mut last = 0;
        while report.iterations < max_iterations {
            report.iterations += 1;
            let observed = self.backend.list().await?;
            let actions = plan(desired, &observed);
            last = actions.len();
            if actions.is_empty() {
                quiet += 1;
                if quiet >= confirmations.max(1) {
                    return Ok(report);
                }
                continue;
            }
            quiet = 0;
            for a in actions {
                report.actions += 1;
                let r = match &a {
                    Action::Create(spec) => self.backend.create(spec).await.map(drop),
                    Action::Destroy(id) => self.destroy(id, MovePolicy::Preempt).await,
                    Action::Detach(id) => self.detach(id, MovePolicy::Preempt).await,
                    Action::Move(id, n) => {
                        self.move_volume(id, n, MovePolicy::Preempt).await.map(drop)
                    }
                };
                if r.is_err() {
                    report.failures += 1;
                }
            }
        }
        Err(Error::DidNotConverge {
            iterations: report.iterations,
            remaining: last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::rules;
    use crate::journal::MemoryStore;
    use crate::model::{Allocation, PoolId, VolumeName};

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn vol() -> Volume {
        let spec = VolumeSpec::new(VolumeName::new("v").unwrap(), PoolId::new("p").unwrap(), 1);
        rules::new_volume(&spec, Allocation::new(1, 1).unwrap()).unwrap()
    }

    #[test]
    fn polite_moves_respect_live_leases_of_live_holders() {
        let mut v = vol();
        rules::apply_attach(&mut v, &node("a"), Epoch(3));
        let lease = Lease {
            volume: v.id.clone(),
            holder: node("a"),
            epoch: Epoch(3),
            expires_ms: 100,
            released: false,
        };
        let b = node("b");
        let held = decide_move(
            &v,
            Some(&lease),
            &b,
            50,
            Liveness::Alive,
            MovePolicy::Polite,
        );
        assert!(matches!(held, Err(Error::LeaseHeld { .. })));
        for (now, live, policy) in [
            (100, Liveness::Alive, MovePolicy::Polite),
            (50, Liveness::Dead, MovePolicy::Polite),
            (50, Liveness::Alive, MovePolicy::Preempt),
        ] {
            assert_eq!(
                decide_move(&v, Some(&lease), &b, now, live, policy).unwrap(),
                MoveDecision::Proceed { epoch: Epoch(4) }
            );
        }
        assert_eq!(
            decide_move(
                &v,
                Some(&lease),
                &node("a"),
                50,
                Liveness::Alive,
                MovePolicy::Polite
            )
            .unwrap(),
            MoveDecision::AlreadyThere
        );
    }

    #[test]
    fn plan_covers_every_state_pair() {
        let mut v = vol();
        let (name, pool) = (v.name.clone(), v.pool.clone());
        let d = |state| Desired {
            spec: VolumeSpec::new(name.clone(), pool.clone(), 1),
            state,
        };
        assert!(matches!(
            plan(&[d(DesiredState::Detached)], &[])[..],
            [Action::Create(_)]
        ));
        assert!(plan(&[d(DesiredState::Absent)], &[]).is_empty());
        assert!(plan(&[d(DesiredState::Detached)], &[v.clone()]).is_empty());
        assert!(matches!(
            plan(&[d(DesiredState::Absent)], &[v.clone()])[..],
            [Action::Destroy(_)]
        ));
        assert!(matches!(
            plan(&[d(DesiredState::AttachedTo(node("a")))], &[v.clone()])[..],
            [Action::Move(_, _)]
        ));
        rules::apply_attach(&mut v, &node("a"), Epoch::ZERO);
        assert!(plan(&[d(DesiredState::AttachedTo(node("a")))], &[v.clone()]).is_empty());
        assert!(matches!(
            plan(&[d(DesiredState::Absent)], &[v.clone()])[..],
            [Action::Detach(_)]
        ));
        assert!(plan(&[], &[v]).is_empty(), "unknown volumes are left alone");
    }

    #[tokio::test]
    async fn recorded_desired_state_survives_and_converges() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> =
            Arc::new(MemoryBackend::builder().pool("p", 1 << 30).build());
        let spec = VolumeSpec::new(VolumeName::new("v").unwrap(), PoolId::new("p").unwrap(), 1);
        {
            let store = Arc::new(crate::journal::RedbStore::open(dir.path().join("j")).unwrap());
            let o = Orchestrator::new(backend.clone(), store);
            o.set_desired(&Desired {
                spec: spec.clone(),
                state: DesiredState::AttachedTo(node("a")),
            })
            .await
            .unwrap();
        }
        let store = Arc::new(crate::journal::RedbStore::open(dir.path().join("j")).unwrap());
        let o = Orchestrator::new(backend.clone(), store);
        assert_eq!(o.desired().await.unwrap().len(), 1);
        o.converge_recorded(10, 1).await.unwrap();
        let all = backend.list().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].attached_to, Some(node("a")));
    }

    #[tokio::test]
    async fn lapsed_leases_cannot_use_the_volume() {
        let backend: Arc<dyn Backend> =
            Arc::new(MemoryBackend::builder().pool("p", 1 << 30).build());
        let clock = Arc::new(ManualClock::default());
        let o = Orchestrator::new(backend.clone(), Arc::new(MemoryStore::default()))
            .with_clock(clock.clone())
            .with_lease_ttl(Duration::from_secs(10));
        let v = backend
            .create(&VolumeSpec::new(
                VolumeName::new("v").unwrap(),
                PoolId::new("p").unwrap(),
                1,
            ))
            .await
            .unwrap();
        let lease = o
            .move_volume(&v.id, &node("a"), MovePolicy::Polite)
            .await
            .unwrap();
        assert!(o.device(&v.id, &node("a")).await.is_ok());
        assert!(matches!(
            o.move_volume(&v.id, &node("b"), MovePolicy::Polite).await,
            Err(Error::LeaseHeld { .. })
        ));
        clock.advance(Duration::from_secs(11));
        assert!(matches!(
            o.device(&v.id, &node("a")).await,
            Err(Error::LeaseLapsed { .. })
        ));
        assert!(o.renew(&v.id, &node("a"), lease.epoch).await.is_err());
        let b = o
            .move_volume(&v.id, &node("b"), MovePolicy::Polite)
            .await
            .unwrap();
        assert!(b.epoch > lease.epoch);
        // The old holder is fenced at the backend too.
        assert!(matches!(
            backend.attach(&v.id, &node("a"), lease.epoch).await,
            Err(Error::StaleEpoch { .. })
        ));
    }
}
