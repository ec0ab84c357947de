//! A Docker volume plugin (protocol v1.2, JSON over HTTP on a unix socket) backed by
//! volume-core: `Mount` moves the volume to this node through a journaled, fenced move, then
//! mounts it; mounts are reference-counted by mount ID; scope is `global`.
//!
//! ```text
//! docker-volume-plugin [--socket PATH] [--root DIR] [--node NAME] [--pool NAME]
//!
//!   --socket  the socket Docker finds the plugin by (default /run/docker/plugins/volume-core.sock)
//!   --root    where volumes, the journal and mount points live (default /var/lib/volume-core)
//!   --node    this node's id (default: the host name)
//!   --pool    the pool new volumes go to (default local)
//! ```
//!
//! Volumes are local loop files under `--root` (loop devices and ext4 mounts, so it runs as
//! root); several hosts share them when `--root` is on shared storage. The vSphere First Class
//! Disk backend arrives with the vSphere client's runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use tokio::net::UnixListener;
use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::docker::{DockerPlugin, Ext4Mounter, MEDIA_TYPE};
use volume_core::journal::RedbStore;
use volume_core::orchestrator::Orchestrator;
use volume_core::{NodeId, PoolId};

/// The parsed command line.
struct Args {
    socket: PathBuf,
    root: PathBuf,
    node: String,
    pool: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        socket: PathBuf::from("/run/docker/plugins/volume-core.sock"),
        root: PathBuf::from("/var/lib/volume-core"),
        node: std::fs::read_to_string("/etc/hostname")
            .map_or_else(|_| "localhost".to_owned(), |s| s.trim().to_owned()),
        pool: "local".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--socket" => a.socket = PathBuf::from(value()?),
            "--root" => a.root = PathBuf::from(value()?),
            "--node" => a.node = value()?,
            "--pool" => a.pool = value()?,
            "-h" | "--help" => {
                return Err("usage: docker-volume-plugin [--socket PATH] [--root DIR] \
                            [--node NAME] [--pool NAME]"
                    .to_owned());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// Builds the orchestrator over a loop-file backend and a redb journal under `root`,
/// recovering any move a crash interrupted.
async fn build_orchestrator(
    root: &Path,
    pool: &PoolId,
) -> Result<Arc<Orchestrator>, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(root)?;
    let backend = Arc::new(
        LoopFileBackend::new(root.join("data"), LoopMode::detect())?.with_pool(pool.clone(), None),
    );
    let store = Arc::new(RedbStore::open(root.join("journal.redb"))?);
    let orch = Arc::new(Orchestrator::new(backend, store));
    orch.recover().await?;
    Ok(orch)
}

/// The plugin of one node, mounting under `mounts`.
fn plugin_for(
    orch: Arc<Orchestrator>,
    node: NodeId,
    pool: PoolId,
    mounts: PathBuf,
) -> Arc<DockerPlugin> {
    Arc::new(DockerPlugin::new(
        orch,
        node,
        pool,
        Arc::new(Ext4Mounter::new(mounts)),
    ))
}

/// The HTTP side: every POST path goes to the plugin's handler.
fn router(plugin: Arc<DockerPlugin>) -> Router {
    Router::new().fallback(move |uri: Uri, body: Bytes| {
        let plugin = plugin.clone();
        async move {
            let r = plugin.handle(uri.path(), &body).await;
            (
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, MEDIA_TYPE)],
                r.body.to_string(),
            )
                .into_response()
        }
    })
}

