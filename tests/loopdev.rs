//! End-to-end on real block devices: drives built by real producers, attached as loop devices,
//! found by `primer probe` through the real sysfs, applied by `primer run` into a scratch root.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// A drive from another producer (genisoimage, xorriso): a cross-check that discovery and
/// the reader handle what the clouds' tools write.
fn build(tool: IsoTool, meta: &serde_json::Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, meta);
    let iso = t.path().join("drive.iso");
    make_iso(&tree, &iso, tool);
    (t, iso)
}

/// *A* drive, where the producer does not matter: primer's make-drive.
fn drive(meta: &serde_json::Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, meta);
    let iso = t.path().join("drive.iso");
    make_drive(&tree, &iso, DriveFs::Iso9660, "config-2");
    (t, iso)
}

fn candidate_for<'a>(probe: &'a serde_json::Value, dev: &str) -> Option<&'a serde_json::Value> {
    probe["candidates"]
        .as_array()?
        .iter()
        .find(|c| c["device"]["path"] == dev)
}

#[test]
fn probe_lists_each_producer_with_kind_and_reason() {
    let meta = sample_meta("probe-test", &[ED]);
    for (tool, label) in [
        (IsoTool::Nova, "config-2"),
        (IsoTool::Xorriso, "config-2"),
        (IsoTool::Level1, "CONFIG-2"),
    ] {
        let (_t, iso) = build(tool, &meta);
        let lo = Loop::attach(&iso);
        let o = primer(&["probe", "--json"]);
        let v = json(&o);
        // Other tests attach config drives at the same time: two of one kind are refused by
        // the trust policy (exit 12, as `run` would); the listing is what this test checks.
        let want = if v["refused"].is_null() { 0 } else { 12 };
        assert_eq!(o.status.code(), Some(want), "{}", text(&o));
        let c = candidate_for(&v, &lo.dev)
            .unwrap_or_else(|| panic!("{tool:?}: {} not a candidate:\n{}", lo.dev, text(&o)));
        assert_eq!(c["kind"], "openstack");
        assert_eq!(c["fstype"], "iso9660");
        assert_eq!(c["label"], label);
        assert_eq!(c["device"]["class"], "loop");
        assert_eq!(
            c["reason"],
            format!("label {label} on {} (iso9660)", lo.dev)
        );
        // Text output names it too.
        let o = primer(&["probe"]);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&lo.dev),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn probe_skips_non_drives() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("zeros.img");
    fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let lo = Loop::attach(&img);
    let v = json(&primer(&["probe", "--json"]));
    assert!(candidate_for(&v, &lo.dev).is_none());
    let devs = v["devices"].as_array().unwrap();
    assert!(
        devs.iter().any(|d| d["path"] == lo.dev),
        "the device is listed, just not a candidate"
    );
}

fn run(dev: &str, root: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--source", dev, "--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    primer(&args)
}

