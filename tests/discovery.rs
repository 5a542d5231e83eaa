//! Discovery on real media: drives built by real producers (genisoimage, xorriso, mkfs.vfat +
//! mcopy, sgdisk, sfdisk, mkfs.ext4), attached as real loop devices (never with `-P`: this
//! kernel has no partition support, so primer reads the tables itself), probed through a sysfs
//! mirror holding just the test's devices (other tests' loop devices would be duplicates), and
//! applied by the real binary. Covers kinds and labels, partitions, ranking, the trust policy
//! (duplicates, DMI binding, pinning), the bounded wait and mount mode's machinery.
//!
//! The producers here are cross-checks (discovery against what other tools write), so they
//! stay; tests that only need *a* drive use `common::make_drive` (primer make-drive).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const UUID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

fn run_tool(prog: &str, args: &[&str]) {
    require_tool(prog);
    let o = Command::new(prog)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{prog} {args:?} failed: {}", text(&o));
}

fn openstack_tree(dir: &Path, hostname: &str) -> PathBuf {
    let tree = dir.join("tree");
    write_drive_tree(&tree, &sample_meta(hostname, &[ED]));
    tree
}

fn iso(tree: &Path, out: &Path, label: &str) {
    run_tool(
        "genisoimage",
        &[
            "-quiet",
            "-J",
            "-r",
            "-V",
            label,
            "-o",
            out.to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
}

/// A 16 MiB FAT image made by mkfs.vfat (label `label`, or none) holding `tree` (mcopy).
fn vfat(tree: &Path, out: &Path, label: Option<&str>) {
    let _ = fs::remove_file(out);
    let mut args = vec!["-C", out.to_str().unwrap()];
    if let Some(l) = label {
        args.extend(["-n", l]);
    }
    args.push("16384");
    run_tool("mkfs.vfat", &args);
    let mut m = vec!["-s", "-i", out.to_str().unwrap()];
    let entries: Vec<String> = fs::read_dir(tree)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    m.extend(entries.iter().map(String::as_str));
    m.push("::");
    run_tool("mcopy", &m);
}

/// Writes `data` into `disk` at byte `at`.
fn put(disk: &Path, at: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(disk).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(data).unwrap();
}

/// Partition starts in bytes, from sfdisk's JSON view of the table.
fn starts(disk: &Path) -> Vec<u64> {
    require_tool("sfdisk");
    let o = Command::new("sfdisk")
        .args(["-J"])
        .arg(disk)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ss = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["start"].as_u64().unwrap() * ss)
        .collect()
}

/// A 112 MiB disk: an ext4 root partition, then `config` in a partition filling the last
/// 64 MiB (Ironic's layout), GPT (sgdisk -n 0:-64M:0) or MBR (sfdisk).
fn ironic_disk(dir: &Path, config: &[u8], gpt: bool) -> PathBuf {
    let disk = dir.join(if gpt { "gpt.img" } else { "mbr.img" });
    fs::File::create(&disk).unwrap().set_len(112 << 20).unwrap();
    let d = disk.to_str().unwrap();
    if gpt {
        run_tool("sgdisk", &["-n", "1:2048:+46M", "-t", "1:8300", d]);
        run_tool("sgdisk", &["-n", "0:-64M:0", d]);
    } else {
        require_tool("sfdisk");
        let mut c = Command::new("sfdisk")
            .args(["-q", d])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(b"label: dos\nstart=2048, size=94208, type=83\nstart=98304, type=83\n")
            .unwrap();
        assert!(c.wait().unwrap().success());
    }
    let s = starts(&disk);
    assert_eq!(s.len(), 2, "two partitions");
    let root = dir.join("root.ext4");
    fs::File::create(&root).unwrap().set_len(16 << 20).unwrap();
    run_tool(
        "mkfs.ext4",
        &["-q", "-F", "-L", "root", root.to_str().unwrap()],
    );
    put(&disk, s[0], &fs::read(&root).unwrap());
    put(&disk, s[1], config);
    // sgdisk aligns the start down to 1 MiB, so "the last 64 MiB" begins a little earlier.
    assert!(
        s[1] >= (112 - 66) << 20,
        "config partition in the last 64 MiB: {s:?}"
    );
    disk
}

/// A sysfs holding just `loops` (attributes copied from the real sysfs), optionally under
/// other names (`sr0` makes a CD-ROM-class device) with a matching dev directory of symlinks.
struct Mirror {
    dir: tempfile::TempDir,
}

impl Mirror {
    fn new() -> Mirror {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        Mirror { dir }
    }

    fn sys(&self) -> String {
        self.dir.path().join("sys").display().to_string()
    }

    fn dev(&self) -> String {
        self.dir.path().join("dev").display().to_string()
    }

    /// Adds a loop device as `name`; its node in the mirror's dev directory links to the real one.
    fn add(&self, lo: &Loop, name: &str) {
        let real = Path::new("/sys/class/block").join(lo.name());
        let fake = self.dir.path().join("sys/class/block").join(name);
        fs::create_dir_all(fake.join("loop")).unwrap();
        fs::create_dir_all(fake.join("queue")).unwrap();
        for attr in [
            "ro",
            "removable",
            "dev",
            "loop/backing_file",
            "queue/logical_block_size",
        ] {
            let _ = fs::copy(real.join(attr), fake.join(attr));
        }
        // `size` last: a device with no size is skipped, so a half-copied entry is not seen.
        fs::copy(real.join("size"), fake.join("size")).unwrap();
        let _ = fs::remove_file(self.dir.path().join("dev").join(name));
        std::os::unix::fs::symlink(&lo.dev, self.dir.path().join("dev").join(name)).unwrap();
    }

    fn with(loops: &[(&Loop, &str)]) -> Mirror {
        let m = Mirror::new();
        for (lo, name) in loops {
            m.add(lo, name);
        }
        m
    }

    fn args<'a>(&'a self, sys: &'a str, dev: &'a str) -> [&'a str; 4] {
        ["--sys-root", sys, "--dev-root", dev]
    }
}

