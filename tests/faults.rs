//! Crash safety: a run killed at every fault point (after each applied step, each rename of the
//! commit, each script; `PRIMER_FAULT_AFTER=N`, compiled into test builds only), then run again,
//! must leave exactly the tree an uninterrupted run leaves, with no temporary file anywhere.
//!
//! The same at the level of system calls: `strace -f -e inject=CALL:signal=KILL:when=N` kills
//! the run at the N-th call of each mutating system call (mkdir, chmod, chown, rename, write,
//! fsync, unlink and their *at/f* variants). The calls of an uninterrupted run are counted
//! first; CI runs a deterministic sample of N per call (the first, the last and every k-th,
//! about `SAMPLE_PER_CALL` of them); `PRIMER_CRASH_ALL=1` runs every N (done by hand: see the
//! report printed by the test).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A drive touching every kind of step: host name, keys, injected files, network, local copy.
fn drive() -> tempfile::TempDir {
    drive_with(|_| {})
}

/// `drive()` with its metadata changed by `edit`.
fn drive_with(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("crash-1.example.org", &[ED, ED2]);
    edit(&mut meta);
    // Nine files into `/opt`, which the run creates: built as one tree renamed in once
    // (`fs::Writer::stage_new_dir_file`), so a kill while it is built or published is covered.
    let mut files = vec![
        serde_json::json!({"path": "/etc/injected", "content_path": "/content/0000"}),
        serde_json::json!({"path": "/opt/app/conf.d/site.conf", "content_path": "/content/0000"}),
    ];
    for i in 0..8 {
        files.push(serde_json::json!({
            "path": format!("/opt/app/conf.d/{i:02}.conf"),
            "content_path": "/content/0000"
        }));
    }
    meta["files"] = serde_json::Value::Array(files);
    write_drive_tree(t.path(), &meta);
    // User-data: a user with a home, keys, a sudo rule, an append, a script (staged: --root),
    // and the system keys (a symlink, a mount point, fstab and locale edits).
    let ud = format!(
        "#cloud-config\nusers:\n  - default\n  - name: alice\n    sudo: ALL=(ALL) ALL\n    ssh_authorized_keys: [{ED2}]\nwrite_files:\n  - {{path: /etc/motd, content: \"appended\\n\", append: true}}\nruncmd:\n  - echo hi\ntimezone: Europe/Berlin\nlocale: C.UTF-8\nmounts:\n  - [/dev/vdb, /data]\n"
    );
    for v in ["latest", "2018-08-27"] {
        fs::write(t.path().join("openstack").join(v).join("user_data"), &ud).unwrap();
    }
    let net = serde_json::json!({
        "links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56", "mtu": 1450}],
        "networks": [{"id": "n4", "link": "eth0", "type": "ipv4", "ip_address": "192.0.2.10",
                      "netmask": "255.255.255.0", "network_id": "a",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]}],
        "services": [{"type": "dns", "address": "192.0.2.53"}]
    });
    for v in ["latest", "2018-08-27"] {
        fs::write(
            t.path().join("openstack").join(v).join("network_data.json"),
            serde_json::to_vec(&net).unwrap(),
        )
        .unwrap();
    }
    t
}

fn run(src: &Path, root: &Path, fault: Option<usize>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_primer"));
    c.args(["run", "--source"])
        .arg(src)
        .arg("--root")
        .arg(root)
        .args(["--user", "debian", "--network-backend", "networkd"]);
    match fault {
        Some(n) => c.env("PRIMER_FAULT_AFTER", n.to_string()),
        None => c.env_remove("PRIMER_FAULT_AFTER"),
    };
    c.output().expect("run primer")
}

/// Type, mode, owner and content of every entry (mtimes differ between runs by nature), without
/// the run-time status file.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    snapshot(root)
        .into_iter()
        .filter(|(p, _)| !p.ends_with("var/lib/primer/status.json"))
        .filter(|(p, _)| !p.ends_with(RERUN_CACHE))
        .map(|(p, (mode, uid, gid, _, _, content))| {
            let content = unsalted(&p, content);
            (p, (mode, uid, gid, content))
        })
        .collect()
}

