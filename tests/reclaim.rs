//! `primer reclaim` on real disk images: tables made by sgdisk/sfdisk (and, for 4 KiB sectors,
//! sgdisk on a 4096-byte loop device), a real config drive (primer make-drive; mkfs.vfat +
//! mcopy for the 4 KiB FAT cross-check) dd'ed into the config partition and applied first by
//! `primer run --source <image>`, then reclaimed by the real binary. Every result is checked
//! with `sgdisk -v` / `sfdisk --verify`, `sfdisk --dump` against the expected table, root's
//! bytes unchanged and the old config range zeroed; every refusal leaves the image byte for
//! byte; crash injection (PRIMER_FAULT_AFTER, PRIMER_FAULT_TORN) after each write of the table
//! step leaves old / new / torn-primary-with-new-backup, and a re-run converges. Filesystem growth on loop devices (XFS, btrfs, ext4).

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

const MIB: u64 = 1 << 20;

fn run_tool(prog: &str, args: &[&str]) -> String {
    require_tool(prog);
    let o = Command::new(prog).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sfdisk_script(disk: &Path, script: &str) {
    require_tool("sfdisk");
    let mut c = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success(), "sfdisk {script}");
}

/// A partition as `sfdisk --dump` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    number: u32,
    start: u64,
    size: u64,
    rest: String,
}

/// `sfdisk --dump`: header lines and partitions.
fn dump(dev: &str) -> (Vec<String>, Vec<Line>) {
    let out = run_tool("sfdisk", &["--dump", dev]);
    let mut head = Vec::new();
    let mut parts = Vec::new();
    for l in out.lines() {
        if let Some((name, fields)) = l.split_once(" : ") {
            let number: u32 = name
                .trim()
                .trim_start_matches(dev)
                .trim_start_matches('p')
                .parse()
                .unwrap();
            let mut start = 0;
            let mut size = 0;
            let mut rest = Vec::new();
            for f in fields.split(", ") {
                let f = f.trim();
                if let Some(v) = f.strip_prefix("start=") {
                    start = v.trim().parse().unwrap();
                } else if let Some(v) = f.strip_prefix("size=") {
                    size = v.trim().parse().unwrap();
                } else {
                    rest.push(f.to_string());
                }
            }
            parts.push(Line {
                number,
                start,
                size,
                rest: rest.join(", "),
            });
        } else if !l.starts_with("device:") {
            head.push(l.to_string());
        }
    }
    (head, parts)
}

fn put(disk: &Path, at: u64, data: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(disk).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(data).unwrap();
}

fn get(disk: &Path, at: u64, len: u64) -> Vec<u8> {
    let mut f = fs::File::open(disk).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = vec![0u8; len as usize];
    f.read_exact(&mut b).unwrap();
    b
}

