//! Windows sign-in end to end: the EWS emulator offers only NTLM (or only Negotiate), as a
//! fresh Exchange 2016/2019 does, over HTTPS; the service signs in with `[exchange] auth`.
//! A contact syncs both ways with a handshake count that does not grow with the requests;
//! Basic against such a server, a wrong password and a user without a domain each fail with
//! a message that says what to set; streaming notifications still wake the user. OAuth
//! bearer tokens (Exchange Online, hybrid modern authentication) are here too.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tandem_host::exchange::ews::{DEFAULT_MAILBOX_CONCURRENCY, EwsAuth};

use crate::harness::Harness;
use crate::service::ServeProcess;

fn sign_ins(h: &Harness, outcome: &str) -> u64 {
    h.demo.ews_sim.stats().sign_ins.get(outcome).copied().unwrap_or(0)
}

fn ews_requests(h: &Harness) -> u64 {
    h.demo.ews_sim.stats().requests.values().sum()
}

/// EWS with OAuth as the only scheme (Exchange Online, or hybrid modern authentication),
/// over TLS: the service gets a token from the token endpoint with the app's secret, a
/// contact syncs both ways, and later runs reuse the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_syncs_over_tls_with_ews_signing_in_by_oauth() -> anyhow::Result<()> {
    let h = Harness::start_windows_sign_in(EwsAuth::OAuth, None).await?;
    assert!(h.demo.ews_url.starts_with("https://"), "{}", h.demo.ews_url);
    let mailbox = "modern@example.com";
    h.admin_post("/api/v1/users", json!({"login": "MODERN", "mailbox": mailbox}), 201).await?;
    let contact = h.siebel_insert(json!({"First Name": "Katie", "Last Name": "Bouman", "Job Title": "Imager"})).await?;
    h.admin_post("/api/v1/users/MODERN/sync-list", json!({"siebel_id": contact}), 201).await?;
    let report = h.sync("MODERN").await?;
    assert_eq!((report["status"].as_str(), report["exchange"]["created"].as_u64()), (Some("ok"), Some(1)), "{report}");
    let ids = h.demo.ews_sim.item_ids(mailbox, "contacts");
    assert_eq!(ids.len(), 1);
    h.demo.ews_sim.update_item_fields(mailbox, &ids[0], &[("JobTitle", "Astronomer")])?;
    let report = h.sync("MODERN").await?;
    assert_eq!(report["siebel"]["updated"], 1, "{report}");
    assert_eq!(h.siebel_get(&contact).await?.context("in Siebel")?["Job Title"], "Astronomer");
    h.assert_quiet("MODERN").await?;
    let tokens = h.demo.ews_sim.stats().requests.get("TOKEN").copied().unwrap_or(0);
    assert_eq!(tokens, 1, "one token for every run so far");
    assert_eq!(sign_ins(&h, "refused"), 0);
    h.stop().await;
    Ok(())
}

