//! The re-run fast path end to end with the real binary: taken on a re-run with nothing
//! changed, not taken after any input changed (a touched, modified, chmodded or deleted target,
//! a changed drive or configuration, another binary), and in every case the same outcome as the
//! full path: the exit code, stdout, `status.json` without its times and the file tree, against
//! a copy of the same root run through the full path.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const CACHE: &str = RERUN_CACHE;
const FAST: &str = "re-run fast path: ";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_with(bin: &Path, src: &Path, root: &Path) -> Output {
    run_env(bin, src, root, &[])
}

/// A run with `env` set in its environment (and nothing else changed).
fn run_env(bin: &Path, src: &Path, root: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(bin)
        .args([
            "run",
            "--log-level",
            "debug",
            "--network-backend",
            "networkd",
            "--source",
            s(src),
            "--root",
            s(root),
        ])
        .envs(env.iter().copied())
        .output()
        .expect("run primer")
}

fn run(src: &Path, root: &Path) -> Output {
    run_with(Path::new(env!("CARGO_BIN_EXE_primer")), src, root)
}

fn fast(o: &Output) -> bool {
    String::from_utf8_lossy(&o.stderr).contains(FAST)
}

/// Every entry below `root` but the status and the cache: type and mode, owner, content.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new(RUN_STATUS) || rel == Path::new(CACHE) {
                continue;
            }
            let content = if m.is_file() {
                fs::read(e.path()).unwrap()
            } else if m.file_type().is_symlink() {
                fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(rel, (m.mode(), m.uid(), m.gid(), content));
        }
    }
    out
}

/// `status.json` without what differs between two runs of the same outcome: times and the boot.
fn status(root: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for k in ["time", "duration_ms", "boot_id"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join(RUN_STATUS)).unwrap()).unwrap();
    strip(&mut v);
    v
}

/// The target root `a` in `dir`: an `/etc/passwd` with root and the default user.
fn target_root(dir: &Path) -> PathBuf {
    let root = dir.join("a");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000:Debian:/home/debian:/bin/bash\n",
    )
    .unwrap();
    root
}

/// A root after a first run and a re-run (the one that records the fast path), and its drive.
fn settled() -> (tempfile::TempDir, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    write_drive_tree(src.path(), &sample_meta("web-1", &[ED]));
    let t = tempfile::tempdir().unwrap();
    let root = target_root(t.path());
    let first = run(src.path(), &root);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    settle();
    let second = run(src.path(), &root);
    assert_eq!(second.status.code(), Some(10), "{}", text(&second));
    assert!(!fast(&second), "{}", text(&second));
    assert!(root.join(CACHE).is_file(), "{}", text(&second));
    (src, t)
}

/// Past the window in which the fast path does not trust timestamps (a change within a clock
/// tick of a run is not recorded: `rerun::RACY_NS`).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(40));
}

/// Runs the root `a` of `t` with `bin` and a copy of it (new inodes and another root path:
/// its cache, removed anyway, cannot match) through the full path; asserts both outcomes are
/// the same, and returns whether `a` took the fast path.
fn same_as_full(bin: &Path, src: &Path, t: &Path) -> bool {
    same_as_full_env(bin, src, t, &[])
}

