//! `ca_file` loading, the classification of handshake failures, and real handshakes over
//! loopback against the emulators served with TLS.

use std::net::SocketAddr;

use tandem_sim::siebel::{SiebelSim, SiebelSimConfig};
use tandem_sim::tls::{SimTls, TlsOptions};

use super::*;
use crate::exchange::Folder;

const LOOPBACK: &str = "127.0.0.1:0";

fn loopback() -> SocketAddr {
    LOOPBACK.parse().expect("an address")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("written");
    path
}

#[test]
fn a_ca_file_is_a_pem_bundle_of_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = (SimTls::generate().expect("a CA"), SimTls::generate().expect("a CA"));
    let one = write(dir.path(), "one.pem", first.ca_pem());
    assert_eq!(load_ca_file(&one).map(|c| c.len()).ok(), Some(1));
    let bundle = write(dir.path(), "bundle.pem", &format!("{}\n{}", first.ca_pem(), second.ca_pem()));
    assert_eq!(load_ca_file(&bundle).map(|c| c.len()).ok(), Some(2));

    let missing = dir.path().join("missing.pem");
    let error = load_ca_file(&missing).expect_err("no such file");
    assert!(matches!(error, TransportError::CaFileUnreadable { .. }), "{error:?}");
    assert!(error.to_string().contains("missing.pem"), "names the file: {error}");

    let not_pem = write(dir.path(), "ca.der", "\u{30}\u{82} binary, not PEM");
    let error = load_ca_file(&not_pem).expect_err("not PEM");
    assert!(matches!(error, TransportError::CaFileInvalid { .. }), "{error:?}");
    assert!(error.to_string().contains("no -----BEGIN CERTIFICATE-----"), "{error}");
    assert!(error.hint().contains("PEM"), "{}", error.hint());

    let broken = first.ca_pem().replace("MII", "!!!");
    let broken = write(dir.path(), "broken.pem", &broken);
    assert!(matches!(load_ca_file(&broken), Err(TransportError::CaFileInvalid { .. })));

    // A key is not a certificate.
    let key_only = write(dir.path(), "key.pem", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n");
    assert!(matches!(load_ca_file(&key_only), Err(TransportError::CaFileInvalid { .. })));

    // An unusable ca_file stops the client from being built at all.
    let transport = Transport { ca_file: Some(not_pem), proxy: None };
    assert!(matches!(client_builder(&transport), Err(TransportError::CaFileInvalid { .. })));
    let transport = Transport { ca_file: None, proxy: Some("ftp://proxy.example:21".into()) };
    assert!(matches!(client_builder(&transport), Err(TransportError::Proxy { .. })));
}

#[test]
fn a_proxy_password_is_not_shown() {
    let transport = Transport { ca_file: None, proxy: Some("http://user:hunter2@proxy.example:3128".into()) };
    let shown = format!("{transport:?}");
    assert!(!shown.contains("hunter2") && shown.contains("proxy.example:3128"), "{shown}");
}

#[test]
fn rustls_errors_are_classified() {
    use rustls::pki_types::{ServerName, UnixTime};
    let cases = [
        (CertificateError::UnknownIssuer, TlsFailure::UnknownIssuer),
        (CertificateError::Expired, TlsFailure::Expired),
        (
            CertificateError::ExpiredContext { time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(2)), not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1)) },
            TlsFailure::Expired,
        ),
        (CertificateError::NotValidYet, TlsFailure::NotYetValid),
        (CertificateError::NotValidForName, TlsFailure::WrongHostName { presented: vec![] }),
        (
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("crm.example.com").expect("a name"),
                presented: vec!["other.example.com".into()],
            },
            TlsFailure::WrongHostName { presented: vec!["other.example.com".into()] },
        ),
        (CertificateError::Revoked, TlsFailure::Revoked),
    ];
    for (error, expected) in cases {
        assert_eq!(TlsFailure::of(&rustls::Error::InvalidCertificate(error)), expected);
    }
    assert!(matches!(TlsFailure::of(&rustls::Error::InvalidCertificate(CertificateError::BadSignature)), TlsFailure::Other(_)));
    let hint = TlsFailure::UnknownIssuer.hint("exchange");
    assert!(hint.contains("set ca_file in [exchange]") && hint.contains("PEM of the CA that signed it"), "{hint}");
    let shown = TlsFailure::WrongHostName { presented: vec!["a.example".into(), "b.example".into()] }.to_string();
    assert!(shown.contains("a.example, b.example"), "{shown}");
}

