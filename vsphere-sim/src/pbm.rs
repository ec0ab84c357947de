//! The storage policy endpoint (`/pbm/sdk`, namespace `urn:pbm`): `PbmServiceInstance`
//! (`PbmRetrieveServiceContent`), the profile manager (`PbmQueryProfile`,
//! `PbmRetrieveContent`) with vCenter's default storage profiles (the ids govmomi's simulator
//! and vCenter use), and the placement solver (`PbmCheckCompatibility`,
//! `PbmQueryMatchingHub`) over the inventory's datastores.
//!
//! Placement is decided by each profile's one requirement: the vSAN, VVol and PMem default
//! policies need a datastore of that type (`summary.type` `vsan`, `VVOL`, `PMEM`); the VM
//! Encryption policy is a data service policy every datastore satisfies. The simulated
//! datastores are VMFS, so only the encryption policy matches them.

use vsphere_client::codec::{
    Any, DateTime, ManagedObjectReference, Obj, Poly, Request, encode_response,
};
use vsphere_client::types::{
    DatastoreSummary, InvalidArgument, PbmAboutInfo, PbmCapabilityConstraintInstance,
    PbmCapabilityConstraints, PbmCapabilityInstance, PbmCapabilityMetadataUniqueId,
    PbmCapabilityProfile, PbmCapabilityPropertyInstance, PbmCapabilitySubProfile,
    PbmCapabilitySubProfileConstraints, PbmCompatibilityCheckFault, PbmCompliancePolicyStatus,
    PbmComplianceResult, PbmPlacementCompatibilityResult, PbmPlacementHub, PbmProfile,
    PbmProfileId, PbmProfileResourceType, PbmServerObjectRef, PbmServiceInstanceContent,
};

use crate::fault::{Fault, bad_request, invalid_argument, not_implemented};
use crate::inventory::Inventory;
use crate::server::{Reply, SimState, ok};

macro_rules! param {
    ($req:expr, $kind:ident, $name:literal) => {
        $req.$kind($name).map_err(bad_request)?
    };
}

/// One default storage profile: id, name, description, the datastore type it needs (`None`:
/// any), and its capability (namespace, id, value).
struct Profile {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    needs: Option<&'static str>,
    capability: (&'static str, &'static str, i32),
}

const PROFILES: &[Profile] = &[
    Profile {
        id: "aa6d5a82-1c88-45da-85d3-3d74b91a5bad",
        name: "vSAN Default Storage Policy",
        description: "Storage policy used as default for vSAN datastores",
        needs: Some("vsan"),
        capability: ("VSAN", "hostFailuresToTolerate", 1),
    },
    Profile {
        id: "f4e5bade-15a2-4805-bf8e-52318c4ce443",
        name: "VVol No Requirements Policy",
        description: "Allow the datastore to determine the best placement strategy for storage objects",
        needs: Some("VVOL"),
        capability: ("vvol", "noRequirements", 1),
    },
    Profile {
        id: "4d5f673c-536f-11e6-beb8-9e71128cae77",
        name: "VM Encryption Policy",
        description: "Sample storage policy for VMware's VM and virtual disk encryption",
        needs: None,
        capability: ("vmwarevmcrypt", "encryption", 1),
    },
    Profile {
        id: "c268da1b-b343-49f7-a468-b1deeb7078e0",
        name: "Host-local PMem Default Storage Policy",
        description: "Storage policy used as default for Host-local PMem datastores",
        needs: Some("PMEM"),
        capability: ("PMem", "PMemType", 1),
    },
];

/// `PbmRetrieveServiceContent` (no session needed, as on vCenter).
pub(crate) fn service_content(req: &Request) -> Reply {
    let mut about = PbmAboutInfo::default();
    about.name = "PBM".to_owned();
    about.version = "8.0.3.0".to_owned();
    about.instance_uuid = crate::inventory::uuid_for("vsphere-sim-pbm");
    let mut c = PbmServiceInstanceContent::default();
    c.about_info = Some(Obj::new(about));
    c.session_manager = ManagedObjectReference::new("PbmSessionManager", "SessionManager");
    c.capability_metadata_manager =
        ManagedObjectReference::new("PbmCapabilityMetadataManager", "CapabilityMetadataManager");
    c.profile_manager = ManagedObjectReference::new("PbmProfileProfileManager", "ProfileManager");
    c.compliance_manager = ManagedObjectReference::new("PbmComplianceManager", "complianceManager");
    c.placement_solver = ManagedObjectReference::new("PbmPlacementSolver", "placementSolver");
    c.replication_manager = Some(ManagedObjectReference::new(
        "PbmReplicationManager",
        "ReplicationManager",
    ));
    ok(encode_response(req.method, &[&&c]))
}

