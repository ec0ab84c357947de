//! Golden tests on vCenter-shaped payloads: the wire quirks real servers send.

use vsphere_client::Error;
use vsphere_client::codec::{Any, AnyArray, DateTime, ManagedObjectReference, Value};
use vsphere_client::mo::methods::{LOGIN, RETRIEVE_PROPERTIES_EX};
use vsphere_client::rpc;
use vsphere_client::types::{
    LocalizedMethodFault, NoPermission, NotFound, ObjectContent, OptionValue, PbmFault,
    RetrieveResult, SystemError, VirtualDevice, VirtualDisk, VirtualDiskFlatVer2BackingInfo,
    VirtualLsiLogicController, VirtualMachinePowerState, VirtualVmxnet3,
};

const QUIRKS: &str = include_str!("fixtures/rpex-quirks.soap.xml");

fn quirks() -> RetrieveResult {
    rpc::opt::<RetrieveResult>(QUIRKS, &RETRIEVE_PROPERTIES_EX)
        .unwrap()
        .expect("a result")
}

fn prop<'a>(o: &'a ObjectContent, name: &str) -> &'a Any {
    &o.prop_set
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no property {name}"))
        .val
}

#[test]
fn objects_and_morefs_with_both_type_attributes() {
    let r = quirks();
    assert_eq!(r.token.as_deref(), Some("2"));
    assert_eq!(r.objects.len(), 2);
    let vm = &r.objects[0];
    assert_eq!(
        vm.obj,
        ManagedObjectReference::new("VirtualMachine", "vm-101")
    );
    // <ManagedObjectReference type="Network" xsi:type="ManagedObjectReference">: `type` is the
    // managed type, `xsi:type` the wire type; they must not collide.
    let Any::Array(AnyArray::MoRef(nets)) = prop(vm, "network") else {
        panic!(
            "network is not an ArrayOfManagedObjectReference: {:?}",
            prop(vm, "network")
        );
    };
    assert_eq!(
        nets,
        &[
            ManagedObjectReference::new("Network", "network-7"),
            ManagedObjectReference::new("DistributedVirtualPortgroup", "dvportgroup-12"),
        ]
    );
}

#[test]
fn primitives_enums_and_entities() {
    let r = quirks();
    let vm = &r.objects[0];
    assert_eq!(prop(vm, "name").as_str(), Some("web-01 & friends"));
    let state = VirtualMachinePowerState::from_any(prop(vm, "runtime.powerState").clone()).unwrap();
    assert_eq!(state, VirtualMachinePowerState::PoweredOn);
    let Any::Array(AnyArray::Int(roles)) = prop(vm, "effectiveRole") else {
        panic!("effectiveRole is not ArrayOfInt");
    };
    assert_eq!(roles, &[-1, 1001]);

    let db = &r.objects[1];
    let state = VirtualMachinePowerState::from_any(prop(db, "runtime.powerState").clone()).unwrap();
    assert_eq!(state, VirtualMachinePowerState::Suspended);
    assert!(matches!(
        prop(db, "summary.quickStats.overallCpuUsage"),
        Any::Int(1234)
    ));
    let Any::DateTime(t) = prop(db, "config.modified") else {
        panic!("config.modified is not a dateTime");
    };
    assert_eq!(*t, DateTime::parse("2026-11-28T22:13:57.529793Z").unwrap());
}

