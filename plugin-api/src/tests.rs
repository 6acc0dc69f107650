//! Native unit tests of the plain API and of the WIT conversion the export macros rely on.

use super::__private::{fields_from_wit, fields_to_wit};
use super::*;

fn sample() -> Fields {
    let mut f = Fields::new();
    f.set("Text", "hello");
    f.set("Blank", "");
    f.set("Null", Value::Null);
    f.set("Int", 42i64);
    f.set("Num", 1.5f64);
    f.set("Bool", true);
    f.set(
        "When",
        DateTime {
            seconds: 1_700_000_000,
            nanoseconds: 5,
        },
    );
    f.set("Cats", Value::text_list(["a", "b"]));
    f
}

#[test]
fn wit_conversion_round_trips_every_kind() {
    let fields = sample();
    assert_eq!(fields_from_wit(fields_to_wit(fields.clone())), fields);
}

#[test]
fn get_text_treats_blank_and_non_text_as_absent() {
    let f = sample();
    assert_eq!(f.get_text("Text"), Some("hello"));
    assert_eq!(f.get_text("Blank"), None);
    assert_eq!(f.get_text("Int"), None);
    assert_eq!(f.get_text("Missing"), None);
    assert!(f.contains("Null"));
}

#[test]
fn or_null_turns_blank_into_null() {
    assert_eq!(Value::text("").or_null(), Value::Null);
    assert_eq!(Value::text("x").or_null(), Value::text("x"));
    assert_eq!(Value::from(None::<String>), Value::Null);
}

#[test]
fn default_filter_includes_and_default_policy_defers() {
    struct F;
    impl Filter for F {}
    struct P;
    impl ConflictPolicy for P {}
    let ctx = Context::default();
    assert_eq!(F::include(&ctx, Side::Siebel, &Fields::new()), Ok(true));
    assert!(matches!(
        P::resolve(&ctx, Conflict::default()),
        Ok(Resolution::Defer(_))
    ));
}

#[test]
fn native_log_and_config_are_inert() {
    info!("no host here: {}", 1);
    assert_eq!(config("anything"), None);
}
