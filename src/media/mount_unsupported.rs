//! Mount mode (`--mount`) where the kernel mount is not available (Windows): the same two names
//! as `mount.rs`, refusing with a typed error. Mounting is Linux by design; the user-space
//! readers are the way everywhere else. Never mounts or reads anything.

use std::path::{Path, PathBuf};

use super::{DriveFiles, Limits, MediaError};

/// The temporary directory (unused: nothing is mounted here).
pub fn default_base() -> PathBuf {
    std::env::temp_dir()
}

/// Refuses: mount mode is Linux-only.
pub fn read_mounted(
    device: &Path,
    _fstype: &str,
    _label: Option<String>,
    _base: &Path,
    _limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    Err(MediaError::Mount {
        device: device.display().to_string(),
        detail: "not supported on Windows yet: --mount (the user-space readers need no mount)"
            .to_string(),
    })
}
