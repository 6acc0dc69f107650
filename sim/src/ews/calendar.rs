//! Recurring series in the EWS emulator, as Exchange shows them: occurrence ids (opaque, the
//! master's id plus the 1-based instance index), the occurrence and exception views of a
//! master, the master's FirstOccurrence/LastOccurrence/ModifiedOccurrences/DeletedOccurrences,
//! the ids a request may use for them (`t:ItemId`, `t:OccurrenceItemId`,
//! `t:RecurringMasterItemId`) and the CalendarView expansion.
//!
//! The store keeps only masters (SyncFolderItems reports only them, as Exchange does); a
//! master's `occurrences` holds its exceptions and deleted occurrences. Occurrences fall on
//! the pattern's dates at the master's UTC time of day (time-zone rules are not applied).

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::recurrence::{MAX_INSTANCE_INDEX, Recurrence};
use super::store::{Mailbox, ModifiedOccurrence, StoredItem};
use super::wire::{CALENDAR_READ_ONLY, Element, ItemKind, WireValue, XmlOut};

/// Prefix of occurrence ids inside their base64 text.
const OCCURRENCE_ID_TAG: &str = "tandem-ews-sim/occurrence/v1/";

/// A per-item error: `(ResponseCode, MessageText)`.
pub(crate) type ItemError = (&'static str, String);

fn not_found() -> ItemError {
    (
        "ErrorItemNotFound",
        "The specified object was not found in the store.".into(),
    )
}

/// The id of occurrence `index` of the series `master_id`.
pub(crate) fn occurrence_id(master_id: &str, index: u32) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("{OCCURRENCE_ID_TAG}{master_id}/{index}"))
}

/// `(master id, instance index)` of an id made by [`occurrence_id`].
pub(crate) fn parse_occurrence_id(id: &str) -> Option<(String, u32)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(id.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (master, index) = raw.strip_prefix(OCCURRENCE_ID_TAG)?.rsplit_once('/')?;
    Some((master.to_owned(), index.parse().ok()?))
}

/// A date-time field of an item, when it holds one.
pub(crate) fn date_time_field(
    fields: &BTreeMap<String, WireValue>,
    name: &str,
) -> Option<DateTime<Utc>> {
    match fields.get(name)? {
        WireValue::Text(text) => DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|dt| dt.with_timezone(&Utc)),
        WireValue::List(_) => None,
    }
}

/// The `t:CalendarItemType` element, as the store keeps computed elements (markup).
fn item_type(value: &str) -> WireValue {
    let mut out = XmlOut::default();
    out.text_element("t:CalendarItemType", &[], value);
    WireValue::Text(out.finish())
}

fn date_time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A recurring master's rule and timing.
struct Series {
    rule: Recurrence,
    start: DateTime<Utc>,
    duration: TimeDelta,
}

impl Series {
    /// The series of a calendar item, when it is a recurring master.
    fn of(item: &StoredItem) -> Option<Self> {
        let markup = match item.fields.get("Recurrence")? {
            WireValue::Text(markup) => markup,
            WireValue::List(_) => return None,
        };
        let rule = Recurrence::from_markup(markup).ok()?;
        let start = date_time_field(&item.fields, "Start")?;
        let end = date_time_field(&item.fields, "End").unwrap_or(start);
        Some(Self {
            rule,
            start,
            duration: end - start,
        })
    }

    /// When the occurrence falling on `date` was scheduled to start.
    fn original_start(&self, date: NaiveDate) -> DateTime<Utc> {
        date.and_time(self.start.time()).and_utc()
    }
}

/// Start and end of one instance of `master` (an exception's own times when modified).
fn instance_times(
    master: &StoredItem,
    series: &Series,
    index: u32,
    original: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    match master.occurrences.modified.get(&index) {
        Some(exception) => {
            let start = date_time_field(&exception.fields, "Start").unwrap_or(original);
            let end = date_time_field(&exception.fields, "End").unwrap_or(start + series.duration);
            (start, end)
        }
        None => (original, original + series.duration),
    }
}

