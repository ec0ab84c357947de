//! The vmrest client against a wiremock daemon built from vmrest 1.3.0's swagger: every
//! operation, each requiring Basic auth and the vendor media type, plus the quirks (raw-string
//! power bodies, opaque ids mapped through `.vmx` paths, `{code,message}` errors).

use serde_json::{Value, json};
use vmenv_core::Error;
use vmenv_core::appcatalyst::PowerOp;
use vmenv_core::vmrest::{Credentials, MEDIA_TYPE, VmrestClient, VmrestFolder};
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ID: &str = "F76OJJ66M052TJE435D3AB69ORP6SAFR";
/// `admin:secret` in Basic auth.
const AUTH: &str = "Basic YWRtaW46c2VjcmV0";

async fn setup() -> (MockServer, VmrestClient) {
    let server = MockServer::start().await;
    // Anything without auth or the media type is refused, as vmrest does.
    let client = VmrestClient::new(&server.uri(), Credentials::new("admin", "secret")).unwrap();
    (server, client)
}

/// Mounts one operation that only answers with the right auth and Accept headers.
async fn op(server: &MockServer, verb: &str, p: &str, status: u16, reply: Value) {
    let mut t = ResponseTemplate::new(status);
    if !reply.is_null() {
        t = t.set_body_raw(reply.to_string(), MEDIA_TYPE);
    }
    Mock::given(method(verb))
        .and(path(p))
        .and(header("Authorization", AUTH))
        .and(header("Accept", MEDIA_TYPE))
        .respond_with(t)
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn vms_list_get_update_clone_delete_register_and_name_mapping() {
    let (server, c) = setup().await;
    let vms = json!([
        { "id": ID, "path": "/Users/a/Virtual Machines.localized/web.vmwarevm/web.vmx" },
        { "id": "OTHER", "path": "C:\\VMs\\db\\db.vmx" }
    ]);
    Mock::given(method("GET"))
        .and(path("/api/vms"))
        .and(header("Authorization", AUTH))
        .and(header("Accept", MEDIA_TYPE))
        .respond_with(ResponseTemplate::new(200).set_body_raw(vms.to_string(), MEDIA_TYPE))
        .expect(4)
        .mount(&server)
        .await;
    let info = json!({ "id": ID, "cpu": { "processors": 2 }, "memory": 2048 });
    op(&server, "GET", &format!("/api/vms/{ID}"), 200, info.clone()).await;
    Mock::given(method("PUT"))
        .and(path(format!("/api/vms/{ID}")))
        .and(header("Content-Type", MEDIA_TYPE))
        .and(body_json(json!({ "processors": 2, "memory": 2048 })))
        .respond_with(ResponseTemplate::new(200).set_body_raw(info.to_string(), MEDIA_TYPE))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/vms"))
        .and(body_json(json!({ "name": "web2", "parentId": ID })))
        .respond_with(ResponseTemplate::new(201).set_body_raw(
            json!({ "id": "NEW", "cpu": { "processors": 2 }, "memory": 2048 }).to_string(),
            MEDIA_TYPE,
        ))
        .expect(1)
        .mount(&server)
        .await;
    op(&server, "DELETE", "/api/vms/NEW", 204, Value::Null).await;
    Mock::given(method("POST"))
        .and(path("/api/vms/registration"))
        .and(body_json(json!({ "name": "old", "path": "/vms/old.vmx" })))
        .respond_with(ResponseTemplate::new(201).set_body_raw(
            json!({ "id": "REG", "path": "/vms/old.vmx" }).to_string(),
            MEDIA_TYPE,
        ))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(c.list_vms().await.unwrap().len(), 2);
    assert_eq!(c.id_for_name("web").await.unwrap(), ID);
    assert_eq!(c.id_for_name("db").await.unwrap(), "OTHER");
    assert!(matches!(
        c.id_for_name("nope").await,
        Err(Error::NotFound { .. })
    ));
    let got = c.get_vm(ID).await.unwrap();
    assert_eq!((got.cpu.processors, got.memory), (2, 2048));
    assert_eq!(c.update_vm(ID, 2, 2048).await.unwrap().memory, 2048);
    assert_eq!(c.clone_vm("web2", ID).await.unwrap().id, "NEW");
    c.delete_vm("NEW").await.unwrap();
    assert_eq!(
        c.register_vm("old", "/vms/old.vmx").await.unwrap().id,
        "REG"
    );
}

#[tokio::test]
async fn restrictions_and_vmx_params() {
    let (server, c) = setup().await;
    op(
        &server,
        "GET",
        &format!("/api/vms/{ID}/restrictions"),
        200,
        json!({ "id": ID, "managedOrg": "", "cpu": { "processors": 1 }, "memory": 512 }),
    )
    .await;
    op(
        &server,
        "GET",
        &format!("/api/vms/{ID}/params/guestinfo.role"),
        200,
        json!({ "name": "guestinfo.role", "value": "web" }),
    )
    .await;
    Mock::given(method("PUT"))
        .and(path(format!("/api/vms/{ID}/configparams")))
        .and(body_json(
            json!({ "name": "guestinfo.role", "value": "db" }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw("{}", MEDIA_TYPE))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(c.restrictions(ID).await.unwrap()["memory"], 512);
    assert_eq!(c.get_param(ID, "guestinfo.role").await.unwrap(), "web");
    c.set_config_param(ID, "guestinfo.role", "db")
        .await
        .unwrap();
}

#[tokio::test]
async fn power_get_and_raw_string_put() {
    let (server, c) = setup().await;
    op(
        &server,
        "GET",
        &format!("/api/vms/{ID}/power"),
        200,
        json!({ "power_state": "poweredOff" }),
    )
    .await;
    Mock::given(method("PUT"))
        .and(path(format!("/api/vms/{ID}/power")))
        .and(header("Content-Type", MEDIA_TYPE))
        .and(body_string("on"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(r#"{"power_state":"poweredOn"}"#, MEDIA_TYPE),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/api/vms/{ID}/power")))
        .and(body_string("pause"))
        .respond_with(ResponseTemplate::new(409).set_body_raw(
            r#"{"code":109,"message":"The virtual machine is not powered on"}"#,
            MEDIA_TYPE,
        ))
        .mount(&server)
        .await;
    assert_eq!(c.power_state(ID).await.unwrap(), "poweredOff");
    assert_eq!(c.set_power(ID, PowerOp::On).await.unwrap(), "poweredOn");
    let e = c.set_power(ID, PowerOp::Pause).await.unwrap_err();
    assert!(
        matches!(e, Error::Api { api: "vmrest", status: 409, ref message } if message == "The virtual machine is not powered on"),
        "{e}"
    );
}

#[tokio::test]
async fn shared_folders_list_add_update_delete() {
    let (server, c) = setup().await;
    let f = json!({ "folder_id": "src", "host_path": "/Users/a/src", "flags": 4 });
    op(
        &server,
        "GET",
        &format!("/api/vms/{ID}/sharedfolders"),
        200,
        json!([f.clone()]),
    )
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/api/vms/{ID}/sharedfolders")))
        .and(body_json(f.clone()))
        .respond_with(
            ResponseTemplate::new(201).set_body_raw(json!([f.clone()]).to_string(), MEDIA_TYPE),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/api/vms/{ID}/sharedfolders/src")))
        .and(body_json(
            json!({ "host_path": "/Users/a/src", "flags": 0 }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            json!([{ "folder_id": "src", "host_path": "/Users/a/src", "flags": 0 }]).to_string(),
            MEDIA_TYPE,
        ))
        .expect(1)
        .mount(&server)
        .await;
    op(
        &server,
        "DELETE",
        &format!("/api/vms/{ID}/sharedfolders/src"),
        204,
        Value::Null,
    )
    .await;
    let folder = VmrestFolder {
        folder_id: "src".into(),
        host_path: "/Users/a/src".into(),
        flags: 4,
    };
    assert_eq!(
        c.list_shared_folders(ID).await.unwrap(),
        vec![folder.clone()]
    );
    assert_eq!(
        c.add_shared_folder(ID, &folder).await.unwrap(),
        vec![folder.clone()]
    );
    let mut ro = folder.clone();
    ro.flags = 0;
    assert_eq!(c.update_shared_folder(ID, &ro).await.unwrap()[0].flags, 0);
    c.delete_shared_folder(ID, "src").await.unwrap();
}

#[tokio::test]
async fn nics_list_add_update_delete() {
    let (server, c) = setup().await;
    let nic =
        json!({ "index": 1, "type": "nat", "vmnet": "vmnet8", "macAddress": "00:0c:29:aa:bb:cc" });
    op(
        &server,
        "GET",
        &format!("/api/vms/{ID}/nic"),
        200,
        json!({ "num": 1, "nics": [nic.clone()] }),
    )
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/api/vms/{ID}/nic")))
        .and(body_json(json!({ "type": "custom", "vmnet": "vmnet2" })))
        .respond_with(
            ResponseTemplate::new(201).set_body_raw(
                json!({ "index": 2, "type": "custom", "vmnet": "vmnet2", "macAddress": "" })
                    .to_string(),
                MEDIA_TYPE,
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/api/vms/{ID}/nic/2")))
        .and(body_json(json!({ "type": "hostonly" })))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            json!({ "index": 2, "type": "hostonly" }).to_string(),
            MEDIA_TYPE,
        ))
        .expect(1)
        .mount(&server)
        .await;
    op(
        &server,
        "DELETE",
        &format!("/api/vms/{ID}/nic/2"),
        204,
        Value::Null,
    )
    .await;
    let nics = c.list_nics(ID).await.unwrap();
    assert_eq!(nics[0].kind, "nat");
    assert_eq!(nics[0].mac_address, "00:0c:29:aa:bb:cc");
    assert_eq!(
        c.add_nic(ID, "custom", Some("vmnet2")).await.unwrap().index,
        2
    );
    assert_eq!(
        c.update_nic(ID, 2, "hostonly", None).await.unwrap().kind,
        "hostonly"
    );
    c.delete_nic(ID, 2).await.unwrap();
}

#[tokio::test]
async fn ip_needs_tools_and_nicips() {
    let (server, c) = setup().await;
    op(
        &server,
        "GET",
        &format!("/api/vms/{ID}/ip"),
        200,
        json!({ "ip": "192.168.80.128" }),
    )
    .await;
    op(
        &server,
        "GET",
        &format!("/api/vms/{ID}/nicips"),
        200,
        json!({ "nics": [{ "mac": "00:0c:29:aa:bb:cc", "ip": ["192.168.80.128/24"] }] }),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/vms/NOTOOLS/ip"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(
            r#"{"code":106,"message":"The VMware Tools are not running in the virtual machine"}"#,
            MEDIA_TYPE,
        ))
        .mount(&server)
        .await;
    assert_eq!(c.ip(ID).await.unwrap(), "192.168.80.128");
    assert_eq!(
        c.nic_ips(ID).await.unwrap()["nics"][0]["ip"][0],
        "192.168.80.128/24"
    );
    let e = c.ip("NOTOOLS").await.unwrap_err();
    assert!(
        matches!(e, Error::Api { status: 500, ref message, .. } if message.contains("Tools")),
        "{e}"
    );
}

#[tokio::test]
async fn vmnets_mactoip_and_port_forwards() {
    let (server, c) = setup().await;
    op(&server, "GET", "/api/vmnet", 200, json!({ "num": 1, "vmnets": [{ "name": "vmnet8", "type": "nat", "dhcp": "true", "subnet": "192.168.80.0", "mask": "255.255.255.0" }] })).await;
    Mock::given(method("POST"))
        .and(path("/api/vmnets"))
        .and(body_json(json!({ "name": "vmnet3", "type": "hostOnly" })))
        .respond_with(ResponseTemplate::new(201).set_body_raw(
            json!({ "name": "vmnet3", "type": "hostOnly" }).to_string(),
            MEDIA_TYPE,
        ))
        .expect(1)
        .mount(&server)
        .await;
    op(&server, "GET", "/api/vmnet/vmnet8/mactoip", 200, json!({ "num": 1, "mactoips": [{ "vmnet": "vmnet8", "mac": "00:0c:29:aa:bb:cc", "ip": "192.168.80.128" }] })).await;
    Mock::given(method("PUT"))
        .and(path("/api/vmnet/vmnet8/mactoip/00:0c:29:aa:bb:cc"))
        .and(body_json(json!({ "IP": "192.168.80.10" })))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(r#"{"code":0,"message":"ok"}"#, MEDIA_TYPE),
        )
        .expect(1)
        .mount(&server)
        .await;
    op(&server, "GET", "/api/vmnet/vmnet8/portforward", 200, json!({ "num": 1, "port_forwardings": [{ "port": 8080, "protocol": "tcp", "desc": "web", "guest": { "ip": "192.168.80.128", "port": 80 } }] })).await;
    Mock::given(method("PUT"))
        .and(path("/api/vmnet/vmnet8/portforward/tcp/2222"))
        .and(body_json(
            json!({ "guestIp": "192.168.80.128", "guestPort": 22, "desc": "ssh" }),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(r#"{"code":0,"message":"ok"}"#, MEDIA_TYPE),
        )
        .expect(1)
        .mount(&server)
        .await;
    op(
        &server,
        "DELETE",
        "/api/vmnet/vmnet8/portforward/tcp/2222",
        204,
        Value::Null,
    )
    .await;

    assert_eq!(
        c.list_vmnets().await.unwrap()["vmnets"][0]["name"],
        "vmnet8"
    );
    assert_eq!(
        c.create_vmnet("vmnet3", "hostOnly").await.unwrap()["type"],
        "hostOnly"
    );
    assert_eq!(
        c.mac_to_ip("vmnet8").await.unwrap()["mactoips"][0]["ip"],
        "192.168.80.128"
    );
    c.set_mac_to_ip("vmnet8", "00:0c:29:aa:bb:cc", "192.168.80.10")
        .await
        .unwrap();
    let fwd = c.list_port_forwards("vmnet8").await.unwrap();
    assert_eq!((fwd[0].port, fwd[0].guest.port), (8080, 80));
    c.set_port_forward("vmnet8", "tcp", 2222, "192.168.80.128", 22, "ssh")
        .await
        .unwrap();
    c.delete_port_forward("vmnet8", "tcp", 2222).await.unwrap();
}

#[tokio::test]
async fn wrong_credentials_get_a_typed_401_without_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/vms"))
        .respond_with(ResponseTemplate::new(401).set_body_raw(
            r#"{"code":401,"message":"Authentication failed"}"#,
            MEDIA_TYPE,
        ))
        .mount(&server)
        .await;
    let c = VmrestClient::new(&server.uri(), Credentials::new("admin", "wrong-pass")).unwrap();
    let e = c.list_vms().await.unwrap_err();
    assert!(matches!(e, Error::Api { status: 401, .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains("wrong-pass"));
    assert!(matches!(c.get_vm("../x").await, Err(Error::Invalid { .. })));
}

#[tokio::test]
async fn the_backend_clones_sets_hardware_shares_and_drives_power() {
    use std::time::Duration;
    use vmenv_core::vmrest::VmrestHypervisor;
    use vmenv_core::{Hypervisor, SharedFolder, Source, StopOutcome, VmName, VmSpec, VmState};

    let (server, c) = setup().await;
    let hv = VmrestHypervisor::new(c);
    // Before the clone only the template exists; afterwards both.
    Mock::given(method("GET"))
        .and(path("/api/vms"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            json!([{ "id": "TPL", "path": "/vms/photon/photon.vmx" }]).to_string(),
            MEDIA_TYPE,
        ))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(
                json!([
                    { "id": "TPL", "path": "/vms/photon/photon.vmx" },
                    { "id": "WEB", "path": "/vms/web/web.vmx" }
                ])
                .to_string(),
                MEDIA_TYPE,
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/vms"))
        .and(body_json(json!({ "name": "web", "parentId": "TPL" })))
        .respond_with(ResponseTemplate::new(201).set_body_raw(
            json!({ "id": "WEB", "cpu": { "processors": 1 }, "memory": 256 }).to_string(),
            MEDIA_TYPE,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/vms/WEB"))
        .and(body_json(json!({ "processors": 2, "memory": 1024 })))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            json!({ "id": "WEB", "cpu": { "processors": 2 }, "memory": 1024 }).to_string(),
            MEDIA_TYPE,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/vms/WEB/sharedfolders"))
        .and(body_json(
            json!({ "folder_id": "src", "host_path": "/home/a/src", "flags": 4 }),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_raw("[]", MEDIA_TYPE))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms/WEB/power"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(r#"{"power_state":"poweredOn"}"#, MEDIA_TYPE),
        )
        .mount(&server)
        .await;
    for op in ["shutdown", "off"] {
        Mock::given(method("PUT"))
            .and(path("/api/vms/WEB/power"))
            .and(body_string(op))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(r#"{"power_state":"poweredOn"}"#, MEDIA_TYPE),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/api/vms/WEB/ip"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(
            r#"{"code":106,"message":"The VMware Tools are not running in the virtual machine"}"#,
            MEDIA_TYPE,
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/vms/WEB/ip"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(r#"{"ip":"192.168.80.130"}"#, MEDIA_TYPE),
        )
        .mount(&server)
        .await;

    let web = VmName::new("web").unwrap();
    let mut spec = VmSpec::new(web.clone(), Source::Template("photon".into()));
    spec.cpus = 2;
    spec.memory_mib = 1024;
    spec.shared_folders.push(SharedFolder {
        name: "src".into(),
        host_path: "/home/a/src".into(),
        guest_path: "/mnt/hgfs/src".into(),
        writable: true,
    });
    hv.create(&spec).await.unwrap();
    assert_eq!(
        hv.list().await.unwrap(),
        vec![VmName::new("photon").unwrap(), web.clone()]
    );
    assert_eq!(hv.status(&web).await.unwrap().state, VmState::Running);
    assert_eq!(
        hv.status(&VmName::new("nope").unwrap())
            .await
            .unwrap()
            .state,
        VmState::None
    );
    let addr = hv.ip(&web, Duration::from_secs(5)).await.unwrap();
    assert_eq!(addr.guest_ip.to_string(), "192.168.80.130");
    assert_eq!(
        hv.stop(&web, Duration::from_millis(100)).await.unwrap(),
        StopOutcome::Forced
    );
    assert!(matches!(
        hv.create(&spec).await,
        Err(Error::AlreadyExists { .. })
    ));
    spec.source = Source::Image("/x.vmdk".into());
    assert!(hv.create(&spec).await.unwrap_err().is_unsupported());
    assert!(hv.require_snapshots().is_err_and(|e| e.is_unsupported()));
    assert!(hv.require_disk_hotplug().is_err_and(|e| e.is_unsupported()));
    assert!(hv.require_nics().is_ok());
}
