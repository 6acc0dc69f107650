//! Connector tests against the EWS emulator over loopback HTTP, including the schema check
//! of a captured session with `shared/spec/ews/validate/validate.sh`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use chrono::TimeZone as _;
use tandem_sim::RunningServer;
use tandem_sim::common::FaultSettings;
use tandem_sim::ews::{EwsSim, EwsSimConfig};

use super::*;

const MAILBOX: &str = "alice@example.com";

struct Harness {
    sim: EwsSim,
    server: RunningServer,
    client: EwsClient,
}

async fn start(config: EwsSimConfig) -> Harness {
    let sim = EwsSim::new(config).unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = client_for(&server, "ews-sim").with_retry(3, Duration::from_millis(20));
    Harness {
        sim,
        server,
        client,
    }
}

fn client_for(server: &RunningServer, password: &str) -> EwsClient {
    EwsClient::new(EwsConfig {
        endpoint: format!("{}/EWS/Exchange.asmx", server.base_url()),
        user: "svc-tandem".into(),
        password: password.into(),
        auth: Default::default(),
        transport: Default::default(),
    })
    .unwrap()
}

fn text(value: &str) -> Value {
    Value::Text(value.into())
}

fn contact_fields(n: usize) -> Fields {
    let mut fields = Fields::new();
    fields.insert("FileAs".into(), text(&format!("Plate, Tanja {n}")));
    fields.insert("GivenName".into(), text("Tanja"));
    fields.insert("MiddleName".into(), text("Q"));
    fields.insert("Surname".into(), text(&format!("Plate & <Sons> \"{n}\"")));
    fields.insert("CompanyName".into(), text("Blue Yonder Airlines"));
    fields.insert("JobTitle".into(), text("Manager"));
    fields.insert("Department".into(), text("Sales"));
    fields.insert("Sensitivity".into(), text("Private"));
    fields.insert("Body".into(), text("Line one\nLine two: 5 < 6 & 7 > 3"));
    fields.insert(
        "Categories".into(),
        Value::List(vec![text("Customer"), text("VIP")]),
    );
    fields.insert(
        "EmailAddress1".into(),
        text(&format!("tplate{n}@example.com")),
    );
    fields.insert("EmailAddress2".into(), text("tanja@home.example"));
    fields.insert("BusinessPhone".into(), text("+1 425 555 0199"));
    fields.insert("MobilePhone".into(), text("+1 425 555 0100"));
    fields.insert("BusinessFax".into(), text("+1 425 555 0198"));
    fields.insert("BusinessStreet".into(), text("1234 56th Ave"));
    fields.insert("BusinessCity".into(), text("La Habra"));
    fields.insert("BusinessState".into(), text("CA"));
    fields.insert("BusinessCountryOrRegion".into(), text("USA"));
    fields.insert("BusinessPostalCode".into(), text("90631"));
    fields.insert("HomeCity".into(), text("Whittier"));
    fields
}

fn calendar_fields() -> Fields {
    let mut fields = Fields::new();
    fields.insert("Subject".into(), text("Quarterly review"));
    fields.insert("Body".into(), text("Agenda"));
    fields.insert(
        "Start".into(),
        Value::DateTime(Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()),
    );
    fields.insert(
        "End".into(),
        Value::DateTime(Utc.with_ymd_and_hms(2026, 3, 2, 10, 30, 0).unwrap()),
    );
    fields.insert("IsAllDayEvent".into(), Value::Boolean(false));
    fields.insert("Location".into(), text("Room 4"));
    fields.insert("Importance".into(), text("High"));
    fields
}

fn task_fields() -> Fields {
    let mut fields = Fields::new();
    fields.insert("Subject".into(), text("Call customer"));
    fields.insert("Importance".into(), text("High"));
    fields.insert(
        "DueDate".into(),
        Value::DateTime(Utc.with_ymd_and_hms(2026, 3, 5, 17, 0, 0).unwrap()),
    );
    fields.insert(
        "StartDate".into(),
        Value::DateTime(Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()),
    );
    fields.insert("PercentComplete".into(), Value::Number(50.0));
    fields.insert("Status".into(), text("InProgress"));
    fields
}

async fn sync_all(
    client: &EwsClient,
    state: Option<String>,
    max: u16,
) -> (Vec<SyncChange>, String, usize) {
    let mut state = state;
    let mut changes = Vec::new();
    let mut calls = 0;
    loop {
        let batch = client
            .sync_folder_items(MAILBOX, Folder::Contacts, state.as_deref(), max)
            .await
            .unwrap();
        calls += 1;
        assert!(batch.changes.len() <= usize::from(max));
        changes.extend(batch.changes);
        state = Some(batch.sync_state);
        if batch.includes_last_item {
            return (changes, state.unwrap_or_default(), calls);
        }
    }
}

#[tokio::test]
async fn ews_connector_create_get_round_trips_fields_and_sync_id() {
    let h = start(EwsSimConfig::default()).await;
    let items = vec![
        (contact_fields(1), "sync-1".to_owned()),
        (contact_fields(2), "sync-2".to_owned()),
    ];
    let ids = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &items)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        h.sim.contact_fields(MAILBOX, &ids[0].id).unwrap()["BusinessCity"],
        "La Habra"
    );

    let wanted = vec![
        ids[1].id.clone(),
        "AAMkDoesNotExist=".to_owned(),
        ids[0].id.clone(),
    ];
    let got = h
        .client
        .get_items(MAILBOX, Folder::Contacts, &wanted)
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "missing ids are left out");
    assert_eq!(got[0].id, ids[1]);
    assert_eq!(got[0].sync_id.as_deref(), Some("sync-2"));
    assert_eq!(got[0].fields, contact_fields(2));
    assert_eq!(got[1].fields, contact_fields(1));
    assert_eq!(got[1].sync_id.as_deref(), Some("sync-1"));

    let calendar = h
        .client
        .create_items(
            MAILBOX,
            Folder::Calendar,
            &[(calendar_fields(), "cal-1".into())],
        )
        .await
        .unwrap();
    let read = h
        .client
        .get_items(MAILBOX, Folder::Calendar, &[calendar[0].id.clone()])
        .await
        .unwrap();
    let mut with_organizer = calendar_fields();
    with_organizer.insert("Organizer".into(), text(MAILBOX));
    assert_eq!(read[0].fields, with_organizer);
    let task = h
        .client
        .create_items(MAILBOX, Folder::Tasks, &[(task_fields(), "task-1".into())])
        .await
        .unwrap();
    let read = h
        .client
        .get_items(MAILBOX, Folder::Tasks, &[task[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(read[0].fields, task_fields());
    assert_eq!(read[0].sync_id.as_deref(), Some("task-1"));
    h.client
        .delete_items(MAILBOX, Folder::Calendar, &[calendar[0].id.clone()])
        .await
        .unwrap();
    h.client
        .delete_items(MAILBOX, Folder::Tasks, &[task[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), 0);
    assert_eq!(h.sim.item_count(MAILBOX, "tasks"), 0);
}

#[tokio::test]
async fn ews_connector_rejects_unknown_fields_before_sending() {
    let h = start(EwsSimConfig::default()).await;
    let mut fields = contact_fields(1);
    fields.insert("FavouriteColour".into(), text("blue"));
    let error = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &[(fields.clone(), "s".into())])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EwsError::UnknownField(name) if name == "FavouriteColour"),
        "{error}"
    );
    let start_only = [("Start".to_owned(), text("2026-01-01T00:00:00Z"))]
        .into_iter()
        .collect::<Fields>();
    let error = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &[(start_only, "s".into())])
        .await
        .unwrap_err();
    assert!(matches!(error, EwsError::UnknownField(_)));
    let id = ItemId {
        id: "x".into(),
        change_key: "y".into(),
    };
    let error = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &id, &fields)
        .await
        .unwrap_err();
    assert!(matches!(error, EwsError::UnknownField(_)));
    assert!(
        h.sim.stats().requests.is_empty(),
        "nothing was sent: {:?}",
        h.sim.stats()
    );
}

