#![no_main]
// The body and its invariants: src/fuzzing/ (wpgate::fuzzing::sealed).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wpgate::fuzzing::sealed(data));
