//! Partition tables: GPT (gptman) and MBR (mbrman) read from any `Read + Seek`, listed as
//! number, start, size, type, GPT name and GUIDs; and `OffsetReader`, which exposes one
//! partition as a stream of its own so the filesystem readers can reach it. Read-only: nothing
//! here writes a table. Hostile tables are bounded (entry count, bytes read, EBR chain) and are
//! never handed to a crate code path that can panic on them (see `read_mbr`).

use crate::media::read_at;
use std::io::{self, Read, Seek, SeekFrom};

use serde::Serialize;

use super::MediaError;

/// Most GPT entries accepted (the spec's minimum array is 128; sgdisk allows a few more).
const MAX_GPT_ENTRIES: u32 = 1024;
/// Bytes a table reader may pull from the device (GPT array: 128 x 128 = 16 KiB; EBR chains).
const TABLE_READ_BUDGET: u64 = 1 << 20;
/// MBR partition type of a GPT protective MBR.
const PROTECTIVE_MBR: u8 = 0xee;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Gpt,
    Mbr,
}

/// One partition table entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// 1-based, as the kernel numbers it (`vda2` is number 2); MBR logical partitions from 5.
    pub number: u32,
    /// Offset of the first byte on the disk.
    pub start: u64,
    pub size: u64,
    /// GPT: the partition type GUID; MBR: the type byte as `0x83`.
    pub type_code: String,
    /// GPT partition name (UTF-16 in the table), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// GPT unique partition GUID (the kernel's PARTUUID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// MBR type byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mbr_type: Option<u8>,
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    pub kind: TableKind,
    /// Logical sector size the table was found with (GPT: 512 or 4096).
    pub sector_size: u64,
    /// GPT disk GUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_guid: Option<String>,
    /// Used entries, by number.
    pub partitions: Vec<Partition>,
    /// Used entries that were left out, with the reason (outside the disk, empty...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Dropped>,
}

/// A used table entry primer does not list as a partition, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub number: u32,
    pub reason: String,
}

/// Records a dropped entry, logged at warn level with its reason (a table that lost its config
/// partition this way must say so, not only that no partition was recognised).
fn drop_entry(dropped: &mut Vec<Dropped>, device: &str, kind: &str, number: u32, reason: String) {
    tracing::warn!("{device}: {kind} entry {number} ignored: {reason}");
    dropped.push(Dropped { number, reason });
}

impl PartitionTable {
    /// The partition that ends last on the disk (the Ironic-style trailing config partition).
    pub fn trailing(&self) -> Option<&Partition> {
        self.partitions.iter().max_by_key(|p| p.start + p.size)
    }
}

/// Formats a GUID stored in the GPT mixed-endian layout (first three fields little-endian) in
/// the usual lower-case text form, as `/dev/disk/by-partuuid` shows it.
pub fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

/// A reader that fails once it has delivered `budget` bytes: the crates' table readers follow
/// pointers from the disk (EBR chains), and this is what stops a hostile chain.
struct Budget<'a, R: ?Sized> {
    inner: &'a mut R,
    left: u64,
}

