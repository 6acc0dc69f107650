//! Tandem's default activity mapping: Siebel `Action` business component ⇄ Exchange
//! `CalendarItem` (domain `calendar`) or `Task` (domain `tasks`), as a plugin (cdylib, built
//! for wasm32-wasip2) and as plain Rust (rlib). One crate serves both domains and dispatches on
//! `ctx.domain`; any other domain is a plugin error.
//!
//! Exchange field names are EWS element names exactly as the EWS connector reads and writes
//! them. Siebel dates arrive as `MM/DD/YYYY HH:MM:SS` text (UTC) and leave as date-time values
//! (the Siebel connector writes them back in that format); Exchange dates are date-time values
//! both ways. Every mapped field is always present in the output, `Null` when the source lacks
//! it, so clearing a field on one side clears it on the other — except the fields Exchange
//! always holds (`Importance`, `Sensitivity`, task `Status`, `PercentComplete`), which get
//! their Exchange default instead.
//!
//! | Siebel Action        | Calendar item  | Task            | translation                       |
//! |----------------------|----------------|-----------------|-----------------------------------|
//! | `Description`        | `Subject`      | `Subject`       |                                   |
//! | `Comment`            | `Body`         | `Body`          |                                   |
//! | `Planned`            | `Start`        | `StartDate`     | date-time                         |
//! | `Planned Completion` | `End`          | —               | date-time                         |
//! | `Due`                | —              | `DueDate`       | date-time                         |
//! | `Done`               | —              | `CompleteDate`  | date-time                         |
//! | `Meeting Location`   | `Location`     | —               |                                   |
//! | `Status`             | —              | `Status`        | [`task_status_to_exchange`] (SSSE) |
//! | `Percent Complete`   | —              | `PercentComplete` | number 0–100                    |
//! | `Priority`           | `Importance`   | `Importance`    | [`priority_to_importance`]        |
//! | `Private` (`Y`/`N`)  | `Sensitivity`  | `Sensitivity`   | `Y` ⇄ `Private`, `N` ⇄ `Normal`   |
//! | `Type`               | `Categories`   | `Categories`    | the type ⇄ the first category     |
//! | `Display`            | —              | —               | set from the domain on the way in |
//! | `Attendee Emails`    | `RequiredAttendees` | —          | list of SMTP addresses            |
//!
//! `Attendee Emails` is not a Siebel field: the engine fills it with the email addresses of
//! the activity's employee and contact participants (its owner left out, participants without
//! an address skipped) and turns it back into participants when it writes to Siebel. Optional
//! attendees stay Exchange's own.

#[cfg(feature = "export")]
use tandem_plugin_api::export_mapper;
use tandem_plugin_api::{Context, Fields, Mapper, PluginError, Scalar, Value};

pub mod time;

use time::date_time_of;

/// Siebel `Action` field names (confirm per deployment with `/describe`).
pub mod siebel {
    /// Activity type (LOV): `Meeting`, `Call`, `To Do`, ...
    pub const TYPE: &str = "Type";
    /// "Display In": which Siebel views, and so which Exchange folder, show the activity.
    pub const DISPLAY: &str = "Display";
    /// The one-line summary.
    pub const DESCRIPTION: &str = "Description";
    /// Free text (`Comment` on Action; Oracle's field tables, not `Comments`).
    pub const COMMENT: &str = "Comment";
    /// Start of an appointment; start date of a task.
    pub const PLANNED: &str = "Planned";
    /// End of an appointment.
    pub const PLANNED_COMPLETION: &str = "Planned Completion";
    /// Due date of a task.
    pub const DUE: &str = "Due";
    /// Completion date of a task.
    pub const DONE: &str = "Done";
    /// Activity status (LOV).
    pub const STATUS: &str = "Status";
    /// Priority (LOV): `1-ASAP`, `2-High`, `3-Medium`, `4-Low`.
    pub const PRIORITY: &str = "Priority";
    /// Percentage done, 0–100.
    pub const PERCENT_COMPLETE: &str = "Percent Complete";
    /// Where a meeting takes place.
    pub const MEETING_LOCATION: &str = "Meeting Location";
    /// The private flag, `Y` or `N` (the Siebel emulator's name; the reference leaves it open).
    pub const PRIVATE: &str = "Private";
    /// The participants' email addresses, a list of texts; filled and read by the engine from
    /// the `Employee Id` and `Contact Id` participants (not a field of the business component).
    pub const ATTENDEE_EMAILS: &str = "Attendee Emails";
}

