use std::io::Write;

use super::*;
use crate::model::userdata::{CcUser, Command, PasswordValue};
use crate::model::Warning;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn user(data: &[u8]) -> (UserData, Report) {
    parse_user_data(Some(data), &[], &UserDataLimits::default())
}

fn fields(r: &Report) -> Vec<String> {
    r.warnings.iter().map(|w| w.field.clone()).collect()
}

fn find<'a>(r: &'a Report, needle: &str) -> &'a Warning {
    r.warnings
        .iter()
        .find(|w| w.message.contains(needle) || w.field.contains(needle))
        .unwrap_or_else(|| panic!("no warning with {needle:?}: {:#?}", r.warnings))
}

#[test]
fn starts_with_rules() {
    let cases: &[(&[u8], Kind)] = &[
        (b"#!/bin/sh\n", Kind::Script),
        (b"  \n#!/bin/sh\n", Kind::Script),
        (b"\xef\xbb\xbf#cloud-config\n", Kind::CloudConfig),
        (b"#Cloud-Config\n", Kind::CloudConfig),
        (b"#cloud-config-archive\n", Kind::Unsupported(ARCHIVE)),
        (b"#cloud-config-jsonp\n", Kind::Unsupported(JSONP)),
        (b"#cloud-boothook\n", Kind::Boothook),
        (b"#include https://x\n", Kind::Unsupported(INCLUDE)),
        (
            b"#include-once\nhttps://x\n",
            Kind::Unsupported(INCLUDE_ONCE),
        ),
        (b"#part-handler\n", Kind::Unsupported(PART_HANDLER)),
        (
            b"## template: jinja\n#cloud-config\n",
            Kind::Unsupported(JINJA),
        ),
        (b"#upstart-job\n", Kind::Unsupported(UPSTART)),
        (b"#ps1_sysnative\n", Kind::Unsupported(WINDOWS)),
        (b"<powershell>x</powershell>", Kind::Unsupported(WINDOWS)),
        (b"rem cmd\n", Kind::Unsupported(WINDOWS)),
        (b"hello\n", Kind::Unknown("text/plain".into())),
        (b" \r\n\t", Kind::Empty),
        (b"", Kind::Empty),
    ];
    for (body, want) in cases {
        assert_eq!(
            classify(None, body),
            *want,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // The declared type decides, except that x-shellscript and text/plain look at the start.
    assert_eq!(
        classify(Some("text/cloud-config"), b"#!/bin/sh"),
        Kind::CloudConfig
    );
    assert_eq!(
        classify(Some("text/x-shellscript"), b"#cloud-config\n"),
        Kind::CloudConfig
    );
    assert_eq!(
        classify(Some("text/x-shellscript"), b"echo hi\n"),
        Kind::Script
    );
    assert_eq!(
        classify(Some("text/x-not-multipart"), b"#!/bin/sh"),
        Kind::Script
    );
    assert_eq!(
        classify(Some("text/cloud-boothook"), b"#!/bin/sh"),
        Kind::Boothook
    );
    assert_eq!(
        classify(Some("text/x-include-url"), b"http://x"),
        Kind::Unsupported(INCLUDE)
    );
    assert_eq!(
        classify(Some("text/jinja2"), b"x"),
        Kind::Unsupported(JINJA)
    );
    assert_eq!(
        classify(Some("text/x-shellscript-per-boot"), b"#!"),
        Kind::Unsupported(PER_BOOT)
    );
    assert_eq!(
        classify(Some("application/octet-stream"), b"#!/bin/sh"),
        Kind::Unknown("application/octet-stream".into())
    );
}

#[test]
fn names_are_safe_unique_deterministic() {
    for (given, want) in [
        ("setup.sh", "setup.sh"),
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\run me.ps1", "run_me.ps1"),
        ("..hidden", "hidden"),
        ("-rf", "rf"),
        ("ünïcode", "_n_code"),
        ("...", ""),
    ] {
        assert_eq!(sanitize(given), want, "{given}");
    }
    assert_eq!(sanitize(&"a".repeat(200)).len(), 56);
    let limits = UserDataLimits::default();
    let mut run = Run {
        owners: &[],
        streamed: None,
        carved: None,
        kept_mime: None,
        kept_len: 0,
        unread: None,
        limits: &limits,
        report: Report::default(),
        budget: Budget::new(1),
        names: BTreeSet::new(),
        next_suffix: BTreeMap::new(),
        leaves: 0,
        leaves_capped: false,
    };
    assert_eq!(run.name(Some("a.sh"), 1), "a.sh");
    assert_eq!(run.name(Some("a.sh"), 2), "a.sh-2");
    assert_eq!(run.name(Some("/"), 3), "part-003");
    assert_eq!(run.name(None, 3), "part-003-2");
    assert_eq!(run.name(Some("a.sh"), 4), "a.sh-3");
    assert_eq!(run.name(Some("a.sh-4"), 5), "a.sh-4");
    assert_eq!(run.name(Some("a.sh"), 6), "a.sh-5");
}

#[test]
fn total_parts_are_bounded_over_every_blob() {
    let limits = UserDataLimits {
        max_total_parts: 3,
        ..UserDataLimits::default()
    };
    let vendor: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("v{i}"), b"#!/bin/sh\n".to_vec()))
        .collect();
    let (ud, r) = parse_user_data(Some(b"#!/bin/sh\n"), &vendor, &limits);
    assert_eq!(ud.scripts.len(), 3);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].file, "v2");
    assert!(r.warnings[0].message.contains("more than 3 parts"));
}

#[test]
fn plain_script_and_empty_input() {
    let (ud, r) = user(b"#!/bin/bash\necho hi\n");
    assert_eq!(ud.scripts.len(), 1);
    assert_eq!(ud.scripts[0].name, "part-001");
    assert_eq!(ud.scripts[0].origin, Origin::UserData);
    assert_eq!(ud.scripts[0].content, b"#!/bin/bash\necho hi\n");
    assert!(r.warnings.is_empty());
    let (ud, r) = user(b"");
    assert!(ud.is_empty() && r.warnings.is_empty());
    let (ud, r) = parse_user_data(None, &[], &UserDataLimits::default());
    assert!(ud.is_empty() && r.warnings.is_empty());
}

