//! qcow2 volumes hot-plugged into a running QEMU VM through vmenv-core's `DiskHotplug`, with
//! one TCG boot of vmenv-core's test guest (`target/vmenv-guest`, built by
//! `vmenv-core/guest/build.sh` and cached).
//!
//! The story: guest A writes on the volume; the volume moves to node B (a host-side consumer
//! that gets the image file: it reads A's bytes and writes its own); B is declared dead; the
//! orchestrator fences B and force-detaches it while moving the volume back to A; the guest
//! reads both writes back intact, and B's old epoch can no longer attach.
//!
//! Skips with a printed reason when QEMU is missing and `CI` is unset (in CI it fails: the test
//! command installs qemu-system-x86 and qemu-utils).

#![cfg(feature = "qemu-hotplug")]

use std::sync::Arc;
use std::time::Duration;

use test_support::vmenv::{Cleanup, guest_dir, scratch};
use vmenv_core::qemu::{QemuConfig, QemuHypervisor, Template, qemu_available};
use vmenv_core::{Hypervisor, Source, VmName, VmSpec};
use volume_core::backend::Backend;
use volume_core::backend::qcow2::Qcow2Backend;
use volume_core::backend::qemu_hotplug::{QemuHotPlug, guest_device_path, guest_serial};
use volume_core::journal::MemoryStore;
use volume_core::orchestrator::{DeadNodes, MovePolicy, Orchestrator};
use volume_core::{Error, NodeId, PoolId, VolumeName, VolumeSpec};

async fn sh(hv: &QemuHypervisor, vm: &VmName, cmd: &str) -> String {
    let out = hv
        .require_guest_exec()
        .unwrap()
        .exec(vm, cmd)
        .await
        .unwrap();
    assert_eq!(out.status, 0, "`{cmd}` failed: {}", out.stderr);
    out.stdout
}

async fn block_devices(hv: &QemuHypervisor, vm: &VmName) -> Vec<String> {
    sh(hv, vm, "ls /sys/block")
        .await
        .split_whitespace()
        .filter(|d| d.starts_with("vd"))
        .map(str::to_owned)
        .collect()
}

