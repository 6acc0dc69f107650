//! HTTPS for the emulators (`--tls`): a certificate authority made at start, a server
//! certificate it signs for 127.0.0.1 and localhost, and the CA's PEM for clients to trust.
//!
//! Nothing is read from or kept on disk except the CA certificate written for clients (never
//! a private key), so every start has a fresh CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names the emulators' certificates are valid for.
pub const LOOPBACK_NAMES: &[&str] = &["127.0.0.1", "localhost"];

/// What to put in the server certificate; the defaults are what `--tls` serves.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Host names and IP addresses the certificate is valid for.
    pub names: Vec<String>,
    /// Make the server certificate one that expired long ago (for tests of clients).
    pub expired: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self { names: LOOPBACK_NAMES.iter().map(|name| name.to_string()).collect(), expired: false }
    }
}

/// A CA and the server certificate it signed, ready to serve.
#[derive(Clone)]
pub struct SimTls {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for SimTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTls").finish_non_exhaustive()
    }
}

/// Installs ring as the process's rustls provider (once), which `reqwest` clients built
/// without their own TLS configuration need.
pub fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err: another provider is already installed, which serves as well.
        let _ = ring_provider().install_default();
    });
}

/// rustls's ring provider (deprecated by rustls for lacking post-quantum key exchange;
/// aws-lc-rs, which has it, needs cmake to build).
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

impl SimTls {
    /// A fresh CA and a certificate for 127.0.0.1 and localhost.
    pub fn generate() -> anyhow::Result<Self> {
        Self::with_options(&TlsOptions::default())
    }

    pub fn with_options(options: &TlsOptions) -> anyhow::Result<Self> {
        install_crypto_provider();
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(DnType::CommonName, "Tandem emulator CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_certificate = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(options.names.clone())?;
        server.distinguished_name = DistinguishedName::new();
        server.distinguished_name.push(DnType::CommonName, options.names.first().map(String::as_str).unwrap_or("localhost"));
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if options.expired {
            server.not_before = rcgen::date_time_ymd(2000, 1, 1);
            server.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let server_certificate = server.signed_by(&server_key, &issuer)?;

        let chain: Vec<CertificateDer<'static>> = vec![server_certificate.der().clone(), ca_certificate.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { ca_pem: ca_certificate.pem(), server: Arc::new(config) })
    }

    /// The CA certificate in PEM: what a client adds to its trusted roots.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA certificate to `dir/name` and returns the path.
    pub fn write_ca(&self, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_a_pem_certificate_and_a_fresh_one_each_time() {
        let first = SimTls::generate().expect("a CA");
        let second = SimTls::generate().expect("a CA");
        assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"), "{}", first.ca_pem());
        assert_ne!(first.ca_pem(), second.ca_pem());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = first.write_ca(dir.path(), "ca.pem").expect("written");
        assert_eq!(std::fs::read_to_string(path).expect("readable"), first.ca_pem());
    }
}
