//! FAT reader (FAT12/16/32, long names) over any `Read + Seek`, behind primer's media interface,
//! using the `fatfs` crate. Read-only: the stream handed to fatfs refuses every write (and
//! counts the attempts), so nothing on the drive can change. Bounded like the ISO9660 reader:
//! file size, total bytes, depth and entry count from `Limits`, plus a cap on the bytes fatfs
//! may pull from the device, which is what stops cyclic cluster chains. Unsafe names are
//! reported in `skipped`, never used. With a shared device ([`read_fat_shared`]) a file above
//! [`STREAM_THRESHOLD`](super::STREAM_THRESHOLD) is not read into memory: its cluster chain is
//! walked here (bounded, every hostile chain refused) and it stays on the device as extents.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;
use std::sync::Arc;

use super::dir::check_size;
use super::{unsafe_component, DriveFiles, LimitKind, Limits, MediaError, Skipped};
use crate::model::bytes::ReadAt;
use crate::model::grammar::Esc;

/// Bytes of the device cached at once: fatfs reads directory entries 32 bytes at a time.
const BLOCK: usize = 64 * 1024;
/// Blocks cached at once (least recently used replaced). fatfs follows a chain one cluster at
/// a time, reading the cluster's allocation-table entry, then the cluster: two places on the
/// device in turn. With one block cached, each cluster of a file read through fatfs cost two
/// device reads of a block (the table's, then the data's, each evicting the other): a 0.9 MiB
/// `user_data` in 2 KiB clusters made 1,200 reads of 256 KiB (300 MiB) from a loop device.
/// With two, the table's block stays while the data's moves on: each block is read once.
const BLOCKS: usize = 2;

/// One cached block of the device.
#[derive(Debug, Default)]
struct Cached {
    /// Device offset of `data`; `None` while it holds nothing valid.
    at: Option<u64>,
    data: Vec<u8>,
}
/// Root entries looked at when the probe lists the root directory.
const MAX_ROOT_NAMES: usize = 512;

/// Whether `boot` (the first sector, at least 512 bytes) is a FAT boot sector: jump
/// instruction, a plausible BIOS parameter block and the boot signature.
pub fn is_fat_boot_sector(boot: &[u8]) -> bool {
    if boot.len() < 512 {
        return false;
    }
    let jump = boot[0] == 0xeb || boot[0] == 0xe9;
    let bps = u16::from_le_bytes([boot[11], boot[12]]);
    let spc = boot[13];
    let reserved = u16::from_le_bytes([boot[14], boot[15]]);
    let fats = boot[16];
    let sig = boot[510] == 0x55 && boot[511] == 0xaa;
    jump && sig
        && matches!(bps, 512 | 1024 | 2048 | 4096)
        && spc.is_power_of_two()
        && reserved > 0
        && (1..=4).contains(&fats)
}

/// Whether `boot` is meant to be a FAT boot sector even if its fields are damaged: the boot
/// signature and the `FAT` file-system type string of the FAT12/16 or FAT32 extended block.
pub fn looks_like_fat(boot: &[u8]) -> bool {
    boot.len() >= 512
        && boot[510] == 0x55
        && boot[511] == 0xaa
        && (boot[54..57] == *b"FAT" || boot[82..85] == *b"FAT")
}

/// The label in the boot sector's extended BIOS parameter block (offset 43 for FAT12/16, 71
/// for FAT32, present when the extended boot signature 0x29 is set). `None` when absent, blank
/// or the `NO NAME` placeholder.
pub fn boot_sector_label(boot: &[u8]) -> Option<String> {
    if boot.len() < 90 {
        return None;
    }
    let fat32 = u16::from_le_bytes([boot[22], boot[23]]) == 0;
    let (sig_at, label_at) = if fat32 { (66, 71) } else { (38, 43) };
    if boot[sig_at] != 0x29 {
        return None;
    }
    label_text(&boot[label_at..label_at + 11])
}

/// An 11-byte label, trailing spaces and NULs removed; the `NO NAME` placeholder is no label.
fn label_text(raw: &[u8]) -> Option<String> {
    let end = raw
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    let s: String = raw[..end]
        .iter()
        .map(|&b| {
            // A label is shown in logs and reasons: no control character gets through.
            if b.is_ascii() && !b.is_ascii_control() {
                b as char
            } else {
                '\u{fffd}'
            }
        })
        .collect();
    (!s.is_empty() && s != "NO NAME").then_some(s)
}

/// The stream fatfs works on: reads cached in aligned blocks, every write refused, and reading
/// capped at `budget` bytes delivered (a cyclic cluster chain would otherwise never end).
pub struct ReadOnly<R> {
    inner: R,
    len: u64,
    pos: u64,
    /// The cached blocks, most recently used first (see [`BLOCKS`]).
    blocks: [Cached; BLOCKS],
    budget: u64,
    /// Write attempts seen (and refused); shared so tests can check it after fatfs drops us.
    pub writes: Rc<Cell<u64>>,
    /// Data clusters whose first byte was read, while `watch.on` (see [`Watch`]).
    watch: Rc<RefCell<Watch>>,
}

