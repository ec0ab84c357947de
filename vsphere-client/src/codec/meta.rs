//! Descriptor tables: what the generated code tells the generic codec about each type.
//!
//! Every generated data type has one static [`DataTypeInfo`], every enum one [`EnumInfo`] and
//! every method one [`MethodInfo`]. The codec is driven by these tables instead of per-type
//! serialisation code, which keeps the generated crate cheap to compile.

use std::fmt;
use std::sync::OnceLock;

use super::DataObject;

/// A SOAP service of the vSphere API: its XML namespace and its releases.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum Service {
    /// The vim25 API on `/sdk`, with the vmodl core and query types.
    Vim25,
    /// `vmodl.reflect`, also served on `/sdk`.
    Reflect,
    /// The storage lifecycle API on `/vslm/sdk`.
    Vslm,
    /// The storage policy API on `/pbm/sdk`.
    Pbm,
}

impl Service {
    /// The XML namespace of the service's types and messages (`urn:vim25`, ...).
    pub const fn namespace(self) -> &'static str {
        match self {
            Self::Vim25 => "urn:vim25",
            Self::Reflect => "urn:reflect",
            Self::Vslm => "urn:vslm",
            Self::Pbm => "urn:pbm",
        }
    }

    /// The prefix the encoder binds to [`Service::namespace`] on the envelope.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Vim25 => "vim25",
            Self::Reflect => "reflect",
            Self::Vslm => "vslm",
            Self::Pbm => "pbm",
        }
    }

    /// The service's releases, oldest first, as the schema lists them.
    pub fn releases(self) -> &'static [&'static str] {
        crate::generated::releases(self)
    }

    /// The ordinal of a release id (`"8.0.2.0"`) in [`Service::releases`].
    ///
    /// A release this build does not know is placed by numeric comparison: a newer server is
    /// treated as the newest known release, so the encoder omits nothing.
    ///
    /// ```
    /// use vsphere_client::codec::Service;
    /// let v = Service::Vim25;
    /// assert!(v.release_ordinal("8.0.2.0") < v.release_ordinal("8.0.3.0"));
    /// assert_eq!(v.release_ordinal("99.0"), v.release_ordinal("9.1.1.0"));
    /// ```
    pub fn release_ordinal(self, id: &str) -> u8 {
        let releases = self.releases();
        if let Some(i) = releases.iter().position(|r| *r == id) {
            return i as u8;
        }
        let key = numeric_key(id);
        let mut best = 0;
        for (i, r) in releases.iter().enumerate() {
            if !r.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            if numeric_key(r) <= key {
                best = i;
            }
        }
        best as u8
    }
}

/// Orders dotted release ids numerically (`6.7.1` < `6.10`); non-numeric parts count as 0.
fn numeric_key(id: &str) -> Vec<u32> {
    id.split('.')
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .collect()
}

/// The release of a service in which a type, property or parameter first appeared.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Since {
    /// The service whose release list `release` indexes.
    pub service: Service,
    /// The ordinal in [`Service::releases`].
    pub release: u8,
}

/// Which primitive or declared type a field holds.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum FieldKind {
    /// `xsd:boolean`.
    Bool,
    /// `xsd:byte`.
    Byte,
    /// `xsd:short`.
    Short,
    /// `xsd:int`.
    Int,
    /// `xsd:long`.
    Long,
    /// `xsd:float`.
    Float,
    /// `xsd:double`.
    Double,
    /// `xsd:string` (also vmodl's TypeName, MethodName and PropertyPath).
    String,
    /// `xsd:dateTime`.
    DateTime,
    /// `xsd:base64Binary`.
    Binary,
    /// `xsd:anyType`: the value names its own type with `xsi:type`.
    Any,
    /// A managed object reference; the name is the referenced managed type, if declared.
    MoRef(Option<&'static str>),
    /// A vim enum.
    Enum(&'static EnumInfo),
    /// A data object of the given declared type (or a subtype).
    Data(&'static DataTypeInfo),
}

impl FieldKind {
    /// The XML schema name of the kind (`string`, `int`, a vim type name, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool => "boolean",
            Self::Byte => "byte",
            Self::Short => "short",
            Self::Int => "int",
            Self::Long => "long",
            Self::Float => "float",
            Self::Double => "double",
            Self::String => "string",
            Self::DateTime => "dateTime",
            Self::Binary => "base64Binary",
            Self::Any => "anyType",
            Self::MoRef(_) => "ManagedObjectReference",
            Self::Enum(e) => e.name,
            Self::Data(d) => d.name,
        }
    }
}

impl fmt::Debug for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

/// A property of a data type or a parameter of a method.
#[derive(Debug)]
pub struct FieldInfo {
    /// The wire (XML element) name.
    pub name: &'static str,
    /// What the field holds.
    pub kind: FieldKind,
    /// [`FieldInfo::OPTIONAL`], [`FieldInfo::ARRAY`], [`FieldInfo::SECRET`], [`FieldInfo::LINK`].
    pub flags: u8,
    /// When the field appeared.
    pub since: Since,
}

