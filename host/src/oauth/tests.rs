//! The token module: client assertions checked with the openssl command (an implementation
//! nobody here wrote), certificates and keys as administrators have them, and tokens fetched,
//! cached and refreshed against the Graph emulator's token endpoint.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use tandem_sim::graph::{AppCertificate, GraphSim, GraphSimConfig};

use super::*;

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).output().expect("the openssl command (scripts/setup installs it)")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A fresh certificate and key written to `dir` as `NAME.crt` / `NAME.key`.
fn app(dir: &Path, name: &str) -> (AppCertificate, PathBuf, PathBuf) {
    let made = AppCertificate::generate(90).unwrap();
    let (certificate, key) = made.write(dir, name).unwrap();
    (made, certificate, key)
}

fn decode(part: &str) -> Json {
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn an_assertion_carries_the_header_and_claims_microsoft_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (_, certificate_file, key_file) = app(dir.path(), "app");
    let credential = CertificateCredential::from_files(&certificate_file, Some(&key_file)).unwrap();
    let now = Utc::now();
    let token_url = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token";
    let assertion = credential.assertion("client-id", token_url, now).unwrap();
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "{assertion}");
    // The thumbprint as openssl computes it: SHA-256 of the DER, base64url.
    let fingerprint = openssl(&["x509", "-in", path(&certificate_file), "-noout", "-fingerprint", "-sha256"]);
    let fingerprint = String::from_utf8(fingerprint.stdout).unwrap();
    let hex_digits: String = fingerprint.trim().rsplit('=').next().unwrap().replace(':', "");
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(hex_digits).unwrap());
    assert_eq!(decode(parts[0]), serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": thumbprint}));
    let claims = decode(parts[1]);
    let at = now.timestamp();
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&jti).is_ok(), "{claims}");
    assert_eq!(
        claims,
        serde_json::json!({"aud": token_url, "iss": "client-id", "sub": "client-id", "jti": jti,
                           "nbf": at, "iat": at, "exp": at + 600}),
    );
    let again = credential.assertion("client-id", token_url, now).unwrap();
    assert_ne!(decode(again.split('.').nth(1).unwrap())["jti"], claims["jti"], "every assertion has its own jti");
}

#[test]
fn the_signature_verifies_with_the_certificate_and_with_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let (_, certificate_file, key_file) = app(dir.path(), "app");
    let (_, other_certificate, _) = app(dir.path(), "other");
    let credential = CertificateCredential::from_files(&certificate_file, Some(&key_file)).unwrap();
    let assertion = credential.assertion("client-id", "https://idp/token", Utc::now()).unwrap();
    let (signed, signature) = assertion.rsplit_once('.').unwrap();
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).unwrap();
    let (data, signature_file) = (dir.path().join("signed"), dir.path().join("signature"));
    std::fs::write(&signature_file, signature).unwrap();
    // RSASSA-PSS, SHA-256, MGF1-SHA-256, a 32-byte salt: JWS PS256 (RFC 7518 §3.5).
    let verify = |certificate: &Path, data_text: &str| {
        std::fs::write(&data, data_text).unwrap();
        let public = dir.path().join("public.pem");
        let key = openssl(&["x509", "-in", path(certificate), "-noout", "-pubkey"]);
        std::fs::write(&public, key.stdout).unwrap();
        let output = openssl(&[
            "dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
            "-sigopt", "rsa_mgf1_md:sha256", "-verify", path(&public), "-signature", path(&signature_file), path(&data),
        ]);
        output.status.success()
    };
    assert!(verify(&certificate_file, signed), "openssl verifies the assertion with the certificate's key");
    assert!(!verify(&other_certificate, signed), "another certificate's key does not verify it");
    assert!(!verify(&certificate_file, &signed.replace('.', ".x")), "nor does a changed assertion");
}

