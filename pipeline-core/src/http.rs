//! Task kinds over HTTP: `REST`, `POLL` and `Jenkins`.
//!
//! - `REST` makes one request (`action`: get, post, put, delete, patch) and outputs Code
//!   Stream's `status, responseCode, responseHeaders, responseBody, responseJson`. A 4xx
//!   answer fails the task for good; a 5xx or 429 answer, or no answer, may be retried.
//! - `POLL` repeats a GET until the CEL `exitCriteria.success` holds (or `failure` does, or
//!   `pollCount` runs out); the criteria see `responseCode`, `responseBody` and `responseJson`.
//! - `Jenkins` triggers a job (`/job/NAME/build` or `/buildWithParameters`), follows the queue
//!   item to its build, waits for the result, keeps the console's tail, and on cancel stops the
//!   build (or cancels the queue item). It authenticates with a user and API token, the way
//!   Jenkins' REST API expects from scripts.
//!
//! Secret values in headers or tokens reach the server only: outputs hold responses, and error
//! messages carry no URL.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::model::ValueType;
use crate::task::{CancelLevel, FieldSpec, TaskContext, TaskFailure, TaskKind};

const fn field(name: &'static str, ty: ValueType, required: bool) -> FieldSpec {
    FieldSpec { name, ty, required }
}

/// The most response body kept in outputs.
const BODY_CAP: usize = 64 * 1024;

fn text<'a>(ctx: &'a TaskContext, k: &str) -> Result<&'a str, TaskFailure> {
    ctx.input
        .get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| TaskFailure::permanent(format!("{k} must be a string")))
}

fn headers(ctx: &TaskContext) -> Vec<(String, String)> {
    ctx.input
        .get("headers")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn transport(e: &reqwest::Error) -> TaskFailure {
    TaskFailure {
        message: format!("request failed: {}", strip_url(e)),
        outputs: json!({}),
        retryable: true,
    }
}

fn strip_url(e: &reqwest::Error) -> String {
    // reqwest puts the URL (which may carry credentials) in its message; drop it.
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "<url>");
    }
    msg
}

fn truncate(mut s: String) -> String {
    if s.len() > BODY_CAP {
        let mut cut = BODY_CAP;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

async fn response_outputs(resp: reqwest::Response) -> Result<Value, TaskFailure> {
    let code = resp.status().as_u16();
    let mut hdrs = Map::new();
    for (k, v) in resp.headers() {
        hdrs.insert(
            k.as_str().to_owned(),
            Value::String(v.to_str().unwrap_or_default().to_owned()),
        );
    }
    let body = resp.text().await.map_err(|e| transport(&e))?;
    let parsed = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null);
    Ok(json!({
        "status": "COMPLETED",
        "responseCode": code,
        "responseHeaders": hdrs,
        "responseBody": truncate(body),
        "responseJson": parsed,
    }))
}

async fn or_cancel<T>(ctx: &TaskContext, fut: impl Future<Output = T>) -> Result<T, TaskFailure> {
    let mut cancel = ctx.cancel.clone();
    tokio::select! {
        r = fut => Ok(r),
        () = cancel.reached(CancelLevel::Graceful) => Err(TaskFailure {
            message: "cancelled".into(),
            outputs: json!({}),
            retryable: false,
        }),
    }
}

/// The `REST` task kind.
#[derive(Clone, Debug)]
pub struct Rest {
    client: reqwest::Client,
}

impl Rest {
    /// A `REST` kind using `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

const REST_INPUTS: &[FieldSpec] = &[
    field("action", ValueType::String, true),
    field("url", ValueType::String, true),
    field("headers", ValueType::Object, false),
    field("payload", ValueType::Any, false),
];
const HTTP_OUTPUTS: &[FieldSpec] = &[
    field("status", ValueType::String, false),
    field("responseCode", ValueType::Number, false),
    field("responseHeaders", ValueType::Object, false),
    field("responseBody", ValueType::String, false),
    field("responseJson", ValueType::Any, false),
];

#[async_trait]
impl TaskKind for Rest {
    fn type_name(&self) -> &'static str {
        "REST"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        REST_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        HTTP_OUTPUTS
    }

    async fn run(&self, ctx: TaskContext) -> Result<Value, TaskFailure> {
        let method = match text(&ctx, "action")?.to_ascii_lowercase().as_str() {
            "get" => reqwest::Method::GET,
            "post" => reqwest::Method::POST,
            "put" => reqwest::Method::PUT,
            "delete" => reqwest::Method::DELETE,
            "patch" => reqwest::Method::PATCH,
            other => {
                return Err(TaskFailure::permanent(format!(
                    "action must be get, post, put, delete or patch, not `{other}`"
                )));
            }
        };
        let mut req = self
            .client
            .request(method, text(&ctx, "url")?)
            .header("Idempotency-Key", &ctx.idempotency_key);
        for (k, v) in headers(&ctx) {
            req = req.header(k, v);
        }
        match ctx.input.get("payload") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => req = req.body(s.clone()),
            Some(v) => req = req.json(v),
        }
        let resp = or_cancel(&ctx, req.send())
            .await?
            .map_err(|e| transport(&e))?;
        let code = resp.status().as_u16();
        let outputs = response_outputs(resp).await?;
        if code >= 400 {
            return Err(TaskFailure {
                message: format!("the server answered {code}"),
                outputs,
                retryable: code >= 500 || code == 429,
            });
        }
        Ok(outputs)
    }
}

