//! The datastore side of VM work: browsing (`SearchDatastore_Task`,
//! `SearchDatastoreSubFolders_Task`, typed results) and file transfer through the
//! `/folder/<path>?dcPath=<datacenter>&dsName=<datastore>` HTTP endpoint with the session
//! cookie, streamed in both directions.

use std::fmt;
use std::path::Path;

use url::Url;

use super::transport::FileRequest;
use super::{Client, DatastoreHandle};
use crate::Error;
use crate::codec::{DateTime, ManagedObjectReference, Obj, Poly};
use crate::mo::HostDatastoreBrowser;
use crate::types::{
    FileInfo, FileQuery, FileQueryFlags, FloppyImageFileInfo, FolderFileInfo, FolderFileQuery,
    HostDatastoreBrowserSearchResults, HostDatastoreBrowserSearchSpec, IsoImageFileInfo,
    VmConfigFileInfo, VmDiskFileInfo, VmDiskFileQuery, VmLogFileInfo, VmNvramFileInfo,
    VmSnapshotFileInfo,
};

/// A path on a datastore, `[datastore] dir/file`, as vSphere writes them.
///
/// ```
/// use vsphere_client::client::DatastorePath;
/// let p = DatastorePath::parse("[LocalDS_0] vm1/vm1.vmdk").unwrap();
/// assert_eq!(p.datastore(), "LocalDS_0");
/// assert_eq!(p.path(), "vm1/vm1.vmdk");
/// assert_eq!(p.to_string(), "[LocalDS_0] vm1/vm1.vmdk");
/// assert_eq!(DatastorePath::new("ds", "/a//b/").unwrap().path(), "a/b");
/// assert!(DatastorePath::parse("vm1/vm1.vmdk").is_err());
/// assert!(DatastorePath::new("ds", "a/../../etc").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DatastorePath {
    datastore: String,
    path: String,
}

fn bad_path(reason: &str) -> Error {
    Error::InvalidOption {
        option: "datastore path",
        reason: reason.to_owned(),
    }
}

impl DatastorePath {
    /// `path` (relative to the datastore's root; empty for the root) on `datastore`.
    /// Separators are normalised; `.` and `..` components are refused.
    pub fn new(datastore: &str, path: &str) -> Result<Self, Error> {
        if datastore.is_empty() || datastore.contains(['[', ']']) {
            return Err(bad_path("the datastore name is empty or has brackets"));
        }
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if parts.iter().any(|p| *p == "." || *p == "..") {
            return Err(bad_path("`.` and `..` are not allowed"));
        }
        if path.chars().any(char::is_control) {
            return Err(bad_path("control characters are not allowed"));
        }
        Ok(Self {
            datastore: datastore.to_owned(),
            path: parts.join("/"),
        })
    }

    /// Parses `[datastore] path`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let rest = text
            .trim()
            .strip_prefix('[')
            .ok_or_else(|| bad_path("expected `[datastore] path`"))?;
        let (ds, path) = rest
            .split_once(']')
            .ok_or_else(|| bad_path("expected `[datastore] path`"))?;
        Self::new(ds, path.trim_start())
    }

    /// The datastore's name.
    pub fn datastore(&self) -> &str {
        &self.datastore
    }

    /// The path inside the datastore (no leading `/`; empty for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `path` below this one.
    pub fn join(&self, path: &str) -> Result<Self, Error> {
        Self::new(&self.datastore, &format!("{}/{path}", self.path))
    }
}

impl fmt::Display for DatastorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.datastore, self.path)
    }
}

/// What kind of file a search found (from the `FileInfo` subtype the server sent).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatastoreFileKind {
    /// A folder.
    Folder,
    /// A virtual disk descriptor (`.vmdk`), with its capacity in KiB when known.
    VmDisk {
        /// The capacity in KiB.
        capacity_kb: Option<i64>,
    },
    /// A VM configuration (`.vmx`).
    VmConfig,
    /// A VM log.
    VmLog,
    /// A VM's NVRAM.
    VmNvram,
    /// A VM snapshot file.
    VmSnapshot,
    /// An ISO image.
    IsoImage,
    /// A floppy image.
    FloppyImage,
    /// Any other file (the plain `FileInfo`, or a type this build does not know).
    File,
}

