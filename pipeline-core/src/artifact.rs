//! The artifact repository: a store trait and a local content-addressed store.
//!
//! Blobs are addressed by `sha256:` digest and immutable. A version (`repo/name@version`)
//! points at one digest and can never be re-published with another. Channels (`latest`,
//! `candidate`, ...) are separate pointers whose every move is kept in an audit log. Promotion
//! copies a version to another repository by digest, never by rebuilding. Properties make
//! versions searchable; "passed stage S" is a property, so "the latest version that passed S"
//! follows Concourse's `passed:`. [`provenance`] builds an in-toto Statement with an SLSA
//! provenance predicate for a run.
//!
//! The `Publish` and `Promote` task kinds ([`register_kinds`]) let pipelines use a store.
//!
//! [`crate::artifactory::ArtifactoryStore`] implements the same trait over JFrog Artifactory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::Error;
use crate::journal::Timestamp;
use crate::model::ValueType;
use crate::state::RunState;
use crate::task::{FieldSpec, TaskContext, TaskFailure, TaskKind, TaskRegistry};

/// A reference to a published version: small, passed between tasks instead of the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// Repository.
    pub repo: String,
    /// Artifact name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// A version with its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The reference.
    #[serde(rename = "ref")]
    pub reference: ArtifactRef,
    /// Searchable properties (`passed.<stage>` = `true` once it passed a stage).
    pub properties: BTreeMap<String, String>,
    /// When it was published (or promoted into this repository).
    pub created_at: Timestamp,
}

/// One move of a channel (the audit record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMove {
    /// The version the channel now points at.
    pub version: String,
    /// Its digest.
    pub digest: String,
    /// Who moved it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// An artifact repository.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Publishes `data` as `repo/name@version`. Publishing the same bytes again is a no-op;
    /// publishing different bytes under an existing version is refused.
    async fn publish(
        &self,
        repo: &str,
        name: &str,
        version: &str,
        media_type: &str,
        data: &[u8],
        properties: BTreeMap<String, String>,
    ) -> Result<ArtifactRef, Error>;
    /// The bytes of a blob, checked against its digest.
    async fn fetch(&self, digest: &str) -> Result<Vec<u8>, Error>;
    /// A version's metadata.
    async fn version(
        &self,
        repo: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionInfo>, Error>;
    /// Sets (or, with an empty value, removes) properties of a version.
    async fn set_properties(
        &self,
        repo: &str,
        name: &str,
        version: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<(), Error>;
    /// The newest version of `name` in `repo` whose properties include all of `properties`.
    async fn find_latest(
        &self,
        repo: &str,
        name: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Option<VersionInfo>, Error>;
    /// Points a channel at a version (audited).
    async fn set_channel(
        &self,
        repo: &str,
        name: &str,
        channel: &str,
        version: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), Error>;
    /// A channel's history, oldest first; its current version is the last.
    async fn channel(
        &self,
        repo: &str,
        name: &str,
        channel: &str,
    ) -> Result<Vec<ChannelMove>, Error>;
    /// Copies a version to another repository by digest (no rebuild) and records who did it.
    async fn promote(
        &self,
        from_repo: &str,
        to_repo: &str,
        name: &str,
        version: &str,
        actor: &str,
        reason: &str,
    ) -> Result<ArtifactRef, Error>;

    /// Records that a version passed a stage.
    async fn mark_passed(
        &self,
        repo: &str,
        name: &str,
        version: &str,
        stage: &str,
    ) -> Result<(), Error> {
        let props = BTreeMap::from([(format!("passed.{stage}"), "true".to_owned())]);
        self.set_properties(repo, name, version, props).await
    }

    /// The newest version that passed a stage (Concourse's `passed:`).
    async fn latest_passed(
        &self,
        repo: &str,
        name: &str,
        stage: &str,
    ) -> Result<Option<VersionInfo>, Error> {
        let props = BTreeMap::from([(format!("passed.{stage}"), "true".to_owned())]);
        self.find_latest(repo, name, &props).await
    }
}

/// `sha256:<hex>` of some bytes.
///
/// ```
/// assert_eq!(
///     pipeline_core::artifact::digest(b""),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in &hash {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// The local content-addressed store, in a directory:
/// `blobs/sha256/<hex>`, `repos/<repo>/<name>/versions/<version>.json`,
/// `repos/<repo>/<name>/channels/<channel>.jsonl`.
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// A store under `dir` (created when missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        fs::create_dir_all(dir.join("blobs/sha256"))
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Self { dir })
    }

    fn item_dir(&self, repo: &str, name: &str) -> Result<PathBuf, Error> {
        for part in [repo, name] {
            if !valid_name(part) {
                return Err(Error::Artifact {
                    artifact: format!("{repo}/{name}"),
                    message: format!("`{part}` is not a valid repository or artifact name"),
                });
            }
        }
        Ok(self.dir.join("repos").join(repo).join(name))
    }

    fn version_path(&self, repo: &str, name: &str, version: &str) -> Result<PathBuf, Error> {
        if !valid_name(version) {
            return Err(Error::Artifact {
                artifact: format!("{repo}/{name}@{version}"),
                message: "not a valid version".into(),
            });
        }
        Ok(self
            .item_dir(repo, name)?
            .join("versions")
            .join(format!("{version}.json")))
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| Error::Artifact {
                artifact: digest.to_owned(),
                message: "not a sha256 digest".into(),
            })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    fn read_version(path: &Path) -> Result<Option<VersionInfo>, Error> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Artifact {
                    artifact: path.display().to_string(),
                    message: format!("unreadable metadata: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }

    fn write_atomic(path: &Path, bytes: &[u8], create_new: bool) -> Result<bool, Error> {
        let parent = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        if create_new && path.exists() {
            return Ok(false);
        }
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            Timestamp::now().0
        ));
        let mut f = fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
        if create_new {
            // hard_link fails if the target exists: first writer wins, atomically.
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            return match linked {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::io(format!("cannot write {}", path.display()), e)),
            };
        }
        fs::rename(&tmp, path)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        Ok(true)
    }

    fn put_version(&self, info: &VersionInfo) -> Result<ArtifactRef, Error> {
        let r = &info.reference;
        let path = self.version_path(&r.repo, &r.name, &r.version)?;
        let bytes = serde_json::to_vec_pretty(info).map_err(|e| Error::Artifact {
            artifact: format!("{}/{}@{}", r.repo, r.name, r.version),
            message: e.to_string(),
        })?;
        if !Self::write_atomic(&path, &bytes, true)? {
            let existing = Self::read_version(&path)?;
            if existing.as_ref().map(|e| &e.reference.digest) != Some(&r.digest) {
                return Err(Error::Artifact {
                    artifact: format!("{}/{}@{}", r.repo, r.name, r.version),
                    message: "this version is already published with another digest; versions \
                              are immutable"
                        .into(),
                });
            }
        }
        Ok(r.clone())
    }
}

