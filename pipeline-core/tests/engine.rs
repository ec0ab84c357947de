//! The engine end to end: real shell tasks, a real journal on disk, gates and approvals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_core::approval::Actor;
use pipeline_core::artifact::{ArtifactStore, LocalStore};
use pipeline_core::engine::{Engine, Outcome};
use pipeline_core::journal::{FileStore, MemoryStore, Record, RunStatus, TaskStatus};
use pipeline_core::load::load_pipeline;
use pipeline_core::task::TaskRegistry;
use pipeline_core::{Error, Refusal};

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pc-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn engine(dir: &Path) -> Engine {
    let store = Arc::new(FileStore::open(dir.join("state")).unwrap());
    Engine::builder(store, TaskRegistry::builtin())
        .grace(Duration::from_secs(2))
        .build()
}

fn pipeline(yaml: &str) -> pipeline_core::model::Pipeline {
    load_pipeline(yaml, &TaskRegistry::builtin()).unwrap()
}

async fn records(engine: &Engine, run: &str) -> Vec<Record> {
    engine
        .store()
        .read(run)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.record)
        .collect()
}

const FLOW: &str = r#"
kind: PIPELINE
name: flow
input:
  greeting: hello
variables:
  token: {type: SECRET, fromEnv: PATH}
stageOrder: [Build, Ship]
stages:
  Build:
    taskOrder: [make, "left,right"]
    tasks:
      make:
        type: Shell
        input:
          script: echo "v=7" >> "$PIPELINE_EXPORTS"; echo ${input.greeting} token=${var.token}
      left:
        type: Shell
        input:
          script: echo left-${Build.make.output.exports.v}
      right:
        type: Shell
        preCondition: ${Build.make.output.exitCode} != 0
        input:
          script: echo never
  Ship:
    taskOrder: [check]
    tasks:
      check:
        type: Condition
        input:
          condition: '"${Build.left.output.stdout}" == "left-7\n"'
finally:
  taskOrder: [cleanup]
  tasks:
    cleanup:
      type: Shell
      input:
        script: echo cleanup ${Build.make.status}
"#;

