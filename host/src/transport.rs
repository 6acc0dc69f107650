//! One way to open outbound HTTP(S) connections, so every connector (Siebel, EWS, Graph and
//! its token endpoint) verifies servers the same way and explains a failed handshake.
//!
//! Trust is the system's root certificates plus, per endpoint, a `ca_file` (a PEM bundle
//! trusted in addition). Certificates and host names are always verified: nothing here can
//! turn that off. TLS is rustls with the ring provider. Proxies come from `HTTPS_PROXY` /
//! `NO_PROXY` unless the endpoint names its own.
//!
//! A handshake that fails verification becomes a [`TlsError`] naming the endpoint, the reason
//! (unknown issuer, expired, wrong host name, …) and what to do about it.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{CertificateError, RootCertStore};

/// How to reach one endpoint: extra trust and proxy. The default trusts the system's roots
/// and takes the proxy from the environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// A PEM file of CA certificates trusted in addition to the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// A proxy for every request to this endpoint, like `http://proxy:3128`; None: the
    /// `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` variables apply.
    pub proxy: Option<String>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A proxy URL may carry a password.
        let proxy = self.proxy.as_deref().map(|url| match url.rsplit_once('@') {
            Some((_, host)) => format!("<credentials>@{host}"),
            None => url.to_owned(),
        });
        f.debug_struct("Transport").field("ca_file", &self.ca_file).field("proxy", &proxy).finish()
    }
}

/// Why a client could not be built from an endpoint's transport settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {} is not a PEM bundle of certificates: {reason}", path.display())]
    CaFileInvalid { path: PathBuf, reason: String },
    #[error("the proxy is not a URL: {reason}")]
    Proxy { reason: String },
    #[error("the HTTP client cannot be built: {0}")]
    Build(String),
}

impl TransportError {
    /// What to do about it, for configuration messages.
    pub fn hint(&self) -> &'static str {
        match self {
            TransportError::CaFileUnreadable { .. } => "check the path and that Tandem's user may read it",
            TransportError::CaFileInvalid { .. } => {
                "give the CA's certificate(s) in PEM (-----BEGIN CERTIFICATE-----), e.g. `openssl x509 -in ca.der -inform der -out ca.pem`"
            }
            TransportError::Proxy { .. } => "write the proxy as http://HOST:PORT (or http://USER:PASSWORD@HOST:PORT)",
            TransportError::Build(_) => "check the endpoint's ca_file and proxy",
        }
    }
}

/// Installs ring as the process's rustls provider (once; later calls do nothing). Clients
/// built here do not need it; any other `reqwest::Client` of the process does.
pub fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err: another provider is already installed, which serves as well.
        let _ = ring_provider().install_default();
    });
}

/// rustls's ring provider. rustls deprecates it because ring has no post-quantum key
/// exchange; aws-lc-rs, which has, needs cmake and a C toolchain to build, which Tandem does
/// not require. Classic key exchange (X25519, P-256) is what the servers we reach offer.
#[allow(deprecated)]
pub fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificates of a PEM bundle; an error says what is wrong with the file. Every
/// certificate must be usable as a trust anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let bytes = std::fs::read(path).map_err(|source| TransportError::CaFileUnreadable { path: path.into(), source })?;
    let invalid = |reason: String| TransportError::CaFileInvalid { path: path.into(), reason };
    let mut certificates = Vec::new();
    for (index, certificate) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let certificate = certificate.map_err(|e| invalid(format!("certificate {}: {e}", index + 1)))?;
        // The same check the verifier makes when it takes the anchor.
        RootCertStore::empty()
            .add(certificate.clone())
            .map_err(|e| invalid(format!("certificate {} cannot be a trust anchor: {e}", index + 1)))?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(invalid("it holds no -----BEGIN CERTIFICATE----- block".into()));
    }
    Ok(certificates)
}

/// The system's root certificates, read once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a system root certificate could not be read");
        }
        if found.certs.is_empty() {
            tracing::warn!("no system root certificates found; only endpoints' ca_file certificates are trusted");
        }
        found.certs
    })
}

