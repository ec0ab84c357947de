//! `xsd:anyType` values, and SOAP faults.

use std::fmt;

use super::de::{DecodeError, Decoder, Start};
use super::ser::{Encoder, XsiName};
use super::value::format_float;
use super::{
    Binary, DataObject, DataType, DataTypeInfo, DateTime, EnumInfo, FieldInfo, FieldKind,
    ManagedObjectReference, Service, Since, TypeRef, Value, Visitor, lookup_type,
};

/// An `xsd:anyType` value: it names its own type on the wire with `xsi:type`.
///
/// Property values (`DynamicProperty.val`), option values and task results are `Any`.
/// [`Value::from_any`] turns one into a typed value.
///
/// ```
/// use vsphere_client::codec::{Any, Value};
/// use vsphere_client::types::VirtualMachinePowerState;
/// let v = Any::String("web-01".into());
/// assert_eq!(v.as_str(), Some("web-01"));
/// assert_eq!(String::from_any(v).unwrap(), "web-01");
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Any {
    /// No value (a required `anyType` the server did not send).
    #[default]
    Absent,
    /// `xsd:boolean`.
    Bool(bool),
    /// `xsd:byte`.
    Byte(i8),
    /// `xsd:short`.
    Short(i16),
    /// `xsd:int`.
    Int(i32),
    /// `xsd:long`.
    Long(i64),
    /// `xsd:float`.
    Float(f32),
    /// `xsd:double`.
    Double(f64),
    /// `xsd:string` (and untyped text).
    String(String),
    /// `xsd:dateTime`.
    DateTime(DateTime),
    /// `xsd:base64Binary`.
    Binary(Binary),
    /// A managed object reference.
    MoRef(ManagedObjectReference),
    /// A value of a vim enum.
    Enum(EnumValue),
    /// A data object of any type.
    Data(Box<dyn DataObject>),
    /// An `ArrayOf*` value.
    Array(AnyArray),
    /// A value whose `xsi:type` this build does not know, kept as raw XML.
    Unknown {
        /// The `xsi:type` the server sent.
        type_name: String,
        /// The element, tags included.
        xml: String,
    },
}

impl Any {
    /// The string, if this is an `xsd:string`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The data object, if this is one.
    pub fn as_object(&self) -> Option<&dyn DataObject> {
        match self {
            Self::Data(d) => Some(&**d),
            _ => None,
        }
    }

    /// The type name the value carries on the wire (`xsd:` primitives without the prefix).
    pub fn type_name(&self) -> &str {
        match self {
            Self::Absent => "",
            Self::Bool(_) => "boolean",
            Self::Byte(_) => "byte",
            Self::Short(_) => "short",
            Self::Int(_) => "int",
            Self::Long(_) => "long",
            Self::Float(_) => "float",
            Self::Double(_) => "double",
            Self::String(_) => "string",
            Self::DateTime(_) => "dateTime",
            Self::Binary(_) => "base64Binary",
            Self::MoRef(_) => "ManagedObjectReference",
            Self::Enum(e) => e.info.name,
            Self::Data(d) => d.type_name(),
            Self::Array(a) => a.item_name(),
            Self::Unknown { type_name, .. } => type_name,
        }
    }
}

/// A value of a vim enum held in an `anyType` (`runtime.powerState` in a property set).
#[derive(Clone, Debug)]
pub struct EnumValue {
    info: &'static EnumInfo,
    value: Box<str>,
}

impl EnumValue {
    /// A value of the enum `info`.
    pub fn new(info: &'static EnumInfo, value: impl Into<Box<str>>) -> Self {
        Self {
            info,
            value: value.into(),
        }
    }