/// Deterministic, incompressible-looking bytes for root's content.
fn pattern(len: u64, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e3779b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// An OpenStack config drive as ISO9660: reclaim needs *a* drive, so primer's make-drive makes
/// it (genisoimage's are proven against the reader in tests/reader.rs and tests/formats.rs).
fn config_iso(dir: &Path, host: &str) -> Vec<u8> {
    let tree = dir.join(format!("tree-{host}"));
    write_drive_tree(&tree, &sample_meta(host, &[ED]));
    let iso = dir.join(format!("{host}.iso"));
    make_drive(&tree, &iso, DriveFs::Iso9660, "config-2");
    fs::read(&iso).unwrap()
}

/// The same drive as VFAT labelled CONFIG-2 with `sector`-byte logical sectors (Ironic's
/// rebuild for 4 KiB disks). Kept on mkfs.vfat + mcopy: a cross-check that reclaim reads the
/// 4 KiB-sector FAT another producer writes.
fn config_vfat(dir: &Path, host: &str, sector: u32) -> Vec<u8> {
    let tree = dir.join(format!("tree-{host}"));
    write_drive_tree(&tree, &sample_meta(host, &[ED]));
    let out = dir.join(format!("{host}.vfat"));
    let _ = fs::remove_file(&out);
    run_tool(
        "mkfs.vfat",
        &[
            "-C",
            out.to_str().unwrap(),
            "-S",
            &sector.to_string(),
            "-n",
            "CONFIG-2",
            "16384",
        ],
    );
    run_tool(
        "mcopy",
        &[
            "-s",
            "-i",
            out.to_str().unwrap(),
            tree.join("openstack").to_str().unwrap(),
            "::",
        ],
    );
    fs::read(&out).unwrap()
}

struct Case {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    disk: PathBuf,
    root: tempfile::TempDir,
    sector: u64,
    root_part: u32,
    config_part: Option<u32>,
    /// Root's bytes (start, content) as written.
    root_data: (u64, Vec<u8>),
}

impl Case {
    fn new(size: u64) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        fs::File::create(&disk).unwrap().set_len(size).unwrap();
        let root = scratch_root();
        fs::create_dir_all(root.path().join("etc/primer")).unwrap();
        fs::write(
            root.path().join("etc/primer/primer.yaml"),
            "reclaim:\n  enabled: true\n",
        )
        .unwrap();
        Case {
            dir: dir.path().to_path_buf(),
            _dir: dir,
            disk,
            root,
            sector: 512,
            root_part: 1,
            config_part: None,
            root_data: (0, Vec::new()),
        }
    }

    fn d(&self) -> &str {
        self.disk.to_str().unwrap()
    }

    fn sgdisk(&self, args: &[&str]) {
        let mut a = args.to_vec();
        a.push(self.d());
        run_tool("sgdisk", &a);
    }

    fn parts(&self) -> Vec<Line> {
        dump(self.d()).1
    }

    fn part(&self, n: u32) -> Line {
        self.parts().into_iter().find(|l| l.number == n).unwrap()
    }

    /// Fills root with a pattern (up to 8 MiB at its start and 1 MiB at its end) and the config
    /// partition with `drive`, then applies the drive with `primer run --source`.
    fn fill(&mut self, root: u32, config: u32, drive: &[u8]) {
        self.root_part = root;
        self.config_part = Some(config);
        let r = self.part(root);
        let c = self.part(config);
        let ss = self.sector;
        let len = (r.size * ss).min(8 * MIB);
        let data = pattern(len, 1);
        put(&self.disk, r.start * ss, &data);
        // Root's last MiB too: the bytes next to the table change.
        put(&self.disk, (r.start + r.size) * ss - MIB, &pattern(MIB, 2));
        self.root_data = (r.start * ss, data);
        assert!(drive.len() as u64 <= c.size * ss);
        put(&self.disk, c.start * ss, drive);
    }

    fn apply_drive(&self) {
        let o = primer(&[
            "run",
            "--source",
            self.d(),
            "--root",
            self.root.path().to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "primer run: {}", text(&o));
    }

    fn reclaim(&self, extra: &[&str]) -> Output {
        self.reclaim_env(extra, &[])
    }

    fn reclaim_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let rp = self.root_part.to_string();
        let mut args = vec![
            "reclaim",
            "--disk",
            self.d(),
            "--root-partition",
            &rp,
            "--root",
            self.root.path().to_str().unwrap(),
        ];
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_primer"))
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn image(&self) -> Vec<u8> {
        fs::read(&self.disk).unwrap()
    }
}

/// The table sfdisk should show after reclaim: config gone, root to `root_last`, everything
/// else (header lines, other partitions, GUIDs, types, names) unchanged.
fn expected(
    before: &(Vec<String>, Vec<Line>),
    root: u32,
    config: u32,
    root_last: u64,
) -> (Vec<String>, Vec<Line>) {
    let mut parts: Vec<Line> = before
        .1
        .iter()
        .filter(|l| l.number != config)
        .cloned()
        .collect();
    for l in parts.iter_mut().filter(|l| l.number == root) {
        l.size = root_last + 1 - l.start;
    }
    (before.0.clone(), parts)
}

fn sgdisk_clean(dev: &str) {
    let out = Command::new("sgdisk").args(["-v", dev]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("No problems found"),
        "sgdisk -v {dev}:\n{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn last_usable(head: &[String]) -> u64 {
    head.iter()
        .find_map(|l| l.strip_prefix("last-lba: "))
        .unwrap()
        .parse()
        .unwrap()
}

fn aligned_last(limit: u64, sector: u64) -> u64 {
    let per = MIB / sector;
    (limit + 1) / per * per - 1
}

/// Applies reclaim to a prepared GPT case and checks everything about the result.
fn reclaim_and_verify_gpt(c: &Case, dev: &str) {
    let before = dump(dev);
    let cfg = c.config_part.unwrap();
    let cl = before.1.iter().find(|l| l.number == cfg).unwrap().clone();
    let root_last = aligned_last(last_usable(&before.0), c.sector);
    // Dry run: the plan names both tables and changes nothing.
    let img = c.image();
    let o = c.reclaim(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("planned (dry run"), "{s}");
    assert!(s.contains("config content = applied drive"), "{s}");
    assert!(
        s.contains(&format!(
            "{}",
            root_last + 1
                - before
                    .1
                    .iter()
                    .find(|l| l.number == c.root_part)
                    .unwrap()
                    .start
        )),
        "new root size in the plan: {s}"
    );
    assert!(c.image() == img, "dry run changed the image");
    drop(img);
    // Apply.
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("zeroing") && e.contains("table before") && e.contains("table after"),
        "{e}"
    );
    verify_gpt_result(c, dev, &before, root_last, &cl);
    // Second run: nothing to reclaim.
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    let o = c.reclaim(&[]);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
}

fn verify_gpt_result(
    c: &Case,
    dev: &str,
    before: &(Vec<String>, Vec<Line>),
    root_last: u64,
    cl: &Line,
) {
    sgdisk_clean(dev);
    let after = dump(dev);
    assert_eq!(after, expected(before, c.root_part, cl.number, root_last));
    verify_data(c, cl);
}

fn verify_data(c: &Case, cl: &Line) {
    let (at, data) = &c.root_data;
    assert!(
        get(&c.disk, *at, data.len() as u64) == *data,
        "root's bytes changed"
    );
    let ss = c.sector;
    let old = get(&c.disk, cl.start * ss, cl.size * ss);
    assert!(old.iter().all(|&b| b == 0), "old config range not zeroed");
}

#[test]
fn gpt_abutting_test_vm_layout() {
    // images/test-vm/build-image.sh: root, then `sgdisk -n 2:-64M:0 -t 2:0700` right after it.
    let mut c = Case::new(106 * MIB);
    c.sgdisk(&["-n", "1:2048:+40M", "-t", "1:8300", "-c", "1:root"]);
    c.sgdisk(&["-n", "2:-64M:0", "-t", "2:0700"]);
    let (p1, p2) = (c.part(1), c.part(2));
    assert_eq!(p2.start, p1.start + p1.size, "abutting layout");
    let iso = config_iso(&c.dir, "abut");
    c.fill(1, 2, &iso);
    c.apply_drive();
    let d = c.d().to_string();
    reclaim_and_verify_gpt(&c, &d);
    // The reclaim record holds the change; --json gives the same facts.
    let o = c.reclaim(&["--json"]);
    let v = json(&o);
    assert_eq!(v["outcome"], "nothing");
    assert_eq!(v["kind"], "image");
}

#[test]
fn ironic_gap_layout_config_numbered_lower() {
    // Ironic: root written by the image (here partition 2), then `sgdisk -n 0:-64MB:0` picks
    // the first free number (1), empty name, type 8300, with free space between.
    let mut c = Case::new(200 * MIB);
    c.sgdisk(&["-n", "2:2048:+40M", "-t", "2:8300"]);
    c.sgdisk(&["-n", "0:-64M:0"]);
    let cfg = c.part(1);
    assert!(cfg.rest.contains("0FC63DAF"), "type 8300: {cfg:?}");
    assert!(!cfg.rest.contains("name="), "unnamed: {cfg:?}");
    assert!(
        cfg.start > c.part(2).start + c.part(2).size + MIB / 512,
        "a gap"
    );
    let iso = config_iso(&c.dir, "ironic");
    c.fill(2, 1, &iso);
    c.apply_drive();
    let d = c.d().to_string();
    reclaim_and_verify_gpt(&c, &d);
}

/// A read-write loop device with 4096-byte logical sectors; detached on drop.
struct Loop4k(String);

impl Loop4k {
    fn attach(img: &Path) -> Loop4k {
        require_root();
        let dev = run_tool(
            "losetup",
            &[
                "--find",
                "--show",
                "--sector-size",
                "4096",
                img.to_str().unwrap(),
            ],
        );
        Loop4k(dev.trim().to_string())
    }
}

impl Drop for Loop4k {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn gpt_4k_sectors_vfat_config() {
    let mut c = Case::new(120 * MIB);
    c.sector = 4096;
    let before;
    {
        let lo = Loop4k::attach(&c.disk);
        run_tool("sgdisk", &["-n", "1:0:+40M", "-t", "1:8300", &lo.0]);
        run_tool("sgdisk", &["-n", "2:-64M:0", "-t", "2:0700", &lo.0]);
        before = dump(&lo.0);
    }
    let line = |n: u32| before.1.iter().find(|l| l.number == n).unwrap().clone();
    let (r, cl) = (line(1), line(2));
    let fat = config_vfat(&c.dir, "fourk", 4096);
    c.root_part = 1;
    c.config_part = Some(2);
    let data = pattern(8 * MIB, 3);
    put(&c.disk, r.start * 4096, &data);
    c.root_data = (r.start * 4096, data);
    put(&c.disk, cl.start * 4096, &fat);
    c.apply_drive();
    let root_last = aligned_last(last_usable(&before.0), 4096);
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("vfat label \"CONFIG-2\""),
        "{}",
        text(&o)
    );
    let lo = Loop4k::attach(&c.disk);
    sgdisk_clean(&lo.0);
    let after = dump(&lo.0);
    let want = expected(&before, 1, 2, root_last);
    assert_eq!(after.1, want.1);
    drop(lo);
    verify_data(&c, &cl);
    assert_eq!(c.reclaim(&["--apply"]).status.code(), Some(13));
}

#[test]
fn backup_header_not_at_the_end_is_refused_until_moved() {
    let mut c = Case::new(106 * MIB);
    c.sgdisk(&["-n", "1:2048:+40M", "-t", "1:8300"]);
    c.sgdisk(&["-n", "2:-64M:0", "-t", "2:0700"]);
    let iso = config_iso(&c.dir, "backup");
    c.fill(1, 2, &iso);
    c.apply_drive();
    // The image dd'ed onto a larger disk: the backup header is now in the middle.
    fs::OpenOptions::new()
        .write(true)
        .open(&c.disk)
        .unwrap()
        .set_len(170 * MIB)
        .unwrap();
    let img = c.image();
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("backup GPT header") && s.contains("sgdisk -e"),
        "{s}"
    );
    assert!(c.image() == img, "refusal wrote");
    drop(img);
    // Moved as its own checked step, then reclaim takes the whole disk.
    c.sgdisk(&["-e"]);
    sgdisk_clean(c.d());
    let d = c.d().to_string();
    reclaim_and_verify_gpt(&c, &d);
    assert!(
        dump(c.d()).1[0].size > 160 * MIB / 512,
        "root spans the larger disk"
    );
}

