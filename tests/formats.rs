//! Formats: golden tests over the project's own fixtures (`tests/fixtures/<format>/<case>/`, each
//! a `drive/` tree or a lone `ovf-env.xml`, with the expected normalised model in
//! `expected.json`; regenerate with `PRIMER_UPDATE_GOLDEN=1`), the CLI's `show` on every source
//! form, Ironic packed drives built with the tools operators use, and hostile inputs (size caps,
//! nesting, entities, garbage) that must give a clear error or warning and never a panic.
//!
//! Images built here with genisoimage/xorriso/mkfs.vfat are cross-checks against other
//! producers; tests that only need *a* drive use `common::make_drive` (primer make-drive).

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use primer::harness;
use primer::media::{DriveFiles, Limits};
use primer::source;
use serde_json::{json, Value};

const FORMATS: &[&str] = &["openstack", "cloudstack", "ovf", "nocloud"];

/// Secrets written into the fixtures: none may appear in any output. (The CloudStack vendor
/// cloud-config carrying a password is user data, a blob the model prints as a size only; the
/// golden file's content preview, written by this test, does show it.)
const SECRETS: &[&str] = &[
    "top-level-pass-is-secret",
    "meta-pass-is-secret",
    "Cl0udStack-pw",
    "openstack-view-pass",
    "ovf-secret-pass",
];

/// The fixture cases, as paths relative to the package root (the test's working directory), so
/// device names in errors are stable.
fn cases() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for f in FORMATS {
        let dir = Path::new("tests/fixtures").join(f);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            out.push((format!("{f}/{n}"), dir.join(n)));
        }
    }
    out
}

/// The source of a case: its `drive/` directory or its lone `ovf-env.xml`.
fn input_of(case: &Path) -> PathBuf {
    let d = case.join("drive");
    if d.is_dir() {
        d
    } else {
        case.join("ovf-env.xml")
    }
}

/// Up to 300 characters of a blob, for the golden file (the model itself prints only sizes).
fn preview(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(300).collect()
}

