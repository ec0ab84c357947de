//! Task kinds: a trait other tools implement, a registry, and the built-in kinds.
//!
//! Built in and run by executors here: `Shell` (a command with working directory, environment,
//! captured output, exit code and exported values) and `Git` (clone or fetch a real repository
//! with libgit2 and check out a branch, tag or commit); in [`crate::http`]: `REST`, `POLL`, `Jenkins`. Built in and run by the engine itself:
//! `Condition` (stops the pipeline when false), `UserOperation` (a durable approval) and
//! `Pipeline` (a nested pipeline, run as a durable child run).
//! Known from Code Stream but not built in this release, so that loading a pipeline that uses
//! them fails with a clear "not supported" error: `SSH`, `Kubernetes`,
//! `CI`, `Custom`, `PowerShell`, `Bamboo`, `TFS`, `vRO`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::model::ValueType;

/// One input or output field of a task kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The field's name.
    pub name: &'static str,
    /// Its type.
    pub ty: ValueType,
    /// Whether an input must be given (always false for outputs).
    pub required: bool,
}

const fn field(name: &'static str, ty: ValueType, required: bool) -> FieldSpec {
    FieldSpec { name, ty, required }
}

/// How hard a cancel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CancelLevel {
    /// Not cancelled.
    None,
    /// Stop soon, cleaning up (e.g. SIGTERM).
    Graceful,
    /// Stop now (e.g. SIGKILL).
    Hard,
}

/// A task's view of cancellation; cheap to clone.
#[derive(Clone, Debug)]
pub struct CancelSignal {
    rx: watch::Receiver<CancelLevel>,
}

/// The sending side of a [`CancelSignal`].
#[derive(Debug)]
pub struct CancelHandle {
    tx: watch::Sender<CancelLevel>,
}

impl CancelHandle {
    /// A new handle and its signal.
    pub fn new() -> (Self, CancelSignal) {
        let (tx, rx) = watch::channel(CancelLevel::None);
        (Self { tx }, CancelSignal { rx })
    }

    /// Raises the cancel level (never lowers it).
    pub fn cancel(&self, level: CancelLevel) {
        self.tx.send_if_modified(|l| {
            if level > *l {
                *l = level;
                true
            } else {
                false
            }
        });
    }

    /// Another signal watching this handle.
    pub fn signal(&self) -> CancelSignal {
        CancelSignal {
            rx: self.tx.subscribe(),
        }
    }
}

impl CancelSignal {
    /// The current level.
    pub fn level(&self) -> CancelLevel {
        *self.rx.borrow()
    }

