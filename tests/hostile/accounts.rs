//! Hostile drives: users, passwords, homes, sudo rules, write_files and secrets at rest. Each case
//! is a real drive tree (OpenStack, CloudStack, OVF) or a config-2 ISO, run with the real binary
//! into a Debian-like scratch root, and checked with Debian's own tools (`pwck`, `grpck`,
//! `visudo`) and `openssl passwd`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";
const SHADOW: &str = "root:*:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
nobody:*:19800:0:99999:7:::
";
const GROUP: &str = "root:x:0:
daemon:x:1:
adm:x:4:
sudo:x:27:
nogroup:x:65534:
";
const GSHADOW: &str = "root:*::
daemon:*::
adm:*::
sudo:*::
nogroup:*::
";

/// A Debian-like target: account files, login.defs, skel, sudoers with its drop-in directory,
/// and the homes and shells the system users name (so pwck judges only primer's work).
fn acct_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let w = |p: &str, c: &str, mode: u32| {
        let f = r.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, c).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
    };
    w("etc/passwd", PASSWD, 0o644);
    w("etc/shadow", SHADOW, 0o640);
    w("etc/group", GROUP, 0o644);
    w("etc/gshadow", GSHADOW, 0o640);
    w("etc/login.defs", "UID_MIN 1000\nGID_MIN 1000\n", 0o644);
    w("etc/skel/.profile", "# ~/.profile\n", 0o644);
    w(
        "etc/sudoers",
        "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
        0o440,
    );
    w("etc/hosts", "127.0.0.1\tlocalhost\n", 0o644);
    for d in ["root", "usr/sbin", "nonexistent", "etc/sudoers.d", "home"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    for s in ["bin/bash", "bin/sh", "usr/sbin/nologin"] {
        w(s, "#!/bin/true\n", 0o755);
    }
    t
}

/// An OpenStack drive tree: the sample metadata (with `admin_pass` when given), `user_data` and
/// `vendor_data.json` when given.
fn os_drive(admin_pass: Option<&str>, user_data: &str, vendor: Option<&str>) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("acct.example.org", &[ED]);
    match admin_pass {
        Some(p) => meta["admin_pass"] = p.into(),
        None => {
            meta.as_object_mut().unwrap().remove("admin_pass");
        }
    }
    write_drive_tree(t.path(), &meta);
    for v in ["latest", "2018-08-27"] {
        let d = t.path().join("openstack").join(v);
        fs::write(d.join("user_data"), user_data).unwrap();
        if let Some(vd) = vendor {
            fs::write(
                d.join("vendor_data.json"),
                serde_json::to_vec(&serde_json::json!({ "cloud-init": vd })).unwrap(),
            )
            .unwrap();
        }
    }
    t
}

fn run(src: &Path, root: &Path) -> Output {
    primer(&[
        "run",
        "--json",
        "--source",
        src.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ])
}

fn timed_run(src: &Path, root: &Path) -> (Output, Duration) {
    let t = Instant::now();
    let o = run(src, root);
    (o, t.elapsed())
}

fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(root.join(p)).unwrap_or_default()
}

fn shadow_field(root: &Path, user: &str) -> Option<String> {
    read(root, "etc/shadow").lines().find_map(|l| {
        l.strip_prefix(&format!("{user}:"))
            .map(|r| r.split(':').next().unwrap_or("").to_string())
    })
}

/// Warnings of a `--json` output as `file: field: message` lines.
fn warnings(o: &Output) -> Vec<String> {
    let v = json(o);
    let mut out = Vec::new();
    for key in ["warnings", "plan_warnings"] {
        if let Some(ws) = v[key]["warnings"].as_array().or(v[key].as_array()) {
            for w in ws {
                out.push(format!(
                    "{}: {}: {}",
                    w["file"].as_str().unwrap_or(""),
                    w["field"].as_str().unwrap_or(""),
                    w["message"].as_str().unwrap_or("")
                ));
            }
        }
    }
    out
}

fn has_warning(o: &Output, field: &str, needle: &str) -> bool {
    warnings(o)
        .iter()
        .any(|w| w.contains(&format!(": {field}: ")) && w.contains(needle))
}

fn step<'a>(v: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    v["steps"]["steps"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == id)
}

