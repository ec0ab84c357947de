//! `Destroy_Task` on managed entities other than VMs (those are `vm::destroy`), and
//! `CreateFolder` and `CreateResourcePool` (so that a folder and a pool of one's own can exist
//! to destroy).
//!
//! - A `Folder` is destroyed when it is empty; a folder with children is `ResourceInUse` (vCenter
//!   would destroy the children with it; the simulator asks for them to be destroyed first). The
//!   root folder and a datacenter's own folders (`vm`, `host`, `datastore`, `network`) are
//!   `NotSupported`.
//! - A `ResourcePool` is destroyed and its VMs and child pools move to its parent pool, as in
//!   vCenter; a root pool (a compute resource's own) is `NotSupported`.
//! - A `HostSystem` in a cluster is removed from the cluster when it runs no VM (`ResourceInUse`
//!   otherwise); a standalone host is `NotSupported` (destroy its `ComputeResource`).
//! - A `ComputeResource` or `ClusterComputeResource` whose hosts run no VM is destroyed with its
//!   hosts and root pool; `ResourceInUse` otherwise.
//! - A `Datacenter` with any VM or compute resource is `ResourceInUse`; an empty one is
//!   destroyed with its folders, networks and datastores.

use vsphere_client::codec::{Any, ManagedObjectReference};
use vsphere_client::types::{NotSupported, ResourceInUse};

use crate::fault::{Fault, not_found};
use crate::inventory::{Inventory, MoObject, ROOT_FOLDER, refs};
use crate::task::TaskOutcome;

fn in_use(inv: &Inventory, entity: &ManagedObjectReference, why: &str) -> Fault {
    let mut f = ResourceInUse::default();
    f.type_ = Some(entity.type_.clone());
    f.name = inv.name_of(&entity.value).map(str::to_owned);
    Fault::new(
        format!(
            "The resource '{}' is in use: {why}.",
            f.name.as_deref().unwrap_or(&entity.value)
        ),
        f,
    )
}

fn not_supported(message: String) -> Fault {
    Fault::new(message, NotSupported::default())
}

/// `Destroy_Task` on `entity` (any managed entity but a VM).
pub(crate) fn destroy(inv: &mut Inventory, entity: &ManagedObjectReference) -> TaskOutcome {
    if inv.resolve(entity).is_none() {
        return Err(not_found(entity));
    }
    match entity.type_.as_str() {
        "Folder" => destroy_folder(inv, entity),
        "ResourcePool" => destroy_pool(inv, entity),
        "HostSystem" => destroy_host(inv, entity),
        "ComputeResource" | "ClusterComputeResource" => destroy_compute(inv, entity),
        "Datacenter" => destroy_datacenter(inv, entity),
        other => Err(not_supported(format!(
            "Destroy_Task on a {other} is not supported by vsphere-sim."
        ))),
    }?;
    Ok(None)
}

/// Whether `folder` is the root folder or one of a datacenter's own folders.
fn is_system_folder(inv: &Inventory, folder: &str) -> bool {
    folder == ROOT_FOLDER
        || inv.refs_of(folder, "parent").first().is_some_and(|p| {
            p.type_ == "Datacenter"
                && ["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"]
                    .iter()
                    .any(|prop| {
                        inv.refs_of(&p.value, prop)
                            .iter()
                            .any(|r| r.value == folder)
                    })
        })
}

fn destroy_folder(inv: &mut Inventory, folder: &ManagedObjectReference) -> Result<(), Fault> {
    if is_system_folder(inv, &folder.value) {
        return Err(not_supported(format!(
            "The folder {} belongs to the inventory's structure and cannot be destroyed.",
            folder.value
        )));
    }
    let children = inv.refs_of(&folder.value, "childEntity");
    if !children.is_empty() {
        return Err(in_use(
            inv,
            folder,
            &format!("it has {} child entities", children.len()),
        ));
    }
    unlink_from_parent(inv, &folder.value);
    inv.remove(&folder.value);
    Ok(())
}

/// The root pool of a compute resource is its `resourcePool`.
fn is_root_pool(inv: &Inventory, pool: &str) -> bool {
    inv.refs_of(pool, "owner").first().is_some_and(|cr| {
        inv.refs_of(&cr.value, "resourcePool")
            .iter()
            .any(|r| r.value == pool)
    })
}