/// The rustls configuration for one endpoint: system roots plus its `ca_file`, ring, and the
/// standard WebPKI verifier (chain, validity dates, host name).
pub fn tls_config(transport: &Transport) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates rustls cannot use were skipped");
    }
    if let Some(path) = &transport.ca_file {
        for certificate in load_ca_file(path)? {
            roots.add(certificate).map_err(|e| TransportError::CaFileInvalid { path: path.clone(), reason: e.to_string() })?;
        }
    }
    let provider = Arc::new(ring_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A client builder for one endpoint; the connector adds its timeouts and builds it.
pub fn client_builder(transport: &Transport) -> Result<reqwest::ClientBuilder, TransportError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder().tls_backend_preconfigured(tls_config(transport)?);
    if let Some(url) = transport.proxy.as_deref().filter(|url| !url.trim().is_empty()) {
        builder = builder.proxy(proxy(url)?);
    }
    Ok(builder)
}

/// An endpoint's `proxy` for every request, except to hosts `NO_PROXY` names.
pub fn proxy(url: &str) -> Result<reqwest::Proxy, TransportError> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| TransportError::Proxy { reason: e.to_string() })?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(TransportError::Proxy { reason: format!("the scheme must be http or https, not {}", parsed.scheme()) });
    }
    let proxy = reqwest::Proxy::all(parsed).map_err(|e| TransportError::Proxy { reason: describe(&e) })?;
    Ok(proxy.no_proxy(reqwest::NoProxy::from_env()))
}

/// Why a server's certificate was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// Signed by a CA that neither the system nor `ca_file` trusts (or self-signed).
    UnknownIssuer,
    /// Past its `notAfter` date.
    Expired,
    /// Before its `notBefore` date.
    NotYetValid,
    /// Not issued for the host name (or IP address) in the URL; `presented` is what it names.
    WrongHostName { presented: Vec<String> },
    /// Revoked by its CA.
    Revoked,
    /// The port does not speak TLS (a plain HTTP server behind an https:// URL).
    NotTls,
    /// Anything else rustls refused, in its words.
    Other(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::UnknownIssuer => f.write_str("the server's certificate is signed by an unknown issuer (a CA this machine does not trust)"),
            TlsFailure::Expired => f.write_str("the server's certificate has expired"),
            TlsFailure::NotYetValid => f.write_str("the server's certificate is not valid yet"),
            TlsFailure::WrongHostName { presented } if presented.is_empty() => {
                f.write_str("the server's certificate is for another host name")
            }
            TlsFailure::WrongHostName { presented } => {
                write!(f, "the server's certificate is for another host name (it names {})", presented.join(", "))
            }
            TlsFailure::Revoked => f.write_str("the server's certificate has been revoked"),
            TlsFailure::NotTls => f.write_str("the server does not speak TLS on this port"),
            TlsFailure::Other(reason) => write!(f, "{reason}"),
        }
    }
}

impl TlsFailure {
    /// From rustls's error.
    fn of(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::InvalidCertificate(certificate) => match certificate {
                CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => TlsFailure::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => TlsFailure::NotYetValid,
                CertificateError::NotValidForName => TlsFailure::WrongHostName { presented: Vec::new() },
                CertificateError::NotValidForNameContext { presented, .. } => {
                    TlsFailure::WrongHostName { presented: presented.clone() }
                }
                CertificateError::Revoked => TlsFailure::Revoked,
                other => TlsFailure::Other(format!("the server's certificate was refused: {other}")),
            },
            rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
            other => TlsFailure::Other(format!("the TLS handshake failed: {other}")),
        }
    }

    /// What the administrator can do, for the endpoint's configuration section.
    pub fn hint(&self, section: &str) -> String {
        match self {
            TlsFailure::UnknownIssuer => format!(
                "if the server's certificate comes from a private CA, set ca_file in [{section}] to the PEM of the CA that signed it"
            ),
            TlsFailure::Expired | TlsFailure::NotYetValid => {
                "renew the server's certificate, and check this machine's clock".into()
            }
            TlsFailure::WrongHostName { .. } => {
                format!("use a host name the certificate names in [{section}]'s URL, or have the certificate reissued for this one")
            }
            TlsFailure::Revoked => "the server needs a new certificate".into(),
            TlsFailure::NotTls => format!("check the port in [{section}]'s URL, or use http:// if the server has no TLS"),
            TlsFailure::Other(_) => "check the server's TLS settings (protocol versions, cipher suites, certificate chain)".into(),
        }
    }
}

