//! Node liveness beyond an explicit dead-node list.
//!
//! [`Heartbeats`]: every node agent joins once (it gets a **node epoch**) and then beats
//! ([`Heartbeats::beat`]) more often than the TTL. A node whose last beat is older than the TTL
//! is only [`Liveness::Suspect`]: slow is not dead, and a suspect node is treated as alive, so
//! its volumes stay where they are while its leases are live. A supervisor that wants the
//! volumes back fences it ([`Heartbeats::fence`], refused with [`Error::NodeAlive`] while the
//! heartbeat has not lapsed): the node's epoch is bumped, the node is [`Liveness::Dead`] from
//! then on, and its old epoch is refused ([`Error::NodeFenced`]) if it wakes up and beats
//! again; it must [`Heartbeats::join`] anew. Only a `Dead` holder loses a live lease to a polite
//! move ([`crate::orchestrator::MovePolicy::Polite`]), so a slow but alive node is never
//! force-detached before its lease lapses.
//!
//! Every change is a compare-and-swap on the node's record in the journal store
//! ([`Table::Nodes`]): a beat and a fence that race cannot both win.
//!
//! With the feature `vsphere`, `backend::vsphere::VmLiveness` reads the node VM's
//! `runtime.powerState` and `runtime.connectionState` instead (a powered-off, orphaned,
//! disconnected or deleted VM is dead); [`vm_liveness`] is its decision.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use volume_core::journal::MemoryStore;
//! use volume_core::liveness::Heartbeats;
//! use volume_core::orchestrator::{Liveness, ManualClock, NodeLiveness};
//! use volume_core::NodeId;
//!
//! let clock = Arc::new(ManualClock::default());
//! let hb = Heartbeats::new(Arc::new(MemoryStore::default()), clock.clone(), Duration::from_secs(10));
//! let a = NodeId::new("a").unwrap();
//! let epoch = hb.join(&a).await.unwrap();
//! clock.advance(Duration::from_secs(11));
//! assert_eq!(hb.liveness(&a).await, Liveness::Suspect);
//! hb.fence(&a).await.unwrap();
//! assert_eq!(hb.liveness(&a).await, Liveness::Dead);
//! assert!(hb.beat(&a, epoch).await.is_err(), "the old epoch is fenced");
//! # });
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::journal::{Store, Table};
use crate::model::{Epoch, NodeId};
use crate::orchestrator::{Clock, Liveness, NodeLiveness};

/// A node's heartbeat record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBeat {
    /// The node.
    pub node: NodeId,
    /// The node's epoch: what it acts under; bumped when it is fenced and when it rejoins.
    pub epoch: Epoch,
    /// Its last beat, in ms since the Unix epoch.
    pub last_ms: u64,
    /// Whether it has been fenced (and not rejoined since).
    pub fenced: bool,
}

/// The liveness a heartbeat record says at `now_ms` with `ttl_ms`: no record is `Unknown`, a
/// fenced node `Dead`, a beat younger than the TTL `Alive`, an older one `Suspect`.
///
/// ```
/// use volume_core::liveness::{judge, NodeBeat};
/// use volume_core::orchestrator::Liveness;
/// use volume_core::{Epoch, NodeId};
/// let b = NodeBeat { node: NodeId::new("a").unwrap(), epoch: Epoch(1), last_ms: 1_000, fenced: false };
/// assert_eq!(judge(None, 5_000, 1_000), Liveness::Unknown);
/// assert_eq!(judge(Some(&b), 1_999, 1_000), Liveness::Alive);
/// assert_eq!(judge(Some(&b), 2_000, 1_000), Liveness::Suspect);
/// ```
pub fn judge(beat: Option<&NodeBeat>, now_ms: u64, ttl_ms: u64) -> Liveness {
    match beat {
        None => Liveness::Unknown,
        Some(b) if b.fenced => Liveness::Dead,
        Some(b) if now_ms.saturating_sub(b.last_ms) < ttl_ms => Liveness::Alive,
        Some(_) => Liveness::Suspect,
    }
}