#[tokio::test]
async fn ews_connector_sync_pages_and_reports_updates_and_deletes() {
    let h = start(EwsSimConfig::default()).await;
    let ids: Vec<String> = (0..700)
        .map(|n| {
            h.sim
                .create_contact(MAILBOX, &[("GivenName", &format!("P{n}"))])
                .unwrap()
        })
        .collect();
    let (changes, state, calls) = sync_all(&h.client, None, 300).await;
    assert_eq!(calls, 3);
    assert_eq!(changes.len(), 700);
    assert!(changes.iter().all(|c| matches!(c, SyncChange::Created(_))));

    let current = h
        .client
        .get_items(MAILBOX, Folder::Contacts, &ids[..2])
        .await
        .unwrap();
    let mut edit = Fields::new();
    edit.insert("JobTitle".into(), text("CEO"));
    let outcome = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &current[0].id, &edit)
        .await
        .unwrap();
    let UpdateOutcome::Updated(new_id) = outcome else {
        panic!("expected Updated, got {outcome:?}")
    };
    h.client
        .delete_items(MAILBOX, Folder::Contacts, &[ids[1].clone()])
        .await
        .unwrap();

    let (changes, _, _) = sync_all(&h.client, Some(state.clone()), 512).await;
    assert_eq!(
        changes,
        vec![
            SyncChange::Updated(new_id),
            SyncChange::Deleted(ids[1].clone())
        ]
    );

    let error = h
        .client
        .sync_folder_items(MAILBOX, Folder::Contacts, Some("Z2FyYmFnZQ=="), 10)
        .await
        .unwrap_err();
    assert!(matches!(error, EwsError::InvalidSyncState), "{error}");
    let error = h
        .client
        .sync_folder_items(MAILBOX, Folder::Contacts, None, 513)
        .await
        .unwrap_err();
    assert!(matches!(error, EwsError::InvalidArgument(_)));
}

#[tokio::test]
async fn ews_connector_update_uses_change_keys_and_deletes_blank_fields() {
    let h = start(EwsSimConfig::default()).await;
    let ids = h
        .client
        .create_items(
            MAILBOX,
            Folder::Contacts,
            &[(contact_fields(1), "s-1".into())],
        )
        .await
        .unwrap();
    let original = ids[0].clone();

    let mut edit = Fields::new();
    edit.insert("JobTitle".into(), text("Director"));
    edit.insert("MobilePhone".into(), Value::Null);
    edit.insert("BusinessCity".into(), text("Seattle"));
    edit.insert("Department".into(), text(""));
    let UpdateOutcome::Updated(updated) = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &original, &edit)
        .await
        .unwrap()
    else {
        panic!("first update must succeed");
    };
    assert_eq!(updated.id, original.id);
    assert_ne!(updated.change_key, original.change_key);
    let stored = h.sim.contact_fields(MAILBOX, &original.id).unwrap();
    assert_eq!(stored["JobTitle"], "Director");
    assert_eq!(stored["BusinessCity"], "Seattle");
    assert_eq!(stored["BusinessStreet"], "1234 56th Ave");
    assert!(!stored.contains_key("MobilePhone"));
    assert!(!stored.contains_key("Department"));

    // Someone else edits the item: our ChangeKey is stale now.
    h.sim
        .update_item_fields(MAILBOX, &original.id, &[("Nickname", "T")])
        .unwrap();
    let outcome = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &updated, &edit)
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Conflict);
    let outcome = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &original, &edit)
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Conflict);

    let fresh = h
        .client
        .get_items(
            MAILBOX,
            Folder::Contacts,
            std::slice::from_ref(&original.id),
        )
        .await
        .unwrap();
    let outcome = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &fresh[0].id, &edit)
        .await
        .unwrap();
    assert!(matches!(outcome, UpdateOutcome::Updated(_)));

    h.sim.delete_item(MAILBOX, &original.id);
    let outcome = h
        .client
        .update_item(MAILBOX, Folder::Contacts, &fresh[0].id, &edit)
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::NotFound);
}

#[tokio::test]
async fn ews_connector_find_pages_past_1000_items() {
    let h = start(EwsSimConfig::default()).await;
    let mut seeded: Vec<String> = (0..1234)
        .map(|n| {
            h.sim
                .create_contact(MAILBOX, &[("GivenName", &format!("P{n}"))])
                .unwrap()
        })
        .collect();
    let mut found: Vec<String> = h
        .client
        .find_item_ids(MAILBOX, Folder::Contacts)
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.id)
        .collect();
    assert_eq!(
        h.sim.stats().requests.get("FindItem"),
        Some(&3),
        "500 + 500 + 234"
    );
    seeded.sort();
    found.sort();
    assert_eq!(found, seeded);

    let big = h.client.clone().with_find_page_size(1000);
    assert_eq!(
        big.find_item_ids(MAILBOX, Folder::Contacts)
            .await
            .unwrap()
            .len(),
        1234
    );
    assert_eq!(h.sim.stats().requests.get("FindItem"), Some(&5));
    assert!(
        h.client
            .find_item_ids(MAILBOX, Folder::Tasks)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn ews_connector_retries_busy_and_503_but_not_creates_on_503() {
    let h = start(EwsSimConfig::default()).await;
    h.sim.set_faults(FaultSettings {
        rate: 1.0,
        kinds: vec!["server-busy".into()],
    });
    let error = h
        .client
        .find_item_ids(MAILBOX, Folder::Contacts)
        .await
        .unwrap_err();
    assert!(
        matches!(error, EwsError::ServerBusy { back_off } if back_off == Duration::from_millis(200)),
        "{error}"
    );
    assert_eq!(
        h.sim.stats().requests.get("FindItem"),
        Some(&3),
        "three tries in all"
    );

    h.sim.set_faults(FaultSettings {
        rate: 1.0,
        kinds: vec!["http503".into()],
    });
    let error = h
        .client
        .create_items(
            MAILBOX,
            Folder::Contacts,
            &[(contact_fields(1), "s".into())],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, EwsError::Unavailable { status: 503 }),
        "{error}"
    );
    assert_eq!(
        h.sim.stats().requests.get("CreateItem"),
        Some(&1),
        "CreateItem is not retried after 503"
    );
    let error = h
        .client
        .get_items(MAILBOX, Folder::Contacts, &["x".into()])
        .await
        .unwrap_err();
    assert!(matches!(error, EwsError::Unavailable { .. }));
    assert_eq!(h.sim.stats().requests.get("GetItem"), Some(&3));

    // Half the requests fail: retries carry the session through.
    h.sim.set_faults(FaultSettings {
        rate: 0.3,
        kinds: vec![],
    });
    let client = h.client.clone().with_retry(8, Duration::from_millis(5));
    for n in 0..10 {
        let id = h
            .sim
            .create_contact(MAILBOX, &[("GivenName", &format!("R{n}"))])
            .unwrap();
        let items = client
            .get_items(MAILBOX, Folder::Contacts, &[id])
            .await
            .unwrap();
        assert_eq!(items.len(), 1);
    }
}

#[tokio::test]
async fn ews_connector_reports_auth_and_mailbox_errors() {
    let h = start(EwsSimConfig {
        mailboxes: Some(vec![MAILBOX.into()]),
        ..Default::default()
    })
    .await;
    let wrong = client_for(&h.server, "wrong");
    let error = wrong
        .find_item_ids(MAILBOX, Folder::Contacts)
        .await
        .unwrap_err();
    assert!(matches!(error, EwsError::Unauthorized), "{error}");
    let error = h
        .client
        .find_item_ids("bob@example.com", Folder::Contacts)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ErrorNonExistentMailbox"), "{error}");
    assert!(
        format!(
            "{:?}",
            EwsConfig {
                endpoint: "x".into(),
                user: "u".into(),
                password: "hunter2".into(),
                auth: Default::default(),
                transport: Default::default(),
            }
        )
        .contains("redacted")
    );
    assert!(!format!("{wrong:?}").contains("wrong"));
}

/// The `shared/spec/ews` folder beside the repository, as CI lays it out.
use tandem_sim::ews::schema_check::spec_dir;

/// Returns false (after a notice) when the schema tools are missing outside CI; panics in CI.
fn schema_tools_available(_spec: &Path) -> bool {
    tandem_sim::ews::schema_check::tools_available()
}

