//! Fuzz target: see `ordo_fuzz::time_parser`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::time_parser(data));