/// Exchange (EWS element) field names this mapping reads and writes.
pub mod exchange {
    /// Item subject.
    pub const SUBJECT: &str = "Subject";
    /// Item body (text).
    pub const BODY: &str = "Body";
    /// `Normal`, `Personal`, `Private` or `Confidential`.
    pub const SENSITIVITY: &str = "Sensitivity";
    /// `Low`, `Normal` or `High`.
    pub const IMPORTANCE: &str = "Importance";
    /// Item categories, a list of texts.
    pub const CATEGORIES: &str = "Categories";
    /// Appointment start.
    pub const START: &str = "Start";
    /// Appointment end.
    pub const END: &str = "End";
    /// Appointment location.
    pub const LOCATION: &str = "Location";
    /// Task start date.
    pub const START_DATE: &str = "StartDate";
    /// Task due date.
    pub const DUE_DATE: &str = "DueDate";
    /// Task completion date.
    pub const COMPLETE_DATE: &str = "CompleteDate";
    /// Task status: `NotStarted`, `InProgress`, `Completed`, `WaitingOnOthers`, `Deferred`.
    pub const STATUS: &str = "Status";
    /// Task percentage done, 0–100.
    pub const PERCENT_COMPLETE: &str = "PercentComplete";
    /// Appointment attendees, a list of SMTP addresses.
    pub const REQUIRED_ATTENDEES: &str = "RequiredAttendees";
}

/// The `Display` value of activities shown in the Siebel calendar (domain `calendar`).
pub const DISPLAY_CALENDAR: &str = "Calendar and Activities";
/// The `Display` value of activities shown in the Siebel To Do list (domain `tasks`).
pub const DISPLAY_TASKS: &str = "To Do and Activities";

/// The two domains this mapping serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Appointments: Exchange `CalendarItem`.
    Calendar,
    /// To Dos: Exchange `Task`.
    Tasks,
}

impl Domain {
    /// The domain named `name` (`calendar` or `tasks`), or `None`.
    pub fn from_name(name: &str) -> Option<Domain> {
        match name {
            "calendar" => Some(Domain::Calendar),
            "tasks" => Some(Domain::Tasks),
            _ => None,
        }
    }

    /// The domain's name as the host passes it in `ctx.domain`.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Calendar => "calendar",
            Domain::Tasks => "tasks",
        }
    }

    /// The Siebel `Display` value of this domain's activities.
    pub fn display(self) -> &'static str {
        match self {
            Domain::Calendar => DISPLAY_CALENDAR,
            Domain::Tasks => DISPLAY_TASKS,
        }
    }

    /// The domain `ctx` names, or a plugin error saying which domains this mapping serves.
    pub fn of(ctx: &Context) -> Result<Domain, PluginError> {
        Domain::from_name(&ctx.domain).ok_or_else(|| {
            PluginError::Other(format!(
                "activity-mapping maps the calendar and tasks domains, not `{}`; assign another \
                 mapping plugin to that domain",
                ctx.domain
            ))
        })
    }
}

/// Siebel `Priority` → Exchange `Importance`: `1-ASAP` and `2-High` → `High`, `3-Medium` →
/// `Normal`, `4-Low` → `Low`; blank → `Normal` (Exchange's default). Case and surrounding
/// spaces are ignored; any other value is an `invalid-record` error.
pub fn priority_to_importance(priority: Option<&str>) -> Result<&'static str, PluginError> {
    let Some(priority) = priority.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok("Normal");
    };
    match priority.to_ascii_lowercase().as_str() {
        "1-asap" | "2-high" => Ok("High"),
        "3-medium" => Ok("Normal"),
        "4-low" => Ok("Low"),
        _ => Err(PluginError::InvalidRecord(format!(
            "Priority `{priority}` has no Exchange importance; use 1-ASAP, 2-High, 3-Medium or 4-Low"
        ))),
    }
}

