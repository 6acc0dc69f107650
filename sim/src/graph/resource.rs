//! The JSON shapes of Graph's `contact`, `event` and `todoTask`: which properties a client may
//! write, how request bodies are checked (unknown properties and bad enum values are a 400, as
//! Graph answers), and how a stored item is rendered with `$select` and `$expand`.

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use serde_json::{Map, Value, json};

use super::ApiError;
use super::store::{ExtendedProperty, Item, Kind};

const CONTACT_WRITABLE: &[&str] = &[
    "assistantName",
    "birthday",
    "businessAddress",
    "businessHomePage",
    "businessPhones",
    "categories",
    "children",
    "companyName",
    "department",
    "displayName",
    "emailAddresses",
    "fileAs",
    "generation",
    "givenName",
    "homeAddress",
    "homePhones",
    "imAddresses",
    "initials",
    "jobTitle",
    "manager",
    "middleName",
    "mobilePhone",
    "nickName",
    "officeLocation",
    "otherAddress",
    "personalNotes",
    "profession",
    "spouseName",
    "surname",
    "title",
    "yomiCompanyName",
    "yomiGivenName",
    "yomiSurname",
];
const EVENT_WRITABLE: &[&str] = &[
    "allowNewTimeProposals",
    "attendees",
    "body",
    "categories",
    "end",
    "hideAttendees",
    "importance",
    "isAllDay",
    "isOnlineMeeting",
    "isReminderOn",
    "location",
    "locations",
    "onlineMeetingProvider",
    "organizer",
    "recurrence",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "sensitivity",
    "showAs",
    "start",
    "subject",
    "transactionId",
];
const TASK_WRITABLE: &[&str] = &[
    "body",
    "categories",
    "completedDateTime",
    "dueDateTime",
    "importance",
    "isReminderOn",
    "recurrence",
    "reminderDateTime",
    "startDateTime",
    "status",
    "title",
    "linkedResources",
];
/// Read-only properties a client may echo back; they are ignored, as Graph does.
const READ_ONLY: &[&str] = &[
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "parentFolderId",
    "iCalUId",
    "uid",
    "isOrganizer",
    "type",
    "seriesMasterId",
    "isCancelled",
    "isDraft",
    "webLink",
    "bodyPreview",
    "hasAttachments",
    "responseStatus",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "onlineMeeting",
    "onlineMeetingUrl",
    "bodyLastModifiedDateTime",
];

fn writable(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Contact => CONTACT_WRITABLE,
        Kind::Event => EVENT_WRITABLE,
        Kind::TodoTask => TASK_WRITABLE,
    }
}

