//! Crash tests: a real engine process is killed (SIGKILL) at every step of a run, then
//! restarted; the run must finish, no task that had succeeded may run again, and deadlines
//! must hold across the restart.
//!
//! The engine process is this test binary itself, re-executed to run only
//! `child_process_entry` with the `PIPELINE_CORE_CRASH_CHILD` environment variable set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pipeline_core::Error;
use pipeline_core::engine::Engine;
use pipeline_core::journal::{
    AttemptOutcome, Entry, FileStore, JournalStore, Record, RunStatus, TaskStatus,
};
use pipeline_core::load::load_pipeline;
use pipeline_core::task::TaskRegistry;

const CHILD_ENV: &str = "PIPELINE_CORE_CRASH_CHILD";

const PIPELINE: &str = r#"
kind: PIPELINE
name: crashy
stageOrder: [Build, Ship]
stages:
  Build:
    taskOrder: [a, "b,c"]
    tasks:
      a:
        type: Shell
        input:
          script: echo "Build.a $PIPELINE_IDEMPOTENCY_KEY" >> ../exec.log
      b:
        type: Shell
        input:
          script: echo "Build.b $PIPELINE_IDEMPOTENCY_KEY" >> ../exec.log
      c:
        type: Shell
        input:
          script: echo "Build.c $PIPELINE_IDEMPOTENCY_KEY" >> ../exec.log
  Ship:
    entryGate:
      rules:
        - {type: condition, condition: '${Build.c.output.exitCode} == 0'}
    taskOrder: [d]
    tasks:
      d:
        type: Shell
        input:
          script: echo "Ship.d $PIPELINE_IDEMPOTENCY_KEY" >> ../exec.log
finally:
  taskOrder: [e]
  tasks:
    e:
      type: Shell
      input:
        script: echo "finally.e $PIPELINE_IDEMPOTENCY_KEY" >> ../exec.log
"#;

const SLOW: &str = r"
kind: PIPELINE
name: slow
stageOrder: [S]
stages:
  S:
    taskOrder: [slow]
    tasks:
      slow:
        type: Shell
        retry: {attempts: 5, backoffSeconds: 0}
        timeout: {totalSeconds: 3}
        input:
          script: sleep 30
";

/// A file store that kills its own process (SIGKILL) right after its N-th append is durable.
struct KillAfter {
    inner: FileStore,
    appends: AtomicU64,
    kill_at: Option<u64>,
    count_file: PathBuf,
}

#[async_trait]
impl JournalStore for KillAfter {
    async fn append(&self, run: &str, expected: u64, entries: Vec<Entry>) -> Result<u64, Error> {
        let v = self.inner.append(run, expected, entries).await?;
        let n = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        std::fs::write(&self.count_file, n.to_string()).unwrap();
        if self.kill_at == Some(n) {
            let _ = Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(60));
        }
        Ok(v)
    }
    async fn read(&self, run: &str) -> Result<Vec<Entry>, Error> {
        self.inner.read(run).await
    }
    async fn runs(&self) -> Result<Vec<String>, Error> {
        self.inner.runs().await
    }
}

/// The engine process: starts the run, or reconciles the one it finds. Only does anything
/// when re-executed by a test below with `PIPELINE_CORE_CRASH_CHILD` set.
#[test]
fn child_process_entry() {
    let Ok(state) = std::env::var(CHILD_ENV) else {
        return;
    };
    let state = PathBuf::from(state);
    let yaml = std::env::var("PC_PIPELINE").unwrap();
    let kill_at = std::env::var("PC_KILL_AT").ok().map(|s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(KillAfter {
            inner: FileStore::open(state.join("journal")).unwrap(),
            appends: AtomicU64::new(0),
            kill_at,
            count_file: state.join("appends"),
        });
        let engine = Engine::builder(store.clone(), TaskRegistry::builtin())
            .grace(Duration::from_millis(500))
            .build();
        if store.runs().await.unwrap().is_empty() {
            let p = load_pipeline(&yaml, engine.registry()).unwrap();
            let run = engine
                .start(&p, BTreeMap::new(), "ci", &state.join("work"))
                .await
                .unwrap();
            engine.drive(&run).await.unwrap();
        } else {
            engine.reconcile().await.unwrap();
            for run in store.runs().await.unwrap() {
                let st = engine.status(&run).await.unwrap();
                assert!(st.status.is_terminal(), "{run} is {:?}", st.status);
            }
        }
    });
}

fn engine_process(state: &Path, yaml: &str, kill_at: Option<u64>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_process_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, state)
    .env("PC_PIPELINE", yaml)
    .current_dir(state)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(n) = kill_at {
        cmd.env("PC_KILL_AT", n.to_string());
    }
    cmd
}

fn journal(state: &Path) -> Vec<Entry> {
    if !state.join("journal/log").exists() {
        return Vec::new();
    }
    let store = FileStore::open(state.join("journal")).unwrap();
    block_on(async {
        match store.runs().await.unwrap().first() {
            Some(run) => store.read(run).await.unwrap(),
            None => Vec::new(),
        }
    })
}

/// Runs a future to completion on a runtime of its own (callable from async tests too).
fn block_on<T: Send>(f: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        })
        .join()
        .unwrap()
    })
}

