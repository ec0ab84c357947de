//! The crate's error type.

use std::net::SocketAddr;

/// Everything that can go wrong in `vsphere-sim`.
///
/// The enum is `#[non_exhaustive]`: later releases add variants without breaking callers that
/// match on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The capability exists in the model but is not built in this release of the SDK.
    #[error("{feature} is not supported by this build of vsphere-sim")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS property (thumbprint, certificate) was asked of a simulator serving plain HTTP.
    #[error("the simulator serves plain HTTP: start it with tls(true) (--tls) for a certificate")]
    NoTls,
    /// The TLS certificate or configuration could not be made.
    #[error("cannot set up TLS: {problem}")]
    Tls {
        /// What failed.
        problem: String,
    },
    /// The saved state (`--state-dir`) could not be read or written.
    #[error("simulator state {}: {problem}", path.display())]
    State {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// A command-line argument was missing or malformed.
    #[error("invalid argument {arg}: {problem}")]
    InvalidArgument {
        /// The flag.
        arg: String,
        /// What was wrong with it.
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn unsupported_names_the_feature() {
        let e = Error::Unsupported { feature: "x" };
        assert_eq!(
            e.to_string(),
            "x is not supported by this build of vsphere-sim"
        );
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }
}
