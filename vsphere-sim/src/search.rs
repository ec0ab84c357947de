//! SearchIndex: `FindByInventoryPath`, `FindChild` and `FindByUuid`, over the inventory tree as
//! vCenter's inventory paths name it (`DC0/vm/DC0_H0_VM0`, `DC0/host/DC0_C0/DC0_C0_H0`).

use vsphere_client::codec::ManagedObjectReference;
use vsphere_client::types::{HostListSummary, VirtualMachineConfigInfo};

use crate::inventory::{Inventory, ROOT_FOLDER};

/// The children an inventory path walks through.
fn children(inv: &Inventory, id: &str) -> Vec<ManagedObjectReference> {
    let Some(o) = inv.get(id) else {
        return Vec::new();
    };
    let props: &[&str] = match o.moref.type_.as_str() {
        "Folder" => &["childEntity"],
        "Datacenter" => &["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"],
        "ComputeResource" | "ClusterComputeResource" => &["host", "resourcePool"],
        "ResourcePool" | "VirtualApp" => &["resourcePool"],
        _ => &[],
    };
    props.iter().flat_map(|p| inv.refs_of(id, p)).collect()
}

/// Splits a path on `/`, honouring `%2f` escapes of `/` inside names (as vCenter does).
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace("%2f", "/")
                .replace("%2F", "/")
                .replace("%25", "%")
        })
        .collect()
}

/// FindChild: the direct child of `entity` named `name`.
pub(crate) fn find_child(
    inv: &Inventory,
    entity: &str,
    name: &str,
) -> Option<ManagedObjectReference> {
    children(inv, entity)
        .into_iter()
        .find(|c| inv.name_of(&c.value) == Some(name))
}

/// FindByInventoryPath: the entity at `path`, from the root folder.
pub(crate) fn find_by_inventory_path(
    inv: &Inventory,
    path: &str,
) -> Option<ManagedObjectReference> {
    let mut cur = inv.get(ROOT_FOLDER)?.moref.clone();
    for seg in segments(path) {
        cur = find_child(inv, &cur.value, &seg)?;
    }
    Some(cur)
}

/// FindByUuid: a VM by BIOS uuid (or instance uuid), or a host by hardware uuid.
pub(crate) fn find_by_uuid(
    inv: &Inventory,
    uuid: &str,
    vm_search: bool,
    instance_uuid: bool,
) -> Option<ManagedObjectReference> {
    let uuid = uuid.to_ascii_lowercase();
    if vm_search {
        inv.of_type("VirtualMachine")
            .find(|o| {
                inv.data::<VirtualMachineConfigInfo>(&o.moref.value, "config")
                    .is_some_and(|c| {
                        if instance_uuid {
                            c.instance_uuid.as_deref() == Some(uuid.as_str())
                        } else {
                            c.uuid == uuid
                        }
                    })
            })
            .map(|o| o.moref.clone())
    } else {
        inv.of_type("HostSystem")
            .find(|o| {
                inv.data::<HostListSummary>(&o.moref.value, "summary")
                    .and_then(|s| s.hardware.as_ref())
                    .is_some_and(|h| h.uuid.to_ascii_lowercase() == uuid)
            })
            .map(|o| o.moref.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_paths_resolve() {
        let inv = Inventory::build(&crate::InventoryShape::default());
        let vm = find_by_inventory_path(&inv, "DC0/vm/DC0_H0_VM0").unwrap();
        assert_eq!(vm.type_, "VirtualMachine");
        let host = find_by_inventory_path(&inv, "/DC0/host/DC0_C0/DC0_C0_H1").unwrap();
        assert_eq!(host.type_, "HostSystem");
        let pool = find_by_inventory_path(&inv, "DC0/host/DC0_C0/Resources").unwrap();
        assert_eq!(pool.type_, "ResourcePool");
        assert_eq!(
            find_by_inventory_path(&inv, "DC0").unwrap().type_,
            "Datacenter"
        );
        assert!(find_by_inventory_path(&inv, "DC0/vm/nope").is_none());
        assert_eq!(segments("a%2fb/c"), ["a/b", "c"]);
    }

    #[test]
    fn uuids_resolve() {
        let inv = Inventory::build(&crate::InventoryShape::default());
        let vm = find_by_inventory_path(&inv, "DC0/vm/DC0_H0_VM0").unwrap();
        let c = inv
            .data::<VirtualMachineConfigInfo>(&vm.value, "config")
            .unwrap();
        assert_eq!(find_by_uuid(&inv, &c.uuid, true, false), Some(vm.clone()));
        let iu = c.instance_uuid.clone().unwrap();
        assert_eq!(find_by_uuid(&inv, &iu, true, true), Some(vm));
        assert!(find_by_uuid(&inv, "00000000-0000-0000-0000-000000000000", true, false).is_none());
    }
}
