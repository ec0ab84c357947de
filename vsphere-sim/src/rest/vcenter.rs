//! `GET /api/vcenter/{vm,host,datastore,cluster,network}` (and `/rest/vcenter/...`) over the
//! live inventory: ids are managed object ids, filters are the documented ones.

use std::collections::HashMap;

use serde_json::Value as Json;
use vsphere_client::codec::{Any, ManagedObjectReference, ObjectAny};
use vsphere_client::rest::{
    ClusterSummary, DatastoreSummary, HostConnectionState, HostPowerState, HostSummary,
    NetworkSummary, NetworkType, RestErrorKind, VmPowerState, VmSummary,
};
use vsphere_client::types::{
    DatastoreSummary as VimDatastoreSummary, HostRuntimeInfo, HostSystemConnectionState,
    HostSystemPowerState, VirtualMachineConfigInfo, VirtualMachinePowerState,
    VirtualMachineRuntimeInfo,
};

use super::ApiError;
use crate::inventory::{Inventory, MoObject, ROOT_FOLDER};

/// vCenter refuses listings longer than this (`unable_to_allocate_resource`).
pub(crate) const MAX_RESULTS: usize = 4000;

/// Where an entity sits: its datacenter, the folders above it, its compute resource.
#[derive(Clone, Debug, Default)]
struct Place {
    datacenter: Option<String>,
    folders: Vec<String>,
    cluster: Option<String>,
}

/// Every entity reachable from the root folder, with its place, in inventory order.
fn walk(inv: &Inventory) -> Vec<(&MoObject, Place)> {
    let mut out = Vec::new();
    let mut stack = vec![(
        ManagedObjectReference::new("Folder", ROOT_FOLDER),
        Place::default(),
    )];
    while let Some((r, place)) = stack.pop() {
        let Some(o) = inv.get(&r.value) else { continue };
        let mut inner = place.clone();
        let children: Vec<ManagedObjectReference> = match o.moref.type_.as_str() {
            "Folder" => {
                inner.folders.push(o.moref.value.clone());
                inv.refs_of(&o.moref.value, "childEntity")
            }
            "Datacenter" => {
                inner.datacenter = Some(o.moref.value.clone());
                ["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"]
                    .iter()
                    .flat_map(|p| inv.refs_of(&o.moref.value, p))
                    .collect()
            }
            "ClusterComputeResource" => {
                inner.cluster = Some(o.moref.value.clone());
                inv.refs_of(&o.moref.value, "host")
            }
            "ComputeResource" => inv.refs_of(&o.moref.value, "host"),
            _ => Vec::new(),
        };
        out.push((o, place));
        for c in children.into_iter().rev() {
            stack.push((c, inner.clone()));
        }
    }
    out
}

