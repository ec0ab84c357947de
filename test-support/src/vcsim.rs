//! govmomi's vCenter simulator (vcsim 0.24.2, built by `peers/build.sh`) for a test.
//!
//! The binary is `$GOVMOMI_VCSIM` when set, else what `peers/build.sh` builds (cached). When Go
//! is not installed and `CI` is unset, [`Vcsim::start`] returns `None` after printing why (the
//! caller skips); with `CI` set, a missing Go toolchain is a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use vsphere_client::client::{Client, ConnectOptions};

/// A running vcsim; killed on drop.
#[derive(Debug)]
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
/// run `peers/build.sh` at the same time (the script also takes a lock across processes).
pub fn binary() -> Option<PathBuf> {
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
