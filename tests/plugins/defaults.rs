//! The default mapping and filter plugins as the host runs them: each embedded component is
//! loaded through the real wasm runtime (default limits, a configuration map) and fed records
//! shaped as the connectors deliver them (Siebel values as text, Exchange dates typed).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use tandem_host::plugin::{
    CallContext, FilterInstance, FilterPlugin, Limits, MapperInstance, MapperPlugin, PluginCallError,
    PluginError, PluginRuntime, Side, builtin,
};
use tandem_host::record::{Fields, Value};
use tandem_sim::ews::wire::{ItemKind, field_slot};

/// One runtime for the file: each component is compiled once, not once per test.
fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| PluginRuntime::new(None).expect("plugin runtime"))
}

fn mapper(name: &'static str, wasm: &'static [u8]) -> MapperInstance {
    static LOADED: Mutex<BTreeMap<&str, MapperPlugin>> = Mutex::new(BTreeMap::new());
    let plugin = LOADED
        .lock()
        .expect("no test panicked while loading")
        .entry(name)
        .or_insert_with(|| {
            runtime()
                .load_mapper(name, wasm, Limits::default(), BTreeMap::new())
                .expect("the default mapping loads")
        })
        .clone();
    plugin.instantiate().expect("instantiates")
}

/// The default filter loaded with this package configuration.
fn filter_plugin(config: &[(&str, &str)]) -> FilterPlugin {
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    runtime()
        .load_filter(
            "default-filters",
            builtin::DEFAULT_FILTERS,
            Limits::default(),
            config,
        )
        .expect("the default filter loads")
}

fn filter(config: &[(&str, &str)]) -> FilterInstance {
    filter_plugin(config).instantiate().expect("instantiates")
}

fn ctx(domain: &str) -> CallContext {
    CallContext {
        domain: domain.into(),
        user: "JSMITH".into(),
    }
}

fn text_record(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
        .collect()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid date")
}

fn text<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(Value::as_text)
}

fn texts(items: &[&str]) -> Value {
    Value::List(items.iter().map(|t| Value::Text(t.to_string())).collect())
}

/// Every field a mapping sends to Exchange must be one the EWS connector can write.
fn assert_known_to_ews(kind: ItemKind, fields: &Fields) {
    for name in fields.keys() {
        assert!(
            field_slot(kind, name).is_some(),
            "{name} is not a {kind:?} field the EWS connector writes"
        );
    }
}

