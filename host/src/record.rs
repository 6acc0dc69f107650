//! The host's view of a record: named, typed field values, the same shape as the WIT `value`.
//!
//! Connectors produce and consume `Fields`; the plugin runtime converts them to and from the
//! WIT types; the engine hashes them to tell whether a side changed.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// How a field's value is packed for a plugin (see `plugin::convert`).
pub(crate) enum PackedValue<'a> {
    /// Bytes in the packed format, as a plugin sent them: copy them as they are.
    Bytes(&'a [u8]),
    /// A value to encode.
    Value(&'a Value),
}

/// What a `Slot::Packed` whose range is out of its bytes (never made) reads as.
static NULL: Value = Value::Null;

impl Fields {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// A record whose names and values are ranges of `packed`, already checked by the
    /// caller: names UTF-8, sorted and unique; values well formed.
    pub(crate) fn from_packed(
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
            Slot::Packed { range, decoded } => decoded.get_or_init(|| {
                crate::plugin::convert::decode_value(self.bytes(range)).unwrap_or(Value::Null)
            }),
        }
    }

    fn take_value(&self, slot: Slot) -> Value {
        match slot {
            Slot::Ready(value) => value,
            Slot::Packed { range, decoded } => decoded.into_inner().unwrap_or_else(|| {
                crate::plugin::convert::decode_value(self.bytes(&range)).unwrap_or(Value::Null)
            }),
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

    /// The fields in name order, each value as bytes to copy or a value to encode.
    pub(crate) fn to_pack(&self) -> impl Iterator<Item = (&str, PackedValue<'_>)> {
        self.entries.iter().map(|entry| {
            let value = match &entry.slot {
                Slot::Packed { range, .. } => match self.packed_range(range) {
                    Some(bytes) => PackedValue::Bytes(bytes),
                    None => PackedValue::Value(&NULL),
                },
                Slot::Ready(value) => PackedValue::Value(value),
            };
            (self.name_of(&entry.name), value)
        })
    }
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
    use crate::plugin::convert::{PackedAnswer, PackedBatch, unpack_answers};

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

    /// `fields` as a plugin would send it back unchanged: packed, re-tagged as an answer,
    /// and unpacked into a record that keeps its values as bytes.
    fn through_answers(fields: &Fields) -> Fields {
        let mut batch = PackedBatch::new(1);
        batch.push(fields).expect("packs");
        let mut answers = batch.finish();
        answers.insert(4, 0); // the `record` answer tag, before the record's bytes
        match unpack_answers(answers, 1).expect("well formed").pop() {
            Some(PackedAnswer::Record(Ok(record))) => record,
            _ => panic!("one record"),
        }
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
