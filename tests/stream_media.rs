//! Packed drives and mount mode in bounded memory (issue 15): a user-data script of tens of MiB
//! in an Ironic packed drive (gzip, gzip + base64) or read through `--mount` from a read-only
//! loop device is written byte for byte with a peak RSS that does not grow with the script; the
//! unpacked image leaves no file behind and the mount no mount or mount point. Hostile packed
//! drives (a bomb past the cap, truncated gzip, bad base64) fail naming the device.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Ironic's text form: base64 in lines of 76 characters.
fn base64_lines(data: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 76 + 1);
    for line in b64.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// The script and the local copy a first run stored under `root` are `ud`, byte for byte.
fn assert_stored(root: &Path, ud: &[u8]) {
    let inst = root.join("var/lib/primer/instance").join(ID);
    for f in [
        "scripts/20-user-part-001",
        "drive/openstack/latest/user_data",
    ] {
        assert!(
            fs::read(inst.join(f)).unwrap() == ud,
            "{f} differs from the drive's"
        );
    }
}

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A config-2 ISO with `ud` as its user data, packed: `base64` = the text form.
fn packed_drive(dir: &Path, ud: &[u8], base64: bool) -> std::path::PathBuf {
    fs::create_dir_all(dir).unwrap();
    let iso = config2_iso(dir, ud);
    let gz = gzip(&fs::read(&iso).unwrap());
    fs::remove_file(&iso).unwrap();
    let packed = dir.join("configdrive");
    fs::write(&packed, if base64 { base64_lines(&gz) } else { gz }).unwrap();
    packed
}

#[test]
fn a_large_script_in_a_packed_drive_is_unpacked_to_a_temporary_file_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let ud = large_script(32 << 20, "middle");
    for base64 in [false, true] {
        let form = if base64 { "gzip+base64" } else { "gzip" };
        let small = packed_drive(&dir.path().join("small"), b"#!/bin/sh\ntrue\n", base64);
        let root = scratch_root();
        let (o, base) = run_measured_with(&small, root.path(), dir.path(), &[], Some(&tmp));
        assert!(o.status.success(), "{form}: {}", text(&o));

        let big = packed_drive(&dir.path().join("big"), &ud, base64);
        let root = scratch_root();
        let (o, rss) = run_measured_with(&big, root.path(), dir.path(), &[], Some(&tmp));
        assert!(o.status.success(), "{form}: {}", text(&o));
        assert_stored(root.path(), &ud);
        eprintln!("{form}: peak RSS {rss} KiB (32 MiB script), {base} KiB (one-line script)");
        // Unpacked in memory, the image alone would add 32 MiB; through the temporary file,
        // only the decoder's window and the chunks.
        assert!(
            rss < base + 4096,
            "{form}: peak RSS {rss} KiB with a 32 MiB script, {base} KiB with a one-line script"
        );
        assert_eq!(entries(&tmp), Vec::<String>::new(), "{form}: a file left");

        // The drive as shown: the filesystem inside, then the packing.
        let o = primer(&["show", "--json", "--source", big.to_str().unwrap()]);
        assert!(o.status.success(), "{form}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["fstype"], format!("iso9660+{form}"));
        fs::remove_dir_all(dir.path().join("small")).unwrap();
        fs::remove_dir_all(dir.path().join("big")).unwrap();
    }
}

/// The mounts in this process's namespace whose source is `dev`.
fn mounts_of(dev: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.split(' ').nth(1) == Some(dev))
        })
        .map(str::to_string)
        .collect()
}

/// A config-2 tree with `ud` as its user data as an ext4 image `dir/name.ext4` (this kernel
/// mounts ext4; iso9660 and vfat may be missing, and mount mode is the same for any type).
fn config2_ext4(dir: &Path, name: &str, ud: &[u8]) -> std::path::PathBuf {
    require_tool("mkfs.ext4");
    let tree = config2_tree(dir, name, ud);
    let img = dir.join(format!("{name}.ext4"));
    fs::File::create(&img)
        .unwrap()
        .set_len(ud.len() as u64 * 2 + (16 << 20))
        .unwrap();
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "config-2", "-d"])
        .arg(&tree)
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "mkfs.ext4: {}", text(&o));
    fs::remove_dir_all(&tree).unwrap();
    img
}