/// A failed TLS handshake: which endpoint, why, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the TLS handshake with {endpoint} failed: {failure}; {}", failure.hint(section))]
pub struct TlsError {
    /// The configuration section of the endpoint (`siebel`, `exchange`, `graph`).
    pub section: &'static str,
    /// `https://host:port` of the server.
    pub endpoint: String,
    pub failure: TlsFailure,
}

/// The rustls error somewhere in an error's chain of sources, if any. `std::io::Error`
/// hides the error it wraps from `source()`, so it is looked into as well.
pub fn rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(inner) = current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(found) = rustls_error(inner) {
                return Some(found);
            }
        }
        next = current.source();
    }
    None
}

/// The failed handshake behind a request error, if that is what it was.
pub fn tls_error(error: &reqwest::Error, section: &'static str) -> Option<TlsError> {
    let failure = TlsFailure::of(rustls_error(error)?);
    let endpoint = match error.url() {
        Some(url) => format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or("?"), url.port_or_known_default().unwrap_or(443)),
        None => "the server".into(),
    };
    Some(TlsError { section, endpoint, failure })
}

/// What a TLS handshake with an endpoint showed: the certificate chain the server sent
/// (its own first) and the protocol version agreed.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub chain: Vec<CertificateDer<'static>>,
    pub protocol: String,
}

/// Why [`handshake`] could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("the host name {host} does not resolve: {reason}")]
    Dns { host: String, reason: String },
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("{0}")]
    Tls(TlsFailure),
    #[error("{0}")]
    Settings(#[from] TransportError),
}

/// Resolves `host`, connects to `port` and makes a TLS handshake with the endpoint's trust
/// (system roots plus `ca_file`), verifying chain and host name like every connector does.
/// Sends nothing after the handshake. For `tandem doctor`.
pub async fn handshake(transport: &Transport, host: &str, port: u16, limit: std::time::Duration) -> Result<Handshake, HandshakeError> {
    let addresses: Vec<std::net::SocketAddr> = tokio::time::timeout(limit, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| HandshakeError::Dns { host: host.into(), reason: "no answer in time".into() })?
        .map_err(|e| HandshakeError::Dns { host: host.into(), reason: e.to_string() })?
        .collect();
    let address = addresses.first().ok_or_else(|| HandshakeError::Dns { host: host.into(), reason: "no address".into() })?;
    let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| HandshakeError::Connect { address: address.to_string(), reason: "timed out".into() })?
        .map_err(|e| HandshakeError::Connect { address: address.to_string(), reason: e.to_string() })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(transport)?));
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| HandshakeError::Tls(TlsFailure::Other(format!("'{host}' is not a host name: {e}"))))?;
    let stream = tokio::time::timeout(limit, connector.connect(name, tcp))
        .await
        .map_err(|_| HandshakeError::Tls(TlsFailure::Other("the handshake did not finish in time".into())))?
        .map_err(|error| match rustls_error(&error) {
            Some(rustls) => HandshakeError::Tls(TlsFailure::of(rustls)),
            None => HandshakeError::Connect { address: address.to_string(), reason: error.to_string() },
        })?;
    let (_, session) = stream.get_ref();
    let chain = session.peer_certificates().map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default();
    let protocol = session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    Ok(Handshake { chain, protocol })
}

/// The `notAfter` date of a DER certificate (X.509 `tbsCertificate.validity`), or None when
/// the certificate cannot be read that far.
pub fn not_after(certificate: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, certificate) = der_element(certificate, 0x30)?;
    let (_, mut tbs) = der_element(certificate, 0x30)?;
    if tbs.first() == Some(&0xA0) {
        tbs = der_element(tbs, 0xA0)?.0;
    }
    let tbs = der_element(tbs, 0x02)?.0; // serialNumber
    let tbs = der_element(tbs, 0x30)?.0; // signature algorithm
    let tbs = der_element(tbs, 0x30)?.0; // issuer
    let (_, validity) = der_element(tbs, 0x30)?;
    let rest = match validity.first()? {
        0x17 => der_element(validity, 0x17)?.0,
        _ => der_element(validity, 0x18)?.0,
    };
    let tag = *rest.first()?;
    let (_, time) = der_element(rest, tag)?;
    let text = std::str::from_utf8(time).ok()?;
    let text = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 50-99 are 19xx.
        0x17 => format!("{}{text}", if text.get(..2)? >= "50" { "19" } else { "20" }),
        0x18 => text.to_owned(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y%m%d%H%M%S").ok().map(|t| t.and_utc())
}

