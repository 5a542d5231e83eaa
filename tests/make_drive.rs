//! `primer make-drive`: every format read back by primer (`show --json` says what the
//! description says) and the ISO9660 images by independent readers (isoinfo with Rock Ridge
//! and with Joliet, xorriso, blkid), contents byte for byte; names as nova's genisoimage writes
//! them; byte-identical output; Ironic's packed form; descriptions refused naming the field.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const EPOCH: &str = "1700000000";

fn make(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_primer"))
        .arg("make-drive")
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("run primer")
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", text(o));
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn tool(prog: &str, args: &[&str]) -> String {
    require_tool(prog);
    let o = Command::new(prog).args(args).output().expect(prog);
    assert!(o.status.success(), "{prog} {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A description with every field, its inputs beside it.
fn description(dir: &Path, name: &str, extra: &str) -> PathBuf {
    fs::write(
        dir.join("user-data.yaml"),
        "#cloud-config\nruncmd: [echo hi]\n",
    )
    .unwrap();
    fs::write(dir.join("motd"), "welcome\n").unwrap();
    fs::write(
        dir.join("network_data.json"),
        r#"{"links":[{"id":"eth0","type":"phy","ethernet_mac_address":"52:54:00:12:34:56"}],
            "networks":[{"id":"n0","link":"eth0","type":"ipv4","ip_address":"192.0.2.10",
            "netmask":"255.255.255.0","routes":[{"network":"0.0.0.0","netmask":"0.0.0.0","gateway":"192.0.2.1"}]}],
            "services":[{"type":"dns","address":"192.0.2.53"}]}"#,
    )
    .unwrap();
    let p = dir.join(name);
    fs::write(
        &p,
        format!(
            "instance_id: 0a1b2c3d-0000-4000-8000-000000000001
hostname: node-1.example.org
public_keys:
  - {ED}
  - {ED2}
meta: {{role: web, tier: \"1\"}}
user_data: {{file: user-data.yaml}}
{extra}"
        ),
    )
    .unwrap();
    p
}

fn openstack_description(dir: &Path) -> PathBuf {
    description(
        dir,
        "node.yaml",
        "admin_pass: s3cret-pw
admin_username: ops
network: {file: network_data.json}
vendor_data: \"#cloud-config\\npackages: [jq]\\n\"
files:
  - {path: /etc/motd, content: {file: motd}}
  - {path: /etc/issue, content: \"inline\\n\"}
",
    )
}

/// `show --json` of an image.
fn show(img: &Path) -> serde_json::Value {
    let o = primer(&["show", "--json", "--source", s(img)]);
    ok(&o);
    json(&o)
}

/// Files and sizes as a reader lists them: `isoinfo -R|-J -l` output parsed.
fn isoinfo_listing(img: &Path, ext: &str) -> BTreeMap<String, u64> {
    let out = tool("isoinfo", &[ext, "-l", "-i", s(img)]);
    let mut dir = String::new();
    let mut files = BTreeMap::new();
    for line in out.lines() {
        if let Some(d) = line.strip_prefix("Directory listing of ") {
            dir = d.trim().to_string();
        } else if line.starts_with('-') {
            // mode links uid gid size date... [extent flags]  name
            let f: Vec<&str> = line.split_whitespace().collect();
            let size: u64 = f[4].parse().expect("size");
            let name = line.rsplit("]  ").next().expect("name").trim_end();
            files.insert(
                format!("{dir}{name}").trim_start_matches('/').to_string(),
                size,
            );
        }
    }
    files
}

/// Every regular file under `dir`: relative path -> bytes.
fn tree_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn xorriso_extract(img: &Path, to: &Path) -> BTreeMap<String, Vec<u8>> {
    require_tool("xorriso");
    let o = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev", s(img), "-extract", "/", s(to)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    tree_of(to)
}

#[test]
fn openstack_drive_reads_back_as_described_by_primer_and_every_reader() {
    let t = tempfile::tempdir().unwrap();
    let desc = openstack_description(t.path());
    let img = t.path().join("config-2.iso");
    ok(&make(&["--from", s(&desc), "--ec2", "-o", s(&img)]));

    // primer's own reader: the description, exactly.
    let v = show(&img);
    let i = &v["instance"];
    assert_eq!(v["label"], "config-2");
    assert_eq!(v["fstype"], "iso9660");
    assert_eq!(v["warnings"]["warnings"], serde_json::json!([]));
    assert_eq!(i["format"], "openstack");
    assert_eq!(i["version"], "2025-04-04");
    assert_eq!(i["instance_id"], "0a1b2c3d-0000-4000-8000-000000000001");
    assert_eq!(i["hostname"], "node-1.example.org");
    assert_eq!(i["ssh_keys"], serde_json::json!([ED, ED2]));
    assert_eq!(i["meta"], serde_json::json!({"role": "web", "tier": "1"}));
    assert_eq!(i["admin_pass"], "<redacted 9 bytes>");
    assert_eq!(i["admin_username"], "ops");
    assert_eq!(i["files"][0]["path"], "/etc/motd");
    assert_eq!(i["files"][1]["path"], "/etc/issue");
    assert_eq!(i["network"][0]["kind"], "openstack");
    assert_eq!(
        i["network"][0]["data"]["networks"][0]["ip_address"],
        "192.0.2.10"
    );
    assert!(v["instance"]["vendor_data"]
        .as_object()
        .is_some_and(|m| m.contains_key("vendor_data.json")));

    // Independent readers: Rock Ridge and Joliet names and sizes agree with each other and with
    // what xorriso extracts; contents byte for byte.
    let rr = isoinfo_listing(&img, "-R");
    let joliet = isoinfo_listing(&img, "-J");
    let x = xorriso_extract(&img, &t.path().join("x"));
    let sizes: BTreeMap<String, u64> = x.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
    assert_eq!(rr, sizes);
    assert_eq!(joliet, sizes);
    for v in [
        "2012-08-10",
        "2013-04-04",
        "2013-10-17",
        "2015-10-15",
        "2016-06-30",
        "2016-10-06",
        "2017-02-22",
        "2018-08-27",
        "2020-10-14",
        "2025-04-04",
        "latest",
    ] {
        assert_eq!(
            x[&format!("openstack/{v}/user_data")],
            b"#cloud-config\nruncmd: [echo hi]\n"
        );
        assert!(x.contains_key(&format!("openstack/{v}/meta_data.json")));
    }
    assert!(!x.contains_key("openstack/2012-08-10/network_data.json"));
    assert!(x.contains_key("openstack/2015-10-15/network_data.json"));
    assert_eq!(x["openstack/content/0000"], b"welcome\n");
    assert_eq!(x["openstack/content/0001"], b"inline\n");
    assert!(x.contains_key("ec2/latest/meta-data.json"));
    assert_eq!(
        x["ec2/2009-04-04/user-data"],
        x["openstack/latest/user_data"]
    );
    let md: serde_json::Value =
        serde_json::from_slice(&x["openstack/latest/meta_data.json"]).unwrap();
    assert_eq!(md["uuid"], "0a1b2c3d-0000-4000-8000-000000000001");
    assert_eq!(md["files"][0]["content_path"], "/content/0000");

    // blkid (libblkid's own prober): type and label.
    let b = tool("blkid", &["-p", "-o", "export", s(&img)]);
    assert!(b.contains("TYPE=iso9660"), "{b}");
    assert!(b.contains("LABEL=config-2"), "{b}");
}

#[test]
fn a_directory_is_copied_byte_for_byte_with_novas_genisoimage_names() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("tree");
    write_drive_tree(&src, &sample_meta("dir-host", &[ED]));
    // Names that exercise the level-1 rules: several dots, a dash, a long name, no extension.
    fs::write(src.join("a.b.c.d.txt"), "dots\n").unwrap();
    fs::write(src.join("meta-data"), "dash\n").unwrap();
    fs::write(
        src.join("averyveryveryverylongfilenamethatexceeds31chars.json"),
        "long\n",
    )
    .unwrap();
    fs::write(src.join("empty"), "").unwrap();
    // A file over several sectors with every byte value.
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(src.join("openstack/content/0001"), &big).unwrap();
    let img = t.path().join("dir.iso");
    ok(&make(&[
        "--dir",
        s(&src),
        "--label",
        "config-2",
        "-o",
        s(&img),
    ]));

    assert_eq!(xorriso_extract(&img, &t.path().join("x")), tree_of(&src));

    // The plain ISO9660 names (no Rock Ridge, no Joliet) are the ones genisoimage writes with
    // nova's flags for the same tree.
    let nova = t.path().join("nova.iso");
    make_iso(&src, &nova, IsoTool::Nova);
    let names = |img: &Path| -> Vec<String> {
        tool("isoinfo", &["-l", "-i", s(img)])
            .lines()
            .filter(|l| l.starts_with('-') || l.starts_with('d') || l.starts_with("Directory"))
            .map(|l| match l.rsplit_once("]  ") {
                Some((_, n)) => n.trim_end().to_string(),
                None => l.trim_end().to_string(),
            })
            .collect()
    };
    assert_eq!(names(&img), names(&nova));

    // primer reads the image as it reads the directory.
    let a = show(&img);
    let b = show(&src);
    assert_eq!(a["instance"], b["instance"]);
    assert_eq!(a["file_sha256"], b["file_sha256"]);
}

#[test]
fn cloudstack_nocloud_and_ovf_drives_read_back_with_their_labels() {
    let t = tempfile::tempdir().unwrap();
    let nc = t.path().join("nocloud.yaml");
    fs::write(
        &nc,
        format!(
            "instance_id: nc-1\nhostname: seed-host\npublic_keys: [\"{ED}\"]\n\
             user_data: \"#!/bin/sh\\necho hi\\n\"\nvendor_data: \"#cloud-config\\n{{}}\\n\"\n\
             network: {{version: 2, ethernets: {{eth0: {{dhcp4: true}}}}}}\n"
        ),
    )
    .unwrap();
    let cs = description(
        t.path(),
        "cs.yaml",
        "admin_pass: Cl0udStack-pw\nnetwork: {file: network_data.json}\n",
    );
    let ovf = description(
        t.path(),
        "ovf.yaml",
        "admin_pass: ovf-pw\nadmin_username: ovfadmin\nnetwork: {version: 1, config: [{type: physical, name: eth0, subnets: [{type: dhcp}]}]}\n",
    );
    for (desc, format, label, extra) in [
        (&cs, "cloudstack", "config-2", vec![]),
        (
            &cs,
            "cloudstack",
            "config-2",
            vec!["--cloudstack-names", "underscore"],
        ),
        (&nc, "nocloud", "cidata", vec![]),
        (&ovf, "ovf", "OVF ENV", vec![]),
    ] {
        let img = t.path().join(format!("{format}.iso"));
        let mut args = vec!["--from", s(desc), "--format", format, "-o", s(&img)];
        args.extend(extra.iter().copied());
        ok(&make(&args));
        let v = show(&img);
        let i = &v["instance"];
        assert_eq!(v["label"], label, "{format}");
        assert_eq!(i["format"], format);
        assert_eq!(v["warnings"]["warnings"], serde_json::json!([]), "{format}");
        let want_id = if format == "nocloud" {
            "nc-1"
        } else {
            "0a1b2c3d-0000-4000-8000-000000000001"
        };
        assert_eq!(i["instance_id"], want_id, "{format}");
        assert!(
            i["ssh_keys"].as_array().is_some_and(|k| k[0] == ED),
            "{format}"
        );
        assert_eq!(i["network"].as_array().map(Vec::len), Some(1), "{format}");
        let b = tool("blkid", &["-p", "-o", "export", s(&img)]);
        assert!(
            b.contains(&format!("LABEL={label}"))
                || b.contains(&format!("LABEL=\"{label}\""))
                || b.contains(&format!("LABEL={}", label.replace(' ', "\\ "))),
            "{format}: {b}"
        );
        match format {
            "cloudstack" => {
                assert_eq!(i["admin_pass"], "<redacted 13 bytes>");
                let names = isoinfo_listing(&img, "-R");
                let spelled = if extra.is_empty() {
                    "cloudstack/metadata/instance-id.txt"
                } else {
                    "cloudstack/metadata/instance_id.txt"
                };
                assert!(names.contains_key(spelled), "{names:?}");
            }
            "nocloud" => {
                assert_eq!(i["hostname"], "seed-host");
                assert_eq!(i["network"][0]["kind"], "v2");
            }
            "ovf" => {
                assert_eq!(i["admin_pass"], "<redacted 6 bytes>");
                assert_eq!(i["admin_username"], "ovfadmin");
                assert_eq!(i["meta"]["role"], "web");
                assert_eq!(i["network"][0]["kind"], "v1");
            }
            _ => unreachable!(),
        }
    }
    // The same formats on VFAT: the FAT label (upper case) for blkid, mdir and primer, fsck
    // clean, and Ironic's packed form of a VFAT image is that image gzipped then base64.
    let os = openstack_description(t.path());
    for (desc, format, label) in [
        (&os, "openstack", "CONFIG-2"),
        (&cs, "cloudstack", "CONFIG-2"),
        (&nc, "nocloud", "CIDATA"),
        (&ovf, "ovf", "OVF ENV"),
    ] {
        let img = t.path().join(format!("{format}.vfat"));
        ok(&make(&[
            "--from",
            s(desc),
            "--format",
            format,
            "--filesystem",
            "vfat",
            "-o",
            s(&img),
        ]));
        let v = show(&img);
        assert_eq!(v["fstype"], "vfat", "{format}");
        assert_eq!(v["label"], label, "{format}");
        assert_eq!(v["instance"]["format"], format);
        assert_eq!(v["warnings"]["warnings"], serde_json::json!([]), "{format}");
        let b = tool("blkid", &["-p", "-o", "export", s(&img)]);
        let quoted = label.replace(' ', "\\ ");
        assert!(b.contains("TYPE=vfat"), "{format}: {b}");
        assert!(
            b.contains(&format!("LABEL={quoted}\n"))
                && b.contains(&format!("LABEL_FATBOOT={quoted}\n")),
            "{format}: {b}"
        );
        require_tool("mdir");
        let o = Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", s(&img), "::/"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{format}: {}", text(&o));
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(
            listing.contains(&format!("Volume in drive : is {label}")),
            "{format}: {listing}"
        );
        require_tool("fsck.vfat");
        let o = Command::new("fsck.vfat")
            .args(["-n", s(&img)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{format}: {}", text(&o));
        let o = make(&[
            "--from",
            s(desc),
            "--format",
            format,
            "--filesystem",
            "vfat",
            "--packed",
            "-o",
            "-",
        ]);
        ok(&o);
        use base64::Engine;
        use std::io::Read;
        let gz = base64::engine::general_purpose::STANDARD
            .decode(&o.stdout)
            .expect("base64");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("gzip");
        assert!(back == fs::read(&img).unwrap(), "{format}: packed VFAT");
    }
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let desc = openstack_description(t.path());
    let a = t.path().join("a.iso");
    let b = t.path().join("b.iso");
    ok(&make(&["--from", s(&desc), "-o", s(&a)]));
    ok(&make(&["--from", s(&desc), "-o", s(&b)]));
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    // --deterministic without SOURCE_DATE_EPOCH: time 0, still identical.
    let run = |out: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_primer"))
            .args([
                "make-drive",
                "--deterministic",
                "--from",
                s(&desc),
                "-o",
                s(out),
            ])
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        ok(&o);
        fs::read(out).unwrap()
    };
    let c = run(&t.path().join("c.iso"));
    assert_eq!(c, run(&t.path().join("d.iso")));
    assert_ne!(c, fs::read(&a).unwrap(), "SOURCE_DATE_EPOCH is stamped");
    let info = tool("isoinfo", &["-d", "-i", s(&a)]);
    assert!(info.contains("Volume id: config-2"), "{info}");
}

#[test]
fn packed_form_is_the_image_gzipped_then_base64() {
    use base64::Engine;
    use std::io::Read;
    let t = tempfile::tempdir().unwrap();
    let desc = openstack_description(t.path());
    let raw = t.path().join("raw.iso");
    ok(&make(&["--from", s(&desc), "-o", s(&raw)]));
    let packed = t.path().join("configdrive");
    ok(&make(&["--from", s(&desc), "--packed", "-o", s(&packed)]));
    let text = fs::read(&packed).unwrap();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .expect("base64");
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut back)
        .expect("gzip");
    assert_eq!(back, fs::read(&raw).unwrap());
    // To standard output as well, identical.
    let o = make(&["--from", s(&desc), "--packed", "-o", "-"]);
    ok(&o);
    assert_eq!(o.stdout, text);
}

#[test]
fn a_wrong_description_is_refused_naming_the_field_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("instance_id: \"a\\nb\"\n", "openstack", "instance_id"),
        ("instance_id: i-1\nhostname: bad_host\n", "openstack", "hostname"),
        (
            "instance_id: i-1\npublic_keys: [\"ssh-ed25519 AAAA\"]\n",
            "openstack",
            "public_keys[0]",
        ),
        (
            "instance_id: i-1\npublic_keys: {admin: \"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"}\n",
            "openstack",
            "public_keys.admin",
        ),
        ("instance_id: i-1\nmeta: {k: \"v\\r\"}\n", "openstack", "meta.k"),
        ("instance_id: i-1\nadmin_pass: pw\n", "nocloud", "admin_pass"),
        (
            "instance_id: i-1\nfiles: [{path: etc/x, content: x}]\n",
            "openstack",
            "files[0].path",
        ),
        (
            "instance_id: i-1\nnetwork: {version: 2, ethernets: {e0: {dhcp4: true}}}\n",
            "openstack",
            "network",
        ),
        (
            "instance_id: i-1\nnetwork: {links: [{id: a, type: vlan, vlan_link: nowhere, vlan_id: 5}], networks: []}\n",
            "openstack",
            "network",
        ),
        ("instance_id: i-1\nuser_data: {file: missing.txt}\n", "openstack", "user_data"),
        ("instance_id: i-1\nhostnmae: typo\n", "openstack", "hostnmae"),
    ];
    for (i, (yaml, format, field)) in cases.iter().enumerate() {
        let d = t.path().join(format!("d{i}.yaml"));
        fs::write(&d, yaml).unwrap();
        let img = t.path().join(format!("d{i}.iso"));
        let o = make(&["--from", s(&d), "--format", format, "-o", s(&img)]);
        assert_eq!(o.status.code(), Some(1), "{yaml}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(field), "{yaml}: expected {field} in: {err}");
        assert!(!img.exists(), "{yaml}: an image was written");
        assert!(
            fs::read_dir(t.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("primer-tmp")),
            "a temporary file was left"
        );
    }
}

/// Every file of a FAT image as mtools reads it: `mcopy -s` of the whole volume.
fn mtools_extract(img: &Path, to: &Path) -> BTreeMap<String, Vec<u8>> {
    require_tool("mcopy");
    fs::create_dir_all(to).unwrap();
    let o = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-n", "-i", s(img), "::/", s(to)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    tree_of(to)
}

#[test]
fn vfat_images_of_every_fat_type_and_sector_size_pass_fsck_and_read_back() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("tree");
    write_drive_tree(&src, &sample_meta("fat-host", &[ED]));
    fs::write(
        src.join("averyveryveryverylongfilenamethatexceeds31chars.json"),
        "long\n",
    )
    .unwrap();
    fs::write(src.join("README.TXT"), "an exact 8.3 name\n").unwrap();
    fs::write(src.join("empty"), "").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    fs::write(src.join("openstack/content/0001"), &big).unwrap();
    let want = tree_of(&src);
    let from_dir = show(&src);
    for (sector, size, fat) in [
        ("512", None, "FAT12"),
        ("512", Some("40M"), "FAT16"),
        ("512", Some("600M"), "FAT32"),
        ("4096", None, "FAT12"),
        ("4096", Some("64M"), "FAT16"),
        ("4096", Some("600M"), "FAT32"),
    ] {
        let case = format!("{sector}-{fat}");
        let img = t.path().join(format!("{case}.img"));
        let mut args = vec![
            "--dir",
            s(&src),
            "--filesystem",
            "vfat",
            "--label",
            "CONFIG-2",
            "--sector-size",
            sector,
            "-o",
            s(&img),
        ];
        if let Some(sz) = size {
            args.extend(["--size", sz]);
        }
        ok(&make(&args));
        require_tool("fsck.vfat");
        let o = Command::new("fsck.vfat")
            .args(["-n", s(&img)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{case}: {}", text(&o));
        let b = tool("blkid", &["-p", "-o", "export", s(&img)]);
        assert!(b.contains("TYPE=vfat"), "{case}: {b}");
        assert!(b.contains(&format!("VERSION={fat}")), "{case}: {b}");
        assert!(
            b.contains("LABEL=CONFIG-2") && b.contains("LABEL_FATBOOT=CONFIG-2"),
            "{case}: {b}"
        );
        assert!(b.contains(&format!("BLOCK_SIZE={sector}")), "{case}: {b}");
        assert_eq!(mtools_extract(&img, &t.path().join(&case)), want, "{case}");
        let v = show(&img);
        assert_eq!(v["fstype"], "vfat", "{case}");
        assert_eq!(v["label"], "CONFIG-2", "{case}");
        assert_eq!(v["instance"], from_dir["instance"], "{case}");
        assert_eq!(v["file_sha256"], from_dir["file_sha256"], "{case}");
    }
    // Described drives too, with the format's FAT label.
    let desc = openstack_description(t.path());
    let img = t.path().join("described.img");
    ok(&make(&[
        "--from",
        s(&desc),
        "--filesystem",
        "vfat",
        "-o",
        s(&img),
    ]));
    let v = show(&img);
    assert_eq!(v["label"], "CONFIG-2");
    assert_eq!(v["instance"]["hostname"], "node-1.example.org");
    let img2 = t.path().join("described2.img");
    ok(&make(&[
        "--from",
        s(&desc),
        "--filesystem",
        "vfat",
        "-o",
        s(&img2),
    ]));
    assert_eq!(
        fs::read(&img).unwrap(),
        fs::read(&img2).unwrap(),
        "reproducible"
    );
    // A size that cannot hold the files is refused before anything is written.
    let small = t.path().join("small.img");
    let o = make(&[
        "--dir",
        s(&src),
        "--filesystem",
        "vfat",
        "--size",
        "64K",
        "-o",
        s(&small),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--size"),
        "{}",
        text(&o)
    );
    assert!(!small.exists());
}

fn sfdisk_parts(disk: &Path) -> Vec<String> {
    tool("sfdisk", &["--dump", s(disk)])
        .lines()
        .filter(|l| l.contains(" : start="))
        .map(|l| {
            l.split_once(" : ")
                .map(|(_, r)| r.to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn into_a_disk_image_the_partition_goes_where_ironic_puts_it() {
    require_tool("sgdisk");
    let t = tempfile::tempdir().unwrap();
    let desc = openstack_description(t.path());
    // A GPT disk with a root partition, then grown (the backup header is no longer at the end).
    let gpt = t.path().join("gpt.img");
    let f = fs::File::create(&gpt).unwrap();
    f.set_len(200 << 20).unwrap();
    tool("sgdisk", &["-n", "1:2048:+100M", "-t", "1:8300", s(&gpt)]);
    f.set_len(300 << 20).unwrap();
    let ironic = t.path().join("ironic.img");
    fs::copy(&gpt, &ironic).unwrap();
    ok(&make(&["--from", s(&desc), "--into", s(&gpt)]));
    // Ironic's own steps on the same disk: move the backup header, `sgdisk -n 0:-64MB:0`.
    tool("sgdisk", &["-e", s(&ironic)]);
    tool("sgdisk", &["-n", "0:-64MB:0", s(&ironic)]);
    let ours = sfdisk_parts(&gpt);
    let theirs = sfdisk_parts(&ironic);
    assert_eq!(ours.len(), 2, "{ours:?}");
    let geometry = |p: &str| p.split(", type=").next().unwrap_or("").to_string();
    assert_eq!(
        geometry(&ours[1]),
        geometry(&theirs[1]),
        "{ours:?} vs {theirs:?}"
    );
    assert!(
        ours[1].contains("type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        "{ours:?}"
    );
    let v = tool("sgdisk", &["-v", s(&gpt)]);
    assert!(v.contains("No problems found"), "{v}");
    // libblkid probing the partition itself: the ISO and its label.
    let start = |part: &str| -> String {
        let sectors: u64 = part
            .split("start=")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .expect("start");
        (sectors * 512).to_string()
    };
    let b = tool(
        "blkid",
        &["-p", "-O", &start(&ours[1]), "-o", "export", s(&gpt)],
    );
    assert!(
        b.contains("TYPE=iso9660") && b.contains("LABEL=config-2"),
        "{b}"
    );
    let shown = show(&gpt);
    assert_eq!(shown["device"], format!("{} partition 2", s(&gpt)));
    assert_eq!(shown["label"], "config-2");
    assert_eq!(shown["instance"]["hostname"], "node-1.example.org");

    // SOURCE_DATE_EPOCH makes the partition GUID reproducible; the disk bytes are identical.
    let fresh = |p: &Path| {
        let f = fs::File::create(p).unwrap();
        f.set_len(200 << 20).unwrap();
        tool(
            "sgdisk",
            &[
                "-n",
                "1:2048:+100M",
                "-U",
                "11111111-2222-3333-4444-555555555555",
                "-u",
                "1:66666666-7777-8888-9999-000000000000",
                s(p),
            ],
        );
    };
    let (a, b) = (t.path().join("a.img"), t.path().join("b.img"));
    fresh(&a);
    fresh(&b);
    ok(&make(&[
        "--from",
        s(&desc),
        "--filesystem",
        "vfat",
        "--into",
        s(&a),
    ]));
    ok(&make(&[
        "--from",
        s(&desc),
        "--filesystem",
        "vfat",
        "--into",
        s(&b),
    ]));
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert_eq!(show(&a)["fstype"], "vfat");

    // MBR: a primary of type 0x0c at the end; refused when four primaries exist.
    let mbr = t.path().join("mbr.img");
    fs::File::create(&mbr).unwrap().set_len(200 << 20).unwrap();
    let sf = |disk: &Path, script: &str| {
        use std::io::Write;
        let mut c = Command::new("sfdisk")
            .args(["-q", s(disk)])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
    };
    sf(&mbr, "label: dos\n2048,100M,83\n");
    ok(&make(&[
        "--from",
        s(&desc),
        "--filesystem",
        "vfat",
        "--into",
        s(&mbr),
    ]));
    let parts = sfdisk_parts(&mbr);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[1], "start=      278528, size=      131072, type=c");
    let b = tool(
        "blkid",
        &["-p", "-O", &start(&parts[1]), "-o", "export", s(&mbr)],
    );
    assert!(
        b.contains("TYPE=vfat") && b.contains("LABEL=CONFIG-2"),
        "{b}"
    );
    let shown = show(&mbr);
    assert_eq!(shown["label"], "CONFIG-2");
    assert_eq!(
        shown["instance"]["instance_id"],
        "0a1b2c3d-0000-4000-8000-000000000001"
    );
    let full = t.path().join("full.img");
    fs::File::create(&full).unwrap().set_len(200 << 20).unwrap();
    sf(
        &full,
        "label: dos\n2048,20M,83\n,20M,83\n,20M,83\n,20M,83\n",
    );
    let before = fs::read(&full).unwrap();
    let o = make(&["--from", s(&desc), "--into", s(&full)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("four MBR primary"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read(&full).unwrap(), before, "nothing written");
    // Too little free space: refused, nothing written.
    let tight = t.path().join("tight.img");
    fs::File::create(&tight)
        .unwrap()
        .set_len(120 << 20)
        .unwrap();
    tool("sgdisk", &["-n", "1:2048:+100M", s(&tight)]);
    let before = fs::read(&tight).unwrap();
    let o = make(&["--from", s(&desc), "--into", s(&tight)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot hold"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read(&tight).unwrap(), before, "nothing written");
}

#[test]
fn a_60_mib_drive_is_streamed_in_bounded_memory() {
    require_tool("/usr/bin/time");
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("tree");
    write_drive_tree(&src, &sample_meta("big-host", &[ED]));
    let big: Vec<u8> = (0..60u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("openstack/content/0001"), &big).unwrap();
    drop(big);
    for (fs_name, extra) in [
        ("iso9660", vec![]),
        ("vfat", vec![]),
        ("iso9660", vec!["--packed"]),
    ] {
        let out = t.path().join(format!("big.{fs_name}"));
        let mut args = vec![
            "-f",
            "%M",
            env!("CARGO_BIN_EXE_primer"),
            "make-drive",
            "--dir",
            s(&src),
            "--filesystem",
            fs_name,
            "--label",
            "config-2",
            "-o",
            s(&out),
        ];
        args.extend(extra.iter().copied());
        let o = Command::new("/usr/bin/time").args(&args).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let kib: u64 = err
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("max RSS");
        // The 60 MiB file is copied through a small buffer, never held.
        assert!(kib < 32 * 1024, "{fs_name} {extra:?}: peak RSS {kib} KiB");
        if extra.is_empty() {
            assert!(fs::metadata(&out).unwrap().len() > 60 << 20);
        }
    }
}

#[test]
fn help_teaches_with_examples_and_a_description() {
    let o = primer(&["make-drive", "--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let h = String::from_utf8_lossy(&o.stdout);
    for want in [
        "primer make-drive --from node.yaml --output config-2.iso",
        "--into disk.img",
        "--packed",
        "SOURCE_DATE_EPOCH",
        "instance_id:",
        "public_keys:",
    ] {
        assert!(h.contains(want), "{want}: {h}");
    }
    // Neither --output nor --into: a usage error, nothing written.
    let o = primer(&["make-drive", "--from", "x.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// A name of `n` bytes, unique by its prefix: `n101-xxxx…`.
fn long_name(n: usize) -> String {
    let mut s = format!("n{n}-");
    while s.len() < n {
        s.push('x');
    }
    s
}

#[test]
fn rock_ridge_names_up_to_name_max_continue_in_ce_areas_and_read_back_everywhere() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("tree");
    write_drive_tree(&src, &sample_meta("long-names", &[ED]));
    // 101 and 200 bytes (past what one record holds), 255 (Linux NAME_MAX: two NM entries),
    // at the top, in a subdirectory and under a directory with a long name itself; twelve
    // 255-byte names in one directory need continuation areas in more than one sector.
    let dir_name = format!("dir-{}", long_name(196));
    let long_dir = src.join(&dir_name);
    fs::create_dir_all(&long_dir).unwrap();
    fs::create_dir_all(src.join("many")).unwrap();
    for n in [101, 200, 255] {
        fs::write(src.join(long_name(n)), format!("top {n}\n")).unwrap();
        fs::write(
            src.join("openstack").join(long_name(n)),
            format!("os {n}\n"),
        )
        .unwrap();
        fs::write(long_dir.join(long_name(n)), format!("deep {n}\n")).unwrap();
    }
    for i in 0..12 {
        let name = format!("{i:02}{}", &long_name(253));
        fs::write(src.join("many").join(name), format!("many {i}\n")).unwrap();
    }
    let img = t.path().join("long.iso");
    ok(&make(&[
        "--dir",
        s(&src),
        "--label",
        "config-2",
        "-o",
        s(&img),
    ]));
    let want = tree_of(&src);
    assert!(want.keys().any(|k| k.ends_with(&long_name(255))));

    // xorriso: every name and every byte.
    assert_eq!(xorriso_extract(&img, &t.path().join("x")), want);
    let found = tool("xorriso", &["-indev", s(&img), "-find", "/", "-type", "f"]);
    let found: std::collections::BTreeSet<String> = found
        .lines()
        .map(|l| l.trim_matches('\'').trim_start_matches('/').to_string())
        .collect();
    assert_eq!(found, want.keys().cloned().collect());
    // isoinfo -R: names and sizes.
    let sizes: BTreeMap<String, u64> = want
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as u64))
        .collect();
    assert_eq!(isoinfo_listing(&img, "-R"), sizes);
    // isoinfo -J: Joliet names are cut to 64 characters (genisoimage without -joliet-long),
    // still unique: the twelve names of `many/` differ in their first two characters.
    let joliet = isoinfo_listing(&img, "-J");
    assert_eq!(joliet.len(), sizes.len(), "{joliet:?}");
    for name in joliet.keys() {
        for part in name.split('/') {
            assert!(part.chars().count() <= 64, "{name}");
        }
    }
    // primer's own reader: the same files and digests as from the directory.
    let a = show(&img);
    let b = show(&src);
    assert_eq!(a["file_sha256"], b["file_sha256"]);
    let listed = a["file_sha256"].as_object().unwrap();
    assert!(
        listed.contains_key(&format!("{dir_name}/{}", long_name(255))),
        "{listed:?}"
    );
    assert_eq!(a["instance"], b["instance"]);

    // A name longer than NAME_MAX is refused before anything is written.
    let bad = t.path().join("bad");
    fs::create_dir_all(&bad).unwrap();
    let name = long_name(256);
    if fs::write(bad.join(&name), "x").is_ok() {
        let out = t.path().join("bad.iso");
        let o = make(&["--dir", s(&bad), "-o", s(&out)]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(!out.exists());
    }
}

/// Finds `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern in image")
}

fn both32(v: u32) -> Vec<u8> {
    let mut o = v.to_le_bytes().to_vec();
    o.extend_from_slice(&v.to_be_bytes());
    o
}

#[test]
fn a_continuation_loop_or_one_beyond_the_image_is_an_error_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("tree");
    write_drive_tree(&src, &sample_meta("ce", &[ED]));
    fs::write(src.join(long_name(255)), "x\n").unwrap();
    let img = t.path().join("ce.iso");
    ok(&make(&[
        "--dir",
        s(&src),
        "--label",
        "config-2",
        "-o",
        s(&img),
    ]));
    let good = fs::read(&img).unwrap();
    // The continuation area: the first NM entry of the long name (250 bytes, CONTINUE).
    let mut nm = vec![b'N', b'M', 255, 1, 1];
    nm.extend_from_slice(long_name(255).as_bytes().get(..20).unwrap());
    let area = find(&good, &nm);
    let (block, offset) = ((area / 2048) as u32, (area % 2048) as u32);
    // The record's CE entry pointing at it.
    let mut ce = vec![b'C', b'E', 28, 1];
    ce.extend(both32(block));
    ce.extend(both32(offset));
    let at = find(&good, &ce);

    // (1) The area names itself as its continuation: followed 32 times, then refused.
    let mut looped = good.clone();
    let mut self_ce = ce.clone();
    self_ce.extend(both32(28));
    looped[area..area + 265].fill(0);
    looped[area..area + 28].copy_from_slice(&self_ce);
    // (2) The record's CE points past the end of the image.
    let mut beyond = good.clone();
    beyond[at + 4..at + 12].copy_from_slice(&both32(1 << 30));
    for (case, bytes, why) in [
        ("loop", looped, "continuation areas"),
        ("beyond", beyond, "beyond the end of the device"),
    ] {
        let p = t.path().join(format!("{case}.iso"));
        fs::write(&p, bytes).unwrap();
        let o = primer(&["show", "--json", "--source", s(&p)]);
        assert_eq!(o.status.code(), Some(1), "{case}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        // Named by device and by the record's ISO name (its Rock Ridge name is what broke).
        assert!(err.contains(s(&p)), "{case}: {err}");
        assert!(err.contains("n255_xxxx"), "{case}: {err}");
        assert!(err.contains(why), "{case}: {err}");
        assert!(!err.contains("panicked"), "{case}: {err}");
    }
}