/// One file a datastore search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatastoreFile {
    /// The folder it is in (`[ds] dir`).
    pub folder: DatastorePath,
    /// Its name in that folder.
    pub name: String,
    /// What it is.
    pub kind: DatastoreFileKind,
    /// Its size in bytes, when the server sent it.
    pub size: Option<i64>,
    /// Its modification time, when the server sent it.
    pub modified: Option<DateTime>,
}

impl DatastoreFile {
    /// The file's own datastore path.
    pub fn path(&self) -> Result<DatastorePath, Error> {
        self.folder.join(&self.name)
    }
}

fn kind_of(file: &Poly<FileInfo>) -> DatastoreFileKind {
    if file.downcast_ref::<FolderFileInfo>().is_some() {
        DatastoreFileKind::Folder
    } else if let Some(d) = file.downcast_ref::<VmDiskFileInfo>() {
        DatastoreFileKind::VmDisk {
            capacity_kb: d.capacity_kb,
        }
    } else if file.downcast_ref::<VmConfigFileInfo>().is_some() {
        DatastoreFileKind::VmConfig
    } else if file.downcast_ref::<VmLogFileInfo>().is_some() {
        DatastoreFileKind::VmLog
    } else if file.downcast_ref::<VmNvramFileInfo>().is_some() {
        DatastoreFileKind::VmNvram
    } else if file.downcast_ref::<VmSnapshotFileInfo>().is_some() {
        DatastoreFileKind::VmSnapshot
    } else if file.downcast_ref::<IsoImageFileInfo>().is_some() {
        DatastoreFileKind::IsoImage
    } else if file.downcast_ref::<FloppyImageFileInfo>().is_some() {
        DatastoreFileKind::FloppyImage
    } else {
        DatastoreFileKind::File
    }
}

/// The typed files of search results (a folder path the server sent that does not parse is an
/// error, never silently dropped).
pub fn search_results_files(
    results: &HostDatastoreBrowserSearchResults,
) -> Result<Vec<DatastoreFile>, Error> {
    let folder = DatastorePath::parse(results.folder_path.as_deref().unwrap_or_default())?;
    Ok(results
        .file
        .iter()
        .map(|f| {
            let info = f.base();
            DatastoreFile {
                folder: folder.clone(),
                name: info.path.clone(),
                kind: kind_of(f),
                size: info.file_size,
                modified: info.modification,
            }
        })
        .collect())
}

/// What to look for when browsing a datastore.
///
/// ```
/// use vsphere_client::client::BrowseSpec;
/// let spec = BrowseSpec::new().pattern("*.vmdk").recursive(true);
/// assert_eq!(spec.patterns(), ["*.vmdk"]);
/// assert!(spec.is_recursive());
/// ```
#[derive(Clone, Debug, Default)]
pub struct BrowseSpec {
    patterns: Vec<String>,
    recursive: bool,
}

impl BrowseSpec {
    /// Every file, this folder only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only names matching `glob` (`*.vmdk`; several patterns: any of them).
    pub fn pattern(mut self, glob: &str) -> Self {
        self.patterns.push(glob.to_owned());
        self
    }

    /// Also the subfolders, all the way down (`SearchDatastoreSubFolders_Task`).
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// The name patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether subfolders are searched.
    pub fn is_recursive(&self) -> bool {
        self.recursive
    }

