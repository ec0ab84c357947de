//! The storage lifecycle endpoint (`/vslm/sdk`, namespace `urn:vslm`): its own
//! `ServiceInstance` (`RetrieveContent`) and a `VslmVStorageObjectManager` over the same First
//! Class Disk store as vim25's `VcenterVStorageObjectManager`, so a disk created on one side
//! is seen on the other. vslm names disks by id alone (no datastore).
//!
//! vslm tasks are `VslmTask` objects: each is the vim25 `Task` of the same id seen through
//! `VslmQueryInfo` (a `VslmTaskInfo`) and `VslmQueryTaskResult` (the result, or the task's
//! fault).
//!
//! The session is vCenter's: the `vmware_soap_session` cookie or the `vcSessionCookie` SOAP
//! header.

use vsphere_client::codec::{ManagedObjectReference, Obj, Request, encode_response};
use vsphere_client::types::{
    ID, KeyValue, LocalizedMethodFault, TaskInfo, TaskInfoState, VStorageObjectStateInfo,
    VslmAboutInfo, VslmCreateSpec, VslmServiceInstanceContent, VslmTaskInfo, VslmTaskInfoState,
    VslmVsoVStorageObjectAssociations, VslmVsoVStorageObjectAssociationsVmDiskAssociation,
    VslmVsoVStorageObjectQueryResult, VslmVsoVStorageObjectQuerySpec, VslmVsoVStorageObjectResult,
};

use crate::fault::{Fault, bad_request, invalid_argument, not_found, not_implemented};
use crate::fcd::{self, Fcd};
use crate::inventory::{Inventory, uuid_for};
use crate::server::{Reply, SimState, ok, queue_task};

macro_rules! param {
    ($req:expr, $kind:ident, $name:literal) => {
        $req.$kind($name).map_err(bad_request)?
    };
}

/// The vslm managed objects' ids.
const SESSION_MANAGER: &str = "VslmSessionManager";
const OBJECT_MANAGER: &str = "VStorageObjectManager";
const LIFECYCLE_MANAGER: &str = "VslmStorageLifecycleManager";

/// `RetrieveContent` on the vslm `ServiceInstance`.
pub(crate) fn service_content(req: &Request) -> Reply {
    let mut about = VslmAboutInfo::default();
    about.name = "VMware vCenter Storage Lifecycle Manager".to_owned();
    about.full_name = "VMware vCenter Storage Lifecycle Manager 8.0.3 (vsphere-sim)".to_owned();
    about.vendor = "VMware, Inc.".to_owned();
    about.api_version = "8.0.3.0".to_owned();
    about.instance_uuid = uuid_for("vsphere-sim-vslm");
    let mut c = VslmServiceInstanceContent::default();
    c.about_info = Some(Obj::new(about));
    c.session_manager = ManagedObjectReference::new("VslmSessionManager", SESSION_MANAGER);
    c.v_storage_object_manager =
        ManagedObjectReference::new("VslmVStorageObjectManager", OBJECT_MANAGER);
    c.storage_lifecycle_manager =
        ManagedObjectReference::new("VslmStorageLifecycleManager", LIFECYCLE_MANAGER);
    ok(encode_response(req.method, &[&&c]))
}

fn vslm_task(t: &ManagedObjectReference) -> ManagedObjectReference {
    ManagedObjectReference::new("VslmTask", &t.value)
}

fn datastore_of(inv: &Inventory, disk: &str) -> Result<ManagedObjectReference, Fault> {
    Ok(fcd::get(inv, disk, None)?.datastore.clone())
}

fn id_of(v: &str) -> ID {
    let mut i = ID::default();
    i.id = v.to_owned();
    i
}

