//! The service as an administrator runs it: the scheduler, the admin API's user management
//! and history, re-extraction, and the `tandem` client commands.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Harness;

/// With the scheduler on, a contact put on the sync list reaches Exchange without anyone
/// asking for a sync, and an Exchange edit comes back on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_syncs_users_on_its_own() -> anyhow::Result<()> {
    let h = Harness::start_scheduled(Duration::from_millis(300)).await?;
    let mailbox = "auto@example.com";
    h.admin_post("/api/v1/users", json!({"login": "AUTO", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Mary", "Last Name": "Jackson", "Job Title": "Engineer"})).await?;
    h.admin_post("/api/v1/users/AUTO/sync-list", json!({"siebel_id": id}), 201).await?;
    h.wait_for_contact(mailbox, Duration::from_secs(20)).await?;
    let runs = h.admin_get("/api/v1/users/AUTO/runs").await?;
    assert!(runs.as_array().is_some_and(|r| !r.is_empty()), "scheduled runs are in the history: {runs}");
    let user = h.admin_get("/api/v1/users/AUTO").await?;
    assert!(user["schedule"]["next_run_ms"].as_i64().is_some(), "{user}");
    h.stop().await;
    Ok(())
}

/// PATCH changes the user map; a disabled user is not synced; reset re-extracts without
/// duplicating anything on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_management_and_reset_without_duplicates() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mailbox = "reset@example.com";
    h.admin_post("/api/v1/users", json!({"login": "RESET", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Dorothy", "Last Name": "Vaughan", "Email Address": "dv@nasa.example"})).await?;
    h.admin_post("/api/v1/users/RESET/sync-list", json!({"siebel_id": id}), 201).await?;
    // A contact made in Outlook is imported into Siebel.
    h.demo.ews_sim.create_contact(mailbox, &[("GivenName", "Christine"), ("Surname", "Darden")])?;
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    let siebel_before = h.siebel_count().await?;

    let reset = h.admin_post("/api/v1/users/RESET/reset", json!({}), 200).await?;
    assert_eq!(reset["reset"], true);
    let report = h.sync("RESET").await?;
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["exchange"]["created"], 0, "re-extract adopts the existing copy: {report}");
    assert_eq!(report["siebel"]["created"], 0, "re-extract finds the imported contact: {report}");
    assert_eq!(h.ews_find_contacts(mailbox).await?.len(), 2, "no duplicate in Exchange");
    assert_eq!(h.siebel_count().await?, siebel_before, "no duplicate in Siebel");
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"], json!({"created": 0, "updated": 0, "deleted": 0}), "{report}");

    // Disable: the user keeps links and sync list but is not synced.
    let user = h.admin_patch("/api/v1/users/RESET", json!({"enabled": false, "group": "emea"})).await?;
    assert_eq!(user["enabled"], false);
    assert_eq!(user["group"], "emea");
    h.siebel_update(&id, json!({"Job Title": "Supervisor"})).await?;
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"]["updated"], 0, "a disabled user is not synced: {report}");
    h.admin_patch("/api/v1/users/RESET", json!({"enabled": true})).await?;
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"]["updated"], 1, "re-enabled, the edit goes through: {report}");
    let list = h.admin_get("/api/v1/users/RESET/sync-list").await?;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "sync list kept across disable: {list}");

    for path in ["/api/v1/users/RESET/conflicts", "/api/v1/users/RESET/quarantine", "/api/v1/status"] {
        h.admin_get(path).await?;
    }
    let openapi = h.admin_get("/api/v1/openapi.json").await?;
    for path in ["/api/v1/users", "/api/v1/users/{login}/sync", "/api/v1/plugins", "/api/v1/users/{login}/reset"] {
        assert!(openapi["paths"][path].is_object(), "OpenAPI document lacks {path}");
    }
    h.stop().await;
    Ok(())
}

/// `tandem users|sync-list|sync|status` drive a running service through the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_drive_a_running_service() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let id = h.siebel_insert(json!({"First Name": "Annie", "Last Name": "Easley"})).await?;
    let tandem = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(args)
            .env("TANDEM_ADMIN_URL", &h.demo.admin_url)
            .env("TANDEM_ADMIN_TOKEN", &h.demo.admin_token)
            .output()
    };
    let out = tandem(&["users", "add", "CLI", "cli@example.com"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tandem(&["sync-list", "add", "CLI", &id])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tandem(&["sync", "--user", "CLI"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CLI: ok") && stdout.contains("exchange +1 ~0 -0"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1/1"), "a progress bar on stderr");
    let out = tandem(&["status"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("CLI ") && l.contains(" ok ")), "{stdout}");
    // A wrong token is refused with the API's message and a failure exit code.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", "--admin", &h.demo.admin_url, "--token", "wrong"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    h.stop().await;
    Ok(())
}

/// An Outlook edit reaches Siebel within seconds: the Exchange streaming notification wakes
/// the user long before the next scheduled run (the interval here is a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_notifications_trigger_a_sync_within_seconds() -> anyhow::Result<()> {
    let h = Harness::start_scheduled(Duration::from_secs(60)).await?;
    let mailbox = "notified@example.com";
    h.admin_post("/api/v1/users", json!({"login": "NOTIFIED", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Evelyn", "Last Name": "Boyd", "Job Title": "Analyst"})).await?;
    h.admin_post("/api/v1/users/NOTIFIED/sync-list", json!({"siebel_id": id}), 201).await?;
    let item_id = h.wait_for_contact(mailbox, Duration::from_secs(20)).await?;
    // Adding the user made the watcher subscribe to its mailbox; give that a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edited = Instant::now();
    h.demo.ews_sim.update_item_fields(mailbox, &item_id, &[("JobTitle", "Mathematician")])?;
    loop {
        let record = h.siebel_get(&id).await?.unwrap_or_default();
        if record["Job Title"] == "Mathematician" {
            break;
        }
        anyhow::ensure!(
            edited.elapsed() < Duration::from_secs(15),
            "the Exchange edit did not reach Siebel before the next scheduled run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("Exchange edit reached Siebel in {:?}", edited.elapsed());
    h.stop().await;
    Ok(())
}

/// A Siebel edit reaches Exchange within seconds: Siebel change detection wakes the users
/// whose sync list holds the record, long before the next scheduled run (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siebel_change_detection_triggers_a_sync_within_seconds() -> anyhow::Result<()> {
    let h = Harness::start_scheduled(Duration::from_secs(60)).await?;
    let mailbox = "dispatched@example.com";
    h.admin_post("/api/v1/users", json!({"login": "DISPATCHED", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Frances", "Last Name": "Allen", "Job Title": "Researcher"})).await?;
    h.admin_post("/api/v1/users/DISPATCHED/sync-list", json!({"siebel_id": id}), 201).await?;
    let item_id = h.wait_for_contact(mailbox, Duration::from_secs(20)).await?;
    let edited = Instant::now();
    h.siebel_update(&id, json!({"Job Title": "Fellow"})).await?;
    loop {
        let fields = h.demo.ews_sim.contact_fields(mailbox, &item_id).unwrap_or_default();
        if fields.get("JobTitle").map(String::as_str) == Some("Fellow") {
            break;
        }
        anyhow::ensure!(
            edited.elapsed() < Duration::from_secs(15),
            "the Siebel edit did not reach Exchange before the next scheduled run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("Siebel edit reached Exchange in {:?}", edited.elapsed());
    h.stop().await;
    Ok(())
}
