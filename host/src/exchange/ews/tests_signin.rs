//! Windows sign-in (NTLM, Negotiate) of the EWS connector against the emulator's own NTLM
//! acceptor: one handshake per connection, connections reused, a dropped sign-in renewed,
//! wrong passwords and wrong schemes told apart, streaming notifications on a signed-in
//! connection of their own, and the tunnel through an HTTP proxy; and OAuth bearer tokens.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_sim::RunningServer;
use tandem_sim::ews::{AuthScheme, EwsSim, EwsSimConfig};
use tandem_sim::tls::SimTls;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use super::*;

const MAILBOX: &str = "alice@example.com";
const USER: &str = r"TANDEM\svc-tandem";
const PASSWORD: &str = "ews-sim";

async fn emulator(schemes: &[AuthScheme]) -> (EwsSim, RunningServer) {
    let sim = EwsSim::new(EwsSimConfig {
        credentials: tandem_sim::Credentials::new(USER, PASSWORD),
        auth: schemes.to_vec(),
        ..Default::default()
    })
    .unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (sim, server)
}

fn client(url: &str, auth: EwsAuth, user: &str, password: &str, transport: crate::transport::Transport) -> EwsClient {
    EwsClient::new(EwsConfig {
        endpoint: format!("{url}/EWS/Exchange.asmx"),
        user: user.into(),
        password: password.into(),
        auth,
        transport,
    })
    .unwrap()
    .with_retry(2, Duration::from_millis(20))
}

fn sign_ins(sim: &EwsSim, outcome: &str) -> u64 {
    sim.stats().sign_ins.get(outcome).copied().unwrap_or(0)
}

fn requests(sim: &EwsSim) -> u64 {
    sim.stats().requests.values().sum()
}

/// Twenty requests one after the other: one connection, one NTLM handshake, nineteen
/// reuses; the emulator counts the same single sign-in. Eight at once: at most eight
/// connections, each signed in once.
#[tokio::test]
async fn ntlm_signs_in_once_per_connection_and_reuses_it() {
    let (sim, server) = emulator(&[AuthScheme::Ntlm]).await;
    let ews = client(&server.base_url(), EwsAuth::Ntlm, USER, PASSWORD, Default::default());
    for _ in 0..20 {
        assert!(ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap().is_empty());
    }
    let stats = ews.connection_stats();
    assert_eq!((stats.opened, stats.handshakes, stats.reused, stats.requests), (1, 1, 19, 20), "{stats:?}");
    assert_eq!(sign_ins(&sim, "ntlm"), 1);
    assert_eq!(sim.stats().requests.get("FindItem").copied(), Some(20), "handshake legs are not operations");

    let parallel: Vec<_> = (0..8)
        .map(|n| {
            let ews = ews.clone();
            tokio::spawn(async move { ews.find_item_ids(&format!("user{n}@example.com"), Folder::Contacts).await })
        })
        .collect();
    for task in parallel {
        task.await.unwrap().unwrap();
    }
    let stats = ews.connection_stats();
    assert!(stats.opened <= 8 && stats.handshakes == stats.opened, "{stats:?}");
    assert_eq!(sign_ins(&sim, "ntlm"), stats.handshakes);
    for _ in 0..10 {
        ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
    }
    assert_eq!(ews.connection_stats().opened, stats.opened, "idle signed-in connections are reused");
    assert_eq!(sign_ins(&sim, "refused"), 0);
}

/// Negotiate: SPNEGO around NTLM, with the server's mechListMIC checked by sspi on the last
/// leg (a wrong MIC from the emulator would fail the sign-in). A UPN signs in as well.
#[tokio::test]
async fn negotiate_signs_in_with_spnego_and_a_upn() {
    let (sim, server) = emulator(&[AuthScheme::Negotiate]).await;
    for user in [USER, "svc-tandem@tandem.test"] {
        let ews = client(&server.base_url(), EwsAuth::Negotiate, user, PASSWORD, Default::default());
        let id = ews
            .create_items(MAILBOX, Folder::Contacts, &[(Fields::from_iter([("GivenName".to_owned(), Value::Text("Ada".into()))]), "s1".into())])
            .await
            .unwrap();
        assert_eq!(id.len(), 1);
        ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
        assert_eq!(ews.connection_stats().handshakes, 1, "{user}");
    }
    assert_eq!(sign_ins(&sim, "negotiate"), 2);
    assert_eq!(sign_ins(&sim, "refused"), 0);
}

