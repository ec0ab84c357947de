//! The `pipeline-run` command line, as library code: the example binary is a thin wrapper
//! over [`main`], and tests drive it in-process or in a child process.
//!
//! ```text
//! pipeline-run FILE [--input k=v]... [--state-dir DIR] [--user NAME]
//! pipeline-run approve RUN REQUEST [--user NAME] [--group G]... [--reject] [--comment TEXT]
//!                                  [--state-dir DIR]
//! pipeline-run resume RUN [--state-dir DIR]
//! pipeline-run pause RUN [--reason TEXT] [--state-dir DIR]
//! pipeline-run cancel RUN [--hard] [--reason TEXT] [--state-dir DIR]
//! pipeline-run status RUN [--json] [--state-dir DIR]
//! (every command also takes --journal CONNINFO)
//! ```
//!
//! State (the journal, working directories, the artifact repository, provenance statements)
//! lives in `--state-dir` (default `.pipeline-state`). Every command also takes
//! `--journal CONNINFO` to keep the journal in PostgreSQL instead (feature `postgres`; a libpq
//! connection string such as `host=/run/postgresql dbname=pipelines`, or
//! `postgresql://ci@db/pipelines`: prefer peer or trust authentication over a local socket, as
//! a password on the command line is visible to other users of the machine). A run that waits for an approval holds no
//! process: the command exits with status 3 and `approve` continues it. `pause` and `cancel`
//! journal a request: the process driving the run (if any) notices it within a fraction of a
//! second; a paused run continues with `resume`; cancelling a run that no process drives (parked
//! or paused) finishes it here. A run that failed, or whose process was killed, continues with
//! `resume` from where its journal ends, without rerunning the tasks that succeeded.
//!
//! Exit status: 0 succeeded (or the request was recorded), 1 failed, cancelled or an error,
//! 2 usage error, 3 waiting for approval, 4 paused.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::approval::Actor;
use crate::artifact::{self, ArtifactRef, ArtifactStore};
use crate::engine::{Engine, Outcome, RunEvent};
use crate::journal::{JournalStore, Record, RunStatus, Timestamp};
use crate::load::load_pipeline;

/// The usage text.
pub const USAGE: &str = "usage:
  pipeline-run FILE [--input k=v]... [--state-dir DIR] [--user NAME]
  pipeline-run approve RUN REQUEST [--user NAME] [--group G]... [--reject] [--comment TEXT] [--state-dir DIR]
  pipeline-run resume RUN [--state-dir DIR]
  pipeline-run pause RUN [--reason TEXT] [--state-dir DIR]
  pipeline-run cancel RUN [--hard] [--reason TEXT] [--state-dir DIR]
  pipeline-run status RUN [--json] [--state-dir DIR]
every command also takes --journal CONNINFO (a PostgreSQL journal; feature `postgres`)";

/// Exit status: the run succeeded, or the request was recorded.
pub const EXIT_OK: u8 = 0;
/// Exit status: the run failed or was cancelled, or the command failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the run waits for an approval.
pub const EXIT_WAITING: u8 = 3;
/// Exit status: the run is paused.
pub const EXIT_PAUSED: u8 = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Default)]
struct Args {
    positional: Vec<String>,
    inputs: BTreeMap<String, String>,
    state_dir: Option<PathBuf>,
    journal: Option<String>,
    user: Option<String>,
    groups: Vec<String>,
    reject: bool,
    hard: bool,
    comment: String,
    reason: Option<String>,
    json: bool,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--input" => {
                let kv = value("--input")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--input takes k=v, not `{kv}`"))?;
                a.inputs.insert(k.to_owned(), v.to_owned());
            }
            "--state-dir" => a.state_dir = Some(PathBuf::from(value("--state-dir")?)),
            "--journal" => a.journal = Some(value("--journal")?),
            "--user" => a.user = Some(value("--user")?),
            "--group" => a.groups.push(value("--group")?),
            "--comment" => a.comment = value("--comment")?,
            "--reason" => a.reason = Some(value("--reason")?),
            "--reject" => a.reject = true,
            "--hard" => a.hard = true,
            "--json" => a.json = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => a.positional.push(arg),
        }
    }
    Ok(a)
}

