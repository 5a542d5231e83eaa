//! Linux probe: enumerates `/sys/class/block` (whole disks, partitions, `sr*`, attached `loop*`),
//! reads each device's signature straight from the device node, and reads the partition table
//! of whole disks itself (kernels without partition support show no `vda2`; image-backed loop
//! devices have none unless attached with `-P`). No blkid, no udev database, no mount, no
//! `udevadm settle`: late devices are waited for with inotify plus short polling, up to a
//! deadline. Both roots (sysfs and /dev) can be redirected for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::DirectFile;
use crate::media::aligned::{AlignedReader, DEFAULT_SECTOR};
use crate::media::part::{read_partition_table, OffsetReader};
use crate::probe::sig::{read_signature, Found};
use crate::probe::{rank_scan, BlockDevice, DeviceClass, Probe, Rules, Scan};

/// Where to look: `sys` is the sysfs mount (`/sys`), `dev` the device directory (`/dev`),
/// `root` the system whose disk is the boot disk (`/`).
#[derive(Debug, Clone)]
pub struct ProbeRoots {
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub root: PathBuf,
}

impl Default for ProbeRoots {
    fn default() -> Self {
        ProbeRoots {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            root: PathBuf::from("/"),
        }
    }
}

/// A sysfs directory (the block class, or one device's), opened once: attributes are read
/// relative to it (`openat`), so the kernel walks `/sys/class/block/NAME` and its link into
/// `/sys/devices/…` once per device rather than once per attribute, and each attribute costs
/// one open, one read into a stack buffer and one close (the probe's CPU over many loop devices
/// was mostly these path walks and allocations).
struct AttrDir(std::os::fd::OwnedFd);

impl AttrDir {
    fn open(dir: &Path) -> Option<AttrDir> {
        Self::open_at(nix::fcntl::AT_FDCWD, dir)
    }

    /// The directory `name` relative to `dir` (`O_PATH`: only ever a base for `openat`, so the
    /// kernel does not open the directory itself).
    fn open_at<Fd: std::os::fd::AsFd, P: ?Sized + nix::NixPath>(
        dir: Fd,
        name: &P,
    ) -> Option<AttrDir> {
        use nix::fcntl::{openat, OFlag};
        openat(
            dir,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()
        .map(AttrDir)
    }

    fn sub(&self, name: &str) -> Option<AttrDir> {
        Self::open_at(&self.0, name)
    }

    /// The attribute `name` (relative to the directory), trimmed; `None` when absent,
    /// unreadable, not UTF-8 or longer than a page (sysfs serves an attribute in one read of at
    /// most a page).
    fn read(&self, name: &str) -> Option<String> {
        read_attr(&self.0, name)
    }

    /// The parent directory's name in the target of the symbolic link `name` (sysfs links
    /// `class/block/vda1` to `…/block/vda/vda1`); `None` when `name` is no link (a test's
    /// sysfs of plain directories).
    fn link_parent(&self, name: &str) -> Option<String> {
        let target = nix::fcntl::readlinkat(&self.0, name).ok()?;
        let target = Path::new(&target);
        target
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .map(str::to_string)
    }
}

/// An attribute file `name` relative to `dir` (a directory handle, or `AT_FDCWD` for a path):
/// see [`AttrDir::read`].
fn read_attr<Fd: std::os::fd::AsFd, P: ?Sized + nix::NixPath>(dir: Fd, name: &P) -> Option<String> {
    use nix::fcntl::{openat, OFlag};
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 4097];
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(&fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        // sysfs (and a small regular file) gives a whole attribute in one read: a short
        // read is the end, which saves the read that would return 0.
        if n < 4096 {
            break;
        }
    }
    if n == buf.len() {
        return None;
    }
    std::str::from_utf8(&buf[..n])
        .ok()
        .map(|s| s.trim().to_string())
}

/// One sysfs entry with what the probe needs beyond `BlockDevice`.
struct SysDev {
    dev: BlockDevice,
    /// `major:minor`.
    devno: Option<String>,
    /// Kernel partition number (`partition` attribute).
    number: Option<u32>,
}

