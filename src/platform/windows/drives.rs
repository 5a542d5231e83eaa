//! Windows drive discovery: every drive letter Windows reports (`GetLogicalDrives`) that is a
//! CD-ROM, fixed or removable volume (`GetDriveTypeW`), read raw through `\\.\X:`
//! (sector-aligned, `device.rs`) by primer's own signature reader (labels included: Windows may
//! not know the label of a volume it has no driver for), then ranked by the same pure policy as
//! Linux (`probe::rank_scan`). Then the whole disks (`\\.\PhysicalDrive0..63`, stopping after a
//! run of numbers that do not open): each disk's signature or GPT/MBR table, read by primer's
//! own reader through the same aligned reader, and each partition that has no drive letter
//! (`IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS` of the letters tells which have one), as Linux lists
//! partitions the kernel does not show (`platform::physical`). Read-only: opens volumes and
//! disks for reading, never locks, mounts or writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use windows_sys::Win32::Storage::FileSystem::{GetDriveTypeW, GetLogicalDrives};

use crate::platform::physical;
use crate::probe::{rank_scan, sig, BlockDevice, DeviceClass, Probe, Rules, Scan};

// GetDriveTypeW results (WinBase.h), kept here rather than pulling the large
// Win32_System_WindowsProgramming feature for three numbers.
const DRIVE_REMOVABLE: u32 = 2;
const DRIVE_FIXED: u32 = 3;
const DRIVE_CDROM: u32 = 5;

/// Where to look: the same fields as Linux so the agent builds it the same way. Windows has no
/// sysfs or /dev: `sys` and `dev` are unused; `root` is the target root.
#[derive(Debug, Clone)]
pub struct ProbeRoots {
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub root: PathBuf,
}

impl Default for ProbeRoots {
    fn default() -> Self {
        ProbeRoots {
            sys: PathBuf::new(),
            dev: PathBuf::new(),
            root: PathBuf::from(r"C:\"),
        }
    }
}

/// One drive letter's volume, as enumeration saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// `D`
    pub letter: char,
    pub class: DeviceClass,
}

/// The letters Windows reports with a CD-ROM, fixed or removable volume. A network, RAM or
/// unknown drive is never a config drive.
pub fn volumes() -> Vec<Volume> {
    // SAFETY: no arguments; returns a bit mask (bit 0 = A:).
    let mask = unsafe { GetLogicalDrives() };
    let mut out = Vec::new();
    for i in 0..26u8 {
        if mask & (1 << i) == 0 {
            continue;
        }
        let letter = char::from(b'A' + i);
        let root = super::wide(std::ffi::OsStr::new(&format!("{letter}:\\")));
        // SAFETY: `root` is a NUL-terminated UTF-16 string.
        let class = match unsafe { GetDriveTypeW(root.as_ptr()) } {
            DRIVE_CDROM => DeviceClass::CdRom,
            DRIVE_FIXED | DRIVE_REMOVABLE => DeviceClass::Disk,
            _ => continue,
        };
        out.push(Volume { letter, class });
    }
    out
}

/// The system drive's letter (`%SystemDrive%`, `C` when unset): its volume ranks last, as a
/// Linux root disk's partitions do.
fn system_letter() -> char {
    std::env::var("SystemDrive")
        .ok()
        .and_then(|s| s.chars().next())
        .map_or('C', |c| c.to_ascii_uppercase())
}

/// The name under which the system drive's volume is grouped as a "boot disk".
const SYSTEM_DISK: &str = "system";

/// Scans `vols`: opens each raw volume read-only and reads its signature. A volume that
/// cannot be opened (no medium, access denied) is listed with nothing found.
pub fn scan(vols: &[Volume]) -> Scan {
    let system = system_letter();
    let mut scan = Scan::default();
    scan.root_disks.insert(SYSTEM_DISK.to_string());
    // Where each lettered volume lies: disk number -> byte offsets.
    let mut covered: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut system_disks = BTreeSet::new();
    for v in vols {
        let path = format!(r"\\.\{}:", v.letter);
        let name = format!("{}:", v.letter);
        if let Ok(f) = std::fs::File::open(&path) {
            for (disk, start) in super::device::volume_extents(&f) {
                covered.entry(disk).or_default().insert(start);
                if v.letter == system {
                    system_disks.insert(disk);
                }
            }
        }
        // Through the aligned reader: Windows refuses unaligned raw reads, and the size is the
        // driver's (IOCTL_DISK_GET_LENGTH_INFO), not a seek to the end.
        let (size, found) = match super::device::open_device(Path::new(&path)) {
            Ok(mut r) => (r.len(), sig::read_signature(&mut r, &path)),
            Err(e) => {
                tracing::debug!(device = %path, "cannot open: {e}; skipped");
                (0, sig::Found::Nothing)
            }
        };
        let mut d = BlockDevice::whole(&name, &path, v.class, size);
        if v.letter == system && v.class == DeviceClass::Disk {
            // A volume of the disk Windows runs from: the same rank as a Linux root disk's
            // partitions (the easiest place to plant a label).
            d.class = DeviceClass::Partition;
            d.parent = Some(SYSTEM_DISK.to_string());
        }
        scan.devices.push((d, found));
    }
    scan_physical(&mut scan, &covered, &system_disks);
    scan
}

/// Adds the whole disks and their partitions without a drive letter to `scan`; the disk the
/// system volume lies on is a boot disk (its partitions rank last, as on Linux).
fn scan_physical(
    scan: &mut Scan,
    covered: &BTreeMap<u32, BTreeSet<u64>>,
    system_disks: &BTreeSet<u32>,
) {
    let none = BTreeSet::new();
    let disks = physical::enumerate(|n| {
        let path = physical::disk_name(n).1;
        super::device::open_device(Path::new(&path))
            .map_err(|e| tracing::trace!(device = %path, "cannot open: {e}"))
            .ok()
    });
    for (n, r) in disks {
        let path = physical::disk_name(n).1;
        // The table's sector numbers are in logical sectors: the driver's size, else 512 (the
        // aligned reader's own default is a multiple of every size, not a logical size).
        let sector = std::fs::File::open(&path)
            .ok()
            .and_then(|f| super::device::sector_size(&f))
            .unwrap_or(512);
        let size = r.len();
        let entries = physical::scan_disk(n, r, size, sector, covered.get(&n).unwrap_or(&none));
        if system_disks.contains(&n) {
            scan.root_disks.insert(physical::disk_name(n).0);
        }
        scan.devices.extend(entries);
    }
}

/// Enumerates and ranks once.
pub fn probe(rules: &Rules) -> Probe {
    rank_scan(scan(&volumes()), rules)
}

/// Probes, and when nothing is found re-probes every 250 ms until `wait` has passed (Windows
/// has no inotify on drive arrival without a window or a service control handler).
pub fn probe_wait(_roots: &ProbeRoots, rules: &Rules, wait: Duration) -> Probe {
    let start = Instant::now();
    let mut last = probe(rules);
    if !last.candidates.is_empty() || wait.is_zero() {
        return last;
    }
    tracing::info!(
        "no config drive yet; waiting up to {:.1} s for late drives",
        wait.as_secs_f64()
    );
    while start.elapsed() < wait {
        std::thread::sleep(
            wait.saturating_sub(start.elapsed())
                .min(Duration::from_millis(250)),
        );
        last = probe(rules);
        if !last.candidates.is_empty() {
            break;
        }
    }
    last
}
