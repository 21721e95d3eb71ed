//! libFuzzer entry point of target `config`: see `slim_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slim_fuzz::config(data));
