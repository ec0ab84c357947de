//! HTTP-level tests per operation group, from envelopes captured on the wire from govmomi's
//! vCenter simulator (`tests/fixtures/vcsim-wire/`, `tests/fixtures/govmomi/`): session expiry
//! in the middle of a paged retrieval, a connection dropped in the middle of a call or of a
//! response, malformed XML, an unknown `xsi:type` from a newer server, HTTP 500 with and
//! without a SOAP fault, and keepalive failures.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vsphere_client::Error;
use vsphere_client::client::{Client, ConnectOptions, Properties, RetrieveSpec};
use vsphere_client::codec::{Any, ManagedObjectReference};
use vsphere_client::mo::{ServiceInstance, VirtualMachine};
use vsphere_client::types::VirtualMachinePowerState;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;

use common::{MockVcenter, answer, fixture, on, xml};

const PASSWORD: &str = "pw-wire-5e1a";

fn login_ok(cookie: &str) -> ResponseTemplate {
    xml(200, fixture("vcsim-wire/login.xml")).insert_header(
        "set-cookie",
        format!("vmware_soap_session={cookie}; HttpOnly").as_str(),
    )
}

/// vcsim's captured login answer, as the answer to `LoginByToken` (same `UserSession`).
fn login_by_token_ok(cookie: &str) -> ResponseTemplate {
    let body = fixture("vcsim-wire/login.xml").replace("LoginResponse", "LoginByTokenResponse");
    xml(200, body).insert_header(
        "set-cookie",
        format!("vmware_soap_session={cookie}; HttpOnly").as_str(),
    )
}

fn cookie(value: &str) -> wiremock::matchers::HeaderExactMatcher {
    header("cookie", format!("vmware_soap_session={value}").as_str())
}

fn not_authenticated() -> ResponseTemplate {
    xml(500, fixture("vcsim-wire/fault-not-authenticated.xml"))
}

/// vcsim's versions document, service content and a first login that sets cookie `s1`.
async fn server() -> MockServer {
    MockVcenter::vcsim()
        .first_login(PASSWORD, login_ok("s1"))
        .start()
        .await
}

fn options(uri: &str) -> ConnectOptions {
    let url = uri.replace("http://", &format!("http://alice:{PASSWORD}@")) + "/sdk";
    ConnectOptions::new(&url).unwrap().with_keepalive(None)
}

/// A client logged in to the mock server (the first login, cookie `s1`), without keepalive.
async fn connect(s: &MockServer) -> Client {
    Client::connect(options(&s.uri())).await.expect("connects")
}

/// The next login (after an expiry) sets cookie `cookie`; expected exactly once.
async fn relogin_gives(s: &MockServer, cookie: &str) {
    on("<Login ")
        .respond_with(login_ok(cookie))
        .expect(1)
        .mount(s)
        .await;
}

/// The captured 4-VM `RetrievePropertiesExResponse`, cut into its `<objects>` elements.
struct Captured {
    objects: Vec<String>,
}

impl Captured {
    fn load() -> Self {
        let text = fixture("govmomi/vms-4-name-powerstate.xml");
        let objects = text
            .split("<objects>")
            .skip(1)
            .map(|s| format!("<objects>{}", s.split("</objects>").next().unwrap()) + "</objects>")
            .collect::<Vec<_>>();
        assert_eq!(objects.len(), 4);
        Self { objects }
    }

    fn id(&self, i: usize) -> String {
        let o = &self.objects[i];
        let start = o.find("\">").unwrap() + 2;
        o[start..o.find("</obj>").unwrap()].to_owned()
    }

    /// A page in the captured envelope's exact framing (`Continue` for continuation pages).
    fn page(&self, response: &str, which: &[usize], token: Option<&str>) -> String {
        let mut body = String::new();
        for i in which {
            body.push_str(&self.objects[*i]);
        }
        if let Some(t) = token {
            body.push_str("<token>");
            body.push_str(t);
            body.push_str("</token>");
        }
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><{response}Response xmlns="urn:vim25"><returnval>{body}</returnval></{response}Response></soapenv:Body></soapenv:Envelope>"#
        )
    }

    fn spec(&self) -> RetrieveSpec {
        let vms = (0..4).map(|i| ManagedObjectReference::new("VirtualMachine", self.id(i)));
        RetrieveSpec::objects("VirtualMachine", &["name", "runtime.powerState"], vms).max_objects(2)
    }
}

