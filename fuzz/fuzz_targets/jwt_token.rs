#![no_main]
// The body and its invariants: src/fuzzing/ (wpgate::fuzzing::jwt_token).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wpgate::fuzzing::jwt_token(data));
