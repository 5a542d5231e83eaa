//! Hostile drives: drive readers, messages, lookups and steps that claim one path.
//!
//! Every image is built by a real producer (mkfs.vfat + mcopy, genisoimage, sgdisk), then cut
//! or byte-patched the way a broken or hostile drive would be, and read by the real binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(src: &Path, root: &Path) -> std::process::Output {
    primer(&["run", "--source", s(src), "--root", s(root)])
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().expect("run producer");
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
}

/// A FAT image of `kib` KiB (`fat`: 12, 16 or 32) holding the `openstack/` tree under `tree`.
fn fat_image(tree: &Path, out: &Path, kib: u32, fat: u32) {
    require_tool_from("mkfs.vfat", "dosfstools");
    require_tool_from("mcopy", "mtools");
    let _ = fs::remove_file(out);
    sh(Command::new("mkfs.vfat").args([
        "-F",
        &fat.to_string(),
        "-C",
        "-n",
        "CONFIG-2",
        s(out),
        &kib.to_string(),
    ]));
    sh(Command::new("mcopy").args(["-s", "-i", s(out), s(&tree.join("openstack")), "::/"]));
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Byte offset of the first data cluster (cluster 2) of a FAT12/16 image.
fn fat_data_start(b: &[u8]) -> usize {
    let bps = le16(b, 11);
    let root_sectors = (le16(b, 17) * 32).div_ceil(bps);
    ((le16(b, 14) + u64::from(b[16]) * le16(b, 22) + root_sectors) * bps) as usize
}

fn drive_tree(meta: &serde_json::Value) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write_drive_tree(t.path(), meta);
    t
}

#[test]
fn truncated_fat_directory_is_an_error_naming_device_and_directory() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, &sample_meta("fat", &[ED]));
    let img = t.path().join("fat.img");
    fat_image(&tree, &img, 4096, 12);
    let full = fs::read(&img).unwrap();
    // The root directory (before the data area) still lists `openstack`; its own cluster, the
    // first of the data area, is cut away.
    let cut = t.path().join("cut.img");
    fs::write(&cut, &full[..fat_data_start(&full) + 100]).unwrap();
    let root = scratch_root();
    let before = snapshot(root.path());
    let o = run(&cut, root.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains(s(&cut)), "names the device: {err}");
    assert!(err.contains("\"openstack\""), "names the directory: {err}");
    assert!(err.contains("directory"), "{err}");
    assert!(err.contains("lies beyond the end of the device"), "{err}");
    assert_eq!(snapshot(root.path()), before, "nothing written");
}

#[test]
fn truncated_fat_file_data_is_an_error_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, &sample_meta("fat", &[ED]));
    let img = t.path().join("fat.img");
    fat_image(&tree, &img, 4096, 12);
    let full = fs::read(&img).unwrap();
    let at = full
        .windows(9)
        .rposition(|w| w == b"injected\n")
        .expect("file data in the image");
    // Cut inside the last file's data: whichever entry the walk reaches first past the cut
    // (that file, or a directory stored after it) is an error naming it, never a short file.
    let cut = t.path().join("cut.img");
    fs::write(&cut, &full[..at + 4]).unwrap();
    let o = primer(&["show", "--source", s(&cut)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains(": \"openstack/") && err.contains("\": corrupt filesystem: "),
        "names the entry: {err}"
    );
    assert!(err.contains("lies beyond the end of the device"), "{err}");
    assert!(!err.contains("cluster chain holds"), "{err}");
}

