//! Accounts against the real tools: plan users and passwords on a Debian bookworm-like root
//! (files written here), write them with `apply_accounts`, then let shadow's own checkers
//! (`pwck`, `grpck`) and `useradd` judge the result, and `openssl passwd` the hashes. Needs root
//! (shadow is root:shadow; `-R` chroots) and the Debian packages `passwd` and `openssl`:
//! scripts/test installs them; a missing one fails the test, it is never skipped.

mod common;
use common::require_tool_from;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use primer::apply::accounts::{
    apply_accounts, apply_accounts_with_timeout, AccountWrite, AccountsError, LOCK_PATH,
};
use primer::apply::fs::{Meta, Writer};
use primer::plan::accounts::{
    hash_password, parse_login_defs, parse_useradd_defaults, plan_accounts, verify_password,
    AccountFiles, AccountsEdit, LoginDefs, UserSpec,
};
use primer::state::sha256_hex;

/// Debian's `shadow` group.
const SHADOW_GID: u32 = 42;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
games:x:5:60:games:/usr/games:/usr/sbin/nologin
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin
proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
systemd-timesync:x:997:997:systemd Time Synchronization:/:/usr/sbin/nologin
messagebus:x:100:107::/nonexistent:/usr/sbin/nologin
sshd:x:101:65534::/run/sshd:/usr/sbin/nologin
debian:x:1000:1000:Debian:/home/debian:/bin/bash
";

const SHADOW: &str = "\
root:*:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
bin:*:19800:0:99999:7:::
sys:*:19800:0:99999:7:::
sync:*:19800:0:99999:7:::
games:*:19800:0:99999:7:::
man:*:19800:0:99999:7:::
lp:*:19800:0:99999:7:::
mail:*:19800:0:99999:7:::
news:*:19800:0:99999:7:::
uucp:*:19800:0:99999:7:::
proxy:*:19800:0:99999:7:::
www-data:*:19800:0:99999:7:::
backup:*:19800:0:99999:7:::
list:*:19800:0:99999:7:::
irc:*:19800:0:99999:7:::
_apt:*:19800:0:99999:7:::
nobody:*:19800:0:99999:7:::
systemd-network:!*:19800::::::
systemd-timesync:!*:19800::::::
messagebus:!:19800::::::
sshd:!:19800::::::
debian:$6$Wq6mQ1W8cJ0tUuJq$DdhVAdmDdaw2bS8XvGJj5lxDK86kb3QuYQt2ldkPlmEzfX.iJ6PbBU9o1MxQQEDjQYc/l0cPPnn/3a/mMKKsu0:19800:0:99999:7:::
";

const GROUP: &str = "\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:debian
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
news:x:9:
uucp:x:10:
man:x:12:
proxy:x:13:
kmem:x:15:
dialout:x:20:debian
fax:x:21:
voice:x:22:
cdrom:x:24:debian
floppy:x:25:debian
tape:x:26:
sudo:x:27:debian
audio:x:29:debian
dip:x:30:debian
www-data:x:33:
backup:x:34:
operator:x:37:
list:x:38:
irc:x:39:
src:x:40:
shadow:x:42:
utmp:x:43:
video:x:44:debian
sasl:x:45:
plugdev:x:46:debian
staff:x:50:
games:x:60:
users:x:100:
nogroup:x:65534:
systemd-journal:x:999:
systemd-network:x:998:
systemd-timesync:x:997:
input:x:101:
sgx:x:102:
kvm:x:103:
render:x:104:
netdev:x:105:debian
crontab:x:106:
messagebus:x:107:
debian:x:1000:
";

const GSHADOW: &str = "\
root:*::
daemon:*::
bin:*::
sys:*::
adm:*::debian
tty:*::
disk:*::
lp:*::
mail:*::
news:*::
uucp:*::
man:*::
proxy:*::
kmem:*::
dialout:*::debian
fax:*::
voice:*::
cdrom:*::debian
floppy:*::debian
tape:*::
sudo:*::debian
audio:*::debian
dip:*::debian
www-data:*::
backup:*::
operator:*::
list:*::
irc:*::
src:*::
shadow:*::
utmp:*::
video:*::debian
sasl:*::
plugdev:*::debian
staff:*::
games:*::
users:*::
nogroup:*::
systemd-journal:!*::
systemd-network:!*::
systemd-timesync:!*::
input:!*::
sgx:!*::
kvm:!*::
render:!*::
netdev:!::debian
crontab:!::
messagebus:!::
debian:!::
";

