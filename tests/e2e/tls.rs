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
