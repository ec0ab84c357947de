//! The tour's chapter for `vsphere-client`: the embedded simulator, the finder and a view.

use std::collections::BTreeMap;

use vsphere_client::client::{Client, ConnectOptions, Properties};
use vsphere_client::types::VirtualMachinePowerState;

use crate::{ChapterResult, Outcome};

/// Tells this chapter's story: start the embedded vCenter simulator, connect, walk the
/// inventory with the finder, and read VM properties through a container view.
pub(crate) fn run() -> ChapterResult {
    println!("   vsphere-client: {}", vsphere_client::CAPABILITY);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(story())
}

async fn story() -> ChapterResult {
    let sim = vsphere_sim::Simulator::builder().start().await?;
    println!(
        "   An in-process vCenter simulator listens on {}.",
        sim.url()
    );
    let options = ConnectOptions::new(&sim.url_with_credentials())?.with_keepalive(None);
    let client = Client::connect(options).await?;
    let about = client
        .service_content()
        .about
        .as_ref()
        .map(|a| a.full_name.clone())
        .unwrap_or_default();
    println!(
        "   Connected: the server says it is {about:?}; we speak API release {}.",
        client.api_release().unwrap_or("(unknown)")
    );

    let finder = client.finder().await?;
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for o in finder.all() {
        *by_type.entry(o.type_name()).or_default() += 1;
    }
    let summary: Vec<String> = by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "   The finder read the inventory tree in one paged retrieval: {}.",
        summary.join(", ")
    );
    let dc = finder.datacenter(None)?;
    println!(
        "   There is one datacenter, so it is the default: {}.",
        dc.path
    );
    let vm_glob = format!("{}/vm/*", dc.path);
    let vms = finder.find(&vm_glob);
    println!("   The glob {vm_glob} matches {} VMs, e.g.:", vms.len());
    for vm in vms.iter().take(3) {
        println!("     {}  ({})", vm.path, vm.reference.value);
    }
    match finder.datastore(None) {
        Ok(ds) => println!("   The default datastore is {}.", ds.path),
        Err(e) => println!("   No default datastore: {e}."),
    }

    let view = client
        .container_view(
            &client.service_content().root_folder,
            &["VirtualMachine"],
            true,
        )
        .await?;
    let mut pages = view.retrieve(
        &[(
            "VirtualMachine",
            &[
                "name",
                "runtime.powerState",
                "config.hardware.numCPU",
                "config.hardware.memoryMB",
            ],
        )],
        Some(2),
    );
    let (mut on, mut total, mut pages_seen, mut cpus) = (0, 0, 0, 0);
    while let Some(page) = pages.next_page().await? {
        pages_seen += 1;
        for content in page {
            let p = Properties::from(content);
            total += 1;
            cpus += p.get::<i32>("config.hardware.numCPU").unwrap_or(0);
            if p.get::<VirtualMachinePowerState>("runtime.powerState")
                == Some(VirtualMachinePowerState::PoweredOn)
            {
                on += 1;
            }
        }
    }
    view.close().await?;
    println!(
        "   A container view of all VMs, read two per page: {total} VMs in {pages_seen} pages, \
         {on} powered on, {cpus} vCPUs in all."
    );
    client.logout().await?;
    println!("   Logged out; the simulator stops when the chapter ends.");
    Ok(Outcome::Done)
}
