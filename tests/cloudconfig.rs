//! `#cloud-config` system keys (README "Cloud-config keys"): `primer run` of a NoCloud seed into
//! a scratch root, key by key: the first run changes, the second is `unchanged` and leaves the
//! tree byte for byte as it was; the written files pass the real parsers (`findmnt --verify`,
//! `openssl x509`).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A NoCloud seed directory with `user_data`.
fn seed(user_data: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("meta-data"),
        "instance-id: iid-cloudconfig\nlocal-hostname: cc-host.example.org\n",
    )
    .unwrap();
    fs::write(d.path().join("user-data"), user_data).unwrap();
    d
}

/// A scratch root with the host's `Europe/Berlin` zone file (or a stand-in) and an fstab.
fn root() -> tempfile::TempDir {
    let r = scratch_root();
    let zone = r.path().join("usr/share/zoneinfo/Europe");
    fs::create_dir_all(&zone).unwrap();
    let bytes = fs::read("/usr/share/zoneinfo/Europe/Berlin")
        .unwrap_or_else(|_| b"TZif2 stand-in for Europe/Berlin\n".to_vec());
    fs::write(zone.join("Berlin"), bytes).unwrap();
    fs::write(
        r.path().join("etc/fstab"),
        "UUID=1234 / ext4 defaults 0 1\n",
    )
    .unwrap();
    r
}

fn run(src: &Path, root: &Path) -> (Output, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--json", "--source", s(src), "--root", s(root)])
        .env_remove("PRIMER_TEST_HOSTKEYS_ROOT")
        .output()
        .unwrap();
    let v = json(&o);
    (o, v)
}

