//! One scenario per domain rule of SSSE (`reference/siebel-ssse-and-rest.md` §2–4), end to
//! end over both emulators: employees, personal contacts, calendar, tasks and sync levels.

use serde_json::{Value, json};

use crate::harness::{Harness, xml_text};

/// A user who is a Siebel employee (so they own personal contacts and activities); returns
/// the Employee Id.
pub(crate) async fn employee_user(h: &Harness, login: &str, mailbox: &str) -> anyhow::Result<String> {
    let employee = h
        .siebel_insert_into(
            "Employee",
            json!({"First Name": "Dana", "Last Name": login, "Login Name": login, "EMail Addr": mailbox}),
        )
        .await?;
    h.admin_post("/api/v1/users", json!({"login": login, "mailbox": mailbox}), 201).await?;
    Ok(employee)
}

pub(crate) fn field<'v>(record: &'v Value, name: &str) -> &'v str {
    record[name].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn employees_are_export_only_with_category_employee_edits_overwritten_and_deletes_restored() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("EMPSYNC", "empsync@example.com");
    h.admin_post("/api/v1/users", json!({"login": login, "mailbox": mailbox}), 201).await?;
    let colleague = h
        .siebel_insert_into(
            "Employee",
            json!({"First Name": "Ada", "Last Name": "Lovelace", "Login Name": "ALOVELACE",
                   "EMail Addr": "ada@example.com", "Job Title": "Analyst"}),
        )
        .await?;
    h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": colleague}), 201).await?;

    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(report["errors"], json!([]), "an employee on the sync list is not a missing contact: {report}");
    let ids = h.ews_find_contacts(mailbox).await?;
    assert_eq!(ids.len(), 1);
    let item = h.ews_get_contact(mailbox, &ids[0]).await?;
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("Analyst"));
    assert!(item.contains("<t:String>Employee</t:String>"), "written with category Employee: {item}");

    // An Outlook edit is overwritten from Siebel; Siebel is never written.
    let change_key = crate::harness::xml_attr(&item, "ItemId", "ChangeKey").unwrap_or_default();
    h.ews_set_job_title(mailbox, &ids[0], &change_key, "Rogue title").await?;
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"], json!({"created": 0, "updated": 0, "deleted": 0}), "{report}");
    assert_eq!(report["exchange"]["updated"], 1, "{report}");
    let item = h.ews_get_contact(mailbox, &ids[0]).await?;
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("Analyst"), "the Outlook edit was overwritten");
    let employee = h.siebel_get_from("Employee", &colleague).await?.expect("still there");
    assert_eq!(field(&employee, "Job Title"), "Analyst");

    // An Outlook delete brings the copy back, and the employee stays on the sync list.
    h.ews_delete(mailbox, &ids[0]).await?;
    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 1, "the deleted copy is restored: {report}");
    assert_eq!(report["removed_from_sync_list"], 0, "{report}");
    let restored = h.ews_find_contacts(mailbox).await?;
    assert_eq!(restored.len(), 1);
    assert_ne!(restored[0], ids[0], "a new item");
    let list = h.admin_get(&format!("/api/v1/users/{login}/sync-list")).await?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    h.assert_quiet(login).await?;
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_contacts_sync_as_private_contacts_and_an_outlook_delete_deletes_in_siebel() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("PERSONAL", "personal@example.com");
    let employee = employee_user(&h, login, mailbox).await?;
    let mine = h
        .siebel_insert(json!({"First Name": "Mum", "Last Name": "Personal", "Personal Contact": "Y",
                              "Primary Owner Id": employee, "Cellular Phone #": "+1 555 0100"}))
        .await?;
    // Someone else's personal contact stays out.
    h.siebel_insert(json!({"First Name": "Not", "Last Name": "Mine", "Personal Contact": "Y", "Primary Owner Id": "0-OTHER"}))
        .await?;

    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    let ids = h.ews_find_contacts(mailbox).await?;
    let item = h.ews_get_contact(mailbox, &ids[0]).await?;
    assert_eq!(xml_text(&item, "Sensitivity").as_deref(), Some("Private"), "{item}");
    assert_eq!(xml_text(&item, "Surname").as_deref(), Some("Personal"));

    // A private contact made in Outlook becomes the user's personal contact in Siebel, and
    // is not put on the sync list (that is for business contacts).
    h.ews_create_in(
        mailbox,
        "contacts",
        "<t:Contact><t:Sensitivity>Private</t:Sensitivity><t:GivenName>Old</t:GivenName><t:Surname>Friend</t:Surname></t:Contact>",
    )
    .await?;
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    let created = h.siebel_query("Contact", "[Last Name] = 'Friend'").await?;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(field(&created[0], "Personal Contact"), "Y");
    assert_eq!(field(&created[0], "Primary Owner Id"), employee);
    let list = h.admin_get(&format!("/api/v1/users/{login}/sync-list")).await?;
    assert_eq!(list, json!([]), "personal contacts don't use the sync list");

    // Deleted in Outlook: the Siebel personal contact goes too.
    h.ews_delete(mailbox, &ids[0]).await?;
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"]["deleted"], 1, "{report}");
    assert!(h.siebel_get(&mine).await?.is_none(), "the personal contact was deleted in Siebel");
    h.assert_quiet(login).await?;
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_activities_displayed_in_to_do_and_sync_both_ways() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("TASKER", "tasker@example.com");
    let employee = employee_user(&h, login, mailbox).await?;
    let task = h
        .siebel_insert_into(
            "Action",
            json!({"Type": "To Do", "Display": "To Do and Activities", "Description": "Send the quote",
                   "Due": "12/03/2026 17:00:00", "Priority": "2-High", "Primary Owner Id": employee}),
        )
        .await?;
    // Activities Only: in neither calendar nor tasks.
    h.siebel_insert_into(
        "Action",
        json!({"Type": "Call", "Display": "Activities Only", "Description": "Log only", "Primary Owner Id": employee}),
    )
    .await?;

    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    let tasks = h.ews_find_in(mailbox, "tasks").await?;
    assert_eq!(tasks.len(), 1);
    assert!(h.ews_find_in(mailbox, "calendar").await?.is_empty(), "a To Do is not an appointment");
    let item = h.ews_get_contact(mailbox, &tasks[0]).await?;
    assert_eq!(xml_text(&item, "Subject").as_deref(), Some("Send the quote"));
    assert_eq!(xml_text(&item, "Importance").as_deref(), Some("High"), "2-High → High");

    // Edited in Siebel: the task follows.
    let action = json!({"Description": "Send the revised quote"});
    h.siebel_update_in("Action", &task, action).await?;
    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["updated"], 1, "{report}");
    let item = h.ews_get_contact(mailbox, &tasks[0]).await?;
    assert_eq!(xml_text(&item, "Subject").as_deref(), Some("Send the revised quote"));

    // A task made in Outlook becomes the user's To Do activity in Siebel.
    h.ews_create_in(mailbox, "tasks", "<t:Task><t:Subject>Call the bank</t:Subject></t:Task>").await?;
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    let created = h.siebel_query("Action", "[Description] = 'Call the bank'").await?;
    assert_eq!(created.len(), 1);
    assert_eq!(field(&created[0], "Display"), "To Do and Activities");
    assert_eq!(field(&created[0], "Primary Owner Id"), employee);

    h.assert_quiet(login).await?;
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_syncs_appointments_with_both_dates_and_deletes_follow() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("PLANNER", "planner@example.com");
    let employee = employee_user(&h, login, mailbox).await?;
    let meeting = h
        .siebel_insert_into(
            "Action",
            json!({"Type": "Meeting", "Display": "Calendar and Activities", "Description": "Account review",
                   "Planned": "12/01/2026 15:00:00", "Planned Completion": "12/01/2026 16:00:00",
                   "Primary Owner Id": employee}),
        )
        .await?;
    // Without Planned Completion an activity is not an appointment.
    h.siebel_insert_into(
        "Action",
        json!({"Type": "Meeting", "Display": "Calendar and Activities", "Description": "Undated",
               "Planned": "12/02/2026 15:00:00", "Primary Owner Id": employee}),
    )
    .await?;

    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    let items = h.ews_find_in(mailbox, "calendar").await?;
    assert_eq!(items.len(), 1);
    let item = h.ews_get_contact(mailbox, &items[0]).await?;
    assert_eq!(xml_text(&item, "Subject").as_deref(), Some("Account review"));
    // The demo's Siebel user is in New York: 15:00 there is 20:00 UTC in December.
    assert_eq!(xml_text(&item, "Start").as_deref(), Some("2026-12-01T20:00:00Z"));
    assert!(
        xml_text(&item, "EmailAddress").is_some_and(|organizer| organizer.eq_ignore_ascii_case(mailbox)),
        "the owner is the organizer: {item}"
    );

    // An appointment made in Outlook by its organizer becomes a Siebel calendar activity.
    h.ews_create_in(
        mailbox,
        "calendar",
        "<t:CalendarItem><t:Subject>Lunch with a prospect</t:Subject><t:Start>2026-12-02T12:00:00Z</t:Start>\
         <t:End>2026-12-02T13:00:00Z</t:End></t:CalendarItem>",
    )
    .await?;
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    let lunch = h.siebel_query("Action", "[Description] = 'Lunch with a prospect'").await?;
    assert_eq!(lunch.len(), 1);
    assert_eq!(field(&lunch[0], "Display"), "Calendar and Activities");
    assert_eq!(field(&lunch[0], "Primary Owner Id"), employee);
    // 12:00 UTC is 07:00 in New York, where the Siebel user reads it.
    assert_eq!((field(&lunch[0], "Planned"), field(&lunch[0], "Planned Completion")), ("12/02/2026 07:00:00", "12/02/2026 08:00:00"));

    // Deleted in Outlook (or archived): deleted in Siebel.
    h.ews_delete(mailbox, &items[0]).await?;
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"]["deleted"], 1, "{report}");
    assert!(h.siebel_get_from("Action", &meeting).await?.is_none());
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_levels_none_and_export_only_per_domain() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("LEVELS", "levels@example.com");
    let employee = employee_user(&h, login, mailbox).await?;
    h.admin_patch(&format!("/api/v1/users/{login}"), json!({"domains": {"tasks": "none", "calendar": "export"}})).await?;
    h.siebel_insert_into(
        "Action",
        json!({"Type": "To Do", "Display": "To Do and Activities", "Description": "Not synced", "Primary Owner Id": employee}),
    )
    .await?;
    h.siebel_insert_into(
        "Action",
        json!({"Type": "Meeting", "Display": "Calendar and Activities", "Description": "Exported",
               "Planned": "12/01/2026 15:00:00", "Planned Completion": "12/01/2026 16:00:00",
               "Primary Owner Id": employee}),
    )
    .await?;
    h.ews_create_in(
        mailbox,
        "calendar",
        "<t:CalendarItem><t:Subject>Outlook only</t:Subject><t:Start>2026-12-02T12:00:00Z</t:Start>\
         <t:End>2026-12-02T13:00:00Z</t:End></t:CalendarItem>",
    )
    .await?;
    h.ews_create_in(mailbox, "tasks", "<t:Task><t:Subject>Outlook task</t:Subject></t:Task>").await?;

    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 1, "only the appointment is exported: {report}");
    assert_eq!(report["siebel"]["created"], 0, "export only and none import nothing: {report}");
    assert_eq!(h.ews_find_in(mailbox, "tasks").await?.len(), 1, "the Siebel task was not written");
    assert!(h.siebel_query("Action", "[Description] = 'Outlook only'").await?.is_empty());
    assert!(h.siebel_query("Action", "[Description] = 'Outlook task'").await?.is_empty());

    // Export only: an Outlook delete is restored, Siebel keeps the record.
    let exported = h.ews_find_in(mailbox, "calendar").await?;
    assert_eq!(exported.len(), 2);
    for id in &exported {
        let item = h.ews_get_contact(mailbox, id).await?;
        if xml_text(&item, "Subject").as_deref() == Some("Exported") {
            h.ews_delete(mailbox, id).await?;
        }
    }
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"]["deleted"], 0, "{report}");
    assert_eq!(report["exchange"]["created"], 1, "restored: {report}");
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_extract_links_records_found_on_both_sides_instead_of_copying_them() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("MATCHER", "matcher@example.com");
    let employee = employee_user(&h, login, mailbox).await?;
    // On the sync list and already in Outlook (different case, older job title).
    let listed = h
        .siebel_insert(json!({"First Name": "Ada", "Last Name": "Lovelace", "Email Address": "ada@example.com",
                              "Job Title": "Chief Engineer"}))
        .await?;
    h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": listed}), 201).await?;
    h.ews_create_in(
        mailbox,
        "contacts",
        "<t:Contact><t:GivenName>Ada</t:GivenName><t:EmailAddresses><t:Entry Key=\"EmailAddress1\">ADA@example.com</t:Entry>\
         </t:EmailAddresses><t:JobTitle>Engineer</t:JobTitle><t:Surname>Lovelace</t:Surname></t:Contact>",
    )
    .await?;
    // In Siebel but not on the sync list, and in Outlook: found by email, not created again.
    let known = h
        .siebel_insert(json!({"First Name": "Grace", "Last Name": "Hopper", "Email Address": "grace@example.com"}))
        .await?;
    h.ews_create_in(
        mailbox,
        "contacts",
        "<t:Contact><t:GivenName>Grace</t:GivenName><t:EmailAddresses><t:Entry Key=\"EmailAddress1\">grace@example.com</t:Entry>\
         </t:EmailAddresses><t:Surname>Hopper</t:Surname></t:Contact>",
    )
    .await?;
    // The same appointment on both sides: same subject and start (15:00 in New York, where
    // the demo's Siebel user is, is 20:00 UTC).
    h.siebel_insert_into(
        "Action",
        json!({"Type": "Meeting", "Display": "Calendar and Activities", "Description": "Account review",
               "Planned": "12/01/2026 15:00:00", "Planned Completion": "12/01/2026 16:00:00",
               "Primary Owner Id": employee}),
    )
    .await?;
    h.ews_create_in(
        mailbox,
        "calendar",
        "<t:CalendarItem><t:Subject>Account review</t:Subject><t:Start>2026-12-01T20:00:00Z</t:Start>\
         <t:End>2026-12-01T21:30:00Z</t:End></t:CalendarItem>",
    )
    .await?;
    let contacts_before = h.siebel_count().await?;
    let actions_before = h.siebel_query("Action", &format!("[Primary Owner Id] = '{employee}'")).await?.len();

    let report = h.sync(login).await?;
    assert_eq!(report["matched"], 3, "{report}");
    assert_eq!(report["siebel"]["created"], 0, "nothing copied into Siebel: {report}");
    assert_eq!(report["exchange"]["created"], 0, "nothing copied into Exchange: {report}");
    assert_eq!(h.siebel_count().await?, contacts_before);
    assert_eq!(h.siebel_query("Action", &format!("[Primary Owner Id] = '{employee}'")).await?.len(), actions_before);
    let contacts = h.ews_find_contacts(mailbox).await?;
    assert_eq!(contacts.len(), 2);
    assert_eq!(h.ews_find_in(mailbox, "calendar").await?.len(), 1);
    let list: Vec<String> = h
        .admin_get(&format!("/api/v1/users/{login}/sync-list"))
        .await?
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["siebel_id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    assert!(list.contains(&known), "the contact found by email joined the sync list: {list:?}");
    // Siebel's version was written over the Outlook copy.
    let mut ada = None;
    for id in &contacts {
        let item = h.ews_get_contact(mailbox, id).await?;
        if xml_text(&item, "Surname").as_deref() == Some("Lovelace") {
            ada = Some((id.clone(), item));
        }
    }
    let (ada_id, ada_item) = ada.expect("Ada is in Outlook");
    assert_eq!(xml_text(&ada_item, "JobTitle").as_deref(), Some("Chief Engineer"));

    // Linked by id from now on: editing a key field in Outlook updates the same record.
    let change_key = crate::harness::xml_attr(&ada_item, "ItemId", "ChangeKey").unwrap_or_default();
    h.soap_update_email(mailbox, &ada_id, &change_key, "ada.lovelace@example.com").await?;
    let report = h.sync(login).await?;
    assert_eq!(report["siebel"], json!({"created": 0, "updated": 1, "deleted": 0}), "{report}");
    let stored = h.siebel_get(&listed).await?.expect("still there");
    assert_eq!(field(&stored, "Email Address"), "ada.lovelace@example.com");
    assert_eq!(h.siebel_count().await?, contacts_before);
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_start_date_per_user_leaves_older_appointments_and_tasks_out() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let recent = employee_user(&h, "RECENT", "recent@example.com").await?;
    let everything = employee_user(&h, "EVERYTHING", "everything@example.com").await?;
    // A date that can't be read is refused and changes nothing.
    let refused = h.admin_patch_status("/api/v1/users/RECENT", json!({"extract_start_date": "first of December"})).await?;
    assert_eq!(refused.0, 400, "{}", refused.1);
    assert!(refused.1["detail"].as_str().unwrap_or_default().contains("2026-01-01"), "says what to write: {}", refused.1);
    let user = h.admin_patch("/api/v1/users/RECENT", json!({"extract_start_date": "2026-12-02"})).await?;
    assert_eq!(user["extract_start_date"], "2026-12-02");
    for owner in [&recent, &everything] {
        for (what, day) in [("Old", "12/01/2026"), ("New", "12/03/2026")] {
            h.siebel_insert_into(
                "Action",
                json!({"Type": "Meeting", "Display": "Calendar and Activities", "Description": format!("{what} meeting"),
                       "Planned": format!("{day} 09:00:00"), "Planned Completion": format!("{day} 10:00:00"),
                       "Primary Owner Id": owner}),
            )
            .await?;
            h.siebel_insert_into(
                "Action",
                json!({"Type": "To Do", "Display": "To Do and Activities", "Description": format!("{what} task"),
                       "Due": format!("{day} 17:00:00"), "Primary Owner Id": owner}),
            )
            .await?;
        }
    }
    h.sync("RECENT").await?;
    h.sync("EVERYTHING").await?;
    assert_eq!(h.ews_find_in("recent@example.com", "calendar").await?.len(), 1, "only the meeting after the user's date");
    assert_eq!(h.ews_find_in("recent@example.com", "tasks").await?.len(), 1, "only the task due after it");
    assert_eq!(h.ews_find_in("everything@example.com", "calendar").await?.len(), 2, "no date: everything");
    assert_eq!(h.ews_find_in("everything@example.com", "tasks").await?.len(), 2);

    // Cleared: the global setting (none here) applies again.
    let user = h.admin_patch("/api/v1/users/RECENT", json!({"extract_start_date": ""})).await?;
    assert_eq!(user["extract_start_date"], Value::Null);
    h.sync("RECENT").await?;
    assert_eq!(h.ews_find_in("recent@example.com", "calendar").await?.len(), 2);
    h.stop().await;
    Ok(())
}

