//! Large drive files stay on the device (issue 15, bounded memory): a user-data script of tens
//! of MiB on a genisoimage ISO attached as a loop device is written (the stored script and the
//! local copy) with a peak RSS that does not grow with the script, byte for byte as the drive
//! holds it; and a drive whose bytes change between the plan and the apply fails those steps,
//! naming the file, with nothing half-written at the target.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

/// A shell script of about `len` bytes holding `marker` near its middle.
fn script(len: usize, marker: &str) -> Vec<u8> {
    let mut s = b"#!/bin/sh\n".to_vec();
    let line = format!("# {}\n", "x".repeat(76));
    while s.len() + line.len() < len / 2 {
        s.extend_from_slice(line.as_bytes());
    }
    s.extend_from_slice(format!("# {marker}\n").as_bytes());
    while s.len() + line.len() + 5 < len {
        s.extend_from_slice(line.as_bytes());
    }
    s.extend_from_slice(b"true\n");
    s
}

fn build(dir: &Path, ud: &[u8]) -> std::path::PathBuf {
    let tree = dir.join("tree");
    write_drive_tree(&tree, &sample_meta("large", &[]));
    // Every version the tree has (the reader takes the newest dated one).
    for v in ["latest", "2018-08-27"] {
        fs::write(tree.join("openstack").join(v).join("user_data"), ud).unwrap();
    }
    let iso = dir.join("drive.iso");
    make_iso(&tree, &iso, IsoTool::Nova);
    fs::remove_dir_all(&tree).unwrap();
    iso
}

/// `primer run` from `source` into `root` under GNU time: its output and peak RSS in KiB.
fn run_measured(source: &str, root: &Path, dir: &Path) -> (std::process::Output, u64) {
    require_tool("/usr/bin/time");
    let t = dir.join("time");
    let o = Command::new("/usr/bin/time")
        .arg("-o")
        .arg(&t)
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args([
            "run",
            "--log-level",
            "error",
            "--defer-scripts",
            "--network-backend",
            "networkd",
            "--source",
            source,
            "--root",
        ])
        .arg(root)
        .output()
        .unwrap();
    let rss = fs::read_to_string(&t)
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time's %M");
    (o, rss)
}

#[test]
fn a_large_script_on_a_loop_device_is_streamed_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();

    // The same run with a one-line script: what the process costs without a large file.
    let small_dir = dir.path().join("small");
    fs::create_dir(&small_dir).unwrap();
    let small = build(&small_dir, b"#!/bin/sh\ntrue\n");
    let small_dev = Loop::attach(&small);
    let root = scratch_root();
    let (o, base) = run_measured(&small_dev.dev, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));

    let ud = script(32 << 20, "middle");
    let big = build(dir.path(), &ud);
    let dev = Loop::attach(&big);
    let root = scratch_root();
    let (o, rss) = run_measured(&dev.dev, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let inst = root.path().join("var/lib/primer/instance").join(ID);
    for f in [
        "scripts/20-user-part-001",
        "drive/openstack/latest/user_data",
    ] {
        assert!(
            fs::read(inst.join(f)).unwrap() == ud,
            "{f} differs from the drive's"
        );
    }
    // Held whole, the script alone would add 32 MiB; streamed, only its chunks (64 KiB).
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a 32 MiB script, {base} KiB with a one-line script"
    );

    // A re-run measures the stored copies (length and digest) and changes nothing, still
    // without holding the script.
    let (o, rerun) = run_measured(&dev.dev, root.path(), dir.path());
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(
        rerun < base + 4096,
        "re-run peak RSS {rerun} KiB, base {base} KiB"
    );
}

#[test]
fn a_drive_that_changes_between_plan_and_apply_fails_the_step_naming_the_file() {
    use primer::agent::{Locate, PlanRequest};
    use primer::apply::{apply_plan, Outcome, RunLock, Target};

    let dir = tempfile::tempdir().unwrap();
    let ud = script(4 << 20, "MARKER-a");
    let iso = build(dir.path(), &ud);
    let root = scratch_root();
    let req = PlanRequest {
        locate: Locate {
            source: Some(iso.clone()),
            ..Locate::default()
        },
        root: root.path().to_path_buf(),
        user: None,
        network_backend: None,
        defer_scripts: true,
    };
    let (_loaded, plan) = primer::agent::plan(&req).unwrap().expect("a drive");

    // The image changes under the open reader: same length, one byte of the script differs
    // (in each version's copy of it).
    let mut image = fs::read(&iso).unwrap();
    let at: Vec<usize> = image
        .windows(8)
        .enumerate()
        .filter(|(_, w)| *w == b"MARKER-a")
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "the script's bytes in the image");
    for i in at {
        image[i + 7] = b'b';
    }
    fs::write(&iso, &image).unwrap();

    let lock = RunLock::take(root.path(), std::time::Duration::from_secs(5)).unwrap();
    let report = apply_plan(
        &plan,
        &Target {
            root: root.path().to_path_buf(),
            live: false,
        },
        &lock,
    );
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
        let target = inst.join(rel);
        assert!(!target.exists(), "{} was written", target.display());
        // Nothing half-written beside it either (the staged file is removed).
        if let Some(parent) = target.parent().filter(|p| p.exists()) {
            let left: Vec<_> = fs::read_dir(parent)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().contains("user"))
                .collect();
            assert!(left.is_empty(), "left beside the target: {left:?}");
        }
    }
}
