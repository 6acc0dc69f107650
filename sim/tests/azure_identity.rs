//! Certificate credentials with a client nobody here wrote: azure-identity's
//! `CertificateCredential` (MSAL signs the client assertion, PS256 with `x5t#S256`) gets a
//! Graph token from the emulator over HTTPS, and the token reads a mailbox
//! (`tests/interop/azure_identity_certificate.py`). Proves the emulator's assertion check
//! accepts what Microsoft's own library sends. Without python3/azure-identity: fails when `CI`
//! is set, otherwise prints a notice and returns (scripts/setup installs it with msgraph-sdk).
#![allow(clippy::unwrap_used)]

mod peer;

use serde_json::json;
use tandem_sim::SimTls;
use tandem_sim::graph::{AppCertificate, GraphSim, GraphSimConfig};

const MAILBOX: &str = "alice@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_identity_signs_in_with_a_certificate() {
    if !peer::available("azure-identity", "azure.identity, msal") {
        return;
    }
    let app = AppCertificate::generate(30).unwrap();
    let sim = GraphSim::new(GraphSimConfig { certificates: vec![app.certificate_pem.clone()], ..Default::default() }).unwrap();
    sim.create_item(MAILBOX, "contacts", json!({"givenName": "Ada", "surname": "Lovelace"})).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls = SimTls::generate().unwrap();
    let ca = tls.write_ca(dir.path(), "ca.pem").unwrap();
    let server = sim.serve_tls("127.0.0.1:0".parse().unwrap(), &tls).await.unwrap();
    let base = server.base_url();
    // azure-identity reads the certificate and its key from one PEM.
    let combined = dir.path().join("app.pem");
    std::fs::write(&combined, format!("{}{}", app.certificate_pem, app.private_key_pem)).unwrap();
    let mut command = peer::script("azure_identity_certificate.py");
    command
        .arg(base.trim_start_matches("https://"))
        .arg(sim.tenant_id())
        .arg(&sim.credentials().user)
        .arg(&combined)
        .arg(format!("{base}/v1.0"))
        .arg(MAILBOX)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("SSL_CERT_FILE", &ca)
        .env("NO_PROXY", "127.0.0.1,localhost");
    let stdout = peer::output(command, "azure_identity_certificate.py").await;
    assert!(stdout.contains("azure-identity ok"), "{stdout}");
    assert_eq!(sim.stats().requests.get("POST token"), Some(&1), "one token request: {:?}", sim.stats());
    server.stop().await;
}