/// A whole disk's logical block size (its partition table's sector size), read only for a
/// disk that holds a table.
fn logical_block(roots: &ProbeRoots, name: &str) -> u64 {
    AttrDir::open(&roots.sys.join("class/block").join(name))
        .and_then(|a| a.read("queue/logical_block_size"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

/// Lists the block devices in sysfs that could hold a filesystem, sorted by name.
/// Skipped: devices of size 0 (empty CD-ROM drives, detached loops), ram and zram devices.
pub fn list_devices(roots: &ProbeRoots) -> Vec<BlockDevice> {
    let class = roots.sys.join("class/block");
    list_sysfs(roots)
        .into_iter()
        .map(|mut s| {
            s.dev.read_only = sysfs_read_only(&class, &s.dev.name);
            s.dev
        })
        .collect()
}

/// The sysfs `ro` attribute of device `name` (`class` is `class/block`).
fn sysfs_read_only(class: &Path, name: &str) -> bool {
    read_attr(nix::fcntl::AT_FDCWD, &class.join(name).join("ro")).as_deref() == Some("1")
}

// `BLKROGET`: whether the kernel refuses writes to the device (`_IO(0x12, 94)`).
nix::ioctl_read_bad!(
    blkroget,
    nix::request_code_none!(0x12, 94),
    nix::libc::c_int
);

/// Whether the open device is read-only, as the kernel enforces it: the disk's or partition's
/// read-only flag (what sysfs `ro` shows) or one set on the node (`blockdev --setro`). `None`
/// for a node that is no block device (a test's regular file).
fn open_read_only(f: &fs::File) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let mut ro: nix::libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer, which points at `ro`.
    unsafe { blkroget(f.as_raw_fd(), &mut ro) }.ok()?;
    Some(ro != 0)
}

/// `loop7`, `sr0`: the loop driver's and the CD-ROM driver's whole devices (a name the kernel
/// gives a partition of such a device has a `p`: `loop7p1`).
fn is_numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a partition, and of which disk. On a real sysfs, from where its class
/// link points: a partition's directory sits in its disk's (`…/block/vda/vda1`), a whole
/// disk's in a directory that is no block device (`…/block/vda`, `…/nvme/nvme0/nvme0n1`); one
/// `readlink`, no failing lookup. On a test's sysfs of plain directories, from the `partition`
/// attribute and the directory above.
fn partition_of(
    class: &AttrDir,
    class_path: &Path,
    names: &BTreeSet<String>,
    name: &str,
    attrs: &AttrDir,
) -> (bool, Option<String>) {
    if let Some(parent) = class.link_parent(name) {
        // An eMMC's boot areas (`…/block/mmcblk0/mmcblk0boot0`) sit where partitions do but
        // are whole devices without a `partition` attribute: the attribute decides (read only
        // for devices below another, so no failing read for whole disks).
        return if names.contains(&parent) && attrs.read("partition").is_some() {
            (true, Some(parent))
        } else {
            (false, None)
        };
    }
    if attrs.read("partition").is_none() {
        return (false, None);
    }
    let parent = fs::canonicalize(class_path.join(name)).ok().and_then(|p| {
        p.parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    });
    (true, parent)
}

fn list_sysfs(roots: &ProbeRoots) -> Vec<SysDev> {
    let class_path = roots.sys.join("class/block");
    let (Ok(rd), Some(class)) = (fs::read_dir(&class_path), AttrDir::open(&class_path)) else {
        tracing::debug!("{}: cannot list block devices", class_path.display());
        return Vec::new();
    };
    // Kernel names are ASCII: a name that is not UTF-8 is no device of the kernel's.
    let names: BTreeSet<String> = crate::sort::set(
        rd.flatten()
            .filter_map(|e| e.file_name().into_string().ok()),
    );
    let mut out = Vec::new();
    // In name order already: `names` is sorted.
    for name in &names {
        if name.starts_with("ram") || name.starts_with("zram") {
            continue;
        }
        let whole_loop = is_numbered(name, "loop");
        // A whole loop device has `loop/` only while it is bound to a backing file: reading
        // the backing file first tells a detached one (most of them on a machine that keeps
        // many loop devices) in one lookup, without opening its directory.
        let mut backing_file = None;
        if whole_loop {
            backing_file = class.read(&format!("{name}/loop/backing_file"));
            if backing_file.is_none() {
                continue;
            }
        }
        // A whole loop device needs only its size besides, read through the class directory
        // like its backing file: no directory handle to open and close for it.
        let attrs = if whole_loop {
            None
        } else {
            let Some(a) = class.sub(name) else {
                continue;
            };
            Some(a)
        };
        let attr = |n: &str| attrs.as_ref().and_then(|a| a.read(n));
        let size = match &attrs {
            Some(a) => a.read("size"),
            None => class.read(&format!("{name}/size")),
        };
        let sectors: u64 = size.and_then(|s| s.parse().ok()).unwrap_or(0);
        if sectors == 0 {
            tracing::debug!(device = %name, "size 0 (no medium or detached): skipped");
            continue;
        }
        let (is_partition, parent) = match &attrs {
            Some(a) if !is_numbered(name, "sr") => {
                partition_of(&class, &class_path, &names, name, a)
            }
            _ => (false, None),
        };
        let number: Option<u32> = if is_partition {
            attr("partition").and_then(|s| s.parse().ok())
        } else {
            None
        };
        // Only a whole loop device has a backing file (no failing lookup for other devices).
        if name.starts_with("loop") && !is_partition && !whole_loop {
            backing_file = attr("loop/backing_file");
        }
        if name.starts_with("loop") && !is_partition && backing_file.is_none() {
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
        let mut dev = BlockDevice::whole(
            name,
            &roots.dev.join(name).display().to_string(),
            class,
            // sysfs `size` is always in 512-byte units, whatever the logical sector size.
            sectors.saturating_mul(512),
        );
        // `read_only` is asked of the open node in `scan` (one `ioctl` instead of an
        // attribute's open, read and close), and of sysfs only where that cannot answer.
        // `removable` is a disk's attribute (a partition has none), and the loop driver never
        // sets it: read only where it can say yes.
        dev.removable = !is_partition && !whole_loop && attr("removable").as_deref() == Some("1");
        dev.parent = parent;
        dev.backing_file = backing_file;
        out.push(SysDev {
            dev,
            // Only a partition's device number is compared (with the root's).
            devno: if is_partition { attr("dev") } else { None },
            number,
        });
    }
    out
}

/// The kernel-style name of partition `n` of `disk` (`vda` -> `vda2`, `loop3` -> `loop3p2`).
fn partition_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// Bytes of a whole device read at once when it is opened for the probe: the first 4 KiB and
/// the ISO9660 volume descriptor at 32 KiB, rounded to whole 4 KiB blocks (any logical block
/// size divides it, as direct I/O requires). Also the window of every later read.
const PROBE_HEAD: usize = 36 * 1024;

/// A device as the probe reads it: the one sector-aligned reader (`media::aligned`) over direct
/// reads (`O_DIRECT`: straight into the reader's buffer, no page cache filled at the read and
/// dropped at the last close), its window the head ([`PROBE_HEAD`]): the signature's first read
/// takes the whole head in one device read, which decides for every device that is not an
/// ISO9660 or FAT volume or a partitioned disk; a volume's root directory, a table's entries
/// past the head or a partition found in it cost one more window where they lie.
type HeadReader = AlignedReader<DirectFile>;

/// Opens a device node for the probe (see [`HeadReader`]); `len` is the size sysfs gave (no
/// `lseek`). Where direct I/O is refused (a test's node on tmpfs) the same reader reads
/// through the page cache, without read-ahead: a block device's page cache is dropped when its
/// last opener closes it, so each probe reads afresh, and the kernel's default read-ahead
/// turned each 4 KiB read into 128 KiB through the loop driver. `POSIX_FADV_RANDOM` makes it
/// read what is asked.
/// `buf`: the previous device's reader's buffer (or an empty one).
fn open_for_probe(path: &str, len: u64, buf: Vec<u8>) -> std::io::Result<HeadReader> {
    let dev = DirectFile::open(Path::new(path))?;
    if !dev.direct {
        if let Err(e) = nix::fcntl::posix_fadvise(
            &dev.file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM,
        ) {
            tracing::debug!(device = %path, "fadvise: {e}");
        }
    }
    Ok(AlignedReader::with_buffer(
        dev,
        DEFAULT_SECTOR,
        len,
        PROBE_HEAD,
        buf,
    ))
}

/// Reads a whole device's (or kernel partition's) signature, and gives back the open reader
/// when it holds a partition table (read from the same reader: usually within the head).
/// `Found::Nothing` when it cannot be opened or holds nothing; logged at debug level.
/// Sets `dev.read_only` too: from the open node, else from sysfs (`class` is `class/block`).
/// `spare`: the buffer the reader takes, and gets back when no table keeps the reader.
fn read_device_signature(
    dev: &mut BlockDevice,
    class: &Path,
    spare: &mut Vec<u8>,
) -> (Found, Option<HeadReader>) {
    let mut r = match open_for_probe(&dev.path, dev.size_bytes, std::mem::take(spare)) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(device = %dev.path, "cannot open: {e}; skipped");
            dev.read_only = sysfs_read_only(class, &dev.name);
            return (Found::Nothing, None);
        }
    };
    dev.read_only =
        open_read_only(&r.get_ref().file).unwrap_or_else(|| sysfs_read_only(class, &dev.name));
    let found = read_signature(&mut r, &dev.path);
    if found == Found::Table {
        return (found, Some(r));
    }
    *spare = r.into_buffer();
    (found, None)
}

/// `major:minor` of the filesystem holding `root`.
fn root_devno(root: &Path) -> Option<String> {
    let m = fs::metadata(root).ok()?;
    let d = m.dev();
    Some(format!(
        "{}:{}",
        nix::sys::stat::major(d),
        nix::sys::stat::minor(d)
    ))
}

/// What the machine shows: every block device (partitions found in tables included) with its
/// signature, and the disks holding the running root (by device number). Reads only; the
/// ranking is `probe::rank_scan`'s.
pub fn scan(roots: &ProbeRoots) -> Scan {
    let sys = list_sysfs(roots);
    let with_kernel_parts: BTreeSet<String> =
        crate::sort::set(sys.iter().filter_map(|s| s.dev.parent.clone()));
    let root_dev = root_devno(&roots.root);
    let mut devices: Vec<(BlockDevice, Found)> = Vec::new();
    // Tables of whole disks, by disk name, to annotate kernel partitions.
    let mut tables = BTreeMap::new();
    // Disks holding the running root, by device number.
    let mut boot_disks: BTreeSet<String> = BTreeSet::new();
    let class = roots.sys.join("class/block");
    // One read buffer for every device in turn.
    let mut spare = Vec::new();
    for s in sys.iter().filter(|s| s.dev.class != DeviceClass::Partition) {
        let mut disk = s.dev.clone();
        let (found, reader) = read_device_signature(&mut disk, &class, &mut spare);
        if let Some(mut r) = reader {
            let table = read_partition_table(&mut r, &disk.path, logical_block(roots, &disk.name))
                .map_err(|e| tracing::debug!(device = %disk.path, "partition table: {e}"))
                .ok()
                .flatten();
            if let Some(t) = table {
                let trailing = t.trailing().map(|p| p.number);
                if !with_kernel_parts.contains(&disk.name) {
                    // The kernel shows no partitions: reach each through an offset reader.
                    for p in &t.partitions {
                        let mut d = BlockDevice::whole(
                            &partition_name(&disk.name, p.number),
                            &disk.path,
                            DeviceClass::Partition,
                            p.size,
                        );
                        d.read_only = disk.read_only;
                        d.parent = Some(disk.name.clone());
                        d.partition = Some(p.clone());
                        d.table_only = true;
                        d.trailing = trailing == Some(p.number);
                        // Through the disk's open reader: no open per partition.
                        let f = read_signature(
                            &mut OffsetReader::new(&mut r, p.start, p.size),
                            &d.display(),
                        );
                        devices.push((d, f));
                    }
                }
                tables.insert(disk.name.clone(), t);
            }
            spare = r.into_buffer();
        }
        devices.push((disk, found));
    }
    for s in sys.iter().filter(|s| s.dev.class == DeviceClass::Partition) {
        let mut d = s.dev.clone();
        if let (Some(t), Some(n)) = (d.parent.as_ref().and_then(|p| tables.get(p)), s.number) {
            d.partition = t.partitions.iter().find(|p| p.number == n).cloned();
            d.trailing = t.trailing().is_some_and(|p| p.number == n);
        }
        if root_dev.is_some() && s.devno == root_dev {
            boot_disks.extend(d.parent.clone());
        }
        let (found, reader) = read_device_signature(&mut d, &class, &mut spare);
        if let Some(r) = reader {
            spare = r.into_buffer();
        }
        devices.push((d, found));
    }
    Scan {
        devices,
        root_disks: boot_disks,
    }
}

/// The whole probe: the scan, ranked with `rules` (`probe::rank_scan`).
pub fn probe(roots: &ProbeRoots, rules: &Rules) -> Probe {
    rank_scan(scan(roots), rules)
}

/// How long udev must show an empty event queue, with still no candidate, before the wait
/// ends early: covers events the kernel has sent that udevd has not queued yet (the trigger
/// unit returns once it has written the uevents, not once udevd has read them).
pub const UDEV_SETTLED_FOR: Duration = Duration::from_secs(1);

/// What udev's run directory says about device events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Udev {
    /// udevd runs (its control socket exists) and its event queue is empty.
    Idle,
    /// Events are queued (`queue` exists while udevd has unprocessed events).
    Busy,
    /// No udevd (an initramfs without it, a container, a test): nothing to conclude.
    Absent,
}

