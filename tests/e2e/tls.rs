//! Every connection over TLS: the emulators serve HTTPS with a CA made at start (`tandem demo
//! --tls`, `tandem sim --tls`), the connectors trust it through `ca_file`, and a server whose
//! CA is not trusted is refused with a message that names it.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

use crate::harness::{Harness, xml_attr, xml_text};
use crate::service::{ServeProcess, serve_config};

/// A contact syncs end to end with Siebel, EWS, Graph and Graph's token endpoint all over
/// HTTPS: Siebel → Exchange (EWS and Graph users), Outlook edits (Graph, then EWS) back to
/// Siebel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_syncs_with_every_connection_over_tls() -> anyhow::Result<()> {
    let h = Harness::start_tls().await?;
    for url in [&h.demo.siebel_url, &h.demo.ews_url, &h.demo.graph_url, &h.demo.graph_token_url] {
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    }
    let ca_file = h.demo.ca_file.clone().context("the TLS demo has a CA file")?;
    assert!(std::fs::read_to_string(&ca_file)?.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(h.demo.endpoint_lines().lines().any(|line| line == format!("ca: {}", ca_file.display())));

    let (onprem, cloud) = (("ONPREM", "onprem@example.com"), ("CLOUD", "cloud@example.com"));
    h.admin_post("/api/v1/users", json!({"login": onprem.0, "mailbox": onprem.1}), 201).await?;
    h.admin_post("/api/v1/users", json!({"login": cloud.0, "mailbox": cloud.1, "backend": "graph"}), 201).await?;
    let contact = h
        .siebel_insert(json!({"First Name": "Ada", "Last Name": "Lovelace", "Job Title": "Engineer"}))
        .await?;
    for login in [onprem.0, cloud.0] {
        h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": contact}), 201).await?;
        let report = h.sync(login).await?;
        assert_eq!((report["status"].as_str(), report["exchange"]["created"].as_u64()), (Some("ok"), Some(1)), "{report}");
    }
    assert_eq!(h.demo.graph_sim.item_count(cloud.1, "contacts"), 1);
    // The next Graph run follows the deltaLink the emulator wrote (https:// like its base),
    // and an edit made in Outlook on the web comes back to Siebel.
    let link = h.demo.service.state.engine.store().links(cloud.0, "contacts").await?.pop().context("linked")?;
    h.demo.graph_sim.update_item(cloud.1, &link.exchange_id, json!({"jobTitle": "CTO"}))?;
    let report = h.sync(cloud.0).await?;
    assert_eq!((report["status"].as_str(), report["siebel"]["updated"].as_u64()), (Some("ok"), Some(1)), "{report}");
    assert_eq!(h.siebel_get(&contact).await?.context("in Siebel")?["Job Title"], "CTO");
    let report = h.sync(onprem.0).await?;
    assert_eq!(report["exchange"]["updated"], 1, "the on-premises copy follows: {report}");
    let ids = h.ews_find_contacts(onprem.1).await?;
    assert_eq!(ids.len(), 1);
    let item = h.ews_get_contact(onprem.1, &ids[0]).await?;
    assert_eq!(xml_text(&item, "Surname").as_deref(), Some("Lovelace"));

    // An Outlook edit travels back to Siebel over TLS.
    let change_key = xml_attr(&item, "ItemId", "ChangeKey").context("a ChangeKey")?;
    h.ews_set_job_title(onprem.1, &ids[0], &change_key, "Countess").await?;
    let report = h.sync(onprem.0).await?;
    assert_eq!(report["siebel"]["updated"], 1, "{report}");
    assert_eq!(h.siebel_get(&contact).await?.context("in Siebel")?["Job Title"], "Countess");
    h.validate_ews_traffic()?;
    h.stop().await;
    Ok(())
}