/// Serves the plugin on a unix socket until the task is dropped.
async fn serve(plugin: Arc<DockerPlugin>, socket: &Path) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A stale socket from a previous run would make bind fail.
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    axum::serve(listener, router(plugin)).await
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let (node, pool) = match (
            NodeId::new(args.node.as_str()),
            PoolId::new(args.pool.as_str()),
        ) {
            (Ok(n), Ok(p)) => (n, p),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let orch = match build_orchestrator(&args.root, &pool).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("cannot start the plugin: {e}");
                return ExitCode::FAILURE;
            }
        };
        let plugin = plugin_for(orch, node, pool, args.root.join("mounts"));
        match plugin.restore().await {
            Ok(0) => {}
            Ok(n) => println!("docker-volume-plugin: restored the mounts of {n} volume(s)"),
            Err(e) => {
                eprintln!("cannot restore the mount records: {e}");
                return ExitCode::FAILURE;
            }
        }
        println!(
            "docker-volume-plugin: node {} serving {}",
            args.node,
            args.socket.display()
        );
        let renewer = tokio::spawn({
            let plugin = plugin.clone();
            async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    for (name, e) in plugin.renew_leases().await {
                        eprintln!("volume {name}: lease lost ({e}); this node must stop using it");
                    }
                }
            }
        });
        let _renewer = AbortOnDrop(renewer);
        tokio::select! {
            r = serve(plugin, &args.socket) => {
                if let Err(e) = r {
                    eprintln!("server failed: {e}");
                    return ExitCode::FAILURE;
                }
            }
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = std::fs::remove_file(&args.socket);
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    //! Drives the plugin over its socket exactly as dockerd does: HTTP/1.1 POSTs with the
    //! plugin media type, JSON bodies, one request per connection.

    use super::*;
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    use volume_core::backend::running_as_root;

    /// One request as Docker's plugin client sends it; returns the status and the JSON body.
    async fn post(socket: &Path, endpoint: &str, body: &str) -> (u16, Value) {
        let mut s = UnixStream::connect(socket).await.unwrap();
        let req = format!(
            "POST {endpoint} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
             Accept: {MEDIA_TYPE}\r\nContent-Type: {MEDIA_TYPE}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {MEDIA_TYPE}")),
            "{head}"
        );
        (status, serde_json::from_str(body).unwrap())
    }

    fn err_of(v: &Value) -> &str {
        v["Err"].as_str().unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn docker_drives_the_plugin_over_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Two nodes share one backend root and one journal (the shared control store); each
        // node has its own plugin socket, as two Docker hosts would.
        let pool = PoolId::new("local").unwrap();
        let orch = build_orchestrator(root, &pool).await.unwrap();
        let a = plugin_for(
            orch.clone(),
            NodeId::new("node-a").unwrap(),
            pool.clone(),
            root.join("mounts-a"),
        );
        let sock_a = root.join("a.sock");
        let server_a = tokio::spawn({
            let (a, s) = (a.clone(), sock_a.clone());
            async move { serve(a, &s).await }
        });
        for _ in 0..200 {
            if sock_a.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }

        let (st, v) = post(&sock_a, "/Plugin.Activate", "{}").await;
        assert_eq!((st, v), (200, json!({"Implements": ["VolumeDriver"]})));
        let (_, v) = post(&sock_a, "/VolumeDriver.Capabilities", "").await;
        assert_eq!(v["Capabilities"]["Scope"], "global");

        let create = r#"{"Name":"pgdata","Opts":{"size":"32M"}}"#;
        let (_, v) = post(&sock_a, "/VolumeDriver.Create", create).await;
        assert_eq!(err_of(&v), "");
        let (_, v) = post(&sock_a, "/VolumeDriver.Create", create).await;
        assert_eq!(err_of(&v), "", "create is idempotent by name");

        // Malformed requests get an Err and change nothing.
        for (ep, body) in [
            ("/VolumeDriver.Create", "{"),
            (
                "/VolumeDriver.Create",
                r#"{"Name":"x","Opts":{"bogus":"1"}}"#,
            ),
            (
                "/VolumeDriver.Create",
                r#"{"Name":"x","Opts":{"size":"lots"}}"#,
            ),
            ("/VolumeDriver.Create", r#"{"Name":""}"#),
            ("/VolumeDriver.Mount", r#"{"Name":"pgdata"}"#),
            ("/VolumeDriver.Remove", r#"{"Nom":"pgdata"}"#),
            ("/VolumeDriver.Get", r#"{"Name":"nope"}"#),
        ] {
            let (_, v) = post(&sock_a, ep, body).await;
            assert!(!err_of(&v).is_empty(), "{ep} {body} gave {v}");
        }
        let (st, _) = post(&sock_a, "/VolumeDriver.Frobnicate", "{}").await;
        assert_eq!(st, 404);
        let (_, v) = post(&sock_a, "/VolumeDriver.List", "{}").await;
        assert_eq!(v["Volumes"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["Volumes"][0]["Name"], "pgdata");

        let (_, v) = post(&sock_a, "/VolumeDriver.Get", r#"{"Name":"pgdata"}"#).await;
        assert_eq!(err_of(&v), "");
        assert_eq!(v["Volume"]["Status"]["size"], 32 << 20);
        assert!(v["Volume"]["Status"]["attached_to"].is_null());

        if !running_as_root() {
            eprintln!(
                "skipped the mount half: mounting needs root (the test command runs as root)"
            );
            server_a.abort();
            return;
        }

        // Node B: its own plugin over the same store, on its own socket.
        let b = plugin_for(
            orch.clone(),
            NodeId::new("node-b").unwrap(),
            pool,
            root.join("mounts-b"),
        );
        let sock_b = root.join("b.sock");
        let server_b = tokio::spawn({
            let s = sock_b.clone();
            async move { serve(b, &s).await }
        });
        for _ in 0..200 {
            if sock_b.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }

        // Two containers on node A mount it: one mount, two references.
        let (_, v) = post(
            &sock_a,
            "/VolumeDriver.Mount",
            r#"{"Name":"pgdata","ID":"m1"}"#,
        )
        .await;
        assert_eq!(err_of(&v), "", "{v}");
        let mp = PathBuf::from(v["Mountpoint"].as_str().unwrap());
        std::fs::write(mp.join("hello.txt"), "written on node-a").unwrap();
        let (_, v) = post(
            &sock_a,
            "/VolumeDriver.Mount",
            r#"{"Name":"pgdata","ID":"m2"}"#,
        )
        .await;
        assert_eq!(PathBuf::from(v["Mountpoint"].as_str().unwrap()), mp);
        assert!(a.renew_leases().await.is_empty(), "lease renewal failed");
        let (_, v) = post(&sock_a, "/VolumeDriver.Path", r#"{"Name":"pgdata"}"#).await;
        assert_eq!(PathBuf::from(v["Mountpoint"].as_str().unwrap()), mp);

        // Node B cannot take it while node A uses it; node A cannot remove it while mounted.
        let (_, v) = post(
            &sock_b,
            "/VolumeDriver.Mount",
            r#"{"Name":"pgdata","ID":"m3"}"#,
        )
        .await;
        assert!(err_of(&v).contains("leased to node node-a"), "{v}");
        let (_, v) = post(&sock_a, "/VolumeDriver.Remove", r#"{"Name":"pgdata"}"#).await;
        assert!(err_of(&v).contains("mounted"), "{v}");

        // The plugin on node A restarts: its mount references come back from the journal.
        server_a.abort();
        let _ = server_a.await;
        let a = plugin_for(
            orch.clone(),
            NodeId::new("node-a").unwrap(),
            PoolId::new("local").unwrap(),
            root.join("mounts-a"),
        );
        assert_eq!(a.restore().await.unwrap(), 1);
        let server_a = tokio::spawn({
            let (a, s) = (a.clone(), sock_a.clone());
            async move { serve(a, &s).await }
        });
        for _ in 0..200 {
            if UnixStream::connect(&sock_a).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (_, v) = post(&sock_a, "/VolumeDriver.Path", r#"{"Name":"pgdata"}"#).await;
        assert_eq!(PathBuf::from(v["Mountpoint"].as_str().unwrap()), mp);

        // The first unmount keeps it mounted; the last one unmounts and releases the lease.
        let (_, v) = post(
            &sock_a,
            "/VolumeDriver.Unmount",
            r#"{"Name":"pgdata","ID":"m1"}"#,
        )
        .await;
        assert_eq!(err_of(&v), "");
        assert!(mp.join("hello.txt").exists(), "unmounted while referenced");
        let (_, v) = post(
            &sock_a,
            "/VolumeDriver.Unmount",
            r#"{"Name":"pgdata","ID":"m2"}"#,
        )
        .await;
        assert_eq!(err_of(&v), "");
        assert!(
            !mp.join("hello.txt").exists(),
            "still mounted after the last unmount"
        );

        // Now node B mounts it: the volume moved, and the data came along.
        let (_, v) = post(
            &sock_b,
            "/VolumeDriver.Mount",
            r#"{"Name":"pgdata","ID":"m3"}"#,
        )
        .await;
        assert_eq!(err_of(&v), "", "{v}");
        let mp_b = PathBuf::from(v["Mountpoint"].as_str().unwrap());
        assert_eq!(
            std::fs::read_to_string(mp_b.join("hello.txt")).unwrap(),
            "written on node-a"
        );
        let (_, v) = post(&sock_b, "/VolumeDriver.Get", r#"{"Name":"pgdata"}"#).await;
        assert_eq!(v["Volume"]["Status"]["attached_to"], "node-b");

        let (_, v) = post(
            &sock_b,
            "/VolumeDriver.Unmount",
            r#"{"Name":"pgdata","ID":"m3"}"#,
        )
        .await;
        assert_eq!(err_of(&v), "");
        let (_, v) = post(&sock_b, "/VolumeDriver.Remove", r#"{"Name":"pgdata"}"#).await;
        assert_eq!(err_of(&v), "", "{v}");
        let (_, v) = post(&sock_a, "/VolumeDriver.List", "{}").await;
        assert_eq!(v["Volumes"], json!([]));
        server_a.abort();
        server_b.abort();
        orch.backend().list().await.unwrap();
    }
}