/// The `POLL` task kind.
#[derive(Clone, Debug)]
pub struct Poll {
    client: reqwest::Client,
}

impl Poll {
    /// A `POLL` kind using `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

const POLL_INPUTS: &[FieldSpec] = &[
    field("url", ValueType::String, true),
    field("headers", ValueType::Object, false),
    field("pollCount", ValueType::Number, false),
    field("pollIntervalSeconds", ValueType::Number, false),
    field("exitCriteria", ValueType::Object, true),
];
const POLL_OUTPUTS: &[FieldSpec] = &[
    field("status", ValueType::String, false),
    field("iterationCount", ValueType::Number, false),
    field("pollCount", ValueType::Number, false),
    field("responseCode", ValueType::Number, false),
    field("responseBody", ValueType::String, false),
    field("responseJson", ValueType::Any, false),
];

fn criterion(ctx: &TaskContext, which: &str) -> Result<Option<cel::Program>, TaskFailure> {
    let Some(src) = ctx
        .input
        .get("exitCriteria")
        .and_then(|c| c.get(which))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    cel::Program::compile(src).map(Some).map_err(|e| {
        TaskFailure::permanent(format!(
            "exitCriteria.{which} is not valid CEL: {}",
            e.errors.first().map(|e| e.msg.as_str()).unwrap_or_default()
        ))
    })
}

fn holds(program: &cel::Program, outputs: &Value) -> bool {
    let mut c = cel::Context::default();
    for k in ["responseCode", "responseBody", "responseJson"] {
        if let Ok(v) = cel::to_value(&outputs[k]) {
            c.add_variable_from_value(k, v);
        }
    }
    matches!(program.execute(&c), Ok(cel::Value::Bool(true)))
}

#[async_trait]
impl TaskKind for Poll {
    fn type_name(&self) -> &'static str {
        "POLL"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        POLL_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        POLL_OUTPUTS
    }

    async fn run(&self, ctx: TaskContext) -> Result<Value, TaskFailure> {
        let url = text(&ctx, "url")?.to_owned();
        let success = criterion(&ctx, "success")?
            .ok_or_else(|| TaskFailure::permanent("exitCriteria.success is required"))?;
        let failure = criterion(&ctx, "failure")?;
        let count = ctx
            .input
            .get("pollCount")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .max(1);
        let interval = ctx
            .input
            .get("pollIntervalSeconds")
            .and_then(Value::as_f64)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(Duration::from_secs(60));
        let mut last = json!({});
        for i in 1..=count {
            let mut req = self.client.get(&url);
            for (k, v) in headers(&ctx) {
                req = req.header(k, v);
            }
            match or_cancel(&ctx, req.send()).await? {
                Ok(resp) => {
                    let mut out = response_outputs(resp).await?;
                    out["iterationCount"] = json!(i);
                    out["pollCount"] = json!(count);
                    if holds(&success, &out) {
                        return Ok(out);
                    }
                    if failure.as_ref().is_some_and(|f| holds(f, &out)) {
                        out["status"] = json!("FAILED");
                        return Err(TaskFailure {
                            message: format!("exit criteria failure met at iteration {i}"),
                            outputs: out,
                            retryable: false,
                        });
                    }
                    last = out;
                }
                Err(e) => tracing::debug!(error = %strip_url(&e), "poll request failed"),
            }
            if i < count {
                or_cancel(&ctx, tokio::time::sleep(interval)).await?;
            }
        }
        Err(TaskFailure {
            message: format!("exit criteria not met after {count} polls"),
            outputs: last,
            retryable: true,
        })
    }
}

