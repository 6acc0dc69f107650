//! `tandem doctor --config FILE` against the TLS demo: every check passes on a good
//! configuration, and a broken one names the failing check and exits 1. Also the admin
//! listener over HTTPS, and Siebel signed in to with OAuth.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::harness::Harness;
use crate::service::ServeProcess;

/// What `tandem doctor` printed and how it exited.
struct Doctor {
    code: Option<i32>,
    out: String,
}

impl Doctor {
    async fn run(config: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
                .args(["doctor", "--config"])
                .arg(config)
                .args(extra)
                .output(),
        )
        .await
        .context("tandem doctor did not finish in 120 s")??;
        Ok(Self { code: out.status.code(), out: String::from_utf8(out.stdout)? })
    }

    /// The line of check `name`.
    fn line(&self, name: &str) -> Option<&str> {
        self.out.lines().find(|line| line.get(5..).is_some_and(|rest| rest.starts_with(&format!("{name}:"))))
    }

    fn status(&self, name: &str) -> Option<&str> {
        self.line(name).map(|line| line[..4].trim_end())
    }
}

/// The sections a configuration for the harness's TLS emulators has, each one replaceable.
struct Sections {
    state: PathBuf,
    siebel: String,
    exchange: String,
    graph: String,
    users: String,
}

