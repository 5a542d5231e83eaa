//! Users, passwords, user-data, injected files: `primer run` into temp roots holding real
//! Debian-style account files, checked with Debian's own tools (`pwck`, `grpck`, `visudo`) and
//! an independent SHA-512 crypt (`openssl passwd -6`); no clear password anywhere.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use common::*;

const ADMIN_PASS: &str = "Adm1n-drive-pass";
const ALICE_PLAIN: &str = "alice-plain-text-pw";
const ALICE_CHPASSWD: &str = "alice-chpasswd-pw";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";
const SHADOW: &str = "root:*:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
bin:*:19800:0:99999:7:::
sys:*:19800:0:99999:7:::
sync:*:19800:0:99999:7:::
man:*:19800:0:99999:7:::
_apt:*:19800:0:99999:7:::
nobody:*:19800:0:99999:7:::
";
const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
man:x:12:
sudo:x:27:
shadow:x:42:
nogroup:x:65534:
";
const GSHADOW: &str = "root:*::
daemon:*::
bin:*::
sys:*::
adm:*::
man:*::
sudo:*::
shadow:*::
nogroup:*::
";
const LOGIN_DEFS: &str = "MAIL_DIR /var/mail
UID_MIN 1000
UID_MAX 60000
SYS_UID_MIN 100
SYS_UID_MAX 999
GID_MIN 1000
GID_MAX 60000
SYS_GID_MIN 100
SYS_GID_MAX 999
ENCRYPT_METHOD SHA512
";
const CONFIG: &str = "default_user:
  name: debian
  gecos: Debian
  groups: [adm, sudo]
  shell: /bin/bash
  sudo: \"ALL=(ALL) NOPASSWD:ALL\"
  lock_password: true
ssh_pwauth: user-data
";

/// A Debian-like target root: account files, login.defs, skel, sudoers, sshd_config.d, and the
/// homes and shells the system users name (pwck checks them).
fn debian_root() -> tempfile::TempDir {
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
    w("etc/login.defs", LOGIN_DEFS, 0o644);
    w("etc/default/useradd", "SHELL=/bin/sh\n", 0o644);
    w("etc/skel/.bashrc", "# ~/.bashrc\n", 0o644);
    w("etc/skel/.profile", "# ~/.profile\n", 0o644);
    w("etc/skel/.config/app/settings", "x=1\n", 0o600);
    w(
        "etc/sudoers",
        "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
        0o440,
    );
    w("etc/motd", "base motd\n", 0o644);
    w("etc/hosts", "127.0.0.1\tlocalhost\n", 0o644);
    w("etc/primer/primer.yaml", CONFIG, 0o644);
    fs::create_dir_all(r.join("etc/ssh/sshd_config.d")).unwrap();
    // pwck checks every home; Debian's own `/nonexistent` is made to exist here so that only
    // findings about the accounts primer creates can fail the check.
    for d in [
        "root",
        "usr/sbin",
        "bin",
        "dev",
        "var/cache/man",
        "nonexistent",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    for s in ["bin/bash", "bin/sh", "usr/sbin/nologin", "bin/sync"] {
        w(s, "#!/bin/true\n", 0o755);
    }
    t
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// gzip(multipart(cloud-config, a #! script, an unsupported #include)).
fn user_data() -> Vec<u8> {
    let gz_b64 = base64::engine::general_purpose::STANDARD.encode(gzip(b"zipped\n"));
    let cc = format!(
        "#cloud-config
hostname: ud-host
fqdn: ud-host.example.net
users:
  - default
  - name: alice
    gecos: Alice
    groups: [adm, project]
    shell: /bin/bash
    sudo: ALL=(ALL) ALL
    lock_passwd: false
    plain_text_passwd: {ALICE_PLAIN}
    ssh_authorized_keys: [{ED2}]
ssh_authorized_keys: [{ED2}]
write_files:
  - path: /etc/b64file
    encoding: b64
    content: aGVsbG8K
    permissions: '0600'
    owner: alice:alice
  - path: /srv/data/gzfile
    encoding: gz+b64
    content: {gz_b64}
  - path: /etc/motd
    content: |
      appended line
    append: true
  - path: /etc/../../escape
    content: nope
chpasswd:
  expire: false
  users:
    - name: alice
      password: {ALICE_CHPASSWD}
      type: text
ssh_pwauth: true
runcmd:
  - echo runcmd
  - [touch, /tmp/it's here]
bootcmd:
  - echo boot
package_upgrade: true
unknown_thing: 1
"
    );
    let b = "XXBOUNDARYXX";
    let body = format!(
        "Content-Type: multipart/mixed; boundary=\"{b}\"\nMIME-Version: 1.0\n\n--{b}\nContent-Type: text/cloud-config\n\n{cc}\n--{b}\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho script\n\n--{b}\nContent-Type: text/plain\n\n#include\nhttp://example.invalid/x\n\n--{b}--\n"
    );
    gzip(body.as_bytes())
}

fn drive(admin_pass: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("meta-host.example.org", &[ED]);
    meta["admin_pass"] = admin_pass.into();
    meta["files"] = serde_json::json!([
        {"path": "/etc/injected", "content_path": "/content/0000"},
        {"path": "/etc/../../escape-injected", "content_path": "/content/0000"}
    ]);
    write_drive_tree(t.path(), &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            t.path().join("openstack").join(v).join("user_data"),
            user_data(),
        )
        .unwrap();
    }
    t
}

fn run(src: &Path, root: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--json", "--log-level", "trace", "--source"])
        .arg(src)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

fn shadow_hash(root: &Path, user: &str) -> String {
    let s = fs::read_to_string(root.join("etc/shadow")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("{user} not in shadow:\n{s}"))
        .to_string()
}

/// `openssl passwd -6` with the hash's own salt gives the same string.
fn verifies(hash: &str, password: &str) -> bool {
    let Some(salt) = hash.strip_prefix("$6$").and_then(|s| s.split('$').next()) else {
        return false;
    };
    let o = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, password])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim() == hash
}

fn every_file(root: &Path) -> Vec<(String, Vec<u8>)> {
    snapshot(root)
        .into_iter()
        .filter(|(_, e)| !e.5.is_empty())
        .map(|(p, e)| (p.display().to_string(), e.5))
        .collect()
}

fn outcome<'a>(v: &'a serde_json::Value, id: &str) -> &'a str {
    v["steps"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["outcome"].as_str())
        .unwrap_or_else(|| panic!("no step {id}: {v}"))
}

