//! Partition tables for reclaim: reads a disk's GPT (both copies, each checked on its own) or
//! MBR into a `Table` with every identity field, and builds the bytes of the new table (config
//! entry deleted, root's end moved) as a list of sector writes in crash-safe order. Computes
//! bytes only: nothing here writes to a disk (see `disk::linux::write_at`).

use std::io::{self, Read, Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};

use crate::media::part::{chs_field, guid_string, MbrEntry, MbrHeader};

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Gpt,
    Mbr,
}

/// Most GPT entries accepted (as `media::part`).
const MAX_GPT_ENTRIES: u32 = 1024;
/// Largest primary region (header + entry array) written at once.
const MAX_ARRAY_BYTES: u64 = 1 << 20;
/// MBR type bytes of extended partitions (CHS, LBA, Linux).
const EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];
const PROTECTIVE_MBR: u8 = 0xee;

/// One used table entry, in sectors of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 1-based, as the kernel numbers it.
    pub number: u32,
    pub first: u64,
    /// Last sector (inclusive).
    pub last: u64,
    /// GPT type GUID (upper case, as sfdisk prints it) or MBR type (`83`).
    pub type_code: String,
    /// GPT PARTUUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// GPT attribute bits; MBR boot flag (0x80).
    #[serde(default)]
    pub attrs: u64,
}

impl Part {
    pub fn sectors(&self) -> u64 {
        self.last + 1 - self.first
    }
}

/// A disk's table with every field reclaim checks before it acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub kind: TableKind,
    /// Logical sector size of the table.
    pub sector: u64,
    /// Disk length in sectors.
    pub disk_sectors: u64,
    /// GPT disk GUID, or the MBR disk signature as 8 hex digits.
    pub disk_id: String,
    pub first_usable: u64,
    pub last_usable: u64,
    /// GPT: where the backup header says it is (the primary's `backup_lba`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_lba: Option<u64>,
    pub parts: Vec<Part>,
}

impl Table {
    pub fn part(&self, number: u32) -> Option<&Part> {
        self.parts.iter().find(|p| p.number == number)
    }

    /// The table in `sfdisk --dump` form (what the journal records before and after).
    pub fn dump(&self, device: &str) -> String {
        let mut s = String::new();
        match self.kind {
            TableKind::Gpt => {
                s.push_str("label: gpt\n");
                s.push_str(&format!("label-id: {}\n", self.disk_id.to_uppercase()));
            }
            TableKind::Mbr => {
                s.push_str("label: dos\n");
                s.push_str(&format!("label-id: 0x{}\n", self.disk_id));
            }
        }
        s.push_str(&format!("device: {device}\nunit: sectors\n"));
        if self.kind == TableKind::Gpt {
            s.push_str(&format!(
                "first-lba: {}\nlast-lba: {}\n",
                self.first_usable, self.last_usable
            ));
        }
        s.push_str(&format!("sector-size: {}\n\n", self.sector));
        let mut parts: Vec<&Part> = self.parts.iter().collect();
        crate::sort::sort_by_key(&mut parts, |p| p.number);
        // sfdisk's partition names: `vda1`, `loop0p1`, `nvme0n1p1`.
        let sep = if device.ends_with(|c: char| c.is_ascii_digit()) {
            "p"
        } else {
            ""
        };
        for p in parts {
            s.push_str(&format!(
                "{device}{sep}{} : start={:>12}, size={:>12}, type={}",
                p.number,
                p.first,
                p.sectors(),
                p.type_code
            ));
            if let Some(g) = &p.guid {
                s.push_str(&format!(", uuid={}", g.to_uppercase()));
            }
            if let Some(n) = &p.name {
                s.push_str(&format!(", name={n:?}"));
            }
            if self.kind == TableKind::Mbr && p.attrs == 0x80 {
                s.push_str(", bootable");
            }
            s.push('\n');
        }
        s
    }
}

/// One GPT copy as read: its header and entries, or why it is unusable.
#[derive(Debug, Clone)]
pub struct GptCopy {
    pub header: gptman::GPTHeader,
    pub entries: Vec<gptman::GPTPartitionEntry>,
}

