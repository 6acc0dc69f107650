//! Tests of the grammar itself: what each writer appends, what the walk and the value view
//! read back, and that malformed bytes are errors, never panics.

use super::*;

/// A record of one field of each kind, written with the primitives.
fn every_kind() -> Vec<u8> {
    let mut out = Vec::new();
    put_record_header(&mut out, 8).expect("fits");
    put_text(&mut out, "null").expect("fits");
    put_null(&mut out);
    put_text(&mut out, "text").expect("fits");
    put_text_value(&mut out, "Zoë").expect("fits");
    put_text(&mut out, "integer").expect("fits");
    put_integer(&mut out, -3);
    put_text(&mut out, "number").expect("fits");
    put_number(&mut out, 2.5);
    put_text(&mut out, "boolean").expect("fits");
    put_boolean(&mut out, true);
    put_text(&mut out, "date-time").expect("fits");
    put_date_time(&mut out, -5, 7);
    put_text(&mut out, "list").expect("fits");
    put_list_header(&mut out, 2).expect("fits");
    put_scalar(&mut out, Scalar::Text("a")).expect("fits");
    put_scalar(
        &mut out,
        Scalar::DateTime {
            seconds: 1,
            nanoseconds: 2,
        },
    )
    .expect("fits");
    put_text(&mut out, "empty list").expect("fits");
    put_list_header(&mut out, 0).expect("fits");
    out
}

/// Walks the one record of `bytes` to its end.
fn walk(bytes: &[u8]) -> Result<Vec<Field<'_>>, Error> {
    let mut reader = Reader::new(bytes);
    let fields = reader.record()?.collect::<Result<Vec<_>, _>>()?;
    assert!(reader.is_empty(), "the walk stops at the record's end");
    Ok(fields)
}

#[test]
fn the_writers_append_what_the_grammar_says() {
    let mut out = Vec::new();
    put_text_value(&mut out, "ab").expect("fits");
    assert_eq!(out, [tag::TEXT, 2, 0, 0, 0, b'a', b'b']);
    out.clear();
    put_integer(&mut out, -2);
    assert_eq!(out, [&[tag::INTEGER][..], &(-2i64).to_le_bytes()].concat());
    out.clear();
    put_number(&mut out, 0.5);
    assert_eq!(out, [&[tag::NUMBER][..], &0.5f64.to_le_bytes()].concat());
    out.clear();
    put_boolean(&mut out, false);
    assert_eq!(out, [tag::BOOLEAN, 0]);
    out.clear();
    put_date_time(&mut out, 1, 2);
    assert_eq!(out, [tag::DATE_TIME, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
    out.clear();
    put_list_header(&mut out, 3).expect("fits");
    assert_eq!(out, [tag::LIST, 3, 0, 0, 0]);
    out.clear();
    put_answer_header(&mut out, Answer::InvalidRecord);
    assert_eq!(out, [1]);

    let mut batch = Vec::new();
    put_u32(&mut batch, 0);
    set_count(&mut batch, 7);
    assert_eq!(batch, 7u32.to_le_bytes());
    set_count(&mut [0u8; 2], 7); // too short: left alone, no panic
}

#[cfg(target_pointer_width = "64")]
#[test]
fn lengths_of_4_gi_or_more_are_refused_and_append_nothing() {
    let too_long = u32::MAX as usize + 1;
    let mut out = Vec::new();
    assert_eq!(put_len(&mut out, too_long), Err(Error::TooLong(too_long)));
    assert_eq!(
        put_list_header(&mut out, too_long),
        Err(Error::TooLong(too_long))
    );
    assert_eq!(
        put_record_header(&mut out, too_long),
        Err(Error::TooLong(too_long))
    );
    assert!(out.is_empty());
    assert!(put_len(&mut out, u32::MAX as usize).is_ok());
}

#[test]
fn a_walk_finds_each_name_and_value_and_the_view_decodes_them() {
    let bytes = every_kind();
    let fields = walk(&bytes).expect("well formed");
    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "null",
            "text",
            "integer",
            "number",
            "boolean",
            "date-time",
            "list",
            "empty list"
        ]
    );
    for field in &fields {
        let range = field.name_range();
        assert_eq!(
            &bytes[range.start as usize..range.end as usize],
            field.name.as_bytes()
        );
    }
    let value = |i: usize| {
        let range = fields[i].value.clone();
        read_value(&bytes[range.start as usize..range.end as usize]).expect("checked")
    };
    let scalar = |i: usize| match value(i) {
        ValueView::Scalar(s) => s,
        ValueView::List(_) => panic!("field {i} is a list"),
    };
    assert_eq!(scalar(0), Scalar::Null);
    assert_eq!(scalar(1), Scalar::Text("Zoë"));
    assert_eq!(scalar(2), Scalar::Integer(-3));
    assert_eq!(scalar(3), Scalar::Number(2.5));
    assert_eq!(scalar(4), Scalar::Boolean(true));
    assert_eq!(
        scalar(5),
        Scalar::DateTime {
            seconds: -5,
            nanoseconds: 7
        }
    );
    let ValueView::List(items) = value(6) else {
        panic!("a list")
    };
    assert_eq!(items.capacity_hint(), 2);
    let items: Vec<Scalar<'_>> = items.collect::<Result<_, _>>().expect("checked");
    assert_eq!(
        items,
        [
            Scalar::Text("a"),
            Scalar::DateTime {
                seconds: 1,
                nanoseconds: 2
            }
        ]
    );
    assert!(matches!(value(7), ValueView::List(items) if items.size_hint() == (0, Some(0))));

    let holding: Vec<bool> = fields.iter().map(|f| f.holds_date_time).collect();
    assert_eq!(
        holding,
        [false, false, false, false, false, true, true, false]
    );
}

