//! The SOAP codec: one generic, table-driven XML encoder and decoder for every vSphere type.
//!
//! Generated data types implement [`DataObject`]: they expose their properties by index as
//! [`FieldRef`]/[`FieldMut`] slots, and their static [`DataTypeInfo`] says what each property is
//! called on the wire and what it holds. The [`Decoder`] (quick-xml's namespace-aware reader) and
//! the [`Encoder`] walk those tables; no type has serialisation code of its own.
//!
//! The codec works in both directions because `vsphere-sim` reuses it to decode requests and
//! encode responses.
//!
//! Wire rules it implements:
//! - `xsi:type` polymorphism for every base type with subtypes and for `anyType` (primitive
//!   `xsd:*` values and `ArrayOf*` arrays included), resolved by namespace, never by prefix text;
//! - a managed object reference's `type` attribute is told apart from `xsi:type` by namespace;
//! - an unknown `xsi:type` decodes as the declared type (its nearest known base) and is
//!   remembered; inside `anyType` it is kept as raw XML; unknown elements are skipped;
//! - encoding follows schema order, base properties first, and omits properties newer than the
//!   server's release (version-aware encode);
//! - faults (`MethodFault` subtypes) travel wrapped in `LocalizedMethodFault`, as in the WSDL.

mod any;
mod de;
mod meta;
mod poly;
mod ser;
mod server;
mod value;

use std::any::Any as StdAny;
use std::fmt;

pub use any::{Any, AnyArray, EnumValue, SoapFault};
pub use de::{DecodeError, Decoder, MAX_DEPTH, Start, XsiType, decode_object, decode_response};
pub use meta::{
    DataTypeInfo, EnumInfo, FieldInfo, FieldKind, MethodInfo, Service, Since, TypeRef, all_types,
    lookup_type,
};
pub use poly::{Obj, Poly};
pub use ser::{Encoder, Param, XsiName, encode_object, encode_request};
pub use server::{
    ParamError, Request, decode_request, encode_fault, encode_response, lookup_method,
};
pub use value::{
    Binary, DateTime, ManagedObjectReference, OptSlot, SecretString, Value, ValueSlot, VecSlot,
    VimEnum,
};

/// Why a SOAP response did not yield a result.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResponseError {
    /// The response could not be decoded.
    Decode(DecodeError),
    /// The server answered with a SOAP fault.
    Fault(Box<SoapFault>),
}

impl From<DecodeError> for ResponseError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(_) => f.write_str("cannot decode the SOAP response"),
            Self::Fault(fault) => fmt::Display::fmt(fault, f),
        }
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            Self::Fault(_) => None,
        }
    }
}

/// A vSphere data object: a generated struct that the codec can read and write by index.
///
/// Every generated data type implements it; the methods are what the generic codec needs.
/// Users mostly meet it as `dyn DataObject` inside [`Poly`] and [`Any`], and use
/// [`DataObject::type_name`] and downcasting (`as_any().downcast_ref::<VirtualDisk>()`).
pub trait DataObject: ObjectAny + Send + Sync + fmt::Debug {
    /// The type's descriptor.
    fn type_info(&self) -> &'static DataTypeInfo;
    /// Property `index` (see [`DataTypeInfo::all_fields`]) for reading.
    fn field(&self, index: usize) -> FieldRef<'_>;
    /// Property `index` (see [`DataTypeInfo::all_fields`]) for writing.
    fn field_mut(&mut self, index: usize) -> FieldMut<'_>;
    /// The embedded base object (`None` for the root type).
    fn base_object(&self) -> Option<&dyn DataObject>;

    /// The wire name of the object's type.
    fn type_name(&self) -> &'static str {
        self.type_info().name
    }
}

/// A generated data type, known statically (as opposed to `dyn DataObject`).
pub trait DataType: DataObject + Default + Clone + 'static {
    /// The type's descriptor.
    fn info() -> &'static DataTypeInfo;
}

/// Conversions to [`std::any::Any`] for downcasting; every [`DataType`] has them.
pub trait ObjectAny {
    /// Upcast for downcasting with [`std::any::Any`].
    fn as_any(&self) -> &dyn StdAny;
    /// Upcast for downcasting with [`std::any::Any`].
    fn as_any_mut(&mut self) -> &mut dyn StdAny;
    /// Upcast for downcasting a box with [`std::any::Any`].
    fn into_any(self: Box<Self>) -> Box<dyn StdAny + Send + Sync>;
}

