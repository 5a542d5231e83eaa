//! Partition tables: GPT (gptman) and MBR (decoded here) read from any `Read + Seek`, listed as
//! number, start, size, type, GPT name and GUIDs; and `OffsetReader`, which exposes one
//! partition as a stream of its own so the filesystem readers can reach it. Read-only: nothing
//! here writes a table (the MBR entry encoding is shared with make-drive and reclaim, which
//! write). Hostile tables are bounded (entry count, bytes read, EBR chain) and are never handed
//! to a crate code path that can panic on them (see `read_gpt`, `read_mbr`).

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

/// Offset of the first of the four 16-byte MBR (and EBR) partition entries in sector 0; the
/// boot code and the disk signature come before them, the boot signature `55 AA` after them.
const MBR_ENTRIES_AT: usize = 446;
/// MBR boot flags: the only two values an entry of a partition table may carry.
const BOOT_ACTIVE: u8 = 0x80;
const BOOT_INACTIVE: u8 = 0x00;

/// One 16-byte MBR or EBR partition entry, at fixed offsets (little-endian). Decoded here
/// rather than through a crate: 16 bytes need no serialisation framework, and primer decides
/// what a hostile entry can do (nothing panics on any byte value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MbrEntry {
    /// `0x80` active, `0x00` inactive (any other value: not a partition table).
    pub boot: u8,
    /// The first sector as CHS, as stored (primer addresses by LBA; see [`chs_field`]).
    pub first_chs: [u8; 3],
    /// Partition type; 0: unused entry.
    pub sys: u8,
    pub last_chs: [u8; 3],
    pub starting_lba: u32,
    pub sectors: u32,
}

impl MbrEntry {
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        MbrEntry {
            boot: b[0],
            first_chs: [b[1], b[2], b[3]],
            sys: b[4],
            last_chs: [b[5], b[6], b[7]],
            starting_lba: u32_at(8),
            sectors: u32_at(12),
        }
    }

    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.boot;
        b[1..4].copy_from_slice(&self.first_chs);
        b[4] = self.sys;
        b[5..8].copy_from_slice(&self.last_chs);
        b[8..12].copy_from_slice(&self.starting_lba.to_le_bytes());
        b[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        b
    }

    /// A used entry has a type (an entry of type 0 is free, whatever else it holds).
    pub fn is_used(&self) -> bool {
        self.sys != 0
    }

    pub fn is_unused(&self) -> bool {
        !self.is_used()
    }

    /// Extended partition types (DOS, Windows LBA, Linux, DR-DOS): an EBR chain inside.
    pub fn is_extended(&self) -> bool {
        matches!(self.sys, 0x05 | 0x0f | 0x85 | 0xc5 | 0xd5)
    }

    fn valid_boot_flag(&self) -> bool {
        self.boot == BOOT_ACTIVE || self.boot == BOOT_INACTIVE
    }
}

/// A CHS address as the 3 bytes of an MBR entry: head; sector (6 bits) with cylinder bits 8-9
/// above it; cylinder bits 0-7. Values out of range are masked, not checked.
pub fn chs_field(cylinder: u16, head: u8, sector: u8) -> [u8; 3] {
    [
        head,
        (sector & 0x3f) | (((cylinder >> 8) as u8 & 0x03) << 6),
        cylinder as u8,
    ]
}

/// What primer uses of an MBR's sector 0: the disk signature and the four primary entries
/// (numbers 1 to 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrHeader {
    /// Bytes 440..444, as stored (`blkid` shows them reversed as the PTUUID).
    pub disk_signature: [u8; 4],
    pub entries: [MbrEntry; 4],
}

impl MbrHeader {
    /// Decodes sector 0 (at least 512 bytes). Refused, as a table: no `55 AA` boot signature,
    /// or an entry whose boot flag is neither `0x80` nor `0x00`.
    pub fn parse(sector0: &[u8]) -> Result<Self, &'static str> {
        let entries = parse_entries::<4>(sector0)?;
        Ok(MbrHeader {
            disk_signature: [sector0[440], sector0[441], sector0[442], sector0[443]],
            entries,
        })
    }

    /// `(number, entry)`, numbered from 1 as the kernel numbers primary partitions.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &MbrEntry)> {
        self.entries.iter().enumerate().map(|(i, e)| (i + 1, e))
    }

    /// Entry `number` (1 to 4).
    pub fn get(&self, number: usize) -> Option<&MbrEntry> {
        self.entries.get(number.checked_sub(1)?)
    }

    pub fn get_mut(&mut self, number: usize) -> Option<&mut MbrEntry> {
        self.entries.get_mut(number.checked_sub(1)?)
    }

    /// Writes the four entries and the boot signature into `sector0` (512 bytes); the boot
    /// code and disk signature before them stay as they are.
    pub fn encode_into(&self, sector0: &mut [u8; 512]) {
        for (i, e) in self.entries.iter().enumerate() {
            let at = MBR_ENTRIES_AT + 16 * i;
            sector0[at..at + 16].copy_from_slice(&e.to_bytes());
        }
        sector0[510] = 0x55;
        sector0[511] = 0xaa;
    }
}