/// Waits until the guest's virtio disks differ from `before`; returns the new ones.
async fn wait_for_new(hv: &QemuHypervisor, vm: &VmName, before: &[String]) -> Vec<String> {
    for _ in 0..150 {
        let now = block_devices(hv, vm).await;
        if now != before {
            return now.into_iter().filter(|d| !before.contains(d)).collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the guest's disks never changed from {before:?}");
}

/// Waits until the guest's virtio disks are exactly `want` again.
async fn wait_for_exactly(hv: &QemuHypervisor, vm: &VmName, want: &[String]) {
    let mut now = Vec::new();
    for _ in 0..150 {
        now = block_devices(hv, vm).await;
        if now == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the guest's disks stayed {now:?}, not {want:?}");
}

fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const MARKER: &str = "written-by-guest-a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_leaves_a_running_guest_for_a_dead_node_and_comes_back_intact() {
    if !qemu_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but qemu-system-x86_64 or qemu-img is missing (ci/apt-packages.txt)"
        );
        eprintln!("SKIPPED: qemu-system-x86_64 and qemu-img are not installed");
        return;
    }
    let template = Template::test_guest(&guest_dir()).await.unwrap();
    let root = scratch("vc-hp");
    let _cleanup = Cleanup::new(&root, root.join("hv/vms"));
    let hv = Arc::new(QemuHypervisor::new(
        QemuConfig::new(root.join("hv")).with_template(template),
    ));
    let vm = VmName::new("va").unwrap();
    hv.create(&VmSpec::new(vm.clone(), Source::Template("tiny".into())))
        .await
        .unwrap();
    hv.start(&vm).await.unwrap();
    hv.ip(&vm, Duration::from_secs(120)).await.unwrap();

    let (a, b, ghost) = (
        NodeId::new("vm-a").unwrap(),
        NodeId::new("host-b").unwrap(),
        NodeId::new("vm-ghost").unwrap(),
    );
    // A second VM that is created but never booted.
    let (stopped, stopped_vm) = (NodeId::new("vm-c").unwrap(), VmName::new("vc").unwrap());
    hv.create(&VmSpec::new(
        stopped_vm.clone(),
        Source::Template("tiny".into()),
    ))
    .await
    .unwrap();
    let plug = QemuHotPlug::new(hv.clone())
        .vm(a.clone(), vm.clone())
        .vm(stopped.clone(), stopped_vm)
        .vm(ghost.clone(), VmName::new("ghost").unwrap());
    let pool = PoolId::new("local").unwrap();
    let backend: Arc<dyn Backend> = Arc::new(
        Qcow2Backend::new(root.join("volumes"), Box::new(plug))
            .unwrap()
            .with_pool(pool.clone(), None),
    );
    let dead = Arc::new(DeadNodes::default());
    let orch = Orchestrator::new(backend.clone(), Arc::new(MemoryStore::default()))
        .with_liveness(dead.clone());
    let v = backend
        .create(&VolumeSpec::new(
            VolumeName::new("data").unwrap(),
            pool,
            16 << 20,
        ))
        .await
        .unwrap();
    let image = root.join("volumes/images").join(format!("{}.qcow2", v.id));

    // A VM the hypervisor does not have, and one that is not running: refused before anything
    // is journaled.
    let refused = orch.move_volume(&v.id, &ghost, MovePolicy::Preempt).await;
    assert!(
        matches!(refused, Err(Error::UnknownNode { .. })),
        "{refused:?}"
    );
    let refused = orch.move_volume(&v.id, &stopped, MovePolicy::Preempt).await;
    assert!(
        matches!(refused, Err(Error::NodeUnavailable { .. })),
        "{refused:?}"
    );
    assert!(orch.pending().await.unwrap().is_empty());
    assert_eq!(backend.get(&v.id).await.unwrap().unwrap().attached_to, None);

    // Onto the running guest A: a new virtio disk of the volume's size; A writes on it.
    let before = block_devices(&hv, &vm).await;
    let la = orch
        .move_volume(&v.id, &a, MovePolicy::Polite)
        .await
        .unwrap();
    let new = wait_for_new(&hv, &vm, &before).await;
    assert_eq!(new.len(), 1, "{new:?}");
    let dev = &new[0];
    assert_eq!(
        sh(&hv, &vm, &format!("cat /sys/block/{dev}/size"))
            .await
            .trim(),
        "32768",
        "16 MiB in 512-byte sectors"
    );
    // The guest finds the disk by the volume's id: its virtio serial, which the backend's
    // device path names.
    assert_eq!(
        sh(&hv, &vm, &format!("cat /sys/block/{dev}/serial"))
            .await
            .trim(),
        guest_serial(&v.id)
    );
    assert_eq!(
        orch.device(&v.id, &a).await.unwrap().path,
        guest_device_path(&v.id)
    );
    sh(
        &hv,
        &vm,
        &format!("echo -n {MARKER} | dd of=/dev/{dev} bs=512 conv=sync 2>/dev/null && sync"),
    )
    .await;

    // A lets go (a polite move needs that); the volume moves to B, a host-side node that gets
    // the image: the guest loses the disk, B reads A's bytes and writes its own.
    assert!(matches!(
        orch.move_volume(&v.id, &b, MovePolicy::Polite).await,
        Err(Error::LeaseHeld { .. })
    ));
    orch.release(&v.id, &a).await.unwrap();
    let lb = orch
        .move_volume(&v.id, &b, MovePolicy::Polite)
        .await
        .unwrap();
    assert!(lb.epoch > la.epoch);
    wait_for_exactly(&hv, &vm, &before).await;
    let on_b = orch.device(&v.id, &b).await.unwrap();
    assert_eq!(on_b.path, image);
    let raw = root.join("b-read.raw");
    run(
        "qemu-img",
        &[
            "dd",
            "-f",
            "qcow2",
            "-O",
            "raw",
            "bs=512",
            "count=1",
            &format!("if={}", image.display()),
            &format!("of={}", raw.display()),
        ],
    );
    let head = std::fs::read(&raw).unwrap();
    assert!(
        head.starts_with(MARKER.as_bytes()),
        "B read {:?}",
        &head[..32]
    );
    run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 0x42 512 512",
            &image.to_string_lossy(),
        ],
    );

    // B dies without letting go. Its lease is live, but a polite move may take the volume from
    // a dead node: the orchestrator fences B (new epoch), force-detaches it, and hot-plugs the
    // volume into A again.
    dead.declare_dead(b.clone());
    let before = block_devices(&hv, &vm).await;
    let back = orch
        .move_volume(&v.id, &a, MovePolicy::Polite)
        .await
        .unwrap();
    assert!(back.epoch > lb.epoch);
    let new = wait_for_new(&hv, &vm, &before).await;
    assert_eq!(new.len(), 1, "{new:?}");
    let dev = &new[0];
    let first = sh(
        &hv,
        &vm,
        &format!("dd if=/dev/{dev} bs=1 count={} 2>/dev/null", MARKER.len()),
    )
    .await;
    assert_eq!(first, MARKER, "guest A's bytes came back intact");
    let second = sh(
        &hv,
        &vm,
        &format!("dd if=/dev/{dev} bs=512 skip=1 count=1 2>/dev/null | tr -d B | wc -c"),
    )
    .await;
    assert_eq!(second.trim(), "0", "B's 512 bytes of 'B' are there");
    assert_eq!(
        sh(&hv, &vm, &format!("cat /sys/block/{dev}/serial"))
            .await
            .trim(),
        guest_serial(&v.id),
        "plugged again under the same serial"
    );

    // B's old epoch is fenced: it cannot take the volume back, nor use it.
    assert!(matches!(
        backend.attach(&v.id, &b, lb.epoch).await,
        Err(Error::StaleEpoch { .. })
    ));
    assert!(orch.device(&v.id, &b).await.is_err());

    // Detach: the disk leaves the guest; the VM is stopped.
    orch.detach(&v.id, MovePolicy::Preempt).await.unwrap();
    wait_for_exactly(&hv, &vm, &before).await;
    hv.kill(&vm).await.unwrap();
    backend.destroy(&v.id).await.unwrap();
    assert!(!image.exists());
}
