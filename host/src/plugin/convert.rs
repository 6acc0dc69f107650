//! Conversions between the host's record type (`crate::record`) and the WIT types: the
//! `field` lists of both WIT versions (generated once per version by `field_conversions!`)
//! and the packed batches of 0.2's `mapping`. Data coming back from a plugin is untrusted:
//! every failure is an error, never a panic.

use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::record::{Fields, PackedValue, Value};

/// The `field`-list conversions for one WIT version's `types` module (0.1.0 and 0.2.0 have
/// the same `field`, `value`, `scalar` and `datetime`, as distinct Rust types).
macro_rules! field_conversions {
    ($version:ident, $($types:tt)+) => {
        pub(crate) mod $version {
            use chrono::{DateTime, Utc};

            use $($types)+ as wit;
            use crate::record::{Fields, Value};

            /// Host record → WIT field list. Fails on a list nested in a list (WIT has no recursion).
            pub(crate) fn fields_to_wit(fields: &Fields) -> Result<Vec<wit::Field>, String> {
                fields
                    .iter()
                    .map(|(name, value)| {
                        let value = value_to_wit(value)
                            .map_err(|e| format!("field `{name}` can't be passed to a plugin: {e}"))?;
                        Ok(wit::Field {
                            name: name.to_owned(),
                            value,
                        })
                    })
                    .collect()
            }

            /// WIT field list from a plugin → host record. Fails on a duplicate name or a time out of
            /// range.
            pub(crate) fn fields_from_wit(fields: Vec<wit::Field>) -> Result<Fields, String> {
                let mut out = Fields::new();
                for field in fields {
                    let value =
                        value_from_wit(field.value).map_err(|e| format!("field `{}`: {e}", field.name))?;
                    if out.contains_key(&field.name) {
                        return Err(format!("field `{}` appears more than once", field.name));
                    }
                    out.insert(field.name, value);
                }
                Ok(out)
            }

            fn value_to_wit(value: &Value) -> Result<wit::Value, String> {
                Ok(match value {
                    Value::Null => wit::Value::Null,
                    Value::Text(t) => wit::Value::Text(t.clone()),
                    Value::Integer(n) => wit::Value::Integer(*n),
                    Value::Number(n) => wit::Value::Number(*n),
                    Value::Boolean(b) => wit::Value::Boolean(*b),
                    Value::DateTime(t) => wit::Value::DateTime(datetime_to_wit(t)),
                    Value::List(items) => {
                        wit::Value::List(items.iter().map(scalar_to_wit).collect::<Result<_, _>>()?)
                    }
                })
            }

            fn scalar_to_wit(value: &Value) -> Result<wit::Scalar, String> {
                Ok(match value {
                    Value::Null => wit::Scalar::Null,
                    Value::Text(t) => wit::Scalar::Text(t.clone()),
                    Value::Integer(n) => wit::Scalar::Integer(*n),
                    Value::Number(n) => wit::Scalar::Number(*n),
                    Value::Boolean(b) => wit::Scalar::Boolean(*b),
                    Value::DateTime(t) => wit::Scalar::DateTime(datetime_to_wit(t)),
                    Value::List(_) => return Err("a list inside a list".into()),
                })
            }

            fn value_from_wit(value: wit::Value) -> Result<Value, String> {
                Ok(match value {
                    wit::Value::Null => Value::Null,
                    wit::Value::Text(t) => Value::Text(t),
                    wit::Value::Integer(n) => Value::Integer(n),
                    wit::Value::Number(n) => Value::Number(n),
                    wit::Value::Boolean(b) => Value::Boolean(b),
                    wit::Value::DateTime(t) => Value::DateTime(datetime_from_wit(t)?),
                    wit::Value::List(items) => Value::List(
                        items
                            .into_iter()
                            .map(scalar_from_wit)
                            .collect::<Result<_, _>>()?,
                    ),
                })
            }

            fn scalar_from_wit(value: wit::Scalar) -> Result<Value, String> {
                Ok(match value {
                    wit::Scalar::Null => Value::Null,
                    wit::Scalar::Text(t) => Value::Text(t),
                    wit::Scalar::Integer(n) => Value::Integer(n),
                    wit::Scalar::Number(n) => Value::Number(n),
                    wit::Scalar::Boolean(b) => Value::Boolean(b),
                    wit::Scalar::DateTime(t) => Value::DateTime(datetime_from_wit(t)?),
                })
            }

            pub(crate) fn datetime_to_wit(t: &DateTime<Utc>) -> wit::Datetime {
                wit::Datetime {
                    seconds: t.timestamp(),
                    nanoseconds: t.timestamp_subsec_nanos(),
                }
            }

            pub(crate) fn datetime_from_wit(t: wit::Datetime) -> Result<DateTime<Utc>, String> {
                if t.nanoseconds >= 1_000_000_000 {
                    return Err(format!(
                        "date-time nanoseconds {} is not below 10^9",
                        t.nanoseconds
                    ));
                }
                DateTime::from_timestamp(t.seconds, t.nanoseconds)
                    .ok_or_else(|| format!("date-time {} s since 1970 is out of range", t.seconds))
            }
        }
    };
}

