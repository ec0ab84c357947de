//! What the `volume-move` example and the tour's volume chapter share (feature `vsphere`): a
//! transport that counts vCenter round trips and tasks, and one timed, counted move.
//!
//! ```no_run
//! # async fn demo(orch: &volume_core::orchestrator::Orchestrator, id: &volume_core::VolumeId)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use vsphere_client::client::{Client, ConnectOptions};
//! use volume_core::demo::{CountingTransport, move_and_report};
//! use volume_core::orchestrator::MovePolicy;
//!
//! let options = ConnectOptions::new("https://user:pass@vc/sdk")?;
//! let counter = Arc::new(CountingTransport::new(&options)?);
//! let client = Client::connect_with(options, counter.clone()).await?;
//! let to = volume_core::NodeId::new("vm-b")?;
//! let report = move_and_report(orch, id, &to, MovePolicy::Polite, Some(&counter)).await?;
//! println!("{:.1} ms, {} round trips, {} tasks", report.ms, report.round_trips, report.tasks);
//! # drop(client); Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vsphere_client::client::{ConnectOptions, HttpResponse, HttpTransport, SoapRequest, Transport};
use vsphere_client::rpc::BoxFuture;

use crate::error::Result;
use crate::model::{NodeId, VolumeId};
use crate::orchestrator::{Lease, MovePolicy, Orchestrator};

/// The method a SOAP request envelope calls: the first element inside `Body`, without its
/// namespace prefix.
///
/// ```
/// use volume_core::demo::soap_method;
/// let body = r#"<soapenv:Envelope><soapenv:Body><vim:AttachDisk_Task xmlns:vim="urn:vim25">"#;
/// assert_eq!(soap_method(body), "AttachDisk_Task");
/// assert_eq!(soap_method("no body"), "");
/// ```
pub fn soap_method(body: &str) -> &str {
    let Some(i) = body.find("Body>") else {
        return "";
    };
    let rest = &body[i + 5..];
    let Some(start) = rest.find('<') else {
        return "";
    };
    let name = &rest[start + 1..];
    let end = name.find([' ', '>', '/']).unwrap_or(name.len());
    let name = &name[..end];
    name.rsplit(':').next().unwrap_or(name)
}

/// A transport that counts SOAP round trips (and GETs), the `*_Task` methods among them, and
/// records the methods called, over vsphere-client's [`HttpTransport`].
#[derive(Debug)]
pub struct CountingTransport {
    inner: HttpTransport,
    trips: AtomicU64,
    tasks: AtomicU64,
    methods: Mutex<Vec<String>>,
}

impl CountingTransport {
    /// A counting HTTP transport with `options`' TLS settings.
    pub fn new(options: &ConnectOptions) -> std::result::Result<Self, vsphere_client::Error> {
        Ok(Self {
            inner: HttpTransport::new(options.tls())?,
            trips: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
            methods: Mutex::default(),
        })
    }

    fn methods(&self) -> MutexGuard<'_, Vec<String>> {
        self.methods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Round trips and tasks since the last take, and resets them (and the methods).
    pub fn take(&self) -> (u64, u64) {
        self.methods().clear();
        (
            self.trips.swap(0, Ordering::SeqCst),
            self.tasks.swap(0, Ordering::SeqCst),
        )
    }

    /// Round trips, tasks and the methods called since the last take, and resets them.
    pub fn take_methods(&self) -> (u64, u64, Vec<String>) {
        let methods = std::mem::take(&mut *self.methods());
        let (trips, tasks) = (
            self.trips.swap(0, Ordering::SeqCst),
            self.tasks.swap(0, Ordering::SeqCst),
        );
        (trips, tasks, methods)
    }
}

impl Transport for CountingTransport {
    fn post_soap<'a>(
        &'a self,
        request: SoapRequest<'a>,
    ) -> BoxFuture<'a, std::result::Result<HttpResponse, vsphere_client::Error>> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        let method = soap_method(&request.body);
        if method.ends_with("_Task") {
            self.tasks.fetch_add(1, Ordering::SeqCst);
        }
        self.methods().push(method.to_owned());
        self.inner.post_soap(request)
    }

    fn get<'a>(
        &'a self,
        url: &'a url::Url,
        timeout: Duration,
    ) -> BoxFuture<'a, std::result::Result<HttpResponse, vsphere_client::Error>> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.inner.get(url, timeout)
    }
}

/// One move, timed and counted.
#[derive(Clone, Debug)]
pub struct MoveReport {
    /// Wall time of the move, in ms.
    pub ms: f64,
    /// vCenter round trips during the move (0 without a counter).
    pub round_trips: u64,
    /// vCenter tasks started during the move (0 without a counter).
    pub tasks: u64,
    /// The SOAP methods called, in order (empty without a counter).
    pub methods: Vec<String>,
    /// The lease the new holder got.
    pub lease: Lease,
}

/// Moves `id` to `to` with `policy` through `orch` and reports the time and, with `counter`,
/// the vCenter round trips, tasks and methods of the move alone (the counter is reset first).
pub async fn move_and_report(
    orch: &Orchestrator,
    id: &VolumeId,
    to: &NodeId,
    policy: MovePolicy,
    counter: Option<&CountingTransport>,
) -> Result<MoveReport> {
    if let Some(c) = counter {
        c.take();
    }
    let t = Instant::now();
    let lease = orch.move_volume(id, to, policy).await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let (round_trips, tasks, methods) = counter
        .map(CountingTransport::take_methods)
        .unwrap_or_default();
    Ok(MoveReport {
        ms,
        round_trips,
        tasks,
        methods,
        lease,
    })
}
