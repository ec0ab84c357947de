//! The crate's error type.

/// Everything that can go wrong in `vsphere-client`.
///
/// The enum is `#[non_exhaustive]`: later releases add variants (transport, SOAP faults, decode
/// errors) without breaking callers that match on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The feature exists in the API but is not built in this release of the SDK.
    #[error("{feature} is not supported by this build of vsphere-client")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
    },
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