/// What is on the disk, each structure checked on its own.
// Read once or twice per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Raw {
    Gpt {
        sector: u64,
        disk_sectors: u64,
        primary: Result<GptCopy, String>,
        /// Read where the primary says, or at the last LBA when the primary is unusable.
        backup: Result<GptCopy, String>,
    },
    Mbr {
        sector: u64,
        disk_sectors: u64,
        header: MbrHeader,
    },
}

/// Why a disk is not something reclaim handles (refusals, nothing written).
pub type Refusal = String;

fn read_exact_at<R: Read + Seek + ?Sized>(r: &mut R, at: u64, buf: &mut [u8]) -> io::Result<()> {
    r.seek(SeekFrom::Start(at))?;
    r.read_exact(buf)
}

fn read_copy<R: Read + Seek + ?Sized>(r: &mut R, lba: u64, sector: u64) -> Result<GptCopy, String> {
    r.seek(SeekFrom::Start(lba * sector))
        .map_err(|e| e.to_string())?;
    let header = gptman::GPTHeader::read_from(r).map_err(|e| format!("LBA {lba}: {e}"))?;
    if header.primary_lba != lba {
        return Err(format!(
            "LBA {lba}: header says it lives at LBA {}",
            header.primary_lba
        ));
    }
    if header.number_of_partition_entries == 0
        || header.number_of_partition_entries > MAX_GPT_ENTRIES
        || header.size_of_partition_entry != 128
    {
        // gptman serialises 128-byte entries only (its CRC code asserts it).
        return Err(format!(
            "LBA {lba}: {} entries of {} bytes (1..={MAX_GPT_ENTRIES} of 128 bytes handled)",
            header.number_of_partition_entries, header.size_of_partition_entry
        ));
    }
    let entries = header.read_partitions(r, sector).map_err(|e| {
        format!(
            "LBA {lba} entries at LBA {}: {e}",
            header.partition_entry_lba
        )
    })?;
    Ok(GptCopy { header, entries })
}

/// Reads the table of a disk of `len` bytes. `sector`: the device's logical sector size, or
/// `None` for an image file (GPT tried with 512 then 4096; MBR uses 512). `Ok(None)`: no
/// partition table at all.
pub fn read_raw<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    sector: Option<u64>,
) -> Result<Option<Raw>, Refusal> {
    let mut s0 = [0u8; 512];
    if len < 512 || read_exact_at(r, 0, &mut s0).is_err() {
        return Ok(None);
    }
    if s0[510] != 0x55 || s0[511] != 0xaa {
        return Ok(None);
    }
    let types: Vec<u8> = (0..4).map(|i| s0[446 + 16 * i + 4]).collect();
    if types.contains(&PROTECTIVE_MBR) {
        if types.iter().filter(|&&t| t != 0).count() != 1 {
            return Err(format!(
                "hybrid MBR (protective entry beside other MBR entries {types:02x?}): not handled"
            ));
        }
        let sizes: Vec<u64> = match sector {
            Some(s) => vec![s],
            None => vec![512, 4096],
        };
        let mut last_err = String::new();
        for ss in sizes {
            if len < 3 * ss {
                continue;
            }
            let disk_sectors = len / ss;
            let primary = read_copy(r, 1, ss);
            let backup_lba = match &primary {
                Ok(p) => p.header.backup_lba,
                Err(_) => disk_sectors - 1,
            };
            let backup = if backup_lba < disk_sectors && backup_lba > 1 {
                read_copy(r, backup_lba, ss)
            } else {
                Err(format!(
                    "backup LBA {backup_lba} outside the disk ({disk_sectors} sectors)"
                ))
            };
            if primary.is_ok() || backup.is_ok() {
                return Ok(Some(Raw::Gpt {
                    sector: ss,
                    disk_sectors,
                    primary,
                    backup,
                }));
            }
            if let (Err(p), Err(b)) = (&primary, &backup) {
                last_err = format!("{ss}-byte sectors: primary {p}; backup {b}");
            }
        }
        return Err(format!(
            "protective MBR but no valid GPT header ({last_err})"
        ));
    }
    let ss = sector.unwrap_or(512);
    let header = MbrHeader::parse(&s0).map_err(|e| format!("MBR: {e}"))?;
    if !header.iter().any(|(_, e)| e.is_used()) {
        return Ok(None);
    }
    Ok(Some(Raw::Mbr {
        sector: ss,
        disk_sectors: len / ss,
        header,
    }))
}

