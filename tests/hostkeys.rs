//! SSH host keys per instance, end to end with the real binary and the real `ssh-keygen`: an
//! image's keys are replaced on an instance's first run (new keys differ, right types, modes
//! and owners, accepted by `ssh-keygen -lf`, fingerprints printed in cloud-init's block), kept
//! on later runs of the same instance, replaced again for a new instance id, kept when the
//! configuration says so or the target has no `ssh-keygen`, and never generated into a root
//! that is not the running system. Generation on a scratch root uses the test-build switch
//! `PRIMER_TEST_HOSTKEYS_ROOT=1` (ignored by release builds).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

const UUID_A: &str = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";
const UUID_B: &str = "11111111-2222-4333-8444-555555555555";
const KEYGEN: &str = "/usr/bin/ssh-keygen";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An OpenStack drive for instance `uuid`, with `user_data` when given.
fn drive(uuid: &str, user_data: Option<&str>) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut meta = sample_meta("web-1", &[ED]);
    meta["uuid"] = serde_json::Value::String(uuid.into());
    write_drive_tree(t.path(), &meta);
    if let Some(ud) = user_data {
        for v in ["latest", "2018-08-27"] {
            fs::write(t.path().join("openstack").join(v).join("user_data"), ud).unwrap();
        }
    }
    t
}

