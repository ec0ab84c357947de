//! Pipelines (`pipeline-core`): load, run, status, approve, resume, with a state directory
//! (`vsdk_pipelines_*`, `vsdk_pipeline_*`).

use std::collections::BTreeMap;
use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use pipeline_core::approval::Actor;
use pipeline_core::engine::{Engine, Outcome};
use pipeline_core::journal::RunStatus;
use pipeline_core::load::load_pipeline;
use pipeline_core::model::Pipeline;
use tokio::runtime::Runtime;

use crate::boundary::{
    Callback, Out, block_on, c_string, emit, free_box, guard, handle, out, owned_string, runtime,
    string, strings, vsdk_event_callback, vsdk_strings,
};
use crate::error::Error;
use crate::vsdk_result;

/// How a run call left the run.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum vsdk_run_outcome {
    /// The run succeeded.
    Succeeded = 0,
    /// The run failed (its status says why); it can be resumed.
    Failed = 1,
    /// The run was cancelled.
    Cancelled = 2,
    /// The run is parked until approval requests are decided (their ids are in the
    /// `out_waiting` list); no thread or process is held.
    Waiting = 3,
    /// The run was paused; resume it.
    Paused = 4,
}

/// A run's status.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum vsdk_run_status {
    /// Running (or interrupted: resume reconciles it).
    Running = 0,
    /// Parked on approvals.
    Waiting = 1,
    /// Paused.
    Paused = 2,
    /// Finished well.
    Succeeded = 3,
    /// Finished badly; can be resumed.
    Failed = 4,
    /// Cancelled.
    Cancelled = 5,
}

/// A pipeline engine over a state directory (journal, working directories, artifact
/// repository). Free it with [`vsdk_pipelines_free`].
pub struct vsdk_pipelines {
    engine: Engine,
    state_dir: PathBuf,
    /// One call at a time (events go to its callback).
    calls: Mutex<()>,
    /// Declared last: dropped after the engine.
    rt: Runtime,
}

impl std::fmt::Debug for vsdk_pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("vsdk_pipelines")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// A loaded, validated pipeline. Free it with [`vsdk_pipeline_free`].
#[derive(Debug)]
pub struct vsdk_pipeline {
    pipeline: Pipeline,
    name: CString,
}

/// Opens (creating it if missing) the pipeline state directory `state_dir`, set up as the
/// `pipeline-run` command line sets it up (journal in `journal/`, artifact repository in
/// `artifacts/`, working directories in `work/`). Pipelines run the built-in task kinds
/// (Shell, Poll, REST, Git, artifacts; see pipeline-core).
///
/// # Safety
///
/// `state_dir` NULL or NUL-terminated; `out_pipelines` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipelines_open(
    state_dir: *const c_char,
    out_pipelines: *mut *mut vsdk_pipelines,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let dir = unsafe { string(state_dir, "state_dir")? };
        let out_pipelines = out(out_pipelines, "out_pipelines")?;
        let dir = std::path::absolute(Path::new(dir)).map_err(|source| Error::Io {
            context: format!("cannot resolve {dir}"),
            source,
        })?;
        let engine = Engine::local(&dir, None)?.build();
        out_pipelines.put(Box::into_raw(Box::new(vsdk_pipelines {
            engine,
            state_dir: dir,
            calls: Mutex::new(()),
            rt: runtime()?,
        })));
        Ok(())
    })
}

/// Frees a pipelines handle (runs and their journal stay in the state directory). NULL is a
/// no-op.
///
/// # Safety
///
/// `pipelines` is NULL or a handle that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipelines_free(pipelines: *mut vsdk_pipelines) {
    free_box(pipelines);
}

fn loaded(
    p: &vsdk_pipelines,
    yaml: &str,
    out_pipeline: Out<*mut vsdk_pipeline>,
) -> Result<(), Error> {
    let pipeline = load_pipeline(yaml, p.engine.registry())?;
    let name = c_string(pipeline.name.as_str())?;
    out_pipeline.put(Box::into_raw(Box::new(vsdk_pipeline { pipeline, name })));
    Ok(())
}

