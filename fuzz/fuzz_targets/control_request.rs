#![no_main]
//! `cargo +nightly fuzz run control_request`: see shoal_tests::fuzz::control_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzz::control_request(data));