#[test]
fn users_passwords_user_data_and_files_then_nothing_twice() {
    require_tool("pwck");
    require_tool("grpck");
    require_tool("openssl");
    let src = drive(ADMIN_PASS);
    let root = debian_root();
    let r = root.path();
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let out = text(&o);

    // Accounts pass Debian's own checkers.
    for tool in ["pwck", "grpck"] {
        let c = Command::new(tool)
            .args(["-r", "-R"])
            .arg(r)
            .output()
            .unwrap();
        assert!(
            c.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&c.stdout),
            String::from_utf8_lossy(&c.stderr)
        );
    }
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with(PASSWD), "existing lines kept:\n{passwd}");
    assert!(
        passwd.contains("debian:x:1000:1000:Debian:/home/debian:/bin/bash\n"),
        "{passwd}"
    );
    assert!(
        passwd.contains("alice:x:1001:1001:Alice:/home/alice:/bin/bash\n"),
        "{passwd}"
    );
    let group = fs::read_to_string(r.join("etc/group")).unwrap();
    assert!(group.contains("adm:x:4:debian,alice\n"), "{group}");
    assert!(group.contains("sudo:x:27:debian\n"), "{group}");
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("project:x:") && l.ends_with(":alice")),
        "{group}"
    );
    assert_eq!(mode(&r.join("etc/shadow")), 0o640);

    // Passwords: the drive's to the default user, chpasswd over plain_text_passwd for alice.
    assert!(verifies(&shadow_hash(r, "debian"), ADMIN_PASS));
    assert!(verifies(&shadow_hash(r, "alice"), ALICE_CHPASSWD));

    // Homes from /etc/skel, owned by the user.
    for (home, uid) in [("home/debian", 1000), ("home/alice", 1001)] {
        let h = r.join(home);
        assert_eq!(owner(&h), (uid, uid), "{home}");
        assert_eq!(
            fs::read_to_string(h.join(".bashrc")).unwrap(),
            "# ~/.bashrc\n"
        );
        assert_eq!(owner(&h.join(".config/app")), (uid, uid));
        assert_eq!(owner(&h.join(".config/app/settings")), (uid, uid));
        assert_eq!(mode(&h.join(".config/app/settings")), 0o600);
    }
    // Keys: drive + #cloud-config to the default user, the user's own to alice.
    let dk = fs::read_to_string(r.join("home/debian/.ssh/authorized_keys")).unwrap();
    assert!(dk.contains(ED) && dk.contains(ED2), "{dk}");
    assert_eq!(
        owner(&r.join("home/debian/.ssh/authorized_keys")),
        (1000, 1000)
    );
    let ak = fs::read_to_string(r.join("home/alice/.ssh/authorized_keys")).unwrap();
    assert!(ak.contains(ED2) && !ak.contains(ED), "{ak}");
    assert_eq!(owner(&r.join("home/alice/.ssh")), (1001, 1001));

    // Sudo rules in 0440 drop-ins, checked by visudo when it is installed: the configuration's
    // default user in one, user-data's users in another.
    let sudoers = r.join("etc/sudoers.d/90-primer");
    let s = fs::read_to_string(&sudoers).unwrap();
    assert!(
        s.contains("debian ALL=(ALL) NOPASSWD:ALL\n") && !s.contains("alice"),
        "{s}"
    );
    let ud_sudoers = r.join("etc/sudoers.d/91-primer-user-data");
    let s = fs::read_to_string(&ud_sudoers).unwrap();
    assert!(
        s.contains("alice ALL=(ALL) ALL\n") && !s.contains("debian"),
        "{s}"
    );
    for f in [&sudoers, &ud_sudoers] {
        assert_eq!(mode(f), 0o440);
    }
    if Path::new("/usr/sbin/visudo").exists() {
        let c = Command::new("visudo")
            .arg("-cf")
            .arg(&sudoers)
            .arg(&ud_sudoers)
            .output()
            .unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stdout));
    }

    // #cloud-config: fqdn wins over hostname and the metadata's name.
    assert_eq!(
        fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "ud-host\n"
    );
    assert!(fs::read_to_string(r.join("etc/hosts"))
        .unwrap()
        .contains("ud-host.example.net ud-host"));
    assert_eq!(
        fs::read_to_string(r.join("etc/b64file")).unwrap(),
        "hello\n"
    );
    assert_eq!(mode(&r.join("etc/b64file")), 0o600);
    assert_eq!(owner(&r.join("etc/b64file")), (1001, 1001));
    assert_eq!(
        fs::read_to_string(r.join("srv/data/gzfile")).unwrap(),
        "zipped\n"
    );
    assert_eq!(mode(&r.join("srv/data/gzfile")), 0o644);
    assert_eq!(
        fs::read_to_string(r.join("etc/motd")).unwrap(),
        "base motd\nappended line\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("etc/ssh/sshd_config.d/50-primer.conf"))
            .unwrap()
            .lines()
            .last(),
        Some("PasswordAuthentication yes")
    );
    // Injected files: inside the root only.
    assert_eq!(
        fs::read_to_string(r.join("etc/injected")).unwrap(),
        "injected\n"
    );
    assert!(!r.join("escape").exists() && !r.join("escape-injected").exists());
    // (the JSON report escapes the quotes around the path)
    assert!(
        out.contains("/etc/../../escape-injected\\\" refused"),
        "{out}"
    );
    assert!(out.contains("/etc/../../escape\\\" refused"), "{out}");
    // Scripts staged 0700 in primer's state, not run with --root.
    let scripts = r.join("var/lib/primer/instance/0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9/scripts");
    let mut names: Vec<String> = fs::read_dir(&scripts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["00-bootcmd", "20-user-part-002", "30-runcmd"],
        "{out}"
    );
    for n in &names {
        assert_eq!(mode(&scripts.join(n)), 0o700);
    }
    let runcmd = fs::read_to_string(scripts.join("30-runcmd")).unwrap();
    assert!(
        runcmd.contains("echo runcmd\n'touch' '/tmp/it'\\''s here'\n"),
        "{runcmd}"
    );
    assert!(!Path::new("/tmp/it's here").exists());
    assert_eq!(outcome(&v, "script:30-runcmd"), "skipped");
    // `primer scripts` runs only on the running system.
    let o = primer(&["scripts", "--root", r.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("only on the running system"),
        "{}",
        text(&o)
    );
    // Unsupported keys and parts are named.
    assert!(
        out.contains("package_upgrade") && out.contains("unknown_thing"),
        "{out}"
    );
    assert!(out.contains("#include"), "{out}");

    // No clear password anywhere: not in a file of the root, not in the output or the logs.
    for secret in [ADMIN_PASS, ALICE_PLAIN, ALICE_CHPASSWD] {
        assert!(!out.contains(secret), "{secret} printed");
        // The private copy of the drive included: it keeps the drive minus its passwords.
        for (p, c) in every_file(r) {
            assert!(
                !c.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {p}"
            );
        }
    }

    // Second and third runs: nothing changes.
    for n in 2..=3 {
        let o = run(src.path(), r);
        assert_eq!(o.status.code(), Some(10), "run {n}: {}", text(&o));
        let v = json(&o);
        for s in v["steps"]["steps"].as_array().unwrap() {
            assert_eq!(s["outcome"], "unchanged", "run {n}: {s}");
        }
    }
    assert_eq!(
        fs::read_to_string(r.join("etc/motd")).unwrap(),
        "base motd\nappended line\n"
    );
}

