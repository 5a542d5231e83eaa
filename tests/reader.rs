//! ISO9660 reader against real images (genisoimage with nova's flags, xorriso, plain level 1,
//! Joliet only), hand-patched hostile images and seeded mutations. Needs `genisoimage` and
//! `xorriso` on PATH: a missing tool fails the test, it never skips.
//!
//! These images are cross-checks: they prove the reader against other producers, so they
//! stay on genisoimage/xorriso (tests that only need *a* drive use `common::make_drive`).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::{make_iso, IsoTool};
use primer::media::iso9660::{read_iso9660, read_iso9660_label};
use primer::media::{DriveFiles, LimitKind, Limits, MediaError};

const DEVICE: &str = "test-drive.iso";
const SECTOR: usize = 2048;
const BIG: &str = "openstack/content/0001";
const LINK: &str = "openstack/link";
const LINK_TARGET: &str = "latest/meta_data.json";

/// Tiny xorshift PRNG: deterministic data and mutations without extra dependencies.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// A drive tree on disk and the files it holds (relative path -> bytes).
struct Source {
    dir: tempfile::TempDir,
    files: BTreeMap<String, Vec<u8>>,
}

impl Source {
    fn root(&self) -> PathBuf {
        self.dir.path().join("drive")
    }

    fn add(&mut self, path: &str, data: &[u8]) {
        let full = self.root().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, data).unwrap();
        self.files.insert(path.to_string(), data.to_vec());
    }

    fn remove(&mut self, path: &str) {
        std::fs::remove_file(self.root().join(path)).unwrap();
        self.files.remove(path);
    }
}

/// The config-drive tree every image is built from: metadata in two versions, user data without
/// an extension, injected content, a 200 KiB file of non-repeating bytes, a directory six levels
/// deep (the most plain ISO 9660 keeps), a name with lower case and several dots, and a symlink.
fn source() -> Source {
    let mut s = Source {
        dir: tempfile::tempdir().unwrap(),
        files: BTreeMap::new(),
    };
    std::fs::create_dir(s.root()).unwrap();
    s.add(
        "openstack/latest/meta_data.json",
        br#"{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "test.novalocal"}"#,
    );
    s.add(
        "openstack/2012-08-10/meta_data.json",
        br#"{"uuid": "83679162"}"#,
    );
    s.add(
        "openstack/latest/user_data",
        b"#cloud-config\nruncmd: [true]\n",
    );
    s.add("openstack/content/0000", b"injected file\n");
    s.add(BIG, &noise(0x5eed, 200 * 1024));
    s.add("openstack/deep/a/b/c/d/leaf.txt", b"six levels down\n");
    s.add("openstack/Lower.Case.multi.dots.txt", b"dots\n");
    std::os::unix::fs::symlink(LINK_TARGET, s.root().join(LINK)).unwrap();
    s
}

static IMAGES: AtomicUsize = AtomicUsize::new(0);

/// Builds an image of the source tree with `tool` and returns its bytes.
fn build(src: &Source, tool: IsoTool) -> Vec<u8> {
    let n = IMAGES.fetch_add(1, Ordering::Relaxed);
    let out = src.dir.path().join(format!("image-{n}.iso"));
    make_iso(&src.root(), &out, tool);
    std::fs::read(&out).unwrap()
}

fn nova(src: &Source) -> Vec<u8> {
    build(src, IsoTool::Nova)
}

fn xorriso(src: &Source) -> Vec<u8> {
    build(src, IsoTool::Xorriso)
}

fn level1(src: &Source) -> Vec<u8> {
    build(src, IsoTool::Level1)
}

fn joliet(src: &Source) -> Vec<u8> {
    build(src, IsoTool::Joliet)
}

/// Runs `f` on another thread; fails if it panics or takes more than `secs` seconds.
fn guarded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {secs} s (hang?)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the reader panicked"),
    }
}

fn read_with(image: Vec<u8>, limits: Limits) -> Result<DriveFiles, MediaError> {
    guarded(10, move || {
        read_iso9660(Cursor::new(image), DEVICE, &limits)
    })
}

fn read(image: Vec<u8>) -> DriveFiles {
    read_with(image, Limits::default()).unwrap_or_else(|e| panic!("read failed: {e}"))
}

fn label(image: &[u8]) -> Option<String> {
    read_iso9660_label(&mut Cursor::new(image)).unwrap()
}

