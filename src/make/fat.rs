//! VFAT writer: FAT12, FAT16 or FAT32 by cluster count (as every FAT driver decides), long
//! names (VFAT LFN entries beside unique 8.3 aliases), the label in the boot sector and as the
//! root's volume-label entry, 512- or 4096-byte logical sectors. Deterministic (one time stamp,
//! sorted entries, a volume serial derived from the content list) and streaming: the layout is
//! computed from sizes, then the image is written front to back, one input file at a time.
//! Writes nothing but its output.
//!
//! Why an own writer: fatfs 0.3.6 (primer's FAT reader) writes subdirectories fsck.vfat
//! reports as invalid (fixed only in unreleased 0.4, see notes/crates.md), and mkfs.vfat +
//! mtools are not on every machine an operator builds drives on. Every image is checked by
//! `fsck.vfat -n`, mtools and blkid in `tests/make_drive.rs`, and by primer's reader.

use std::collections::BTreeMap;
use std::io::Write;

use super::{MakeError, Tree};

/// Bounds of each FAT type by cluster count (Microsoft's FAT specification, "FAT type
/// determination"): fewer than 4085 clusters is FAT12, fewer than 65525 FAT16, else FAT32.
const FAT12_MAX: u32 = 4084;
const FAT16_MAX: u32 = 65524;
/// Largest FAT32 cluster count (28-bit entries minus the reserved values).
const FAT32_MAX: u32 = 0x0FFF_FFF5;
/// Most entries one directory may hold (FAT's limit is 65536 entries).
const MAX_DIR_ENTRIES: usize = 65_536;
/// Largest cluster, in bytes (the common limit of FAT drivers).
const MAX_CLUSTER: u32 = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

impl FatType {
    pub fn name(self) -> &'static str {
        match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        }
    }
}

/// The on-disk geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub fat: FatType,
    pub sector: u32,
    pub total_sectors: u32,
    pub spc: u32,
    pub reserved: u32,
    pub fat_sectors: u32,
    /// FAT12/16: root directory entries (a fixed region); FAT32: 0.
    pub root_entries: u32,
    pub clusters: u32,
}

impl Geometry {
    fn root_sectors(&self) -> u32 {
        (self.root_entries * 32).div_ceil(self.sector)
    }
    fn data_start(&self) -> u32 {
        self.reserved + 2 * self.fat_sectors + self.root_sectors()
    }
    fn cluster_bytes(&self) -> u64 {
        self.spc as u64 * self.sector as u64
    }

    /// The geometry of `fat` with `spc` sectors per cluster on `total` sectors, if the cluster
    /// count falls in that type's range.
    fn try_new(
        fat: FatType,
        sector: u32,
        total: u32,
        spc: u32,
        root_entries: u32,
    ) -> Option<Geometry> {
        let reserved = match fat {
            FatType::Fat32 => 32,
            _ => 1,
        };
        let root_entries = if fat == FatType::Fat32 {
            0
        } else {
            root_entries
        };
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let bits: u64 = match fat {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        };
        let mut fat_sectors = 1u32;
        // Fixed point: the FAT must cover the clusters that remain after it.
        for _ in 0..64 {
            let meta = reserved + 2 * fat_sectors + root_sectors;
            if meta >= total {
                return None;
            }
            let clusters = (total - meta) / spc;
            let need = ((clusters as u64 + 2) * bits)
                .div_ceil(8)
                .div_ceil(sector as u64) as u32;
            if need <= fat_sectors {
                break;
            }
            fat_sectors = need;
        }
        let meta = reserved + 2 * fat_sectors + root_sectors;
        let clusters = total.checked_sub(meta)? / spc;
        let ok = match fat {
            FatType::Fat12 => (1..=FAT12_MAX).contains(&clusters),
            FatType::Fat16 => (FAT12_MAX + 1..=FAT16_MAX).contains(&clusters),
            FatType::Fat32 => (FAT16_MAX + 1..=FAT32_MAX).contains(&clusters),
        };
        ok.then_some(Geometry {
            fat,
            sector,
            total_sectors: total,
            spc,
            reserved,
            fat_sectors,
            root_entries,
            clusters,
        })
    }