/// `tandem serve` against HTTPS servers whose CA it was not told about: the run fails with a
/// message naming the endpoint and "unknown issuer", in the run report and the log, and no
/// request reaches either server. With `ca_file` in the same configuration the sync works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_ca_is_not_trusted_is_refused() -> anyhow::Result<()> {
    let h = Harness::start_tls().await?;
    let mailbox = "untrusted@example.com";
    let contact = h.siebel_insert(json!({"First Name": "Grace", "Last Name": "Hopper"})).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    let token = "tls-test-token";
    let users = format!("[[users]]\nlogin = \"UNTRUSTED\"\nmailbox = \"{mailbox}\"");
    let text = serve_config(&h, &dir.path().join("state"), &format!("token = \"{token}\""), "manual = true", &users);
    std::fs::write(&config, &text)?;
    let log = dir.path().join("serve.log");
    let before = h.stats().await?;
    let serve = ServeProcess::spawn(&config, &log, token, false).await?;
    let (status, _) = serve
        .call(reqwest::Method::POST, "/api/v1/users/UNTRUSTED/sync-list", Some(json!({"siebel_id": contact})))
        .await?;
    assert_eq!(status, 201);
    let (status, report) = serve.call(reqwest::Method::POST, "/api/v1/users/UNTRUSTED/sync?wait=true", None).await?;
    assert_eq!((status, report["status"].as_str()), (200, Some("failed")), "{report}");
    let error = report["errors"][0].as_str().unwrap_or_default();
    let endpoints = [&h.demo.siebel_url, &h.demo.ews_url].map(|url| url.split('/').take(3).collect::<Vec<_>>().join("/"));
    assert!(endpoints.iter().any(|endpoint| error.contains(endpoint.as_str())), "names the endpoint {endpoints:?}: {error}");
    assert!(error.contains("unknown issuer") && error.contains("ca_file"), "{error}");
    assert_eq!(report["exchange"], json!({"created": 0, "updated": 0, "deleted": 0}), "{report}");
    assert_eq!(report["siebel"], json!({"created": 0, "updated": 0, "deleted": 0}), "{report}");
    let after = h.stats().await?;
    assert_eq!(after.total(), before.total(), "no request reached the emulators");
    assert_eq!(h.demo.ews_sim.item_count(mailbox, "contacts"), 0);
    let (_, runs) = serve.call(reqwest::Method::GET, "/api/v1/users/UNTRUSTED/runs", None).await?;
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    serve.terminate().await?;
    let logged = std::fs::read_to_string(&log)?;
    assert!(logged.contains("unknown issuer"), "the log says why: {logged}");

    // The same configuration with the CA as ca_file: the contact syncs.
    let ca_file = h.demo.ca_file.clone().context("a CA file")?;
    let with_ca = text
        .replace("[siebel]\n", &format!("[siebel]\nca_file = {:?}\n", ca_file.display().to_string()))
        .replace("[exchange]\n", &format!("[exchange]\nca_file = {:?}\n", ca_file.display().to_string()));
    std::fs::write(&config, with_ca)?;
    let serve = ServeProcess::spawn(&config, &dir.path().join("serve2.log"), token, false).await?;
    let (status, report) = serve.call(reqwest::Method::POST, "/api/v1/users/UNTRUSTED/sync?wait=true", None).await?;
    assert_eq!((status, report["status"].as_str()), (200, Some("ok")), "{report}");
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(h.demo.ews_sim.item_count(mailbox, "contacts"), 1);
    serve.terminate().await?;
    h.stop().await;
    Ok(())
}

/// `tandem sim siebel --tls` prints an https:// URL and `ca: PATH`; a client trusting that
/// CA gets answers, one that does not is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_on_its_own_serves_https_and_prints_its_ca() -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sim", "siebel", "--listen", "127.0.0.1:0", "--tls"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut url, mut ca) = (None, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(value) = line.strip_prefix("siebel: ") {
                url = Some(value.to_owned());
            }
            if let Some(value) = line.strip_prefix("ca: ") {
                ca = Some(std::path::PathBuf::from(value));
                break;
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let url = url.context("a siebel: line")?;
    let ca = ca.context("a ca: line")?;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let stats = format!("{}/_sim/stats", url.trim_end_matches("/siebel/v1.0"));

    let trusting = tandem_host::transport::Transport { ca_file: Some(ca), proxy: None };
    let client = tandem_host::transport::client_builder(&trusting)?.build()?;
    assert_eq!(client.get(&stats).send().await?.status(), 200);
    let untrusting = tandem_host::transport::client_builder(&Default::default())?.build()?;
    let refused = untrusting.get(&stats).send().await.expect_err("the CA is not trusted");
    let tls = tandem_host::transport::tls_error(&refused, "siebel").context("a TLS error")?;
    assert_eq!(tls.failure, tandem_host::transport::TlsFailure::UnknownIssuer, "{tls}");
    child.start_kill()?;
    child.wait().await?;
    Ok(())
}