    /// The enum type.
    pub fn info(&self) -> &'static EnumInfo {
        self.info
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// An `ArrayOf*` value inside an `anyType`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyArray {
    /// `ArrayOfBoolean`.
    Bool(Vec<bool>),
    /// `ArrayOfByte`.
    Byte(Vec<i8>),
    /// `ArrayOfShort`.
    Short(Vec<i16>),
    /// `ArrayOfInt`.
    Int(Vec<i32>),
    /// `ArrayOfLong`.
    Long(Vec<i64>),
    /// `ArrayOfFloat`.
    Float(Vec<f32>),
    /// `ArrayOfDouble`.
    Double(Vec<f64>),
    /// `ArrayOfString`.
    String(Vec<String>),
    /// `ArrayOfDateTime`.
    DateTime(Vec<DateTime>),
    /// `ArrayOfBase64Binary`.
    Binary(Vec<Binary>),
    /// `ArrayOfManagedObjectReference`.
    MoRef(Vec<ManagedObjectReference>),
    /// `ArrayOf<Enum>`.
    Enum {
        /// The enum type.
        info: &'static EnumInfo,
        /// The wire values.
        values: Vec<String>,
    },
    /// `ArrayOf<DataType>`: each item is the item type or a subtype.
    Data {
        /// The declared item type.
        item: &'static DataTypeInfo,
        /// The items.
        items: Vec<Box<dyn DataObject>>,
    },
    /// `ArrayOfAnyType`.
    Any(Vec<Any>),
}

impl AnyArray {
    /// The item type's wire name (`int`, `VirtualDevice`, ...).
    pub fn item_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "boolean",
            Self::Byte(_) => "byte",
            Self::Short(_) => "short",
            Self::Int(_) => "int",
            Self::Long(_) => "long",
            Self::Float(_) => "float",
            Self::Double(_) => "double",
            Self::String(_) => "string",
            Self::DateTime(_) => "dateTime",
            Self::Binary(_) => "base64Binary",
            Self::MoRef(_) => "ManagedObjectReference",
            Self::Enum { info, .. } => info.name,
            Self::Data { item, .. } => item.name,
            Self::Any(_) => "anyType",
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Byte(v) => v.len(),
            Self::Short(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Long(v) => v.len(),
            Self::Float(v) => v.len(),
            Self::Double(v) => v.len(),
            Self::String(v) => v.len(),
            Self::DateTime(v) => v.len(),
            Self::Binary(v) => v.len(),
            Self::MoRef(v) => v.len(),
            Self::Enum { values, .. } => values.len(),
            Self::Data { items, .. } => items.len(),
            Self::Any(v) => v.len(),
        }
    }

    /// Whether the array has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A field descriptor for values inside `anyType` (items carry their own types).
const ANY_FIELD: FieldInfo = FieldInfo {
    name: "anyType",
    kind: FieldKind::Any,
    flags: 0,
    since: Since {
        service: Service::Vim25,
        release: 0,
    },
};

fn field_of(kind: FieldKind) -> FieldInfo {
    FieldInfo {
        name: "",
        kind,
        flags: FieldInfo::ARRAY,
        since: ANY_FIELD.since,
    }
}

fn items<T: Value>(
    d: &mut Decoder<'_>,
    start: &Start<'_>,
    f: &FieldInfo,
) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::new();
    if start.is_empty() {
        return Ok(out);
    }
    while let Some(child) = d.next_child()? {
        out.push(T::decode_value(d, &child, f)?);
    }
    Ok(out)
}