#[test]
fn fat_cluster_loop_is_reported_as_such() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let mut meta = sample_meta("loop", &[ED]);
    // Bigger than one 2 KiB cluster, so the chain has a second link to point back.
    meta["meta"]["pad"] = "x".repeat(5000).into();
    write_drive_tree(&tree, &meta);
    let img = t.path().join("fat16.img");
    fat_image(&tree, &img, 20480, 16);
    let mut b = fs::read(&img).unwrap();
    // mcopy's short name for meta_data.json; the first of the two copies is `latest`'s or the
    // dated one's: loop both.
    let mut looped = 0;
    let mut from = 0;
    while let Some(i) = b[from..].windows(11).position(|w| w == b"META_D~1JSO") {
        let e = from + i;
        let first = le16(&b, e + 26) as usize;
        let fat = (le16(&b, 14) * le16(&b, 11)) as usize;
        // FAT16: the first cluster's next link points to itself.
        b[fat + 2 * first..fat + 2 * first + 2].copy_from_slice(&(first as u16).to_le_bytes());
        looped += 1;
        from = e + 11;
    }
    assert!(looped >= 1, "short name entry found");
    fs::write(&img, &b).unwrap();
    let o = primer(&["show", "--source", s(&img)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("cluster chain loops"), "{err}");
    assert!(err.contains("meta_data.json"), "names the file: {err}");
    assert!(!err.contains("invalid JSON"), "{err}");
}

#[test]
fn corrupt_fat_boot_sector_is_not_called_iso9660() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, &sample_meta("bpb", &[]));
    let img = t.path().join("fat.img");
    fat_image(&tree, &img, 4096, 12);
    let full = fs::read(&img).unwrap();
    for (at, value, what) in [
        (11, 0u8, "bytes_per_sector"),
        (16, 0, "fats"),
        (13, 3, "sectors_per_cluster"),
    ] {
        let mut b = full.clone();
        b[at] = value;
        if at == 11 {
            b[12] = 0;
        }
        let p = t.path().join(format!("bad{at}.img"));
        fs::write(&p, &b).unwrap();
        let o = primer(&["show", "--source", s(&p)]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = stderr(&o);
        assert!(
            err.contains("FAT boot sector") && err.contains(what),
            "{err}"
        );
        assert!(!err.contains("ISO9660"), "{err}");
    }
}

#[test]
fn empty_volume_says_what_was_read() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("tree/openstack")).unwrap();
    let img = t.path().join("empty.img");
    fat_image(&t.path().join("tree"), &img, 2048, 12);
    let o = primer(&["show", "--source", s(&img)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("no known format found (vfat volume holding 0 file(s)"),
        "{}",
        text(&o)
    );
}

#[test]
fn gpt_entry_beyond_the_disk_is_dropped_with_its_reason() {
    require_tool_from("sgdisk", "gdisk");
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, &sample_meta("gpt", &[ED]));
    let fat = t.path().join("fat.img");
    fat_image(&tree, &fat, 3000, 12);
    let disk = t.path().join("disk.img");
    fs::File::create(&disk).unwrap().set_len(8 << 20).unwrap();
    sh(Command::new("sgdisk").args([
        "-n",
        "1:2048:+2M",
        "-n",
        "2:0:0",
        "-c",
        "2:config-2",
        s(&disk),
    ]));
    let mut d = fs::read(&disk).unwrap();
    let f = fs::read(&fat).unwrap();
    d[6144 * 512..6144 * 512 + f.len()].copy_from_slice(&f);
    // Whole: the partition is found and read.
    fs::write(&disk, &d).unwrap();
    let o = primer(&["show", "--source", s(&disk)]);
    assert!(o.status.success(), "{}", text(&o));
    // Cut at 7 MiB: the entry ends past the disk and is dropped, saying so.
    let cut = t.path().join("cut.img");
    fs::write(&cut, &d[..7 << 20]).unwrap();
    let o = primer(&["show", "--source", s(&cut)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("GPT entry 2 ignored: bytes 3145728..8371712 lie beyond the end of the disk (7340032 bytes)"),
        "{err}"
    );
    assert!(
        err.contains("2: ignored (bytes 3145728..8371712 lie beyond the end of the disk"),
        "the final error gives the reason too: {err}"
    );
}

#[test]
fn nocloud_host_name_warning_names_meta_data() {
    let src = tempfile::tempdir().unwrap();
    fs::write(
        src.path().join("meta-data"),
        "instance-id: nc-1\nlocal-hostname: Bad_Name.example\n",
    )
    .unwrap();
    fs::write(src.path().join("user-data"), "#!/bin/sh\ntrue\n").unwrap();
    let root = scratch_root();
    let o = primer(&["plan", "--source", s(src.path()), "--root", s(root.path())]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("meta-data: local-hostname: \"Bad_Name.example\""),
        "{out}"
    );
    assert!(!out.contains("meta_data.json"), "{out}");
}

