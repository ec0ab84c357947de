//! Times vsphere-sim on the benchmark request and measures its memory per VM.
//!
//! `cargo run --release -p vsphere-sim --example sim-bench [-- VMS REPEAT [VCSIM]]` (defaults
//! 10000 and 3): starts an in-process simulator with VMS virtual machines (vcsim's VPX topology:
//! a cluster of three hosts and a standalone host, VMS/4 VMs per host), creates a ContainerView
//! over them and times `RetrievePropertiesEx` of `name`, `runtime.powerState`,
//! `config.hardware.device` and `summary` (one page; the response is read raw, as bytes: server
//! work plus HTTP, no client decode and no UTF-8 check), then reports resident memory per VM:
//! RSS with a VMS-VM simulator started minus RSS with only an empty one, over VMS, both read after
//! glibc's `malloc_trim` has returned free pages to the OS (`SIM_BENCH_NO_TRIM=1` skips it); and
//! the heap in use per VM (a counting global allocator: requested bytes, no allocator overhead).
//!
//! With VCSIM, the path of govmomi's vcsim peer (`peers/build.sh` builds it), it then runs the
//! same request with the same client code against vcsim started with `-vms VMS` in the same run,
//! measures vcsim's memory per VM the same way (its `-stats` RSS with VMS VMs minus with 0, each
//! read after a GC and `debug.FreeOSMemory`, Go's return of free pages to the OS), and prints the
//! ratios.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Posts a request; the response body as text (for the SDK's decoder).
    async fn post(&self, body: String) -> Result<String, reqwest::Error> {
        let raw = self.post_raw(body).await?;
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }

    /// Posts a request; the response body as it came (no UTF-8 check: the timed read).
    async fn post_raw(&self, body: String) -> Result<axum::body::Bytes, reqwest::Error> {
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
        resp.bytes().await
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

/// The system allocator, counting the bytes in use (the heap the inventory holds, independent
/// of what the allocator keeps back from the OS).
struct Counting;

static HEAP_IN_USE: AtomicUsize = AtomicUsize::new(0);

#[expect(
    unsafe_code,
    reason = "a GlobalAlloc is an unsafe trait; each method forwards to the system allocator"
)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// only adds and subtracts the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            HEAP_IN_USE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Gives freed heap pages back to the OS (glibc's `malloc_trim`), as vcsim's `-stats` does
/// with Go's `debug.FreeOSMemory` before it reports its RSS: both figures then count the
/// memory the process holds, not what its allocator keeps for later.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    #[expect(
        unsafe_code,
        reason = "glibc's malloc_trim, declared as glibc declares it"
    )]
    // SAFETY: `malloc_trim(size_t)` is a glibc function with this signature; it only returns
    // free pages to the OS and may be called at any time.
    unsafe extern "C" {
        safe fn malloc_trim(pad: usize) -> i32;
    }
    malloc_trim(0);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

fn rss_kib() -> u64 {
    // SIM_BENCH_NO_TRIM=1 reads RSS as it is (what the allocator keeps counts too).
    if std::env::var_os("SIM_BENCH_NO_TRIM").is_none() {
        release_free_memory();
    }
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

/// The 1-minute load average (`/proc/loadavg`), to report how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn shape(vms: u32) -> InventoryShape {
    // vcsim's VPX topology: a cluster of three hosts and a standalone host, VMS / 4 per host.
    InventoryShape {
        vms_per_host: vms / 4,
        ..InventoryShape::default()
    }
}

