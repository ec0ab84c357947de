//! [`PgStore`]: journals in PostgreSQL (feature `postgres`).

use async_trait::async_trait;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::{Entry, JournalStore, Record, Timestamp, check_versions};
use crate::Error;

/// The table, created when missing: one row per entry, `(run, version)` unique.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pipeline_journal (
    run     text   NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    at      bigint NOT NULL,
    record  jsonb  NOT NULL,
    PRIMARY KEY (run, version)
)";

/// Appends rows `expected + 1 ..` only when the run's last version is `expected`; a racing
/// writer that passes the same check loses on the primary key instead.
const APPEND: &str = "INSERT INTO pipeline_journal (run, version, at, record)
    SELECT $1, e.version, e.at, e.record::jsonb
    FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS e(version, at, record)
    WHERE (SELECT coalesce(max(version), 0) FROM pipeline_journal WHERE run = $1) = $5";

/// Journals in a PostgreSQL database (feature `postgres`).
///
/// Each append is one `INSERT ... SELECT ... WHERE` statement (atomic on its own): it writes
/// every entry or none, only when the run's last version is the expected one, and the primary
/// key `(run, version)` refuses the loser of two writers that raced past that check, so
/// compare-and-swap holds across processes and hosts. An append returns once the server has
/// committed it (durable with the server's default `synchronous_commit = on`).
///
/// The connection string is libpq's (`host=/run/postgresql user=ci dbname=pipelines` or
/// `postgresql://ci@db.example.com/pipelines`); the table `pipeline_journal` is created in the
/// first schema of the `search_path` (set it with `options=-csearch_path=NAME`). TLS is not
/// built in this release: use a local socket, a loopback port or a tunnel. The connection
/// string (which may hold a password) never appears in errors or `Debug` output.
///
/// ```no_run
/// # async fn f() -> Result<(), pipeline_core::Error> {
/// use pipeline_core::journal::{JournalStore, PgStore};
/// let store = PgStore::connect("host=/run/postgresql user=pipelines dbname=pipelines").await?;
/// println!("{:?}", store.runs().await?);
/// # Ok(()) }
/// ```
pub struct PgStore {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn pg(context: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| Error::Postgres {
        context: context.to_owned(),
        message: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    }
}

impl PgStore {
    /// Connects (without TLS) and creates the journal table when missing.
    pub async fn connect(conninfo: &str) -> Result<Self, Error> {
        let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
            .await
            .map_err(pg("cannot connect"))?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL journal connection ended");
            }
        });
        let store = Self { client, connection };
        store
            .client
            .batch_execute(SCHEMA)
            .await
            .map_err(pg("cannot create the journal table"))?;
        Ok(store)
    }

    async fn current(&self, run: &str) -> Result<Option<u64>, Error> {
        let row = self
            .client
            .query_one(
                "SELECT max(version) FROM pipeline_journal WHERE run = $1",
                &[&run],
            )
            .await
            .map_err(pg("cannot read a version"))?;
        let v: Option<i64> = row.get(0);
        Ok(v.map(|v| u64::try_from(v).unwrap_or(0)))
    }
}

fn to_i64(run: &str, v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Corrupt {
        run: run.to_owned(),
        message: format!("version {v} is out of range"),
    })
}

#[async_trait]
impl JournalStore for PgStore {
    async fn append(&self, run: &str, expected: u64, entries: Vec<Entry>) -> Result<u64, Error> {
        check_versions(run, expected, &entries)?;
        if entries.is_empty() {
            return Err(Error::Corrupt {
                run: run.to_owned(),
                message: "an append of no entries".into(),
            });
        }
        let mut versions = Vec::with_capacity(entries.len());
        let mut ats = Vec::with_capacity(entries.len());
        let mut records = Vec::with_capacity(entries.len());
        for e in &entries {
            versions.push(to_i64(run, e.version)?);
            ats.push(e.at.0);
            records.push(
                serde_json::to_string(&e.record).map_err(|e| Error::Corrupt {
                    run: run.to_owned(),
                    message: e.to_string(),
                })?,
            );
        }
        let want = to_i64(run, expected)?;
        let inserted = self
            .client
            .execute(APPEND, &[&run, &versions, &ats, &records, &want])
            .await;
        let conflict = match inserted {
            Ok(n) if n == entries.len() as u64 => return Ok(expected + n),
            Ok(_) => true,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => true,
            Err(e) => return Err(pg("cannot append")(e)),
        };
        debug_assert!(conflict);
        Err(Error::Conflict {
            run: run.to_owned(),
            expected,
            actual: self.current(run).await?.unwrap_or(0),
        })
    }

    async fn read(&self, run: &str) -> Result<Vec<Entry>, Error> {
        let rows = self
            .client
            .query(
                "SELECT version, at, record::text FROM pipeline_journal WHERE run = $1
                 ORDER BY version",
                &[&run],
            )
            .await
            .map_err(pg("cannot read a journal"))?;
        if rows.is_empty() {
            return Err(Error::RunNotFound(run.to_owned()));
        }
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let version: i64 = row.get(0);
            let at: i64 = row.get(1);
            let record: &str = row.get(2);
            if version != i as i64 + 1 {
                return Err(Error::Corrupt {
                    run: run.to_owned(),
                    message: format!("entry {} carries version {version}", i + 1),
                });
            }
            let record: Record = serde_json::from_str(record).map_err(|e| Error::Corrupt {
                run: run.to_owned(),
                message: format!("entry {}: {e}", i + 1),
            })?;
            out.push(Entry {
                version: u64::try_from(version).unwrap_or(0),
                at: Timestamp(at),
                record,
            });
        }
        Ok(out)
    }

    async fn runs(&self) -> Result<Vec<String>, Error> {
        let rows = self
            .client
            .query(
                "SELECT DISTINCT run FROM pipeline_journal ORDER BY run",
                &[],
            )
            .await
            .map_err(pg("cannot list runs"))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    async fn version(&self, run: &str) -> Result<u64, Error> {
        self.current(run)
            .await?
            .ok_or_else(|| Error::RunNotFound(run.to_owned()))
    }
}
