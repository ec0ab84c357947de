//! `kill -9` at every step of a move, then restart: the move converges, no volume is lost, and
//! the volume is never attached to two nodes.
//!
//! The test re-executes its own binary as the child process (selected by an environment
//! variable). The child runs a move over a loop-file backend and the redb journal and, at the
//! chosen step, writes a marker file and waits; the parent then kills it with SIGKILL, opens the
//! same root and journal in a fresh orchestrator, recovers, and checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::backend::{Backend, running_as_root};
use volume_core::journal::RedbStore;
use volume_core::orchestrator::{CRASH_POINTS, MovePolicy, MoveRecord, Orchestrator, StepHook};
use volume_core::{NodeId, PoolId, VolumeId, VolumeName, VolumeSpec};

const CHILD_ENV: &str = "VOLUME_CORE_CRASH_CHILD";
const TEST_NAME: &str = "kill_9_at_every_step_of_a_move_then_restart_converges";

fn pool() -> PoolId {
    PoolId::new("local").unwrap()
}

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn backend(root: &Path, mode: LoopMode) -> Arc<LoopFileBackend> {
    Arc::new(
        LoopFileBackend::new(root.join("data"), mode)
            .unwrap()
            .with_pool(pool(), None),
    )
}

/// Pauses the child forever at one point, after telling the parent it got there.
#[derive(Debug)]
struct PauseAt {
    point: String,
    marker: PathBuf,
}

impl StepHook for PauseAt {
    fn reached(&self, _record: &MoveRecord, point: &'static str) -> volume_core::Result<()> {
        if point == self.point {
            std::fs::write(&self.marker, point).unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        Ok(())
    }
}

fn child(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let [root, mode, point, id] = parts[..] else {
        panic!("bad child spec {spec}");
    };
    let root = PathBuf::from(root);
    let mode = if mode == "losetup" {
        LoopMode::Losetup
    } else {
        LoopMode::PlainFiles
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(RedbStore::open(root.join("journal.redb")).unwrap());
        let o = Orchestrator::new(backend(&root, mode), store).with_hook(Arc::new(PauseAt {
            point: point.to_owned(),
            marker: root.join("reached"),
        }));
        let r = o
            .move_volume(
                &VolumeId::new(id).unwrap(),
                &node("node-b"),
                MovePolicy::Preempt,
            )
            .await;
        panic!("the move should have paused at {point}, it returned {r:?}");
    });
}

fn run_one(mode: LoopMode, point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Set up: a volume on node-a, then close everything.
    let id = rt.block_on(async {
        let b = backend(root, mode);
        let store = Arc::new(RedbStore::open(root.join("journal.redb")).unwrap());
        let o = Orchestrator::new(b.clone(), store);
        let v = b
            .create(&VolumeSpec::new(
                VolumeName::new("data").unwrap(),
                pool(),
                1,
            ))
            .await
            .unwrap();
        o.move_volume(&v.id, &node("node-a"), MovePolicy::Polite)
            .await
            .unwrap();
        b.release_devices().await.unwrap();
        v.id
    });
    let mode_name = if mode == LoopMode::Losetup {
        "losetup"
    } else {
        "plain"
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{}|{mode_name}|{point}|{id}", root.display()),
        )
        .spawn()
        .unwrap();
    let marker = root.join("reached");
    let start = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{mode_name}/{point}: child exited early with {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{mode_name}/{point}: child never reached the point"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SIGKILL: no destructor, no flush, no unlock runs in the child.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "{mode_name}/{point}: child was not killed"
    );

    rt.block_on(async {
        let b = backend(root, mode);
        let store = Arc::new(RedbStore::open(root.join("journal.redb")).unwrap());
        let o = Orchestrator::new(b.clone(), store);
        // The crash left the move journaled; nothing is lost and nothing attached twice.
        let before = b.list().await.unwrap();
        assert_eq!(
            before.len(),
            1,
            "{mode_name}/{point}: volume lost or duplicated"
        );
        assert_eq!(o.pending().await.unwrap().len(), 1, "{mode_name}/{point}");
        assert_eq!(o.recover().await.unwrap(), 1, "{mode_name}/{point}");
        let after = b.list().await.unwrap();
        assert_eq!(
            after.len(),
            1,
            "{mode_name}/{point}: volume lost or duplicated"
        );
        assert_eq!(
            after[0].attached_to,
            Some(node("node-b")),
            "{mode_name}/{point}: not moved"
        );
        let lease = o.lease(&id).await.unwrap().unwrap();
        assert_eq!(lease.holder, node("node-b"), "{mode_name}/{point}");
        let dev = o.device(&id, &node("node-b")).await.unwrap();
        assert!(dev.path.exists(), "{mode_name}/{point}: no device");
        assert!(
            o.device(&id, &node("node-a")).await.is_err(),
            "{mode_name}/{point}: the old node can still use it"
        );
        if mode == LoopMode::Losetup {
            let out = Command::new("losetup")
                .args([
                    "-j",
                    &root
                        .join("data/images")
                        .join(format!("{id}.img"))
                        .to_string_lossy(),
                ])
                .output()
                .unwrap();
            let bound = String::from_utf8_lossy(&out.stdout).lines().count();
            assert_eq!(bound, 1, "{mode_name}/{point}: {bound} loop devices bound");
        }
        assert!(o.pending().await.unwrap().is_empty(), "{mode_name}/{point}");
        b.release_devices().await.unwrap();
    });
}

#[test]
fn kill_9_at_every_step_of_a_move_then_restart_converges() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let mut modes = vec![LoopMode::PlainFiles];
    if running_as_root() {
        modes.push(LoopMode::Losetup);
    }
    for mode in modes {
        for point in CRASH_POINTS {
            run_one(mode, point);
        }
    }
}