fn decode_array(
    d: &mut Decoder<'_>,
    start: &Start<'_>,
    item: &str,
) -> Result<Option<AnyArray>, DecodeError> {
    let f = field_of(FieldKind::Any);
    Ok(Some(match item {
        "Boolean" => AnyArray::Bool(items(d, start, &f)?),
        "Byte" => AnyArray::Byte(items(d, start, &f)?),
        "Short" => AnyArray::Short(items(d, start, &f)?),
        "Int" => AnyArray::Int(items(d, start, &f)?),
        "Long" => AnyArray::Long(items(d, start, &f)?),
        "Float" => AnyArray::Float(items(d, start, &f)?),
        "Double" => AnyArray::Double(items(d, start, &f)?),
        "String" | "TypeName" | "MethodName" | "PropertyPath" | "AnyURI" => {
            AnyArray::String(items(d, start, &f)?)
        }
        "DateTime" => AnyArray::DateTime(items(d, start, &f)?),
        "Base64Binary" => AnyArray::Binary(items(d, start, &f)?),
        "ManagedObjectReference" => AnyArray::MoRef(items(d, start, &f)?),
        "AnyType" => AnyArray::Any(items(d, start, &f)?),
        other => match lookup_type(other) {
            Some(TypeRef::Enum(info)) => AnyArray::Enum {
                info,
                values: items::<String>(d, start, &f)?
                    .into_iter()
                    .map(|s| s.trim().to_owned())
                    .collect(),
            },
            Some(TypeRef::Data(info)) => {
                let mut out = Vec::new();
                if !start.is_empty() {
                    let f = field_of(FieldKind::Data(info));
                    while let Some(child) = d.next_child()? {
                        out.push(decode_data(d, &child, &f, info)?);
                    }
                }
                AnyArray::Data {
                    item: info,
                    items: out,
                }
            }
            None => return Ok(None),
        },
    }))
}

/// Decodes a data object of `declared` type or of the subtype `start`'s `xsi:type` names.
pub(crate) fn decode_data(
    d: &mut Decoder<'_>,
    start: &Start<'_>,
    f: &FieldInfo,
    declared: &'static DataTypeInfo,
) -> Result<Box<dyn DataObject>, DecodeError> {
    let info = match start.xsi_type().map(|x| lookup_type(x.local())) {
        Some(Some(TypeRef::Data(t))) if t.is_a(declared) => t,
        _ => declared,
    };
    let mut obj = (info.new)();
    super::decode_object(d, start, f, &mut *obj)?;
    Ok(obj)
}

