//! Graph connector tests: the connector's every operation over real loopback HTTP
//! against `tandem_sim::graph` — round trips of each folder's fields, delta paging, resyncs,
//! idempotent creates under dropped replies and faults, throttling, conflicts, tokens.
#![allow(clippy::unwrap_used)]

mod watch;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeZone as _;
use tandem_sim::common::{FaultSettings, RunningServer};
use tandem_sim::graph::{GraphSim, GraphSimConfig, ThrottleLimits};

use tandem_host::exchange::ExchangeError;
use tandem_host::exchange::graph::*;
use tandem_host::oauth::{CertificateCredential, ClientCredential};
use tandem_host::record::{Fields, Value};

const MAILBOX: &str = "alice@example.com";

struct Harness {
    sim: GraphSim,
    _server: RunningServer,
    client: GraphClient,
    config: GraphConfig,
}

async fn start_with(sim_config: GraphSimConfig, limits: GraphLimits) -> Harness {
    let sim = GraphSim::new(sim_config).unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = server.base_url();
    let config = GraphConfig {
        base_url: format!("{base}/v1.0"),
        token_url: sim.token_url(&base),
        client_id: sim.credentials().user.clone(),
        credential: sim.credentials().password.clone().into(),
        limits,
        transport: Default::default(),
    };
    let client = GraphClient::new(config.clone()).unwrap();
    Harness {
        sim,
        _server: server,
        client,
        config,
    }
}

async fn start() -> Harness {
    start_with(GraphSimConfig::default(), GraphLimits::default()).await
}

impl Harness {
    /// The one item `id` of the mailbox's `folder`, read through the connector.
    async fn item(&self, folder: Folder, id: &str) -> ExchangeItem {
        let mut items = self
            .client
            .get_items(MAILBOX, folder, &[id.to_owned()])
            .await
            .unwrap();
        assert_eq!(items.len(), 1, "item {id} is in {folder:?}");
        items.remove(0)
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn contact(n: usize) -> (Fields, String) {
    (
        fields(&[
            ("GivenName", text(&format!("Given{n}"))),
            ("Surname", text(&format!("Surname{n}"))),
            ("EmailAddress1", text(&format!("c{n}@example.com"))),
        ]),
        format!("sync-{n:04}"),
    )
}

/// Reads a whole delta round from `state`; returns the changes and the deltaLink.
async fn full_round(
    client: &GraphClient,
    folder: Folder,
    state: Option<String>,
    page: u16,
) -> (Vec<SyncChange>, String, usize) {
    let mut state = state;
    let mut changes = Vec::new();
    let mut pages = 0;
    loop {
        let batch = client
            .sync_folder_items(MAILBOX, folder, state.as_deref(), page)
            .await
            .unwrap();
        pages += 1;
        changes.extend(batch.changes);
        state = Some(batch.sync_state);
        if batch.includes_last_item {
            return (changes, state.unwrap(), pages);
        }
        assert!(pages < 1000, "delta never ended");
    }
}

fn assert_subset(expected: &Fields, actual: &Fields) {
    for (name, value) in expected {
        assert_eq!(actual.get(name), Some(value), "field {name} in {actual:?}");
    }
}

#[tokio::test]
async fn contact_fields_round_trip_through_create_delta_get_update_delete() {
    let h = start().await;
    let input = fields(&[
        ("GivenName", text("Ada")),
        ("Surname", text("Lovelace")),
        ("FileAs", text("Lovelace, Ada")),
        ("JobTitle", text("Analyst")),
        ("CompanyName", text("Analytical Engines")),
        ("EmailAddress1", text("ada@example.com")),
        ("EmailAddress2", text("ada@home.example")),
        ("BusinessPhone", text("+44 20 7946 0000")),
        ("MobilePhone", text("+44 7700 900000")),
        ("HomePhone", text("+44 20 7946 0001")),
        ("BusinessFax", text("+44 20 7946 0002")),
        ("AssistantPhone", text("+44 20 7946 0003")),
        ("BusinessCity", text("London")),
        ("BusinessStreet", text("12 St James's Square")),
        ("Sensitivity", text("Private")),
        (
            "Categories",
            Value::List(vec![text("Customers"), text("VIP")]),
        ),
        (
            "Birthday",
            Value::DateTime(chrono::Utc.with_ymd_and_hms(1815, 12, 10, 0, 0, 0).unwrap()),
        ),
        ("Body", text("Met at the Babbage lecture")),
    ]);
    let ids = h
        .client
        .create_items(
            MAILBOX,
            Folder::Contacts,
            &[(input.clone(), "sync-ada".into())],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    let (changes, delta_link, _) = full_round(&h.client, Folder::Contacts, None, 50).await;
    assert_eq!(changes, vec![SyncChange::Created(ids[0].clone())]);
    let items = h
        .client
        .get_items(MAILBOX, Folder::Contacts, std::slice::from_ref(&ids[0].id))
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].sync_id.as_deref(), Some("sync-ada"));
    assert_subset(&input, &items[0].fields);
    // The MAPI property really is what Graph stores (not only our own reading of it).
    let raw = h.sim.item(MAILBOX, &ids[0].id).unwrap();
    assert_eq!(raw["emailAddresses"][1]["address"], "ada@home.example");
    assert_eq!(raw["personalNotes"], "Met at the Babbage lecture");

    // A partial write: EmailAddress2 and the city change, the job title is cleared.
    let change = fields(&[
        ("EmailAddress2", text("ada@new.example")),
        ("BusinessCity", text("Cambridge")),
        ("JobTitle", Value::Null),
    ]);
    let outcome = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &items[0].id, &change)
        .await
        .unwrap();
    let UpdateOutcome::Updated(new_id) = outcome else {
        panic!("expected an update, got {outcome:?}")
    };
    assert_ne!(new_id.change_key, items[0].id.change_key);
    let after = h.item(Folder::Contacts, &new_id.id).await;
    assert_eq!(
        after.fields.get("EmailAddress1"),
        Some(&text("ada@example.com")),
        "kept"
    );
    assert_eq!(
        after.fields.get("EmailAddress2"),
        Some(&text("ada@new.example"))
    );
    assert_eq!(after.fields.get("BusinessCity"), Some(&text("Cambridge")));
    assert_eq!(
        after.fields.get("BusinessStreet"),
        Some(&text("12 St James's Square")),
        "kept"
    );
    assert_eq!(after.fields.get("JobTitle"), None);
    assert_eq!(
        after.fields.get("BusinessFax"),
        Some(&text("+44 20 7946 0002")),
        "kept"
    );