/// Siebel → Exchange and an Outlook edit back, with NTLM and then Negotiate as the only
/// scheme the emulator offers, every connection over TLS. Further runs send their requests
/// over the connections already signed in: the handshakes stay within the per-mailbox
/// concurrency however many requests go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_syncs_over_tls_with_only_windows_sign_in_offered() -> anyhow::Result<()> {
    for (auth, counted) in [(EwsAuth::Ntlm, "ntlm"), (EwsAuth::Negotiate, "negotiate")] {
        let h = Harness::start_windows_sign_in(auth, None).await?;
        assert!(h.demo.ews_url.starts_with("https://"), "{}", h.demo.ews_url);
        assert!(h.demo.ews_auth.user.starts_with(r"EXAMPLE\"), "{}", h.demo.ews_auth.user);
        let mailbox = "windows@example.com";
        h.admin_post("/api/v1/users", json!({"login": "WINDOWS", "mailbox": mailbox}), 201).await?;
        let contact = h.siebel_insert(json!({"First Name": "Radia", "Last Name": "Perlman", "Job Title": "Engineer"})).await?;
        h.admin_post("/api/v1/users/WINDOWS/sync-list", json!({"siebel_id": contact}), 201).await?;
        let report = h.sync("WINDOWS").await?;
        assert_eq!((report["status"].as_str(), report["exchange"]["created"].as_u64()), (Some("ok"), Some(1)), "{auth}: {report}");
        let ids = h.demo.ews_sim.item_ids(mailbox, "contacts");
        assert_eq!(ids.len(), 1, "{auth}");
        let fields = h.demo.ews_sim.contact_fields(mailbox, &ids[0]).context("the contact")?;
        assert_eq!(fields.get("Surname").map(String::as_str), Some("Perlman"));

        let (handshakes, requests) = (sign_ins(&h, counted), ews_requests(&h));
        assert!(handshakes >= 1, "{auth}: signed in");
        h.demo.ews_sim.update_item_fields(mailbox, &ids[0], &[("JobTitle", "Fellow")])?;
        let report = h.sync("WINDOWS").await?;
        assert_eq!(report["siebel"]["updated"], 1, "{auth}: {report}");
        assert_eq!(h.siebel_get(&contact).await?.context("in Siebel")?["Job Title"], "Fellow");
        for _ in 0..3 {
            h.assert_quiet("WINDOWS").await?;
        }
        // Connections are signed in once and reused: the handshakes are bounded by how many
        // requests may be in flight for one mailbox, not by how many were sent.
        let (handshakes_after, requests_after) = (sign_ins(&h, counted), ews_requests(&h));
        assert!(requests_after >= requests + 8, "{auth}: the later runs sent requests");
        assert!(handshakes_after <= DEFAULT_MAILBOX_CONCURRENCY as u64, "{auth}: {handshakes} then {handshakes_after} handshakes");
        assert!(requests_after > 4 * handshakes_after, "{auth}: {requests_after} requests over {handshakes_after} handshakes");
        assert_eq!(sign_ins(&h, "refused"), 0, "{auth}");
        h.validate_ews_traffic()?;
        h.stop().await;
    }
    Ok(())
}

/// `tandem serve` against an Exchange that offers only NTLM: with Basic (no `auth`) the run
/// fails with a message naming what the server offers and `auth = "ntlm"`; with NTLM and a
/// wrong password it fails as a refused password; with a bare user name `check-config` names
/// `exchange.user`; with the right settings the contact syncs. Nothing is written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sign_in_settings_are_named_with_their_fix() -> anyhow::Result<()> {
    let h = Harness::start_windows_sign_in(EwsAuth::Ntlm, None).await?;
    let mailbox = "settings@example.com";
    let contact = h.siebel_insert(json!({"First Name": "Frances", "Last Name": "Spence"})).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    let token = "windows-sign-in-token";
    let ca_file = h.demo.ca_file.clone().context("the TLS demo has a CA")?;
    let write = |exchange_extra: &str, user: &str, password: &str| -> anyhow::Result<()> {
        let (siebel, state) = (&h.demo.siebel_auth, dir.path().join("state"));
        let text = format!(
            "[state]\ndir = {state:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\n\
             [siebel]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\nca_file = {ca:?}\n\n\
             [exchange]\nurl = \"{}\"\nuser = {user:?}\npassword = \"{password}\"\nca_file = {ca:?}\n{exchange_extra}\n\n\
             [schedule]\nmanual = true\n\n[[users]]\nlogin = \"SETTINGS\"\nmailbox = \"{mailbox}\"\n",
            h.demo.siebel_url,
            siebel.user,
            siebel.password,
            h.demo.ews_url,
            state = state.display().to_string(),
            ca = ca_file.display().to_string(),
        );
        std::fs::write(&config, text)?;
        Ok(())
    };
    let (user, password) = (h.demo.ews_auth.user.clone(), h.demo.ews_auth.password.clone());
    let run = |log: &'static str| {
        let (config, log, contact) = (config.clone(), dir.path().join(log), contact.clone());
        async move {
            let serve = ServeProcess::spawn(&config, &log, token, false).await?;
            let (status, _) = serve
                .call(reqwest::Method::POST, "/api/v1/users/SETTINGS/sync-list", Some(json!({"siebel_id": contact})))
                .await?;
            anyhow::ensure!(status == 200 || status == 201, "sync-list: {status}");
            let (_, report) = serve.call(reqwest::Method::POST, "/api/v1/users/SETTINGS/sync?wait=true", None).await?;
            serve.terminate().await?;
            anyhow::Ok(report)
        }
    };

    write("", &user, &password)?;
    let report = run("basic.log").await?;
    let error = report["errors"][0].as_str().unwrap_or_default();
    assert_eq!(report["status"], "failed", "{report}");
    assert!(error.contains("does not offer basic sign-in") && error.contains("NTLM"), "{error}");
    assert!(error.contains(r#"auth = "ntlm""#), "says what to set: {error}");

    write("auth = \"ntlm\"", &user, "wrong-password")?;
    let report = run("wrong.log").await?;
    let error = report["errors"][0].as_str().unwrap_or_default();
    assert!(error.contains("rejected the service account's credentials"), "{error}");
    assert!(sign_ins(&h, "refused") >= 2, "{:?}", h.demo.ews_sim.stats());
    assert_eq!(h.demo.ews_sim.item_count(mailbox, "contacts"), 0, "nothing was written");

    write("auth = \"ntlm\"", "svc-tandem", &password)?;
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_tandem")).arg("check-config").arg(&config).output()?;
    let said = String::from_utf8_lossy(&checked.stderr).to_string() + &String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(2), "{said}");
    assert!(said.contains("exchange.user") && said.contains(r"DOMAIN\user"), "{said}");

    write("auth = \"ntlm\"", &user, &password)?;
    let report = run("right.log").await?;
    assert_eq!((report["status"].as_str(), report["exchange"]["created"].as_u64()), (Some("ok"), Some(1)), "{report}");
    assert_eq!(h.demo.ews_sim.item_count(mailbox, "contacts"), 1);
    h.stop().await;
    Ok(())
}

