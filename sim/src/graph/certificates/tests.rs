//! The client-assertion check, one refusal per test: each assertion is signed here with
//! ring (PS256 or RS256) from a certificate and key the openssl command made, then one
//! thing about it is made wrong.
#![allow(clippy::unwrap_used)]

use ring::signature::RsaKeyPair;
use rustls::pki_types::PrivateKeyDer;
use serde_json::json;

use super::*;

const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const AUDIENCE: &str = "http://127.0.0.1:1/tenant/oauth2/v2.0/token";
const NOW: i64 = 1_800_000_000;

struct App {
    registered: RegisteredCertificate,
    key: RsaKeyPair,
}

fn app() -> App {
    let made = AppCertificate::generate(30).unwrap();
    let key = match PrivateKeyDer::from_pem_slice(made.private_key_pem.as_bytes()).unwrap() {
        PrivateKeyDer::Pkcs8(key) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()).unwrap(),
        other => panic!("openssl wrote a {other:?} key"),
    };
    App { registered: RegisteredCertificate::from_pem(&made.certificate_pem).unwrap(), key }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn good_claims() -> Value {
    json!({"aud": AUDIENCE, "iss": CLIENT, "sub": CLIENT, "jti": uuid::Uuid::new_v4().to_string(),
           "nbf": NOW, "iat": NOW, "exp": NOW + 600})
}

impl App {
    fn header(&self) -> Value {
        json!({"alg": "PS256", "typ": "JWT", "x5t#S256": b64(&self.registered.sha256)})
    }

    /// `header.claims.signature`, signed with this app's key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let signed = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let padding: &'static dyn ring::signature::RsaEncoding = match header["alg"].as_str() {
            Some("RS256") => &ring::signature::RSA_PKCS1_SHA256,
            _ => &ring::signature::RSA_PSS_SHA256,
        };
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key.sign(padding, &ring::rand::SystemRandom::new(), signed.as_bytes(), &mut signature).unwrap();
        format!("{signed}.{}", b64(&signature))
    }
}

fn check(assertion: &str, certificates: &[RegisteredCertificate], seen: &mut SeenAssertions) -> Result<(), Refusal> {
    let expected = Expected { client_id: CLIENT, audience: AUDIENCE, certificates, now: NOW };
    check_assertion(assertion, &expected, seen)
}

fn refusal(assertion: &str, certificates: &[RegisteredCertificate]) -> Refusal {
    check(assertion, certificates, &mut SeenAssertions::default()).expect_err("refused")
}

#[test]
fn a_well_made_assertion_passes_as_ps256_with_x5t_s256_or_rs256_with_x5t() {
    let app = app();
    let registered = [app.registered.clone()];
    let mut seen = SeenAssertions::default();
    check(&app.sign(&app.header(), &good_claims()), &registered, &mut seen).unwrap();
    // The older format: RS256 and the SHA-1 thumbprint, which Entra ID still takes; fractional
    // seconds as MSAL Python writes them, and no nbf.
    let legacy = json!({"alg": "RS256", "typ": "JWT", "x5t": b64(&app.registered.sha1)});
    let claims = json!({"aud": AUDIENCE, "iss": CLIENT, "sub": CLIENT, "jti": "a-jti",
                        "iat": NOW as f64 + 0.25, "exp": NOW as f64 + 600.25});
    check(&app.sign(&legacy, &claims), &registered, &mut seen).unwrap();
}

#[test]
fn a_signature_made_with_another_key_is_refused() {
    let (app, other) = (app(), app());
    // The header names the registered certificate, the signature is the other key's.
    let forged = other.sign(&app.header(), &good_claims());
    let refused = refusal(&forged, &[app.registered.clone()]);
    assert_eq!((refused.status, refused.error, refused.code), (StatusCode::UNAUTHORIZED, "invalid_client", 700027));
    assert!(refused.description.contains("did not match the expected signature"), "{refused:?}");
    // A claim changed after signing breaks the signature too.
    let signed = app.sign(&app.header(), &good_claims());
    let parts: Vec<&str> = signed.split('.').collect();
    let tampered = json!({"aud": AUDIENCE, "iss": CLIENT, "sub": CLIENT, "jti": "x", "nbf": NOW, "exp": NOW + 60});
    let tampered = format!("{}.{}.{}", parts[0], b64(tampered.to_string().as_bytes()), parts[2]);
    assert_eq!(refusal(&tampered, &[app.registered.clone()]).code, 700027);
}

