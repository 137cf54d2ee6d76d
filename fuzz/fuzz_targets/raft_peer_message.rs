#![no_main]
//! `cargo +nightly fuzz run raft_peer_message`: see shoal_tests::fuzz::raft_peer_message.

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzz::raft_peer_message(data));
