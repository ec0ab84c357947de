//! First Class Disk snapshots, metadata, rename, tags, clone and relocate on vim25, ListView,
//! and the `/vslm/sdk` and `/pbm/sdk` endpoints, over real HTTP with the SDK's generated
//! methods.
#![allow(
    clippy::field_reassign_with_default,
    clippy::assigning_clones,
    reason = "generated data objects are built from Default, field by field"
)]
#![allow(
    clippy::many_single_char_names,
    reason = "short names for the manager, task and object of each step read like the API"
)]

mod common;

use std::time::Duration;

use common::{
    connect, create_spec, disk_id, fcd_tags, find, id, kv, new_disk, read, task_fault, task_info,
    task_ok, vim_disks, vslm_wait,
};
use vsphere_client::codec::{Any, ManagedObjectReference, Poly};
use vsphere_client::mo::{
    PbmPlacementSolver, PbmProfileProfileManager, PbmServiceInstance, VcenterVStorageObjectManager,
    ViewManager, VirtualDiskManager, VslmServiceInstance, VslmTask, VslmVStorageObjectManager,
};
use vsphere_client::rest::{Cardinality, CategorySpec, TagSpec};
use vsphere_client::types::{
    DatastoreSummary, FileBackedVirtualDiskSpec, ID, PbmCapabilityProfile, PbmPlacementHub,
    PbmProfileResourceType, ServiceContent, TaskInfoState, VStorageObject, VirtualDiskSpec,
    VslmCloneSpec, VslmCreateSpecDiskFileBackingSpec, VslmRelocateSpec, VslmTaskInfoState,
    VslmVsoVStorageObjectQuerySpec,
};
use vsphere_sim::Simulator;

