//! Shared helpers for integration tests: run the real `primer` binary, build drives with real
//! producers (genisoimage, xorriso), attach them as real loop devices, snapshot target trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ED: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo@test";
pub const ED2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINtqymTVklmxp6/+U+CviC0Xm/x873RZzSWKP1r+ez8O second@test";

/// Fails the test with a clear message when a required tool is missing: the core suite never
/// skips. The README's test command installs them.
pub fn require_tool(tool: &str) {
    require_tool_from(tool, "")
}

/// As [`require_tool`], naming the Debian package that has it.
pub fn require_tool_from(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let from = if package.is_empty() {
        String::new()
    } else {
        format!(" (Debian package {package})")
    };
    assert!(
        ok,
        "{tool} is not installed{from}: run the README's test command (scripts/test), which installs it"
    );
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "loop-device tests need root (losetup); run the README's test command as root"
    );
}

/// Runs the primer binary.
pub fn primer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(args)
        .output()
        .expect("run primer")
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(o)))
}

/// Writes an OpenStack drive tree: `meta_data.json` under `latest` and one dated version.
pub fn write_drive_tree(dir: &Path, meta_data: &serde_json::Value) {
    for v in ["latest", "2018-08-27"] {
        let d = dir.join("openstack").join(v);
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("meta_data.json"),
            serde_json::to_vec_pretty(meta_data).unwrap(),
        )
        .unwrap();
        fs::write(d.join("user_data"), b"#!/bin/sh\necho hello\n").unwrap();
        fs::write(
            d.join("network_data.json"),
            b"{\"links\":[],\"networks\":[],\"services\":[]}\n",
        )
        .unwrap();
    }
    fs::create_dir_all(dir.join("openstack/content")).unwrap();
    fs::write(dir.join("openstack/content/0000"), b"injected\n").unwrap();
}

pub fn sample_meta(hostname: &str, keys: &[&str]) -> serde_json::Value {
    let pk: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("key{i}"), serde_json::Value::String(k.to_string())))
        .collect();
    serde_json::json!({
        "uuid": "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9",
        "hostname": hostname,
        "name": "test vm",
        "public_keys": pk,
        "meta": {"role": "test"},
        "admin_pass": "do-not-print-me",
        "files": [{"path": "/etc/injected", "content_path": "/content/0000"}],
    })
}

/// How to build an ISO.
#[derive(Debug, Clone, Copy)]
pub enum IsoTool {
    /// genisoimage with nova's flags.
    Nova,
    /// xorriso's mkisofs emulation with Rock Ridge and Joliet.
    Xorriso,
    /// genisoimage, plain ISO9660 level 1 (no Rock Ridge, no Joliet), label upper case.
    Level1,
    /// genisoimage with Joliet and no Rock Ridge.
    Joliet,
}

/// Program and flags (without `-o OUT TREE`) for each way of building an ISO.
pub fn iso_command(tool: IsoTool) -> (&'static str, Vec<&'static str>) {
    // nova/virt/configdrive.py: genisoimage -J -r -l -ldots -allow-lowercase -allow-multidot.
    const NOVA: &[&str] = &[
        "-quiet",
        "-J",
        "-r",
        "-l",
        "-ldots",
        "-allow-lowercase",
        "-allow-multidot",
        "-V",
        "config-2",
    ];
    match tool {
        IsoTool::Nova => ("genisoimage", NOVA.to_vec()),
        IsoTool::Xorriso => (
            "xorriso",
            vec!["-as", "mkisofs", "-quiet", "-J", "-r", "-V", "config-2"],
        ),
        IsoTool::Level1 => ("genisoimage", vec!["-quiet", "-V", "CONFIG-2"]),
        IsoTool::Joliet => ("genisoimage", vec!["-quiet", "-J", "-V", "config-2"]),
    }
}

/// An ISO from another producer (genisoimage, xorriso): for cross-checks that prove the readers
/// against what clouds' tools write. A test that only needs *a* drive uses [`make_drive`].
pub fn make_iso(tree: &Path, out: &Path, tool: IsoTool) {
    let (prog, args) = iso_command(tool);
    require_tool(prog);
    let o = Command::new(prog)
        .args(&args)
        .arg("-o")
        .arg(out)
        .arg(tree)
        .output()
        .unwrap();
    assert!(o.status.success(), "{prog} failed: {}", text(&o));
}

/// A loop device attached read-only to an image; detached on drop, even when a test fails.
pub struct Loop {
    pub dev: String,
}

impl Loop {
    pub fn attach(image: &Path) -> Loop {
        require_root();
        require_tool("losetup");
        let o = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(image)
            .output()
            .unwrap();
        assert!(o.status.success(), "losetup failed: {}", text(&o));
        Loop {
            dev: String::from_utf8_lossy(&o.stdout).trim().to_string(),
        }
    }

