//! Large files of FAT drives stay on the device (issue 15, bounded memory), as those of ISO9660
//! drives do (tests/stream.rs): config-2 drives made by mkfs.vfat and mtools (as OpenStack's
//! `config_drive_format=vfat` makes them), FAT12, FAT16 and FAT32, with the large file's
//! cluster chain fragmented; a 64 MiB script on a loop device and on an image file written
//! byte for byte with a peak RSS that does not grow with it; a drive changed between the plan
//! and the apply failing the steps naming the file; a drive cut short refused naming it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use primer::media::Limits;

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";
const UD: &str = "openstack/latest/user_data";

fn run(prog: &str, args: &[&std::ffi::OsStr]) {
    let o = Command::new(prog)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{prog} {args:?}: {}", text(&o));
}

/// The FAT image of a config-2 tree (`latest` only) whose user_data is `ud`: `mkfs.vfat -F
/// fat -s spc` on `mib` MiB, then mtools. With `fragment`, files are written and every other
/// one deleted first, so the tree (user_data last) fills the holes: its chain is not one run.
fn fat_image(dir: &Path, fat: u8, spc: u8, mib: u64, ud: &[u8], fragment: bool) -> PathBuf {
    require_tool_from("mkfs.vfat", "dosfstools");
    require_tool_from("mcopy", "mtools");
    let tree = dir.join("tree");
    write_drive_tree(&tree, &sample_meta("large", &[]));
    fs::remove_dir_all(tree.join("openstack/2018-08-27")).unwrap();
    fs::remove_file(tree.join(UD)).unwrap();
    let img = dir.join(format!("fat{fat}.img"));
    fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
    let (f, s) = (fat.to_string(), spc.to_string());
    run(
        "mkfs.vfat",
        &[
            "-F".as_ref(),
            f.as_ref(),
            "-s".as_ref(),
            s.as_ref(),
            "-n".as_ref(),
            "config-2".as_ref(),
            img.as_os_str(),
        ],
    );
    let i = ["-i".as_ref(), img.as_os_str()];
    if fragment {
        let filler = dir.join("filler");
        fs::write(&filler, vec![b'f'; 96 << 10]).unwrap();
        for n in 0..8 {
            let to = format!("::/fill{n}");
            run(
                "mcopy",
                &[&i[..], &[filler.as_os_str(), to.as_ref()]].concat(),
            );
        }
        for n in (0..8).step_by(2) {
            let del = format!("::/fill{n}");
            run("mdel", &[&i[..], &[del.as_ref()]].concat());
        }
        fs::remove_file(&filler).unwrap();
        if fat == 32 {
            // mtools allocates from FAT32's next-free hint (FSInfo), past the holes: marked
            // unknown, it searches from the start of the table and fills them.
            let mut b = fs::read(&img).unwrap();
            let fsinfo = usize::from(u16::from_le_bytes([b[48], b[49]])) * 512;
            b[fsinfo + 492..fsinfo + 496].copy_from_slice(&[0xff; 4]);
            fs::write(&img, b).unwrap();
        }
    }
    // The tree, then user_data: its clusters come last (and fill the holes left).
    let src = tree.join("openstack");
    run(
        "mcopy",
        &[&i[..], &["-s".as_ref(), src.as_os_str(), "::/".as_ref()]].concat(),
    );
    let ud_file = dir.join("user_data");
    fs::write(&ud_file, ud).unwrap();
    let to = format!("::/{UD}");
    run(
        "mcopy",
        &[&i[..], &[ud_file.as_os_str(), to.as_ref()]].concat(),
    );
    fs::remove_file(&ud_file).unwrap();
    fs::remove_dir_all(&tree).unwrap();
    img
}

/// The runs of a file's cluster chain as mtools shows them (`<5-9><14-20>`).
fn chain_runs(img: &Path, path: &str) -> usize {
    require_tool_from("mshowfat", "mtools");
    let o = Command::new("mshowfat")
        .arg("-i")
        .arg(img)
        .arg(format!("::/{path}"))
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "mshowfat: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).matches('<').count()
}

