#![no_main]
//! `cargo +nightly fuzz run certificate`: see shoal_tests::fuzz::certificate.

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzz::certificate(data));
