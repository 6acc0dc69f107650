//! Date-times in the session user's time zone, as Siebel takes and gives them: every
//! date-time a request carries (a field value, a searchspec literal) is read in the time zone
//! of the user who sends it, and every one a reply carries is written in it, daylight saving
//! applied (Siebel Global Deployment Guide, "About UTC Data Conversion",
//! docs.oracle.com/cd/G30561_01/books/GlobDep/c-About-UTC-Data-Conversion-xv1027823.html:
//! user input is converted with the time zone of the user's profile). The emulator stores UTC, so two
//! users in different zones see one instant as two different texts, as on a real Siebel.

use chrono::{LocalResult, NaiveDateTime, TimeZone as _};
use chrono_tz::Tz;

/// Siebel's date-time text.
const FORMAT: &str = "%m/%d/%Y %H:%M:%S";

/// The emulator's date-time fields (`DTYPE_UTCDATETIME`), besides the system stamps: the
/// activity's start and end, due date and completion.
const DATETIME_FIELDS: &[&str] = &["Planned", "Planned Completion", "Due", "Done"];

/// The system stamps, date-times on every component.
const STAMPS: &[&str] = &["Created", "Updated"];

/// Whether `field` holds a date-time a client writes.
pub fn is_datetime_field(field: &str) -> bool {
    DATETIME_FIELDS.contains(&field)
}

/// Whether `field` holds a date-time a reply shows in the user's zone.
pub fn is_shown_in_zone(field: &str) -> bool {
    DATETIME_FIELDS.contains(&field) || STAMPS.contains(&field)
}

/// A date-time a user wrote in `zone`, as stored (UTC). The text must be Siebel's
/// `MM/DD/YYYY HH:MM:SS`; a time the zone skips (the hour clocks go forward) is refused; a
/// time it repeats (the hour clocks go back) is taken the first time (docs silent: the
/// earlier instant). The error is the message to refuse the write with.
pub fn stored(text: &str, zone: Tz) -> Result<String, String> {
    let local = NaiveDateTime::parse_from_str(text.trim(), FORMAT)
        .map_err(|_| format!("'{text}' is not a date-time; Siebel takes MM/DD/YYYY HH:MM:SS"))?;
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Ok(at.naive_utc().format(FORMAT).to_string()),
        LocalResult::None => Err(format!("'{text}' does not exist in time zone {zone} (clocks go forward then)")),
    }
}

/// A stored (UTC) date-time as a user in `zone` sees it; text that is not a date-time is
/// shown as stored.
pub fn shown(stored: &str, zone: Tz) -> String {
    match NaiveDateTime::parse_from_str(stored.trim(), FORMAT) {
        Ok(utc) => zone.from_utc_datetime(&utc).naive_local().format(FORMAT).to_string(),
        Err(_) => stored.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_date_times_are_stored_as_utc_and_shown_back_in_their_zone() {
        let new_york: Tz = "America/New_York".parse().expect("zone");
        // Winter: UTC-5; summer: UTC-4.
        assert_eq!(stored("12/01/2026 15:00:00", new_york).as_deref(), Ok("12/01/2026 20:00:00"));
        assert_eq!(stored("07/01/2026 15:00:00", new_york).as_deref(), Ok("07/01/2026 19:00:00"));
        assert_eq!(shown("12/01/2026 20:00:00", new_york), "12/01/2026 15:00:00");
        // 2026-11-01 01:30 happens twice in New York: the first (EDT, UTC-4) is taken, and
        // the second shows as the same text.
        assert_eq!(stored("11/01/2026 01:30:00", new_york).as_deref(), Ok("11/01/2026 05:30:00"));
        assert_eq!(shown("11/01/2026 06:30:00", new_york), "11/01/2026 01:30:00");
        // 2026-03-08 02:30 does not exist in New York.
        assert!(stored("03/08/2026 02:30:00", new_york).is_err_and(|m| m.contains("does not exist")));
        // Only Siebel's format.
        for not_siebels in ["2026-12-01T15:00:00Z", "12/01/2026", "12/01/2026 25:00:00"] {
            assert!(stored(not_siebels, new_york).is_err(), "{not_siebels}");
        }
        assert_eq!(shown("not a date", new_york), "not a date");
        assert_eq!(stored("12/01/2026 15:00:00", Tz::UTC).as_deref(), Ok("12/01/2026 15:00:00"));
    }
}