/// A scratch image: root and `debian` accounts, host keys of `types` made by the real
/// ssh-keygen (the "image's keys"), and `ssh-keygen` itself when `with_keygen`.
fn image(types: &[&str], with_keygen: bool) -> tempfile::TempDir {
    require_tool("ssh-keygen");
    let root = scratch_root();
    let ssh = root.path().join("etc/ssh");
    fs::create_dir_all(&ssh).unwrap();
    for t in types {
        let o = Command::new(KEYGEN)
            .args(["-q", "-N", "", "-t", t, "-C", "root@image", "-f"])
            .arg(ssh.join(format!("ssh_host_{t}_key")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    if with_keygen {
        fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        fs::copy(KEYGEN, root.path().join("usr/bin/ssh-keygen")).unwrap();
    }
    root
}

/// `primer run --json` on `root`; `generate`: with the test switch that lets a scratch root
/// count as the running system for host keys.
fn run(src: &Path, root: &Path, generate: bool, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_primer"));
    cmd.args(["run", "--json", "--source", s(src), "--root", s(root)])
        .args(extra);
    if generate {
        cmd.env("PRIMER_TEST_HOSTKEYS_ROOT", "1");
    } else {
        cmd.env_remove("PRIMER_TEST_HOSTKEYS_ROOT");
    }
    cmd.output().unwrap()
}

fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["steps"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {v}"))
}

fn outcome(v: &serde_json::Value) -> &str {
    step(v, "ssh-host-keys")["outcome"].as_str().unwrap()
}

/// Every file of `etc/ssh` with its bytes.
fn keys(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(root.join("etc/ssh"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// `ssh-keygen -l -f PATH`'s line (fails the test when ssh-keygen rejects the file).
fn fingerprint(path: &Path) -> String {
    let o = Command::new(KEYGEN)
        .arg("-l")
        .arg("-f")
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}: {}", path.display(), text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The lines between `-----BEGIN what-----` and `-----END what-----` in `out`.
fn block(out: &str, what: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {what}-----");
    let end = format!("-----END {what}-----");
    let lines: Vec<&str> = out.lines().collect();
    let b = lines
        .iter()
        .position(|l| *l == begin)
        .unwrap_or_else(|| panic!("no {begin}:\n{out}"));
    let e = b + lines[b..]
        .iter()
        .position(|l| *l == end)
        .unwrap_or_else(|| panic!("no {end}:\n{out}"));
    lines[b + 1..e].iter().map(|l| l.to_string()).collect()
}

/// The new keys: exactly `types` (private 0600 and public 0644, root, `ssh-keygen -lf`
/// accepts both and names the type), no temporary file left, and the console block lists
/// each fingerprint and public key.
fn check_new_keys(root: &Path, types: &[(&str, &str)], o: &Output) {
    let ssh = root.join("etc/ssh");
    let mut want: Vec<String> = types
        .iter()
        .flat_map(|(t, _)| [format!("ssh_host_{t}_key"), format!("ssh_host_{t}_key.pub")])
        .collect();
    want.sort();
    assert_eq!(keys(root).into_keys().collect::<Vec<_>>(), want);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let fps = block(&stderr, "SSH HOST KEY FINGERPRINTS");
    let pubs = block(&stderr, "SSH HOST KEY KEYS");
    assert_eq!(fps.len(), types.len(), "{stderr}");
    for (t, label) in types {
        let key = ssh.join(format!("ssh_host_{t}_key"));
        let pubk = ssh.join(format!("ssh_host_{t}_key.pub"));
        assert_eq!(mode(&key), 0o600, "{t}");
        assert_eq!(mode(&pubk), 0o644, "{t}");
        assert_eq!(owner(&key), (0, 0));
        assert_eq!(owner(&pubk), (0, 0));
        let fp = fingerprint(&pubk);
        assert!(fp.ends_with(&format!("({label})")), "{fp}");
        if *t == "rsa" {
            assert!(fp.starts_with("3072 SHA256:"), "{fp}");
        }
        // The private key yields the same public key (a whole, usable pair).
        let derived = Command::new(KEYGEN)
            .args(["-y", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(derived.status.success(), "{}", text(&derived));
        let pub_text = fs::read_to_string(&pubk).unwrap();
        let blob = |s: &str| s.split_whitespace().nth(1).unwrap().to_string();
        assert_eq!(
            blob(&String::from_utf8_lossy(&derived.stdout)),
            blob(&pub_text)
        );
        assert!(fps.contains(&fp), "{fp} not in {fps:?}");
        assert!(pubs.contains(&pub_text.trim().to_string()), "{pubs:?}");
    }
    assert!(
        stderr.contains("#############################################################\n-----BEGIN SSH HOST KEY FINGERPRINTS-----"),
        "{stderr}"
    );
}

const ALL: [(&str, &str); 3] = [("ecdsa", "ECDSA"), ("ed25519", "ED25519"), ("rsa", "RSA")];

#[test]
fn first_run_replaces_the_image_keys_then_keeps_them_until_a_new_instance() {
    let root = image(&["rsa", "ecdsa", "ed25519", "dsa"], true);
    let r = root.path();
    let before = keys(r);
    let a = drive(UUID_A, None);

    let o = run(a.path(), r, true, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v), "changed", "{v}");
    let detail = step(&v, "ssh-host-keys")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("ed25519, ecdsa, rsa (3072 bits)")
            && detail.contains("/usr/bin/ssh-keygen"),
        "{detail}"
    );
    // Every type replaced (the image's DSA key is gone too), and nothing equal to the image's.
    check_new_keys(r, &ALL, &o);
    let first = keys(r);
    for (name, bytes) in &first {
        assert_ne!(
            before.get(name),
            Some(bytes),
            "{name} kept the image's bytes"
        );
    }

    // The same instance again: unchanged, keys byte for byte the same.
    let o = run(a.path(), r, true, &[]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v), "unchanged", "{v}");
    assert_eq!(keys(r), first);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("BEGIN SSH HOST KEY"));

    // A new instance id on the same disk: a machine of its own, keys of its own.
    let b = drive(UUID_B, None);
    let o = run(b.path(), r, true, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(outcome(&json(&o)), "changed");
    check_new_keys(r, &ALL, &o);
    for (name, bytes) in keys(r) {
        assert_ne!(first.get(&name), Some(&bytes), "{name} not regenerated");
    }
}

#[test]
fn configuration_switch_keeps_the_image_keys() {
    let root = image(&["rsa", "ed25519"], true);
    let r = root.path();
    fs::create_dir_all(r.join("etc/primer")).unwrap();
    fs::write(
        r.join("etc/primer/primer.yaml"),
        "ssh_host_keys:\n  regenerate: false\n",
    )
    .unwrap();
    let before = keys(r);
    let a = drive(UUID_A, Some("#cloud-config\nssh_deletekeys: true\n"));
    let o = run(a.path(), r, true, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v), "skipped", "{v}");
    assert!(step(&v, "ssh-host-keys")["detail"]
        .as_str()
        .unwrap()
        .contains("regenerate is false"));
    assert_eq!(keys(r), before);
    // Settled for this instance: the next run is unchanged.
    let o = run(a.path(), r, true, &[]);
    assert_eq!(outcome(&json(&o)), "unchanged", "{}", text(&o));
    assert_eq!(keys(r), before);
}

#[test]
fn missing_ssh_keygen_is_skipped_with_a_warning() {
    let root = image(&["rsa", "ed25519"], false);
    let r = root.path();
    let before = keys(r);
    let a = drive(UUID_A, None);
    let o = run(a.path(), r, true, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v), "skipped", "{v}");
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["field"] == "ssh-keygen"
                && w["message"]
                    .as_str()
                    .unwrap()
                    .contains("image's keys are kept")),
        "{v}"
    );
    assert_eq!(keys(r), before);
}

#[test]
fn an_image_root_is_left_alone_and_its_first_boot_replaces_the_keys() {
    let root = image(&["rsa", "ecdsa", "ed25519"], true);
    let r = root.path();
    let before = keys(r);
    let a = drive(UUID_A, None);
    // --root on an image (not the running system): no keys baked into every copy.
    let o = run(a.path(), r, false, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v), "skipped", "{v}");
    assert!(step(&v, "ssh-host-keys")["detail"]
        .as_str()
        .unwrap()
        .contains("shared by every copy"));
    assert_eq!(keys(r), before);
    let o = run(a.path(), r, false, &[]);
    assert_eq!(outcome(&json(&o)), "unchanged", "{}", text(&o));
    assert_eq!(keys(r), before);
    // The first boot of that same instance (here: the test switch) still replaces them.
    let o = run(a.path(), r, true, &[]);
    assert_eq!(outcome(&json(&o)), "changed", "{}", text(&o));
    check_new_keys(r, &ALL, &o);
}