    let (changes, delta_link, _) =
        full_round(&h.client, Folder::Contacts, Some(delta_link), 50).await;
    assert_eq!(changes, vec![SyncChange::Updated(new_id.clone())]);
    h.client
        .delete_items(MAILBOX, Folder::Contacts, std::slice::from_ref(&new_id.id))
        .await
        .unwrap();
    // Deleting again is not an error.
    h.client
        .delete_items(MAILBOX, Folder::Contacts, std::slice::from_ref(&new_id.id))
        .await
        .unwrap();
    let (changes, _, _) = full_round(&h.client, Folder::Contacts, Some(delta_link), 50).await;
    assert_eq!(changes, vec![SyncChange::Deleted(new_id.id.clone())]);
    assert!(
        h.client
            .get_items(MAILBOX, Folder::Contacts, &[new_id.id])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_field_names_are_refused_before_sending() {
    let h = start().await;
    let bad = fields(&[("GivenName", text("X")), ("ShoeSize", text("42"))]);
    let error = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &[(bad, "s".into())])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GraphError::UnknownField(name) if name == "ShoeSize"),
        "{error}"
    );
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 0);
}

#[tokio::test]
async fn calendar_fields_round_trip_including_attendees_and_recurrence() {
    let h = start().await;
    let start_at = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(9, 30, 0)
        .unwrap()
        .and_utc()
        + chrono::Duration::days(3);
    let input = fields(&[
        ("Subject", text("Design review")),
        ("Body", text("Agenda: the Graph connector")),
        ("Start", Value::DateTime(start_at)),
        (
            "End",
            Value::DateTime(start_at + chrono::Duration::hours(1)),
        ),
        ("IsAllDayEvent", Value::Boolean(false)),
        ("Location", text("Room 4")),
        ("Sensitivity", text("Private")),
        ("Importance", text("High")),
        ("LegacyFreeBusyStatus", text("Tentative")),
        (
            "RequiredAttendees",
            Value::List(vec![text("bob@example.com"), text("carol@example.com")]),
        ),
        (
            "OptionalAttendees",
            Value::List(vec![text("dave@example.com")]),
        ),
        ("Recurrence.Pattern", text("Weekly")),
        ("Recurrence.Interval", Value::Integer(2)),
        (
            "Recurrence.DaysOfWeek",
            Value::List(vec![text("Monday"), text("Thursday")]),
        ),
        (
            "Recurrence.StartDate",
            text(&start_at.date_naive().to_string()),
        ),
        ("Recurrence.NumberOfOccurrences", Value::Integer(10)),
    ]);
    let ids = h
        .client
        .create_items_once(
            MAILBOX,
            Folder::Calendar,
            &[(input.clone(), "sync-ev".into())],
        )
        .await
        .unwrap();
    let (changes, delta_link, _) = full_round(&h.client, Folder::Calendar, None, 10).await;
    assert_eq!(changes, vec![SyncChange::Created(ids[0].clone())]);
    let item = h.item(Folder::Calendar, &ids[0].id).await;
    assert_eq!(item.sync_id.as_deref(), Some("sync-ev"));
    assert_subset(&input, &item.fields);
    assert_eq!(item.fields.get("Organizer"), Some(&text(MAILBOX)));
    assert!(matches!(item.fields.get("UID"), Some(Value::Text(uid)) if !uid.is_empty()));

    // Only the optional attendees change: the required ones stay.
    let change = fields(&[
        ("OptionalAttendees", Value::List(vec![])),
        ("Subject", text("Design review (moved)")),
    ]);
    let UpdateOutcome::Updated(new_id) = h
        .client
        .update_item(MAILBOX, Folder::Calendar, &item.id, &change)
        .await
        .unwrap()
    else {
        panic!("expected an update")
    };
    let after = h.item(Folder::Calendar, &new_id.id).await;
    assert_eq!(
        after.fields.get("RequiredAttendees"),
        input.get("RequiredAttendees")
    );
    assert_eq!(after.fields.get("OptionalAttendees"), None);
    assert_eq!(
        after.fields.get("Subject"),
        Some(&text("Design review (moved)"))
    );
    assert_eq!(
        after.fields.get("Recurrence.Interval"),
        Some(&Value::Integer(2)),
        "recurrence kept"
    );

    // Clearing every Recurrence.* field removes the recurrence.
    let clear: Fields = input
        .keys()
        .filter(|k| k.starts_with("Recurrence."))
        .map(|k| (k, Value::Null))
        .collect();
    let UpdateOutcome::Updated(new_id) = h
        .client
        .update_item(MAILBOX, Folder::Calendar, &new_id, &clear)
        .await
        .unwrap()
    else {
        panic!("expected an update")
    };
    let after = h.item(Folder::Calendar, &new_id.id).await;
    assert!(
        after.fields.keys().all(|k| !k.starts_with("Recurrence.")),
        "{:?}",
        after.fields
    );

    let (changes, delta_link, _) =
        full_round(&h.client, Folder::Calendar, Some(delta_link), 10).await;
    assert_eq!(changes.last(), Some(&SyncChange::Updated(new_id.clone())));
    // An event moved out of the window is not reported as deleted; a deleted one is.
    let outside = h
        .sim
        .create_item(MAILBOX, "calendar", serde_json::json!({"subject": "far away",
            "start": {"dateTime": "2015-01-01T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2015-01-01T11:00:00", "timeZone": "UTC"}}))
        .unwrap();
    h.client
        .delete_items(MAILBOX, Folder::Calendar, std::slice::from_ref(&new_id.id))
        .await
        .unwrap();
    let (changes, _, _) = full_round(&h.client, Folder::Calendar, Some(delta_link), 10).await;
    assert_eq!(
        changes,
        vec![SyncChange::Deleted(new_id.id.clone())],
        "the event outside the window ({outside}) is no delete"
    );
}