impl Sections {
    fn new(h: &Harness, state: &Path) -> anyhow::Result<Self> {
        let ca = h.demo.ca_file.clone().context("the TLS demo has a CA")?.display().to_string();
        let (siebel, ews, graph) = (&h.demo.siebel_auth, &h.demo.ews_auth, h.demo.graph_sim.credentials());
        Ok(Self {
            state: state.to_path_buf(),
            siebel: format!(
                "url = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\nca_file = {ca:?}\n",
                h.demo.siebel_url, siebel.user, siebel.password
            ),
            exchange: format!("url = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\nca_file = {ca:?}\n", h.demo.ews_url, ews.user, ews.password),
            graph: format!(
                "url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nca_file = {ca:?}\n",
                h.demo.graph_url, h.demo.graph_token_url, graph.user, graph.password
            ),
            users: "[[users]]\nlogin = \"ONPREM\"\nmailbox = \"onprem@example.com\"\n\n\
                    [[users]]\nlogin = \"CLOUD\"\nmailbox = \"cloud@example.com\"\nbackend = \"graph\"\n"
                .into(),
        })
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!(
            "[state]\ndir = {:?}\n\n[admin]\ntoken = \"doctor\"\n\n[siebel]\n{}\n[exchange]\n{}\n[graph]\n{}\n[schedule]\nmanual = true\n\n{}",
            self.state.display().to_string(),
            self.siebel,
            self.exchange,
            self.graph,
            self.users
        );
        std::fs::write(path, text)?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_the_tls_demo_and_names_each_broken_check() -> anyhow::Result<()> {
    let h = Harness::start_tls().await?;
    h.demo.ews_sim.create_contact("onprem@example.com", &[("GivenName", "Doc"), ("Surname", "Tor")])?;
    // The integration user is an Employee, as Siebel wants of a REST user that reads data.
    let admin = json!({"Login Name": h.demo.siebel_auth.user.to_uppercase(), "First Name": "Sync", "Last Name": "Service"});
    h.demo.siebel_sim.insert("Employee", "Employee", admin.as_object().cloned().unwrap_or_default())?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    let good = Sections::new(&h, &dir.path().join("state"))?;
    good.write(&config)?;
    let before = h.stats().await?;

    let doctor = Doctor::run(&config, &[]).await?;
    assert_eq!(doctor.code, Some(0), "{}", doctor.out);
    for check in [
        "database",
        "siebel tls",
        "siebel sign-in",
        "siebel fields contacts",
        "siebel fields calendar",
        "exchange tls",
        "exchange sign-in schemes",
        "exchange sign-in",
        "graph tls",
        "graph token tls",
        "graph sign-in",
    ] {
        assert_eq!(doctor.status(check), Some("ok"), "{check}:\n{}", doctor.out);
    }
    assert!(doctor.line("siebel tls").is_some_and(|l| l.contains("certificate verified, valid until")), "{}", doctor.out);
    assert!(!dir.path().join("state").exists(), "the doctor creates no state");
    // Nothing was written to either server: only reads (GET, and EWS's POSTs of reads).
    let after = h.stats().await?;
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(after.siebel(method), before.siebel(method), "Siebel {method}");
    }
    for operation in ["CreateItem", "UpdateItem", "DeleteItem", "CreateFolder"] {
        assert_eq!(after.ews(operation), before.ews(operation), "EWS {operation}");
    }
    assert!(after.ews("GetFolder") > before.ews("GetFolder"), "the sign-in opened the folders");
    assert_eq!(h.demo.ews_sim.item_count("onprem@example.com", "contacts"), 1);

    // An untrusted CA: the TLS check names the issuer problem and what to set.
    let untrusted = Sections { siebel: good.siebel.lines().filter(|l| !l.starts_with("ca_file")).collect::<Vec<_>>().join("\n"), ..Sections::new(&h, &good.state)? };
    untrusted.write(&config)?;
    let doctor = Doctor::run(&config, &[]).await?;
    assert_eq!(doctor.code, Some(1), "{}", doctor.out);
    let line = doctor.line("siebel tls").context("a siebel tls line")?;
    assert!(line.starts_with("FAIL") && line.contains("unknown issuer") && line.contains("ca_file in [siebel]"), "{line}");

    // A wrong password: the sign-in check fails and says which keys to look at.
    let wrong = Sections { siebel: good.siebel.replace(&h.demo.siebel_auth.password, "wrong-password"), ..Sections::new(&h, &good.state)? };
    wrong.write(&config)?;
    let doctor = Doctor::run(&config, &[]).await?;
    assert_eq!(doctor.code, Some(1), "{}", doctor.out);
    let line = doctor.line("siebel sign-in").context("a sign-in line")?;
    assert!(line.starts_with("FAIL") && line.contains("HTTP 401") && line.contains("user and password"), "{line}");
    let wrong = Sections { exchange: good.exchange.replace(&h.demo.ews_auth.password, "wrong-password"), ..Sections::new(&h, &good.state)? };
    wrong.write(&config)?;
    let doctor = Doctor::run(&config, &[]).await?;
    assert_eq!(doctor.status("exchange sign-in"), Some("FAIL"), "{}", doctor.out);

    // Basic configured against an Exchange that offers only Windows sign-in.
    let ntlm_only = tandem_sim::ews::EwsSim::new(tandem_sim::ews::EwsSimConfig {
        auth: vec![tandem_sim::ews::AuthScheme::Ntlm, tandem_sim::ews::AuthScheme::Negotiate],
        ..Default::default()
    })?;
    let ntlm_server = ntlm_only.serve("127.0.0.1:0".parse()?).await?;
    let basic = Sections {
        exchange: format!("url = \"{}/EWS/Exchange.asmx\"\nuser = \"svc\"\npassword = \"p\"\n", ntlm_server.base_url()),
        ..Sections::new(&h, &good.state)?
    };
    basic.write(&config)?;
    let doctor = Doctor::run(&config, &[]).await?;
    assert_eq!(doctor.code, Some(1), "{}", doctor.out);
    let line = doctor.line("exchange sign-in schemes").context("a schemes line")?;
    assert!(line.starts_with("FAIL") && line.contains("ntlm") && line.contains("auth = \"ntlm\""), "{line}");

    // A field the mapping writes that this Siebel's Contact lacks.
    good.write(&config)?;
    h.demo.siebel_sim.hide_field("Contact", "Job Title");
    let doctor = Doctor::run(&config, &[]).await?;
    assert_eq!(doctor.code, Some(1), "{}", doctor.out);
    let line = doctor.line("siebel fields contacts").context("a fields line")?;
    assert!(line.starts_with("FAIL") && line.contains("'Job Title'"), "{line}");
    assert_eq!(doctor.status("siebel fields calendar"), Some("ok"), "{}", doctor.out);
    h.stop().await;
    Ok(())
}

/// The admin listener serves HTTPS with `[admin] tls_cert_file`/`tls_key_file`: the admin
/// API answers over TLS to a client trusting its CA (`tandem status --admin-ca-file`), and a
/// plain-HTTP request to it gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_serves_https_with_its_own_certificate() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let dir = tempfile::tempdir()?;
    let (cert_file, key_file, ca_file) = admin_certificate(dir.path())?;
    let token = "admin-tls-token";
    let admin = format!("token = \"{token}\"\ntls_cert_file = {cert_file:?}\ntls_key_file = {key_file:?}");
    let users = "[[users]]\nlogin = \"SECURE\"\nmailbox = \"secure@example.com\"";
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, crate::service::serve_config(&h, &dir.path().join("state"), &admin, "manual = true", users))?;
    let log = dir.path().join("serve.log");
    let serve = ServeProcess::spawn_trusting(&config, &log, token, Some(&ca_file)).await?;
    assert!(serve.admin_url().starts_with("https://127.0.0.1:"), "{}", serve.admin_url());
    let users = serve.get("/api/v1/users").await?;
    assert_eq!(users[0]["login"], "SECURE", "{users}");

    let plain = serve.admin_url().replace("https://", "http://");
    let answer = reqwest::Client::new().get(format!("{plain}/healthz")).timeout(Duration::from_secs(5)).send().await;
    assert!(answer.is_err(), "plain HTTP gets no answer from the TLS listener: {answer:?}");

    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", "--admin", serve.admin_url(), "--token", token, "--admin-ca-file"])
        .arg(&ca_file)
        .output()
        .await?;
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(String::from_utf8_lossy(&status.stdout).contains("SECURE"));
    let untrusting = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", "--admin", serve.admin_url(), "--token", token])
        .output()
        .await?;
    assert!(!untrusting.status.success(), "a CA the client was not told about is refused");
    serve.terminate().await?;
    h.stop().await;
    Ok(())
}

