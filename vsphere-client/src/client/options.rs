//! Where and how to connect: [`ConnectOptions`], from a URL, explicit credentials or the
//! environment (`VSPHERE_URL`, `VSPHERE_USERNAME`, `VSPHERE_PASSWORD`, `VSPHERE_INSECURE`,
//! `VSPHERE_THUMBPRINT`, `VSPHERE_SESSION_CACHE`, `VSPHERE_STS_URL`; the same habits as
//! govc's `GOVC_*`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::transport::{Thumbprint, TlsPolicy};
use crate::Error;
use crate::codec::SecretString;

/// The default timeout of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The default keepalive interval (vCenter's idle session timeout is 30 minutes).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10 * 60);

/// A user name and password. The password never appears in `Debug` output.
#[derive(Clone)]
pub struct Credentials {
    /// The user (`administrator@vsphere.local`).
    pub username: String,
    /// The password.
    pub password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything [`Client::connect`](super::Client::connect) needs.
///
/// ```
/// use vsphere_client::client::ConnectOptions;
/// let o = ConnectOptions::new("https://user:p%40ss@vc.example.com/sdk").unwrap();
/// assert_eq!(o.url().as_str(), "https://vc.example.com/sdk");
/// assert_eq!(o.credentials().unwrap().password.expose(), "p@ss");
/// assert!(!format!("{o:?}").contains("p@ss"));
/// // A bare host name means https://host/sdk, as with govc.
/// assert_eq!(ConnectOptions::new("vc1").unwrap().url().as_str(), "https://vc1/sdk");
/// ```
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    url: Url,
    credentials: Option<Credentials>,
    tls: TlsPolicy,
    timeout: Duration,
    keepalive: Option<Duration>,
    session_cache: Option<PathBuf>,
    sts: Option<Url>,
}

fn invalid(option: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        option,
        reason: reason.into(),
    }
}

/// Decodes `%XX` escapes (URL user info); anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_bool(option: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => Err(invalid(
            option,
            "expected 1/0, true/false, yes/no or on/off",
        )),
    }
}

impl ConnectOptions {
    /// Options for `url`: `https://user:pass@host/sdk`, `https://host`, or a bare `host`
    /// (meaning `https://host/sdk`). User info in the URL (percent-encoded) becomes the
    /// credentials and is removed from the URL.
    pub fn new(url: &str) -> Result<Self, Error> {
        let text = url.trim();
        if text.is_empty() {
            return Err(invalid("url", "empty"));
        }
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("https://{text}")
        };
        // The parse error never echoes the URL (it may hold a password).
        let mut url = Url::parse(&with_scheme).map_err(|e| invalid("url", e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid("url", "the scheme must be https (or http)"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("url", "no host"));
        }
        let credentials = if url.username().is_empty() {
            None
        } else {
            Some(Credentials {
                username: percent_decode(url.username()),
                password: SecretString::from(percent_decode(url.password().unwrap_or(""))),
            })
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if url.path().is_empty() || url.path() == "/" {
            url.set_path("/sdk");
        }
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self {
            url,
            credentials,
            tls: TlsPolicy::Verify,
            timeout: DEFAULT_TIMEOUT,
            keepalive: Some(DEFAULT_KEEPALIVE),
            session_cache: None,
            sts: None,
        })
    }