#[test]
fn a_new_drive_password_follows_the_update_policy() {
    require_tool("openssl");
    let root = debian_root();
    let r = root.path();
    let o = run(drive(ADMIN_PASS).path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = shadow_hash(r, "debian");

    // Same instance, a new password: OpenStack with `updates: auto` keeps the first one.
    let o = run(drive("a-second-password").path(), r);
    let v = json(&o);
    assert_eq!(outcome(&v, "password:debian"), "skipped", "{}", text(&o));
    assert_eq!(shadow_hash(r, "debian"), first);

    // `updates: always` applies it.
    let cfg = r.join("etc/primer/primer.yaml");
    fs::write(&cfg, format!("{CONFIG}password:\n  updates: always\n")).unwrap();
    let o = run(drive("a-second-password").path(), r);
    let v = json(&o);
    assert_eq!(outcome(&v, "password:debian"), "changed", "{}", text(&o));
    assert!(verifies(&shadow_hash(r, "debian"), "a-second-password"));

    // A local change of the password (same drive) is kept.
    let shadow = fs::read_to_string(r.join("etc/shadow")).unwrap();
    let local = "$6$localsalt$0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
    let h = shadow_hash(r, "debian");
    fs::write(r.join("etc/shadow"), shadow.replace(&h, local)).unwrap();
    let o = run(drive("a-second-password").path(), r);
    let v = json(&o);
    assert_eq!(outcome(&v, "password:debian"), "skipped", "{}", text(&o));
    assert_eq!(shadow_hash(r, "debian"), local);
    let _ = fs::metadata(r).map(|m| m.uid());
}

#[test]
fn user_data_can_be_left_to_another_agent() {
    let root = debian_root();
    let r = root.path();
    fs::write(
        r.join("etc/primer/primer.yaml"),
        format!("{CONFIG}user_data: ignore\n"),
    )
    .unwrap();
    let o = run(drive(ADMIN_PASS).path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("left to another agent"), "{out}");
    // The default user and the drive's metadata still apply; user-data does not.
    assert!(fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("\ndebian:"));
    assert!(!fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("alice"));
    assert_eq!(
        fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "meta-host\n"
    );
    assert!(!r.join("etc/b64file").exists());
}

#[test]
fn cloud_config_user_names_the_default_user() {
    let root = debian_root();
    let r = root.path();
    fs::write(r.join("etc/primer/primer.yaml"), "").unwrap();
    let src = tempfile::tempdir().unwrap();
    write_drive_tree(src.path(), &sample_meta("u.example.org", &[ED]));
    for v in ["latest", "2018-08-27"] {
        fs::write(
            src.path().join("openstack").join(v).join("user_data"),
            format!(
                "#cloud-config\nuser:\n  name: ops\n  groups: [adm]\n  sudo: ALL=(ALL) NOPASSWD:ALL\n  ssh_authorized_keys: [{ED2}]\n"
            ),
        )
        .unwrap();
    }
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("\nops:x:1000:1000::/home/ops:/bin/sh\n"),
        "{passwd}"
    );
    assert!(fs::read_to_string(r.join("etc/group"))
        .unwrap()
        .contains("adm:x:4:ops\n"));
    // The drive's key goes to that default user with its own (cloud-init's rule), not to
    // root: nothing configured an SSH user.
    let ak = fs::read_to_string(r.join("home/ops/.ssh/authorized_keys")).unwrap();
    assert!(ak.contains(ED2) && ak.contains(ED), "{ak}");
    assert!(!r.join("root/.ssh/authorized_keys").exists());
    let s = fs::read_to_string(r.join("etc/sudoers.d/91-primer-user-data")).unwrap();
    assert!(s.contains("ops ALL=(ALL) NOPASSWD:ALL\n"), "{s}");
    let again = run(src.path(), r);
    all_unchanged(&again);

    // A configuration that names root as the SSH user keeps the drive's key on root.
    let root2 = debian_root();
    let r2 = root2.path();
    fs::write(r2.join("etc/primer/primer.yaml"), "ssh_user: root\n").unwrap();
    let o = run(src.path(), r2);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let root_ak = fs::read_to_string(r2.join("root/.ssh/authorized_keys")).unwrap();
    assert!(root_ak.contains(ED) && !root_ak.contains(ED2), "{root_ak}");
    let ak = fs::read_to_string(r2.join("home/ops/.ssh/authorized_keys")).unwrap();
    assert!(ak.contains(ED2) && !ak.contains(ED), "{ak}");
}

