//! Where the orchestrator keeps its durable state: pending operations, leases and the desired
//! state, behind the small [`Store`] trait (get, list, compare-and-swap), so a multi-host
//! deployment can keep it where it already lives (vCenter disk metadata, etcd). The default is
//! [`RedbStore`], an embedded, crash-safe store in one file; [`MemoryStore`] is for tests;
//! `vcenter::VcenterStore` (feature `vsphere`) keeps each volume's journal, lease and epoch in
//! its First Class Disk's metadata, shared by every host that talks to the vCenter.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::error::{Error, Result};

#[cfg(feature = "vsphere")]
pub mod vcenter;

/// The tables of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Pending journaled operations, keyed by volume id (one per volume at a time).
    Operations,
    /// Leases, keyed by volume id.
    Leases,
    /// Desired state, keyed by pool and name.
    Desired,
    /// Mount reference counts of node agents (the Docker plugin), keyed by node and volume.
    Mounts,
    /// The last fencing epoch handed out per volume, keyed by volume id.
    Epochs,
    /// Node heartbeats with their node epochs ([`crate::liveness::Heartbeats`]), keyed by node.
    Nodes,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Operations => "operations",
            Table::Leases => "leases",
            Table::Desired => "desired",
            Table::Mounts => "mounts",
            Table::Epochs => "epochs",
            Table::Nodes => "nodes",
        }
    }

    const ALL: [Table; 6] = [
        Table::Operations,
        Table::Leases,
        Table::Desired,
        Table::Mounts,
        Table::Epochs,
        Table::Nodes,
    ];
}

/// A durable key-value store with compare-and-swap: all the orchestrator needs.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// The value of a key.
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>>;

    /// Every key and value of a table, in key order.
    async fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>>;

    /// Writes `new` (`None` deletes) when the current value equals `expected` (`None` = absent).
    /// Returns whether it wrote. When it returns, a write is durable.
    async fn cas(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool>;

    /// Writes unconditionally (`None` deletes).
    async fn put(&self, table: Table, key: &str, new: Option<&[u8]>) -> Result<()>;
}

/// An in-memory [`Store`] for tests and examples: not durable.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<BTreeMap<(Table, String), Vec<u8>>>,
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(table, key.to_owned()))
            .cloned())
    }

    async fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn cas(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let mut t = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = (table, key.to_owned());
        if t.get(&k).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(v) => t.insert(k, v.to_vec()),
            None => t.remove(&k),
        };
        Ok(true)
    }

    async fn put(&self, table: Table, key: &str, new: Option<&[u8]>) -> Result<()> {
        let mut t = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = (table, key.to_owned());
        match new {
            Some(v) => t.insert(k, v.to_vec()),
            None => t.remove(&k),
        };
        Ok(())
    }
}

/// The default [`Store`]: an embedded [redb](https://docs.rs/redb) database in one file. Every
/// write is a committed (fsynced) transaction, so a `kill -9` loses nothing that was confirmed.
/// One process opens the file at a time.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use volume_core::journal::{RedbStore, Store, Table};
/// let dir = tempfile::tempdir().unwrap();
/// let s = RedbStore::open(dir.path().join("journal.redb")).unwrap();
/// assert!(s.cas(Table::Leases, "v1", None, Some(b"a")).await.unwrap());
/// assert!(!s.cas(Table::Leases, "v1", None, Some(b"b")).await.unwrap());
/// assert_eq!(s.get(Table::Leases, "v1").await.unwrap(), Some(b"a".to_vec()));
/// # });
/// ```
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn def(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

impl RedbStore {
    /// Opens or creates the database file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = Database::create(path.as_ref()).map_err(|e| Error::store("open", e))?;
        let tx = db.begin_write().map_err(|e| Error::store("begin", e))?;
        for t in Table::ALL {
            tx.open_table(def(t))
                .map_err(|e| Error::store("create table", e))?;
        }
        tx.commit().map_err(|e| Error::store("commit", e))?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::store("join", e.to_string()))?
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(|e| Error::store("begin", e))?;
            let t = tx
                .open_table(def(table))
                .map_err(|e| Error::store("open", e))?;
            let v = t
                .get(key.as_str())
                .map_err(|e| Error::store("get", e))?
                .map(|v| v.value().to_vec());
            Ok(v)
        })
        .await
    }

    async fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(|e| Error::store("begin", e))?;
            let t = tx
                .open_table(def(table))
                .map_err(|e| Error::store("open", e))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| Error::store("list", e))? {
                let (k, v) = row.map_err(|e| Error::store("list", e))?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn cas(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let (key, expected, new) = (
            key.to_owned(),
            expected.map(<[u8]>::to_vec),
            new.map(<[u8]>::to_vec),
        );
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(|e| Error::store("begin", e))?;
            {
                let mut t = tx
                    .open_table(def(table))
                    .map_err(|e| Error::store("open", e))?;
                let current = t
                    .get(key.as_str())
                    .map_err(|e| Error::store("get", e))?
                    .map(|v| v.value().to_vec());
                if current != expected {
                    return Ok(false);
                }
                match &new {
                    Some(v) => {
                        t.insert(key.as_str(), v.as_slice())
                            .map_err(|e| Error::store("insert", e))?;
                    }
                    None => {
                        t.remove(key.as_str())
                            .map_err(|e| Error::store("remove", e))?;
                    }
                }
            }
            tx.commit().map_err(|e| Error::store("commit", e))?;
            Ok(true)
        })
        .await
    }

    async fn put(&self, table: Table, key: &str, new: Option<&[u8]>) -> Result<()> {
        let (key, new) = (key.to_owned(), new.map(<[u8]>::to_vec));
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(|e| Error::store("begin", e))?;
            {
                let mut t = tx
                    .open_table(def(table))
                    .map_err(|e| Error::store("open", e))?;
                match &new {
                    Some(v) => {
                        t.insert(key.as_str(), v.as_slice())
                            .map_err(|e| Error::store("insert", e))?;
                    }
                    None => {
                        t.remove(key.as_str())
                            .map_err(|e| Error::store("remove", e))?;
                    }
                }
            }
            tx.commit().map_err(|e| Error::store("commit", e))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(s: &dyn Store) {
        assert_eq!(s.get(Table::Operations, "a").await.unwrap(), None);
        assert!(
            s.cas(Table::Operations, "a", None, Some(b"1"))
                .await
                .unwrap()
        );
        assert!(
            !s.cas(Table::Operations, "a", Some(b"0"), Some(b"2"))
                .await
                .unwrap()
        );
        assert!(
            s.cas(Table::Operations, "a", Some(b"1"), Some(b"2"))
                .await
                .unwrap()
        );
        s.put(Table::Leases, "a", Some(b"L")).await.unwrap();
        let ops = s.list(Table::Operations).await.unwrap();
        assert_eq!(ops, vec![("a".to_owned(), b"2".to_vec())]);
        assert!(
            s.cas(Table::Operations, "a", Some(b"2"), None)
                .await
                .unwrap()
        );
        assert!(s.list(Table::Operations).await.unwrap().is_empty());
        assert_eq!(
            s.get(Table::Leases, "a").await.unwrap(),
            Some(b"L".to_vec())
        );
    }

    #[tokio::test]
    async fn memory_store_semantics() {
        exercise(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn redb_store_semantics_and_durability() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            exercise(&s).await;
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(
            s.get(Table::Leases, "a").await.unwrap(),
            Some(b"L".to_vec())
        );
    }
}