/// Every source file is on the drive byte for byte, and nothing else is. `by_lookup` checks through
/// `DriveFiles::get` (level 1 names are mangled), else the stored paths must be exact.
fn assert_files(drive: &DriveFiles, expected: &BTreeMap<String, Vec<u8>>, by_lookup: bool) {
    for (path, want) in expected {
        let got = if by_lookup {
            drive.get(path)
        } else {
            drive.files.get(path).map(|b| b.as_slice())
        };
        let got =
            got.unwrap_or_else(|| panic!("{path} missing; drive has {:?}", drive.files.keys()));
        assert!(
            got == want.as_slice(),
            "{path}: {} bytes read, {} expected, contents differ",
            got.len(),
            want.len()
        );
    }
    assert_eq!(
        drive.files.len(),
        expected.len(),
        "unexpected files: {:?}",
        drive.files.keys().collect::<Vec<_>>()
    );
    assert!(drive.skipped.is_empty(), "skipped: {:?}", drive.skipped);
    assert_eq!(drive.fstype, "iso9660");
    assert_eq!(drive.device, DEVICE);
}

fn assert_rock_ridge_link(drive: &DriveFiles) {
    assert_eq!(
        drive.symlinks.get(LINK).map(String::as_str),
        Some(LINK_TARGET)
    );
    assert!(!drive.files.contains_key(LINK));
}

fn assert_big_exact(drive: &DriveFiles, src: &Source) {
    let big = drive.get(BIG).expect("big file");
    assert_eq!(big.len(), 200 * 1024);
    assert!(big == src.files[BIG].as_slice(), "the 200 KiB file differs");
}

#[test]
fn nova_style_and_xorriso_images() {
    let src = source();
    for image in [nova(&src), xorriso(&src)] {
        assert_eq!(label(&image).as_deref(), Some("config-2"));
        let drive = read(image);
        assert_eq!(drive.label.as_deref(), Some("config-2"));
        assert_files(&drive, &src.files, false);
        assert_rock_ridge_link(&drive);
        assert_big_exact(&drive, &src);
    }
}

#[test]
fn plain_level1_image() {
    let src = source();
    let image = level1(&src);
    assert_eq!(label(&image).as_deref(), Some("CONFIG-2"));
    let drive = read(image);
    assert_eq!(drive.label.as_deref(), Some("CONFIG-2"));
    // Upper case 8.3 names as on disk, without `;1` or the dot of an empty extension.
    assert!(
        drive.files.contains_key("OPENSTAC/LATEST/USER_DAT"),
        "{:?}",
        drive.files.keys()
    );
    assert!(drive.files.contains_key("OPENSTAC/LATEST/META_DAT.JSO"));
    assert!(drive.get("openstack/latest/meta_data.json").is_some());
    assert!(drive.get("openstack/latest/user_data").is_some());
    assert_files(&drive, &src.files, true);
    assert!(drive.symlinks.is_empty(), "no Rock Ridge, no symlinks");
    assert_big_exact(&drive, &src);
}

#[test]
fn joliet_only_image() {
    let src = source();
    let image = joliet(&src);
    assert_eq!(label(&image).as_deref(), Some("config-2"));
    let drive = read(image);
    assert_eq!(drive.label.as_deref(), Some("config-2"));
    assert_files(&drive, &src.files, false);
    assert!(drive.symlinks.is_empty(), "no Rock Ridge, no symlinks");
    assert_big_exact(&drive, &src);
}

#[test]
fn rock_ridge_relocated_deep_directories() {
    let mut src = source();
    let deep = "openstack/r/1/2/3/4/5/6/7/8/9/deep.txt";
    src.add(deep, b"eleven levels down\n");
    for image in [nova(&src), xorriso(&src)] {
        let drive = read(image);
        assert_files(&drive, &src.files, false);
        assert_rock_ridge_link(&drive);
    }
}

#[test]
fn label_of_other_data() {
    assert_eq!(label(&[]), None);
    assert_eq!(label(&vec![0u8; 64 * 1024]), None);
    assert_eq!(label(&noise(7, 40 * 1024)), None);
    let err = read_with(noise(7, 40 * 1024), Limits::default()).unwrap_err();
    assert!(matches!(err, MediaError::NotIso9660 { .. }), "{err}");
    assert!(err.to_string().contains(DEVICE));
}

// ---- locating and patching structures -------------------------------------------------------

fn get32(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(image[at..at + 4].try_into().unwrap())
}

