//! OpenStack config drive: picks the version directory and parses `meta_data.json` into the
//! model; keeps user data, vendor data and network data as raw bytes. Pure: never does I/O, never
//! fails on an unknown key (that is a warning), never panics on hostile JSON.

use base64::Engine;
use serde_json::Value;

use super::SourceError;
use crate::media::DriveFiles;
use crate::model::{Blob, Format, InjectedFile, Instance, Report, Secret};

/// Version directories nova writes, oldest first (FORMATS.md §1).
pub const KNOWN_VERSIONS: &[&str] = &[
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
];

/// Keys of `meta_data.json` this parser interprets or knowingly ignores.
const KNOWN_KEYS: &[&str] = &[
    "uuid",
    "hostname",
    "name",
    "public_keys",
    "keys",
    "meta",
    "files",
    "random_seed",
    "admin_pass",
    "availability_zone",
    "launch_index",
    "project_id",
    // Interpreted by later stages from the raw drive (network, devices): known, not unknown.
    "network_config",
    "devices",
    "dedicated_cpus",
];

/// Hard cap on JSON nesting: serde_json already stops at 128, this keeps the walk of `meta` and
/// `unknown` values small and says so clearly.
const MAX_JSON_DEPTH: usize = 64;

/// Chooses the version directory: the newest known version present, else `latest`, else the
/// newest date-named directory. `None` when the drive has no usable `meta_data.json`.
pub fn choose_version(drive: &DriveFiles) -> Option<String> {
    let has = |v: &str| meta_data_file(drive, v).is_some();
    if let Some(v) = KNOWN_VERSIONS.iter().rev().find(|v| has(v)) {
        return Some(v.to_string());
    }
    if has("latest") {
        return Some("latest".into());
    }
    let mut dated: Vec<String> = drive
        .subdirs("openstack")
        .into_iter()
        .filter(|d| is_date_dir(d) && has(d))
        .collect();
    dated.sort();
    dated.pop()
}

/// The metadata file of a version directory: `meta_data.json`, or the legacy `meta-data.json`
/// that some producers (an Ironic test drive) write.
fn meta_data_file(drive: &DriveFiles, version: &str) -> Option<String> {
    ["meta_data.json", "meta-data.json"]
        .iter()
        .map(|n| format!("openstack/{version}/{n}"))
        .find(|p| drive.get(p).is_some())
}

