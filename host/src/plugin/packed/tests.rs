//! Tests of the host's packed batches: the bytes a batch is made of, answers written by
//! hand, and the round trip through the guest SDK's own packed code (the SDK is a
//! dev-dependency), with random records and random bytes.

use chrono::DateTime;
use tandem_packed::tag::{DATE_TIME, INTEGER, LIST, NULL, TEXT};

use super::*;
use crate::record::Value;

const ANSWER_RECORD: u8 = Answer::Record.tag();
const ANSWER_INVALID_RECORD: u8 = Answer::InvalidRecord.tag();
const ANSWER_OTHER: u8 = Answer::Other.tag();

/// A plugin's answers as the guest SDK writes them, built here by hand.
fn answers(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn a_packed_batch_is_what_the_format_says_and_answers_unpack() {
    let mut f = Fields::new();
    f.insert("Name".into(), "Zoë".into());
    f.insert("n".into(), Value::Integer(-1));
    f.insert("x".into(), Value::Number(0.25));
    f.insert("ok".into(), Value::Boolean(true));
    f.insert("none".into(), Value::Null);
    let when = DateTime::from_timestamp(-5, 7).expect("valid time");
    f.insert("at".into(), Value::DateTime(when));
    f.insert("tags".into(), Value::List(vec!["a".into(), Value::Null]));
    let mut batch = PackedBatch::new(2);
    batch.push(&f).expect("packs");
    let mut nested = Fields::new();
    nested.insert("g".into(), Value::List(vec![Value::List(vec![])]));
    assert!(batch.push(&nested).is_err(), "a nested list is refused");
    batch.push(&f).expect("packs");
    assert_eq!(batch.len(), 2);
    let bytes = batch.finish();
    assert_eq!(&bytes[..4], &2u32.to_le_bytes());

    // A record answer has the layout of a batch's record: the batch's bytes, re-tagged.
    let record = &bytes[4..(4 + (bytes.len() - 4) / 2)];
    let message = b"no";
    let unpacked = unpack_answers(
        answers(&[
            &3u32.to_le_bytes(),
            &[ANSWER_RECORD],
            record,
            &[ANSWER_INVALID_RECORD],
            &2u32.to_le_bytes(),
            message,
            &[ANSWER_OTHER],
            &0u32.to_le_bytes(),
        ]),
        3,
    )
    .expect("well formed");
    assert!(matches!(&unpacked[0], PackedAnswer::Record(Ok(r)) if r == &f));
    assert!(
        matches!(&unpacked[1], PackedAnswer::Error(PluginError::InvalidRecord(m)) if m == "no")
    );
    assert!(matches!(&unpacked[2], PackedAnswer::Error(PluginError::Other(m)) if m.is_empty()));
}

#[test]
fn malformed_answers_duplicates_and_bad_times_are_errors() {
    let count = |n: u32| n.to_le_bytes();
    let name = |s: &str| [&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat();
    // Wrong count, truncation, trailing bytes, unknown tags, bad UTF-8, nested lists.
    assert!(unpack_answers(count(2).to_vec(), 1).is_err());
    assert!(unpack_answers(answers(&[&count(1), &[ANSWER_RECORD], &count(1)]), 1).is_err());
    assert!(unpack_answers(answers(&[&count(0), &[0]]).clone(), 0).is_err());
    assert!(unpack_answers(answers(&[&count(1), &[7]]).clone(), 1).is_err());
    let field =
        |value: &[u8]| answers(&[&count(1), &[ANSWER_RECORD], &count(1), &name("f"), value]);
    for broken in [
        &[9u8][..],
        &[TEXT, 1, 0, 0, 0, 0xff],
        &[LIST, 1, 0, 0, 0, LIST],
        &[INTEGER, 1],
    ] {
        assert!(
            unpack_answers(field(broken).clone(), 1).is_err(),
            "{broken:?}"
        );
    }
    // A duplicate name or a time out of range fails that record only.
    let dup = answers(&[
        &count(2),
        &[ANSWER_RECORD],
        &count(2),
        &name("f"),
        &[NULL],
        &name("f"),
        &[NULL],
        &[ANSWER_RECORD],
        &count(0),
    ]);
    let unpacked = unpack_answers(dup.clone(), 2).expect("readable");
    assert!(matches!(&unpacked[0], PackedAnswer::Record(Err(m)) if m.contains("more than once")));
    assert!(matches!(&unpacked[1], PackedAnswer::Record(Ok(r)) if r.is_empty()));
    let bad_time = [
        &[DATE_TIME][..],
        &0i64.to_le_bytes(),
        &1_000_000_000u32.to_le_bytes(),
    ]
    .concat();
    let unpacked = unpack_answers(field(&bad_time).clone(), 1).expect("readable");
    assert!(matches!(&unpacked[0], PackedAnswer::Record(Err(m)) if m.contains("nanoseconds")));
}

/// Random host records and bytes, against the guest SDK's packed code.
mod round_trip {
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use tandem_plugin_api::__private::{map_packed, unpack_answers as sdk_unpack_answers};

    use super::*;

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            "\\PC{0,24}".prop_map(Value::Text),
            "[ -~]{0,200}".prop_map(Value::Text),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |n| !n.is_nan())
                .prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            (
                -8_000_000_000_000i64..8_000_000_000_000,
                0u32..1_000_000_000
            )
                .prop_filter_map("a time chrono holds", |(seconds, nanoseconds)| {
                    DateTime::from_timestamp(seconds, nanoseconds).map(Value::DateTime)
                }),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![4 => scalar(), 1 => vec(scalar(), 0..5).prop_map(Value::List)]
    }

    fn record() -> impl Strategy<Value = Fields> {
        let name = prop_oneof!["[A-Za-z #]{0,20}", "\\PC{0,10}"];
        btree_map(name, value(), 0..12).prop_map(|fields| fields.into_iter().collect())
    }

    fn batch(records: &[Fields]) -> Vec<u8> {
        let mut batch = PackedBatch::new(records.len());
        for record in records {
            batch.push(record).expect("packs");
        }
        batch.finish()
    }

    /// The records of `answers`, which must all be records.
    fn records_of(answers: Vec<PackedAnswer>) -> Vec<Fields> {
        answers
            .into_iter()
            .map(|answer| match answer {
                PackedAnswer::Record(Ok(record)) => record,
                PackedAnswer::Record(Err(e)) => panic!("a record the host refuses: {e}"),
                PackedAnswer::Error(e) => panic!("the SDK refused a record: {e}"),
            })
            .collect()
    }

    /// Reads every name and value of whatever both sides make of `bytes`: may fail, must not
    /// panic.
    fn read_anything(bytes: &[u8]) {
        for expected in [0, 1, 2] {
            if let Ok(answers) = unpack_answers(bytes.to_vec(), expected) {
                for answer in answers {
                    if let PackedAnswer::Record(Ok(record)) = answer {
                        let _ = format!("{record:?}");
                        let mut again = PackedBatch::new(1);
                        let _ = again.push(&record);
                    }
                }
            }
        }
        // The SDK answers as many records as the batch says (each a "malformed batch" error
        // past a break): a random count of billions would take gigabytes of answers.
        let mut batch = bytes.to_vec();
        if let Some(count) = batch.first_chunk_mut::<4>() {
            *count = (u32::from_le_bytes(*count) % 8).to_le_bytes();
        }
        let answers = map_packed(batch, |record| {
            let _ = format!("{record:?}");
            Ok(record)
        });
        let _ = sdk_unpack_answers(&answers);
        let _ = sdk_unpack_answers(bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Host records packed by the host, unpacked and answered unread by the SDK (its
        /// bytes copied back), unpacked by the host: the same records.
        #[test]
        fn records_come_back_from_the_sdk_unchanged(records in vec(record(), 0..6)) {
            let answers = map_packed(batch(&records), Ok);
            let back = records_of(unpack_answers(answers, records.len()).expect("well formed"));
            prop_assert_eq!(&back, &records);
            // Packed again by the host, its values go as the bytes they came in.
            let again = map_packed(batch(&back), Ok);
            let again = records_of(unpack_answers(again, records.len()).expect("well formed"));
            prop_assert_eq!(&again, &records);
        }

        /// The same, with the SDK decoding every value and packing the answer from values.
        #[test]
        fn records_decoded_and_rebuilt_by_the_sdk_come_back_unchanged(
            records in vec(record(), 0..6),
        ) {
            let answers = map_packed(batch(&records), |record| {
                Ok(record
                    .iter()
                    .map(|(name, value)| (name.to_owned(), value.clone()))
                    .collect())
            });
            let back = records_of(unpack_answers(answers, records.len()).expect("well formed"));
            prop_assert_eq!(back, records);
        }

        /// Random bytes: errors, never a panic, on either side.
        #[test]
        fn random_bytes_never_panic_either_reader(bytes in vec(any::<u8>(), 0..256)) {
            read_anything(&bytes);
        }

        /// A well-formed batch with bytes changed or cut off: errors, never a panic.
        #[test]
        fn damaged_batches_never_panic_either_reader(
            records in vec(record(), 1..4),
            changes in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = batch(&records);
            for (at, byte) in changes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            read_anything(&bytes);
            bytes.truncate(cut.index(bytes.len() + 1));
            read_anything(&bytes);
            // As answers: the same bytes after a record tag.
            let mut answers = bytes[..4.min(bytes.len())].to_vec();
            answers.push(ANSWER_RECORD);
            answers.extend_from_slice(bytes.get(4..).unwrap_or_default());
            read_anything(&answers);
        }
    }
}
