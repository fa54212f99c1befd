//! The feature spec parser on arbitrary text: never a panic; an accepted spec computes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| attune::features::fuzz_spec(data));
