//! Every rule of the default filter on both sides, and its configuration, run natively.

use super::*;
use activity_mapping::time::utc;

fn record(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(k, v)| (*k, Value::text(*v))).collect()
}

fn settings(start: Option<&str>, private: Option<&str>, categories: Option<&str>) -> Settings {
    Settings::from_config(start, private, categories).expect("valid configuration")
}

fn defaults() -> Settings {
    settings(None, None, None)
}

fn siebel_appointment(planned: &str, completion: &str) -> Fields {
    record(&[
        ("Display", "Calendar and Activities"),
        ("Description", "Review"),
        ("Planned", planned),
        ("Planned Completion", completion),
    ])
}

fn siebel_task(due: &str) -> Fields {
    record(&[
        ("Display", "To Do and Activities"),
        ("Description", "Quote"),
        ("Due", due),
    ])
}

fn exchange_appointment(start: DateTime, end: DateTime) -> Fields {
    let mut item = record(&[("Subject", "Review"), ("Sensitivity", "Normal")]);
    item.set("Start", start);
    item.set("End", end);
    item
}

fn exchange_task(due: DateTime) -> Fields {
    let mut item = record(&[("Subject", "Quote"), ("Sensitivity", "Normal")]);
    item.set("DueDate", due);
    item
}

fn day(year: i64, month: u32, day: u32) -> DateTime {
    utc(year, month, day, 0, 0, 0).expect("valid date")
}

fn why(settings: &Settings, domain: &str, side: Side, record: &Fields) -> Option<Exclusion> {
    exclusion(settings, domain, side, record).expect("no error")
}

// ----- configuration -----

#[test]
fn configuration_defaults_sync_everything() {
    let s = defaults();
    assert_eq!(
        s,
        Settings {
            extract_start: None,
            sync_private: true,
            exclude_categories: vec![]
        }
    );
    assert_eq!(
        settings(Some(" "), Some(""), Some(" , ")),
        s,
        "blank values are defaults"
    );
}

#[test]
fn configuration_values_are_read() {
    let s = settings(
        Some("2026-01-01"),
        Some("False"),
        Some("Personal, Holiday ,,"),
    );
    assert_eq!(s.extract_start, Some(day(2026, 1, 1)));
    assert!(!s.sync_private);
    assert_eq!(s.exclude_categories, ["personal", "holiday"]);
    assert_eq!(
        settings(Some("2026-01-01T12:00:00Z"), None, None).extract_start,
        utc(2026, 1, 1, 12, 0, 0)
    );
    for (flag, value) in [
        ("true", true),
        ("YES", true),
        ("1", true),
        ("no", false),
        ("0", false),
        ("N", false),
    ] {
        assert_eq!(
            settings(None, Some(flag), None).sync_private,
            value,
            "{flag}"
        );
    }
}

#[test]
fn unreadable_configuration_is_an_error_naming_the_key() {
    let err = Settings::from_config(Some("01/01/2026"), None, None).expect_err("not ISO");
    assert!(
        matches!(&err, PluginError::Other(m) if m.contains("extract_start_date") && m.contains("01/01/2026")),
        "{err}"
    );
    let err = Settings::from_config(None, Some("maybe"), None).expect_err("not a boolean");
    assert!(
        matches!(&err, PluginError::Other(m) if m.contains("sync_private")),
        "{err}"
    );
}

// ----- Display In routing -----

