//! Probe: lists block devices and ranks the ones that look like a config drive, each with the
//! reason it matched. Reading is limited to sysfs attributes and one small superblock read per
//! device; nothing is mounted or written, and an unreadable device is skipped, never an error.

pub mod linux;

use serde::Serialize;

/// What kind of block device it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    /// Optical drive (`sr*`): read-only media, the classic config-drive attachment.
    CdRom,
    /// A whole disk (`vdb`, `sdb`, `nvme1n1`).
    Disk,
    /// A loop device with a backing file.
    Loop,
    /// A partition of a disk.
    Partition,
}

/// A block device as seen in sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name (`vdb`, `sr0`, `loop3`, `vda2`).
    pub name: String,
    /// Device node (`/dev/vdb`, or under a redirected dev root).
    pub path: String,
    pub class: DeviceClass,
    pub size_bytes: u64,
    pub read_only: bool,
    pub removable: bool,
    /// For a partition, the whole disk it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a loop device, its backing file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
}

/// The config-drive kind a candidate was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriveKind {
    OpenStack,
}

/// What was found on one device (filesystem type and label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub fstype: String,
    pub label: Option<String>,
}

/// A device that looks like a config drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub kind: DriveKind,
    pub device: BlockDevice,
    pub fstype: String,
    pub label: Option<String>,
    /// Why it matched: "label CONFIG-2 on /dev/loop3 (iso9660)".
    pub reason: String,
}

/// Recognises one device's signature; `None` when it is not a config drive.
pub fn match_signature(dev: &BlockDevice, sig: &Signature) -> Option<Candidate> {
    let label = sig.label.as_deref()?;
    let kind = if label.eq_ignore_ascii_case("config-2") {
        DriveKind::OpenStack
    } else {
        return None;
    };
    Some(Candidate {
        kind,
        device: dev.clone(),
        fstype: sig.fstype.clone(),
        label: Some(label.to_string()),
        reason: format!("label {label} on {} ({})", dev.path, sig.fstype),
    })
}

/// Orders candidates best first, deterministically: read-only media and whole devices before
/// partitions (a tenant can attach a disk but the cloud attaches the CD-ROM), then by name.
pub fn rank_candidates(mut found: Vec<Candidate>) -> Vec<Candidate> {
    found.sort_by(|a, b| {
        (a.kind, a.device.class, !a.device.read_only, &a.device.name).cmp(&(
            b.kind,
            b.device.class,
            !b.device.read_only,
            &b.device.name,
        ))
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, class: DeviceClass) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            path: format!("/dev/{name}"),
            class,
            size_bytes: 1 << 20,
            read_only: class == DeviceClass::CdRom,
            removable: false,
            parent: None,
            backing_file: None,
        }
    }

    fn sig(label: &str) -> Signature {
        Signature {
            fstype: "iso9660".into(),
            label: Some(label.into()),
        }
    }

    #[test]
    fn labels() {
        let d = dev("loop3", DeviceClass::Loop);
        let c = match_signature(&d, &sig("CONFIG-2")).unwrap();
        assert_eq!(c.kind, DriveKind::OpenStack);
        assert_eq!(c.reason, "label CONFIG-2 on /dev/loop3 (iso9660)");
        assert!(match_signature(&d, &sig("config-2")).is_some());
        assert!(match_signature(&d, &sig("cidata")).is_none());
        assert!(match_signature(
            &d,
            &Signature {
                fstype: "iso9660".into(),
                label: None
            }
        )
        .is_none());
    }

    #[test]
    fn ranking_is_deterministic() {
        let s = sig("config-2");
        let c = |n, k| match_signature(&dev(n, k), &s).unwrap();
        let ranked = rank_candidates(vec![
            c("vda2", DeviceClass::Partition),
            c("vdb", DeviceClass::Disk),
            c("sr0", DeviceClass::CdRom),
            c("loop1", DeviceClass::Loop),
            c("loop0", DeviceClass::Loop),
        ]);
        let names: Vec<_> = ranked.iter().map(|c| c.device.name.as_str()).collect();
        assert_eq!(names, ["sr0", "vdb", "loop0", "loop1", "vda2"]);
    }
}
