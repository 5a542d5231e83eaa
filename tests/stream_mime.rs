//! A large MIME multipart user data (cloud-init's `write-mime-multipart` form) kept on the
//! device is split and decoded by streaming (issue 15, bounded memory): a 32 MiB shell-script
//! part, as it is, base64-encoded, or gzip'd then base64-encoded, next to a cloud-config part,
//! on a genisoimage ISO attached as a read-only loop device, is stored byte for byte with a
//! peak RSS that does not grow with it; hostile multiparts of that size give the in-memory
//! path's outcome.

mod common;

use std::fs;
use std::io::Write;

use common::*;

const ID: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";

/// A `write-mime-multipart` message: a cloud-config part writing a marker file, then the
/// script part, with `encoding` (`""`, `base64` or `gzip+base64`).
fn mime_user_data(script: &[u8], encoding: &str) -> Vec<u8> {
    use base64::Engine;
    let b64 = |data: &[u8]| {
        let s = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = Vec::with_capacity(s.len() + s.len() / 38);
        for line in s.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\n");
        }
        out
    };
    let (headers, body) = match encoding {
        "base64" => (
            "Content-Type: text/x-shellscript; charset=\"us-ascii\"\nContent-Transfer-Encoding: base64\n",
            b64(script),
        ),
        "gzip+base64" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(script).unwrap();
            (
                "Content-Type: application/x-gzip\nContent-Transfer-Encoding: base64\n",
                b64(&e.finish().unwrap()),
            )
        }
        _ => (
            "Content-Type: text/x-shellscript; charset=\"us-ascii\"\n",
            script.to_vec(),
        ),
    };
    let mut m = b"Content-Type: multipart/mixed; boundary=\"===============0123456789==\"\n\
MIME-Version: 1.0\n\n\
--===============0123456789==\n\
Content-Type: text/cloud-config; charset=\"us-ascii\"\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: 7bit\n\
Content-Disposition: attachment; filename=\"config.yaml\"\n\n\
#cloud-config\n\
write_files:\n  - path: /srv/mime-marker\n    content: |\n      from the cloud-config part\n\n\
--===============0123456789==\n"
        .to_vec();
    m.extend_from_slice(headers.as_bytes());
    m.extend_from_slice(b"MIME-Version: 1.0\n\n");
    m.extend_from_slice(&body);
    m.extend_from_slice(b"\n--===============0123456789==--\n");
    m
}

/// A first run from `source` into a fresh root under GNU time: it succeeds, stores the script
/// part byte for byte and the drive's user data as it is, and applies the cloud-config part.
fn first_run(
    source: impl AsRef<std::ffi::OsStr>,
    ud: &[u8],
    script: &[u8],
    dir: &std::path::Path,
) -> u64 {
    let root = scratch_root();
    // `write_files` resolves its owner (root) in the target's account files.
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    let (o, rss) = run_measured(source, root.path(), dir);
    assert!(o.status.success(), "{}", text(&o));
    let inst = root.path().join("var/lib/primer/instance").join(ID);
    assert!(
        fs::read(inst.join("scripts/20-user-part-002")).unwrap() == script,
        "the stored script differs from the drive's part"
    );
    // The local copy is the drive's, or the stand-in the secret scrub leaves when a byte
    // pattern in it looks like a password (random base64 of tens of MiB can hold one).
    let stored = fs::read(inst.join("drive/openstack/latest/user_data")).unwrap();
    assert!(
        stored == ud || stored.starts_with(b"# primer: openstack/latest/user_data held a password"),
        "the stored user data differs from the drive's ({} bytes, {} on the drive)",
        stored.len(),
        ud.len()
    );
    assert_eq!(
        fs::read_to_string(root.path().join("srv/mime-marker"))
            .ok()
            .as_deref(),
        Some("from the cloud-config part\n")
    );
    rss
}

