//! An [`ArtifactStore`] over JFrog Artifactory's REST API.
//!
//! Versions live at `REPO/NAME/VERSION/NAME-VERSION` in a generic repository.
//!
//! - publish: `GET /api/storage/...` first (same SHA-256: nothing to do; another one: refused,
//!   versions are immutable), then a checksum deploy (`PUT` with `X-Checksum-Deploy: true` and
//!   `X-Checksum-Sha256`), and only when Artifactory answers 404 (content it has never seen) a
//!   full upload with the checksum header, which Artifactory verifies. Properties go as matrix
//!   parameters (`;k=v`).
//! - fetch by digest: `GET /api/search/checksum?sha256=`, then the download, checked again.
//! - properties: `PUT /api/storage/...?properties=k=v|k2=v2`, `DELETE ...?properties=k`.
//! - "latest that passed stage S": an AQL query on `@passed.S = true`, newest `created` first.
//! - promotion: `POST /api/copy/FROM/PATH?to=/TO/PATH` (Artifactory copies by checksum; nothing
//!   is rebuilt or re-uploaded), then `promoted.*` properties on the copy.
//!
//! Channels are not an Artifactory concept: [`ArtifactStore::set_channel`] and
//! [`ArtifactStore::channel`] return [`Error::Unsupported`] here (use the local store, or
//! Artifactory's virtual repositories).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::Error;
use crate::artifact::{ArtifactRef, ArtifactStore, ChannelMove, VersionInfo, digest};
use crate::journal::Timestamp;

/// Artifactory as an artifact repository.
#[derive(Clone)]
pub struct ArtifactoryStore {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for ArtifactoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never shown.
        f.debug_struct("ArtifactoryStore")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn err(artifact: &str, message: impl Into<String>) -> Error {
    Error::Artifact {
        artifact: artifact.to_owned(),
        message: message.into(),
    }
}

fn transport(artifact: &str, e: &reqwest::Error) -> Error {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "<url>");
    }
    err(artifact, format!("Artifactory request failed: {msg}"))
}

/// Escapes `,|=;\` in property keys and values, as Artifactory expects.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | '|' | '=' | ';' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn path(name: &str, version: &str) -> String {
    format!("{name}/{version}/{name}-{version}")
}

