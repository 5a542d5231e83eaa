//! Large drive files (issue 15, bounded memory): a multi-MiB user-data script and injected file
//! on a real ISO (genisoimage, as nova builds it) are written as the drive holds them, a re-run
//! compares them without rewriting (the host facts measure them: length and digest), and a drive
//! whose large files changed (same length, other bytes) rewrites them. Peak RSS itself is a
//! benchmark figure (`benches/memory.sh`), not a test.

mod common;

use std::fs;
use std::path::Path;

use common::*;

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

/// A script of `len` bytes whose last comment byte is `tail`.
fn script(len: usize, tail: u8) -> Vec<u8> {
    let mut s = b"#!/bin/sh\n".to_vec();
    let line = format!("# {}\n", "x".repeat(76));
    while s.len() + line.len() + 8 < len {
        s.extend_from_slice(line.as_bytes());
    }
    s.extend_from_slice(b"# ");
    s.push(tail);
    s.extend_from_slice(b"\ntrue\n");
    s
}

/// Injected content of `len` bytes (binary, every byte value) seeded by `seed`.
fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn build(dir: &Path, iso: &Path, ud: &[u8], injected: &[u8]) {
    let tree = dir.join("tree");
    let _ = fs::remove_dir_all(&tree);
    write_drive_tree(&tree, &sample_meta("large", &[]));
    for v in ["latest", "2018-08-27"] {
        fs::write(tree.join("openstack").join(v).join("user_data"), ud).unwrap();
    }
    fs::write(tree.join("openstack/content/0000"), injected).unwrap();
    let _ = fs::remove_file(iso);
    make_iso(&tree, iso, IsoTool::Nova);
}

fn run(iso: &Path, root: &Path) -> std::process::Output {
    primer(&[
        "run",
        "--log-level",
        "error",
        "--defer-scripts",
        "--network-backend",
        "networkd",
        "--source",
        iso.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ])
}

fn written(root: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let inst = root.join("var/lib/primer/instance").join(ID);
    (
        fs::read(inst.join("scripts/20-user-part-001")).unwrap(),
        fs::read(inst.join("drive/openstack/latest/user_data")).unwrap(),
        fs::read(root.join("etc/injected")).unwrap(),
        fs::read(inst.join("drive/openstack/content/0000")).unwrap(),
    )
}

#[test]
fn large_script_and_injected_file_first_run_rerun_and_update() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("drive.iso");
    let (ud, inj) = (script(3 << 20, b'a'), blob((2 << 20) + 123, 1));
    build(dir.path(), &iso, &ud, &inj);
    let root = scratch_root();

    // First run: every copy equals the drive's bytes.
    let o = run(&iso, root.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        written(root.path()),
        (ud.clone(), ud.clone(), inj.clone(), inj.clone())
    );

    // Re-run, drive unchanged: nothing written (the stored files were measured and equal).
    let before = snapshot(root.path());
    let o = run(&iso, root.path());
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    let mut after = snapshot(root.path());
    let mut before = before;
    before.remove(Path::new(RUN_STATUS));
    after.remove(Path::new(RUN_STATUS));
    assert_eq!(
        before, after,
        "a re-run of an unchanged drive changed the root"
    );

    // The drive changes its large files keeping their lengths: the digests differ, so the
    // script, the injected file and their local copies are rewritten.
    let (ud2, inj2) = (script(3 << 20, b'b'), blob((2 << 20) + 123, 2));
    assert_eq!((ud2.len(), inj2.len()), (ud.len(), inj.len()));
    build(dir.path(), &iso, &ud2, &inj2);
    let o = run(&iso, root.path());
    assert!(o.status.success(), "{}", text(&o));
    let (s, c, i, ic) = written(root.path());
    assert!(s == ud2 && c == ud2, "the changed script was not rewritten");
    // An injected file changed by the drive is rewritten only where it was not edited locally:
    // here it was not, so both copies follow the drive.
    assert!(
        i == inj2 && ic == inj2,
        "the changed injected file was not rewritten"
    );
}

