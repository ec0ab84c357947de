//! The AppCatalyst-compatible server over the real QEMU backend, driven by a client that speaks
//! AppCatalyst's API the way its Vagrant provider did (`driver/version_1_0.rb`, `meta.rb`,
//! `base.rb`): the version probe, `POST /vms` with a `vagrant` tag, raw-text power bodies labelled
//! `application/json`, synced folders named after their path, 408-polling `/ipaddress`, halt as
//! shutdown, destroy. This is the second (and last) boot of the test guest in the test command.
#![cfg(feature = "server")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method as M;
use serde_json::{Value, json};
use vmenv_core::qemu::{QemuConfig, QemuHypervisor, Template, qemu_available};
use vmenv_core::{GuestExec, Hypervisor, VmName};

fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vmenv-guest")
}

/// Kills every QEMU started under a root if the test fails half-way, so that no VM outlives
/// the test, and removes the root.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(dirs) = std::fs::read_dir(self.0.join("vms")) {
            for dir in dirs.flatten() {
                let Ok(pid) = std::fs::read_to_string(dir.path().join("qemu.pid")) else {
                    continue;
                };
                let pid = pid.trim();
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("qemu-system") {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", pid])
                        .status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Vagrant {
    http: reqwest::Client,
    base: String,
}

impl Vagrant {
    /// Vagrant's `base.rb`: `Accept: application/json`; non-2xx replies are `{code,message}`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Accept", "application/json");
        if let Some(b) = body {
            // Vagrant labels raw power bodies application/json without quoting them.
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        if !(200..300).contains(&status) {
            assert_eq!(
                v["code"],
                json!(status),
                "error replies are {{code,message}}: {text}"
            );
            assert!(v["message"].is_string(), "{text}");
        }
        (status, v, headers)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vagrant_provider_flow_drives_a_qemu_vm() {
    assert!(
        qemu_available(),
        "qemu-system-x86_64 and qemu-img are needed"
    );
    let template = Template::test_guest(&guest_dir()).await.unwrap();
    let root = std::env::temp_dir().join(format!("vmenv-srv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let _cleanup = Cleanup(root.clone());
    let share = root.join("project");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("Vagrantfile"), "# hello\n").unwrap();
    let qemu = Arc::new(QemuHypervisor::new(
        QemuConfig::new(&root).with_template(template),
    ));
    let hv: Arc<dyn Hypervisor> = qemu.clone();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(vmenv_core::appcatalyst::server::serve(listener, hv, "tiny"));
    let vagrant = Vagrant {
        http: reqwest::Client::new(),
        base,
    };

    // meta.rb: the version probe.
    let (s, doc, _) = vagrant.call(M::GET, "/json/swagger.json", None).await;
    assert_eq!(s, 200);
    assert!(
        doc["info"]["version"]
            .as_str()
            .unwrap()
            .starts_with("1.0.0")
    );

    // Bad requests get the envelope the clients parse.
    let (s, e, _) = vagrant.call(M::POST, "/api/vms", Some("{not json")).await;
    assert_eq!(s, 400, "{e}");
    let (s, _, _) = vagrant.call(M::GET, "/api/vms/nope", None).await;
    assert_eq!(s, 404);
    let (s, _, _) = vagrant
        .call(
            M::POST,
            "/api/vms",
            Some(r#"{"id":"x","sourceReference":"/boxes/photon.vmx"}"#),
        )
        .await;
    assert_eq!(s, 501);
    let (s, _, _) = vagrant.call(M::PUT, "/api/vms", Some("{}")).await;
    assert_eq!(s, 405);
    let (s, _, _) = vagrant
        .call(M::POST, "/api/vms", Some(r#"{"id":"../etc"}"#))
        .await;
    assert_eq!(s, 400);

    // Import: POST /vms with the vagrant tag (the default template stands in for the box).
    let id = "vagrant-3f2a";
    let (s, vm, _) = vagrant
        .call(
            M::POST,
            "/api/vms",
            Some(&json!({ "id": id, "name": "default", "tag": "vagrant" }).to_string()),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(vm["id"], id);
    assert_eq!(vm["tag"], "vagrant");
    let (_, list, _) = vagrant.call(M::GET, "/api/vms", None).await;
    assert_eq!(list, json!([id]));
    let (s, _, _) = vagrant
        .call(M::POST, "/api/vms", Some(&json!({ "id": id }).to_string()))
        .await;
    assert_eq!(s, 409, "a second create with the same id conflicts");

    // Synced folders: enable, then one share per folder named after its path ('/' -> '_').
    let (s, on, _) = vagrant
        .call(M::PATCH, &format!("/api/vms/{id}/folders"), Some("true"))
        .await;
    assert_eq!((s, on["message"].as_str()), (200, Some("true")));
    let folder =
        json!({ "guestPath": "_vagrant", "hostPath": share.display().to_string(), "flags": 4 });
    let (s, f, _) = vagrant
        .call(
            M::POST,
            &format!("/api/vms/{id}/folders"),
            Some(&folder.to_string()),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(f, folder);
    let (_, names, _) = vagrant
        .call(M::GET, &format!("/api/vms/{id}/folders"), None)
        .await;
    assert_eq!(names, json!(["_vagrant"]), "folder ids are strings");
    let (_, one, _) = vagrant
        .call(M::GET, &format!("/api/vms/{id}/folders/_vagrant"), None)
        .await;
    assert_eq!(one, folder);

    // Boot: power state, then PATCH "on" (raw text), then poll /ipaddress through its 408s.
    let (_, p, _) = vagrant
        .call(M::GET, &format!("/api/vms/power/{id}"), None)
        .await;
    assert_eq!(p["message"], "powered off");
    let (s, _, _) = vagrant
        .call(M::PATCH, &format!("/api/vms/power/{id}"), Some("reboot"))
        .await;
    assert_eq!(s, 400);
    let (s, p, _) = vagrant
        .call(M::PATCH, &format!("/api/vms/power/{id}"), Some("on"))
        .await;
    assert_eq!(
        (s, p["message"].as_str()),
        (200, Some("The VM is powered on."))
    );
    let (_, p, _) = vagrant
        .call(M::GET, &format!("/api/vms/power/{id}"), None)
        .await;
    assert_eq!(p["message"], "powered on");
    let mut saw_408 = false;
    let mut ip = None;
    for _ in 0..120 {
        let (s, body, headers) = vagrant
            .call(M::GET, &format!("/api/vms/{id}/ipaddress"), None)
            .await;
        if s == 408 {
            saw_408 = true;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        assert_eq!(s, 200, "{body}");
        ip = Some((
            body["message"].as_str().unwrap().to_owned(),
            headers["x-vmenv-ssh"].to_str().unwrap().to_owned(),
        ));
        break;
    }
    let (ip, ssh) = ip.expect("the guest got an address within the 60 s the clients allow");
    assert!(saw_408, "the first polls answer 408 while the guest boots");
    assert_eq!(ip, "10.0.2.15");
    assert!(ssh.starts_with("127.0.0.1:"), "{ssh}");

    // The synced folder is mounted where the server said, both ways.
    let name = VmName::new(id).unwrap();
    // One command per exec, as the Vagrant provider runs its commands.
    let run = |cmd: &'static str| {
        let qemu = qemu.clone();
        let name = name.clone();
        async move {
            let out = qemu.exec(&name, cmd).await.unwrap();
            assert_eq!(out.status, 0, "`{cmd}`: {}", out.stderr);
            out.stdout
        }
    };
    assert_eq!(run("cat /mnt/hgfs/_vagrant/Vagrantfile").await, "# hello\n");
    assert_eq!(run("hostname").await, format!("{id}\n"));
    run("echo up > /mnt/hgfs/_vagrant/from-guest").await;
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "up\n"
    );

    // A share cannot be added to a running QEMU VM: said plainly.
    let (s, e, _) = vagrant
        .call(
            M::POST,
            &format!("/api/vms/{id}/folders"),
            Some(r#"{"guestPath":"x","hostPath":"/tmp","flags":4}"#),
        )
        .await;
    assert_eq!(s, 409, "{e}");

    // Pause / unpause, then halt (shutdown), then destroy.
    let (s, _, _) = vagrant
        .call(M::PATCH, &format!("/api/vms/power/{id}"), Some("pause"))
        .await;
    assert_eq!(s, 200);
    let (_, p, _) = vagrant
        .call(M::GET, &format!("/api/vms/power/{id}"), None)
        .await;
    assert_eq!(p["message"], "paused");
    let (s, _, _) = vagrant
        .call(
            M::PATCH,
            &format!("/api/vms/power/{id}"),
            Some("\"unpause\""),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = vagrant
        .call(M::DELETE, &format!("/api/vms/{id}"), None)
        .await;
    assert_eq!(s, 409, "a running VM is not deleted");
    let (s, p, _) = vagrant
        .call(M::PATCH, &format!("/api/vms/power/{id}"), Some("shutdown"))
        .await;
    assert_eq!(
        (s, p["message"].as_str()),
        (200, Some("The VM is powered off."))
    );
    let (_, p, _) = vagrant
        .call(M::GET, &format!("/api/vms/power/{id}"), None)
        .await;
    assert_eq!(p["message"], "powered off");
    let (s, _, _) = vagrant
        .call(M::GET, &format!("/api/vms/{id}/ipaddress"), None)
        .await;
    assert_eq!(s, 408);
    let (s, _, _) = vagrant
        .call(M::DELETE, &format!("/api/vms/{id}/folders/_vagrant"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _, _) = vagrant
        .call(M::DELETE, &format!("/api/vms/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let (_, list, _) = vagrant.call(M::GET, "/api/vms", None).await;
    assert_eq!(list, json!([]));

    server.abort();
    std::fs::remove_dir_all(&root).unwrap();
}