fn probe_json(m: &Mirror, extra: &[&str]) -> serde_json::Value {
    let (sys, dev) = (m.sys(), m.dev());
    let mut args = vec!["probe", "--json"];
    args.extend(m.args(&sys, &dev));
    args.extend(extra);
    let o = primer(&args);
    let v = json(&o);
    // 12 exactly when the trust policy refuses, as `run` would exit.
    let want = if v["refused"].is_null() {
        &[0, 11][..]
    } else {
        &[12][..]
    };
    assert!(
        o.status.code().is_some_and(|c| want.contains(&c)),
        "{}",
        text(&o)
    );
    v
}

fn run_probed(m: &Mirror, root: &Path, extra: &[&str]) -> std::process::Output {
    let (sys, dev) = (m.sys(), m.dev());
    let mut args = vec!["run", "--root", root.to_str().unwrap(), "--wait", "0"];
    args.extend(m.args(&sys, &dev));
    args.extend(extra);
    primer(&args)
}

fn hostname(root: &Path) -> String {
    fs::read_to_string(root.join("etc/hostname")).unwrap_or_default()
}

fn only_candidate(v: &serde_json::Value) -> &serde_json::Value {
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 1, "{v:#}");
    &c[0]
}

#[test]
fn iso_whole_device_is_found_and_applied() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.iso");
    iso(&openstack_tree(t.path(), "iso-whole"), &img, "config-2");
    let lo = Loop::attach(&img);
    let m = Mirror::with(&[(&lo, lo.name())]);
    let v = probe_json(&m, &[]);
    let c = only_candidate(&v);
    assert_eq!(c["kind"], "openstack");
    assert_eq!(c["matched"], "label");
    assert_eq!(v["selected"], lo.name());
    let root = scratch_root();
    let o = run_probed(&m, root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "iso-whole\n");
}

