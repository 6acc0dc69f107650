//! Tandem's flat EWS-named fields ⇄ Graph JSON (`contact`, `event`, `todoTask`), so mapping
//! plugins see the same record whichever backend a mailbox is on. The table is in the docs of
//! [`super`]; this module is its only implementation.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json, json};

use super::GraphError;
use crate::exchange::Folder;
use crate::exchange::fields::{
    OPTIONAL_ATTENDEES, ORGANIZER, REQUIRED_ATTENDEES, recurrence as r,
};
use crate::record::{Fields, Value};

/// The single-value extended property holding Tandem's sync id (`PS_PUBLIC_STRINGS`,
/// `TandemSyncId`: the same MAPI property the EWS connector writes).
pub const SYNC_ID_PROPERTY_ID: &str =
    "String {00020329-0000-0000-C000-000000000046} Name TandemSyncId";
/// `applicationName` of the To Do `linkedResource` that carries the sync id (To Do tasks have
/// no extended properties) and, in its `displayName`, the fields To Do has no property for.
pub const TASK_LINK_APPLICATION: &str = "Tandem";

/// How one flat field's value is written in Graph JSON.
#[derive(Clone, Copy)]
enum Conv {
    Text,
    Strings,
    Bool,
    Int,
    /// `{"dateTime", "timeZone"}`.
    Zoned,
    /// An ISO 8601 UTC timestamp string (contact `birthday`).
    Timestamp,
    /// A fixed value set: `(flat, graph)`.
    Enum(&'static [(&'static str, &'static str)]),
    /// `{"contentType": "text", "content"}`.
    Body,
    /// `{"displayName"}`.
    LocationName,
}

const SENSITIVITY: &[(&str, &str)] = &[
    ("Normal", "normal"),
    ("Personal", "personal"),
    ("Private", "private"),
    ("Confidential", "confidential"),
];
const IMPORTANCE: &[(&str, &str)] = &[("Low", "low"), ("Normal", "normal"), ("High", "high")];
const SHOW_AS: &[(&str, &str)] = &[
    ("Free", "free"),
    ("Tentative", "tentative"),
    ("Busy", "busy"),
    ("OOF", "oof"),
    ("WorkingElsewhere", "workingElsewhere"),
    ("NoData", "unknown"),
];
const TASK_STATUS: &[(&str, &str)] = &[
    ("NotStarted", "notStarted"),
    ("InProgress", "inProgress"),
    ("Completed", "completed"),
    ("WaitingOnOthers", "waitingOnOthers"),
    ("Deferred", "deferred"),
];

const CONTACT_PLAIN: &[(&str, &str, Conv)] = &[
    ("GivenName", "givenName", Conv::Text),
    ("Surname", "surname", Conv::Text),
    ("MiddleName", "middleName", Conv::Text),
    ("DisplayName", "displayName", Conv::Text),
    ("FileAs", "fileAs", Conv::Text),
    ("Initials", "initials", Conv::Text),
    ("Nickname", "nickName", Conv::Text),
    ("CompanyName", "companyName", Conv::Text),
    ("JobTitle", "jobTitle", Conv::Text),
    ("Department", "department", Conv::Text),
    ("OfficeLocation", "officeLocation", Conv::Text),
    ("Profession", "profession", Conv::Text),
    ("Manager", "manager", Conv::Text),
    ("AssistantName", "assistantName", Conv::Text),
    ("SpouseName", "spouseName", Conv::Text),
    ("Generation", "generation", Conv::Text),
    ("BusinessHomePage", "businessHomePage", Conv::Text),
    ("MobilePhone", "mobilePhone", Conv::Text),
    ("Birthday", "birthday", Conv::Timestamp),
    ("Body", "personalNotes", Conv::Text),
    ("Categories", "categories", Conv::Strings),
];

const EVENT_PLAIN: &[(&str, &str, Conv)] = &[
    ("Subject", "subject", Conv::Text),
    ("Body", "body", Conv::Body),
    ("Start", "start", Conv::Zoned),
    ("End", "end", Conv::Zoned),
    ("IsAllDayEvent", "isAllDay", Conv::Bool),
    ("Location", "location", Conv::LocationName),
    ("Sensitivity", "sensitivity", Conv::Enum(SENSITIVITY)),
    ("Importance", "importance", Conv::Enum(IMPORTANCE)),
    ("Categories", "categories", Conv::Strings),
    ("LegacyFreeBusyStatus", "showAs", Conv::Enum(SHOW_AS)),
    ("ReminderIsSet", "isReminderOn", Conv::Bool),
    (
        "ReminderMinutesBeforeStart",
        "reminderMinutesBeforeStart",
        Conv::Int,
    ),
];

const TASK_PLAIN: &[(&str, &str, Conv)] = &[
    ("Subject", "title", Conv::Text),
    ("Body", "body", Conv::Body),
    ("StartDate", "startDateTime", Conv::Zoned),
    ("DueDate", "dueDateTime", Conv::Zoned),
    ("CompleteDate", "completedDateTime", Conv::Zoned),
    ("Status", "status", Conv::Enum(TASK_STATUS)),
    ("Importance", "importance", Conv::Enum(IMPORTANCE)),
    ("Categories", "categories", Conv::Strings),
    ("ReminderIsSet", "isReminderOn", Conv::Bool),
];

/// Contact fields Graph has no property for, kept in MAPI properties through
/// single-value extended properties (`flat`, property id, integer codes for enums).
/// Names and the integer codes MAPI stores for them.
type Codes = &'static [(&'static str, &'static str)];

const CONTACT_EXTENDED: &[(&str, &str, Option<Codes>)] = &[
    (
        "Sensitivity",
        "Integer 0x0036",
        Some(&[
            ("Normal", "0"),
            ("Personal", "1"),
            ("Private", "2"),
            ("Confidential", "3"),
        ]),
    ),
    (
        "Importance",
        "Integer 0x0017",
        Some(&[("Low", "0"), ("Normal", "1"), ("High", "2")]),
    ),
    ("AssistantPhone", "String 0x3A2E", None),
    ("BusinessFax", "String 0x3A24", None),
    ("Callback", "String 0x3A02", None),
    ("CarPhone", "String 0x3A1E", None),
    ("CompanyMainPhone", "String 0x3A57", None),
    ("HomeFax", "String 0x3A25", None),
    ("Isdn", "String 0x3A2D", None),
    ("OtherFax", "String 0x3A23", None),
    ("OtherTelephone", "String 0x3A1F", None),
    ("Pager", "String 0x3A21", None),
    ("PrimaryPhone", "String 0x3A1A", None),
    ("RadioPhone", "String 0x3A1D", None),
    ("Telex", "String 0x3A2C", None),
    ("TtyTddPhone", "String 0x3A4B", None),
];

/// Task fields To Do has no property for; kept as JSON in the Tandem linkedResource.
const TASK_KEPT: &[&str] = &[
    "PercentComplete",
    "Sensitivity",
    "ReminderMinutesBeforeStart",
    "Mileage",
    "BillingInformation",
];

/// Contact list properties filled by position from numbered flat fields.
const CONTACT_LISTS: &[(&str, &[&str])] = &[
    (
        "emailAddresses",
        &["EmailAddress1", "EmailAddress2", "EmailAddress3"],
    ),
    ("businessPhones", &["BusinessPhone", "BusinessPhone2"]),
    ("homePhones", &["HomePhone", "HomePhone2"]),
    ("imAddresses", &["ImAddress1", "ImAddress2", "ImAddress3"]),
];
const ADDRESSES: &[(&str, &str)] = &[
    ("Business", "businessAddress"),
    ("Home", "homeAddress"),
    ("Other", "otherAddress"),
];
const ADDRESS_PARTS: &[(&str, &str)] = &[
    ("Street", "street"),
    ("City", "city"),
    ("State", "state"),
    ("CountryOrRegion", "countryOrRegion"),
    ("PostalCode", "postalCode"),
];

const PATTERNS: &[(&str, &str)] = &[
    ("Daily", "daily"),
    ("Weekly", "weekly"),
    ("AbsoluteMonthly", "absoluteMonthly"),
    ("RelativeMonthly", "relativeMonthly"),
    ("AbsoluteYearly", "absoluteYearly"),
    ("RelativeYearly", "relativeYearly"),
];
const WEEK_DAYS: &[&str] = &[
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const WEEK_INDEXES: &[(&str, &str)] = &[
    ("First", "first"),
    ("Second", "second"),
    ("Third", "third"),
    ("Fourth", "fourth"),
    ("Last", "last"),
];

fn plain_table(folder: Folder) -> &'static [(&'static str, &'static str, Conv)] {
    match folder {
        Folder::Contacts => CONTACT_PLAIN,
        Folder::Calendar => EVENT_PLAIN,
        Folder::Tasks => TASK_PLAIN,
    }
}

/// The extended property ids to expand when reading items of `folder` (none for To Do).
pub fn extended_ids(folder: Folder) -> Vec<&'static str> {
    match folder {
        Folder::Contacts => std::iter::once(SYNC_ID_PROPERTY_ID)
            .chain(CONTACT_EXTENDED.iter().map(|e| e.1))
            .collect(),
        Folder::Calendar => vec![SYNC_ID_PROPERTY_ID],
        Folder::Tasks => Vec::new(),
    }
}