/// Loads and validates the pipeline YAML file at `path` (Code Stream's format). Invalid YAML
/// or an invalid pipeline is `VSDK_RESULT_INVALID_PIPELINE`, with every diagnostic (line and
/// column) in the last error.
///
/// # Safety
///
/// `pipelines` NULL or a live handle; `path` NULL or NUL-terminated; `out_pipeline` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_load(
    pipelines: *const vsdk_pipelines,
    path: *const c_char,
    out_pipeline: *mut *mut vsdk_pipeline,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, path) = unsafe { (handle(pipelines, "pipelines")?, string(path, "path")?) };
        let out_pipeline = out(out_pipeline, "out_pipeline")?;
        let yaml = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("cannot read {path}"),
            source,
        })?;
        loaded(p, &yaml, out_pipeline)
    })
}

/// [`vsdk_pipeline_load`] from YAML text.
///
/// # Safety
///
/// `pipelines` NULL or a live handle; `yaml` NULL or NUL-terminated; `out_pipeline` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_parse(
    pipelines: *const vsdk_pipelines,
    yaml: *const c_char,
    out_pipeline: *mut *mut vsdk_pipeline,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, yaml) = unsafe { (handle(pipelines, "pipelines")?, string(yaml, "yaml")?) };
        let out_pipeline = out(out_pipeline, "out_pipeline")?;
        loaded(p, yaml, out_pipeline)
    })
}

/// The pipeline's name. Borrowed: valid until the pipeline is freed.
///
/// # Safety
///
/// `pipeline` NULL or a live pipeline; `out_name` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_name(
    pipeline: *const vsdk_pipeline,
    out_name: *mut *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let p = unsafe { handle(pipeline, "pipeline")? };
        out(out_name, "out_name")?.put(p.name.as_ptr());
        Ok(())
    })
}

/// Frees a loaded pipeline. NULL is a no-op.
///
/// # Safety
///
/// `pipeline` is NULL or a pipeline that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_free(pipeline: *mut vsdk_pipeline) {
    free_box(pipeline);
}

/// Sends one journaled transition of `run` to the callback as a line.
fn forward(run: &str, ev: &pipeline_core::engine::RunEvent, cb: Option<&Callback>) {
    if ev.run == run
        && let Some(line) = pipeline_core::cli::describe(ev)
    {
        emit(cb, &format!("[{:>3}] {line}", ev.version));
    }
}

/// Drives a run to its next stop, sending journaled transitions to the callback as lines
/// `[  3] task Build.make SUCCEEDED` (the event stream of `pipeline-run`).
async fn drive(
    engine: &Engine,
    run: &str,
    fut: impl Future<Output = Result<Outcome, pipeline_core::Error>>,
    cb: Option<&Callback>,
) -> Result<Outcome, Error> {
    let mut events = engine.subscribe();
    tokio::pin!(fut);
    let outcome = loop {
        tokio::select! {
            biased;
            ev = events.recv() => {
                if let Ok(ev) = ev {
                    forward(run, &ev, cb);
                }
            }
            o = &mut fut => break o,
        }
    };
    while let Ok(ev) = events.try_recv() {
        forward(run, &ev, cb);
    }
    Ok(outcome?)
}

/// Where a call that drives a run reports: its event callback and its out-parameters
/// (`out_waiting` may be NULL), checked before any work is done.
struct Report {
    cb: Option<Callback>,
    out_outcome: Out<vsdk_run_outcome>,
    out_waiting: Option<Out<*mut vsdk_strings>>,
}

impl Report {
    fn new(
        events: vsdk_event_callback,
        user_data: *mut c_void,
        out_outcome: *mut vsdk_run_outcome,
        out_waiting: *mut *mut vsdk_strings,
    ) -> Result<Self, Error> {
        Ok(Self {
            out_outcome: out(out_outcome, "out_outcome")?,
            out_waiting: out(out_waiting, "out_waiting").ok(),
            cb: Callback::new(events, user_data),
        })
    }

