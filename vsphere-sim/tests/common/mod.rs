//! Shared by the integration tests: a session-aware SOAP caller over reqwest, login, and a
//! task waiter built on CreateFilter + WaitForUpdatesEx (as govmomi's task.Wait does).
#![allow(dead_code, reason = "each test binary uses a part")]
#![allow(
    clippy::field_reassign_with_default,
    clippy::assigning_clones,
    reason = "generated data objects are built from Default, field by field"
)]

use std::sync::Mutex;

use vsphere_client::Error;
use vsphere_client::codec::{Any, ManagedObjectReference, MethodInfo, Poly};
use vsphere_client::mo::{
    PropertyCollector, PropertyFilter, SearchIndex, ServiceInstance, SessionManager,
    VcenterVStorageObjectManager, VslmTask,
};
use vsphere_client::rpc::{BoxFuture, Caller};
use vsphere_client::types::{
    ID, KeyValue, ObjectSpec, PropertyFilterSpec, PropertySpec, RetrieveOptions, ServiceContent,
    TaskInfo, TaskInfoState, VStorageObject, VslmCreateSpec, VslmCreateSpecDiskFileBackingSpec,
    VslmTaskInfo, VslmTaskInfoState, WaitOptions,
};
use vsphere_sim::Simulator;

/// A minimal session-aware caller: reqwest, plus the `vmware_soap_session` cookie.
pub(crate) struct Http {
    client: reqwest::Client,
    url: String,
    cookie: Mutex<Option<String>>,
}

impl Caller for Http {
    fn send<'a>(
        &'a self,
        _method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(async move {
            let mut req = self
                .client
                .post(&self.url)
                .header("content-type", "text/xml; charset=utf-8")
                .header("soapaction", "urn:vim25/8.0.3.0")
                .body(body);
            let cookie = self.cookie.lock().unwrap().clone();
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let resp = req.send().await.expect("HTTP request to the simulator");
            if let Some(c) = resp.headers().get("set-cookie") {
                let c = c.to_str().unwrap().split(';').next().unwrap().to_owned();
                *self.cookie.lock().unwrap() = Some(c);
            }
            Ok(resp.text().await.expect("response body"))
        })
    }
}

impl Http {
    /// A caller without a session on `path` of the simulator.
    pub(crate) fn anonymous(sim: &Simulator, path: &str) -> Self {
        let mut url = url::Url::parse(&sim.url()).expect("the simulator URL parses");
        url.set_path(path);
        Self {
            client: reqwest::Client::new(),
            url: url.to_string(),
            cookie: Mutex::new(None),
        }
    }

    /// A caller on another endpoint of the same simulator (`/vslm/sdk`, `/pbm/sdk`) that
    /// shares this caller's session cookie.
    pub(crate) fn on_path(&self, path: &str) -> Self {
        let mut url = url::Url::parse(&self.url).expect("the simulator URL parses");
        url.set_path(path);
        Self {
            client: self.client.clone(),
            url: url.to_string(),
            cookie: Mutex::new(self.cookie.lock().unwrap().clone()),
        }
    }
}

/// Logs in; returns the caller and the service content.
pub(crate) async fn connect(sim: &Simulator) -> (Http, ServiceContent) {
    connect_to(&sim.url(), sim.user(), sim.password()).await
}

/// Logs in to the simulator at `url` (`http://HOST:PORT/sdk`), e.g. the standalone binary.
pub(crate) async fn connect_to(url: &str, user: &str, password: &str) -> (Http, ServiceContent) {
    let http = Http {
        client: reqwest::Client::new(),
        url: url.to_owned(),
        cookie: Mutex::new(None),
    };
    let si = ServiceInstance::new("ServiceInstance");
    let content = si.retrieve_service_content(&http).await.unwrap();
    let sm = SessionManager::from_reference(content.session_manager.clone().unwrap());
    sm.login(&http, user, password, None).await.unwrap();
    (http, content)
}