    /// Waits until the level is at least `level`.
    pub async fn reached(&mut self, level: CancelLevel) {
        // An error means the handle is gone: nobody can cancel any more.
        if self.rx.wait_for(|l| *l >= level).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Everything a task attempt gets. Its `Debug` output shows input keys, never values (they
/// may hold secrets).
#[derive(Clone)]
pub struct TaskContext {
    /// The run.
    pub run_id: String,
    /// The stage's name.
    pub stage: String,
    /// The task's name.
    pub task: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// A key unique to this attempt, stable across restarts, to make external calls idempotent.
    pub idempotency_key: String,
    /// The input with bindings resolved (secret values included: do not log it).
    pub input: Map<String, Value>,
    /// Cancellation (a timeout arrives as a hard cancel).
    pub cancel: CancelSignal,
    /// The run's working directory; relative paths in inputs are taken from here.
    pub work_dir: PathBuf,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("run_id", &self.run_id)
            .field("stage", &self.stage)
            .field("task", &self.task)
            .field("attempt", &self.attempt)
            .field("idempotency_key", &self.idempotency_key)
            .field("input_keys", &self.input.keys().collect::<Vec<_>>())
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

/// A failed attempt: why, and what outputs it produced.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskFailure {
    /// What went wrong.
    pub message: String,
    /// Outputs produced anyway (e.g. exit code and stderr).
    pub outputs: Value,
    /// Whether another attempt may succeed (false for invalid input).
    pub retryable: bool,
}

impl TaskFailure {
    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            outputs: Value::Object(Map::new()),
            retryable: false,
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A kind of task. Implement it to add a tool; register it in a [`TaskRegistry`].
#[async_trait]
pub trait TaskKind: Send + Sync {
    /// The `type:` name in YAML.
    fn type_name(&self) -> &'static str;
    /// The input fields it takes.
    fn inputs(&self) -> &'static [FieldSpec];
    /// The output fields it produces.
    fn outputs(&self) -> &'static [FieldSpec];
    /// Runs one attempt; returns the outputs (a JSON object).
    async fn run(&self, ctx: TaskContext) -> Result<Value, TaskFailure>;
}

type Spec = (&'static [FieldSpec], &'static [FieldSpec]);

/// Inputs and outputs of the `Condition` kind, which the engine runs.
pub const CONDITION_INPUTS: &[FieldSpec] = &[field("condition", ValueType::String, true)];
const CONDITION_OUTPUTS: &[FieldSpec] = &[field("result", ValueType::Bool, false)];
const USER_OPERATION_INPUTS: &[FieldSpec] = &[
    field("approvers", ValueType::Array, false),
    field("groups", ValueType::Array, false),
    field("quorum", ValueType::Number, false),
    field("summary", ValueType::String, false),
    field("description", ValueType::String, false),
    field("expiresAfterSeconds", ValueType::Number, false),
    field("expirationInDays", ValueType::Number, false),
    field("allowSelfApproval", ValueType::Bool, false),
    field("onExpiry", ValueType::String, false),
];
const USER_OPERATION_OUTPUTS: &[FieldSpec] = &[
    field("status", ValueType::String, false),
    field("respondedBy", ValueType::Array, false),
    field("comments", ValueType::Array, false),
];

const PIPELINE_INPUTS: &[FieldSpec] = &[
    field("pipeline", ValueType::String, true),
    field("inputProperties", ValueType::Object, false),
];
const PIPELINE_OUTPUTS: &[FieldSpec] = &[
    field("runId", ValueType::String, false),
    field("status", ValueType::String, false),
    field("tasks", ValueType::Object, false),
];

const UNSUPPORTED: &[&str] = &[
    "REST",
    "POLL",
    "Jenkins",
    "SSH",
    "Kubernetes",
    "CI",
    "Custom",
    "PowerShell",
    "Bamboo",
    "TFS",
    "vRO",
];

/// The task kinds a pipeline may use.
#[derive(Clone)]
pub struct TaskRegistry {
    kinds: BTreeMap<String, Arc<dyn TaskKind>>,
    engine: BTreeMap<&'static str, Spec>,
    unsupported: BTreeSet<&'static str>,
}

impl fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRegistry")
            .field("kinds", &self.names())
            .finish()
    }
}

impl TaskRegistry {
    /// The built-in kinds: `Shell`, `Git`, `REST`, `POLL`, `Jenkins`, `Condition`,
    /// `UserOperation`.
    ///
    /// ```
    /// let r = pipeline_core::task::TaskRegistry::builtin();
    /// assert!(r.spec("Shell").is_some());
    /// assert!(r.spec("Jenkins").is_some());
    /// assert!(r.is_unsupported("SSH"));
    /// ```
    pub fn builtin() -> Self {
        let mut r = Self {
            kinds: BTreeMap::new(),
            engine: BTreeMap::new(),
            unsupported: UNSUPPORTED.iter().copied().collect(),
        };
        r.engine
            .insert("Condition", (CONDITION_INPUTS, CONDITION_OUTPUTS));
        r.engine
            .insert("Pipeline", (PIPELINE_INPUTS, PIPELINE_OUTPUTS));
        r.engine.insert(
            "UserOperation",
            (USER_OPERATION_INPUTS, USER_OPERATION_OUTPUTS),
        );
        r.register(Arc::new(Shell));
        r.register(Arc::new(Git));
        if let Ok(client) = reqwest::Client::builder()
            .user_agent(concat!("pipeline-core/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            r.register(Arc::new(crate::http::Rest::new(client.clone())));
            r.register(Arc::new(crate::http::Poll::new(client.clone())));
            r.register(Arc::new(crate::http::Jenkins::new(client)));
        }
        r
    }

    /// Adds (or replaces) a kind.
    pub fn register(&mut self, kind: Arc<dyn TaskKind>) {
        self.unsupported.remove(kind.type_name());
        self.kinds.insert(kind.type_name().to_owned(), kind);
    }

    /// The inputs and outputs of a kind.
    pub fn spec(&self, name: &str) -> Option<(&'static [FieldSpec], &'static [FieldSpec])> {
        if let Some(k) = self.kinds.get(name) {
            return Some((k.inputs(), k.outputs()));
        }
        self.engine.get(name).copied()
    }

    /// The executor of a kind (none for kinds the engine runs itself).
    pub fn get(&self, name: &str) -> Option<Arc<dyn TaskKind>> {
        self.kinds.get(name).cloned()
    }

    /// Whether the kind is known but not built in this release.
    pub fn is_unsupported(&self, name: &str) -> bool {
        self.unsupported.contains(name)
    }

    /// The names of all usable kinds.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .kinds
            .keys()
            .cloned()
            .chain(self.engine.keys().map(|k| (*k).to_owned()))
            .collect();
        v.sort();
        v
    }
}

/// Output kept from stdout and stderr (the tail).
const OUTPUT_CAP: usize = 64 * 1024;
/// Time between a graceful stop (SIGTERM) and a hard one (SIGKILL).
const GRACE: Duration = Duration::from_secs(5);

/// The `Shell` kind: runs `script` with `sh -c`.
///
/// The script sees `PIPELINE_RUN_ID`, `PIPELINE_IDEMPOTENCY_KEY`, `PIPELINE_ATTEMPT` and
/// `PIPELINE_EXPORTS`, a file where it may write `KEY=VALUE` lines that become the `exports`
/// output. A non-zero exit status fails the attempt. Cancel sends SIGTERM to the script's
/// process group, then SIGKILL after a grace period.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shell;

const SHELL_INPUTS: &[FieldSpec] = &[
    field("script", ValueType::String, true),
    field("workingDirectory", ValueType::String, false),
    field("env", ValueType::Object, false),
];
const SHELL_OUTPUTS: &[FieldSpec] = &[
    field("exitCode", ValueType::Number, false),
    field("stdout", ValueType::String, false),
    field("stderr", ValueType::String, false),
    field("exports", ValueType::Object, false),
];

fn resolve_dir(base: &Path, dir: Option<&str>) -> PathBuf {
    match dir {
        Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
        Some(d) => base.join(d),
        None => base.to_path_buf(),
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_CAP);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

async fn signal_group(pid: u32, signal: &str) {
    // `kill` on the process group (negative pid): the script and everything it started.
    let _ = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

#[async_trait]
impl TaskKind for Shell {
    fn type_name(&self) -> &'static str {
        "Shell"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        SHELL_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        SHELL_OUTPUTS
    }

    async fn run(&self, mut ctx: TaskContext) -> Result<Value, TaskFailure> {
        let script = ctx
            .input
            .get("script")
            .and_then(Value::as_str)
            .ok_or_else(|| TaskFailure::permanent("script must be a string"))?
            .to_owned();
        let dir = resolve_dir(
            &ctx.work_dir,
            ctx.input.get("workingDirectory").and_then(Value::as_str),
        );
        std::fs::create_dir_all(&dir)
            .map_err(|e| TaskFailure::permanent(format!("cannot create {}: {e}", dir.display())))?;
        let exports_dir = ctx.work_dir.join(".pipeline");
        std::fs::create_dir_all(&exports_dir).map_err(|e| {
            TaskFailure::permanent(format!("cannot create {}: {e}", exports_dir.display()))
        })?;
        let safe_key: String = ctx
            .idempotency_key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let exports = exports_dir.join(format!("exports-{safe_key}"));
        let _ = std::fs::remove_file(&exports);
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&script)
            .current_dir(&dir)
            .env("PIPELINE_RUN_ID", &ctx.run_id)
            .env("PIPELINE_IDEMPOTENCY_KEY", &ctx.idempotency_key)
            .env("PIPELINE_ATTEMPT", ctx.attempt.to_string())
            .env("PIPELINE_EXPORTS", &exports)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(Value::Object(env)) = ctx.input.get("env") {
            for (k, v) in env {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TaskFailure::permanent(format!("cannot start sh: {e}")))?;
        let pid = child.id().unwrap_or(0);
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let read_out = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut buf).await;
            }
            buf
        });
        let read_err = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut buf).await;
            }
            buf
        });
        let mut graceful = ctx.cancel.clone();
        let status = tokio::select! {
            s = child.wait() => s,
            () = graceful.reached(CancelLevel::Graceful) => {
                let hard = ctx.cancel.level() >= CancelLevel::Hard;
                if !hard {
                    signal_group(pid, "TERM").await;
                }
                let waited = tokio::select! {
                    s = child.wait() => Some(s),
                    () = tokio::time::sleep(GRACE) => None,
                    () = ctx.cancel.reached(CancelLevel::Hard) => None,
                };
                if waited.is_none() {
                    signal_group(pid, "KILL").await;
                    let _ = child.kill().await;
                }
                read_out.abort();
                read_err.abort();
                return Err(TaskFailure {
                    message: "cancelled".into(),
                    outputs: json!({}),
                    retryable: false,
                });
            }
        };
        let status =
            status.map_err(|e| TaskFailure::permanent(format!("waiting for sh failed: {e}")))?;
        let stdout = read_out.await.unwrap_or_default();
        let stderr = read_err.await.unwrap_or_default();
        let mut exported = Map::new();
        if let Ok(text) = std::fs::read_to_string(&exports) {
            for line in text.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    exported.insert(k.trim().to_owned(), Value::String(v.to_owned()));
                }
            }
        }
        let code = status.code().unwrap_or(-1);
        let outputs = json!({
            "exitCode": code,
            "stdout": tail(&stdout),
            "stderr": tail(&stderr),
            "exports": exported,
        });
        if status.success() {
            Ok(outputs)
        } else {
            Err(TaskFailure {
                message: format!("script exited with status {code}"),
                outputs,
                retryable: true,
            })
        }
    }
}

