//! ISO9660 reader (Rock Ridge, Joliet, level 1, multi-extent) over any `Read + Seek`, behind
//! primer's media interface. Own implementation: read-only and bounded; never follows symlinks,
//! never trusts sizes or names, and reports unsafe names instead of rewriting them.
//!
//! Layout facts used (ECMA-119 / ISO 9660, SUSP 1.12, RRIP 1.12, Joliet):
//! - Volume descriptors start at byte 32768, 2048 bytes each: type, `CD001`, version; type 1 is
//!   the primary descriptor, type 2 with a UCS-2 escape sequence (`%/@`, `%/C`, `%/E`) at byte 88
//!   is Joliet, 255 ends the set. The root directory record is at byte 156 of a descriptor.
//! - A directory is a run of records that never cross a 2048-byte sector; a zero length byte
//!   means "no more records in this sector". Numbers are stored both-endian; the little-endian
//!   copy is used.
//! - Rock Ridge: the root's `.` record starts its system use area with `SP` (which gives the
//!   bytes to skip in every other area); `NM` gives names, `SL` symlink targets, `CE` continues
//!   the area elsewhere, `CL`/`RE` relocate directories nested deeper than ISO 9660 allows.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};

use super::dir::check_size;
use super::{strip_version, unsafe_component, DriveFiles, LimitKind, Limits, MediaError, Skipped};
use crate::model::grammar::Esc;

/// Volume descriptors and directory record layout use 2048-byte sectors whatever the logical
/// block size.
const SECTOR: usize = 2048;
/// Sector of the first volume descriptor.
const DESCRIPTOR_START: u64 = 16;
/// Descriptors read before giving up on finding the set terminator.
const MAX_DESCRIPTORS: u64 = 64;
/// Sectors of a directory read at once (64 KiB).
const DIR_WINDOW: u64 = 32;
/// Descriptors read at once: the primary, a Joliet one and the terminator fit, with room.
const DESCRIPTOR_WINDOW: u64 = 8;
/// Continuation areas followed for one record (Linux isofs follows at most 32).
const MAX_CE_PER_RECORD: usize = 32;
/// Longest Rock Ridge name assembled; longer names are reported as unsafe, not used.
const MAX_NAME_BYTES: usize = 1024;
/// Longest symlink target assembled.
const MAX_LINK_BYTES: usize = 4096;

const FLAG_DIRECTORY: u8 = 0x02;
const FLAG_ASSOCIATED: u8 = 0x04;
const FLAG_NOT_FINAL: u8 = 0x80;