#[test]
fn vfat_label_only_in_the_boot_sector() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.vfat");
    let tree = openstack_tree(t.path(), "vfat-boot-label");
    vfat(&tree, &img, None);
    // mkfs.vfat without -n writes "NO NAME" and no root label entry; put the label only in the
    // boot sector, as Ironic's images carry it.
    let mut b = fs::read(&img).unwrap();
    assert_eq!(&b[54..59], b"FAT16", "a 16 MiB mkfs.vfat image is FAT16");
    b[43..54].copy_from_slice(b"CONFIG-2   ");
    fs::write(&img, &b).unwrap();

    // The library reader: label from the boot sector, long names, same bytes, no write attempt.
    let (drive, writes) = primer::media::fat::read_fat_counting_writes(
        fs::File::open(&img).unwrap(),
        "d.vfat",
        &primer::media::Limits::default(),
    )
    .unwrap();
    assert_eq!(writes, 0);
    assert_eq!(drive.label.as_deref(), Some("CONFIG-2"));
    let dir = primer::media::dir::read_dir_tree(&tree, &primer::media::Limits::default()).unwrap();
    assert_eq!(drive.files, dir.files, "FAT reader and the tree agree");

    let lo = Loop::attach(&img);
    let m = Mirror::with(&[(&lo, lo.name())]);
    let v = probe_json(&m, &[]);
    let c = only_candidate(&v);
    assert_eq!(
        (c["kind"].as_str(), c["fstype"].as_str()),
        (Some("openstack"), Some("vfat"))
    );
    assert_eq!(c["label"], "CONFIG-2");
    let root = scratch_root();
    let o = run_probed(&m, root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "vfat-boot-label\n");
}

#[test]
fn vfat_root_label_entry_wins_and_limits_hold() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.vfat");
    let tree = openstack_tree(t.path(), "x");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(
        tree.join("a/b/c/a rather long file name with spaces.json"),
        b"{}",
    )
    .unwrap();
    vfat(&tree, &img, Some("cidata"));
    let mut b = fs::read(&img).unwrap();
    b[43..54].copy_from_slice(b"BOOTLABEL  ");
    fs::write(&img, &b).unwrap();
    let lim = primer::media::Limits::default();
    let drive =
        primer::media::fat::read_fat(fs::File::open(&img).unwrap(), "d.vfat", &lim).unwrap();
    assert_eq!(
        drive.label.as_deref(),
        Some("cidata"),
        "root entry beats boot sector"
    );
    assert!(drive
        .files
        .contains_key("a/b/c/a rather long file name with spaces.json"));
    for (lim, kind) in [
        (
            primer::media::Limits {
                max_depth: 2,
                ..lim
            },
            "directory depth",
        ),
        (
            primer::media::Limits {
                max_entries: 5,
                ..lim
            },
            "entry count",
        ),
        (
            primer::media::Limits {
                max_file_size: 10,
                ..lim
            },
            "file size",
        ),
    ] {
        let e = primer::media::fat::read_fat(fs::File::open(&img).unwrap(), "d.vfat", &lim)
            .unwrap_err();
        assert!(
            e.to_string().contains(kind) && e.to_string().contains("d.vfat"),
            "{e}"
        );
    }
}