/// The `Jenkins` task kind.
#[derive(Clone, Debug)]
pub struct Jenkins {
    client: reqwest::Client,
}

impl Jenkins {
    /// A `Jenkins` kind using `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

const JENKINS_INPUTS: &[FieldSpec] = &[
    field("server", ValueType::String, true),
    field("job", ValueType::String, true),
    field("jobFolder", ValueType::String, false),
    field("parameters", ValueType::Object, false),
    field("user", ValueType::String, false),
    field("token", ValueType::String, false),
    field("pollIntervalSeconds", ValueType::Number, false),
];
const JENKINS_OUTPUTS: &[FieldSpec] = &[
    field("result", ValueType::String, false),
    field("buildNumber", ValueType::Number, false),
    field("buildUrl", ValueType::String, false),
    field("queueUrl", ValueType::String, false),
    field("consoleTail", ValueType::String, false),
];

/// The console kept in outputs (the tail).
const CONSOLE_TAIL: usize = 4096;

fn job_path(folder: Option<&str>, job: &str) -> String {
    let mut path = String::new();
    for part in folder
        .unwrap_or_default()
        .split('/')
        .filter(|p| !p.is_empty())
        .chain(job.split('/').filter(|p| !p.is_empty()))
    {
        path.push_str("/job/");
        path.push_str(part);
    }
    path
}

impl Jenkins {
    fn req(
        &self,
        ctx: &TaskContext,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match ctx.input.get("user").and_then(Value::as_str) {
            Some(user) => r.basic_auth(user, ctx.input.get("token").and_then(Value::as_str)),
            None => r,
        }
    }

    async fn json(&self, ctx: &TaskContext, url: &str) -> Result<Value, TaskFailure> {
        let resp = or_cancel(ctx, self.req(ctx, reqwest::Method::GET, url).send())
            .await?
            .map_err(|e| transport(&e))?;
        let code = resp.status().as_u16();
        if code >= 400 {
            return Err(TaskFailure {
                message: format!("Jenkins answered {code} to a status request"),
                outputs: json!({}),
                retryable: code >= 500,
            });
        }
        resp.json().await.map_err(|e| transport(&e))
    }

    async fn stop(
        &self,
        ctx: &TaskContext,
        server: &str,
        queue_id: Option<u64>,
        build_url: Option<&str>,
    ) {
        let url = match (build_url, queue_id) {
            (Some(b), _) => format!("{}/stop", b.trim_end_matches('/')),
            (None, Some(id)) => format!("{server}/queue/cancelItem?id={id}"),
            (None, None) => return,
        };
        let _ = self.req(ctx, reqwest::Method::POST, &url).send().await;
    }
}

#[async_trait]
impl TaskKind for Jenkins {
    fn type_name(&self) -> &'static str {
        "Jenkins"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        JENKINS_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        JENKINS_OUTPUTS
    }