/// [`same_as_full`] with `env` set for both runs.
fn same_as_full_env(bin: &Path, src: &Path, t: &Path, env: &[(&str, &str)]) -> bool {
    let a = t.join("a");
    let b = t.join("b");
    let _ = fs::remove_dir_all(&b);
    let cp = Command::new("cp")
        .args(["-a", s(&a), s(&b)])
        .status()
        .unwrap();
    assert!(cp.success());
    let _ = fs::remove_file(b.join(CACHE));
    settle();
    let oa = run_env(bin, src, &a, env);
    let ob = run_env(&self::bin(), src, &b, env);
    assert!(!fast(&ob), "{}", text(&ob));
    assert_eq!(
        oa.status.code(),
        ob.status.code(),
        "{}\n{}",
        text(&oa),
        text(&ob)
    );
    let out = |o: &Output, r: &Path| String::from_utf8_lossy(&o.stdout).replace(s(r), "ROOT");
    assert_eq!(out(&oa, &a), out(&ob, &b));
    assert_eq!(status(&a), status(&b));
    let (ta, tb) = (tree(&a), tree(&b));
    if ta != tb {
        let only = |x: &BTreeMap<PathBuf, _>, y: &BTreeMap<PathBuf, _>| -> Vec<PathBuf> {
            x.iter()
                .filter(|(k, v)| y.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .collect()
        };
        panic!(
            "trees differ: a: {:?}; b: {:?}\n{}\n{}",
            only(&ta, &tb),
            only(&tb, &ta),
            text(&oa),
            text(&ob)
        );
    }
    fast(&oa)
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_primer"))
}

#[test]
fn an_unchanged_rerun_takes_the_fast_path_with_the_full_paths_outcome() {
    let (src, t) = settled();
    assert!(same_as_full(&bin(), src.path(), t.path()));
    // And again: the fast path leaves its inputs as they were.
    assert!(same_as_full(&bin(), src.path(), t.path()));
}

#[test]
fn a_touched_target_takes_the_full_path() {
    let (src, t) = settled();
    let host = t.path().join("a/etc/hostname");
    let st = Command::new("touch").arg(&host).status().unwrap();
    assert!(st.success());
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    // The full run changed nothing and recorded the fast path again.
    assert!(same_as_full(&bin(), src.path(), t.path()));
}

/// `/etc/hosts` edited after the run that recorded the fast path: the full path decides, and
/// (the file is written once per instance) keeps the local edit; that run records the fast
/// path again, with the edited file as its input.
#[test]
fn a_modified_target_takes_the_full_path_and_keeps_the_local_edit() {
    let (src, t) = settled();
    let hosts = t.path().join("a/etc/hosts");
    let edit = "127.0.0.1 localhost\n";
    fs::write(&hosts, edit).unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    assert_eq!(fs::read_to_string(&hosts).unwrap(), edit);
    assert!(same_as_full(&bin(), src.path(), t.path()));
    assert_eq!(fs::read_to_string(&hosts).unwrap(), edit);
}

#[test]
fn a_chmod_takes_the_full_path() {
    let (src, t) = settled();
    let f = t.path().join("a/etc/injected");
    let mode = fs::metadata(&f).unwrap().permissions().mode();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(mode & 0o777, 0o600);
    // (An injected file is written once per instance: the full path keeps the local chmod.)
    assert!(!same_as_full(&bin(), src.path(), t.path()));
}

#[test]
fn a_deleted_target_takes_the_full_path() {
    let (src, t) = settled();
    fs::remove_file(t.path().join("a/etc/injected")).unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
}

#[test]
fn a_deleted_state_file_takes_the_full_path() {
    let (src, t) = settled();
    let id = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";
    fs::remove_file(
        t.path()
            .join(format!("a/var/lib/primer/instance/{id}/instance.json")),
    )
    .unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
}

#[test]
fn a_changed_drive_takes_the_full_path() {
    let (src, t) = settled();
    write_drive_tree(src.path(), &sample_meta("web-2", &[ED, ED2]));
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    let hostname = fs::read_to_string(t.path().join("a/etc/hostname")).unwrap();
    assert_eq!(hostname.trim(), "web-2");
}

#[test]
fn a_changed_configuration_takes_the_full_path() {
    let (src, t) = settled();
    let conf = t.path().join("a/etc/primer");
    fs::create_dir_all(&conf).unwrap();
    fs::write(conf.join("primer.yaml"), "files_mode: 0o600\n").unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
}

#[test]
fn another_binary_takes_the_full_path() {
    let (src, t) = settled();
    // Another file: the identity of the binary is part of the fast path's key.
    let other = t.path().join("primer-other");
    fs::copy(bin(), &other).unwrap();
    assert!(!same_as_full(&other, src.path(), t.path()));
}

/// A test build's `PRIMER_TEST_HOSTKEYS_ROOT` changes the policy (host keys handled as on a
/// running system: here the run changes the record, "no ssh-keygen in the target"): part of the
/// key, so the fast path recorded without it is not taken with it (its "unchanged" would not
/// be the full path's "changed"), nor the one recorded with it without it.
#[test]
fn a_test_environment_that_changes_the_policy_takes_the_full_path() {
    let (src, t) = settled();
    let env = [("PRIMER_TEST_HOSTKEYS_ROOT", "1")];
    // Changed (not recorded), then unchanged (recorded), then the fast path.
    assert!(!same_as_full_env(&bin(), src.path(), t.path(), &env));
    assert!(!same_as_full_env(&bin(), src.path(), t.path(), &env));
    assert!(same_as_full_env(&bin(), src.path(), t.path(), &env));
    assert!(!same_as_full(&bin(), src.path(), t.path()));
}

#[test]
fn a_stray_temporary_file_is_still_swept_on_the_fast_path() {
    let (src, t) = settled();
    let stray = t.path().join("a/etc/.hostname.primer-tmp.1.1");
    fs::write(&stray, "x").unwrap();
    // As the run that left it would have: the lock's clean marker reset (`apply::RunLock`).
    let lock = t.path().join("a/var/lib/primer/lock");
    assert!(Command::new("touch")
        .arg("-a")
        .arg(&lock)
        .status()
        .unwrap()
        .success());
    // A new entry in `etc` (a listed directory): the full path, which sweeps it.
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    assert!(!stray.exists());
}

/// A NIC appearing or renamed under the root's `sys/class/net` (a fake sysfs, as the facts
/// tests use): the NICs are compared by value, not by metadata (sysfs inodes are new each
/// boot), and a change takes the full path.
#[test]
fn an_added_or_renamed_nic_takes_the_full_path() {
    let nic = |root: &Path, name: &str, mac: &str| {
        let d = root.join("sys/class/net").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("address"), format!("{mac}\n")).unwrap();
    };
    let (src, t) = settled();
    let a = t.path().join("a");
    nic(&a, "eth0", "52:54:00:12:34:56");
    // The first run that sees the NIC records it, then the fast path holds.
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    assert!(same_as_full(&bin(), src.path(), t.path()));
    // Added.
    nic(&a, "eth1", "52:54:00:12:34:57");
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    assert!(same_as_full(&bin(), src.path(), t.path()));
    // Renamed (same MAC, another name): no file metadata of the root changes but sysfs's.
    fs::rename(a.join("sys/class/net/eth1"), a.join("sys/class/net/ens4")).unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    // A MAC changed in place.
    fs::write(a.join("sys/class/net/ens4/address"), "52:54:00:12:34:58\n").unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
}

