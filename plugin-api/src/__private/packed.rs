//! The packed byte format of WIT 0.2's `mapping` interface (`packed-records`,
//! `packed-results`; the grammar is in wit/tandem-plugin.wit), guest side. A batch of records
//! crosses the component boundary as one byte list, so the canonical ABI allocates and copies
//! once per batch instead of once per field name and per text.
//!
//! Unpacking a record only checks its bytes (structure, tags, UTF-8) and notes where each
//! value is: [`Fields`] decodes a value the first time it is read, and packs a value it never
//! decoded by copying its bytes.

use std::sync::Arc;

use crate::fields::{Entry, Name, ValueToPack};
use crate::{DateTime, Fields, PluginError, Scalar, Value};

const NULL: u8 = 0;
const TEXT: u8 = 1;
const INTEGER: u8 = 2;
const NUMBER: u8 = 3;
const BOOLEAN: u8 = 4;
const DATE_TIME: u8 = 5;
const LIST: u8 = 6;

const ANSWER_RECORD: u8 = 0;
const ANSWER_INVALID_RECORD: u8 = 1;
const ANSWER_OTHER: u8 = 2;

/// Unpacks each record of `batch`, maps it, and packs the answers in order. A batch the
/// host packed wrongly (a host bug) fails, record by record, with an `other` error.
pub fn map_packed(
    batch: Vec<u8>,
    mut map: impl FnMut(Fields) -> Result<Fields, PluginError>,
) -> Vec<u8> {
    let batch = Arc::new(batch);
    let mut reader = Reader::new(&batch);
    let mut out = Vec::with_capacity(batch.len());
    let count = reader.u32().unwrap_or(0);
    put_u32(&mut out, count);
    for _ in 0..count {
        let answer = read_record(&mut reader, &batch)
            .map_err(|e| PluginError::Other(format!("the host sent a malformed batch: {e}")))
            .and_then(&mut map);
        write_answer(&mut out, answer);
    }
    out
}

/// Packs records as a batch (what the host sends; for tests and tools).
pub fn pack_records<'a>(records: impl ExactSizeIterator<Item = &'a Fields>) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, u32::try_from(records.len()).unwrap_or(u32::MAX));
    for record in records {
        write_record(&mut out, record);
    }
    out
}

/// Unpacks a batch of answers (what the host receives; for tests and tools).
pub fn unpack_answers(answers: &[u8]) -> Result<Vec<Result<Fields, PluginError>>, String> {
    let answers = Arc::new(answers.to_vec());
    let mut reader = Reader::new(&answers);
    let count = reader.u32()?;
    (0..count)
        .map(|_| {
            Ok(match reader.u8()? {
                ANSWER_RECORD => Ok(read_record(&mut reader, &answers)?),
                ANSWER_INVALID_RECORD => Err(PluginError::InvalidRecord(reader.text()?.into())),
                ANSWER_OTHER => Err(PluginError::Other(reader.text()?.into())),
                tag => return Err(format!("unknown answer tag {tag}")),
            })
        })
        .collect()
}

fn write_answer(out: &mut Vec<u8>, answer: Result<Fields, PluginError>) {
    match answer {
        Ok(fields) => {
            out.push(ANSWER_RECORD);
            write_record(out, &fields);
        }
        Err(PluginError::InvalidRecord(message)) => {
            out.push(ANSWER_INVALID_RECORD);
            put_text(out, &message);
        }
        Err(PluginError::Other(message)) => {
            out.push(ANSWER_OTHER);
            put_text(out, &message);
        }
    }
}

