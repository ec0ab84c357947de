//! Reading and writing the common `VirtualDevice` properties of a device of any concrete type
//! (a `Poly<VirtualDevice>` holds a `VirtualDisk`, a `VirtualE1000`, ...), through the codec's
//! by-index slots.

use vsphere_client::codec::{DataObject, FieldMut, FieldRef, Poly, Value};
use vsphere_client::types::{VirtualController, VirtualDevice, VirtualDisk};

fn index(obj: &dyn DataObject, name: &str) -> Option<usize> {
    obj.type_info()
        .all_fields()
        .iter()
        .position(|f| f.name == name)
}

/// Sets a required property.
#[expect(
    clippy::needless_pass_by_value,
    reason = "a slot copies from a value of its own type, owned here for the call's ease"
)]
pub(crate) fn set_one<V: Value>(obj: &mut dyn DataObject, name: &str, v: V) {
    if let Some(i) = index(obj, name)
        && let FieldMut::One(slot) = obj.field_mut(i)
    {
        slot.assign(&v);
    }
}

/// Sets an optional property.
#[expect(
    clippy::needless_pass_by_value,
    reason = "a slot copies from a value of its own type, owned here for the call's ease"
)]
pub(crate) fn set_opt<V: Value>(obj: &mut dyn DataObject, name: &str, v: Option<V>) {
    if let Some(i) = index(obj, name)
        && let FieldMut::Opt(slot) = obj.field_mut(i)
    {
        slot.assign(&v);
    }
}

/// Sets an array property.
#[expect(
    clippy::needless_pass_by_value,
    reason = "a slot copies from a value of its own type, owned here for the call's ease"
)]
pub(crate) fn set_many<V: Value>(obj: &mut dyn DataObject, name: &str, v: Vec<V>) {
    if let Some(i) = index(obj, name)
        && let FieldMut::Many(slot) = obj.field_mut(i)
    {
        slot.assign(&v);
    }
}

/// Reads a required property.
pub(crate) fn get_one<V: Value>(obj: &dyn DataObject, name: &str) -> Option<V> {
    if let Some(i) = index(obj, name)
        && let FieldRef::One(slot) = obj.field(i)
    {
        return slot.as_any().downcast_ref::<V>().cloned();
    }
    None
}

/// Reads an optional property.
pub(crate) fn get_opt<V: Value>(obj: &dyn DataObject, name: &str) -> Option<V> {
    if let Some(i) = index(obj, name)
        && let FieldRef::Opt(slot) = obj.field(i)
    {
        return slot.as_any().downcast_ref::<Option<V>>().cloned().flatten();
    }
    None
}

/// Reads an array property.
pub(crate) fn get_many<V: Value>(obj: &dyn DataObject, name: &str) -> Vec<V> {
    if let Some(i) = index(obj, name)
        && let FieldRef::Many(slot) = obj.field(i)
    {
        return slot
            .as_any()
            .downcast_ref::<Vec<V>>()
            .cloned()
            .unwrap_or_default();
    }
    Vec::new()
}

/// What kind of device, for key numbering (vCenter numbers disks from 2000, NICs from 4000).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Class {
    Controller,
    Disk,
    Nic,
    Other,
}

pub(crate) fn class(d: &Poly<VirtualDevice>) -> Class {
    let info = d.as_object().type_info();
    if info.is_a(<VirtualDisk as vsphere_client::codec::DataType>::info()) {
        Class::Disk
    } else if info.is_a(
        <vsphere_client::types::VirtualEthernetCard as vsphere_client::codec::DataType>::info(),
    ) {
        Class::Nic
    } else if info.is_a(<VirtualController as vsphere_client::codec::DataType>::info()) {
        Class::Controller
    } else {
        Class::Other
    }
}

/// The first key of a class's range.
pub(crate) fn key_base(c: Class, d: &Poly<VirtualDevice>) -> i32 {
    match c {
        Class::Disk => 2000,
        Class::Nic => 4000,
        Class::Controller if d.type_name().contains("SCSI") => 1000,
        Class::Controller => 200,
        Class::Other => 3000,
    }
}

/// Whether a controller is a SCSI controller (unit 7 is the controller's own).
pub(crate) fn is_scsi(d: &Poly<VirtualDevice>) -> bool {
    d.as_object().type_info().is_a(
        <vsphere_client::types::VirtualSCSIController as vsphere_client::codec::DataType>::info(),
    )
}

/// The child keys a controller lists.
pub(crate) fn children(d: &Poly<VirtualDevice>) -> Vec<i32> {
    get_many(d.as_object(), "device")
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::types::{ParaVirtualSCSIController, VirtualE1000};

    #[test]
    fn common_properties_are_set_through_slots() {
        let mut d = Poly::<VirtualDevice>::new(VirtualE1000::default());
        set_one(d.as_object_mut(), "key", 4001_i32);
        set_opt(d.as_object_mut(), "unitNumber", Some(7_i32));
        assert_eq!(d.key, 4001);
        assert_eq!(d.unit_number, Some(7));
        assert_eq!(class(&d), Class::Nic);
        let mut c = Poly::<VirtualDevice>::new(ParaVirtualSCSIController::default());
        set_many(c.as_object_mut(), "device", vec![2000_i32, 2001]);
        assert_eq!(children(&c), vec![2000, 2001]);
        assert!(is_scsi(&c));
        assert_eq!(key_base(class(&c), &c), 1000);
    }
}