    /// Options from the environment: `VSPHERE_URL` (required), `VSPHERE_USERNAME` and
    /// `VSPHERE_PASSWORD` (override the URL's user info), `VSPHERE_INSECURE` (`1`/`true`
    /// skips certificate verification), `VSPHERE_THUMBPRINT` (pins the certificate),
    /// `VSPHERE_SESSION_CACHE` (a directory: reuse sessions across processes, see
    /// [`ConnectOptions::session_cache`]), `VSPHERE_STS_URL` (log in with a SAML token from
    /// this STS, see [`ConnectOptions::login_by_token`]; a path such as
    /// `/sts/STSService/vsphere.local` is taken on the SDK's host).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`ConnectOptions::from_env`] over any variable lookup (for tests and config files).
    ///
    /// ```
    /// use vsphere_client::client::ConnectOptions;
    /// let o = ConnectOptions::from_lookup(|k| match k {
    ///     "VSPHERE_URL" => Some("vc.example.com".into()),
    ///     "VSPHERE_USERNAME" => Some("admin".into()),
    ///     "VSPHERE_PASSWORD" => Some("secret".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(o.credentials().unwrap().username, "admin");
    /// ```
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let url = get("VSPHERE_URL").ok_or_else(|| invalid("VSPHERE_URL", "not set"))?;
        let mut o = Self::new(&url)?;
        let user = get("VSPHERE_USERNAME").filter(|s| !s.is_empty());
        let pass = get("VSPHERE_PASSWORD");
        match (user, pass) {
            (Some(u), Some(p)) => o = o.credentials_from(u, p),
            (Some(u), None) => {
                let p = o
                    .credentials
                    .take()
                    .map_or_else(|| SecretString::from(""), |c| c.password);
                o.credentials = Some(Credentials {
                    username: u,
                    password: p,
                });
            }
            (None, Some(p)) => match o.credentials.as_mut() {
                Some(c) => c.password = SecretString::from(p),
                None => return Err(invalid("VSPHERE_PASSWORD", "set without a user name")),
            },
            (None, None) => {}
        }
        if let Some(v) = get("VSPHERE_INSECURE")
            && parse_bool("VSPHERE_INSECURE", &v)?
        {
            o.tls = TlsPolicy::DangerAcceptInvalidCerts;
        }
        if let Some(t) = get("VSPHERE_THUMBPRINT").filter(|s| !s.trim().is_empty()) {
            o.tls = TlsPolicy::Pinned(Thumbprint::parse(&t)?);
        }
        if let Some(dir) = get("VSPHERE_SESSION_CACHE").filter(|s| !s.trim().is_empty()) {
            o.session_cache = Some(PathBuf::from(dir.trim()));
        }
        if let Some(sts) = get("VSPHERE_STS_URL").filter(|s| !s.trim().is_empty()) {
            let sts = o
                .url
                .join(sts.trim())
                .map_err(|e| invalid("VSPHERE_STS_URL", e.to_string()))?;
            o.sts = Some(sts);
        }
        Ok(o)
    }

    /// Logs in as `username` with `password` (replacing credentials from the URL).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Sets the credentials.
    pub fn credentials_from(
        mut self,
        username: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        self.credentials = Some(Credentials {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// The SOAP endpoint (`https://host/sdk`), without credentials.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The certificate policy.
    pub fn tls(&self) -> &TlsPolicy {
        &self.tls
    }

    /// Sets the certificate policy.
    pub fn with_tls(mut self, tls: TlsPolicy) -> Self {
        self.tls = tls;
        self
    }

    /// Skips certificate verification when `insecure` (the `--insecure` flag); leaves the
    /// policy alone otherwise.
    pub fn insecure(mut self, insecure: bool) -> Self {
        if insecure {
            self.tls = TlsPolicy::DangerAcceptInvalidCerts;
        }
        self
    }

    /// The timeout of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the timeout of one call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The keepalive interval (`None`: no keepalive).
    pub fn keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    /// Sets the keepalive interval (`None` turns it off).
    pub fn with_keepalive(mut self, every: Option<Duration>) -> Self {
        self.keepalive = every;
        self
    }

    /// Caches the session cookie in `dir` (one file of mode 0600 per URL and user; see
    /// [`SessionCache`](super::SessionCache)): a later [`Client::connect`](super::Client::connect)
    /// with the same URL and user reuses the session while the server still knows it, and logs
    /// in (rewriting the file) otherwise. Off by default; `VSPHERE_SESSION_CACHE` sets it too.
    ///
    /// ```
    /// use vsphere_client::client::ConnectOptions;
    /// let o = ConnectOptions::new("https://u:p@vc/sdk").unwrap().session_cache("/tmp/vsc");
    /// assert_eq!(o.session_cache_dir(), Some(std::path::Path::new("/tmp/vsc")));
    /// ```
    pub fn session_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.session_cache = Some(dir.into());
        self
    }

    /// Logs in with a SAML bearer token instead of the password: the credentials go to the
    /// Security Token Service at `sts` (WS-Trust `Issue`), and the token to `LoginByToken`.
    /// A session that expires is renewed the same way, with a fresh token.
    /// [`default_sts_url`](super::default_sts_url) gives vCenter's usual STS address.
    ///
    /// ```
    /// use vsphere_client::client::{ConnectOptions, default_sts_url};
    /// let o = ConnectOptions::new("https://u:p@vc/sdk").unwrap();
    /// let sts = default_sts_url(o.url());
    /// let o = o.login_by_token(sts);
    /// assert_eq!(o.sts_url().unwrap().path(), "/sts/STSService/vsphere.local");
    /// ```
    pub fn login_by_token(mut self, sts: Url) -> Self {
        self.sts = Some(sts);
        self
    }

    /// The STS to get login tokens from, if token login is on.
    pub fn sts_url(&self) -> Option<&Url> {
        self.sts.as_ref()
    }

    /// The session cache directory, if the cache is on.
    pub fn session_cache_dir(&self) -> Option<&Path> {
        self.session_cache.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn url_user_info_becomes_credentials_and_leaves_the_url() {
        let o = ConnectOptions::new("https://root:s%3Acret@esx1:8443/sdk").unwrap();
        let c = o.credentials().unwrap();
        assert_eq!(c.username, "root");
        assert_eq!(c.password.expose(), "s:cret");
        assert_eq!(o.url().as_str(), "https://esx1:8443/sdk");
        let debug = format!("{o:?}");
        assert!(
            !debug.contains("s:cret") && !debug.contains("s%3Acret"),
            "{debug}"
        );
    }

    #[test]
    fn bad_urls_are_typed_errors_without_the_password() {
        for bad in [
            "",
            "ftp://h/sdk",
            "https://u:hunter2@/sdk",
            "https://u:hunter2@[::1/sdk",
        ] {
            let e = ConnectOptions::new(bad).unwrap_err();
            assert!(
                matches!(e, Error::InvalidOption { option: "url", .. }),
                "{bad}: {e}"
            );
            assert!(!e.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn environment_variables_override_the_url() {
        let o = ConnectOptions::from_lookup(env(&[
            ("VSPHERE_URL", "https://a:b@vc/sdk"),
            ("VSPHERE_USERNAME", "admin"),
            ("VSPHERE_PASSWORD", "pw"),
            ("VSPHERE_INSECURE", "true"),
            ("VSPHERE_SESSION_CACHE", "/var/cache/vsc"),
            ("VSPHERE_STS_URL", "/sts/STSService/vsphere.local"),
        ]))
        .unwrap();
        assert_eq!(o.session_cache_dir(), Some(Path::new("/var/cache/vsc")));
        assert_eq!(
            o.sts_url().unwrap().as_str(),
            "https://vc/sts/STSService/vsphere.local"
        );
        let c = o.credentials().unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("admin", "pw"));
        assert!(matches!(o.tls(), TlsPolicy::DangerAcceptInvalidCerts));
    }

    #[test]
    fn thumbprint_from_the_environment_pins() {
        let tp = "AB".repeat(20);
        let o =
            ConnectOptions::from_lookup(env(&[("VSPHERE_URL", "vc"), ("VSPHERE_THUMBPRINT", &tp)]))
                .unwrap();
        assert!(matches!(o.tls(), TlsPolicy::Pinned(Thumbprint::Sha1(_))));
    }

    #[test]
    fn bad_environment_is_a_typed_error() {
        let missing = ConnectOptions::from_lookup(env(&[])).unwrap_err();
        assert!(matches!(
            missing,
            Error::InvalidOption {
                option: "VSPHERE_URL",
                ..
            }
        ));
        let insecure = ConnectOptions::from_lookup(env(&[
            ("VSPHERE_URL", "vc"),
            ("VSPHERE_INSECURE", "maybe"),
        ]))
        .unwrap_err();
        assert!(matches!(
            insecure,
            Error::InvalidOption {
                option: "VSPHERE_INSECURE",
                ..
            }
        ));
        let pw_only =
            ConnectOptions::from_lookup(env(&[("VSPHERE_URL", "vc"), ("VSPHERE_PASSWORD", "x")]))
                .unwrap_err();
        assert!(matches!(
            pw_only,
            Error::InvalidOption {
                option: "VSPHERE_PASSWORD",
                ..
            }
        ));
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