/// Waits for a task on a private collector; returns the states seen in order and the final
/// info.
pub(crate) async fn wait_task(
    http: &Http,
    content: &ServiceContent,
    task: &ManagedObjectReference,
) -> (Vec<TaskInfoState>, TaskInfo) {
    let pc = PropertyCollector::from_reference(content.property_collector.clone());
    let private =
        PropertyCollector::from_reference(pc.create_property_collector(http).await.unwrap());
    let mut os = ObjectSpec::default();
    os.obj = task.clone();
    let mut ps = PropertySpec::default();
    ps.type_ = "Task".into();
    ps.path_set = vec!["info".into()];
    let mut spec = PropertyFilterSpec::default();
    spec.object_set = vec![os];
    spec.prop_set = vec![ps];
    let filter = private.create_filter(http, &spec, true).await.unwrap();
    let mut options = WaitOptions::default();
    options.max_wait_seconds = Some(10);
    let mut version = String::new();
    let mut states = Vec::new();
    loop {
        let set = private
            .wait_for_updates_ex(http, Some(&version), Some(&options))
            .await
            .unwrap()
            .expect("an update within 10 s");
        version.clone_from(&set.version);
        let mut last = None;
        for f in &set.filter_set {
            assert_eq!(f.filter, filter);
            for u in &f.object_set {
                for c in &u.change_set {
                    if let Some(Any::Data(d)) = &c.val
                        && let Some(info) = d.downcast_ref::<TaskInfo>()
                    {
                        states.push(info.state.clone());
                        last = Some(info.clone());
                    }
                }
            }
        }
        if let Some(info) = last
            && matches!(info.state, TaskInfoState::Success | TaskInfoState::Error)
        {
            PropertyFilter::from_reference(filter)
                .destroy_property_filter(http)
                .await
                .unwrap();
            private.destroy_property_collector(http).await.unwrap();
            return (states, info);
        }
    }
}

/// The object at an inventory path (`DC0/vm/DC0_H0_VM0`), through `FindByInventoryPath`.
pub(crate) async fn find(
    http: &Http,
    content: &ServiceContent,
    path: &str,
) -> ManagedObjectReference {
    SearchIndex::from_reference(content.search_index.clone().unwrap())
        .find_by_inventory_path(http, path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} not found"))
}

/// A filter spec for properties `paths` of `obj`.
pub(crate) fn spec_for(obj: &ManagedObjectReference, paths: &[&str]) -> PropertyFilterSpec {
    let mut os = ObjectSpec::default();
    os.obj = obj.clone();
    let mut ps = PropertySpec::default();
    ps.type_ = obj.type_.clone();
    ps.path_set = paths.iter().map(|p| (*p).to_owned()).collect();
    let mut spec = PropertyFilterSpec::default();
    spec.object_set = vec![os];
    spec.prop_set = vec![ps];
    spec
}

/// One property of one object, through RetrievePropertiesEx.
pub(crate) async fn read(
    http: &Http,
    content: &ServiceContent,
    obj: &ManagedObjectReference,
    path: &str,
) -> Option<Any> {
    let r = PropertyCollector::from_reference(content.property_collector.clone())
        .retrieve_properties_ex(http, &[spec_for(obj, &[path])], &RetrieveOptions::default())
        .await
        .unwrap()?;
    r.objects
        .into_iter()
        .next()?
        .prop_set
        .into_iter()
        .next()
        .map(|p| p.val)
}

/// A `VslmCreateSpec` for a thin First Class Disk of `mb` MB named `name` on `ds`.
pub(crate) fn create_spec(name: &str, mb: i64, ds: &ManagedObjectReference) -> VslmCreateSpec {
    let mut b = VslmCreateSpecDiskFileBackingSpec::default();
    b.vslm_create_spec_backing_spec.datastore = ds.clone();
    b.provisioning_type = Some("thin".into());
    let mut s = VslmCreateSpec::default();
    s.name = name.into();
    s.capacity_in_mb = mb;
    s.backing_spec = Some(Poly::new(b));
    s
}