/// Catches cluster chains that loop (or two files sharing clusters): during the walk of the
/// volume every directory and file is read once, from the first byte of each of its clusters,
/// so a cluster whose start is read a second time belongs to a chain that came back on itself.
/// fatfs itself would follow such a chain until the read budget ran out (a directory) or
/// return a file made of repeated clusters (read as invalid JSON further on).
#[derive(Debug, Default)]
struct Watch {
    on: bool,
    /// Byte offset of cluster 2 and the cluster size, from the boot sector.
    data_start: u64,
    cluster: u64,
    seen: HashSet<u64>,
    /// Cluster runs `start..end` of the files left on the device: their clusters are never
    /// read through fatfs, so they are claimed here instead (see [`chain_extents`]).
    runs: BTreeMap<u64, u64>,
    /// Where the last read started (noted whether or not `on`): how a file's first cluster is
    /// learnt, fatfs keeping it private.
    last: Option<u64>,
}

impl Watch {
    /// Notes a read at byte `pos`: an error when it starts a cluster read before.
    fn note(&mut self, pos: u64) -> io::Result<()> {
        self.last = Some(pos);
        if !self.on || self.cluster == 0 || pos < self.data_start {
            return Ok(());
        }
        let off = pos - self.data_start;
        if off % self.cluster != 0 {
            return Ok(());
        }
        let n = off / self.cluster + 2;
        if !self.in_runs(n) && self.seen.insert(n) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "cluster {n} is read a second time: its cluster chain loops (or is shared \
                     with another file or directory)"
                ),
            ))
        }
    }

    /// Whether cluster `n` lies in a run claimed by a file left on the device.
    fn in_runs(&self, n: u64) -> bool {
        self.runs
            .range(..=n)
            .next_back()
            .is_some_and(|(_, &end)| n < end)
    }

    /// Whether cluster `n` was read or claimed already.
    fn taken(&self, n: u64) -> bool {
        self.seen.contains(&n) || self.in_runs(n)
    }
}

/// Most cluster runs (extents) of all the files left on one device. A file written once to a
/// fresh image (mkfs.vfat + mcopy, as OpenStack builds a drive) is one run; each run costs an
/// extent and an entry in [`Watch::runs`] (some 50 bytes), so a hostile chain made of single
/// clusters (128 MiB of 512-byte clusters: 262,144 runs) would otherwise cost over 10 MiB.
const MAX_RUNS: usize = 16_384;

/// Where a FAT volume's allocation table lies and how many data clusters it has, from its boot
/// sector, the way fatfs reads it (the active table of a FAT32 volume whose mirroring is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Table {
    /// Byte offset and length of the table chains are read from.
    start: u64,
    bytes: u64,
    /// Data clusters on the volume: valid cluster numbers are `2..clusters + 2`.
    clusters: u64,
}

fn table_of(boot: &[u8]) -> Option<Table> {
    if boot.len() < 512 {
        return None;
    }
    let u16_at = |i: usize| u64::from(u16::from_le_bytes([boot[i], boot[i + 1]]));
    let u32_at = |i: usize| {
        u64::from(u32::from_le_bytes([
            boot[i],
            boot[i + 1],
            boot[i + 2],
            boot[i + 3],
        ]))
    };
    let (data_start, cluster) = geometry(boot)?;
    let bps = u16_at(11);
    let fat32 = u16_at(22) == 0;
    let fat_size = if fat32 { u32_at(36) } else { u16_at(22) };
    let ext_flags = u16_at(40);
    // fatfs: FAT32 with bit 7 of the extended flags set uses only the table bits 0-3 name.
    let active = if fat32 && ext_flags & 0x80 != 0 {
        ext_flags & 0x0f
    } else {
        0
    };
    let total_sectors = match u16_at(19) {
        0 => u32_at(32),
        n => n,
    };
    Some(Table {
        start: (u16_at(14) + active * fat_size) * bps,
        bytes: fat_size * bps,
        clusters: (total_sectors * bps).saturating_sub(data_start) / cluster,
    })
}

/// FAT entries read from the device, one aligned block cached (a chain of contiguous clusters
/// reads consecutive entries).
struct FatReader<'a> {
    dev: &'a dyn ReadAt,
    table: Table,
    /// Bits per entry: 12, 16 or 32 (of which 28 are used).
    bits: u64,
    block: Vec<u8>,
    block_at: Option<u64>,
}