#[test]
fn dry_run_shows_the_step_and_changes_nothing() {
    let root = image(&["ed25519"], true);
    let r = root.path();
    let before = keys(r);
    let a = drive(UUID_A, None);
    let o = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--dry-run", "--source", s(a.path()), "--root", s(r)])
        .env("PRIMER_TEST_HOSTKEYS_ROOT", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.contains("ssh-host-keys"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.trim_start().starts_with("update"), "{line}");
    assert!(line.contains("first run for this instance"), "{line}");
    assert_eq!(keys(r), before);
}

#[test]
fn user_data_chooses_types_and_keeps_keys_when_asked() {
    // ssh_deletekeys: false keeps the image's RSA key and adds the missing ED25519 one.
    let root = image(&["rsa"], true);
    let r = root.path();
    let rsa = fs::read(r.join("etc/ssh/ssh_host_rsa_key")).unwrap();
    let a = drive(
        UUID_A,
        Some("#cloud-config\nssh_deletekeys: false\nssh_genkeytypes: [rsa, ed25519]\n"),
    );
    let o = run(a.path(), r, true, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v), "changed", "{v}");
    check_new_keys(r, &[("ed25519", "ED25519"), ("rsa", "RSA")], &o);
    assert_eq!(fs::read(r.join("etc/ssh/ssh_host_rsa_key")).unwrap(), rsa);
    // No unsupported-key warning for the two keys.
    assert!(
        !v["warnings"].to_string().contains("ssh_genkeytypes"),
        "{}",
        v["warnings"]
    );

    // ssh_genkeytypes alone: the image's keys go, only the listed type is made.
    let root = image(&["rsa", "ecdsa", "ed25519"], true);
    let r = root.path();
    let a = drive(UUID_A, Some("#cloud-config\nssh_genkeytypes: [ed25519]\n"));
    let o = run(a.path(), r, true, &[]);
    assert_eq!(outcome(&json(&o)), "changed", "{}", text(&o));
    check_new_keys(r, &[("ed25519", "ED25519")], &o);
}

