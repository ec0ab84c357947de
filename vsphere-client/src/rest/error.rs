//! The error shapes of the Automation REST API, mapped to [`RestErrorKind`].
//!
//! - `/rest`: `{"type": "com.vmware.vapi.std.errors.not_found", "value": {"messages": [...]}}`;
//! - `/api`: `{"error_type": "NOT_FOUND", "messages": [...]}`;
//! - anything else (govmomi's simulator answers a plain-text `404 page not found`): the kind
//!   follows the HTTP status.

use std::fmt;

use serde::Deserialize;

use super::types::LocalizableMessage;

/// What kind of error the Automation REST API reported (the `com.vmware.vapi.std.errors`
/// family, the same in both API styles).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RestErrorKind {
    /// The object does not exist (`not_found`).
    NotFound,
    /// An object with that name or id exists already (`already_exists`).
    AlreadyExists,
    /// A parameter was wrong (`invalid_argument`).
    InvalidArgument,
    /// No valid session: it expired or was never made (`unauthenticated`).
    Unauthenticated,
    /// The session's user may not do this (`unauthorized`).
    Unauthorized,
    /// The object is in use (`resource_in_use`).
    ResourceInUse,
    /// The object's state does not allow it (`not_allowed_in_current_state`).
    NotAllowedInCurrentState,
    /// The server does not support the operation (`unsupported`, or HTTP 501).
    Unsupported,
    /// The service is down or busy (`service_unavailable`, HTTP 503).
    ServiceUnavailable,
    /// The server failed internally (`error`, `internal_server_error`, HTTP 500).
    Internal,
    /// Another kind, as the server spelled it (`timed_out`, `concurrent_change`, ...).
    Other(String),
}

impl RestErrorKind {
    /// The kind of an error name in either style (`com.vmware.vapi.std.errors.not_found`,
    /// `NOT_FOUND`).
    ///
    /// ```
    /// use vsphere_client::rest::RestErrorKind;
    /// assert_eq!(RestErrorKind::from_name("NOT_FOUND"), RestErrorKind::NotFound);
    /// assert_eq!(
    ///     RestErrorKind::from_name("com.vmware.vapi.std.errors.already_exists"),
    ///     RestErrorKind::AlreadyExists
    /// );
    /// ```
    pub fn from_name(name: &str) -> Self {
        let short = name
            .strip_prefix("com.vmware.vapi.std.errors.")
            .unwrap_or(name)
            .to_ascii_lowercase();
        match short.as_str() {
            "not_found" => Self::NotFound,
            "already_exists" => Self::AlreadyExists,
            "invalid_argument" => Self::InvalidArgument,
            "unauthenticated" => Self::Unauthenticated,
            "unauthorized" => Self::Unauthorized,
            "resource_in_use" => Self::ResourceInUse,
            "not_allowed_in_current_state" => Self::NotAllowedInCurrentState,
            "unsupported" => Self::Unsupported,
            "service_unavailable" => Self::ServiceUnavailable,
            "error" | "internal_server_error" => Self::Internal,
            _ => Self::Other(short),
        }
    }

    /// The kind an HTTP status implies when the body names none.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => Self::InvalidArgument,
            401 => Self::Unauthenticated,
            403 => Self::Unauthorized,
            404 => Self::NotFound,
            409 => Self::AlreadyExists,
            501 => Self::Unsupported,
            503 => Self::ServiceUnavailable,
            500 => Self::Internal,
            s => Self::Other(format!("http_{s}")),
        }
    }

    /// The `/rest` name (`com.vmware.vapi.std.errors.not_found`).
    pub fn rest_name(&self) -> String {
        format!("com.vmware.vapi.std.errors.{self}")
    }

    /// The `/api` name (`NOT_FOUND`).
    pub fn api_name(&self) -> String {
        self.to_string().to_ascii_uppercase()
    }

    /// The HTTP status a server answers this kind with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::AlreadyExists
            | Self::InvalidArgument
            | Self::ResourceInUse
            | Self::NotAllowedInCurrentState
            | Self::Other(_) => 400,
            Self::Unauthenticated => 401,
            Self::Unauthorized => 403,
            Self::Unsupported => 501,
            Self::ServiceUnavailable => 503,
            Self::Internal => 500,
        }
    }
}

impl fmt::Display for RestErrorKind {
    /// The short snake-case name (`not_found`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::InvalidArgument => "invalid_argument",
            Self::Unauthenticated => "unauthenticated",
            Self::Unauthorized => "unauthorized",
            Self::ResourceInUse => "resource_in_use",
            Self::NotAllowedInCurrentState => "not_allowed_in_current_state",
            Self::Unsupported => "unsupported",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Internal => "error",
            Self::Other(s) => s,
        })
    }
}

#[derive(Deserialize)]
struct Messages {
    #[serde(default)]
    messages: Vec<LocalizableMessage>,
}

/// The two documented shapes, either style.
#[derive(Deserialize)]
struct Shape {
    /// `/api`.
    error_type: Option<String>,
    /// `/rest`.
    #[serde(rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    messages: Vec<LocalizableMessage>,
    value: Option<Messages>,
}

/// The kind and message of an error response.
pub(crate) fn parse_error(status: u16, body: &str) -> (RestErrorKind, String) {
    let text = |msgs: &[LocalizableMessage]| {
        msgs.iter()
            .map(|m| m.default_message.as_str())
            .filter(|m| !m.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    };
    if let Ok(shape) = serde_json::from_str::<Shape>(body) {
        if let Some(name) = shape.error_type {
            return (RestErrorKind::from_name(&name), text(&shape.messages));
        }
        if let Some(name) = shape.type_ {
            let msgs = shape.value.map(|v| v.messages).unwrap_or_default();
            return (RestErrorKind::from_name(&name), text(&msgs));
        }
    }
    let plain: String = body.trim().chars().take(200).collect();
    (RestErrorKind::from_status(status), plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_and_plain_text_parse() {
        let (k, m) = parse_error(
            404,
            r#"{"error_type":"NOT_FOUND","messages":[{"id":"x","default_message":"no such tag","args":[]}]}"#,
        );
        assert_eq!((k, m.as_str()), (RestErrorKind::NotFound, "no such tag"));
        let (k, m) = parse_error(
            400,
            r#"{"type":"com.vmware.vapi.std.errors.already_exists","value":{"messages":[{"id":"y","default_message":"exists"}]}}"#,
        );
        assert_eq!((k, m.as_str()), (RestErrorKind::AlreadyExists, "exists"));
        let (k, m) = parse_error(404, "404 page not found\n");
        assert_eq!(
            (k, m.as_str()),
            (RestErrorKind::NotFound, "404 page not found")
        );
        let (k, _) = parse_error(400, r#"{"type":"com.vmware.vapi.std.errors.timed_out"}"#);
        assert_eq!(k, RestErrorKind::Other("timed_out".into()));
    }

    #[test]
    fn names_round_trip() {
        for k in [
            RestErrorKind::NotFound,
            RestErrorKind::ResourceInUse,
            RestErrorKind::Internal,
        ] {
            assert_eq!(RestErrorKind::from_name(&k.rest_name()), k);
            assert_eq!(RestErrorKind::from_name(&k.api_name()), k);
        }
    }
}