fn profile_id(id: &str) -> PbmProfileId {
    let mut p = PbmProfileId::default();
    p.unique_id = id.to_owned();
    p
}

fn find(id: &str) -> Result<&'static Profile, Fault> {
    PROFILES.iter().find(|p| p.id == id).ok_or_else(|| {
        let mut f = InvalidArgument::default();
        f.invalid_property = Some("profileId".to_owned());
        Fault::new(format!("No storage profile with id {id:?}."), f)
    })
}

/// The profile as `PbmRetrieveContent` returns it (a `PbmCapabilityProfile`).
fn content(p: &Profile) -> PbmCapabilityProfile {
    let mut prop = PbmCapabilityPropertyInstance::default();
    prop.id = p.capability.1.to_owned();
    prop.value = Any::Int(p.capability.2);
    let mut constraint = PbmCapabilityConstraintInstance::default();
    constraint.property_instance = vec![prop];
    let mut uid = PbmCapabilityMetadataUniqueId::default();
    uid.namespace = p.capability.0.to_owned();
    uid.id = p.capability.1.to_owned();
    let mut cap = PbmCapabilityInstance::default();
    cap.id = Some(Obj::new(uid));
    cap.constraint = vec![constraint];
    let mut sub = PbmCapabilitySubProfile::default();
    sub.name = format!("{} rule-set 1", p.name);
    sub.capability = vec![cap];
    let mut constraints = PbmCapabilitySubProfileConstraints::default();
    constraints.sub_profiles = vec![sub];
    let mut base = PbmProfile::default();
    base.profile_id = Some(Obj::new(profile_id(p.id)));
    base.name = p.name.to_owned();
    base.description = Some(p.description.to_owned());
    base.creation_time = DateTime::from_unix(1_600_000_000, 0);
    base.created_by = "Temporary user handle".to_owned();
    base.last_updated_time = base.creation_time;
    base.last_updated_by = "Temporary user handle".to_owned();
    let mut rt = PbmProfileResourceType::default();
    rt.resource_type = "STORAGE".to_owned();
    let mut c = PbmCapabilityProfile::default();
    c.pbm_profile = base;
    c.profile_category = "REQUIREMENT".to_owned();
    c.resource_type = Some(Obj::new(rt));
    c.constraints = Some(Poly::<PbmCapabilityConstraints>::new(constraints));
    c.generation_id = Some(0);
    c.is_default = true;
    c.system_created_profile_type =
        Some("VsanDefaultProfile".to_owned()).filter(|_| p.needs == Some("vsan"));
    c
}

fn hub(ds: &ManagedObjectReference) -> PbmPlacementHub {
    let mut h = PbmPlacementHub::default();
    h.hub_type = "Datastore".to_owned();
    h.hub_id.clone_from(&ds.value);
    h
}

/// The hubs to search: the given ones (each must be an existing datastore), else every
/// datastore.
fn hubs(inv: &Inventory, given: &[PbmPlacementHub]) -> Result<Vec<ManagedObjectReference>, Fault> {
    if given.is_empty() {
        let mut all: Vec<ManagedObjectReference> =
            inv.of_type("Datastore").map(|o| o.moref.clone()).collect();
        all.sort_by(|a, b| a.value.cmp(&b.value));
        return Ok(all);
    }
    given
        .iter()
        .map(|h| {
            let r = ManagedObjectReference::new(&h.hub_type, &h.hub_id);
            if h.hub_type == "Datastore" && inv.resolve(&r).is_some() {
                Ok(r)
            } else {
                let mut f = vsphere_client::types::PbmNonExistentHubs::default();
                f.hubs = vec![h.clone()];
                Err(Fault::new(
                    format!("Hub {}:{} does not exist.", h.hub_type, h.hub_id),
                    f,
                ))
            }
        })
        .collect()
}

/// Whether a datastore satisfies a profile.
fn satisfies(inv: &Inventory, ds: &ManagedObjectReference, p: &Profile) -> bool {
    p.needs.is_none_or(|t| {
        inv.data::<DatastoreSummary>(&ds.value, "summary")
            .is_some_and(|s| s.type_.eq_ignore_ascii_case(t))
    })
}

