//! OpenStack config drive: picks the version directory and parses `meta_data.json` (every key of
//! FORMATS.md §1) into the model, resolves injected files and the legacy `network_config` to
//! their `content/NNNN`, extracts vendor user-data from `vendor_data.json`/`vendor_data2.json`,
//! and parses `network_data.json`. Also the legacy `ec2/` view, used only without `openstack/`.
//! Pure: never does I/O, never fails on an unknown key or a missing content file (warnings),
//! never panics on hostile JSON.

use serde_json::{Map, Value};

use super::value::{
    check_size, decode_base64, describe, kind, parse_json, scalar_text, MAX_USER_DATA_BYTES,
};
use super::{collect_keys, SourceError};
use crate::media::DriveFiles;
use crate::model::{
    Blob, CloudStackInfo, Device, Format, InjectedFile, Instance, NetworkConfig, Report, Secret,
    VendorPart,
};

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

/// Keys of `meta_data.json` this parser interprets.
const KNOWN_KEYS: &[&str] = &[
    "uuid",
    "hostname",
    "name",
    "public_keys",
    "keys",
    "meta",
    "files",
    "network_config",
    "random_seed",
    "admin_pass",
    "availability_zone",
    "launch_index",
    "project_id",
    "devices",
    "dedicated_cpus",
    // CloudStack-built meta_data.json (FORMATS.md §1).
    "cloud-domain",
    "cloud-name",
    "hypervisor-host-name",
];

/// `devices[].type` values nova writes.
const DEVICE_TYPES: &[&str] = &["nic", "disk", "share"];

