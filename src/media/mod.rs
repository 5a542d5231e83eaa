//! Media: user-space readers that turn a device, an image file or a directory into `DriveFiles`
//! (relative path -> bytes, bounded). Read-only: nothing here writes, mounts or follows a
//! symlink, and no name read from a drive can address anything outside the drive tree.

pub mod aligned;
pub mod dir;
pub mod fat;
mod index;
pub mod iso9660;
#[cfg(target_os = "linux")]
pub mod mount;
#[cfg(not(target_os = "linux"))]
#[path = "mount_unsupported.rs"]
pub mod mount;
pub mod packed;
pub mod part;
pub mod pread;

use std::collections::BTreeMap;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Files larger than this are not read into memory: they stay on the device as their extents
/// and are streamed (hashed once here, re-checked when written). 1 MiB: every metadata document
/// a parser reads whole is far smaller (meta_data.json, network_data.json, vendor data of real
/// drives are kilobytes), so only user-data scripts and injected files of real size stream,
/// and a held file never costs more than the 8 MiB memory goal allows.
pub const STREAM_THRESHOLD: u64 = 1 << 20;

/// A reader the walks take as `&mut dyn ReadSeek`: one copy of each walk whatever the
/// reader's type (each generic copy cost kilobytes of the static binary, issue 15's 4 MiB).
pub(crate) trait ReadSeek: Read + Seek {}

impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// The device a drive was read from, shared by the files left on it ([`crate::model::Bytes`]
/// on the device): each read seeks and reads under a lock.
pub(crate) struct SharedDevice<R>(std::sync::Mutex<R>);

impl<R> SharedDevice<R> {
    pub(crate) fn new(reader: R) -> Self {
        SharedDevice(std::sync::Mutex::new(reader))
    }
}

impl<R: Read + Seek + Send> crate::model::bytes::ReadAt for SharedDevice<R> {
    fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut r = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("device reader poisoned"))?;
        r.seek(SeekFrom::Start(at))?;
        r.read_exact(buf)
    }
}

/// Bounds applied while reading untrusted media, so a hostile image cannot exhaust memory or loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file read into memory.
    pub max_file_size: u64,
    /// Sum of all file sizes read from one drive.
    pub max_total_bytes: u64,
    /// Deepest directory nesting below the drive root (root = depth 0).
    pub max_depth: usize,
    /// Most directory entries (files, directories, symlinks) over the whole drive.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // Ironic allows 64 MiB drives and CloudStack caps its ISO at 64 MiB; user data can be that
        // large, so a single file may be too. The totals leave room for both with margin.
        Limits {
            max_file_size: 64 << 20,
            max_total_bytes: 128 << 20,
            max_depth: 16,
            max_entries: 10_000,
        }
    }
}

/// Which limit a drive exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LimitKind {
    FileSize,
    TotalBytes,
    Depth,
    Entries,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::FileSize => "file size",
            LimitKind::TotalBytes => "total bytes",
            LimitKind::Depth => "directory depth",
            LimitKind::Entries => "entry count",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{device}: cannot read: {source}")]
    Io {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{device}: not an ISO9660 filesystem (no CD001 volume descriptor at sector 16)")]
    NotIso9660 { device: String },
    #[error(
        "{device}: unsupported source type (expected a block device, an image file or a directory)"
    )]
    Unsupported { device: String },
    #[error(
        "{device}: {}: {kind} limit exceeded ({value} > {limit})",
        shown_path(path)
    )]
    Limit {
        device: String,
        path: String,
        kind: LimitKind,
        value: u64,
        limit: u64,
    },
    #[error("{device}: {}: corrupt filesystem: {detail}", shown_path(path))]
    Corrupt {
        device: String,
        path: String,
        detail: String,
    },
    #[error("{device}: no ISO9660 or FAT filesystem, and no partition table holding one")]
    Unrecognised { device: String },
    #[error("{device}: partition table holds no config partition ({detail})")]
    NoConfigPartition { device: String, detail: String },
    #[error("{device}: {detail}")]
    Refused { device: String, detail: String },
    #[error("{device}: mount mode: {detail}")]
    Mount { device: String, detail: String },
}