/// Writes a both-endian 32-bit field (little-endian then big-endian).
fn set_both32(image: &mut [u8], at: usize, value: u32) {
    image[at..at + 4].copy_from_slice(&value.to_le_bytes());
    image[at + 4..at + 8].copy_from_slice(&value.to_be_bytes());
}

/// Byte offset of the one directory record (primary tree) whose identifier, without `;N` and a
/// trailing dot, is `name`.
fn find_record(image: &[u8], name: &[u8]) -> usize {
    let mut found = Vec::new();
    for rec in 0..image.len().saturating_sub(34) {
        let len = image[rec] as usize;
        let id_len = image[rec + 32] as usize;
        if len < 33 + id_len || id_len < name.len() || rec % SECTOR + len > SECTOR {
            continue;
        }
        let id = &image[rec + 33..rec + 33 + id_len];
        let id = match id.iter().rposition(|&b| b == b';') {
            Some(i) => &id[..i],
            None => id,
        };
        let id = id.strip_suffix(b".").unwrap_or(id);
        if id == name {
            found.push(rec);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "records named {:?}",
        String::from_utf8_lossy(name)
    );
    found[0]
}

fn extent_of(image: &[u8], rec: usize) -> usize {
    get32(image, rec + 2) as usize
}

fn root_extent(image: &[u8]) -> u32 {
    get32(image, 16 * SECTOR + 156 + 2)
}

/// Checks the variant with `check`, and that the message names the device and `path`.
fn assert_error(
    result: Result<DriveFiles, MediaError>,
    path: &str,
    check: impl Fn(&MediaError) -> bool,
) {
    let err = match result {
        Ok(d) => panic!("expected an error naming {path}, read {:?}", d.files.keys()),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(check(&err), "unexpected error: {text}");
    assert!(text.contains(DEVICE), "{text}");
    assert!(text.contains(path), "{text} should name {path}");
}

fn is_corrupt(e: &MediaError) -> bool {
    matches!(e, MediaError::Corrupt { .. })
}

// ---- multi-extent ------------------------------------------------------------------------------

/// Turns `multi.bin` into a two-extent file: its first 4 KiB, then the data of `multj.bin`, whose
/// record (next in the directory, same record length) is renamed to continue it.
fn patch_multi_extent(image: &mut [u8], multi: &[u8], multj: &[u8]) {
    let first = find_record(image, multi);
    let second = find_record(image, multj);
    assert_eq!(
        second,
        first + image[first] as usize,
        "records must be adjacent"
    );
    assert_eq!(image[first], image[second]);
    set_both32(image, first + 10, 4096);
    image[first + 25] |= 0x80;
    let name = second + 33;
    image[name..name + multi.len()].copy_from_slice(multi);
}

#[test]
fn multi_extent_file() {
    let mut src = source();
    let a = noise(11, 10_000);
    let b = noise(12, 3_000);
    src.add("openstack/multi.bin", &a);
    src.add("openstack/multj.bin", &b);
    let mut expected = src.files.clone();
    expected.remove("openstack/multj.bin");
    expected.insert("openstack/multi.bin".into(), [&a[..4096], &b[..]].concat());

    let mut image = level1(&src);
    patch_multi_extent(&mut image, b"MULTI.BIN", b"MULTJ.BIN");
    let drive = read(image);
    assert_files(&drive, &expected, true);
    assert!(drive.files.contains_key("OPENSTAC/MULTI.BIN"));

    let mut image = nova(&src);
    patch_multi_extent(&mut image, b"multi.bin", b"multj.bin");
    let drive = read(image);
    assert_files(&drive, &expected, false);
    assert_rock_ridge_link(&drive);
}

// ---- hostile images ------------------------------------------------------------------------------

#[test]
fn truncated_in_file_data() {
    let src = source();
    let image = nova(&src);
    let big = find_record(&image, b"0001");
    let cut = extent_of(&image, big) * SECTOR + 100_000;
    let err = read_with(image[..cut].to_vec(), Limits::default()).unwrap_err();
    let text = err.to_string();
    assert!(is_corrupt(&err), "{text}");
    assert!(
        text.contains(DEVICE) && text.contains("beyond the end of the device"),
        "{text}"
    );
    assert!(
        src.files.keys().any(|p| text.contains(p.as_str())),
        "{text} names no file"
    );
}

#[test]
fn truncated_in_directory_area() {
    // Plain level 1: cut inside the directory laid out last.
    let image = level1(&source());
    let last = ["LATEST", "CONTENT", "2012_08_", "DEEP"]
        .into_iter()
        .map(|d| (extent_of(&image, find_record(&image, d.as_bytes())), d))
        .max()
        .unwrap();
    let cut = last.0 * SECTOR + 1000;
    assert_error(
        read_with(image[..cut].to_vec(), Limits::default()),
        last.1,
        is_corrupt,
    );

    // Rock Ridge: the root's continuation area (after the directories) is cut off.
    let image = nova(&source());
    let dot = root_extent(&image) as usize * SECTOR;
    let su = &image[dot + 34..dot + image[dot] as usize];
    let ce = su
        .windows(2)
        .position(|w| w == b"CE")
        .expect("root has a CE entry");
    let area = get32(su, ce + 4) as usize * SECTOR + get32(su, ce + 12) as usize;
    let err = read_with(image[..area + 10].to_vec(), Limits::default()).unwrap_err();
    let text = err.to_string();
    assert!(is_corrupt(&err), "{text}");
    assert!(
        text.contains(DEVICE) && text.contains("continuation area"),
        "{text}"
    );
}

#[test]
fn directory_cycle_to_root() {
    let mut image = nova(&source());
    let content = find_record(&image, b"content");
    let root = root_extent(&image);
    set_both32(&mut image, content + 2, root);
    assert_error(
        read_with(image, Limits::default()),
        "openstack/content",
        is_corrupt,
    );
}

#[test]
fn directory_cycle_to_itself() {
    let mut image = nova(&source());
    let content = find_record(&image, b"content");
    let parent = extent_of(&image, find_record(&image, b"openstack")) as u32;
    set_both32(&mut image, content + 2, parent);
    assert_error(
        read_with(image, Limits::default()),
        "openstack/content",
        is_corrupt,
    );

    // The same in the Joliet tree (read when there is no Rock Ridge): point `content` at the
    // Joliet root.
    let mut image = joliet(&source());
    let svd = 17 * SECTOR;
    assert_eq!(image[svd], 2, "Joliet descriptor expected at sector 17");
    let joliet_root = get32(&image, svd + 156 + 2);
    let wide: Vec<u8> = "content"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let content = find_record(&image, &wide);
    set_both32(&mut image, content + 2, joliet_root);
    assert_error(
        read_with(image, Limits::default()),
        "openstack/content",
        is_corrupt,
    );
}

#[test]
fn declared_size_beyond_device() {
    let src = source();
    let mut image = nova(&src);
    let rec = find_record(&image, b"0001");
    set_both32(&mut image, rec + 10, 8 << 20);
    assert_error(read_with(image.clone(), Limits::default()), BIG, is_corrupt);

    let rec = find_record(&image, b"0000");
    set_both32(&mut image, rec + 2, 0x00f0_0000);
    let limits = Limits {
        max_file_size: 16 << 20,
        ..Limits::default()
    };
    let err = read_with(image, limits).unwrap_err();
    assert!(is_corrupt(&err), "{err}");
}

#[test]
fn unsafe_rock_ridge_names_are_skipped() {
    let mut src = source();
    for name in ["aXb", "zz", "cXc"] {
        src.add(&format!("openstack/{name}"), b"hostile\n");
    }
    let mut image = nova(&src);
    for (old, new) in [
        (&b"NM\x08\x01\x00aXb"[..], &b"NM\x08\x01\x00a/b"[..]),
        (b"NM\x07\x01\x00zz", b"NM\x07\x01\x00.."),
        (b"NM\x08\x01\x00cXc", b"NM\x08\x01\x00c\x01c"),
    ] {
        let at: Vec<usize> = image
            .windows(old.len())
            .enumerate()
            .filter(|(_, w)| *w == old)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 1, "NM entry {old:?}");
        image[at[0]..at[0] + old.len()].copy_from_slice(new);
    }
    let drive = read(image);
    let skipped: BTreeMap<&str, &str> = drive
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    // Skipped names are only ever shown: kept in their escaped, quoted form.
    assert!(
        skipped["\"openstack/a/b\""].contains("separator"),
        "{skipped:?}"
    );
    assert!(
        skipped["\"openstack/..\""].contains(". or .."),
        "{skipped:?}"
    );
    assert!(
        skipped[r#""openstack/c\u{1}c""#].contains("control"),
        "{skipped:?}"
    );
    assert_eq!(skipped.len(), 3);
    for name in ["aXb", "zz", "cXc"] {
        src.files.remove(&format!("openstack/{name}"));
    }
    let mut clean = drive.clone();
    clean.skipped.clear();
    assert_files(&clean, &src.files, false);
}

#[test]
fn file_over_size_limit() {
    let limits = Limits {
        max_file_size: 100 * 1024,
        ..Limits::default()
    };
    assert_error(read_with(nova(&source()), limits), BIG, |e| {
        matches!(
            e,
            MediaError::Limit {
                kind: LimitKind::FileSize,
                value: 204_800,
                ..
            }
        )
    });
}

#[test]
fn total_over_limit() {
    let limits = Limits {
        max_total_bytes: 150 * 1024,
        ..Limits::default()
    };
    assert_error(read_with(nova(&source()), limits), "openstack/", |e| {
        matches!(
            e,
            MediaError::Limit {
                kind: LimitKind::TotalBytes,
                ..
            }
        )
    });
}

#[test]
fn entries_over_limit() {
    let limits = Limits {
        max_entries: 5,
        ..Limits::default()
    };
    assert_error(read_with(xorriso(&source()), limits), "openstack", |e| {
        matches!(
            e,
            MediaError::Limit {
                kind: LimitKind::Entries,
                value: 6,
                limit: 5,
                ..
            }
        )
    });
}

#[test]
fn depth_over_limit() {
    let limits = Limits {
        max_depth: 4,
        ..Limits::default()
    };
    let src = source();
    for image in [nova(&src), level1(&src), joliet(&src)] {
        let err = read_with(image, limits).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::Limit {
                    kind: LimitKind::Depth,
                    value: 5,
                    limit: 4,
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(DEVICE), "{text}");
        assert!(text.to_lowercase().contains("/deep/a/b/c"), "{text}");
    }
}

#[test]
fn symlink_never_read_as_file_even_when_target_missing() {
    let mut src = source();
    src.remove("openstack/latest/meta_data.json");
    let drive = read(nova(&src));
    assert_rock_ridge_link(&drive);
    assert!(drive.get("openstack/latest/meta_data.json").is_none());
}

// ---- seeded mutations ------------------------------------------------------------------------------

#[test]
fn mutated_images_never_panic_or_hang() {
    let src = source();
    let image = nova(&src);
    let dirs = root_extent(&image) as usize * SECTOR;
    // Mutations land in the first 64 KiB (system area, descriptors, path tables, the first
    // directories) or on a used byte of a descriptor or directory / continuation sector: each
    // sector up to its last non-zero byte, since bytes after that are never looked at.
    let mut live = Vec::new();
    for sector in (16..20).chain(dirs / SECTOR..dirs / SECTOR + 24) {
        let bytes = &image[sector * SECTOR..(sector + 1) * SECTOR];
        let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        live.extend((0..used).map(|i| sector * SECTOR + i));
    }
    let limits = Limits {
        max_file_size: 256 * 1024,
        max_total_bytes: 1 << 20,
        max_depth: 10,
        max_entries: 200,
    };
    let (ok, failed, panics, elapsed) = guarded(300, move || {
        let started = Instant::now();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let (mut ok, mut failed, mut panics) = (0, 0, Vec::new());
        for case in 0..2000 {
            let mut m = image.clone();
            for _ in 0..1 + rng.below(8) {
                let at = if rng.below(4) == 0 {
                    rng.below(64 * 1024)
                } else {
                    live[rng.below(live.len())]
                };
                m[at] = match rng.below(4) {
                    0 => rng.next() as u8,
                    1 => m[at] ^ (1 << rng.below(8)),
                    2 => 0,
                    _ => 0xff,
                };
            }
            let result = catch_unwind(AssertUnwindSafe(|| {
                let _ = read_iso9660_label(&mut Cursor::new(&m));
                read_iso9660(Cursor::new(&m), DEVICE, &limits)
            }));
            match result {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(e)) => {
                    assert!(e.to_string().contains(DEVICE));
                    failed += 1;
                }
                Err(_) => panics.push(case),
            }
        }
        (ok, failed, panics, started.elapsed())
    });
    println!(
        "2000 mutated images: {ok} read, {failed} refused, {} panics, {elapsed:?}",
        panics.len()
    );
    assert!(panics.is_empty(), "panicked on cases {panics:?}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