/// Exchange `Importance` → Siebel `Priority`: `High` → `2-High`, `Normal` → `3-Medium`,
/// `Low` → `4-Low`; blank → `3-Medium`. Any other value is an `invalid-record` error.
pub fn importance_to_priority(importance: Option<&str>) -> Result<&'static str, PluginError> {
    let Some(importance) = importance.map(str::trim).filter(|i| !i.is_empty()) else {
        return Ok("3-Medium");
    };
    match importance.to_ascii_lowercase().as_str() {
        "high" => Ok("2-High"),
        "normal" => Ok("3-Medium"),
        "low" => Ok("4-Low"),
        _ => Err(PluginError::InvalidRecord(format!(
            "Importance `{importance}` is not an EWS importance; expected Low, Normal or High"
        ))),
    }
}

/// Siebel activity `Status` → EWS task `Status`, by SSSE's table ("How Priorities and Status
/// Values Are Set for a Task Record"). Case and surrounding spaces are ignored; blank →
/// `NotStarted`; any other value is an `invalid-record` error.
///
/// | Siebel                                                              | EWS               |
/// |---------------------------------------------------------------------|-------------------|
/// | Not Started, Acknowledged (and Planned, Scheduled, Unscheduled, Open) | `NotStarted`    |
/// | In Progress                                                         | `InProgress`      |
/// | Done (and Completed)                                                | `Completed`       |
/// | On Hold                                                             | `WaitingOnOthers` |
/// | Cancelled, Declined (and Deferred)                                  | `Deferred`        |
pub fn task_status_to_exchange(status: Option<&str>) -> Result<&'static str, PluginError> {
    let Some(status) = status.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok("NotStarted");
    };
    match status.to_ascii_lowercase().as_str() {
        "not started" | "planned" | "scheduled" | "unscheduled" | "acknowledged" | "open" => {
            Ok("NotStarted")
        }
        "in progress" => Ok("InProgress"),
        "done" | "completed" => Ok("Completed"),
        "on hold" => Ok("WaitingOnOthers"),
        "cancelled" | "canceled" | "declined" | "deferred" => Ok("Deferred"),
        _ => Err(PluginError::InvalidRecord(format!(
            "Status `{status}` has no Exchange task status; use Not Started, Acknowledged, In Progress, \
             Done, On Hold, Cancelled or Declined (or map it in a custom plugin)"
        ))),
    }
}

/// EWS task `Status` → Siebel `Status`, by SSSE's table: `NotStarted` → `Not Started`,
/// `InProgress` → `In Progress`, `Completed` → `Done`, `WaitingOnOthers` → `On Hold`,
/// `Deferred` → `Cancelled`; blank → `Not Started`. Any other value is an `invalid-record`
/// error.
pub fn task_status_to_siebel(status: Option<&str>) -> Result<&'static str, PluginError> {
    let Some(status) = status.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok("Not Started");
    };
    match status {
        "NotStarted" => Ok("Not Started"),
        "InProgress" => Ok("In Progress"),
        "Completed" => Ok("Done"),
        "WaitingOnOthers" => Ok("On Hold"),
        "Deferred" => Ok("Cancelled"),
        _ => Err(PluginError::InvalidRecord(format!(
            "Status `{status}` is not an EWS task status; expected NotStarted, InProgress, \
             Completed, WaitingOnOthers or Deferred"
        ))),
    }
}

/// True when an Exchange `Sensitivity` marks the item private: any value but `Normal`
/// (`Personal`, `Private`, `Confidential`), the rule the engine applies to contacts too.
pub fn sensitivity_is_private(sensitivity: Option<&Value>) -> bool {
    sensitivity
        .and_then(Value::as_text)
        .map(str::trim)
        .is_some_and(|s| !s.is_empty() && !s.eq_ignore_ascii_case("Normal"))
}