fn outcome(v: &serde_json::Value, id: &str) -> String {
    v["steps"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {v:#}"))["outcome"]
        .as_str()
        .unwrap()
        .to_string()
}

fn has_step(v: &serde_json::Value, id: &str) -> bool {
    v["steps"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id)
}

fn warnings(v: &serde_json::Value) -> String {
    v["warnings"].to_string()
}

/// Runs twice: every step in `ids` changes on the first run and is unchanged on the second,
/// which leaves the tree as it was.
fn twice(user_data: &str, r: &Path, ids: &[&str]) -> serde_json::Value {
    let src = seed(user_data);
    let (o, v1) = run(src.path(), r);
    for id in ids {
        assert_eq!(outcome(&v1, id), "changed", "{id}: {}", text(&o));
    }
    let before = snapshot(r);
    let (o, v2) = run(src.path(), r);
    for id in ids {
        assert_eq!(outcome(&v2, id), "unchanged", "{id}: {}", text(&o));
    }
    let mut after = snapshot(r);
    let mut before = before;
    before.remove(Path::new(RUN_STATUS));
    after.remove(Path::new(RUN_STATUS));
    assert_eq!(before, after, "the second run changed the tree");
    v1
}

fn test_cert() -> String {
    require_tool("openssl");
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=primer-cloudconfig-test",
            "-days",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

#[test]
fn timezone_writes_etc_timezone_and_the_localtime_link() {
    let r = root();
    twice(
        "#cloud-config\ntimezone: Europe/Berlin\n",
        r.path(),
        &["timezone", "localtime"],
    );
    assert_eq!(
        fs::read_to_string(r.path().join("etc/timezone")).unwrap(),
        "Europe/Berlin\n"
    );
    assert_eq!(
        fs::read_link(r.path().join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
}

#[test]
fn a_zone_the_target_lacks_is_skipped_with_a_warning() {
    let r = root();
    let src = seed("#cloud-config\ntimezone: Mars/Olympus_Mons\n");
    let (o, v) = run(src.path(), r.path());
    assert_eq!(outcome(&v, "timezone"), "skipped", "{}", text(&o));
    assert!(
        warnings(&v).contains("is not a file of the target"),
        "{v:#}"
    );
    assert!(!r.path().join("etc/timezone").exists());
    assert!(fs::symlink_metadata(r.path().join("etc/localtime")).is_err());
}

#[test]
fn locale_sets_lang_and_keeps_other_lines() {
    let r = root();
    fs::create_dir_all(r.path().join("etc/default")).unwrap();
    fs::write(
        r.path().join("etc/default/locale"),
        "LANG=C.UTF-8\nLC_TIME=en_GB.UTF-8\n",
    )
    .unwrap();
    twice(
        "#cloud-config\nlocale: de_DE.UTF-8\n",
        r.path(),
        &["locale"],
    );
    assert_eq!(
        fs::read_to_string(r.path().join("etc/default/locale")).unwrap(),
        "LANG=de_DE.UTF-8\nLC_TIME=en_GB.UTF-8\n"
    );
}

#[test]
fn ntp_writes_timesyncd_and_chrony_sources() {
    let r = root();
    // chrony "installed": its daemon is a file of the target.
    fs::create_dir_all(r.path().join("usr/sbin")).unwrap();
    fs::write(r.path().join("usr/sbin/chronyd"), "").unwrap();
    twice(
        "#cloud-config\nntp:\n  enabled: true\n  servers: [ntp1.example.org, 192.0.2.10, '2001:db8::1']\n  pools: [pool.example.org]\n",
        r.path(),
        &["ntp-timesyncd", "ntp-chrony"],
    );
    assert_eq!(
        fs::read_to_string(r.path().join("etc/systemd/timesyncd.conf.d/50-primer.conf")).unwrap(),
        "# written by primer from #cloud-config ntp\n[Time]\nNTP=ntp1.example.org 192.0.2.10 2001:db8::1 pool.example.org\n"
    );
    assert_eq!(
        fs::read_to_string(r.path().join("etc/chrony/sources.d/primer.sources")).unwrap(),
        "# written by primer from #cloud-config ntp\nserver ntp1.example.org iburst\nserver 192.0.2.10 iburst\nserver 2001:db8::1 iburst\npool pool.example.org iburst\n"
    );
    // enabled: false removes primer's files again.
    let src = seed("#cloud-config\nntp: {enabled: false, servers: [ntp1.example.org]}\n");
    let (o, v) = run(src.path(), r.path());
    assert_eq!(outcome(&v, "ntp-timesyncd"), "changed", "{}", text(&o));
    assert!(!r
        .path()
        .join("etc/systemd/timesyncd.conf.d/50-primer.conf")
        .exists());
    assert!(!r
        .path()
        .join("etc/chrony/sources.d/primer.sources")
        .exists());
}

#[test]
fn ca_certs_land_in_the_local_store_and_parse_with_openssl() {
    let r = root();
    let cert = test_cert();
    let ud = format!(
        "#cloud-config\nca_certs:\n  trusted:\n    - |\n{}",
        indent(&cert, 6)
    );
    let v = twice(&ud, r.path(), &["ca-cert:0"]);
    // Not the running system: the store is rebuilt when the image boots.
    assert_eq!(outcome(&v, "ca-certs-update"), "skipped");
    let path = r
        .path()
        .join("usr/local/share/ca-certificates/primer-0.crt");
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in", s(&path)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("primer-cloudconfig-test"));
    assert_eq!(mode(&path), 0o644);
    // The certificate gone from user data: primer's file goes too.
    let src = seed("#cloud-config\nca_certs: {trusted: []}\n");
    let (o, v) = run(src.path(), r.path());
    assert_eq!(outcome(&v, "ca-cert:0"), "changed", "{}", text(&o));
    assert!(!path.exists());
}

#[test]
fn mounts_go_into_a_marked_block_findmnt_accepts() {
    let r = root();
    let ud = "#cloud-config\nmount_default_fields: [~, ~, auto, 'defaults,nofail', '0', '2']\nmounts:\n  - [vdb, /data]\n  - [/dev/vdc, /srv/x, ext4, 'defaults,noatime', 0, 2]\n  - [/dev/vdd, none, swap, sw, 0, 0]\n";
    twice(ud, r.path(), &["fstab", "mount-points"]);
    let fstab = fs::read_to_string(r.path().join("etc/fstab")).unwrap();
    assert_eq!(
        fstab,
        "UUID=1234 / ext4 defaults 0 1\n\
         # BEGIN primer mounts (#cloud-config mounts; edits here are replaced)\n\
         /dev/vdb\t/data\tauto\tdefaults,nofail\t0\t2\n\
         /dev/vdc\t/srv/x\text4\tdefaults,noatime\t0\t2\n\
         /dev/vdd\tnone\tswap\tsw\t0\t0\n\
         # END primer mounts\n"
    );
    assert!(r.path().join("data").is_dir() && r.path().join("srv/x").is_dir());
    assert_eq!(mode(&r.path().join("data")), 0o755);
    if Path::new("/usr/bin/findmnt").exists() || Path::new("/bin/findmnt").exists() {
        // The devices do not exist here: findmnt reports them, but must parse every line.
        let o = Command::new("findmnt")
            .args(["--verify", "--tab-file", s(&r.path().join("etc/fstab"))])
            .output()
            .unwrap();
        let all = text(&o);
        assert!(all.contains("0 parse errors"), "{all}");
    }
}

#[test]
fn growpart_off_is_recorded_for_reclaim_and_lifted_again() {
    let r = root();
    twice(
        "#cloud-config\ngrowpart: {mode: 'off', devices: ['/']}\n",
        r.path(),
        &["grow-root"],
    );
    let f = r.path().join("var/lib/primer/grow-root.json");
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
    assert_eq!(doc["grow_root"], false);
    assert_eq!(mode(&f), 0o600);
    let cfg = primer::config::ReclaimConfig::default();
    assert!(cfg.settings().grow_root);
    assert!(!cfg.settings_at(r.path()).grow_root);
    // resize_rootfs: true (or no key) lifts it.
    let src = seed("#cloud-config\nresize_rootfs: true\n");
    let (o, v) = run(src.path(), r.path());
    assert_eq!(outcome(&v, "grow-root"), "changed", "{}", text(&o));
    assert!(!f.exists());
    assert!(cfg.settings_at(r.path()).grow_root);
}

#[test]
fn manage_etc_hosts_and_preserve_hostname() {
    // true: the whole file, on every run (a local edit is replaced).
    let r = root();
    let ud = "#cloud-config\nmanage_etc_hosts: true\n";
    twice(ud, r.path(), &["hosts"]);
    let hosts = fs::read_to_string(r.path().join("etc/hosts")).unwrap();
    assert!(hosts.starts_with("# Written by primer"), "{hosts}");
    assert!(hosts.contains("127.0.1.1\tcc-host.example.org cc-host\t# managed by primer\n"));
    fs::write(r.path().join("etc/hosts"), "127.0.0.1 mine\n").unwrap();
    let (_, v) = run(seed(ud).path(), r.path());
    assert_eq!(outcome(&v, "hosts"), "changed");
    assert_eq!(
        fs::read_to_string(r.path().join("etc/hosts")).unwrap(),
        hosts
    );

    // false: /etc/hosts untouched; preserve_hostname: /etc/hostname untouched.
    let r = root();
    let before = fs::read(r.path().join("etc/hosts")).unwrap();
    let src = seed("#cloud-config\nmanage_etc_hosts: false\npreserve_hostname: true\n");
    for _ in 0..2 {
        let (o, v) = run(src.path(), r.path());
        assert_eq!(outcome(&v, "hosts"), "skipped", "{}", text(&o));
        assert_eq!(outcome(&v, "hostname"), "skipped", "{}", text(&o));
        assert!(!has_step(&v, "hostname-live"));
    }
    assert_eq!(fs::read(r.path().join("etc/hosts")).unwrap(), before);
    assert!(!r.path().join("etc/hostname").exists());

    // localhost: the marked line kept current on every run, other lines kept.
    let r = root();
    let ud = "#cloud-config\nmanage_etc_hosts: localhost\n";
    twice(ud, r.path(), &["hosts"]);
    assert_eq!(
        fs::read_to_string(r.path().join("etc/hosts")).unwrap(),
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tcc-host.example.org cc-host\t# managed by primer\n"
    );
}

/// Standard base64 with `=` padding, in lines of 76 characters.
fn b64_lines(data: &[u8]) -> Vec<String> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8(l.to_vec()).unwrap())
        .collect()
}

fn target_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    root
}

#[test]
fn large_literal_blocks_are_written_as_the_yaml_says_without_holding_the_document() {
    let dir = tempfile::tempdir().unwrap();
    // Plain `|`: 6 MiB of varied lines, empty and more-indented ones among them.
    let mut plain = String::new();
    let mut i = 0u32;
    while plain.len() < 6 << 20 {
        match i % 7 {
            0 => plain.push('\n'),
            3 => plain.push_str(&format!("    more indented {i} # not a comment\n")),
            _ => plain.push_str(&format!("line {i}: {}\n", "z".repeat((i % 61) as usize))),
        }
        i += 1;
    }
    plain.push_str("last\n");
    let binary: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let kept = "kept\n".repeat(20_000);
    let mut doc =
        String::from("#cloud-config\nwrite_files:\n  - path: /srv/plain\n    content: |\n");
    for l in plain.lines() {
        if !l.is_empty() {
            doc.push_str("      ");
        }
        doc.push_str(l);
        doc.push('\n');
    }
    doc.push_str("\n  - path: /srv/binary\n    encoding: b64\n    content: |-\n");
    for l in b64_lines(&binary) {
        doc.push_str(&format!("      {l}\n"));
    }
    doc.push_str("    permissions: '0600'\n  - path: /srv/kept\n    content: |+ # keep\n");
    for l in kept.lines() {
        doc.push_str(&format!("        {l}\n"));
    }
    doc.push_str("\n    \n  # trailing comment\nruncmd:\n  - echo done\n");
    let iso = config2_iso(dir.path(), doc.as_bytes());

    let small_dir = dir.path().join("small");
    fs::create_dir(&small_dir).unwrap();
    let small = config2_iso(
        &small_dir,
        b"#cloud-config\nwrite_files:\n  - path: /srv/plain\n    content: |\n      x\n",
    );
    let root = target_root();
    let (o, base) = run_measured(&small, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));

    let root = target_root();
    let (o, rss) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let srv = root.path().join("srv");
    assert!(fs::read(srv.join("plain")).unwrap() == plain.as_bytes());
    assert!(fs::read(srv.join("binary")).unwrap() == binary);
    // `|+`: the trailing empty lines are kept (the second has fewer spaces than the content).
    assert!(fs::read(srv.join("kept")).unwrap() == format!("{kept}\n\n").as_bytes());
    // Parsed whole, the 7 MiB document was held as its text, the parser's growing buffer and
    // its scalar (over 20 MiB more); carved, only the 6 MiB value.
    assert!(
        rss < base + 10 * 1024,
        "peak RSS {rss} KiB with a 7 MiB cloud-config, {base} KiB with a small one"
    );
}

#[test]
fn a_large_document_the_line_pass_misreads_is_parsed_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A repeated key: the parser drops the first block's placeholder, so the carve is not
    // confirmed and the document is parsed whole (the last value wins, as cloud-init does).
    let first = "a\n".repeat(600_000);
    let second = "b\n".repeat(100_000);
    let mut doc = String::from("#cloud-config\nwrite_files:\n  - path: /srv/dup\n    content: |\n");
    for l in first.lines() {
        doc.push_str(&format!("      {l}\n"));
    }
    doc.push_str("    content: |\n");
    for l in second.lines() {
        doc.push_str(&format!("      {l}\n"));
    }
    let iso = config2_iso(dir.path(), doc.as_bytes());
    let root = target_root();
    let (o, _) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(fs::read(root.path().join("srv/dup")).unwrap() == second.as_bytes());
    assert!(text(&o).contains("repeated key"), "{}", text(&o));
}

