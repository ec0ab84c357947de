//! Helpers for tests that boot vmenv-core's QEMU test guest (feature `vmenv`): where the cached
//! guest lives, a short scratch root, and a guard that kills the test's QEMU processes.

use std::path::{Path, PathBuf};

/// The cached test guest (`target/vmenv-guest`, built by `vmenv-core/guest/build.sh`).
pub fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vmenv-guest")
}

/// A fresh, short root under the temporary directory, named by `tag` and the process id
/// (QMP socket paths must fit in 107 bytes); whatever was there is removed first.
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmenv-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a scratch directory");
    d
}

/// Kills every QEMU whose pid file is under `vms` (one directory per VM, `qemu.pid`) when
/// dropped, so that no VM outlives a test that fails half-way, and removes `root`.
#[derive(Debug)]
pub struct Cleanup {
    root: PathBuf,
    vms: PathBuf,
}

impl Cleanup {
    /// A guard over `root`, whose hypervisor keeps its VMs under `vms`.
    pub fn new(root: impl Into<PathBuf>, vms: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            vms: vms.into(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(dirs) = std::fs::read_dir(&self.vms) {
            for dir in dirs.flatten() {
                let Ok(pid) = std::fs::read_to_string(dir.path().join("qemu.pid")) else {
                    continue;
                };
                let pid = pid.trim();
                // Only a QEMU: a stale pid file may name a process that is something else now.
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("qemu-system") {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", pid])
                        .status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_roots_are_fresh_and_cleanup_removes_them() {
        let d = scratch("ts-selftest");
        std::fs::write(d.join("x"), b"1").unwrap();
        assert_eq!(scratch("ts-selftest"), d);
        assert!(!d.join("x").exists(), "a scratch root starts empty");
        std::fs::create_dir_all(d.join("vms/a")).unwrap();
        std::fs::write(d.join("vms/a/qemu.pid"), b"999999999").unwrap();
        drop(Cleanup::new(&d, d.join("vms")));
        assert!(!d.exists());
        assert!(guest_dir().ends_with("target/vmenv-guest"));
    }
}