    /// Writes an outcome and, when asked, the open approval requests.
    fn outcome(self, outcome: Outcome) -> Result<(), Error> {
        let (code, waiting) = match outcome {
            Outcome::Succeeded => (vsdk_run_outcome::Succeeded, Vec::new()),
            Outcome::Failed(_) => (vsdk_run_outcome::Failed, Vec::new()),
            Outcome::Waiting(requests) => (vsdk_run_outcome::Waiting, requests),
            Outcome::Paused => (vsdk_run_outcome::Paused, Vec::new()),
            // `Cancelled`, and any outcome a later pipeline-core adds, stops the run here.
            _ => (vsdk_run_outcome::Cancelled, Vec::new()),
        };
        let list = match &self.out_waiting {
            Some(_) => Some(vsdk_strings::from_strings(waiting)?),
            None => None,
        };
        self.out_outcome.put(code);
        if let (Some(slot), Some(list)) = (self.out_waiting, list) {
            slot.put(list.into_raw());
        }
        Ok(())
    }
}

/// Runs one call on the handle: one at a time, blocking on the handle's runtime.
fn call<T>(
    p: &vsdk_pipelines,
    f: impl AsyncFnOnce(&vsdk_pipelines) -> Result<T, Error>,
) -> Result<T, Error> {
    crate::boundary::not_nested()?;
    let _one = p.calls.lock().unwrap_or_else(PoisonError::into_inner);
    block_on(&p.rt, f(p))?
}

/// How a call moves a run on.
#[derive(Clone, Copy, Debug)]
enum Drive {
    /// From where its journal ends.
    On,
    /// After journaling that it resumes (a failed, cancelled or paused run).
    Resume,
}

/// The one driving call behind run, drive, approve and resume: drives `run` to its next stop
/// with its events on the report's callback, then writes how it stopped.
fn drive_run(p: &vsdk_pipelines, run: &str, how: Drive, report: Report) -> Result<(), Error> {
    let outcome = call(p, async |p| {
        let engine = &p.engine;
        let fut = async {
            match how {
                Drive::On => engine.drive(run).await,
                Drive::Resume => engine.resume(run).await,
            }
        };
        drive(engine, run, fut, report.cb.as_ref()).await
    })?;
    report.outcome(outcome)
}

/// The whole body of [`vsdk_pipeline_drive`] and [`vsdk_pipeline_resume`]: drives run `run`
/// on as `how` says.
///
/// # Safety
///
/// As [`vsdk_pipeline_drive`].
unsafe fn drive_on(
    pipelines: *const vsdk_pipelines,
    run: *const c_char,
    how: Drive,
    events: vsdk_event_callback,
    user_data: *mut c_void,
    out_outcome: *mut vsdk_run_outcome,
    out_waiting: *mut *mut vsdk_strings,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, run) = unsafe { (handle(pipelines, "pipelines")?, string(run, "run")?) };
        let report = Report::new(events, user_data, out_outcome, out_waiting)?;
        drive_run(p, run, how, report)
    })
}

/// The arguments [`vsdk_pipeline_start`] and [`vsdk_pipeline_run`] share, checked in order.
///
/// # Safety
///
/// As [`vsdk_pipeline_start`].
unsafe fn run_args<'a>(
    pipelines: *const vsdk_pipelines,
    pipeline: *const vsdk_pipeline,
    inputs: *const *const c_char,
    n_inputs: usize,
    user: *const c_char,
) -> Result<(&'a vsdk_pipelines, &'a vsdk_pipeline, Vec<&'a str>, &'a str), Error> {
    // SAFETY: as the caller guarantees.
    unsafe {
        Ok((
            handle(pipelines, "pipelines")?,
            handle(pipeline, "pipeline")?,
            strings(inputs, n_inputs, "inputs")?,
            string(user, "user")?,
        ))
    }
}

