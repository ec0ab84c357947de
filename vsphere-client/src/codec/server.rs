//! The server side of the codec: decoding request envelopes and encoding responses and faults.
//!
//! `vsphere-sim` (and any tool that answers vSphere SOAP) uses these with the same descriptor
//! tables the client encodes from, so both ends agree on the wire by construction.

use std::fmt;

use super::de::{Body, DecodeError, Decoder, open_body};
use super::ser::{Encoder, Param};
use super::{
    Any, DataObject, FieldInfo, FieldKind, ManagedObjectReference, MethodInfo, Service, Value,
    encode_object,
};

/// A decoded request: the method, the object it was called on and its parameters.
///
/// Each parameter is kept as the values its occurrences decoded to, according to the type the
/// method declares for it; [`Request::one`], [`Request::opt`] and [`Request::many`] turn them into
/// typed values.
pub struct Request {
    /// The method called.
    pub method: &'static MethodInfo,
    /// The object the method was called on (`_this`).
    pub this: ManagedObjectReference,
    params: Vec<Vec<Any>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parameters may hold secrets (`Login.password`): only their names and counts show.
        let params: Vec<(&str, usize)> = self
            .method
            .params
            .iter()
            .zip(&self.params)
            .map(|(p, v)| (p.name, v.len()))
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method.name)
            .field("this", &self.this)
            .field("params", &params)
            .finish()
    }
}

/// Why a request's parameter could not be used.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ParamError {
    /// The parameter's wire name.
    pub param: String,
    /// What was wrong.
    pub problem: &'static str,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter {}: {}", self.param, self.problem)
    }
}

impl std::error::Error for ParamError {}

impl Request {
    fn slot(&mut self, name: &str) -> Result<Vec<Any>, ParamError> {
        let i = self
            .method
            .params
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| ParamError {
                param: name.to_owned(),
                problem: "the method has no such parameter",
            })?;
        Ok(std::mem::take(&mut self.params[i]))
    }

    /// A required parameter, typed.
    pub fn one<T: Value>(&mut self, name: &str) -> Result<T, ParamError> {
        self.opt(name)?.ok_or_else(|| ParamError {
            param: name.to_owned(),
            problem: "missing",
        })
    }

    /// An optional parameter, typed.
    pub fn opt<T: Value>(&mut self, name: &str) -> Result<Option<T>, ParamError> {
        match self.slot(name)?.into_iter().next() {
            None => Ok(None),
            Some(v) => T::from_any(v).map(Some).map_err(|_| ParamError {
                param: name.to_owned(),
                problem: "not of the declared type",
            }),
        }
    }

    /// A repeated parameter, typed.
    pub fn many<T: Value>(&mut self, name: &str) -> Result<Vec<T>, ParamError> {
        self.slot(name)?
            .into_iter()
            .map(|v| {
                T::from_any(v).map_err(|_| ParamError {
                    param: name.to_owned(),
                    problem: "not of the declared type",
                })
            })
            .collect()
    }
}

/// Finds a method by its wire name and the managed type it is called on (`_this`'s type, or a
/// type that derives from the declaring one, such as `Destroy_Task` on a `VirtualMachine`).
pub fn lookup_method(name: &str, managed_type: &str) -> Option<&'static MethodInfo> {
    let table = crate::generated::METHOD_TABLE;
    let start = table.partition_point(|(n, _)| *n < name);
    let candidates = table[start..].iter().take_while(|(n, _)| *n == name);
    let mut first = None;
    for (_, m) in candidates {
        if m.managed_type == managed_type || derives(managed_type, m.managed_type) {
            return Some(m);
        }
        first.get_or_insert(*m);
    }
    first
}

fn derives(t: &str, base: &str) -> bool {
    let mut cur = crate::generated::managed_base(t);
    while let Some(b) = cur {
        if b == base {
            return true;
        }
        cur = crate::generated::managed_base(b);
    }
    false
}

