//! End-to-end tests: the emulators and the host on loopback, driven only through the
//! protocols a user has (Siebel REST, EWS SOAP, the admin API, the `tandem` binary).

mod conflicts;
mod crash;
mod doctor;
mod domains;
mod dry_run;
mod exchange_online;
mod harness;
mod meetings;
mod model;
mod safety;
mod service;
mod tls;
mod windows_signin;

use std::time::Duration;

use harness::{Harness, xml_attr, xml_text};
use serde_json::json;

/// The walking skeleton: a Siebel contact on a user's sync list reaches Exchange; an
/// Exchange edit reaches Siebel; deleting the Exchange copy takes the record off the sync
/// list and leaves Siebel alone; a sync with no edits writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_round_trip_through_sync_list() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mailbox = "tester@example.com";
    h.admin_post("/api/v1/users", json!({"login": "TESTER", "mailbox": mailbox}), 201).await?;

    // 1. Create a contact through the Siebel REST API and put it on the sync list.
    let siebel_id = h
        .siebel_insert(json!({
            "First Name": "Ada",
            "Last Name": "Lovelace",
            "Email Address": "ada@analytical.example",
            "Job Title": "Chief Engineer",
            "Work Phone #": "+44 20 7946 0001",
        }))
        .await?;
    h.admin_post("/api/v1/users/TESTER/sync-list", json!({"siebel_id": siebel_id}), 201).await?;
    let report = h.sync("TESTER").await?;
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["exchange"]["created"], 1, "{report}");

    // 2. Read it back from EWS with FindItem + GetItem under impersonation.
    let ids = h.ews_find_contacts(mailbox).await?;
    assert_eq!(ids.len(), 1, "one contact in the mailbox");
    let item = h.ews_get_contact(mailbox, &ids[0]).await?;
    assert_eq!(xml_text(&item, "GivenName").as_deref(), Some("Ada"));
    assert_eq!(xml_text(&item, "Surname").as_deref(), Some("Lovelace"));
    assert_eq!(harness::entry(&item, "EmailAddresses", "EmailAddress1").as_deref(), Some("ada@analytical.example"));
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("Chief Engineer"));
    assert_eq!(harness::entry(&item, "PhoneNumbers", "BusinessPhone").as_deref(), Some("+44 20 7946 0001"));

    // 3. Change the JobTitle in Exchange with UpdateItem; the sync writes it to Siebel.
    let change_key = xml_attr(&item, "ItemId", "ChangeKey").expect("GetItem returns a ChangeKey");
    h.ews_set_job_title(mailbox, &ids[0], &change_key, "Countess of Lovelace").await?;
    let report = h.sync("TESTER").await?;
    assert_eq!(report["siebel"]["updated"], 1, "{report}");
    let record = h.siebel_get(&siebel_id).await?.expect("the contact is in Siebel");
    assert_eq!(record["Job Title"], "Countess of Lovelace");

    // 4. Delete the Exchange copy: the contact stays in Siebel, off the sync list.
    h.ews_delete(mailbox, &ids[0]).await?;
    let report = h.sync("TESTER").await?;
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["siebel"]["deleted"], 0, "{report}");
    assert!(h.siebel_get(&siebel_id).await?.is_some(), "the Siebel contact survives");
    let list = h.admin_get("/api/v1/users/TESTER/sync-list").await?;
    assert_eq!(list, json!([]), "the record left the sync list");
    assert!(h.ews_find_contacts(mailbox).await?.is_empty());

    // 5. A sync with no edits makes zero writes on either side.
    let before = h.stats().await?;
    let report = h.sync("TESTER").await?;
    let after = h.stats().await?;
    assert_eq!(report["exchange"], json!({"created": 0, "updated": 0, "deleted": 0}));
    assert_eq!(report["siebel"], json!({"created": 0, "updated": 0, "deleted": 0}));
    for write in ["CreateItem", "UpdateItem", "DeleteItem"] {
        assert_eq!(before.ews(write), after.ews(write), "EWS {write} during an idle sync");
    }
    for write in ["POST", "PUT", "DELETE"] {
        assert_eq!(before.siebel(write), after.siebel(write), "Siebel {write} during an idle sync");
    }
    assert!(after.ews("SyncFolderItems") > before.ews("SyncFolderItems"), "the idle sync did run");

    h.validate_ews_traffic()?;
    h.stop().await;
    Ok(())
}