/// A drive with `user_data` as given (and the sample metadata: ED as the drive's key).
fn drive_with(user_data: &str, admin_pass: Option<&str>) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("r.example.org", &[ED]);
    match admin_pass {
        Some(p) => meta["admin_pass"] = p.into(),
        None => {
            meta.as_object_mut().unwrap().remove("admin_pass");
        }
    }
    write_drive_tree(t.path(), &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            t.path().join("openstack").join(v).join("user_data"),
            user_data,
        )
        .unwrap();
    }
    t
}

fn all_unchanged(o: &Output) {
    assert_eq!(o.status.code(), Some(10), "{}", text(o));
}

#[test]
fn review_regressions_keys_appends_names_homes_and_renamed_default() {
    let root = debian_root();
    let r = root.path();
    fs::create_dir_all(r.join("srv/www")).unwrap();
    fs::write(r.join("srv/www/.bashrc"), "# the site's own\n").unwrap();
    let b = "BB";
    let ud = format!(
        "Content-Type: multipart/mixed; boundary=\"{b}\"\nMIME-Version: 1.0\n\n\
--{b}\nContent-Type: text/cloud-config\n\n#cloud-config\n\
user:\n  name: ubuntu\n  ssh_authorized_keys: [{ED2}]\n\
password: renamed-default-pw\n\
users:\n  - default\n  - name: web\n    homedir: /srv/www\n\
write_files:\n  - {{path: /etc/motd, content: \"A\\n\", append: true}}\n  - {{path: /etc/motd, content: \"B\\n\", append: true}}\n\
runcmd:\n  - echo from-runcmd\n\
\n--{b}\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\nContent-Disposition: attachment; filename=\"runcmd\"\n\n#!/bin/sh\necho a part named runcmd\n\n--{b}--\n"
    );
    let src = drive_with(&ud, None);
    let o = run(src.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // `user:` renamed the default user: it gets the drive's key and user-data's, in one block,
    // and the #cloud-config password.
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("\nubuntu:x:1000:1000:Debian:/home/ubuntu:/bin/bash\n"),
        "{passwd}"
    );
    assert!(!passwd.contains("\ndebian:"), "{passwd}");
    let ak = fs::read_to_string(r.join("home/ubuntu/.ssh/authorized_keys")).unwrap();
    assert!(ak.contains(ED) && ak.contains(ED2), "{ak}");
    assert_eq!(ak.matches("# BEGIN primer").count(), 1, "{ak}");
    assert!(verifies(&shadow_hash(r, "ubuntu"), "renamed-default-pw"));

    // Two appends to one file: both, once.
    assert_eq!(
        fs::read_to_string(r.join("etc/motd")).unwrap(),
        "base motd\nA\nB\n"
    );

    // A part named `runcmd` does not replace primer's runcmd script.
    let scripts = r.join("var/lib/primer/instance/0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9/scripts");
    assert!(fs::read_to_string(scripts.join("30-runcmd"))
        .unwrap()
        .contains("from-runcmd"));
    assert!(fs::read_to_string(scripts.join("20-user-runcmd"))
        .unwrap()
        .contains("a part named runcmd"));

    // An existing home is not taken over.
    assert_eq!(owner(&r.join("srv/www")), (0, 0));
    assert_eq!(
        fs::read_to_string(r.join("srv/www/.bashrc")).unwrap(),
        "# the site's own\n"
    );
    assert!(text(&o).contains("/srv/www exists"), "{}", text(&o));

    for _ in 0..2 {
        all_unchanged(&run(src.path(), r));
    }
    assert_eq!(
        fs::read_to_string(r.join("etc/motd")).unwrap(),
        "base motd\nA\nB\n"
    );
}