/// The settings of bookworm's `/etc/login.defs` that account tools read (comments trimmed).
const LOGIN_DEFS: &str = "\
# /etc/login.defs - Configuration control definitions for the login package.
MAIL_DIR        /var/mail
FAILLOG_ENAB\t\tyes
ENV_SUPATH\tPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV_PATH\tPATH=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games
TTYGROUP\ttty
TTYPERM\t\t0600
UMASK\t\t022
#HOME_MODE\t0700
PASS_MAX_DAYS\t99999
PASS_MIN_DAYS\t0
PASS_WARN_AGE\t7
UID_MIN\t\t\t 1000
UID_MAX\t\t\t60000
#SYS_UID_MIN\t\t  100
#SYS_UID_MAX\t\t  999
GID_MIN\t\t\t 1000
GID_MAX\t\t\t60000
#SYS_GID_MIN\t\t  100
#SYS_GID_MAX\t\t  999
DEFAULT_HOME\tyes
USERGROUPS_ENAB yes
ENCRYPT_METHOD SHA512
NONEXISTENT\t/nonexistent
";

const USERADD_DEFAULTS: &str = "# Default values for useradd(8)\nSHELL=/bin/sh\n";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "account tests need root (shadow is root:shadow; pwck -R chroots): run scripts/test as root"
    );
}

const PUBLIC: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
};
const SECRET: Meta = Meta {
    mode: 0o640,
    uid: 0,
    gid: SHADOW_GID,
};

fn put(root: &Path, rel: &str, content: &str, meta: Meta) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    std::os::unix::fs::chown(&p, Some(meta.uid), Some(meta.gid)).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(meta.mode)).unwrap();
}

/// A temporary root holding bookworm's account files.
fn bookworm_root() -> tempfile::TempDir {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, "etc/passwd", PASSWD, PUBLIC);
    put(root, "etc/shadow", SHADOW, SECRET);
    put(root, "etc/group", GROUP, PUBLIC);
    put(root, "etc/gshadow", GSHADOW, SECRET);
    put(root, "etc/login.defs", LOGIN_DEFS, PUBLIC);
    put(root, "etc/default/useradd", USERADD_DEFAULTS, PUBLIC);
    t
}

const FILES: [&str; 4] = ["etc/passwd", "etc/shadow", "etc/group", "etc/gshadow"];

fn read(root: &Path, rel: &str) -> Option<String> {
    fs::read(root.join(rel))
        .ok()
        .map(|b| String::from_utf8(b).unwrap())
}

fn read_files(root: &Path) -> AccountFiles {
    AccountFiles {
        passwd: read(root, "etc/passwd").unwrap_or_default(),
        shadow: read(root, "etc/shadow"),
        group: read(root, "etc/group").unwrap_or_default(),
        gshadow: read(root, "etc/gshadow"),
        subuid: read(root, "etc/subuid"),
        subgid: read(root, "etc/subgid"),
    }
}

fn defs(root: &Path) -> LoginDefs {
    let d = parse_login_defs(&read(root, "etc/login.defs").unwrap_or_default());
    parse_useradd_defaults(&read(root, "etc/default/useradd").unwrap_or_default(), d)
}

/// The writes for `edit`, as the planner hands them to apply: the hash of what was planned from
/// and the existing file's mode and owner.
fn writes(root: &Path, before: &AccountFiles, edit: &AccountsEdit) -> Vec<AccountWrite> {
    let pairs = [
        ("etc/passwd", Some(&before.passwd), &edit.passwd),
        ("etc/shadow", before.shadow.as_ref(), &edit.shadow),
        ("etc/group", Some(&before.group), &edit.group),
        ("etc/gshadow", before.gshadow.as_ref(), &edit.gshadow),
        ("etc/subuid", before.subuid.as_ref(), &edit.subuid),
        ("etc/subgid", before.subgid.as_ref(), &edit.subgid),
    ];
    pairs
        .into_iter()
        .filter_map(|(path, old, new)| {
            let new = new.as_ref()?;
            let m = fs::metadata(root.join(path)).ok();
            Some(AccountWrite {
                path: path.to_string(),
                expect_sha256: old.map(|o| sha256_hex(o.as_bytes())),
                content: new.clone().into_bytes(),
                meta: m.map_or(PUBLIC, |m| Meta {
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                }),
            })
        })
        .collect()
}