#[test]
fn every_cut_of_a_record_is_an_error_never_a_panic() {
    let bytes = every_kind();
    for cut in 0..bytes.len() {
        let error = walk(&bytes[..cut]).expect_err("cut short");
        assert!(
            matches!(error, Error::EndsInValue | Error::EndsInText),
            "cut at {cut}: {error}"
        );
    }
}

#[test]
fn unknown_tags_nested_lists_and_bad_utf8_are_errors() {
    let field = |value: &[u8]| {
        let mut out = Vec::new();
        put_record_header(&mut out, 1).expect("fits");
        put_text(&mut out, "f").expect("fits");
        out.extend_from_slice(value);
        out
    };
    let cases: [(&[u8], Error); 5] = [
        (&[9], Error::UnknownValueTag(9)),
        (&[tag::LIST, 1, 0, 0, 0, 7], Error::UnknownValueTag(7)),
        (&[tag::LIST, 1, 0, 0, 0, tag::LIST], Error::ListInList),
        (&[tag::TEXT, 5, 0, 0, 0, b'x'], Error::EndsInText),
        (&[tag::INTEGER, 1], Error::EndsInValue),
    ];
    for (value, expected) in cases {
        assert_eq!(walk(&field(value)), Err(expected), "{value:?}");
    }
    // Invalid UTF-8 in a text and in a name, alone and after a whole ASCII word.
    for text in [&b"\xff"[..], b"eight by\xff", b"ab\xc3cdefghij"] {
        let mut value = vec![tag::TEXT];
        value.extend_from_slice(&(text.len() as u32).to_le_bytes());
        value.extend_from_slice(text);
        assert!(matches!(walk(&field(&value)), Err(Error::NotUtf8(_))));
        let mut name = 1u32.to_le_bytes().to_vec();
        name.extend_from_slice(&value[1..]);
        name.push(tag::NULL);
        assert!(matches!(walk(&name), Err(Error::NotUtf8(_))));
    }
    // Non-ASCII names and texts in a batch that isn't all ASCII are read.
    let mut ok = Vec::new();
    put_record_header(&mut ok, 1).expect("fits");
    put_text(&mut ok, "Zoë").expect("fits");
    put_text_value(&mut ok, "ünïcödé").expect("fits");
    assert_eq!(walk(&ok).expect("UTF-8")[0].name, "Zoë");
}