fn data<'a, T: 'static>(o: &'a MoObject, prop: &str) -> Option<&'a T> {
    match o.prop(prop)? {
        Any::Data(d) => ObjectAny::as_any(&**d).downcast_ref::<T>(),
        _ => None,
    }
}

fn name(o: &MoObject) -> String {
    o.prop("name")
        .and_then(Any::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The query's filter values by field (`names`, from `names=` or `filter.names=`).
struct Filter {
    fields: HashMap<String, Vec<String>>,
}

impl Filter {
    fn parse(query: &[(String, String)], prefix: &str, known: &[&str]) -> Result<Self, ApiError> {
        let mut fields: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in query {
            let Some(field) = k.strip_prefix(prefix) else {
                return Err(unknown(k));
            };
            if !known.contains(&field) {
                return Err(unknown(k));
            }
            fields.entry(field.to_owned()).or_default().push(v.clone());
        }
        Ok(Self { fields })
    }

    /// Whether `value` passes the field (an absent field passes everything).
    fn accepts(&self, field: &str, value: Option<&str>) -> bool {
        self.fields
            .get(field)
            .is_none_or(|set| value.is_some_and(|v| set.iter().any(|s| s == v)))
    }

    /// Whether any of `values` passes the field.
    fn accepts_any(&self, field: &str, values: &[String]) -> bool {
        self.fields
            .get(field)
            .is_none_or(|set| values.iter().any(|v| set.contains(v)))
    }
}

fn unknown(key: &str) -> ApiError {
    ApiError::new(
        RestErrorKind::InvalidArgument,
        format!("unknown filter parameter {key:?}"),
    )
}

fn placed(f: &Filter, p: &Place) -> bool {
    f.accepts("datacenters", p.datacenter.as_deref()) && f.accepts_any("folders", &p.folders)
}

fn to_json<T: serde::Serialize>(items: Vec<T>) -> Result<Json, ApiError> {
    to_json_limited(items, MAX_RESULTS)
}

fn to_json_limited<T: serde::Serialize>(items: Vec<T>, max: usize) -> Result<Json, ApiError> {
    if items.len() > max {
        return Err(ApiError::new(
            RestErrorKind::Other("unable_to_allocate_resource".to_owned()),
            format!(
                "the listing has {} items, more than the {max} allowed: filter it",
                items.len()
            ),
        ));
    }
    serde_json::to_value(items).map_err(|e| ApiError::new(RestErrorKind::Internal, e.to_string()))
}

/// Lists `resource` (`vm`, `host`, ...) with filters from `query` (keys prefixed by `prefix`).
pub(crate) fn list(
    inv: &Inventory,
    resource: &str,
    query: &[(String, String)],
    prefix: &str,
) -> Result<Json, ApiError> {
    let entities = walk(inv);
    // Hosts' clusters, for the VM `clusters` filter.
    let host_cluster: HashMap<&str, Option<&str>> = entities
        .iter()
        .filter(|(o, _)| o.moref.type_ == "HostSystem")
        .map(|(o, p)| (o.moref.value.as_str(), p.cluster.as_deref()))
        .collect();
    let of = |t: &'static str| entities.iter().filter(move |(o, _)| o.moref.type_ == t);
    match resource {
        "vm" => {
            let f = Filter::parse(
                query,
                prefix,
                &[
                    "vms",
                    "names",
                    "folders",
                    "datacenters",
                    "hosts",
                    "clusters",
                    "resource_pools",
                    "power_states",
                ],
            )?;
            let mut out = Vec::new();
            for (o, p) in of("VirtualMachine") {
                let runtime = data::<VirtualMachineRuntimeInfo>(o, "runtime");
                let host = runtime
                    .and_then(|r| r.host.as_ref())
                    .map(|h| h.value.as_str());
                let cluster = host.and_then(|h| host_cluster.get(h).copied().flatten());
                let pool = match o.prop("resourcePool") {
                    Some(Any::MoRef(r)) => Some(r.value.as_str()),
                    _ => None,
                };
                let power_state = match runtime.map(|r| &r.power_state) {
                    Some(VirtualMachinePowerState::PoweredOn) => VmPowerState::PoweredOn,
                    Some(VirtualMachinePowerState::Suspended) => VmPowerState::Suspended,
                    _ => VmPowerState::PoweredOff,
                };
                let n = name(o);
                if !(placed(&f, p)
                    && f.accepts("vms", Some(&o.moref.value))
                    && f.accepts("names", Some(&n))
                    && f.accepts("hosts", host)
                    && f.accepts("clusters", cluster)
                    && f.accepts("resource_pools", pool)
                    && f.accepts("power_states", Some(power_state.as_str())))
                {
                    continue;
                }
                let hw =
                    data::<VirtualMachineConfigInfo>(o, "config").and_then(|c| c.hardware.as_ref());
                out.push(VmSummary {
                    vm: o.moref.value.clone(),
                    name: n,
                    power_state,
                    cpu_count: hw.map(|h| h.num_cpu as u32),
                    memory_size_mib: hw.map(|h| h.memory_mb as u64),
                });
            }
            to_json(out)
        }
        "host" => {
            let f = Filter::parse(
                query,
                prefix,
                &[
                    "hosts",
                    "names",
                    "folders",
                    "datacenters",
                    "clusters",
                    "connection_states",
                ],
            )?;
            let mut out = Vec::new();
            for (o, p) in of("HostSystem") {
                let runtime = data::<HostRuntimeInfo>(o, "runtime");
                let connection_state = match runtime.map(|r| &r.connection_state) {
                    Some(HostSystemConnectionState::Disconnected) => {
                        HostConnectionState::Disconnected
                    }
                    Some(HostSystemConnectionState::NotResponding) => {
                        HostConnectionState::NotResponding
                    }
                    _ => HostConnectionState::Connected,
                };
                let power_state = (connection_state == HostConnectionState::Connected).then(|| {
                    match runtime.map(|r| &r.power_state) {
                        Some(HostSystemPowerState::PoweredOff) => HostPowerState::PoweredOff,
                        Some(HostSystemPowerState::StandBy) => HostPowerState::Standby,
                        _ => HostPowerState::PoweredOn,
                    }
                });
                let n = name(o);
                if !(placed(&f, p)
                    && f.accepts("hosts", Some(&o.moref.value))
                    && f.accepts("names", Some(&n))
                    && f.accepts("clusters", p.cluster.as_deref())
                    && f.accepts("connection_states", Some(connection_state.as_str())))
                {
                    continue;
                }
                out.push(HostSummary {
                    host: o.moref.value.clone(),
                    name: n,
                    connection_state,
                    power_state,
                });
            }
            to_json(out)
        }
        "datastore" => {
            let f = Filter::parse(
                query,
                prefix,
                &["datastores", "names", "types", "folders", "datacenters"],
            )?;
            let mut out = Vec::new();
            for (o, p) in of("Datastore") {
                let s = data::<VimDatastoreSummary>(o, "summary");
                let type_ = s.map(|s| s.type_.clone()).unwrap_or_default();
                let n = name(o);
                if !(placed(&f, p)
                    && f.accepts("datastores", Some(&o.moref.value))
                    && f.accepts("names", Some(&n))
                    && f.accepts("types", Some(&type_)))
                {
                    continue;
                }
                let accessible = s.is_some_and(|s| s.accessible);
                out.push(DatastoreSummary {
                    datastore: o.moref.value.clone(),
                    name: n,
                    type_,
                    free_space: s.filter(|_| accessible).map(|s| s.free_space),
                    capacity: s.filter(|_| accessible).map(|s| s.capacity),
                });
            }
            to_json(out)
        }
        "cluster" => {
            let f = Filter::parse(
                query,
                prefix,
                &["clusters", "names", "folders", "datacenters"],
            )?;
            let mut out = Vec::new();
            for (o, p) in of("ClusterComputeResource") {
                let n = name(o);
                if !(placed(&f, p)
                    && f.accepts("clusters", Some(&o.moref.value))
                    && f.accepts("names", Some(&n)))
                {
                    continue;
                }
                // The simulator's clusters are configured with neither HA nor DRS.
                out.push(ClusterSummary {
                    cluster: o.moref.value.clone(),
                    name: n,
                    ha_enabled: false,
                    drs_enabled: false,
                });
            }
            to_json(out)
        }
        "network" => {
            let f = Filter::parse(
                query,
                prefix,
                &["networks", "names", "types", "folders", "datacenters"],
            )?;
            let mut out = Vec::new();
            for (o, p) in entities.iter().filter(|(o, _)| {
                matches!(
                    o.moref.type_.as_str(),
                    "Network" | "DistributedVirtualPortgroup" | "OpaqueNetwork"
                )
            }) {
                let type_ = match o.moref.type_.as_str() {
                    "DistributedVirtualPortgroup" => NetworkType::DistributedPortgroup,
                    "OpaqueNetwork" => NetworkType::OpaqueNetwork,
                    _ => NetworkType::StandardPortgroup,
                };
                let n = name(o);
                if !(placed(&f, p)
                    && f.accepts("networks", Some(&o.moref.value))
                    && f.accepts("names", Some(&n))
                    && f.accepts("types", Some(type_.as_str())))
                {
                    continue;
                }
                out.push(NetworkSummary {
                    network: o.moref.value.clone(),
                    name: n,
                    type_,
                });
            }
            to_json(out)
        }
        other => Err(ApiError::new(
            RestErrorKind::NotFound,
            format!("no vcenter resource {other:?}"),
        )),
    }
}

/// Whether the inventory has the object `type_`/`id` (tag targets are checked against it).
pub(crate) fn exists(inv: &Inventory, type_: &str, id: &str) -> bool {
    inv.resolve(&ManagedObjectReference::new(type_, id))
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InventoryShape;

    fn names(v: &Json, key: &str) -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x[key].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn lists_the_vpx_model() {
        let inv = Inventory::build(&InventoryShape::default());
        let vms = list(&inv, "vm", &[], "").unwrap();
        assert_eq!(vms.as_array().unwrap().len(), 8);
        assert!(names(&vms, "name").contains(&"DC0_H0_VM0".to_owned()));
        assert_eq!(
            list(&inv, "host", &[], "")
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            names(&list(&inv, "cluster", &[], "").unwrap(), "name"),
            ["DC0_C0"]
        );
        assert_eq!(
            names(&list(&inv, "network", &[], "").unwrap(), "name"),
            ["VM Network"]
        );
        assert!(
            names(&list(&inv, "datastore", &[], "").unwrap(), "name")
                .contains(&"LocalDS_0".to_owned())
        );
    }

    #[test]
    fn filters_narrow_and_unknown_keys_are_refused() {
        let inv = Inventory::build(&InventoryShape::default());
        let q = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let one = list(&inv, "vm", &q("filter.names", "DC0_H0_VM1"), "filter.").unwrap();
        assert_eq!(names(&one, "name"), ["DC0_H0_VM1"]);
        let cluster = list(&inv, "cluster", &[], "").unwrap();
        let id = cluster[0]["cluster"].as_str().unwrap();
        let in_cluster = list(&inv, "vm", &q("clusters", id), "").unwrap();
        assert_eq!(in_cluster.as_array().unwrap().len(), 6);
        let hosts = list(&inv, "host", &q("clusters", id), "").unwrap();
        assert_eq!(hosts.as_array().unwrap().len(), 3);
        let e = list(&inv, "vm", &q("nmes", "x"), "").unwrap_err();
        assert_eq!(e.kind, RestErrorKind::InvalidArgument);
        let e = list(&inv, "vm", &q("names", "x"), "filter.").unwrap_err();
        assert_eq!(e.kind, RestErrorKind::InvalidArgument);
    }

    #[test]
    fn too_many_results_is_the_vcenter_error() {
        // The real limit is 4,000 (`MAX_RESULTS`); the rule is the same at any size.
        let e = to_json_limited(vec![1, 2, 3], 2).unwrap_err();
        assert_eq!(
            e.kind,
            RestErrorKind::Other("unable_to_allocate_resource".into())
        );
        assert_eq!(
            to_json_limited(vec![1, 2], 2).unwrap(),
            serde_json::json!([1, 2])
        );
    }
}