/// Splits one DER element with tag `tag` off the front of `input`: (the rest, its content).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = match first {
        0..=0x7F => (usize::from(first), rest),
        0x81..=0x84 => {
            let count = usize::from(first & 0x7F);
            let (bytes, rest) = (rest.get(..count)?, rest.get(count..)?);
            (bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)), rest)
        }
        _ => return None,
    };
    Some((rest.get(length..)?, rest.get(..length)?))
}

/// A request error with its whole chain of causes (reqwest's own text stops at "error
/// sending request"), for messages and logs.
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

// ----- connections held by their client (EWS with NTLM or Negotiate) -----

/// A byte stream to a server: TCP, through a proxy's CONNECT tunnel when one applies, and
/// TLS for `https://`.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// How to open connections to one server, for clients that keep hold of a connection
/// (Windows sign-in authenticates a TCP connection, which a pooled `reqwest::Client` cannot
/// promise to reuse). TLS is [`tls_config`]'s: the same roots and verification as every
/// other client. A proxy (the endpoint's `proxy`, else `HTTPS_PROXY`/`HTTP_PROXY`, minus
/// `NO_PROXY`) is always used as a CONNECT tunnel, for `http://` servers too, so the
/// connection the server sees is ours alone.
#[derive(Clone)]
pub struct Route {
    tls: Option<tokio_rustls::TlsConnector>,
    host: String,
    port: u16,
    proxy: Option<Tunnel>,
}

/// A proxy to tunnel through.
#[derive(Clone)]
struct Tunnel {
    host: String,
    port: u16,
    /// `Proxy-Authorization` value, from the proxy URL's user and password.
    authorization: Option<String>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("endpoint", &self.endpoint())
            .field("proxy", &self.proxy.as_ref().map(|proxy| format!("{}:{}", proxy.host, proxy.port)))
            .finish()
    }
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server's certificate was refused: retrying cannot help.
    #[error(transparent)]
    Tls(TlsError),
    #[error("cannot connect to {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the proxy {proxy} did not open a tunnel to {endpoint}: {answer}; {hint}")]
    Proxy { proxy: String, endpoint: String, answer: String, hint: &'static str },
    #[error("no connection to {endpoint} within {seconds} s")]
    Timeout { endpoint: String, seconds: u64 },
}

