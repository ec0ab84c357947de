//! The durable journal: every transition of a run, written with versioned (compare-and-swap)
//! appends behind the [`JournalStore`] trait.
//!
//! A run's journal is a sequence of [`Entry`]s numbered from 1. A writer appends with the
//! version it last saw; if the journal moved on, the append fails with [`Error::Conflict`] and
//! nothing is written, so a late writer can never regress a run (Spinnaker #7921). Deadlines are
//! stored as absolute UTC times so that they hold across restarts (Concourse #9399).
//!
//! [`FileStore`] is the embedded default: one JSON-lines file per run, each append written in
//! one `write` and made durable with `fdatasync` before it returns, with group commit (appends
//! that arrive together share one round of parallel syncs); a torn last line left by a crash is
//! dropped on the next read. [`MemoryStore`] keeps journals in memory (tests,
//! benchmarks). A service can implement the trait over PostgreSQL (`INSERT ... WHERE version =
//! expected` in a transaction).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;
use crate::model::ApprovalPolicy;

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_millis())
    }

    /// This time plus `d`.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The time from `self` until `later` (zero when `later` is not later).
    pub fn until(self, later: Self) -> Duration {
        Duration::from_millis(u64::try_from(later.0 - self.0).unwrap_or(0))
    }

    /// As a chrono time.
    pub fn to_chrono(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

/// A task's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Not started.
    Pending,
    /// Started, not finished.
    Running,
    /// Waiting for an approval.
    Waiting,
    /// Finished well.
    Succeeded,
    /// Finished badly.
    Failed,
    /// Not run: its pre-condition was false, or its stage stopped before it.
    Skipped,
    /// Ran out of time.
    TimedOut,
    /// Cancelled.
    Cancelled,
}

impl TaskStatus {
    /// Whether the task is finished.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Waiting)
    }

    /// The upper-case word used in conditions (`${S.t.status}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Waiting => "WAITING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Skipped => "SKIPPED",
            Self::TimedOut => "TIMED_OUT",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// A run's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum RunStatus {
    /// Running (or interrupted: a restart reconciles it).
    Running,
    /// Parked on approvals; no worker is held.
    Waiting,
    /// Paused by a user.
    Paused,
    /// Finished well.
    Succeeded,
    /// Finished badly; can be resumed from the failed task.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// Whether the run is finished.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed {
        /// Why.
        message: String,
    },
    /// It ran past its deadline.
    TimedOut,
    /// It was cancelled.
    Cancelled,
    /// The engine stopped while it ran (found on restart).
    Interrupted,
}