#[test]
fn gzip_blob_and_caps() {
    let (ud, r) = user(&gz(b"#cloud-config\nhostname: zipped\n"));
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("zipped"));
    assert!(r.warnings.is_empty(), "{r:?}");
    // A bomb: over the cap is a warning naming the file, nothing else.
    let limits = UserDataLimits {
        max_decompressed_bytes: 1 << 20,
        ..UserDataLimits::default()
    };
    let bomb = gz(&vec![b'#'; (1 << 20) + 1]);
    assert!(bomb.len() < 4096);
    let (ud, r) = parse_user_data(Some(&bomb), &[], &limits);
    assert!(ud.is_empty());
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].file, "user-data");
    assert!(r.warnings[0].message.contains("gzip bomb"), "{r:?}");
    // Corrupt and truncated gzip.
    let mut cut = gz(b"#!/bin/sh\necho\n");
    cut.truncate(cut.len() - 6);
    let (ud, r) = user(&cut);
    assert!(ud.is_empty());
    assert!(
        r.warnings[0].message.starts_with("gzip: not valid gzip"),
        "{r:?}"
    );
    // The total budget spans every decompression of one parse.
    let limits = UserDataLimits {
        max_total_bytes: 100,
        ..UserDataLimits::default()
    };
    let big = gz(&[b'x'; 200]);
    let vendor = vec![("vendor-data".to_string(), big.clone())];
    let (_, r) = parse_user_data(Some(&gz(b"#!/bin/sh\n")), &vendor, &limits);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].file, "vendor-data");
    assert!(r.warnings[0].message.contains("budget"), "{r:?}");
}

#[test]
fn oversize_blob_is_ignored() {
    let limits = UserDataLimits {
        max_blob_bytes: 10,
        ..UserDataLimits::default()
    };
    let (ud, r) = parse_user_data(Some(b"#!/bin/sh\necho 1234567\n"), &[], &limits);
    assert!(ud.is_empty());
    assert!(r.warnings[0]
        .message
        .starts_with("too large (23 bytes > limit 10)"));
}

fn multipart(boundary: &str, parts: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\npreamble\n"
    );
    for (headers, body) in parts {
        s.push_str(&format!("--{boundary}\n{headers}\n\n{body}\n"));
    }
    s.push_str(&format!("--{boundary}--\nepilogue\n"));
    s.into_bytes()
}

#[test]
fn multipart_with_every_kind() {
    let data = multipart(
        "XX",
        &[
            ("Content-Type: text/x-shellscript; charset=\"us-ascii\"\nContent-Disposition: attachment; filename=\"first.sh\"", "#!/bin/sh\necho 1"),
            ("Content-Type: text/cloud-config", "hostname: mime\nruncmd: [a]"),
            ("Content-Type: text/cloud-boothook", "#cloud-boothook\n#!/bin/sh\necho boot"),
            ("Content-Type: text/x-include-url", "http://example.invalid/x"),
            ("Content-Type: text/plain", "#!/bin/sh\necho sniffed"),
            ("Content-Type: text/plain", "just words"),
            ("Content-Type: application/x-gzip\nContent-Transfer-Encoding: base64", &base64_of(&gz(b"#!/bin/sh\necho gz"))),
            ("Content-Type: image/png", "x"),
            ("Content-Type: text/x-shellscript", ""),
        ],
    );
    let (ud, r) = user(&data);
    let names: Vec<_> = ud.scripts.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first.sh", "part-005", "part-007"]);
    assert_eq!(ud.scripts[0].content, b"#!/bin/sh\necho 1");
    assert_eq!(ud.scripts[2].content, b"#!/bin/sh\necho gz");
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("mime"));
    assert_eq!(ud.boothooks.len(), 1);
    assert_eq!(ud.boothooks[0].name, "part-003");
    assert_eq!(
        fields(&r),
        ["part 3", "part 4", "part 6", "part 8"],
        "{:#?}",
        r.warnings
    );
    assert!(find(&r, "boothooks").message.contains("part-003"));
    assert!(find(&r, "never fetches").field == "part 4");
    assert!(find(&r, "not recognised").field == "part 6");
    assert!(find(&r, "image/png").field == "part 8");
    assert!(r.warnings.iter().all(|w| w.file == "user-data"));
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn nested_multipart_depth_and_part_caps() {
    // Depth: each level wraps the previous one.
    let mut data = b"Content-Type: text/x-shellscript\n\n#!/bin/sh\necho deep".to_vec();
    for i in 0..4 {
        let b = format!("b{i}");
        let mut s = format!("Content-Type: multipart/mixed; boundary={b}\n\n--{b}\n").into_bytes();
        s.extend_from_slice(&data);
        s.extend_from_slice(format!("\n--{b}--\n").as_bytes());
        data = s;
    }
    let (ud, r) = user(&data);
    assert_eq!(ud.scripts.len(), 1);
    assert!(r.warnings.is_empty());
    let limits = UserDataLimits {
        max_mime_depth: 3,
        ..UserDataLimits::default()
    };
    let (ud, r) = parse_user_data(Some(&data), &[], &limits);
    assert!(ud.scripts.is_empty());
    assert!(
        r.warnings[0].message.contains("nested deeper than 3"),
        "{r:?}"
    );
    // Part count: one warning, the first parts kept.
    let many: Vec<(&str, &str)> = (0..20)
        .map(|_| ("Content-Type: text/x-shellscript", "#!/bin/sh"))
        .collect();
    let limits = UserDataLimits {
        max_mime_parts: 5,
        ..UserDataLimits::default()
    };
    let (ud, r) = parse_user_data(Some(&multipart("m", &many)), &[], &limits);
    assert_eq!(ud.scripts.len(), 5);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].message.contains("more than 5 MIME parts"));
    // Without a boundary.
    let (_, r) = user(b"Content-Type: multipart/mixed\n\n--x\n\n#!/bin/sh\n--x--\n");
    assert!(
        r.warnings[0].message.contains("without a boundary"),
        "{r:?}"
    );
}

#[test]
fn single_part_mime_message_and_bad_transfer_encoding() {
    let (ud, r) = user(b"MIME-Version: 1.0\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: base64\n\nI2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogYjY0Cg==\n");
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("b64"));
    assert!(r.warnings.is_empty(), "{r:?}");
    let (ud, r) = user(b"MIME-Version: 1.0\nContent-Type: text/x-shellscript\nContent-Transfer-Encoding: base64\n\n!!!!\n");
    assert!(ud.is_empty());
    assert!(r.warnings[0].message.contains("transfer encoding"), "{r:?}");
}

#[test]
fn cloud_config_parts_merge_in_order() {
    let data = multipart(
        "b",
        &[
            (
                "Content-Type: text/cloud-config",
                "hostname: one\nfqdn: one.example\nruncmd: [a, b]\nssh_authorized_keys: [k1]",
            ),
            (
                "Content-Type: text/cloud-config",
                "hostname: two\nruncmd: [c]\nssh_authorized_keys:",
            ),
        ],
    );
    let (ud, r) = user(&data);
    let c = &ud.cloud_config;
    assert_eq!(c.hostname.as_deref(), Some("two"));
    assert_eq!(c.fqdn.as_deref(), Some("one.example"));
    assert_eq!(c.runcmd, vec![Command::Shell("c".into())]);
    assert!(c.ssh_authorized_keys.is_empty(), "null replaces: {c:?}");
    assert!(r.warnings.is_empty());
}

