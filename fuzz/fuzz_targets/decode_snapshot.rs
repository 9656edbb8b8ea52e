#![no_main]

use objsync_testkit::fuzz as harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::decode::snapshot(data));
