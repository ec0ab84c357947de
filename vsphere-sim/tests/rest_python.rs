//! A REST session plus tag creation through plain HTTP from Python (`tests/py/rest_tags.py`,
//! standard library `urllib` only) against the simulator.
//!
//! Runs with `$SDK_TEST_PYTHON` (what `ci/test.sh` sets up), else with `python3` from `PATH`;
//! without either the test prints why and passes without running.

mod common;

use std::process::Command;

use vsphere_sim::Simulator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_urllib_rest_session_and_tags() {
    let python = std::env::var("SDK_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    if Command::new(&python).arg("--version").output().is_err() {
        eprintln!("skipped: neither SDK_TEST_PYTHON nor python3 can be run");
        return;
    }
    let sim = Simulator::builder()
        .password("py-s3cret")
        .start()
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/rest_tags.py");
    let out = common::run_python(python, script, &sim).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Python REST script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("ok: tag attached to vm-"), "{stdout}");
    assert!(stdout.contains("ok: all"), "{stdout}");
    assert!(!stdout.contains("py-s3cret"), "{stdout}");
}