/// The host name set by hand after the first boot: the full path decides (the host name is
/// applied once per instance, so the local edit is kept), and so the same outcome.
#[test]
fn an_edited_host_name_file_takes_the_full_path() {
    let (src, t) = settled();
    let host = t.path().join("a/etc/hostname");
    fs::write(&host, "other\n").unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    assert_eq!(fs::read_to_string(&host).unwrap(), "other\n");
}

#[test]
fn one_changed_drive_byte_takes_the_full_path() {
    let (src, t) = settled();
    // A byte of a drive file nothing but the local copy depends on.
    let f = src.path().join("openstack/latest/network_data.json");
    let mut b = fs::read(&f).unwrap();
    let at = b.iter().position(|c| *c == b']').unwrap();
    b.insert(at, b' ');
    fs::write(&f, b).unwrap();
    assert!(!same_as_full(&bin(), src.path(), t.path()));
    let copy = t.path().join(format!(
        "a/var/lib/primer/instance/{ID}/drive/openstack/latest/network_data.json"
    ));
    assert_eq!(fs::read(copy).unwrap(), fs::read(&f).unwrap());
}

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

/// `primer run` as the unit starts it (no `--source`): the kernel command line (given by
/// `PRIMER_CMDLINE_FILE`) names the drive, and `PRIMER_BOOT_ID_FILE` gives this boot's id.
fn run_booted(cmdline: &Path, boot: &Path, root: &Path) -> Output {
    Command::new(bin())
        .args([
            "run",
            "--log-level",
            "debug",
            "--network-backend",
            "networkd",
        ])
        .args(["--root", s(root)])
        .env("PRIMER_CMDLINE_FILE", cmdline)
        .env("PRIMER_BOOT_ID_FILE", boot)
        .output()
        .expect("run primer")
}