fn destroy_pool(inv: &mut Inventory, pool: &ManagedObjectReference) -> Result<(), Fault> {
    if is_root_pool(inv, &pool.value) {
        return Err(not_supported(format!(
            "The resource pool {} is the root pool of its compute resource and cannot be destroyed.",
            pool.value
        )));
    }
    let Some(parent) = inv.refs_of(&pool.value, "parent").into_iter().next() else {
        return Err(not_found(pool));
    };
    // vCenter moves the pool's VMs and child pools into its parent.
    for vm in inv.refs_of(&pool.value, "vm") {
        if let Some(o) = inv.get_mut(&vm.value) {
            o.set("resourcePool", Any::MoRef(parent.clone()));
        }
        inv.push_ref(&parent.value, "vm", vm);
    }
    for child in inv.refs_of(&pool.value, "resourcePool") {
        if let Some(o) = inv.get_mut(&child.value) {
            o.set("parent", Any::MoRef(parent.clone()));
        }
        inv.push_ref(&parent.value, "resourcePool", child);
    }
    inv.remove_ref(&parent.value, "resourcePool", &pool.value);
    inv.remove(&pool.value);
    Ok(())
}

/// Removes a host and every reference to it (its compute resource, datastores, networks).
fn remove_host(inv: &mut Inventory, host: &str) {
    if let Some(cr) = inv.refs_of(host, "parent").first() {
        inv.remove_ref(&cr.value, "host", host);
    }
    for ds in inv.refs_of(host, "datastore") {
        inv.remove_ref(&ds.value, "host", host);
    }
    for net in inv.refs_of(host, "network") {
        inv.remove_ref(&net.value, "host", host);
    }
    inv.remove(host);
}

fn destroy_host(inv: &mut Inventory, host: &ManagedObjectReference) -> Result<(), Fault> {
    let parent = inv.refs_of(&host.value, "parent").into_iter().next();
    if parent
        .as_ref()
        .is_none_or(|p| p.type_ != "ClusterComputeResource")
    {
        return Err(not_supported(format!(
            "The host {} is a standalone host: destroy its ComputeResource instead.",
            host.value
        )));
    }
    let vms = inv.refs_of(&host.value, "vm").len();
    if vms > 0 {
        return Err(in_use(
            inv,
            host,
            &format!("it runs {vms} virtual machines"),
        ));
    }
    remove_host(inv, &host.value);
    Ok(())
}

/// Every pool under `pool`, `pool` included.
fn pools_under(inv: &Inventory, pool: &ManagedObjectReference) -> Vec<ManagedObjectReference> {
    let mut out = vec![pool.clone()];
    let mut i = 0;
    while i < out.len() {
        out.extend(inv.refs_of(&out[i].value, "resourcePool"));
        i += 1;
    }
    out
}

fn destroy_compute(inv: &mut Inventory, cr: &ManagedObjectReference) -> Result<(), Fault> {
    let hosts = inv.refs_of(&cr.value, "host");
    let vms: usize = hosts
        .iter()
        .map(|h| inv.refs_of(&h.value, "vm").len())
        .sum();
    if vms > 0 {
        return Err(in_use(
            inv,
            cr,
            &format!("its hosts run {vms} virtual machines"),
        ));
    }
    for h in &hosts {
        remove_host(inv, &h.value);
    }
    if let Some(root) = inv.refs_of(&cr.value, "resourcePool").first() {
        for p in pools_under(inv, root) {
            inv.remove(&p.value);
        }
    }
    unlink_from_parent(inv, &cr.value);
    inv.remove(&cr.value);
    Ok(())
}

/// Every object whose `parent` chain reaches `top` (not `top` itself).
fn descendants(inv: &Inventory, top: &str) -> Vec<String> {
    let parent_of = |o: &MoObject| match o.prop("parent") {
        Some(Any::MoRef(p)) => Some(p.value.clone()),
        _ => None,
    };
    inv.objects()
        .filter(|o| {
            let mut cur = parent_of(o);
            let mut steps = 0;
            while let Some(p) = cur {
                if p == top {
                    return true;
                }
                steps += 1;
                if steps > 64 {
                    return false;
                }
                cur = inv.get(&p).and_then(parent_of);
            }
            false
        })
        .map(|o| o.moref.value.clone())
        .collect()
}

