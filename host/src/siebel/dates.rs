//! Siebel's date-time text (`MM/DD/YYYY HH:MM:SS`, dates as `MM/DD/YYYY`), read and written
//! by the client itself: the emulator has its own reading, so a misunderstanding of the
//! format cannot hide by being shared between the two.

use chrono::{NaiveDate, NaiveDateTime};

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

#[cfg(test)]
mod tests {
    use super::*;

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
