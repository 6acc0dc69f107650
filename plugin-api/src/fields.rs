//! [`Fields`], the record type of every plugin kind, built to be cheap where a mapping spends
//! its time: the fields are a sorted `Vec` (one allocation per record, binary search); a
//! record unpacked from the host's packed batch keeps its names and values as bytes of that
//! batch, decoding a value the first time it is read (a field a mapping never reads is
//! never decoded; one it passes on unchanged, e.g. with [`Fields::set_from`], is copied back
//! as bytes); names a plugin sets are stored inline up to 30 bytes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use crate::Value;

/// What a `Slot::Packed` whose range is out of its batch (never made) reads as.
static NULL: Value = Value::Null;

/// The room a record built field by field starts with.
const TYPICAL_FIELDS: usize = 16;

/// Names up to this many bytes are stored inline.
const INLINE_NAME: usize = 30;

/// A field name: a range of the record's batch when it came from the host, else inline when
/// short and on the heap otherwise; with its first eight bytes as a number so that most
/// comparisons are one integer comparison. Ordered as bytes (for UTF-8 the same order as
/// `str`'s). Reading one takes the bytes of the batch of the record that holds it.
#[derive(Clone)]
pub(crate) struct Name {
    /// The first eight bytes, big-endian, zero-padded: comparing two prefixes orders two
    /// names unless the prefixes are equal.
    prefix: u64,
    text: NameText,
}

#[derive(Clone)]
enum NameText {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<str>),
    /// `start..start + len` of the batch, checked as UTF-8 when the record was unpacked.
    InBatch { start: u32, len: u32 },
}

impl Name {
    pub(crate) fn new(name: &str) -> Self {
        let len = name.len();
        if len > INLINE_NAME {
            return Name {
                prefix: prefix_of(name.as_bytes()),
                text: NameText::Heap(name.into()),
            };
        }
        let mut bytes = [0; INLINE_NAME];
        bytes[..len].copy_from_slice(name.as_bytes());
        Name {
            // The zero padding is what `prefix_of` pads with.
            prefix: bytes.first_chunk().map_or(0, |word| u64::from_be_bytes(*word)),
            // `len` fits: it is at most INLINE_NAME.
            text: NameText::Inline {
                len: len as u8,
                bytes,
            },
        }
    }

    /// The name `bytes`, found at `start` of the record's batch and checked to be UTF-8 by
    /// the caller: nothing is copied.
    pub(crate) fn in_batch(bytes: &[u8], start: u32) -> Self {
        Name {
            prefix: prefix_of(bytes),
            text: NameText::InBatch {
                start,
                // A name in a batch (of less than 4 GiB) is shorter than 4 GiB.
                len: bytes.len() as u32,
            },
        }
    }

    /// The name's bytes; `batch` is the batch of the record holding it.
    fn as_bytes<'a>(&'a self, batch: &'a [u8]) -> &'a [u8] {
        match &self.text {
            NameText::Inline { len, bytes } => &bytes[..usize::from(*len)],
            NameText::Heap(name) => name.as_bytes(),
            NameText::InBatch { start, len } => {
                batch_range(batch, &(*start..start.saturating_add(*len))).unwrap_or_default()
            }
        }
    }

    fn as_str<'a>(&'a self, batch: &'a [u8]) -> &'a str {
        match &self.text {
            NameText::Heap(name) => name,
            // SAFETY: `Name::new` copies the first `len` bytes of an `Inline` from a `&str`;
            // an `InBatch` range was checked as UTF-8 when its record was unpacked, and a
            // record's batch never changes (a record never takes another batch while it holds
            // names or values of its own). Both are valid UTF-8.
            _ => unsafe { std::str::from_utf8_unchecked(self.as_bytes(batch)) },
        }
    }

    fn into_string(self, batch: &[u8]) -> String {
        match self.text {
            NameText::Heap(name) => name.into(),
            _ => self.as_str(batch).to_owned(),
        }
    }

    /// This name's place relative to `name`, whose prefix is `prefix`.
    fn cmp_to(&self, batch: &[u8], prefix: u64, name: &[u8]) -> Ordering {
        self.prefix
            .cmp(&prefix)
            .then_with(|| compare_names(self.as_bytes(batch), name))
    }

