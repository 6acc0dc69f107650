//! The host's view of a record: named, typed field values, the same shape as the WIT `value`.
//!
//! Connectors produce and consume `Fields`; the plugin runtime converts them to and from the
//! WIT types; the engine hashes them to tell whether a side changed. A record packs itself
//! into and unpacks itself from the packed format of plugin batches (`tandem-packed`), so it
//! can keep a plugin's answer as ranges of its bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tandem_packed::{Reader, Scalar, ValueView};

/// One field's value. Lists hold values of the non-list kinds only (WIT has no recursion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
pub enum Value {
    Null,
    Text(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    DateTime(DateTime<Utc>),
    List(Vec<Value>),
}

impl Value {
    /// The value as plain JSON, for people and scripts: text as a string, numbers as
    /// numbers, a date-time as RFC 3339 text, a list as an array, `Null` as `null`.
    pub fn to_plain_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Text(text) => serde_json::Value::String(text.clone()),
            Value::Integer(n) => serde_json::Value::from(*n),
            Value::Number(n) => serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Boolean(b) => serde_json::Value::Bool(*b),
            Value::DateTime(at) => serde_json::Value::String(at.to_rfc3339()),
            Value::List(values) => serde_json::Value::Array(values.iter().map(Value::to_plain_json).collect()),
        }
    }

    /// The text, when this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// True for `Null` and for empty text: both mean "no value" on either side.
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(text) => text.is_empty(),
            _ => false,
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

/// A record: field name to value, ordered by name so hashing and comparison are stable.
///
/// A sorted `Vec` (one allocation per record, binary search). A record a plugin returned
/// keeps its names and values as ranges of the plugin's answer bytes, already checked, and
/// decodes a value the first time it is read: unpacking a batch of answers allocates once per
/// record, not once per name and per text. A value passed on to the next plugin unread is
/// packed as the bytes it came in.
#[derive(Clone, Default)]
pub struct Fields {
    /// Sorted by name, names unique.
    entries: Vec<Entry>,
    /// The answer bytes that `Name::Packed` and `Slot::Packed` ranges point into.
    packed: Option<Arc<Vec<u8>>>,
}

#[derive(Clone)]
enum Name {
    Owned(Box<str>),
    /// A range of `Fields::packed` checked to be UTF-8.
    Packed(Range<u32>),
}

#[derive(Clone)]
enum Slot {
    Ready(Value),
    /// A range of `Fields::packed` holding a checked value in the packed format (tag
    /// first); `decoded` fills on first read.
    Packed {
        range: Range<u32>,
        decoded: OnceLock<Value>,
    },
}

#[derive(Clone)]
struct Entry {
    name: Name,
    slot: Slot,
}

/// The field ranges of one record being unpacked: kept from record to record of a batch, so
/// that unpacking allocates once per record (the record's own entries).
pub(crate) type FieldRanges = Vec<(Range<u32>, Range<u32>)>;

impl Fields {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends this record in the packed format (a record of `packed-records`, or of a
    /// `record` answer): a value never read goes as the bytes it came in. Fails on a list
    /// inside a list or a text of 4 GiB or more, leaving a part of the record appended.
    pub(crate) fn pack_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let too_long = |e: tandem_packed::Error| e.to_string();
        tandem_packed::put_record_header(out, self.len()).map_err(too_long)?;
        for entry in &self.entries {
            let name = self.name_of(&entry.name);
            tandem_packed::put_text(out, name).map_err(too_long)?;
            match &entry.slot {
                Slot::Packed { range, .. } => match self.packed_range(range) {
                    Some(bytes) => out.extend_from_slice(bytes),
                    None => tandem_packed::put_null(out),
                },
                Slot::Ready(value) => pack_value(out, value, true)
                    .map_err(|e| format!("field `{name}` can't be passed to a plugin: {e}"))?,
            }
        }
        Ok(())
    }

