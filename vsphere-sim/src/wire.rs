//! The PropertyCollector's answers written straight from the stored objects into the response
//! buffer (`RetrieveProperties`, `RetrievePropertiesEx` and its later pages): no
//! `ObjectContent` is built and no stored property value is cloned for a read. Only values that
//! exist for the read alone (a VM's derived `summary`, primitives at the end of a nested path)
//! are made and then written.
//!
//! The bytes are those the codec writes for the same `ObjectContent`s (the tests compare them).

use vsphere_client::codec::{
    Any, DataObject, Encoder, FieldInfo, FieldKind, FieldRef, ManagedObjectReference, MethodInfo,
    Service, Value, Visitor, XsiName,
};
use vsphere_client::types::PropertyFilterSpec;

use crate::collector::{CollectError, Wanted};
use crate::inventory::{Inventory, MoObject};
use crate::path;

/// `DynamicProperty.val`: an `anyType`.
const VAL: FieldInfo = FieldInfo::new("val", FieldKind::Any, 0, Service::Vim25, 0);
/// `ObjectContent.obj`: a managed object reference.
const OBJ: FieldInfo = FieldInfo::new("obj", FieldKind::MoRef(None), 0, Service::Vim25, 0);

/// Writes one `ObjectContent` as element `element` (`objects` in a `RetrieveResult`,
/// `returnval` for `RetrieveProperties`).
pub(crate) fn write_object(
    e: &mut Encoder,
    element: &str,
    inv: &Inventory,
    obj: &MoObject,
    wanted: &Wanted<'_>,
) -> Result<(), CollectError> {
    e.open(element, None);
    obj.moref.encode_value(e, "obj", &OBJ);
    if wanted.all {
        for (name, _) in &obj.props {
            if let Some(v) = inv.value(obj, name) {
                write_any(e, name, &v);
            }
        }
        for name in Inventory::derived(&obj.moref.type_) {
            if let Some(v) = inv.value(obj, name) {
                write_any(e, name, &v);
            }
        }
    } else {
        for (p, segments) in &wanted.paths {
            write_path(e, inv, obj, p, segments)?;
        }
    }
    e.close(element);
    Ok(())
}

/// Checks that `spec`'s paths can be read on `obj` (the same error the write would give),
/// writing nothing.
pub(crate) fn check(
    inv: &Inventory,
    obj: &MoObject,
    spec: &PropertyFilterSpec,
) -> Result<(), CollectError> {
    let Some(wanted) = crate::collector::wanted(&obj.moref.type_, spec) else {
        return Ok(());
    };
    let mut scratch = Encoder::new(Service::Vim25, None);
    write_object(&mut scratch, "objects", inv, obj, &wanted)
}

fn open_prop(e: &mut Encoder, name: &str) {
    e.open("propSet", None);
    e.open("name", None);
    e.text(name);
    e.close("name");
}

fn write_any(e: &mut Encoder, name: &str, v: &Any) {
    open_prop(e, name);
    v.encode_value(e, "val", &VAL);
    e.close("propSet");
}

fn write_path(
    e: &mut Encoder,
    inv: &Inventory,
    obj: &MoObject,
    p: &str,
    segments: &[&str],
) -> Result<(), CollectError> {
    let Some(top) = inv.value(obj, segments[0]) else {
        // Not stored: the simulator leaves it unset, as vCenter does for unset properties.
        return Ok(());
    };
    if segments.len() == 1 {
        write_any(e, p, &top);
        return Ok(());
    }
    match &*top {
        Any::Data(d) => write_nested(e, p, &**d, &segments[1..]),
        Any::Absent => Ok(()),
        _ => Err(CollectError::InvalidProperty(p.to_owned())),
    }
}

/// Writes property path `rest` (at least one segment) of a data object, as `p`.
fn write_nested(
    e: &mut Encoder,
    p: &str,
    obj: &dyn DataObject,
    rest: &[&str],
) -> Result<(), CollectError> {
    let fields = obj.type_info().all_fields();
    let Some(index) = fields.iter().position(|f| f.name == rest[0]) else {
        return Err(CollectError::InvalidProperty(p.to_owned()));
    };
    let field = fields[index];
    let slot = obj.field(index);
    if rest.len() == 1 {
        write_slot(e, p, &slot, field);
        return Ok(());
    }
    // Descend: only a single data object (required or optional) has nested properties.
    if !matches!(field.kind, FieldKind::Data(_) | FieldKind::Any)
        || matches!(slot, FieldRef::Many(_))
    {
        return Err(CollectError::InvalidProperty(p.to_owned()));
    }
    let mut v = Descend {
        e,
        p,
        rest: &rest[1..],
        done: false,
        result: Ok(()),
    };
    path::walk_slot(&slot, &mut v);
    v.result
}

