//! A [`Store`] that keeps the orchestrator's per-volume state where vCenter keeps the volume:
//! in the First Class Disk's own metadata (feature `vsphere`).
//!
//! | table | where |
//! |---|---|
//! | [`Table::Operations`], [`Table::Leases`], [`Table::Epochs`] (keyed by volume id) | metadata key `volume-core.journal.<table>` on the disk whose id is the key |
//! | [`Table::Desired`], [`Table::Mounts`] (not per disk) | the local store given at construction |
//!
//! Reads are `RetrieveVStorageObject` (the metadata comes with the disk); writes are
//! `VCenterUpdateVStorageObjectMetadataEx_Task`. Several orchestrators ("hosts") that connect
//! to one vCenter share the journal, the leases and the fencing epochs of every volume, and a
//! disk's state goes with the disk: delete the disk and its journal goes too.
//!
//! # What the compare-and-swap guarantees, and what it cannot
//!
//! vCenter's metadata update is unconditional: there is no "write if the value is still X".
//! So [`Store::cas`] here is read, compare, write, verify:
//!
//! 1. within one process, every write to one disk is serialized (an async mutex per disk), so
//!    the compare-and-swap is exact among the orchestrators of one process;
//! 2. across processes, each stored value carries a version and the id of the store instance
//!    that wrote it; after writing, the store reads the value back and reports success only if
//!    it is still its own write. A writer whose value was overwritten learns it lost;
//! 3. **the race window that remains**: two hosts that both read version `n` before either
//!    writes, and whose read-backs each run before the other's write lands, both see their own
//!    write and both report success. The window is one read-write-read of the two writers
//!    overlapping (a few round trips, milliseconds on a LAN). It is narrowed, not closed.
//!
//! What keeps a volume safe inside that window is not the store but the disk itself: vCenter
//! refuses `AttachDisk_Task` for a disk attached to another VM, and a move detaches before it
//! attaches, so a volume is never attached to two VMs even when two hosts both believe they
//! own a move. The store adds two rules of its own that hold whatever the interleaving of
//! *sequential* writes:
//!
//! - **epochs are monotonic**: a write to [`Table::Epochs`] that does not raise the stored
//!   epoch is refused with [`Error::StaleEpoch`];
//! - **a stale holder's lease write is refused**: a lease whose epoch is older than the stored
//!   lease's epoch (a holder fenced by a newer move renewing or releasing) is refused with
//!   [`Error::StaleEpoch`], so a fenced host cannot resurrect its lease.
//!
//! Deletes carry no epoch and are not checked.
//!
//! ```no_run
//! # async fn demo(client: std::sync::Arc<vsphere_client::client::Client>) -> volume_core::Result<()> {
//! use std::sync::Arc;
//! use volume_core::journal::{MemoryStore, vcenter::VcenterStore};
//! use volume_core::PoolId;
//! let store = VcenterStore::connect(client, [PoolId::new("datastore1")?], Arc::new(MemoryStore::default())).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt::{self, Debug, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex as AsyncMutex;
use vsphere_client::client::{Client, TaskWaiter};
use vsphere_client::codec::ManagedObjectReference;
use vsphere_client::mo::VcenterVStorageObjectManager;
use vsphere_client::types::{ID, KeyValue};

use super::{Store, Table};
use crate::backend::vsphere::{is_missing, remote, resolve_pools};
use crate::error::{Error, Result};
use crate::model::{Epoch, PoolId, VolumeId};

/// The metadata key prefix of the journal's entries.
pub const KEY_PREFIX: &str = "volume-core.journal.";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One stored entry: `v<version>;<writer>;<payload>`, where the payload is `-` (deleted),
/// `s:<utf-8 text>` or `x:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    version: u64,
    writer: String,
    value: Option<Vec<u8>>,
}