    /// The record at `reader`'s position, its bytes checked (structure, UTF-8, times in
    /// range, names unique) but nothing decoded: its names and values stay ranges of
    /// `packed`, the bytes `reader` started from. `ranges` is scratch space kept from
    /// record to record. The outer error is a broken format (nothing after it can be read);
    /// the inner one a record the host can't accept (the bytes after it are still readable).
    pub(crate) fn unpack(
        reader: &mut Reader<'_>,
        packed: &Arc<Vec<u8>>,
        ranges: &mut FieldRanges,
    ) -> Result<Result<Fields, String>, tandem_packed::Error> {
        let fields = reader.record()?;
        ranges.clear();
        ranges.reserve(fields.capacity_hint());
        let mut problem = None;
        for field in fields {
            let field = field?;
            if field.holds_date_time && problem.is_none() {
                let value = packed
                    .get(field.value.start as usize..field.value.end as usize)
                    .unwrap_or_default();
                if let Err(e) = check_times(value) {
                    problem = Some(format!("field `{}`: {e}", field.name));
                }
            }
            ranges.push((field.name_range(), field.value));
        }
        if let Some(problem) = problem {
            return Ok(Err(problem));
        }
        let name = |range: &Range<u32>| {
            packed
                .get(range.start as usize..range.end as usize)
                .unwrap_or_default()
        };
        // The SDK sends names in order; a repeated name shows as two equal neighbours.
        if !ranges
            .windows(2)
            .all(|pair| name(&pair[0].0) < name(&pair[1].0))
        {
            ranges.sort_by(|a, b| name(&a.0).cmp(name(&b.0)));
            if let Some(pair) = ranges
                .windows(2)
                .find(|pair| name(&pair[0].0) == name(&pair[1].0))
            {
                return Ok(Err(format!(
                    "field `{}` appears more than once",
                    String::from_utf8_lossy(name(&pair[0].0))
                )));
            }
        }
        Ok(Ok(Fields::from_packed(
            Arc::clone(packed),
            ranges.drain(..),
        )))
    }

    /// A record whose names and values are ranges of `packed`, already checked by the
    /// caller: names UTF-8, sorted and unique; values well formed.
    fn from_packed(
        packed: Arc<Vec<u8>>,
        fields: impl ExactSizeIterator<Item = (Range<u32>, Range<u32>)>,
    ) -> Self {
        let entries = fields
            .map(|(name, value)| Entry {
                name: Name::Packed(name),
                slot: Slot::Packed {
                    range: value,
                    decoded: OnceLock::new(),
                },
            })
            .collect();
        Fields {
            entries,
            packed: Some(packed),
        }
    }

    fn bytes(&self, range: &Range<u32>) -> &[u8] {
        self.packed_range(range).unwrap_or_default()
    }

    /// The bytes at `range` of the answers; `None` when out of them (never made).
    fn packed_range(&self, range: &Range<u32>) -> Option<&[u8]> {
        self.packed
            .as_deref()
            .and_then(|packed| packed.get(range.start as usize..range.end as usize))
    }

    fn name_of<'a>(&'a self, name: &'a Name) -> &'a str {
        match name {
            Name::Owned(name) => name,
            // Checked as UTF-8 when unpacked; a range that isn't (never made) reads as "".
            Name::Packed(range) => std::str::from_utf8(self.bytes(range)).unwrap_or_default(),
        }
    }

    fn name_bytes<'a>(&'a self, name: &'a Name) -> &'a [u8] {
        match name {
            Name::Owned(name) => name.as_bytes(),
            Name::Packed(range) => self.bytes(range),
        }
    }

    fn value_of<'a>(&'a self, slot: &'a Slot) -> &'a Value {
        match slot {
            Slot::Ready(value) => value,
            Slot::Packed { range, decoded } => {
                decoded.get_or_init(|| decode_value(self.bytes(range)).unwrap_or(Value::Null))
            }
        }
    }

    fn take_value(&self, slot: Slot) -> Value {
        match slot {
            Slot::Ready(value) => value,
            Slot::Packed { range, decoded } => decoded
                .into_inner()
                .unwrap_or_else(|| decode_value(self.bytes(&range)).unwrap_or(Value::Null)),
        }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|entry| self.name_bytes(&entry.name).cmp(name.as_bytes()))
    }

    /// The value of `name`, when present (a present field may still be `Null`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        let index = self.position(name).ok()?;
        Some(self.value_of(&self.entries[index].slot))
    }

    /// True when `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name` to `value`; returns the value it replaces.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        match self.position(&name) {
            Ok(index) => {
                let old = std::mem::replace(&mut self.entries[index].slot, Slot::Ready(value));
                Some(self.take_value(old))
            }
            Err(index) => {
                self.entries.insert(
                    index,
                    Entry {
                        name: Name::Owned(name.into_boxed_str()),
                        slot: Slot::Ready(value),
                    },
                );
                None
            }
        }
    }

    /// Removes `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let index = self.position(name).ok()?;
        let entry = self.entries.remove(index);
        Some(self.take_value(entry.slot))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The fields in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            fields: self,
            entries: self.entries.iter(),
        }
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(name, _)| name)
    }

    /// The values in name order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.iter().map(|(_, value)| value)
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Value) -> bool) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.retain(|entry| keep(self.name_of(&entry.name), self.value_of(&entry.slot)));
        self.entries = entries;
    }
}

