//! ISO9660 writer: a volume with Rock Ridge (RRIP 1.09/1991A names, modes, times) and Joliet
//! (UCS-2) over level-1-style primary names as nova's `genisoimage -J -r -l -ldots
//! -allow-lowercase -allow-multidot` writes them (lower case kept, several dots, 31 characters,
//! `;1`, other characters as `_`). Deterministic (one time stamp for everything, sorted
//! entries) and streaming: the layout is computed from sizes first, then the image is written
//! front to back to any `Write`, one input file at a time. Writes nothing but its output.
//!
//! Names longer than a directory record can carry (a record is at most 255 bytes, and the ISO
//! name and the fixed Rock Ridge entries take about 140 of them) go to a continuation area
//! (SUSP `CE`, IEEE P1281 §5.1): the record keeps RR, PX and TF and points to a run of `NM`
//! entries (250 name bytes each, CONTINUE flag on all but the last) in a sector after the
//! directories, as mkisofs does. Joliet names are cut to 64 UCS-2 characters (genisoimage
//! without `-joliet-long`), made unique with a counter: Rock Ridge keeps the real name.
//!
//! Why an own writer: hadris-iso (the reader primer measured) has a writer, but it is a release
//! candidate, needs a seekable output and holds inputs in memory unless an unstable feature is
//! enabled, and how it maps names (nova's level-1 rules) and times was not something we could
//! check in time; `iso9660`/`cdfs`/`isomage` only read. The format is small (this file), and
//! every image is checked by independent readers in `tests/make_drive.rs` (isoinfo -R/-J,
//! xorriso, blkid) and by primer's reader.

use std::collections::BTreeMap;
use std::io::Write;

use super::{MakeError, Tree};

pub const SECTOR: u64 = 2048;
/// Directory depth ISO9660 allows (ECMA-119 §6.8.2.1); config drives use four.
pub const MAX_DEPTH: usize = 8;
/// Longest Rock Ridge name: Linux NAME_MAX, what primer's reader and `--dir` accept. Names that
/// do not fit the directory record continue in a `CE` area.
pub const MAX_NAME: usize = 255;
/// Longest path (Linux PATH_MAX without its NUL).
pub const MAX_PATH: usize = 4095;
/// Longest Joliet name (UCS-2 units) without `-joliet-long`: longer names are cut.
pub const MAX_JOLIET: usize = 64;
/// Name bytes in one `NM` entry (its length field is one byte, five are the header).
const NM_CHUNK: usize = 250;
/// The Rock Ridge entries every record carries: RR (5), PX (36), TF (26).
const RR_FIXED: usize = 5 + 36 + 26;
/// A `CE` entry.
const CE_LEN: usize = 28;
/// Largest file in one extent.
pub const MAX_FILE: u64 = u32::MAX as u64;

const MODE_FILE: u32 = 0o100444;
const MODE_DIR: u32 = 0o040555;

/// One directory of the tree.
#[derive(Debug, Default)]
struct Dir {
    /// Real (Rock Ridge) name; empty for the root.
    name: String,
    parent: usize,
    depth: usize,
    dirs: Vec<usize>,
    files: Vec<usize>,
}

#[derive(Debug)]
struct File<'a> {
    name: String,
    path: &'a str,
    size: u64,
    extent: u32,
}

/// The two namespaces: primary (ISO names + Rock Ridge) and Joliet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Primary,
    Joliet,
}

/// A child entry in one namespace: identifier bytes, kind and index.
#[derive(Debug, Clone)]
struct Entry {
    id: Vec<u8>,
    dir: Option<usize>,
    file: Option<usize>,
}

struct Layout<'a> {
    dirs: Vec<Dir>,
    files: Vec<File<'a>>,
    /// Per namespace: directories in path-table order, each directory's sorted entries,
    /// each directory's extent and size.
    order: [Vec<usize>; 2],
    entries: [Vec<Vec<Entry>>; 2],
    extent: [Vec<u32>; 2],
    size: [Vec<u32>; 2],
    pt_size: [u32; 2],
    pt_loc: [[u32; 2]; 2],
    ce_loc: u32,
    /// Continuation areas of long Rock Ridge names, by (directory, entry index) in the primary
    /// namespace: (block, offset, length). Allocated in write order, never crossing a sector.
    long_names: BTreeMap<(usize, usize), (u32, u32, u32)>,
    total: u32,
}