#[tokio::test]
async fn relative_patterns_keep_weekday_names_and_other_time_zones_are_kept_as_text() {
    let h = start().await;
    let start_at = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        + chrono::Duration::days(1);
    let input = fields(&[
        ("Subject", text("Board")),
        ("Start", Value::DateTime(start_at)),
        ("End", Value::DateTime(start_at + chrono::Duration::days(1))),
        ("IsAllDayEvent", Value::Boolean(true)),
        ("Recurrence.Pattern", text("RelativeYearly")),
        ("Recurrence.DaysOfWeek", Value::List(vec![text("Weekday")])),
        ("Recurrence.DayOfWeekIndex", text("Last")),
        ("Recurrence.Month", text("March")),
        (
            "Recurrence.StartDate",
            text(&start_at.date_naive().to_string()),
        ),
        (
            "Recurrence.EndDate",
            text(&(start_at.date_naive() + chrono::Duration::days(800)).to_string()),
        ),
    ]);
    let ids = h
        .client
        .create_items(
            MAILBOX,
            Folder::Calendar,
            &[(input.clone(), "sync-rel".into())],
        )
        .await
        .unwrap();
    let item = h.item(Folder::Calendar, &ids[0].id).await;
    assert_subset(&input, &item.fields);
    let foreign = h
        .sim
        .create_item(
            MAILBOX,
            "calendar",
            serde_json::json!({"subject": "Pacific",
            "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": "2026-12-01T10:00:00", "timeZone": "Pacific Standard Time"}}),
        )
        .unwrap();
    let item = h.item(Folder::Calendar, &foreign).await;
    assert_eq!(
        item.fields.get("Start"),
        Some(&text("2026-12-01T09:00:00.0000000 (Pacific Standard Time)"))
    );
}

