#![no_main]
// The body and its invariants: src/fuzzing/ (wpgate::fuzzing::api_key).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wpgate::fuzzing::api_key(data));
