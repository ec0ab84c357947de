//! Dev-only helpers shared by the workspace's tests (`publish = false`; library crates use it
//! only as a dev-dependency, which `xtask`'s layering check enforces).
//!
//! - [`vcsim`]: govmomi's vCenter simulator (vcsim 0.24.2) in a child process, built once by
//!   `peers/build.sh` or taken from `$GOVMOMI_VCSIM`;
//! - [`sim`]: the SDK's embedded `vsphere-sim`, in-process;
//! - [`clone_vms`]: node VMs cloned from a template through `vsphere-client`'s finder and
//!   handles, on either simulator;
//! - [`fcd`] (feature `volume`): the conformance-kit factory of volume-core's First Class Disk
//!   backend, the same on both simulators;
//! - [`suite`]: the client's interop checks, generic over the server ([`suite::Server`]), run
//!   against both simulators by [`client_suite!`];
//! - [`runtime`]: the two-worker runtime the vSphere tests share;
//! - `vmenv` (feature `vmenv`): the QEMU test guest's directory, scratch roots and a guard
//!   that kills a failed test's QEMU processes.

use vsphere_client::client::Client;
use vsphere_client::codec::ManagedObjectReference;
use vsphere_client::types::{VirtualMachineCloneSpec, VirtualMachineRelocateSpec};

#[cfg(feature = "volume")]
pub mod fcd;
pub mod sim;
pub mod suite;
pub mod vcsim;
#[cfg(feature = "vmenv")]
pub mod vmenv;

/// The SDK's simulator crate, for tests and benches of crates that may not depend on it
/// directly (`vsphere-client`'s, by the layering rule).
pub use vsphere_sim;

/// The multi-threaded runtime (two workers, like the machine) the vSphere tests run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The object at an inventory path (through the client's finder).
pub async fn find(client: &Client, path: &str) -> ManagedObjectReference {
    let finder = client.finder().await.expect("the inventory");
    finder
        .find(path)
        .first()
        .unwrap_or_else(|| panic!("nothing at {path}"))
        .reference
        .clone()
}

/// Clones the VM at inventory path `template` into the folder `folder` once per name
/// (powered off), and returns the new VMs in the order of `names`.
pub async fn clone_vms(
    client: &Client,
    template: &str,
    folder: &str,
    names: &[&str],
) -> Vec<ManagedObjectReference> {
    let finder = client.finder().await.expect("the inventory");
    let template = finder
        .virtual_machine(template)
        .unwrap_or_else(|e| panic!("the template VM {template}: {e}"))
        .reference
        .clone();
    let folder = finder
        .find(folder)
        .first()
        .unwrap_or_else(|| panic!("the VM folder {folder}"))
        .reference
        .clone();
    let mut out = Vec::new();
    for name in names {
        let spec = VirtualMachineCloneSpec {
            location: Some(vsphere_client::codec::Obj::new(
                VirtualMachineRelocateSpec::default(),
            )),
            ..VirtualMachineCloneSpec::default()
        };
        out.push(
            client
                .vm(template.clone())
                .clone_to(&folder, name, &spec)
                .await
                .unwrap_or_else(|e| panic!("clone {name}: {e}")),
        );
    }
    out
}
