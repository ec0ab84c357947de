//! Incremental property updates (`WaitForUpdatesEx`): each filter remembers what it last
//! reported; a wait compares the filter's current result with that and reports `enter`,
//! `modify` (changes with op `assign`, or `remove` for a property that became unset) and
//! `leave`. Apart from IO: the server decides when to wait.

use std::collections::HashMap;

use vsphere_client::codec::{Any, ManagedObjectReference};
use vsphere_client::types::{
    ObjectUpdate, ObjectUpdateKind, PropertyChange, PropertyChangeOp, PropertyFilterSpec,
    PropertyFilterUpdate,
};

use crate::collector::{self, CollectError};
use crate::inventory::Inventory;

/// A filter created by `CreateFilter`.
#[derive(Debug)]
pub(crate) struct Filter {
    /// The filter's managed object (`PropertyFilter`).
    pub(crate) moref: ManagedObjectReference,
    /// The collector (key) that owns it.
    pub(crate) collector: String,
    pub(crate) spec: PropertyFilterSpec,
    /// What was last reported: object id -> (property name, rendering).
    reported: HashMap<String, Vec<(String, String)>>,
    /// Reporting order of the objects last reported, for `leave` updates in order.
    order: Vec<String>,
}

impl Filter {
    pub(crate) fn new(
        moref: ManagedObjectReference,
        collector: String,
        spec: PropertyFilterSpec,
    ) -> Self {
        Self {
            moref,
            collector,
            spec,
            reported: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Forgets what was reported: the next wait reports everything as `enter`.
    pub(crate) fn reset(&mut self) {
        self.reported.clear();
        self.order.clear();
    }

    /// The updates since the last report, at most `budget` object updates; the report is
    /// remembered for the objects included. Returns `None` when nothing changed.
    pub(crate) fn updates(
        &mut self,
        inv: &Inventory,
        budget: &mut usize,
        truncated: &mut bool,
    ) -> Result<Option<PropertyFilterUpdate>, CollectError> {
        let current = match collector::retrieve(inv, std::slice::from_ref(&self.spec)) {
            Ok(c) => c,
            // The filter's start object is gone (a destroyed task or VM): everything leaves.
            Err(CollectError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut present = std::collections::HashSet::new();
        for content in current {
            let id = content.obj.value.clone();
            present.insert(id.clone());
            let rendered: Vec<(String, String, Any)> = content
                .prop_set
                .into_iter()
                .map(|p| (p.name, format!("{:?}", p.val), p.val))
                .collect();
            let previous = self.reported.get(&id);
            let (kind, changes) = match previous {
                None => (
                    ObjectUpdateKind::Enter,
                    rendered
                        .iter()
                        .map(|(n, _, v)| change(n, PropertyChangeOp::Assign, Some(v.clone())))
                        .collect::<Vec<_>>(),
                ),
                Some(prev) => {
                    let mut changes = Vec::new();
                    for (n, r, v) in &rendered {
                        if prev.iter().find(|(pn, _)| pn == n).map(|(_, pr)| pr) != Some(r) {
                            changes.push(change(n, PropertyChangeOp::Assign, Some(v.clone())));
                        }
                    }
                    for (pn, _) in prev {
                        if !rendered.iter().any(|(n, _, _)| n == pn) {
                            changes.push(change(pn, PropertyChangeOp::Remove, None));
                        }
                    }
                    if changes.is_empty() {
                        continue;
                    }
                    (ObjectUpdateKind::Modify, changes)
                }
            };
            if *budget == 0 {
                *truncated = true;
                break;
            }
            *budget -= 1;
            if previous.is_none() {
                self.order.push(id.clone());
            }
            self.reported
                .insert(id, rendered.into_iter().map(|(n, r, _)| (n, r)).collect());
            let mut u = ObjectUpdate::default();
            u.kind = kind;
            u.obj = content.obj;
            u.change_set = changes;
            out.push(u);
        }
        if !*truncated {
            let gone: Vec<String> = self
                .order
                .iter()
                .filter(|id| !present.contains(*id))
                .cloned()
                .collect();
            for id in gone {
                if *budget == 0 {
                    *truncated = true;
                    break;
                }
                *budget -= 1;
                self.reported.remove(&id);
                self.order.retain(|o| *o != id);
                let type_ = inv
                    .get(&id)
                    .map_or_else(|| guess_type(&id), |o| o.moref.type_.clone());
                let mut u = ObjectUpdate::default();
                u.kind = ObjectUpdateKind::Leave;
                u.obj = ManagedObjectReference::new(type_, id);
                out.push(u);
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        let mut fu = PropertyFilterUpdate::default();
        fu.filter = self.moref.clone();
        fu.object_set = out;
        Ok(Some(fu))
    }
}

/// The managed type of a removed object, from its id's prefix (`vm-12` -> `VirtualMachine`).
fn guess_type(id: &str) -> String {
    let prefix = id.rsplit_once('-').map_or(id, |(p, _)| p);
    match prefix {
        "vm" => "VirtualMachine",
        "task" => "Task",
        "host" => "HostSystem",
        "datastore" => "Datastore",
        "group" => "Folder",
        _ => "ManagedEntity",
    }
    .to_owned()
}

fn change(name: &str, op: PropertyChangeOp, val: Option<Any>) -> PropertyChange {
    let mut c = PropertyChange::default();
    c.name = name.to_owned();
    c.op = op;
    c.val = val;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::MoObject;
    use vsphere_client::types::{ObjectSpec, PropertySpec};

    fn spec(obj: &ManagedObjectReference) -> PropertyFilterSpec {
        let mut os = ObjectSpec::default();
        os.obj = obj.clone();
        let mut ps = PropertySpec::default();
        ps.type_ = obj.type_.clone();
        ps.path_set = vec!["name".into()];
        let mut s = PropertyFilterSpec::default();
        s.object_set = vec![os];
        s.prop_set = vec![ps];
        s
    }

    #[test]
    fn enter_modify_leave() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let vm = inv.of_type("VirtualMachine").next().unwrap().moref.clone();
        let mut f = Filter::new(
            ManagedObjectReference::new("PropertyFilter", "f-1"),
            "c".into(),
            spec(&vm),
        );
        let (mut budget, mut truncated) = (100, false);
        let u = f
            .updates(&inv, &mut budget, &mut truncated)
            .unwrap()
            .unwrap();
        assert_eq!(u.object_set[0].kind, ObjectUpdateKind::Enter);
        assert_eq!(u.object_set[0].change_set[0].name, "name");
        assert!(
            f.updates(&inv, &mut budget, &mut truncated)
                .unwrap()
                .is_none()
        );
        inv.get_mut(&vm.value)
            .unwrap()
            .set("name", Any::String("renamed".into()));
        let u = f
            .updates(&inv, &mut budget, &mut truncated)
            .unwrap()
            .unwrap();
        assert_eq!(u.object_set[0].kind, ObjectUpdateKind::Modify);
        assert_eq!(
            u.object_set[0].change_set[0]
                .val
                .as_ref()
                .and_then(Any::as_str),
            Some("renamed")
        );
        let o: MoObject = inv.remove(&vm.value).unwrap();
        let u = f
            .updates(&inv, &mut budget, &mut truncated)
            .unwrap()
            .unwrap();
        assert_eq!(u.object_set[0].kind, ObjectUpdateKind::Leave);
        assert_eq!(u.object_set[0].obj, o.moref);
        assert!(!truncated);
    }

    #[test]
    fn a_budget_truncates_and_the_rest_comes_next() {
        let inv = Inventory::build(&crate::InventoryShape::default());
        let mut os = ObjectSpec::default();
        os.obj = ManagedObjectReference::new("Folder", crate::inventory::ROOT_FOLDER);
        let mut ps = PropertySpec::default();
        ps.type_ = "Folder".into();
        ps.path_set = vec!["name".into()];
        let mut s = PropertyFilterSpec::default();
        s.object_set = vec![os.clone(), {
            let mut o2 = ObjectSpec::default();
            o2.obj = inv
                .of_type("Folder")
                .find(|o| o.moref.value != crate::inventory::ROOT_FOLDER)
                .unwrap()
                .moref
                .clone();
            o2
        }];
        s.prop_set = vec![ps];
        let mut f = Filter::new(
            ManagedObjectReference::new("PropertyFilter", "f"),
            "c".into(),
            s,
        );
        let (mut budget, mut truncated) = (1, false);
        let u = f
            .updates(&inv, &mut budget, &mut truncated)
            .unwrap()
            .unwrap();
        assert_eq!(u.object_set.len(), 1);
        assert!(truncated);
        let (mut budget, mut truncated) = (10, false);
        let u = f
            .updates(&inv, &mut budget, &mut truncated)
            .unwrap()
            .unwrap();
        assert_eq!(u.object_set.len(), 1);
        assert_eq!(u.object_set[0].kind, ObjectUpdateKind::Enter);
        assert!(!truncated);
    }
}
