//! Fuzz target: the NoCloud source over NUL-separated meta-data / network-config / user-data / vendor-data (YAML budgets, duplicate keys).
//! The harness (primer::harness) checks the invariants; the test suite replays
//! fuzz/seeds/nocloud through the same harness.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = primer::harness::nocloud(data);
});