/// Properties every rendered item has, with the value Graph shows when unset.
fn defaults(kind: Kind) -> Vec<(&'static str, Value)> {
    match kind {
        Kind::Contact => {
            let mut d: Vec<(&'static str, Value)> =
                CONTACT_WRITABLE.iter().map(|n| (*n, Value::Null)).collect();
            for list in [
                "businessPhones",
                "categories",
                "children",
                "emailAddresses",
                "homePhones",
                "imAddresses",
            ] {
                set(&mut d, list, json!([]));
            }
            for address in ["businessAddress", "homeAddress", "otherAddress"] {
                set(&mut d, address, json!({}));
            }
            d
        }
        Kind::Event => {
            let mut d: Vec<(&'static str, Value)> =
                EVENT_WRITABLE.iter().map(|n| (*n, Value::Null)).collect();
            set(&mut d, "attendees", json!([]));
            set(&mut d, "categories", json!([]));
            set(&mut d, "locations", json!([]));
            set(
                &mut d,
                "body",
                json!({"contentType": "html", "content": ""}),
            );
            set(&mut d, "importance", json!("normal"));
            set(&mut d, "sensitivity", json!("normal"));
            set(&mut d, "showAs", json!("busy"));
            set(&mut d, "isAllDay", json!(false));
            set(&mut d, "isReminderOn", json!(true));
            set(&mut d, "reminderMinutesBeforeStart", json!(15));
            set(&mut d, "responseRequested", json!(true));
            set(&mut d, "allowNewTimeProposals", json!(true));
            set(&mut d, "hideAttendees", json!(false));
            set(&mut d, "isOnlineMeeting", json!(false));
            set(&mut d, "onlineMeetingProvider", json!("unknown"));
            set(
                &mut d,
                "location",
                json!({"displayName": "", "locationType": "default", "uniqueIdType": "unknown", "address": {}, "coordinates": {}}),
            );
            d.push(("isCancelled", json!(false)));
            d.push(("isDraft", json!(false)));
            d.push(("hasAttachments", json!(false)));
            d.push(("seriesMasterId", Value::Null));
            d
        }
        Kind::TodoTask => {
            let mut d: Vec<(&'static str, Value)> = TASK_WRITABLE
                .iter()
                .filter(|n| **n != "linkedResources")
                .map(|n| (*n, Value::Null))
                .collect();
            set(
                &mut d,
                "body",
                json!({"content": "", "contentType": "text"}),
            );
            set(&mut d, "categories", json!([]));
            set(&mut d, "importance", json!("normal"));
            set(&mut d, "isReminderOn", json!(false));
            set(&mut d, "status", json!("notStarted"));
            d.push(("hasAttachments", json!(false)));
            d
        }
    }
}

fn set(d: &mut [(&'static str, Value)], name: &str, value: Value) {
    if let Some(slot) = d.iter_mut().find(|(n, _)| *n == name) {
        slot.1 = value;
    }
}

fn enum_values(kind: Kind, property: &str) -> Option<&'static [&'static str]> {
    Some(match (kind, property) {
        (Kind::Event, "sensitivity") => &["normal", "personal", "private", "confidential"],
        (_, "importance") => &["low", "normal", "high"],
        (Kind::Event, "showAs") => &[
            "free",
            "tentative",
            "busy",
            "oof",
            "workingElsewhere",
            "unknown",
        ],
        (Kind::TodoTask, "status") => &[
            "notStarted",
            "inProgress",
            "completed",
            "waitingOnOthers",
            "deferred",
        ],
        _ => return None,
    })
}

/// A request body checked against the resource type: the properties to store and the
/// extended properties to set.
#[derive(Debug, Default)]
pub struct CheckedBody {
    pub properties: Map<String, Value>,
    pub extended: Vec<ExtendedProperty>,
}

/// Checks a POST or PATCH body. On create, events need `start` and `end`.
pub fn check_body(kind: Kind, body: &Value, creating: bool) -> Result<CheckedBody, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request(
            "RequestBodyRead",
            "The request body must be a JSON object.",
        ));
    };
    let mut checked = CheckedBody::default();
    for (name, value) in object {
        if name.starts_with("@odata.") || READ_ONLY.contains(&name.as_str()) {
            continue;
        }
        if name == "singleValueExtendedProperties" && kind.has_extended_properties() {
            checked.extended = check_extended(value)?;
            continue;
        }
        if !writable(kind).contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "RequestBodyRead",
                format!(
                    "The property '{name}' does not exist on type 'microsoft.graph.{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                    kind.type_name()
                ),
            ));
        }
        if let (Some(allowed), Some(text)) = (enum_values(kind, name), value.as_str())
            && !allowed.contains(&text)
        {
            return Err(ApiError::bad_request(
                "RequestBodyRead",
                format!("Requested value '{text}' was not found."),
            ));
        }
        let value = if is_date_time_time_zone(kind, name) && !value.is_null() {
            normalize_date_time_time_zone(name, value)?
        } else if name == "linkedResources" {
            check_linked_resources(value)?
        } else {
            value.clone()
        };
        checked.properties.insert(name.clone(), value);
    }
    if kind == Kind::Event {
        if creating {
            for required in ["start", "end"] {
                if checked.properties.get(required).is_none_or(Value::is_null) {
                    return Err(ApiError::bad_request(
                        "ErrorInvalidRequest",
                        format!(
                            "Your request can't be completed. The event's '{required}' is required."
                        ),
                    ));
                }
            }
        }
        check_all_day(&checked.properties)?;
    }
    if kind == Kind::TodoTask
        && checked.properties.get("status").and_then(Value::as_str) == Some("completed")
        && !checked.properties.contains_key("completedDateTime")
    {
        checked.properties.insert(
            "completedDateTime".into(),
            json!({"dateTime": graph_date_time(&Utc::now().naive_utc()), "timeZone": "UTC"}),
        );
    }
    Ok(checked)
}

