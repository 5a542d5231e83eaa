//! Boot-time behaviour with the real binary: the kernel command line (`primer=off`,
//! `primer.source=`, `ds=nocloud;s=`/`h=`/`i=`, given through the hidden `PRIMER_CMDLINE_FILE`),
//! `status --wait` across two processes, progress lines during a wait, and the early end of a
//! wait without any drive once udev is idle.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `primer ARGS` with `cmdline` as the kernel command line (and this machine's boot id).
fn primer_cmdline(cmdline: &str, args: &[&str]) -> Output {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("cmdline");
    std::fs::write(&f, cmdline).unwrap();
    Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(args)
        .env("PRIMER_CMDLINE_FILE", &f)
        .output()
        .expect("run primer")
}

/// `run` on `root` with an empty sysfs (the probe finds nothing of this machine's devices).
fn run_args<'a>(root: &'a Path, empty: &'a Path) -> Vec<&'a str> {
    vec![
        "run",
        "--root",
        s(root),
        "--sys-root",
        s(empty),
        "--dev-root",
        s(empty),
        "--wait",
        "0",
    ]
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn hostname(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/hostname"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn nocloud_seed(dir: &Path, id: &str, host: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("meta-data"),
        format!("instance-id: {id}\nlocal-hostname: {host}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("user-data"), "#cloud-config\n{}\n").unwrap();
}

/// `primer.source=` names an ISO9660 image built by genisoimage, as `--source` would.
#[test]
fn primer_source_names_the_drive() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, &sample_meta("from-cmdline", &[ED]));
    let iso = t.path().join("drive.iso");
    make_iso(&tree, &iso, IsoTool::Nova);
    let root = scratch_root();
    let empty = tempfile::tempdir().unwrap();
    let o = primer_cmdline(
        &format!(
            "BOOT_IMAGE=/vmlinuz root=LABEL=root quiet primer.source={}\n",
            s(&iso)
        ),
        &run_args(root.path(), empty.path()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "from-cmdline");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("kernel command line primer.source="),
        "{}",
        text(&o)
    );
    // --source beats the command line: here the command line names nothing that exists.
    let other = tempfile::tempdir().unwrap();
    nocloud_seed(other.path(), "iid-flag", "from-flag");
    let root2 = scratch_root();
    let mut args = run_args(root2.path(), empty.path());
    args.extend(["--source", s(other.path())]);
    let o = primer_cmdline("primer.source=/nonexistent/dev/vdz", &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root2.path()), "from-flag");
}

