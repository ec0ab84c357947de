//! [`Poly`]: a property whose declared type has subtypes.

use std::fmt;
use std::marker::PhantomData;

use super::de::{DecodeError, Decoder, Start};
use super::ser::Encoder;
use super::{Any, DataObject, DataType, FieldInfo, TypeRef, Value, Visitor, lookup_type};

/// A value of declared type `T` whose runtime type may be `T` or any subtype of it.
///
/// `config.hardware.device` is a `Vec<Poly<VirtualDevice>>`: each item is a `VirtualDisk`, a
/// `VirtualVmxnet3`, ... [`Poly::base`] gives the `VirtualDevice` view of any of them,
/// [`Poly::downcast_ref`] the concrete type. A subtype this build does not know (sent by a newer
/// server) decodes as `T` and [`Poly::unknown_type`] keeps its wire name.
///
/// ```
/// use vsphere_client::codec::Poly;
/// use vsphere_client::types::{VirtualDevice, VirtualDisk};
/// let mut disk = VirtualDisk::default();
/// disk.capacity_in_kb = 1024;
/// disk.key = 2000; // an inherited VirtualDevice property, through Deref
/// let dev: Poly<VirtualDevice> = Poly::new(disk);
/// assert_eq!(dev.base().key, 2000);
/// assert_eq!(dev.type_name(), "VirtualDisk");
/// assert_eq!(dev.downcast_ref::<VirtualDisk>().unwrap().capacity_in_kb, 1024);
/// ```
pub struct Poly<T> {
    obj: Box<dyn DataObject>,
    unknown: Option<Box<str>>,
    _declared: PhantomData<fn() -> T>,
}

impl<T: DataType> Poly<T> {
    /// Wraps a value of `T` or of a subtype of `T`.
    ///
    /// # Panics
    ///
    /// If `value`'s type does not derive from `T` (a programming error).
    pub fn new<U: DataType>(value: U) -> Self {
        assert!(
            U::info().is_a(T::info()),
            "{} is not a {}",
            U::info().name,
            T::info().name
        );
        Self::from_box(Box::new(value))
    }

    /// Wraps a boxed data object, if its type derives from `T`.
    pub fn try_from_object(obj: Box<dyn DataObject>) -> Result<Self, Box<dyn DataObject>> {
        if obj.type_info().is_a(T::info()) {
            Ok(Self::from_box(obj))
        } else {
            Err(obj)
        }
    }

    fn from_box(obj: Box<dyn DataObject>) -> Self {
        Self {
            obj,
            unknown: None,
            _declared: PhantomData,
        }
    }

    /// The value viewed as the declared type.
    pub fn base(&self) -> &T {
        self.obj
            .upcast_ref::<T>()
            .expect("Poly holds a T or a subtype of T")
    }

    /// The concrete value, if it is exactly a `U`.
    pub fn downcast_ref<U: DataType>(&self) -> Option<&U> {
        self.obj.downcast_ref()
    }

    /// The concrete value as a data object.
    pub fn as_object(&self) -> &dyn DataObject {
        &*self.obj
    }

    /// The concrete value as a mutable data object.
    pub fn as_object_mut(&mut self) -> &mut dyn DataObject {
        &mut *self.obj
    }

    /// The concrete value, boxed.
    pub fn into_object(self) -> Box<dyn DataObject> {
        self.obj
    }

    /// The wire name of the concrete type this build decoded.
    pub fn type_name(&self) -> &'static str {
        self.obj.type_name()
    }

    /// The wire name the server sent, when it named a type this build does not know (the value
    /// then decoded as its nearest known base).
    pub fn unknown_type(&self) -> Option<&str> {
        self.unknown.as_deref()
    }
}

impl<T: DataType> std::ops::Deref for Poly<T> {
    type Target = T;

    /// The declared-type view, as [`Poly::base`].
    fn deref(&self) -> &T {
        self.base()
    }
}

impl<T: DataType> Default for Poly<T> {
    fn default() -> Self {
        Self::from_box(Box::new(T::default()))
    }
}

impl<T> Clone for Poly<T> {
    fn clone(&self) -> Self {
        Self {
            obj: self.obj.clone(),
            unknown: self.unknown.clone(),
            _declared: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Poly<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.unknown {
            write!(f, "/* unknown type {u} */ ")?;
        }
        fmt::Debug::fmt(&*self.obj, f)
    }
}

impl<T: DataType> Value for Poly<T> {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        let declared = T::info();
        let mut unknown = None;
        let mut obj: Box<dyn DataObject> = match start.xsi_type() {
            Some(x) if x.local() != declared.name => match lookup_type(x.local()) {
                Some(TypeRef::Data(info)) if info.is_a(declared) => (info.new)(),
                _ => {
                    unknown = Some(x.local().into());
                    Box::new(T::default())
                }
            },
            _ => Box::new(T::default()),
        };
        super::decode_object(d, start, field, &mut *obj)?;
        Ok(Self {
            obj,
            unknown,
            _declared: PhantomData,
        })
    }
    fn encode_value(&self, e: &mut Encoder, name: &str, field: &FieldInfo) {
        super::encode_object(e, name, field, &*self.obj);
    }
    fn walk_value(&self, visitor: &mut dyn Visitor) {
        super::walk(&*self.obj, visitor);
    }
    fn from_any(any: Any) -> Result<Self, Any> {
        match any {
            Any::Data(obj) => Self::try_from_object(obj).map_err(Any::Data),
            other => Err(other),
        }
    }
}

/// A data object of exactly type `T`, boxed: a single property whose declared type has no
/// subtypes (`VirtualDisk.vDiskId` is an `Option<Obj<ID>>`). It dereferences to `T`.
///
/// ```
/// use vsphere_client::codec::Obj;
/// use vsphere_client::types::ID;
/// let mut id = Obj::new(ID::default());
/// id.id = "0b2c".into();
/// assert_eq!(id.id, "0b2c");
/// ```
#[derive(Clone, Default)]
pub struct Obj<T>(Box<T>);

impl<T> Obj<T> {
    /// Boxes `value`.
    pub fn new(value: T) -> Self {
        Self(Box::new(value))
    }

    /// The value, unboxed.
    pub fn into_inner(self) -> T {
        *self.0
    }
}

impl<T> From<T> for Obj<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Obj<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Obj<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<T: DataType> Value for Obj<T> {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        let mut v = Box::<T>::default();
        super::decode_object(d, start, field, &mut *v)?;
        Ok(Self(v))
    }
    fn encode_value(&self, e: &mut Encoder, name: &str, field: &FieldInfo) {
        super::encode_object(e, name, field, &*self.0);
    }
    fn walk_value(&self, visitor: &mut dyn Visitor) {
        super::walk(&*self.0, visitor);
    }
    fn from_any(any: Any) -> Result<Self, Any> {
        T::from_any(any).map(Self::new)
    }
}