/// Plans `users`/`passwords` on the files under `root` and writes the result.
fn plan_and_apply(root: &Path, users: &[UserSpec], passwords: &[(String, String)]) -> AccountsEdit {
    let before = read_files(root);
    let edit = plan_accounts(&before, &defs(root), users, passwords);
    let mut w = Writer::new(root);
    apply_accounts(&mut w, &writes(root, &before, &edit)).expect("apply_accounts");
    edit
}

/// Gives every account its home directory and login shell (an empty executable) inside `root`,
/// as on a real system, so the checkers' only findings are about the account files.
fn complete_root(root: &Path) {
    let passwd = read(root, "etc/passwd").unwrap_or_default();
    for l in passwd.lines() {
        let f: Vec<&str> = l.split(':').collect();
        let (Some(home), Some(shell)) = (f.get(5), f.get(6)) else {
            continue;
        };
        if *home != "/nonexistent" {
            fs::create_dir_all(root.join(home.trim_start_matches('/'))).unwrap();
        }
        let sh = root.join(shell.trim_start_matches('/'));
        if !sh.exists() {
            fs::create_dir_all(sh.parent().unwrap()).unwrap();
            fs::write(&sh, "").unwrap();
            fs::set_permissions(&sh, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

/// Runs a shadow checker read-only on `root`: it must exit 0 and find nothing.
fn check(tool: &str, root: &Path) {
    if let Err(e) = run_checker(tool, root) {
        panic!("{e}");
    }
}

fn run_checker(tool: &str, root: &Path) -> Result<(), String> {
    require_tool_from(tool, "passwd");
    complete_root(root);
    let out = Command::new(tool)
        .args(["-r", "-R"])
        .arg(root)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty() && !l.ends_with(": no changes"))
        .collect();
    if out.status.success() && complaints.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{tool} -r -R {} failed ({:?}):\n{stdout}\n{stderr}",
            root.display(),
            out.status.code()
        ))
    }
}

fn checkers_pass(root: &Path) {
    check("pwck", root);
    check("grpck", root);
}

fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name:?} in\n{text}"))
}

fn spec(name: &str) -> UserSpec {
    UserSpec {
        name: name.into(),
        ..Default::default()
    }
}

fn specs() -> Vec<UserSpec> {
    vec![
        // The cloud-init default user shape: sudo-style groups, one missing (docker), bash.
        UserSpec {
            gecos: Some("Alice Example,,,".into()),
            groups: vec![
                "adm".into(),
                "sudo".into(),
                "docker".into(),
                "netdev".into(),
            ],
            shell: Some("/bin/bash".into()),
            lock_password: true,
            create_home: true,
            ..spec("alice")
        },
        UserSpec {
            system: true,
            shell: Some("/usr/sbin/nologin".into()),
            home: Some("/nonexistent".into()),
            ..spec("svc-backup")
        },
        UserSpec {
            uid: Some(2000),
            password_hash: Some(hash_password(b"bob's password", &[7; 12])),
            groups: vec!["users".into()],
            ..spec("bob")
        },
        // Collides with debian's uid: refused.
        UserSpec {
            uid: Some(1000),
            ..spec("carol")
        },
        // Invalid names: refused.
        spec("Dave"),
        spec("eve:x:0:0"),
        // No user-private group requested: an existing primary group.
        UserSpec {
            primary_group: Some("users".into()),
            ..spec("frank")
        },
    ]
}

