//! Fuzz target: the OVF source over arbitrary ovf-env.xml bytes (namespace matching, DOCTYPE refusal, base64 user-data and network-config).
//! The harness (primer::harness) checks the invariants; the test suite replays
//! fuzz/seeds/ovf through the same harness.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = primer::harness::ovf_env(data);
});