struct Env {
    engine: Engine,
    artifacts: Arc<dyn ArtifactStore>,
    state_dir: PathBuf,
}

#[cfg_attr(
    not(feature = "postgres"),
    expect(clippy::unused_async, reason = "only the PostgreSQL journal connects")
)]
async fn env(state_dir: &Path, journal: Option<&str>) -> Result<Env, BoxError> {
    let journal: Option<Arc<dyn JournalStore>> = match journal {
        None => None,
        #[cfg(feature = "postgres")]
        Some(conninfo) => {
            let store: Arc<dyn JournalStore> =
                Arc::new(crate::journal::PgStore::connect(conninfo).await?);
            Some(store)
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => {
            return Err(crate::Error::Unsupported {
                feature: "--journal (a PostgreSQL journal needs the feature `postgres`)",
            }
            .into());
        }
    };
    let engine = Engine::local(state_dir, journal)?.build();
    let artifacts = Arc::clone(
        engine
            .artifacts()
            .ok_or("the local engine has no artifact repository")?,
    );
    Ok(Env {
        engine,
        artifacts,
        state_dir: state_dir.to_path_buf(),
    })
}

/// One line describing a journaled transition (`None` for the quiet ones).
pub fn describe(ev: &RunEvent) -> Option<String> {
    Some(match &ev.record {
        Record::RunCreated { initiator, .. } => format!("run {} created by {initiator}", ev.run),
        Record::GateOpened { gate } => format!("gate {gate} opened"),
        Record::GatePassed { gate } => format!("gate {gate} passed"),
        Record::GateFailed { gate, reason } => format!("gate {gate} FAILED: {reason}"),
        Record::ApprovalRequested {
            request, policy, ..
        } => format!(
            "approval {request} requested from {} (quorum {})",
            policy
                .approvers
                .iter()
                .chain(policy.groups.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            policy.quorum
        ),
        Record::ApprovalDecided {
            request,
            actor,
            approved,
            ..
        } => format!(
            "approval {request} {} by {actor}",
            if *approved { "approved" } else { "rejected" }
        ),
        Record::AttemptStarted {
            stage,
            task,
            attempt,
            ..
        } => format!("task {stage}.{task} attempt {attempt} started"),
        Record::RetryScheduled { stage, task, .. } => format!("task {stage}.{task} will retry"),
        Record::TaskFinished {
            stage,
            task,
            status,
            message,
            ..
        } => {
            let why = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            format!("task {stage}.{task} {}{why}", status.as_str())
        }
        Record::Parked { requests } => format!("parked, waiting for {}", requests.join(", ")),
        Record::RunFinished { status, message } => format!("run finished {status:?} {message}"),
        Record::Resumed => "run resumed".to_owned(),
        Record::CancelRequested { reason, .. } => format!("cancel requested: {reason}"),
        Record::PauseRequested { reason } => format!("pause requested: {reason}"),
        Record::Paused => "run paused".to_owned(),
        _ => return None,
    })
}

async fn drive_and_report(
    env: &Env,
    run: &str,
    fut: impl Future<Output = Result<Outcome, crate::Error>>,
    out: &mut dyn Write,
) -> Result<u8, BoxError> {
    let mut events = env.engine.subscribe();
    let print = |out: &mut dyn Write, ev: &RunEvent| {
        if ev.run == run
            && let Some(line) = describe(ev)
        {
            let _ = writeln!(out, "  [{:>3}] {line}", ev.version);
            let _ = out.flush();
        }
    };
    tokio::pin!(fut);
    let outcome = loop {
        tokio::select! {
            biased;
            ev = events.recv() => {
                if let Ok(ev) = ev {
                    print(out, &ev);
                }
            }
            o = &mut fut => break o,
        }
    };
    while let Ok(ev) = events.try_recv() {
        print(out, &ev);
    }
    Ok(match outcome? {
        Outcome::Succeeded => {
            let path = write_provenance(env, run).await?;
            let _ = writeln!(out, "run {run} SUCCEEDED; provenance: {}", path.display());
            EXIT_OK
        }
        Outcome::Failed(why) => {
            let _ = writeln!(
                out,
                "run {run} FAILED: {why}\n(fix the cause, then: pipeline-run resume {run})"
            );
            EXIT_FAILED
        }
        Outcome::Cancelled(why) => {
            let _ = writeln!(out, "run {run} CANCELLED: {why}");
            EXIT_FAILED
        }
        Outcome::Waiting(requests) => {
            let _ = writeln!(
                out,
                "run {run} is WAITING for approval; no process is held. Approve with:"
            );
            for r in requests {
                let _ = writeln!(out, "  pipeline-run approve {run} {r} --user NAME");
            }
            EXIT_WAITING
        }
        Outcome::Paused => {
            let _ = writeln!(
                out,
                "run {run} PAUSED; continue with: pipeline-run resume {run}"
            );
            EXIT_PAUSED
        }
    })
}

/// Writes the run's in-toto/SLSA provenance with the artifacts it published as subjects.
async fn write_provenance(env: &Env, run: &str) -> Result<PathBuf, BoxError> {
    let state = env.engine.status(run).await?;
    let pipeline = load_pipeline(&state.pipeline, env.engine.registry())?;
    let mut subjects: Vec<ArtifactRef> = Vec::new();
    for stage in &pipeline.stages {
        for t in &stage.tasks {
            if t.kind == "Publish" || t.kind == "Promote" {
                let outputs = state.task(&stage.name, &t.name).outputs;
                if let Ok(r) = serde_json::from_value::<ArtifactRef>(outputs) {
                    subjects.push(r);
                }
            }
        }
    }
    for s in &subjects {
        // Check the subjects really are in the repository, by digest.
        env.artifacts.fetch(&s.digest).await?;
    }
    let statement = artifact::provenance(&state, &pipeline.name, &subjects, "pipeline-run");
    let dir = env.state_dir.join("provenance");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{run}.intoto.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&statement)?)?;
    Ok(path)
}