/// Issue 11 item 5: a bare user-data `hostname` keeps the metadata's domain (cloud-init keeps
/// the metadata FQDN in /etc/hosts); a dotted one, or metadata without a domain, is used as is.
#[test]
fn user_data_hostname_keeps_the_metadata_domain() {
    for (meta_name, user_data, short, hosts_names) in [
        (
            "web.example.com",
            "hostname: web",
            "web",
            "web.example.com web",
        ),
        ("web.example.com", "hostname: db", "db", "db.example.com db"),
        ("web", "hostname: db", "db", "127.0.1.1\tdb\t"),
        (
            "web.example.com",
            "hostname: db.other.org",
            "db",
            "db.other.org db",
        ),
        (
            "web.example.com",
            "fqdn: api.example.net",
            "api",
            "api.example.net api",
        ),
    ] {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        write_drive_tree(&tree, &sample_meta(meta_name, &[]));
        for v in ["latest", "2018-08-27"] {
            fs::write(
                tree.join("openstack").join(v).join("user_data"),
                format!("#cloud-config\n{user_data}\n"),
            )
            .unwrap();
        }
        let root = scratch_root();
        let r = root.path();
        let o = primer(&[
            "run",
            "--source",
            tree.to_str().unwrap(),
            "--root",
            r.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{user_data}: {}", text(&o));
        assert_eq!(
            fs::read_to_string(r.join("etc/hostname")).unwrap(),
            format!("{short}\n"),
            "{meta_name} + {user_data}"
        );
        let hosts = fs::read_to_string(r.join("etc/hosts")).unwrap();
        assert!(
            hosts.contains(hosts_names),
            "{meta_name} + {user_data}: {hosts}"
        );
    }
}

/// Issue 11 item 9: `users:` without `default` leaves the configured default user out; where it
/// does not exist the drive's keys are skipped with a warning (cloud-init gives them to root
/// behind `disable_root`, which logs nobody in), never a failed boot and never root's; the
/// listed users get their own keys.
#[test]
fn drive_keys_without_their_default_user_are_skipped_not_failed() {
    let d = drive_with(
        &format!("#cloud-config\nusers:\n  - name: alice\n    ssh_authorized_keys: [{ED2}]\n"),
        None,
    );
    let root = debian_root();
    let r = root.path();
    let o = run(d.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v, "ssh-keys"), "skipped", "{v:#}");
    assert!(
        text(&o).contains("leaves out the default user"),
        "{}",
        text(&o)
    );
    let ak = fs::read_to_string(r.join("home/alice/.ssh/authorized_keys")).unwrap();
    assert!(ak.contains(ED2) && !ak.contains(ED), "{ak}");
    assert!(!r.join("root/.ssh/authorized_keys").exists());
    assert!(!fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("\ndebian:"));
    all_unchanged(&run(d.path(), r));
}

/// A drive naming `meta.admin_username` (and an admin password), with `config` as the target's
/// primer.yaml (no default user unless it says so).
fn admin_drive(name: &str, pass: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("win.example.org", &[ED]);
    meta["admin_pass"] = pass.into();
    meta["meta"] = serde_json::json!({ "admin_username": name });
    write_drive_tree(t.path(), &meta);
    t
}

fn pwck_grpck(r: &Path) {
    for tool in ["pwck", "grpck"] {
        let c = Command::new(tool)
            .args(["-r", "-R"])
            .arg(r)
            .output()
            .unwrap();
        assert!(
            c.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&c.stdout),
            String::from_utf8_lossy(&c.stderr)
        );
    }
}

fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["steps"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {v:#}"))
}

/// Issue 11 item 6: the admin user a drive names and the image lacks is created as
/// cloudbase-init does (own group, the configured admin groups, home from /etc/skel, the
/// configured sudo rule) and gets the drive's password; a re-run changes nothing.
#[test]
fn a_drive_admin_user_the_image_lacks_is_created() {
    require_tool("pwck");
    require_tool("grpck");
    require_tool("openssl");
    require_tool("visudo");
    let root = debian_root();
    let r = root.path();
    fs::write(
        r.join("etc/primer/primer.yaml"),
        "admin_user:\n  sudo: \"ALL=(ALL) ALL\"\n  shell: /bin/bash\n",
    )
    .unwrap();
    let d = admin_drive("winadmin", ADMIN_PASS);
    // The plan's account steps with their whys, as a golden.
    let p = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["plan", "--json", "--source"])
        .arg(d.path())
        .arg("--root")
        .arg(r)
        .output()
        .unwrap();
    assert_eq!(p.status.code(), Some(0), "{}", text(&p));
    let plan = json(&p);
    let lines: String = plan["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan:#}"))
        .iter()
        .filter(|s| {
            let id = s["id"].as_str().unwrap_or("");
            ["admin-user", "home:", "skel", "sudoers", "password:"]
                .iter()
                .any(|p| id.starts_with(p))
        })
        .map(|s| {
            format!(
                "{} {} {}\n",
                s["id"].as_str().unwrap(),
                s["change"],
                s["why"]
            )
        })
        .collect();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/admin-user-plan.txt");
    let update = std::env::var_os("PRIMER_UPDATE_GOLDEN").is_some();
    if let Some(e) = check_golden(&golden, "admin-user plan", &lines, update) {
        panic!("{e}\n{lines}");
    }
    let o = run(d.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let s = step(&v, "admin-user");
    assert_eq!(s["outcome"], "changed", "{v:#}");
    let why = s["detail"].as_str().unwrap();
    assert!(
        why.contains("winadmin") && why.contains("meta.admin_username"),
        "{why}"
    );
    pwck_grpck(r);
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with(PASSWD), "{passwd}");
    assert!(
        passwd.ends_with("winadmin:x:1000:1000::/home/winadmin:/bin/bash\n"),
        "{passwd}"
    );
    let group = fs::read_to_string(r.join("etc/group")).unwrap();
    for want in [
        "adm:x:4:winadmin\n",
        "sudo:x:27:winadmin\n",
        "winadmin:x:1000:\n",
    ] {
        assert!(group.contains(want), "{want}: {group}");
    }
    // The drive's password, as openssl computes it; nothing else of the password anywhere.
    assert!(verifies(&shadow_hash(r, "winadmin"), ADMIN_PASS));
    assert_eq!(outcome(&v, "password:winadmin"), "changed");
    // Home from /etc/skel, owned by the new account.
    let h = r.join("home/winadmin");
    assert_eq!(owner(&h), (1000, 1000));
    assert_eq!(
        fs::read_to_string(h.join(".profile")).unwrap(),
        "# ~/.profile\n"
    );
    assert_eq!(owner(&h.join(".config/app/settings")), (1000, 1000));
    // The configured sudo rule, in the configuration's drop-in, accepted by visudo.
    let dropin = r.join("etc/sudoers.d/90-primer");
    let rules = fs::read_to_string(&dropin).unwrap();
    assert!(rules.contains("\nwinadmin ALL=(ALL) ALL\n"), "{rules}");
    let c = Command::new("visudo")
        .args(["-c", "-f"])
        .arg(&dropin)
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stdout));
    // The drive's keys keep their owner (ssh_user: root here).
    assert!(fs::read_to_string(r.join("root/.ssh/authorized_keys"))
        .unwrap()
        .contains(ED));
    // Idempotent: the account is primer's (recorded), its rule stays, nothing changes.
    let files = every_file(r);
    let o2 = run(d.path(), r);
    all_unchanged(&o2);
    let v2 = json(&o2);
    let s2 = step(&v2, "admin-user");
    assert_eq!(s2["outcome"], "unchanged", "{v2:#}");
    assert!(
        s2["detail"]
            .as_str()
            .unwrap()
            .contains("created for this instance"),
        "{v2:#}"
    );
    let after: Vec<_> = every_file(r)
        .into_iter()
        .filter(|(p, _)| !p.contains("var/lib/primer"))
        .collect();
    let before: Vec<_> = files
        .into_iter()
        .filter(|(p, _)| !p.contains("var/lib/primer"))
        .collect();
    assert_eq!(before, after);
    // In the plan with a why.
    let p = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["plan", "--json", "--source"])
        .arg(d.path())
        .arg("--root")
        .arg(r)
        .output()
        .unwrap();
    let pt = text(&p);
    assert!(pt.contains("admin-user"), "{pt}");
    // Removed by the operator since: not made again for this instance, and no failed boot.
    let keep = |f: &str| {
        let t = fs::read_to_string(r.join(f)).unwrap();
        let kept: String = t
            .lines()
            .filter(|l| !l.starts_with("winadmin:"))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(r.join(f), kept).unwrap();
    };
    keep("etc/passwd");
    keep("etc/shadow");
    let o3 = run(d.path(), r);
    assert!(matches!(o3.status.code(), Some(0 | 10)), "{}", text(&o3));
    let v3 = json(&o3);
    assert_eq!(outcome(&v3, "admin-user"), "skipped", "{v3:#}");
    assert_eq!(outcome(&v3, "password:winadmin"), "skipped", "{v3:#}");
    assert!(!fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("winadmin"));
}