/// To Do `linkedResources`: objects with webUrl, applicationName, displayName and externalId;
/// each gets an id, as Graph gives it.
fn check_linked_resources(value: &Value) -> Result<Value, ApiError> {
    const FIELDS: &[&str] = &[
        "id",
        "webUrl",
        "applicationName",
        "displayName",
        "externalId",
    ];
    let invalid = |why: String| ApiError::bad_request("RequestBodyRead", why);
    let list = value
        .as_array()
        .ok_or_else(|| invalid("linkedResources must be an array.".into()))?;
    let mut checked = Vec::new();
    for entry in list {
        let mut object = entry
            .as_object()
            .cloned()
            .ok_or_else(|| invalid("a linkedResource must be an object.".into()))?;
        object.retain(|name, _| !name.starts_with("@odata."));
        if let Some(unknown) = object.keys().find(|name| !FIELDS.contains(&name.as_str())) {
            return Err(invalid(format!(
                "The property '{unknown}' does not exist on type 'microsoft.graph.linkedResource'."
            )));
        }
        object
            .entry("id")
            .or_insert_with(|| json!(uuid::Uuid::new_v4().to_string()));
        checked.push(Value::Object(object));
    }
    Ok(Value::Array(checked))
}

fn is_date_time_time_zone(kind: Kind, name: &str) -> bool {
    match kind {
        Kind::Event => matches!(name, "start" | "end"),
        Kind::TodoTask => matches!(
            name,
            "dueDateTime" | "startDateTime" | "completedDateTime" | "reminderDateTime"
        ),
        Kind::Contact => false,
    }
}

/// `{"dateTime": "...", "timeZone": "..."}` with `dateTime` rewritten as Graph returns it
/// (seven fractional digits).
fn normalize_date_time_time_zone(name: &str, value: &Value) -> Result<Value, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "RequestBodyRead",
            format!(
                "'{name}' must be a dateTimeTimeZone: {{\"dateTime\": \"2026-01-31T09:00:00\", \"timeZone\": \"UTC\"}}."
            ),
        )
    };
    let text = value
        .get("dateTime")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let zone = value
        .get("timeZone")
        .and_then(Value::as_str)
        .unwrap_or("UTC");
    let parsed = parse_date_time(text).ok_or_else(invalid)?;
    Ok(json!({"dateTime": graph_date_time(&parsed), "timeZone": zone}))
}