    pub fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A scratch target root with `/etc/passwd` holding root and a `debian` user (uid 1000).
pub fn scratch_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("etc")).unwrap();
    fs::write(
        t.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000:Debian:/home/debian:/bin/bash\n",
    )
    .unwrap();
    fs::write(
        t.path().join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    )
    .unwrap();
    t
}

/// Everything about a tree that a re-run must not change: type, mode, owner, size, mtime and
/// content of every entry.
/// mode, uid, gid, mtime, mtime_nsec, content.
pub type EntryState = (u32, u32, u32, i64, i64, Vec<u8>);

/// primer's run status: every `run` that applied a drive or found none rewrites it (its time),
/// by design, so the snapshot leaves it out (tests/lifecycle.rs checks it).
pub const RUN_STATUS: &str = "var/lib/primer/status.json";

/// The re-run fast path's cache: written by a run that changed nothing (a cache, not state:
/// tests/rerun.rs checks it), so the snapshot leaves it out too.
pub const RERUN_CACHE: &str = "var/lib/primer/rerun.json";

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, EntryState> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let content = if m.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                (
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                    content,
                ),
            );
        }
    }
    // Without the run status, its directories are left out when they hold nothing else (a run
    // that found no drive creates them on a fresh root); their mtimes are not compared.
    out.remove(Path::new(RUN_STATUS));
    out.remove(Path::new(RERUN_CACHE));
    for dir in ["var/lib/primer", "var/lib", "var"].map(Path::new) {
        if out.keys().any(|k| k != dir && k.starts_with(dir)) {
            if let Some(e) = out.get_mut(dir) {
                (e.3, e.4) = (0, 0);
            }
        } else {
            out.remove(dir);
        }
    }
    out
}

pub fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

pub fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// Path of the shared conformance fixtures, when present beside the checkout.
pub fn shared_fixtures() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    p.is_dir().then_some(p)
}

/// Compares `text` with the golden file `golden` (or rewrites it when `update`): `None` when
/// they agree, else a message naming `name` and the first differing line.
pub fn check_golden(golden: &Path, name: &str, text: &str, update: bool) -> Option<String> {
    if update {
        fs::write(golden, text).unwrap();
        return None;
    }
    match fs::read_to_string(golden) {
        Ok(want) if want == text => None,
        Ok(want) => {
            let line = want
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            Some(format!(
                "{name}: differs from {} at line {}:\n  want: {}\n  got:  {}",
                golden.display(),
                line + 1,
                want.lines().nth(line).unwrap_or("<end>"),
                text.lines().nth(line).unwrap_or("<end>")
            ))
        }
        Err(e) => Some(format!("{name}: {}: {e}", golden.display())),
    }
}

/// A filesystem `make_drive` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveFs {
    Iso9660,
    Vfat,
}

/// Builds a drive image of `tree` (used as is) with primer's own `make-drive`, labelled `label`,
/// byte-reproducible: what a test uses when it only needs *a* drive. Through the binary, not
/// the library module, so the suite exercises the command operators run and no test depends on
/// `primer::make`'s internal API. Tests that prove the readers against other producers use
/// [`make_iso`] (genisoimage, xorriso) or mkfs.vfat instead.
pub fn make_drive(tree: &Path, out: &Path, fs: DriveFs, label: &str) {
    make_drive_with(tree, fs, label, &["-o".as_ref(), out.as_os_str()]);
}

/// [`make_drive`] into a new trailing partition of the disk image `disk` (`--into`, as Ironic
/// places its config partition), `size` bytes.
pub fn make_drive_into(tree: &Path, disk: &Path, fs: DriveFs, label: &str, size: u64) {
    let size = size.to_string();
    make_drive_with(
        tree,
        fs,
        label,
        &[
            "--into".as_ref(),
            disk.as_os_str(),
            "--partition-size".as_ref(),
            size.as_ref(),
        ],
    );
}

/// `primer make-drive --deterministic` of `tree` with `output`'s arguments (where it goes).
fn make_drive_with(tree: &Path, fs: DriveFs, label: &str, output: &[&std::ffi::OsStr]) {
    let o = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["make-drive", "--deterministic", "--label", label])
        .arg("--filesystem")
        .arg(match fs {
            DriveFs::Iso9660 => "iso9660",
            DriveFs::Vfat => "vfat",
        })
        .arg("--dir")
        .arg(tree)
        .args(output)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run primer make-drive");
    assert!(o.status.success(), "primer make-drive: {}", text(&o));
}

