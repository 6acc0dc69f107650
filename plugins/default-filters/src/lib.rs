//! Tandem's default record filter, one plugin for every domain: which Siebel records and
//! Exchange items take part in the sync, per SSSE's eligibility rules
//! (`reference/siebel-ssse-and-rest.md` §2).
//!
//! Rules, in the order they are checked (the first that applies excludes the record):
//! 1. **Display In routing** (Siebel side, domains `calendar` and `tasks`): an activity takes
//!    part in `calendar` only with `Display` = "Calendar and Activities" and in `tasks` only
//!    with "To Do and Activities"; any other value (e.g. "Activities Only", blank) in neither.
//! 2. **Personal-contact routing** (domains `contacts` and `personal-contacts`): a Siebel
//!    contact with `Personal Contact` = `Y`, or an Exchange contact whose `Sensitivity` is not
//!    `Normal`, belongs to `personal-contacts` only; every other contact to `contacts` only.
//! 3. **Calendar dates** (Siebel side, domain `calendar`): an appointment needs both `Planned`
//!    and `Planned Completion`.
//! 4. **Private records** (config `sync_private`, default `true`): when `false`, records marked
//!    private are excluded on both sides — Siebel `Private` = `Y` or `Personal Contact` = `Y`,
//!    Exchange `Sensitivity` other than `Normal`. (So `false` empties `personal-contacts`.)
//! 5. **Categories** (config `exclude_categories`, comma-separated, case-insensitive): an
//!    Exchange item carrying any of them is excluded.
//! 6. **ExtractStartDate window** (config `extract_start_date`, an ISO date such as
//!    `2026-01-01`, midnight UTC, or an RFC 3339 date-time; domains `calendar` and `tasks`): an
//!    appointment that ends before it (Siebel `Planned Completion`, Exchange `End`; the start
//!    when the end is missing) and a task due before it (Siebel `Due`, Exchange `DueDate`) are
//!    excluded. Records without the date are kept. Recurring items are not special-cased:
//!    recurrence is not passed to plugins.
//!
//! A configuration value that can't be read, or a record whose date can't be read, is a plugin
//! error (the host quarantines the record), never a silent exclusion.

use std::fmt;

use activity_mapping::time::{date_time_of, parse_iso};
use activity_mapping::{Domain, sensitivity_is_private, siebel_flag_is_set};
#[cfg(feature = "export")]
use tandem_plugin_api::export_filter;
use tandem_plugin_api::{Context, DateTime, Fields, Filter, PluginError, Scalar, Side, Value};

/// Configuration key of the ExtractStartDate window.
pub const EXTRACT_START_DATE: &str = "extract_start_date";
/// Configuration key of the private-records switch.
pub const SYNC_PRIVATE: &str = "sync_private";
/// Configuration key of the excluded Exchange categories.
pub const EXCLUDE_CATEGORIES: &str = "exclude_categories";

/// The domain of business contacts.
pub const CONTACTS_DOMAIN: &str = "contacts";
/// The domain of personal contacts.
pub const PERSONAL_CONTACTS_DOMAIN: &str = "personal-contacts";

/// The filter's settings, read from configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Activities ending (appointments) or due (tasks) before this are excluded.
    pub extract_start: Option<DateTime>,
    /// False: private records are excluded.
    pub sync_private: bool,
    /// Exchange items carrying any of these categories (lower case) are excluded.
    pub exclude_categories: Vec<String>,
}

impl Settings {
    /// Settings from configuration values (`None` or blank = default: no window, private
    /// records synced, no category excluded). A value that can't be read is an error naming
    /// the key and what to write instead.
    pub fn from_config(
        extract_start_date: Option<&str>,
        sync_private: Option<&str>,
        exclude_categories: Option<&str>,
    ) -> Result<Settings, PluginError> {
        let extract_start = match blank_to_none(extract_start_date) {
            None => None,
            Some(text) => Some(parse_iso(text).ok_or_else(|| {
                PluginError::Other(format!(
                    "configuration `{EXTRACT_START_DATE}` = `{text}` is not a date; write an ISO \
                     date such as 2026-01-01 (midnight UTC) or an RFC 3339 date-time"
                ))
            })?),
        };
        let sync_private = match blank_to_none(sync_private).map(str::to_ascii_lowercase) {
            None => true,
            Some(flag) => match flag.as_str() {
                "true" | "yes" | "y" | "1" => true,
                "false" | "no" | "n" | "0" => false,
                _ => {
                    return Err(PluginError::Other(format!(
                        "configuration `{SYNC_PRIVATE}` = `{flag}` is not a boolean; write true or false"
                    )));
                }
            },
        };
        let exclude_categories = blank_to_none(exclude_categories)
            .map(|list| {
                list.split(',')
                    .map(|c| c.trim().to_lowercase())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Settings {
            extract_start,
            sync_private,
            exclude_categories,
        })
    }

    /// Settings from the host's configuration of this plugin instance.
    pub fn from_host() -> Result<Settings, PluginError> {
        let config = tandem_plugin_api::config;
        Settings::from_config(
            config(EXTRACT_START_DATE).as_deref(),
            config(SYNC_PRIVATE).as_deref(),
            config(EXCLUDE_CATEGORIES).as_deref(),
        )
    }
}

/// The trimmed value, `None` when absent or blank.
fn blank_to_none(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Why a record is left out of the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// The Siebel activity's `Display` does not route it to this domain.
    DisplayIn {
        /// The record's `Display` value, if any.
        display: Option<String>,
        /// The domain asked about.
        domain: &'static str,
    },
    /// A personal contact asked about in `contacts`.
    PersonalContact,
    /// A business contact asked about in `personal-contacts`.
    BusinessContact,
    /// A Siebel appointment without `Planned` or `Planned Completion`.
    MissingCalendarDates,
    /// A private record while `sync_private` is false.
    Private,
    /// An Exchange item carrying an excluded category.
    Category(String),
    /// The activity ends or is due before the ExtractStartDate.
    BeforeExtractStart {
        /// The date field compared.
        field: &'static str,
    },
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::DisplayIn { display, domain } => write!(
                f,
                "Display In is {:?}, which does not route the activity to {domain}",
                display.as_deref().unwrap_or("")
            ),
            Exclusion::PersonalContact => {
                f.write_str("a personal contact is not a business contact")
            }
            Exclusion::BusinessContact => {
                f.write_str("a business contact is not a personal contact")
            }
            Exclusion::MissingCalendarDates => {
                f.write_str("an appointment needs both Planned and Planned Completion")
            }
            Exclusion::Private => {
                write!(f, "private records are not synced ({SYNC_PRIVATE} = false)")
            }
            Exclusion::Category(category) => write!(f, "category {category:?} is excluded"),
            Exclusion::BeforeExtractStart { field } => {
                write!(f, "{field} is before the extract start date")
            }
        }
    }
}