impl<R: Read + ?Sized> Read for Budget<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("partition table read budget exhausted"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

impl<R: Seek + ?Sized> Seek for Budget<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Whether `sector0` (at least 512 bytes) ends with the MBR boot signature and holds a used
/// entry whose boot flag is valid: a partition table rather than a FAT boot sector or noise.
/// Callers check for filesystems first (a FAT boot sector carries the same signature).
pub fn looks_like_table(sector0: &[u8]) -> bool {
    if sector0.len() < 512 || sector0[510] != 0x55 || sector0[511] != 0xaa {
        return false;
    }
    let entries: Vec<&[u8]> = (0..4)
        .map(|i| &sector0[446 + 16 * i..462 + 16 * i])
        .collect();
    entries.iter().all(|e| e[0] == 0 || e[0] == 0x80) && entries.iter().any(|e| e[4] != 0)
}

/// Reads the partition table of a whole disk. `Ok(None)`: no table. `mbr_sector` is the
/// disk's logical sector size for MBR addressing (512 for image files). Errors name the device
/// and the structure that was wrong.
pub fn read_partition_table<R: Read + Seek + ?Sized>(
    r: &mut R,
    device: &str,
    mbr_sector: u64,
) -> Result<Option<PartitionTable>, MediaError> {
    let io = |e: io::Error| MediaError::Io {
        device: device.to_string(),
        source: e,
    };
    let mut s0 = [0u8; 512];
    if read_at(r, 0, &mut s0).map_err(io)? < 512 || !looks_like_table(&s0) {
        return Ok(None);
    }
    let len = r.seek(SeekFrom::End(0)).map_err(io)?;
    let protective = (0..4).any(|i| s0[446 + 16 * i + 4] == PROTECTIVE_MBR);
    let table = if protective {
        read_gpt(r, device, len)?
    } else {
        read_mbr(r, device, mbr_sector.max(512), len)?
    };
    Ok(Some(table))
}

fn corrupt(device: &str, what: &str, detail: impl std::fmt::Display) -> MediaError {
    MediaError::Corrupt {
        device: device.to_string(),
        path: what.to_string(),
        detail: detail.to_string(),
    }
}

/// GPT: primary header at LBA 1, else the backup in the last LBA; 512- then 4096-byte sectors.
/// Uses gptman's header and entry-array readers (CRCs checked) rather than `GPT::read_from`,
/// whose alignment guess panics on a table whose used entries all start at LBA 0; the entry
/// count is checked before gptman allocates for it.
fn read_gpt<R: Read + Seek + ?Sized>(
    r: &mut R,
    device: &str,
    len: u64,
) -> Result<PartitionTable, MediaError> {
    let mut errors = Vec::new();
    for sector in [512u64, 4096] {
        let mut places = vec![("primary GPT header", sector)];
        if len >= 2 * sector {
            places.push(("backup GPT header", (len / sector - 1) * sector));
        }
        for (what, at) in places {
            let mut b = Budget {
                inner: &mut *r,
                left: TABLE_READ_BUDGET,
            };
            let header = match b
                .seek(SeekFrom::Start(at))
                .map_err(gptman::Error::from)
                .and_then(|_| gptman::GPTHeader::read_from(&mut b))
            {
                Ok(h) => h,
                Err(gptman::Error::InvalidSignature) => continue,
                Err(e) => {
                    errors.push(format!("{what} ({sector}-byte sectors): {e}"));
                    continue;
                }
            };
            if header.number_of_partition_entries > MAX_GPT_ENTRIES
                || header.size_of_partition_entry < 128
                || header.size_of_partition_entry > 4096
            {
                errors.push(format!(
                    "{what}: {} entries of {} bytes (at most {MAX_GPT_ENTRIES} of 128..4096 accepted)",
                    header.number_of_partition_entries, header.size_of_partition_entry
                ));
                continue;
            }
            let entries = match header.read_partitions(&mut b, sector) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{what} partition entries: {e}"));
                    continue;
                }
            };
            let mut partitions = Vec::new();
            let mut dropped = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                if e.is_unused() {
                    continue;
                }
                let number = i as u32 + 1;
                let (Some(start), Some(end)) = (
                    e.starting_lba.checked_mul(sector),
                    e.ending_lba
                        .checked_add(1)
                        .and_then(|x| x.checked_mul(sector)),
                ) else {
                    drop_entry(
                        &mut dropped,
                        device,
                        "GPT",
                        number,
                        format!(
                            "LBA range {}..={} does not fit in a byte offset",
                            e.starting_lba, e.ending_lba
                        ),
                    );
                    continue;
                };
                if end <= start {
                    drop_entry(
                        &mut dropped,
                        device,
                        "GPT",
                        number,
                        format!(
                            "ends (LBA {}) before it starts (LBA {})",
                            e.ending_lba, e.starting_lba
                        ),
                    );
                    continue;
                }
                if end > len {
                    drop_entry(
                        &mut dropped,
                        device,
                        "GPT",
                        number,
                        format!(
                            "bytes {start}..{end} lie beyond the end of the disk ({len} bytes)"
                        ),
                    );
                    continue;
                }
                let name = e.partition_name.as_str().trim_end_matches('\0').to_string();
                partitions.push(Partition {
                    number,
                    start,
                    size: end - start,
                    type_code: guid_string(&e.partition_type_guid),
                    name: (!name.is_empty()).then_some(name),
                    guid: Some(guid_string(&e.unique_partition_guid)),
                    mbr_type: None,
                });
            }
            if what.starts_with("backup") {
                tracing::warn!(device, "primary GPT header unusable; using the backup");
            }
            return Ok(PartitionTable {
                kind: TableKind::Gpt,
                sector_size: sector,
                disk_guid: Some(guid_string(&header.disk_guid)),
                partitions,
                dropped,
            });
        }
    }
    Err(corrupt(
        device,
        "GPT",
        if errors.is_empty() {
            "protective MBR but no GPT header at LBA 1 or the last LBA".to_string()
        } else {
            errors.join("; ")
        },
    ))
}