impl ArtifactoryStore {
    /// A store at `base` (e.g. `https://host/artifactory`), authenticating with an access token
    /// (`Authorization: Bearer`) when given.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("pipeline-core/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| err(base, format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, what: &str, r: reqwest::RequestBuilder) -> Result<(u16, String), Error> {
        let resp = r.send().await.map_err(|e| transport(what, &e))?;
        let code = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| transport(what, &e))?;
        Ok((code, body))
    }

    async fn storage(&self, repo: &str, p: &str) -> Result<Option<Value>, Error> {
        let what = format!("{repo}/{p}");
        let url = format!("{}/api/storage/{repo}/{p}", self.base);
        let (code, body) = self
            .send(&what, self.req(reqwest::Method::GET, &url))
            .await?;
        match code {
            200 => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| err(&what, format!("unreadable storage info: {e}"))),
            404 => Ok(None),
            c => Err(err(&what, format!("Artifactory answered {c}"))),
        }
    }

    async fn properties(&self, repo: &str, p: &str) -> Result<BTreeMap<String, String>, Error> {
        let what = format!("{repo}/{p}");
        let url = format!("{}/api/storage/{repo}/{p}?properties", self.base);
        let (code, body) = self
            .send(&what, self.req(reqwest::Method::GET, &url))
            .await?;
        if code == 404 {
            return Ok(BTreeMap::new());
        }
        if code != 200 {
            return Err(err(&what, format!("Artifactory answered {code}")));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| err(&what, format!("unreadable properties: {e}")))?;
        Ok(v.get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, vs)| {
                        let first = vs
                            .as_array()
                            .and_then(|a| a.first())
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        (k.clone(), first.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn info(
        repo: &str,
        name: &str,
        version: &str,
        storage: &Value,
        props: BTreeMap<String, String>,
    ) -> VersionInfo {
        let sha = storage["checksums"]["sha256"].as_str().unwrap_or_default();
        let created = storage["created"]
            .as_str()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map_or(Timestamp(0), |t| Timestamp(t.timestamp_millis()));
        VersionInfo {
            reference: ArtifactRef {
                repo: repo.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
                digest: format!("sha256:{sha}"),
                size: storage["size"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| storage["size"].as_u64())
                    .unwrap_or(0),
                media_type: storage["mimeType"]
                    .as_str()
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
            },
            properties: props,
            created_at: created,
        }
    }
}

#[async_trait]
impl ArtifactStore for ArtifactoryStore {
    async fn publish(
        &self,
        repo: &str,
        name: &str,
        version: &str,
        media_type: &str,
        data: &[u8],
        properties: BTreeMap<String, String>,
    ) -> Result<ArtifactRef, Error> {
        let p = path(name, version);
        let what = format!("{repo}/{name}@{version}");
        let d = digest(data);
        let hex = d.trim_start_matches("sha256:").to_owned();
        if let Some(existing) = self.storage(repo, &p).await? {
            if existing["checksums"]["sha256"].as_str() == Some(hex.as_str()) {
                let props = self.properties(repo, &p).await?;
                return Ok(Self::info(repo, name, version, &existing, props).reference);
            }
            return Err(err(
                &what,
                "this version is already published with another digest; versions are immutable",
            ));
        }
        let mut matrix = String::new();
        for (k, v) in &properties {
            let _ = write!(matrix, ";{}={}", escape(k), escape(v));
        }
        let url = format!("{}/{repo}/{p}{matrix}", self.base);
        // Checksum deploy: no transfer when Artifactory already has the content.
        let (code, mut body) = self
            .send(
                &what,
                self.req(reqwest::Method::PUT, &url)
                    .header("X-Checksum-Deploy", "true")
                    .header("X-Checksum-Sha256", &hex),
            )
            .await?;
        if code == 404 {
            let (c, b) = self
                .send(
                    &what,
                    self.req(reqwest::Method::PUT, &url)
                        .header("X-Checksum-Sha256", &hex)
                        .header(reqwest::header::CONTENT_TYPE, media_type)
                        .body(data.to_vec()),
                )
                .await?;
            if c == 409 {
                return Err(err(&what, "Artifactory refused to overwrite it (409)"));
            }
            if !(200..300).contains(&c) {
                return Err(err(
                    &what,
                    format!("upload failed: Artifactory answered {c}"),
                ));
            }
            body = b;
        } else if !(200..300).contains(&code) {
            return Err(err(
                &what,
                format!("deploy failed: Artifactory answered {code}"),
            ));
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(json!({}));
        if let Some(sha) = v["checksums"]["sha256"].as_str()
            && sha != hex
        {
            return Err(err(
                &what,
                "Artifactory stored another checksum than was sent",
            ));
        }
        Ok(ArtifactRef {
            repo: repo.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            digest: d,
            size: data.len() as u64,
            media_type: media_type.to_owned(),
        })
    }

    async fn fetch(&self, digest_: &str) -> Result<Vec<u8>, Error> {
        let hex = digest_
            .strip_prefix("sha256:")
            .ok_or_else(|| err(digest_, "not a sha256 digest"))?;
        let url = format!("{}/api/search/checksum?sha256={hex}", self.base);
        let (code, body) = self
            .send(digest_, self.req(reqwest::Method::GET, &url))
            .await?;
        if code != 200 {
            return Err(err(
                digest_,
                format!("checksum search: Artifactory answered {code}"),
            ));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| err(digest_, format!("unreadable search result: {e}")))?;
        let storage_uri = v["results"][0]["uri"]
            .as_str()
            .ok_or_else(|| err(digest_, "no artifact has this digest"))?;
        let download = storage_uri.replacen("/api/storage/", "/", 1);
        let resp = self
            .req(reqwest::Method::GET, &download)
            .send()
            .await
            .map_err(|e| transport(digest_, &e))?;
        if !resp.status().is_success() {
            return Err(err(
                digest_,
                format!("download: Artifactory answered {}", resp.status()),
            ));
        }
        let data = resp
            .bytes()
            .await
            .map_err(|e| transport(digest_, &e))?
            .to_vec();
        if digest(&data) != digest_ {
            return Err(err(digest_, "the download does not match its digest"));
        }
        Ok(data)
    }

    async fn version(
        &self,
        repo: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionInfo>, Error> {
        let p = path(name, version);
        let Some(storage) = self.storage(repo, &p).await? else {
            return Ok(None);
        };
        let props = self.properties(repo, &p).await?;
        Ok(Some(Self::info(repo, name, version, &storage, props)))
    }

    async fn set_properties(
        &self,
        repo: &str,
        name: &str,
        version: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let p = path(name, version);
        let what = format!("{repo}/{name}@{version}");
        let url = format!("{}/api/storage/{repo}/{p}", self.base);
        let (set, remove): (Vec<_>, Vec<_>) = properties.iter().partition(|(_, v)| !v.is_empty());
        if !set.is_empty() {
            let value: Vec<String> = set
                .iter()
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            let (code, _) = self
                .send(
                    &what,
                    self.req(reqwest::Method::PUT, &url)
                        .query(&[("properties", value.join("|"))]),
                )
                .await?;
            if !(200..300).contains(&code) {
                return Err(err(
                    &what,
                    format!("setting properties: Artifactory answered {code}"),
                ));
            }
        }
        if !remove.is_empty() {
            let keys: Vec<String> = remove.iter().map(|(k, _)| escape(k)).collect();
            let (code, _) = self
                .send(
                    &what,
                    self.req(reqwest::Method::DELETE, &url)
                        .query(&[("properties", keys.join(","))]),
                )
                .await?;
            if !(200..300).contains(&code) {
                return Err(err(
                    &what,
                    format!("removing properties: Artifactory answered {code}"),
                ));
            }
        }
        Ok(())
    }

    async fn find_latest(
        &self,
        repo: &str,
        name: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Option<VersionInfo>, Error> {
        let what = format!("{repo}/{name}");
        let mut criteria = serde_json::Map::new();
        criteria.insert("repo".into(), json!({"$eq": repo}));
        criteria.insert("path".into(), json!({"$match": format!("{name}/*")}));
        for (k, v) in properties {
            criteria.insert(format!("@{k}"), json!({"$eq": v}));
        }
        let aql = format!(
            "items.find({}).include(\"repo\",\"path\",\"name\",\"created\",\"size\",\"sha256\")\
             .sort({{\"$desc\":[\"created\"]}}).limit(1)",
            Value::Object(criteria)
        );
        let url = format!("{}/api/search/aql", self.base);
        let (code, body) = self
            .send(
                &what,
                self.req(reqwest::Method::POST, &url)
                    .header(reqwest::header::CONTENT_TYPE, "text/plain")
                    .body(aql),
            )
            .await?;
        if code != 200 {
            return Err(err(
                &what,
                format!("AQL search: Artifactory answered {code}"),
            ));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| err(&what, format!("unreadable AQL result: {e}")))?;
        let Some(item) = v["results"].get(0) else {
            return Ok(None);
        };
        // path is NAME/VERSION.
        let version = item["path"]
            .as_str()
            .and_then(|p| p.rsplit('/').next())
            .ok_or_else(|| err(&what, "an AQL result has no path"))?
            .to_owned();
        self.version(repo, name, &version).await
    }

    async fn set_channel(
        &self,
        _repo: &str,
        _name: &str,
        _channel: &str,
        _version: &str,
        _actor: &str,
        _reason: &str,
    ) -> Result<(), Error> {
        Err(Error::Unsupported {
            feature: "channels on the Artifactory backend",
        })
    }

    async fn channel(
        &self,
        _repo: &str,
        _name: &str,
        _channel: &str,
    ) -> Result<Vec<ChannelMove>, Error> {
        Err(Error::Unsupported {
            feature: "channels on the Artifactory backend",
        })
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
        let p = path(name, version);
        let what = format!("{from_repo}/{name}@{version}");
        let src = self
            .version(from_repo, name, version)
            .await?
            .ok_or_else(|| err(&what, "no such version"))?;
        let url = format!("{}/api/copy/{from_repo}/{p}", self.base);
        let (code, body) = self
            .send(
                &what,
                self.req(reqwest::Method::POST, &url)
                    .query(&[("to", format!("/{to_repo}/{p}"))]),
            )
            .await?;
        if code != 200 {
            return Err(err(
                &what,
                format!("copy failed: Artifactory answered {code}: {body}"),
            ));
        }
        let props = BTreeMap::from([
            ("promoted.from".to_owned(), from_repo.to_owned()),
            ("promoted.by".to_owned(), actor.to_owned()),
            ("promoted.reason".to_owned(), reason.to_owned()),
        ]);
        self.set_properties(to_repo, name, version, props).await?;
        Ok(ArtifactRef {
            repo: to_repo.to_owned(),
            ..src.reference
        })
    }
}
