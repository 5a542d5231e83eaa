//! Fuzz harnesses for the source parsers, shared by the cargo-fuzz targets (`fuzz/`) and the test
//! that replays their seed corpora (`tests/fuzz_seeds.rs`), so both run the same code. Each takes
//! arbitrary bytes, builds an in-memory drive, parses it, and checks the invariants: no panic,
//! every error names the device, every warning names its file, the model serialises.
//! Not used by the agent itself; does no I/O.

use crate::media::DriveFiles;
use crate::model::{Instance, Report};

use super::{parse_drive, SourceError};

/// The device name harness drives carry; every error must mention it.
pub const DEVICE: &str = "fuzz";

/// Files a CloudStack input is split into (chunk `i` of the input, split at NUL bytes, becomes
/// file `i`; empty chunks are absent files).
pub const CLOUDSTACK_FILES: &[&str] = &[
    "cloudstack/metadata/vm-id.txt",
    "cloudstack/metadata/instance_id.txt",
    "cloudstack/metadata/local-hostname.txt",
    "cloudstack/metadata/public-keys.txt",
    "cloudstack/metadata/service-offering.txt",
    "cloudstack/userdata/user_data.txt",
    "cloudstack/password/vm_password.txt",
    "cloudstack/password/vm-password-md5checksum.txt",
    "openstack/latest/meta_data.json",
    "openstack/latest/vendor_data.json",
    "cloudstack/metadata/availability_zone.txt",
];

/// Files a NoCloud input is split into, as for [`CLOUDSTACK_FILES`].
pub const NOCLOUD_FILES: &[&str] = &["meta-data", "network-config", "user-data", "vendor-data"];

fn split_into(data: &[u8], names: &[&str]) -> DriveFiles {
    let mut d = DriveFiles::new(DEVICE, "fuzz");
    for (chunk, name) in data.split(|b| *b == 0).zip(names) {
        if !chunk.is_empty() {
            d.files.insert(name.to_string(), chunk.to_vec());
        }
    }
    d
}

/// Checks the invariants of one parse; panics (a fuzz finding) when one is broken.
pub fn check(result: &Result<(Instance, Report), SourceError>) {
    match result {
        Ok((instance, report)) => {
            assert!(!instance.instance_id.is_empty(), "empty instance id");
            for w in &report.warnings {
                assert!(!w.file.is_empty(), "warning without a file: {w}");
            }
            let json = serde_json::to_string(instance);
            assert!(json.is_ok(), "model does not serialise: {json:?}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(DEVICE),
                "error does not name the device: {msg}"
            );
        }
    }
}

/// `openstack/latest/meta_data.json` = the input.
pub fn openstack_meta_data(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = DriveFiles::new(DEVICE, "fuzz");
    d.files
        .insert("openstack/latest/meta_data.json".into(), data.to_vec());
    d.files
        .insert("openstack/content/0000".into(), b"auto lo\n".to_vec());
    let r = parse_drive(&d);
    check(&r);
    r
}

/// A CloudStack drive from NUL-separated chunks (see [`CLOUDSTACK_FILES`]).
pub fn cloudstack(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = split_into(data, CLOUDSTACK_FILES);
    // Detection needs the cloudstack/ tree even when the input dropped every file of it.
    d.files
        .entry("cloudstack/metadata/cloud-name.txt".into())
        .or_insert_with(|| b"fuzz".to_vec());
    let r = parse_drive(&d);
    check(&r);
    r
}

/// `ovf-env.xml` = the input.
pub fn ovf_env(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = DriveFiles::new(DEVICE, "fuzz");
    d.files.insert("ovf-env.xml".into(), data.to_vec());
    let r = parse_drive(&d);
    check(&r);
    r
}

/// A NoCloud seed from NUL-separated chunks (see [`NOCLOUD_FILES`]); the first chunk is always
/// `meta-data`, even when empty, so the drive is a seed.
pub fn nocloud(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = split_into(data, NOCLOUD_FILES);
    d.files.entry("meta-data".into()).or_default();
    let r = parse_drive(&d);
    check(&r);
    r
}