/// A CA, and a certificate it signed for 127.0.0.1 with its key: (cert, key, CA) PEM files.
fn admin_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Admin test CA");
    let ca_certificate = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = params.signed_by(&key, &issuer)?;
    let paths = (dir.join("admin.pem"), dir.join("admin.key"), dir.join("ca.pem"));
    std::fs::write(&paths.0, certificate.pem())?;
    std::fs::write(&paths.1, key.serialize_pem())?;
    std::fs::write(&paths.2, ca_certificate.pem())?;
    Ok(paths)
}

/// `[siebel] auth = "oauth"`: Tandem signs in to a Siebel whose REST profile takes OAuth
/// only (Basic refused), over TLS, with `[siebel.oauth]`; a contact on the sync list reaches
/// Exchange, Siebel's session cookie is kept, and no request carried Basic credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siebel_with_oauth_only_syncs_a_contact_over_tls() -> anyhow::Result<()> {
    use tandem_sim::siebel::{SiebelSim, SiebelSimConfig};
    let h = Harness::start_tls().await?;
    let dir = tempfile::tempdir()?;
    let tls = tandem_sim::tls::SimTls::generate()?;
    let ca_file = tls.write_ca(dir.path(), "siebel-ca.pem")?;
    let client = tandem_sim::Credentials::new("tandem-client", "oauth-secret");
    let siebel = SiebelSim::new(SiebelSimConfig { oauth_client: Some(client.clone()), ..Default::default() })?;
    let employee = |login: &str| json!({"Login Name": login, "First Name": "O", "Last Name": "Auth", "EMail Addr": "oauth@example.com"});
    siebel.insert("Employee", "Employee", employee("OAUTHUSER").as_object().cloned().unwrap_or_default())?;
    let contact = siebel.insert(
        "Contact",
        "Contact",
        json!({"First Name": "Olive", "Last Name": "Auth"}).as_object().cloned().unwrap_or_default(),
    )?;
    let server = siebel.serve_tls("127.0.0.1:0".parse()?, &tls).await?;
    let base = format!("{}/siebel/v1.0", server.base_url());

    let token = "oauth-admin-token";
    let ews_ca = h.demo.ca_file.clone().context("the TLS demo has a CA")?;
    let text = format!(
        "[state]\ndir = {state:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\n\
         [siebel]\nurl = \"{base}\"\nuser = \"SADMIN\"\nauth = \"oauth\"\nca_file = {ca:?}\n\n\
         [siebel.oauth]\ntoken_url = \"{root}/oauth2/token\"\nclient_id = \"{id}\"\nclient_secret = \"{secret}\"\n\n\
         [exchange]\nurl = \"{ews}\"\nuser = \"{ews_user}\"\npassword = \"{ews_password}\"\nca_file = {ews_ca:?}\n\n\
         [schedule]\nmanual = true\n\n[[users]]\nlogin = \"OAUTHUSER\"\nmailbox = \"oauth@example.com\"\n",
        state = dir.path().join("state").display().to_string(),
        ca = ca_file.display().to_string(),
        root = server.base_url(),
        id = client.user,
        secret = client.password,
        ews = h.demo.ews_url,
        ews_user = h.demo.ews_auth.user,
        ews_password = h.demo.ews_auth.password,
        ews_ca = ews_ca.display().to_string(),
    );
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, &text)?;
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem")).arg("check-config").arg(&config).output().await?;
    assert!(check.status.success(), "no password is needed with OAuth: {}", String::from_utf8_lossy(&check.stdout));

    let serve = ServeProcess::spawn(&config, &dir.path().join("serve.log"), token, false).await?;
    let (status, body) = serve
        .call(reqwest::Method::POST, "/api/v1/users/OAUTHUSER/sync-list", Some(json!({"siebel_id": contact})))
        .await?;
    assert_eq!(status, 201, "{body}");
    let (status, report) = serve.call(reqwest::Method::POST, "/api/v1/users/OAUTHUSER/sync?wait=true", None).await?;
    assert_eq!((status, report["status"].as_str(), report["exchange"]["created"].as_u64()), (200, Some("ok"), Some(1)), "{report}");
    assert_eq!(h.demo.ews_sim.item_count("oauth@example.com", "contacts"), 1);
    let stats = siebel.stats().requests;
    assert!(stats.get("TOKEN").is_some_and(|n| *n >= 1), "{stats:?}");
    let (opened, reused) = siebel.sessions();
    assert_eq!(opened, 1, "one Siebel session, kept by its cookie");
    assert!(reused >= 1, "later requests brought the cookie back");
    let log = std::fs::read_to_string(dir.path().join("serve.log"))?;
    assert!(!log.contains(&client.password), "the client secret is never logged");
    serve.terminate().await?;
    h.stop().await;
    Ok(())
}
