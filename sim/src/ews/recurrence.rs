//! EWS recurrence rules (types.xsd `RecurrenceType`: one pattern, one range) read from a
//! calendar item's `t:Recurrence` markup and expanded into occurrence dates, so the emulator
//! can answer CalendarView and occurrence ids the way Exchange does.
//!
//! Patterns: Daily, Weekly (DaysOfWeek, Interval, FirstDayOfWeek), AbsoluteMonthly,
//! RelativeMonthly, AbsoluteYearly, RelativeYearly. Ranges: NoEnd, EndDate (inclusive),
//! Numbered. A day of month past the end of a month falls on its last day, as in Outlook.
//! Dates are calendar dates; the emulator applies them at the master's UTC time of day.

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};

use super::wire::{Element, parse_document};

/// Occurrence indexes above this are refused even for series without an end, which keeps
/// every walk over a series bounded.
pub(crate) const MAX_INSTANCE_INDEX: u32 = 100_000;
/// Periods (days, weeks, months or years) a walk looks at before giving up.
const MAX_PERIODS: u32 = 1_000_000;

/// A recurrence rule as `t:Recurrence` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recurrence {
    pub pattern: Pattern,
    /// The range's `StartDate`.
    pub start: NaiveDate,
    pub end: RangeEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeEnd {
    NoEnd,
    /// The last day an occurrence may fall on.
    EndDate(NaiveDate),
    Numbered(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Daily {
        interval: u32,
    },
    Weekly {
        interval: u32,
        days: DaySet,
        first_day: Weekday,
    },
    AbsoluteMonthly {
        interval: u32,
        day: u32,
    },
    RelativeMonthly {
        interval: u32,
        days: DaySet,
        index: WeekIndex,
    },
    AbsoluteYearly {
        day: u32,
        month: u32,
    },
    RelativeYearly {
        days: DaySet,
        index: WeekIndex,
        month: u32,
    },
}

/// A set of week days (`DaysOfWeek`; `Day`, `Weekday` and `WeekendDay` stand for several).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DaySet([bool; 7]);

impl DaySet {
    fn contains(self, day: Weekday) -> bool {
        self.0[day.num_days_from_sunday() as usize]
    }

    fn is_empty(self) -> bool {
        !self.0.iter().any(|d| *d)
    }

    /// Reads a space-separated `DaysOfWeekType` list.
    fn parse(text: &str) -> Result<Self, String> {
        let mut set = [false; 7];
        for token in text.split_whitespace() {
            let days: &[Weekday] = match token {
                "Sunday" => &[Weekday::Sun],
                "Monday" => &[Weekday::Mon],
                "Tuesday" => &[Weekday::Tue],
                "Wednesday" => &[Weekday::Wed],
                "Thursday" => &[Weekday::Thu],
                "Friday" => &[Weekday::Fri],
                "Saturday" => &[Weekday::Sat],
                "Day" => &[
                    Weekday::Sun,
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                ],
                "Weekday" => &[
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ],
                "WeekendDay" => &[Weekday::Sat, Weekday::Sun],
                other => return Err(format!("'{other}' is not a DayOfWeekType")),
            };
            for day in days {
                set[day.num_days_from_sunday() as usize] = true;
            }
        }
        let set = Self(set);
        if set.is_empty() {
            return Err("DaysOfWeek names no day".into());
        }
        Ok(set)
    }
}

/// `DayOfWeekIndex`: which matching day of the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeekIndex {
    Nth(usize),
    Last,
}

impl WeekIndex {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "First" => WeekIndex::Nth(0),
            "Second" => WeekIndex::Nth(1),
            "Third" => WeekIndex::Nth(2),
            "Fourth" => WeekIndex::Nth(3),
            "Last" => WeekIndex::Last,
            other => return Err(format!("'{other}' is not a DayOfWeekIndexType")),
        })
    }
}

