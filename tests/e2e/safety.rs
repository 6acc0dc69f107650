//! Safety rules end to end: the mass-delete guard stops a run that would delete most of a
//! user's synced contacts, changes nothing, and lets one run through only when an
//! administrator allows it.

use serde_json::json;

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mass_delete_guard_stops_a_run_that_would_delete_most_contacts() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("GUARDED", "guarded@example.com");
    h.admin_post("/api/v1/users", json!({"login": login, "mailbox": mailbox}), 201).await?;
    let mut ids = Vec::new();
    for n in 0..12 {
        let id = h.siebel_insert(json!({"First Name": "Pat", "Last Name": format!("Guarded{n}")})).await?;
        h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": id}), 201).await?;
        ids.push(id);
    }
    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 12, "{report}");

    // 8 of 12 taken off the sync list at once: more than half, so the run stops.
    for id in &ids[..8] {
        h.admin_delete(&format!("/api/v1/users/{login}/sync-list/{id}"), 204).await?;
    }
    let stopped = h.sync(login).await?;
    assert_eq!(stopped["status"], "failed", "{stopped}");
    let error = stopped["errors"][0].as_str().unwrap_or_default();
    assert!(error.contains("mass-delete guard") && error.contains("8 of the user's 12"), "{stopped}");
    assert!(error.contains("allow-mass-delete"), "the message says what to do: {error}");
    assert_eq!(h.ews_find_contacts(mailbox).await?.len(), 12, "nothing was deleted");
    // It stays stopped until someone allows it.
    assert_eq!(h.sync(login).await?["status"], "failed");

    h.admin_post(&format!("/api/v1/users/{login}/allow-mass-delete"), json!({}), 200).await?;
    let allowed = h.sync(login).await?;
    assert_eq!(allowed["status"], "ok", "{allowed}");
    assert_eq!(allowed["exchange"]["deleted"], 8, "{allowed}");
    assert_eq!(h.ews_find_contacts(mailbox).await?.len(), 4);
    // The allowance was for one run: a small removal later passes on its own, a large one
    // stops again.
    h.admin_delete(&format!("/api/v1/users/{login}/sync-list/{}", ids[8]), 204).await?;
    assert_eq!(h.sync(login).await?["status"], "ok", "1 of 4, and 4 synced contacts are below the guard's 10-item floor");
    h.stop().await;
    Ok(())
}