/// MBR: primary entries from mbrman's header reader; logical partitions through
/// `MBR::read_from` (bounded by the read budget) only when an extended partition starts past
/// LBA 0 — `MBR::read_from` panics (mbrman 0.6.1, alignment guess) when every used entry starts
/// at LBA 0, and with an extended entry past 0 that cannot happen.
fn read_mbr<R: Read + Seek + ?Sized>(
    r: &mut R,
    device: &str,
    sector: u64,
    len: u64,
) -> Result<PartitionTable, MediaError> {
    let mut b = Budget {
        inner: &mut *r,
        left: TABLE_READ_BUDGET,
    };
    let header =
        mbrman::MBRHeader::read_from(&mut b).map_err(|e| corrupt(device, "MBR", e.to_string()))?;
    let mut entries: Vec<(u32, mbrman::MBRPartitionEntry)> =
        header.iter().map(|(i, e)| (i as u32, e.clone())).collect();
    let extended = header
        .iter()
        .any(|(_, e)| e.is_extended() && e.starting_lba > 0);
    if extended {
        match mbrman::MBR::read_from(&mut b, sector as u32) {
            Ok(mbr) => {
                for (i, lp) in mbr.logical_partitions.iter().enumerate() {
                    entries.push((5 + i as u32, lp.partition.clone()));
                }
            }
            Err(e) => tracing::debug!(device, "MBR logical partitions unreadable: {e}; ignored"),
        }
    }
    let mut partitions = Vec::new();
    let mut dropped = Vec::new();
    for (number, e) in entries {
        if e.is_unused() || e.is_extended() {
            continue;
        }
        let start = u64::from(e.starting_lba) * sector;
        let size = u64::from(e.sectors) * sector;
        if e.starting_lba == 0 || size == 0 || start + size > len {
            let reason = if e.starting_lba == 0 {
                "starts at LBA 0 (the table's own sector)".to_string()
            } else if size == 0 {
                "is empty (0 sectors)".to_string()
            } else {
                format!(
                    "bytes {start}..{} lie beyond the end of the disk ({len} bytes)",
                    start + size
                )
            };
            drop_entry(&mut dropped, device, "MBR", number, reason);
            continue;
        }
        partitions.push(Partition {
            number,
            start,
            size,
            type_code: format!("{:#04x}", e.sys),
            name: None,
            guid: None,
            mbr_type: Some(e.sys),
        });
    }
    Ok(PartitionTable {
        kind: TableKind::Mbr,
        sector_size: sector,
        disk_guid: None,
        partitions,
        dropped,
    })
}

