//! User data: the project's own cases (`tests/fixtures/userdata/<case>/`: `user-data` and
//! `vendor-data*` files, with the golden result in `expected.json`; regenerate with
//! `PRIMER_UPDATE_GOLDEN=1 cargo test --test userdata` and review the diff), targeted checks per
//! case, caps against bombs, secrets never printed, every drive fixture's user data through
//! `parse_instance_user_data`, and conformance over the user data in `../shared/fixtures` when
//! that folder exists.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use primer::harness;
use primer::media::Limits;
use primer::model::userdata::{CcUser, Command, ManageEtcHosts, Origin, PasswordValue, UserData};
use primer::model::Report;
use primer::source::userdata::{
    parse_instance_user_data, parse_user_data, UserDataLimits, USER_DATA_FILE,
};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/userdata")
}

/// Vendor files as `parse_user_data` takes them: `(file, bytes)`.
type Vendor = Vec<(String, Vec<u8>)>;

/// A case's inputs: `user-data` (if present) and every `vendor-data*` file, in name order.
fn inputs(dir: &Path) -> (Option<Vec<u8>>, Vendor) {
    let user = fs::read(dir.join("user-data")).ok();
    let mut vendor: Vendor = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("vendor-data")
                .then(|| (n, fs::read(e.path()).unwrap()))
        })
        .collect();
    vendor.sort();
    (user, vendor)
}

fn parse_case(name: &str) -> (UserData, Report) {
    let (user, vendor) = inputs(&fixtures().join(name));
    parse_user_data(user.as_deref(), &vendor, &UserDataLimits::default())
}

fn cases() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(fixtures())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn preview(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(200).collect()
}

/// The golden document: the model as it serialises (contents as sizes, secrets redacted), the
/// warnings, and a short preview of every script, boothook and file content.
fn golden_doc(ud: &UserData, r: &Report) -> Value {
    json!({
        "user_data": ud,
        "warnings": r.warnings,
        "previews": {
            "scripts": ud.scripts.iter().map(|s| (s.name.clone(), preview(&s.content))).collect::<Vec<_>>(),
            "boothooks": ud.boothooks.iter().map(|s| (s.name.clone(), preview(&s.content))).collect::<Vec<_>>(),
            "write_files": ud.cloud_config.write_files.iter().map(|f| (f.path.clone(), preview(&f.content))).collect::<Vec<_>>(),
        }
    })
}

/// Plain-text passwords written into the fixtures: none may appear in any output.
const SECRETS: &[&str] = &[
    "top-level-userdata-secret",
    "chpasswd-list-root-secret",
    "chpasswd-yaml-root-secret",
    "chpasswd-users-root-secret",
    "chpasswd-users-guest-secret",
    "users-alice-plain-secret",
];

#[test]
fn golden_results_of_every_case() {
    let update = std::env::var("PRIMER_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 19, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for name in &cases {
        let dir = fixtures().join(name);
        let (user, vendor) = inputs(&dir);
        let (ud, r) = parse_user_data(user.as_deref(), &vendor, &UserDataLimits::default());
        harness::check_userdata(&ud, &r, &UserDataLimits::default());
        for w in &r.warnings {
            assert!(
                w.file == USER_DATA_FILE || vendor.iter().any(|(f, _)| *f == w.file),
                "{name}: warning names no input file: {w}"
            );
        }
        let text = format!(
            "{}\n",
            serde_json::to_string_pretty(&golden_doc(&ud, &r)).unwrap()
        );
        for s in SECRETS {
            assert!(!text.contains(s), "{name}: secret {s:?} in the output");
        }
        if let Some(f) = common::check_golden(&dir.join("expected.json"), name, &text, update) {
            failures.push(f);
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (PRIMER_UPDATE_GOLDEN=1 regenerates; review the diff):\n{}",
        failures.join("\n")
    );
}

fn fields(r: &Report) -> Vec<&str> {
    r.warnings.iter().map(|w| w.field.as_str()).collect()
}

fn has(r: &Report, field: &str, needle: &str) -> bool {
    r.warnings
        .iter()
        .any(|w| w.field == field && w.message.contains(needle))
}

#[test]
fn script_and_gzip() {
    let (ud, r) = parse_case("script");
    assert_eq!(ud.scripts.len(), 1);
    assert_eq!(ud.scripts[0].name, "part-001");
    assert!(ud.scripts[0].content.starts_with(b"#!/bin/bash\n"));
    assert!(r.warnings.is_empty());

    let (ud, r) = parse_case("gzip");
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("from-gzip"));
    assert_eq!(
        ud.cloud_config.runcmd,
        [Command::Shell("touch /var/tmp/gzip-ok".into())]
    );
    assert!(r.warnings.is_empty());
}