/// An error whose cause is an `io::Error` carrying a rustls error, as hyper reports one.
#[derive(Debug)]
struct Wrapper(std::io::Error);

impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client error (Connect)")
    }
}

impl StdError for Wrapper {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn the_rustls_error_is_found_behind_io_errors() {
    let rustls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
    let wrapped = Wrapper(std::io::Error::new(std::io::ErrorKind::InvalidData, rustls.clone()));
    assert_eq!(rustls_error(&wrapped), Some(&rustls));
    let plain = Wrapper(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
    assert_eq!(rustls_error(&plain), None);
    assert_eq!(describe(&plain), "client error (Connect): refused");
}

/// A Siebel emulator over HTTPS with `options`'s certificate; its base URL and its CA file.
async fn tls_server(options: &TlsOptions, dir: &Path) -> (tandem_sim::RunningServer, String, PathBuf) {
    let (server, url, ca_file, _) = tls_siebel(options, dir).await;
    (server, url, ca_file)
}

async fn tls_siebel(options: &TlsOptions, dir: &Path) -> (tandem_sim::RunningServer, String, PathBuf, SiebelSim) {
    let tls = SimTls::with_options(options).expect("certificates");
    let ca_file = tls.write_ca(dir, "ca.pem").expect("CA written");
    let sim = SiebelSim::new(SiebelSimConfig::default()).expect("emulator");
    let server = sim.serve_tls(loopback(), &tls).await.expect("bind");
    let url = server.base_url();
    (server, url, ca_file, sim)
}

/// The `drop` fault (the connection closed where the answer should be) works over TLS too,
/// and is a transport failure, not a refused certificate.
#[tokio::test]
async fn a_dropped_tls_connection_is_a_transient_transport_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, url, ca_file, sim) = tls_siebel(&TlsOptions::default(), dir.path()).await;
    let credentials = sim.credentials().clone();
    let client = crate::siebel::SiebelClient::new(crate::siebel::SiebelConfig {
        base_url: format!("{url}/siebel/v1.0"),
        user: credentials.user,
        password: credentials.password,
        transport: Transport { ca_file: Some(ca_file), proxy: None },
    })
    .expect("client");
    let fields = crate::record::Fields::from([("Last Name".to_owned(), crate::record::Value::Text("Drop".into()))]);
    sim.control().faults.set(tandem_sim::FaultSettings { rate: 1.0, kinds: vec!["drop".into()] });
    let error = client.insert("Contact", "Contact", &fields).await.expect_err("dropped");
    assert!(matches!(error, crate::siebel::SiebelError::Transport { .. }) && error.is_transient(), "{error:?}");
    sim.control().faults.set(tandem_sim::FaultSettings { rate: 0.0, kinds: vec![] });
    client.insert("Contact", "Contact", &fields).await.expect("served over TLS again");
}

async fn failure(transport: &Transport, url: &str) -> Option<TlsFailure> {
    let client = client_builder(transport).expect("a builder").build().expect("a client");
    let error = client.get(format!("{url}/_sim/stats")).send().await.err()?;
    tls_error(&error, "siebel").map(|tls| tls.failure)
}