/// Chooses the version directory: the newest known version present, else `latest`, else the
/// newest date-named directory. `None` when the drive has no usable `meta_data.json`.
pub fn choose_version(drive: &DriveFiles) -> Option<String> {
    let has = |v: &str| meta_data_file(drive, v).is_some();
    // Only a version whose directory is there can hold the file: the directory names, listed
    // once, are matched as a path lookup matches a directory (exact, case-insensitive, 8.3
    // level-1 form), so the lookups (two formatted paths and two resolutions per known
    // version, ~110,000 instructions a run) are made for the directories present only.
    let present = drive.subdirs("openstack");
    let listed = |v: &str| {
        let level1 = crate::media::level1_name(v, true);
        present
            .iter()
            .any(|d| d.eq_ignore_ascii_case(v) || d.eq_ignore_ascii_case(&level1))
    };
    if let Some(v) = KNOWN_VERSIONS.iter().rev().find(|v| listed(v) && has(v)) {
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
    crate::sort::sort(&mut dated);
    dated.pop()
}

/// The metadata file of a version directory: `meta_data.json`, or the legacy `meta-data.json`
/// that some producers (an Ironic test drive) write. The stored path, as `get` resolves it.
fn meta_data_file(drive: &DriveFiles, version: &str) -> Option<String> {
    ["meta_data.json", "meta-data.json"]
        .iter()
        .map(|n| format!("openstack/{version}/{n}"))
        .find(|p| drive.get(p).is_some())
}

fn is_date_dir(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
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
    let md = parse_json(&device, &md_file, bytes)?;
    let field_err = |field: &str, detail: String| SourceError::Field {
        device: device.clone(),
        file: md_file.clone(),
        field: field.into(),
        detail,
    };
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
    let m = Meta {
        obj: &obj,
        file: &md_file,
    };

    inst.hostname = m.string("hostname", &mut report);
    inst.name = m.string("name", &mut report);
    inst.availability_zone = m.string("availability_zone", &mut report);
    inst.project_id = m.string("project_id", &mut report);
    if let Some(v) = m.string("admin_pass", &mut report) {
        inst.admin_pass = Some(Secret::new(v.into_bytes()));
    }
    if let Some(seed) = m.string("random_seed", &mut report) {
        // Producers wrap or space the base64 (a real drive has a space in it): be lenient.
        match decode_base64(&seed) {
            Some(b) => inst.random_seed = Some(Secret::new(b)),
            None => report.warn(&md_file, "random_seed", "not valid base64; ignored"),
        }
    }
    match obj.get("launch_index") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some() => inst.launch_index = n.as_i64(),
        // nova writes an integer; some producers quote it.
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => {
            inst.launch_index = s.trim().parse().ok()
        }
        Some(other) => report.warn(
            &md_file,
            "launch_index",
            format!("expected an integer, found {}; ignored", kind(other)),
        ),
    }

    // SSH keys: public_keys (object name -> one or several lines), then keys[type=ssh].
    match obj.get("public_keys") {
        None | Some(Value::Null) => {}
        Some(Value::Object(keys)) => {
            for (name, v) in keys {
                match v {
                    Value::String(s) => super::push_keys(&mut inst, s),
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
                    (Some("ssh"), Some(d)) => super::push_keys(&mut inst, d),
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

    match obj.get("meta") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            for (k, v) in meta {
                match k.as_str() {
                    // A password in `meta` is a convention of some tools: keep it secret. The
                    // top-level admin_pass (set by the compute driver) wins.
                    "admin_pass" => match v {
                        Value::String(s) => {
                            if inst.admin_pass.is_none() {
                                inst.admin_pass = Some(Secret::new(s.clone().into_bytes()));
                            }
                        }
                        other => report.warn(
                            &md_file,
                            "meta.admin_pass",
                            format!("expected a string, found {}; ignored", kind(other)),
                        ),
                    },
                    "admin_username" => match scalar_text(v) {
                        Some(s) if !s.trim().is_empty() => {
                            inst.admin_username = Some(s.trim().to_string())
                        }
                        _ => report.warn(
                            &md_file,
                            "meta.admin_username",
                            format!("expected a user name, found {}; ignored", describe(v)),
                        ),
                    },
                    _ => {
                        inst.meta.insert(k.clone(), v.clone());
                    }
                }
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
                let field = format!("files[{i}].content_path");
                let content = content_file(drive, cp, &md_file, &field, &mut report)
                    .and_then(|(rel, _)| super::hold(&mut inst, drive, &rel));
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

    // Legacy network_config: an ifupdown text in content/NNNN. Applied after network_data.json
    // (pushed at the end), so it is kept in the model but never preferred.
    let mut legacy_eni: Option<NetworkConfig> = None;
    match obj.get("network_config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(nc)) => match nc.get("content_path").and_then(Value::as_str) {
            Some(cp) => {
                let field = "network_config.content_path";
                if let Some((rel, b)) = content_file(drive, cp, &md_file, field, &mut report) {
                    let b = b.as_slice();
                    if std::str::from_utf8(b).is_err() {
                        report.warn(
                            &rel,
                            "",
                            "legacy network_config is not UTF-8; invalid bytes replaced",
                        );
                    }
                    legacy_eni = Some(NetworkConfig::Eni {
                        file: rel,
                        text: String::from_utf8_lossy(b).into_owned(),
                    });
                }
            }
            None => report.warn(
                &md_file,
                "network_config.content_path",
                "missing or not a string; ignored",
            ),
        },
        Some(other) => report.warn(
            &md_file,
            "network_config",
            format!("expected an object, found {}; ignored", kind(other)),
        ),
    }

    match obj.get("devices") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, d) in list.iter().enumerate() {
                if let Some(dev) = parse_device(d, &md_file, i, &mut report) {
                    inst.devices.push(dev);
                }
            }
        }
        Some(other) => report.warn(
            &md_file,
            "devices",
            format!("expected a list, found {}; ignored", kind(other)),
        ),
    }

    match obj.get("dedicated_cpus") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, c) in list.iter().enumerate() {
                match c.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => inst.dedicated_cpus.push(n),
                    None => report.warn(
                        &md_file,
                        &format!("dedicated_cpus[{i}]"),
                        format!("expected a CPU number, found {}; ignored", describe(c)),
                    ),
                }
            }
        }
        Some(other) => report.warn(
            &md_file,
            "dedicated_cpus",
            format!("expected a list, found {}; ignored", kind(other)),
        ),
    }

    // CloudStack writes these hyphenated keys into its meta_data.json.
    let cs = CloudStackInfo {
        cloud_domain: m.string("cloud-domain", &mut report),
        cloud_name: m.string("cloud-name", &mut report),
        hypervisor_host_name: m.string("hypervisor-host-name", &mut report),
        ..Default::default()
    };
    if !cs.is_empty() {
        inst.cloudstack = Some(cs);
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

    read_version_files(drive, &dir, &mut inst, &mut report)?;
    if let Some(eni) = legacy_eni {
        inst.network.push(eni);
    }
    super::dedup_keys(&mut inst.ssh_keys);
    Ok((inst, report))
}

/// A parsed `meta_data.json` object and its file, for typed lookups that warn.
struct Meta<'a> {
    obj: &'a Map<String, Value>,
    file: &'a str,
}

