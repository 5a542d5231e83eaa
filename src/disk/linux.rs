//! Linux facts and actions for reclaim: the mounted root's device (mountinfo, sysfs), what uses
//! a partition, the disk lock (flock), positioned writes with fdatasync, BLKZEROOUT, and the
//! kernel's partition view (BLKPG delete/resize, never BLKRRPART). No planning here: callers
//! decide; these functions do one thing each and report errors naming the device.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `struct blkpg_partition` (linux/blkpg.h): byte offsets and lengths.
#[repr(C)]
pub struct BlkpgPartition {
    pub start: i64,
    pub length: i64,
    pub pno: i32,
    pub devname: [u8; 64],
    pub volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
pub struct BlkpgIoctlArg {
    pub op: i32,
    pub flags: i32,
    pub datalen: i32,
    pub data: *mut BlkpgPartition,
}

const _: () = assert!(std::mem::size_of::<BlkpgIoctlArg>() == 24);
const _: () = assert!(std::mem::size_of::<BlkpgPartition>() == 152);

pub const BLKPG_DEL_PARTITION: i32 = 2;
pub const BLKPG_RESIZE_PARTITION: i32 = 3;
/// `_IO(0x12, 105)`: BLKPG takes a pointer but is declared without a size.
pub const BLKPG: u64 = 0x1269;

nix::ioctl_write_ptr_bad!(blkpg_ioctl, BLKPG, BlkpgIoctlArg);
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc_int);
nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

#[allow(non_camel_case_types)]
type libc_int = std::ffi::c_int;

/// The errno of a busy partition (BLKPG on a mounted or open one).
pub const EBUSY: i32 = nix::libc::EBUSY;

/// Whether `m` is a block device's metadata (not an image file).
pub fn is_block_device(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_block_device()
}

/// Reads exactly `buf.len()` bytes at `offset` (pread).
pub fn read_exact_at(dev: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    dev.read_exact_at(buf, offset)
}

/// A mounted filesystem from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Un-escapes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() < 5 || f.len() < sep + 3 {
            continue;
        }
        let Some((maj, min)) = f[2].split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        out.push(Mount {
            major,
            minor,
            mountpoint: PathBuf::from(unescape(f[4])),
            fstype: f[sep + 1].to_string(),
            source: unescape(f[sep + 2]),
        });
    }
    out
}

pub fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// The device number of a mount: btrfs (and others) report an anonymous 0:N; then the mount
/// source's device node is used.
pub fn mount_dev(m: &Mount) -> Option<(u32, u32)> {
    if m.major != 0 {
        return Some((m.major, m.minor));
    }
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&m.source).ok()?;
    meta.file_type().is_block_device().then(|| {
        let r = meta.rdev();
        (
            nix::sys::stat::major(r) as u32,
            nix::sys::stat::minor(r) as u32,
        )
    })
}

/// A partition as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysPart {
    pub name: String,
    pub disk: String,
    pub number: u32,
    /// In 512-byte units, as sysfs counts.
    pub start: u64,
    pub size: u64,
}

fn read_num(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The partition with device number `maj:min`, or `None` when it is not a partition.
pub fn sys_part(major: u32, minor: u32) -> Option<SysPart> {
    let dir = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let number = read_num(&dir.join("partition"))? as u32;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let disk = dir.parent()?.file_name()?.to_string_lossy().into_owned();
    Some(SysPart {
        name,
        disk,
        number,
        start: read_num(&dir.join("start"))?,
        size: read_num(&dir.join("size"))?,
    })
}

/// The kernel's partitions of `disk` (sysfs name, e.g. `vda`, `loop0`).
pub fn sys_children(disk: &str) -> Vec<SysPart> {
    let dir = Path::new("/sys/class/block").join(disk);
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let (Some(number), Some(start), Some(size)) = (
            read_num(&p.join("partition")),
            read_num(&p.join("start")),
            read_num(&p.join("size")),
        ) else {
            continue;
        };
        out.push(SysPart {
            name: e.file_name().to_string_lossy().into_owned(),
            disk: disk.to_string(),
            number: number as u32,
            start,
            size,
        });
    }
    crate::sort::sort_by_key(&mut out, |p| p.number);
    out
}

