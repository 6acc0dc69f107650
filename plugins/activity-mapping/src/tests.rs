//! Field tables, value translations and round-trip laws of the activity mapping, run natively.

use super::*;
use tandem_plugin_api::DateTime;
use time::{parse_iso, parse_siebel, utc};

fn at(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> DateTime {
    utc(year, month, day, hour, minute, 0).expect("valid date")
}

fn ctx(domain: &str) -> Context {
    Context {
        domain: domain.into(),
        user: "SADMIN".into(),
    }
}

/// A Siebel appointment as the Siebel connector delivers it: every value text, plus the
/// participants' addresses the engine adds.
fn siebel_appointment() -> Fields {
    let mut fields: Fields = [
        ("Type", "Meeting"),
        ("Display", DISPLAY_CALENDAR),
        ("Description", "Quarterly account review"),
        ("Comment", "Bring the Q4 numbers"),
        ("Planned", "12/01/2026 15:00:00"),
        ("Planned Completion", "12/01/2026 16:30:00"),
        ("Meeting Location", "Room 4"),
        ("Priority", "2-High"),
        ("Private", "N"),
    ]
    .into_iter()
    .collect();
    fields.set(
        "Attendee Emails",
        Value::text_list(["bob@example.com", "carol@example.com"]),
    );
    fields
}

fn siebel_task() -> Fields {
    [
        ("Type", "To Do"),
        ("Display", DISPLAY_TASKS),
        ("Description", "Send the renewal quote"),
        ("Comment", "Needs the new price list"),
        ("Planned", "12/02/2026 08:00:00"),
        ("Due", "12/03/2026 17:00:00"),
        ("Status", "In Progress"),
        ("Priority", "4-Low"),
        ("Percent Complete", "40"),
        ("Private", "Y"),
    ]
    .into_iter()
    .collect()
}

// ----- time -----

#[test]
fn siebel_dates_parse_as_utc_with_and_without_time() {
    assert_eq!(
        parse_siebel("12/01/2026 15:00:00"),
        Some(at(2026, 12, 1, 15, 0))
    );
    assert_eq!(
        parse_siebel("12/01/2026 15:00"),
        Some(at(2026, 12, 1, 15, 0))
    );
    assert_eq!(parse_siebel("12/01/2026"), Some(at(2026, 12, 1, 0, 0)));
    assert_eq!(parse_siebel("1/5/2026 9:05:00"), Some(at(2026, 1, 5, 9, 5)));
    assert_eq!(
        parse_siebel("02/29/2024 00:00:00"),
        Some(at(2024, 2, 29, 0, 0))
    );
    for bad in [
        "02/29/2026",
        "13/01/2026",
        "12/01/26",
        "12/01/2026 24:00:00",
        "2026-12-01",
        "x",
    ] {
        assert_eq!(parse_siebel(bad), None, "{bad}");
    }
}

#[test]
fn iso_dates_parse_with_zones_and_fractions() {
    assert_eq!(at(1970, 1, 1, 0, 0).seconds, 0);
    assert_eq!(at(2000, 3, 1, 0, 0).seconds, 951_868_800);
    assert_eq!(parse_iso("2026-12-01"), Some(at(2026, 12, 1, 0, 0)));
    assert_eq!(
        parse_iso("2026-12-01T15:00:00Z"),
        Some(at(2026, 12, 1, 15, 0))
    );
    assert_eq!(
        parse_iso("2026-12-01T17:00:00+02:00"),
        Some(at(2026, 12, 1, 15, 0))
    );
    assert_eq!(
        parse_iso("2026-12-01T10:00:00-05:00"),
        Some(at(2026, 12, 1, 15, 0))
    );
    let with_fraction = parse_iso("2026-12-01T15:00:00.25Z").expect("fraction");
    assert_eq!(with_fraction.seconds, at(2026, 12, 1, 15, 0).seconds);
    assert_eq!(with_fraction.nanoseconds, 250_000_000);
    assert_eq!(
        parse_iso("1969-12-31T23:59:59Z").map(|t| t.seconds),
        Some(-1)
    );
    for bad in [
        "2026-13-01",
        "2026-12-1",
        "2026-12-01T25:00Z",
        "12/01/2026",
        "2026-12-01T15:00:00.Z",
    ] {
        assert_eq!(parse_iso(bad), None, "{bad}");
    }
}

#[test]
fn an_unreadable_date_is_an_invalid_record_naming_the_field() {
    let mut s = siebel_appointment();
    s.set("Planned", "tomorrow");
    let err = siebel_to_exchange(Domain::Calendar, &s).expect_err("bad date");
    assert!(
        matches!(&err, PluginError::InvalidRecord(m) if m.contains("`Planned`") && m.contains("tomorrow")),
        "{err}"
    );
    let mut ex = siebel_to_exchange(Domain::Tasks, &siebel_task()).expect("maps");
    ex.set("DueDate", 42i64);
    assert!(matches!(
        exchange_to_siebel(Domain::Tasks, &ex),
        Err(PluginError::InvalidRecord(_))
    ));
}

// ----- value translations -----

#[test]
fn priority_translates_to_importance_and_back() {
    for (priority, importance) in [
        ("1-ASAP", "High"),
        ("2-High", "High"),
        ("3-Medium", "Normal"),
        ("4-Low", "Low"),
        (" 2-high ", "High"),
    ] {
        assert_eq!(
            priority_to_importance(Some(priority)),
            Ok(importance),
            "{priority}"
        );
    }
    assert_eq!(priority_to_importance(None), Ok("Normal"));
    assert_eq!(priority_to_importance(Some("")), Ok("Normal"));
    assert!(
        matches!(priority_to_importance(Some("5-Someday")), Err(PluginError::InvalidRecord(m)) if m.contains("5-Someday"))
    );

    for (importance, priority) in [
        ("High", "2-High"),
        ("Normal", "3-Medium"),
        ("Low", "4-Low"),
        ("high", "2-High"),
    ] {
        assert_eq!(
            importance_to_priority(Some(importance)),
            Ok(priority),
            "{importance}"
        );
    }
    assert_eq!(importance_to_priority(None), Ok("3-Medium"));
    assert!(matches!(
        importance_to_priority(Some("Urgent")),
        Err(PluginError::InvalidRecord(_))
    ));
}

#[test]
fn task_status_translates_both_ways() {
    for (siebel, ews) in [
        ("Not Started", "NotStarted"),
        ("Planned", "NotStarted"),
        ("Scheduled", "NotStarted"),
        ("Acknowledged", "NotStarted"),
        ("In Progress", "InProgress"),
        ("in progress", "InProgress"),
        ("Done", "Completed"),
        ("Completed", "Completed"),
        ("On Hold", "WaitingOnOthers"),
        ("Deferred", "Deferred"),
        ("Cancelled", "Deferred"),
        ("Declined", "Deferred"),
    ] {
        assert_eq!(task_status_to_exchange(Some(siebel)), Ok(ews), "{siebel}");
    }
    assert_eq!(task_status_to_exchange(None), Ok("NotStarted"));
    assert!(
        matches!(task_status_to_exchange(Some("Lost")), Err(PluginError::InvalidRecord(m)) if m.contains("Lost"))
    );

    for ews in [
        "NotStarted",
        "InProgress",
        "Completed",
        "WaitingOnOthers",
        "Deferred",
    ] {
        let siebel = task_status_to_siebel(Some(ews)).expect("every EWS status has a Siebel one");
        assert_eq!(
            task_status_to_exchange(Some(siebel)),
            Ok(ews),
            "{ews} round trip"
        );
    }
    assert_eq!(task_status_to_siebel(Some("Completed")), Ok("Done"));
    assert_eq!(task_status_to_siebel(Some("Deferred")), Ok("Cancelled"));
    assert_eq!(task_status_to_siebel(None), Ok("Not Started"));
    assert!(matches!(
        task_status_to_siebel(Some("Finished")),
        Err(PluginError::InvalidRecord(_))
    ));
}

#[test]
fn private_flag_translates_to_sensitivity_and_back() {
    for (flag, sensitivity) in [
        ("Y", "Private"),
        ("y", "Private"),
        ("N", "Normal"),
        ("", "Normal"),
    ] {
        let mut s = siebel_appointment();
        s.set("Private", flag);
        let ex = siebel_to_exchange(Domain::Calendar, &s).expect("maps");
        assert_eq!(
            ex.get_text("Sensitivity"),
            Some(sensitivity),
            "flag {flag:?}"
        );
    }
    let mut s = siebel_appointment();
    s.set("Private", true);
    assert_eq!(
        siebel_to_exchange(Domain::Calendar, &s)
            .expect("maps")
            .get_text("Sensitivity"),
        Some("Private")
    );

    for (sensitivity, flag) in [
        ("Private", "Y"),
        ("Confidential", "Y"),
        ("Personal", "Y"),
        ("Normal", "N"),
    ] {
        let mut ex = siebel_to_exchange(Domain::Tasks, &siebel_task()).expect("maps");
        ex.set("Sensitivity", sensitivity);
        let back = exchange_to_siebel(Domain::Tasks, &ex).expect("maps");
        assert_eq!(back.get_text("Private"), Some(flag), "{sensitivity}");
    }
    let mut ex = siebel_to_exchange(Domain::Tasks, &siebel_task()).expect("maps");
    ex.remove("Sensitivity");
    assert_eq!(
        exchange_to_siebel(Domain::Tasks, &ex)
            .expect("maps")
            .get_text("Private"),
        Some("N")
    );
}

#[test]
fn type_goes_to_the_first_category_and_back() {
    let ex = siebel_to_exchange(Domain::Calendar, &siebel_appointment()).expect("maps");
    assert_eq!(ex.get("Categories"), Some(&Value::text_list(["Meeting"])));
    let mut ex = ex;
    ex.set("Categories", Value::text_list(["", "Call", "Red"]));
    assert_eq!(
        exchange_to_siebel(Domain::Calendar, &ex)
            .expect("maps")
            .get_text("Type"),
        Some("Call")
    );
    ex.set("Categories", Value::Null);
    assert_eq!(
        exchange_to_siebel(Domain::Calendar, &ex)
            .expect("maps")
            .get("Type"),
        Some(&Value::Null)
    );
    let mut s = siebel_appointment();
    s.remove("Type");
    assert_eq!(
        siebel_to_exchange(Domain::Calendar, &s)
            .expect("maps")
            .get("Categories"),
        Some(&Value::Null)
    );
}

// ----- calendar -----

#[test]
fn appointment_maps_every_field_to_a_calendar_item() {
    let ex = siebel_to_exchange(Domain::Calendar, &siebel_appointment()).expect("maps");
    assert_eq!(ex.get_text("Subject"), Some("Quarterly account review"));
    assert_eq!(ex.get_text("Body"), Some("Bring the Q4 numbers"));
    assert_eq!(
        ex.get("Start"),
        Some(&Value::DateTime(at(2026, 12, 1, 15, 0)))
    );
    assert_eq!(
        ex.get("End"),
        Some(&Value::DateTime(at(2026, 12, 1, 16, 30)))
    );
    assert_eq!(ex.get_text("Location"), Some("Room 4"));
    assert_eq!(
        ex.get("RequiredAttendees"),
        Some(&Value::text_list(["bob@example.com", "carol@example.com"])),
        "the participants' addresses become the attendees"
    );
    assert_eq!(ex.get_text("Importance"), Some("High"));
    assert_eq!(ex.get_text("Sensitivity"), Some("Normal"));
    assert_eq!(ex.get("Categories"), Some(&Value::text_list(["Meeting"])));
    let names: Vec<&str> = ex.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "Body",
            "Categories",
            "End",
            "Importance",
            "Location",
            "RequiredAttendees",
            "Sensitivity",
            "Start",
            "Subject"
        ],
        "only CalendarItem fields the EWS connector knows"
    );
}

