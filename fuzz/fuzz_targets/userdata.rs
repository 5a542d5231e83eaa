//! Fuzz target: user data and vendor data (gzip with caps, bounded MIME multipart, starts-with
//! rules, cloud-config YAML into the typed subset, merging). The input is user data, then each
//! vendor file after a `\0VENDOR\0` separator.
//! The harness (primer::harness) checks the invariants; the test suite replays
//! fuzz/seeds/userdata through the same harness.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = primer::harness::userdata(data);
});