/// Password hashes carry a random salt, so two runs write different ones: compare them by
/// whether they verify the drive's password (openssl, independent of primer) instead.
fn unsalted(p: &Path, content: Vec<u8>) -> Vec<u8> {
    // primer's digest key is random per machine: compared by size (its mode and owner are
    // compared as for every file).
    if p.ends_with("var/lib/primer/secret") {
        return format!("<{} random bytes>", content.len()).into_bytes();
    }
    let shadow = p.ends_with("etc/shadow");
    if !shadow && !p.ends_with("applied.json") {
        return content;
    }
    let text = String::from_utf8_lossy(&content).into_owned();
    let mut out = text.clone();
    // The record's password digests are keyed by that random key (`hmac-sha256:WANTED:FIELD:
    // set|kept`): compared by shape and decision. That they match the state is what the third
    // run's exit 10 shows (a digest that did not would make it apply again).
    for d in text.split('"').filter(|f| f.starts_with("hmac-sha256:")) {
        let fields: Vec<&str> = d.split(':').collect();
        let hex = |f: &str| f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit());
        let shape = if fields.len() == 4 && hex(fields[1]) && hex(fields[2]) {
            format!("hmac-sha256:<keyed>:<keyed>:{}", fields[3])
        } else {
            format!("<malformed digest record {d}>")
        };
        out = out.replace(d, &shape);
    }
    for h in text.split([':', '"']).filter(|f| f.starts_with("$6$")) {
        let salt = h[3..].split('$').next().unwrap_or("");
        let expect = Command::new("openssl")
            .args(["passwd", "-6", "-salt", salt, PASSWORD])
            .output()
            .unwrap();
        let ok = String::from_utf8_lossy(&expect.stdout).trim() == h;
        out = out.replace(
            h,
            if ok {
                "<hash of the drive's password>"
            } else {
                "<other hash>"
            },
        );
    }
    out.into_bytes()
}

const PASSWORD: &str = "do-not-print-me";

/// The scratch root plus a shadow file and a login.defs, so the password step runs too.
fn root_with_shadow() -> tempfile::TempDir {
    let t = scratch_root();
    fs::write(
        t.path().join("etc/shadow"),
        "root:*:19000:0:99999:7:::\ndebian:!:19000:0:99999:7:::\n",
    )
    .unwrap();
    fs::write(
        t.path().join("etc/group"),
        "root:x:0:\ndebian:x:1000:\nsudo:x:27:\n",
    )
    .unwrap();
    fs::write(
        t.path().join("etc/gshadow"),
        "root:*::\ndebian:!::\nsudo:*::\n",
    )
    .unwrap();
    fs::write(t.path().join("etc/sudoers"), "root ALL=(ALL) ALL\n").unwrap();
    fs::write(t.path().join("etc/motd"), "base\n").unwrap();
    fs::write(t.path().join("etc/fstab"), "UUID=1 / ext4 defaults 0 1\n").unwrap();
    fs::create_dir_all(t.path().join("usr/share/zoneinfo/Europe")).unwrap();
    fs::write(
        t.path().join("usr/share/zoneinfo/Europe/Berlin"),
        "TZif2 test zone\n",
    )
    .unwrap();
    fs::create_dir_all(t.path().join("etc/skel/.config")).unwrap();
    fs::write(t.path().join("etc/skel/.profile"), "# profile\n").unwrap();
    fs::write(t.path().join("etc/skel/.config/x"), "x\n").unwrap();
    fs::create_dir_all(t.path().join("etc/primer")).unwrap();
    fs::write(
        t.path().join("etc/primer/primer.yaml"),
        "ssh_user: debian\ndefault_user:\n  name: admin\n  groups: [sudo]\n  sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n",
    )
    .unwrap();
    t
}

fn temps(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains(".primer-tmp."))
        .collect()
}

