//! Filesystem size and online growth for reclaim: reads the ext4, XFS or btrfs superblock to
//! tell how large the filesystem is, and grows a mounted one through its own ioctl (no
//! resize2fs / xfs_growfs / btrfs binaries). Never shrinks: the size passed is never below the
//! current one.

#[cfg(target_os = "linux")]
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::path::Path;

/// A filesystem found at the start of a partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FsSize {
    pub fstype: &'static str,
    /// Bytes the filesystem spans.
    pub bytes: u64,
    pub block: u64,
}

fn read_at<R: Read + Seek + ?Sized>(r: &mut R, at: u64, buf: &mut [u8]) -> io::Result<()> {
    r.seek(SeekFrom::Start(at))?;
    r.read_exact(buf)
}

/// The filesystem at `offset` of `r` and its size, from its superblock; `None` when none of
/// ext2/3/4, XFS or btrfs is found.
pub fn fs_size<R: Read + Seek + ?Sized>(r: &mut R, offset: u64) -> Option<FsSize> {
    // ext2/3/4: superblock at 1024, magic 0xEF53 at 0x38.
    let mut sb = [0u8; 1024];
    if read_at(r, offset + 1024, &mut sb).is_ok() && sb[0x38..0x3a] == [0x53, 0xef] {
        let le32 = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
        let log = le32(0x18);
        if log <= 6 {
            let block = 1024u64 << log;
            let incompat = le32(0x60);
            let hi = if incompat & 0x80 != 0 {
                u64::from(le32(0x150))
            } else {
                0
            };
            let blocks = (hi << 32) | u64::from(le32(0x04));
            return Some(FsSize {
                fstype: "ext4",
                bytes: blocks * block,
                block,
            });
        }
    }
    // XFS: "XFSB", sb_blocksize (BE u32) at 4, sb_dblocks (BE u64) at 8.
    let mut x = [0u8; 16];
    if read_at(r, offset, &mut x).is_ok() && &x[..4] == b"XFSB" {
        let block = u64::from(u32::from_be_bytes([x[4], x[5], x[6], x[7]]));
        let mut d = [0u8; 8];
        d.copy_from_slice(&x[8..16]);
        return Some(FsSize {
            fstype: "xfs",
            bytes: u64::from_be_bytes(d) * block,
            block,
        });
    }
    // btrfs: superblock at 64 KiB, magic "_BHRfS_M" at 0x40, dev_item.total_bytes at 0xd1 (the
    // size this device gives the filesystem), sectorsize at 0x90.
    let mut b = [0u8; 0x100];
    if read_at(r, offset + 0x10000, &mut b).is_ok() && &b[0x40..0x48] == b"_BHRfS_M" {
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[0xd1..0xd9]);
        let block = u64::from(u32::from_le_bytes([b[0x90], b[0x91], b[0x92], b[0x93]]));
        return Some(FsSize {
            fstype: "btrfs",
            bytes: u64::from_le_bytes(t),
            block,
        });
    }
    None
}

#[cfg(target_os = "linux")]
nix::ioctl_write_ptr!(ext4_resize_fs, b'f', 16, u64);

/// `struct xfs_fsop_geom_v1`.
#[repr(C)]
#[derive(Default)]
pub struct XfsGeomV1 {
    pub blocksize: u32,
    pub rtextsize: u32,
    pub agblocks: u32,
    pub agcount: u32,
    pub logblocks: u32,
    pub sectsize: u32,
    pub inodesize: u32,
    pub imaxpct: u32,
    pub datablocks: u64,
    pub rtblocks: u64,
    pub rtextents: u64,
    pub logstart: u64,
    pub uuid: [u8; 16],
    pub sunit: u32,
    pub swidth: u32,
    pub version: i32,
    pub flags: u32,
    pub logsectsize: u32,
    pub rtsectsize: u32,
    pub dirblocksize: u32,
}

/// `struct xfs_growfs_data`.
#[repr(C)]
pub struct XfsGrowfsData {
    pub newblocks: u64,
    pub imaxpct: u32,
}

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
pub struct BtrfsVolArgs {
    pub fd: i64,
    pub name: [u8; 4088],
}

const _: () = assert!(std::mem::size_of::<XfsGeomV1>() == 112);
const _: () = assert!(std::mem::size_of::<XfsGrowfsData>() == 16);
const _: () = assert!(std::mem::size_of::<BtrfsVolArgs>() == 4096);

#[cfg(target_os = "linux")]
nix::ioctl_read!(xfs_fsgeometry_v1, b'X', 100, XfsGeomV1);
#[cfg(target_os = "linux")]
nix::ioctl_write_ptr!(xfs_growfsdata, b'X', 110, XfsGrowfsData);
#[cfg(target_os = "linux")]
nix::ioctl_write_ptr!(btrfs_resize, 0x94, 3, BtrfsVolArgs);

/// `struct btrfs_ioctl_dev_info_args`.
#[repr(C)]
pub struct BtrfsDevInfo {
    pub devid: u64,
    pub uuid: [u8; 16],
    pub bytes_used: u64,
    pub total_bytes: u64,
    pub unused: [u64; 379],
    pub path: [u8; 1024],
}

const _: () = assert!(std::mem::size_of::<BtrfsDevInfo>() == 4096);

#[cfg(target_os = "linux")]
nix::ioctl_readwrite!(btrfs_dev_info, 0x94, 30, BtrfsDevInfo);

