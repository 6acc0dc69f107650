//! EWS emulator conformance: SyncFolderHierarchy, FindItem with CalendarView,
//! RequestServerVersion, the three ConflictResolution values, every DeleteType with the
//! calendar and task DeleteItem attributes. Hand-written SOAP over loopback HTTP; every request
//! and reply of the session is validated with `shared/spec/ews/validate/validate.sh` (only the
//! replies of the deliberately schema-invalid requests, which run against a second emulator).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use tandem_sim::RunningServer;
use tandem_sim::ews::wire::{Element, parse_document};
use tandem_sim::ews::{EwsSim, EwsSimConfig};

const MAILBOX: &str = "alice@example.com";

struct Emulator {
    sim: EwsSim,
    server: RunningServer,
    http: reqwest::Client,
}

async fn start(capture: &Path) -> Emulator {
    let sim = EwsSim::new(EwsSimConfig {
        capture_dir: Some(capture.to_owned()),
        ..Default::default()
    })
    .unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    Emulator {
        sim,
        server,
        http: reqwest::Client::new(),
    }
}

/// The reply: HTTP status, the `ServerVersionInfo` Version, and the Body's first child.
struct Reply {
    status: u16,
    version: String,
    body: Element,
}

impl Reply {
    /// The first response message.
    fn message(&self) -> &Element {
        self.body
            .child("ResponseMessages")
            .and_then(|m| m.children.first())
            .unwrap_or_else(|| panic!("no response message: {:?}", self.body))
    }

    fn code(&self) -> &str {
        self.message().child_text("ResponseCode").unwrap()
    }

    fn fault_code(&self) -> &str {
        assert_eq!(self.body.name, "Fault", "{:?}", self.body);
        self.body
            .path(&["detail", "ResponseCode"])
            .map(|c| c.text.as_str())
            .unwrap()
    }
}

impl Emulator {
    async fn call_versioned(&self, version: &str, body: &str) -> Reply {
        let envelope = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><soap:Header><t:RequestServerVersion Version="{version}"/><t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{MAILBOX}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation></soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"#
        );
        let reply = self
            .http
            .post(format!("{}/EWS/Exchange.asmx", self.server.base_url()))
            .basic_auth("svc-tandem", Some("ews-sim"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("X-AnchorMailbox", MAILBOX)
            .body(envelope)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap();
        let doc = parse_document(&text).unwrap_or_else(|e| panic!("not XML ({e}): {text}"));
        let version = doc
            .path(&["Header", "ServerVersionInfo"])
            .and_then(|v| v.attr("Version"))
            .unwrap_or_else(|| panic!("no ServerVersionInfo: {text}"))
            .to_owned();
        let body = doc
            .child("Body")
            .and_then(|b| b.children.first())
            .cloned()
            .unwrap();
        Reply {
            status,
            version,
            body,
        }
    }

    async fn call(&self, body: &str) -> Reply {
        self.call_versioned("Exchange2013_SP1", body).await
    }

    /// Creates one item over HTTP; returns `(Id, ChangeKey)`.
    async fn create(&self, folder: &str, item: &str) -> (String, String) {
        let invitations = if folder == "calendar" {
            r#" SendMeetingInvitations="SendToNone""#
        } else {
            ""
        };
        let reply = self
            .call(&format!(
                r#"<m:CreateItem{invitations}><m:SavedItemFolderId><t:DistinguishedFolderId Id="{folder}"/></m:SavedItemFolderId><m:Items>{item}</m:Items></m:CreateItem>"#
            ))
            .await;
        assert_eq!(reply.code(), "NoError", "{:?}", reply.body);
        let id = reply
            .message()
            .child("Items")
            .and_then(|i| i.children.first())
            .and_then(|i| i.child("ItemId"))
            .unwrap();
        (
            id.attr("Id").unwrap().to_owned(),
            id.attr("ChangeKey").unwrap().to_owned(),
        )
    }

    /// The item ids a SyncFolderItems from `state` reports as deleted, and the new state.
    async fn sync(&self, folder: &str, state: Option<&str>) -> (Vec<(String, String)>, String) {
        let state = state
            .map(|s| format!("<m:SyncState>{s}</m:SyncState>"))
            .unwrap_or_default();
        let reply = self
            .call(&format!(
                r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="{folder}"/></m:SyncFolderId>{state}<m:MaxChangesReturned>512</m:MaxChangesReturned></m:SyncFolderItems>"#
            ))
            .await;
        let message = reply.message();
        let changes = message
            .child("Changes")
            .unwrap()
            .children
            .iter()
            .map(|change| {
                let id = change
                    .child("ItemId")
                    .or_else(|| change.children.first().and_then(|i| i.child("ItemId")))
                    .unwrap();
                (change.name.clone(), id.attr("Id").unwrap().to_owned())
            })
            .collect();
        (changes, message.child_text("SyncState").unwrap().to_owned())
    }
}

/// Validates the captured files whose names contain `which` (all when empty).
fn validate(capture: &Path, which: &str) {
    tandem_sim::ews::schema_check::assert_captured_valid(capture, which, 1);
}

const CONTACT: &str = "<t:Contact><t:Sensitivity>Private</t:Sensitivity><t:GivenName>Ann</t:GivenName><t:JobTitle>CFO</t:JobTitle></t:Contact>";
const TASK: &str = "<t:Task><t:Subject>Call</t:Subject><t:DueDate>2026-03-05T17:00:00Z</t:DueDate><t:Status>NotStarted</t:Status></t:Task>";

fn event(subject: &str, start: &str, end: &str) -> String {
    format!(
        "<t:CalendarItem><t:Subject>{subject}</t:Subject><t:Start>{start}</t:Start><t:End>{end}</t:End></t:CalendarItem>"
    )
}

#[tokio::test]
async fn ews_conformance_hierarchy_calendar_view_versions_conflicts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let e = start(&capture).await;

