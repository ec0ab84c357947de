//! Generated method wrappers against an in-process `Caller`: the request each one writes, and
//! the typed result it decodes (including typed task results).

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use vsphere_client::Error;
use vsphere_client::codec::{Any, MethodInfo, Obj, Poly, Service};
use vsphere_client::mo::{
    ServiceInstance, SessionManager, VcenterVStorageObjectManager, VirtualMachine,
};
use vsphere_client::rpc::{BoxFuture, Caller};
use vsphere_client::types::{VStorageObject, VirtualMachineConfigSpec, VslmCreateSpec};

/// Answers every call with a canned body and records the requests.
struct Canned {
    body: String,
    release: Option<&'static str>,
    seen: Mutex<Vec<(String, String)>>,
}

impl Canned {
    fn new(response_inner: &str) -> Self {
        Self {
            body: format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{response_inner}</soapenv:Body></soapenv:Envelope>"#
            ),
            release: None,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn request(&self) -> String {
        self.seen.lock().unwrap().last().unwrap().1.clone()
    }
}

impl Caller for Canned {
    fn send<'a>(
        &'a self,
        method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, Error>> {
        self.seen
            .lock()
            .unwrap()
            .push((method.name.to_owned(), body));
        let reply = self.body.clone();
        Box::pin(async move { Ok(reply) })
    }

    fn release(&self, _service: Service) -> Option<&str> {
        self.release
    }
}

/// Polls a future that is ready at once (the canned caller never waits).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the canned call was not ready"),
    }
}

#[test]
fn retrieve_service_content_is_typed() {
    let c = Canned::new(
        r#"<RetrieveServiceContentResponse xmlns="urn:vim25"><returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector><about><name>VMware vCenter Server</name><fullName>VMware vCenter Server 8.0.3</fullName><vendor>VMware, Inc.</vendor><version>8.0.3</version><build>1</build><osType>linux-x64</osType><productLineId>vpx</productLineId><apiType>VirtualCenter</apiType><apiVersion>8.0.3.0</apiVersion></about></returnval></RetrieveServiceContentResponse>"#,
    );
    let si = ServiceInstance::new("ServiceInstance");
    let content = ready(si.retrieve_service_content(&c)).unwrap();
    assert_eq!(content.root_folder.value, "group-d1");
    assert_eq!(content.about.as_ref().unwrap().api_version, "8.0.3.0");
    assert_eq!(
        c.request(),
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vim25="urn:vim25" xmlns:reflect="urn:reflect" xmlns:vslm="urn:vslm" xmlns:pbm="urn:pbm"><soapenv:Body>"#,
            r#"<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>"#,
            r#"</soapenv:Body></soapenv:Envelope>"#
        )
    );
}

#[test]
fn login_sends_the_password_but_never_shows_it() {
    let c = Canned::new(
        r#"<LoginResponse xmlns="urn:vim25"><returnval><key>52a1</key><userName>VSPHERE.LOCAL\admin</userName><fullName>admin</fullName><loginTime>2026-11-28T22:00:00Z</loginTime><lastActiveTime>2026-11-28T22:00:00Z</lastActiveTime><locale>en</locale><messageLocale>en</messageLocale><extensionSession>false</extensionSession><ipAddress>127.0.0.1</ipAddress><userAgent>t</userAgent><callCount>0</callCount></returnval></LoginResponse>"#,
    );
    let sm = SessionManager::new("SessionManager");
    let call = sm.login(&c, "admin", "s3cret&<", None);
    assert!(!format!("{call:?}").contains("s3cret"));
    let session = ready(call).unwrap();
    assert_eq!(session.user_name, r"VSPHERE.LOCAL\admin");
    assert!(
        c.request()
            .contains("<userName>admin</userName><password>s3cret&amp;&lt;</password>"),
        "{}",
        c.request()
    );
}

#[test]
fn a_task_method_returns_a_typed_pending_task() {
    let c = Canned::new(
        r#"<CreateDisk_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-7</returnval></CreateDisk_TaskResponse>"#,
    );
    let mgr = VcenterVStorageObjectManager::new("VStorageObjectManager");
    let spec = VslmCreateSpec {
        name: "vol-a".into(),
        capacity_in_mb: 64,
        ..VslmCreateSpec::default()
    };
    let pending = ready(mgr.create_disk_task(&c, &spec)).unwrap();
    assert_eq!(pending.task().reference().value, "task-7");
    assert!(
        c.request().contains("<name>vol-a</name>"),
        "{}",
        c.request()
    );
    assert!(c.request().contains("<capacityInMB>64</capacityInMB>"));

    // The finished task's info.result is an anyType holding the new VStorageObject.
    let mut disk = VStorageObject::default();
    disk.config.get_or_insert_default().name = "vol-a".into();
    let obj: VStorageObject = pending.result_from(Any::Data(Box::new(disk))).unwrap();
    assert_eq!(obj.config.as_ref().unwrap().name, "vol-a");
    let wrong = pending.result_from(Any::Int(3)).unwrap_err();
    assert!(wrong.to_string().contains("int"), "{wrong}");
}