impl Value for Any {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        let Some(xsi) = start.xsi_type() else {
            // Untyped: text is a string; anything structured is kept raw.
            let xml = d.raw(start)?;
            let mut sub = Decoder::new(&xml);
            if let Ok(Some(s)) = sub.next_child()
                && let Ok(text) = sub.read_text(&s)
            {
                return Ok(Self::String(text.into_owned()));
            }
            return Ok(Self::Unknown {
                type_name: String::new(),
                xml,
            });
        };
        let name = xsi.local();
        if xsi.is_xsd() {
            let v = match name {
                "boolean" => Self::Bool(Value::decode_value(d, start, field)?),
                "byte" => Self::Byte(Value::decode_value(d, start, field)?),
                "short" => Self::Short(Value::decode_value(d, start, field)?),
                "int" => Self::Int(Value::decode_value(d, start, field)?),
                "long" => Self::Long(Value::decode_value(d, start, field)?),
                "float" => Self::Float(Value::decode_value(d, start, field)?),
                "double" => Self::Double(Value::decode_value(d, start, field)?),
                "dateTime" => Self::DateTime(Value::decode_value(d, start, field)?),
                "base64Binary" => Self::Binary(Value::decode_value(d, start, field)?),
                "string" | "anyURI" | "QName" | "token" | "normalizedString" => {
                    Self::String(Value::decode_value(d, start, field)?)
                }
                _ => Self::Unknown {
                    type_name: format!("xsd:{name}"),
                    xml: d.raw(start)?,
                },
            };
            return Ok(v);
        }
        match name {
            "ManagedObjectReference" => {
                return Ok(Self::MoRef(Value::decode_value(d, start, field)?));
            }
            "TypeName" | "MethodName" | "PropertyPath" => {
                return Ok(Self::String(Value::decode_value(d, start, field)?));
            }
            _ => {}
        }
        if let Some(item) = name.strip_prefix("ArrayOf") {
            if let Some(array) = decode_array(d, start, item)? {
                return Ok(Self::Array(array));
            }
        } else {
            match lookup_type(name) {
                Some(TypeRef::Data(info)) => {
                    let f = field_of(FieldKind::Data(info));
                    let mut obj = (info.new)();
                    super::decode_object(d, start, &f, &mut *obj)?;
                    return Ok(Self::Data(obj));
                }
                Some(TypeRef::Enum(info)) => {
                    let text = d.read_text(start)?;
                    return Ok(Self::Enum(EnumValue::new(info, text.trim())));
                }
                None => {}
            }
        }
        Ok(Self::Unknown {
            type_name: name.to_owned(),
            xml: d.raw(start)?,
        })
    }

    fn encode_value(&self, e: &mut Encoder, name: &str, field: &FieldInfo) {
        let any = &ANY_FIELD;
        let _ = field;
        match self {
            Self::Absent => {}
            Self::Bool(v) => e.xsd_value(name, "boolean", if *v { "true" } else { "false" }),
            Self::Byte(v) => e.xsd_value(name, "byte", &v.to_string()),
            Self::Short(v) => e.xsd_value(name, "short", &v.to_string()),
            Self::Int(v) => e.xsd_value(name, "int", &v.to_string()),
            Self::Long(v) => e.xsd_value(name, "long", &v.to_string()),
            Self::Float(v) => e.xsd_value(name, "float", &format_float(f64::from(*v))),
            Self::Double(v) => e.xsd_value(name, "double", &format_float(*v)),
            Self::String(v) => e.xsd_value(name, "string", v),
            Self::DateTime(v) => e.xsd_value(name, "dateTime", &v.to_string()),
            Self::Binary(v) => e.xsd_value(name, "base64Binary", &v.to_base64()),
            Self::MoRef(v) => v.encode_value(e, name, any),
            Self::Enum(v) => e.enum_value(name, any, v.info, &v.value),
            Self::Data(obj) => super::encode_object(e, name, any, &**obj),
            Self::Array(a) => encode_array(e, name, a),
            Self::Unknown { xml, .. } => e.raw(xml),
        }
    }

    fn walk_value(&self, visitor: &mut dyn Visitor) {
        match self {
            Self::Data(obj) => super::walk(&**obj, visitor),
            Self::Array(AnyArray::Data { items, .. }) => {
                for i in items {
                    super::walk(&**i, visitor);
                }
            }
            Self::Array(AnyArray::Any(items)) => {
                for i in items {
                    i.walk_value(visitor);
                }
            }
            _ => {}
        }
    }

    fn from_any(any: Any) -> Result<Self, Any> {
        Ok(any)
    }
}

fn encode_items<T: Value>(e: &mut Encoder, item: &str, values: &[T], f: &FieldInfo) {
    for v in values {
        v.encode_value(e, item, f);
    }
}

fn encode_array(e: &mut Encoder, name: &str, a: &AnyArray) {
    let plain = field_of(FieldKind::String);
    let array_name = |item: &str| {
        let mut s = String::with_capacity(item.len() + 7);
        s.push_str("ArrayOf");
        let mut chars = item.chars();
        if let Some(c) = chars.next() {
            s.push(c.to_ascii_uppercase());
        }
        s.extend(chars);
        s
    };
    let item = a.item_name();
    let service = match a {
        AnyArray::Enum { info, .. } => Some(info.service),
        AnyArray::Data { item, .. } => Some(item.service),
        _ => None,
    };
    let wrapper = array_name(item);
    e.open(
        name,
        Some(match service {
            Some(s) => XsiName::Vim(&wrapper, s),
            None => XsiName::Vim(&wrapper, Service::Vim25),
        }),
    );
    match a {
        AnyArray::Bool(v) => encode_items(e, item, v, &plain),
        AnyArray::Byte(v) => encode_items(e, item, v, &plain),
        AnyArray::Short(v) => encode_items(e, item, v, &plain),
        AnyArray::Int(v) => encode_items(e, item, v, &plain),
        AnyArray::Long(v) => encode_items(e, item, v, &plain),
        AnyArray::Float(v) => encode_items(e, item, v, &plain),
        AnyArray::Double(v) => encode_items(e, item, v, &plain),
        AnyArray::String(v) => encode_items(e, item, v, &plain),
        AnyArray::DateTime(v) => encode_items(e, item, v, &plain),
        AnyArray::Binary(v) => encode_items(e, item, v, &plain),
        AnyArray::MoRef(v) => encode_items(e, item, v, &plain),
        AnyArray::Enum { values, .. } => encode_items(e, item, values, &plain),
        AnyArray::Data { item: info, items } => {
            let f = field_of(FieldKind::Data(info));
            for obj in items {
                super::encode_object(e, info.name, &f, &**obj);
            }
        }
        AnyArray::Any(v) => encode_items(e, item, v, &ANY_FIELD),
    }
    e.close(name);
}

