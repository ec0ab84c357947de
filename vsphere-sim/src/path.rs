//! Property paths into stored values: `runtime.powerState` reads the `powerState` property of
//! the `runtime` data object, as the PropertyCollector does.
//!
//! The generated data types expose their properties by index through the codec's slot traits;
//! this module turns a slot into an [`Any`] (with the right `xsi:type` on the wire) without
//! knowing the concrete Rust type, by downcasting primitives and walking data objects.

use vsphere_client::codec::{
    Any, AnyArray, Binary, DataObject, DataTypeInfo, DateTime, Encoder, EnumValue, FieldInfo,
    FieldKind, FieldRef, ManagedObjectReference, Visitor, walk,
};

/// Why a path could not be read.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum PathError {
    /// A segment names no property of the data type it was applied to.
    NoSuchProperty(String),
}

/// Reads `path` (dot-separated property names) inside `value`.
///
/// `Ok(None)` when a property on the way is unset (the collector then leaves it out, as
/// vCenter does); an error when a segment names no property of its type.
pub(crate) fn read(value: &Any, path: &[&str]) -> Result<Option<Any>, PathError> {
    if path.is_empty() {
        return Ok(Some(value.clone()));
    }
    match value {
        Any::Data(obj) => read_object(&**obj, path),
        Any::Absent => Ok(None),
        _ => Err(PathError::NoSuchProperty(path[0].to_owned())),
    }
}

/// Reads `path` (at least one segment) inside a data object.
pub(crate) fn read_object(obj: &dyn DataObject, path: &[&str]) -> Result<Option<Any>, PathError> {
    let info = obj.type_info();
    let fields = info.all_fields();
    let Some(index) = fields.iter().position(|f| f.name == path[0]) else {
        return Err(PathError::NoSuchProperty(path[0].to_owned()));
    };
    let field = fields[index];
    let rest = &path[1..];
    if rest.is_empty() {
        return Ok(slot_to_any(&obj.field(index), field));
    }
    // Descend: only a single data object (required or optional) has nested properties.
    let descend_kind = matches!(field.kind, FieldKind::Data(_) | FieldKind::Any);
    let single = !matches!(obj.field(index), FieldRef::Many(_));
    if !(descend_kind && single) {
        return Err(PathError::NoSuchProperty(rest[0].to_owned()));
    }
    let mut v = Descend {
        rest,
        done: false,
        result: Ok(None),
    };
    walk_slot(&obj.field(index), &mut v);
    v.result
}

/// Reads the nested path when it meets the first (outermost) object of the slot.
struct Descend<'p> {
    rest: &'p [&'p str],
    done: bool,
    result: Result<Option<Any>, PathError>,
}

impl Visitor for Descend<'_> {
    fn visit(&mut self, object: &dyn DataObject) {
        if !self.done {
            self.done = true;
            self.result = read_object(object, self.rest);
        }
    }
}

pub(crate) fn walk_slot(slot: &FieldRef<'_>, v: &mut dyn Visitor) {
    match slot {
        FieldRef::One(s) => s.walk(v),
        FieldRef::Opt(s) => s.walk(v),
        FieldRef::Many(s) => s.walk(v),
        _ => {}
    }
}

/// Clones a data object behind a trait object.
pub(crate) fn clone_object(obj: &dyn DataObject) -> Box<dyn DataObject> {
    let mut copy = (obj.type_info().new)();
    vsphere_client::codec::copy_fields(obj, &mut *copy);
    copy
}

/// Collects the outermost data objects of a slot (array items, not the objects nested in them).
struct Outermost {
    skip: usize,
    items: Vec<Box<dyn DataObject>>,
}

struct Count(usize);

impl Visitor for Count {
    fn visit(&mut self, _: &dyn DataObject) {
        self.0 += 1;
    }
}

