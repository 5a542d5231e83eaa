//! Fuzz target: the previous run's record (`applied.json`, a file on the target that anyone root on the guest can edit) over arbitrary bytes: steps read into one buffer and index (`state::Steps`), checked against a map's reading.
//! The harness (primer::harness) checks the invariants; the test suite replays
//! fuzz/seeds/record through the same harness.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = primer::harness::record(data);
});
