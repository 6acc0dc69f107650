//! The EWS emulator's NTLM and Negotiate acceptor against clients nobody here wrote: starts
//! the emulator offering `negotiate,ntlm` and runs `tests/interop/ntlm_signin.py`, where
//! requests-ntlm and pyspnego sign in (and fail with a wrong password). Without python3 and
//! those packages: fails when `CI` is set, otherwise prints a notice and returns
//! (scripts/setup installs them).
#![allow(clippy::unwrap_used)]

mod peer;

use tandem_sim::Credentials;
use tandem_sim::ews::{AuthScheme, EwsSim, EwsSimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_ntlm_and_pyspnego_sign_in_to_the_emulator() {
    if !peer::available("pyspnego and requests-ntlm", "spnego, requests_ntlm") {
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
    let mut command = peer::script("ntlm_signin.py");
    command
        .arg(format!("{}/EWS/Exchange.asmx", server.base_url()))
        .arg(&credentials.user)
        .arg(&credentials.password)
        .arg("alice@example.com");
    let stdout = peer::output(command, "ntlm_signin.py").await;
    for line in ["ntlm: ok", "negotiate: ok", "negotiate wrong password: ok"] {
        assert!(stdout.lines().any(|l| l == line), "no `{line}`:\n{stdout}");
    }
    let stats = sim.stats();
    assert_eq!(stats.sign_ins.get("ntlm").copied(), Some(1), "{stats:?}");
    assert_eq!(stats.sign_ins.get("negotiate").copied(), Some(1), "{stats:?}");
    assert_eq!(stats.sign_ins.get("refused").copied(), Some(2), "{stats:?}");
    server.stop().await;
}