fn boot_id(root: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join(RUN_STATUS)).unwrap()).unwrap();
    v["boot_id"].as_str().unwrap_or_default().to_string()
}

/// A reboot with the same drive (a new boot id) takes the fast path and records the new boot
/// in the status (what `status --wait` looks for); a changed kernel command line does not.
#[test]
fn a_new_boot_takes_the_fast_path_and_a_changed_command_line_does_not() {
    let (src, t) = settled();
    let root = t.path().join("a");
    let cmdline = t.path().join("cmdline");
    let boot = t.path().join("boot_id");
    let boots = [
        "11111111-2222-4333-8444-555555555555",
        "22222222-2222-4333-8444-555555555555",
        "33333333-2222-4333-8444-555555555555",
        "44444444-2222-4333-8444-555555555555",
    ];
    fs::write(&cmdline, format!("quiet primer.source={}\n", s(src.path()))).unwrap();
    let before = tree(&root);
    let mut outcomes = Vec::new();
    for (i, b) in boots.iter().enumerate() {
        if i == 2 {
            // Another command line: primer's arguments are part of the key.
            fs::write(
                &cmdline,
                format!("quiet primer.source={} ds=nocloud;h=x\n", s(src.path())),
            )
            .unwrap();
        }
        fs::write(&boot, format!("{b}\n")).unwrap();
        settle();
        let o = run_booted(&cmdline, &boot, &root);
        assert_eq!(o.status.code(), Some(10), "{}", text(&o));
        assert_eq!(boot_id(&root), *b);
        outcomes.push(fast(&o));
    }
    // Boot 1: the first with this command line (recorded); 2: the fast path; 3: a new command
    // line (full, recorded); 4: fast again.
    assert_eq!(outcomes, [false, true, false, true]);
    assert_eq!(tree(&root), before);
}

