//! The on-disk session cache: like govc's persisted sessions (`GOVC_PERSIST_SESSION`), a
//! later process reuses a logged-in session instead of logging in again.
//!
//! Opt-in ([`ConnectOptions::session_cache`](super::ConnectOptions::session_cache) or
//! `VSPHERE_SESSION_CACHE=<dir>`). One file per (SDK URL, user name), named by the SHA-256 of
//! both, holding **only the session cookie** (never the password). Files are created with mode
//! 0600 (their directory with 0700) by writing a temporary file and renaming it over the old
//! one, so a reader never sees half a cookie. A file that others can read or write is ignored
//! (and replaced at the next login).
//!
//! The client reuses a cached cookie only when the server still knows it (the session
//! manager's `currentSession` is set, the check govc does); otherwise it logs in and rewrites
//! the file. A transparent re-login rewrites it too.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use url::Url;

use crate::Error;
use crate::codec::SecretString;

/// A directory of cached session cookies.
///
/// ```
/// use vsphere_client::client::SessionCache;
/// use vsphere_client::codec::SecretString;
/// # let dir = std::env::temp_dir().join(format!("vsc-doc-{}", std::process::id()));
/// let cache = SessionCache::new(&dir);
/// let url = url::Url::parse("https://vc.example.com/sdk").unwrap();
/// cache.store(&url, "admin", &SecretString::from("\"52a1...\"")).unwrap();
/// let cookie = cache.load(&url, "admin").unwrap().unwrap();
/// assert_eq!(cookie.expose(), "\"52a1...\"");
/// assert!(cache.load(&url, "someone-else").unwrap().is_none());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCache {
    dir: PathBuf,
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCache")
            .field("dir", &self.dir)
            .finish()
    }
}

fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Whether a cookie read from disk may go into a `Cookie` header as it is.
fn plausible_cookie(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 4096
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
}

impl SessionCache {
    /// A cache in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file for (`url`, `username`): `<dir>/<sha256 of "url\nusername">.session`.
    ///
    /// ```
    /// use vsphere_client::client::SessionCache;
    /// let cache = SessionCache::new("/tmp/sessions");
    /// let url = url::Url::parse("https://vc/sdk").unwrap();
    /// let a = cache.path_for(&url, "admin");
    /// assert_ne!(a, cache.path_for(&url, "root"));
    /// assert!(!a.to_string_lossy().contains("admin"));
    /// assert!(a.to_string_lossy().ends_with(".session"));
    /// ```
    pub fn path_for(&self, url: &Url, username: &str) -> PathBuf {
        let key = format!("{}\n{username}", url.as_str());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        let mut name = String::with_capacity(72);
        for b in digest.as_ref() {
            use fmt::Write as _;
            let _ = write!(name, "{b:02x}");
        }
        name.push_str(".session");
        self.dir.join(name)
    }

    /// The cached cookie for (`url`, `username`), if there is a usable one.
    ///
    /// A missing file is `Ok(None)`; so is a file others may read or write (unix), or one whose
    /// content is not a plausible cookie: the next login replaces it.
    pub fn load(&self, url: &Url, username: &str) -> Result<Option<SecretString>, Error> {
        let path = self.path_for(url, username);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read the session cache", &path, e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&path)
                .map_err(|e| io_error("read the session cache", &path, e))?;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "ignoring a session cache file others can access (mode is not 0600)"
                );
                return Ok(None);
            }
        }
        let cookie = text.trim();
        if !plausible_cookie(cookie) {
            tracing::warn!(path = %path.display(), "ignoring a malformed session cache file");
            return Ok(None);
        }
        Ok(Some(SecretString::from(cookie)))
    }

    /// Stores `cookie` for (`url`, `username`): a new file of mode 0600, renamed into place.
    pub fn store(&self, url: &Url, username: &str, cookie: &SecretString) -> Result<(), Error> {
        if !plausible_cookie(cookie.expose()) {
            return Err(Error::InvalidOption {
                option: "session cookie",
                reason: "not a cookie value that can be cached".to_owned(),
            });
        }
        create_private_dir(&self.dir)?;
        let path = self.path_for(url, username);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{nanos}.session", std::process::id()));
        let written = (|| {
            let mut file = create_private_file(&tmp)?;
            file.write_all(cookie.expose().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error("write the session cache", &tmp, e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error("write the session cache", &path, e)
        })
    }

    /// Forgets the session of (`url`, `username`) (after a logout). A missing file is fine.
    pub fn remove(&self, url: &Url, username: &str) -> Result<(), Error> {
        let path = self.path_for(url, username);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error("remove the session cache", &path, e))
            }
            _ => Ok(()),
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| io_error("create the session cache directory", dir, e))
}

fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("vsc-session-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn url() -> Url {
        Url::parse("https://vc.example.com/sdk").unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn files_are_0600_in_a_0700_directory_and_hold_only_the_cookie() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("mode");
        let cache = SessionCache::new(dir.join("nested"));
        cache
            .store(&url(), "admin", &SecretString::from("\"cookie-1\""))
            .unwrap();
        let path = cache.path_for(&url(), "admin");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(cache.dir()).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "\"cookie-1\"\n");
        // Rewriting replaces atomically and leaves no temporary file behind.
        cache
            .store(&url(), "admin", &SecretString::from("\"cookie-2\""))
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(
            cache.load(&url(), "admin").unwrap().unwrap().expose(),
            "\"cookie-2\""
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("loose");
        let cache = SessionCache::new(&dir);
        cache
            .store(&url(), "admin", &SecretString::from("\"c\""))
            .unwrap();
        let path = cache.path_for(&url(), "admin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.load(&url(), "admin").unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_malformed_files_are_no_session() {
        let dir = temp_dir("malformed");
        let cache = SessionCache::new(&dir);
        assert!(cache.load(&url(), "admin").unwrap().is_none());
        cache
            .store(&url(), "admin", &SecretString::from("\"c\""))
            .unwrap();
        std::fs::write(cache.path_for(&url(), "admin"), "a b\r\nInjected: x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = cache.path_for(&url(), "admin");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(cache.load(&url(), "admin").unwrap().is_none());
        let bad = cache.store(&url(), "admin", &SecretString::from("a\nb"));
        assert!(matches!(bad, Err(Error::InvalidOption { .. })));
        cache.remove(&url(), "admin").unwrap();
        cache.remove(&url(), "admin").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_key_separates_urls_and_users_and_debug_shows_no_cookie() {
        let cache = SessionCache::new("/x");
        let other = Url::parse("https://vc2.example.com/sdk").unwrap();
        assert_ne!(
            cache.path_for(&url(), "admin"),
            cache.path_for(&other, "admin")
        );
        assert_eq!(
            cache.path_for(&url(), "admin"),
            cache.path_for(&url(), "admin")
        );
        assert_eq!(format!("{cache:?}"), "SessionCache { dir: \"/x\" }");
    }
}
