//! `--state-dir`: the inventory (managed objects with their properties, and First Class Disks)
//! saved as XML through the SDK's codec, so that it survives a restart.
//!
//! The file is `DIR/inventory.xml`, written to a temporary file and renamed over the old one.
//! Sessions, views, filters and collectors are not saved (they belong to clients that are gone
//! after a restart), nor are First Class Disk metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vsphere_client::codec::{
    Any, DateTime, Decoder, Encoder, FieldInfo, FieldKind, ManagedObjectReference, Service, Value,
};

use crate::Error;
use crate::fcd::Fcd;
use crate::inventory::{Inventory, MoObject};

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

/// The inventory as XML.
pub(crate) fn encode(inv: &Inventory) -> String {
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
        e.open("fcd", None);
        let s = field("s", FieldKind::String);
        f.id.encode_value(&mut e, "id", &s);
        f.name.encode_value(&mut e, "name", &s);
        f.datastore.encode_value(
            &mut e,
            "datastore",
            &field("datastore", FieldKind::MoRef(None)),
        );
        f.capacity_mb
            .encode_value(&mut e, "capacityMb", &field("capacityMb", FieldKind::Long));
        f.path.encode_value(&mut e, "path", &s);
        f.create_time
            .encode_value(&mut e, "created", &field("created", FieldKind::DateTime));
        f.keep_after_delete_vm
            .encode_value(&mut e, "keep", &field("keep", FieldKind::Bool));
        e.close("fcd");
    }
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

/// An inventory from its XML.
pub(crate) fn decode(xml: &str) -> Result<Inventory, String> {
    let mut d = Decoder::new(xml);
    let err = |e: vsphere_client::codec::DecodeError| e.to_string();
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
            _ => d.skip(&child).map_err(err)?,
        }
    }
    Ok(Inventory::from_parts(objects, next_id, fcds))
}

fn decode_fcd(d: &mut Decoder<'_>) -> Result<Fcd, vsphere_client::codec::DecodeError> {
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
            _ => d.skip(&c)?,
        }
    }
    Ok(f)
}

/// The state file in `dir`.
pub(crate) fn file(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Loads the saved inventory, if `dir` has one.
pub(crate) fn load(dir: &Path) -> Result<Option<Inventory>, Error> {
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
    std::fs::write(&tmp, xml).map_err(|e| state_error(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| state_error(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::types::{DatastoreSummary, VirtualMachineConfigInfo};

    #[test]
    fn the_inventory_round_trips() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let vm = inv
            .of_type("VirtualMachine")
            .next()
            .unwrap()
            .moref
            .value
            .clone();
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
                metadata: Vec::new(),
                snapshots: Vec::new(),
            },
        );
        let xml = encode(&inv);
        let back = decode(&xml).unwrap();
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
        // A second round trip gives the same bytes.
        assert_eq!(encode(&back), xml);
        assert!(decode("<nope/>").is_err());
    }

    #[test]
    fn save_and_load_through_a_directory() {
        let dir = std::env::temp_dir().join(format!("vsphere-sim-state-{}", std::process::id()));
        assert!(load(&dir).unwrap().is_none());
        let inv = Inventory::build(&crate::InventoryShape::default());
        save(&dir, &encode(&inv)).unwrap();
        assert_eq!(load(&dir).unwrap().unwrap().len(), inv.len());
        std::fs::write(file(&dir), "garbage").unwrap();
        assert!(matches!(load(&dir), Err(Error::State { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