#[test]
fn killed_after_every_step_then_rerun_converges() {
    let src = drive();
    require_tool("openssl");
    let reference = root_with_shadow();
    let o = run(src.path(), reference.path(), None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let want = tree(reference.path());
    assert!(want.contains_key(Path::new("etc/injected")));
    assert!(want.contains_key(Path::new("home/alice/.config/x")));
    assert!(want.contains_key(Path::new("home/admin/.profile")));
    assert_eq!(want[Path::new("etc/motd")].3, b"base\nappended\n");
    let shadow = String::from_utf8_lossy(&want[Path::new("etc/shadow")].3).into_owned();
    assert!(
        shadow.contains("admin:<hash of the drive's password>:"),
        "{shadow}"
    );

    let mut points = 0;
    for n in 1..500 {
        let root = root_with_shadow();
        let o = run(src.path(), root.path(), Some(n));
        if o.status.code().is_some() {
            // Fewer fault points than n: the run completed.
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            break;
        }
        assert_eq!(o.status.signal(), Some(6), "fault {n}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&format!("PRIMER_FAULT_AFTER={n}")),
            "{}",
            text(&o)
        );
        points = n;
        let again = run(src.path(), root.path(), None);
        assert!(
            matches!(again.status.code(), Some(0) | Some(10)),
            "re-run after fault {n}: {}",
            text(&again)
        );
        assert_eq!(temps(root.path()), Vec::<PathBuf>::new(), "after fault {n}");
        let got = tree(root.path());
        let diff: Vec<&PathBuf> = want
            .keys()
            .chain(got.keys())
            .filter(|k| want.get(*k) != got.get(*k))
            .collect();
        assert!(
            diff.is_empty(),
            "after fault {n}, differs: {}",
            diff.iter()
                .map(|k| format!(
                    "{}:\n  want {:?}\n  got  {:?}",
                    k.display(),
                    want.get(*k).map(|e| (
                        e.0,
                        e.1,
                        e.2,
                        String::from_utf8_lossy(&e.3).into_owned()
                    )),
                    got.get(*k).map(|e| (
                        e.0,
                        e.1,
                        e.2,
                        String::from_utf8_lossy(&e.3).into_owned()
                    ))
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // And a third run changes nothing.
        let third = run(src.path(), root.path(), None);
        assert_eq!(third.status.code(), Some(10), "{}", text(&third));
    }
    // Every step of this drive is a fault point; a handful means the switch is not wired.
    assert!(points >= 20, "only {points} fault points");
    println!("{points} fault points, each converged");
}

#[test]
fn leftover_temporary_files_are_removed() {
    let src = drive();
    let root = scratch_root();
    // A temp file as an interrupted run leaves it beside a file primer writes.
    let stale = root.path().join("etc/.hostname.primer-tmp.4242.1");
    fs::write(&stale, b"half").unwrap();
    let o = run(src.path(), root.path(), None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!stale.exists());
    assert_eq!(temps(root.path()), Vec::<PathBuf>::new());
}

/// Mutating system calls the run is killed at (x86_64 names; the *at variants included).
const CALLS: &[&str] = &[
    "mkdir",
    "mkdirat",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "rename",
    "renameat",
    "renameat2",
    "write",
    "pwrite64",
    "fsync",
    "fdatasync",
    "syncfs",
    "unlink",
    "unlinkat",
];

/// Kill points per system call in the CI sample.
const SAMPLE_PER_CALL: usize = 6;

fn strace_run(src: &Path, root: &Path, strace_args: &[String]) -> Output {
    Command::new("strace")
        .args(["-f", "-qq"])
        .args(strace_args)
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--source"])
        .arg(src)
        .arg("--root")
        .arg(root)
        .args(["--user", "debian", "--network-backend", "networkd"])
        .env_remove("PRIMER_FAULT_AFTER")
        .output()
        .expect("run strace")
}

/// How often primer's own process makes each of `CALLS` in an uninterrupted run.
fn count_calls(src: &Path) -> BTreeMap<&'static str, usize> {
    let root = root_with_shadow();
    let log = tempfile::NamedTempFile::new().unwrap();
    let o = strace_run(
        src,
        root.path(),
        &[
            "-o".into(),
            log.path().display().to_string(),
            "-e".into(),
            format!("trace={}", CALLS.join(",")),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let trace = fs::read_to_string(log.path()).unwrap();
    let main = trace
        .split_whitespace()
        .next()
        .expect("a traced call")
        .to_string();
    let mut counts = BTreeMap::new();
    for l in trace.lines() {
        let Some((pid, rest)) = l.split_once(' ') else {
            continue;
        };
        if pid != main {
            continue;
        }
        let name = rest.trim_start().split('(').next().unwrap_or("");
        if let Some(c) = CALLS.iter().find(|c| **c == name) {
            *counts.entry(*c).or_insert(0) += 1;
        }
    }
    counts
}

/// The kill points for a call made `count` times: all, or the first, the last and every k-th.
fn sample(count: usize, all: bool) -> Vec<usize> {
    if all || count <= SAMPLE_PER_CALL {
        return (1..=count).collect();
    }
    let k = count.div_ceil(SAMPLE_PER_CALL - 1);
    let mut v: Vec<usize> = (1..=count).step_by(k).collect();
    if v.last() != Some(&count) {
        v.push(count);
    }
    v
}

#[test]
fn killed_at_every_mutating_system_call_then_rerun_converges() {
    crash_sweep(&drive());
}

/// The drive names an admin user the image lacks: primer creates it (account files, home,
/// sudo rule). A run killed after the account files but before its record must still finish
/// the account on the next run: home and skeleton, sudo rule, password, no temporary file left.
#[test]
fn killed_while_creating_the_drives_admin_user_then_rerun_converges() {
    let src = drive_with(|m| m["meta"] = serde_json::json!({"admin_username": "ops"}));
    crash_sweep(&src);
}

/// Kills a run of `src` at a sample of every mutating system call (`PRIMER_CRASH_ALL`: at
/// every one), then runs it twice more: the second run converges to the tree of an
/// uninterrupted run, the third changes nothing, no temporary file is left.
fn crash_sweep(src: &tempfile::TempDir) {
    let all = std::env::var_os("PRIMER_CRASH_ALL").is_some();
    crash_sweep_at(src, CALLS, all);
}

/// `crash_sweep` at the calls of `only`, at every N of them with `all`.
fn crash_sweep_at(src: &tempfile::TempDir, only: &[&str], all: bool) {
    require_tool("strace");
    require_tool("openssl");
    let reference = root_with_shadow();
    let o = run(src.path(), reference.path(), None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let want = tree(reference.path());
    let mut counts = count_calls(src.path());
    counts.retain(|c, _| only.contains(c));
    for c in ["write", "rename", "chown", "mkdir"] {
        assert!(
            !only.iter().any(|o| o.contains(c)) || counts.keys().any(|k| k.contains(c)),
            "no {c} traced: {counts:?}"
        );
    }
    let (mut trials, mut killed, mut converged) = (0, 0, 0);
    let mut failures = Vec::new();
    for (call, count) in &counts {
        for n in sample(*count, all) {
            trials += 1;
            let root = root_with_shadow();
            let o = strace_run(
                src.path(),
                root.path(),
                &[
                    "-o".into(),
                    "/dev/null".into(),
                    "-e".into(),
                    format!("trace={call}"),
                    "-e".into(),
                    format!("inject={call}:signal=KILL:when={n}"),
                ],
            );
            if o.status.signal() == Some(9) {
                killed += 1;
            }
            let again = run(src.path(), root.path(), None);
            let third = run(src.path(), root.path(), None);
            let got = tree(root.path());
            let diff: Vec<String> = want
                .keys()
                .chain(got.keys())
                .filter(|k| want.get(*k) != got.get(*k))
                .map(|k| {
                    let show = |e: Option<&(u32, u32, u32, Vec<u8>)>| {
                        e.map(|e| format!("{:o} {}:{}", e.0, e.1, e.2))
                    };
                    format!(
                        "{}: want {:?} got {:?}",
                        k.display(),
                        show(want.get(k)),
                        show(got.get(k))
                    )
                })
                .collect();
            let ok = matches!(again.status.code(), Some(0) | Some(10))
                && third.status.code() == Some(10)
                && temps(root.path()).is_empty()
                && diff.is_empty();
            if ok {
                converged += 1;
            } else {
                failures.push(format!(
                    "{call} #{n} (killed run {:?}): re-run {:?}, third {:?}, temps {:?}, differs: {}\n{}",
                    o.status,
                    again.status.code(),
                    third.status.code(),
                    temps(root.path()),
                    diff.join("; "),
                    text(&again)
                ));
            }
        }
    }
    println!(
        "system calls {counts:?}: {trials} trials ({}), {killed} killed, {converged} converged",
        if all { "every N" } else { "CI sample" }
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        killed * 2 >= trials,
        "only {killed} of {trials} trials killed the run"
    );
}

/// Issue 15: the run's files, the record, the pin and the status are renamed after one flush
/// (`syncfs`), in that order. Killed before the flush, after it, and between every two
/// renames (every N, not a sample), the next run converges and the one after changes nothing.
#[test]
fn killed_at_the_one_flush_and_between_every_two_renames_then_rerun_converges() {
    crash_sweep_at(
        &drive(),
        &["syncfs", "rename", "renameat", "renameat2"],
        true,
    );
}

/// Unmounts a mount point when dropped (a failed assertion included).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Issue 15: with `/var` on its own filesystem, journal order no longer puts the run's files
/// under `/etc` before the record under `/var/lib/primer`: each filesystem is flushed once,
/// and the directories of the run's files on the other filesystem are fsynced before the
/// record is renamed (none after it).
#[test]
fn a_separate_var_gets_its_own_flush_and_the_files_elsewhere_are_fsynced_before_the_record() {
    require_root();
    require_tool("strace");
    let src = drive();
    let root = root_with_shadow();
    let var = root.path().join("var");
    fs::create_dir_all(&var).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs"])
        .arg(&var)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs on {}", var.display());
    let _unmount = Mounted(var.clone());
    let log = tempfile::NamedTempFile::new().unwrap();
    let o = strace_run(
        src.path(),
        root.path(),
        &[
            "-y".into(),
            "-o".into(),
            log.path().display().to_string(),
            "-e".into(),
            "trace=syncfs,fsync,rename,renameat,renameat2".into(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let trace = fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let record = lines
        .iter()
        .position(|l| l.contains("rename(") && l.contains("/applied.json\")"))
        .unwrap_or_else(|| panic!("no rename of the record:\n{trace}"));
    // The run's own flushes: one per filesystem, before the record (the account files are
    // written with their own flushes before it, too).
    let syncfs = lines.iter().filter(|l| l.contains("syncfs(")).count();
    assert!(syncfs >= 2, "one syncfs per filesystem:\n{trace}");
    let var_s = var.display().to_string();
    let fsyncs_before: Vec<&&str> = lines[..record]
        .iter()
        .filter(|l| l.contains("fsync("))
        .collect();
    // `etc/systemd/network` holds only the run's staged files (the account files, written
    // with their own flushes, are elsewhere in /etc).
    assert!(
        fsyncs_before
            .iter()
            .any(|l| l.contains("/etc/systemd/network>") && !l.contains(&var_s)),
        "the network files' directory was not fsynced before the record:\n{trace}"
    );
    // After the record, no fsync, and no flush of `/var` (tmpfs keeps no order to fix): only
    // the root's filesystem is flushed again when it does not commit metadata in order (the
    // test machine's `/tmp` may be an ext4 without a journal).
    let after: Vec<&&str> = lines[record..]
        .iter()
        .filter(|l| l.contains("fsync(") || (l.contains("syncfs(") && l.contains(&var_s)))
        .collect();
    assert!(after.is_empty(), "flushed after the record: {after:?}");
    // And the result is the tree of a run on one filesystem.
    let reference = root_with_shadow();
    let o = run(src.path(), reference.path(), None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let third = run(src.path(), root.path(), None);
    assert_eq!(third.status.code(), Some(10), "{}", text(&third));
    assert_eq!(
        tree(root.path()).into_keys().collect::<Vec<_>>(),
        tree(reference.path()).into_keys().collect::<Vec<_>>()
    );
}