/// Reads `2026-11-26T10:00:00[.fffffff][Z|±hh:mm]`; an offset is converted to UTC.
pub fn parse_date_time(text: &str) -> Option<NaiveDateTime> {
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(text) {
        return Some(with_offset.with_timezone(&Utc).naive_utc());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .ok()
}

/// Graph's dateTime text: `2026-11-26T10:00:00.0000000`.
pub fn graph_date_time(value: &NaiveDateTime) -> String {
    format!(
        "{}.{:07}",
        value.format("%Y-%m-%dT%H:%M:%S"),
        value.nanosecond() % 1_000_000_000 / 100
    )
}

fn check_all_day(properties: &Map<String, Value>) -> Result<(), ApiError> {
    if properties.get("isAllDay").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    for name in ["start", "end"] {
        let at_midnight = properties
            .get(name)
            .and_then(|v| v.get("dateTime"))
            .and_then(Value::as_str)
            .and_then(parse_date_time)
            .is_none_or(|t| t.time() == chrono::NaiveTime::MIN);
        if !at_midnight {
            return Err(ApiError::bad_request(
                "ErrorPropertyValidationFailure",
                "Your request can't be completed. If isAllDay is true, start and end must be at midnight.",
            ));
        }
    }
    Ok(())
}

fn check_extended(value: &Value) -> Result<Vec<ExtendedProperty>, ApiError> {
    let invalid = |why: String| ApiError::bad_request("ErrorInvalidProperty", why);
    let Some(list) = value.as_array() else {
        return Err(invalid(
            "singleValueExtendedProperties must be an array of {\"id\", \"value\"}.".into(),
        ));
    };
    list.iter()
        .map(|entry| {
            let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
            let value = entry.get("value").and_then(Value::as_str);
            if !valid_extended_id(id) {
                return Err(invalid(format!(
                    "The extended property id '{id}' is not valid; use 'String {{guid}} Name NAME' or 'String 0xHHHH'."
                )));
            }
            let Some(value) = value else {
                return Err(invalid(format!("The extended property '{id}' needs a string value.")));
            };
            Ok(ExtendedProperty { id: super::store::canonical_extended_id(id), value: value.to_owned() })
        })
        .collect()
}

/// `Type {guid} Name name`, `Type {guid} Id 0xHHHH` or `Type 0xHHHH`.
pub fn valid_extended_id(id: &str) -> bool {
    const TYPES: &[&str] = &[
        "String",
        "Integer",
        "Long",
        "Short",
        "Boolean",
        "SystemTime",
        "ApplicationTime",
        "Binary",
        "Double",
        "Float",
        "Currency",
        "CLSID",
        "Object",
    ];
    let parts: Vec<&str> = id.split_whitespace().collect();
    let is_tag = |s: &str| {
        s.len() > 2
            && s[..2].eq_ignore_ascii_case("0x")
            && s[2..].chars().all(|c| c.is_ascii_hexdigit())
    };
    let is_guid = |s: &str| {
        s.starts_with('{') && s.ends_with('}') && uuid::Uuid::parse_str(&s[1..s.len() - 1]).is_ok()
    };
    match parts.as_slice() {
        [ty, tag] => TYPES.iter().any(|t| t.eq_ignore_ascii_case(ty)) && is_tag(tag),
        [ty, guid, how, rest @ ..] if !rest.is_empty() => {
            TYPES.iter().any(|t| t.eq_ignore_ascii_case(ty))
                && is_guid(guid)
                && (how.eq_ignore_ascii_case("Name")
                    || (how.eq_ignore_ascii_case("Id") && rest.len() == 1 && is_tag(rest[0])))
        }
        _ => false,
    }
}

/// How to render items: `$select` and `$expand=singleValueExtendedProperties(...)`.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub select: Option<Vec<String>>,
    /// `None`: not expanded; `Some(ids)`: expanded, restricted to `ids` (all when empty).
    pub expand_extended: Option<Vec<String>>,
    /// `$expand=linkedResources` (To Do tasks).
    pub expand_linked: bool,
    /// How event bodies come back: `Some(true)` as text (`Prefer:
    /// outlook.body-content-type="text"`), `Some(false)` as HTML (Graph's default), `None` as
    /// stored (the emulator's own accessors).
    pub text_bodies: Option<bool>,
}

/// An `itemBody` in the content type asked for: text becomes an HTML document (line breaks as
/// `<br>`), HTML becomes its text (tags dropped, entities decoded), as Graph converts them.
fn body_as(body: &Value, text: bool) -> Value {
    let content = body.get("content").and_then(Value::as_str).unwrap_or_default();
    let is_html = body.get("contentType").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("html"));
    match (text, is_html) {
        (true, true) => json!({"contentType": "text", "content": html_to_text(content)}),
        (false, false) => {
            let escaped = content.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            let html = format!(
                "<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\r\n</head>\r\n\
                 <body>\r\n<div>{}</div>\r\n</body>\r\n</html>\r\n",
                escaped.replace("\r\n", "\n").replace('\n', "<br>\r\n")
            );
            json!({"contentType": "html", "content": html})
        }
        _ => body.clone(),
    }
}

/// The text of an HTML body: `<br>` and block ends as line breaks, other tags dropped, the
/// common entities decoded.
fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else { break };
        let tag = rest[open + 1..open + close].trim().to_ascii_lowercase();
        if tag.starts_with("br") || tag == "/div" || tag == "/p" {
            out.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    if !rest.contains('<') {
        out.push_str(rest);
    }
    let text = out.replace("\r\n", "\n").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&nbsp;", " ");
    text.replace("&amp;", "&").trim_matches(|c: char| c == '\n' || c == '\r').to_owned()
}

