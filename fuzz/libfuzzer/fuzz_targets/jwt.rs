//! libFuzzer entry point of target `jwt`: see `slim_fuzz::jwt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slim_fuzz::jwt(data));
