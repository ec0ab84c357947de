//! The hypervisor backend tests against the vSphere backend on govmomi's vcsim 0.24.2: the
//! lifecycle core (create by clone, list, spec, start, stop, kill, suspend, destroy, status,
//! IP from Tools with a deadline), disk hot-plug, and the typed errors for what vSphere or this
//! backend does not offer.
//!
//! vcsim reports a guest IP only when one is set through the `SET.guest.ipAddress` extraConfig
//! key (its stand-in for VMware Tools), so the test sets one the way a guest would get one. Its
//! `ShutdownGuest` powers the VM off at once, so the graceful path is exercised; the hard
//! fallback is exercised on a suspended VM (which has no running guest to ask).
//!
//! The same test runs against the SDK's embedded vsphere-sim, which serves clone, power,
//! suspend, destroy, device reconfiguration, `ShutdownGuest` and a guest identity for
//! powered-on VMs (with vcsim's `SET.guest.ipAddress` hook), `config.annotation` (where the
//! backend records a VM's source) and `VirtualDiskManager` (the hot-plugged VMDK).
//!
//! The vcsim run skips (with a printed reason) only when Go is absent and `CI` is unset.

#![cfg(feature = "vsphere")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use test_support::find;
use test_support::sim::Sim;
use test_support::vcsim::Vcsim;
use vmenv_core::vsphere::{VsphereConfig, VsphereHypervisor};
use vmenv_core::{
    Capability, Error, Hypervisor, IpSource, Source, StopOutcome, VmName, VmSpec, VmState,
};
use vsphere_client::client::Client;
use vsphere_client::codec::{Any, Poly};
use vsphere_client::mo::VirtualDiskManager;
use vsphere_client::types::{
    FileBackedVirtualDiskSpec, OptionValue, VirtualDiskSpec, VirtualMachineConfigSpec,
};

const TEMPLATE: &str = "/DC0/vm/DC0_H0_VM0";

/// Which simulator the test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// govmomi's vcsim 0.24.2.
    Vcsim,
    /// The SDK's embedded vsphere-sim.
    Sim,
}

fn name(s: &str) -> VmName {
    VmName::new(s).unwrap()
}

/// What VMware Tools would do in a real guest: report an IP address.
async fn guest_reports_ip(client: &Client, vm: &str, ip: &str) {
    let vm = client.vm(find(client, &format!("/DC0/vm/{vm}")).await);
    let spec = VirtualMachineConfigSpec {
        extra_config: vec![Poly::new(OptionValue {
            key: "SET.guest.ipAddress".to_owned(),
            value: Some(Any::String(ip.to_owned())),
            ..OptionValue::default()
        })],
        ..VirtualMachineConfigSpec::default()
    };
    vm.reconfigure(&spec).await.expect("ReconfigVM_Task");
}

