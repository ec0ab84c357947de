//! The encoder: writes SOAP request envelopes (and, for the simulator, responses) in schema
//! order, omitting properties newer than the server's release.

use std::fmt::{self, Write as _};

use quick_xml::escape::escape;

use super::{
    DataObject, EnumInfo, FieldInfo, FieldKind, FieldRef, ManagedObjectReference, MethodInfo,
    Service, Value,
};

/// How an `xsi:type` names its type.
#[derive(Clone, Copy, Debug)]
pub enum XsiName<'a> {
    /// An XML Schema primitive: `xsd:int`.
    Xsd(&'a str),
    /// A vSphere type of a service: unqualified in the body's own namespace, prefixed otherwise.
    Vim(&'a str, Service),
}

/// Writes XML for one message.
///
/// The encoder knows the message's service and, when a session has negotiated it, the
/// server's release: properties and parameters introduced after that release are left out, so
/// an older server never sees an element it would reject.
pub struct Encoder {
    out: String,
    service: Service,
    release: Option<u8>,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("service", &self.service)
            .field("release", &self.release)
            .field("bytes", &self.out.len())
            .finish()
    }
}

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/""#,
    r#" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#,
    r#" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
    r#" xmlns:vim25="urn:vim25" xmlns:reflect="urn:reflect" xmlns:vslm="urn:vslm""#,
    r#" xmlns:pbm="urn:pbm"><soapenv:Body>"#
);
const ENVELOPE_CLOSE: &str = "</soapenv:Body></soapenv:Envelope>";

impl Encoder {
    /// An encoder for a message of `service`, for a server at `release` (a release id such as
    /// `"8.0.2.0"`), or for the newest release when `None`.
    pub fn new(service: Service, release: Option<&str>) -> Self {
        Self {
            out: String::with_capacity(512),
            service,
            release: release.map(|r| service.release_ordinal(r)),
        }
    }

    /// Writes the envelope's opening tags.
    pub fn begin_envelope(&mut self) {
        self.out.push_str(ENVELOPE_OPEN);
    }

    /// Writes the envelope's closing tags.
    pub fn end_envelope(&mut self) {
        self.out.push_str(ENVELOPE_CLOSE);
    }

    /// The XML written so far.
    pub fn finish(self) -> String {
        self.out
    }

    /// Whether a field of the given release belongs in this message.
    pub fn includes(&self, field: &FieldInfo) -> bool {
        match self.release {
            Some(r) => field.since.service != self.service || field.since.release <= r,
            None => true,
        }
    }

    /// Opens element `name`, with an `xsi:type` if given.
    pub fn open(&mut self, name: &str, xsi: Option<XsiName<'_>>) {
        self.out.push('<');
        self.out.push_str(name);
        self.xsi(xsi);
        self.out.push('>');
    }