/// Each FAT width, its large file fragmented: read through the library, user_data stays on the
/// device and streams byte for byte; the small files are held; the filler files between the
/// runs (read through fatfs, cluster by cluster) do not collide with the chain's claim.
#[test]
fn fat12_fat16_fat32_leave_a_fragmented_large_file_on_the_device() {
    for (fat, spc, mib) in [(12u8, 16u8, 16u64), (16, 4, 32), (32, 1, 48)] {
        let d = tempfile::tempdir().unwrap();
        let ud = large_script(3 << 20, &format!("fat{fat}"));
        let img = fat_image(d.path(), fat, spc, mib, &ud, true);
        let runs = chain_runs(&img, UD);
        assert!(runs > 1, "FAT{fat}: user_data is one run: not fragmented");
        let drive = primer::probe::image::read_source(&img, &Limits::default())
            .unwrap_or_else(|e| panic!("FAT{fat}: {e}"));
        assert_eq!(drive.fstype, "vfat");
        let f = drive.file(UD).expect("user_data");
        assert!(f.is_on_device(), "FAT{fat}: user_data held in memory");
        let mut out = Vec::new();
        f.write_to(&mut out).unwrap();
        assert!(out == ud, "FAT{fat}: streamed bytes differ from the file's");
        assert_eq!(&*f.head(9).unwrap(), b"#!/bin/sh");
        let meta = drive.file("openstack/latest/meta_data.json").unwrap();
        assert!(!meta.is_on_device());
        assert_eq!(drive.get("fill1").map(<[u8]>::len), Some(96 << 10));
    }
}

/// The 64 MiB script (just under the file cap) on a FAT drive, as a loop device and as an image
/// file: written byte for byte (the stored script and the local copy) with a peak RSS within
/// 4 MiB of a run with a one-line script (held whole it would add 64 MiB).
#[test]
fn a_64_mib_script_on_a_fat_drive_is_streamed_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let small_dir = dir.path().join("small");
    fs::create_dir(&small_dir).unwrap();
    let small = fat_image(&small_dir, 16, 4, 16, b"#!/bin/sh\ntrue\n", false);
    let root = scratch_root();
    let (o, base) = run_measured(&small, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));

    let ud = large_script((64 << 20) - 64, "middle");
    let big = fat_image(dir.path(), 16, 4, 72, &ud, false);
    let dev = Loop::attach(&big);
    for source in [Path::new(&dev.dev), &big] {
        let root = scratch_root();
        let (o, rss) = run_measured(source, root.path(), dir.path());
        assert!(o.status.success(), "{}", text(&o));
        let inst = root.path().join("var/lib/primer/instance").join(ID);
        for f in [
            "scripts/20-user-part-001",
            "drive/openstack/latest/user_data",
        ] {
            assert!(
                fs::read(inst.join(f)).unwrap() == ud,
                "{}: {f} differs from the drive's",
                source.display()
            );
        }
        assert!(
            rss < base + 4096,
            "{}: peak RSS {rss} KiB with a 64 MiB script, {base} KiB with a one-line script",
            source.display()
        );
    }
}

#[test]
fn a_fat_drive_that_changes_between_plan_and_apply_fails_the_step_naming_the_file() {
    use primer::apply::Outcome;

    let dir = tempfile::tempdir().unwrap();
    let ud = large_script(4 << 20, "MARKER-a");
    let img = fat_image(dir.path(), 16, 4, 16, &ud, true);
    let root = scratch_root();
    let (_loaded, plan) = plan_deferred(&img, root.path());

    // The image changes under the open reader: same length, one byte of the script differs.
    let mut image = fs::read(&img).unwrap();
    let at = image
        .windows(8)
        .position(|w| w == b"MARKER-a")
        .expect("the script's bytes in the image");
    image[at + 7] = b'b';
    fs::write(&img, &image).unwrap();

    let report = apply_locked(&plan, root.path());
    let inst = root.path().join("var/lib/primer/instance").join(ID);
    for (id, rel) in [
        (
            "copy:openstack/latest/user_data",
            "drive/openstack/latest/user_data",
        ),
        ("script-file:", "scripts/20-user-part-001"),
    ] {
        let step = report
            .steps
            .iter()
            .find(|s| s.id.starts_with(id))
            .unwrap_or_else(|| panic!("no {id} step in {:?}", report.steps));
        assert_eq!(step.outcome, Outcome::Failed, "{step:?}");
        assert!(
            step.detail.contains("/user_data") && step.detail.contains("changed on the device"),
            "{step:?}"
        );
        assert!(!inst.join(rel).exists(), "{rel} was written");
    }
}

