//! Certificate credentials at the emulated token endpoint: the certificates registered with
//! the app (as uploaded under "Certificates & secrets"), and the strict check of a client
//! assertion against them that Entra ID makes ("Microsoft identity platform application
//! authentication certificate credentials", learn.microsoft.com/entra/identity-platform/certificate-credentials).
//!
//! An assertion passes when: it is a JWT of three base64url parts; `alg` is `PS256` or `RS256`;
//! `x5t#S256` (or `x5t`, SHA-1) names a registered certificate; the signature verifies with
//! that certificate's public key; `iss` and `sub` are the `client_id`; `aud` is the token
//! endpoint's URL; `exp` is in the future and at most ten minutes after `nbf` (or `iat`);
//! `nbf` is not in the future; its `jti` was not seen before. Each refusal is answered as
//! Entra ID answers it: `invalid_client` (or `invalid_request`) with an `AADSTS…` code.
//!
//! [`AppCertificate::generate`] makes an RSA certificate and key with the `openssl` command
//! (ring, the emulators' crypto, cannot make RSA keys), for tests and demos.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use axum::http::StatusCode;
use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may be valid: Microsoft advises "5-10 minutes after `nbf` at
/// most" and says Entra ID does not enforce it; the emulator does (the stricter reading).
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 600;

/// A certificate registered with the app.
#[derive(Debug, Clone)]
pub struct RegisteredCertificate {
    der: Vec<u8>,
    sha256: [u8; 32],
    sha1: Vec<u8>,
}

impl RegisteredCertificate {
    /// The first certificate of a PEM text; refused when webpki cannot read it.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .context("no -----BEGIN CERTIFICATE----- block")?
            .to_vec();
        webpki::EndEntityCert::try_from(&CertificateDer::from(der.as_slice()))
            .map_err(|e| anyhow::anyhow!("the certificate cannot be read: {e}"))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref().to_vec();
        Ok(Self { sha256: Sha256::digest(&der).into(), sha1, der })
    }

    /// The SHA-1 thumbprint in upper-case hex, as Entra ID names keys in its messages.
    pub fn thumbprint_hex(&self) -> String {
        hex::encode_upper(&self.sha1)
    }
}

/// A refusal as Entra ID words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// The OAuth `error`.
    pub error: &'static str,
    /// The `AADSTS` number.
    pub code: u32,
    pub description: String,
}

impl Refusal {
    fn invalid_client(status: StatusCode, code: u32, description: impl Into<String>) -> Self {
        Self { status, error: "invalid_client", code, description: description.into() }
    }

    fn malformed(description: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            code: 50027,
            description: format!("Invalid JWT token. {description}"),
        }
    }
}

/// What an assertion is checked against.
pub struct Expected<'a> {
    pub client_id: &'a str,
    /// The token endpoint's own URL.
    pub audience: &'a str,
    pub certificates: &'a [RegisteredCertificate],
    /// Seconds since the epoch.
    pub now: i64,
}

/// The `jti`s seen, each kept until its assertion expires.
#[derive(Debug, Default)]
pub struct SeenAssertions {
    expiry_by_jti: HashMap<String, i64>,
}

