//! cargo-fuzz target for the EWS reply parser: arbitrary bytes go through every
//! reply reader of Tandem's EWS connector (SOAP faults, each operation's response, items,
//! streaming-notification chunks); any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_host::exchange::ews::parse_any_reply(data);
});