/// Reads only the primary volume descriptor's volume identifier (the label). `Ok(None)` when the
/// device holds no ISO9660 volume or is too short; `Ok(Some(""))` for an ISO9660 volume with a
/// blank identifier. One 2 KiB read: cheap enough for probing every device.
pub fn read_iso9660_label<R: Read + Seek>(reader: &mut R) -> io::Result<Option<String>> {
    let mut sector = [0u8; SECTOR];
    reader.seek(SeekFrom::Start(DESCRIPTOR_START * SECTOR as u64))?;
    match reader.read_exact(&mut sector) {
        Ok(()) => Ok(primary_label(&sector)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the primary volume descriptor ends: a read of the first `PVD_END` bytes of a device
/// answers both "FAT boot sector?" and "ISO9660?".
pub const PVD_END: usize = (DESCRIPTOR_START as usize + 1) * SECTOR;

/// Whether `first`, the first bytes of a device (at least [`PVD_END`] of them for a yes), holds
/// an ISO9660 primary volume descriptor at 32 KiB: what [`read_iso9660_label`] reads, without
/// a read of its own.
pub fn is_primary_at_32k(first: &[u8]) -> bool {
    first
        .get(DESCRIPTOR_START as usize * SECTOR..PVD_END)
        .and_then(primary_label)
        .is_some()
}

/// Whether `sector` is a volume descriptor of `kind` (`CD001`, version 1).
fn is_descriptor(sector: &[u8], kind: u8) -> bool {
    sector.first() == Some(&kind) && sector.get(1..6) == Some(b"CD001") && sector.get(6) == Some(&1)
}

/// The volume identifier of a primary volume descriptor, trailing spaces and NULs removed.
fn primary_label(sector: &[u8]) -> Option<String> {
    if !is_descriptor(sector, 1) {
        return None;
    }
    let id = sector.get(40..72)?;
    let end = id
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    // Shown in logs and reasons: a control character becomes U+FFFD, like invalid UTF-8.
    Some(
        String::from_utf8_lossy(id.get(..end)?)
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect(),
    )
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// How names are read from the chosen directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// Primary tree with Rock Ridge; `skip` bytes start every system use area.
    RockRidge { skip: u8 },
    /// Joliet supplementary tree, UCS-2 big-endian names.
    Joliet,
    /// Primary tree, plain ISO 9660 names.
    Plain,
}

/// One directory record, owned (names and system use areas are at most 255 bytes).
#[derive(Debug, Clone)]
struct Record {
    /// First logical block of the data (extent + extended attribute record length).
    block: u64,
    size: u64,
    flags: u8,
    interleaved: bool,
    name: Vec<u8>,
    system_use: Vec<u8>,
}

impl Record {
    /// Parses a record from exactly its `len` bytes. `None` when the fields do not fit.
    fn parse(raw: &[u8]) -> Option<Record> {
        let len = usize::from(*raw.first()?);
        if len < 34 || len > raw.len() {
            return None;
        }
        let raw = raw.get(..len)?;
        let xattr = u64::from(*raw.get(1)?);
        let extent = u64::from(le32(raw, 2)?);
        let size = u64::from(le32(raw, 10)?);
        let flags = *raw.get(25)?;
        let interleaved = *raw.get(26)? != 0 || *raw.get(27)? != 0;
        let name_len = usize::from(*raw.get(32)?);
        if name_len == 0 {
            return None;
        }
        let name = raw.get(33..33 + name_len)?.to_vec();
        // A padding byte follows an even-length identifier so the system use area is aligned.
        let su_start = 33 + name_len + usize::from(name_len % 2 == 0);
        let system_use = raw.get(su_start..).unwrap_or_default().to_vec();
        Some(Record {
            block: extent + xattr,
            size,
            flags,
            interleaved,
            name,
            system_use,
        })
    }

    fn is_dot_or_dotdot(&self) -> bool {
        self.name == [0] || self.name == [1]
    }

    fn is_dir(&self) -> bool {
        self.flags & FLAG_DIRECTORY != 0
    }
}

/// What the system use area of one record says (Rock Ridge only).
#[derive(Debug, Default)]
struct Susp {
    /// `SP` skip length (only meaningful on the root's `.` record).
    sp: Option<u8>,
    /// Any Rock Ridge entry (or an `ER` extension reference) was seen.
    rock_ridge: bool,
    /// The `NM` name; kept to at most `MAX_NAME_BYTES`, so an overlong one stays unsafe.
    name: Option<Vec<u8>>,
    symlink: Option<String>,
    child_link: Option<u32>,
    relocated: bool,
}

/// Assembles an `SL` target across components and entries.
#[derive(Debug, Default)]
struct LinkBuilder {
    target: String,
    /// The previous component continues in the next one (no separator).
    continues: bool,
    /// A separator is needed before the next new component.
    need_separator: bool,
    seen: bool,
}

impl LinkBuilder {
    /// Adds the component records of one `SL` entry. `Err` with a reason when malformed.
    fn push(&mut self, mut data: &[u8]) -> Result<(), String> {
        self.seen = true;
        while data.len() >= 2 {
            let (flags, len) = match data {
                [f, l, ..] => (*f, usize::from(*l)),
                _ => break,
            };
            let content = data
                .get(2..2 + len)
                .ok_or_else(|| "SL component runs past its entry".to_string())?;
            data = data.get(2 + len..).unwrap_or_default();
            if flags & (0x08 | 0x10 | 0x20) != 0 {
                // Root, volume root or host: an absolute target.
                self.target.clear();
                self.target.push('/');
                self.need_separator = false;
                self.continues = false;
                continue;
            }
            let piece = if flags & 0x02 != 0 {
                ".".into()
            } else if flags & 0x04 != 0 {
                "..".into()
            } else {
                String::from_utf8_lossy(content)
            };
            if !self.continues && self.need_separator {
                self.target.push('/');
            }
            self.target.push_str(&piece);
            self.need_separator = true;
            self.continues = flags & 0x01 != 0;
            if self.target.len() > MAX_LINK_BYTES {
                return Err(format!("symlink target longer than {MAX_LINK_BYTES} bytes"));
            }
        }
        Ok(())
    }
}

/// A `CE` entry: where the system use area continues.
#[derive(Debug, Clone, Copy)]
struct Continuation {
    block: u32,
    offset: u32,
    len: u32,
}

/// A directory waiting to be read.
#[derive(Debug)]
struct DirJob {
    start: u64,
    size: u64,
    path: String,
    depth: usize,
}

/// A file whose records are being collected (several for a multi-extent file).
#[derive(Debug)]
struct Pending {
    iso_name: Vec<u8>,
    /// Where it goes in `files`; `None` when its content is not used (unsafe name, symlink).
    path: Option<String>,
    /// Name used in errors.
    label: String,
    extents: Vec<(u64, u64)>,
    size: u64,
}

/// Shows a relative path in messages: the root is `/`.
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// A file left on the device: its path, extents (offset, length) and size.
type Streamed = (String, Vec<(u64, u64)>, u64);

struct Reader<'a, R> {
    inner: R,
    len: u64,
    device: &'a str,
    limits: &'a Limits,
    /// Logical block size: 512, 1024 or 2048.
    block_size: u64,
    tree: Tree,
    entries: usize,
    total: u64,
    continuations: usize,
    visited: HashSet<u64>,
    out: DriveFiles,
    /// Files above [`super::STREAM_THRESHOLD`], left on the device: path, extents, size. Their
    /// place in `out.files` holds an empty buffer until the walk ends.
    streamed: Vec<Streamed>,
    /// Whether large files go to `streamed` (the reader is kept) or are read now.
    stream: bool,
}

impl<'a, R: Read + Seek> Reader<'a, R> {
    fn corrupt(&self, path: &str, detail: impl Into<String>) -> MediaError {
        MediaError::Corrupt {
            device: self.device.to_string(),
            path: shown(path).to_string(),
            detail: detail.into(),
        }
    }

    /// Reads `buf.len()` bytes at `offset`; anything past the end of the device is corrupt.
    fn read_at(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        path: &str,
        what: &str,
    ) -> Result<(), MediaError> {
        let want = buf.len() as u64;
        if offset.checked_add(want).is_none_or(|end| end > self.len) {
            return Err(self.corrupt(
                path,
                format!(
                    "{what} at byte {offset} ({want} bytes) lies beyond the end of the device ({} bytes)",
                    self.len
                ),
            ));
        }
        let result = self
            .inner
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.inner.read_exact(buf));
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.corrupt(
                path,
                format!("{what} at byte {offset} ({want} bytes): device ended early"),
            )),
            Err(e) => Err(MediaError::Io {
                device: self.device.to_string(),
                source: e,
            }),
        }
    }

    /// Counts one directory entry (or empty directory sector) against `max_entries`.
    fn count_entry(&mut self, path: &str) -> Result<(), MediaError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(MediaError::Limit {
                device: self.device.to_string(),
                path: shown(path).to_string(),
                kind: LimitKind::Entries,
                value: self.entries as u64,
                limit: self.limits.max_entries as u64,
            });
        }
        Ok(())
    }

    /// Reads the first record of the directory at byte `start` (its `.` record).
    fn dot_record(&mut self, start: u64, path: &str) -> Result<Record, MediaError> {
        let mut head = [0u8; 255];
        let avail = self.len.saturating_sub(start).min(head.len() as u64) as usize;
        let head = head.get_mut(..avail.max(1)).unwrap_or_default();
        self.read_at(start, head, path, "directory")?;
        Record::parse(head)
            .ok_or_else(|| self.corrupt(path, format!("no valid `.` record at byte {start}")))
    }

    /// Parses the system use area of `record` with its continuation areas.
    fn susp(&mut self, area: &[u8], path: &str) -> Result<Susp, MediaError> {
        let mut out = Susp::default();
        let mut name: Vec<u8> = Vec::new();
        let mut name_seen = false;
        let mut link = LinkBuilder::default();
        let mut area = area.to_vec();
        let mut followed = 0;
        loop {
            let next =
                self.susp_entries(&area, &mut out, &mut name, &mut name_seen, &mut link, path)?;
            let Some(ce) = next else { break };
            followed += 1;
            self.continuations += 1;
            if followed > MAX_CE_PER_RECORD {
                return Err(self.corrupt(path, "more than 32 Rock Ridge continuation areas"));
            }
            if self.continuations > self.limits.max_entries.saturating_mul(4).saturating_add(64) {
                return Err(
                    self.corrupt(path, "too many Rock Ridge continuation areas on the volume")
                );
            }
            let (offset, len) = (u64::from(ce.offset), u64::from(ce.len));
            if len == 0 {
                break;
            }
            if offset >= self.block_size || len > self.block_size - offset {
                return Err(self.corrupt(
                    path,
                    format!("Rock Ridge continuation area (offset {offset}, {len} bytes) crosses a block"),
                ));
            }
            let at = u64::from(ce.block) * self.block_size + offset;
            area = vec![0u8; len as usize];
            self.read_at(at, &mut area, path, "Rock Ridge continuation area")?;
        }
        if name_seen {
            out.name = Some(name);
        }
        if link.seen {
            out.symlink = Some(link.target);
        }
        Ok(out)
    }

    /// Parses the entries of one area; returns the continuation it names, if any.
    fn susp_entries(
        &self,
        area: &[u8],
        out: &mut Susp,
        name: &mut Vec<u8>,
        name_seen: &mut bool,
        link: &mut LinkBuilder,
        path: &str,
    ) -> Result<Option<Continuation>, MediaError> {
        let mut next = None;
        let mut rest = area;
        while let [a, b, len, _version, ..] = rest {
            let sig = [*a, *b];
            let len = usize::from(*len);
            if sig == [0, 0] {
                break;
            }
            let Some(entry) = rest.get(..len).filter(|_| len >= 4) else {
                return Err(self.corrupt(
                    path,
                    format!(
                        "malformed system use entry {:?} (length {len})",
                        String::from_utf8_lossy(&sig)
                    ),
                ));
            };
            let data = entry.get(4..).unwrap_or_default();
            match &sig {
                b"CE" => {
                    if let (Some(block), Some(offset), Some(len)) =
                        (le32(entry, 4), le32(entry, 12), le32(entry, 20))
                    {
                        next = Some(Continuation { block, offset, len });
                    }
                }
                b"ST" => break,
                b"SP" => {
                    if let [0xbe, 0xef, skip, ..] = data {
                        out.sp = Some(*skip);
                    }
                }
                b"NM" => {
                    out.rock_ridge = true;
                    *name_seen = true;
                    let flags = data.first().copied().unwrap_or(0);
                    let bytes = data.get(1..).unwrap_or_default();
                    if flags & 0x02 != 0 {
                        name.clear();
                        name.push(b'.');
                    } else if flags & 0x04 != 0 {
                        name.clear();
                        name.extend_from_slice(b"..");
                    } else if name.len() + bytes.len() <= MAX_NAME_BYTES {
                        name.extend_from_slice(bytes);
                    }
                }
                b"SL" => {
                    out.rock_ridge = true;
                    link.push(data.get(1..).unwrap_or_default())
                        .map_err(|detail| self.corrupt(path, detail))?;
                }
                b"CL" => {
                    out.rock_ridge = true;
                    out.child_link = le32(entry, 4);
                }
                b"RE" => {
                    out.rock_ridge = true;
                    out.relocated = true;
                }
                b"ER" | b"RR" | b"PX" | b"TF" | b"PN" | b"PL" => out.rock_ridge = true,
                _ => {}
            }
            rest = rest.get(len..).unwrap_or_default();
        }
        Ok(next)
    }

    /// The name a record is listed under in the chosen tree.
    fn record_name(&self, record: &Record, susp: &Susp) -> String {
        match self.tree {
            Tree::RockRidge { .. } => match &susp.name {
                Some(name) => String::from_utf8_lossy(name).into_owned(),
                None => strip_version(&String::from_utf8_lossy(&record.name)).to_string(),
            },
            Tree::Joliet => {
                let units = record.name.chunks_exact(2).map(|p| {
                    u16::from_be_bytes([
                        p.first().copied().unwrap_or(0),
                        p.get(1).copied().unwrap_or(0),
                    ])
                });
                let decoded: String = char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect();
                strip_version(&decoded).to_string()
            }
            Tree::Plain => strip_version(&String::from_utf8_lossy(&record.name)).to_string(),
        }
    }

    /// Queues a subdirectory after the depth, cycle and bounds checks.
    fn push_dir(
        &mut self,
        stack: &mut Vec<DirJob>,
        start: u64,
        size: u64,
        path: String,
        depth: usize,
    ) -> Result<(), MediaError> {
        if depth > self.limits.max_depth {
            return Err(MediaError::Limit {
                device: self.device.to_string(),
                path,
                kind: LimitKind::Depth,
                value: depth as u64,
                limit: self.limits.max_depth as u64,
            });
        }
        if !self.visited.insert(start) {
            return Err(self.corrupt(
                &path,
                format!("directory at byte {start} was already read (a directory cycle)"),
            ));
        }
        if start.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(self.corrupt(
                &path,
                format!(
                    "directory at byte {start} ({size} bytes) lies beyond the end of the device ({} bytes)",
                    self.len
                ),
            ));
        }
        stack.push(DirJob {
            start,
            size,
            path,
            depth,
        });
        Ok(())
    }

    /// Reads every record of one directory.
    fn read_dir(&mut self, dir: DirJob, stack: &mut Vec<DirJob>) -> Result<(), MediaError> {
        // The directory is read in windows of up to DIR_WINDOW sectors (one read for any
        // ordinary directory), not a read per sector; `window` holds sectors from `first` on.
        let mut window: Vec<u8> = Vec::new();
        let mut first: Option<u64> = None;
        let mut pos = 0u64;
        let mut pending: Option<Pending> = None;
        while pos < dir.size {
            let index = pos / SECTOR as u64;
            let within = (pos % SECTOR as u64) as usize;
            let avail = (dir.size - index * SECTOR as u64).min(SECTOR as u64) as usize;
            let held = first.and_then(|f| {
                let at = usize::try_from(index.checked_sub(f)?).ok()? * SECTOR;
                (at + avail <= window.len()).then_some(at)
            });
            let at = match held {
                Some(at) => at,
                None => {
                    let start = dir.start + index * SECTOR as u64;
                    let rest = dir.size - index * SECTOR as u64;
                    let mut want = rest.min(DIR_WINDOW * SECTOR as u64);
                    // Past the device's end, read only the sector needed now: a truncated
                    // image fails at the sector it lacks, with that sector's offset.
                    if start.saturating_add(want) > self.len {
                        want = avail as u64;
                    }
                    window.resize(want as usize, 0);
                    self.read_at(start, &mut window, &dir.path, "directory")?;
                    first = Some(index);
                    0
                }
            };
            let sector = window.get(at..at + avail).unwrap_or_default();
            let len = usize::from(sector.get(within).copied().unwrap_or(0));
            if len == 0 {
                if within == 0 {
                    // A sector without records still costs a read: count it like an entry.
                    self.count_entry(&dir.path)?;
                }
                pos = (index + 1) * SECTOR as u64;
                continue;
            }
            let record = sector
                .get(within..avail)
                .filter(|_| within + len <= avail)
                .and_then(Record::parse)
                .ok_or_else(|| {
                    self.corrupt(
                        &dir.path,
                        format!("malformed directory record at byte {}", dir.start + pos),
                    )
                })?;
            pos += len as u64;
            self.record(&dir, record, &mut pending, stack)?;
        }
        if let Some(p) = pending {
            return Err(self.corrupt(&p.label, "multi-extent file ends without its final record"));
        }
        Ok(())
    }

    /// Handles one directory record.
    fn record(
        &mut self,
        dir: &DirJob,
        record: Record,
        pending: &mut Option<Pending>,
        stack: &mut Vec<DirJob>,
    ) -> Result<(), MediaError> {
        if let Some(mut p) = pending.take() {
            // Continuation of a multi-extent file: same identifier, next extent.
            if record.name != p.iso_name || record.is_dir() {
                return Err(self.corrupt(
                    &p.label,
                    "multi-extent file continues with a different record",
                ));
            }
            self.count_entry(&dir.path)?;
            let done = record.flags & FLAG_NOT_FINAL == 0;
            self.add_extent(&mut p, &record)?;
            if done {
                self.finish_file(p)?;
            } else {
                *pending = Some(p);
            }
            return Ok(());
        }
        if record.is_dot_or_dotdot() {
            return Ok(());
        }
        self.count_entry(&dir.path)?;
        let susp = match self.tree {
            Tree::RockRidge { skip } => {
                let area = record
                    .system_use
                    .get(usize::from(skip)..)
                    .unwrap_or_default()
                    .to_vec();
                let label = join(&dir.path, &String::from_utf8_lossy(&record.name));
                self.susp(&area, &label)?
            }
            _ => Susp::default(),
        };
        let not_final = record.flags & FLAG_NOT_FINAL != 0;
        if record.flags & FLAG_ASSOCIATED != 0 || susp.relocated {
            // Associated files are not part of the tree; a relocated directory is listed where
            // its `CL` placeholder is.
            tracing::debug!(dir = %super::shown_path(&dir.path), name = %Esc(&String::from_utf8_lossy(&record.name)), "skipping associated or relocated record");
            return self.skip_chain(&dir.path, record, not_final, pending);
        }
        let name = self.record_name(&record, &susp);
        let path = join(&dir.path, &name);
        if let Some(reason) = unsafe_component(&name) {
            tracing::debug!(path = %Esc(&path), reason, "skipping unsafe name");
            self.out.skipped.push(Skipped::new(&path, reason));
            return self.skip_chain(&dir.path, record, not_final, pending);
        }
        if let Some(block) = susp.child_link {
            let start = u64::from(block) * self.block_size;
            let dot = self.dot_record(start, &path)?;
            if dot.block * self.block_size != start {
                return Err(
                    self.corrupt(&path, "relocated directory's `.` record points elsewhere")
                );
            }
            return self.push_dir(stack, start, dot.size, path, dir.depth + 1);
        }
        if record.is_dir() {
            if not_final {
                return Err(self.corrupt(&path, "directory record marked multi-extent"));
            }
            let start = record.block * self.block_size;
            return self.push_dir(stack, start, record.size, path, dir.depth + 1);
        }
        if let Some(target) = susp.symlink {
            if self.taken(&path) {
                self.duplicate(path);
            } else {
                self.out.symlinks.insert(path, target);
            }
            return self.skip_chain(&dir.path, record, not_final, pending);
        }
        if self.taken(&path) {
            self.duplicate(path);
            return self.skip_chain(&dir.path, record, not_final, pending);
        }
        let mut p = Pending {
            iso_name: record.name.clone(),
            path: Some(path.clone()),
            label: path,
            extents: Vec::new(),
            size: 0,
        };
        self.add_extent(&mut p, &record)?;
        if not_final {
            *pending = Some(p);
            Ok(())
        } else {
            self.finish_file(p)
        }
    }

    fn taken(&self, path: &str) -> bool {
        self.out.files.contains_key(path) || self.out.symlinks.contains_key(path)
    }

    fn duplicate(&mut self, path: String) {
        tracing::debug!(path = %Esc(&path), "skipping duplicate name");
        self.out.skipped.push(Skipped::new(
            &path,
            "duplicate name (an earlier entry has it)",
        ));
    }

    /// For a record whose content is not read: consume its continuation records, if any.
    fn skip_chain(
        &mut self,
        dir: &str,
        record: Record,
        not_final: bool,
        pending: &mut Option<Pending>,
    ) -> Result<(), MediaError> {
        if not_final {
            *pending = Some(Pending {
                label: join(dir, &String::from_utf8_lossy(&record.name)),
                iso_name: record.name,
                path: None,
                extents: Vec::new(),
                size: 0,
            });
        }
        Ok(())
    }

    /// Adds one record's extent to a file, checking the size so far against the limits.
    fn add_extent(&mut self, p: &mut Pending, record: &Record) -> Result<(), MediaError> {
        if p.path.is_none() {
            return Ok(());
        }
        if record.interleaved {
            return Err(self.corrupt(&p.label, "interleaved file (not supported)"));
        }
        p.size = p.size.saturating_add(record.size);
        check_size(self.device, &p.label, p.size, self.total, self.limits)?;
        p.extents
            .push((record.block * self.block_size, record.size));
        Ok(())
    }

    /// Reads a complete file: every extent inside the device, then the bytes.
    fn finish_file(&mut self, p: Pending) -> Result<(), MediaError> {
        let Some(path) = p.path else { return Ok(()) };
        check_size(self.device, &path, p.size, self.total, self.limits)?;
        for &(start, len) in &p.extents {
            if len > 0 && start.checked_add(len).is_none_or(|end| end > self.len) {
                return Err(self.corrupt(
                    &path,
                    format!(
                        "file data at byte {start} ({len} bytes) lies beyond the end of the device ({} bytes)",
                        self.len
                    ),
                ));
            }
        }
        let extent_sum = p
            .extents
            .iter()
            .try_fold(0u64, |a, &(_, l)| a.checked_add(l));
        if extent_sum != Some(p.size) {
            return Err(self.corrupt(&path, "file extents do not add up"));
        }
        if self.stream && p.size > super::STREAM_THRESHOLD {
            // Not read now: streamed (and hashed) from the device once the walk is done, when
            // the reader can be shared with the files left on it.
            self.total += p.size;
            self.out.files.insert(path.clone(), Default::default());
            self.streamed.push((path, p.extents, p.size));
            return Ok(());
        }
        // Bounded by `max_file_size` (checked above) and by the device size.
        let mut data = vec![0u8; p.size as usize];
        let mut at = 0usize;
        for &(start, len) in &p.extents {
            let len = len as usize;
            let Some(buf) = data.get_mut(at..at + len) else {
                return Err(self.corrupt(&path, "file extents do not add up"));
            };
            if len > 0 {
                self.read_at(start, buf, &path, "file data")?;
            }
            at += len;
        }
        self.total += p.size;
        self.out.files.insert(path, data.into());
        Ok(())
    }
}

