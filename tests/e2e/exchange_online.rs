//! Exchange Online next to Exchange on-premises ("per-user backend"): users on
//! Graph and users on EWS sync in one Tandem, each through its own connector, end to end over
//! the Siebel, EWS and Graph emulators.

use serde_json::json;

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hybrid_organisation_syncs_ews_and_graph_users_side_by_side() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let graph = &h.demo.graph_sim;
    let engine = &h.demo.service.state.engine;
    let (cloud, cloud_mailbox) = ("CLOUD", "cloud@example.com");
    let (onprem, onprem_mailbox) = ("ONPREM", "onprem@example.com");
    let employee = h
        .siebel_insert_into("Employee", json!({"First Name": "Cleo", "Last Name": "Cloud", "Login Name": cloud}))
        .await?;
    let created = h
        .admin_post("/api/v1/users", json!({"login": cloud, "mailbox": cloud_mailbox, "backend": "graph"}), 201)
        .await?;
    assert_eq!(created["backend"], "graph", "{created}");
    h.admin_post("/api/v1/users", json!({"login": onprem, "mailbox": onprem_mailbox}), 201).await?;
    let contact = h
        .siebel_insert(json!({"First Name": "Ada", "Last Name": "Lovelace", "Job Title": "Engineer",
                              "Email Address": "ada@example.com"}))
        .await?;
    for login in [cloud, onprem] {
        h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": contact}), 201).await?;
    }
    h.siebel_insert_into(
        "Action",
        json!({"Type": "To Do", "Display": "To Do and Activities", "Description": "Renew the cloud plan",
               "Due": "12/03/2026 17:00:00", "Primary Owner Id": employee}),
    )
    .await?;

    let report = h.sync(cloud).await?;
    assert_eq!((report["status"].as_str(), report["exchange"]["created"].as_u64()), (Some("ok"), Some(2)), "{report}");
    assert_eq!(graph.item_count(cloud_mailbox, "contacts"), 1);
    assert_eq!(graph.item_count(cloud_mailbox, "tasks"), 1);
    assert_eq!(h.demo.ews_sim.item_count(cloud_mailbox, "contacts"), 0, "nothing went to EWS for a Graph user");
    let report = h.sync(onprem).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(h.ews_find_contacts(onprem_mailbox).await?.len(), 1);
    assert_eq!(graph.item_count(onprem_mailbox, "contacts"), 0, "nothing went to Graph for an EWS user");

    // The Graph copy holds the mapped fields; an edit made in Outlook on the web comes back.
    let link = engine.store().links(cloud, "contacts").await?.pop().expect("linked");
    let item = graph.item(cloud_mailbox, &link.exchange_id).expect("in Graph");
    assert_eq!(item["jobTitle"], "Engineer", "{item}");
    assert_eq!(item["surname"], "Lovelace", "{item}");
    graph.update_item(cloud_mailbox, &link.exchange_id, json!({"jobTitle": "CTO"}))?;
    let report = h.sync(cloud).await?;
    assert_eq!(report["siebel"]["updated"], 1, "{report}");
    assert_eq!(h.siebel_get(&contact).await?.expect("kept")["Job Title"], "CTO");
    // ... and reaches the on-premises user's copy through Siebel.
    let report = h.sync(onprem).await?;
    assert_eq!(report["exchange"]["updated"], 1, "{report}");

    // A contact made in Exchange Online is imported into Siebel.
    let contacts_before = h.siebel_count().await?;
    graph.create_item(
        cloud_mailbox,
        "contacts",
        json!({"givenName": "Linus", "surname": "Pauling", "emailAddresses": [{"address": "linus@caltech.example"}]}),
    )?;
    let report = h.sync(cloud).await?;
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    assert_eq!(h.siebel_count().await?, contacts_before + 1);
    h.assert_quiet(cloud).await?;

    // The on-premises mailbox moves to Exchange Online: re-extracted there, no duplicate.
    let moved = h.admin_patch(&format!("/api/v1/users/{onprem}"), json!({"backend": "graph"})).await?;
    assert_eq!(moved["backend"], "graph", "{moved}");
    let contacts_before = h.siebel_count().await?;
    let report = h.sync(onprem).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(graph.item_count(onprem_mailbox, "contacts"), 1);
    assert_eq!(h.siebel_count().await?, contacts_before, "no Siebel duplicate");
    h.stop().await;
    Ok(())
}