fn gpt_type(b: &[u8; 16]) -> String {
    guid_string(b).to_uppercase()
}

/// The table one GPT copy describes.
pub fn gpt_table(copy: &GptCopy, sector: u64, disk_sectors: u64) -> Table {
    let h = &copy.header;
    let parts = copy
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_used())
        .map(|(i, e)| {
            let name = e.partition_name.as_str().trim_end_matches('\0').to_string();
            Part {
                number: i as u32 + 1,
                first: e.starting_lba,
                last: e.ending_lba,
                type_code: gpt_type(&e.partition_type_guid),
                guid: Some(guid_string(&e.unique_partition_guid)),
                name: (!name.is_empty()).then_some(name),
                attrs: e.attribute_bits,
            }
        })
        .collect();
    Table {
        kind: TableKind::Gpt,
        sector,
        disk_sectors,
        disk_id: guid_string(&h.disk_guid),
        first_usable: h.first_usable_lba,
        last_usable: h.last_usable_lba,
        backup_lba: Some(if h.primary_lba == 1 {
            h.backup_lba
        } else {
            h.primary_lba
        }),
        parts,
    }
}

/// The table an MBR describes; extended/logical layouts are refused.
pub fn mbr_table(h: &MbrHeader, sector: u64, disk_sectors: u64) -> Result<Table, Refusal> {
    let mut parts = Vec::new();
    for (i, e) in h.iter() {
        if e.is_unused() {
            continue;
        }
        if EXTENDED.contains(&e.sys) || e.is_extended() {
            return Err(format!(
                "MBR partition {i} is an extended partition (type {:#04x}): logical partitions are not handled",
                e.sys
            ));
        }
        if e.starting_lba == 0 || e.sectors == 0 {
            return Err(format!("MBR partition {i}: empty or at LBA 0"));
        }
        parts.push(Part {
            number: i as u32,
            first: u64::from(e.starting_lba),
            last: u64::from(e.starting_lba) + u64::from(e.sectors) - 1,
            type_code: format!("{:x}", e.sys),
            guid: None,
            name: None,
            attrs: u64::from(e.boot),
        });
    }
    let last = disk_sectors.min(1 << 32) - 1;
    Ok(Table {
        kind: TableKind::Mbr,
        sector,
        disk_sectors,
        disk_id: h
            .disk_signature
            .iter()
            .rev()
            .map(|b| format!("{b:02x}"))
            .collect(),
        first_usable: 1,
        last_usable: last,
        backup_lba: None,
        parts,
    })
}

/// One write of the table step, in the order they must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorWrite {
    /// `backup entries`, `backup header`, `primary header + entries` (the commit), `MBR`.
    pub what: &'static str,
    pub offset: u64,
    pub bytes: Vec<u8>,
    /// The write that switches the disk from the old table to the new one.
    pub commit: bool,
}

/// A `Write + Seek` over one byte range of the disk, starting from its current bytes: gptman
/// writes into it, primer decides which sectors are written and when.
struct Patch {
    base: u64,
    buf: Vec<u8>,
    pos: u64,
}

impl Write for Patch {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let start = self
            .pos
            .checked_sub(self.base)
            .ok_or_else(|| io::Error::other("write before the patched range"))?;
        let start = usize::try_from(start).map_err(io::Error::other)?;
        let end = start + data.len();
        if end > self.buf.len() {
            return Err(io::Error::other("write past the patched range"));
        }
        self.buf[start..end].copy_from_slice(data);
        self.pos += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Patch {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Start(p) => self.pos = p,
            _ => return Err(io::Error::other("only absolute seeks")),
        }
        Ok(self.pos)
    }
}

fn patch_of<R: Read + Seek + ?Sized>(r: &mut R, base: u64, len: u64) -> io::Result<Patch> {
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    read_exact_at(r, base, &mut buf)?;
    Ok(Patch {
        base,
        buf,
        pos: base,
    })
}