    /// The geometry for `bytes` of image: the smallest cluster that gives a valid type,
    /// preferring FAT12 below 8 MiB, FAT16 below 512 MiB, FAT32 above (as mkfs.fat does).
    pub fn choose(bytes: u64, sector: u32, root_entries: u32) -> Option<Geometry> {
        let total = u32::try_from(bytes / sector as u64).ok()?;
        let order: &[FatType] = if bytes < 8 << 20 {
            &[FatType::Fat12, FatType::Fat16, FatType::Fat32]
        } else if bytes < 512 << 20 {
            &[FatType::Fat16, FatType::Fat32, FatType::Fat12]
        } else {
            &[FatType::Fat32, FatType::Fat16, FatType::Fat12]
        };
        for &fat in order {
            let mut spc = 1;
            while spc * sector <= MAX_CLUSTER.max(sector) && spc <= 128 {
                if let Some(g) = Geometry::try_new(fat, sector, total, spc, root_entries) {
                    return Some(g);
                }
                spc *= 2;
            }
        }
        None
    }
}

/// One directory or file of the volume, with its first cluster and cluster count.
#[derive(Debug, Default)]
struct Node {
    name: String,
    dir: bool,
    parent: usize,
    children: Vec<usize>,
    /// Tree path of a file.
    path: String,
    size: u64,
    first: u32,
    count: u32,
    /// The 8.3 alias (11 bytes) and whether long-name entries are needed.
    short: [u8; 11],
    lfn: bool,
}

/// Characters a short name may hold (others become `_`).
fn short_char(c: char) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    if c.is_ascii_alphanumeric() || "$%'-_@~`!(){}^#&".contains(c) {
        Some(c as u8)
    } else {
        None
    }
}

/// The 8.3 alias of `name`, unique among `taken`; `true` when long-name entries are needed
/// (the alias is not the name exactly).
fn short_name(name: &str, taken: &mut std::collections::BTreeSet<[u8; 11]>) -> ([u8; 11], bool) {
    let (base, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let clean = |s: &str| -> (Vec<u8>, bool) {
        let mut lossy = false;
        let mut v = Vec::new();
        for c in s.chars() {
            match short_char(c) {
                Some(b) => v.push(b),
                None if c == '.' || c == ' ' => lossy = true,
                None => {
                    v.push(b'_');
                    lossy = true
                }
            }
        }
        (v, lossy)
    };
    let (b, lb) = clean(base);
    let (e, le) = clean(ext);
    let fits = !lb && !le && !b.is_empty() && b.len() <= 8 && e.len() <= 3;
    let exact = fits && name.chars().all(|c| !c.is_ascii_lowercase());
    let mut s = [b' '; 11];
    let e3 = &e[..e.len().min(3)];
    s[8..8 + e3.len()].copy_from_slice(e3);
    if fits {
        s[..b.len()].copy_from_slice(&b);
        if taken.insert(s) {
            return (s, !exact);
        }
    }
    for n in 1..=999_999u32 {
        let tail = format!("~{n}");
        let keep = (8 - tail.len()).min(b.len());
        let mut t = s;
        t[..8].copy_from_slice(b"        ");
        t[..keep].copy_from_slice(&b[..keep]);
        t[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        if taken.insert(t) {
            return (t, true);
        }
    }
    (s, true)
}

fn lfn_checksum(s: &[u8; 11]) -> u8 {
    s.iter().fold(0u8, |sum, &c| {
        (sum >> 1).wrapping_add(sum << 7).wrapping_add(c)
    })
}

/// Long-name entries for `name`, in on-disk order (last part first).
fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let n = units.len().div_ceil(13);
    let sum = lfn_checksum(short);
    let mut out = Vec::with_capacity(n);
    for i in (0..n).rev() {
        let mut e = [0u8; 32];
        e[0] = (i as u8 + 1) | if i + 1 == n { 0x40 } else { 0 };
        e[11] = 0x0F;
        e[13] = sum;
        let slots: Vec<usize> = (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2))
            .collect();
        for (k, &at) in slots.iter().enumerate() {
            let idx = i * 13 + k;
            let u: u16 = match idx.cmp(&units.len()) {
                std::cmp::Ordering::Less => units[idx],
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 0xFFFF,
            };
            e[at..at + 2].copy_from_slice(&u.to_le_bytes());
        }
        out.push(e);
    }
    out
}