#[test]
fn run_from_loop_device_applies_then_changes_nothing_then_applies_difference() {
    let (_t, iso) = drive(&sample_meta("web-1.example.org", &[ED]));
    let lo = Loop::attach(&iso);
    let root = scratch_root();
    let r = root.path();
    // A user-managed key before, and a comment after primer's block must survive.
    fs::create_dir_all(r.join("home/debian/.ssh")).unwrap();
    fs::write(
        r.join("home/debian/.ssh/authorized_keys"),
        format!("{ED2}\n"),
    )
    .unwrap();

    let o = run(&lo.dev, r, &["--user", "debian"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !text(&o).contains("do-not-print-me"),
        "secret in output: {}",
        text(&o)
    );

    assert_eq!(
        fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "web-1\n"
    );
    let hosts = fs::read_to_string(r.join("etc/hosts")).unwrap();
    assert!(
        hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        "{hosts}"
    );
    assert!(
        hosts.contains("127.0.1.1\tweb-1.example.org web-1\t# managed by primer\n"),
        "{hosts}"
    );
    let ak = r.join("home/debian/.ssh/authorized_keys");
    let keys = fs::read_to_string(&ak).unwrap();
    assert!(
        keys.starts_with(&format!("{ED2}\n# BEGIN primer")),
        "{keys}"
    );
    assert!(keys.contains(&format!("\n{ED}\n# END primer\n")), "{keys}");
    assert_eq!(mode(&ak), 0o600);
    assert_eq!(owner(&ak), (1000, 1000));
    assert_eq!(mode(&r.join("home/debian/.ssh")), 0o700);
    assert_eq!(owner(&r.join("home/debian/.ssh")), (1000, 1000));
    fs::write(&ak, format!("{keys}# a line the user added\n")).unwrap();

    let inst = r.join("var/lib/primer/instance/0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9");
    for d in ["var/lib/primer", "var/lib/primer/instance"] {
        assert_eq!(mode(&r.join(d)), 0o700, "{d}");
    }
    assert_eq!(mode(&r.join("var/lib")), 0o755);
    assert_eq!(mode(&inst.join("drive")), 0o700);
    for f in [
        "openstack/latest/meta_data.json",
        "openstack/2018-08-27/user_data",
        "openstack/content/0000",
    ] {
        let p = inst.join("drive").join(f);
        assert_eq!(mode(&p), 0o600, "{f}");
    }
    assert_eq!(
        fs::read(inst.join("drive/openstack/latest/user_data")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    let ij = fs::read_to_string(inst.join("instance.json")).unwrap();
    assert_eq!(mode(&inst.join("instance.json")), 0o600);
    let v: serde_json::Value = serde_json::from_str(&ij).unwrap();
    assert_eq!(
        v["instance"]["instance_id"],
        "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9"
    );
    assert_eq!(v["instance"]["version"], "2018-08-27");
    assert_eq!(v["instance"]["admin_pass"], "<redacted 15 bytes>");
    assert!(!ij.contains("do-not-print-me"));
    assert_eq!(v["drive"]["label"], "config-2");

    // Second run: nothing changes, every step unchanged, the tree is byte-identical (mtimes too).
    let before = snapshot(r);
    let o = run(&lo.dev, r, &["--user", "debian", "--json"]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    let v = json(&o);
    let steps = v["steps"]["steps"].as_array().unwrap();
    assert!(!steps.is_empty());
    for s in steps {
        assert_eq!(s["outcome"], "unchanged", "{s}");
    }
    assert_eq!(v["outcome"], "unchanged");
    assert_eq!(snapshot(r), before, "second run changed the tree");
    assert!(fs::read_to_string(&ak)
        .unwrap()
        .ends_with("# a line the user added\n"));
    drop(lo);

    // Changed drive, same instance id: new host name and a second key.
    let (_t2, iso2) = drive(&sample_meta("web-2.example.org", &[ED, ED2]));
    let lo2 = Loop::attach(&iso2);
    let o = run(&lo2.dev, r, &["--user", "debian", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let mut changed: Vec<String> = v["steps"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "changed")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            "copy:openstack/2018-08-27/meta_data.json",
            "copy:openstack/latest/meta_data.json",
            "hostname",
            "hosts",
            "instance-json",
            "record",
            "ssh-keys",
        ],
        "{}",
        text(&o)
    );
    assert_eq!(
        fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "web-2\n"
    );
    let keys = fs::read_to_string(&ak).unwrap();
    assert!(
        keys.contains(&format!("{ED}\n{ED2}\n# END primer\n")),
        "{keys}"
    );
    assert!(
        keys.starts_with(&format!("{ED2}\n# BEGIN")),
        "user's own line kept: {keys}"
    );
    assert!(keys.ends_with("# a line the user added\n"));
    let after = snapshot(r);
    let unchanged = r.join(
        "var/lib/primer/instance/0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9/drive/openstack/content/0000",
    );
    let rel = unchanged.strip_prefix(r).unwrap();
    assert_eq!(
        after[rel], before[rel],
        "an unchanged drive file was rewritten"
    );
}

#[test]
fn run_without_source_probes_and_finds_the_loop_device() {
    // A redirected sysfs holding only this loop device keeps other tests' drives out of the way.
    let (_t, iso) = drive(&sample_meta("probed", &[ED]));
    let lo = Loop::attach(&iso);
    let sys = tempfile::tempdir().unwrap();
    let real = Path::new("/sys/class/block").join(lo.name());
    let fake = sys.path().join("class/block").join(lo.name());
    fs::create_dir_all(fake.join("loop")).unwrap();
    for attr in ["size", "ro", "removable", "loop/backing_file"] {
        fs::copy(real.join(attr), fake.join(attr)).unwrap();
    }
    let root = scratch_root();
    let o = primer(&[
        "run",
        "--sys-root",
        sys.path().to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("label config-2 on {} (iso9660)", lo.dev)),
        "{}",
        text(&o)
    );
    assert_eq!(
        fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
        "probed\n"
    );

    // No drive at all: the no-drive code, nothing written.
    let empty = tempfile::tempdir().unwrap();
    let root2 = scratch_root();
    let before = snapshot(root2.path());
    let o = primer(&[
        "run",
        "--sys-root",
        empty.path().to_str().unwrap(),
        "--root",
        root2.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o));
    assert_eq!(snapshot(root2.path()), before);
}

#[test]
fn level1_drive_applies_like_the_others() {
    let (_t, iso) = build(IsoTool::Level1, &sample_meta("level-one", &[ED]));
    let lo = Loop::attach(&iso);
    let root = scratch_root();
    let o = run(&lo.dev, root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
        "level-one\n"
    );
    assert!(
        fs::read_to_string(root.path().join("root/.ssh/authorized_keys"))
            .unwrap()
            .contains(ED)
    );
}
