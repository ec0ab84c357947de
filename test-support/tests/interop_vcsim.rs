//! Interop tests against govmomi's vCenter simulator (vcsim 0.24.2, built from Debian's
//! `golang-github-vmware-govmomi-dev` by `peers/build.sh`).
//!
//! The checks shared with `vsphere-sim` live in `test_support::suite` (this file and
//! `vsphere-sim/tests/client_suite.rs` call the same suite); the tests below are the ones only
//! vcsim serves here (session cache, NICs, datastore files, tags, LoginByToken).
//!
//! Each test starts its own vcsim process on a free port (`test_support::vcsim`: the binary
//! from `GOVMOMI_VCSIM`, or built by `peers/build.sh`, cached under `target/peers/`). Without
//! Go and outside CI the tests print why they skip; with `CI` set they fail instead.

use std::path::PathBuf;
use std::time::Duration;

use test_support::suite::Server as _;
use test_support::vcsim::Vcsim;
use vsphere_client::Error;
use vsphere_client::client::{
    BrowseSpec, Client, ConnectOptions, DatastoreFileKind, NicModel, SessionCache, VmNic, fcd_id,
};
use vsphere_client::codec::{ManagedObjectReference, SecretString};

// The checks shared with vsphere-sim's suite (connect and release, bad password, finder,
// views and paging, WaitForUpdatesEx, tasks, First Class Disks, owned views, disk details,
// the shared task waiter, FCD progress): one test each, from test-support.
test_support::client_suite!(Vcsim);

/// Connect options for `sim` without keepalive.
fn options(sim: &Vcsim) -> ConnectOptions {
    ConnectOptions::new(&sim.url)
        .expect("vcsim's URL parses")
        .with_keepalive(None)
}

/// Starts vcsim with extra arguments, or skips the test (printing why).
macro_rules! vcsim {
    ($($arg:expr),*) => {
        match Vcsim::start(&[$($arg),*]) {
            Some(v) => v,
            None => return,
        }
    };
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
    let options = options(&sim).session_cache(&dir);
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
    let options = options(&sim).session_cache(&dir);
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
    let rest = RestClient::connect(options(&sim))
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
    let options = options(&sim);
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