impl FatReader<'_> {
    const BLOCK: u64 = 4096;

    fn byte(&mut self, off: u64) -> io::Result<u8> {
        let at = off - off % Self::BLOCK;
        if self.block_at != Some(at) {
            let n = (self.table.bytes - at).min(Self::BLOCK) as usize;
            self.block.resize(n, 0);
            self.block_at = None;
            self.dev
                .read_exact_at(self.table.start + at, &mut self.block)?;
            self.block_at = Some(at);
        }
        Ok(self.block[(off - at) as usize])
    }

    /// The entry of cluster `n` (which the caller checked is a data cluster). An entry past
    /// the table's end is an error: the table is shorter than the volume says.
    fn entry(&mut self, n: u64) -> Result<u64, String> {
        let off = n * self.bits / 8;
        if off + self.bits.div_ceil(8) > self.table.bytes {
            return Err(format!("cluster {n} has no entry in the allocation table"));
        }
        let io = |e: io::Error| format!("allocation table: {e}");
        Ok(match self.bits {
            12 => {
                let v = u64::from(self.byte(off).map_err(io)?)
                    | u64::from(self.byte(off + 1).map_err(io)?) << 8;
                if n % 2 == 1 {
                    v >> 4
                } else {
                    v & 0xfff
                }
            }
            16 => {
                u64::from(self.byte(off).map_err(io)?)
                    | u64::from(self.byte(off + 1).map_err(io)?) << 8
            }
            _ => {
                let mut v = 0u64;
                for i in 0..4 {
                    v |= u64::from(self.byte(off + i).map_err(io)?) << (8 * i);
                }
                v & 0x0fff_ffff
            }
        })
    }

    /// Whether an entry value ends a chain (the end-of-chain marks of each FAT width).
    fn is_end(&self, v: u64) -> bool {
        v >= match self.bits {
            12 => 0xff8,
            16 => 0xfff8,
            _ => 0x0fff_fff8,
        }
    }

    /// Whether an entry value is the bad-cluster mark of its FAT width (a chain never leads
    /// into a cluster the formatter marked unusable).
    fn is_bad(&self, v: u64) -> bool {
        v == match self.bits {
            12 => 0xff7,
            16 => 0xfff7,
            _ => 0x0fff_fff7,
        }
    }
}

/// The extents (`(byte offset, length)`, in file order) of a `len`-byte file whose chain starts
/// at cluster `first`, its clusters claimed in `watch`. Reading the chain here rather than
/// recording the reads fatfs makes while the file is read: the file's data is then read once
/// (hashed by [`crate::model::Bytes::on_device`]), not once through fatfs and again to hash,
/// and every way a chain can lie is caught before a byte of it is used. Refused (the detail
/// says why): a cluster outside the data area, a free or bad cluster in the chain, a chain
/// that ends before `len` bytes or goes on after them, a cluster met twice (a loop, or one
/// shared with another file or directory), data past the device's end, more than
/// [`MAX_RUNS`] runs on the drive. At most `len / cluster + 1` entries are read: no loop can
/// keep it going.
fn chain_extents(
    fat: &mut FatReader<'_>,
    watch: &mut Watch,
    first: u64,
    len: u64,
    dev_len: u64,
) -> Result<Vec<(u64, u64)>, String> {
    let cluster = watch.cluster;
    let need = len.div_ceil(cluster);
    let last_valid = fat.table.clusters + 1;
    let mut extents: Vec<(u64, u64)> = Vec::new();
    let mut run_start = first;
    let mut c = first;
    let mut i = 0u64;
    loop {
        if !(2..=last_valid).contains(&c) {
            return Err(format!(
                "cluster {c} of its chain lies outside the data area (clusters 2 to {last_valid})"
            ));
        }
        // The open run (`run_start..c`) only grows by the next cluster: a chain coming back
        // into it has jumped, which closed the run into `watch.runs`.
        if watch.taken(c) {
            return Err(format!(
                "cluster {c} is met a second time: its cluster chain loops (or is shared with \
                 another file or directory)"
            ));
        }
        i += 1;
        let next = fat.entry(c)?;
        let ended = fat.is_end(next);
        if i == need && !ended {
            return Err(format!(
                "file is {len} bytes but its cluster chain goes on past them (cluster {c} is \
                 followed by {next})"
            ));
        }
        if ended && i < need {
            return Err(format!(
                "file is {len} bytes but its cluster chain holds {}",
                i * cluster
            ));
        }
        // The run ends here when the chain does or jumps.
        if ended || next != c + 1 {
            if watch.runs.len() >= MAX_RUNS {
                return Err(format!(
                    "more than {MAX_RUNS} cluster runs in the files left on the device \
                     (fragmented beyond any written drive)"
                ));
            }
            watch.runs.insert(run_start, c + 1);
            let at = watch.data_start + (run_start - 2) * cluster;
            let run_len =
                ((c + 1 - run_start) * cluster).min(len - (i - (c + 1 - run_start)) * cluster);
            if at.checked_add(run_len).is_none_or(|end| end > dev_len) {
                return Err(format!(
                    "file data at byte {at} lies beyond the end of the device ({dev_len} bytes)"
                ));
            }
            extents.push((at, run_len));
            run_start = next;
        }
        if ended {
            return Ok(extents);
        }
        if next < 2 {
            return Err(format!(
                "cluster {c} is followed by {next}: a free or reserved cluster in the chain"
            ));
        }
        if fat.is_bad(next) {
            return Err(format!(
                "cluster {c} is followed by the bad-cluster mark {next:#x}: its chain leads \
                 into a cluster marked unusable"
            ));
        }
        c = next;
    }
}