#[test]
fn multipart_and_gzip_multipart_agree() {
    let plain = parse_case("multipart-mixed");
    let zipped = parse_case("gzip-multipart");
    assert_eq!(plain, zipped);
    let (ud, r) = plain;
    let names: Vec<_> = ud.scripts.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["10-setup.sh", "part-005", "10-setup.sh-2"]);
    assert_eq!(ud.scripts[0].content, b"#!/bin/sh\necho setup");
    assert!(ud.scripts[1].content.starts_with(b"#!/usr/bin/env python3"));
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("mime-host"));
    assert_eq!(ud.boothooks.len(), 1);
    assert_eq!(ud.boothooks[0].name, "boothook.sh");
    assert_eq!(
        fields(&r),
        ["part 3 \"boothook.sh\"", "part 4", "part 6", "part 7"]
    );
    assert!(has(&r, "part 4", "never fetches"));
    assert!(has(&r, "part 6", "jinja"));
    assert!(has(&r, "part 7", "part-handler"));
}

#[test]
fn nested_multipart() {
    let (ud, r) = parse_case("nested-multipart");
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("outer"));
    assert_eq!(ud.cloud_config.fqdn.as_deref(), Some("nested.example.org"));
    assert_eq!(ud.scripts.len(), 1);
    assert_eq!(ud.scripts[0].content, b"#!/bin/sh\necho level3");
    assert_eq!(ud.scripts[0].name, "part-003");
    assert!(r.warnings.is_empty(), "{r:?}");
    // The same message with a depth limit of 2 drops the third level, with a warning.
    let (user, _) = inputs(&fixtures().join("nested-multipart"));
    let limits = UserDataLimits {
        max_mime_depth: 2,
        ..UserDataLimits::default()
    };
    let (ud, r) = parse_user_data(user.as_deref(), &[], &limits);
    assert!(ud.scripts.is_empty());
    assert_eq!(ud.cloud_config.fqdn.as_deref(), Some("nested.example.org"));
    assert!(r.warnings[0].message.contains("nested deeper than 2"));
}

#[test]
fn every_supported_key() {
    let (ud, r) = parse_case("cloud-config-full");
    assert!(r.warnings.is_empty(), "{r:?}");
    let c = &ud.cloud_config;
    assert_eq!(c.hostname.as_deref(), Some("node1"));
    assert_eq!(c.fqdn.as_deref(), Some("node1.example.org"));
    assert_eq!(c.prefer_fqdn_over_hostname, Some(true));
    let user = c.user.as_ref().unwrap();
    assert!(user.is_default() && user.name == "operator");
    assert_eq!(user.gecos.as_deref(), Some("Default user renamed"));
    assert_eq!(c.users.len(), 2);
    assert!(c.users[0].is_default());
    let d = &c.users[1];
    assert_eq!(d.name, "deploy");
    assert_eq!(d.groups, ["adm", "docker"]);
    assert_eq!(d.sudo, ["ALL=(ALL) NOPASSWD:ALL"]);
    assert!(!d.lock_passwd);
    assert_eq!(d.uid, Some(2000));
    assert!(d
        .hashed_passwd
        .as_deref()
        .is_some_and(|h| h.starts_with("$6$rounds=4096$")));
    assert_eq!(c.ssh_authorized_keys.len(), 2);
    assert_eq!(c.write_files.len(), 2);
    assert_eq!(c.write_files[0].content, b"Welcome to node1\n");
    assert_eq!(c.write_files[0].permissions, Some(0o644));
    assert_eq!(c.write_files[0].owner.as_deref(), Some("root:root"));
    assert_eq!(c.write_files[1].content, b"{\"a\": 1}\n");
    assert_eq!(c.write_files[1].permissions, Some(0o600));
    assert!(c.write_files[1].defer);
    assert_eq!(
        c.runcmd,
        [
            Command::Shell("echo shell form".into()),
            Command::Argv(vec!["systemctl".into(), "restart".into(), "sshd".into()])
        ]
    );
    assert_eq!(c.bootcmd.len(), 1);
    assert_eq!(
        c.password.as_ref().unwrap().expose(),
        b"top-level-userdata-secret"
    );
    assert_eq!(c.chpasswd.expire, Some(false));
    assert_eq!(c.ssh_pwauth, Some(true));
}

