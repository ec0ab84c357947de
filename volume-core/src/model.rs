//! The volume model: identifiers, specs, sizes, attachments, epochs.
//!
//! Every identifier is validated on construction, so a value of these types is always usable
//! as a key, a file name component (ids) or a label (names, nodes).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest identifier, name or label string accepted, in bytes (CSI's limit).
pub const MAX_STRING_BYTES: usize = 128;
/// The largest total size of a volume's labels, in bytes (CSI's map limit).
pub const MAX_LABEL_BYTES: usize = 4096;

fn check_text(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if s.len() > MAX_STRING_BYTES {
        return Err(Error::invalid(
            what,
            format!("{} bytes is longer than {MAX_STRING_BYTES}", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(what, "must not contain control characters"));
    }
    if s.trim() != s {
        return Err(Error::invalid(
            what,
            "must not start or end with white space",
        ));
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Validates and wraps a ", $what, ".")]
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check_text($what, &s)?;
                let extra: fn(&str) -> Result<()> = $check;
                extra(&s)?;
                Ok(Self(s))
            }

            #[doc = concat!("The ", $what, " as a string.")]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
    };
}

text_id!(
    /// A volume's id, assigned by the backend, unique within it and never reused.
    ///
    /// Ids use only `[A-Za-z0-9._-]` so that backends can use them in file names.
    ///
    /// ```
    /// use volume_core::VolumeId;
    /// assert!(VolumeId::new("vol-1f2e").is_ok());
    /// assert!(VolumeId::new("../etc").is_err());
    /// ```
    VolumeId,
    "volume id",
    |s| {
        if s.starts_with('.') || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(Error::invalid("volume id", "only [A-Za-z0-9._-], not starting with '.'"));
        }
        Ok(())
    }
);

text_id!(
    /// A volume's name: unique per pool, and the idempotency key of `create`.
    ///
    /// ```
    /// use volume_core::VolumeName;
    /// assert!(VolumeName::new("postgres-data").is_ok());
    /// assert!(VolumeName::new("").is_err());
    /// ```
    VolumeName,
    "volume name",
    |s| {
        if s.contains('/') {
            return Err(Error::invalid("volume name", "must not contain '/'"));
        }
        Ok(())
    }
);

text_id!(
    /// A node's identity: the VM (or host) a volume is attached to. Any printable Unicode.
    ///
    /// ```
    /// use volume_core::NodeId;
    /// assert_eq!(NodeId::new("vm-ü").unwrap().as_str(), "vm-ü");
    /// assert!(NodeId::new("").is_err());
    /// ```
    NodeId,
    "node id",
    |_| Ok(())
);

text_id!(
    /// A pool of storage a volume is allocated from (a datastore, a directory).
    ///
    /// ```
    /// use volume_core::PoolId;
    /// assert!(PoolId::new("datastore1").is_ok());
    /// ```
    PoolId,
    "pool id",
    |_| Ok(())
);

impl VolumeId {
    /// Generates a fresh id, unique across processes on this machine and over time:
    /// `vol-<nanoseconds since the epoch>-<process id>-<counter>` in hex.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("vol-{nanos:x}-{:x}-{n:x}", std::process::id()))
    }
}

/// A volume's labels: string keys and values, 4 KiB in total at most.
///
/// ```
/// use volume_core::Labels;
/// let mut l = Labels::default();
/// l.insert("app", "db").unwrap();
/// assert_eq!(l.get("app"), Some("db"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Adds or replaces a label, refusing empty keys, control characters and an oversized map.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        check_text("label key", &key)?;
        if value.len() > MAX_STRING_BYTES || value.chars().any(char::is_control) {
            return Err(Error::invalid(
                "label value",
                "at most 128 bytes, no control characters",
            ));
        }
        let mut next = self.0.clone();
        next.insert(key, value);
        let total: usize = next.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > MAX_LABEL_BYTES {
            return Err(Error::invalid(
                "labels",
                format!("{total} bytes is more than {MAX_LABEL_BYTES}"),
            ));
        }
        self.0 = next;
        Ok(())
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Iterates over the labels in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl TryFrom<BTreeMap<String, String>> for Labels {
    type Error = Error;
    fn try_from(m: BTreeMap<String, String>) -> Result<Self> {
        let mut l = Labels::default();
        for (k, v) in m {
            l.insert(k, v)?;
        }
        Ok(l)
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(l: Labels) -> Self {
        l.0
    }
}

/// How a backend allocates space: sizes are rounded up to a multiple of `unit`, and no volume is
/// smaller than `minimum`.
///
/// ```
/// use volume_core::Allocation;
/// let a = Allocation::new(1 << 20, 16 << 20).unwrap();
/// assert_eq!(a.round_up(1).unwrap(), 16 << 20);
/// assert_eq!(a.round_up((16 << 20) + 1).unwrap(), 17 << 20);
/// assert!(a.round_up(0).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    unit: NonZeroU64,
    minimum: u64,
}

impl Allocation {
    /// An allocation policy; `minimum` must be a multiple of `unit`, and `unit` non-zero.
    pub fn new(unit: u64, minimum: u64) -> Result<Self> {
        let unit =
            NonZeroU64::new(unit).ok_or_else(|| Error::invalid("allocation unit", "is zero"))?;
        if !minimum.is_multiple_of(unit.get()) {
            return Err(Error::invalid(
                "minimum size",
                "not a multiple of the allocation unit",
            ));
        }
        Ok(Self { unit, minimum })
    }