fn ironic(gpt: bool) {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("c.iso");
    iso(&openstack_tree(t.path(), "ironic-node"), &cfg, "config-2");
    let disk = ironic_disk(t.path(), &fs::read(&cfg).unwrap(), gpt);
    let lo = Loop::attach(&disk);
    let m = Mirror::with(&[(&lo, lo.name())]);
    let v = probe_json(&m, &[]);
    let c = only_candidate(&v);
    let want = format!("{}p2", lo.name());
    assert_eq!(c["device"]["name"], want.as_str(), "{v:#}");
    assert_eq!(c["device"]["table_only"], true);
    assert_eq!(c["device"]["trailing"], true);
    assert_eq!(
        c["device"]["on_boot_disk"], true,
        "the disk holds an ext4 root"
    );
    assert_eq!(c["device"]["partition"]["number"], 2);
    if gpt {
        assert!(c["device"]["partition"]["guid"].is_string());
        assert_eq!(
            c["device"]["partition"]["type_code"],
            "0fc63daf-8483-4772-8e79-3d69d8477de4"
        );
    } else {
        assert_eq!(c["device"]["partition"]["type_code"], "0x83");
    }
    assert_eq!(
        c["reason"],
        format!(
            "label config-2 on {}/{} partition 2 (iso9660)",
            m.dev(),
            lo.name()
        )
    );
    // The ext4 root partition is listed, not a candidate.
    let devs = v["devices"].as_array().unwrap();
    assert!(devs.iter().any(|d| d["name"] == format!("{}p1", lo.name())));
    let root = scratch_root();
    let o = run_probed(&m, root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "ironic-node\n");
    // The image file itself, as --source: the partition inside is found.
    let o = primer(&["show", "--json", "--source", disk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["instance"]["instance_id"], UUID);
    assert_eq!(v["device"], format!("{} partition 2", disk.display()));
}

#[test]
fn gpt_ironic_layout_config_partition_in_the_last_64_mib() {
    ironic(true);
}

#[test]
fn mbr_ironic_layout_config_partition_in_the_last_64_mib() {
    ironic(false);
}

#[test]
fn gpt_partition_named_config_v2_with_another_label() {
    let t = tempfile::tempdir().unwrap();
    let fat = t.path().join("p.vfat");
    vfat(
        &openstack_tree(t.path(), "config-v2-node"),
        &fat,
        Some("OTHER"),
    );
    let disk = t.path().join("disk.img");
    fs::File::create(&disk).unwrap().set_len(40 << 20).unwrap();
    let d = disk.to_str().unwrap();
    run_tool(
        "sgdisk",
        &["-n", "1:2048:+8M", "-n", "2:0:+16M", "-c", "2:config-v2", d],
    );
    put(&disk, starts(&disk)[1], &fs::read(&fat).unwrap());
    let lo = Loop::attach(&disk);
    let m = Mirror::with(&[(&lo, lo.name())]);
    let v = probe_json(&m, &[]);
    let c = only_candidate(&v);
    assert_eq!(c["matched"], "partition-name");
    assert_eq!(c["label"], "OTHER");
    assert_eq!(c["kind"], "openstack", "kind from the openstack/ tree");
    assert_eq!(c["device"]["partition"]["name"], "config-v2");
    assert_eq!(c["device"]["trailing"], true);
    let root = scratch_root();
    let o = run_probed(&m, root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "config-v2-node\n");
    // Configured away: no candidate.
    let cfg = t.path().join("p.yaml");
    fs::write(&cfg, "probe:\n  gpt_names: []\n").unwrap();
    let v = probe_json(&m, &["--config", cfg.to_str().unwrap()]);
    assert!(v["candidates"].as_array().unwrap().is_empty(), "{v:#}");
}

fn nocloud_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("seed");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("meta-data"), "instance-id: i-nocloud\n").unwrap();
    fs::write(tree.join("user-data"), "#cloud-config\n").unwrap();
    tree
}

#[test]
fn nocloud_cidata_on_vfat_and_iso() {
    let t = tempfile::tempdir().unwrap();
    let tree = nocloud_tree(t.path());
    let f = t.path().join("seed.vfat");
    vfat(&tree, &f, Some("CIDATA"));
    let i = t.path().join("seed.iso");
    iso(&tree, &i, "cidata");
    for (img, fstype) in [(&f, "vfat"), (&i, "iso9660")] {
        let lo = Loop::attach(img);
        let m = Mirror::with(&[(&lo, lo.name())]);
        let v = probe_json(&m, &[]);
        let c = only_candidate(&v);
        assert_eq!(c["kind"], "nocloud", "{fstype}");
        assert_eq!(c["fstype"], fstype);
        assert_eq!(c["matched"], "label");
    }
}

