//! The crate's error type.

/// Everything that can go wrong in `vmenv-core`.
///
/// The enum is `#[non_exhaustive]`: later releases add variants without breaking callers that
/// match on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The capability exists in the model but is not built in this release of the SDK.
    #[error("{feature} is not supported by this build of vmenv-core")]
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
        let e = Error::Unsupported { feature: "x" };
        assert_eq!(
            e.to_string(),
            "x is not supported by this build of vmenv-core"
        );
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }
}