#[test]
fn certificates_and_keys_are_read_as_administrators_have_them() {
    let dir = tempfile::tempdir().unwrap();
    let (made, certificate_file, key_file) = app(dir.path(), "app");
    let (_, _, other_key) = app(dir.path(), "other");
    let loaded = CertificateCredential::from_files(&certificate_file, Some(&key_file)).unwrap();
    // notAfter as openssl reads it.
    let end = String::from_utf8(openssl(&["x509", "-in", path(&certificate_file), "-noout", "-enddate"]).stdout).unwrap();
    let end = end.trim().trim_start_matches("notAfter=").replace("  ", " ");
    let expected = chrono::NaiveDateTime::parse_from_str(&end, "%b %d %H:%M:%S %Y GMT").unwrap().and_utc();
    assert_eq!(loaded.not_after(), expected);
    assert!(!format!("{loaded:?}").contains("PRIVATE"), "Debug shows no key: {loaded:?}");
    let sha1 = String::from_utf8(openssl(&["x509", "-in", path(&certificate_file), "-noout", "-fingerprint", "-sha1"]).stdout).unwrap();
    assert_eq!(loaded.thumbprint_sha1_hex(), sha1.trim().rsplit('=').next().unwrap().replace(':', ""));

    // One PEM holding both, as `openssl pkcs12 -nodes` writes from a .pfx.
    let combined = dir.path().join("combined.pem");
    std::fs::write(&combined, format!("{}{}", made.certificate_pem, made.private_key_pem)).unwrap();
    assert_eq!(CertificateCredential::from_files(&combined, None).unwrap().thumbprint_sha256(), loaded.thumbprint_sha256());
    // A PKCS#1 key (`BEGIN RSA PRIVATE KEY`).
    let pkcs1 = dir.path().join("pkcs1.key");
    assert!(openssl(&["rsa", "-in", path(&key_file), "-traditional", "-out", path(&pkcs1)]).status.success());
    assert!(std::fs::read_to_string(&pkcs1).unwrap().contains("BEGIN RSA PRIVATE KEY"));
    CertificateCredential::from_files(&certificate_file, Some(&pkcs1)).unwrap();

    // What cannot work says which file and why.
    let error = CertificateCredential::from_files(&certificate_file, Some(&other_key)).unwrap_err();
    assert!(matches!(error, CredentialError::KeyMismatch { .. }), "{error}");
    let error = CertificateCredential::from_files(&certificate_file, None).unwrap_err();
    assert!(matches!(error, CredentialError::NoKey { .. }), "{error}");
    let encrypted = dir.path().join("encrypted.key");
    let made_encrypted = openssl(&["pkcs8", "-topk8", "-in", path(&key_file), "-passout", "pass:secret", "-out", path(&encrypted)]);
    assert!(made_encrypted.status.success());
    let error = CertificateCredential::from_files(&certificate_file, Some(&encrypted)).unwrap_err();
    assert!(matches!(error, CredentialError::BadKey { .. }) && error.to_string().contains("encrypted"), "{error}");
    assert!(error.hint().contains("-nocrypt"), "{}", error.hint());
    let error = CertificateCredential::from_files(&key_file, Some(&key_file)).unwrap_err();
    assert!(matches!(error, CredentialError::NoCertificate { .. }), "{error}");
    let error = CertificateCredential::from_files(&dir.path().join("missing.crt"), None).unwrap_err();
    assert!(matches!(error, CredentialError::Unreadable { .. }) && error.to_string().contains("missing.crt"), "{error}");
    // An EC certificate: certificate credentials are RSA (PS256, RS256).
    let (ec_certificate, ec_key) = (dir.path().join("ec.crt"), dir.path().join("ec.key"));
    let made_ec = openssl(&[
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=ec", "-days", "1",
        "-keyout", path(&ec_key), "-out", path(&ec_certificate),
    ]);
    assert!(made_ec.status.success());
    let error = CertificateCredential::from_files(&ec_certificate, Some(&ec_key)).unwrap_err();
    assert!(matches!(error, CredentialError::BadCertificate { .. }) && error.to_string().contains("RSA"), "{error}");
}

/// The Graph emulator with `certificates` registered and tokens living `lifetime`.
async fn emulator(certificates: Vec<String>, lifetime: Duration) -> (GraphSim, tandem_sim::RunningServer) {
    let sim = GraphSim::new(GraphSimConfig { certificates, token_lifetime: lifetime, ..Default::default() }).unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (sim, server)
}