/// Where cluster 2 starts and how large a cluster is, from a FAT boot sector (`None` when the
/// fields make no sense; fatfs then refuses the volume anyway).
fn geometry(boot: &[u8]) -> Option<(u64, u64)> {
    let u16_at = |i: usize| u64::from(u16::from_le_bytes([boot[i], boot[i + 1]]));
    if boot.len() < 512 {
        return None;
    }
    let bps = u16_at(11);
    let spc = u64::from(boot[13]);
    let reserved = u16_at(14);
    let fats = u64::from(boot[16]);
    let root_entries = u16_at(17);
    let fat_size = match u16_at(22) {
        0 => u64::from(u32::from_le_bytes([boot[36], boot[37], boot[38], boot[39]])),
        n => n,
    };
    if bps == 0 || spc == 0 {
        return None;
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let sectors = reserved + fats * fat_size + root_sectors;
    // fatfs computes this sector number in wrapping u32 arithmetic: past it, fatfs and primer
    // would place the data area differently (and primer's cluster watch would see nothing).
    if sectors > u64::from(u32::MAX) {
        return None;
    }
    Some((sectors * bps, bps * spc))
}

impl<R: Read + Seek> ReadOnly<R> {
    pub fn new(mut inner: R, budget: u64) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(ReadOnly {
            inner,
            len,
            pos: 0,
            blocks: Default::default(),
            budget,
            writes: Rc::new(Cell::new(0)),
            watch: Rc::default(),
        })
    }

    /// Makes the block at `at` the first of `blocks`: from the cache, else read into the
    /// least recently used slot.
    fn fill(&mut self, at: u64) -> io::Result<()> {
        match self.blocks.iter().position(|b| b.at == Some(at)) {
            Some(i) => self.blocks[..=i].rotate_right(1),
            None => {
                self.blocks.rotate_right(1);
                let b = &mut self.blocks[0];
                // Invalid until the read succeeds: a failed read leaves no stale block.
                b.at = None;
                let n = usize::try_from((self.len - at).min(BLOCK as u64)).unwrap_or(BLOCK);
                b.data.resize(n, 0);
                self.inner.seek(SeekFrom::Start(at))?;
                self.inner.read_exact(&mut b.data)?;
                b.at = Some(at);
            }
        }
        Ok(())
    }
}

impl<R: Read + Seek> Read for ReadOnly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // fatfs reads clusters at offsets its tables give; a truncated image puts some of them
        // past the end. An end-of-file there would read as an empty directory or a short file
        // (a silent partial read): it is an error, worded like the ISO9660 reader's.
        if self.pos >= self.len {
            // Not `UnexpectedEof`: fatfs reads that kind as the end of a full directory.
            return Err(io::Error::other(format!(
                "data at byte {} lies beyond the end of the device ({} bytes)",
                self.pos, self.len
            )));
        }
        if self.budget == 0 {
            return Err(io::Error::other(
                "read budget exhausted (cyclic cluster chain or directory?)",
            ));
        }
        self.watch.borrow_mut().note(self.pos)?;
        let at = self.pos - self.pos % BLOCK as u64;
        self.fill(at)?;
        let off = (self.pos - at) as usize;
        let block = &self.blocks[0].data;
        let n = buf
            .len()
            .min(block.len() - off)
            .min(usize::try_from(self.budget).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&block[off..off + n]);
        self.pos += n as u64;
        self.budget -= n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for ReadOnly<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let p = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        self.pos = p;
        Ok(p)
    }
}

impl<R> Write for ReadOnly<R> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        self.writes.set(self.writes.get() + 1);
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "primer reads FAT volumes read-only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Fs<R> = fatfs::FileSystem<ReadOnly<R>>;
/// An opened volume, its count of refused writes, its cluster-loop watch and where its
/// allocation table lies (`None` when the boot sector makes no sense of it).
type Opened<R> = (Fs<R>, Rc<Cell<u64>>, Rc<RefCell<Watch>>, Option<Table>);

/// What went wrong reading `what` (`directory`, `file data`), in words: fatfs reports a cyclic
/// cluster chain only as the exhausted read budget, and a cluster past the device's end as
/// the stream's error; anything else is passed on as fatfs words it.
fn detail(what: &str, e: &io::Error) -> String {
    format!("{what}: {e}")
}

fn open<R: Read + Seek>(mut reader: R, device: &str, budget: u64) -> Result<Opened<R>, MediaError> {
    let io = |e| MediaError::Io {
        device: device.to_string(),
        source: e,
    };
    let mut boot = [0u8; 512];
    let n = super::read_at(&mut reader, 0, &mut boot).map_err(io)?;
    let stream = ReadOnly::new(reader, budget).map_err(io)?;
    let writes = stream.writes.clone();
    let watch = stream.watch.clone();
    match geometry(&boot[..n]) {
        Some((data_start, cluster)) => {
            let mut w = watch.borrow_mut();
            w.data_start = data_start;
            w.cluster = cluster;
        }
        // A zero sector or cluster size, or a short device: fatfs refuses it below, naming the
        // field. Anything else without a data area has its tables past sector 2^32, which
        // fatfs would wrap: not read at all, so no file is read without the cluster watch.
        None if n >= 512 && boot[11..13] != [0, 0] && boot[13] != 0 => {
            return Err(MediaError::Corrupt {
                device: device.to_string(),
                path: String::new(),
                detail: "FAT boot sector: the tables end past sector 2^32".into(),
            });
        }
        None => {}
    }
    let table = table_of(&boot[..n]);
    let fs = fatfs::FileSystem::new(stream, fatfs::FsOptions::new()).map_err(|e| {
        MediaError::Corrupt {
            device: device.to_string(),
            path: String::new(),
            detail: format!("FAT boot sector: {e}"),
        }
    })?;
    Ok((fs, writes, watch, table))
}

