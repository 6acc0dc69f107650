//! The personal-contact mapping: the business table plus the private marks, run natively.

use super::*;
use tandem_plugin_api::Value;

fn personal_siebel() -> Fields {
    [
        ("First Name", "Grace"),
        ("Last Name", "Hopper"),
        ("Email Address", "grace@home.example"),
        ("Home Phone #", "+1 555 0199"),
        ("Cellular Phone #", "+1 555 0198"),
        ("Personal Contact", "Y"),
    ]
    .into_iter()
    .collect()
}

fn ctx() -> Context {
    Context {
        domain: "personal-contacts".into(),
        user: "SADMIN".into(),
    }
}

#[test]
fn to_exchange_uses_the_contact_table_marks_private_and_sets_no_category() {
    let ex = siebel_to_exchange(&personal_siebel()).expect("maps");
    assert_eq!(ex.get_text("GivenName"), Some("Grace"));
    assert_eq!(ex.get_text("Surname"), Some("Hopper"));
    assert_eq!(ex.get_text("EmailAddress1"), Some("grace@home.example"));
    assert_eq!(ex.get_text("HomePhone"), Some("+1 555 0199"));
    assert_eq!(ex.get_text("MobilePhone"), Some("+1 555 0198"));
    assert_eq!(
        ex.get("JobTitle"),
        Some(&Value::Null),
        "unset fields are cleared"
    );
    assert_eq!(ex.get_text("FileAs"), Some("Hopper, Grace"));
    assert_eq!(ex.get_text("Sensitivity"), Some("Private"));
    assert!(
        !ex.contains("Categories"),
        "the user's categories are left alone"
    );
    assert!(!ex.contains("PersonalContact") && !ex.contains("Personal Contact"));
    let names: Vec<&str> = ex.iter().map(|(n, _)| n).collect();
    let mut expected: Vec<&str> = exchange_fields().collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
}

#[test]
fn to_siebel_marks_the_contact_personal() {
    let mut ex = siebel_to_exchange(&personal_siebel()).expect("maps");
    ex.set("Categories", Value::text_list(["Family"]));
    let s = exchange_to_siebel(&ex).expect("maps");
    assert_eq!(s.get_text("Personal Contact"), Some("Y"));
    assert_eq!(s.get_text("First Name"), Some("Grace"));
    assert!(!s.contains("Categories") && !s.contains("Sensitivity") && !s.contains("FileAs"));
}

#[test]
fn a_business_contact_is_refused_on_either_side() {
    let mut s = personal_siebel();
    s.set("Personal Contact", "N");
    let err = siebel_to_exchange(&s).expect_err("business contact");
    assert!(
        matches!(&err, PluginError::InvalidRecord(m) if m.contains("business contact")),
        "{err}"
    );

    let mut ex = siebel_to_exchange(&personal_siebel()).expect("maps");
    ex.set("Sensitivity", "Normal");
    let err = exchange_to_siebel(&ex).expect_err("business contact");
    assert!(
        matches!(&err, PluginError::InvalidRecord(m) if m.contains("Sensitivity Normal")),
        "{err}"
    );

    // Absent marks are fine: the domain's query already chose the record.
    let mut s = personal_siebel();
    s.remove("Personal Contact");
    assert!(siebel_to_exchange(&s).is_ok());
    for sensitivity in ["Private", "Personal", "Confidential"] {
        ex.set("Sensitivity", sensitivity);
        assert!(exchange_to_siebel(&ex).is_ok(), "{sensitivity}");
    }
}

#[test]
fn is_personal_reads_the_flag() {
    assert!(is_personal(&personal_siebel()));
    let mut s = personal_siebel();
    for (flag, personal) in [("y", true), ("Yes", true), ("N", false), ("", false)] {
        s.set("Personal Contact", flag);
        assert_eq!(is_personal(&s), personal, "{flag:?}");
    }
    s.remove("Personal Contact");
    assert!(!is_personal(&s));
}

#[test]
fn round_trip_siebel_exchange_siebel_is_identity_on_mapped_fields() {
    let s = personal_siebel();
    let back = exchange_to_siebel(&siebel_to_exchange(&s).expect("maps")).expect("maps");
    for (name, value) in back.iter() {
        assert_eq!(*value, s.get(name).cloned().unwrap_or_default(), "{name}");
    }
    assert_eq!(back.len(), FIELD_PAIRS.len() + 1);
}

#[test]
fn round_trip_exchange_siebel_exchange_is_identity() {
    let ex = siebel_to_exchange(&personal_siebel()).expect("maps");
    let again = siebel_to_exchange(&exchange_to_siebel(&ex).expect("maps")).expect("maps");
    assert_eq!(again, ex);
}

#[test]
fn mapper_trait_delegates_to_the_plain_functions() {
    let ex = PersonalContactMapping::to_exchange(&ctx(), personal_siebel()).expect("maps");
    assert_eq!(ex, siebel_to_exchange(&personal_siebel()).expect("maps"));
    let s = PersonalContactMapping::to_siebel(&ctx(), ex).expect("maps");
    assert_eq!(s.get_text("Personal Contact"), Some("Y"));
}