#[test]
fn user_wins_over_vendor_key_by_key() {
    let vendor = vec![
        (
            "openstack/latest/vendor_data.json".to_string(),
            b"#cloud-config\nhostname: v1\nfqdn: v.example\nruncmd: [vendor]\nchpasswd: {expire: false}\n".to_vec(),
        ),
        (
            "openstack/latest/vendor_data2.json".to_string(),
            b"#cloud-config\nhostname: v2\nssh_pwauth: true\n".to_vec(),
        ),
        ("vendor-data".to_string(), b"#!/bin/sh\necho vendor\n".to_vec()),
    ];
    let (ud, r) = parse_user_data(
        Some(b"#cloud-config\nhostname: mine\nchpasswd: {list: 'root:$6$s$h'}\n"),
        &vendor,
        &UserDataLimits::default(),
    );
    let c = &ud.cloud_config;
    assert_eq!(c.hostname.as_deref(), Some("mine"));
    assert_eq!(c.fqdn.as_deref(), Some("v.example"));
    assert_eq!(c.runcmd, vec![Command::Shell("vendor".into())]);
    assert_eq!(c.ssh_pwauth, Some(true));
    assert_eq!(c.chpasswd.expire, Some(false));
    assert_eq!(
        c.chpasswd.users,
        vec![("root".into(), PasswordValue::Hash("$6$s$h".into()))]
    );
    assert_eq!(ud.scripts.len(), 1);
    assert_eq!(ud.scripts[0].origin, Origin::VendorData);
    assert_eq!(ud.scripts[0].name, "part-003");
    assert!(r.warnings.is_empty(), "{r:?}");

    // User data can switch vendor data off.
    let (ud, r) = parse_user_data(
        Some(b"#cloud-config\nvendor_data: {enabled: false}\n"),
        &vendor,
        &UserDataLimits::default(),
    );
    assert!(ud.is_empty(), "{ud:?}");
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].field, "vendor_data.enabled");
}

#[test]
fn vendor_scripts_come_first_and_never_rename_user_scripts() {
    let vendor = vec![("vendor-data".to_string(), b"#!/bin/sh\nv\n".to_vec())];
    let (ud, _) = parse_user_data(Some(b"#!/bin/sh\nu\n"), &vendor, &UserDataLimits::default());
    let got: Vec<_> = ud
        .scripts
        .iter()
        .map(|s| (s.name.as_str(), s.origin))
        .collect();
    assert_eq!(
        got,
        [
            ("part-001-2", Origin::VendorData),
            ("part-001", Origin::UserData)
        ]
    );
}

#[test]
fn typed_vendor_parts() {
    let inputs = [
        VendorInput {
            file: "vendor_data.json",
            content_type: Some("text/x-shellscript"),
            data: b"echo no shebang\n",
        },
        VendorInput {
            file: "vendor_data.json",
            content_type: Some("Text/Cloud-Config; charset=\"utf-8\""),
            data: b"hostname: typed\n",
        },
    ];
    let (ud, r) = parse_user_data_inputs(None, &inputs, &UserDataLimits::default());
    assert_eq!(ud.scripts.len(), 1);
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("typed"));
    assert!(r.warnings.is_empty(), "{r:?}");
    let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
    inst.user_data = Some(crate::model::Blob::new(
        b"#cloud-config\nfqdn: a.b\n".to_vec(),
    ));
    inst.vendor_user_data.push(crate::model::VendorPart {
        file: "vendor-data".into(),
        content_type: None,
        data: crate::model::Blob::new(b"#cloud-config\nhostname: v\n".to_vec()),
    });
    let (ud, _) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert_eq!(ud.cloud_config.fqdn.as_deref(), Some("a.b"));
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("v"));
}

#[test]
fn unsupported_keys_one_warning_per_part_sorted() {
    let (ud, r) = user(b"#cloud-config\npackages: [a]\nhostname: h\napt: {}\nusers: [{name: bob, expiredate: '2030-01-01'}]\nwrite_files: [{path: /x, source: {uri: http://x}}]\nchpasswd: {foo: 1}\nsnap: {}\n");
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("h"));
    assert_eq!(r.warnings.len(), 1, "{:#?}", r.warnings);
    let w = &r.warnings[0];
    assert_eq!(w.file, "user-data");
    assert_eq!(
        w.field,
        "apt, chpasswd.foo, packages, snap, users[0].expiredate, write_files[0].source"
    );
    assert_eq!(w.message, "6 unsupported cloud-config keys; ignored");
}