#[test]
fn mbr_primary_0x0c() {
    // parted's placement (Ironic MBR): config in the last 64 MiB, type 0x0c, after a gap.
    let mut c = Case::new(140 * MIB);
    let total = 140 * MIB / 512;
    sfdisk_script(
        &c.disk,
        &format!(
            "label: dos\nstart=2048, size={}, type=83, bootable\nstart={}, size=131072, type=c\n",
            40 * MIB / 512,
            total - 131072
        ),
    );
    // Boot code and disk signature must survive byte for byte.
    let mut s0 = get(&c.disk, 0, 512);
    s0[..440].copy_from_slice(&pattern(440, 9));
    put(&c.disk, 0, &s0);
    let iso = config_iso(&c.dir, "mbr");
    c.fill(1, 2, &iso);
    c.apply_drive();
    let before = dump(c.d());
    let cl = c.part(2);
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    run_tool("sfdisk", &["--verify", c.d()]);
    let root_last = aligned_last(total - 1, 512);
    assert_eq!(dump(c.d()), expected(&before, 1, 2, root_last));
    let s1 = get(&c.disk, 0, 512);
    assert_eq!(s1[..446], s0[..446], "boot code and signature");
    assert_eq!(s1[510..], s0[510..]);
    verify_data(&c, &cl);
    assert_eq!(c.reclaim(&["--apply"]).status.code(), Some(13));
}

