//! Gzip'd user data is decompressed while streamed, never held (issue 15, bounded memory): a
//! 32 MiB script and a cloud-config with a 32 MiB `write_files` block, gzip'd on a genisoimage
//! ISO attached as a read-only loop device, are written byte for byte with a peak RSS that does
//! not grow with them; a gzip bomb is the warning it always was; a drive whose bytes change
//! after the read fails the write, naming the file.

mod common;

use std::fs;
use std::io::Write;

use common::*;

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// About `len` bytes of comment lines gzip shrinks only to about half (so the gzip'd file is
/// large enough to stay on the device), after `first`.
fn lines(first: &str, len: usize, indent: &str) -> Vec<u8> {
    let mut s = first.as_bytes().to_vec();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while s.len() + 80 < len {
        s.extend_from_slice(format!("{indent}# ").as_bytes());
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.extend_from_slice(format!("{x:016x}").as_bytes());
        }
        s.push(b'\n');
    }
    s
}

#[test]
fn a_gzipped_32_mib_script_on_a_loop_device_is_streamed_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (_, base, _) = iso_first_run(dir.path(), "small", &gz(b"#!/bin/sh\ntrue\n"));

    let mut script = lines("#!/bin/sh\n", 32 << 20, "");
    script.extend_from_slice(b"true\n");
    let ud = gz(&script);
    assert!(ud.len() > 2 << 20, "the gzip'd file stays on the device");
    let (root, rss, _) = iso_first_run(dir.path(), "big", &ud);
    let inst = root.path().join("var/lib/primer/instance").join(ID);
    assert!(fs::read(inst.join("scripts/20-user-part-001")).unwrap() == script);
    assert!(fs::read(inst.join("drive/openstack/latest/user_data")).unwrap() == ud);
    // Decompressed in memory, the script alone would add 32 MiB (and the gzip'd file its size).
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a gzip'd 32 MiB script, {base} KiB with a one-line script"
    );
}

#[test]
fn a_gzipped_cloud_config_with_a_32_mib_write_files_block_is_carved_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (_, base, _) = iso_first_run(
        dir.path(),
        "small",
        &gz(b"#cloud-config\nwrite_files:\n  - path: /srv/big\n    content: |\n      x\n"),
    );

    let block = lines("", 32 << 20, "      ");
    let mut doc =
        b"#cloud-config\nhostname: zipped\nwrite_files:\n  - path: /srv/big\n    content: |\n"
            .to_vec();
    doc.extend_from_slice(&block);
    doc.extend_from_slice(b"    permissions: '0600'\n");
    let want: Vec<u8> = block
        .split_inclusive(|&c| c == b'\n')
        .flat_map(|l| l.get(6..).unwrap_or_default().iter().copied())
        .collect();
    let ud = gz(&doc);
    drop(doc);
    let (root, rss, _) = iso_first_run(dir.path(), "big", &ud);
    assert!(fs::read(root.path().join("srv/big")).unwrap() == want);
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a gzip'd 32 MiB write_files block, {base} KiB with a small one"
    );
}

#[test]
fn a_gzip_bomb_is_the_same_warning_and_never_held() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (_, base, _) = iso_first_run(dir.path(), "small", &gz(b"#!/bin/sh\ntrue\n"));
    // One byte over the 64 MiB cap, in about 64 KiB.
    let mut bomb = b"#!/bin/sh\n".to_vec();
    bomb.resize((64 << 20) + 1, b'#');
    let ud = gz(&bomb);
    drop(bomb);
    let (root, rss, out) = iso_first_run(dir.path(), "bomb", &ud);
    assert!(
        out.contains("gzip: decompresses to more than 67108864 bytes (limit); ignored as a possible gzip bomb"),
        "{out}"
    );
    let scripts = root
        .path()
        .join("var/lib/primer/instance")
        .join(ID)
        .join("scripts");
    assert!(!scripts.join("20-user-part-001").exists());
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a bomb, {base} KiB without"
    );
}

