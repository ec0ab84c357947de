//! First Class Disks over the vCenter `VcenterVStorageObjectManager`: [`Disks`].
//!
//! ```no_run
//! # async fn demo(client: &vsphere_client::client::Client,
//! #     ds: &vsphere_client::codec::ManagedObjectReference) -> Result<(), vsphere_client::Error> {
//! let disks = client.disks()?;
//! let disk = disks.create("scratch", 1024, ds).await?;
//! let id = vsphere_client::client::fcd_id(&disk).unwrap_or_default();
//! assert!(disks.list(ds).await?.contains(&id));
//! disks.delete(&id, ds).await?;
//! # Ok(()) }
//! ```

use super::Client;
use crate::Error;
use crate::codec::{ManagedObjectReference, Poly};
use crate::mo::VcenterVStorageObjectManager;
use crate::types::{
    BaseConfigInfoFileBackingInfo, ID, KeyValue, TaskInfo, VStorageObject,
    VStorageObjectSnapshotInfo, VslmCloneSpec, VslmCreateSpec, VslmCreateSpecDiskFileBackingSpec,
    VslmMigrateSpec, VslmRelocateSpec,
};

/// The First Class Disk operations of a vCenter (or of a simulator that serves them).
#[derive(Clone, Debug)]
pub struct Disks<'c> {
    client: &'c Client,
    manager: VcenterVStorageObjectManager,
}

fn id(s: &str) -> ID {
    ID {
        id: s.to_owned(),
        ..ID::default()
    }
}

/// The id of a disk (`config.id.id`).
pub fn fcd_id(disk: &VStorageObject) -> Option<String> {
    disk.config
        .as_ref()
        .and_then(|c| c.base_config_info.id.as_ref())
        .map(|i| i.id.clone())
}

/// The backing file of a disk (`[ds] fcd/x.vmdk`), when it is file-backed.
pub fn backing_file(disk: &VStorageObject) -> Option<String> {
    let backing = disk.config.as_ref()?.base_config_info.backing.as_ref()?;
    super::upcast::<BaseConfigInfoFileBackingInfo>(backing.as_object())
        .map(|f| f.file_path.clone())
        .filter(|p| !p.is_empty())
}

impl Client {
    /// The First Class Disk operations, if the server has a `VStorageObjectManager`.
    pub fn disks(&self) -> Result<Disks<'_>, Error> {
        let manager = self
            .service_content()
            .v_storage_object_manager
            .clone()
            .ok_or(Error::Unsupported {
                feature: "First Class Disks on a server without a VStorageObjectManager",
            })?;
        Ok(Disks {
            client: self,
            manager: VcenterVStorageObjectManager::from_reference(manager),
        })
    }
}