impl Visitor for Outermost {
    fn visit(&mut self, object: &dyn DataObject) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        let mut c = Count(0);
        walk(object, &mut c);
        // `walk` visits the object itself, then everything nested in it.
        self.skip = c.0 - 1;
        self.items.push(clone_object(object));
    }
}

fn outermost(slot: &FieldRef<'_>) -> Vec<Box<dyn DataObject>> {
    let mut v = Outermost {
        skip: 0,
        items: Vec::new(),
    };
    walk_slot(slot, &mut v);
    v.items
}

/// The enum wire values of a slot, read back from its encoding.
fn enum_values(slot: &FieldRef<'_>, field: &FieldInfo) -> Vec<String> {
    let mut e = Encoder::new(field.since.service, None);
    match slot {
        FieldRef::One(s) => s.encode(&mut e, field),
        FieldRef::Opt(s) => s.encode(&mut e, field),
        FieldRef::Many(s) => s.encode(&mut e, field),
        _ => {}
    }
    let xml = e.finish();
    // `<name ...>value</name>` repeated; enum wire values hold no markup.
    let mut out = Vec::new();
    let mut rest = xml.as_str();
    while let Some(open_end) = rest.find('>') {
        let after = &rest[open_end + 1..];
        let Some(close) = after.find("</") else { break };
        out.push(after[..close].to_owned());
        let Some(close_end) = after[close..].find('>') else {
            break;
        };
        rest = &after[close + close_end + 1..];
    }
    out
}

macro_rules! prim {
    ($slot:expr, $t:ty, $one:path, $arr:path) => {
        match $slot {
            FieldRef::One(s) => s.as_any().downcast_ref::<$t>().cloned().map($one),
            FieldRef::Opt(s) => s
                .as_any()
                .downcast_ref::<Option<$t>>()
                .and_then(Clone::clone)
                .map($one),
            FieldRef::Many(s) => s
                .as_any()
                .downcast_ref::<Vec<$t>>()
                .filter(|v| !v.is_empty())
                .map(|v| Any::Array($arr(v.clone()))),
            _ => None,
        }
    };
}

/// The value of a property slot as `Any`; `None` when it is unset (or an empty array).
pub(crate) fn slot_to_any(slot: &FieldRef<'_>, field: &FieldInfo) -> Option<Any> {
    match field.kind {
        FieldKind::Bool => prim!(slot, bool, Any::Bool, AnyArray::Bool),
        FieldKind::Byte => prim!(slot, i8, Any::Byte, AnyArray::Byte),
        FieldKind::Short => prim!(slot, i16, Any::Short, AnyArray::Short),
        FieldKind::Int => prim!(slot, i32, Any::Int, AnyArray::Int),
        FieldKind::Long => prim!(slot, i64, Any::Long, AnyArray::Long),
        FieldKind::Float => prim!(slot, f32, Any::Float, AnyArray::Float),
        FieldKind::Double => prim!(slot, f64, Any::Double, AnyArray::Double),
        // Secrets (`SecretString`) never leave the simulator: the downcast to `String` fails.
        FieldKind::String => prim!(slot, String, Any::String, AnyArray::String),
        FieldKind::DateTime => prim!(slot, DateTime, Any::DateTime, AnyArray::DateTime),
        FieldKind::Binary => prim!(slot, Binary, Any::Binary, AnyArray::Binary),
        FieldKind::MoRef(_) => prim!(slot, ManagedObjectReference, Any::MoRef, AnyArray::MoRef),
        FieldKind::Any => match slot {
            FieldRef::One(s) => s.as_any().downcast_ref::<Any>().cloned(),
            FieldRef::Opt(s) => s
                .as_any()
                .downcast_ref::<Option<Any>>()
                .and_then(Clone::clone),
            FieldRef::Many(s) => s
                .as_any()
                .downcast_ref::<Vec<Any>>()
                .filter(|v| !v.is_empty())
                .map(|v| Any::Array(AnyArray::Any(v.clone()))),
            _ => None,
        },
        FieldKind::Enum(info) => {
            let many = matches!(slot, FieldRef::Many(_));
            let values = enum_values(slot, field);
            if many {
                (!values.is_empty()).then(|| Any::Array(AnyArray::Enum { info, values }))
            } else {
                values
                    .into_iter()
                    .next()
                    .map(|v| Any::Enum(EnumValue::new(info, v)))
            }
        }
        FieldKind::Data(info) => data_to_any(slot, info),
        _ => None,
    }
}

