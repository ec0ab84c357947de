//! The SDK's guided tour: walks through its capabilities on embedded defaults.
//!
//! Run it with `cargo run --release -p examples --bin tour`. Each chapter tells one capability's
//! story against the embedded defaults (the in-process vCenter simulator, local volumes, local
//! VMs, a local pipeline); a chapter whose capability is not built yet says so and moves on.

use std::process::ExitCode;

/// One chapter of the tour: a capability and what this build can show of it.
struct Chapter {
    title: &'static str,
    crate_name: &'static str,
    capability: &'static str,
}

fn chapters() -> [Chapter; 5] {
    [
        Chapter {
            title: "vSphere inventory on the simulator",
            crate_name: "vsphere-client",
            capability: vsphere_client::CAPABILITY,
        },
        Chapter {
            title: "The embedded vCenter",
            crate_name: "vsphere-sim",
            capability: vsphere_sim::CAPABILITY,
        },
        Chapter {
            title: "A volume moves between VMs",
            crate_name: "volume-core",
            capability: volume_core::CAPABILITY,
        },
        Chapter {
            title: "A data center on a laptop",
            crate_name: "vmenv-core",
            capability: vmenv_core::CAPABILITY,
        },
        Chapter {
            title: "A pipeline with gates",
            crate_name: "pipeline-core",
            capability: pipeline_core::CAPABILITY,
        },
    ]
}

fn main() -> ExitCode {
    println!("The vSphere SDK crate family: a tour\n");
    for (n, c) in chapters().iter().enumerate() {
        println!("{}. {}", n + 1, c.title);
        println!("   crate {}: {}", c.crate_name, c.capability);
        println!("   (this chapter's demonstration arrives with its issue)\n");
    }
    println!("Tour complete.");
    ExitCode::SUCCESS
}
