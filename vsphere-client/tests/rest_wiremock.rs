//! HTTP-level tests of the Automation REST client against wiremock, per operation group, in both
//! API styles (`/api` and `/rest`), with their documented error shapes, the 401 re-login and
//! the session id kept out of `Debug` and errors.

use serde_json::json;
use vsphere_client::Error;
use vsphere_client::client::ConnectOptions;
use vsphere_client::rest::{
    ApiStyle, Cardinality, CategorySpec, ClusterFilter, DatastoreFilter, HostConnectionState,
    HostFilter, NetworkFilter, NetworkType, ObjectId, RestClient, RestErrorKind, StylePreference,
    TagSpec, VmFilter, VmPowerState,
};
use wiremock::matchers::{basic_auth, body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HDR: &str = "vmware-api-session-id";
const PASSWORD: &str = "s3cret-pw";

fn options(server: &MockServer) -> ConnectOptions {
    let addr = server.address();
    ConnectOptions::new(&format!("http://admin:{PASSWORD}@{addr}/sdk")).unwrap()
}

fn ok(v: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(v)
}

/// A server that speaks `/api` and hands out session `token`.
async fn api_server(token: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/session"))
        .and(basic_auth("admin", PASSWORD))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!(token)))
        .mount(&server)
        .await;
    server
}

/// A server that has only `/rest` (like vSphere 6.7 and govmomi's simulator).
async fn rest_server(token: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/session"))
        .respond_with(ResponseTemplate::new(404).set_body_string("404 page not found\n"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/com/vmware/cis/session"))
        .and(basic_auth("admin", PASSWORD))
        .respond_with(ok(json!({ "value": token })))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn api_session_and_vm_listing_with_filters() {
    let server = api_server("tok-api").await;
    Mock::given(method("GET"))
        .and(path("/api/vcenter/vm"))
        .and(header(HDR, "tok-api"))
        .and(query_param("names", "web-1"))
        .and(query_param("power_states", "POWERED_ON"))
        .respond_with(ok(json!([
            {"vm": "vm-42", "name": "web-1", "power_state": "POWERED_ON", "cpu_count": 2, "memory_size_MiB": 4096}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    assert_eq!(rest.style(), ApiStyle::Api);
    let vms = rest
        .list_vms(
            &VmFilter::new()
                .names("web-1")
                .power_states(VmPowerState::PoweredOn),
        )
        .await
        .unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].vm, "vm-42");
    assert_eq!(vms[0].memory_size_mib, Some(4096));
}

#[tokio::test]
async fn falls_back_to_rest_session_and_unwraps_values() {
    let server = rest_server("tok-rest").await;
    Mock::given(method("GET"))
        .and(path("/rest/vcenter/vm"))
        .and(header(HDR, "tok-rest"))
        .and(query_param("filter.names", "db"))
        .respond_with(ok(json!({"value": [
            {"vm": "vm-7", "name": "db", "power_state": "SUSPENDED"}
        ]})))
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    assert_eq!(rest.style(), ApiStyle::Rest);
    let vms = rest.list_vms(&VmFilter::new().names("db")).await.unwrap();
    assert_eq!(vms[0].power_state, VmPowerState::Suspended);
    assert_eq!(vms[0].cpu_count, None);
}

#[tokio::test]
async fn all_five_listings_in_both_styles() {
    for style in [ApiStyle::Api, ApiStyle::Rest] {
        let (server, prefix, fp) = match style {
            ApiStyle::Api => (api_server("t").await, "/api/vcenter", ""),
            ApiStyle::Rest => (rest_server("t").await, "/rest/vcenter", "filter."),
        };
        let wrap = |v: serde_json::Value| match style {
            ApiStyle::Api => v,
            ApiStyle::Rest => json!({ "value": v }),
        };
        let mocks = [
            (
                "host",
                "connection_states",
                "CONNECTED",
                json!([{"host": "host-1", "name": "h", "connection_state": "CONNECTED", "power_state": "POWERED_ON"}]),
            ),
            (
                "datastore",
                "types",
                "VMFS",
                json!([{"datastore": "datastore-1", "name": "ds", "type": "VMFS", "free_space": 10, "capacity": 20}]),
            ),
            (
                "cluster",
                "names",
                "c",
                json!([{"cluster": "domain-c1", "name": "c", "ha_enabled": true, "drs_enabled": false}]),
            ),
            (
                "network",
                "types",
                "STANDARD_PORTGROUP",
                json!([{"network": "network-1", "name": "VM Network", "type": "STANDARD_PORTGROUP"}]),
            ),
        ];
        for (res, key, val, body) in mocks {
            Mock::given(method("GET"))
                .and(path(format!("{prefix}/{res}")))
                .and(query_param(format!("{fp}{key}"), val))
                .respond_with(ok(wrap(body)))
                .expect(1)
                .mount(&server)
                .await;
        }
        let rest = RestClient::connect(options(&server)).await.unwrap();
        assert_eq!(rest.style(), style);
        let hosts = rest
            .list_hosts(&HostFilter::new().connection_states(HostConnectionState::Connected))
            .await
            .unwrap();
        assert_eq!(hosts[0].host, "host-1");
        let ds = rest
            .list_datastores(&DatastoreFilter::new().types("VMFS"))
            .await
            .unwrap();
        assert_eq!((ds[0].free_space, ds[0].capacity), (Some(10), Some(20)));
        let cl = rest
            .list_clusters(&ClusterFilter::new().names("c"))
            .await
            .unwrap();
        assert!(cl[0].ha_enabled && !cl[0].drs_enabled);
        let nets = rest
            .list_networks(&NetworkFilter::new().types(NetworkType::StandardPortgroup))
            .await
            .unwrap();
        assert_eq!(nets[0].type_, NetworkType::StandardPortgroup);
    }
}

#[tokio::test]
async fn bad_password_is_invalid_login_without_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/session"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error_type": "UNAUTHENTICATED", "messages": []
        })))
        .mount(&server)
        .await;
    let e = RestClient::connect(options(&server)).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidLogin { username } if username == "admin"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(PASSWORD));
}

