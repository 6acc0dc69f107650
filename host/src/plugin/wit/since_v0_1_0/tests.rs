//! Tests of 0.1.0's `field`-list conversions: every kind both ways, and what a record can't
//! carry or a plugin can't send back.

use chrono::DateTime;

use super::convert::{fields_from_wit, fields_to_wit};
use super::types as wit;
use crate::record::{Fields, Value};

#[test]
fn every_kind_round_trips() {
    let mut f = Fields::new();
    f.insert("a".into(), Value::Null);
    f.insert("b".into(), "x".into());
    f.insert("c".into(), Value::Integer(-3));
    f.insert("d".into(), Value::Number(2.5));
    f.insert("e".into(), Value::Boolean(false));
    let when = DateTime::from_timestamp(1_700_000_000, 123).expect("valid time");
    f.insert("f".into(), Value::DateTime(when));
    f.insert(
        "g".into(),
        Value::List(vec!["s".into(), Value::DateTime(when)]),
    );
    let wit = fields_to_wit(&f).expect("representable");
    assert_eq!(fields_from_wit(wit).expect("valid"), f);
}

#[test]
fn nested_list_duplicates_and_bad_times_are_errors() {
    let mut f = Fields::new();
    f.insert("g".into(), Value::List(vec![Value::List(vec![])]));
    assert!(fields_to_wit(&f).is_err());

    let dup = vec![
        wit::Field {
            name: "x".into(),
            value: wit::Value::Null,
        },
        wit::Field {
            name: "x".into(),
            value: wit::Value::Null,
        },
    ];
    assert!(
        fields_from_wit(dup)
            .expect_err("duplicate")
            .contains("more than once")
    );

    let bad = wit::Datetime {
        seconds: i64::MAX,
        nanoseconds: 0,
    };
    let field = wit::Field {
        name: "t".into(),
        value: wit::Value::DateTime(bad),
    };
    assert!(fields_from_wit(vec![field]).is_err());
}