#[async_trait]
impl ArtifactStore for LocalStore {
    async fn publish(
        &self,
        repo: &str,
        name: &str,
        version: &str,
        media_type: &str,
        data: &[u8],
        properties: BTreeMap<String, String>,
    ) -> Result<ArtifactRef, Error> {
        let d = digest(data);
        let blob = self.blob_path(&d)?;
        if !blob.exists() {
            Self::write_atomic(&blob, data, true)?;
        }
        let info = VersionInfo {
            reference: ArtifactRef {
                repo: repo.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
                digest: d,
                size: data.len() as u64,
                media_type: media_type.to_owned(),
            },
            properties,
            created_at: Timestamp::now(),
        };
        self.put_version(&info)
    }

    async fn fetch(&self, digest_: &str) -> Result<Vec<u8>, Error> {
        let path = self.blob_path(digest_)?;
        let data = fs::read(&path).map_err(|e| Error::Artifact {
            artifact: digest_.to_owned(),
            message: format!("cannot read blob: {e}"),
        })?;
        if digest(&data) != digest_ {
            return Err(Error::Artifact {
                artifact: digest_.to_owned(),
                message: "the blob does not match its digest".into(),
            });
        }
        Ok(data)
    }

    async fn version(
        &self,
        repo: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionInfo>, Error> {
        Self::read_version(&self.version_path(repo, name, version)?)
    }

    async fn set_properties(
        &self,
        repo: &str,
        name: &str,
        version: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let path = self.version_path(repo, name, version)?;
        let mut info = Self::read_version(&path)?.ok_or_else(|| Error::Artifact {
            artifact: format!("{repo}/{name}@{version}"),
            message: "no such version".into(),
        })?;
        for (k, v) in properties {
            if v.is_empty() {
                info.properties.remove(&k);
            } else {
                info.properties.insert(k, v);
            }
        }
        let bytes = serde_json::to_vec_pretty(&info).map_err(|e| Error::Artifact {
            artifact: format!("{repo}/{name}@{version}"),
            message: e.to_string(),
        })?;
        Self::write_atomic(&path, &bytes, false)?;
        Ok(())
    }

    async fn find_latest(
        &self,
        repo: &str,
        name: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Option<VersionInfo>, Error> {
        let dir = self.item_dir(repo, name)?.join("versions");
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(None);
        };
        let mut best: Option<VersionInfo> = None;
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let Some(info) = Self::read_version(&p)? else {
                continue;
            };
            if properties
                .iter()
                .all(|(k, v)| info.properties.get(k) == Some(v))
                && best.as_ref().is_none_or(|b| {
                    (info.created_at, &info.reference.version)
                        > (b.created_at, &b.reference.version)
                })
            {
                best = Some(info);
            }
        }
        Ok(best)
    }

