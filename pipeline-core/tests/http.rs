//! `REST`, `POLL` and `Jenkins` task kinds against wiremock servers that follow the documented
//! APIs (Jenkins: trigger returns 201 with the queue item in `Location`; the queue item has
//! `executable: null` until a build starts; a build has `building` and `result: null` until it
//! ends; `/stop` aborts a build, `/queue/cancelItem?id=` a queued item).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pipeline_core::engine::{Engine, Outcome};
use pipeline_core::journal::MemoryStore;
use pipeline_core::load::load_pipeline;
use pipeline_core::task::{CancelHandle, CancelLevel, TaskContext, TaskKind, TaskRegistry};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn ctx(input: Value) -> (TaskContext, CancelHandle) {
    let (handle, cancel) = CancelHandle::new();
    let Value::Object(input) = input else {
        panic!("input must be a map")
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
            work_dir: PathBuf::from("/tmp"),
        },
        handle,
    )
}

fn kind(name: &str) -> Arc<dyn TaskKind> {
    TaskRegistry::builtin().get(name).unwrap()
}

#[tokio::test]
async fn rest_sends_payload_and_headers_and_parses_json() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/deploy"))
        .and(header("authorization", "Bearer t0ken"))
        .and(header("idempotency-key", "r1:S.t:1"))
        .and(body_string_contains("\"app\":\"web\""))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 42})))
        .expect(1)
        .mount(&server)
        .await;
    let (c, _h) = ctx(json!({
        "action": "post",
        "url": format!("{}/api/deploy", server.uri()),
        "headers": {"Authorization": "Bearer t0ken"},
        "payload": {"app": "web"},
    }));
    let out = kind("REST").run(c).await.unwrap();
    assert_eq!(out["responseCode"], 201);
    assert_eq!(out["responseJson"]["id"], 42);
    assert_eq!(out["status"], "COMPLETED");
}

