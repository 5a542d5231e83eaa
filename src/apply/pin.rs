//! Pinning record: writes the identity of the drive used at first boot to primer's state
//! (`var/lib/primer/pinned.json`, 0600 in a 0700 tree) through the one `fs::Writer`, after a
//! run applied the drive. Decides nothing (that is `probe::trust::check_pin`) and writes
//! nothing else.

use std::path::Path;

use super::fs::Writer;
use crate::facts::Meta;
use crate::probe::trust::Pin;
use crate::state::STATE_DIR;

/// The record's path, relative to the target root.
pub fn pin_path() -> String {
    format!("{STATE_DIR}/pinned.json")
}

/// Writes `pin` atomically under `root`.
pub fn apply_pin(root: &Path, pin: &Pin) -> std::io::Result<()> {
    let mut w = Writer::new(root);
    let path = pin_path();
    if let Some((public, _)) = STATE_DIR.rsplit_once('/') {
        w.create_dirs(public, crate::plan::PUBLIC_DIR)?;
    }
    let mut content = serde_json::to_vec_pretty(pin).map_err(std::io::Error::other)?;
    content.push(b'\n');
    let private = crate::plan::private_dir_meta();
    w.write_atomic(
        &path,
        &content,
        Meta {
            mode: 0o600,
            ..private
        },
        private,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::DriveKind;

    #[test]
    fn writes_a_private_record() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let pin = Pin {
            kind: DriveKind::OpenStack,
            device: "sr0".into(),
            partition_guid: None,
            fstype: "iso9660".into(),
            label: Some("config-2".into()),
            instance_id: "i-1".into(),
        };
        apply_pin(t.path(), &pin).unwrap();
        let p = t.path().join(pin_path());
        let back: Pin = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, pin);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let dir = t.path().join(STATE_DIR);
        assert_eq!(
            std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