    pub(crate) fn cmp(&self, other: &Name, batch: &[u8]) -> Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| compare_names(self.as_bytes(batch), other.as_bytes(batch)))
    }
}

/// The first eight bytes of `name` as a big-endian number, zero-padded. For two names whose
/// prefixes differ, the prefixes are in the names' byte order.
pub(crate) fn prefix_of(name: &[u8]) -> u64 {
    if let Some(word) = name.first_chunk::<8>() {
        return u64::from_be_bytes(*word);
    }
    // Byte by byte: a copy of a variable length is a call out of a plugin's code.
    name.iter()
        .enumerate()
        .fold(0, |word, (i, byte)| word | u64::from(*byte) << (56 - 8 * i))
}

/// Where a field's value is: decoded, or as bytes of the batch the record came from.
#[derive(Clone)]
pub(crate) enum Slot {
    Ready(Value),
    /// `range` of the record's batch holds the value in the packed format (tag first); it
    /// was validated when the record was unpacked. `decoded` fills on first read.
    Packed {
        range: Range<u32>,
        decoded: OnceLock<Value>,
    },
}

/// One field of a record.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) name: Name,
    pub(crate) slot: Slot,
}

impl Entry {
    pub(crate) fn packed(name: Name, range: Range<u32>) -> Self {
        Entry {
            name,
            slot: Slot::Packed {
                range,
                decoded: OnceLock::new(),
            },
        }
    }
}