fn data_to_any(slot: &FieldRef<'_>, item: &'static DataTypeInfo) -> Option<Any> {
    let many = matches!(slot, FieldRef::Many(_));
    let mut items = outermost(slot);
    if many {
        (!items.is_empty()).then(|| Any::Array(AnyArray::Data { item, items }))
    } else {
        items.pop().map(Any::Data)
    }
}

#[cfg(test)]
mod tests {
    use vsphere_client::codec::{Obj, Poly};
    use vsphere_client::types::{
        VirtualDevice, VirtualDisk, VirtualHardware, VirtualMachineConfigInfo,
        VirtualMachinePowerState, VirtualMachineRuntimeInfo, VirtualMachineSummary,
    };

    use super::*;

    fn vm_summary() -> Any {
        let mut runtime = VirtualMachineRuntimeInfo::default();
        runtime.power_state = VirtualMachinePowerState::PoweredOn;
        runtime.host = Some(ManagedObjectReference::new("HostSystem", "host-1"));
        let mut s = VirtualMachineSummary::default();
        s.runtime = Some(Obj::new(runtime));
        Any::Data(Box::new(s))
    }

    #[test]
    fn reads_nested_enum_and_moref() {
        let v = vm_summary();
        let p = read(&v, &["runtime", "powerState"]).unwrap().unwrap();
        assert_eq!(p.type_name(), "VirtualMachinePowerState");
        let Any::Enum(e) = p else {
            panic!("not an enum")
        };
        assert_eq!(e.as_str(), "poweredOn");
        let Some(Any::MoRef(h)) = read(&v, &["runtime", "host"]).unwrap() else {
            panic!("not a moref")
        };
        assert_eq!(h.value, "host-1");
    }

    #[test]
    fn unset_is_none_and_unknown_is_an_error() {
        let v = vm_summary();
        assert!(read(&v, &["runtime", "bootTime"]).unwrap().is_none());
        assert!(matches!(
            read(&v, &["runtime", "nope"]),
            Err(PathError::NoSuchProperty(p)) if p == "nope"
        ));
    }

    #[test]
    fn arrays_of_polymorphic_items_keep_their_types() {
        let mut disk = VirtualDisk::default();
        disk.capacity_in_kb = 4096;
        disk.key = 2000;
        let mut hw = VirtualHardware::default();
        hw.num_cpu = 2;
        hw.device = vec![
            Poly::<VirtualDevice>::new(disk),
            Poly::<VirtualDevice>::new(VirtualDevice::default()),
        ];
        let mut cfg = VirtualMachineConfigInfo::default();
        cfg.hardware = Some(Obj::new(hw));
        let v = Any::Data(Box::new(cfg));
        let Some(Any::Array(AnyArray::Data { item, items })) =
            read(&v, &["hardware", "device"]).unwrap()
        else {
            panic!("not an array of data objects")
        };
        assert_eq!(item.name, "VirtualDevice");
        assert_eq!(items.len(), 2);
        let d = items[0].downcast_ref::<VirtualDisk>().unwrap();
        assert_eq!(d.capacity_in_kb, 4096);
        assert_eq!(items[1].type_name(), "VirtualDevice");
        let Some(Any::Int(n)) = read(&v, &["hardware", "numCPU"]).unwrap() else {
            panic!("not an int")
        };
        assert_eq!(n, 2);
    }
}