/// A SOAP fault: the server refused the call.
///
/// [`SoapFault::detail`] is the typed vSphere fault (`InvalidLogin`, `NotAuthenticated`,
/// `FileNotFound`, ...), with its `faultCause` chain.
#[derive(Clone)]
pub struct SoapFault {
    /// `faultcode` (`ServerFaultCode`, `ClientFaultCode`, ...).
    pub code: String,
    /// `faultstring`: the server's message.
    pub message: String,
    /// The typed fault from `<detail>`, when there was one.
    pub detail: Option<Box<dyn DataObject>>,
    /// The fault type the server named when this build does not know it (the detail then
    /// decoded as its nearest known base, `MethodFault`).
    pub unknown_type: Option<String>,
}

impl SoapFault {
    /// The wire name of the fault type (`InvalidLogin`), or `""` without detail.
    pub fn fault_type(&self) -> &str {
        if let Some(u) = &self.unknown_type {
            return u;
        }
        self.detail.as_ref().map_or("", |d| d.type_name())
    }

    /// The detail as a `T`, if it is exactly one.
    pub fn detail_as<T: DataType>(&self) -> Option<&T> {
        self.detail.as_ref().and_then(|d| d.downcast_ref())
    }
}

impl fmt::Debug for SoapFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoapFault")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("type", &self.fault_type())
            .field("detail", &self.detail)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SoapFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fault_type() {
            "" => write!(f, "SOAP fault {}: {}", self.code, self.message),
            t => write!(f, "{t}: {}", self.message),
        }
    }
}

/// Reads the content of `<soapenv:Fault>`.
pub(crate) fn read_fault(d: &mut Decoder<'_>, start: &Start<'_>) -> Result<SoapFault, DecodeError> {
    let mut fault = SoapFault {
        code: String::new(),
        message: String::new(),
        detail: None,
        unknown_type: None,
    };
    if start.is_empty() {
        return Ok(fault);
    }
    while let Some(child) = d.next_child()? {
        match child.local() {
            "faultcode" => d.read_text(&child)?.trim().clone_into(&mut fault.code),
            "faultstring" => fault.message = d.read_text(&child)?.into_owned(),
            "detail" => {
                if child.is_empty() {
                    continue;
                }
                while let Some(item) = d.next_child()? {
                    if fault.detail.is_some() {
                        d.skip(&item)?;
                        continue;
                    }
                    let named = item.xsi_type().map_or_else(
                        || {
                            item.local()
                                .strip_suffix("Fault")
                                .unwrap_or(item.local())
                                .to_owned()
                        },
                        |x| x.local().to_owned(),
                    );
                    let info = match lookup_type(&named) {
                        Some(TypeRef::Data(t)) if t.is_fault => t,
                        _ => {
                            fault.unknown_type = Some(named);
                            method_fault_info()
                        }
                    };
                    let mut obj = (info.new)();
                    let f = field_of(FieldKind::Data(info));
                    super::decode_object(d, &item, &f, &mut *obj)?;
                    fault.detail = Some(obj);
                }
            }
            _ => d.skip(&child)?,
        }
    }
    Ok(fault)
}

fn method_fault_info() -> &'static DataTypeInfo {
    match lookup_type("MethodFault") {
        Some(TypeRef::Data(t)) => t,
        _ => unreachable!("MethodFault is part of every generated schema"),
    }
}