fn succeeded_tasks(entries: &[Entry]) -> BTreeSet<String> {
    entries
        .iter()
        .filter_map(|e| match &e.record {
            Record::TaskFinished {
                stage,
                task,
                status: TaskStatus::Succeeded,
                ..
            } => Some(format!("{stage}.{task}")),
            _ => None,
        })
        .collect()
}

fn fresh(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pc-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn killed_at_every_step_the_run_resumes_without_rerunning_succeeded_tasks() {
    // A clean run tells how many durable appends a run makes.
    let reference = fresh("reference");
    let status = engine_process(&reference, PIPELINE, None).status().unwrap();
    assert!(status.success());
    let total: u64 = std::fs::read_to_string(reference.join("appends"))
        .unwrap()
        .parse()
        .unwrap();
    // Five tasks, each started (with its first attempt) and finished in two appends, a gate
    // and the run's end: at least a dozen points to kill at.
    assert!(total >= 12, "{total}");

    for kill_at in 1..=total {
        let state = fresh(&format!("step{kill_at}"));
        let status = engine_process(&state, PIPELINE, Some(kill_at))
            .status()
            .unwrap();
        assert!(
            !status.success(),
            "the engine should have been killed at append {kill_at}"
        );
        let before = journal(&state);
        let done_before = succeeded_tasks(&before);

        let status = engine_process(&state, PIPELINE, None).status().unwrap();
        assert!(status.success(), "restart after kill at {kill_at} failed");
        let after = journal(&state);
        let finished = after.iter().any(|e| {
            matches!(
                e.record,
                Record::RunFinished {
                    status: RunStatus::Succeeded,
                    ..
                }
            )
        });
        assert!(finished, "run not finished after kill at {kill_at}");

        let log = std::fs::read_to_string(state.join("work/exec.log")).unwrap_or_default();
        let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in log.lines() {
            let (task, key) = line.split_once(' ').unwrap();
            runs.entry(task.to_owned())
                .or_default()
                .push(key.to_owned());
        }
        for task in ["Build.a", "Build.b", "Build.c", "Ship.d", "finally.e"] {
            let keys = runs.get(task).cloned().unwrap_or_default();
            assert!(!keys.is_empty(), "{task} never ran (kill at {kill_at})");
            let unique: BTreeSet<&String> = keys.iter().collect();
            assert_eq!(
                unique.len(),
                keys.len(),
                "an idempotency key ran twice: {keys:?}"
            );
            if done_before.contains(task) {
                assert_eq!(
                    keys.len(),
                    1,
                    "{task} had succeeded but ran again (kill at {kill_at})"
                );
            }
        }
        // Every attempt the journal started was either finished, or recorded as interrupted
        // by the restarted engine.
        let interrupted = after
            .iter()
            .filter(|e| {
                matches!(
                    e.record,
                    Record::AttemptFinished {
                        outcome: AttemptOutcome::Interrupted,
                        ..
                    }
                )
            })
            .count();
        let running_at_kill = before
            .iter()
            .filter(|e| matches!(e.record, Record::AttemptStarted { .. }))
            .count()
            - before
                .iter()
                .filter(|e| matches!(e.record, Record::AttemptFinished { .. }))
                .count();
        assert_eq!(interrupted, running_at_kill, "kill at {kill_at}");
        let _ = std::fs::remove_dir_all(&state);
    }
}

#[test]
fn deadlines_hold_across_a_kill() {
    let state = fresh("deadline");
    let mut child = engine_process(&state, SLOW, None).spawn().unwrap();
    let started = Instant::now();
    // Wait until the first attempt is running, then kill the engine.
    while !journal(&state)
        .iter()
        .any(|e| matches!(e.record, Record::AttemptStarted { .. }))
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let restarted = Instant::now();
    let status = engine_process(&state, SLOW, None).status().unwrap();
    assert!(status.success());
    let took = restarted.elapsed();

    let entries = journal(&state);
    let deadline = entries
        .iter()
        .find_map(|e| match &e.record {
            Record::TaskStarted { deadline, .. } => *deadline,
            _ => None,
        })
        .expect("the total deadline is journaled");
    let (finished_at, status) = entries
        .iter()
        .find_map(|e| match &e.record {
            Record::TaskFinished { status, .. } => Some((e.at, *status)),
            _ => None,
        })
        .unwrap();
    assert_eq!(status, TaskStatus::TimedOut);
    // The restarted engine kept the original deadline: it did not grant a fresh 3 s.
    assert!(
        finished_at.0 <= deadline.0 + 1000,
        "finished {} ms after the deadline",
        finished_at.0 - deadline.0
    );
    assert!(took < Duration::from_millis(2900), "{took:?}");
    let second_attempt_deadline = entries.iter().find_map(|e| match &e.record {
        Record::AttemptStarted {
            attempt: 2,
            deadline,
            ..
        } => *deadline,
        _ => None,
    });
    assert_eq!(second_attempt_deadline, Some(deadline));
    assert!(entries.iter().any(|e| matches!(
        e.record,
        Record::AttemptFinished {
            attempt: 1,
            outcome: AttemptOutcome::Interrupted,
            ..
        }
    )));
}