#[test]
fn chpasswd_old_and_new_forms() {
    let (ud, r) = parse_case("chpasswd-list");
    let c = &ud.cloud_config.chpasswd;
    assert_eq!(c.expire, Some(true));
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.users[0].0, "root");
    assert!(
        matches!(&c.users[0].1, PasswordValue::Plain(s) if s.expose() == b"chpasswd-list-root-secret")
    );
    assert_eq!(
        c.users[1],
        (
            "ubuntu".into(),
            PasswordValue::Hash("$6$saltsalt$hashedvalue".into())
        )
    );
    assert!(has(&r, "chpasswd.list line 3", "RANDOM password"));
    assert!(has(&r, "chpasswd.list line 4", "expected user:password"));

    let (ud, r) = parse_case("chpasswd-list-yaml");
    assert_eq!(ud.cloud_config.chpasswd.users.len(), 1);
    assert!(has(&r, "chpasswd.list[1]", "RANDOM"));

    let (ud, r) = parse_case("chpasswd-users");
    let c = &ud.cloud_config.chpasswd;
    let users: Vec<_> = c.users.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(users, ["root", "ubuntu", "guest"]);
    assert!(matches!(&c.users[1].1, PasswordValue::Hash(h) if h.starts_with("$y$")));
    assert!(matches!(&c.users[2].1, PasswordValue::Plain(_)));
    assert_eq!(fields(&r), ["chpasswd.users[2]"]);
}

#[test]
fn users_default_and_full_entries() {
    let (ud, r) = parse_case("users");
    let c = &ud.cloud_config;
    assert!(c.users_given);
    let names: Vec<_> = c.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["default", "alice", "svc", "bob", "carol"]);
    assert_eq!(c.users[0], CcUser::default_marker());
    let alice = &c.users[1];
    assert_eq!(alice.groups, ["wheel", "adm"]);
    assert!(alice.sudo.is_empty() && !alice.lock_passwd);
    assert_eq!(
        alice.plain_text_passwd.as_ref().unwrap().expose(),
        b"users-alice-plain-secret"
    );
    let svc = &c.users[2];
    assert!(svc.system && svc.no_create_home);
    assert_eq!(svc.uid, Some(990));
    assert_eq!(svc.homedir.as_deref(), Some("/var/lib/svc"));
    assert_eq!(svc.primary_group.as_deref(), Some("svc"));
    assert_eq!(svc.shell.as_deref(), Some("/usr/sbin/nologin"));
    assert!(has(&r, "users[2].expiredate", "unsupported"));
    assert!(has(&r, "users", "\"default\" listed more than once"));
    assert!(has(&r, "users[5].name", "not a valid user name"));
    assert_eq!(r.warnings.len(), 3, "{:#?}", r.warnings);
}