#[test]
fn wrong_types_warn_and_the_rest_applies() {
    let (ud, r) = user(b"#cloud-config\nhostname: [a]\nfqdn: ok.example\nruncmd: {a: 1}\nbootcmd: [ls, [echo, {x: 1}], 5, [], [mkdir, -p, 7]]\nusers: [{name: 'bad:name'}, {gecos: nobody}, {name: ok, uid: -1, lock_passwd: perhaps}, 42]\nwrite_files: [{path: /a, permissions: rwx}, {content: x}, {path: /b, content: [1]}, 'str']\nssh_pwauth: sometimes\n");
    let c = &ud.cloud_config;
    assert_eq!(c.hostname, None);
    assert_eq!(c.fqdn.as_deref(), Some("ok.example"));
    assert!(c.runcmd.is_empty());
    assert_eq!(
        c.bootcmd,
        vec![
            Command::Shell("ls".into()),
            Command::Argv(vec!["mkdir".into(), "-p".into(), "7".into()])
        ]
    );
    assert_eq!(c.users.len(), 1, "{:?}", c.users);
    assert_eq!(c.users[0].name, "ok");
    assert_eq!(c.users[0].uid, None);
    assert!(c.users[0].lock_passwd);
    assert_eq!(c.write_files.len(), 1);
    assert_eq!(c.write_files[0].permissions, None);
    let want = [
        ("hostname", "expected a string, found a list; ignored"),
        ("runcmd", "expected a list of commands, found a mapping; ignored"),
        ("bootcmd[1][1]", "expected a string; command, found a mapping; ignored"),
        ("bootcmd[2]", "expected a string or a list of strings, found an integer; ignored"),
        ("bootcmd[3]", "empty command; ignored"),
        ("users[0].name", "\"bad:name\" is not a valid user name; user ignored"),
        ("users[1].name", "missing; user ignored"),
        ("users[2].lock_passwd", "expected a boolean, found a string; ignored"),
        ("users[2].uid", "expected a user id (0 to 4294967295), found an integer; ignored"),
        ("users[3]", "expected a user name or a mapping, found an integer; ignored"),
        ("write_files[0].permissions", "expected an octal mode up to 07777 (0644 or '0644'), found a string; default mode used"),
        ("write_files[1].path", "missing; file ignored"),
        ("write_files[2].content", "expected a string or binary; file, found a list; ignored"),
        ("write_files[3]", "expected a mapping, found a string; ignored"),
        ("ssh_pwauth", "expected a boolean or \"unchanged\", found a string; ignored"),
    ];
    let got: Vec<(&str, &str)> = r
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.message.as_str()))
        .collect();
    for w in want {
        assert!(got.contains(&w), "missing {w:?} in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn write_files_encodings_and_modes() {
    let gzb64 = base64_of(&gz(b"zipped\n"));
    let doc = format!(
        "#cloud-config\nwrite_files:\n- {{path: /a, content: aGVsbG8=, encoding: b64, permissions: 0644}}\n- {{path: /b, content: aGk=, encoding: BASE64, permissions: '0600'}}\n- {{path: /c, content: {gzb64}, encoding: gz+b64, permissions: '0o755'}}\n- {{path: /d, content: {gzb64}, encoding: GZIP+BASE64, owner: 'www:www', append: true, defer: 'yes'}}\n- path: /e\n  encoding: gzip\n  content: !!binary |\n    {gzb64}\n- {{path: /f, content: plain, encoding: text/plain, permissions: 420}}\n- {{path: /g, content: x, encoding: rot13}}\n- {{path: /h, content: '%%%', encoding: b64}}\n- {{path: /i, content: notgzip, encoding: gz}}\n- {{path: /j, permissions: 644}}\n- {{path: /k, permissions: 0o17777}}\n- {{path: /l, content: 12}}\n"
    );
    let (ud, r) = user(doc.as_bytes());
    let files: Vec<_> = ud
        .cloud_config
        .write_files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                String::from_utf8_lossy(&f.content).into_owned(),
                f.permissions,
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("/a", "hello".to_string(), Some(0o644)),
            ("/b", "hi".into(), Some(0o600)),
            ("/c", "zipped\n".into(), Some(0o755)),
            ("/d", "zipped\n".into(), None),
            ("/e", "zipped\n".into(), None),
            ("/f", "plain".into(), Some(0o644)),
            ("/g", "x".into(), None),
            ("/j", "".into(), Some(644)),
            ("/k", "".into(), None),
            ("/l", "12".into(), None),
        ]
    );
    let d = &ud.cloud_config.write_files[3];
    assert_eq!(d.owner.as_deref(), Some("www:www"));
    assert!(d.append && d.defer);
    assert!(find(&r, "unknown encoding \"rot13\"").field == "write_files[6].encoding");
    assert!(find(&r, "not valid base64").field == "write_files[7].content");
    assert!(find(&r, "not valid gzip").field == "write_files[8].content");
    assert!(find(&r, "is a decimal number (mode 01204)").field == "write_files[9].permissions");
    assert!(find(&r, "octal mode").field == "write_files[10].permissions");
    assert_eq!(r.warnings.len(), 5, "{:#?}", r.warnings);
}

#[test]
fn write_files_gzip_bomb_is_capped() {
    let limits = UserDataLimits {
        max_file_bytes: 1000,
        ..UserDataLimits::default()
    };
    let doc = format!(
        "#cloud-config\nwrite_files:\n- {{path: /bomb, encoding: gz+b64, content: {}}}\n- {{path: /ok, content: fine}}\n",
        base64_of(&gz(&[0u8; 5000]))
    );
    let (ud, r) = parse_user_data(Some(doc.as_bytes()), &[], &limits);
    assert_eq!(ud.cloud_config.write_files.len(), 1);
    assert_eq!(ud.cloud_config.write_files[0].path, "/ok");
    assert!(find(&r, "gzip bomb").field == "write_files[0].content");
}

#[test]
fn users_forms() {
    let (ud, r) = user(b"#cloud-config\nusers:\n- default\n- 'alice, carol'\n- name: bob\n  gecos: Bob B\n  groups: 'adm, sudo'\n  shell: /bin/zsh\n  sudo: ALL=(ALL) NOPASSWD:ALL\n  lock_passwd: false\n  passwd: $6$salt$hash\n  hashed_passwd: $6$s2$h2\n  plain_text_passwd: bob-plain-secret\n  ssh_authorized_keys: [ssh-ed25519 AAAA bob]\n  primary_group: staff\n  homedir: /srv/bob\n  system: true\n  no_create_home: 'yes'\n  uid: '1500'\n- {name: dave, groups: [a, b], sudo: false}\n- {name: erin, sudo: [r1, r2], uid: 7}\n- {name: default, groups: [wheel]}\n- alice\n");
    let u = &ud.cloud_config.users;
    assert!(ud.cloud_config.users_given);
    let names: Vec<_> = u.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["default", "alice", "carol", "bob", "dave", "erin"]);
    assert!(u[0].is_default());
    let bob = &u[3];
    assert_eq!(bob.gecos.as_deref(), Some("Bob B"));
    assert_eq!(bob.groups, ["adm", "sudo"]);
    assert_eq!(bob.shell.as_deref(), Some("/bin/zsh"));
    assert_eq!(bob.sudo, ["ALL=(ALL) NOPASSWD:ALL"]);
    assert!(!bob.lock_passwd);
    assert_eq!(bob.passwd.as_deref(), Some("$6$salt$hash"));
    assert_eq!(bob.hashed_passwd.as_deref(), Some("$6$s2$h2"));
    assert_eq!(
        bob.plain_text_passwd.as_ref().unwrap().expose(),
        b"bob-plain-secret"
    );
    assert_eq!(bob.ssh_authorized_keys, ["ssh-ed25519 AAAA bob"]);
    assert_eq!(bob.primary_group.as_deref(), Some("staff"));
    assert_eq!(bob.homedir.as_deref(), Some("/srv/bob"));
    assert!(bob.system && bob.no_create_home);
    assert_eq!(bob.uid, Some(1500));
    assert_eq!(u[4].groups, ["a", "b"]);
    assert!(u[4].sudo.is_empty());
    assert_eq!(u[5].sudo, ["r1", "r2"]);
    assert_eq!(u[5].uid, Some(7));
    // `default` twice and `alice` twice: the first entries kept, each reported.
    assert_eq!(r.warnings.len(), 2, "{:#?}", r.warnings);
    assert!(r
        .warnings
        .iter()
        .all(|w| w.message.contains("listed more than once")));

    // `users` given but without `default`; the mapping form; the `user` key.
    let (ud, _) = user(b"#cloud-config\nusers: {zed: {shell: /bin/sh}, yan: null}\nuser: {name: admin, groups: [adm]}\n");
    let names: Vec<_> = ud
        .cloud_config
        .users
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(names, ["yan", "zed"]);
    let admin = ud.cloud_config.user.unwrap();
    assert!(admin.is_default() && admin.name == "admin" && admin.groups == ["adm"]);
    let (ud, _) = user(b"#cloud-config\nuser: dummy-user\npassword: pw\n");
    assert_eq!(ud.cloud_config.user.unwrap().name, "dummy-user");
    assert!(!ud.cloud_config.users_given);
    let (ud, _) = user(b"#cloud-config\nusers: []\n");
    assert!(ud.cloud_config.users_given && ud.cloud_config.users.is_empty());
}

