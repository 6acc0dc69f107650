//! Certificate credentials: an app's X.509 certificate and its RSA private key, and the client
//! assertion signed with them that Microsoft's identity platform takes in place of a client
//! secret ("Microsoft identity platform application authentication certificate credentials",
//! learn.microsoft.com/entra/identity-platform/certificate-credentials).
//!
//! The assertion is a JWT: header `alg: PS256`, `typ: JWT`, `x5t#S256` (the base64url SHA-256
//! of the certificate's DER); claims `aud` (the token endpoint), `iss` = `sub` = the client
//! id, a fresh `jti`, `nbf` = `iat` = now and `exp` [`ASSERTION_LIFETIME`] later; signed
//! RSASSA-PSS with SHA-256 (ring). Keys are read from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or
//! PKCS#1 (`BEGIN RSA PRIVATE KEY`), in their own file or after the certificate in one file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::signature::RsaKeyPair;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

/// How long an assertion may be used: the longest Microsoft advises ("5-10 minutes after
/// `nbf` at most"), as MSAL does.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// The `alg` of the assertions made here.
pub const ASSERTION_ALGORITHM: &str = "PS256";

/// An app's certificate and private key, ready to sign client assertions.
pub struct CertificateCredential {
    /// The certificate, DER.
    certificate: Vec<u8>,
    key: RsaKeyPair,
    /// base64url(SHA-256(certificate DER)): the `x5t#S256` header.
    thumbprint_sha256: String,
    not_after: DateTime<Utc>,
    /// Where the certificate came from, for messages.
    source: String,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The certificate is public; the key is not shown.
        f.debug_struct("CertificateCredential")
            .field("source", &self.source)
            .field("thumbprint_sha256", &self.thumbprint_sha256)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a certificate credential cannot be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} holds no certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { what: String },
    #[error("the certificate in {what} cannot be read: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error("{what} holds no private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)")]
    NoKey { what: String },
    #[error("the private key in {what} cannot be used: {reason}")]
    BadKey { what: String, reason: String },
    #[error("the private key in {key} is not the key of the certificate in {certificate}")]
    KeyMismatch { certificate: String, key: String },
    #[error("the client assertion could not be signed")]
    Signing,
}

impl CredentialError {
    /// What to do about it, for configuration messages.
    pub fn hint(&self) -> &'static str {
        match self {
            CredentialError::Unreadable { .. } => "check the path and that Tandem's user may read it",
            CredentialError::NoCertificate { .. } | CredentialError::BadCertificate { .. } => {
                "give the certificate uploaded to the app registration in PEM; from a .pfx: `openssl pkcs12 -in app.pfx -nokeys -out app.crt`"
            }
            CredentialError::NoKey { .. } | CredentialError::BadKey { .. } => {
                "give the certificate's RSA key (2048 to 4096 bits) in PEM, unencrypted: `openssl pkcs12 -in app.pfx -nocerts -nodes -out app.key`, or `openssl pkcs8 -topk8 -nocrypt -in enc.key -out app.key`"
            }
            CredentialError::KeyMismatch { .. } => "give the private key that was made with this certificate",
            CredentialError::Signing => "check the private key",
        }
    }
}

impl CertificateCredential {
    /// Loads the certificate from `certificate_file` and the key from `private_key_file`, or
    /// from `certificate_file` too when that is None (one PEM file holding both).
    pub fn from_files(certificate_file: &Path, private_key_file: Option<&Path>) -> Result<Self, CredentialError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CredentialError::Unreadable { path: path.to_path_buf(), source })
        };
        let certificate = read(certificate_file)?;
        let key_path = private_key_file.unwrap_or(certificate_file);
        let key = match private_key_file {
            Some(path) => read(path)?,
            None => certificate.clone(),
        };
        Self::from_pem(
            &certificate,
            &key,
            &certificate_file.display().to_string(),
            &key_path.display().to_string(),
        )
    }

    /// From PEM text; `certificate_name` and `key_name` say where they came from, in errors.
    pub fn from_pem(
        certificate_pem: &[u8],
        key_pem: &[u8],
        certificate_name: &str,
        key_name: &str,
    ) -> Result<Self, CredentialError> {
        let bad_certificate =
            |reason: String| CredentialError::BadCertificate { what: certificate_name.to_owned(), reason };
        let certificate = match CertificateDer::pem_slice_iter(certificate_pem).next() {
            Some(Ok(certificate)) => certificate.to_vec(),
            Some(Err(error)) => return Err(bad_certificate(error.to_string())),
            None => return Err(CredentialError::NoCertificate { what: certificate_name.to_owned() }),
        };
        let parsed = der::certificate(&certificate).map_err(|why| bad_certificate(why.into()))?;
        if parsed.algorithm != der::RSA_ENCRYPTION {
            return Err(bad_certificate(
                "its key is not RSA; certificate credentials are signed PS256 or RS256, which take RSA keys".into(),
            ));
        }
        let bad_key = |reason: String| CredentialError::BadKey { what: key_name.to_owned(), reason };
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(PrivateKeyDer::Pkcs8(key)) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(key)) => RsaKeyPair::from_der(key.secret_pkcs1_der()),
            Ok(_) => return Err(bad_key("it is not an RSA key".into())),
            Err(rustls::pki_types::pem::Error::NoItemsFound) => {
                let encrypted = String::from_utf8_lossy(key_pem).contains("-----BEGIN ENCRYPTED PRIVATE KEY-----");
                return Err(match encrypted {
                    true => bad_key("it is encrypted with a passphrase".into()),
                    false => CredentialError::NoKey { what: key_name.to_owned() },
                });
            }
            Err(error) => return Err(bad_key(error.to_string())),
        }
        .map_err(|rejected| bad_key(rejected.to_string()))?;
        if key.public().as_ref() != parsed.public_key {
            return Err(CredentialError::KeyMismatch {
                certificate: certificate_name.to_owned(),
                key: key_name.to_owned(),
            });
        }
        let thumbprint_sha256 = base64url(&Sha256::digest(&certificate));
        Ok(Self { not_after: parsed.not_after, certificate, key, thumbprint_sha256, source: certificate_name.to_owned() })
    }

    /// The certificate's `notAfter`: after it Entra ID refuses assertions signed with it.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// The `x5t#S256` thumbprint (base64url SHA-256 of the DER).
    pub fn thumbprint_sha256(&self) -> &str {
        &self.thumbprint_sha256
    }

    /// The SHA-1 thumbprint in upper-case hex, as the Entra admin center shows certificates.
    pub fn thumbprint_sha1_hex(&self) -> String {
        hex::encode_upper(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.certificate))
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// A signed client assertion for `client_id` at the token endpoint `audience`, made at `now`.
    pub fn assertion(&self, client_id: &str, audience: &str, now: DateTime<Utc>) -> Result<String, CredentialError> {
        let issued = now.timestamp();
        let header = serde_json::json!({"alg": ASSERTION_ALGORITHM, "typ": "JWT", "x5t#S256": self.thumbprint_sha256});
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": issued,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME.as_secs() as i64,
        });
        let signed = format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&ring::signature::RSA_PSS_SHA256, &ring::rand::SystemRandom::new(), signed.as_bytes(), &mut signature)
            .map_err(|_| CredentialError::Signing)?;
        Ok(format!("{signed}.{}", base64url(&signature)))
    }
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Just enough DER to read a certificate's validity and public key (RFC 5280 §4.1): the
/// certificate itself was checked by whoever issued it, and Entra ID checks it again.
mod der {
    use chrono::{DateTime, TimeZone as _, Utc};