fn source(sim: &GraphSim, server: &tandem_sim::RunningServer, credential: ClientCredential) -> TokenSource {
    let endpoint = TokenEndpoint {
        section: "graph",
        token_url: sim.token_url(&server.base_url()),
        client_id: sim.credentials().user.clone(),
        credential,
        scope: Some("https://graph.microsoft.com/.default".into()),
        secret_placement: SecretPlacement::Body,
    };
    let http = crate::transport::client_builder(&Default::default()).unwrap().build().unwrap();
    TokenSource::new(endpoint, http, RemoteRequests::graph()).unwrap()
}

fn token_requests(sim: &GraphSim) -> u64 {
    sim.stats().requests.get("POST token").copied().unwrap_or(0)
}

#[tokio::test]
async fn a_registered_certificate_signs_in_and_an_unregistered_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (made, certificate_file, key_file) = app(dir.path(), "app");
    let (_, stranger_file, stranger_key) = app(dir.path(), "stranger");
    let (sim, server) = emulator(vec![made.certificate_pem.clone()], Duration::from_secs(3599)).await;
    let certificate = Arc::new(CertificateCredential::from_files(&certificate_file, Some(&key_file)).unwrap());
    let tokens = source(&sim, &server, ClientCredential::Certificate(certificate.clone()));
    let token = tokens.token(false).await.unwrap();
    assert_eq!(tokens.token(false).await.unwrap(), token, "cached");
    assert_eq!(token_requests(&sim), 1);
    let expiry = tokens.expiry().unwrap();
    assert_eq!((expiry.endpoint, expiry.kind, expiry.expires_at), ("graph", "certificate", certificate.not_after()));

    let stranger = Arc::new(CertificateCredential::from_files(&stranger_file, Some(&stranger_key)).unwrap());
    let thumbprint = stranger.thumbprint_sha1_hex();
    let error = source(&sim, &server, ClientCredential::Certificate(stranger)).token(false).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(&error, TokenError::Refused { status: 401, code, .. } if code == "invalid_client"), "{error:?}");
    assert!(text.contains("AADSTS700027") && text.contains(&thumbprint) && text.contains("certificate_file"), "{text}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire_and_at_once_when_forced() {
    let (sim, server) = emulator(Vec::new(), Duration::from_secs(4)).await;
    let tokens = source(&sim, &server, sim.credentials().password.as_str().into());
    let first = tokens.token(false).await.unwrap();
    assert_eq!(tokens.token(false).await.unwrap(), first);
    assert_eq!(token_requests(&sim), 1, "cached while fresh");
    let forced = tokens.token(true).await.unwrap();
    assert_ne!(forced, first, "a forced refresh fetches a new token");
    assert_eq!(token_requests(&sim), 2);
    // A 4 s token is fetched again after half its life, before it expires: no request of the
    // connector ever carries an expired token.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let refreshed = tokens.token(false).await.unwrap();
    assert_ne!(refreshed, forced);
    assert_eq!(token_requests(&sim), 3);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let (sim, server) = emulator(Vec::new(), Duration::from_secs(3599)).await;
    let tokens = Arc::new(source(&sim, &server, sim.credentials().password.as_str().into()));
    let calls: Vec<_> = (0..8).map(|_| tokio::spawn({ let tokens = tokens.clone(); async move { tokens.token(false).await } })).collect();
    let mut seen = std::collections::BTreeSet::new();
    for call in calls {
        seen.insert(call.await.unwrap().unwrap());
    }
    assert_eq!((seen.len(), token_requests(&sim)), (1, 1));
}

#[tokio::test]
async fn a_refused_secret_says_what_to_fix_and_the_secret_is_never_shown() {
    let (sim, server) = emulator(Vec::new(), Duration::from_secs(3599)).await;
    // client_secret_basic works as well as client_secret_post.
    let mut basic = source(&sim, &server, sim.credentials().password.as_str().into());
    basic.endpoint.secret_placement = SecretPlacement::BasicHeader;
    basic.token(false).await.unwrap();

    let wrong = source(&sim, &server, "not-the-secret-42".into());
    let error = wrong.token(false).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, TokenError::Refused { status: 401, .. }), "{error:?}");
    assert!(text.contains("AADSTS7000215") && text.contains("[graph] client_id") && text.contains("app registration"), "{text}");
    assert!(!format!("{text} {error:?} {wrong:?}").contains("not-the-secret-42"), "the secret never shows");
    assert_eq!(error.status(), Some(401));

    // Nobody listening: transient, naming the URL to check.
    let gone = format!("{}/tenant/oauth2/v2.0/token", server.base_url());
    server.stop().await;
    let mut unreachable = wrong;
    unreachable.endpoint.token_url = gone;
    let error = unreachable.token(false).await.unwrap_err();
    assert!(matches!(error, TokenError::Unreachable { .. }) && error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("token_url"), "{error}");
}