    /// Opens element `name` with a default namespace declaration (a message element).
    pub fn open_ns(&mut self, name: &str, namespace: &str) {
        let _ = write!(self.out, r#"<{name} xmlns="{namespace}">"#);
    }

    fn xsi(&mut self, xsi: Option<XsiName<'_>>) {
        match xsi {
            None => {}
            Some(XsiName::Xsd(t)) => {
                let _ = write!(self.out, r#" xsi:type="xsd:{t}""#);
            }
            Some(XsiName::Vim(t, s)) if s == self.service => {
                let _ = write!(self.out, r#" xsi:type="{t}""#);
            }
            Some(XsiName::Vim(t, s)) => {
                let _ = write!(self.out, r#" xsi:type="{}:{t}""#, s.prefix());
            }
        }
    }

    /// Opens a managed object reference element.
    pub fn open_moref(&mut self, name: &str, type_: &str, in_any: bool) {
        let _ = write!(self.out, r#"<{name} type="{}""#, escape(type_));
        if in_any {
            self.out.push_str(r#" xsi:type="ManagedObjectReference""#);
        }
        self.out.push('>');
    }

    /// Writes escaped text.
    pub fn text(&mut self, text: &str) {
        self.out.push_str(&escape(text));
    }

    /// Writes XML as is (a value kept raw because its type was unknown).
    pub fn raw(&mut self, xml: &str) {
        self.out.push_str(xml);
    }

    /// Closes element `name`.
    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// Writes a primitive's text with its `xsi:type` (inside an `anyType`).
    pub fn xsd_value(&mut self, name: &str, xsd: &str, text: &str) {
        self.open(name, Some(XsiName::Xsd(xsd)));
        self.text(text);
        self.close(name);
    }

    /// Writes an enum value; inside an `anyType` it names the enum with `xsi:type`.
    pub fn enum_value(&mut self, name: &str, field: &FieldInfo, info: &EnumInfo, wire: &str) {
        let xsi =
            matches!(field.kind, FieldKind::Any).then_some(XsiName::Vim(info.name, info.service));
        self.open(name, xsi);
        self.text(wire);
        self.close(name);
    }
}

/// Encodes `object` as element `name`, properties in schema order, with an `xsi:type` when its
/// type differs from the one `field` declares.
pub fn encode_object(e: &mut Encoder, name: &str, field: &FieldInfo, object: &dyn DataObject) {
    let info = object.type_info();
    let declared_same = matches!(field.kind, FieldKind::Data(d) if std::ptr::eq(d, info));
    let xsi = (!declared_same).then_some(XsiName::Vim(info.name, info.service));
    e.open(name, xsi);
    encode_fields(e, object);
    e.close(name);
}

fn encode_fields(e: &mut Encoder, object: &dyn DataObject) {
    for (i, f) in object.type_info().all_fields().iter().enumerate() {
        if !e.includes(f) {
            continue;
        }
        match object.field(i) {
            FieldRef::One(s) => s.encode(e, f),
            FieldRef::Opt(s) => s.encode(e, f),
            FieldRef::Many(s) => s.encode(e, f),
        }
    }
}

/// A method argument the encoder can write: `&T`, `Option<&T>`, `&[T]`, `&str`, numbers.
pub trait Param {
    /// Writes the argument as zero or more elements named `field.name`.
    fn encode_param(&self, e: &mut Encoder, field: &FieldInfo);
}

impl<T: Value> Param for &T {
    fn encode_param(&self, e: &mut Encoder, field: &FieldInfo) {
        (**self).encode_value(e, field.name, field);
    }
}

impl<T: Value> Param for Option<&T> {
    fn encode_param(&self, e: &mut Encoder, field: &FieldInfo) {
        if let Some(v) = self {
            v.encode_value(e, field.name, field);
        }
    }
}

impl<T: Value> Param for &[T] {
    fn encode_param(&self, e: &mut Encoder, field: &FieldInfo) {
        for v in *self {
            v.encode_value(e, field.name, field);
        }
    }
}

impl Param for &str {
    fn encode_param(&self, e: &mut Encoder, field: &FieldInfo) {
        e.open(field.name, None);
        e.text(self);
        e.close(field.name);
    }
}

impl Param for Option<&str> {
    fn encode_param(&self, e: &mut Encoder, field: &FieldInfo) {
        if let Some(s) = self {
            s.encode_param(e, field);
        }
    }
}

macro_rules! copy_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn encode_param(&self, e: &mut Encoder, field: &FieldInfo) {
                self.encode_value(e, field.name, field);
            }
        }
        impl Param for Option<$t> {
            fn encode_param(&self, e: &mut Encoder, field: &FieldInfo) {
                if let Some(v) = self {
                    v.encode_value(e, field.name, field);
                }
            }
        }
    )*};
}
copy_param!(bool, i8, i16, i32, i64, f32, f64);

/// Encodes a complete request envelope for `method` on the object `this`.
///
/// `release` is the server's release for the method's service (parameters and properties
/// newer than it are omitted); `params` are the arguments in the method's parameter order.
///
/// ```
/// use vsphere_client::codec::{encode_request, ManagedObjectReference};
/// use vsphere_client::mo::methods::RETRIEVE_SERVICE_CONTENT;
/// let this = ManagedObjectReference::new("ServiceInstance", "ServiceInstance");
/// let xml = encode_request(&RETRIEVE_SERVICE_CONTENT, &this, None, &[]);
/// assert!(xml.contains(r#"<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>"#));
/// ```
pub fn encode_request(
    method: &MethodInfo,
    this: &ManagedObjectReference,
    release: Option<&str>,
    params: &[&dyn Param],
) -> String {
    let mut e = Encoder::new(method.service, release);
    e.begin_envelope();
    e.open_ns(method.name, method.service.namespace());
    e.open_moref("_this", &this.type_, false);
    e.text(&this.value);
    e.close("_this");
    for (p, f) in params.iter().zip(method.params) {
        if e.includes(f) {
            p.encode_param(&mut e, f);
        }
    }
    e.close(method.name);
    e.end_envelope();
    e.finish()
}