#[test]
fn ovf_iso_without_label_is_found_by_its_file() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("ovf");
    fs::create_dir_all(&tree).unwrap();
    fs::write(
        tree.join("ovf-env.xml"),
        "<Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\"/>\n",
    )
    .unwrap();
    let img = t.path().join("ovf.iso");
    iso(&tree, &img, "");
    // Level-1 names too (OVF_ENV.XML;1): the file is still recognised.
    let l1 = t.path().join("ovf-l1.iso");
    run_tool(
        "genisoimage",
        &[
            "-quiet",
            "-V",
            "",
            "-o",
            l1.to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    for img in [&img, &l1] {
        let lo = Loop::attach(img);
        let m = Mirror::with(&[(&lo, "sr0")]);
        let v = probe_json(&m, &[]);
        let c = only_candidate(&v);
        assert_eq!(c["kind"], "ovf");
        assert_eq!(c["matched"], "contents");
        assert_eq!(c["device"]["class"], "cdrom");
    }
    // An unlabelled ISO without the file is nothing.
    let other = t.path().join("other.iso");
    iso(&nocloud_tree(t.path()), &other, "");
    let lo = Loop::attach(&other);
    let m = Mirror::with(&[(&lo, "sr0")]);
    assert!(probe_json(&m, &[])["candidates"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn cloudstack_drive_labelled_config_and_config_2_with_a_cloudstack_tree() {
    let t = tempfile::tempdir().unwrap();
    let tree = openstack_tree(t.path(), "cs");
    fs::create_dir_all(tree.join("cloudstack/metadata")).unwrap();
    fs::write(tree.join("cloudstack/metadata/instance-id.txt"), "i-cs\n").unwrap();
    for label in ["config", "config-2"] {
        let img = t.path().join(format!("{label}.iso"));
        iso(&tree, &img, label);
        let lo = Loop::attach(&img);
        let m = Mirror::with(&[(&lo, lo.name())]);
        let c = probe_json(&m, &[])["candidates"][0].clone();
        assert_eq!(c["kind"], "cloudstack", "{label}: {c:#}");
        assert_eq!(c["label"], label);
    }
}

#[test]
fn two_config_2_drives_are_refused_naming_both() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.iso");
    let b = t.path().join("b.iso");
    iso(&openstack_tree(t.path(), "dup"), &a, "config-2");
    iso(&t.path().join("tree"), &b, "CONFIG-2");
    let (la, lb) = (Loop::attach(&a), Loop::attach(&b));
    let m = Mirror::with(&[(&la, la.name()), (&lb, lb.name())]);
    let root = scratch_root();
    let before = snapshot(root.path());
    let o = run_probed(&m, root.path(), &[]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for l in [&la, &lb] {
        assert!(err.contains(&format!("{}/{}", m.dev(), l.name())), "{err}");
    }
    assert!(err.contains("duplicates"), "the rule is named: {err}");
    assert_eq!(snapshot(root.path()), before, "nothing written");
    let v = probe_json(&m, &[]);
    assert_eq!(v["refused"]["rule"], "duplicates");
    assert!(v["selected"].is_null());
    // Configured to take the best-ranked one.
    fs::create_dir_all(root.path().join("etc/primer")).unwrap();
    fs::write(
        root.path().join("etc/primer/primer.yaml"),
        "probe:\n  duplicates: best\n",
    )
    .unwrap();
    let o = run_probed(&m, root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_label_on_the_root_disks_partition_is_not_preferred_over_a_cdrom() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("c.iso");
    iso(&openstack_tree(t.path(), "planted"), &cfg, "config-2");
    // Root disk: ext4 root, the planted config-2 in partition 2, a data partition after it.
    let disk = t.path().join("root.img");
    fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
    let d = disk.to_str().unwrap();
    run_tool(
        "sgdisk",
        &["-n", "1:2048:+20M", "-n", "2:0:+8M", "-n", "3:0:0", d],
    );
    let s = starts(&disk);
    let rootfs = t.path().join("r.ext4");
    fs::File::create(&rootfs)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    run_tool("mkfs.ext4", &["-q", "-F", rootfs.to_str().unwrap()]);
    put(&disk, s[0], &fs::read(&rootfs).unwrap());
    put(&disk, s[1], &fs::read(&cfg).unwrap());
    let cd = t.path().join("cd.iso");
    iso(
        &openstack_tree(&t.path().join("x"), "from-cdrom"),
        &cd,
        "config-2",
    );
    let (ld, lc) = (Loop::attach(&disk), Loop::attach(&cd));
    let m = Mirror::with(&[(&ld, "vda"), (&lc, "sr0")]);
    let conf = t.path().join("best.yaml");
    fs::write(&conf, "probe:\n  duplicates: best\n").unwrap();
    let v = probe_json(&m, &["--config", conf.to_str().unwrap()]);
    let names: Vec<&str> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["device"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sr0", "vda2"], "{v:#}");
    assert_eq!(v["candidates"][1]["device"]["on_boot_disk"], true);
    assert_eq!(
        v["candidates"][1]["device"]["trailing"],
        serde_json::Value::Null
    );
    assert_eq!(v["selected"], "sr0");
    let root = scratch_root();
    let o = run_probed(&m, root.path(), &["--config", conf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "from-cdrom\n");
}

fn with_config(root: &Path, yaml: &str) {
    fs::create_dir_all(root.join("etc/primer")).unwrap();
    fs::write(root.join("etc/primer/primer.yaml"), yaml).unwrap();
}

#[test]
fn dmi_binding_match_and_mismatch_with_a_fake_sysfs_under_root() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.iso");
    iso(&openstack_tree(t.path(), "bound"), &img, "config-2");
    let src = img.to_str().unwrap();
    let dmi = |root: &Path, uuid: &str| {
        fs::create_dir_all(root.join("sys/class/dmi/id")).unwrap();
        fs::write(
            root.join("sys/class/dmi/id/product_uuid"),
            format!("{uuid}\n"),
        )
        .unwrap();
    };
    // Match, in the byte-swapped upper-case form older firmware reports.
    let root = scratch_root();
    with_config(root.path(), "probe:\n  bind_dmi_uuid: true\n");
    dmi(root.path(), "3D2C1B0A-5F4E-6140-8293-A4B5C6D7E8F9");
    let o = primer(&[
        "run",
        "--source",
        src,
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "bound\n");
    // Mismatch: refused, the rule named, nothing written.
    let root = scratch_root();
    with_config(root.path(), "probe:\n  bind_dmi_uuid: true\n");
    dmi(root.path(), "11111111-2222-3333-4444-555555555555");
    let before = snapshot(root.path());
    let o = primer(&[
        "run",
        "--source",
        src,
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(text(&o).contains("dmi-binding"), "{}", text(&o));
    assert_eq!(snapshot(root.path()), before);
    // Binding off (the default): the same machine accepts the drive.
    let root = scratch_root();
    dmi(root.path(), "11111111-2222-3333-4444-555555555555");
    let o = primer(&[
        "run",
        "--source",
        src,
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn first_boot_pinning_across_runs() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.iso");
    iso(&openstack_tree(t.path(), "pinned"), &a, "config-2");
    let b = t.path().join("b.iso");
    iso(
        &openstack_tree(&t.path().join("b"), "intruder"),
        &b,
        "config-2",
    );
    let (la, lb) = (Loop::attach(&a), Loop::attach(&b));
    let first = Mirror::with(&[(&la, "sr0")]);
    let other = Mirror::with(&[(&lb, "vdb")]);
    let root = scratch_root();
    let r = root.path();
    with_config(r, "probe:\n  pin_first_boot: true\n");
    let o = run_probed(&first, r, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pin: serde_json::Value =
        serde_json::from_slice(&fs::read(r.join("var/lib/primer/pinned.json")).unwrap()).unwrap();
    assert_eq!(pin["device"], "sr0");
    assert_eq!(pin["instance_id"], UUID);
    assert_eq!(mode(&r.join("var/lib/primer/pinned.json")), 0o600);
    // Second boot, same drive: nothing to do.
    let o = run_probed(&first, r, &[]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    // A different drive (same instance id, other device): refused, nothing written.
    let before = snapshot(r);
    let o = run_probed(&other, r, &[]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(text(&o).contains("pinning"), "{}", text(&o));
    assert_eq!(snapshot(r), before);
    assert_eq!(hostname(r), "pinned\n");
    // Allowed by policy: applied and re-pinned.
    with_config(r, "probe:\n  pin_first_boot: true\n  pin_allow_new: true\n");
    let o = run_probed(&other, r, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(r), "intruder\n");
    let pin: serde_json::Value =
        serde_json::from_slice(&fs::read(r.join("var/lib/primer/pinned.json")).unwrap()).unwrap();
    assert_eq!(pin["device"], "vdb");
}

/// The pin is the plan's last step: `--dry-run` shows it (and writes nothing); a run in which
/// another step failed skips it, so a failed first boot is retried unpinned.
#[test]
fn pinning_is_a_plan_step_skipped_when_another_step_fails() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.iso");
    iso(&openstack_tree(t.path(), "pinned"), &a, "config-2");
    let la = Loop::attach(&a);
    let m = Mirror::with(&[(&la, "sr0")]);
    let root = scratch_root();
    let r = root.path();
    with_config(r, "probe:\n  pin_first_boot: true\n");
    let pin_file = r.join("var/lib/primer/pinned.json");

    let o = run_probed(&m, r, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("pin"))
        .unwrap_or_else(|| panic!("no pin step in the dry run:\n{out}"));
    assert!(
        line.contains("create") && line.contains("openstack drive sr0"),
        "{line}"
    );
    assert!(!pin_file.exists(), "a dry run wrote the pin");

    // The SSH user does not exist: that step fails, the pin is skipped.
    let o = run_probed(&m, r, &["--user", "nobody-here"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("pin"))
        .unwrap_or_else(|| panic!("no pin step in the run:\n{out}"));
    assert!(
        line.contains("skipped") && line.contains("not pinned"),
        "{line}"
    );
    assert!(!pin_file.exists(), "pinned after a failed step");

    // The next boot, everything lands: pinned.
    let o = run_probed(&m, r, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pin: serde_json::Value = serde_json::from_slice(&fs::read(&pin_file).unwrap()).unwrap();
    assert_eq!(pin["device"], "sr0");
}

/// A probed drive whose instance id cannot name primer's state is refused whole: one failed
/// `instance` step, no pin step, nothing written (the pin is never planned for it).
#[test]
fn a_refused_instance_id_is_never_pinned() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let mut meta = sample_meta("bad-id", &[ED]);
    meta["uuid"] = "../x".into();
    write_drive_tree(&tree, &meta);
    let a = t.path().join("a.iso");
    iso(&tree, &a, "config-2");
    let la = Loop::attach(&a);
    let m = Mirror::with(&[(&la, "sr0")]);
    let root = scratch_root();
    let r = root.path();
    with_config(r, "probe:\n  pin_first_boot: true\n");
    let before = snapshot(r);
    let o = run_probed(&m, r, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let ids: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(ids, ["instance"], "{out}");
    assert!(out.contains("failed    instance"), "{out}");
    assert_eq!(snapshot(r), before);
}

#[test]
fn a_device_that_appears_one_second_after_start_is_found() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("late.iso");
    iso(&openstack_tree(t.path(), "late"), &img, "config-2");
    let m = Mirror::new();
    let root = scratch_root();
    let (sys, dev) = (m.sys(), m.dev());
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args([
            "run",
            "--wait",
            "5",
            "--root",
            root.path().to_str().unwrap(),
        ])
        .args(m.args(&sys, &dev))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let lo = Loop::attach(&img);
    m.add(&lo, lo.name());
    let o = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(took < Duration::from_secs(4), "found in {took:?}");
    assert!(took >= Duration::from_secs(1));
    assert!(text(&o).contains("appeared after"), "{}", text(&o));
    assert_eq!(hostname(root.path()), "late\n");
}

#[test]
fn no_device_is_a_success_class_code_within_the_deadline() {
    let m = Mirror::new();
    let root = scratch_root();
    let (sys, dev) = (m.sys(), m.dev());
    let start = Instant::now();
    let mut args = vec![
        "run",
        "--wait",
        "1",
        "--root",
        root.path().to_str().unwrap(),
    ];
    args.extend(m.args(&sys, &dev));
    let o = primer(&args);
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(11), "{}", text(&o));
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The wait comes from the configuration too.
    with_config(root.path(), "probe:\n  wait_seconds: 0.5\n");
    let start = Instant::now();
    let o = primer(&[
        "run",
        "--root",
        root.path().to_str().unwrap(),
        "--sys-root",
        &sys,
        "--dev-root",
        &dev,
    ]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

fn mounts_under(dir: &str) -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir))
        .count()
}

/// Mount mode on this kernel: ext4 is the only filesystem here that both the kernel and a
/// producer (`mkfs.ext4 -d`) handle, so it proves the machinery (read-only mount, directory
/// reader, unmount, mount point removed); iso9660/vfat against the user-space readers is the
/// guest test's job (the VM runner).
#[test]
fn mount_mode_reads_the_same_files_and_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let tree = openstack_tree(t.path(), "mounted");
    let img = t.path().join("d.ext4");
    fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    run_tool(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "config-2",
            "-d",
            tree.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    let lo = Loop::attach(&img);
    let o = primer(&["show", "--json", "--mount", "--source", &lo.dev]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mounted = json(&o);
    let o = primer(&["show", "--json", "--source", tree.to_str().unwrap()]);
    let direct = json(&o);
    assert_eq!(mounted["files"], direct["files"]);
    assert_eq!(mounted["instance"], direct["instance"]);
    assert_eq!(mounted["fstype"], "ext4");
    assert_eq!(mounts_under("/run/primer"), 0, "unmounted");
    let left: Vec<_> = fs::read_dir("/run/primer")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().starts_with("mnt.")),
        "mount point removed: {left:?}"
    );
    // A filesystem this kernel cannot mount (vfat here): an error naming the device, and still
    // no mount point left behind.
    let f = t.path().join("d.vfat");
    vfat(&tree, &f, Some("config-2"));
    let lf = Loop::attach(&f);
    let o = primer(&["show", "--mount", "--source", &lf.dev]);
    if o.status.code() == Some(0) {
        // A kernel with vfat: then the files must equal the user-space reader's.
        let a = json(&primer(&["show", "--json", "--mount", "--source", &lf.dev]));
        let b = json(&primer(&["show", "--json", "--source", &lf.dev]));
        assert_eq!(a["files"], b["files"]);
    } else {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(&lf.dev), "{}", text(&o));
    }
    assert_eq!(mounts_under("/run/primer"), 0);
    let left: Vec<_> = fs::read_dir("/run/primer")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().starts_with("mnt.")),
        "{left:?}"
    );
}