#[test]
fn calendar_item_maps_back_with_display_in_calendar() {
    let mut ex = Fields::new();
    ex.set("Subject", "Lunch with Acme");
    ex.set("Start", at(2026, 12, 5, 11, 0));
    ex.set("End", Value::text("2026-12-05T12:00:00Z"));
    ex.set("Location", "Cafe");
    ex.set("Importance", "Low");
    ex.set("Sensitivity", "Private");
    ex.set("IsAllDayEvent", false);
    let s = exchange_to_siebel(Domain::Calendar, &ex).expect("maps");
    assert_eq!(s.get_text("Display"), Some(DISPLAY_CALENDAR));
    assert_eq!(s.get_text("Description"), Some("Lunch with Acme"));
    assert_eq!(s.get("Comment"), Some(&Value::Null));
    assert_eq!(
        s.get("Planned"),
        Some(&Value::DateTime(at(2026, 12, 5, 11, 0)))
    );
    assert_eq!(
        s.get("Planned Completion"),
        Some(&Value::DateTime(at(2026, 12, 5, 12, 0)))
    );
    assert_eq!(s.get_text("Meeting Location"), Some("Cafe"));
    assert_eq!(s.get_text("Priority"), Some("4-Low"));
    assert_eq!(s.get_text("Private"), Some("Y"));
    assert!(!s.contains("Due") && !s.contains("Status") && !s.contains("IsAllDayEvent"));
}

