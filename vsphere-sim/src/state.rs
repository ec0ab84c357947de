//! `--state-dir`: everything the simulated vCenter holds, saved as XML through the SDK's codec
//! so that it survives a restart: the managed objects with their properties (tasks included),
//! the id counter, First Class Disks with their metadata and snapshots, and the tagging store
//! (categories, tags and their attachments, to inventory objects and to disks).
//!
//! The file is `DIR/inventory.xml`, written to a temporary file, flushed to disk and renamed
//! over the old one, so a crash leaves the old state or the new one, never half of one.
//! What belongs to clients that a restart disconnects is not saved, as vCenter loses it too:
//! sessions (SOAP and REST), views, property filters and collectors, paged results. Nor is
//! fault injection, a test's setting. A task still queued or running when the state was saved
//! ends in error at the next start (its work never happened), as vCenter's do after a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vsphere_client::codec::{
    Any, DateTime, DecodeError, Decoder, Encoder, FieldInfo, FieldKind, ManagedObjectReference,
    Service, Value,
};
use vsphere_client::types::{KeyValue, PbmComplianceResult, SystemError, TaskInfo, TaskInfoState};

use crate::Error;
use crate::fcd::{Fcd, FcdSnapshot};
use crate::inventory::{Inventory, MoObject};
use crate::vdisk::DiskFile;

const FILE: &str = "inventory.xml";

fn field(name: &'static str, kind: FieldKind) -> FieldInfo {
    FieldInfo::new(name, kind, 0, Service::Vim25, 0)
}