/// Validates every captured `.xml` file with `validate.sh`; panics with xmllint's output.
pub(crate) fn validate_captured(_spec: &Path, capture: &Path) -> usize {
    tandem_sim::ews::schema_check::assert_captured_valid(capture, "", 1)
}

/// A realistic session, captured by the emulator and checked against the EWS schemas: every
/// request the connector sent and every reply the emulator gave must validate.
#[tokio::test]
async fn ews_session_capture_validates_against_schema() {
    let spec = spec_dir();
    if !schema_tools_available(&spec) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let h = start(EwsSimConfig {
        capture_dir: Some(capture.clone()),
        ..Default::default()
    })
    .await;
    let c = &h.client;

    let items: Vec<(Fields, String)> = (0..3)
        .map(|n| (contact_fields(n), format!("sync-{n}")))
        .collect();
    let ids = c
        .create_items(MAILBOX, Folder::Contacts, &items)
        .await
        .unwrap();
    let (changes, state, _) = sync_all(c, None, 2).await;
    assert_eq!(changes.len(), 3);
    let mut wanted: Vec<String> = ids.iter().map(|i| i.id.clone()).collect();
    wanted.push("AAMkGone=".into());
    let read = c
        .get_items(MAILBOX, Folder::Contacts, &wanted)
        .await
        .unwrap();
    let mut edit = Fields::new();
    edit.insert("JobTitle".into(), text("VP <Sales> & Marketing"));
    edit.insert("HomeCity".into(), Value::Null);
    edit.insert("Categories".into(), Value::List(vec![text("A"), text("B")]));
    edit.insert("EmailAddress3".into(), text("third@example.com"));
    let updated = c
        .update_item(MAILBOX, Folder::Contacts, &read[0].id, &edit)
        .await
        .unwrap();
    assert!(matches!(updated, UpdateOutcome::Updated(_)));
    assert_eq!(
        c.update_item(MAILBOX, Folder::Contacts, &read[0].id, &edit)
            .await
            .unwrap(),
        UpdateOutcome::Conflict
    );
    c.delete_items(
        MAILBOX,
        Folder::Contacts,
        &[ids[2].id.clone(), "AAMkGone=".into()],
    )
    .await
    .unwrap();
    let (changes, _, _) = sync_all(c, Some(state), 512).await;
    assert_eq!(changes.len(), 2);
    assert!(matches!(
        c.sync_folder_items(MAILBOX, Folder::Contacts, Some("bad"), 5)
            .await,
        Err(EwsError::InvalidSyncState)
    ));
    assert_eq!(
        c.clone()
            .with_find_page_size(1)
            .find_item_ids(MAILBOX, Folder::Contacts)
            .await
            .unwrap()
            .len(),
        2
    );

    let by_sync_id = c
        .find_items_by_sync_id(MAILBOX, Folder::Contacts, "sync-1")
        .await
        .unwrap();
    assert_eq!(by_sync_id, vec![ids[1].clone()]);

    let cal = c
        .create_items(
            MAILBOX,
            Folder::Calendar,
            &[(calendar_fields(), "cal".into())],
        )
        .await
        .unwrap();
    c.get_items(MAILBOX, Folder::Calendar, &[cal[0].id.clone()])
        .await
        .unwrap();
    let mut moved = Fields::new();
    moved.insert(
        "Start".into(),
        Value::DateTime(Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap()),
    );
    moved.insert(
        "End".into(),
        Value::DateTime(Utc.with_ymd_and_hms(2026, 3, 3, 10, 0, 0).unwrap()),
    );
    moved.insert("IsAllDayEvent".into(), Value::Boolean(true));
    assert!(matches!(
        c.update_item(MAILBOX, Folder::Calendar, &cal[0], &moved)
            .await
            .unwrap(),
        UpdateOutcome::Updated(_)
    ));
    c.delete_items(MAILBOX, Folder::Calendar, &[cal[0].id.clone()])
        .await
        .unwrap();
    let task = c
        .create_items(MAILBOX, Folder::Tasks, &[(task_fields(), "task".into())])
        .await
        .unwrap();
    c.get_items(MAILBOX, Folder::Tasks, &[task[0].id.clone()])
        .await
        .unwrap();
    let mut done = Fields::new();
    done.insert("PercentComplete".into(), Value::Number(100.0));
    done.insert("Status".into(), text("Completed"));
    assert!(matches!(
        c.update_item(MAILBOX, Folder::Tasks, &task[0], &done)
            .await
            .unwrap(),
        UpdateOutcome::Updated(_)
    ));
    c.delete_items(MAILBOX, Folder::Tasks, &[task[0].id.clone()])
        .await
        .unwrap();

    // A throttled request: the ErrorServerBusy fault reply must validate too.
    h.sim.set_faults(FaultSettings {
        rate: 1.0,
        kinds: vec!["server-busy".into()],
    });
    assert!(
        c.clone()
            .with_retry(1, Duration::ZERO)
            .find_item_ids(MAILBOX, Folder::Contacts)
            .await
            .is_err()
    );
    h.sim.set_faults(FaultSettings::default());

    let checked = validate_captured(&spec, &capture);
    assert!(checked >= 40, "only {checked} files were captured");
}

#[tokio::test]
async fn ews_connector_batches_creates_by_100_gets_and_deletes_by_50() {
    let h = start(EwsSimConfig::default()).await;
    let items: Vec<(Fields, String)> = (0..120)
        .map(|n| {
            (
                [("GivenName".to_owned(), text(&format!("B{n}")))]
                    .into_iter()
                    .collect(),
                format!("s-{n}"),
            )
        })
        .collect();
    let ids = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &items)
        .await
        .unwrap();
    assert_eq!(ids.len(), 120);
    assert_eq!(h.sim.stats().requests.get("CreateItem"), Some(&2));
    assert_eq!(
        h.sim.sync_id(MAILBOX, &ids[119].id).as_deref(),
        Some("s-119"),
        "ids come back in order"
    );

    let seeded = h
        .sim
        .create_contact(
            MAILBOX,
            &[("GivenName", "Seeded"), ("TandemSyncId", "seed-1")],
        )
        .unwrap();
    let mut wanted: Vec<String> = ids.iter().map(|i| i.id.clone()).collect();
    wanted.push(seeded.clone());
    let read = h
        .client
        .get_items(MAILBOX, Folder::Contacts, &wanted)
        .await
        .unwrap();
    assert_eq!(read.len(), 121);
    assert_eq!(h.sim.stats().requests.get("GetItem"), Some(&3));
    assert_eq!(read[57].fields.get("GivenName"), Some(&text("B57")));
    assert_eq!(read[120].sync_id.as_deref(), Some("seed-1"));

    h.client
        .delete_items(MAILBOX, Folder::Contacts, &wanted)
        .await
        .unwrap();
    assert_eq!(h.sim.stats().requests.get("DeleteItem"), Some(&3));
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 0);
    // Deleting again is not an error: the items are gone either way.
    h.client
        .delete_items(MAILBOX, Folder::Contacts, &wanted[..3])
        .await
        .unwrap();
}