/// Writes the nested path when it meets the first (outermost) object of the slot.
struct Descend<'e, 'p> {
    e: &'e mut Encoder,
    p: &'p str,
    rest: &'p [&'p str],
    done: bool,
    result: Result<(), CollectError>,
}

impl Visitor for Descend<'_, '_> {
    fn visit(&mut self, object: &dyn DataObject) {
        if !self.done {
            self.done = true;
            self.result = write_nested(self.e, self.p, object, self.rest);
        }
    }
}

/// `ArrayOfVirtualDevice` for `VirtualDevice`.
fn array_name(item: &str) -> String {
    let mut s = String::with_capacity(item.len() + 7);
    s.push_str("ArrayOf");
    let mut chars = item.chars();
    if let Some(c) = chars.next() {
        s.push(c.to_ascii_uppercase());
    }
    s.extend(chars);
    s
}

/// Writes the value in a slot as property `p` (nothing when it is unset or an empty array).
fn write_slot(e: &mut Encoder, p: &str, slot: &FieldRef<'_>, field: &FieldInfo) {
    let set = match slot {
        FieldRef::One(_) => true,
        FieldRef::Opt(s) => s.is_set(),
        FieldRef::Many(s) => !s.is_empty(),
        _ => false,
    };
    if !set || field.is_secret() {
        return;
    }
    match (&field.kind, slot) {
        // Data objects, `anyType`s, enums and references name their own type inside `val`
        // when written as `anyType`: straight from the stored value.
        (
            FieldKind::Data(_) | FieldKind::Any | FieldKind::Enum(_) | FieldKind::MoRef(_),
            FieldRef::One(s),
        ) => {
            open_prop(e, p);
            s.encode(e, &VAL);
            e.close("propSet");
        }
        (
            FieldKind::Data(_) | FieldKind::Any | FieldKind::Enum(_) | FieldKind::MoRef(_),
            FieldRef::Opt(s),
        ) => {
            open_prop(e, p);
            s.encode(e, &VAL);
            e.close("propSet");
        }
        // An array of data objects: `ArrayOf{Item}` whose items are named after the item type
        // and carry `xsi:type` when they are subtypes.
        (FieldKind::Data(item), FieldRef::Many(s)) => {
            open_prop(e, p);
            e.open(
                "val",
                Some(XsiName::Vim(&array_name(item.name), item.service)),
            );
            let items = FieldInfo::new(
                item.name,
                FieldKind::Data(item),
                FieldInfo::ARRAY,
                Service::Vim25,
                0,
            );
            s.encode(e, &items);
            e.close("val");
            e.close("propSet");
        }
        // Primitives (and arrays of them) need their `xsd:` type: through `Any` (small values).
        _ => {
            if let Some(v) = path::slot_to_any(slot, field) {
                write_any(e, p, &v);
            }
        }
    }
}

/// The objects `specs` select that a PropertySpec reports: (spec index, reference), in
/// order. Each spec's paths are checked once per managed type (on its first object), so a bad
/// path fails the call before anything is written, as vCenter does.
pub(crate) fn plan(
    inv: &Inventory,
    specs: &[PropertyFilterSpec],
) -> Result<Vec<(usize, ManagedObjectReference)>, CollectError> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut checked: Vec<&str> = Vec::new();
        for r in crate::collector::select(inv, spec)? {
            let Some(obj) = inv.get(&r.value) else {
                continue;
            };
            if crate::collector::wanted(&obj.moref.type_, spec).is_none() {
                continue;
            }
            if !checked.contains(&obj.moref.type_.as_str()) {
                check(inv, obj, spec)?;
                checked.push(&obj.moref.type_);
            }
            out.push((i, r));
        }
    }
    Ok(out)
}

