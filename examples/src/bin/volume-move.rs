//! Moves a volume from VM A to VM B and shows each step with its time and its backend round
//! trips.
//!
//! ```text
//! volume-move [--backend vsphere-sim|loopfile|qcow2|memory] [--task-step-ms MS] [--root DIR] [--repeat N] [--json]
//! volume-move --url URL [--insecure] [--datastore DS] [--vm-a VM] [--vm-b VM] [--repeat N] [--json]
//! ```
//!
//! The default backend is First Class Disks on the embedded vsphere-sim (started in-process, as
//! if given with `--url`, below; `--task-step-ms` sets the simulator's time per task stage,
//! default 10 ms, three stages per task). `loopfile` is local loop files in a temporary directory (loop
//! devices as root, node directories otherwise). Steps: create a volume, attach it to `vm-a` (a journaled move), write
//! a label onto the volume's device, move it to `vm-b` (fence, detach, attach, lease), read the
//! label back on `vm-b`. `--json` prints one JSON document for machines.
//!
//! With `--url` (a vSphere SDK URL with credentials, `https://user:pass@vc/sdk`) the volume is
//! a First Class Disk on datastore `--datastore` (default `LocalDS_0`) moved between the VMs
//! `--vm-a` and `--vm-b` (a moref, an inventory path or a unique name; defaults `DC0_H0_VM0` and
//! `DC0_H0_VM1`, govmomi vcsim's names). Each step also shows the vCenter round trips (SOAP
//! requests) and the tasks it started. The label goes into the disk's own metadata
//! (`VCenterUpdateVStorageObjectMetadataEx_Task`), so it travels with the disk and is read back
//! after the move (`RetrieveVStorageObject`). `--repeat N` then moves the
//! disk back and forth N more times and prints the median, p90 and worst move.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use volume_core::backend::Backend;
use volume_core::backend::counting::Counting;
use volume_core::backend::loopfile::{LoopFileBackend, LoopMode};
use volume_core::backend::memory::MemoryBackend;
use volume_core::backend::qcow2::{ImageHandoff, Qcow2Backend};
use volume_core::backend::vsphere::{AttachMode, FcdBackend};
use volume_core::demo::{CountingTransport, move_and_report};
use volume_core::journal::vcenter::VcenterStore;
use volume_core::journal::{RedbStore, Store};
use volume_core::orchestrator::{MovePolicy, Orchestrator};
use volume_core::{DeviceFormat, NodeId, PoolId, VolumeName, VolumeSpec};
use vsphere_client::client::{Client, ConnectOptions};

type BoxError = Box<dyn std::error::Error>;

/// One step of the story.
struct Step {
    name: &'static str,
    ms: f64,
    calls: u64,
    /// vCenter round trips and tasks (with `--url`).
    remote: Option<(u64, u64)>,
    /// The SOAP methods called, in order (with `--url`).
    methods: Vec<String>,
    detail: String,
}

/// The label written at the start of the volume.
const LABEL: &[u8] = b"volume-core label: written on vm-a\n";

