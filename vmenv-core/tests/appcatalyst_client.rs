//! The AppCatalyst client against a wiremock daemon built from AppCatalyst's swagger and the
//! quirks its real clients relied on: one test per endpoint, plus the quirks.

use std::time::Duration;

use serde_json::json;
use vmenv_core::appcatalyst::{
    AppCatalystClient, AppCatalystHypervisor, FolderState, NewVm, PowerOp,
};
use vmenv_core::{Error, Hypervisor, StopOutcome, VmName, VmState};
use wiremock::matchers::{body_json, body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn ok(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "code": 200, "message": message }))
}

async fn setup() -> (MockServer, AppCatalystClient) {
    let server = MockServer::start().await;
    let client = AppCatalystClient::new(&server.uri()).unwrap();
    (server, client)
}

#[tokio::test]
async fn version_probe_reads_the_swagger_document() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/json/swagger.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "swagger": "2.0", "info": { "title": "VMware AppCatalyst", "version": "1.0.0" } }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.probe_version().await.unwrap(), "1.0.0");

    let (server2, client2) = setup().await;
    Mock::given(path("/json/swagger.json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "info": { "version": "2.1" } })),
        )
        .mount(&server2)
        .await;
    assert!(client2.probe_version().await.unwrap_err().is_unsupported());
}

#[tokio::test]
async fn list_vms_with_and_without_tags() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/vms"))
        .and(query_param("tags", "photon,vagrant"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(["photon1"])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms"))
        .and(header("Accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(["photon1", "photon2"])))
        .mount(&server)
        .await;
    assert_eq!(
        client.list_vms(&["photon", "vagrant"]).await.unwrap(),
        vec!["photon1"]
    );
    assert_eq!(
        client.list_vms(&[]).await.unwrap(),
        vec!["photon1", "photon2"]
    );
    assert!(matches!(
        client.list_vms(&["a&b"]).await,
        Err(Error::Invalid { .. })
    ));
}

#[tokio::test]
async fn create_vm_sends_what_vagrant_sent() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path("/api/vms"))
        .and(body_json(json!({
            "id": "vagrant-1", "name": "web", "tag": "vagrant",
            "sourceReference": "/boxes/photon/photon.vmx"
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "id": "vagrant-1", "name": "web", "tag": "vagrant" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let vm = client
        .create_vm(&NewVm {
            id: "vagrant-1".into(),
            name: Some("web".into()),
            tag: Some("vagrant".into()),
            source_reference: Some("/boxes/photon/photon.vmx".into()),
            ..NewVm::default()
        })
        .await
        .unwrap();
    assert_eq!(vm.id, "vagrant-1");
    assert_eq!(vm.tag.as_deref(), Some("vagrant"));
}

#[tokio::test]
async fn get_and_delete_vm_and_the_error_envelope() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/vms/photon1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "id": "photon1", "name": "photon1" })),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/vms/photon1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms/nope"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({ "code": 404, "message": "VM nope not found" })),
        )
        .mount(&server)
        .await;
    assert_eq!(client.get_vm("photon1").await.unwrap().name, "photon1");
    client.delete_vm("photon1").await.unwrap();
    let e = client.get_vm("nope").await.unwrap_err();
    assert!(
        matches!(e, Error::Api { api: "AppCatalyst", status: 404, ref message } if message == "VM nope not found"),
        "{e}"
    );
}

#[tokio::test]
async fn power_state_is_the_message_of_an_envelope() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/vms/power/photon1"))
        .respond_with(ok("powered on"))
        .mount(&server)
        .await;
    assert_eq!(client.power_state("photon1").await.unwrap(), "powered on");
}

#[tokio::test]
async fn power_patch_bodies_are_raw_text_and_vix_errors_are_typed() {
    let (server, client) = setup().await;
    for op in ["on", "off", "shutdown", "suspend", "pause", "unpause"] {
        Mock::given(method("PATCH"))
            .and(path("/api/vms/power/photon1"))
            .and(body_string(op))
            .respond_with(ok(&format!("The VM is {op}.")))
            .expect(1)
            .mount(&server)
            .await;
    }
    for op in [
        PowerOp::On,
        PowerOp::Off,
        PowerOp::Shutdown,
        PowerOp::Suspend,
        PowerOp::Pause,
        PowerOp::Unpause,
    ] {
        let msg = client.set_power("photon1", op).await.unwrap();
        assert_eq!(msg, format!("The VM is {}.", op.as_str()));
    }
    Mock::given(method("PATCH"))
        .and(path("/api/vms/power/broken"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({ "code": 500, "message": "VIX Error: The virtual machine needs to be powered on, code: 3006, operation: vm.shutdown" }),
        ))
        .mount(&server)
        .await;
    let e = client
        .set_power("broken", PowerOp::Shutdown)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Api { status: 500, ref message, .. } if message.contains("3006")),
        "{e}"
    );
}

