//! Signature reading: what is on one device or partition, from as few small reads as possible.
//! Two small reads decide for any device (one device read behind the probe's reader): its first
//! 4 KiB (FAT boot sector, MBR/GPT, ext and XFS superblocks) and the 2 KiB ISO9660 primary
//! volume descriptor at 32 KiB. Only a recognised
//! ISO9660 or FAT filesystem costs more: its root directory is listed (bounded) so the kind can
//! be told from the contents. Read-only; never an error: unreadable means "nothing here".

use crate::media::read_at;
use std::io::{self, Read, Seek, SeekFrom};

use super::Signature;
use crate::media::fat;
use crate::media::part::looks_like_table;

/// The first read: boot sector / MBR / GPT header (512-byte sectors) / ext superblock.
const HEAD: usize = 4096;
/// ISO9660 primary volume descriptor position and size.
const PVD_AT: u64 = 16 * 2048;
const PVD: usize = 2048;
/// Bytes of an ISO9660 root directory listed, and names kept.
const MAX_ISO_ROOT: u64 = 64 * 1024;
const MAX_NAMES: usize = 512;

/// What a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A filesystem primer knows (iso9660, vfat; ext4 and xfs only to recognise system disks).
    Fs(Signature),
    /// A partition table (read with `media::part`).
    Table,
    Nothing,
}

/// Decodes a fixed-width, space- or NUL-padded label.
fn padded(raw: &[u8]) -> Option<String> {
    let end = raw
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    (end > 0).then(|| String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// Reads a device's signature. Errors are logged at debug level with `device` and give
/// `Found::Nothing`.
pub fn read_signature<R: Read + Seek>(r: &mut R, device: &str) -> Found {
    // Through `dyn`: one copy of the signature reader (~8 KB of the static binary, issue 15's
    // 4 MiB) for every reader type; two reads per device.
    let mut r: &mut dyn crate::media::ReadSeek = r;
    match try_read_signature(&mut r, device) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(device, "cannot read: {e}; skipped");
            Found::Nothing
        }
    }
}

fn try_read_signature<R: Read + Seek>(r: &mut R, device: &str) -> io::Result<Found> {
    // Two small reads into the stack, not one of 34 KiB into a fresh buffer: every reader the
    // probe uses serves both from one device read (`media::aligned`'s window, 36 KiB for the
    // probe), so the 28 KiB between are neither zeroed nor copied (for each of many devices).
    let mut head = [0u8; HEAD];
    let n = read_at(r, 0, &mut head)?;
    let head = &head[..n];
    let mut pvd = [0u8; PVD];
    let n = if head.len() == HEAD {
        read_at(r, PVD_AT, &mut pvd)?
    } else {
        0
    };
    let pvd = &pvd[..n];

    if pvd.len() == PVD && pvd[0] == 1 && &pvd[1..6] == b"CD001" && pvd[6] == 1 {
        let label = padded(&pvd[40..72]);
        let root_names = iso_root_names(r, pvd).unwrap_or_else(|e| {
            tracing::debug!(device, "ISO9660 root directory unreadable: {e}");
            Vec::new()
        });
        return Ok(Found::Fs(Signature {
            fstype: "iso9660".into(),
            label,
            root_names,
        }));
    }
    if fat::is_fat_boot_sector(head) {
        r.seek(SeekFrom::Start(0))?;
        let summary = fat::read_fat_summary(&mut *r, device).unwrap_or_else(|e| {
            tracing::debug!(device, "FAT root directory unreadable: {e}");
            None
        });
        let (label, root_names) =
            summary.unwrap_or_else(|| (fat::boot_sector_label(head), Vec::new()));
        return Ok(Found::Fs(Signature {
            fstype: "vfat".into(),
            label,
            root_names,
        }));
    }
    if looks_like_table(head) {
        return Ok(Found::Table);
    }
    // ext2/3/4: superblock at 1024, magic 0xEF53 at +56, volume name at +120 (16 bytes).
    if head.len() >= 1024 + 136 && head[1080] == 0x53 && head[1081] == 0xef {
        return Ok(Found::Fs(Signature {
            fstype: "ext4".into(),
            label: padded(&head[1144..1160]),
            root_names: Vec::new(),
        }));
    }
    // XFS: magic at 0, label at 108 (12 bytes).
    if head.len() >= 120 && &head[..4] == b"XFSB" {
        return Ok(Found::Fs(Signature {
            fstype: "xfs".into(),
            label: padded(&head[108..120]),
            root_names: Vec::new(),
        }));
    }
    Ok(Found::Nothing)
}

