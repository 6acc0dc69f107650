//! Fuzz target: the Siebel emulator's searchspec parser and evaluator must not panic on any
//! input ("Robustness").
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expr) = tandem_sim::siebel::parse_searchspec(text) {
        let record = BTreeMap::from([
            ("Last Name".to_owned(), "O'Brien".to_owned()),
            ("Updated".to_owned(), "11/25/2026 10:30:00".to_owned()),
        ]);
        let _ = expr.matches(&|name| record.get(name).map(String::as_str));
    }
});