/// True when a Siebel flag (`Private`, `Personal Contact`) is set: `Y`/`Yes`/`true` text or
/// a true boolean.
pub fn siebel_flag_is_set(flag: Option<&Value>) -> bool {
    match flag {
        Some(Value::Boolean(set)) => *set,
        Some(Value::Text(text)) => {
            matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "y" | "yes" | "true"
            )
        }
        _ => false,
    }
}

/// The first non-blank text of an Exchange `Categories` value (a list, or a single text).
pub fn first_category(categories: Option<&Value>) -> Option<&str> {
    match categories? {
        Value::List(items) => items.iter().find_map(|item| match item {
            Scalar::Text(text) if !text.trim().is_empty() => Some(text.trim()),
            _ => None,
        }),
        Value::Text(text) if !text.trim().is_empty() => Some(text.trim()),
        _ => None,
    }
}

/// Maps a Siebel Action record to the fields of an Exchange calendar item or task.
///
/// Errors (`invalid-record`): an unreadable date, an unknown Priority or Status, a Percent
/// Complete outside 0–100, and for the calendar a missing Planned or Planned Completion or a
/// Planned Completion before Planned (Siebel requires both, in that order).
pub fn siebel_to_exchange(domain: Domain, siebel: &Fields) -> Result<Fields, PluginError> {
    use crate::exchange as x;
    use crate::siebel as s;
    let mut out = Fields::new();
    out.set_from(x::SUBJECT, siebel, s::DESCRIPTION);
    out.set_from(x::BODY, siebel, s::COMMENT);
    out.set(
        x::IMPORTANCE,
        priority_to_importance(siebel.get_text(s::PRIORITY))?,
    );
    let private = siebel_flag_is_set(siebel.get(s::PRIVATE));
    out.set(x::SENSITIVITY, if private { "Private" } else { "Normal" });
    out.set(
        x::CATEGORIES,
        match siebel.get_text(s::TYPE).map(str::trim) {
            Some(kind) if !kind.is_empty() => Value::text_list([kind]),
            _ => Value::Null,
        },
    );
    match domain {
        Domain::Calendar => {
            let start = date_time_of(siebel, s::PLANNED)?;
            let end = date_time_of(siebel, s::PLANNED_COMPLETION)?;
            let (Some(start), Some(end)) = (start, end) else {
                return Err(PluginError::InvalidRecord(
                    "a calendar activity needs both Planned and Planned Completion; set them in \
                     Siebel, or set Display In to another value"
                        .into(),
                ));
            };
            if end < start {
                return Err(PluginError::InvalidRecord(
                    "Planned Completion is before Planned; Siebel requires it after".into(),
                ));
            }
            out.set(x::START, start);
            out.set(x::END, end);
            out.set_from(x::LOCATION, siebel, s::MEETING_LOCATION);
            out.set(x::REQUIRED_ATTENDEES, addresses(siebel, s::ATTENDEE_EMAILS));
        }
        Domain::Tasks => {
            out.set(x::START_DATE, date_time_of(siebel, s::PLANNED)?);
            out.set(x::DUE_DATE, date_time_of(siebel, s::DUE)?);
            out.set(x::COMPLETE_DATE, date_time_of(siebel, s::DONE)?);
            let status = task_status_to_exchange(siebel.get_text(s::STATUS))?;
            out.set(x::STATUS, status);
            // Exchange sets 100 % itself when a task is completed; sending it keeps the copy
            // equal to what Exchange stores, so the next read shows no change.
            let percent = if status == "Completed" {
                100.0
            } else {
                percent_of(siebel, s::PERCENT_COMPLETE)?.unwrap_or(0.0)
            };
            out.set(x::PERCENT_COMPLETE, percent);
        }
    }
    Ok(out)
}

