//! The flat field names of calendar items that both backends speak (organizer, attendees,
//! recurrence), so mapping plugins see the same record from EWS and from Graph. How each
//! backend writes them is its own business (`ews/calendar.rs`, `graph/mapping.rs`).

/// The organizer's SMTP address (read-only).
pub const ORGANIZER: &str = "Organizer";
/// Required attendees' SMTP addresses.
pub const REQUIRED_ATTENDEES: &str = "RequiredAttendees";
/// Optional attendees' SMTP addresses.
pub const OPTIONAL_ATTENDEES: &str = "OptionalAttendees";

/// Flat names of the recurrence fields.
pub mod recurrence {
    /// Every recurrence field name starts with this.
    pub const PREFIX: &str = "Recurrence.";
    pub const PATTERN: &str = "Recurrence.Pattern";
    pub const INTERVAL: &str = "Recurrence.Interval";
    pub const DAYS_OF_WEEK: &str = "Recurrence.DaysOfWeek";
    pub const FIRST_DAY_OF_WEEK: &str = "Recurrence.FirstDayOfWeek";
    pub const DAY_OF_WEEK_INDEX: &str = "Recurrence.DayOfWeekIndex";
    pub const DAY_OF_MONTH: &str = "Recurrence.DayOfMonth";
    pub const MONTH: &str = "Recurrence.Month";
    pub const START_DATE: &str = "Recurrence.StartDate";
    pub const END_DATE: &str = "Recurrence.EndDate";
    pub const NUMBER_OF_OCCURRENCES: &str = "Recurrence.NumberOfOccurrences";

    /// Every recurrence field name.
    pub const ALL: &[&str] = &[
        PATTERN,
        INTERVAL,
        DAYS_OF_WEEK,
        FIRST_DAY_OF_WEEK,
        DAY_OF_WEEK_INDEX,
        DAY_OF_MONTH,
        MONTH,
        START_DATE,
        END_DATE,
        NUMBER_OF_OCCURRENCES,
    ];

    /// The values of `Recurrence.Month`, January first.
    pub const MONTHS: &[&str] = &[
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
}