#[tokio::test]
async fn rest_errors_are_typed_by_status() {
    let server = MockServer::start().await;
    Mock::given(path("/missing"))
        .respond_with(ResponseTemplate::new(404).set_body_string("nope"))
        .mount(&server)
        .await;
    Mock::given(path("/busy"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let (c, _h) = ctx(json!({"action": "get", "url": format!("{}/missing", server.uri())}));
    let e = kind("REST").run(c).await.unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.outputs["responseBody"], "nope");
    let (c, _h) = ctx(json!({"action": "get", "url": format!("{}/busy", server.uri())}));
    assert!(kind("REST").run(c).await.unwrap_err().retryable);
    let (c, _h) = ctx(json!({"action": "fetch", "url": server.uri()}));
    assert!(
        kind("REST")
            .run(c)
            .await
            .unwrap_err()
            .message
            .contains("action must be")
    );
}

#[tokio::test]
async fn poll_repeats_until_the_exit_criteria_hold() {
    let server = MockServer::start().await;
    Mock::given(path("/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": "pending"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": "done"})))
        .with_priority(2)
        .mount(&server)
        .await;
    let input = |success: &str| {
        json!({
            "url": format!("{}/status", server.uri()),
            "pollCount": 5,
            "pollIntervalSeconds": 0.05,
            "exitCriteria": {"success": success, "failure": "responseJson.state == 'broken'"},
        })
    };
    let (c, _h) = ctx(input("responseJson.state == 'done'"));
    let out = kind("POLL").run(c).await.unwrap();
    assert_eq!(out["iterationCount"], 3);
    assert_eq!(out["responseJson"]["state"], "done");
    let (c, _h) = ctx(input("responseJson.state == 'never'"));
    let e = kind("POLL").run(c).await.unwrap_err();
    assert!(e.message.contains("not met after 5 polls"), "{}", e.message);
}

async fn jenkins(server: &MockServer, result_after: &[&str]) {
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/job/team/job/app/buildWithParameters"))
        .and(header_exists("authorization"))
        .and(body_string_contains("VERSION=1.2"))
        .respond_with(
            ResponseTemplate::new(201).insert_header("Location", format!("{base}/queue/item/7/")),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/queue/item/7/api/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": 7, "why": "Waiting for next available executor", "executable": null}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/queue/item/7/api/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 7,
            "executable": {"number": 12, "url": format!("{base}/job/team/job/app/12/")},
        })))
        .with_priority(2)
        .mount(server)
        .await;
    for (i, r) in result_after.iter().enumerate() {
        let body = if *r == "building" {
            json!({"number": 12, "building": true, "result": null})
        } else {
            json!({"number": 12, "building": false, "result": r})
        };
        let mock = Mock::given(method("GET"))
            .and(path("/job/team/job/app/12/api/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .with_priority(u8::try_from(i + 1).unwrap());
        let mock = if i + 1 < result_after.len() {
            mock.up_to_n_times(1)
        } else {
            mock
        };
        mock.mount(server).await;
    }
    Mock::given(method("GET"))
        .and(path("/job/team/job/app/12/consoleText"))
        .respond_with(ResponseTemplate::new(200).set_body_string("Started\nBUILD OK\n"))
        .mount(server)
        .await;
}

fn jenkins_input(server: &MockServer) -> Value {
    json!({
        "server": server.uri(),
        "jobFolder": "team",
        "job": "app",
        "parameters": {"VERSION": "1.2"},
        "user": "ci",
        "token": "api-token",
        "pollIntervalSeconds": 0.05,
    })
}

#[tokio::test]
async fn jenkins_follows_the_queue_to_the_build_result() {
    let server = MockServer::start().await;
    jenkins(&server, &["building", "SUCCESS"]).await;
    let (c, _h) = ctx(jenkins_input(&server));
    let out = kind("Jenkins").run(c).await.unwrap();
    assert_eq!(out["result"], "SUCCESS");
    assert_eq!(out["buildNumber"], 12);
    assert!(
        out["buildUrl"]
            .as_str()
            .unwrap()
            .ends_with("/job/team/job/app/12")
    );
    assert_eq!(out["consoleTail"], "Started\nBUILD OK\n");
}

#[tokio::test]
async fn a_failed_jenkins_build_fails_the_task() {
    let server = MockServer::start().await;
    jenkins(&server, &["FAILURE"]).await;
    let (c, _h) = ctx(jenkins_input(&server));
    let e = kind("Jenkins").run(c).await.unwrap_err();
    assert!(e.message.contains("ended FAILURE"), "{}", e.message);
    assert_eq!(e.outputs["result"], "FAILURE");
}

#[tokio::test]
async fn cancel_stops_the_jenkins_build() {
    let server = MockServer::start().await;
    jenkins(&server, &["building"]).await;
    Mock::given(method("POST"))
        .and(path("/job/team/job/app/12/stop"))
        .respond_with(ResponseTemplate::new(302))
        .expect(1)
        .mount(&server)
        .await;
    let (c, h) = ctx(jenkins_input(&server));
    let task = tokio::spawn(async move { kind("Jenkins").run(c).await });
    // Cancel once the task follows the build (not the queue item), however loaded the machine.
    let started = std::time::Instant::now();
    while !server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .any(|r| r.url.path() == "/job/team/job/app/12/api/json")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the build was never polled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.cancel(CancelLevel::Graceful);
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(e.message, "cancelled");
    // wiremock checks on drop that /stop was called exactly once.
}

#[tokio::test]
async fn cancel_while_queued_cancels_the_queue_item() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/job/app/build"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("Location", format!("{}/queue/item/9/", server.uri())),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/queue/item/9/api/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": 9, "executable": null})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/queue/cancelItem"))
        .and(query_param("id", "9"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let (c, h) = ctx(json!({"server": server.uri(), "job": "app", "pollIntervalSeconds": 0.05}));
    let task = tokio::spawn(async move { kind("Jenkins").run(c).await });
    // Cancel once the task follows the queue item (a fixed sleep was too short under load).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let polled = server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .any(|r| {
                r.method == wiremock::http::Method::GET && r.url.path() == "/queue/item/9/api/json"
            });
        if polled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queue item was never polled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.cancel(CancelLevel::Graceful);
    assert_eq!(task.await.unwrap().unwrap_err().message, "cancelled");
}

#[tokio::test]
async fn rest_outputs_bind_into_later_tasks() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/version"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "3.1"})))
        .mount(&server)
        .await;
    let yaml = format!(
        r"
kind: PIPELINE
name: rest
stageOrder: [S]
stages:
  S:
    taskOrder: [ask, use]
    tasks:
      ask:
        type: REST
        input:
          action: get
          url: {}/version
      use:
        type: Shell
        input:
          script: echo v${{S.ask.output.responseJson.version}}
",
        server.uri()
    );
    let p = load_pipeline(&yaml, &TaskRegistry::builtin()).unwrap();
    let engine = Engine::builder(Arc::new(MemoryStore::new()), TaskRegistry::builtin()).build();
    let dir = std::env::temp_dir().join(format!("pc-http-{}", std::process::id()));
    let (run, o) = engine.run(&p, BTreeMap::new(), "ann", &dir).await.unwrap();
    assert_eq!(o, Outcome::Succeeded);
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.task("S", "use").outputs["stdout"], "v3.1\n");
}
