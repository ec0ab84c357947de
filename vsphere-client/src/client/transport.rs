//! The HTTP transport under the client: a small dyn-compatible [`Transport`] trait and its
//! reqwest (rustls) implementation, [`HttpTransport`].
//!
//! TLS verification is on by default (the platform's trust store). [`TlsPolicy`] chooses
//! instead a custom CA, a certificate thumbprint pin (SHA-256 or SHA-1, as `govc` and vCenter
//! print them), or, only by explicit opt-in, no verification at all.
//!
//! Every call has a timeout; dropping the future cancels the request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;

use crate::Error;
use crate::codec::SecretString;
use crate::rpc::BoxFuture;

/// A cookie the server set (`Set-Cookie`), name and value; the value is a secret.
#[derive(Clone, Debug)]
pub struct Cookie {
    /// The cookie's name (`vmware_soap_session`).
    pub name: String,
    /// The cookie's value: a session token, redacted in `Debug`.
    pub value: SecretString,
}

/// What came back from one HTTP exchange.
#[derive(Debug)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response body.
    pub body: String,
    /// The cookies the response set.
    pub cookies: Vec<Cookie>,
}

impl HttpResponse {
    /// The value of cookie `name`, if the response set it.
    pub fn cookie(&self, name: &str) -> Option<&SecretString> {
        self.cookies
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.value)
    }
}

/// One SOAP POST: the envelope, its `SOAPAction` and the session cookie to send.
#[derive(Debug)]
pub struct SoapRequest<'a> {
    /// The endpoint (`https://vc/sdk`).
    pub url: &'a Url,
    /// The `SOAPAction` header (`urn:vim25/8.0.2.0`).
    pub soap_action: &'a str,
    /// The `Cookie` header to send, if any (`vmware_soap_session="..."`).
    pub cookie: Option<&'a SecretString>,
    /// The request envelope.
    pub body: String,
    /// How long the whole exchange may take.
    pub timeout: Duration,
}

/// Moves HTTP requests for the client: one SOAP POST, one GET.
///
/// Dyn-compatible (the client holds an `Arc<dyn Transport>`), so tests and embedders can supply
/// their own. Implementations map HTTP-level failures to [`Error`]; a response with any status
/// is returned as an [`HttpResponse`] (SOAP faults come back with status 500).
pub trait Transport: Send + Sync + fmt::Debug {
    /// POSTs a SOAP envelope.
    fn post_soap<'a>(
        &'a self,
        request: SoapRequest<'a>,
    ) -> BoxFuture<'a, Result<HttpResponse, Error>>;

    /// GETs `url` (`/sdk/vimServiceVersions.xml`).
    fn get<'a>(
        &'a self,
        url: &'a Url,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<HttpResponse, Error>>;

    /// PUTs the local file `file` (of `len` bytes) to `request.url` (a datastore's
    /// `/folder/...` URL), streamed: the file is never held in memory whole. Returns the
    /// HTTP status. The default says the transport cannot.
    fn put_file<'a>(
        &'a self,
        request: FileRequest<'a>,
        file: tokio::fs::File,
        len: u64,
    ) -> BoxFuture<'a, Result<u16, Error>> {
        let _ = (request, file, len);
        Box::pin(async {
            Err(Error::Unsupported {
                feature: "file upload on this transport",
            })
        })
    }

    /// GETs `request.url` and streams the body into `sink` chunk by chunk. Returns the HTTP
    /// status and, on 200, the bytes written (nothing is written for another status). The
    /// default says the transport cannot.
    fn get_to<'a>(
        &'a self,
        request: FileRequest<'a>,
        sink: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> BoxFuture<'a, Result<(u16, u64), Error>> {
        let _ = (request, sink);
        Box::pin(async {
            Err(Error::Unsupported {
                feature: "file download on this transport",
            })
        })
    }
}

