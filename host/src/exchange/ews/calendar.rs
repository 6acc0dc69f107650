//! The structured elements of EWS calendar items (organizer, attendees, recurrence) as flat
//! record fields, so mapping plugins see plain values instead of XML.
//!
//! | field                            | value                        | EWS                                   |
//! |----------------------------------|------------------------------|---------------------------------------|
//! | `Organizer`                      | text (SMTP address), read-only | `t:Organizer/t:Mailbox/t:EmailAddress` |
//! | `RequiredAttendees`              | list of texts (SMTP addresses) | `t:RequiredAttendees/t:Attendee/t:Mailbox/t:EmailAddress` |
//! | `OptionalAttendees`              | list of texts (SMTP addresses) | `t:OptionalAttendees/…`               |
//! | `Recurrence.Pattern`             | `Daily`, `Weekly`, `AbsoluteMonthly`, `RelativeMonthly`, `AbsoluteYearly`, `RelativeYearly` | the pattern element (`t:{Pattern}Recurrence`) |
//! | `Recurrence.Interval`            | integer ≥ 1 (Daily, Weekly, both Monthly) | `t:Interval`             |
//! | `Recurrence.DaysOfWeek`          | list of texts: `Sunday`…`Saturday`, `Day`, `Weekday`, `WeekendDay` (Weekly: one or more; Relative*: exactly one) | `t:DaysOfWeek` |
//! | `Recurrence.FirstDayOfWeek`      | text, optional (Weekly)      | `t:FirstDayOfWeek`                    |
//! | `Recurrence.DayOfWeekIndex`      | `First`, `Second`, `Third`, `Fourth`, `Last` (Relative*) | `t:DayOfWeekIndex`  |
//! | `Recurrence.DayOfMonth`          | integer 1–31 (Absolute*)     | `t:DayOfMonth`                        |
//! | `Recurrence.Month`               | `January`…`December` (*Yearly) | `t:Month`                           |
//! | `Recurrence.StartDate`           | text `YYYY-MM-DD` (a date-time is accepted and cut to its UTC date) | range `t:StartDate` |
//! | `Recurrence.EndDate`             | text `YYYY-MM-DD`            | `t:EndDateRecurrence/t:EndDate`       |
//! | `Recurrence.NumberOfOccurrences` | integer ≥ 1                  | `t:NumberedRecurrence/t:NumberOfOccurrences` |
//!
//! The range follows from the fields: `Recurrence.EndDate` → EndDateRecurrence,
//! `Recurrence.NumberOfOccurrences` → NumberedRecurrence, neither → NoEndRecurrence (both is an
//! error). Writing any `Recurrence.*` field writes the whole recurrence, so `Pattern` and
//! `StartDate` must be among them; all of them blank removes the recurrence. Exchange makes
//! the mailbox owner the organizer, so a non-blank `Organizer` cannot be written.

use chrono::{DateTime, NaiveDate, Utc};
use tandem_ews_wire::{self as wire, Element, XmlOut};

use super::EwsError;
use crate::record::{Fields, Value};

pub use crate::exchange::fields::{OPTIONAL_ATTENDEES, ORGANIZER, REQUIRED_ATTENDEES, recurrence};

use recurrence as r;

const DAYS: &[&str] = &[
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Day",
    "Weekday",
    "WeekendDay",
];
const WEEK_INDEXES: &[&str] = &["First", "Second", "Third", "Fourth", "Last"];

/// A pattern's child elements in schema order (types.xsd `*RecurrencePatternType`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Interval,
    /// One or more days (Weekly).
    DaysOfWeek,
    /// Exactly one day (Relative*).
    DayOfWeek,
    FirstDayOfWeek,
    DayOfWeekIndex,
    DayOfMonth,
    Month,
}

impl Part {
    fn field(self) -> &'static str {
        match self {
            Part::Interval => r::INTERVAL,
            Part::DaysOfWeek | Part::DayOfWeek => r::DAYS_OF_WEEK,
            Part::FirstDayOfWeek => r::FIRST_DAY_OF_WEEK,
            Part::DayOfWeekIndex => r::DAY_OF_WEEK_INDEX,
            Part::DayOfMonth => r::DAY_OF_MONTH,
            Part::Month => r::MONTH,
        }
    }

    fn element(self) -> &'static str {
        match self {
            Part::DayOfWeek => "DaysOfWeek",
            other => other.field().trim_start_matches(r::PREFIX),
        }
    }

    fn optional(self) -> bool {
        self == Part::FirstDayOfWeek
    }
}

