//! The client's interop suite, one set of checks for every server: govmomi's vcsim
//! (`test-support/tests/interop_vcsim.rs`) and the SDK's `vsphere-sim`
//! (`vsphere-sim/tests/client_suite.rs`) are thin callers of [`crate::client_suite!`].
//!
//! A server is a [`Server`]: how to start one (optionally with one allowed login), its URL, and
//! a [`Profile`] of what it has and does (its release, its VMs, whether it pages, which First
//! Class Disk operations it serves). Where a server lacks an operation, the check asserts the
//! typed fault it gives instead, so a gap can never pass silently.
//!
//! Each check starts its own server and connects through the high-level `Client` (no
//! keepalive): connect and release negotiation, a bad password as a typed `InvalidLogin`, the
//! finder with globs, container and list views with paged retrieval, `WaitForUpdatesEx` on a
//! private collector, tasks with progress and typed faults (clone, disk add/remove), First
//! Class Disks (create, list, retrieve, attach/detach, snapshots, metadata, delete), and the
//! owned view, disk details, SCSI slot, shared task waiter and FCD progress hook.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use vsphere_client::Error;
use vsphere_client::client::{
    Client, ConnectOptions, Properties, RetrieveSpec, TaskWaiter, fcd_id,
};
use vsphere_client::codec::{ManagedObjectReference, Value as _};
use vsphere_client::mo::VirtualMachine;
use vsphere_client::types::{
    ID, ObjectSpec, PropertyFilterSpec, PropertySpec, TaskInfoState, VirtualMachineCloneSpec,
    VirtualMachinePowerState,
};

use crate::sim::Sim;
use crate::vcsim::Vcsim;

/// What a server has and does, as far as the suite's checks go.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The server's name, for messages.
    pub name: &'static str,
    /// The vim25 release the client negotiates with it.
    pub release: &'static str,
    /// The VMs under `/DC0/vm`, sorted by name.
    pub vms: &'static [&'static str],
    /// Whether it honours `maxObjects` (vcsim 0.24.2 sends one page whatever the size).
    pub pages: bool,
    /// Whether it serves `AttachDisk_Task` / `DetachDisk_Task` on VMs.
    pub fcd_attach: bool,
    /// Whether it takes First Class Disk snapshots (vcsim 0.24.2 answers `InvalidArgument`).
    pub fcd_snapshots: bool,
    /// Whether it updates First Class Disk metadata.
    pub fcd_metadata: bool,
    /// The fault of retrieving a deleted disk (`None`: any typed fault).
    pub missing_disk_fault: Option<&'static str>,
}

/// A server the suite runs against.
pub trait Server: Sized + Send + Sync {
    /// Starts one; with `login`, only that user and password may log in. `None` when the test
    /// must skip (the server cannot run here and `CI` is unset; the reason is printed).
    fn start(login: Option<(&str, &str)>) -> impl Future<Output = Option<Self>> + Send;

    /// The SDK URL with credentials.
    fn url(&self) -> &str;

    /// What it has and does.
    fn profile(&self) -> Profile;

    /// A logged-in client without keepalive.
    fn connect(&self) -> impl Future<Output = Client> + Send {
        async move {
            Client::connect(
                ConnectOptions::new(self.url())
                    .expect("the server's URL parses")
                    .with_keepalive(None),
            )
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.profile().name))
        }
    }
}

impl Server for Vcsim {
    fn start(login: Option<(&str, &str)>) -> impl Future<Output = Option<Self>> + Send {
        let args: Vec<String> = login
            .map(|(u, p)| {
                vec![
                    "-user".to_owned(),
                    u.to_owned(),
                    "-password".to_owned(),
                    p.to_owned(),
                ]
            })
            .unwrap_or_default();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Vcsim::start(&args)
        }
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn profile(&self) -> Profile {
        Profile {
            name: "vcsim 0.24.2",
            release: "6.5",
            vms: &[
                "DC0_C0_RP0_VM0",
                "DC0_C0_RP0_VM1",
                "DC0_H0_VM0",
                "DC0_H0_VM1",
            ],
            pages: false,
            fcd_attach: false,
            fcd_snapshots: false,
            fcd_metadata: false,
            missing_disk_fault: None,
        }
    }
}