/// The `Git` kind: clones `url` into `directory` (or fetches when it is already a clone),
/// checks out `ref` (a branch, tag or commit; default: the remote's default branch) and outputs
/// the commit id. Runs libgit2 in-process ([`crate::git::checkout`]); a `ref` that names
/// nothing fails the task without retries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Git;

const GIT_INPUTS: &[FieldSpec] = &[
    field("url", ValueType::String, true),
    field("ref", ValueType::String, false),
    field("directory", ValueType::String, true),
];
const GIT_OUTPUTS: &[FieldSpec] = &[
    field("commit", ValueType::String, false),
    field("directory", ValueType::String, false),
];

#[async_trait]
impl TaskKind for Git {
    fn type_name(&self) -> &'static str {
        "Git"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        GIT_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        GIT_OUTPUTS
    }

    async fn run(&self, mut ctx: TaskContext) -> Result<Value, TaskFailure> {
        let get = |k: &str| ctx.input.get(k).and_then(Value::as_str).map(str::to_owned);
        let url = get("url").ok_or_else(|| TaskFailure::permanent("url must be a string"))?;
        let reference = get("ref");
        let dir = resolve_dir(&ctx.work_dir, get("directory").as_deref());
        std::fs::create_dir_all(&ctx.work_dir).map_err(|e| {
            TaskFailure::permanent(format!("cannot create {}: {e}", ctx.work_dir.display()))
        })?;
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&cancelled);
        let work = tokio::task::spawn_blocking(move || {
            crate::git::checkout(&url, &dir, reference.as_deref(), &flag)
        });
        let result = tokio::select! {
            r = work => r,
            () = ctx.cancel.reached(CancelLevel::Graceful) => {
                // libgit2 stops at its next progress callback; the task ends now.
                cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(TaskFailure::permanent("cancelled"));
            }
        };
        match result {
            Ok(Ok(co)) => Ok(json!({
                "commit": co.commit,
                "directory": co.directory.to_string_lossy(),
            })),
            Ok(Err(e @ crate::Error::GitRef { .. })) => Err(TaskFailure::permanent(e.to_string())),
            Ok(Err(e)) => Err(TaskFailure {
                message: e.to_string(),
                outputs: json!({}),
                retryable: true,
            }),
            Err(e) => Err(TaskFailure::permanent(format!(
                "the git worker failed: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(input: Value, dir: &Path) -> (TaskContext, CancelHandle) {
        let (handle, cancel) = CancelHandle::new();
        let Value::Object(input) = input else {
            panic!("input must be an object")
        };
        (
            TaskContext {
                run_id: "r1".into(),
                stage: "S".into(),
                task: "t".into(),
                attempt: 1,
                idempotency_key: "r1:S.t:1".into(),
                input,
                cancel,
                work_dir: dir.to_path_buf(),
            },
            handle,
        )
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pc-task-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn shell_captures_output_exit_code_and_exports() {
        let d = tempdir("shell");
        let (c, _h) = ctx(
            json!({"script": "echo hi; echo oops >&2; echo v=1.2 >> \"$PIPELINE_EXPORTS\"; pwd; echo $GREETING $PIPELINE_IDEMPOTENCY_KEY",
                   "workingDirectory": "sub", "env": {"GREETING": "hello"}}),
            &d,
        );
        let out = Shell.run(c).await.unwrap();
        assert_eq!(out["exitCode"], 0);
        let stdout = out["stdout"].as_str().unwrap();
        assert!(stdout.starts_with("hi\n"));
        assert!(stdout.contains("/sub\n"));
        assert!(stdout.contains("hello r1:S.t:1"));
        assert_eq!(out["stderr"], "oops\n");
        assert_eq!(out["exports"]["v"], "1.2");
    }

    #[test]
    fn context_debug_never_shows_input_values() {
        let d = std::env::temp_dir();
        let (c, _h) = ctx(json!({"script": "echo hunter2"}), &d);
        let shown = format!("{c:?}");
        assert!(shown.contains("script"));
        assert!(!shown.contains("hunter2"));
    }

    #[tokio::test]
    async fn shell_failure_keeps_outputs() {
        let d = tempdir("fail");
        let (c, _h) = ctx(json!({"script": "echo bad >&2; exit 3"}), &d);
        let e = Shell.run(c).await.unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.outputs["exitCode"], 3);
        assert!(e.message.contains("status 3"));
    }

    #[tokio::test]
    async fn shell_cancel_stops_the_process_group() {
        let d = tempdir("cancel");
        let marker = d.join("still-running");
        let (c, h) = ctx(
            json!({"script": format!("(sleep 3; touch {}) & sleep 30", marker.display())}),
            &d,
        );
        let task = tokio::spawn(Shell.run(c));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        h.cancel(CancelLevel::Graceful);
        let e = task.await.unwrap().unwrap_err();
        assert_eq!(e.message, "cancelled");
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(!marker.exists(), "the background child survived the cancel");
    }

    #[tokio::test]
    async fn git_clones_a_real_repository_and_checks_out_a_ref() {
        let d = tempdir("git");
        let repo = d.join("origin");
        std::fs::create_dir_all(&repo).unwrap();
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
                .output()
                .unwrap();
            assert!(ok.status.success(), "{ok:?}");
            String::from_utf8(ok.stdout).unwrap().trim().to_owned()
        };
        run(&["init", "--quiet", "-b", "main"]);
        std::fs::write(repo.join("a.txt"), "1").unwrap();
        run(&["add", "."]);
        run(&["commit", "--quiet", "-m", "one"]);
        let first = run(&["rev-parse", "HEAD"]);
        std::fs::write(repo.join("a.txt"), "2").unwrap();
        run(&["commit", "--quiet", "-am", "two"]);
        let second = run(&["rev-parse", "HEAD"]);
        let (c, _h) = ctx(
            json!({"url": repo.to_string_lossy(), "directory": "work"}),
            &d,
        );
        let out = Git.run(c).await.unwrap();
        assert_eq!(out["commit"], second);
        let (c, _h) = ctx(
            json!({"url": repo.to_string_lossy(), "directory": "work", "ref": first}),
            &d,
        );
        let out = Git.run(c).await.unwrap();
        assert_eq!(out["commit"], first);
        assert_eq!(std::fs::read_to_string(d.join("work/a.txt")).unwrap(), "1");
        // A ref that names nothing fails at once, without retries.
        let (c, _h) = ctx(
            json!({"url": repo.to_string_lossy(), "directory": "work", "ref": "nope"}),
            &d,
        );
        let e = Git.run(c).await.unwrap_err();
        assert!(!e.retryable);
        assert!(e.message.contains("\"nope\""), "{}", e.message);
    }
}