/// Decodes a request envelope: `<Method xmlns="urn:vim25"><_this type=..>..</_this>params</Method>`.
///
/// Unknown methods and malformed envelopes are typed errors; unknown parameter elements are
/// skipped.
pub fn decode_request(body: &str) -> Result<Request, DecodeError> {
    let mut d = Decoder::new(body);
    let Body::Response(name) = open_body(&mut d)? else {
        return Err(DecodeError::unexpected(
            "a SOAP fault in a request",
            d.position(),
        ));
    };
    let mut this: Option<ManagedObjectReference> = None;
    let mut method: Option<&'static MethodInfo> = None;
    let mut params: Vec<Vec<Any>> = Vec::new();
    while let Some(child) = d.next_child()? {
        let local = child.local().to_owned();
        if local == "_this" {
            let field = FieldInfo::new("_this", FieldKind::MoRef(None), 0, Service::Vim25, 0);
            let r = ManagedObjectReference::decode_value(&mut d, &child, &field)?;
            let m = lookup_method(&name, &r.type_).ok_or_else(|| {
                DecodeError::unexpected(format!("unknown method {name}"), d.position())
            })?;
            params = vec![Vec::new(); m.params.len()];
            method = Some(m);
            this = Some(r);
            continue;
        }
        let Some(m) = method else {
            return Err(DecodeError::unexpected(
                format!("<{local}> before _this in {name}"),
                d.position(),
            ));
        };
        match m.params.iter().position(|p| p.name == local) {
            Some(i) => params[i].push(decode_param(&mut d, &child, &m.params[i])?),
            None => d.skip(&child)?,
        }
    }
    let (Some(method), Some(this)) = (method, this) else {
        return Err(DecodeError::unexpected(
            format!("{name} without _this"),
            d.position(),
        ));
    };
    Ok(Request {
        method,
        this,
        params,
    })
}

/// Decodes one parameter occurrence as the kind the method declares.
fn decode_param(
    d: &mut Decoder<'_>,
    start: &super::Start<'_>,
    field: &FieldInfo,
) -> Result<Any, DecodeError> {
    Ok(match field.kind {
        FieldKind::Bool => Any::Bool(Value::decode_value(d, start, field)?),
        FieldKind::Byte => Any::Byte(Value::decode_value(d, start, field)?),
        FieldKind::Short => Any::Short(Value::decode_value(d, start, field)?),
        FieldKind::Int => Any::Int(Value::decode_value(d, start, field)?),
        FieldKind::Long => Any::Long(Value::decode_value(d, start, field)?),
        FieldKind::Float => Any::Float(Value::decode_value(d, start, field)?),
        FieldKind::Double => Any::Double(Value::decode_value(d, start, field)?),
        FieldKind::String => Any::String(Value::decode_value(d, start, field)?),
        FieldKind::DateTime => Any::DateTime(Value::decode_value(d, start, field)?),
        FieldKind::Binary => Any::Binary(Value::decode_value(d, start, field)?),
        FieldKind::Any => Any::decode_value(d, start, field)?,
        FieldKind::MoRef(_) => Any::MoRef(Value::decode_value(d, start, field)?),
        FieldKind::Enum(info) => {
            let text = d.read_text(start)?;
            Any::Enum(super::EnumValue::new(info, text.trim()))
        }
        FieldKind::Data(info) => Any::Data(super::any::decode_data(d, start, field, info)?),
    })
}

/// Encodes a response envelope for `method` with its result values (one `<returnval>` each;
/// none for a void method).
///
/// ```
/// use vsphere_client::codec::{encode_response, ManagedObjectReference};
/// use vsphere_client::mo::methods::CREATE_DISK_TASK;
/// let task = ManagedObjectReference::new("Task", "task-1");
/// let xml = encode_response(&CREATE_DISK_TASK, &[&&task]);
/// assert!(xml.contains(r#"<CreateDisk_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-1</returnval></CreateDisk_TaskResponse>"#));
/// ```
pub fn encode_response(method: &MethodInfo, results: &[&dyn Param]) -> String {
    let mut e = Encoder::new(method.service, None);
    e.begin_envelope();
    let name = format!("{}Response", method.name);
    e.open_ns(&name, method.service.namespace());
    if let Some(f) = &method.result {
        for r in results {
            r.encode_param(&mut e, f);
        }
    }
    e.close(&name);
    e.end_envelope();
    e.finish()
}

/// Encodes a SOAP fault envelope whose detail is the typed `fault` (a `MethodFault` subtype), as
/// vCenter sends it: `<detail><{Type}Fault xsi:type="{Type}">...`.
pub fn encode_fault(code: &str, message: &str, fault: &dyn DataObject) -> String {
    let info = fault.type_info();
    let mut e = Encoder::new(info.service, None);
    e.begin_envelope();
    e.raw("<soapenv:Fault><faultcode>");
    e.text(code);
    e.raw("</faultcode><faultstring>");
    e.text(message);
    e.raw("</faultstring><detail>");
    let element = format!("{}Fault", info.name);
    let field = FieldInfo::new("detail", FieldKind::Any, 0, info.service, 0);
    let mut inner = Encoder::new(info.service, None);
    encode_object(&mut inner, &element, &field, fault);
    let xml = inner.finish();
    // Declare the fault's namespace on its element, as vCenter does.
    let xml = xml.replacen(
        &format!("<{element}"),
        &format!(r#"<{element} xmlns="{}""#, info.service.namespace()),
        1,
    );
    e.raw(&xml);
    e.raw("</detail></soapenv:Fault>");
    e.end_envelope();
    e.finish()
}
