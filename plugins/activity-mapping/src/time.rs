//! Reading the date-times of activity records without a clock or a date library: Siebel's
//! `MM/DD/YYYY HH:MM:SS` text (UTC, as the Siebel connector reads and writes it), ISO 8601 /
//! RFC 3339 text, and the SDK's [`DateTime`] values the EWS connector produces.

use tandem_plugin_api::{DateTime, Fields, PluginError, Value};

const SECONDS_PER_DAY: i64 = 86_400;

/// The UTC instant of a calendar date and wall-clock time, or `None` when any part is out of
/// range (month 13, February 30, hour 24, ...).
pub fn utc(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<DateTime> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days
        .checked_mul(SECONDS_PER_DAY)?
        .checked_add(i64::from(hour * 3600 + minute * 60 + second))?;
    Some(DateTime {
        seconds,
        nanoseconds: 0,
    })
}

/// Parses Siebel's date-time text: `MM/DD/YYYY HH:MM:SS`, `MM/DD/YYYY HH:MM` or `MM/DD/YYYY`
/// (midnight), read as UTC.
pub fn parse_siebel(text: &str) -> Option<DateTime> {
    let text = text.trim();
    let (date, time) = match text.split_once(' ') {
        Some((date, time)) => (date, Some(time.trim())),
        None => (text, None),
    };
    let mut parts = date.split('/');
    let month = number(parts.next()?, 1, 2)?;
    let day = number(parts.next()?, 1, 2)?;
    let year = number(parts.next()?, 4, 4)?;
    if parts.next().is_some() {
        return None;
    }
    let (hour, minute, second) = match time {
        None => (0, 0, 0),
        Some(time) => clock(time)?,
    };
    utc(i64::from(year), month, day, hour, minute, second)
}

/// Parses ISO 8601 / RFC 3339 text: `YYYY-MM-DD` (midnight UTC) or
/// `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z`, `+HH:MM`, `-HH:MM` or nothing (UTC).
pub fn parse_iso(text: &str) -> Option<DateTime> {
    let text = text.trim();
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = number(parts.next()?, 4, 4)?;
    let month = number(parts.next()?, 2, 2)?;
    let day = number(parts.next()?, 2, 2)?;
    if parts.next().is_some() {
        return None;
    }
    let Some(rest) = rest else {
        return utc(i64::from(year), month, day, 0, 0, 0);
    };
    // Split off the zone: `Z`, or the last `+`/`-` (the time part itself has neither).
    let (clock_text, offset_seconds) = if let Some(clock_text) = rest.strip_suffix(['Z', 'z']) {
        (clock_text, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let sign = if rest.as_bytes()[at] == b'-' { -1 } else { 1 };
        let (hours, minutes) = rest[at + 1..].split_once(':')?;
        let offset =
            i64::from(number(hours, 2, 2)?) * 3600 + i64::from(number(minutes, 2, 2)?) * 60;
        (&rest[..at], sign * offset)
    } else {
        (rest, 0)
    };
    let (whole, fraction) = match clock_text.split_once(['.', ',']) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (clock_text, None),
    };
    let (hour, minute, second) = clock(whole)?;
    let nanoseconds = match fraction {
        None => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let padded: String = digits
                .chars()
                .chain(std::iter::repeat('0'))
                .take(9)
                .collect();
            padded.parse().ok()?
        }
        Some(_) => return None,
    };
    let local = utc(i64::from(year), month, day, hour, minute, second)?;
    Some(DateTime {
        seconds: local.seconds.checked_sub(offset_seconds)?,
        nanoseconds,
    })
}

/// The date-time in field `name`: `None` when absent or blank; a [`Value::DateTime`] as is;
/// text in Siebel's or ISO 8601 form parsed. Anything else is an `invalid-record` error naming
/// the field and the value.
pub fn date_time_of(fields: &Fields, name: &str) -> Result<Option<DateTime>, PluginError> {
    match fields.get(name) {
        None => Ok(None),
        Some(value) if value.is_blank() => Ok(None),
        Some(Value::DateTime(at)) => Ok(Some(*at)),
        Some(Value::Text(text)) => parse_siebel(text)
            .or_else(|| parse_iso(text))
            .map(Some)
            .ok_or_else(|| {
                PluginError::InvalidRecord(format!(
                    "`{name}` is `{text}`, which is not a date-time; Siebel dates are \
                     MM/DD/YYYY HH:MM:SS, Exchange dates RFC 3339 (2026-12-01T15:00:00Z)"
                ))
            }),
        Some(other) => Err(PluginError::InvalidRecord(format!(
            "`{name}` holds {other:?}, which is not a date-time"
        ))),
    }
}

/// `HH:MM:SS` or `HH:MM`.
fn clock(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(':');
    let hour = number(parts.next()?, 1, 2)?;
    let minute = number(parts.next()?, 2, 2)?;
    let second = match parts.next() {
        Some(second) => number(second, 2, 2)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((hour, minute, second))
}

/// A run of `min..=max` ASCII digits as a number.
fn number(text: &str, min: usize, max: usize) -> Option<u32> {
    if text.len() < min || text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
