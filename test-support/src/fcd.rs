//! The conformance-kit factory of volume-core's First Class Disk backend, the same on govmomi's
//! vcsim and on the embedded vsphere-sim.

use std::sync::Arc;

use async_trait::async_trait;
use volume_core::backend::Backend;
use volume_core::backend::vsphere::FcdBackend;
use volume_core::conformance::Factory;
use volume_core::{Epoch, PoolId, Result};
use vsphere_client::client::Client;

/// The datastore both simulators call their local one.
pub const POOL: &str = "LocalDS_0";

/// VMs the kit attaches to: its three nodes, the unicode node of case f02 and the eight racers
/// of `conc_attach_one_winner`.
pub const NODE_VMS: &[&str] = &[
    "node-a",
    "node-b",
    "node-c",
    "nœud-ü-東京",
    "racer-0",
    "racer-1",
    "racer-2",
    "racer-3",
    "racer-4",
    "racer-5",
    "racer-6",
    "racer-7",
];

/// Builds fresh [`FcdBackend`]s on one server whose node VMs it cloned.
pub struct FcdFactory {
    /// The client every backend shares.
    pub client: Arc<Client>,
    /// What must live as long as the factory (the simulator).
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for FcdFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcdFactory").finish_non_exhaustive()
    }
}

impl FcdFactory {
    /// Clones [`NODE_VMS`] from `/DC0/vm/DC0_H0_VM0` into `/DC0/vm` and keeps `keep` (the
    /// simulator) alive with the factory.
    pub async fn new(client: Client, keep: impl std::any::Any + Send + Sync) -> Self {
        crate::clone_vms(&client, "/DC0/vm/DC0_H0_VM0", "/DC0/vm", NODE_VMS).await;
        Self {
            client: Arc::new(client),
            _keep: Box::new(keep),
        }
    }

    /// A backend on [`POOL`], without cleaning anything up.
    pub async fn connect(&self) -> Result<FcdBackend> {
        FcdBackend::connect(self.client.clone(), [PoolId::new(POOL)?]).await
    }
}

#[async_trait]
impl Factory for FcdFactory {
    async fn backend(&self) -> Result<Arc<dyn Backend>> {
        let b = self.connect().await?;
        // A fresh backend has no volumes: remove what earlier cases left on the datastore.
        for v in b.list().await? {
            b.detach(&v.id, Epoch(u64::MAX)).await?;
            b.destroy(&v.id).await?;
        }
        Ok(Arc::new(b))
    }

    fn pool(&self) -> PoolId {
        PoolId::new(POOL).expect("valid pool")
    }
}
