//! Task waiting against wiremock: through a private collector (`CreatePropertyCollector`,
//! `CreateFilter`, `WaitForUpdatesEx`, then `DestroyPropertyCollector`), and by polling `info`
//! on a server without private collectors; typed results and typed faults. Responses are
//! encoded by the crate's own server-side codec.

use vsphere_client::Error;
use vsphere_client::client::{Client, ConnectOptions};
use vsphere_client::codec::{
    Any, DataObject, ManagedObjectReference, Obj, Poly, encode_fault, encode_response,
};
use vsphere_client::mo::{VirtualMachine, methods};
use vsphere_client::types::{
    AboutInfo, DynamicProperty, FileNotFound, LocalizedMethodFault, NotImplemented, ObjectContent,
    ObjectUpdate, PropertyChange, PropertyChangeOp, PropertyFilterUpdate, RetrieveResult,
    ServiceContent, TaskInfo, TaskInfoState, UpdateSet, UserSession, VirtualMachineCloneSpec,
};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn moref(t: &str, v: &str) -> ManagedObjectReference {
    ManagedObjectReference::new(t, v)
}

fn ok(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/xml; charset=utf-8")
}

fn fault(detail: &dyn DataObject) -> ResponseTemplate {
    ResponseTemplate::new(500).set_body_raw(
        encode_fault("ServerFaultCode", "fault", detail),
        "text/xml; charset=utf-8",
    )
}

async fn server() -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/sdk/vimServiceVersions.xml"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&s)
        .await;
    let content = ServiceContent {
        root_folder: moref("Folder", "group-d1"),
        property_collector: moref("PropertyCollector", "propertyCollector"),
        session_manager: Some(moref("SessionManager", "SessionManager")),
        about: Some(Obj::new(AboutInfo {
            api_version: "8.0.2.0".into(),
            ..AboutInfo::default()
        })),
        ..ServiceContent::default()
    };
    Mock::given(body_string_contains("<RetrieveServiceContent "))
        .respond_with(ok(encode_response(
            &methods::RETRIEVE_SERVICE_CONTENT,
            &[&&content],
        )))
        .mount(&s)
        .await;
    let session = UserSession::default();
    Mock::given(body_string_contains("<Login "))
        .respond_with(ok(encode_response(&methods::LOGIN, &[&&session])))
        .mount(&s)
        .await;
    Mock::given(body_string_contains("<CloneVM_Task "))
        .respond_with(ok(encode_response(
            &methods::CLONE_VM_TASK,
            &[&&moref("Task", "task-7")],
        )))
        .mount(&s)
        .await;
    s
}

async fn connect(s: &MockServer) -> Client {
    let url = s.uri().replace("http://", "http://admin:pw@") + "/sdk";
    Client::connect(ConnectOptions::new(&url).unwrap().with_keepalive(None))
        .await
        .unwrap()
}

fn info(state: TaskInfoState, progress: Option<i32>) -> TaskInfo {
    TaskInfo {
        key: "task-7".into(),
        task: moref("Task", "task-7"),
        state,
        progress,
        ..TaskInfo::default()
    }
}

fn info_page(i: TaskInfo) -> String {
    let result = RetrieveResult {
        objects: vec![ObjectContent {
            obj: moref("Task", "task-7"),
            prop_set: vec![DynamicProperty {
                name: "info".into(),
                val: Any::Data(Box::new(i)),
            }],
            ..ObjectContent::default()
        }],
        ..RetrieveResult::default()
    };
    encode_response(&methods::RETRIEVE_PROPERTIES_EX, &[&&result])
}

