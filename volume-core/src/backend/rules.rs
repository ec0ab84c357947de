//! The CSI controller rules as plain functions over volume records: every backend asks these
//! what to do and then performs only the IO. No IO happens here.
//!
//! ```
//! use volume_core::backend::rules::{self, AttachDecision};
//! use volume_core::{Allocation, Epoch, NodeId, PoolId, VolumeName, VolumeSpec};
//!
//! let alloc = Allocation::new(4096, 4096).unwrap();
//! let spec = VolumeSpec::new(VolumeName::new("db").unwrap(), PoolId::new("p").unwrap(), 10);
//! let mut v = rules::new_volume(&spec, alloc).unwrap();
//! let a = NodeId::new("a").unwrap();
//! assert_eq!(rules::decide_attach(&v, &a, Epoch::ZERO).unwrap(), AttachDecision::Attach);
//! rules::apply_attach(&mut v, &a, Epoch::ZERO);
//! assert_eq!(rules::decide_attach(&v, &a, Epoch::ZERO).unwrap(), AttachDecision::AlreadyAttached);
//! ```

use crate::error::{Error, Result};
use crate::model::{Allocation, Epoch, NodeId, Volume, VolumeId, VolumeSpec};

/// What `create` must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateDecision {
    /// Return this existing volume (same name, compatible spec).
    Existing(Volume),
    /// Allocate a new volume of this many bytes.
    Create {
        /// The rounded size.
        allocated: u64,
    },
}

/// Decides `create` against the volumes that exist. `available` is the pool's free space when
/// the backend tracks one.
pub fn decide_create<'a>(
    spec: &VolumeSpec,
    existing: impl IntoIterator<Item = &'a Volume>,
    allocation: Allocation,
    available: Option<u64>,
) -> Result<CreateDecision> {
    let allocated = allocation.round_up(spec.size_bytes)?;
    if let Some(v) = existing
        .into_iter()
        .find(|v| v.name == spec.name && v.pool == spec.pool)
    {
        if spec.is_satisfied_by(v, allocation) {
            return Ok(CreateDecision::Existing(v.clone()));
        }
        return Err(Error::NameConflict {
            name: spec.name.clone(),
            pool: spec.pool.clone(),
        });
    }
    if let Some(available) = available
        && allocated > available
    {
        return Err(Error::CapacityExhausted {
            pool: spec.pool.clone(),
            requested: allocated,
            available,
        });
    }
    Ok(CreateDecision::Create { allocated })
}

/// A new, detached volume record for a spec, with a fresh id.
pub fn new_volume(spec: &VolumeSpec, allocation: Allocation) -> Result<Volume> {
    let allocated = allocation.round_up(spec.size_bytes)?;
    Ok(Volume {
        id: VolumeId::generate(),
        name: spec.name.clone(),
        pool: spec.pool.clone(),
        size_bytes: allocated,
        requested_bytes_rounded: allocated,
        labels: spec.labels.clone(),
        attached_to: None,
        generation: crate::model::Generation(1),
        epoch: Epoch::ZERO,
    })
}

/// Refuses an epoch older than the newest the volume has seen.
pub fn check_epoch(v: &Volume, epoch: Epoch) -> Result<()> {
    if epoch < v.epoch {
        return Err(Error::StaleEpoch {
            id: v.id.clone(),
            presented: epoch,
            current: v.epoch,
        });
    }
    Ok(())
}

/// What `attach` must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachDecision {
    /// Already attached to that node: success, nothing to do.
    AlreadyAttached,
    /// Attach it.
    Attach,
}

/// Decides `attach`.
pub fn decide_attach(v: &Volume, node: &NodeId, epoch: Epoch) -> Result<AttachDecision> {
    check_epoch(v, epoch)?;
    match &v.attached_to {
        Some(n) if n == node => Ok(AttachDecision::AlreadyAttached),
        Some(n) => Err(Error::AttachedElsewhere {
            id: v.id.clone(),
            node: n.clone(),
        }),
        None => Ok(AttachDecision::Attach),
    }
}

/// Records an attachment.
pub fn apply_attach(v: &mut Volume, node: &NodeId, epoch: Epoch) {
    v.attached_to = Some(node.clone());
    v.epoch = v.epoch.max(epoch);
    v.generation = v.generation.next();
}

/// What `detach` must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetachDecision {
    /// Detached or missing: success, nothing to do.
    Nothing,
    /// Detach it from this node.
    Detach(NodeId),
}

/// Decides `detach` (`None` = the volume does not exist).
pub fn decide_detach(v: Option<&Volume>, epoch: Epoch) -> Result<DetachDecision> {
    let Some(v) = v else {
        return Ok(DetachDecision::Nothing);
    };
    check_epoch(v, epoch)?;
    Ok(match &v.attached_to {
        Some(n) => DetachDecision::Detach(n.clone()),
        None => DetachDecision::Nothing,
    })
}

/// Records a detachment.
pub fn apply_detach(v: &mut Volume, epoch: Epoch) {
    v.attached_to = None;
    v.epoch = v.epoch.max(epoch);
    v.generation = v.generation.next();
}

/// Decides `fence`: the volume must exist and the epoch must not go backwards. Returns whether
/// the record changes.
pub fn decide_fence(v: Option<&Volume>, id: &VolumeId, epoch: Epoch) -> Result<bool> {
    let v = v.ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
    check_epoch(v, epoch)?;
    Ok(epoch > v.epoch)
}