/// Occurrence `index` of `master` as an item of its own (`CalendarItemType` Occurrence, or
/// Exception once modified).
fn instance(
    master: &StoredItem,
    series: &Series,
    index: u32,
    original: DateTime<Utc>,
) -> StoredItem {
    let (start, end) = instance_times(master, series, index, original);
    let mut fields: BTreeMap<String, WireValue> = master
        .fields
        .iter()
        .filter(|(name, _)| {
            name.as_str() != "Recurrence" && !CALENDAR_READ_ONLY.contains(&name.as_str())
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let (change_key, kind_of_instance) = match master.occurrences.modified.get(&index) {
        Some(exception) => {
            for name in &exception.removed {
                fields.remove(name);
            }
            fields.extend(exception.fields.clone());
            (exception.change_key.clone(), "Exception")
        }
        None => (master.change_key.clone(), "Occurrence"),
    };
    fields.insert("Start".into(), WireValue::Text(date_time_text(start)));
    fields.insert("End".into(), WireValue::Text(date_time_text(end)));
    fields.insert(
        "OriginalStart".into(),
        WireValue::Text(date_time_text(original)),
    );
    fields.insert("CalendarItemType".into(), item_type(kind_of_instance));
    StoredItem {
        id: occurrence_id(&master.id, index),
        change_key,
        fields,
        extended: master.extended.clone(),
        created_seq: master.created_seq,
        modified_seq: master.modified_seq,
        occurrences: Default::default(),
    }
}

/// Occurrence `index` of `master`, or why there is none.
pub(crate) fn occurrence_view(master: &StoredItem, index: u32) -> Result<StoredItem, ItemError> {
    let Some(series) = Series::of(master) else {
        return Err((
            "ErrorCalendarCannotUseIdForRecurringMasterId",
            "The id given as RecurringMasterId is not the id of a recurring master.".into(),
        ));
    };
    let Some(date) = series.rule.date_of(index) else {
        return Err((
            "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
            format!("The series has no occurrence with index {index}."),
        ));
    };
    if master.occurrences.deleted.contains(&index) {
        return Err((
            "ErrorCalendarOccurrenceIsDeletedFromRecurrence",
            format!("Occurrence {index} was deleted from the series."),
        ));
    }
    Ok(instance(
        master,
        &series,
        index,
        series.original_start(date),
    ))
}

/// `t:OccurrenceInfoType` markup of one instance.
fn occurrence_info(out: &mut XmlOut, tag: &str, item: &StoredItem) {
    let text = |name: &str| match item.fields.get(name) {
        Some(WireValue::Text(text)) => text.clone(),
        _ => String::new(),
    };
    out.open(tag, &[]);
    out.empty(
        "t:ItemId",
        &[("Id", &item.id), ("ChangeKey", &item.change_key)],
    );
    out.text_element("t:Start", &[], &text("Start"));
    out.text_element("t:End", &[], &text("End"));
    out.text_element("t:OriginalStart", &[], &text("OriginalStart"));
    out.close(tag);
}

/// An item as GetItem shows it: a calendar item gets its `CalendarItemType`, and a recurring
/// master its FirstOccurrence, LastOccurrence (series with an end), ModifiedOccurrences and
/// DeletedOccurrences.
pub(crate) fn item_view(kind: ItemKind, item: &StoredItem) -> StoredItem {
    let mut view = item.clone();
    if kind != ItemKind::CalendarItem {
        return view;
    }
    let Some(series) = Series::of(item) else {
        view.fields
            .insert("CalendarItemType".into(), item_type("Single"));
        return view;
    };
    view.fields
        .insert("CalendarItemType".into(), item_type("RecurringMaster"));
    let edits = &item.occurrences;
    let mut first: Option<StoredItem> = None;
    let mut last: Option<(u32, DateTime<Utc>)> = None;
    series.rule.walk(None, |index, date| {
        if edits.deleted.contains(&index) {
            return true;
        }
        let original = series.original_start(date);
        if first.is_none() {
            first = Some(instance(item, &series, index, original));
        }
        last = Some((index, original));
        // Without an end, only the first occurrence is needed.
        series.rule.has_end()
    });
    let markup = |write: &dyn Fn(&mut XmlOut)| {
        let mut out = XmlOut::default();
        write(&mut out);
        WireValue::Text(out.finish())
    };
    if let Some(first) = &first {
        view.fields.insert(
            "FirstOccurrence".into(),
            markup(&|out| occurrence_info(out, "t:FirstOccurrence", first)),
        );
    }
    if series.rule.has_end()
        && let Some((index, original)) = last
    {
        let last = instance(item, &series, index, original);
        view.fields.insert(
            "LastOccurrence".into(),
            markup(&|out| occurrence_info(out, "t:LastOccurrence", &last)),
        );
    }
    let originals: BTreeMap<u32, DateTime<Utc>> = edits
        .modified
        .keys()
        .chain(edits.deleted.iter())
        .filter_map(|index| {
            let date = series.rule.date_of(*index)?;
            Some((*index, series.original_start(date)))
        })
        .collect();
    if !edits.modified.is_empty() {
        let modified: Vec<StoredItem> = edits
            .modified
            .keys()
            .filter_map(|index| Some(instance(item, &series, *index, *originals.get(index)?)))
            .collect();
        view.fields.insert(
            "ModifiedOccurrences".into(),
            markup(&|out| {
                out.open("t:ModifiedOccurrences", &[]);
                for occurrence in &modified {
                    occurrence_info(out, "t:Occurrence", occurrence);
                }
                out.close("t:ModifiedOccurrences");
            }),
        );
    }
    if !edits.deleted.is_empty() {
        view.fields.insert(
            "DeletedOccurrences".into(),
            markup(&|out| {
                out.open("t:DeletedOccurrences", &[]);
                for index in &edits.deleted {
                    if let Some(original) = originals.get(index) {
                        out.open("t:DeletedOccurrence", &[]);
                        out.text_element("t:Start", &[], &date_time_text(*original));
                        out.close("t:DeletedOccurrence");
                    }
                }
                out.close("t:DeletedOccurrences");
            }),
        );
    }
    view
}

/// Whether an instance from `start` to `end` shows in a CalendarView of `[from, to)`: the
/// view leaves out items that end before StartDate or start on or after EndDate.
fn in_view(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> bool {
    end >= from && start < to
}

/// The CalendarView of a calendar folder's items: single items and the occurrences and
/// exceptions of every recurring master that fall in `[from, to)`, ordered by start.
pub(crate) fn expand(
    items: &[&StoredItem],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<StoredItem> {
    let mut found: Vec<(DateTime<Utc>, StoredItem)> = Vec::new();
    for item in items {
        let Some(series) = Series::of(item) else {
            let Some(start) = date_time_field(&item.fields, "Start") else {
                continue;
            };
            let end = date_time_field(&item.fields, "End").unwrap_or(start);
            if in_view(start, end, from, to) {
                found.push((start, item_view(ItemKind::CalendarItem, item)));
            }
            continue;
        };
        let edits = &item.occurrences;
        let last_day = to.date_naive();
        series.rule.walk(Some(last_day), |index, date| {
            let original = series.original_start(date);
            if !edits.deleted.contains(&index) && !edits.modified.contains_key(&index) {
                let end = original + series.duration;
                if in_view(original, end, from, to) {
                    found.push((original, instance(item, &series, index, original)));
                }
            }
            true
        });
        for index in edits.modified.keys() {
            let Some(date) = series.rule.date_of(*index) else {
                continue;
            };
            let original = series.original_start(date);
            let (start, end) = instance_times(item, &series, *index, original);
            if in_view(start, end, from, to) {
                found.push((start, instance(item, &series, *index, original)));
            }
        }
    }
    found.sort_by_key(|(start, _)| *start);
    found.into_iter().map(|(_, item)| item).collect()
}

/// How a request names an item (types.xsd `NonEmptyArrayOfBaseItemIdsType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemRef {
    /// `t:ItemId`: an item, a recurring master, or an occurrence by its own id.
    Id {
        id: String,
        change_key: Option<String>,
    },
    /// `t:OccurrenceItemId`: occurrence `index` of a master (ChangeKey is the master's).
    Occurrence {
        master: String,
        index: i64,
        change_key: Option<String>,
    },
    /// `t:RecurringMasterItemId`: the master of an occurrence (ChangeKey is the occurrence's).
    MasterOf {
        occurrence: String,
        change_key: Option<String>,
    },
}

impl ItemRef {
    /// Reads one id element; `Ok(None)` when `element` is not an item id.
    pub fn from_element(element: &Element) -> Result<Option<Self>, String> {
        let attr = |name: &str| {
            element
                .attr(name)
                .map(str::to_owned)
                .ok_or_else(|| format!("{} needs a {name} attribute", element.name))
        };
        let change_key = element.attr("ChangeKey").map(str::to_owned);
        Ok(Some(match element.name.as_str() {
            "ItemId" => ItemRef::Id {
                id: attr("Id")?,
                change_key,
            },
            "OccurrenceItemId" => {
                let text = attr("InstanceIndex")?;
                ItemRef::Occurrence {
                    master: attr("RecurringMasterId")?,
                    index: text
                        .trim()
                        .parse()
                        .map_err(|_| format!("InstanceIndex '{text}' is not an xs:int"))?,
                    change_key,
                }
            }
            "RecurringMasterItemId" => ItemRef::MasterOf {
                occurrence: attr("OccurrenceId")?,
                change_key,
            },
            "RecurringMasterItemIdRanges" => {
                return Err(
                    "RecurringMasterItemIdRanges is not supported by this EWS emulator".into(),
                );
            }
            _ => return Ok(None),
        }))
    }

    /// The ChangeKey the request sent with the id.
    pub fn change_key(&self) -> Option<&str> {
        match self {
            ItemRef::Id { change_key, .. }
            | ItemRef::Occurrence { change_key, .. }
            | ItemRef::MasterOf { change_key, .. } => change_key.as_deref(),
        }
    }
}

/// What an id resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A stored item (a single item or a recurring master), by id.
    Item(String),
    /// Occurrence `index` of the master with this id.
    Occurrence { master: String, index: u32 },
}

/// An id resolved: the target, the item as the reply shows it, and the ChangeKey the
/// request's ChangeKey must match.
pub(crate) struct Resolved {
    pub kind: ItemKind,
    pub target: Target,
    pub view: StoredItem,
    pub expected_change_key: String,
}

/// Finds what `item_ref` names in `mailbox`.
pub(crate) fn resolve(mailbox: &Mailbox, item_ref: &ItemRef) -> Result<Resolved, ItemError> {
    let occurrence = |master_id: &str, index: u32| -> Result<Resolved, ItemError> {
        let (kind, master) = mailbox.item(master_id).ok_or_else(not_found)?;
        if kind != ItemKind::CalendarItem {
            return Err((
                "ErrorCalendarCannotUseIdForRecurringMasterId",
                "The id given as RecurringMasterId is not the id of a recurring master.".into(),
            ));
        }
        let view = occurrence_view(master, index)?;
        Ok(Resolved {
            kind,
            target: Target::Occurrence {
                master: master_id.to_owned(),
                index,
            },
            expected_change_key: view.change_key.clone(),
            view,
        })
    };
    match item_ref {
        ItemRef::Id { id, .. } => match parse_occurrence_id(id) {
            Some((master, index)) => occurrence(&master, index),
            None => {
                let (kind, item) = mailbox.item(id).ok_or_else(not_found)?;
                Ok(Resolved {
                    kind,
                    target: Target::Item(id.clone()),
                    expected_change_key: item.change_key.clone(),
                    view: item_view(kind, item),
                })
            }
        },
        ItemRef::Occurrence { master, index, .. } => {
            let index = u32::try_from(*index)
                .ok()
                .filter(|i| (1..=MAX_INSTANCE_INDEX).contains(i))
                .ok_or_else(|| {
                    (
                        "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                        format!("InstanceIndex {index} is outside the series."),
                    )
                })?;
            let mut resolved = occurrence(master, index)?;
            if let Some((_, item)) = mailbox.item(master) {
                resolved.expected_change_key = item.change_key.clone();
            }
            Ok(resolved)
        }
        ItemRef::MasterOf { occurrence: id, .. } => {
            let Some((master_id, index)) = parse_occurrence_id(id) else {
                return Err(match mailbox.item(id) {
                    Some(_) => (
                        "ErrorCalendarCannotUseIdForOccurrenceId",
                        "The id given as OccurrenceId is not the id of an occurrence.".into(),
                    ),
                    None => not_found(),
                });
            };
            let (kind, master) = mailbox.item(&master_id).ok_or_else(not_found)?;
            let expected_change_key = occurrence_view(master, index)
                .map(|view| view.change_key)
                .unwrap_or_else(|_| master.change_key.clone());
            Ok(Resolved {
                kind,
                target: Target::Item(master_id.clone()),
                view: item_view(kind, master),
                expected_change_key,
            })
        }
    }
}

/// Why a calendar item's `Recurrence` cannot be expanded, if it has one that cannot.
pub(crate) fn recurrence_problem(fields: &BTreeMap<String, WireValue>) -> Option<String> {
    match fields.get("Recurrence")? {
        WireValue::Text(markup) => Recurrence::from_markup(markup).err(),
        WireValue::List(_) => Some("Recurrence is not an element".into()),
    }
}

/// Records `updated` (an occurrence view after an UpdateItem) as exception `index` of
/// `master`, keeping only what differs from the master.
pub(crate) fn record_exception(
    master: &mut StoredItem,
    index: u32,
    updated: &StoredItem,
    change_key: String,
) {
    let computed = |name: &str| name == "Recurrence" || CALENDAR_READ_ONLY.contains(&name);
    let fields = updated
        .fields
        .iter()
        .filter(|(name, value)| {
            !computed(name)
                && (matches!(name.as_str(), "Start" | "End")
                    || master.fields.get(*name) != Some(*value))
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let removed = master
        .fields
        .keys()
        .filter(|name| !computed(name) && !updated.fields.contains_key(*name))
        .cloned()
        .collect();
    master.occurrences.modified.insert(
        index,
        ModifiedOccurrence {
            change_key,
            fields,
            removed,
        },
    );
}

/// Records occurrence `index` of `master` as deleted from the series.
pub(crate) fn record_deletion(master: &mut StoredItem, index: u32) {
    master.occurrences.modified.remove(&index);
    master.occurrences.deleted.insert(index);
}

/// Drops a master's exceptions and deletions when its series itself changed (recurrence,
/// start or end), as Exchange does when a series is rescheduled.
pub(crate) fn reset_edits_if_series_changed(before: &StoredItem, after: &mut StoredItem) {
    let changed = ["Recurrence", "Start", "End"]
        .iter()
        .any(|name| before.fields.get(*name) != after.fields.get(*name));
    if changed {
        after.occurrences = Default::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn occurrence_ids_round_trip_and_plain_ids_are_not_occurrences() {
        let id = occurrence_id("AAMkAGI2ab/c+d==", 17);
        assert_eq!(
            parse_occurrence_id(&id),
            Some(("AAMkAGI2ab/c+d==".into(), 17))
        );
        assert_eq!(parse_occurrence_id("AAMkAGI2ab/c+d=="), None);
        assert_eq!(parse_occurrence_id("not base64!"), None);
    }
}
