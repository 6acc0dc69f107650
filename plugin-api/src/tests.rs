//! Native unit tests of the plain API and of the WIT conversion the export macros rely on.

use super::__private::{fields_from_wit, fields_to_wit, map_packed, pack_records, unpack_answers};
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
fn packed_batches_round_trip_every_kind_and_keep_errors_in_place() {
    let records = [sample(), Fields::new(), sample()];
    let batch = pack_records(records.iter());
    let mut seen = 0;
    let answers = map_packed(&batch, |record| {
        seen += 1;
        if record.is_empty() {
            Err(PluginError::InvalidRecord("empty".into()))
        } else {
            Ok(record)
        }
    });
    assert_eq!(seen, 3);
    let answers = unpack_answers(&answers).expect("well formed");
    assert_eq!(
        answers,
        vec![
            Ok(sample()),
            Err(PluginError::InvalidRecord("empty".into())),
            Ok(sample())
        ]
    );
}

#[test]
fn a_malformed_batch_fails_its_records_without_a_panic() {
    let batch = pack_records([sample(), sample()].iter());
    for cut in [5, batch.len() / 2, batch.len() - 1] {
        let answers = map_packed(&batch[..cut], Ok);
        let answers = unpack_answers(&answers).expect("well formed");
        assert_eq!(answers.len(), 2);
        assert!(
            matches!(answers.last(), Some(Err(PluginError::Other(m))) if m.contains("malformed batch")),
            "{answers:?}"
        );
    }
    // A list inside a list, an unknown tag and a bad UTF-8 text are refused too.
    let mut nested = Vec::new();
    nested.extend_from_slice(&1u32.to_le_bytes()); // one record
    nested.extend_from_slice(&1u32.to_le_bytes()); // one field
    nested.extend_from_slice(&1u32.to_le_bytes());
    nested.push(b'x');
    for tail in [&[6u8, 1, 0, 0, 0, 6][..], &[9u8][..], &[1u8, 1, 0, 0, 0, 0xff][..]] {
        let mut batch = nested.clone();
        batch.extend_from_slice(tail);
        let answers = unpack_answers(&map_packed(&batch, Ok)).expect("well formed");
        assert!(matches!(&answers[0], Err(PluginError::Other(_))), "{answers:?}");
    }
    assert!(unpack_answers(&map_packed(&[], Ok)).expect("empty").is_empty());
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
