//! The session-aware client against wiremock: connect, version negotiation, login and the
//! session cookie, typed login failure, transparent re-login with one retry (and only one, and
//! only for calls safe to repeat), paged retrieval surviving a session expiry, timeouts and a
//! dropped connection. Responses are encoded by the crate's own server-side codec.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use vsphere_client::Error;
use vsphere_client::client::{
    Client, ConnectOptions, HttpTransport, RetrieveSpec, TlsPolicy, Transport,
};
use vsphere_client::codec::{
    DataObject, DateTime, ManagedObjectReference, Obj, encode_fault, encode_response,
};
use vsphere_client::mo::{ServiceInstance, VirtualMachine, methods};
use vsphere_client::rpc::Caller;
use vsphere_client::types::{
    AboutInfo, InvalidLogin, NotAuthenticated, ObjectContent, RetrieveResult, ServiceContent,
    UserSession,
};
use wiremock::matchers::{body_string_contains, header};
use wiremock::{MockServer, ResponseTemplate};

mod common;

use common::{MockVcenter, on, xml};

const PASSWORD: &str = "hunter2-secret";

const VERSIONS: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<namespaces version="1.0"><namespace><name>urn:vim25</name><version>8.0.2.0</version>
<priorVersions><version>8.0.1.0</version><version>7.0.3.0</version></priorVersions>
</namespace></namespaces>"#;

fn moref(t: &str, v: &str) -> ManagedObjectReference {
    ManagedObjectReference::new(t, v)
}

fn service_content(api_version: &str) -> ServiceContent {
    let about = AboutInfo {
        name: "VMware vCenter Server".into(),
        api_type: "VirtualCenter".into(),
        api_version: api_version.into(),
        ..AboutInfo::default()
    };
    ServiceContent {
        root_folder: moref("Folder", "group-d1"),
        property_collector: moref("PropertyCollector", "propertyCollector"),
        session_manager: Some(moref("SessionManager", "SessionManager")),
        about: Some(Obj::new(about)),
        ..ServiceContent::default()
    }
}

fn ok(body: String) -> ResponseTemplate {
    xml(200, body)
}

fn fault(detail: &dyn DataObject) -> ResponseTemplate {
    ResponseTemplate::new(500).set_body_raw(
        encode_fault("ServerFaultCode", "fault", detail),
        "text/xml; charset=utf-8",
    )
}

fn login_ok(cookie: &str) -> ResponseTemplate {
    let s = UserSession {
        user_name: "admin".into(),
        key: format!("key-{cookie}"),
        ..UserSession::default()
    };
    ok(encode_response(&methods::LOGIN, &[&&s])).insert_header(
        "set-cookie",
        format!("vmware_soap_session=\"{cookie}\"; Path=/; HttpOnly; Secure;").as_str(),
    )
}

fn cookie(value: &str) -> wiremock::matchers::HeaderExactMatcher {
    header(
        "cookie",
        format!("vmware_soap_session=\"{value}\"").as_str(),
    )
}

fn time_ok() -> ResponseTemplate {
    let t = DateTime::parse("2026-11-29T00:00:00Z").unwrap();
    ok(encode_response(&methods::CURRENT_TIME, &[&&t]))
}

/// A vCenter of release 8.0.2.0: its versions document and service content.
fn vcenter() -> MockVcenter {
    MockVcenter::new(
        Some(VERSIONS.to_owned()),
        encode_response(
            &methods::RETRIEVE_SERVICE_CONTENT,
            &[&&service_content("8.0.2.0")],
        ),
    )
}

/// Mounts the versions document, the service content and a first login that sets `s1`.
async fn server() -> MockServer {
    vcenter()
        .soap_action("urn:vim25/8.0.2.0")
        .first_login(PASSWORD, login_ok("s1"))
        .start()
        .await
}

fn options(s: &MockServer) -> ConnectOptions {
    let url = s
        .uri()
        .replace("http://", &format!("http://admin:{PASSWORD}@"))
        + "/sdk";
    ConnectOptions::new(&url).unwrap().with_keepalive(None)
}