fn ns_i(ns: Ns) -> usize {
    match ns {
        Ns::Primary => 0,
        Ns::Joliet => 1,
    }
}

/// ISO name characters with `-allow-lowercase`: everything else becomes `_`.
fn d_char(c: char) -> char {
    if c.is_ascii_alphanumeric() || c == '_' {
        c
    } else {
        '_'
    }
}

/// The primary identifier genisoimage gives a name with nova's flags: up to 31 characters,
/// lower case kept, dots kept in files (`-allow-multidot`, `-ldots`), a file always has a dot
/// and `;1`.
fn iso_name(name: &str, is_dir: bool) -> String {
    if is_dir {
        return name.chars().map(d_char).take(31).collect();
    }
    let (base, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let base: String = base
        .chars()
        .map(|c| if c == '.' { '.' } else { d_char(c) })
        .collect();
    let mut ext: String = ext.chars().map(d_char).collect();
    ext.truncate(30);
    let room = 31 - 1 - ext.len();
    let base: String = base.chars().take(room).collect();
    format!("{base}.{ext};1")
}

/// Makes `id` unique among `taken` the way genisoimage does: the last characters of the base
/// replaced by a counter.
fn unique(id: String, taken: &mut std::collections::BTreeSet<String>, is_dir: bool) -> String {
    if taken.insert(id.clone()) {
        return id;
    }
    let (stem, tail) = if is_dir {
        (id.clone(), String::new())
    } else {
        let dot = id.rfind('.').unwrap_or(id.len());
        (id[..dot].to_string(), id[dot..].to_string())
    };
    for n in 0..1000u32 {
        let c = format!("{n:03}");
        let keep = stem
            .len()
            .min(31usize.saturating_sub(tail.len().saturating_sub(2) + 3));
        let s: String = stem.chars().take(keep).collect();
        let cand = format!("{s}{c}{tail}");
        if taken.insert(cand.clone()) {
            return cand;
        }
    }
    id
}

fn utf16be(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

fn build_layout(tree: &Tree) -> Result<Layout<'_>, MakeError> {
    let mut dirs = vec![Dir::default()];
    let mut files = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (path, content) in &tree.files {
        let size = content.size();
        if size > MAX_FILE {
            return Err(MakeError::Limit {
                path: path.clone(),
                message: format!("larger than {MAX_FILE} bytes (one ISO9660 extent)"),
            });
        }
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() > MAX_DEPTH || path.len() > MAX_PATH {
            return Err(MakeError::Limit {
                path: path.clone(),
                message: format!("deeper than {MAX_DEPTH} levels or longer than {MAX_PATH} bytes"),
            });
        }
        let mut cur = 0usize;
        let mut prefix = String::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() || *part == "." || *part == ".." || part.len() > MAX_NAME {
                return Err(MakeError::Limit {
                    path: path.clone(),
                    message: format!(
                        "component {part:?} is empty, . or .., or longer than {MAX_NAME} bytes"
                    ),
                });
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if i + 1 == parts.len() {
                if index.contains_key(&prefix) {
                    return Err(MakeError::Limit {
                        path: path.clone(),
                        message: "is both a file and a directory".into(),
                    });
                }
                files.push(File {
                    name: part.to_string(),
                    path: path.as_str(),
                    size,
                    extent: 0,
                });
                dirs[cur].files.push(files.len() - 1);
            } else {
                cur = match index.get(&prefix) {
                    Some(&d) => d,
                    None => {
                        if tree.files.contains_key(&prefix) {
                            return Err(MakeError::Limit {
                                path: prefix.clone(),
                                message: "is both a file and a directory".into(),
                            });
                        }
                        let depth = dirs[cur].depth + 1;
                        dirs.push(Dir {
                            name: part.to_string(),
                            parent: cur,
                            depth,
                            ..Default::default()
                        });
                        let d = dirs.len() - 1;
                        dirs[cur].dirs.push(d);
                        index.insert(prefix.clone(), d);
                        d
                    }
                };
            }
        }
    }

    // Entries per namespace, sorted by identifier bytes.
    let mut entries: [Vec<Vec<Entry>>; 2] = [Vec::new(), Vec::new()];
    for ns in [Ns::Primary, Ns::Joliet] {
        for d in &dirs {
            let mut taken = std::collections::BTreeSet::new();
            let mut taken_joliet = std::collections::BTreeSet::new();
            let mut list = Vec::new();
            // Sorted real names first so collisions resolve the same way every time.
            let mut kids: Vec<(String, Option<usize>, Option<usize>)> = d
                .dirs
                .iter()
                .map(|&c| (dirs[c].name.clone(), Some(c), None))
                .chain(
                    d.files
                        .iter()
                        .map(|&f| (files[f].name.clone(), None, Some(f))),
                )
                .collect();
            crate::sort::sort(&mut kids);
            for (name, dir, file) in kids {
                let id = match ns {
                    Ns::Primary => {
                        unique(iso_name(&name, dir.is_some()), &mut taken, dir.is_some())
                            .into_bytes()
                    }
                    // genisoimage writes Joliet names without a `;1` version.
                    Ns::Joliet => joliet_id(&name, &mut taken_joliet),
                };
                list.push(Entry { id, dir, file });
            }
            crate::sort::sort_by(&mut list, |a, b| a.id.cmp(&b.id));
            entries[ns_i(ns)].push(list);
        }
    }

    // Path-table order: by level, then parent number, then identifier (ECMA-119 §6.9.1).
    let mut order: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for ns in 0..2 {
        let mut q = std::collections::VecDeque::from([0usize]);
        while let Some(d) = q.pop_front() {
            order[ns].push(d);
            for e in &entries[ns][d] {
                if let Some(c) = e.dir {
                    q.push_back(c);
                }
            }
        }
    }

    let mut l = Layout {
        dirs,
        files,
        order,
        entries,
        extent: [Vec::new(), Vec::new()],
        size: [Vec::new(), Vec::new()],
        pt_size: [0, 0],
        pt_loc: [[0, 0], [0, 0]],
        ce_loc: 19,
        long_names: BTreeMap::new(),
        total: 0,
    };
    let n = l.dirs.len();
    for ns in 0..2 {
        l.extent[ns] = vec![0; n];
        l.size[ns] = vec![0; n];
        let mut pt = 0u32;
        for &d in &l.order[ns] {
            let id_len = if d == 0 {
                1
            } else {
                l.id_of(ns, d).len() as u32
            };
            pt += 8 + id_len + (id_len & 1);
        }
        l.pt_size[ns] = pt;
    }
    // Sectors: 16 system area, PVD, SVD, terminator, the continuation area (ER), path tables.
    let mut next: u32 = 20;
    for ns in 0..2 {
        let secs = l.pt_size[ns].div_ceil(SECTOR as u32);
        l.pt_loc[ns] = [next, next + secs];
        next += 2 * secs;
    }
    for ns in 0..2 {
        for i in 0..l.order[ns].len() {
            let d = l.order[ns][i];
            let size = l.dir_size(ns, d);
            l.size[ns][d] = size;
            l.extent[ns][d] = next;
            next += size / SECTOR as u32;
        }
    }
    // Continuation areas of long names, packed into sectors after the directories in the order
    // the directories are written (so the image is still written front to back).
    let mut block = next;
    let mut used = 0u32;
    for i in 0..l.order[0].len() {
        let d = l.order[0][i];
        for (k, e) in l.entries[0][d].iter().enumerate() {
            let name = l.name_of(e);
            if nm_inline(e.id.len(), name.len()) {
                continue;
            }
            let len = nm_entries(name).len() as u32;
            if used + len > SECTOR as u32 {
                block += 1;
                used = 0;
            }
            l.long_names.insert((d, k), (block, used, len));
            used += len;
        }
    }
    if !l.long_names.is_empty() {
        next = block + 1;
    }
    for f in &mut l.files {
        if f.size == 0 {
            f.extent = 0;
            continue;
        }
        f.extent = next;
        let secs = f.size.div_ceil(SECTOR);
        next = u32::try_from(next as u64 + secs).map_err(|_| MakeError::Limit {
            path: f.path.to_string(),
            message: "the image would exceed 8 TiB".into(),
        })?;
    }
    l.total = next;
    Ok(l)
}

impl Layout<'_> {
    /// The identifier of directory `d` in its parent's entries.
    fn id_of(&self, ns: usize, d: usize) -> &[u8] {
        let p = self.dirs[d].parent;
        self.entries[ns][p]
            .iter()
            .find(|e| e.dir == Some(d))
            .map(|e| e.id.as_slice())
            .unwrap_or(&[])
    }

    /// System use bytes of a record with identifier length `id_len`.
    fn su_len(ns: usize, name: Option<&str>, root_dot: bool, id_len: usize) -> usize {
        if ns == 1 {
            return 0;
        }
        let mut n = RR_FIXED;
        if root_dot {
            n += 7 + CE_LEN; // SP, CE (to the ER entry)
        }
        if let Some(name) = name {
            n += if nm_inline(id_len, name.len()) {
                5 + name.len()
            } else {
                CE_LEN
            };
        }
        n
    }

    /// Record lengths of directory `d` in order (`.`, `..`, entries).
    fn records(&self, ns: usize, d: usize) -> Vec<usize> {
        let mut v = vec![
            rec_len(1, Self::su_len(ns, None, d == 0, 1)),
            rec_len(1, Self::su_len(ns, None, false, 1)),
        ];
        for e in &self.entries[ns][d] {
            let name = self.name_of(e);
            v.push(rec_len(
                e.id.len(),
                Self::su_len(ns, Some(name), false, e.id.len()),
            ));
        }
        v
    }

    fn name_of(&self, e: &Entry) -> &str {
        match (e.dir, e.file) {
            (Some(d), _) => &self.dirs[d].name,
            (_, Some(f)) => &self.files[f].name,
            _ => "",
        }
    }

    /// Directory size in whole sectors: records never cross a sector boundary.
    fn dir_size(&self, ns: usize, d: usize) -> u32 {
        let mut sectors = 1u32;
        let mut used = 0usize;
        for r in self.records(ns, d) {
            if used + r > SECTOR as usize {
                sectors += 1;
                used = 0;
            }
            used += r;
        }
        sectors * SECTOR as u32
    }
}

