#![no_main]
//! `cargo +nightly fuzz run join_token`: see shoal_tests::fuzz::join_token.

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzz::join_token(data));