#[test]
fn display_in_routes_activities_to_one_domain() {
    let s = defaults();
    let appointment = siebel_appointment("12/01/2026 15:00:00", "12/01/2026 16:00:00");
    assert_eq!(why(&s, "calendar", Side::Siebel, &appointment), None);
    assert!(matches!(
        why(&s, "tasks", Side::Siebel, &appointment),
        Some(Exclusion::DisplayIn {
            domain: "tasks",
            ..
        })
    ));
    let task = siebel_task("12/03/2026 17:00:00");
    assert_eq!(why(&s, "tasks", Side::Siebel, &task), None);
    assert!(matches!(
        why(&s, "calendar", Side::Siebel, &task),
        Some(Exclusion::DisplayIn {
            domain: "calendar",
            ..
        })
    ));

    for display in ["Activities Only", "", "calendar and activities"] {
        let mut other = appointment.clone();
        other.set("Display", display);
        for domain in ["calendar", "tasks"] {
            assert!(
                !include(&s, domain, Side::Siebel, &other).expect("no error"),
                "{display:?} in {domain}"
            );
        }
    }
    let mut no_display = task.clone();
    no_display.remove("Display");
    assert_eq!(
        why(&s, "tasks", Side::Siebel, &no_display),
        Some(Exclusion::DisplayIn {
            display: None,
            domain: "tasks"
        })
    );
    // Exchange items have no Display In: their folder is their domain.
    assert_eq!(
        why(
            &s,
            "tasks",
            Side::Exchange,
            &exchange_task(day(2026, 12, 3))
        ),
        None
    );
}

#[test]
fn an_appointment_needs_both_planned_dates() {
    let s = defaults();
    for (planned, completion) in [("", "12/01/2026 16:00:00"), ("12/01/2026 15:00:00", "")] {
        let appointment = siebel_appointment(planned, completion);
        assert_eq!(
            why(&s, "calendar", Side::Siebel, &appointment),
            Some(Exclusion::MissingCalendarDates)
        );
    }
    let unreadable = siebel_appointment("soon", "12/01/2026 16:00:00");
    assert!(matches!(
        exclusion(&s, "calendar", Side::Siebel, &unreadable),
        Err(PluginError::InvalidRecord(_))
    ));
}

// ----- personal-contact routing -----

#[test]
fn personal_and_business_contacts_go_to_their_own_domain() {
    let s = defaults();
    let personal = record(&[("Last Name", "Hopper"), ("Personal Contact", "Y")]);
    let business = record(&[("Last Name", "Lee"), ("Personal Contact", "N")]);
    assert_eq!(why(&s, "personal-contacts", Side::Siebel, &personal), None);
    assert_eq!(
        why(&s, "contacts", Side::Siebel, &personal),
        Some(Exclusion::PersonalContact)
    );
    assert_eq!(why(&s, "contacts", Side::Siebel, &business), None);
    assert_eq!(
        why(&s, "personal-contacts", Side::Siebel, &business),
        Some(Exclusion::BusinessContact)
    );

    let private_item = record(&[("Surname", "Hopper"), ("Sensitivity", "Private")]);
    let normal_item = record(&[("Surname", "Lee"), ("Sensitivity", "Normal")]);
    assert_eq!(
        why(&s, "personal-contacts", Side::Exchange, &private_item),
        None
    );
    assert_eq!(
        why(&s, "contacts", Side::Exchange, &private_item),
        Some(Exclusion::PersonalContact)
    );
    assert_eq!(why(&s, "contacts", Side::Exchange, &normal_item), None);
    assert_eq!(
        why(&s, "personal-contacts", Side::Exchange, &normal_item),
        Some(Exclusion::BusinessContact)
    );
    // Employees are neither: no routing.
    assert_eq!(
        why(
            &s,
            "employees",
            Side::Siebel,
            &record(&[("Last Name", "Lovelace")])
        ),
        None
    );
}

// ----- private records -----

