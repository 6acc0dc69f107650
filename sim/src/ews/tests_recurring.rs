//! Recurring series over real HTTP: CalendarView expansion of every pattern and range,
//! occurrence ids (`t:ItemId`, `t:OccurrenceItemId`, `t:RecurringMasterItemId`), exceptions,
//! deleted occurrences, MaxEntriesReturned and the range limit. Every request and reply of
//! each test is validated against the shared schemas.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::tests::{Harness, MAILBOX, code, first_message, start};
use super::wire::Element;
use super::*;

/// An emulator capturing its traffic into `dir`.
async fn capturing(dir: &Path) -> Harness {
    start(EwsSimConfig {
        capture_dir: Some(dir.to_owned()),
        ..Default::default()
    })
    .await
}

/// Every captured request and reply must validate (the requests too, so the tests speak
/// EWS as a client would).
fn assert_traffic_valid(dir: &Path) {
    schema_check::assert_captured_valid(dir, "-request", 1);
    schema_check::assert_captured_valid(dir, "-response", 1);
}

fn view_request(from: &str, to: &str, max: Option<usize>) -> String {
    let max = max
        .map(|n| format!(r#" MaxEntriesReturned="{n}""#))
        .unwrap_or_default();
    format!(
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape><m:CalendarView{max} StartDate="{from}" EndDate="{to}"/><m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds></m:FindItem>"#
    )
}

/// One item of a CalendarView reply.
#[derive(Debug, Clone)]
struct Shown {
    id: String,
    change_key: String,
    subject: String,
    start: String,
    end: String,
    original_start: Option<String>,
    item_type: String,
}

fn shown(item: &Element) -> Shown {
    let text = |name: &str| item.child_text(name).unwrap_or_default().to_owned();
    let id = item.child("ItemId").unwrap();
    Shown {
        id: id.attr("Id").unwrap().to_owned(),
        change_key: id.attr("ChangeKey").unwrap().to_owned(),
        subject: text("Subject"),
        start: text("Start"),
        end: text("End"),
        original_start: item.child_text("OriginalStart").map(str::to_owned),
        item_type: text("CalendarItemType"),
    }
}

impl Harness {
    /// Creates a calendar item; returns `(Id, ChangeKey)`.
    async fn create_event(
        &self,
        subject: &str,
        start: &str,
        end: &str,
        recurrence: &str,
    ) -> (String, String) {
        let (status, reply) = self
            .call(&format!(
                r#"<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items><t:CalendarItem><t:Subject>{subject}</t:Subject><t:Start>{start}</t:Start><t:End>{end}</t:End>{recurrence}</t:CalendarItem></m:Items></m:CreateItem>"#
            ))
            .await;
        assert_eq!(status, 200);
        let message = first_message(&reply);
        assert_eq!(code(message), "NoError", "{message:?}");
        let id = message.path(&["Items", "CalendarItem", "ItemId"]).unwrap();
        (
            id.attr("Id").unwrap().to_owned(),
            id.attr("ChangeKey").unwrap().to_owned(),
        )
    }

    /// A CalendarView: the response message.
    async fn view(&self, from: &str, to: &str, max: Option<usize>) -> Element {
        let (status, reply) = self.call(&view_request(from, to, max)).await;
        assert_eq!(status, 200);
        first_message(&reply).clone()
    }

    /// The items a successful CalendarView shows.
    async fn view_items(&self, from: &str, to: &str) -> Vec<Shown> {
        let message = self.view(from, to, None).await;
        assert_eq!(code(&message), "NoError", "{message:?}");
        message
            .path(&["RootFolder", "Items"])
            .unwrap()
            .children
            .iter()
            .map(shown)
            .collect()
    }

    /// GetItem (AllProperties) of one id element; the response message.
    async fn get(&self, id_element: &str) -> Element {
        let (status, reply) = self
            .call(&format!(
                r#"<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape><m:ItemIds>{id_element}</m:ItemIds></m:GetItem>"#
            ))
            .await;
        assert_eq!(status, 200);
        first_message(&reply).clone()
    }

    /// UpdateItem (NeverOverwrite) of one item id element with `updates`; the message.
    async fn update(&self, id_element: &str, updates: &str) -> Element {
        let (status, reply) = self
            .call(&format!(
                r#"<m:UpdateItem ConflictResolution="NeverOverwrite" SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>{id_element}<t:Updates>{updates}</t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
            ))
            .await;
        assert_eq!(status, 200);
        first_message(&reply).clone()
    }

    async fn delete(&self, id_element: &str) -> Element {
        let (status, reply) = self
            .call(&format!(
                r#"<m:DeleteItem DeleteType="HardDelete" SendMeetingCancellations="SendToNone"><m:ItemIds>{id_element}</m:ItemIds></m:DeleteItem>"#
            ))
            .await;
        assert_eq!(status, 200);
        first_message(&reply).clone()
    }

    /// SyncFolderItems of the calendar from `state`: `(new state, [(change, id)])`.
    async fn sync_calendar(&self, state: Option<&str>) -> (String, Vec<(String, String)>) {
        let state = state
            .map(|s| format!("<m:SyncState>{s}</m:SyncState>"))
            .unwrap_or_default();
        let (status, reply) = self
            .call(&format!(
                r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="calendar"/></m:SyncFolderId>{state}<m:MaxChangesReturned>100</m:MaxChangesReturned></m:SyncFolderItems>"#
            ))
            .await;
        assert_eq!(status, 200);
        let message = first_message(&reply);
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
        (message.child_text("SyncState").unwrap().to_owned(), changes)
    }
}

fn item_id(id: &str) -> String {
    format!(r#"<t:ItemId Id="{id}"/>"#)
}

fn item_id_with_key(id: &str, change_key: &str) -> String {
    format!(r#"<t:ItemId Id="{id}" ChangeKey="{change_key}"/>"#)
}

fn calendar_item(message: &Element) -> &Element {
    message
        .path(&["Items", "CalendarItem"])
        .unwrap_or_else(|| panic!("no calendar item: {message:?}"))
}

fn recurrence(pattern: &str, range: &str) -> String {
    format!("<t:Recurrence>{pattern}{range}</t:Recurrence>")
}

/// (subject, first start, pattern, range, view from, view to, expected occurrence dates)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a [&'a str],
);

#[tokio::test]
async fn ews_calendar_view_expands_every_pattern_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    let cases: &[Case] = &[
        (
            "daily-every-2-no-end",
            "2026-03-02",
            "<t:DailyRecurrence><t:Interval>2</t:Interval></t:DailyRecurrence>",
            "<t:NoEndRecurrence><t:StartDate>2026-03-02</t:StartDate></t:NoEndRecurrence>",
            "2026-03-01T00:00:00Z",
            "2026-03-09T00:00:00Z",
            &["2026-03-02", "2026-03-04", "2026-03-06", "2026-03-08"],
        ),
        (
            "weekly-mon-wed-every-2-numbered",
            "2026-03-02",
            "<t:WeeklyRecurrence><t:Interval>2</t:Interval><t:DaysOfWeek>Monday Wednesday</t:DaysOfWeek><t:FirstDayOfWeek>Monday</t:FirstDayOfWeek></t:WeeklyRecurrence>",
            "<t:NumberedRecurrence><t:StartDate>2026-03-02</t:StartDate><t:NumberOfOccurrences>5</t:NumberOfOccurrences></t:NumberedRecurrence>",
            "2026-03-01T00:00:00Z",
            "2026-06-01T00:00:00Z",
            &[
                "2026-03-02",
                "2026-03-04",
                "2026-03-16",
                "2026-03-18",
                "2026-03-30",
            ],
        ),
        (
            "absolute-monthly-31st-end-date",
            "2026-01-31",
            "<t:AbsoluteMonthlyRecurrence><t:Interval>1</t:Interval><t:DayOfMonth>31</t:DayOfMonth></t:AbsoluteMonthlyRecurrence>",
            "<t:EndDateRecurrence><t:StartDate>2026-01-31</t:StartDate><t:EndDate>2026-05-31</t:EndDate></t:EndDateRecurrence>",
            "2026-01-01T00:00:00Z",
            "2026-12-31T00:00:00Z",
            &[
                "2026-01-31",
                "2026-02-28",
                "2026-03-31",
                "2026-04-30",
                "2026-05-31",
            ],
        ),
        (
            "relative-monthly-last-friday-numbered",
            "2026-01-30",
            "<t:RelativeMonthlyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Friday</t:DaysOfWeek><t:DayOfWeekIndex>Last</t:DayOfWeekIndex></t:RelativeMonthlyRecurrence>",
            "<t:NumberedRecurrence><t:StartDate>2026-01-01</t:StartDate><t:NumberOfOccurrences>3</t:NumberOfOccurrences></t:NumberedRecurrence>",
            "2026-01-01T00:00:00Z",
            "2026-12-31T00:00:00Z",
            &["2026-01-30", "2026-02-27", "2026-03-27"],
        ),
        (
            "absolute-yearly-feb-29-no-end",
            "2026-02-28",
            "<t:AbsoluteYearlyRecurrence><t:DayOfMonth>29</t:DayOfMonth><t:Month>February</t:Month></t:AbsoluteYearlyRecurrence>",
            "<t:NoEndRecurrence><t:StartDate>2026-01-01</t:StartDate></t:NoEndRecurrence>",
            "2026-06-01T00:00:00Z",
            "2028-05-01T00:00:00Z",
            &["2027-02-28", "2028-02-29"],
        ),
        (
            "relative-yearly-fourth-thursday-november",
            "2026-11-26",
            "<t:RelativeYearlyRecurrence><t:DaysOfWeek>Thursday</t:DaysOfWeek><t:DayOfWeekIndex>Fourth</t:DayOfWeekIndex><t:Month>November</t:Month></t:RelativeYearlyRecurrence>",
            "<t:EndDateRecurrence><t:StartDate>2026-01-01</t:StartDate><t:EndDate>2027-11-24</t:EndDate></t:EndDateRecurrence>",
            "2026-06-01T00:00:00Z",
            "2028-05-31T00:00:00Z",
            &["2026-11-26"],
        ),
    ];
    for (subject, first, pattern, range, _, _, _) in cases {
        h.create_event(
            subject,
            &format!("{first}T09:00:00Z"),
            &format!("{first}T10:30:00Z"),
            &recurrence(pattern, range),
        )
        .await;
    }
    for (subject, _, _, _, from, to, expected) in cases {
        let items = h.view_items(from, to).await;
        let mine: Vec<&Shown> = items.iter().filter(|i| i.subject == *subject).collect();
        let dates: Vec<&str> = mine.iter().map(|i| &i.start[..10]).collect();
        assert_eq!(dates, *expected, "{subject}");
        for item in &mine {
            assert_eq!(item.item_type, "Occurrence", "{subject}: {item:?}");
            assert_eq!(&item.start[10..], "T09:00:00Z", "{subject}: {item:?}");
            assert_eq!(&item.end[10..], "T10:30:00Z", "{subject}: {item:?}");
            assert_eq!(item.original_start.as_deref(), Some(item.start.as_str()));
        }
        let mut ids: Vec<&str> = mine.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            mine.len(),
            "{subject}: occurrence ids must differ"
        );
        let starts: Vec<&str> = items.iter().map(|i| i.start.as_str()).collect();
        assert!(
            starts.is_sorted(),
            "{subject}: view not sorted by start: {starts:?}"
        );
    }
    // The store still holds one master per series: SyncFolderItems reports only those.
    let (_, changes) = h.sync_calendar(None).await;
    assert_eq!(changes.len(), cases.len(), "{changes:?}");
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), cases.len());
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_calendar_view_bounds_mix_singles_and_series() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    h.create_event(
        "standup",
        "2026-03-02T09:00:00Z",
        "2026-03-02T10:00:00Z",
        &recurrence(
            "<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence>",
            "<t:NoEndRecurrence><t:StartDate>2026-03-02</t:StartDate></t:NoEndRecurrence>",
        ),
    )
    .await;
    h.create_event("single", "2026-03-03T08:00:00Z", "2026-03-03T08:30:00Z", "")
        .await;
    let items = h
        .view_items("2026-03-03T00:00:00Z", "2026-03-05T00:00:00Z")
        .await;
    let summary: Vec<(String, String, String)> = items
        .iter()
        .map(|i| (i.subject.clone(), i.start.clone(), i.item_type.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "single".into(),
                "2026-03-03T08:00:00Z".into(),
                "Single".into()
            ),
            (
                "standup".into(),
                "2026-03-03T09:00:00Z".into(),
                "Occurrence".into()
            ),
            (
                "standup".into(),
                "2026-03-04T09:00:00Z".into(),
                "Occurrence".into()
            ),
        ]
    );
    // An occurrence ending exactly at StartDate is shown (only items ending before it are
    // left out); one starting exactly at EndDate is not.
    let items = h
        .view_items("2026-03-04T10:00:00Z", "2026-03-05T09:00:00Z")
        .await;
    let starts: Vec<&str> = items.iter().map(|i| i.start.as_str()).collect();
    assert_eq!(starts, ["2026-03-04T09:00:00Z"]);
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_occurrences_are_addressed_by_id_index_and_master_id() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    let (master, master_key) = h
        .create_event(
            "weekly",
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            &recurrence(
                "<t:WeeklyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Monday</t:DaysOfWeek></t:WeeklyRecurrence>",
                "<t:NumberedRecurrence><t:StartDate>2026-03-02</t:StartDate><t:NumberOfOccurrences>4</t:NumberOfOccurrences></t:NumberedRecurrence>",
            ),
        )
        .await;
    let (single, _) = h
        .create_event("single", "2026-03-03T09:00:00Z", "2026-03-03T10:00:00Z", "")
        .await;
    let occurrences: Vec<Shown> = h
        .view_items("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
        .await
        .into_iter()
        .filter(|i| i.subject == "weekly")
        .collect();
    assert_eq!(occurrences.len(), 4);

    // By the occurrence's own id.
    let message = h.get(&item_id(&occurrences[1].id)).await;
    assert_eq!(code(&message), "NoError", "{message:?}");
    let item = calendar_item(&message);
    assert_eq!(item.child_text("CalendarItemType"), Some("Occurrence"));
    assert_eq!(item.child_text("Start"), Some("2026-03-09T09:00:00Z"));
    assert_eq!(item.child_text("Subject"), Some("weekly"));
    assert!(
        item.child("Recurrence").is_none(),
        "an occurrence has no Recurrence"
    );

    // By master id and instance index.
    let message = h
        .get(&format!(
            r#"<t:OccurrenceItemId RecurringMasterId="{master}" ChangeKey="{master_key}" InstanceIndex="3"/>"#
        ))
        .await;
    let item = calendar_item(&message);
    assert_eq!(
        item.child("ItemId").and_then(|i| i.attr("Id")),
        Some(occurrences[2].id.as_str())
    );
    assert_eq!(
        item.child_text("OriginalStart"),
        Some("2026-03-16T09:00:00Z")
    );

    // From an occurrence to its master.
    let message = h
        .get(&format!(
            r#"<t:RecurringMasterItemId OccurrenceId="{}"/>"#,
            occurrences[0].id
        ))
        .await;
    let item = calendar_item(&message);
    assert_eq!(
        item.child("ItemId").and_then(|i| i.attr("Id")),
        Some(master.as_str())
    );
    assert_eq!(item.child_text("CalendarItemType"), Some("RecurringMaster"));
    assert_eq!(
        item.path(&["FirstOccurrence", "Start"])
            .map(|e| e.text.as_str()),
        Some("2026-03-02T09:00:00Z")
    );
    assert_eq!(
        item.path(&["LastOccurrence", "Start"])
            .map(|e| e.text.as_str()),
        Some("2026-03-23T09:00:00Z")
    );
    assert_eq!(
        item.path(&["LastOccurrence", "ItemId"])
            .and_then(|e| e.attr("Id")),
        Some(occurrences[3].id.as_str())
    );
    assert!(item.child("ModifiedOccurrences").is_none());
    assert!(item.child("DeletedOccurrences").is_none());

    // Errors, as Exchange names them.
    for (id_element, expected) in [
        (
            format!(r#"<t:OccurrenceItemId RecurringMasterId="{master}" InstanceIndex="5"/>"#),
            "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
        ),
        (
            format!(r#"<t:OccurrenceItemId RecurringMasterId="{master}" InstanceIndex="0"/>"#),
            "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
        ),
        (
            format!(r#"<t:OccurrenceItemId RecurringMasterId="{single}" InstanceIndex="1"/>"#),
            "ErrorCalendarCannotUseIdForRecurringMasterId",
        ),
        (
            format!(r#"<t:RecurringMasterItemId OccurrenceId="{master}"/>"#),
            "ErrorCalendarCannotUseIdForOccurrenceId",
        ),
        (
            r#"<t:OccurrenceItemId RecurringMasterId="AAMkAGI2bm9uZQ==" InstanceIndex="1"/>"#
                .to_owned(),
            "ErrorItemNotFound",
        ),
    ] {
        let message = h.get(&id_element).await;
        assert_eq!(code(&message), expected, "{id_element}");
    }
    let message = h.get(&item_id(&single)).await;
    assert_eq!(
        calendar_item(&message).child_text("CalendarItemType"),
        Some("Single")
    );
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_updating_an_occurrence_makes_an_exception() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    let (master, master_key) = h
        .create_event(
            "daily",
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            &recurrence(
                "<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence>",
                "<t:EndDateRecurrence><t:StartDate>2026-03-02</t:StartDate><t:EndDate>2026-03-05</t:EndDate></t:EndDateRecurrence>",
            ),
        )
        .await;
    let (state, _) = h.sync_calendar(None).await;
    let before = h
        .view_items("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        .await;
    assert_eq!(before.len(), 4);
    let second = &before[1];

    // A stale ChangeKey is a conflict; the recurrence and computed fields are not writable
    // on an occurrence.
    let subject = r#"<t:SetItemField><t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>moved review</t:Subject></t:CalendarItem></t:SetItemField>"#;
    let stale = h
        .update(&item_id_with_key(&second.id, "EQAAABYAstale"), subject)
        .await;
    assert_eq!(code(&stale), "ErrorIrresolvableConflict");
    let recurrence_update = format!(
        r#"<t:SetItemField><t:FieldURI FieldURI="calendar:Recurrence"/><t:CalendarItem>{}</t:CalendarItem></t:SetItemField>"#,
        recurrence(
            "<t:DailyRecurrence><t:Interval>2</t:Interval></t:DailyRecurrence>",
            "<t:NoEndRecurrence><t:StartDate>2026-03-02</t:StartDate></t:NoEndRecurrence>"
        )
    );
    let refused = h
        .update(
            &item_id_with_key(&second.id, &second.change_key),
            &recurrence_update,
        )
        .await;
    assert_eq!(code(&refused), "ErrorInvalidPropertySet");
    let computed = r#"<t:SetItemField><t:FieldURI FieldURI="calendar:CalendarItemType"/><t:CalendarItem><t:CalendarItemType>Single</t:CalendarItemType></t:CalendarItem></t:SetItemField>"#;
    let refused = h
        .update(&item_id_with_key(&master, &master_key), computed)
        .await;
    assert_eq!(code(&refused), "ErrorInvalidPropertySet");

    // Move the second occurrence two hours later and rename it.
    let move_it = format!(
        r#"{subject}<t:SetItemField><t:FieldURI FieldURI="calendar:Start"/><t:CalendarItem><t:Start>2026-03-03T11:00:00Z</t:Start></t:CalendarItem></t:SetItemField><t:SetItemField><t:FieldURI FieldURI="calendar:End"/><t:CalendarItem><t:End>2026-03-03T12:00:00Z</t:End></t:CalendarItem></t:SetItemField>"#
    );
    let updated = h
        .update(&item_id_with_key(&second.id, &second.change_key), &move_it)
        .await;
    assert_eq!(code(&updated), "NoError", "{updated:?}");
    let new_id = calendar_item(&updated).child("ItemId").unwrap();
    assert_eq!(
        new_id.attr("Id"),
        Some(second.id.as_str()),
        "the occurrence keeps its id"
    );
    assert_ne!(new_id.attr("ChangeKey"), Some(second.change_key.as_str()));

    let after = h
        .view_items("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        .await;
    let summary: Vec<(&str, &str, &str)> = after
        .iter()
        .map(|i| (i.subject.as_str(), i.start.as_str(), i.item_type.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("daily", "2026-03-02T09:00:00Z", "Occurrence"),
            ("moved review", "2026-03-03T11:00:00Z", "Exception"),
            ("daily", "2026-03-04T09:00:00Z", "Occurrence"),
            ("daily", "2026-03-05T09:00:00Z", "Occurrence"),
        ]
    );
    assert_eq!(
        after[1].original_start.as_deref(),
        Some("2026-03-03T09:00:00Z")
    );

    // The master lists the exception and changed with it; SyncFolderItems reports the master.
    let message = h.get(&item_id(&master)).await;
    let item = calendar_item(&message);
    assert_ne!(
        item.child("ItemId").and_then(|i| i.attr("ChangeKey")),
        Some(master_key.as_str())
    );
    assert_eq!(item.child_text("Subject"), Some("daily"));
    let modified = item.child("ModifiedOccurrences").unwrap();
    let occurrence = modified.child("Occurrence").unwrap();
    assert_eq!(modified.children.len(), 1);
    assert_eq!(occurrence.child_text("Start"), Some("2026-03-03T11:00:00Z"));
    assert_eq!(
        occurrence.child_text("OriginalStart"),
        Some("2026-03-03T09:00:00Z")
    );
    assert_eq!(
        occurrence.child("ItemId").and_then(|i| i.attr("Id")),
        Some(second.id.as_str())
    );
    let (_, changes) = h.sync_calendar(Some(&state)).await;
    assert_eq!(changes, [("Update".to_owned(), master.clone())]);

    // Rescheduling the whole series drops its exceptions, as in Exchange.
    let current_key = item
        .child("ItemId")
        .and_then(|i| i.attr("ChangeKey"))
        .unwrap()
        .to_owned();
    let reschedule = r#"<t:SetItemField><t:FieldURI FieldURI="calendar:Start"/><t:CalendarItem><t:Start>2026-03-02T08:00:00Z</t:Start></t:CalendarItem></t:SetItemField>"#;
    let message = h
        .update(&item_id_with_key(&master, &current_key), reschedule)
        .await;
    assert_eq!(code(&message), "NoError");
    let items = h
        .view_items("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        .await;
    assert!(
        items
            .iter()
            .all(|i| i.item_type == "Occurrence" && i.subject == "daily")
    );
    assert!(
        items.iter().all(|i| &i.start[10..] == "T08:00:00Z"),
        "{items:?}"
    );
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_deleting_an_occurrence_hides_it_and_lists_it_on_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    let (master, _) = h
        .create_event(
            "weekly",
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            &recurrence(
                "<t:WeeklyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Monday</t:DaysOfWeek></t:WeeklyRecurrence>",
                "<t:NumberedRecurrence><t:StartDate>2026-03-02</t:StartDate><t:NumberOfOccurrences>3</t:NumberOfOccurrences></t:NumberedRecurrence>",
            ),
        )
        .await;
    let (state, _) = h.sync_calendar(None).await;
    let before = h
        .view_items("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
        .await;
    assert_eq!(before.len(), 3);

    // Deleting needs SendMeetingCancellations, as for any calendar item.
    let (_, reply) = h
        .call(&format!(
            r#"<m:DeleteItem DeleteType="HardDelete"><m:ItemIds>{}</m:ItemIds></m:DeleteItem>"#,
            item_id(&before[1].id)
        ))
        .await;
    assert_eq!(
        code(first_message(&reply)),
        "ErrorSendMeetingCancellationsRequired"
    );

    let deleted = h.delete(&item_id(&before[1].id)).await;
    assert_eq!(code(&deleted), "NoError");
    // The last one, by index this time.
    let deleted = h
        .delete(&format!(
            r#"<t:OccurrenceItemId RecurringMasterId="{master}" InstanceIndex="3"/>"#
        ))
        .await;
    assert_eq!(code(&deleted), "NoError");

    let after = h
        .view_items("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
        .await;
    let starts: Vec<&str> = after.iter().map(|i| i.start.as_str()).collect();
    assert_eq!(starts, ["2026-03-02T09:00:00Z"]);

    for gone in [item_id(&before[1].id), item_id(&before[2].id)] {
        let message = h.get(&gone).await;
        assert_eq!(
            code(&message),
            "ErrorCalendarOccurrenceIsDeletedFromRecurrence"
        );
        let message = h.delete(&gone).await;
        assert_eq!(
            code(&message),
            "ErrorCalendarOccurrenceIsDeletedFromRecurrence"
        );
    }

    let message = h.get(&item_id(&master)).await;
    let item = calendar_item(&message);
    let deleted_starts: Vec<&str> = item
        .child("DeletedOccurrences")
        .unwrap()
        .children
        .iter()
        .map(|d| d.child_text("Start").unwrap())
        .collect();
    assert_eq!(
        deleted_starts,
        ["2026-03-09T09:00:00Z", "2026-03-16T09:00:00Z"]
    );
    assert_eq!(
        item.path(&["LastOccurrence", "Start"])
            .map(|e| e.text.as_str()),
        Some("2026-03-02T09:00:00Z"),
        "the last remaining occurrence"
    );
    // The series is still one item; SyncFolderItems sees its master change, nothing else.
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), 1);
    let (_, changes) = h.sync_calendar(Some(&state)).await;
    assert_eq!(changes, [("Update".to_owned(), master.clone())]);

    // Deleting the master deletes the series.
    let message = h.delete(&item_id(&master)).await;
    assert_eq!(code(&message), "NoError");
    assert!(
        h.view_items("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
            .await
            .is_empty()
    );
    let message = h.get(&item_id(&before[0].id)).await;
    assert_eq!(code(&message), "ErrorItemNotFound");
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_calendar_view_max_entries_and_range_limit() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    h.create_event(
        "daily",
        "2026-03-02T09:00:00Z",
        "2026-03-02T10:00:00Z",
        &recurrence(
            "<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence>",
            "<t:NoEndRecurrence><t:StartDate>2026-03-02</t:StartDate></t:NoEndRecurrence>",
        ),
    )
    .await;
    let message = h
        .view("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z", Some(3))
        .await;
    assert_eq!(code(&message), "NoError");
    let root = message.child("RootFolder").unwrap();
    assert_eq!(root.attr("TotalItemsInView"), Some("29"));
    assert_eq!(root.attr("IncludesLastItemInRange"), Some("false"));
    let starts: Vec<&str> = root
        .child("Items")
        .unwrap()
        .children
        .iter()
        .map(|i| i.child_text("Start").unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-03-02T09:00:00Z",
            "2026-03-03T09:00:00Z",
            "2026-03-04T09:00:00Z"
        ]
    );
    let message = h
        .view("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z", Some(29))
        .await;
    assert_eq!(
        message
            .child("RootFolder")
            .unwrap()
            .attr("IncludesLastItemInRange"),
        Some("true")
    );
    // A range of more than two years is refused; two years is fine, even far from the start.
    let message = h
        .view("2026-03-01T00:00:00Z", "2028-03-03T00:00:00Z", None)
        .await;
    assert_eq!(code(&message), "ErrorCalendarViewRangeTooBig");
    let message = h
        .view("2040-01-01T00:00:00Z", "2041-12-31T00:00:00Z", Some(1))
        .await;
    assert_eq!(code(&message), "NoError");
    let root = message.child("RootFolder").unwrap();
    assert_eq!(root.attr("TotalItemsInView"), Some("730"));
    assert_eq!(
        root.path(&["Items", "CalendarItem", "Start"])
            .map(|e| e.text.as_str()),
        Some("2040-01-01T09:00:00Z")
    );
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_calendar_view_over_the_find_count_limit_needs_max_entries() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    for subject in ["a", "b", "c"] {
        h.create_event(
            subject,
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            &recurrence(
                "<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence>",
                "<t:NoEndRecurrence><t:StartDate>2026-03-02</t:StartDate></t:NoEndRecurrence>",
            ),
        )
        .await;
    }
    // 3 × 365 = 1095 occurrences: more than one FindItem may return.
    let (from, to) = ("2026-03-02T00:00:00Z", "2027-03-02T00:00:00Z");
    for max in [None, Some(1001)] {
        let message = h.view(from, to, max).await;
        assert_eq!(code(&message), "ErrorExceededFindCountLimit", "{max:?}");
        let limit = message.path(&["MessageXml", "Value"]).unwrap();
        assert_eq!(limit.attr("Name"), Some("PolicyLimit"));
        assert_eq!(limit.text, "1000");
    }
    let message = h.view(from, to, Some(1000)).await;
    assert_eq!(code(&message), "NoError");
    let root = message.child("RootFolder").unwrap();
    assert_eq!(root.attr("TotalItemsInView"), Some("1095"));
    assert_eq!(root.attr("IncludesLastItemInRange"), Some("false"));
    assert_eq!(root.child("Items").unwrap().children.len(), 1000);
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_invalid_recurrence_is_refused_on_create_and_update() {
    let dir = tempfile::tempdir().unwrap();
    let h = capturing(dir.path()).await;
    let bad = recurrence(
        "<t:DailyRecurrence><t:Interval>0</t:Interval></t:DailyRecurrence>",
        "<t:NoEndRecurrence><t:StartDate>2026-03-02</t:StartDate></t:NoEndRecurrence>",
    );
    let (status, reply) = h
        .call(&format!(
            r#"<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items><t:CalendarItem><t:Subject>never</t:Subject><t:Start>2026-03-02T09:00:00Z</t:Start><t:End>2026-03-02T10:00:00Z</t:End>{bad}</t:CalendarItem></m:Items></m:CreateItem>"#
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        code(first_message(&reply)),
        "ErrorCalendarInvalidRecurrence"
    );
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), 0);
    let (id, key) = h
        .create_event("single", "2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z", "")
        .await;
    let message = h
        .update(
            &item_id_with_key(&id, &key),
            &format!(
                r#"<t:SetItemField><t:FieldURI FieldURI="calendar:Recurrence"/><t:CalendarItem>{bad}</t:CalendarItem></t:SetItemField>"#
            ),
        )
        .await;
    assert_eq!(code(&message), "ErrorCalendarInvalidRecurrence");
    let message = h.get(&item_id(&id)).await;
    let item = calendar_item(&message);
    assert!(item.child("Recurrence").is_none());
    assert_eq!(
        item.child("ItemId").and_then(|i| i.attr("ChangeKey")),
        Some(key.as_str()),
        "a refused update changes nothing"
    );
    assert_traffic_valid(dir.path());
}

#[tokio::test]
async fn ews_occurrence_edits_survive_a_restart_from_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("ews.json");
    let config = EwsSimConfig {
        data_file: Some(data_file.clone()),
        ..Default::default()
    };
    let h = start(config.clone()).await;
    let (master, _) = h
        .create_event(
            "daily",
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            &recurrence(
                "<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence>",
                "<t:NumberedRecurrence><t:StartDate>2026-03-02</t:StartDate><t:NumberOfOccurrences>3</t:NumberOfOccurrences></t:NumberedRecurrence>",
            ),
        )
        .await;
    let before = h
        .view_items("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        .await;
    assert_eq!(code(&h.delete(&item_id(&before[0].id)).await), "NoError");
    let rename = r#"<t:SetItemField><t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>renamed</t:Subject></t:CalendarItem></t:SetItemField>"#;
    let message = h
        .update(
            &item_id_with_key(&before[2].id, &before[2].change_key),
            rename,
        )
        .await;
    // The deletion changed the master, so the unmodified occurrence's key is stale now.
    assert_eq!(code(&message), "ErrorIrresolvableConflict");
    let fresh = h
        .view_items("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        .await;
    let message = h
        .update(
            &item_id_with_key(&fresh[1].id, &fresh[1].change_key),
            rename,
        )
        .await;
    assert_eq!(code(&message), "NoError");
    h.server.stop().await;

    let again = start(config).await;
    let items = again
        .view_items("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        .await;
    let summary: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|i| (i.subject.as_str(), i.start.as_str(), i.item_type.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("daily", "2026-03-03T09:00:00Z", "Occurrence"),
            ("renamed", "2026-03-04T09:00:00Z", "Exception"),
        ]
    );
    let message = again.get(&item_id(&master)).await;
    let item = calendar_item(&message);
    assert!(item.child("DeletedOccurrences").is_some());
    assert!(item.child("ModifiedOccurrences").is_some());
}