#[test]
fn a_large_cloud_config_the_carve_cannot_read_is_applied_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A folded block (2.5 MiB of base64 lines, joined by spaces the decode skips) beside an
    // account: the carve does not take folded blocks, so the document is parsed whole, as
    // before, never dropped for memory's sake (its user and file applied).
    let binary: Vec<u8> = (0..(2u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut doc = String::from(
        "#cloud-config\nusers:\n  - name: alice\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0ZXN0a2V5IGZvciBwcmltZXIgdGVzdHMgb25seQ alice\nwrite_files:\n  - path: /srv/blob\n    encoding: b64\n    content: >\n",
    );
    for l in b64_lines(&binary) {
        doc.push_str("      ");
        doc.push_str(&l);
        doc.push('\n');
    }
    let iso = config2_iso(dir.path(), doc.as_bytes());
    let root = target_root();
    let (o, _) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(fs::read(root.path().join("srv/blob")).unwrap() == binary);
    assert!(!text(&o).contains("too large"), "{}", text(&o));
}

#[test]
fn a_one_line_plain_base64_content_is_streamed_from_the_device_into_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // cloud-init's documented form of a binary file (and Terraform's `filebase64()` through
    // `yamlencode`): one plain base64 line, 2.7 MiB here, with `encoding: b64`. Carved and
    // streamed: the file exact, the document never held.
    let binary: Vec<u8> = (0..(2u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&binary);
    let doc = format!(
        "#cloud-config\nwrite_files:\n  - path: /srv/blob\n    encoding: b64\n    content: {b64}\n    permissions: '0600'\n"
    );
    let iso = config2_iso(dir.path(), doc.as_bytes());
    let base = base_rss(
        dir.path(),
        b"#cloud-config\nwrite_files:\n  - path: /srv/blob\n    encoding: b64\n    content: eHh4eHh4\n",
    );
    let root = target_root();
    let (o, rss) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(fs::read(root.path().join("srv/blob")).unwrap() == binary);
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a 2.7 MiB plain base64 line, {base} KiB with a small one"
    );
}