    async fn run(&self, ctx: TaskContext) -> Result<Value, TaskFailure> {
        let server = text(&ctx, "server")?.trim_end_matches('/').to_owned();
        let job = job_path(
            ctx.input.get("jobFolder").and_then(Value::as_str),
            text(&ctx, "job")?,
        );
        let interval = ctx
            .input
            .get("pollIntervalSeconds")
            .and_then(Value::as_f64)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(Duration::from_secs(5));
        let params: Vec<(String, String)> = ctx
            .input
            .get("parameters")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // 1. Trigger.
        let trigger = if params.is_empty() {
            format!("{server}{job}/build")
        } else {
            format!("{server}{job}/buildWithParameters")
        };
        let resp = or_cancel(
            &ctx,
            self.req(&ctx, reqwest::Method::POST, &trigger)
                .form(&params)
                .send(),
        )
        .await?
        .map_err(|e| transport(&e))?;
        let code = resp.status().as_u16();
        if code >= 400 {
            return Err(TaskFailure {
                message: format!("Jenkins refused to trigger the job: {code}"),
                outputs: json!({}),
                retryable: code >= 500,
            });
        }
        let queue_url = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| TaskFailure::permanent("Jenkins gave no queue item Location"))?
            .trim_end_matches('/')
            .to_owned();
        let queue_id = queue_url
            .rsplit('/')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        tracing::info!(queue = %queue_url, "Jenkins job queued");
        // 2. Follow the queue item to its build.
        let mut cancel = ctx.cancel.clone();
        let (number, build_url) = loop {
            if ctx.cancel.level() > CancelLevel::None {
                self.stop(&ctx, &server, queue_id, None).await;
                return Err(TaskFailure::permanent("cancelled"));
            }
            let item = self.json(&ctx, &format!("{queue_url}/api/json")).await;
            let item = match item {
                Ok(item) => item,
                Err(f) if f.message == "cancelled" => {
                    self.stop(&ctx, &server, queue_id, None).await;
                    return Err(f);
                }
                Err(f) => return Err(f),
            };
            if item.get("cancelled").and_then(Value::as_bool) == Some(true) {
                return Err(TaskFailure::permanent(
                    "the queue item was cancelled in Jenkins",
                ));
            }
            if let Some(exe) = item.get("executable").filter(|e| !e.is_null()) {
                let n = exe.get("number").and_then(Value::as_u64).unwrap_or(0);
                let u = exe
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_owned();
                break (n, u);
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = cancel.reached(CancelLevel::Graceful) => {}
            }
        };
        tracing::info!(build = number, "Jenkins build started");
        // 3. Wait for the result.
        let result = loop {
            let build = match self.json(&ctx, &format!("{build_url}/api/json")).await {
                Ok(b) => b,
                Err(f) if f.message == "cancelled" => {
                    self.stop(&ctx, &server, queue_id, Some(&build_url)).await;
                    return Err(f);
                }
                Err(f) => return Err(f),
            };
            let building = build
                .get("building")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if let Some(r) = build
                .get("result")
                .and_then(Value::as_str)
                .filter(|_| !building)
            {
                break r.to_owned();
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = cancel.reached(CancelLevel::Graceful) => {
                    self.stop(&ctx, &server, queue_id, Some(&build_url)).await;
                    return Err(TaskFailure::permanent("cancelled"));
                }
            }
        };
        // 4. The console's tail.
        let console = match self
            .req(
                &ctx,
                reqwest::Method::GET,
                &format!("{build_url}/consoleText"),
            )
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let start = console.len().saturating_sub(CONSOLE_TAIL);
        let start = (start..console.len())
            .find(|&i| console.is_char_boundary(i))
            .unwrap_or(console.len());
        let outputs = json!({
            "result": result,
            "buildNumber": number,
            "buildUrl": build_url,
            "queueUrl": queue_url,
            "consoleTail": &console[start..],
        });
        if result == "SUCCESS" {
            Ok(outputs)
        } else {
            Err(TaskFailure {
                message: format!("Jenkins build #{number} ended {result}"),
                outputs,
                retryable: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_paths_follow_folders() {
        assert_eq!(job_path(None, "app"), "/job/app");
        assert_eq!(job_path(Some("team/ci"), "app"), "/job/team/job/ci/job/app");
        assert_eq!(job_path(Some(""), "a/b"), "/job/a/job/b");
    }

    #[test]
    fn bodies_are_capped_on_char_boundaries() {
        let s = "é".repeat(BODY_CAP);
        let t = truncate(s);
        assert!(t.len() <= BODY_CAP);
        assert!(t.chars().all(|c| c == 'é'));
    }
}
