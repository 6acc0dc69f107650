//! Fuzz target: the Siebel connector's reply parser must not panic on any bytes a server
//! could send ("Robustness").
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tandem_host::siebel::parse_query_reply(data);
});