#[tokio::test]
async fn task_fields_round_trip_and_to_do_gaps_are_kept() {
    let h = start().await;
    let due = chrono::Utc
        .with_ymd_and_hms(2026, 12, 24, 17, 0, 0)
        .unwrap();
    let input = fields(&[
        ("Subject", text("Send the quote")),
        ("Body", text("Three options")),
        ("DueDate", Value::DateTime(due)),
        (
            "StartDate",
            Value::DateTime(due - chrono::Duration::days(7)),
        ),
        ("Status", text("InProgress")),
        ("Importance", text("High")),
        ("PercentComplete", Value::Number(40.0)),
        ("Sensitivity", text("Private")),
    ]);
    let ids = h
        .client
        .create_items(
            MAILBOX,
            Folder::Tasks,
            &[(input.clone(), "sync-task".into())],
        )
        .await
        .unwrap();
    let (changes, delta_link, _) = full_round(&h.client, Folder::Tasks, None, 10).await;
    assert_eq!(changes, vec![SyncChange::Created(ids[0].clone())]);
    let item = h.item(Folder::Tasks, &ids[0].id).await;
    assert_eq!(item.sync_id.as_deref(), Some("sync-task"));
    assert_subset(&input, &item.fields);
    assert_eq!(
        h.client
            .find_items_by_sync_id(MAILBOX, Folder::Tasks, "sync-task")
            .await
            .unwrap(),
        vec![item.id.clone()]
    );

    // Only PercentComplete changes: Sensitivity (also To Do-less) and Status are kept.
    let UpdateOutcome::Updated(new_id) = h
        .client
        .update_item(
            MAILBOX,
            Folder::Tasks,
            &item.id,
            &fields(&[("PercentComplete", Value::Number(60.0))]),
        )
        .await
        .unwrap()
    else {
        panic!("expected an update")
    };
    let after = h.item(Folder::Tasks, &new_id.id).await;
    assert_eq!(
        after.fields.get("PercentComplete"),
        Some(&Value::Number(60.0))
    );
    assert_eq!(after.fields.get("Sensitivity"), Some(&text("Private")));
    assert_eq!(after.fields.get("Status"), Some(&text("InProgress")));
    assert_eq!(after.sync_id.as_deref(), Some("sync-task"));

    // A user completes it in To Do.
    h.sim
        .update_item(
            MAILBOX,
            &new_id.id,
            serde_json::json!({"status": "completed"}),
        )
        .unwrap();
    let (changes, delta_link, _) = full_round(&h.client, Folder::Tasks, Some(delta_link), 10).await;
    assert_eq!(changes.len(), 1);
    let done = h.item(Folder::Tasks, &new_id.id).await;
    assert_eq!(done.fields.get("Status"), Some(&text("Completed")));
    assert!(matches!(
        done.fields.get("CompleteDate"),
        Some(Value::DateTime(_))
    ));
    h.client
        .delete_items(MAILBOX, Folder::Tasks, std::slice::from_ref(&new_id.id))
        .await
        .unwrap();
    let (changes, _, _) = full_round(&h.client, Folder::Tasks, Some(delta_link), 10).await;
    assert_eq!(changes, vec![SyncChange::Deleted(new_id.id)]);
}