    // --- RequestServerVersion: echoed, and newer elements refused for older versions.
    for version in ["Exchange2010_SP2", "Exchange2016", "V2016_10_10"] {
        let reply = e
            .call_versioned(
                version,
                r#"<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>"#,
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.version, version);
    }
    let zoned = "<t:CalendarItem><t:Subject>Zoned</t:Subject><t:Start>2026-04-01T09:00:00Z</t:Start><t:End>2026-04-01T10:00:00Z</t:End><t:StartTimeZone Id=\"W. Europe Standard Time\"/></t:CalendarItem>";
    let create_zoned = format!(
        r#"<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items>{zoned}</m:Items></m:CreateItem>"#
    );
    let old = e.call_versioned("Exchange2007_SP1", &create_zoned).await;
    assert_eq!(old.status, 500);
    assert_eq!(old.fault_code(), "ErrorSchemaValidation");
    assert_eq!(old.version, "Exchange2007_SP1");
    assert_eq!(e.sim.item_count(MAILBOX, "calendar"), 0);
    let new = e.call_versioned("Exchange2010", &create_zoned).await;
    assert_eq!(new.code(), "NoError");

    // --- SyncFolderHierarchy.
    let hierarchy = |state: &str, folder: &str| {
        format!(
            r#"<m:SyncFolderHierarchy><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape>{folder}{state}</m:SyncFolderHierarchy>"#
        )
    };
    let first = e.call(&hierarchy("", "")).await;
    assert_eq!(first.code(), "NoError");
    let message = first.message();
    assert_eq!(
        message.child_text("IncludesLastFolderInRange"),
        Some("true")
    );
    let created: Vec<(&str, &str)> = message
        .child("Changes")
        .unwrap()
        .children
        .iter()
        .map(|c| {
            let folder = c.children.first().unwrap();
            (c.name.as_str(), folder.child_text("DisplayName").unwrap())
        })
        .collect();
    assert_eq!(
        created,
        [
            ("Create", "Contacts"),
            ("Create", "Calendar"),
            ("Create", "Tasks")
        ]
    );
    let state = message.child_text("SyncState").unwrap().to_owned();
    let again = e
        .call(&hierarchy(
            &format!("<m:SyncState>{state}</m:SyncState>"),
            "",
        ))
        .await;
    assert_eq!(again.code(), "NoError");
    assert!(
        again
            .message()
            .child("Changes")
            .unwrap()
            .children
            .is_empty()
    );
    let (_, items_state) = e.sync("contacts", None).await;
    for bad in ["bm90IGEgc3RhdGU=", items_state.as_str()] {
        let reply = e
            .call(&hierarchy(&format!("<m:SyncState>{bad}</m:SyncState>"), ""))
            .await;
        assert_eq!(reply.code(), "ErrorInvalidSyncStateData");
        assert_eq!(reply.message().child_text("SyncState"), Some(""));
    }
    let below = e
        .call(&hierarchy(
            "",
            r#"<m:SyncFolderId><t:DistinguishedFolderId Id="contacts"/></m:SyncFolderId>"#,
        ))
        .await;
    assert_eq!(below.code(), "NoError");
    assert!(
        below
            .message()
            .child("Changes")
            .unwrap()
            .children
            .is_empty()
    );