/// The `Wanted` of the last (spec, type) seen: objects of one type come in runs.
struct WantedCache<'s> {
    specs: &'s [PropertyFilterSpec],
    last: Option<(usize, String, Wanted<'s>)>,
}

impl<'s> WantedCache<'s> {
    fn get(&mut self, spec: usize, type_: &str) -> Option<&Wanted<'s>> {
        let hit = matches!(&self.last, Some((i, t, _)) if *i == spec && t == type_);
        if !hit {
            let w = crate::collector::wanted(type_, self.specs.get(spec)?)?;
            self.last = Some((spec, type_.to_owned(), w));
        }
        self.last.as_ref().map(|(_, _, w)| w)
    }
}

fn write_items(
    e: &mut Encoder,
    element: &str,
    inv: &Inventory,
    specs: &[PropertyFilterSpec],
    items: &[(usize, ManagedObjectReference)],
) -> Result<(), CollectError> {
    let mut cache = WantedCache { specs, last: None };
    for (i, r) in items {
        // Objects deleted since the first page drop out.
        let Some(obj) = inv.get(&r.value) else {
            continue;
        };
        if let Some(w) = cache.get(*i, &obj.moref.type_) {
            write_object(e, element, inv, obj, w)?;
        }
    }
    Ok(())
}

/// The response of `RetrieveProperties`: each object a `returnval`.
pub(crate) fn retrieve_properties(
    method: &MethodInfo,
    inv: &Inventory,
    specs: &[PropertyFilterSpec],
    items: &[(usize, ManagedObjectReference)],
) -> Result<String, CollectError> {
    let mut e = Encoder::new(method.service, None);
    e.begin_envelope();
    let name = format!("{}Response", method.name);
    e.open_ns(&name, method.service.namespace());
    write_items(&mut e, "returnval", inv, specs, items)?;
    e.close(&name);
    e.end_envelope();
    Ok(e.finish())
}

/// The response of `RetrievePropertiesEx` / `ContinueRetrievePropertiesEx`: one
/// `RetrieveResult` with the page's objects and, when more remain, the token.
pub(crate) fn retrieve_result(
    method: &MethodInfo,
    inv: &Inventory,
    specs: &[PropertyFilterSpec],
    items: &[(usize, ManagedObjectReference)],
    token: Option<&str>,
) -> Result<String, CollectError> {
    let mut e = Encoder::new(method.service, None);
    e.begin_envelope();
    let name = format!("{}Response", method.name);
    e.open_ns(&name, method.service.namespace());
    e.open("returnval", None);
    if let Some(t) = token {
        e.open("token", None);
        e.text(t);
        e.close("token");
    }
    write_items(&mut e, "objects", inv, specs, items)?;
    e.close("returnval");
    e.close(&name);
    e.end_envelope();
    Ok(e.finish())
}

#[cfg(test)]
mod tests {
    use vsphere_client::codec::{Poly, encode_response};
    use vsphere_client::mo::methods::{RETRIEVE_PROPERTIES, RETRIEVE_PROPERTIES_EX};
    use vsphere_client::types::{
        ObjectSpec, PropertySpec, RetrieveResult, SelectionSpec, TraversalSpec,
    };

    use super::*;
    use crate::inventory::{InventoryShape, ROOT_FOLDER};

    fn traversal(name: &str, type_: &str, path: &str, select: &[&str]) -> Poly<SelectionSpec> {
        let mut t = TraversalSpec::default();
        t.name = Some(name.to_owned());
        t.type_ = type_.to_owned();
        t.path = path.to_owned();
        t.select_set = select
            .iter()
            .map(|s| {
                let mut n = SelectionSpec::default();
                n.name = Some((*s).to_owned());
                Poly::new(n)
            })
            .collect();
        Poly::new(t)
    }

    fn prop_spec(type_: &str, all: bool, paths: &[&str]) -> PropertySpec {
        let mut ps = PropertySpec::default();
        ps.type_ = type_.to_owned();
        ps.all = all.then_some(true);
        ps.path_set = paths.iter().map(|s| (*s).to_owned()).collect();
        ps
    }

