//! The bounds-checked [`Reader`] both sides parse packed bytes with: every read checks what
//! is left, and a whole batch is scanned for non-ASCII bytes once so that its texts need no
//! UTF-8 check of their own.

use crate::{Answer, Error};

/// True when every byte is ASCII. In wasm, eight bytes at a time: several times faster there
/// than `str::from_utf8`, which goes byte by byte on short or unaligned input. Natively the
/// standard library's check, which is word-wise already.
#[inline]
pub fn is_ascii(bytes: &[u8]) -> bool {
    #[cfg(target_family = "wasm")]
    {
        let mut rest = bytes;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            if u64::from_ne_bytes(*word) & 0x8080_8080_8080_8080 != 0 {
                return false;
            }
            rest = tail;
        }
        rest.iter().all(u8::is_ascii)
    }
    #[cfg(not(target_family = "wasm"))]
    {
        bytes.is_ascii()
    }
}

/// Reads the packed format from the front of a byte slice. Every read is bounds-checked and
/// fails with an [`Error`], never a panic; the small reads are inlined into the caller's
/// parse loop (in a plugin, a call per read cost more than the read).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    /// The length of the slice the reader started from, to tell offsets into it.
    len_at_start: usize,
    /// Every byte of that slice is ASCII, so any text in it is UTF-8: true for most batches
    /// (names and values are mostly ASCII, lengths and tags small), and then one pass over
    /// the batch replaces a check per text.
    all_ascii: bool,
}

impl<'a> Reader<'a> {
    /// A reader of a whole batch or answers, scanned once for non-ASCII bytes.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            len_at_start: bytes.len(),
            all_ascii: is_ascii(bytes),
        }
    }

    /// A reader of a few bytes (one value of a record already walked): no scan, each text is
    /// checked as it is read.
    #[inline]
    pub fn unscanned(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            len_at_start: bytes.len(),
            all_ascii: false,
        }
    }

    /// The bytes not read yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// True when every byte has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The offset of the next byte to read in the slice the reader started from.
    #[inline]
    pub fn offset(&self) -> usize {
        self.len_at_start - self.bytes.len()
    }

    /// [`offset`](Self::offset) as a `u32`, once [`fits_u32`](Self::fits_u32) said it does.
    #[inline(always)]
    pub(crate) fn offset_u32(&self) -> u32 {
        self.offset() as u32
    }

    /// Fails unless every offset into the slice fits a `u32`.
    #[inline]
    pub(crate) fn fits_u32(&self) -> Result<(), Error> {
        match u32::try_from(self.len_at_start) {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::TooLarge),
        }
    }

    /// The next `N` bytes.
    #[inline(always)]
    pub fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(Error::EndsInValue)?;
        self.bytes = rest;
        Ok(*head)
    }

    /// A byte: a tag, or a boolean.
    #[inline(always)]
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take::<1>()?[0])
    }

    /// A count or a length.
    #[inline(always)]
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    /// An `s64`.
    #[inline(always)]
    pub fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    /// An `f64`.
    #[inline(always)]
    pub fn f64(&mut self) -> Result<f64, Error> {
        Ok(f64::from_le_bytes(self.take()?))
    }

    /// A date-time's seconds and nanoseconds, as they are (no range check).
    #[inline(always)]
    pub fn date_time(&mut self) -> Result<(i64, u32), Error> {
        Ok((self.i64()?, self.u32()?))
    }

    /// A text (length first), checked to be UTF-8.
    #[inline(always)]
    pub fn text(&mut self) -> Result<&'a str, Error> {
        let len = self.u32()? as usize;
        if len > self.bytes.len() {
            return Err(Error::EndsInText);
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        if self.all_ascii || is_ascii(text) {
            return Ok(ascii_str(text));
        }
        std::str::from_utf8(text).map_err(Error::NotUtf8)
    }

    /// An answer's tag.
    #[inline]
    pub fn answer(&mut self) -> Result<Answer, Error> {
        let tag = self.u8()?;
        Answer::from_tag(tag).ok_or(Error::UnknownAnswerTag(tag))
    }
}

/// `bytes`, all ASCII, as a `str` without a second look at them.
#[inline(always)]
#[allow(unsafe_code)]
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: the caller saw every byte below 0x80 (the whole slice the reader started from,
    // or this text), and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}