    async fn set_channel(
        &self,
        repo: &str,
        name: &str,
        channel: &str,
        version: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), Error> {
        let info = self
            .version(repo, name, version)
            .await?
            .ok_or_else(|| Error::Artifact {
                artifact: format!("{repo}/{name}@{version}"),
                message: "no such version".into(),
            })?;
        if !valid_name(channel) {
            return Err(Error::Artifact {
                artifact: format!("{repo}/{name}"),
                message: format!("`{channel}` is not a valid channel name"),
            });
        }
        let path = self
            .item_dir(repo, name)?
            .join("channels")
            .join(format!("{channel}.jsonl"));
        let parent = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        let mv = ChannelMove {
            version: version.to_owned(),
            digest: info.reference.digest,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            at: Timestamp::now(),
        };
        let mut line = serde_json::to_vec(&mv).map_err(|e| Error::Artifact {
            artifact: format!("{repo}/{name}"),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    }

    async fn channel(
        &self,
        repo: &str,
        name: &str,
        channel: &str,
    ) -> Result<Vec<ChannelMove>, Error> {
        let path = self
            .item_dir(repo, name)?
            .join("channels")
            .join(format!("{channel}.jsonl"));
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| Error::Artifact {
                    artifact: format!("{repo}/{name}#{channel}"),
                    message: format!("unreadable channel log: {e}"),
                })
            })
            .collect()
    }

    async fn promote(
        &self,
        from_repo: &str,
        to_repo: &str,
        name: &str,
        version: &str,
        actor: &str,
        reason: &str,
    ) -> Result<ArtifactRef, Error> {
        let src = self
            .version(from_repo, name, version)
            .await?
            .ok_or_else(|| Error::Artifact {
                artifact: format!("{from_repo}/{name}@{version}"),
                message: "no such version".into(),
            })?;
        // The blob is shared by digest: nothing is copied or rebuilt, only pointed at.
        self.fetch(&src.reference.digest).await?;
        let mut properties = src.properties.clone();
        properties.insert("promoted.from".into(), from_repo.to_owned());
        properties.insert("promoted.by".into(), actor.to_owned());
        properties.insert("promoted.reason".into(), reason.to_owned());
        let info = VersionInfo {
            reference: ArtifactRef {
                repo: to_repo.to_owned(),
                ..src.reference
            },
            properties,
            created_at: Timestamp::now(),
        };
        self.put_version(&info)
    }
}

const PUBLISH_INPUTS: &[FieldSpec] = &[
    FieldSpec {
        name: "repo",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "name",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "version",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "file",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "mediaType",
        ty: ValueType::String,
        required: false,
    },
    FieldSpec {
        name: "properties",
        ty: ValueType::Object,
        required: false,
    },
    FieldSpec {
        name: "passed",
        ty: ValueType::Array,
        required: false,
    },
];
const REF_OUTPUTS: &[FieldSpec] = &[
    FieldSpec {
        name: "repo",
        ty: ValueType::String,
        required: false,
    },
    FieldSpec {
        name: "name",
        ty: ValueType::String,
        required: false,
    },
    FieldSpec {
        name: "version",
        ty: ValueType::String,
        required: false,
    },
    FieldSpec {
        name: "digest",
        ty: ValueType::String,
        required: false,
    },
    FieldSpec {
        name: "size",
        ty: ValueType::Number,
        required: false,
    },
    FieldSpec {
        name: "mediaType",
        ty: ValueType::String,
        required: false,
    },
];
const PROMOTE_INPUTS: &[FieldSpec] = &[
    FieldSpec {
        name: "fromRepo",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "toRepo",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "name",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "version",
        ty: ValueType::String,
        required: true,
    },
    FieldSpec {
        name: "channel",
        ty: ValueType::String,
        required: false,
    },
    FieldSpec {
        name: "reason",
        ty: ValueType::String,
        required: false,
    },
];