impl<T: DataType> ObjectAny for T {
    fn as_any(&self) -> &dyn StdAny {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn StdAny {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn StdAny + Send + Sync> {
        self
    }
}

impl<T: DataType> Value for T {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        let mut v = Self::default();
        decode_object(d, start, field, &mut v)?;
        Ok(v)
    }
    fn encode_value(&self, e: &mut Encoder, name: &str, field: &FieldInfo) {
        encode_object(e, name, field, self);
    }
    fn walk_value(&self, v: &mut dyn Visitor) {
        walk(self, v);
    }
    fn from_any(any: Any) -> Result<Self, Any> {
        match any {
            Any::Data(obj) if obj.is::<Self>() => match obj.into_any().downcast::<Self>() {
                Ok(b) => Ok(*b),
                Err(_) => Err(Any::Absent),
            },
            other => Err(other),
        }
    }
}

/// A default instance of `T`, boxed: the constructor in every [`DataTypeInfo`].
#[doc(hidden)]
pub fn new_object<T: DataType>() -> Box<dyn DataObject> {
    Box::new(T::default())
}

impl Clone for Box<dyn DataObject> {
    fn clone(&self) -> Self {
        let mut copy = (self.type_info().new)();
        copy_fields(&**self, &mut *copy);
        copy
    }
}

impl dyn DataObject {
    /// Whether the object is of type `T` exactly.
    pub fn is<T: DataType>(&self) -> bool {
        self.as_any().is::<T>()
    }

    /// The object as a `T`, if it is exactly a `T`.
    pub fn downcast_ref<T: DataType>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }

    /// The object viewed as its base type `T` (or as `T` itself): a `VirtualDisk` viewed as a
    /// `VirtualDevice`, for instance.
    pub fn upcast_ref<T: DataType>(&self) -> Option<&T> {
        let mut o: Option<&dyn DataObject> = Some(self);
        while let Some(x) = o {
            if let Some(t) = x.as_any().downcast_ref::<T>() {
                return Some(t);
            }
            o = x.base_object();
        }
        None
    }
}

/// A property of a data object, for reading: one value, an optional value, or an array.
#[non_exhaustive]
pub enum FieldRef<'a> {
    /// A required property.
    One(&'a dyn ValueSlot),
    /// An optional property.
    Opt(&'a dyn OptSlot),
    /// A repeated property.
    Many(&'a dyn VecSlot),
}

/// A property of a data object, for writing: one value, an optional value, or an array.
#[non_exhaustive]
pub enum FieldMut<'a> {
    /// A required property.
    One(&'a mut dyn ValueSlot),
    /// An optional property.
    Opt(&'a mut dyn OptSlot),
    /// A repeated property.
    Many(&'a mut dyn VecSlot),
}

/// Visits every data object inside a value tree: see [`walk`].
pub trait Visitor {
    /// Called once for each data object, before its properties are walked.
    fn visit(&mut self, object: &dyn DataObject);
}

/// Walks `object` and every data object nested in it (properties, arrays, `anyType` values),
/// depth first, calling `visitor` for each.
///
/// ```
/// use vsphere_client::codec::{walk, DataObject, Visitor};
/// use vsphere_client::types::ObjectContent;
/// struct Count(usize);
/// impl Visitor for Count {
///     fn visit(&mut self, _: &dyn DataObject) { self.0 += 1; }
/// }
/// let mut c = Count(0);
/// walk(&ObjectContent::default(), &mut c);
/// assert_eq!(c.0, 1);
/// ```
pub fn walk(object: &dyn DataObject, visitor: &mut dyn Visitor) {
    visitor.visit(object);
    walk_fields(object, visitor);
}

/// Walks the properties of `object` (not `object` itself).
pub(crate) fn walk_fields(object: &dyn DataObject, visitor: &mut dyn Visitor) {
    for i in 0..object.type_info().all_fields().len() {
        match object.field(i) {
            FieldRef::One(s) => s.walk(visitor),
            FieldRef::Opt(s) => s.walk(visitor),
            FieldRef::Many(s) => s.walk(visitor),
        }
    }
}

/// Formats a data object for `Debug`: its type name and the properties that are set, by wire
/// name (secrets show as `<redacted>`).
pub fn fmt_object(object: &dyn DataObject, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    struct One<'a>(&'a dyn ValueSlot);
    struct Opt<'a>(&'a dyn OptSlot);
    struct Many<'a>(&'a dyn VecSlot);
    impl fmt::Debug for One<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.debug(f)
        }
    }
    impl fmt::Debug for Opt<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.debug(f)
        }
    }
    impl fmt::Debug for Many<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.debug(f)
        }
    }
    let mut s = f.debug_struct(object.type_name());
    for (i, info) in object.type_info().all_fields().iter().enumerate() {
        match object.field(i) {
            FieldRef::One(v) => {
                s.field(info.name, &One(v));
            }
            FieldRef::Opt(v) if v.is_set() => {
                s.field(info.name, &Opt(v));
            }
            FieldRef::Many(v) if !v.is_empty() => {
                s.field(info.name, &Many(v));
            }
            _ => {}
        }
    }
    s.finish()
}

