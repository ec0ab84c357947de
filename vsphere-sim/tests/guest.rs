//! Guest identity (`guest.ipAddress`, `guest.net`, tools state) of powered-on VMs, vcsim's
//! `SET.guest.*` extraConfig hook, guest operations and templates, over real HTTP with the
//! SDK's generated methods; changes seen through `WaitForUpdatesEx`.
#![allow(
    clippy::field_reassign_with_default,
    clippy::assigning_clones,
    reason = "generated data objects are built from Default, field by field"
)]

mod common;

use common::{connect, find, read, spec_for, wait_task};
use vsphere_client::codec::{Any, ManagedObjectReference, Obj, Poly};
use vsphere_client::mo::{PropertyCollector, VirtualMachine};
use vsphere_client::types::{
    GuestInfo, OptionValue, ServiceContent, TaskInfoState, VirtualMachineCloneSpec,
    VirtualMachineConfigSpec, VirtualMachineRelocateSpec, WaitOptions,
};
use vsphere_sim::Simulator;

async fn read_str(
    http: &common::Http,
    content: &ServiceContent,
    obj: &ManagedObjectReference,
    path: &str,
) -> Option<String> {
    match read(http, content, obj, path).await {
        Some(Any::String(s)) => Some(s),
        None => None,
        other => panic!("{path} is not a string: {other:?}"),
    }
}

async fn run(http: &common::Http, content: &ServiceContent, task: &ManagedObjectReference) {
    let (_, info) = wait_task(http, content, task).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
}