/// A drive path in a message: `/` for the root directory (never an empty path), else the path
/// escaped and capped by `grammar::Esc`, so a name holding a newline cannot forge a log line.
pub fn shown_path(path: &str) -> String {
    if path.is_empty() || path == "/" {
        "/".to_string()
    } else {
        crate::model::grammar::Esc(path).to_string()
    }
}

/// A name on the drive that could not be used as a path component, reported, never used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The parent directory (relative, `/`-separated) and the name, lossily decoded, in the
    /// escaped and capped form of [`shown_path`]: a skipped name is only ever shown, and every
    /// log line, JSON document and status record that shows it gets the safe form.
    pub path: String,
    pub reason: String,
}

impl Skipped {
    /// A skipped entry for the raw `path` (escaped here, once for every consumer).
    pub fn new(path: &str, reason: impl Into<String>) -> Skipped {
        Skipped {
            path: shown_path(path),
            reason: reason.into(),
        }
    }
}

/// The files of one drive, read fully into memory (bounded by `Limits`).
///
/// Paths are relative, `/`-separated, as the drive names them (Rock Ridge or Joliet names when
/// present, else the plain ISO9660 name without its `;N` version). Lookups through [`get`] are
/// case-insensitive, ignore `;N` suffixes and also match 8.3-mangled level-1 names.
///
/// [`get`]: DriveFiles::get
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriveFiles {
    /// Where it came from, e.g. `/dev/loop3` or `images/sample/config-2.iso`.
    pub device: String,
    /// `iso9660`, `vfat` or `dir` (mount mode: the mounted filesystem type).
    pub fstype: String,
    /// Volume label (ISO9660 primary volume identifier; FAT root label entry, else the boot
    /// sector's), trailing spaces removed.
    pub label: Option<String>,
    /// Regular files: path -> content.
    #[serde(skip)]
    pub files: BTreeMap<String, crate::model::Bytes>,
    /// Symbolic links: path -> target. Reported, never followed.
    pub symlinks: BTreeMap<String, String>,
    /// Entries that were not usable (unsafe names) with the reason.
    pub skipped: Vec<Skipped>,
    /// Lookup index over `files`, built on the first lookup (see [`index`]).
    #[serde(skip)]
    index: index::Cache,
}

/// Checks one path component read from a drive. `None` when it can be used, else why not.
pub fn unsafe_component(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == "." || name == ".." {
        Some("name is . or ..")
    } else if name.contains('/') || name.contains('\\') {
        Some("name contains a path separator")
    } else if name.chars().any(|c| c.is_control()) {
        Some("name contains a control character")
    } else if name.len() > 255 {
        Some("name longer than 255 bytes")
    } else {
        None
    }
}