/// Length of a directory record: 33 fixed bytes, the identifier, a pad byte after an even one,
/// the system use area, rounded up to even.
fn rec_len(id_len: usize, su: usize) -> usize {
    let n = 33 + id_len + (1 - id_len % 2) + su;
    n + n % 2
}

/// Whether a name's `NM` entry fits in its directory record (at most 255 bytes) beside the
/// fixed Rock Ridge entries; else it goes to a continuation area.
fn nm_inline(id_len: usize, name_len: usize) -> bool {
    name_len <= NM_CHUNK && rec_len(id_len, RR_FIXED + 5 + name_len) <= 255
}

/// The `NM` entries of a continued name: 250 bytes each, CONTINUE (1) on all but the last.
fn nm_entries(name: &str) -> Vec<u8> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 5 * bytes.len().div_ceil(NM_CHUNK));
    let mut chunks = bytes.chunks(NM_CHUNK).peekable();
    while let Some(c) = chunks.next() {
        let more = chunks.peek().is_some();
        out.extend_from_slice(&[b'N', b'M', (5 + c.len()) as u8, 1, u8::from(more)]);
        out.extend_from_slice(c);
    }
    out
}

/// The Joliet identifier of `name`: UCS-2 big endian, cut to 64 units (a surrogate pair is
/// never split), unique among `taken` by replacing the last units with a counter.
fn joliet_id(name: &str, taken: &mut std::collections::BTreeSet<Vec<u16>>) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let cut = |max: usize| -> Vec<u16> {
        let mut n = units.len().min(max);
        // Do not end on a high surrogate.
        if n > 0 && n < units.len() && (0xD800..0xDC00).contains(&units[n - 1]) {
            n -= 1;
        }
        units[..n].to_vec()
    };
    let mut id = cut(MAX_JOLIET);
    if !taken.insert(id.clone()) {
        for k in 0..10_000u32 {
            let tag: Vec<u16> = format!("{k:04}").encode_utf16().collect();
            let mut cand = cut(MAX_JOLIET - tag.len());
            cand.extend_from_slice(&tag);
            if taken.insert(cand.clone()) {
                id = cand;
                break;
            }
        }
    }
    id.iter().flat_map(|u| u.to_be_bytes()).collect()
}