field_conversions!(v0_1, super::super::since_v0_1_0::types);
field_conversions!(v0_2, super::super::since_v0_2_0::types);

/// Value tags of the packed byte format (`packed-records` in wit/tandem-plugin.wit).
const NULL: u8 = 0;
const TEXT: u8 = 1;
const INTEGER: u8 = 2;
const NUMBER: u8 = 3;
const BOOLEAN: u8 = 4;
const DATE_TIME: u8 = 5;
const LIST: u8 = 6;

/// Answer tags of `packed-results`.
const ANSWER_RECORD: u8 = 0;
const ANSWER_INVALID_RECORD: u8 = 1;
const ANSWER_OTHER: u8 = 2;

/// A packed batch being built: the record count is patched in by [`PackedBatch::finish`].
pub(crate) struct PackedBatch {
    bytes: Vec<u8>,
    count: u32,
}

/// Room reserved per record before packing, enough for a typical record (a 25-field
/// contact packs into about 600 bytes), so a batch is rarely reallocated while it grows.
const BYTES_PER_RECORD: usize = 1024;

impl PackedBatch {
    /// An empty batch with room for about `records` records.
    pub(crate) fn new(records: usize) -> Self {
        let mut bytes = Vec::with_capacity(4 + records.max(1).saturating_mul(BYTES_PER_RECORD));
        bytes.extend_from_slice(&[0; 4]);
        PackedBatch { bytes, count: 0 }
    }

    /// Appends one host record. Fails, leaving the batch as it was, on a list nested in a
    /// list or a text of 4 GiB or more.
    pub(crate) fn push(&mut self, fields: &Fields) -> Result<(), String> {
        let start = self.bytes.len();
        let written = write_record(&mut self.bytes, fields);
        if written.is_err() {
            self.bytes.truncate(start);
        }
        written?;
        self.count += 1;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.bytes[..4].copy_from_slice(&self.count.to_le_bytes());
        self.bytes
    }
}

fn write_record(out: &mut Vec<u8>, fields: &Fields) -> Result<(), String> {
    put_len(out, fields.len())?;
    for (name, value) in fields.to_pack() {
        put_text(out, name)?;
        match value {
            PackedValue::Bytes(bytes) => out.extend_from_slice(bytes),
            PackedValue::Value(value) => write_value(out, value, true)
                .map_err(|e| format!("field `{name}` can't be passed to a plugin: {e}"))?,
        }
    }
    Ok(())
}