/// Session expiry between pages: `ContinueRetrievePropertiesEx` tokens die with the session,
/// so the client logs in again, restarts the retrieval and skips what it already delivered.
#[tokio::test]
async fn expiry_mid_retrieval_restarts_without_duplicates_or_losses() {
    let cap = Captured::load();
    let s = server().await;
    relogin_gives(&s, "s2").await;
    on("<RetrievePropertiesEx ")
        .and(cookie("s1"))
        .respond_with(xml(
            200,
            cap.page("RetrievePropertiesEx", &[0, 1], Some("t1")),
        ))
        .expect(1)
        .mount(&s)
        .await;
    on("<ContinueRetrievePropertiesEx ")
        .and(cookie("s1"))
        .respond_with(not_authenticated())
        .expect(1)
        .mount(&s)
        .await;
    // After the re-login the server pages differently: one object per page.
    on("<RetrievePropertiesEx ")
        .and(cookie("s2"))
        .respond_with(xml(
            200,
            cap.page("RetrievePropertiesEx", &[1, 0], Some("u1")),
        ))
        .expect(1)
        .mount(&s)
        .await;
    on("<token>u1</token>")
        .and(cookie("s2"))
        .respond_with(xml(
            200,
            cap.page("ContinueRetrievePropertiesEx", &[2], Some("u2")),
        ))
        .expect(1)
        .mount(&s)
        .await;
    on("<token>u2</token>")
        .and(cookie("s2"))
        .respond_with(xml(
            200,
            cap.page("ContinueRetrievePropertiesEx", &[3, 2], None),
        ))
        .expect(1)
        .mount(&s)
        .await;

    let client = connect(&s).await;
    let mut pages = client.retrieve_pages(cap.spec());
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        for o in page {
            let p = Properties::from(o);
            assert_eq!(
                p.get::<VirtualMachinePowerState>("runtime.powerState"),
                Some(VirtualMachinePowerState::PoweredOn)
            );
            seen.push(p.get::<String>("name").unwrap());
        }
    }
    assert_eq!(
        seen,
        [
            "DC0_H0_VM0",
            "DC0_H0_VM1",
            "DC0_C0_RP0_VM0",
            "DC0_C0_RP0_VM1"
        ]
    );
}

/// A session that dies again right after the restart, before any progress, is an error: the
/// client never loops on re-logins.
#[tokio::test]
async fn expiry_again_without_progress_surfaces_instead_of_looping() {
    let cap = Captured::load();
    let s = server().await;
    relogin_gives(&s, "s2").await;
    on("<RetrievePropertiesEx ")
        .respond_with(xml(
            200,
            cap.page("RetrievePropertiesEx", &[0, 1], Some("t")),
        ))
        .expect(2)
        .mount(&s)
        .await;
    on("<ContinueRetrievePropertiesEx ")
        .respond_with(not_authenticated())
        .expect(2)
        .mount(&s)
        .await;
    let client = connect(&s).await;
    let mut pages = client.retrieve_pages(cap.spec());
    assert_eq!(pages.next_page().await.unwrap().unwrap().len(), 2);
    let e = pages.next_page().await.unwrap_err();
    assert!(e.is_fault("NotAuthenticated"), "{e}");
    assert!(pages.next_page().await.unwrap().is_none(), "finished");
}

