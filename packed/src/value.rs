//! A borrowed view of one packed value, for the side that decodes it into its own value type
//! (the host's with chrono times, the SDK's plain one): texts are `&str`s of the packed bytes.

use crate::{Error, Reader, tag};

/// One value other than a list, borrowed from the packed bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// `null`.
    Null,
    /// A text, checked to be UTF-8.
    Text(&'a str),
    /// A whole number.
    Integer(i64),
    /// A floating-point number.
    Number(f64),
    /// True or false.
    Boolean(bool),
    /// A point in time, as packed: no range check (that is the reading side's business).
    DateTime {
        /// Seconds since 1970-01-01T00:00:00Z.
        seconds: i64,
        /// Nanoseconds within the second; not checked to be below 10^9.
        nanoseconds: u32,
    },
}

/// One packed value: a scalar, or a list of them read one by one.
#[derive(Debug, Clone)]
pub enum ValueView<'a> {
    /// A value other than a list.
    Scalar(Scalar<'a>),
    /// A list; its items are read as it is iterated.
    List(Items<'a>),
}

/// The items of a packed list, read as they are iterated. An item that can't be read is the
/// last one yielded, as an `Err`.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    reader: Reader<'a>,
    left: u32,
}

impl Items<'_> {
    /// Room to reserve for the items: their count, but no more than one per byte left, so a
    /// hostile count can't make a reader reserve much.
    #[inline]
    pub fn capacity_hint(&self) -> usize {
        (self.left as usize).min(self.reader.rest().len())
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Scalar<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = self.reader.u8().and_then(|tag| self.reader.scalar(tag));
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

impl<'a> Reader<'a> {
    /// The scalar whose tag, `tag`, was just read.
    #[inline(always)]
    pub fn scalar(&mut self, tag: u8) -> Result<Scalar<'a>, Error> {
        Ok(match tag {
            tag::NULL => Scalar::Null,
            tag::TEXT => Scalar::Text(self.text()?),
            tag::INTEGER => Scalar::Integer(self.i64()?),
            tag::NUMBER => Scalar::Number(self.f64()?),
            tag::BOOLEAN => Scalar::Boolean(self.u8()? != 0),
            tag::DATE_TIME => {
                let (seconds, nanoseconds) = self.date_time()?;
                Scalar::DateTime {
                    seconds,
                    nanoseconds,
                }
            }
            tag::LIST => return Err(Error::ListInList),
            tag => return Err(Error::UnknownValueTag(tag)),
        })
    }
}

/// The value at the front of `bytes` (tag first), typically one a record walk found. Its
/// texts are checked again as they are read (no scan of the whole first: a value is small);
/// a list's items are read as they are iterated.
#[inline]
pub fn read_value(bytes: &[u8]) -> Result<ValueView<'_>, Error> {
    let mut reader = Reader::unscanned(bytes);
    Ok(match reader.u8()? {
        tag::LIST => {
            let left = reader.u32()?;
            ValueView::List(Items { reader, left })
        }
        tag => ValueView::Scalar(reader.scalar(tag)?),
    })
}

/// The text of a packed value (tag first), without copying it; `None` for other kinds or
/// bytes that aren't one.
#[inline]
pub fn text_of(value: &[u8]) -> Option<&str> {
    let mut reader = Reader::unscanned(value);
    match reader.u8() {
        Ok(tag::TEXT) => reader.text().ok(),
        _ => None,
    }
}

/// True when a packed value (tag first) is `null` or an empty text: "no value" on either
/// side. Looks at the first five bytes only.
#[inline]
pub fn is_blank(value: &[u8]) -> bool {
    match value {
        [tag::NULL, ..] => true,
        [tag::TEXT, length @ ..] => length.starts_with(&0u32.to_le_bytes()),
        _ => false,
    }
}