#[tokio::test]
async fn forced_style_does_not_fall_back() {
    let server = rest_server("t").await;
    let e = RestClient::connect_with(options(&server), StylePreference::Only(ApiStyle::Api))
        .await
        .unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::NotFound));
}

#[tokio::test]
async fn categories_on_api() {
    let server = api_server("t").await;
    Mock::given(method("POST"))
        .and(path("/api/cis/tagging/category"))
        .and(body_json(json!({
            "name": "env", "description": "", "cardinality": "SINGLE",
            "associable_types": ["VirtualMachine"]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!("urn:cat:1")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/cis/tagging/category"))
        .respond_with(ok(json!(["urn:cat:1"])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/cis/tagging/category/urn:cat:1"))
        .respond_with(ok(json!({
            "id": "urn:cat:1", "name": "env", "description": "", "cardinality": "SINGLE",
            "associable_types": ["VirtualMachine"], "used_by": []
        })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/cis/tagging/category/urn:cat:1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    let spec = CategorySpec::new("env", Cardinality::Single).associable_type("VirtualMachine");
    let id = rest.create_category(&spec).await.unwrap();
    assert_eq!(id, "urn:cat:1");
    assert_eq!(rest.list_categories().await.unwrap(), ["urn:cat:1"]);
    let c = rest.get_category(&id).await.unwrap();
    assert_eq!(
        (c.name.as_str(), &c.cardinality),
        ("env", &Cardinality::Single)
    );
    rest.delete_category(&id).await.unwrap();
}

#[tokio::test]
async fn categories_and_tags_on_rest() {
    let server = rest_server("t").await;
    Mock::given(method("POST"))
        .and(path("/rest/com/vmware/cis/tagging/category"))
        .and(body_json(json!({"create_spec": {
            "name": "env", "description": "d", "cardinality": "MULTIPLE", "associable_types": []
        }})))
        .respond_with(ok(json!({"value": "urn:cat:2"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/com/vmware/cis/tagging/category/id:urn:cat:2"))
        .respond_with(ok(json!({"value": {
            "id": "urn:cat:2", "name": "env", "description": "d", "cardinality": "MULTIPLE",
            "associable_types": [], "used_by": []
        }})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/com/vmware/cis/tagging/tag"))
        .and(body_json(json!({"create_spec": {
            "name": "prod", "description": "", "category_id": "urn:cat:2"
        }})))
        .respond_with(ok(json!({"value": "urn:tag:1"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/com/vmware/cis/tagging/tag/id:urn:cat:2"))
        .and(query_param("~action", "list-tags-for-category"))
        .respond_with(ok(json!({"value": ["urn:tag:1"]})))
        .mount(&server)
        .await;
    // govmomi's simulator answers an empty list as `{"value": null}`.
    Mock::given(method("GET"))
        .and(path("/rest/com/vmware/cis/tagging/tag"))
        .respond_with(ok(json!({"value": null})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/com/vmware/cis/tagging/tag/id:urn:tag:1"))
        .respond_with(ok(json!({"value": {
            "id": "urn:tag:1", "name": "prod", "description": "", "category_id": "urn:cat:2", "used_by": []
        }})))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/rest/com/vmware/cis/tagging/tag/id:urn:tag:1"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    let spec = CategorySpec::new("env", Cardinality::Multiple).description("d");
    let cat = rest.create_category(&spec).await.unwrap();
    assert_eq!(rest.get_category(&cat).await.unwrap().description, "d");
    let tag = rest.create_tag(&TagSpec::new("prod", &cat)).await.unwrap();
    assert_eq!(
        rest.list_tags_for_category(&cat).await.unwrap(),
        std::slice::from_ref(&tag)
    );
    assert!(rest.list_tags().await.unwrap().is_empty());
    assert_eq!(rest.get_tag(&tag).await.unwrap().category_id, cat);
    rest.delete_tag(&tag).await.unwrap();
}

#[tokio::test]
async fn tags_for_category_on_api_send_the_id_in_the_body() {
    let server = api_server("t").await;
    Mock::given(method("POST"))
        .and(path("/api/cis/tagging/tag"))
        .and(query_param("action", "list-tags-for-category"))
        .and(body_json(json!({"category_id": "urn:cat:1"})))
        .respond_with(ok(json!(["urn:tag:9"])))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    assert_eq!(
        rest.list_tags_for_category("urn:cat:1").await.unwrap(),
        ["urn:tag:9"]
    );
}

#[tokio::test]
async fn associations_in_both_styles() {
    for style in [ApiStyle::Api, ApiStyle::Rest] {
        let (server, base, key, tag_seg) = match style {
            ApiStyle::Api => (
                api_server("t").await,
                "/api/cis/tagging/tag-association",
                "action",
                "urn:tag:1",
            ),
            ApiStyle::Rest => (
                rest_server("t").await,
                "/rest/com/vmware/cis/tagging/tag-association",
                "~action",
                "id:urn:tag:1",
            ),
        };
        let wrap = |v: serde_json::Value| match style {
            ApiStyle::Api => v,
            ApiStyle::Rest => json!({ "value": v }),
        };
        let vm = json!({"type": "VirtualMachine", "id": "vm-42"});
        for action in ["attach", "detach"] {
            Mock::given(method("POST"))
                .and(path(format!("{base}/{tag_seg}")))
                .and(query_param(key, action))
                .and(body_json(json!({ "object_id": vm })))
                .respond_with(ResponseTemplate::new(204))
                .expect(1)
                .mount(&server)
                .await;
        }
        Mock::given(method("POST"))
            .and(path(format!("{base}/{tag_seg}")))
            .and(query_param(key, "list-attached-objects"))
            .respond_with(ok(wrap(json!([vm]))))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(base))
            .and(query_param(key, "list-attached-tags"))
            .and(body_json(json!({ "object_id": vm })))
            .respond_with(ok(wrap(json!(["urn:tag:1"]))))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(base))
            .and(query_param(key, "list-attached-tags-on-objects"))
            .respond_with(ok(wrap(
                json!([{"object_id": vm, "tag_ids": ["urn:tag:1"]}]),
            )))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("{base}/{tag_seg}")))
            .and(query_param(key, "attach-tag-to-multiple-objects"))
            .and(body_json(json!({"object_ids": [vm, {"type": "HostSystem", "id": "host-1"}]})))
            .respond_with(ok(wrap(json!({"success": false, "error_messages": [
                {"id": "cis.tagging.objectNotFound.error", "default_message": "HostSystem:host-1 not found", "args": []}
            ]}))))
            .mount(&server)
            .await;
        let rest = RestClient::connect(options(&server)).await.unwrap();
        let obj = ObjectId::vm("vm-42");
        rest.attach("urn:tag:1", &obj).await.unwrap();
        assert_eq!(
            rest.list_attached_objects("urn:tag:1").await.unwrap(),
            std::slice::from_ref(&obj)
        );
        assert_eq!(rest.list_attached_tags(&obj).await.unwrap(), ["urn:tag:1"]);
        let per = rest
            .list_attached_tags_on_objects(std::slice::from_ref(&obj))
            .await
            .unwrap();
        assert_eq!(per[0].tag_ids, ["urn:tag:1"]);
        let e = rest
            .attach_to_objects(
                "urn:tag:1",
                &[obj.clone(), ObjectId::new("HostSystem", "host-1")],
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("host-1 not found"), "{e}");
        rest.detach("urn:tag:1", &obj).await.unwrap();
    }
}

#[tokio::test]
async fn batch_attach_without_a_body_succeeds() {
    let server = rest_server("t").await;
    Mock::given(method("POST"))
        .and(path(
            "/rest/com/vmware/cis/tagging/tag-association/id:urn:tag:1",
        ))
        .and(query_param("~action", "attach-tag-to-multiple-objects"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    let r = rest
        .attach_to_objects("urn:tag:1", &[ObjectId::vm("vm-1"), ObjectId::vm("vm-2")])
        .await
        .unwrap();
    assert!(r.success && r.error_messages.is_empty());
}

#[tokio::test]
async fn error_shapes_of_both_styles_are_typed() {
    let api = api_server("t").await;
    Mock::given(method("GET"))
        .and(path("/api/cis/tagging/tag/nope"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error_type": "NOT_FOUND",
            "messages": [{"id": "com.vmware.vapi.std.errors.not_found", "default_message": "Tag nope not found", "args": ["nope"]}]
        })))
        .mount(&api)
        .await;
    let rest = RestClient::connect(options(&api)).await.unwrap();
    let e = rest.get_tag("nope").await.unwrap_err();
    match &e {
        Error::Rest {
            status,
            kind,
            message,
            ..
        } => {
            assert_eq!((*status, kind), (404, &RestErrorKind::NotFound));
            assert_eq!(message, "Tag nope not found");
        }
        other => panic!("{other:?}"),
    }

    let old = rest_server("t").await;
    Mock::given(method("POST"))
        .and(path("/rest/com/vmware/cis/tagging/category"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "type": "com.vmware.vapi.std.errors.already_exists",
            "value": {"messages": [{"id": "x", "default_message": "Category env exists", "args": []}]}
        })))
        .mount(&old)
        .await;
    let rest = RestClient::connect(options(&old)).await.unwrap();
    let e = rest
        .create_category(&CategorySpec::new("env", Cardinality::Single))
        .await
        .unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::AlreadyExists));
    assert!(e.to_string().contains("Category env exists"));
    // A body that is not the documented JSON is a typed decode error.
    Mock::given(method("GET"))
        .and(path("/rest/com/vmware/cis/tagging/category"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&old)
        .await;
    let e = rest.list_categories().await.unwrap_err();
    assert!(matches!(e, Error::RestDecode { .. }), "{e:?}");
}

/// A server whose first session expires: the first login answers `tok-1`, later ones `tok-2`;
/// calls with `tok-1` get 401.
async fn expiring_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/session"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!("tok-1")))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/session"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!("tok-2")))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(header(HDR, "tok-1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error_type": "UNAUTHENTICATED", "messages": []
        })))
        .with_priority(3)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn safe_calls_are_repeated_once_after_relogin() {
    let server = expiring_server().await;
    Mock::given(method("GET"))
        .and(path("/api/cis/tagging/category"))
        .and(header(HDR, "tok-2"))
        .respond_with(ok(json!(["urn:cat:1"])))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    assert_eq!(rest.list_categories().await.unwrap(), ["urn:cat:1"]);
    let logins = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/session")
        .count();
    assert_eq!(logins, 2);
}

#[tokio::test]
async fn state_changing_calls_are_not_repeated_but_the_session_is_renewed() {
    let server = expiring_server().await;
    Mock::given(method("POST"))
        .and(path("/api/cis/tagging/tag"))
        .and(header(HDR, "tok-2"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!("urn:tag:1")))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    let spec = TagSpec::new("t", "urn:cat:1");
    let e = rest.create_tag(&spec).await.unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::Unauthenticated));
    // The next call runs on the renewed session.
    assert_eq!(rest.create_tag(&spec).await.unwrap(), "urn:tag:1");
}

#[tokio::test]
async fn a_second_401_is_reported_not_looped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/session"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!("tok")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vcenter/vm"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    let e = rest.list_vms(&VmFilter::new()).await.unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::Unauthenticated));
}

#[tokio::test]
async fn session_id_is_never_in_debug_or_errors() {
    let token = "very-secret-session-id";
    let server = api_server(token).await;
    Mock::given(method("GET"))
        .and(path("/api/vcenter/host"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "error_type": "ERROR", "messages": [{"id": "x", "default_message": "boom", "args": []}]
        })))
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    let debug = format!("{rest:?}");
    assert!(
        !debug.contains(token) && !debug.contains(PASSWORD),
        "{debug}"
    );
    let e = rest.list_hosts(&HostFilter::new()).await.unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::Internal));
    let text = format!("{e} {e:?}");
    assert!(!text.contains(token) && !text.contains(PASSWORD), "{text}");
}

#[tokio::test]
async fn logout_deletes_the_session_and_closes_the_client() {
    let server = rest_server("tok-r").await;
    Mock::given(method("DELETE"))
        .and(path("/rest/com/vmware/cis/session"))
        .and(header(HDR, "tok-r"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let rest = RestClient::connect(options(&server)).await.unwrap();
    rest.logout().await.unwrap();
    let e = rest.list_categories().await.unwrap_err();
    assert!(matches!(e, Error::SessionClosed), "{e:?}");
    // A second logout is a no-op.
    rest.logout().await.unwrap();
}

#[tokio::test]
async fn options_without_credentials_are_rejected() {
    let e = RestClient::connect(ConnectOptions::new("http://127.0.0.1:9/sdk").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidOption {
            option: "credentials",
            ..
        }
    ));
}