#[tokio::test]
async fn delta_pages_end_in_a_delta_link_and_report_removed_items() {
    let h = start().await;
    let items: Vec<(Fields, String)> = (0..25).map(contact).collect();
    let ids = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &items)
        .await
        .unwrap();
    assert_eq!(ids.len(), 25);
    let first = h
        .client
        .sync_folder_items(MAILBOX, Folder::Contacts, None, 10)
        .await
        .unwrap();
    assert!(!first.includes_last_item);
    assert!(
        first.sync_state.contains("skiptoken"),
        "{}",
        first.sync_state
    );
    assert_eq!(first.changes.len(), 10);
    let (rest, delta_link, pages) =
        full_round(&h.client, Folder::Contacts, Some(first.sync_state), 10).await;
    assert_eq!(pages, 2);
    assert!(delta_link.contains("deltatoken"), "{delta_link}");
    let seen: BTreeSet<String> = first
        .changes
        .iter()
        .chain(&rest)
        .map(|c| match c {
            SyncChange::Created(id) => id.id.clone(),
            other => panic!("the first round reports creates only, got {other:?}"),
        })
        .collect();
    assert_eq!(seen, ids.iter().map(|i| i.id.clone()).collect());

    for id in &ids[..3] {
        assert!(h.sim.delete_item(MAILBOX, &id.id));
    }
    h.sim
        .update_item(
            MAILBOX,
            &ids[5].id,
            serde_json::json!({"jobTitle": "Buyer"}),
        )
        .unwrap();
    let (changes, _, pages) = full_round(&h.client, Folder::Contacts, Some(delta_link), 2).await;
    assert_eq!(pages, 2);
    let deleted: BTreeSet<String> = changes
        .iter()
        .filter_map(|c| {
            if let SyncChange::Deleted(id) = c {
                Some(id.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(deleted, ids[..3].iter().map(|i| i.id.clone()).collect());
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, SyncChange::Updated(id) if id.id == ids[5].id))
    );
}

#[tokio::test]
async fn an_expired_or_foreign_sync_state_asks_for_a_resync() {
    let h = start().await;
    h.client
        .create_items(MAILBOX, Folder::Contacts, &[contact(1)])
        .await
        .unwrap();
    let (_, delta_link, _) = full_round(&h.client, Folder::Contacts, None, 10).await;
    h.sim.expire_delta_tokens();
    let error = h
        .client
        .sync_folder_items(MAILBOX, Folder::Contacts, Some(&delta_link), 10)
        .await
        .unwrap_err();
    assert!(matches!(error, GraphError::InvalidSyncState), "{error}");
    assert!(ExchangeError::from(error).is_invalid_sync_state());
    // An EWS SyncState saved before the mailbox moved to Graph.
    let error = h
        .client
        .sync_folder_items(
            MAILBOX,
            Folder::Contacts,
            Some("H4sIAAAAAAAEAO29B2AcSZYlJi9tynt"),
            10,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, GraphError::InvalidSyncState), "{error}");
    // Starting over works.
    let (changes, _, _) = full_round(&h.client, Folder::Contacts, None, 10).await;
    assert_eq!(changes.len(), 1);
}