    /// Everything under the root folder, with the given PropertySpecs.
    fn spec(prop_set: Vec<PropertySpec>) -> PropertyFilterSpec {
        let mut os = ObjectSpec::default();
        os.obj = ManagedObjectReference::new("Folder", ROOT_FOLDER);
        os.select_set = vec![
            traversal("folder", "Folder", "childEntity", &["folder", "dc", "cr"]),
            traversal("dc", "Datacenter", "vmFolder", &["folder"]),
            traversal("dcHost", "Datacenter", "hostFolder", &["folder"]),
            traversal("dcDs", "Datacenter", "datastoreFolder", &["folder"]),
            traversal("cr", "ComputeResource", "host", &[]),
        ];
        os.select_set[0]
            .as_object_mut()
            .as_any_mut()
            .downcast_mut::<TraversalSpec>()
            .unwrap()
            .select_set
            .extend(["dcHost", "dcDs"].map(|n| {
                let mut s = SelectionSpec::default();
                s.name = Some(n.to_owned());
                Poly::new(s)
            }));
        let mut spec = PropertyFilterSpec::default();
        spec.object_set = vec![os];
        spec.prop_set = prop_set;
        spec
    }

    fn specs() -> Vec<PropertyFilterSpec> {
        vec![
            spec(vec![
                prop_spec(
                    "VirtualMachine",
                    false,
                    &[
                        "name",
                        "runtime.powerState",
                        "config.hardware.device",
                        "summary",
                        "config.hardware.numCPU",
                        "config.files.vmPathName",
                        "runtime.host",
                        "config.extraConfig",
                        "runtime.bootTime",
                        "guest",
                        "summary.config.name",
                        "config.hardware",
                    ],
                ),
                prop_spec("HostSystem", true, &[]),
                prop_spec("Datastore", false, &["summary.capacity", "summary", "vm"]),
                prop_spec("Folder", false, &["childType", "childEntity", "name"]),
            ]),
            spec(vec![prop_spec("ManagedEntity", false, &["name", "parent"])]),
        ]
    }

    #[test]
    fn written_straight_as_the_codec_writes_object_contents() {
        let mut inv = Inventory::build(&InventoryShape::default());
        // One powered-off VM: no guest identity, a different summary.
        let vm = inv.first_id("VirtualMachine");
        crate::vm::power(&mut inv, &vm, crate::vm::PowerOp::Off).unwrap();
        let specs = specs();
        let items = plan(&inv, &specs).unwrap();
        let objects = crate::collector::retrieve(&inv, &specs).unwrap();
        assert_eq!(items.len(), objects.len());
        assert!(objects.len() > 20, "{}", objects.len());

        let mut result = RetrieveResult::default();
        result.token = Some("3-1".to_owned());
        result.objects = objects.clone();
        let want = encode_response(&RETRIEVE_PROPERTIES_EX, &[&&result]);
        let got =
            retrieve_result(&RETRIEVE_PROPERTIES_EX, &inv, &specs, &items, Some("3-1")).unwrap();
        assert_eq!(got, want);
        assert!(got.contains(r#"<val xsi:type="ArrayOfVirtualDevice"><VirtualDevice xsi:type="VirtualPCIController">"#));

        let want = encode_response(&RETRIEVE_PROPERTIES, &[&objects.as_slice()]);
        let got = retrieve_properties(&RETRIEVE_PROPERTIES, &inv, &specs, &items).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn a_bad_path_fails_before_anything_is_written() {
        let inv = Inventory::build(&InventoryShape::default());
        for bad in ["config.bogus", "name.length", "config.hardware.device.key"] {
            let specs = [spec(vec![prop_spec("VirtualMachine", false, &[bad])])];
            assert_eq!(
                plan(&inv, &specs).unwrap_err(),
                CollectError::InvalidProperty(bad.to_owned()),
                "{bad}"
            );
            assert_eq!(
                crate::collector::retrieve(&inv, &specs).unwrap_err(),
                CollectError::InvalidProperty(bad.to_owned())
            );
        }
    }

    #[test]
    fn deleted_objects_drop_out_of_later_pages() {
        let mut inv = Inventory::build(&InventoryShape::default());
        let specs = [spec(vec![prop_spec("VirtualMachine", false, &["name"])])];
        let items = plan(&inv, &specs).unwrap();
        assert_eq!(items.len(), 8);
        inv.remove(&items[0].1.value);
        let got = retrieve_result(&RETRIEVE_PROPERTIES_EX, &inv, &specs, &items, None).unwrap();
        assert_eq!(got.matches("<objects>").count(), 7);
    }
}
