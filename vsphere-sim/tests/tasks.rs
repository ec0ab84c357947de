//! Tasks, WaitForUpdatesEx, VM operations, First Class Disks, SearchIndex and fault injection,
//! driven over real HTTP with the SDK's own generated methods.
#![allow(
    clippy::field_reassign_with_default,
    reason = "generated data objects are built from Default, field by field"
)]

mod common;

use std::time::{Duration, Instant};

use common::{connect, find, read, wait_task};
use vsphere_client::codec::{Any, AnyArray, ManagedObjectReference, Poly};
use vsphere_client::mo::{
    Folder, ManagedEntity, PropertyCollector, ResourcePool, SearchIndex,
    VcenterVStorageObjectManager, VirtualMachine,
};
use vsphere_client::types::{
    DatastoreSummary, ID, ObjectSpec, PropertyFilterSpec, PropertySpec, ResourceConfigSpec,
    ServiceContent, TaskInfoState, VStorageObject, VirtualDeviceConfigSpec,
    VirtualDeviceConfigSpecFileOperation, VirtualDeviceConfigSpecOperation,
    VirtualDeviceFileBackingInfo, VirtualDisk, VirtualDiskFlatVer2BackingInfo,
    VirtualMachineCloneSpec, VirtualMachineConfigSpec, WaitOptions,
};
use vsphere_sim::Simulator;