impl FieldInfo {
    /// Describes a field; used by the generated code.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        kind: FieldKind,
        flags: u8,
        service: Service,
        release: u8,
    ) -> Self {
        Self {
            name,
            kind,
            flags,
            since: Since { service, release },
        }
    }

    /// The field may be absent.
    pub const OPTIONAL: u8 = 1;
    /// The field repeats (an array).
    pub const ARRAY: u8 = 2;
    /// The field holds a secret: never logged, redacted in `Debug`.
    pub const SECRET: u8 = 4;
    /// The field travels as the key of the object it refers to.
    pub const LINK: u8 = 8;

    /// Whether the field may be absent.
    pub const fn is_optional(&self) -> bool {
        self.flags & Self::OPTIONAL != 0
    }

    /// Whether the field repeats.
    pub const fn is_array(&self) -> bool {
        self.flags & Self::ARRAY != 0
    }

    /// Whether the field holds a secret.
    pub const fn is_secret(&self) -> bool {
        self.flags & Self::SECRET != 0
    }
}

/// A vim enum type: its wire name and its values.
#[derive(Debug)]
pub struct EnumInfo {
    /// The wire name (`VirtualMachinePowerState`).
    pub name: &'static str,
    /// The service that defines it.
    pub service: Service,
    /// The known values, in schema order.
    pub values: &'static [&'static str],
}

/// A data object type: its wire name, its base and its own properties.
pub struct DataTypeInfo {
    /// The wire name (`VirtualDisk`).
    pub name: &'static str,
    /// The service that defines it.
    pub service: Service,
    /// The base type, `None` for the root (`DynamicData`).
    pub base: Option<&'static DataTypeInfo>,
    /// The type's own properties, in wire order (inherited ones come from `base`).
    pub fields: &'static [FieldInfo],
    /// Whether the type is a fault (`MethodFault` or a subtype).
    pub is_fault: bool,
    /// Whether any type derives from this one.
    pub has_subtypes: bool,
    /// Creates a default instance (all optional fields absent).
    pub new: fn() -> Box<dyn DataObject>,
    all: OnceLock<Box<[&'static FieldInfo]>>,
}

impl DataTypeInfo {
    /// Describes a type; used by the generated code.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        service: Service,
        base: Option<&'static DataTypeInfo>,
        fields: &'static [FieldInfo],
        is_fault: bool,
        has_subtypes: bool,
        new: fn() -> Box<dyn DataObject>,
    ) -> Self {
        Self {
            name,
            service,
            base,
            fields,
            is_fault,
            has_subtypes,
            new,
            all: OnceLock::new(),
        }
    }

    /// Every property, inherited ones first, in wire order. Index `i` here is the index that
    /// [`DataObject::field`] takes.
    pub fn all_fields(&'static self) -> &'static [&'static FieldInfo] {
        self.all.get_or_init(|| {
            let mut v = match self.base {
                Some(b) => b.all_fields().to_vec(),
                None => Vec::new(),
            };
            v.extend(self.fields.iter());
            v.into_boxed_slice()
        })
    }

    /// Whether `self` is `other` or derives from it.
    ///
    /// ```
    /// use vsphere_client::types::{VirtualDevice, VirtualDisk};
    /// use vsphere_client::codec::DataObject;
    /// let disk = VirtualDisk::default();
    /// assert!(disk.type_info().is_a(VirtualDevice::default().type_info()));
    /// ```
    pub fn is_a(&'static self, other: &'static DataTypeInfo) -> bool {
        let mut t = Some(self);
        while let Some(x) = t {
            if std::ptr::eq(x, other) {
                return true;
            }
            t = x.base;
        }
        false
    }
}

impl fmt::Debug for DataTypeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataTypeInfo")
            .field("name", &self.name)
            .field("base", &self.base.map(|b| b.name))
            .finish_non_exhaustive()
    }
}

/// A method of a managed object type.
#[derive(Debug)]
pub struct MethodInfo {
    /// The wire name (`PowerOnVM_Task`).
    pub name: &'static str,
    /// The managed object type that declares it.
    pub managed_type: &'static str,
    /// The service to send it to.
    pub service: Service,
    /// When it appeared.
    pub since: Since,
    /// Its parameters in wire order (`_this` excluded).
    pub params: &'static [FieldInfo],
    /// Its result (`returnval`), if not void.
    pub result: Option<FieldInfo>,
    /// For `*_Task` methods: the type of the task's `info.result`, if not void.
    pub task_result: Option<FieldInfo>,
    /// The faults the method declares, by wire name.
    pub faults: &'static [&'static str],
    /// The privilege the method requires, if any.
    pub privilege: Option<&'static str>,
}

/// A type looked up by its wire name.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum TypeRef {
    /// A data object type.
    Data(&'static DataTypeInfo),
    /// An enum type.
    Enum(&'static EnumInfo),
}

/// Finds a data or enum type by its wire name, in any exported service.
///
/// ```
/// use vsphere_client::codec::{lookup_type, TypeRef};
/// assert!(matches!(lookup_type("VirtualDisk"), Some(TypeRef::Data(_))));
/// assert!(matches!(lookup_type("VirtualMachinePowerState"), Some(TypeRef::Enum(_))));
/// assert!(lookup_type("NoSuchType").is_none());
/// ```
pub fn lookup_type(name: &str) -> Option<TypeRef> {
    let table = crate::generated::TYPE_TABLE;
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// Every data and enum type of the generated schema, sorted by wire name.
///
/// ```
/// use vsphere_client::codec::{all_types, TypeRef};
/// let data = all_types().filter(|t| matches!(t, TypeRef::Data(_))).count();
/// assert!(data > 3000);
/// ```
pub fn all_types() -> impl Iterator<Item = TypeRef> {
    crate::generated::TYPE_TABLE.iter().map(|(_, t)| *t)
}