/// One byte range of a stream (a partition) seen as a stream of its own, starting at 0.
pub struct OffsetReader<R> {
    inner: R,
    start: u64,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> OffsetReader<R> {
    pub fn new(inner: R, start: u64, len: u64) -> Self {
        OffsetReader {
            inner,
            start,
            len,
            pos: 0,
        }
    }
}

impl<R: Read + Seek> Read for OffsetReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.len - self.pos).unwrap_or(usize::MAX));
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for OffsetReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn mbr_with(entries: &[(u8, u8, u32, u32)], size: usize) -> Vec<u8> {
        let mut d = vec![0u8; size];
        for (i, &(boot, sys, lba, sectors)) in entries.iter().enumerate() {
            let e = &mut d[446 + 16 * i..462 + 16 * i];
            e[0] = boot;
            e[4] = sys;
            e[8..12].copy_from_slice(&lba.to_le_bytes());
            e[12..16].copy_from_slice(&sectors.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xaa;
        d
    }

    #[test]
    fn mbr_primary_entries() {
        let d = mbr_with(&[(0x80, 0x83, 2048, 2048), (0, 0x99, 4096, 100)], 4 << 20);
        let t = read_partition_table(&mut Cursor::new(d), "img", 512)
            .unwrap()
            .unwrap();
        assert_eq!(t.kind, TableKind::Mbr);
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(t.partitions[0].number, 1);
        assert_eq!(t.partitions[0].start, 1 << 20);
        assert_eq!(t.partitions[0].size, 1 << 20);
        assert_eq!(t.partitions[1].type_code, "0x99");
        assert_eq!(t.partitions[1].mbr_type, Some(0x99));
        assert_eq!(t.trailing().map(|p| p.number), Some(2));
    }

    #[test]
    fn mbr_entries_at_lba_zero_do_not_panic() {
        // mbrman's MBR::read_from panics on this (every used entry at LBA 0); ours ignores them.
        let d = mbr_with(&[(0, 0x83, 0, 10), (0, 0x83, 0, 20)], 1 << 20);
        let t = read_partition_table(&mut Cursor::new(d), "img", 512)
            .unwrap()
            .unwrap();
        assert!(t.partitions.is_empty());
        // An extended entry at LBA 0 with a logical chain is not followed either.
        let d = mbr_with(&[(0, 0x05, 0, 10), (0, 0x83, 0, 20)], 1 << 20);
        assert!(read_partition_table(&mut Cursor::new(d), "img", 512).is_ok());
    }

    #[test]
    fn entries_past_the_end_are_ignored() {
        let d = mbr_with(&[(0, 0x83, 2048, 1 << 30)], 2 << 20);
        let t = read_partition_table(&mut Cursor::new(d), "img", 512)
            .unwrap()
            .unwrap();
        assert!(t.partitions.is_empty());
    }

    #[test]
    fn no_table() {
        assert!(
            read_partition_table(&mut Cursor::new(vec![0u8; 4096]), "img", 512)
                .unwrap()
                .is_none()
        );
        assert!(read_partition_table(&mut Cursor::new(vec![]), "img", 512)
            .unwrap()
            .is_none());
        // Signature but no used entry: not a table.
        assert!(
            read_partition_table(&mut Cursor::new(mbr_with(&[], 4096)), "img", 512)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn protective_mbr_without_gpt_is_an_error_naming_the_device() {
        let d = mbr_with(&[(0, 0xee, 1, 100)], 1 << 20);
        let e = read_partition_table(&mut Cursor::new(d), "disk.img", 512).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("disk.img") && s.contains("GPT"), "{s}");
    }

    #[test]
    fn guid_text() {
        let b = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid_string(&b), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn offset_reader_clamps_and_seeks() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut r = OffsetReader::new(Cursor::new(data), 100, 10);
        let mut buf = [0u8; 32];
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        assert_eq!(buf[0], 100);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert_eq!(r.seek(SeekFrom::End(-2)).unwrap(), 8);
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(buf[0], 108);
        assert!(r.seek(SeekFrom::Current(-100)).is_err());
    }
}