async fn free_space(
    http: &common::Http,
    content: &ServiceContent,
    ds: &ManagedObjectReference,
) -> i64 {
    let Some(Any::Data(s)) = read(http, content, ds, "summary").await else {
        panic!("no summary")
    };
    s.downcast_ref::<DatastoreSummary>().unwrap().free_space
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_task_moves_queued_running_success_through_wait_for_updates() {
    let sim = Simulator::builder()
        .task_step(Duration::from_millis(250))
        .start()
        .await
        .unwrap();
    let (http, content) = connect(&sim).await;
    let vm_ref = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let vm = VirtualMachine::from_reference(vm_ref.clone());
    let pending = vm.power_off_vm_task(&http).await.unwrap();
    let task = pending.task().reference().clone();
    let (states, info) = wait_task(&http, &content, &task).await;
    assert_eq!(
        states,
        [
            TaskInfoState::Queued,
            TaskInfoState::Running,
            TaskInfoState::Running,
            TaskInfoState::Success
        ],
        "every transition is seen"
    );
    assert_eq!(info.progress, Some(100));
    assert_eq!(info.entity.as_ref(), Some(&vm_ref));
    assert_eq!(info.entity_name.as_deref(), Some("DC0_H0_VM0"));
    let Some(Any::Enum(state)) = read(&http, &content, &vm_ref, "runtime.powerState").await else {
        panic!("no power state")
    };
    assert_eq!(state.as_str(), "poweredOff");

    // The task is listed by the TaskManager and by the VM.
    let tm = content.task_manager.clone().unwrap();
    let Some(Any::Array(AnyArray::MoRef(recent))) = read(&http, &content, &tm, "recentTask").await
    else {
        panic!("no recentTask")
    };
    assert!(recent.contains(&task));
    let Some(Any::Array(AnyArray::MoRef(vm_recent))) =
        read(&http, &content, &vm_ref, "recentTask").await
    else {
        panic!("no VM recentTask")
    };
    assert!(vm_recent.contains(&task));

    // Powering off a powered-off VM: the task ends in error with the typed fault.
    let pending = vm.power_off_vm_task(&http).await.unwrap();
    let (_, info) = wait_task(&http, &content, pending.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Error);
    let fault = info.error.as_ref().unwrap().fault.as_ref().unwrap();
    assert_eq!(fault.type_name(), "InvalidPowerState");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_updates_ex_versions_timeouts_truncation_and_cancel() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let pc = PropertyCollector::from_reference(content.property_collector.clone());
    let private =
        PropertyCollector::from_reference(pc.create_property_collector(&http).await.unwrap());
    // A filter over every VM (through the vm folder) with name and power state.
    let dc_vm = find(&http, &content, "DC0/vm").await;
    let mut ts = vsphere_client::types::TraversalSpec::default();
    ts.name = Some("children".into());
    ts.type_ = "Folder".into();
    ts.path = "childEntity".into();
    let mut os = ObjectSpec::default();
    os.obj = dc_vm;
    os.skip = Some(true);
    os.select_set = vec![Poly::new(ts)];
    let mut ps = PropertySpec::default();
    ps.type_ = "VirtualMachine".into();
    ps.path_set = vec!["name".into(), "runtime.powerState".into()];
    let mut spec = PropertyFilterSpec::default();
    spec.object_set = vec![os];
    spec.prop_set = vec![ps];
    private.create_filter(&http, &spec, true).await.unwrap();

    // maxObjectUpdates: 5 of 8 VMs, truncated; the rest in the next call.
    let mut options = WaitOptions::default();
    options.max_wait_seconds = Some(0);
    options.max_object_updates = Some(5);
    let first = private
        .wait_for_updates_ex(&http, Some(""), Some(&options))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.filter_set[0].object_set.len(), 5);
    assert_eq!(first.truncated, Some(true));
    let second = private
        .wait_for_updates_ex(&http, Some(&first.version), Some(&options))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.filter_set[0].object_set.len(), 3);
    assert_ne!(second.version, first.version);

    // Nothing changed: maxWaitSeconds runs out and the answer is null.
    options.max_wait_seconds = Some(1);
    let started = Instant::now();
    let none = private
        .wait_for_updates_ex(&http, Some(&second.version), Some(&options))
        .await
        .unwrap();
    assert!(none.is_none());
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A change wakes a waiting call with a modify of just that property.
    let vm = find(&http, &content, "DC0/vm/DC0_H0_VM1").await;
    let waiter = {
        let private = PropertyCollector::from_reference(private.reference().clone());
        let version = second.version.clone();
        let http = &http;
        async move {
            let mut o = WaitOptions::default();
            o.max_wait_seconds = Some(10);
            private
                .wait_for_updates_ex(http, Some(&version), Some(&o))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let power = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        VirtualMachine::from_reference(vm.clone())
            .suspend_vm_task(&http)
            .await
            .unwrap();
    };
    let (set, ()) = tokio::join!(waiter, power);
    let u = &set.filter_set[0].object_set[0];
    assert_eq!(u.obj, vm);
    assert_eq!(u.change_set.len(), 1);
    assert_eq!(u.change_set[0].name, "runtime.powerState");

    // CancelWaitForUpdates ends a wait in progress with RequestCanceled.
    let waiter = async {
        let mut o = WaitOptions::default();
        o.max_wait_seconds = Some(30);
        private
            .wait_for_updates_ex(&http, Some(&set.version), Some(&o))
            .await
    };
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        private.cancel_wait_for_updates(&http).await.unwrap();
    };
    let (r, ()) = tokio::join!(waiter, cancel);
    let e = r.unwrap_err();
    assert!(e.is_fault("RequestCanceled"), "{e}");
    private.destroy_property_collector(&http).await.unwrap();
    let e = private
        .wait_for_updates_ex(&http, Some(""), Some(&options))
        .await
        .unwrap_err();
    assert!(e.is_fault("ManagedObjectNotFound"), "{e}");
}