/// Copies every property of `src` into `dst`, two objects of the same type: the `Clone` of
/// every generated data type.
pub fn copy_fields(src: &dyn DataObject, dst: &mut dyn DataObject) {
    for i in 0..src.type_info().all_fields().len() {
        match (src.field(i), dst.field_mut(i)) {
            (FieldRef::One(a), FieldMut::One(b)) => b.assign(a),
            (FieldRef::Opt(a), FieldMut::Opt(b)) => b.assign(a),
            (FieldRef::Many(a), FieldMut::Many(b)) => b.assign(a),
            _ => {}
        }
    }
}

/// Implements [`DataObject`], [`DataType`], `Clone` and `Debug` (and, for a derived type,
/// `Deref` to its base) for a generated struct.
///
/// `base` names the embedded base field (or `-` for the root), `base_len` the number of
/// inherited properties, then each own property as `index kind field`.
#[doc(hidden)]
#[macro_export]
macro_rules! __data_object {
    ($ty:ident, $info:path, -, 0, [$($idx:literal $kind:ident $field:ident),* $(,)?]) => {
        impl $crate::codec::DataObject for $ty {
            fn type_info(&self) -> &'static $crate::codec::DataTypeInfo { &$info }
            fn field(&self, i: usize) -> $crate::codec::FieldRef<'_> {
                match i {
                    $($idx => $crate::codec::FieldRef::$kind(&self.$field),)*
                    _ => $crate::codec::no_such_field(i, stringify!($ty)),
                }
            }
            fn field_mut(&mut self, i: usize) -> $crate::codec::FieldMut<'_> {
                match i {
                    $($idx => $crate::codec::FieldMut::$kind(&mut self.$field),)*
                    _ => $crate::codec::no_such_field(i, stringify!($ty)),
                }
            }
            fn base_object(&self) -> Option<&dyn $crate::codec::DataObject> { None }
        }
        $crate::__data_object_common!($ty, $info);
    };
    ($ty:ident, $info:path, $base:ident : $bty:ty, $blen:literal,
     [$($idx:literal $kind:ident $field:ident),* $(,)?]) => {
        impl $crate::codec::DataObject for $ty {
            fn type_info(&self) -> &'static $crate::codec::DataTypeInfo { &$info }
            fn field(&self, i: usize) -> $crate::codec::FieldRef<'_> {
                match i {
                    0..$blen => self.$base.field(i),
                    $($idx => $crate::codec::FieldRef::$kind(&self.$field),)*
                    _ => $crate::codec::no_such_field(i, stringify!($ty)),
                }
            }
            fn field_mut(&mut self, i: usize) -> $crate::codec::FieldMut<'_> {
                match i {
                    0..$blen => self.$base.field_mut(i),
                    $($idx => $crate::codec::FieldMut::$kind(&mut self.$field),)*
                    _ => $crate::codec::no_such_field(i, stringify!($ty)),
                }
            }
            fn base_object(&self) -> Option<&dyn $crate::codec::DataObject> { Some(&self.$base) }
        }
        impl ::std::ops::Deref for $ty {
            type Target = $bty;
            fn deref(&self) -> &$bty { &self.$base }
        }
        impl ::std::ops::DerefMut for $ty {
            fn deref_mut(&mut self) -> &mut $bty { &mut self.$base }
        }
        $crate::__data_object_common!($ty, $info);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __data_object_common {
    ($ty:ident, $info:path) => {
        impl $crate::codec::DataType for $ty {
            fn info() -> &'static $crate::codec::DataTypeInfo {
                &$info
            }
        }
        impl Clone for $ty {
            fn clone(&self) -> Self {
                let mut copy = Self::default();
                $crate::codec::copy_fields(self, &mut copy);
                copy
            }
        }
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                $crate::codec::fmt_object(self, f)
            }
        }
    };
}

/// The generated `field`/`field_mut` matches cover every index of `all_fields`; an index
/// outside is a bug in the caller, reported with the type's name.
#[doc(hidden)]
#[cold]
pub fn no_such_field(index: usize, ty: &str) -> ! {
    panic!("{ty} has no property #{index}")
}
