//! The EWS connector's NTLM and Negotiate against an acceptor nobody here wrote: pyspnego's,
//! behind `tests/interop/ntlm_acceptor.py` (a tiny HTTP server that keeps a sign-in per
//! connection, as IIS does). Each scheme signs in once and reuses its connection; a wrong
//! password is Unauthorized. Without python3 and pyspnego: fails when `CI` is set,
//! otherwise prints a notice and returns (scripts/setup installs it).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tandem_host::exchange::ews::{EwsAuth, EwsClient, EwsConfig, EwsError, Folder};
use tokio::io::AsyncBufReadExt as _;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn pyspnego_available() -> bool {
    let importable = std::process::Command::new("python3")
        .args(["-c", "import spnego"])
        .output()
        .is_ok_and(|o| o.status.success());
    if importable {
        return true;
    }
    let problem = "python3 with pyspnego is not installed (run scripts/setup)";
    if std::env::var_os("CI").is_some() {
        panic!("the pyspnego acceptor test cannot run: {problem}");
    }
    eprintln!("NOTICE: skipping the pyspnego acceptor test: {problem}");
    false
}

fn client(url: &str, auth: EwsAuth, password: &str) -> EwsClient {
    EwsClient::new(EwsConfig {
        endpoint: format!("{url}/EWS/Exchange.asmx"),
        user: r"CONTOSO\svc-tandem".into(),
        password: password.into(),
        auth,
        transport: Default::default(),
    })
    .unwrap()
    .with_retry(2, Duration::from_millis(20))
}

async fn stats(url: &str) -> serde_json::Value {
    let http = tandem_host::transport::client_builder(&Default::default()).unwrap().build().unwrap();
    http.get(format!("{url}/stats")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_and_negotiate_sign_in_to_pyspnegos_acceptor() {
    if !pyspnego_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("ntlm-users");
    std::fs::write(&users, "CONTOSO:svc-tandem:Pa55-for-pyspnego\n").unwrap();
    let mut server = tokio::process::Command::new("python3")
        .arg(repo_path("tests/interop/ntlm_acceptor.py"))
        .env("NTLM_USER_FILE", &users)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("listening: ") {
                return url.to_owned();
            }
        }
        panic!("the acceptor ended before listening");
    })
    .await
    .expect("the acceptor did not start within 30 s");

    for (scheme, name) in [(EwsAuth::Ntlm, "ntlm"), (EwsAuth::Negotiate, "negotiate")] {
        let ews = client(&url, scheme, "Pa55-for-pyspnego");
        for _ in 0..3 {
            let ids = ews.find_item_ids("alice@example.com", Folder::Contacts).await;
            assert!(ids.as_ref().is_ok_and(Vec::is_empty), "{name}: {ids:?}");
        }
        let connections = ews.connection_stats();
        assert_eq!((connections.handshakes, connections.opened), (1, 1), "{name}: {connections:?}");
        assert_eq!(stats(&url).await["handshakes"][name], 1, "{name}: pyspnego completed one handshake");
    }
    assert_eq!(stats(&url).await["served"], 6);

    let wrong = client(&url, EwsAuth::Ntlm, "wrong");
    let error = wrong.find_item_ids("alice@example.com", Folder::Contacts).await.unwrap_err();
    assert!(matches!(error, EwsError::Unauthorized), "{error:?}");
    assert_eq!(stats(&url).await["refused"], 1);
    server.start_kill().unwrap();
    let _ = server.wait().await;
}
