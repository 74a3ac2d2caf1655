#![no_main]
// The body and its invariants: src/fuzzing/ (wpgate::fuzzing::request_path).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wpgate::fuzzing::request_path(data));
