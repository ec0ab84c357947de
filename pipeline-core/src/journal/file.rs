//! [`FileStore`]: every run's journal in one shared, pre-zeroed segment log.
//!
//! # On-disk format
//!
//! `DIR/log/` holds numbered segments (`0000000000000001.seg`, ...) and a `LOCK` file. A
//! segment starts with a 24-byte header (`PCJLOG01`, its number, its capacity, little-endian)
//! followed by frames:
//!
//! ```text
//! u32 payload length | u32 CRC-32 of the payload | payload = u64 LSN | JSON {"run","v","n","e":[entries]}
//! ```
//!
//! One frame is one append (one run, `n` entries from version `v`). LSNs number frames across
//! segments from 1 with no gap, so a stale frame left behind a repaired tail is never taken for a
//! new one. A zero length ends the log; the length `u32::MAX` means "continued in the next
//! segment". Segments are zero-filled ahead of the writer (1 MiB at a time, up to their
//! capacity), so an append overwrites blocks that already exist and `fdatasync` has no file size
//! or extent change to commit (ext4 `fallocate` leaves "unwritten" extents whose first write is
//! a metadata change: zero-filling avoids that).
//!
//! A crash can leave a torn tail: a frame whose length, CRC, LSN or JSON is wrong. Opening (or
//! any later catch-up) zeroes the log from the first bad frame to the end of its segment and
//! makes that durable; everything before it was acknowledged and is kept.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Entry, JournalStore, check_versions};
use crate::Error;

const MAGIC: &[u8; 8] = b"PCJLOG01";
/// Bytes of a segment header.
const HEADER: u64 = 24;
/// Bytes of a frame header (length, CRC).
const FRAME_HEADER: u64 = 8;
/// The length that sends a reader on to the next segment.
const NEXT_SEGMENT: u32 = u32::MAX;
/// How far ahead of the writer a segment is zero-filled.
const ZERO_CHUNK: u64 = 1 << 20;
/// The largest frame accepted (one append).
const MAX_FRAME: u64 = 256 << 20;

/// The default capacity of one log segment (64 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// Journals of all runs in one segment log under a directory, with group commit.
///
/// An append returns only once its frame is on disk (`fdatasync`). Appends that arrive while
/// a batch is being made durable wait for the next batch, which is written with one `pwrite`
/// and made durable with one `fdatasync` of the log, whatever the number of runs in it.
///
/// Several processes may share a store: a `flock` on `log/LOCK` is held exclusively while a
/// batch is checked and written (not while it is synced) and shared while a reader catches up
/// with frames that other processes wrote, so compare-and-swap holds across processes.
///
/// Opening scans the whole log to index it (run → frames); reading a run reads only its
/// frames. Segments are not compacted yet: a store grows with its history.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use pipeline_core::journal::{Entry, FileStore, JournalStore, Record, Timestamp};
/// let dir = std::env::temp_dir().join(format!("pc-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = FileStore::open(&dir)?;
/// let entry = Entry { version: 1, at: Timestamp::now(), record: Record::Paused };
/// assert_eq!(store.append("run-1", 0, vec![entry.clone()]).await?, 1);
/// // A second writer that still expects version 0 is refused.
/// assert!(store.append("run-1", 0, vec![entry]).await.is_err());
/// assert_eq!(FileStore::open(&dir)?.read("run-1").await?.len(), 1);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), pipeline_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    shared: Arc<Shared>,
}

/// What the appenders, readers and the group-commit flusher share.
#[derive(Debug)]
struct Shared {
    log: PathBuf,
    segment_size: u64,
    state: Mutex<State>,
    queue: Mutex<Queue>,
}

/// The index of the log as far as this process has read it.
#[derive(Debug)]
struct State {
    /// `log/LOCK`, for `flock`. Only used while `state` is locked, so the process's threads
    /// never convert each other's lock.
    lock: File,
    runs: HashMap<String, RunIndex>,
    segments: BTreeMap<u64, Segment>,
    tail: Tail,
    /// A write or sync failed: what is on disk is unknown, so appends are refused.
    failed: Option<String>,
}

