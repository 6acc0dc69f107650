//! Siebel's date-time text (`MM/DD/YYYY HH:MM:SS`, dates as `MM/DD/YYYY`), read and written
//! by the client itself: the emulator has its own reading, so a misunderstanding of the
//! format cannot hide by being shared between the two.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone as _, Utc};
use chrono_tz::Tz;

/// How Siebel's REST API writes a date-time (and takes one in a searchspec or a write).
pub const DATETIME_FORMAT: &str = "%m/%d/%Y %H:%M:%S";
/// How Siebel writes a date (a DTYPE_DATE field).
pub const DATE_FORMAT: &str = "%m/%d/%Y";

/// A Siebel date-time or date (midnight), surrounding blanks ignored; `None` for anything
/// else.
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, DATETIME_FORMAT)
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text, DATE_FORMAT).ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
}

/// A full Siebel date-time (`MM/DD/YYYY HH:MM:SS`, nothing else: dates carry no time zone).
fn parse_full(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    if text.len() != 19 {
        return None;
    }
    NaiveDateTime::parse_from_str(text, DATETIME_FORMAT).ok()
}

/// A date-time Siebel wrote in `zone` (the integration user's), as UTC text in the same
/// format; `None` when the text is not a full date-time. A time the zone repeats (clocks go
/// back) is taken the first time and a time it skips as the hour after: either way no later
/// than the truth, so a change cursor built from it re-reads rather than skips.
pub fn utc_from_zone(text: &str, zone: Tz) -> Option<String> {
    let local = parse_full(text)?;
    let at = zone
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(local + chrono::TimeDelta::hours(1))).earliest())?;
    Some(at.naive_utc().format(DATETIME_FORMAT).to_string())
}

/// An instant as Siebel takes it from a user in `zone`.
pub fn in_zone(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format(DATETIME_FORMAT).to_string()
}

/// A UTC date-time text as Siebel takes it from a user in `zone`; `None` when the text is not
/// a full date-time.
pub fn utc_text_in_zone(text: &str, zone: Tz) -> Option<String> {
    parse_full(text).map(|utc| in_zone(Utc.from_utc_datetime(&utc), zone))
}

/// `spec` with each quoted literal that is a full date-time (UTC, as Tandem holds them)
/// written in `zone`, as Siebel reads a searchspec in its user's time zone.
pub fn searchspec_in_zone(spec: &str, zone: Tz) -> String {
    if zone == Tz::UTC {
        return spec.to_owned();
    }
    let mut out = String::with_capacity(spec.len());
    let mut rest = spec;
    while let Some(open) = rest.find('\'') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        // The literal runs to the next quote that is not doubled.
        let mut end = 0;
        let bytes = rest.as_bytes();
        loop {
            match bytes[end..].iter().position(|&b| b == b'\'') {
                Some(at) if bytes.get(end + at + 1) == Some(&b'\'') => end += at + 2,
                Some(at) => {
                    end += at;
                    break;
                }
                None => {
                    end = bytes.len();
                    break;
                }
            }
        }
        let literal = &rest[..end];
        out.push_str(&utc_text_in_zone(literal, zone).unwrap_or_else(|| literal.to_owned()));
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix('\'') {
            out.push('\'');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_convert_between_utc_and_the_siebel_users_zone_without_skipping() {
        let new_york: Tz = "America/New_York".parse().expect("zone");
        assert_eq!(utc_from_zone("12/01/2026 15:00:00", new_york).as_deref(), Some("12/01/2026 20:00:00"));
        assert_eq!(utc_text_in_zone("12/01/2026 20:00:00", new_york).as_deref(), Some("12/01/2026 15:00:00"));
        assert_eq!(utc_from_zone("07/01/2026 15:00:00", new_york).as_deref(), Some("07/01/2026 19:00:00"));
        // Autumn: 01:30 happens at 05:30 and at 06:30 UTC; the earlier is taken.
        assert_eq!(utc_from_zone("11/01/2026 01:30:00", new_york).as_deref(), Some("11/01/2026 05:30:00"));
        // Spring: 02:30 never happens; read as 03:30 EDT, 07:30 UTC.
        assert_eq!(utc_from_zone("03/08/2026 02:30:00", new_york).as_deref(), Some("03/08/2026 07:30:00"));
        // Dates and other text are not date-times.
        assert_eq!(utc_from_zone("12/01/2026", new_york), None);
        assert_eq!(utc_from_zone("Call back", new_york), None);
        assert_eq!(
            searchspec_in_zone("[Updated] >= '12/01/2026 20:00:00' AND [Description] = 'it''s 12/01/2026 20:00:00'", new_york),
            "[Updated] >= '12/01/2026 15:00:00' AND [Description] = 'it''s 12/01/2026 20:00:00'"
        );
        assert_eq!(searchspec_in_zone("[Due] < '12/01/2026 20:00:00'", Tz::UTC), "[Due] < '12/01/2026 20:00:00'");
        assert_eq!(searchspec_in_zone("[A] = 'unterminated", new_york), "[A] = 'unterminated");
    }

    #[test]
    fn date_times_and_dates_are_read_and_other_text_is_not() {
        let at = parse_datetime(" 03/09/2026 14:05:00 ").expect("a date-time");
        assert_eq!(at.format("%Y-%m-%d %H:%M:%S").to_string(), "2026-03-09 14:05:00");
        let midnight = parse_datetime("12/31/2025").expect("a date");
        assert_eq!(midnight.format("%Y-%m-%d %H:%M:%S").to_string(), "2025-12-31 00:00:00");
        for not_a_date in ["", "2026-03-09", "13/01/2026", "03/09/2026 25:00:00", "Open"] {
            assert_eq!(parse_datetime(not_a_date), None, "{not_a_date:?}");
        }
    }
}
