#![no_main]
// The body and its invariants: src/fuzzing/ (wpgate::fuzzing::config).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wpgate::fuzzing::config(data));