/// 5,000 injected files into a directory the run creates (`benches/memory.sh --only
/// files5000`'s drive): that directory is built whole under a temporary name and renamed in
/// once — a handful of renames for the whole run, not one per file — every file with its
/// bytes, mode and owner; a re-run changes nothing; a drive update of one file rewrites it
/// (the directory exists now: that file alone, by its own rename).
#[test]
fn five_thousand_injected_files_land_by_one_directory_rename() {
    require_tool("strace");
    const N: usize = 5000;
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("drive.iso");
    let make = |changed: &str| {
        let tree = dir.path().join("tree");
        let _ = fs::remove_dir_all(&tree);
        let mut meta = sample_meta("large", &[]);
        let files: Vec<_> = (0..N)
            .map(|i| {
                serde_json::json!({
                    "path": format!("/srv/injected/f{i:05}"),
                    "content_path": format!("/content/{i:04x}")
                })
            })
            .collect();
        meta["files"] = serde_json::Value::Array(files);
        write_drive_tree(&tree, &meta);
        for i in 0..N {
            let body = if i == 7 {
                changed.to_string()
            } else {
                format!("injected file {i}\n")
            };
            fs::write(tree.join(format!("openstack/content/{i:04x}")), body).unwrap();
        }
        let _ = fs::remove_file(&iso);
        make_iso(&tree, &iso, IsoTool::Nova);
    };
    make("injected file 7\n");
    let root = scratch_root();
    let log = dir.path().join("strace.log");
    let o = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=rename,renameat,renameat2",
        ])
        .arg("-o")
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--log-level", "error", "--defer-scripts"])
        .args(["--network-backend", "networkd", "--source"])
        .arg(&iso)
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let renames = fs::read_to_string(&log).unwrap().lines().count();
    assert!(renames < 30, "{renames} renames for {N} files");
    let inj = root.path().join("srv/injected");
    let names: Vec<_> = fs::read_dir(&inj).unwrap().flatten().collect();
    assert_eq!(names.len(), N);
    for i in [0, 7, N - 1] {
        let p = inj.join(format!("f{i:05}"));
        assert_eq!(
            fs::read(&p).unwrap(),
            format!("injected file {i}\n").as_bytes()
        );
    }
    let snap = snapshot(root.path());
    assert!(
        snap.keys()
            .all(|p| !p.to_string_lossy().contains(".primer-tmp.")),
        "a temporary name was left"
    );
    let (mode, uid, gid, ..) = snap[Path::new("srv/injected/f04999")];
    assert_eq!((mode & 0o7777, uid, gid), (0o644, 0, 0));
    let (mode, ..) = snap[Path::new("srv/injected")];
    assert_eq!(mode & 0o7777, 0o755);

    // Re-run, drive unchanged: nothing written.
    let o = run(&iso, root.path());
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    let mut after = snapshot(root.path());
    let mut before = snap;
    before.remove(Path::new(RUN_STATUS));
    after.remove(Path::new(RUN_STATUS));
    assert!(
        before == after,
        "a re-run of an unchanged drive changed the root"
    );

    // One file changed on the drive: rewritten in the existing directory.
    make("changed\n");
    let o = run(&iso, root.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fs::read(inj.join("f00007")).unwrap(), b"changed\n");
    assert_eq!(fs::read(inj.join("f00008")).unwrap(), b"injected file 8\n");
    assert_eq!(fs::read_dir(&inj).unwrap().count(), N);
}

/// A drive of `user_data` (and the sample meta-data) as an ISO at `iso`.
fn build_ud(dir: &Path, iso: &Path, ud: &str) {
    let tree = dir.join("tree");
    let _ = fs::remove_dir_all(&tree);
    write_drive_tree(&tree, &sample_meta("large", &[]));
    for v in ["latest", "2018-08-27"] {
        fs::write(tree.join("openstack").join(v).join("user_data"), ud).unwrap();
    }
    let _ = fs::remove_file(iso);
    make_iso(&tree, iso, IsoTool::Nova);
}

/// A first run then a re-run of `iso` on a fresh root: the re-run changes nothing (the record
/// holds exactly what is on the disk). Returns the root.
fn converges(iso: &Path) -> tempfile::TempDir {
    let root = scratch_root();
    // `write_files` entries are owned by root:root: the group must exist in the target.
    fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    // `/srv` exists: the directory the run creates is the one named in the test.
    fs::create_dir(root.path().join("srv")).unwrap();
    let o = run(iso, root.path());
    assert!(o.status.success(), "{}", text(&o));
    let mut before = snapshot(root.path());
    assert!(
        before
            .keys()
            .all(|p| !p.to_string_lossy().contains(".primer-tmp.")),
        "a temporary name was left"
    );
    let o = run(iso, root.path());
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    let mut after = snapshot(root.path());
    before.remove(Path::new(RUN_STATUS));
    after.remove(Path::new(RUN_STATUS));
    assert!(before == after, "a re-run changed the root");
    root
}

/// Review of 4356b289, finding 1: a new directory with many files, one path written twice
/// and one appended to: each lands as the per-file way gives it (the last write wins, the
/// append builds on the earlier content), and a re-run changes nothing — the record claims
/// no file the disk lacks.
#[test]
fn a_new_directory_with_a_path_written_twice_and_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("drive.iso");
    let mut ud = String::from("#cloud-config\nwrite_files:\n");
    for i in 0..10 {
        ud.push_str(&format!(
            "  - {{path: /srv/many/f{i:02}, content: \"{i}\\n\"}}\n"
        ));
    }
    ud.push_str("  - {path: /srv/many/f03, content: \"second\\n\"}\n");
    ud.push_str("  - {path: /srv/many/log, content: \"a\\n\"}\n");
    ud.push_str("  - {path: /srv/many/log, content: \"b\\n\", append: true}\n");
    build_ud(dir.path(), &iso, &ud);
    let root = converges(&iso);
    let many = root.path().join("srv/many");
    assert_eq!(fs::read(many.join("f03")).unwrap(), b"second\n");
    assert_eq!(fs::read(many.join("f04")).unwrap(), b"4\n");
    assert_eq!(fs::read(many.join("log")).unwrap(), b"a\nb\n");
    assert_eq!(fs::read_dir(&many).unwrap().count(), 11);
}

/// Finding 3: a new directory whose name leaves no room for its temporary name
/// (`.NAME.primer-tmp.PID.SEQ` over 255 bytes) gets its files one by one: the run converges.
#[test]
fn a_new_directory_with_a_long_name_converges() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("drive.iso");
    let name = "n".repeat(240);
    let mut ud = String::from("#cloud-config\nwrite_files:\n");
    for i in 0..9 {
        ud.push_str(&format!(
            "  - {{path: /srv/{name}/f{i}, content: \"{i}\\n\"}}\n"
        ));
    }
    build_ud(dir.path(), &iso, &ud);
    let root = converges(&iso);
    let long = root.path().join("srv").join(&name);
    assert_eq!(fs::read(long.join("f8")).unwrap(), b"8\n");
    assert_eq!(fs::read_dir(&long).unwrap().count(), 9);
}
