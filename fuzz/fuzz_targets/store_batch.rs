#![no_main]
//! `cargo +nightly fuzz run store_batch`: see shoal_tests::fuzz::store_batch.

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzz::store_batch(data));