    // --- FindItem with a CalendarView.
    for (subject, start, end) in [
        ("Before", "2026-05-01T08:00:00Z", "2026-05-01T09:00:00Z"),
        ("Late", "2026-05-12T15:00:00Z", "2026-05-12T16:00:00Z"),
        ("Early", "2026-05-10T08:00:00Z", "2026-05-10T09:00:00Z"),
        ("Spanning", "2026-05-09T22:00:00Z", "2026-05-10T02:00:00Z"),
        ("After", "2026-06-01T08:00:00Z", "2026-06-01T09:00:00Z"),
    ] {
        e.create("calendar", &event(subject, start, end)).await;
    }
    let view = |max: &str, from: &str, to: &str, folder: &str| {
        format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape><m:CalendarView{max} StartDate="{from}" EndDate="{to}"/><m:ParentFolderIds><t:DistinguishedFolderId Id="{folder}"/></m:ParentFolderIds></m:FindItem>"#
        )
    };
    let subjects = |reply: &Reply| -> Vec<String> {
        reply
            .message()
            .path(&["RootFolder", "Items"])
            .unwrap()
            .children
            .iter()
            .map(|i| i.child_text("Subject").unwrap().to_owned())
            .collect()
    };
    let all = e
        .call(&view(
            "",
            "2026-05-10T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "calendar",
        ))
        .await;
    assert_eq!(all.code(), "NoError");
    assert_eq!(subjects(&all), ["Spanning", "Early", "Late"]);
    let root = all.message().child("RootFolder").unwrap();
    assert_eq!(root.attr("TotalItemsInView"), Some("3"));
    assert_eq!(root.attr("IncludesLastItemInRange"), Some("true"));
    let two = e
        .call(&view(
            r#" MaxEntriesReturned="2""#,
            "2026-05-10T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "calendar",
        ))
        .await;
    assert_eq!(subjects(&two), ["Spanning", "Early"]);
    let root = two.message().child("RootFolder").unwrap();
    assert_eq!(root.attr("IncludesLastItemInRange"), Some("false"));
    assert_eq!(root.attr("TotalItemsInView"), Some("3"));
    for (from, to, folder, code) in [
        (
            "2026-01-01T00:00:00Z",
            "2028-06-01T00:00:00Z",
            "calendar",
            "ErrorCalendarViewRangeTooBig",
        ),
        (
            "2026-06-01T00:00:00Z",
            "2026-05-01T00:00:00Z",
            "calendar",
            "ErrorCalendarEndDateIsEarlierThanStartDate",
        ),
        (
            "2026-05-01T00:00:00Z",
            "2026-06-01T00:00:00Z",
            "contacts",
            "ErrorCalendarFolderIsInvalidForCalendarView",
        ),
    ] {
        let reply = e.call(&view("", from, to, folder)).await;
        assert_eq!(reply.code(), code);
    }

    // The organizer is the mailbox owner and read-only.
    let (event_id, event_key) = e
        .create(
            "calendar",
            &event("Organized", "2026-08-03T09:00:00Z", "2026-08-03T10:00:00Z"),
        )
        .await;
    let reply = e
        .call(&format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{event_id}"/></m:ItemIds></m:GetItem>"#
        ))
        .await;
    assert_eq!(
        reply
            .message()
            .path(&[
                "Items",
                "CalendarItem",
                "Organizer",
                "Mailbox",
                "EmailAddress"
            ])
            .map(|a| a.text.as_str()),
        Some(MAILBOX)
    );
    let reply = e
        .call(&format!(
            r#"<m:UpdateItem ConflictResolution="NeverOverwrite" SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange><t:ItemId Id="{event_id}" ChangeKey="{event_key}"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="calendar:Organizer"/><t:CalendarItem><t:Organizer><t:Mailbox><t:EmailAddress>boss@example.com</t:EmailAddress></t:Mailbox></t:Organizer></t:CalendarItem></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        ))
        .await;
    assert_eq!(reply.code(), "ErrorInvalidPropertySet");
    let reply = e
        .call(&format!(
            r#"<m:UpdateItem ConflictResolution="NeverOverwrite"><m:ItemChanges><t:ItemChange><t:ItemId Id="{event_id}" ChangeKey="{event_key}"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="calendar:Location"/><t:CalendarItem><t:Location>Room 9</t:Location></t:CalendarItem></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        ))
        .await;
    assert_eq!(
        reply.code(),
        "ErrorSendMeetingInvitationsOrCancellationsRequired"
    );

    // --- ConflictResolution.
    let (id, key1) = e.create("contacts", CONTACT).await;
    let update = |resolution: &str, key: Option<&str>, sensitivity: &str, title: &str| {
        let key = key
            .map(|k| format!(r#" ChangeKey="{k}""#))
            .unwrap_or_default();
        format!(
            r#"<m:UpdateItem ConflictResolution="{resolution}"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}"{key}/><t:Updates><t:SetItemField><t:FieldURI FieldURI="item:Sensitivity"/><t:Contact><t:Sensitivity>{sensitivity}</t:Sensitivity></t:Contact></t:SetItemField><t:SetItemField><t:FieldURI FieldURI="contacts:JobTitle"/><t:Contact><t:JobTitle>{title}</t:JobTitle></t:Contact></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        )
    };
    let fresh = e
        .call(&update("NeverOverwrite", Some(&key1), "Private", "CEO"))
        .await;
    assert_eq!(fresh.code(), "NoError");
    let stale = key1.as_str();
    let never = e
        .call(&update("NeverOverwrite", Some(stale), "Normal", "COO"))
        .await;
    assert_eq!(never.code(), "ErrorIrresolvableConflict");
    assert_eq!(
        e.sim.contact_fields(MAILBOX, &id).unwrap()["JobTitle"],
        "CEO"
    );
    let auto = e
        .call(&update("AutoResolve", Some(stale), "Normal", "COO"))
        .await;
    assert_eq!(auto.code(), "NoError");
    assert_eq!(
        auto.message()
            .path(&["ConflictResults", "Count"])
            .map(|c| c.text.as_str()),
        Some("1")
    );
    let fields = e.sim.contact_fields(MAILBOX, &id).unwrap();
    assert_eq!(fields["JobTitle"], "COO");
    assert_eq!(
        fields["Sensitivity"], "Private",
        "the more private server value wins"
    );
    let always = e
        .call(&update("AlwaysOverwrite", Some(stale), "Normal", "CTO"))
        .await;
    assert_eq!(always.code(), "NoError");
    assert_eq!(
        always
            .message()
            .path(&["ConflictResults", "Count"])
            .map(|c| c.text.as_str()),
        Some("0")
    );
    let fields = e.sim.contact_fields(MAILBOX, &id).unwrap();
    assert_eq!(
        (fields["JobTitle"].as_str(), fields["Sensitivity"].as_str()),
        ("CTO", "Normal")
    );
    for resolution in ["NeverOverwrite", "AutoResolve", "AlwaysOverwrite"] {
        let reply = e.call(&update(resolution, None, "Normal", "X")).await;
        assert_eq!(
            reply.code(),
            "ErrorChangeKeyRequiredForWriteOperations",
            "{resolution}"
        );
    }

    // --- DeleteItem: every DeleteType in every folder; the calendar and task attributes.
    for folder in ["contacts", "calendar", "tasks"] {
        let (_, state) = e.sync(folder, None).await;
        for delete_type in ["HardDelete", "SoftDelete", "MoveToDeletedItems"] {
            let item = match folder {
                "contacts" => CONTACT.to_owned(),
                "calendar" => event("Gone", "2026-07-01T08:00:00Z", "2026-07-01T09:00:00Z"),
                _ => TASK.to_owned(),
            };
            let (id, _) = e.create(folder, &item).await;
            let delete = |attrs: &str| {
                format!(
                    r#"<m:DeleteItem DeleteType="{delete_type}"{attrs}><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:DeleteItem>"#
                )
            };
            let required = match folder {
                "calendar" => Some((
                    r#" SendMeetingCancellations="SendToNone""#,
                    "ErrorSendMeetingCancellationsRequired",
                )),
                "tasks" => Some((
                    r#" AffectedTaskOccurrences="AllOccurrences""#,
                    "ErrorAffectedTaskOccurrencesRequired",
                )),
                _ => None,
            };
            let attrs = match required {
                Some((attrs, code)) => {
                    let before = e.sim.item_count(MAILBOX, folder);
                    let refused = e.call(&delete("")).await;
                    assert_eq!(refused.code(), code, "{folder} {delete_type}");
                    assert_eq!(e.sim.item_count(MAILBOX, folder), before, "nothing deleted");
                    attrs
                }
                None => "",
            };
            let before = e.sim.item_count(MAILBOX, folder);
            let reply = e.call(&delete(attrs)).await;
            assert_eq!(reply.code(), "NoError", "{folder} {delete_type}");
            assert_eq!(e.sim.item_count(MAILBOX, folder), before - 1);
        }
        // Items created and deleted since `state` leave no trace; delete an older one too.
        let (changes, _) = e.sync(folder, Some(&state)).await;
        assert!(changes.is_empty(), "{folder}: {changes:?}");
    }
    let (old_task, _) = e.create("tasks", TASK).await;
    let (_, state) = e.sync("tasks", None).await;
    let reply = e
        .call(&format!(
            r#"<m:DeleteItem DeleteType="MoveToDeletedItems" AffectedTaskOccurrences="SpecifiedOccurrenceOnly"><m:ItemIds><t:ItemId Id="{old_task}"/></m:ItemIds></m:DeleteItem>"#
        ))
        .await;
    assert_eq!(reply.code(), "NoError");
    let (changes, _) = e.sync("tasks", Some(&state)).await;
    assert_eq!(changes, [("Delete".to_owned(), old_task)]);

    validate(&capture, "");

    // --- Schema-invalid requests, against a second emulator: only the replies validate.
    let bad_capture = dir.path().join("bad");
    let bad = start(&bad_capture).await;
    let unknown = bad
        .call_versioned(
            "Exchange2099",
            r#"<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>"#,
        )
        .await;
    assert_eq!(unknown.status, 500);
    assert_eq!(unknown.fault_code(), "ErrorInvalidServerVersion");
    let (task, _) = bad.create("tasks", TASK).await;
    for attrs in [
        String::new(),
        r#" DeleteType="Shred" AffectedTaskOccurrences="AllOccurrences""#.to_owned(),
        r#" DeleteType="HardDelete" AffectedTaskOccurrences="Some""#.to_owned(),
    ] {
        let reply = bad
            .call(&format!(
                r#"<m:DeleteItem{attrs}><m:ItemIds><t:ItemId Id="{task}"/></m:ItemIds></m:DeleteItem>"#
            ))
            .await;
        assert_eq!(reply.status, 500, "{attrs}");
        assert_eq!(reply.fault_code(), "ErrorSchemaValidation", "{attrs}");
    }
    let reply = bad
        .call(&format!(
            r#"<m:UpdateItem ConflictResolution="Sometimes"><m:ItemChanges><t:ItemChange><t:ItemId Id="{task}" ChangeKey="x"/><t:Updates><t:DeleteItemField><t:FieldURI FieldURI="task:Status"/></t:DeleteItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        ))
        .await;
    assert_eq!(reply.fault_code(), "ErrorSchemaValidation");
    assert_eq!(bad.sim.item_count(MAILBOX, "tasks"), 1);
    validate(&bad_capture, "-response");
}