fn user(a: &Args) -> String {
    a.user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "anonymous".to_owned())
}

async fn status(env: &Env, run: &str, json: bool, out: &mut dyn Write) -> Result<u8, BoxError> {
    let st = env.engine.status(run).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
        return Ok(EXIT_OK);
    }
    writeln!(out, "run {run}: {:?} {}", st.status, st.message)?;
    writeln!(
        out,
        "  started by {} (journal version {})",
        st.initiator, st.version
    )?;
    for ((stage, task), t) in &st.tasks {
        writeln!(
            out,
            "  task {stage}.{task}: {} (attempts: {}) {}",
            t.status.as_str(),
            t.last_attempt,
            t.message
        )?;
    }
    for (gate, g) in &st.gates {
        let state = match &g.outcome {
            None => "open".to_owned(),
            Some(None) => "passed".to_owned(),
            Some(Some(r)) => format!("failed: {r}"),
        };
        writeln!(out, "  gate {gate}: {state}")?;
    }
    for (req, a) in &st.approvals {
        let s = crate::approval::status(a, Timestamp::now());
        writeln!(out, "  approval {req}: {s:?}")?;
        for d in &a.audit {
            writeln!(
                out,
                "    {} {} at {}: {}",
                d.actor,
                if d.approved { "approved" } else { "rejected" },
                d.at.to_chrono().to_rfc3339(),
                d.comment
            )?;
        }
    }
    Ok(EXIT_OK)
}

async fn cancel(env: &Env, a: &Args, run: &str, out: &mut dyn Write) -> Result<u8, BoxError> {
    let reason = a
        .reason
        .clone()
        .unwrap_or_else(|| format!("cancelled by {}", user(a)));
    env.engine.cancel(run, a.hard, &reason).await?;
    let st = env.engine.status(run).await?;
    if matches!(st.status, RunStatus::Waiting | RunStatus::Paused) {
        // No process drives a parked or paused run: finish it here (`finally` still runs
        // after a graceful cancel).
        writeln!(out, "cancel of run {run} recorded; finishing it")?;
        return drive_and_report(env, run, env.engine.drive(run), out).await;
    }
    writeln!(
        out,
        "cancel of run {run} recorded; the process driving it stops it (if none does: \
         pipeline-run resume {run})"
    )?;
    Ok(EXIT_OK)
}