#[test]
fn a_hostile_count_reserves_little() {
    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 20]);
    let mut reader = Reader::new(&bytes);
    let fields = reader.record().expect("a count");
    assert_eq!(fields.capacity_hint(), 4);
    assert!(matches!(
        read_value(&[tag::LIST, 0xff, 0xff, 0xff, 0xff, 0]),
        Ok(ValueView::List(items)) if items.capacity_hint() == 1
    ));
}

#[test]
fn a_bad_item_ends_a_list() {
    let ValueView::List(items) =
        read_value(&[tag::LIST, 3, 0, 0, 0, tag::NULL, 9, tag::NULL]).expect("a list")
    else {
        panic!("a list")
    };
    let items: Vec<_> = items.collect();
    assert_eq!(items, [Ok(Scalar::Null), Err(Error::UnknownValueTag(9))]);
}

#[test]
fn answers_and_reads_of_each_width() {
    for answer in [Answer::Record, Answer::InvalidRecord, Answer::Other] {
        assert_eq!(Answer::from_tag(answer.tag()), Some(answer));
        let tag = [answer.tag()];
        assert_eq!(Reader::new(&tag).answer(), Ok(answer));
    }
    assert_eq!(Reader::new(&[3]).answer(), Err(Error::UnknownAnswerTag(3)));
    assert_eq!(Reader::new(&[]).answer(), Err(Error::EndsInValue));

    let bytes = [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9];
    let mut reader = Reader::new(&bytes);
    assert_eq!(reader.u32(), Ok(1));
    assert_eq!(reader.offset(), 4);
    assert_eq!(reader.i64(), Ok(2));
    assert_eq!(reader.rest(), [9]);
    assert_eq!(reader.u32(), Err(Error::EndsInValue));
    assert_eq!(reader.u8(), Ok(9));
    assert!(reader.is_empty());
}

#[test]
fn blank_and_text_of_look_at_the_tag() {
    let mut text = Vec::new();
    put_text_value(&mut text, "x").expect("fits");
    let mut empty = Vec::new();
    put_text_value(&mut empty, "").expect("fits");
    assert!(is_blank(&[tag::NULL]) && is_blank(&empty));
    assert!(!is_blank(&text) && !is_blank(&[tag::INTEGER, 0]) && !is_blank(&[]));
    assert_eq!(text_of(&text), Some("x"));
    assert_eq!(text_of(&empty), Some(""));
    assert_eq!(text_of(&[tag::NULL]), None);
    assert_eq!(text_of(&[tag::TEXT, 9]), None);
}

#[test]
fn the_ascii_check_agrees_with_the_standard_one() {
    let samples: [&[u8]; 6] = [
        b"",
        b"short",
        b"exactly8",
        b"sixteen bytes!!!",
        b"ASCII then \xc3\xbc",
        b"\x80 first",
    ];
    for sample in samples {
        assert_eq!(is_ascii(sample), sample.is_ascii(), "{sample:?}");
    }
}

#[test]
fn errors_say_what_is_wrong() {
    assert_eq!(
        Error::EndsInValue.to_string(),
        "the bytes end in the middle of a value"
    );
    assert_eq!(Error::ListInList.to_string(), "a list inside a list");
    assert_eq!(Error::UnknownValueTag(9).to_string(), "unknown value tag 9");
    let invalid = vec![0xff];
    let not_utf8 = std::str::from_utf8(&invalid).expect_err("invalid");
    assert!(
        Error::NotUtf8(not_utf8)
            .to_string()
            .starts_with("a text is not UTF-8: ")
    );
}