impl Server for Sim {
    fn start(login: Option<(&str, &str)>) -> impl Future<Output = Option<Self>> + Send {
        let login = login.map(|(u, p)| (u.to_owned(), p.to_owned()));
        async move { Some(Sim::start_with_login(Duration::from_millis(2), login).await) }
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn profile(&self) -> Profile {
        Profile {
            name: "vsphere-sim",
            release: "8.0.3.0",
            vms: &[
                "DC0_C0_RP0_VM0",
                "DC0_C0_RP0_VM1",
                "DC0_C0_RP0_VM2",
                "DC0_C0_RP0_VM3",
                "DC0_C0_RP0_VM4",
                "DC0_C0_RP0_VM5",
                "DC0_H0_VM0",
                "DC0_H0_VM1",
            ],
            pages: true,
            fcd_attach: true,
            fcd_snapshots: true,
            fcd_metadata: true,
            missing_disk_fault: Some("NotFound"),
        }
    }
}

/// Defines one `#[tokio::test]` per suite check against the server type `$server` (a
/// [`Server`]): `test_support::client_suite!(test_support::vcsim::Vcsim);`. The caller needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! client_suite {
    ($server:ty) => {
        $crate::client_suite!(@each $server;
            connects_and_negotiates_the_release,
            a_bad_password_is_a_typed_invalid_login,
            the_finder_walks_the_inventory_with_globs,
            container_view_list_view_and_paged_retrieval,
            wait_for_updates_ex_on_a_private_collector,
            tasks_report_progress_results_and_typed_faults,
            first_class_disks_lifecycle,
            owned_views_disk_details_shared_task_waits_and_fcd_progress
        );
    };
    (@each $server:ty; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::suite::$check::<$server>().await;
            }
        )*
    };
}

macro_rules! server {
    ($s:ty) => {
        match <$s as Server>::start(None).await {
            Some(s) => s,
            None => return,
        }
    };
}