fn rejected_as(result: Result<Fields, PluginCallError>) -> PluginError {
    match result {
        Err(PluginCallError::Plugin { error, .. }) => error,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[test]
fn activity_mapping_maps_an_appointment_both_ways_through_wasm() {
    let mut plugin = mapper("activity-mapping", builtin::ACTIVITY_MAPPING);
    let siebel = text_record(&[
        ("Type", "Meeting"),
        ("Display", "Calendar and Activities"),
        ("Description", "Quarterly account review"),
        ("Comment", "Bring the Q4 numbers"),
        ("Planned", "12/01/2026 15:00:00"),
        ("Planned Completion", "12/01/2026 16:30:00"),
        ("Meeting Location", "Room 4"),
        ("Priority", "1-ASAP"),
        ("Private", "Y"),
    ]);
    let ex = plugin.to_exchange(&ctx("calendar"), &siebel).expect("maps");
    assert_known_to_ews(ItemKind::CalendarItem, &ex);
    assert_eq!(text(&ex, "Subject"), Some("Quarterly account review"));
    assert_eq!(text(&ex, "Body"), Some("Bring the Q4 numbers"));
    assert_eq!(
        ex.get("Start"),
        Some(&Value::DateTime(utc(2026, 12, 1, 15, 0)))
    );
    assert_eq!(
        ex.get("End"),
        Some(&Value::DateTime(utc(2026, 12, 1, 16, 30)))
    );
    assert_eq!(text(&ex, "Location"), Some("Room 4"));
    assert_eq!(text(&ex, "Importance"), Some("High"));
    assert_eq!(text(&ex, "Sensitivity"), Some("Private"));
    assert_eq!(ex.get("Categories"), Some(&texts(&["Meeting"])));

    let back = plugin.to_siebel(&ctx("calendar"), &ex).expect("maps back");
    assert_eq!(text(&back, "Display"), Some("Calendar and Activities"));
    assert_eq!(text(&back, "Description"), Some("Quarterly account review"));
    assert_eq!(
        back.get("Planned"),
        Some(&Value::DateTime(utc(2026, 12, 1, 15, 0)))
    );
    assert_eq!(
        back.get("Planned Completion"),
        Some(&Value::DateTime(utc(2026, 12, 1, 16, 30)))
    );
    assert_eq!(
        text(&back, "Priority"),
        Some("2-High"),
        "High comes back as 2-High"
    );
    assert_eq!(text(&back, "Private"), Some("Y"));
    assert_eq!(text(&back, "Type"), Some("Meeting"));
    // The Exchange form is a fixed point: mapping it there and back changes nothing.
    assert_eq!(
        plugin.to_exchange(&ctx("calendar"), &back).expect("maps"),
        ex
    );
}

#[test]
fn activity_mapping_translates_task_status_and_priority_through_wasm() {
    let mut plugin = mapper("activity-mapping", builtin::ACTIVITY_MAPPING);
    for (priority, importance, back) in [
        ("1-ASAP", "High", "2-High"),
        ("2-High", "High", "2-High"),
        ("3-Medium", "Normal", "3-Medium"),
        ("4-Low", "Low", "4-Low"),
    ] {
        let siebel = text_record(&[
            ("Display", "To Do and Activities"),
            ("Description", "Send the renewal quote"),
            ("Due", "12/03/2026 17:00:00"),
            ("Status", "In Progress"),
            ("Percent Complete", "40"),
            ("Priority", priority),
        ]);
        let ex = plugin.to_exchange(&ctx("tasks"), &siebel).expect("maps");
        assert_known_to_ews(ItemKind::Task, &ex);
        assert_eq!(text(&ex, "Importance"), Some(importance), "{priority}");
        assert_eq!(
            ex.get("DueDate"),
            Some(&Value::DateTime(utc(2026, 12, 3, 17, 0)))
        );
        assert_eq!(text(&ex, "Status"), Some("InProgress"));
        assert_eq!(ex.get("PercentComplete"), Some(&Value::Number(40.0)));
        assert_eq!(text(&ex, "Sensitivity"), Some("Normal"));
        let siebel_again = plugin.to_siebel(&ctx("tasks"), &ex).expect("maps back");
        assert_eq!(text(&siebel_again, "Priority"), Some(back), "{importance}");
        assert_eq!(text(&siebel_again, "Status"), Some("In Progress"));
        assert_eq!(text(&siebel_again, "Display"), Some("To Do and Activities"));
        assert_eq!(
            siebel_again.get("Percent Complete"),
            Some(&Value::Integer(40))
        );
    }

    let mut done = Fields::new();
    done.insert("Subject".into(), "Closed deal".into());
    done.insert("Status".into(), "Completed".into());
    done.insert("PercentComplete".into(), Value::Number(100.0));
    done.insert(
        "CompleteDate".into(),
        Value::DateTime(utc(2026, 12, 4, 9, 0)),
    );
    done.insert("Importance".into(), "Normal".into());
    let siebel = plugin.to_siebel(&ctx("tasks"), &done).expect("maps");
    assert_eq!(text(&siebel, "Status"), Some("Done"));
    assert_eq!(
        siebel.get("Done"),
        Some(&Value::DateTime(utc(2026, 12, 4, 9, 0)))
    );
    assert_eq!(text(&siebel, "Priority"), Some("3-Medium"));
}

#[test]
fn activity_mapping_refuses_bad_records_and_other_domains_through_wasm() {
    let mut plugin = mapper("activity-mapping", builtin::ACTIVITY_MAPPING);
    let bad_priority = text_record(&[("Display", "To Do and Activities"), ("Priority", "9-Never")]);
    let error = rejected_as(plugin.to_exchange(&ctx("tasks"), &bad_priority));
    assert!(
        matches!(&error, PluginError::InvalidRecord(m) if m.contains("9-Never")),
        "{error}"
    );

    let no_end = text_record(&[
        ("Display", "Calendar and Activities"),
        ("Planned", "12/01/2026 15:00:00"),
    ]);
    let error = rejected_as(plugin.to_exchange(&ctx("calendar"), &no_end));
    assert!(
        matches!(&error, PluginError::InvalidRecord(m) if m.contains("Planned Completion")),
        "{error}"
    );

    let error = rejected_as(plugin.to_exchange(&ctx("contacts"), &bad_priority));
    assert!(
        matches!(&error, PluginError::Other(m) if m.contains("contacts")),
        "{error}"
    );
    // A plugin error keeps the instance: the next record maps.
    let ok = text_record(&[
        ("Display", "To Do and Activities"),
        ("Description", "Still works"),
    ]);
    assert_eq!(
        text(
            &plugin.to_exchange(&ctx("tasks"), &ok).expect("maps"),
            "Subject"
        ),
        Some("Still works")
    );
}

#[test]
fn personal_contact_mapping_marks_private_and_personal_through_wasm() {
    let mut plugin = mapper(
        "personal-contact-mapping",
        builtin::PERSONAL_CONTACT_MAPPING,
    );
    let siebel = text_record(&[
        ("First Name", "Grace"),
        ("Last Name", "Hopper"),
        ("Email Address", "grace@home.example"),
        ("Home Phone #", "+1 555 0199"),
        ("Personal Contact", "Y"),
    ]);
    let ex = plugin
        .to_exchange(&ctx("personal-contacts"), &siebel)
        .expect("maps");
    assert_known_to_ews(ItemKind::Contact, &ex);
    assert_eq!(text(&ex, "Sensitivity"), Some("Private"));
    assert_eq!(text(&ex, "GivenName"), Some("Grace"));
    assert_eq!(text(&ex, "HomePhone"), Some("+1 555 0199"));
    assert_eq!(text(&ex, "FileAs"), Some("Hopper, Grace"));
    assert!(!ex.contains_key("Categories"));

    let back = plugin
        .to_siebel(&ctx("personal-contacts"), &ex)
        .expect("maps back");
    assert_eq!(text(&back, "Personal Contact"), Some("Y"));
    assert_eq!(text(&back, "Email Address"), Some("grace@home.example"));
    assert_eq!(
        plugin
            .to_exchange(&ctx("personal-contacts"), &back)
            .expect("maps"),
        ex
    );

    let mut business = ex.clone();
    business.insert("Sensitivity".into(), "Normal".into());
    let error = rejected_as(plugin.to_siebel(&ctx("personal-contacts"), &business));
    assert!(
        matches!(&error, PluginError::InvalidRecord(m) if m.contains("business contact")),
        "{error}"
    );
}

#[test]
fn employee_mapping_exports_with_the_employee_category_and_maps_nothing_back() {
    let mut plugin = mapper("employee-mapping", builtin::EMPLOYEE_MAPPING);
    let employee = text_record(&[
        ("First Name", "Ada"),
        ("Last Name", "Lovelace"),
        ("Login Name", "ALOVELACE"),
        ("EMail Addr", "ada@example.com"),
        ("Phone #", "+44 20 7946 0000"),
        ("Job Title", "Analyst"),
    ]);
    let ex = plugin
        .to_exchange(&ctx("employees"), &employee)
        .expect("maps");
    assert_known_to_ews(ItemKind::Contact, &ex);
    assert_eq!(ex.get("Categories"), Some(&texts(&["Employee"])));
    assert_eq!(text(&ex, "EmailAddress1"), Some("ada@example.com"));
    assert_eq!(text(&ex, "BusinessPhone"), Some("+44 20 7946 0000"));
    assert_eq!(text(&ex, "FileAs"), Some("Lovelace, Ada"));
    assert_eq!(ex.len(), 7);

    let mut edited = ex.clone();
    edited.insert("JobTitle".into(), "Rogue".into());
    assert_eq!(
        plugin
            .to_siebel(&ctx("employees"), &edited)
            .expect("never fails"),
        Fields::new()
    );
}

#[test]
fn default_filters_apply_every_rule_with_host_configuration() {
    let mut configured = filter(&[
        ("extract_start_date", "2026-12-01"),
        ("sync_private", "false"),
        ("exclude_categories", "Holiday, Personal"),
    ]);
    let mut include = |domain: &str, side: Side, record: &Fields| {
        configured
            .include(&ctx(domain), side, record)
            .expect("the filter answers")
    };

    // Display In routing.
    let appointment = text_record(&[
        ("Display", "Calendar and Activities"),
        ("Planned", "12/02/2026 09:00:00"),
        ("Planned Completion", "12/02/2026 10:00:00"),
    ]);
    assert!(include("calendar", Side::Siebel, &appointment));
    assert!(!include("tasks", Side::Siebel, &appointment));
    let task = text_record(&[
        ("Display", "To Do and Activities"),
        ("Due", "12/05/2026 17:00:00"),
    ]);
    assert!(include("tasks", Side::Siebel, &task));
    assert!(!include("calendar", Side::Siebel, &task));
    let activity_only = text_record(&[
        ("Display", "Activities Only"),
        ("Due", "12/05/2026 17:00:00"),
    ]);
    assert!(
        !include("tasks", Side::Siebel, &activity_only)
            && !include("calendar", Side::Siebel, &activity_only)
    );

    // ExtractStartDate window, both sides.
    let old_task = text_record(&[
        ("Display", "To Do and Activities"),
        ("Due", "11/30/2026 17:00:00"),
    ]);
    assert!(!include("tasks", Side::Siebel, &old_task));
    let mut old_item = Fields::new();
    old_item.insert("Sensitivity".into(), "Normal".into());
    old_item.insert("DueDate".into(), Value::DateTime(utc(2026, 11, 2, 0, 0)));
    assert!(!include("tasks", Side::Exchange, &old_item));
    old_item.insert("DueDate".into(), Value::DateTime(utc(2026, 12, 2, 0, 0)));
    assert!(include("tasks", Side::Exchange, &old_item));
    let mut old_meeting = Fields::new();
    old_meeting.insert("Start".into(), Value::DateTime(utc(2026, 11, 30, 9, 0)));
    old_meeting.insert("End".into(), Value::DateTime(utc(2026, 11, 30, 10, 0)));
    assert!(!include("calendar", Side::Exchange, &old_meeting));

    // Private records (sync_private = false), both sides.
    let mut private_task = task.clone();
    private_task.insert("Private".into(), "Y".into());
    assert!(!include("tasks", Side::Siebel, &private_task));
    let mut private_item = old_item.clone();
    private_item.insert("Sensitivity".into(), "Private".into());
    assert!(!include("tasks", Side::Exchange, &private_item));

    // Excluded categories on Exchange items.
    let mut holiday = old_item.clone();
    holiday.insert("Categories".into(), texts(&["Work", "holiday"]));
    assert!(!include("tasks", Side::Exchange, &holiday));
    holiday.insert("Categories".into(), texts(&["Work"]));
    assert!(include("tasks", Side::Exchange, &holiday));

    // Defaults: private records synced, no window, no category excluded.
    let mut defaults = filter(&[]);
    assert!(
        defaults
            .include(&ctx("tasks"), Side::Siebel, &private_task)
            .expect("answers")
    );
    assert!(
        defaults
            .include(&ctx("tasks"), Side::Siebel, &old_task)
            .expect("answers")
    );
    assert!(
        defaults
            .include(&ctx("personal-contacts"), Side::Exchange, &private_item)
            .expect("answers")
    );
    assert!(
        !defaults
            .include(&ctx("contacts"), Side::Exchange, &private_item)
            .expect("answers")
    );
}

#[test]
fn default_filters_report_bad_configuration_as_a_plugin_error() {
    let mut plugin = filter(&[("extract_start_date", "first of December")]);
    let task = text_record(&[
        ("Display", "To Do and Activities"),
        ("Due", "12/05/2026 17:00:00"),
    ]);
    match plugin.include(&ctx("tasks"), Side::Siebel, &task) {
        Err(PluginCallError::Plugin {
            error: PluginError::Other(message),
            ..
        }) => {
            assert!(message.contains("extract_start_date"), "{message}")
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn a_users_extract_start_date_overrides_the_global_one() {
    let load = || filter_plugin(&[("extract_start_date", "2026-12-01")]);
    let appointment = text_record(&[
        ("Display", "Calendar and Activities"),
        ("Planned", "12/02/2026 09:00:00"),
        ("Planned Completion", "12/02/2026 10:00:00"),
    ]);
    let mut global = load().instantiate().expect("instantiates");
    assert!(
        global
            .include(&ctx("calendar"), Side::Siebel, &appointment)
            .expect("answers"),
        "after the global date: in"
    );
    let later = [("extract_start_date".to_string(), "2026-12-03".to_string())]
        .into_iter()
        .collect();
    let mut user = load()
        .instantiate_with_config(later)
        .expect("instantiates");
    assert!(
        !user
            .include(&ctx("calendar"), Side::Siebel, &appointment)
            .expect("answers"),
        "before the user's own date: out"
    );
}
