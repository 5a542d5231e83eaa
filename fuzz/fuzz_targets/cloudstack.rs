//! Fuzz target: the CloudStack source (cloudstack/ metadata, user data, password + MD5, merged openstack/latest) over NUL-separated file chunks.
//! The harness (primer::harness) checks the invariants; the test suite replays
//! fuzz/seeds/cloudstack through the same harness.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = primer::harness::cloudstack(data);
});