#[test]
fn polymorphic_devices_and_an_unknown_subtype() {
    let r = quirks();
    let Any::Array(AnyArray::Data { item, items }) = prop(&r.objects[0], "config.hardware.device")
    else {
        panic!("devices are not an ArrayOfVirtualDevice");
    };
    assert_eq!(item.name, "VirtualDevice");
    let names: Vec<_> = items.iter().map(|d| d.type_name()).collect();
    assert_eq!(
        names,
        [
            "VirtualLsiLogicController",
            "VirtualDisk",
            "VirtualDisk",
            "VirtualVmxnet3",
            "VirtualDevice"
        ]
    );
    let ctl = items[0]
        .downcast_ref::<VirtualLsiLogicController>()
        .unwrap();
    assert_eq!(ctl.device, [2000, 2001]);
    assert_eq!(ctl.key, 1000);
    let disk = items[2].downcast_ref::<VirtualDisk>().unwrap();
    assert_eq!(disk.capacity_in_kb, 1_048_576);
    assert_eq!(
        disk.v_disk_id.as_ref().unwrap().id,
        "0b2c7e4a-5d1e-4f3a-9c55-2f1d3e4a5b6c"
    );
    let backing = disk
        .backing
        .as_ref()
        .unwrap()
        .downcast_ref::<VirtualDiskFlatVer2BackingInfo>()
        .unwrap();
    assert_eq!(backing.disk_mode, "independent_persistent");
    assert_eq!(backing.file_name, "[shared-nfs] fcd/volume-a.vmdk");
    assert!(items[3].downcast_ref::<VirtualVmxnet3>().is_some());
    // The device from a future release decodes as its base, known properties kept.
    let future = items[4].upcast_ref::<VirtualDevice>().unwrap();
    assert_eq!(future.key, 9000);
    assert_eq!(future.device_info.as_ref().unwrap().label, "Future device");
}

#[test]
fn untyped_array_items_and_any_values() {
    let r = quirks();
    let Any::Array(AnyArray::Data { items, .. }) = prop(&r.objects[0], "config.extraConfig") else {
        panic!("extraConfig is not an ArrayOfOptionValue");
    };
    let opts: Vec<&OptionValue> = items.iter().map(|o| o.downcast_ref().unwrap()).collect();
    assert_eq!(opts[0].key, "guestinfo.role");
    assert_eq!(opts[0].value.as_ref().and_then(Any::as_str), Some("web"));
    assert_eq!(opts[1].key, "numa.nodeAffinity");
    assert!(matches!(opts[1].value, Some(Any::Int(1))));
}

#[test]
fn missing_property_with_a_nested_fault_cause() {
    let r = quirks();
    let missing = &r.objects[0].missing_set[0];
    assert_eq!(missing.path, "summary.customValue");
    let lmf: &LocalizedMethodFault = missing.fault.as_deref().unwrap();
    assert_eq!(
        lmf.localized_message.as_deref(),
        Some("Permission to perform this operation was denied.")
    );
    let denied = lmf
        .fault
        .as_ref()
        .unwrap()
        .downcast_ref::<NoPermission>()
        .unwrap();
    assert_eq!(denied.privilege_id.as_deref(), Some("System.Read"));
    assert_eq!(
        denied.object.as_ref(),
        Some(&ManagedObjectReference::new("VirtualMachine", "vm-101"))
    );
    let cause = denied.fault_cause.as_deref().unwrap();
    let sys = cause
        .fault
        .as_ref()
        .unwrap()
        .downcast_ref::<SystemError>()
        .unwrap();
    assert_eq!(sys.reason, "directory service unavailable");
}

#[test]
fn truncated_and_malformed_envelopes_are_typed_errors() {
    for cut in [0, 100, 500, 3000, QUIRKS.len() - 20] {
        let err = rpc::opt::<RetrieveResult>(&QUIRKS[..cut], &RETRIEVE_PROPERTIES_EX).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "cut {cut}: {err}");
    }
    let bad = QUIRKS.replace("<key>1000</key>", "<key>one thousand</key>");
    let err = rpc::opt::<RetrieveResult>(&bad, &RETRIEVE_PROPERTIES_EX).unwrap_err();
    assert!(err.to_string().contains("RetrievePropertiesEx"), "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.contains("xsd:int") && source.contains("one thousand"),
        "{source}"
    );
    let mismatched = QUIRKS.replace("</token>", "</tokn>");
    assert!(rpc::opt::<RetrieveResult>(&mismatched, &RETRIEVE_PROPERTIES_EX).is_err());
    assert!(rpc::opt::<RetrieveResult>("not xml at all", &RETRIEVE_PROPERTIES_EX).is_err());
}

const INVALID_LOGIN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Cannot complete login due to an incorrect user name or password.</faultstring><detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault>
</soapenv:Body>
</soapenv:Envelope>"#;