/// Names in an ISO9660 root directory (primary tree, plain names with `;N`), bounded. Plain
/// names suffice for the checks made from them (`root_has` matches the level-1 forms).
fn iso_root_names<R: Read + Seek>(r: &mut R, pvd: &[u8]) -> io::Result<Vec<String>> {
    let le32 = |b: &[u8], at: usize| -> u64 {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, |a: [u8; 4]| u64::from(u32::from_le_bytes(a)))
    };
    let block = u64::from(u16::from_le_bytes([pvd[128], pvd[129]]));
    if !matches!(block, 512 | 1024 | 2048) {
        return Ok(Vec::new());
    }
    let root = &pvd[156..190];
    let extent = le32(root, 2) + u64::from(root[1]);
    let size = le32(root, 10).min(MAX_ISO_ROOT);
    let mut dir = vec![0u8; usize::try_from(size).unwrap_or(0)];
    let n = read_at(r, extent.saturating_mul(block), &mut dir)?;
    dir.truncate(n);
    let mut names = Vec::new();
    let mut at = 0usize;
    while at < dir.len() && names.len() < MAX_NAMES {
        let len = usize::from(dir[at]);
        if len == 0 {
            // No more records in this 2 KiB sector.
            at = (at / 2048 + 1) * 2048;
            continue;
        }
        let Some(rec) = dir.get(at..at + len) else {
            break;
        };
        if len >= 34 {
            let name_len = usize::from(rec[32]);
            if let Some(name) = rec.get(33..33 + name_len) {
                if name != [0] && name != [1] {
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        at += len;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Counts read calls, as the probe's cost model does.
    pub struct Counting<R> {
        pub inner: R,
        pub reads: usize,
    }
    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.inner.read(buf)
        }
    }
    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    fn count(data: Vec<u8>) -> (Found, usize) {
        let mut c = Counting {
            inner: Cursor::new(data),
            reads: 0,
        };
        let f = read_signature(&mut c, "test");
        (f, c.reads)
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn at_most_two_small_reads_for_non_candidates() {
        let mut ext = vec![0u8; 1 << 20];
        ext[1080] = 0x53;
        ext[1081] = 0xef;
        ext[1144..1148].copy_from_slice(b"root");
        let mut xfs = vec![0u8; 1 << 20];
        xfs[..4].copy_from_slice(b"XFSB");
        for (what, data) in [
            ("zeros", vec![0u8; 1 << 20]),
            ("noise", noise(3, 1 << 20)),
            ("ext4", ext),
            ("xfs", xfs),
            ("short", vec![0u8; 1000]),
        ] {
            let (f, reads) = count(data);
            assert!(
                reads <= 2 + usize::from(what == "short") * 2,
                "{what}: {reads} reads"
            );
            match what {
                "ext4" => assert!(
                    matches!(&f, Found::Fs(s) if s.fstype == "ext4" && s.label.as_deref() == Some("root"))
                ),
                "xfs" => assert!(matches!(&f, Found::Fs(s) if s.fstype == "xfs")),
                _ => assert_eq!(f, Found::Nothing, "{what}"),
            }
        }
    }

    #[test]
    fn unreadable_is_nothing() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("EIO"))
            }
        }
        impl Seek for Broken {
            fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
                Ok(0)
            }
        }
        assert_eq!(read_signature(&mut Broken, "bad"), Found::Nothing);
    }
}