impl Meta<'_> {
    /// A string key: `None` when absent or null; a warning when of another type.
    fn string(&self, key: &str, report: &mut Report) -> Option<String> {
        match self.obj.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => {
                report.warn(
                    self.file,
                    key,
                    format!("expected a string, found {}; ignored", kind(other)),
                );
                None
            }
        }
    }
}

/// Resolves a `content_path` (`/content/0000`, relative to `openstack/`) on the drive. A path
/// with `..` or a missing file is a warning naming `file` and `field`, never an error.
fn content_file<'d>(
    drive: &'d DriveFiles,
    content_path: &str,
    file: &str,
    field: &str,
    report: &mut Report,
) -> Option<(String, &'d crate::model::Bytes)> {
    if content_path.split('/').any(|c| c == "..") {
        report.warn(
            file,
            field,
            format!("{content_path:?} contains `..`; content ignored"),
        );
        return None;
    }
    let rel = format!("openstack/{}", content_path.trim_start_matches('/'));
    // The buffer, not its bytes: an injected file kept on the device is not read here.
    match drive.file(&rel) {
        Some(b) => Some((rel, b)),
        None => {
            report.warn(file, field, format!("{rel} is not on the drive"));
            None
        }
    }
}

fn parse_device(d: &Value, file: &str, i: usize, report: &mut Report) -> Option<Device> {
    let Value::Object(o) = d else {
        report.warn(
            file,
            &format!("devices[{i}]"),
            format!("expected an object, found {}; ignored", kind(d)),
        );
        return None;
    };
    let mut dev = Device::default();
    for (k, v) in o {
        let field = format!("devices[{i}].{k}");
        let warn_type = |report: &mut Report, want: &str| {
            report.warn(
                file,
                &field,
                format!("expected {want}, found {}; ignored", kind(v)),
            )
        };
        match k.as_str() {
            "type" => match v.as_str() {
                Some(t) => {
                    if !DEVICE_TYPES.contains(&t) {
                        report.warn(file, &field, format!("unknown device type {t:?}; kept"));
                    }
                    dev.kind = t.to_string();
                }
                None => warn_type(report, "a string"),
            },
            "bus" | "address" | "mac" | "serial" | "path" => {
                let slot = match k.as_str() {
                    "bus" => &mut dev.bus,
                    "address" => &mut dev.address,
                    "mac" => &mut dev.mac,
                    "serial" => &mut dev.serial,
                    _ => &mut dev.path,
                };
                match v {
                    Value::Null => {}
                    Value::String(s) => *slot = Some(s.clone()),
                    _ => warn_type(report, "a string"),
                }
            }
            "tags" => match v {
                Value::Null => {}
                Value::Array(tags) => {
                    for (j, t) in tags.iter().enumerate() {
                        match t.as_str() {
                            Some(t) => dev.tags.push(t.to_string()),
                            None => report.warn(
                                file,
                                &format!("{field}[{j}]"),
                                format!("expected a string, found {}; ignored", kind(t)),
                            ),
                        }
                    }
                }
                _ => warn_type(report, "a list"),
            },
            "vlan" => match v {
                Value::Null => {}
                // nova writes the VLAN id as a string or a number depending on the release.
                _ => match scalar_text(v).and_then(|s| s.trim().parse::<u32>().ok()) {
                    Some(n) => dev.vlan = Some(n),
                    None => report.warn(
                        file,
                        &field,
                        format!("expected a VLAN id, found {}; ignored", describe(v)),
                    ),
                },
            },
            "vf_trusted" => match v {
                Value::Null => {}
                Value::Bool(b) => dev.vf_trusted = Some(*b),
                _ => warn_type(report, "a boolean"),
            },
            _ => {
                report.warn(file, &field, "unknown device key; kept, not interpreted");
                dev.extra.insert(k.clone(), v.clone());
            }
        }
    }
    if dev.kind.is_empty() {
        report.warn(
            file,
            &format!("devices[{i}].type"),
            "missing; device ignored",
        );
        return None;
    }
    Some(dev)
}