#[test]
fn an_appointment_without_both_dates_or_ending_before_it_starts_is_invalid() {
    for missing in ["Planned", "Planned Completion"] {
        let mut s = siebel_appointment();
        s.set(missing, "");
        let err = siebel_to_exchange(Domain::Calendar, &s).expect_err("needs both dates");
        assert!(
            matches!(&err, PluginError::InvalidRecord(m) if m.contains("Planned Completion")),
            "{err}"
        );
    }
    let mut s = siebel_appointment();
    s.set("Planned Completion", "12/01/2026 14:00:00");
    assert!(
        matches!(siebel_to_exchange(Domain::Calendar, &s), Err(PluginError::InvalidRecord(m)) if m.contains("before"))
    );
}

// ----- tasks -----

#[test]
fn task_maps_every_field_to_an_exchange_task() {
    let ex = siebel_to_exchange(Domain::Tasks, &siebel_task()).expect("maps");
    assert_eq!(ex.get_text("Subject"), Some("Send the renewal quote"));
    assert_eq!(ex.get_text("Body"), Some("Needs the new price list"));
    assert_eq!(
        ex.get("StartDate"),
        Some(&Value::DateTime(at(2026, 12, 2, 8, 0)))
    );
    assert_eq!(
        ex.get("DueDate"),
        Some(&Value::DateTime(at(2026, 12, 3, 17, 0)))
    );
    assert_eq!(ex.get("CompleteDate"), Some(&Value::Null));
    assert_eq!(ex.get_text("Status"), Some("InProgress"));
    assert_eq!(ex.get("PercentComplete"), Some(&Value::Number(40.0)));
    assert_eq!(ex.get_text("Importance"), Some("Low"));
    assert_eq!(ex.get_text("Sensitivity"), Some("Private"));
    let names: Vec<&str> = ex.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "Body",
            "Categories",
            "CompleteDate",
            "DueDate",
            "Importance",
            "PercentComplete",
            "Sensitivity",
            "StartDate",
            "Status",
            "Subject"
        ],
        "only Task fields the EWS connector knows"
    );
}