#[test]
fn a_large_mime_user_data_on_a_loop_device_is_streamed_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();

    // The same message with a one-line script: what the process costs without a large part.
    let small_dir = dir.path().join("small");
    fs::create_dir(&small_dir).unwrap();
    let small_script = b"#!/bin/sh\ntrue\n";
    let small_ud = mime_user_data(small_script, "");
    let small = config2_iso(&small_dir, &small_ud);
    let small_dev = Loop::attach(&small);
    let base = first_run(&small_dev.dev, &small_ud, small_script, dir.path());

    // Hex noise, so that gzip'd it stays far above the size kept on the device (1 MiB).
    let script = noisy_script(32 << 20);
    for encoding in ["", "base64", "gzip+base64"] {
        let ud = mime_user_data(&script, encoding);
        let big_dir = dir.path().join(format!("big{}", encoding.len()));
        fs::create_dir(&big_dir).unwrap();
        let big = config2_iso(&big_dir, &ud);
        let dev = Loop::attach(&big);
        let rss = first_run(&dev.dev, &ud, &script, dir.path());
        // Held whole, the message alone would add 32 MiB or more; streamed, only chunks.
        assert!(
            rss < base + 4096,
            "{encoding:?}: peak RSS {rss} KiB with a 32 MiB script part, {base} KiB with a one-line one"
        );
        drop(dev);
        fs::remove_dir_all(&big_dir).unwrap();
    }
}