/// Two runs at once on a root the fast path holds for: the lock orders them, both report
/// "unchanged" through the fast path (the first leaves every input as it was, so the second's
/// check, made under the lock after the first finished, holds too), nothing changes.
#[test]
fn two_runs_at_once() {
    let (src, t) = settled();
    let root = t.path().join("a");
    let before = tree(&root);
    settle();
    let spawn = || {
        Command::new(bin())
            .args([
                "run",
                "--log-level",
                "debug",
                "--network-backend",
                "networkd",
            ])
            .args(["--source", s(src.path()), "--root", s(&root)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (x, y) = (spawn(), spawn());
    for o in [x.wait_with_output().unwrap(), y.wait_with_output().unwrap()] {
        assert_eq!(o.status.code(), Some(10), "{}", text(&o));
        assert!(fast(&o), "{}", text(&o));
    }
    assert_eq!(tree(&root), before);
}

/// A run of another drive killed at each rename and each write it makes, on a root whose cache
/// holds for the first drive; then the first drive again: the same outcome as the full path
/// (the killed run's renames changed inputs the cache vouched for, or nothing it rests on).
#[test]
fn a_run_killed_midway_then_the_old_drive_converges_as_the_full_path() {
    require_tool("strace");
    let (src, t) = settled();
    let src2 = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("web-2", &[ED, ED2]);
    meta["files"] = serde_json::json!([
        {"path": "/etc/injected", "content_path": "/content/0000"},
        {"path": "/etc/other", "content_path": "/content/0000"}
    ]);
    write_drive_tree(src2.path(), &meta);
    let a = t.path().join("a");
    let pristine = t.path().join("pristine");
    let cp = |from: &Path, to: &Path| {
        let _ = fs::remove_dir_all(to);
        assert!(Command::new("cp")
            .args(["-a", s(from), s(to)])
            .status()
            .unwrap()
            .success());
    };
    cp(&a, &pristine);
    let mut kills = 0;
    for call in ["rename", "write"] {
        for n in [1, 2, 3, 5, 8, 13] {
            cp(&pristine, &a);
            let o = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("inject={call}:signal=KILL:when={n}"))
                .arg(bin())
                .args([
                    "run",
                    "--network-backend",
                    "networkd",
                    "--source",
                    s(src2.path()),
                ])
                .args(["--root", s(&a)])
                .output()
                .unwrap();
            if o.status.code().is_none() || o.status.code() == Some(137) {
                kills += 1;
            }
            same_as_full(&bin(), src.path(), t.path());
            // And it settles: the next run of the first drive changes nothing.
            settle();
            let o = run(src.path(), &a);
            assert_eq!(o.status.code(), Some(10), "{call} #{n}: {}", text(&o));
        }
    }
    assert!(kills > 0, "strace killed no run");
}

/// A path the drive writes twice (two injected files, two `write_files` entries, an injected
/// file and a `write_files` entry) holds the last write after the first run and after every
/// later one, and a re-run changes nothing. Two injected files share one step id, so the record
/// vouched for the last only: each re-run wrote the first again over the file the plan had
/// found up to date for the second, and the file flipped between the two contents run by run.
#[test]
fn a_path_written_twice_holds_the_last_write_and_converges() {
    let src = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("web-1", &[ED]);
    meta["files"] = serde_json::json!([
        {"path": "/etc/twice", "content_path": "/content/0000"},
        {"path": "/etc/both", "content_path": "/content/0000"},
        {"path": "/etc/twice", "content_path": "/content/0001"}
    ]);
    write_drive_tree(src.path(), &meta);
    fs::write(src.path().join("openstack/content/0001"), b"second\n").unwrap();
    let ud = "#cloud-config\nwrite_files:\n  - {path: /srv/w, content: \"one\\n\"}\n  - {path: /srv/w, content: \"two\\n\"}\n  - {path: /srv/w, content: \"three\\n\", append: true}\n  - {path: /etc/both, content: \"from write_files\\n\"}\n";
    write_user_data(src.path(), ud);
    let t = tempfile::tempdir().unwrap();
    let root = target_root(t.path());
    fs::write(root.join("etc/group"), "root:x:0:\ndebian:x:1000:\n").unwrap();
    let want = [
        ("etc/twice", "second\n"),
        ("etc/both", "from write_files\n"),
        ("srv/w", "two\nthree\n"),
    ];
    for n in 0..4 {
        let o = run(src.path(), &root);
        assert_eq!(
            o.status.code(),
            Some(if n == 0 { 0 } else { 10 }),
            "run {n}: {}",
            text(&o)
        );
        for (path, content) in want {
            assert_eq!(
                fs::read_to_string(root.join(path)).unwrap(),
                content,
                "run {n}: /{path}\n{}",
                text(&o)
            );
        }
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(
                "\"/etc/twice\": written again by step \"file:etc/twice\" later in this run"
            ),
            "run {n}: {out}"
        );
        assert!(
            out.contains(
                "\"/srv/w\": written again by step \"write-file:1:srv/w\" later in this run"
            ),
            "run {n}: {out}"
        );
        assert!(
            out.contains(
                "\"/etc/both\": written again by step \"write-file:3:etc/both\" later in this run"
            ),
            "run {n}: {out}"
        );
        settle();
    }
    // A local edit, then the drive drops the later write: the edit is kept (the earlier entry
    // was recorded with the run, as when both were written), and the next run changes nothing.
    fs::write(root.join("srv/w"), "local edit\n").unwrap();
    let ud = "#cloud-config\nwrite_files:\n  - {path: /srv/w, content: \"one\\n\"}\n  - {path: /etc/both, content: \"from write_files\\n\"}\n";
    write_user_data(src.path(), ud);
    for n in 0..2 {
        let o = run(src.path(), &root);
        assert_eq!(
            o.status.code(),
            Some(if n == 0 { 0 } else { 10 }),
            "dropped, run {n}: {}",
            text(&o)
        );
        assert_eq!(
            fs::read_to_string(root.join("srv/w")).unwrap(),
            "local edit\n",
            "dropped, run {n}: {}",
            text(&o)
        );
        settle();
    }
}