#[tokio::test]
async fn ews_connector_rejects_values_the_schema_cannot_carry() {
    let h = start(EwsSimConfig::default()).await;
    let mut fields = task_fields();
    fields.insert("DueDate".into(), text("next tuesday"));
    let error = h
        .client
        .create_items(MAILBOX, Folder::Tasks, &[(fields, "t".into())])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EwsError::InvalidValue { field, .. } if field == "DueDate"),
        "{error}"
    );
    let mut fields = contact_fields(1);
    fields.insert("JobTitle".into(), Value::List(vec![text("a")]));
    let error = h
        .client
        .create_items(MAILBOX, Folder::Contacts, &[(fields, "t".into())])
        .await
        .unwrap_err();
    assert!(matches!(error, EwsError::InvalidValue { .. }), "{error}");
    // Text date-times with an offset are normalised to UTC.
    let mut fields = task_fields();
    fields.insert("DueDate".into(), text("2026-03-05T19:00:00+02:00"));
    let id = h
        .client
        .create_items(MAILBOX, Folder::Tasks, &[(fields, "t".into())])
        .await
        .unwrap();
    let read = h
        .client
        .get_items(MAILBOX, Folder::Tasks, &[id[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(read[0].fields["DueDate"], task_fields()["DueDate"]);
}

/// Replies from a real Exchange carry many elements Tandem does not map; they are skipped,
/// not errors, while the mapped ones keep their types.
#[test]
fn ews_reply_items_with_unmapped_elements_are_read_leniently() {
    let reply = r#"<t:Contact xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
        <t:ItemId Id="AAMk1" ChangeKey="EQ1"/><t:ParentFolderId Id="F"/><t:ItemClass>IPM.Contact</t:ItemClass>
        <t:Subject>Ann Lee</t:Subject><t:Body BodyType="Text">hi</t:Body><t:DateTimeReceived>2026-01-01T00:00:00Z</t:DateTimeReceived>
        <t:ExtendedProperty><t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="TandemSyncId" PropertyType="String"/><t:Value>s-7</t:Value></t:ExtendedProperty>
        <t:Culture>en-US</t:Culture><t:FileAs>Lee, Ann</t:FileAs><t:FileAsMapping>LastCommaFirst</t:FileAsMapping>
        <t:GivenName>Ann</t:GivenName><t:CompleteName><t:FirstName>Ann</t:FirstName></t:CompleteName>
        <t:EmailAddresses><t:Entry Key="EmailAddress1" Name="Ann" RoutingType="SMTP">ann@x.com</t:Entry></t:EmailAddresses>
        <t:PhoneNumbers><t:Entry Key="MobilePhone">+47 1</t:Entry><t:Entry Key="FuturePhoneKind">9</t:Entry></t:PhoneNumbers>
        <t:Birthday>1980-05-01T12:00:00Z</t:Birthday><t:Surname>Lee</t:Surname><t:HasPicture>false</t:HasPicture>
    </t:Contact>"#;
    let item = wire::parse_item(&wire::parse_document(reply).unwrap(), false).unwrap();
    let item = exchange_item(item).unwrap();
    assert_eq!(
        item.id,
        ItemId {
            id: "AAMk1".into(),
            change_key: "EQ1".into()
        }
    );
    assert_eq!(item.sync_id.as_deref(), Some("s-7"));
    let names: Vec<&str> = item.fields.keys().collect();
    assert_eq!(
        names,
        [
            "Birthday",
            "Body",
            "EmailAddress1",
            "FileAs",
            "GivenName",
            "MobilePhone",
            "Subject",
            "Surname"
        ]
    );
    assert_eq!(
        item.fields["Birthday"],
        Value::DateTime(Utc.with_ymd_and_hms(1980, 5, 1, 12, 0, 0).unwrap())
    );

    let busy = wire::parse_document(
        r#"<m:GetItemResponseMessage xmlns:m="m" xmlns:t="t" ResponseClass="Error"><m:MessageText>busy</m:MessageText><m:ResponseCode>ErrorServerBusy</m:ResponseCode><m:MessageXml><t:Value Name="BackOffMilliseconds">1500</t:Value></m:MessageXml><m:Items/></m:GetItemResponseMessage>"#,
    )
    .unwrap();
    let (code, text) = message_error(&busy).unwrap();
    let error = message_failure(&busy, code, text);
    assert!(
        matches!(error, EwsError::ServerBusy { back_off } if back_off == Duration::from_millis(1500)),
        "{error}"
    );
}

#[tokio::test]
async fn ews_connector_finds_items_by_sync_id() {
    let h = start(EwsSimConfig::default()).await;
    for n in 0..30 {
        h.sim
            .create_contact(
                MAILBOX,
                &[
                    ("GivenName", &format!("N{n}")),
                    ("TandemSyncId", &format!("s-{n}")),
                ],
            )
            .unwrap();
    }
    let ids = h
        .client
        .create_items(
            MAILBOX,
            Folder::Contacts,
            &[(contact_fields(1), "s-17".into())],
        )
        .await
        .unwrap();
    let found = h
        .client
        .find_items_by_sync_id(MAILBOX, Folder::Contacts, "s-17")
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "the seeded item and the duplicate");
    assert!(found.contains(&ids[0]));
    assert!(
        h.client
            .find_items_by_sync_id(MAILBOX, Folder::Contacts, "nope")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.client
            .find_items_by_sync_id(MAILBOX, Folder::Tasks, "s-17")
            .await
            .unwrap()
            .is_empty()
    );
}

// ----- streaming notifications (watch) -----

/// Waits until the emulator holds `count` streaming subscriptions (at most 5 s).
async fn wait_for_subscriptions(sim: &EwsSim, count: usize) {
    let started = std::time::Instant::now();
    while sim.subscription_count() < count {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "only {} of {count} subscriptions were made",
            sim.subscription_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the next signal (at most `limit`) and returns the mailbox it names.
async fn next_signal(
    receiver: &mut tokio::sync::mpsc::Receiver<String>,
    limit: Duration,
) -> Option<String> {
    tokio::time::timeout(limit, receiver.recv())
        .await
        .ok()
        .flatten()
}

fn drain(receiver: &mut tokio::sync::mpsc::Receiver<String>) {
    while receiver.try_recv().is_ok() {}
}

/// A change made in Exchange (directly in the emulator's store, as Outlook would) is
/// signalled for the right mailbox; p99 over 50 changes in all three folders stays < 2 s.
#[tokio::test]
async fn ews_watch_signals_changes_within_two_seconds_p99() {
    let h = start(EwsSimConfig::default()).await;
    let other = "bob@example.com";
    let mut signals = h.client.watch(vec![MAILBOX.to_owned(), other.to_owned()]);
    wait_for_subscriptions(&h.sim, 2).await;
    let contact = h
        .sim
        .create_contact(MAILBOX, &[("GivenName", "Ann")])
        .unwrap();
    assert_eq!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .as_deref(),
        Some(MAILBOX)
    );
    let mut latencies = Vec::new();
    for n in 0..50 {
        drain(&mut signals);
        let started = std::time::Instant::now();
        let mailbox = if n % 5 == 4 { other } else { MAILBOX };
        match n % 3 {
            0 => {
                h.sim
                    .update_item_fields(MAILBOX, &contact, &[("JobTitle", &format!("T{n}"))])
                    .unwrap();
            }
            1 => {
                h.sim
                    .create_item(mailbox, "calendar", &[("Subject", "Meeting")])
                    .unwrap();
            }
            _ => {
                let task = h
                    .sim
                    .create_item(mailbox, "tasks", &[("Subject", "Task")])
                    .unwrap();
                h.sim.delete_item(mailbox, &task);
            }
        }
        let expected = if n % 3 == 0 { MAILBOX } else { mailbox };
        let got = next_signal(&mut signals, Duration::from_secs(5)).await;
        assert_eq!(
            got.as_deref(),
            Some(expected),
            "change {n} was not signalled"
        );
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "EWS watch latency over {} changes: p50 {p50:?}, p99 {p99:?}",
        latencies.len()
    );
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?} is over 2 s");
}

/// Connections closed by Exchange (ConnectionTimeout) or renewed by the client are opened
/// again; a lost subscription (server restart) is made again and signalled once.
#[tokio::test]
async fn ews_watch_reconnects_and_resubscribes() {
    let h = start(EwsSimConfig {
        streaming_connection_limit: Some(Duration::from_millis(150)),
        ..Default::default()
    })
    .await;
    let mut signals = h.client.watch(vec![MAILBOX.to_owned()]);
    wait_for_subscriptions(&h.sim, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let connections = h
        .sim
        .stats()
        .requests
        .get("GetStreamingEvents")
        .copied()
        .unwrap_or(0);
    assert!(connections >= 3, "only {connections} streaming connections");
    assert_eq!(
        next_signal(&mut signals, Duration::from_millis(50)).await,
        None
    );
    h.sim
        .create_contact(MAILBOX, &[("GivenName", "Ann")])
        .unwrap();
    assert_eq!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .as_deref(),
        Some(MAILBOX)
    );

    h.sim.expire_subscriptions();
    assert_eq!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .as_deref(),
        Some(MAILBOX),
        "a re-subscription must be signalled"
    );
    wait_for_subscriptions(&h.sim, 1).await;
    let subscribes = h
        .sim
        .stats()
        .requests
        .get("Subscribe")
        .copied()
        .unwrap_or(0);
    assert_eq!(subscribes, 2);
    h.sim
        .create_contact(MAILBOX, &[("GivenName", "Bo")])
        .unwrap();
    assert_eq!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .as_deref(),
        Some(MAILBOX)
    );

    // The client renews a connection on its own before its limit, too.
    drop(signals);
    let h2 = start(EwsSimConfig::default()).await;
    let client2 =
        client_for(&h2.server, "ews-sim").with_watch_connection(Duration::from_millis(200));
    let mut signals2 = client2.watch(vec![MAILBOX.to_owned()]);
    wait_for_subscriptions(&h2.sim, 1).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let renewed = h2
        .sim
        .stats()
        .requests
        .get("GetStreamingEvents")
        .copied()
        .unwrap_or(0);
    assert!(renewed >= 3, "client renewed only {renewed} times");
    h2.sim
        .create_contact(MAILBOX, &[("GivenName", "Cy")])
        .unwrap();
    assert_eq!(
        next_signal(&mut signals2, Duration::from_secs(2))
            .await
            .as_deref(),
        Some(MAILBOX)
    );
}