#[test]
fn parameters_newer_than_the_server_are_omitted() {
    let mut c = Canned::new(
        r#"<ReconfigVM_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-1</returnval></ReconfigVM_TaskResponse>"#,
    );
    let vm = VirtualMachine::new("vm-1");
    let spec = VirtualMachineConfigSpec {
        name: Some("renamed".into()),
        sgx_info: Some(Obj::default()),
        ..VirtualMachineConfigSpec::default()
    };
    ready(vm.reconfig_vm_task(&c, &spec)).unwrap();
    assert!(c.request().contains("<sgxInfo"));
    c.release = Some("6.7");
    ready(vm.reconfig_vm_task(&c, &spec)).unwrap();
    assert!(!c.request().contains("<sgxInfo"), "{}", c.request());
    assert!(c.request().contains("<name>renamed</name>"));
}

#[test]
fn a_polymorphic_parameter_carries_its_xsi_type() {
    use vsphere_client::types::{VirtualDevice, VirtualDeviceConfigSpec, VirtualDisk};
    let c = Canned::new(
        r#"<ReconfigVM_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-2</returnval></ReconfigVM_TaskResponse>"#,
    );
    let disk = VirtualDisk {
        capacity_in_kb: 1024,
        ..VirtualDisk::default()
    };
    let change = VirtualDeviceConfigSpec {
        device: Some(Poly::<VirtualDevice>::new(disk)),
        ..VirtualDeviceConfigSpec::default()
    };
    let mut spec = VirtualMachineConfigSpec::default();
    spec.device_change.push(Poly::new(change));
    ready(VirtualMachine::new("vm-1").reconfig_vm_task(&c, &spec)).unwrap();
    assert!(
        c.request().contains(r#"<device xsi:type="VirtualDisk">"#),
        "{}",
        c.request()
    );
}

#[test]
fn the_server_side_decodes_requests_and_encodes_responses_and_faults() {
    use vsphere_client::codec::{decode_request, encode_fault, encode_response};
    use vsphere_client::mo::methods::{CREATE_DISK_TASK, LOGIN};
    use vsphere_client::types::InvalidLogin;

    // The request a client writes is the request a server reads.
    let c = Canned::new(
        r#"<CreateDisk_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-7</returnval></CreateDisk_TaskResponse>"#,
    );
    let spec = VslmCreateSpec {
        name: "vol-b".into(),
        capacity_in_mb: 128,
        ..VslmCreateSpec::default()
    };
    ready(VcenterVStorageObjectManager::new("VStorageObjectManager").create_disk_task(&c, &spec))
        .unwrap();
    let mut req = decode_request(&c.request()).unwrap();
    assert_eq!(req.method.name, "CreateDisk_Task");
    assert_eq!(req.this.value, "VStorageObjectManager");
    let got: VslmCreateSpec = req.one("spec").unwrap();
    assert_eq!((got.name.as_str(), got.capacity_in_mb), ("vol-b", 128));

    // Login's password arrives, but a request's Debug never shows it.
    let c = Canned::new("<LoginResponse xmlns=\"urn:vim25\"/>");
    let _ = ready(SessionManager::new("SessionManager").login(&c, "u", "pw-secret", None));
    let mut req = decode_request(&c.request()).unwrap();
    assert!(!format!("{req:?}").contains("pw-secret"));
    assert_eq!(req.one::<String>("password").unwrap(), "pw-secret");
    assert_eq!(req.opt::<String>("locale").unwrap(), None);

    // A response the server encodes is one the client decodes.
    let task = vsphere_client::codec::ManagedObjectReference::new("Task", "task-9");
    let body = encode_response(&CREATE_DISK_TASK, &[&&task]);
    let pending =
        vsphere_client::rpc::task_one::<VStorageObject>(&body, &CREATE_DISK_TASK).unwrap();
    assert_eq!(pending.task().reference().value, "task-9");

    // A fault the server encodes is the typed fault the client sees.
    let body = encode_fault("ServerFaultCode", "bad password", &InvalidLogin::default());
    let err = vsphere_client::rpc::void(&body, &LOGIN).unwrap_err();
    assert!(err.is_fault("InvalidLogin"), "{err}");

    // Garbage and unknown methods are typed errors.
    assert!(decode_request("<x/>").is_err());
    assert!(decode_request(&c.request().replace("Login", "NoSuchMethod")).is_err());
}
