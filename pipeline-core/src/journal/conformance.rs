//! The contract every [`JournalStore`] must keep, as a check that a store's own tests run.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use pipeline_core::journal::{MemoryStore, conformance};
//! conformance::check(&MemoryStore::new(), "doc").await.unwrap();
//! # });
//! ```

use std::sync::Arc;

use super::{Entry, JournalStore, Record, Timestamp};
use crate::Error;

fn entry(version: u64, gate: &str) -> Entry {
    Entry {
        version,
        at: Timestamp(1_700_000_000_000 + i64::try_from(version).unwrap_or(0)),
        record: Record::GateOpened { gate: gate.into() },
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs the contract on `store`, using run ids that start with `prefix` (the store must hold
/// no run with that prefix). Returns what broke.
///
/// The contract: an unknown run is [`Error::RunNotFound`] for `read` and `version`; appends
/// number entries from 1 and return the new version; a writer whose expected version is stale
/// is refused with [`Error::Conflict`] (carrying the actual version) and writes nothing; an
/// append whose entries are misnumbered is refused; of writers racing for one version exactly
/// one wins; `runs` lists every run; what was appended reads back equal.
pub async fn check(store: &dyn JournalStore, prefix: &str) -> Result<(), String> {
    let r1 = format!("{prefix}-r1");
    let r2 = format!("{prefix}-r2");
    ensure!(
        matches!(store.read(&r1).await, Err(Error::RunNotFound(_))),
        "read of an unknown run is not RunNotFound"
    );
    ensure!(
        matches!(store.version(&r1).await, Err(Error::RunNotFound(_))),
        "version of an unknown run is not RunNotFound"
    );
    let v = store
        .append(&r1, 0, vec![entry(1, "a")])
        .await
        .map_err(|e| format!("first append: {e}"))?;
    ensure!(v == 1, "first append returned version {v}");
    let v = store
        .append(&r1, 1, vec![entry(2, "b"), entry(3, "c")])
        .await
        .map_err(|e| format!("second append: {e}"))?;
    ensure!(v == 3, "an append of two entries returned version {v}");
    match store.append(&r1, 1, vec![entry(2, "stale")]).await {
        Err(Error::Conflict {
            expected: 1,
            actual: 3,
            ..
        }) => {}
        other => return Err(format!("a stale append gave {other:?}")),
    }
    let bad = store.append(&r1, 3, vec![entry(5, "gap")]).await;
    ensure!(bad.is_err(), "a misnumbered append was accepted");
    let all = store.read(&r1).await.map_err(|e| format!("read: {e}"))?;
    ensure!(all.len() == 3, "read {} entries, not 3", all.len());
    ensure!(
        all == vec![entry(1, "a"), entry(2, "b"), entry(3, "c")],
        "read back {all:?}"
    );
    let v = store
        .version(&r1)
        .await
        .map_err(|e| format!("version: {e}"))?;
    ensure!(v == 3, "version is {v}, not 3");

    store
        .append(&r2, 0, vec![entry(1, "x")])
        .await
        .map_err(|e| format!("append to a second run: {e}"))?;
    let runs = store.runs().await.map_err(|e| format!("runs: {e}"))?;
    ensure!(
        runs.contains(&r1) && runs.contains(&r2),
        "runs() lists {runs:?}"
    );

    // Eight writers race for version 2 of one run: exactly one wins, the others conflict.
    let race = format!("{prefix}-race");
    store
        .append(&race, 0, vec![entry(1, "start")])
        .await
        .map_err(|e| format!("append: {e}"))?;
    let results = race_for_version_two(store, &race).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    ensure!(won == 1, "{won} of 8 racing writers won: {results:?}");
    ensure!(
        results
            .iter()
            .all(|r| matches!(r, Ok(2) | Err(Error::Conflict { actual: 2, .. }))),
        "racing writers got {results:?}"
    );
    let all = store.read(&race).await.map_err(|e| format!("read: {e}"))?;
    ensure!(all.len() == 2, "the raced run holds {} entries", all.len());
    Ok(())
}

/// Eight appends of version 2, started together.
async fn race_for_version_two(store: &dyn JournalStore, run: &str) -> Vec<Result<u64, Error>> {
    let gates: Vec<Arc<str>> = (0..8).map(|i| Arc::from(format!("w{i}"))).collect();
    let futs = gates
        .iter()
        .map(|g| store.append(run, 1, vec![entry(2, g)]));
    let mut out = Vec::new();
    // Poll them together so that they really race (no spawn: the store is borrowed).
    let mut pinned: Vec<_> = futs.map(Box::pin).collect();
    let mut done: Vec<Option<Result<u64, Error>>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => done[i] = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}