fn write_value(out: &mut Vec<u8>, value: &Value, list_allowed: bool) -> Result<(), String> {
    match value {
        Value::Null => out.push(NULL),
        Value::Text(t) => {
            out.push(TEXT);
            put_text(out, t)?;
        }
        Value::Integer(n) => {
            out.push(INTEGER);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Boolean(b) => out.extend_from_slice(&[BOOLEAN, u8::from(*b)]),
        Value::DateTime(t) => {
            out.push(DATE_TIME);
            out.extend_from_slice(&t.timestamp().to_le_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
        }
        Value::List(items) if list_allowed => {
            out.push(LIST);
            put_len(out, items.len())?;
            for item in items {
                write_value(out, item, false)?;
            }
        }
        Value::List(_) => return Err("a list inside a list".into()),
    }
    Ok(())
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), String> {
    let len = u32::try_from(len).map_err(|_| format!("{len} is too long for a plugin (4 GiB)"))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_text(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    put_len(out, text.len())?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// One answer of a plugin's packed results.
pub(crate) enum PackedAnswer {
    /// The mapped record, or why the host can't accept it (duplicate name, bad time).
    Record(Result<Fields, String>),
    /// The plugin's error for this record.
    Error(super::PluginError),
}

/// A plugin's packed results → one answer per record. Fails when the bytes don't follow the
/// format (then none of them can be trusted) or hold another number of answers than
/// `expected`.
///
/// Every byte is checked here (structure, UTF-8, times in range, names unique), but nothing
/// is decoded: each record keeps its names and values as ranges of the answers, shared by
/// all of them, and decodes a value when it is first read.
pub(crate) fn unpack_answers(bytes: Vec<u8>, expected: usize) -> Result<Vec<PackedAnswer>, String> {
    let packed = Arc::new(bytes);
    let mut reader = Reader::new(&packed);
    let count = reader.u32()? as usize;
    if count != expected {
        return Err(format!("{count} answers to a batch of {expected} records"));
    }
    let mut answers = Vec::with_capacity(count);
    // Where each record's fields are, reused from record to record.
    let mut fields = Vec::new();
    for _ in 0..count {
        answers.push(match reader.u8()? {
            ANSWER_RECORD => {
                PackedAnswer::Record(read_record(&mut reader, &packed, &mut fields)?)
            }
            ANSWER_INVALID_RECORD => {
                PackedAnswer::Error(super::PluginError::InvalidRecord(reader.text()?.to_owned()))
            }
            ANSWER_OTHER => {
                PackedAnswer::Error(super::PluginError::Other(reader.text()?.to_owned()))
            }
            tag => return Err(format!("unknown answer tag {tag}")),
        });
    }
    if !reader.bytes.is_empty() {
        return Err(format!(
            "{} bytes after the last answer",
            reader.bytes.len()
        ));
    }
    Ok(answers)
}

/// Reads the packed format from the front of a byte slice; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    /// Where `bytes` started, to tell the offset of what is read next.
    len_at_start: usize,
    /// Every byte is ASCII, so every text in them is UTF-8: true for most answers (names
    /// and values are mostly ASCII, lengths and tags small), and then one pass over the
    /// answers replaces a check per text.
    all_ascii: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            len_at_start: bytes.len(),
            all_ascii: bytes.is_ascii(),
        }
    }

    /// The offset of the next byte to read.
    fn offset(&self) -> Result<u32, String> {
        u32::try_from(self.len_at_start - self.bytes.len())
            .map_err(|_| "answers of 4 GiB or more".to_owned())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or("the answer ends in the middle of a value")?;
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let text = self.text_bytes()?;
        std::str::from_utf8(text).map_err(|e| format!("a text is not UTF-8: {e}"))
    }

    /// A text's bytes, checked to be UTF-8 but not made a `str`.
    fn checked_text(&mut self) -> Result<&'a [u8], String> {
        let text = self.text_bytes()?;
        if !self.all_ascii {
            std::str::from_utf8(text).map_err(|e| format!("a text is not UTF-8: {e}"))?;
        }
        Ok(text)
    }

    fn text_bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        if len > self.bytes.len() {
            return Err("the answer ends in the middle of a text".into());
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(text)
    }
}

/// One record, checked and left packed. The outer error is a broken format; the inner one a
/// record the host can't accept (the rest of the answers are still readable).
fn read_record(
    reader: &mut Reader<'_>,
    packed: &Arc<Vec<u8>>,
    fields: &mut Vec<(Range<u32>, Range<u32>)>,
) -> Result<Result<Fields, String>, String> {
    let count = reader.u32()? as usize;
    fields.clear();
    // Every field takes at least 5 bytes: a hostile count can't make us reserve much.
    fields.reserve(count.min(reader.bytes.len() / 5));
    let mut problem = None;
    for _ in 0..count {
        let name_start = reader.offset()? + 4;
        let name = reader.checked_text()?;
        let value_start = reader.offset()?;
        let checked = match reader.u8()? {
            LIST => {
                let count = reader.u32()?;
                let mut checked = Ok(());
                for _ in 0..count {
                    let tag = reader.u8()?;
                    checked = checked.and(check_scalar(reader, tag)?);
                }
                checked
            }
            tag => check_scalar(reader, tag)?,
        };
        match checked {
            Ok(()) => fields.push((name_start..value_start, value_start..reader.offset()?)),
            Err(e) => {
                problem.get_or_insert_with(|| format!("field `{}`: {e}", String::from_utf8_lossy(name)));
            }
        }
    }
    if let Some(problem) = problem {
        return Ok(Err(problem));
    }
    let name = |range: &Range<u32>| &packed[range.start as usize..range.end as usize];
    // The SDK sends names in order; a repeated name shows as two equal neighbours.
    if !fields
        .windows(2)
        .all(|pair| name(&pair[0].0) < name(&pair[1].0))
    {
        fields.sort_by(|a, b| name(&a.0).cmp(name(&b.0)));
        if let Some(pair) = fields
            .windows(2)
            .find(|pair| name(&pair[0].0) == name(&pair[1].0))
        {
            return Ok(Err(format!(
                "field `{}` appears more than once",
                String::from_utf8_lossy(name(&pair[0].0))
            )));
        }
    }
    Ok(Ok(Fields::from_packed(Arc::clone(packed), fields.drain(..))))
}