/// One journaled transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
#[non_exhaustive]
pub enum Record {
    /// The run was created.
    #[serde(rename_all = "camelCase")]
    RunCreated {
        /// The pipeline's YAML.
        pipeline: String,
        /// Inputs (defaults applied).
        inputs: BTreeMap<String, String>,
        /// Who started the run.
        initiator: String,
        /// The run's working directory.
        work_dir: String,
    },
    /// A gate was first evaluated.
    GateOpened {
        /// The gate's id.
        gate: String,
    },
    /// A gate passed.
    GatePassed {
        /// The gate's id.
        gate: String,
    },
    /// A gate failed.
    GateFailed {
        /// The gate's id.
        gate: String,
        /// Why.
        reason: String,
    },
    /// An approval was requested.
    #[serde(rename_all = "camelCase")]
    ApprovalRequested {
        /// The request's id (`Stage.exit/name` or `Stage.task`).
        request: String,
        /// Who may approve, how many.
        policy: ApprovalPolicy,
        /// When it expires.
        expires_at: Option<Timestamp>,
    },
    /// Someone decided on an approval (the audit record).
    ApprovalDecided {
        /// The request's id.
        request: String,
        /// Who.
        actor: String,
        /// Approved or rejected.
        approved: bool,
        /// Their comment.
        comment: String,
    },
    /// A task started (its total deadline is fixed here).
    TaskStarted {
        /// The stage.
        stage: String,
        /// The task.
        task: String,
        /// The absolute deadline of all attempts.
        deadline: Option<Timestamp>,
    },
    /// An attempt started.
    AttemptStarted {
        /// The stage.
        stage: String,
        /// The task.
        task: String,
        /// The attempt number, from 1, unique for the task across resumes.
        attempt: u32,
        /// The attempt's idempotency key.
        key: String,
        /// The attempt's absolute deadline.
        deadline: Option<Timestamp>,
    },
    /// An attempt ended.
    AttemptFinished {
        /// The stage.
        stage: String,
        /// The task.
        task: String,
        /// The attempt number.
        attempt: u32,
        /// How it ended.
        #[serde(flatten)]
        outcome: AttemptOutcome,
    },
    /// The next attempt may not start before this time.
    #[serde(rename_all = "camelCase")]
    RetryScheduled {
        /// The stage.
        stage: String,
        /// The task.
        task: String,
        /// The earliest start of the next attempt.
        not_before: Timestamp,
    },
    /// A task finished.
    TaskFinished {
        /// The stage.
        stage: String,
        /// The task.
        task: String,
        /// Its final status.
        status: TaskStatus,
        /// Its outputs (secret values redacted).
        outputs: Value,
        /// Why it ended so.
        message: String,
    },
    /// The run was paused.
    Paused,
    /// Someone asked to pause the run: running tasks finish, nothing new starts.
    PauseRequested {
        /// Why.
        reason: String,
    },
    /// The engine let go of the run: it waits for these approval requests.
    Parked {
        /// The open requests.
        requests: Vec<String>,
    },
    /// The run was resumed: failed, cancelled and skipped tasks and failed gates start over.
    Resumed,
    /// Someone asked to cancel the run.
    CancelRequested {
        /// Hard (kill now) or graceful.
        hard: bool,
        /// Why.
        reason: String,
    },
    /// A rollback pipeline ran (as a child run) after a failure.
    RolledBack {
        /// What it was attached to: `task:Stage.task`, `stage:Stage` or `pipeline`.
        scope: String,
        /// The child run.
        run: String,
        /// How the child run ended.
        status: RunStatus,
    },
    /// The run finished.
    RunFinished {
        /// Its final status.
        status: RunStatus,
        /// Why it ended so.
        message: String,
    },
}

/// A journal entry: a record with its version and time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The version this entry creates (1 for the first).
    #[serde(rename = "v")]
    pub version: u64,
    /// When it was written.
    pub at: Timestamp,
    /// What happened.
    #[serde(rename = "r")]
    pub record: Record,
}

/// Where journals are kept. Implementations must make an append durable before returning and
/// must refuse it, writing nothing, when `expected` is not the journal's current version.
#[async_trait]
pub trait JournalStore: Send + Sync {
    /// Appends entries numbered `expected + 1 ..`; returns the new version.
    async fn append(&self, run: &str, expected: u64, entries: Vec<Entry>) -> Result<u64, Error>;
    /// Every entry of a run, in order; [`Error::RunNotFound`] when it has none.
    async fn read(&self, run: &str) -> Result<Vec<Entry>, Error>;
    /// The ids of all runs.
    async fn runs(&self) -> Result<Vec<String>, Error>;
    /// The run's current version (the number of its entries); [`Error::RunNotFound`] when it
    /// has none. Engines poll it to notice records appended by another process (a cancel or a
    /// pause from a CLI); stores should answer it without reading the whole journal.
    async fn version(&self, run: &str) -> Result<u64, Error> {
        Ok(self.read(run).await?.len() as u64)
    }
}

fn check_versions(run: &str, expected: u64, entries: &[Entry]) -> Result<(), Error> {
    for (i, e) in entries.iter().enumerate() {
        if e.version != expected + 1 + i as u64 {
            return Err(Error::Corrupt {
                run: run.to_owned(),
                message: format!(
                    "entry {} carries version {}",
                    expected + 1 + i as u64,
                    e.version
                ),
            });
        }
    }
    Ok(())
}

/// Journals in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<HashMap<String, Vec<Entry>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl JournalStore for MemoryStore {
    async fn append(&self, run: &str, expected: u64, entries: Vec<Entry>) -> Result<u64, Error> {
        check_versions(run, expected, &entries)?;
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let journal = runs.entry(run.to_owned()).or_default();
        let actual = journal.len() as u64;
        if actual != expected {
            return Err(Error::Conflict {
                run: run.to_owned(),
                expected,
                actual,
            });
        }
        journal.extend(entries);
        Ok(journal.len() as u64)
    }

    async fn read(&self, run: &str) -> Result<Vec<Entry>, Error> {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.get(run)
            .cloned()
            .ok_or_else(|| Error::RunNotFound(run.to_owned()))
    }

    async fn runs(&self) -> Result<Vec<String>, Error> {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<String> = runs.keys().cloned().collect();
        v.sort();
        Ok(v)
    }

    async fn version(&self, run: &str) -> Result<u64, Error> {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.get(run)
            .map(|j| j.len() as u64)
            .ok_or_else(|| Error::RunNotFound(run.to_owned()))
    }
}

