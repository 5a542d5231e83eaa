//! Hostile drives: the writer: crashes, concurrent runs, leftovers and I/O errors.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;

/// A small drive: host name and a key for `debian`, and a user-data user with a sudo rule and
/// a home (so homes, sudoers and the state tree are all written).
fn small_drive(sudo: &str) -> tempfile::TempDir {
    let t = super::tree(&sample_meta("apply-1", &[ED]));
    let ud = format!(
        "#cloud-config\nusers:\n  - name: alice\n    sudo: \"{sudo}\"\n    ssh_authorized_keys: [{ED2}]\n"
    );
    for v in ["latest", "2018-08-27"] {
        fs::write(t.path().join("openstack").join(v).join("user_data"), &ud).unwrap();
    }
    t
}

/// A scratch root with the account files and a skeleton, so users get a home.
fn root() -> tempfile::TempDir {
    let t = scratch_root();
    let etc = t.path().join("etc");
    fs::write(
        etc.join("shadow"),
        "root:*:19000:0:99999:7:::\ndebian:!:19000:0:99999:7:::\n",
    )
    .unwrap();
    fs::write(etc.join("group"), "root:x:0:\ndebian:x:1000:\nsudo:x:27:\n").unwrap();
    fs::write(etc.join("gshadow"), "root:*::\ndebian:!::\nsudo:*::\n").unwrap();
    fs::write(etc.join("sudoers"), "root ALL=(ALL) ALL\n").unwrap();
    fs::create_dir_all(etc.join("skel/.config")).unwrap();
    fs::write(etc.join("skel/.profile"), "# profile\n").unwrap();
    fs::write(etc.join("skel/.config/x"), "x\n").unwrap();
    t
}

fn cmd(src: &Path, root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_primer"));
    c.args(["run", "--source"])
        .arg(src)
        .arg("--root")
        .arg(root)
        .env_remove("PRIMER_FAULT_AFTER");
    c
}