/// FAT date and time of a Unix time (FAT starts in 1980: earlier times are 1980-01-01).
fn fat_time(epoch: i64) -> (u16, u16) {
    let (y, mo, d, h, mi, s) = super::iso::civil(epoch.max(315_532_800));
    let date = (((y - 1980).clamp(0, 127) as u16) << 9) | ((mo as u16) << 5) | d as u16;
    let time = ((h as u16) << 11) | ((mi as u16) << 5) | (s as u16 / 2);
    (date, time)
}

fn dir_entry(name: &[u8; 11], attr: u8, cluster: u32, size: u32, epoch: i64) -> [u8; 32] {
    let (date, time) = fat_time(epoch);
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    e[14..16].copy_from_slice(&time.to_le_bytes());
    e[16..18].copy_from_slice(&date.to_le_bytes());
    e[18..20].copy_from_slice(&date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&time.to_le_bytes());
    e[24..26].copy_from_slice(&date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// Checks a FAT label: 1 to 11 bytes of characters a short name may hold, or spaces.
pub fn check_label(label: &str) -> Result<[u8; 11], MakeError> {
    let bad = || {
        MakeError::field(
            "arguments",
            "--label",
            "a FAT label is 1 to 11 upper-case letters, digits, spaces or - _ (lower case is upper-cased)",
        )
    };
    if label.is_empty() || label.len() > 11 || label.starts_with(' ') {
        return Err(bad());
    }
    let mut l = [b' '; 11];
    for (i, c) in label.chars().enumerate() {
        l[i] = if c == ' ' {
            b' '
        } else {
            short_char(c).ok_or_else(bad)?
        };
    }
    Ok(l)
}

struct Layout {
    g: Geometry,
    nodes: Vec<Node>,
    /// Nodes in cluster order (directories breadth first, then files in path order).
    order: Vec<usize>,
}

/// Entries (32-byte slots) a directory needs.
fn dir_slots(nodes: &[Node], d: usize) -> usize {
    let own = if d == 0 { 1 } else { 2 };
    own + nodes[d]
        .children
        .iter()
        .map(|&c| {
            1 + if nodes[c].lfn {
                nodes[c].name.encode_utf16().count().div_ceil(13)
            } else {
                0
            }
        })
        .sum::<usize>()
}

fn nodes_of(tree: &Tree) -> Result<Vec<Node>, MakeError> {
    let mut nodes = vec![Node {
        dir: true,
        ..Default::default()
    }];
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (path, content) in &tree.files {
        let parts: Vec<&str> = path.split('/').collect();
        let mut cur = 0;
        let mut prefix = String::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() || part.encode_utf16().count() > 255 {
                return Err(MakeError::Limit {
                    path: path.clone(),
                    message: "a name is empty or longer than 255 characters (VFAT's limit)".into(),
                });
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let last = i + 1 == parts.len();
            if !last {
                if let Some(&d) = index.get(&prefix) {
                    cur = d;
                    continue;
                }
                if tree.files.contains_key(&prefix) {
                    return Err(MakeError::Limit {
                        path: prefix,
                        message: "is both a file and a directory".into(),
                    });
                }
            }
            if content.size() > u32::MAX as u64 && last {
                return Err(MakeError::Limit {
                    path: path.clone(),
                    message: "larger than 4 GiB - 1 (FAT's limit)".into(),
                });
            }
            nodes.push(Node {
                name: part.to_string(),
                dir: !last,
                parent: cur,
                path: if last { path.clone() } else { String::new() },
                size: if last { content.size() } else { 0 },
                ..Default::default()
            });
            let n = nodes.len() - 1;
            nodes[cur].children.push(n);
            if !last {
                index.insert(prefix.clone(), n);
                cur = n;
            }
        }
    }
    // 8.3 aliases, unique per directory and assigned in name order (reproducible).
    for d in 0..nodes.len() {
        if !nodes[d].dir {
            continue;
        }
        let mut kids = nodes[d].children.clone();
        crate::sort::sort_by(&mut kids, |a, b| nodes[*a].name.cmp(&nodes[*b].name));
        let mut taken = std::collections::BTreeSet::new();
        taken.insert(*b".          ");
        taken.insert(*b"..         ");
        for &k in &kids {
            let (s, lfn) = short_name(&nodes[k].name, &mut taken);
            nodes[k].short = s;
            nodes[k].lfn = lfn;
        }
        nodes[d].children = kids;
        if dir_slots(&nodes, d) > MAX_DIR_ENTRIES {
            return Err(MakeError::Limit {
                path: nodes[d].name.clone(),
                message: format!("more than {MAX_DIR_ENTRIES} directory entries"),
            });
        }
    }
    Ok(nodes)
}

fn layout(tree: &Tree, sector: u32, size: Option<u64>) -> Result<Layout, MakeError> {
    let mut nodes = nodes_of(tree)?;
    let root_need = (dir_slots(&nodes, 0) as u32).max(512);
    // Root entries fill whole sectors.
    let per = sector / 32;
    let root_entries = root_need.div_ceil(per) * per;
    // FAT12/16 keep the root's entry count in 16 bits (FAT32's root is a cluster chain, but
    // one layout serves both, so the smaller limit holds for every type).
    if root_entries > 65_024 {
        return Err(MakeError::Limit {
            path: "/".into(),
            message: "more than 65024 entries in the root directory".into(),
        });
    }
    let clusters_needed = |g: &Geometry, nodes: &[Node]| -> u64 {
        let cb = g.cluster_bytes();
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if n.dir {
                    if i == 0 && g.fat != FatType::Fat32 {
                        0
                    } else {
                        ((dir_slots(nodes, i) as u64 * 32).div_ceil(cb)).max(1)
                    }
                } else {
                    n.size.div_ceil(cb)
                }
            })
            .sum()
    };
    let g = match size {
        Some(bytes) => {
            let g =
                Geometry::choose(bytes, sector, root_entries).ok_or_else(|| MakeError::Limit {
                    path: "--size".into(),
                    message: format!(
                        "{bytes} bytes cannot hold a FAT filesystem with {sector}-byte sectors"
                    ),
                })?;
            let need = clusters_needed(&g, &nodes);
            if need > g.clusters as u64 {
                return Err(MakeError::Limit {
                    path: "--size".into(),
                    message: format!(
                        "{bytes} bytes hold {} clusters of {} bytes; the files need {need}",
                        g.clusters,
                        g.cluster_bytes()
                    ),
                });
            }
            g
        }
        None => {
            // The smallest whole number of MiB (at least 1) that holds everything.
            let mut mib = (tree.total_bytes() >> 20) + 1;
            loop {
                if let Some(g) = Geometry::choose(mib << 20, sector, root_entries) {
                    if clusters_needed(&g, &nodes) <= g.clusters as u64 {
                        break g;
                    }
                }
                if mib > 1 << 22 {
                    return Err(MakeError::Limit {
                        path: "image".into(),
                        message: "the files do not fit any FAT volume".into(),
                    });
                }
                mib += (mib / 8).max(1);
            }
        }
    };
    // Cluster order: the FAT32 root, directories breadth first, then files in path order.
    let mut order = Vec::new();
    let mut q = std::collections::VecDeque::from([0usize]);
    let mut files = Vec::new();
    while let Some(d) = q.pop_front() {
        if d != 0 || g.fat == FatType::Fat32 {
            order.push(d);
        }
        for &c in &nodes[d].children {
            if nodes[c].dir {
                q.push_back(c);
            } else {
                files.push(c);
            }
        }
    }
    crate::sort::sort_by(&mut files, |a, b| nodes[*a].path.cmp(&nodes[*b].path));
    order.extend(files);
    let cb = g.cluster_bytes();
    let mut next = 2u32;
    for &i in &order {
        let count = if nodes[i].dir {
            ((dir_slots(&nodes, i) as u64 * 32).div_ceil(cb)).max(1) as u32
        } else {
            nodes[i].size.div_ceil(cb) as u32
        };
        nodes[i].count = count;
        nodes[i].first = if count == 0 { 0 } else { next };
        next += count;
    }
    Ok(Layout { g, nodes, order })
}

