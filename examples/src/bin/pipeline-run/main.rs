//! `pipeline-run`: runs Code Stream-style pipelines durably from the command line.
//!
//! ```text
//! pipeline-run FILE [--input k=v]... [--state-dir DIR] [--user NAME]
//! pipeline-run approve RUN REQUEST [--user NAME] [--group G]... [--reject] [--comment TEXT]
//!                                  [--state-dir DIR]
//! pipeline-run resume RUN [--state-dir DIR]
//! pipeline-run status RUN [--json] [--state-dir DIR]
//! ```
//!
//! State (the journal, working directories, the artifact repository, provenance statements)
//! lives in `--state-dir` (default `.pipeline-state`). A run that waits for an approval holds no
//! process: `pipeline-run` exits with status 3 and `approve` continues it. A run that failed,
//! or whose process was killed, continues with `resume` from where its journal ends, without
//! rerunning the tasks that succeeded.
//!
//! Exit status: 0 succeeded, 1 failed or cancelled, 2 usage error, 3 waiting for approval,
//! 4 paused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use pipeline_core::approval::Actor;
use pipeline_core::artifact::{self, ArtifactRef, ArtifactStore, LocalStore};
use pipeline_core::engine::{Engine, Outcome, RunEvent};
use pipeline_core::journal::{FileStore, Record};
use pipeline_core::load::load_pipeline;
use pipeline_core::task::TaskRegistry;

const USAGE: &str = "usage:
  pipeline-run FILE [--input k=v]... [--state-dir DIR] [--user NAME]
  pipeline-run approve RUN REQUEST [--user NAME] [--group G]... [--reject] [--comment TEXT] [--state-dir DIR]
  pipeline-run resume RUN [--state-dir DIR]
  pipeline-run status RUN [--json] [--state-dir DIR]";

#[derive(Debug, Default)]
struct Args {
    positional: Vec<String>,
    inputs: BTreeMap<String, String>,
    state_dir: Option<PathBuf>,
    user: Option<String>,
    groups: Vec<String>,
    reject: bool,
    comment: String,
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
            "--user" => a.user = Some(value("--user")?),
            "--group" => a.groups.push(value("--group")?),
            "--comment" => a.comment = value("--comment")?,
            "--reject" => a.reject = true,
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

fn env(state_dir: &Path) -> Result<Env, Box<dyn std::error::Error>> {
    let journal = Arc::new(FileStore::open(state_dir.join("journal"))?);
    let artifacts: Arc<dyn ArtifactStore> =
        Arc::new(LocalStore::open(state_dir.join("artifacts"))?);
    let mut registry = TaskRegistry::builtin();
    artifact::register_kinds(&mut registry, &artifacts);
    let engine = Engine::builder(journal, registry)
        .artifacts(Arc::clone(&artifacts))
        .build();
    Ok(Env {
        engine,
        artifacts,
        state_dir: state_dir.to_path_buf(),
    })
}

fn describe(ev: &RunEvent) -> Option<String> {
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
                .chain(policy.groups.iter().map(|g| g as &String))
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
        _ => return None,
    })
}

async fn drive_and_report(
    env: &Env,
    run: &str,
    fut: impl Future<Output = Result<Outcome, pipeline_core::Error>>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut events = env.engine.subscribe();
    let print = |ev: &RunEvent| {
        if let Some(line) = describe(ev) {
            println!("  [{:>3}] {line}", ev.version);
        }
    };
    tokio::pin!(fut);
    let outcome = loop {
        tokio::select! {
            biased;
            ev = events.recv() => {
                if let Ok(ev) = ev {
                    print(&ev);
                }
            }
            o = &mut fut => break o,
        }
    };
    while let Ok(ev) = events.try_recv() {
        print(&ev);
    }
    let outcome = outcome?;
    Ok(match outcome {
        Outcome::Succeeded => {
            let path = write_provenance(env, run).await?;
            println!("run {run} SUCCEEDED; provenance: {}", path.display());
            ExitCode::SUCCESS
        }
        Outcome::Failed(why) => {
            println!("run {run} FAILED: {why}\n(fix the cause, then: pipeline-run resume {run})");
            ExitCode::FAILURE
        }
        Outcome::Cancelled(why) => {
            println!("run {run} CANCELLED: {why}");
            ExitCode::FAILURE
        }
        Outcome::Waiting(requests) => {
            println!("run {run} is WAITING for approval; no process is held. Approve with:");
            for r in requests {
                println!("  pipeline-run approve {run} {r} --user NAME");
            }
            ExitCode::from(3)
        }
        Outcome::Paused => {
            println!("run {run} PAUSED");
            ExitCode::from(4)
        }
        other => {
            println!("run {run}: {other:?}");
            ExitCode::FAILURE
        }
    })
}

/// Writes the run's in-toto/SLSA provenance with the artifacts it published as subjects.
async fn write_provenance(env: &Env, run: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
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

async fn status(env: &Env, run: &str, json: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let st = env.engine.status(run).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("run {run}: {:?} {}", st.status, st.message);
    println!(
        "  started by {} (journal version {})",
        st.initiator, st.version
    );
    for ((stage, task), t) in &st.tasks {
        println!(
            "  task {stage}.{task}: {} (attempts: {}) {}",
            t.status.as_str(),
            t.last_attempt,
            t.message
        );
    }
    for (gate, g) in &st.gates {
        let state = match &g.outcome {
            None => "open".to_owned(),
            Some(None) => "passed".to_owned(),
            Some(Some(r)) => format!("failed: {r}"),
        };
        println!("  gate {gate}: {state}");
    }
    for (req, a) in &st.approvals {
        let s = pipeline_core::approval::status(a, pipeline_core::journal::Timestamp::now());
        println!("  approval {req}: {s:?}");
        for d in &a.audit {
            println!(
                "    {} {} at {}: {}",
                d.actor,
                if d.approved { "approved" } else { "rejected" },
                d.at.to_chrono().to_rfc3339(),
                d.comment
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn main_async(a: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let state_dir = a
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".pipeline-state"));
    let env = env(&state_dir)?;
    match a.positional.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["approve", run, request] => {
            let actor = Actor {
                name: user(&a),
                groups: a.groups.clone(),
            };
            env.engine
                .decide(run, request, &actor, !a.reject, &a.comment)
                .await?;
            println!(
                "{} {} {request} of run {run}",
                actor.name,
                if a.reject { "rejected" } else { "approved" }
            );
            drive_and_report(&env, run, env.engine.drive(run)).await
        }
        ["resume", run] => drive_and_report(&env, run, env.engine.resume(run)).await,
        ["status", run] => status(&env, run, a.json).await,
        [file] => {
            let yaml =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
            let pipeline = load_pipeline(&yaml, env.engine.registry())?;
            let work = std::path::absolute(state_dir.join("work"))?;
            let run = env
                .engine
                .start(&pipeline, a.inputs.clone(), &user(&a), &work)
                .await?;
            println!("run {run} of pipeline {} started", pipeline.name);
            drive_and_report(&env, &run, env.engine.drive(&run)).await
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