#[test]
fn ovf_host_name_warning_names_ovf_env() {
    let src = tempfile::tempdir().unwrap();
    fs::write(
        src.path().join("ovf-env.xml"),
        r#"<?xml version="1.0"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PropertySection>
    <Property oe:key="instance-id" oe:value="ovf-1"/>
    <Property oe:key="hostname" oe:value="Web_01"/>
  </PropertySection>
</Environment>
"#,
    )
    .unwrap();
    let root = scratch_root();
    let o = primer(&["plan", "--source", s(src.path()), "--root", s(root.path())]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("ovf-env.xml: hostname: \"Web_01\""), "{out}");
    assert!(!out.contains("meta_data.json"), "{out}");
}

#[test]
fn drive_names_with_newlines_cannot_forge_log_lines() {
    let src = drive_tree(&sample_meta("logs", &[ED]));
    let evil = "x\n ERROR forged line\u{1b}[2J";
    fs::write(src.path().join("openstack/latest").join(evil), b"x").unwrap();
    let mut meta = sample_meta("logs", &[ED]);
    meta["files"] = serde_json::json!([
        {"path": "/etc/a", "content_path": "/content/missing\n ERROR forged content path"}
    ]);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            src.path().join("openstack").join(v).join("meta_data.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
    }
    let root = scratch_root();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = stderr(&o);
    for line in err.lines() {
        assert!(
            !line.trim_start().starts_with("ERROR forged"),
            "forged: {err}"
        );
        assert!(!line.contains('\u{1b}'), "raw escape: {err}");
    }
    assert!(
        err.contains(r#""openstack/latest/x\n ERROR forged line\u{1b}[2J": skipped"#),
        "the name is shown escaped: {err}"
    );
    assert!(
        err.contains(r"missing\n ERROR forged content path"),
        "{err}"
    );
}

/// An OpenStack tree with `files` injected files (content paths spelt in upper case, so every
/// lookup goes through the case-insensitive path) and `keys` distinct ed25519 keys.
fn big_drive(dir: &Path, files: usize, keys: usize) {
    use base64::Engine;
    fs::create_dir_all(dir.join("openstack/latest")).unwrap();
    fs::create_dir_all(dir.join("openstack/content")).unwrap();
    let mut list = Vec::new();
    for i in 0..files {
        fs::write(
            dir.join(format!("openstack/content/{i:04}")),
            format!("{i}\n"),
        )
        .unwrap();
        list.push(serde_json::json!({"path": format!("/srv/f/{i:04}"), "content_path": format!("/CONTENT/{i:04}")}));
    }
    let mut lines = String::new();
    for i in 0..keys {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_be_bytes());
        blob.extend_from_slice(&k);
        let b = base64::engine::general_purpose::STANDARD.encode(&blob);
        lines.push_str(&format!("ssh-ed25519 {b} k{i}\n"));
    }
    let meta = serde_json::json!({
        "uuid": "big-drive", "hostname": "big", "files": list, "public_keys": {"all": lines},
    });
    fs::write(
        dir.join("openstack/latest/meta_data.json"),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
}

/// CPU seconds (user + system) the real binary spends planning `src` into `root`: the least of
/// two runs, from /usr/bin/time (the child's own rusage, not shared with parallel tests).
fn plan_cpu(src: &Path, root: &Path, out: &Path) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..2 {
        let o = Command::new("/usr/bin/time")
            .args(["-f", "%U %S", "-o", s(out)])
            .arg(env!("CARGO_BIN_EXE_primer"))
            .args(["plan", "--json", "--source", s(src), "--root", s(root)])
            .output()
            .expect("run /usr/bin/time");
        assert!(o.status.success(), "{}", text(&o));
        let v = json(&o);
        assert!(v["steps"].as_array().unwrap().len() > 1000);
        let t = fs::read_to_string(out).unwrap();
        let cpu: f64 = t
            .split_whitespace()
            .rev()
            .take(2)
            .map(|x| x.parse::<f64>().unwrap())
            .sum();
        best = best.min(cpu);
    }
    best
}

