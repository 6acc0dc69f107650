//! The operators' dry run: `sync?dry_run=true` answers the writes a run would make and
//! writes nothing anywhere; the real run made right after makes exactly those writes.

use serde_json::{Value, json};

use crate::harness::{Harness, Stats};

/// Writes both emulators have taken so far.
fn writes(stats: &Stats) -> (u64, u64) {
    let siebel = ["POST", "PUT", "DELETE"].iter().map(|m| stats.siebel(m)).sum();
    let ews = ["CreateItem", "UpdateItem", "DeleteItem"].iter().map(|op| stats.ews(op)).sum();
    (siebel, ews)
}

/// How many planned writes go to `side` with `action`.
fn planned(report: &Value, side: &str, action: &str) -> u64 {
    let plan = report["plan"].as_array().cloned().unwrap_or_default();
    plan.iter().filter(|w| w["side"] == side && w["action"] == action).count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_answers_the_plan_writes_nothing_and_the_real_run_follows_it() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("PREVIEW", "preview@example.com");
    h.admin_post("/api/v1/users", json!({"login": login, "mailbox": mailbox}), 201).await?;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = h.siebel_insert(json!({"First Name": "Pia", "Last Name": format!("Preview{n}"), "Job Title": "Buyer"})).await?;
        h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": id}), 201).await?;
        ids.push(id);
    }
    h.ews_create_in(
        mailbox,
        "contacts",
        "<t:Contact><t:GivenName>Olli</t:GivenName><t:Surname>Outlook</t:Surname></t:Contact>",
    )
    .await?;

    // A first sync, previewed.
    let before = writes(&h.stats().await?);
    let preview = h.admin_post(&format!("/api/v1/users/{login}/sync?wait=true&dry_run=true"), json!({}), 200).await?;
    assert_eq!(preview["status"], "ok", "{preview}");
    assert_eq!(planned(&preview, "exchange", "create"), 3, "{preview}");
    assert_eq!(planned(&preview, "siebel", "create"), 1, "{preview}");
    let create = preview["plan"].as_array().into_iter().flatten().find(|w| w["side"] == "exchange").expect("a create");
    assert_eq!(create["domain"], "contacts");
    assert_eq!(create["id"], Value::Null);
    assert!(ids.iter().any(|id| create["from"] == id.as_str()), "names the Siebel record: {create}");
    assert_eq!(create["fields"]["JobTitle"], "Buyer", "with the fields: {create}");
    assert_eq!(writes(&h.stats().await?), before, "a dry run writes to neither server");
    assert!(h.ews_find_contacts(mailbox).await?.len() == 1, "no copy was made");
    let runs = h.admin_get(&format!("/api/v1/users/{login}/runs")).await?;
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "nor a run in the history: {runs}");
    // Planning again plans the same: nothing moved (no cursor, no link).
    let again = h.admin_post(&format!("/api/v1/users/{login}/sync?wait=true&dry_run=true"), json!({}), 200).await?;
    assert_eq!(again["plan"], preview["plan"]);

    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], planned(&preview, "exchange", "create"), "{report}");
    assert_eq!(report["siebel"]["created"], planned(&preview, "siebel", "create"), "{report}");
    assert!(report.get("plan").is_none(), "a real run reports no plan: {report}");

    // After an edit in Siebel, the plan is one update with the new value, and so is the run.
    h.siebel_update(&ids[0], json!({"Job Title": "Head of Buying"})).await?;
    let preview = h.admin_post(&format!("/api/v1/users/{login}/sync?wait=true&dry_run=true"), json!({}), 200).await?;
    let plan = preview["plan"].as_array().cloned().unwrap_or_default();
    assert_eq!(plan.len(), 1, "{preview}");
    assert_eq!((plan[0]["side"].as_str(), plan[0]["action"].as_str()), (Some("exchange"), Some("update")));
    assert_eq!(plan[0]["from"], ids[0].as_str());
    assert_eq!(plan[0]["fields"]["JobTitle"], "Head of Buying");
    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["updated"], 1, "{report}");
    h.assert_quiet(login).await?;
    let quiet = h.admin_post(&format!("/api/v1/users/{login}/sync?wait=true&dry_run=true"), json!({}), 200).await?;
    assert!(quiet.get("plan").is_none(), "nothing left to do: {quiet}");
    h.stop().await;
    Ok(())
}