#[tokio::test]
async fn a_create_whose_reply_is_dropped_is_not_made_twice() {
    let h = start().await;
    let items: Vec<(Fields, String)> = (0..12).map(contact).collect();
    // Every request is carried out and then its connection closed: the plain create fails…
    h.sim.set_faults(FaultSettings {
        rate: 1.0,
        kinds: vec!["drop".into()],
    });
    let error = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &items[..2])
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(
        h.sim.item_count(MAILBOX, "contacts"),
        2,
        "the dropped batch was carried out"
    );
    // …the idempotent create of the others finds what a dropped reply made, by sync id.
    h.sim.set_faults(FaultSettings {
        rate: 0.5,
        kinds: vec!["drop".into()],
    });
    let lookups = |h: &Harness| {
        h.sim
            .stats()
            .requests
            .get("GET contactFolders/{id}/contacts")
            .copied()
            .unwrap_or(0)
    };
    let lookups_before = lookups(&h);
    let mut ids = Vec::new();
    for pair in items[2..].chunks(2) {
        ids.extend(
            h.client
                .create_items_once(MAILBOX, Folder::Contacts, pair)
                .await
                .unwrap(),
        );
    }
    h.sim.set_faults(FaultSettings::default());
    assert!(
        lookups(&h) > lookups_before,
        "a reply was dropped and the items were looked up by sync id"
    );
    assert_eq!(ids.len(), 10);
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 12);
    let by_sync_id = h
        .client
        .sync_ids_in_folder(MAILBOX, Folder::Contacts)
        .await
        .unwrap();
    for (n, (_, sync_id)) in items.iter().enumerate() {
        assert_eq!(by_sync_id.get(sync_id).map(Vec::len), Some(1), "{sync_id}");
        if n >= 2 {
            assert_eq!(
                by_sync_id[sync_id][0].id,
                ids[n - 2].id,
                "ids come back in order"
            );
        }
    }
    assert_eq!(
        h.client
            .find_items_by_sync_id(MAILBOX, Folder::Contacts, "sync-0003")
            .await
            .unwrap(),
        vec![ids[1].clone()]
    );
}

#[tokio::test]
async fn under_twenty_percent_faults_every_item_exists_exactly_once() {
    let h = start().await;
    h.sim.set_faults(FaultSettings {
        rate: 0.2,
        kinds: [
            "throttled",
            "service-unavailable",
            "gateway-timeout",
            "drop",
        ]
        .map(String::from)
        .to_vec(),
    });
    let client = h.client.clone().with_retry(10, Duration::from_secs(5));
    let items: Vec<(Fields, String)> = (0..60).map(contact).collect();
    for chunk in items.chunks(15) {
        client
            .create_items_once(MAILBOX, Folder::Contacts, chunk)
            .await
            .unwrap();
    }
    let (changes, _, _) = full_round(&client, Folder::Contacts, None, 25).await;
    let ids: Vec<String> = changes
        .iter()
        .filter_map(|c| {
            if let SyncChange::Created(id) = c {
                Some(id.id.clone())
            } else {
                None
            }
        })
        .collect();
    let items_read = client
        .get_items(MAILBOX, Folder::Contacts, &ids)
        .await
        .unwrap();
    h.sim.set_faults(FaultSettings::default());
    let sync_ids: Vec<String> = items_read
        .iter()
        .filter_map(|i| i.sync_id.clone())
        .collect();
    let distinct: BTreeSet<&String> = sync_ids.iter().collect();
    assert_eq!(sync_ids.len(), 60, "every item once: {sync_ids:?}");
    assert_eq!(distinct.len(), 60);
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 60);
    let stats = h.sim.stats().requests;
    assert!(
        stats.get("POST $batch").copied().unwrap_or(0) > 4,
        "faults forced retries: {stats:?}"
    );
}