#[test]
fn a_done_task_is_completed_at_100_percent_with_its_done_date() {
    let mut s = siebel_task();
    s.set("Status", "Done");
    s.set("Done", "12/03/2026 12:00:00");
    s.set("Percent Complete", "60");
    let ex = siebel_to_exchange(Domain::Tasks, &s).expect("maps");
    assert_eq!(ex.get_text("Status"), Some("Completed"));
    assert_eq!(ex.get("PercentComplete"), Some(&Value::Number(100.0)));
    assert_eq!(
        ex.get("CompleteDate"),
        Some(&Value::DateTime(at(2026, 12, 3, 12, 0)))
    );
    let back = exchange_to_siebel(Domain::Tasks, &ex).expect("maps");
    assert_eq!(back.get_text("Status"), Some("Done"));
    assert_eq!(back.get("Percent Complete"), Some(&Value::Integer(100)));
    assert_eq!(
        back.get("Done"),
        Some(&Value::DateTime(at(2026, 12, 3, 12, 0)))
    );
}

#[test]
fn percent_complete_must_be_a_percentage() {
    for bad in ["120", "-1", "half"] {
        let mut s = siebel_task();
        s.set("Percent Complete", bad);
        assert!(
            matches!(siebel_to_exchange(Domain::Tasks, &s), Err(PluginError::InvalidRecord(m)) if m.contains("Percent Complete")),
            "{bad}"
        );
    }
    let mut s = siebel_task();
    s.set("Percent Complete", "");
    s.set("Status", "");
    let ex = siebel_to_exchange(Domain::Tasks, &s).expect("blank is 0 and Not Started");
    assert_eq!(ex.get("PercentComplete"), Some(&Value::Number(0.0)));
    assert_eq!(ex.get_text("Status"), Some("NotStarted"));
    let mut ex = ex;
    ex.set("PercentComplete", 12.5);
    assert_eq!(
        exchange_to_siebel(Domain::Tasks, &ex)
            .expect("maps")
            .get("Percent Complete"),
        Some(&Value::Number(12.5))
    );
}

