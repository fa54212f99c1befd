//! The `/v1/events` body parser and the event mapping on arbitrary bytes: never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| attune::jobs::sources::http::fuzz_body(data));
