//! Certificate credentials with a client nobody here wrote: azure-identity's
//! `CertificateCredential` (MSAL signs the client assertion, PS256 with `x5t#S256`) gets a
//! Graph token from the emulator over HTTPS, and the token reads a mailbox
//! (`tests/interop/azure_identity_certificate.py`). Proves the emulator's assertion check
//! accepts what Microsoft's own library sends. Without python3/azure-identity: fails when `CI`
//! is set, otherwise prints a notice and returns (scripts/setup installs it with msgraph-sdk).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tandem_sim::SimTls;
use tandem_sim::graph::{AppCertificate, GraphSim, GraphSimConfig};

const MAILBOX: &str = "alice@example.com";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn azure_identity_available() -> bool {
    let importable = Command::new("python3")
        .args(["-c", "import azure.identity, msal"])
        .output()
        .is_ok_and(|o| o.status.success());
    if importable {
        return true;
    }
    let problem = "python3 with azure-identity is not installed (run scripts/setup)";
    if std::env::var_os("CI").is_some() {
        panic!("the azure-identity interoperability test cannot run: {problem}");
    }
    eprintln!("NOTICE: skipping the azure-identity interoperability test: {problem}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_identity_signs_in_with_a_certificate() {
    if !azure_identity_available() {
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
    let run = tokio::process::Command::new("python3")
        .arg(repo_path("tests/interop/azure_identity_certificate.py"))
        .arg(base.trim_start_matches("https://"))
        .arg(sim.tenant_id())
        .arg(&sim.credentials().user)
        .arg(&combined)
        .arg(format!("{base}/v1.0"))
        .arg(MAILBOX)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("SSL_CERT_FILE", &ca)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the azure-identity script did not finish within 120 s")
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "azure-identity script failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("azure-identity ok"), "{stdout}");
    assert_eq!(sim.stats().requests.get("POST token"), Some(&1), "one token request: {:?}", sim.stats());
    server.stop().await;
}