/// Appends `value` in the packed format; a list only where `list_allowed` (not in a list).
fn pack_value(
    out: &mut Vec<u8>,
    value: &Value,
    list_allowed: bool,
) -> Result<(), tandem_packed::Error> {
    match value {
        Value::Null => tandem_packed::put_null(out),
        Value::Text(t) => tandem_packed::put_text_value(out, t)?,
        Value::Integer(n) => tandem_packed::put_integer(out, *n),
        Value::Number(n) => tandem_packed::put_number(out, *n),
        Value::Boolean(b) => tandem_packed::put_boolean(out, *b),
        Value::DateTime(t) => {
            tandem_packed::put_date_time(out, t.timestamp(), t.timestamp_subsec_nanos());
        }
        Value::List(items) if list_allowed => {
            tandem_packed::put_list_header(out, items.len())?;
            for item in items {
                pack_value(out, item, false)?;
            }
        }
        Value::List(_) => return Err(tandem_packed::Error::ListInList),
    }
    Ok(())
}

/// Fails when a packed value (checked by a record walk) holds a time out of range.
fn check_times(value: &[u8]) -> Result<(), String> {
    let check = |scalar: Scalar<'_>| match scalar {
        Scalar::DateTime {
            seconds,
            nanoseconds,
        } => date_time_from_parts(seconds, nanoseconds).map(drop),
        _ => Ok(()),
    };
    match tandem_packed::read_value(value).map_err(|e| e.to_string())? {
        ValueView::Scalar(scalar) => check(scalar),
        ValueView::List(mut items) => {
            items.try_for_each(|item| item.map_err(|e| e.to_string()).and_then(check))
        }
    }
}

/// Decodes one packed value (tag first) that [`Fields::unpack`] checked; `None` when the
/// bytes aren't one (never, for a checked value).
fn decode_value(bytes: &[u8]) -> Option<Value> {
    Some(match tandem_packed::read_value(bytes).ok()? {
        ValueView::Scalar(scalar) => scalar_value(scalar)?,
        ValueView::List(items) => {
            let mut list = Vec::with_capacity(items.capacity_hint());
            for item in items {
                list.push(scalar_value(item.ok()?)?);
            }
            Value::List(list)
        }
    })
}

fn scalar_value(scalar: Scalar<'_>) -> Option<Value> {
    Some(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Text(t) => Value::Text(t.to_owned()),
        Scalar::Integer(n) => Value::Integer(n),
        Scalar::Number(n) => Value::Number(n),
        Scalar::Boolean(b) => Value::Boolean(b),
        Scalar::DateTime {
            seconds,
            nanoseconds,
        } => Value::DateTime(date_time_from_parts(seconds, nanoseconds).ok()?),
    })
}

/// A time as WIT carries it (seconds since 1970 and nanoseconds), checked to be one chrono
/// can hold.
pub(crate) fn date_time_from_parts(
    seconds: i64,
    nanoseconds: u32,
) -> Result<DateTime<Utc>, String> {
    if nanoseconds >= 1_000_000_000 {
        return Err(format!(
            "date-time nanoseconds {nanoseconds} is not below 10^9"
        ));
    }
    DateTime::from_timestamp(seconds, nanoseconds)
        .ok_or_else(|| format!("date-time {seconds} s since 1970 is out of range"))
}