#[derive(Debug, Clone)]
struct Segment {
    file: Arc<File>,
    capacity: u64,
    path: PathBuf,
}

/// Where the next frame goes.
#[derive(Debug, Clone, Copy)]
struct Tail {
    segment: u64,
    offset: u64,
    lsn: u64,
}

#[derive(Debug, Default)]
struct RunIndex {
    version: u64,
    frames: Vec<FrameRef>,
}

/// A frame's payload: where it is.
#[derive(Debug, Clone, Copy)]
struct FrameRef {
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Serialize)]
struct FrameOut<'a> {
    run: &'a str,
    v: u64,
    n: u64,
    e: &'a [Entry],
}

#[derive(Deserialize)]
struct FrameHead {
    run: String,
    v: u64,
    n: u64,
}

#[derive(Deserialize)]
struct FrameIn {
    run: String,
    e: Vec<Entry>,
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
    expected: u64,
    entries: Vec<Entry>,
    reply: tokio::sync::oneshot::Sender<Result<u64, Error>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn corrupt(message: String) -> Error {
    Error::Corrupt {
        run: String::new(),
        message,
    }
}

fn segment_path(log: &Path, n: u64) -> PathBuf {
    log.join(format!("{n:016}.seg"))
}

/// Reads as much of `buf` as the file holds at `offset`; returns the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes zeros over `[from, to)`.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; usize::try_from(ZERO_CHUNK.min(to.saturating_sub(from))).unwrap_or(0)];
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(ZERO_CHUNK)).unwrap_or(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Makes a directory entry durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why a catch-up stopped reading at a frame.
enum Stop {
    /// The end of the log.
    End,
    /// A torn frame (a crash during its write): the log ends here and the rest is repaired.
    Torn(String),
}

impl FileStore {
    /// A store under `dir` (created when missing), with segments of
    /// [`DEFAULT_SEGMENT_SIZE`]. Opening indexes the log and repairs a torn tail.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::open_with_segment_size(dir, DEFAULT_SEGMENT_SIZE)
    }

    /// A store whose new segments hold `segment_size` bytes (at least 4 KiB; a larger append
    /// gets a segment of its own size). Existing segments keep their own capacity.
    pub fn open_with_segment_size(
        dir: impl Into<PathBuf>,
        segment_size: u64,
    ) -> Result<Self, Error> {
        let dir = dir.into();
        let log = dir.join("log");
        std::fs::create_dir_all(&log)
            .map_err(|e| Error::io(format!("cannot create {}", log.display()), e))?;
        let lock_path = log.join("LOCK");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
        let shared = Arc::new(Shared {
            log,
            segment_size: segment_size.max(4096),
            state: Mutex::new(State {
                lock: lock_file,
                runs: HashMap::new(),
                segments: BTreeMap::new(),
                tail: Tail {
                    segment: 0,
                    offset: HEADER,
                    lsn: 1,
                },
                failed: None,
            }),
            queue: Mutex::default(),
        });
        {
            let mut st = lock(&shared.state);
            Self::flock(&st, true)?;
            let r = Self::init(&shared, &mut st).and_then(|()| Self::catch_up(&shared, &mut st));
            let _ = fs4::FileExt::unlock(&st.lock);
            r?;
        }
        Ok(Self { dir, shared })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_run_id(run: &str) -> Result<(), Error> {
        if run.is_empty()
            || !run
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::RunNotFound(run.to_owned()));
        }
        Ok(())
    }

    fn flock(st: &State, exclusive: bool) -> Result<(), Error> {
        let r = if exclusive {
            fs4::FileExt::lock(&st.lock)
        } else {
            fs4::FileExt::lock_shared(&st.lock)
        };
        r.map_err(|e| Error::io("cannot lock the journal log", e))
    }

    /// Under the exclusive lock: finds the first segment (creating it in an empty store) and
    /// removes half-made segments.
    fn init(shared: &Shared, st: &mut State) -> Result<(), Error> {
        let rd = std::fs::read_dir(&shared.log)
            .map_err(|e| Error::io(format!("cannot list {}", shared.log.display()), e))?;
        let mut first: Option<u64> = None;
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = e.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(&path);
            } else if let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                first = Some(first.map_or(n, |f: u64| f.min(n)));
            }
        }
        let first = if let Some(n) = first {
            n
        } else {
            Self::create_segment(shared, st, 1, shared.segment_size)?;
            1
        };
        st.tail = Tail {
            segment: first,
            offset: HEADER,
            lsn: 1,
        };
        Ok(())
    }

    /// Creates segment `n` durably (a temporary file zero-filled, synced, renamed), replacing
    /// an orphan left by a crash, and opens it.
    fn create_segment(
        shared: &Shared,
        st: &mut State,
        n: u64,
        capacity: u64,
    ) -> Result<Segment, Error> {
        let path = segment_path(&shared.log, n);
        let tmp = path.with_extension("tmp");
        let io = |what: &str, e| Error::io(format!("cannot {what} {}", tmp.display()), e);
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&n.to_le_bytes());
        header.extend_from_slice(&capacity.to_le_bytes());
        f.write_all(&header).map_err(|e| io("write", e))?;
        write_zeros(&f, HEADER, capacity.min(HEADER + ZERO_CHUNK)).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
        sync_dir(&shared.log).map_err(|e| io("sync the directory of", e))?;
        let seg = Segment {
            file: Arc::new(f),
            capacity,
            path,
        };
        st.segments.insert(n, seg.clone());
        Ok(seg)
    }

    /// Opens segment `n` (already indexed, or on disk) and checks its header.
    fn segment(shared: &Shared, st: &mut State, n: u64) -> Result<Segment, Error> {
        if let Some(s) = st.segments.get(&n) {
            return Ok(s.clone());
        }
        let path = segment_path(&shared.log, n);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let mut header = [0u8; 24];
        let got = read_at_most(&f, &mut header, 0)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let number = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let capacity = u64::from_le_bytes(header[16..24].try_into().unwrap_or_default());
        if got < 24 || &header[..8] != MAGIC || number != n || capacity < HEADER + FRAME_HEADER {
            return Err(corrupt(format!("{} has no valid header", path.display())));
        }
        let seg = Segment {
            file: Arc::new(f),
            capacity,
            path,
        };
        st.segments.insert(n, seg.clone());
        Ok(seg)
    }

    /// Reads the frames written since this process last looked (under a `flock`, so no writer
    /// is half-way), indexing them; repairs a torn tail.
    fn catch_up(shared: &Shared, st: &mut State) -> Result<(), Error> {
        loop {
            let seg = Self::segment(shared, st, st.tail.segment)?;
            match Self::next_frame(st, &seg)? {
                Ok(()) => {}
                Err(Stop::End) => return Ok(()),
                Err(Stop::Torn(why)) => {
                    let offset = st.tail.offset;
                    let len = seg
                        .file
                        .metadata()
                        .map_err(|e| Error::io(format!("cannot stat {}", seg.path.display()), e))?
                        .len();
                    tracing::warn!(
                        segment = %seg.path.display(),
                        offset,
                        reason = %why,
                        "journal log: dropping a torn tail"
                    );
                    write_zeros(&seg.file, offset, len.max(offset + FRAME_HEADER))
                        .and_then(|()| seg.file.sync_data())
                        .map_err(|e| {
                            Error::io(format!("cannot repair {}", seg.path.display()), e)
                        })?;
                    return Ok(());
                }
            }
        }
    }

    /// Reads and indexes the frame at the tail. `Ok(Err(stop))` when there is none.
    fn next_frame(st: &mut State, seg: &Segment) -> Result<Result<(), Stop>, Error> {
        let io = |e| Error::io(format!("cannot read {}", seg.path.display()), e);
        let at = st.tail.offset;
        let mut head = [0u8; 8];
        let got = read_at_most(&seg.file, &mut head, at).map_err(io)?;
        if head.iter().all(|&b| b == 0) {
            return Ok(Err(Stop::End));
        }
        if got < 8 {
            return Ok(Err(Stop::Torn(
                "a frame header past the end of the file".into(),
            )));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == NEXT_SEGMENT {
            if crc != 0 {
                return Ok(Err(Stop::Torn("a bad segment marker".into())));
            }
            st.tail = Tail {
                segment: st.tail.segment + 1,
                offset: HEADER,
                lsn: st.tail.lsn,
            };
            return Ok(Ok(()));
        }
        if u64::from(len) < 8 || at + FRAME_HEADER + u64::from(len) > seg.capacity {
            return Ok(Err(Stop::Torn(format!("a frame length of {len}"))));
        }
        let mut payload = vec![0u8; len as usize];
        let got = read_at_most(&seg.file, &mut payload, at + FRAME_HEADER).map_err(io)?;
        if got < payload.len() {
            return Ok(Err(Stop::Torn("a frame cut short".into())));
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(Err(Stop::Torn("a frame whose CRC does not match".into())));
        }
        let lsn = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
        if lsn != st.tail.lsn {
            return Ok(Err(Stop::Torn(format!(
                "frame {lsn} where {} was due (a stale frame)",
                st.tail.lsn
            ))));
        }
        let head: FrameHead = serde_json::from_slice(&payload[8..]).map_err(|e| {
            corrupt(format!(
                "frame {lsn} in {} is not valid: {e}",
                seg.path.display()
            ))
        })?;
        let idx = st.runs.entry(head.run.clone()).or_default();
        if head.v != idx.version + 1 || head.n == 0 {
            return Err(Error::Corrupt {
                run: head.run,
                message: format!(
                    "frame {lsn} holds versions {}.. after version {}",
                    head.v, idx.version
                ),
            });
        }
        idx.version += head.n;
        idx.frames.push(FrameRef {
            segment: st.tail.segment,
            offset: at + FRAME_HEADER,
            len,
        });
        st.tail.offset = at + FRAME_HEADER + u64::from(len);
        st.tail.lsn += 1;
        Ok(Ok(()))
    }

    /// Catches up under a shared `flock`.
    fn refresh(shared: &Shared, st: &mut State) -> Result<(), Error> {
        Self::flock(st, false)?;
        let r = Self::catch_up(shared, st);
        let _ = fs4::FileExt::unlock(&st.lock);
        r
    }

    /// Whether another process may have written past this process's tail (a cheap `pread`).
    fn tail_moved(shared: &Shared, st: &mut State) -> Result<bool, Error> {
        let seg = Self::segment(shared, st, st.tail.segment)?;
        let mut head = [0u8; 4];
        read_at_most(&seg.file, &mut head, st.tail.offset)
            .map_err(|e| Error::io(format!("cannot read {}", seg.path.display()), e))?;
        Ok(head != [0; 4])
    }

    fn read_blocking(shared: &Shared, run: &str) -> Result<Vec<Entry>, Error> {
        let (frames, segments) = {
            let mut st = lock(&shared.state);
            Self::refresh(shared, &mut st)?;
            let idx = st
                .runs
                .get(run)
                .ok_or_else(|| Error::RunNotFound(run.to_owned()))?;
            let frames = idx.frames.clone();
            let segments: HashMap<u64, Segment> = frames
                .iter()
                .filter_map(|f| st.segments.get(&f.segment).map(|s| (f.segment, s.clone())))
                .collect();
            (frames, segments)
        };
        let mut entries = Vec::new();
        for f in frames {
            let seg = segments
                .get(&f.segment)
                .ok_or_else(|| corrupt(format!("segment {} is not open", f.segment)))?;
            let mut payload = vec![0u8; f.len as usize];
            seg.file
                .read_exact_at(&mut payload, f.offset)
                .map_err(|e| Error::io(format!("cannot read {}", seg.path.display()), e))?;
            let mut crc = [0u8; 4];
            seg.file
                .read_exact_at(&mut crc, f.offset - 4)
                .map_err(|e| Error::io(format!("cannot read {}", seg.path.display()), e))?;
            if crc32fast::hash(&payload) != u32::from_le_bytes(crc) {
                return Err(Error::Corrupt {
                    run: run.to_owned(),
                    message: format!(
                        "a frame at {} of {} changed after it was written",
                        f.offset,
                        seg.path.display()
                    ),
                });
            }
            let frame: FrameIn =
                serde_json::from_slice(&payload[8..]).map_err(|e| Error::Corrupt {
                    run: run.to_owned(),
                    message: e.to_string(),
                })?;
            if frame.run != run {
                return Err(Error::Corrupt {
                    run: run.to_owned(),
                    message: format!("an indexed frame belongs to {}", frame.run),
                });
            }
            entries.extend(frame.e);
        }
        Ok(entries)
    }

    /// Encodes one append as a frame with this LSN.
    fn encode(lsn: u64, a: &Append) -> Result<Vec<u8>, Error> {
        let mut payload = Vec::with_capacity(256);
        payload.extend_from_slice(&lsn.to_le_bytes());
        serde_json::to_writer(
            &mut payload,
            &FrameOut {
                run: &a.run,
                v: a.expected + 1,
                n: a.entries.len() as u64,
                e: &a.entries,
            },
        )
        .map_err(|e| Error::Corrupt {
            run: a.run.clone(),
            message: e.to_string(),
        })?;
        if payload.len() as u64 > MAX_FRAME {
            return Err(Error::Corrupt {
                run: a.run.clone(),
                message: format!("an append of {} bytes is too large", payload.len()),
            });
        }
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX - 1);
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        Ok(frame)
    }

    /// Writes `buf` at `at` in `seg`, zero-filling ahead of it first so that the next appends
    /// overwrite blocks that exist.
    fn write_frames(seg: &Segment, at: u64, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = at + buf.len() as u64;
        let filled = seg.file.metadata()?.len();
        if end + ZERO_CHUNK / 2 > filled && filled < seg.capacity {
            let to = (end + ZERO_CHUNK).min(seg.capacity);
            write_zeros(&seg.file, filled.max(end), to)?;
        }
        seg.file.write_all_at(buf, at)
    }

    /// Checks and writes a batch under the exclusive lock; returns the segments to sync and
    /// the answers to give once they are durable.
    #[expect(
        clippy::type_complexity,
        reason = "a private hand-over between two steps"
    )]
    fn write_batch(
        shared: &Shared,
        st: &mut State,
        batch: Vec<Append>,
    ) -> Result<
        (
            Vec<Segment>,
            Vec<(tokio::sync::oneshot::Sender<Result<u64, Error>>, u64)>,
        ),
        (Error, Vec<Append>),
    > {
        if let Err(e) = Self::catch_up(shared, st) {
            return Err((e, batch));
        }
        let mut dirty: Vec<Segment> = Vec::new();
        let mut done = Vec::new();
        let mut seg = match Self::segment(shared, st, st.tail.segment) {
            Ok(s) => s,
            Err(e) => return Err((e, batch)),
        };
        let mut start = st.tail.offset;
        let mut buf: Vec<u8> = Vec::new();
        let fail = |st: &mut State, e: Error, done: Vec<(_, u64)>| {
            st.failed = Some(e.to_string());
            for (reply, _) in done {
                let _ = tokio::sync::oneshot::Sender::send(
                    reply,
                    Err(Error::Corrupt {
                        run: String::new(),
                        message: format!("the journal log could not be written: {e}"),
                    }),
                );
            }
            e
        };
        for a in batch {
            let actual = st.runs.get(&a.run).map_or(0, |r| r.version);
            if actual != a.expected {
                let _ = a.reply.send(Err(Error::Conflict {
                    run: a.run,
                    expected: a.expected,
                    actual,
                }));
                continue;
            }
            let frame = match Self::encode(st.tail.lsn, &a) {
                Ok(f) => f,
                Err(e) => {
                    let _ = a.reply.send(Err(e));
                    continue;
                }
            };
            let flen = frame.len() as u64;
            if start + buf.len() as u64 + flen + FRAME_HEADER > seg.capacity {
                // Roll over: what is buffered goes here, then the marker, then a new segment.
                let marker_at = start + buf.len() as u64;
                let mut out = std::mem::take(&mut buf);
                out.extend_from_slice(&NEXT_SEGMENT.to_le_bytes());
                out.extend_from_slice(&[0; 4]);
                let capacity = shared.segment_size.max(HEADER + flen + FRAME_HEADER);
                let next = match Self::create_segment(shared, st, st.tail.segment + 1, capacity) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = a.reply.send(Err(Error::Corrupt {
                            run: a.run.clone(),
                            message: e.to_string(),
                        }));
                        return Err((fail(st, e, done), Vec::new()));
                    }
                };
                if let Err(e) = Self::write_frames(&seg, start, &out) {
                    let e = Error::io(format!("cannot write {}", seg.path.display()), e);
                    let _ = a.reply.send(Err(Error::Corrupt {
                        run: a.run.clone(),
                        message: e.to_string(),
                    }));
                    return Err((fail(st, e, done), Vec::new()));
                }
                debug_assert_eq!(marker_at + 8, start + out.len() as u64);
                dirty.push(seg);
                seg = next;
                st.tail.segment += 1;
                start = HEADER;
            }
            let offset = start + buf.len() as u64 + FRAME_HEADER;
            buf.extend_from_slice(&frame);
            let idx = st.runs.entry(a.run.clone()).or_default();
            idx.version += a.entries.len() as u64;
            idx.frames.push(FrameRef {
                segment: st.tail.segment,
                offset,
                len: u32::try_from(flen - FRAME_HEADER).unwrap_or(u32::MAX),
            });
            st.tail.lsn += 1;
            st.tail.offset = start + buf.len() as u64;
            done.push((a.reply, idx.version));
        }
        if let Err(e) = Self::write_frames(&seg, start, &buf) {
            let e = Error::io(format!("cannot write {}", seg.path.display()), e);
            return Err((fail(st, e, done), Vec::new()));
        }
        if !buf.is_empty() {
            dirty.push(seg);
        }
        Ok((dirty, done))
    }

    /// Writes a batch of appends in order (checking each against its run's version), makes
    /// the log durable with one `fdatasync` per segment touched, and answers the appenders.
    fn commit_batch(shared: &Shared, batch: Vec<Append>) {
        let written = {
            let mut st = lock(&shared.state);
            if let Some(why) = &st.failed {
                let why = why.clone();
                for a in batch {
                    let _ = a.reply.send(Err(Error::Corrupt {
                        run: a.run,
                        message: format!(
                            "an earlier write of the journal log failed ({why}); reopen the store"
                        ),
                    }));
                }
                return;
            }
            if let Err(e) = Self::flock(&st, true) {
                let why = e.to_string();
                for a in batch {
                    let _ = a.reply.send(Err(Error::Corrupt {
                        run: a.run,
                        message: why.clone(),
                    }));
                }
                return;
            }
            let r = Self::write_batch(shared, &mut st, batch);
            let _ = fs4::FileExt::unlock(&st.lock);
            r
        };
        let (dirty, done) = match written {
            Ok(w) => w,
            Err((e, rest)) => {
                let why = e.to_string();
                for a in rest {
                    let _ = a.reply.send(Err(Error::Corrupt {
                        run: a.run,
                        message: why.clone(),
                    }));
                }
                return;
            }
        };
        // Written and unlocked: another process may write behind us while we sync.
        let mut synced = Ok(());
        for seg in &dirty {
            if let Err(e) = seg.file.sync_data() {
                synced = Err(Error::io(format!("cannot sync {}", seg.path.display()), e));
                break;
            }
        }
        match synced {
            Ok(()) => {
                for (reply, v) in done {
                    let _ = reply.send(Ok(v));
                }
            }
            Err(e) => {
                // After a failed fdatasync the page cache may have dropped the data: nothing
                // more is written through this store.
                lock(&shared.state).failed = Some(e.to_string());
                for (reply, _) in done {
                    let _ = reply.send(Err(Error::Corrupt {
                        run: String::new(),
                        message: e.to_string(),
                    }));
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

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| corrupt(format!("journal reader panicked: {e}")))?
    }
}

#[async_trait]
impl JournalStore for FileStore {
    async fn append(&self, run: &str, expected: u64, entries: Vec<Entry>) -> Result<u64, Error> {
        check_versions(run, expected, &entries)?;
        Self::check_run_id(run)?;
        if entries.is_empty() {
            return Err(Error::Corrupt {
                run: run.to_owned(),
                message: "an append of no entries".into(),
            });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start_flusher = {
            let mut q = lock(&self.shared.queue);
            q.waiting.push(Append {
                run: run.to_owned(),
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
        Self::check_run_id(run)?;
        let run = run.to_owned();
        self.blocking(move |shared| Self::read_blocking(shared, &run))
            .await
    }

    async fn version(&self, run: &str) -> Result<u64, Error> {
        Self::check_run_id(run)?;
        {
            let mut st = lock(&self.shared.state);
            if !Self::tail_moved(&self.shared, &mut st)? {
                return st
                    .runs
                    .get(run)
                    .map(|r| r.version)
                    .ok_or_else(|| Error::RunNotFound(run.to_owned()));
            }
        }
        let run = run.to_owned();
        self.blocking(move |shared| {
            let mut st = lock(&shared.state);
            Self::refresh(shared, &mut st)?;
            st.runs
                .get(&run)
                .map(|r| r.version)
                .ok_or(Error::RunNotFound(run))
        })
        .await
    }

    async fn runs(&self) -> Result<Vec<String>, Error> {
        self.blocking(|shared| {
            let mut st = lock(&shared.state);
            Self::refresh(shared, &mut st)?;
            let mut v: Vec<String> = st.runs.keys().cloned().collect();
            v.sort();
            Ok(v)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Record, Timestamp};
    use super::*;

    fn entry(version: u64, gate: &str) -> Entry {
        Entry {
            version,
            at: Timestamp(1),
            record: Record::GateOpened { gate: gate.into() },
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pc-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    /// The offset of the log's end in a segment (the first zero frame header).
    fn end_of(seg: &Path) -> u64 {
        let bytes = std::fs::read(seg).unwrap();
        let mut at = HEADER as usize;
        loop {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            if len == 0 {
                return at as u64;
            }
            at += 8 + len as usize;
        }
    }

    #[tokio::test]
    async fn a_torn_frame_is_dropped_and_nothing_committed_is_lost() {
        let dir = tempdir("torn");
        let store = FileStore::open(&dir).unwrap();
        store.append("a", 0, vec![entry(1, "a1")]).await.unwrap();
        store
            .append("b", 0, vec![entry(1, "b1"), entry(2, "b2")])
            .await
            .unwrap();
        store.append("a", 1, vec![entry(2, "a2")]).await.unwrap();
        drop(store);
        let seg = &segments(&dir)[0];
        let end = end_of(seg);
        let f = OpenOptions::new().write(true).open(seg).unwrap();
        // Garbage where the next frame would go (a crash in the middle of its write).
        f.write_all_at(b"\x40\x00\x00\x00garbage-not-a-frame", end)
            .unwrap();
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.read("a").await.unwrap().len(), 2);
        assert_eq!(store.read("b").await.unwrap().len(), 2);
        // The garbage was zeroed: the next append lands where it was and reads back.
        store.append("a", 2, vec![entry(3, "a3")]).await.unwrap();
        assert!(end_of(seg) > end);
        drop(store);
        let store = FileStore::open(&dir).unwrap();
        let a = store.read("a").await.unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[2].record, Record::GateOpened { gate: "a3".into() });

        // The last frame damaged (a bit flipped in its payload): it is dropped, the rest kept.
        drop(store);
        let last = {
            let bytes = std::fs::read(seg).unwrap();
            let mut at = HEADER as usize;
            let mut last = at;
            loop {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                if len == 0 {
                    break last;
                }
                last = at;
                at += 8 + len as usize;
            }
        };
        f.write_all_at(b"#", last as u64 + 20).unwrap();
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.read("a").await.unwrap().len(), 2);
        assert_eq!(store.read("b").await.unwrap().len(), 2);
        store.append("a", 2, vec![entry(3, "again")]).await.unwrap();

        // The file cut short in the middle of its last frame.
        drop(store);
        f.set_len(end_of(seg) - 5).unwrap();
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.read("a").await.unwrap().len(), 2);
        assert_eq!(store.version("b").await.unwrap(), 2);
        store.append("a", 2, vec![entry(3, "third")]).await.unwrap();
        let again = FileStore::open(&dir).unwrap();
        assert_eq!(
            again.read("a").await.unwrap()[2].record,
            Record::GateOpened {
                gate: "third".into()
            }
        );
    }

    #[tokio::test]
    async fn a_frame_damaged_inside_the_log_is_reported_on_read() {
        let dir = tempdir("rot");
        let store = FileStore::open(&dir).unwrap();
        store.append("a", 0, vec![entry(1, "a1")]).await.unwrap();
        store.append("b", 0, vec![entry(1, "b1")]).await.unwrap();
        let seg = &segments(&dir)[0];
        let f = OpenOptions::new().write(true).open(seg).unwrap();
        f.write_all_at(b"#", HEADER + 30).unwrap();
        // Already indexed by this store: the CRC check on read finds it.
        assert!(matches!(store.read("a").await, Err(Error::Corrupt { .. })));
    }

    #[tokio::test]
    async fn segments_roll_over_and_reopen_across_them() {
        let dir = tempdir("roll");
        let store = FileStore::open_with_segment_size(&dir, 4096).unwrap();
        for v in 1..=60u64 {
            store
                .append("r", v - 1, vec![entry(v, &"x".repeat(40))])
                .await
                .unwrap();
        }
        // An append bigger than a segment gets one of its own.
        let big = entry(61, &"y".repeat(10_000));
        store.append("r", 60, vec![big.clone()]).await.unwrap();
        store.append("s", 0, vec![entry(1, "after")]).await.unwrap();
        assert!(segments(&dir).len() >= 3, "{:?}", segments(&dir));
        let again = FileStore::open_with_segment_size(&dir, 4096).unwrap();
        let all = again.read("r").await.unwrap();
        assert_eq!(all.len(), 61);
        assert_eq!(all[60], big);
        assert_eq!(again.read("s").await.unwrap().len(), 1);
        // The first store sees what the second writes into the same segments.
        again.append("s", 1, vec![entry(2, "there")]).await.unwrap();
        assert_eq!(store.version("s").await.unwrap(), 2);
        let e = store
            .append("s", 1, vec![entry(2, "stale")])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Conflict { actual: 2, .. }), "{e}");
    }

    #[test]
    fn run_ids_cannot_escape() {
        assert!(FileStore::check_run_id("../etc").is_err());
        assert!(FileStore::check_run_id("").is_err());
        assert!(FileStore::check_run_id("r-1_a").is_ok());
    }
}
