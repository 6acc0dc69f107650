//! The EWS operations the emulator answers (SyncFolderItems, GetItem, CreateItem, UpdateItem,
//! DeleteItem, FindItem, Subscribe, Unsubscribe; SyncFolderHierarchy and GetFolder live in
//! `folders`), each reading the request element and writing its response element.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::calendar::{self, ItemRef, Target};
use super::store::{Change, Store, StoredItem};
use super::version::RequestedVersion;
use super::wire::{
    self,
    CALENDAR_READ_ONLY, Element, FieldPath, ItemKind, WireItem, WireValue, XmlOut, field_for_path,
    parse_item, write_item,
};

/// A request-level failure, answered as a SOAP fault (HTTP 500), like Exchange's schema errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub code: &'static str,
    pub message: String,
}

impl Fault {
    pub fn schema(message: impl Into<String>) -> Self {
        Self {
            code: "ErrorSchemaValidation",
            message: message.into(),
        }
    }
}

/// The largest FindItem page (Exchange's default `EWSFindCountLimit`).
const FIND_COUNT_LIMIT: usize = 1000;
/// The widest CalendarView Exchange accepts (two years; wider is ErrorCalendarViewRangeTooBig).
const CALENDAR_VIEW_MAX_DAYS: i64 = 2 * 366;
/// Item elements a request may carry only from this schema version on.
const VERSIONED_ELEMENTS: &[(&str, &str)] = &[
    ("StartTimeZone", "Exchange2010"),
    ("EndTimeZone", "Exchange2010"),
];

/// Runs one operation; returns whether the store changed.
pub(crate) fn dispatch(
    store: &mut Store,
    mailbox: &str,
    version: &RequestedVersion,
    op: &Element,
    out: &mut XmlOut,
) -> Result<bool, Fault> {
    match op.name.as_str() {
        "SyncFolderHierarchy" => {
            super::folders::sync_folder_hierarchy(store, mailbox, op, out).map(|()| false)
        }
        "SyncFolderItems" => sync_folder_items(store, mailbox, op, out).map(|()| false),
        "GetItem" => get_item(store, mailbox, op, out).map(|()| false),
        "CreateItem" => create_item(store, mailbox, version, op, out),
        "UpdateItem" => update_item(store, mailbox, version, op, out),
        "DeleteItem" => delete_item(store, mailbox, op, out),
        "FindItem" => find_item(store, mailbox, op, out).map(|()| false),
        "GetFolder" => super::folders::get_folder(store, mailbox, op, out).map(|()| false),
        "Subscribe" => super::notify::subscribe(store, mailbox, op, out).map(|()| false),
        "Unsubscribe" => super::notify::unsubscribe(store, mailbox, op, out).map(|()| false),
        other => Err(Fault::schema(format!(
            "The operation '{other}' is not supported by this EWS emulator."
        ))),
    }
}

// ----- response message helpers -----

fn open_response(out: &mut XmlOut, op: &str) {
    out.open(&format!("m:{op}Response"), &[]);
    out.open("m:ResponseMessages", &[]);
}

fn close_response(out: &mut XmlOut, op: &str) {
    out.close("m:ResponseMessages");
    out.close(&format!("m:{op}Response"));
}

/// Opens `<m:{op}ResponseMessage ResponseClass="Success">` with `NoError`; caller closes it.
fn open_success(out: &mut XmlOut, op: &str) {
    out.open(
        &format!("m:{op}ResponseMessage"),
        &[("ResponseClass", "Success")],
    );
    out.text_element("m:ResponseCode", &[], "NoError");
}

/// Opens an error response message; caller adds the type's required elements and closes it.
fn open_error(out: &mut XmlOut, op: &str, code: &str, text: &str) {
    out.open(
        &format!("m:{op}ResponseMessage"),
        &[("ResponseClass", "Error")],
    );
    out.text_element("m:MessageText", &[], text);
    out.text_element("m:ResponseCode", &[], code);
    out.text_element("m:DescriptiveLinkKey", &[], "0");
}

/// A complete error message for operations whose messages carry `m:Items`.
fn item_error(out: &mut XmlOut, op: &str, code: &str, text: &str) {
    open_error(out, op, code, text);
    out.empty("m:Items", &[]);
    out.close(&format!("m:{op}ResponseMessage"));
}

fn close_message(out: &mut XmlOut, op: &str) {
    out.close(&format!("m:{op}ResponseMessage"));
}

fn write_id_only(out: &mut XmlOut, kind: ItemKind, id: &str, change_key: &str) {
    let tag = format!("t:{}", kind.element());
    out.open(&tag, &[]);
    out.empty("t:ItemId", &[("Id", id), ("ChangeKey", change_key)]);
    out.close(&tag);
}

// ----- request reading helpers -----

/// The folder named by `<X><t:DistinguishedFolderId Id=…/></X>`.
fn distinguished_folder(parent: &Element) -> Result<ItemKind, Fault> {
    super::folders::item_folder(parent)
}

/// The requested shape: whether all fields are returned, plus the additional paths.
struct Shape {
    all_fields: bool,
    additional: Vec<FieldPath>,
}