/// Strips an ISO9660 `;N` version suffix and the lone trailing dot of an extension-less
/// level-1 name (`USER_DATA.;1` -> `USER_DATA`).
pub fn strip_version(name: &str) -> &str {
    let base = match name.rfind(';') {
        Some(i) if i > 0 && name[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &name[..i],
        _ => name,
    };
    match base.strip_suffix('.') {
        Some(b) if !b.is_empty() && !b.contains('.') => b,
        _ => base,
    }
}

/// The ISO9660 level-1 (8.3, d-characters) form a producer gives `name`: upper case, characters
/// outside `A-Z0-9_` replaced by `_`, base cut to 8, extension to 3 (directories: 8, no dot).
pub(crate) fn level1_name(name: &str, is_dir: bool) -> String {
    fn dchars(s: &str, max: usize) -> String {
        s.chars()
            .map(|c| {
                let c = c.to_ascii_uppercase();
                if c.is_ascii_uppercase() || c.is_ascii_digit() {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect()
    }
    if is_dir {
        return dchars(&name.replace('.', "_"), 8);
    }
    match name.rfind('.') {
        Some(i) if i > 0 => {
            let base = name[..i].replace('.', "_");
            format!("{}.{}", dchars(&base, 8), dchars(&name[i + 1..], 3))
        }
        _ => dchars(name, 8),
    }
}

/// Whether a stored name matches a wanted name: case-insensitively, ignoring `;N`, or as the
/// 8.3 level-1 mangling of the wanted name.
pub(crate) fn name_matches(stored: &str, wanted: &str, is_dir: bool) -> bool {
    let stored = strip_version(stored);
    stored.eq_ignore_ascii_case(wanted) || stored.eq_ignore_ascii_case(&level1_name(wanted, is_dir))
}

impl DriveFiles {
    pub fn new(device: impl Into<String>, fstype: impl Into<String>) -> Self {
        DriveFiles {
            device: device.into(),
            fstype: fstype.into(),
            ..Default::default()
        }
    }

    /// Total bytes of all regular files.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|v| v.len() as u64).sum()
    }

    /// [`get`](DriveFiles::get) as the shared buffer: its length, digest and head without
    /// reading a file kept on the device.
    pub fn file(&self, path: &str) -> Option<&crate::model::Bytes> {
        if let Some(v) = self.files.get(path) {
            return Some(v);
        }
        self.resolve(path).and_then(|p| self.files.get(p))
    }

    /// Finds a file by its logical path (`openstack/latest/meta_data.json`). Exact match first;
    /// then component by component case-insensitively, ignoring `;N`, accepting level-1 names.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        if let Some(v) = self.files.get(path) {
            return Some(v);
        }
        self.resolve(path)
            .and_then(|p| self.files.get(p).map(|v| v.as_slice()))
    }

    /// The stored path that `get` would return for a logical path: resolved one component at
    /// a time, each to the best-matching name in its directory (exact, else case-insensitive,
    /// else the 8.3 level-1 mangling; ties to the first stored name), the way a case-insensitive
    /// filesystem resolves a path. Uses an index built once per drive: O(components × log n).
    pub fn resolve(&self, path: &str) -> Option<&str> {
        let wanted: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let index = self.index.get(&self.files);
        let stored = index.resolve(&wanted)?;
        // The index is rebuilt when `files` changed; look the key up again all the same, so a
        // stale index can only miss, never hand out a path that is not there.
        self.files.get_key_value(stored).map(|(k, _)| k.as_str())
    }

    /// Names of the immediate subdirectories of `dir` (logical, `;N` stripped), sorted: those
    /// of the directory `dir` resolves to (as [`resolve`](DriveFiles::resolve) resolves it).
    pub fn subdirs(&self, dir: &str) -> Vec<String> {
        let want: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
        let mut out = self.index.get(&self.files).subdirs(&want);
        crate::sort::sort(&mut out);
        out.dedup();
        out
    }
}

/// What a `--source` path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    BlockDevice,
    ImageFile,
    Directory,
}

