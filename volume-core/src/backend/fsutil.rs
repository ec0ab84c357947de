//! Small filesystem and process helpers shared by the file-based backends.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fs4::{FileExt, TryLockError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{NodeId, VolumeId};

/// Runs a program to completion and returns its standard output; a non-zero exit becomes
/// [`Error::Command`] with the end of its standard error.
pub(crate) async fn run(program: &'static str, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Command {
            program,
            status: format!("cannot run: {e}"),
            stderr: String::new(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Error::Command {
            program,
            status: out.status.to_string(),
            stderr: tail.trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A temporary sibling of `path`, starting with `.`, which no id, name marker or node
/// directory does.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Writes `value` as JSON to `path` atomically: a temporary file, fsync, rename, fsync of the
/// directory. A crash leaves either the old or the new content, never a torn file.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory so that a rename or create in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Writes a short text file atomically (see [`write_json_atomic`]).
pub(crate) fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Reads a text file; `None` when it does not exist.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Reads JSON from `path`; `None` when the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                what: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Creates a directory and its parents.
pub(crate) fn mkdirs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}

/// A node id as a directory name; see [`encode_component`].
pub(crate) fn node_dir_name(node: &NodeId) -> String {
    encode_component(node.as_str())
}

/// A string as one file name component, reversibly: strings of `[A-Za-z0-9._-]` that do not
/// start with `.` or `x-` stay as they are; anything else becomes `x-` and the hex of its UTF-8
/// bytes. The result never contains `@` or `/`.
pub(crate) fn encode_component(s: &str) -> String {
    let plain = !s.starts_with('.')
        && !s.starts_with("x-")
        && s.len() <= 120
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain {
        s.to_owned()
    } else {
        use std::fmt::Write as _;
        let mut out = String::from("x-");
        for b in s.bytes() {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// The inverse of [`node_dir_name`]; `None` for names it never produces.
pub(crate) fn node_from_dir_name(name: &str) -> Option<NodeId> {
    let s = if let Some(hex) = name.strip_prefix("x-") {
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        String::from_utf8(bytes?).ok()?
    } else {
        name.to_owned()
    };
    NodeId::new(s).ok()
}

/// A cross-process lock on one file (`flock`), held until dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks (on a blocking thread) until the exclusive lock on `path` is held.
    pub(crate) async fn acquire(path: PathBuf) -> Result<Self> {
        tokio::task::spawn_blocking(move || {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open lock file", &path, e))?;
            // Called through the trait: `File::lock` is std only since Rust 1.89 (MSRV 1.88).
            FileExt::lock(&file).map_err(|e| Error::io("lock", &path, e))?;
            Ok(Self { _file: file })
        })
        .await
        .map_err(|e| Error::Io {
            op: "join lock task",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    /// Takes the exclusive lock on an existing file without waiting; `Ok(None)` when another
    /// open file holds it.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Self>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open for lock", path, e))?;
        match FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
        }
    }
}

/// One in-process async mutex per volume, so that operations on one volume are serialized
/// inside a process before they take the cross-process file lock.
#[derive(Debug, Default)]
pub(crate) struct VolumeLocks {
    locks: Mutex<HashMap<VolumeId, Arc<tokio::sync::Mutex<()>>>>,
}

impl VolumeLocks {
    /// The mutex of one volume.
    pub(crate) fn of(&self, id: &VolumeId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .clone()
    }
}

/// Whether this process runs with an effective uid of 0 (read from `/proc/self/status`).
pub fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// The files in `dir` named `<id>.<ext>` whose id has no sidecar `<sidecars>/<id>.json`.
pub(crate) fn orphan_images(dir: &Path, ext: &str, sidecars: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(ext) else {
            continue;
        };
        if VolumeId::new(id).is_ok() && !sidecars.join(format!("{id}.json")).exists() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_dir_names_round_trip() {
        for n in ["vm-a", "nœud", "x-1", ".hidden", "a/b", "with space"] {
            let id = NodeId::new(n).unwrap();
            let d = node_dir_name(&id);
            assert!(!d.contains('/') && !d.starts_with('.'));
            assert_eq!(node_from_dir_name(&d), Some(id));
        }
        assert_eq!(node_from_dir_name("x-zz"), None);
    }

    #[test]
    fn atomic_json_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), None);
        write_json_atomic(&p, &vec![1, 2]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), Some(vec![1, 2]));
        fs::write(&p, b"{").unwrap();
        assert!(matches!(
            read_json::<Vec<u32>>(&p),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn try_lock_sees_another_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        File::create(&p).unwrap();
        let first = FileLock::try_acquire(&p).unwrap();
        assert!(first.is_some());
        assert!(FileLock::try_acquire(&p).unwrap().is_none());
        drop(first);
        assert!(FileLock::try_acquire(&p).unwrap().is_some());
    }
}