/// The first cluster of a file's chain, which fatfs keeps private: learnt from where fatfs
/// reads the file's first byte (a read the cluster watch does not count: the chain walk claims
/// the cluster).
fn first_cluster<R: Read + Seek>(
    entry: &fatfs::DirEntry<'_, ReadOnly<R>>,
    watch: &Rc<RefCell<Watch>>,
) -> Result<u64, String> {
    {
        let mut w = watch.borrow_mut();
        w.on = false;
        w.last = None;
    }
    let got = entry.to_file().read(&mut [0u8; 1]);
    let mut w = watch.borrow_mut();
    w.on = true;
    match got {
        Err(e) => Err(detail("file data", &e)),
        Ok(0) => Err(format!(
            "file is {} bytes but has no cluster chain",
            entry.len()
        )),
        Ok(_) => {
            let pos = w.last.unwrap_or(0);
            let off = pos
                .checked_sub(w.data_start)
                .filter(|o| w.cluster > 0 && o % w.cluster == 0);
            off.map(|o| o / w.cluster + 2)
                .ok_or_else(|| format!("file data at byte {pos} is not the start of a cluster"))
        }
    }
}

/// The label: the root directory's volume-label entry, else the boot sector's.
fn label_of<R: Read + Seek>(fs: &Fs<R>) -> Option<String> {
    match fs.read_volume_label_from_root_dir_as_bytes() {
        Ok(Some(raw)) => label_text(&raw),
        _ => label_text(fs.volume_label_as_bytes()),
    }
}

/// What the probe needs from a FAT volume: its label and the names in its root directory.
pub type FatSummary = (Option<String>, Vec<String>);