#[test]
fn a_json_cloud_config_with_raw_utf8_is_streamed() {
    let dir = tempfile::tempdir().unwrap();
    // `ensure_ascii=False` / Go's `jsonencode`: non-ASCII written as itself, and an escaped
    // quote after it (once misread as the string's end).
    let mut content = String::new();
    let mut i = 0u32;
    while content.len() < 3 << 20 {
        content.push_str(&format!("caf\u{e9} \"q\" \u{a9} {i} \u{1f600}\n"));
        i += 1;
    }
    let doc = format!(
        "#cloud-config\n{{\"write_files\": [{{\"path\": \"/srv/utf8\", \"content\": {}}}]}}\n",
        json_string(&content)
    );
    let iso = config2_iso(dir.path(), doc.as_bytes());
    let base = base_rss(
        dir.path(),
        "#cloud-config\n{\"write_files\": [{\"path\": \"/srv/utf8\", \"content\": \"caf\u{e9}\"}]}\n".as_bytes(),
    );
    let root = target_root();
    let (o, rss) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(fs::read(root.path().join("srv/utf8")).unwrap() == content.as_bytes());
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a 3 MiB UTF-8 JSON string, {base} KiB with a small one"
    );
}

/// `s` as the text of a JSON string (what `jsonencode` writes for it), quotes included.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8 + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Peak RSS (KiB) of a run with a small cloud-config of the same shape, for comparison.
fn base_rss(dir: &Path, small: &[u8]) -> u64 {
    let small_dir = dir.join("small");
    fs::create_dir(&small_dir).unwrap();
    let iso = config2_iso(&small_dir, small);
    let root = target_root();
    let (o, base) = run_measured(&iso, root.path(), dir);
    assert!(o.status.success(), "{}", text(&o));
    base
}