/// A file transfer over the session: the URL, the session cookie, and a timeout for the
/// response to start (the transfer itself may take as long as it needs; dropping the future
/// cancels it).
#[derive(Debug)]
pub struct FileRequest<'a> {
    /// The URL (`https://vc/folder/dir/file?dcPath=DC0&dsName=ds1`).
    pub url: &'a Url,
    /// The session cookie to send.
    pub cookie: Option<&'a SecretString>,
    /// How long to wait for the server to start answering.
    pub timeout: Duration,
}

/// A certificate thumbprint to pin: the hash of the server's end-entity certificate (DER).
#[derive(Clone, PartialEq, Eq)]
pub enum Thumbprint {
    /// SHA-256, 32 bytes (vCenter 7+ and `govc about.cert -thumbprint` print it).
    Sha256([u8; 32]),
    /// SHA-1, 20 bytes (older ESXi and vCenter print it).
    Sha1([u8; 20]),
}

impl Thumbprint {
    /// Parses a thumbprint in hex, with or without `:` separators, in either case
    /// (`"AB:CD:..."`); its length tells SHA-1 (20 bytes) from SHA-256 (32 bytes).
    ///
    /// ```
    /// use vsphere_client::client::Thumbprint;
    /// let t = Thumbprint::parse("00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33").unwrap();
    /// assert!(matches!(t, Thumbprint::Sha1(_)));
    /// assert!(Thumbprint::parse("zz").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidOption {
            option: "thumbprint",
            reason: reason.to_owned(),
        };
        let hex: Vec<u8> = text
            .trim()
            .bytes()
            .filter(|b| *b != b':' && *b != b'-' && *b != b' ')
            .collect();
        if !hex.len().is_multiple_of(2) {
            return Err(invalid("an odd number of hex digits"));
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks(2) {
            let digit = |b: u8| char::from(b).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => bytes.push((h * 16 + l) as u8),
                _ => return Err(invalid("not hexadecimal")),
            }
        }
        if let Ok(a) = <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(Self::Sha256(a))
        } else if let Ok(a) = <[u8; 20]>::try_from(bytes.as_slice()) {
            Ok(Self::Sha1(a))
        } else {
            Err(invalid(
                "neither a SHA-256 (32 bytes) nor a SHA-1 (20 bytes) thumbprint",
            ))
        }
    }

    /// The SHA-256 thumbprint of a DER certificate.
    pub fn sha256_of(der: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut a = [0; 32];
        a.copy_from_slice(d.as_ref());
        Self::Sha256(a)
    }

    /// The SHA-1 thumbprint of a DER certificate.
    pub fn sha1_of(der: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let mut a = [0; 20];
        a.copy_from_slice(d.as_ref());
        Self::Sha1(a)
    }

    /// Whether `der` is the pinned certificate.
    pub fn matches(&self, der: &[u8]) -> bool {
        match self {
            Self::Sha256(_) => Self::sha256_of(der) == *self,
            Self::Sha1(_) => Self::sha1_of(der) == *self,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Sha256(a) => a,
            Self::Sha1(a) => a,
        }
    }
}

impl fmt::Display for Thumbprint {
    /// Upper-case hex with `:` separators, as vCenter prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Sha256(_) => "Sha256",
            Self::Sha1(_) => "Sha1",
        };
        write!(f, "{kind}({self})")
    }
}

/// How the transport checks the server's certificate.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// Verify the chain and host name against the platform's trust store (the default).
    #[default]
    Verify,
    /// Verify the chain and host name against these CA certificates (DER) only.
    CustomCa(Vec<CertificateDer<'static>>),
    /// Accept exactly the certificate with this thumbprint, whatever its chain, name or dates
    /// (the handshake signature is still checked, so the server must hold its key).
    Pinned(Thumbprint),
    /// Accept any certificate. Only by explicit opt-in (`--insecure`, `VSPHERE_INSECURE=1`):
    /// anyone on the path can read and change the traffic, credentials included.
    DangerAcceptInvalidCerts,
}