/// Taking a record off the sync list deletes its Exchange copy; a second idle sync after
/// changes converged writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_from_sync_list_deletes_exchange_copy_only() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mailbox = "remover@example.com";
    h.admin_post("/api/v1/users", json!({"login": "REMOVER", "mailbox": mailbox}), 201).await?;
    let kept = h.siebel_insert(json!({"First Name": "Grace", "Last Name": "Hopper", "Email Address": "grace@navy.example"})).await?;
    let dropped = h.siebel_insert(json!({"First Name": "Alan", "Last Name": "Turing", "Job Title": "Cryptanalyst"})).await?;
    for id in [&kept, &dropped] {
        h.admin_post("/api/v1/users/REMOVER/sync-list", json!({"siebel_id": id}), 201).await?;
    }
    // Adding twice is not an error, and not a second entry.
    h.admin_post("/api/v1/users/REMOVER/sync-list", json!({"siebel_id": kept}), 200).await?;
    let report = h.sync("REMOVER").await?;
    assert_eq!(report["exchange"]["created"], 2, "{report}");
    assert_eq!(h.ews_find_contacts(mailbox).await?.len(), 2);

    h.admin_delete(&format!("/api/v1/users/REMOVER/sync-list/{dropped}"), 204).await?;
    let report = h.sync("REMOVER").await?;
    assert_eq!(report["exchange"]["deleted"], 1, "{report}");
    assert_eq!(h.ews_find_contacts(mailbox).await?.len(), 1);
    assert!(h.siebel_get(&dropped).await?.is_some(), "removing from the sync list never deletes in Siebel");

    // A Siebel edit propagates; then an idle sync writes nothing.
    h.siebel_update(&kept, json!({"Job Title": "Rear Admiral"})).await?;
    let report = h.sync("REMOVER").await?;
    assert_eq!(report["exchange"]["updated"], 1, "{report}");
    let ids = h.ews_find_contacts(mailbox).await?;
    let item = h.ews_get_contact(mailbox, &ids[0]).await?;
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("Rear Admiral"));
    let report = h.sync("REMOVER").await?;
    assert_eq!(report["exchange"], json!({"created": 0, "updated": 0, "deleted": 0}), "{report}");
    assert_eq!(report["siebel"], json!({"created": 0, "updated": 0, "deleted": 0}), "{report}");

    h.validate_ews_traffic()?;
    h.stop().await;
    Ok(())
}

/// The admin API refuses calls without the token and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_the_token() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{}/api/v1/users", h.demo.admin_url))
        .json(&json!({"login": "EVE", "mailbox": "eve@example.com"}))
        .send()
        .await?;
    assert_eq!(answer.status(), 401);
    let body: serde_json::Value = answer.json().await?;
    assert!(body["error"].is_string() && body["detail"].is_string(), "{body}");
    let answer = client
        .get(format!("{}/api/v1/users", h.demo.admin_url))
        .bearer_auth("wrong-token")
        .send()
        .await?;
    assert_eq!(answer.status(), 401);
    assert_eq!(h.admin_get("/api/v1/users").await?, json!([]), "nothing was created");
    let health = client.get(format!("{}/healthz", h.demo.admin_url)).send().await?;
    assert_eq!(health.status(), 200);
    h.stop().await;
    Ok(())
}

/// `tandem demo --manual` prints the contract's endpoint lines, serves seeded users, syncs
/// on request and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_binary_prints_endpoints_and_syncs() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let mut demo = harness::DemoProcess::spawn(state.path()).await?;
    let lines = demo.endpoints.clone();
    for key in ["siebel", "siebel-auth", "ews", "ews-auth", "admin", "admin-token"] {
        assert!(lines.contains_key(key), "missing `{key}:` line in {lines:?}");
    }
    assert!(lines["siebel"].starts_with("http://127.0.0.1:") && lines["siebel"].ends_with("/siebel/v1.0"));
    assert!(lines["ews"].ends_with("/EWS/Exchange.asmx"));
    let client = reqwest::Client::new();
    let users: serde_json::Value = client
        .get(format!("{}/api/v1/users", lines["admin"]))
        .bearer_auth(&lines["admin-token"])
        .send()
        .await?
        .json()
        .await?;
    assert!(users.as_array().is_some_and(|u| u.len() >= 3), "{users}");
    let report: serde_json::Value = client
        .post(format!("{}/api/v1/users/JSMITH/sync?wait=true", lines["admin"]))
        .bearer_auth(&lines["admin-token"])
        .timeout(Duration::from_secs(60))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(report["status"], "ok", "{report}");
    assert!(report["exchange"]["created"].as_u64() >= Some(2), "{report}");
    let code = demo.terminate().await?;
    assert_eq!(code, Some(0), "demo exits 0 on SIGTERM");
    Ok(())
}
