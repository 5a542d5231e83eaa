//! Hostile drives and targets: broken images, unsafe names, injected key lines, invalid host
//! names, unsafe instance ids and escaping symlinks. Each gives a clear error or warning, never
//! a panic, and writes nothing unsafe.

#[path = "../common/mod.rs"]
mod common;

// One module per area (issue 10): each builds its hostile drives with real producers and
// asserts the exact outcome (exit code, error naming file and field, nothing injected).
mod accounts;
mod apply;
mod drive;
mod net;

use std::fs;
use std::path::Path;

use common::*;

fn tree(meta: &serde_json::Value) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write_drive_tree(t.path(), meta);
    t
}

fn run_dir(src: &Path, root: &Path) -> std::process::Output {
    primer(&[
        "run",
        "--source",
        src.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ])
}

#[test]
fn truncated_image_is_a_clear_error_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    write_drive_tree(&t.path().join("tree"), &sample_meta("x", &[ED]));
    let iso = t.path().join("d.iso");
    make_iso(&t.path().join("tree"), &iso, IsoTool::Nova);
    let full = fs::read(&iso).unwrap();
    // Inside the volume descriptors, inside the directory area, inside a file's data.
    let data_at = full
        .windows(9)
        .position(|w| w == b"injected\n")
        .expect("file data in image");
    for cut in [20 * 1024, 40 * 1024, data_at + 4] {
        let p = t.path().join(format!("cut{cut}.iso"));
        fs::write(&p, &full[..cut]).unwrap();
        let root = scratch_root();
        let before = snapshot(root.path());
        let o = run_dir(&p, root.path());
        assert_eq!(o.status.code(), Some(1), "cut at {cut}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(p.to_str().unwrap()),
            "error names the device: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            snapshot(root.path()),
            before,
            "nothing written for a broken drive"
        );
    }
}

#[test]
fn missing_and_malformed_meta_data_name_file_and_position() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("openstack/latest")).unwrap();
    fs::write(t.path().join("openstack/latest/user_data"), "x").unwrap();
    let root = scratch_root();
    let o = run_dir(t.path(), root.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("openstack/latest/meta_data.json: missing"),
        "{}",
        text(&o)
    );

    fs::write(
        t.path().join("openstack/latest/meta_data.json"),
        "{\n \"uuid\": \"a\",\n \"hostname\": }\n",
    )
    .unwrap();
    let o = run_dir(t.path(), root.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("openstack/latest/meta_data.json: invalid JSON at line 3, column"),
        "{}",
        text(&o)
    );
}

#[test]
fn key_line_with_embedded_newline_cannot_inject() {
    let evil = format!("{ED}\n# END primer\ncommand=\"/bin/evil\" ssh-rsa AAAAnotakey\n\u{1b}[2J");
    let src = tree(&sample_meta("keys", &[&evil]));
    let root = scratch_root();
    let o = run_dir(src.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let keys = fs::read_to_string(root.path().join("root/.ssh/authorized_keys")).unwrap();
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "block with exactly the one valid key: {keys}"
    );
    assert_eq!(lines[1], ED);
    assert!(!keys.contains("evil") && !keys.contains('\u{1b}'));
    let out = text(&o);
    assert!(out.contains("public_keys: key 2 refused"), "{out}");
    assert!(out.contains("key 3 refused"), "{out}");
}

#[test]
fn invalid_hostnames_are_sanitised_or_refused() {
    for (raw, want) in [
        ("../../etc/passwd", Some("etc-passwd\n")),
        (
            &"x".repeat(300)[..],
            Some(&format!("{}\n", "x".repeat(63))[..]),
        ),
        ("Bad_Name.Example.COM", Some("bad-name\n")),
        ("$(reboot)", Some("reboot\n")),
        ("...", None),
    ] {
        let src = tree(&sample_meta(raw, &[]));
        let root = scratch_root();
        let o = run_dir(src.path(), root.path());
        assert_eq!(o.status.code(), Some(0), "{raw}: {}", text(&o));
        assert!(
            text(&o).contains("hostname"),
            "a warning names the field: {}",
            text(&o)
        );
        let got = fs::read_to_string(root.path().join("etc/hostname")).ok();
        assert_eq!(got.as_deref(), want, "{raw}");
    }
}

#[test]
fn unsafe_instance_id_writes_nothing_and_fails() {
    let mut meta = sample_meta("ok", &[ED]);
    meta["uuid"] = "../../../tmp/escape".into();
    let src = tree(&meta);
    let root = scratch_root();
    let before = snapshot(root.path());
    let o = run_dir(src.path(), root.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("not usable as a directory name"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn symlinks_in_the_target_cannot_escape_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let src = tree(&sample_meta("linked", &[ED]));
    let root = scratch_root();
    let r = root.path();
    // Absolute and relative links that would leave the root on a naive join.
    std::os::unix::fs::symlink(outside.path(), r.join("root")).unwrap();
    fs::remove_file(r.join("etc/hosts")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../tmp/primer-escape-hosts",
        r.join("etc/hosts"),
    )
    .unwrap();
    let o = run_dir(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "wrote outside the root"
    );
    assert!(!Path::new("/tmp/primer-escape-hosts").exists());
    // The absolute link re-rooted: /root -> <root>/<outside path>.
    let inside = r
        .join(outside.path().strip_prefix("/").unwrap())
        .join(".ssh/authorized_keys");
    assert!(inside.exists(), "keys written inside the root");
    assert!(r.join("tmp/primer-escape-hosts").exists());
}

#[test]
fn injected_file_content_path_with_dotdot_is_a_warning() {
    let mut meta = sample_meta("files", &[]);
    meta["files"] = serde_json::json!([{"path": "/etc/x", "content_path": "/../../etc/shadow"}]);
    let src = tree(&meta);
    let o = primer(&["show", "--source", src.path().to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    let w = v["warnings"]["warnings"].as_array().unwrap();
    assert!(
        w.iter().any(|w| w["field"] == "files[0].content_path"),
        "{v}"
    );
    assert!(v["instance"]["files"][0]["content"].is_null());
}

#[test]
fn secrets_never_reach_output_or_logs() {
    let src = tree(&sample_meta("secret", &[ED]));
    let root = scratch_root();
    for args in [
        vec!["show", "--source", src.path().to_str().unwrap()],
        vec!["show", "--json", "--source", src.path().to_str().unwrap()],
        vec![
            "plan",
            "--json",
            "--log-level",
            "trace",
            "--source",
            src.path().to_str().unwrap(),
            "--root",
            root.path().to_str().unwrap(),
        ],
        vec![
            "run",
            "--log-level",
            "trace",
            "--source",
            src.path().to_str().unwrap(),
            "--root",
            root.path().to_str().unwrap(),
        ],
    ] {
        let o = primer(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(
            !text(&o).contains("do-not-print-me"),
            "{args:?}: {}",
            text(&o)
        );
    }
}
