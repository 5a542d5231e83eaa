//! Pinning record: stages the identity of the drive used at first boot to primer's state
//! (`var/lib/primer/pinned.json`, 0600 in a 0700 tree) through the one `fs::Writer`, as the
//! plan's `pin` step, after every other step landed. Decides nothing (that is
//! `probe::trust::check_pin`, and `plan::add_pin` makes the step) and writes nothing else.

use super::fs::Writer;

/// Stages the pinning record `content` at `path` (relative to the writer's root) for the
/// writer's next commit: `apply_plan` commits it after the record, in the same flush.
pub fn stage_pin(w: &mut Writer, tag: usize, path: &str, content: &[u8]) -> std::io::Result<()> {
    super::stage_state(w, tag, path, content)
}

// POSIX modes: these tests run where they exist.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::probe::trust::Pin;
    use crate::probe::DriveKind;
    use crate::state::{pin_path, STATE_DIR};

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
        let mut w = Writer::new(t.path());
        stage_pin(&mut w, 0, &pin_path(), &content).unwrap();
        assert!(w.commit().is_empty());
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