    /// The wire spec: folders, disks and every other file, with type, size and modification
    /// (`*` when no pattern was given).
    pub fn to_search_spec(&self) -> HostDatastoreBrowserSearchSpec {
        HostDatastoreBrowserSearchSpec {
            query: vec![
                Poly::new(FolderFileQuery::default()),
                Poly::new(VmDiskFileQuery::default()),
                Poly::new(FileQuery::default()),
            ],
            details: Some(Obj::new(FileQueryFlags {
                file_type: true,
                file_size: true,
                modification: true,
                file_owner: false,
                ..FileQueryFlags::default()
            })),
            // No pattern means every file; said explicitly, as some servers (govmomi's
            // simulator) match nothing against an empty list.
            match_pattern: if self.patterns.is_empty() {
                vec!["*".to_owned()]
            } else {
                self.patterns.clone()
            },
            ..HostDatastoreBrowserSearchSpec::default()
        }
    }
}

/// The `/folder` URL of `path` on datastore `ds_name` in the datacenter at `dc_path`.
///
/// ```
/// use vsphere_client::client::{DatastorePath, folder_url};
/// let sdk = url::Url::parse("https://vc.example.com/sdk").unwrap();
/// let p = DatastorePath::new("ds 1", "dir/my file.iso").unwrap();
/// assert_eq!(
///     folder_url(&sdk, "DC0", &p).as_str(),
///     "https://vc.example.com/folder/dir/my%20file.iso?dcPath=DC0&dsName=ds+1"
/// );
/// ```
pub fn folder_url(sdk: &Url, dc_path: &str, path: &DatastorePath) -> Url {
    let mut url = sdk.clone();
    url.set_path("/folder");
    url.set_query(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.extend(path.path().split('/').filter(|s| !s.is_empty()));
    }
    url.query_pairs_mut()
        .append_pair("dcPath", dc_path)
        .append_pair("dsName", path.datastore());
    url
}