#[tokio::test]
async fn handshakes_succeed_only_with_a_trusted_ca_a_valid_date_and_the_right_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, url, ca_file) = tls_server(&TlsOptions::default(), dir.path()).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let trusting = Transport { ca_file: Some(ca_file), proxy: None };
    let client = client_builder(&trusting).expect("a builder").build().expect("a client");
    let answer = client.get(format!("{url}/_sim/stats")).send().await.expect("trusted");
    assert_eq!(answer.status(), 200);
    // localhost is in the certificate too.
    let by_name = url.replace("127.0.0.1", "localhost");
    assert_eq!(client.get(format!("{by_name}/_sim/stats")).send().await.expect("trusted").status(), 200);

    assert_eq!(failure(&Transport::default(), &url).await, Some(TlsFailure::UnknownIssuer), "the system does not know this CA");

    let other = tempfile::tempdir().expect("temp dir");
    let options = TlsOptions { names: vec!["crm.example.com".into()], expired: false };
    let (_wrong, wrong_url, wrong_ca) = tls_server(&options, other.path()).await;
    let trusting = Transport { ca_file: Some(wrong_ca), proxy: None };
    let Some(TlsFailure::WrongHostName { presented }) = failure(&trusting, &wrong_url).await else {
        panic!("a certificate for another name is refused for its name");
    };
    assert!(presented.iter().any(|name| name.contains("crm.example.com")), "{presented:?}");

    let expired_dir = tempfile::tempdir().expect("temp dir");
    let options = TlsOptions { expired: true, ..TlsOptions::default() };
    let (_expired, expired_url, expired_ca) = tls_server(&options, expired_dir.path()).await;
    let trusting = Transport { ca_file: Some(expired_ca), proxy: None };
    assert_eq!(failure(&trusting, &expired_url).await, Some(TlsFailure::Expired));

    // https:// to a plain HTTP server.
    let plain = SiebelSim::new(SiebelSimConfig::default()).expect("emulator").serve(loopback()).await.expect("bind");
    let https_to_plain = plain.base_url().replace("http://", "https://");
    assert_eq!(failure(&Transport::default(), &https_to_plain).await, Some(TlsFailure::NotTls));
}

/// Each connector turns a refused certificate into an error naming the endpoint, the reason
/// and the fix, which is neither retried nor taken for a passing failure.
#[tokio::test]
async fn each_connector_names_the_endpoint_and_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, url, _ca_file) = tls_server(&TlsOptions::default(), dir.path()).await;
    let endpoint = format!("https://{}", server.addr);

    let siebel = crate::siebel::SiebelClient::new(crate::siebel::SiebelConfig {
        base_url: format!("{url}/siebel/v1.0"),
        user: "SADMIN".into(),
        password: "p".into(),
        transport: Transport::default(),
    })
    .expect("client");
    let error = siebel.query("Contact", "Contact", None).await.expect_err("refused");
    let text = error.to_string();
    assert!(matches!(error, crate::siebel::SiebelError::Tls { .. }) && !error.is_transient(), "{error:?}");
    assert!(text.contains(&endpoint) && text.contains("unknown issuer") && text.contains("set ca_file in [siebel]"), "{text}");

    let ews = crate::exchange::ews::EwsClient::new(crate::exchange::ews::EwsConfig {
        endpoint: format!("{url}/EWS/Exchange.asmx"),
        user: "svc".into(),
        password: "p".into(),
        auth: Default::default(),
        transport: Transport::default(),
    })
    .expect("client");
    let error = ews.find_item_ids("a@example.com", Folder::Contacts).await.expect_err("refused");
    let text = error.to_string();
    assert!(matches!(error, crate::exchange::ews::EwsError::Tls(_)) && !error.is_transient(), "{error:?}");
    assert!(text.contains(&endpoint) && text.contains("set ca_file in [exchange]"), "{text}");

    let graph = crate::exchange::graph::GraphClient::new(crate::exchange::graph::GraphConfig {
        base_url: format!("{url}/v1.0"),
        token_url: format!("{url}/tenant/oauth2/v2.0/token"),
        client_id: "app".into(),
        credential: "s".into(),
        limits: Default::default(),
        transport: Transport::default(),
    })
    .expect("client");
    let error = graph.find_item_ids("a@example.com", Folder::Contacts).await.expect_err("refused");
    let text = error.to_string();
    assert!(matches!(error, crate::exchange::graph::GraphError::Tls(_)) && !error.is_transient(), "{error:?}");
    assert!(text.contains(&endpoint) && text.contains("set ca_file in [graph]"), "{text}");
}