#[test]
fn wrong_types_name_key_and_type() {
    let (ud, r) = parse_case("wrong-types");
    let c = &ud.cloud_config;
    assert_eq!(c.hostname, None);
    assert_eq!(c.fqdn.as_deref(), Some("still.applies.example"));
    assert_eq!(c.runcmd, [Command::Shell("echo whole script".into())]);
    assert_eq!(c.bootcmd, [Command::Argv(vec!["echo".into(), "ok".into()])]);
    assert!(!c.users_given);
    assert_eq!(c.write_files.len(), 1);
    for (field, msg) in [
        ("hostname", "expected a string, found a list"),
        ("users", "expected a list of users, found an integer"),
        (
            "bootcmd[1]",
            "expected a string or a list of strings, found a mapping",
        ),
        ("write_files[0].permissions", "found a list"),
        ("write_files[1].path", "missing"),
        ("ssh_pwauth", "expected a boolean or \"unchanged\""),
        ("prefer_fqdn_over_hostname", "expected a boolean"),
        ("chpasswd", "expected a mapping, found a list"),
        ("password", "expected a string, found a mapping"),
    ] {
        assert!(has(&r, field, msg), "{field}: {msg}: {:#?}", r.warnings);
    }
    assert_eq!(r.warnings.len(), 9);
}

#[test]
fn unknown_keys_in_one_sorted_warning() {
    let (ud, r) = parse_case("unknown-keys");
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("known-key"));
    assert_eq!(r.warnings.len(), 1, "{:#?}", r.warnings);
    let w = &r.warnings[0];
    assert_eq!(w.file, "user-data");
    assert_eq!(
        w.field,
        "apt, merge_how, package_update, packages, write_files[0].source"
    );
    assert_eq!(w.message, "5 unsupported cloud-config keys; ignored");
    // `timezone` is supported now: parsed, not in the list.
    assert_eq!(ud.cloud_config.timezone.as_deref(), Some("Europe/Berlin"));
}

#[test]
fn vendor_data_precedence_and_parts() {
    let (ud, r) = parse_case("vendor-precedence");
    let c = &ud.cloud_config;
    assert_eq!(c.hostname.as_deref(), Some("user-wins"));
    assert_eq!(c.fqdn.as_deref(), Some("vendor.example.org"));
    assert_eq!(c.runcmd, [Command::Shell("echo vendor-runcmd".into())]);
    assert_eq!(c.ssh_pwauth, Some(true));
    assert_eq!(c.chpasswd.expire, Some(false));
    assert_eq!(c.chpasswd.users[0].0, "root");
    assert_eq!(ud.scripts.len(), 1);
    assert_eq!(ud.scripts[0].origin, Origin::VendorData);
    assert!(r.warnings.is_empty(), "{r:?}");

    let (ud, r) = parse_case("vendor-base64-parts");
    let c = &ud.cloud_config;
    assert_eq!(c.hostname.as_deref(), Some("user-host"));
    assert_eq!(c.ssh_pwauth, Some(false));
    assert_eq!(c.fqdn.as_deref(), Some("vendor-gz.example.org"));
    let scripts: Vec<_> = ud
        .scripts
        .iter()
        .map(|s| (s.name.as_str(), s.origin, s.content.as_slice()))
        .collect();
    assert_eq!(
        scripts,
        [
            (
                "vendor-setup.sh",
                Origin::VendorData,
                &b"#!/bin/sh\necho vendor base64\n"[..]
            ),
            ("part-004", Origin::VendorData, &b"#!/bin/sh\necho a=b"[..]),
        ]
    );
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].file, "vendor-data");
    assert_eq!(r.warnings[0].field, "part 5");
    assert!(r.warnings[0].message.contains("transfer encoding"));

    let (ud, r) = parse_case("vendor-disabled");
    assert!(ud.is_empty());
    assert_eq!(fields(&r), ["vendor_data.enabled"]);
}

#[test]
fn write_files_encodings() {
    let (ud, r) = parse_case("write-files");
    let got: Vec<_> = ud
        .cloud_config
        .write_files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                String::from_utf8_lossy(&f.content).into_owned(),
                f.permissions,
                f.append,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "/usr/bin/hello",
                "#!/bin/sh\necho hello\n".to_string(),
                Some(0o755),
                false
            ),
            ("/etc/b64", "hello base64\n".into(), None, false),
            ("/etc/gzb64", "gzip plus base64\n".into(), None, false),
            ("/etc/plain", "plain text".into(), Some(0o640), false),
            ("/etc/decimal", "x".into(), Some(644), false),
            ("/etc/append", "line".into(), None, true),
            ("/etc/unknown-encoding", "raw".into(), None, false),
        ]
    );
    assert!(has(&r, "write_files[4].permissions", "decimal number"));
    assert!(has(&r, "write_files[6].encoding", "unknown encoding"));
    assert_eq!(r.warnings.len(), 2);
}

