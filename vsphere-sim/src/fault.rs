//! Faults as vCenter sends them: a message plus a typed `MethodFault` detail, either as a SOAP
//! fault (for a failed call) or as a `LocalizedMethodFault` (a task's `info.error`, a
//! `faultCause`).

use axum::http::StatusCode;
use axum::response::Response;
use vsphere_client::codec::{DataObject, ManagedObjectReference, Obj, Poly, encode_fault};
use vsphere_client::types::{
    InvalidArgument, InvalidRequest, LocalizedMethodFault, ManagedObjectNotFound, MethodFault,
    NotImplemented,
};

/// A fault to send: the message and the typed detail (a `MethodFault` subtype).
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) message: String,
    pub(crate) detail: Box<dyn DataObject>,
}

impl Fault {
    pub(crate) fn new(message: impl Into<String>, detail: impl DataObject + 'static) -> Self {
        Self {
            message: message.into(),
            detail: Box::new(detail),
        }
    }

    /// The fault's wire type name (`InvalidLogin`, ...).
    #[cfg(test)]
    pub(crate) fn type_name(&self) -> &'static str {
        self.detail.type_name()
    }

    /// The SOAP fault response (HTTP 500, as vCenter answers).
    pub(crate) fn into_response(self) -> Response {
        let body = encode_fault("ServerFaultCode", &self.message, &*self.detail);
        crate::server::xml(StatusCode::INTERNAL_SERVER_ERROR, body)
    }

    /// A fault again from a `LocalizedMethodFault` (a failed task's error, raised by
    /// `VslmQueryTaskResult`).
    pub(crate) fn from_localized(l: &LocalizedMethodFault) -> Self {
        let message = l.localized_message.clone().unwrap_or_default();
        match &l.fault {
            Some(f) => Self {
                message,
                detail: crate::path::clone_object(f.as_object()),
            },
            None => Self::new(message, vsphere_client::types::SystemError::default()),
        }
    }

    /// The fault as a `LocalizedMethodFault` (a task's error, another fault's `faultCause`).
    pub(crate) fn localized(self) -> LocalizedMethodFault {
        let mut l = LocalizedMethodFault::default();
        l.fault = Poly::<MethodFault>::try_from_object(self.detail).ok();
        l.localized_message = Some(self.message);
        l
    }
}

/// Sets `faultCause` on a fault detail, when the detail is a `MethodFault` of a type this
/// function knows how to reach (every vim fault derives from `MethodFault`, which holds it).
pub(crate) fn with_cause(mut outer: Fault, cause: Fault) -> Fault {
    let info = outer.detail.type_info();
    let fields = info.all_fields();
    if let Some(i) = fields.iter().position(|f| f.name == "faultCause")
        && let vsphere_client::codec::FieldMut::Opt(slot) = outer.detail.field_mut(i)
    {
        let value: Option<Obj<LocalizedMethodFault>> = Some(Obj::new(cause.localized()));
        slot.assign(&value);
    }
    outer
}

pub(crate) fn bad_request(problem: impl std::fmt::Display) -> Fault {
    Fault::new(
        format!("invalid request: {problem}"),
        InvalidRequest::default(),
    )
}

pub(crate) fn invalid_argument(message: impl Into<String>, property: Option<&str>) -> Fault {
    let mut f = InvalidArgument::default();
    f.invalid_property = property.map(str::to_owned);
    Fault::new(message, f)
}

pub(crate) fn not_found(obj: &ManagedObjectReference) -> Fault {
    let mut f = ManagedObjectNotFound::default();
    f.obj = obj.clone();
    Fault::new(
        format!(
            "The object '{}:{}' has already been deleted or has not been completely created",
            obj.type_, obj.value
        ),
        f,
    )
}

pub(crate) fn not_implemented(name: &str) -> Fault {
    let mut f = NotImplemented::default();
    let msg = format!("{name} is not built in this release of vsphere-sim");
    f.msg = Some(msg.clone());
    Fault::new(msg, f)
}

/// A default fault of the named type (`SystemError`, `InvalidState`, ...), for fault
/// injection; `None` when the name is not a `MethodFault` type of the schema.
pub(crate) fn by_name(name: &str, message: &str) -> Option<Fault> {
    let vsphere_client::codec::TypeRef::Data(info) = vsphere_client::codec::lookup_type(name)?
    else {
        return None;
    };
    if !info.is_a(<MethodFault as vsphere_client::codec::DataType>::info()) {
        return None;
    }
    Some(Fault {
        message: message.to_owned(),
        detail: (info.new)(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::types::{FileLocked, InvalidState};

    #[test]
    fn localized_keeps_type_and_message() {
        let l = Fault::new("locked", FileLocked::default()).localized();
        assert_eq!(l.localized_message.as_deref(), Some("locked"));
        assert_eq!(l.fault.as_ref().map(Poly::type_name), Some("FileLocked"));
    }

    #[test]
    fn cause_is_nested() {
        let f = with_cause(
            Fault::new("outer", InvalidState::default()),
            Fault::new("inner", FileLocked::default()),
        );
        let s = f.detail.downcast_ref::<InvalidState>().unwrap();
        let cause = s.fault_cause.as_ref().unwrap();
        assert_eq!(cause.fault.as_ref().unwrap().type_name(), "FileLocked");
    }

    #[test]
    fn faults_by_name() {
        assert_eq!(
            by_name("SystemError", "x").unwrap().type_name(),
            "SystemError"
        );
        assert!(by_name("VirtualDisk", "x").is_none());
        assert!(by_name("Nope", "x").is_none());
    }
}