impl DatastoreHandle<'_> {
    /// The datastore's name.
    pub async fn name(&self) -> Result<String, Error> {
        let p = self
            .client
            .properties(self.datastore.reference(), &["name"])
            .await?;
        p.get("name").ok_or(Error::MissingResult {
            method: "Datastore.name",
        })
    }

    /// The root of this datastore as a [`DatastorePath`].
    pub async fn root(&self) -> Result<DatastorePath, Error> {
        DatastorePath::new(&self.name().await?, "")
    }

    /// Lists `folder` (a path inside this datastore, `""` for the root) by `spec`:
    /// `SearchDatastore_Task`, or `SearchDatastoreSubFolders_Task` when recursive, on the
    /// datastore's browser. A missing folder is the typed `FileNotFound` task fault.
    pub async fn browse(
        &self,
        folder: &str,
        spec: &BrowseSpec,
    ) -> Result<Vec<DatastoreFile>, Error> {
        let p = self
            .client
            .properties(self.datastore.reference(), &["name", "browser"])
            .await?;
        let name: String = p.get("name").ok_or(Error::MissingResult {
            method: "Datastore.name",
        })?;
        let browser: ManagedObjectReference = p.get("browser").ok_or(Error::MissingResult {
            method: "Datastore.browser",
        })?;
        let browser = HostDatastoreBrowser::from_reference(browser);
        let path = DatastorePath::new(&name, folder)?.to_string();
        let search = spec.to_search_spec();
        let mut files = Vec::new();
        if spec.is_recursive() {
            let t = browser
                .search_datastore_sub_folders_task(self.client, &path, Some(&search))
                .await?;
            for results in self.client.wait_task(t).await? {
                files.extend(search_results_files(&results)?);
            }
        } else {
            let t = browser
                .search_datastore_task(self.client, &path, Some(&search))
                .await?;
            files = search_results_files(&self.client.wait_task(t).await?)?;
        }
        Ok(files)
    }

    /// The `dcPath` of this datastore's datacenter (its inventory path without the leading
    /// `/`, `Folder/DC0` for a datacenter in a folder).
    pub async fn datacenter_path(&self) -> Result<String, Error> {
        let mut names = Vec::new();
        let mut current = self.datastore.reference().clone();
        let mut in_datacenter = false;
        // Up the parent chain: past the datastore folders to the datacenter, then its folders.
        for _ in 0..64 {
            let p = self
                .client
                .properties(&current, &["name", "parent"])
                .await?;
            if current.type_ == "Datacenter" {
                in_datacenter = true;
            }
            let parent: Option<ManagedObjectReference> = p.get("parent");
            if in_datacenter {
                if parent.is_none() {
                    break; // the root folder: not part of the path
                }
                names.push(p.get::<String>("name").unwrap_or_default());
            }
            match parent {
                Some(next) => current = next,
                None => break,
            }
        }
        if !in_datacenter {
            return Err(Error::NotFound {
                kind: "datacenter",
                path: format!("above {}", self.datastore.reference().value),
            });
        }
        names.reverse();
        Ok(names.join("/"))
    }

    async fn transfer_url(&self, path: &str) -> Result<Url, Error> {
        let ds = DatastorePath::new(&self.name().await?, path)?;
        if ds.path().is_empty() {
            return Err(bad_path("a file path is needed, not the datastore's root"));
        }
        let dc = self.datacenter_path().await?;
        Ok(folder_url(self.client.url(), &dc, &ds))
    }

    /// Uploads the local file `local` to `path` on this datastore (`PUT /folder/...`),
    /// streamed from disk. An expired session is renewed and the upload repeated once.
    pub async fn upload(&self, local: &Path, path: &str) -> Result<u64, Error> {
        let url = self.transfer_url(path).await?;
        let open = || async {
            let file = tokio::fs::File::open(local).await.map_err(|e| Error::Io {
                what: "open the file to upload",
                path: local.display().to_string(),
                source: e,
            })?;
            let len = file
                .metadata()
                .await
                .map_err(|e| Error::Io {
                    what: "read the size of the file to upload",
                    path: local.display().to_string(),
                    source: e,
                })?
                .len();
            Ok::<_, Error>((file, len))
        };
        let mut renewed = false;
        loop {
            let (file, len) = open().await?;
            let (cookie, generation) = self.client.inner.session_state();
            let request = FileRequest {
                url: &url,
                cookie: cookie.as_ref(),
                timeout: self.client.inner.timeout,
            };
            let status = self
                .client
                .inner
                .transport
                .put_file(request, file, len)
                .await?;
            match status {
                200 | 201 | 204 => return Ok(len),
                401 | 403 if !renewed && self.client.has_credentials() => {
                    self.client.renew_since(generation).await?;
                    renewed = true;
                }
                status => {
                    return Err(Error::HttpStatus {
                        what: "upload",
                        status,
                    });
                }
            }
        }
    }

    /// Downloads `path` on this datastore into `sink`, streamed chunk by chunk; returns the
    /// bytes written. A missing file is `Error::HttpStatus { status: 404, .. }`.
    pub async fn download_to(
        &self,
        path: &str,
        sink: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> Result<u64, Error> {
        let url = self.transfer_url(path).await?;
        let mut renewed = false;
        loop {
            let (cookie, generation) = self.client.inner.session_state();
            let request = FileRequest {
                url: &url,
                cookie: cookie.as_ref(),
                timeout: self.client.inner.timeout,
            };
            let (status, written) = self
                .client
                .inner
                .transport
                .get_to(request, &mut *sink)
                .await?;
            match status {
                200 => return Ok(written),
                401 | 403 if !renewed && self.client.has_credentials() => {
                    self.client.renew_since(generation).await?;
                    renewed = true;
                }
                status => {
                    return Err(Error::HttpStatus {
                        what: "download",
                        status,
                    });
                }
            }
        }
    }

    /// Downloads `path` on this datastore to the local file `local`: written to a temporary
    /// file beside it and renamed into place once complete, so a failed download never leaves
    /// a partial file (nor destroys an existing one).
    pub async fn download(&self, path: &str, local: &Path) -> Result<u64, Error> {
        let io = |what: &'static str, p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| Error::Io {
                what,
                path: p,
                source: e,
            }
        };
        let file_name = local
            .file_name()
            .ok_or_else(|| bad_path("the local path has no file name"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".part-{}", std::process::id()));
        let tmp = local.with_file_name(tmp_name);
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io("create the download file", &tmp))?;
        let result = self.download_to(path, &mut file).await;
        drop(file);
        match result {
            Ok(n) => {
                tokio::fs::rename(&tmp, local)
                    .await
                    .map_err(io("move the downloaded file into place", local))?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }
}