/// Issue 11 item 6: with `admin_user.create: false` the admin user is not created and its
/// password not set: both steps are skipped (never failed), with a warning naming the user and
/// the drive's field; the boot succeeds.
#[test]
fn admin_user_creation_switched_off_is_skipped_not_failed() {
    let root = debian_root();
    let r = root.path();
    fs::write(
        r.join("etc/primer/primer.yaml"),
        "admin_user:\n  create: false\n",
    )
    .unwrap();
    let d = admin_drive("winadmin", ADMIN_PASS);
    let o = run(d.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v, "admin-user"), "skipped", "{v:#}");
    assert_eq!(outcome(&v, "password:winadmin"), "skipped", "{v:#}");
    let warned = v["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings: {v:#}"))
        .iter()
        .any(|w| {
            let w = w.to_string();
            w.contains("winadmin") && w.contains("meta.admin_username")
        });
    assert!(warned, "{v:#}");
    assert!(!fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("winadmin"));
    assert_eq!(fs::read_to_string(r.join("etc/shadow")).unwrap(), SHADOW);
    // Same again: nothing to do, still no failure.
    let o2 = run(d.path(), r);
    assert!(matches!(o2.status.code(), Some(0 | 10)), "{}", text(&o2));
    assert_eq!(outcome(&json(&o2), "admin-user"), "skipped");
}

/// An admin user the image has (root, or an account of its own) is left as it is: the drive's
/// password goes to it as before, it gains no group and no sudo rule.
#[test]
fn an_existing_admin_user_only_gets_the_password() {
    require_tool("openssl");
    let root = debian_root();
    let r = root.path();
    fs::write(
        r.join("etc/primer/primer.yaml"),
        "admin_user:\n  sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n",
    )
    .unwrap();
    let d = admin_drive("man", ADMIN_PASS);
    let o = run(d.path(), r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v, "admin-user"), "unchanged", "{v:#}");
    assert!(verifies(&shadow_hash(r, "man"), ADMIN_PASS));
    assert_eq!(fs::read_to_string(r.join("etc/group")).unwrap(), GROUP);
    assert_eq!(fs::read_to_string(r.join("etc/passwd")).unwrap(), PASSWD);
    assert!(!r.join("etc/sudoers.d/90-primer").exists());
}

/// The admin user of an OVF environment (`username`) and of a CloudStack drive (its OpenStack
/// tree's `meta.admin_username`, with the password server's file) is created and gets the
/// drive's password.
#[test]
fn ovf_and_cloudstack_admin_users_are_created() {
    require_tool("openssl");
    require_tool("pwck");
    require_tool("grpck");
    let ovf = tempfile::tempdir().unwrap();
    fs::write(
        ovf.path().join("ovf-env.xml"),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PropertySection>
    <Property oe:key="instance-id" oe:value="ovf-1"/>
    <Property oe:key="hostname" oe:value="ovf-host"/>
    <Property oe:key="username" oe:value="vmadmin"/>
    <Property oe:key="password" oe:value="Ovf-admin-pw"/>
  </PropertySection>
</Environment>
"#,
    )
    .unwrap();
    let cs = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("cs-host", &[]);
    meta.as_object_mut().unwrap().remove("admin_pass");
    meta["meta"] = serde_json::json!({ "admin_username": "csadmin" });
    write_drive_tree(cs.path(), &meta);
    for (p, c) in [
        ("cloudstack/metadata/vm-id.txt", "cs-vm-1\n"),
        ("cloudstack/password/vm_password.txt", "Cs-admin-pw\n"),
    ] {
        let f = cs.path().join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, c).unwrap();
    }
    for (src, user, pass, field) in [
        (ovf.path(), "vmadmin", "Ovf-admin-pw", "username"),
        (cs.path(), "csadmin", "Cs-admin-pw", "meta.admin_username"),
    ] {
        let root = debian_root();
        let r = root.path();
        fs::write(r.join("etc/primer/primer.yaml"), "").unwrap();
        let o = run(src, r);
        assert_eq!(o.status.code(), Some(0), "{user}: {}", text(&o));
        let v = json(&o);
        let s = step(&v, "admin-user");
        assert_eq!(s["outcome"], "changed", "{v:#}");
        assert!(s["detail"].as_str().unwrap().contains(field), "{s}");
        pwck_grpck(r);
        let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
        assert!(
            passwd.ends_with(&format!("{user}:x:1000:1000::/home/{user}:/bin/sh\n")),
            "{passwd}"
        );
        assert!(verifies(&shadow_hash(r, user), pass), "{user}");
        all_unchanged(&run(src, r));
    }
}

/// cloud-init's `disable_root_opts` with `$USER` = `user`.
fn refusal(user: &str) -> String {
    format!(
        r#"no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo 'Please login as the user \"{user}\" rather than the user \"root\".';echo;sleep 10;exit 142""#
    )
}

