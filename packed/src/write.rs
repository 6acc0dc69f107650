//! The writer primitives: each appends one piece of the format to a `Vec<u8>`. A side writes
//! its own record type with them; lengths and counts are checked to fit their `u32`, and a
//! write that fails appends nothing.

use crate::{Answer, Error, Scalar, tag};

/// Appends a `u32` (a count known to fit, e.g. a placeholder for [`set_count`]).
#[inline(always)]
pub fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends a length or a count; fails on 4 Gi or more.
#[inline(always)]
pub fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), Error> {
    put_u32(out, len_u32(len)?);
    Ok(())
}

#[inline(always)]
fn len_u32(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::TooLong(len))
}

/// Overwrites the count that packed bytes (a batch or answers) start with: written as a
/// placeholder first when the count is known only at the end. Does nothing to fewer than
/// four bytes.
#[inline]
pub fn set_count(packed: &mut [u8], count: u32) {
    if let Some(head) = packed.first_chunk_mut::<4>() {
        *head = count.to_le_bytes();
    }
}

/// Appends a text, length first (a field name, or an answer's message).
#[inline(always)]
pub fn put_text(out: &mut Vec<u8>, text: &str) -> Result<(), Error> {
    put_len(out, text.len())?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Appends a record's header: its field count. The fields (name, then value) follow.
#[inline]
pub fn put_record_header(out: &mut Vec<u8>, fields: usize) -> Result<(), Error> {
    put_len(out, fields)
}

/// Appends an answer's tag: a record or a message (a text) follows.
#[inline]
pub fn put_answer_header(out: &mut Vec<u8>, answer: Answer) {
    out.push(answer.tag());
}

/// Appends a `null` value.
#[inline(always)]
pub fn put_null(out: &mut Vec<u8>) {
    out.push(tag::NULL);
}

/// Appends a text value.
#[inline(always)]
pub fn put_text_value(out: &mut Vec<u8>, text: &str) -> Result<(), Error> {
    let len = len_u32(text.len())?;
    out.push(tag::TEXT);
    put_u32(out, len);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Appends an integer value.
#[inline(always)]
pub fn put_integer(out: &mut Vec<u8>, n: i64) {
    out.push(tag::INTEGER);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends a number value.
#[inline(always)]
pub fn put_number(out: &mut Vec<u8>, n: f64) {
    out.push(tag::NUMBER);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends a boolean value.
#[inline(always)]
pub fn put_boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(&[tag::BOOLEAN, u8::from(b)]);
}

/// Appends a date-time value, as given (the writing side's times are in range).
#[inline(always)]
pub fn put_date_time(out: &mut Vec<u8>, seconds: i64, nanoseconds: u32) {
    out.push(tag::DATE_TIME);
    out.extend_from_slice(&seconds.to_le_bytes());
    out.extend_from_slice(&nanoseconds.to_le_bytes());
}

/// Appends a list's header: its item count. That many scalars follow.
#[inline]
pub fn put_list_header(out: &mut Vec<u8>, items: usize) -> Result<(), Error> {
    let items = len_u32(items)?;
    out.push(tag::LIST);
    put_u32(out, items);
    Ok(())
}

/// Appends any scalar value.
#[inline]
pub fn put_scalar(out: &mut Vec<u8>, scalar: Scalar<'_>) -> Result<(), Error> {
    match scalar {
        Scalar::Null => put_null(out),
        Scalar::Text(text) => put_text_value(out, text)?,
        Scalar::Integer(n) => put_integer(out, n),
        Scalar::Number(n) => put_number(out, n),
        Scalar::Boolean(b) => put_boolean(out, b),
        Scalar::DateTime {
            seconds,
            nanoseconds,
        } => put_date_time(out, seconds, nanoseconds),
    }
    Ok(())
}