/// Why `record` (from `side`, asked about in `domain`) is left out, or `None` when it takes
/// part. Errors: a date the window needs can't be read.
pub fn exclusion(
    settings: &Settings,
    domain: &str,
    side: Side,
    record: &Fields,
) -> Result<Option<Exclusion>, PluginError> {
    let activity = Domain::from_name(domain);
    let private = match side {
        Side::Siebel => {
            siebel_flag_is_set(record.get(activity_mapping::siebel::PRIVATE))
                || personal_contact_mapping::is_personal(record)
        }
        Side::Exchange => sensitivity_is_private(record.get("Sensitivity")),
    };

    if let (Some(activity), Side::Siebel) = (activity, side) {
        let display = record
            .get_text(activity_mapping::siebel::DISPLAY)
            .map(str::trim);
        if display != Some(activity.display()) {
            return Ok(Some(Exclusion::DisplayIn {
                display: display.map(str::to_owned),
                domain: activity.name(),
            }));
        }
    }
    if domain == CONTACTS_DOMAIN && private {
        return Ok(Some(Exclusion::PersonalContact));
    }
    if domain == PERSONAL_CONTACTS_DOMAIN && !private {
        return Ok(Some(Exclusion::BusinessContact));
    }
    if let (Some(Domain::Calendar), Side::Siebel) = (activity, side) {
        let planned = date_time_of(record, activity_mapping::siebel::PLANNED)?;
        let completion = date_time_of(record, activity_mapping::siebel::PLANNED_COMPLETION)?;
        if planned.is_none() || completion.is_none() {
            return Ok(Some(Exclusion::MissingCalendarDates));
        }
    }
    if private && !settings.sync_private {
        return Ok(Some(Exclusion::Private));
    }
    if side == Side::Exchange
        && let Some(category) = excluded_category(settings, record.get("Categories"))
    {
        return Ok(Some(Exclusion::Category(category)));
    }
    if let (Some(activity), Some(start)) = (activity, settings.extract_start)
        && let Some((field, at)) = window_date(activity, side, record)?
        && at < start
    {
        return Ok(Some(Exclusion::BeforeExtractStart { field }));
    }
    Ok(None)
}

/// True when `record` takes part in the sync (see [`exclusion`]).
pub fn include(
    settings: &Settings,
    domain: &str,
    side: Side,
    record: &Fields,
) -> Result<bool, PluginError> {
    Ok(exclusion(settings, domain, side, record)?.is_none())
}

/// The first of the item's categories that is excluded, as the item spells it.
fn excluded_category(settings: &Settings, categories: Option<&Value>) -> Option<String> {
    if settings.exclude_categories.is_empty() {
        return None;
    }
    let texts: Vec<&str> = match categories? {
        Value::List(items) => items
            .iter()
            .filter_map(|item| match item {
                Scalar::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect(),
        Value::Text(text) => vec![text.as_str()],
        _ => Vec::new(),
    };
    texts
        .into_iter()
        .find(|text| {
            settings
                .exclude_categories
                .contains(&text.trim().to_lowercase())
        })
        .map(|text| text.trim().to_owned())
}

/// The date the ExtractStartDate window compares, with its field name: appointments by their
/// end (the start when there is no end), tasks by their due date.
fn window_date(
    domain: Domain,
    side: Side,
    record: &Fields,
) -> Result<Option<(&'static str, DateTime)>, PluginError> {
    use activity_mapping::{exchange as x, siebel as s};
    let candidates: &[&'static str] = match (domain, side) {
        (Domain::Calendar, Side::Siebel) => &[s::PLANNED_COMPLETION, s::PLANNED],
        (Domain::Calendar, Side::Exchange) => &[x::END, x::START],
        (Domain::Tasks, Side::Siebel) => &[s::DUE],
        (Domain::Tasks, Side::Exchange) => &[x::DUE_DATE],
    };
    for field in candidates {
        if let Some(at) = date_time_of(record, field)? {
            return Ok(Some((field, at)));
        }
    }
    Ok(None)
}

/// The plugin: reads its settings from configuration on each call.
pub struct DefaultFilters;

impl Filter for DefaultFilters {
    fn include(ctx: &Context, side: Side, record: &Fields) -> Result<bool, PluginError> {
        let settings = Settings::from_host()?;
        match exclusion(&settings, &ctx.domain, side, record)? {
            None => Ok(true),
            Some(why) => {
                tandem_plugin_api::debug!("{:?} record left out of {}: {why}", side, ctx.domain);
                Ok(false)
            }
        }
    }
}

#[cfg(feature = "export")]
export_filter!(DefaultFilters);

#[cfg(test)]
mod tests;