#[test]
fn mbr_near_2_tib() {
    // > 2 TiB disk: Ironic puts the config in the 64 MiB below the MBR limit (2^32 sectors).
    let mut c = Case::new((1u64 << 41) + 512 * MIB);
    let limit = 1u64 << 32;
    sfdisk_script(
        &c.disk,
        &format!(
            "label: dos\nstart=2048, size={}, type=83\nstart={}, size=131072, type=c\n",
            40 * MIB / 512,
            limit - 131072
        ),
    );
    let iso = config_iso(&c.dir, "big");
    c.fill(1, 2, &iso);
    c.apply_drive();
    let before = dump(c.d());
    let cl = c.part(2);
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    run_tool("sfdisk", &["--verify", c.d()]);
    // Root ends exactly at the MBR limit (2^32 - 1), never past it.
    assert_eq!(dump(c.d()), expected(&before, 1, 2, limit - 1));
    verify_data(&c, &cl);
    assert_eq!(c.reclaim(&["--apply"]).status.code(), Some(13));
}

/// Runs reclaim expecting a refusal whose output names `why`; the image must not change.
fn refused(c: &Case, why: &str) {
    let img = c.image();
    for args in [&[][..], &["--apply"][..]] {
        let o = c.reclaim(args);
        assert_eq!(o.status.code(), Some(14), "{args:?}: {}", text(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains(why), "{args:?}: want {why:?} in:\n{s}");
    }
    assert!(c.image() == img, "a refusal wrote to the image");
    assert!(!c.root.path().join("var/lib/primer/reclaim.json").exists());
}

fn gpt_case(size_mib: u64, layout: &[&[&str]]) -> Case {
    let c = Case::new(size_mib * MIB);
    for l in layout {
        c.sgdisk(l);
    }
    c
}

#[test]
fn refusals() {
    // A partition after config: the last partition is not a config drive.
    let mut c = gpt_case(
        180,
        &[
            &["-n", "1:2048:+40M"],
            &["-n", "2:0:+64M"],
            &["-n", "3:0:+8M"],
        ],
    );
    let iso = config_iso(&c.dir, "after");
    c.fill(1, 2, &iso);
    c.apply_drive();
    refused(&c, "is not a config drive");

    // Config does not hold the applied drive.
    let mut c = gpt_case(120, &[&["-n", "1:2048:+40M"], &["-n", "2:-64M:0"]]);
    let other = config_iso(&c.dir, "applied");
    c.fill(1, 2, &other);
    c.apply_drive();
    let iso = config_iso(&c.dir, "different");
    put(&c.disk, c.part(2).start * 512, &iso);
    refused(&c, "does not hold the drive primer applied");

    // No drive applied yet.
    let mut c = gpt_case(120, &[&["-n", "1:2048:+40M"], &["-n", "2:-64M:0"]]);
    let iso = config_iso(&c.dir, "none");
    c.fill(1, 2, &iso);
    refused(&c, "run `primer run` first");

    // Root not directly before config.
    let mut c = gpt_case(
        140,
        &[
            &["-n", "1:2048:+40M"],
            &["-n", "3:0:+8M"],
            &["-n", "2:-64M:0"],
        ],
    );
    let iso = config_iso(&c.dir, "between");
    c.fill(1, 2, &iso);
    c.apply_drive();
    refused(&c, "lies between root");

    // Root given as the config partition's neighbour that does not exist.
    let mut c = gpt_case(120, &[&["-n", "1:2048:+40M"], &["-n", "2:-64M:0"]]);
    let iso = config_iso(&c.dir, "noroot");
    c.fill(1, 2, &iso);
    c.apply_drive();
    c.root_part = 5;
    refused(&c, "root partition 5 is not in the table");

    // Hybrid MBR (sgdisk -h): not handled.
    let mut c = gpt_case(120, &[&["-n", "1:2048:+40M"], &["-n", "2:-64M:0"]]);
    let iso = config_iso(&c.dir, "hybrid");
    c.fill(1, 2, &iso);
    c.apply_drive();
    c.sgdisk(&["-h", "1"]);
    refused(&c, "hybrid MBR");

    // Extended/logical MBR layout.
    let mut c = Case::new(140 * MIB);
    sfdisk_script(
        &c.disk,
        "label: dos\nstart=2048, size=81920, type=83\nstart=83968, type=5\nstart=86016, size=131072, type=c\n",
    );
    let iso = config_iso(&c.dir, "ext");
    c.fill(1, 5, &iso);
    c.apply_drive();
    refused(&c, "extended partition");
}

#[test]
fn image_needs_root_partition_and_apply_needs_enabled() {
    let mut c = gpt_case(120, &[&["-n", "1:2048:+40M"], &["-n", "2:-64M:0"]]);
    let iso = config_iso(&c.dir, "flags");
    c.fill(1, 2, &iso);
    c.apply_drive();
    let img = c.image();
    let o = primer(&[
        "reclaim",
        "--disk",
        c.d(),
        "--root",
        c.root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--root-partition"));
    fs::write(
        c.root.path().join("etc/primer/primer.yaml"),
        "reclaim:\n  enabled: false\n",
    )
    .unwrap();
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("disabled"));
    assert!(c.image() == img);
}

/// Which GPT copies hold which table: (primary, backup), each `old`, `new` or `invalid`.
fn gpt_state(disk: &Path, old: &[u8], new: &[u8]) -> (&'static str, &'static str) {
    let mut f = fs::File::open(disk).unwrap();
    let len = f.seek(SeekFrom::End(0)).unwrap();
    let mut copy = |lba: u64| -> &'static str {
        f.seek(SeekFrom::Start(lba * 512)).unwrap();
        let Ok(h) = gptman::GPTHeader::read_from(&mut f) else {
            return "invalid";
        };
        let Ok(e) = h.read_partitions(&mut f, 512) else {
            return "invalid";
        };
        let mut bytes = Vec::new();
        for x in &e {
            bytes.extend(x.starting_lba.to_le_bytes());
            bytes.extend(x.ending_lba.to_le_bytes());
            bytes.extend(x.partition_type_guid);
        }
        if bytes == old {
            "old"
        } else if bytes == new {
            "new"
        } else {
            "other"
        }
    };
    (copy(1), copy(len / 512 - 1))
}

fn entries_sig(disk: &Path) -> Vec<u8> {
    let mut f = fs::File::open(disk).unwrap();
    f.seek(SeekFrom::Start(512)).unwrap();
    let h = gptman::GPTHeader::read_from(&mut f).unwrap();
    let e = h.read_partitions(&mut f, 512).unwrap();
    let mut bytes = Vec::new();
    for x in &e {
        bytes.extend(x.starting_lba.to_le_bytes());
        bytes.extend(x.ending_lba.to_le_bytes());
        bytes.extend(x.partition_type_guid);
    }
    bytes
}

fn crash_case(tag: &str) -> Case {
    let mut c = gpt_case(
        106,
        &[
            &["-n", "1:2048:+40M", "-t", "1:8300"],
            &["-n", "2:-64M:0", "-t", "2:0700"],
        ],
    );
    let iso = config_iso(&c.dir, tag);
    c.fill(1, 2, &iso);
    c.apply_drive();
    c
}

/// What, the fault switch (variable, value), the expected (primary, backup) state.
type CrashCase = (
    String,
    Vec<(&'static str, String)>,
    (&'static str, &'static str),
);

#[test]
fn crash_after_each_write_converges() {
    // A reference run gives the new table.
    let r = crash_case("ref");
    let old = entries_sig(&r.disk);
    let root_last = aligned_last(last_usable(&dump(r.d()).0), 512);
    assert_eq!(r.reclaim(&["--apply"]).status.code(), Some(0));
    let new = entries_sig(&r.disk);
    // Fault points of an image run (PRIMER_FAULT_AFTER counts every point of the process):
    // 1 intent record, 2 backup entries, 3 backup header, 4 commit, 5 record "table done",
    // 6 record "wiped", 7 after the wipe.
    let mut cases: Vec<CrashCase> = [
        ("old", "old"),
        ("old", "invalid"),
        ("old", "new"),
        ("new", "new"),
        ("new", "new"),
        ("new", "new"),
        ("new", "new"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, want)| {
        (
            format!("fault point {}", i + 1),
            vec![("PRIMER_FAULT_AFTER", (i + 1).to_string())],
            want,
        )
    })
    .collect();
    cases.push((
        "torn commit: header only".into(),
        vec![("PRIMER_FAULT_TORN", "header".into())],
        ("invalid", "new"),
    ));
    cases.push((
        "torn commit: entries only".into(),
        vec![("PRIMER_FAULT_TORN", "entries".into())],
        ("invalid", "new"),
    ));
    for (what, env, want) in cases {
        let c = crash_case("crash");
        let before = dump(c.d());
        let cl = c.part(2);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = c.reclaim_env(&["--apply"], &env);
        assert_eq!(
            o.status.code(),
            None,
            "{what}: aborted by the fault switch: {}",
            text(&o)
        );
        let state = gpt_state(&c.disk, &old, &new);
        assert_eq!(state, want, "{what}");
        // Every state is one of old / new / torn-primary-with-new-backup.
        assert!(
            matches!(state, ("old", _) | ("new", "new") | ("invalid", "new")),
            "{what}: {state:?}"
        );
        assert!(get(&c.disk, c.root_data.0, c.root_data.1.len() as u64) == c.root_data.1);
        // The re-run converges.
        let o = c.reclaim(&["--apply"]);
        // After the wipe only the (absent) filesystem step was left: nothing to reclaim.
        let want_rc = if what == "fault point 6" || what == "fault point 7" {
            13
        } else {
            0
        };
        assert_eq!(
            o.status.code(),
            Some(want_rc),
            "{what}: re-run: {}",
            text(&o)
        );
        verify_gpt_result(&c, c.d(), &before, root_last, &cl);
        assert_eq!(gpt_state(&c.disk, &old, &new), ("new", "new"), "{what}");
        let o = c.reclaim(&["--apply"]);
        assert_eq!(o.status.code(), Some(13), "{what}: third run: {}", text(&o));
    }
}

#[test]
fn mbr_crash_after_the_write_converges() {
    let mut c = Case::new(140 * MIB);
    sfdisk_script(
        &c.disk,
        "label: dos\nstart=2048, size=81920, type=83\nstart=155648, size=131072, type=c\n",
    );
    let iso = config_iso(&c.dir, "mbrcrash");
    c.fill(1, 2, &iso);
    c.apply_drive();
    let before = dump(c.d());
    let cl = c.part(2);
    // Fault point 1 is the intent record, 2 the one MBR write.
    let o = c.reclaim_env(&["--apply"], &[("PRIMER_FAULT_AFTER", "2")]);
    assert_eq!(o.status.code(), None, "{}", text(&o));
    let root_last = aligned_last(140 * MIB / 512 - 1, 512);
    assert_eq!(
        dump(c.d()),
        expected(&before, 1, 2, root_last),
        "new table after the one write"
    );
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("zeroed"),
        "{}",
        text(&o)
    );
    verify_data(&c, &cl);
}

#[test]
fn torn_primary_without_the_record_is_refused() {
    let c = crash_case("norecord");
    let o = c.reclaim_env(&["--apply"], &[("PRIMER_FAULT_TORN", "header")]);
    assert_eq!(o.status.code(), None);
    fs::remove_file(c.root.path().join("var/lib/primer/reclaim.json")).unwrap();
    let img = c.image();
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("primary GPT unusable"));
    assert!(c.image() == img);
}