#[test]
fn replies_are_read_as_rfc_6749_allows() {
    let json = |text: &str| serde_json::from_str::<Json>(text).unwrap();
    assert_eq!(parse_token(&json(r#"{"access_token":"t","expires_in":60}"#)), Ok(("t".into(), Duration::from_secs(60))));
    assert_eq!(parse_token(&json(r#"{"access_token":"t","expires_in":"3599"}"#)), Ok(("t".into(), Duration::from_secs(3599))));
    assert_eq!(parse_token(&json(r#"{"access_token":"t"}"#)), Ok(("t".into(), DEFAULT_LIFETIME)));
    assert!(parse_token(&json(r#"{"access_token":""}"#)).is_err());
    assert!(parse_token(&json(r#"{"expires_in":60}"#)).is_err());
    assert!(parse_token(&json(r#"{"access_token":"t","expires_in":-5}"#)).is_err());
    assert!(parse_token(&json("[]")).is_err());
    let huge = parse_token(&json(r#"{"access_token":"t","expires_in":18446744073709551615}"#));
    assert_eq!(huge, Ok(("t".into(), MAX_LIFETIME)), "an absurd lifetime cannot overflow the clock");
    // Whatever arrives, reading it never panics.
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x70c3);
    let fragments = ["{", "}", "\"access_token\"", ":", ",", "\"expires_in\"", "\"t\"", "1e400", "-1", "\"99999999999999999999\"", "null", "[]"];
    for _ in 0..20_000 {
        let body: String = (0..rng.random_range(0..12)).map(|_| fragments[rng.random_range(0..fragments.len())]).collect();
        if let Ok(value) = serde_json::from_str::<Json>(&body) {
            let _ = parse_token(&value);
        }
    }
}

/// Log lines written while `f` runs on this thread.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn a_credential_near_its_expiry_is_warned_about_once() {
    let endpoint = |expires_at: Option<DateTime<Utc>>| TokenEndpoint {
        section: "graph",
        token_url: "https://login.example/tenant/oauth2/v2.0/token".into(),
        client_id: "app".into(),
        credential: ClientCredential::Secret(ClientSecret::new("s3cr3t").expiring_at(expires_at)),
        scope: None,
        secret_placement: SecretPlacement::Body,
    };
    let http = || crate::transport::client_builder(&Default::default()).unwrap().build().unwrap();
    let soon = Utc::now() + chrono::Duration::days(10);
    let log = logged(|| {
        let tokens = TokenSource::new(endpoint(Some(soon)), http(), RemoteRequests::graph()).unwrap();
        tokens.warn_if_expiring(Utc::now());
        tokens.warn_if_expiring(Utc::now());
        assert_eq!(tokens.expiry().map(|e| (e.kind, e.expires_at)), Some(("secret", soon)));
    });
    assert_eq!(log.matches("expires in").count(), 1, "{log}");
    assert!(log.contains("WARN") && log.contains("[graph]") && log.contains("renew"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
    let log = logged(|| {
        let tokens = TokenSource::new(endpoint(Some(Utc::now() + chrono::Duration::days(60))), http(), RemoteRequests::graph()).unwrap();
        tokens.warn_if_expiring(Utc::now());
    });
    assert!(log.is_empty(), "two months left: nothing to say: {log}");
    let log = logged(|| {
        let tokens = TokenSource::new(endpoint(None), http(), RemoteRequests::graph()).unwrap();
        assert_eq!(tokens.expiry(), None);
    });
    assert!(log.is_empty(), "{log}");
    let log = logged(|| {
        TokenSource::new(endpoint(Some(Utc::now() - chrono::Duration::days(1))), http(), RemoteRequests::graph()).unwrap();
    });
    assert!(log.contains("has expired"), "{log}");
}
