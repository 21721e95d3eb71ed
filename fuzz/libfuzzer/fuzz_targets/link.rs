//! libFuzzer entry point of target `link`: see `slim_fuzz::link`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slim_fuzz::link(data));