#[test]
fn chpasswd_both_forms() {
    let (ud, r) = user(b"#cloud-config\nchpasswd:\n  expire: false\n  list: |\n    root:root-plain-secret\n    alice:$6$salt$hashvalue\n    bob:R\n    nocolon\n    carol:RANDOM\n  users:\n  - {name: dave, password: dave-plain-secret, type: text}\n  - {name: erin, password: $5$a$b, type: hash}\n  - {name: fred, type: RANDOM}\n  - {name: gina, password: gina-plain-secret}\n  - {name: hank, password: x, type: other}\n  - {password: nameless-secret}\n");
    let c = &ud.cloud_config.chpasswd;
    assert_eq!(c.expire, Some(false));
    let got: Vec<(&str, &PasswordValue)> = c.users.iter().map(|(u, p)| (u.as_str(), p)).collect();
    assert_eq!(
        got,
        [
            (
                "root",
                &PasswordValue::Plain(crate::model::Secret::new("root-plain-secret"))
            ),
            ("alice", &PasswordValue::Hash("$6$salt$hashvalue".into())),
            (
                "dave",
                &PasswordValue::Plain(crate::model::Secret::new("dave-plain-secret"))
            ),
            ("erin", &PasswordValue::Hash("$5$a$b".into())),
            (
                "gina",
                &PasswordValue::Plain(crate::model::Secret::new("gina-plain-secret"))
            ),
        ]
    );
    let f = fields(&r);
    assert_eq!(
        f,
        [
            "chpasswd.list line 3",
            "chpasswd.list line 4",
            "chpasswd.list line 5",
            "chpasswd.users[2]",
            "chpasswd.users[4].type",
            "chpasswd.users[5].name",
        ],
        "{:#?}",
        r.warnings
    );
    // The list form as a YAML list.
    let (ud, r) = user(b"#cloud-config\nchpasswd: {list: ['root:pw1', 'ubuntu:pw2']}\n");
    assert_eq!(ud.cloud_config.chpasswd.users.len(), 2);
    assert!(r.warnings.is_empty());
}

#[test]
fn every_supported_key() {
    let (ud, r) = user(b"#cloud-config\nhostname: host1\nfqdn: host1.example.org\nprefer_fqdn_over_hostname: true\nuser: {name: admin}\nusers: [default]\nssh_authorized_keys:\n  - ssh-ed25519 AAAA one\n  - ssh-rsa BBBB two\nwrite_files: [{path: /etc/motd, content: hi}]\nruncmd:\n  - echo a\n  - [ls, -l, /]\nbootcmd: [echo boot]\npassword: top-plain-secret\nchpasswd: {expire: true, users: [{name: root, password: $6$x$y}]}\nssh_pwauth: no\nvendor_data: {enabled: true}\n");
    assert!(r.warnings.is_empty(), "{r:?}");
    let c = &ud.cloud_config;
    assert_eq!(c.hostname.as_deref(), Some("host1"));
    assert_eq!(c.fqdn.as_deref(), Some("host1.example.org"));
    assert_eq!(c.prefer_fqdn_over_hostname, Some(true));
    assert_eq!(c.user.as_ref().unwrap().name, "admin");
    assert_eq!(c.users, vec![CcUser::default_marker()]);
    assert_eq!(c.ssh_authorized_keys.len(), 2);
    assert_eq!(c.write_files[0].content, b"hi");
    assert_eq!(
        c.runcmd,
        vec![
            Command::Shell("echo a".into()),
            Command::Argv(vec!["ls".into(), "-l".into(), "/".into()])
        ]
    );
    assert_eq!(c.bootcmd, vec![Command::Shell("echo boot".into())]);
    assert_eq!(c.password.as_ref().unwrap().expose(), b"top-plain-secret");
    assert_eq!(c.chpasswd.expire, Some(true));
    assert_eq!(c.ssh_pwauth, Some(false));
    // runcmd as one string is a whole script, as cloud-init's shellify takes it.
    let (ud, _) = user(b"#cloud-config\nruncmd: |\n  echo a\n  echo b\n");
    assert_eq!(
        ud.cloud_config.runcmd,
        vec![Command::Shell("echo a\necho b\n".into())]
    );
}

#[test]
fn yaml_problems_are_warnings_for_the_part() {
    let (ud, r) = user(b"#cloud-config\nhostname: a\nhostname: b\n");
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("b"));
    assert_eq!(r.warnings[0].field, "hostname");
    assert!(r.warnings[0].message.contains("last value"));
    let (ud, r) = user(b"#cloud-config\n[unclosed\n");
    assert!(ud.is_empty());
    assert!(
        r.warnings[0]
            .message
            .starts_with("cloud-config: invalid YAML"),
        "{r:?}"
    );
    let (_, r) = user(b"#cloud-config\n- a\n");
    assert!(r.warnings[0]
        .message
        .contains("expected a mapping, found a list"));
    let (_, r) = user(b"#cloud-config\nhostname: \xe9t\xe9\n");
    assert!(
        r.warnings[0]
            .message
            .contains("not UTF-8 (invalid byte at 24)"),
        "{r:?}"
    );
    let limits = UserDataLimits {
        max_yaml_bytes: 20,
        ..UserDataLimits::default()
    };
    let (_, r) = parse_user_data(
        Some(b"#cloud-config\nhostname: long-enough\n"),
        &[],
        &limits,
    );
    assert!(r.warnings[0].message.contains("too large"), "{r:?}");
}

#[test]
fn non_utf8_scripts_are_kept_as_bytes() {
    let body = b"#!/bin/sh\necho \xff\xfe caf\xe9\n";
    let (ud, r) = user(body);
    assert_eq!(ud.scripts[0].content, body);
    assert!(r.warnings.is_empty());
}