/// The lines of primer's block in an authorized_keys file.
fn block(root: &Path, file: &str) -> Vec<String> {
    let t = fs::read_to_string(root.join(file)).unwrap();
    t.lines()
        .skip_while(|l| !l.starts_with("# BEGIN primer"))
        .skip(1)
        .take_while(|l| *l != "# END primer")
        .map(str::to_string)
        .collect()
}

/// Issue 11 item 9: `disable_root`. Off by default (root's keys as given); `on` puts
/// cloud-init's refusal options before the drive's keys when root receives them (`NONE` without
/// a default user, the default user's name with one), replacing a key's own options;
/// `user-data` follows `#cloud-config` `disable_root`/`disable_root_opts` (on when silent); a
/// default user that receives the keys never gets the options. ssh-keygen reads every result.
#[test]
fn disable_root_restricts_root_keys_only_when_configured() {
    require_tool("ssh-keygen");
    let run_with = |config: &str, user_data: &str| {
        let root = debian_root();
        let r = root.path();
        fs::write(r.join("etc/primer/primer.yaml"), config).unwrap();
        let d = drive_with(user_data, None);
        let o = run(d.path(), r);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{config} {user_data}: {}",
            text(&o)
        );
        (root, d, o)
    };
    let cases: Vec<(&str, String, &str, Vec<String>)> = vec![
        // Default: root untouched by the rule; user-data's `disable_root: true` is warned.
        (
            "",
            "#cloud-config\ndisable_root: true\n".into(),
            "root/.ssh/authorized_keys",
            vec![ED.into()],
        ),
        (
            "disable_root: on\n",
            "#cloud-config\n".into(),
            "root/.ssh/authorized_keys",
            vec![format!("{} {ED}", refusal("NONE"))],
        ),
        // A key with its own options, and one from #cloud-config: both restricted; root's own
        // `users:` key stays as given. (`ssh_user: root`: else the default user `user:` names
        // would receive the drive's keys.)
        (
            "disable_root: true\nssh_user: root\n",
            format!(
                "#cloud-config\nssh_authorized_keys: ['no-pty,from=\"10.0.0.1\" {ED2}']\nuser: {{name: ops}}\nusers: [default, {{name: root, ssh_authorized_keys: ['{ED2} own', '{ED}']}}]\n"
            ),
            "root/.ssh/authorized_keys",
            vec![
                format!("{} {ED}", refusal("ops")),
                format!("{} {ED2}", refusal("ops")),
                format!("{ED2} own"),
            ],
        ),
        (
            "disable_root: user-data\n",
            "#cloud-config\ndisable_root_opts: 'no-pty,command=\"echo $USER not $DISABLE_USER\"'\n"
                .into(),
            "root/.ssh/authorized_keys",
            vec![format!("no-pty,command=\"echo NONE not root\" {ED}")],
        ),
        (
            "disable_root: user-data\n",
            "#cloud-config\ndisable_root: false\n".into(),
            "root/.ssh/authorized_keys",
            vec![ED.into()],
        ),
        // A bad options list from user-data: warned, cloud-init's default used.
        (
            "disable_root: user-data\n",
            "#cloud-config\ndisable_root_opts: 'no-pty x'\n".into(),
            "root/.ssh/authorized_keys",
            vec![format!("{} {ED}", refusal("NONE"))],
        ),
        // A newline (a second key line smuggled in) and a 4 KiB list: warned, the default used.
        (
            "disable_root: user-data\n",
            "#cloud-config\ndisable_root_opts: \"no-pty\\nssh-ed25519 AAAAinjected\"\n".into(),
            "root/.ssh/authorized_keys",
            vec![format!("{} {ED}", refusal("NONE"))],
        ),
        (
            "disable_root: user-data\n",
            format!("#cloud-config\ndisable_root_opts: '{}'\n", "no-pty,".repeat(600)),
            "root/.ssh/authorized_keys",
            vec![format!("{} {ED}", refusal("NONE"))],
        ),
        // The default user receives the keys: never restricted, root untouched.
        (
            "disable_root: on\ndefault_user: {name: debian}\n",
            "#cloud-config\n".into(),
            "home/debian/.ssh/authorized_keys",
            vec![ED.into()],
        ),
    ];
    for (config, user_data, file, want) in cases {
        let (root, d, o) = run_with(config, &user_data);
        let r = root.path();
        assert_eq!(block(r, file), want, "{config} {user_data}: {}", text(&o));
        // sshd's own parser (ssh-keygen reads authorized_keys options) takes every line.
        let k = Command::new("ssh-keygen")
            .args(["-l", "-f"])
            .arg(r.join(file))
            .output()
            .unwrap();
        assert!(k.status.success(), "{}", text(&k));
        assert_eq!(
            String::from_utf8_lossy(&k.stdout).lines().count(),
            want.len(),
            "{}",
            text(&k)
        );
        if file != "root/.ssh/authorized_keys" {
            assert!(!r.join("root/.ssh/authorized_keys").exists());
        }
        let warns = text(&o);
        if config.is_empty() {
            assert!(warns.contains("disable_root: off"), "{warns}");
        }
        if user_data.contains("no-pty x")
            || user_data.contains("injected")
            || user_data.len() > 4000
        {
            assert!(warns.contains("disable_root_opts"), "{warns}");
        }
        all_unchanged(&run(d.path(), r));
    }
}