impl Entry {
    fn encode(&self) -> String {
        let payload = match &self.value {
            None => "-".to_owned(),
            Some(v) => {
                if let Ok(s) = std::str::from_utf8(v) {
                    format!("s:{s}")
                } else {
                    let mut hex = String::from("x:");
                    for b in v {
                        let _ = write!(hex, "{b:02x}");
                    }
                    hex
                }
            }
        };
        format!("v{};{};{payload}", self.version, self.writer)
    }

    fn decode(s: &str) -> Result<Self> {
        let corrupt = |reason: &str| Error::Corrupt {
            what: "vCenter journal entry".to_owned(),
            reason: reason.to_owned(),
        };
        let rest = s.strip_prefix('v').ok_or_else(|| corrupt("no version"))?;
        let (version, rest) = rest.split_once(';').ok_or_else(|| corrupt("no writer"))?;
        let version = version.parse().map_err(|_| corrupt("bad version"))?;
        let (writer, payload) = rest.split_once(';').ok_or_else(|| corrupt("no payload"))?;
        let value = if payload == "-" {
            None
        } else if let Some(t) = payload.strip_prefix("s:") {
            Some(t.as_bytes().to_vec())
        } else if let Some(h) = payload.strip_prefix("x:") {
            if h.len() % 2 != 0 {
                return Err(corrupt("odd hex payload"));
            }
            let bytes: std::result::Result<Vec<u8>, _> = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16))
                .collect();
            Some(bytes.map_err(|_| corrupt("bad hex payload"))?)
        } else {
            return Err(corrupt("unknown payload kind"));
        };
        Ok(Self {
            version,
            writer: writer.to_owned(),
            value,
        })
    }
}