#[test]
fn a_large_script_through_mount_mode_is_streamed_and_no_mount_is_left() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();

    let small = config2_ext4(dir.path(), "small", b"#!/bin/sh\ntrue\n");
    let small_dev = Loop::attach(&small);
    let root = scratch_root();
    let (o, base) = run_measured_with(
        &small_dev.dev,
        root.path(),
        dir.path(),
        &["--mount"],
        Some(&tmp),
    );
    assert!(o.status.success(), "{}", text(&o));

    let ud = large_script(32 << 20, "middle");
    let big = config2_ext4(dir.path(), "big", &ud);
    let dev = Loop::attach(&big);
    let root = scratch_root();
    let (o, rss) = run_measured_with(&dev.dev, root.path(), dir.path(), &["--mount"], Some(&tmp));
    assert!(o.status.success(), "{}", text(&o));
    assert_stored(root.path(), &ud);
    eprintln!("--mount: peak RSS {rss} KiB (32 MiB script), {base} KiB (one-line script)");
    // Read whole before the unmount, the script would add 32 MiB; kept open on the detached
    // mount, only its chunks.
    assert!(
        rss < base + 4096,
        "--mount: peak RSS {rss} KiB with a 32 MiB script, {base} KiB with a one-line script"
    );
    assert_eq!(mounts_of(&dev.dev), Vec::<String>::new(), "a mount left");

    // A re-run (nothing to change), the process watched directly: its mount point is gone.
    let child = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--log-level", "error", "--defer-scripts"])
        .args(["--network-backend", "networkd", "--mount", "--source"])
        .arg(&dev.dev)
        .arg("--root")
        .arg(root.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert_eq!(mounts_of(&dev.dev), Vec::<String>::new(), "a mount left");
    let prefix = format!("mnt.{pid}.");
    if Path::new("/run/primer").is_dir() {
        let left: Vec<_> = entries(Path::new("/run/primer"))
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "a mount point left");
    }
    assert_eq!(entries(&tmp), Vec::<String>::new());
}

fn show_fails(source: &Path, tmp: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["show", "--source"])
        .arg(source)
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(entries(tmp), Vec::<String>::new(), "a file left");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn hostile_packed_drives_fail_naming_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let name = |p: &Path| p.display().to_string();

    // A bomb: 200 MiB of zeros (a few hundred KiB packed), past the 128 MiB cap.
    let zeros = vec![0u8; 200 << 20];
    let bomb = gzip(&zeros);
    drop(zeros);
    for (form, bytes) in [("gzip", bomb.clone()), ("base64", base64_lines(&bomb))] {
        let p = dir.path().join(format!("bomb.{form}"));
        fs::write(&p, bytes).unwrap();
        let err = show_fails(&p, &tmp);
        assert!(
            err.contains(&name(&p)) && err.contains("total bytes limit"),
            "{form}: {err}"
        );
    }

    let gz = gzip(&fs::read(config2_iso(dir.path(), b"#!/bin/sh\ntrue\n")).unwrap());
    for (form, bytes) in [
        ("gzip", gz[..gz.len() / 2].to_vec()),
        ("base64", base64_lines(&gz[..gz.len() / 2])),
    ] {
        let p = dir.path().join(format!("cut.{form}"));
        fs::write(&p, bytes).unwrap();
        let err = show_fails(&p, &tmp);
        assert!(
            err.contains(&name(&p)) && err.contains("gzip"),
            "{form}: {err}"
        );
    }

    let mut bad = base64_lines(&gz);
    let at = bad.len() / 2;
    bad[at] = b'!';
    let p = dir.path().join("bad.base64");
    fs::write(&p, &bad).unwrap();
    let err = show_fails(&p, &tmp);
    assert!(
        err.contains(&name(&p)) && err.contains("not valid base64"),
        "{err}"
    );
}

#[test]
fn a_packed_drive_without_a_writable_temporary_directory_is_read_in_memory() {
    // TMPDIR names a directory that does not exist (as /var/tmp on a read-only root, or a
    // user who may not write it): the image is unpacked into memory, with a warning naming the
    // directory, rather than the drive refused.
    let dir = tempfile::tempdir().unwrap();
    let packed = packed_drive(&dir.path().join("d"), b"#!/bin/sh\necho packed\n", true);
    let missing = dir.path().join("no-such-dir");
    let o = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["show", "--source"])
        .arg(&packed)
        .env("TMPDIR", &missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(ID), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("held in memory"),
        "{err}"
    );
    assert!(!missing.exists());
}

#[test]
fn a_packed_bomb_unpacked_into_memory_is_refused_by_the_same_cap() {
    // The memory fallback (no writable temporary directory) keeps the unpacked cap: 200 MiB
    // of zeros gzip'd is refused naming the file, and the process's own memory (the memfd's
    // pages are the kernel's, not in its RSS) stays below the cap.
    let dir = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 200 << 20];
    let bomb = gzip(&zeros);
    drop(zeros);
    let p = dir.path().join("bomb.gz");
    fs::write(&p, bomb).unwrap();
    let missing = dir.path().join("no-such-dir");
    let report = dir.path().join("time.txt");
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args(["show", "--source"])
        .arg(&p)
        .env("TMPDIR", &missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&p.display().to_string()) && err.contains("total bytes limit"),
        "{err}"
    );
    // GNU time's last line (a failed command's status line comes first).
    let rss: u64 = fs::read_to_string(&report)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The cap (128 MiB) in memory at most, plus the process.
    assert!(rss < 150 << 10, "peak RSS {rss} KiB");
}
