//! Conformance: every case in `../shared/fixtures` (real drive trees, NoCloud seeds and OVF
//! environments from public projects: `os-*`, `nc-*`, `ovf-*`) parses, prints a one-line
//! summary, and a full plan + apply into a scratch root succeeds without a panic. Skips with a
//! printed reason when the shared folder is absent (CI has it).

mod common;

use std::collections::BTreeMap;

use common::*;

#[test]
fn every_shared_fixture_parses_and_applies() {
    let Some(dir) = shared_fixtures() else {
        println!("SKIP conformance: ../shared/fixtures not present beside the checkout");
        return;
    };
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("fixture.json").is_file())
        .collect();
    cases.sort();
    let mut per_prefix: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let fx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("fixture.json")).unwrap()).unwrap();
        let input = case.join(fx["input"].as_str().unwrap_or("drive"));
        let input_s = input.to_str().unwrap();
        *per_prefix
            .entry(name.split('-').next().unwrap_or_default().to_string())
            .or_default() += 1;
        let o = primer(&["show", "--json", "--source", input_s]);
        assert!(!text(&o).contains("panicked"), "{name}: {}", text(&o));
        if o.status.code() == Some(1) {
            // A drive without a usable instance id (Ironic's packed sample holds `{}`) must be a
            // clear error naming the device, the file and the field; nothing else may fail.
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains(input_s) && err.contains("meta") && err.contains("uuid"),
                "{name}: unclear error: {err}"
            );
            println!("{name}: refused: {}", err.trim());
            refused += 1;
            continue;
        }
        assert!(o.status.success(), "{name}: {}", text(&o));
        let v = json(&o);
        let i = &v["instance"];
        let format = i["format"].as_str().unwrap_or("?");
        let want: &[&str] = match fx["kind"].as_str() {
            Some("configdrive") => &["openstack", "cloudstack"],
            Some("nocloud") => &["nocloud"],
            Some("ovf") => &["ovf"],
            other => panic!("{name}: unknown kind {other:?}"),
        };
        assert!(want.contains(&format), "{name}: detected as {format}");
        let warnings = v["warnings"]["warnings"].as_array().unwrap();
        for w in warnings {
            assert!(
                w["file"].as_str().is_some_and(|f| !f.is_empty()),
                "{name}: warning without file: {w}"
            );
        }
        println!(
            "{name}: format={format} version={} id={} hostname={} keys={} warnings={}",
            i["version"].as_str().unwrap_or("?"),
            i["instance_id"].as_str().unwrap_or("?"),
            i["hostname"].as_str().unwrap_or("-"),
            i["ssh_keys"].as_array().map_or(0, |k| k.len()),
            warnings.len()
        );
        // An image of the same seed (a NoCloud ISO) gives the same instance.
        if let Ok(images) = std::fs::read_dir(case.join("image")) {
            for img in images.flatten() {
                let o = primer(&["show", "--json", "--source", img.path().to_str().unwrap()]);
                assert!(o.status.success(), "{name}: image: {}", text(&o));
                assert_eq!(
                    json(&o)["instance"],
                    *i,
                    "{name}: image differs from the tree"
                );
            }
        }
        let root = scratch_root();
        let o = primer(&[
            "run",
            "--source",
            input_s,
            "--root",
            root.path().to_str().unwrap(),
        ]);
        assert!(
            matches!(o.status.code(), Some(0) | Some(3)),
            "{name}: {}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"), "{name}: {}", text(&o));
    }
    println!(
        "{} cases ({}), {} parsed and applied, {refused} refused with a clear error",
        cases.len(),
        per_prefix
            .iter()
            .map(|(p, n)| format!("{n} {p}-*"))
            .collect::<Vec<_>>()
            .join(", "),
        cases.len() - refused
    );
    for p in ["os", "nc", "ovf"] {
        assert!(
            per_prefix.contains_key(p),
            "no {p}-* cases in {}",
            dir.display()
        );
    }
    assert!(
        refused <= 1,
        "only the uuid-less Ironic sample may be refused"
    );
}