/// The file a large `write_files` literal block writes: `len` bytes of hex lines.
fn big_file(len: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(len + 80);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while s.len() + 66 < len {
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

/// A MIME user data whose cloud-config part (as it is, or `base64`) writes `file` to
/// `/srv/big` as a literal block and a small marker file, after a one-line script part.
fn config_part_message(file: &[u8], encoding: &str) -> Vec<u8> {
    use base64::Engine;
    let mut config = b"#cloud-config\nwrite_files:\n  - path: /srv/big\n    content: |\n".to_vec();
    for line in file.split_inclusive(|&c| c == b'\n') {
        config.extend_from_slice(b"      ");
        config.extend_from_slice(line);
    }
    config.extend_from_slice(
        b"  - path: /srv/mime-marker\n    content: |\n      from the cloud-config part\n",
    );
    let (header, body) = match encoding {
        "base64" => {
            let s = base64::engine::general_purpose::STANDARD.encode(&config);
            let mut out = Vec::with_capacity(s.len() + s.len() / 76 + 1);
            for line in s.as_bytes().chunks(76) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            ("Content-Transfer-Encoding: base64\n", out)
        }
        _ => ("", config),
    };
    let mut m = b"Content-Type: multipart/mixed; boundary=\"==B==\"\nMIME-Version: 1.0\n\n\
--==B==\nContent-Type: text/x-shellscript\n\n#!/bin/sh\ntrue\n\
--==B==\nContent-Type: text/cloud-config; charset=\"us-ascii\"\n"
        .to_vec();
    m.extend_from_slice(header.as_bytes());
    m.extend_from_slice(b"\n");
    m.extend_from_slice(&body);
    m.extend_from_slice(b"\n--==B==--\n");
    m
}

/// A first run from the loop device of an ISO holding `ud`: it succeeds and writes `file` to
/// `/srv/big` byte for byte, and the marker; the peak RSS (KiB).
fn config_part_run(dir: &std::path::Path, name: &str, ud: &[u8], file: &[u8]) -> u64 {
    let (root, rss, _) = iso_first_run(dir, name, ud);
    assert!(
        fs::read(root.path().join("srv/big")).unwrap() == file,
        "{name}: /srv/big differs from the block"
    );
    assert_eq!(
        fs::read_to_string(root.path().join("srv/mime-marker")).unwrap(),
        "from the cloud-config part\n",
        "{name}"
    );
    fs::remove_dir_all(dir.join(name)).unwrap();
    rss
}

/// A cloud-config part of 32 MiB (one `write_files` literal block), as it is or base64, is
/// carved out of the YAML parse: the file is written exactly, the peak RSS stays within 4 MiB
/// of the same message with a one-line block (held whole it was 4 to 6 times the part).
/// That the carved parse equals the whole parse is the unit tests' (`mime::stream_tests`).
#[test]
fn a_large_cloud_config_part_is_carved_with_bounded_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let small = big_file(100);
    let base = config_part_run(
        dir.path(),
        "small",
        &config_part_message(&small, ""),
        &small,
    );
    let file = big_file(32 << 20);
    for encoding in ["", "base64"] {
        let ud = config_part_message(&file, encoding);
        let rss = config_part_run(dir.path(), &format!("big{}", encoding.len()), &ud, &file);
        assert!(
            rss < base + 4096,
            "{encoding:?}: peak RSS {rss} KiB with a 32 MiB cloud-config part, {base} KiB with a small one"
        );
    }
}

/// Hostile multiparts of a few MiB in a directory source (kept in their files): the run
/// succeeds and says what it ignored, as for the same message in memory.
#[test]
fn hostile_large_multiparts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let pad = "#".repeat(2 << 20);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "no-close",
            format!(
                "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n{pad}\n"
            )
            .into_bytes(),
            "",
        ),
        (
            "many-parts",
            {
                let mut m = b"Content-Type: multipart/mixed; boundary=b\n\n".to_vec();
                for _ in 0..10_000 {
                    m.extend_from_slice(b"--b\nContent-Type: text/plain\n\nhello\n");
                }
                m.extend_from_slice(format!("--b\n\n{pad}\n--b--\n").as_bytes());
                m
            },
            "more than 1000 MIME parts",
        ),
        (
            // A count in the millions: 1,000,000 empty parts (4 MiB of delimiter lines).
            "million-parts",
            {
                let mut m = b"Content-Type: multipart/mixed; boundary=b\n\n".to_vec();
                for _ in 0..1_000_000 {
                    m.extend_from_slice(b"--b\n");
                }
                m.extend_from_slice(b"--b--\n");
                m
            },
            "more than 1000 MIME parts",
        ),
        (
            "huge-header",
            format!(
                "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\nX-Long: {pad}\n\n#!/bin/sh\ntrue\n--b--\n"
            )
            .into_bytes(),
            "",
        ),
        (
            "deep",
            {
                let mut m = Vec::new();
                for d in 0..12 {
                    m.extend_from_slice(
                        format!("Content-Type: multipart/mixed; boundary=b{d}\n\n--b{d}\n")
                            .as_bytes(),
                    );
                }
                m.extend_from_slice(format!("Content-Type: text/x-shellscript\n\n#!/bin/sh\n{pad}\n").as_bytes());
                m
            },
            "nested deeper than 8 levels",
        ),
        (
            "boundary-in-base64",
            format!(
                "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\nContent-Transfer-Encoding: base64\n\nIyEvYmluL3NoCg==\n--b\n{}\n--b--\n",
                "QUFB\n".repeat(500_000)
            )
            .into_bytes(),
            "",
        ),
    ];
    for (name, ud, warning) in cases {
        assert!(ud.len() > 1 << 20, "{name}: kept in its file");
        let tree = config2_tree(dir.path(), name, &ud);
        let root = scratch_root();
        let (o, rss) = run_measured(&tree, root.path(), dir.path());
        assert!(o.status.success(), "{name}: {}", text(&o));
        let status =
            fs::read_to_string(root.path().join("var/lib/primer/status.json")).unwrap_or_default();
        assert!(status.contains(warning), "{name}: {status}");
        // Bounded by the parse's caps, never by the message (a few MiB here).
        assert!(rss < 64 << 10, "{name}: peak RSS {rss} KiB");
        fs::remove_dir_all(&tree).unwrap();
    }
}

/// A `#!` script of `len` bytes whose comment lines are pseudo-random hex (gzip halves it).
fn noisy_script(len: usize) -> Vec<u8> {
    let mut s = b"#!/bin/sh\n".to_vec();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while s.len() + 80 < len {
        s.extend_from_slice(b"# ");
        for _ in 0..19 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.extend_from_slice(format!("{:04x}", x & 0xffff).as_bytes());
        }
        s.extend_from_slice(b"\n");
    }
    s.extend_from_slice(b"true\n");
    s
}
