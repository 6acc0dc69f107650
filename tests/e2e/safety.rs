//! Safety rules end to end: the mass-delete guard stops a run that would delete most of a
//! user's synced contacts, changes nothing, and lets one run through only when an
//! administrator allows it; a record Siebel refuses (a bounded list's value, a field its
//! repository lacks) is set aside while the rest syncs.

use serde_json::json;

use crate::domains::{employee_user, field};
use crate::harness::{Harness, xml_attr};

/// Why the Exchange item `item` of `login` is in quarantine; an error when it is not there.
async fn quarantine_reason(h: &Harness, login: &str, item: &str) -> anyhow::Result<String> {
    let quarantine = h.admin_get(&format!("/api/v1/users/{login}/quarantine")).await?;
    let entry = quarantine.as_array().into_iter().flatten().find(|q| q["record_key"] == format!("exchange:{item}"));
    let entry = entry.ok_or_else(|| anyhow::anyhow!("item {item} is not quarantined: {quarantine}"))?;
    Ok(entry["reason"].as_str().unwrap_or_default().to_owned())
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_siebel_refuses_is_set_aside_and_the_rest_of_the_run_goes_on() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("REFUSED", "refused@example.com");
    employee_user(&h, login, mailbox).await?;
    // The default mapping writes an appointment's first category into the activity's Type,
    // a bounded list of values: Siebel refuses "Blue Category".
    let refused = h
        .ews_create_in(
            mailbox,
            "calendar",
            "<t:CalendarItem><t:Subject>Colour-coded</t:Subject><t:Categories><t:String>Blue Category</t:String>\
             </t:Categories><t:Start>2026-12-03T09:00:00Z</t:Start><t:End>2026-12-03T10:00:00Z</t:End></t:CalendarItem>",
        )
        .await?;
    h.ews_create_in(
        mailbox,
        "calendar",
        "<t:CalendarItem><t:Subject>Plain</t:Subject><t:Start>2026-12-03T11:00:00Z</t:Start>\
         <t:End>2026-12-03T12:00:00Z</t:End></t:CalendarItem>",
    )
    .await?;

    let report = h.sync(login).await?;
    assert_eq!(report["status"], "ok", "one refused record does not fail the run: {report}");
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    let errors = report["errors"].to_string();
    assert!(errors.contains("SBL-EAI-04401") && errors.contains("Blue Category"), "Siebel's message is kept: {report}");
    assert_eq!(h.siebel_query("Action", "[Description] = 'Plain'").await?.len(), 1);
    assert!(h.siebel_query("Action", "[Description] = 'Colour-coded'").await?.is_empty(), "nothing half-written");
    let reason = quarantine_reason(&h, login, &refused).await?;
    assert!(reason.contains("SBL-EAI-04401"), "{reason}");
    // The cursor moved on: the next run is quiet, the refused item waits for its retry.
    h.assert_quiet(login).await?;

    // The user picks an activity type as the category: the edit brings the item back, it
    // goes through and leaves quarantine.
    let item = h.ews_get_contact(mailbox, &refused).await?;
    let change_key = xml_attr(&item, "ItemId", "ChangeKey").expect("a ChangeKey");
    h.ews_set_field(
        mailbox,
        &refused,
        &change_key,
        "item:Categories",
        "<t:CalendarItem><t:Categories><t:String>Meeting</t:String></t:Categories></t:CalendarItem>",
    )
    .await?;
    let report = h.sync(login).await?;
    assert_eq!((report["status"].as_str(), report["siebel"]["created"].as_u64()), (Some("ok"), Some(1)), "{report}");
    let imported = h.siebel_query("Action", "[Description] = 'Colour-coded'").await?;
    assert_eq!(imported.len(), 1);
    assert_eq!(field(&imported[0], "Type"), "Meeting");
    let quarantine = h.admin_get(&format!("/api/v1/users/{login}/quarantine")).await?;
    assert_eq!(quarantine, json!([]), "released once it went through");
    h.stop().await;
    Ok(())
}

/// A Siebel whose Contact lacks a field the mapping writes (a site's repository without it)
/// refuses the record that carries a value for it (`SBL-DAT-00398`): that record is set aside
/// with Siebel's message and the rest of the user's contacts sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_this_siebel_lacks_sets_aside_only_the_records_that_carry_it() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("LACKING", "lacking@example.com");
    employee_user(&h, login, mailbox).await?;
    h.demo.siebel_sim.hide_field("Contact", "Job Title");
    let titled = h
        .ews_create_in(
            mailbox,
            "contacts",
            "<t:Contact><t:GivenName>Tess</t:GivenName><t:JobTitle>Buyer</t:JobTitle><t:Surname>Titled</t:Surname></t:Contact>",
        )
        .await?;
    h.ews_create_in(mailbox, "contacts", "<t:Contact><t:GivenName>Una</t:GivenName><t:Surname>Untitled</t:Surname></t:Contact>")
        .await?;

    let report = h.sync(login).await?;
    assert_eq!(report["status"], "ok", "one refused record does not fail the run: {report}");
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    assert_eq!(h.siebel_query("Contact", "[Last Name] = 'Untitled'").await?.len(), 1);
    assert!(h.siebel_query("Contact", "[Last Name] = 'Titled'").await?.is_empty(), "nothing half-written");
    let reason = quarantine_reason(&h, login, &titled).await?;
    assert!(reason.contains("SBL-DAT-00398") && reason.contains("'Job Title'"), "Siebel's message names the field: {reason}");
    h.stop().await;
    Ok(())
}
