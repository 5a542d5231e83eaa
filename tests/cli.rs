//! The command line as operators use it: output into a closed pipe, exit codes of the read-only
//! commands, `--json` where a command prints data. Runs the real binary.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;

fn drive(dir: &std::path::Path) -> String {
    write_drive_tree(dir, &sample_meta("pipe-host", &[]));
    dir.to_str().unwrap().to_string()
}

/// `primer … | head`: the reader goes away before primer writes. primer stops printing and
/// ends with its own outcome, with no error message and no abort (it used to exit 1 with
/// "Broken pipe", and could die of SIGABRT).
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let t = tempfile::tempdir().unwrap();
    let src = drive(t.path());
    for args in [
        vec!["show", "--source", &src],
        vec!["show", "--json", "--source", &src],
        vec!["net", "render", "--backend", "networkd", "--source", &src],
        vec!["plan", "--root", "/nonexistent-root", "--source", &src],
        vec!["--help"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_primer"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end at once: every write primer makes meets EPIPE.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            !err.contains("error") && !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            matches!(status.code(), Some(0 | 10)),
            "{args:?}: {status:?} {err}"
        );
    }
}

/// A drive without network data: `net render` has nothing to do (exit 10), and says so in the
/// form asked for.
#[test]
fn net_render_without_network_data_is_exit_10_in_both_forms() {
    let t = tempfile::tempdir().unwrap();
    let src = drive(t.path());
    for v in ["latest", "2018-08-27"] {
        std::fs::remove_file(t.path().join("openstack").join(v).join("network_data.json")).unwrap();
    }
    let o = primer(&["net", "render", "--backend", "eni", "--source", &src]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(text(&o).contains("no network data"), "{}", text(&o));
    let o = primer(&[
        "net",
        "render",
        "--json",
        "--backend",
        "eni",
        "--source",
        &src,
    ]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["network"], false);
    assert_eq!(v["files"].as_array().map(Vec::len), Some(0));
}

/// Drop-ins over the main file, as every command loads them; `config show` names the file of
/// each value, and an invalid drop-in is an error naming it.
#[test]
fn config_show_layers_drop_ins_and_names_each_origin() {
    let t = tempfile::tempdir().unwrap();
    let etc = t.path().join("etc/primer");
    std::fs::create_dir_all(etc.join("primer.yaml.d")).unwrap();
    std::fs::write(etc.join("primer.yaml"), "probe:\n  wait_seconds: 25\n").unwrap();
    std::fs::write(
        etc.join("primer.yaml.d/50-image.yaml"),
        "reclaim:\n  enabled: true\nprobe:\n  duplicates: best\n",
    )
    .unwrap();
    let root = t.path().to_str().unwrap();
    let o = primer(&["config", "show", "--root", root, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["config"]["probe"]["wait_seconds"], 25.0);
    assert_eq!(v["config"]["probe"]["duplicates"], "best");
    assert_eq!(v["config"]["reclaim"]["enabled"], true);
    let origin = |k: &str| v["origins"][k].as_str().unwrap_or("").to_string();
    assert!(origin("probe.wait_seconds").ends_with("etc/primer/primer.yaml"));
    assert!(origin("reclaim.enabled").ends_with("primer.yaml.d/50-image.yaml"));
    assert_eq!(v["origins"]["ssh_user"], serde_json::Value::Null);
    let o = primer(&["config", "show", "--root", root]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("probe.duplicates: \"best\"") && l.ends_with("50-image.yaml")),
        "{out}"
    );
    assert!(
        out.contains("script_timeout_seconds: 600  # default"),
        "{out}"
    );

    // The layered settings are the ones `plan` uses: the drop-in's wait bound shows in the
    // error of a bad drop-in, which names its file and key.
    std::fs::write(
        etc.join("primer.yaml.d/60-bad.yaml"),
        "probe:\n  wait_seconds: 601\n",
    )
    .unwrap();
    let o = primer(&["config", "show", "--root", root]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("60-bad.yaml") && err.contains("probe.wait_seconds"),
        "{err}"
    );
    let src = t.path().join("drive");
    let o = primer(&["plan", "--root", root, "--source", &drive(&src)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("60-bad.yaml"), "{}", text(&o));
}

/// A `--root` that is not there is named as such (not as the first temporary file primer could
/// not create in it), once, and with `RUST_BACKTRACE` set the error is printed, not turned into
/// an abort (the shipped binary has no unwind tables to capture a backtrace with).
#[test]
fn a_missing_root_is_named_and_backtraces_do_not_abort() {
    let d = tempfile::tempdir().unwrap();
    let src = drive(d.path());
    let missing = d.path().join("no-such-root");
    let file = d.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for (root, why) in [
        (&missing, "No such file or directory"),
        (&file, "not a directory"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_primer"))
            .args(["run", "--source", &src, "--root"])
            .arg(root)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let want = format!("primer: error: --root {}: {why}", root.display());
        assert!(err.contains(&want), "{want:?} not in {err}");
        assert_eq!(err.matches(why).count(), 1, "{err}");
    }
}
