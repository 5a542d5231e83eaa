//! Fuzz target: arbitrary user data and vendor data (split at `\0VENDOR\0`) planned against a
//! Debian-like target with a default user and a drive password (`harness::plan_user_data`):
//! no panic, deterministic, every path inside the root, the password never in the plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use primer::harness;

fuzz_target!(|data: &[u8]| {
    harness::plan_user_data(data);
});