#[test]
fn grow_root_into_free_space_without_config() {
    // A partition image dd'ed onto a bigger disk: no config partition, root grows like growpart.
    let c = gpt_case(200, &[&["-n", "1:2048:+40M", "-t", "1:8300"]]);
    let before = dump(c.d());
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    sgdisk_clean(c.d());
    let root_last = aligned_last(last_usable(&before.0), 512);
    let mut want = before.clone();
    want.1[0].size = root_last + 1 - want.1[0].start;
    assert_eq!(dump(c.d()), want);
    assert_eq!(c.reclaim(&["--apply"]).status.code(), Some(13));
}

/// A disk image on a loop device whose partitions the kernel knows (BLKPG_ADD by `partx -a`:
/// this kernel has no partition parsers), root's filesystem mounted. Undone on drop.
const LIVE_DISK: u64 = 500 * MIB;

struct LiveDisk {
    case: Case,
    dev: String,
    mnt: tempfile::TempDir,
    mounted: bool,
}

impl LiveDisk {
    /// 500 MiB disk: root 320 MiB (XFS needs 300 MiB; `mkfs`), config (the applied ISO) in the last 64 MiB.
    fn new(mkfs: &[&str], tag: &str) -> LiveDisk {
        require_root();
        let mut case = Case::new(LIVE_DISK);
        case.sgdisk(&["-n", "1:2048:+320M", "-t", "1:8300"]);
        case.sgdisk(&["-n", "2:-64M:0", "-t", "2:0700"]);
        let iso = config_iso(&case.dir, tag);
        put(&case.disk, case.part(2).start * 512, &iso);
        case.root_part = 1;
        case.config_part = Some(2);
        let dev = run_tool("losetup", &["--find", "--show", case.d()])
            .trim()
            .to_string();
        let mnt = tempfile::tempdir().unwrap();
        let mut d = LiveDisk {
            case,
            dev,
            mnt,
            mounted: false,
        };
        run_tool("partx", &["-a", &d.dev]);
        let p1 = format!("{}p1", d.dev);
        let mut a = mkfs.to_vec();
        a.push(&p1);
        run_tool(a[0], &a[1..]);
        run_tool("mount", &[&p1, d.mnt.path().to_str().unwrap()]);
        d.mounted = true;
        fs::write(d.mnt.path().join("data"), pattern(MIB, 7)).unwrap();
        // Applied from the block device, as at boot.
        let o = primer(&[
            "run",
            "--source",
            &d.dev,
            "--root",
            d.case.root.path().to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "primer run: {}", text(&o));
        d
    }

    fn reclaim(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "reclaim",
            "--disk",
            &self.dev,
            "--root-partition",
            "1",
            "--root",
            self.case.root.path().to_str().unwrap(),
        ];
        args.extend(extra);
        primer(&args)
    }

