//! Conflicts end to end: a contact edited on both sides between two syncs goes to the
//! contacts domain's conflict-policy plugin, and the outcome reaches both servers and the
//! conflict log (`GET /api/v1/users/{login}/conflicts`).

use serde_json::{Value, json};
use tandem_host::package::Package;
use tandem_host::plugin::builtin;

use crate::harness::{self, Harness, xml_attr, xml_text};

/// A user with one synced contact; returns its Siebel id and Exchange item id.
async fn synced_contact(h: &Harness, login: &str, mailbox: &str) -> anyhow::Result<(String, String)> {
    h.admin_post("/api/v1/users", json!({"login": login, "mailbox": mailbox}), 201).await?;
    let siebel_id = h
        .siebel_insert(json!({
            "First Name": "Ada",
            "Last Name": "Lovelace",
            "Job Title": "Engineer",
            "Work Phone #": "+44 20 7946 0001",
        }))
        .await?;
    h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": siebel_id}), 201).await?;
    let report = h.sync(login).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    let ids = h.ews_find_contacts(mailbox).await?;
    assert_eq!(ids.len(), 1);
    Ok((siebel_id, ids[0].clone()))
}

/// Edits the job title on both sides (and, when given, the Siebel work phone) and syncs.
async fn edit_both_sides_and_sync(
    h: &Harness,
    login: &str,
    mailbox: &str,
    (siebel_id, item_id): (&str, &str),
    siebel_edit: Value,
    exchange_title: &str,
) -> anyhow::Result<Value> {
    h.siebel_update(siebel_id, siebel_edit).await?;
    let item = h.ews_get_contact(mailbox, item_id).await?;
    let change_key = xml_attr(&item, "ItemId", "ChangeKey").expect("a ChangeKey");
    h.ews_set_job_title(mailbox, item_id, &change_key, exchange_title).await?;
    let report = h.sync(login).await?;
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["conflicts"], 1, "{report}");
    Ok(report)
}

async fn conflict_outcomes(h: &Harness, login: &str) -> anyhow::Result<Vec<String>> {
    let log = h.admin_get(&format!("/api/v1/users/{login}/conflicts")).await?;
    Ok(log
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["outcome"].as_str().map(str::to_owned))
        .collect())
}

/// Installs the built-in conflict-policies component with `config` as a package serving
/// contacts, and waits for the registry to take it.
async fn install_contact_policy(h: &Harness, config: &str) -> anyhow::Result<()> {
    let manifest = format!(
        "name = \"contact-policy\"\nversion = \"1.0.0\"\nkind = \"conflict-policy\"\n\
         domains = [\"contacts\"]\napi = \"0.1.0\"\n[config]\n{config}\n"
    );
    let dir = h.demo.service.state.engine.plugins().plugins_dir().expect("a plugins dir").to_path_buf();
    Package::new(manifest, builtin::CONFLICT_POLICIES.to_vec())?.write(&dir.join("contact-policy.tpkg"))?;
    let list = h.admin_post("/api/v1/plugins/reload", json!({}), 200).await?;
    let live = list.as_array().into_iter().flatten().any(|r| r["name"] == "contact-policy" && r["status"] == "active");
    anyhow::ensure!(live, "the policy package is not active: {list}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_changed_siebel_wins_by_default_and_the_conflict_is_logged() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("CONFLICT1", "conflict1@example.com");
    let (siebel_id, item_id) = synced_contact(&h, login, mailbox).await?;
    edit_both_sides_and_sync(&h, login, mailbox, (&siebel_id, &item_id), json!({"Job Title": "CEO"}), "CTO").await?;

    let item = h.ews_get_contact(mailbox, &item_id).await?;
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("CEO"), "Siebel's edit overwrote Exchange");
    let record = h.siebel_get(&siebel_id).await?.expect("the Siebel contact");
    assert_eq!(record["Job Title"], "CEO");
    assert_eq!(conflict_outcomes(&h, login).await?, ["siebel-wins"]);
    // Resolved means in step: the next sync writes nothing.
    let report = h.sync(login).await?;
    assert_eq!((report["conflicts"].as_u64(), report["exchange"]["updated"].as_u64()), (Some(0), Some(0)), "{report}");
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_package_makes_exchange_win_for_contacts() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("CONFLICT2", "conflict2@example.com");
    let (siebel_id, item_id) = synced_contact(&h, login, mailbox).await?;
    install_contact_policy(&h, "policy = \"exchange-wins\"").await?;
    edit_both_sides_and_sync(&h, login, mailbox, (&siebel_id, &item_id), json!({"Job Title": "CEO"}), "CTO").await?;

    let record = h.siebel_get(&siebel_id).await?.expect("the Siebel contact");
    assert_eq!(record["Job Title"], "CTO", "Exchange's edit overwrote Siebel");
    let item = h.ews_get_contact(mailbox, &item_id).await?;
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("CTO"));
    assert_eq!(conflict_outcomes(&h, login).await?, ["exchange-wins"]);
    let report = h.sync(login).await?;
    assert_eq!(report["conflicts"], 0, "{report}");
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_merge_keeps_edits_to_different_fields_on_both_sides() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("CONFLICT3", "conflict3@example.com");
    let (siebel_id, item_id) = synced_contact(&h, login, mailbox).await?;
    install_contact_policy(&h, "policy = \"field-merge\"").await?;
    // Siebel edits the phone, Exchange the title: both edits survive on both sides.
    let siebel_edit = json!({"Work Phone #": "+44 20 7946 0999"});
    edit_both_sides_and_sync(&h, login, mailbox, (&siebel_id, &item_id), siebel_edit, "Countess").await?;

    let record = h.siebel_get(&siebel_id).await?.expect("the Siebel contact");
    assert_eq!((record["Job Title"].as_str(), record["Work Phone #"].as_str()), (Some("Countess"), Some("+44 20 7946 0999")));
    let item = h.ews_get_contact(mailbox, &item_id).await?;
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("Countess"));
    assert_eq!(harness::entry(&item, "PhoneNumbers", "BusinessPhone").as_deref(), Some("+44 20 7946 0999"));
    assert_eq!(conflict_outcomes(&h, login).await?, ["merged"]);
    let report = h.sync(login).await?;
    assert_eq!((report["conflicts"].as_u64(), report["siebel"]["updated"].as_u64()), (Some(0), Some(0)), "{report}");
    h.validate_ews_traffic()?;
    h.stop().await;
    Ok(())
}