#[test]
fn a_certificate_not_registered_with_the_app_is_refused() {
    let (app, other) = (app(), app());
    let assertion = other.sign(&other.header(), &good_claims());
    let refused = refusal(&assertion, &[app.registered.clone()]);
    assert_eq!((refused.status, refused.error, refused.code), (StatusCode::UNAUTHORIZED, "invalid_client", 700027));
    assert!(refused.description.contains("The key was not found"), "{refused:?}");
    assert!(refused.description.contains(&hex::encode_upper(other.registered.sha256)), "names the thumbprint: {refused:?}");
    // An app with no certificate at all.
    assert_eq!(refusal(&assertion, &[]).code, 700026);
    // No thumbprint in the header.
    let bare = other.sign(&json!({"alg": "PS256", "typ": "JWT"}), &good_claims());
    let refused = refusal(&bare, &[other.registered.clone()]);
    assert_eq!((refused.error, refused.code), ("invalid_request", 50027));
    assert!(refused.description.contains("No certificate thumbprint"), "{refused:?}");
}

#[test]
fn the_audience_must_be_the_token_endpoint() {
    let app = app();
    for audience in [
        "https://login.microsoftonline.com/tenant/oauth2/v2.0/token",
        "http://127.0.0.1:1/tenant/v2.0",
        "http://127.0.0.1:1/tenant/oauth2/v2.0/token/",
    ] {
        let mut claims = good_claims();
        claims["aud"] = json!(audience);
        let refused = refusal(&app.sign(&app.header(), &claims), &[app.registered.clone()]);
        assert_eq!((refused.status, refused.error, refused.code), (StatusCode::BAD_REQUEST, "invalid_client", 700023), "{audience}");
    }
}

#[test]
fn issuer_and_subject_must_be_the_client_id() {
    let app = app();
    for (claim, value) in [("iss", "someone-else"), ("sub", "someone-else")] {
        let mut claims = good_claims();
        claims[claim] = json!(value);
        assert_eq!(refusal(&app.sign(&app.header(), &claims), &[app.registered.clone()]).code, 700021, "{claim}");
    }
}

#[test]
fn an_expired_early_or_long_lived_assertion_is_refused() {
    let app = app();
    let cases = [
        ("expired", json!(NOW - 600), json!(NOW)),
        ("expired a second ago", json!(NOW - 601), json!(NOW - 1)),
        ("not valid yet", json!(NOW + 60), json!(NOW + 600)),
        ("valid for longer than 10 minutes", json!(NOW), json!(NOW + 601)),
    ];
    for (case, nbf, exp) in cases {
        let mut claims = good_claims();
        claims["nbf"] = nbf;
        claims["iat"] = json!(NOW);
        claims["exp"] = exp;
        let refused = refusal(&app.sign(&app.header(), &claims), &[app.registered.clone()]);
        assert_eq!((refused.status, refused.error, refused.code), (StatusCode::BAD_REQUEST, "invalid_client", 700024), "{case}");
        assert!(refused.description.contains("not within its valid time range"), "{case}: {refused:?}");
    }
    let mut no_exp = good_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(refusal(&app.sign(&app.header(), &no_exp), &[app.registered.clone()]).code, 50027);
}

#[test]
fn an_assertion_is_taken_once() {
    let app = app();
    let registered = [app.registered.clone()];
    let mut seen = SeenAssertions::default();
    let assertion = app.sign(&app.header(), &good_claims());
    check(&assertion, &registered, &mut seen).unwrap();
    let refused = check(&assertion, &registered, &mut seen).expect_err("replayed");
    assert_eq!((refused.status, refused.error, refused.code), (StatusCode::BAD_REQUEST, "invalid_client", 50013));
    // The same jti in a freshly signed assertion is a replay too; another jti passes.
    let mut claims = good_claims();
    let first: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(assertion.split('.').nth(1).unwrap()).unwrap()).unwrap();
    claims["jti"] = first["jti"].clone();
    assert_eq!(check(&app.sign(&app.header(), &claims), &registered, &mut seen).map_err(|r| r.code), Err(50013));
    check(&app.sign(&app.header(), &good_claims()), &registered, &mut seen).unwrap();
    let mut no_jti = good_claims();
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(check(&app.sign(&app.header(), &no_jti), &registered, &mut seen).map_err(|r| r.code), Err(50027));
}

#[test]
fn what_is_not_a_jwt_is_malformed() {
    let app = app();
    for garbage in ["", "a.b", "a.b.c.d", "e30.e30.e30", "not base64!.e30.AA"] {
        let refused = refusal(garbage, &[app.registered.clone()]);
        assert_eq!((refused.error, refused.code), ("invalid_request", 50027), "{garbage:?}");
    }
    let none = app.sign(&json!({"alg": "none", "typ": "JWT", "x5t#S256": b64(&app.registered.sha256)}), &good_claims());
    assert_eq!(refusal(&none, &[app.registered.clone()]).code, 50027);
}