/// Whether a write of `new` over `current` may go ahead under the store's fencing rules (see
/// the module documentation); a plain function so the rules are tested without a server.
fn check_fencing(
    table: Table,
    key: &str,
    current: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<()> {
    #[derive(Deserialize)]
    struct Epoched {
        epoch: Epoch,
    }
    let Some(new) = new else { return Ok(()) };
    let stale = |presented: Epoch, current: Epoch| {
        Err(Error::StaleEpoch {
            id: VolumeId::new(key).unwrap_or_else(|_| VolumeId::generate()),
            presented,
            current,
        })
    };
    match table {
        Table::Epochs => {
            let new: Epoch = serde_json::from_slice(new).map_err(|e| Error::Corrupt {
                what: "epoch counter".to_owned(),
                reason: e.to_string(),
            })?;
            if let Some(cur) = current.and_then(|c| serde_json::from_slice::<Epoch>(c).ok())
                && new <= cur
            {
                return stale(new, cur);
            }
            Ok(())
        }
        Table::Leases => {
            let (Ok(new), Some(Ok(cur))) = (
                serde_json::from_slice::<Epoched>(new),
                current.map(serde_json::from_slice::<Epoched>),
            ) else {
                return Ok(());
            };
            if new.epoch < cur.epoch {
                return stale(new.epoch, cur.epoch);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A [`Store`] in First Class Disk metadata. See the [module documentation](self).
pub struct VcenterStore {
    client: Arc<Client>,
    manager: VcenterVStorageObjectManager,
    datastores: Vec<ManagedObjectReference>,
    /// The datastore each disk was found on.
    located: Mutex<HashMap<String, ManagedObjectReference>>,
    local: Arc<dyn Store>,
    writer: String,
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// One task filter for every metadata update (a write costs its call and the shared
    /// waits, not a private collector per task).
    tasks: TaskWaiter,
}

impl Debug for VcenterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VcenterStore")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl VcenterStore {
    /// A store on the disks of these datastores (by name or inventory path), resolved once
    /// through the client's finder. `local` keeps the tables that are not per disk.
    pub async fn connect(
        client: Arc<Client>,
        pools: impl IntoIterator<Item = PoolId>,
        local: Arc<dyn Store>,
    ) -> Result<Self> {
        let (manager, pools) = resolve_pools(&client, pools).await?;
        let datastores: Vec<ManagedObjectReference> = pools.into_iter().map(|(_, ds)| ds).collect();
        // The task filter is made now, so that the first metadata update does not pay for it.
        let tasks = TaskWaiter::new();
        tasks.prepare(&client).await;
        Ok(Self {
            client,
            manager,
            datastores,
            located: Mutex::default(),
            local,
            writer: VolumeId::generate().to_string(),
            locks: Mutex::default(),
            tasks,
        })
    }

    /// The id this instance stamps on what it writes.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    fn in_metadata(table: Table) -> bool {
        matches!(table, Table::Operations | Table::Leases | Table::Epochs)
    }

    fn meta_key(table: Table) -> String {
        format!("{KEY_PREFIX}{}", table.name())
    }

    fn lock_of(&self, key: &str) -> Arc<AsyncMutex<()>> {
        lock(&self.locks).entry(key.to_owned()).or_default().clone()
    }

    fn id(s: &str) -> ID {
        ID {
            id: s.to_owned(),
            ..ID::default()
        }
    }

    /// The disk's metadata and its datastore, or `None` when no datastore has the disk.
    async fn metadata(
        &self,
        disk: &str,
    ) -> Result<Option<(ManagedObjectReference, Vec<KeyValue>)>> {
        let known = lock(&self.located).get(disk).cloned();
        let candidates: Vec<ManagedObjectReference> = match &known {
            Some(ds) => std::iter::once(ds.clone())
                .chain(self.datastores.iter().filter(|d| *d != ds).cloned())
                .collect(),
            None => self.datastores.clone(),
        };
        for ds in candidates {
            match self
                .manager
                .retrieve_v_storage_object(&*self.client, &Self::id(disk), &ds, &[])
                .await
            {
                Ok(o) => {
                    lock(&self.located).insert(disk.to_owned(), ds.clone());
                    let meta = o
                        .config
                        .map(|c| c.base_config_info.metadata.clone())
                        .unwrap_or_default();
                    return Ok(Some((ds, meta)));
                }
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(remote("RetrieveVStorageObject", e)),
            }
        }
        lock(&self.located).remove(disk);
        Ok(None)
    }

    async fn entry(
        &self,
        table: Table,
        disk: &str,
    ) -> Result<Option<(ManagedObjectReference, Option<Entry>)>> {
        let key = Self::meta_key(table);
        let Some((ds, meta)) = self.metadata(disk).await? else {
            return Ok(None);
        };
        let e = meta
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| Entry::decode(&kv.value))
            .transpose()?;
        Ok(Some((ds, e)))
    }

    async fn write(
        &self,
        ds: &ManagedObjectReference,
        disk: &str,
        table: Table,
        e: &Entry,
    ) -> Result<()> {
        let kv = KeyValue {
            key: Self::meta_key(table),
            value: e.encode(),
            ..KeyValue::default()
        };
        let task = self
            .manager
            .v_center_update_v_storage_object_metadata_ex_task(
                &*self.client,
                &Self::id(disk),
                ds,
                &[kv],
                &[],
            )
            .await
            .map_err(|e| {
                // A server without the method: vCenter before 7.0.2 and simulators answer
                // `MethodNotFound`/`NotImplemented`; govmomi's vcsim 0.24.2 answers
                // `InvalidRequest` ("no vmomi type defined for ...").
                if e.is_not_implemented() || e.is_fault("InvalidRequest") {
                    Error::Unsupported {
                        feature: "disk metadata updates (VCenterUpdateVStorageObjectMetadataEx_Task) on this server",
                    }
                } else {
                    remote("VCenterUpdateVStorageObjectMetadataEx_Task", e)
                }
            })?;
        self.tasks
            .wait(&self.client, task)
            .await
            .map(drop)
            .map_err(|e| remote("VCenterUpdateVStorageObjectMetadataEx_Task", e))
    }

    /// The compare-and-swap (`expected: Some`) or the unconditional write (`expected: None`
    /// with `conditional: false`), with the fencing rules; under the disk's lock.
    async fn swap(
        &self,
        table: Table,
        key: &str,
        conditional: bool,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let l = self.lock_of(key);
        let _g = l.lock().await;
        let Some((ds, current)) = self.entry(table, key).await? else {
            // No such disk: nothing is stored for it.
            if conditional && expected.is_some() {
                return Ok(false);
            }
            return match new {
                None => Ok(true),
                Some(_) => Err(Error::UnknownVolume {
                    id: VolumeId::new(key).unwrap_or_else(|_| VolumeId::generate()),
                }),
            };
        };
        let current_value = current.as_ref().and_then(|e| e.value.as_deref());
        if conditional && current_value != expected {
            return Ok(false);
        }
        if current_value == new {
            return Ok(true);
        }
        check_fencing(table, key, current_value, new)?;
        let mine = Entry {
            version: current.as_ref().map_or(0, |e| e.version) + 1,
            writer: self.writer.clone(),
            value: new.map(<[u8]>::to_vec),
        };
        self.write(&ds, key, table, &mine).await?;
        // Read back: a value overwritten by another host meanwhile means this write lost.
        match self.entry(table, key).await? {
            Some((_, Some(e))) if e == mine => Ok(true),
            _ if !conditional => Ok(true),
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl Store for VcenterStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>> {
        if !Self::in_metadata(table) {
            return self.local.get(table, key).await;
        }
        Ok(self
            .entry(table, key)
            .await?
            .and_then(|(_, e)| e)
            .and_then(|e| e.value))
    }

    async fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>> {
        if !Self::in_metadata(table) {
            return self.local.list(table).await;
        }
        let mut out = Vec::new();
        for ds in &self.datastores {
            let ids = self
                .manager
                .list_v_storage_object(&*self.client, ds)
                .await
                .map_err(|e| remote("ListVStorageObject", e))?;
            for id in ids {
                if let Some((_, Some(Entry { value: Some(v), .. }))) =
                    self.entry(table, &id.id).await?
                {
                    out.push((id.id, v));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    async fn cas(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        if !Self::in_metadata(table) {
            return self.local.cas(table, key, expected, new).await;
        }
        self.swap(table, key, true, expected, new).await
    }

    async fn put(&self, table: Table, key: &str, new: Option<&[u8]>) -> Result<()> {
        if !Self::in_metadata(table) {
            return self.local.put(table, key, new).await;
        }
        self.swap(table, key, false, None, new).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for value in [None, Some(b"{\"a\":1}".to_vec()), Some(vec![0, 255, 7])] {
            let e = Entry {
                version: 42,
                writer: "vol-1-2-3".to_owned(),
                value,
            };
            assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        }
        for bad in ["", "v1", "vx;w;-", "v1;w;q:zz", "v1;w;x:0"] {
            assert!(Entry::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn epochs_only_rise_and_stale_leases_are_refused() {
        let k = "disk-1";
        assert!(check_fencing(Table::Epochs, k, None, Some(b"1")).is_ok());
        assert!(check_fencing(Table::Epochs, k, Some(b"3"), Some(b"4")).is_ok());
        for lower in [b"3", b"2"] {
            assert!(matches!(
                check_fencing(Table::Epochs, k, Some(b"3"), Some(lower)),
                Err(Error::StaleEpoch { .. })
            ));
        }
        let lease = |e: u64| format!("{{\"epoch\":{e},\"holder\":\"a\"}}").into_bytes();
        assert!(check_fencing(Table::Leases, k, Some(&lease(3)), Some(&lease(3))).is_ok());
        assert!(check_fencing(Table::Leases, k, Some(&lease(3)), Some(&lease(4))).is_ok());
        assert!(matches!(
            check_fencing(Table::Leases, k, Some(&lease(4)), Some(&lease(3))),
            Err(Error::StaleEpoch { .. })
        ));
        // Deletes and other tables are not checked.
        assert!(check_fencing(Table::Leases, k, Some(&lease(4)), None).is_ok());
        assert!(check_fencing(Table::Operations, k, Some(b"x"), Some(b"y")).is_ok());
    }
}