/// Creates a run of `def` with `inputs` (`"key=value"`) as `user`, journaled but not driven,
/// and returns its id. Its journaled events go to `cb`: subscribed before the run exists, so
/// its `created` event is forwarded too.
fn start_run(
    p: &vsdk_pipelines,
    def: &vsdk_pipeline,
    inputs: Vec<&str>,
    user: &str,
    cb: Option<&Callback>,
) -> Result<String, Error> {
    let map = input_map(inputs)?;
    call(p, async |p| {
        let work = p.state_dir.join("work");
        let mut events = p.engine.subscribe();
        let run = p.engine.start(&def.pipeline, map, user, &work).await?;
        while let Ok(ev) = events.try_recv() {
            forward(&run, &ev, cb);
        }
        Ok(run)
    })
}

/// The inputs `"key=value"` as a map.
fn input_map(inputs: Vec<&str>) -> Result<BTreeMap<String, String>, Error> {
    let mut map = BTreeMap::new();
    for kv in inputs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::invalid("inputs", format!("`{kv}` is not key=value")))?;
        map.insert(k.to_owned(), v.to_owned());
    }
    Ok(map)
}

/// Creates a run of `pipeline` as user `user` with inputs `inputs[0..n_inputs]`
/// (`"key=value"` strings), journaled but not driven yet: `*out_run` is its id (free it with
/// [`vsdk_string_free`](crate::vsdk_string_free)). Drive it with [`vsdk_pipeline_drive`]
/// (for instance on another thread, so this one can pause or cancel it). Its working
/// directory is under the state directory (`work/`). Unknown or missing mandatory inputs are
/// `VSDK_RESULT_INVALID_PIPELINE`.
///
/// # Safety
///
/// Handles NULL or live; strings NULL or NUL-terminated; `inputs` NULL (with `n_inputs` 0)
/// or `n_inputs` strings; `out_run` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_start(
    pipelines: *const vsdk_pipelines,
    pipeline: *const vsdk_pipeline,
    inputs: *const *const c_char,
    n_inputs: usize,
    user: *const c_char,
    out_run: *mut *mut c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, def, inputs, user) =
            unsafe { run_args(pipelines, pipeline, inputs, n_inputs, user)? };
        let out_run = out(out_run, "out_run")?;
        let run = start_run(p, def, inputs, user, None)?;
        out_run.put(owned_string(run)?);
        Ok(())
    })
}

/// Starts a run of `pipeline` ([`vsdk_pipeline_start`]) and drives it until it succeeds,
/// fails, is cancelled, pauses or waits for an approval, sending its events to `events` (may
/// be NULL).
///
/// On success (the call worked, whatever the run's outcome) `*out_run` is the run's id (free
/// it with [`vsdk_string_free`](crate::vsdk_string_free)), `*out_outcome` how it stopped,
/// and, if `out_waiting` is not NULL, `*out_waiting` a new list of the approval requests it
/// waits for (empty unless the outcome is `VSDK_RUN_OUTCOME_WAITING`).
///
/// # Safety
///
/// Handles NULL or live; strings NULL or NUL-terminated; `inputs` NULL (with `n_inputs` 0)
/// or `n_inputs` strings; out-parameters NULL or writable; `events` NULL or a function valid
/// during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_run(
    pipelines: *const vsdk_pipelines,
    pipeline: *const vsdk_pipeline,
    inputs: *const *const c_char,
    n_inputs: usize,
    user: *const c_char,
    events: vsdk_event_callback,
    user_data: *mut c_void,
    out_run: *mut *mut c_char,
    out_outcome: *mut vsdk_run_outcome,
    out_waiting: *mut *mut vsdk_strings,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, def, inputs, user) =
            unsafe { run_args(pipelines, pipeline, inputs, n_inputs, user)? };
        let out_run = out(out_run, "out_run")?;
        let report = Report::new(events, user_data, out_outcome, out_waiting)?;
        let run = start_run(p, def, inputs, user, report.cb.as_ref())?;
        let id = owned_string(run.as_str())?;
        if let Err(e) = drive_run(p, &run, Drive::On, report) {
            // SAFETY: made just above, never handed out.
            unsafe { crate::boundary::vsdk_string_free(id) };
            return Err(e);
        }
        out_run.put(id);
        Ok(())
    })
}

