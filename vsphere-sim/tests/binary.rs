//! The `vsphere-sim` binary: first stdout line is the SDK URL with credentials; SIGTERM stops it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn prints_its_url_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vsphere-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--user",
            "alice",
            "--password",
            "p@ss",
        ])
        .args(["--vms-per-host", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start vsphere-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim();
    assert!(url.starts_with("http://alice:p%40ss@127.0.0.1:"), "{url}");
    assert!(url.ends_with("/sdk"), "{url}");
    let plain = url.replacen("alice:p%40ss@", "", 1);
    let body = reqwest::get(format!("{plain}/vimServiceVersions.xml"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("urn:vim25"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn unknown_flags_exit_2_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_vsphere-sim"))
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown flag") && err.contains("usage:"),
        "{err}"
    );
}
