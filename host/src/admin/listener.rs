//! The admin API's own HTTP(S) listener: binds, serves a router until told to stop, and stops
//! gracefully (requests in progress are answered). The product serves with this, never with
//! an emulator's server.
//!
//! With `[admin] tls_cert_file` and `tls_key_file` it serves HTTPS itself (so Graph can post
//! change notifications to it without a reverse proxy); without them, plain HTTP as always.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client that opens a connection and never finishes the handshake is dropped after this.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Why the admin listener's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminTlsError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a PEM certificate chain: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("the certificate and key cannot be served together: {0}")]
    Mismatch(String),
}

impl AdminTlsError {
    /// What to do about it, for configuration messages.
    pub fn hint(&self) -> &'static str {
        match self {
            AdminTlsError::Unreadable { .. } => "check the path and that Tandem's user may read it",
            AdminTlsError::NoCertificate { .. } | AdminTlsError::BadCertificate { .. } => {
                "give the server certificate first, then its intermediate CAs, in PEM"
            }
            AdminTlsError::BadKey { .. } => "give the certificate's private key in PEM, unencrypted",
            AdminTlsError::Mismatch(_) => "the key must be the one the certificate was issued for",
        }
    }
}

/// Where the admin listener's certificate chain and private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The TLS configuration of the admin listener: a certificate chain and its key from PEM
/// files, served with rustls and ring (TLS 1.2 and 1.3).
pub fn server_tls(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, AdminTlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| AdminTlsError::Unreadable { path: path.into(), source });
    let chain_pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AdminTlsError::BadCertificate { path: cert_file.into(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(AdminTlsError::NoCertificate { path: cert_file.into() });
    }
    let key_pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| AdminTlsError::BadKey { path: key_file.into(), reason: e.to_string() })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(crate::transport::ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AdminTlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| AdminTlsError::Mismatch(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A router being served; dropping it stops the listener too.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free one) and serves `router` until stopped, over TLS
    /// when `tls` is given.
    pub async fn start(router: Router, addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let secure = tls.is_some();
        let task = match tls {
            None => tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
                    tracing::error!(%error, "the admin API stopped with an error");
                }
            }),
            Some(config) => {
                let listener = TlsListener::new(listener, TlsAcceptor::from(config))?;
                tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
                        tracing::error!(%error, "the admin API stopped with an error");
                    }
                })
            }
        };
        Ok(Self { addr, tls: secure, shutdown: Some(shutdown), task: Some(task) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` or `https://ADDR`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops listening and waits until the requests in progress are answered.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Accepts TCP connections and hands on those whose TLS handshake succeeded. Handshakes run
/// in their own tasks, so one slow client does not hold up the others.
struct TlsListener {
    addr: SocketAddr,
    handshaken: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (sender, handshaken) = tokio::sync::mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            let mut listener = listener;
            loop {
                let (stream, peer) = axum::serve::Listener::accept(&mut listener).await;
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "admin API: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "admin API: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { addr, handshaken, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended: no connection will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
