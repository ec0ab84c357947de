//! The async engine: runs, parks, resumes and reconciles pipeline runs over a journal.
//!
//! Every transition is journaled through the [`JournalStore`] with a compare-and-swap append
//! before it takes effect, and the run's state is always the fold of its journal. So:
//!
//! - a crash loses nothing that was committed; [`Engine::drive`] (or [`Engine::reconcile`] at
//!   start-up) picks a run up where its journal ends: attempts that were running are recorded as
//!   interrupted and run again with a new idempotency key, tasks that succeeded never run again;
//! - deadlines are absolute times in the journal, so a restart does not extend them;
//! - a failed run resumes from the failed task ([`Engine::resume`]), reusing the outputs of the
//!   tasks that succeeded;
//! - a run waiting for approvals is parked in the journal and holds no worker; a decision
//!   ([`Engine::decide`]) is journaled and the run is driven on.
//!
//! Within a stage, tasks run as a DAG (`needs`) under two limits: the pipeline's `concurrency`
//! and the engine's task slots shared by all runs. Attempts get retries with exponential
//! backoff, per-attempt and total timeouts, and cancellation (graceful, then hard) passed on to
//! the running task. Each journaled record is also sent on a typed event stream
//! ([`Engine::subscribe`]), and runs, stages and tasks are `tracing` spans.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, Semaphore, broadcast};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::Error;
use crate::approval::{self, Actor, ApprovalStatus, Authorizer, PolicyOnly};
use crate::artifact::ArtifactStore;
use crate::binding::resolve_value;
use crate::expr::Condition;
use crate::gate::{self, Verdict};
use crate::journal::{
    AttemptOutcome, Entry, JournalStore, Record, RunStatus, TaskStatus, Timestamp,
};
use crate::load::load_pipeline;
use crate::model::{ApprovalPolicy, Gate, OnExpiry, Pipeline, Rule, Stage, Task};
use crate::state::RunState;
use crate::task::{CancelHandle, CancelLevel, TaskContext, TaskFailure, TaskKind, TaskRegistry};

/// How a call to [`Engine::drive`] left the run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The run succeeded.
    Succeeded,
    /// The run failed, for this reason; it can be resumed.
    Failed(String),
    /// The run was cancelled.
    Cancelled(String),
    /// The run is parked until these approval requests are decided.
    Waiting(Vec<String>),
    /// The run was paused.
    Paused,
}

/// One journaled transition, as sent on the event stream.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEvent {
    /// The run.
    pub run: String,
    /// The journal version the record created.
    pub version: u64,
    /// When.
    pub at: Timestamp,
    /// What happened (secret values redacted).
    pub record: Record,
}

struct Control {
    cancel: CancelHandle,
    paused: AtomicBool,
}

struct Inner {
    store: Arc<dyn JournalStore>,
    registry: TaskRegistry,
    events: broadcast::Sender<RunEvent>,
    slots: Arc<Semaphore>,
    authorizer: Arc<dyn Authorizer>,
    artifacts: Option<Arc<dyn ArtifactStore>>,
    active: std::sync::Mutex<HashMap<String, Weak<Driver>>>,
    grace: Duration,
    pipeline_dir: PathBuf,
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn JournalStore>,
    registry: TaskRegistry,
    slots: usize,
    authorizer: Arc<dyn Authorizer>,
    artifacts: Option<Arc<dyn ArtifactStore>>,
    grace: Duration,
    pipeline_dir: PathBuf,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// The most tasks running at once across all runs (default 64).
    pub fn task_slots(mut self, n: usize) -> Self {
        self.slots = n.max(1);
        self
    }

    /// The hook that authorizes approval decisions (default: the policy alone).
    pub fn authorizer(mut self, a: Arc<dyn Authorizer>) -> Self {
        self.authorizer = a;
        self
    }

    /// The artifact repository that `artifactPassed` rules query.
    pub fn artifacts(mut self, store: Arc<dyn ArtifactStore>) -> Self {
        self.artifacts = Some(store);
        self
    }

    /// The time a cancelled or timed-out task gets to stop before it is abandoned (default 5 s).
    pub fn grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// Where nested `Pipeline` tasks find relative pipeline files (default: the current
    /// directory).
    pub fn pipeline_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pipeline_dir = dir.into();
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        let (events, _) = broadcast::channel(1024);
        Engine {
            inner: Arc::new(Inner {
                store: self.store,
                registry: self.registry,
                events,
                slots: Arc::new(Semaphore::new(self.slots)),
                authorizer: self.authorizer,
                artifacts: self.artifacts,
                active: std::sync::Mutex::default(),
                grace: self.grace,
                pipeline_dir: self.pipeline_dir,
            }),
        }
    }
}

fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("r{:x}-{:x}-{n:x}", Timestamp::now().0, std::process::id())
}

impl Engine {
    /// Starts building an engine over a journal store and task kinds.
    pub fn builder(store: Arc<dyn JournalStore>, registry: TaskRegistry) -> EngineBuilder {
        EngineBuilder {
            store,
            registry,
            slots: 64,
            authorizer: Arc::new(PolicyOnly),
            artifacts: None,
            grace: Duration::from_secs(5),
            pipeline_dir: PathBuf::from("."),
        }
    }

