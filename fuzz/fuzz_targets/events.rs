//! The events parsers (CSV and NDJSON, every preset) on arbitrary bytes: never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| attune::ingest::fuzz_events(data));