/// The vslm view of a vim25 task.
fn task_info(inv: &Inventory, this: &ManagedObjectReference) -> Result<VslmTaskInfo, Fault> {
    let info = inv
        .data::<TaskInfo>(&this.value, "info")
        .ok_or_else(|| not_found(this))?;
    let mut v = VslmTaskInfo::default();
    v.key.clone_from(&info.key);
    v.task = this.clone();
    v.name.clone_from(&info.name);
    v.description_id.clone_from(&info.description_id);
    v.entity.clone_from(&info.entity);
    v.entity_name.clone_from(&info.entity_name);
    v.state = match info.state {
        TaskInfoState::Queued => VslmTaskInfoState::Queued,
        TaskInfoState::Running => VslmTaskInfoState::Running,
        TaskInfoState::Success => VslmTaskInfoState::Success,
        _ => VslmTaskInfoState::Error,
    };
    v.cancelled = info.cancelled;
    v.cancelable = info.cancelable;
    v.error.clone_from(&info.error);
    v.result.clone_from(&info.result);
    v.progress = info.progress;
    v.queue_time = info.queue_time;
    v.start_time = info.start_time;
    v.complete_time = info.complete_time;
    v.event_chain_id = info.event_chain_id;
    Ok(v)
}

/// A disk as a query result row.
fn result_row(inv: &Inventory, f: &Fcd) -> VslmVsoVStorageObjectResult {
    let mut r = VslmVsoVStorageObjectResult::default();
    r.id = Some(Obj::new(id_of(&f.id)));
    r.name = Some(f.name.clone());
    r.capacity_in_mb = f.capacity_mb;
    r.create_time = Some(f.create_time);
    r.datastore_url = inv
        .data::<vsphere_client::types::DatastoreSummary>(&f.datastore.value, "summary")
        .map(|s| s.url.clone());
    r.disk_path = Some(f.path.clone());
    r.used_capacity_in_mb = Some(0);
    r.metadata.clone_from(&f.metadata);
    r
}

/// The value of a query field for a disk, as text (`None`: the field is unknown).
fn field_value(f: &Fcd, field: &str) -> Option<Vec<String>> {
    Some(match field {
        "id" => vec![f.id.clone()],
        "name" => vec![f.name.clone()],
        "capacity" => vec![f.capacity_mb.to_string()],
        "datastoreMoId" => vec![f.datastore.value.clone()],
        "metadataKey" => f.metadata.iter().map(|k| k.key.clone()).collect(),
        "metadataValue" => f.metadata.iter().map(|k| k.value.clone()).collect(),
        _ => return None,
    })
}

fn compare(op: &str, have: &str, want: &str) -> Option<bool> {
    let num = || Some((have.parse::<i64>().ok()?, want.parse::<i64>().ok()?));
    Some(match op {
        "equals" => have == want,
        "notEquals" => have != want,
        "contains" => have.contains(want),
        "startsWith" => have.starts_with(want),
        "endsWith" => have.ends_with(want),
        "lessThan" => num().is_some_and(|(a, b)| a < b),
        "greaterThan" => num().is_some_and(|(a, b)| a > b),
        "lessThanOrEqual" => num().is_some_and(|(a, b)| a <= b),
        "greaterThanOrEqual" => num().is_some_and(|(a, b)| a >= b),
        _ => return None,
    })
}

/// `VslmListVStorageObjectForSpec`: the disks matching every query (a query matches when one
/// of its values does), at most `max` of them, by id.
pub(crate) fn list_for_spec(
    inv: &Inventory,
    queries: &[VslmVsoVStorageObjectQuerySpec],
    max: i32,
) -> Result<VslmVsoVStorageObjectQueryResult, Fault> {
    for q in queries {
        if field_value(&dummy(), &q.query_field).is_none() {
            return Err(invalid_argument(
                format!("unknown query field {:?}", q.query_field),
                Some("queryField"),
            ));
        }
        if compare(&q.query_operator, "", "").is_none() {
            return Err(invalid_argument(
                format!("unknown query operator {:?}", q.query_operator),
                Some("queryOperator"),
            ));
        }
    }
    let max = usize::try_from(max).unwrap_or(0);
    let matching: Vec<&Fcd> = inv
        .fcds
        .values()
        .filter(|f| {
            queries.iter().all(|q| {
                let have = field_value(f, &q.query_field).unwrap_or_default();
                have.iter().any(|h| {
                    q.query_value
                        .iter()
                        .any(|w| compare(&q.query_operator, h, w).unwrap_or(false))
                })
            })
        })
        .collect();
    let mut r = VslmVsoVStorageObjectQueryResult::default();
    r.all_records_returned = matching.len() <= max;
    for f in matching.into_iter().take(max) {
        r.id.push(id_of(&f.id));
        r.query_results.push(result_row(inv, f));
    }
    Ok(r)
}