#[test]
fn a_soap_fault_is_a_typed_error() {
    let err = rpc::one::<vsphere_client::types::UserSession>(INVALID_LOGIN, &LOGIN).unwrap_err();
    assert!(err.is_fault("InvalidLogin"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Login failed: InvalidLogin: Cannot complete login due to an incorrect user name or password."
    );
    let fault = err.fault().unwrap();
    assert_eq!(fault.code, "ServerFaultCode");
    assert!(
        fault
            .detail_as::<vsphere_client::types::InvalidLogin>()
            .is_some()
    );
}

/// A pbm fault whose cause is a vim25 fault, each in its own namespace with its own prefix.
const PBM_FAULT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:v="urn:vim25">
<soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>profile lookup failed</faultstring>
<detail><PbmFaultFault xmlns="urn:pbm" xsi:type="PbmFault"><faultCause><fault xsi:type="v:NotFound"></fault><localizedMessage>The object was not found.</localizedMessage></faultCause><faultMessage><key>pbm.fault</key><message>lookup</message></faultMessage></PbmFaultFault></detail>
</soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;

#[test]
fn a_pbm_fault_nests_a_vim25_fault() {
    let err = rpc::void(PBM_FAULT, &LOGIN).unwrap_err();
    let fault = err.fault().unwrap();
    let pbm = fault.detail_as::<PbmFault>().unwrap();
    let cause = pbm.fault_cause.as_deref().unwrap();
    assert!(
        cause
            .fault
            .as_ref()
            .unwrap()
            .downcast_ref::<NotFound>()
            .is_some()
    );
    assert_eq!(
        cause.localized_message.as_deref(),
        Some("The object was not found.")
    );
    assert_eq!(pbm.fault_message[0].key, "pbm.fault");
}

const UNKNOWN_ANY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
<soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="ContentLibraryItem">item-1</obj>
<propSet><name>info</name><val xsi:type="ContentLibraryItemInfo"><name>ubuntu</name><size>42</size></val></propSet>
<propSet><name>tags</name><val xsi:type="ArrayOfAnyType"><anyType xsi:type="xsd:string">a</anyType><anyType xsi:type="xsd:long">7</anyType><anyType xsi:type="xsd:boolean">true</anyType></val></propSet>
<propSet><name>empty</name><val xsi:type="ArrayOfString"></val></propSet>
<propSet><name>one</name><val xsi:type="ArrayOfString"><string>x</string></val></propSet>
<propSet><name>plain</name><val>untyped text</val></propSet>
</objects></returnval></RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>"#;

#[test]
fn unknown_any_types_are_kept_raw_and_arrays_of_any_size_decode() {
    let r = rpc::opt::<RetrieveResult>(UNKNOWN_ANY, &RETRIEVE_PROPERTIES_EX)
        .unwrap()
        .unwrap();
    let o = &r.objects[0];
    let Any::Unknown { type_name, xml } = prop(o, "info") else {
        panic!("not kept raw: {:?}", prop(o, "info"));
    };
    assert_eq!(type_name, "ContentLibraryItemInfo");
    assert!(xml.contains("<name>ubuntu</name>"), "{xml}");
    let Any::Array(AnyArray::Any(items)) = prop(o, "tags") else {
        panic!("tags is not ArrayOfAnyType");
    };
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_str(), Some("a"));
    assert!(matches!(items[1], Any::Long(7)));
    assert!(matches!(items[2], Any::Bool(true)));
    assert!(matches!(prop(o, "empty"), Any::Array(AnyArray::String(v)) if v.is_empty()));
    assert!(matches!(prop(o, "one"), Any::Array(AnyArray::String(v)) if v == &["x"]));
    assert_eq!(prop(o, "plain").as_str(), Some("untyped text"));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let auth = vsphere_client::types::NamePasswordAuthentication {
        username: "admin".into(),
        password: "hunter2".into(),
        ..Default::default()
    };
    let shown = format!("{auth:?}");
    assert!(shown.contains("admin"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
