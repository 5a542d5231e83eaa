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

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer holding just an ISO9660 primary volume descriptor with `label`.
    fn pvd(label: &str) -> Vec<u8> {
        let mut b = vec![0u8; 18 * 2048];
        let d = &mut b[16 * 2048..17 * 2048];
        d[0] = 1;
        d[1..6].copy_from_slice(b"CD001");
        d[6] = 1;
        let mut id = [b' '; 32];
        id[..label.len()].copy_from_slice(label.as_bytes());
        d[40..72].copy_from_slice(&id);
        b
    }

    fn attr(dir: &Path, name: &str, value: &str) {
        fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        fs::write(dir.join(name), value).unwrap();
    }

    #[test]
    fn fake_sysfs_and_dev() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        let dev = t.path().join("dev");
        fs::create_dir_all(&dev).unwrap();
        let block = sys.join("class/block");
        // loop0: attached, holds a config drive. loop1: detached. sr0: no medium.
        attr(&block.join("loop0"), "size", "72\n");
        attr(&block.join("loop0"), "ro", "1\n");
        attr(
            &block.join("loop0"),
            "loop/backing_file",
            "/images/drive.iso\n",
        );
        fs::write(dev.join("loop0"), pvd("CONFIG-2")).unwrap();
        attr(&block.join("loop1"), "size", "0\n");
        attr(&block.join("sr0"), "size", "0\n");
        // vdb: a disk whose node is missing in /dev: skipped at read time, never an error.
        attr(&block.join("vdb"), "size", "2048\n");
        // vdc: a disk with another label.
        attr(&block.join("vdc"), "size", "72\n");
        fs::write(dev.join("vdc"), pvd("cidata")).unwrap();
        // vda1: a partition.
        attr(&block.join("vda1"), "size", "72\n");
        attr(&block.join("vda1"), "partition", "1\n");
        fs::write(dev.join("vda1"), pvd("config-2")).unwrap();
        attr(&block.join("ram0"), "size", "8192\n");

        let roots = ProbeRoots {
            sys,
            dev: dev.clone(),
        };
        let (devices, candidates) = probe(&roots);
        let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["loop0", "vda1", "vdb", "vdc"]);
        assert_eq!(
            devices[0].backing_file.as_deref(),
            Some("/images/drive.iso")
        );
        assert!(devices[0].read_only);
        assert_eq!(devices[0].size_bytes, 72 * 512);
        assert_eq!(devices[1].class, DeviceClass::Partition);
        let got: Vec<(&str, &str)> = candidates
            .iter()
            .map(|c| (c.device.name.as_str(), c.reason.as_str()))
            .collect();
        let reason0 = format!(
            "label CONFIG-2 on {} (iso9660)",
            dev.join("loop0").display()
        );
        let reason1 = format!("label config-2 on {} (iso9660)", dev.join("vda1").display());
        assert_eq!(
            got,
            [("loop0", reason0.as_str()), ("vda1", reason1.as_str())]
        );
    }
}
