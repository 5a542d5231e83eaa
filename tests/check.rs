//! `primer check`: real broken and hostile files (tab indentation, unknown keys, wrong types,
//! bad `users` entries, a 4 MiB file, deep nesting), primer's configuration with drop-ins and a
//! whole drive, each problem at file:line:column, exit 0 / 1 / 3. Runs the real binary.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn check(args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    let o = primer(&a);
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    a.push("--json");
    let j = primer(&a);
    assert_eq!(o.status.code(), j.status.code(), "{}", text(&j));
    (o.status.code(), t, json(&j))
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

/// Every problem at (line, column) with its severity and field, from the JSON form.
fn located(j: &serde_json::Value) -> Vec<(String, u64, u64, String)> {
    j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().unwrap().to_string(),
                p["line"].as_u64().unwrap_or(0),
                p["column"].as_u64().unwrap_or(0),
                p["field"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_clean_file_exits_0() {
    let t = tempfile::tempdir().unwrap();
    let f = write(
        t.path(),
        "u.yaml",
        "#cloud-config\nhostname: web-1\nusers:\n  - default\n  - name: ops\n    groups: [adm]\nruncmd:\n  - [touch, /x]\n",
    );
    let (code, out, j) = check(&["--user-data", &f]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
    assert_eq!(j["errors"], 0);
    assert_eq!(j["warnings"], 0);
}

#[test]
fn every_problem_is_at_its_line_and_column() {
    let t = tempfile::tempdir().unwrap();
    let f = write(
        t.path(),
        "u.yaml",
        "#cloud-config\nhostname: web-1\nfrobnicate: 1\nusers:\n  - name: \"bad name\"\n  - 42\nssh_pwauth: maybe\npassword: hunter2-Secret\n",
    );
    let (code, out, j) = check(&["--user-data", &f]);
    assert_eq!(code, Some(1), "{out}");
    let got = located(&j);
    for want in [
        ("warning", 3, 1, "frobnicate"),
        ("error", 5, 5, "users[0].name"),
        ("error", 6, 5, "users[1]"),
        ("error", 7, 1, "ssh_pwauth"),
    ] {
        assert!(
            got.iter()
                .any(|g| (g.0.as_str(), g.1, g.2, g.3.as_str()) == want),
            "{want:?} missing in {got:?}"
        );
    }
    assert!(
        out.contains(&format!("{f}:3:1: warning: frobnicate: unknown key")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{f}:5:5: error: users[0].name:")),
        "{out}"
    );
    // Values never reach the output: the password does not, whatever the problems.
    assert!(!out.contains("hunter2"), "{out}");
    assert!(!j.to_string().contains("hunter2"));
}

#[test]
fn only_warnings_exit_3() {
    let t = tempfile::tempdir().unwrap();
    let f = write(
        t.path(),
        "u.yaml",
        "#cloud-config\nhostname: a\npackage_upgrade: true\nhostname: b\n",
    );
    let (code, out, j) = check(&["--user-data", &f]);
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(j["errors"], 0);
    let got = located(&j);
    assert!(
        got.contains(&("warning".into(), 3, 1, "package_upgrade".into())),
        "{got:?}"
    );
    // A repeated key is at its last occurrence: the value that is used.
    assert!(
        got.contains(&("warning".into(), 4, 1, "hostname".into())),
        "{got:?}"
    );
}

#[test]
fn tab_indentation_is_a_located_syntax_error() {
    let t = tempfile::tempdir().unwrap();
    let f = write(
        t.path(),
        "u.yaml",
        "#cloud-config\nhostname: a\nusers:\n\t- name: x\n",
    );
    let (code, out, j) = check(&["--user-data", &f]);
    assert_eq!(code, Some(1), "{out}");
    let p = &j["problems"][0];
    assert_eq!(p["severity"], "error", "{j}");
    assert_eq!(p["line"], 4, "{j}");
    assert!(
        p["message"].as_str().unwrap().contains("tab"),
        "{}",
        p["message"]
    );
    assert!(out.starts_with(&format!("{f}:4:")), "{out}");
}

#[test]
fn deep_nesting_is_an_error_at_its_position_not_a_crash() {
    let t = tempfile::tempdir().unwrap();
    for (name, body) in [
        (
            "flow.yaml",
            format!(
                "#cloud-config\nhostname: a\nruncmd: {}1{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
        ),
        (
            "block.yaml",
            format!(
                "#cloud-config\n{}",
                (0..200)
                    .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                    .collect::<String>()
            ),
        ),
    ] {
        let f = write(t.path(), name, &body);
        let (code, out, j) = check(&["--user-data", &f]);
        assert_eq!(code, Some(1), "{name}: {out}");
        let p = &j["problems"][0];
        assert_eq!(p["severity"], "error", "{name}: {j}");
        assert!(p["line"].as_u64().unwrap() >= 1, "{name}: {j}");
        let m = p["message"].as_str().unwrap();
        assert!(
            m.contains("nesting") || m.contains("recursion limit") || m.contains("Depth"),
            "{name}: {j}"
        );
    }
}

/// 4 MiB of hostile keys (control characters, escapes, a NUL, 100k unknown keys): bounded
/// output, one line per problem, fast.
#[test]
fn a_4_mib_hostile_file_gives_a_bounded_safe_report() {
    let t = tempfile::tempdir().unwrap();
    let mut body = String::from("#cloud-config\n\"evil\\n\\u001b[31mkey\\u0000\": 1\n");
    let mut i = 0;
    while body.len() < 4 << 20 {
        body.push_str(&format!("k{i:07}: 1\n"));
        i += 1;
    }
    let f = write(t.path(), "big.yaml", &body);
    let start = Instant::now();
    let o = primer(&["check", "--user-data", &f]);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        text(&o).chars().take(2000).collect::<String>()
    );
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.lines().count() <= 1003, "{} lines", out.lines().count());
    assert!(
        !out.contains('\u{1b}') && !out.contains('\0'),
        "raw control bytes printed"
    );
    assert!(
        out.contains("more problem(s) not shown"),
        "{}",
        &out[out.len() - 300..]
    );
    assert!(
        out.contains(&format!("{f}:4:1: warning: k0000001: unknown key")),
        "{}",
        &out[..600]
    );
    let j = json(&primer(&["check", "--user-data", &f, "--json"]));
    assert_eq!(j["warnings"], i + 1);
}

#[test]
fn primer_config_and_drop_ins_are_checked_with_positions() {
    let t = tempfile::tempdir().unwrap();
    let main = write(
        t.path(),
        "primer.yaml",
        "ssh_user: admin\nprobe:\n  wait_seconds: 2\n",
    );
    let (code, out, _) = check(&["--config", &main]);
    assert_eq!(code, Some(0), "{out}");

    // An unknown key in a drop-in: primer would refuse to load it; located in the drop-in.
    fs::create_dir(t.path().join("primer.yaml.d")).unwrap();
    let d1 = write(
        &t.path().join("primer.yaml.d"),
        "10-site.yaml",
        "probe:\n  wait_seconds: 1\n  bogus: true\n",
    );
    let (code, out, j) = check(&["--config", &main]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(j["problems"][0]["file"], d1.as_str(), "{j}");
    assert_eq!(j["problems"][0]["line"], 3, "{j}");
    assert_eq!(j["problems"][0]["column"], 3, "{j}");
    assert!(
        out.contains(&format!("{d1}:3:3: error: unknown field `bogus`")),
        "{out}"
    );

    // A value out of range after the merge: the drop-in that set it, at the key.
    write(
        &t.path().join("primer.yaml.d"),
        "10-site.yaml",
        "ssh_user: admin\nprobe:\n  wait_seconds: 9999\n",
    );
    let (code, out, j) = check(&["--config", &main]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(j["problems"][0]["field"], "probe.wait_seconds", "{j}");
    assert_eq!(j["problems"][0]["line"], 3, "{j}");
    assert!(
        out.contains(&format!("{d1}:3:3: error: probe.wait_seconds: 9999")),
        "{out}"
    );

    // Wrong type in the main file; tab indentation.
    let bad = write(t.path(), "bad.yaml", "files_mode: \"rw\"\n");
    let (code, out, _) = check(&["--config", &bad]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{bad}:1:13: error:")), "{out}");
    let tab = write(t.path(), "tab.yaml", "probe:\n\twait_seconds: 1\n");
    let (code, out, _) = check(&["--config", &tab]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{tab}:2:")), "{out}");
}

#[test]
fn a_whole_drive_is_parsed_and_planned_and_nothing_applied() {
    let t = tempfile::tempdir().unwrap();
    let root = scratch_root();
    let drive = t.path().join("drive");
    let mut meta = sample_meta("check-host", &[ED]);
    meta["admin_pass"] = "Drive-Secret-77".into();
    write_drive_tree(&drive, &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            drive.join(format!("openstack/{v}/user_data")),
            "#cloud-config\nhostname: a\nusers:\n  - name: \"x y\"\nfrobnicate: 1\n",
        )
        .unwrap();
    }
    let before = snapshot(root.path());
    let src = drive.to_str().unwrap();
    let (code, out, j) = check(&["--source", src, "--root", root.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("user-data:4:5: error: users[0].name:"),
        "{out}"
    );
    assert!(
        out.contains("user-data:5:1: warning: frobnicate: unknown key"),
        "{out}"
    );
    assert!(!out.contains("Drive-Secret-77") && !j.to_string().contains("Drive-Secret-77"));
    assert_eq!(snapshot(root.path()), before, "check applied something");

    // A drive that cannot be read is an error naming it.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (code, out, _) = check(&["--source", empty.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("error"), "{out}");
}

#[test]
fn check_needs_one_thing_to_check() {
    let o = primer(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = primer(&["check", "--user-data", "/nonexistent/u.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("/nonexistent/u.yaml: error: cannot read"));
}
