//! `--state-dir` with the standalone binary: everything made through the APIs (inventory
//! changes, First Class Disks with metadata, snapshots and tags, the tagging store, loose
//! virtual disks, storage policy compliance results) is there again after SIGTERM and a
//! restart on the same directory.
#![allow(
    clippy::field_reassign_with_default,
    reason = "generated data objects are built from Default, field by field"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{Http, connect_to, fcd_tags, find, id, kv, read, wait_task};
use vsphere_client::client::ConnectOptions;
use vsphere_client::codec::{Any, ManagedObjectReference, Poly};
use vsphere_client::mo::{
    PbmComplianceManager, PbmServiceInstance, VcenterVStorageObjectManager, VirtualDiskManager,
    VirtualMachine,
};
use vsphere_client::rest::{Cardinality, CategorySpec, RestClient, TagSpec};
use vsphere_client::types::{
    FileBackedVirtualDiskSpec, PbmProfileId, PbmServerObjectRef, ServiceContent, TaskInfoState,
    VirtualDiskSpec, VirtualMachineConfigSpec,
};

/// The standalone simulator on `dir`: the process and its URL with credentials.
fn start(dir: &std::path::Path) -> (Child, url::Url) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vsphere-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--vms-per-host",
            "1",
            "--state-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start vsphere-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, url::Url::parse(line.trim()).unwrap())
}

fn stop(mut child: Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
}

async fn connect(url: &url::Url) -> (Http, ServiceContent) {
    let mut plain = url.clone();
    plain.set_username("").unwrap();
    plain.set_password(None).unwrap();
    connect_to(plain.as_str(), url.username(), url.password().unwrap()).await
}

fn entity(vm: &ManagedObjectReference) -> PbmServerObjectRef {
    let mut e = PbmServerObjectRef::default();
    e.object_type = "virtualMachine".into();
    e.key.clone_from(&vm.value);
    e
}

/// The VM Encryption policy's id (it fits every datastore).
const ENCRYPTION: &str = "4d5f673c-536f-11e6-beb8-9e71128cae77";
const LOOSE: &str = "[LocalDS_0] loose/a.vmdk";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart_of_the_binary() {
    let dir = std::env::temp_dir().join(format!("vsphere-sim-state-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // First run: make one of everything.
    let (child, url) = start(&dir);
    let (http, content) = connect(&url).await;
    let local = find(&http, &content, "DC0/datastore/LocalDS_0").await;
    let vm = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let m = common::vim_disks(&content);
    let disk = common::new_disk(&http, &content, "kept", 16, &local).await;
    let task = m
        .v_center_update_v_storage_object_metadata_ex_task(
            &http,
            &id(&disk),
            &local,
            &[kv("app", "db")],
            &[],
        )
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, task.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let task = m
        .v_storage_object_create_snapshot_task(&http, &id(&disk), &local, "before")
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, task.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);

    let rest = RestClient::connect(ConnectOptions::new(url.as_str()).unwrap())
        .await
        .unwrap();
    let cat = rest
        .create_category(&CategorySpec::new("tier", Cardinality::Multiple))
        .await
        .unwrap();
    rest.create_tag(&TagSpec::new("gold", &cat)).await.unwrap();
    m.attach_tag_to_v_storage_object(&http, &id(&disk), "tier", "gold")
        .await
        .unwrap();

    let mut spec = VirtualMachineConfigSpec::default();
    spec.annotation = Some("kept across restarts".into());
    let task = VirtualMachine::from_reference(vm.clone())
        .reconfig_vm_task(&http, &spec)
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, task.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);

    let vdm = VirtualDiskManager::from_reference(content.virtual_disk_manager.clone().unwrap());
    let mut ds = FileBackedVirtualDiskSpec::default();
    ds.capacity_kb = 2048;
    ds.virtual_disk_spec.disk_type = "thin".into();
    ds.virtual_disk_spec.adapter_type = "lsiLogic".into();
    let task = vdm
        .create_virtual_disk_task(&http, LOOSE, None, &Poly::<VirtualDiskSpec>::new(ds))
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, task.task().reference()).await;
    assert!(
        matches!(&info.result, Some(Any::String(p)) if p == LOOSE),
        "{info:?}"
    );
    let uuid = vdm
        .query_virtual_disk_uuid(&http, LOOSE, None)
        .await
        .unwrap();

    let pbm = PbmServiceInstance::new("ServiceInstance");
    let pbm_http = http.on_path("/pbm/sdk");
    let pbm_content = pbm.pbm_retrieve_service_content(&pbm_http).await.unwrap();
    let compliance = PbmComplianceManager::from_reference(pbm_content.compliance_manager.clone());
    let mut profile = PbmProfileId::default();
    profile.unique_id = ENCRYPTION.into();
    let checked = compliance
        .pbm_check_compliance(&pbm_http, &[entity(&vm)], Some(&profile))
        .await
        .unwrap();
    assert_eq!(checked[0].compliance_status, "compliant");
    stop(child);

    // Second run on the same directory: all of it is back.
    let (child, url) = start(&dir);
    let (http, content) = connect(&url).await;
    assert_eq!(find(&http, &content, "DC0/vm/DC0_H0_VM0").await, vm);
    let annotation = read(&http, &content, &vm, "config.annotation").await;
    assert_eq!(
        annotation.as_ref().and_then(Any::as_str),
        Some("kept across restarts")
    );
    let m = VcenterVStorageObjectManager::from_reference(
        content.v_storage_object_manager.clone().unwrap(),
    );
    let o = m
        .retrieve_v_storage_object(&http, &id(&disk), &local, &[])
        .await
        .unwrap();
    let c = o.config.as_ref().unwrap();
    assert_eq!(c.base_config_info.name, "kept");
    assert_eq!(c.base_config_info.metadata.len(), 1);
    assert_eq!(c.base_config_info.metadata[0].value, "db");
    let snaps = m
        .retrieve_snapshot_info(&http, &id(&disk), &local)
        .await
        .unwrap();
    assert_eq!(snaps.snapshots.len(), 1);
    assert_eq!(snaps.snapshots[0].description, "before");
    assert_eq!(
        fcd_tags(&http, &m, &disk).await,
        [("tier".to_owned(), "gold".to_owned())]
    );
    let rest = RestClient::connect(ConnectOptions::new(url.as_str()).unwrap())
        .await
        .unwrap();
    assert_eq!(rest.list_categories().await.unwrap(), vec![cat]);
    let vdm = VirtualDiskManager::from_reference(content.virtual_disk_manager.clone().unwrap());
    assert_eq!(
        vdm.query_virtual_disk_uuid(&http, LOOSE, None)
            .await
            .unwrap(),
        uuid
    );
    let pbm_http = http.on_path("/pbm/sdk");
    let fetched = compliance
        .pbm_fetch_compliance_result(&pbm_http, &[entity(&vm)], None)
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].compliance_status, "compliant");
    assert_eq!(fetched[0].check_time, checked[0].check_time);
    stop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}
