#![no_main]
// The body and its invariants: src/fuzzing/ (wpgate::fuzzing::keyring).
libfuzzer_sys::fuzz_target!(|data: &[u8]| wpgate::fuzzing::keyring(data));