fn read_shape(op: &Element) -> Result<Shape, Fault> {
    let shape = op
        .child("ItemShape")
        .ok_or_else(|| Fault::schema(format!("{} needs an ItemShape", op.name)))?;
    let base = shape
        .child_text("BaseShape")
        .ok_or_else(|| Fault::schema("ItemShape needs a BaseShape"))?;
    let all_fields = match base {
        "IdOnly" => false,
        "Default" | "AllProperties" => true,
        other => return Err(Fault::schema(format!("BaseShape '{other}' is not valid"))),
    };
    let additional = shape
        .child("AdditionalProperties")
        .map(|props| {
            props
                .children
                .iter()
                .filter_map(FieldPath::from_element)
                .collect()
        })
        .unwrap_or_default();
    Ok(Shape {
        all_fields,
        additional,
    })
}

/// The item as a reply shows it under `shape`.
fn shaped(kind: ItemKind, item: &StoredItem, shape: &Shape) -> WireItem {
    let requested: Vec<String> = shape
        .additional
        .iter()
        .filter_map(|path| field_for_path(kind, path))
        .collect();
    let fields = item
        .fields
        .iter()
        .filter(|(name, _)| shape.all_fields || requested.contains(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let extended = item
        .extended
        .iter()
        .filter(|(key, _)| shape.additional.contains(&FieldPath::Extended(key.clone())))
        .cloned()
        .collect();
    WireItem {
        kind,
        id: Some((item.id.clone(), item.change_key.clone())),
        fields,
        extended,
    }
}

/// The ids of `m:ItemIds` (`t:ItemId`, `t:OccurrenceItemId`, `t:RecurringMasterItemId`).
fn item_ids(op: &Element) -> Result<Vec<ItemRef>, Fault> {
    let ids = op
        .child("ItemIds")
        .ok_or_else(|| Fault::schema(format!("{} needs ItemIds", op.name)))?;
    let mut refs = Vec::new();
    for element in &ids.children {
        match ItemRef::from_element(element).map_err(Fault::schema)? {
            Some(item_ref) => refs.push(item_ref),
            None => {
                return Err(Fault::schema(format!(
                    "<t:{}> is not valid in ItemIds",
                    element.name
                )));
            }
        }
    }
    if refs.is_empty() {
        return Err(Fault::schema("ItemIds must hold at least one ItemId"));
    }
    Ok(refs)
}

/// Fields a FindItem reply never carries (GetItem-only properties).
const NOT_IN_FIND_ITEM: &[&str] = &[
    "Body",
    "FirstOccurrence",
    "LastOccurrence",
    "ModifiedOccurrences",
    "DeletedOccurrences",
];

/// An item as a FindItem reply shows it under `shape`.
fn shaped_for_find(kind: ItemKind, item: &StoredItem, shape: &Shape) -> WireItem {
    let mut wire = shaped(kind, item, shape);
    for name in NOT_IN_FIND_ITEM {
        wire.fields.remove(*name);
    }
    wire
}

// ----- operations -----

fn sync_folder_items(
    store: &mut Store,
    mailbox: &str,
    op: &Element,
    out: &mut XmlOut,
) -> Result<(), Fault> {
    read_shape(op)?;
    let kind = distinguished_folder(
        op.child("SyncFolderId")
            .ok_or_else(|| Fault::schema("SyncFolderItems needs a SyncFolderId"))?,
    )?;
    let max_text = op
        .child_text("MaxChangesReturned")
        .ok_or_else(|| Fault::schema("SyncFolderItems needs MaxChangesReturned"))?;
    let max: usize = max_text
        .parse()
        .ok()
        .filter(|n| (1..=512).contains(n))
        .ok_or_else(|| {
            Fault::schema(format!(
                "MaxChangesReturned must be 1 to 512, not '{max_text}'"
            ))
        })?;
    let state = op.child_text("SyncState").filter(|s| !s.is_empty());
    let folder = store
        .mailboxes
        .entry(mailbox.to_owned())
        .or_default()
        .folder(kind);
    let since = match state {
        None => 0,
        Some(state) => match folder.parse_sync_state(kind, state) {
            Some(seq) => seq,
            None => {
                open_response(out, "SyncFolderItems");
                open_error(
                    out,
                    "SyncFolderItems",
                    "ErrorInvalidSyncStateData",
                    "Synchronization state data is corrupt or otherwise invalid.",
                );
                out.empty("m:SyncState", &[]);
                out.text_element("m:IncludesLastItemInRange", &[], "true");
                close_message(out, "SyncFolderItems");
                close_response(out, "SyncFolderItems");
                return Ok(());
            }
        },
    };
    let changes = folder.changes_since(since);
    let includes_last = changes.len() <= max;
    let page = &changes[..changes.len().min(max)];
    let new_seq = if includes_last {
        folder.seq
    } else {
        page.last().map_or(since, |(seq, _)| *seq)
    };
    open_response(out, "SyncFolderItems");
    open_success(out, "SyncFolderItems");
    out.text_element("m:SyncState", &[], &folder.sync_state(kind, new_seq));
    out.text_element(
        "m:IncludesLastItemInRange",
        &[],
        if includes_last { "true" } else { "false" },
    );
    out.open("m:Changes", &[]);
    for (_, change) in page {
        match change {
            Change::Create { id, change_key } => {
                out.open("t:Create", &[]);
                write_id_only(out, kind, id, change_key);
                out.close("t:Create");
            }
            Change::Update { id, change_key } => {
                out.open("t:Update", &[]);
                write_id_only(out, kind, id, change_key);
                out.close("t:Update");
            }
            Change::Delete { id, change_key } => {
                out.open("t:Delete", &[]);
                out.empty("t:ItemId", &[("Id", id), ("ChangeKey", change_key)]);
                out.close("t:Delete");
            }
        }
    }
    out.close("m:Changes");
    close_message(out, "SyncFolderItems");
    close_response(out, "SyncFolderItems");
    Ok(())
}

fn get_item(store: &mut Store, mailbox: &str, op: &Element, out: &mut XmlOut) -> Result<(), Fault> {
    let shape = read_shape(op)?;
    let ids = item_ids(op)?;
    let mailbox = store.mailboxes.entry(mailbox.to_owned()).or_default();
    open_response(out, "GetItem");
    for item_ref in ids {
        match calendar::resolve(mailbox, &item_ref) {
            Ok(resolved) => {
                open_success(out, "GetItem");
                out.open("m:Items", &[]);
                write_item(out, &shaped(resolved.kind, &resolved.view, &shape));
                out.close("m:Items");
                close_message(out, "GetItem");
            }
            Err((code, text)) => item_error(out, "GetItem", code, &text),
        }
    }
    close_response(out, "GetItem");
    Ok(())
}

/// Refuses writes of item elements the requested schema version does not have yet: elements
/// of `after` that differ from `before` (everything, for a new item).
fn check_version(
    version: &RequestedVersion,
    before: Option<&BTreeMap<String, WireValue>>,
    after: &BTreeMap<String, WireValue>,
) -> Result<(), Fault> {
    for (element, since) in VERSIONED_ELEMENTS {
        let written = after.get(*element) != before.and_then(|b| b.get(*element));
        if written && !version.at_least(since) {
            return Err(Fault::schema(format!(
                "The element '{element}' needs RequestServerVersion {since} or later; this request asked for {}.",
                version.name
            )));
        }
    }
    Ok(())
}

/// The `t:Organizer` Exchange gives a calendar item created in `mailbox`: its owner.
pub(crate) fn organizer_markup(mailbox: &str) -> String {
    let mut out = XmlOut::default();
    out.open("t:Organizer", &[]);
    out.open("t:Mailbox", &[]);
    out.text_element("t:EmailAddress", &[], mailbox);
    out.text_element("t:RoutingType", &[], "SMTP");
    out.close("t:Mailbox");
    out.close("t:Organizer");
    out.finish()
}

/// The SMTP addresses of a calendar item's required and optional attendees.
fn attendee_addresses(fields: &BTreeMap<String, WireValue>) -> Vec<String> {
    let mut addresses: Vec<String> = Vec::new();
    for name in ["RequiredAttendees", "OptionalAttendees"] {
        let Some(WireValue::Text(markup)) = fields.get(name) else { continue };
        let Ok(tree) = wire::parse_document(markup) else { continue };
        for address in tree
            .children_named("Attendee")
            .filter_map(|attendee| attendee.path(&["Mailbox", "EmailAddress"]))
            .map(|e| e.text.trim())
        {
            if address.contains('@') && !addresses.iter().any(|a| a.eq_ignore_ascii_case(address)) {
                addresses.push(address.to_owned());
            }
        }
    }
    addresses
}

/// Meeting requests, as Exchange delivers them: each invitee other than the organizer finds
/// a copy of the meeting in their calendar, organized by `organizer`. Extended properties stay
/// with the organizer's item (they are not sent with a meeting request). Only creates deliver
/// requests here; later updates and cancellations are not sent to the copies.
fn deliver_invitations(store: &mut Store, organizer: &str, item: &WireItem, invitees: &[String]) {
    for invitee in invitees.iter().filter(|invitee| !invitee.eq_ignore_ascii_case(organizer)) {
        let mut copy = WireItem::new(ItemKind::CalendarItem);
        copy.fields = item.fields.clone();
        copy.fields.insert("Organizer".into(), WireValue::Text(organizer_markup(organizer)));
        store.create(&invitee.to_ascii_lowercase(), ItemKind::CalendarItem, copy);
    }
}

/// The first field of `fields` the server computes for an item of `kind`, if any.
fn read_only_field(kind: ItemKind, fields: &BTreeMap<String, WireValue>) -> Option<&'static str> {
    if kind != ItemKind::CalendarItem {
        return None;
    }
    CALENDAR_READ_ONLY
        .iter()
        .find(|name| fields.contains_key(**name))
        .copied()
}

const SEND_INVITATIONS: &[&str] = &["SendToNone", "SendOnlyToAll", "SendToAllAndSaveCopy"];

/// Checks an optional enumerated attribute against its allowed values (a schema fault if not).
fn enum_attr<'a>(op: &'a Element, name: &str, allowed: &[&str]) -> Result<Option<&'a str>, Fault> {
    match op.attr(name) {
        Some(value) if !allowed.contains(&value) => Err(Fault::schema(format!(
            "{name} '{value}' is not valid; use one of {}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

fn create_item(
    store: &mut Store,
    mailbox: &str,
    version: &RequestedVersion,
    op: &Element,
    out: &mut XmlOut,
) -> Result<bool, Fault> {
    let target = op
        .child("SavedItemFolderId")
        .map(distinguished_folder)
        .transpose()?;
    let items = op
        .child("Items")
        .ok_or_else(|| Fault::schema("CreateItem needs Items"))?;
    let parsed: Vec<WireItem> = items
        .children
        .iter()
        .map(|element| parse_item(element, true).map_err(Fault::schema))
        .collect::<Result<_, _>>()?;
    if parsed.is_empty() {
        return Err(Fault::schema("Items must hold at least one item"));
    }
    for item in &parsed {
        check_version(version, None, &item.fields)?;
    }
    let invitations = enum_attr(op, "SendMeetingInvitations", SEND_INVITATIONS)?;
    let mut changed = false;
    open_response(out, "CreateItem");
    for item in parsed {
        let kind = item.kind;
        if target.is_some_and(|folder| folder != kind) {
            item_error(
                out,
                "CreateItem",
                "ErrorInvalidOperation",
                &format!("A {} cannot be saved in this folder.", kind.element()),
            );
            continue;
        }
        if let Some(name) = read_only_field(kind, &item.fields) {
            item_error(
                out,
                "CreateItem",
                "ErrorInvalidPropertySet",
                &format!("{name} is computed by the server and cannot be set."),
            );
            continue;
        }
        if kind == ItemKind::CalendarItem
            && let Some(problem) = calendar::recurrence_problem(&item.fields)
        {
            item_error(
                out,
                "CreateItem",
                "ErrorCalendarInvalidRecurrence",
                &format!("The recurrence is not valid: {problem}."),
            );
            continue;
        }
        if kind == ItemKind::CalendarItem && invitations.is_none() {
            item_error(
                out,
                "CreateItem",
                "ErrorSendMeetingInvitationsRequired",
                "The SendMeetingInvitations attribute is required for calendar items.",
            );
            continue;
        }
        let mut item = WireItem { id: None, ..item };
        if kind == ItemKind::CalendarItem {
            // Exchange makes the mailbox owner the organizer of items created in it.
            item.fields.insert(
                "Organizer".into(),
                WireValue::Text(organizer_markup(mailbox)),
            );
        }
        let invitees = match invitations {
            Some("SendOnlyToAll" | "SendToAllAndSaveCopy") if kind == ItemKind::CalendarItem => {
                attendee_addresses(&item.fields)
            }
            _ => Vec::new(),
        };
        if !invitees.is_empty() {
            deliver_invitations(store, mailbox, &item, &invitees);
        }
        let (id, change_key) = store.create(mailbox, kind, item);
        changed = true;
        open_success(out, "CreateItem");
        out.open("m:Items", &[]);
        write_id_only(out, kind, &id, &change_key);
        out.close("m:Items");
        close_message(out, "CreateItem");
    }
    close_response(out, "CreateItem");
    Ok(changed)
}

/// Why one ItemChange failed: `(ResponseCode, MessageText)`.
type ChangeError = (&'static str, String);

fn update_item(
    store: &mut Store,
    mailbox: &str,
    version: &RequestedVersion,
    op: &Element,
    out: &mut XmlOut,
) -> Result<bool, Fault> {
    let resolution = op
        .attr("ConflictResolution")
        .ok_or_else(|| Fault::schema("The required attribute 'ConflictResolution' is missing."))?;
    if !matches!(
        resolution,
        "NeverOverwrite" | "AutoResolve" | "AlwaysOverwrite"
    ) {
        return Err(Fault::schema(format!(
            "ConflictResolution '{resolution}' is not valid"
        )));
    }
    let invitations = enum_attr(
        op,
        "SendMeetingInvitationsOrCancellations",
        &[
            "SendToNone",
            "SendOnlyToAll",
            "SendOnlyToChanged",
            "SendToAllAndSaveCopy",
            "SendToChangedAndSaveCopy",
        ],
    )?;
    let changes = op
        .child("ItemChanges")
        .ok_or_else(|| Fault::schema("UpdateItem needs ItemChanges"))?;
    let mut changed = false;
    open_response(out, "UpdateItem");
    for change in changes.children_named("ItemChange") {
        match apply_change(store, mailbox, version, resolution, invitations, change)? {
            Ok(applied) => {
                changed = true;
                open_success(out, "UpdateItem");
                out.open("m:Items", &[]);
                write_id_only(out, applied.kind, &applied.id, &applied.change_key);
                out.close("m:Items");
                out.open("m:ConflictResults", &[]);
                out.text_element("t:Count", &[], &applied.conflicts.to_string());
                out.close("m:ConflictResults");
                close_message(out, "UpdateItem");
            }
            Err((code, text)) => item_error(out, "UpdateItem", code, &text),
        }
    }
    close_response(out, "UpdateItem");
    Ok(changed)
}

/// What one applied ItemChange did.
struct AppliedChange {
    kind: ItemKind,
    id: String,
    change_key: String,
    /// Updates AutoResolve dropped because the server's value wins (`ConflictResults/Count`).
    conflicts: usize,
}

/// Sensitivity levels, least restrictive first.
const SENSITIVITY_LEVELS: &[&str] = &["Normal", "Personal", "Private", "Confidential"];

fn sensitivity_level(fields: &BTreeMap<String, WireValue>) -> usize {
    match fields.get("Sensitivity") {
        Some(WireValue::Text(text)) => SENSITIVITY_LEVELS
            .iter()
            .position(|level| *level == text.trim())
            .unwrap_or(0),
        _ => 0,
    }
}

/// AutoResolve against a newer version keeps the server's value when the update would make
/// the item less private (MS-OXWSCORE: Confidential beats Public). True when `update` is such
/// an update and must be skipped.
fn server_value_wins(kind: ItemKind, current: &StoredItem, update: &Element) -> bool {
    let sensitivity = FieldPath::Field("item:Sensitivity".into());
    let path = update.children.iter().find_map(FieldPath::from_element);
    if path.as_ref() != Some(&sensitivity) {
        return false;
    }
    let current_level = sensitivity_level(&current.fields);
    let new_level = match update.name.as_str() {
        "DeleteItemField" => 0,
        _ => update
            .children
            .iter()
            .find(|c| ItemKind::from_element(&c.name) == Some(kind))
            .and_then(|element| parse_item(element, false).ok())
            .map_or(current_level, |value| sensitivity_level(&value.fields)),
    };
    new_level < current_level
}

/// Applies one ItemChange; the outer error is a schema fault, the inner one a per-item error.
/// ConflictResolution: with a stale ChangeKey, `NeverOverwrite` fails with
/// ErrorIrresolvableConflict, `AutoResolve` applies the change except where the server's
/// value wins, `AlwaysOverwrite` applies it all. A missing ChangeKey fails under every value.
fn apply_change(
    store: &mut Store,
    mailbox: &str,
    version: &RequestedVersion,
    resolution: &str,
    invitations: Option<&str>,
    change: &Element,
) -> Result<Result<AppliedChange, ChangeError>, Fault> {
    let item_ref = change
        .children
        .iter()
        .map(ItemRef::from_element)
        .find_map(Result::transpose)
        .transpose()
        .map_err(Fault::schema)?
        .ok_or_else(|| Fault::schema("ItemChange needs an ItemId"))?;
    let updates = change
        .child("Updates")
        .ok_or_else(|| Fault::schema("ItemChange needs Updates"))?;
    let resolved = match store.mailboxes.get(mailbox) {
        Some(found) => match calendar::resolve(found, &item_ref) {
            Ok(resolved) => resolved,
            Err(error) => return Ok(Err(error)),
        },
        None => {
            return Ok(Err((
                "ErrorItemNotFound",
                "The specified object was not found in the store.".into(),
            )));
        }
    };
    let kind = resolved.kind;
    if kind == ItemKind::CalendarItem && invitations.is_none() {
        return Ok(Err((
            "ErrorSendMeetingInvitationsOrCancellationsRequired",
            "The SendMeetingInvitationsOrCancellations attribute is required for calendar items."
                .into(),
        )));
    }
    let sent_key = item_ref.change_key().unwrap_or_default();
    if sent_key.is_empty() {
        return Ok(Err((
            "ErrorChangeKeyRequiredForWriteOperations",
            "When making a request that modifies an item, you must supply its current ChangeKey."
                .into(),
        )));
    }
    let stale = sent_key != resolved.expected_change_key;
    if stale && resolution == "NeverOverwrite" {
        return Ok(Err((
            "ErrorIrresolvableConflict",
            "The change key passed in the request does not match the current change key for the item.".into(),
        )));
    }
    let (current, occurrence) = match &resolved.target {
        Target::Item(id) => {
            let Some((_, stored)) = store.mailboxes.get(mailbox).and_then(|m| m.item(id)) else {
                return Ok(Err((
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.".into(),
                )));
            };
            (stored.clone(), None)
        }
        Target::Occurrence { master, index } => {
            (resolved.view.clone(), Some((master.clone(), *index)))
        }
    };
    let mut updated = current.clone();
    let mut conflicts = 0;
    for update in &updates.children {
        if stale && resolution == "AutoResolve" && server_value_wins(kind, &current, update) {
            conflicts += 1;
            continue;
        }
        if occurrence.is_some()
            && update.children.iter().find_map(FieldPath::from_element)
                == Some(FieldPath::Field("calendar:Recurrence".into()))
        {
            return Ok(Err((
                "ErrorInvalidPropertySet",
                "An occurrence has no recurrence of its own; change the recurring master.".into(),
            )));
        }
        if let Err(error) = apply_update(kind, &mut updated, update)? {
            return Ok(Err(error));
        }
    }
    check_version(version, Some(&current.fields), &updated.fields)?;
    let Some((master_id, index)) = occurrence else {
        if kind == ItemKind::CalendarItem
            && let Some(problem) = calendar::recurrence_problem(&updated.fields)
        {
            return Ok(Err((
                "ErrorCalendarInvalidRecurrence",
                format!("The recurrence is not valid: {problem}."),
            )));
        }
        calendar::reset_edits_if_series_changed(&current, &mut updated);
        let change_key = store
            .replace(mailbox, kind, updated.clone())
            .ok_or_else(|| Fault::schema("item vanished"))?;
        return Ok(Ok(AppliedChange {
            kind,
            id: updated.id,
            change_key,
            conflicts,
        }));
    };
    // The occurrence becomes an exception, kept in its master (which changes with it).
    let mut master = store
        .mailboxes
        .get(mailbox)
        .and_then(|m| m.item(&master_id))
        .map(|(_, item)| item.clone())
        .ok_or_else(|| Fault::schema("item vanished"))?;
    let change_key = store.fresh_change_key();
    calendar::record_exception(&mut master, index, &updated, change_key.clone());
    store
        .replace(mailbox, kind, master)
        .ok_or_else(|| Fault::schema("item vanished"))?;
    Ok(Ok(AppliedChange {
        kind,
        id: updated.id,
        change_key,
        conflicts,
    }))
}

fn apply_update(
    kind: ItemKind,
    item: &mut StoredItem,
    update: &Element,
) -> Result<Result<(), ChangeError>, Fault> {
    let path = update
        .children
        .iter()
        .find_map(FieldPath::from_element)
        .ok_or_else(|| {
            Fault::schema(format!(
                "{} needs a FieldURI, IndexedFieldURI or ExtendedFieldURI",
                update.name
            ))
        })?;
    if path == FieldPath::Field("calendar:Organizer".into()) {
        return Ok(Err((
            "ErrorInvalidPropertySet",
            "The organizer of a calendar item is read-only.".into(),
        )));
    }
    if let Some(name) = field_for_path(kind, &path)
        && kind == ItemKind::CalendarItem
        && CALENDAR_READ_ONLY.contains(&name.as_str())
    {
        return Ok(Err((
            "ErrorInvalidPropertySet",
            format!("{name} is computed by the server and cannot be set."),
        )));
    }
    let invalid = || {
        (
            "ErrorInvalidPropertySet",
            format!(
                "The property path {path:?} is not supported for a {}.",
                kind.element()
            ),
        )
    };
    match update.name.as_str() {
        "DeleteItemField" => {
            match &path {
                FieldPath::Extended(key) => item.extended.retain(|(k, _)| k != key),
                other => {
                    let Some(name) = field_for_path(kind, other) else {
                        return Ok(Err(invalid()));
                    };
                    item.fields.remove(&name);
                }
            }
            Ok(Ok(()))
        }
        "SetItemField" | "AppendToItemField" => {
            let element = update
                .children
                .iter()
                .find(|c| ItemKind::from_element(&c.name).is_some())
                .ok_or_else(|| Fault::schema(format!("{} needs an item element", update.name)))?;
            let value = parse_item(element, true).map_err(Fault::schema)?;
            if value.kind != kind {
                return Ok(Err((
                    "ErrorInvalidPropertySet",
                    format!(
                        "A {} cannot be updated with a {}.",
                        kind.element(),
                        value.kind.element()
                    ),
                )));
            }
            match &path {
                FieldPath::Extended(key) => {
                    let Some((_, text)) = value.extended.iter().find(|(k, _)| k == key) else {
                        return Ok(Err((
                            "ErrorIncorrectUpdatePropertyCount",
                            "The update must carry the property named by its path.".into(),
                        )));
                    };
                    item.extended.retain(|(k, _)| k != key);
                    item.extended.push((key.clone(), text.clone()));
                }
                other => {
                    let Some(name) = field_for_path(kind, other) else {
                        return Ok(Err(invalid()));
                    };
                    let Some(new_value) = value.fields.get(&name) else {
                        return Ok(Err((
                            "ErrorIncorrectUpdatePropertyCount",
                            "The update must carry the property named by its path.".into(),
                        )));
                    };
                    let new_value = if update.name == "AppendToItemField" {
                        append(&name, item.fields.get(&name), new_value)?
                    } else {
                        new_value.clone()
                    };
                    item.fields.insert(name, new_value);
                }
            }
            Ok(Ok(()))
        }
        other => Err(Fault::schema(format!("'{other}' is not a valid update"))),
    }
}

fn append(
    name: &str,
    current: Option<&WireValue>,
    addition: &WireValue,
) -> Result<WireValue, Fault> {
    if name != "Body" {
        return Err(Fault {
            code: "ErrorInvalidPropertyForOperation",
            message: format!("AppendToItemField does not support {name}."),
        });
    }
    let current = match current {
        Some(WireValue::Text(text)) => text.clone(),
        _ => String::new(),
    };
    let addition = match addition {
        WireValue::Text(text) => text.clone(),
        WireValue::List(items) => items.join(""),
    };
    Ok(WireValue::Text(current + &addition))
}

fn delete_item(
    store: &mut Store,
    mailbox: &str,
    op: &Element,
    out: &mut XmlOut,
) -> Result<bool, Fault> {
    let delete_type = op
        .attr("DeleteType")
        .ok_or_else(|| Fault::schema("The required attribute 'DeleteType' is missing."))?;
    if !matches!(
        delete_type,
        "HardDelete" | "SoftDelete" | "MoveToDeletedItems"
    ) {
        return Err(Fault::schema(format!(
            "DeleteType '{delete_type}' is not valid"
        )));
    }
    let cancellations = enum_attr(op, "SendMeetingCancellations", SEND_INVITATIONS)?;
    let occurrences = enum_attr(
        op,
        "AffectedTaskOccurrences",
        &["AllOccurrences", "SpecifiedOccurrenceOnly"],
    )?;
    let ids = item_ids(op)?;
    let mut changed = false;
    open_response(out, "DeleteItem");
    for item_ref in ids {
        let resolved = match store.mailboxes.get(mailbox) {
            Some(found) => calendar::resolve(found, &item_ref),
            None => Err((
                "ErrorItemNotFound",
                "The specified object was not found in the store.".into(),
            )),
        };
        let error = match &resolved {
            Err((code, text)) => Some((*code, text.clone())),
            Ok(r) if r.kind == ItemKind::CalendarItem && cancellations.is_none() => Some((
                "ErrorSendMeetingCancellationsRequired",
                "The SendMeetingCancellations attribute is required for calendar items.".into(),
            )),
            Ok(r) if r.kind == ItemKind::Task && occurrences.is_none() => Some((
                "ErrorAffectedTaskOccurrencesRequired",
                "The AffectedTaskOccurrences attribute is required for tasks.".into(),
            )),
            Ok(_) => None,
        };
        match (error, resolved) {
            (Some((code, text)), _) | (None, Err((code, text))) => {
                open_error(out, "DeleteItem", code, &text);
                close_message(out, "DeleteItem");
            }
            (None, Ok(resolved)) => {
                changed |= match resolved.target {
                    Target::Item(id) => store.delete(mailbox, &id),
                    Target::Occurrence { master, index } => {
                        delete_occurrence(store, mailbox, &master, index)
                    }
                };
                open_success(out, "DeleteItem");
                close_message(out, "DeleteItem");
            }
        }
    }
    close_response(out, "DeleteItem");
    Ok(changed)
}

/// Deletes occurrence `index` from the series `master_id` (the master changes with it).
fn delete_occurrence(store: &mut Store, mailbox: &str, master_id: &str, index: u32) -> bool {
    let Some((kind, mut master)) = store
        .mailboxes
        .get(mailbox)
        .and_then(|m| m.item(master_id))
        .map(|(kind, item)| (kind, item.clone()))
    else {
        return false;
    };
    calendar::record_deletion(&mut master, index);
    store.replace(mailbox, kind, master).is_some()
}

fn find_item(
    store: &mut Store,
    mailbox: &str,
    op: &Element,
    out: &mut XmlOut,
) -> Result<(), Fault> {
    if op.attr("Traversal").is_none() {
        return Err(Fault::schema(
            "The required attribute 'Traversal' is missing.",
        ));
    }
    let shape = read_shape(op)?;
    let kind = distinguished_folder(
        op.child("ParentFolderIds")
            .ok_or_else(|| Fault::schema("FindItem needs ParentFolderIds"))?,
    )?;
    let folder = store
        .mailboxes
        .entry(mailbox.to_owned())
        .or_default()
        .folder(kind);
    if let Some(view) = op.child("CalendarView") {
        return calendar_view(kind, folder, view, &shape, out);
    }
    let restriction = op.child("Restriction").map(read_restriction).transpose()?;
    let items: Vec<&StoredItem> = folder
        .items_in_order()
        .into_iter()
        .filter(|item| {
            restriction
                .as_ref()
                .is_none_or(|(path, value)| matches_equal(kind, item, path, value))
        })
        .collect();
    let total = items.len();
    let (offset, max, from_end) = match op.child("IndexedPageItemView") {
        Some(view) => {
            let number = |name: &str| -> Result<Option<usize>, Fault> {
                view.attr(name)
                    .map(|v| {
                        v.trim().parse::<usize>().map_err(|_| {
                            Fault::schema(format!("{name} '{v}' is not a valid number"))
                        })
                    })
                    .transpose()
            };
            let offset = number("Offset")?
                .ok_or_else(|| Fault::schema("IndexedPageItemView needs Offset"))?;
            let from_end = match view.attr("BasePoint") {
                Some("Beginning") => false,
                Some("End") => true,
                _ => {
                    return Err(Fault::schema(
                        "IndexedPageItemView needs BasePoint Beginning or End",
                    ));
                }
            };
            (
                offset,
                number("MaxEntriesReturned")?
                    .unwrap_or(FIND_COUNT_LIMIT)
                    .min(FIND_COUNT_LIMIT),
                from_end,
            )
        }
        None => (0, FIND_COUNT_LIMIT, false),
    };
    let (start, end) = if from_end {
        let end = total.saturating_sub(offset);
        (end.saturating_sub(max), end)
    } else {
        let start = offset.min(total);
        (start, (start + max).min(total))
    };
    let page = &items[start..end];
    let includes_last = if from_end { start == 0 } else { end >= total };
    let next_offset = offset + page.len();
    let fields_shape = Shape {
        all_fields: shape.all_fields,
        additional: shape.additional,
    };
    let shaped_items: Vec<WireItem> = page
        .iter()
        .map(|item| shaped_for_find(kind, &calendar::item_view(kind, item), &fields_shape))
        .collect();
    open_response(out, "FindItem");
    open_success(out, "FindItem");
    out.open(
        "m:RootFolder",
        &[
            ("IndexedPagingOffset", &next_offset.to_string()),
            ("TotalItemsInView", &total.to_string()),
            (
                "IncludesLastItemInRange",
                if includes_last { "true" } else { "false" },
            ),
        ],
    );
    out.open("t:Items", &[]);
    for item in &shaped_items {
        write_item(out, item);
    }
    out.close("t:Items");
    out.close("m:RootFolder");
    close_message(out, "FindItem");
    close_response(out, "FindItem");
    Ok(())
}

/// FindItem with a CalendarView: single calendar items and the occurrences and exceptions of
/// recurring masters that fall in the range (ending on or after StartDate, starting before
/// EndDate), by start, at most `MaxEntriesReturned` of them (`IncludesLastItemInRange` says
/// whether that was all). More than [`FIND_COUNT_LIMIT`] without a smaller
/// `MaxEntriesReturned` is `ErrorExceededFindCountLimit`.
fn calendar_view(
    kind: ItemKind,
    folder: &super::store::Folder,
    view: &Element,
    shape: &Shape,
    out: &mut XmlOut,
) -> Result<(), Fault> {
    let instant = |name: &str| -> Result<DateTime<Utc>, Fault> {
        let text = view
            .attr(name)
            .ok_or_else(|| Fault::schema(format!("CalendarView needs {name}")))?;
        DateTime::parse_from_rfc3339(text.trim())
            .map(|dt| dt.with_timezone(&Utc))
            .map_err(|_| Fault::schema(format!("CalendarView {name} '{text}' is not a dateTime")))
    };
    let (start, end) = (instant("StartDate")?, instant("EndDate")?);
    let max = match view.attr("MaxEntriesReturned") {
        Some(text) => Some(text.trim().parse::<usize>().map_err(|_| {
            Fault::schema(format!("MaxEntriesReturned '{text}' is not a valid number"))
        })?),
        None => None,
    };
    let refusal = if kind != ItemKind::CalendarItem {
        Some((
            "ErrorCalendarFolderIsInvalidForCalendarView",
            "A CalendarView can only be used on a calendar folder.",
        ))
    } else if end < start {
        Some((
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "The EndDate of the CalendarView is earlier than its StartDate.",
        ))
    } else if (end - start).num_days() > CALENDAR_VIEW_MAX_DAYS {
        Some((
            "ErrorCalendarViewRangeTooBig",
            "The CalendarView range may span at most two years.",
        ))
    } else {
        None
    };
    open_response(out, "FindItem");
    if let Some((code, text)) = refusal {
        open_error(out, "FindItem", code, text);
        close_message(out, "FindItem");
        close_response(out, "FindItem");
        return Ok(());
    }
    let items = folder.items_in_order();
    let matching = calendar::expand(&items, start, end);
    let total = matching.len();
    // A CalendarView cannot be paged: more than the find count limit without a
    // MaxEntriesReturned within it is refused, as Exchange does.
    if total > FIND_COUNT_LIMIT && max.is_none_or(|max| max > FIND_COUNT_LIMIT) {
        open_error(
            out,
            "FindItem",
            "ErrorExceededFindCountLimit",
            "You have exceeded the maximum number of objects that can be returned for the find operation. Use paging to reduce the result size and try your request again.",
        );
        out.open("m:MessageXml", &[]);
        out.text_element(
            "t:Value",
            &[("Name", "PolicyLimit")],
            &FIND_COUNT_LIMIT.to_string(),
        );
        out.close("m:MessageXml");
        close_message(out, "FindItem");
        close_response(out, "FindItem");
        return Ok(());
    }
    let shown = max.unwrap_or(total).min(total);
    open_success(out, "FindItem");
    out.open(
        "m:RootFolder",
        &[
            ("TotalItemsInView", &total.to_string()),
            (
                "IncludesLastItemInRange",
                if shown == total { "true" } else { "false" },
            ),
        ],
    );
    out.open("t:Items", &[]);
    for item in &matching[..shown] {
        write_item(out, &shaped_for_find(kind, item, shape));
    }
    out.close("t:Items");
    out.close("m:RootFolder");
    close_message(out, "FindItem");
    close_response(out, "FindItem");
    Ok(())
}

/// Reads the one restriction the emulator supports: `t:IsEqualTo` of a path and a constant.
fn read_restriction(restriction: &Element) -> Result<(FieldPath, String), Fault> {
    let unsupported = || Fault {
        code: "ErrorUnsupportedQueryFilter",
        message: "This EWS emulator supports only an IsEqualTo restriction with a Constant.".into(),
    };
    let expression = restriction
        .children
        .first()
        .filter(|e| e.name == "IsEqualTo")
        .ok_or_else(unsupported)?;
    let path = expression
        .children
        .iter()
        .find_map(FieldPath::from_element)
        .ok_or_else(unsupported)?;
    let value = expression
        .path(&["FieldURIOrConstant", "Constant"])
        .and_then(|c| c.attr("Value"))
        .ok_or_else(unsupported)?;
    Ok((path, value.to_owned()))
}

/// Whether an item's property at `path` equals `value` (text comparison).
fn matches_equal(kind: ItemKind, item: &StoredItem, path: &FieldPath, value: &str) -> bool {
    match path {
        FieldPath::Extended(key) => item.extended.iter().any(|(k, v)| k == key && v == value),
        other => field_for_path(kind, other)
            .and_then(|name| item.fields.get(&name))
            .is_some_and(|v| matches!(v, WireValue::Text(text) if text == value)),
    }
}

/// Flattens an item's fields to text, for the direct test helpers.
pub(crate) fn text_fields(item: &StoredItem) -> BTreeMap<String, String> {
    item.fields
        .iter()
        .map(|(name, value)| {
            let text = match value {
                WireValue::Text(text) => text.clone(),
                WireValue::List(items) => items.join(", "),
            };
            (name.clone(), text)
        })
        .collect()
}