#[test]
fn a_gzipped_script_changed_on_the_device_after_the_read_fails_naming_the_file() {
    use primer::apply::Outcome;

    let dir = tempfile::tempdir().unwrap();
    let mut script = lines("#!/bin/sh\n", 4 << 20, "");
    script.extend_from_slice(b"true\n");
    let ud = gz(&script);
    assert!(
        ud.len() > (3 << 20) / 2,
        "the gzip'd file stays on the device"
    );
    let iso = config2_iso(dir.path(), &ud);
    let root = scratch_root();
    let (_loaded, plan) = plan_deferred(&iso, root.path());

    // One byte of the gzip'd file changed in the image (each version's copy of it).
    let mut image = fs::read(&iso).unwrap();
    let probe = &ud[ud.len() / 2..ud.len() / 2 + 32];
    let at: Vec<usize> = image
        .windows(32)
        .enumerate()
        .filter(|(_, w)| *w == probe)
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "the gzip'd bytes in the image");
    for i in at {
        image[i] ^= 0x55;
    }
    fs::write(&iso, &image).unwrap();

    let report = apply_locked(&plan, root.path());
    let step = report
        .steps
        .iter()
        .find(|s| s.id.starts_with("script-file:"))
        .unwrap_or_else(|| panic!("no script step in {:?}", report.steps));
    assert_eq!(step.outcome, Outcome::Failed, "{step:?}");
    assert!(
        step.detail.contains("user_data\" (gunzip)") && step.detail.contains("changed"),
        "the file is not named: {step:?}"
    );
    let script_file = root
        .path()
        .join("var/lib/primer/instance")
        .join(ID)
        .join("scripts/20-user-part-001");
    assert!(!script_file.exists(), "the script was written");
}

/// A gzip'd MIME message of 48 MiB (a cloud-config part with a 24 MiB `write_files` block, a
/// 24 MiB script part) is split, its parts kept as recipes and the block carved, all from the
/// decompressing recipe: the file and the script are written exactly with a peak RSS within
/// 4 MiB of a small gzip'd message (decompressed in memory it was about three times the
/// message). Each part is decompressed again from the message's start when measured and where
/// used: the parts and blocks are few, within the bound on re-derivations.
#[test]
fn a_gzipped_mime_message_is_split_and_carved_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let message = |block: &[u8], script: &[u8]| {
        let mut m = b"Content-Type: multipart/mixed; boundary=\"==B==\"\nMIME-Version: 1.0\n\n\
--==B==\nContent-Type: text/cloud-config\n\n\
#cloud-config\nwrite_files:\n  - path: /srv/big\n    content: |\n"
            .to_vec();
        m.extend_from_slice(block);
        m.extend_from_slice(b"\n--==B==\nContent-Type: text/x-shellscript\n\n");
        m.extend_from_slice(script);
        m.extend_from_slice(b"\n--==B==--\n");
        m
    };
    let unindent = |block: &[u8]| -> Vec<u8> {
        block
            .split_inclusive(|&c| c == b'\n')
            .flat_map(|l| l.get(6..).unwrap_or_default().iter().copied())
            .collect()
    };
    let small_block = b"      x\n";
    let (_, base, _) = iso_first_run(
        dir.path(),
        "small",
        &gz(&message(small_block, b"#!/bin/sh\ntrue\n")),
    );

    let block = lines("", 24 << 20, "      ");
    let mut script = lines("#!/bin/sh\n", 24 << 20, "");
    script.extend_from_slice(b"true\n");
    let ud = gz(&message(&block, &script));
    assert!(ud.len() > 2 << 20, "the gzip'd file stays on the device");
    let (root, rss, _) = iso_first_run(dir.path(), "big", &ud);
    assert!(fs::read(root.path().join("srv/big")).unwrap() == unindent(&block));
    let inst = root.path().join("var/lib/primer/instance").join(ID);
    assert!(fs::read(inst.join("scripts/20-user-part-002")).unwrap() == script);
    assert!(
        rss < base + 4096,
        "peak RSS {rss} KiB with a gzip'd 48 MiB MIME message, {base} KiB with a small one"
    );
}