/// A Graph request body built from flat fields.
#[derive(Debug, Default)]
pub struct GraphBody {
    pub properties: Map<String, Json>,
}

impl GraphBody {
    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }

    pub fn into_json(self) -> Json {
        Json::Object(self.properties)
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> GraphError {
    GraphError::InvalidValue {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null | Value::List(_) => None,
        Value::Text(text) => Some(text.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::DateTime(dt) => Some(dt.to_rfc3339_opts(SecondsFormat::Secs, true)),
    }
}

fn utc_of(name: &str, value: &Value) -> Result<DateTime<Utc>, GraphError> {
    match value {
        Value::DateTime(dt) => Ok(*dt),
        Value::Text(text) => DateTime::parse_from_rfc3339(text.trim())
            .map(|dt| dt.with_timezone(&Utc))
            .map_err(|_| invalid(name, "expected an RFC 3339 date-time")),
        _ => Err(invalid(name, "expected a date-time")),
    }
}

/// One non-blank value as Graph JSON.
fn to_json(name: &str, conv: Conv, value: &Value) -> Result<Json, GraphError> {
    Ok(match conv {
        Conv::Text => {
            json!(scalar_text(value).ok_or_else(|| invalid(name, "expected a plain value"))?)
        }
        Conv::Strings => match value {
            Value::List(items) => Json::Array(
                items
                    .iter()
                    .filter(|v| !v.is_blank())
                    .filter_map(scalar_text)
                    .map(Json::String)
                    .collect(),
            ),
            other => json!([scalar_text(other).ok_or_else(|| invalid(name, "expected text"))?]),
        },
        Conv::Bool => match value {
            Value::Boolean(b) => json!(b),
            Value::Text(t) if matches!(t.trim(), "true" | "false") => json!(t.trim() == "true"),
            _ => return Err(invalid(name, "expected true or false")),
        },
        Conv::Int => match value {
            Value::Integer(n) => json!(n),
            Value::Number(n) if n.fract() == 0.0 => json!(*n as i64),
            Value::Text(t) if t.trim().parse::<i64>().is_ok() => {
                json!(t.trim().parse::<i64>().unwrap_or_default())
            }
            _ => return Err(invalid(name, "expected a whole number")),
        },
        Conv::Zoned => {
            let utc = utc_of(name, value)?;
            json!({"dateTime": utc.format("%Y-%m-%dT%H:%M:%S").to_string(), "timeZone": "UTC"})
        }
        Conv::Timestamp => json!(utc_of(name, value)?.to_rfc3339_opts(SecondsFormat::Secs, true)),
        Conv::Enum(values) => {
            let text = scalar_text(value).ok_or_else(|| invalid(name, "expected text"))?;
            let graph = values
                .iter()
                .find(|(flat, _)| flat.eq_ignore_ascii_case(text.trim()))
                .ok_or_else(|| {
                    let allowed: Vec<&str> = values.iter().map(|(flat, _)| *flat).collect();
                    invalid(
                        name,
                        format!("'{text}' is not one of {}", allowed.join(", ")),
                    )
                })?;
            json!(graph.1)
        }
        Conv::Body => {
            json!({"contentType": "text", "content": scalar_text(value).ok_or_else(|| invalid(name, "expected text"))?})
        }
        Conv::LocationName => {
            json!({"displayName": scalar_text(value).ok_or_else(|| invalid(name, "expected text"))?})
        }
    })
}

/// Which special group a field belongs to (not a plain property).
fn is_grouped(folder: Folder, name: &str) -> bool {
    match folder {
        Folder::Contacts => {
            CONTACT_LISTS.iter().any(|(_, keys)| keys.contains(&name))
                || address_slot(name).is_some()
                || CONTACT_EXTENDED.iter().any(|e| e.0 == name)
        }
        Folder::Calendar => {
            name == REQUIRED_ATTENDEES
                || name == OPTIONAL_ATTENDEES
                || name == ORGANIZER
                || name == "UID"
                || name.starts_with(r::PREFIX)
        }
        Folder::Tasks => TASK_KEPT.contains(&name),
    }
}

fn address_slot(name: &str) -> Option<(&'static str, &'static str)> {
    ADDRESSES.iter().find_map(|(prefix, property)| {
        let rest = name.strip_prefix(prefix)?;
        ADDRESS_PARTS
            .iter()
            .find(|(part, _)| *part == rest)
            .map(|(_, key)| (*property, *key))
    })
}

/// Whether writing `fields` needs the item's current JSON (a list, address, attendee set or
/// kept-field set written in part must keep its other members).
pub fn needs_current(folder: Folder, fields: &Fields) -> bool {
    match folder {
        Folder::Contacts => {
            let partial_list = CONTACT_LISTS.iter().any(|(_, keys)| {
                let given = keys.iter().filter(|k| fields.contains_key(**k)).count();
                given > 0 && given < keys.len()
            });
            let partial_address = ADDRESSES.iter().any(|(prefix, _)| {
                let given = ADDRESS_PARTS
                    .iter()
                    .filter(|(part, _)| fields.contains_key(&format!("{prefix}{part}")))
                    .count();
                given > 0 && given < ADDRESS_PARTS.len()
            });
            partial_list || partial_address
        }
        Folder::Calendar => {
            fields.contains_key(REQUIRED_ATTENDEES) != fields.contains_key(OPTIONAL_ATTENDEES)
        }
        Folder::Tasks => TASK_KEPT.iter().any(|k| fields.contains_key(*k)),
    }
}

/// The Graph body for `fields`. On create (`current` is `None` and `creating`), blank values
/// are left out; on update they clear the property. `current` is the item as read when
/// [`needs_current`] says so. `sync_id` is set on create.
pub fn to_graph(
    folder: Folder,
    fields: &Fields,
    current: Option<&Json>,
    creating: bool,
    sync_id: Option<&str>,
) -> Result<GraphBody, GraphError> {
    let mut body = GraphBody::default();
    let mut extended: Vec<Json> = Vec::new();
    for (name, value) in fields {
        if is_grouped(folder, name) {
            continue;
        }
        let (_, property, conv) = plain_table(folder)
            .iter()
            .find(|(flat, _, _)| *flat == name)
            .ok_or_else(|| GraphError::UnknownField(name.to_owned()))?;
        if value.is_blank() || matches!(value, Value::List(l) if l.iter().all(Value::is_blank)) {
            if !creating {
                body.properties.insert(
                    (*property).into(),
                    if matches!(conv, Conv::Strings) {
                        json!([])
                    } else {
                        Json::Null
                    },
                );
            }
            continue;
        }
        body.properties
            .insert((*property).into(), to_json(name, *conv, value)?);
    }
    match folder {
        Folder::Contacts => contact_groups(fields, current, creating, &mut body, &mut extended)?,
        Folder::Calendar => event_groups(fields, current, &mut body)?,
        Folder::Tasks => task_kept(fields, current, sync_id, &mut body)?,
    }
    if let (Some(sync_id), true) = (sync_id, folder != Folder::Tasks) {
        extended.push(json!({"id": SYNC_ID_PROPERTY_ID, "value": sync_id}));
    }
    if !extended.is_empty() {
        body.properties.insert(
            "singleValueExtendedProperties".into(),
            Json::Array(extended),
        );
    }
    Ok(body)
}

fn contact_groups(
    fields: &Fields,
    current: Option<&Json>,
    creating: bool,
    body: &mut GraphBody,
    extended: &mut Vec<Json>,
) -> Result<(), GraphError> {
    for (property, keys) in CONTACT_LISTS {
        if !keys.iter().any(|k| fields.contains_key(*k)) {
            continue;
        }
        let emails = *property == "emailAddresses";
        let existing = current
            .map(|c| read_list(c, property, emails))
            .unwrap_or_default();
        let mut values = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let text = match fields.get(*key) {
                Some(value) if value.is_blank() => None,
                Some(value) => {
                    Some(scalar_text(value).ok_or_else(|| invalid(key, "expected text"))?)
                }
                None => existing.get(index).cloned().flatten(),
            };
            if let Some(text) = text {
                values.push(if emails {
                    json!({"address": text, "name": text})
                } else {
                    json!(text)
                });
            }
        }
        if !(creating && values.is_empty()) {
            body.properties
                .insert((*property).into(), Json::Array(values));
        }
    }
    for (prefix, property) in ADDRESSES {
        if !ADDRESS_PARTS
            .iter()
            .any(|(part, _)| fields.contains_key(&format!("{prefix}{part}")))
        {
            continue;
        }
        let mut address = current
            .and_then(|c| c.get(*property))
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        for (part, key) in ADDRESS_PARTS {
            let name = format!("{prefix}{part}");
            match fields.get(&name) {
                Some(value) if value.is_blank() => {
                    address.remove(*key);
                }
                Some(value) => {
                    address.insert(
                        (*key).into(),
                        json!(scalar_text(value).ok_or_else(|| invalid(&name, "expected text"))?),
                    );
                }
                None => {}
            }
        }
        address.retain(|_, v| !v.is_null() && v.as_str() != Some(""));
        if !(creating && address.is_empty()) {
            body.properties
                .insert((*property).into(), Json::Object(address));
        }
    }
    for (flat, id, codes) in CONTACT_EXTENDED {
        let Some(value) = fields.get(*flat) else {
            continue;
        };
        let text = if value.is_blank() {
            if creating {
                continue;
            }
            String::new()
        } else {
            let text = scalar_text(value).ok_or_else(|| invalid(flat, "expected text"))?;
            match codes {
                Some(codes) => codes
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
                    .map(|(_, code)| (*code).to_owned())
                    .ok_or_else(|| invalid(flat, format!("'{text}' is not a known value")))?,
                None => text,
            }
        };
        extended.push(json!({"id": id, "value": text}));
    }
    Ok(())
}

/// A list property as positional texts (email addresses by `address`).
fn read_list(item: &Json, property: &str, emails: bool) -> Vec<Option<String>> {
    item.get(property)
        .and_then(Json::as_array)
        .map(|list| {
            list.iter()
                .map(|entry| {
                    let text = if emails {
                        entry.get("address").and_then(Json::as_str)
                    } else {
                        entry.as_str()
                    };
                    text.filter(|t| !t.is_empty()).map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn texts(name: &str, value: &Value) -> Result<Vec<String>, GraphError> {
    match value {
        Value::List(items) => items
            .iter()
            .filter(|v| !v.is_blank())
            .map(|v| {
                scalar_text(v).ok_or_else(|| invalid(name, "list entries must be plain values"))
            })
            .collect(),
        v if v.is_blank() => Ok(Vec::new()),
        v => Ok(vec![
            scalar_text(v).ok_or_else(|| invalid(name, "expected addresses"))?,
        ]),
    }
}

fn event_groups(
    fields: &Fields,
    current: Option<&Json>,
    body: &mut GraphBody,
) -> Result<(), GraphError> {
    // Organizer and UID are read-only in Graph: what was read may be written back unchanged.
    if fields.contains_key(REQUIRED_ATTENDEES) || fields.contains_key(OPTIONAL_ATTENDEES) {
        let existing: Vec<Json> = current
            .and_then(|c| c.get("attendees"))
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let mut attendees: Vec<Json> = Vec::new();
        for (field, kind) in [
            (REQUIRED_ATTENDEES, "required"),
            (OPTIONAL_ATTENDEES, "optional"),
        ] {
            match fields.get(field) {
                Some(value) => {
                    for address in texts(field, value)? {
                        attendees.push(json!({"type": kind, "emailAddress": {"address": address, "name": address}}));
                    }
                }
                None => attendees.extend(
                    existing
                        .iter()
                        .filter(|a| a.get("type").and_then(Json::as_str) == Some(kind))
                        .cloned(),
                ),
            }
        }
        // Resources are not flat fields: keep them.
        attendees.extend(
            existing
                .iter()
                .filter(|a| a.get("type").and_then(Json::as_str) == Some("resource"))
                .cloned(),
        );
        body.properties
            .insert("attendees".into(), Json::Array(attendees));
    }
    if r::ALL.iter().any(|f| fields.contains_key(*f)) {
        body.properties
            .insert("recurrence".into(), recurrence_json(fields)?);
    }
    Ok(())
}

fn given<'a>(fields: &'a Fields, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_blank())
}

fn integer(fields: &Fields, name: &str) -> Result<Option<i64>, GraphError> {
    given(fields, name)
        .map(|value| match value {
            Value::Integer(n) => Ok(*n),
            Value::Number(n) if n.fract() == 0.0 => Ok(*n as i64),
            Value::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| invalid(name, "expected a whole number")),
            _ => Err(invalid(name, "expected a whole number")),
        })
        .transpose()
}

fn date(fields: &Fields, name: &str) -> Result<Option<NaiveDate>, GraphError> {
    given(fields, name)
        .map(|value| match value {
            Value::DateTime(dt) => Ok(dt.date_naive()),
            Value::Text(t) => NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
                .or_else(|_| {
                    DateTime::parse_from_rfc3339(t.trim())
                        .map(|d| d.with_timezone(&Utc).date_naive())
                })
                .map_err(|_| invalid(name, "expected a date YYYY-MM-DD")),
            _ => Err(invalid(name, "expected a date YYYY-MM-DD")),
        })
        .transpose()
}

fn recurrence_json(fields: &Fields) -> Result<Json, GraphError> {
    if r::ALL.iter().all(|f| given(fields, f).is_none()) {
        return Ok(Json::Null);
    }
    let pattern_text = given(fields, r::PATTERN).and_then(scalar_text).ok_or_else(|| {
        invalid(r::PATTERN, "a recurrence needs Recurrence.Pattern (and Recurrence.StartDate); set all Recurrence.* fields together")
    })?;
    let (flat_pattern, graph_pattern) = PATTERNS
        .iter()
        .find(|(flat, _)| *flat == pattern_text.trim())
        .ok_or_else(|| {
            invalid(
                r::PATTERN,
                format!("'{pattern_text}' is not a recurrence pattern"),
            )
        })?;
    let start = date(fields, r::START_DATE)?
        .ok_or_else(|| invalid(r::START_DATE, "a recurrence needs Recurrence.StartDate"))?;
    let yearly = flat_pattern.ends_with("Yearly");
    let relative = flat_pattern.starts_with("Relative");
    let mut pattern = Map::new();
    pattern.insert("type".into(), json!(graph_pattern));
    let interval = integer(fields, r::INTERVAL)?.unwrap_or(1);
    if interval < 1 {
        return Err(invalid(r::INTERVAL, "must be at least 1"));
    }
    pattern.insert("interval".into(), json!(if yearly { 1 } else { interval }));
    if *flat_pattern == "Weekly" || relative {
        let days = texts(
            r::DAYS_OF_WEEK,
            given(fields, r::DAYS_OF_WEEK).unwrap_or(&Value::Null),
        )?;
        if days.is_empty() {
            return Err(invalid(
                r::DAYS_OF_WEEK,
                "this pattern needs days of the week",
            ));
        }
        let mut graph_days: Vec<String> = Vec::new();
        for day in &days {
            let expanded: Vec<&str> =
                match day.as_str() {
                    "Day" => WEEK_DAYS.to_vec(),
                    "Weekday" => WEEK_DAYS[1..6].to_vec(),
                    "WeekendDay" => vec!["Sunday", "Saturday"],
                    other => vec![*WEEK_DAYS.iter().find(|d| **d == other).ok_or_else(|| {
                        invalid(r::DAYS_OF_WEEK, format!("'{other}' is not a day"))
                    })?],
                };
            graph_days.extend(expanded.iter().map(|d| d.to_ascii_lowercase()));
        }
        pattern.insert("daysOfWeek".into(), json!(graph_days));
    }
    if let Some(first) = given(fields, r::FIRST_DAY_OF_WEEK).and_then(scalar_text) {
        pattern.insert("firstDayOfWeek".into(), json!(first.to_ascii_lowercase()));
    }
    if relative {
        let index = given(fields, r::DAY_OF_WEEK_INDEX)
            .and_then(scalar_text)
            .unwrap_or_else(|| "First".into());
        let graph = WEEK_INDEXES
            .iter()
            .find(|(f, _)| *f == index)
            .ok_or_else(|| invalid(r::DAY_OF_WEEK_INDEX, format!("'{index}' is not First…Last")))?;
        pattern.insert("index".into(), json!(graph.1));
    }
    if flat_pattern.starts_with("Absolute") {
        let day = integer(fields, r::DAY_OF_MONTH)?
            .ok_or_else(|| invalid(r::DAY_OF_MONTH, "this pattern needs a day of the month"))?;
        pattern.insert("dayOfMonth".into(), json!(day));
    }
    if yearly {
        let month = given(fields, r::MONTH)
            .and_then(scalar_text)
            .unwrap_or_default();
        let number = r::MONTHS
            .iter()
            .position(|m| *m == month)
            .ok_or_else(|| invalid(r::MONTH, format!("'{month}' is not January…December")))?;
        pattern.insert("month".into(), json!(number + 1));
    }
    let end = date(fields, r::END_DATE)?;
    let count = integer(fields, r::NUMBER_OF_OCCURRENCES)?;
    let range = match (end, count) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                r::END_DATE,
                "a recurrence ends either on Recurrence.EndDate or after Recurrence.NumberOfOccurrences, not both",
            ));
        }
        (Some(end), None) if end < start => {
            return Err(invalid(r::END_DATE, "is before Recurrence.StartDate"));
        }
        (Some(end), None) => {
            json!({"type": "endDate", "startDate": start.to_string(), "endDate": end.to_string(), "recurrenceTimeZone": "UTC"})
        }
        (None, Some(n)) if n < 1 => {
            return Err(invalid(r::NUMBER_OF_OCCURRENCES, "must be at least 1"));
        }
        (None, Some(n)) => {
            json!({"type": "numbered", "startDate": start.to_string(), "numberOfOccurrences": n, "recurrenceTimeZone": "UTC"})
        }
        (None, None) => {
            json!({"type": "noEnd", "startDate": start.to_string(), "recurrenceTimeZone": "UTC"})
        }
    };
    Ok(json!({"pattern": pattern, "range": range}))
}

