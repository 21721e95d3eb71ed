//! libFuzzer entry point of target `relay`: see `slim_fuzz::relay`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slim_fuzz::relay(data));