/// udev's run directory beside the sysfs mount: `/run/udev` for `/sys`, `T/run/udev` for a
/// test's `T/sys`.
fn udev_dir(roots: &ProbeRoots) -> PathBuf {
    roots
        .sys
        .parent()
        .unwrap_or(Path::new("/"))
        .join("run/udev")
}

/// udev's state from the files systemd-udevd keeps (`udevadm settle` reads the same): the
/// control socket while it runs, `queue` while events are pending.
fn udev_state(dir: &Path) -> Udev {
    if fs::symlink_metadata(dir.join("control")).is_err() {
        Udev::Absent
    } else if fs::symlink_metadata(dir.join("queue")).is_ok() {
        Udev::Busy
    } else {
        Udev::Idle
    }
}

/// The re-probe interval after a change, and its ceiling while nothing changes under a running
/// udevd: every device event passes through udev's queue, which inotify reports, so a quiet
/// udev means nothing to probe for; polling less leaves the CPU to udev's own coldplug (on a
/// one-vCPU guest a 100 ms re-probe competed with it).
const POLL_MIN: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_millis(800);

/// The next re-probe interval: back to [`POLL_MIN`] when inotify reported a change or where no
/// udevd runs (sysfs does not report every change, e.g. a CD-ROM's medium: polling is then the
/// only way to see it); otherwise doubled up to [`POLL_MAX`].
fn next_interval(prev: Duration, woke: bool, state: Udev) -> Duration {
    if woke || state == Udev::Absent {
        POLL_MIN
    } else {
        (prev * 2).min(POLL_MAX)
    }
}