    /// The allocation unit in bytes.
    pub fn unit(&self) -> u64 {
        self.unit.get()
    }

    /// The smallest volume in bytes.
    pub fn minimum(&self) -> u64 {
        self.minimum
    }

    /// Rounds a requested size up to what the backend allocates. Zero and sizes that overflow
    /// are refused.
    pub fn round_up(&self, requested: u64) -> Result<u64> {
        if requested == 0 {
            return Err(Error::invalid("size", "must be more than zero bytes"));
        }
        let unit = self.unit.get();
        let rounded = requested
            .div_ceil(unit)
            .checked_mul(unit)
            .ok_or_else(|| Error::invalid("size", "too large"))?;
        Ok(rounded.max(self.minimum))
    }
}

/// A fencing epoch: every mutating backend call carries one, and a backend refuses a call whose
/// epoch is older than the newest it has seen for the volume.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch of callers outside any lease (tests, first use).
    pub const ZERO: Epoch = Epoch(0);

    /// The next epoch.
    #[must_use]
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A volume's generation: increases on every change of its record (attach, detach, resize).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Generation(pub u64);

impl Generation {
    /// The next generation.
    #[must_use]
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

/// What a caller asks `create` for. The name is the idempotency key: creating an existing name
/// with a compatible spec returns the existing volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Unique per pool.
    pub name: VolumeName,
    /// Where to allocate.
    pub pool: PoolId,
    /// Requested size in bytes; the backend rounds it up to its allocation unit.
    pub size_bytes: u64,
    /// Labels stored with the volume.
    pub labels: Labels,
}

impl VolumeSpec {
    /// A spec without labels.
    pub fn new(name: VolumeName, pool: PoolId, size_bytes: u64) -> Self {
        Self {
            name,
            pool,
            size_bytes,
            labels: Labels::default(),
        }
    }

    /// Whether an existing volume satisfies this spec (same pool, same allocated size, same
    /// labels), so that `create` may return it.
    pub fn is_satisfied_by(&self, v: &Volume, allocation: Allocation) -> bool {
        v.pool == self.pool
            && allocation.round_up(self.size_bytes).ok() == Some(v.requested_bytes_rounded)
            && v.labels == self.labels
    }
}

/// A volume as a backend reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The backend's id.
    pub id: VolumeId,
    /// The name, unique per pool.
    pub name: VolumeName,
    /// The pool.
    pub pool: PoolId,
    /// Allocated size in bytes (a multiple of the allocation unit; grows on resize).
    pub size_bytes: u64,
    /// The size the creator asked for, rounded up: the idempotency check of `create` compares
    /// against this, so a resized volume still matches its original spec.
    pub requested_bytes_rounded: u64,
    /// Labels.
    pub labels: Labels,
    /// The node it is attached to, if any.
    pub attached_to: Option<NodeId>,
    /// Increases on every change.
    pub generation: Generation,
    /// The newest fencing epoch the volume has seen.
    pub epoch: Epoch,
}

/// How the bytes behind a device path are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DeviceFormat {
    /// The path is a block device or a raw file of exactly the volume's size.
    Raw,
    /// The path is a qcow2 image whose virtual size is the volume's size.
    Qcow2,
}

/// Where an attached volume is visible on its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The path on the node.
    pub path: PathBuf,
    /// The layout of the bytes at the path.
    pub format: DeviceFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_path_tricks_and_control_characters() {
        assert!(VolumeId::new("a/b").is_err());
        assert!(VolumeId::new(".hidden").is_err());
        assert!(VolumeName::new("a\nb").is_err());
        assert!(VolumeName::new(" padded").is_err());
        assert!(NodeId::new("x".repeat(129)).is_err());
        assert!(NodeId::new("x".repeat(128)).is_ok());
    }

    #[test]
    fn generated_ids_are_unique_and_valid() {
        let a = VolumeId::generate();
        let b = VolumeId::generate();
        assert_ne!(a, b);
        assert!(VolumeId::new(a.as_str()).is_ok());
    }

    #[test]
    fn ids_round_trip_through_json_and_reject_bad_input() {
        let n = NodeId::new("nœud").unwrap();
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<NodeId>(&j).unwrap(), n);
        assert!(serde_json::from_str::<VolumeId>("\"a/b\"").is_err());
    }

    #[test]
    fn labels_are_bounded() {
        let mut l = Labels::default();
        for i in 0..33 {
            l.insert(format!("k{i:03}"), "v".repeat(120)).unwrap();
        }
        let err = l.insert("k999", "v".repeat(120)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { what: "labels", .. }));
        assert_eq!(l.iter().count(), 33);
    }

    #[test]
    fn allocation_rounds_up_and_refuses_nonsense() {
        assert!(Allocation::new(0, 0).is_err());
        assert!(Allocation::new(4096, 1000).is_err());
        let a = Allocation::new(4096, 0).unwrap();
        assert_eq!(a.round_up(4096).unwrap(), 4096);
        assert_eq!(a.round_up(4097).unwrap(), 8192);
        assert!(a.round_up(u64::MAX).is_err());
    }
}