#[test]
fn a_32_mib_json_cloud_config_is_streamed_from_the_device_into_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Text with tabs, quotes and backslashes: a 32 MiB JSON string of `\n`, `\t`, `\"` escapes.
    let mut content = String::new();
    let mut i = 0u32;
    while content.len() < 30 << 20 {
        content.push_str(&format!(
            "line {i}\t\"quoted\" back\\slash {}\n",
            "z".repeat((i % 37) as usize)
        ));
        i += 1;
    }
    let quoted = json_string(&content);
    assert!(quoted.len() > 32 << 20);
    let doc = format!(
        "#cloud-config\n{{\"write_files\": [{{\"path\": \"/srv/json\", \"permissions\": \"0600\", \"content\": {quoted}}}], \"runcmd\": [\"echo done\"]}}\n"
    );
    drop(quoted);
    let iso = config2_iso(dir.path(), doc.as_bytes());
    drop(doc);
    let base = base_rss(
        dir.path(),
        b"#cloud-config\n{\"write_files\": [{\"path\": \"/srv/json\", \"permissions\": \"0600\", \"content\": \"x\\n\"}], \"runcmd\": [\"echo done\"]}\n",
    );
    let root = target_root();
    let (o, rss) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(fs::read(root.path().join("srv/json")).unwrap() == content.as_bytes());
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a 32 MiB JSON cloud-config, {base} KiB with a small one"
    );
}