#[test]
fn created_users_pass_pwck_and_grpck() {
    let t = bookworm_root();
    let root = t.path();
    // The untouched root passes too (the fixture is sane).
    checkers_pass(root);
    let edit = plan_and_apply(root, &specs(), &[]);
    checkers_pass(root);

    let names: Vec<(&str, u32, u32)> = edit
        .created
        .iter()
        .map(|c| (c.name.as_str(), c.uid, c.gid))
        .collect();
    assert_eq!(
        names,
        [
            ("alice", 1001, 1001),
            ("svc-backup", 999, 995),
            ("bob", 2000, 2000),
            ("frank", 2001, 100),
        ]
    );
    assert_eq!(
        edit.warnings.len(),
        3,
        "carol (uid taken), Dave and eve (names): {:?}",
        edit.warnings
    );
    assert!(edit.warnings[0].contains("uid 1000 is already used"));

    let passwd = read(root, "etc/passwd").unwrap();
    let shadow = read(root, "etc/shadow").unwrap();
    let group = read(root, "etc/group").unwrap();
    let gshadow = read(root, "etc/gshadow").unwrap();
    // Every existing line is kept, byte for byte, and in order.
    assert!(passwd.starts_with(PASSWD));
    assert!(shadow.starts_with(SHADOW));
    assert_eq!(
        line(&passwd, "alice"),
        "alice:x:1001:1001:Alice Example,,,:/home/alice:/bin/bash"
    );
    assert_eq!(line(&shadow, "alice"), "alice:!::0:99999:7:::");
    assert_eq!(
        line(&passwd, "svc-backup"),
        "svc-backup:x:999:995::/nonexistent:/usr/sbin/nologin"
    );
    assert_eq!(
        line(&passwd, "frank"),
        "frank:x:2001:100::/home/frank:/bin/sh"
    );
    assert!(line(&shadow, "bob").starts_with("bob:$6$"));
    assert_eq!(line(&group, "sudo"), "sudo:x:27:debian,alice");
    assert_eq!(line(&gshadow, "sudo"), "sudo:*::debian,alice");
    assert_eq!(line(&group, "docker"), "docker:x:996:alice");
    assert_eq!(line(&gshadow, "docker"), "docker:!::alice");
    assert_eq!(line(&group, "users"), "users:x:100:bob");
    assert!(!group.contains("carol") && !passwd.contains("Dave") && !passwd.contains("eve"));
    // Mode and owner are the existing files'.
    for (rel, meta) in [
        ("etc/passwd", PUBLIC),
        ("etc/shadow", SECRET),
        ("etc/group", PUBLIC),
        ("etc/gshadow", SECRET),
    ] {
        let m = fs::metadata(root.join(rel)).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (meta.mode, meta.uid, meta.gid),
            "{rel}"
        );
    }
    // No temporary file or lock left but the lock file itself (which lckpwdf leaves too).
    let mut etc: Vec<String> = fs::read_dir(root.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    etc.sort();
    assert_eq!(
        etc,
        [
            ".pwd.lock",
            "default",
            "group",
            "gshadow",
            "login.defs",
            "passwd",
            "shadow"
        ]
    );
    let lock = fs::metadata(root.join(LOCK_PATH)).unwrap();
    assert_eq!(lock.mode() & 0o777, 0o600);
    // The password works.
    let bob_hash = line(&shadow, "bob").split(':').nth(1).unwrap();
    assert!(verify_password(b"bob's password", bob_hash));
    assert!(!verify_password(b"bob's passwort", bob_hash));
}

#[test]
fn checkers_catch_broken_files() {
    // The checks above mean something: the same tools fail on what a careless editor leaves.
    for (rel, content) in [
        ("etc/shadow", SHADOW.replace("debian:", "debain:")),
        (
            "etc/group",
            GROUP.replace("sudo:x:27:debian", "sudo:x:27:debian,nosuchuser"),
        ),
        (
            "etc/passwd",
            format!("{PASSWD}eve:x:1001:4242::/home/eve:/bin/sh\n"),
        ),
        ("etc/gshadow", GSHADOW.replace("sudo:*::debian\n", "")),
    ] {
        let t = bookworm_root();
        let meta = if rel.contains("shadow") {
            SECRET
        } else {
            PUBLIC
        };
        put(t.path(), rel, &content, meta);
        let results = [
            run_checker("pwck", t.path()),
            run_checker("grpck", t.path()),
        ];
        assert!(
            results.iter().any(Result::is_err),
            "{rel}: broken file passed"
        );
    }
}

#[test]
fn planning_again_changes_nothing() {
    let t = bookworm_root();
    let root = t.path();
    let pw = vec![("root".to_string(), hash_password(b"root pw", &[1; 12]))];
    plan_and_apply(root, &specs(), &pw);
    let snapshot: Vec<Option<String>> = FILES.iter().map(|f| read(root, f)).collect();
    let again = plan_accounts(&read_files(root), &defs(root), &specs(), &pw);
    assert!(!again.changes(), "{again:?}");
    assert!(again.created.is_empty() && again.created_groups.is_empty());
    assert!(again.passwords_changed.is_empty());
    // Applying an empty edit writes nothing.
    let mut w = Writer::new(root);
    apply_accounts(&mut w, &writes(root, &read_files(root), &again)).unwrap();
    let after: Vec<Option<String>> = FILES.iter().map(|f| read(root, f)).collect();
    assert_eq!(snapshot, after);
    checkers_pass(root);
}