#[tokio::test]
async fn connect_negotiates_logs_in_and_sends_the_session_cookie() {
    let s = server().await;
    on("<CurrentTime ")
        .and(cookie("s1"))
        .and(header("soapaction", "urn:vim25/8.0.2.0"))
        .respond_with(time_ok())
        .expect(1)
        .mount(&s)
        .await;
    on("<Logout ")
        .and(cookie("s1"))
        .respond_with(ok(encode_response(&methods::LOGOUT, &[])))
        .expect(1)
        .mount(&s)
        .await;

    let client = Client::connect(options(&s)).await.unwrap();
    assert_eq!(client.api_release(), Some("8.0.2.0"));
    assert_eq!(
        Caller::release(&client, vsphere_client::codec::Service::Vim25),
        Some("8.0.2.0")
    );
    assert_eq!(client.service_content().root_folder.value, "group-d1");
    let debug = format!("{client:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains("s1\""),
        "{debug}"
    );

    let si = ServiceInstance::new("ServiceInstance");
    let now = si.current_time(&client).await.unwrap();
    assert_eq!(now, DateTime::parse("2026-11-29T00:00:00Z").unwrap());

    client.logout().await.unwrap();
    let after = si.current_time(&client).await.unwrap_err();
    assert!(matches!(after, Error::SessionClosed), "{after}");
}

#[tokio::test]
async fn without_a_versions_document_the_about_api_version_decides() {
    // Before negotiation the SOAPAction carries no release.
    let s = MockVcenter::new(
        None,
        encode_response(
            &methods::RETRIEVE_SERVICE_CONTENT,
            &[&&service_content("7.0.3.0")],
        ),
    )
    .soap_action("urn:vim25")
    .service_content_calls(1)
    .start()
    .await;
    let url = format!("{}/sdk", s.uri());
    let client = Client::connect(ConnectOptions::new(&url).unwrap().with_keepalive(None))
        .await
        .unwrap();
    assert_eq!(client.api_release(), Some("7.0.3.0"));
}

#[tokio::test]
async fn a_wrong_password_is_a_typed_invalid_login_without_the_password() {
    let s = vcenter()
        .service_content_calls(1)
        .first_login(PASSWORD, fault(&InvalidLogin::default()))
        .start()
        .await;
    let e = Client::connect(options(&s)).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidLogin { username } if username == "admin"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(PASSWORD));
}