/// Windows-headed parts kept aside for a Windows target obey the same part budget as scripts
/// (a drive with a million `#ps1` parts keeps `max_total_parts`), keep their names sanitised
/// (a newline or `..` in a MIME filename never reaches a stored file name), and still warn.
#[test]
fn windows_parts_are_bounded_and_named_safely() {
    let limits = UserDataLimits {
        max_total_parts: 4,
        ..UserDataLimits::default()
    };
    let vendor: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("v{i}"), b"#ps1\nWrite-Host x\n".to_vec()))
        .collect();
    let (ud, r) = parse_user_data(Some(b"rem cmd\r\necho x\r\n"), &vendor, &limits);
    assert_eq!(ud.windows_scripts.len(), 4);
    assert!(ud.scripts.is_empty());
    assert!(r
        .warnings
        .iter()
        .any(|w| w.message.contains("more than 4 parts")));
    let mime = b"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename=\"../x\\u{1b}\\nevil.ps1\"\n\n#ps1\nWrite-Host y\n--b--\n";
    let (ud, _) = user(mime);
    assert_eq!(ud.windows_scripts.len(), 1, "{ud:?}");
    let name = &ud.windows_scripts[0].name;
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !name.starts_with('.'),
        "{name:?}"
    );
}

/// MIME filenames in RFC 2047 / RFC 2231 encoded words go through primer's `charset` stand-in
/// (vendor/charset): whatever they decode to — a path climbing out with `..`, a newline, an
/// escape sequence, a lone UTF-16 surrogate, an unknown charset left encoded, a 100,000-byte
/// word — the script name is one safe, bounded file name.
#[test]
fn encoded_word_filenames_decode_to_safe_names() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let huge = b64(&vec![b'a'; 100_000]);
    let headers: Vec<String> = vec![
        format!(
            "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"=?utf-8?B?{}?=\"",
            b64(b"../../etc/\n\x1b[31mx.sh")
        ),
        "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"=?iso-8859-1?Q?a=0Ab=00=1B=2F..=2Fc?=\"".into(),
        format!(
            "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"=?utf-16le?B?{}?=\"",
            b64(b"a\0\0\xd8/\0")
        ),
        "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"=?shift_jis?B?gqA=?=\"".into(),
        "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename*=utf-8''%2E%2E%2F%0A%1Bevil".into(),
        format!(
            "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"=?utf-8?B?{huge}?=\""
        ),
    ];
    let parts: Vec<(&str, &str)> = headers
        .iter()
        .map(|h| (h.as_str(), "#!/bin/sh\ntrue"))
        .collect();
    let (ud, _) = user(&multipart("b", &parts));
    assert_eq!(ud.scripts.len(), headers.len(), "{ud:?}");
    let mut names = std::collections::BTreeSet::new();
    for s in &ud.scripts {
        let n = &s.name;
        assert!(
            !n.is_empty()
                && n.len() <= 64
                && !n.starts_with('.')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{n:?}"
        );
        assert!(names.insert(n.clone()), "two scripts named {n:?}");
    }
}

/// A device in memory whose bytes a test changes after the reader hashed a file on it.
struct Changing(std::sync::Mutex<Vec<u8>>);

impl crate::model::bytes::ReadAt for Changing {
    fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let d = self.0.lock().unwrap();
        let src = d
            .get(at as usize..at as usize + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[test]
fn user_data_that_changed_on_the_device_is_an_error_not_empty_input() {
    let doc = format!("#cloud-config\nhostname: kept\n#{}\n", "x".repeat(5000)).into_bytes();
    let on_device = || {
        let dev = std::sync::Arc::new(Changing(std::sync::Mutex::new(doc.clone())));
        let b = Bytes::on_device(dev.clone(), vec![(0, doc.len() as u64)], doc.len(), {
            "/dev/sr0: user-data".into()
        })
        .unwrap();
        (dev, b)
    };
    // Read whole again fine: parsed as usual.
    let (_dev, b) = on_device();
    let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
    inst.user_data = Some(crate::model::Blob(b));
    assert!(reread_error(&inst).is_none());
    let (ud, _) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert_eq!(ud.cloud_config.hostname.as_deref(), Some("kept"));

    // Changed after hashing: the parse reports the error (naming the file), it does not go on
    // with empty user-data; the drive's parse refuses it.
    let (dev, b) = on_device();
    dev.0.lock().unwrap()[20] ^= 1;
    inst.user_data = Some(crate::model::Blob(b.clone()));
    let e = reread_error(&inst).unwrap().to_string();
    assert!(
        e.contains("/dev/sr0: user-data") && e.contains("changed"),
        "{e}"
    );
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert_eq!(ud.cloud_config.hostname, None);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("/dev/sr0: user-data") && w.message.contains("not applied")),
        "{r:?}"
    );
    let mut drive = crate::media::DriveFiles::new("/dev/sr0", "iso9660");
    drive
        .files
        .insert("meta-data".into(), Bytes::from("instance-id: i-1\n"));
    drive.files.insert("user-data".into(), b);
    let e = crate::source::parse_drive(&drive).unwrap_err();
    assert!(matches!(e, crate::source::SourceError::Reread { .. }));
    assert!(e.to_string().contains("/dev/sr0: user-data"), "{e}");
}

#[test]
fn user_data_is_classified_from_the_bytes_that_were_hashed() {
    // Hashed as a cloud-config; the device later returns a script head. The parse goes by the
    // hashed head (a cloud-config, read whole) and the whole read is refused: no script.
    let doc = format!("#cloud-config\nhostname: h\n#{}\n", "x".repeat(5000)).into_bytes();
    let dev = std::sync::Arc::new(Changing(std::sync::Mutex::new(doc.clone())));
    let b = Bytes::on_device(dev.clone(), vec![(0, doc.len() as u64)], doc.len(), {
        "/dev/sr0: user-data".into()
    })
    .unwrap();
    dev.0.lock().unwrap()[..13].copy_from_slice(b"#!/bin/sh\nech");
    assert_eq!(&b.head(STREAM_HEAD).unwrap()[..13], b"#cloud-config");
    assert!(!streamed_script(&b));
    let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
    inst.user_data = Some(crate::model::Blob(b));
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert!(ud.scripts.is_empty());
    assert!(
        r.warnings.iter().any(|w| w.message.contains("changed")),
        "{r:?}"
    );
}

