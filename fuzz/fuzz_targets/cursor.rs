//! Cursor parsing (`protocol::client::parse_cursor`, SSE `Last-Event-ID`): any text gives a
//! non-negative seq or nothing, never a panic.
#![no_main]

use chorus::protocol::client::parse_cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(seq) = parse_cursor(text) {
            assert!(seq.get() >= 0);
        }
    }
});