/// Reads the raw files beside `meta_data.json`: `user_data`, vendor data, network data.
fn read_version_files(
    drive: &DriveFiles,
    dir: &str,
    inst: &mut Instance,
    report: &mut Report,
) -> Result<(), SourceError> {
    let device = &drive.device;
    let user_data = format!("{dir}/user_data");
    if let Some(b) = drive.file(&user_data) {
        check_size(device, &user_data, "", b.len(), MAX_USER_DATA_BYTES)?;
        inst.user_data = super::hold(inst, drive, &user_data);
    }
    for name in ["vendor_data.json", "vendor_data2.json"] {
        let file = format!("{dir}/{name}");
        let Some(b) = drive.get(&file) else { continue };
        check_size(device, &file, "", b.len(), MAX_USER_DATA_BYTES)?;
        if let Some(blob) = super::hold(inst, drive, &file) {
            inst.vendor_data.insert(name.to_string(), blob);
        }
        match parse_json(device, &file, b) {
            Ok(v) => inst
                .vendor_user_data
                .extend(vendor_parts(&v, &file, report)),
            Err(e) => report.warn(
                &file,
                "",
                format!(
                    "{}; kept raw, no vendor user-data taken from it",
                    e.reason()
                ),
            ),
        }
    }
    // network_info.json is the name of a theoretical Liberty layout that glean reads.
    let net = [("network_data.json", false), ("network_info.json", true)]
        .iter()
        .map(|(n, legacy)| (format!("{dir}/{n}"), *legacy))
        .find(|(p, _)| drive.get(p).is_some());
    if let Some((file, legacy)) = net {
        if legacy {
            report.warn(
                &file,
                "",
                "legacy name network_info.json used (nova writes network_data.json)",
            );
        }
        let text = drive.file(&file).cloned().unwrap_or_default();
        match parse_json(device, &file, &text) {
            Ok(data @ Value::Object(_)) => inst.network.push(NetworkConfig::OpenStack {
                file: file.clone(),
                data: crate::model::network::JsonDoc::new(text, data),
            }),
            Ok(other) => report.warn(
                &file,
                "",
                format!(
                    "expected an object, found {}; network data ignored",
                    kind(&other)
                ),
            ),
            Err(e) => report.warn(&file, "", format!("{}; network data ignored", e.reason())),
        }
    }
    Ok(())
}

/// The vendor user-data in a vendor data document, as cloud-init reads it: a string is the
/// user-data, a list holds parts (strings, or `{content, type}` objects), an object carries it
/// under `cloud-init` (one level only); anything else holds none.
pub(crate) fn vendor_parts(v: &Value, file: &str, report: &mut Report) -> Vec<VendorPart> {
    let mut out = Vec::new();
    let (v, field) = match v {
        Value::Object(o) => match o.get("cloud-init") {
            Some(inner) => (inner, "cloud-init"),
            None => return out,
        },
        other => (other, ""),
    };
    let part = |data: &str, content_type: Option<String>| VendorPart {
        file: file.to_string(),
        content_type,
        data: Blob::new(data),
    };
    match v {
        Value::Null => {}
        Value::String(s) => out.push(part(s, None)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = if field.is_empty() {
                    format!("[{i}]")
                } else {
                    format!("{field}[{i}]")
                };
                match item {
                    Value::String(s) => out.push(part(s, None)),
                    Value::Object(o) => match o.get("content").and_then(Value::as_str) {
                        Some(c) => out.push(part(
                            c,
                            o.get("type").and_then(Value::as_str).map(str::to_string),
                        )),
                        None => {
                            report.warn(file, &at, "object without a string `content`; ignored")
                        }
                    },
                    other => report.warn(
                        file,
                        &at,
                        format!(
                            "expected a string or an object, found {}; ignored",
                            kind(other)
                        ),
                    ),
                }
            }
        }
        other => report.warn(
            file,
            field,
            format!(
                "expected a string or a list, found {}; ignored",
                kind(other)
            ),
        ),
    }
    out
}

/// EC2 metadata keys nova writes that primer keeps without interpreting (no warning).
const EC2_KNOWN: &[&str] = &[
    "ami-id",
    "ami-manifest-path",
    "block-device-mapping",
    "instance-action",
    "instance-type",
    "kernel-id",
    "local-ipv4",
    "public-hostname",
    "public-ipv4",
    "ramdisk-id",
    "reservation-id",
    "security-groups",
];

