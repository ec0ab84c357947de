//! Drives the simulator in-process with the SDK's own generated methods, over real HTTP.
#![allow(
    clippy::field_reassign_with_default,
    reason = "generated data objects are built from Default, field by field"
)]

mod common;

use common::{Http, connect};
use vsphere_client::codec::{Any, AnyArray, ManagedObjectReference, Poly};
use vsphere_client::mo::{PropertyCollector, ServiceInstance, SessionManager, ViewManager};
use vsphere_client::types::{
    ObjectContent, ObjectSpec, PropertyFilterSpec, PropertySpec, RetrieveOptions, SelectionSpec,
    ServiceContent, TraversalSpec, VirtualDisk,
};
use vsphere_sim::{InventoryShape, Simulator};

fn view_spec(view: &ManagedObjectReference, type_: &str, paths: &[&str]) -> PropertyFilterSpec {
    let mut ts = TraversalSpec::default();
    ts.name = Some("traverseView".into());
    ts.type_ = "ContainerView".into();
    ts.path = "view".into();
    ts.skip = Some(false);
    let mut os = ObjectSpec::default();
    os.obj = view.clone();
    os.skip = Some(true);
    os.select_set = vec![Poly::<SelectionSpec>::new(ts)];
    let mut ps = PropertySpec::default();
    ps.type_ = type_.into();
    ps.path_set = paths.iter().map(|s| (*s).to_owned()).collect();
    let mut spec = PropertyFilterSpec::default();
    spec.object_set = vec![os];
    spec.prop_set = vec![ps];
    spec
}

/// A recursive container view of `type_` over the whole inventory.
async fn root_view(http: &Http, content: &ServiceContent, type_: &str) -> ManagedObjectReference {
    ViewManager::from_reference(content.view_manager.clone().unwrap())
        .create_container_view(http, &content.root_folder, &[type_.to_owned()], true)
        .await
        .unwrap()
}

fn prop<'a>(c: &'a ObjectContent, name: &str) -> &'a Any {
    &c.prop_set.iter().find(|p| p.name == name).unwrap().val
}

#[tokio::test]
async fn login_sessions_and_faults() {
    let sim = Simulator::builder().start().await.unwrap();
    let http = Http::anonymous(&sim, "/sdk");
    let si = ServiceInstance::new("ServiceInstance");
    let content = si.retrieve_service_content(&http).await.unwrap();
    assert_eq!(content.root_folder.value, "group-d1");
    assert_eq!(content.about.as_ref().unwrap().api_type, "VirtualCenter");

    // No session yet: NotAuthenticated.
    let e = si.current_time(&http).await.unwrap_err();
    assert!(e.is_fault("NotAuthenticated"), "{e}");

    let sm = SessionManager::from_reference(content.session_manager.clone().unwrap());
    let e = sm.login(&http, "user", "wrong", None).await.unwrap_err();
    assert!(e.is_fault("InvalidLogin"), "{e}");
    // The message never carries the password.
    assert!(!e.to_string().contains("wrong"));

    let session = sm.login(&http, "user", "pass", None).await.unwrap();
    let t = si.current_time(&http).await.unwrap();
    assert!(t.unix_seconds() > 1_600_000_000);
    assert!(
        sm.session_is_active(&http, &session.key, "user")
            .await
            .unwrap()
    );
    assert!(!sm.session_is_active(&http, "nope", "user").await.unwrap());

    // Expiry from the library API ends the session.
    assert_eq!(sim.expire_sessions(), 1);
    assert!(
        si.current_time(&http)
            .await
            .unwrap_err()
            .is_fault("NotAuthenticated")
    );

    sm.login(&http, "user", "pass", None).await.unwrap();
    sm.logout(&http).await.unwrap();
    assert!(
        si.current_time(&http)
            .await
            .unwrap_err()
            .is_fault("NotAuthenticated")
    );
}

#[tokio::test]
async fn idle_sessions_time_out() {
    let sim = Simulator::builder()
        .session_idle_timeout(std::time::Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let (http, _) = connect(&sim).await;
    let si = ServiceInstance::new("ServiceInstance");
    si.current_time(&http).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        si.current_time(&http)
            .await
            .unwrap_err()
            .is_fault("NotAuthenticated")
    );
}