/// The changed sectors of `patch` against `old` as one write from the first changed sector to
/// the last (unchanged sectors in between are rewritten with their own bytes).
fn changed_span(old: &[u8], new: &[u8], base: u64, sector: usize) -> Option<(u64, Vec<u8>)> {
    let n = old.len() / sector;
    let changed: Vec<usize> = (0..n)
        .filter(|&i| old[i * sector..(i + 1) * sector] != new[i * sector..(i + 1) * sector])
        .collect();
    let (&first, &last) = (changed.first()?, changed.last()?);
    Some((
        base + (first * sector) as u64,
        new[first * sector..(last + 1) * sector].to_vec(),
    ))
}

/// The entry array of `entries` with the config entry cleared and root's last sector moved.
pub fn edit_entries(
    entries: &[gptman::GPTPartitionEntry],
    config: Option<u32>,
    root: u32,
    root_last: u64,
) -> Vec<gptman::GPTPartitionEntry> {
    let mut out = entries.to_vec();
    if let Some(c) = config.and_then(|c| out.get_mut(c as usize - 1)) {
        *c = gptman::GPTPartitionEntry::empty();
    }
    if let Some(r) = out.get_mut(root as usize - 1) {
        r.ending_lba = root_last;
    }
    out
}

/// GPT writes for a table change: backup entries, backup header, then primary header + entries
/// in one contiguous write (the commit). `primary` is the copy the change starts from (the old
/// table); both copies get `entries`. Sectors that already hold the new bytes are not written,
/// so a re-run after a crash writes only what is missing.
pub fn gpt_writes<R: Read + Seek + ?Sized>(
    r: &mut R,
    sector: u64,
    primary: &gptman::GPTHeader,
    entries: &[gptman::GPTPartitionEntry],
) -> io::Result<Vec<SectorWrite>> {
    let ss = sector as usize;
    let array_bytes =
        u64::from(primary.number_of_partition_entries) * u64::from(primary.size_of_partition_entry);
    let array_sectors = array_bytes.div_ceil(sector);
    if primary.primary_lba != 1 || primary.partition_entry_lba != 2 {
        return Err(io::Error::other(format!(
            "primary GPT header at LBA {} with entries at LBA {}: only the usual LBA 1 / LBA 2 layout is handled",
            primary.primary_lba, primary.partition_entry_lba
        )));
    }
    if (2 + array_sectors) * sector > MAX_ARRAY_BYTES {
        return Err(io::Error::other("GPT entry array too large"));
    }
    // The backup: its header in the last LBA, its array right before it (where every tool puts
    // it; the primary's `backup_lba` is checked against the disk end by the planner).
    let backup_lba = primary.backup_lba;
    let backup_entries_lba = backup_lba
        .checked_sub(array_sectors)
        .ok_or_else(|| io::Error::other("backup GPT header LBA too small"))?;
    let mut new_primary = primary.clone();
    let mut new_backup = primary.clone();
    new_backup.primary_lba = backup_lba;
    new_backup.backup_lba = 1;
    new_backup.partition_entry_lba = backup_entries_lba;

    let mut writes = Vec::new();
    // Backup entries and header.
    let mut be = patch_of(r, backup_entries_lba * sector, array_sectors * sector)?;
    let mut bh = patch_of(r, backup_lba * sector, sector)?;
    let old_be = be.buf.clone();
    let old_bh = bh.buf.clone();
    {
        // gptman writes the header then the entries; here into two separate patches.
        let mut both = Split {
            a: &mut bh,
            b: &mut be,
        };
        new_backup
            .write_into(&mut both, sector, entries)
            .map_err(io::Error::other)?;
    }
    if let Some((off, bytes)) = changed_span(&old_be, &be.buf, be.base, ss) {
        writes.push(SectorWrite {
            what: "backup GPT entries",
            offset: off,
            bytes,
            commit: false,
        });
    }
    if old_bh != bh.buf {
        writes.push(SectorWrite {
            what: "backup GPT header",
            offset: bh.base,
            bytes: bh.buf.clone(),
            commit: false,
        });
    }
    // Primary header and entries: LBA 1 up to the last changed entry sector, one write.
    let mut p = patch_of(r, sector, (1 + array_sectors) * sector)?;
    let old_p = p.buf.clone();
    new_primary
        .write_into(&mut p, sector, entries)
        .map_err(io::Error::other)?;
    if let Some((off, bytes)) = changed_span(&old_p, &p.buf, p.base, ss) {
        // Always start at the header so header and entries land in one write.
        let end = off as usize - p.base as usize + bytes.len();
        writes.push(SectorWrite {
            what: "primary GPT header + entries",
            offset: p.base,
            bytes: p.buf[..end].to_vec(),
            commit: true,
        });
    }
    Ok(writes)
}