/// Parses the legacy EC2 view (`ec2/<version>/meta-data.json`, `user-data`). Nova says not to
/// depend on it: detection uses it only when `openstack/` is absent.
pub fn parse_ec2(drive: &DriveFiles) -> Result<(Instance, Report), SourceError> {
    let device = drive.device.clone();
    let has = |v: &str| drive.get(&format!("ec2/{v}/meta-data.json")).is_some();
    let mut dirs: Vec<String> = drive
        .subdirs("ec2")
        .into_iter()
        .filter(|d| has(d))
        .collect();
    crate::sort::sort(&mut dirs);
    let version = if has("latest") {
        "latest".to_string()
    } else {
        // Date-named versions sort by date; others (`1.0`) before them.
        let dated = dirs.iter().rev().find(|d| is_date_dir(d));
        dated
            .or(dirs.last())
            .cloned()
            .ok_or_else(|| SourceError::Field {
                device: device.clone(),
                file: "ec2/latest/meta-data.json".into(),
                field: String::new(),
                detail: "missing (no ec2/<version>/meta-data.json and no openstack/ tree)".into(),
            })?
    };
    let dir = format!("ec2/{version}");
    let md_file = format!("{dir}/meta-data.json");
    let bytes = drive.get(&md_file).unwrap_or_default();
    let md = parse_json(&device, &md_file, bytes)?;
    let field_err = |field: &str, detail: String| SourceError::Field {
        device: device.clone(),
        file: md_file.clone(),
        field: field.into(),
        detail,
    };
    let Value::Object(obj) = md else {
        return Err(field_err("", "top level is not a JSON object".into()));
    };
    let id = match obj.get("instance-id").and_then(scalar_text) {
        Some(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(field_err(
                "instance-id",
                "missing or empty (the instance id is required)".into(),
            ))
        }
    };
    let mut report = Report::default();
    report.warn(
        &md_file,
        "",
        "no openstack/ tree: using the legacy EC2 view (nova advises against depending on it)",
    );
    let mut inst = Instance::new(Format::OpenStack, dir.clone(), id);
    let m = Meta {
        obj: &obj,
        file: &md_file,
    };
    inst.hostname = m
        .string("hostname", &mut report)
        .or_else(|| m.string("local-hostname", &mut report));
    if let Some(pk) = obj.get("public-keys") {
        collect_keys(pk, &md_file, "public-keys", &mut inst, &mut report);
    }
    match obj.get("placement") {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) => {
            inst.availability_zone = p
                .get("availability-zone")
                .and_then(Value::as_str)
                .map(str::to_string)
        }
        Some(other) => report.warn(
            &md_file,
            "placement",
            format!("expected an object, found {}; ignored", kind(other)),
        ),
    }
    match obj.get("ami-launch-index") {
        None | Some(Value::Null) => {}
        Some(v) => match scalar_text(v).and_then(|s| s.trim().parse::<i64>().ok()) {
            Some(n) => inst.launch_index = Some(n),
            None => report.warn(
                &md_file,
                "ami-launch-index",
                format!("expected an integer, found {}; ignored", kind(v)),
            ),
        },
    }
    for (k, v) in &obj {
        let interpreted = matches!(
            k.as_str(),
            "instance-id"
                | "hostname"
                | "local-hostname"
                | "public-keys"
                | "placement"
                | "ami-launch-index"
        );
        if interpreted {
            continue;
        }
        if !EC2_KNOWN.contains(&k.as_str()) {
            report.warn(
                &md_file,
                k,
                "unknown key; kept in the model, not interpreted",
            );
        }
        inst.unknown.insert(k.clone(), v.clone());
    }
    let ud = format!("{dir}/user-data");
    if let Some(b) = drive.file(&ud) {
        check_size(&device, &ud, "", b.len(), MAX_USER_DATA_BYTES)?;
        inst.user_data = super::hold(&mut inst, drive, &ud);
    }
    super::dedup_keys(&mut inst.ssh_keys);
    Ok((inst, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";

    fn drive(files: &[(&str, &str)]) -> DriveFiles {
        let mut d = DriveFiles::new("/dev/test", "iso9660");
        for (p, c) in files {
            d.files.insert(p.to_string(), c.as_bytes().to_vec().into());
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
        assert!(i.user_data.is_some() && i.network.len() == 1);
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

    /// `network_data.json` is held as its text (`JsonDoc`) and read again from it: every
    /// reader gets the document the source parsed (numbers in every form, escapes), and a
    /// document the source refuses (duplicate keys, nesting, non-UTF-8, out-of-range numbers,
    /// not an object) is refused as before, with its warning.
    #[test]
    fn network_data_is_held_as_text_and_read_back_the_same() {
        let nd = "openstack/latest/network_data.json";
        let md = ("openstack/latest/meta_data.json", r#"{"uuid":"u"}"#);
        let nums = "0, -0, 1.0, -0.0, 1e2, 1E-2, 2.5e+3, 0.30000000000000004, 0.1, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809, 123456789012345678901234567890, 1.00000000000000000000000000001, 9007199254740993";
        let doc = format!(
            r#"{{"links":[{{"id":"t\u00e9\ud83d\ude00\u0000","type":"phy","mtu":1500.0000000000002,"n":[{nums}]}}],"services":[{{"type":"dns","address":"192.0.2.1"}}],"z":{{"b":1,"a":[true,false,null,{{}}]}},"pad":"{}"}}"#,
            "p".repeat(crate::model::network::JsonDoc::KEEP_PARSED)
        );
        let (i, _) = parse_openstack(&drive(&[md, (nd, &doc)])).unwrap();
        let NetworkConfig::OpenStack { data, file } = &i.network[0] else {
            panic!("{:?}", i.network);
        };
        assert_eq!(file, nd);
        assert!(matches!(data, crate::model::network::JsonDoc::Text(_)));
        let (small, _) = parse_openstack(&drive(&[md, (nd, r#"{"links":[]}"#)])).unwrap();
        assert!(matches!(
            &small.network[0],
            NetworkConfig::OpenStack {
                data: crate::model::network::JsonDoc::Parsed(_),
                ..
            }
        ));
        let parsed = super::parse_json("/dev/test", nd, doc.as_bytes()).unwrap();
        let text = |v: &Value| serde_json::to_string_pretty(v).unwrap();
        // Shown, serialised and read as the parsed document, twice (a large one is parsed
        // again each time).
        for _ in 0..2 {
            assert_eq!(format!("{data:?}"), format!("{parsed:?}"));
            assert_eq!(
                serde_json::to_string(data).unwrap(),
                serde_json::to_string(&parsed).unwrap()
            );
            assert_eq!(*data.value(), parsed);
            assert_eq!(text(&data.value()), text(&parsed));
        }
        let copy = data.clone();
        assert_eq!(&copy, data);
        assert_eq!(text(&copy.value()), text(&parsed));

        let refused: [(&[u8], &str); 6] = [
            (br#"{"links":[],"links":[]}"#, "duplicate key"),
            (b"{\"links\":[{\"id\":\"a\xff\"}]}", "network data ignored"),
            (br#"{"links":[{"mtu":1e400}]}"#, "network data ignored"),
            (br#"[]"#, "expected an object, found"),
            (br#"{"links":"#, "network data ignored"),
            (b"", "network data ignored"),
        ];
        let deep = format!("{{\"links\":{}{}}}", "[".repeat(100), "]".repeat(100));
        for (bytes, why) in refused
            .iter()
            .copied()
            .chain([(deep.as_bytes(), "nesting")])
        {
            let mut d = drive(&[md]);
            d.files.insert(nd.into(), bytes.to_vec().into());
            let (i, r) = parse_openstack(&d).unwrap();
            assert!(i.network.is_empty(), "{:?}", String::from_utf8_lossy(bytes));
            assert!(
                r.warnings
                    .iter()
                    .any(|w| w.file == nd && w.message.contains(why)),
                "{why}: {:?}",
                r.warnings
            );
        }
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
    fn ec2_view_only_without_openstack() {
        let d = drive(&[
            (
                "ec2/2009-04-04/meta-data.json",
                r#"{"instance-id":"i-old"}"#,
            ),
            ("ec2/1.0/meta-data.json", r#"{"instance-id":"i-oldest"}"#),
        ]);
        let (i, r) = parse_ec2(&d).unwrap();
        assert_eq!(
            (i.instance_id.as_str(), i.version.as_str()),
            ("i-old", "ec2/2009-04-04")
        );
        assert!(r.warnings[0].message.contains("legacy EC2 view"));
        let d = drive(&[("ec2/latest/user-data", "x")]);
        let e = parse_ec2(&d).unwrap_err().to_string();
        assert!(
            e.contains("/dev/test: ec2/latest/meta-data.json: missing"),
            "{e}"
        );
        let d = drive(&[("ec2/latest/meta-data.json", r#"{"hostname":"h"}"#)]);
        assert!(parse_ec2(&d)
            .unwrap_err()
            .to_string()
            .contains("instance-id"));
    }

    #[test]
    fn legacy_hyphen_name() {
        let d = drive(&[("openstack/latest/meta-data.json", r#"{"uuid":"u"}"#)]);
        let (i, r) = parse_openstack(&d).unwrap();
        assert_eq!(i.instance_id, "u");
        assert!(r.warnings[0].message.contains("legacy"));
    }
}