/// A vcsim peer process: its URL and resident memory after creating its model.
struct Vcsim {
    child: std::process::Child,
    url: String,
    rss_kib: u64,
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_vcsim(path: &str, vms: u32) -> Result<Vcsim, Box<dyn std::error::Error>> {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(path)
        .args(["-vms", &vms.to_string(), "-stats", "-exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = std::io::BufReader::new(child.stderr.take().ok_or("no stderr")?);
    let mut out = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    // -stats prints "...; RSS N KiB ..." on stderr once the model exists.
    let mut rss_kib = 0;
    let mut line = String::new();
    while err.read_line(&mut line)? > 0 {
        if let Some(rest) = line.split("; RSS ").nth(1) {
            rss_kib = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            break;
        }
        line.clear();
    }
    let mut url = String::new();
    out.read_line(&mut url)?;
    let url = url.trim().to_owned();
    if url.is_empty() || rss_kib == 0 {
        return Err(format!("vcsim printed no URL or RSS (stderr: {line})").into());
    }
    Ok(Vcsim {
        child,
        url,
        rss_kib,
    })
}

/// Logs in, creates the view and times the request `repeat` times: (best s, median s, bytes,
/// objects in the last answer).
async fn time_request(
    sdk: &str,
    user: &str,
    password: &str,
    repeat: usize,
) -> Result<(f64, f64, usize, usize), Box<dyn std::error::Error>> {
    let http = Http {
        client: reqwest::Client::new(),
        url: sdk.to_owned(),
        cookie: Mutex::new(None),
    };
    let content = ServiceInstance::new("ServiceInstance")
        .retrieve_service_content(&http)
        .await?;
    let sm = SessionManager::from_reference(content.session_manager.clone().ok_or("no sm")?);
    sm.login(&http, user, password, None).await?;
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
    let (mut bytes, mut objects) = (0, 0);
    for _ in 0..repeat {
        let t = Instant::now();
        let resp = http.post_raw(body.clone()).await?;
        times.push(t.elapsed().as_secs_f64());
        bytes = resp.len();
        objects = resp.windows(9).filter(|w| *w == b"<objects>").count();
    }
    times.sort_by(f64::total_cmp);
    Ok((times[0], times[times.len() / 2], bytes, objects))
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
    println!("load average before: {}", load_average());

    // Memory: RSS with no VMs, then with VMS VMs.
    let empty = Simulator::builder().shape(shape(0)).start().await?;
    let before = rss_kib();
    let heap_before = HEAP_IN_USE.load(Ordering::Relaxed);
    let sim = Simulator::builder().shape(shape(vms)).start().await?;
    let heap_after = HEAP_IN_USE.load(Ordering::Relaxed);
    let after = rss_kib();
    empty.stop().await;
    let per_vm = (after.saturating_sub(before)) as f64 / f64::from(vms);
    let heap_per_vm = heap_after.saturating_sub(heap_before) as f64 / 1024.0 / f64::from(vms);
    let trimmed = if std::env::var_os("SIM_BENCH_NO_TRIM").is_none() {
        "both after malloc_trim"
    } else {
        "untrimmed"
    };
    println!(
        "memory: {per_vm:.2} KiB/VM resident ({after} KiB with {vms} VMs, {before} KiB before; \
         {trimmed}); heap in use {heap_per_vm:.2} KiB/VM (requested bytes, no allocator \
         overhead)"
    );

    let (best, median, bytes, objects) =
        time_request(&sim.url(), sim.user(), sim.password(), repeat).await?;
    if objects != vms as usize {
        return Err(format!("expected {vms} objects, got {objects}").into());
    }
    let ours = f64::from(vms) / best;
    println!(
        "vsphere-sim RetrievePropertiesEx name, runtime.powerState, config.hardware.device, summary over {vms} VMs ({:.1} MB, one page): \
         {ours:.0} VMs/s, {:.1} MB/s (best of {repeat}: {best:.3} s; median {median:.3} s)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / best,
    );
    sim.stop().await;

    if let Some(path) = args.next() {
        let empty = start_vcsim(&path, 0)?;
        let rss0 = empty.rss_kib;
        drop(empty);
        let peer = start_vcsim(&path, vms)?;
        let vcsim_per_vm = (peer.rss_kib.saturating_sub(rss0)) as f64 / f64::from(vms);
        println!(
            "vcsim memory: {vcsim_per_vm:.2} KiB/VM resident ({} KiB with {vms} VMs, {rss0} KiB with 0)",
            peer.rss_kib
        );
        let url = url::Url::parse(&peer.url)?;
        let (user, password) = (
            url.username().to_owned(),
            url.password().unwrap_or("").to_owned(),
        );
        let mut sdk = url.clone();
        sdk.set_username("").map_err(|()| "url")?;
        sdk.set_password(None).map_err(|()| "url")?;
        let (vbest, vmedian, vbytes, vobjects) =
            time_request(sdk.as_str(), &user, &password, repeat).await?;
        let theirs = f64::from(vms) / vbest;
        println!(
            "vcsim RetrievePropertiesEx, same request and client ({:.1} MB, {vobjects} objects): \
             {theirs:.0} VMs/s, {:.1} MB/s (best of {repeat}: {vbest:.3} s; median {vmedian:.3} s)",
            vbytes as f64 / 1e6,
            vbytes as f64 / 1e6 / vbest,
        );
        println!(
            "side by side: throughput {:.1}x vcsim's (goal >= 5x); memory per VM {:.2} of vcsim's (goal <= 0.33)",
            ours / theirs,
            per_vm / vcsim_per_vm,
        );
    }
    println!("load average after: {}", load_average());
    Ok(())
}