#[tokio::test]
async fn an_expired_session_is_renewed_and_a_read_retried_once() {
    let s = server().await;
    on("<Login ")
        .respond_with(login_ok("s2"))
        .expect(1)
        .named("re-login")
        .mount(&s)
        .await;
    on("<CurrentTime ")
        .and(cookie("s1"))
        .respond_with(fault(&NotAuthenticated::default()))
        .expect(1)
        .mount(&s)
        .await;
    on("<CurrentTime ")
        .and(cookie("s2"))
        .respond_with(time_ok())
        .expect(1)
        .mount(&s)
        .await;
    let client = Client::connect(options(&s)).await.unwrap();
    let si = ServiceInstance::new("ServiceInstance");
    si.current_time(&client).await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_hitting_one_expiry_share_one_re_login() {
    let s = server().await;
    on("<Login ")
        .respond_with(login_ok("s2"))
        .expect(1)
        .named("the shared re-login")
        .mount(&s)
        .await;
    on("<CurrentTime ")
        .and(cookie("s1"))
        .respond_with(fault(&NotAuthenticated::default()))
        .mount(&s)
        .await;
    on("<CurrentTime ")
        .and(cookie("s2"))
        .respond_with(time_ok())
        .mount(&s)
        .await;
    let client = Client::connect(options(&s)).await.unwrap();
    let si = ServiceInstance::new("ServiceInstance");
    let calls: Vec<_> = (0..4).map(|_| si.current_time(&client)).collect();
    for result in futures_join(calls).await {
        result.unwrap();
    }
}

/// Awaits every future concurrently (a tiny `join_all`, to avoid a dependency).
async fn futures_join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::Poll;
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn a_real_permission_problem_surfaces_after_one_retry() {
    let s = server().await;
    on("<Login ")
        .respond_with(login_ok("s2"))
        .expect(1)
        .named("the one re-login")
        .mount(&s)
        .await;
    on("<CurrentTime ")
        .respond_with(fault(&NotAuthenticated::default()))
        .expect(2)
        .named("the call and its one retry")
        .mount(&s)
        .await;
    let client = Client::connect(options(&s)).await.unwrap();
    let e = ServiceInstance::new("ServiceInstance")
        .current_time(&client)
        .await
        .unwrap_err();
    assert!(e.is_fault("NotAuthenticated"), "{e}");
}

#[tokio::test]
async fn calls_not_safe_to_repeat_are_never_retried() {
    let s = server().await;
    on("<PowerOnVM_Task ")
        .respond_with(fault(&NotAuthenticated::default()))
        .expect(1)
        .mount(&s)
        .await;
    // No second Login is mounted: `server()` expects exactly one.
    let client = Client::connect(options(&s)).await.unwrap();
    let e = VirtualMachine::new("vm-1")
        .power_on_vm_task(&client, None)
        .await
        .unwrap_err();
    assert!(e.is_fault("NotAuthenticated"), "{e}");
}

fn object(v: &str) -> ObjectContent {
    ObjectContent {
        obj: moref("VirtualMachine", v),
        ..ObjectContent::default()
    }
}

fn page(objects: &[&str], token: Option<&str>) -> RetrieveResult {
    RetrieveResult {
        objects: objects.iter().map(|v| object(v)).collect(),
        token: token.map(str::to_owned),
        ..RetrieveResult::default()
    }
}

#[tokio::test]
async fn paged_retrieval_survives_a_session_expiry_without_duplicates_or_losses() {
    let s = server().await;
    on("<Login ")
        .respond_with(login_ok("s2"))
        .expect(1)
        .mount(&s)
        .await;
    // Session 1: the first page, then the session expires.
    on("<RetrievePropertiesEx ")
        .and(body_string_contains("<maxObjects>2</maxObjects>"))
        .and(cookie("s1"))
        .respond_with(ok(encode_response(
            &methods::RETRIEVE_PROPERTIES_EX,
            &[&&page(&["vm-1", "vm-2"], Some("t1"))],
        )))
        .expect(1)
        .mount(&s)
        .await;
    on("<ContinueRetrievePropertiesEx ")
        .and(body_string_contains("<token>t1</token>"))
        .and(cookie("s1"))
        .respond_with(fault(&NotAuthenticated::default()))
        .expect(1)
        .mount(&s)
        .await;
    // Session 2: the retrieval restarts; the server's order may differ.
    on("<RetrievePropertiesEx ")
        .and(cookie("s2"))
        .respond_with(ok(encode_response(
            &methods::RETRIEVE_PROPERTIES_EX,
            &[&&page(&["vm-2", "vm-1"], Some("t2"))],
        )))
        .expect(1)
        .mount(&s)
        .await;
    on("<ContinueRetrievePropertiesEx ")
        .and(body_string_contains("<token>t2</token>"))
        .and(cookie("s2"))
        .respond_with(ok(encode_response(
            &methods::CONTINUE_RETRIEVE_PROPERTIES_EX,
            &[&&page(&["vm-3", "vm-1"], None)],
        )))
        .expect(1)
        .mount(&s)
        .await;

    let client = Client::connect(options(&s)).await.unwrap();
    let vms = ["vm-1", "vm-2", "vm-3"].map(|v| moref("VirtualMachine", v));
    let spec = RetrieveSpec::objects("VirtualMachine", &["name"], vms).max_objects(2);
    // Consumed as a Stream: the same pages as next_page() gives.
    let mut pages = client.retrieve_pages(spec).into_stream();
    let mut seen = Vec::new();
    while let Some(p) = next(&mut pages).await {
        let p = p.unwrap();
        assert!(!p.is_empty());
        seen.push(p.iter().map(|o| o.obj.value.clone()).collect::<Vec<_>>());
    }
    assert_eq!(seen, vec![vec!["vm-1", "vm-2"], vec!["vm-3"]]);
    assert!(next(&mut pages).await.is_none());
}

/// The next item of a stream (a tiny `StreamExt::next`, to avoid a dependency).
async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

#[tokio::test]
async fn paged_retrieval_delivers_each_page_as_it_arrives() {
    let s = server().await;
    on("<RetrievePropertiesEx ")
        .respond_with(ok(encode_response(
            &methods::RETRIEVE_PROPERTIES_EX,
            &[&&page(&["vm-1"], Some("t1"))],
        )))
        .expect(1)
        .mount(&s)
        .await;
    // The second page never comes in time: the first must already be in hand.
    on("<ContinueRetrievePropertiesEx ")
        .respond_with(
            ok(encode_response(
                &methods::CONTINUE_RETRIEVE_PROPERTIES_EX,
                &[&&page(&["vm-2"], None)],
            ))
            .set_delay(Duration::from_secs(30)),
        )
        .mount(&s)
        .await;
    let client = Client::connect(options(&s).with_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    let spec = RetrieveSpec::objects(
        "VirtualMachine",
        &["name"],
        [moref("VirtualMachine", "vm-1")],
    );
    let mut pages = client.retrieve_pages(spec);
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first[0].obj.value, "vm-1");
    let e = pages.next_page().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "ContinueRetrievePropertiesEx"
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn dropping_the_future_cancels_the_call_and_the_client_goes_on() {
    let s = server().await;
    on("<CurrentTime ")
        .respond_with(time_ok().set_delay(Duration::from_secs(30)))
        .up_to_n_times(1)
        .mount(&s)
        .await;
    on("<CurrentTime ").respond_with(time_ok()).mount(&s).await;
    let client = Client::connect(options(&s)).await.unwrap();
    let si = ServiceInstance::new("ServiceInstance");
    let slow = tokio::time::timeout(Duration::from_millis(200), si.current_time(&client)).await;
    assert!(slow.is_err(), "the slow call was cancelled by dropping it");
    si.current_time(&client).await.unwrap();
}

#[tokio::test]
async fn a_dropped_connection_is_a_typed_http_error() {
    // A server that accepts and hangs up at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            drop(tcp);
        }
    });
    let url = format!("http://admin:{PASSWORD}@127.0.0.1:{port}/sdk");
    let e = Client::connect(ConnectOptions::new(&url).unwrap().with_keepalive(None))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Http { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains(PASSWORD));
}