#[test]
fn thousands_of_injected_files_and_keys_plan_in_linear_time() {
    require_tool_from("/usr/bin/time", "time");
    let t = tempfile::tempdir().unwrap();
    let (small, large): (PathBuf, PathBuf) = (t.path().join("small"), t.path().join("large"));
    big_drive(&small, 4000, 32_000);
    big_drive(&large, 8000, 64_000);
    let root = scratch_root();
    let out = t.path().join("time.txt");
    // Every content path resolves (case-insensitively) and every key is kept.
    let o = primer(&["show", "--json", "--source", s(&large)]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    let files = v["instance"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 8000);
    assert!(
        files.iter().all(|f| !f["content"].is_null()),
        "all resolved"
    );
    assert_eq!(v["instance"]["ssh_keys"].as_array().unwrap().len(), 64_000);

    let a = plan_cpu(&small, root.path(), &out);
    let b = plan_cpu(&large, root.path(), &out);
    // Quadratic stages took 37 s (files) and 16 s (keys) here; a debug build plans the large
    // drive in about half a second of CPU.
    assert!(b < 3.0, "8,000 files and 64k keys: {b:.2} s of CPU");
    // Twice the input, at most ~2.5 times the work (+ a little for timer resolution).
    assert!(b <= 2.5 * a + 0.1, "scaling: {a:.2} s -> {b:.2} s");
}

#[test]
fn injected_file_over_authorized_keys_is_refused_and_named() {
    let mut meta = sample_meta("claim", &[ED]);
    meta["files"] = serde_json::json!([
        {"path": "/root/.ssh/authorized_keys", "content_path": "/content/0000"},
        {"path": "/etc/hostname", "content_path": "/content/0000"},
    ]);
    let src = drive_tree(&meta);
    let root = scratch_root();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("/root/.ssh/authorized_keys: claimed by step \"file:root/.ssh/authorized_keys\" (injected file) and by primer's step ssh-keys"),
        "{out}"
    );
    assert!(
        out.contains("/etc/hostname: claimed by step \"file:etc/hostname\" (injected file) and by primer's step hostname"),
        "{out}"
    );
    let keys = fs::read_to_string(root.path().join("root/.ssh/authorized_keys")).unwrap();
    assert!(keys.contains(ED) && !keys.contains("injected"), "{keys}");
    assert_eq!(
        fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
        "claim\n"
    );
    // The refused step is not recorded as applied: a re-run changes nothing and warns again.
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(text(&o).contains("claimed by step"), "{}", text(&o));
}

#[test]
fn write_files_over_etc_hostname_is_refused_and_named() {
    let src = drive_tree(&sample_meta("primer-wins", &[ED]));
    let ud = "#cloud-config\nwrite_files:\n  - path: /etc/hostname\n    content: \"evil\\n\"\n  - path: /etc/motd\n    content: \"hello\\n\"\n";
    for v in ["latest", "2018-08-27"] {
        fs::write(src.path().join("openstack").join(v).join("user_data"), ud).unwrap();
    }
    let root = scratch_root();
    // write_files entries are owned by root:root: the target needs the group.
    fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("user-data: write_files: /etc/hostname: claimed by step \"write-file:0:etc/hostname\" (write_files entry) and by primer's step hostname"),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
        "primer-wins\n"
    );
    assert_eq!(
        fs::read_to_string(root.path().join("etc/motd")).unwrap(),
        "hello\n",
        "other write_files entries still land"
    );
}

