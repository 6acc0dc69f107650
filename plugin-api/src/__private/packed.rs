//! The SDK's [`Fields`] in and out of WIT 0.2's packed batches (`packed-records`,
//! `packed-results`): the grammar itself is `tandem-packed`, shared with the host; what is
//! here is the SDK's own record and value types.
//!
//! Unpacking a record only checks its bytes (structure, tags, UTF-8) and notes where each
//! value is: [`Fields`] decodes a value the first time it is read, and packs a value it never
//! decoded by copying its bytes.

use std::cmp::Ordering;
use std::sync::Arc;

use tandem_packed::{Answer, Reader, ValueView};

use crate::fields::{Entry, Name, ValueToPack};
use crate::{DateTime, Fields, PluginError, Scalar, Value};

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
    tandem_packed::put_u32(&mut out, count);
    for _ in 0..count {
        let answer = read_record(&mut reader, &batch)
            .map_err(|e| PluginError::Other(format!("the host sent a malformed batch: {e}")))
            .and_then(&mut map);
        write_answer(&mut out, answer);
    }
    out
}

/// Packs records as a batch (what the host sends; for tests and tools). A record that can't
/// be packed (a text of 4 GiB or more, possible only natively) ends the batch there, so a
/// reader finds it cut short.
pub fn pack_records<'a>(records: impl ExactSizeIterator<Item = &'a Fields>) -> Vec<u8> {
    let mut out = Vec::new();
    // Saturated likewise: a batch of 4 Gi records ends early.
    tandem_packed::put_u32(&mut out, u32::try_from(records.len()).unwrap_or(u32::MAX));
    for record in records {
        let start = out.len();
        if write_record(&mut out, record).is_err() {
            out.truncate(start);
            break;
        }
    }
    out
}

/// Unpacks a batch of answers (what the host receives; for tests and tools).
pub fn unpack_answers(answers: &[u8]) -> Result<Vec<Result<Fields, PluginError>>, String> {
    let answers = Arc::new(answers.to_vec());
    let mut reader = Reader::new(&answers);
    let read = |reader: &mut Reader<'_>| -> Result<_, tandem_packed::Error> {
        Ok(match reader.answer()? {
            Answer::Record => Ok(read_record(reader, &answers)?),
            Answer::InvalidRecord => Err(PluginError::InvalidRecord(reader.text()?.into())),
            Answer::Other => Err(PluginError::Other(reader.text()?.into())),
        })
    };
    let count = reader.u32().map_err(|e| e.to_string())?;
    (0..count)
        .map(|_| read(&mut reader).map_err(|e| e.to_string()))
        .collect()
}

/// Appends one answer. One that can't be packed (a text of 4 GiB or more, possible only
/// natively) is replaced by an `other` error saying so.
fn write_answer(out: &mut Vec<u8>, answer: Result<Fields, PluginError>) {
    let start = out.len();
    let written = match &answer {
        Ok(fields) => {
            tandem_packed::put_answer_header(out, Answer::Record);
            write_record(out, fields)
        }
        Err(PluginError::InvalidRecord(message)) => {
            tandem_packed::put_answer_header(out, Answer::InvalidRecord);
            tandem_packed::put_text(out, message)
        }
        Err(PluginError::Other(message)) => {
            tandem_packed::put_answer_header(out, Answer::Other);
            tandem_packed::put_text(out, message)
        }
    };
    if let Err(e) = written {
        out.truncate(start);
        tandem_packed::put_answer_header(out, Answer::Other);
        // A short message: its length fits.
        let _ = tandem_packed::put_text(out, &format!("the answer can't be packed: {e}"));
    }
}