/// The size in bytes `write` would produce.
pub fn image_size(tree: &Tree, sector: u32, size: Option<u64>) -> Result<u64, MakeError> {
    let l = layout(tree, sector, size)?;
    Ok(l.g.total_sectors as u64 * sector as u64)
}

fn dir_bytes(l: &Layout, d: usize, epoch: i64, label: &[u8; 11]) -> Vec<u8> {
    let n = &l.nodes;
    let mut out = Vec::new();
    if d == 0 {
        out.extend_from_slice(&dir_entry(label, 0x08, 0, 0, epoch));
    } else {
        out.extend_from_slice(&dir_entry(b".          ", 0x10, n[d].first, 0, epoch));
        let p = n[d].parent;
        // `..` of a first-level directory points at cluster 0 (the root), FAT32 included.
        let pc = if p == 0 { 0 } else { n[p].first };
        out.extend_from_slice(&dir_entry(b"..         ", 0x10, pc, 0, epoch));
    }
    for &c in &n[d].children {
        if n[c].lfn {
            for e in lfn_entries(&n[c].name, &n[c].short) {
                out.extend_from_slice(&e);
            }
        }
        let (attr, size) = if n[c].dir {
            (0x10, 0)
        } else {
            (0x20, n[c].size as u32)
        };
        out.extend_from_slice(&dir_entry(&n[c].short, attr, n[c].first, size, epoch));
    }
    out
}