/// `PbmCheckCompatibility`: one result per hub, with an error for a hub the profile does not
/// fit.
pub(crate) fn check_compatibility(
    inv: &Inventory,
    given: &[PbmPlacementHub],
    profile: &str,
) -> Result<Vec<PbmPlacementCompatibilityResult>, Fault> {
    let p = find(profile)?;
    Ok(hubs(inv, given)?
        .iter()
        .map(|ds| {
            let mut r = PbmPlacementCompatibilityResult::default();
            r.hub = Some(Obj::new(hub(ds)));
            if !satisfies(inv, ds, p) {
                let mut f = PbmCompatibilityCheckFault::default();
                f.hub = Some(Obj::new(hub(ds)));
                let name = inv.name_of(&ds.value).unwrap_or(&ds.value);
                r.error = vec![
                    Fault::new(
                        format!(
                            "Datastore {name} does not satisfy storage policy {:?}: it needs a {} datastore.",
                            p.name,
                            p.needs.unwrap_or_default()
                        ),
                        f,
                    )
                    .localized(),
                ];
            }
            r
        })
        .collect())
}

/// The pbm methods that need a session.
/// The datastores an entity's storage is on: a VM's (`virtualMachine`, key `vm-42`; its
/// disks' datastores too), one virtual disk of a VM (`virtualDiskId`, key `vm-42:2000`), or a
/// First Class Disk (`virtualDiskUUID`, key the disk's id). `Ok(None)` when the object does
/// not exist; an error for an object type compliance does not apply to.
fn entity_datastores(
    inv: &Inventory,
    e: &PbmServerObjectRef,
) -> Result<Option<Vec<ManagedObjectReference>>, Fault> {
    let vm_exists = |id: &str| {
        inv.resolve(&ManagedObjectReference::new("VirtualMachine", id))
            .is_some()
    };
    let disk_datastores = |vm: &str, key: Option<i32>| -> Vec<ManagedObjectReference> {
        crate::vm::device_list(inv, vm)
            .unwrap_or_default()
            .iter()
            .filter(|d| crate::devices::class(d) == crate::devices::Class::Disk)
            .filter(|d| key.is_none_or(|k| d.key == k))
            .filter_map(|d| crate::vm::disk_file(d).1)
            .collect()
    };
    Ok(match e.object_type.as_str() {
        "virtualMachine" | "virtualMachineAndDisks" => {
            if !vm_exists(&e.key) {
                return Ok(None);
            }
            let mut all = inv.refs_of(&e.key, "datastore");
            for ds in disk_datastores(&e.key, None) {
                if !all.contains(&ds) {
                    all.push(ds);
                }
            }
            Some(all)
        }
        "virtualDiskId" => {
            let Some((vm, key)) = e.key.split_once(':') else {
                return Err(invalid_argument(
                    format!("a virtualDiskId key is VM:DEVICEKEY, not {:?}", e.key),
                    Some("entities"),
                ));
            };
            let key: i32 = key.parse().map_err(|_| {
                invalid_argument(format!("{key:?} is not a device key"), Some("entities"))
            })?;
            let found = disk_datastores(vm, Some(key));
            (vm_exists(vm) && !found.is_empty()).then_some(found)
        }
        "virtualDiskUUID" => inv.fcds.get(&e.key).map(|f| vec![f.datastore.clone()]),
        other => {
            return Err(invalid_argument(
                format!("compliance does not apply to objects of type {other:?}"),
                Some("entities"),
            ));
        }
    })
}