#[test]
fn exchange_task_maps_back_with_display_in_to_do() {
    let mut ex = Fields::new();
    ex.set("Subject", "Call back");
    ex.set("DueDate", at(2026, 12, 9, 0, 0));
    ex.set("Status", "WaitingOnOthers");
    ex.set("PercentComplete", 25.0);
    ex.set("Importance", "High");
    ex.set("Sensitivity", "Normal");
    ex.set("Categories", Value::text_list(["Call"]));
    let s = exchange_to_siebel(Domain::Tasks, &ex).expect("maps");
    assert_eq!(s.get_text("Display"), Some(DISPLAY_TASKS));
    assert_eq!(s.get_text("Description"), Some("Call back"));
    assert_eq!(s.get("Due"), Some(&Value::DateTime(at(2026, 12, 9, 0, 0))));
    assert_eq!(s.get("Planned"), Some(&Value::Null));
    assert_eq!(s.get("Done"), Some(&Value::Null));
    assert_eq!(s.get_text("Status"), Some("On Hold"), "SSSE: On Hold ⇄ Waiting on someone else");
    assert_eq!(s.get("Percent Complete"), Some(&Value::Integer(25)));
    assert_eq!(s.get_text("Priority"), Some("2-High"));
    assert_eq!(s.get_text("Private"), Some("N"));
    assert_eq!(s.get_text("Type"), Some("Call"));
    assert!(!s.contains("Planned Completion") && !s.contains("Meeting Location"));
}

#[test]
fn attendees_map_to_participant_addresses_and_blank_ones_are_dropped() {
    let mut ex = Fields::new();
    ex.set("Subject", "Review");
    ex.set("Start", at(2026, 12, 5, 11, 0));
    ex.set("End", at(2026, 12, 5, 12, 0));
    ex.set(
        "RequiredAttendees",
        Value::text_list(["bob@example.com", " ", "dan@example.com"]),
    );
    let s = exchange_to_siebel(Domain::Calendar, &ex).expect("maps");
    assert_eq!(
        s.get("Attendee Emails"),
        Some(&Value::text_list(["bob@example.com", "dan@example.com"]))
    );
    ex.set("RequiredAttendees", Value::Null);
    let s = exchange_to_siebel(Domain::Calendar, &ex).expect("maps");
    assert_eq!(
        s.get("Attendee Emails"),
        Some(&Value::Null),
        "no attendees clears the participants"
    );
    let task = exchange_to_siebel(Domain::Tasks, &Fields::new()).expect("maps");
    assert!(!task.contains("Attendee Emails"), "tasks have no attendees");
}

// ----- round trips -----

#[test]
fn round_trip_siebel_exchange_siebel_keeps_every_mapped_value() {
    for (domain, record) in [
        (Domain::Calendar, siebel_appointment()),
        (Domain::Tasks, siebel_task()),
    ] {
        let back = exchange_to_siebel(domain, &siebel_to_exchange(domain, &record).expect("maps"))
            .expect("maps");
        for (name, value) in back.iter() {
            let original = record.get(name).cloned().unwrap_or_default();
            let same = match (value, &original) {
                // Siebel text comes back typed: dates as date-times, percentages as numbers.
                (Value::DateTime(t), Value::Text(text)) => parse_siebel(text) == Some(*t),
                (Value::Integer(n), Value::Text(text)) => text.parse::<i64>() == Ok(*n),
                _ => *value == original,
            };
            assert!(
                same,
                "{domain:?} {name}: {original:?} came back as {value:?}"
            );
        }
    }
}

#[test]
fn round_trip_exchange_siebel_exchange_is_identity_on_mapped_fields() {
    for (domain, record) in [
        (Domain::Calendar, siebel_appointment()),
        (Domain::Tasks, siebel_task()),
    ] {
        let ex = siebel_to_exchange(domain, &record).expect("maps");
        let again = siebel_to_exchange(domain, &exchange_to_siebel(domain, &ex).expect("maps"))
            .expect("maps");
        assert_eq!(again, ex, "{domain:?}");
    }
}

// ----- the plugin -----

#[test]
fn mapper_dispatches_on_the_domain_and_refuses_others() {
    let ex =
        ActivityMapping::to_exchange(&ctx("calendar"), siebel_appointment()).expect("calendar");
    assert!(ex.contains("Start") && !ex.contains("DueDate"));
    let ex = ActivityMapping::to_exchange(&ctx("tasks"), siebel_task()).expect("tasks");
    assert!(ex.contains("DueDate") && !ex.contains("Start"));
    let s = ActivityMapping::to_siebel(&ctx("tasks"), ex).expect("tasks");
    assert_eq!(s.get_text("Display"), Some(DISPLAY_TASKS));
    for domain in ["contacts", "employees", ""] {
        let err =
            ActivityMapping::to_exchange(&ctx(domain), siebel_task()).expect_err("not served");
        assert!(
            matches!(&err, PluginError::Other(m) if m.contains("calendar and tasks")),
            "{err}"
        );
        assert!(ActivityMapping::to_siebel(&ctx(domain), Fields::new()).is_err());
    }
}
