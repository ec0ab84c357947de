//! The crate's error type.

use std::path::PathBuf;

use crate::model::{Epoch, NodeId, PoolId, VolumeId, VolumeName};

/// A boxed source error from a dependency (the journal store, for example). Foreign error types
/// are never exposed in this crate's API; they are kept only as the `source()` chain.
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `volume-core`.
///
/// The enum is `#[non_exhaustive]`: later releases add variants without breaking callers that
/// match on it. The variants follow CSI's error codes where one applies (named in each variant's
/// documentation), so an adapter to CSI or Docker can map them without guessing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The capability exists in the model but is not built in this release of the SDK, or the
    /// backend does not offer it (CSI `UNIMPLEMENTED`).
    #[error("{feature} is not supported by this build of volume-core")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
    },
    /// An argument was rejected before anything was changed (CSI `INVALID_ARGUMENT`).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// No volume with this id exists (CSI `NOT_FOUND`).
    #[error("unknown volume {id}")]
    UnknownVolume {
        /// The id that was asked for.
        id: VolumeId,
    },
    /// The volume is attached to another node (CSI `FAILED_PRECONDITION`, naming the node).
    #[error("volume {id} is attached to node {node}")]
    AttachedElsewhere {
        /// The volume.
        id: VolumeId,
        /// The node it is attached to.
        node: NodeId,
    },
    /// The volume is not attached, so it has no device (CSI `FAILED_PRECONDITION`).
    #[error("volume {id} is not attached")]
    NotAttached {
        /// The volume.
        id: VolumeId,
    },
    /// A volume with this name exists in the pool with an incompatible spec
    /// (CSI `ALREADY_EXISTS`).
    #[error("a volume named {name} already exists in pool {pool} with a different spec")]
    NameConflict {
        /// The name.
        name: VolumeName,
        /// The pool.
        pool: PoolId,
    },
    /// The pool cannot hold the requested size (CSI `RESOURCE_EXHAUSTED`).
    #[error("pool {pool} cannot allocate {requested} bytes ({available} bytes available)")]
    CapacityExhausted {
        /// The pool.
        pool: PoolId,
        /// Bytes asked for, after rounding up to the allocation unit.
        requested: u64,
        /// Bytes still free.
        available: u64,
    },
    /// The pool does not exist in this backend (CSI `NOT_FOUND`).
    #[error("unknown pool {pool}")]
    UnknownPool {
        /// The pool.
        pool: PoolId,
    },
    /// A mutating call carried a fencing epoch older than the one the volume has seen: the caller
    /// was fenced (CSI `FAILED_PRECONDITION`).
    #[error("volume {id}: epoch {presented} is stale (the volume has seen epoch {current})")]
    StaleEpoch {
        /// The volume.
        id: VolumeId,
        /// The epoch the caller presented.
        presented: Epoch,
        /// The newest epoch the volume has seen.
        current: Epoch,
    },
    /// Another node holds a live lease on the volume and is not known to be dead, so the volume
    /// cannot be taken from it (CSI `FAILED_PRECONDITION`).
    #[error("volume {id} is leased to node {holder} (epoch {epoch}) and that node is not fenced")]
    LeaseHeld {
        /// The volume.
        id: VolumeId,
        /// The lease holder.
        holder: NodeId,
        /// The holder's epoch.
        epoch: Epoch,
    },
    /// The caller's lease on the volume has lapsed or was superseded, so it may not use the
    /// volume (CSI `FAILED_PRECONDITION`).
    #[error("node {node} holds no live lease on volume {id}")]
    LeaseLapsed {
        /// The volume.
        id: VolumeId,
        /// The node that asked.
        node: NodeId,
    },
    /// Another operation on the volume is pending (CSI `ABORTED`); retry later.
    #[error("another operation on volume {id} is in progress")]
    Busy {
        /// The volume.
        id: VolumeId,
    },
    /// The volume is in use in a way that forbids the operation (for example resizing an
    /// attached volume on a backend that resizes offline only).
    #[error("volume {id} is in use: {reason}")]
    InUse {
        /// The volume.
        id: VolumeId,
        /// What blocks the operation.
        reason: &'static str,
    },
    /// The volume's image is locked by another process on this machine.
    #[error("the image of volume {id} is locked by another process")]
    Locked {
        /// The volume.
        id: VolumeId,
    },
    /// No snapshot of this name exists on the volume.
    #[error("volume {id} has no snapshot named {snapshot}")]
    UnknownSnapshot {
        /// The volume.
        id: VolumeId,
        /// The snapshot name.
        snapshot: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external program (`losetup`, `qemu-img`) failed.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The program.
        program: &'static str,
        /// Its exit status, or how it could not be run.
        status: String,
        /// The last part of its standard error.
        stderr: String,
    },
    /// Stored state could not be read back (a corrupt sidecar or journal record).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The journal store failed.
    #[error("journal store: {op}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The store's error.
        #[source]
        source: BoxedSource,
    },
    /// The convergence loop ran out of iterations with work left.
    #[error("did not converge after {iterations} iterations ({remaining} actions left)")]
    DidNotConverge {
        /// Iterations run.
        iterations: u32,
        /// Actions still planned in the last iteration.
        remaining: usize,
    },
    /// The node id names no VM (or no machine) the backend can find (CSI `NOT_FOUND`).
    #[error("unknown node {node}: {reason}")]
    UnknownNode {
        /// The node id that was asked for.
        node: NodeId,
        /// Why it could not be resolved.
        reason: String,
    },
    /// A call to the remote storage service (vCenter) failed. The source is the client's
    /// error, which never carries a password or a session cookie.
    #[error("{op} failed")]
    Remote {
        /// What was being done (`CreateDisk_Task`, `AttachDisk_Task`, ...).
        op: &'static str,
        /// The client's error.
        #[source]
        source: BoxedSource,
    },
    /// The node exists but cannot take a volume now (a VM that is not running cannot have a
    /// disk hot-plugged) (CSI `FAILED_PRECONDITION`).
    #[error("node {node} cannot take a volume now: {reason}")]
    NodeUnavailable {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The hypervisor that runs a node failed to hot-plug or unplug a volume (vmenv-core's
    /// error is the source).
    #[error("{op} on node {node} failed")]
    Hypervisor {
        /// What was being done (`hot-plug`, `hot-unplug`, `status`).
        op: &'static str,
        /// The node (VM).
        node: NodeId,
        /// The hypervisor's error.
        #[source]
        source: BoxedSource,
    },
    /// A heartbeat or a node's act under a node epoch that has been superseded: the node was
    /// fenced and must rejoin (get a new epoch) before it acts again.
    #[error("node {node}: node epoch {presented} was fenced (the node's epoch is now {current})")]
    NodeFenced {
        /// The node.
        node: NodeId,
        /// The epoch the node presented.
        presented: Epoch,
        /// The node's current epoch.
        current: Epoch,
    },
    /// A node may not be fenced yet: its heartbeat has not lapsed.
    #[error("node {node} is alive (its heartbeat lapses in {remaining_ms} ms): not fenced")]
    NodeAlive {
        /// The node.
        node: NodeId,
        /// How long until its heartbeat lapses, in ms.
        remaining_ms: u64,
    },
    /// The volume has snapshots and the backend cannot grow a volume that has them (vSphere
    /// cannot extend a First Class Disk with snapshots): delete them first.
    #[error("volume {id} has {count} snapshot(s): delete them before it can grow")]
    HasSnapshots {
        /// The volume.
        id: VolumeId,
        /// How many snapshots it has.
        count: usize,
    },
    /// A crash injected by a test hook at a step of a journaled operation.
    #[error("crash injected at step {step}")]
    InjectedCrash {
        /// The step.
        step: &'static str,
    },
}

impl Error {
    /// Builds an [`Error::InvalidArgument`].
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`] from an `io::Error`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Store`].
    pub(crate) fn store(op: &'static str, source: impl Into<BoxedSource>) -> Self {
        Self::Store {
            op,
            source: source.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;
    use crate::model::{NodeId, VolumeId};

    #[test]
    fn unsupported_names_the_feature() {
        let e = Error::Unsupported { feature: "x" };
        assert_eq!(
            e.to_string(),
            "x is not supported by this build of volume-core"
        );
    }

    #[test]
    fn attached_elsewhere_names_the_node() {
        let e = Error::AttachedElsewhere {
            id: VolumeId::new("v1").unwrap(),
            node: NodeId::new("vm-b").unwrap(),
        };
        assert_eq!(e.to_string(), "volume v1 is attached to node vm-b");
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }
}
