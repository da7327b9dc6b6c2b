//! Fuzz target: see `ordo_fuzz::record_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::record_decoder(data));