/// How long a wait saw udev in each state (sampled at each re-probe).
#[derive(Debug, Default)]
struct UdevTimes {
    idle: Duration,
    busy: Duration,
    absent: Duration,
}

impl UdevTimes {
    fn add(&mut self, state: Udev, d: Duration) {
        match state {
            Udev::Idle => self.idle += d,
            Udev::Busy => self.busy += d,
            Udev::Absent => self.absent += d,
        }
    }

    /// One clause for the time-out line: why the wait was not ended early.
    fn describe(&self, dir: &Path, early_end: bool) -> String {
        let s = |d: Duration| d.as_secs_f64();
        let tail = if !early_end {
            "; probe.early_end is off"
        } else {
            ""
        };
        format!(
            "udev in {}: events queued {:.1} s, idle {:.1} s, not running {:.1} s{tail}",
            dir.display(),
            s(self.busy),
            s(self.idle),
            s(self.absent)
        )
    }
}

/// Probes until a candidate shows up or `deadline` has passed: re-probes when sysfs or /dev
/// changes (inotify) and at least every 100 ms (sysfs does not report every change, e.g. a
/// loop device or CD-ROM getting its medium). Returns the last probe; never hangs.
///
/// A boot without any drive ends early: once udev has processed every queued event (its
/// coldplug included) and stayed idle for [`UDEV_SETTLED_FOR`] with still no candidate, no
/// device is coming and the wait stops. While udev is busy, or where no udevd runs, the wait
/// goes on to the deadline, so a late device (a CD-ROM's medium, a slow controller) is still
/// found. A progress line is logged every [`crate::progress::EVERY`] meanwhile.
pub fn probe_wait(roots: &ProbeRoots, rules: &Rules, deadline: Duration) -> Probe {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;

    let start = Instant::now();
    let first = probe(roots, rules);
    if !first.candidates.is_empty() || deadline.is_zero() {
        return first;
    }
    tracing::info!(
        "no config drive yet; waiting up to {:.1} s for late devices",
        deadline.as_secs_f64()
    );
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok();
    if let Some(i) = &inotify {
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_MOVED_TO;
        // udev's run directory too: every device event creates `queue` there (and its removal
        // says the events are done), so a change wakes the wait even between the polls below.
        for dir in [
            roots.sys.join("class/block"),
            roots.dev.clone(),
            udev_dir(roots),
        ] {
            if let Err(e) = i.add_watch(&dir, mask) {
                tracing::debug!("inotify on {}: {e}; polling only", dir.display());
            }
        }
    }
    let _progress = crate::progress::Progress::start("waiting for a config drive");
    let udev = udev_dir(roots);
    let mut interval = POLL_MIN;
    let mut woke = false;
    let mut idle_since: Option<Instant> = None;
    let mut last = first;
    let mut rounds = 0u32;
    // Time spent in each udev state, for the time-out message: an operator whose boot waited
    // the whole deadline learns whether udev was still busy (the early end could not apply) or
    // not running at all.
    let mut in_state = UdevTimes::default();
    let mut checked = Instant::now();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            tracing::info!(
                "no config drive after {:.1} s ({rounds} re-probes; {})",
                start.elapsed().as_secs_f64(),
                in_state.describe(&udev, rules.early_end)
            );
            return last;
        }
        // The early end is due exactly UDEV_SETTLED_FOR after udev went idle: wake for it.
        let settle_left = idle_since.filter(|_| rules.early_end).map(|t| {
            UDEV_SETTLED_FOR
                .saturating_sub(t.elapsed())
                .max(POLL_MIN / 10)
        });
        let wait = left.min(interval).min(settle_left.unwrap_or(Duration::MAX));
        let ms = u16::try_from(wait.as_millis()).unwrap_or(100).max(1);
        if let Some(i) = &inotify {
            let mut fds = [PollFd::new(i.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
            // Drain: what changed does not matter, only that something did.
            woke = false;
            while let Ok(ev) = i.read_events() {
                if ev.is_empty() {
                    break;
                }
                woke = true;
            }
        } else {
            std::thread::sleep(wait);
        }
        rounds += 1;
        last = probe(roots, rules);
        if !last.candidates.is_empty() {
            tracing::info!(
                "config drive appeared after {:.2} s",
                start.elapsed().as_secs_f64()
            );
            return last;
        }
        let state = udev_state(&udev);
        in_state.add(state, checked.elapsed());
        checked = Instant::now();
        interval = next_interval(interval, woke || inotify.is_none(), state);
        match state {
            Udev::Idle if rules.early_end => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= UDEV_SETTLED_FOR {
                    tracing::info!(
                        "no config drive: udev has processed every device event ({} idle); \
                         not waiting further ({:.1} s of {:.1} s, {rounds} re-probes; {})",
                        udev.display(),
                        start.elapsed().as_secs_f64(),
                        deadline.as_secs_f64(),
                        in_state.describe(&udev, true)
                    );
                    return last;
                }
            }
            Udev::Idle | Udev::Busy | Udev::Absent => idle_since = None,
        }
    }
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
    fn attributes_read_through_the_directory_handle() {
        let t = tempfile::tempdir().unwrap();
        attr(t.path(), "size", "72\n");
        attr(t.path(), "loop/backing_file", " /images/a b.iso \n");
        attr(t.path(), "long", &"x".repeat(4097));
        attr(t.path(), "page", &"y".repeat(4096));
        fs::write(t.path().join("binary"), [0xff, 0xfe]).unwrap();
        let a = AttrDir::open(t.path()).unwrap();
        assert_eq!(a.read("size").as_deref(), Some("72"));
        assert_eq!(
            a.read("loop/backing_file").as_deref(),
            Some("/images/a b.iso")
        );
        assert_eq!(a.read("page").map(|s| s.len()), Some(4096));
        // Longer than a sysfs page, missing, or not text: no value, never a panic.
        assert_eq!(a.read("long"), None);
        assert_eq!(a.read("missing"), None);
        assert_eq!(a.read("binary"), None);
        assert!(AttrDir::open(&t.path().join("size")).is_none());
    }

    #[test]
    fn the_probe_reader_serves_the_head_and_reads_on_past_it() {
        use std::io::{Read, Seek, SeekFrom};
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        // The repository's filesystem (direct I/O) and tmpfs (refused at the open: read through
        // the page cache): the same bytes.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        fs::create_dir_all(&repo).unwrap();
        for dir in [repo.as_path(), Path::new("/dev/shm")] {
            let t = tempfile::tempdir_in(dir).unwrap();
            let long = t.path().join("long");
            fs::write(&long, &data).unwrap();
            let short = t.path().join("short");
            fs::write(&short, &data[..1000]).unwrap();
            let (long, short) = (long.display().to_string(), short.display().to_string());
            let mut r = open_for_probe(&long, data.len() as u64, Vec::new()).unwrap();
            let mut b = vec![0u8; 8192];
            // Across the end of the head: the rest from the next window.
            r.seek(SeekFrom::Start(PROBE_HEAD as u64 - 100)).unwrap();
            r.read_exact(&mut b).unwrap();
            assert_eq!(b, data[PROBE_HEAD - 100..PROBE_HEAD - 100 + 8192]);
            assert_eq!(r.seek(SeekFrom::End(-10)).unwrap(), 49_990);
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, data[49_990..]);
            // The size sysfs gave is the end, even where the node holds more.
            let mut r = open_for_probe(&long, 1000, r.into_buffer()).unwrap();
            let mut all = Vec::new();
            r.read_to_end(&mut all).unwrap();
            assert_eq!(all, data[..1000]);
            // A node shorter than sysfs said ends where it ends.
            let mut r = open_for_probe(&short, 4096, r.into_buffer()).unwrap();
            let mut all = Vec::new();
            r.read_to_end(&mut all).unwrap();
            assert_eq!(all, data[..1000], "{}", dir.display());
        }
        assert!(open_for_probe("/nonexistent/dev/x", 4096, Vec::new()).is_err());
    }

    #[test]
    fn partition_names() {
        assert_eq!(partition_name("vda", 2), "vda2");
        assert_eq!(partition_name("loop3", 2), "loop3p2");
        assert_eq!(partition_name("nvme0n1", 1), "nvme0n1p1");
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
        fs::write(dev.join("vdc"), pvd("cidata-x")).unwrap();
        // vda1: a partition.
        attr(&block.join("vda1"), "size", "72\n");
        attr(&block.join("vda1"), "partition", "1\n");
        fs::write(dev.join("vda1"), pvd("config-2")).unwrap();
        attr(&block.join("ram0"), "size", "8192\n");

        let roots = ProbeRoots {
            sys,
            dev: dev.clone(),
            root: t.path().to_path_buf(),
        };
        let p = probe(&roots, &Rules::default());
        let names: Vec<&str> = p.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["loop0", "vda1", "vdb", "vdc"]);
        assert_eq!(
            p.devices[0].backing_file.as_deref(),
            Some("/images/drive.iso")
        );
        assert!(p.devices[0].read_only);
        assert_eq!(p.devices[0].size_bytes, 72 * 512);
        assert_eq!(p.devices[1].class, DeviceClass::Partition);
        let got: Vec<(&str, &str)> = p
            .candidates
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

    #[test]
    fn wait_returns_at_the_deadline_when_nothing_appears() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("sys/class/block")).unwrap();
        fs::create_dir_all(t.path().join("dev")).unwrap();
        let roots = ProbeRoots {
            sys: t.path().join("sys"),
            dev: t.path().join("dev"),
            root: t.path().to_path_buf(),
        };
        let start = Instant::now();
        let p = probe_wait(&roots, &Rules::default(), Duration::from_millis(300));
        let took = start.elapsed();
        assert!(p.candidates.is_empty());
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    fn empty_roots(t: &Path) -> ProbeRoots {
        fs::create_dir_all(t.join("sys/class/block")).unwrap();
        fs::create_dir_all(t.join("dev")).unwrap();
        ProbeRoots {
            sys: t.join("sys"),
            dev: t.join("dev"),
            root: t.to_path_buf(),
        }
    }

    #[test]
    fn wait_ends_early_once_udev_is_idle() {
        let t = tempfile::tempdir().unwrap();
        let roots = empty_roots(t.path());
        let udev = t.path().join("run/udev");
        fs::create_dir_all(&udev).unwrap();
        fs::write(udev.join("control"), "").unwrap();
        let start = Instant::now();
        let p = probe_wait(&roots, &Rules::default(), Duration::from_secs(10));
        let took = start.elapsed();
        assert!(p.candidates.is_empty());
        assert!(took >= UDEV_SETTLED_FOR, "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        // `probe.early_end: false`: the same idle udev, and the wait runs to its deadline.
        let rules = Rules {
            early_end: false,
            ..Rules::default()
        };
        let start = Instant::now();
        let p = probe_wait(&roots, &rules, Duration::from_millis(2500));
        assert!(p.candidates.is_empty());
        assert!(
            start.elapsed() >= Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn re_probes_back_off_only_under_a_quiet_udev() {
        let mut i = POLL_MIN;
        for _ in 0..10 {
            i = next_interval(i, false, Udev::Busy);
        }
        assert_eq!(i, POLL_MAX);
        assert_eq!(next_interval(i, true, Udev::Idle), POLL_MIN);
        assert_eq!(next_interval(POLL_MAX, false, Udev::Absent), POLL_MIN);
        assert_eq!(next_interval(POLL_MIN, false, Udev::Idle), POLL_MIN * 2);
    }

    #[test]
    fn the_time_out_line_says_how_long_udev_was_busy() {
        let mut t = UdevTimes::default();
        t.add(Udev::Busy, Duration::from_millis(2400));
        t.add(Udev::Idle, Duration::from_millis(300));
        t.add(Udev::Busy, Duration::from_millis(100));
        let s = t.describe(Path::new("/run/udev"), true);
        assert_eq!(
            s,
            "udev in /run/udev: events queued 2.5 s, idle 0.3 s, not running 0.0 s"
        );
        assert!(t
            .describe(Path::new("/run/udev"), false)
            .ends_with("probe.early_end is off"));
    }

    #[test]
    fn a_busy_udev_keeps_the_wait_going_and_a_late_device_is_found() {
        let t = tempfile::tempdir().unwrap();
        let roots = empty_roots(t.path());
        let udev = t.path().join("run/udev");
        fs::create_dir_all(&udev).unwrap();
        fs::write(udev.join("control"), "").unwrap();
        fs::write(udev.join("queue"), "").unwrap();
        let (dev, block) = (roots.dev.clone(), roots.sys.join("class/block"));
        let h = std::thread::spawn(move || {
            // Later than the idle grace: only a busy udev keeps the probe waiting this long.
            std::thread::sleep(UDEV_SETTLED_FOR + Duration::from_millis(800));
            fs::write(dev.join("sr0"), pvd("config-2")).unwrap();
            attr(&block.join("sr0"), "size", "72\n");
            fs::remove_file(udev.join("queue")).unwrap();
        });
        let p = probe_wait(&roots, &Rules::default(), Duration::from_secs(10));
        h.join().unwrap();
        assert_eq!(p.candidates.len(), 1);
    }

    #[test]
    fn wait_finds_a_device_that_appears_late() {
        let t = tempfile::tempdir().unwrap();
        let block = t.path().join("sys/class/block");
        fs::create_dir_all(&block).unwrap();
        fs::create_dir_all(t.path().join("dev")).unwrap();
        let roots = ProbeRoots {
            sys: t.path().join("sys"),
            dev: t.path().join("dev"),
            root: t.path().to_path_buf(),
        };
        let dev = roots.dev.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            fs::write(dev.join("vdz"), pvd("config-2")).unwrap();
            attr(&block.join("vdz"), "size", "72\n");
        });
        let start = Instant::now();
        let p = probe_wait(&roots, &Rules::default(), Duration::from_secs(5));
        h.join().unwrap();
        assert_eq!(p.candidates.len(), 1);
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