/// A First Class Disk's id.
pub(crate) fn disk_id(o: &VStorageObject) -> String {
    o.config
        .as_ref()
        .unwrap()
        .base_config_info
        .id
        .as_ref()
        .unwrap()
        .id
        .clone()
}

/// The vim25 First Class Disk manager of `content`.
pub(crate) fn vim_disks(content: &ServiceContent) -> VcenterVStorageObjectManager {
    VcenterVStorageObjectManager::from_reference(content.v_storage_object_manager.clone().unwrap())
}

/// Waits for the task of a pending call; its final info.
pub(crate) async fn task_info<T>(
    http: &Http,
    content: &ServiceContent,
    call: vsphere_client::rpc::PendingTask<T>,
) -> TaskInfo {
    let (_, info) = wait_task(http, content, call.task().reference()).await;
    info
}

/// Waits for the task of a pending call and checks that it succeeded; its final info.
pub(crate) async fn task_ok<T>(
    http: &Http,
    content: &ServiceContent,
    call: vsphere_client::rpc::PendingTask<T>,
) -> TaskInfo {
    let info = task_info(http, content, call).await;
    assert_eq!(info.state, TaskInfoState::Success, "{:?}", info.error);
    info
}

/// The type of a failed task's fault (`None` when the task did not fail).
pub(crate) fn task_fault(info: &TaskInfo) -> Option<String> {
    let fault = info.error.as_ref()?.fault.as_ref()?;
    Some(fault.type_name().to_owned())
}

/// Creates a First Class Disk on `ds` through vim25; its id.
pub(crate) async fn new_disk(
    http: &Http,
    content: &ServiceContent,
    name: &str,
    mb: i64,
    ds: &ManagedObjectReference,
) -> String {
    let call = vim_disks(content)
        .create_disk_task(http, &create_spec(name, mb, ds))
        .await
        .unwrap();
    let info = task_info(http, content, call).await;
    let Some(Any::Data(o)) = info.result else {
        panic!("no disk: {:?}", info.error)
    };
    disk_id(o.downcast_ref::<VStorageObject>().unwrap())
}

/// Polls a `VslmTask` (on a `/vslm/sdk` caller) until it ends; its final info.
pub(crate) async fn vslm_wait(vslm: &Http, task: ManagedObjectReference) -> VslmTaskInfo {
    let task = VslmTask::from_reference(task);
    loop {
        let info = task.vslm_query_info(vslm).await.unwrap();
        if matches!(
            info.state,
            VslmTaskInfoState::Success | VslmTaskInfoState::Error
        ) {
            return info;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The (category, tag) pairs attached to a First Class Disk.
pub(crate) async fn fcd_tags(
    http: &Http,
    m: &VcenterVStorageObjectManager,
    disk: &str,
) -> Vec<(String, String)> {
    m.list_tags_attached_to_v_storage_object(http, &id(disk))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.parent_category_name, t.tag_name))
        .collect()
}

/// A vim25 `ID`.
pub(crate) fn id(v: &str) -> ID {
    let mut i = ID::default();
    i.id = v.to_owned();
    i
}

/// A `KeyValue`.
pub(crate) fn kv(k: &str, v: &str) -> KeyValue {
    let mut x = KeyValue::default();
    x.key = k.into();
    x.value = v.into();
    x
}

/// Runs a Python script against `sim` (arguments: host, port, user, password) off the async
/// runtime; its exit status and output.
pub(crate) async fn run_python(
    python: String,
    script: &str,
    sim: &Simulator,
) -> std::process::Output {
    let addr = sim.addr();
    let args = [
        script.to_owned(),
        addr.ip().to_string(),
        addr.port().to_string(),
        sim.user().to_owned(),
        sim.password().to_owned(),
    ];
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(args)
            .output()
            .expect("run the Python script")
    })
    .await
    .unwrap()
}