/// What the vSphere state of a node VM says about it: powered off, or a connection state of
/// `orphaned`, `disconnected` or `inaccessible`, is `Dead` (the VM cannot be writing to a
/// disk); powered on and `connected` is `Alive`; anything else (suspended, an `invalid`
/// configuration, a state not read) is `Unknown`, which protects the VM's leases. A VM that no
/// longer exists is dead too, decided by the caller (`None, None` here is `Unknown`).
///
/// ```
/// use volume_core::liveness::vm_liveness;
/// use volume_core::orchestrator::Liveness;
/// assert_eq!(vm_liveness(Some("poweredOn"), Some("connected")), Liveness::Alive);
/// assert_eq!(vm_liveness(Some("poweredOff"), Some("connected")), Liveness::Dead);
/// assert_eq!(vm_liveness(Some("poweredOn"), Some("orphaned")), Liveness::Dead);
/// assert_eq!(vm_liveness(Some("suspended"), Some("connected")), Liveness::Unknown);
/// ```
pub fn vm_liveness(power_state: Option<&str>, connection_state: Option<&str>) -> Liveness {
    if matches!(
        connection_state,
        Some("orphaned" | "disconnected" | "inaccessible")
    ) || power_state == Some("poweredOff")
    {
        return Liveness::Dead;
    }
    match (power_state, connection_state) {
        (Some("poweredOn"), Some("connected")) => Liveness::Alive,
        _ => Liveness::Unknown,
    }
}

/// Heartbeat liveness over a journal [`Store`] (see the module documentation).
#[derive(Debug, Clone)]
pub struct Heartbeats {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
}

fn encode(b: &NodeBeat) -> Result<Vec<u8>> {
    serde_json::to_vec(b).map_err(|e| Error::Corrupt {
        what: format!("heartbeat of {}", b.node),
        reason: e.to_string(),
    })
}

fn decode(node: &NodeId, bytes: &[u8]) -> Result<NodeBeat> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        what: format!("heartbeat of {node}"),
        reason: e.to_string(),
    })
}

impl Heartbeats {
    /// Heartbeats kept in `store`, judged by `clock` with `ttl`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self { store, clock, ttl }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// The node's record, if it ever joined.
    pub async fn record(&self, node: &NodeId) -> Result<Option<NodeBeat>> {
        Ok(self.read(node).await?.map(|(b, _)| b))
    }

    async fn read(&self, node: &NodeId) -> Result<Option<(NodeBeat, Vec<u8>)>> {
        match self.store.get(Table::Nodes, node.as_str()).await? {
            Some(bytes) => Ok(Some((decode(node, &bytes)?, bytes))),
            None => Ok(None),
        }
    }

    /// Changes the node's record with `f` by compare-and-swap, retrying on a lost race; `f`
    /// sees the current record and returns the new one or an error.
    async fn update(
        &self,
        node: &NodeId,
        f: impl Fn(Option<&NodeBeat>, u64) -> Result<NodeBeat>,
    ) -> Result<NodeBeat> {
        loop {
            let current = self.read(node).await?;
            let next = f(current.as_ref().map(|(b, _)| b), self.clock.now_ms())?;
            let old = current.as_ref().map(|(_, bytes)| bytes.as_slice());
            if self
                .store
                .cas(Table::Nodes, node.as_str(), old, Some(&encode(&next)?))
                .await?
            {
                return Ok(next);
            }
        }
    }

    /// Joins (or rejoins after a fence): the node gets a new node epoch, above every epoch it
    /// had, and a fresh beat. The node acts under the returned epoch.
    pub async fn join(&self, node: &NodeId) -> Result<Epoch> {
        let b = self
            .update(node, |current, now| {
                Ok(NodeBeat {
                    node: node.clone(),
                    epoch: current.map_or(Epoch::ZERO, |b| b.epoch).next(),
                    last_ms: now,
                    fenced: false,
                })
            })
            .await?;
        Ok(b.epoch)
    }

    /// A beat of `node` acting under `epoch`. Refused with [`Error::NodeFenced`] when the node
    /// was fenced (or rejoined elsewhere) since it got `epoch`, and with
    /// [`Error::UnknownNode`] when it never joined. A late beat of a suspect, unfenced node is
    /// accepted: it was slow, not dead.
    pub async fn beat(&self, node: &NodeId, epoch: Epoch) -> Result<NodeBeat> {
        self.update(node, |current, now| {
            let Some(b) = current else {
                return Err(Error::UnknownNode {
                    node: node.clone(),
                    reason: "it never joined the heartbeats".to_owned(),
                });
            };
            if b.fenced || b.epoch != epoch {
                return Err(Error::NodeFenced {
                    node: node.clone(),
                    presented: epoch,
                    current: b.epoch,
                });
            }
            Ok(NodeBeat {
                last_ms: now.max(b.last_ms),
                ..b.clone()
            })
        })
        .await
    }