fn run(src: &Path, root: &Path) -> Output {
    cmd(src, root).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every primer temporary file or directory under `root`.
fn temps(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_name().to_string_lossy().contains(".primer-tmp.") {
                out.push(e.path());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn concurrent_runs_both_succeed_and_the_record_holds() {
    let src = small_drive("ALL=(ALL) ALL");
    let mut exits = std::collections::BTreeMap::new();
    for trial in 0..50 {
        let root = root();
        let a = cmd(src.path(), root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let b = cmd(src.path(), root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        for o in [&a, &b] {
            assert!(
                matches!(o.status.code(), Some(0) | Some(10)),
                "trial {trial}: {:?}: {}",
                o.status,
                stderr(o)
            );
            assert!(!stderr(o).contains("os error 17"), "{}", stderr(o));
        }
        // One of the two applied the drive, the other found it applied.
        let mut pair = [a.status.code().unwrap(), b.status.code().unwrap()];
        pair.sort();
        assert_eq!(pair, [0, 10], "trial {trial}");
        *exits.entry(format!("{pair:?}")).or_insert(0) += 1;
        let third = run(src.path(), root.path());
        assert_eq!(
            third.status.code(),
            Some(10),
            "trial {trial}: {}",
            text(&third)
        );
        assert_eq!(temps(root.path()), Vec::<PathBuf>::new(), "trial {trial}");
    }
    println!("50 concurrent pairs: {exits:?}");
}

#[test]
fn a_second_run_waits_for_the_lock_and_says_for_whom() {
    require_tool("flock");
    let src = small_drive("ALL=(ALL) ALL");
    let root = root();
    let lock = root.path().join("var/lib/primer/lock");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::set_permissions(lock.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["sleep", "1.5"])
        .spawn()
        .unwrap();
    // Until flock holds it.
    let t0 = std::time::Instant::now();
    while !fs::read_to_string("/proc/locks")
        .unwrap()
        .contains(&format!(" {} ", holder.id()))
    {
        assert!(t0.elapsed().as_secs() < 10, "flock did not take the lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    let o = run(src.path(), root.path());
    holder.wait().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(started.elapsed().as_millis() >= 1000, "did not wait");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "waiting up to 60 s for primer run pid {}",
            holder.id()
        )),
        "{err}"
    );
    assert!(err.contains("var/lib/primer/lock"), "{err}");
    // A dry run reads only: it does not wait for the lock.
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["sleep", "5"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let o = primer(&[
        "run",
        "--dry-run",
        "--source",
        src.path().to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        started.elapsed().as_secs() < 3,
        "a dry run waited for the lock"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_state_tree_left_0755_is_repaired_to_0700() {
    let src = small_drive("ALL=(ALL) ALL");
    let root = root();
    assert_eq!(run(src.path(), root.path()).status.code(), Some(0));
    // As an interrupted older run left it: mkdir done, chmod not.
    let state = root.path().join("var/lib/primer");
    let inst = state.join("instance");
    for d in [&state, &inst] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(&inst, Some(1000), Some(1000)).unwrap();
    let o = run(src.path(), root.path());
    assert!(
        matches!(o.status.code(), Some(0) | Some(10)),
        "{}",
        text(&o)
    );
    for d in [&state, &inst] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
        assert_eq!(owner(d), (0, 0), "{}", d.display());
    }
    assert!(
        stderr(&o).contains("mode and owner repaired"),
        "{}",
        stderr(&o)
    );
}

/// Kills the run (strace) at each chown of the first `limit` and checks that no home is ever
/// left `root:root` and that the next run completes the skeleton.
#[test]
fn a_kill_at_any_chown_never_leaves_a_root_owned_home() {
    require_tool("strace");
    let src = small_drive("ALL=(ALL) ALL");
    let reference = root();
    assert_eq!(run(src.path(), reference.path()).status.code(), Some(0));
    let home = reference.path().join("home/alice");
    let uid = owner(&home);
    assert_ne!(uid, (0, 0));
    let mut killed = 0;
    for call in ["fchownat", "lchown", "fchown"] {
        for n in 1..=40 {
            let r = root();
            let o = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("inject={call}:signal=KILL:when={n}"))
                .arg(env!("CARGO_BIN_EXE_primer"))
                .args(["run", "--source"])
                .arg(src.path())
                .arg("--root")
                .arg(r.path())
                .output()
                .unwrap();
            let h = r.path().join("home/alice");
            if h.exists() {
                assert_eq!(owner(&h), uid, "{call} #{n}: home owned by root");
            }
            if o.status.code() == Some(0) {
                break; // fewer calls than n: the run completed
            }
            killed += 1;
            let again = run(src.path(), r.path());
            assert!(
                matches!(again.status.code(), Some(0) | Some(10)),
                "{}",
                text(&again)
            );
            assert_eq!(owner(&h), uid, "{call} #{n}");
            for f in [".profile", ".config/x", ".ssh/authorized_keys"] {
                let p = h.join(f);
                assert!(p.exists(), "{call} #{n}: {f} missing");
                assert_eq!(owner(&p), uid, "{call} #{n}: {f}");
            }
            assert_eq!(owner(&h.join(".config")), uid);
            assert_eq!(temps(r.path()), Vec::<PathBuf>::new(), "{call} #{n}");
        }
    }
    assert!(killed >= 5, "only {killed} kills");
}

#[test]
fn temporary_files_left_by_a_crash_are_swept_status_directory_included() {
    let src = small_drive("ALL=(ALL) ALL");
    let root = root();
    assert_eq!(run(src.path(), root.path()).status.code(), Some(0));
    let stale = [
        root.path()
            .join("var/lib/primer/.status.json.primer-tmp.4242.1"),
        root.path()
            .join("etc/sudoers.d/.90-primer.primer-tmp.4242.2"),
    ];
    for s in &stale {
        fs::create_dir_all(s.parent().unwrap()).unwrap();
        fs::write(s, b"half").unwrap();
    }
    // A directory being built under a temporary name (empty until renamed).
    let stale_dir = root.path().join("home/.bob.primer-tmp.4242.3");
    fs::create_dir(&stale_dir).unwrap();
    // Not primer's: kept.
    let foreign = root.path().join("home/.bob.primer-tmp.4242.4");
    fs::create_dir_all(foreign.join("data")).unwrap();
    // Nothing to apply, still swept.
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    for s in stale.iter().chain([&stale_dir]) {
        assert!(!s.exists(), "{} left", s.display());
    }
    assert!(foreign.join("data").exists());
    assert!(stderr(&o).contains("temporary file(s) left by an interrupted run"));
}

#[test]
fn the_sudoers_check_writes_nothing_outside_the_root() {
    if !Path::new("/usr/sbin/visudo").exists() {
        eprintln!("skipped: no visudo");
        return;
    }
    require_tool("strace");
    let tmp = tempfile::tempdir().unwrap();
    let src = small_drive("ALL=(ALL) NOPASSWD:ALL");
    let root = root();
    // Every file created by primer or visudo, traced: none outside the root (a crash while a
    // file outside exists would leak it).
    let log = tmp.path().join("trace");
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,creat", "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--source"])
        .arg(src.path())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        root.path()
            .join("etc/sudoers.d")
            .read_dir()
            .unwrap()
            .count()
            > 0
    );
    let trace = fs::read_to_string(&log).unwrap();
    fs::remove_file(&log).unwrap();
    let inside = format!("\"{}/", root.path().display());
    let outside: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("O_CREAT") && !l.contains(&inside) && !l.contains("\"/dev/"))
        .collect();
    assert!(
        outside.is_empty(),
        "files created outside the root: {outside:#?}"
    );
    assert!(trace.contains("O_CREAT"), "nothing traced: {trace}");
    // A rule visudo refuses: checked in place, refused, nothing left anywhere.
    let bad = small_drive("ALL=(ALL NOPASSWD ALL");
    let root = self::root();
    let o = cmd(bad.path(), root.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(stderr(&o).contains("visudo -cf rejected"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(".primer-tmp"), "{}", stderr(&o));
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "a file in TMPDIR"
    );
    assert_eq!(temps(root.path()), Vec::<PathBuf>::new());
    // (The host's own /tmp is not inspected: other processes on the machine, older primer
    // binaries among them, may leave files there. TMPDIR above and the trace cover primer's.)
}

#[test]
fn an_unwritable_status_is_a_failed_step_naming_the_file() {
    let src = small_drive("ALL=(ALL) ALL");
    let root = root();
    // A directory where status.json goes: the write fails whatever the user.
    fs::create_dir_all(root.path().join("var/lib/primer/status.json/x")).unwrap();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("cannot write /var/lib/primer/status.json"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("failed    status"), "{out}");
    assert!(out.contains("1 failed"), "{out}");
    // Everything else landed: the next run (status fixed) has nothing to do.
    fs::remove_dir_all(root.path().join("var/lib/primer/status.json")).unwrap();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
}

#[test]
fn an_unusable_target_directory_is_named_in_the_error() {
    let mut meta = sample_meta("apply-2", &[ED]);
    meta["files"] = serde_json::json!([
        {"path": "/opt/app/conf.d/site.conf", "content_path": "/content/0000"}
    ]);
    let src = super::tree(&meta);
    let root = root();
    // A file where a directory must go.
    fs::write(root.path().join("opt"), b"not a dir").unwrap();
    let o = run(src.path(), root.path());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("not a directory"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(&format!("{}/opt: ", root.path().display())),
        "the error names the directory: {line}"
    );
    // The other steps landed.
    assert_eq!(
        fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
        "apply-2\n"
    );
}

#[test]
fn new_directories_appear_with_their_final_mode_and_owner() {
    require_tool("strace");
    let src = small_drive("ALL=(ALL) ALL");
    let root = root();
    let log = root.path().join("../trace.log");
    let o = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=mkdir,mkdirat,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--source"])
        .arg(src.path())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let trace = fs::read_to_string(&log).unwrap();
    let _ = fs::remove_file(&log);
    // A directory appears finished: either `mkdir` itself gives its final mode and owner (it
    // is made under its name with exactly the mode it keeps, primer's own ids), or it is made
    // under a temporary name, finished, and only then renamed to its real name.
    let mut mkdirs = 0;
    let mut in_place = 0;
    for l in trace.lines().filter(|l| l.contains("mkdir")) {
        mkdirs += 1;
        if l.contains(".primer-tmp.") {
            continue;
        }
        in_place += 1;
        // `PID mkdir("PATH", 0755) = 0` (or mkdirat(AT_FDCWD, "PATH", 0755)).
        let path = l.split('"').nth(1).unwrap_or_else(|| panic!("{l}"));
        let asked = l
            .rsplit_once(", 0")
            .and_then(|(_, m)| m.split(')').next())
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or_else(|| panic!("no mode in {l}"));
        let p = std::path::Path::new(path);
        assert_eq!(mode(p), asked, "made in place with another mode: {l}");
        assert_eq!(owner(p), (0, 0), "made in place for another owner: {l}");
    }
    assert!(mkdirs >= 5, "{trace}");
    assert!(in_place >= 1, "{trace}");
    // alice's home is hers: made under a temporary name, given her, then renamed.
    assert!(
        trace
            .lines()
            .any(|l| l.contains("mkdir") && l.contains("/.alice.primer-tmp.")),
        "{trace}"
    );
    let home = root.path().join("home/alice");
    assert_ne!(owner(&home), (0, 0));
    assert_eq!(mode(&root.path().join("var/lib/primer")), 0o700);
}

/// Hostile `#cloud-config` system keys (README "Cloud-config keys"): every value that does not
/// fit the grammar of its file is refused with a warning naming the key, and nothing of it is
/// written.
mod cloud_config_keys {
    use std::fs;
    use std::path::Path;
    use std::process::Command;

    use crate::common::*;

    fn seed(user_data: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("meta-data"),
            "instance-id: iid-hostile-cc\nlocal-hostname: h\n",
        )
        .unwrap();
        fs::write(d.path().join("user-data"), user_data).unwrap();
        d
    }

    fn target() -> tempfile::TempDir {
        let r = scratch_root();
        fs::create_dir_all(r.path().join("usr/share/zoneinfo/Europe")).unwrap();
        fs::write(r.path().join("usr/share/zoneinfo/Europe/Berlin"), "TZif2").unwrap();
        fs::write(r.path().join("etc/shadow"), "root:*:1::::::\n").unwrap();
        fs::write(r.path().join("etc/fstab"), "UUID=1 / ext4 defaults 0 1\n").unwrap();
        r
    }

    /// Runs primer; returns the warnings (JSON text) and the run's document.
    fn run(ud: &str, root: &Path) -> (String, serde_json::Value) {
        let src = seed(ud);
        let o = Command::new(env!("CARGO_BIN_EXE_primer"))
            .args(["run", "--json", "--source"])
            .arg(src.path())
            .arg("--root")
            .arg(root)
            .output()
            .unwrap();
        let v = json(&o);
        assert!(
            v["steps"]["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["outcome"] != "failed"),
            "{}",
            text(&o)
        );
        (v["warnings"].to_string(), v)
    }

    fn untouched(root: &Path) {
        assert!(!root.join("etc/timezone").exists());
        assert!(fs::symlink_metadata(root.join("etc/localtime")).is_err());
        assert!(!root.join("etc/default/locale").exists());
        assert_eq!(
            fs::read_to_string(root.join("etc/shadow")).unwrap(),
            "root:*:1::::::\n"
        );
    }

    #[test]
    fn a_time_zone_with_a_newline_or_a_path_escape_is_refused() {
        for (tz, why) in [
            ("\"Europe/Berlin\\nEtc/UTC\"", "U+000A"),
            ("../../etc/shadow", "starting with a dot"),
            ("/etc/shadow", "empty"),
            ("Europe/../../../etc/shadow", "starting with a dot"),
            ("\"Europe/Ber lin\"", "is not in a time zone name"),
        ] {
            let r = target();
            let (w, _) = run(&format!("#cloud-config\ntimezone: {tz}\n"), r.path());
            assert!(w.contains("\"field\":\"timezone\""), "{tz}: {w}");
            assert!(w.contains(why), "{tz}: {w}");
            untouched(r.path());
        }
    }

    #[test]
    fn a_locale_that_would_add_a_line_is_refused() {
        let r = target();
        let (w, _) = run(
            "#cloud-config\nlocale: \"en_US.UTF-8\\nLD_PRELOAD=/tmp/x.so\"\n",
            r.path(),
        );
        assert!(w.contains("\"field\":\"locale\""), "{w}");
        untouched(r.path());
        let (w, _) = run("#cloud-config\nlocale: 'en_US.UTF-8; rm -rf /'\n", r.path());
        assert!(w.contains("\"field\":\"locale\""), "{w}");
        untouched(r.path());
    }

    #[test]
    fn time_servers_that_are_not_names_or_addresses_are_dropped() {
        let r = target();
        let (w, _) = run(
            "#cloud-config\nntp:\n  servers: [\"a.example\\nFallbackNTP=evil\", 'b c', 'x;y', ok.example]\n",
            r.path(),
        );
        for i in 0..3 {
            assert!(w.contains(&format!("ntp.servers[{i}]")), "{w}");
        }
        let conf = fs::read_to_string(r.path().join("etc/systemd/timesyncd.conf.d/50-primer.conf"))
            .unwrap();
        assert!(conf.ends_with("[Time]\nNTP=ok.example\n"), "{conf}");
    }

    #[test]
    fn fstab_fields_with_blanks_newlines_or_comments_are_refused() {
        let r = target();
        let (w, _) = run(
            "#cloud-config\nmounts:\n  - [/dev/vdb, '/da ta']\n  - [\"/dev/vdc\\n/dev/sda\", /x]\n  - [/dev/vdd, '/y#z']\n  - [/dev/vde, /proc/x]\n  - [/dev/vdf, ../etc]\n  - [/dev/vdg, /ok, auto, defaults, x, 0]\n",
            r.path(),
        );
        for i in [0, 1, 2, 4, 5] {
            assert!(w.contains(&format!("mounts[{i}]")), "mounts[{i}]: {w}");
        }
        // Refused by the planner's placement rules (proc is the kernel's).
        assert!(w.contains(r#"\"/proc/x\" refused: is inside /proc"#), "{w}");
        // Every entry refused: primer's block is empty, so fstab stays as it was.
        assert_eq!(
            fs::read_to_string(r.path().join("etc/fstab")).unwrap(),
            "UUID=1 / ext4 defaults 0 1\n"
        );
        assert!(!r.path().join("da ta").exists() && !r.path().join("proc").exists());
    }

    #[test]
    fn ten_thousand_mounts_are_capped() {
        let r = target();
        let mut ud = String::from("#cloud-config\nmounts:\n");
        for i in 0..10_000 {
            ud.push_str(&format!("  - [/dev/vd{i}, /m/{i}]\n"));
        }
        let (w, _) = run(&ud, r.path());
        assert!(w.contains("10000 entries; only the first 64"), "{w}");
        let fstab = fs::read_to_string(r.path().join("etc/fstab")).unwrap();
        assert_eq!(
            fstab.lines().filter(|l| l.starts_with("/dev/vd")).count(),
            64
        );
        assert_eq!(fs::read_dir(r.path().join("m")).unwrap().count(), 64);
        if Path::new("/usr/bin/findmnt").exists() || Path::new("/bin/findmnt").exists() {
            let o = Command::new("findmnt")
                .args(["--verify", "--tab-file"])
                .arg(r.path().join("etc/fstab"))
                .output()
                .unwrap();
            assert!(text(&o).contains("0 parse errors"), "{}", text(&o));
        }
    }

    #[test]
    fn certificates_that_are_not_pem_are_not_installed() {
        let r = target();
        let (w, _) = run(
            "#cloud-config\nca_certs:\n  remove_defaults: true\n  trusted:\n    - not a certificate\n    - |\n      -----BEGIN CERTIFICATE-----\n      !!!!\n      -----END CERTIFICATE-----\n    - |\n      -----BEGIN CERTIFICATE-----\n      QUJD\n    - |\n      -----BEGIN RSA PRIVATE KEY-----\n      QUJD\n      -----END RSA PRIVATE KEY-----\n",
            r.path(),
        );
        for i in 0..4 {
            assert!(w.contains(&format!("ca_certs.trusted[{i}]")), "{w}");
        }
        assert!(w.contains("ca_certs.remove_defaults"), "{w}");
        assert!(!r.path().join("usr/local/share/ca-certificates").exists());
    }

    /// 300,000 unusable `mounts` entries and as many bad NTP servers: bounded time, and the
    /// warnings are capped (one journal entry each) with a last word, not 600,000 of them.
    #[test]
    fn a_huge_list_of_bad_entries_stays_bounded() {
        let r = target();
        let mut ud = String::from("#cloud-config\nmounts:\n");
        for _ in 0..300_000 {
            ud.push_str("  - 1\n");
        }
        ud.push_str("ntp:\n  servers:\n");
        for _ in 0..300_000 {
            ud.push_str("    - \"a b\"\n");
        }
        let t = std::time::Instant::now();
        let (_, v) = run(&ud, r.path());
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{:?}",
            t.elapsed()
        );
        let n = v["warnings"].as_array().map_or(0, Vec::len);
        assert!(n <= 1000, "{n} warnings");
        assert_eq!(
            fs::read_to_string(r.path().join("etc/fstab")).unwrap(),
            "UUID=1 / ext4 defaults 0 1\n"
        );
    }

    /// Mount points with `..`, and one under a directory of the target that is a symlink out
    /// of the root: nothing is created outside the root, and fstab never names them.
    #[test]
    fn mount_points_cannot_climb_out_of_the_root() {
        let r = target();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), r.path().join("mnt")).unwrap();
        let (w, _) = run(
            "#cloud-config\nmounts:\n  - [/dev/vdb, /srv/../etc]\n  - [/dev/vdc, /x/../../../tmp/pwn]\n  - [/dev/vdd, /mnt/data]\n",
            r.path(),
        );
        assert!(w.contains("mounts"), "{w}");
        let fstab = fs::read_to_string(r.path().join("etc/fstab")).unwrap();
        assert!(
            !fstab.contains("..") && !fstab.contains("/dev/vdb"),
            "{fstab}"
        );
        assert!(!fstab.contains("/dev/vdc"), "{fstab}");
        // The symlinked parent is resolved inside the root, never followed out of it.
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!Path::new("/tmp/pwn").exists());
    }

    /// 500 certificates of 64 KiB each: at most 32 kept, the rest one warning.
    #[test]
    fn a_flood_of_certificates_is_capped() {
        let r = target();
        let mut ud = String::from("#cloud-config\nca_certs:\n  trusted:\n");
        let body = "QUJD".repeat(16 * 1024);
        for _ in 0..500 {
            ud.push_str(&format!(
                "    - \"-----BEGIN CERTIFICATE-----\\n{body}\\n-----END CERTIFICATE-----\\n\"\n"
            ));
        }
        let t = std::time::Instant::now();
        let (w, _) = run(&ud, r.path());
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{:?}",
            t.elapsed()
        );
        // 32 MiB of double-quoted strings in block style are not carved: the document is then
        // over the 1 MiB parsed whole and not applied (or, parsed, capped with a warning).
        assert!(
            w.contains("ca_certs") || w.contains("too large to parse"),
            "{w}"
        );
        let dir = r.path().join("usr/local/share/ca-certificates");
        let kept = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(kept <= 32, "{kept} certificates written");
    }
}