impl Disks<'_> {
    /// The generated wrapper, for every other method.
    pub fn mo(&self) -> &VcenterVStorageObjectManager {
        &self.manager
    }

    /// Creates a thin disk `name` of `size_mb` MiB on `datastore` and waits for it.
    pub async fn create(
        &self,
        name: &str,
        size_mb: i64,
        datastore: &ManagedObjectReference,
    ) -> Result<VStorageObject, Error> {
        self.create_with_progress(name, size_mb, datastore, |_| {})
            .await
    }

    /// [`Disks::create`], calling `on_progress` with the `CreateDisk_Task`'s `info` whenever
    /// its state or progress changes, like [`Client::wait_task_with_progress`] (the last call
    /// sees the finished task). Bad input is refused before any call, and then `on_progress`
    /// is never called.
    ///
    /// ```no_run
    /// # async fn demo(client: &vsphere_client::client::Client,
    /// #     ds: &vsphere_client::codec::ManagedObjectReference) -> Result<(), vsphere_client::Error> {
    /// let disk = client
    ///     .disks()?
    ///     .create_with_progress("scratch", 1024, ds, |info| {
    ///         println!("{:?} {}%", info.state, info.progress.unwrap_or(0));
    ///     })
    ///     .await?;
    /// # let _ = disk; Ok(()) }
    /// ```
    pub async fn create_with_progress(
        &self,
        name: &str,
        size_mb: i64,
        datastore: &ManagedObjectReference,
        on_progress: impl FnMut(&TaskInfo),
    ) -> Result<VStorageObject, Error> {
        if name.is_empty() || size_mb <= 0 {
            return Err(Error::InvalidOption {
                option: "disk",
                reason: "a disk needs a name and a size above 0 MB".to_owned(),
            });
        }
        let mut backing = VslmCreateSpecDiskFileBackingSpec {
            provisioning_type: Some("thin".to_owned()),
            ..VslmCreateSpecDiskFileBackingSpec::default()
        };
        backing.vslm_create_spec_backing_spec.datastore = datastore.clone();
        let spec = VslmCreateSpec {
            name: name.to_owned(),
            capacity_in_mb: size_mb,
            backing_spec: Some(Poly::new(backing)),
            ..VslmCreateSpec::default()
        };
        let t = self.manager.create_disk_task(self.client, &spec).await?;
        self.client.wait_task_with_progress(t, on_progress).await
    }

    /// The ids of the disks on `datastore`.
    pub async fn list(&self, datastore: &ManagedObjectReference) -> Result<Vec<String>, Error> {
        let ids = self
            .manager
            .list_v_storage_object(self.client, datastore)
            .await?;
        Ok(ids.into_iter().map(|i| i.id).collect())
    }

    /// The disk `disk_id` on `datastore`.
    pub async fn retrieve(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
    ) -> Result<VStorageObject, Error> {
        self.manager
            .retrieve_v_storage_object(self.client, &id(disk_id), datastore, &[])
            .await
    }

    /// Deletes the disk and its file, and waits.
    pub async fn delete(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
    ) -> Result<(), Error> {
        let t = self
            .manager
            .delete_v_storage_object_task(self.client, &id(disk_id), datastore)
            .await?;
        self.client.wait_task(t).await
    }

    /// Grows the disk to `new_size_mb` MiB (`ExtendDisk_Task`) and waits.
    pub async fn extend(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
        new_size_mb: i64,
    ) -> Result<(), Error> {
        let t = self
            .manager
            .extend_disk_task(self.client, &id(disk_id), datastore, new_size_mb)
            .await?;
        self.client.wait_task(t).await
    }

    /// Takes a snapshot of the disk and returns the snapshot's id.
    pub async fn snapshot(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
        description: &str,
    ) -> Result<String, Error> {
        let t = self
            .manager
            .v_storage_object_create_snapshot_task(
                self.client,
                &id(disk_id),
                datastore,
                description,
            )
            .await?;
        Ok(self.client.wait_task(t).await?.id)
    }

    /// The disk's snapshots.
    pub async fn snapshots(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
    ) -> Result<VStorageObjectSnapshotInfo, Error> {
        self.manager
            .retrieve_snapshot_info(self.client, &id(disk_id), datastore)
            .await
    }

    /// Deletes the snapshot `snapshot_id` of the disk.
    pub async fn delete_snapshot(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
        snapshot_id: &str,
    ) -> Result<(), Error> {
        let t = self
            .manager
            .delete_snapshot_task(self.client, &id(disk_id), datastore, &id(snapshot_id))
            .await?;
        self.client.wait_task(t).await
    }

    /// Sets metadata `set` and removes the keys `delete` (`VCenterUpdateVStorageObjectMetadataEx_Task`).
    pub async fn update_metadata(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
        set: &[(&str, &str)],
        delete: &[&str],
    ) -> Result<(), Error> {
        let metadata: Vec<KeyValue> = set
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
                ..KeyValue::default()
            })
            .collect();
        let delete: Vec<String> = delete.iter().map(|k| (*k).to_owned()).collect();
        let t = self
            .manager
            .v_center_update_v_storage_object_metadata_ex_task(
                self.client,
                &id(disk_id),
                datastore,
                &metadata,
                &delete,
            )
            .await?;
        self.client.wait_task(t).await.map(|_| ())
    }

    /// Copies the disk to a new disk `name` on `target` (`CloneVStorageObject_Task`, thin) and
    /// returns the new disk. vCenter 6.7+; govmomi's simulator 0.24 does not implement it (a
    /// typed `MethodNotFound`/`NotImplemented` fault: [`Error::is_not_implemented`]).
    pub async fn clone_disk(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
        name: &str,
        target: &ManagedObjectReference,
    ) -> Result<VStorageObject, Error> {
        if name.is_empty() {
            return Err(Error::InvalidOption {
                option: "disk",
                reason: "a clone needs a name".to_owned(),
            });
        }
        let spec = VslmCloneSpec {
            vslm_migrate_spec: migrate_spec(target),
            name: name.to_owned(),
            ..VslmCloneSpec::default()
        };
        let t = self
            .manager
            .clone_v_storage_object_task(self.client, &id(disk_id), datastore, &spec)
            .await?;
        self.client.wait_task(t).await
    }

    /// Moves the disk to `target` (`RelocateVStorageObject_Task`) and returns it as it is
    /// there (same id). vCenter 6.7+; not in govmomi's simulator 0.24.
    pub async fn relocate(
        &self,
        disk_id: &str,
        datastore: &ManagedObjectReference,
        target: &ManagedObjectReference,
    ) -> Result<VStorageObject, Error> {
        let spec = VslmRelocateSpec {
            vslm_migrate_spec: migrate_spec(target),
        };
        let t = self
            .manager
            .relocate_v_storage_object_task(self.client, &id(disk_id), datastore, &spec)
            .await?;
        self.client.wait_task(t).await
    }

    /// Attaches the tag `tag` of category `category` (names, as the tagging service knows
    /// them) to the disk (`AttachTagToVStorageObject`).
    pub async fn attach_tag(&self, disk_id: &str, category: &str, tag: &str) -> Result<(), Error> {
        self.manager
            .attach_tag_to_v_storage_object(self.client, &id(disk_id), category, tag)
            .await
    }

    /// Detaches the tag from the disk (`DetachTagFromVStorageObject`).
    pub async fn detach_tag(&self, disk_id: &str, category: &str, tag: &str) -> Result<(), Error> {
        self.manager
            .detach_tag_from_v_storage_object(self.client, &id(disk_id), category, tag)
            .await
    }

    /// The disk's tags as `(category, tag)` names (`ListTagsAttachedToVStorageObject`).
    pub async fn tags(&self, disk_id: &str) -> Result<Vec<(String, String)>, Error> {
        let tags = self
            .manager
            .list_tags_attached_to_v_storage_object(self.client, &id(disk_id))
            .await?;
        Ok(tags
            .into_iter()
            .map(|t| (t.parent_category_name, t.tag_name))
            .collect())
    }

    /// The ids of the disks that carry the tag (`ListVStorageObjectsAttachedToTag`).
    pub async fn with_tag(&self, category: &str, tag: &str) -> Result<Vec<String>, Error> {
        let ids = self
            .manager
            .list_v_storage_objects_attached_to_tag(self.client, category, tag)
            .await?;
        Ok(ids.into_iter().map(|i| i.id).collect())
    }
}

/// A migrate spec that puts the disk, thin, on `target`.
fn migrate_spec(target: &ManagedObjectReference) -> VslmMigrateSpec {
    let mut backing = VslmCreateSpecDiskFileBackingSpec {
        provisioning_type: Some("thin".to_owned()),
        ..VslmCreateSpecDiskFileBackingSpec::default()
    };
    backing.vslm_create_spec_backing_spec.datastore = target.clone();
    VslmMigrateSpec {
        backing_spec: Some(Poly::new(backing)),
        ..VslmMigrateSpec::default()
    }
}