/// Records a fence.
pub fn apply_fence(v: &mut Volume, epoch: Epoch) {
    if epoch > v.epoch {
        v.epoch = epoch;
        v.generation = v.generation.next();
    }
}

/// Decides `destroy`: `true` when there is a volume to destroy.
pub fn decide_destroy(v: Option<&Volume>) -> Result<bool> {
    match v {
        None => Ok(false),
        Some(v) => match &v.attached_to {
            Some(n) => Err(Error::AttachedElsewhere {
                id: v.id.clone(),
                node: n.clone(),
            }),
            None => Ok(true),
        },
    }
}

/// Decides `device`: the volume must exist and be attached to `node`.
pub fn decide_device(v: Option<&Volume>, id: &VolumeId, node: &NodeId) -> Result<()> {
    let v = v.ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
    match &v.attached_to {
        None => Err(Error::NotAttached { id: id.clone() }),
        Some(n) if n != node => Err(Error::AttachedElsewhere {
            id: id.clone(),
            node: n.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// Decides `resize`: the new allocated size, or `None` when the volume is already that big.
/// Shrinking is refused, and so is resizing an attached volume when `online` is false.
pub fn decide_resize(
    v: Option<&Volume>,
    id: &VolumeId,
    size_bytes: u64,
    allocation: Allocation,
    online: bool,
    epoch: Epoch,
) -> Result<Option<u64>> {
    let v = v.ok_or_else(|| Error::UnknownVolume { id: id.clone() })?;
    check_epoch(v, epoch)?;
    let want = allocation.round_up(size_bytes)?;
    if want < v.size_bytes {
        return Err(Error::invalid(
            "size",
            format!("{want} bytes would shrink the volume from {}", v.size_bytes),
        ));
    }
    if want == v.size_bytes {
        return Ok(None);
    }
    if !online && v.attached_to.is_some() {
        return Err(Error::InUse {
            id: id.clone(),
            reason: "this backend resizes detached volumes only",
        });
    }
    Ok(Some(want))
}

/// Records a resize.
pub fn apply_resize(v: &mut Volume, size_bytes: u64, epoch: Epoch) {
    v.size_bytes = size_bytes;
    v.epoch = v.epoch.max(epoch);
    v.generation = v.generation.next();
}

/// Checks a snapshot name: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn check_snapshot_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(Error::invalid(
            "snapshot name",
            "1 to 64 characters of [A-Za-z0-9._-]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PoolId, VolumeName};

    fn alloc() -> Allocation {
        Allocation::new(1024, 4096).unwrap()
    }

    fn spec(name: &str, size: u64) -> VolumeSpec {
        VolumeSpec::new(
            VolumeName::new(name).unwrap(),
            PoolId::new("p").unwrap(),
            size,
        )
    }

    #[test]
    fn create_is_idempotent_by_name_and_refuses_conflicts() {
        let v = new_volume(&spec("a", 5000), alloc()).unwrap();
        assert_eq!(v.size_bytes, 5120);
        let same = decide_create(&spec("a", 5001), [&v], alloc(), None).unwrap();
        assert_eq!(same, CreateDecision::Existing(v.clone()));
        let err = decide_create(&spec("a", 9000), [&v], alloc(), None).unwrap_err();
        assert!(matches!(err, Error::NameConflict { .. }));
        let err = decide_create(&spec("b", 9000), [&v], alloc(), Some(8192)).unwrap_err();
        assert!(matches!(
            err,
            Error::CapacityExhausted {
                requested: 9216,
                ..
            }
        ));
    }

    #[test]
    fn stale_epochs_are_refused_everywhere() {
        let mut v = new_volume(&spec("a", 1), alloc()).unwrap();
        apply_fence(&mut v, Epoch(5));
        let n = NodeId::new("n").unwrap();
        assert!(matches!(
            decide_attach(&v, &n, Epoch(4)),
            Err(Error::StaleEpoch { .. })
        ));
        assert!(matches!(
            decide_detach(Some(&v), Epoch(4)),
            Err(Error::StaleEpoch { .. })
        ));
        assert!(decide_fence(Some(&v), &v.id, Epoch(4)).is_err());
        assert!(!decide_fence(Some(&v), &v.id, Epoch(5)).unwrap());
    }

    #[test]
    fn destroy_refuses_attached_and_accepts_missing() {
        let mut v = new_volume(&spec("a", 1), alloc()).unwrap();
        assert!(!decide_destroy(None).unwrap());
        apply_attach(&mut v, &NodeId::new("n").unwrap(), Epoch::ZERO);
        assert!(decide_destroy(Some(&v)).is_err());
    }

    #[test]
    fn resize_grows_only() {
        let v = new_volume(&spec("a", 1), alloc()).unwrap();
        assert_eq!(
            decide_resize(Some(&v), &v.id, 4096, alloc(), false, Epoch::ZERO).unwrap(),
            None
        );
        assert_eq!(
            decide_resize(Some(&v), &v.id, 5000, alloc(), false, Epoch::ZERO).unwrap(),
            Some(5120)
        );
        assert!(decide_resize(Some(&v), &v.id, 10, alloc(), false, Epoch::ZERO).is_ok());
        let small = Allocation::new(1, 1).unwrap();
        assert!(decide_resize(Some(&v), &v.id, 10, small, false, Epoch::ZERO).is_err());
    }
}
