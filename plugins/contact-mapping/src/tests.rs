//! Round-trip laws and field-by-field expectations of the contact mapping, run natively.

use super::*;

fn full_siebel() -> Fields {
    let mut s = Fields::new();
    s.set("First Name", "Ann");
    s.set("Last Name", "Lee");
    s.set("Middle Name", "Q");
    s.set("Email Address", "ann.lee@example.com");
    s.set("Work Phone #", "+1 555 0100");
    s.set("Cellular Phone #", "+1 555 0101");
    s.set("Home Phone #", "+1 555 0102");
    s.set("Fax Phone #", "+1 555 0103");
    s.set("Job Title", "CFO");
    s.set("Assistant", "Bob Ray");
    s.set("Assistant Phone #", "+1 555 0104");
    s.set("Primary Account Name", "Acme Corp");
    s
}

fn restrict(fields: &Fields, names: impl Iterator<Item = &'static str>) -> Fields {
    let names: Vec<&str> = names.collect();
    let mut out = fields.clone();
    out.retain(|name, _| names.contains(&name));
    out
}

#[test]
fn to_exchange_maps_every_pair_and_adds_category_and_file_as() {
    let ex = siebel_to_exchange(&full_siebel());
    assert_eq!(ex.get_text("GivenName"), Some("Ann"));
    assert_eq!(ex.get_text("Surname"), Some("Lee"));
    assert_eq!(ex.get_text("MiddleName"), Some("Q"));
    assert_eq!(ex.get_text("EmailAddress1"), Some("ann.lee@example.com"));
    assert_eq!(ex.get_text("BusinessPhone"), Some("+1 555 0100"));
    assert_eq!(ex.get_text("MobilePhone"), Some("+1 555 0101"));
    assert_eq!(ex.get_text("HomePhone"), Some("+1 555 0102"));
    assert_eq!(ex.get_text("BusinessFax"), Some("+1 555 0103"));
    assert_eq!(ex.get_text("JobTitle"), Some("CFO"));
    assert_eq!(ex.get_text("AssistantName"), Some("Bob Ray"));
    assert_eq!(ex.get_text("AssistantPhone"), Some("+1 555 0104"));
    assert_eq!(ex.get_text("CompanyName"), Some("Acme Corp"));
    assert_eq!(
        ex.get("Categories"),
        Some(&Value::text_list(["Siebel Contact"]))
    );
    assert_eq!(ex.get_text("FileAs"), Some("Lee, Ann"));
    assert_eq!(ex.len(), FIELD_PAIRS.len() + 2);
}

#[test]
fn missing_and_blank_fields_become_null_so_clears_propagate() {
    let mut s = Fields::new();
    s.set("Last Name", "Lee");
    s.set("Job Title", "");
    let ex = siebel_to_exchange(&s);
    for (_, exchange_name) in FIELD_PAIRS {
        assert!(
            ex.contains(exchange_name),
            "{exchange_name} must always be present"
        );
    }
    assert_eq!(ex.get("JobTitle"), Some(&Value::Null));
    assert_eq!(ex.get("GivenName"), Some(&Value::Null));
    assert_eq!(ex.get_text("FileAs"), Some("Lee"));
    assert_eq!(
        siebel_to_exchange(&Fields::new()).get("FileAs"),
        Some(&Value::Null)
    );

    let back = exchange_to_siebel(&Fields::new());
    assert_eq!(back.len(), FIELD_PAIRS.len());
    assert!(back.iter().all(|(_, v)| *v == Value::Null));
}

#[test]
fn to_siebel_ignores_categories_file_as_and_unknown_fields() {
    let mut ex = siebel_to_exchange(&full_siebel());
    ex.set("Nickname", "Annie");
    let s = exchange_to_siebel(&ex);
    assert_eq!(s, full_siebel());
    assert!(!s.contains("Categories") && !s.contains("FileAs") && !s.contains("Nickname"));
}

#[test]
fn round_trip_siebel_exchange_siebel_is_identity_on_mapped_fields() {
    let mut s = full_siebel();
    s.set("Middle Name", Value::Null);
    s.set("Row Id", "1-ABC"); // not mapped: dropped
    s.set("Home Phone #", ""); // blank: comes back as Null
    let back = exchange_to_siebel(&siebel_to_exchange(&s));
    let mut expected = restrict(&s, FIELD_PAIRS.iter().map(|(s, _)| *s));
    expected.set("Home Phone #", Value::Null);
    assert_eq!(back, expected);
}

#[test]
fn round_trip_exchange_siebel_exchange_is_identity_on_mapped_fields() {
    let mut ex = siebel_to_exchange(&full_siebel());
    ex.set("CompanyName", Value::Null);
    ex.set("Nickname", "Annie");
    let again = siebel_to_exchange(&exchange_to_siebel(&ex));
    let names = || FIELD_PAIRS.iter().map(|(_, e)| *e);
    assert_eq!(restrict(&again, names()), restrict(&ex, names()));
}

#[test]
fn mapper_trait_delegates_to_the_plain_functions() {
    let ctx = Context {
        domain: "contacts".into(),
        user: "SADMIN".into(),
    };
    let ex = ContactMapping::to_exchange(&ctx, full_siebel()).expect("mapping never fails");
    assert_eq!(ex, siebel_to_exchange(&full_siebel()));
    let s = ContactMapping::to_siebel(&ctx, ex).expect("mapping never fails");
    assert_eq!(s, full_siebel());
}