/// A volume serial derived from what the volume holds: reproducible, different per content.
fn serial(tree: &Tree, label: &[u8; 11], epoch: i64) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(label);
    h.update(epoch.to_le_bytes());
    for (p, c) in &tree.files {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(c.size().to_le_bytes());
    }
    let d = h.finalize();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

struct Out<W: Write> {
    w: W,
    pos: u64,
}

impl<W: Write> Out<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), MakeError> {
        self.w
            .write_all(b)
            .map_err(|e| MakeError::io("output", e))?;
        self.pos += b.len() as u64;
        Ok(())
    }
    fn pad_to(&mut self, at: u64) -> Result<(), MakeError> {
        // Zeroes from the allocator (calloc'd pages), not a 64 KiB static that every copy of
        // the binary would carry in its read-only data.
        let zero = vec![0u8; ((at.saturating_sub(self.pos)) as usize).min(65536)];
        while self.pos < at {
            let n = ((at - self.pos) as usize).min(zero.len());
            self.put(&zero[..n])?;
        }
        Ok(())
    }
}

struct Counting<'a, W: Write>(&'a mut Out<W>);

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.0.w.write(b)?;
        self.0.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.w.flush()
    }
}

fn boot_sector(g: &Geometry, label: &[u8; 11], serial: u32) -> Vec<u8> {
    let mut b = vec![0u8; g.sector as usize];
    b[0..3].copy_from_slice(if g.fat == FatType::Fat32 {
        &[0xEB, 0x58, 0x90]
    } else {
        &[0xEB, 0x3C, 0x90]
    });
    b[3..11].copy_from_slice(b"PRIMER  ");
    b[11..13].copy_from_slice(&(g.sector as u16).to_le_bytes());
    b[13] = g.spc as u8;
    b[14..16].copy_from_slice(&(g.reserved as u16).to_le_bytes());
    b[16] = 2;
    b[17..19].copy_from_slice(&(g.root_entries as u16).to_le_bytes());
    if g.total_sectors < 65536 && g.fat != FatType::Fat32 {
        b[19..21].copy_from_slice(&(g.total_sectors as u16).to_le_bytes());
    } else {
        b[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
    }
    b[21] = 0xF8;
    b[24..26].copy_from_slice(&32u16.to_le_bytes());
    b[26..28].copy_from_slice(&64u16.to_le_bytes());
    let ext = if g.fat == FatType::Fat32 {
        b[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes());
        b[48..50].copy_from_slice(&1u16.to_le_bytes());
        b[50..52].copy_from_slice(&6u16.to_le_bytes());
        64
    } else {
        b[22..24].copy_from_slice(&(g.fat_sectors as u16).to_le_bytes());
        36
    };
    b[ext] = 0x80;
    b[ext + 2] = 0x29;
    b[ext + 3..ext + 7].copy_from_slice(&serial.to_le_bytes());
    b[ext + 7..ext + 18].copy_from_slice(label);
    b[ext + 18..ext + 26].copy_from_slice(match g.fat {
        FatType::Fat12 => b"FAT12   ",
        FatType::Fat16 => b"FAT16   ",
        FatType::Fat32 => b"FAT32   ",
    });
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

fn fsinfo(g: &Geometry, used: u32) -> Vec<u8> {
    let mut b = vec![0u8; g.sector as usize];
    b[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    b[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    b[488..492].copy_from_slice(&(g.clusters - used).to_le_bytes());
    b[492..496].copy_from_slice(&(2 + used).to_le_bytes());
    b[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    b
}

/// The FAT: media and end-of-chain markers, then each object's contiguous chain.
fn fat_bytes(l: &Layout) -> Vec<u8> {
    let g = &l.g;
    let (eoc, media): (u32, u32) = match g.fat {
        FatType::Fat12 => (0xFFF, 0xFF8),
        FatType::Fat16 => (0xFFFF, 0xFFF8),
        FatType::Fat32 => (0x0FFF_FFFF, 0x0FFF_FFF8),
    };
    let mut entries = vec![0u32; g.clusters as usize + 2];
    entries[0] = media;
    entries[1] = eoc;
    for n in &l.nodes {
        for k in 0..n.count {
            let c = (n.first + k) as usize;
            entries[c] = if k + 1 == n.count {
                eoc
            } else {
                n.first + k + 1
            };
        }
    }
    let mut b = vec![0u8; (g.fat_sectors * g.sector) as usize];
    match g.fat {
        FatType::Fat12 => {
            for (i, &e) in entries.iter().enumerate() {
                let at = i * 3 / 2;
                if i % 2 == 0 {
                    b[at] = e as u8;
                    b[at + 1] = (b[at + 1] & 0xF0) | ((e >> 8) as u8 & 0x0F);
                } else {
                    b[at] = (b[at] & 0x0F) | ((e << 4) as u8);
                    b[at + 1] = (e >> 4) as u8;
                }
            }
        }
        FatType::Fat16 => {
            for (i, &e) in entries.iter().enumerate() {
                b[2 * i..2 * i + 2].copy_from_slice(&(e as u16).to_le_bytes());
            }
        }
        FatType::Fat32 => {
            for (i, &e) in entries.iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&e.to_le_bytes());
            }
        }
    }
    b
}

/// Writes the FAT image of `tree`: `sector` bytes per logical sector (512 or 4096), `size`
/// bytes (or the smallest whole MiB that fits), labelled `label`, every time stamp `epoch`.
pub fn write(
    tree: &Tree,
    label: &str,
    epoch: i64,
    sector: u32,
    size: Option<u64>,
    out: impl Write,
) -> Result<(FatType, u64), MakeError> {
    if !matches!(sector, 512 | 4096) {
        return Err(MakeError::field(
            "arguments",
            "--sector-size",
            "must be 512 or 4096",
        ));
    }
    let label = check_label(label)?;
    let l = layout(tree, sector, size)?;
    let g = l.g;
    let ss = g.sector as u64;
    let mut o = Out { w: out, pos: 0 };
    let boot = boot_sector(&g, &label, serial(tree, &label, epoch));
    o.put(&boot)?;
    if g.fat == FatType::Fat32 {
        let used: u32 = l.nodes.iter().map(|n| n.count).sum();
        let info = fsinfo(&g, used);
        o.put(&info)?;
        // Backup boot sector (and its FSInfo) at sector 6, as the boot sector says.
        o.pad_to(6 * ss)?;
        o.put(&boot)?;
        o.put(&info)?;
    }
    o.pad_to(g.reserved as u64 * ss)?;
    let fat = fat_bytes(&l);
    o.put(&fat)?;
    o.put(&fat)?;
    if g.fat != FatType::Fat32 {
        let mut root = dir_bytes(&l, 0, epoch, &label);
        root.resize((g.root_sectors() as u64 * ss) as usize, 0);
        o.put(&root)?;
    }
    let cb = g.cluster_bytes();
    for &i in &l.order {
        let n = &l.nodes[i];
        if n.count == 0 {
            continue;
        }
        let at = (g.data_start() as u64 + (n.first as u64 - 2) * g.spc as u64) * ss;
        o.pad_to(at)?;
        if n.dir {
            let mut b = dir_bytes(&l, i, epoch, &label);
            b.resize((n.count as u64 * cb) as usize, 0);
            o.put(&b)?;
        } else {
            let start = o.pos;
            tree.files[&n.path].copy_to(&mut Counting(&mut o))?;
            if o.pos - start != n.size {
                return Err(MakeError::Limit {
                    path: n.path.clone(),
                    message: "size changed while writing".into(),
                });
            }
        }
    }
    o.pad_to(g.total_sectors as u64 * ss)?;
    o.w.flush().map_err(|e| MakeError::io("output", e))?;
    Ok((g.fat, o.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_unique_and_flag_long_names() {
        let mut t = std::collections::BTreeSet::new();
        assert_eq!(short_name("README.TXT", &mut t), (*b"README  TXT", false));
        assert_eq!(short_name("latest", &mut t), (*b"LATEST     ", true));
        assert_eq!(
            short_name("meta_data.json", &mut t),
            (*b"META_D~1JSO", true)
        );
        assert_eq!(
            short_name("meta_data.jsonx", &mut t),
            (*b"META_D~2JSO", true)
        );
        assert_eq!(short_name("2012-08-10", &mut t), (*b"2012-0~1   ", true));
        assert_eq!(short_name("a b.c.d", &mut t), (*b"ABC~1   D  ", true));
    }

    #[test]
    fn long_name_entries_carry_the_name_and_checksum() {
        let short = *b"META_D~1JSO";
        let e = lfn_entries("meta_data.json", &short);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][0], 0x42);
        assert_eq!(e[1][0], 0x01);
        assert!(e
            .iter()
            .all(|x| x[11] == 0x0F && x[13] == lfn_checksum(&short)));
        assert_eq!(&e[1][1..3], &[b'm', 0]);
    }

    #[test]
    fn fat_type_follows_the_cluster_count() {
        let g = Geometry::choose(1 << 20, 512, 512).expect("1 MiB");
        assert_eq!(g.fat, FatType::Fat12);
        let g = Geometry::choose(64 << 20, 512, 512).expect("64 MiB");
        assert_eq!(g.fat, FatType::Fat16);
        assert!((FAT12_MAX + 1..=FAT16_MAX).contains(&g.clusters));
        let g = Geometry::choose(600 << 20, 512, 512).expect("600 MiB");
        assert_eq!(g.fat, FatType::Fat32);
        let g = Geometry::choose(64 << 20, 4096, 512).expect("4K sectors");
        assert_eq!(g.sector, 4096);
    }
}