/// The fields of a [`Fields`] by reference, in name order.
pub struct Iter<'a> {
    fields: &'a Fields,
    entries: std::slice::Iter<'a, Entry>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.entries.next()?;
        Some((
            self.fields.name_of(&entry.name),
            self.fields.value_of(&entry.slot),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The fields of a [`Fields`] by value, in name order.
pub struct IntoIter {
    fields: Fields,
    entries: std::vec::IntoIter<Entry>,
}

impl Iterator for IntoIter {
    type Item = (String, Value);

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.entries.next()?;
        let name = match entry.name {
            Name::Owned(name) => name.into(),
            packed => self.fields.name_of(&packed).to_owned(),
        };
        Some((name, self.fields.take_value(entry.slot)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for IntoIter {}

impl IntoIterator for Fields {
    type Item = (String, Value);
    type IntoIter = IntoIter;
    fn into_iter(mut self) -> IntoIter {
        let entries = std::mem::take(&mut self.entries).into_iter();
        IntoIter {
            fields: self,
            entries,
        }
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut fields = Fields::new();
        fields.extend(iter);
        fields
    }
}

impl<K: Into<String>> Extend<(K, Value)> for Fields {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.insert(name.into(), value);
        }
    }
}

impl<const N: usize> From<[(String, Value); N]> for Fields {
    fn from(fields: [(String, Value); N]) -> Self {
        fields.into_iter().collect()
    }
}

/// `fields["Name"]`: the value of a field known to be present; panics otherwise, as a map's
/// index does.
impl std::ops::Index<&str> for Fields {
    type Output = Value;
    fn index(&self, name: &str) -> &Value {
        self.get(name)
            .unwrap_or_else(|| panic!("no field `{name}` in the record"))
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

/// Stored and sent as a JSON object, as a `BTreeMap<String, Value>` was.
impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Value>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

/// A stable hash of a record's content. Blank fields are left out, so a side that drops an
/// empty field does not look changed.
pub fn content_hash(fields: &Fields) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in fields.iter().filter(|(_, value)| !value.is_blank()) {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        // serde_json of our own enum cannot fail.
        let encoded = serde_json::to_vec(value).unwrap_or_default();
        hasher.update(&encoded);
        hasher.update([0xff]);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fields {
        let when = DateTime::from_timestamp(1_700_000_000, 5).expect("valid time");
        Fields::from([
            ("Text".to_owned(), "hello".into()),
            ("Blank".to_owned(), "".into()),
            ("Null".to_owned(), Value::Null),
            ("Int".to_owned(), Value::Integer(-3)),
            ("Num".to_owned(), Value::Number(2.5)),
            ("Bool".to_owned(), Value::Boolean(true)),
            ("When".to_owned(), Value::DateTime(when)),
            (
                "List".to_owned(),
                Value::List(vec!["a".into(), Value::Null]),
            ),
            ("Zoë".to_owned(), "ünïcödé".into()),
        ])
    }

    /// `fields` as a plugin would send it back unchanged: packed, and unpacked into a record
    /// that keeps its values as bytes.
    fn through_answers(fields: &Fields) -> Fields {
        let mut packed = Vec::new();
        fields.pack_into(&mut packed).expect("packs");
        let packed = Arc::new(packed);
        let mut reader = Reader::new(&packed);
        let record = Fields::unpack(&mut reader, &packed, &mut Vec::new())
            .expect("well formed")
            .expect("acceptable");
        assert!(reader.is_empty(), "one record");
        record
    }

    #[test]
    fn a_record_from_packed_answers_reads_edits_and_stores_like_a_built_one() {
        let built = sample();
        let mut packed = through_answers(&built);
        assert_eq!(packed, built);
        assert_eq!(format!("{packed:?}"), format!("{built:?}"));
        assert_eq!(content_hash(&packed), content_hash(&built));
        assert_eq!(
            serde_json::to_string(&packed).expect("serializes"),
            serde_json::to_string(&BTreeMap::from_iter(built.clone())).expect("serializes"),
            "stored as the JSON object a BTreeMap<String, Value> was"
        );
        let back: Fields = serde_json::from_str(&serde_json::to_string(&packed).expect("json"))
            .expect("deserializes");
        assert_eq!(back, built);
        // Packing a packed record again copies its bytes: the same answer comes back.
        assert_eq!(through_answers(&packed), built);

        assert_eq!(packed["Zoë"], Value::from("ünïcödé"));
        assert!(packed.contains_key("Int") && !packed.contains_key("Missing"));
        assert_eq!(
            packed.insert("Int".into(), Value::Integer(4)),
            Some(Value::Integer(-3))
        );
        assert_eq!(packed.remove("Num"), Some(Value::Number(2.5)));
        assert_eq!(packed.insert("Added".into(), "x".into()), None);
        packed.retain(|name, _| name != "Blank");
        let names: Vec<&str> = packed.keys().collect();
        assert_eq!(
            names,
            [
                "Added", "Bool", "Int", "List", "Null", "Text", "When", "Zoë"
            ]
        );
        let owned: Vec<(String, Value)> = packed.clone().into_iter().collect();
        assert_eq!(owned.len(), packed.len());
        assert!(owned.contains(&("Text".to_owned(), "hello".into())));
        assert!(owned.contains(&("Int".to_owned(), Value::Integer(4))));
    }

    #[test]
    fn hash_ignores_blank_fields_and_order() {
        let mut a = Fields::new();
        a.insert("GivenName".into(), "Ann".into());
        a.insert("Surname".into(), "Lee".into());
        let mut b = a.clone();
        b.insert("JobTitle".into(), Value::Null);
        b.insert("Nickname".into(), "".into());
        assert_eq!(content_hash(&a), content_hash(&b));
        b.insert("JobTitle".into(), "CEO".into());
        assert_ne!(content_hash(&a), content_hash(&b));
    }
}