fn dummy() -> Fcd {
    Fcd {
        id: String::new(),
        name: String::new(),
        datastore: ManagedObjectReference::new("Datastore", ""),
        capacity_mb: 0,
        path: String::new(),
        create_time: vsphere_client::codec::DateTime::from_unix(0, 0),
        keep_after_delete_vm: true,
        metadata: Vec::new(),
        snapshots: Vec::new(),
    }
}

/// The vslm methods that need a session.
#[expect(
    clippy::too_many_lines,
    reason = "one match arm per method, like the vim25 dispatch"
)]
pub(crate) fn dispatch(st: &mut SimState, session: &str, mut req: Request) -> Reply {
    let name = req.method.name;
    match name {
        "VslmLogout" => {
            st.end_session(session);
            ok(encode_response(req.method, &[]))
        }
        "VslmQueryInfo" => {
            let info = task_info(&st.inv, &req.this)?;
            ok(encode_response(req.method, &[&&info]))
        }
        "VslmQueryTaskResult" => {
            let info = task_info(&st.inv, &req.this)?;
            match info.state {
                VslmTaskInfoState::Success => match &info.result {
                    Some(r) => ok(encode_response(req.method, &[&r])),
                    None => ok(encode_response(req.method, &[])),
                },
                VslmTaskInfoState::Error => Err(task_fault(info.error.as_deref())),
                _ => Err(Fault::new(
                    "The task has not completed yet.",
                    vsphere_client::types::InvalidState::default(),
                )),
            }
        }
        "VslmCreateDisk_Task" => {
            let spec: VslmCreateSpec = param!(req, one, "spec");
            let ds = spec.backing_spec.as_ref().map(|b| b.datastore.clone());
            let t = queue_task(st, session, &req, ds.as_ref(), move |st| {
                fcd::create(&mut st.inv, &spec)
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmDeleteVStorageObject_Task" => {
            let disk: ID = param!(req, one, "id");
            let ds = datastore_of(&st.inv, &disk.id)?;
            let t = queue_task(st, session, &req, Some(&ds.clone()), move |st| {
                let r = fcd::delete(&mut st.inv, &disk.id, &ds);
                if r.is_ok() {
                    st.rest.forget_fcd(&disk.id);
                }
                r
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmExtendDisk_Task" => {
            let disk: ID = param!(req, one, "id");
            let mb: i64 = param!(req, one, "newCapacityInMB");
            let ds = datastore_of(&st.inv, &disk.id)?;
            let t = queue_task(st, session, &req, Some(&ds.clone()), move |st| {
                fcd::extend(&mut st.inv, &disk.id, &ds, mb)
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmAttachDisk_Task" => {
            let disk: ID = param!(req, one, "id");
            let vm: ManagedObjectReference = param!(req, one, "vm");
            let controller: Option<i32> = param!(req, opt, "controllerKey");
            let unit: Option<i32> = param!(req, opt, "unitNumber");
            let ds = datastore_of(&st.inv, &disk.id)?;
            let t = queue_task(st, session, &req, Some(&vm.clone()), move |st| {
                fcd::attach(&mut st.inv, &vm.value, &disk.id, &ds, controller, unit)
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmCreateSnapshot_Task" => {
            let disk: ID = param!(req, one, "id");
            let description: String = param!(req, one, "description");
            let ds = datastore_of(&st.inv, &disk.id)?;
            let t = queue_task(st, session, &req, Some(&ds), move |st| {
                fcd::create_snapshot(&mut st.inv, &disk.id, None, &description)
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmRevertVStorageObject_Task" => {
            let disk: ID = param!(req, one, "id");
            let snap: ID = param!(req, one, "snapshotId");
            let ds = datastore_of(&st.inv, &disk.id)?;
            let t = queue_task(st, session, &req, Some(&ds), move |st| {
                fcd::revert(&mut st.inv, &disk.id, None, &snap.id)
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmDeleteSnapshot_Task" => {
            let disk: ID = param!(req, one, "id");
            let snap: ID = param!(req, one, "snapshotId");
            let ds = datastore_of(&st.inv, &disk.id)?;
            let t = queue_task(st, session, &req, Some(&ds), move |st| {
                fcd::delete_snapshot(&mut st.inv, &disk.id, None, &snap.id)
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmUpdateVStorageObjectMetadata_Task" => {
            let disk: ID = param!(req, one, "id");
            let metadata: Vec<KeyValue> = param!(req, many, "metadata");
            let delete_keys: Vec<String> = param!(req, many, "deleteKeys");
            let ds = datastore_of(&st.inv, &disk.id)?;
            let t = queue_task(st, session, &req, Some(&ds), move |st| {
                fcd::update_metadata(&mut st.inv, &disk.id, None, &metadata, &delete_keys)?;
                Ok(None)
            });
            ok(encode_response(req.method, &[&&vslm_task(&t)]))
        }
        "VslmRetrieveSnapshotInfo" => {
            let disk: ID = param!(req, one, "id");
            let info = fcd::snapshot_info(&st.inv, &disk.id, None)?;
            ok(encode_response(req.method, &[&&info]))
        }
        "VslmRetrieveSnapshotDetails" => {
            let disk: ID = param!(req, one, "id");
            let snap: ID = param!(req, one, "snapshotId");
            let d = fcd::snapshot_details(&st.inv, &disk.id, None, &snap.id)?;
            ok(encode_response(req.method, &[&&d]))
        }
        "VslmRenameVStorageObject" => {
            let disk: ID = param!(req, one, "id");
            let new_name: String = param!(req, one, "name");
            fcd::rename(&mut st.inv, &disk.id, None, &new_name)?;
            ok(encode_response(req.method, &[]))
        }
        "VslmRetrieveVStorageObjectMetadata" => {
            let disk: ID = param!(req, one, "id");
            let snap: Option<ID> = param!(req, opt, "snapshotId");
            let prefix: Option<String> = param!(req, opt, "prefix");
            let kv = fcd::metadata(
                &st.inv,
                &disk.id,
                None,
                snap.as_ref().map(|s| s.id.as_str()),
                prefix.as_deref(),
            )?;
            ok(encode_response(req.method, &[&kv.as_slice()]))
        }
        "VslmRetrieveVStorageObjectMetadataValue" => {
            let disk: ID = param!(req, one, "id");
            let snap: Option<ID> = param!(req, opt, "snapshotId");
            let key: String = param!(req, one, "key");
            let v = fcd::metadata_value(
                &st.inv,
                &disk.id,
                None,
                snap.as_ref().map(|s| s.id.as_str()),
                &key,
            )?;
            ok(encode_response(req.method, &[&&v]))
        }
        "VslmRetrieveVStorageObject" => {
            let disk: ID = param!(req, one, "id");
            let f = fcd::get(&st.inv, &disk.id, None)?;
            ok(encode_response(req.method, &[&&fcd::object(&st.inv, f)]))
        }
        "VslmRetrieveVStorageObjects" => {
            let ids: Vec<ID> = param!(req, many, "ids");
            let rows: Vec<VslmVsoVStorageObjectResult> = ids
                .iter()
                .map(|i| match fcd::get(&st.inv, &i.id, None) {
                    Ok(f) => result_row(&st.inv, f),
                    Err(e) => {
                        let mut r = VslmVsoVStorageObjectResult::default();
                        r.id = Some(Obj::new(i.clone()));
                        r.error = Some(Obj::new(e.localized()));
                        r
                    }
                })
                .collect();
            ok(encode_response(req.method, &[&rows.as_slice()]))
        }
        "VslmRetrieveVStorageObjectState" => {
            let disk: ID = param!(req, one, "id");
            fcd::get(&st.inv, &disk.id, None)?;
            let mut s = VStorageObjectStateInfo::default();
            s.tentative = Some(false);
            ok(encode_response(req.method, &[&&s]))
        }
        "VslmRetrieveVStorageObjectAssociations" => {
            let ids: Vec<ID> = param!(req, many, "ids");
            let out: Vec<VslmVsoVStorageObjectAssociations> = ids
                .iter()
                .map(|i| {
                    let mut a = VslmVsoVStorageObjectAssociations::default();
                    a.id = Some(Obj::new(i.clone()));
                    match fcd::get(&st.inv, &i.id, None) {
                        Err(e) => a.fault = Some(Obj::new(e.localized())),
                        Ok(_) => {
                            if let Some((vm, key)) = fcd::attached_to(&st.inv, &i.id) {
                                let mut d =
                                    VslmVsoVStorageObjectAssociationsVmDiskAssociation::default();
                                d.vm_id = vm.value;
                                d.disk_key = key;
                                a.vm_disk_association = vec![d];
                            }
                        }
                    }
                    a
                })
                .collect();
            ok(encode_response(req.method, &[&out.as_slice()]))
        }
        "VslmListVStorageObjectForSpec" => {
            let queries: Vec<VslmVsoVStorageObjectQuerySpec> = param!(req, many, "query");
            let max: i32 = param!(req, one, "maxResult");
            let r = list_for_spec(&st.inv, &queries, max)?;
            ok(encode_response(req.method, &[&&r]))
        }
        "VslmAttachTagToVStorageObject"
        | "VslmDetachTagFromVStorageObject"
        | "VslmListTagsAttachedToVStorageObject" => fcd::tag_call(st, &mut req),
        _ => Err(not_implemented(name)),
    }
}

/// The fault a failed task carries, raised again (`VslmQueryTaskResult`).
fn task_fault(error: Option<&LocalizedMethodFault>) -> Fault {
    match error {
        Some(e) => Fault::from_localized(e),
        None => Fault::new(
            "The task failed.",
            vsphere_client::types::SystemError::default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_disks() -> Inventory {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let ds = inv.of_type("Datastore").next().unwrap().moref.clone();
        for (name, mb) in [("alpha", 64), ("beta", 128), ("alpine", 256)] {
            let mut b = vsphere_client::types::VslmCreateSpecDiskFileBackingSpec::default();
            b.vslm_create_spec_backing_spec.datastore = ds.clone();
            let mut s = VslmCreateSpec::default();
            s.name = name.into();
            s.capacity_in_mb = mb;
            s.backing_spec = Some(vsphere_client::codec::Poly::new(b));
            fcd::create(&mut inv, &s).unwrap();
        }
        inv
    }

    fn query(field: &str, op: &str, values: &[&str]) -> VslmVsoVStorageObjectQuerySpec {
        let mut q = VslmVsoVStorageObjectQuerySpec::default();
        q.query_field = field.into();
        q.query_operator = op.into();
        q.query_value = values.iter().map(|v| (*v).to_owned()).collect();
        q
    }

    #[test]
    fn queries_filter_and_limit() {
        let inv = with_disks();
        let r = list_for_spec(&inv, &[query("name", "startsWith", &["al"])], 10).unwrap();
        assert_eq!(r.id.len(), 2);
        assert!(r.all_records_returned);
        let r = list_for_spec(
            &inv,
            &[
                query("name", "startsWith", &["al"]),
                query("capacity", "greaterThan", &["100"]),
            ],
            10,
        )
        .unwrap();
        assert_eq!(r.query_results.len(), 1);
        assert_eq!(r.query_results[0].name.as_deref(), Some("alpine"));
        let r = list_for_spec(&inv, &[], 2).unwrap();
        assert_eq!(r.id.len(), 2);
        assert!(!r.all_records_returned);
        let e = list_for_spec(&inv, &[query("colour", "equals", &["red"])], 10).unwrap_err();
        assert_eq!(e.type_name(), "InvalidArgument");
        let e = list_for_spec(&inv, &[query("name", "like", &["a"])], 10).unwrap_err();
        assert_eq!(e.type_name(), "InvalidArgument");
    }
}
