//! The crate's error type.

use crate::codec::{DecodeError, SoapFault};
use crate::types::LocalizedMethodFault;

/// Everything that can go wrong in `vsphere-client`.
///
/// The enum is `#[non_exhaustive]`: later releases add variants without breaking callers that
/// match on it. No variant carries a secret: URLs, bodies and passwords never appear here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The feature exists in the API but is not built in this release of the SDK.
    #[error("{feature} is not supported by this build of vsphere-client")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
    },
    /// The server answered a call with a SOAP fault; `fault.detail` is the typed vSphere fault.
    #[error("{method} failed: {fault}")]
    Fault {
        /// The method that was called.
        method: &'static str,
        /// The fault, with its typed detail.
        fault: Box<SoapFault>,
    },
    /// The response to a call could not be decoded (malformed, truncated, or not SOAP).
    #[error("cannot decode the response to {method}")]
    Decode {
        /// The method that was called.
        method: &'static str,
        /// What was wrong with the response.
        #[source]
        source: DecodeError,
    },
    /// A call that must return a value returned none.
    #[error("{method} returned no result")]
    MissingResult {
        /// The method that was called.
        method: &'static str,
    },
    /// A value (a task result, a property) was not of the type its declaration promises.
    #[error("unexpected value of type {found:?}")]
    UnexpectedResult {
        /// The type the server sent.
        found: String,
    },
    /// An option (a URL, a thumbprint, an environment variable, a TLS setting) is invalid.
    /// The reason never repeats a password.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// Which option (`url`, `thumbprint`, `VSPHERE_INSECURE`, ...).
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP exchange failed (connection refused or dropped, TLS handshake, ...).
    #[error("{what} failed at the HTTP level")]
    Http {
        /// What was being done (`SOAP call`, `GET`).
        what: &'static str,
        /// The transport's error (its URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// The call did not finish within its timeout.
    #[error("{what} timed out")]
    Timeout {
        /// What was being done.
        what: &'static str,
    },
    /// The server answered with an HTTP status that is neither success nor a SOAP fault.
    #[error("{what}: the server answered with HTTP status {status}")]
    HttpStatus {
        /// The method or request.
        what: &'static str,
        /// The HTTP status code.
        status: u16,
    },
    /// The server refused the user name or password (the `InvalidLogin` fault).
    #[error("login as {username:?} refused: wrong user name or password")]
    InvalidLogin {
        /// The user that tried to log in.
        username: String,
    },
    /// The client was logged out; make a new one.
    #[error("the session was closed by logout")]
    SessionClosed,
    /// A task ended in the `error` state: `kind` is the fault's type (`FileNotFound`,
    /// `InvalidPowerState`, ...), `message` the server's localized message, `fault` the typed
    /// `LocalizedMethodFault` (downcast `fault.fault` to the concrete fault type).
    #[error("task {task} failed with {kind}: {message}")]
    TaskFailed {
        /// The task's managed object id (`task-42`).
        task: String,
        /// The fault's type name.
        kind: String,
        /// The localized message (or the fault's type when the server sent none).
        message: String,
        /// The typed fault, as the server sent it.
        fault: Box<LocalizedMethodFault>,
    },
    /// No inventory object matches `path` (a path, a glob or a name).
    #[error("no {kind} found at {path:?}")]
    NotFound {
        /// What was looked for (`datacenter`, `datastore`, `VirtualMachine`, ...).
        kind: &'static str,
        /// The path, glob or name that was looked up.
        path: String,
    },
    /// A lookup that needs exactly one object found several; name one of them.
    #[error("{path:?} is ambiguous: {} {kind} objects match ({})", matches.len(), matches.join(", "))]
    Ambiguous {
        /// What was looked for.
        kind: &'static str,
        /// The path, glob or name that was looked up (`*` for a default).
        path: String,
        /// The inventory paths of the matches.
        matches: Vec<String>,
    },
    /// A First Class Disk is already attached to a VM: a disk is never attached to two.
    #[error("disk {disk} is already attached to VM {vm:?}")]
    AttachedElsewhere {
        /// The First Class Disk's id.
        disk: String,
        /// The name (or inventory path) of the VM that has it.
        vm: String,
    },
    /// The Automation REST API answered with an error, in either style (`/api`'s
    /// `error_type`, `/rest`'s `type`); `kind` says which (`NotFound`, `AlreadyExists`, ...).
    #[error("{what} failed: {kind} (HTTP {status}) {message}")]
    Rest {
        /// What was being done (`create tag`).
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The error's kind.
        kind: crate::rest::RestErrorKind,
        /// The server's messages, joined (may be empty).
        message: String,
    },
    /// The Security Token Service refused to issue a token (its SOAP fault's code, such as
    /// `InvalidTimeRange` or `RequestFailed`, and message), or answered without one. A wrong
    /// password is [`Error::InvalidLogin`] instead.
    #[error("the STS issued no token: {code} {message}")]
    Sts {
        /// The fault code without its prefix (empty when the response had no token).
        code: String,
        /// The STS's message.
        message: String,
    },
    /// A local file operation failed (the session cache, a datastore upload or download).
    #[error("cannot {what} at {path}")]
    Io {
        /// What was being done (`write the session cache`).
        what: &'static str,
        /// The local path (never a secret).
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A REST response was not the JSON its operation documents.
    #[error("cannot decode the REST response to {what}")]
    RestDecode {
        /// What was being done.
        what: &'static str,
        /// What was wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The SOAP fault, if the server answered with one.
    pub fn fault(&self) -> Option<&SoapFault> {
        match self {
            Self::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }

    /// Whether the server sent a fault of type `name` (`"InvalidLogin"`, `"NotAuthenticated"`),
    /// either as the answer to a call or as the error of a task.
    pub fn is_fault(&self, name: &str) -> bool {
        match self {
            Self::TaskFailed { kind, .. } => kind == name,
            _ => self.fault().is_some_and(|f| f.fault_type() == name),
        }
    }

    /// Whether the server does not implement the method that was called (the `NotImplemented`,
    /// `MethodNotFound` or `NotSupported` fault, or HTTP 404/501): callers fall back to an
    /// older way of doing the same thing.
    pub fn is_not_implemented(&self) -> bool {
        matches!(
            self,
            Self::HttpStatus {
                status: 404 | 501,
                ..
            }
        ) || ["NotImplemented", "MethodNotFound", "NotSupported"]
            .iter()
            .any(|k| self.fault().is_some_and(|f| f.fault_type() == *k))
    }

    /// The kind of a REST API error ([`Error::Rest`]).
    pub fn rest_kind(&self) -> Option<&crate::rest::RestErrorKind> {
        match self {
            Self::Rest { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn unsupported_names_the_feature() {
        let e = Error::Unsupported {
            feature: "LoginByToken",
        };
        assert_eq!(
            e.to_string(),
            "LoginByToken is not supported by this build of vsphere-client"
        );
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }
}
