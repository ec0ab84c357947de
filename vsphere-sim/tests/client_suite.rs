//! The SDK client's interop suite (`vsphere-client/tests/interop_vcsim.rs`) run against the
//! in-process simulator: the same checks, through the high-level `Client` (connect, release
//! negotiation, finder walk, container and list views, paged retrieval, WaitForUpdatesEx on a
//! private collector, tasks with progress and typed faults, clone and disk reconfiguration,
//! First Class Disks with attachment, snapshots and metadata, a bad password as a typed
//! `InvalidLogin`). Where the simulator does more than vcsim 0.24.2 (FCD snapshots succeed),
//! the check is the vCenter behaviour.

use std::time::Duration;

use vsphere_client::Error;
use vsphere_client::client::{Client, ConnectOptions, Properties, RetrieveSpec, fcd_id};
use vsphere_client::codec::ManagedObjectReference;
use vsphere_client::types::{
    ObjectSpec, PropertyFilterSpec, PropertySpec, TaskInfoState, VirtualMachineCloneSpec,
    VirtualMachinePowerState,
};
use vsphere_sim::Simulator;

async fn start() -> (Simulator, Client) {
    let sim = Simulator::builder()
        .task_step(Duration::from_millis(2))
        .start()
        .await
        .unwrap();
    let client = connect(&sim).await;
    (sim, client)
}