impl TlsPolicy {
    /// A custom-CA policy from PEM text holding one or more certificates.
    pub fn custom_ca_pem(pem: &[u8]) -> Result<Self, Error> {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidOption {
                option: "ca",
                reason: format!("not PEM certificates: {e}"),
            })?;
        if certs.is_empty() {
            return Err(Error::InvalidOption {
                option: "ca",
                reason: "no certificate in the PEM text".to_owned(),
            });
        }
        Ok(Self::CustomCa(certs))
    }
}

/// Accepts the one certificate whose thumbprint is pinned; checks handshake signatures.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Thumbprint,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pin.matches(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate does not match the pinned thumbprint {}",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_error(e: impl fmt::Display) -> Error {
    Error::InvalidOption {
        option: "tls",
        reason: e.to_string(),
    }
}

fn rustls_config(policy: &TlsPolicy) -> Result<Option<rustls::ClientConfig>, Error> {
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)
    };
    match policy {
        TlsPolicy::Verify | TlsPolicy::DangerAcceptInvalidCerts => Ok(None),
        TlsPolicy::CustomCa(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots.add(c.clone()).map_err(tls_error)?;
            }
            Ok(Some(
                builder()?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ))
        }
        TlsPolicy::Pinned(pin) => {
            let verifier = PinnedVerifier {
                pin: pin.clone(),
                provider: provider(),
            };
            Ok(Some(
                builder()?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth(),
            ))
        }
    }
}

/// The reqwest (rustls) transport.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
}

impl HttpTransport {
    /// A transport that checks certificates by `policy`.
    ///
    /// ```
    /// use vsphere_client::client::{HttpTransport, Thumbprint, TlsPolicy};
    /// let pin = Thumbprint::parse(&"AB".repeat(32)).unwrap();
    /// let transport = HttpTransport::new(&TlsPolicy::Pinned(pin)).unwrap();
    /// # let _ = transport;
    /// ```
    pub fn new(policy: &TlsPolicy) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("vsphere-client/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(config) = rustls_config(policy)? {
            builder = builder.tls_backend_preconfigured(config);
        }
        if matches!(policy, TlsPolicy::DangerAcceptInvalidCerts) {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| Error::InvalidOption {
            option: "tls",
            reason: e.without_url().to_string(),
        })?;
        Ok(Self { http })
    }

    /// The configured reqwest client (shared by the REST client, same TLS settings).
    pub(crate) fn reqwest_client(&self) -> &reqwest::Client {
        &self.http
    }
}

fn http_error(e: reqwest::Error, what: &'static str) -> Error {
    if e.is_timeout() {
        Error::Timeout { what }
    } else {
        Error::Http {
            what,
            source: e.without_url(),
        }
    }
}

async fn collect(resp: reqwest::Response, what: &'static str) -> Result<HttpResponse, Error> {
    let status = resp.status().as_u16();
    let cookies = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_set_cookie)
        .collect();
    let body = resp.text().await.map_err(|e| http_error(e, what))?;
    Ok(HttpResponse {
        status,
        body,
        cookies,
    })
}

/// The name and value of a `Set-Cookie` header (attributes dropped; quotes kept, as vCenter
/// expects them back verbatim).
pub(crate) fn parse_set_cookie(header: &str) -> Option<Cookie> {
    let pair = header.split(';').next()?.trim();
    let (name, value) = pair.split_once('=')?;
    Some(Cookie {
        name: name.trim().to_owned(),
        value: SecretString::from(value.trim()),
    })
}

