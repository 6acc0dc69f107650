//! The walk over one packed record: checks its bytes (structure, tags, UTF-8, no list in a
//! list) and tells where each field's name and value are, decoding nothing. Both sides keep
//! a record as these ranges of the bytes it came in and decode a value when first read.

use std::ops::Range;

use crate::{Error, Reader, tag};

/// One field of a packed record, as [`RecordFields`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, checked to be UTF-8.
    pub name: &'a str,
    /// Where the name's bytes start, as an offset in the slice the reader started from.
    pub name_start: u32,
    /// Where the value (tag first) is, as offsets in the slice the reader started from;
    /// checked to be one well-formed value.
    pub value: Range<u32>,
    /// The value is a date-time or a list holding one: a side that checks the range of
    /// times needs to look at these values only.
    pub holds_date_time: bool,
}

impl Field<'_> {
    /// Where the name's bytes are, as offsets in the slice the reader started from.
    #[inline]
    pub fn name_range(&self) -> Range<u32> {
        self.name_start..self.name_start + self.name.len() as u32
    }
}

/// The fields of one record, checked one by one as they are iterated. Read it to the end:
/// the reader is past the record once it has yielded `None` or an `Err` (which ends it).
#[derive(Debug)]
pub struct RecordFields<'r, 'a> {
    reader: &'r mut Reader<'a>,
    left: u32,
}

impl RecordFields<'_, '_> {
    /// Room to reserve for the fields: their count, but no more than the bytes left can hold
    /// (a field takes at least 5 bytes), so a hostile count can't make a reader reserve much.
    #[inline]
    pub fn capacity_hint(&self) -> usize {
        (self.left as usize).min(self.reader.rest().len() / 5)
    }

    #[inline(always)]
    fn field<'a>(reader: &mut Reader<'a>) -> Result<Field<'a>, Error> {
        let name = reader.text()?;
        let value_start = reader.offset_u32();
        let holds_date_time = match reader.u8()? {
            tag::LIST => {
                let mut holds_date_time = false;
                for _ in 0..reader.u32()? {
                    let tag = reader.u8()?;
                    holds_date_time |= skip_scalar(reader, tag)?;
                }
                holds_date_time
            }
            tag => skip_scalar(reader, tag)?,
        };
        Ok(Field {
            name,
            // The name's bytes end where the value starts; both fit a `u32`.
            name_start: value_start - name.len() as u32,
            value: value_start..reader.offset_u32(),
            holds_date_time,
        })
    }
}

impl<'a> Iterator for RecordFields<'_, 'a> {
    type Item = Result<Field<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let field = Self::field(self.reader);
        if field.is_err() {
            self.left = 0;
        }
        Some(field)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

impl<'a> Reader<'a> {
    /// Starts on the record at the reader's position (its field count first). Fails on slices
    /// of 4 GiB or more, whose offsets a `u32` can't hold.
    #[inline]
    pub fn record(&mut self) -> Result<RecordFields<'_, 'a>, Error> {
        self.fits_u32()?;
        let left = self.u32()?;
        Ok(RecordFields { reader: self, left })
    }
}

/// Checks a value other than a list without decoding it; true for a date-time.
#[inline(always)]
fn skip_scalar(reader: &mut Reader<'_>, tag: u8) -> Result<bool, Error> {
    match tag {
        tag::NULL => {}
        tag::TEXT => {
            reader.text()?;
        }
        tag::INTEGER | tag::NUMBER => {
            reader.take::<8>()?;
        }
        tag::BOOLEAN => {
            reader.u8()?;
        }
        tag::DATE_TIME => {
            reader.take::<12>()?;
            return Ok(true);
        }
        tag::LIST => return Err(Error::ListInList),
        tag => return Err(Error::UnknownValueTag(tag)),
    }
    Ok(false)
}