/// Checks a value other than a list. Outer error: broken format; inner: a time out of range.
fn check_scalar(reader: &mut Reader<'_>, tag: u8) -> Result<Result<(), String>, String> {
    match tag {
        NULL => {}
        TEXT => {
            reader.checked_text()?;
        }
        INTEGER | NUMBER => {
            reader.take::<8>()?;
        }
        BOOLEAN => {
            reader.u8()?;
        }
        DATE_TIME => return Ok(read_date_time(reader)?.map(|_| ())),
        LIST => return Err("a list inside a list".into()),
        tag => return Err(format!("unknown value tag {tag}")),
    }
    Ok(Ok(()))
}

fn read_date_time(reader: &mut Reader<'_>) -> Result<Result<DateTime<Utc>, String>, String> {
    let seconds = i64::from_le_bytes(reader.take()?);
    let nanoseconds = u32::from_le_bytes(reader.take()?);
    Ok(v0_2::datetime_from_wit(
        super::since_v0_2_0::types::Datetime {
            seconds,
            nanoseconds,
        },
    ))
}

/// Decodes one value (tag first) that [`unpack_answers`] checked; `None` when the bytes
/// aren't one (never, for a checked value).
pub(crate) fn decode_value(bytes: &[u8]) -> Option<Value> {
    // Its texts are made `str`s (checked again): no need to look for ASCII first.
    let mut reader = Reader {
        bytes,
        len_at_start: bytes.len(),
        all_ascii: false,
    };
    match reader.u8().ok()? {
        LIST => {
            let count = reader.u32().ok()?;
            let mut items = Vec::with_capacity((count as usize).min(reader.bytes.len()));
            for _ in 0..count {
                let tag = reader.u8().ok()?;
                items.push(decode_scalar(&mut reader, tag)?);
            }
            Some(Value::List(items))
        }
        tag => decode_scalar(&mut reader, tag),
    }
}

