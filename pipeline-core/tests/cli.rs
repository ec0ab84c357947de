//! `pipeline-run`'s command line (`pipeline_core::cli`, which the example binary wraps) on real
//! pipelines: the sample `ship.yaml` over a real git repository with an approval, and pause,
//! cancel and a kill of the driving process.
//!
//! A run that another process drives is driven by this test binary re-executed to run only
//! `child_cli_entry` with `PIPELINE_CORE_CLI_CHILD` set (its arguments, one per line, in that
//! variable).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipeline_core::cli::{self, EXIT_FAILED, EXIT_OK, EXIT_PAUSED, EXIT_USAGE, EXIT_WAITING};
use pipeline_core::journal::{Entry, FileStore, JournalStore, Record, TaskStatus};

const CHILD_ENV: &str = "PIPELINE_CORE_CLI_CHILD";

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/src/bin/pipeline-run")
}

fn fresh(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pc-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A real git repository holding the sample app.
fn sample_repo(root: &Path) -> PathBuf {
    let repo = root.join("app-repo");
    std::fs::create_dir_all(&repo).unwrap();
    for f in ["app.sh", "build.sh", "test.sh"] {
        std::fs::copy(sample_dir().join("sample-app").join(f), repo.join(f)).unwrap();
    }
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "sample app"]);
    repo
}