/// `ds=nocloud;s=file:///SEED/` reads a local seed directory; `h=`/`i=` override its values.
#[test]
fn nocloud_seed_directory_and_overrides() {
    let t = tempfile::tempdir().unwrap();
    let seed = t.path().join("seed");
    nocloud_seed(&seed, "iid-seed", "seed-host");
    let empty = tempfile::tempdir().unwrap();
    let root = scratch_root();
    let o = primer_cmdline(
        &format!("quiet ds=nocloud;s=file://{}/", s(&seed)),
        &run_args(root.path(), empty.path()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "seed-host");

    let root = scratch_root();
    let o = primer_cmdline(
        &format!("\"ds=nocloud;s={};h=cmd-host;i=iid-cmd\"", s(&seed)),
        &run_args(root.path(), empty.path()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "cmd-host");
    let q = primer(&["query", "instance_id", "--root", s(root.path())]);
    assert_eq!(
        String::from_utf8_lossy(&q.stdout).trim(),
        "iid-cmd",
        "{}",
        text(&q)
    );
}

/// `ds=nocloud;h=HOST;i=ID` alone: the command line is the whole meta-data.
#[test]
fn nocloud_values_without_any_drive() {
    let empty = tempfile::tempdir().unwrap();
    let root = scratch_root();
    let o = primer_cmdline(
        "ds=nocloud;h=only-host;i=iid-only",
        &run_args(root.path(), empty.path()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "only-host");
    assert!(root
        .path()
        .join("var/lib/primer/instance/iid-only")
        .is_dir());
    // A host name no DNS label can be is refused by planning, as a drive's would be.
    let root = scratch_root();
    let o = primer_cmdline(
        "ds=nocloud;h=bad\\name$;i=iid-bad",
        &run_args(root.path(), empty.path()),
    );
    assert!(o.status.code() != Some(1), "{}", text(&o));
    assert!(!hostname(root.path()).contains('$'), "{}", text(&o));
}

/// Network seeds are refused with a warning naming them; hostile values are ignored whole.
#[test]
fn network_and_hostile_values_are_refused() {
    let empty = tempfile::tempdir().unwrap();
    for (line, named) in [
        (
            "ds=nocloud;s=http://169.254.169.254/seed/",
            "http://169.254.169.254/seed/",
        ),
        ("ds=nocloud-net;s=https://x.example/", "https://x.example/"),
        ("ds=nocloud;s=ftp://x/", "ftp://x/"),
        ("primer.source=/dev/../etc/shadow", "/dev/../etc/shadow"),
        ("primer.source=relative/path", "relative/path"),
    ] {
        let root = scratch_root();
        let before = snapshot(root.path());
        let o = primer_cmdline(line, &run_args(root.path(), empty.path()));
        assert_eq!(o.status.code(), Some(11), "{line}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(named) && err.contains("WARN"),
            "{line}: {}",
            text(&o)
        );
        assert_eq!(before, snapshot(root.path()), "{line}: the root changed");
    }
    // A 64 KiB+ command line of repeated keys with a NUL: bounded, the last complete one wins.
    let t = tempfile::tempdir().unwrap();
    let seed = t.path().join("seed");
    nocloud_seed(&seed, "iid-long", "long-host");
    let line = format!(
        "ds=nocloud;s={} {}\0primer=off {}",
        s(&seed),
        "primer.source=/x/../y ".repeat(3000),
        "x".repeat(70_000)
    );
    let root = scratch_root();
    let o = primer_cmdline(&line, &run_args(root.path(), empty.path()));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "long-host");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only the first"), "{}", text(&o));
    // One warning for the repeated key, not one per word.
    assert_eq!(err.matches("a `..` component").count(), 1, "{}", text(&o));
}

/// `primer=off`: `run` (even by hand, with --source) changes nothing and says why.
#[test]
fn primer_off_touches_nothing() {
    let t = tempfile::tempdir().unwrap();
    nocloud_seed(t.path(), "iid-off", "off-host");
    let empty = tempfile::tempdir().unwrap();
    let root = scratch_root();
    let before = snapshot(root.path());
    let mut args = run_args(root.path(), empty.path());
    args.extend(["--source", s(t.path())]);
    let o = primer_cmdline("root=/dev/vda1 primer=off quiet", &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("primer=off on the kernel command line"),
        "{}",
        text(&o)
    );
    assert_eq!(before, snapshot(root.path()));
    // As for systemd's `ConditionKernelCommandLine=!primer=off`: no later word undoes it.
    let o = primer_cmdline("primer=off primer=on", &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(before, snapshot(root.path()));
    // Only `off` means off.
    let o = primer_cmdline("primer=no", &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "off-host");
}

/// `status --wait` started before `run` returns once that run has recorded its status, with
/// its outcome; on a root without a run it times out with exit 15.
#[test]
fn status_wait_returns_after_the_run() {
    let t = tempfile::tempdir().unwrap();
    nocloud_seed(t.path(), "iid-wait", "wait-host");
    let root = scratch_root();
    let start = Instant::now();
    let waiter = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["status", "--wait", "--timeout", "60", "--json", "--root"])
        .arg(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let run = primer(&["run", "--root", s(root.path()), "--source", s(t.path())]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let o = waiter.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"], "changed", "{v}");
    assert_eq!(v["run"]["instance"]["id"], "iid-wait", "{v}");
    // The status carries this boot's id.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(v["run"]["boot_id"], boot.trim(), "{v}");
    // It waited: progress lines on stderr meanwhile.
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("waiting for primer.service: still waiting"),
        "{}",
        text(&o)
    );
    // A second run: exit 10, and --wait (text) reports it at once.
    let run = primer(&["run", "--root", s(root.path()), "--source", s(t.path())]);
    assert_eq!(run.status.code(), Some(10), "{}", text(&run));
    let o = primer(&["status", "--wait", "--root", s(root.path())]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("boot outcome: unchanged (exit 10)"),
        "{}",
        text(&o)
    );

    // A status of another boot is not this boot's: the wait times out (exit 15).
    let other = tempfile::tempdir().unwrap();
    let f = other.path().join("boot_id");
    std::fs::write(&f, "00000000-1111-2222-3333-444444444444\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["status", "--wait", "--timeout", "1", "--root", "/"])
        .env("PRIMER_BOOT_ID_FILE", &f)
        .output()
        .unwrap();
    // `/` here has no run of this (made-up) boot.
    assert_eq!(o.status.code(), Some(15), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("timed out"),
        "{}",
        text(&o)
    );
}

/// A wait logs a progress line at least every 2 s, and ends early once udev is idle.
#[test]
fn progress_lines_and_the_early_end_of_a_driveless_wait() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("sys/class/block")).unwrap();
    std::fs::create_dir_all(t.path().join("dev")).unwrap();
    let probe = |wait: &str| {
        let start = Instant::now();
        let o = primer(&[
            "probe",
            "--wait",
            wait,
            "--sys-root",
            s(&t.path().join("sys")),
            "--dev-root",
            s(&t.path().join("dev")),
        ]);
        (o, start.elapsed())
    };
    // No udevd under this sysfs: the whole deadline, a line every 1.5 s.
    let (o, took) = probe("4");
    assert_eq!(o.status.code(), Some(11), "{}", text(&o));
    assert!(took >= Duration::from_secs(4), "{took:?}");
    let lines = String::from_utf8_lossy(&o.stderr)
        .matches("waiting for a config drive: still waiting")
        .count();
    assert!((2..=3).contains(&lines), "{lines} lines: {}", text(&o));
    // udev idle (control socket, no queue): done after about a second.
    let udev = t.path().join("run/udev");
    std::fs::create_dir_all(&udev).unwrap();
    std::fs::write(udev.join("control"), "").unwrap();
    let (o, took) = probe("30");
    assert_eq!(o.status.code(), Some(11), "{}", text(&o));
    assert!(took < Duration::from_secs(5), "{took:?}: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("udev has processed every device event"),
        "{}",
        text(&o)
    );
}

/// The trust policy holds for what the kernel command line names as for a probed drive: with
/// `probe.bind_dmi_uuid`, command-line-only meta-data whose `i=` is not this machine's UUID is
/// refused (exit 12, nothing written), and one whose `i=` is applies.
#[test]
fn command_line_meta_data_obeys_the_dmi_binding() {
    let empty = tempfile::tempdir().unwrap();
    let uuid = "4c4c4544-0000-1111-2222-333333333333";
    let bound_root = || {
        let root = scratch_root();
        let etc = root.path().join("etc/primer");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("primer.yaml"), "probe:\n  bind_dmi_uuid: true\n").unwrap();
        let dmi = root.path().join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("product_uuid"), format!("{uuid}\n")).unwrap();
        root
    };
    let root = bound_root();
    let before = snapshot(root.path());
    let o = primer_cmdline(
        "ds=nocloud;h=evil;i=iid-not-this-machine",
        &run_args(root.path(), empty.path()),
    );
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(text(&o).contains("dmi"), "{}", text(&o));
    assert_eq!(before, snapshot(root.path()));
    // The refusal is recorded as this run's outcome: `status --wait` reports it at once
    // instead of waiting out its time-out, and `status` shows why.
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join(RUN_STATUS)).unwrap()).unwrap();
    assert_eq!(st["outcome"], "refused", "{st}");
    assert_eq!(st["exit_code"], 12, "{st}");
    assert!(st["error"].as_str().unwrap().contains("dmi"), "{st}");
    assert!(st["instance"].is_null() && st["drive"].is_null(), "{st}");
    let t = Instant::now();
    let o = primer(&[
        "status",
        "--wait",
        "--timeout",
        "30",
        "--root",
        s(root.path()),
    ]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("outcome:      refused (exit 12)")
            && String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("error:") && l.contains("dmi")),
        "{}",
        text(&o)
    );
    let root = bound_root();
    let o = primer_cmdline(
        &format!("ds=nocloud;h=bound;i={uuid}"),
        &run_args(root.path(), empty.path()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(hostname(root.path()), "bound");
}

/// A run that cannot read its drive records outcome `error` with the message naming the
/// device, and keeps the instance applied before as `last applied`: `status --wait` returns 1
/// at once instead of timing out.
#[test]
fn an_unreadable_drive_is_recorded_as_this_runs_error() {
    let root = scratch_root();
    let r = root.path();
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    write_drive_tree(&tree, &sample_meta("before", &[ED]));
    let good = t.path().join("good.iso");
    make_iso(&tree, &good, IsoTool::Nova);
    let o = primer(&["run", "--source", s(&good), "--root", s(r)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bad = t.path().join("bad.img");
    std::fs::write(&bad, vec![0x5a; 64 * 1024]).unwrap();
    let o = primer(&["run", "--source", s(&bad), "--root", s(r)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.join(RUN_STATUS)).unwrap()).unwrap();
    assert_eq!(st["outcome"], "error", "{st}");
    assert_eq!(st["exit_code"], 1, "{st}");
    assert!(st["error"].as_str().unwrap().contains("bad.img"), "{st}");
    assert_eq!(st["last_applied"]["outcome"], "changed", "{st}");
    let o = primer(&["status", "--wait", "--timeout", "30", "--root", s(r)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("outcome:      error (exit 1)"),
        "{}",
        text(&o)
    );
    // A source whose name holds a terminal escape and a newline, below a long directory path:
    // the recorded message is one line, escaped, and bounded.
    let deep = (0..40).fold(t.path().to_path_buf(), |p, _| p.join("d".repeat(60)));
    std::fs::create_dir_all(&deep).unwrap();
    let hostile = deep.join("bad\u{1b}[31m\nimg");
    std::fs::write(&hostile, vec![0x5a; 64 * 1024]).unwrap();
    let o = primer(&["run", "--source", s(&hostile), "--root", s(r)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.join(RUN_STATUS)).unwrap()).unwrap();
    let e = st["error"].as_str().unwrap();
    assert!(!e.chars().any(char::is_control), "{e:?}");
    assert!(e.chars().count() <= 1100, "{} chars", e.chars().count());
    let o = primer(&["status", "--root", s(r)]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert!(!out.lines().any(|l| l.starts_with("img")), "{out}");
}
