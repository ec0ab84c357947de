//! Interop tests against govmomi's vCenter simulator (vcsim 0.24.2, built from Debian's
//! `golang-github-vmware-govmomi-dev` by `peers/build.sh`).
//!
//! Each test starts its own vcsim process on a free port (`-listen 127.0.0.1:0`) and stops it
//! when done (its stdin closes: `-exit-on-stdin-eof`). The binary comes from `GOVMOMI_VCSIM`, or
//! is built by `peers/build.sh` (cached under `target/peers/`). Without Go and outside CI the
//! tests print why they skip; with `CI` set they fail instead.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use vsphere_client::Error;
use vsphere_client::client::{Client, ConnectOptions, Properties, RetrieveSpec, fcd_id};
use vsphere_client::codec::ManagedObjectReference;
use vsphere_client::types::{
    ObjectSpec, PropertyFilterSpec, PropertySpec, TaskInfoState, VirtualMachineCloneSpec,
    VirtualMachinePowerState,
};

/// The vcsim binary, or why there is none (outside CI only).
fn vcsim_binary() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("GOVMOMI_VCSIM") {
            return Ok(PathBuf::from(p));
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let has_go = Command::new("go")
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_go && std::env::var_os("CI").is_none() {
            return Err("Go is not installed (apt-get install golang-go \
                        golang-github-vmware-govmomi-dev) and CI is unset"
                .to_owned());
        }
        let out = Command::new(root.join("peers/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("peers/build.sh runs");
        assert!(out.status.success(), "peers/build.sh failed");
        let first = String::from_utf8(out.stdout).expect("utf-8 paths");
        Ok(PathBuf::from(
            first.lines().next().expect("vcsim path").trim(),
        ))
    })
    .clone()
}

/// A running vcsim; dropping it closes its stdin and waits for its clean exit.
struct Vcsim {
    child: Option<Child>,
    url: String,
}

impl Vcsim {
    fn start(extra: &[&str]) -> Option<Self> {
        let bin = match vcsim_binary() {
            Ok(b) => b,
            Err(why) => {
                eprintln!("skipping the vcsim interop test: {why}");
                return None;
            }
        };
        let mut child = Command::new(bin)
            .args(["-listen", "127.0.0.1:0", "-exit-on-stdin-eof"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vcsim starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("vcsim prints its URL");
        assert!(line.starts_with("http"), "unexpected first line {line:?}");
        Some(Self {
            child: Some(child),
            url: line.trim().to_owned(),
        })
    }

    fn options(&self) -> ConnectOptions {
        ConnectOptions::new(&self.url)
            .expect("vcsim's URL parses")
            .with_keepalive(None)
    }

    async fn connect(&self) -> Client {
        Client::connect(self.options()).await.expect("connects")
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

macro_rules! vcsim {
    ($($arg:expr),*) => {
        match Vcsim::start(&[$($arg),*]) {
            Some(v) => v,
            None => return,
        }
    };
}

#[tokio::test]
async fn connects_and_negotiates_the_release() {
    let sim = vcsim!();
    let client = sim.connect().await;
    assert_eq!(client.api_release(), Some("6.5"));
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

#[tokio::test]
async fn a_bad_password_is_a_typed_invalid_login() {
    let sim = vcsim!("-user", "alice", "-password", "right");
    let mut url = url::Url::parse(&sim.url).unwrap();
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

#[tokio::test]
async fn the_finder_walks_the_inventory_with_globs() {
    let sim = vcsim!();
    let client = sim.connect().await;
    let finder = client.finder().await.expect("finder");
    let vms = finder.find("/DC0/vm/*");
    let mut names: Vec<&str> = vms.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "DC0_C0_RP0_VM0",
            "DC0_C0_RP0_VM1",
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
    assert_eq!(finder.datastore(None).unwrap().name, "LocalDS_0");
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

#[tokio::test]
async fn container_view_and_paged_retrieval() {
    let sim = vcsim!();
    let client = sim.connect().await;
    let root = client.service_content().root_folder.clone();
    let view = client
        .container_view(&root, &["VirtualMachine"], true)
        .await
        .expect("view");
    let members = view.objects().await.expect("view members");
    assert_eq!(members.len(), 4);
    let mut pages = view.retrieve(
        &[(
            "VirtualMachine",
            &["name", "runtime.powerState", "config.hardware.numCPU"],
        )],
        Some(2),
    );
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await.expect("page") {
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
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);
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
    assert_eq!(all.len(), 4);
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

#[tokio::test]
async fn wait_for_updates_ex_on_a_private_collector() {
    let sim = vcsim!();
    let client = sim.connect().await;
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

#[tokio::test]
async fn tasks_report_progress_results_and_typed_faults() {
    let sim = vcsim!();
    let client = sim.connect().await;
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

#[tokio::test]
async fn first_class_disks_create_list_retrieve_delete() {
    let sim = vcsim!();
    let client = sim.connect().await;
    let ds = client
        .finder()
        .await
        .unwrap()
        .datastore(Some("LocalDS_0"))
        .unwrap()
        .reference
        .clone();
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
    // vcsim 0.24.2 answers VStorageObjectCreateSnapshot_Task with InvalidArgument: a typed
    // task fault.
    let err = disks
        .snapshot(&id, &ds, "before")
        .await
        .expect_err("vcsim refuses");
    assert!(err.is_fault("InvalidArgument"), "{err:?}");
    disks
        .delete(&id, &ds)
        .await
        .expect("DeleteVStorageObject_Task");
    assert!(!disks.list(&ds).await.unwrap().contains(&id));
    // A missing disk is a typed fault.
    let err = disks.retrieve(&id, &ds).await.expect_err("gone");
    assert!(err.fault().is_some(), "{err:?}");
}