#[tokio::test]
async fn keepalive_calls_current_time_while_the_client_lives() {
    let s = server().await;
    on("<CurrentTime ")
        .and(cookie("s1"))
        .respond_with(time_ok())
        .mount(&s)
        .await;
    let client = Client::connect(options(&s).with_keepalive(Some(Duration::from_millis(100))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = |reqs: Vec<wiremock::Request>| {
        reqs.iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("<CurrentTime "))
            .count()
    };
    let while_alive = count(s.received_requests().await.unwrap());
    assert!(while_alive >= 2, "{while_alive} keepalives");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = count(s.received_requests().await.unwrap());
    assert!(
        after_drop <= while_alive + 1,
        "keepalive stopped: {while_alive} -> {after_drop}"
    );
}

#[tokio::test]
async fn a_custom_transport_can_be_supplied() {
    let s = server().await;
    let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(&TlsPolicy::Verify).unwrap());
    let client = Client::connect_with(options(&s), transport).await.unwrap();
    assert_eq!(client.api_release(), Some("8.0.2.0"));
}

#[tokio::test]
async fn logging_out_of_an_expired_session_succeeds_without_a_re_login() {
    let s = server().await;
    on("<Logout ")
        .respond_with(fault(&NotAuthenticated::default()))
        .expect(1)
        .mount(&s)
        .await;
    // `server()` allows exactly one Login: Logout is not retried.
    let client = Client::connect(options(&s)).await.unwrap();
    client.logout().await.unwrap();
}
