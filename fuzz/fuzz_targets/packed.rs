//! cargo-fuzz target for the packed record format both sides of the plugin boundary read
//! (`tandem-packed`): arbitrary bytes go through the reader as a batch of records and as
//! answers, every record walked and every value viewed; any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_packed::{Answer, Reader, ValueView, is_blank, read_value, text_of};

/// Views every value of the record at `reader`'s position; `Err` when the bytes are broken.
fn walk_record(bytes: &[u8], reader: &mut Reader<'_>) -> Result<(), tandem_packed::Error> {
    let fields = reader.record()?;
    let _ = fields.capacity_hint();
    for field in fields {
        let field = field?;
        let name = field.name_range();
        assert_eq!(
            bytes.get(name.start as usize..name.end as usize),
            Some(field.name.as_bytes()),
            "the name's range holds the name"
        );
        let value = bytes
            .get(field.value.start as usize..field.value.end as usize)
            .expect("a value's range is inside the bytes");
        let _ = (is_blank(value), text_of(value));
        match read_value(value).expect("a walked value reads") {
            ValueView::Scalar(_) => {}
            ValueView::List(items) => {
                for item in items {
                    item.expect("a walked list's items read");
                }
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // As a batch of records.
    let mut reader = Reader::new(data);
    if let Ok(count) = reader.u32() {
        for _ in 0..count {
            if walk_record(data, &mut reader).is_err() {
                break;
            }
        }
    }
    // As answers.
    let mut reader = Reader::new(data);
    if let Ok(count) = reader.u32() {
        for _ in 0..count {
            let answer = match reader.answer() {
                Ok(Answer::Record) => walk_record(data, &mut reader),
                Ok(Answer::InvalidRecord | Answer::Other) => reader.text().map(drop),
                Err(e) => Err(e),
            };
            if answer.is_err() {
                break;
            }
        }
    }
    // As one value.
    if let Ok(ValueView::List(items)) = read_value(data) {
        items.for_each(drop);
    }
});
