//! The admin endpoint, `/_sim/...`: fault injection and session control over plain HTTP, for
//! tools that run the simulator as a separate process. Every route is a `POST` with query
//! parameters and answers `200 ok` or `400` with the reason:
//!
//! - `/_sim/latency?method=M&ms=N` (method `*`: every method);
//! - `/_sim/error-rate?rate=R&fault=F` (R in 0..=1, F a vim25 fault type, e.g. `SystemError`);
//! - `/_sim/fail?method=M&fault=F&count=N` (the next N calls of M fail with F);
//! - `/_sim/clear` (no more injection);
//! - `/_sim/expire-sessions` (every session ends now);
//! - `/_sim/session-idle-timeout?seconds=N`.

use std::sync::PoisonError;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::server::Shared;

/// The admin routes.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/_sim/latency", post(latency))
        .route("/_sim/error-rate", post(error_rate))
        .route("/_sim/fail", post(fail))
        .route("/_sim/clear", post(clear))
        .route("/_sim/expire-sessions", post(expire))
        .route("/_sim/session-idle-timeout", post(idle_timeout))
        .with_state(state)
}

/// The query's parameters (names and values are plain words: no decoding needed).
fn params(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get<'a>(p: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| format!("missing query parameter {name}"))
}

fn number<T: std::str::FromStr>(p: &[(String, String)], name: &str) -> Result<T, String> {
    get(p, name)?
        .parse()
        .map_err(|_| format!("query parameter {name} is not a number"))
}

/// `200 ok: ...` or `400` with the reason.
fn respond(r: Result<String, String>) -> Response {
    match r {
        Ok(msg) => (StatusCode::OK, format!("ok: {msg}\n")).into_response(),
        Err(msg) => (StatusCode::BAD_REQUEST, msg + "\n").into_response(),
    }
}

async fn latency(State(state): State<Shared>, uri: Uri) -> Response {
    let p = params(&uri);
    let run = || -> Result<String, String> {
        let method = get(&p, "method")?;
        let ms: u64 = number(&p, "ms")?;
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inject
            .set_latency(method, Duration::from_millis(ms));
        Ok(format!("{method} +{ms} ms"))
    };
    respond(run())
}

async fn error_rate(State(state): State<Shared>, uri: Uri) -> Response {
    let p = params(&uri);
    let run = || -> Result<String, String> {
        let rate: f64 = number(&p, "rate")?;
        let fault = get(&p, "fault").unwrap_or("SystemError");
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inject
            .set_error_rate(rate, fault)
            .map_err(|e| e.to_string())?;
        Ok(format!("error rate {rate} ({fault})"))
    };
    respond(run())
}

async fn fail(State(state): State<Shared>, uri: Uri) -> Response {
    let p = params(&uri);
    let run = || -> Result<String, String> {
        let method = get(&p, "method")?;
        let fault = get(&p, "fault")?;
        let count: u32 = number(&p, "count")?;
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inject
            .fail_next(method, fault, count)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "the next {count} calls of {method} fail with {fault}"
        ))
    };
    respond(run())
}

async fn clear(State(state): State<Shared>) -> Response {
    state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .inject
        .clear();
    respond(Ok("no fault injection".to_owned()))
}

async fn expire(State(state): State<Shared>) -> Response {
    let n = state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expire_sessions();
    respond(Ok(format!("{n} sessions ended")))
}

async fn idle_timeout(State(state): State<Shared>, uri: Uri) -> Response {
    let p = params(&uri);
    let run = || -> Result<String, String> {
        let secs: u64 = number(&p, "seconds")?;
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .idle_timeout = Duration::from_secs(secs);
        Ok(format!("session idle timeout {secs} s"))
    };
    respond(run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_parse() {
        let uri: Uri = "/_sim/fail?method=Login&fault=InvalidLogin&count=2"
            .parse()
            .unwrap();
        let p = params(&uri);
        assert_eq!(get(&p, "method").unwrap(), "Login");
        assert_eq!(number::<u32>(&p, "count").unwrap(), 2);
        assert!(get(&p, "nope").is_err());
        assert!(number::<u32>(&p, "fault").is_err());
    }
}