#[tokio::test]
async fn folders_list_strings_enable_add_get_update_remove() {
    let (server, client) = setup().await;
    // The swagger says integers; the daemon returns the share names.
    Mock::given(method("GET"))
        .and(path("/api/vms/photon1/folders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(["Users", "_src"])))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/vms/photon1/folders"))
        .and(body_string("true"))
        .respond_with(ok("true"))
        .expect(1)
        .mount(&server)
        .await;
    let users = json!({ "guestPath": "Users", "hostPath": "/Users", "flags": 4 });
    Mock::given(method("POST"))
        .and(path("/api/vms/photon1/folders"))
        .and(body_json(users.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(users.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms/photon1/folders/Users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(users.clone()))
        .mount(&server)
        .await;
    let ro = json!({ "guestPath": "Users", "hostPath": "/Users", "flags": 0 });
    Mock::given(method("PATCH"))
        .and(path("/api/vms/photon1/folders/Users"))
        .and(body_json(ro.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(ro))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/vms/photon1/folders/Users"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(
        client.list_folders("photon1").await.unwrap(),
        vec!["Users", "_src"]
    );
    client.enable_folders("photon1", true).await.unwrap();
    let f = FolderState {
        guest_path: "Users".into(),
        host_path: "/Users".into(),
        flags: 4,
    };
    assert_eq!(client.add_folder("photon1", &f).await.unwrap(), f);
    assert_eq!(client.get_folder("photon1", "Users").await.unwrap(), f);
    let mut f2 = f.clone();
    f2.flags = 0;
    assert_eq!(client.update_folder("photon1", &f2).await.unwrap().flags, 0);
    client.remove_folder("photon1", "Users").await.unwrap();
}

#[tokio::test]
async fn ipaddress_answers_408_until_tools_are_up() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/api/vms/photon1/ipaddress"))
        .respond_with(
            ResponseTemplate::new(408)
                .set_body_json(json!({ "code": 408, "message": "Request timeout" })),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms/photon1/ipaddress"))
        .respond_with(ok("192.168.2.128"))
        .mount(&server)
        .await;
    assert_eq!(client.ip_address("photon1").await.unwrap(), None);
    let ip = client
        .wait_ip("photon1", Duration::from_secs(5), Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(ip, "192.168.2.128");

    let (server2, client2) = setup().await;
    Mock::given(path("/api/vms/x/ipaddress"))
        .respond_with(
            ResponseTemplate::new(408)
                .set_body_json(json!({ "code": 408, "message": "Request timeout" })),
        )
        .mount(&server2)
        .await;
    let e = client2
        .wait_ip("x", Duration::from_millis(50), Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
}

#[tokio::test]
async fn the_backend_maps_power_and_falls_back_from_shutdown_to_off() {
    let (server, client) = setup().await;
    let hv = AppCatalystHypervisor::new(client);
    let vm = VmName::new("photon1").unwrap();
    Mock::given(method("GET"))
        .and(path("/api/vms/power/photon1"))
        .respond_with(ok("powered on"))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/vms/power/photon1"))
        .and(body_string("shutdown"))
        .respond_with(ok("The VM is shutting down."))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/vms/power/photon1"))
        .and(body_string("off"))
        .respond_with(ok("The VM is powered off."))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms/power/gone"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({ "code": 404, "message": "not found" })),
        )
        .mount(&server)
        .await;
    assert_eq!(hv.status(&vm).await.unwrap().state, VmState::Running);
    assert_eq!(
        hv.status(&VmName::new("gone").unwrap())
            .await
            .unwrap()
            .state,
        VmState::None
    );
    // The guest never powers off: shutdown, then off.
    assert_eq!(
        hv.stop(&vm, Duration::from_millis(100)).await.unwrap(),
        StopOutcome::Forced
    );
    assert!(hv.require_snapshots().is_err_and(|e| e.is_unsupported()));
    assert!(
        hv.require_port_forwards()
            .is_err_and(|e| e.is_unsupported())
    );
    assert!(hv.require_shared_folders().is_ok());
}