/// Journals as JSON-lines files under a directory, with group commit.
///
/// An append returns only once its entries are on disk (`fdatasync`). Appends that arrive while
/// a batch is being made durable wait for the next batch, and the files of one batch are synced
/// in parallel, so concurrent runs share the disk's cache flushes instead of queueing for one
/// each: a commit waits for at most the batch in flight and its own.
///
/// Within one process, appends to a run are checked against the version in order; across
/// processes, the file's length is compared with the last one seen, so a journal that another
/// process extended is detected as a conflict (see [`JournalStore::version`]).
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    shared: Arc<Shared>,
}

/// What the appenders and the group-commit flusher share.
#[derive(Debug, Default)]
struct Shared {
    /// Run → (version, file length) as last written or read by this process.
    seen: Mutex<HashMap<String, (u64, u64)>>,
    /// Appends waiting for the next batch, and whether a flusher is running.
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Append>,
    flushing: bool,
}

/// One append waiting to be written.
#[derive(Debug)]
struct Append {
    run: String,
    path: PathBuf,
    expected: u64,
    entries: Vec<Entry>,
    reply: tokio::sync::oneshot::Sender<Result<u64, Error>>,
}

/// A file written in the current batch: what remains to make it durable.
struct Dirty {
    file: File,
    path: PathBuf,
    run: String,
    new_file: bool,
    /// The appends written to it, with the version each reached.
    done: Vec<(tokio::sync::oneshot::Sender<Result<u64, Error>>, u64)>,
}