    /// Starts building the standard engine over a local state directory, set up as the
    /// `pipeline-run` command line sets it up: the built-in task kinds plus `Publish` and
    /// `Promote` over an artifact repository in `state_dir/artifacts` (a [`LocalStore`], also
    /// queried by `artifactPassed` rules), and `journal`, or, when `None`, a [`FileStore`] in
    /// `state_dir/journal`. Creates the directories that are missing. Further settings
    /// (task slots, an authorizer, ...) go on the returned builder.
    ///
    /// [`LocalStore`]: crate::artifact::LocalStore
    /// [`FileStore`]: crate::journal::FileStore
    ///
    /// ```
    /// use pipeline_core::engine::Engine;
    /// let dir = std::env::temp_dir().join(format!("engine-local-doc-{}", std::process::id()));
    /// let engine = Engine::local(&dir, None)?.task_slots(8).build();
    /// assert!(engine.registry().get("Shell").is_some());
    /// assert!(engine.registry().get("Publish").is_some());
    /// assert!(engine.artifacts().is_some());
    /// assert!(dir.join("journal").is_dir() && dir.join("artifacts").is_dir());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), pipeline_core::Error>(())
    /// ```
    pub fn local(
        state_dir: &Path,
        journal: Option<Arc<dyn JournalStore>>,
    ) -> Result<EngineBuilder, Error> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| Error::io(format!("cannot create {}", state_dir.display()), e))?;
        let journal: Arc<dyn JournalStore> = match journal {
            Some(j) => j,
            None => Arc::new(crate::journal::FileStore::open(state_dir.join("journal"))?),
        };
        let artifacts: Arc<dyn ArtifactStore> = Arc::new(crate::artifact::LocalStore::open(
            state_dir.join("artifacts"),
        )?);
        let mut registry = TaskRegistry::builtin();
        crate::artifact::register_kinds(&mut registry, &artifacts);
        Ok(Self::builder(journal, registry).artifacts(artifacts))
    }

    /// The artifact repository, when the engine has one.
    pub fn artifacts(&self) -> Option<&Arc<dyn ArtifactStore>> {
        self.inner.artifacts.as_ref()
    }

    /// The task kinds this engine knows.
    pub fn registry(&self) -> &TaskRegistry {
        &self.inner.registry
    }

    /// The journal store.
    pub fn store(&self) -> &Arc<dyn JournalStore> {
        &self.inner.store
    }

    /// A receiver of every journaled transition of every run from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.inner.events.subscribe()
    }

    /// Creates a run (journaled) without running it; returns its id.
    ///
    /// Inputs not given take the pipeline's defaults; unknown inputs and missing mandatory ones
    /// are refused.
    pub async fn start(
        &self,
        pipeline: &Pipeline,
        inputs: BTreeMap<String, String>,
        initiator: &str,
        work_dir: &Path,
    ) -> Result<String, Error> {
        self.start_as(new_run_id(), pipeline, inputs, initiator, work_dir)
            .await
    }

    async fn start_as(
        &self,
        run: String,
        pipeline: &Pipeline,
        inputs: BTreeMap<String, String>,
        initiator: &str,
        work_dir: &Path,
    ) -> Result<String, Error> {
        let mut all = BTreeMap::new();
        for k in inputs.keys() {
            if !pipeline.inputs.contains_key(k) {
                return Err(Error::Input(format!(
                    "pipeline {} has no input `{k}`",
                    pipeline.name
                )));
            }
        }
        for (k, def) in &pipeline.inputs {
            let v = inputs
                .get(k)
                .cloned()
                .unwrap_or_else(|| def.default.clone());
            if def.mandatory && v.is_empty() {
                return Err(Error::Input(format!("input `{k}` is mandatory")));
            }
            all.insert(k.clone(), v);
        }
        let entry = Entry {
            version: 1,
            at: Timestamp::now(),
            record: Record::RunCreated {
                pipeline: pipeline.source.clone(),
                inputs: all,
                initiator: initiator.to_owned(),
                work_dir: work_dir.join(&run).to_string_lossy().into_owned(),
            },
        };
        self.inner
            .store
            .append(&run, 0, vec![entry.clone()])
            .await?;
        let _ = self.inner.events.send(RunEvent {
            run: run.clone(),
            version: 1,
            at: entry.at,
            record: entry.record,
        });
        Ok(run)
    }

    /// Creates a run and drives it.
    pub async fn run(
        &self,
        pipeline: &Pipeline,
        inputs: BTreeMap<String, String>,
        initiator: &str,
        work_dir: &Path,
    ) -> Result<(String, Outcome), Error> {
        let run = self.start(pipeline, inputs, initiator, work_dir).await?;
        let outcome = self.drive(&run).await?;
        Ok((run, outcome))
    }

    /// The run's state, folded from its journal.
    pub async fn status(&self, run: &str) -> Result<RunState, Error> {
        let entries = self.inner.store.read(run).await?;
        RunState::fold(run, &entries).map_err(|message| Error::Corrupt {
            run: run.to_owned(),
            message,
        })
    }

    /// Drives a run from where its journal ends until it finishes, parks or pauses.
    pub async fn drive(&self, run: &str) -> Result<Outcome, Error> {
        let state = self.status(run).await?;
        if let Some(o) = terminal_outcome(&state) {
            return Ok(o);
        }
        if state.status == RunStatus::Paused && state.cancel_requested.is_none() {
            return Ok(Outcome::Paused);
        }
        let pipeline = load_pipeline(&state.pipeline, &self.inner.registry)?;
        let driver = {
            let mut active = self
                .inner
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if active.get(run).and_then(Weak::upgrade).is_some() {
                return Err(Error::InvalidState {
                    run: run.to_owned(),
                    message: "the run is already being driven".into(),
                });
            }
            let pause_requested = state.pause_requested;
            let (cancel, _) = CancelHandle::new();
            if let Some(hard) = state.cancel_requested {
                cancel.cancel(if hard {
                    CancelLevel::Hard
                } else {
                    CancelLevel::Graceful
                });
            }
            let vars = pipeline
                .variables
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect();
            let secrets = pipeline.secrets();
            let d = Arc::new(Driver {
                inner: Arc::clone(&self.inner),
                run: run.to_owned(),
                run_slots: Arc::new(Semaphore::new(pipeline.concurrency)),
                work_dir: PathBuf::from(&state.work_dir),
                pipeline,
                vars,
                secrets,
                state: Mutex::new(state),
                control: Control {
                    cancel,
                    paused: AtomicBool::new(pause_requested),
                },
                failed_at: std::sync::Mutex::new(None),
            });
            active.insert(run.to_owned(), Arc::downgrade(&d));
            d
        };
        let result = Arc::clone(&driver).drive().await;
        self.inner
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(run);
        result
    }

    /// Resumes a failed, cancelled or paused run: failed, cancelled and skipped tasks and failed
    /// gates start over; succeeded tasks keep their outputs and do not run again.
    pub async fn resume(&self, run: &str) -> Result<Outcome, Error> {
        let state = self.status(run).await?;
        match state.status {
            RunStatus::Failed | RunStatus::Cancelled | RunStatus::Paused => {}
            RunStatus::Running | RunStatus::Waiting => return self.drive(run).await,
            RunStatus::Succeeded => {
                return Err(Error::InvalidState {
                    run: run.to_owned(),
                    message: "the run succeeded; there is nothing to resume".into(),
                });
            }
        }
        self.append_external(run, Record::Resumed).await?;
        self.drive(run).await
    }

    /// Records an approval decision after checking the request's rules and the authorizer.
    /// The run is not driven; call [`Engine::drive`] afterwards (it parks again if more
    /// decisions are needed).
    pub async fn decide(
        &self,
        run: &str,
        request: &str,
        actor: &Actor,
        approved: bool,
        comment: &str,
    ) -> Result<(), Error> {
        let state = self.status(run).await?;
        let refused = |reason| Error::ApprovalRefused {
            run: run.to_owned(),
            request: request.to_owned(),
            reason,
        };
        let Some(req) = state.approvals.get(request) else {
            return Err(refused(crate::Refusal::UnknownRequest));
        };
        if state.status.is_terminal() {
            return Err(refused(crate::Refusal::UnknownRequest));
        }
        approval::check(
            run,
            request,
            req,
            &state.initiator,
            actor,
            Timestamp::now(),
            self.inner.authorizer.as_ref(),
        )
        .map_err(refused)?;
        self.append_external(
            run,
            Record::ApprovalDecided {
                request: request.to_owned(),
                actor: actor.name.clone(),
                approved,
                comment: comment.to_owned(),
            },
        )
        .await
    }

    /// Asks a run to stop: the request is journaled and, when the run is driven in this
    /// process, passed on to its running tasks (graceful: SIGTERM and a grace period; hard:
    /// kill). `finally` tasks still run after a graceful cancel.
    pub async fn cancel(&self, run: &str, hard: bool, reason: &str) -> Result<(), Error> {
        self.append_external(
            run,
            Record::CancelRequested {
                hard,
                reason: reason.to_owned(),
            },
        )
        .await?;
        if let Some(d) = self.active(run) {
            d.control.cancel.cancel(if hard {
                CancelLevel::Hard
            } else {
                CancelLevel::Graceful
            });
        }
        Ok(())
    }

    /// Asks a run to pause: the request is journaled; the process driving the run (this one,
    /// or another over the same store, which notices within [`WATCH_INTERVAL`]) lets running
    /// tasks finish, starts nothing new, journals `Paused`, and its [`Engine::drive`] returns
    /// [`Outcome::Paused`]. A run that no process drives pauses when it is next driven.
    /// Continue with [`Engine::resume`].
    pub async fn pause(&self, run: &str, reason: &str) -> Result<(), Error> {
        self.append_external(
            run,
            Record::PauseRequested {
                reason: reason.to_owned(),
            },
        )
        .await?;
        if let Some(d) = self.active(run) {
            d.control.paused.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Drives every unfinished, unpaused run of the store (call it at start-up): interrupted
    /// runs continue, parked runs re-check their approvals (and expiry). Child runs (nested
    /// pipelines, rollbacks) are left to their parents, which drive them.
    pub async fn reconcile(&self) -> Result<Vec<(String, Outcome)>, Error> {
        let mut set = JoinSet::new();
        for run in self.inner.store.runs().await? {
            if is_child_run(&run) {
                // Nested and rollback runs are driven by their parent run.
                continue;
            }
            let state = self.status(&run).await?;
            if state.status.is_terminal() || state.status == RunStatus::Paused {
                continue;
            }
            let engine = self.clone();
            set.spawn(async move {
                let o = engine.drive(&run).await;
                (run, o)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            let (run, o) = r.map_err(|e| Error::InvalidState {
                run: String::new(),
                message: format!("a run driver panicked: {e}"),
            })?;
            out.push((run, o?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// [`Engine::drive`] as a boxed `Send` future (nested runs recurse through it).
    fn drive_boxed(&self, run: String) -> BoxedOutcome {
        let engine = self.clone();
        Box::pin(async move { engine.drive(&run).await })
    }

    /// [`Engine::resume`] as a boxed `Send` future.
    fn resume_boxed(&self, run: String) -> BoxedOutcome {
        let engine = self.clone();
        Box::pin(async move { engine.resume(&run).await })
    }

    fn active(&self, run: &str) -> Option<Arc<Driver>> {
        self.inner
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(run)
            .and_then(Weak::upgrade)
    }

    /// Appends a record from outside a driver: through the driver when one is active (so its
    /// version stays right), else with a compare-and-swap on the journal, retried on conflict.
    async fn append_external(&self, run: &str, record: Record) -> Result<(), Error> {
        if let Some(d) = self.active(run) {
            return d.commit(vec![record]).await;
        }
        for _ in 0..5 {
            let state = self.status(run).await?;
            state
                .check(&record)
                .map_err(|message| Error::InvalidState {
                    run: run.to_owned(),
                    message,
                })?;
            let entry = Entry {
                version: state.version + 1,
                at: Timestamp::now(),
                record: record.clone(),
            };
            match self
                .inner
                .store
                .append(run, state.version, vec![entry.clone()])
                .await
            {
                Ok(_) => {
                    let _ = self.inner.events.send(RunEvent {
                        run: run.to_owned(),
                        version: entry.version,
                        at: entry.at,
                        record: entry.record,
                    });
                    return Ok(());
                }
                Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::InvalidState {
            run: run.to_owned(),
            message: "the journal kept changing; try again".into(),
        })
    }
}

/// How often a driver checks its run's journal for requests appended by another process (a
/// cancel or a pause from a command line).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Whether a record may be appended by another process while a run is driven here.
fn is_external(record: &Record) -> bool {
    matches!(
        record,
        Record::CancelRequested { .. }
            | Record::PauseRequested { .. }
            | Record::ApprovalDecided { .. }
    )
}

/// Whether a run is the child of another (a nested pipeline or a rollback).
fn is_child_run(run: &str) -> bool {
    run.contains("-n-") || run.contains("-rb")
}

/// The id of the child run of a nested `Pipeline` task: derived, so a restart finds it.
fn child_run_id(run: &str, stage: &Stage, task: &Task) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    format!("{run}-n-{}-{}", clean(&stage.name), clean(&task.name))
}

type BoxedOutcome =
    std::pin::Pin<Box<dyn Future<Output = Result<Outcome, Error>> + Send + 'static>>;

fn terminal_outcome(state: &RunState) -> Option<Outcome> {
    match state.status {
        RunStatus::Succeeded => Some(Outcome::Succeeded),
        RunStatus::Failed => Some(Outcome::Failed(state.message.clone())),
        RunStatus::Cancelled => Some(Outcome::Cancelled(state.message.clone())),
        _ => None,
    }
}

/// Where the flow goes after a gate or a stage.
enum Flow {
    Continue,
    Fail(String),
    Cancel(String),
    Park(Vec<String>),
    Pause,
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum AttemptEnd {
    Ok(Value),
    Failed(TaskFailure),
    TimedOut(Value),
    Cancelled,
}

struct Driver {
    inner: Arc<Inner>,
    run: String,
    pipeline: Pipeline,
    vars: BTreeMap<String, String>,
    secrets: Vec<String>,
    state: Mutex<RunState>,
    control: Control,
    run_slots: Arc<Semaphore>,
    work_dir: PathBuf,
    /// Where the run failed first: (stage index, task index).
    failed_at: std::sync::Mutex<Option<(usize, Option<usize>)>>,
}

fn redact(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "********");
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Object(m) => m.values_mut().for_each(|v| redact(v, secrets)),
        _ => {}
    }
}

impl Driver {
    /// Stage `si`: the stages in order, then the pipeline's `finally` (`si == n`), then the
    /// stages' own `finally` blocks (`n + 1 + i` for stage `i`).
    fn stage(&self, si: usize) -> Option<&Stage> {
        let n = self.pipeline.stages.len();
        match si.cmp(&n) {
            std::cmp::Ordering::Less => self.pipeline.stages.get(si),
            std::cmp::Ordering::Equal => self.pipeline.finally.as_ref(),
            std::cmp::Ordering::Greater => self
                .pipeline
                .stages
                .get(si - n - 1)
                .and_then(|s| s.finally.as_deref()),
        }
    }

    fn cancel_level(&self) -> CancelLevel {
        self.control.cancel.signal().level()
    }

    /// Takes in the records another process appended to the run's journal since this driver
    /// last wrote (cancel and pause requests, approval decisions) and acts on them. Anything
    /// else means another engine drives the run: that is a conflict.
    async fn merge_external(&self, st: &mut RunState) -> Result<(), Error> {
        let entries = self.inner.store.read(&self.run).await?;
        let known = usize::try_from(st.version).unwrap_or(usize::MAX);
        for e in entries.iter().skip(known) {
            if !is_external(&e.record) {
                return Err(Error::Conflict {
                    run: self.run.clone(),
                    expected: st.version,
                    actual: entries.len() as u64,
                });
            }
            st.check(&e.record).map_err(|message| Error::Corrupt {
                run: self.run.clone(),
                message,
            })?;
            st.apply(e);
            match &e.record {
                Record::CancelRequested { hard, .. } => self.control.cancel.cancel(if *hard {
                    CancelLevel::Hard
                } else {
                    CancelLevel::Graceful
                }),
                Record::PauseRequested { .. } => self.control.paused.store(true, Ordering::SeqCst),
                _ => {}
            }
            tracing::info!(run = %self.run, version = e.version, "took in a record written by another process");
            let _ = self.inner.events.send(RunEvent {
                run: self.run.clone(),
                version: e.version,
                at: e.at,
                record: e.record.clone(),
            });
        }
        Ok(())
    }

    /// Polls the journal's version and merges what other processes appended.
    async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let Ok(v) = self.inner.store.version(&self.run).await else {
                continue;
            };
            let mut st = self.state.lock().await;
            if v > st.version
                && let Err(e) = self.merge_external(&mut st).await
            {
                tracing::warn!(run = %self.run, error = %e, "cannot merge the journal");
            }
        }
    }

    /// Checks, journals (durably), applies and publishes records, in one append. When another
    /// process appended a request meanwhile, it is merged first and the append retried.
    async fn commit(&self, records: Vec<Record>) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let mut tries = 0;
        loop {
            match self.commit_locked(&mut st, &records).await {
                Err(Error::Conflict { .. }) if tries < 3 => {
                    tries += 1;
                    self.merge_external(&mut st).await?;
                }
                r => return r,
            }
        }
    }

    async fn commit_locked(&self, st: &mut RunState, records: &[Record]) -> Result<(), Error> {
        let records = records.to_vec();
        for r in &records {
            st.check(r).map_err(|message| Error::InvalidState {
                run: self.run.clone(),
                message,
            })?;
        }
        let at = Timestamp::now();
        let entries: Vec<Entry> = records
            .into_iter()
            .enumerate()
            .map(|(i, mut record)| {
                if !self.secrets.is_empty()
                    && let Ok(mut v) = serde_json::to_value(&record)
                {
                    redact(&mut v, &self.secrets);
                    if let Ok(r) = serde_json::from_value(v) {
                        record = r;
                    }
                }
                Entry {
                    version: st.version + 1 + i as u64,
                    at,
                    record,
                }
            })
            .collect();
        self.inner
            .store
            .append(&self.run, st.version, entries.clone())
            .await?;
        for e in entries {
            st.apply(&e);
            let _ = self.inner.events.send(RunEvent {
                run: self.run.clone(),
                version: e.version,
                at: e.at,
                record: e.record,
            });
        }
        Ok(())
    }

    async fn drive(self: Arc<Self>) -> Result<Outcome, Error> {
        let span = tracing::info_span!("run", run = %self.run, pipeline = %self.pipeline.name);
        let watcher = tokio::spawn(Arc::clone(&self).watch());
        let _stop_watching = AbortOnDrop(watcher);
        async move {
            self.reconcile().await?;
            let flow = self.stages().await?;
            let mut end = match flow {
                Flow::Park(requests) => {
                    self.commit(vec![Record::Parked {
                        requests: requests.clone(),
                    }])
                    .await?;
                    return Ok(Outcome::Waiting(requests));
                }
                Flow::Pause => {
                    self.commit(vec![Record::Paused]).await?;
                    return Ok(Outcome::Paused);
                }
                Flow::Continue => None,
                Flow::Fail(r) => Some((RunStatus::Failed, r)),
                Flow::Cancel(r) => Some((RunStatus::Cancelled, r)),
            };
            if self.pipeline.finally.is_some() && self.cancel_level() < CancelLevel::Hard {
                let si = self.pipeline.stages.len();
                match self.run_tasks(si).await? {
                    Flow::Continue | Flow::Pause => {}
                    Flow::Park(requests) => {
                        self.commit(vec![Record::Parked {
                            requests: requests.clone(),
                        }])
                        .await?;
                        return Ok(Outcome::Waiting(requests));
                    }
                    Flow::Fail(r) => {
                        end.get_or_insert((RunStatus::Failed, format!("finally: {r}")));
                    }
                    Flow::Cancel(r) => {
                        end.get_or_insert((RunStatus::Cancelled, r));
                    }
                }
            }
            let (status, mut message) = end.unwrap_or((RunStatus::Succeeded, String::new()));
            if status == RunStatus::Failed {
                let rolled = self.rollbacks().await?;
                if !rolled.is_empty() {
                    message = format!("{message}; rolled back: {}", rolled.join(", "));
                }
            }
            self.commit(vec![Record::RunFinished {
                status,
                message: message.clone(),
            }])
            .await?;
            Ok(match status {
                RunStatus::Succeeded => Outcome::Succeeded,
                RunStatus::Cancelled => Outcome::Cancelled(message),
                _ => Outcome::Failed(message),
            })
        }
        .instrument(span)
        .await
    }

    fn failed(&self, si: usize, task: Option<usize>) {
        let mut f = self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *f {
            None => *f = Some((si, task)),
            Some((s, None)) if s == si && task.is_some() => *f = Some((si, task)),
            _ => {}
        }
    }

    /// Runs the rollbacks of what failed (task, then stage, then pipeline) as child runs.
    async fn rollbacks(&self) -> Result<Vec<String>, Error> {
        let failed_at = *self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut todo = Vec::new();
        if let Some((si, ti)) = failed_at.filter(|(si, _)| *si < self.pipeline.stages.len()) {
            let stage = &self.pipeline.stages[si];
            if let Some(t) = ti.map(|i| &stage.tasks[i])
                && let Some(rb) = &t.rollback
            {
                todo.push((format!("task:{}.{}", stage.name, t.name), rb));
            }
            if let Some(rb) = &stage.rollback {
                todo.push((format!("stage:{}", stage.name), rb));
            }
        }
        if let Some(rb) = &self.pipeline.rollback {
            todo.push(("pipeline".to_owned(), rb));
        }
        let engine = Engine {
            inner: Arc::clone(&self.inner),
        };
        let mut done = Vec::new();
        for (scope, rb) in todo {
            if let Some((_, status)) = self.state.lock().await.rollbacks.get(&scope) {
                done.push(format!("{scope} {status:?}"));
                continue;
            }
            let clean: String = scope
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let resumes = self.state.lock().await.resumes;
            let child = format!("{}-rb{resumes}-{clean}", self.run);
            if self.inner.store.read(&child).await.is_err() {
                let input = {
                    let st = self.state.lock().await;
                    resolve_value(&Value::Object(rb.input.clone()), &st.scope(&self.vars))
                };
                let inputs: BTreeMap<String, String> = match input {
                    Ok(Value::Object(m)) => m
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                        .collect(),
                    Ok(_) => BTreeMap::new(),
                    Err(e) => {
                        tracing::warn!(%scope, error = %e, "rollback input cannot be resolved");
                        done.push(format!("{scope} not run: {e}"));
                        continue;
                    }
                };
                let path = self.inner.pipeline_dir.join(&rb.pipeline);
                let loaded = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|y| {
                        load_pipeline(&y, &self.inner.registry).map_err(|e| e.to_string())
                    });
                let p = match loaded {
                    Ok(p) => p,
                    Err(e) => {
                        done.push(format!("{scope} not run: {e}"));
                        continue;
                    }
                };
                let initiator = self.state.lock().await.initiator.clone();
                engine
                    .start_as(child.clone(), &p, inputs, &initiator, &self.work_dir)
                    .await?;
            }
            let outcome = engine.drive_boxed(child.clone()).await?;
            let status = match outcome {
                Outcome::Succeeded => RunStatus::Succeeded,
                Outcome::Cancelled(_) => RunStatus::Cancelled,
                Outcome::Waiting(_) => RunStatus::Waiting,
                _ => RunStatus::Failed,
            };
            self.commit(vec![Record::RolledBack {
                scope: scope.clone(),
                run: child,
                status,
            }])
            .await?;
            done.push(format!("{scope} {status:?}"));
        }
        Ok(done)
    }

    /// Records attempts that were running when the engine stopped as interrupted.
    async fn reconcile(&self) -> Result<(), Error> {
        let interrupted: Vec<Record> = {
            let st = self.state.lock().await;
            st.tasks
                .iter()
                .filter_map(|((stage, task), t)| {
                    t.running_attempt.map(|attempt| Record::AttemptFinished {
                        stage: stage.clone(),
                        task: task.clone(),
                        attempt,
                        outcome: AttemptOutcome::Interrupted,
                    })
                })
                .collect()
        };
        if !interrupted.is_empty() {
            tracing::info!(
                count = interrupted.len(),
                "reconciling interrupted attempts"
            );
            self.commit(interrupted).await?;
        }
        Ok(())
    }

    async fn stages(self: &Arc<Self>) -> Result<Flow, Error> {
        let flow = self.gate(self.pipeline.entry_gate.as_ref()).await?;
        if !matches!(flow, Flow::Continue) {
            return Ok(flow);
        }
        for si in 0..self.pipeline.stages.len() {
            if self.cancel_level() > CancelLevel::None {
                return Ok(Flow::Cancel("cancelled".into()));
            }
            if self.control.paused.load(Ordering::SeqCst) {
                return Ok(Flow::Pause);
            }
            let stage = &self.pipeline.stages[si];
            let span = tracing::info_span!("stage", stage = %stage.name);
            let flow = async {
                let flow = self.gate(stage.entry_gate.as_ref()).await?;
                if !matches!(flow, Flow::Continue) {
                    return Ok(flow);
                }
                let flow = self.run_tasks(si).await?;
                if !matches!(flow, Flow::Continue) {
                    return Ok(flow);
                }
                self.gate(stage.exit_gate.as_ref()).await
            }
            .instrument(span)
            .await?;
            if matches!(flow, Flow::Fail(_)) {
                self.failed(si, None);
            }
            let mut flow = flow;
            if stage.finally.is_some()
                && !matches!(flow, Flow::Park(_) | Flow::Pause)
                && self.cancel_level() < CancelLevel::Hard
            {
                match self.run_tasks(self.pipeline.stages.len() + 1 + si).await? {
                    Flow::Fail(r) if matches!(flow, Flow::Continue) => {
                        flow = Flow::Fail(format!("{}-finally: {r}", stage.name));
                    }
                    Flow::Park(r) => return Ok(Flow::Park(r)),
                    _ => {}
                }
            }
            if !matches!(flow, Flow::Continue) {
                return Ok(flow);
            }
        }
        self.gate(self.pipeline.exit_gate.as_ref()).await
    }

    /// Runs a stage's tasks as a DAG; `si == stages.len()` is `finally`.
    async fn run_tasks(self: &Arc<Self>, si: usize) -> Result<Flow, Error> {
        let Some(stage) = self.stage(si) else {
            return Ok(Flow::Continue);
        };
        let n = stage.tasks.len();
        let statuses: Vec<TaskStatus> = {
            let st = self.state.lock().await;
            stage
                .tasks
                .iter()
                .map(|t| st.task(&stage.name, &t.name).status)
                .collect()
        };
        let mut remaining = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, t) in stage.tasks.iter().enumerate() {
            for &j in &t.needs {
                if !statuses[j].is_terminal() {
                    remaining[i] += 1;
                    dependents[j].push(i);
                }
            }
        }
        let mut ready: VecDeque<usize> = (0..n)
            .filter(|&i| !statuses[i].is_terminal() && remaining[i] == 0)
            .collect();
        let mut failure: Option<String> = None;
        for (i, s) in statuses.iter().enumerate() {
            if matches!(
                s,
                TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Cancelled
            ) && !stage.tasks[i].ignore_failure
            {
                self.failed(si, Some(i));
                failure.get_or_insert_with(|| {
                    format!("task {}.{} failed", stage.name, stage.tasks[i].name)
                });
            }
        }
        let mut waiting = Vec::new();
        let mut cancelled = false;
        let mut error: Option<Error> = None;
        let mut set: JoinSet<(usize, Result<TaskStatus, Error>)> = JoinSet::new();
        loop {
            let is_finally = si >= self.pipeline.stages.len();
            let stop = failure.is_some()
                || error.is_some()
                || (self.cancel_level() > CancelLevel::None && !is_finally)
                || self.control.paused.load(Ordering::SeqCst);
            if !stop {
                while let Some(i) = ready.pop_front() {
                    let d = Arc::clone(self);
                    let task_name = stage.tasks[i].name.clone();
                    let span = tracing::info_span!("task", task = %task_name);
                    set.spawn(async move { (i, d.run_task(si, i).await) }.instrument(span));
                }
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (i, result) = match joined {
                Ok(r) => r,
                Err(e) => {
                    error.get_or_insert(Error::InvalidState {
                        run: self.run.clone(),
                        message: format!("a task driver panicked: {e}"),
                    });
                    continue;
                }
            };
            let status = match result {
                Ok(s) => s,
                Err(e) => {
                    error.get_or_insert(e);
                    continue;
                }
            };
            let task = &stage.tasks[i];
            match status {
                TaskStatus::Failed | TaskStatus::TimedOut if !task.ignore_failure => {
                    self.failed(si, Some(i));
                    let message = self
                        .state
                        .lock()
                        .await
                        .task(&stage.name, &task.name)
                        .message;
                    failure.get_or_insert_with(|| {
                        format!("task {}.{} failed: {message}", stage.name, task.name)
                    });
                }
                TaskStatus::Cancelled => cancelled = true,
                TaskStatus::Waiting if task.kind == "Pipeline" => {
                    // The nested run waits: its requests are decided on the child run.
                    waiting.push(format!("{}/*", child_run_id(&self.run, stage, task)));
                }
                TaskStatus::Waiting => {
                    waiting.push(format!("{}.{}", stage.name, task.name));
                }
                _ => {}
            }
            if status.is_terminal() {
                for &d in &dependents[i] {
                    remaining[d] -= 1;
                    if remaining[d] == 0 {
                        ready.push_back(d);
                    }
                }
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        if let Some(f) = failure {
            return Ok(Flow::Fail(f));
        }
        if cancelled || self.cancel_level() > CancelLevel::None {
            return Ok(Flow::Cancel("cancelled".into()));
        }
        if !waiting.is_empty() {
            return Ok(Flow::Park(waiting));
        }
        if !ready.is_empty() || remaining.iter().any(|&r| r > 0) {
            return Ok(Flow::Pause);
        }
        Ok(Flow::Continue)
    }

    async fn finish(
        &self,
        stage: &Stage,
        task: &Task,
        status: TaskStatus,
        outputs: Value,
        message: String,
    ) -> Result<TaskStatus, Error> {
        self.commit(vec![Record::TaskFinished {
            stage: stage.name.clone(),
            task: task.name.clone(),
            status,
            outputs,
            message,
        }])
        .await?;
        Ok(status)
    }

    async fn run_task(self: Arc<Self>, si: usize, i: usize) -> Result<TaskStatus, Error> {
        let Some(stage) = self.stage(si) else {
            return Err(Error::InvalidState {
                run: self.run.clone(),
                message: format!("no stage {si}"),
            });
        };
        let task = &stage.tasks[i];
        let ts = self.state.lock().await.task(&stage.name, &task.name);
        if ts.status.is_terminal() {
            return Ok(ts.status);
        }
        if !ts.started
            && ts.last_attempt == ts.budget_base
            && let Some(c) = &task.pre_condition
        {
            let r = {
                let st = self.state.lock().await;
                c.evaluate(&st.scope(&self.vars))
            };
            match r {
                Ok(true) => {}
                Ok(false) => {
                    let msg = format!("preCondition `{}` is false", c.source());
                    return self
                        .finish(stage, task, TaskStatus::Skipped, json!({}), msg)
                        .await;
                }
                Err(e) => {
                    return self
                        .finish(stage, task, TaskStatus::Failed, json!({}), e)
                        .await;
                }
            }
        }
        match task.kind.as_str() {
            "Condition" => return self.condition_task(stage, task).await,
            "UserOperation" => return self.user_operation(stage, task).await,
            "Pipeline" => return self.nested(stage, task).await,
            _ => {}
        }
        let Some(kind) = self.inner.registry.get(&task.kind) else {
            let msg = format!("task type {} has no executor in this engine", task.kind);
            return self
                .finish(stage, task, TaskStatus::Failed, json!({}), msg)
                .await;
        };
        // A task's start (its total deadline) is journaled with its first attempt's start, in
        // one append: one durable commit instead of two.
        let mut pending_start = None;
        if !ts.started {
            let deadline = task.timeout.total.map(|d| Timestamp::now().plus(d));
            pending_start = Some((
                Record::TaskStarted {
                    stage: stage.name.clone(),
                    task: task.name.clone(),
                    deadline,
                },
                deadline,
            ));
        }
        loop {
            let mut ts = self.state.lock().await.task(&stage.name, &task.name);
            if let Some((_, deadline)) = &pending_start {
                ts.deadline = *deadline;
            }
            let now = Timestamp::now();
            if let Some(dl) = ts.deadline
                && now >= dl
            {
                let msg = format!(
                    "total timeout of {:?} reached",
                    task.timeout.total.unwrap_or_default()
                );
                return self
                    .finish(stage, task, TaskStatus::TimedOut, json!({}), msg)
                    .await;
            }
            if let Some(nb) = ts.not_before
                && nb > now
            {
                let mut sig = self.control.cancel.signal();
                tokio::select! {
                    () = tokio::time::sleep(now.until(nb)) => {}
                    () = sig.reached(CancelLevel::Graceful) => {}
                }
            }
            if self.cancel_level() > CancelLevel::None && si < self.pipeline.stages.len() {
                return self
                    .finish(
                        stage,
                        task,
                        TaskStatus::Cancelled,
                        json!({}),
                        "cancelled".into(),
                    )
                    .await;
            }
            let _run_permit = Arc::clone(&self.run_slots).acquire_owned().await;
            let _slot = Arc::clone(&self.inner.slots).acquire_owned().await;
            let attempt = ts.last_attempt + 1;
            let key = format!("{}:{}.{}:{attempt}", self.run, stage.name, task.name);
            let now = Timestamp::now();
            let attempt_deadline = match (task.timeout.attempt.map(|d| now.plus(d)), ts.deadline) {
                (Some(a), Some(t)) => Some(a.min(t)),
                (a, t) => a.or(t),
            };
            let mut records: Vec<Record> =
                pending_start.take().map(|(r, _)| r).into_iter().collect();
            records.push(Record::AttemptStarted {
                stage: stage.name.clone(),
                task: task.name.clone(),
                attempt,
                key: key.clone(),
                deadline: attempt_deadline,
            });
            self.commit(records).await?;
            let input = {
                let st = self.state.lock().await;
                resolve_value(&Value::Object(task.input.clone()), &st.scope(&self.vars))
            };
            let end = match input {
                Ok(Value::Object(input)) => {
                    let ctx = TaskContext {
                        run_id: self.run.clone(),
                        stage: stage.name.clone(),
                        task: task.name.clone(),
                        attempt,
                        idempotency_key: key,
                        input,
                        cancel: self.control.cancel.signal(),
                        work_dir: self.work_dir.clone(),
                    };
                    self.attempt(
                        kind.as_ref(),
                        ctx,
                        attempt_deadline,
                        si >= self.pipeline.stages.len(),
                    )
                    .await
                }
                Ok(_) => AttemptEnd::Failed(TaskFailure::permanent("input is not a map")),
                Err(e) => AttemptEnd::Failed(TaskFailure::permanent(format!("input: {e}"))),
            };
            let base = |outcome| Record::AttemptFinished {
                stage: stage.name.clone(),
                task: task.name.clone(),
                attempt,
                outcome,
            };
            let finished = |status, outputs, message| Record::TaskFinished {
                stage: stage.name.clone(),
                task: task.name.clone(),
                status,
                outputs,
                message,
            };
            let (outcome, status, outputs, message, retryable) = match end {
                AttemptEnd::Ok(outputs) => {
                    self.commit(vec![
                        base(AttemptOutcome::Succeeded),
                        finished(TaskStatus::Succeeded, outputs, String::new()),
                    ])
                    .await?;
                    return Ok(TaskStatus::Succeeded);
                }
                AttemptEnd::Cancelled => {
                    self.commit(vec![
                        base(AttemptOutcome::Cancelled),
                        finished(TaskStatus::Cancelled, json!({}), "cancelled".into()),
                    ])
                    .await?;
                    return Ok(TaskStatus::Cancelled);
                }
                AttemptEnd::TimedOut(outputs) => {
                    let msg = format!("attempt {attempt} timed out");
                    (
                        AttemptOutcome::TimedOut,
                        TaskStatus::TimedOut,
                        outputs,
                        msg,
                        true,
                    )
                }
                AttemptEnd::Failed(f) => (
                    AttemptOutcome::Failed {
                        message: f.message.clone(),
                    },
                    TaskStatus::Failed,
                    f.outputs,
                    f.message,
                    f.retryable,
                ),
            };
            let used = attempt - ts.budget_base;
            let next = Timestamp::now().plus(task.retry.backoff_after(used));
            let in_time = ts.deadline.is_none_or(|dl| next < dl);
            if retryable
                && used < task.retry.attempts
                && in_time
                && self.cancel_level() == CancelLevel::None
            {
                tracing::info!(attempt, "attempt failed; retrying");
                self.commit(vec![
                    base(outcome),
                    Record::RetryScheduled {
                        stage: stage.name.clone(),
                        task: task.name.clone(),
                        not_before: next,
                    },
                ])
                .await?;
                continue;
            }
            self.commit(vec![base(outcome), finished(status, outputs, message)])
                .await?;
            return Ok(status);
        }
    }

    async fn attempt(
        &self,
        kind: &dyn TaskKind,
        mut ctx: TaskContext,
        deadline: Option<Timestamp>,
        in_finally: bool,
    ) -> AttemptEnd {
        // `finally` tasks run after a graceful cancel; only a hard one stops them.
        let stop_at = if in_finally {
            CancelLevel::Hard
        } else {
            CancelLevel::Graceful
        };
        let (handle, signal) = CancelHandle::new();
        ctx.cancel = signal;
        let fut = kind.run(ctx);
        tokio::pin!(fut);
        let sleep = tokio::time::sleep(
            deadline.map_or(Duration::from_secs(100 * 365 * 86400), |d| {
                Timestamp::now().until(d)
            }),
        );
        tokio::pin!(sleep);
        let mut graceful = self.control.cancel.signal();
        let mut hard = self.control.cancel.signal();
        let mut forwarded_graceful = in_finally;
        loop {
            tokio::select! {
                r = &mut fut => {
                    return match r {
                        Ok(v) => AttemptEnd::Ok(v),
                        Err(_) if self.cancel_level() >= stop_at => AttemptEnd::Cancelled,
                        Err(f) => AttemptEnd::Failed(f),
                    };
                }
                () = &mut sleep => {
                    handle.cancel(CancelLevel::Hard);
                    let outputs = match tokio::time::timeout(self.inner.grace, &mut fut).await {
                        Ok(Err(f)) => f.outputs,
                        _ => json!({}),
                    };
                    return AttemptEnd::TimedOut(outputs);
                }
                () = graceful.reached(CancelLevel::Graceful), if !forwarded_graceful => {
                    forwarded_graceful = true;
                    handle.cancel(CancelLevel::Graceful);
                }
                () = hard.reached(CancelLevel::Hard) => {
                    handle.cancel(CancelLevel::Hard);
                    let _ = tokio::time::timeout(self.inner.grace, &mut fut).await;
                    return AttemptEnd::Cancelled;
                }
            }
        }
    }

    async fn condition_task(&self, stage: &Stage, task: &Task) -> Result<TaskStatus, Error> {
        let source = task
            .input
            .get("condition")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let r = {
            let st = self.state.lock().await;
            Condition::compile(source).and_then(|c| c.evaluate(&st.scope(&self.vars)))
        };
        match r {
            Ok(true) => {
                self.finish(
                    stage,
                    task,
                    TaskStatus::Succeeded,
                    json!({"result": true}),
                    String::new(),
                )
                .await
            }
            Ok(false) => {
                let msg = format!("condition `{source}` is false");
                self.finish(
                    stage,
                    task,
                    TaskStatus::Failed,
                    json!({"result": false}),
                    msg,
                )
                .await
            }
            Err(e) => {
                self.finish(stage, task, TaskStatus::Failed, json!({}), e)
                    .await
            }
        }
    }

    async fn user_operation(&self, stage: &Stage, task: &Task) -> Result<TaskStatus, Error> {
        let input = {
            let st = self.state.lock().await;
            resolve_value(&Value::Object(task.input.clone()), &st.scope(&self.vars))
        };
        let input = match input {
            Ok(Value::Object(m)) => m,
            Ok(_) => Map::new(),
            Err(e) => {
                return self
                    .finish(
                        stage,
                        task,
                        TaskStatus::Failed,
                        json!({}),
                        format!("input: {e}"),
                    )
                    .await;
            }
        };
        let strings = |k: &str| -> Vec<String> {
            input
                .get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let expires = input
            .get("expiresAfterSeconds")
            .and_then(Value::as_f64)
            .or_else(|| {
                input
                    .get("expirationInDays")
                    .and_then(Value::as_f64)
                    .map(|d| d * 86400.0)
            })
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        let policy = ApprovalPolicy {
            name: task.name.clone(),
            approvers: strings("approvers"),
            groups: strings("groups"),
            quorum: input
                .get("quorum")
                .and_then(Value::as_u64)
                .map_or(1, |q| q.max(1) as u32),
            allow_self_approval: input
                .get("allowSelfApproval")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            expires_after: expires,
            on_expiry: if input.get("onExpiry").and_then(Value::as_str) == Some("cancel") {
                OnExpiry::Cancel
            } else {
                OnExpiry::Fail
            },
            summary: input
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        if policy.approvers.is_empty() && policy.groups.is_empty() {
            let msg = "UserOperation needs approvers or groups".to_owned();
            return self
                .finish(stage, task, TaskStatus::Failed, json!({}), msg)
                .await;
        }
        let request = format!("{}.{}", stage.name, task.name);
        let (status, _) = self.approval(&request, &policy).await?;
        let decisions = self
            .state
            .lock()
            .await
            .approvals
            .get(&request)
            .map(|a| a.decisions.clone())
            .unwrap_or_default();
        let outputs = |s: &str| {
            json!({
                "status": s,
                "respondedBy": decisions.iter().map(|d| d.actor.clone()).collect::<Vec<_>>(),
                "comments": decisions.iter().map(|d| d.comment.clone()).collect::<Vec<_>>(),
            })
        };
        match status {
            ApprovalStatus::Approved => {
                self.finish(
                    stage,
                    task,
                    TaskStatus::Succeeded,
                    outputs("Approved"),
                    String::new(),
                )
                .await
            }
            ApprovalStatus::Rejected { by } => {
                let msg = format!("rejected by {by}");
                self.finish(stage, task, TaskStatus::Failed, outputs("Rejected"), msg)
                    .await
            }
            ApprovalStatus::Expired => {
                if policy.on_expiry == OnExpiry::Cancel {
                    self.commit(vec![Record::CancelRequested {
                        hard: false,
                        reason: format!("approval {request} expired"),
                    }])
                    .await?;
                    self.control.cancel.cancel(CancelLevel::Graceful);
                    self.finish(
                        stage,
                        task,
                        TaskStatus::Cancelled,
                        outputs("Expired"),
                        "approval expired".into(),
                    )
                    .await
                } else {
                    self.finish(
                        stage,
                        task,
                        TaskStatus::Failed,
                        outputs("Expired"),
                        "approval expired".into(),
                    )
                    .await
                }
            }
            _ => Ok(TaskStatus::Waiting),
        }
    }

    /// Runs a nested pipeline as a child run whose id derives from this task, so that a
    /// restarted engine finds and continues the same child instead of starting another.
    async fn nested(&self, stage: &Stage, task: &Task) -> Result<TaskStatus, Error> {
        let input = {
            let st = self.state.lock().await;
            resolve_value(&Value::Object(task.input.clone()), &st.scope(&self.vars))
        };
        let input = match input {
            Ok(Value::Object(m)) => m,
            Ok(_) => Map::new(),
            Err(e) => {
                let msg = format!("input: {e}");
                return self
                    .finish(stage, task, TaskStatus::Failed, json!({}), msg)
                    .await;
            }
        };
        let depth = self.run.matches("-n-").count();
        if depth >= MAX_NESTING {
            let msg = format!("pipelines nest deeper than {MAX_NESTING}");
            return self
                .finish(stage, task, TaskStatus::Failed, json!({}), msg)
                .await;
        }
        let child = child_run_id(&self.run, stage, task);
        let engine = Engine {
            inner: Arc::clone(&self.inner),
        };
        let exists = self.inner.store.read(&child).await.is_ok();
        if !exists {
            let file = input
                .get("pipeline")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let path = self.inner.pipeline_dir.join(file);
            let loaded = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read pipeline {}: {e}", path.display()))
                .and_then(|y| load_pipeline(&y, &self.inner.registry).map_err(|e| e.to_string()));
            let child_pipeline = match loaded {
                Ok(p) => p,
                Err(e) => {
                    return self
                        .finish(stage, task, TaskStatus::Failed, json!({}), e)
                        .await;
                }
            };
            let props: BTreeMap<String, String> = input
                .get("inputProperties")
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
            let initiator = self.state.lock().await.initiator.clone();
            if let Err(e) = engine
                .start_as(
                    child.clone(),
                    &child_pipeline,
                    props,
                    &initiator,
                    &self.work_dir,
                )
                .await
            {
                let msg = format!("cannot start the nested pipeline: {e}");
                return self
                    .finish(stage, task, TaskStatus::Failed, json!({}), msg)
                    .await;
            }
        }
        let state = engine.status(&child).await?;
        let driven = if matches!(state.status, RunStatus::Failed | RunStatus::Cancelled) && !exists
        {
            engine.drive_boxed(child.clone()).await
        } else if matches!(state.status, RunStatus::Failed | RunStatus::Cancelled) {
            // A retried or resumed parent resumes its child from the child's failed task.
            engine.resume_boxed(child.clone()).await
        } else {
            let mut sig = self.control.cancel.signal();
            let mut drive = engine.drive_boxed(child.clone());
            tokio::select! {
                r = &mut drive => r,
                () = sig.reached(CancelLevel::Graceful) => {
                    let hard = self.cancel_level() >= CancelLevel::Hard;
                    engine.cancel(&child, hard, "the parent run was cancelled").await?;
                    drive.await
                }
            }
        }?;
        let state = engine.status(&child).await?;
        let mut tasks = Map::new();
        for ((s, t), ts) in &state.tasks {
            let entry = tasks
                .entry(s.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(t.clone(), ts.outputs.clone());
            }
        }
        let outputs = |status: &str| json!({"runId": child, "status": status, "tasks": tasks});
        match driven {
            Outcome::Succeeded => {
                self.finish(
                    stage,
                    task,
                    TaskStatus::Succeeded,
                    outputs("SUCCEEDED"),
                    String::new(),
                )
                .await
            }
            Outcome::Failed(why) => {
                let msg = format!("nested run {child} failed: {why}");
                self.finish(stage, task, TaskStatus::Failed, outputs("FAILED"), msg)
                    .await
            }
            Outcome::Cancelled(why) => {
                let msg = format!("nested run {child} was cancelled: {why}");
                self.finish(
                    stage,
                    task,
                    TaskStatus::Cancelled,
                    outputs("CANCELLED"),
                    msg,
                )
                .await
            }
            _ => Ok(TaskStatus::Waiting),
        }
    }

    /// Opens the request when it is not yet open; returns where it stands.
    async fn approval(
        &self,
        request: &str,
        policy: &ApprovalPolicy,
    ) -> Result<(ApprovalStatus, Option<Timestamp>), Error> {
        let open = self.state.lock().await.approvals.contains_key(request);
        if !open {
            let expires_at = policy.expires_after.map(|d| Timestamp::now().plus(d));
            self.commit(vec![Record::ApprovalRequested {
                request: request.to_owned(),
                policy: policy.clone(),
                expires_at,
            }])
            .await?;
        }
        let st = self.state.lock().await;
        let a = &st.approvals[request];
        Ok((approval::status(a, Timestamp::now()), a.expires_at))
    }

    async fn gate(&self, gate: Option<&Gate>) -> Result<Flow, Error> {
        let Some(gate) = gate else {
            return Ok(Flow::Continue);
        };
        loop {
            let g = self.state.lock().await.gates.get(&gate.id).cloned();
            match g.as_ref().and_then(|g| g.outcome.clone()) {
                Some(None) => return Ok(Flow::Continue),
                Some(Some(r)) => return Ok(Flow::Fail(format!("gate {} failed: {r}", gate.id))),
                None => {}
            }
            let opened_at = if let Some(t) = g.and_then(|g| g.opened_at) {
                t
            } else {
                self.commit(vec![Record::GateOpened {
                    gate: gate.id.clone(),
                }])
                .await?;
                Timestamp::now()
            };
            let now = Timestamp::now();
            let mut verdicts = Vec::new();
            let mut cancel_reason = None;
            for rule in &gate.rules {
                let v = self
                    .rule(gate, rule, opened_at, now, &mut cancel_reason)
                    .await?;
                verdicts.push(v);
            }
            match gate::combine(gate.mode, verdicts) {
                Verdict::Pass => {
                    self.commit(vec![Record::GatePassed {
                        gate: gate.id.clone(),
                    }])
                    .await?;
                    return Ok(Flow::Continue);
                }
                Verdict::Fail(reason) => {
                    self.commit(vec![Record::GateFailed {
                        gate: gate.id.clone(),
                        reason: reason.clone(),
                    }])
                    .await?;
                    if let Some(c) = cancel_reason {
                        self.commit(vec![Record::CancelRequested {
                            hard: false,
                            reason: c.clone(),
                        }])
                        .await?;
                        return Ok(Flow::Cancel(c));
                    }
                    return Ok(Flow::Fail(format!("gate {} failed: {reason}", gate.id)));
                }
                Verdict::Wait { until, approvals } => {
                    if !approvals.is_empty() {
                        return Ok(Flow::Park(approvals));
                    }
                    let until = until.unwrap_or_else(|| now.plus(Duration::from_secs(1)));
                    let mut sig = self.control.cancel.signal();
                    tokio::select! {
                        () = tokio::time::sleep(Timestamp::now().until(until)) => {}
                        () = sig.reached(CancelLevel::Graceful) => {
                            return Ok(Flow::Cancel(format!("cancelled while waiting at gate {}", gate.id)));
                        }
                    }
                }
            }
        }
    }

    async fn rule(
        &self,
        gate: &Gate,
        rule: &Rule,
        opened_at: Timestamp,
        now: Timestamp,
        cancel_reason: &mut Option<String>,
    ) -> Result<Verdict, Error> {
        Ok(match rule {
            Rule::Condition(c) => {
                let st = self.state.lock().await;
                match c.evaluate(&st.scope(&self.vars)) {
                    Ok(true) => Verdict::Pass,
                    Ok(false) => Verdict::Fail(format!("condition `{}` is false", c.source())),
                    Err(e) => Verdict::Fail(e),
                }
            }
            Rule::TestThreshold {
                report,
                min_pass_percent,
                min_tests,
            } => {
                let path = {
                    let st = self.state.lock().await;
                    report.resolve(&st.scope(&self.vars))
                };
                match path {
                    Err(e) => Verdict::Fail(e),
                    Ok(p) => {
                        let p = p.as_str().map_or_else(|| p.to_string(), str::to_owned);
                        let full = self.work_dir.join(&p);
                        match std::fs::read_to_string(&full) {
                            Err(e) => Verdict::Fail(format!("cannot read test report {p}: {e}")),
                            Ok(xml) => match gate::parse_junit(&xml) {
                                Ok(s) => gate::threshold_verdict(&s, *min_pass_percent, *min_tests),
                                Err(e) => Verdict::Fail(format!("{p}: {e}")),
                            },
                        }
                    }
                }
            }
            Rule::Approval(policy) => {
                let request = format!("{}/{}", gate.id, policy.name);
                let (status, expires_at) = self.approval(&request, policy).await?;
                match status {
                    ApprovalStatus::Approved => Verdict::Pass,
                    ApprovalStatus::Rejected { by } => {
                        Verdict::Fail(format!("approval {request} rejected by {by}"))
                    }
                    ApprovalStatus::Expired => {
                        if policy.on_expiry == OnExpiry::Cancel {
                            *cancel_reason = Some(format!("approval {request} expired"));
                        }
                        Verdict::Fail(format!("approval {request} expired"))
                    }
                    _ => Verdict::Wait {
                        until: expires_at,
                        approvals: vec![request],
                    },
                }
            }
            Rule::Window { tz, allow, deny } => gate::window_verdict(*tz, allow, deny, now),
            Rule::Delay(d) => {
                let until = opened_at.plus(*d);
                if now >= until {
                    Verdict::Pass
                } else {
                    Verdict::Wait {
                        until: Some(until),
                        approvals: Vec::new(),
                    }
                }
            }
            Rule::Poll {
                command,
                interval,
                timeout,
            } => {
                let deadline = opened_at.plus(*timeout);
                let cmd = {
                    let st = self.state.lock().await;
                    command.resolve(&st.scope(&self.vars))
                };
                let cmd = match cmd {
                    Ok(Value::String(s)) => s,
                    Ok(v) => v.to_string(),
                    Err(e) => return Ok(Verdict::Fail(e)),
                };
                std::fs::create_dir_all(&self.work_dir).map_err(|e| {
                    Error::io(format!("cannot create {}", self.work_dir.display()), e)
                })?;
                let ok = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&cmd)
                    .current_dir(&self.work_dir)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                let next = Timestamp::now().plus(*interval);
                if ok {
                    Verdict::Pass
                } else if Timestamp::now() >= deadline {
                    Verdict::Fail(format!("poll did not succeed within {timeout:?}"))
                } else {
                    Verdict::Wait {
                        until: Some(next.min(deadline)),
                        approvals: Vec::new(),
                    }
                }
            }
            Rule::ArtifactPassed {
                repo,
                artifact,
                stage,
            } => match &self.inner.artifacts {
                None => Verdict::Fail("no artifact repository is configured".into()),
                Some(store) => match store.latest_passed(repo, artifact, stage).await {
                    Ok(Some(_)) => Verdict::Pass,
                    Ok(None) => Verdict::Fail(format!(
                        "no version of {repo}/{artifact} has passed stage {stage}"
                    )),
                    Err(e) => Verdict::Fail(e.to_string()),
                },
            },
        })
    }
}

/// The deepest nesting of `Pipeline` tasks.
pub const MAX_NESTING: usize = 8;

/// Secret values of a pipeline are never journaled; this is what they are replaced with.
pub const REDACTED: &str = "********";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_secret() {
        let mut v = json!({"a": "token=s3cr3t", "b": ["s3cr3t", 1], "c": {"d": "ok"}});
        redact(&mut v, &["s3cr3t".to_owned()]);
        assert_eq!(
            v,
            json!({"a": "token=********", "b": ["********", 1], "c": {"d": "ok"}})
        );
        assert_eq!(REDACTED, "********");
    }
}