/// `(Recurrence.Pattern value, its parts in schema order)`.
const PATTERNS: &[(&str, &[Part])] = &[
    (
        "RelativeYearly",
        &[Part::DayOfWeek, Part::DayOfWeekIndex, Part::Month],
    ),
    ("AbsoluteYearly", &[Part::DayOfMonth, Part::Month]),
    (
        "RelativeMonthly",
        &[Part::Interval, Part::DayOfWeek, Part::DayOfWeekIndex],
    ),
    ("AbsoluteMonthly", &[Part::Interval, Part::DayOfMonth]),
    (
        "Weekly",
        &[Part::Interval, Part::DaysOfWeek, Part::FirstDayOfWeek],
    ),
    ("Daily", &[Part::Interval]),
];


/// Whether `name` is a field handled here rather than by the plain element table.
pub(super) fn is_structured(name: &str) -> bool {
    matches!(name, ORGANIZER | REQUIRED_ATTENDEES | OPTIONAL_ATTENDEES)
        || name.starts_with(r::PREFIX)
}

/// The structured elements `fields` writes, in no particular order: `(element, Some(markup))`
/// to set one, `(element, None)` to remove it. Fields not handled here are ignored.
pub(super) fn structured_elements(
    fields: &Fields,
) -> Result<Vec<(&'static str, Option<String>)>, EwsError> {
    let mut elements = Vec::new();
    if let Some(organizer) = fields.get(ORGANIZER)
        && !organizer.is_blank()
    {
        return Err(invalid(
            ORGANIZER,
            "Exchange makes the mailbox owner the organizer; Organizer is read-only, leave it out of the fields to write",
        ));
    }
    for name in [REQUIRED_ATTENDEES, OPTIONAL_ATTENDEES] {
        if let Some(value) = fields.get(name) {
            elements.push((name, attendees_markup(name, value)?));
        }
    }
    if let Some(unknown) = fields
        .keys()
        .find(|name| name.starts_with(r::PREFIX) && !r::ALL.contains(name))
    {
        return Err(EwsError::UnknownField(unknown.to_owned()));
    }
    let given: Vec<(&str, &Value)> = r::ALL
        .iter()
        .filter_map(|name| fields.get(*name).map(|value| (*name, value)))
        .collect();
    if !given.is_empty() {
        let markup = if given.iter().all(|(_, value)| value.is_blank()) {
            None
        } else {
            Some(recurrence_markup(fields)?)
        };
        elements.push(("Recurrence", markup));
    }
    Ok(elements)
}

/// The flat fields of a structured element read from Exchange (`markup` as the wire reader
/// keeps it); unknown or unreadable content gives no fields.
pub(super) fn fields_from_markup(element: &str, markup: &str) -> Fields {
    let mut fields = Fields::new();
    let Ok(tree) = wire::parse_document(markup) else {
        return fields;
    };
    match element {
        ORGANIZER => {
            if let Some(address) = tree
                .path(&["Mailbox", "EmailAddress"])
                .map(|e| e.text.trim())
                .filter(|a| !a.is_empty())
            {
                fields.insert(ORGANIZER.into(), Value::Text(address.to_owned()));
            }
        }
        REQUIRED_ATTENDEES | OPTIONAL_ATTENDEES => {
            let addresses: Vec<Value> = tree
                .children_named("Attendee")
                .filter_map(|a| a.path(&["Mailbox", "EmailAddress"]))
                .map(|e| e.text.trim())
                .filter(|a| !a.is_empty())
                .map(|a| Value::Text(a.to_owned()))
                .collect();
            if !addresses.is_empty() {
                fields.insert(element.to_owned(), Value::List(addresses));
            }
        }
        "Recurrence" => read_recurrence(&tree, &mut fields),
        _ => {}
    }
    fields
}

fn invalid(field: &str, reason: &str) -> EwsError {
    EwsError::InvalidValue {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn texts(name: &str, value: &Value) -> Result<Vec<String>, EwsError> {
    let one = |v: &Value| match v {
        Value::Text(text) => Ok(text.trim().to_owned()),
        _ => Err(invalid(name, "expected text values")),
    };
    let all = match value {
        Value::List(items) => items.iter().map(one).collect::<Result<Vec<_>, _>>()?,
        other => vec![one(other)?],
    };
    Ok(all.into_iter().filter(|t| !t.is_empty()).collect())
}

fn attendees_markup(name: &'static str, value: &Value) -> Result<Option<String>, EwsError> {
    if value.is_blank() {
        return Ok(None);
    }
    let addresses = texts(name, value)?;
    if addresses.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = addresses.iter().find(|a| !a.contains('@')) {
        return Err(invalid(
            name,
            &format!("'{bad}' is not an SMTP address; attendees are a list of email addresses"),
        ));
    }
    let mut out = XmlOut::default();
    out.open(&format!("t:{name}"), &[]);
    for address in addresses {
        out.open("t:Attendee", &[]);
        out.open("t:Mailbox", &[]);
        out.text_element("t:EmailAddress", &[], &address);
        out.close("t:Mailbox");
        out.close("t:Attendee");
    }
    out.close(&format!("t:{name}"));
    Ok(Some(out.finish()))
}

/// A non-blank field of the recurrence, or `None`.
fn given<'a>(fields: &'a Fields, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_blank())
}

