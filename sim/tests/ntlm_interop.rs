//! The EWS emulator's NTLM and Negotiate acceptor against clients nobody here wrote: starts
//! the emulator offering `negotiate,ntlm` and runs `tests/interop/ntlm_signin.py`, where
//! requests-ntlm and pyspnego sign in (and fail with a wrong password). Without python3 and
//! those packages: fails when `CI` is set, otherwise prints a notice and returns
//! (scripts/setup installs them).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tandem_sim::Credentials;
use tandem_sim::ews::{AuthScheme, EwsSim, EwsSimConfig};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn python_packages_available() -> bool {
    let importable = Command::new("python3")
        .args(["-c", "import spnego, requests_ntlm"])
        .output()
        .is_ok_and(|o| o.status.success());
    if importable {
        return true;
    }
    let problem = "python3 with pyspnego and requests-ntlm is not installed (run scripts/setup)";
    if std::env::var_os("CI").is_some() {
        panic!("the NTLM interoperability test cannot run: {problem}");
    }
    eprintln!("NOTICE: skipping the NTLM interoperability test: {problem}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_ntlm_and_pyspnego_sign_in_to_the_emulator() {
    if !python_packages_available() {
        return;
    }
    let sim = EwsSim::new(EwsSimConfig {
        credentials: Credentials::new(r"TANDEM\svc-tandem", "S3cret-for-interop"),
        auth: vec![AuthScheme::Negotiate, AuthScheme::Ntlm],
        ..Default::default()
    })
    .unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let credentials = sim.credentials().clone();
    let run = tokio::process::Command::new("python3")
        .arg(repo_path("tests/interop/ntlm_signin.py"))
        .arg(format!("{}/EWS/Exchange.asmx", server.base_url()))
        .arg(&credentials.user)
        .arg(&credentials.password)
        .arg("alice@example.com")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the NTLM interoperability script did not finish within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ntlm_signin.py failed ({}):\n{stdout}\n{stderr}", output.status);
    for line in ["ntlm: ok", "negotiate: ok", "negotiate wrong password: ok"] {
        assert!(stdout.lines().any(|l| l == line), "no `{line}`:\n{stdout}");
    }
    let stats = sim.stats();
    assert_eq!(stats.sign_ins.get("ntlm").copied(), Some(1), "{stats:?}");
    assert_eq!(stats.sign_ins.get("negotiate").copied(), Some(1), "{stats:?}");
    assert_eq!(stats.sign_ins.get("refused").copied(), Some(2), "{stats:?}");
    server.stop().await;
}