    fn sys(&self, part: &str) -> Option<u64> {
        let name = self.dev.trim_start_matches("/dev/");
        fs::read_to_string(format!("/sys/class/block/{name}/{name}{part}/size"))
            .ok()
            .map(|s| s.trim().parse().unwrap())
    }

    fn fs_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(self.mnt.path()).unwrap();
        s.blocks() * s.fragment_size()
    }

    fn umount(&mut self) {
        if self.mounted {
            run_tool("umount", &[self.mnt.path().to_str().unwrap()]);
            self.mounted = false;
        }
    }
}

impl Drop for LiveDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.mnt.path()).status();
        }
        let _ = Command::new("partx").args(["-d", &self.dev]).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// Live reclaim: BLKPG removes the config partition and resizes root, the filesystem grows
/// online through its ioctl; checked from sysfs, statvfs and, after unmounting, the
/// filesystem's own checker and sgdisk -v.
fn live_grow(mkfs: &[&str], check: &[&str], tag: &str) {
    let mut d = LiveDisk::new(mkfs, tag);
    let before = d.fs_bytes();
    let o = d.reclaim(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("BLKPG_DEL_PARTITION 2"));
    let o = d.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("BLKPG_DEL_PARTITION 2") && s.contains("BLKPG_RESIZE_PARTITION 1"),
        "{s}"
    );
    assert_eq!(d.sys("p2"), None, "config partition gone from the kernel");
    let new_last = aligned_last(LIVE_DISK / 512 - 34, 512);
    assert_eq!(
        d.sys("p1"),
        Some(new_last + 1 - 2048),
        "root resized in the kernel"
    );
    let after = d.fs_bytes();
    assert!(
        after > before + 100 * MIB,
        "grew online: {before} -> {after}\n{s}"
    );
    // Every later boot: nothing to reclaim.
    let o = d.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    assert_eq!(
        fs::read(d.mnt.path().join("data")).unwrap(),
        pattern(MIB, 7)
    );
    d.umount();
    let p1 = format!("{}p1", d.dev);
    let mut a = check.to_vec();
    a.push(&p1);
    run_tool(a[0], &a[1..]);
    sgdisk_clean(d.case.d());
    let old = get(&d.case.disk, (LIVE_DISK / 512 - 34 - 131072) * 512, MIB);
    assert!(old.iter().all(|&b| b == 0), "old config range zeroed");
}