fn integer(
    fields: &Fields,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, EwsError> {
    let Some(value) = given(fields, name) else {
        return Ok(None);
    };
    let number = match value {
        Value::Integer(n) => Some(*n),
        Value::Number(n) if n.fract() == 0.0 => Some(*n as i64),
        Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    };
    match number {
        Some(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(invalid(
            name,
            &format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn one_of(fields: &Fields, name: &str, allowed: &[&str]) -> Result<Option<String>, EwsError> {
    let Some(value) = given(fields, name) else {
        return Ok(None);
    };
    let text = value
        .as_text()
        .map(str::trim)
        .ok_or_else(|| invalid(name, "expected text"))?;
    if !allowed.contains(&text) {
        return Err(invalid(
            name,
            &format!("'{text}' is not one of {}", allowed.join(", ")),
        ));
    }
    Ok(Some(text.to_owned()))
}

fn date(fields: &Fields, name: &str) -> Result<Option<NaiveDate>, EwsError> {
    let Some(value) = given(fields, name) else {
        return Ok(None);
    };
    match value {
        Value::DateTime(dt) => Ok(Some(dt.date_naive())),
        Value::Text(text) => parse_date(text)
            .map(Some)
            .ok_or_else(|| invalid(name, "expected a date as YYYY-MM-DD")),
        _ => Err(invalid(name, "expected a date as YYYY-MM-DD")),
    }
}

/// An `xs:date` (`2026-03-02`, optionally with a zone such as `Z` or `-08:00`, which is
/// dropped) or an RFC 3339 date-time (its UTC date).
fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc).date_naive());
    }
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

fn recurrence_markup(fields: &Fields) -> Result<String, EwsError> {
    let pattern_names: Vec<&str> = PATTERNS.iter().map(|(name, _)| *name).collect();
    let pattern = one_of(fields, r::PATTERN, &pattern_names)?.ok_or_else(|| {
        invalid(
            r::PATTERN,
            "a recurrence needs Recurrence.Pattern (and Recurrence.StartDate); set all Recurrence.* fields together",
        )
    })?;
    let parts = PATTERNS
        .iter()
        .find(|(name, _)| *name == pattern)
        .map(|(_, parts)| *parts)
        .unwrap_or_default();
    for name in [
        r::INTERVAL,
        r::DAYS_OF_WEEK,
        r::FIRST_DAY_OF_WEEK,
        r::DAY_OF_WEEK_INDEX,
        r::DAY_OF_MONTH,
        r::MONTH,
    ] {
        if given(fields, name).is_some() && !parts.iter().any(|p| p.field() == name) {
            return Err(invalid(
                name,
                &format!("does not apply to a {pattern} recurrence; leave it blank"),
            ));
        }
    }
    let start = date(fields, r::START_DATE)?
        .ok_or_else(|| invalid(r::START_DATE, "a recurrence needs its first date"))?;
    let end = date(fields, r::END_DATE)?;
    let count = integer(fields, r::NUMBER_OF_OCCURRENCES, 1..=999)?;
    if end.is_some() && count.is_some() {
        return Err(invalid(
            r::END_DATE,
            "a recurrence ends either on Recurrence.EndDate or after Recurrence.NumberOfOccurrences, not both",
        ));
    }
    if end.is_some_and(|end| end < start) {
        return Err(invalid(r::END_DATE, "is before Recurrence.StartDate"));
    }

    let mut out = XmlOut::default();
    out.open("t:Recurrence", &[]);
    let tag = format!("t:{pattern}Recurrence");
    out.open(&tag, &[]);
    for part in parts {
        let text = match part {
            Part::Interval => integer(fields, r::INTERVAL, 1..=999)?.map(|n| n.to_string()),
            Part::DayOfMonth => integer(fields, r::DAY_OF_MONTH, 1..=31)?.map(|n| n.to_string()),
            Part::DaysOfWeek | Part::DayOfWeek => match given(fields, r::DAYS_OF_WEEK) {
                None => None,
                Some(value) => {
                    let days = texts(r::DAYS_OF_WEEK, value)?;
                    if let Some(bad) = days.iter().find(|d| !DAYS.contains(&d.as_str())) {
                        return Err(invalid(
                            r::DAYS_OF_WEEK,
                            &format!("'{bad}' is not one of {}", DAYS.join(", ")),
                        ));
                    }
                    if *part == Part::DayOfWeek && days.len() != 1 {
                        return Err(invalid(
                            r::DAYS_OF_WEEK,
                            &format!("a {pattern} recurrence takes exactly one day"),
                        ));
                    }
                    (!days.is_empty()).then(|| days.join(" "))
                }
            },
            Part::FirstDayOfWeek => one_of(fields, r::FIRST_DAY_OF_WEEK, DAYS)?,
            Part::DayOfWeekIndex => one_of(fields, r::DAY_OF_WEEK_INDEX, WEEK_INDEXES)?,
            Part::Month => one_of(fields, r::MONTH, r::MONTHS)?,
        };
        match text {
            Some(text) => {
                out.text_element(&format!("t:{}", part.element()), &[], &text);
            }
            None if part.optional() => {}
            None => {
                return Err(invalid(
                    part.field(),
                    &format!("a {pattern} recurrence needs it"),
                ));
            }
        }
    }
    out.close(&tag);
    let start_text = start.format("%Y-%m-%d").to_string();
    match (end, count) {
        (Some(end), _) => {
            out.open("t:EndDateRecurrence", &[]);
            out.text_element("t:StartDate", &[], &start_text);
            out.text_element("t:EndDate", &[], &end.format("%Y-%m-%d").to_string());
            out.close("t:EndDateRecurrence");
        }
        (None, Some(count)) => {
            out.open("t:NumberedRecurrence", &[]);
            out.text_element("t:StartDate", &[], &start_text);
            out.text_element("t:NumberOfOccurrences", &[], &count.to_string());
            out.close("t:NumberedRecurrence");
        }
        (None, None) => {
            out.open("t:NoEndRecurrence", &[]);
            out.text_element("t:StartDate", &[], &start_text);
            out.close("t:NoEndRecurrence");
        }
    }
    out.close("t:Recurrence");
    Ok(out.finish())
}

fn read_recurrence(tree: &Element, fields: &mut Fields) {
    for child in &tree.children {
        if let Some(pattern) = child.name.strip_suffix("Recurrence")
            && let Some((_, parts)) = PATTERNS.iter().find(|(name, _)| *name == pattern)
        {
            fields.insert(r::PATTERN.into(), Value::Text(pattern.to_owned()));
            for part in *parts {
                let Some(text) = child.child_text(part.element()).filter(|t| !t.is_empty()) else {
                    continue;
                };
                let value = match part {
                    Part::Interval | Part::DayOfMonth => match text.parse::<i64>() {
                        Ok(n) => Value::Integer(n),
                        Err(_) => Value::Text(text.to_owned()),
                    },
                    Part::DaysOfWeek | Part::DayOfWeek => Value::List(
                        text.split_whitespace()
                            .map(|d| Value::Text(d.to_owned()))
                            .collect(),
                    ),
                    _ => Value::Text(text.to_owned()),
                };
                fields.insert(part.field().into(), value);
            }
            continue;
        }
        let (end_date, count) = match child.name.as_str() {
            "NoEndRecurrence" => (None, None),
            "EndDateRecurrence" => (child.child_text("EndDate"), None),
            "NumberedRecurrence" => (None, child.child_text("NumberOfOccurrences")),
            _ => continue,
        };
        let as_date = |text: &str| {
            parse_date(text).map_or_else(
                || Value::Text(text.to_owned()),
                |d| Value::Text(d.format("%Y-%m-%d").to_string()),
            )
        };
        if let Some(start) = child.child_text("StartDate") {
            fields.insert(r::START_DATE.into(), as_date(start));
        }
        if let Some(end) = end_date {
            fields.insert(r::END_DATE.into(), as_date(end));
        }
        if let Some(count) = count {
            let value = count
                .parse::<i64>()
                .map_or_else(|_| Value::Text(count.to_owned()), Value::Integer);
            fields.insert(r::NUMBER_OF_OCCURRENCES.into(), value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(value: &str) -> Value {
        Value::Text(value.into())
    }

    /// Markup as Exchange sends it: names, routing types, response types, dates with zones.
    #[test]
    fn exchange_style_markup_reads_as_flat_fields() {
        let organizer = "<t:Organizer><t:Mailbox><t:Name>Alice</t:Name><t:EmailAddress>alice@example.com</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox></t:Organizer>";
        assert_eq!(
            fields_from_markup(ORGANIZER, organizer).get(ORGANIZER),
            Some(&text("alice@example.com"))
        );
        let attendees = "<t:RequiredAttendees><t:Attendee><t:Mailbox><t:Name>Bob</t:Name><t:EmailAddress>bob@example.com</t:EmailAddress></t:Mailbox><t:ResponseType>Accept</t:ResponseType></t:Attendee><t:Attendee><t:Mailbox><t:Name>Room</t:Name></t:Mailbox></t:Attendee></t:RequiredAttendees>";
        assert_eq!(
            fields_from_markup(REQUIRED_ATTENDEES, attendees).get(REQUIRED_ATTENDEES),
            Some(&Value::List(vec![text("bob@example.com")]))
        );
        let recurrence = "<t:Recurrence><t:WeeklyRecurrence><t:Interval>2</t:Interval><t:DaysOfWeek>Monday Friday</t:DaysOfWeek><t:FirstDayOfWeek>Sunday</t:FirstDayOfWeek></t:WeeklyRecurrence><t:EndDateRecurrence><t:StartDate>2026-03-02-08:00</t:StartDate><t:EndDate>2026-12-31Z</t:EndDate></t:EndDateRecurrence></t:Recurrence>";
        let fields = fields_from_markup("Recurrence", recurrence);
        let expected: Fields = [
            (r::PATTERN, text("Weekly")),
            (r::INTERVAL, Value::Integer(2)),
            (
                r::DAYS_OF_WEEK,
                Value::List(vec![text("Monday"), text("Friday")]),
            ),
            (r::FIRST_DAY_OF_WEEK, text("Sunday")),
            (r::START_DATE, text("2026-03-02")),
            (r::END_DATE, text("2026-12-31")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(fields, expected);
        // Written back, the same fields give schema-ordered markup without zones.
        let elements = structured_elements(&fields).unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(
            elements[0].1.as_deref(),
            Some(
                "<t:Recurrence><t:WeeklyRecurrence><t:Interval>2</t:Interval><t:DaysOfWeek>Monday Friday</t:DaysOfWeek><t:FirstDayOfWeek>Sunday</t:FirstDayOfWeek></t:WeeklyRecurrence><t:EndDateRecurrence><t:StartDate>2026-03-02</t:StartDate><t:EndDate>2026-12-31</t:EndDate></t:EndDateRecurrence></t:Recurrence>"
            )
        );
        // Garbage and unknown patterns give no fields, never a panic.
        assert!(
            fields_from_markup("Recurrence", "<t:Recurrence><t:Lunar/></t:Recurrence>").is_empty()
        );
        assert!(fields_from_markup(ORGANIZER, "not xml <").is_empty());
    }

    #[test]
    fn writing_accepts_date_times_and_text_numbers_and_clears_blanks() {
        let fields: Fields = [
            (r::PATTERN, text("AbsoluteMonthly")),
            (r::INTERVAL, text("1")),
            (r::DAY_OF_MONTH, Value::Number(31.0)),
            (
                r::START_DATE,
                Value::DateTime(
                    DateTime::parse_from_rfc3339("2026-01-31T23:30:00-02:00")
                        .unwrap()
                        .with_timezone(&Utc),
                ),
            ),
            (r::END_DATE, Value::Null),
            (REQUIRED_ATTENDEES, Value::List(vec![])),
            (OPTIONAL_ATTENDEES, text("dave@example.com")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let elements = structured_elements(&fields).unwrap();
        let find = |name: &str| elements.iter().find(|(e, _)| *e == name).unwrap().1.clone();
        assert_eq!(find(REQUIRED_ATTENDEES), None, "an empty list clears");
        assert!(
            find(OPTIONAL_ATTENDEES)
                .unwrap()
                .contains("dave@example.com")
        );
        let recurrence = find("Recurrence").unwrap();
        assert!(
            recurrence.contains("<t:AbsoluteMonthlyRecurrence><t:Interval>1</t:Interval><t:DayOfMonth>31</t:DayOfMonth></t:AbsoluteMonthlyRecurrence><t:NoEndRecurrence><t:StartDate>2026-02-01</t:StartDate>"),
            "{recurrence}"
        );
        let blank: Fields = [(r::PATTERN.to_owned(), Value::Null)].into_iter().collect();
        assert_eq!(
            structured_elements(&blank).unwrap(),
            vec![("Recurrence", None)]
        );
        assert!(structured_elements(&Fields::new()).unwrap().is_empty());
    }
}