fn is_date_dir(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn depth(v: &Value) -> usize {
    // Iterative: the input is untrusted.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// Parses an OpenStack drive.
pub fn parse_openstack(drive: &DriveFiles) -> Result<(Instance, Report), SourceError> {
    let device = drive.device.clone();
    let version = choose_version(drive).ok_or_else(|| SourceError::Missing {
        device: device.clone(),
        file: "openstack/latest/meta_data.json".into(),
    })?;
    let dir = format!("openstack/{version}");
    let md_file =
        meta_data_file(drive, &version).unwrap_or_else(|| format!("{dir}/meta_data.json"));
    let bytes = drive.get(&md_file).ok_or_else(|| SourceError::Missing {
        device: device.clone(),
        file: md_file.clone(),
    })?;
    let md: Value = serde_json::from_slice(bytes).map_err(|e| SourceError::Json {
        device: device.clone(),
        file: md_file.clone(),
        line: e.line(),
        column: e.column(),
        detail: e.to_string(),
    })?;
    let field_err = |field: &str, detail: String| SourceError::Field {
        device: device.clone(),
        file: md_file.clone(),
        field: field.into(),
        detail,
    };
    if depth(&md) > MAX_JSON_DEPTH {
        return Err(field_err(
            "",
            format!("nesting deeper than {MAX_JSON_DEPTH}"),
        ));
    }
    let Value::Object(obj) = md else {
        return Err(field_err("", "top level is not a JSON object".into()));
    };

    let mut report = Report::default();
    if md_file.ends_with("meta-data.json") {
        report.warn(
            &md_file,
            "",
            "legacy name meta-data.json used (nova writes meta_data.json)",
        );
    }
    let uuid = match obj.get("uuid") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => return Err(field_err("uuid", "empty instance id".into())),
        Some(other) => {
            return Err(field_err(
                "uuid",
                format!("expected a string, found {}", kind(other)),
            ))
        }
        None => {
            return Err(field_err(
                "uuid",
                "missing (the instance id is required)".into(),
            ))
        }
    };
    let mut inst = Instance::new(Format::OpenStack, version.clone(), uuid);

    let string_field = |key: &str, report: &mut Report| -> Option<String> {
        match obj.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => {
                report.warn(
                    &md_file,
                    key,
                    format!("expected a string, found {}; ignored", kind(other)),
                );
                None
            }
        }
    };
    inst.hostname = string_field("hostname", &mut report);
    inst.name = string_field("name", &mut report);
    inst.availability_zone = string_field("availability_zone", &mut report);
    inst.project_id = string_field("project_id", &mut report);
    if let Some(v) = string_field("admin_pass", &mut report) {
        inst.admin_pass = Some(Secret::new(v.into_bytes()));
    }
    if let Some(seed) = string_field("random_seed", &mut report) {
        match base64::engine::general_purpose::STANDARD
            .decode(seed.split_whitespace().collect::<String>())
        {
            Ok(b) => inst.random_seed = Some(Secret::new(b)),
            Err(e) => report.warn(
                &md_file,
                "random_seed",
                format!("not valid base64 ({e}); ignored"),
            ),
        }
    }
    match obj.get("launch_index") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some() => inst.launch_index = n.as_i64(),
        // nova writes an integer; some producers quote it.
        Some(Value::String(s)) if s.parse::<i64>().is_ok() => inst.launch_index = s.parse().ok(),
        Some(other) => report.warn(
            &md_file,
            "launch_index",
            format!("expected an integer, found {}; ignored", kind(other)),
        ),
    }

    // SSH keys: public_keys (object name -> one or several lines), then keys[type=ssh].
    let mut keys: Vec<String> = Vec::new();
    let mut add_keys = |text: &str| {
        for line in text.lines() {
            let line = line.trim();
            if !line.is_empty() && !keys.iter().any(|k| k == line) {
                keys.push(line.to_string());
            }
        }
    };
    match obj.get("public_keys") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, v) in m {
                match v {
                    Value::String(s) => add_keys(s),
                    other => report.warn(
                        &md_file,
                        &format!("public_keys.{name}"),
                        format!("expected a string, found {}; ignored", kind(other)),
                    ),
                }
            }
        }
        Some(other) => report.warn(
            &md_file,
            "public_keys",
            format!("expected an object, found {}; ignored", kind(other)),
        ),
    }
    match obj.get("keys") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, k) in list.iter().enumerate() {
                let ty = k.get("type").and_then(Value::as_str);
                let data = k.get("data").and_then(Value::as_str);
                match (ty, data) {
                    (Some("ssh"), Some(d)) => add_keys(d),
                    (Some("ssh"), None) => report.warn(
                        &md_file,
                        &format!("keys[{i}].data"),
                        "missing or not a string; ignored",
                    ),
                    // x509 keys are for Windows certificate auth, not SSH.
                    (Some(_), _) => {}
                    (None, _) => report.warn(
                        &md_file,
                        &format!("keys[{i}].type"),
                        "missing or not a string; ignored",
                    ),
                }
            }
        }
        Some(other) => report.warn(
            &md_file,
            "keys",
            format!("expected a list, found {}; ignored", kind(other)),
        ),
    }
    inst.ssh_keys = keys;

    match obj.get("meta") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if k == "admin_pass" {
                    // A password in `meta` is a convention of some tools: keep it secret.
                    if let Value::String(s) = v {
                        if inst.admin_pass.is_none() {
                            inst.admin_pass = Some(Secret::new(s.clone().into_bytes()));
                        }
                    }
                    continue;
                }
                inst.meta.insert(k.clone(), v.clone());
            }
        }
        Some(other) => report.warn(
            &md_file,
            "meta",
            format!("expected an object, found {}; ignored", kind(other)),
        ),
    }

    match obj.get("files") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, f) in list.iter().enumerate() {
                let path = f.get("path").and_then(Value::as_str);
                let cp = f.get("content_path").and_then(Value::as_str);
                let (Some(path), Some(cp)) = (path, cp) else {
                    report.warn(
                        &md_file,
                        &format!("files[{i}]"),
                        "needs string `path` and `content_path`; ignored",
                    );
                    continue;
                };
                // content_path is `/content/0000`, relative to `openstack/`.
                let rel = format!("openstack/{}", cp.trim_start_matches('/'));
                let content = if cp.split('/').any(|c| c == "..") {
                    report.warn(
                        &md_file,
                        &format!("files[{i}].content_path"),
                        format!("{cp:?} contains `..`; content ignored"),
                    );
                    None
                } else {
                    let c = drive.get(&rel).map(|b| Blob(b.to_vec()));
                    if c.is_none() {
                        report.warn(
                            &md_file,
                            &format!("files[{i}].content_path"),
                            format!("{rel} is not on the drive"),
                        );
                    }
                    c
                };
                inst.files.push(InjectedFile {
                    path: path.to_string(),
                    content_path: cp.to_string(),
                    content,
                });
            }
        }
        Some(other) => report.warn(
            &md_file,
            "files",
            format!("expected a list, found {}; ignored", kind(other)),
        ),
    }

    for (k, v) in &obj {
        if !KNOWN_KEYS.contains(&k.as_str()) {
            report.warn(
                &md_file,
                k,
                "unknown key; kept in the model, not interpreted",
            );
            inst.unknown.insert(k.clone(), v.clone());
        }
    }

    // Raw files for later stages, from the same version directory.
    inst.user_data = drive
        .get(&format!("{dir}/user_data"))
        .map(|b| Blob(b.to_vec()));
    for name in ["vendor_data.json", "vendor_data2.json"] {
        if let Some(b) = drive.get(&format!("{dir}/{name}")) {
            inst.vendor_data.insert(name.to_string(), Blob(b.to_vec()));
        }
    }
    inst.network_data = drive
        .get(&format!("{dir}/network_data.json"))
        .map(|b| Blob(b.to_vec()));

    Ok((inst, report))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";

    fn drive(files: &[(&str, &str)]) -> DriveFiles {
        let mut d = DriveFiles::new("/dev/test", "iso9660");
        for (p, c) in files {
            d.files.insert(p.to_string(), c.as_bytes().to_vec());
        }
        d
    }

    #[test]
    fn version_choice() {
        let md = r#"{"uuid":"u"}"#;
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["2012-08-10", "2018-08-27", "latest"], Some("2018-08-27")),
            (&["2012-08-10", "latest"], Some("2012-08-10")),
            (&["latest"], Some("latest")),
            (&["2030-01-01", "2029-05-05"], Some("2030-01-01")),
            (&["2030-01-01", "latest"], Some("latest")),
            (&["notadate"], None),
            (&[], None),
        ];
        for (dirs, want) in cases {
            let files: Vec<(String, &str)> = dirs
                .iter()
                .map(|d| (format!("openstack/{d}/meta_data.json"), md))
                .collect();
            let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), *c)).collect();
            assert_eq!(choose_version(&drive(&refs)).as_deref(), *want, "{dirs:?}");
        }
    }

    #[test]
    fn full_parse() {
        let md = format!(
            r#"{{"uuid":"abc","hostname":"h.example","name":"H","public_keys":{{"k":"{ED}\n{ED}"}},
            "keys":[{{"name":"k","type":"ssh","data":"{ED}"}},{{"type":"x509","data":"cert"}}],
            "meta":{{"role":"web","admin_pass":"s3cret"}},"launch_index":"2","random_seed":"QUJD REVG",
            "files":[{{"path":"/etc/x","content_path":"/content/0000"}},{{"path":"/etc/y","content_path":"/content/0001"}}],
            "something_new":{{"a":1}}}}"#
        );
        let d = drive(&[
            ("openstack/latest/meta_data.json", &md),
            ("openstack/latest/user_data", "#!/bin/sh\n"),
            ("openstack/latest/vendor_data2.json", "{}"),
            ("openstack/latest/network_data.json", "{}"),
            ("openstack/content/0000", "X"),
        ]);
        let (i, r) = parse_openstack(&d).unwrap();
        assert_eq!(i.instance_id, "abc");
        assert_eq!(i.hostname.as_deref(), Some("h.example"));
        assert_eq!(
            i.ssh_keys,
            vec![ED.to_string()],
            "deduplicated across public_keys and keys"
        );
        assert_eq!(
            i.admin_pass.as_ref().map(|s| s.expose()),
            Some(&b"s3cret"[..])
        );
        assert!(!i.meta.contains_key("admin_pass"));
        assert_eq!(i.launch_index, Some(2));
        assert_eq!(
            i.random_seed.as_ref().map(|s| s.expose()),
            Some(&b"ABCDEF"[..])
        );
        assert_eq!(i.files.len(), 2);
        assert!(i.files[0].content.is_some());
        assert!(i.files[1].content.is_none());
        assert!(i.user_data.is_some() && i.network_data.is_some());
        assert!(i.vendor_data.contains_key("vendor_data2.json"));
        assert!(i.unknown.contains_key("something_new"));
        let fields: Vec<&str> = r.warnings.iter().map(|w| w.field.as_str()).collect();
        assert!(fields.contains(&"something_new"), "{fields:?}");
        assert!(fields.contains(&"files[1].content_path"), "{fields:?}");
        assert!(r
            .warnings
            .iter()
            .all(|w| w.file == "openstack/latest/meta_data.json"));
    }

    #[test]
    fn errors_name_file_and_position() {
        let d = drive(&[(
            "openstack/latest/meta_data.json",
            "{\n  \"uuid\": \"x\",\n  oops\n}",
        )]);
        let e = parse_openstack(&d).unwrap_err().to_string();
        assert!(
            e.contains("/dev/test: openstack/latest/meta_data.json: invalid JSON at line 3"),
            "{e}"
        );
        let d = drive(&[("openstack/latest/meta_data.json", r#"{"hostname":"x"}"#)]);
        let e = parse_openstack(&d).unwrap_err().to_string();
        assert!(e.contains("uuid: missing"), "{e}");
        let d = drive(&[("openstack/latest/meta_data.json", "[]")]);
        assert!(parse_openstack(&d)
            .unwrap_err()
            .to_string()
            .contains("not a JSON object"));
        let d = drive(&[("openstack/latest/user_data", "x")]);
        assert!(parse_openstack(&d)
            .unwrap_err()
            .to_string()
            .contains("missing"));
        let deep = format!(
            "{{\"uuid\":\"u\",\"meta\":{}{}}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        let d = drive(&[("openstack/latest/meta_data.json", &deep)]);
        assert!(parse_openstack(&d)
            .unwrap_err()
            .to_string()
            .contains("nesting"));
    }

    #[test]
    fn wrong_types_are_warnings() {
        let md = r#"{"uuid":"u","hostname":5,"public_keys":[1],"keys":"x","meta":[],"files":{},"launch_index":true}"#;
        let (i, r) = parse_openstack(&drive(&[("openstack/latest/meta_data.json", md)])).unwrap();
        assert!(i.hostname.is_none());
        assert_eq!(r.warnings.len(), 6, "{:?}", r.warnings);
    }

    #[test]
    fn legacy_hyphen_name() {
        let d = drive(&[("openstack/latest/meta-data.json", r#"{"uuid":"u"}"#)]);
        let (i, r) = parse_openstack(&d).unwrap();
        assert_eq!(i.instance_id, "u");
        assert!(r.warnings[0].message.contains("legacy"));
    }
}