/// Makes a VMDK on the datastore for the hot-plug test; returns its datastore path.
async fn make_vmdk(client: &Client, path: &str) -> String {
    let dc = find(client, "/DC0").await;
    let manager = VirtualDiskManager::from_reference(
        client
            .service_content()
            .virtual_disk_manager
            .clone()
            .unwrap(),
    );
    let spec = FileBackedVirtualDiskSpec {
        virtual_disk_spec: VirtualDiskSpec {
            disk_type: "thin".to_owned(),
            adapter_type: "lsiLogic".to_owned(),
            ..VirtualDiskSpec::default()
        },
        capacity_kb: 1024,
        ..FileBackedVirtualDiskSpec::default()
    };
    let task = manager
        .create_virtual_disk_task(client, path, Some(&dc), &Poly::new(spec))
        .await
        .expect("CreateVirtualDisk_Task");
    client.wait_task(task).await.expect("the VMDK");
    path.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsphere_backend_lifecycle_on_vcsim() {
    let Some(sim) = Vcsim::start(&[]) else { return };
    lifecycle(sim.client().await, Server::Vcsim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsphere_backend_lifecycle_on_vsphere_sim() {
    let sim = Sim::start(Duration::from_millis(1)).await;
    lifecycle(sim.client().await, Server::Sim).await;
}

async fn lifecycle(client: Client, server: Server) {
    let client = Arc::new(client);
    let mut config = VsphereConfig::new("/DC0/vm", "/DC0/host/DC0_C0/Resources");
    config.ssh_port = None; // vcsim's guests have no network to reach
    let hv = VsphereHypervisor::connect(client.clone(), config)
        .await
        .unwrap();
    assert_eq!(hv.kind(), "vsphere");
    let caps = hv.capabilities();
    assert!(caps.contains(Capability::DiskHotplug));
    for c in [
        Capability::Snapshots,
        Capability::SharedFolders,
        Capability::PortForwards,
        Capability::Nics,
        Capability::GuestExec,
    ] {
        assert!(!caps.contains(c), "{c:?} advertised");
    }
    assert!(
        hv.require_snapshots()
            .err()
            .is_some_and(|e| e.is_unsupported())
    );

    // Create: a clone of the template, stopped, with the spec's CPUs and memory.
    let web = name("web-1");
    let mut spec = VmSpec::new(web.clone(), Source::Template(TEMPLATE.to_owned()));
    spec.cpus = 2;
    spec.memory_mib = 512;
    hv.create(&spec).await.unwrap();
    assert_eq!(hv.status(&web).await.unwrap().state, VmState::Stopped);
    let read = hv.spec(&web).await.unwrap();
    assert_eq!((read.cpus, read.memory_mib), (2, 512));
    // Both simulators keep `config.annotation`, where the backend records the source.
    assert_eq!(read.source, Source::Template(TEMPLATE.to_owned()));
    assert!(matches!(
        hv.create(&spec).await,
        Err(Error::AlreadyExists { .. })
    ));
    let image = VmSpec::new(name("img"), Source::Image("/tmp/x.qcow2".into()));
    assert!(hv.create(&image).await.unwrap_err().is_unsupported());
    let missing = VmSpec::new(name("nope"), Source::Template("/DC0/vm/no-such".to_owned()));
    assert!(matches!(
        hv.create(&missing).await,
        Err(Error::Invalid { .. })
    ));
    let clone = VmSpec::new(name("web-2"), Source::CloneOf(web.clone()));
    hv.create(&clone).await.unwrap();
    assert_eq!(
        hv.spec(&name("web-2")).await.unwrap().source,
        Source::CloneOf(web.clone())
    );
    let listed = hv.list().await.unwrap();
    assert!(
        listed.contains(&web) && listed.contains(&name("web-2")),
        "{listed:?}"
    );
    assert!(!listed.contains(&name("img")) && !listed.contains(&name("nope")));

    // Start (idempotent), then the IP from Tools, within a deadline.
    hv.start(&web).await.unwrap();
    hv.start(&web).await.unwrap();
    let st = hv.status(&web).await.unwrap();
    assert_eq!((st.state, st.raw.as_str()), (VmState::Running, "poweredOn"));
    if server == Server::Vcsim {
        // vcsim reports no IP until one is set (its stand-in for Tools): the deadline passes.
        match hv.ip(&web, Duration::from_millis(300)).await {
            Err(Error::Timeout { .. }) => {}
            other => panic!("expected a timeout before Tools report an IP, got {other:?}"),
        }
    } else {
        // vsphere-sim gives a powered-on VM a guest identity at once, as running Tools would.
        let addr = hv.ip(&web, Duration::from_secs(5)).await.unwrap();
        assert_eq!(addr.source, IpSource::GuestTools);
        assert!(addr.guest_ip.is_ipv4(), "{addr:?}");
    }
    // Both honour vcsim's `SET.guest.ipAddress` hook: the guest reports a new address.
    guest_reports_ip(&client, "web-1", "10.0.0.7").await;
    let addr = hv.ip(&web, Duration::from_secs(5)).await.unwrap();
    assert_eq!(addr.guest_ip.to_string(), "10.0.0.7");
    assert_eq!(addr.source, IpSource::GuestTools);
    assert_eq!(addr.ssh.port(), 22);

    // Disk hot-plug: an existing VMDK in, listed, out; the file survives.
    let vmdk = make_vmdk(&client, "[LocalDS_0] web-1/extra.vmdk").await;
    let vmdk = vmdk.as_str();
    let before = hv
        .require_disk_hotplug()
        .unwrap()
        .list_attached_disks(&web)
        .await
        .unwrap();
    let plug = hv.require_disk_hotplug().unwrap();
    let d = plug.attach_disk(&web, Path::new(vmdk)).await.unwrap();
    assert_eq!(
        plug.attach_disk(&web, Path::new(vmdk)).await.unwrap(),
        d,
        "attach is idempotent"
    );
    let during = plug.list_attached_disks(&web).await.unwrap();
    assert_eq!(during.len(), before.len() + 1);
    assert!(during.contains(&d));
    plug.detach_disk(&web, &d.id).await.unwrap();
    plug.detach_disk(&web, &d.id).await.unwrap();
    assert_eq!(plug.list_attached_disks(&web).await.unwrap(), before);
    // The file is still there: it attaches again.
    plug.attach_disk(&web, Path::new(vmdk)).await.unwrap();
    assert!(matches!(
        plug.attach_disk(&web, Path::new("/var/lib/x.qcow2")).await,
        Err(Error::Invalid { .. })
    ));

    // Pause is not a vSphere operation; suspend is, and start resumes.
    assert!(hv.pause(&web).await.unwrap_err().is_unsupported());
    hv.suspend(&web).await.unwrap();
    assert_eq!(hv.status(&web).await.unwrap().state, VmState::Saved);
    hv.start(&web).await.unwrap();
    assert_eq!(hv.status(&web).await.unwrap().state, VmState::Running);

    // Stop: graceful through ShutdownGuest (both simulators serve it); again: already stopped.
    assert_eq!(
        hv.stop(&web, Duration::from_secs(5)).await.unwrap(),
        StopOutcome::Graceful
    );
    assert_eq!(hv.status(&web).await.unwrap().state, VmState::Stopped);
    assert_eq!(
        hv.stop(&web, Duration::from_secs(5)).await.unwrap(),
        StopOutcome::AlreadyStopped
    );
    // A suspended VM has no guest to ask: hard power-off.
    hv.start(&web).await.unwrap();
    hv.suspend(&web).await.unwrap();
    assert_eq!(
        hv.stop(&web, Duration::from_secs(5)).await.unwrap(),
        StopOutcome::Forced
    );
    assert_eq!(hv.status(&web).await.unwrap().state, VmState::Stopped);

    // Kill, destroy (refused while running), unknown VMs.
    hv.start(&web).await.unwrap();
    assert!(matches!(
        hv.destroy(&web).await,
        Err(Error::WrongState { .. })
    ));
    hv.kill(&web).await.unwrap();
    hv.kill(&web).await.unwrap();
    hv.destroy(&web).await.unwrap();
    assert_eq!(hv.status(&web).await.unwrap().state, VmState::None);
    assert!(!hv.list().await.unwrap().contains(&web));
    assert!(matches!(hv.start(&web).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        hv.destroy(&web).await,
        Err(Error::NotFound { .. })
    ));
}