fn write_record(out: &mut Vec<u8>, fields: &Fields) -> Result<(), tandem_packed::Error> {
    tandem_packed::put_record_header(out, fields.len())?;
    for (name, value) in fields.to_pack() {
        tandem_packed::put_text(out, name)?;
        match value {
            ValueToPack::Bytes(bytes) => out.extend_from_slice(bytes),
            ValueToPack::Value(value) => write_value(out, value)?,
        }
    }
    Ok(())
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), tandem_packed::Error> {
    match value {
        Value::Null => tandem_packed::put_null(out),
        Value::Text(t) => tandem_packed::put_text_value(out, t)?,
        Value::Integer(n) => tandem_packed::put_integer(out, *n),
        Value::Number(n) => tandem_packed::put_number(out, *n),
        Value::Boolean(b) => tandem_packed::put_boolean(out, *b),
        Value::DateTime(t) => tandem_packed::put_date_time(out, t.seconds, t.nanoseconds),
        Value::List(items) => {
            tandem_packed::put_list_header(out, items.len())?;
            for item in items {
                tandem_packed::put_scalar(out, packed_scalar(item))?;
            }
        }
    }
    Ok(())
}

#[inline]
fn packed_scalar(scalar: &Scalar) -> tandem_packed::Scalar<'_> {
    match scalar {
        Scalar::Null => tandem_packed::Scalar::Null,
        Scalar::Text(t) => tandem_packed::Scalar::Text(t),
        Scalar::Integer(n) => tandem_packed::Scalar::Integer(*n),
        Scalar::Number(n) => tandem_packed::Scalar::Number(*n),
        Scalar::Boolean(b) => tandem_packed::Scalar::Boolean(*b),
        Scalar::DateTime(t) => tandem_packed::Scalar::DateTime {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        },
    }
}

/// One record of `batch` (whose unread rest is `reader`): checks its bytes and notes where
/// each name and value is, decoding nothing; one allocation.
fn read_record(
    reader: &mut Reader<'_>,
    batch: &Arc<Vec<u8>>,
) -> Result<Fields, tandem_packed::Error> {
    let fields = reader.record()?;
    let mut entries: Vec<Entry> = Vec::with_capacity(fields.capacity_hint());
    let mut sorted = true;
    for field in fields {
        let field = field?;
        let name = Name::in_batch(field.name.as_bytes(), field.name_start);
        if let Some(last) = entries.last().filter(|_| sorted) {
            sorted = last.name.cmp(&name, batch) == Ordering::Less;
        }
        entries.push(Entry::packed(name, field.value));
    }
    Ok(Fields::from_packed(Arc::clone(batch), entries, sorted))
}

/// Decodes one value (tag first) that [`read_record`] checked.
pub(crate) fn decode_value(bytes: &[u8]) -> Result<Value, tandem_packed::Error> {
    Ok(match tandem_packed::read_value(bytes)? {
        ValueView::List(items) => {
            let mut list = Vec::with_capacity(items.capacity_hint());
            for item in items {
                list.push(scalar(item?));
            }
            Value::List(list)
        }
        ValueView::Scalar(tandem_packed::Scalar::Null) => Value::Null,
        ValueView::Scalar(tandem_packed::Scalar::Text(t)) => Value::Text(t.to_owned()),
        ValueView::Scalar(tandem_packed::Scalar::Integer(n)) => Value::Integer(n),
        ValueView::Scalar(tandem_packed::Scalar::Number(n)) => Value::Number(n),
        ValueView::Scalar(tandem_packed::Scalar::Boolean(b)) => Value::Boolean(b),
        ValueView::Scalar(tandem_packed::Scalar::DateTime {
            seconds,
            nanoseconds,
        }) => Value::DateTime(DateTime {
            seconds,
            nanoseconds,
        }),
    })
}

fn scalar(scalar: tandem_packed::Scalar<'_>) -> Scalar {
    match scalar {
        tandem_packed::Scalar::Null => Scalar::Null,
        tandem_packed::Scalar::Text(t) => Scalar::Text(t.to_owned()),
        tandem_packed::Scalar::Integer(n) => Scalar::Integer(n),
        tandem_packed::Scalar::Number(n) => Scalar::Number(n),
        tandem_packed::Scalar::Boolean(b) => Scalar::Boolean(b),
        tandem_packed::Scalar::DateTime {
            seconds,
            nanoseconds,
        } => Scalar::DateTime(DateTime {
            seconds,
            nanoseconds,
        }),
    }
}
