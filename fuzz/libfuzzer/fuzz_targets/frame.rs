//! libFuzzer entry point of target `frame`: see `slim_fuzz::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slim_fuzz::frame(data));
