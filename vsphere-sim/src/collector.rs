//! The PropertyCollector's decisions, apart from IO: which objects a filter spec selects
//! (ObjectSpec, TraversalSpec and named, recursive SelectionSpec) and which property values it
//! reports for them (`pathSet`, `all`, nested paths), plus paging of the results.

use std::collections::{HashMap, HashSet};

use vsphere_client::codec::{Any, ManagedObjectReference};
use vsphere_client::types::{
    DynamicProperty, ObjectContent, ObjectSpec, PropertyFilterSpec, SelectionSpec, TraversalSpec,
};

use crate::inventory::{Inventory, MoObject};
use crate::path::{self, PathError};

/// Why a filter spec could not be evaluated (each becomes the fault vCenter sends).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CollectError {
    /// A property path names no property (`InvalidProperty`).
    InvalidProperty(String),
    /// An ObjectSpec names an object that does not exist (`ManagedObjectNotFound`).
    NotFound(ManagedObjectReference),
    /// A SelectionSpec names a TraversalSpec the filter does not define (`InvalidArgument`).
    UnknownSelection(String),
}

/// The managed type `t` derives from (`None` for the roots), for the types the simulator
/// serves.
fn managed_base(t: &str) -> Option<&'static str> {
    Some(match t {
        "ClusterComputeResource" => "ComputeResource",
        "ComputeResource" | "Datacenter" | "Datastore" | "Folder" | "HostSystem" | "Network"
        | "ResourcePool" | "VirtualMachine" => "ManagedEntity",
        "VirtualApp" => "ResourcePool",
        "ContainerView" | "ListView" => "ManagedObjectView",
        "ManagedObjectView" => "View",
        _ => return None,
    })
}

/// Whether managed type `t` is `base` or derives from it.
pub(crate) fn is_a(t: &str, base: &str) -> bool {
    let mut cur = Some(t);
    while let Some(c) = cur {
        if c == base {
            return true;
        }
        cur = managed_base(c);
    }
    false
}

/// Every TraversalSpec of an ObjectSpec, by name (names are global to the ObjectSpec).
fn named_traversals(spec: &ObjectSpec) -> HashMap<String, &TraversalSpec> {
    fn add<'a>(
        set: &'a [vsphere_client::codec::Poly<SelectionSpec>],
        out: &mut HashMap<String, &'a TraversalSpec>,
    ) {
        for s in set {
            if let Some(t) = s.downcast_ref::<TraversalSpec>() {
                if let Some(name) = &t.name {
                    if out.contains_key(name) {
                        continue;
                    }
                    out.insert(name.clone(), t);
                }
                add(&t.select_set, out);
            }
        }
    }
    let mut out = HashMap::new();
    add(&spec.select_set, &mut out);
    out
}

struct Walk<'a> {
    inv: &'a Inventory,
    names: HashMap<String, &'a TraversalSpec>,
    /// (object id, traversal address): each traversal is followed once per object.
    followed: HashSet<(String, usize)>,
    seen: HashSet<String>,
    out: Vec<ManagedObjectReference>,
}

impl<'a> Walk<'a> {
    fn visit(
        &mut self,
        obj: &ManagedObjectReference,
        skip: bool,
        selects: &'a [vsphere_client::codec::Poly<SelectionSpec>],
    ) -> Result<(), CollectError> {
        if !skip && self.seen.insert(obj.value.clone()) {
            self.out.push(obj.clone());
        }
        for s in selects {
            let ts: &'a TraversalSpec = if let Some(t) = s.downcast_ref::<TraversalSpec>() {
                t
            } else {
                let name = s.base().name.clone().unwrap_or_default();
                *self
                    .names
                    .get(&name)
                    .ok_or(CollectError::UnknownSelection(name))?
            };
            if !is_a(&obj.type_, &ts.type_) {
                continue;
            }
            let key = (obj.value.clone(), std::ptr::from_ref(ts) as usize);
            if !self.followed.insert(key) {
                continue;
            }
            for target in self.inv.refs_of(&obj.value, &ts.path) {
                if self.inv.get(&target.value).is_none() {
                    continue;
                }
                self.visit(&target, ts.skip.unwrap_or(false), &ts.select_set)?;
            }
        }
        Ok(())
    }
}