/// `PbmCheckCompliance`: each entity against `profile` (its storage must be on datastores
/// that satisfy the profile); without a profile, an entity has no storage policy associated
/// (the simulator associates none), so the answer is `notApplicable`. The results are kept
/// for `PbmFetchComplianceResult`.
pub(crate) fn check_compliance(
    inv: &mut Inventory,
    entities: &[PbmServerObjectRef],
    profile: Option<&str>,
) -> Result<Vec<PbmComplianceResult>, Fault> {
    if entities.is_empty() {
        return Err(invalid_argument("no entities", Some("entities")));
    }
    let profile = profile.map(find).transpose()?;
    let now = crate::server::now();
    let mut out = Vec::new();
    for e in entities {
        let mut r = PbmComplianceResult::default();
        r.check_time = now;
        r.entity = Some(Obj::new(e.clone()));
        r.profile = profile.map(|p| Obj::new(profile_id(p.id)));
        r.compliance_task_status = Some("success".to_owned());
        match (entity_datastores(inv, e)?, profile) {
            (None, _) => {
                r.compliance_status = "unknown".to_owned();
                r.error_cause = vec![
                    Fault::new(
                        format!("The object {}:{} does not exist.", e.object_type, e.key),
                        vsphere_client::types::NotFound::default(),
                    )
                    .localized(),
                ];
            }
            (Some(_), None) => r.compliance_status = "notApplicable".to_owned(),
            (Some(datastores), Some(p)) => {
                if datastores.iter().all(|ds| satisfies(inv, ds, p)) {
                    r.compliance_status = "compliant".to_owned();
                } else {
                    r.compliance_status = "nonCompliant".to_owned();
                    let mut violated = PbmCompliancePolicyStatus::default();
                    violated.expected_value = content(p)
                        .constraints
                        .as_ref()
                        .and_then(|c| c.downcast_ref::<PbmCapabilitySubProfileConstraints>())
                        .and_then(|c| c.sub_profiles.first())
                        .and_then(|s| s.capability.first())
                        .map(|c| Obj::new(c.clone()));
                    r.violated_policies = vec![violated];
                }
            }
        }
        inv.compliance.insert(compliance_key(e), r.clone());
        out.push(r);
    }
    Ok(out)
}

fn compliance_key(e: &PbmServerObjectRef) -> String {
    format!("{}:{}", e.object_type, e.key)
}

/// `PbmFetchComplianceResult`: the last check's result of each entity that has one (for
/// `profile` only, when given).
pub(crate) fn fetch_compliance(
    inv: &Inventory,
    entities: &[PbmServerObjectRef],
    profile: Option<&str>,
) -> Vec<PbmComplianceResult> {
    entities
        .iter()
        .filter_map(|e| inv.compliance.get(&compliance_key(e)))
        .filter(|r| profile.is_none_or(|p| r.profile.as_ref().is_some_and(|id| id.unique_id == p)))
        .cloned()
        .collect()
}