#[test]
fn live_xfs_grows_online() {
    require_tool_from("mkfs.xfs", "xfsprogs");
    live_grow(&["mkfs.xfs", "-q"], &["xfs_repair", "-n"], "xfs");
}

#[test]
fn live_btrfs_grows_online() {
    require_tool_from("mkfs.btrfs", "btrfs-progs");
    live_grow(
        &["mkfs.btrfs", "-q"],
        &["btrfs", "check", "--readonly"],
        "btrfs",
    );
}

#[test]
fn live_ext4_table_done_grow_needs_cap_sys_resource() {
    // ext4's online grow needs CAP_SYS_RESOURCE; where the test runs without it the table and
    // kernel steps complete, the grow fails with EPERM (exit 3, "partial") and is retried by
    // every later run; with it, the filesystem grows.
    let mut d = LiveDisk::new(&["mkfs.ext4", "-q"], "ext4");
    let before = d.fs_bytes();
    let o = d.reclaim(&["--apply"]);
    let s = text(&o);
    assert_eq!(d.sys("p2"), None, "{s}");
    match o.status.code() {
        Some(0) => assert!(d.fs_bytes() > before + 100 * MIB, "{s}"),
        Some(3) => {
            assert!(s.contains("CAP_SYS_RESOURCE"), "{s}");
            eprintln!("ext4 online grow: EPERM without CAP_SYS_RESOURCE (table and kernel done)");
            let o = d.reclaim(&["--apply"]);
            assert_eq!(
                o.status.code(),
                Some(3),
                "the grow is retried: {}",
                text(&o)
            );
        }
        _ => panic!("{s}"),
    }
    d.umount();
    run_tool("e2fsck", &["-fn", &format!("{}p1", d.dev)]);
    sgdisk_clean(d.case.d());
}