/// How a field's value can be written into a packed answer.
pub(crate) enum ValueToPack<'a> {
    /// Bytes in the packed format, copied from the batch: write them as they are.
    Bytes(&'a [u8]),
    /// A value to encode.
    Value(&'a Value),
}

/// A record: field name to value, ordered by name.
///
/// On the wire a record is a list of fields; a name that appears twice keeps its last value.
/// Reading is cheap: a record the host sent keeps its values as received and decodes each
/// one the first time it is read, and [`get_text`](Fields::get_text) reads a text without
/// decoding it at all.
#[derive(Clone, Default)]
pub struct Fields {
    /// Sorted by name, names unique.
    entries: Vec<Entry>,
    /// The batch that `Slot::Packed` ranges point into, when any entry has one.
    batch: Option<Arc<Vec<u8>>>,
}

impl Fields {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// A record of `entries` whose packed names and values are ranges of `batch`; `sorted`
    /// when the caller saw the names strictly in order, else in any order, a repeated name
    /// keeping its last value.
    pub(crate) fn from_packed(batch: Arc<Vec<u8>>, mut entries: Vec<Entry>, sorted: bool) -> Self {
        if !sorted {
            sort_keeping_last(&mut entries, &batch);
        }
        Fields {
            entries,
            batch: Some(batch),
        }
    }

    /// The fields in name order, each as bytes to copy or a value to encode.
    pub(crate) fn to_pack(&self) -> impl Iterator<Item = (&str, ValueToPack<'_>)> {
        self.entries.iter().map(|entry| {
            let value = match &entry.slot {
                Slot::Packed { range, .. } => match batch_range(self.batch_bytes(), range) {
                    Some(bytes) => ValueToPack::Bytes(bytes),
                    None => ValueToPack::Value(&NULL),
                },
                slot => ValueToPack::Value(self.value_of(slot)),
            };
            (entry.name.as_str(self.batch_bytes()), value)
        })
    }

    /// The batch this record's packed names and values are ranges of (empty when none).
    fn batch_bytes(&self) -> &[u8] {
        self.batch.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Where `name` is (`Ok`) or would go (`Err`). A binary search on the eight-byte
    /// prefixes alone, then a byte comparison with the few names that share the prefix:
    /// lookups are most of a mapping's time.
    fn position(&self, name: &str) -> Result<usize, usize> {
        let name = name.as_bytes();
        let prefix = prefix_of(name);
        let entries = self.entries.as_slice();
        let (mut low, mut high) = (0, entries.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if entries[middle].name.prefix < prefix {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let batch = self.batch_bytes();
        for (index, entry) in entries.iter().enumerate().skip(low) {
            if entry.name.prefix != prefix {
                return Err(index);
            }
            match compare_names(entry.name.as_bytes(batch), name) {
                Ordering::Less => {}
                Ordering::Equal => return Ok(index),
                Ordering::Greater => return Err(index),
            }
        }
        Err(entries.len())
    }

    fn value_of<'a>(&'a self, slot: &'a Slot) -> &'a Value {
        match slot {
            Slot::Ready(value) => value,
            Slot::Packed { range, decoded } => {
                decoded.get_or_init(|| decode(self.packed_bytes(range)))
            }
        }
    }

    fn packed_bytes(&self, range: &Range<u32>) -> &[u8] {
        batch_range(self.batch_bytes(), range).unwrap_or_default()
    }

    /// `slot`'s value, out of a record whose batch is `batch`.
    fn take_value(batch: &[u8], slot: Slot) -> Value {
        match slot {
            Slot::Ready(value) => value,
            Slot::Packed { range, decoded } => decoded
                .into_inner()
                .unwrap_or_else(|| decode(batch_range(batch, &range).unwrap_or_default())),
        }
    }

    /// The value of `name`, when present (a present field may still be `Null`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        let index = self.position(name).ok()?;
        Some(self.value_of(&self.entries[index].slot))
    }

    /// The text of `name`, when present and a non-empty text.
    pub fn get_text(&self, name: &str) -> Option<&str> {
        let index = self.position(name).ok()?;
        let text = match &self.entries[index].slot {
            Slot::Packed { range, decoded } if decoded.get().is_none() => {
                tandem_packed::text_of(self.packed_bytes(range))
            }
            slot => self.value_of(slot).as_text(),
        };
        text.filter(|t| !t.is_empty())
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub fn set(&mut self, name: impl AsRef<str>, value: impl Into<Value>) {
        self.set_slot(name.as_ref(), Slot::Ready(value.into()));
    }

    /// Sets `name` to `source`'s value of `source_name`, or to `Null` when `source` lacks it
    /// or it is blank: the one-field mapping every default plugin is made of (so clearing a
    /// field on one side clears it on the other).
    ///
    /// Cheaper than `set(name, source.get(source_name).cloned()...)`: a value `source`
    /// received from the host and nobody read yet is passed on as its bytes, never decoded
    /// or copied.
    ///
    /// ```
    /// use tandem_plugin_api::{Fields, Value};
    /// let siebel: Fields = [("First Name", "Ann"), ("Last Name", "")].into_iter().collect();
    /// let mut exchange = Fields::new();
    /// exchange.set_from("GivenName", &siebel, "First Name");
    /// exchange.set_from("Surname", &siebel, "Last Name");
    /// exchange.set_from("MiddleName", &siebel, "Middle Name");
    /// assert_eq!(exchange.get_text("GivenName"), Some("Ann"));
    /// assert_eq!(exchange.get("Surname"), Some(&Value::Null));
    /// assert_eq!(exchange.get("MiddleName"), Some(&Value::Null));
    /// ```
    pub fn set_from(&mut self, name: impl AsRef<str>, source: &Fields, source_name: &str) {
        let slot = match source.position(source_name) {
            Err(_) => Slot::Ready(Value::Null),
            Ok(index) => match (&source.entries[index].slot, &source.batch) {
                (Slot::Packed { range, .. }, Some(batch)) if self.may_share(batch) => {
                    if tandem_packed::is_blank(source.packed_bytes(range)) {
                        Slot::Ready(Value::Null)
                    } else {
                        self.batch = Some(Arc::clone(batch));
                        Slot::Packed {
                            range: range.clone(),
                            decoded: OnceLock::new(),
                        }
                    }
                }
                (slot, _) => Slot::Ready(source.value_of(slot).clone().or_null()),
            },
        };
        self.set_slot(name.as_ref(), slot);
    }

    /// True when this record's packed values may point into `batch`: it has no batch yet,
    /// or that one.
    fn may_share(&self, batch: &Arc<Vec<u8>>) -> bool {
        self.batch
            .as_ref()
            .is_none_or(|own| Arc::ptr_eq(own, batch))
    }

    fn set_slot(&mut self, name: &str, slot: Slot) {
        match self.position(name) {
            Ok(index) => self.entries[index].slot = slot,
            Err(index) => {
                // A record being built gets room for a typical record at once, not after
                // growing (and copying) three times.
                if self.entries.capacity() == 0 {
                    self.entries.reserve(TYPICAL_FIELDS);
                }
                self.entries.insert(
                    index,
                    Entry {
                        name: Name::new(name),
                        slot,
                    },
                );
            }
        }
    }

    /// Removes `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let index = self.position(name).ok()?;
        let entry = self.entries.remove(index);
        Some(Self::take_value(self.batch_bytes(), entry.slot))
    }

    /// Takes the value of `name` out of the record (`Null` when absent).
    pub fn take(&mut self, name: &str) -> Value {
        self.remove(name).unwrap_or_default()
    }

    /// True when `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_ok()
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
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries
            .iter()
            .map(|entry| (entry.name.as_str(self.batch_bytes()), self.value_of(&entry.slot)))
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Value) -> bool) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.retain(|entry| {
            keep(
                entry.name.as_str(self.batch_bytes()),
                self.value_of(&entry.slot),
            )
        });
        self.entries = entries;
    }
}

