//! Fuzz target: see `ordo_fuzz::ndjson_parser`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::ndjson_parser(data));
