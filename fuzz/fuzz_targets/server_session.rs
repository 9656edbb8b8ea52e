#![no_main]

// Each target uses one part of the shared harness; the rest is compiled but unused here.
#[allow(dead_code)]
#[path = "../../tests/fuzz_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::session::run(data));
