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
    let answers = map_packed(batch, |record| {
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
        let answers = map_packed(batch[..cut].to_vec(), Ok);
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
    for tail in [
        &[6u8, 1, 0, 0, 0, 6][..],
        &[9u8][..],
        &[1u8, 1, 0, 0, 0, 0xff][..],
    ] {
        let mut batch = nested.clone();
        batch.extend_from_slice(tail);
        let answers = unpack_answers(&map_packed(batch, Ok)).expect("well formed");
        assert!(
            matches!(&answers[0], Err(PluginError::Other(_))),
            "{answers:?}"
        );
    }
    assert!(
        unpack_answers(&map_packed(Vec::new(), Ok))
            .expect("empty")
            .is_empty()
    );
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

/// A packed batch of one record whose fields are written as given (any order, repeats).
fn packed_record(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut batch = Vec::new();
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for (name, value) in fields {
        batch.extend_from_slice(&(name.len() as u32).to_le_bytes());
        batch.extend_from_slice(name.as_bytes());
        batch.extend_from_slice(value);
    }
    batch
}

fn packed_text(text: &str) -> Vec<u8> {
    let mut value = vec![1u8];
    value.extend_from_slice(&(text.len() as u32).to_le_bytes());
    value.extend_from_slice(text.as_bytes());
    value
}

/// Maps the one record of `batch` with `map`, through the packed format both ways, and
/// returns the answer as the host would read it.
fn map_one(batch: Vec<u8>, map: impl FnOnce(Fields) -> Fields) -> Fields {
    let mut map = Some(map);
    let answers = map_packed(batch, |record| Ok(map.take().expect("one record")(record)));
    let mut answers = unpack_answers(&answers).expect("well formed");
    assert_eq!(answers.len(), 1);
    answers.pop().expect("one answer").expect("mapped")
}

#[test]
fn a_record_from_a_batch_reads_like_a_built_one() {
    let long = "A field name longer than thirty bytes, kept on the heap";
    let batch = pack_records([sample()].iter());
    let mut seen = None;
    let answer = map_one(batch, |mut record| {
        assert_eq!(record, sample());
        assert_eq!(record.get_text("Text"), Some("hello"));
        assert_eq!(record.get_text("Blank"), None);
        assert_eq!(record.get_text("Int"), None);
        assert_eq!(record.get("Int"), Some(&Value::Integer(42)));
        assert_eq!(record.get("Cats"), Some(&Value::text_list(["a", "b"])));
        assert_eq!(record.take("Num"), Value::Number(1.5));
        assert_eq!(record.remove("Num"), None);
        record.set(long, "x");
        record.set("Text", "replaced");
        assert_eq!(record.get_text(long), Some("x"));
        seen = Some(record.clone());
        record
    });
    let seen = seen.expect("mapped");
    assert_eq!(answer, seen);
    let names: Vec<&str> = answer.iter().map(|(name, _)| name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "fields stay in name order");
    assert!(names.contains(&long));
    let owned: Vec<(String, Value)> = answer.into_iter().collect();
    assert_eq!(owned.len(), sample().len());
    assert!(owned.contains(&("Text".to_owned(), Value::text("replaced"))));
}

#[test]
fn a_record_passed_on_unread_is_packed_back_byte_for_byte() {
    let batch = pack_records([sample(), sample()].iter());
    let answers = map_packed(batch.clone(), Ok);
    // An answer is `0` + the record, where the batch had the record alone.
    let record = &batch[4..4 + (batch.len() - 4) / 2];
    let mut expected = 2u32.to_le_bytes().to_vec();
    for _ in 0..2 {
        expected.push(0);
        expected.extend_from_slice(record);
    }
    assert_eq!(answers, expected);
}

#[test]
fn unsorted_and_repeated_names_in_a_batch_keep_the_last_value() {
    let a1 = packed_text("first");
    let a2 = packed_text("second");
    let b = packed_text("b");
    let batch = packed_record(&[("b", &b), ("a", &a1), ("c", &[0]), ("a", &a2)]);
    let answer = map_one(batch, |record| {
        assert_eq!(record.len(), 3);
        assert_eq!(record.get_text("a"), Some("second"));
        record
    });
    let names: Vec<&str> = answer.iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(answer.get("c"), Some(&Value::Null));
}

#[test]
fn set_extend_and_collect_keep_names_sorted_and_unique() {
    let mut f: Fields = [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
    f.extend([
        ("c".to_owned(), Value::Null),
        ("a".to_owned(), Value::text("4")),
    ]);
    let pairs: Vec<(&str, &Value)> = f.iter().collect();
    assert_eq!(
        pairs,
        [
            ("a", &Value::text("4")),
            ("b", &Value::text("3")),
            ("c", &Value::Null)
        ]
    );
    f.retain(|name, _| name != "b");
    assert_eq!(f.len(), 2);
    let map: std::collections::BTreeMap<String, Value> = f.clone().into();
    assert_eq!(Fields::from(map), f);
    assert_eq!(format!("{f:?}"), r#"{"a": Text("4"), "c": Null}"#);
}

#[test]
fn a_malformed_record_fails_with_a_message_never_a_panic() {
    let cases: [(&str, Vec<u8>); 5] = [
        ("name not UTF-8", {
            let mut b = Vec::new();
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.push(0xff);
            b.push(0);
            b
        }),
        (
            "a list cut short",
            packed_record(&[("l", &[6, 3, 0, 0, 0, 0, 0])]),
        ),
        (
            "an integer cut short",
            packed_record(&[("i", &[2, 1, 2, 3])]),
        ),
        ("a huge field count", {
            let mut b = 1u32.to_le_bytes().to_vec();
            b.extend_from_slice(&u32::MAX.to_le_bytes());
            b
        }),
        (
            "a text longer than the batch",
            packed_record(&[("t", &[1, 0xff, 0xff, 0xff, 0x7f, b'x'])]),
        ),
    ];
    for (what, batch) in cases {
        let answers = unpack_answers(&map_packed(batch, Ok)).expect("answers are well formed");
        assert!(
            matches!(&answers[..], [Err(PluginError::Other(m))] if m.contains("malformed batch")),
            "{what}: {answers:?}"
        );
    }
}

#[test]
fn names_compare_like_bytes() {
    let names = [
        "",
        "a",
        "a\0",
        "ab",
        "b",
        "Assistant",
        "Assistant Phone #",
        "Assistant Phone #2",
        "Primary Account Name",
        "Primary Account Nam",
        "Zoë",
        "Zoe",
        "éé",
        "12345678",
        "123456789",
        "1234567",
        "12345678\u{80}",
        "A field name longer than thirty bytes, on the heap",
    ];
    for a in names {
        for b in names {
            let (a, b) = (a.as_bytes(), b.as_bytes());
            assert_eq!(
                crate::fields::compare_names(a, b),
                a.cmp(b),
                "{a:?} vs {b:?}"
            );
            let (pa, pb) = (crate::fields::prefix_of(a), crate::fields::prefix_of(b));
            if pa != pb {
                assert_eq!(pa.cmp(&pb), a.cmp(b), "prefixes of {a:?} vs {b:?}");
            }
        }
    }
}

#[test]
fn non_ascii_texts_are_read_and_invalid_ones_refused() {
    let long = "ASCII first, then ünïcödé, then ASCII again";
    let mut f = Fields::new();
    f.set("Zoë", long);
    let answer = map_one(pack_records([f.clone()].iter()), |record| {
        assert_eq!(record.get_text("Zoë"), Some(long));
        record
    });
    assert_eq!(answer, f);
    // Invalid UTF-8 after a whole ASCII word, and inside one.
    for text in [&b"eight by\xff"[..], &b"ab\xc3cdefghij"[..]] {
        let mut value = vec![1u8];
        value.extend_from_slice(&(text.len() as u32).to_le_bytes());
        value.extend_from_slice(text);
        let answers = unpack_answers(&map_packed(packed_record(&[("t", &value)]), Ok))
            .expect("answers are well formed");
        assert!(
            matches!(&answers[..], [Err(PluginError::Other(m))] if m.contains("not UTF-8")),
            "{answers:?}"
        );
    }
}

#[test]
fn set_from_passes_values_on_and_turns_blank_or_absent_into_null() {
    // A text of 200 bytes has a length byte above 0x7f: the batch is not all ASCII, so its
    // texts are checked one by one.
    let long_text = "x".repeat(200);
    let mut f = sample();
    f.set("Long", long_text.as_str());
    let built = f.clone();
    let answer = map_one(pack_records([f].iter()), |record| {
        let mut out = Fields::new();
        for (to, from) in [
            ("a-text", "Text"),
            ("b-blank", "Blank"),
            ("c-null", "Null"),
            ("d-absent", "Missing"),
            ("e-int", "Int"),
            ("f-list", "Cats"),
            ("g-long", "Long"),
        ] {
            out.set_from(to, &record, from);
        }
        // From a record of another batch (built here): its value is copied, not shared.
        out.set_from("h-built", &built, "When");
        assert_eq!(out.get_text("a-text"), Some("hello"));
        out
    });
    let expected: Fields = [
        ("a-text", Value::text("hello")),
        ("b-blank", Value::Null),
        ("c-null", Value::Null),
        ("d-absent", Value::Null),
        ("e-int", Value::Integer(42)),
        ("f-list", Value::text_list(["a", "b"])),
        ("g-long", Value::text(long_text)),
        (
            "h-built",
            built.get("When").cloned().expect("sample has When"),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(answer, expected);
}
