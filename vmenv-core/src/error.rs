//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `vmenv-core`.
///
/// The enum is `#[non_exhaustive]`: later releases add variants without breaking callers that
/// match on it. Sources are reachable through [`std::error::Error::source`] and never repeated in
/// the `Display` text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The capability exists in the model but is not built in this release of the SDK, or the
    /// backend in use does not offer it.
    #[error("{feature} is not supported by this build of vmenv-core")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
    },
    /// Input was rejected before anything was changed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (a VM name, a spec field, a file).
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The named VM does not exist.
    #[error("no VM named {name:?}")]
    NotFound {
        /// The VM's name.
        name: String,
    },
    /// A VM with that name exists already.
    #[error("a VM named {name:?} exists already")]
    AlreadyExists {
        /// The VM's name.
        name: String,
    },
    /// The operation needs the VM in another state.
    #[error("cannot {operation} VM {name:?} while it is {state}")]
    WrongState {
        /// The VM's name.
        name: String,
        /// What was attempted.
        operation: &'static str,
        /// The state the VM is in.
        state: String,
    },
    /// A deadline passed.
    #[error("timed out after {seconds:.1} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long was waited.
        seconds: f64,
    },
    /// A file or socket operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A host tool (qemu-img, genisoimage, ssh, ...) is missing or failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its exit status and stderr, or why it could not run.
        detail: String,
    },
    /// QEMU's monitor (QMP or HMP through QMP) returned an error or spoke nonsense.
    #[error("QEMU monitor: {class}: {desc}")]
    Qmp {
        /// The QMP error class (`GenericError`, ...), or `Protocol` for a broken exchange.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// A remote API (AppCatalyst, vmrest) answered with an error.
    #[error("{api} answered HTTP {status}: {message}")]
    Api {
        /// Which API.
        api: &'static str,
        /// The HTTP status.
        status: u16,
        /// The `message` of the `{code,message}` reply, or the body.
        message: String,
    },
    /// A remote API could not be reached or its reply could not be read.
    #[error("{api} request failed: {detail}")]
    Transport {
        /// Which API.
        api: &'static str,
        /// What went wrong (never containing credentials).
        detail: String,
    },
    /// A command run in the guest failed to run at all (not a non-zero exit, which is a result).
    #[error("guest command in VM {name:?} could not run: {detail}")]
    GuestExec {
        /// The VM's name.
        name: String,
        /// Why.
        detail: String,
    },
    /// A call to a remote hypervisor API that has a typed client (vSphere) failed. The source
    /// is the client's error, which never carries a password or a session cookie.
    #[error("{op} failed")]
    Remote {
        /// What was being done (`CloneVM_Task`, `PowerOnVM_Task`, ...).
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An environment file could not be read or parsed.
    #[error("environment file {path}: {reason}")]
    Environment {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Builds an [`Error::Io`] with a context naming what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds an [`Error::Invalid`].
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }

    /// True when the error says a capability is not available.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::Unsupported { .. })
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::Error;

    #[test]
    fn unsupported_names_the_feature() {
        let e = Error::Unsupported { feature: "x" };
        assert_eq!(
            e.to_string(),
            "x is not supported by this build of vmenv-core"
        );
        assert!(e.is_unsupported());
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }

    #[test]
    fn io_source_is_not_repeated_in_display() {
        let e = Error::io(
            "reading /x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(e.to_string(), "reading /x");
        assert_eq!(e.source().map(ToString::to_string).as_deref(), Some("gone"));
    }
}