fn new_disk_spec(kb: i64) -> VirtualDeviceConfigSpec {
    let mut b = VirtualDiskFlatVer2BackingInfo::default();
    b.virtual_device_file_backing_info = VirtualDeviceFileBackingInfo::default();
    b.disk_mode = "persistent".into();
    b.thin_provisioned = Some(true);
    let mut d = VirtualDisk::default();
    d.key = -1;
    d.capacity_in_kb = kb;
    d.backing = Some(Poly::new(b));
    let mut c = VirtualDeviceConfigSpec::default();
    c.operation = Some(VirtualDeviceConfigSpecOperation::Add);
    c.file_operation = Some(VirtualDeviceConfigSpecFileOperation::Create);
    c.device = Some(Poly::new(d));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_clone_destroy_with_capacity_accounting() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let vm_ref = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let ds = find(&http, &content, "DC0/datastore/LocalDS_0").await;
    let vm = VirtualMachine::from_reference(vm_ref.clone());
    let before = free_space(&http, &content, &ds).await;

    let mut spec = VirtualMachineConfigSpec::default();
    spec.device_change = vec![Poly::new(new_disk_spec(4096))];
    spec.num_cp_us = Some(4);
    let t = vm.reconfig_vm_task(&http, &spec).await.unwrap();
    let (_, info) = wait_task(&http, &content, t.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    assert_eq!(free_space(&http, &content, &ds).await, before - 4096 * 1024);
    let Some(Any::Array(AnyArray::Data { items, .. })) =
        read(&http, &content, &vm_ref, "config.hardware.device").await
    else {
        panic!("no devices")
    };
    let disks: Vec<&VirtualDisk> = items
        .iter()
        .filter_map(|d| d.downcast_ref::<VirtualDisk>())
        .collect();
    assert_eq!(disks.len(), 2);
    assert_eq!(disks[1].key, 2001);
    assert_eq!(disks[1].unit_number, Some(1));
    let Some(Any::Int(cpus)) = read(&http, &content, &vm_ref, "config.hardware.numCPU").await
    else {
        panic!("no numCPU")
    };
    assert_eq!(cpus, 4);

    // Clone: a new VM whose disks (1 GiB + 4 MiB) take space too.
    let folder = find(&http, &content, "DC0/vm").await;
    let mut cs = VirtualMachineCloneSpec::default();
    cs.power_on = false;
    let t = vm
        .clone_vm_task(&http, &folder, "copy-1", &cs)
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, t.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let Some(Any::MoRef(copy)) = info.result.clone() else {
        panic!("the clone task's result is not a VM: {:?}", info.result)
    };
    assert_eq!(find(&http, &content, "DC0/vm/copy-1").await, copy);
    assert_eq!(
        free_space(&http, &content, &ds).await,
        before - 2 * 4096 * 1024 - (1 << 30)
    );

    // Destroy the (powered-off) clone: its space comes back.
    let t = VirtualMachine::from_reference(copy.clone())
        .destroy_task(&http)
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, t.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    assert_eq!(free_space(&http, &content, &ds).await, before - 4096 * 1024);
    let gone = SearchIndex::from_reference(content.search_index.clone().unwrap())
        .find_by_inventory_path(&http, "DC0/vm/copy-1")
        .await
        .unwrap();
    assert!(gone.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_class_disks_attach_to_one_vm_at_a_time() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let ds = find(&http, &content, "DC0/datastore/LocalDS_0").await;
    let vm1 = VirtualMachine::from_reference(find(&http, &content, "DC0/vm/DC0_H0_VM0").await);
    let vm2 = VirtualMachine::from_reference(find(&http, &content, "DC0/vm/DC0_H0_VM1").await);
    let m = VcenterVStorageObjectManager::from_reference(
        content.v_storage_object_manager.clone().unwrap(),
    );
    let t = m
        .create_disk_task(&http, &common::create_spec("vol-1", 64, &ds))
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, t.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    // Only ManagedEntity references as the task's entity (pyVmomi checks): the datastore.
    assert_eq!(info.entity.as_ref(), Some(&ds));
    let obj: VStorageObject = t.result_from(info.result.clone().unwrap()).unwrap();
    let config = obj.config.as_ref().unwrap();
    let id: ID = (**config.base_config_info.id.as_ref().unwrap()).clone();
    assert_eq!(config.capacity_in_mb, 64);
    let ids = m.list_v_storage_object(&http, &ds).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].id, id.id);

    let run = |t: vsphere_client::rpc::PendingTask<()>| {
        let http = &http;
        let content = &content;
        async move { wait_task(http, content, t.task().reference()).await.1 }
    };
    let info = run(vm1
        .attach_disk_task(&http, &id, &ds, None, None)
        .await
        .unwrap())
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let Some(Any::Array(AnyArray::Data { items, .. })) =
        read(&http, &content, vm1.reference(), "config.hardware.device").await
    else {
        panic!("no devices")
    };
    let attached = items
        .iter()
        .filter_map(|d| d.downcast_ref::<VirtualDisk>())
        .find(|d| d.v_disk_id.as_ref().map(|v| v.id.as_str()) == Some(id.id.as_str()))
        .expect("the FCD is a VirtualDisk of the VM");
    let file = attached
        .backing
        .as_ref()
        .unwrap()
        .downcast_ref::<VirtualDiskFlatVer2BackingInfo>()
        .unwrap()
        .file_name
        .clone();
    let retrieved = m
        .retrieve_v_storage_object(&http, &id, &ds, &[])
        .await
        .unwrap();
    let b = retrieved
        .config
        .as_ref()
        .unwrap()
        .base_config_info
        .backing
        .as_ref()
        .unwrap();
    let path = b
        .downcast_ref::<vsphere_client::types::BaseConfigInfoDiskFileBackingInfo>()
        .unwrap()
        .file_path
        .clone();
    assert_eq!(file, path);

    // A second VM may not attach it: InvalidState caused by FileLocked, inside the task error.
    let info = run(vm2
        .attach_disk_task(&http, &id, &ds, None, None)
        .await
        .unwrap())
    .await;
    assert_eq!(info.state, TaskInfoState::Error);
    let fault = info.error.as_ref().unwrap().fault.as_ref().unwrap();
    assert_eq!(fault.type_name(), "InvalidState");
    let cause = fault.fault_cause.as_ref().unwrap();
    assert_eq!(cause.fault.as_ref().unwrap().type_name(), "FileLocked");
    // Nor may the disk be deleted while attached, nor detached from a VM without it.
    let info = run(m
        .delete_v_storage_object_task(&http, &id, &ds)
        .await
        .unwrap())
    .await;
    assert_eq!(info.state, TaskInfoState::Error);
    let info = run(vm2.detach_disk_task(&http, &id).await.unwrap()).await;
    assert_eq!(
        info.error
            .as_ref()
            .unwrap()
            .fault
            .as_ref()
            .unwrap()
            .type_name(),
        "NotFound"
    );

    let info = run(vm1.detach_disk_task(&http, &id).await.unwrap()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let info = run(vm2
        .attach_disk_task(&http, &id, &ds, None, None)
        .await
        .unwrap())
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let info = run(m.extend_disk_task(&http, &id, &ds, 128).await.unwrap()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let info = run(vm2.detach_disk_task(&http, &id).await.unwrap()).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let info = run(m
        .delete_v_storage_object_task(&http, &id, &ds)
        .await
        .unwrap())
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    assert!(
        m.list_v_storage_object(&http, &ds)
            .await
            .unwrap()
            .is_empty()
    );
    let e = m
        .retrieve_v_storage_object(&http, &id, &ds, &[])
        .await
        .unwrap_err();
    assert!(e.is_fault("NotFound"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_from_the_library_and_the_admin_endpoint() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, _content) = connect(&sim).await;
    let si = vsphere_client::mo::ServiceInstance::new("ServiceInstance");

    sim.fail_next("CurrentTime", "HostCommunication", 2)
        .unwrap();
    for _ in 0..2 {
        let e = si.current_time(&http).await.unwrap_err();
        assert!(e.is_fault("HostCommunication"), "{e}");
    }
    si.current_time(&http).await.unwrap();

    sim.set_latency("CurrentTime", Duration::from_millis(300));
    let started = Instant::now();
    si.current_time(&http).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.clear_fault_injection();

    sim.set_error_rate(1.0, "SystemError").unwrap();
    assert!(
        si.current_time(&http)
            .await
            .unwrap_err()
            .is_fault("SystemError")
    );
    sim.set_error_rate(0.0, "SystemError").unwrap();
    assert!(sim.set_error_rate(2.0, "SystemError").is_err());

    // The admin endpoint does the same over HTTP.
    let admin = format!("http://{}/_sim", sim.addr());
    let client = reqwest::Client::new();
    let r = client
        .post(format!(
            "{admin}/fail?method=CurrentTime&fault=InvalidState&count=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        si.current_time(&http)
            .await
            .unwrap_err()
            .is_fault("InvalidState")
    );
    let r = client
        .post(format!(
            "{admin}/fail?method=CurrentTime&fault=Bogus&count=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(format!("{admin}/expire-sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = si.current_time(&http).await.unwrap_err();
    assert!(e.is_fault("NotAuthenticated"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_survives_a_restart_with_a_state_dir() {
    let dir = std::env::temp_dir().join(format!("vsphere-sim-tasks-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sim = Simulator::builder().state_dir(&dir).start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let vm_ref = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let ds = find(&http, &content, "DC0/datastore/LocalDS_0").await;
    let t = VirtualMachine::from_reference(vm_ref.clone())
        .power_off_vm_task(&http)
        .await
        .unwrap();
    wait_task(&http, &content, t.task().reference()).await;
    let m = common::vim_disks(&content);
    common::new_disk(&http, &content, "kept", 16, &ds).await;
    let free = free_space(&http, &content, &ds).await;
    sim.stop().await;

    let sim = Simulator::builder().state_dir(&dir).start().await.unwrap();
    let (http, content) = connect(&sim).await;
    assert_eq!(find(&http, &content, "DC0/vm/DC0_H0_VM0").await, vm_ref);
    let Some(Any::Enum(state)) = read(&http, &content, &vm_ref, "runtime.powerState").await else {
        panic!("no power state")
    };
    assert_eq!(state.as_str(), "poweredOff");
    assert_eq!(free_space(&http, &content, &ds).await, free);
    let ids = m.list_v_storage_object(&http, &ds).await.unwrap();
    assert_eq!(ids.len(), 1);
    // New objects do not reuse old ids.
    let pending = VirtualMachine::from_reference(vm_ref)
        .power_on_vm_task(&http, None)
        .await
        .unwrap();
    let (_, info) = wait_task(&http, &content, pending.task().reference()).await;
    assert_eq!(info.state, TaskInfoState::Success);
    sim.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_task_on_folders_pools_hosts_and_datacenters() {
    let sim = Simulator::builder()
        .task_step(Duration::from_millis(2))
        .start()
        .await
        .unwrap();
    let (http, content) = connect(&sim).await;
    let destroy = |r: &ManagedObjectReference| {
        let call = ManagedEntity::from_reference(r.clone()).destroy_task(&http);
        let (http, content) = (&http, &content);
        async move {
            let task = call.await.unwrap();
            let (_, info) = wait_task(http, content, task.task().reference()).await;
            common::task_fault(&info)
        }
    };
    // A new, empty folder goes; the datacenter's own folder does not.
    let vm_folder = find(&http, &content, "DC0/vm").await;
    let team = Folder::from_reference(vm_folder.clone())
        .create_folder(&http, "team")
        .await
        .unwrap();
    assert_eq!(find(&http, &content, "DC0/vm/team").await, team);
    assert_eq!(destroy(&team).await, None);
    assert_eq!(destroy(&vm_folder).await.as_deref(), Some("NotSupported"));
    // A child pool goes; the cluster's root pool does not.
    let cluster = find(&http, &content, "DC0/host/DC0_C0").await;
    let Some(Any::MoRef(root)) = read(&http, &content, &cluster, "resourcePool").await else {
        panic!("no root pool")
    };
    let child = ResourcePool::from_reference(root.clone())
        .create_resource_pool(&http, "child", &ResourceConfigSpec::default())
        .await
        .unwrap();
    assert_eq!(destroy(&child).await, None);
    assert_eq!(destroy(&root).await.as_deref(), Some("NotSupported"));
    // A host that runs VMs and a datacenter that holds them are in use.
    let host = find(&http, &content, "DC0/host/DC0_C0/DC0_C0_H0").await;
    assert_eq!(destroy(&host).await.as_deref(), Some("ResourceInUse"));
    let dc = find(&http, &content, "DC0").await;
    assert_eq!(destroy(&dc).await.as_deref(), Some("ResourceInUse"));
    // Without its VMs, the host leaves the cluster.
    let Some(Any::Array(AnyArray::MoRef(vms))) = read(&http, &content, &host, "vm").await else {
        panic!("no VMs on the host")
    };
    assert_eq!(vms.len(), 2);
    for vm in &vms {
        let m = VirtualMachine::from_reference(vm.clone());
        let task = m.power_off_vm_task(&http).await.unwrap();
        wait_task(&http, &content, task.task().reference()).await;
        assert_eq!(destroy(vm).await, None);
    }
    assert_eq!(destroy(&host).await, None);
    let Some(Any::Array(AnyArray::MoRef(hosts))) = read(&http, &content, &cluster, "host").await
    else {
        panic!("no hosts")
    };
    assert_eq!(hosts.len(), 2);
    assert!(!hosts.contains(&host));
}