/// Why a partition (sysfs name) is in use: mounted, active swap, or held by dm/md.
pub fn in_use(part: &SysPart, mounts: &[Mount]) -> Option<String> {
    let dev = std::fs::read_to_string(format!("/sys/class/block/{}/dev", part.name)).ok()?;
    let dev = dev.trim();
    for m in mounts {
        if format!("{}:{}", m.major, m.minor) == dev {
            return Some(format!("mounted on {}", m.mountpoint.display()));
        }
    }
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        if swaps
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&format!("/dev/{}", part.name)))
        {
            return Some("active swap".into());
        }
    }
    let holders = std::fs::read_dir(format!("/sys/class/block/{}/holders", part.name))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    (!holders.is_empty()).then(|| format!("held by {}", holders.join(", ")))
}

/// The sysfs name of a block device node.
pub fn sys_name(dev: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let r = dev.metadata().ok()?.rdev();
    let (ma, mi) = (nix::sys::stat::major(r), nix::sys::stat::minor(r));
    let dir = std::fs::canonicalize(format!("/sys/dev/block/{ma}:{mi}")).ok()?;
    Some(dir.file_name()?.to_string_lossy().into_owned())
}

pub fn size_bytes(dev: &File) -> io::Result<u64> {
    let mut n = 0u64;
    unsafe { blkgetsize64(dev.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n)
}

pub fn sector_size(dev: &File) -> io::Result<u64> {
    let mut n: libc_int = 0;
    unsafe { blksszget(dev.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n as u64)
}

/// Takes the whole disk's exclusive BSD lock (systemd's BLOCK_DEVICE_LOCKING, as growpart
/// does; udev then leaves the disk alone), waiting at most `wait`.
pub fn lock(dev: &File, wait: Duration) -> io::Result<()> {
    #[allow(deprecated)]
    use nix::fcntl::{flock, FlockArg};
    let until = Instant::now() + wait;
    loop {
        #[allow(deprecated)]
        match flock(dev.as_raw_fd(), FlockArg::LockExclusiveNonblock) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EWOULDBLOCK) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Writes `bytes` at `offset` in one pwrite and makes it durable before returning.
pub fn write_at(dev: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    dev.write_all_at(bytes, offset)?;
    dev.sync_data()
}

fn blkpg(dev: &File, op: i32, pno: u32, start: u64, length: u64) -> io::Result<()> {
    let mut p = BlkpgPartition {
        start: start as i64,
        length: length as i64,
        pno: pno as i32,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut p,
    };
    unsafe { blkpg_ioctl(dev.as_raw_fd(), &arg) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Removes partition `pno` from the kernel's view (EBUSY while it is open or mounted).
pub fn del_partition(dev: &File, pno: u32) -> io::Result<()> {
    blkpg(dev, BLKPG_DEL_PARTITION, pno, 0, 0)
}

/// Resizes partition `pno` in the kernel's view (same start, bytes).
pub fn resize_partition(dev: &File, pno: u32, start: u64, length: u64) -> io::Result<()> {
    blkpg(dev, BLKPG_RESIZE_PARTITION, pno, start, length)
}

/// Zeroes `len` bytes at `start`: BLKZEROOUT on a device (the kernel discards or writes zeros),
/// zeros written on an image file (a hole-punching write would leave the file's old blocks on
/// its filesystem). `progress(done, total)` is called between chunks.
pub fn zero_range(
    dev: &File,
    is_device: bool,
    start: u64,
    len: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<()> {
    const CHUNK: u64 = 8 << 20;
    let zeros = vec![0u8; CHUNK as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done);
        if is_device {
            let range = [start + done, n];
            match unsafe { blkzeroout(dev.as_raw_fd(), &range) } {
                Ok(_) => {}
                Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::ENOTTY) => {
                    dev.write_all_at(&zeros[..n as usize], start + done)?
                }
                Err(e) => return Err(io::Error::from(e)),
            }
        } else {
            dev.write_all_at(&zeros[..n as usize], start + done)?;
        }
        done += n;
        progress(done, len);
    }
    dev.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes() {
        // notes/reclaim.md §5: linux-raw-sys values.
        assert_eq!(BLKPG, 4713);
        assert_eq!(nix::request_code_none!(0x12, 127), 0x127f);
        assert_eq!(nix::request_code_read!(0x12, 114, 8), 0x80081272);
    }

    #[test]
    fn mountinfo() {
        let t = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                 30 22 0:27 / /mnt/a\\040b rw - btrfs /dev/loop0p1 rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].major, m[0].minor), (254, 1));
        assert_eq!(m[0].mountpoint, PathBuf::from("/"));
        assert_eq!(m[1].mountpoint, PathBuf::from("/mnt/a b"));
        assert_eq!(m[1].fstype, "btrfs");
        assert_eq!(m[1].source, "/dev/loop0p1");
    }
}