impl Route {
    /// For a server URL (`http` or `https`) and its endpoint's transport settings.
    pub fn new(transport: &Transport, url: &str) -> Result<Self, TransportError> {
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| TransportError::Build(format!("`{url}` is not a URL: {e}")))?;
        let tls = match parsed.scheme() {
            "https" => {
                install_crypto_provider();
                Some(tokio_rustls::TlsConnector::from(Arc::new(tls_config(transport)?)))
            }
            "http" => None,
            other => return Err(TransportError::Build(format!("`{url}`: the scheme must be http or https, not {other}"))),
        };
        let host = parsed.host_str().ok_or_else(|| TransportError::Build(format!("`{url}` has no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = parsed.port_or_known_default().unwrap_or(if tls.is_some() { 443 } else { 80 });
        let proxy = tunnel_for(transport, parsed.scheme(), &host, port)?;
        Ok(Self { tls, host, port, proxy })
    }

    /// `https://host:port` (or `http://`), for messages.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The proxy the connections go through, as `host:port`.
    pub fn proxy(&self) -> Option<String> {
        self.proxy.as_ref().map(|proxy| format!("{}:{}", proxy.host, proxy.port))
    }

    /// Opens a connection: TCP (through the proxy's tunnel), then TLS for `https://`, within
    /// `limit`. `section` names the configuration section in TLS errors.
    pub async fn connect(&self, section: &'static str, limit: std::time::Duration) -> Result<Box<dyn Stream>, ConnectError> {
        match tokio::time::timeout(limit, self.open(section)).await {
            Ok(opened) => opened,
            Err(_) => Err(ConnectError::Timeout { endpoint: self.endpoint(), seconds: limit.as_secs() }),
        }
    }

    async fn open(&self, section: &'static str) -> Result<Box<dyn Stream>, ConnectError> {
        let unreachable = |at: String, reason: String| ConnectError::Unreachable { endpoint: at, reason };
        let tcp = match &self.proxy {
            None => tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| unreachable(self.endpoint(), e.to_string()))?,
            Some(proxy) => {
                let at = format!("the proxy {}:{}", proxy.host, proxy.port);
                let mut tcp = tokio::net::TcpStream::connect((proxy.host.as_str(), proxy.port))
                    .await
                    .map_err(|e| unreachable(at.clone(), e.to_string()))?;
                self.tunnel(&mut tcp, proxy).await?;
                tcp
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(connector) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| unreachable(self.endpoint(), format!("`{}` is not a host name: {e}", self.host)))?;
        match connector.connect(name, tcp).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(error) => Err(match rustls_error(&error) {
                Some(refused) => ConnectError::Tls(TlsError { section, endpoint: self.endpoint(), failure: TlsFailure::of(refused) }),
                None => unreachable(self.endpoint(), format!("the TLS handshake failed: {}", describe(&error))),
            }),
        }
    }

    /// Asks the proxy for a tunnel to the server (`CONNECT host:port`).
    async fn tunnel(&self, tcp: &mut tokio::net::TcpStream, proxy: &Tunnel) -> Result<(), ConnectError> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let authority = if self.host.contains(':') { format!("[{}]:{}", self.host, self.port) } else { format!("{}:{}", self.host, self.port) };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(authorization) = &proxy.authorization {
            request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        let refused = |answer: String, hint: &'static str| ConnectError::Proxy {
            proxy: format!("{}:{}", proxy.host, proxy.port),
            endpoint: self.endpoint(),
            answer,
            hint,
        };
        let io = |e: std::io::Error| refused(e.to_string(), "check the proxy's address");
        tcp.write_all(request.as_bytes()).await.map_err(io)?;
        // The answer's head, byte by byte so nothing of the tunnel is read past it.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(refused("an answer head longer than 16 KiB".into(), "check that the proxy is an HTTP proxy"));
            }
            let mut byte = [0u8; 1];
            if tcp.read(&mut byte).await.map_err(io)? == 0 {
                return Err(refused("the proxy closed the connection".into(), "check that the proxy allows CONNECT to this port"));
            }
            head.push(byte[0]);
        }
        let status_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().trim().to_owned();
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        match code {
            "200" => Ok(()),
            "407" => Err(refused(status_line, "the proxy wants credentials: write the proxy as http://USER:PASSWORD@HOST:PORT")),
            _ => Err(refused(status_line, "check that the proxy allows CONNECT to this host and port")),
        }
    }
}

/// The proxy for a server: the endpoint's `proxy`, else the environment's, unless
/// `NO_PROXY` names the host.
fn tunnel_for(transport: &Transport, scheme: &str, host: &str, port: u16) -> Result<Option<Tunnel>, TransportError> {
    let matcher = match transport.proxy.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => {
            // The same checks as for the other clients' proxies.
            proxy(url)?;
            let no_proxy = ["NO_PROXY", "no_proxy"].iter().find_map(|name| std::env::var(name).ok()).unwrap_or_default();
            hyper_util::client::proxy::matcher::Matcher::builder().all(url).no(no_proxy).build()
        }
        None => hyper_util::client::proxy::matcher::Matcher::from_env(),
    };
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let target: hyper::Uri = format!("{scheme}://{authority}/")
        .parse()
        .map_err(|e| TransportError::Build(format!("{scheme}://{authority}: {e}")))?;
    let Some(intercept) = matcher.intercept(&target) else {
        return Ok(None);
    };
    let uri = intercept.uri();
    if uri.scheme_str() != Some("http") {
        return Err(TransportError::Proxy {
            reason: format!("Windows sign-in tunnels through an http:// proxy; {} is not one", uri.scheme_str().unwrap_or("?")),
        });
    }
    let proxy_host = uri.host().ok_or_else(|| TransportError::Proxy { reason: "the proxy URL has no host".into() })?;
    Ok(Some(Tunnel {
        host: proxy_host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port: uri.port_u16().unwrap_or(80),
        authorization: intercept.basic_auth().and_then(|value| value.to_str().ok()).map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests;