#[test]
fn not_after_reads_both_time_forms_of_a_certificate() {
    for (year, month, day) in [(2031, 5, 4), (2061, 12, 31), (1999, 1, 2)] {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(vec!["example.com".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(1990, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let certificate = params.self_signed(&key).expect("a certificate");
        let expected = chrono::NaiveDate::from_ymd_opt(year, u32::from(month), u32::from(day))
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        assert_eq!(not_after(certificate.der()), expected, "{year}-{month}-{day}");
    }
    assert_eq!(not_after(b"not a certificate"), None);
    assert_eq!(not_after(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None, "a length past the end");
}

#[tokio::test]
async fn a_handshake_shows_the_chain_or_says_why_it_failed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _url, ca_file) = tls_server(&TlsOptions::default(), dir.path()).await;
    let limit = std::time::Duration::from_secs(10);
    let port = server.addr.port();
    let trusting = Transport { ca_file: Some(ca_file), proxy: None };
    let seen = handshake(&trusting, "127.0.0.1", port, limit).await.expect("a trusted handshake");
    assert_eq!(seen.chain.len(), 2, "the server's certificate and its CA");
    assert!(seen.chain.iter().all(|c| not_after(c).is_some_and(|t| t > chrono::Utc::now())));
    assert!(seen.protocol.starts_with("TLS"), "{}", seen.protocol);
    match handshake(&Transport::default(), "127.0.0.1", port, limit).await {
        Err(HandshakeError::Tls(TlsFailure::UnknownIssuer)) => {}
        other => panic!("an untrusted CA is refused: {other:?}"),
    }
    match handshake(&trusting, "name.invalid", port, limit).await {
        Err(HandshakeError::Dns { host, .. }) => assert_eq!(host, "name.invalid"),
        other => panic!("a name that does not resolve: {other:?}"),
    }
}

/// A forward proxy that only tunnels (`CONNECT host:port`), counting the tunnels it opened.
async fn connect_proxy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind(loopback()).await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let tunnels = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let Some(target) = head.strip_prefix("CONNECT ").and_then(|rest| rest.split_whitespace().next()) else {
                    let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await;
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
                    return;
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (url, tunnels)
}

#[tokio::test]
async fn an_endpoint_proxy_tunnels_https_and_the_certificate_is_still_verified() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, url, ca_file) = tls_server(&TlsOptions::default(), dir.path()).await;
    let (proxy_url, tunnels) = connect_proxy().await;
    let through = Transport { ca_file: Some(ca_file), proxy: Some(proxy_url.clone()) };
    let client = client_builder(&through).expect("a builder").build().expect("a client");
    let answer = client.get(format!("{url}/_sim/stats")).send().await.expect("through the proxy");
    assert_eq!(answer.status(), 200);
    // NO_PROXY, when the machine sets it for loopback, still wins over the endpoint's proxy.
    let no_proxy = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
    let exempt = no_proxy.split(',').any(|entry| matches!(entry.trim(), "*" | "127.0.0.1" | "localhost"));
    let expected = if exempt { 0 } else { 1 };
    assert_eq!(tunnels.load(std::sync::atomic::Ordering::SeqCst), expected, "the request went through the proxy's tunnel");
    // The tunnel changes nothing about trust: without the CA the server is refused.
    let untrusting = client_builder(&Transport { ca_file: None, proxy: Some(proxy_url) }).expect("a builder").build().expect("a client");
    let refused = untrusting.get(format!("{url}/_sim/stats")).send().await.expect_err("an untrusted CA");
    assert_eq!(tls_error(&refused, "siebel").map(|e| e.failure), Some(TlsFailure::UnknownIssuer));
}