/// Connects, checks the negotiated release and the service content, logs out, and sees a
/// call after logout refused as `SessionClosed`.
pub async fn connects_and_negotiates_the_release<S: Server>() {
    let server = server!(S);
    let client = server.connect().await;
    assert_eq!(client.api_release(), Some(server.profile().release));
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

/// A wrong password is `Error::InvalidLogin` naming the user, and the password appears in
/// neither the message nor `Debug`.
pub async fn a_bad_password_is_a_typed_invalid_login<S: Server>() {
    let Some(server) = S::start(Some(("alice", "right"))).await else {
        return;
    };
    let mut url = url::Url::parse(server.url()).expect("URL");
    url.set_password(Some("pw-8c1f-bad")).expect("a password");
    let err = Client::connect(
        ConnectOptions::new(url.as_str())
            .expect("URL")
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

/// The finder: globs per path element, defaults, `Ambiguous` and `NotFound`.
pub async fn the_finder_walks_the_inventory_with_globs<S: Server>() {
    let server = server!(S);
    let client = server.connect().await;
    let finder = client.finder().await.expect("finder");
    let vms = finder.find("/DC0/vm/*");
    let mut names: Vec<&str> = vms.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, server.profile().vms);
    assert!(vms.iter().all(|o| o.type_name() == "VirtualMachine"));
    let compute: Vec<&str> = finder
        .find("*/host/*")
        .iter()
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(compute, ["/DC0/host/DC0_C0", "/DC0/host/DC0_H0"]);
    assert_eq!(finder.find("/DC0/host/DC0_C0/DC0_C0_H*").len(), 3);
    assert_eq!(finder.find("/*/datastore/*")[0].name, "LocalDS_0");
    assert_eq!(finder.datacenter(None).expect("one").path, "/DC0");
    assert_eq!(
        finder.datastore(Some("LocalDS_0")).expect("found").name,
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
    let vm = finder.virtual_machine("DC0_H0_VM0").expect("found");
    assert_eq!(vm.path, "/DC0/vm/DC0_H0_VM0");
}

/// A container view retrieved in pages of 3 (counted where the server pages), a list view of
/// two of its members, and the plain paged retrieval of the same objects.
pub async fn container_view_list_view_and_paged_retrieval<S: Server>() {
    let server = server!(S);
    let profile = server.profile();
    let client = server.connect().await;
    let root = client.service_content().root_folder.clone();
    let view = client
        .container_view(&root, &["VirtualMachine"], true)
        .await
        .expect("view");
    let members = view.objects().await.expect("view members");
    assert_eq!(members.len(), profile.vms.len());
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
            assert!(p.get::<i32>("config.hardware.numCPU").expect("numCPU") >= 1);
            seen.push(p.get::<String>("name").expect("name"));
        }
    }
    drop(pages);
    if profile.pages {
        assert_eq!(page_count, profile.vms.len().div_ceil(3), "pages of 3");
    } else {
        assert_eq!(page_count, 1, "{} sends one page", profile.name);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, profile.vms);
    view.close().await.expect("DestroyView");

    let list = client.list_view(&members[..2]).await.expect("list view");
    assert_eq!(list.objects().await.expect("members").len(), 2);
    let got = list
        .retrieve(&[("VirtualMachine", &["name"])], None)
        .collect_all()
        .await
        .expect("retrieval");
    assert_eq!(got.len(), 2);
    list.close().await.expect("DestroyView");

    let spec = RetrieveSpec::objects("VirtualMachine", &["name"], members).max_objects(3);
    let all = client
        .retrieve_pages(spec)
        .collect_all()
        .await
        .expect("retrieval");
    assert_eq!(all.len(), profile.vms.len());
}

async fn first_vm(client: &Client) -> ManagedObjectReference {
    client
        .finder()
        .await
        .expect("finder")
        .virtual_machine("DC0_H0_VM0")
        .expect("DC0_H0_VM0")
        .reference
        .clone()
}

/// `WaitForUpdatesEx` on a private collector: the first wait reports current values, a zero
/// wait with nothing new gives `None`, a power-off is reported.
pub async fn wait_for_updates_ex_on_a_private_collector<S: Server>() {
    let server = server!(S);
    let client = server.connect().await;
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
        .expect("WaitForUpdatesEx")
        .expect("the first wait reports current values");
    assert!(collector.version().is_some());
    let change = &first.filter_set[0].object_set[0].change_set[0];
    assert_eq!(change.name, "runtime.powerState");
    // Nothing changed: a zero wait returns no update set.
    assert!(
        collector
            .wait(Duration::ZERO)
            .await
            .expect("WaitForUpdatesEx")
            .is_none()
    );

    client.vm(vm.clone()).power_off().await.expect("power off");
    let next = collector
        .wait(Duration::from_secs(5))
        .await
        .expect("WaitForUpdatesEx")
        .expect("the power-off is reported");
    let val = next.filter_set[0].object_set[0].change_set[0]
        .val
        .clone()
        .expect("a value");
    assert_eq!(
        VirtualMachinePowerState::from_any(val).expect("a power state"),
        VirtualMachinePowerState::PoweredOff
    );
    collector.close().await.expect("DestroyPropertyCollector");
}

/// Power tasks with progress and a typed fault, a clone's typed result, a disk added and
/// removed by reconfiguration.
pub async fn tasks_report_progress_results_and_typed_faults<S: Server>() {
    let server = server!(S);
    let client = server.connect().await;
    let vm = client.vm(first_vm(&client).await);
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
        vm.power_state().await.expect("power state"),
        VirtualMachinePowerState::PoweredOff
    );
    // Powering off a powered-off VM fails with the typed fault.
    let err = vm.power_off().await.expect_err("already off");
    assert!(err.is_fault("InvalidPowerState"), "{err:?}");
    assert!(matches!(err, Error::TaskFailed { .. }));
    vm.power_on().await.expect("powered on again");
    assert_eq!(
        vm.power_state().await.expect("power state"),
        VirtualMachinePowerState::PoweredOn
    );
    // A typed task result: CloneVM_Task gives the new VM.
    let folder = client
        .finder()
        .await
        .expect("finder")
        .find("/DC0/vm")
        .first()
        .map(|o| o.reference.clone())
        .expect("/DC0/vm");
    let clone = vm
        .clone_to(&folder, "clone-1", &VirtualMachineCloneSpec::default())
        .await
        .expect("clone");
    assert_eq!(clone.type_, "VirtualMachine");
    let p = client.properties(&clone, &["name"]).await.expect("name");
    assert_eq!(p.get::<String>("name").as_deref(), Some("clone-1"));
    // A disk added by reconfiguration shows up, and can be removed.
    let before: Vec<i32> = vm
        .disks()
        .await
        .expect("disks")
        .iter()
        .map(|d| d.key)
        .collect();
    vm.add_disk(2048).await.expect("add disk");
    let disks = vm.disks().await.expect("disks");
    assert_eq!(disks.len(), before.len() + 1);
    let added = disks
        .iter()
        .find(|d| !before.contains(&d.key))
        .expect("the new disk");
    assert_eq!(added.capacity_kb, 2048, "{disks:?}");
    vm.remove_disk(added.key, true).await.expect("remove disk");
    assert_eq!(vm.disks().await.expect("disks").len(), before.len());
    client.vm(clone).destroy().await.expect("destroy the clone");
}

