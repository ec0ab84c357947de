//! Helpers shared by the integration tests.

use std::fmt::Write as _;
use std::sync::Arc;

use volume_core::journal::{Store, Table};
use volume_core::orchestrator::{MovePolicy, Orchestrator};
use volume_core::{Error, NodeId, VolumeId};

/// Everything the orchestrator and the backend hold about one volume.
async fn state(o: &Orchestrator, id: &VolumeId) -> String {
    let store: &Arc<dyn Store> = o.store();
    let mut out = String::new();
    for t in [Table::Operations, Table::Leases, Table::Epochs] {
        let v = store.get(t, id.as_str()).await.unwrap();
        let _ = write!(out, "{t:?}={:?};", v.map(String::from_utf8));
    }
    let listed = o.backend().get(id).await.unwrap();
    let _ = write!(out, "backend={listed:?}");
    out
}

/// A move to `ghost` (a node the backend cannot find), a move of a volume that does not exist
/// and a polite move against `a`'s live lease are refused with typed errors and change nothing;
/// afterwards the volume still moves (it was not left busy).
pub(crate) async fn refused_moves_change_nothing(
    o: &Orchestrator,
    id: &VolumeId,
    a: &NodeId,
    b: &NodeId,
    ghost: &NodeId,
) {
    o.move_volume(id, a, MovePolicy::Polite).await.unwrap();
    let before = state(o, id).await;

    let e = o.move_volume(id, ghost, MovePolicy::Preempt).await;
    assert!(matches!(e, Err(Error::UnknownNode { .. })), "{e:?}");
    assert_eq!(
        state(o, id).await,
        before,
        "a move to an unknown node changed state"
    );
    assert!(o.pending().await.unwrap().is_empty());

    let missing = VolumeId::new("no-such-volume").unwrap();
    let e = o.move_volume(&missing, b, MovePolicy::Preempt).await;
    assert!(matches!(e, Err(Error::UnknownVolume { .. })), "{e:?}");
    assert!(o.pending().await.unwrap().is_empty());
    assert_eq!(
        o.store()
            .get(Table::Epochs, missing.as_str())
            .await
            .unwrap(),
        None
    );

    let e = o.move_volume(id, b, MovePolicy::Polite).await;
    assert!(matches!(e, Err(Error::LeaseHeld { .. })), "{e:?}");
    assert_eq!(
        state(o, id).await,
        before,
        "a refused polite move changed state"
    );

    // Not busy: the next valid move goes through at once.
    let lease = o.move_volume(id, b, MovePolicy::Preempt).await.unwrap();
    assert_eq!(&lease.holder, b);
    assert_eq!(
        o.backend()
            .get(id)
            .await
            .unwrap()
            .unwrap()
            .attached_to
            .as_ref(),
        Some(b)
    );
    assert!(o.pending().await.unwrap().is_empty());
}