/// Maps an Exchange calendar item or task to the fields of a Siebel Action record, the
/// inverse of [`siebel_to_exchange`]; `Display` is set to the domain's value so an item
/// created in Outlook shows in the matching Siebel view. Other Exchange fields are ignored.
pub fn exchange_to_siebel(domain: Domain, exchange: &Fields) -> Result<Fields, PluginError> {
    use crate::exchange as x;
    use crate::siebel as s;
    let mut out = Fields::new();
    out.set(s::DISPLAY, domain.display());
    out.set_from(s::DESCRIPTION, exchange, x::SUBJECT);
    out.set_from(s::COMMENT, exchange, x::BODY);
    out.set(
        s::PRIORITY,
        importance_to_priority(exchange.get_text(x::IMPORTANCE))?,
    );
    let private = sensitivity_is_private(exchange.get(x::SENSITIVITY));
    out.set(s::PRIVATE, if private { "Y" } else { "N" });
    out.set(
        s::TYPE,
        first_category(exchange.get(x::CATEGORIES)).map(str::to_owned),
    );
    match domain {
        Domain::Calendar => {
            out.set(s::PLANNED, date_time_of(exchange, x::START)?);
            out.set(s::PLANNED_COMPLETION, date_time_of(exchange, x::END)?);
            out.set_from(s::MEETING_LOCATION, exchange, x::LOCATION);
            out.set(
                s::ATTENDEE_EMAILS,
                addresses(exchange, x::REQUIRED_ATTENDEES),
            );
        }
        Domain::Tasks => {
            out.set(s::PLANNED, date_time_of(exchange, x::START_DATE)?);
            out.set(s::DUE, date_time_of(exchange, x::DUE_DATE)?);
            out.set(s::DONE, date_time_of(exchange, x::COMPLETE_DATE)?);
            out.set(
                s::STATUS,
                task_status_to_siebel(exchange.get_text(x::STATUS))?,
            );
            let percent = percent_of(exchange, x::PERCENT_COMPLETE)?.unwrap_or(0.0);
            out.set(s::PERCENT_COMPLETE, whole_or_fraction(percent));
        }
    }
    Ok(out)
}

/// The non-blank email addresses of a list (or single text) field, as a list; `Null` when
/// there are none.
fn addresses(fields: &Fields, name: &str) -> Value {
    let texts: Vec<&str> = match fields.get(name) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|item| match item {
                Scalar::Text(text) => Some(text.trim()),
                _ => None,
            })
            .collect(),
        Some(Value::Text(text)) => vec![text.trim()],
        _ => Vec::new(),
    };
    let texts: Vec<&str> = texts.into_iter().filter(|t| !t.is_empty()).collect();
    if texts.is_empty() {
        Value::Null
    } else {
        Value::text_list(texts)
    }
}

/// A percentage 0–100 from a number or numeric text; `None` when blank.
fn percent_of(fields: &Fields, name: &str) -> Result<Option<f64>, PluginError> {
    let value = match fields.get(name) {
        None => return Ok(None),
        Some(value) if value.is_blank() => return Ok(None),
        Some(Value::Text(text)) => text.trim().parse::<f64>().ok(),
        Some(value) => value.as_number(),
    };
    match value {
        Some(percent) if (0.0..=100.0).contains(&percent) => Ok(Some(percent)),
        _ => Err(PluginError::InvalidRecord(format!(
            "`{name}` is {:?}; expected a percentage from 0 to 100",
            fields.get(name).cloned().unwrap_or_default()
        ))),
    }
}

/// 50.0 as the integer 50 (Siebel shows `50`), 12.5 as is.
fn whole_or_fraction(percent: f64) -> Value {
    if percent.fract() == 0.0 {
        Value::Integer(percent as i64)
    } else {
        Value::Number(percent)
    }
}

/// The plugin: the functions above behind the `mapper` world, for the calendar and tasks
/// domains.
pub struct ActivityMapping;

impl Mapper for ActivityMapping {
    fn to_exchange(ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
        siebel_to_exchange(Domain::of(ctx)?, &siebel)
    }

    fn to_siebel(ctx: &Context, exchange: Fields) -> Result<Fields, PluginError> {
        exchange_to_siebel(Domain::of(ctx)?, &exchange)
    }
}

#[cfg(feature = "export")]
export_mapper!(ActivityMapping);

#[cfg(test)]
mod tests;