    /// `rsaEncryption` (1.2.840.113549.1.1.1), as DER contents.
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

    pub struct Certificate<'a> {
        pub not_after: DateTime<Utc>,
        /// The SubjectPublicKeyInfo's algorithm OID.
        pub algorithm: &'a [u8],
        /// The subjectPublicKey bits (for RSA: the DER `RSAPublicKey`).
        pub public_key: &'a [u8],
    }

    /// One element: (tag, contents, what follows).
    fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
        const TRUNCATED: &str = "it is truncated";
        let (&tag, rest) = input.split_first().ok_or(TRUNCATED)?;
        let (&first, rest) = rest.split_first().ok_or(TRUNCATED)?;
        let (length, rest) = match first {
            0..=0x7f => (first as usize, rest),
            0x81..=0x84 => {
                let count = (first & 0x7f) as usize;
                if rest.len() < count {
                    return Err(TRUNCATED);
                }
                let length = rest[..count].iter().fold(0usize, |n, byte| (n << 8) | *byte as usize);
                (length, &rest[count..])
            }
            _ => return Err("it is not DER"),
        };
        if rest.len() < length {
            return Err(TRUNCATED);
        }
        Ok((tag, &rest[..length], &rest[length..]))
    }

    fn expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), &'static str> {
        match element(input)? {
            (found, contents, rest) if found == tag => Ok((contents, rest)),
            _ => Err("it is not an X.509 certificate"),
        }
    }

    const SEQUENCE: u8 = 0x30;

    pub fn certificate(der: &[u8]) -> Result<Certificate<'_>, &'static str> {
        let (certificate, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(certificate, SEQUENCE)?;
        // [0] version, when present.
        let tbs = match element(tbs)? {
            (0xa0, _, rest) => rest,
            _ => tbs,
        };
        let (_serial, tbs) = expect(tbs, 0x02)?;
        let (_signature, tbs) = expect(tbs, SEQUENCE)?;
        let (_issuer, tbs) = expect(tbs, SEQUENCE)?;
        let (validity, tbs) = expect(tbs, SEQUENCE)?;
        let (_subject, tbs) = expect(tbs, SEQUENCE)?;
        let (spki, _) = expect(tbs, SEQUENCE)?;
        let (_, _not_before, validity) = element(validity)?;
        let (tag, not_after, _) = element(validity)?;
        let not_after = time(tag, not_after)?;
        let (algorithm, spki) = expect(spki, SEQUENCE)?;
        let (algorithm, _) = expect(algorithm, 0x06)?;
        let (bits, _) = expect(spki, 0x03)?;
        let public_key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err("its public key is not a whole number of bytes"),
        };
        Ok(Certificate { not_after, algorithm, public_key })
    }

    /// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
    fn time(tag: u8, contents: &[u8]) -> Result<DateTime<Utc>, &'static str> {
        const BAD: &str = "its validity dates cannot be read";
        let text = std::str::from_utf8(contents).map_err(|_| BAD)?;
        let text = text.strip_suffix('Z').ok_or(BAD)?;
        let (year, rest) = match (tag, text.len()) {
            (0x17, 12) => {
                let yy: i32 = text[..2].parse().map_err(|_| BAD)?;
                (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
            }
            (0x18, 14) => (text[..4].parse().map_err(|_| BAD)?, &text[4..]),
            _ => return Err(BAD),
        };
        let part = |range: std::ops::Range<usize>| rest[range].parse::<u32>().map_err(|_| BAD);
        Utc.with_ymd_and_hms(year, part(0..2)?, part(2..4)?, part(4..6)?, part(6..8)?, part(8..10)?)
            .single()
            .ok_or(BAD)
    }
}