fn write_record(out: &mut Vec<u8>, fields: &Fields) {
    put_u32(out, u32::try_from(fields.len()).unwrap_or(u32::MAX));
    for (name, value) in fields.to_pack() {
        put_text(out, name);
        match value {
            ValueToPack::Bytes(bytes) => out.extend_from_slice(bytes),
            ValueToPack::Value(value) => write_value(out, value),
        }
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(NULL),
        Value::Text(t) => {
            out.push(TEXT);
            put_text(out, t);
        }
        Value::Integer(n) => put_integer(out, *n),
        Value::Number(n) => put_number(out, *n),
        Value::Boolean(b) => put_boolean(out, *b),
        Value::DateTime(t) => put_date_time(out, *t),
        Value::List(items) => {
            out.push(LIST);
            put_u32(out, u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                match item {
                    Scalar::Null => out.push(NULL),
                    Scalar::Text(t) => {
                        out.push(TEXT);
                        put_text(out, t);
                    }
                    Scalar::Integer(n) => put_integer(out, *n),
                    Scalar::Number(n) => put_number(out, *n),
                    Scalar::Boolean(b) => put_boolean(out, *b),
                    Scalar::DateTime(t) => put_date_time(out, *t),
                }
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// Texts longer than 4 GiB can't exist in wasm32; natively the length saturates and the
/// reader rejects the batch.
fn put_text(out: &mut Vec<u8>, text: &str) {
    put_u32(out, u32::try_from(text.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(text.as_bytes());
}

fn put_integer(out: &mut Vec<u8>, n: i64) {
    out.push(INTEGER);
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_number(out: &mut Vec<u8>, n: f64) {
    out.push(NUMBER);
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_boolean(out: &mut Vec<u8>, b: bool) {
    out.push(BOOLEAN);
    out.push(u8::from(b));
}

fn put_date_time(out: &mut Vec<u8>, t: DateTime) {
    out.push(DATE_TIME);
    out.extend_from_slice(&t.seconds.to_le_bytes());
    out.extend_from_slice(&t.nanoseconds.to_le_bytes());
}

/// True when every byte is ASCII, checked eight bytes at a time: several times faster in
/// wasm than `str::from_utf8`, which goes byte by byte on short or unaligned input.
fn is_ascii(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        if u64::from_ne_bytes(*word) & 0x8080_8080_8080_8080 != 0 {
            return false;
        }
        rest = tail;
    }
    rest.iter().all(u8::is_ascii)
}

/// Reads the packed format from the front of a byte slice. Its reads are inlined into the
/// parse loop: in a plugin a call per read cost more than the read.
struct Reader<'a> {
    bytes: &'a [u8],
    /// Every byte of what is read is ASCII, so any text in it is UTF-8: true for most
    /// batches (names and values are mostly ASCII, lengths and tags are small), and then one
    /// pass over the batch replaces a check per text.
    all_ascii: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            all_ascii: is_ascii(bytes),
        }
    }

    /// A reader of one value's bytes, already checked as part of its batch.
    fn checked(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            all_ascii: false,
        }
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or("the bytes end in the middle of a value")?;
        self.bytes = rest;
        Ok(*head)
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    #[inline(always)]
    fn text(&mut self) -> Result<&'a str, String> {
        let len = self.u32()? as usize;
        if len > self.bytes.len() {
            return Err("the bytes end in the middle of a text".into());
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        if self.all_ascii || is_ascii(text) {
            // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(text) });
        }
        std::str::from_utf8(text).map_err(|e| format!("a text is not UTF-8: {e}"))
    }

    fn date_time(&mut self) -> Result<DateTime, String> {
        Ok(DateTime {
            seconds: i64::from_le_bytes(self.take()?),
            nanoseconds: u32::from_le_bytes(self.take()?),
        })
    }
}

/// One record of `batch` (whose unread rest is `reader`): checks its bytes and notes where
/// each value is, decoding nothing.
fn read_record(reader: &mut Reader<'_>, batch: &Arc<Vec<u8>>) -> Result<Fields, String> {
    let total = batch.len();
    // Checked once, so that every offset below fits a `u32`.
    if u32::try_from(total).is_err() {
        return Err("a batch of 4 GiB or more".to_owned());
    }
    let offset = |reader: &Reader<'_>| (total - reader.bytes.len()) as u32;
    let count = reader.u32()? as usize;
    // Every field takes at least 5 bytes: a hostile count can't make us reserve much.
    let mut entries: Vec<Entry> = Vec::with_capacity(count.min(reader.bytes.len() / 5));
    let mut sorted = true;
    for _ in 0..count {
        let name = reader.text()?.as_bytes();
        let start = offset(reader);
        let name = Name::in_batch(name, start - name.len() as u32);
        match reader.u8()? {
            LIST => {
                let items = reader.u32()?;
                for _ in 0..items {
                    let tag = reader.u8()?;
                    skip_scalar(reader, tag)?;
                }
            }
            tag => skip_scalar(reader, tag)?,
        }
        if let Some(last) = entries.last().filter(|_| sorted) {
            sorted = last.name.cmp(&name, batch) == std::cmp::Ordering::Less;
        }
        entries.push(Entry::packed(name, start..offset(reader)));
    }
    Ok(Fields::from_packed(Arc::clone(batch), entries, sorted))
}

/// Checks a value other than a list, without decoding it.
#[inline(always)]
fn skip_scalar(reader: &mut Reader<'_>, tag: u8) -> Result<(), String> {
    match tag {
        NULL => {}
        TEXT => {
            reader.text()?;
        }
        INTEGER | NUMBER => {
            reader.take::<8>()?;
        }
        BOOLEAN => {
            reader.u8()?;
        }
        DATE_TIME => {
            reader.date_time()?;
        }
        LIST => return Err("a list inside a list".into()),
        tag => return Err(format!("unknown value tag {tag}")),
    }
    Ok(())
}

/// Decodes one value (tag first) that [`read_record`] checked.
pub(crate) fn decode_value(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader::checked(bytes);
    Ok(match reader.u8()? {
        LIST => {
            let count = reader.u32()? as usize;
            let mut items = Vec::with_capacity(count.min(reader.bytes.len()));
            for _ in 0..count {
                let tag = reader.u8()?;
                items.push(read_scalar(&mut reader, tag)?);
            }
            Value::List(items)
        }
        tag => match read_scalar(&mut reader, tag)? {
            Scalar::Null => Value::Null,
            Scalar::Text(t) => Value::Text(t),
            Scalar::Integer(n) => Value::Integer(n),
            Scalar::Number(n) => Value::Number(n),
            Scalar::Boolean(b) => Value::Boolean(b),
            Scalar::DateTime(t) => Value::DateTime(t),
        },
    })
}

/// The text of a packed value (tag first), without copying it; `None` for other kinds.
pub(crate) fn text_of(bytes: &[u8]) -> Option<&str> {
    let mut reader = Reader::checked(bytes);
    match reader.u8() {
        Ok(TEXT) => reader.text().ok(),
        _ => None,
    }
}

/// True when a packed value (tag first) is `Null` or an empty text.
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    match bytes {
        [NULL, ..] => true,
        [TEXT, length @ ..] => length.starts_with(&0u32.to_le_bytes()),
        _ => false,
    }
}

fn read_scalar(reader: &mut Reader<'_>, tag: u8) -> Result<Scalar, String> {
    Ok(match tag {
        NULL => Scalar::Null,
        TEXT => Scalar::Text(reader.text()?.to_owned()),
        INTEGER => Scalar::Integer(i64::from_le_bytes(reader.take()?)),
        NUMBER => Scalar::Number(f64::from_le_bytes(reader.take()?)),
        BOOLEAN => Scalar::Boolean(reader.u8()? != 0),
        DATE_TIME => Scalar::DateTime(reader.date_time()?),
        LIST => return Err("a list inside a list".into()),
        tag => return Err(format!("unknown value tag {tag}")),
    })
}
