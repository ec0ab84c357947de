//! HTTPS: a self-signed certificate generated at start (rcgen), served with rustls.
//!
//! Connections are accepted on the TCP listener and their TLS handshakes run in tasks of their
//! own (a slow or broken client does not hold up the others); finished streams go to axum
//! through [`TlsListener`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::Error;

/// The generated certificate: PEM (for a client's trust store) and DER (for thumbprints).
#[derive(Clone)]
pub(crate) struct Certificate {
    pub(crate) pem: String,
    pub(crate) der: Vec<u8>,
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key lives only inside the rustls config and is never shown.
        f.debug_struct("Certificate")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

fn tls_error(problem: impl std::fmt::Display) -> Error {
    Error::Tls {
        problem: problem.to_string(),
    }
}

/// A self-signed certificate for `127.0.0.1`, `localhost` and the listen address's IP.
pub(crate) fn generate(addr: SocketAddr) -> Result<Certificate, Error> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let ip = addr.ip().to_string();
    if !names.contains(&ip) && !addr.ip().is_unspecified() {
        names.push(ip);
    }
    let key = rcgen::generate_simple_self_signed(names).map_err(tls_error)?;
    let der = key.cert.der().to_vec();
    let pem = key.cert.pem();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()),
    );
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(der.clone())],
            key_der,
        )
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certificate {
        pem,
        der,
        config: Arc::new(config),
    })
}

/// Finished TLS streams, for `axum::serve`.
pub(crate) struct TlsListener {
    streams: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`; handshakes that take over 10 s are dropped.
    pub(crate) fn new(tcp: TcpListener, cert: &Certificate) -> Result<Self, Error> {
        let addr = tcp.local_addr().map_err(|source| Error::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let acceptor = TlsAcceptor::from(Arc::clone(&cert.config));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    () = tx.closed() => return,
                };
                let Ok((stream, peer)) = accepted else {
                    // Out of file descriptors and the like: try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    if let Ok(Ok(tls)) = hs.await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(Self { streams: rx, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(s) => s,
            // The acceptor ended (it only does when this listener is gone): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_generated_for_loopback() {
        let c = generate(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        assert!(c.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!c.der.is_empty());
        assert!(!format!("{c:?}").contains("PRIVATE"));
    }
}