/// The Tandem linkedResource of a task, if it has one.
fn tandem_link(item: &Json) -> Option<&Json> {
    item.get("linkedResources")
        .and_then(Json::as_array)?
        .iter()
        .find(|l| l.get("applicationName").and_then(Json::as_str) == Some(TASK_LINK_APPLICATION))
}

fn task_kept(
    fields: &Fields,
    current: Option<&Json>,
    sync_id: Option<&str>,
    body: &mut GraphBody,
) -> Result<(), GraphError> {
    let touched = TASK_KEPT.iter().any(|k| fields.contains_key(*k));
    if !touched && sync_id.is_none() {
        return Ok(());
    }
    let existing_link = current.and_then(tandem_link);
    let mut kept: Fields = existing_link
        .and_then(|l| l.get("displayName"))
        .and_then(Json::as_str)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    for name in TASK_KEPT {
        match fields.get(*name) {
            Some(value) if value.is_blank() => {
                kept.remove(*name);
            }
            Some(value) => {
                kept.insert((*name).to_owned(), value.clone());
            }
            None => {}
        }
    }
    let external_id = sync_id
        .map(str::to_owned)
        .or_else(|| {
            existing_link
                .and_then(|l| l.get("externalId"))
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let text =
        serde_json::to_string(&kept).map_err(|e| invalid("PercentComplete", e.to_string()))?;
    let mut links: Vec<Json> = current
        .and_then(|c| c.get("linkedResources"))
        .and_then(Json::as_array)
        .map(|l| {
            l.iter()
                .filter(|x| {
                    x.get("applicationName").and_then(Json::as_str) != Some(TASK_LINK_APPLICATION)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    links.push(json!({"applicationName": TASK_LINK_APPLICATION, "externalId": external_id, "displayName": text}));
    body.properties
        .insert("linkedResources".into(), Json::Array(links));
    Ok(())
}

/// Reads a `dateTimeTimeZone`. UTC and its aliases (and any `dateTime` carrying an offset)
/// become a date-time; another zone is kept as text `"{dateTime} ({timeZone})"` so nothing is
/// lost (the mapping reports it), with a warning.
fn read_zoned(value: &Json) -> Option<Value> {
    let text = value.get("dateTime").and_then(Json::as_str)?;
    let zone = value
        .get("timeZone")
        .and_then(Json::as_str)
        .unwrap_or("UTC");
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(text) {
        return Some(Value::DateTime(with_offset.with_timezone(&Utc)));
    }
    let utc_like = matches!(
        zone.trim().to_ascii_lowercase().as_str(),
        "utc"
            | "etc/utc"
            | "etc/gmt"
            | "gmt"
            | "z"
            | "coordinated universal time"
            | "tzone://microsoft/utc"
    );
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    if utc_like {
        Some(Value::DateTime(naive.and_utc()))
    } else {
        tracing::warn!(
            zone,
            "a Graph date-time is in a time zone Tandem does not convert; kept as text"
        );
        Some(Value::Text(format!("{text} ({zone})")))
    }
}

fn from_json(conv: Conv, value: &Json) -> Option<Value> {
    match conv {
        Conv::Text => value
            .as_str()
            .filter(|t| !t.is_empty())
            .map(|t| Value::Text(t.to_owned())),
        Conv::Strings => {
            let list: Vec<Value> = value
                .as_array()?
                .iter()
                .filter_map(Json::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| Value::Text(t.to_owned()))
                .collect();
            (!list.is_empty()).then_some(Value::List(list))
        }
        Conv::Bool => value.as_bool().map(Value::Boolean),
        Conv::Int => value.as_i64().map(Value::Integer),
        Conv::Zoned => read_zoned(value),
        Conv::Timestamp => {
            let text = value.as_str()?;
            Some(
                DateTime::parse_from_rfc3339(text)
                    .map(|d| Value::DateTime(d.with_timezone(&Utc)))
                    .unwrap_or_else(|_| Value::Text(text.to_owned())),
            )
        }
        Conv::Enum(values) => {
            let text = value.as_str()?;
            Some(Value::Text(
                values
                    .iter()
                    .find(|(_, g)| g.eq_ignore_ascii_case(text))
                    .map_or(text, |(flat, _)| flat)
                    .to_owned(),
            ))
        }
        Conv::Body => value
            .get("content")
            .and_then(Json::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| Value::Text(t.to_owned())),
        Conv::LocationName => value
            .get("displayName")
            .and_then(Json::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| Value::Text(t.to_owned())),
    }
}

/// The flat fields and the sync id of a Graph item.
pub fn from_graph(folder: Folder, item: &Json) -> (Fields, Option<String>) {
    let mut fields = Fields::new();
    for (flat, property, conv) in plain_table(folder) {
        if let Some(value) = item.get(*property).and_then(|v| from_json(*conv, v)) {
            fields.insert((*flat).to_owned(), value);
        }
    }
    let extended: Vec<(String, String)> = item
        .get("singleValueExtendedProperties")
        .and_then(Json::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| {
                    Some((
                        p.get("id")?.as_str()?.to_owned(),
                        p.get("value")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let extended_value = |id: &str| {
        let canonical = id.split_whitespace().collect::<Vec<_>>().join(" ");
        extended
            .iter()
            .find(|(k, _)| {
                k.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .eq_ignore_ascii_case(&canonical)
            })
            .map(|(_, v)| v.clone())
    };
    let mut sync_id = extended_value(SYNC_ID_PROPERTY_ID);
    match folder {
        Folder::Contacts => {
            for (property, keys) in CONTACT_LISTS {
                for (key, text) in
                    keys.iter()
                        .zip(read_list(item, property, *property == "emailAddresses"))
                {
                    if let Some(text) = text {
                        fields.insert((*key).to_owned(), Value::Text(text));
                    }
                }
            }
            for (prefix, property) in ADDRESSES {
                for (part, key) in ADDRESS_PARTS {
                    if let Some(text) = item
                        .get(*property)
                        .and_then(|a| a.get(*key))
                        .and_then(Json::as_str)
                        .filter(|t| !t.is_empty())
                    {
                        fields.insert(format!("{prefix}{part}"), Value::Text(text.to_owned()));
                    }
                }
            }
            for (flat, id, codes) in CONTACT_EXTENDED {
                let Some(text) = extended_value(id).filter(|t| !t.is_empty()) else {
                    continue;
                };
                let value = match codes {
                    Some(codes) => codes
                        .iter()
                        .find(|(_, code)| *code == text)
                        .map_or(text.clone(), |(name, _)| (*name).to_owned()),
                    None => text,
                };
                fields.insert((*flat).to_owned(), Value::Text(value));
            }
        }
        Folder::Calendar => {
            if let Some(uid) = item.get("iCalUId").and_then(Json::as_str) {
                fields.insert("UID".into(), Value::Text(uid.to_owned()));
            }
            if let Some(organizer) = item
                .pointer("/organizer/emailAddress/address")
                .and_then(Json::as_str)
                .filter(|t| !t.is_empty())
            {
                fields.insert(ORGANIZER.into(), Value::Text(organizer.to_owned()));
            }
            for (field, kind) in [
                (REQUIRED_ATTENDEES, "required"),
                (OPTIONAL_ATTENDEES, "optional"),
            ] {
                let list: Vec<Value> = item
                    .get("attendees")
                    .and_then(Json::as_array)
                    .map(|a| {
                        a.iter()
                            .filter(|x| x.get("type").and_then(Json::as_str) == Some(kind))
                            .filter_map(|x| {
                                x.pointer("/emailAddress/address").and_then(Json::as_str)
                            })
                            .map(|t| Value::Text(t.to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                if !list.is_empty() {
                    fields.insert(field.into(), Value::List(list));
                }
            }
            if let Some(recurrence) = item.get("recurrence").filter(|r| !r.is_null()) {
                read_recurrence(recurrence, &mut fields);
            }
        }
        Folder::Tasks => {
            if let Some(link) = tandem_link(item) {
                sync_id = link
                    .get("externalId")
                    .and_then(Json::as_str)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned);
                let kept: Fields = link
                    .get("displayName")
                    .and_then(Json::as_str)
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or_default();
                for (name, value) in kept {
                    if TASK_KEPT.contains(&name.as_str()) && !value.is_blank() {
                        fields.insert(name, value);
                    }
                }
            }
        }
    }
    (fields, sync_id)
}

fn read_recurrence(recurrence: &Json, fields: &mut Fields) {
    let pattern = recurrence.get("pattern").cloned().unwrap_or(Json::Null);
    let range = recurrence.get("range").cloned().unwrap_or(Json::Null);
    let Some((flat, _)) = pattern
        .get("type")
        .and_then(Json::as_str)
        .and_then(|t| PATTERNS.iter().find(|(_, g)| *g == t))
    else {
        return;
    };
    let text = |s: &str| Value::Text(s.to_owned());
    fields.insert(r::PATTERN.into(), text(flat));
    let yearly = flat.ends_with("Yearly");
    let relative = flat.starts_with("Relative");
    if !yearly && let Some(interval) = pattern.get("interval").and_then(Json::as_i64) {
        fields.insert(r::INTERVAL.into(), Value::Integer(interval));
    }
    let days: Vec<String> = pattern
        .get("daysOfWeek")
        .and_then(Json::as_array)
        .map(|d| {
            d.iter()
                .filter_map(Json::as_str)
                .filter_map(|g| {
                    WEEK_DAYS
                        .iter()
                        .find(|w| w.eq_ignore_ascii_case(g))
                        .map(|w| (*w).to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    if *flat == "Weekly" && !days.is_empty() {
        fields.insert(
            r::DAYS_OF_WEEK.into(),
            Value::List(days.iter().map(|d| text(d)).collect()),
        );
    } else if relative && !days.is_empty() {
        let set: std::collections::BTreeSet<&str> = days.iter().map(String::as_str).collect();
        let weekdays: std::collections::BTreeSet<&str> = WEEK_DAYS[1..6].iter().copied().collect();
        let weekend: std::collections::BTreeSet<&str> =
            ["Sunday", "Saturday"].into_iter().collect();
        let all: std::collections::BTreeSet<&str> = WEEK_DAYS.iter().copied().collect();
        let day = if set == all {
            "Day".to_owned()
        } else if set == weekdays {
            "Weekday".to_owned()
        } else if set == weekend {
            "WeekendDay".to_owned()
        } else {
            days[0].clone()
        };
        fields.insert(r::DAYS_OF_WEEK.into(), Value::List(vec![Value::Text(day)]));
    }
    if let Some(first) = pattern
        .get("firstDayOfWeek")
        .and_then(Json::as_str)
        .filter(|_| *flat == "Weekly")
        && let Some(day) = WEEK_DAYS.iter().find(|w| w.eq_ignore_ascii_case(first))
    {
        fields.insert(r::FIRST_DAY_OF_WEEK.into(), text(day));
    }
    if relative
        && let Some(index) = pattern
            .get("index")
            .and_then(Json::as_str)
            .and_then(|i| WEEK_INDEXES.iter().find(|(_, g)| *g == i))
    {
        fields.insert(r::DAY_OF_WEEK_INDEX.into(), text(index.0));
    }
    if flat.starts_with("Absolute")
        && let Some(day) = pattern.get("dayOfMonth").and_then(Json::as_i64)
    {
        fields.insert(r::DAY_OF_MONTH.into(), Value::Integer(day));
    }
    if yearly
        && let Some(month) = pattern
            .get("month")
            .and_then(Json::as_u64)
            .and_then(|m| r::MONTHS.get((m as usize).wrapping_sub(1)))
    {
        fields.insert(r::MONTH.into(), text(month));
    }
    if let Some(start) = range.get("startDate").and_then(Json::as_str) {
        fields.insert(r::START_DATE.into(), text(start));
    }
    match range.get("type").and_then(Json::as_str) {
        Some("endDate") => {
            if let Some(end) = range.get("endDate").and_then(Json::as_str) {
                fields.insert(r::END_DATE.into(), text(end));
            }
        }
        Some("numbered") => {
            if let Some(n) = range.get("numberOfOccurrences").and_then(Json::as_i64) {
                fields.insert(r::NUMBER_OF_OCCURRENCES.into(), Value::Integer(n));
            }
        }
        _ => {}
    }
}