    /// Fences a node whose heartbeat has lapsed: its epoch is bumped and it is `Dead` until
    /// it rejoins. A node whose heartbeat is younger than the TTL is refused with
    /// [`Error::NodeAlive`]; fencing a fenced node is success (same epoch); a node that never
    /// joined is [`Error::UnknownNode`].
    pub async fn fence(&self, node: &NodeId) -> Result<Epoch> {
        let ttl = self.ttl_ms();
        let b = self
            .update(node, |current, now| {
                let Some(b) = current else {
                    return Err(Error::UnknownNode {
                        node: node.clone(),
                        reason: "it never joined the heartbeats".to_owned(),
                    });
                };
                match judge(Some(b), now, ttl) {
                    Liveness::Dead => Ok(b.clone()),
                    Liveness::Alive => Err(Error::NodeAlive {
                        node: node.clone(),
                        remaining_ms: (b.last_ms.saturating_add(ttl)).saturating_sub(now),
                    }),
                    Liveness::Suspect | Liveness::Unknown => Ok(NodeBeat {
                        epoch: b.epoch.next(),
                        fenced: true,
                        ..b.clone()
                    }),
                }
            })
            .await?;
        Ok(b.epoch)
    }
}

#[async_trait]
impl NodeLiveness for Heartbeats {
    /// A store that cannot be read says nothing: `Unknown` (treated as alive).
    async fn liveness(&self, node: &NodeId) -> Liveness {
        match self.record(node).await {
            Ok(b) => judge(b.as_ref(), self.clock.now_ms(), self.ttl_ms()),
            Err(_) => Liveness::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::backend::memory::MemoryBackend;
    use crate::journal::MemoryStore;
    use crate::orchestrator::{ManualClock, MovePolicy, Orchestrator};
    use crate::{PoolId, VolumeName, VolumeSpec};

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn setup(
        lease_ttl: Duration,
        beat_ttl: Duration,
    ) -> (
        Arc<ManualClock>,
        Arc<Heartbeats>,
        Arc<dyn Backend>,
        Orchestrator,
    ) {
        let clock = Arc::new(ManualClock::default());
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let hb = Arc::new(Heartbeats::new(store.clone(), clock.clone(), beat_ttl));
        let backend: Arc<dyn Backend> =
            Arc::new(MemoryBackend::builder().pool("p", 1 << 30).build());
        let o = Orchestrator::new(backend.clone(), store)
            .with_clock(clock.clone())
            .with_liveness(hb.clone())
            .with_lease_ttl(lease_ttl);
        (clock, hb, backend, o)
    }

    async fn volume(backend: &Arc<dyn Backend>) -> crate::Volume {
        backend
            .create(&VolumeSpec::new(
                VolumeName::new("v").unwrap(),
                PoolId::new("p").unwrap(),
                1,
            ))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_slow_but_alive_node_is_never_force_detached_before_its_lease_lapses() {
        let ttl = Duration::from_secs(10);
        let (clock, hb, backend, o) = setup(ttl, ttl);
        let v = volume(&backend).await;
        let a_epoch = hb.join(&node("a")).await.unwrap();
        let mut lease = o
            .move_volume(&v.id, &node("a"), MovePolicy::Polite)
            .await
            .unwrap();
        // Node a is slow: it beats and renews only just before each deadline, 50 times over.
        for _ in 0..50 {
            clock.advance(Duration::from_millis(9_990));
            assert!(matches!(
                o.move_volume(&v.id, &node("b"), MovePolicy::Polite).await,
                Err(Error::LeaseHeld { .. })
            ));
            assert!(matches!(
                hb.fence(&node("a")).await,
                Err(Error::NodeAlive {
                    remaining_ms: 10,
                    ..
                })
            ));
            assert_eq!(hb.liveness(&node("a")).await, Liveness::Alive);
            hb.beat(&node("a"), a_epoch).await.unwrap();
            lease = o.renew(&v.id, &node("a"), lease.epoch).await.unwrap();
        }
        assert_eq!(
            backend.get(&v.id).await.unwrap().unwrap().attached_to,
            Some(node("a"))
        );
        assert!(o.device(&v.id, &node("a")).await.is_ok());
    }

    #[tokio::test]
    async fn a_suspect_node_keeps_its_volume_until_fenced_then_loses_it() {
        // Leases outlive heartbeats: the volume is protected by the lease alone until the
        // node is fenced.
        let (clock, hb, backend, o) = setup(Duration::from_secs(60), Duration::from_secs(10));
        let v = volume(&backend).await;
        let a_epoch = hb.join(&node("a")).await.unwrap();
        let lease = o
            .move_volume(&v.id, &node("a"), MovePolicy::Polite)
            .await
            .unwrap();
        clock.advance(Duration::from_secs(15));
        assert_eq!(hb.liveness(&node("a")).await, Liveness::Suspect);
        assert!(
            matches!(
                o.move_volume(&v.id, &node("b"), MovePolicy::Polite).await,
                Err(Error::LeaseHeld { .. })
            ),
            "suspect is not dead: the live lease still holds"
        );
        // A late beat of a suspect node is accepted: it was slow.
        hb.beat(&node("a"), a_epoch).await.unwrap();
        assert!(hb.fence(&node("a")).await.is_err());
        clock.advance(Duration::from_secs(11));
        let fenced = hb.fence(&node("a")).await.unwrap();
        assert!(fenced > a_epoch);
        assert_eq!(hb.fence(&node("a")).await.unwrap(), fenced, "idempotent");
        assert_eq!(hb.liveness(&node("a")).await, Liveness::Dead);
        // The dead holder's volume is taken by a polite move: fenced and force-detached.
        let b = o
            .move_volume(&v.id, &node("b"), MovePolicy::Polite)
            .await
            .unwrap();
        assert!(b.epoch > lease.epoch);
        assert_eq!(
            backend.get(&v.id).await.unwrap().unwrap().attached_to,
            Some(node("b"))
        );
        // Node a wakes up: its old node epoch and its old volume epoch are both refused.
        assert!(matches!(
            hb.beat(&node("a"), a_epoch).await,
            Err(Error::NodeFenced { .. })
        ));
        assert!(matches!(
            backend.attach(&v.id, &node("a"), lease.epoch).await,
            Err(Error::StaleEpoch { .. })
        ));
        // It may rejoin under a new epoch, alive again, without getting the volume back.
        let again = hb.join(&node("a")).await.unwrap();
        assert!(again > fenced);
        assert_eq!(hb.liveness(&node("a")).await, Liveness::Alive);
        assert!(hb.beat(&node("a"), again).await.is_ok());
    }

    #[tokio::test]
    async fn unknown_nodes_can_neither_beat_nor_be_fenced() {
        let (_, hb, _, _) = setup(Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(hb.liveness(&node("x")).await, Liveness::Unknown);
        assert!(matches!(
            hb.beat(&node("x"), Epoch(1)).await,
            Err(Error::UnknownNode { .. })
        ));
        assert!(matches!(
            hb.fence(&node("x")).await,
            Err(Error::UnknownNode { .. })
        ));
    }

    #[tokio::test]
    async fn a_beat_and_a_fence_that_race_do_not_both_win() {
        let (clock, hb, _, _) = setup(Duration::from_secs(1), Duration::from_secs(1));
        let a = node("a");
        let epoch = hb.join(&a).await.unwrap();
        clock.advance(Duration::from_secs(2));
        let (beat, fence) = tokio::join!(hb.beat(&a, epoch), hb.fence(&a));
        let record = hb.record(&a).await.unwrap().unwrap();
        match (beat, fence) {
            // The beat landed first (the fence then saw a young beat) or the fence did (the
            // beat then saw the bumped epoch): exactly one wins.
            (Ok(_), Err(Error::NodeAlive { .. })) => assert!(!record.fenced),
            (Err(Error::NodeFenced { .. }), Ok(e)) => {
                assert!(record.fenced);
                assert_eq!(record.epoch, e);
            }
            other => panic!("both or neither won: {other:?}"),
        }
    }
}