#[tokio::test]
async fn throttled_requests_wait_for_retry_after_and_pacing_avoids_them() {
    let limits = ThrottleLimits {
        requests_per_window: 30,
        window_ms: 2_000,
        concurrent_requests: 4,
    };
    let sim_config = GraphSimConfig {
        throttle: limits,
        ..Default::default()
    };
    // Without pacing the client runs into 429s, waits Retry-After and still gets there.
    let unpaced = start_with(
        sim_config.clone(),
        GraphLimits {
            pacing: false,
            ..Default::default()
        },
    )
    .await;
    let items: Vec<(Fields, String)> = (0..70).map(contact).collect();
    unpaced
        .client
        .create_items(MAILBOX, Folder::Contacts, &items)
        .await
        .unwrap();
    assert_eq!(unpaced.sim.item_count(MAILBOX, "contacts"), 70);
    let refused = unpaced.sim.throttle_report().throttled_requests;
    assert!(refused > 0, "the unpaced client was throttled");

    // Paced to the same limits, concurrently: no 429, at most 4 in flight.
    let paced = start_with(
        sim_config,
        GraphLimits {
            requests_per_window: 30,
            window: Duration::from_secs(2),
            concurrent_per_mailbox: 4,
            pacing: true,
        },
    )
    .await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for chunk in items.chunks(10) {
        let client = paced.client.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            client.create_items(MAILBOX, Folder::Contacts, &chunk).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let report = paced.sim.throttle_report();
    assert_eq!(paced.sim.item_count(MAILBOX, "contacts"), 70);
    assert_eq!(report.throttled_requests, 0, "pacing kept under the limits");
    assert!(report.peak_concurrency <= 4);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "70 requests at 30 per 2 s take two windows"
    );
}