/// The bytes at `range` of `batch`; `None` when out of it (a range a record never makes).
fn batch_range<'a>(batch: &'a [u8], range: &Range<u32>) -> Option<&'a [u8]> {
    batch.get(range.start as usize..range.end as usize)
}

/// The byte order of two names, compared eight bytes at a time. Lookups compare names more
/// than anything else, and a plugin's `memcmp` (wasi-libc) goes one byte at a time.
pub(crate) fn compare_names(a: &[u8], b: &[u8]) -> Ordering {
    let (mut a, mut b) = (a, b);
    while let (Some((x, a_rest)), Some((y, b_rest))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if x != y {
            return u64::from_be_bytes(*x).cmp(&u64::from_be_bytes(*y));
        }
        (a, b) = (a_rest, b_rest);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Sorts by name, stably, then drops every entry but the last of each name.
fn sort_keeping_last(entries: &mut Vec<Entry>, batch: &[u8]) {
    entries.sort_by(|a, b| a.name.cmp(&b.name, batch));
    entries.dedup_by(|later, kept| {
        if later.name.cmp(&kept.name, batch) == Ordering::Equal {
            std::mem::swap(later, kept);
            true
        } else {
            false
        }
    });
}

/// A packed value (validated when its record was unpacked) as a `Value`.
fn decode(bytes: &[u8]) -> Value {
    crate::__private::packed::decode_value(bytes).unwrap_or_default()
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((a_name, a), (b_name, b))| a_name == b_name && a == b)
    }
}

impl<K: AsRef<str>, V: Into<Value>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Fields::new();
        fields.extend(iter);
        fields
    }
}

impl<K: AsRef<str>, V: Into<Value>> Extend<(K, V)> for Fields {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.entries.reserve(iter.size_hint().0);
        for (name, value) in iter {
            let name = name.as_ref();
            // Names arriving in order (from another record, a BTreeMap, ...) are appended.
            let in_order = self.entries.last().is_none_or(|last| {
                last.name
                    .cmp_to(self.batch_bytes(), prefix_of(name.as_bytes()), name.as_bytes())
                    == Ordering::Less
            });
            if in_order {
                self.entries.push(Entry {
                    name: Name::new(name),
                    slot: Slot::Ready(value.into()),
                });
            } else {
                self.set(name, value);
            }
        }
    }
}

/// The fields of a [`Fields`] by value, in name order: what `for (name, value) in fields`
/// iterates over.
pub struct IntoIter {
    entries: std::vec::IntoIter<Entry>,
    batch: Option<Arc<Vec<u8>>>,
}

impl Iterator for IntoIter {
    type Item = (String, Value);

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.entries.next()?;
        let batch = self.batch.as_deref().map_or(&[][..], Vec::as_slice);
        Some((
            entry.name.into_string(batch),
            Fields::take_value(batch, entry.slot),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for IntoIter {}

impl IntoIterator for Fields {
    type Item = (String, Value);
    type IntoIter = IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        IntoIter {
            entries: self.entries.into_iter(),
            batch: self.batch,
        }
    }
}

impl From<BTreeMap<String, Value>> for Fields {
    fn from(map: BTreeMap<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

impl From<Fields> for BTreeMap<String, Value> {
    fn from(fields: Fields) -> Self {
        fields.into_iter().collect()
    }
}
