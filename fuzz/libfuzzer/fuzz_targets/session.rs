//! libFuzzer entry point of target `session`: see `slim_fuzz::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slim_fuzz::session(data));