/// With NTLM only, the streaming notification still wakes the user: an Outlook edit reaches
/// Siebel long before the next scheduled run (a minute away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_notifications_wake_a_user_under_ntlm() -> anyhow::Result<()> {
    let h = Harness::start_windows_sign_in(EwsAuth::Ntlm, Some(Duration::from_secs(60))).await?;
    let mailbox = "streamed@example.com";
    h.admin_post("/api/v1/users", json!({"login": "STREAMED", "mailbox": mailbox}), 201).await?;
    let contact = h.siebel_insert(json!({"First Name": "Hedy", "Last Name": "Lamarr", "Job Title": "Inventor"})).await?;
    h.admin_post("/api/v1/users/STREAMED/sync-list", json!({"siebel_id": contact}), 201).await?;
    let started = Instant::now();
    let item = loop {
        if let Some(id) = h.demo.ews_sim.item_ids(mailbox, "contacts").into_iter().next() {
            break id;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "the contact did not reach Exchange");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let started = Instant::now();
    while h.demo.ews_sim.stats().requests.get("GetStreamingEvents").is_none() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "no streaming connection: {:?}", h.demo.ews_sim.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edited = Instant::now();
    h.demo.ews_sim.update_item_fields(mailbox, &item, &[("JobTitle", "Actress")])?;
    loop {
        if h.siebel_get(&contact).await?.unwrap_or_default()["Job Title"] == "Actress" {
            break;
        }
        anyhow::ensure!(edited.elapsed() < Duration::from_secs(15), "the edit did not reach Siebel before the next run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sign_ins(&h, "ntlm") >= 2, "the streaming connection signed in on its own: {:?}", h.demo.ews_sim.stats());
    assert_eq!(sign_ins(&h, "refused"), 0);
    h.stop().await;
    Ok(())
}

/// `tandem sim ews --auth ntlm,negotiate` prints the account as DOMAIN\user and answers an
/// anonymous request with one WWW-Authenticate header per scheme, Negotiate first; an
/// unknown scheme is refused with the list of known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_on_its_own_offers_the_schemes_of_auth() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sim", "ews", "--listen", "127.0.0.1:0", "--auth", "ntlm,negotiate"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut url, mut auth) = (None, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(value) = line.strip_prefix("ews: ") {
                url = Some(value.to_owned());
            }
            if let Some(value) = line.strip_prefix("ews-auth: ") {
                auth = Some(value.to_owned());
                break;
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let (url, auth) = (url.context("an ews: line")?, auth.context("an ews-auth: line")?);
    assert!(auth.starts_with(r"TANDEM\svc-tandem:"), "{auth}");
    let http = tandem_host::transport::client_builder(&Default::default())?.build()?;
    let answer = http.post(&url).body("<x/>").send().await?;
    assert_eq!(answer.status(), 401);
    let offered: Vec<&str> = answer.headers().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).collect();
    assert_eq!(offered, ["Negotiate", "NTLM"]);
    let (user, password) = auth.split_once(':').context("USER:PASSWORD")?;
    let basic = http.post(&url).basic_auth(user, Some(password)).body("<x/>").send().await?;
    assert_eq!(basic.status(), 401, "Basic is refused when not offered");
    child.start_kill()?;
    child.wait().await?;

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sim", "ews", "--listen", "127.0.0.1:0", "--auth", "kerberos"])
        .output()?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("basic, ntlm, negotiate or oauth"), "{}", String::from_utf8_lossy(&refused.stderr));
    Ok(())
}