/// The size of a mounted filesystem as the filesystem itself knows it now (its on-disk
/// superblock may lag behind its log): XFS geometry, btrfs device 1's size, ext4's superblock
/// through the partition node (the buffer ext4 updates in place). `None`: another filesystem.
#[cfg(target_os = "linux")]
pub fn mounted_size(mountpoint: &Path, fstype: &str, node: &Path) -> Option<FsSize> {
    match fstype {
        "ext4" | "ext3" | "ext2" => {
            let mut f = File::open(node).ok()?;
            fs_size(&mut f, 0).filter(|s| s.fstype == "ext4")
        }
        "xfs" => {
            let dir = File::open(mountpoint).ok()?;
            let mut g = XfsGeomV1::default();
            unsafe { xfs_fsgeometry_v1(dir.as_raw_fd(), &mut g) }.ok()?;
            let block = u64::from(g.blocksize);
            Some(FsSize {
                fstype: "xfs",
                bytes: g.datablocks * block,
                block,
            })
        }
        "btrfs" => {
            let dir = File::open(mountpoint).ok()?;
            let mut a = BtrfsDevInfo {
                devid: 1,
                uuid: [0; 16],
                bytes_used: 0,
                total_bytes: 0,
                unused: [0; 379],
                path: [0; 1024],
            };
            unsafe { btrfs_dev_info(dir.as_raw_fd(), &mut a) }.ok()?;
            let st = nix::sys::statvfs::fstatvfs(&dir).ok()?;
            Some(FsSize {
                fstype: "btrfs",
                bytes: a.total_bytes,
                block: st.block_size().max(4096),
            })
        }
        _ => None,
    }
}

/// Grows the filesystem mounted on `mountpoint` to fill `part_bytes`. Returns a one-line
/// description of what was asked. ext4 needs CAP_SYS_RESOURCE (EPERM otherwise).
#[cfg(target_os = "linux")]
pub fn grow(mountpoint: &Path, fstype: &str, part_bytes: u64, block: u64) -> io::Result<String> {
    let dir = File::open(mountpoint)?;
    let fd = dir.as_raw_fd();
    let err = |what: &str, e: nix::errno::Errno| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("{what} on {}: {e}", mountpoint.display()),
        )
    };
    match fstype {
        "ext4" | "ext3" | "ext2" => {
            let blocks = part_bytes / block.max(1024);
            unsafe { ext4_resize_fs(fd, &blocks) }.map_err(|e| {
                if e == nix::errno::Errno::EPERM {
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "EXT4_IOC_RESIZE_FS on {}: EPERM (needs CAP_SYS_RESOURCE, and a \
                             filesystem without errors)",
                            mountpoint.display()
                        ),
                    )
                } else {
                    err("EXT4_IOC_RESIZE_FS", e)
                }
            })?;
            Ok(format!("EXT4_IOC_RESIZE_FS {blocks} blocks"))
        }
        "xfs" => {
            let mut g = XfsGeomV1::default();
            unsafe { xfs_fsgeometry_v1(fd, &mut g) }
                .map_err(|e| err("XFS_IOC_FSGEOMETRY_V1", e))?;
            let bs = u64::from(g.blocksize.max(512));
            // Never fewer blocks than now: since Linux 5.12 a smaller count shrinks.
            let newblocks = (part_bytes / bs).max(g.datablocks);
            if newblocks == g.datablocks {
                return Ok(format!("XFS already {newblocks} blocks"));
            }
            let arg = XfsGrowfsData {
                newblocks,
                imaxpct: g.imaxpct,
            };
            unsafe { xfs_growfsdata(fd, &arg) }.map_err(|e| err("XFS_IOC_FSGROWFSDATA", e))?;
            Ok(format!(
                "XFS_IOC_FSGROWFSDATA {} -> {newblocks} blocks",
                g.datablocks
            ))
        }
        "btrfs" => {
            let mut a = BtrfsVolArgs {
                fd: 0,
                name: [0; 4088],
            };
            a.name[..3].copy_from_slice(b"max");
            let mut tries = 0;
            loop {
                match unsafe { btrfs_resize(fd, &a) } {
                    Ok(_) => break,
                    // Another exclusive operation (balance, device add) is running.
                    Err(nix::errno::Errno::EBUSY) | Err(nix::errno::Errno::EINPROGRESS)
                        if tries < 10 =>
                    {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(500));
                    }
                    Err(e) => return Err(err("BTRFS_IOC_RESIZE", e)),
                }
            }
            Ok("BTRFS_IOC_RESIZE max".into())
        }
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{}: filesystem {other} is not grown by primer (ext4, xfs, btrfs)",
                mountpoint.display()
            ),
        )),
    }
}

/// No mounted-filesystem query without Linux ioctls.
#[cfg(not(target_os = "linux"))]
pub fn mounted_size(_mountpoint: &Path, _fstype: &str, _node: &Path) -> Option<FsSize> {
    None
}

/// Online growth is Linux ioctls: a typed refusal elsewhere.
#[cfg(not(target_os = "linux"))]
pub fn grow(
    _mountpoint: &Path,
    _fstype: &str,
    _part_bytes: u64,
    _block: u64,
) -> io::Result<String> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not supported on Windows yet: growing a filesystem",
    ))
}

// Linux ioctl numbers: these tests run where they exist.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn opcodes() {
        // notes/reclaim.md §5 (linux-raw-sys values).
        assert_eq!(nix::request_code_write!(b'f', 16, 8), 1074292240);
        assert_eq!(nix::request_code_write!(0x94, 3, 4096), 1342215171);
        assert_eq!(nix::request_code_write!(b'X', 110, 16), 0x4010586e);
        assert_eq!(nix::request_code_read!(b'X', 100, 112), 0x80705864);
    }
}
