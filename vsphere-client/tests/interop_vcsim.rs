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
use vsphere_client::client::{
    BrowseSpec, Client, ConnectOptions, DatastoreFileKind, NicModel, Properties, RetrieveSpec,
    SessionCache, VmNic, fcd_id,
};
use vsphere_client::codec::{ManagedObjectReference, SecretString};
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

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vsc-interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The server-side key of the client's session (`SessionManager.currentSession.key`).
async fn session_key(client: &Client) -> String {
    let sm = client
        .service_content()
        .session_manager
        .clone()
        .expect("a session manager");
    client
        .properties(&sm, &["currentSession"])
        .await
        .expect("currentSession")
        .get::<vsphere_client::types::UserSession>("currentSession")
        .expect("logged in")
        .key
}

#[tokio::test]
async fn the_session_cache_is_reused_across_clients() {
    let sim = vcsim!("-user", "alice", "-password", "pw-cache-7d2e");
    let dir = temp_dir("session-reuse");
    let options = sim.options().session_cache(&dir);
    let first = Client::connect(options.clone()).await.expect("first login");
    let key = session_key(&first).await;

    let cache = SessionCache::new(&dir);
    let file = cache.path_for(first.url(), "alice");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(
        !stored.contains("pw-cache-7d2e"),
        "only the cookie is stored"
    );
    assert!(stored.trim().len() > 2, "a cookie: {stored:?}");

    // A second client (a second process, as far as the server knows) reuses the session.
    let second = Client::connect(options.clone()).await.expect("reuse");
    assert_eq!(session_key(&second).await, key, "the same server session");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stored);

    // No secret in any Debug output.
    let debug = format!("{options:?} {second:?} {cache:?}");
    assert!(!debug.contains("pw-cache-7d2e"), "{debug}");
    assert!(!debug.contains(stored.trim()), "{debug}");

    // Logging out ends the session and forgets it.
    second.logout().await.unwrap();
    assert!(!file.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_stale_cached_cookie_means_a_fresh_login() {
    let sim = vcsim!("-user", "alice", "-password", "pw");
    let dir = temp_dir("session-stale");
    let options = sim.options().session_cache(&dir);
    let cache = SessionCache::new(&dir);
    cache
        .store(
            options.url(),
            "alice",
            &SecretString::from("\"00000000-dead-beef-0000-000000000000\""),
        )
        .unwrap();
    let client = Client::connect(options).await.expect("logs in afresh");
    let key = session_key(&client).await;
    assert!(!key.is_empty());
    let rewritten = std::fs::read_to_string(cache.path_for(client.url(), "alice")).unwrap();
    assert!(!rewritten.contains("dead-beef"), "rewritten: {rewritten:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn nics_are_added_on_networks_and_portgroups_and_removed() {
    let sim = vcsim!();
    let client = sim.connect().await;
    let vm = client.vm(first_vm(&client).await);
    let before = vm.nics().await.expect("nics");
    vm.add_nic_named(NicModel::E1000, "VM Network")
        .await
        .expect("an E1000 on the standard network");
    vm.add_nic_named(NicModel::Vmxnet3, "DC0_DVPG0")
        .await
        .expect("a VMXNET3 on the distributed portgroup");
    let after = vm.nics().await.unwrap();
    assert_eq!(after.len(), before.len() + 2, "{after:?}");
    let new: Vec<&VmNic> = after
        .iter()
        .filter(|n| !before.iter().any(|b| b.key == n.key))
        .collect();
    let e1000 = new
        .iter()
        .find(|n| n.model == "VirtualE1000")
        .expect("e1000");
    assert_eq!(e1000.network.as_deref(), Some("VM Network"));
    assert!(e1000.mac_address.is_some(), "the server assigned a MAC");
    let vmxnet3 = new
        .iter()
        .find(|n| n.model == "VirtualVmxnet3")
        .expect("vmxnet3");
    assert!(
        vmxnet3
            .network
            .as_deref()
            .is_some_and(|k| k.starts_with("dvportgroup-")),
        "{vmxnet3:?}"
    );
    vm.remove_nic(e1000.key).await.expect("remove");
    let left = vm.nics().await.unwrap();
    assert_eq!(left.len(), before.len() + 1);
    assert!(!left.iter().any(|n| n.key == e1000.key));
    assert!(matches!(
        vm.remove_nic(e1000.key).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        vm.add_nic_named(NicModel::E1000, "no-such-network").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn datastore_files_are_uploaded_browsed_and_downloaded() {
    let sim = vcsim!();
    let client = sim.connect().await;
    let ds = client
        .datastore_by_name("LocalDS_0")
        .await
        .expect("LocalDS_0");
    assert_eq!(ds.datacenter_path().await.unwrap(), "DC0");

    // 3 MiB of non-repeating bytes, streamed up from disk.
    let dir = temp_dir("datastore");
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("payload.bin");
    let data: Vec<u8> = (0u32..3 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &data).unwrap();
    let sent = ds
        .upload(&local, "interop/sub dir/payload.bin")
        .await
        .expect("upload");
    assert_eq!(sent, data.len() as u64);

    // Browse: the folder, then everything below the root matching a pattern.
    let files = ds
        .browse("interop", &BrowseSpec::new())
        .await
        .expect("browse");
    assert!(
        files
            .iter()
            .any(|f| f.name == "sub dir" && f.kind == DatastoreFileKind::Folder),
        "{files:?}"
    );
    let found = ds
        .browse("", &BrowseSpec::new().pattern("*.bin").recursive(true))
        .await
        .expect("recursive browse");
    let payload = found
        .iter()
        .find(|f| f.name == "payload.bin")
        .expect("the upload is found");
    assert_eq!(payload.size, Some(data.len() as i64));
    assert_eq!(
        payload.path().unwrap().to_string(),
        "[LocalDS_0] interop/sub dir/payload.bin"
    );
    let err = ds
        .browse("no-such-folder", &BrowseSpec::new())
        .await
        .expect_err("missing folder");
    assert!(err.is_fault("FileNotFound"), "{err:?}");

    // Download to a file (atomically) and into memory.
    let back = dir.join("back.bin");
    let got = ds
        .download("interop/sub dir/payload.bin", &back)
        .await
        .expect("download");
    assert_eq!(got, data.len() as u64);
    assert!(std::fs::read(&back).unwrap() == data, "same bytes");
    let mut mem: Vec<u8> = Vec::new();
    ds.download_to("interop/sub dir/payload.bin", &mut mem)
        .await
        .unwrap();
    assert_eq!(mem.len(), data.len());

    // A missing file is a typed 404 and leaves nothing behind locally.
    let missing = dir.join("missing.bin");
    let err = ds
        .download("interop/nope.bin", &missing)
        .await
        .expect_err("404");
    assert!(
        matches!(err, Error::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(!missing.exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no partial file"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn first_class_disks_carry_tags_and_clone_is_typed_when_missing() {
    use vsphere_client::rest::{Cardinality, CategorySpec, RestClient, TagSpec};
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
    let disks = client.disks().unwrap();
    let a = fcd_id(&disks.create("tagged-a", 4, &ds).await.unwrap()).unwrap();
    let b = fcd_id(&disks.create("tagged-b", 4, &ds).await.unwrap()).unwrap();

    // The category and tag come from the tagging service (REST); FCDs use their names.
    let rest = RestClient::connect(sim.options())
        .await
        .expect("REST session");
    let cat = rest
        .create_category(&CategorySpec::new("tier", Cardinality::Multiple))
        .await
        .unwrap();
    rest.create_tag(&TagSpec::new("gold", &cat)).await.unwrap();
    rest.create_tag(&TagSpec::new("silver", &cat))
        .await
        .unwrap();

    disks.attach_tag(&a, "tier", "gold").await.expect("attach");
    disks.attach_tag(&b, "tier", "gold").await.unwrap();
    disks.attach_tag(&b, "tier", "silver").await.unwrap();
    assert_eq!(
        disks.tags(&a).await.unwrap(),
        [("tier".to_owned(), "gold".to_owned())]
    );
    let mut gold = disks.with_tag("tier", "gold").await.unwrap();
    gold.sort();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(gold, both);
    disks.detach_tag(&b, "tier", "gold").await.expect("detach");
    assert_eq!(
        disks.with_tag("tier", "gold").await.unwrap(),
        std::slice::from_ref(&a)
    );
    assert_eq!(disks.tags(&b).await.unwrap().len(), 1);
    // An unknown tag is a typed fault.
    let e = disks.attach_tag(&a, "tier", "platinum").await.unwrap_err();
    assert!(e.fault().is_some(), "{e:?}");

    // vcsim 0.24.2 has no CloneVStorageObject_Task / RelocateVStorageObject_Task: the
    // missing method is a typed fault, never a hang or a fake success.
    let e = disks
        .clone_disk(&a, &ds, "copy", &ds)
        .await
        .expect_err("not in vcsim 0.24.2");
    assert!(e.is_not_implemented() || e.fault().is_some(), "{e:?}");
    let e = disks
        .relocate(&a, &ds, &ds)
        .await
        .expect_err("not in vcsim 0.24.2");
    assert!(e.is_not_implemented() || e.fault().is_some(), "{e:?}");
    rest.logout().await.unwrap();
}

#[tokio::test]
async fn login_by_token_with_a_bearer_token_from_vcsims_sts() {
    use vsphere_client::client::{StsClient, default_sts_url};
    let sim = vcsim!();
    let options = sim.options();
    let sts = default_sts_url(options.url());
    // The token on its own, from vcsim's STS simulator (WS-Trust Issue).
    let creds = options.credentials().unwrap().clone();
    let token = StsClient::with_transport(
        sts.clone(),
        std::sync::Arc::new(vsphere_client::client::HttpTransport::new(options.tls()).unwrap()),
    )
    .issue(&creds.username, &creds.password, Duration::from_secs(600))
    .await
    .expect("the STS issues a token");
    let subject = token.subject().expect("a subject");
    assert!(!format!("{token:?}").contains(&subject));

    // Connecting with token login: Issue, then LoginByToken with the WS-Security header.
    let client = Client::connect(options.login_by_token(sts))
        .await
        .expect("LoginByToken");
    let sm = client.service_content().session_manager.clone().unwrap();
    let session = client
        .properties(&sm, &["currentSession"])
        .await
        .unwrap()
        .get::<vsphere_client::types::UserSession>("currentSession")
        .expect("logged in by token");
    assert_eq!(session.user_name, subject);
    // A second, explicit LoginByToken on a client without a session works too.
    let anonymous = Client::connect(
        ConnectOptions::new(&sim.url.replace("user:pass@", ""))
            .unwrap()
            .with_keepalive(None),
    )
    .await
    .unwrap();
    let s = anonymous
        .login_by_token(&token)
        .await
        .expect("explicit token");
    assert_eq!(s.user_name, subject);
}
