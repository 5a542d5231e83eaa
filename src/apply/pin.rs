//! Pinning record: writes the identity of the drive used at first boot to primer's state
//! (`var/lib/primer/pinned.json`, 0600 in a 0700 tree) through the one `fs::Writer`, as the
//! plan's `pin` step, after every other step landed. Decides nothing (that is
//! `probe::trust::check_pin`, and `plan::add_pin` makes the step) and writes nothing else.

use super::fs::Writer;
use crate::facts::Meta;
use crate::state::STATE_DIR;

/// Writes the pinning record `content` atomically at `path` (relative to the writer's root).
pub fn write_pin(w: &mut Writer, path: &str, content: &[u8]) -> std::io::Result<()> {
    if let Some((public, _)) = STATE_DIR.rsplit_once('/') {
        w.create_dirs(public, crate::plan::PUBLIC_DIR)?;
    }
    let private = crate::plan::private_dir_meta();
    w.write_atomic(
        path,
        content,
        Meta {
            mode: 0o600,
            ..private
        },
        private,
    )
}

/// Stages the pinning record like `write_pin`, for the writer's next commit (`apply_plan`
/// commits it with the record, in one flush).
pub fn stage_pin(w: &mut Writer, tag: usize, path: &str, content: &[u8]) -> std::io::Result<()> {
    if let Some((public, _)) = STATE_DIR.rsplit_once('/') {
        w.create_dirs(public, crate::plan::PUBLIC_DIR)?;
    }
    let private = crate::plan::private_dir_meta();
    w.stage(
        tag,
        path,
        content,
        Meta {
            mode: 0o600,
            ..private
        },
        private,
    )
}

// POSIX modes: these tests run where they exist.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::probe::trust::Pin;
    use crate::probe::DriveKind;
    use crate::state::pin_path;

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
        let mut content = serde_json::to_vec_pretty(&pin).unwrap();
        content.push(b'\n');
        write_pin(&mut Writer::new(t.path()), &pin_path(), &content).unwrap();
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