/// A wrong password is Unauthorized (permanent, not retried), whatever the scheme; NTLM is
/// refused when only Negotiate is offered, and Basic when only Windows sign-in is, each with
/// an error that names what the server offers and what to set.
#[tokio::test]
async fn wrong_passwords_and_wrong_schemes_are_told_apart() {
    let (sim, server) = emulator(&[AuthScheme::Negotiate, AuthScheme::Ntlm]).await;
    for scheme in [EwsAuth::Ntlm, EwsAuth::Negotiate] {
        let ews = client(&server.base_url(), scheme, USER, "wrong", Default::default());
        let error = ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
        assert!(matches!(error, EwsError::Unauthorized) && error.is_permanent(), "{scheme}: {error:?}");
        assert_eq!(ews.connection_stats().handshakes, 0);
    }
    assert_eq!(sign_ins(&sim, "refused"), 2);
    assert_eq!(requests(&sim), 2, "each refused attempt sent its request once, no retry");

    let basic = client(&server.base_url(), EwsAuth::Basic, USER, PASSWORD, Default::default());
    let error = basic.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(&error, EwsError::SignInScheme { configured: EwsAuth::Basic, offered } if offered == &["Negotiate", "NTLM"]), "{error:?}");
    assert!(error.is_permanent());
    assert!(text.contains("Negotiate, NTLM") && text.contains(r#"auth = "ntlm""#) && text.contains(r"DOMAIN\user"), "{text}");

    let (_basic_sim, basic_server) = emulator(&[AuthScheme::Basic]).await;
    let ntlm = client(&basic_server.base_url(), EwsAuth::Ntlm, USER, PASSWORD, Default::default());
    let error = ntlm.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    assert!(matches!(&error, EwsError::SignInScheme { configured: EwsAuth::Ntlm, .. }), "{error:?}");
    assert!(error.to_string().contains(r#"set [exchange] auth = "basic""#), "{error}");

    let (_ntlm_sim, ntlm_server) = emulator(&[AuthScheme::Ntlm]).await;
    let negotiate = client(&ntlm_server.base_url(), EwsAuth::Negotiate, USER, PASSWORD, Default::default());
    let error = negotiate.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    assert!(error.to_string().contains(r#"auth = "ntlm""#), "{error}");
}

/// The server forgets the sign-in of its connections (an application pool recycle): the
/// next request gets a 401 on its signed-in connection, which is dropped, and goes again on
/// a fresh connection with a new handshake; a CreateItem is not lost nor doubled by it.
#[tokio::test]
async fn a_dropped_sign_in_is_renewed_once_on_a_fresh_connection() {
    let (sim, server) = emulator(&[AuthScheme::Ntlm]).await;
    let ews = client(&server.base_url(), EwsAuth::Ntlm, USER, PASSWORD, Default::default());
    ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
    sim.forget_sign_ins();
    let created = ews
        .create_items(MAILBOX, Folder::Contacts, &[(Fields::from_iter([("GivenName".to_owned(), Value::Text("Grace".into()))]), "s2".into())])
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(sim.item_count(MAILBOX, "contacts"), 1, "refused with 401, the first send did nothing");
    let stats = ews.connection_stats();
    assert_eq!((stats.sign_ins_dropped, stats.handshakes, stats.opened), (1, 2, 2), "{stats:?}");
    assert_eq!(sign_ins(&sim, "ntlm"), 2);
}

/// OAuth (`auth = "oauth"`): one token for many requests, a fresh one after the server
/// stops taking it (the refused request was not carried out), and a refused secret named as
/// a sign-in failure.
#[tokio::test]
async fn oauth_tokens_are_reused_renewed_after_a_401_and_a_wrong_secret_is_named() {
    let (sim, server) = emulator(&[AuthScheme::Bearer]).await;
    let endpoint = |secret: &str| crate::oauth::TokenEndpoint {
        section: "exchange",
        token_url: format!("{}{}", server.base_url(), tandem_sim::ews::oauth::TOKEN_PATH),
        client_id: sim.oauth_app().user.clone(),
        credential: secret.into(),
        scope: Some(tandem_sim::ews::oauth::EWS_SCOPE.to_owned()),
        secret_placement: crate::oauth::SecretPlacement::Body,
    };
    let app_secret = sim.oauth_app().password.clone();
    let ews = client(&server.base_url(), EwsAuth::OAuth, "svc-tandem@example.com", "", Default::default())
        .with_oauth2(endpoint(&app_secret))
        .unwrap();
    let tokens = |ews: &EwsClient| ews.remote_requests().get("token");
    for _ in 0..5 {
        ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
    }
    assert_eq!(tokens(&ews), 1, "one token for five requests");
    sim.revoke_tokens();
    let created = ews
        .create_items(MAILBOX, Folder::Contacts, &[(Fields::from_iter([("GivenName".to_owned(), Value::Text("Ada".into()))]), "s1".into())])
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(sim.item_count(MAILBOX, "contacts"), 1, "refused with 401, the first send did nothing");
    assert_eq!(tokens(&ews), 2, "a fresh token after the 401");

    let wrong = client(&server.base_url(), EwsAuth::OAuth, "svc-tandem@example.com", "", Default::default())
        .with_oauth2(endpoint("not-the-secret"))
        .unwrap();
    let error = wrong.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    assert!(matches!(error, EwsError::SignIn { scheme: EwsAuth::OAuth, .. }), "{error:?}");
    assert!(error.to_string().contains("exchange"), "names the section to fix: {error}");
    // Basic is not taken where only OAuth is offered.
    let basic = client(&server.base_url(), EwsAuth::Basic, USER, PASSWORD, Default::default());
    let error = basic.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    assert!(matches!(&error, EwsError::SignInScheme { offered, .. } if offered.iter().any(|o| o == "Bearer")), "{error:?}");
    assert!(error.to_string().contains("auth = \"oauth\""), "{error}");
}

/// Streaming notifications under NTLM: GetStreamingEvents signs in on a connection of its
/// own and streams on it; a change is signalled.
#[tokio::test]
async fn streaming_notifications_arrive_over_a_signed_in_connection() {
    let (sim, server) = emulator(&[AuthScheme::Ntlm]).await;
    let ews = client(&server.base_url(), EwsAuth::Ntlm, USER, PASSWORD, Default::default());
    let mut signals = ews.watch(vec![MAILBOX.to_owned()]);
    let started = std::time::Instant::now();
    while sim.subscription_count() < 1 || sim.stats().requests.get("GetStreamingEvents").is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "no streaming connection: {:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.create_contact(MAILBOX, &[("GivenName", "Katherine")]).unwrap();
    let signal = tokio::time::timeout(Duration::from_secs(5), signals.recv()).await.unwrap();
    assert_eq!(signal.as_deref(), Some(MAILBOX));
    let stats = ews.connection_stats();
    assert_eq!(stats.handshakes, 2, "one for Subscribe, one for the streaming connection: {stats:?}");
    assert_eq!(sign_ins(&sim, "ntlm"), 2);
}

/// A CONNECT proxy on loopback that counts the tunnels it opened, or refuses them with 407.
async fn connect_proxy(require_credentials: bool) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(AtomicU64::new(0));
    let counted = tunnels.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut client = tokio::io::BufReader::new(client);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if client.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push(line);
                }
                let target = head.first().and_then(|line| line.strip_prefix("CONNECT ")).and_then(|rest| rest.split_whitespace().next());
                let (Some(target), false) = (target, require_credentials) else {
                    let _ = client.get_mut().write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n").await;
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = client.get_mut().write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                let mut client = client.into_inner();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (url, tunnels)
}

/// NTLM over TLS through an HTTP proxy: the connection is a CONNECT tunnel, TLS runs
/// inside it with the emulator's certificate verified, the handshake and the reuse happen on
/// the tunnelled connection. A proxy that wants credentials is named in the error.
#[tokio::test]
async fn ntlm_over_tls_tunnels_through_a_connect_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let tls = SimTls::generate().unwrap();
    let ca_file = tls.write_ca(dir.path(), "ca.pem").unwrap();
    let sim = EwsSim::new(EwsSimConfig {
        credentials: tandem_sim::Credentials::new(USER, PASSWORD),
        auth: vec![AuthScheme::Ntlm],
        ..Default::default()
    })
    .unwrap();
    let server = sim.serve_tls("127.0.0.1:0".parse().unwrap(), &tls).await.unwrap();
    let (proxy, tunnels) = connect_proxy(false).await;
    let transport = crate::transport::Transport { ca_file: Some(ca_file.clone()), proxy: Some(proxy) };
    let ews = client(&server.base_url(), EwsAuth::Ntlm, USER, PASSWORD, transport);
    for _ in 0..3 {
        ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
    }
    assert_eq!(tunnels.load(Ordering::SeqCst), 1, "one tunnel, reused");
    assert_eq!(ews.connection_stats().handshakes, 1);
    assert_eq!(sign_ins(&sim, "ntlm"), 1);

    let (refusing, _) = connect_proxy(true).await;
    let transport = crate::transport::Transport { ca_file: Some(ca_file), proxy: Some(refusing) };
    let ews = client(&server.base_url(), EwsAuth::Ntlm, USER, PASSWORD, transport);
    let error = ews.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    assert!(error.to_string().contains("407") && error.to_string().contains("USER:PASSWORD"), "{error}");

    // Without the proxy, an untrusted certificate is still refused before any sign-in.
    let untrusting = client(&server.base_url(), EwsAuth::Ntlm, USER, PASSWORD, Default::default());
    let error = untrusting.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    assert!(matches!(error, EwsError::Tls(_)), "{error:?}");
}

/// Neither the password nor a token shows in the client's or the configuration's Debug, and
/// a Windows scheme needs a domain in the user name before anything is sent.
#[test]
fn credentials_stay_hidden_and_windows_users_need_a_domain() {
    let ews = client("http://127.0.0.1:9", EwsAuth::Ntlm, USER, "hunter2", Default::default());
    assert!(!format!("{ews:?}").contains("hunter2"));
    assert!(!format!("{:?}", ews.http).contains("hunter2"));
    let bare = EwsClient::new(EwsConfig {
        endpoint: "http://127.0.0.1:9/EWS/Exchange.asmx".into(),
        user: "svc-tandem".into(),
        password: "p".into(),
        auth: EwsAuth::Negotiate,
        transport: Default::default(),
    });
    let error = bare.map(|_| ()).unwrap_err();
    assert!(error.to_string().contains(r"DOMAIN\user"), "{error}");
}