fn destroy_datacenter(inv: &mut Inventory, dc: &ManagedObjectReference) -> Result<(), Fault> {
    let inside = descendants(inv, &dc.value);
    let busy = inside
        .iter()
        .filter_map(|id| inv.get(id))
        .filter(|o| {
            matches!(
                o.moref.type_.as_str(),
                "VirtualMachine" | "ComputeResource" | "ClusterComputeResource"
            )
        })
        .count();
    if busy > 0 {
        return Err(in_use(
            inv,
            dc,
            &format!("it holds {busy} virtual machines and compute resources"),
        ));
    }
    // What is left: its folders, networks and datastores (parented by its folders).
    for id in inside {
        inv.remove(&id);
    }
    unlink_from_parent(inv, &dc.value);
    inv.remove(&dc.value);
    Ok(())
}

fn unlink_from_parent(inv: &mut Inventory, id: &str) {
    if let Some(p) = inv.refs_of(id, "parent").first() {
        inv.remove_ref(&p.value, "childEntity", id);
    }
}

/// `CreateFolder` in `parent` (a folder): the new folder, which takes its parent's child types.
/// `DuplicateName` when a child of the parent has the name.
pub(crate) fn create_folder(
    inv: &mut Inventory,
    parent: &ManagedObjectReference,
    name: &str,
) -> Result<ManagedObjectReference, Fault> {
    if parent.type_ != "Folder" || inv.resolve(parent).is_none() {
        return Err(not_found(parent));
    }
    check_free(inv, &inv.refs_of(&parent.value, "childEntity"), name)?;
    let id = inv.new_id("group");
    let mut o = MoObject::new("Folder", &id);
    o.set("name", Any::String(name.to_owned()));
    o.set("parent", Any::MoRef(parent.clone()));
    if let Some(types) = inv.get(&parent.value).and_then(|p| p.prop("childType")) {
        o.set("childType", types.clone());
    }
    o.set("childEntity", refs(&[]));
    let r = o.moref.clone();
    inv.insert(o);
    inv.push_ref(&parent.value, "childEntity", r.clone());
    Ok(r)
}

/// `DuplicateName` when one of `siblings` is called `name`.
fn check_free(
    inv: &Inventory,
    siblings: &[ManagedObjectReference],
    name: &str,
) -> Result<(), Fault> {
    match siblings
        .iter()
        .find(|r| inv.name_of(&r.value) == Some(name))
    {
        Some(existing) => {
            let mut f = vsphere_client::types::DuplicateName::default();
            f.name = name.to_owned();
            f.object = existing.clone();
            Err(Fault::new(format!("The name '{name}' already exists."), f))
        }
        None => Ok(()),
    }
}