/// The watch survives injected faults on Subscribe and GetStreamingEvents.
#[tokio::test]
async fn ews_watch_recovers_from_faults() {
    let h = start(EwsSimConfig::default()).await;
    h.sim.set_faults(FaultSettings {
        rate: 1.0,
        kinds: vec!["http503".into(), "server-busy".into()],
    });
    let mut signals = h.client.watch(vec![MAILBOX.to_owned()]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.sim.subscription_count(), 0);
    h.sim.set_faults(FaultSettings::default());
    wait_for_subscriptions(&h.sim, 1).await;
    h.sim
        .create_contact(MAILBOX, &[("GivenName", "Ann")])
        .unwrap();
    assert_eq!(
        next_signal(&mut signals, Duration::from_secs(3))
            .await
            .as_deref(),
        Some(MAILBOX)
    );
}

/// Open GetStreamingEvents connections counted by the emulator and by the client.
fn streaming_connections(h: &Harness) -> (u64, u64) {
    let served = h
        .sim
        .stats()
        .requests
        .get("GetStreamingEvents")
        .copied()
        .unwrap_or(0);
    (
        served,
        h.client.remote_requests().get("GetStreamingEvents"),
    )
}

/// 450 mailboxes are read over 3 GetStreamingEvents connections (200 subscriptions each at
/// most), and a change in any mailbox, whichever connection reads it, signals exactly that
/// mailbox.
#[tokio::test]
async fn ews_watch_multiplexes_mailboxes_over_few_connections() {
    let h = start(EwsSimConfig::default()).await;
    let mailboxes: Vec<String> = (0..450).map(|n| format!("user{n}@example.com")).collect();
    let mut signals = h.client.watch(mailboxes.clone());
    let started = std::time::Instant::now();
    while h.sim.subscription_count() < mailboxes.len() || streaming_connections(&h).0 < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} subscriptions, {:?} connections",
            h.sim.subscription_count(),
            streaming_connections(&h)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(streaming_connections(&h), (3, 3), "one connection per 200 mailboxes");
    assert_eq!(
        h.sim.stats().requests.get("Subscribe").copied().unwrap_or(0),
        450
    );
    for n in [0, 199, 200, 333, 449] {
        drain(&mut signals);
        let mailbox = &mailboxes[n];
        h.sim
            .create_contact(mailbox, &[("GivenName", "Ann")])
            .unwrap();
        assert_eq!(
            next_signal(&mut signals, Duration::from_secs(3))
                .await
                .as_deref(),
            Some(mailbox.as_str()),
            "change in mailbox {n}"
        );
        assert_eq!(
            next_signal(&mut signals, Duration::from_millis(200)).await,
            None,
            "only mailbox {n} is signalled"
        );
    }
    assert_eq!(streaming_connections(&h), (3, 3), "events do not reconnect");
}

/// A subscription lost alone (one mailbox of a group) is made again alone and signalled;
/// the other mailboxes of its connection keep their subscriptions and their events.
#[tokio::test]
async fn ews_watch_resubscribes_only_the_lost_subscription() {
    let h = start(EwsSimConfig::default()).await;
    let mailboxes: Vec<String> = (0..5).map(|n| format!("user{n}@example.com")).collect();
    let mut signals = h.client.watch(mailboxes.clone());
    wait_for_subscriptions(&h.sim, 5).await;
    while streaming_connections(&h).0 < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let subscribes = || h.sim.stats().requests.get("Subscribe").copied().unwrap_or(0);
    assert_eq!(subscribes(), 5);
    h.sim.expire_subscriptions_of(&mailboxes[2]);
    assert_eq!(
        next_signal(&mut signals, Duration::from_secs(3))
            .await
            .as_deref(),
        Some(mailboxes[2].as_str()),
        "the re-subscription is signalled"
    );
    wait_for_subscriptions(&h.sim, 5).await;
    assert_eq!(subscribes(), 6, "only the lost subscription is made again");
    assert_eq!(
        next_signal(&mut signals, Duration::from_millis(200)).await,
        None
    );
    for mailbox in [&mailboxes[2], &mailboxes[4]] {
        h.sim
            .create_contact(mailbox, &[("GivenName", "Ann")])
            .unwrap();
        assert_eq!(
            next_signal(&mut signals, Duration::from_secs(3))
                .await
                .as_deref(),
            Some(mailbox.as_str())
        );
    }
}

/// Subscribe, GetStreamingEvents chunks (open, events, closed, lost subscription) and
/// Unsubscribe, as captured, validate against the EWS schemas.
#[tokio::test]
async fn ews_streaming_capture_validates_against_schema() {
    let spec = spec_dir();
    if !schema_tools_available(&spec) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let h = start(EwsSimConfig {
        capture_dir: Some(capture.clone()),
        streaming_connection_limit: Some(Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let mut signals = h.client.watch(vec![MAILBOX.to_owned()]);
    wait_for_subscriptions(&h.sim, 1).await;
    let id = h
        .sim
        .create_contact(MAILBOX, &[("GivenName", "Ann")])
        .unwrap();
    assert!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .is_some()
    );
    h.sim
        .update_item_fields(MAILBOX, &id, &[("Surname", "Lee")])
        .unwrap();
    assert!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .is_some()
    );
    h.sim.delete_item(MAILBOX, &id);
    assert!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.sim.expire_subscriptions();
    assert!(
        next_signal(&mut signals, Duration::from_secs(2))
            .await
            .is_some()
    );
    let subscription = h.client.subscribe(MAILBOX, &[Folder::Tasks]).await.unwrap();
    assert!(!subscription.is_empty());
    drop(signals);
    let names: Vec<String> = std::fs::read_dir(&capture)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for wanted in [
        "CreatedEvent",
        "ModifiedEvent",
        "DeletedEvent",
        "Closed",
        "ErrorInvalidSubscription",
    ] {
        let found = names
            .iter()
            .filter(|n| n.contains("GetStreamingEvents-response"))
            .any(|n| {
                std::fs::read_to_string(capture.join(n))
                    .unwrap()
                    .contains(wanted)
            });
        assert!(
            found,
            "no captured GetStreamingEvents chunk contains {wanted}"
        );
    }
    let checked = validate_captured(&spec, &capture);
    assert!(checked >= 8, "only {checked} files were captured");
}

// ----- reply parser robustness -----

/// Randomly mutated real replies (and random bytes) never make the reply readers panic.
/// Seeded, bounded to 4 s; the cargo-fuzz target `ews_reply` explores further.
#[tokio::test]
async fn ews_reply_parser_survives_random_input() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let h = start(EwsSimConfig {
        capture_dir: Some(capture.clone()),
        ..Default::default()
    })
    .await;
    let c = &h.client;
    let ids = c
        .create_items(
            MAILBOX,
            Folder::Contacts,
            &[
                (contact_fields(1), "s1".into()),
                (contact_fields(2), "s2".into()),
            ],
        )
        .await
        .unwrap();
    sync_all(c, None, 1).await;
    c.get_items(
        MAILBOX,
        Folder::Contacts,
        &[ids[0].id.clone(), "gone".into()],
    )
    .await
    .unwrap();
    c.find_item_ids(MAILBOX, Folder::Contacts).await.unwrap();
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&capture)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("response"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    for sample in [
        "02-syncfolderitems-response.xml",
        "04-createitem-contact-response.xml",
        "06-updateitem-conflict-response.xml",
        "12-serverbusy-fault-response.xml",
    ] {
        if let Ok(bytes) = std::fs::read(spec_dir().join("samples").join(sample)) {
            seeds.push(bytes);
        }
    }
    assert!(seeds.len() >= 4);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_e005);
    let started = std::time::Instant::now();
    let mut runs = 0u32;
    while runs < 20_000 && started.elapsed() < Duration::from_secs(4) {
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..8) {
            if input.is_empty() {
                break;
            }
            let at = rng.random_range(0..input.len());
            match rng.random_range(0..6) {
                0 => input[at] = rng.random(),
                1 => input.truncate(at),
                2 => input.insert(at, b"<>/&\"=:"[rng.random_range(0..7)]),
                3 => {
                    let end = (at + rng.random_range(1..64)).min(input.len());
                    input.drain(at..end);
                }
                4 => {
                    let end = (at + rng.random_range(1..256)).min(input.len());
                    let copy = input[at..end].to_vec();
                    let to = rng.random_range(0..input.len());
                    input.splice(to..to, copy);
                }
                _ => {
                    input.splice(at..at, b"<t:Contact><t:ItemId/>".iter().copied());
                }
            }
        }
        if rng.random_range(0..20) == 0 {
            input = (0..rng.random_range(0..512))
                .map(|_| rng.random())
                .collect();
        }
        parse_any_reply(&input);
        runs += 1;
    }
    assert!(runs >= 500, "only {runs} inputs were tried");
    // The unmutated replies still read as they should.
    for seed in &seeds {
        parse_any_reply(seed);
    }
}