/// A shell script of about `len` bytes holding `marker` near its middle (the large user-data of
/// the streaming tests).
pub fn large_script(len: usize, marker: &str) -> Vec<u8> {
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

/// `primer run --defer-scripts` from `source` into `root` under GNU time (its report in `dir`):
/// the output and the peak RSS in KiB.
pub fn run_measured(source: impl AsRef<std::ffi::OsStr>, root: &Path, dir: &Path) -> (Output, u64) {
    run_measured_with(source, root, dir, &[], None)
}

/// [`run_measured`] with `extra` arguments before `--source` and, when given, `TMPDIR` set.
pub fn run_measured_with(
    source: impl AsRef<std::ffi::OsStr>,
    root: &Path,
    dir: &Path,
    extra: &[&str],
    tmp: Option<&Path>,
) -> (Output, u64) {
    require_tool("/usr/bin/time");
    let t = dir.join("time");
    let mut c = Command::new("/usr/bin/time");
    c.arg("-o")
        .arg(&t)
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--log-level", "error", "--defer-scripts"])
        .args(["--network-backend", "networkd"])
        .args(extra)
        .arg("--source")
        .arg(source)
        .arg("--root")
        .arg(root);
    if let Some(tmp) = tmp {
        c.env("TMPDIR", tmp);
    }
    let o = c.output().unwrap();
    let rss = fs::read_to_string(&t)
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time's %M");
    (o, rss)
}

/// A config-2 tree at `dir/name` (the sample meta data, host name "large") whose user_data, in
/// every version it has (the reader takes the newest dated one), is `ud`.
pub fn config2_tree(dir: &Path, name: &str, ud: &[u8]) -> PathBuf {
    let tree = dir.join(name);
    write_drive_tree(&tree, &sample_meta("large", &[]));
    write_user_data(&tree, ud);
    tree
}

/// Replaces the user data of both versions of a [`write_drive_tree`] drive.
pub fn write_user_data(tree: &Path, ud: impl AsRef<[u8]>) {
    for v in ["latest", "2018-08-27"] {
        fs::write(
            tree.join("openstack").join(v).join("user_data"),
            ud.as_ref(),
        )
        .unwrap();
    }
}

/// [`config2_tree`] as an image file `dir/drive.iso` (nova's genisoimage flags), the tree
/// removed.
pub fn config2_iso(dir: &Path, ud: &[u8]) -> PathBuf {
    let tree = config2_tree(dir, "tree", ud);
    let iso = dir.join("drive.iso");
    make_iso(&tree, &iso, IsoTool::Nova);
    fs::remove_dir_all(&tree).unwrap();
    iso
}

/// `primer::agent::plan` of `source` into the image root `root`, scripts deferred: the drive as
/// loaded (kept open while the plan's streamed files are used) and the plan.
pub fn plan_deferred(source: &Path, root: &Path) -> (primer::agent::Loaded, primer::plan::Plan) {
    use primer::agent::{Locate, PlanRequest};
    let req = PlanRequest {
        locate: Locate {
            source: Some(source.to_path_buf()),
            ..Locate::default()
        },
        root: root.to_path_buf(),
        user: None,
        network_backend: None,
        defer_scripts: true,
    };
    primer::agent::plan(&req).unwrap().expect("a drive")
}

/// A run's report with each step's text owned (read from the plan the report is of).
pub struct Applied {
    pub steps: Vec<primer::apply::StepReport>,
}

/// `plan` applied to the image root `root` under the run lock, as `primer run` applies it.
pub fn apply_locked(plan: &primer::plan::Plan, root: &Path) -> Applied {
    use primer::apply::{apply_plan, RunLock, Target};
    let lock = RunLock::take(root, std::time::Duration::from_secs(5)).unwrap();
    let report = apply_plan(
        plan,
        &Target {
            root: root.to_path_buf(),
            live: false,
        },
        &lock,
    );
    Applied {
        steps: report.to_vec(&plan.steps),
    }
}

/// A first run from the loop device of a config-2 ISO holding `ud` (made in `dir/name`), under
/// GNU time, into a scratch root with a `root` group: the root, the peak RSS (KiB) and the
/// output's text. It succeeds.
pub fn iso_first_run(
    dir: &std::path::Path,
    name: &str,
    ud: &[u8],
) -> (tempfile::TempDir, u64, String) {
    let sub = dir.join(name);
    fs::create_dir(&sub).unwrap();
    let iso = config2_iso(&sub, ud);
    let dev = Loop::attach(&iso);
    let root = scratch_root();
    // `root:root`, the owner `write_files` gives by default, is a group of the target too.
    fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    let (o, rss) = run_measured(&dev.dev, root.path(), dir);
    assert!(o.status.success(), "{}", text(&o));
    (root, rss, text(&o))
}
