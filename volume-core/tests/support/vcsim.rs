//! Starts govmomi's vCenter simulator (vcsim 0.24.2, built by `peers/build.sh`) for a test, and
//! a few helpers that drive it through `vsphere-client` (clone a VM, wait for a task).
//!
//! The binary is `$GOVMOMI_VCSIM` when set, else what `peers/build.sh` builds (cached). When Go
//! is not installed and `CI` is unset, [`Vcsim::start`] returns `None` after printing why (the
//! caller skips); with `CI` set, a missing Go toolchain is a failure.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vsphere_client::client::{Client, ConnectOptions, RetrieveSpec};
use vsphere_client::codec::{Any, ManagedObjectReference};
use vsphere_client::mo::{SearchIndex, VirtualMachine};
use vsphere_client::rpc::{Call, PendingTask};
use vsphere_client::types::{
    TaskInfo, TaskInfoState, VirtualMachineCloneSpec, VirtualMachineRelocateSpec,
};

/// A running vcsim; killed on drop.
pub struct Vcsim {
    child: Child,
    /// The SDK URL with credentials (`http://user:pass@127.0.0.1:PORT/sdk`).
    pub url: String,
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The vcsim binary, located (or built) once per test process, so that parallel tests never
/// run `peers/build.sh` at the same time.
fn binary() -> Option<PathBuf> {
    static BINARY: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BINARY.get_or_init(locate).clone()
}

fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GOVMOMI_VCSIM") {
        return Some(PathBuf::from(p));
    }
    let have_go = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_go {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but Go is missing: install golang-go and golang-github-vmware-govmomi-dev \
             (ci/apt-packages.txt) or set GOVMOMI_VCSIM"
        );
        eprintln!(
            "SKIPPED: Go is not installed and CI is unset, so govmomi's vcsim cannot be built \
             (install golang-go and golang-github-vmware-govmomi-dev, or set GOVMOMI_VCSIM)"
        );
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peers/build.sh");
    let out = Command::new(&script).output().expect("run peers/build.sh");
    assert!(
        out.status.success(),
        "peers/build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("peers/build.sh prints the vcsim path")
        .to_owned();
    Some(PathBuf::from(first))
}

impl Vcsim {
    /// Starts vcsim on a free port with `args` (sizing flags); `None` when the test must skip.
    pub fn start(args: &[&str]) -> Option<Self> {
        let bin = binary()?;
        let mut child = Command::new(&bin)
            .args(["-listen", "127.0.0.1:0", "-exit-on-stdin-eof"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the vcsim URL");
        let url = line.trim().to_owned();
        assert!(url.starts_with("http"), "vcsim printed {url:?}");
        Some(Self { child, url })
    }

    /// A logged-in client.
    pub async fn client(&self) -> Client {
        let options = ConnectOptions::new(&self.url).expect("valid vcsim URL");
        Client::connect(options).await.expect("connect to vcsim")
    }
}

/// Waits for a task started by `call` and returns its result (test-side helper; the backends
/// have their own).
pub async fn task<R>(client: &Client, call: Call<'_, PendingTask<R>>) -> R {
    let pending = call.await.expect("task call");
    loop {
        let spec = RetrieveSpec::objects("Task", &["info"], [pending.task().reference().clone()]);
        let objects = client
            .retrieve_pages(spec)
            .collect_all()
            .await
            .expect("task info");
        let info = objects
            .into_iter()
            .flat_map(|o| o.prop_set)
            .find_map(|p| match p.val {
                Any::Data(obj) => obj.into_any().downcast::<TaskInfo>().ok(),
                _ => None,
            })
            .expect("TaskInfo");
        match info.state {
            TaskInfoState::Success => {
                return pending
                    .result_from(info.result.unwrap_or(Any::Absent))
                    .expect("typed task result");
            }
            TaskInfoState::Error => panic!(
                "task failed: {:?}",
                info.error.map(|e| e.into_inner().localized_message)
            ),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// The object at an inventory path.
pub async fn find(client: &Client, path: &str) -> ManagedObjectReference {
    let index = client
        .service_content()
        .search_index
        .clone()
        .expect("SearchIndex");
    SearchIndex::from_reference(index)
        .find_by_inventory_path(client, path)
        .await
        .expect("FindByInventoryPath")
        .unwrap_or_else(|| panic!("nothing at {path}"))
}

/// Clones the VM at inventory path `source` into `/DC0/vm/<name>` (powered off) and returns
/// the new VM.
pub async fn clone_vm(client: &Client, source: &str, name: &str) -> ManagedObjectReference {
    let vm = VirtualMachine::from_reference(find(client, source).await);
    let folder = find(client, "/DC0/vm").await;
    let spec = VirtualMachineCloneSpec {
        location: Some(vsphere_client::codec::Obj::new(
            VirtualMachineRelocateSpec::default(),
        )),
        ..VirtualMachineCloneSpec::default()
    };
    task(client, vm.clone_vm_task(client, &folder, name, &spec)).await
}