async fn connect(sim: &Simulator) -> Client {
    Client::connect(
        ConnectOptions::new(&sim.url_with_credentials())
            .expect("the simulator's URL parses")
            .with_keepalive(None),
    )
    .await
    .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_and_negotiates_the_release() {
    let (_sim, client) = start().await;
    assert_eq!(client.api_release(), Some("8.0.3.0"));
    let about = client.service_content().about.as_ref().expect("about");
    assert!(about.full_name.contains("vCenter"), "{}", about.full_name);
    client.logout().await.expect("logout");
    assert!(matches!(
        client
            .properties(&client.service_content().root_folder, &["name"])
            .await,
        Err(Error::SessionClosed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_password_is_a_typed_invalid_login() {
    let sim = Simulator::builder()
        .user("alice")
        .password("right")
        .start()
        .await
        .unwrap();
    let mut url = url::Url::parse(&sim.url_with_credentials()).unwrap();
    url.set_password(Some("pw-8c1f-bad")).unwrap();
    let err = Client::connect(
        ConnectOptions::new(url.as_str())
            .unwrap()
            .with_keepalive(None),
    )
    .await
    .expect_err("the wrong password is refused");
    match &err {
        Error::InvalidLogin { username } => assert_eq!(username, "alice"),
        other => panic!("expected InvalidLogin, got {other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("pw-8c1f-bad"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finder_walks_the_inventory_with_globs() {
    let (_sim, client) = start().await;
    let finder = client.finder().await.expect("finder");
    let vms = finder.find("/DC0/vm/*");
    let mut names: Vec<&str> = vms.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "DC0_C0_RP0_VM0",
            "DC0_C0_RP0_VM1",
            "DC0_C0_RP0_VM2",
            "DC0_C0_RP0_VM3",
            "DC0_C0_RP0_VM4",
            "DC0_C0_RP0_VM5",
            "DC0_H0_VM0",
            "DC0_H0_VM1"
        ]
    );
    assert!(vms.iter().all(|o| o.type_name() == "VirtualMachine"));
    let compute: Vec<&str> = finder
        .find("*/host/*")
        .iter()
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(compute, ["/DC0/host/DC0_C0", "/DC0/host/DC0_H0"]);
    assert_eq!(finder.find("/DC0/host/DC0_C0/DC0_C0_H*").len(), 3);
    assert_eq!(finder.find("/*/datastore/*")[0].name, "LocalDS_0");
    assert_eq!(finder.datacenter(None).unwrap().path, "/DC0");
    assert_eq!(
        finder.datastore(Some("LocalDS_0")).unwrap().name,
        "LocalDS_0"
    );
    // Two resource pools (the cluster's and the standalone host's): ambiguous.
    match finder.resource_pool(None) {
        Err(Error::Ambiguous { matches, .. }) => assert_eq!(matches.len(), 2, "{matches:?}"),
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert!(matches!(
        finder.virtual_machine("/DC0/vm/nope"),
        Err(Error::NotFound { .. })
    ));
    let vm = finder.virtual_machine("DC0_H0_VM0").unwrap();
    assert_eq!(vm.path, "/DC0/vm/DC0_H0_VM0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_view_list_view_and_paged_retrieval() {
    let (_sim, client) = start().await;
    let root = client.service_content().root_folder.clone();
    let view = client
        .container_view(&root, &["VirtualMachine"], true)
        .await
        .expect("view");
    let members = view.objects().await.expect("view members");
    assert_eq!(members.len(), 8);
    let mut pages = view.retrieve(
        &[(
            "VirtualMachine",
            &["name", "runtime.powerState", "config.hardware.numCPU"],
        )],
        Some(3),
    );
    let mut seen = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.next_page().await.expect("page") {
        page_count += 1;
        for c in page {
            let p = Properties::from(c);
            assert_eq!(
                p.get::<VirtualMachinePowerState>("runtime.powerState"),
                Some(VirtualMachinePowerState::PoweredOn)
            );
            assert!(p.get::<i32>("config.hardware.numCPU").unwrap() >= 1);
            seen.push(p.get::<String>("name").unwrap());
        }
    }
    drop(pages);
    assert_eq!(page_count, 3, "8 objects in pages of 3");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
    view.close().await.expect("DestroyView");

    // A list view of two of them.
    let list = client.list_view(&members[..2]).await.expect("list view");
    assert_eq!(list.objects().await.unwrap().len(), 2);
    let got = list
        .retrieve(&[("VirtualMachine", &["name"])], None)
        .collect_all()
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    list.close().await.unwrap();

    // The plain paged retrieval of the same objects.
    let spec = RetrieveSpec::objects("VirtualMachine", &["name"], members).max_objects(3);
    let all = client.retrieve_pages(spec).collect_all().await.unwrap();
    assert_eq!(all.len(), 8);
}

async fn first_vm(client: &Client) -> ManagedObjectReference {
    client
        .finder()
        .await
        .unwrap()
        .virtual_machine("DC0_H0_VM0")
        .unwrap()
        .reference
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_updates_ex_on_a_private_collector() {
    let (_sim, client) = start().await;
    let vm = first_vm(&client).await;
    let mut collector = client
        .new_collector()
        .await
        .expect("CreatePropertyCollector");
    assert_ne!(
        collector.reference(),
        &client.service_content().property_collector,
        "never the session's collector"
    );
    let spec = PropertyFilterSpec {
        prop_set: vec![PropertySpec {
            type_: "VirtualMachine".into(),
            path_set: vec!["runtime.powerState".into()],
            ..PropertySpec::default()
        }],
        object_set: vec![ObjectSpec {
            obj: vm.clone(),
            ..ObjectSpec::default()
        }],
        ..PropertyFilterSpec::default()
    };
    collector
        .create_filter(&spec, false)
        .await
        .expect("CreateFilter");
    let first = collector
        .wait(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the first wait reports current values");
    assert!(collector.version().is_some());
    let change = &first.filter_set[0].object_set[0].change_set[0];
    assert_eq!(change.name, "runtime.powerState");
    // Nothing changed: a zero wait returns no update set.
    assert!(collector.wait(Duration::ZERO).await.unwrap().is_none());

    client.vm(vm.clone()).power_off().await.expect("power off");
    let next = collector
        .wait(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the power-off is reported");
    let val = next.filter_set[0].object_set[0].change_set[0]
        .val
        .clone()
        .unwrap();
    assert_eq!(
        <VirtualMachinePowerState as vsphere_client::codec::Value>::from_any(val).unwrap(),
        VirtualMachinePowerState::PoweredOff
    );
    collector.close().await.expect("DestroyPropertyCollector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_report_progress_results_and_typed_faults() {
    let (_sim, client) = start().await;
    let vm_ref = first_vm(&client).await;
    let vm = client.vm(vm_ref.clone());
    let task = vm
        .mo()
        .power_off_vm_task(&client)
        .await
        .expect("PowerOffVM_Task");
    let mut states = Vec::new();
    client
        .wait_task_with_progress(task, |info| states.push(info.state.clone()))
        .await
        .expect("powered off");
    assert_eq!(states.last(), Some(&TaskInfoState::Success), "{states:?}");
    assert_eq!(
        vm.power_state().await.unwrap(),
        VirtualMachinePowerState::PoweredOff
    );
    // Powering off a powered-off VM fails with the typed fault.
    let err = vm.power_off().await.expect_err("already off");
    assert!(err.is_fault("InvalidPowerState"), "{err:?}");
    assert!(matches!(err, Error::TaskFailed { .. }));
    vm.power_on().await.expect("powered on again");
    assert_eq!(
        vm.power_state().await.unwrap(),
        VirtualMachinePowerState::PoweredOn
    );
    // A typed task result: CloneVM_Task gives the new VM.
    let folder = client
        .finder()
        .await
        .unwrap()
        .find("/DC0/vm")
        .first()
        .map(|o| o.reference.clone())
        .unwrap();
    let clone = vm
        .clone_to(&folder, "clone-1", &VirtualMachineCloneSpec::default())
        .await
        .expect("clone");
    assert_eq!(clone.type_, "VirtualMachine");
    let p = client.properties(&clone, &["name"]).await.unwrap();
    assert_eq!(p.get::<String>("name").as_deref(), Some("clone-1"));
    // A disk added by reconfiguration shows up, and can be removed.
    let before: Vec<i32> = vm.disks().await.unwrap().iter().map(|d| d.key).collect();
    vm.add_disk(2048).await.expect("add disk");
    let disks = vm.disks().await.unwrap();
    assert_eq!(disks.len(), before.len() + 1);
    let added = disks.iter().find(|d| !before.contains(&d.key)).unwrap();
    assert_eq!(added.capacity_kb, 2048, "{disks:?}");
    vm.remove_disk(added.key, true).await.expect("remove disk");
    assert_eq!(vm.disks().await.unwrap().len(), before.len());
    client.vm(clone).destroy().await.expect("destroy the clone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_class_disks_lifecycle_attachment_snapshots_metadata() {
    let (_sim, client) = start().await;
    let finder = client.finder().await.unwrap();
    let ds = finder
        .datastore(Some("LocalDS_0"))
        .unwrap()
        .reference
        .clone();
    let vm0 = client.vm(finder
        .virtual_machine("DC0_H0_VM0")
        .unwrap()
        .reference
        .clone());
    let vm1 = client.vm(finder
        .virtual_machine("DC0_H0_VM1")
        .unwrap()
        .reference
        .clone());
    let disks = client.disks().expect("a VStorageObjectManager");
    let disk = disks
        .create("interop-vol", 10, &ds)
        .await
        .expect("CreateDisk_Task");
    let id = fcd_id(&disk).expect("the new disk has an id");
    assert!(disks.list(&ds).await.unwrap().contains(&id));
    let got = disks.retrieve(&id, &ds).await.expect("retrieve");
    let config = got.config.as_ref().unwrap();
    assert_eq!(config.base_config_info.name, "interop-vol");
    assert_eq!(config.capacity_in_mb, 10);
    assert_eq!(client.fcd_consumer(&id, None).await.unwrap(), None);

    // Attached to one VM, it cannot be attached to another; detached, it can.
    vm0.attach_disk(&id, &ds).await.expect("AttachDisk_Task");
    assert_eq!(
        client.fcd_consumer(&id, None).await.unwrap().as_deref(),
        Some("DC0_H0_VM0")
    );
    match vm1.attach_disk(&id, &ds).await {
        Err(Error::AttachedElsewhere { vm, .. }) => assert_eq!(vm, "DC0_H0_VM0"),
        other => panic!("expected AttachedElsewhere, got {other:?}"),
    }
    // Bypassing the client's check, the server refuses with vCenter's fault.
    let raw = vm1
        .mo()
        .attach_disk_task(
            &client,
            &vsphere_client::types::ID {
                id: id.clone(),
                ..Default::default()
            },
            &ds,
            None,
            None,
        )
        .await
        .unwrap();
    let err = client.wait_task(raw).await.expect_err("locked");
    assert!(err.is_fault("InvalidState"), "{err:?}");
    // Deleting an attached disk is refused too.
    let err = disks.delete(&id, &ds).await.expect_err("attached");
    assert!(err.is_fault("InvalidState"), "{err:?}");

    // Snapshots (vcsim 0.24.2 refuses them; vCenter and this simulator take them).
    let snap = disks
        .snapshot(&id, &ds, "before")
        .await
        .expect("VStorageObjectCreateSnapshot_Task");
    let info = disks.snapshots(&id, &ds).await.unwrap();
    assert_eq!(info.snapshots.len(), 1);
    assert_eq!(info.snapshots[0].description, "before");
    assert_eq!(info.snapshots[0].id.as_ref().unwrap().id, snap);
    disks
        .delete_snapshot(&id, &ds, &snap)
        .await
        .expect("DeleteSnapshot_Task");
    assert!(
        disks
            .snapshots(&id, &ds)
            .await
            .unwrap()
            .snapshots
            .is_empty()
    );
    let err = disks
        .delete_snapshot(&id, &ds, &snap)
        .await
        .expect_err("gone");
    assert!(err.is_fault("NotFound"), "{err:?}");

    // Metadata.
    disks
        .update_metadata(&id, &ds, &[("owner", "team-a"), ("tier", "gold")], &[])
        .await
        .expect("metadata");
    disks
        .update_metadata(&id, &ds, &[("tier", "silver")], &["owner"])
        .await
        .expect("metadata");
    let got = disks.retrieve(&id, &ds).await.unwrap();
    let md: Vec<(String, String)> = got
        .config
        .as_ref()
        .unwrap()
        .base_config_info
        .metadata
        .iter()
        .map(|k| (k.key.clone(), k.value.clone()))
        .collect();
    assert_eq!(md, [("tier".to_owned(), "silver".to_owned())]);

    vm0.detach_disk(&id).await.expect("DetachDisk_Task");
    assert_eq!(client.fcd_consumer(&id, None).await.unwrap(), None);
    vm1.attach_disk(&id, &ds)
        .await
        .expect("attach to the other VM");
    vm1.detach_disk(&id).await.expect("detach again");
    disks
        .delete(&id, &ds)
        .await
        .expect("DeleteVStorageObject_Task");
    assert!(!disks.list(&ds).await.unwrap().contains(&id));
    // A missing disk is a typed fault.
    let err = disks.retrieve(&id, &ds).await.expect_err("gone");
    assert!(err.is_fault("NotFound"), "{err:?}");
}
