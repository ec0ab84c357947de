//! The durable journal: every transition of a run, written with versioned (compare-and-swap)
//! appends behind the [`JournalStore`] trait.
//!
//! A run's journal is a sequence of [`Entry`]s numbered from 1. A writer appends with the
//! version it last saw; if the journal moved on, the append fails with [`Error::Conflict`] and
//! nothing is written, so a late writer can never regress a run (Spinnaker #7921). Deadlines are
//! stored as absolute UTC times so that they hold across restarts (Concourse #9399).
//!
//! [`FileStore`] is the embedded default: the journals of all runs in one shared, pre-zeroed
//! segment log, records framed with their length and a CRC, group commit with one `fdatasync`
//! per batch, and a torn tail detected and dropped on open. [`MemoryStore`] keeps journals in
//! memory (tests, benchmarks). With the feature `postgres`, `PgStore` keeps them in PostgreSQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;
use crate::model::ApprovalPolicy;

pub mod conformance;
mod file;
pub use file::{DEFAULT_SEGMENT_SIZE, FileStore};
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
pub use pg::PgStore;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry(version: u64, gate: &str) -> Entry {
        Entry {
            version,
            at: Timestamp(1),
            record: Record::GateOpened { gate: gate.into() },
        }
    }

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        conformance::check(&MemoryStore::new(), "m").await.unwrap();
    }

    #[tokio::test]
    async fn file_store_keeps_the_contract_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("pc-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).unwrap();
        conformance::check(&store, "f").await.unwrap();
        // A second store (a restarted process) sees the same journal.
        let again = FileStore::open(&dir).unwrap();
        assert_eq!(again.read("f-r1").await.unwrap().len(), 3);
        // The first store notices the other process's write.
        again.append("f-r1", 3, vec![entry(4, "d")]).await.unwrap();
        let e = store
            .append("f-r1", 3, vec![entry(4, "e")])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Conflict { actual: 4, .. }), "{e}");
        assert_eq!(store.read("f-r1").await.unwrap().len(), 4);
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
}