/// A simulator with 2 ms task stages and a session on it, and the `LocalDS_0` datastore.
async fn session() -> (
    Simulator,
    common::Http,
    ServiceContent,
    ManagedObjectReference,
) {
    let sim = Simulator::builder()
        .task_step(Duration::from_millis(2))
        .start()
        .await
        .unwrap();
    let (http, content) = connect(&sim).await;
    let local = find(&http, &content, "DC0/datastore/LocalDS_0").await;
    (sim, http, content, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcd_snapshots_metadata_rename_clone_relocate_on_vim25() {
    let (_sim, http, content, local) = session().await;
    let shared = find(&http, &content, "DC0/datastore/SharedDS_0").await;
    let m = vim_disks(&content);
    let disk = new_disk(&http, &content, "vol", 32, &local).await;

    // Snapshots.
    let info = task_info(
        &http,
        &content,
        m.v_storage_object_create_snapshot_task(&http, &id(&disk), &local, "first")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let Some(Any::Data(s)) = info.result else {
        panic!("no snapshot id")
    };
    let snap = s.downcast_ref::<ID>().unwrap().id.clone();
    let snaps = m
        .retrieve_snapshot_info(&http, &id(&disk), &local)
        .await
        .unwrap();
    assert_eq!(snaps.snapshots.len(), 1);
    assert_eq!(snaps.snapshots[0].description, "first");
    let details = m
        .retrieve_snapshot_details(&http, &id(&disk), &local, &id(&snap))
        .await
        .unwrap();
    let path = details.path.unwrap();
    assert!(
        std::path::Path::new(&path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("vmdk")),
        "{path}"
    );
    let e = m
        .retrieve_snapshot_info(&http, &id(&disk), &shared)
        .await
        .unwrap_err();
    assert!(e.is_fault("NotFound"), "{e}");
    let info = task_info(
        &http,
        &content,
        m.delete_snapshot_task(&http, &id(&disk), &local, &id("no-such-snapshot"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Error);
    assert_eq!(
        info.error.unwrap().fault.as_ref().unwrap().type_name(),
        "NotFound"
    );
    let info = task_info(
        &http,
        &content,
        m.delete_snapshot_task(&http, &id(&disk), &local, &id(&snap))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);

    // Metadata and rename.
    let info = task_info(
        &http,
        &content,
        m.v_center_update_v_storage_object_metadata_ex_task(
            &http,
            &id(&disk),
            &local,
            &[kv("app", "db"), kv("env", "test")],
            &[],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    m.rename_v_storage_object(&http, &id(&disk), &local, "vol-renamed")
        .await
        .unwrap();
    let e = m
        .rename_v_storage_object(&http, &id(&disk), &local, " ")
        .await
        .unwrap_err();
    assert!(e.is_fault("InvalidArgument"), "{e}");
    let o = m
        .retrieve_v_storage_object(&http, &id(&disk), &local, &[])
        .await
        .unwrap();
    let c = o.config.as_ref().unwrap();
    assert_eq!(c.base_config_info.name, "vol-renamed");
    assert_eq!(c.base_config_info.metadata.len(), 2);

    // Clone onto the shared datastore, then relocate the original there.
    let mut cs = VslmCloneSpec::default();
    cs.name = "vol-copy".into();
    let mut b = VslmCreateSpecDiskFileBackingSpec::default();
    b.vslm_create_spec_backing_spec.datastore = shared.clone();
    cs.vslm_migrate_spec.backing_spec = Some(Poly::new(b.clone()));
    let info = task_info(
        &http,
        &content,
        m.clone_v_storage_object_task(&http, &id(&disk), &local, &cs)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let Some(Any::Data(o)) = info.result else {
        panic!("no clone")
    };
    let copy = o.downcast_ref::<VStorageObject>().unwrap();
    assert_eq!(copy.config.as_ref().unwrap().capacity_in_mb, 32);
    assert_eq!(
        copy.config
            .as_ref()
            .unwrap()
            .base_config_info
            .metadata
            .len(),
        2
    );
    assert!(
        m.list_v_storage_object(&http, &shared)
            .await
            .unwrap()
            .iter()
            .any(|i| i.id == disk_id(copy))
    );
    let mut rs = VslmRelocateSpec::default();
    rs.vslm_migrate_spec.backing_spec = Some(Poly::new(b));
    let info = task_info(
        &http,
        &content,
        m.relocate_v_storage_object_task(&http, &id(&disk), &local, &rs)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    assert!(
        m.list_v_storage_object(&http, &local)
            .await
            .unwrap()
            .iter()
            .all(|i| i.id != disk)
    );
    let o = m
        .retrieve_v_storage_object(&http, &id(&disk), &shared, &[])
        .await
        .unwrap();
    assert!(o.config.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcd_tags_come_from_the_tagging_service() {
    let (sim, http, content, local) = session().await;
    let m = vim_disks(&content);
    let disk = new_disk(&http, &content, "tagged", 16, &local).await;

    // A tag that the tagging service does not have: NotFound.
    let e = m
        .attach_tag_to_v_storage_object(&http, &id(&disk), "tier", "gold")
        .await
        .unwrap_err();
    assert!(e.is_fault("NotFound"), "{e}");

    // Create the category and tag over REST, then attach through vim25.
    let rest = vsphere_client::rest::RestClient::connect(
        vsphere_client::client::ConnectOptions::new(&sim.url_with_credentials()).unwrap(),
    )
    .await
    .unwrap();
    let cat = rest
        .create_category(&CategorySpec::new("tier", Cardinality::Single))
        .await
        .unwrap();
    rest.create_tag(&TagSpec::new("gold", &cat)).await.unwrap();
    m.attach_tag_to_v_storage_object(&http, &id(&disk), "tier", "gold")
        .await
        .unwrap();
    assert_eq!(
        fcd_tags(&http, &m, &disk).await,
        [("tier".to_owned(), "gold".to_owned())]
    );
    let ids = m
        .list_v_storage_objects_attached_to_tag(&http, "tier", "gold")
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].id, disk);
    m.detach_tag_from_v_storage_object(&http, &id(&disk), "tier", "gold")
        .await
        .unwrap();
    assert!(
        m.list_tags_attached_to_v_storage_object(&http, &id(&disk))
            .await
            .unwrap()
            .is_empty()
    );
    let e = m
        .list_tags_attached_to_v_storage_object(&http, &id("no-such-disk"))
        .await
        .unwrap_err();
    assert!(e.is_fault("NotFound"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_views_are_created_modified_and_reset() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let vm0 = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let vm1 = find(&http, &content, "DC0/vm/DC0_H0_VM1").await;
    let ds = find(&http, &content, "DC0/datastore/LocalDS_0").await;
    let gone = ManagedObjectReference::new("VirtualMachine", "vm-404");
    let vmgr = ViewManager::from_reference(content.view_manager.clone().unwrap());
    let view = vmgr
        .create_list_view(&http, &[vm0.clone(), gone.clone()])
        .await
        .unwrap();
    assert_eq!(view.type_, "ListView");
    let lv = vsphere_client::mo::ListView::from_reference(view.clone());
    let read = |v: ManagedObjectReference| {
        let http = &http;
        let content = &content;
        async move {
            let mut os = vsphere_client::types::ObjectSpec::default();
            os.obj = v;
            let mut ps = vsphere_client::types::PropertySpec::default();
            ps.type_ = "ListView".into();
            ps.path_set = vec!["view".into()];
            let mut spec = vsphere_client::types::PropertyFilterSpec::default();
            spec.object_set = vec![os];
            spec.prop_set = vec![ps];
            let r = vsphere_client::mo::PropertyCollector::from_reference(
                content.property_collector.clone(),
            )
            .retrieve_properties_ex(
                http,
                &[spec],
                &vsphere_client::types::RetrieveOptions::default(),
            )
            .await
            .unwrap()
            .unwrap();
            match r.objects[0].prop_set.first().map(|p| p.val.clone()) {
                Some(Any::Array(vsphere_client::codec::AnyArray::MoRef(v))) => v,
                _ => Vec::new(),
            }
        }
    };
    assert_eq!(read(view.clone()).await, vec![vm0.clone()]);
    let unresolved = lv
        .modify_list_view(
            &http,
            &[vm1.clone(), gone.clone()],
            std::slice::from_ref(&vm0),
        )
        .await
        .unwrap();
    assert_eq!(unresolved, vec![gone.clone()]);
    assert_eq!(read(view.clone()).await, vec![vm1.clone()]);
    let unresolved = lv
        .reset_list_view(&http, &[ds.clone(), vm0.clone()])
        .await
        .unwrap();
    assert!(unresolved.is_empty());
    assert_eq!(read(view.clone()).await, [ds, vm0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vslm_endpoint_shares_the_disk_store() {
    let (sim, http, content, local) = session().await;
    let vm0 = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let vslm = http.on_path("/vslm/sdk");
    let vc = VslmServiceInstance::new("ServiceInstance")
        .retrieve_content(&vslm)
        .await
        .unwrap();
    assert!(vc.about_info.unwrap().name.contains("Storage Lifecycle"));
    let m = VslmVStorageObjectManager::from_reference(vc.v_storage_object_manager);

    // Create through vslm: a VslmTask that completes with the disk.
    let t = m
        .vslm_create_disk_task(&vslm, &create_spec("vslm-vol", 8, &local))
        .await
        .unwrap();
    assert_eq!(t.type_, "VslmTask");
    let info = vslm_wait(&vslm, t.clone()).await;
    let task = VslmTask::from_reference(t);
    assert_eq!(info.state, VslmTaskInfoState::Success, "{:?}", info.error);
    let Some(Any::Data(o)) = task.vslm_query_task_result(&vslm).await.unwrap() else {
        panic!("no result")
    };
    let disk = disk_id(o.downcast_ref::<VStorageObject>().unwrap());

    // vim25 sees it.
    let vim = vim_disks(&content);
    assert!(
        vim.list_v_storage_object(&http, &local)
            .await
            .unwrap()
            .iter()
            .any(|i| i.id == disk)
    );
    let o = m
        .vslm_retrieve_v_storage_object(&vslm, &id(&disk))
        .await
        .unwrap();
    assert_eq!(o.config.unwrap().base_config_info.name, "vslm-vol");

    // Query by name.
    let mut q = VslmVsoVStorageObjectQuerySpec::default();
    q.query_field = "name".into();
    q.query_operator = "startsWith".into();
    q.query_value = vec!["vslm-".into()];
    let r = m
        .vslm_list_v_storage_object_for_spec(&vslm, &[q], 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.id.len(), 1);
    assert!(r.all_records_returned);

    // Metadata, attach and associations.
    let wait = |t: ManagedObjectReference| vslm_wait(&vslm, t);
    let info = wait(
        m.vslm_update_v_storage_object_metadata_task(&vslm, &id(&disk), &[kv("k", "v")], &[])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, VslmTaskInfoState::Success, "{:?}", info.error);
    assert_eq!(
        m.vslm_retrieve_v_storage_object_metadata_value(&vslm, &id(&disk), None, "k")
            .await
            .unwrap(),
        "v"
    );
    let e = m
        .vslm_retrieve_v_storage_object_metadata_value(&vslm, &id(&disk), None, "nope")
        .await
        .unwrap_err();
    assert!(e.is_fault("KeyNotFound"), "{e}");
    let info = wait(
        m.vslm_attach_disk_task(&vslm, &id(&disk), &vm0, None, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, VslmTaskInfoState::Success, "{:?}", info.error);
    let a = m
        .vslm_retrieve_v_storage_object_associations(&vslm, &[id(&disk)])
        .await
        .unwrap();
    assert_eq!(a[0].vm_disk_association[0].vm_id, vm0.value);
    // Deleting an attached disk fails; the task result raises the fault.
    let t = m
        .vslm_delete_v_storage_object_task(&vslm, &id(&disk))
        .await
        .unwrap();
    let info = wait(t.clone()).await;
    assert_eq!(info.state, VslmTaskInfoState::Error);
    let e = VslmTask::from_reference(t)
        .vslm_query_task_result(&vslm)
        .await
        .unwrap_err();
    assert!(e.is_fault("InvalidState"), "{e}");

    // Without a session: NotAuthenticated.
    let anon = common::Http::anonymous(&sim, "/vslm/sdk");
    let e = m
        .vslm_retrieve_v_storage_object(&anon, &id(&disk))
        .await
        .unwrap_err();
    assert!(e.is_fault("NotAuthenticated"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbm_endpoint_serves_default_profiles_and_placement() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let pbm = http.on_path("/pbm/sdk");
    let c = PbmServiceInstance::new("ServiceInstance")
        .pbm_retrieve_service_content(&pbm)
        .await
        .unwrap();
    let pm = PbmProfileProfileManager::from_reference(c.profile_manager);
    let mut rt = PbmProfileResourceType::default();
    rt.resource_type = "STORAGE".into();
    let ids = pm.pbm_query_profile(&pbm, &rt, None).await.unwrap();
    assert_eq!(ids.len(), 4);
    let profiles = pm.pbm_retrieve_content(&pbm, &ids).await.unwrap();
    let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    assert!(
        names.contains(&"vSAN Default Storage Policy".to_owned()),
        "{names:?}"
    );
    let encryption = profiles
        .iter()
        .find(|p| p.name == "VM Encryption Policy")
        .unwrap();
    let cap = encryption.downcast_ref::<PbmCapabilityProfile>().unwrap();
    assert_eq!(cap.profile_category, "REQUIREMENT");
    let enc_id = encryption.profile_id.as_deref().unwrap().clone();
    let vsan_id = profiles
        .iter()
        .find(|p| p.name == "vSAN Default Storage Policy")
        .unwrap()
        .profile_id
        .as_deref()
        .unwrap()
        .clone();

    let solver = PbmPlacementSolver::from_reference(c.placement_solver);
    let datastores = {
        let mut v = vec![
            find(&http, &content, "DC0/datastore/LocalDS_0").await,
            find(&http, &content, "DC0/datastore/SharedDS_0").await,
        ];
        v.sort_by(|a, b| a.value.cmp(&b.value));
        v
    };
    let hubs = solver
        .pbm_query_matching_hub(&pbm, &[], &enc_id)
        .await
        .unwrap();
    let mut hub_ids: Vec<String> = hubs.iter().map(|h| h.hub_id.clone()).collect();
    hub_ids.sort();
    assert_eq!(
        hub_ids,
        datastores
            .iter()
            .map(|d| d.value.clone())
            .collect::<Vec<_>>()
    );
    assert!(hubs.iter().all(|h| h.hub_type == "Datastore"));
    let r = solver
        .pbm_check_compatibility(&pbm, &[], &vsan_id)
        .await
        .unwrap();
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|x| !x.error.is_empty()), "VMFS is not vSAN");
    assert!(
        solver
            .pbm_query_matching_hub(&pbm, &[], &vsan_id)
            .await
            .unwrap()
            .is_empty()
    );
    let mut bogus = PbmPlacementHub::default();
    bogus.hub_type = "Datastore".into();
    bogus.hub_id = "datastore-404".into();
    let e = solver
        .pbm_check_compatibility(&pbm, &[bogus], &enc_id)
        .await
        .unwrap_err();
    assert!(e.is_fault("PbmNonExistentHubs"), "{e}");
    let e = pm
        .pbm_retrieve_content(
            &pbm,
            &[{
                let mut p = vsphere_client::types::PbmProfileId::default();
                p.unique_id = "nope".into();
                p
            }],
        )
        .await
        .unwrap_err();
    assert!(e.is_fault("InvalidArgument"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcd_revert_on_vim25_and_vslm_drops_later_snapshots() {
    let (_sim, http, content, local) = session().await;
    let m = vim_disks(&content);
    let disk = new_disk(&http, &content, "reverted", 8, &local).await;
    let mut snaps = Vec::new();
    for label in ["one", "two", "three"] {
        let info = task_ok(
            &http,
            &content,
            m.v_storage_object_create_snapshot_task(&http, &id(&disk), &local, label)
                .await
                .unwrap(),
        )
        .await;
        let Some(Any::Data(s)) = info.result else {
            panic!("no snapshot id")
        };
        snaps.push(s.downcast_ref::<ID>().unwrap().id.clone());
    }
    let count = |m: &VcenterVStorageObjectManager| {
        let call = m.retrieve_snapshot_info(&http, &id(&disk), &local);
        async move { call.await.unwrap().snapshots.len() }
    };
    // vim25: back to "two"; "three" goes.
    task_ok(
        &http,
        &content,
        m.revert_v_storage_object_task(&http, &id(&disk), &local, &id(&snaps[1]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(count(&m).await, 2);
    // An unknown snapshot: the task fails with NotFound.
    let info = task_info(
        &http,
        &content,
        m.revert_v_storage_object_task(&http, &id(&disk), &local, &id("no-such"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Error);
    assert_eq!(task_fault(&info).as_deref(), Some("NotFound"));
    // vslm: back to "one".
    let vslm = http.on_path("/vslm/sdk");
    let vc = VslmServiceInstance::new("ServiceInstance")
        .retrieve_content(&vslm)
        .await
        .unwrap();
    let vm = VslmVStorageObjectManager::from_reference(vc.v_storage_object_manager);
    let task = vm
        .vslm_revert_v_storage_object_task(&vslm, &id(&disk), &id(&snaps[0]))
        .await
        .unwrap();
    let info = vslm_wait(&vslm, task).await;
    assert_eq!(info.state, VslmTaskInfoState::Success, "{:?}", info.error);
    assert_eq!(count(&m).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_disk_manager_copies_moves_inflates_and_shrinks() {
    let (_sim, http, content, local) = session().await;
    let vdm = VirtualDiskManager::from_reference(content.virtual_disk_manager.clone().unwrap());
    let free = |ds: ManagedObjectReference| {
        let (http, content) = (&http, &content);
        async move {
            let Some(Any::Data(s)) = read(http, content, &ds, "summary").await else {
                panic!("no summary")
            };
            s.downcast_ref::<DatastoreSummary>().unwrap().free_space
        }
    };
    let shared = find(&http, &content, "DC0/datastore/SharedDS_0").await;
    let (local0, shared0) = (free(local.clone()).await, free(shared.clone()).await);
    let mut spec = FileBackedVirtualDiskSpec::default();
    spec.capacity_kb = 2048;
    spec.disk_type = "thin".into();
    spec.adapter_type = "lsiLogic".into();
    let spec = Poly::<VirtualDiskSpec>::new(spec);
    task_ok(
        &http,
        &content,
        vdm.create_virtual_disk_task(&http, "[LocalDS_0] v/a.vmdk", None, &spec)
            .await
            .unwrap(),
    )
    .await;
    // Copy or move `from` to `to`: the task's info.
    let transfer = |copy: bool, from: &'static str, to: &'static str| {
        let call = if copy {
            vdm.copy_virtual_disk_task(&http, from, None, to, None, None, None)
        } else {
            vdm.move_virtual_disk_task(&http, from, None, to, None, None, &[])
        };
        let (http, content) = (&http, &content);
        async move { task_info(http, content, call.await.unwrap()).await }
    };
    let info = transfer(true, "[LocalDS_0] v/a.vmdk", "[SharedDS_0] v/b.vmdk").await;
    assert!(matches!(info.result, Some(Any::String(p)) if p == "[SharedDS_0] v/b.vmdk"));
    assert_eq!(free(shared.clone()).await, shared0 - (2 << 20));
    // Copying onto an existing file without force: FileAlreadyExists.
    let info = transfer(true, "[LocalDS_0] v/a.vmdk", "[SharedDS_0] v/b.vmdk").await;
    assert_eq!(task_fault(&info).as_deref(), Some("FileAlreadyExists"));
    let info = transfer(false, "[LocalDS_0] v/a.vmdk", "[SharedDS_0] v/c.vmdk").await;
    assert_eq!(task_fault(&info), None);
    assert_eq!(free(local.clone()).await, local0);
    assert_eq!(free(shared.clone()).await, shared0 - (4 << 20));
    task_ok(
        &http,
        &content,
        vdm.inflate_virtual_disk_task(&http, "[SharedDS_0] v/c.vmdk", None)
            .await
            .unwrap(),
    )
    .await;
    task_ok(
        &http,
        &content,
        vdm.shrink_virtual_disk_task(&http, "[SharedDS_0] v/c.vmdk", None, None)
            .await
            .unwrap(),
    )
    .await;
    // A VM's disk cannot be moved away from it.
    let vm_disk = "[LocalDS_0] DC0_H0_VM0/DC0_H0_VM0.vmdk";
    let info = transfer(false, vm_disk, "[LocalDS_0] v/d.vmdk").await;
    assert_eq!(task_fault(&info).as_deref(), Some("FileLocked"));
}