#[test]
fn invalid_instance_id_is_a_refusal_exit_1() {
    let mut meta = sample_meta("ok", &[ED]);
    meta["uuid"] = "../evil\nid".into();
    let src = drive_tree(&meta);
    let root = scratch_root();
    let before = snapshot(root.path());
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("not usable as a directory name"), "{out}");
    assert!(out.contains(r#""../evil\nid""#), "escaped: {out}");
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn key_options_follow_openssh_quoting() {
    let quoted = format!("command=\"echo a b\",no-pty,from=\"10.0.0.0/8\" {ED}");
    let unterminated = format!("command=\"echo a b,no-pty {ED2}");
    let unquoted = format!("command=echo {ED2}");
    let src = drive_tree(&sample_meta("opts", &[&quoted, &unterminated, &unquoted]));
    let root = scratch_root();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let keys = fs::read_to_string(root.path().join("root/.ssh/authorized_keys")).unwrap();
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 3, "{keys}");
    assert_eq!(lines[1], quoted, "kept verbatim");
    let out = text(&o);
    assert!(
        out.contains("public_keys: key 2 refused: options: unterminated double quote"),
        "{out}"
    );
    assert!(
        out.contains("key 3 refused: options: option 1 has a value outside double quotes"),
        "{out}"
    );
    if Command::new("ssh-keygen").arg("-?").output().is_ok() {
        // OpenSSH reads the installed file the same way.
        let o = Command::new("ssh-keygen")
            .args([
                "-l",
                "-f",
                s(&root.path().join("root/.ssh/authorized_keys")),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    }
}

#[test]
fn host_name_with_newline_lands_as_one_dns_name() {
    let src = drive_tree(&sample_meta("web\n10.0.0.1 evil.example", &[]));
    let root = scratch_root();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let hosts = fs::read_to_string(root.path().join("etc/hosts")).unwrap();
    assert_eq!(
        hosts.lines().filter(|l| l.contains("primer")).count(),
        1,
        "{hosts}"
    );
    assert!(
        !hosts.lines().any(|l| l.starts_with("10.0.0.1")),
        "no injected line: {hosts}"
    );
    let name = fs::read_to_string(root.path().join("etc/hostname")).unwrap();
    assert!(
        name.trim_end()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "{name:?}"
    );
    assert!(
        text(&o).contains(r#"meta_data.json: hostname: "web\n10.0.0.1 evil.example""#),
        "{}",
        text(&o)
    );
}

#[test]
fn iso_content_path_lookup_is_case_insensitive_and_level1() {
    // genisoimage without Rock Ridge or Joliet: 8.3 upper-case names only.
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, &sample_meta("lvl1", &[ED]));
    let iso = t.path().join("l1.iso");
    make_iso(&tree, &iso, IsoTool::Level1);
    let o = primer(&["show", "--json", "--source", s(&iso)]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["instance"]["hostname"], "lvl1");
    assert!(
        !v["instance"]["files"][0]["content"].is_null(),
        "content/0000 found through its level-1 name: {v}"
    );
}

/// Thousands of injected files naming one path (the drive chooses the count): the last write
/// is the file's content, every earlier one is skipped naming it, and a re-run changes
/// nothing (they shared one step id: the record vouched for the last only, and the file was
/// rewritten and then kept with the wrong content). Entries whose path carries a newline, a
/// control character or `..` are refused with a warning and never become the "last" write.
#[test]
fn thousands_of_writes_of_one_path_keep_the_last_and_converge() {
    let n = 4000;
    let mut meta = sample_meta("many", &[ED]);
    let mut files: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"path": "/srv/one", "content_path": format!("/content/000{}", i % 2)}))
        .collect();
    for bad in ["/srv/one\n", "/srv/one\u{7}", "/srv/../srv/one"] {
        files.push(serde_json::json!({"path": bad, "content_path": "/content/0000"}));
    }
    meta["files"] = serde_json::Value::Array(files);
    let src = drive_tree(&meta);
    fs::write(src.path().join("openstack/content/0001"), b"last\n").unwrap();
    let root = scratch_root();
    for n_run in 0..2 {
        let o = run(src.path(), root.path());
        assert_eq!(
            o.status.code(),
            Some(if n_run == 0 { 0 } else { 10 }),
            "{}",
            stderr(&o)
        );
        assert_eq!(fs::read(root.path().join("srv/one")).unwrap(), b"last\n");
        let out = String::from_utf8_lossy(&o.stdout);
        let skipped = out
            .matches("written again by step \"file:srv/one\" later in this run")
            .count();
        assert_eq!(skipped, n - 1, "run {n_run}");
        let warned = text(&o);
        assert!(warned.contains("files"), "{warned}");
        assert_eq!(
            warned.matches("warning: meta_data.json: files:").count(),
            3,
            "{warned}"
        );
    }
}