#[test]
fn private_records_are_synced_by_default_and_excluded_when_switched_off() {
    let on = defaults();
    let off = settings(None, Some("false"), None);
    let mut private_task = siebel_task("12/03/2026 17:00:00");
    private_task.set("Private", "Y");
    let mut private_item = exchange_task(day(2026, 12, 3));
    private_item.set("Sensitivity", "Private");

    assert_eq!(why(&on, "tasks", Side::Siebel, &private_task), None);
    assert_eq!(why(&on, "tasks", Side::Exchange, &private_item), None);
    assert_eq!(
        why(&off, "tasks", Side::Siebel, &private_task),
        Some(Exclusion::Private)
    );
    assert_eq!(
        why(&off, "tasks", Side::Exchange, &private_item),
        Some(Exclusion::Private)
    );
    for sensitivity in ["Confidential", "Personal"] {
        private_item.set("Sensitivity", sensitivity);
        assert_eq!(
            why(&off, "tasks", Side::Exchange, &private_item),
            Some(Exclusion::Private),
            "{sensitivity}"
        );
    }

    // Records that are not private are untouched by the switch.
    assert_eq!(
        why(
            &off,
            "tasks",
            Side::Siebel,
            &siebel_task("12/03/2026 17:00:00")
        ),
        None
    );
    let mut flagged_no = siebel_task("12/03/2026 17:00:00");
    flagged_no.set("Private", "N");
    assert_eq!(why(&off, "tasks", Side::Siebel, &flagged_no), None);
    assert_eq!(
        why(
            &off,
            "calendar",
            Side::Exchange,
            &exchange_appointment(day(2026, 12, 1), day(2026, 12, 2))
        ),
        None
    );

    // A personal contact is private: switched off, personal-contacts syncs nothing.
    let personal = record(&[("Last Name", "Hopper"), ("Personal Contact", "Y")]);
    assert_eq!(
        why(&off, "personal-contacts", Side::Siebel, &personal),
        Some(Exclusion::Private)
    );
}

// ----- categories -----

#[test]
fn an_exchange_item_with_an_excluded_category_is_left_out() {
    let s = settings(None, None, Some("Personal,Holiday"));
    let mut item = exchange_appointment(day(2026, 12, 1), day(2026, 12, 2));
    assert_eq!(
        why(&s, "calendar", Side::Exchange, &item),
        None,
        "no categories"
    );
    item.set("Categories", Value::text_list(["Meeting", "holiday"]));
    assert_eq!(
        why(&s, "calendar", Side::Exchange, &item),
        Some(Exclusion::Category("holiday".into()))
    );
    item.set("Categories", Value::text("Personal"));
    assert_eq!(
        why(&s, "calendar", Side::Exchange, &item),
        Some(Exclusion::Category("Personal".into()))
    );
    item.set("Categories", Value::text_list(["Meeting", "Holidays"]));
    assert_eq!(
        why(&s, "calendar", Side::Exchange, &item),
        None,
        "whole names only"
    );

    let mut contact = record(&[("Surname", "Lee"), ("Sensitivity", "Normal")]);
    contact.set("Categories", Value::text_list(["Holiday"]));
    assert_eq!(
        why(&s, "contacts", Side::Exchange, &contact),
        Some(Exclusion::Category("Holiday".into()))
    );
    // Siebel records have no Exchange categories; a Siebel Type is not a category.
    let mut task = siebel_task("12/03/2026 17:00:00");
    task.set("Type", "Holiday");
    task.set("Categories", "Holiday");
    assert_eq!(why(&s, "tasks", Side::Siebel, &task), None);
}

// ----- ExtractStartDate window -----