#[test]
fn a_60_mib_cloud_config_of_2000_files_below_the_threshold_is_carved() {
    let dir = tempfile::tempdir().unwrap();
    // 2,000 literal blocks of 30 KiB, each below the 64 KiB threshold: carved once the text
    // left for the parser is long, so it stays small.
    let body = |i: usize| -> String {
        (0..1000)
            .map(|j| format!("file{i:04} {j:04} {}\n", "q".repeat(10)))
            .collect()
    };
    let mut doc = String::from("#cloud-config\nwrite_files:\n");
    for i in 0..2000 {
        doc.push_str(&format!("  - path: /srv/many/f{i}\n    content: |\n"));
        for l in body(i).lines() {
            doc.push_str("      ");
            doc.push_str(l);
            doc.push('\n');
        }
    }
    // 2,000 bodies of 31,000 bytes: 59 MiB, under the 64 MiB file limit.
    assert!(
        doc.len() > 59 << 20 && doc.len() < 64 << 20,
        "{}",
        doc.len()
    );
    let iso = config2_iso(dir.path(), doc.as_bytes());
    drop(doc);
    let base = base_rss(
        dir.path(),
        b"#cloud-config\nwrite_files:\n  - path: /srv/many/f0\n    content: |\n      x\n",
    );
    let root = target_root();
    let (o, rss) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    for i in 0..2000 {
        let got = fs::read(root.path().join(format!("srv/many/f{i}"))).unwrap();
        assert!(got == body(i).as_bytes(), "f{i}");
    }
    // Not the 59 MiB document (over 250 MiB parsed whole): measured +12.6 MiB, most of it the
    // 4 KiB head each of the 2,000 streamed contents keeps (`Bytes::derived`), not the parse.
    assert!(
        rss < base + 16 * 1024,
        "peak RSS {rss} KiB with 2,000 blocks of 30 KiB, {base} KiB with one small one"
    );
}

#[test]
fn a_32_mib_write_files_entry_is_streamed_from_the_device_into_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // 24 MiB of bytes as base64: a 32 MiB block, decoded while streamed into the file.
    let binary: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut doc = String::from(
        "#cloud-config\nwrite_files:\n  - path: /srv/big\n    encoding: b64\n    content: |\n",
    );
    for l in b64_lines(&binary) {
        doc.push_str("      ");
        doc.push_str(&l);
        doc.push('\n');
    }
    doc.push_str("    permissions: '0600'\n");
    let iso = config2_iso(dir.path(), doc.as_bytes());
    drop(doc);

    let small_dir = dir.path().join("small");
    fs::create_dir(&small_dir).unwrap();
    let small = config2_iso(
        &small_dir,
        b"#cloud-config\nwrite_files:\n  - path: /srv/big\n    encoding: b64\n    content: |\n      eA==\n",
    );
    let root = target_root();
    let (o, base) = run_measured(&small, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));

    let root = target_root();
    let (o, rss) = run_measured(&iso, root.path(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(fs::read(root.path().join("srv/big")).unwrap() == binary);
    // The decoded content is never held: not the document, not the block, not the file.
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a 32 MiB write_files entry, {base} KiB with a small one"
    );
}

#[test]
fn an_empty_content_after_a_carved_block_stays_empty() {
    // A carved document (over 1 MiB) whose later entry has an empty content (`''`, `""`, an
    // empty block): an empty string never names a carved block. It took the block already
    // taken — a 0600 secret written again as the 0644 empty file (review of h8-carve).
    let body: String = (0..60_000)
        .map(|i| format!("      secret line {i:05}\n"))
        .collect();
    let user_data = format!(
        "#cloud-config\nwrite_files:\n  - path: /srv/secret\n    permissions: '0600'\n    \
         content: |\n{body}  - path: /srv/empty1\n    content: ''\n  - path: /srv/empty2\n    \
         content: \"\"\n  - path: /srv/empty3\n    content: |\n  - path: /srv/after\n    \
         content: x\n"
    );
    assert!(user_data.len() > 1 << 20);
    let src = seed(&user_data);
    let r = target_root();
    let (o, _) = run(src.path(), r.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let secret = fs::read(r.path().join("srv/secret")).unwrap();
    assert_eq!(secret.len(), 60_000 * 18);
    for f in ["srv/empty1", "srv/empty2", "srv/empty3"] {
        assert_eq!(
            fs::read(r.path().join(f)).unwrap().len(),
            0,
            "{f} holds another entry's content"
        );
    }
    assert_eq!(fs::read(r.path().join("srv/after")).unwrap(), b"x");
}