/// Routes gptman's writes to the patch that covers them.
struct Split<'a> {
    a: &'a mut Patch,
    b: &'a mut Patch,
}

impl Split<'_> {
    fn target(&mut self) -> &mut Patch {
        if self.a.pos >= self.a.base && self.a.pos < self.a.base + self.a.buf.len() as u64 {
            self.a
        } else {
            self.b
        }
    }
}

impl Write for Split<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.target().write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Split<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.a.seek(pos)?;
        self.b.seek(pos)
    }
}

/// The primary GPT rebuilt from a valid backup (repair of a torn commit): one write of LBA 1 and
/// the whole entry array.
pub fn gpt_primary_from_backup<R: Read + Seek + ?Sized>(
    r: &mut R,
    sector: u64,
    backup: &GptCopy,
) -> io::Result<SectorWrite> {
    let array_bytes = u64::from(backup.header.number_of_partition_entries)
        * u64::from(backup.header.size_of_partition_entry);
    let array_sectors = array_bytes.div_ceil(sector);
    let mut h = backup.header.clone();
    h.backup_lba = h.primary_lba;
    h.primary_lba = 1;
    h.partition_entry_lba = 2;
    let mut p = patch_of(r, sector, (1 + array_sectors) * sector)?;
    h.write_into(&mut p, sector, &backup.entries)
        .map_err(io::Error::other)?;
    Ok(SectorWrite {
        what: "primary GPT header + entries (from the backup)",
        offset: p.base,
        bytes: p.buf,
        commit: true,
    })
}

/// CHS of `lba` in the usual 255-head, 63-sector geometry; past cylinder 1023 the maximum
/// (what fdisk and parted write).
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / (255 * 63);
    if c > 1023 {
        return chs_field(1023, 254, 63);
    }
    let h = (lba / 63) % 255;
    let s = lba % 63 + 1;
    chs_field(c as u16, h as u8, s as u8)
}

/// The MBR write: sector 0 with the config entry cleared and root's size changed; boot code,
/// disk signature and the other entries byte for byte.
pub fn mbr_write(
    sector0: &[u8; 512],
    header: &MbrHeader,
    config: Option<u32>,
    root: u32,
    root_last: u64,
) -> io::Result<SectorWrite> {
    let mut h = header.clone();
    if let Some(c) = config {
        if let Some(e) = h.get_mut(c as usize) {
            *e = MbrEntry::default();
        }
    }
    let e = h
        .get_mut(root as usize)
        .ok_or_else(|| io::Error::other("root entry missing"))?;
    let sectors = root_last + 1 - u64::from(e.starting_lba);
    e.sectors = u32::try_from(sectors).map_err(|_| io::Error::other("MBR root past 2 TiB"))?;
    e.last_chs = chs(root_last);
    // Boot code and disk signature stay as they were (only the entries may differ).
    let mut bytes = *sector0;
    h.encode_into(&mut bytes);
    let bytes = bytes.to_vec();
    Ok(SectorWrite {
        what: "MBR",
        offset: 0,
        bytes,
        commit: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_caps() {
        assert_eq!(chs(2048), chs_field(0, 32, 33));
        assert_eq!(chs(1 << 30), chs_field(1023, 254, 63));
    }

    #[test]
    fn changed_span_covers_first_to_last() {
        let old = vec![0u8; 4 * 512];
        let mut new = old.clone();
        new[512] = 1;
        new[3 * 512 + 5] = 1;
        let (off, b) = changed_span(&old, &new, 1000, 512).unwrap();
        assert_eq!(off, 1000 + 512);
        assert_eq!(b.len(), 3 * 512);
        assert!(changed_span(&old, &old, 0, 512).is_none());
    }
}