#[test]
fn live_config_open_is_refused_with_nothing_written() {
    require_tool_from("mkfs.xfs", "xfsprogs");
    let d = LiveDisk::new(&["mkfs.xfs", "-q"], "busy");
    let table = get(&d.case.disk, 0, 34 * 512);
    let tail = get(&d.case.disk, LIVE_DISK - 33 * 512, 33 * 512);
    // Something holds the config partition open: BLKPG_DEL_PARTITION answers EBUSY.
    let hold = fs::File::open(format!("{}p2", d.dev)).unwrap();
    let o = d.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("EBUSY"),
        "{}",
        text(&o)
    );
    drop(hold);
    assert!(get(&d.case.disk, 0, 34 * 512) == table);
    assert!(get(&d.case.disk, LIVE_DISK - 33 * 512, 33 * 512) == tail);
    assert!(d.sys("p2").is_some());
    assert!(!d
        .case
        .root
        .path()
        .join("var/lib/primer/reclaim.json")
        .exists());
}

#[test]
fn live_crash_after_the_commit_leaves_the_kernel_behind_and_a_rerun_finishes() {
    // Fault points of a live run: 1 BLKPG_DEL_PARTITION, 2 intent record, 3 backup entries,
    // 4 backup header, 5 commit. After 5 the table is new, the kernel still has root's old
    // size and the filesystem its old size: the re-run derives both from the disk.
    require_tool_from("mkfs.xfs", "xfsprogs");
    let mut d = LiveDisk::new(&["mkfs.xfs", "-q"], "livecrash");
    let old_size = d.sys("p1").unwrap();
    let before = d.fs_bytes();
    let mut args = vec![
        "reclaim".to_string(),
        "--disk".into(),
        d.dev.clone(),
        "--root-partition".into(),
        "1".into(),
        "--root".into(),
        d.case.root.path().display().to_string(),
        "--apply".into(),
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(&args)
        .env("PRIMER_FAULT_AFTER", "5")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "{}", text(&o));
    assert_eq!(d.sys("p2"), None);
    assert_eq!(d.sys("p1"), Some(old_size), "kernel behind the table");
    sgdisk_clean(d.case.d());
    // The plan names what is left.
    args.pop();
    let o = primer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let s = text(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(
        s.contains("BLKPG_RESIZE_PARTITION 1") && s.contains("zero the old config range"),
        "{s}"
    );
    args.push("--apply".into());
    let o = primer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let new_last = aligned_last(LIVE_DISK / 512 - 34, 512);
    assert_eq!(d.sys("p1"), Some(new_last + 1 - 2048));
    assert!(d.fs_bytes() > before + 100 * MIB);
    let o = primer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    d.umount();
    run_tool("xfs_repair", &["-n", &format!("{}p1", d.dev)]);
}

/// Waits (bounded) until process `pid` sleeps in nanosleep: primer's wait for the disk lock,
/// which comes after planning and before the re-check.
fn wait_sleeping(pid: u32) {
    for _ in 0..300 {
        let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        // x86-64: 35 nanosleep, 230 clock_nanosleep.
        let nr = syscall.split_whitespace().next().unwrap_or("");
        if nr == "230" || nr == "35" || wchan.contains("nanosleep") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("primer (pid {pid}) never waited for the disk lock");
}

#[test]
fn table_changed_between_planning_and_the_write_is_refused() {
    // The re-check under the disk lock, driven for real: the test holds the lock (flock, as
    // systemd and growpart take it), primer plans and waits for it, the table changes (another
    // partitioner renames root), the lock is released: primer re-reads, finds a field changed
    // and writes nothing.
    let mut c = gpt_case(120, &[&["-n", "1:2048:+40M"], &["-n", "2:-64M:0"]]);
    let iso = config_iso(&c.dir, "racing");
    c.fill(1, 2, &iso);
    c.apply_drive();
    let lock = nix::fcntl::Flock::lock(
        fs::File::open(&c.disk).unwrap(),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .unwrap();
    let rp = c.root_part.to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args([
            "reclaim",
            "--disk",
            c.d(),
            "--root-partition",
            &rp,
            "--root",
        ])
        .arg(c.root.path())
        .arg("--apply")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_sleeping(child.id());
    c.sgdisk(&["-c", "1:renamed"]);
    let changed = c.image();
    drop(lock);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed since planning"),
        "{}",
        text(&o)
    );
    assert!(c.image() == changed, "primer wrote after the table changed");
    assert!(!c.root.path().join("var/lib/primer/reclaim.json").exists());
    // Planned again from the changed table, the same disk reclaims.
    let o = c.reclaim(&["--apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    sgdisk_clean(c.d());
}