/// `data` as user data kept on a device in memory (the device, to change it, and the instance).
fn gz_instance(data: &[u8]) -> (std::sync::Arc<Changing>, crate::model::Instance) {
    let dev = std::sync::Arc::new(Changing(std::sync::Mutex::new(data.to_vec())));
    let b = Bytes::on_device(dev.clone(), vec![(0, data.len() as u64)], data.len(), {
        "/dev/sr0: user-data".into()
    })
    .unwrap();
    let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
    inst.user_data = Some(crate::model::Blob(b));
    (dev, inst)
}

/// Gzip'd user data kept on the device (or held: a small blob) gives what the in-memory path
/// gives for the same bytes: scripts, cloud-config with carved `write_files`, MIME, a bomb, a
/// corrupt stream, a spent budget; the decompressed content is never held.
#[test]
fn gzip_user_data_streams_and_agrees_with_the_in_memory_path() {
    let big_line = format!("# {}\n", "y".repeat(70));
    let script = format!("#!/bin/sh\n{}echo end\n", big_line.repeat(4000)).into_bytes();
    let block: String = (0..3000)
        .map(|i| format!("      line {i} of the file\n"))
        .collect();
    let config = format!(
        "#cloud-config\nhostname: zipped\nwrite_files:\n  - path: /etc/big\n    content: |\n{block}  - path: /etc/small\n    content: hi\n"
    )
    .into_bytes();
    let mime = b"Content-Type: multipart/mixed; boundary=XX\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho m\n--XX--\n".to_vec();
    let mut corrupt = gz(&script);
    corrupt.truncate(corrupt.len() - 6);
    let small = UserDataLimits {
        max_decompressed_bytes: 100_000,
        ..UserDataLimits::default()
    };
    let budget = UserDataLimits {
        max_total_bytes: 100_000,
        ..UserDataLimits::default()
    };
    let d = UserDataLimits::default();
    let cases: [(&str, Vec<u8>, &UserDataLimits); 7] = [
        ("script", gz(&script), &d),
        ("cloud-config", gz(&config), &d),
        ("mime", gz(&mime), &d),
        ("bomb", gz(&script), &small),
        ("budget", gz(&script), &budget),
        ("corrupt", corrupt, &d),
        ("small", gz(b"#cloud-config\nhostname: tiny\n"), &d),
    ];
    for (what, data, limits) in cases {
        let want = parse_user_data(Some(&data), &[], limits);
        let (_dev, inst) = gz_instance(&data);
        assert!(reread_error(&inst).is_none(), "{what}");
        let got = parse_instance_user_data(&inst, limits);
        assert_eq!(got, want, "{what}");
        // Held (a small blob): the same.
        let mut held = inst.clone();
        held.user_data = Some(crate::model::Blob(Bytes::from(data.clone())));
        assert_eq!(parse_instance_user_data(&held, limits), want, "{what} held");
        match what {
            "script" => {
                let s = &got.0.scripts[0].content;
                assert!(s.is_on_device(), "the script is derived, not held");
                let mut out = Vec::new();
                s.write_to(&mut out).unwrap();
                assert!(out == script);
            }
            "cloud-config" => {
                let f = &got.0.cloud_config.write_files[0];
                assert!(f.content.is_on_device(), "the block is carved, not held");
                assert_eq!(got.0.cloud_config.hostname.as_deref(), Some("zipped"));
            }
            "bomb" => assert!(got.1.warnings[0].message.contains("gzip bomb"), "{got:?}"),
            "budget" => assert!(got.1.warnings[0].message.contains("budget"), "{got:?}"),
            "corrupt" => assert!(
                got.1.warnings[0]
                    .message
                    .starts_with("gzip: not valid gzip"),
                "{got:?}"
            ),
            _ => {}
        }
    }
}

/// A device byte of gzip'd user data changed after the read: the stored script's write and a
/// carved block's write fail naming the file; the parse never goes on with other bytes.
#[test]
fn gzip_user_data_changed_on_the_device_fails_naming_the_file() {
    let script = format!("#!/bin/sh\n{}", "# zz\n".repeat(100_000)).into_bytes();
    let data = gz(&script);
    let (dev, inst) = gz_instance(&data);
    let (ud, _) = parse_instance_user_data(&inst, &UserDataLimits::default());
    let last = data.len() - 1;
    dev.0.lock().unwrap()[last] ^= 1;
    let e = ud.scripts[0]
        .content
        .write_to(&mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/dev/sr0: user-data (gunzip)"), "{e}");
    // Before the parse: the drive's parse refuses it (streamed, not loaded).
    let e = reread_error(&inst).unwrap().to_string();
    assert!(e.contains("/dev/sr0: user-data"), "{e}");
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert!(ud.scripts.is_empty(), "{r:?}");
}

/// A device whose bytes become `evil` once `after` bytes were read from it (the reader's hash
/// and the passes before the one under test): a drive changing between the file's hash and a
/// later pass that derives content from it.
struct Switching {
    good: Vec<u8>,
    evil: Vec<u8>,
    after: usize,
    read: std::sync::atomic::AtomicUsize,
}

impl crate::model::bytes::ReadAt for Switching {
    fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let before = self.read.fetch_add(buf.len(), Ordering::SeqCst);
        let d = if before >= self.after {
            &self.evil
        } else {
            &self.good
        };
        let src = d
            .get(at as usize..at as usize + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// `good` as user data on a [`Switching`] device turning `evil` after `passes` whole reads.
fn switching_instance(good: &[u8], evil: &[u8], passes: usize) -> crate::model::Instance {
    assert_eq!(good.len(), evil.len());
    let dev = std::sync::Arc::new(Switching {
        good: good.to_vec(),
        evil: evil.to_vec(),
        after: good.len() * passes,
        read: 0.into(),
    });
    let b = Bytes::on_device(dev, vec![(0, good.len() as u64)], good.len(), {
        "/dev/sr0: user-data".into()
    })
    .unwrap();
    let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
    inst.user_data = Some(crate::model::Blob(b));
    inst
}

/// What the parsed scripts would write (their first 64 bytes, or the write's error): none may
/// be the bytes the drive's digest does not cover.
fn script_texts(ud: &UserData) -> Vec<String> {
    ud.scripts
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            match s.content.write_to(&mut out) {
                Ok(()) => String::from_utf8_lossy(&out[..out.len().min(64)]).into_owned(),
                Err(e) => format!("error: {e}"),
            }
        })
        .collect()
}

#[test]
fn gzip_user_data_changed_before_it_is_first_decompressed_is_refused() {
    // Stored gzip: the same length for the same-length script, so a changed drive can serve
    // a valid stream of other content (its CRC right) after the file was hashed.
    let gz0 = |s: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        e.write_all(s).unwrap();
        e.finish().unwrap()
    };
    let pad = "# padding\n".repeat(3000);
    let good = gz0(format!("#!/bin/sh\necho GOOD\n{pad}").as_bytes());
    let evil = gz0(format!("#!/bin/sh\necho EVIL\n{pad}").as_bytes());
    // Hashed once by the reader: then it changes (`parse_drive`'s check is not made twice).
    let inst = switching_instance(&good, &evil, 1);
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    let texts = script_texts(&ud);
    assert!(!texts.iter().any(|t| t.contains("EVIL")), "{texts:?}");
    assert!(ud.scripts.is_empty(), "{texts:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("/dev/sr0: user-data") && w.message.contains("changed")),
        "{r:?}"
    );
}