/// The objects a filter spec selects, in traversal order, without duplicates.
pub(crate) fn select(
    inv: &Inventory,
    spec: &PropertyFilterSpec,
) -> Result<Vec<ManagedObjectReference>, CollectError> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for os in &spec.object_set {
        if inv.resolve(&os.obj).is_none() {
            return Err(CollectError::NotFound(os.obj.clone()));
        }
        let mut w = Walk {
            inv,
            names: named_traversals(os),
            followed: HashSet::new(),
            seen: HashSet::new(),
            out: Vec::new(),
        };
        w.visit(&os.obj, os.skip.unwrap_or(false), &os.select_set)?;
        for r in w.out {
            if seen.insert(r.value.clone()) {
                all.push(r);
            }
        }
    }
    Ok(all)
}

/// What a filter spec asks of an object of one type: the union of the PropertySpecs for it.
#[derive(Debug, Default)]
pub(crate) struct Wanted<'a> {
    /// `all`: every property the object has.
    pub(crate) all: bool,
    /// The paths (in first-asked order, without repeats), each with its segments.
    pub(crate) paths: Vec<(&'a str, Vec<&'a str>)>,
}

/// The properties `spec` wants of an object of managed type `type_`; `None` when no
/// PropertySpec applies to the type (the object is then not reported).
pub(crate) fn wanted<'a>(type_: &str, spec: &'a PropertyFilterSpec) -> Option<Wanted<'a>> {
    let mut w = Wanted::default();
    let mut matched = false;
    for ps in &spec.prop_set {
        if !is_a(type_, &ps.type_) {
            continue;
        }
        matched = true;
        if ps.all.unwrap_or(false) {
            w.all = true;
        }
        for p in &ps.path_set {
            if !w.paths.iter().any(|(q, _)| q == p) {
                w.paths.push((p, p.split('.').collect()));
            }
        }
    }
    matched.then_some(w)
}

/// The properties reported for `obj`: the union of the PropertySpecs for its type.
fn properties(
    inv: &Inventory,
    obj: &MoObject,
    spec: &PropertyFilterSpec,
) -> Result<Option<ObjectContent>, CollectError> {
    let Some(wanted) = wanted(&obj.moref.type_, spec) else {
        return Ok(None);
    };
    let mut content = ObjectContent::default();
    content.obj = obj.moref.clone();
    if wanted.all {
        for (name, _) in &obj.props {
            if let Some(v) = inv.value(obj, name) {
                content.prop_set.push(prop(name, v.into_owned()));
            }
        }
        for name in Inventory::derived(&obj.moref.type_) {
            if let Some(v) = inv.value(obj, name) {
                content.prop_set.push(prop(name, v.into_owned()));
            }
        }
        return Ok(Some(content));
    }
    for (p, segments) in wanted.paths {
        let Some(top) = inv.value(obj, segments[0]) else {
            // Not stored: the simulator leaves it unset, as vCenter does for unset properties.
            continue;
        };
        let read = match top {
            // A derived value is built for this read: take it whole when the path ends here.
            std::borrow::Cow::Owned(v) if segments.len() == 1 => Ok(Some(v)),
            top => path::read(&top, &segments[1..]),
        };
        match read {
            Ok(Some(v)) => content.prop_set.push(prop(p, v)),
            Ok(None) => {}
            Err(PathError::NoSuchProperty(_)) => {
                return Err(CollectError::InvalidProperty(p.to_owned()));
            }
        }
    }
    Ok(Some(content))
}

fn prop(name: &str, val: Any) -> DynamicProperty {
    let mut d = DynamicProperty::default();
    d.name = name.to_owned();
    d.val = val;
    d
}