struct Args {
    backend: String,
    root: Option<PathBuf>,
    json: bool,
    url: Option<String>,
    insecure: bool,
    datastore: String,
    vm_a: String,
    vm_b: String,
    repeat: u32,
    /// The embedded simulator's time per task stage, in milliseconds (its default: 10).
    task_step_ms: Option<u64>,
    /// The disk mode of First Class Disk attachments.
    attach_mode: AttachMode,
    /// Keep the journal in the disks' vCenter metadata (`--journal vcenter`).
    vcenter_journal: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut a = Args {
        backend: "vsphere-sim".to_owned(),
        root: None,
        json: false,
        url: None,
        insecure: false,
        datastore: "LocalDS_0".to_owned(),
        vm_a: "DC0_H0_VM0".to_owned(),
        vm_b: "DC0_H0_VM1".to_owned(),
        repeat: 0,
        task_step_ms: None,
        attach_mode: AttachMode::Persistent,
        vcenter_journal: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--backend" => a.backend = it.next().ok_or("--backend needs a value")?,
            "--root" => a.root = Some(PathBuf::from(it.next().ok_or("--root needs a value")?)),
            "--json" => a.json = true,
            "--url" => a.url = Some(it.next().ok_or("--url needs a value")?),
            "--insecure" => a.insecure = true,
            "--datastore" => a.datastore = it.next().ok_or("--datastore needs a value")?,
            "--vm-a" => a.vm_a = it.next().ok_or("--vm-a needs a value")?,
            "--vm-b" => a.vm_b = it.next().ok_or("--vm-b needs a value")?,
            "--repeat" => {
                a.repeat = it
                    .next()
                    .ok_or("--repeat needs a value")?
                    .parse()
                    .map_err(|_| "--repeat needs a number")?;
            }
            "--task-step-ms" => {
                a.task_step_ms = Some(
                    it.next()
                        .ok_or("--task-step-ms needs a value")?
                        .parse()
                        .map_err(|_| "--task-step-ms needs a number of milliseconds")?,
                );
            }
            "--attach-mode" => {
                a.attach_mode = match it.next().as_deref() {
                    Some("persistent") => AttachMode::Persistent,
                    Some("independent-persistent") => AttachMode::IndependentPersistent,
                    _ => {
                        return Err(
                            "--attach-mode needs persistent or independent-persistent".into()
                        );
                    }
                };
            }
            "--journal" => {
                a.vcenter_journal = match it.next().as_deref() {
                    Some("vcenter") => true,
                    Some("redb") => false,
                    _ => return Err("--journal needs redb or vcenter".into()),
                };
            }
            "-h" | "--help" => {
                return Err(
                    "usage: volume-move [--backend vsphere-sim|loopfile|qcow2|memory] \
                            [--task-step-ms MS] [--root DIR] [--repeat N] [--json]\n       volume-move --url URL [--insecure] [--datastore DS] \
                            [--vm-a VM] [--vm-b VM] [--repeat N] [--json]\n       \
                            (First Class Disks: [--attach-mode persistent|independent-persistent] \
                            [--journal redb|vcenter])"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn make_backend(
    kind: &str,
    root: &std::path::Path,
    pool: &PoolId,
) -> Result<Arc<dyn Backend>, BoxError> {
    Ok(match kind {
        "loopfile" => Arc::new(
            LoopFileBackend::new(root.join("data"), LoopMode::detect())?
                .with_pool(pool.clone(), None),
        ),
        "qcow2" => Arc::new(
            Qcow2Backend::new(root.join("data"), Box::new(ImageHandoff::default()))?
                .with_pool(pool.clone(), None),
        ),
        "memory" => Arc::new(
            MemoryBackend::builder()
                .pool_id(pool.clone(), 1 << 40)
                .build(),
        ),
        other => return Err(format!("unknown backend {other}").into()),
    })
}

/// The median, 90th percentile and worst of the repeated moves (with `--repeat`).
struct Repeats {
    moves: usize,
    p50_ms: f64,
    p90_ms: f64,
    max_ms: f64,
    /// Round trips and tasks per move (the most seen), with `--url`.
    remote_max: Option<(u64, u64)>,
    backend_calls_max: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

type Setup = (
    Arc<dyn Backend>,
    Option<Arc<CountingTransport>>,
    PoolId,
    NodeId,
    NodeId,
    Option<Vcenter>,
);

/// The client and datastore of a vSphere run (the label goes into the disk's metadata).
struct Vcenter {
    client: Arc<Client>,
    datastore: vsphere_client::codec::ManagedObjectReference,
    /// The backend, typed (for its attachment audit).
    backend: Arc<FcdBackend>,
}

/// The metadata key of the label on a First Class Disk.
const LABEL_KEY: &str = "volume-core.label.written-on";

async fn setup(args: &Args, root: &std::path::Path) -> Result<Setup, BoxError> {
    if let Some(url) = &args.url {
        let options = ConnectOptions::new(url)?.insecure(args.insecure);
        let transport = Arc::new(CountingTransport::new(&options)?);
        let client = Arc::new(Client::connect_with(options, transport.clone()).await?);
        let pool = PoolId::new(args.datastore.clone())?;
        let b = Arc::new(
            FcdBackend::connect(client.clone(), [pool.clone()])
                .await?
                .with_attach_mode(args.attach_mode),
        );
        let datastore = client
            .finder()
            .await?
            .one("datastore", &["Datastore"], Some(pool.as_str()), None)?
            .reference
            .clone();
        transport.take();
        return Ok((
            b.clone(),
            Some(transport),
            pool,
            NodeId::new(args.vm_a.clone())?,
            NodeId::new(args.vm_b.clone())?,
            Some(Vcenter {
                client,
                datastore,
                backend: b,
            }),
        ));
    }
    let pool = PoolId::new("local")?;
    let inner = make_backend(&args.backend, root, &pool)?;
    Ok((
        inner,
        None,
        pool,
        NodeId::new("vm-a")?,
        NodeId::new("vm-b")?,
        None,
    ))
}

async fn story(args: &Args) -> Result<(String, Vec<Step>, Option<Repeats>), BoxError> {
    let tmp;
    let root = if let Some(r) = &args.root {
        r.clone()
    } else {
        tmp = std::env::temp_dir().join(format!("volume-move-{}", std::process::id()));
        tmp.clone()
    };
    std::fs::create_dir_all(&root)?;
    let (inner, remote, pool, vm_a, vm_b, vcenter) = setup(args, &root).await?;
    let counting = Arc::new(Counting::new(inner.clone()));
    let local = Arc::new(RedbStore::open(root.join("journal.redb"))?);
    let store: Arc<dyn Store> = match (&vcenter, args.vcenter_journal) {
        (Some(vc), true) => {
            Arc::new(VcenterStore::connect(vc.client.clone(), [pool.clone()], local).await?)
        }
        (None, true) => return Err("--journal vcenter needs First Class Disks".into()),
        _ => local,
    };
    let orch = Orchestrator::new(counting.clone(), store);
    if let Some(r) = &remote {
        r.take();
    }
    let mut steps = Vec::new();
    let mut step = |name, t: Instant, detail: String| {
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let taken = remote.as_ref().map(|r| r.take_methods());
        steps.push(Step {
            name,
            ms,
            calls: counting.take(),
            remote: taken.as_ref().map(|(trips, tasks, _)| (*trips, *tasks)),
            methods: taken.map(|(_, _, m)| m).unwrap_or_default(),
            detail,
        });
    };

    let t = Instant::now();
    let spec = VolumeSpec::new(VolumeName::new("move-demo")?, pool, 64 << 20);
    let v = counting.create(&spec).await?;
    step("create", t, format!("{} ({} bytes)", v.id, v.size_bytes));

    let t = Instant::now();
    let lease_a = orch.move_volume(&v.id, &vm_a, MovePolicy::Polite).await?;
    step(
        "attach to vm-a",
        t,
        format!("{vm_a}, epoch {}", lease_a.epoch),
    );

    let t = Instant::now();
    let dev = orch.device(&v.id, &vm_a).await?;
    let real = dev.format == DeviceFormat::Raw && dev.path.exists();
    if real {
        let mut f = std::fs::OpenOptions::new().write(true).open(&dev.path)?;
        f.write_all(LABEL)?;
        f.sync_all()?;
    } else if let Some(vc) = &vcenter {
        vc.client
            .disks()?
            .update_metadata(
                v.id.as_str(),
                &vc.datastore,
                &[(LABEL_KEY, vm_a.as_str())],
                &[],
            )
            .await?;
    }
    step(
        "write label on vm-a",
        t,
        if real {
            format!("{} bytes to {}", LABEL.len(), dev.path.display())
        } else if vcenter.is_some() {
            format!(
                "{LABEL_KEY}={vm_a} in the disk's metadata (the guest sees {})",
                dev.path.display()
            )
        } else {
            format!(
                "{} is not a raw local device ({:?}); label skipped",
                dev.path.display(),
                dev.format
            )
        },
    );
    orch.release(&v.id, &vm_a).await?;
    counting.take();
    if let Some(r) = &remote {
        r.take();
    }

    let t = Instant::now();
    let lease_b = orch.move_volume(&v.id, &vm_b, MovePolicy::Polite).await?;
    step(
        "move to vm-b",
        t,
        format!(
            "fence+detach, attach, lease; {vm_b}, epoch {}",
            lease_b.epoch
        ),
    );
    if let Some(vc) = &vcenter {
        let t = Instant::now();
        let mode = vc
            .backend
            .attachment(&v.id)
            .await?
            .map(|(_, mode)| mode)
            .unwrap_or_default();
        step(
            "read disk mode",
            t,
            format!("{mode} in {vm_b}'s config.hardware.device"),
        );
    }

    let t = Instant::now();
    let dev = orch.device(&v.id, &vm_b).await?;
    let detail = if real {
        let mut f = std::fs::File::open(&dev.path)?;
        f.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0; LABEL.len()];
        f.read_exact(&mut buf)?;
        if buf != LABEL {
            return Err("the label did not survive the move".into());
        }
        format!("label intact at {}", dev.path.display())
    } else if let Some(vc) = &vcenter {
        let disk = vc
            .client
            .disks()?
            .retrieve(v.id.as_str(), &vc.datastore)
            .await?;
        let label = disk
            .config
            .as_ref()
            .and_then(|c| {
                c.base_config_info
                    .metadata
                    .iter()
                    .find(|kv| kv.key == LABEL_KEY)
            })
            .map(|kv| kv.value.clone());
        if label.as_deref() != Some(vm_a.as_str()) {
            return Err(format!("the label did not travel with the disk: {label:?}").into());
        }
        format!(
            "{LABEL_KEY}={} on the disk; the guest sees {}",
            vm_a,
            dev.path.display()
        )
    } else {
        format!("device {}", dev.path.display())
    };
    step("read label on vm-b", t, detail);

    // Repeated moves back and forth (preempting: the story's leases are still live).
    let mut repeats = None;
    if args.repeat > 0 {
        let mut ms = Vec::new();
        let (mut calls_max, mut remote_max) = (0, None::<(u64, u64)>);
        let mut here = vm_b.clone();
        counting.take();
        if let Some(r) = &remote {
            r.take();
        }
        for _ in 0..args.repeat {
            let to = if here == vm_a {
                vm_b.clone()
            } else {
                vm_a.clone()
            };
            let report =
                move_and_report(&orch, &v.id, &to, MovePolicy::Preempt, remote.as_deref()).await?;
            ms.push(report.ms);
            calls_max = calls_max.max(counting.take());
            if remote.is_some() {
                let (mt, mk) = remote_max.unwrap_or((0, 0));
                remote_max = Some((mt.max(report.round_trips), mk.max(report.tasks)));
            }
            here = to;
        }
        ms.sort_by(f64::total_cmp);
        repeats = Some(Repeats {
            moves: ms.len(),
            p50_ms: percentile(&ms, 0.5),
            p90_ms: percentile(&ms, 0.9),
            max_ms: ms[ms.len() - 1],
            remote_max,
            backend_calls_max: calls_max,
        });
    }

    // Clean up: detach and destroy, and remove the temporary root.
    orch.destroy(&v.id, MovePolicy::Preempt).await?;
    if args.root.is_none() {
        drop(orch);
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok((inner.info().kind.to_owned(), steps, repeats))
}

fn main() -> ExitCode {
    let mut args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("volume-move: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volume-move: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The default: the embedded simulator, driven exactly like a vCenter given with `--url`.
    let _sim = if args.url.is_none() && args.backend == "vsphere-sim" {
        let mut builder = vsphere_sim::Simulator::builder();
        if let Some(ms) = args.task_step_ms {
            builder = builder.task_step(std::time::Duration::from_millis(ms));
        }
        match rt.block_on(builder.start()) {
            Ok(sim) => {
                args.url = Some(sim.url_with_credentials());
                Some(sim)
            }
            Err(e) => {
                eprintln!("volume-move: cannot start the embedded vsphere-sim: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    match rt.block_on(story(&args)) {
        Ok((kind, steps, repeats)) => {
            if args.json {
                let doc = json!({
                    "backend": kind,
                    "steps": steps.iter().map(|s| json!({
                        "step": s.name, "ms": s.ms, "backend_calls": s.calls,
                        "vcenter_round_trips": s.remote.map(|r| r.0),
                        "vcenter_tasks": s.remote.map(|r| r.1),
                        "vcenter_methods": s.methods,
                        "detail": s.detail,
                    })).collect::<Vec<_>>(),
                    "repeated_moves": repeats.as_ref().map(|r| json!({
                        "moves": r.moves, "p50_ms": r.p50_ms, "p90_ms": r.p90_ms,
                        "max_ms": r.max_ms, "backend_calls_max": r.backend_calls_max,
                        "vcenter_round_trips_max": r.remote_max.map(|x| x.0),
                        "vcenter_tasks_max": r.remote_max.map(|x| x.1),
                    })),
                });
                println!("{doc}");
            } else {
                println!("volume-move on the {kind} backend");
                for s in &steps {
                    let remote = s.remote.map_or(String::new(), |(trips, tasks)| {
                        format!("{trips:>2} vCenter round trips, {tasks} tasks  ")
                    });
                    println!(
                        "  {:<22} {:>8.2} ms  {:>2} backend calls  {remote}{}",
                        s.name, s.ms, s.calls, s.detail
                    );
                    if !s.methods.is_empty() {
                        println!("  {:<22} {}", "", s.methods.join(" "));
                    }
                }
                if let Some(r) = &repeats {
                    let remote = r.remote_max.map_or(String::new(), |(trips, tasks)| {
                        format!(", at most {trips} vCenter round trips and {tasks} tasks each")
                    });
                    println!(
                        "  {} more moves: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms; at most {} \
                         backend calls{remote}",
                        r.moves, r.p50_ms, r.p90_ms, r.max_ms, r.backend_calls_max
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("volume-move: {e}");
            ExitCode::FAILURE
        }
    }
}