/// Exchange changes the contact between the run's read and its write (the write's ChangeKey
/// is stale: ErrorIrresolvableConflict). The run reads the item again and asks the conflict
/// policy, here exchange-wins: the Outlook edit survives on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_as_stale_is_reread_and_goes_to_the_conflict_policy() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("CONFLICT4", "conflict4@example.com");
    let (siebel_id, item_id) = synced_contact(&h, login, mailbox).await?;
    install_contact_policy(&h, "policy = \"exchange-wins\"").await?;
    h.siebel_update(&siebel_id, json!({"Job Title": "CEO"})).await?;
    let item = h.ews_get_contact(mailbox, &item_id).await?;
    let change_key = xml_attr(&item, "ItemId", "ChangeKey").expect("a ChangeKey");

    // Every Siebel reply now takes 1.5 s. The run first looks the user's Employee up (one
    // slow reply), reads Exchange (nothing changed there), then waits for the sync-list
    // records when the Outlook edit lands.
    h.demo.siebel_sim.control().faults.set(tandem_sim::FaultSettings { rate: 1.0, kinds: vec!["slow".into()] });
    let run = h.sync(login);
    let edit = async {
        tokio::time::sleep(std::time::Duration::from_millis(2250)).await;
        h.ews_set_job_title(mailbox, &item_id, &change_key, "CTO").await
    };
    let (report, edited) = tokio::join!(run, edit);
    h.demo.siebel_sim.control().faults.set(tandem_sim::FaultSettings::default());
    edited?;
    let report = report?;
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["conflicts"], 1, "{report}");
    assert_eq!(conflict_outcomes(&h, login).await?, ["exchange-wins"]);
    let log = h.admin_get(&format!("/api/v1/users/{login}/conflicts")).await?;
    assert_eq!(log[0]["detail"], "Exchange changed while we wrote", "found at the write, not at the read: {log}");
    let record = h.siebel_get(&siebel_id).await?.expect("the Siebel contact");
    assert_eq!(record["Job Title"], "CTO", "the policy's winner reached Siebel");
    let item = h.ews_get_contact(mailbox, &item_id).await?;
    assert_eq!(xml_text(&item, "JobTitle").as_deref(), Some("CTO"));
    h.stop().await;
    Ok(())
}

/// Modify versus delete: the delete wins, as in SSSE, and the lost edit is in the conflict
/// log — both ways round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_versus_delete_the_delete_wins_and_is_logged() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (login, mailbox) = ("MODDEL", "moddel@example.com");
    let (siebel_id, item_id) = synced_contact(&h, login, mailbox).await?;
    // Edited in Siebel, deleted in Outlook: off the sync list, the Siebel record (and its
    // edit) stays in Siebel.
    h.siebel_update(&siebel_id, json!({"Job Title": "CTO"})).await?;
    h.ews_delete(mailbox, &item_id).await?;
    let report = h.sync(login).await?;
    assert_eq!(report["conflicts"], 1, "{report}");
    assert_eq!(report["removed_from_sync_list"], 1, "{report}");
    assert!(h.ews_find_contacts(mailbox).await?.is_empty(), "the delete won");
    assert_eq!(h.siebel_get(&siebel_id).await?.expect("kept")["Job Title"], "CTO");
    assert_eq!(conflict_outcomes(&h, login).await?, vec!["delete-wins"]);

    // Edited in Outlook, taken off the sync list in Siebel: the Exchange copy goes.
    let other = h.siebel_insert(json!({"First Name": "Grace", "Last Name": "Hopper"})).await?;
    h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": other}), 201).await?;
    h.sync(login).await?;
    let ids = h.ews_find_contacts(mailbox).await?;
    assert_eq!(ids.len(), 1);
    let item = h.ews_get_contact(mailbox, &ids[0]).await?;
    let change_key = xml_attr(&item, "ItemId", "ChangeKey").expect("a ChangeKey");
    h.ews_set_job_title(mailbox, &ids[0], &change_key, "Admiral").await?;
    h.admin_delete(&format!("/api/v1/users/{login}/sync-list/{other}"), 204).await?;
    let report = h.sync(login).await?;
    assert_eq!((report["conflicts"].as_u64(), report["exchange"]["deleted"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(conflict_outcomes(&h, login).await?.len(), 2);
    h.stop().await;
    Ok(())
}