#[tokio::test]
async fn container_view_and_nested_properties() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let view = root_view(&http, &content, "VirtualMachine").await;
    let pc = PropertyCollector::from_reference(content.property_collector.clone());
    let spec = view_spec(
        &view,
        "VirtualMachine",
        &[
            "name",
            "runtime.powerState",
            "config.hardware.device",
            "summary",
        ],
    );
    let result = pc
        .retrieve_properties_ex(&http, &[spec], &RetrieveOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(result.token.is_none());
    assert_eq!(result.objects.len(), 8);
    let mut names: Vec<String> = result
        .objects
        .iter()
        .map(|c| prop(c, "name").as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names[0], "DC0_C0_RP0_VM0");
    assert_eq!(names[7], "DC0_H0_VM1");
    for c in &result.objects {
        let Any::Enum(state) = prop(c, "runtime.powerState") else {
            panic!("powerState is not an enum")
        };
        assert_eq!(state.as_str(), "poweredOn");
        let Any::Array(AnyArray::Data { items, .. }) = prop(c, "config.hardware.device") else {
            panic!("devices are not an array of data objects")
        };
        assert!(
            items
                .iter()
                .any(|d| d.downcast_ref::<VirtualDisk>().is_some())
        );
        assert_eq!(prop(c, "summary").type_name(), "VirtualMachineSummary");
    }

    // A type filter over hosts, non-recursive from the cluster.
    let hosts = root_view(&http, &content, "HostSystem").await;
    let spec = view_spec(&hosts, "HostSystem", &["summary.config.name"]);
    let r = pc
        .retrieve_properties_ex(&http, &[spec], &RetrieveOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.objects.len(), 4);

    // An invalid nested path is InvalidProperty.
    let spec = view_spec(&view, "VirtualMachine", &["runtime.nope"]);
    let e = pc
        .retrieve_properties_ex(&http, &[spec], &RetrieveOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_fault("InvalidProperty"), "{e}");

    ViewManager::from_reference(view.clone());
    vsphere_client::mo::ContainerView::from_reference(view.clone())
        .destroy_view(&http)
        .await
        .unwrap();
    let spec = view_spec(&view, "VirtualMachine", &["name"]);
    let e = pc
        .retrieve_properties_ex(&http, &[spec], &RetrieveOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_fault("ManagedObjectNotFound"), "{e}");
}

#[tokio::test]
async fn retrieve_properties_ex_pages_with_tokens() {
    let shape = InventoryShape {
        vms_per_host: 5,
        ..InventoryShape::default()
    };
    let sim = Simulator::builder().shape(shape).start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let view = root_view(&http, &content, "VirtualMachine").await;
    let pc = PropertyCollector::from_reference(content.property_collector.clone());
    let mut options = RetrieveOptions::default();
    options.max_objects = Some(7);
    let spec = view_spec(&view, "VirtualMachine", &["name"]);
    let mut page = pc
        .retrieve_properties_ex(&http, std::slice::from_ref(&spec), &options)
        .await
        .unwrap()
        .unwrap();
    let mut seen = Vec::new();
    let mut pages = 1;
    loop {
        assert!(page.objects.len() <= 7);
        seen.extend(
            page.objects
                .iter()
                .map(|c| prop(c, "name").as_str().unwrap().to_owned()),
        );
        let Some(token) = page.token.clone() else {
            break;
        };
        page = pc
            .continue_retrieve_properties_ex(&http, &token)
            .await
            .unwrap();
        pages += 1;
    }
    assert_eq!(seen.len(), 20);
    assert_eq!(pages, 3);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20);

    // Cancelling ends the retrieval; the token is then unknown.
    let first = pc
        .retrieve_properties_ex(&http, &[spec], &options)
        .await
        .unwrap()
        .unwrap();
    let token = first.token.unwrap();
    pc.cancel_retrieve_properties_ex(&http, &token)
        .await
        .unwrap();
    let e = pc
        .continue_retrieve_properties_ex(&http, &token)
        .await
        .unwrap_err();
    assert!(e.is_fault("InvalidProperty"), "{e}");
}

#[tokio::test]
async fn unbuilt_methods_say_so() {
    let sim = Simulator::builder().start().await.unwrap();
    let (http, content) = connect(&sim).await;
    let sm = SessionManager::from_reference(content.session_manager.clone().unwrap());
    let e = sm.acquire_clone_ticket(&http).await.unwrap_err();
    assert!(e.is_fault("NotImplemented"), "{e}");
    assert!(e.fault().unwrap().message.contains("AcquireCloneTicket"));
}

#[tokio::test]
async fn versions_document_lists_vim25() {
    let sim = Simulator::builder().start().await.unwrap();
    let body = reqwest::get(format!("{}/vimServiceVersions.xml", sim.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("<name>urn:vim25</name>"));
    assert!(body.contains("<version>8.0.3.0</version>"));
}