/// Drives run `run` from where its journal ends (a run made by [`vsdk_pipeline_start`], or one
/// a crash interrupted) as [`vsdk_pipeline_run`] does. A run another call is driving is
/// `VSDK_RESULT_INVALID_RUN_STATE`; a finished run reports how it finished.
///
/// # Safety
///
/// As [`vsdk_pipeline_run`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_drive(
    pipelines: *const vsdk_pipelines,
    run: *const c_char,
    events: vsdk_event_callback,
    user_data: *mut c_void,
    out_outcome: *mut vsdk_run_outcome,
    out_waiting: *mut *mut vsdk_strings,
) -> vsdk_result {
    // SAFETY: as the caller guarantees.
    unsafe {
        drive_on(
            pipelines,
            run,
            Drive::On,
            events,
            user_data,
            out_outcome,
            out_waiting,
        )
    }
}

/// Records the decision of `user` on approval request `request` of run `run` (`approve`
/// true to approve, false to reject; `comment` may be NULL), then drives the run on as
/// [`vsdk_pipeline_run`] does. A refused decision (the initiator approving their own run, a
/// user who is not an approver, an unknown request) is `VSDK_RESULT_APPROVAL_REFUSED`; an
/// unknown run `VSDK_RESULT_UNKNOWN_RUN`.
///
/// # Safety
///
/// As [`vsdk_pipeline_run`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_approve(
    pipelines: *const vsdk_pipelines,
    run: *const c_char,
    request: *const c_char,
    user: *const c_char,
    approve: bool,
    comment: *const c_char,
    events: vsdk_event_callback,
    user_data: *mut c_void,
    out_outcome: *mut vsdk_run_outcome,
    out_waiting: *mut *mut vsdk_strings,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, run, request, user, comment) = unsafe {
            (
                handle(pipelines, "pipelines")?,
                string(run, "run")?,
                string(request, "request")?,
                string(user, "user")?,
                crate::boundary::optional_string(comment, "comment")?.unwrap_or(""),
            )
        };
        let report = Report::new(events, user_data, out_outcome, out_waiting)?;
        call(p, async |p| {
            Ok(p.engine
                .decide(run, request, &Actor::user(user), approve, comment)
                .await?)
        })?;
        drive_run(p, run, Drive::On, report)
    })
}

/// Resumes run `run` (failed, cancelled, paused or interrupted) from where its journal ends,
/// without rerunning the tasks that succeeded, and drives it as [`vsdk_pipeline_run`] does.
///
/// # Safety
///
/// As [`vsdk_pipeline_run`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_resume(
    pipelines: *const vsdk_pipelines,
    run: *const c_char,
    events: vsdk_event_callback,
    user_data: *mut c_void,
    out_outcome: *mut vsdk_run_outcome,
    out_waiting: *mut *mut vsdk_strings,
) -> vsdk_result {
    // SAFETY: as the caller guarantees.
    unsafe {
        drive_on(
            pipelines,
            run,
            Drive::Resume,
            events,
            user_data,
            out_outcome,
            out_waiting,
        )
    }
}

/// Run control from any thread: not serialized with the handle's other calls (a pause or a
/// cancel must reach a run while another thread's call drives it), still refused inside a
/// callback.
fn control<T>(
    p: &vsdk_pipelines,
    f: impl AsyncFnOnce(&Engine) -> Result<T, Error>,
) -> Result<T, Error> {
    block_on(&p.rt, f(&p.engine))?
}