impl Client {
    /// The datastore named `name` (through the finder: a path, a glob or a name).
    pub async fn datastore_by_name(&self, name: &str) -> Result<DatastoreHandle<'_>, Error> {
        let finder = self.finder().await?;
        let found = finder.datastore(Some(name))?;
        Ok(self.datastore(found.reference.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FolderFileInfo, VmDiskFileInfo};

    #[test]
    fn datastore_paths_parse_and_refuse_escapes() {
        let p = DatastorePath::parse("[ds1]   a/b").unwrap();
        assert_eq!((p.datastore(), p.path()), ("ds1", "a/b"));
        assert_eq!(p.join("c.vmdk").unwrap().to_string(), "[ds1] a/b/c.vmdk");
        assert_eq!(DatastorePath::parse("[ds1]").unwrap().path(), "");
        for bad in ["", "ds1 a", "[ds1 a", "[] a", "[ds1] ../x", "[ds1] a/./b"] {
            assert!(DatastorePath::parse(bad).is_err(), "{bad}");
        }
        assert!(DatastorePath::new("ds", "a\nb").is_err());
    }

    #[test]
    fn search_results_become_typed_files() {
        let mut folder = FolderFileInfo::default();
        folder.file_info.path = "vm1".into();
        let mut disk = VmDiskFileInfo {
            capacity_kb: Some(1024),
            ..VmDiskFileInfo::default()
        };
        disk.file_info.path = "disk.vmdk".into();
        disk.file_info.file_size = Some(512);
        let plain = FileInfo {
            path: "notes.txt".into(),
            file_size: Some(3),
            ..FileInfo::default()
        };
        let results = HostDatastoreBrowserSearchResults {
            folder_path: Some("[LocalDS_0] dir".into()),
            file: vec![Poly::new(folder), Poly::new(disk), Poly::new(plain)],
            ..HostDatastoreBrowserSearchResults::default()
        };
        let files = search_results_files(&results).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].kind, DatastoreFileKind::Folder);
        assert_eq!(
            files[1].kind,
            DatastoreFileKind::VmDisk {
                capacity_kb: Some(1024)
            }
        );
        assert_eq!(files[1].size, Some(512));
        assert_eq!(files[2].kind, DatastoreFileKind::File);
        assert_eq!(
            files[2].path().unwrap().to_string(),
            "[LocalDS_0] dir/notes.txt"
        );
        let bad = HostDatastoreBrowserSearchResults {
            folder_path: Some("no brackets".into()),
            ..HostDatastoreBrowserSearchResults::default()
        };
        assert!(search_results_files(&bad).is_err());
    }

    #[test]
    fn the_search_spec_asks_for_folders_disks_and_files_with_details() {
        let spec = BrowseSpec::new().pattern("*.vmdk").to_search_spec();
        assert_eq!(spec.query.len(), 3);
        assert_eq!(spec.match_pattern, ["*.vmdk"]);
        let details = spec.details.unwrap();
        assert!(details.file_size && details.file_type && details.modification);
        assert_eq!(BrowseSpec::new().to_search_spec().match_pattern, ["*"]);
    }

    #[test]
    fn folder_urls_encode_the_path_and_the_query() {
        let sdk = Url::parse("http://127.0.0.1:8989/sdk").unwrap();
        let p = DatastorePath::new("LocalDS_0", "a b/c#d?.txt").unwrap();
        let u = folder_url(&sdk, "Folder 1/DC0", &p);
        assert_eq!(u.path(), "/folder/a%20b/c%23d%3F.txt");
        let q: Vec<_> = u.query_pairs().collect();
        assert_eq!(q[0].1, "Folder 1/DC0");
        assert_eq!(q[1].1, "LocalDS_0");
    }
}
