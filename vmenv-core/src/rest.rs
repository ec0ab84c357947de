//! What the REST clients share: the `{code,message}` error envelope and reply handling.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The error and status envelope both AppCatalyst and vmrest use: `{"code": 404, "message": ..}`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct CodeMessage {
    /// A status code (usually the HTTP status).
    pub code: i64,
    /// A human-readable message (for AppCatalyst also the value of successful calls).
    pub message: String,
}

/// Reads a reply: on success its body; otherwise an [`Error::Api`] carrying the envelope's
/// message (or the raw body when it is not an envelope).
pub(crate) async fn body_or_error(api: &'static str, resp: reqwest::Response) -> Result<String> {
    let status = resp.status();
    let body = resp.text().await.map_err(|e| transport(api, &e))?;
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_str::<CodeMessage>(&body)
        .map_or_else(|_| body.trim().to_owned(), |cm| cm.message);
    Err(Error::Api {
        api,
        status: status.as_u16(),
        message,
    })
}

/// Describes a transport failure without the URL (which may carry credentials).
pub(crate) fn transport(api: &'static str, e: &reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_decode() || e.is_body() {
        "could not read the reply"
    } else {
        "request failed"
    };
    Error::Transport {
        api,
        detail: kind.to_owned(),
    }
}

/// Parses JSON from a reply body into `T`, as an [`Error::Transport`] when it does not fit.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(api: &'static str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| Error::Transport {
        api,
        detail: format!("unexpected reply {body:?}: {e}"),
    })
}