fn state_error(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::State {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

/// Whether an object is saved: not the per-session ones.
fn durable(o: &MoObject) -> bool {
    !o.moref.value.starts_with("session[")
        && !matches!(
            o.moref.type_.as_str(),
            "ContainerView" | "ListView" | "PropertyFilter"
        )
}

/// What a start loads: the inventory and the tagging store's JSON.
pub(crate) struct Saved {
    pub(crate) inv: Inventory,
    pub(crate) tags: Option<String>,
}

fn string_field() -> FieldInfo {
    field("s", FieldKind::String)
}

fn encode_key_values(e: &mut Encoder, name: &str, kvs: &[KeyValue]) {
    let s = string_field();
    for kv in kvs {
        e.open(name, None);
        kv.key.encode_value(e, "key", &s);
        kv.value.encode_value(e, "value", &s);
        e.close(name);
    }
}

fn decode_key_value(d: &mut Decoder<'_>) -> Result<KeyValue, DecodeError> {
    let s = string_field();
    let mut kv = KeyValue::default();
    while let Some(c) = d.next_child()? {
        match c.local() {
            "key" => kv.key = String::decode_value(d, &c, &s)?,
            "value" => kv.value = String::decode_value(d, &c, &s)?,
            _ => d.skip(&c)?,
        }
    }
    Ok(kv)
}

fn encode_fcd(e: &mut Encoder, f: &Fcd) {
    let s = string_field();
    let created = field("created", FieldKind::DateTime);
    e.open("fcd", None);
    f.id.encode_value(e, "id", &s);
    f.name.encode_value(e, "name", &s);
    f.datastore
        .encode_value(e, "datastore", &field("datastore", FieldKind::MoRef(None)));
    f.capacity_mb
        .encode_value(e, "capacityMb", &field("capacityMb", FieldKind::Long));
    f.path.encode_value(e, "path", &s);
    f.create_time.encode_value(e, "created", &created);
    f.keep_after_delete_vm
        .encode_value(e, "keep", &field("keep", FieldKind::Bool));
    encode_key_values(e, "metadata", &f.metadata);
    for snap in &f.snapshots {
        e.open("snapshot", None);
        snap.id.encode_value(e, "id", &s);
        snap.backing_object_id.encode_value(e, "backing", &s);
        snap.description.encode_value(e, "description", &s);
        snap.create_time.encode_value(e, "created", &created);
        encode_key_values(e, "metadata", &snap.metadata);
        e.close("snapshot");
    }
    e.close("fcd");
}

/// The simulator's state as XML: the inventory and the tagging store (JSON, as text).
pub(crate) fn encode(inv: &Inventory, tags_json: &str) -> String {
    let mut e = Encoder::new(Service::Vim25, None);
    e.begin_envelope();
    e.open_ns("simState", Service::Vim25.namespace());
    inv.next_id()
        .to_string()
        .encode_value(&mut e, "nextId", &field("nextId", FieldKind::String));
    let any = field("p", FieldKind::Any);
    let mut objects: Vec<&MoObject> = inv.objects().filter(|o| durable(o)).collect();
    objects.sort_by(|a, b| a.moref.value.cmp(&b.moref.value));
    for o in objects {
        e.open("object", None);
        o.moref
            .encode_value(&mut e, "ref", &field("ref", FieldKind::MoRef(None)));
        for (name, value) in &o.props {
            if !matches!(value, Any::Absent) {
                value.encode_value(&mut e, name, &any);
            }
        }
        e.close("object");
    }
    for f in inv.fcds.values() {
        encode_fcd(&mut e, f);
    }
    for (path, f) in &inv.disk_files {
        let s = string_field();
        e.open("diskFile", None);
        path.encode_value(&mut e, "path", &s);
        f.datastore.encode_value(
            &mut e,
            "datastore",
            &field("datastore", FieldKind::MoRef(None)),
        );
        f.capacity_kb
            .encode_value(&mut e, "capacityKb", &field("capacityKb", FieldKind::Long));
        f.uuid.encode_value(&mut e, "uuid", &s);
        f.disk_type.encode_value(&mut e, "diskType", &s);
        f.adapter_type.encode_value(&mut e, "adapterType", &s);
        e.close("diskFile");
    }
    for r in inv.compliance.values() {
        vsphere_client::codec::encode_object(&mut e, "compliance", &any, r);
    }
    e.open("tags", None);
    e.text(tags_json);
    e.close("tags");
    e.close("simState");
    e.end_envelope();
    e.finish()
}

/// Property names are `&'static str` in the inventory: a saved name maps to the one the
/// simulator itself uses, or is interned once.
fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = set.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The state from its XML.
pub(crate) fn decode(xml: &str) -> Result<Saved, String> {
    let mut d = Decoder::new(xml);
    let err = |e: DecodeError| e.to_string();
    let envelope = d.next_child().map_err(err)?.ok_or("empty file")?;
    if envelope.local() != "Envelope" {
        return Err("not a saved simulator state".into());
    }
    let state = loop {
        let child = d.next_child().map_err(err)?.ok_or("no Body")?;
        if child.local() == "Body" {
            break d.next_child().map_err(err)?.ok_or("empty Body")?;
        }
        d.skip(&child).map_err(err)?;
    };
    if state.local() != "simState" {
        return Err("not a saved simulator state".into());
    }
    let mut next_id = 0;
    let mut objects = Vec::new();
    let mut fcds = BTreeMap::new();
    let mut tags = None;
    let mut compliance = BTreeMap::new();
    let mut disk_files = BTreeMap::new();
    let any = field("p", FieldKind::Any);
    while let Some(child) = d.next_child().map_err(err)? {
        match child.local() {
            "nextId" => {
                next_id = d
                    .read_text(&child)
                    .map_err(err)?
                    .trim()
                    .parse()
                    .map_err(|_| "nextId is not a number")?;
            }
            "object" => {
                let mut moref = None;
                let mut props = Vec::new();
                while let Some(p) = d.next_child().map_err(err)? {
                    if p.local() == "ref" {
                        let f = field("ref", FieldKind::MoRef(None));
                        moref = Some(
                            ManagedObjectReference::decode_value(&mut d, &p, &f).map_err(err)?,
                        );
                    } else {
                        let name = intern(p.local());
                        props.push((name, Any::decode_value(&mut d, &p, &any).map_err(err)?));
                    }
                }
                let moref = moref.ok_or("an object without its reference")?;
                objects.push(MoObject { moref, props });
            }
            "fcd" => {
                let f = decode_fcd(&mut d).map_err(err)?;
                fcds.insert(f.id.clone(), f);
            }
            "diskFile" => {
                let (path, f) = decode_disk_file(&mut d).map_err(err)?;
                disk_files.insert(path, f);
            }
            "tags" => tags = Some(d.read_text(&child).map_err(err)?.into_owned()),
            "compliance" => match Any::decode_value(&mut d, &child, &any).map_err(err)? {
                Any::Data(r) => {
                    let r = r
                        .downcast_ref::<PbmComplianceResult>()
                        .ok_or("a compliance result of another type")?
                        .clone();
                    let key = r
                        .entity
                        .as_ref()
                        .map(|e| format!("{}:{}", e.object_type, e.key))
                        .unwrap_or_default();
                    compliance.insert(key, r);
                }
                _ => return Err("a compliance result that is not one".into()),
            },
            _ => d.skip(&child).map_err(err)?,
        }
    }
    let mut inv = Inventory::from_parts(objects, next_id, fcds);
    inv.compliance = compliance;
    inv.disk_files = disk_files;
    end_interrupted_tasks(&mut inv);
    Ok(Saved { inv, tags })
}

/// Tasks saved while queued or running never finish: they end in error, as vCenter's tasks
/// interrupted by a restart do.
fn end_interrupted_tasks(inv: &mut Inventory) {
    let ids: Vec<String> = inv
        .objects()
        .filter(|o| {
            matches!(o.prop("info"), Some(Any::Data(d))
            if d.downcast_ref::<TaskInfo>().is_some_and(|i| {
                matches!(i.state, TaskInfoState::Queued | TaskInfoState::Running)
            }))
        })
        .map(|o| o.moref.value.clone())
        .collect();
    for id in ids {
        crate::task::finish(
            inv,
            &id,
            Err(crate::fault::Fault::new(
                "The task was interrupted by a restart of the simulator.",
                SystemError::default(),
            )),
        );
    }
}

fn decode_disk_file(d: &mut Decoder<'_>) -> Result<(String, DiskFile), DecodeError> {
    let s = string_field();
    let mut path = String::new();
    let mut f = DiskFile {
        datastore: ManagedObjectReference::new("Datastore", ""),
        capacity_kb: 0,
        uuid: String::new(),
        disk_type: String::new(),
        adapter_type: String::new(),
    };
    while let Some(c) = d.next_child()? {
        match c.local() {
            "path" => path = String::decode_value(d, &c, &s)?,
            "datastore" => {
                f.datastore = ManagedObjectReference::decode_value(
                    d,
                    &c,
                    &field("datastore", FieldKind::MoRef(None)),
                )?;
            }
            "capacityKb" => {
                f.capacity_kb = i64::decode_value(d, &c, &field("capacityKb", FieldKind::Long))?;
            }
            "uuid" => f.uuid = String::decode_value(d, &c, &s)?,
            "diskType" => f.disk_type = String::decode_value(d, &c, &s)?,
            "adapterType" => f.adapter_type = String::decode_value(d, &c, &s)?,
            _ => d.skip(&c)?,
        }
    }
    Ok((path, f))
}

fn decode_snapshot(d: &mut Decoder<'_>) -> Result<FcdSnapshot, DecodeError> {
    let s = string_field();
    let mut snap = FcdSnapshot {
        id: String::new(),
        backing_object_id: String::new(),
        description: String::new(),
        create_time: DateTime::from_unix(0, 0),
        metadata: Vec::new(),
    };
    while let Some(c) = d.next_child()? {
        match c.local() {
            "id" => snap.id = String::decode_value(d, &c, &s)?,
            "backing" => snap.backing_object_id = String::decode_value(d, &c, &s)?,
            "description" => snap.description = String::decode_value(d, &c, &s)?,
            "created" => {
                snap.create_time =
                    DateTime::decode_value(d, &c, &field("created", FieldKind::DateTime))?;
            }
            "metadata" => snap.metadata.push(decode_key_value(d)?),
            _ => d.skip(&c)?,
        }
    }
    Ok(snap)
}

fn decode_fcd(d: &mut Decoder<'_>) -> Result<Fcd, DecodeError> {
    let mut f = Fcd {
        id: String::new(),
        name: String::new(),
        datastore: ManagedObjectReference::new("Datastore", ""),
        capacity_mb: 0,
        path: String::new(),
        create_time: DateTime::from_unix(0, 0),
        keep_after_delete_vm: true,
        metadata: Vec::new(),
        snapshots: Vec::new(),
    };
    let s = field("s", FieldKind::String);
    while let Some(c) = d.next_child()? {
        match c.local() {
            "id" => f.id = String::decode_value(d, &c, &s)?,
            "name" => f.name = String::decode_value(d, &c, &s)?,
            "datastore" => {
                f.datastore = ManagedObjectReference::decode_value(
                    d,
                    &c,
                    &field("datastore", FieldKind::MoRef(None)),
                )?;
            }
            "capacityMb" => {
                f.capacity_mb = i64::decode_value(d, &c, &field("capacityMb", FieldKind::Long))?;
            }
            "path" => f.path = String::decode_value(d, &c, &s)?,
            "created" => {
                f.create_time =
                    DateTime::decode_value(d, &c, &field("created", FieldKind::DateTime))?;
            }
            "keep" => {
                f.keep_after_delete_vm =
                    bool::decode_value(d, &c, &field("keep", FieldKind::Bool))?;
            }
            "metadata" => f.metadata.push(decode_key_value(d)?),
            "snapshot" => f.snapshots.push(decode_snapshot(d)?),
            _ => d.skip(&c)?,
        }
    }
    Ok(f)
}

/// The state file in `dir`.
pub(crate) fn file(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Loads the saved state, if `dir` has one.
pub(crate) fn load(dir: &Path) -> Result<Option<Saved>, Error> {
    let path = file(dir);
    match std::fs::read_to_string(&path) {
        Ok(xml) => decode(&xml).map(Some).map_err(|p| state_error(&path, p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_error(&path, e)),
    }
}

/// Saves the inventory (atomically: a temporary file renamed over the old one).
pub(crate) fn save(dir: &Path, xml: &str) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| state_error(dir, e))?;
    let path = file(dir);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(xml.as_bytes())?;
        // On disk before the rename: a crash cannot leave a renamed but empty file.
        f.sync_all()
    };
    write().map_err(|e| state_error(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| state_error(&path, e))?;
    // The rename itself is durable once the directory is synced (best effort: not every
    // file system lets a directory be opened for that).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::types::{DatastoreSummary, VirtualMachineConfigInfo};

    fn pairs(kvs: &[KeyValue]) -> Vec<(&str, &str)> {
        kvs.iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect()
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        let mut kv = KeyValue::default();
        kv.key = k.into();
        kv.value = v.into();
        kv
    }

    #[test]
    fn the_inventory_round_trips() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let vm = inv.first_id("VirtualMachine");
        inv.get_mut(&vm)
            .unwrap()
            .set("name", Any::String("renamed <&>".into()));
        let ds = inv.of_type("Datastore").next().unwrap().moref.clone();
        inv.fcds.insert(
            "d-1".into(),
            Fcd {
                id: "d-1".into(),
                name: "vol".into(),
                datastore: ds.clone(),
                capacity_mb: 64,
                path: "[LocalDS_0] fcd/d1.vmdk".into(),
                create_time: DateTime::from_unix(1_700_000_000, 0),
                keep_after_delete_vm: false,
                metadata: vec![kv("app", "db <1>")],
                snapshots: vec![FcdSnapshot {
                    id: "s-1".into(),
                    backing_object_id: "b-1".into(),
                    description: "before upgrade".into(),
                    create_time: DateTime::from_unix(1_700_000_100, 0),
                    metadata: vec![kv("app", "db <0>")],
                }],
            },
        );
        // A task caught running by the save.
        inv.insert(MoObject::new("TaskManager", crate::task::TASK_MANAGER));
        let task = crate::task::create(
            &mut inv,
            "u",
            &vsphere_client::mo::methods::POWER_ON_VM_TASK,
            None,
        );
        crate::task::start(&mut inv, &task.value);
        let mut e = vsphere_client::types::PbmServerObjectRef::default();
        e.object_type = "virtualMachine".into();
        e.key.clone_from(&vm);
        crate::pbm::check_compliance(&mut inv, std::slice::from_ref(&e), None).unwrap();
        inv.disk_files.insert(
            "[LocalDS_0] loose.vmdk".into(),
            DiskFile {
                datastore: ds.clone(),
                capacity_kb: 2048,
                uuid: "u-1".into(),
                disk_type: "thin".into(),
                adapter_type: "lsiLogic".into(),
            },
        );
        let tags = r#"{"categories":{},"tags":{},"attached":{}}"#;
        let xml = encode(&inv, tags);
        let saved = decode(&xml).unwrap();
        assert_eq!(saved.tags.as_deref(), Some(tags));
        let back = saved.inv;
        assert_eq!(back.len(), inv.len());
        assert_eq!(back.next_id(), inv.next_id());
        assert_eq!(back.name_of(&vm), Some("renamed <&>"));
        let c = back
            .data::<VirtualMachineConfigInfo>(&vm, "config")
            .unwrap();
        assert_eq!(c.hardware.as_ref().unwrap().device.len(), 4);
        assert_eq!(
            back.data::<DatastoreSummary>(&ds.value, "summary")
                .map(|s| s.free_space),
            inv.data::<DatastoreSummary>(&ds.value, "summary")
                .map(|s| s.free_space)
        );
        let f = &back.fcds["d-1"];
        assert_eq!((f.capacity_mb, f.keep_after_delete_vm), (64, false));
        assert_eq!(f.datastore, ds);
        assert_eq!(pairs(&f.metadata), [("app", "db <1>")]);
        assert_eq!(f.snapshots.len(), 1);
        let snap = &f.snapshots[0];
        assert_eq!(
            (
                snap.id.as_str(),
                snap.backing_object_id.as_str(),
                snap.description.as_str()
            ),
            ("s-1", "b-1", "before upgrade")
        );
        assert_eq!(snap.create_time, DateTime::from_unix(1_700_000_100, 0));
        assert_eq!(pairs(&snap.metadata), [("app", "db <0>")]);
        assert_eq!(back.disk_files, inv.disk_files);
        let kept = crate::pbm::fetch_compliance(&back, &[e], None);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].compliance_status, "notApplicable");
        let info = back.data::<TaskInfo>(&task.value, "info").unwrap();
        assert_eq!(info.state, TaskInfoState::Error);
        assert_eq!(
            info.error
                .as_ref()
                .unwrap()
                .fault
                .as_ref()
                .unwrap()
                .type_name(),
            "SystemError"
        );
        // A second round trip gives the same bytes (the task has ended now).
        let again = encode(&back, tags);
        assert_eq!(encode(&decode(&again).unwrap().inv, tags), again);
        assert!(decode("<nope/>").is_err());
    }

    #[test]
    fn save_and_load_through_a_directory() {
        let dir = std::env::temp_dir().join(format!("vsphere-sim-state-{}", std::process::id()));
        assert!(load(&dir).unwrap().is_none());
        let inv = Inventory::build(&crate::InventoryShape::default());
        save(&dir, &encode(&inv, "{}")).unwrap();
        assert_eq!(load(&dir).unwrap().unwrap().inv.len(), inv.len());
        assert!(!dir.join(format!("{FILE}.tmp")).exists());
        std::fs::write(file(&dir), "garbage").unwrap();
        assert!(matches!(load(&dir), Err(Error::State { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