const MONTH_NAMES: [&str; 12] = [
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

fn weekday(text: &str) -> Result<Weekday, String> {
    match text {
        "Sunday" => Ok(Weekday::Sun),
        "Monday" => Ok(Weekday::Mon),
        "Tuesday" => Ok(Weekday::Tue),
        "Wednesday" => Ok(Weekday::Wed),
        "Thursday" => Ok(Weekday::Thu),
        "Friday" => Ok(Weekday::Fri),
        "Saturday" => Ok(Weekday::Sat),
        other => Err(format!("'{other}' is not a day of the week")),
    }
}

/// Reads an `xs:date` (`2026-03-02`, optionally with a zone suffix, which is ignored).
fn xs_date(text: &str) -> Result<NaiveDate, String> {
    let text = text.trim();
    let day = text.get(..10).unwrap_or(text);
    NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| format!("'{text}' is not an xs:date"))
}

fn required<'a>(parent: &'a Element, name: &str) -> Result<&'a str, String> {
    parent
        .child_text(name)
        .ok_or_else(|| format!("<t:{}> needs <t:{name}>", parent.name))
}

fn number(
    parent: &Element,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, String> {
    let text = required(parent, name)?;
    text.parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{name} '{text}' must be a number from {range:?}"))
}

fn month(parent: &Element) -> Result<u32, String> {
    let text = required(parent, "Month")?;
    MONTH_NAMES
        .iter()
        .position(|m| *m == text)
        .map(|i| i as u32 + 1)
        .ok_or_else(|| format!("'{text}' is not a month"))
}

impl Recurrence {
    /// Reads the `t:Recurrence` markup a calendar item stores.
    pub fn from_markup(markup: &str) -> Result<Self, String> {
        let tree = parse_document(markup)?;
        Self::from_element(&tree)
    }

    pub fn from_element(recurrence: &Element) -> Result<Self, String> {
        let mut pattern = None;
        let mut range = None;
        for child in &recurrence.children {
            let parsed = match child.name.as_str() {
                "DailyRecurrence" => Pattern::Daily {
                    interval: number(child, "Interval", 1..=999)?,
                },
                "WeeklyRecurrence" => Pattern::Weekly {
                    interval: number(child, "Interval", 1..=999)?,
                    days: DaySet::parse(required(child, "DaysOfWeek")?)?,
                    first_day: child
                        .child_text("FirstDayOfWeek")
                        .map(weekday)
                        .transpose()?
                        .unwrap_or(Weekday::Sun),
                },
                "AbsoluteMonthlyRecurrence" => Pattern::AbsoluteMonthly {
                    interval: number(child, "Interval", 1..=999)?,
                    day: number(child, "DayOfMonth", 1..=31)?,
                },
                "RelativeMonthlyRecurrence" => Pattern::RelativeMonthly {
                    interval: number(child, "Interval", 1..=999)?,
                    days: DaySet::parse(required(child, "DaysOfWeek")?)?,
                    index: WeekIndex::parse(required(child, "DayOfWeekIndex")?)?,
                },
                "AbsoluteYearlyRecurrence" => Pattern::AbsoluteYearly {
                    day: number(child, "DayOfMonth", 1..=31)?,
                    month: month(child)?,
                },
                "RelativeYearlyRecurrence" => Pattern::RelativeYearly {
                    days: DaySet::parse(required(child, "DaysOfWeek")?)?,
                    index: WeekIndex::parse(required(child, "DayOfWeekIndex")?)?,
                    month: month(child)?,
                },
                "NoEndRecurrence" | "EndDateRecurrence" | "NumberedRecurrence" => {
                    let start = xs_date(required(child, "StartDate")?)?;
                    let end = match child.name.as_str() {
                        "NoEndRecurrence" => RangeEnd::NoEnd,
                        "EndDateRecurrence" => {
                            RangeEnd::EndDate(xs_date(required(child, "EndDate")?)?)
                        }
                        _ => RangeEnd::Numbered(number(child, "NumberOfOccurrences", 1..=999)?),
                    };
                    range = Some((start, end));
                    continue;
                }
                other => return Err(format!("<t:{other}> is not a supported recurrence part")),
            };
            pattern = Some(parsed);
        }
        let pattern = pattern.ok_or("a Recurrence needs a pattern")?;
        let (start, end) = range.ok_or("a Recurrence needs a range")?;
        Ok(Self {
            pattern,
            start,
            end,
        })
    }

    /// The pattern's dates of one period (the `n`th day, week, month or year after the
    /// range start, counted in steps of the interval), ascending.
    fn period_dates(&self, n: u32) -> Vec<NaiveDate> {
        let start = self.start;
        match &self.pattern {
            Pattern::Daily { interval } => start
                .checked_add_days(Days::new(u64::from(n) * u64::from(*interval)))
                .into_iter()
                .collect(),
            Pattern::Weekly {
                interval,
                days,
                first_day,
            } => {
                let back = (7 + start.weekday().num_days_from_sunday()
                    - first_day.num_days_from_sunday())
                    % 7;
                let Some(week) = start
                    .checked_sub_days(Days::new(u64::from(back)))
                    .and_then(|w| {
                        w.checked_add_days(Days::new(7 * u64::from(n) * u64::from(*interval)))
                    })
                else {
                    return Vec::new();
                };
                (0..7)
                    .filter_map(|offset| week.checked_add_days(Days::new(offset)))
                    .filter(|date| days.contains(date.weekday()))
                    .collect()
            }
            Pattern::AbsoluteMonthly { interval, day } => month_after(start, n * interval)
                .and_then(|first| clamped_day(first, *day))
                .into_iter()
                .collect(),
            Pattern::RelativeMonthly {
                interval,
                days,
                index,
            } => month_after(start, n * interval)
                .and_then(|first| nth_day(first, *days, *index))
                .into_iter()
                .collect(),
            Pattern::AbsoluteYearly { day, month } => {
                NaiveDate::from_ymd_opt(start.year() + n as i32, *month, 1)
                    .and_then(|first| clamped_day(first, *day))
                    .into_iter()
                    .collect()
            }
            Pattern::RelativeYearly { days, index, month } => {
                NaiveDate::from_ymd_opt(start.year() + n as i32, *month, 1)
                    .and_then(|first| nth_day(first, *days, *index))
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Visits the series' occurrence dates in order with their 1-based instance index, until
    /// `visit` returns false, the range ends, or a date passes `until`.
    pub fn walk(&self, until: Option<NaiveDate>, mut visit: impl FnMut(u32, NaiveDate) -> bool) {
        let last_day = match (&self.end, until) {
            (RangeEnd::EndDate(end), Some(until)) => Some((*end).min(until)),
            (RangeEnd::EndDate(end), None) => Some(*end),
            (_, until) => until,
        };
        let max_index = match self.end {
            RangeEnd::Numbered(count) => count,
            _ => MAX_INSTANCE_INDEX,
        };
        let mut index = 0;
        for n in 0..MAX_PERIODS {
            if last_day.is_some_and(|last| self.period_is_past(n, last)) {
                return;
            }
            for date in self.period_dates(n) {
                if date < self.start {
                    continue;
                }
                if last_day.is_some_and(|last| date > last) {
                    return;
                }
                index += 1;
                if index > max_index || !visit(index, date) {
                    return;
                }
            }
        }
    }

    /// True when every date of period `n` and later lies after `last`.
    fn period_is_past(&self, n: u32, last: NaiveDate) -> bool {
        let begin = match &self.pattern {
            Pattern::Daily { .. } | Pattern::Weekly { .. } => self.period_dates(n).first().copied(),
            Pattern::AbsoluteMonthly { interval, .. }
            | Pattern::RelativeMonthly { interval, .. } => month_after(self.start, n * interval),
            Pattern::AbsoluteYearly { .. } | Pattern::RelativeYearly { .. } => {
                NaiveDate::from_ymd_opt(self.start.year() + n as i32, 1, 1)
            }
        };
        begin.is_none_or(|begin| begin > last)
    }

    /// The date of occurrence `index` (1-based), if the series has one.
    pub fn date_of(&self, index: u32) -> Option<NaiveDate> {
        if index == 0 || index > MAX_INSTANCE_INDEX {
            return None;
        }
        let mut found = None;
        self.walk(None, |i, date| {
            if i == index {
                found = Some(date);
                false
            } else {
                true
            }
        });
        found
    }

    /// Whether the series ends (EndDate or Numbered).
    pub fn has_end(&self) -> bool {
        self.end != RangeEnd::NoEnd
    }
}

/// The first day of the month `months` months after `date`'s month.
fn month_after(date: NaiveDate, months: u32) -> Option<NaiveDate> {
    date.with_day(1)?.checked_add_months(Months::new(months))
}

/// Day `day` of the month starting at `first`, or its last day when the month is shorter.
fn clamped_day(first: NaiveDate, day: u32) -> Option<NaiveDate> {
    let next = first.checked_add_months(Months::new(1))?;
    let length = next.signed_duration_since(first).num_days() as u32;
    first.with_day(day.min(length))
}

/// The `index`th day of the month starting at `first` that is in `days`.
fn nth_day(first: NaiveDate, days: DaySet, index: WeekIndex) -> Option<NaiveDate> {
    let matching: Vec<NaiveDate> = first
        .iter_days()
        .take_while(|d| d.month() == first.month())
        .filter(|d| days.contains(d.weekday()))
        .collect();
    match index {
        WeekIndex::Nth(n) => matching.get(n).copied(),
        WeekIndex::Last => matching.last().copied(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dates(markup: &str, until: &str, limit: usize) -> Vec<String> {
        let rule = Recurrence::from_markup(markup).unwrap();
        let until = NaiveDate::parse_from_str(until, "%Y-%m-%d").unwrap();
        let mut out = Vec::new();
        rule.walk(Some(until), |_, date| {
            out.push(date.to_string());
            out.len() < limit
        });
        out
    }

    fn rule(pattern: &str, range: &str) -> String {
        format!("<t:Recurrence>{pattern}{range}</t:Recurrence>")
    }

    const NO_END: &str =
        "<t:NoEndRecurrence><t:StartDate>2026-01-01</t:StartDate></t:NoEndRecurrence>";

    #[test]
    fn daily_every_third_day() {
        let markup = rule(
            "<t:DailyRecurrence><t:Interval>3</t:Interval></t:DailyRecurrence>",
            NO_END,
        );
        assert_eq!(
            dates(&markup, "2026-01-12", 100),
            ["2026-01-01", "2026-01-04", "2026-01-07", "2026-01-10"]
        );
    }

    #[test]
    fn weekly_every_other_week_from_monday_weeks() {
        // 2026-01-01 is a Thursday; weeks start on Monday; Tuesday and Thursday every 2 weeks.
        let markup = rule(
            "<t:WeeklyRecurrence><t:Interval>2</t:Interval><t:DaysOfWeek>Tuesday Thursday</t:DaysOfWeek><t:FirstDayOfWeek>Monday</t:FirstDayOfWeek></t:WeeklyRecurrence>",
            NO_END,
        );
        assert_eq!(
            dates(&markup, "2026-01-31", 100),
            [
                "2026-01-01",
                "2026-01-13",
                "2026-01-15",
                "2026-01-27",
                "2026-01-29"
            ]
        );
    }

    #[test]
    fn weekly_first_day_of_week_decides_which_weeks_count() {
        // Saturday and Monday every 2 weeks from Thursday 2026-01-01. With weeks starting
        // on Sunday, Sat 3 Jan is in week 0 and Mon 5 Jan in week 1 (skipped); with weeks
        // starting on Monday, Sat 3 Jan is in week 0 too, Mon 12 Jan in week 2.
        let sunday = rule(
            "<t:WeeklyRecurrence><t:Interval>2</t:Interval><t:DaysOfWeek>Saturday Monday</t:DaysOfWeek><t:FirstDayOfWeek>Sunday</t:FirstDayOfWeek></t:WeeklyRecurrence>",
            NO_END,
        );
        assert_eq!(
            dates(&sunday, "2026-01-20", 100),
            ["2026-01-03", "2026-01-12", "2026-01-17"]
        );
        let saturday = rule(
            "<t:WeeklyRecurrence><t:Interval>2</t:Interval><t:DaysOfWeek>Saturday Monday</t:DaysOfWeek><t:FirstDayOfWeek>Saturday</t:FirstDayOfWeek></t:WeeklyRecurrence>",
            NO_END,
        );
        // Weeks start on Saturday: week 0 is 27 Dec–2 Jan (nothing on or after 1 Jan),
        // week 2 is 10–16 Jan.
        assert_eq!(
            dates(&saturday, "2026-01-20", 100),
            ["2026-01-10", "2026-01-12"]
        );
    }

    #[test]
    fn absolute_monthly_day_31_falls_on_the_last_day() {
        let markup = rule(
            "<t:AbsoluteMonthlyRecurrence><t:Interval>1</t:Interval><t:DayOfMonth>31</t:DayOfMonth></t:AbsoluteMonthlyRecurrence>",
            NO_END,
        );
        assert_eq!(
            dates(&markup, "2026-04-30", 100),
            ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
        );
    }

    #[test]
    fn relative_monthly_last_friday_and_second_weekday() {
        let last_friday = rule(
            "<t:RelativeMonthlyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Friday</t:DaysOfWeek><t:DayOfWeekIndex>Last</t:DayOfWeekIndex></t:RelativeMonthlyRecurrence>",
            NO_END,
        );
        assert_eq!(
            dates(&last_friday, "2026-03-31", 100),
            ["2026-01-30", "2026-02-27", "2026-03-27"]
        );
        let second_weekday = rule(
            "<t:RelativeMonthlyRecurrence><t:Interval>2</t:Interval><t:DaysOfWeek>Weekday</t:DaysOfWeek><t:DayOfWeekIndex>Second</t:DayOfWeekIndex></t:RelativeMonthlyRecurrence>",
            NO_END,
        );
        // Jan 2026: Thu 1, Fri 2 → second weekday is the 2nd; March: Mon 2, Tue 3 → the 3rd.
        assert_eq!(
            dates(&second_weekday, "2026-05-31", 100),
            ["2026-01-02", "2026-03-03", "2026-05-04"]
        );
    }

    #[test]
    fn yearly_patterns() {
        let absolute = rule(
            "<t:AbsoluteYearlyRecurrence><t:DayOfMonth>29</t:DayOfMonth><t:Month>February</t:Month></t:AbsoluteYearlyRecurrence>",
            NO_END,
        );
        assert_eq!(
            dates(&absolute, "2028-12-31", 100),
            ["2026-02-28", "2027-02-28", "2028-02-29"]
        );
        let relative = rule(
            "<t:RelativeYearlyRecurrence><t:DaysOfWeek>Thursday</t:DaysOfWeek><t:DayOfWeekIndex>Fourth</t:DayOfWeekIndex><t:Month>November</t:Month></t:RelativeYearlyRecurrence>",
            NO_END,
        );
        assert_eq!(
            dates(&relative, "2027-12-31", 100),
            ["2026-11-26", "2027-11-25"]
        );
    }

    #[test]
    fn ranges_end_by_date_or_count_and_index_lookup_follows_them() {
        let pattern = "<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence>";
        let by_date = rule(
            pattern,
            "<t:EndDateRecurrence><t:StartDate>2026-01-01</t:StartDate><t:EndDate>2026-01-03</t:EndDate></t:EndDateRecurrence>",
        );
        assert_eq!(
            dates(&by_date, "2027-01-01", 100),
            ["2026-01-01", "2026-01-02", "2026-01-03"]
        );
        let numbered = rule(
            pattern,
            "<t:NumberedRecurrence><t:StartDate>2026-01-01Z</t:StartDate><t:NumberOfOccurrences>2</t:NumberOfOccurrences></t:NumberedRecurrence>",
        );
        assert_eq!(
            dates(&numbered, "2027-01-01", 100),
            ["2026-01-01", "2026-01-02"]
        );
        let numbered = Recurrence::from_markup(&numbered).unwrap();
        assert_eq!(
            numbered.date_of(2).map(|d| d.to_string()).as_deref(),
            Some("2026-01-02")
        );
        assert_eq!(numbered.date_of(3), None);
        assert_eq!(numbered.date_of(0), None);
        let no_end = Recurrence::from_markup(&rule(pattern, NO_END)).unwrap();
        assert_eq!(
            no_end.date_of(366).map(|d| d.to_string()).as_deref(),
            Some("2027-01-01")
        );
        assert!(!no_end.has_end());
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            rule(
                "<t:DailyRecurrence><t:Interval>0</t:Interval></t:DailyRecurrence>",
                NO_END,
            ),
            rule(
                "<t:WeeklyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Someday</t:DaysOfWeek></t:WeeklyRecurrence>",
                NO_END,
            ),
            rule(
                "<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence>",
                "",
            ),
            rule("", NO_END),
        ] {
            assert!(Recurrence::from_markup(&bad).is_err(), "{bad}");
        }
    }
}