/// Civil date (UTC) of a Unix time: (year, month, day, hour, minute, second).
pub(crate) fn civil(epoch: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

fn date7(epoch: i64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = civil(epoch);
    [
        (y - 1900).clamp(0, 255) as u8,
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        0,
    ]
}

fn date17(epoch: i64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = civil(epoch);
    let t = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut o = [0u8; 17];
    o[..16].copy_from_slice(&t.as_bytes()[..16]);
    o
}

fn both32(v: u32) -> [u8; 8] {
    let mut o = [0u8; 8];
    o[..4].copy_from_slice(&v.to_le_bytes());
    o[4..].copy_from_slice(&v.to_be_bytes());
    o
}

fn both16(v: u16) -> [u8; 4] {
    let mut o = [0u8; 4];
    o[..2].copy_from_slice(&v.to_le_bytes());
    o[2..].copy_from_slice(&v.to_be_bytes());
    o
}

/// Checks a volume label: at most 32 bytes of letters, digits, `_`, `-` and space (what every
/// reader accepts; nova's `config-2` and cloud-init's `cidata` fit), Joliet keeps 16.
pub fn check_label(label: &str) -> Result<(), MakeError> {
    if label.is_empty()
        || label.len() > 32
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '))
    {
        return Err(MakeError::field(
            "arguments",
            "--label",
            "an ISO9660 label is 1 to 32 letters, digits, _, - or spaces",
        ));
    }
    Ok(())
}

/// Counts bytes written, so padding to sectors needs no seeking.
struct Out<W: Write> {
    w: W,
    pos: u64,
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(b)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

impl<W: Write> Out<W> {
    fn pad_to(&mut self, at: u64) -> Result<(), MakeError> {
        const ZERO: [u8; SECTOR as usize] = [0; SECTOR as usize];
        while self.pos < at {
            let n = ((at - self.pos) as usize).min(ZERO.len());
            self.write_all(&ZERO[..n])
                .map_err(|e| MakeError::io("output", e))?;
        }
        Ok(())
    }
    fn put(&mut self, b: &[u8]) -> Result<(), MakeError> {
        self.write_all(b).map_err(|e| MakeError::io("output", e))
    }
}

/// The size in bytes of the image `write` would produce.
pub fn image_size(tree: &Tree) -> Result<u64, MakeError> {
    Ok(build_layout(tree)?.total as u64 * SECTOR)
}

/// Writes the ISO9660 image of `tree` labelled `label`, every time stamp `epoch`.
pub fn write(tree: &Tree, label: &str, epoch: i64, out: impl Write) -> Result<u64, MakeError> {
    check_label(label)?;
    let l = build_layout(tree)?;
    let mut o = Out { w: out, pos: 0 };
    o.pad_to(16 * SECTOR)?;
    for ns in 0..2 {
        o.put(&volume_descriptor(&l, ns, label, epoch))?;
    }
    let mut term = [0u8; SECTOR as usize];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    o.put(&term)?;
    // Continuation area: the ER entry naming RRIP (too long for the root's `.` record).
    let mut ce = er_entry();
    ce.resize(SECTOR as usize, 0);
    o.put(&ce)?;
    for ns in 0..2 {
        for big in [false, true] {
            o.pad_to(l.pt_loc[ns][big as usize] as u64 * SECTOR)?;
            o.put(&path_table(&l, ns, big))?;
        }
    }
    for ns in 0..2 {
        for &d in &l.order[ns] {
            o.pad_to(l.extent[ns][d] as u64 * SECTOR)?;
            let bytes = dir_bytes(&l, ns, d, epoch);
            o.put(&bytes)?;
        }
    }
    // Continuation areas of long names, in the order they were allocated.
    for i in 0..l.order[0].len() {
        let d = l.order[0][i];
        for (k, e) in l.entries[0][d].iter().enumerate() {
            if let Some(&(block, offset, _)) = l.long_names.get(&(d, k)) {
                o.pad_to(block as u64 * SECTOR + offset as u64)?;
                o.put(&nm_entries(l.name_of(e)))?;
            }
        }
    }
    for f in &l.files {
        if f.size == 0 {
            continue;
        }
        o.pad_to(f.extent as u64 * SECTOR)?;
        let start = o.pos;
        tree.files[f.path].copy_to(&mut o)?;
        if o.pos - start != f.size {
            return Err(MakeError::Limit {
                path: f.path.to_string(),
                message: "size changed while writing".into(),
            });
        }
    }
    o.pad_to(l.total as u64 * SECTOR)?;
    o.flush().map_err(|e| MakeError::io("output", e))?;
    Ok(o.pos)
}

const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DES: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

fn er_entry() -> Vec<u8> {
    let mut e = vec![
        b'E',
        b'R',
        (8 + ER_ID.len() + ER_DES.len() + ER_SRC.len()) as u8,
        1,
        ER_ID.len() as u8,
        ER_DES.len() as u8,
        ER_SRC.len() as u8,
        1,
    ];
    e.extend_from_slice(ER_ID);
    e.extend_from_slice(ER_DES);
    e.extend_from_slice(ER_SRC);
    e
}

fn volume_descriptor(l: &Layout, ns: usize, label: &str, epoch: i64) -> Vec<u8> {
    let mut v = vec![0u8; SECTOR as usize];
    v[0] = if ns == 0 { 1 } else { 2 };
    v[1..6].copy_from_slice(b"CD001");
    v[6] = 1;
    // Text fields: a-characters padded with spaces, or UCS-2 for Joliet.
    let text = |v: &mut Vec<u8>, at: usize, len: usize, s: &str| {
        if ns == 0 {
            for (i, b) in v[at..at + len].iter_mut().enumerate() {
                *b = *s.as_bytes().get(i).unwrap_or(&b' ');
            }
        } else {
            let u = utf16be(s);
            for i in 0..len / 2 {
                let (hi, lo) = (u.get(2 * i).copied(), u.get(2 * i + 1).copied());
                v[at + 2 * i] = hi.unwrap_or(0);
                v[at + 2 * i + 1] = lo.unwrap_or(b' ');
            }
        }
    };
    text(&mut v, 8, 32, "LINUX");
    let label = if ns == 1 {
        label.chars().take(16).collect::<String>()
    } else {
        label.to_string()
    };
    text(&mut v, 40, 32, &label);
    v[80..88].copy_from_slice(&both32(l.total));
    if ns == 1 {
        // Joliet UCS-2 level 3.
        v[88..91].copy_from_slice(b"%/E");
    }
    v[120..124].copy_from_slice(&both16(1));
    v[124..128].copy_from_slice(&both16(1));
    v[128..132].copy_from_slice(&both16(SECTOR as u16));
    v[132..140].copy_from_slice(&both32(l.pt_size[ns]));
    v[140..144].copy_from_slice(&l.pt_loc[ns][0].to_le_bytes());
    v[148..152].copy_from_slice(&l.pt_loc[ns][1].to_be_bytes());
    let root = record(&[0], l.extent[ns][0], l.size[ns][0], true, epoch, &[]);
    v[156..156 + 34].copy_from_slice(&root[..34]);
    for (at, len) in [(190, 128), (318, 128), (446, 128)] {
        text(&mut v, at, len, "");
    }
    text(&mut v, 574, 128, "PRIMER MAKE-DRIVE");
    for at in [702, 739, 776] {
        text(&mut v, at, 37, "");
    }
    v[813..830].copy_from_slice(&date17(epoch));
    v[830..847].copy_from_slice(&date17(epoch));
    v[847..863].copy_from_slice(b"0000000000000000");
    v[864..880].copy_from_slice(b"0000000000000000");
    v[881] = 1;
    v
}

fn path_table(l: &Layout, ns: usize, big: bool) -> Vec<u8> {
    let mut number = vec![0u16; l.dirs.len()];
    for (i, &d) in l.order[ns].iter().enumerate() {
        number[d] = (i + 1) as u16;
    }
    let mut t = Vec::new();
    for &d in &l.order[ns] {
        let id: &[u8] = if d == 0 { &[0] } else { l.id_of(ns, d) };
        let parent = number[l.dirs[d].parent].max(1);
        t.push(id.len() as u8);
        t.push(0);
        let ext = l.extent[ns][d];
        t.extend_from_slice(&if big {
            ext.to_be_bytes()
        } else {
            ext.to_le_bytes()
        });
        t.extend_from_slice(&if big {
            parent.to_be_bytes()
        } else {
            parent.to_le_bytes()
        });
        t.extend_from_slice(id);
        if id.len() % 2 == 1 {
            t.push(0);
        }
    }
    t
}

fn record(id: &[u8], extent: u32, size: u32, dir: bool, epoch: i64, su: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(extent));
    r[10..18].copy_from_slice(&both32(size));
    r[18..25].copy_from_slice(&date7(epoch));
    r[25] = if dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = id.len() as u8;
    r.extend_from_slice(id);
    if id.len() % 2 == 0 {
        r.push(0);
    }
    r.extend_from_slice(su);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

/// Where a record's Rock Ridge name is.
#[derive(Debug, Clone, Copy)]
enum Nm<'a> {
    /// `.` and `..`: no name.
    None,
    /// An `NM` entry in the record.
    Inline(&'a str),
    /// A `CE` entry pointing at the `NM` entries: (block, offset, length).
    Continued(u32, u32, u32),
}

/// A `CE` entry (SUSP §5.1): block, offset and length of the continuation area, both-endian.
fn ce_entry(block: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut s = vec![b'C', b'E', CE_LEN as u8, 1];
    s.extend_from_slice(&both32(block));
    s.extend_from_slice(&both32(offset));
    s.extend_from_slice(&both32(len));
    s
}

/// Rock Ridge entries: RR, PX, TF, then NM (or the CE to it) for a named entry; SP and the CE
/// to the ER entry first for the root's `.`.
fn rock_ridge(mode: u32, nlink: u32, epoch: i64, nm: Nm, root_dot: bool, ce: u32) -> Vec<u8> {
    let mut s = Vec::new();
    if root_dot {
        s.extend_from_slice(&[b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
        s.extend_from_slice(&ce_entry(ce, 0, er_entry().len() as u32));
    }
    // RR (RRIP 1.09): which entries follow: PX (1), NM (8), TF (0x80). Linux reads no name
    // unless NM is flagged here, wherever the NM entry is.
    let has_nm = !matches!(nm, Nm::None);
    s.extend_from_slice(&[b'R', b'R', 5, 1, 0x81 | if has_nm { 8 } else { 0 }]);
    s.extend_from_slice(&[b'P', b'X', 36, 1]);
    s.extend_from_slice(&both32(mode));
    s.extend_from_slice(&both32(nlink));
    s.extend_from_slice(&both32(0));
    s.extend_from_slice(&both32(0));
    // TF: modify, access, attributes.
    s.extend_from_slice(&[b'T', b'F', 26, 1, 0x0E]);
    for _ in 0..3 {
        s.extend_from_slice(&date7(epoch));
    }
    match nm {
        Nm::None => {}
        Nm::Inline(n) => {
            s.extend_from_slice(&[b'N', b'M', (5 + n.len()) as u8, 1, 0]);
            s.extend_from_slice(n.as_bytes());
        }
        Nm::Continued(block, offset, len) => s.extend_from_slice(&ce_entry(block, offset, len)),
    }
    s
}

fn dir_bytes(l: &Layout, ns: usize, d: usize, epoch: i64) -> Vec<u8> {
    let nlink = |d: usize| 2 + l.dirs[d].dirs.len() as u32;
    let rr = |mode, n, nm: Nm, root_dot| {
        if ns == 0 {
            rock_ridge(mode, n, epoch, nm, root_dot, l.ce_loc)
        } else {
            Vec::new()
        }
    };
    let parent = l.dirs[d].parent;
    let mut recs = vec![
        record(
            &[0],
            l.extent[ns][d],
            l.size[ns][d],
            true,
            epoch,
            &rr(MODE_DIR, nlink(d), Nm::None, d == 0),
        ),
        record(
            &[1],
            l.extent[ns][parent],
            l.size[ns][parent],
            true,
            epoch,
            &rr(MODE_DIR, nlink(parent), Nm::None, false),
        ),
    ];
    for (k, e) in l.entries[ns][d].iter().enumerate() {
        let nm = match l.long_names.get(&(d, k)) {
            Some(&(block, offset, len)) if ns == 0 => Nm::Continued(block, offset, len),
            _ => Nm::Inline(l.name_of(e)),
        };
        recs.push(match (e.dir, e.file) {
            (Some(c), _) => record(
                &e.id,
                l.extent[ns][c],
                l.size[ns][c],
                true,
                epoch,
                &rr(MODE_DIR, nlink(c), nm, false),
            ),
            (_, Some(f)) => record(
                &e.id,
                l.files[f].extent,
                l.files[f].size as u32,
                false,
                epoch,
                &rr(MODE_FILE, 1, nm, false),
            ),
            _ => continue,
        });
    }
    let mut out = Vec::with_capacity(l.size[ns][d] as usize);
    let mut used = 0usize;
    for r in recs {
        if used + r.len() > SECTOR as usize {
            out.resize(out.len() + SECTOR as usize - used, 0);
            used = 0;
        }
        used += r.len();
        out.extend_from_slice(&r);
    }
    out.resize(l.size[ns][d] as usize, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_novas_genisoimage_flags() {
        assert_eq!(iso_name("meta_data.json", false), "meta_data.json;1");
        assert_eq!(iso_name("user_data", false), "user_data.;1");
        assert_eq!(iso_name("meta-data", false), "meta_data.;1");
        assert_eq!(iso_name("a.b.c.d.txt", false), "a.b.c.d.txt;1");
        assert_eq!(
            iso_name(
                "averyveryveryverylongfilenamethatexceeds31chars.json",
                false
            ),
            "averyveryveryverylongfilen.json;1"
        );
        assert_eq!(iso_name("2012-08-10", true), "2012_08_10");
    }

    #[test]
    fn dates_are_utc_civil_time() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(&date17(1_700_000_000)[..16], b"2023111422132000");
    }

    #[test]
    fn colliding_names_get_counters() {
        let mut t = std::collections::BTreeSet::new();
        let a = unique(iso_name("meta-data", false), &mut t, false);
        let b = unique(iso_name("meta_data", false), &mut t, false);
        assert_eq!(a, "meta_data.;1");
        assert_ne!(a, b);
        assert!(b.ends_with(".;1") && b.len() <= 33, "{b}");
    }

    #[test]
    fn long_names_continue_in_nm_entries_of_250_bytes() {
        let name = "x".repeat(255);
        let e = nm_entries(&name);
        assert_eq!(e.len(), 255 + 10);
        assert_eq!(&e[..5], &[b'N', b'M', 255, 1, 1]);
        assert_eq!(&e[255..260], &[b'N', b'M', 10, 1, 0]);
        assert!(nm_inline(33, 100));
        assert!(!nm_inline(33, 200));
        assert!(!nm_inline(1, 251));
    }

    #[test]
    fn joliet_names_are_cut_to_64_and_kept_unique() {
        let mut taken = std::collections::BTreeSet::new();
        let a = joliet_id(&format!("{}a", "x".repeat(80)), &mut taken);
        let b = joliet_id(&format!("{}b", "x".repeat(80)), &mut taken);
        assert_eq!(a.len(), 128);
        assert_eq!(b.len(), 128);
        assert_ne!(a, b);
        assert!(b.ends_with(&utf16be("0000")));
        // A surrogate pair across the cut is dropped whole.
        let c = joliet_id(&format!("{}\u{1F600}z", "y".repeat(63)), &mut taken);
        assert_eq!(c, utf16be(&"y".repeat(63)));
    }
}
