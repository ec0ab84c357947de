//! Round trip over every generated data type: a sample value of each type (every property
//! filled, nested objects two levels deep, subtypes where the declared type has them) is
//! decoded, encoded, decoded again and encoded again; both encodings must be identical and
//! carry every property.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use vsphere_client::codec::{
    DataObject, DataTypeInfo, Decoder, Encoder, FieldInfo, FieldKind, Service, TypeRef, all_types,
    decode_object, encode_object,
};

const NS: &str = r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:vim25="urn:vim25" xmlns:pbm="urn:pbm" xmlns:vslm="urn:vslm" xmlns:reflect="urn:reflect""#;

/// A concrete subtype of `t` (not `t` itself) when there is one, for polymorphic positions.
fn subtype_of(t: &'static DataTypeInfo) -> &'static DataTypeInfo {
    static FIRST_SUBTYPE: OnceLock<HashMap<&'static str, &'static DataTypeInfo>> = OnceLock::new();
    let map = FIRST_SUBTYPE.get_or_init(|| {
        let mut m = HashMap::new();
        for r in all_types() {
            if let TypeRef::Data(d) = r {
                let mut b = d.base;
                while let Some(base) = b {
                    m.entry(base.name).or_insert(d);
                    b = base.base;
                }
            }
        }
        m
    });
    map.get(t.name).copied().unwrap_or(t)
}

fn qualified(t: &DataTypeInfo) -> String {
    format!("{}:{}", t.service.prefix(), t.name)
}

/// Writes one sample value of `f` as element `name`.
fn sample_value(out: &mut String, f: &FieldInfo, depth: usize) {
    let name = f.name;
    match f.kind {
        FieldKind::Bool => write!(out, "<{name}>true</{name}>"),
        FieldKind::Byte => write!(out, "<{name}>-7</{name}>"),
        FieldKind::Short => write!(out, "<{name}>300</{name}>"),
        FieldKind::Int => write!(out, "<{name}>70000</{name}>"),
        FieldKind::Long => write!(out, "<{name}>5000000000</{name}>"),
        FieldKind::Float => write!(out, "<{name}>1.5</{name}>"),
        FieldKind::Double => write!(out, "<{name}>-2.25</{name}>"),
        FieldKind::String => write!(out, "<{name}>a &amp; &lt;b&gt; \"c\" é</{name}>"),
        FieldKind::DateTime => write!(out, "<{name}>2026-11-28T22:13:57.5Z</{name}>"),
        FieldKind::Binary => write!(out, "<{name}>AAEC/w==</{name}>"),
        FieldKind::Any => write!(out, r#"<{name} xsi:type="xsd:int">42</{name}>"#),
        FieldKind::MoRef(t) => write!(
            out,
            r#"<{name} type="{}">obj-1</{name}>"#,
            t.unwrap_or("Folder")
        ),
        FieldKind::Enum(e) => {
            let v = e.values.first().copied().unwrap_or("futureValue");
            write!(out, "<{name}>{v}</{name}>")
        }
        FieldKind::Data(t) => {
            if depth >= 2 {
                return;
            }
            let concrete = subtype_of(t);
            if std::ptr::eq(concrete, t) {
                write!(out, "<{name}>")
            } else {
                write!(out, r#"<{name} xsi:type="{}">"#, qualified(concrete))
            }
            .unwrap();
            sample_fields(out, concrete, depth + 1);
            write!(out, "</{name}>")
        }
        _ => Ok(()),
    }
    .unwrap();
}

fn sample_fields(out: &mut String, t: &'static DataTypeInfo, depth: usize) {
    for f in t.all_fields() {
        if f.name == "dynamicProperty" || f.name == "dynamicType" {
            continue;
        }
        let n = if f.is_array() { 2 } else { 1 };
        for _ in 0..n {
            sample_value(out, f, depth);
        }
    }
}

fn decode(xml: &str, t: &'static DataTypeInfo) -> Box<dyn DataObject> {
    let mut d = Decoder::new(xml);
    let start = d.next_child().unwrap().unwrap();
    let field = FieldInfo::new("obj", FieldKind::Data(t), 0, Service::Vim25, 0);
    let mut obj = (t.new)();
    decode_object(&mut d, &start, &field, &mut *obj)
        .unwrap_or_else(|e| panic!("{}: {e}\n{xml}", t.name));
    obj
}

fn encode(obj: &dyn DataObject, t: &'static DataTypeInfo) -> String {
    let mut e = Encoder::new(t.service, None);
    let field = FieldInfo::new("obj", FieldKind::Data(t), 0, Service::Vim25, 0);
    encode_object(&mut e, "obj", &field, obj);
    let body = e.finish();
    // Wrap with the namespace declarations the envelope would carry.
    body.replacen("<obj", &format!("<obj{NS}"), 1)
}

#[test]
fn every_data_type_round_trips() {
    let mut checked = 0;
    for r in all_types() {
        let TypeRef::Data(t) = r else { continue };
        let mut xml = format!("<obj{NS}>");
        sample_fields(&mut xml, t, 0);
        xml.push_str("</obj>");

        let first = decode(&xml, t);
        assert_eq!(first.type_name(), t.name);
        let once = encode(&*first, t);
        let second = decode(&once, t);
        let twice = encode(&*second, t);
        assert_eq!(once, twice, "{} does not round-trip", t.name);
        for f in t.all_fields() {
            if f.name == "dynamicProperty" || f.name == "dynamicType" {
                continue;
            }
            assert!(
                once.contains(&format!("<{}", f.name)),
                "{}.{} was lost: {once}",
                t.name,
                f.name
            );
        }
        checked += 1;
    }
    assert!(checked > 3000, "only {checked} data types checked");
}

#[test]
fn version_aware_encoding_omits_newer_properties() {
    use vsphere_client::types::VirtualMachineConfigSpec;
    let t = <VirtualMachineConfigSpec as vsphere_client::codec::DataType>::info();
    let mut xml = format!("<obj{NS}>");
    sample_fields(&mut xml, t, 1);
    xml.push_str("</obj>");
    let obj = decode(&xml, t);
    let field = FieldInfo::new("spec", FieldKind::Data(t), 0, Service::Vim25, 0);

    let mut newest = Encoder::new(Service::Vim25, None);
    encode_object(&mut newest, "spec", &field, &*obj);
    let newest = newest.finish();
    let mut old = Encoder::new(Service::Vim25, Some("6.7"));
    encode_object(&mut old, "spec", &field, &*obj);
    let old = old.finish();

    // `pmem` (PMem) came in 7.0; `sgxInfo` in 7.0; both absent for a 6.7 server.
    for newer in ["<sgxInfo", "<pmem"] {
        assert!(
            newest.contains(newer),
            "{newer} missing from the newest encoding"
        );
        assert!(!old.contains(newer), "{newer} sent to a 6.7 server");
    }
    // Properties every release knows stay.
    for always in ["<name>", "<numCPUs>", "<memoryMB>"] {
        assert!(old.contains(always), "{always} missing for 6.7");
    }
}