impl Transport for HttpTransport {
    fn post_soap<'a>(
        &'a self,
        request: SoapRequest<'a>,
    ) -> BoxFuture<'a, Result<HttpResponse, Error>> {
        Box::pin(async move {
            let mut req = self
                .http
                .post(request.url.clone())
                .timeout(request.timeout)
                .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .header("SOAPAction", request.soap_action)
                .body(request.body);
            if let Some(cookie) = request.cookie {
                req = req.header(
                    reqwest::header::COOKIE,
                    format!("{}={}", super::SESSION_COOKIE, cookie.expose()),
                );
            }
            let resp = req.send().await.map_err(|e| http_error(e, "SOAP call"))?;
            collect(resp, "SOAP call").await
        })
    }

    fn get<'a>(
        &'a self,
        url: &'a Url,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<HttpResponse, Error>> {
        Box::pin(async move {
            let resp = self
                .http
                .get(url.clone())
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| http_error(e, "GET"))?;
            collect(resp, "GET").await
        })
    }

    fn put_file<'a>(
        &'a self,
        request: FileRequest<'a>,
        file: tokio::fs::File,
        len: u64,
    ) -> BoxFuture<'a, Result<u16, Error>> {
        Box::pin(async move {
            let mut req = self
                .http
                .put(request.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::from(file));
            if let Some(cookie) = request.cookie {
                req = req.header(
                    reqwest::header::COOKIE,
                    format!("{}={}", super::SESSION_COOKIE, cookie.expose()),
                );
            }
            let resp = req.send().await.map_err(|e| http_error(e, "upload"))?;
            let status = resp.status().as_u16();
            // Drain the (small) answer so the connection can be reused.
            let _ = resp.bytes().await;
            Ok(status)
        })
    }

    fn get_to<'a>(
        &'a self,
        request: FileRequest<'a>,
        sink: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> BoxFuture<'a, Result<(u16, u64), Error>> {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let mut req = self.http.get(request.url.clone());
            if let Some(cookie) = request.cookie {
                req = req.header(
                    reqwest::header::COOKIE,
                    format!("{}={}", super::SESSION_COOKIE, cookie.expose()),
                );
            }
            let mut resp = tokio::time::timeout(request.timeout, req.send())
                .await
                .map_err(|_| Error::Timeout { what: "download" })?
                .map_err(|e| http_error(e, "download"))?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Ok((status, 0));
            }
            let mut written = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(|e| http_error(e, "download"))? {
                sink.write_all(&chunk).await.map_err(|e| Error::Io {
                    what: "write the downloaded file",
                    path: String::new(),
                    source: e,
                })?;
                written += chunk.len() as u64;
            }
            sink.flush().await.map_err(|e| Error::Io {
                what: "write the downloaded file",
                path: String::new(),
                source: e,
            })?;
            Ok((status, written))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_parse_in_every_common_spelling() {
        let sha1 = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01";
        let t = Thumbprint::parse(sha1).unwrap();
        assert!(matches!(t, Thumbprint::Sha1(_)));
        assert_eq!(t.to_string(), sha1);
        assert_eq!(
            Thumbprint::parse(&sha1.to_lowercase().replace(':', "")).unwrap(),
            t
        );
        let sha256 = "00".repeat(32);
        assert!(matches!(
            Thumbprint::parse(&sha256),
            Ok(Thumbprint::Sha256(_))
        ));
    }

    #[test]
    fn bad_thumbprints_are_typed_errors() {
        for bad in ["", "abc", "zz:zz", &"00".repeat(16)] {
            let e = Thumbprint::parse(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidOption {
                        option: "thumbprint",
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn thumbprint_of_a_certificate_matches_only_it() {
        let der = b"not really DER, but hashing does not care";
        let t256 = Thumbprint::sha256_of(der);
        let t1 = Thumbprint::sha1_of(der);
        assert!(t256.matches(der) && t1.matches(der));
        assert!(!t256.matches(b"another certificate"));
        // SHA-1 of the empty string, a well-known value.
        assert_eq!(
            Thumbprint::sha1_of(b"").to_string(),
            "DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09"
        );
    }

    #[test]
    fn set_cookie_keeps_the_quoted_value_and_drops_attributes() {
        let c =
            parse_set_cookie(r#"vmware_soap_session="abc123"; Path=/; HttpOnly; Secure;"#).unwrap();
        assert_eq!(c.name, "vmware_soap_session");
        assert_eq!(c.value.expose(), "\"abc123\"");
        assert!(!format!("{c:?}").contains("abc123"));
    }

    #[test]
    fn custom_ca_rejects_text_without_certificates() {
        let e = TlsPolicy::custom_ca_pem(b"hello").unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "ca", .. }));
    }
}