#[tokio::test]
async fn malformed_and_truncated_xml_are_typed_decode_errors() {
    let cap = Captured::load();
    let s = server().await;
    let whole = cap.page("RetrievePropertiesEx", &[0, 1, 2, 3], None);
    // The connection closed between two objects: the document just stops.
    let cut = whole.find("</objects>").unwrap() + "</objects>".len();
    let truncated = whole[..cut].to_owned();
    on("<RetrievePropertiesEx ")
        .respond_with(xml(200, truncated))
        .up_to_n_times(1)
        .mount(&s)
        .await;
    on("<RetrievePropertiesEx ")
        .respond_with(xml(200, whole.replace("</propSet>", "</propset>")))
        .up_to_n_times(1)
        .mount(&s)
        .await;
    answer(
        &s,
        "<RetrievePropertiesEx ",
        xml(200, "<html>proxy error</html>".to_owned()),
    )
    .await;
    let client = connect(&s).await;
    for case in ["truncated", "mismatched tags", "not SOAP"] {
        let e = client
            .retrieve_pages(cap.spec())
            .collect_all()
            .await
            .unwrap_err();
        match &e {
            Error::Decode { method, source } => {
                assert_eq!(*method, "RetrievePropertiesEx", "{case}");
                if case == "truncated" {
                    assert!(source.is_truncated(), "{case}: {source}");
                }
            }
            other => panic!("{case}: expected Error::Decode, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_types_and_elements_from_a_newer_server_are_kept_or_skipped() {
    let cap = Captured::load();
    let s = server().await;
    let newer = cap
        .page("RetrievePropertiesEx", &[0, 1], None)
        // A property value of a data type this build does not know...
        .replacen(
            r#"XMLSchema-instance:type="xsd:string">DC0_H0_VM0</val>"#,
            r#"XMLSchema-instance:type="VirtualMachineQuantumInfo"><qubits>64</qubits><name>DC0_H0_VM0</name></val>"#,
            1,
        )
        // ...an enum value it does not know, and an element it has never seen.
        .replacen(">poweredOn</val>", ">hibernated</val>", 1)
        .replacen("<propSet>", "<futureFlag>true</futureFlag><propSet>", 1);
    answer(&s, "<RetrievePropertiesEx ", xml(200, newer)).await;
    let client = connect(&s).await;
    let all = client
        .retrieve_pages(cap.spec())
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let first = Properties::from(all[0].clone());
    match first.raw("name") {
        Some(Any::Unknown { type_name, xml }) => {
            assert_eq!(type_name, "VirtualMachineQuantumInfo");
            assert!(xml.contains("<qubits>64</qubits>"), "{xml}");
        }
        other => panic!("expected the unknown type kept raw, got {other:?}"),
    }
    let state = first
        .get::<VirtualMachinePowerState>("runtime.powerState")
        .unwrap();
    assert_eq!(
        state,
        VirtualMachinePowerState::Other("hibernated".into()),
        "{state:?}"
    );
    let second = Properties::from(all[1].clone());
    assert_eq!(second.get::<String>("name").as_deref(), Some("DC0_H0_VM1"));
}

#[tokio::test]
async fn http_500_with_a_soap_fault_is_typed_and_without_one_is_a_status() {
    let s = server().await;
    answer(
        &s,
        "<PowerOnVM_Task ",
        xml(
            500,
            fixture("vcsim-wire/fault-managed-object-not-found.xml"),
        ),
    )
    .await;
    answer(
        &s,
        "<CurrentTime ",
        ResponseTemplate::new(500).set_body_raw("<html>Internal error</html>", "text/html"),
    )
    .await;
    let client = connect(&s).await;
    let vm = VirtualMachine::new("vm-9999");
    let e = vm.power_on_vm_task(&client, None).await.unwrap_err();
    assert!(e.is_fault("ManagedObjectNotFound"), "{e}");
    let fault = e.fault().unwrap();
    assert!(fault.message.contains("vm-9999"), "{fault:?}");
    let e = ServiceInstance::new("ServiceInstance")
        .current_time(&client)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::HttpStatus {
                what: "CurrentTime",
                status: 500
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_failing_keepalive_never_breaks_the_client() {
    let s = server().await;
    // The keepalive's CurrentTime fails at the HTTP level every time.
    answer(&s, "<CurrentTime ", ResponseTemplate::new(503)).await;
    on("<RetrievePropertiesEx ")
        .and(cookie("s1"))
        .respond_with(xml(
            200,
            Captured::load().page("RetrievePropertiesEx", &[0], None),
        ))
        .mount(&s)
        .await;
    let client =
        Client::connect(options(&s.uri()).with_keepalive(Some(Duration::from_millis(100))))
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tries = s
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("<CurrentTime "))
        .count();
    assert!(tries >= 3, "the keepalive keeps trying: {tries}");
    let vm = ManagedObjectReference::new("VirtualMachine", Captured::load().id(0));
    let p = client.properties(&vm, &["name"]).await.unwrap();
    assert_eq!(p.get::<String>("name").as_deref(), Some("DC0_H0_VM0"));
}

#[tokio::test]
async fn a_keepalive_that_finds_the_session_expired_logs_in_again_once() {
    let s = server().await;
    on("<CurrentTime ")
        .and(cookie("s1"))
        .respond_with(not_authenticated())
        .mount(&s)
        .await;
    relogin_gives(&s, "s2").await;
    on("<CurrentTime ")
        .and(cookie("s2"))
        .respond_with(xml(200, fixture("vcsim-wire/current-time.xml")))
        .mount(&s)
        .await;
    let client =
        Client::connect(options(&s.uri()).with_keepalive(Some(Duration::from_millis(100))))
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The keepalive renewed the session: the caller's next call uses it directly.
    ServiceInstance::new("ServiceInstance")
        .current_time(&client)
        .await
        .unwrap();
    drop(client);
}

enum Misbehave {
    /// Read the request, then close without a byte of response.
    HangUp,
    /// Send the headers and half of the body, then close.
    CutBody,
}

/// A tiny HTTP/1.1 server that answers the connect sequence from the captures and then
/// misbehaves on `CurrentTime`.
async fn misbehaving_server(how: Misbehave) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let how = std::sync::Arc::new(how);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let how = how.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then Content-Length bytes.
                    let body = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                            if buf.len() >= end + 4 + len {
                                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len])
                                    .into_owned();
                                let is_get = head.starts_with("get ");
                                buf.drain(..end + 4 + len);
                                break if is_get { None } else { Some(body) };
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let (status, body, extra) = match body {
                        None => (404, String::new(), ""),
                        Some(b) if b.contains("<RetrieveServiceContent ") => {
                            (200, fixture("vcsim-wire/retrieve-service-content.xml"), "")
                        }
                        Some(b) if b.contains("<Login ") => (
                            200,
                            fixture("vcsim-wire/login.xml"),
                            "Set-Cookie: vmware_soap_session=s1; HttpOnly\r\n",
                        ),
                        Some(_) => match *how {
                            Misbehave::HangUp => return,
                            Misbehave::CutBody => {
                                let body = fixture("vcsim-wire/current-time.xml");
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                                    body.len()
                                );
                                let _ = tcp.write_all(head.as_bytes()).await;
                                let _ = tcp.write_all(&body.as_bytes()[..body.len() / 2]).await;
                                let _ = tcp.flush().await;
                                return;
                            }
                        },
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n{extra}\r\n",
                        body.len()
                    );
                    if tcp.write_all(head.as_bytes()).await.is_err()
                        || tcp.write_all(body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_connection_dropped_mid_call_is_a_typed_error_without_a_hang() {
    for how in [Misbehave::HangUp, Misbehave::CutBody] {
        let uri = misbehaving_server(how).await;
        let client = Client::connect(options(&uri).with_timeout(Duration::from_secs(20)))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let e = ServiceInstance::new("ServiceInstance")
            .current_time(&client)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Http { .. }), "{e:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no hang: {:?}",
            started.elapsed()
        );
        assert!(!format!("{e} {e:?}").contains(PASSWORD));
    }
}

// First Class Disk clone and relocate: govmomi's simulator 0.24.2 has neither method, so the
// server side here follows the WSDL (vim25 `CloneVStorageObject_Task(_this, id, datastore,
// spec: VslmCloneSpec) -> Task`, `RelocateVStorageObject_Task(..., spec: VslmRelocateSpec)`,
// task result `VStorageObject`), on vcsim's captured session envelopes.

fn fcd_task_result(id: &str, name: &str) -> String {
    use vsphere_client::codec::{Obj, encode_response};
    use vsphere_client::mo::methods;
    use vsphere_client::types::{
        DynamicProperty, ID, ObjectContent, RetrieveResult, TaskInfo, TaskInfoState,
        VStorageObject, VStorageObjectConfigInfo,
    };
    let mut config = VStorageObjectConfigInfo {
        capacity_in_mb: 4,
        ..VStorageObjectConfigInfo::default()
    };
    config.base_config_info.id = Some(Obj::new(ID {
        id: id.into(),
        ..ID::default()
    }));
    config.base_config_info.name = name.into();
    let disk = VStorageObject {
        config: Some(Obj::new(config)),
        ..VStorageObject::default()
    };
    let info = TaskInfo {
        key: "task-77".into(),
        task: ManagedObjectReference::new("Task", "task-77"),
        state: TaskInfoState::Success,
        result: Some(Any::Data(Box::new(disk))),
        ..TaskInfo::default()
    };
    let result = RetrieveResult {
        objects: vec![ObjectContent {
            obj: ManagedObjectReference::new("Task", "task-77"),
            prop_set: vec![DynamicProperty {
                name: "info".into(),
                val: Any::Data(Box::new(info)),
            }],
            ..ObjectContent::default()
        }],
        ..RetrieveResult::default()
    };
    encode_response(&methods::RETRIEVE_PROPERTIES_EX, &[&&result])
}

async fn fcd_server(call: &str, new_id: &str, name: &str) -> MockServer {
    use vsphere_client::codec::encode_response;
    use vsphere_client::mo::methods;
    let s = server().await;
    let method_info = if call == "CloneVStorageObject_Task" {
        &methods::CLONE_V_STORAGE_OBJECT_TASK
    } else {
        &methods::RELOCATE_V_STORAGE_OBJECT_TASK
    };
    on(format!("<{call} ").as_str())
        .and(body_string_contains(
            r#"<_this type="VcenterVStorageObjectManager">VStorageObjectManager</_this>"#,
        ))
        .and(body_string_contains("<id><id>disk-1</id></id>"))
        .and(body_string_contains("<spec"))
        .and(body_string_contains("VslmCreateSpecDiskFileBackingSpec"))
        .and(body_string_contains(
            r#"<datastore type="Datastore">datastore-9</datastore>"#,
        ))
        .and(body_string_contains(
            "<provisioningType>thin</provisioningType>",
        ))
        .respond_with(xml(
            200,
            encode_response(
                method_info,
                &[&&ManagedObjectReference::new("Task", "task-77")],
            ),
        ))
        .expect(1)
        .mount(&s)
        .await;
    // No private collectors on this server: the task is polled.
    answer(
        &s,
        "<CreatePropertyCollector ",
        xml(
            500,
            fixture("vcsim-wire/fault-not-authenticated.xml")
                .replace("NotAuthenticated", "NotImplemented"),
        ),
    )
    .await;
    on("<RetrievePropertiesEx ")
        .and(body_string_contains("task-77"))
        .respond_with(xml(200, fcd_task_result(new_id, name)))
        .mount(&s)
        .await;
    s
}

#[tokio::test]
async fn fcd_clone_sends_the_wsdl_shape_and_returns_the_new_disk() {
    let s = fcd_server("CloneVStorageObject_Task", "disk-2", "copy").await;
    let client = connect(&s).await;
    let ds = ManagedObjectReference::new("Datastore", "datastore-1");
    let target = ManagedObjectReference::new("Datastore", "datastore-9");
    let disks = client.disks().unwrap();
    let copy = disks
        .clone_disk("disk-1", &ds, "copy", &target)
        .await
        .expect("clone");
    assert_eq!(
        vsphere_client::client::fcd_id(&copy).as_deref(),
        Some("disk-2")
    );
    let sent = s.received_requests().await.unwrap();
    let body = sent
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .find(|b| b.contains("<CloneVStorageObject_Task "))
        .unwrap();
    assert!(body.contains("<name>copy</name>"), "{body}");
    assert!(matches!(
        disks.clone_disk("disk-1", &ds, "", &target).await,
        Err(Error::InvalidOption { .. })
    ));
}

#[tokio::test]
async fn fcd_relocate_sends_the_wsdl_shape_and_keeps_the_id() {
    let s = fcd_server("RelocateVStorageObject_Task", "disk-1", "vol").await;
    let client = connect(&s).await;
    let moved = client
        .disks()
        .unwrap()
        .relocate(
            "disk-1",
            &ManagedObjectReference::new("Datastore", "datastore-1"),
            &ManagedObjectReference::new("Datastore", "datastore-9"),
        )
        .await
        .expect("relocate");
    assert_eq!(
        vsphere_client::client::fcd_id(&moved).as_deref(),
        Some("disk-1")
    );
}

// LoginByToken against a wiremock STS and SDK endpoint built from VMware's documented shapes
// (WS-Trust 1.3 RequestSecurityTokenResponseCollection; FailedAuthentication fault).

const ASSERTION: &str = r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_9f2c" IssueInstant="2026-11-29T05:00:00.000Z" Version="2.0"><saml2:Issuer Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">https://vc.example.com/websso/SAML2/Metadata/vsphere.local</saml2:Issuer><saml2:Subject><saml2:NameID Format="http://schemas.xmlsoap.org/claims/UPN">alice@VSPHERE.LOCAL</saml2:NameID><saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"/></saml2:Subject><saml2:Conditions NotBefore="2026-11-29T05:00:00.000Z" NotOnOrAfter="2026-11-29T06:00:00.000Z"/></saml2:Assertion>"#;

fn sts_ok() -> ResponseTemplate {
    xml(
        200,
        format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>"#,
                r#"<wst:RequestSecurityTokenResponseCollection xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">"#,
                r#"<wst:RequestSecurityTokenResponse><wst:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</wst:TokenType>"#,
                r#"<wst:Lifetime><wsu:Created>2026-11-29T05:00:00.000Z</wsu:Created><wsu:Expires>2026-11-29T06:00:00.000Z</wsu:Expires></wst:Lifetime>"#,
                r#"<wst:RequestedSecurityToken>{}</wst:RequestedSecurityToken>"#,
                r#"<wst:Renewing Allow="true" OK="false"/><wst:Delegatable>false</wst:Delegatable>"#,
                r#"<wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType>"#,
                r#"</wst:RequestSecurityTokenResponse></wst:RequestSecurityTokenResponseCollection></S:Body></S:Envelope>"#
            ),
            ASSERTION
        ),
    )
}

