//! State: where primer keeps its private copy of the drive and its per-instance record of what
//! was applied, and the content hash that identifies a drive. Layout and types only; the files
//! are written by `apply` (the only writer) from steps that `plan` chose.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A path inside primer's state directory, relative to the target root, as a `&'static str`
/// constant: `state_path!()` is the directory itself, `state_path!("lock")` a file in it. The
/// base is the target system's: `var/lib/primer` on Linux; `ProgramData/primer` on Windows,
/// i.e. `%ProgramData%\primer` with the system drive (`C:\`) as the root, readable by SYSTEM
/// and Administrators only. Chosen by the target OS when primer is compiled, so it is data to
/// the planner (which stays pure and identical everywhere) and Linux keeps its exact layout.
/// Every state path derives from this one definition (the run lock, the growth request, the
/// reclaim record, the key, status, pin, instances).
macro_rules! state_path {
    () => {
        if cfg!(windows) {
            "ProgramData/primer"
        } else {
            "var/lib/primer"
        }
    };
    ($file:literal) => {
        if cfg!(windows) {
            concat!("ProgramData/primer/", $file)
        } else {
            concat!("var/lib/primer/", $file)
        }
    };
}
pub(crate) use state_path;

/// Root of primer's state, relative to the target root (see [`state_path`]).
pub const STATE_DIR: &str = state_path!();

/// primer's per-machine key for keyed digests of secrets (32 random bytes, mode 0600),
/// relative to the root.
pub const KEY_PATH: &str = state_path!("secret");

/// The directory holding one directory per instance (relative to the target root).
pub fn instances_dir() -> String {
    format!("{STATE_DIR}/instance")
}

/// The per-instance directory (relative to the target root).
pub fn instance_dir(instance_id: &str) -> String {
    format!("{}/{instance_id}", instances_dir())
}

/// The pinning record (the drive used at first boot), relative to the target root.
pub fn pin_path() -> String {
    format!("{STATE_DIR}/pinned.json")
}

/// What the last `primer run` did (see `status::Status`); relative to the target root.
pub fn status_path() -> String {
    format!("{STATE_DIR}/status.json")
}

/// Where the drive's files are copied.
pub fn drive_copy_dir(instance_id: &str) -> String {
    format!("{}/drive", instance_dir(instance_id))
}

pub fn instance_json_path(instance_id: &str) -> String {
    format!("{}/instance.json", instance_dir(instance_id))
}

pub fn record_path(instance_id: &str) -> String {
    format!("{}/applied.json", instance_dir(instance_id))
}

/// What this instance set out to create, written durably before it is created (JSON object:
/// step id -> the input's hash, as in `Record::steps`). The record is written last, so without
/// it a run stopped after an account was made but before the record would leave an account the
/// next run takes for the image's (no home completed, no sudo rule). Only ever read as "this
/// instance's own, if it exists": an intent never makes anything count as done.
pub fn intent_path(instance_id: &str) -> String {
    format!("{}/intent.json", instance_dir(instance_id))
}

/// An instance id is used as a directory name: it must be a single safe path component.
/// Returns why not, when it is not.
pub fn invalid_instance_id(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("empty")
    } else if id.len() > 128 {
        Some("longer than 128 bytes")
    } else if id == "." || id == ".." || id.starts_with('.') {
        Some("starts with a dot")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'+'))
    {
        Some("contains a character other than A-Z a-z 0-9 - _ . : @ +")
    } else {
        None
    }
}

/// Hex SHA-256 (lower case), in one allocation: formatting byte by byte cost ~30 allocations
/// per digest, and every step's input and every written file is digested.
pub fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&Sha256::digest(data))
}

/// `bytes` as lower-case hex, in one allocation.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// What was applied for one instance: read by the next run's planner (and `primer status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub instance_id: String,
    pub format: String,
    pub version: String,
    pub drive_sha256: String,
    /// Step id -> hash of the input the step applied (e.g. the hostname, the key list).
    /// A step whose input is unchanged since it was applied is not re-applied over local edits.
    pub steps: BTreeMap<String, String>,
}

impl Record {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digests() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let d = Sha256::digest(b"abc");
        let formatted: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sha256_hex(b"abc"), formatted);
    }

    #[test]
    fn instance_ids() {
        assert!(invalid_instance_id("83679162-1378-4288-a2d4-70e13ec132aa").is_none());
        assert!(invalid_instance_id("i-0000002a").is_none());
        assert!(invalid_instance_id("../etc").is_some());
        assert!(invalid_instance_id("a/b").is_some());
        assert!(invalid_instance_id("..").is_some());
        assert!(invalid_instance_id("").is_some());
    }

    #[test]
    fn layout() {
        let base = if cfg!(windows) {
            "ProgramData/primer"
        } else {
            "var/lib/primer"
        };
        assert_eq!(STATE_DIR, base);
        assert_eq!(instance_dir("i-1"), format!("{base}/instance/i-1"));
        assert_eq!(drive_copy_dir("i-1"), format!("{base}/instance/i-1/drive"));
        assert_eq!(status_path(), format!("{base}/status.json"));
        assert_eq!(KEY_PATH, format!("{base}/secret"));
        assert_eq!(state_path!("lock"), format!("{base}/lock"));
    }

    /// Linux's layout is the one every Linux image and tool knows: byte for byte.
    #[cfg(not(windows))]
    #[test]
    fn linux_state_stays_under_var_lib_primer() {
        assert_eq!(STATE_DIR, "var/lib/primer");
        assert_eq!(KEY_PATH, "var/lib/primer/secret");
        assert_eq!(status_path(), "var/lib/primer/status.json");
        assert_eq!(pin_path(), "var/lib/primer/pinned.json");
    }
}
