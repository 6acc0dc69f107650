//! The host's side of WIT 0.2's packed batches (`packed-records`, `packed-results`): a
//! batch of host records packed for one `mapping` call, and the plugin's answers unpacked.
//! The grammar is `tandem-packed`, shared with the guest SDK; a record packs and unpacks
//! itself (`crate::record`). The answers are untrusted: every failure is an error, never a
//! panic.

use std::sync::Arc;

use tandem_packed::{Answer, Reader};

use super::PluginError;
use crate::record::{FieldRanges, Fields};

#[cfg(test)]
mod tests;

/// A packed batch being built: the record count is set by [`PackedBatch::finish`].
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
        tandem_packed::put_u32(&mut bytes, 0);
        PackedBatch { bytes, count: 0 }
    }

    /// Appends one host record. Fails, leaving the batch as it was, on a list nested in a
    /// list or a text of 4 GiB or more.
    pub(crate) fn push(&mut self, fields: &Fields) -> Result<(), String> {
        let start = self.bytes.len();
        let written = fields.pack_into(&mut self.bytes);
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
        tandem_packed::set_count(&mut self.bytes, self.count);
        self.bytes
    }
}

/// One answer of a plugin's packed results.
pub(crate) enum PackedAnswer {
    /// The mapped record, or why the host can't accept it (duplicate name, bad time).
    Record(Result<Fields, String>),
    /// The plugin's error for this record.
    Error(PluginError),
}

/// A plugin's packed results → one answer per record. Fails when the bytes don't follow the
/// format (then none of them can be trusted) or hold another number of answers than
/// `expected`.
///
/// Every byte is checked here (structure, UTF-8, times in range, names unique), but nothing
/// is decoded: each record keeps its names and values as ranges of the answers, shared by
/// all of them, and decodes a value when it is first read.
pub(crate) fn unpack_answers(bytes: Vec<u8>, expected: usize) -> Result<Vec<PackedAnswer>, String> {
    let broken = |e: tandem_packed::Error| e.to_string();
    let packed = Arc::new(bytes);
    let mut reader = Reader::new(&packed);
    let count = reader.u32().map_err(broken)? as usize;
    if count != expected {
        return Err(format!("{count} answers to a batch of {expected} records"));
    }
    let mut answers = Vec::with_capacity(count);
    // Where each record's fields are, reused from record to record.
    let mut ranges = FieldRanges::new();
    for _ in 0..count {
        let message = |reader: &mut Reader<'_>| reader.text().map(str::to_owned).map_err(broken);
        answers.push(match reader.answer().map_err(broken)? {
            Answer::Record => PackedAnswer::Record(
                Fields::unpack(&mut reader, &packed, &mut ranges).map_err(broken)?,
            ),
            Answer::InvalidRecord => {
                PackedAnswer::Error(PluginError::InvalidRecord(message(&mut reader)?))
            }
            Answer::Other => PackedAnswer::Error(PluginError::Other(message(&mut reader)?)),
        });
    }
    if !reader.is_empty() {
        return Err(format!(
            "{} bytes after the last answer",
            reader.rest().len()
        ));
    }
    Ok(answers)
}