/// First Class Disks: create, list, retrieve; attach/detach where served (and the refusals
/// around an attached disk), snapshots and metadata where served (else their typed faults);
/// delete, and a deleted disk's typed fault.
pub async fn first_class_disks_lifecycle<S: Server>() {
    let server = server!(S);
    let profile = server.profile();
    let client = server.connect().await;
    let finder = client.finder().await.expect("finder");
    let ds = finder
        .datastore(Some("LocalDS_0"))
        .expect("LocalDS_0")
        .reference
        .clone();
    let disks = client.disks().expect("a VStorageObjectManager");
    let disk = disks
        .create("interop-vol", 10, &ds)
        .await
        .expect("CreateDisk_Task");
    let id = fcd_id(&disk).expect("the new disk has an id");
    assert!(disks.list(&ds).await.expect("list").contains(&id));
    let got = disks.retrieve(&id, &ds).await.expect("retrieve");
    let config = got.config.as_ref().expect("config");
    assert_eq!(config.base_config_info.name, "interop-vol");
    assert_eq!(config.capacity_in_mb, 10);
    assert_eq!(client.fcd_consumer(&id, None).await.expect("scan"), None);

    if profile.fcd_attach {
        let vm0 = client.vm(finder
            .virtual_machine("DC0_H0_VM0")
            .expect("VM0")
            .reference
            .clone());
        let vm1 = client.vm(finder
            .virtual_machine("DC0_H0_VM1")
            .expect("VM1")
            .reference
            .clone());
        // Attached to one VM, it cannot be attached to another; detached, it can.
        vm0.attach_disk(&id, &ds).await.expect("AttachDisk_Task");
        assert_eq!(
            client
                .fcd_consumer(&id, None)
                .await
                .expect("scan")
                .as_deref(),
            Some("DC0_H0_VM0")
        );
        match vm1.attach_disk(&id, &ds).await {
            Err(Error::AttachedElsewhere { vm, .. }) => assert_eq!(vm, "DC0_H0_VM0"),
            other => panic!("expected AttachedElsewhere, got {other:?}"),
        }
        // Bypassing the client's check, the server refuses with vCenter's fault.
        let disk_id = ID {
            id: id.clone(),
            ..ID::default()
        };
        let raw = vm1
            .mo()
            .attach_disk_task(&client, &disk_id, &ds, None, None)
            .await
            .expect("AttachDisk_Task starts");
        let err = client.wait_task(raw).await.expect_err("locked");
        assert!(err.is_fault("InvalidState"), "{err:?}");
        // Deleting an attached disk is refused too.
        let err = disks.delete(&id, &ds).await.expect_err("attached");
        assert!(err.is_fault("InvalidState"), "{err:?}");
        vm0.detach_disk(&id).await.expect("DetachDisk_Task");
        assert_eq!(client.fcd_consumer(&id, None).await.expect("scan"), None);
        vm1.attach_disk(&id, &ds)
            .await
            .expect("attach to the other VM");
        vm1.detach_disk(&id).await.expect("detach again");
    }

    if profile.fcd_snapshots {
        let snap = disks
            .snapshot(&id, &ds, "before")
            .await
            .expect("VStorageObjectCreateSnapshot_Task");
        let info = disks.snapshots(&id, &ds).await.expect("snapshots");
        assert_eq!(info.snapshots.len(), 1);
        assert_eq!(info.snapshots[0].description, "before");
        assert_eq!(info.snapshots[0].id.as_ref().expect("an id").id, snap);
        disks
            .delete_snapshot(&id, &ds, &snap)
            .await
            .expect("DeleteSnapshot_Task");
        assert!(
            disks
                .snapshots(&id, &ds)
                .await
                .expect("snapshots")
                .snapshots
                .is_empty()
        );
        let err = disks
            .delete_snapshot(&id, &ds, &snap)
            .await
            .expect_err("gone");
        assert!(err.is_fault("NotFound"), "{err:?}");
    } else {
        // vcsim 0.24.2 answers VStorageObjectCreateSnapshot_Task with InvalidArgument.
        let err = disks
            .snapshot(&id, &ds, "before")
            .await
            .expect_err("refused");
        assert!(err.is_fault("InvalidArgument"), "{err:?}");
    }

    if profile.fcd_metadata {
        disks
            .update_metadata(&id, &ds, &[("owner", "team-a"), ("tier", "gold")], &[])
            .await
            .expect("metadata");
        disks
            .update_metadata(&id, &ds, &[("tier", "silver")], &["owner"])
            .await
            .expect("metadata");
        let got = disks.retrieve(&id, &ds).await.expect("retrieve");
        let md: Vec<(String, String)> = got
            .config
            .as_ref()
            .expect("config")
            .base_config_info
            .metadata
            .iter()
            .map(|k| (k.key.clone(), k.value.clone()))
            .collect();
        assert_eq!(md, [("tier".to_owned(), "silver".to_owned())]);
    }

    disks
        .delete(&id, &ds)
        .await
        .expect("DeleteVStorageObject_Task");
    assert!(!disks.list(&ds).await.expect("list").contains(&id));
    let err = disks.retrieve(&id, &ds).await.expect_err("gone");
    match profile.missing_disk_fault {
        Some(kind) => assert!(err.is_fault(kind), "{err:?}"),
        None => assert!(err.fault().is_some(), "{err:?}"),
    }
}