/// Evaluates filter specs: the object contents, in order.
pub(crate) fn retrieve(
    inv: &Inventory,
    specs: &[PropertyFilterSpec],
) -> Result<Vec<ObjectContent>, CollectError> {
    let mut out = Vec::new();
    for spec in specs {
        for r in select(inv, spec)? {
            let Some(obj) = inv.get(&r.value) else {
                continue;
            };
            if let Some(c) = properties(inv, obj, spec)? {
                out.push(c);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use vsphere_client::codec::Poly;
    use vsphere_client::types::PropertySpec;

    use super::*;
    use crate::inventory::{InventoryShape, ROOT_FOLDER};

    fn traversal(name: &str, type_: &str, path: &str, select: &[&str]) -> Poly<SelectionSpec> {
        let mut t = TraversalSpec::default();
        t.name = Some(name.to_owned());
        t.type_ = type_.to_owned();
        t.path = path.to_owned();
        t.skip = Some(false);
        t.select_set = select.iter().map(|s| named(s)).collect();
        Poly::new(t)
    }

    fn named(name: &str) -> Poly<SelectionSpec> {
        let mut s = SelectionSpec::default();
        s.name = Some(name.to_owned());
        Poly::new(s)
    }

    /// The classic "whole inventory" traversal, with named recursive selection.
    fn inventory_spec(type_: &str, paths: &[&str]) -> PropertyFilterSpec {
        let mut os = ObjectSpec::default();
        os.obj = ManagedObjectReference::new("Folder", ROOT_FOLDER);
        os.skip = Some(true);
        os.select_set = vec![
            traversal("folder", "Folder", "childEntity", &["folder", "dc"]),
            traversal("dc", "Datacenter", "vmFolder", &["folder"]),
        ];
        let mut ps = PropertySpec::default();
        ps.type_ = type_.to_owned();
        ps.path_set = paths.iter().map(|s| (*s).to_owned()).collect();
        let mut spec = PropertyFilterSpec::default();
        spec.object_set = vec![os];
        spec.prop_set = vec![ps];
        spec
    }

    #[test]
    fn recursive_named_traversal_finds_every_vm() {
        let inv = Inventory::build(&InventoryShape::default());
        let got = retrieve(
            &inv,
            &[inventory_spec(
                "VirtualMachine",
                &["name", "runtime.powerState"],
            )],
        )
        .unwrap();
        assert_eq!(got.len(), 8);
        for c in &got {
            assert_eq!(c.obj.type_, "VirtualMachine");
            assert_eq!(c.prop_set.len(), 2);
            assert_eq!(c.prop_set[1].name, "runtime.powerState");
            assert_eq!(c.prop_set[1].val.type_name(), "VirtualMachinePowerState");
        }
    }

    #[test]
    fn skip_hides_the_start_object_and_types_filter() {
        let inv = Inventory::build(&InventoryShape::default());
        let got = retrieve(&inv, &[inventory_spec("Folder", &["name"])]).unwrap();
        // Root skipped; the datacenter's vm folder reached through "dc".
        let names: Vec<_> = got
            .iter()
            .map(|c| c.prop_set[0].val.as_str().unwrap())
            .collect();
        assert_eq!(names, ["vm"]);
    }

    #[test]
    fn unknown_nested_property_is_invalid_property() {
        let inv = Inventory::build(&InventoryShape::default());
        let e = retrieve(
            &inv,
            &[inventory_spec("VirtualMachine", &["runtime.bogus"])],
        )
        .unwrap_err();
        assert_eq!(e, CollectError::InvalidProperty("runtime.bogus".into()));
    }

    #[test]
    fn unknown_selection_name_is_an_error() {
        let inv = Inventory::build(&InventoryShape::default());
        let mut spec = inventory_spec("VirtualMachine", &["name"]);
        spec.object_set[0].select_set.push(named("nope"));
        assert_eq!(
            retrieve(&inv, &[spec]).unwrap_err(),
            CollectError::UnknownSelection("nope".into())
        );
    }

    #[test]
    fn missing_start_object_is_not_found() {
        let inv = Inventory::build(&InventoryShape::default());
        let mut spec = inventory_spec("VirtualMachine", &["name"]);
        spec.object_set[0].obj = ManagedObjectReference::new("Folder", "group-404");
        assert!(matches!(
            retrieve(&inv, &[spec]),
            Err(CollectError::NotFound(_))
        ));
    }

    #[test]
    fn managed_types_derive() {
        assert!(is_a("ClusterComputeResource", "ComputeResource"));
        assert!(is_a("ClusterComputeResource", "ManagedEntity"));
        assert!(!is_a("ComputeResource", "ClusterComputeResource"));
    }
}
