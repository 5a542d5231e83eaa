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