fn option(key: &str, value: &str) -> Poly<OptionValue> {
    let mut o = OptionValue::default();
    o.key = key.to_owned();
    o.value = Some(Any::String(value.to_owned()));
    Poly::new(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powered_on_vms_report_a_guest_identity_that_power_off_clears() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let vm_ref = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let vm = VirtualMachine::from_reference(vm_ref.clone());

    let ip = read_str(&http, &content, &vm_ref, "guest.ipAddress")
        .await
        .expect("a powered-on VM has an address");
    assert!(ip.starts_with("10."), "{ip}");
    assert_eq!(
        read_str(&http, &content, &vm_ref, "summary.guest.ipAddress")
            .await
            .as_deref(),
        Some(ip.as_str())
    );
    assert_eq!(
        read_str(&http, &content, &vm_ref, "guest.toolsRunningStatus")
            .await
            .as_deref(),
        Some("guestToolsRunning")
    );
    assert_eq!(
        read_str(&http, &content, &vm_ref, "guest.guestState")
            .await
            .as_deref(),
        Some("running")
    );
    let Some(Any::Data(g)) = read(&http, &content, &vm_ref, "guest").await else {
        panic!("no guest")
    };
    let g = g.downcast_ref::<GuestInfo>().unwrap();
    assert_eq!(g.net.len(), 1);
    assert_eq!(g.net[0].ip_address, vec![ip.clone()]);
    assert_eq!(g.net[0].network.as_deref(), Some("VM Network"));
    assert_eq!(g.host_name.as_deref(), Some("DC0_H0_VM0"));
    // Another VM has another address; the same VM the same one in another simulator.
    let other = find(&http, &content, "DC0/vm/DC0_H0_VM1").await;
    assert_ne!(
        read_str(&http, &content, &other, "guest.ipAddress").await,
        Some(ip.clone())
    );
    let sim2 = Simulator::builder().start().await.unwrap();
    let (http2, content2) = connect(&sim2).await;
    let vm_ref2 = find(&http2, &content2, "DC0/vm/DC0_H0_VM0").await;
    assert_eq!(
        read_str(&http2, &content2, &vm_ref2, "guest.ipAddress").await,
        Some(ip.clone())
    );

    // A filter on the guest properties sees power off clear them and power on restore them.
    let pc = PropertyCollector::from_reference(content.property_collector.clone());
    let private =
        PropertyCollector::from_reference(pc.create_property_collector(&http).await.unwrap());
    private
        .create_filter(
            &http,
            &spec_for(&vm_ref, &["guest.ipAddress", "guest.toolsRunningStatus"]),
            true,
        )
        .await
        .unwrap();
    let mut options = WaitOptions::default();
    options.max_wait_seconds = Some(5);
    let first = private
        .wait_for_updates_ex(&http, Some(""), Some(&options))
        .await
        .unwrap()
        .unwrap();
    run(
        &http,
        &content,
        vm.power_off_vm_task(&http)
            .await
            .unwrap()
            .task()
            .reference(),
    )
    .await;
    let mut version = first.version.clone();
    let mut cleared = false;
    let mut stopped = false;
    while !(cleared && stopped) {
        let set = private
            .wait_for_updates_ex(&http, Some(&version), Some(&options))
            .await
            .unwrap()
            .expect("the power-off shows");
        version = set.version.clone();
        for c in set
            .filter_set
            .iter()
            .flat_map(|f| &f.object_set)
            .flat_map(|o| &o.change_set)
        {
            match (c.name.as_str(), &c.val) {
                ("guest.ipAddress", None) => cleared = true,
                ("guest.toolsRunningStatus", Some(Any::String(s))) => {
                    stopped = s == "guestToolsNotRunning";
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        read_str(&http, &content, &vm_ref, "guest.guestState")
            .await
            .as_deref(),
        Some("notRunning")
    );
    run(
        &http,
        &content,
        vm.power_on_vm_task(&http, None)
            .await
            .unwrap()
            .task()
            .reference(),
    )
    .await;
    let set = private
        .wait_for_updates_ex(&http, Some(&version), Some(&options))
        .await
        .unwrap()
        .expect("the power-on shows");
    let back = set
        .filter_set
        .iter()
        .flat_map(|f| &f.object_set)
        .flat_map(|o| &o.change_set)
        .any(|c| c.name == "guest.ipAddress" && matches!(&c.val, Some(Any::String(s)) if *s == ip));
    assert!(back, "{set:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_config_set_guest_overrides_like_vcsim() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let vm_ref = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let vm = VirtualMachine::from_reference(vm_ref.clone());
    let mut spec = VirtualMachineConfigSpec::default();
    spec.extra_config = vec![
        option("SET.guest.ipAddress", "192.168.50.7"),
        option("SET.guest.hostName", "web-1"),
    ];
    run(
        &http,
        &content,
        vm.reconfig_vm_task(&http, &spec)
            .await
            .unwrap()
            .task()
            .reference(),
    )
    .await;
    assert_eq!(
        read_str(&http, &content, &vm_ref, "guest.ipAddress")
            .await
            .as_deref(),
        Some("192.168.50.7")
    );
    assert_eq!(
        read_str(&http, &content, &vm_ref, "summary.guest.hostName")
            .await
            .as_deref(),
        Some("web-1")
    );
    let Some(Any::Data(g)) = read(&http, &content, &vm_ref, "guest").await else {
        panic!("no guest")
    };
    assert_eq!(
        g.downcast_ref::<GuestInfo>().unwrap().net[0].ip_address,
        vec!["192.168.50.7".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_operations_need_running_tools() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let vm_ref = find(&http, &content, "DC0/vm/DC0_H0_VM0").await;
    let vm = VirtualMachine::from_reference(vm_ref.clone());
    vm.reboot_guest(&http).await.unwrap();
    vm.shutdown_guest(&http).await.unwrap();
    let Some(Any::Enum(s)) = read(&http, &content, &vm_ref, "runtime.powerState").await else {
        panic!("no power state")
    };
    assert_eq!(s.as_str(), "poweredOff");
    let e = vm.shutdown_guest(&http).await.unwrap_err();
    assert!(e.is_fault("InvalidPowerState"), "{e}");
    let e = vm.reboot_guest(&http).await.unwrap_err();
    assert!(e.is_fault("InvalidPowerState"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_clones_into_a_running_vm_with_its_own_identity() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let src_ref = find(&http, &content, "DC0/vm/DC0_C0_RP0_VM0").await;
    let src = VirtualMachine::from_reference(src_ref.clone());
    let pool = find(&http, &content, "DC0/host/DC0_C0/Resources").await;
    let folder = find(&http, &content, "DC0/vm").await;

    // Only a powered-off VM becomes a template.
    let e = src.mark_as_template(&http).await.unwrap_err();
    assert!(e.is_fault("InvalidPowerState"), "{e}");
    run(
        &http,
        &content,
        src.power_off_vm_task(&http)
            .await
            .unwrap()
            .task()
            .reference(),
    )
    .await;
    src.mark_as_template(&http).await.unwrap();
    assert!(matches!(
        read(&http, &content, &src_ref, "config.template").await,
        Some(Any::Bool(true))
    ));
    assert!(matches!(
        read(&http, &content, &src_ref, "summary.config.template").await,
        Some(Any::Bool(true))
    ));
    assert!(
        read(&http, &content, &src_ref, "resourcePool")
            .await
            .is_none()
    );
    let e = src.mark_as_template(&http).await.unwrap_err();
    assert!(e.is_fault("NotSupported"), "{e}");
    let (_, info) = wait_task(
        &http,
        &content,
        src.power_on_vm_task(&http, None)
            .await
            .unwrap()
            .task()
            .reference(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Error);
    assert_eq!(
        info.error
            .as_ref()
            .unwrap()
            .fault
            .as_ref()
            .unwrap()
            .type_name(),
        "NotSupported"
    );

    // Clone it, powered on: the clone runs, with an address of its own.
    let mut cs = VirtualMachineCloneSpec::default();
    let mut loc = VirtualMachineRelocateSpec::default();
    loc.pool = Some(pool.clone());
    cs.location = Some(Obj::new(loc));
    cs.power_on = true;
    let (_, info) = wait_task(
        &http,
        &content,
        src.clone_vm_task(&http, &folder, "from-template", &cs)
            .await
            .unwrap()
            .task()
            .reference(),
    )
    .await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    let Some(Any::MoRef(clone)) = info.result else {
        panic!("no clone")
    };
    let Some(Any::Enum(s)) = read(&http, &content, &clone, "runtime.powerState").await else {
        panic!("no power state")
    };
    assert_eq!(s.as_str(), "poweredOn");
    assert!(matches!(
        read(&http, &content, &clone, "config.template").await,
        Some(Any::Bool(false))
    ));
    assert_eq!(
        read_str(&http, &content, &clone, "guest.toolsRunningStatus")
            .await
            .as_deref(),
        Some("guestToolsRunning")
    );
    let ip = read_str(&http, &content, &clone, "guest.ipAddress")
        .await
        .unwrap();
    assert!(ip.starts_with("10."));
    assert!(matches!(
        read(&http, &content, &clone, "resourcePool").await,
        Some(Any::MoRef(r)) if r == pool
    ));

    // Back to a VM in the pool.
    src.mark_as_virtual_machine(&http, &pool, None)
        .await
        .unwrap();
    assert!(matches!(
        read(&http, &content, &src_ref, "config.template").await,
        Some(Any::Bool(false))
    ));
    assert!(matches!(
        read(&http, &content, &src_ref, "resourcePool").await,
        Some(Any::MoRef(r)) if r == pool
    ));
}