/// `tandem serve` with Graph signing in by certificate, every connection over HTTPS: the
/// app's certificate is registered with the Graph emulator (as uploaded to the app
/// registration), `[graph]` names `certificate_file` and `private_key_file` and no secret, and
/// a contact syncs from Siebel to Exchange Online. The certificate expires in 20 days: the
/// time left shows in `/metrics` and the status, and the log warns once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_syncs_over_tls_with_graph_signing_in_by_certificate() -> anyhow::Result<()> {
    let h = Harness::start_tls().await?;
    let dir = tempfile::tempdir()?;
    let app = tandem_sim::graph::AppCertificate::generate(20)?;
    h.demo.graph_sim.register_certificate(&app.certificate_pem)?;
    let (certificate_file, key_file) = app.write(dir.path(), "tandem-app")?;
    let ca_file = h.demo.ca_file.clone().context("a CA file")?;
    let quoted = |path: &std::path::Path| format!("{:?}", path.display().to_string());
    let mailbox = "certified@example.com";
    let contact = h.siebel_insert(json!({"First Name": "Hedy", "Last Name": "Lamarr", "Job Title": "Inventor"})).await?;
    let token = "graph-certificate-test-token";
    let users = format!("[[users]]\nlogin = \"CERTIFIED\"\nmailbox = \"{mailbox}\"\nbackend = \"graph\"");
    let text = serve_config(&h, &dir.path().join("state"), &format!("token = \"{token}\""), "manual = true", &users)
        .replace("[siebel]\n", &format!("[siebel]\nca_file = {}\n", quoted(&ca_file)))
        .replace("[exchange]\n", &format!("[exchange]\nca_file = {}\n", quoted(&ca_file)))
        + &format!(
            "\n[graph]\nurl = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\ncertificate_file = {}\nprivate_key_file = {}\nca_file = {}\n",
            h.demo.graph_url,
            h.demo.graph_token_url,
            h.demo.graph_sim.credentials().user,
            quoted(&certificate_file),
            quoted(&key_file),
            quoted(&ca_file),
        );
    assert!(!text.contains("client_secret") && !text.contains(&h.demo.graph_sim.credentials().password));
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, &text)?;
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem")).arg("check-config").arg(&config).output().await?;
    assert!(check.status.success(), "check-config: {}", String::from_utf8_lossy(&check.stdout));

    let log = dir.path().join("serve.log");
    let serve = ServeProcess::spawn(&config, &log, token, false).await?;
    let (status, body) =
        serve.call(reqwest::Method::POST, "/api/v1/users/CERTIFIED/sync-list", Some(json!({"siebel_id": contact}))).await?;
    assert_eq!(status, 201, "{body}");
    let (status, report) = serve.call(reqwest::Method::POST, "/api/v1/users/CERTIFIED/sync?wait=true", None).await?;
    assert_eq!((status, report["status"].as_str()), (200, Some("ok")), "{report}");
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(h.demo.graph_sim.item_count(mailbox, "contacts"), 1);
    assert!(h.demo.graph_sim.stats().requests.get("POST token").copied().unwrap_or(0) >= 1);

    // Twenty days left, give or take the seconds this test took.
    let twenty_days = 20 * 86_400;
    let left_ok = |seconds: f64| (twenty_days as f64 - 3600.0..=twenty_days as f64).contains(&seconds);
    let metrics = serve.metrics().await?;
    let gauge = "tandem_credential_expiry_seconds{endpoint=\"graph\",kind=\"certificate\"} ";
    let seconds: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(gauge))
        .with_context(|| format!("no expiry gauge in\n{metrics}"))?
        .parse()?;
    assert!(left_ok(seconds), "{seconds} s left");
    let status = serve.get("/api/v1/status").await?;
    let credentials = status["credentials"].as_array().context("credentials in the status")?;
    assert_eq!(credentials.len(), 1, "{status}");
    assert_eq!((credentials[0]["endpoint"].as_str(), credentials[0]["kind"].as_str()), (Some("graph"), Some("certificate")));
    assert!(left_ok(credentials[0]["expires_in_seconds"].as_f64().unwrap_or_default()), "{status}");
    assert!(credentials[0]["expires_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{status}");
    serve.terminate().await?;
    let logged = std::fs::read_to_string(&log)?;
    assert_eq!(logged.matches("expires in 19 days").count(), 1, "warned once: {logged}");
    assert!(!logged.contains("PRIVATE KEY"), "{logged}");
    h.stop().await;
    Ok(())
}