/// `[sync] matching = false` (SSSE's IgnoreContactMatching): the initial extract copies
/// instead of linking, so a record on both sides ends up twice on each, as the administrator
/// asked. Run through `tandem serve`, where the switch lives in the configuration file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_switched_off_copies_records_found_on_both_sides() -> anyhow::Result<()> {
    use crate::service::{ServeProcess, serve_config};
    let h = Harness::start().await?;
    let (login, mailbox, token) = ("NOMATCH", "nomatch@example.com", "no-matching-admin-token");
    h.siebel_insert_into("Employee", json!({"First Name": "Nia", "Last Name": "Match", "Login Name": login, "EMail Addr": mailbox}))
        .await?;
    let listed = h
        .siebel_insert(json!({"First Name": "Ada", "Last Name": "Lovelace", "Email Address": "ada@example.com"}))
        .await?;
    h.ews_create_in(
        mailbox,
        "contacts",
        "<t:Contact><t:GivenName>Ada</t:GivenName><t:EmailAddresses><t:Entry Key=\"EmailAddress1\">ada@example.com</t:Entry>\
         </t:EmailAddresses><t:Surname>Lovelace</t:Surname></t:Contact>",
    )
    .await?;
    let contacts_before = h.siebel_count().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    let users = format!("[sync]\nmatching = false\n\n[[users]]\nlogin = \"{login}\"\nmailbox = \"{mailbox}\"\nenabled = false");
    std::fs::write(&config, serve_config(&h, &dir.path().join("state"), &format!("token = \"{token}\""), "interval_seconds = 3600", &users))?;
    let serve = ServeProcess::spawn(&config, &dir.path().join("serve.log"), token, false).await?;
    let (status, body) =
        serve.call(reqwest::Method::POST, &format!("/api/v1/users/{login}/sync-list"), Some(json!({"siebel_id": listed}))).await?;
    anyhow::ensure!(status == 201, "{status} {body}");
    let (status, body) = serve.call(reqwest::Method::PATCH, &format!("/api/v1/users/{login}"), Some(json!({"enabled": true}))).await?;
    anyhow::ensure!(status == 200, "{status} {body}");
    serve.settle(login, std::time::Duration::from_secs(60)).await?;
    let runs = serve.get(&format!("/api/v1/users/{login}/runs")).await?;
    let matched: u64 = runs.as_array().into_iter().flatten().filter_map(|run| run["report"]["matched"].as_u64()).sum();
    assert_eq!(matched, 0, "nothing is matched: {runs}");
    assert_eq!(h.ews_find_contacts(mailbox).await?.len(), 2, "Siebel's Ada is copied beside Outlook's");
    assert_eq!(h.siebel_count().await?, contacts_before + 1, "Outlook's Ada is copied into Siebel");
    serve.terminate().await?;
    h.stop().await;
    Ok(())
}