fn decode_scalar(reader: &mut Reader<'_>, tag: u8) -> Option<Value> {
    Some(match tag {
        NULL => Value::Null,
        TEXT => Value::Text(reader.text().ok()?.to_owned()),
        INTEGER => Value::Integer(i64::from_le_bytes(reader.take().ok()?)),
        NUMBER => Value::Number(f64::from_le_bytes(reader.take().ok()?)),
        BOOLEAN => Value::Boolean(reader.u8().ok()? != 0),
        DATE_TIME => Value::DateTime(read_date_time(reader).ok()?.ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::v0_1::{fields_from_wit, fields_to_wit};
    use super::*;
    use crate::plugin::since_v0_1_0::types as wit;

    #[test]
    fn every_kind_round_trips() {
        let mut f = Fields::new();
        f.insert("a".into(), Value::Null);
        f.insert("b".into(), "x".into());
        f.insert("c".into(), Value::Integer(-3));
        f.insert("d".into(), Value::Number(2.5));
        f.insert("e".into(), Value::Boolean(false));
        let when = DateTime::from_timestamp(1_700_000_000, 123).expect("valid time");
        f.insert("f".into(), Value::DateTime(when));
        f.insert(
            "g".into(),
            Value::List(vec!["s".into(), Value::DateTime(when)]),
        );
        let wit = fields_to_wit(&f).expect("representable");
        assert_eq!(fields_from_wit(wit).expect("valid"), f);
    }

    #[test]
    fn nested_list_duplicates_and_bad_times_are_errors() {
        let mut f = Fields::new();
        f.insert("g".into(), Value::List(vec![Value::List(vec![])]));
        assert!(fields_to_wit(&f).is_err());

        let dup = vec![
            wit::Field {
                name: "x".into(),
                value: wit::Value::Null,
            },
            wit::Field {
                name: "x".into(),
                value: wit::Value::Null,
            },
        ];
        assert!(
            fields_from_wit(dup)
                .expect_err("duplicate")
                .contains("more than once")
        );

        let bad = wit::Datetime {
            seconds: i64::MAX,
            nanoseconds: 0,
        };
        let field = wit::Field {
            name: "t".into(),
            value: wit::Value::DateTime(bad),
        };
        assert!(fields_from_wit(vec![field]).is_err());
    }

    /// A plugin's answers as the guest SDK writes them, built here by hand.
    fn answers(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn a_packed_batch_is_what_the_format_says_and_answers_unpack() {
        let mut f = Fields::new();
        f.insert("Name".into(), "Zoë".into());
        f.insert("n".into(), Value::Integer(-1));
        f.insert("x".into(), Value::Number(0.25));
        f.insert("ok".into(), Value::Boolean(true));
        f.insert("none".into(), Value::Null);
        let when = DateTime::from_timestamp(-5, 7).expect("valid time");
        f.insert("at".into(), Value::DateTime(when));
        f.insert("tags".into(), Value::List(vec!["a".into(), Value::Null]));
        let mut batch = PackedBatch::new(2);
        batch.push(&f).expect("packs");
        let mut nested = Fields::new();
        nested.insert("g".into(), Value::List(vec![Value::List(vec![])]));
        assert!(batch.push(&nested).is_err(), "a nested list is refused");
        batch.push(&f).expect("packs");
        assert_eq!(batch.len(), 2);
        let bytes = batch.finish();
        assert_eq!(&bytes[..4], &2u32.to_le_bytes());

        // A record answer has the layout of a batch's record: the batch's bytes, re-tagged.
        let record = &bytes[4..(4 + (bytes.len() - 4) / 2)];
        let message = b"no";
        let unpacked = unpack_answers(
            answers(&[
                &3u32.to_le_bytes(),
                &[ANSWER_RECORD],
                record,
                &[ANSWER_INVALID_RECORD],
                &2u32.to_le_bytes(),
                message,
                &[ANSWER_OTHER],
                &0u32.to_le_bytes(),
            ]),
            3,
        )
        .expect("well formed");
        assert!(matches!(&unpacked[0], PackedAnswer::Record(Ok(r)) if r == &f));
        assert!(
            matches!(&unpacked[1], PackedAnswer::Error(super::super::PluginError::InvalidRecord(m)) if m == "no")
        );
        assert!(
            matches!(&unpacked[2], PackedAnswer::Error(super::super::PluginError::Other(m)) if m.is_empty())
        );
    }

    #[test]
    fn malformed_answers_duplicates_and_bad_times_are_errors() {
        let count = |n: u32| n.to_le_bytes();
        let name = |s: &str| [&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat();
        // Wrong count, truncation, trailing bytes, unknown tags, bad UTF-8, nested lists.
        assert!(unpack_answers(count(2).to_vec(), 1).is_err());
        assert!(unpack_answers(answers(&[&count(1), &[ANSWER_RECORD], &count(1)]), 1).is_err());
        assert!(unpack_answers(answers(&[&count(0), &[0]]).clone(), 0).is_err());
        assert!(unpack_answers(answers(&[&count(1), &[7]]).clone(), 1).is_err());
        let field =
            |value: &[u8]| answers(&[&count(1), &[ANSWER_RECORD], &count(1), &name("f"), value]);
        for broken in [
            &[9u8][..],
            &[TEXT, 1, 0, 0, 0, 0xff],
            &[LIST, 1, 0, 0, 0, LIST],
            &[INTEGER, 1],
        ] {
            assert!(
                unpack_answers(field(broken).clone(), 1).is_err(),
                "{broken:?}"
            );
        }
        // A duplicate name or a time out of range fails that record only.
        let dup = answers(&[
            &count(2),
            &[ANSWER_RECORD],
            &count(2),
            &name("f"),
            &[NULL],
            &name("f"),
            &[NULL],
            &[ANSWER_RECORD],
            &count(0),
        ]);
        let unpacked = unpack_answers(dup.clone(), 2).expect("readable");
        assert!(
            matches!(&unpacked[0], PackedAnswer::Record(Err(m)) if m.contains("more than once"))
        );
        assert!(matches!(&unpacked[1], PackedAnswer::Record(Ok(r)) if r.is_empty()));
        let bad_time = [
            &[DATE_TIME][..],
            &0i64.to_le_bytes(),
            &1_000_000_000u32.to_le_bytes(),
        ]
        .concat();
        let unpacked = unpack_answers(field(&bad_time).clone(), 1).expect("readable");
        assert!(matches!(&unpacked[0], PackedAnswer::Record(Err(m)) if m.contains("nanoseconds")));
    }
}