#[test]
fn existing_user_only_gets_its_password_field() {
    let t = bookworm_root();
    let root = t.path();
    let new_hash = hash_password("neues Passwort ü".as_bytes(), &[9; 12]);
    let request = UserSpec {
        uid: Some(3000),
        home: Some("/srv/debian".into()),
        shell: Some("/bin/zsh".into()),
        gecos: Some("Someone Else".into()),
        password_hash: Some(new_hash.clone()),
        ..spec("debian")
    };
    let edit = plan_and_apply(root, &[request], &[]);
    assert!(edit.created.is_empty());
    assert_eq!(edit.passwords_changed, ["debian"]);
    assert_eq!(read(root, "etc/passwd").unwrap(), PASSWD);
    assert_eq!(read(root, "etc/group").unwrap(), GROUP);
    assert_eq!(read(root, "etc/gshadow").unwrap(), GSHADOW);
    let shadow = read(root, "etc/shadow").unwrap();
    let old = line(SHADOW, "debian");
    let new = line(&shadow, "debian");
    let (of, nf): (Vec<&str>, Vec<&str>) = (old.split(':').collect(), new.split(':').collect());
    assert_eq!(of.len(), nf.len());
    for (i, (o, n)) in of.iter().zip(&nf).enumerate() {
        if i == 1 {
            assert_eq!(*n, new_hash);
        } else {
            assert_eq!(o, n, "field {i}");
        }
    }
    // Only that line changed.
    assert_eq!(shadow.replace(new, old), SHADOW);
    assert!(verify_password("neues Passwort ü".as_bytes(), nf[1]));
    // A password for root through the passwords list: again only field 2.
    let root_hash = hash_password(b"toor", &[3; 12]);
    plan_and_apply(root, &[], &[("root".into(), root_hash.clone())]);
    let shadow2 = read(root, "etc/shadow").unwrap();
    assert_eq!(
        line(&shadow2, "root"),
        format!("root:{root_hash}:19800:0:99999:7:::")
    );
    assert_eq!(read(root, "etc/passwd").unwrap(), PASSWD);
    checkers_pass(root);
}

