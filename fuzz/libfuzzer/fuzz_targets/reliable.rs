//! libFuzzer entry point of target `reliable`: see `slim_fuzz::reliable`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slim_fuzz::reliable(data));
