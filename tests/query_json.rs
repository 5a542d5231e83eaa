//! `primer query --list-keys` and `--json` on query, clean and scripts, after a real run on a
//! scratch root. Runs the real binary.

mod common;

use common::*;

#[test]
fn list_keys_json_and_clean_json() {
    let t = tempfile::tempdir().unwrap();
    let root = scratch_root();
    let r = root.path().to_str().unwrap();
    let mut meta = sample_meta("keys-host", &[ED]);
    meta["meta"] = serde_json::json!({"role": "web", "evil\nkey": "x"});
    meta["admin_pass"] = "List-Keys-Secret-1".into();
    write_drive_tree(t.path(), &meta);
    let o = primer(&["run", "--source", t.path().to_str().unwrap(), "--root", r]);
    assert!(matches!(o.status.code(), Some(0) | Some(3)), "{}", text(&o));

    let o = primer(&["query", "--list-keys", "--root", r]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let keys: Vec<&str> = out.lines().collect();
    for k in [
        "hostname",
        "meta.role",
        "ssh_keys",
        "ssh_keys.0",
        "drive.sha256",
        "admin_pass",
    ] {
        assert!(keys.contains(&k), "{k} missing:\n{out}");
    }
    // A key with a newline is one escaped line; no value is printed.
    assert!(out.contains(r#""meta.evil\nkey""#), "{out}");
    assert!(
        !out.contains("List-Keys-Secret-1") && !out.contains("web"),
        "{out}"
    );
    // Every listed key is one query answers.
    for k in ["meta.role", "ssh_keys.0", "drive.sha256"] {
        let o = primer(&["query", k, "--root", r]);
        assert_eq!(o.status.code(), Some(0), "{k}: {}", text(&o));
    }

    let j = json(&primer(&["query", "--list-keys", "--json", "--root", r]));
    let raw: Vec<&str> = j["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut sorted = raw.clone();
    sorted.sort();
    assert_eq!(raw, sorted, "sorted");
    assert_eq!(raw.len(), keys.len());
    assert!(raw.contains(&"meta.evil\nkey"), "{raw:?}");
    assert!(j["instance_id"].is_string());
    let j = json(&primer(&["query", "meta.role", "--json", "--root", r]));
    assert_eq!(j["key"], "meta.role");
    assert_eq!(j["value"], "web");
    let j = json(&primer(&["query", "admin_pass", "--json", "--root", r]));
    assert!(j["value"].as_str().unwrap().starts_with("<redacted"), "{j}");
    // KEY or --list-keys, not neither.
    assert_eq!(primer(&["query", "--root", r]).status.code(), Some(2));

    let o = primer(&["scripts", "--json", "--root", "/nonexistent-root"]);
    assert!(
        o.status.code() != Some(0) || json(&o)["steps"].is_array(),
        "{}",
        text(&o)
    );

    let o = primer(&["clean", "--json", "--root", r]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["outcome"], "changed");
    assert!(!j["removed"].as_array().unwrap().is_empty(), "{j}");
    let o = primer(&["clean", "--json", "--root", r]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert_eq!(json(&o)["removed"], serde_json::json!([]));
}