/// The system's `crypt(3)` (libcrypt, what PAM checks logins with), through Perl's `crypt`
/// (perl-base is Essential on Debian).
fn libcrypt_sha512(password: &[u8], salt: &str) -> String {
    require_tool_from("perl", "perl-base");
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new("perl")
        .args(["-e", "print crypt($ENV{PW}, $ENV{SALT})"])
        .env("PW", std::ffi::OsStr::from_bytes(password))
        .env("SALT", format!("$6${salt}$"))
        .output()
        .expect("run perl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `openssl passwd -6 -salt SALT PASSWORD`: the reference crypt string. (openssl prints
/// `<NULL>` for an empty password: `libcrypt_sha512` covers that one.)
fn openssl_sha512(password: &[u8], salt: &str) -> String {
    require_tool_from("openssl", "openssl");
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt])
        .arg(std::ffi::OsStr::from_bytes(password))
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn hash_password_matches_openssl() {
    let long = "correct horse battery staple ".repeat(10);
    let at_openssl_limit = "y".repeat(256);
    let passwords: Vec<&[u8]> = vec![
        at_openssl_limit.as_bytes(),
        b"password",
        b"",
        b"a",
        b"with space and $ymbol:s !\"'\\`",
        "pässwörd ünïcödé 密码 🔑".as_bytes(),
        long.as_bytes(),
        // Latin-1, not UTF-8: crypt works on bytes.
        b"caf\xe9",
    ];
    let salts: [[u8; 12]; 4] = [
        [0; 12],
        [0xff; 12],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        [
            0x9d, 0x3c, 0xa1, 0x07, 0xee, 0x42, 0x5b, 0xc8, 0x11, 0x60, 0xfa, 0x2d,
        ],
    ];
    for pw in &passwords {
        for salt in &salts {
            let ours = hash_password(pw, salt);
            let parts: Vec<&str> = ours.split('$').collect();
            assert_eq!(parts.len(), 4, "{ours}");
            assert_eq!(parts[1], "6");
            let s = parts[2];
            assert_eq!(s.len(), 16);
            assert!(s
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/'));
            assert_eq!(parts[3].len(), 86);
            let theirs = libcrypt_sha512(pw, s);
            assert_eq!(ours, theirs, "password {:?}", String::from_utf8_lossy(pw));
            // openssl prints `<NULL>` for an empty password and truncates past 256 bytes (with a
            // warning); libcrypt, which logins use, does neither.
            if !pw.is_empty() && pw.len() <= 256 {
                assert_eq!(
                    ours,
                    openssl_sha512(pw, s),
                    "password {:?}",
                    String::from_utf8_lossy(pw)
                );
            }
            assert!(verify_password(pw, &theirs));
            let mut wrong = pw.to_vec();
            wrong.push(b'x');
            assert!(!verify_password(&wrong, &theirs));
        }
    }
    // Different salt bytes, different salts.
    assert_ne!(
        hash_password(b"x", &salts[0]),
        hash_password(b"x", &salts[1])
    );
}

#[test]
fn verify_password_cases() {
    let h = openssl_sha512(b"s3cret", "abcdefgh");
    for (pw, hash, want) in [
        (&b"s3cret"[..], h.clone(), true),
        (b"s3cret ", h.clone(), false),
        (b"S3cret", h.clone(), false),
        (b"", h.clone(), false),
        // Locked: the hash behind `!` does not verify as is.
        (b"s3cret", format!("!{h}"), false),
        (b"s3cret", "*".into(), false),
        (b"s3cret", "!".into(), false),
        (b"s3cret", String::new(), false),
        (b"s3cret", h.replacen("$6$", "$1$", 1), false),
        (b"s3cret", h[..h.len() - 1].to_string(), false),
    ] {
        assert_eq!(verify_password(pw, &hash), want, "{hash:?}");
    }
    // openssl's SHA-256 crypt and an explicit rounds count.
    require_tool_from("openssl", "openssl");
    let out = Command::new("openssl")
        .args(["passwd", "-5", "-salt", "rounds=7000$xyz", "pw"])
        .output()
        .unwrap();
    let h5 = String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string();
    assert!(h5.starts_with("$5$rounds=7000$xyz$"), "{h5}");
    assert!(verify_password(b"pw", &h5));
    assert!(!verify_password(b"pw2", &h5));
}

#[test]
fn useradd_agrees_on_new_lines() {
    require_tool_from("useradd", "passwd");
    // Same root twice: useradd on one, primer on the other; the new lines must agree (except
    // the last-change day, which primer leaves empty: planning has no clock).
    let theirs = bookworm_root();
    let ours = bookworm_root();
    // Subordinate ids: an image range and a small one further up leave a first hole that fits
    // one range and a second that fits one more; /etc/subgid starts empty.
    for root in [theirs.path(), ours.path()] {
        put(
            root,
            "etc/subuid",
            "img:100000:65536\nodd:300000:10\n",
            PUBLIC,
        );
        put(root, "etc/subgid", "", PUBLIC);
    }
    for (args, name) in [
        (vec!["-s", "/bin/sh"], "alice"),
        (
            vec!["-r", "-s", "/usr/sbin/nologin", "-d", "/nonexistent", "-M"],
            "svc",
        ),
        (vec!["-u", "2000"], "bob"),
        // Above UID_MAX: no subordinate ids.
        (vec!["-u", "70000"], "carol"),
    ] {
        let out = Command::new("useradd")
            .arg("-R")
            .arg(theirs.path())
            .args(&args)
            .arg(name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "useradd {args:?} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    plan_and_apply(
        ours.path(),
        &[
            spec("alice"),
            UserSpec {
                system: true,
                shell: Some("/usr/sbin/nologin".into()),
                home: Some("/nonexistent".into()),
                ..spec("svc")
            },
            UserSpec {
                uid: Some(2000),
                ..spec("bob")
            },
            UserSpec {
                uid: Some(70000),
                ..spec("carol")
            },
        ],
        &[],
    );
    assert_eq!(
        read(ours.path(), "etc/subuid").unwrap(),
        "img:100000:65536\nalice:165536:65536\nodd:300000:10\nbob:231072:65536\n"
    );
    for f in FILES.into_iter().chain(["etc/subuid", "etc/subgid"]) {
        let a = read(theirs.path(), f).unwrap();
        let b = read(ours.path(), f).unwrap();
        let strip_day = |t: &str| -> String {
            t.lines()
                .map(|l| {
                    let mut v: Vec<&str> = l.split(':').collect();
                    if f == "etc/shadow" && v.len() > 2 {
                        v[2] = "";
                    }
                    v.join(":")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip_day(&a), strip_day(&b), "{f}");
    }
    checkers_pass(theirs.path());
    checkers_pass(ours.path());
}

#[test]
fn files_changed_since_planning_are_not_written() {
    let t = bookworm_root();
    let root = t.path();
    let before = read_files(root);
    let edit = plan_accounts(&before, &defs(root), &[spec("alice")], &[]);
    // Another tool adds a group meanwhile.
    let mut group = GROUP.to_string();
    group.push_str("extra:x:3000:\n");
    put(root, "etc/group", &group, PUBLIC);
    let mut w = Writer::new(root);
    let err = apply_accounts(&mut w, &writes(root, &before, &edit)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/etc/group: changed since planning; re-run"),
        "{msg}"
    );
    assert!(matches!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<AccountsError>()),
        Some(AccountsError::Changed { .. })
    ));
    // Nothing was written, not even the files that did not change.
    assert_eq!(read(root, "etc/passwd").unwrap(), PASSWD);
    assert_eq!(read(root, "etc/shadow").unwrap(), SHADOW);
    assert_eq!(read(root, "etc/gshadow").unwrap(), GSHADOW);
    // A file that appeared where the plan saw none is refused too.
    let t2 = bookworm_root();
    let mut w = Writer::new(t2.path());
    let err = apply_accounts(
        &mut w,
        &[AccountWrite {
            path: "etc/subgid".into(),
            expect_sha256: None,
            content: b"x".to_vec(),
            meta: PUBLIC,
        }],
    );
    assert!(err.is_ok(), "{err:?}");
    let err = apply_accounts(
        &mut w,
        &[AccountWrite {
            path: "etc/subgid".into(),
            expect_sha256: None,
            content: b"y".to_vec(),
            meta: PUBLIC,
        }],
    )
    .unwrap_err();
    assert!(err
        .to_string()
        .contains("/etc/subgid: changed since planning"));
}

/// Takes the account lock as another process would: an open-file-description lock conflicts
/// with apply's POSIX record lock even inside this one process (fcntl(2)).
fn hold_lock(root: &Path) -> fs::File {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::libc;
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(root.join(LOCK_PATH))
        .unwrap();
    let l = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(&f, FcntlArg::F_OFD_SETLK(&l)).expect("take the OFD lock");
    f
}

#[test]
fn held_lock_makes_apply_wait_then_fail() {
    let t = bookworm_root();
    let root = t.path();
    let before = read_files(root);
    let edit = plan_accounts(&before, &defs(root), &[spec("alice")], &[]);
    let ws = writes(root, &before, &edit);
    let held = hold_lock(root);
    let start = Instant::now();
    let mut w = Writer::new(root);
    let err = apply_accounts_with_timeout(&mut w, &ws, Duration::from_millis(700)).unwrap_err();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let msg = err.to_string();
    assert!(
        msg.contains("/etc/.pwd.lock") && msg.contains("gave up"),
        "{msg}"
    );
    assert_eq!(read(root, "etc/passwd").unwrap(), PASSWD);

    // Released while apply waits: apply goes on.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        drop(held);
    });
    let start = Instant::now();
    apply_accounts_with_timeout(&mut w, &ws, Duration::from_secs(10)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    releaser.join().unwrap();
    assert!(read(root, "etc/passwd")
        .unwrap()
        .contains("\nalice:x:1001:"));
}

#[test]
fn apply_lock_is_the_one_the_shadow_tools_take() {
    require_tool_from("useradd", "passwd");
    // While the lock is held, useradd (lckpwdf inside the root) cannot edit the files; once
    // released, it can. glibc's lckpwdf waits 15 s before giving up.
    let t = bookworm_root();
    let root = t.path();
    let held = hold_lock(root);
    let out = Command::new("useradd")
        .arg("-R")
        .arg(root)
        .arg("zed")
        .output()
        .unwrap();
    assert!(!out.status.success(), "useradd ignored the held lock");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(root, "etc/passwd").unwrap(), PASSWD);
    drop(held);
    let out = Command::new("useradd")
        .arg("-R")
        .arg(root)
        .arg("zed")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And apply after useradd: its lock was released, the plan sees zed.
    let edit = plan_and_apply(root, &[spec("zed"), spec("yan")], &[]);
    assert_eq!(edit.created.len(), 1);
    checkers_pass(root);
}
