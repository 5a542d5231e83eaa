//! Linux probe: enumerates `/sys/class/block` (whole disks, partitions, `sr*`, attached `loop*`)
//! and reads each device's ISO9660 label straight from the device node. No blkid, no udev
//! database, no mount. Both roots (sysfs and /dev) can be redirected for tests.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{match_signature, rank_candidates, BlockDevice, Candidate, DeviceClass, Signature};
use crate::media::iso9660::read_iso9660_label;

/// Where to look: `sys` is the sysfs mount (`/sys`), `dev` the device directory (`/dev`).
#[derive(Debug, Clone)]
pub struct ProbeRoots {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Default for ProbeRoots {
    fn default() -> Self {
        ProbeRoots {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

fn read_attr(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Lists the block devices in sysfs that could hold a filesystem, sorted by name.
/// Skipped: devices of size 0 (empty CD-ROM drives, detached loops), ram and zram devices.
pub fn probe_devices(roots: &ProbeRoots) -> Vec<BlockDevice> {
    let class = roots.sys.join("class/block");
    let Ok(rd) = fs::read_dir(&class) else {
        tracing::debug!("{}: cannot list block devices", class.display());
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("ram") || name.starts_with("zram") {
            continue;
        }
        let sys = class.join(&name);
        let sectors: u64 = read_attr(&sys.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if sectors == 0 {
            tracing::debug!(device = %name, "size 0 (no medium or detached): skipped");
            continue;
        }
        let is_partition = sys.join("partition").exists();
        let backing_file = read_attr(&sys.join("loop/backing_file"));
        if name.starts_with("loop") && backing_file.is_none() {
            continue;
        }
        let class = if is_partition {
            DeviceClass::Partition
        } else if name.starts_with("sr") {
            DeviceClass::CdRom
        } else if name.starts_with("loop") {
            DeviceClass::Loop
        } else {
            DeviceClass::Disk
        };
        // The parent of a partition is the directory above it in the resolved sysfs path.
        let parent = if is_partition {
            fs::canonicalize(&sys).ok().and_then(|p| {
                p.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
        } else {
            None
        };
        out.push(BlockDevice {
            path: roots.dev.join(&name).display().to_string(),
            name,
            class,
            // sysfs `size` is always in 512-byte units, whatever the logical sector size.
            size_bytes: sectors.saturating_mul(512),
            read_only: read_attr(&sys.join("ro")).as_deref() == Some("1"),
            removable: read_attr(&sys.join("removable")).as_deref() == Some("1"),
            parent,
            backing_file,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Reads a device's filesystem signature. `None` when it cannot be opened or read (logged at
/// debug level) or holds nothing primer recognises.
pub fn read_signature(dev: &BlockDevice) -> Option<Signature> {
    let mut f = match File::open(&dev.path) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(device = %dev.path, "cannot open: {e}; skipped");
            return None;
        }
    };
    match read_iso9660_label(&mut f) {
        Ok(Some(label)) => Some(Signature {
            fstype: "iso9660".into(),
            label: if label.is_empty() { None } else { Some(label) },
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(device = %dev.path, "cannot read: {e}; skipped");
            None
        }
    }
}

/// The whole probe: devices, signatures, ranked candidates.
pub fn probe(roots: &ProbeRoots) -> (Vec<BlockDevice>, Vec<Candidate>) {
    let devices = probe_devices(roots);
    let found = devices
        .iter()
        .filter_map(|d| read_signature(d).and_then(|s| match_signature(d, &s)))
        .collect();
    (devices, rank_candidates(found))
}
