//! pyVmomi (the real client, from PyPI) against the simulator: `tests/py/smoke.py` (connect,
//! container views, property reads, paging) and `tests/py/tasks.py` (WaitForTask on power
//! operations and CreateDisk_Task, AttachDisk_Task/DetachDisk_Task between two VMs) and
//! `tests/py/storage.py` (the `/pbm/sdk` and `/vslm/sdk` endpoints through pyVmomi's `pbm`
//! and `vslm` stubs).
//!
//! Needs `$SDK_TEST_PYTHON`, a Python with pyVmomi (`ci/test.sh` sets it up from
//! `ci/requirements.txt`); without it the test prints why and passes without running.

mod common;

use vsphere_sim::Simulator;

/// Runs a script against a fresh simulator; returns its stdout (the test fails on a non-zero exit).
async fn run(script: &'static str) -> Option<String> {
    let Ok(python) = std::env::var("SDK_TEST_PYTHON") else {
        eprintln!("skipped: SDK_TEST_PYTHON is not set (a Python with pyVmomi; see ci/test.sh)");
        return None;
    };
    let sim = Simulator::builder().start().await.unwrap();
    let out = common::run_python(python, script, &sim).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pyVmomi script {script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("ok: all"), "{stdout}");
    Some(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyvmomi_smoke() {
    let Some(stdout) = run(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/smoke.py")).await else {
        return;
    };
    assert!(
        stdout.contains("ok: RetrievePropertiesEx paging, 3 pages"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyvmomi_tasks_and_first_class_disks() {
    let Some(stdout) = run(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/tasks.py")).await else {
        return;
    };
    assert!(
        stdout.contains("ok: WaitForTask on CreateDisk_Task"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: AttachDisk_Task/DetachDisk_Task between two VMs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: VirtualDiskManager copy, move, inflate"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: Destroy_Task on a folder"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyvmomi_pbm_and_vslm_endpoints() {
    let Some(stdout) = run(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/storage.py")).await
    else {
        return;
    };
    assert!(
        stdout.contains("ok: PbmQueryMatchingHub returns the datastores"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: VslmCreateDisk_Task"), "{stdout}");
}