#[test]
fn hostile_key_types_choose_nothing_but_the_known_types() {
    // Option-like, multi-line, escape-laden and a huge list: only exact known types are used,
    // each once; the warnings name positions, never the drive's text.
    let mut list = vec![
        "\"rsa -f /etc/shadow\"".to_string(),
        "\"ed25519\\nrsa\"".to_string(),
        "\"\\e[2Jecdsa\"".to_string(),
        "\"-t\"".to_string(),
    ];
    list.extend(std::iter::repeat_n("ED25519".to_string(), 50_000));
    let ud = format!("#cloud-config\nssh_genkeytypes: [{}]\n", list.join(", "));
    let root = image(&["rsa"], true);
    let r = root.path();
    let shadow_before = fs::read(r.join("etc/passwd")).unwrap();
    let a = drive(UUID_A, Some(&ud));
    let o = run(a.path(), r, true, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(outcome(&v), "changed", "{v}");
    check_new_keys(r, &[("ed25519", "ED25519")], &o);
    let warnings: Vec<&serde_json::Value> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["field"].as_str().unwrap().starts_with("ssh_genkeytypes"))
        .collect();
    assert_eq!(warnings.len(), 4, "{v}");
    let all = serde_json::to_string(&warnings).unwrap();
    assert!(!all.contains("shadow") && !all.contains("\\u001b"), "{all}");
    assert_eq!(fs::read(r.join("etc/passwd")).unwrap(), shadow_before);
    assert!(!r.join("etc/shadow").exists());
}

#[test]
fn a_crash_at_any_point_leaves_whole_keys_and_the_next_run_finishes() {
    // PRIMER_FAULT_AFTER=N aborts at the N-th fault point (after each step, inside the host key
    // step after generating and after removing the image's keys, each rename of the commit).
    // Fast key types only (no RSA): one run per fault point.
    const FAST: [(&str, &str); 2] = [("ecdsa", "ECDSA"), ("ed25519", "ED25519")];
    let a = drive(UUID_A, None);
    let mut aborted = 0;
    for n in 1..=60 {
        let root = image(&["ecdsa", "ed25519"], true);
        let r = root.path();
        fs::create_dir_all(r.join("etc/primer")).unwrap();
        fs::write(
            r.join("etc/primer/primer.yaml"),
            "ssh_host_keys:\n  types: [ed25519, ecdsa]\n",
        )
        .unwrap();
        let before = keys(r);
        let o = Command::new(env!("CARGO_BIN_EXE_primer"))
            .args(["run", "--json", "--source", s(a.path()), "--root", s(r)])
            .env("PRIMER_TEST_HOSTKEYS_ROOT", "1")
            .env("PRIMER_FAULT_AFTER", n.to_string())
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        aborted += 1;
        // Under a real name: only whole keys, each pair matching (or none at all).
        let now = keys(r);
        for name in now.keys().filter(|n| n.ends_with("_key")) {
            let key = r.join("etc/ssh").join(name);
            let derived = Command::new(KEYGEN)
                .args(["-y", "-f"])
                .arg(&key)
                .output()
                .unwrap();
            assert!(derived.status.success(), "n={n} {name}: {}", text(&derived));
            fingerprint(&key.with_extension("pub"));
        }
        // The image's keys are either all there or all gone, never a mix of old and new.
        let image_left = before
            .iter()
            .filter(|(k, v)| now.get(*k) == Some(*v))
            .count();
        let new_real = now
            .iter()
            .filter(|(k, v)| !k.starts_with('.') && before.get(*k) != Some(*v))
            .count();
        assert!(image_left == 0 || new_real == 0, "n={n}: {:?}", now.keys());
        // The next run (no fault) finishes the job: it generates anew, unless the crash came
        // after the record was written (then the new keys are complete already).
        let o = run(a.path(), r, true, &[]);
        let v = json(&o);
        match outcome(&v) {
            "changed" => check_new_keys(r, &FAST, &o),
            "unchanged" => {
                let now = keys(r);
                let mut names: Vec<&String> = now.keys().collect();
                names.sort();
                assert_eq!(names, before.keys().collect::<Vec<_>>(), "n={n}");
                assert!(
                    now.iter().all(|(k, v)| before.get(k) != Some(v)),
                    "n={n}: an image key survived a finished run"
                );
            }
            other => panic!("n={n}: {other}: {}", text(&o)),
        }
    }
    assert!(aborted >= 3, "only {aborted} fault points reached");
}