pub(crate) fn dispatch(st: &mut SimState, mut req: Request) -> Reply {
    let name = req.method.name;
    match name {
        "PbmQueryProfile" => {
            let rt: PbmProfileResourceType = param!(req, one, "resourceType");
            let category: Option<String> = param!(req, opt, "profileCategory");
            if rt.resource_type != "STORAGE" {
                return Err(invalid_argument(
                    format!("unknown resource type {:?}", rt.resource_type),
                    Some("resourceType"),
                ));
            }
            let ids: Vec<PbmProfileId> = PROFILES
                .iter()
                .filter(|_| category.as_deref().is_none_or(|c| c == "REQUIREMENT"))
                .map(|p| profile_id(p.id))
                .collect();
            ok(encode_response(req.method, &[&ids.as_slice()]))
        }
        "PbmRetrieveContent" => {
            let ids: Vec<PbmProfileId> = param!(req, many, "profileIds");
            if ids.is_empty() {
                return Err(invalid_argument("no profile ids", Some("profileIds")));
            }
            let profiles: Vec<Poly<PbmProfile>> = ids
                .iter()
                .map(|i| find(&i.unique_id).map(|p| Poly::new(content(p))))
                .collect::<Result<_, _>>()?;
            ok(encode_response(req.method, &[&profiles.as_slice()]))
        }
        "PbmCheckCompatibility" => {
            let given: Vec<PbmPlacementHub> = param!(req, many, "hubsToSearch");
            let profile: PbmProfileId = param!(req, one, "profile");
            let r = check_compatibility(&st.inv, &given, &profile.unique_id)?;
            ok(encode_response(req.method, &[&r.as_slice()]))
        }
        "PbmQueryMatchingHub" => {
            let given: Vec<PbmPlacementHub> = param!(req, many, "hubsToSearch");
            let profile: PbmProfileId = param!(req, one, "profile");
            let matching: Vec<PbmPlacementHub> =
                check_compatibility(&st.inv, &given, &profile.unique_id)?
                    .into_iter()
                    .filter(|r| r.error.is_empty())
                    .filter_map(|r| r.hub.map(|h| (*h).clone()))
                    .collect();
            ok(encode_response(req.method, &[&matching.as_slice()]))
        }
        "PbmCheckCompliance" | "PbmFetchComplianceResult" => {
            let entities: Vec<PbmServerObjectRef> = param!(req, many, "entities");
            let profile: Option<PbmProfileId> = param!(req, opt, "profile");
            let profile = profile.as_ref().map(|p| p.unique_id.as_str());
            let results = if name == "PbmCheckCompliance" {
                check_compliance(&mut st.inv, &entities, profile)?
            } else {
                fetch_compliance(&st.inv, &entities, profile)
            };
            ok(encode_response(req.method, &[&results.as_slice()]))
        }
        _ => Err(not_implemented(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_encryption_policy_fits_vmfs_datastores() {
        let inv = Inventory::build(&crate::InventoryShape::default());
        let all = check_compatibility(&inv, &[], PROFILES[2].id).unwrap();
        assert_eq!(all.len(), inv.of_type("Datastore").count());
        assert!(all.iter().all(|r| r.error.is_empty()));
        let vsan = check_compatibility(&inv, &[], PROFILES[0].id).unwrap();
        assert!(vsan.iter().all(|r| r.error.len() == 1));
        assert_eq!(
            check_compatibility(&inv, &[], "nope")
                .unwrap_err()
                .type_name(),
            "InvalidArgument"
        );
        let mut bogus = PbmPlacementHub::default();
        bogus.hub_type = "Datastore".into();
        bogus.hub_id = "datastore-404".into();
        assert_eq!(
            check_compatibility(&inv, &[bogus], PROFILES[2].id)
                .unwrap_err()
                .type_name(),
            "PbmNonExistentHubs"
        );
    }

    fn entity(object_type: &str, key: &str) -> PbmServerObjectRef {
        let mut e = PbmServerObjectRef::default();
        e.object_type = object_type.into();
        e.key = key.into();
        e
    }

    #[test]
    fn compliance_follows_the_datastores_and_is_kept_for_fetch() {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        let vm = inv.first_id("VirtualMachine");
        let entities = [
            entity("virtualMachine", &vm),
            entity("virtualDiskId", &format!("{vm}:2000")),
            entity("virtualMachine", "vm-404"),
        ];
        let status = |r: &[PbmComplianceResult]| {
            r.iter()
                .map(|r| r.compliance_status.clone())
                .collect::<Vec<_>>()
        };
        let fits = check_compliance(&mut inv, &entities, Some(PROFILES[2].id)).unwrap();
        assert_eq!(status(&fits), ["compliant", "compliant", "unknown"]);
        assert_eq!(
            fits[2].error_cause[0].fault.as_ref().unwrap().type_name(),
            "NotFound"
        );
        let vsan = check_compliance(&mut inv, &entities[..2], Some(PROFILES[0].id)).unwrap();
        assert_eq!(status(&vsan), ["nonCompliant", "nonCompliant"]);
        assert_eq!(vsan[0].violated_policies.len(), 1);
        assert!(vsan[0].violated_policies[0].expected_value.is_some());
        let none = check_compliance(&mut inv, &entities[..1], None).unwrap();
        assert_eq!(status(&none), ["notApplicable"]);
        // Fetch gives the last check of each entity (the missing VM's too).
        let fetched = fetch_compliance(&inv, &entities, None);
        assert_eq!(
            status(&fetched),
            ["notApplicable", "nonCompliant", "unknown"]
        );
        let for_vsan = fetch_compliance(&inv, &entities, Some(PROFILES[0].id));
        assert_eq!(status(&for_vsan), ["nonCompliant"]);
        assert!(fetch_compliance(&inv, &[entity("virtualDiskUUID", "nope")], None).is_empty());
        // Typed faults for what compliance does not apply to.
        for bad in [
            entity("hostSystem", "host-1"),
            entity("virtualDiskId", "vm-1"),
        ] {
            assert_eq!(
                check_compliance(&mut inv, &[bad], None)
                    .unwrap_err()
                    .type_name(),
                "InvalidArgument"
            );
        }
        assert_eq!(
            check_compliance(&mut inv, &entities, Some("nope"))
                .unwrap_err()
                .type_name(),
            "InvalidArgument"
        );
    }

    #[test]
    fn profiles_are_capability_profiles() {
        for p in PROFILES {
            let c = content(p);
            assert_eq!(c.pbm_profile.name, p.name);
            assert_eq!(c.resource_type.as_ref().unwrap().resource_type, "STORAGE");
        }
    }
}