// ----- calendar items and tasks with every mapped field -----

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Value {
    Value::DateTime(Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap())
}

fn texts(items: &[&str]) -> Value {
    Value::List(items.iter().map(|t| text(t)).collect())
}

/// A calendar item with every supported field and the given recurrence fields.
fn full_calendar_fields(n: usize, recurrence: &[(&str, Value)]) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "Subject".into(),
        text(&format!("Account review {n} & <plan>")),
    );
    fields.insert("Sensitivity".into(), text("Private"));
    fields.insert("Body".into(), text("Agenda:\n1. numbers\n2. next steps"));
    fields.insert("Categories".into(), texts(&["Meeting"]));
    fields.insert("Importance".into(), text("High"));
    fields.insert(
        "UID".into(),
        text(&format!("040000008200E00074C5B7101A82E008-{n}")),
    );
    fields.insert("Start".into(), at(2026, 3, 2, 9, 0));
    fields.insert("End".into(), at(2026, 3, 2, 10, 30));
    fields.insert("IsAllDayEvent".into(), Value::Boolean(false));
    fields.insert("Location".into(), text("Room 4"));
    fields.insert(
        "RequiredAttendees".into(),
        texts(&["bob@example.com", "carol@example.com"]),
    );
    fields.insert("OptionalAttendees".into(), texts(&["dave@example.com"]));
    for (name, value) in recurrence {
        fields.insert((*name).to_owned(), value.clone());
    }
    fields
}

/// One recurrence per pattern, covering the three ranges.
fn recurrences() -> Vec<Vec<(&'static str, Value)>> {
    use calendar::recurrence as r;
    let int = Value::Integer;
    vec![
        vec![
            (r::PATTERN, text("Daily")),
            (r::INTERVAL, int(2)),
            (r::START_DATE, text("2026-03-02")),
        ],
        vec![
            (r::PATTERN, text("Weekly")),
            (r::INTERVAL, int(1)),
            (r::DAYS_OF_WEEK, texts(&["Monday", "Thursday"])),
            (r::FIRST_DAY_OF_WEEK, text("Monday")),
            (r::START_DATE, text("2026-03-02")),
            (r::END_DATE, text("2026-06-29")),
        ],
        vec![
            (r::PATTERN, text("AbsoluteMonthly")),
            (r::INTERVAL, int(1)),
            (r::DAY_OF_MONTH, int(15)),
            (r::START_DATE, text("2026-03-15")),
            (r::NUMBER_OF_OCCURRENCES, int(12)),
        ],
        vec![
            (r::PATTERN, text("RelativeMonthly")),
            (r::INTERVAL, int(3)),
            (r::DAYS_OF_WEEK, texts(&["Tuesday"])),
            (r::DAY_OF_WEEK_INDEX, text("Last")),
            (r::START_DATE, text("2026-03-31")),
            (r::NUMBER_OF_OCCURRENCES, int(4)),
        ],
        vec![
            (r::PATTERN, text("AbsoluteYearly")),
            (r::DAY_OF_MONTH, int(2)),
            (r::MONTH, text("March")),
            (r::START_DATE, text("2026-03-02")),
        ],
        vec![
            (r::PATTERN, text("RelativeYearly")),
            (r::DAYS_OF_WEEK, texts(&["Weekday"])),
            (r::DAY_OF_WEEK_INDEX, text("First")),
            (r::MONTH, text("September")),
            (r::START_DATE, text("2026-09-01")),
            (r::END_DATE, text("2030-09-30")),
        ],
        vec![],
    ]
}

fn full_task_fields(n: usize) -> Fields {
    let mut fields = Fields::new();
    fields.insert("Subject".into(), text(&format!("Send quote {n}")));
    fields.insert("Sensitivity".into(), text("Normal"));
    fields.insert("Body".into(), text("Prices for Q2"));
    fields.insert("Categories".into(), texts(&["To Do"]));
    fields.insert("Importance".into(), text("Low"));
    fields.insert("StartDate".into(), at(2026, 3, 1, 8, 0));
    fields.insert("DueDate".into(), at(2026, 3, 5, 17, 0));
    fields.insert("CompleteDate".into(), at(2026, 3, 4, 12, 15));
    fields.insert("Status".into(), text("Completed"));
    fields.insert("PercentComplete".into(), Value::Number(100.0));
    fields
}

/// Every change of one folder, paging with `max` changes per call.
async fn sync_folder(client: &EwsClient, folder: Folder, max: u16) -> (Vec<SyncChange>, usize) {
    let mut state: Option<String> = None;
    let mut changes = Vec::new();
    let mut calls = 0;
    loop {
        let batch = client
            .sync_folder_items(MAILBOX, folder, state.as_deref(), max)
            .await
            .unwrap();
        calls += 1;
        assert!(batch.changes.len() <= usize::from(max));
        changes.extend(batch.changes);
        state = Some(batch.sync_state);
        if batch.includes_last_item {
            return (changes, calls);
        }
    }
}

fn created_ids(changes: &[SyncChange]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            SyncChange::Created(id) => Some(id.id.clone()),
            _ => None,
        })
        .collect()
}