fn sts_failed_authentication() -> ResponseTemplate {
    xml(
        500,
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>"#,
            r#"<S:Fault xmlns:ns4="http://www.w3.org/2003/05/soap-envelope"><faultcode xmlns:ns0="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">ns0:FailedAuthentication</faultcode>"#,
            r#"<faultstring>Authentication failed</faultstring></S:Fault></S:Body></S:Envelope>"#
        )
        .to_owned(),
    )
}

async fn sts_server() -> MockServer {
    let s = server_without_login().await;
    Mock::given(method("POST"))
        .and(path("/sts/STSService/vsphere.local"))
        .and(header(
            "soapaction",
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue",
        ))
        .and(body_string_contains("<wsse:Username>alice</wsse:Username>"))
        .and(body_string_contains(PASSWORD))
        .and(body_string_contains(
            "<wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType>",
        ))
        .respond_with(sts_ok())
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path("/sts/STSService/vsphere.local"))
        .respond_with(sts_failed_authentication())
        .mount(&s)
        .await;
    s
}

/// vcsim's versions and service content, without the password login.
async fn server_without_login() -> MockServer {
    MockVcenter::vcsim().no_password_login().start().await
}

#[tokio::test]
async fn login_by_token_gets_a_token_from_the_sts_and_renews_it_on_expiry() {
    let s = sts_server().await;
    // LoginByToken carries the assertion, verbatim, in the WS-Security header; never a cookie.
    for cookie_value in ["t1", "t2"] {
        on("<LoginByToken ")
            .and(body_string_contains("<soapenv:Header><wsse:Security "))
            .and(body_string_contains(ASSERTION))
            .respond_with(login_by_token_ok(cookie_value))
            .up_to_n_times(1)
            .expect(1)
            .mount(&s)
            .await;
    }
    on("<CurrentTime ")
        .and(cookie("t1"))
        .respond_with(not_authenticated())
        .expect(1)
        .mount(&s)
        .await;
    on("<CurrentTime ")
        .and(cookie("t2"))
        .respond_with(xml(200, fixture("vcsim-wire/current-time.xml")))
        .expect(1)
        .mount(&s)
        .await;
    let base = options(&s.uri());
    let sts = vsphere_client::client::default_sts_url(base.url());
    let client = Client::connect(base.login_by_token(sts)).await.unwrap();
    // The session expires: a fresh token, a second LoginByToken, one retry.
    ServiceInstance::new("ServiceInstance")
        .current_time(&client)
        .await
        .unwrap();
    let issues = s
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().starts_with("/sts/"))
        .count();
    assert_eq!(issues, 2, "one token per login");
    let debug = format!("{client:?}");
    assert!(
        !debug.contains("_9f2c") && !debug.contains(PASSWORD),
        "{debug}"
    );
}

#[tokio::test]
async fn a_wrong_password_at_the_sts_is_a_typed_invalid_login() {
    let s = sts_server().await;
    let url = s.uri().replace("http://", "http://alice:wrong-pw-3b@") + "/sdk";
    let options = ConnectOptions::new(&url).unwrap().with_keepalive(None);
    let sts = vsphere_client::client::default_sts_url(options.url());
    let e = Client::connect(options.login_by_token(sts))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidLogin { username } if username == "alice"),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("wrong-pw-3b"));
}

#[tokio::test]
async fn a_refused_token_is_a_typed_invalid_login_without_the_token() {
    let s = sts_server().await;
    answer(
        &s,
        "<LoginByToken ",
        xml(500, fixture("vcsim-wire/fault-invalid-login.xml")),
    )
    .await;
    let base = options(&s.uri());
    let sts = vsphere_client::client::default_sts_url(base.url());
    let e = Client::connect(base.login_by_token(sts)).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidLogin { username } if username == "alice@VSPHERE.LOCAL"),
        "{e:?}"
    );
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("_9f2c") && !text.contains("Assertion"),
        "{text}"
    );
}