#[test]
fn a_mime_part_changed_after_the_split_is_refused() {
    let pad = "# padding\n".repeat(3000);
    let doc = |word: &str| {
        format!(
            "Content-Type: multipart/mixed; boundary=XX\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho {word}\n{pad}--XX\nContent-Type: text/x-shellscript\nContent-Transfer-Encoding: base64\n\nIyEvYmluL3NoCmVjaG8gT0sK\n--XX--\n"
        )
        .into_bytes()
    };
    let (good, evil) = (doc("GOOD"), doc("EVIL"));
    // Hashed by the reader, split by streaming: then it changes.
    let inst = switching_instance(&good, &evil, 2);
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    let texts = script_texts(&ud);
    assert!(!texts.iter().any(|t| t.contains("EVIL")), "{texts:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.field == "part 1" && w.message.contains("changed")),
        "{r:?}"
    );
    // Unchanged, both parts are kept.
    let inst = switching_instance(&good, &good, 2);
    let (ud, _) = parse_instance_user_data(&inst, &UserDataLimits::default());
    let texts = script_texts(&ud);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("GOOD") && texts[1].contains("OK"),
        "{texts:?}"
    );
}

#[test]
fn refused_gzip_bombs_spend_the_budget_in_memory_and_streamed() {
    use base64::Engine;
    let bomb = base64::engine::general_purpose::STANDARD.encode(gz(&vec![0u8; 200_000]));
    let mut doc = b"Content-Type: multipart/mixed; boundary=XX\nMIME-Version: 1.0\n\n".to_vec();
    for _ in 0..10 {
        doc.extend_from_slice(
            format!("--XX\nContent-Type: application/x-gzip\nContent-Transfer-Encoding: base64\n\n{bomb}\n").as_bytes(),
        );
    }
    doc.extend_from_slice(b"--XX--\n");
    let limits = UserDataLimits {
        max_decompressed_bytes: 100_000,
        max_total_bytes: 350_000,
        ..UserDataLimits::default()
    };
    let count = |r: &Report, what: &str| {
        r.warnings
            .iter()
            .filter(|w| w.message.contains(what))
            .count()
    };
    let mem = parse_user_data(Some(&doc), &[], &limits);
    let (_dev, inst) = gz_instance(&doc);
    let kept = parse_instance_user_data(&inst, &limits);
    assert_eq!(kept, mem);
    // Three bombs refused at the cap (each charged 100,001 bytes), then the budget is spent:
    // the rest refused at once.
    assert_eq!(count(&mem.1, "gzip bomb"), 3, "{:?}", mem.1);
    assert_eq!(count(&mem.1, "budget is spent"), 7, "{:?}", mem.1);
}

#[test]
fn vendor_data_is_parsed_from_the_load_it_was_checked_with() {
    // A MIME vendor data on a device turning other after two whole reads (the reader's hash,
    // the check before the parse): the parse uses the checked load, never an empty blob.
    let pad = "# padding\n".repeat(3000);
    let doc = |word: &str| {
        format!(
            "Content-Type: multipart/mixed; boundary=XX\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho {word}\n{pad}--XX--\n"
        )
        .into_bytes()
    };
    let (good, evil) = (doc("GOOD"), doc("EVIL"));
    let mut inst = switching_instance(&good, &evil, 2);
    let vendor = inst.user_data.take().unwrap();
    inst.vendor_user_data.push(crate::model::VendorPart {
        file: "vendor-data".into(),
        content_type: None,
        data: vendor,
    });
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    let texts = script_texts(&ud);
    assert_eq!(texts.len(), 1, "{texts:?} {r:?}");
    assert!(texts[0].contains("GOOD"), "{texts:?}");
    // Read once more now: the other bytes, refused (the load kept is the checked one).
    let mut inst = switching_instance(&good, &evil, 1);
    let vendor = inst.user_data.take().unwrap();
    inst.vendor_user_data.push(crate::model::VendorPart {
        file: "vendor-data".into(),
        content_type: None,
        data: vendor,
    });
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert!(ud.scripts.is_empty());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("changed") && w.message.contains("not applied")),
        "{r:?}"
    );
}

/// A gzip'd MIME message of many nested multiparts behind a long preamble: each nested split
/// derives the message again from its start, so those passes are charged to the same bound as
/// the leaves' (`MAX_REDERIVED_BYTES`) and, past it, the message is read whole. Before, 900
/// empty nested multiparts behind 60 MiB cost 900 decompressions (223 s, review of h8-mime).
#[test]
fn nested_multiparts_of_a_gzipped_message_are_derived_again_within_a_bound() {
    let preamble = 4usize << 20;
    let mut m = b"Content-Type: multipart/mixed; boundary=A\nMIME-Version: 1.0\n\n".to_vec();
    m.extend(std::iter::repeat_n(b'x', preamble));
    m.push(b'\n');
    for _ in 0..900 {
        m.extend_from_slice(b"--A\nContent-Type: multipart/mixed; boundary=Z\n\nnothing\n");
    }
    m.extend_from_slice(b"--A\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho hi\n--A--\n");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&m).unwrap();
    let gz = e.finish().unwrap();
    let dev = std::sync::Arc::new(Switching {
        good: gz.clone(),
        evil: gz.clone(),
        after: usize::MAX,
        read: 0.into(),
    });
    let b = Bytes::on_device(dev.clone(), vec![(0, gz.len() as u64)], gz.len(), {
        "/dev/sr0: user-data".into()
    })
    .unwrap();
    let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
    inst.user_data = Some(crate::model::Blob(b));
    let (ud, r) = parse_instance_user_data(&inst, &UserDataLimits::default());
    assert_eq!(
        script_texts(&ud),
        vec!["#!/bin/sh\necho hi".to_string()],
        "{r:?}"
    );
    let passes = dev.read.load(std::sync::atomic::Ordering::SeqCst) / gz.len();
    // The bound allows 128 MiB / 4 MiB = 32 passes for nested splits (two each), plus the reader's, the top split's
    // and the whole read's few.
    assert!(passes <= 32 + 8, "{passes} passes over the gzip'd message");
}