/// Asks run `run` to pause (`reason` may be NULL). The request is journaled: running tasks
/// finish, nothing new starts, and the call driving the run (on another thread, or the next
/// one: a run parked on approvals pauses when it is driven on) returns
/// `VSDK_RUN_OUTCOME_PAUSED`. Continue with [`vsdk_pipeline_resume`].
///
/// It may be called from any thread while another thread's call drives the run (not from a
/// callback: `VSDK_RESULT_REENTRANT`). An unknown run is `VSDK_RESULT_UNKNOWN_RUN`; a finished
/// one `VSDK_RESULT_INVALID_RUN_STATE`.
///
/// # Safety
///
/// `pipelines` NULL or a live handle; strings NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_pause(
    pipelines: *const vsdk_pipelines,
    run: *const c_char,
    reason: *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, run, reason) = unsafe {
            (
                handle(pipelines, "pipelines")?,
                string(run, "run")?,
                crate::boundary::optional_string(reason, "reason")?
                    .unwrap_or("paused through the C API"),
            )
        };
        control(p, async |engine| Ok(engine.pause(run, reason).await?))
    })
}

/// Cancels run `run` (`reason` may be NULL): gracefully (running tasks get SIGTERM and a
/// grace period; `finally` tasks still run) or, with `hard`, at once (running tasks are
/// killed). The request is journaled; the call driving the run (on another thread) returns
/// `VSDK_RUN_OUTCOME_CANCELLED`. A run that no call drives (parked on approvals, or paused) is
/// finished here, so its status is `VSDK_RUN_STATUS_CANCELLED` when this returns.
///
/// It may be called from any thread while another thread's call drives the run (not from a
/// callback: `VSDK_RESULT_REENTRANT`). An unknown run is `VSDK_RESULT_UNKNOWN_RUN`; a finished
/// one `VSDK_RESULT_INVALID_RUN_STATE`.
///
/// # Safety
///
/// `pipelines` NULL or a live handle; strings NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_cancel(
    pipelines: *const vsdk_pipelines,
    run: *const c_char,
    hard: bool,
    reason: *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, run, reason) = unsafe {
            (
                handle(pipelines, "pipelines")?,
                string(run, "run")?,
                crate::boundary::optional_string(reason, "reason")?
                    .unwrap_or("cancelled through the C API"),
            )
        };
        control(p, async |engine| {
            engine.cancel(run, hard, reason).await?;
            let state = engine.status(run).await?;
            if matches!(state.status, RunStatus::Waiting | RunStatus::Paused) {
                // Nothing drives a parked or paused run: finish it here. A call that started
                // driving it meanwhile stops it itself.
                match engine.drive(run).await {
                    Ok(_) | Err(pipeline_core::Error::InvalidState { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
    })
}

/// The status of run `run`: `*out_status`, and, if `out_json` is not NULL, `*out_json` the
/// whole state as a JSON document (tasks, gates, approvals with their audit trail; free it
/// with [`vsdk_string_free`](crate::vsdk_string_free)). An unknown run is
/// `VSDK_RESULT_UNKNOWN_RUN`.
///
/// # Safety
///
/// `pipelines` NULL or a live handle; `run` NULL or NUL-terminated; out-parameters NULL or
/// writable (`out_json` may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_pipeline_status(
    pipelines: *const vsdk_pipelines,
    run: *const c_char,
    out_status: *mut vsdk_run_status,
    out_json: *mut *mut c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (p, run) = unsafe { (handle(pipelines, "pipelines")?, string(run, "run")?) };
        let out_status = out(out_status, "out_status")?;
        let out_json = out(out_json, "out_json").ok();
        let state = call(p, async |p| Ok(p.engine.status(run).await?))?;
        let status = match state.status {
            RunStatus::Running => vsdk_run_status::Running,
            RunStatus::Waiting => vsdk_run_status::Waiting,
            RunStatus::Paused => vsdk_run_status::Paused,
            RunStatus::Succeeded => vsdk_run_status::Succeeded,
            RunStatus::Failed => vsdk_run_status::Failed,
            _ => vsdk_run_status::Cancelled,
        };
        if let Some(slot) = out_json {
            let json = serde_json::to_string_pretty(&state)
                .map_err(|e| Error::invalid("run state", e.to_string()))?;
            slot.put(owned_string(json)?);
        }
        out_status.put(status);
        Ok(())
    })
}