#[tokio::test]
async fn a_pipeline_runs_with_bindings_preconditions_finally_and_redaction() {
    let dir = tempdir("flow");
    let engine = engine(&dir);
    let mut events = engine.subscribe();
    let p = pipeline(FLOW);
    let (run, outcome) = engine
        .run(&p, BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_eq!(st.task("Build", "left").outputs["stdout"], "left-7\n");
    assert_eq!(st.task("Build", "right").status, TaskStatus::Skipped);
    assert_eq!(st.task("Ship", "check").outputs["result"], true);
    assert_eq!(
        st.task("finally", "cleanup").outputs["stdout"],
        "cleanup SUCCEEDED\n"
    );
    // The secret reached the task but never the journal.
    assert_eq!(
        st.task("Build", "make").outputs["stdout"],
        "hello token=********\n"
    );
    let mut journal = String::new();
    for seg in std::fs::read_dir(dir.join("state/log")).unwrap() {
        let seg = seg.unwrap().path();
        if seg.extension().is_some_and(|e| e == "seg") {
            journal.push_str(&String::from_utf8_lossy(&std::fs::read(seg).unwrap()));
        }
    }
    assert!(journal.contains(&run));
    assert!(!journal.contains(&std::env::var("PATH").unwrap()));
    // The event stream carried every transition.
    let mut seen = 0;
    while let Ok(ev) = events.try_recv() {
        assert_eq!(ev.run, run);
        seen += 1;
    }
    assert_eq!(seen as u64, st.version);
}

#[tokio::test]
async fn retries_back_off_and_then_succeed() {
    let dir = tempdir("retry");
    let engine = engine(&dir);
    let yaml = r"
kind: PIPELINE
name: retry
stageOrder: [S]
stages:
  S:
    taskOrder: [flaky]
    tasks:
      flaky:
        type: Shell
        retry: {attempts: 3, backoffSeconds: 0.2}
        input:
          script: echo x >> ../count; test $(wc -l < ../count) -ge 3
";
    let started = Instant::now();
    let (run, outcome) = engine
        .run(&pipeline(yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    // Backoff 0.2 s then 0.4 s.
    assert!(started.elapsed() >= Duration::from_millis(600));
    let t = engine.status(&run).await.unwrap().task("S", "flaky");
    assert_eq!(t.last_attempt, 3);
    assert_eq!(t.attempts.len(), 3);
    let keys: Vec<String> = records(&engine, &run)
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::AttemptStarted { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys[2].ends_with("S.flaky:3"));
}

#[tokio::test]
async fn retries_exhausted_fail_the_run_and_resume_reruns_only_the_failed_task() {
    let dir = tempdir("resume");
    let engine = engine(&dir);
    let yaml = r"
kind: PIPELINE
name: resume
stageOrder: [S, T]
stages:
  S:
    taskOrder: [first, second]
    tasks:
      first:
        type: Shell
        input:
          script: echo first >> ../log
      second:
        type: Shell
        retry: {attempts: 2, backoffSeconds: 0}
        input:
          script: echo second >> ../log; test -f ../fixed
  T:
    taskOrder: [third]
    tasks:
      third:
        type: Shell
        input:
          script: echo third >> ../log
";
    let work = dir.join("work");
    let (run, outcome) = engine
        .run(&pipeline(yaml), BTreeMap::new(), "ann", &work)
        .await
        .unwrap();
    let Outcome::Failed(why) = outcome else {
        panic!("expected failure, got {outcome:?}")
    };
    assert!(why.contains("S.second"), "{why}");
    let log = || std::fs::read_to_string(work.join("log")).unwrap();
    assert_eq!(log(), "first\nsecond\nsecond\n");
    std::fs::write(work.join("fixed"), "").unwrap();
    assert_eq!(engine.resume(&run).await.unwrap(), Outcome::Succeeded);
    // `first` did not run again; `second` ran once more; `third` ran.
    assert_eq!(log(), "first\nsecond\nsecond\nsecond\nthird\n");
    let t = engine.status(&run).await.unwrap().task("S", "second");
    assert_eq!(t.last_attempt, 3, "attempt numbers continue after resume");
    // A succeeded run cannot be resumed.
    assert!(matches!(
        engine.resume(&run).await,
        Err(Error::InvalidState { .. })
    ));
}

#[tokio::test]
async fn attempt_and_total_timeouts_are_enforced() {
    let dir = tempdir("timeout");
    let engine = engine(&dir);
    let yaml = r"
kind: PIPELINE
name: timeout
stageOrder: [S]
stages:
  S:
    taskOrder: [slow]
    tasks:
      slow:
        type: Shell
        retry: {attempts: 5, backoffSeconds: 0.1}
        timeout: {attemptSeconds: 0.4, totalSeconds: 1.0}
        input:
          script: sleep 20
";
    let started = Instant::now();
    let (run, outcome) = engine
        .run(&pipeline(yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let t = engine.status(&run).await.unwrap().task("S", "slow");
    assert_eq!(t.status, TaskStatus::TimedOut);
    // Attempts were cut at 0.4 s and retried until the 1 s total deadline.
    assert!(
        t.last_attempt >= 2 && t.last_attempt <= 3,
        "{}",
        t.last_attempt
    );
}

#[tokio::test]
async fn cancel_stops_running_tasks_and_runs_finally() {
    let dir = tempdir("cancel");
    let engine = engine(&dir);
    let yaml = r"
kind: PIPELINE
name: cancel
stageOrder: [S]
stages:
  S:
    taskOrder: [long, after]
    tasks:
      long:
        type: Shell
        input:
          script: sleep 30
      after:
        type: Shell
        input:
          script: echo never
finally:
  taskOrder: [tidy]
  tasks:
    tidy:
      type: Shell
      input:
        script: echo tidy
";
    let p = pipeline(yaml);
    let run = engine
        .start(&p, BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    let e2 = engine.clone();
    let r2 = run.clone();
    let driving = tokio::spawn(async move { e2.drive(&r2).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    engine.cancel(&run, false, "user asked").await.unwrap();
    let outcome = driving.await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Cancelled(_)), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.task("S", "long").status, TaskStatus::Cancelled);
    assert_eq!(st.task("S", "after").status, TaskStatus::Pending);
    assert_eq!(st.task("finally", "tidy").status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn pause_then_resume() {
    let dir = tempdir("pause");
    let engine = engine(&dir);
    let yaml = r"
kind: PIPELINE
name: pause
stageOrder: [S]
stages:
  S:
    taskOrder: [one, two]
    tasks:
      one:
        type: Shell
        input:
          script: sleep 0.5
      two:
        type: Shell
        input:
          script: echo two
";
    let run = engine
        .start(&pipeline(yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    let e2 = engine.clone();
    let r2 = run.clone();
    let driving = tokio::spawn(async move { e2.drive(&r2).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine.pause(&run, "lunch").await.unwrap();
    assert_eq!(driving.await.unwrap().unwrap(), Outcome::Paused);
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.status, RunStatus::Paused);
    assert_eq!(st.task("S", "one").status, TaskStatus::Succeeded);
    assert_eq!(st.task("S", "two").status, TaskStatus::Pending);
    assert_eq!(engine.drive(&run).await.unwrap(), Outcome::Paused);
    assert_eq!(engine.resume(&run).await.unwrap(), Outcome::Succeeded);
}

const APPROVAL: &str = r"
kind: PIPELINE
name: approve
stageOrder: [Build, Release]
stages:
  Build:
    taskOrder: [make]
    tasks:
      make:
        type: Shell
        input:
          script: echo built
    exitGate:
      rules:
        - type: approval
          name: qa
          approvers: [ann, bob, cy]
          groups: [release-managers]
          quorum: 2
          expiresAfterSeconds: EXPIRY
          onExpiry: ON_EXPIRY
  Release:
    taskOrder: [ship]
    tasks:
      ship:
        type: Shell
        input:
          script: echo shipped
";

fn approval_pipeline(expiry: &str, on_expiry: &str) -> pipeline_core::model::Pipeline {
    pipeline(
        &APPROVAL
            .replace("ON_EXPIRY", on_expiry)
            .replace("EXPIRY", expiry),
    )
}

#[tokio::test]
async fn approvals_park_the_run_and_need_a_quorum_without_self_approval() {
    let dir = tempdir("approve");
    let engine = engine(&dir);
    let (run, outcome) = engine
        .run(
            &approval_pipeline("3600", "fail"),
            BTreeMap::new(),
            "ann",
            &dir.join("work"),
        )
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Waiting(vec!["Build.exit/qa".into()]));
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.status, RunStatus::Waiting);
    assert!(st.approvals["Build.exit/qa"].expires_at.is_some());
    // The initiator may not approve; strangers may not; unknown requests are refused.
    let refused = |e: Error| match e {
        Error::ApprovalRefused { reason, .. } => reason,
        other => panic!("{other:?}"),
    };
    let e = engine
        .decide(&run, "Build.exit/qa", &Actor::user("ann"), true, "")
        .await;
    assert_eq!(refused(e.unwrap_err()), Refusal::SelfApproval);
    let e = engine
        .decide(&run, "Build.exit/qa", &Actor::user("eve"), true, "")
        .await;
    assert_eq!(refused(e.unwrap_err()), Refusal::NotAnApprover);
    let e = engine
        .decide(&run, "nope", &Actor::user("bob"), true, "")
        .await;
    assert_eq!(refused(e.unwrap_err()), Refusal::UnknownRequest);
    // One approval of two: still parked.
    engine
        .decide(&run, "Build.exit/qa", &Actor::user("bob"), true, "lgtm")
        .await
        .unwrap();
    assert!(matches!(
        engine.drive(&run).await.unwrap(),
        Outcome::Waiting(_)
    ));
    // A group member completes the quorum.
    let rm = Actor {
        name: "dee".into(),
        groups: vec!["release-managers".into()],
    };
    engine
        .decide(&run, "Build.exit/qa", &rm, true, "ship it")
        .await
        .unwrap();
    assert_eq!(engine.drive(&run).await.unwrap(), Outcome::Succeeded);
    let st = engine.status(&run).await.unwrap();
    let audit = &st.approvals["Build.exit/qa"].audit;
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].comment.as_str()),
        ("bob", "lgtm")
    );
    assert_eq!(st.task("Release", "ship").status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn a_rejection_fails_the_gate_with_its_reason() {
    let dir = tempdir("reject");
    let engine = engine(&dir);
    let (run, _) = engine
        .run(
            &approval_pipeline("3600", "fail"),
            BTreeMap::new(),
            "ann",
            &dir.join("work"),
        )
        .await
        .unwrap();
    engine
        .decide(
            &run,
            "Build.exit/qa",
            &Actor::user("cy"),
            false,
            "not today",
        )
        .await
        .unwrap();
    let Outcome::Failed(why) = engine.drive(&run).await.unwrap() else {
        panic!("expected failure")
    };
    assert!(why.contains("rejected by cy"), "{why}");
}

#[tokio::test]
async fn expiry_fails_or_cancels_the_run() {
    let dir = tempdir("expiry");
    let engine = engine(&dir);
    let (run, _) = engine
        .run(
            &approval_pipeline("0.3", "fail"),
            BTreeMap::new(),
            "zed",
            &dir.join("work"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = engine
        .decide(&run, "Build.exit/qa", &Actor::user("bob"), true, "")
        .await;
    assert!(matches!(
        e,
        Err(Error::ApprovalRefused {
            reason: Refusal::Expired,
            ..
        })
    ));
    let Outcome::Failed(why) = engine.drive(&run).await.unwrap() else {
        panic!("expected failure")
    };
    assert!(why.contains("expired"), "{why}");

    let (run, _) = engine
        .run(
            &approval_pipeline("0.2", "cancel"),
            BTreeMap::new(),
            "zed",
            &dir.join("work"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Reconcile (what a restarted engine does) notices the expiry.
    let all = engine.reconcile().await.unwrap();
    let (_, outcome) = all.iter().find(|(r, _)| *r == run).unwrap();
    assert!(matches!(outcome, Outcome::Cancelled(_)), "{outcome:?}");
}

#[tokio::test]
async fn user_operation_tasks_wait_for_approval() {
    let dir = tempdir("userop");
    let engine = engine(&dir);
    let yaml = r"
kind: PIPELINE
name: userop
stageOrder: [S]
stages:
  S:
    taskOrder: [ask, after]
    tasks:
      ask:
        type: UserOperation
        input:
          approvers: [bob]
          summary: deploy?
      after:
        type: Shell
        input:
          script: echo ${S.ask.output.status}
";
    let (run, outcome) = engine
        .run(&pipeline(yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Waiting(vec!["S.ask".into()]));
    engine
        .decide(&run, "S.ask", &Actor::user("bob"), true, "ok")
        .await
        .unwrap();
    assert_eq!(engine.drive(&run).await.unwrap(), Outcome::Succeeded);
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.task("S", "after").outputs["stdout"], "Approved\n");
    assert_eq!(st.task("S", "ask").outputs["respondedBy"][0], "bob");
}

fn gate_pipeline(rules: &str) -> pipeline_core::model::Pipeline {
    pipeline(&format!(
        r#"
kind: PIPELINE
name: gates
stageOrder: [Test, Ship]
stages:
  Test:
    taskOrder: [test]
    tasks:
      test:
        type: Shell
        input:
          script: |
            cat > report.xml <<EOF
            <testsuite><testcase name="a"/><testcase name="b"/><testcase name="c"/>
            <testcase name="d"><failure/></testcase></testsuite>
            EOF
            echo "report=report.xml" >> "$PIPELINE_EXPORTS"
  Ship:
    entryGate:
{rules}
    taskOrder: [ship]
    tasks:
      ship:
        type: Shell
        input:
          script: echo shipped
"#
    ))
}

async fn gate_outcome(name: &str, rules: &str) -> (Outcome, Duration) {
    let dir = tempdir(name);
    let store = Arc::new(MemoryStore::new());
    let artifacts = Arc::new(LocalStore::open(dir.join("artifacts")).unwrap());
    artifacts
        .publish("dev", "app", "1", "t", b"x", BTreeMap::new())
        .await
        .unwrap();
    artifacts
        .mark_passed("dev", "app", "1", "Test")
        .await
        .unwrap();
    let engine = Engine::builder(store, TaskRegistry::builtin())
        .artifacts(artifacts)
        .build();
    let started = Instant::now();
    let (_, o) = engine
        .run(
            &gate_pipeline(rules),
            BTreeMap::new(),
            "ann",
            &dir.join("work"),
        )
        .await
        .unwrap();
    (o, started.elapsed())
}

#[tokio::test]
async fn test_threshold_gate_reads_junit_through_a_binding() {
    let pass = "      rules:\n        - {type: testThreshold, report: '${Test.test.output.exports.report}', minPassPercent: 75}";
    assert_eq!(gate_outcome("tt-pass", pass).await.0, Outcome::Succeeded);
    let fail = pass.replace("75", "80");
    let (o, _) = gate_outcome("tt-fail", &fail).await;
    assert!(
        matches!(&o, Outcome::Failed(r) if r.contains("pass rate 75.0%")),
        "{o:?}"
    );
}

#[tokio::test]
async fn condition_gate_and_any_mode() {
    let pass =
        "      rules:\n        - {type: condition, condition: '${Test.test.output.exitCode} == 0'}";
    assert_eq!(gate_outcome("cond-pass", pass).await.0, Outcome::Succeeded);
    let fail =
        "      rules:\n        - {type: condition, condition: '${Test.test.output.exitCode} == 1'}";
    let (o, _) = gate_outcome("cond-fail", fail).await;
    assert!(
        matches!(&o, Outcome::Failed(r) if r.contains("is false")),
        "{o:?}"
    );
    let any = "      mode: any\n      rules:\n        - {type: condition, condition: 'false'}\n        - {type: condition, condition: 'true'}";
    assert_eq!(gate_outcome("cond-any", any).await.0, Outcome::Succeeded);
}

#[tokio::test]
async fn delay_and_poll_gates_wait() {
    let delay = "      rules:\n        - {type: delay, seconds: 0.5}";
    let (o, took) = gate_outcome("delay", delay).await;
    assert_eq!(o, Outcome::Succeeded);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    let poll = "      rules:\n        - {type: poll, command: 'test -f ready || (sleep 0.3; touch ready; false)', intervalSeconds: 0.2, timeoutSeconds: 5}";
    assert_eq!(gate_outcome("poll", poll).await.0, Outcome::Succeeded);
    let never = "      rules:\n        - {type: poll, command: 'false', intervalSeconds: 0.1, timeoutSeconds: 0.4}";
    let (o, _) = gate_outcome("poll-never", never).await;
    assert!(
        matches!(&o, Outcome::Failed(r) if r.contains("poll did not succeed")),
        "{o:?}"
    );
}

#[tokio::test]
async fn window_and_artifact_passed_gates() {
    let open = "      rules:\n        - {type: window, timezone: Asia/Tokyo, allow: [{start: '00:00', end: '24:00'}]}";
    assert_eq!(gate_outcome("window", open).await.0, Outcome::Succeeded);
    let passed =
        "      rules:\n        - {type: artifactPassed, repo: dev, artifact: app, stage: Test}";
    assert_eq!(gate_outcome("passed", passed).await.0, Outcome::Succeeded);
    let not_passed =
        "      rules:\n        - {type: artifactPassed, repo: dev, artifact: app, stage: Perf}";
    let (o, _) = gate_outcome("not-passed", not_passed).await;
    assert!(
        matches!(&o, Outcome::Failed(r) if r.contains("has passed stage Perf")),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_closed_window_waits_and_cancel_ends_the_wait() {
    let dir = tempdir("closed");
    let engine = Engine::builder(Arc::new(MemoryStore::new()), TaskRegistry::builtin()).build();
    let closed = "      rules:\n        - {type: window, timezone: UTC, allow: [{days: [Mon], start: '00:00', end: '00:01'}]}";
    let p = gate_pipeline(closed);
    let run = engine
        .start(&p, BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    let e2 = engine.clone();
    let r2 = run.clone();
    let driving = tokio::spawn(async move { e2.drive(&r2).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!driving.is_finished(), "the gate should be waiting");
    engine.cancel(&run, false, "no").await.unwrap();
    let o = tokio::time::timeout(Duration::from_secs(5), driving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&o, Outcome::Cancelled(r) if r.contains("waiting at gate")),
        "{o:?}"
    );
}

#[tokio::test]
async fn inputs_are_checked_when_a_run_starts() {
    let dir = tempdir("inputs");
    let engine = engine(&dir);
    let p = pipeline(FLOW);
    let bad = BTreeMap::from([("nope".to_owned(), "x".to_owned())]);
    let e = engine.start(&p, bad, "ann", &dir).await.unwrap_err();
    assert!(e.to_string().contains("has no input `nope`"), "{e}");
}

#[tokio::test]
async fn nested_pipelines_run_as_durable_child_runs() {
    let dir = tempdir("nested");
    std::fs::write(
        dir.join("child.yaml"),
        r"
kind: PIPELINE
name: child
input:
  who: nobody
stageOrder: [C]
stages:
  C:
    taskOrder: [hello]
    tasks:
      hello:
        type: Shell
        input:
          script: echo hello ${input.who}; echo x >> ../../child-runs; test -f ../../child-ok
",
    )
    .unwrap();
    let yaml = r"
kind: PIPELINE
name: parent
stageOrder: [P]
stages:
  P:
    taskOrder: [child, after]
    tasks:
      child:
        type: Pipeline
        input:
          pipeline: child.yaml
          inputProperties:
            who: parent
      after:
        type: Shell
        input:
          script: echo got ${P.child.output.status} ${P.child.output.runId}
";
    let store = Arc::new(FileStore::open(dir.join("state")).unwrap());
    let engine = Engine::builder(store, TaskRegistry::builtin())
        .pipeline_dir(&dir)
        .build();
    let (run, outcome) = engine
        .run(&pipeline(yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    // The child fails first: so does the parent's Pipeline task.
    assert!(
        matches!(&outcome, Outcome::Failed(r) if r.contains("nested run")),
        "{outcome:?}"
    );
    let child = engine
        .status(&run)
        .await
        .unwrap()
        .task("P", "child")
        .outputs["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        engine.status(&child).await.unwrap().status,
        RunStatus::Failed
    );
    // Fixed, the parent resumes; it resumes the same child run rather than starting another.
    std::fs::write(dir.join("work/child-ok"), "").unwrap();
    assert_eq!(engine.resume(&run).await.unwrap(), Outcome::Succeeded);
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.task("P", "child").outputs["runId"], child.as_str());
    assert_eq!(
        st.task("P", "child").outputs["tasks"]["C"]["hello"]["stdout"],
        "hello parent\n"
    );
    assert_eq!(
        st.task("P", "after").outputs["stdout"],
        format!("got SUCCEEDED {child}\n")
    );
    let runs = std::fs::read_to_string(dir.join("work/child-runs")).unwrap();
    assert_eq!(runs.lines().count(), 2, "the child ran once per attempt");
    assert_eq!(engine.store().runs().await.unwrap().len(), 2);
}

#[tokio::test]
async fn rollbacks_run_for_the_failed_task_stage_and_pipeline() {
    let dir = tempdir("rollback");
    std::fs::write(
        dir.join("undo.yaml"),
        r"
kind: PIPELINE
name: undo
input:
  what: nothing
stageOrder: [U]
stages:
  U:
    taskOrder: [undo]
    tasks:
      undo:
        type: Shell
        input:
          script: echo undo ${input.what} >> ../../rollbacks
",
    )
    .unwrap();
    let yaml = r"
kind: PIPELINE
name: deploy
stageOrder: [Deploy]
rollback:
  pipeline: undo.yaml
  input: {what: pipeline}
stages:
  Deploy:
    rollback:
      pipeline: undo.yaml
      input: {what: stage}
    taskOrder: [push, verify]
    tasks:
      push:
        type: Shell
        input:
          script: echo pushed
      verify:
        type: Shell
        rollback:
          pipeline: undo.yaml
          input: {what: '${Deploy.push.status}'}
        input:
          script: exit 1
";
    let store = Arc::new(FileStore::open(dir.join("state")).unwrap());
    let engine = Engine::builder(store, TaskRegistry::builtin())
        .pipeline_dir(&dir)
        .build();
    let (run, outcome) = engine
        .run(&pipeline(yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    let Outcome::Failed(why) = outcome else {
        panic!("expected failure, got {outcome:?}")
    };
    assert!(why.contains("rolled back"), "{why}");
    let log = std::fs::read_to_string(dir.join("work/rollbacks")).unwrap();
    assert_eq!(log, "undo SUCCEEDED\nundo stage\nundo pipeline\n", "{why}");
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.rollbacks.len(), 3);
    assert!(
        st.rollbacks
            .values()
            .all(|(_, s)| *s == RunStatus::Succeeded)
    );
    assert!(st.rollbacks.contains_key("task:Deploy.verify"));
}

#[tokio::test]
async fn concurrency_limits_hold() {
    let dir = tempdir("concurrency");
    let engine = engine(&dir);
    // Each task records how many tasks run beside it (a lock-free counter in files).
    let script = "mkdir -p ../live; touch ../live/$PIPELINE_IDEMPOTENCY_KEY; ls ../live | wc -l >> ../seen; sleep 0.3; rm ../live/$PIPELINE_IDEMPOTENCY_KEY";
    let yaml = format!(
        r#"
kind: PIPELINE
name: limits
concurrency: 2
stageOrder: [S]
stages:
  S:
    taskOrder: ["a,b,c,d,e"]
    tasks:
      a: {{type: Shell, input: {{script: "{script}"}}}}
      b: {{type: Shell, input: {{script: "{script}"}}}}
      c: {{type: Shell, input: {{script: "{script}"}}}}
      d: {{type: Shell, input: {{script: "{script}"}}}}
      e: {{type: Shell, input: {{script: "{script}"}}}}
"#
    );
    let started = Instant::now();
    let (_, outcome) = engine
        .run(&pipeline(&yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    let seen = std::fs::read_to_string(dir.join("work/seen")).unwrap();
    let max = seen
        .lines()
        .map(|l| l.trim().parse::<u32>().unwrap())
        .max()
        .unwrap();
    assert_eq!(max, 2, "{seen}");
    // Five 0.3 s tasks two at a time take at least three rounds.
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn stage_finally_blocks_run_whatever_the_stage_did() {
    let dir = tempdir("stage-finally");
    let engine = engine(&dir);
    let yaml = r"
kind: PIPELINE
name: stage-finally
stageOrder: [A, B]
stages:
  A:
    taskOrder: [ok]
    tasks:
      ok: {type: Shell, input: {script: echo a}}
    finally:
      taskOrder: [tidy]
      tasks:
        tidy: {type: Shell, input: {script: 'echo tidy-a ${A.ok.status} >> ../log'}}
  B:
    taskOrder: [bad]
    tasks:
      bad: {type: Shell, input: {script: exit 1}}
    finally:
      taskOrder: [tidy]
      tasks:
        tidy: {type: Shell, input: {script: 'echo tidy-b ${B.bad.status} >> ../log'}}
";
    let (run, outcome) = engine
        .run(&pipeline(yaml), BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::Failed(r) if r.contains("B.bad")),
        "{outcome:?}"
    );
    let log = std::fs::read_to_string(dir.join("work/log")).unwrap();
    assert_eq!(log, "tidy-a SUCCEEDED\ntidy-b FAILED\n");
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.task("B-finally", "tidy").status, TaskStatus::Succeeded);

    let nested = yaml.replace(
        "        tidy: {type: Shell, input: {script: 'echo tidy-a ${A.ok.status} >> ../log'}}\n",
        "        tidy: {type: Shell, input: {script: 'echo tidy-a ${A.ok.status} >> ../log'}}\n      finally:\n        taskOrder: [x]\n        tasks:\n          x: {type: Shell, input: {script: 'true'}}\n",
    );
    let e = load_pipeline(&nested, &TaskRegistry::builtin()).unwrap_err();
    assert!(e.to_string().contains("cannot have its own"), "{e}");
}

#[tokio::test]
async fn reconcile_leaves_child_runs_to_their_parents() {
    let dir = tempdir("reconcile-children");
    std::fs::write(
        dir.join("child.yaml"),
        "kind: PIPELINE\nname: child\nstageOrder: [C]\nstages:\n  C:\n    taskOrder: [t]\n    tasks:\n      t: {type: Shell, input: {script: 'sleep 0.2'}}\n",
    )
    .unwrap();
    let parent = "kind: PIPELINE\nname: parent\nstageOrder: [P]\nstages:\n  P:\n    taskOrder: [n]\n    tasks:\n      n: {type: Pipeline, input: {pipeline: child.yaml}}\n";
    let store = Arc::new(FileStore::open(dir.join("state")).unwrap());
    let engine = Engine::builder(store, TaskRegistry::builtin())
        .pipeline_dir(&dir)
        .build();
    let p = pipeline(parent);
    let run = engine
        .start(&p, BTreeMap::new(), "ann", &dir.join("work"))
        .await
        .unwrap();
    // Two runs exist once the parent has started its child; reconcile drives only the parent.
    let e2 = engine.clone();
    let r2 = run.clone();
    let first = tokio::spawn(async move { e2.drive(&r2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    let _ = first.await;
    let done = engine.reconcile().await.unwrap();
    assert_eq!(done, vec![(run.clone(), Outcome::Succeeded)]);
    assert_eq!(engine.store().runs().await.unwrap().len(), 2);
}