/// `CreateResourcePool` under `parent` (a pool): the new pool's reference. `DuplicateName` when
/// a sibling pool has the name.
pub(crate) fn create_pool(
    inv: &mut Inventory,
    parent: &ManagedObjectReference,
    name: &str,
) -> Result<ManagedObjectReference, Fault> {
    if inv.resolve(parent).is_none() {
        return Err(not_found(parent));
    }
    check_free(inv, &inv.refs_of(&parent.value, "resourcePool"), name)?;
    let owner = inv.refs_of(&parent.value, "owner").into_iter().next();
    let id = inv.new_id("resgroup");
    let mut o = MoObject::new("ResourcePool", &id);
    o.set("name", Any::String(name.to_owned()));
    o.set("parent", Any::MoRef(parent.clone()));
    if let Some(owner) = owner {
        o.set("owner", Any::MoRef(owner));
    }
    o.set("resourcePool", refs(&[]));
    let r = o.moref.clone();
    inv.insert(o);
    inv.push_ref(&parent.value, "resourcePool", r.clone());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InventoryShape;

    fn by_name(inv: &Inventory, type_: &str, name: &str) -> ManagedObjectReference {
        inv.of_type(type_)
            .find(|o| inv.name_of(&o.moref.value) == Some(name))
            .map_or_else(|| panic!("no {type_} {name}"), |o| o.moref.clone())
    }

    fn fault_name(r: TaskOutcome) -> &'static str {
        match r {
            Err(f) => f.type_name(),
            Ok(_) => "ok",
        }
    }

    #[test]
    fn system_folders_and_root_pools_are_not_supported() {
        let mut inv = Inventory::build(&InventoryShape::default());
        let root = ManagedObjectReference::new("Folder", ROOT_FOLDER);
        assert_eq!(fault_name(destroy(&mut inv, &root)), "NotSupported");
        let vm_folder = by_name(&inv, "Folder", "vm");
        assert_eq!(fault_name(destroy(&mut inv, &vm_folder)), "NotSupported");
        let root_pool = inv.of_type("ResourcePool").next().unwrap().moref.clone();
        assert_eq!(fault_name(destroy(&mut inv, &root_pool)), "NotSupported");
        let standalone = by_name(&inv, "HostSystem", "DC0_H0");
        assert_eq!(fault_name(destroy(&mut inv, &standalone)), "NotSupported");
    }

    #[test]
    fn a_pool_gives_its_vms_to_its_parent() {
        let mut inv = Inventory::build(&InventoryShape::default());
        let cluster = by_name(&inv, "ClusterComputeResource", "DC0_C0");
        let root = inv.refs_of(&cluster.value, "resourcePool")[0].clone();
        let pool = create_pool(&mut inv, &root, "child").unwrap();
        assert_eq!(
            create_pool(&mut inv, &root, "child")
                .unwrap_err()
                .type_name(),
            "DuplicateName"
        );
        let vm = inv.refs_of(&root.value, "vm")[0].clone();
        inv.get_mut(&vm.value)
            .unwrap()
            .set("resourcePool", Any::MoRef(pool.clone()));
        assert_eq!(inv.refs_of(&pool.value, "vm"), vec![vm.clone()]);
        destroy(&mut inv, &pool).unwrap();
        assert!(inv.get(&pool.value).is_none());
        assert!(inv.refs_of(&root.value, "vm").contains(&vm));
        assert_eq!(inv.refs_of(&vm.value, "resourcePool"), vec![root.clone()]);
        assert!(inv.refs_of(&root.value, "resourcePool").is_empty());
    }

    #[test]
    fn busy_hosts_and_datacenters_are_in_use() {
        let mut inv = Inventory::build(&InventoryShape::default());
        let host = by_name(&inv, "HostSystem", "DC0_C0_H0");
        assert_eq!(fault_name(destroy(&mut inv, &host)), "ResourceInUse");
        let dc = by_name(&inv, "Datacenter", "DC0");
        assert_eq!(fault_name(destroy(&mut inv, &dc)), "ResourceInUse");
        // Without its VMs, the host leaves the cluster and its datastores.
        for vm in inv.refs_of(&host.value, "vm") {
            crate::vm::power(&mut inv, &vm.value, crate::vm::PowerOp::Off).unwrap();
            crate::vm::destroy(&mut inv, &vm.value).unwrap();
        }
        destroy(&mut inv, &host).unwrap();
        let cluster = by_name(&inv, "ClusterComputeResource", "DC0_C0");
        assert_eq!(inv.refs_of(&cluster.value, "host").len(), 2);
        let ds = by_name(&inv, "Datastore", "LocalDS_0");
        assert!(!inv.refs_of(&ds.value, "host").contains(&host));
    }

    #[test]
    fn a_new_folder_can_be_destroyed_while_empty() {
        let mut inv = Inventory::build(&InventoryShape::default());
        let vm_folder = by_name(&inv, "Folder", "vm");
        let f = create_folder(&mut inv, &vm_folder, "team").unwrap();
        assert_eq!(
            create_folder(&mut inv, &vm_folder, "team")
                .unwrap_err()
                .type_name(),
            "DuplicateName"
        );
        let inner = create_folder(&mut inv, &f, "inner").unwrap();
        assert_eq!(fault_name(destroy(&mut inv, &f)), "ResourceInUse");
        destroy(&mut inv, &inner).unwrap();
        destroy(&mut inv, &f).unwrap();
        assert!(!inv.refs_of(&vm_folder.value, "childEntity").contains(&f));
        assert!(inv.get(&f.value).is_none());
    }

    #[test]
    fn an_empty_datacenter_and_folder_go() {
        let mut inv = Inventory::build(&InventoryShape {
            vms_per_host: 0,
            clusters: 0,
            standalone_hosts: 0,
            ..InventoryShape::default()
        });
        let dc = by_name(&inv, "Datacenter", "DC0");
        let before = inv.len();
        destroy(&mut inv, &dc).unwrap();
        assert!(inv.refs_of(ROOT_FOLDER, "childEntity").is_empty());
        // The datacenter, its 4 folders, a network and 2 datastores.
        assert_eq!(before - inv.len(), 8);
    }
}
