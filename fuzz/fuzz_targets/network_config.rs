//! Fuzz target: network config v1/v2 YAML (or JSON) bytes (after one selector byte) into the network model,
//! then every renderer; the checks are in `network_common.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use primer::net::InputFormat;

#[path = "network_common.rs"]
mod network_common;

fuzz_target!(|data: &[u8]| network_common::run(data, InputFormat::NetworkConfig));