async fn start_clone(client: &Client) -> vsphere_client::rpc::PendingTask<ManagedObjectReference> {
    VirtualMachine::new("vm-1")
        .clone_vm_task(
            client,
            &moref("Folder", "group-v3"),
            "copy",
            &VirtualMachineCloneSpec::default(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn without_private_collectors_the_task_is_polled_to_its_typed_result() {
    let s = server().await;
    Mock::given(body_string_contains("<CreatePropertyCollector "))
        .respond_with(fault(&NotImplemented::default()))
        .expect(1)
        .mount(&s)
        .await;
    for (state, progress) in [
        (TaskInfoState::Running, Some(30)),
        (TaskInfoState::Running, Some(30)),
        (TaskInfoState::Running, Some(60)),
    ] {
        Mock::given(body_string_contains("<RetrievePropertiesEx "))
            .respond_with(ok(info_page(info(state, progress))))
            .up_to_n_times(1)
            .mount(&s)
            .await;
    }
    let mut done = info(TaskInfoState::Success, Some(100));
    done.result = Some(Any::MoRef(moref("VirtualMachine", "vm-9")));
    Mock::given(body_string_contains("<RetrievePropertiesEx "))
        .respond_with(ok(info_page(done)))
        .mount(&s)
        .await;
    let client = connect(&s).await;
    let task = start_clone(&client).await;
    let mut seen = Vec::new();
    let vm = client
        .wait_task_with_progress(task, |i| seen.push((i.state.clone(), i.progress)))
        .await
        .expect("the task succeeds");
    assert_eq!(vm, moref("VirtualMachine", "vm-9"));
    // Each change once: the repeated 30% is not reported twice.
    assert_eq!(
        seen,
        [
            (TaskInfoState::Running, Some(30)),
            (TaskInfoState::Running, Some(60)),
            (TaskInfoState::Success, Some(100)),
        ]
    );
}

#[tokio::test]
async fn a_private_collector_reports_the_task_and_is_destroyed() {
    let s = server().await;
    Mock::given(body_string_contains("<CreatePropertyCollector "))
        .respond_with(ok(encode_response(
            &methods::CREATE_PROPERTY_COLLECTOR,
            &[&&moref("PropertyCollector", "session[1]pc-2")],
        )))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(body_string_contains("<CreateFilter "))
        .and(body_string_contains("session[1]pc-2"))
        .and(body_string_contains("task-7"))
        .respond_with(ok(encode_response(
            &methods::CREATE_FILTER,
            &[&&moref("PropertyFilter", "session[1]f-3")],
        )))
        .expect(1)
        .mount(&s)
        .await;
    let mut failed = info(TaskInfoState::Error, None);
    failed.error = Some(Obj::new(LocalizedMethodFault {
        fault: Some(Poly::new(FileNotFound {
            ..FileNotFound::default()
        })),
        localized_message: Some("File [ds] copy/copy.vmx was not found".into()),
        ..LocalizedMethodFault::default()
    }));
    let update = |i: TaskInfo, version: &str| UpdateSet {
        version: version.into(),
        filter_set: vec![PropertyFilterUpdate {
            filter: moref("PropertyFilter", "session[1]f-3"),
            object_set: vec![ObjectUpdate {
                obj: moref("Task", "task-7"),
                change_set: vec![PropertyChange {
                    name: "info".into(),
                    op: PropertyChangeOp::Assign,
                    val: Some(Any::Data(Box::new(i))),
                    ..PropertyChange::default()
                }],
                ..ObjectUpdate::default()
            }],
            ..PropertyFilterUpdate::default()
        }],
        ..UpdateSet::default()
    };
    Mock::given(body_string_contains("<WaitForUpdatesEx "))
        .respond_with(ok(encode_response(
            &methods::WAIT_FOR_UPDATES_EX,
            &[&&update(info(TaskInfoState::Running, Some(10)), "1")],
        )))
        .up_to_n_times(1)
        .mount(&s)
        .await;
    Mock::given(body_string_contains("<WaitForUpdatesEx "))
        .and(body_string_contains("<version>1</version>"))
        .respond_with(ok(encode_response(
            &methods::WAIT_FOR_UPDATES_EX,
            &[&&update(failed, "2")],
        )))
        .mount(&s)
        .await;
    Mock::given(body_string_contains("<DestroyPropertyCollector "))
        .and(body_string_contains("session[1]pc-2"))
        .respond_with(ok(encode_response(
            &methods::DESTROY_PROPERTY_COLLECTOR,
            &[],
        )))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(body_string_contains("<RetrievePropertiesEx "))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("no polling while updates work")
        .mount(&s)
        .await;
    let client = connect(&s).await;
    let task = start_clone(&client).await;
    let mut progress = Vec::new();
    let err = client
        .wait_task_with_progress(task, |i| progress.push(i.progress))
        .await
        .expect_err("the task fails");
    assert_eq!(progress, [Some(10), None]);
    assert!(err.is_fault("FileNotFound"));
    match &err {
        Error::TaskFailed {
            task,
            kind,
            message,
            fault,
        } => {
            assert_eq!(task, "task-7");
            assert_eq!(kind, "FileNotFound");
            assert_eq!(message, "File [ds] copy/copy.vmx was not found");
            assert!(
                fault
                    .fault
                    .as_ref()
                    .and_then(|f| f.downcast_ref::<FileNotFound>())
                    .is_some()
            );
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "task task-7 failed with FileNotFound: File [ds] copy/copy.vmx was not found"
    );
}