/// The first `N` entries of an MBR or EBR sector, refused without the boot signature or with an
/// invalid boot flag among them (an EBR's entries 3 and 4 are unused and not checked).
fn parse_entries<const N: usize>(sector: &[u8]) -> Result<[MbrEntry; N], &'static str> {
    if sector.len() < 512 || sector[510] != 0x55 || sector[511] != 0xaa {
        return Err("invalid MBR signature");
    }
    let mut out = [MbrEntry::default(); N];
    for (i, e) in out.iter_mut().enumerate() {
        let at = MBR_ENTRIES_AT + 16 * i;
        let mut b = [0u8; 16];
        b.copy_from_slice(&sector[at..at + 16]);
        *e = MbrEntry::from_bytes(&b);
        if !e.valid_boot_flag() {
            return Err("partition has invalid boot flag");
        }
    }
    Ok(out)
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
        read_mbr(r, device, &s0, mbr_sector.max(512), len)?
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

/// An MBR entry with its start resolved to an absolute LBA (a logical partition's start is
/// relative to its EBR; the sum can pass `u32::MAX`).
struct MbrSlot {
    number: u32,
    sys: u8,
    extended: bool,
    starting_lba: u64,
    sectors: u32,
}

/// MBR: the primary entries of `s0` (sector 0, already checked by `looks_like_table`); logical
/// partitions from the EBR chain of the first extended entry, only when some extended entry
/// starts past LBA 0. The chain is read as mbrman 0.6 read it (primer used that crate until its
/// MBR read was replaced by this one; listings stay the same): an unreadable first EBR means no
/// logical partitions, a later unreadable EBR or a link that does not move forward drops them
/// all. Every EBR read counts against the read budget, and links only move forward, so a hostile
/// chain ends; LBA sums are done in 64 bits (no wrap-around).
fn read_mbr<R: Read + Seek + ?Sized>(
    r: &mut R,
    device: &str,
    s0: &[u8; 512],
    sector: u64,
    len: u64,
) -> Result<PartitionTable, MediaError> {
    let header = MbrHeader::parse(s0).map_err(|e| corrupt(device, "MBR", e))?;
    let mut entries: Vec<MbrSlot> = header
        .iter()
        .map(|(i, e)| MbrSlot {
            number: i as u32,
            sys: e.sys,
            extended: e.is_extended(),
            starting_lba: u64::from(e.starting_lba),
            sectors: e.sectors,
        })
        .collect();
    let extended = header
        .iter()
        .any(|(_, e)| e.is_extended() && e.starting_lba > 0);
    if extended {
        // Sector 0 counts against the budget, as when it was read through it.
        let mut b = Budget {
            inner: &mut *r,
            left: TABLE_READ_BUDGET - 512,
        };
        match read_logical(&mut b, &header, sector) {
            Ok(logical) => {
                for (i, lp) in logical.iter().enumerate() {
                    entries.push(MbrSlot {
                        number: 5 + i as u32,
                        ..*lp
                    });
                }
            }
            Err(e) => tracing::debug!(device, "MBR logical partitions unreadable: {e}; ignored"),
        }
    }
    let mut partitions = Vec::new();
    let mut dropped = Vec::new();
    for e in entries {
        if e.sys == 0 || e.extended {
            continue;
        }
        let number = e.number;
        // At most 2^33 * 4096: no overflow in 64 bits.
        let start = e.starting_lba * sector;
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

/// The logical partitions of the first extended entry's EBR chain, in chain order (numbered by
/// the caller). Each EBR: entry 1 the logical partition (start relative to this EBR), entry 2
/// the link to the next EBR (relative to the extended partition's start; 0 ends the chain).
fn read_logical<R: Read + Seek + ?Sized>(
    r: &mut R,
    header: &MbrHeader,
    sector: u64,
) -> io::Result<Vec<MbrSlot>> {
    let mut out = Vec::new();
    let Some((_, ext)) = header.iter().find(|(_, e)| e.is_extended()) else {
        return Ok(out);
    };
    let base = u64::from(ext.starting_lba);
    let mut relative = 0u64;
    loop {
        let ebr_lba = base + relative;
        let mut ebr = [0u8; 512];
        let read = r
            .seek(SeekFrom::Start(ebr_lba * sector))
            .and_then(|_| r.read_exact(&mut ebr))
            .and_then(|_| parse_entries::<2>(&ebr).map_err(io::Error::other));
        let [logical, next] = match read {
            Ok(e) => e,
            // An empty extended partition need not hold an EBR.
            Err(_) if relative == 0 => break,
            Err(e) => return Err(e),
        };
        out.push(MbrSlot {
            number: 0,
            sys: logical.sys,
            extended: logical.is_extended(),
            starting_lba: u64::from(logical.starting_lba) + ebr_lba,
            sectors: logical.sectors,
        });
        let next_lba = u64::from(next.starting_lba);
        if next_lba > 0 && relative >= next_lba {
            return Err(io::Error::other("inconsistent extended boot record"));
        }
        relative = next_lba;
        if relative == 0 {
            break;
        }
    }
    Ok(out)
}

/// How many used entries the EBR chain of `header`'s first extended entry holds (make-drive's
/// refusal of a full MBR counts them); 0 when the chain is unreadable. Bounded by the read
/// budget like every table read.
pub fn mbr_logical_used<R: Read + Seek + ?Sized>(
    r: &mut R,
    header: &MbrHeader,
    sector: u64,
) -> usize {
    let mut b = Budget {
        inner: r,
        left: TABLE_READ_BUDGET,
    };
    read_logical(&mut b, header, sector).map_or(0, |l| l.iter().filter(|e| e.sys != 0).count())
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
        // mbrman 0.6's MBR::read_from panicked on this (every used entry at LBA 0); ours ignores them.
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
    fn mbr_logical_partitions_follow_the_ebr_chain() {
        // Extended partition at LBA 100; EBRs at 100 and 150 (links relative to 100), each
        // logical starting 2 sectors after its EBR.
        let mut d = mbr_with(&[(0, 0x83, 2, 50), (0, 0x0f, 100, 200)], 300 * 512);
        let ebr = |d: &mut Vec<u8>, lba: usize, next: u32| {
            let at = lba * 512;
            let e = mbr_with(&[(0, 0x83, 2, 20), (0, 0x05, next, 40)], 512);
            d[at..at + 512].copy_from_slice(&e);
        };
        ebr(&mut d, 100, 50);
        ebr(&mut d, 150, 0);
        let t = read_partition_table(&mut Cursor::new(&d), "img", 512)
            .unwrap()
            .unwrap();
        let got: Vec<(u32, u64)> = t
            .partitions
            .iter()
            .map(|p| (p.number, p.start / 512))
            .collect();
        assert_eq!(got, [(1, 2), (5, 102), (6, 152)]);
        let h = MbrHeader::parse(&d[..512]).unwrap();
        assert_eq!(mbr_logical_used(&mut Cursor::new(&d), &h, 512), 2);
        // A link that does not move forward drops every logical partition (as mbrman did).
        ebr(&mut d, 150, 50);
        let t = read_partition_table(&mut Cursor::new(&d), "img", 512)
            .unwrap()
            .unwrap();
        assert_eq!(t.partitions.len(), 1);
        // A link far past the end: a short read, the same.
        ebr(&mut d, 150, u32::MAX);
        let t = read_partition_table(&mut Cursor::new(&d), "img", 512)
            .unwrap()
            .unwrap();
        assert_eq!(t.partitions.len(), 1);
    }

    #[test]
    fn mbr_entry_and_chs_encoding() {
        let b = [
            0x80, 0xfe, 0xff, 0xff, 0x0c, 0x20, 0x21, 0x00, 0, 8, 0, 0, 0, 0, 1, 0,
        ];
        let e = MbrEntry::from_bytes(&b);
        assert_eq!(
            (e.boot, e.sys, e.starting_lba, e.sectors),
            (0x80, 0x0c, 2048, 65536)
        );
        assert_eq!(e.first_chs, chs_field(1023, 254, 63));
        assert_eq!(e.last_chs, chs_field(0, 32, 33));
        assert_eq!(e.to_bytes(), b);
        let mut s0 = mbr_with(&[(0x80, 0x83, 1, 1)], 512);
        s0[440..444].copy_from_slice(&[1, 2, 3, 4]);
        let h = MbrHeader::parse(&s0).unwrap();
        assert_eq!(h.disk_signature, [1, 2, 3, 4]);
        let mut out = [0u8; 512];
        out[..446].copy_from_slice(&s0[..446]);
        h.encode_into(&mut out);
        assert_eq!(out[..], s0[..]);
        s0[446] = 0x81;
        assert_eq!(
            MbrHeader::parse(&s0),
            Err("partition has invalid boot flag")
        );
        s0[511] = 0;
        assert_eq!(MbrHeader::parse(&s0), Err("invalid MBR signature"));
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
