//! The crate's error type.

use crate::load::Diagnostic;

/// Why an approval decision was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The run's initiator may not approve their own run.
    #[error("the run's initiator may not approve it")]
    SelfApproval,
    /// The actor is neither a listed approver nor in a listed group.
    #[error("not an approver of this request")]
    NotAnApprover,
    /// The authorization hook said no.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The request has expired.
    #[error("the request has expired")]
    Expired,
    /// The request is already approved or rejected.
    #[error("the request is already decided")]
    AlreadyDecided,
    /// The actor has already decided on this request.
    #[error("this approver has already decided")]
    Duplicate,
    /// No open request has this id in the run.
    #[error("no open approval request with this id")]
    UnknownRequest,
}

/// Everything that can go wrong in `pipeline-core`.
///
/// The enum is `#[non_exhaustive]`: later releases add variants without breaking callers that
/// match on it. No variant carries a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The capability exists in the model but is not built in this release of the SDK.
    #[error("{feature} is not supported by this build of pipeline-core")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
    },
    /// The text is not YAML of the expected shape.
    #[error("invalid pipeline YAML at line {line}, column {column}: {message}")]
    Yaml {
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// The parser's message.
        message: String,
    },
    /// The pipeline is well-formed YAML but invalid; every problem found is listed.
    #[error("invalid pipeline: {}", diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The problems, in line order.
        diagnostics: Vec<Diagnostic>,
    },
    /// The inputs given to a run do not fit the pipeline.
    #[error("invalid run input: {0}")]
    Input(String),
    /// A file operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A versioned write lost a race: the journal moved on since it was read.
    #[error("journal of run {run} is at version {actual}, not the expected {expected}")]
    Conflict {
        /// The run.
        run: String,
        /// The version the writer expected.
        expected: u64,
        /// The version found.
        actual: u64,
    },
    /// The journal cannot be read.
    #[error("journal of run {run} is corrupt: {message}")]
    Corrupt {
        /// The run.
        run: String,
        /// What is wrong.
        message: String,
    },
    /// No run has this id.
    #[error("no run {0}")]
    RunNotFound(String),
    /// The run is not in a state that allows the operation.
    #[error("run {run}: {message}")]
    InvalidState {
        /// The run.
        run: String,
        /// Why the operation is refused.
        message: String,
    },
    /// An approval decision was refused.
    #[error("approval {request} of run {run} refused: {reason}")]
    ApprovalRefused {
        /// The run.
        run: String,
        /// The approval request.
        request: String,
        /// Why.
        reason: Refusal,
    },
    /// An artifact operation failed.
    #[error("artifact {artifact}: {message}")]
    Artifact {
        /// `repo/name@version` or a digest.
        artifact: String,
        /// What is wrong.
        message: String,
    },
    /// A Git operation failed (libgit2's message; credentials in the URL are never shown).
    #[error("git: {context}: {message}")]
    Git {
        /// What was being done, with the repository's URL (user information removed).
        context: String,
        /// libgit2's message.
        message: String,
    },
    /// A Git reference names no branch, tag or commit of the repository.
    #[error("git: {url} has no branch, tag or commit named {reference:?}")]
    GitRef {
        /// The reference asked for.
        reference: String,
        /// The repository's URL (user information removed).
        url: String,
    },
    /// A PostgreSQL journal operation failed.
    #[error("postgres: {context}: {message}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The server's or the driver's message (never the connection string).
        message: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn unsupported_names_the_feature() {
        let e = Error::Unsupported { feature: "x" };
        assert_eq!(
            e.to_string(),
            "x is not supported by this build of pipeline-core"
        );
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }
}
