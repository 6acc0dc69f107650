//! Conversions between the host's record type (`crate::record`) and the WIT types of
//! `tandem:plugin@0.1.0`. Data coming back from a plugin is untrusted: every failure is an
//! error, never a panic.

use std::collections::btree_map::Entry;

use chrono::{DateTime, Utc};

use super::since_v0_1_0::types as wit;
use crate::record::{Fields, Value};

/// Host record → WIT field list. Fails on a list nested in a list (WIT has no recursion).
pub(crate) fn fields_to_wit(fields: &Fields) -> Result<Vec<wit::Field>, String> {
    fields
        .iter()
        .map(|(name, value)| {
            let value = value_to_wit(value)
                .map_err(|e| format!("field `{name}` can't be passed to a plugin: {e}"))?;
            Ok(wit::Field {
                name: name.clone(),
                value,
            })
        })
        .collect()
}

/// WIT field list from a plugin → host record. Fails on a duplicate name or a time out of
/// range.
pub(crate) fn fields_from_wit(fields: Vec<wit::Field>) -> Result<Fields, String> {
    let mut out = Fields::new();
    for field in fields {
        let value =
            value_from_wit(field.value).map_err(|e| format!("field `{}`: {e}", field.name))?;
        match out.entry(field.name) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(slot) => {
                return Err(format!("field `{}` appears more than once", slot.key()));
            }
        }
    }
    Ok(out)
}

fn value_to_wit(value: &Value) -> Result<wit::Value, String> {
    Ok(match value {
        Value::Null => wit::Value::Null,
        Value::Text(t) => wit::Value::Text(t.clone()),
        Value::Integer(n) => wit::Value::Integer(*n),
        Value::Number(n) => wit::Value::Number(*n),
        Value::Boolean(b) => wit::Value::Boolean(*b),
        Value::DateTime(t) => wit::Value::DateTime(datetime_to_wit(t)),
        Value::List(items) => {
            wit::Value::List(items.iter().map(scalar_to_wit).collect::<Result<_, _>>()?)
        }
    })
}

fn scalar_to_wit(value: &Value) -> Result<wit::Scalar, String> {
    Ok(match value {
        Value::Null => wit::Scalar::Null,
        Value::Text(t) => wit::Scalar::Text(t.clone()),
        Value::Integer(n) => wit::Scalar::Integer(*n),
        Value::Number(n) => wit::Scalar::Number(*n),
        Value::Boolean(b) => wit::Scalar::Boolean(*b),
        Value::DateTime(t) => wit::Scalar::DateTime(datetime_to_wit(t)),
        Value::List(_) => return Err("a list inside a list".into()),
    })
}

fn value_from_wit(value: wit::Value) -> Result<Value, String> {
    Ok(match value {
        wit::Value::Null => Value::Null,
        wit::Value::Text(t) => Value::Text(t),
        wit::Value::Integer(n) => Value::Integer(n),
        wit::Value::Number(n) => Value::Number(n),
        wit::Value::Boolean(b) => Value::Boolean(b),
        wit::Value::DateTime(t) => Value::DateTime(datetime_from_wit(t)?),
        wit::Value::List(items) => Value::List(
            items
                .into_iter()
                .map(scalar_from_wit)
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn scalar_from_wit(value: wit::Scalar) -> Result<Value, String> {
    Ok(match value {
        wit::Scalar::Null => Value::Null,
        wit::Scalar::Text(t) => Value::Text(t),
        wit::Scalar::Integer(n) => Value::Integer(n),
        wit::Scalar::Number(n) => Value::Number(n),
        wit::Scalar::Boolean(b) => Value::Boolean(b),
        wit::Scalar::DateTime(t) => Value::DateTime(datetime_from_wit(t)?),
    })
}

fn datetime_to_wit(t: &DateTime<Utc>) -> wit::Datetime {
    wit::Datetime {
        seconds: t.timestamp(),
        nanoseconds: t.timestamp_subsec_nanos(),
    }
}

fn datetime_from_wit(t: wit::Datetime) -> Result<DateTime<Utc>, String> {
    if t.nanoseconds >= 1_000_000_000 {
        return Err(format!(
            "date-time nanoseconds {} is not below 10^9",
            t.nanoseconds
        ));
    }
    DateTime::from_timestamp(t.seconds, t.nanoseconds)
        .ok_or_else(|| format!("date-time {} s since 1970 is out of range", t.seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
