//! `appcatalyst-server`: an AppCatalyst-compatible REST API over local QEMU VMs, so that
//! AppCatalyst's own clients (its Vagrant provider, its Docker Machine driver) drive them.
//!
//! ```text
//! appcatalyst-server [ADDR]     default 127.0.0.1:8080, AppCatalyst's default
//! ```
//!
//! New VMs without a parent are made from the `tiny` template (the SDK's test guest). VMs live
//! under `$VMENV_ROOT` (default `/tmp/vmenv-<user>`). See `vmenv_core::appcatalyst::server`
//! for where the API differs from AppCatalyst's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use vmenv_core::qemu::{QemuConfig, QemuHypervisor, Template};

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let root = std::env::var_os("VMENV_ROOT").map_or_else(
        || {
            let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
            std::env::temp_dir().join(format!("vmenv-{user}"))
        },
        PathBuf::from,
    );
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vmenv-guest");
    let template = Template::test_guest(&guest).await?;
    let hv = Arc::new(QemuHypervisor::new(
        QemuConfig::new(&root).with_template(template),
    ));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "AppCatalyst API on http://{}/api (VMs in {}); Ctrl-C stops",
        listener.local_addr()?,
        root.display()
    );
    tokio::select! {
        r = vmenv_core::appcatalyst::server::serve(listener, hv, "tiny") => r?,
        _ = tokio::signal::ctrl_c() => println!("stopping (VMs keep running)"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appcatalyst-server: {e}");
            ExitCode::FAILURE
        }
    }
}