/// At most this many files of one batch are synced at once.
const SYNC_THREADS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn same_io_error(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

impl FileStore {
    /// A store under `dir` (created when missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        let runs = dir.join("runs");
        std::fs::create_dir_all(&runs)
            .map_err(|e| Error::io(format!("cannot create {}", runs.display()), e))?;
        Ok(Self {
            dir,
            shared: Arc::default(),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(dir: &Path, run: &str) -> Result<PathBuf, Error> {
        if run.is_empty()
            || !run
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::RunNotFound(run.to_owned()));
        }
        Ok(dir.join("runs").join(format!("{run}.jsonl")))
    }

    /// Reads a journal file under a shared lock (so that no other process is half-way through
    /// an append), dropping (and truncating away) a torn last line left by a crash.
    fn read_file(path: &Path, run: &str) -> Result<(Vec<Entry>, u64), Error> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::RunNotFound(run.to_owned()));
            }
            Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
        };
        fs4::FileExt::lock_shared(&file)
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Self::read_unlocked(file, path, run)
    }

    /// Reads a journal file whose lock the caller holds.
    fn read_unlocked(file: File, path: &Path, run: &str) -> Result<(Vec<Entry>, u64), Error> {
        let mut reader = BufReader::new(file);
        let mut entries = Vec::new();
        let mut good_len = 0u64;
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            let complete = line.ends_with('\n');
            match serde_json::from_str::<Entry>(line.trim_end()) {
                Ok(entry) if complete => {
                    if entry.version != entries.len() as u64 + 1 {
                        return Err(Error::Corrupt {
                            run: run.to_owned(),
                            message: format!(
                                "entry {} carries version {}",
                                entries.len() + 1,
                                entry.version
                            ),
                        });
                    }
                    entries.push(entry);
                    good_len += n as u64;
                }
                _ => {
                    // Only the last line may be torn (a crash during its write).
                    let mut rest = String::new();
                    let more = reader
                        .read_line(&mut rest)
                        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                    if more > 0 {
                        return Err(Error::Corrupt {
                            run: run.to_owned(),
                            message: format!("entry {} is not valid", entries.len() + 1),
                        });
                    }
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
                    f.set_len(good_len)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| Error::io(format!("cannot repair {}", path.display()), e))?;
                    break;
                }
            }
        }
        Ok((entries, good_len))
    }

    /// Records what a read found, unless this process already knows a later version.
    fn note_read(shared: &Shared, run: String, version: u64, len: u64) {
        let mut seen = lock(&shared.seen);
        match seen.get(&run) {
            Some(&(v, _)) if v > version => {}
            _ => {
                seen.insert(run, (version, len));
            }
        }
    }

    /// Checks one append against the version and writes it (not yet durable), holding the
    /// file's exclusive lock so that another process can neither write nor read half of it.
    /// Returns the new version.
    fn write_one(
        seen: &mut HashMap<String, (u64, u64)>,
        a: &Append,
        file: &mut File,
    ) -> Result<u64, Error> {
        fs4::FileExt::lock(&*file)
            .map_err(|e| Error::io(format!("cannot lock {}", a.path.display()), e))?;
        let r = Self::write_locked(seen, a, file);
        let _ = fs4::FileExt::unlock(&*file);
        r
    }

    fn write_locked(
        seen: &mut HashMap<String, (u64, u64)>,
        a: &Append,
        file: &mut File,
    ) -> Result<u64, Error> {
        let reread = || {
            File::open(&a.path)
                .map_err(|e| Error::io(format!("cannot open {}", a.path.display()), e))
                .and_then(|f| Self::read_unlocked(f, &a.path, &a.run))
        };
        let run = &a.run;
        let (version, len) = match seen.get(run) {
            Some(v) => *v,
            None if a.path.exists() => {
                let (e, len) = reread()?;
                (e.len() as u64, len)
            }
            None => (0, 0),
        };
        let on_disk = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", a.path.display()), e))?
            .len();
        if on_disk != len {
            // Another process wrote: re-read to report the real version.
            seen.remove(run);
            let actual = reread().map_or(0, |(e, _)| e.len() as u64);
            return Err(Error::Conflict {
                run: run.clone(),
                expected: a.expected,
                actual,
            });
        }
        if version != a.expected {
            return Err(Error::Conflict {
                run: run.clone(),
                expected: a.expected,
                actual: version,
            });
        }
        let mut buf = Vec::new();
        for e in &a.entries {
            serde_json::to_writer(&mut buf, e).map_err(|e| Error::Corrupt {
                run: run.clone(),
                message: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        if let Err(e) = file.write_all(&buf) {
            // What reached the file is unknown: the next append re-reads it.
            seen.remove(run);
            return Err(Error::io(format!("cannot write {}", a.path.display()), e));
        }
        let new_version = version + a.entries.len() as u64;
        seen.insert(run.clone(), (new_version, len + buf.len() as u64));
        Ok(new_version)
    }

    /// Writes a batch of appends in order (checking each against the version), then makes
    /// every file it touched durable, in parallel, and answers the appenders.
    fn commit_batch(shared: &Shared, batch: Vec<Append>) {
        let mut dirty: Vec<Dirty> = Vec::new();
        {
            let mut seen = lock(&shared.seen);
            for a in batch {
                let slot = if let Some(i) = dirty.iter().position(|d| d.path == a.path) {
                    i
                } else {
                    let new_file = !a.path.exists();
                    match OpenOptions::new().create(true).append(true).open(&a.path) {
                        Ok(file) => {
                            dirty.push(Dirty {
                                file,
                                path: a.path.clone(),
                                run: a.run.clone(),
                                new_file,
                                done: Vec::new(),
                            });
                            dirty.len() - 1
                        }
                        Err(e) => {
                            let _ = a.reply.send(Err(Error::io(
                                format!("cannot open {}", a.path.display()),
                                e,
                            )));
                            continue;
                        }
                    }
                };
                let d = &mut dirty[slot];
                match Self::write_one(&mut seen, &a, &mut d.file) {
                    Ok(v) => d.done.push((a.reply, v)),
                    Err(e) => {
                        let _ = a.reply.send(Err(e));
                    }
                }
            }
        }
        dirty.retain(|d| !d.done.is_empty());
        let sync = |d: &Dirty| -> std::io::Result<()> {
            d.file.sync_data()?;
            if d.new_file
                && let Some(parent) = d.path.parent()
            {
                // A new file: make its directory entry durable too.
                File::open(parent)?.sync_all()?;
            }
            Ok(())
        };
        // Concurrent syncs share the file system's journal commit and the device's cache
        // flush; one after the other, each would pay for its own.
        let threads = dirty.len().min(SYNC_THREADS);
        let mut synced: Vec<Option<std::io::Result<()>>> = Vec::new();
        synced.resize_with(dirty.len(), || None);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let dirty = &dirty;
                    s.spawn(move || {
                        (t..dirty.len())
                            .step_by(threads)
                            .map(|i| (i, sync(&dirty[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                if let Ok(results) = h.join() {
                    for (i, r) in results {
                        synced[i] = Some(r);
                    }
                }
            }
        });
        let synced = synced
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("fsync thread panicked"))));
        for (d, r) in dirty.into_iter().zip(synced) {
            match r {
                Ok(()) => {
                    for (reply, v) in d.done {
                        let _ = reply.send(Ok(v));
                    }
                }
                Err(e) => {
                    // What is on disk is unknown: the next append re-reads the file.
                    lock(&shared.seen).remove(&d.run);
                    for (reply, _) in d.done {
                        let _ = reply.send(Err(Error::io(
                            format!("cannot sync {}", d.path.display()),
                            same_io_error(&e),
                        )));
                    }
                }
            }
        }
    }

    /// Commits batches until no append is waiting.
    fn flush_loop(shared: &Shared) {
        loop {
            let batch = {
                let mut q = lock(&shared.queue);
                if q.waiting.is_empty() {
                    q.flushing = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            Self::commit_batch(shared, batch);
        }
    }
}

#[async_trait]
impl JournalStore for FileStore {
    async fn append(&self, run: &str, expected: u64, entries: Vec<Entry>) -> Result<u64, Error> {
        check_versions(run, expected, &entries)?;
        let path = Self::path(&self.dir, run)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start_flusher = {
            let mut q = lock(&self.shared.queue);
            q.waiting.push(Append {
                run: run.to_owned(),
                path,
                expected,
                entries,
                reply,
            });
            !std::mem::replace(&mut q.flushing, true)
        };
        if start_flusher {
            let shared = Arc::clone(&self.shared);
            // The flusher keeps going while appends keep coming; it is never awaited, so a
            // cancelled append does not stop it.
            tokio::task::spawn_blocking(move || Self::flush_loop(&shared));
        }
        answer.await.map_err(|_| Error::Corrupt {
            run: run.to_owned(),
            message: "the journal writer stopped".into(),
        })?
    }

    async fn read(&self, run: &str) -> Result<Vec<Entry>, Error> {
        let path = Self::path(&self.dir, run)?;
        let run = run.to_owned();
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let (entries, len) = Self::read_file(&path, &run)?;
            Self::note_read(&shared, run, entries.len() as u64, len);
            Ok(entries)
        })
        .await
        .map_err(|e| Error::Corrupt {
            run: String::new(),
            message: format!("journal reader panicked: {e}"),
        })?
    }

    async fn version(&self, run: &str) -> Result<u64, Error> {
        let path = Self::path(&self.dir, run)?;
        let known = lock(&self.shared.seen).get(run).copied();
        let on_disk = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::RunNotFound(run.to_owned()));
            }
            Err(e) => return Err(Error::io(format!("cannot stat {}", path.display()), e)),
        };
        match known {
            Some((v, len)) if len == on_disk => Ok(v),
            _ => Ok(self.read(run).await?.len() as u64),
        }
    }

    async fn runs(&self) -> Result<Vec<String>, Error> {
        let dir = self.dir.join("runs");
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let mut v: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".jsonl"))
                    .map(str::to_owned)
            })
            .collect();
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64, gate: &str) -> Entry {
        Entry {
            version,
            at: Timestamp(1),
            record: Record::GateOpened { gate: gate.into() },
        }
    }

    async fn cas_contract(store: &dyn JournalStore) {
        assert!(matches!(store.read("r1").await, Err(Error::RunNotFound(_))));
        assert_eq!(store.append("r1", 0, vec![entry(1, "a")]).await.unwrap(), 1);
        assert_eq!(
            store
                .append("r1", 1, vec![entry(2, "b"), entry(3, "c")])
                .await
                .unwrap(),
            3
        );
        // A stale writer is refused and writes nothing.
        let e = store
            .append("r1", 1, vec![entry(2, "x")])
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Conflict {
                    expected: 1,
                    actual: 3,
                    ..
                }
            ),
            "{e}"
        );
        let all = store.read("r1").await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].record, Record::GateOpened { gate: "c".into() });
        assert_eq!(store.runs().await.unwrap(), vec!["r1".to_owned()]);
    }

    #[tokio::test]
    async fn memory_store_is_compare_and_swap() {
        cas_contract(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn file_store_is_compare_and_swap_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("pc-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).unwrap();
        cas_contract(&store).await;
        // A second store (a restarted process) sees the same journal.
        let again = FileStore::open(&dir).unwrap();
        assert_eq!(again.read("r1").await.unwrap().len(), 3);
        // The first store notices the other process's write.
        again.append("r1", 3, vec![entry(4, "d")]).await.unwrap();
        let e = store
            .append("r1", 3, vec![entry(4, "e")])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Conflict { actual: 4, .. }), "{e}");
    }

    #[tokio::test]
    async fn file_store_drops_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("pc-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).unwrap();
        store.append("r", 0, vec![entry(1, "a")]).await.unwrap();
        let path = dir.join("runs/r.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"v\":2,\"at\":1,\"r\":{\"ty").unwrap();
        let fresh = FileStore::open(&dir).unwrap();
        assert_eq!(fresh.read("r").await.unwrap().len(), 1);
        fresh.append("r", 1, vec![entry(2, "b")]).await.unwrap();
        assert_eq!(fresh.read("r").await.unwrap().len(), 2);
        // A bad line in the middle is corruption, not a torn write.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"v\":1", "\"v\":x", 1);
        std::fs::write(&path, text).unwrap();
        let fresh = FileStore::open(&dir).unwrap();
        assert!(matches!(fresh.read("r").await, Err(Error::Corrupt { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_keeps_every_run_in_order_and_one_racer_wins() {
        let dir = std::env::temp_dir().join(format!("pc-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(FileStore::open(&dir).unwrap());
        let mut set = tokio::task::JoinSet::new();
        for w in 0..16 {
            let store = Arc::clone(&store);
            set.spawn(async move {
                for v in 1..=20u64 {
                    let run = format!("w{w}");
                    let got = store.append(&run, v - 1, vec![entry(v, &run)]).await?;
                    assert_eq!(got, v);
                }
                Ok::<_, Error>(())
            });
        }
        // Two writers race for the same version of one run: exactly one wins.
        store.append("race", 0, vec![entry(1, "a")]).await.unwrap();
        let (a, b) = tokio::join!(
            store.append("race", 1, vec![entry(2, "left")]),
            store.append("race", 1, vec![entry(2, "right")])
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        let fresh = FileStore::open(&dir).unwrap();
        for w in 0..16 {
            let all = fresh.read(&format!("w{w}")).await.unwrap();
            assert_eq!(all.len(), 20);
            assert!(
                all.iter()
                    .enumerate()
                    .all(|(i, e)| e.version == i as u64 + 1)
            );
        }
        assert_eq!(fresh.read("race").await.unwrap().len(), 2);
        assert_eq!(fresh.version("race").await.unwrap(), 2);
    }

    #[tokio::test]
    async fn version_notices_another_process_and_unknown_runs() {
        let dir = std::env::temp_dir().join(format!("pc-version-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let here = FileStore::open(&dir).unwrap();
        let there = FileStore::open(&dir).unwrap();
        assert!(matches!(
            here.version("r").await,
            Err(Error::RunNotFound(_))
        ));
        here.append("r", 0, vec![entry(1, "a")]).await.unwrap();
        assert_eq!(here.version("r").await.unwrap(), 1);
        there.read("r").await.unwrap();
        there.append("r", 1, vec![entry(2, "b")]).await.unwrap();
        assert_eq!(here.version("r").await.unwrap(), 2);
        // Having read it, this store appends on top of the other's entry.
        here.append("r", 2, vec![entry(3, "c")]).await.unwrap();
        let memory = MemoryStore::new();
        memory.append("m", 0, vec![entry(1, "a")]).await.unwrap();
        assert_eq!(memory.version("m").await.unwrap(), 1);
    }

    #[test]
    fn run_ids_cannot_escape_the_directory() {
        assert!(FileStore::path(Path::new("/x"), "../etc").is_err());
        assert!(FileStore::path(Path::new("/x"), "r-1_a").is_ok());
    }
}