/// Reads only what the probe needs: the label and the names in the root directory (at most
/// 512). `Ok(None)` when the stream is not FAT.
pub fn read_fat_summary<R: Read + Seek>(
    mut reader: R,
    device: &str,
) -> Result<Option<FatSummary>, MediaError> {
    // Through `dyn` as the walk: one copy of fatfs for every reader type.
    let reader: &mut dyn super::ReadSeek = &mut reader;
    let (fs, _, _, _) = match open(reader, device, 1 << 20) {
        Ok(x) => x,
        Err(MediaError::Corrupt { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let label = label_of(&fs);
    let mut names = Vec::new();
    for entry in fs.root_dir().iter().take(MAX_ROOT_NAMES) {
        match entry {
            Ok(e) => names.push(e.file_name()),
            Err(_) => break,
        }
    }
    Ok(Some((label, names)))
}

/// Reads every file of a FAT volume into `DriveFiles`, within `limits`.
pub fn read_fat<R: Read + Seek>(
    reader: R,
    device: &str,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    read_fat_counting_writes(reader, device, limits).map(|(d, _)| d)
}

/// [`read_fat`] for a reader the drive can keep: files above
/// [`STREAM_THRESHOLD`](super::STREAM_THRESHOLD) are not read into memory but left on the
/// device (the extents of their cluster chains, through the shared reader), hashed here by
/// streaming them once, as [`read_iso9660_shared`](super::iso9660::read_iso9660_shared) does.
pub fn read_fat_shared<R: Read + Seek + Send + 'static>(
    mut reader: R,
    device: &str,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    let len = reader.seek(SeekFrom::End(0)).map_err(|e| MediaError::Io {
        device: device.to_string(),
        source: e,
    })?;
    // fatfs owns its stream and never gives it back: it reads through a view of the shared
    // device, which the files left on the device read too (each read under its lock).
    let dev: Arc<dyn ReadAt> = Arc::new(super::SharedDevice::new(reader));
    let mut view = DeviceView {
        dev: dev.clone(),
        len,
        pos: 0,
    };
    walk(&mut view, device, limits, Some((dev, len))).map(|(d, _)| d)
}

/// A `Read + Seek` cursor over a shared device, for fatfs.
struct DeviceView {
    dev: Arc<dyn ReadAt>,
    len: u64,
    pos: u64,
}

impl Read for DeviceView {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.len.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.dev.read_exact_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DeviceView {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

/// `read_fat`, also returning how many writes fatfs attempted (always refused; tests assert 0).
pub fn read_fat_counting_writes<R: Read + Seek>(
    mut reader: R,
    device: &str,
    limits: &Limits,
) -> Result<(DriveFiles, u64), MediaError> {
    walk(&mut reader, device, limits, None)
}

/// The walk of both readers: every file read into memory, or (with the shared device and its
/// length) those above the threshold left on it.
///
/// Through `dyn`, not generic over the reader: fatfs and this walk compiled once for every
/// reader type (each generic copy was ~20 KB of the static binary, issue 15's 4 MiB); a
/// virtual call per sector-sized read is nothing beside the read.
fn walk(
    reader: &mut dyn super::ReadSeek,
    device: &str,
    limits: &Limits,
    shared: Option<(Arc<dyn ReadAt>, u64)>,
) -> Result<(DriveFiles, u64), MediaError> {
    // Directory entries and FAT sectors come on top of the file data.
    let budget = limits
        .max_total_bytes
        .saturating_mul(2)
        .saturating_add(64 << 20);
    let (fs, writes, watch, table) = open(reader, device, budget)?;
    let bits = match fs.fat_type() {
        fatfs::FatType::Fat12 => 12,
        fatfs::FatType::Fat16 => 16,
        fatfs::FatType::Fat32 => 32,
    };
    // The chain reader of the files left on the device; `None` reads every file whole.
    let mut chains = match (&shared, table) {
        (Some((dev, _)), Some(table)) => Some(FatReader {
            dev: &**dev,
            table,
            bits,
            block: Vec::new(),
            block_at: None,
        }),
        _ => None,
    };
    let mut out = DriveFiles::new(device, "vfat");
    out.label = label_of(&fs);
    // From here on every directory and file is read once: watch for clusters read twice.
    watch.borrow_mut().on = true;
    tracing::debug!(device, label = ?out.label, fat = ?fs.fat_type(), "reading FAT volume");
    let corrupt = |path: &str, what: &str, e: io::Error| MediaError::Corrupt {
        device: device.to_string(),
        path: path.to_string(),
        detail: detail(what, &e),
    };
    let mut entries = 0usize;
    let mut total = 0u64;
    let mut stack = vec![(fs.root_dir(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        for entry in dir.iter() {
            let entry = entry.map_err(|e| corrupt(&rel, "directory", e))?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            // Volume-label entries are not files (fatfs already hides them; be explicit).
            if entry
                .attributes()
                .contains(fatfs::FileAttributes::VOLUME_ID)
            {
                continue;
            }
            entries += 1;
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if entries > limits.max_entries {
                return Err(MediaError::Limit {
                    device: device.to_string(),
                    path,
                    kind: LimitKind::Entries,
                    value: entries as u64,
                    limit: limits.max_entries as u64,
                });
            }
            if let Some(reason) = unsafe_component(&name) {
                out.skipped.push(Skipped::new(&path, reason));
                continue;
            }
            if entry.is_dir() {
                if depth + 1 > limits.max_depth {
                    return Err(MediaError::Limit {
                        device: device.to_string(),
                        path,
                        kind: LimitKind::Depth,
                        value: (depth + 1) as u64,
                        limit: limits.max_depth as u64,
                    });
                }
                stack.push((entry.to_dir(), path, depth + 1));
            } else {
                let len = entry.len();
                check_size(device, &path, len, total, limits)?;
                if let (Some(fat), Some((dev, dev_len))) = (
                    chains.as_mut().filter(|_| len > super::STREAM_THRESHOLD),
                    &shared,
                ) {
                    let extents = first_cluster(&entry, &watch)
                        .and_then(|first| {
                            chain_extents(fat, &mut watch.borrow_mut(), first, len, *dev_len)
                        })
                        .map_err(|detail| MediaError::Corrupt {
                            device: device.to_string(),
                            path: path.clone(),
                            detail,
                        })?;
                    let name = format!("{device}: {}", Esc(&path));
                    // Hashed now, by streaming it once; its head kept (as an ISO9660 file).
                    let bytes = crate::model::Bytes::on_device(
                        dev.clone(),
                        extents,
                        usize::try_from(len).unwrap_or(usize::MAX),
                        name,
                    )
                    .map_err(|e| MediaError::Io {
                        device: device.to_string(),
                        source: e,
                    })?;
                    total += len;
                    out.files.insert(path, bytes);
                    continue;
                }
                let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                entry
                    .to_file()
                    .take(len)
                    .read_to_end(&mut data)
                    .map_err(|e| corrupt(&path, "file data", e))?;
                if data.len() as u64 != len {
                    return Err(MediaError::Corrupt {
                        device: device.to_string(),
                        path,
                        detail: format!(
                            "file is {len} bytes but its cluster chain holds {}",
                            data.len()
                        ),
                    });
                }
                total += len;
                out.files.insert(path, data.into());
            }
        }
    }
    drop(stack);
    drop(fs);
    let w = writes.get();
    if w > 0 {
        tracing::warn!(device, "fatfs attempted {w} write(s); all refused");
    }
    Ok((out, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal FAT12 boot sector (1.44 MB floppy geometry) with `label` in the EBPB.
    fn boot(label: &[u8; 11]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = 0xeb;
        b[1] = 0x3c;
        b[2] = 0x90;
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14..16].copy_from_slice(&1u16.to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&224u16.to_le_bytes());
        b[19..21].copy_from_slice(&2880u16.to_le_bytes());
        b[21] = 0xf0;
        b[22..24].copy_from_slice(&9u16.to_le_bytes());
        b[38] = 0x29;
        b[43..54].copy_from_slice(label);
        b[54..62].copy_from_slice(b"FAT12   ");
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    #[test]
    fn boot_sector_checks() {
        let b = boot(b"CONFIG-2   ");
        assert!(is_fat_boot_sector(&b));
        assert_eq!(boot_sector_label(&b).as_deref(), Some("CONFIG-2"));
        assert_eq!(boot_sector_label(&boot(b"NO NAME    ")), None);
        assert!(!is_fat_boot_sector(&vec![0u8; 512]));
        let mut mbr = b.clone();
        mbr[0] = 0xfa;
        assert!(!is_fat_boot_sector(&mbr));
        assert!(!is_fat_boot_sector(&b[..100]));
    }

    #[test]
    fn not_fat_is_a_clear_error() {
        let e = read_fat(Cursor::new(vec![0u8; 4096]), "dev9", &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("dev9"), "{e}");
        assert!(read_fat_summary(Cursor::new(vec![0u8; 4096]), "dev9")
            .unwrap()
            .is_none());
    }

    #[test]
    fn writes_are_refused_and_counted() {
        let mut s = ReadOnly::new(Cursor::new(vec![1u8; 100]), 1000).unwrap();
        assert!(s.write(b"x").is_err());
        assert_eq!(s.writes.get(), 1);
        let mut buf = [0u8; 10];
        s.seek(SeekFrom::Start(95)).unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 5);
    }

    #[test]
    fn cluster_number_below_two_is_an_error_not_a_panic() {
        // Found by fuzz/fat: a directory entry whose first cluster is 0/1 made fatfs compute
        // `cluster - 2` (panics with overflow checks; wraps past the device without).
        let data = include_bytes!("testdata/fat-cluster-underflow.bin");
        let r = read_fat(Cursor::new(&data[..]), "dev7", &Limits::default());
        if let Err(e) = r {
            assert!(e.to_string().contains("dev7"), "{e}");
        }
        let _ = read_fat_summary(Cursor::new(&data[..]), "dev7");
    }

    #[test]
    fn reads_past_the_end_are_errors_not_eof() {
        let mut s = ReadOnly::new(Cursor::new(vec![1u8; 100]), 1000).unwrap();
        s.seek(SeekFrom::Start(100)).unwrap();
        let e = s.read(&mut [0u8; 4]).unwrap_err();
        // fatfs takes UnexpectedEof for the end of a full directory.
        assert_ne!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            e.to_string().contains("beyond the end of the device"),
            "{e}"
        );
    }

    #[test]
    fn a_cluster_read_twice_is_a_loop() {
        let mut w = Watch {
            on: true,
            data_start: 1000,
            cluster: 512,
            ..Default::default()
        };
        assert!(w.note(0).is_ok(), "before the data area");
        assert!(w.note(1000).is_ok());
        assert!(w.note(1100).is_ok(), "inside a cluster");
        assert!(w.note(1512).is_ok());
        let e = w.note(1000).unwrap_err();
        assert!(
            e.to_string().contains("cluster 2 is read a second time"),
            "{e}"
        );
        assert_eq!(
            geometry(&boot(b"CONFIG-2   ")),
            Some(((1 + 2 * 9 + 14) * 512, 512))
        );
    }

    /// Tables ending past sector 2^32 (fatfs wraps that sum in u32): no data area, and the
    /// volume is refused before fatfs reads a file without primer's cluster watch.
    #[test]
    fn tables_past_sector_2_32_are_refused() {
        let mut b = boot(b"CONFIG-2   ");
        b[22..24].copy_from_slice(&0u16.to_le_bytes());
        b[36..40].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        assert_eq!(geometry(&b), None);
        let mut dev = b.clone();
        dev.resize(1 << 20, 0);
        match open(Cursor::new(dev), "fat.img", 1 << 30) {
            Err(e) => assert!(e.to_string().contains("past sector 2^32"), "{e}"),
            Ok(_) => panic!("opened"),
        }
    }

    /// A device in memory for the chain walk: a FAT16 table of `entries` at byte 0, then
    /// 512-byte clusters from byte 4096 (cluster 2), `clusters` of them.
    struct Mem(Vec<u8>);

    impl ReadAt for Mem {
        fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
            let at = at as usize;
            let src = self
                .0
                .get(at..at + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    fn fat16(entries: &[(u64, u16)]) -> Mem {
        let mut d = vec![0u8; 4096 + 100 * 512];
        for &(n, v) in entries {
            d[n as usize * 2..n as usize * 2 + 2].copy_from_slice(&v.to_le_bytes());
        }
        Mem(d)
    }

    fn walk_chain(
        dev: &Mem,
        watch: &mut Watch,
        first: u64,
        len: u64,
    ) -> Result<Vec<(u64, u64)>, String> {
        let mut fat = FatReader {
            dev,
            table: Table {
                start: 0,
                bytes: 4096,
                clusters: 100,
            },
            bits: 16,
            block: Vec::new(),
            block_at: None,
        };
        chain_extents(&mut fat, watch, first, len, dev.0.len() as u64)
    }

    fn watch() -> Watch {
        Watch {
            on: true,
            data_start: 4096,
            cluster: 512,
            ..Default::default()
        }
    }

    #[test]
    fn a_chain_becomes_extents_of_its_runs() {
        // 2 -> 3 -> 4 -> 10 -> 11 -> 5 (end): three runs, the last one cut to the size.
        let dev = fat16(&[(2, 3), (3, 4), (4, 10), (10, 11), (11, 5), (5, 0xffff)]);
        let mut w = watch();
        let e = walk_chain(&dev, &mut w, 2, 5 * 512 + 100).unwrap();
        assert_eq!(
            e,
            vec![
                (4096, 3 * 512),
                (4096 + 8 * 512, 2 * 512),
                (4096 + 3 * 512, 100)
            ]
        );
        // Its clusters are claimed: a directory read from one of them later is refused.
        assert!(w.note(4096 + 9 * 512).is_err());
        assert!(w.note(4096 + 20 * 512).is_ok());
        // A file sharing a claimed cluster is refused.
        let dev = fat16(&[(20, 21), (21, 3), (3, 0xfff8)]);
        let err = walk_chain(&dev, &mut w, 20, 3 * 512).unwrap_err();
        assert!(err.contains("cluster 3 is met a second time"), "{err}");
        // So is one starting on a cluster a directory was read from.
        let mut w = watch();
        w.note(4096 + 40 * 512).unwrap();
        let dev = fat16(&[(42, 0xffff)]);
        assert!(walk_chain(&dev, &mut w, 42, 512).is_err());
    }

    #[test]
    fn hostile_chains_are_refused_and_bounded() {
        // FAT entries, first cluster, file size, the refusal wanted.
        type Case<'a> = (&'a [(u64, u16)], u64, u64, &'a str);
        let cases: &[Case] = &[
            // A loop: 2 -> 3 -> 4 -> 2 for a file longer than the three.
            (&[(2, 3), (3, 4), (4, 2)], 2, 10 * 512, "met a second time"),
            // A loop on itself.
            (&[(7, 7)], 7, 2 * 512, "met a second time"),
            // Shorter than the size.
            (&[(2, 3), (3, 0xffff)], 2, 3 * 512, "holds 1024"),
            // Longer than the size.
            (
                &[(2, 3), (3, 4), (4, 0xffff)],
                2,
                2 * 512,
                "goes on past them",
            ),
            // A free cluster in the chain.
            (&[(2, 3), (3, 0)], 2, 3 * 512, "free or reserved"),
            // A bad-cluster mark (named as such), a cluster past the volume, a first cluster
            // below 2.
            (&[(2, 0xfff7)], 2, 2 * 512, "bad-cluster mark 0xfff7"),
            (&[(2, 500)], 2, 2 * 512, "outside the data area"),
            (&[], 1, 512, "outside the data area"),
        ];
        for (entries, first, len, want) in cases {
            let dev = fat16(entries);
            let err = walk_chain(&dev, &mut watch(), *first, *len).unwrap_err();
            assert!(err.contains(want), "{entries:?}: {err}");
        }
        // Data past the device's end (the volume says more clusters than the device holds).
        let dev = Mem(fat16(&[(2, 0xffff)]).0[..4096 + 100].to_vec());
        let err = walk_chain(&dev, &mut watch(), 2, 512).unwrap_err();
        assert!(err.contains("beyond the end of the device"), "{err}");
        // More runs than the drive may have: refused, not held.
        let mut w = watch();
        w.runs = (0..MAX_RUNS as u64)
            .map(|i| (1000 + 2 * i, 1001 + 2 * i))
            .collect();
        let dev = fat16(&[(2, 0xffff)]);
        let err = walk_chain(&dev, &mut w, 2, 512).unwrap_err();
        assert!(err.contains("cluster runs"), "{err}");
    }

    #[test]
    fn fat12_and_fat32_entries() {
        // FAT12: cluster 2 -> 3 -> end, packed 12 bits each (entries 2 and 3 share 3 bytes).
        let mut d = vec![0u8; 4096 + 100 * 512];
        d[3] = 0x03; // entry 2 = 0x003 (low byte at 3, low nibble of 4)
        d[4] = 0xf0; // entry 3 = 0xfff (high nibble of 4, byte 5)
        d[5] = 0xff;
        let dev = Mem(d);
        let mut fat = FatReader {
            dev: &dev,
            table: Table {
                start: 0,
                bytes: 4096,
                clusters: 100,
            },
            bits: 12,
            block: Vec::new(),
            block_at: None,
        };
        assert_eq!(fat.entry(2).unwrap(), 3);
        let end = fat.entry(3).unwrap();
        assert!(fat.is_end(end));
        let e = chain_extents(&mut fat, &mut watch(), 2, 1000, dev.0.len() as u64).unwrap();
        assert_eq!(e, vec![(4096, 1000)]);
        // FAT32: the top four bits are not part of the entry.
        let mut d = vec![0u8; 4096 + 100 * 512];
        d[8..12].copy_from_slice(&0xf000_0003u32.to_le_bytes());
        d[12..16].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
        let dev = Mem(d);
        fat.dev = &dev;
        fat.bits = 32;
        fat.block_at = None;
        assert_eq!(fat.entry(2).unwrap(), 3);
        let end = fat.entry(3).unwrap();
        assert!(fat.is_end(end));
        // FAT32's bad-cluster mark (its top four bits ignored) is refused by name.
        fat.block_at = None;
        let mut d = dev.0.clone();
        d[8..12].copy_from_slice(&0xffff_fff7u32.to_le_bytes());
        let bad = Mem(d);
        fat.dev = &bad;
        let err = chain_extents(&mut fat, &mut watch(), 2, 1000, bad.0.len() as u64).unwrap_err();
        assert!(err.contains("bad-cluster mark 0xffffff7"), "{err}");
        // An entry past the table's end.
        assert!(fat.entry(5000).unwrap_err().contains("no entry"));
    }

    #[test]
    fn read_budget_stops_reading() {
        let mut s = ReadOnly::new(Cursor::new(vec![1u8; 100]), 10).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).unwrap(), 10);
        assert!(s.read(&mut buf).is_err());
    }
}