/// Reads every file of an ISO9660 volume into `DriveFiles`, within `limits`.
///
/// Names come from Rock Ridge when the volume has it, else from the Joliet tree, else the plain
/// ISO 9660 names without their `;N` version. Symlinks (Rock Ridge `SL`) are listed, never
/// followed; names that cannot be used as a path component are listed in `skipped`.
pub fn read_iso9660<R: Read + Seek>(
    mut reader: R,
    device: &str,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    walk(&mut reader, device, limits, false).map(|(d, _)| d)
}

/// [`read_iso9660`] for a reader the drive can keep: files above
/// [`STREAM_THRESHOLD`](super::STREAM_THRESHOLD) are not read into memory but left on the device
/// (their extents, through the shared reader), hashed here by streaming them once.
pub fn read_iso9660_shared<R: Read + Seek + Send + 'static>(
    mut reader: R,
    device: &str,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    let (mut out, streamed) = walk(&mut reader, device, limits, true)?;
    if !streamed.is_empty() {
        let dev: std::sync::Arc<dyn crate::model::bytes::ReadAt> =
            std::sync::Arc::new(super::SharedDevice::new(reader));
        for (path, extents, size) in streamed {
            let name = format!("{device}: {}", Esc(&path));
            let bytes = crate::model::Bytes::on_device(dev.clone(), extents, size as usize, name)
                .map_err(|e| MediaError::Io {
                device: device.to_string(),
                source: e,
            })?;
            out.files.insert(path, bytes);
        }
    }
    Ok(out)
}