#[test]
fn proxmox_style() {
    let (ud, r) = parse_case("proxmox-style");
    let c = &ud.cloud_config;
    assert_eq!(c.user.as_ref().unwrap().name, "admin-user");
    assert!(c.password.is_some());
    assert_eq!(c.chpasswd.expire, Some(false));
    assert_eq!(c.users, [CcUser::default_marker()]);
    assert_eq!(c.manage_etc_hosts, Some(ManageEtcHosts::Template));
    assert_eq!(fields(&r), ["package_upgrade"], "{:#?}", r.warnings);
}

#[test]
fn non_utf8_bytes() {
    let (ud, r) = parse_case("non-utf8");
    assert_eq!(ud.scripts[0].content, b"#!/bin/sh\necho caf\xe9");
    assert_eq!(ud.cloud_config.hostname, None);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].field, "part 2");
    assert!(r.warnings[0].message.contains("not UTF-8"));
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn bombs_and_oversize_inputs_are_capped() {
    // The committed bomb: 65 MiB of zeros in 65 KiB, over the default 64 MiB cap.
    let (ud, r) = parse_case("gzip-bomb");
    assert!(ud.is_empty());
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].file, "user-data");
    assert!(r.warnings[0].message.contains("gzip bomb"), "{r:?}");

    let small = UserDataLimits {
        max_blob_bytes: 4096,
        max_decompressed_bytes: 64 << 10,
        max_total_bytes: 256 << 10,
        max_mime_parts: 50,
        max_file_bytes: 1024,
        ..UserDataLimits::default()
    };
    // Blob over the cap.
    let (ud, r) = parse_user_data(Some(&vec![b'#'; 5000]), &[], &small);
    assert!(ud.is_empty());
    assert!(r.warnings[0].message.starts_with("too large"));
    // A gzip part inside MIME, over the per-decompression cap.
    let part = base64_of(&gz(&vec![b'x'; 100 << 10]));
    let msg = format!("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/gzip\nContent-Transfer-Encoding: base64\n\n{part}\n--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n--b--\n");
    let (ud, r) = parse_user_data(Some(msg.as_bytes()), &[], &small);
    assert_eq!(ud.scripts.len(), 1);
    assert!(has(&r, "part 1", "gzip bomb"), "{r:?}");
    // Many parts: one warning, the first ones kept.
    let mut many = String::from("Content-Type: multipart/mixed; boundary=b\n\n");
    for _ in 0..200 {
        many.push_str("--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n");
    }
    let roomy = UserDataLimits {
        max_blob_bytes: 1 << 20,
        ..small
    };
    let (ud, r) = parse_user_data(Some(many.as_bytes()), &[], &roomy);
    assert_eq!(ud.scripts.len(), 50);
    assert_eq!(r.warnings.len(), 1);
    // The decompression budget spans vendor files too: four 80 KiB parts, 256 KiB in all.
    let z = gz(&vec![b'#'; 80 << 10]);
    let vendor: Vec<(String, Vec<u8>)> =
        (0..4).map(|i| (format!("vendor-{i}"), z.clone())).collect();
    let (_, r) = parse_user_data(
        None,
        &vendor,
        &UserDataLimits {
            max_decompressed_bytes: 100 << 10,
            ..small
        },
    );
    let budget: Vec<_> = r
        .warnings
        .iter()
        .filter(|w| w.message.contains("budget"))
        .map(|w| w.file.as_str())
        .collect();
    assert_eq!(budget, ["vendor-3"], "{r:?}");
    // A YAML alias bomb in cloud-config is a warning for that part.
    let mut bomb = String::from("#cloud-config\na: &a [x,x,x,x,x,x,x,x,x]\n");
    for (i, c) in "bcdefghi".chars().enumerate() {
        let p = (b'a' + i as u8) as char;
        bomb.push_str(&format!(
            "{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    bomb.push_str("hostname: x\n");
    let (ud, r) = parse_user_data(Some(bomb.as_bytes()), &[], &UserDataLimits::default());
    assert_eq!(ud.cloud_config.hostname, None);
    assert!(r.warnings[0].message.contains("invalid YAML"), "{r:?}");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn passwords_never_print() {
    let mut seen = 0;
    for name in [
        "cloud-config-full",
        "chpasswd-list",
        "chpasswd-list-yaml",
        "chpasswd-users",
        "users",
    ] {
        let (ud, r) = parse_case(name);
        let dbg = format!("{ud:?}");
        let json = serde_json::to_string(&ud).unwrap();
        let warnings: Vec<String> = r.warnings.iter().map(|w| format!("{w} {w:?}")).collect();
        let warnings = warnings.join("\n");
        let input = fs::read_to_string(fixtures().join(name).join("user-data")).unwrap();
        for s in SECRETS.iter().filter(|s| input.contains(*s)) {
            seen += 1;
            assert!(!dbg.contains(s), "{name}: {s} in Debug");
            assert!(!json.contains(s), "{name}: {s} in JSON");
            assert!(!warnings.contains(s), "{name}: {s} in a warning");
        }
        // And the parse did take them (they are redacted, not lost).
        assert!(dbg.contains("<redacted "), "{name}: {dbg}");
    }
    assert_eq!(seen, SECRETS.len());
    // A malformed password line (no colon) is never quoted either.
    let (_, r) = parse_user_data(
        Some(b"#cloud-config\nchpasswd: {list: 'hunter2-no-colon'}\npassword: [hunter3]\n"),
        &[],
        &UserDataLimits::default(),
    );
    let all = format!("{r:?}");
    assert!(
        !all.contains("hunter2") && !all.contains("hunter3"),
        "{all}"
    );
}

#[test]
fn user_data_of_every_drive_fixture() {
    let mut n = 0;
    for format in ["openstack", "cloudstack", "ovf", "nocloud"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format);
        let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        cases.sort();
        for case in cases {
            let input = if case.join("drive").is_dir() {
                case.join("drive")
            } else {
                case.join("ovf-env.xml")
            };
            let Ok(drive) = primer::probe::image::read_source(&input, &Limits::default()) else {
                continue;
            };
            let Ok((inst, _)) = primer::source::parse_drive(&drive) else {
                continue;
            };
            let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
            for w in &r.warnings {
                assert!(
                    w.file == USER_DATA_FILE
                        || inst.vendor_user_data.iter().any(|p| p.file == w.file),
                    "{}: warning names no input: {w}",
                    case.display()
                );
            }
            serde_json::to_string(&ud).unwrap();
            n += 1;
        }
    }
    assert!(n >= 30, "only {n} drives");
    // The NoCloud `full` seed: its write_files mode is octal 0644.
    let drive = primer::probe::image::read_source(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nocloud/full/drive"),
        &Limits::default(),
    )
    .unwrap();
    let (inst, _) = primer::source::parse_drive(&drive).unwrap();
    let (ud, _) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert_eq!(ud.cloud_config.write_files[0].permissions, Some(0o644));
}

#[test]
fn shared_real_world_user_data() {
    let Some(dir) = common::shared_fixtures() else {
        println!("SKIP shared user data: ../shared/fixtures not present beside the checkout");
        return;
    };
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                name.as_str(),
                "user-data" | "user_data" | "user_data.txt" | "vendor-data"
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut parsed = 0;
    for f in &files {
        let data = fs::read(f).unwrap();
        let (ud, r) = parse_user_data(Some(&data), &[], &UserDataLimits::default());
        harness::check_userdata(&ud, &r, &UserDataLimits::default());
        if !ud.is_empty() {
            parsed += 1;
        }
        println!(
            "{}: {} script(s), hostname {:?}, {} warning(s){}",
            f.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
                .unwrap_or(f)
                .display(),
            ud.scripts.len(),
            ud.cloud_config.hostname,
            r.warnings.len(),
            r.warnings
                .iter()
                .map(|w| format!("\n    {w}"))
                .collect::<String>()
        );
    }
    println!("{} user-data files, {parsed} with content", files.len());
    assert!(!files.is_empty());
}