/// Runs the command line in this process.
async fn cli(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::main(args.iter().map(|s| (*s).to_owned()), &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// The command line in a child process (this test binary), as `pipeline-run ARGS` would be.
fn cli_process(args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_cli_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, args.join("\n"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The child process: runs the command line and exits with its status. Only does anything
/// when re-executed by a test below.
#[test]
fn child_cli_entry() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(cli::main(
        args.lines().map(str::to_owned),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ));
    std::process::exit(i32::from(code));
}

/// The only run in a state directory, once its journal exists.
fn the_run(state: &Path) -> Option<String> {
    if !state.join("journal/log").exists() {
        return None;
    }
    let store = FileStore::open(state.join("journal")).ok()?;
    block_on(store.runs()).ok()?.into_iter().next()
}

fn journal(state: &Path, run: &str) -> Vec<Entry> {
    if !state.join("journal/log").exists() {
        return Vec::new();
    }
    FileStore::open(state.join("journal"))
        .ok()
        .and_then(|store| block_on(store.read(run)).ok())
        .unwrap_or_default()
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

/// Waits until the run's journal holds a record for which `pred` holds; returns the run id.
fn wait_for(state: &Path, what: &str, pred: impl Fn(&Record) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Some(run) = the_run(state)
            && journal(state, &run).iter().any(|e| pred(&e.record))
        {
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the driving process did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn started(record: &Record, name: &str) -> bool {
    matches!(record, Record::AttemptStarted { task, .. } if task == name)
}

fn task_runs(log: &Path, name: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == name)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_pipeline_ships_a_real_repository_after_approval() {
    let root = fresh("ship");
    let repo = sample_repo(&root);
    let state = root.join("state");
    let file = sample_dir().join("ship.yaml");
    let (s, f, r) = (
        state.to_str().unwrap(),
        file.to_str().unwrap(),
        format!("repo={}", repo.display()),
    );

    // Clone, build and test; the exit gate holds the run for the release approval.
    let (code, out, err) = cli(&[f, "--input", &r, "--state-dir", s, "--user", "alice"]).await;
    assert_eq!(code, EXIT_WAITING, "{out}{err}");
    assert!(out.contains("task Build.checkout SUCCEEDED"), "{out}");
    assert!(out.contains("task Build.test SUCCEEDED"), "{out}");
    assert!(out.contains("pipeline-run approve"), "{out}");
    let run = the_run(&state).unwrap();

    // The initiator (an approver) may not approve their own run; a stranger may not either.
    let (code, _, err) = cli(&[
        "approve",
        &run,
        "Build.exit/release",
        "--state-dir",
        s,
        "--user",
        "alice",
    ])
    .await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("initiator"), "{err}");
    let (code, _, err) = cli(&[
        "approve",
        &run,
        "Build.exit/release",
        "--state-dir",
        s,
        "--user",
        "mallory",
    ])
    .await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("not an approver"), "{err}");

    // A release manager approves: publish and promote by digest, provenance written.
    let (code, out, err) = cli(&[
        "approve",
        &run,
        "Build.exit/release",
        "--state-dir",
        s,
        "--user",
        "dave",
        "--group",
        "release-managers",
        "--comment",
        "ship it",
    ])
    .await;
    assert_eq!(code, EXIT_OK, "{out}{err}");
    assert!(out.contains("task Release.promote SUCCEEDED"), "{out}");
    let provenance = state.join(format!("provenance/{run}.intoto.json"));
    let statement: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&provenance).unwrap()).unwrap();
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert!(!statement["subject"].as_array().unwrap().is_empty());

    // Status, as JSON and as text with the audit record.
    let (code, out, _) = cli(&["status", &run, "--json", "--state-dir", s]).await;
    assert_eq!(code, EXIT_OK);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["status"], "SUCCEEDED");
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&repo)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        st["tasks"]["Build.checkout"]["outputs"]["commit"],
        head.trim(),
        "the checkout task reports the repository's real commit"
    );
    let (_, out, _) = cli(&["status", &run, "--state-dir", s]).await;
    assert!(out.contains("dave approved"), "{out}");
    assert!(out.contains("ship it"), "{out}");

    // A succeeded run cannot be resumed; bad command lines are usage errors.
    let (code, _, err) = cli(&["resume", &run, "--state-dir", s]).await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("nothing to resume"), "{err}");
    let (code, _, err) = cli(&["frobnicate", "a", "b", "c"]).await;
    assert_eq!(code, EXIT_USAGE);
    assert!(err.contains("usage:"), "{err}");
    assert!(
        !Path::new(".pipeline-state").exists(),
        "a usage error creates no state directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_approval_fails_the_run_and_cancel_finishes_a_parked_run() {
    let root = fresh("reject");
    let repo = sample_repo(&root);
    let file = sample_dir().join("ship.yaml");
    let r = format!("repo={}", repo.display());
    let f = file.to_str().unwrap();

    let state = root.join("a");
    let s = state.to_str().unwrap();
    let (code, ..) = cli(&[f, "--input", &r, "--state-dir", s, "--user", "carol"]).await;
    assert_eq!(code, EXIT_WAITING);
    let run = the_run(&state).unwrap();
    let (code, out, _) = cli(&[
        "approve",
        &run,
        "Build.exit/release",
        "--state-dir",
        s,
        "--user",
        "alice",
        "--reject",
        "--comment",
        "not today",
    ])
    .await;
    assert_eq!(code, EXIT_FAILED, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    let (_, out, _) = cli(&["status", &run, "--state-dir", s]).await;
    assert!(out.contains("alice rejected"), "{out}");

    // A parked run holds no process: cancel finishes it here (and its `finally` runs).
    let state = root.join("b");
    let s = state.to_str().unwrap();
    let (code, ..) = cli(&[f, "--input", &r, "--state-dir", s, "--user", "carol"]).await;
    assert_eq!(code, EXIT_WAITING);
    let run = the_run(&state).unwrap();
    let (code, out, _) = cli(&["cancel", &run, "--reason", "wrong branch", "--state-dir", s]).await;
    assert_eq!(code, EXIT_FAILED, "a cancelled run exits 1: {out}");
    assert!(out.contains("CANCELLED"), "{out}");
    assert!(out.contains("task finally.summary SUCCEEDED"), "{out}");
    let (code, ..) = cli(&[
        "approve",
        &run,
        "Build.exit/release",
        "--state-dir",
        s,
        "--user",
        "alice",
    ])
    .await;
    assert_eq!(code, EXIT_FAILED, "a cancelled run takes no more approvals");
}

const SLOW: &str = r"
kind: PIPELINE
name: slow
stageOrder: [S]
stages:
  S:
    taskOrder: [a, b, c]
    tasks:
      a:
        type: Shell
        input:
          script: sleep 2; echo a >> ../../runs.log
      b:
        type: Shell
        input:
          script: |
            echo b >> ../../runs.log
            echo $$ > ../../b.pid
            if [ -f ../../b-done ]; then exit 0; fi
            touch ../../b-done
            sleep 30
      c:
        type: Shell
        input:
          script: echo c >> ../../runs.log
finally:
  taskOrder: [tidy]
  tasks:
    tidy:
      type: Shell
      input:
        script: echo tidy >> ../../runs.log
";

fn slow_pipeline(root: &Path) -> (PathBuf, PathBuf) {
    let file = root.join("slow.yaml");
    std::fs::write(&file, SLOW).unwrap();
    let state = root.join("state");
    std::fs::create_dir_all(state.join("work")).unwrap();
    (file, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_from_another_process_then_resume() {
    let root = fresh("pause");
    let (file, state) = slow_pipeline(&root);
    let s = state.to_str().unwrap();
    // `b-done` exists: b finishes at once this time.
    std::fs::write(state.join("b-done"), "").unwrap();
    let mut driver = cli_process(&[file.to_str().unwrap(), "--state-dir", s]);
    let run = wait_for(&state, "a to start", |r| started(r, "a"));

    let (code, out, err) = cli(&["pause", &run, "--state-dir", s]).await;
    assert_eq!(code, EXIT_OK, "{out}{err}");
    // The driving process lets `a` finish, starts nothing new and exits "paused".
    assert_eq!(wait_exit(&mut driver), i32::from(EXIT_PAUSED));
    let (_, out, _) = cli(&["status", &run, "--state-dir", s]).await;
    assert!(out.contains("Paused"), "{out}");
    assert!(out.contains("task S.a: SUCCEEDED"), "{out}");
    assert!(
        !journal(&state, &run)
            .iter()
            .any(|e| started(&e.record, "b"))
    );

    let (code, out, err) = cli(&["resume", &run, "--state-dir", s]).await;
    assert_eq!(code, EXIT_OK, "{out}{err}");
    let log = state.join("runs.log");
    assert_eq!(
        task_runs(&log, "a"),
        1,
        "a succeeded before the pause: not rerun"
    );
    assert_eq!(task_runs(&log, "c"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_process_stops_the_running_task() {
    let root = fresh("cancel");
    let (file, state) = slow_pipeline(&root);
    let s = state.to_str().unwrap();
    let mut driver = cli_process(&[file.to_str().unwrap(), "--state-dir", s]);
    let run = wait_for(&state, "b to start", |r| started(r, "b"));
    std::thread::sleep(Duration::from_millis(200));

    let t = Instant::now();
    let (code, out, err) = cli(&["cancel", &run, "--reason", "stop", "--state-dir", s]).await;
    assert_eq!(code, EXIT_OK, "{out}{err}");
    assert_eq!(wait_exit(&mut driver), i32::from(EXIT_FAILED));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "b's `sleep 30` was stopped, not waited for"
    );
    let (_, out, _) = cli(&["status", &run, "--json", "--state-dir", s]).await;
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["status"], "CANCELLED", "{out}");
    assert_eq!(st["tasks"]["S.b"]["status"], "CANCELLED", "{out}");
    assert_eq!(st["tasks"]["finally.tidy"]["status"], "SUCCEEDED", "{out}");
    assert!(st["tasks"].get("S.c").is_none(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_driver_resumes_without_rerunning_what_succeeded() {
    let root = fresh("kill");
    let (file, state) = slow_pipeline(&root);
    let s = state.to_str().unwrap();
    let mut driver = cli_process(&[file.to_str().unwrap(), "--state-dir", s]);
    let run = wait_for(&state, "b to start", |r| started(r, "b"));
    let t = Instant::now();
    while !state.join("b.pid").exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "b's shell never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    driver.kill().unwrap(); // SIGKILL
    driver.wait().unwrap();
    // The shell task's process group outlives the killed engine; stop it as a reboot would.
    let pgid = std::fs::read_to_string(state.join("b.pid")).unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pgid.trim())])
        .status();

    let (_, out, _) = cli(&["status", &run, "--state-dir", s]).await;
    assert!(out.contains("Running"), "{out}");
    let (code, out, err) = cli(&["resume", &run, "--state-dir", s]).await;
    assert_eq!(code, EXIT_OK, "{out}{err}");
    let log = state.join("runs.log");
    assert_eq!(
        task_runs(&log, "a"),
        1,
        "a succeeded before the kill: not rerun"
    );
    assert_eq!(task_runs(&log, "b"), 2, "b was interrupted: it runs again");
    assert_eq!(task_runs(&log, "c"), 1);
    let entries = journal(&state, &run);
    assert!(entries.iter().any(|e| matches!(
        &e.record,
        Record::AttemptFinished { task, outcome: pipeline_core::journal::AttemptOutcome::Interrupted, .. } if task == "b"
    )));
    assert!(entries.iter().any(|e| matches!(
        &e.record,
        Record::TaskFinished { task, status: TaskStatus::Succeeded, .. } if task == "c"
    )));
}