/// pwck and grpck, read-only, on the root: exit 0 (or 2 for "bad input"? never).
fn pwck_clean(root: &Path) {
    for tool in ["pwck", "grpck"] {
        require_tool(tool);
        let o = Command::new(tool)
            .args(["-r", "-R"])
            .arg(root)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{tool} -r -R: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn visudo_ok(file: &Path) {
    if !Path::new("/usr/sbin/visudo").exists() {
        return;
    }
    let o = Command::new("/usr/sbin/visudo")
        .arg("-cf")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "visudo -cf {}: {}",
        file.display(),
        text(&o)
    );
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file under the root holding `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    snapshot(root)
        .into_iter()
        .filter(|(_, e)| e.5.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p.display().to_string())
        .collect()
}

// ---- item 2: password length cap ---------------------------------------------------------

#[test]
fn long_passwords_from_openstack_and_cloud_config_are_refused_the_rest_applies() {
    for len in [512, 64 * 1024] {
        let long = "p".repeat(len);
        let long_hash = format!("$6$saltsalt${}", "h".repeat(len));
        let ud = format!(
            "#cloud-config\npassword: {long}\nchpasswd:\n  list: |\n    daemon:{long}\n  users:\n    - {{name: nobody, password: '{long_hash}', type: hash}}\nusers:\n  - name: alice\n    plain_text_passwd: {long}\n    lock_passwd: false\n  - name: bob\n    passwd: '{long_hash}'\n  - name: carol\n    hashed_passwd: '{long_hash}'\nwrite_files:\n  - {{path: /etc/applied, content: applied}}\n"
        );
        let src = os_drive(Some(&long), &ud, None);
        let root = acct_root();
        let r = root.path();
        let (o, took) = timed_run(src.path(), r);
        assert_eq!(o.status.code(), Some(0), "{len}: {}", text(&o));
        assert!(took < Duration::from_secs(3), "{len}: took {took:?}");
        let n = len.to_string();
        let nh = long_hash.len().to_string();
        for (field, l) in [
            ("admin_pass", &n),
            ("password", &n),
            ("chpasswd.users[0] (\"daemon\")", &n),
            ("chpasswd.users[1] (\"nobody\")", &nh),
            ("users[0].plain_text_passwd", &n),
            ("users[1].passwd", &nh),
            ("users[2].hashed_passwd", &nh),
        ] {
            assert!(
                has_warning(&o, field, &format!("{l} bytes long (at most 511)")),
                "{len}: no warning for {field}: {:#?}",
                warnings(&o)
            );
        }
        // Everything else applied: host name, keys, users (locked), the file.
        assert_eq!(read(r, "etc/hostname"), "acct\n");
        assert!(read(r, "root/.ssh/authorized_keys").contains(ED));
        assert_eq!(read(r, "etc/applied"), "applied");
        for u in ["alice", "bob", "carol"] {
            assert_eq!(shadow_field(r, u).as_deref(), Some("!"), "{u} locked");
        }
        for u in ["root", "daemon", "nobody"] {
            assert_eq!(shadow_field(r, u).as_deref(), Some("*"), "{u} untouched");
        }
        assert!(files_holding(r, long.as_bytes()).is_empty());
        pwck_clean(r);
    }
}

#[test]
fn long_cloudstack_and_ovf_passwords_are_refused() {
    let long = "c".repeat(64 * 1024);
    // CloudStack: the password file of the password server.
    let cs = tempfile::tempdir().unwrap();
    let w = |p: &str, c: &str| {
        let f = cs.path().join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, c).unwrap();
    };
    w("cloudstack/metadata/vm-id.txt", "cs-vm-1\n");
    w("cloudstack/metadata/local-hostname.txt", "cs-host\n");
    w("cloudstack/password/vm_password.txt", &long);
    let root = acct_root();
    let (o, took) = timed_run(cs.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        warnings(&o)
            .iter()
            .any(|w| w.starts_with("cloudstack password file") && w.contains("65536 bytes long")),
        "{:#?}",
        warnings(&o)
    );
    assert_eq!(read(root.path(), "etc/hostname"), "cs-host\n");
    assert_eq!(shadow_field(root.path(), "root").as_deref(), Some("*"));
    assert!(files_holding(root.path(), long.as_bytes()).is_empty());

    // OVF: the password property.
    let ovf = tempfile::tempdir().unwrap();
    fs::write(
        ovf.path().join("ovf-env.xml"),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PropertySection>
    <Property oe:key="instance-id" oe:value="ovf-1"/>
    <Property oe:key="hostname" oe:value="ovf-host"/>
    <Property oe:key="password" oe:value="{long}"/>
  </PropertySection>
</Environment>
"#
        ),
    )
    .unwrap();
    let root = acct_root();
    let (o, took) = timed_run(ovf.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        has_warning(&o, "password", "65536 bytes long (at most 511)"),
        "{:#?}",
        warnings(&o)
    );
    assert_eq!(read(root.path(), "etc/hostname"), "ovf-host\n");
    assert_eq!(shadow_field(root.path(), "root").as_deref(), Some("*"));
    assert!(files_holding(root.path(), long.as_bytes()).is_empty());
}

#[test]
fn a_511_byte_password_is_set_and_a_rerun_computes_no_hash() {
    require_tool("openssl");
    let pw = "q".repeat(511);
    let src = os_drive(Some(&pw), "#cloud-config\n", None);
    let root = acct_root();
    let r = root.path();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let hash = shadow_field(r, "root").unwrap();
    // libxcrypt's crypt(3) through perl: `openssl passwd` truncates passwords to 256 bytes.
    require_tool("perl");
    let salt = hash.strip_prefix("$6$").unwrap().split('$').next().unwrap();
    let o2 = Command::new("perl")
        .args([
            "-e",
            "print crypt($ARGV[0], $ARGV[1])",
            &pw,
            &format!("$6${salt}$"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o2.stdout).trim(), hash);
    // primer's key: created once, 0600, kept.
    let key = r.join("var/lib/primer/secret");
    assert_eq!(fs::metadata(&key).unwrap().mode() & 0o7777, 0o600);
    let key_bytes = fs::read(&key).unwrap();
    assert_eq!(key_bytes.len(), 32);
    // The record holds keyed digests, never the crypt hash nor a plain digest.
    let record = files_holding(r, hash.as_bytes());
    assert_eq!(
        record,
        vec!["etc/shadow".to_string()],
        "crypt hash only in shadow"
    );
    assert!(files_holding(r, sha256_hex(pw.as_bytes()).as_bytes()).is_empty());

    // Second run: decided by the keyed digests, no hash computed.
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    let v = json(&o);
    let s = step(&v, "password:root").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(s["outcome"], "unchanged", "{s}");
    assert!(
        s["detail"].as_str().unwrap().contains("no hash computed"),
        "{s}"
    );
    assert_eq!(fs::read(&key).unwrap(), key_bytes);
    assert_eq!(shadow_field(r, "root").unwrap(), hash);

    // /etc/shadow changed on the machine: the digests differ, the change is kept.
    let other = fs::read_to_string(r.join("etc/shadow"))
        .unwrap()
        .replace(&hash, "$6$other$xyz");
    fs::write(r.join("etc/shadow"), other).unwrap();
    let o = run(src.path(), r);
    let v = json(&o);
    let s = step(&v, "password:root").unwrap();
    assert_eq!(s["outcome"], "skipped", "{s}");
    assert!(!s["detail"].as_str().unwrap().contains("no hash computed"));
    // ...and from then on it is decided by digests again.
    let o = run(src.path(), r);
    let v = json(&o);
    let s = step(&v, "password:root").unwrap();
    assert_eq!(s["outcome"], "skipped", "{s}");
    assert!(
        s["detail"].as_str().unwrap().contains("no hash computed"),
        "{s}"
    );
    assert_eq!(shadow_field(r, "root").unwrap(), "$6$other$xyz");
}

// ---- issue 11 item 1: hashes set as given ---------------------------------------------------

#[test]
fn crypt_hashes_are_set_verbatim_for_every_source() {
    require_tool("openssl");
    let ossl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let h5 = ossl(&["passwd", "-5", "-salt", "proxmoxsalt", "pw5"]);
    let h6 = ossl(&["passwd", "-6", "-salt", "chsalt", "pw6"]);
    let h6b = ossl(&["passwd", "-6", "-salt", "bobsalt", "bobpw"]);
    let h6c = ossl(&["passwd", "-6", "-salt", "carolsalt", "carolpw"]);
    assert!(h5.starts_with("$5$") && h6.starts_with("$6$"));
    let ud = format!(
        "#cloud-config\npassword: '{h5}'\nchpasswd:\n  list: |\n    daemon:{h6}\nusers:\n  - name: bob\n    passwd: '{h6b}'\n    lock_passwd: false\n  - name: carol\n    hashed_passwd: '{h6c}'\n    lock_passwd: false\n  - name: dave\n    plain_text_passwd: '{h6}'\n    lock_passwd: false\n"
    );
    let src = os_drive(None, &ud, None);
    let root = acct_root();
    let r = root.path();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        shadow_field(r, "root").unwrap(),
        h5,
        "Proxmox's $5$ as given"
    );
    assert_eq!(shadow_field(r, "daemon").unwrap(), h6);
    assert_eq!(shadow_field(r, "bob").unwrap(), h6b);
    assert_eq!(shadow_field(r, "carol").unwrap(), h6c);
    // plain_text_passwd is never a hash: dave's password is the hash string itself.
    let dave = shadow_field(r, "dave").unwrap();
    assert_ne!(dave, h6);
    let salt = dave.strip_prefix("$6$").unwrap().split('$').next().unwrap();
    assert_eq!(ossl(&["passwd", "-6", "-salt", salt, &h6]), dave);
    pwck_clean(r);
    // Re-run: nothing changes.
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
}

// ---- item 3: homes -----------------------------------------------------------------------

#[test]
fn homes_outside_the_rules_are_refused_and_primer_state_stays_root_owned() {
    let bad = [
        "/var/lib/primer",
        "/var/lib",
        "/proc/self",
        "/../../../tmp/h",
        "/",
        "/etc/x",
        "home/rel",
        "/usr/local/x",
        "/home/a:b",
    ];
    let mut ud = String::from("#cloud-config\nusers:\n");
    for (i, h) in bad.iter().enumerate() {
        ud.push_str(&format!("  - {{name: u{i}, homedir: '{h}'}}\n"));
    }
    ud.push_str("  - {name: good, homedir: /srv/good}\n");
    let src = os_drive(None, &ud, None);
    let root = acct_root();
    let r = root.path();
    fs::create_dir_all(r.join("var/lib/primer")).unwrap();
    fs::set_permissions(r.join("var/lib/primer"), fs::Permissions::from_mode(0o700)).unwrap();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let passwd = read(r, "etc/passwd");
    for (i, h) in bad.iter().enumerate() {
        assert!(
            has_warning(&o, &format!("users[{i}].homedir"), "user not created"),
            "{h}: {:#?}",
            warnings(&o)
        );
        assert!(!passwd.contains(&format!("u{i}:")), "{h}: {passwd}");
    }
    assert!(passwd.contains(":/srv/good:"), "{passwd}");
    let m = fs::metadata(r.join("var/lib/primer")).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (nix::unistd::getuid().as_raw(), 0o700)
    );
    assert!(!r.join("tmp/h").exists());
    assert!(!r.join("etc/x").exists());
    fs::create_dir_all(r.join("srv/good")).unwrap();
    pwck_clean(r);
}

// ---- item 1: account fields --------------------------------------------------------------

#[test]
fn gecos_shell_and_groups_that_break_the_account_files_are_refused() {
    let ud = "#cloud-config\nusers:\n  - {name: g1, gecos: \"x\\nroot2::0:0::/root:/bin/sh\"}\n  - {name: g2, gecos: \"a:b\"}\n  - {name: s1, shell: \"/bin/sh\\nx\"}\n  - {name: s2, shell: \"/bin/../bin/sh\"}\n  - {name: s3, shell: bash}\n  - {name: p1, primary_group: \"a:b\"}\n  - {name: ok, gecos: 'Ok User,,,', shell: /bin/bash, groups: [adm, \"bad:grp\"]}\n  - {name: \"bad\\nname\"}\n";
    let src = os_drive(None, ud, None);
    let root = acct_root();
    let r = root.path();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (field, needle) in [
        ("users[0].gecos", r#""x\nroot2::0:0::/root:/bin/sh""#),
        ("users[1].gecos", "':'"),
        ("users[2].shell", r#""/bin/sh\nx""#),
        ("users[3].shell", "not a clean path"),
        ("users[4].shell", "not an absolute path"),
        ("users[5].primary_group", "':'"),
        ("users[6].groups", "\"bad:grp\""),
        ("users[7].name", r#""bad\nname""#),
    ] {
        assert!(
            has_warning(&o, field, needle),
            "{field} {needle}: {:#?}",
            warnings(&o)
        );
    }
    // No warning carries a raw newline (escaped for logs).
    assert!(warnings(&o).iter().all(|w| !w.contains('\n')));
    let passwd = read(r, "etc/passwd");
    assert_eq!(
        passwd.lines().count(),
        PASSWD.lines().count() + 1,
        "{passwd}"
    );
    assert!(
        passwd.contains("ok:x:1000:1000:Ok User,,,:/home/ok:/bin/bash"),
        "{passwd}"
    );
    assert!(!passwd.contains("root2"));
    assert!(read(r, "etc/group").contains("adm:x:4:ok"));
    fs::create_dir_all(r.join("home/ok")).unwrap();
    pwck_clean(r);
}

// ---- item 11: sudo rules -----------------------------------------------------------------

#[test]
fn sudo_rules_with_newlines_or_directives_are_refused() {
    let ud = "#cloud-config\nusers:\n  - name: ops\n    sudo:\n      - \"ALL=(ALL) NOPASSWD:ALL\\nALL ALL=(ALL) NOPASSWD: ALL\"\n      - \"@includedir /tmp/evil\"\n      - \"#includedir /tmp/evil\"\n      - \"ALL=(ALL) ALL \\\\\"\n      - \"ALL=(ALL) NOPASSWD:/usr/bin/true\"\n";
    let src = os_drive(None, ud, None);
    let root = acct_root();
    let r = root.path();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (i, needle) in [
        (0, "U+000A"),
        (1, "include directive"),
        (2, "include directive"),
        (3, "continues the rule"),
    ] {
        assert!(
            has_warning(&o, &format!("users[0].sudo[{i}]"), needle),
            "sudo[{i}]: {:#?}",
            warnings(&o)
        );
    }
    let dropin = r.join("etc/sudoers.d/91-primer-user-data");
    let s = fs::read_to_string(&dropin).unwrap();
    let rules: Vec<&str> = s.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rules, vec!["ops ALL=(ALL) NOPASSWD:/usr/bin/true"], "{s}");
    assert!(!s.contains("include") && !s.contains("ALL ALL"));
    visudo_ok(&dropin);
}

// ---- items 3 and 9: files onto the account files or primer's state ------------------------

#[test]
fn write_files_and_injected_files_never_reach_the_account_files_or_primer_state() {
    let ud = "#cloud-config\nwrite_files:\n  - {path: /etc/shadow, content: \"root::0:::::\\n\"}\n  - {path: /etc/gshadow, content: x}\n  - {path: /var/lib/primer/secret, content: x}\n  - {path: /etc/ok, content: ok, owner: \"root\\n:root\"}\n  - {path: /etc/ok2, content: ok}\n";
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let mut meta = sample_meta("files.example.org", &[ED]);
    meta.as_object_mut().unwrap().remove("admin_pass");
    meta["files"] = serde_json::json!([
        {"path": "/etc/passwd", "content_path": "/content/0000"},
        {"path": "/etc/shadow-", "content_path": "/content/0000"},
        {"path": "/etc/injected", "content_path": "/content/0000"}
    ]);
    write_drive_tree(&tree, &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(tree.join("openstack").join(v).join("user_data"), ud).unwrap();
    }
    // A config-2 ISO, as nova builds it.
    let iso = t.path().join("config-2.iso");
    make_iso(&tree, &iso, IsoTool::Nova);
    let root = acct_root();
    let r = root.path();
    let o = run(&iso, r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (field, needle) in [
        ("write_files[0].path", "account file /etc/shadow"),
        ("write_files[1].path", "account file /etc/gshadow"),
        ("write_files[2].path", "inside /var/lib/primer"),
        ("write_files[3].owner", r#""root\n:root""#),
        ("files", "account file /etc/passwd"),
        ("files", "account file /etc/shadow-"),
    ] {
        assert!(
            has_warning(&o, field, needle),
            "{field}: {:#?}",
            warnings(&o)
        );
    }
    assert_eq!(read(r, "etc/shadow"), SHADOW);
    assert_eq!(read(r, "etc/passwd"), PASSWD);
    assert!(!r.join("etc/shadow-").exists() && !r.join("etc/ok").exists());
    assert_eq!(read(r, "etc/ok2"), "ok");
    assert_eq!(read(r, "etc/injected"), "injected\n");
    pwck_clean(r);
}

// ---- item 7: secrets at rest -------------------------------------------------------------

#[test]
fn vendor_data_and_cloudstack_passwords_leave_no_clear_text_or_plain_digest() {
    const VD_PW: &str = "vd-Secret-4711";
    const UD_PW: &str = "ud-\"quoted\"-pw";
    const CS_PW: &str = "cs-Secret-0815";
    let vendor = format!("#cloud-config\nchpasswd:\n  list: |\n    daemon:{VD_PW}\n");
    let ud = "#cloud-config\nusers:\n  - {name: eve, passwd: '$6$evesalt$evehash', plain_text_passwd: 'ud-\"quoted\"-pw'}\n";
    let src = os_drive(None, ud, Some(&vendor));
    let root = acct_root();
    let r = root.path();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(shadow_field(r, "daemon").unwrap().starts_with("$6$"));
    let show = primer(&["show", "--json", "--source", src.path().to_str().unwrap()]);
    assert!(show.status.success(), "{}", text(&show));
    for secret in [VD_PW, UD_PW, "evehash"] {
        for needle in [secret.to_string(), sha256_hex(secret.as_bytes())] {
            // Only /etc/shadow may hold eve's hash (it is where a hash goes).
            let holding: Vec<String> = files_holding(r, needle.as_bytes())
                .into_iter()
                .filter(|p| p != "etc/shadow")
                .collect();
            assert!(holding.is_empty(), "{needle} in {holding:?}");
            assert!(!text(&o).contains(&needle) && !text(&show).contains(&needle));
        }
    }
    let copy = r.join(
        "var/lib/primer/instance/0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9/drive/openstack/latest",
    );
    assert!(read(&copy, "vendor_data.json").starts_with("# primer: "));
    assert!(!read(&copy, "vendor_data.json").contains("sha256"));

    // CloudStack: the password file's note holds no digest of the password.
    let cs = tempfile::tempdir().unwrap();
    for (p, c) in [
        ("cloudstack/metadata/vm-id.txt", "cs-vm-2\n"),
        ("cloudstack/password/vm_password.txt", CS_PW),
    ] {
        let f = cs.path().join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, c).unwrap();
    }
    let root = acct_root();
    let o = run(cs.path(), root.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let show = primer(&["show", "--json", "--source", cs.path().to_str().unwrap()]);
    let shown = json(&show);
    // Every file has a digest but the password file, whose digest would be a password hash.
    assert_eq!(
        shown["file_sha256"]["cloudstack/password/vm_password.txt"],
        "<redacted: holds a password>"
    );
    assert_eq!(
        shown["file_sha256"]["cloudstack/metadata/vm-id.txt"],
        sha256_hex(b"cs-vm-2\n")
    );
    let shown = shown.to_string();
    for needle in [CS_PW.to_string(), sha256_hex(CS_PW.as_bytes())] {
        assert!(
            files_holding(root.path(), needle.as_bytes()).is_empty(),
            "{needle}"
        );
        assert!(
            !text(&o).contains(&needle) && !shown.contains(&needle),
            "{needle}"
        );
    }
}

/// A NoCloud seed directory (`meta-data`, `user-data`, `vendor-data`).
fn nocloud(user_data: &str, vendor_data: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("meta-data"),
        "instance-id: nc-hostile-1\nlocal-hostname: nc-host\n",
    )
    .unwrap();
    fs::write(t.path().join("user-data"), user_data).unwrap();
    fs::write(t.path().join("vendor-data"), vendor_data).unwrap();
    t
}

#[test]
fn nocloud_vendor_data_password_and_state_home_are_refused_or_scrubbed() {
    const NC_PW: &str = "nc-vendor-pw-31337";
    let long = "n".repeat(512);
    let ud = format!(
        "#cloud-config\nusers:\n  - {{name: x, homedir: /var/lib/primer}}\n  - {{name: yuki, plain_text_passwd: '{long}', lock_passwd: false}}\n"
    );
    let vd = format!("#cloud-config\nchpasswd:\n  users:\n    - {{name: daemon, password: {NC_PW}, type: text}}\n");
    let src = nocloud(&ud, &vd);
    let root = acct_root();
    let r = root.path();
    let (o, took) = timed_run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        has_warning(&o, "users[0].homedir", "inside /var/lib/primer"),
        "{:#?}",
        warnings(&o)
    );
    assert!(
        has_warning(
            &o,
            "users[1].plain_text_passwd",
            "512 bytes long (at most 511)"
        ),
        "{:#?}",
        warnings(&o)
    );
    assert_eq!(read(r, "etc/hostname"), "nc-host\n");
    assert!(!read(r, "etc/passwd").lines().any(|l| l.starts_with("x:")));
    assert_eq!(shadow_field(r, "yuki").as_deref(), Some("!"));
    assert!(shadow_field(r, "daemon").unwrap().starts_with("$6$"));
    let m = fs::metadata(r.join("var/lib/primer")).unwrap();
    assert_eq!(m.uid(), nix::unistd::getuid().as_raw());
    for needle in [
        NC_PW.to_string(),
        sha256_hex(NC_PW.as_bytes()),
        long.clone(),
    ] {
        assert!(
            files_holding(r, needle.as_bytes()).is_empty(),
            "{needle}: {:?}",
            files_holding(r, needle.as_bytes())
        );
    }
    pwck_clean(r);
}

#[test]
fn values_given_as_hashes_that_are_not_hashes_are_refused() {
    let ud = "#cloud-config\nchpasswd:\n  users:\n    - {name: daemon, password: 'not-a-hash', type: hash}\nusers:\n  - {name: bob, passwd: 'clear-text-in-passwd', lock_passwd: false}\n  - {name: carol, hashed_passwd: '$6$onlysalt', lock_passwd: false}\n";
    let src = os_drive(None, ud, None);
    let root = acct_root();
    let r = root.path();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for field in [
        "chpasswd.users[0] (\"daemon\")",
        "users[0].passwd",
        "users[1].hashed_passwd",
    ] {
        assert!(
            has_warning(&o, field, "not one"),
            "{field}: {:#?}",
            warnings(&o)
        );
    }
    // Never copied into shadow as if it were a hash.
    assert_eq!(shadow_field(r, "daemon").as_deref(), Some("*"));
    assert_eq!(shadow_field(r, "bob").as_deref(), Some("!"));
    assert_eq!(shadow_field(r, "carol").as_deref(), Some("!"));
    assert!(files_holding(r, b"clear-text-in-passwd").is_empty());
    pwck_clean(r);
}

#[test]
fn the_configured_default_user_is_checked_too() {
    let root = acct_root();
    let r = root.path();
    fs::create_dir_all(r.join("etc/primer")).unwrap();
    fs::write(
        r.join("etc/primer/primer.yaml"),
        "default_user:\n  name: debian\n  sudo: \"ALL=(ALL) ALL\\n@includedir /tmp\"\n  shell: /bin/bash\n",
    )
    .unwrap();
    let src = os_drive(None, "#cloud-config\n", None);
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        has_warning(&o, "default_user.sudo[0]", "U+000A"),
        "{:#?}",
        warnings(&o)
    );
    assert!(read(r, "etc/passwd").contains("debian:x:1000:1000::/home/debian:/bin/bash"));
    assert!(!r.join("etc/sudoers.d/90-primer").exists());
    pwck_clean(r);
}

// ---- issue 11 item 6: the drive's admin user -------------------------------------------------

/// `meta.admin_username` values that are not account names (a path, a newline, 10 kB, upper
/// case) are refused with a warning naming the field: no account, no home, no password, no
/// failed step, the rest of the drive applied. `root` (which the image has) keeps today's
/// behaviour: the drive's password is root's; it gains no group and no sudo rule.
#[test]
fn hostile_admin_usernames_are_refused_and_root_is_left_as_it_is() {
    let long = "a".repeat(10 * 1024);
    for name in [
        "../x",
        "a\nb",
        "x:0:0::/:/bin/sh",
        long.as_str(),
        "Admin",
        "-x",
        // Existing groups: the account would get the group's rights as its primary group.
        "sudo",
        "adm",
    ] {
        let d = tempfile::tempdir().unwrap();
        let mut meta = sample_meta("acct.example.org", &[ED]);
        meta["admin_pass"] = "Hostile-admin-pw".into();
        meta["meta"] = serde_json::json!({ "admin_username": name });
        write_drive_tree(d.path(), &meta);
        let root = acct_root();
        let r = root.path();
        fs::create_dir_all(r.join("etc/primer")).unwrap();
        fs::write(
            r.join("etc/primer/primer.yaml"),
            "admin_user:\n  sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n",
        )
        .unwrap();
        let (o, took) = timed_run(d.path(), r);
        let shown = &name[..name.len().min(20)];
        assert_eq!(o.status.code(), Some(0), "{shown:?}: {}", text(&o));
        assert!(took < Duration::from_secs(3), "{shown:?} took {took:?}");
        let v = json(&o);
        assert_eq!(
            step(&v, "admin-user").map(|s| s["outcome"].clone()),
            Some("skipped".into()),
            "{shown:?}: {v:#}"
        );
        assert!(
            has_warning(&o, "meta.admin_username", "admin user"),
            "{shown:?}: {:#?}",
            warnings(&o)
        );
        // Every warning is one line and bounded, whatever the name.
        for w in warnings(&o) {
            assert!(!w.contains('\n') && w.len() < 2048, "{w:?}");
        }
        assert_eq!(read(r, "etc/passwd"), PASSWD, "{shown:?}");
        assert_eq!(read(r, "etc/shadow"), SHADOW, "{shown:?}");
        assert_eq!(read(r, "etc/group"), GROUP, "{shown:?}");
        assert!(!r.join("etc/sudoers.d/90-primer").exists(), "{shown:?}");
        assert!(!r.join("x").exists() && !r.parent().unwrap().join("x").exists());
        assert_eq!(
            fs::read_dir(r.join("home")).unwrap().count(),
            0,
            "{shown:?}"
        );
        // The rest of the drive applied.
        assert_eq!(read(r, "etc/hostname"), "acct\n", "{shown:?}");
        assert!(read(r, "root/.ssh/authorized_keys").contains(ED));
        assert!(files_holding(r, b"Hostile-admin-pw").is_empty());
        pwck_clean(r);
    }

    // root: the image has it; the password is root's as before, nothing else changes.
    require_tool("openssl");
    let d = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("acct.example.org", &[]);
    meta["admin_pass"] = "Root-admin-pw".into();
    meta["meta"] = serde_json::json!({ "admin_username": "root" });
    write_drive_tree(d.path(), &meta);
    let root = acct_root();
    let r = root.path();
    fs::create_dir_all(r.join("etc/primer")).unwrap();
    fs::write(
        r.join("etc/primer/primer.yaml"),
        "admin_user:\n  sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n",
    )
    .unwrap();
    let o = run(d.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(step(&v, "admin-user").unwrap()["outcome"], "unchanged");
    let hash = shadow_field(r, "root").unwrap();
    let salt = hash.strip_prefix("$6$").unwrap().split('$').next().unwrap();
    let c = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, "Root-admin-pw"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&c.stdout).trim(), hash);
    assert_eq!(read(r, "etc/passwd"), PASSWD);
    assert_eq!(read(r, "etc/group"), GROUP);
    assert!(!r.join("etc/sudoers.d/90-primer").exists());
    pwck_clean(r);
}

/// An OVF `username` with a newline or a path is refused the same way (field `username`).
#[test]
fn hostile_ovf_usernames_are_refused() {
    for name in ["evil&#10;root", "../../etc", "Ab"] {
        let ovf = tempfile::tempdir().unwrap();
        fs::write(
            ovf.path().join("ovf-env.xml"),
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PropertySection>
    <Property oe:key="instance-id" oe:value="ovf-1"/>
    <Property oe:key="hostname" oe:value="ovf-host"/>
    <Property oe:key="username" oe:value="{name}"/>
    <Property oe:key="password" oe:value="Ovf-admin-pw"/>
  </PropertySection>
</Environment>
"#
            ),
        )
        .unwrap();
        let root = acct_root();
        let r = root.path();
        let o = run(ovf.path(), r);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        assert!(
            has_warning(&o, "username", "admin user"),
            "{name}: {:#?}",
            warnings(&o)
        );
        assert_eq!(read(r, "etc/passwd"), PASSWD, "{name}");
        assert_eq!(read(r, "etc/shadow"), SHADOW, "{name}");
        assert_eq!(read(r, "etc/hostname"), "ovf-host\n");
    }
}