#[test]
fn the_window_excludes_appointments_that_end_before_the_start_date() {
    let s = settings(Some("2026-12-01"), None, None);
    let before = siebel_appointment("11/30/2026 09:00:00", "11/30/2026 10:00:00");
    assert_eq!(
        why(&s, "calendar", Side::Siebel, &before),
        Some(Exclusion::BeforeExtractStart {
            field: "Planned Completion"
        })
    );
    let spanning = siebel_appointment("11/30/2026 23:00:00", "12/01/2026 01:00:00");
    assert_eq!(
        why(&s, "calendar", Side::Siebel, &spanning),
        None,
        "ends after the start date"
    );
    assert_eq!(
        why(
            &s,
            "calendar",
            Side::Siebel,
            &siebel_appointment("12/01/2026 00:00:00", "12/01/2026 01:00:00")
        ),
        None
    );

    let old = exchange_appointment(
        utc(2026, 11, 30, 9, 0, 0).expect("date"),
        utc(2026, 11, 30, 10, 0, 0).expect("date"),
    );
    assert_eq!(
        why(&s, "calendar", Side::Exchange, &old),
        Some(Exclusion::BeforeExtractStart { field: "End" })
    );
    let mut start_only = old.clone();
    start_only.remove("End");
    assert_eq!(
        why(&s, "calendar", Side::Exchange, &start_only),
        Some(Exclusion::BeforeExtractStart { field: "Start" })
    );
    assert_eq!(
        why(
            &s,
            "calendar",
            Side::Exchange,
            &exchange_appointment(day(2026, 12, 1), day(2026, 12, 2))
        ),
        None
    );
}

#[test]
fn the_window_excludes_tasks_due_before_the_start_date() {
    let s = settings(Some("2026-12-01"), None, None);
    assert_eq!(
        why(
            &s,
            "tasks",
            Side::Siebel,
            &siebel_task("11/30/2026 17:00:00")
        ),
        Some(Exclusion::BeforeExtractStart { field: "Due" })
    );
    assert_eq!(
        why(
            &s,
            "tasks",
            Side::Siebel,
            &siebel_task("12/01/2026 00:00:00")
        ),
        None
    );
    assert_eq!(
        why(&s, "tasks", Side::Siebel, &siebel_task("")),
        None,
        "no due date: kept"
    );
    assert_eq!(
        why(
            &s,
            "tasks",
            Side::Exchange,
            &exchange_task(day(2026, 11, 2))
        ),
        Some(Exclusion::BeforeExtractStart { field: "DueDate" })
    );
    assert_eq!(
        why(&s, "tasks", Side::Exchange, &exchange_task(day(2027, 1, 2))),
        None
    );
    let mut text_due = exchange_task(day(2027, 1, 2));
    text_due.set("DueDate", "2026-11-02T00:00:00Z");
    assert_eq!(
        why(&s, "tasks", Side::Exchange, &text_due),
        Some(Exclusion::BeforeExtractStart { field: "DueDate" })
    );
    text_due.set("DueDate", "someday");
    assert!(
        matches!(exclusion(&s, "tasks", Side::Exchange, &text_due), Err(PluginError::InvalidRecord(m)) if m.contains("DueDate"))
    );

    // Without a window nothing is too old; contacts never have one.
    assert_eq!(
        why(
            &defaults(),
            "tasks",
            Side::Siebel,
            &siebel_task("01/01/2001 00:00:00")
        ),
        None
    );
    let contact = record(&[("Surname", "Lee"), ("DueDate", "2001-01-01")]);
    assert_eq!(why(&s, "contacts", Side::Exchange, &contact), None);
}

#[test]
fn exclusions_explain_themselves() {
    let display = Exclusion::DisplayIn {
        display: Some("Activities Only".into()),
        domain: "calendar",
    };
    assert!(display.to_string().contains("Activities Only"));
    assert!(Exclusion::Private.to_string().contains("sync_private"));
    assert!(
        Exclusion::BeforeExtractStart { field: "Due" }
            .to_string()
            .contains("Due")
    );
}

#[test]
fn the_plugin_with_no_configuration_keeps_eligible_records() {
    // Natively the SDK's config() answers None: defaults.
    let ctx = Context {
        domain: "calendar".into(),
        user: "SADMIN".into(),
    };
    let appointment = siebel_appointment("12/01/2026 15:00:00", "12/01/2026 16:00:00");
    assert_eq!(
        DefaultFilters::include(&ctx, Side::Siebel, &appointment),
        Ok(true)
    );
    let task = siebel_task("12/03/2026 17:00:00");
    assert_eq!(
        DefaultFilters::include(&ctx, Side::Siebel, &task),
        Ok(false)
    );
}