/// Checks a client assertion; on success its `jti` is remembered.
pub fn check_assertion(assertion: &str, expected: &Expected<'_>, seen: &mut SeenAssertions) -> Result<(), Refusal> {
    let parts: Vec<&str> = assertion.trim().split('.').collect();
    let [header_part, claims_part, signature_part] = parts[..] else {
        return Err(Refusal::malformed("The token is not a JWT of three parts."));
    };
    let decode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let json = |part: &str| -> Option<Value> { serde_json::from_slice(&decode(part).ok()?).ok().filter(Value::is_object) };
    let (Some(header), Some(claims)) = (json(header_part), json(claims_part)) else {
        return Err(Refusal::malformed("The token is malformed."));
    };
    let signature = decode(signature_part).map_err(|_| Refusal::malformed("The signature is not base64url."))?;
    let algorithm: &dyn rustls::pki_types::SignatureVerificationAlgorithm =
        match header.get("alg").and_then(Value::as_str) {
            Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(Refusal::malformed(&format!(
                    "The algorithm {} is not supported; use PS256 (or RS256).",
                    other.unwrap_or("(none)")
                )));
            }
        };
    let thumbprint = |name: &str| header.get(name).and_then(Value::as_str).and_then(|t| decode(t).ok());
    let (sha256, sha1) = (thumbprint("x5t#S256"), thumbprint("x5t"));
    if sha256.is_none() && sha1.is_none() {
        return Err(Refusal::malformed("No certificate thumbprint specified in token header."));
    }
    if expected.certificates.is_empty() {
        return Err(Refusal::invalid_client(StatusCode::UNAUTHORIZED, 700026, "Client application has no configured keys."));
    }
    let found = expected.certificates.iter().find(|registered| match (&sha256, &sha1) {
        (Some(sha256), _) => sha256.as_slice() == registered.sha256.as_slice(),
        (None, Some(sha1)) => *sha1 == registered.sha1,
        (None, None) => false,
    });
    let presented = sha256.as_deref().or(sha1.as_deref()).map(hex::encode_upper).unwrap_or_default();
    let Some(certificate) = found else {
        return Err(Refusal::invalid_client(
            StatusCode::UNAUTHORIZED,
            700027,
            format!("Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{presented}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]", expected.client_id),
        ));
    };
    let der = CertificateDer::from(certificate.der.as_slice());
    let verified = webpki::EndEntityCert::try_from(&der)
        .is_ok_and(|parsed| {
            let signed = format!("{header_part}.{claims_part}");
            parsed.verify_signature(algorithm, signed.as_bytes(), &signature).is_ok()
        });
    if !verified {
        return Err(Refusal::invalid_client(
            StatusCode::UNAUTHORIZED,
            700027,
            format!("Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{presented}', Found key '{}']", certificate.thumbprint_hex()),
        ));
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(expected.client_id) || text("sub") != Some(expected.client_id) {
        return Err(Refusal::invalid_client(
            StatusCode::BAD_REQUEST,
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        ));
    }
    if text("aud") != Some(expected.audience) {
        return Err(Refusal::invalid_client(
            StatusCode::BAD_REQUEST,
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials . Expected audience: '{}'.",
                expected.audience
            ),
        ));
    }
    // Whole or fractional seconds (MSAL Python writes `time.time()` floats).
    let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t.floor() as i64);
    let Some(exp) = time("exp") else {
        return Err(Refusal::malformed("The token has no 'exp' claim."));
    };
    let start = time("nbf").or(time("iat"));
    let out_of_range = |why: &str| {
        Refusal::invalid_client(
            StatusCode::BAD_REQUEST,
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. {why}",
                timestamp(expected.now),
                start.map(timestamp).unwrap_or_else(|| "(not given)".into()),
                timestamp(exp)
            ),
        )
    };
    if exp <= expected.now {
        return Err(out_of_range("The assertion has expired."));
    }
    if time("nbf").is_some_and(|nbf| nbf > expected.now) {
        return Err(out_of_range("The assertion is not valid yet."));
    }
    if exp - start.unwrap_or(expected.now).min(expected.now) > MAX_ASSERTION_LIFETIME_SECS {
        return Err(out_of_range("An assertion may be valid for at most 10 minutes."));
    }
    let Some(jti) = text("jti").filter(|jti| !jti.is_empty()) else {
        return Err(Refusal::malformed("The token has no 'jti' claim."));
    };
    seen.expiry_by_jti.retain(|_, expires| *expires > expected.now);
    if seen.expiry_by_jti.contains_key(jti) {
        return Err(Refusal::invalid_client(
            StatusCode::BAD_REQUEST,
            50013,
            format!("Assertion is invalid: the assertion with jti '{jti}' was already used; make a new assertion for each request."),
        ));
    }
    seen.expiry_by_jti.insert(jti.to_owned(), exp);
    Ok(())
}

/// Seconds since the epoch as Entra ID prints times in messages.
fn timestamp(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%m/%d/%Y %H:%M:%S").to_string())
        .unwrap_or_else(|| seconds.to_string())
}

/// A self-signed RSA certificate and its private key in PEM, as an administrator makes one
/// to upload to an app registration.
#[derive(Clone)]
pub struct AppCertificate {
    pub certificate_pem: String,
    /// PKCS#8, unencrypted.
    pub private_key_pem: String,
}

impl std::fmt::Debug for AppCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCertificate").finish_non_exhaustive()
    }
}

impl AppCertificate {
    /// A 2048-bit RSA key and a certificate valid for `days` (at least 1), made with
    /// `openssl req -x509`.
    pub fn generate(days: u32) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("a temporary folder for openssl")?;
        let (certificate, key) = (dir.path().join("app.crt"), dir.path().join("app.key"));
        let output = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=tandem-app"])
            .arg("-days")
            .arg(days.max(1).to_string())
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .output()
            .context("cannot run `openssl` (install the openssl package; scripts/setup does)")?;
        anyhow::ensure!(output.status.success(), "openssl req failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(Self {
            certificate_pem: std::fs::read_to_string(&certificate)?,
            private_key_pem: std::fs::read_to_string(&key)?,
        })
    }

    /// Writes `NAME.crt` and `NAME.key` (owner-only) into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (certificate, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&certificate, &self.certificate_pem)?;
        write_private(&key, &self.private_key_pem)?;
        Ok((certificate, key))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests;