pub fn source_kind(path: &Path) -> Result<SourceKind, MediaError> {
    // Windows has no block-device file type: the device namespace (`\\.\D:`,
    // `\\.\PhysicalDrive1`) is what names a raw device there.
    #[cfg(windows)]
    if path
        .to_str()
        .is_some_and(|s| s.starts_with(r"\\.\") || s.starts_with(r"\\?\GLOBALROOT\"))
    {
        return Ok(SourceKind::BlockDevice);
    }
    let meta = std::fs::metadata(path).map_err(|e| MediaError::Io {
        device: path.display().to_string(),
        source: e,
    })?;
    let ft = meta.file_type();
    if ft.is_dir() {
        Ok(SourceKind::Directory)
    } else if is_block_device(&ft) {
        Ok(SourceKind::BlockDevice)
    } else if ft.is_file() {
        Ok(SourceKind::ImageFile)
    } else {
        Err(MediaError::Unsupported {
            device: path.display().to_string(),
        })
    }
}

#[cfg(unix)]
fn is_block_device(ft: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_block_device()
}

/// Raw devices are recognised by their path on Windows (`source_kind`).
#[cfg(not(unix))]
fn is_block_device(_ft: &std::fs::FileType) -> bool {
    false
}

/// Reads whatever filesystem `reader` holds from its start: ISO9660 or FAT.
pub fn read_fs<R: Read + Seek>(
    reader: R,
    device: &str,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    read_fs_with(reader, device, limits, iso9660::read_iso9660, fat::read_fat)
}

/// [`read_fs`] for a reader the drive can keep: large ISO9660 and FAT files stay on the device
/// ([`iso9660::read_iso9660_shared`], [`fat::read_fat_shared`]).
pub fn read_fs_shared<R: Read + Seek + Send + 'static>(
    reader: R,
    device: &str,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    read_fs_with(
        reader,
        device,
        limits,
        iso9660::read_iso9660_shared,
        fat::read_fat_shared,
    )
}

/// A filesystem reader: ISO9660 or FAT, holding every file or leaving large ones on the device.
type FsReader<R> = fn(R, &str, &Limits) -> Result<DriveFiles, MediaError>;

fn read_fs_with<R: Read + Seek>(
    mut reader: R,
    device: &str,
    limits: &Limits,
    iso: FsReader<R>,
    fat: FsReader<R>,
) -> Result<DriveFiles, MediaError> {
    let io = |e| MediaError::Io {
        device: device.to_string(),
        source: e,
    };
    // One read for both questions: the boot sector (first 512 bytes) and the ISO9660 primary
    // volume descriptor (2 KiB at 32 KiB). Each read of a device is a request to its driver.
    let mut first = vec![0u8; iso9660::PVD_END];
    let got = read_at(&mut reader, 0, &mut first).map_err(io)?;
    first.truncate(got);
    let n = got.min(512);
    let head = &first[..n];
    let is_iso = iso9660::is_primary_at_32k(&first);
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    if is_iso {
        iso(reader, device, limits)
    } else if n == 512 && (fat::is_fat_boot_sector(head) || fat::looks_like_fat(head)) {
        // A damaged FAT boot sector still names its filesystem: fatfs says what is wrong,
        // rather than the ISO9660 reader saying it is not ISO9660.
        fat(reader, device, limits)
    } else if n == 512 && part::looks_like_table(head) {
        Err(MediaError::Unrecognised {
            device: device.to_string(),
        })
    } else {
        // Neither: keep the ISO9660 reader's precise error (most drives are ISO9660).
        iso(reader, device, limits)
    }
}

/// Reads until `buf` is full or the end: the number of bytes read.
fn read_up_to<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads up to `buf.len()` bytes at `at`; a short device gives a short read, not an error.
/// The one positioned-read helper of the probe and the partition-table reader.
pub(crate) fn read_at<R: std::io::Read + std::io::Seek + ?Sized>(
    r: &mut R,
    at: u64,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    r.seek(std::io::SeekFrom::Start(at))?;
    read_up_to(r, buf)
}

/// A device node path under a (possibly redirected) `/dev`.
pub fn dev_path(dev_root: &Path, name: &str) -> PathBuf {
    dev_root.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(paths: &[&str]) -> DriveFiles {
        let mut d = DriveFiles::new("test", "dir");
        for p in paths {
            d.files.insert(p.to_string(), p.as_bytes().to_vec().into());
        }
        d
    }

    #[test]
    fn strip_version_cases() {
        assert_eq!(strip_version("META_DAT.JSO;1"), "META_DAT.JSO");
        assert_eq!(strip_version("USER_DATA.;1"), "USER_DATA");
        assert_eq!(strip_version("USER_DATA."), "USER_DATA");
        assert_eq!(strip_version("a;b"), "a;b");
        assert_eq!(strip_version("meta_data.json"), "meta_data.json");
    }

    #[test]
    fn lookup_exact_case_insensitive_and_level1() {
        let d = drive(&["openstack/latest/meta_data.json"]);
        assert!(d.get("openstack/latest/meta_data.json").is_some());
        let d = drive(&["OPENSTACK/LATEST/META_DATA.JSON;1"]);
        assert!(d.get("openstack/latest/meta_data.json").is_some());
        let d = drive(&[
            "OPENSTAC/LATEST/META_DAT.JSO;1",
            "OPENSTAC/LATEST/USER_DAT.;1",
        ]);
        assert_eq!(
            d.resolve("openstack/latest/meta_data.json"),
            Some("OPENSTAC/LATEST/META_DAT.JSO;1")
        );
        assert!(d.get("openstack/latest/user_data").is_some());
        assert!(d.get("openstack/latest/vendor_data.json").is_none());
    }

    #[test]
    fn exact_beats_mangled() {
        let d = drive(&[
            "openstack/latest/META_DAT.JSO",
            "openstack/latest/meta_data.json",
        ]);
        assert_eq!(
            d.resolve("openstack/latest/meta_data.json"),
            Some("openstack/latest/meta_data.json")
        );
    }

    #[test]
    fn index_follows_changes_to_files() {
        let mut d = drive(&["openstack/latest/meta_data.json"]);
        assert!(d.get("OPENSTACK/LATEST/META_DATA.JSON").is_some());
        assert!(d.get("openstack/content/0000").is_none());
        d.files
            .insert("openstack/CONTENT/0000;1".into(), b"x".to_vec().into());
        assert_eq!(
            d.resolve("openstack/content/0000"),
            Some("openstack/CONTENT/0000;1"),
            "a file added after the first lookup is found"
        );
        d.files.remove("openstack/latest/meta_data.json");
        assert!(d.get("openstack/latest/meta_data.json").is_none());
        let c = d.clone();
        assert_eq!(c, d, "the index is not part of the value");
    }

    #[test]
    fn each_component_resolves_to_its_best_match() {
        // Exact beats case-insensitive beats level-1, per directory.
        let d = drive(&[
            "OPENSTAC/LATEST/META_DAT.JSO;1",
            "OPENSTACK/latest/meta_data.json",
            "openstack/LATEST/meta_data.json",
        ]);
        assert_eq!(
            d.resolve("openstack/latest/meta_data.json"),
            Some("openstack/LATEST/meta_data.json")
        );
        assert_eq!(d.subdirs("openstack"), vec!["LATEST"]);
        assert_eq!(d.subdirs(""), vec!["OPENSTAC", "OPENSTACK", "openstack"]);
        assert!(d.resolve("").is_none());
        assert!(
            d.resolve("openstack/latest").is_none(),
            "a directory is no file"
        );
    }

    #[test]
    fn lookups_are_indexed() {
        // 10,000 paths and as many case-insensitive lookups: instant with the index, minutes
        // with a scan per lookup (debug build).
        let paths: Vec<String> = (0..10_000)
            .map(|i| format!("openstack/content/{i:05}"))
            .collect();
        let d = drive(&paths.iter().map(String::as_str).collect::<Vec<_>>());
        let t = std::time::Instant::now();
        for i in 0..10_000 {
            assert!(d.get(&format!("OPENSTACK/CONTENT/{i:05}")).is_some());
        }
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    }

    #[test]
    fn subdirs_listing() {
        let d = drive(&[
            "openstack/2012-08-10/meta_data.json",
            "openstack/latest/meta_data.json",
            "openstack/content/0000",
            "ec2/latest/meta-data.json",
        ]);
        assert_eq!(
            d.subdirs("openstack"),
            vec!["2012-08-10", "content", "latest"]
        );
    }

    #[test]
    fn unsafe_names() {
        assert!(unsafe_component("..").is_some());
        assert!(unsafe_component("a/b").is_some());
        assert!(unsafe_component("a\nb").is_some());
        assert!(unsafe_component("").is_some());
        assert!(unsafe_component("meta_data.json").is_none());
    }
}
