//! `primer collect-logs`: the archive a bug report needs, from a real run on a scratch root:
//! its members in order, mode 0600, no overwrite without --force, and no password of the drive
//! anywhere in it (unpacked with the system's tar and searched). Runs the real binary.

mod common;

use std::fs;
use std::process::Command;

use common::*;

const META_PASS: &str = "Meta-Pass-4711-xyz";
const UD_PASS: &str = "UserData-Pass-0815-abc";

#[test]
fn the_archive_has_every_member_and_no_password() {
    require_tool("tar");
    let t = tempfile::tempdir().unwrap();
    let root = scratch_root();
    fs::write(
        root.path().join("etc/shadow"),
        "root:*:19000:0:99999:7:::\n",
    )
    .unwrap();
    let drive = t.path().join("drive");
    let mut meta = sample_meta("logs-host", &[ED]);
    meta["admin_pass"] = META_PASS.into();
    write_drive_tree(&drive, &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            drive.join(format!("openstack/{v}/user_data")),
            format!(
                "#cloud-config\nchpasswd:\n  expire: false\n  users:\n    - {{name: root, password: {UD_PASS}, type: text}}\n"
            ),
        )
        .unwrap();
    }
    let r = root.path().to_str().unwrap();
    let o = primer(&["run", "--source", drive.to_str().unwrap(), "--root", r]);
    assert!(matches!(o.status.code(), Some(0) | Some(3)), "{}", text(&o));
    fs::create_dir_all(root.path().join("etc/primer/primer.yaml.d")).unwrap();
    fs::write(
        root.path().join("etc/primer/primer.yaml"),
        "ssh_user: root\n",
    )
    .unwrap();
    fs::write(
        root.path().join("etc/primer/primer.yaml.d/50-site.yaml"),
        "probe:\n  wait_seconds: 1\n",
    )
    .unwrap();

    let out = t.path().join("logs.tar.gz");
    let o = primer(&[
        "collect-logs",
        "-o",
        out.to_str().unwrap(),
        "--root",
        r,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = json(&o);
    assert_eq!(mode(&out) & 0o777, 0o600);

    let list = Command::new("tar").arg("tzf").arg(&out).output().unwrap();
    assert!(list.status.success());
    let names: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let want = [
        "primer-logs/versions.txt",
        "primer-logs/notes.txt",
        "primer-logs/status.json",
        "primer-logs/applied.json",
        "primer-logs/instance.json",
        "primer-logs/show.json",
        "primer-logs/config/primer.yaml",
        "primer-logs/config/primer.yaml.d/50-site.yaml",
        "primer-logs/probe.txt",
    ];
    assert_eq!(names, want, "members and their order");
    assert_eq!(j["members"], serde_json::json!(want));
    // Not the running system: the journal is missing, and the archive says why.
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let un = Command::new("tar")
        .arg("xzf")
        .arg(&out)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(un.success());
    let notes = fs::read_to_string(x.join("primer-logs/notes.txt")).unwrap();
    assert!(notes.contains("journal.txt: not collected"), "{notes}");
    let versions = fs::read_to_string(x.join("primer-logs/versions.txt")).unwrap();
    assert!(versions.starts_with(&format!("primer {}\nkernel ", env!("CARGO_PKG_VERSION"))));
    let show: serde_json::Value =
        serde_json::from_slice(&fs::read(x.join("primer-logs/show.json")).unwrap()).unwrap();
    assert_eq!(show["instance"]["hostname"], "logs-host", "{show}");
    for pass in [META_PASS, UD_PASS] {
        let g = Command::new("grep")
            .args(["-rF", pass])
            .arg(&x)
            .output()
            .unwrap();
        assert!(
            g.stdout.is_empty(),
            "{pass} in the archive:\n{}",
            String::from_utf8_lossy(&g.stdout)
        );
    }
    let raw = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | grep -c -F -e {META_PASS} -e {UD_PASS}",
            out.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&raw.stdout).trim(), "0");

    // An existing file is kept unless --force; with --force it is replaced, still 0600.
    let before = fs::read(&out).unwrap();
    let o = primer(&["collect-logs", "-o", out.to_str().unwrap(), "--root", r]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--force"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read(&out).unwrap(), before);
    fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = primer(&[
        "collect-logs",
        "-o",
        out.to_str().unwrap(),
        "--root",
        r,
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(mode(&out) & 0o777, 0o600);
    // No clock inside: the same state gives the same archive.
    assert_eq!(fs::read(&out).unwrap(), before);
}

#[test]
fn a_root_without_runs_still_gives_an_archive_that_says_so() {
    let t = tempfile::tempdir().unwrap();
    let root = scratch_root();
    let out = t.path().join("l.tar.gz");
    let o = primer(&[
        "collect-logs",
        "-o",
        out.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("no run yet") || s.contains("does not exist"),
        "{s}"
    );
    assert!(s.contains("no instance recorded"), "{s}");
}