/// The walk of both: the files read and (when `stream`) the files left on the reader.
///
/// Through `dyn`, not generic over the reader: one copy of the walk and its `Reader` for every
/// reader type (each copy was ~10 KB of the static binary, issue 15's 4 MiB); a virtual call
/// per sector-sized read is nothing beside the read.
fn walk(
    reader: &mut dyn super::ReadSeek,
    device: &str,
    limits: &Limits,
    stream: bool,
) -> Result<(DriveFiles, Vec<Streamed>), MediaError> {
    let len = reader.seek(SeekFrom::End(0)).map_err(|e| MediaError::Io {
        device: device.to_string(),
        source: e,
    })?;
    let mut r = Reader {
        inner: reader,
        len,
        device,
        limits,
        block_size: SECTOR as u64,
        tree: Tree::Plain,
        entries: 0,
        total: 0,
        continuations: 0,
        visited: HashSet::new(),
        out: DriveFiles::new(device, "iso9660"),
        streamed: Vec::new(),
        stream,
    };

    // Volume descriptor set.
    let mut primary: Option<Record> = None;
    let mut joliet: Option<Record> = None;
    let mut sector = [0u8; SECTOR];
    // The usual set (primary, Joliet, terminator) in one read; descriptors past the window,
    // on an unusual volume, one read each.
    let held = (len.saturating_sub(DESCRIPTOR_START * SECTOR as u64) / SECTOR as u64)
        .min(DESCRIPTOR_WINDOW);
    let mut window = vec![0u8; held as usize * SECTOR];
    if held > 0 {
        r.read_at(
            DESCRIPTOR_START * SECTOR as u64,
            &mut window,
            "",
            "volume descriptor",
        )?;
    }
    for index in 0..MAX_DESCRIPTORS {
        let offset = (DESCRIPTOR_START + index) * SECTOR as u64;
        if offset + SECTOR as u64 > len {
            if index == 0 {
                return Err(MediaError::NotIso9660 {
                    device: device.to_string(),
                });
            }
            break;
        }
        match window.get(index as usize * SECTOR..(index as usize + 1) * SECTOR) {
            Some(w) => sector.copy_from_slice(w),
            None => r.read_at(offset, &mut sector, "", "volume descriptor")?,
        }
        if sector.get(1..6) != Some(b"CD001") {
            if index == 0 {
                return Err(MediaError::NotIso9660 {
                    device: device.to_string(),
                });
            }
            break;
        }
        match sector.first() {
            Some(1) if primary.is_none() && is_descriptor(&sector, 1) => {
                let block_size = u64::from(le16(&sector, 128).unwrap_or(0));
                if !matches!(block_size, 512 | 1024 | 2048) {
                    return Err(
                        r.corrupt("", format!("unsupported logical block size {block_size}"))
                    );
                }
                r.block_size = block_size;
                r.out.label = primary_label(&sector).filter(|l| !l.is_empty());
                primary = Some(
                    sector
                        .get(156..190)
                        .and_then(Record::parse)
                        .filter(Record::is_dir)
                        .ok_or_else(|| {
                            r.corrupt(
                                "",
                                "bad root directory record in the primary volume descriptor",
                            )
                        })?,
                );
            }
            Some(2) if joliet.is_none() => {
                let ucs2 = matches!(sector.get(88..91), Some(b"%/@" | b"%/C" | b"%/E"));
                if ucs2 {
                    joliet = sector
                        .get(156..190)
                        .and_then(Record::parse)
                        .filter(Record::is_dir);
                }
            }
            Some(255) => break,
            _ => {}
        }
    }
    let Some(primary) = primary else {
        return Err(r.corrupt("", "no primary volume descriptor"));
    };

    // Rock Ridge: `SP` at the start of the root's `.` record, plus a Rock Ridge entry. A root
    // whose area announces SUSP but cannot be read is corrupt: falling back to another tree
    // would silently change every name.
    let root_start = primary.block * r.block_size;
    let dot = r.dot_record(root_start, "")?;
    let mut root = primary;
    if dot.system_use.starts_with(b"SP") {
        let susp = r.susp(&dot.system_use, "")?;
        if let (Some(skip), true) = (susp.sp, susp.rock_ridge) {
            r.tree = Tree::RockRidge { skip };
        }
    }
    if r.tree == Tree::Plain {
        if let Some(j) = joliet {
            r.tree = Tree::Joliet;
            root = j;
        }
    }
    r.continuations = 0;
    tracing::debug!(device, tree = ?r.tree, label = ?r.out.label, "reading ISO9660 volume");

    let mut stack = Vec::new();
    let start = root.block * r.block_size;
    r.push_dir(&mut stack, start, root.size, String::new(), 0)?;
    while let Some(dir) = stack.pop() {
        r.read_dir(dir, &mut stack)?;
    }
    Ok((r.out, r.streamed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A 34 KiB buffer holding one volume descriptor at sector 16.
    fn image(kind: u8, magic: &[u8; 5], version: u8, id: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 17 * SECTOR];
        let d = 16 * SECTOR;
        buf[d] = kind;
        buf[d + 1..d + 6].copy_from_slice(magic);
        buf[d + 6] = version;
        buf[d + 40..d + 72].fill(b' ');
        buf[d + 40..d + 40 + id.len()].copy_from_slice(id);
        buf
    }

    fn label(buf: Vec<u8>) -> Option<String> {
        read_iso9660_label(&mut Cursor::new(buf)).unwrap()
    }

    #[test]
    fn label_of_a_primary_descriptor() {
        assert_eq!(
            label(image(1, b"CD001", 1, b"config-2")).as_deref(),
            Some("config-2")
        );
        assert_eq!(
            label(image(1, b"CD001", 1, b"CONFIG-2")).as_deref(),
            Some("CONFIG-2")
        );
    }

    #[test]
    fn label_trims_spaces_and_nuls_only_at_the_end() {
        let mut buf = image(1, b"CD001", 1, b"OVF ENV");
        buf[16 * SECTOR + 40 + 10] = 0;
        assert_eq!(label(buf).as_deref(), Some("OVF ENV"));
        assert_eq!(label(image(1, b"CD001", 1, b"")).as_deref(), Some(""));
    }

    #[test]
    fn label_decodes_non_utf8_lossily() {
        assert_eq!(
            label(image(1, b"CD001", 1, b"A\xffB")).as_deref(),
            Some("A\u{fffd}B")
        );
    }

    #[test]
    fn label_none_for_other_descriptors_and_data() {
        assert_eq!(label(image(2, b"CD001", 1, b"config-2")), None);
        assert_eq!(label(image(1, b"CD002", 1, b"config-2")), None);
        assert_eq!(label(image(1, b"CD001", 2, b"config-2")), None);
        assert_eq!(label(vec![0u8; 17 * SECTOR]), None);
    }

    #[test]
    fn label_none_when_short() {
        let mut buf = image(1, b"CD001", 1, b"config-2");
        buf.truncate(16 * SECTOR + 100);
        assert_eq!(label(buf), None);
        assert_eq!(label(Vec::new()), None);
    }

    #[test]
    fn label_reads_one_sector_at_32k() {
        struct Counting {
            inner: Cursor<Vec<u8>>,
            reads: usize,
        }
        impl Read for Counting {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.reads += 1;
                self.inner.read(buf)
            }
        }
        impl Seek for Counting {
            fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
                self.inner.seek(pos)
            }
        }
        let mut dev = Counting {
            inner: Cursor::new(image(1, b"CD001", 1, b"cidata")),
            reads: 0,
        };
        assert_eq!(
            read_iso9660_label(&mut dev).unwrap().as_deref(),
            Some("cidata")
        );
        assert_eq!(dev.reads, 1);
    }

    #[test]
    fn not_iso9660() {
        let err = read_iso9660(
            Cursor::new(vec![0u8; 40 * SECTOR]),
            "dev0",
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, MediaError::NotIso9660 { .. }), "{err}");
        let err =
            read_iso9660(Cursor::new(vec![0u8; 100]), "dev0", &Limits::default()).unwrap_err();
        assert!(matches!(err, MediaError::NotIso9660 { .. }), "{err}");
    }

    /// A primary descriptor whose root record is `root` (34 bytes), padded to `sectors`.
    fn volume(root: &[u8], sectors: usize) -> Vec<u8> {
        let mut buf = image(1, b"CD001", 1, b"config-2");
        buf.resize(sectors * SECTOR, 0);
        let d = 16 * SECTOR;
        buf[d + 128..d + 130].copy_from_slice(&2048u16.to_le_bytes());
        buf[d + 156..d + 156 + root.len()].copy_from_slice(root);
        let t = 17 * SECTOR;
        buf[t] = 255;
        buf[t + 1..t + 6].copy_from_slice(b"CD001");
        buf[t + 6] = 1;
        buf
    }

    fn record(extent: u32, size: u32, flags: u8, name: &[u8]) -> Vec<u8> {
        let len = 33 + name.len() + usize::from(name.len() % 2 == 0);
        let mut r = vec![0u8; len];
        r[0] = len as u8;
        r[2..6].copy_from_slice(&extent.to_le_bytes());
        r[6..10].copy_from_slice(&extent.to_be_bytes());
        r[10..14].copy_from_slice(&size.to_le_bytes());
        r[14..18].copy_from_slice(&size.to_be_bytes());
        r[25] = flags;
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r
    }

    /// Root at sector 18 holding `entries` after `.` and `..`.
    fn with_root(entries: &[Vec<u8>], sectors: usize) -> Vec<u8> {
        let root = record(18, 2048, FLAG_DIRECTORY, &[0]);
        let mut buf = volume(&root, sectors);
        let mut at = 18 * SECTOR;
        for r in [
            record(18, 2048, FLAG_DIRECTORY, &[0]),
            record(18, 2048, FLAG_DIRECTORY, &[1]),
        ]
        .iter()
        .chain(entries)
        {
            buf[at..at + r.len()].copy_from_slice(r);
            at += r.len();
        }
        buf
    }

    #[test]
    fn plain_names_lose_their_version() {
        let mut buf = with_root(
            &[record(19, 5, 0, b"USER_DAT.;1"), record(19, 2, 0, b"A.B;1")],
            20,
        );
        buf[19 * SECTOR..19 * SECTOR + 5].copy_from_slice(b"hello");
        let d = read_iso9660(Cursor::new(buf), "dev0", &Limits::default()).unwrap();
        assert_eq!(d.label.as_deref(), Some("config-2"));
        assert_eq!(d.fstype, "iso9660");
        assert_eq!(
            d.files.get("USER_DAT").map(|b| b.as_slice()),
            Some(&b"hello"[..])
        );
        assert_eq!(d.files.get("A.B").map(|b| b.as_slice()), Some(&b"he"[..]));
    }

    #[test]
    fn root_pointing_at_itself_is_a_cycle() {
        let buf = with_root(&[record(18, 2048, FLAG_DIRECTORY, b"LOOP")], 20);
        let err = read_iso9660(Cursor::new(buf), "dev0", &Limits::default()).unwrap_err();
        assert!(
            matches!(err, MediaError::Corrupt { ref path, .. } if path == "LOOP"),
            "{err}"
        );
    }

    #[test]
    fn file_beyond_the_device() {
        let buf = with_root(&[record(19, 4096, 0, b"BIG;1")], 20);
        let err = read_iso9660(Cursor::new(buf), "dev0", &Limits::default()).unwrap_err();
        assert!(
            matches!(err, MediaError::Corrupt { ref path, .. } if path == "BIG"),
            "{err}"
        );
    }

    #[test]
    fn multi_extent_chain() {
        let mut buf = with_root(
            &[
                record(19, 2048, FLAG_NOT_FINAL, b"M;1"),
                record(21, 3, 0, b"M;1"),
            ],
            22,
        );
        buf[19 * SECTOR..20 * SECTOR].fill(b'a');
        buf[21 * SECTOR..21 * SECTOR + 3].copy_from_slice(b"xyz");
        let d = read_iso9660(Cursor::new(buf), "dev0", &Limits::default()).unwrap();
        let m = d.files.get("M").unwrap();
        assert_eq!(m.len(), 2051);
        assert_eq!(&m[2048..], b"xyz");
    }

    #[test]
    fn multi_extent_without_final_record() {
        let buf = with_root(&[record(19, 2048, FLAG_NOT_FINAL, b"M;1")], 22);
        let err = read_iso9660(Cursor::new(buf), "dev0", &Limits::default()).unwrap_err();
        assert!(matches!(err, MediaError::Corrupt { .. }), "{err}");
        let buf = with_root(
            &[
                record(19, 2048, FLAG_NOT_FINAL, b"M;1"),
                record(21, 3, 0, b"N;1"),
            ],
            22,
        );
        let err = read_iso9660(Cursor::new(buf), "dev0", &Limits::default()).unwrap_err();
        assert!(matches!(err, MediaError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn multi_extent_size_is_limited() {
        let buf = with_root(
            &[
                record(19, 2048, FLAG_NOT_FINAL, b"M;1"),
                record(21, 3, 0, b"M;1"),
            ],
            22,
        );
        let limits = Limits {
            max_file_size: 2050,
            ..Limits::default()
        };
        let err = read_iso9660(Cursor::new(buf), "dev0", &limits).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::Limit {
                    kind: LimitKind::FileSize,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_sectors_count_as_entries() {
        // A root directory of 4 GiB - 1 declared on a tiny device is refused before reading.
        let root = record(18, u32::MAX, FLAG_DIRECTORY, &[0]);
        let buf = volume(&root, 20);
        let err = read_iso9660(Cursor::new(buf), "dev0", &Limits::default()).unwrap_err();
        assert!(matches!(err, MediaError::Corrupt { .. }), "{err}");
        // Empty sectors inside the device are bounded by the entry limit.
        let root = record(18, 2048 * 40, FLAG_DIRECTORY, &[0]);
        let mut buf = volume(&root, 60);
        let dot = record(18, 2048 * 40, FLAG_DIRECTORY, &[0]);
        buf[18 * SECTOR..18 * SECTOR + dot.len()].copy_from_slice(&dot);
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let err = read_iso9660(Cursor::new(buf), "dev0", &limits).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::Limit {
                    kind: LimitKind::Entries,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn symlink_components() {
        let mut l = LinkBuilder::default();
        l.push(&[0x08, 0, 0, 3, b'u', b's', b'r', 0x01, 2, b'b', b'i'])
            .unwrap();
        l.push(&[0, 1, b'n', 0x04, 0, 0, 1, b'x']).unwrap();
        assert_eq!(l.target, "/usr/bin/../x");
        let mut l = LinkBuilder::default();
        l.push(&[0, 6, b'l', b'a', b't', b'e', b's', b't', 0, 2, b'm', b'd'])
            .unwrap();
        assert_eq!(l.target, "latest/md");
        assert!(LinkBuilder::default().push(&[0, 9, b'a']).is_err());
    }

    #[test]
    fn record_parse_rejects_short_and_overlong() {
        assert!(Record::parse(&[]).is_none());
        assert!(Record::parse(&[10; 10]).is_none());
        let mut r = record(1, 1, 0, b"A");
        r[32] = 200;
        assert!(Record::parse(&r).is_none());
        let r = record(1, 1, 0, b"AB");
        assert_eq!(Record::parse(&r).unwrap().name, b"AB");
    }
}