/// The normalised result of reading and parsing one source, as the golden file holds it.
fn golden_doc(input: &Path) -> Value {
    let drive = match primer::probe::image::read_source(input, &Limits::default()) {
        Ok(d) => d,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    match source::parse_drive(&drive) {
        Err(e) => json!({ "error": e.to_string() }),
        Ok((i, r)) => json!({
            "format": i.format,
            "version": i.version,
            "instance": i,
            "warnings": r.warnings,
            "content": {
                "user_data": i.user_data.as_ref().map(|b| preview(&b.0)),
                "vendor_user_data": i.vendor_user_data.iter().map(|p| preview(&p.data.0)).collect::<Vec<_>>(),
                "files": i.files.iter().map(|f| (f.path.clone(), f.content.as_ref().map(|c| preview(&c.0)))).collect::<Vec<_>>(),
            },
        }),
    }
}

#[test]
fn golden_models_of_every_fixture() {
    let update = std::env::var("PRIMER_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 40, "only {} fixture cases", cases.len());
    let mut failures = Vec::new();
    let mut per_format: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (name, dir) in &cases {
        let input = input_of(dir);
        assert!(input.exists(), "{name}: no drive/ or ovf-env.xml");
        let doc = golden_doc(&input);
        let text = format!("{}\n", serde_json::to_string_pretty(&doc).unwrap());
        for s in SECRETS {
            assert!(
                !text.contains(s),
                "{name}: secret {s:?} in the model output"
            );
        }
        let entry = per_format
            .entry(name.split('/').next().unwrap_or_default().to_string())
            .or_default();
        if doc.get("error").is_some() {
            entry.1 += 1;
            let e = doc["error"].as_str().unwrap_or_default();
            assert!(
                e.contains(input.to_str().unwrap()),
                "{name}: error does not name the device: {e}"
            );
        } else {
            entry.0 += 1;
            for w in doc["warnings"].as_array().unwrap() {
                assert!(
                    w["file"].as_str().is_some_and(|f| !f.is_empty()),
                    "{name}: warning without a file: {w}"
                );
            }
        }
        if let Some(f) = common::check_golden(&dir.join("expected.json"), name, &text, update) {
            failures.push(f);
        }
    }
    for (f, (ok, err)) in &per_format {
        println!("{f}: {ok} parsed, {err} refused with a clear error");
        assert!(*ok > 0 && *err > 0, "{f}: needs both kinds of case");
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (PRIMER_UPDATE_GOLDEN=1 regenerates; review the diff):\n{}",
        failures.join("\n")
    );
}

#[test]
fn show_json_names_format_version_and_warnings_and_redacts() {
    for (src, format, version) in [
        (
            "tests/fixtures/ovf/full/ovf-env.xml",
            "ovf",
            "environment/1",
        ),
        (
            "tests/fixtures/cloudstack/merged/drive",
            "cloudstack",
            "latest",
        ),
        ("tests/fixtures/nocloud/defaults/drive", "nocloud", "seed"),
        (
            "tests/fixtures/openstack/ec2-fallback/drive",
            "openstack",
            "ec2/latest",
        ),
    ] {
        let o = primer(&["show", "--json", "--source", src]);
        assert!(o.status.success(), "{src}: {}", text(&o));
        let all = text(&o);
        for s in SECRETS {
            assert!(!all.contains(s), "{src}: secret {s:?} printed");
        }
        let v = json(&o);
        assert_eq!(v["instance"]["format"], format, "{src}");
        assert_eq!(v["instance"]["version"], version, "{src}");
        assert!(v["warnings"]["warnings"].is_array(), "{src}");
        let o = primer(&["show", "--source", src]);
        assert!(o.status.success(), "{src}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("format:       {format} {version}")),
            "{out}"
        );
        assert!(out.contains("warnings:"), "{out}");
    }
    let o = primer(&[
        "show",
        "--json",
        "--source",
        "tests/fixtures/cloudstack/merged/drive",
    ]);
    let v = json(&o);
    assert!(
        v["instance"]["admin_pass"]
            .as_str()
            .is_some_and(|s| s.starts_with("<redacted ")),
        "{v}"
    );
}

#[test]
fn errors_exit_1_naming_device_file_and_field() {
    for (src, want) in [
        (
            "tests/fixtures/ovf/azure/ovf-env.xml",
            "ovf-env.xml: ProvisioningSection",
        ),
        ("tests/fixtures/ovf/doctype/ovf-env.xml", "DOCTYPE refused"),
        ("tests/fixtures/nocloud/alias-bomb/drive", "meta-data"),
        ("tests/fixtures/cloudstack/no-id/drive", "vm-id"),
    ] {
        let o = primer(&["show", "--source", src]);
        assert_eq!(o.status.code(), Some(1), "{src}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(src) && err.contains(want), "{src}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Runs a shell pipeline (the operator's tools), failing the test on error.
fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(o.status.success(), "{cmd}: {}", text(&o));
}

#[test]
fn ironic_packed_drives_read_like_the_image() {
    for t in ["gzip", "base64", "genisoimage"] {
        require_tool(t);
    }
    let t = tempfile::tempdir().unwrap();
    let iso = t.path().join("cd.iso");
    make_iso(
        Path::new("tests/fixtures/openstack/full-latest/drive"),
        &iso,
        IsoTool::Nova,
    );
    let p = |n: &str| t.path().join(n).to_str().unwrap().to_string();
    let iso_s = iso.to_str().unwrap();
    // What operators pass to Ironic: `gzip -c | base64 -w0`; also wrapped base64 and plain gzip.
    sh(&format!(
        "gzip -c {iso_s} | base64 -w0 > {}",
        p("packed.b64")
    ));
    sh(&format!("gzip -c {iso_s} | base64 > {}", p("wrapped.b64")));
    sh(&format!("gzip -c {iso_s} > {}", p("packed.gz")));
    let reference = json(&primer(&["show", "--json", "--source", iso_s]));
    assert_eq!(reference["instance"]["format"], "openstack");
    for (file, fstype) in [
        ("packed.b64", "iso9660+gzip+base64"),
        ("wrapped.b64", "iso9660+gzip+base64"),
        ("packed.gz", "iso9660+gzip"),
    ] {
        let o = primer(&["show", "--json", "--source", &p(file)]);
        assert!(o.status.success(), "{file}: {}", text(&o));
        let v = json(&o);
        assert_eq!(v["fstype"], fstype, "{file}");
        assert_eq!(v["label"], "config-2", "{file}");
        assert_eq!(v["instance"], reference["instance"], "{file}");
        assert_eq!(v["files"], reference["files"], "{file}");
    }
    // `run` takes a packed drive as well.
    let root = scratch_root();
    let o = primer(&[
        "run",
        "--source",
        &p("packed.b64"),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0) | Some(3)), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
        "web-1\n"
    );
}

#[test]
fn hostile_packed_drives_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    // A gzip bomb: 200 MiB of zeros inflates past the 128 MiB cap.
    let bomb = t.path().join("bomb.gz");
    let mut e = flate2::write::GzEncoder::new(
        fs::File::create(&bomb).unwrap(),
        flate2::Compression::best(),
    );
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (bomb, "total bytes limit exceeded"),
        (t.path().join("garbage.b64"), "not valid base64"),
        (t.path().join("trunc.gz"), "gzip"),
        (t.path().join("notiso.gz"), "not an ISO9660"),
    ];
    fs::write(&cases[1].0, "H4sI&&&&not base64 at all\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[7u8; 100_000]).unwrap();
    let gz = gz.finish().unwrap();
    fs::write(&cases[2].0, &gz[..gz.len() / 2]).unwrap();
    fs::write(&cases[3].0, &gz).unwrap();
    for (p, want) in &cases {
        let o = primer(&["show", "--source", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}: {}", p.display(), text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(p.to_str().unwrap()) && err.contains(want),
            "{}: {err}",
            p.display()
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Drive files as (path, content) pairs.
type Files<'a> = Vec<(&'a str, Vec<u8>)>;

fn mem_drive(files: &[(&str, Vec<u8>)]) -> DriveFiles {
    let mut d = DriveFiles::new("/dev/hostile", "iso9660");
    for (p, c) in files {
        d.files.insert(p.to_string(), c.clone().into());
    }
    d
}

#[test]
fn hundred_mib_user_data_is_refused_with_the_cap() {
    let big = vec![b'#'; 100 << 20];
    let os_md = br#"{"uuid":"u"}"#.to_vec();
    for (files, file) in [
        (
            vec![
                ("openstack/latest/meta_data.json", os_md.clone()),
                ("openstack/latest/user_data", big.clone()),
            ],
            "openstack/latest/user_data",
        ),
        (
            vec![
                ("meta-data", b"instance-id: x\n".to_vec()),
                ("user-data", big.clone()),
            ],
            "user-data",
        ),
        (
            vec![
                ("cloudstack/metadata/vm-id.txt", b"x".to_vec()),
                ("cloudstack/userdata/user_data.txt", big.clone()),
            ],
            "cloudstack/userdata/user_data.txt",
        ),
        (vec![("ovf-env.xml", big.clone())], "ovf-env.xml"),
    ] {
        let e = source::parse_drive(&mem_drive(&files))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("/dev/hostile: {file}")) && e.contains("too large"),
            "{e}"
        );
    }
    // Through the media layer: a 100 MiB (sparse) file in a seed directory.
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("meta-data"), "instance-id: x\n").unwrap();
    let f = fs::File::create(t.path().join("user-data")).unwrap();
    f.set_len(100 << 20).unwrap();
    let o = primer(&["show", "--source", t.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("user-data") && err.contains("file size limit exceeded"),
        "{err}"
    );
}

#[test]
fn hostile_documents_give_clear_errors_or_warnings() {
    let deep_xml = format!(
        "<Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\">{}{}</Environment>",
        "<x>".repeat(200),
        "</x>".repeat(200)
    );
    let errors: Vec<(Files, &str)> = vec![
        (vec![("ovf-env.xml", deep_xml.into_bytes())], "nesting deeper than 64"),
        (
            vec![("ovf-env.xml", br#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:o="http://schemas.dmtf.org/ovf/environment/1"><PropertySection><Property o:key="a" o:key="b" o:value="v"/></PropertySection></Environment>"#.to_vec())],
            "ovf-env.xml",
        ),
        (vec![("ovf-env.xml", b"<Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\">\xff</Environment>".to_vec())], "not UTF-8"),
        (vec![("ovf-env.xml", b"not xml at all".to_vec())], "root element"),
        (vec![("meta-data", b"instance-id: \xff\xfe\n".to_vec())], "not UTF-8"),
        (
            vec![("openstack/latest/meta_data.json", b"{\"uuid\":\"u\",\"hostname\":\"\xc3\x28\"}".to_vec())],
            "invalid JSON",
        ),
        (
            vec![("meta-data", format!("instance-id: x\nk: {}{}\n", "{a: ".repeat(70), "}".repeat(70)).into_bytes())],
            "meta-data: invalid YAML",
        ),
    ];
    for (files, want) in errors {
        let e = source::parse_drive(&mem_drive(&files))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/hostile") && e.contains(want),
            "{want}: {e}"
        );
    }
    // Warnings, not errors: the drive is still usable.
    let (i, r) = source::parse_drive(&mem_drive(&[
        (
            "openstack/latest/meta_data.json",
            br#"{"uuid":"u","random_seed":"!!!garbage!!!"}"#.to_vec(),
        ),
        (
            "openstack/latest/network_data.json",
            br#"{"links":1,"links":2}"#.to_vec(),
        ),
        ("openstack/latest/vendor_data.json", b"\x00\x01".to_vec()),
    ]))
    .unwrap();
    assert!(i.random_seed.is_none() && i.network.is_empty());
    let fields: Vec<String> = r
        .warnings
        .iter()
        .map(|w| format!("{}#{}", w.file, w.field))
        .collect();
    assert_eq!(
        fields,
        vec![
            "openstack/latest/meta_data.json#random_seed",
            "openstack/latest/vendor_data.json#",
            "openstack/latest/network_data.json#",
        ],
        "{:?}",
        r.warnings
    );
    assert!(r.warnings[2].message.contains("duplicate key"));
}

#[test]
fn harnesses_hold_their_invariants_on_fixture_drives() {
    // The fixture files through the fuzz harnesses: the same code the fuzz targets run.
    for (name, dir) in cases() {
        let input = input_of(&dir);
        if input.is_file() {
            let _ = harness::ovf_env(&fs::read(&input).unwrap());
        } else if name.starts_with("nocloud/") {
            let chunks: Vec<Vec<u8>> = harness::NOCLOUD_FILES
                .iter()
                .map(|f| fs::read(input.join(f)).unwrap_or_default())
                .collect();
            let _ = harness::nocloud(&chunks.join(&0u8));
        }
    }
}

/// The instance without the stored file names (a level-1 ISO names `network-config`
/// `NETWORK_`), for comparing one drive read from different media.
fn without_file_names(mut v: Value) -> Value {
    let mut stack = vec![&mut v];
    while let Some(x) = stack.pop() {
        match x {
            Value::Object(o) => {
                o.remove("file");
                stack.extend(o.values_mut());
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
    v
}

#[test]
fn every_format_reads_the_same_from_real_iso9660_images() {
    let t = tempfile::tempdir().unwrap();
    for (case, label, tools) in [
        (
            "nocloud/full",
            "cidata",
            &[
                IsoTool::Nova,
                IsoTool::Xorriso,
                IsoTool::Joliet,
                IsoTool::Level1,
            ][..],
        ),
        (
            "ovf/upper-case-name",
            "OVF ENV",
            &[IsoTool::Nova, IsoTool::Level1][..],
        ),
        (
            "cloudstack/hyphenated",
            "config-2",
            &[IsoTool::Nova, IsoTool::Xorriso, IsoTool::Level1][..],
        ),
        (
            "cloudstack/merged",
            "config-2",
            &[IsoTool::Nova, IsoTool::Xorriso][..],
        ),
        (
            "openstack/full-latest",
            "config-2",
            &[IsoTool::Nova, IsoTool::Xorriso, IsoTool::Joliet][..],
        ),
    ] {
        let tree = Path::new("tests/fixtures").join(case).join("drive");
        let reference = json(&primer(&[
            "show",
            "--json",
            "--source",
            tree.to_str().unwrap(),
        ]));
        for tool in tools {
            let iso = t
                .path()
                .join(format!("{}-{tool:?}.iso", case.replace('/', "-")));
            let (prog, mut args) = iso_command(*tool);
            require_tool(prog);
            // The format's own label instead of config-2.
            if let Some(i) = args.iter().position(|a| *a == "-V") {
                args[i + 1] = label;
            }
            let o = Command::new(prog)
                .args(&args)
                .arg("-o")
                .arg(&iso)
                .arg(&tree)
                .output()
                .unwrap();
            assert!(o.status.success(), "{prog}: {}", text(&o));
            let o = primer(&["show", "--json", "--source", iso.to_str().unwrap()]);
            assert!(o.status.success(), "{case} {tool:?}: {}", text(&o));
            let v = json(&o);
            assert_eq!(v["label"], label, "{case} {tool:?}");
            assert_eq!(
                without_file_names(v["instance"].clone()),
                without_file_names(reference["instance"].clone()),
                "{case} via {tool:?}"
            );
        }
    }
}