fn text<'a>(ctx: &'a TaskContext, k: &str) -> Result<&'a str, TaskFailure> {
    ctx.input
        .get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| TaskFailure::permanent(format!("{k} must be a string")))
}

fn failure(e: &Error) -> TaskFailure {
    TaskFailure {
        message: e.to_string(),
        outputs: json!({}),
        retryable: matches!(e, Error::Io { .. }),
    }
}

fn ref_outputs(r: &ArtifactRef) -> Value {
    serde_json::to_value(r).unwrap_or_else(|_| json!({}))
}

/// The `Publish` task kind: publishes a file of the run's working directory as a version,
/// with properties, and records the stages it passed.
#[derive(Clone)]
pub struct PublishTask {
    store: Arc<dyn ArtifactStore>,
}

impl PublishTask {
    /// A `Publish` kind over `store`.
    pub fn new(store: Arc<dyn ArtifactStore>) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for PublishTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishTask")
    }
}

#[async_trait]
impl TaskKind for PublishTask {
    fn type_name(&self) -> &'static str {
        "Publish"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        PUBLISH_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        REF_OUTPUTS
    }
    async fn run(&self, ctx: TaskContext) -> Result<Value, TaskFailure> {
        let (repo, name, version) = (
            text(&ctx, "repo")?,
            text(&ctx, "name")?,
            text(&ctx, "version")?,
        );
        let file = ctx.work_dir.join(text(&ctx, "file")?);
        let data = fs::read(&file)
            .map_err(|e| TaskFailure::permanent(format!("cannot read {}: {e}", file.display())))?;
        let media = ctx
            .input
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream");
        let mut props: BTreeMap<String, String> = ctx
            .input
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        props.insert("run".into(), ctx.run_id.clone());
        let r = self
            .store
            .publish(repo, name, version, media, &data, props)
            .await
            .map_err(|e| failure(&e))?;
        if let Some(stages) = ctx.input.get("passed").and_then(Value::as_array) {
            for s in stages.iter().filter_map(Value::as_str) {
                self.store
                    .mark_passed(repo, name, version, s)
                    .await
                    .map_err(|e| failure(&e))?;
            }
        }
        Ok(ref_outputs(&r))
    }
}

/// The `Promote` task kind: promotes a version to another repository by digest and, when
/// `channel` is given, points that channel of the target repository at it.
#[derive(Clone)]
pub struct PromoteTask {
    store: Arc<dyn ArtifactStore>,
}

impl PromoteTask {
    /// A `Promote` kind over `store`.
    pub fn new(store: Arc<dyn ArtifactStore>) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for PromoteTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PromoteTask")
    }
}

#[async_trait]
impl TaskKind for PromoteTask {
    fn type_name(&self) -> &'static str {
        "Promote"
    }
    fn inputs(&self) -> &'static [FieldSpec] {
        PROMOTE_INPUTS
    }
    fn outputs(&self) -> &'static [FieldSpec] {
        REF_OUTPUTS
    }
    async fn run(&self, ctx: TaskContext) -> Result<Value, TaskFailure> {
        let (from, to) = (text(&ctx, "fromRepo")?, text(&ctx, "toRepo")?);
        let (name, version) = (text(&ctx, "name")?, text(&ctx, "version")?);
        let reason = ctx
            .input
            .get("reason")
            .and_then(Value::as_str)
            .map_or_else(|| format!("run {}", ctx.run_id), str::to_owned);
        let actor = format!("pipeline:{}", ctx.run_id);
        let r = self
            .store
            .promote(from, to, name, version, &actor, &reason)
            .await
            .map_err(|e| failure(&e))?;
        if let Some(channel) = ctx.input.get("channel").and_then(Value::as_str) {
            self.store
                .set_channel(to, name, channel, version, &actor, &reason)
                .await
                .map_err(|e| failure(&e))?;
        }
        Ok(ref_outputs(&r))
    }
}

