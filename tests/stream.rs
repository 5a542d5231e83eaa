//! Large drive files stay on the device (issue 15, bounded memory): a user-data script of tens
//! of MiB on a genisoimage ISO attached as a loop device is written (the stored script and the
//! local copy) with a peak RSS that does not grow with the script, byte for byte as the drive
//! holds it; and a drive whose bytes change between the plan and the apply fails those steps,
//! naming the file, with nothing half-written at the target.

mod common;

use std::fs;

use common::*;

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

/// A first run from `source` into a fresh root under GNU time: it succeeds and stores the
/// drive's script `ud` byte for byte (the script and its local copy). The root and the peak RSS.
fn first_run_storing(
    source: impl AsRef<std::ffi::OsStr>,
    ud: &[u8],
    dir: &std::path::Path,
) -> (tempfile::TempDir, u64) {
    let root = scratch_root();
    let (o, rss) = run_measured(source, root.path(), dir);
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
    (root, rss)
}

#[test]
fn a_large_script_on_a_loop_device_is_streamed_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();

    // The same run with a one-line script: what the process costs without a large file.
    let small_dir = dir.path().join("small");
    fs::create_dir(&small_dir).unwrap();
    let small = config2_iso(&small_dir, b"#!/bin/sh\ntrue\n");
    let small_dev = Loop::attach(&small);
    let root = scratch_root();
    let (o, base) = run_measured(&small_dev.dev, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));

    let ud = large_script(32 << 20, "middle");
    let big = config2_iso(dir.path(), &ud);
    let dev = Loop::attach(&big);
    let (root, rss) = first_run_storing(&dev.dev, &ud, dir.path());
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

/// A directory source (a seed directory, `--source DIR`) keeps its large files in their files
/// too: the same bounded peak, the stored script byte for byte.
#[test]
fn a_large_script_in_a_directory_source_is_streamed_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let small = config2_tree(dir.path(), "small", b"#!/bin/sh\ntrue\n");
    let root = scratch_root();
    let (o, base) = run_measured(&small, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));

    let ud = large_script(32 << 20, "middle");
    let big = config2_tree(dir.path(), "big", &ud);
    let (_root, rss) = first_run_storing(&big, &ud, dir.path());
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a 32 MiB script, {base} KiB with a one-line script"
    );
}

#[test]
fn a_drive_that_changes_between_plan_and_apply_fails_the_step_naming_the_file() {
    use primer::apply::Outcome;

    let dir = tempfile::tempdir().unwrap();
    let ud = large_script(4 << 20, "MARKER-a");
    let iso = config2_iso(dir.path(), &ud);
    let root = scratch_root();
    let (_loaded, plan) = plan_deferred(&iso, root.path());

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

/// Hostile image: a large file whose extent runs past the end of the image (the image cut
/// short after it was built: the directory still says 2 MiB) is refused while reading, naming
/// the file; nothing is applied and no state is written. A control character in the script
/// (a streamed file is never parsed as text) reaches the stored copy byte for byte.
#[test]
fn a_large_file_past_the_end_of_the_image_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let mut ud = large_script(2 << 20, "cut");
    ud.extend_from_slice(b"# \x1b[2J\r\x07\n");
    let iso = config2_iso(d.path(), &ud);
    let whole = fs::metadata(&iso).unwrap().len();
    let root = d.path().join("root");
    fs::create_dir(&root).unwrap();

    // Whole, the bytes with their control characters are stored as they are.
    let o = primer(&[
        "run",
        "--defer-scripts",
        "--source",
        iso.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let copy = root.join(format!(
        "var/lib/primer/instance/{ID}/drive/openstack/latest/user_data"
    ));
    assert_eq!(fs::read(&copy).unwrap(), ud);

    // Cut 1 MiB short: the user_data extents (the largest files, at the end) no longer fit.
    let fresh = d.path().join("fresh");
    fs::create_dir(&fresh).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&iso)
        .unwrap()
        .set_len(whole - (1 << 20))
        .unwrap();
    let o = primer(&[
        "run",
        "--defer-scripts",
        "--source",
        iso.to_str().unwrap(),
        "--root",
        fresh.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert_ne!(o.status.code(), Some(134), "aborted: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("user_data"), "the file is not named: {err}");
    assert!(
        !fresh
            .join(format!("var/lib/primer/instance/{ID}/applied.json"))
            .exists(),
        "a record was written for a drive that could not be read"
    );
}