/// An item as Graph returns it.
pub fn render(item: &Item, parent_id: &str, options: &RenderOptions) -> Value {
    let mut out = Map::new();
    out.insert("@odata.etag".into(), json!(item.etag()));
    out.insert("id".into(), json!(item.id));
    let mut all = Map::new();
    all.insert("createdDateTime".into(), json!(timestamp(&item.created)));
    all.insert(
        "lastModifiedDateTime".into(),
        json!(timestamp(&item.modified)),
    );
    if item.kind.has_change_key() {
        all.insert("changeKey".into(), json!(item.change_key));
    }
    match item.kind {
        Kind::Contact => {
            all.insert("parentFolderId".into(), json!(parent_id));
        }
        Kind::TodoTask => {
            all.insert(
                "bodyLastModifiedDateTime".into(),
                json!(timestamp(&item.modified)),
            );
        }
        Kind::Event => {}
    }
    for (name, value) in defaults(item.kind) {
        all.insert(name.into(), value);
    }
    for (name, value) in &item.properties {
        if name != "linkedResources" {
            all.insert(name.clone(), value.clone());
        }
    }
    if item.kind == Kind::Contact && all.get("displayName").is_none_or(Value::is_null) {
        let given = item
            .properties
            .get("givenName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let surname = item
            .properties
            .get("surname")
            .and_then(Value::as_str)
            .unwrap_or_default();
        all.insert(
            "displayName".into(),
            json!(format!("{given} {surname}").trim()),
        );
    }
    if item.kind == Kind::Event
        && let Some(text) = options.text_bodies
        && let Some(body) = all.get_mut("body")
    {
        *body = body_as(body, text);
    }
    if item.kind == Kind::Event {
        if let Some(body) = all
            .get("body")
            .and_then(|b| b.get("content"))
            .and_then(Value::as_str)
        {
            let preview: String = body.chars().take(255).collect();
            all.insert("bodyPreview".into(), json!(preview));
        }
        let series = all.get("recurrence").is_some_and(|r| !r.is_null());
        all.insert(
            "type".into(),
            json!(if series {
                "seriesMaster"
            } else {
                "singleInstance"
            }),
        );
    }
    match &options.select {
        Some(selected) => {
            for name in selected {
                if let Some(value) = all.remove(name) {
                    out.insert(name.clone(), value);
                }
            }
        }
        None => out.extend(all),
    }
    if options.expand_linked && item.kind == Kind::TodoTask {
        out.insert(
            "linkedResources".into(),
            item.properties
                .get("linkedResources")
                .cloned()
                .unwrap_or_else(|| json!([])),
        );
    }
    if let Some(ids) = &options.expand_extended {
        let chosen: Vec<Value> = item
            .extended
            .iter()
            .filter(|p| {
                ids.is_empty()
                    || ids
                        .iter()
                        .any(|id| super::store::same_extended_id(id, &p.id))
            })
            .map(|p| json!({"id": p.id, "value": p.value}))
            .collect();
        if !chosen.is_empty() {
            out.insert("singleValueExtendedProperties".into(), Value::Array(chosen));
        }
    }
    Value::Object(out)
}

/// `2026-11-26T02:30:00Z`, as Graph writes `createdDateTime` and `lastModifiedDateTime`.
pub fn timestamp(value: &DateTime<Utc>) -> String {
    value.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The UTC span an event covers, read from `start` and `end` (the dateTime is read as UTC
/// whatever its timeZone; see the module docs). A recurring series spans from its start to
/// the end of its range (open-ended when it has none).
pub fn event_span(item: &Item) -> Option<(NaiveDateTime, Option<NaiveDateTime>)> {
    let read = |name: &str| {
        item.properties
            .get(name)
            .and_then(|v| v.get("dateTime"))
            .and_then(Value::as_str)
            .and_then(parse_date_time)
    };
    let start = read("start")?;
    let end = read("end").unwrap_or(start);
    let Some(recurrence) = item.properties.get("recurrence").filter(|r| !r.is_null()) else {
        return Some((start, Some(end)));
    };
    let range = recurrence.get("range");
    let range_type = range
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("noEnd");
    let end_date = range
        .and_then(|r| r.get("endDate"))
        .and_then(Value::as_str)
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    match (range_type, end_date) {
        ("endDate", Some(date)) => {
            Some((start, date.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0))))
        }
        _ => Some((start, None)),
    }
}

/// Whether an event overlaps `[window_start, window_end)`.
pub fn event_in_window(
    item: &Item,
    window_start: &NaiveDateTime,
    window_end: &NaiveDateTime,
) -> bool {
    match event_span(item) {
        Some((start, end)) => {
            start < *window_end
                && end.is_none_or(|end| {
                    end > *window_start || (end == start && start >= *window_start)
                })
        }
        None => false,
    }
}