#[tokio::test]
async fn a_stale_change_key_is_a_conflict_and_a_gone_item_not_found() {
    let h = start().await;
    let ids = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &[contact(1), contact(2)])
        .await
        .unwrap();
    h.sim
        .update_item(
            MAILBOX,
            &ids[0].id,
            serde_json::json!({"jobTitle": "Edited in Outlook"}),
        )
        .unwrap();
    assert!(h.sim.delete_item(MAILBOX, &ids[1].id));
    let change = fields(&[("JobTitle", text("From Siebel"))]);
    let outcomes = h
        .client
        .update_items(
            MAILBOX,
            Folder::Contacts,
            &[
                (ids[0].clone(), change.clone()),
                (ids[1].clone(), change.clone()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![UpdateOutcome::Conflict, UpdateOutcome::NotFound]
    );
    assert_eq!(
        h.sim.item(MAILBOX, &ids[0].id).unwrap()["jobTitle"],
        "Edited in Outlook",
        "nothing overwritten"
    );
    // Partial list writes check the change key too.
    let partial = fields(&[("EmailAddress2", text("x@example.com"))]);
    assert_eq!(
        h.client
            .update_item(MAILBOX, Folder::Contacts, &ids[0], &partial)
            .await
            .unwrap(),
        UpdateOutcome::Conflict
    );
    let fresh = h.item(Folder::Contacts, &ids[0].id).await;
    assert!(matches!(
        h.client
            .update_item(MAILBOX, Folder::Contacts, &fresh.id, &change)
            .await
            .unwrap(),
        UpdateOutcome::Updated(_)
    ));
}

#[tokio::test]
async fn tokens_are_cached_and_fetched_again_after_a_401() {
    let h = start().await;
    for n in 0..3 {
        h.client
            .create_items(MAILBOX, Folder::Contacts, &[contact(n)])
            .await
            .unwrap();
    }
    assert_eq!(h.sim.stats().requests.get("POST token"), Some(&1));
    h.sim.expire_access_tokens();
    h.client
        .find_item_ids(MAILBOX, Folder::Contacts)
        .await
        .unwrap();
    assert_eq!(h.sim.stats().requests.get("POST token"), Some(&2));

    let bad_config = GraphConfig {
        credential: "wrong-secret".into(),
        ..h.config.clone()
    };
    let bad = GraphClient::new(bad_config.clone()).unwrap();
    let error = bad
        .find_item_ids(MAILBOX, Folder::Contacts)
        .await
        .unwrap_err();
    assert!(matches!(error, GraphError::Token(_)), "{error}");
    assert!(
        !format!("{bad_config:?} {bad:?} {error}").contains("wrong-secret"),
        "the secret is never printed"
    );
    // A refused token is the app registration's problem: permanent, and said so.
    assert!(error.to_string().contains("app registration"), "{error}");
    assert!(ExchangeError::from(error).is_permanent());
}

/// Certificate credentials: the connector signs a client assertion with the app's key; the
/// emulator checks it against the certificate registered with the app. A short-lived token is
/// fetched again before it expires, and the certificate's expiry is known.
#[tokio::test]
async fn a_certificate_signs_the_app_in_and_tokens_are_refreshed_before_they_expire() {
    let app = tandem_sim::graph::AppCertificate::generate(45).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (certificate_file, key_file) = app.write(dir.path(), "app").unwrap();
    let h = start_with(
        GraphSimConfig {
            certificates: vec![app.certificate_pem.clone()],
            token_lifetime: Duration::from_secs(4),
            ..Default::default()
        },
        GraphLimits::default(),
    )
    .await;
    let certificate = CertificateCredential::from_files(&certificate_file, Some(&key_file)).unwrap();
    let not_after = certificate.not_after();
    let client = GraphClient::new(GraphConfig {
        credential: ClientCredential::Certificate(std::sync::Arc::new(certificate)),
        ..h.config.clone()
    })
    .unwrap();
    client.create_items(MAILBOX, Folder::Contacts, &[contact(1)]).await.unwrap();
    assert_eq!(h.sim.stats().requests.get("POST token"), Some(&1));
    // Half-way through the token's 4 s a new one is fetched, before the old one expires.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(client.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap().len(), 1);
    assert_eq!(h.sim.stats().requests.get("POST token"), Some(&2));
    let expiry = client.credential_expiry().unwrap();
    assert_eq!((expiry.endpoint, expiry.kind, expiry.expires_at), ("graph", "certificate", not_after));
    assert_eq!(h.client.credential_expiry(), None, "a secret's expiry is unknown unless configured");

    // Another certificate (not uploaded to the app) is refused, permanently.
    let stranger = tandem_sim::graph::AppCertificate::generate(45).unwrap();
    let (stranger_file, stranger_key) = stranger.write(dir.path(), "stranger").unwrap();
    let refused = GraphClient::new(GraphConfig {
        credential: ClientCredential::Certificate(std::sync::Arc::new(
            CertificateCredential::from_files(&stranger_file, Some(&stranger_key)).unwrap(),
        )),
        ..h.config.clone()
    })
    .unwrap();
    let error = refused.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap_err();
    assert!(error.to_string().contains("AADSTS700027"), "{error}");
    assert!(ExchangeError::from(error).is_permanent());
}

#[tokio::test]
async fn requests_are_counted_for_metrics_as_the_server_saw_them() {
    let h = start().await;
    let counted = h.client.remote_requests();
    assert_eq!(counted.total(), 0);
    h.client.create_items(MAILBOX, Folder::Contacts, &[contact(1), contact(2)]).await.unwrap();
    h.client.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
    let seen = h.sim.stats().requests;
    assert_eq!(Some(&counted.get("token")), seen.get("POST token"));
    assert!(counted.get("batch") >= 1, "creates go in a $batch");
    assert!(counted.get("GET") >= 1, "listing reads");
    // A clone counts into the same counters.
    h.client.clone().find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
    assert!(counted.get("GET") >= 2);
}

#[tokio::test]
async fn an_unknown_mailbox_is_permanent_and_keeps_its_status() {
    let h = start_with(
        GraphSimConfig { mailboxes: Some(vec![MAILBOX.to_owned()]), ..Default::default() },
        GraphLimits::default(),
    )
    .await;
    let error = h.client.find_item_ids("nobody@example.com", Folder::Contacts).await.unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert_eq!(error.code(), Some("ErrorInvalidUser"), "{error}");
    assert!(ExchangeError::from(error).is_permanent());
    // A busy server is not.
    assert!(!ExchangeError::from(GraphError::Unavailable { status: 503 }).is_permanent());
}
