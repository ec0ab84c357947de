//! Interop on real peer output: envelopes that govmomi's vCenter simulator sent, decoded by this
//! codec, must resolve the same types and values that pyVmomi 9.1.1.0 resolved from the same
//! bytes (the `*.pyvmomi.json` oracles beside them; see `tests/fixtures/govmomi/README.md`).

use serde_json::Value as Json;
use vsphere_client::codec::{Any, AnyArray, ManagedObjectReference};
use vsphere_client::mo::methods::RETRIEVE_PROPERTIES_EX;
use vsphere_client::rpc;
use vsphere_client::types::RetrieveResult;

fn check(envelope: &str, oracle: &str) -> usize {
    let result = rpc::opt::<RetrieveResult>(envelope, &RETRIEVE_PROPERTIES_EX)
        .unwrap()
        .unwrap();
    let oracle: Json = serde_json::from_str(oracle).unwrap();
    let objects = oracle["objects"].as_array().unwrap();
    assert_eq!(result.objects.len(), objects.len());
    let mut compared = 0;
    for (ours, theirs) in result.objects.iter().zip(objects) {
        assert_eq!(ours.obj.type_, theirs["obj"]["Type"]);
        assert_eq!(ours.obj.value, theirs["obj"]["Value"]);
        let props = theirs["props"].as_array().unwrap();
        let names: Vec<&str> = ours.prop_set.iter().map(|p| p.name.as_str()).collect();
        let expected: Vec<&str> = props.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, expected, "{}", ours.obj);
        for (p, t) in ours.prop_set.iter().zip(props) {
            let what = format!("{} {}", ours.obj, p.name);
            compare(&p.val, t, &what);
            compared += 1;
        }
    }
    compared
}

fn moref_json(m: &ManagedObjectReference) -> Json {
    serde_json::json!({"Type": m.type_, "Value": m.value})
}

fn compare(val: &Any, t: &Json, what: &str) {
    let wsdl = t["wsdl_type"].as_str().unwrap();
    match val {
        Any::MoRef(m) => {
            // pyVmomi names a reference by its managed class.
            assert_eq!(wsdl, m.type_, "{what}");
            assert_eq!(t["value"], moref_json(m), "{what}");
        }
        Any::Array(a) => {
            let ours = match a {
                AnyArray::MoRef(_) => "ArrayOfManagedObject".to_owned(),
                other => {
                    let item = other.item_name();
                    let mut s = String::from("ArrayOf");
                    s.push_str(&item[..1].to_ascii_uppercase());
                    s.push_str(&item[1..]);
                    s
                }
            };
            assert_eq!(ours, wsdl, "{what}");
            assert_eq!(a.len() as u64, t["len"].as_u64().unwrap(), "{what}");
            match a {
                AnyArray::Int(v) => assert_eq!(serde_json::json!(v), t["value"], "{what}"),
                AnyArray::String(v) if !v.is_empty() => {
                    assert_eq!(serde_json::json!(v), t["value"], "{what}");
                }
                AnyArray::MoRef(v) if !v.is_empty() => {
                    let ours: Vec<Json> = v.iter().map(moref_json).collect();
                    assert_eq!(Json::Array(ours), t["value"], "{what}");
                }
                AnyArray::Data { items, .. } if !items.is_empty() => {
                    let ours: Vec<&str> = items.iter().map(|i| i.type_name()).collect();
                    let mut distinct: Vec<&str> = Vec::new();
                    for n in ours {
                        if !distinct.contains(&n) {
                            distinct.push(n);
                        }
                    }
                    let theirs: Vec<&str> = t["item_types"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap())
                        .collect();
                    let mut a = distinct.clone();
                    let mut b = theirs.clone();
                    a.sort_unstable();
                    b.sort_unstable();
                    assert_eq!(a, b, "{what}");
                }
                _ => {}
            }
        }
        Any::Enum(e) => {
            assert_eq!(e.info().name, wsdl, "{what}");
            assert_eq!(e.as_str(), t["value"], "{what}");
        }
        Any::String(s) => {
            assert_eq!(wsdl, "string", "{what}");
            assert_eq!(t["value"], Json::from(s.as_str()), "{what}");
        }
        Any::Int(n) => {
            assert_eq!(wsdl, "int", "{what}");
            assert_eq!(t["value"], Json::from(*n), "{what}");
        }
        Any::Bool(b) => {
            assert_eq!(wsdl, "boolean", "{what}");
            assert_eq!(t["value"], Json::from(*b), "{what}");
        }
        other => assert_eq!(other.type_name(), wsdl, "{what}"),
    }
}

#[test]
fn all_properties_of_four_vms_match_pyvmomi() {
    let n = check(
        include_str!("fixtures/govmomi/vms-4-all.xml"),
        include_str!("fixtures/govmomi/vms-4-all.pyvmomi.json"),
    );
    assert!(n > 100, "only {n} properties compared");
}

#[test]
fn name_and_power_state_match_pyvmomi() {
    let n = check(
        include_str!("fixtures/govmomi/vms-4-name-powerstate.xml"),
        include_str!("fixtures/govmomi/vms-4-name-powerstate.pyvmomi.json"),
    );
    assert_eq!(n, 8);
}
