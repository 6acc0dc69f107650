//! Why packed bytes can't be read or written: one small enum for both sides (no
//! dependencies, so no thiserror), with the messages the host and the SDK report.

use std::fmt;

/// Packed bytes that don't follow the format, or a record too big for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes end in the middle of a value (or of a count, a length or a tag).
    EndsInValue,
    /// A text's length runs past the end of the bytes.
    EndsInText,
    /// A text is not UTF-8.
    NotUtf8(std::str::Utf8Error),
    /// A value tag the format doesn't have.
    UnknownValueTag(u8),
    /// An answer tag the format doesn't have.
    UnknownAnswerTag(u8),
    /// A list inside a list (WIT has no recursive types).
    ListInList,
    /// A length or a count (of a text, a list, a record or a batch) of 4 Gi or more, which
    /// its `u32` can't hold.
    TooLong(usize),
    /// Packed bytes of 4 GiB or more: offsets into them don't fit the `u32` ranges both
    /// sides keep.
    TooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::EndsInValue => f.write_str("the bytes end in the middle of a value"),
            Error::EndsInText => f.write_str("the bytes end in the middle of a text"),
            Error::NotUtf8(e) => write!(f, "a text is not UTF-8: {e}"),
            Error::UnknownValueTag(tag) => write!(f, "unknown value tag {tag}"),
            Error::UnknownAnswerTag(tag) => write!(f, "unknown answer tag {tag}"),
            Error::ListInList => f.write_str("a list inside a list"),
            Error::TooLong(len) => write!(f, "{len} is too long for the packed format (4 GiB)"),
            Error::TooLarge => f.write_str("packed bytes of 4 GiB or more"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NotUtf8(e) => Some(e),
            _ => None,
        }
    }
}
