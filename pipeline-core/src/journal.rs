//! The durable journal: every transition of a run, written with versioned (compare-and-swap)
//! appends behind the [`JournalStore`] trait.
//!
//! A run's journal is a sequence of [`Entry`]s numbered from 1. A writer appends with the
//! version it last saw; if the journal moved on, the append fails with [`Error::Conflict`] and
//! nothing is written, so a late writer can never regress a run (Spinnaker #7921). Deadlines are
//! stored as absolute UTC times so that they hold across restarts (Concourse #9399).
//!
//! [`FileStore`] is the embedded default: one JSON-lines file per run, each append written in
//! one `write` and made durable with `fsync` before it returns; a torn last line left by a
//! crash is dropped on the next read. [`MemoryStore`] keeps journals in memory (tests,
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
}

/// Journals as JSON-lines files under a directory, fsynced on every append.
///
/// Within one process, appends to a run are serialized and checked against the version; across
/// processes, the file's length is compared with the last one seen, so a journal that another
/// process extended is detected as a conflict. Run one engine per directory at a time.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// Run → (version, file length) as last seen by this process.
    seen: Arc<Mutex<HashMap<String, (u64, u64)>>>,
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
            seen: Arc::default(),
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

    /// Reads a journal file, dropping (and truncating away) a torn last line.
    fn read_file(path: &Path, run: &str) -> Result<(Vec<Entry>, u64), Error> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::RunNotFound(run.to_owned()));
            }
            Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
        };
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
}

#[async_trait]
impl JournalStore for FileStore {
    async fn append(&self, run: &str, expected: u64, entries: Vec<Entry>) -> Result<u64, Error> {
        check_versions(run, expected, &entries)?;
        let path = Self::path(&self.dir, run)?;
        let seen = Arc::clone(&self.seen);
        let run = run.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (version, len) = match seen.get(&run) {
                Some(v) => *v,
                None if path.exists() => {
                    let (e, len) = Self::read_file(&path, &run)?;
                    (e.len() as u64, len)
                }
                None => (0, 0),
            };
            let on_disk = std::fs::metadata(&path).map_or(0, |m| m.len());
            if on_disk != len {
                // Another process wrote: re-read to report the real version.
                seen.remove(&run);
                let actual = Self::read_file(&path, &run).map_or(0, |(e, _)| e.len() as u64);
                return Err(Error::Conflict {
                    run,
                    expected,
                    actual,
                });
            }
            if version != expected {
                return Err(Error::Conflict {
                    run,
                    expected,
                    actual: version,
                });
            }
            let mut buf = Vec::new();
            for e in &entries {
                serde_json::to_writer(&mut buf, e).map_err(|e| Error::Corrupt {
                    run: run.clone(),
                    message: e.to_string(),
                })?;
                buf.push(b'\n');
            }
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            f.write_all(&buf)
                .and_then(|()| f.sync_data())
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            if version == 0 {
                // A new file: make its directory entry durable too.
                if let Some(parent) = path.parent() {
                    let _ = File::open(parent).and_then(|d| d.sync_all());
                }
            }
            let new_version = version + entries.len() as u64;
            seen.insert(run, (new_version, len + buf.len() as u64));
            Ok(new_version)
        })
        .await
        .map_err(|e| Error::Corrupt {
            run: String::new(),
            message: format!("journal writer panicked: {e}"),
        })?
    }

    async fn read(&self, run: &str) -> Result<Vec<Entry>, Error> {
        let path = Self::path(&self.dir, run)?;
        let run = run.to_owned();
        let seen = Arc::clone(&self.seen);
        tokio::task::spawn_blocking(move || {
            let (entries, len) = Self::read_file(&path, &run)?;
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(run, (entries.len() as u64, len));
            Ok(entries)
        })
        .await
        .map_err(|e| Error::Corrupt {
            run: String::new(),
            message: format!("journal reader panicked: {e}"),
        })?
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

    #[test]
    fn run_ids_cannot_escape_the_directory() {
        assert!(FileStore::path(Path::new("/x"), "../etc").is_err());
        assert!(FileStore::path(Path::new("/x"), "r-1_a").is_ok());
    }
}
