//! The crate's error type and its mapping onto the C result codes ([`vsdk_result`]).

use crate::vsdk_result;

/// Everything that can go wrong behind the C API. Each error maps onto one [`vsdk_result`]
/// code ([`Error::code`]); its message (with its sources) becomes the thread's last error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The feature exists in the issue but is not built in this release of the C API.
    #[error("{feature} is not supported by this build of sdk-ffi")]
    Unsupported {
        /// What is missing.
        feature: &'static str,
    },
    /// A required pointer argument was NULL.
    #[error("argument `{name}` is NULL")]
    NullParameter {
        /// The argument's name, as in the header.
        name: &'static str,
    },
    /// A string argument was not valid UTF-8.
    #[error("argument `{name}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The argument's name, as in the header.
        name: &'static str,
    },
    /// An argument was present but wrong.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The handle's Tokio runtime could not be started.
    #[error("cannot start the handle's runtime")]
    Runtime(#[source] std::io::Error),
    /// A blocking call was made from inside a callback or another Tokio runtime.
    #[error(
        "vsdk functions block: they cannot be called from inside a vsdk callback or a Tokio runtime"
    )]
    Reentrant,
    /// Rust code behind the entry point panicked; the panic was caught at the boundary.
    #[error("panic in the SDK: {message}")]
    Panic {
        /// The panic's message.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{context}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An error of `vsphere-client`.
    #[error(transparent)]
    Vsphere(#[from] vsphere_client::Error),
    /// An error of `vsphere-sim`.
    #[error(transparent)]
    Sim(#[from] vsphere_sim::Error),
    /// An error of `volume-core`.
    #[error(transparent)]
    Volume(#[from] volume_core::Error),
    /// An error of `pipeline-core`.
    #[error(transparent)]
    Pipeline(#[from] pipeline_core::Error),
    /// An error of `vmenv-core`.
    #[error(transparent)]
    Vmenv(#[from] vmenv_core::Error),
}

impl Error {
    /// An [`Error::InvalidArgument`].
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }

    /// The result code C sees for this error.
    ///
    /// ```
    /// use vsdk::{Error, vsdk_result};
    /// assert_eq!(Error::NullParameter { name: "url" }.code(), vsdk_result::NullParameter);
    /// ```
    pub fn code(&self) -> vsdk_result {
        match self {
            Self::Unsupported { .. } | Self::Sim(vsphere_sim::Error::NoTls) => {
                vsdk_result::Unsupported
            }
            Self::NullParameter { .. } => vsdk_result::NullParameter,
            Self::InvalidUtf8 { .. } => vsdk_result::InvalidUtf8,
            Self::InvalidArgument { .. } => vsdk_result::InvalidArgument,
            Self::Runtime(_) => vsdk_result::Runtime,
            Self::Reentrant => vsdk_result::Reentrant,
            Self::Panic { .. } => vsdk_result::Panic,
            Self::Io { .. } => vsdk_result::Io,
            Self::Vsphere(e) => vsphere_code(e),
            Self::Sim(_) => vsdk_result::Simulator,
            Self::Volume(e) => volume_code(e),
            Self::Pipeline(e) => pipeline_code(e),
            Self::Vmenv(e) => vmenv_code(e),
        }
    }

    /// The message with every source, `outer: inner: innermost`.
    pub(crate) fn chain(&self) -> String {
        let mut msg = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !msg.ends_with(&text) {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            source = s.source();
        }
        msg
    }
}

/// Faults that say an object or id does not exist.
const NOT_FOUND_FAULTS: &[&str] = &["NotFound", "ManagedObjectNotFound", "FileNotFound"];

fn vsphere_code(e: &vsphere_client::Error) -> vsdk_result {
    use vsphere_client::Error as E;
    match e {
        E::Unsupported { .. } => vsdk_result::Unsupported,
        E::InvalidOption { .. } => vsdk_result::InvalidArgument,
        E::Http { .. } | E::HttpStatus { .. } => vsdk_result::Connect,
        E::Timeout { .. } => vsdk_result::Timeout,
        E::InvalidLogin { .. } => vsdk_result::LoginFailed,
        E::NotFound { .. } => vsdk_result::NotFound,
        E::Ambiguous { .. } => vsdk_result::Ambiguous,
        E::AttachedElsewhere { .. } => vsdk_result::AttachedElsewhere,
        E::TaskFailed { kind, .. } if NOT_FOUND_FAULTS.contains(&kind.as_str()) => {
            vsdk_result::NotFound
        }
        E::TaskFailed { .. } => vsdk_result::TaskFailed,
        E::Fault { .. } if NOT_FOUND_FAULTS.iter().any(|f| e.is_fault(f)) => vsdk_result::NotFound,
        E::Fault { .. } => vsdk_result::Fault,
        _ => vsdk_result::Vsphere,
    }
}

fn volume_code(e: &volume_core::Error) -> vsdk_result {
    use volume_core::Error as E;
    match e {
        E::Unsupported { .. } => vsdk_result::Unsupported,
        E::InvalidArgument { .. } => vsdk_result::InvalidArgument,
        E::UnknownVolume { .. } => vsdk_result::UnknownVolume,
        E::AttachedElsewhere { .. } => vsdk_result::VolumeAttachedElsewhere,
        E::NameConflict { .. } => vsdk_result::VolumeNameConflict,
        E::LeaseHeld { .. } => vsdk_result::LeaseHeld,
        E::CapacityExhausted { .. } => vsdk_result::CapacityExhausted,
        E::UnknownPool { .. } => vsdk_result::UnknownPool,
        E::UnknownNode { .. } => vsdk_result::UnknownNode,
        E::Busy { .. } => vsdk_result::VolumeBusy,
        _ => vsdk_result::Volume,
    }
}

fn pipeline_code(e: &pipeline_core::Error) -> vsdk_result {
    use pipeline_core::Error as E;
    match e {
        E::Unsupported { .. } => vsdk_result::Unsupported,
        E::RunNotFound(_) => vsdk_result::UnknownRun,
        E::ApprovalRefused { .. } => vsdk_result::ApprovalRefused,
        E::Yaml { .. } | E::Invalid { .. } | E::Input(_) => vsdk_result::InvalidPipeline,
        E::InvalidState { .. } => vsdk_result::InvalidRunState,
        _ => vsdk_result::Pipeline,
    }
}

fn vmenv_code(e: &vmenv_core::Error) -> vsdk_result {
    use vmenv_core::Error as E;
    match e {
        E::Unsupported { .. } => vsdk_result::Unsupported,
        E::Invalid { .. } | E::Environment { .. } => vsdk_result::InvalidEnvironment,
        E::NotFound { .. } => vsdk_result::UnknownVm,
        E::AlreadyExists { .. } => vsdk_result::VmExists,
        E::WrongState { .. } => vsdk_result::VmWrongState,
        E::Timeout { .. } => vsdk_result::Timeout,
        E::Io { .. } => vsdk_result::Io,
        // The vSphere backend's calls: the client's own error says what went wrong.
        E::Remote { source, .. } => source
            .downcast_ref::<vsphere_client::Error>()
            .map_or(vsdk_result::Hypervisor, vsphere_code),
        _ => vsdk_result::Hypervisor,
    }
}

#[cfg(test)]
mod tests {
    use super::Error;
    use crate::vsdk_result;

    #[test]
    fn codes_follow_the_inner_error() {
        let e = Error::from(vsphere_client::Error::NotFound {
            kind: "datastore",
            path: "nope".to_owned(),
        });
        assert_eq!(e.code(), vsdk_result::NotFound);
        let e = Error::from(volume_core::Error::UnknownVolume {
            id: volume_core::VolumeId::new("v-1").unwrap(),
        });
        assert_eq!(e.code(), vsdk_result::UnknownVolume);
        let e = Error::from(pipeline_core::Error::RunNotFound("r".to_owned()));
        assert_eq!(e.code(), vsdk_result::UnknownRun);
        let e = Error::from(vmenv_core::Error::NotFound {
            name: "web".to_owned(),
        });
        assert_eq!(e.code(), vsdk_result::UnknownVm);
        // A vSphere backend call that failed keeps the client's code.
        let e = Error::from(vmenv_core::Error::Remote {
            op: "PowerOnVM_Task",
            source: Box::new(vsphere_client::Error::Timeout { what: "SOAP call" }),
        });
        assert_eq!(e.code(), vsdk_result::Timeout);
        assert_eq!(e.chain(), "PowerOnVM_Task failed: SOAP call timed out");
    }

    #[test]
    fn the_chain_lists_every_source_once() {
        let e = Error::Io {
            context: "cannot read /x".to_owned(),
            source: std::io::Error::other("boom"),
        };
        assert_eq!(e.chain(), "cannot read /x: boom");
        // A transparent wrapper does not repeat its inner message.
        let e = Error::from(pipeline_core::Error::RunNotFound("r1".to_owned()));
        assert_eq!(e.chain(), "no run r1");
    }
}