/// Hostile image: a FAT drive cut short inside the large file's clusters is refused while
/// reading, naming the file; nothing is applied.
#[test]
fn a_fat_drive_cut_short_under_a_large_file_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let ud = large_script(2 << 20, "cut-here");
    let img = fat_image(d.path(), 16, 4, 16, &ud, false);
    let image = fs::read(&img).unwrap();
    let at = image
        .windows(8)
        .position(|w| w == b"cut-here")
        .expect("the script's bytes in the image");
    fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(at as u64)
        .unwrap();
    let root = d.path().join("root");
    fs::create_dir(&root).unwrap();
    let o = primer(&[
        "run",
        "--defer-scripts",
        "--source",
        img.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert_ne!(o.status.code(), Some(134), "aborted: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("user_data") && err.contains("beyond the end of the device"),
        "the file is not named: {err}"
    );
    assert!(
        !root
            .join(format!("var/lib/primer/instance/{ID}/applied.json"))
            .exists(),
        "a record was written for a drive that could not be read"
    );
}

/// Hostile image: the large file's cluster chain made to loop (its second cluster pointing back
/// to its first) in a real FAT16 image: refused while reading, naming the file, not followed.
#[test]
fn a_large_file_whose_chain_loops_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let ud = large_script(2 << 20, "loop");
    let img = fat_image(d.path(), 16, 4, 16, &ud, false);
    require_tool_from("mshowfat", "mtools");
    let o = Command::new("mshowfat")
        .arg("-i")
        .arg(&img)
        .arg(format!("::/{UD}"))
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    // `::/openstack/latest/user_data <1234-2257>`: its first cluster.
    let shown = String::from_utf8_lossy(&o.stdout).to_string();
    let first: u64 = shown
        .split('<')
        .nth(1)
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("mshowfat: {shown}"));
    let mut b = fs::read(&img).unwrap();
    let reserved = u64::from(u16::from_le_bytes([b[14], b[15]]));
    let bps = u64::from(u16::from_le_bytes([b[11], b[12]]));
    let entry = (reserved * bps + (first + 1) * 2) as usize;
    b[entry..entry + 2].copy_from_slice(&(first as u16).to_le_bytes());
    fs::write(&img, &b).unwrap();
    let root = d.path().join("root");
    fs::create_dir(&root).unwrap();
    let o = primer(&[
        "run",
        "--defer-scripts",
        "--source",
        img.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("user_data") && err.contains("loops"),
        "the loop or the file is not named: {err}"
    );
}

/// A file below the streaming threshold is read through fatfs, one cluster at a time, each
/// after its allocation-table entry: the table's block and the data's are both kept, so the
/// device is read about once (a 0.9 MiB file in 2 KiB clusters read 57 MiB from the device
/// when one block was cached: the table's and the data's evicted each other per cluster).
#[test]
fn a_file_read_through_fatfs_reads_each_block_of_the_device_once() {
    use std::io::{Read, Seek, SeekFrom};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// The image file, counting the bytes and reads asked of it.
    struct Counting(fs::File, Arc<AtomicU64>, Arc<AtomicU64>);
    impl Read for Counting {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(b)?;
            self.1.fetch_add(n as u64, Ordering::Relaxed);
            self.2.fetch_add(1, Ordering::Relaxed);
            Ok(n)
        }
    }
    impl Seek for Counting {
        fn seek(&mut self, p: SeekFrom) -> std::io::Result<u64> {
            self.0.seek(p)
        }
    }

    for (fat, spc, mib) in [(12u8, 4u8, 8u64), (16, 4, 16), (32, 1, 40)] {
        let d = tempfile::tempdir().unwrap();
        let ud = large_script(900 << 10, &format!("fat{fat}"));
        let img = fat_image(d.path(), fat, spc, mib, &ud, false);
        let (bytes, reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let r = Counting(fs::File::open(&img).unwrap(), bytes.clone(), reads.clone());
        let drive = primer::media::fat::read_fat_shared(r, "fat.img", &Limits::default())
            .unwrap_or_else(|e| panic!("FAT{fat}: {e}"));
        let f = drive.file(UD).expect("user_data");
        assert!(!f.is_on_device(), "FAT{fat}: below the threshold, held");
        assert!(f.as_slice() == ud.as_slice(), "FAT{fat}: user_data differs");
        let (bytes, reads) = (bytes.load(Ordering::Relaxed), reads.load(Ordering::Relaxed));
        // The file, the tables, the directories and the small files, block by block.
        assert!(
            bytes < 3 << 20 && reads < 64,
            "FAT{fat}: {bytes} bytes in {reads} reads for a {} byte file",
            ud.len()
        );
    }
}