async fn pause(env: &Env, a: &Args, run: &str, out: &mut dyn Write) -> Result<u8, BoxError> {
    let reason = a
        .reason
        .clone()
        .unwrap_or_else(|| format!("paused by {}", user(a)));
    env.engine.pause(run, &reason).await?;
    writeln!(
        out,
        "pause of run {run} recorded: running tasks finish, nothing new starts; continue with: \
         pipeline-run resume {run}"
    )?;
    Ok(EXIT_OK)
}

async fn dispatch(a: Args, out: &mut dyn Write) -> Result<u8, BoxError> {
    let known = matches!(
        a.positional.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["approve", _, _] | ["resume" | "status" | "cancel" | "pause", _] | [_]
    );
    if !known {
        // Before anything is created on disk.
        return Ok(EXIT_USAGE);
    }
    let state_dir = a
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".pipeline-state"));
    let env = env(&state_dir, a.journal.as_deref()).await?;
    match a.positional.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["approve", run, request] => {
            let actor = Actor {
                name: user(&a),
                groups: a.groups.clone(),
            };
            env.engine
                .decide(run, request, &actor, !a.reject, &a.comment)
                .await?;
            writeln!(
                out,
                "{} {} {request} of run {run}",
                actor.name,
                if a.reject { "rejected" } else { "approved" }
            )?;
            drive_and_report(&env, run, env.engine.drive(run), out).await
        }
        ["resume", run] => drive_and_report(&env, run, env.engine.resume(run), out).await,
        ["status", run] => status(&env, run, a.json, out).await,
        ["cancel", run] => cancel(&env, &a, run, out).await,
        ["pause", run] => pause(&env, &a, run, out).await,
        [file] => {
            let yaml =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
            let pipeline = load_pipeline(&yaml, env.engine.registry())?;
            let work = std::path::absolute(state_dir.join("work"))?;
            let run = env
                .engine
                .start(&pipeline, a.inputs.clone(), &user(&a), &work)
                .await?;
            writeln!(out, "run {run} of pipeline {} started", pipeline.name)?;
            drive_and_report(&env, &run, env.engine.drive(&run), out).await
        }
        _ => Ok(EXIT_USAGE),
    }
}

/// Runs `pipeline-run` with these arguments (without the program's name): reports go to
/// `out`, errors and usage to `err`. Returns the exit status (see the module docs).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// let code = pipeline_core::cli::main(["--bogus".to_owned()], &mut out, &mut err).await;
/// assert_eq!(code, pipeline_core::cli::EXIT_USAGE);
/// assert!(String::from_utf8(err).unwrap().contains("unknown option --bogus"));
/// # });
/// ```
pub async fn main(
    args: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let a = match parse(args.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                let _ = writeln!(err, "{e}");
            }
            let _ = writeln!(err, "{USAGE}");
            return EXIT_USAGE;
        }
    };
    match dispatch(a, out).await {
        Ok(EXIT_USAGE) => {
            let _ = writeln!(err, "{USAGE}");
            EXIT_USAGE
        }
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_bad_ones_are_refused() {
        let a = parse(
            [
                "cancel",
                "r1",
                "--hard",
                "--reason",
                "why",
                "--state-dir",
                "/s",
                "--input",
                "k=v",
            ]
            .into_iter()
            .map(str::to_owned),
        )
        .unwrap();
        assert_eq!(a.positional, ["cancel", "r1"]);
        assert!(a.hard);
        assert_eq!(a.reason.as_deref(), Some("why"));
        assert_eq!(a.state_dir, Some(PathBuf::from("/s")));
        assert_eq!(a.inputs.get("k").map(String::as_str), Some("v"));
        let e = parse(["--input", "novalue"].into_iter().map(str::to_owned)).unwrap_err();
        assert!(e.contains("k=v"), "{e}");
        let e = parse(["--reason"].into_iter().map(str::to_owned)).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
    }
}