/// The API the other crates asked for: an owned view (and a `'static` retrieval) on an
/// `Arc<Client>` used from a spawned task; disk details (file, datastore, bytes); the free
/// SCSI slot a new disk then takes; one [`TaskWaiter`] for several concurrent tasks (results
/// and a typed fault); the progress hook of `Disks::create`.
pub async fn owned_views_disk_details_shared_task_waits_and_fcd_progress<S: Server>() {
    let server = server!(S);
    let profile = server.profile();
    let client = Arc::new(server.connect().await);
    let root = client.service_content().root_folder.clone();
    let view = client
        .container_view_shared(&root, &["VirtualMachine"], true)
        .await
        .expect("an owned view");
    let mut listed = tokio::spawn(async move {
        let mut pages = view.retrieve(&[("VirtualMachine", &["name"])], Some(3));
        let mut names = Vec::new();
        while let Some(page) = pages.next_page().await? {
            names.extend(
                page.into_iter()
                    .filter_map(|c| Properties::from(c).get::<String>("name")),
            );
        }
        drop(pages);
        view.close().await?;
        Ok::<_, Error>(names)
    })
    .await
    .expect("the watcher task")
    .expect("the listing");
    listed.sort();
    assert_eq!(listed, profile.vms);
    let retrieval =
        client.retrieve_pages_shared(RetrieveSpec::objects("Folder", &["name"], [root.clone()]));
    let got = tokio::spawn(retrieval.collect_all())
        .await
        .expect("the task")
        .expect("a 'static retrieval");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].obj, root);

    // Disk details, and the free SCSI slot a new disk takes.
    let vm = client.vm(first_vm(&client).await);
    let before = vm.disk_details().await.expect("disk details");
    assert!(!before.is_empty());
    for d in &before {
        assert!(
            d.disk.file.as_deref().is_some_and(|f| {
                std::path::Path::new(f)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("vmdk"))
            }),
            "{d:?}"
        );
        assert_eq!(d.capacity_bytes, d.disk.capacity_kb * 1024, "{d:?}");
        assert!(d.datastore.is_some(), "{d:?}");
    }
    let (controller, unit) = vm
        .free_scsi_slot()
        .await
        .expect("devices")
        .expect("a free unit");
    assert_ne!(unit, 7, "the controller's own unit");
    assert!(!before.iter().any(|d| {
        d.disk.controller_key == Some(controller) && d.disk.unit_number == Some(unit)
    }));
    vm.add_disk(1024).await.expect("add a disk");
    let after = vm.disk_details().await.expect("disk details");
    let added = after
        .iter()
        .find(|d| !before.iter().any(|b| b.disk.key == d.disk.key))
        .expect("the new disk");
    assert_eq!(
        (added.disk.controller_key, added.disk.unit_number),
        (Some(controller), Some(unit))
    );
    assert_ne!(
        vm.free_scsi_slot().await.expect("devices"),
        Some((controller, unit))
    );

    // One shared waiter for several tasks at once, results and typed faults.
    let waiter = TaskWaiter::new();
    waiter.prepare(&client).await;
    let finder = client.finder().await.expect("finder");
    let mut pending = Vec::new();
    for o in finder.find("/DC0/vm/*") {
        let vm = VirtualMachine::from_reference(o.reference.clone());
        pending.push(
            vm.power_off_vm_task(&*client)
                .await
                .expect("PowerOffVM_Task"),
        );
    }
    let results = join_all(pending.into_iter().map(|t| waiter.wait(&client, t))).await;
    assert_eq!(results.len(), profile.vms.len());
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let again = vm
        .mo()
        .power_off_vm_task(&*client)
        .await
        .expect("PowerOffVM_Task");
    let err = waiter.wait(&client, again).await.expect_err("already off");
    assert!(err.is_fault("InvalidPowerState"), "{err:?}");
    assert_eq!(
        vm.power_state().await.expect("power state"),
        VirtualMachinePowerState::PoweredOff
    );

    // A task that ended before a new waiter made its collector is found in the filter's
    // initial report, not after a whole wait slice (20 s; the timeout is a hang guard).
    let early = vm
        .mo()
        .power_on_vm_task(&*client, None)
        .await
        .expect("PowerOnVM_Task");
    loop {
        let p = client
            .properties(early.task().reference(), &["info.state"])
            .await
            .expect("the task's state");
        if p.get::<TaskInfoState>("info.state") == Some(TaskInfoState::Success) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        TaskWaiter::new().wait(&client, early),
    )
    .await
    .expect("an ended task is seen in the initial report")
    .expect("PowerOnVM_Task succeeded");
    assert_eq!(
        vm.power_state().await.expect("power state"),
        VirtualMachinePowerState::PoweredOn
    );

    // FCD create reports its task's progress; bad input is refused before any call.
    let ds = finder
        .datastore(Some("LocalDS_0"))
        .expect("LocalDS_0")
        .reference
        .clone();
    let disks = client.disks().expect("a VStorageObjectManager");
    let mut states = Vec::new();
    let disk = disks
        .create_with_progress("progress-vol", 10, &ds, |info| {
            states.push(info.state.clone());
        })
        .await
        .expect("CreateDisk_Task");
    assert_eq!(states.last(), Some(&TaskInfoState::Success), "{states:?}");
    let mut calls = 0;
    let bad = disks
        .create_with_progress("", 10, &ds, |_| calls += 1)
        .await
        .expect_err("a disk needs a name");
    assert!(matches!(bad, Error::InvalidOption { .. }), "{bad:?}");
    assert_eq!(calls, 0);
    disks
        .delete(&fcd_id(&disk).expect("an id"), &ds)
        .await
        .expect("delete");
}

/// Polls the futures concurrently in one task until all are done (so that the waits really
/// contend for the shared waiter), in order.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("finished")).collect()
}
