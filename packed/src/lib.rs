//! The packed record format (`packed-records`, `packed-results` in wit/tandem-plugin.wit),
//! written once for both sides of the plugin boundary: the host and the guest SDK.
//!
//! A batch of records crosses the component boundary as one byte list, so the canonical ABI
//! allocates and copies once per batch instead of once per field name and per text. All
//! integers are little-endian:
//!
//! ```text
//! batch   := count:u32 record{count}
//! record  := count:u32 field{count}
//! field   := name:text value
//! text    := length:u32 utf-8-bytes{length}
//! value   := 0x00 | 0x01 text | 0x02 s64 | 0x03 f64 | 0x04 u8
//!          | 0x05 seconds:s64 nanoseconds:u32 | 0x06 count:u32 scalar{count}
//! scalar  := a value other than a list
//! answers := count:u32 answer{count}
//! answer  := 0x00 record | 0x01 message:text | 0x02 message:text
//! ```
//!
//! What is here is what both sides share: the tags, a bounds-checked [`Reader`], the writer
//! primitives (`put_*`), a walk that checks one record and tells where each field's name and
//! value are ([`Reader::record`]), and a borrowed view of one value for decoding
//! ([`read_value`]). Each side keeps only its own record type. Nothing here panics on any
//! input, and nothing allocates: a record is checked without copying a byte.

mod error;
mod read;
mod record;
mod value;
mod write;

#[cfg(test)]
mod tests;

pub use error::Error;
pub use read::{Reader, is_ascii};
pub use record::{Field, RecordFields};
pub use value::{Items, Scalar, ValueView, is_blank, read_value, text_of};
pub use write::{
    put_answer_header, put_boolean, put_date_time, put_integer, put_len, put_list_header, put_null,
    put_number, put_record_header, put_scalar, put_text, put_text_value, put_u32, set_count,
};

/// The value tags: the first byte of every packed value.
pub mod tag {
    /// `null`.
    pub const NULL: u8 = 0;
    /// `text`: a text follows.
    pub const TEXT: u8 = 1;
    /// `integer`: an `s64` follows.
    pub const INTEGER: u8 = 2;
    /// `number`: an `f64` follows.
    pub const NUMBER: u8 = 3;
    /// `boolean`: a `u8` follows (0 false, anything else true).
    pub const BOOLEAN: u8 = 4;
    /// `date-time`: seconds (`s64`) and nanoseconds (`u32`) follow.
    pub const DATE_TIME: u8 = 5;
    /// `list`: a count (`u32`) and that many scalars follow.
    pub const LIST: u8 = 6;
}

/// The kinds of answer in `packed-results`, each tagged by its discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The mapped record follows.
    Record = 0,
    /// `plugin-error::invalid-record`: its message (a text) follows.
    InvalidRecord = 1,
    /// `plugin-error::other`: its message (a text) follows.
    Other = 2,
}

impl Answer {
    /// The byte that tags this kind of answer.
    #[inline]
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// The kind of answer `tag` tags, when it is one.
    #[inline]
    pub const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Answer::Record),
            1 => Some(Answer::InvalidRecord),
            2 => Some(Answer::Other),
            _ => None,
        }
    }
}