/// Registers `Publish` and `Promote` over `store`.
pub fn register_kinds(registry: &mut TaskRegistry, store: &Arc<dyn ArtifactStore>) {
    registry.register(Arc::new(PublishTask::new(Arc::clone(store))));
    registry.register(Arc::new(PromoteTask::new(Arc::clone(store))));
}

/// An in-toto Statement v1 with an SLSA provenance v1 predicate for a run that produced
/// `subjects`.
pub fn provenance(
    run: &RunState,
    pipeline_name: &str,
    subjects: &[ArtifactRef],
    builder_id: &str,
) -> Value {
    let finished = run.updated_at;
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects.iter().map(|s| json!({
            "name": format!("{}/{}@{}", s.repo, s.name, s.version),
            "digest": {"sha256": s.digest.trim_start_matches("sha256:")},
        })).collect::<Vec<_>>(),
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://example.invalid/vsphere-sdk/pipeline-core/run/v1",
                "externalParameters": {"pipeline": pipeline_name, "inputs": run.inputs},
                "internalParameters": {"initiator": run.initiator},
                "resolvedDependencies": run.tasks.iter()
                    .filter_map(|((stage, task), t)| {
                        let commit = t.outputs.get("commit")?.as_str()?;
                        let dir = t.outputs.get("directory").and_then(Value::as_str).unwrap_or_default();
                        Some(json!({"uri": format!("git+file://{dir}#{stage}.{task}"), "digest": {"gitCommit": commit}}))
                    })
                    .collect::<Vec<_>>(),
            },
            "runDetails": {
                "builder": {"id": builder_id, "version": {"pipeline-core": env!("CARGO_PKG_VERSION")}},
                "metadata": {
                    "invocationId": run.run_id,
                    "startedOn": run.created_at.to_chrono().to_rfc3339(),
                    "finishedOn": finished.to_chrono().to_rfc3339(),
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> LocalStore {
        let d = std::env::temp_dir().join(format!("pc-art-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        LocalStore::open(d).unwrap()
    }

    #[tokio::test]
    async fn versions_are_immutable_and_content_addressed() {
        let s = store("immutable");
        let r = s
            .publish(
                "dev",
                "app",
                "1.0",
                "application/gzip",
                b"v1",
                BTreeMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.digest, digest(b"v1"));
        assert_eq!(s.fetch(&r.digest).await.unwrap(), b"v1");
        // Same bytes again: fine. Other bytes: refused.
        s.publish(
            "dev",
            "app",
            "1.0",
            "application/gzip",
            b"v1",
            BTreeMap::new(),
        )
        .await
        .unwrap();
        let e = s
            .publish(
                "dev",
                "app",
                "1.0",
                "application/gzip",
                b"v2",
                BTreeMap::new(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("immutable"), "{e}");
        // A tampered blob is detected.
        fs::write(s.blob_path(&r.digest).unwrap(), b"evil").unwrap();
        assert!(s.fetch(&r.digest).await.is_err());
        assert!(
            s.publish("../x", "app", "1", "t", b"", BTreeMap::new())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn latest_passed_channels_and_promotion() {
        let s = store("flow");
        for v in ["1", "2", "3"] {
            s.publish("dev", "app", v, "t", v.as_bytes(), BTreeMap::new())
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        assert!(
            s.latest_passed("dev", "app", "Test")
                .await
                .unwrap()
                .is_none()
        );
        s.mark_passed("dev", "app", "1", "Test").await.unwrap();
        s.mark_passed("dev", "app", "2", "Test").await.unwrap();
        let latest = s
            .latest_passed("dev", "app", "Test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.reference.version, "2");

        s.set_channel("dev", "app", "latest", "1", "ann", "first")
            .await
            .unwrap();
        s.set_channel("dev", "app", "latest", "2", "bob", "tests passed")
            .await
            .unwrap();
        let h = s.channel("dev", "app", "latest").await.unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[1].version.as_str(), h[1].actor.as_str()), ("2", "bob"));
        assert!(
            s.set_channel("dev", "app", "latest", "9", "x", "")
                .await
                .is_err()
        );

        let p = s
            .promote("dev", "prod", "app", "2", "cy", "release")
            .await
            .unwrap();
        assert_eq!(p.digest, latest.reference.digest);
        assert_eq!(p.repo, "prod");
        let info = s.version("prod", "app", "2").await.unwrap().unwrap();
        assert_eq!(info.properties["promoted.from"], "dev");
        assert_eq!(info.properties["passed.Test"], "true");
    }
}
