//! Times vsphere-sim on the benchmark request and measures its memory per VM.
//!
//! `cargo run --release -p vsphere-sim --example sim-bench [-- VMS REPEAT]` (defaults 10000 and 3):
//! starts an in-process simulator with VMS virtual machines, creates a ContainerView over them
//! and times `RetrievePropertiesEx` of `name`, `runtime.powerState`, `config.hardware.device`
//! and `summary` (one page; the response is read raw: server work plus HTTP, no client decode),
//! then reports resident memory per VM (RSS with VMS VMs minus RSS with none, over VMS).

use std::sync::Mutex;
use std::time::Instant;

use vsphere_client::codec::{ManagedObjectReference, MethodInfo, Poly, encode_request};
use vsphere_client::mo::{ServiceInstance, SessionManager, ViewManager, methods};
use vsphere_client::rpc::{BoxFuture, Caller};
use vsphere_client::types::{
    ObjectSpec, PropertyFilterSpec, PropertySpec, RetrieveOptions, SelectionSpec, TraversalSpec,
};
use vsphere_sim::{InventoryShape, Simulator};

/// reqwest plus the session cookie.
struct Http {
    client: reqwest::Client,
    url: String,
    cookie: Mutex<Option<String>>,
}

impl Http {
    async fn post(&self, body: String) -> Result<String, reqwest::Error> {
        let mut req = self.client.post(&self.url).body(body);
        let cookie = self.cookie.lock().map(|c| c.clone()).unwrap_or_default();
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = req.send().await?;
        if let Some(c) = resp
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
        {
            let c = c.split(';').next().unwrap_or_default().to_owned();
            if let Ok(mut slot) = self.cookie.lock() {
                *slot = Some(c);
            }
        }
        resp.text().await
    }
}

impl Caller for Http {
    fn send<'a>(
        &'a self,
        _method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, vsphere_client::Error>> {
        Box::pin(async move {
            // The SDK's Error has no transport variant yet: a transport failure here is fatal.
            Ok(self
                .post(body)
                .await
                .expect("HTTP to the in-process simulator"))
        })
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn shape(vms: u32) -> InventoryShape {
    // One cluster of ten hosts: VMS / 10 VMs per host.
    InventoryShape {
        datacenters: 1,
        clusters: 1,
        hosts_per_cluster: 10,
        standalone_hosts: 0,
        vms_per_host: vms / 10,
        datastores: 1,
    }
}

#[allow(
    clippy::field_reassign_with_default,
    reason = "generated data objects are built from Default, field by field"
)]
fn spec(view: &ManagedObjectReference) -> PropertyFilterSpec {
    let mut ts = TraversalSpec::default();
    ts.name = Some("traverseView".into());
    ts.type_ = "ContainerView".into();
    ts.path = "view".into();
    let mut os = ObjectSpec::default();
    os.obj = view.clone();
    os.skip = Some(true);
    os.select_set = vec![Poly::<SelectionSpec>::new(ts)];
    let mut ps = PropertySpec::default();
    ps.type_ = "VirtualMachine".into();
    ps.path_set = [
        "name",
        "runtime.powerState",
        "config.hardware.device",
        "summary",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut spec = PropertyFilterSpec::default();
    spec.object_set = vec![os];
    spec.prop_set = vec![ps];
    spec
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let vms: u32 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let repeat: usize = args.next().map_or(Ok(3), |a| a.parse())?;

    // Memory: RSS with no VMs, then with VMS VMs.
    let empty = Simulator::builder().shape(shape(0)).start().await?;
    let before = rss_kib();
    let sim = Simulator::builder().shape(shape(vms)).start().await?;
    let after = rss_kib();
    empty.stop().await;
    let per_vm = (after.saturating_sub(before)) as f64 / f64::from(vms);
    println!(
        "memory: {per_vm:.2} KiB/VM resident ({after} KiB with {vms} VMs, {before} KiB before)"
    );

    let http = Http {
        client: reqwest::Client::new(),
        url: sim.url(),
        cookie: Mutex::new(None),
    };
    let content = ServiceInstance::new("ServiceInstance")
        .retrieve_service_content(&http)
        .await?;
    let sm = SessionManager::from_reference(content.session_manager.clone().ok_or("no sm")?);
    sm.login(&http, sim.user(), sim.password(), None).await?;
    let view = ViewManager::from_reference(content.view_manager.clone().ok_or("no vm")?)
        .create_container_view(
            &http,
            &content.root_folder,
            &["VirtualMachine".into()],
            true,
        )
        .await?;
    let body = encode_request(
        &methods::RETRIEVE_PROPERTIES_EX,
        &content.property_collector,
        None,
        &[&[spec(&view)].as_slice(), &&RetrieveOptions::default()],
    );
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..repeat {
        let t = Instant::now();
        let resp = http.post(body.clone()).await?;
        times.push(t.elapsed().as_secs_f64());
        bytes = resp.len();
        let objects = resp.matches("<objects>").count();
        if objects != vms as usize {
            return Err(format!("expected {vms} objects, got {objects}").into());
        }
    }
    times.sort_by(f64::total_cmp);
    let best = times[0];
    let median = times[times.len() / 2];
    println!(
        "RetrievePropertiesEx name, runtime.powerState, config.hardware.device, summary over {vms} VMs ({:.1} MB, one page): \
         {:.0} VMs/s, {:.1} MB/s (best of {repeat}: {best:.3} s; median {median:.3} s)",
        bytes as f64 / 1e6,
        f64::from(vms) / best,
        bytes as f64 / 1e6 / best,
    );
    sim.stop().await;
    Ok(())
}