/// Calendar items (every recurrence pattern and range, attendees, organizer, UID, all-day)
/// and tasks (start, due and complete dates, status, percent complete, importance) round-trip
/// through the emulator, updates change and clear them, and every message of the session
/// validates against the EWS schemas.
#[tokio::test]
async fn ews_connector_calendar_and_tasks_round_trip_schema_valid() {
    use calendar::recurrence as r;
    let spec = spec_dir();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let h = start(EwsSimConfig {
        capture_dir: Some(capture.clone()),
        ..Default::default()
    })
    .await;
    let c = &h.client;

    let events: Vec<(Fields, String)> = recurrences()
        .iter()
        .enumerate()
        .map(|(n, rec)| (full_calendar_fields(n, rec), format!("cal-{n}")))
        .collect();
    let ids = c
        .create_items_once(MAILBOX, Folder::Calendar, &events)
        .await
        .unwrap();
    assert_eq!(ids.len(), events.len());
    let (changes, _) = sync_folder(c, Folder::Calendar, 3).await;
    let mut seen = created_ids(&changes);
    seen.sort();
    let mut expected: Vec<String> = ids.iter().map(|i| i.id.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected);

    let read = c
        .get_items(MAILBOX, Folder::Calendar, &expected)
        .await
        .unwrap();
    assert_eq!(read.len(), events.len());
    for item in &read {
        let sync_id = item.sync_id.clone().unwrap();
        let (sent, _) = events.iter().find(|(_, s)| *s == sync_id).unwrap();
        let mut wanted = sent.clone();
        wanted.insert("Organizer".into(), text(MAILBOX));
        assert_eq!(item.fields, wanted, "{sync_id}");
    }

    // Change the recurrence, an all-day flag and the attendees; clear the optional ones.
    let weekly = ids[1].clone();
    let mut edit = Fields::new();
    edit.insert("IsAllDayEvent".into(), Value::Boolean(true));
    edit.insert("Start".into(), at(2026, 3, 3, 0, 0));
    edit.insert("End".into(), at(2026, 3, 4, 0, 0));
    edit.insert("RequiredAttendees".into(), texts(&["erin@example.com"]));
    edit.insert("OptionalAttendees".into(), Value::Null);
    edit.insert(r::PATTERN.into(), text("Daily"));
    edit.insert(r::INTERVAL.into(), Value::Integer(1));
    edit.insert(r::DAYS_OF_WEEK.into(), Value::Null);
    edit.insert(r::FIRST_DAY_OF_WEEK.into(), Value::Null);
    edit.insert(r::START_DATE.into(), text("2026-03-03"));
    edit.insert(r::END_DATE.into(), Value::Null);
    edit.insert(r::NUMBER_OF_OCCURRENCES.into(), Value::Integer(5));
    let UpdateOutcome::Updated(weekly_now) = c
        .update_item(MAILBOX, Folder::Calendar, &weekly, &edit)
        .await
        .unwrap()
    else {
        panic!("update failed");
    };
    let after = &c
        .get_items(MAILBOX, Folder::Calendar, std::slice::from_ref(&weekly.id))
        .await
        .unwrap()[0];
    let mut wanted = events[1].0.clone();
    wanted.insert("Organizer".into(), text(MAILBOX));
    for (name, value) in &edit {
        if value.is_blank() {
            wanted.remove(name);
        } else {
            wanted.insert(name.to_owned(), value.clone());
        }
    }
    assert_eq!(after.fields, wanted);

    // All recurrence fields blank: the item stops recurring.
    let clear: Fields = [
        r::PATTERN,
        r::INTERVAL,
        r::START_DATE,
        r::NUMBER_OF_OCCURRENCES,
    ]
    .iter()
    .map(|name| ((*name).to_owned(), Value::Null))
    .collect();
    assert!(matches!(
        c.update_item(MAILBOX, Folder::Calendar, &weekly_now, &clear)
            .await
            .unwrap(),
        UpdateOutcome::Updated(_)
    ));
    let after = &c
        .get_items(MAILBOX, Folder::Calendar, std::slice::from_ref(&weekly.id))
        .await
        .unwrap()[0];
    assert!(
        after.fields.keys().all(|k| !k.starts_with(r::PREFIX)),
        "{:?}",
        after.fields
    );

    // Bad input is refused before anything is sent.
    let before = h.sim.stats().requests.values().sum::<u64>();
    let bad: Vec<(&str, Fields)> = vec![
        ("Organizer", {
            let mut f = full_calendar_fields(9, &[]);
            f.insert("Organizer".into(), text("boss@example.com"));
            f
        }),
        (
            r::START_DATE,
            full_calendar_fields(
                9,
                &[
                    (r::PATTERN, text("Daily")),
                    (r::INTERVAL, Value::Integer(1)),
                ],
            ),
        ),
        (
            r::DAY_OF_MONTH,
            full_calendar_fields(
                9,
                &[
                    (r::PATTERN, text("Daily")),
                    (r::INTERVAL, Value::Integer(1)),
                    (r::DAY_OF_MONTH, Value::Integer(3)),
                    (r::START_DATE, text("2026-01-01")),
                ],
            ),
        ),
        (
            r::DAYS_OF_WEEK,
            full_calendar_fields(
                9,
                &[
                    (r::PATTERN, text("RelativeMonthly")),
                    (r::INTERVAL, Value::Integer(1)),
                    (r::DAYS_OF_WEEK, texts(&["Monday", "Friday"])),
                    (r::DAY_OF_WEEK_INDEX, text("First")),
                    (r::START_DATE, text("2026-01-01")),
                ],
            ),
        ),
        (
            r::END_DATE,
            full_calendar_fields(
                9,
                &[
                    (r::PATTERN, text("Daily")),
                    (r::INTERVAL, Value::Integer(1)),
                    (r::START_DATE, text("2026-01-01")),
                    (r::END_DATE, text("2026-02-01")),
                    (r::NUMBER_OF_OCCURRENCES, Value::Integer(3)),
                ],
            ),
        ),
        (
            "RequiredAttendees",
            full_calendar_fields(9, &[("RequiredAttendees", texts(&["not an address"]))]),
        ),
    ];
    for (field, fields) in bad {
        let error = c
            .create_items_once(MAILBOX, Folder::Calendar, &[(fields, "bad".into())])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, EwsError::InvalidValue { field: f, .. } if f == field),
            "{field}: {error}"
        );
    }
    let unknown = full_calendar_fields(9, &[("Recurrence.Weekdays", text("Monday"))]);
    assert!(matches!(
        c.create_items(MAILBOX, Folder::Calendar, &[(unknown, "bad".into())]).await,
        Err(EwsError::UnknownField(name)) if name == "Recurrence.Weekdays"
    ));
    assert_eq!(
        h.sim.stats().requests.values().sum::<u64>(),
        before,
        "nothing sent"
    );

    // Tasks.
    let tasks: Vec<(Fields, String)> = (0..3)
        .map(|n| (full_task_fields(n), format!("task-{n}")))
        .collect();
    let task_ids = c
        .create_items_once(MAILBOX, Folder::Tasks, &tasks)
        .await
        .unwrap();
    let (changes, _) = sync_folder(c, Folder::Tasks, 2).await;
    assert_eq!(created_ids(&changes).len(), 3);
    let read = c
        .get_items(MAILBOX, Folder::Tasks, &[task_ids[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(read[0].fields, tasks[0].0);
    let mut reopen = Fields::new();
    reopen.insert("Status".into(), text("InProgress"));
    reopen.insert("PercentComplete".into(), Value::Number(25.0));
    reopen.insert("CompleteDate".into(), Value::Null);
    reopen.insert("DueDate".into(), at(2026, 3, 9, 17, 0));
    reopen.insert("Importance".into(), text("High"));
    assert!(matches!(
        c.update_item(MAILBOX, Folder::Tasks, &task_ids[0], &reopen)
            .await
            .unwrap(),
        UpdateOutcome::Updated(_)
    ));
    let read = c
        .get_items(MAILBOX, Folder::Tasks, &[task_ids[0].id.clone()])
        .await
        .unwrap();
    let mut wanted = tasks[0].0.clone();
    wanted.remove("CompleteDate");
    wanted.extend(reopen.into_iter().filter(|(_, v)| !v.is_blank()));
    assert_eq!(read[0].fields, wanted);
    c.delete_items(MAILBOX, Folder::Tasks, &[task_ids[1].id.clone()])
        .await
        .unwrap();
    c.delete_items(MAILBOX, Folder::Calendar, &[ids[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(h.sim.item_count(MAILBOX, "tasks"), 2);
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), events.len() - 1);

    if schema_tools_available(&spec) {
        let checked = validate_captured(&spec, &capture);
        assert!(checked >= 20, "only {checked} files were captured");
    }
}

/// Paging through 2,000 items of one folder: SyncFolderItems in pages of 300, then GetItem in
/// batches of 50; every item exactly once, nothing missed.
#[tokio::test]
async fn ews_connector_pages_through_2000_items_in_one_folder() {
    let h = start(EwsSimConfig::default()).await;
    let mut names = std::collections::HashMap::new();
    for n in 0..2000 {
        let name = format!("Person {n:04}");
        let id = h
            .sim
            .create_contact(
                MAILBOX,
                &[("GivenName", &name), ("TandemSyncId", &format!("s-{n}"))],
            )
            .unwrap();
        names.insert(id, name);
    }
    let (changes, calls) = sync_folder(&h.client, Folder::Contacts, 300).await;
    assert_eq!(calls, 7, "2,000 changes in pages of 300");
    let ids = created_ids(&changes);
    assert_eq!(ids.len(), 2000);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 2000, "no change repeated");

    let items = h
        .client
        .get_items(MAILBOX, Folder::Contacts, &ids)
        .await
        .unwrap();
    assert_eq!(items.len(), 2000);
    for item in &items {
        assert_eq!(
            item.fields.get("GivenName"),
            Some(&text(&names[&item.id.id]))
        );
    }
    let sync_ids: std::collections::HashSet<String> =
        items.iter().filter_map(|i| i.sync_id.clone()).collect();
    assert_eq!(sync_ids.len(), 2000);
    let stats = h.sim.stats().requests;
    assert_eq!(stats.get("SyncFolderItems"), Some(&7));
    assert_eq!(stats.get("GetItem"), Some(&40), "batches of {BATCH_SIZE}");
}

/// One folder's upload: the folder, its emulator name, and the items with their sync ids.
type Upload = (Folder, &'static str, Vec<(Fields, String)>);

/// A connector run under 20 % injected faults (ErrorServerBusy with BackOffMilliseconds,
/// HTTP 503, dropped connections after the work was done, slow replies): uploads to all three
/// folders and a full sync of each end with every item present exactly once.
#[tokio::test]
async fn ews_connector_run_under_20_percent_faults_converges_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let h = start(EwsSimConfig {
        capture_dir: Some(capture.clone()),
        seed: 5,
        ..Default::default()
    })
    .await;
    let client = h.client.clone().with_retry(10, Duration::from_millis(5));
    h.sim.set_faults(FaultSettings {
        rate: 0.2,
        kinds: vec![
            "server-busy".into(),
            "http503".into(),
            "drop".into(),
            "slow".into(),
        ],
    });
    let uploads: Vec<Upload> = vec![
        (
            Folder::Contacts,
            "contacts",
            (0..250)
                .map(|n| {
                    let fields: Fields = [("GivenName".to_owned(), text(&format!("F{n}")))]
                        .into_iter()
                        .collect();
                    (fields, format!("contact-{n}"))
                })
                .collect(),
        ),
        (
            Folder::Calendar,
            "calendar",
            (0..120)
                .map(|n| {
                    let rec = &recurrences()[n % 7];
                    (full_calendar_fields(n, rec), format!("event-{n}"))
                })
                .collect(),
        ),
        (
            Folder::Tasks,
            "tasks",
            (0..120)
                .map(|n| (full_task_fields(n), format!("task-{n}")))
                .collect(),
        ),
    ];
    for (folder, name, items) in &uploads {
        // Small batches, so that many CreateItem requests meet a fault.
        for chunk in items.chunks(10) {
            let ids = client
                .create_items_once(MAILBOX, *folder, chunk)
                .await
                .unwrap();
            assert_eq!(ids.len(), chunk.len());
        }
        let (changes, _) = {
            let mut state: Option<String> = None;
            let mut changes = Vec::new();
            loop {
                let batch = client
                    .sync_folder_items(MAILBOX, *folder, state.as_deref(), 40)
                    .await
                    .unwrap();
                changes.extend(batch.changes);
                state = Some(batch.sync_state);
                if batch.includes_last_item {
                    break (changes, state);
                }
            }
        };
        let ids = created_ids(&changes);
        let read = client.get_items(MAILBOX, *folder, &ids).await.unwrap();
        let mut read_sync_ids: Vec<String> =
            read.iter().filter_map(|i| i.sync_id.clone()).collect();
        read_sync_ids.sort();
        let mut expected: Vec<String> = items.iter().map(|(_, s)| s.clone()).collect();
        expected.sort();
        assert_eq!(
            read_sync_ids, expected,
            "{name}: each item synced exactly once"
        );
        assert_eq!(
            h.sim.item_count(MAILBOX, name),
            items.len(),
            "{name}: no duplicates"
        );
    }
    h.sim.set_faults(FaultSettings::default());
    for (folder, name, items) in &uploads {
        let by_sync_id = h.client.sync_ids_in_folder(MAILBOX, *folder).await.unwrap();
        assert_eq!(by_sync_id.len(), items.len(), "{name}");
        assert!(
            by_sync_id.values().all(|ids| ids.len() == 1),
            "{name}: a sync id twice"
        );
    }
    // The faults really happened, of every kind.
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut dropped_creates = 0;
    for entry in std::fs::read_dir(&capture).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().contains("-response") {
            continue;
        }
        let body = std::fs::read_to_string(&path).unwrap();
        if path.to_string_lossy().contains("-CreateItem-") && body.contains("connection dropped") {
            dropped_creates += 1;
        }
        for (kind, marker) in [
            ("busy", "ErrorServerBusy"),
            ("503", "Service Unavailable"),
            ("drop", "connection dropped"),
        ] {
            if body.contains(marker) {
                *kinds.entry(kind).or_default() += 1;
            }
        }
    }
    assert!(
        kinds.len() == 3 && kinds.values().sum::<usize>() >= 8,
        "{kinds:?}"
    );
    assert!(
        dropped_creates >= 1,
        "no CreateItem lost its reply, so the no-duplicate path was not exercised"
    );
    let spec = spec_dir();
    if schema_tools_available(&spec) {
        validate_captured(&spec, &capture);
    }
}

/// UpdateItem is batched like GetItem: 120 changes in three requests, each change with its own
/// outcome (a stale ChangeKey is that item's conflict, a vanished item its `NotFound`), and
/// the rest written.
#[tokio::test]
async fn ews_connector_batches_updates_with_one_outcome_per_item() {
    let h = start(EwsSimConfig::default()).await;
    for n in 0..120 {
        h.sim
            .create_contact(MAILBOX, &[("GivenName", &format!("P{n}")), ("JobTitle", "old")])
            .unwrap();
    }
    let (changes, _) = sync_folder(&h.client, Folder::Contacts, 512).await;
    let ids = created_ids(&changes);
    let mut items = h.client.get_items(MAILBOX, Folder::Contacts, &ids).await.unwrap();
    items.sort_by(|a, b| a.id.id.cmp(&b.id.id));
    let mut batch: Vec<(ItemId, Fields)> = items
        .iter()
        .map(|item| {
            let mut fields = Fields::new();
            fields.insert("JobTitle".into(), text("new"));
            (item.id.clone(), fields)
        })
        .collect();
    // Item 0 changes under us (stale ChangeKey); item 1 is deleted first.
    let mut moved = Fields::new();
    moved.insert("JobTitle".into(), text("someone else's"));
    h.client.update_item(MAILBOX, Folder::Contacts, &batch[0].0, &moved).await.unwrap();
    h.client.delete_items(MAILBOX, Folder::Contacts, &[batch[1].0.id.clone()]).await.unwrap();
    batch[1].1.insert("JobTitle".into(), text("into the void"));

    let before = h.sim.stats().requests.get("UpdateItem").copied().unwrap_or(0);
    let outcomes = h.client.update_items(MAILBOX, Folder::Contacts, &batch).await.unwrap();
    let requests = h.sim.stats().requests.get("UpdateItem").copied().unwrap_or(0) - before;
    assert_eq!(requests, 3, "120 changes in batches of {BATCH_SIZE}");
    assert_eq!(outcomes.len(), 120);
    assert_eq!(outcomes[0], UpdateOutcome::Conflict);
    assert_eq!(outcomes[1], UpdateOutcome::NotFound);
    let written: Vec<String> = outcomes[2..]
        .iter()
        .map(|o| match o {
            UpdateOutcome::Updated(id) => id.id.clone(),
            other => panic!("expected an update, got {other:?}"),
        })
        .collect();
    let reread = h.client.get_items(MAILBOX, Folder::Contacts, &written).await.unwrap();
    assert_eq!(reread.len(), 118);
    assert!(reread.iter().all(|item| item.fields.get("JobTitle") == Some(&text("new"))));
    let kept = h.client.get_items(MAILBOX, Folder::Contacts, &[batch[0].0.id.clone()]).await.unwrap();
    assert_eq!(kept[0].fields.get("JobTitle"), Some(&text("someone else's")), "a conflict writes nothing");
}
