//! CloudStack config drive (FORMATS.md §2): `cloudstack/metadata/<name>.txt` (hyphenated names as
//! current CloudStack writes them, underscored as the original design and some consumers use),
//! `cloudstack/userdata/user_data.txt`, `cloudstack/password/vm_password.txt` verified against its
//! MD5 file when present, merged with the `openstack/<version>` tree CloudStack writes beside it.
//! Pure: no I/O; the password is a `Secret` from the moment it is read and never printed.
//!
//! Merge rule when both trees exist (the producer is the same, so they normally agree):
//! - CloudStack's own files win for the **password** (`vm_password.txt` over `admin_pass` and
//!   over any password in vendor data) and the **user data** (`user_data.txt` over
//!   `openstack/<version>/user_data`): they are what CloudStack rebuilds the drive for when the
//!   password or user data change, and the openstack view of them has lagged in some releases.
//! - The OpenStack tree wins for everything it carries (instance id = `uuid`, host name, network,
//!   vendor data, injected files); `cloudstack/metadata` only fills what it lacks. SSH keys are the
//!   union of both. A disagreement on the instance id or user data is a warning.

use md5::{Digest, Md5};

use super::openstack;
use super::value::{check_size, text_value, MAX_DOC_BYTES, MAX_USER_DATA_BYTES};
use super::SourceError;
use crate::media::{strip_version, DriveFiles};
use crate::model::{Format, Instance, Report, Secret};

/// Metadata files CloudStack writes, by their current (hyphenated) name.
const METADATA: &[&str] = &[
    "service-offering",
    "availability-zone",
    "local-hostname",
    "local-ipv4",
    "public-hostname",
    "public-ipv4",
    "instance-id",
    "vm-id",
    "public-keys",
    "cloud-identifier",
    "cloud-name",
    "hypervisor-host-name",
];

/// Values the password server (and so some drives) use for "no new password".
const NO_PASSWORD: &[&str] = &["", "saved_password", "bad_request"];

/// One metadata value and the stored file it came from.
struct Value {
    file: String,
    text: String,
}

/// Parses a CloudStack drive, merged with its `openstack/` tree when present.
pub fn parse_cloudstack(drive: &DriveFiles) -> Result<(Instance, Report), SourceError> {
    let device = drive.device.clone();
    let mut report = Report::default();

    let mut os_error = None;
    let base = if drive.subdirs("openstack").is_empty() {
        None
    } else {
        match openstack::parse_openstack(drive) {
            Ok((i, r)) => {
                report.warnings.extend(r.warnings);
                Some(i)
            }
            Err(e) => {
                // The cloudstack/ tree may still identify the instance: warn and go on.
                report.warn(
                    e.file().unwrap_or("openstack/"),
                    "",
                    format!("{}; using cloudstack/ alone", e.reason()),
                );
                os_error = Some(e);
                None
            }
        }
    };

    // Metadata files, hyphenated name first.
    let mut md: Vec<(&str, Value)> = Vec::new();
    let mut used: Vec<String> = Vec::new();
    for name in METADATA {
        let mut found: Option<Value> = None;
        for spelling in [name.to_string(), name.replace('-', "_")] {
            let path = format!("cloudstack/metadata/{spelling}.txt");
            let Some(stored) = drive.resolve(&path).map(str::to_string) else {
                continue;
            };
            if used.contains(&stored) {
                continue; // level-1 names of both spellings are the same file
            }
            used.push(stored.clone());
            let bytes = drive.get(&stored).unwrap_or_default();
            check_size(&device, &stored, "", bytes.len(), MAX_DOC_BYTES)?;
            let Some(text) = text_value(bytes) else {
                report.warn(&stored, name, "not UTF-8; ignored");
                continue;
            };
            match &found {
                None => found = Some(Value { file: stored, text }),
                Some(first) if first.text != text => report.warn(
                    &stored,
                    name,
                    format!(
                        "differs from {}; the hyphenated name (current CloudStack) wins",
                        first.file
                    ),
                ),
                Some(_) => {}
            }
        }
        if let Some(v) = found {
            md.push((name, v));
        }
    }
    let get = |name: &str| {
        md.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .filter(|v| !v.text.trim().is_empty())
    };
    let text = |name: &str| get(name).map(|v| v.text.trim().to_string());

    let cs_id = get("vm-id").or_else(|| get("instance-id"));
    let mut inst = match base {
        Some(mut i) => {
            if let Some(v) = get("vm-id") {
                if v.text.trim() != i.instance_id {
                    report.warn(
                        &v.file,
                        "vm-id",
                        format!(
                            "differs from meta_data.json uuid {:?}; the uuid is the instance id",
                            i.instance_id
                        ),
                    );
                }
            }
            i.format = Format::CloudStack;
            i
        }
        None => {
            let Some(id) = cs_id else {
                return Err(os_error.unwrap_or_else(|| SourceError::Field {
                    device: device.clone(),
                    file: "cloudstack/metadata/vm-id.txt".into(),
                    field: "vm-id".into(),
                    detail: "missing: no instance id (no vm-id.txt or instance-id.txt, no openstack/ meta_data.json)".into(),
                }));
            };
            Instance::new(Format::CloudStack, "cloudstack", id.text.trim())
        }
    };

    if inst.hostname.is_none() {
        inst.hostname = text("local-hostname");
    }
    if inst.availability_zone.is_none() {
        inst.availability_zone = text("availability-zone");
    }
    if let Some(v) = get("public-keys") {
        super::push_keys(&mut inst, &v.text);
    }
    let mut cs = inst.cloudstack.take().unwrap_or_default();
    let fill = |slot: &mut Option<String>, v: Option<String>| {
        if slot.is_none() {
            *slot = v;
        }
    };
    fill(&mut cs.instance_name, text("instance-id"));
    fill(&mut cs.vm_id, text("vm-id"));
    fill(&mut cs.service_offering, text("service-offering"));
    fill(&mut cs.local_ipv4, text("local-ipv4"));
    fill(&mut cs.public_ipv4, text("public-ipv4"));
    fill(&mut cs.public_hostname, text("public-hostname"));
    fill(&mut cs.cloud_identifier, text("cloud-identifier"));
    fill(&mut cs.cloud_name, text("cloud-name"));
    fill(&mut cs.hypervisor_host_name, text("hypervisor-host-name"));
    inst.cloudstack = Some(cs);

    // Metadata files primer does not know: kept, with a warning.
    for stored in dir_files(drive, "metadata") {
        let Some(name) = stored.rsplit('/').next() else {
            continue;
        };
        if used.contains(stored) {
            continue;
        }
        let key = strip_version(name);
        let key = key
            .strip_suffix(".txt")
            .or_else(|| key.strip_suffix(".TXT"))
            .unwrap_or(key);
        report.warn(stored, key, "unknown metadata file; kept, not interpreted");
        let bytes = drive.get(stored).unwrap_or_default();
        check_size(&device, stored, "", bytes.len(), MAX_DOC_BYTES)?;
        let v = String::from_utf8_lossy(bytes)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        inst.unknown
            .insert(format!("cloudstack/{key}"), serde_json::Value::String(v));
    }

    // User data: CloudStack's own file wins (see the module comment).
    for path in [
        "cloudstack/userdata/user_data.txt",
        "cloudstack/userdata/user-data.txt",
    ] {
        let Some(stored) = drive.resolve(path).map(str::to_string) else {
            continue;
        };
        let Some(bytes) = drive.file(&stored) else {
            continue;
        };
        check_size(&device, &stored, "", bytes.len(), MAX_USER_DATA_BYTES)?;
        if bytes.is_empty() {
            break;
        }
        if let Some(os) = &inst.user_data {
            // Compared as buffers: by digest when either stays on the device.
            if os.0 != *bytes {
                report.warn(
                    &stored,
                    "",
                    "differs from the openstack/ user_data; CloudStack's own file wins",
                );
            }
        }
        inst.user_data = super::hold(&mut inst, drive, &stored);
        break;
    }

    if let Some(pass) = read_password(drive, &mut report)? {
        inst.admin_pass = Some(pass);
    }
    super::dedup_keys(&mut inst.ssh_keys);
    Ok((inst, report))
}

/// The stored paths of the files directly in `cloudstack/<sub>/`, matching the directory names
/// case-insensitively and in their level-1 (8.3) form.
fn dir_files<'d>(drive: &'d DriveFiles, sub: &str) -> Vec<&'d String> {
    let dir_is = |s: &str, want: &str| {
        let s = strip_version(s);
        let l1: String = want.chars().take(8).collect();
        s.eq_ignore_ascii_case(want) || s.eq_ignore_ascii_case(&l1)
    };
    drive
        .files
        .keys()
        .filter(|stored| {
            let parts: Vec<&str> = stored.split('/').collect();
            matches!(parts.as_slice(), [top, s, _] if dir_is(top, "cloudstack") && dir_is(s, sub))
        })
        .collect()
}

/// One value per file; the trailing line break is not part of it.
fn one_line_value(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    bytes.get(..end).unwrap_or_default()
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads `cloudstack/password/vm_password.txt` and checks it against
/// `vm-password-md5checksum.txt` when that exists. `None` when absent, a "no password" marker, or
/// failing the checksum (a warning names the file).
///
/// On a level-1 (8.3) ISO both names become `VM_PASSW.TXT` and the producer renames one of them
/// (`VM_PA000.TXT`), so the names say nothing: there the two files are told apart by content,
/// the checksum being the MD5 of the other.
fn read_password(drive: &DriveFiles, report: &mut Report) -> Result<Option<Secret>, SourceError> {
    let device = &drive.device;
    let files = dir_files(drive, "password");
    let named = |names: &[&str]| {
        files
            .iter()
            .find(|f| {
                let n = strip_version(f.rsplit('/').next().unwrap_or_default());
                names.iter().any(|w| n.eq_ignore_ascii_case(w))
            })
            .map(|f| f.to_string())
    };
    let mut pass_file = named(&["vm_password.txt", "vm-password.txt"]);
    let mut sum_file = named(&["vm-password-md5checksum.txt", "vm_password_md5checksum.txt"]);
    for f in &files {
        check_size(
            device,
            f,
            "",
            drive.get(f).map_or(0, <[u8]>::len),
            MAX_DOC_BYTES,
        )?;
    }
    if pass_file.is_none() {
        let value = |f: &str| one_line_value(drive.get(f).unwrap_or_default()).to_vec();
        match files.as_slice() {
            [] => return Ok(None),
            [only] => pass_file = Some(only.to_string()),
            [a, b] => {
                let (va, vb) = (value(a), value(b));
                let is_sum = |sum: &[u8], of: &[u8]| {
                    String::from_utf8_lossy(sum)
                        .trim()
                        .eq_ignore_ascii_case(&md5_hex(of))
                };
                if is_sum(&vb, &va) {
                    (pass_file, sum_file) = (Some(a.to_string()), Some(b.to_string()));
                } else if is_sum(&va, &vb) {
                    (pass_file, sum_file) = (Some(b.to_string()), Some(a.to_string()));
                } else {
                    report.warn(
                        a,
                        "password",
                        format!("{a} and {b} (8.3 names): neither is the MD5 checksum of the other; password ignored"),
                    );
                    return Ok(None);
                }
            }
            more => {
                report.warn(
                    more[0],
                    "password",
                    format!("{} files in the password directory and none named vm_password.txt; password ignored", more.len()),
                );
                return Ok(None);
            }
        }
    }
    let Some(file) = pass_file else {
        return Ok(None);
    };
    let pass = one_line_value(drive.get(&file).unwrap_or_default());
    if NO_PASSWORD.iter().any(|m| m.as_bytes() == pass) {
        tracing::debug!(
            "{device}: {}: no new password on this drive",
            crate::media::shown_path(&file)
        );
        return Ok(None);
    }
    if let Some(sum_file) = sum_file {
        let sum = drive.get(&sum_file).unwrap_or_default();
        let want = String::from_utf8_lossy(sum).trim().to_ascii_lowercase();
        if want != md5_hex(pass) {
            report.warn(
                &file,
                "password",
                format!("does not match the MD5 checksum in {sum_file}; password ignored"),
            );
            return Ok(None);
        }
    }
    Ok(Some(Secret::new(pass.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(files: &[(&str, &str)]) -> DriveFiles {
        let mut d = DriveFiles::new("/dev/cs", "iso9660");
        for (p, c) in files {
            d.files.insert(p.to_string(), c.as_bytes().to_vec().into());
        }
        d
    }

    const MD5_HUNTER2: &str = "2ab96390c7dbe3439de74d0c9b0b1767";

    #[test]
    fn alone_hyphenated() {
        let d = drive(&[
            ("cloudstack/metadata/vm-id.txt", "8c1e\n"),
            ("cloudstack/metadata/instance-id.txt", "i-2-3-VM\n"),
            ("cloudstack/metadata/local-hostname.txt", "web1\n"),
            (
                "cloudstack/metadata/public-keys.txt",
                "ssh-ed25519 AAAA a@b\n",
            ),
            ("cloudstack/userdata/user_data.txt", "#!/bin/sh\n"),
            ("cloudstack/password/vm_password.txt", "hunter2\n"),
            (
                "cloudstack/password/vm-password-md5checksum.txt",
                MD5_HUNTER2,
            ),
        ]);
        let (i, r) = parse_cloudstack(&d).unwrap();
        assert_eq!(i.format, Format::CloudStack);
        assert_eq!(i.version, "cloudstack");
        assert_eq!(i.instance_id, "8c1e");
        assert_eq!(i.hostname.as_deref(), Some("web1"));
        assert_eq!(i.ssh_keys.len(), 1);
        assert_eq!(
            i.admin_pass.as_ref().map(|s| s.expose()),
            Some(&b"hunter2"[..])
        );
        let cs = i.cloudstack.unwrap();
        assert_eq!(cs.instance_name.as_deref(), Some("i-2-3-VM"));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn underscored_and_checksum_mismatch() {
        let d = drive(&[
            ("cloudstack/metadata/instance_id.txt", "i-9"),
            ("cloudstack/metadata/local_hostname.txt", "h"),
            ("cloudstack/password/vm_password.txt", "hunter3"),
            (
                "cloudstack/password/vm-password-md5checksum.txt",
                MD5_HUNTER2,
            ),
        ]);
        let (i, r) = parse_cloudstack(&d).unwrap();
        assert_eq!(i.instance_id, "i-9");
        assert_eq!(i.hostname.as_deref(), Some("h"));
        assert!(i.admin_pass.is_none());
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].message.contains("MD5"));
        assert!(!format!("{r:?}").contains("hunter3"));
    }

    #[test]
    fn level1_names_told_apart_by_content() {
        for (a, b) in [("hunter2\n", MD5_HUNTER2), (MD5_HUNTER2, "hunter2")] {
            let d = drive(&[
                ("CLOUDSTA/METADATA/VM_ID.TXT;1", "id-1"),
                ("CLOUDSTA/PASSWORD/VM_PASSW.TXT;1", a),
                ("CLOUDSTA/PASSWORD/VM_PA000.TXT;1", b),
            ]);
            let (i, r) = parse_cloudstack(&d).unwrap();
            assert_eq!(i.instance_id, "id-1");
            assert_eq!(i.admin_pass.unwrap().expose(), b"hunter2");
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        }
        let d = drive(&[
            ("CLOUDSTA/METADATA/VM_ID.TXT;1", "id-1"),
            ("CLOUDSTA/PASSWORD/VM_PASSW.TXT;1", "x"),
            ("CLOUDSTA/PASSWORD/VM_PA000.TXT;1", "y"),
        ]);
        let (i, r) = parse_cloudstack(&d).unwrap();
        assert!(i.admin_pass.is_none());
        assert!(
            r.warnings[0].message.contains("neither"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn saved_password_and_missing_id() {
        let d = drive(&[
            ("cloudstack/metadata/vm-id.txt", "x"),
            ("cloudstack/password/vm_password.txt", "saved_password\n"),
        ]);
        assert!(parse_cloudstack(&d).unwrap().0.admin_pass.is_none());
        let d = drive(&[("cloudstack/metadata/local-hostname.txt", "h")]);
        let e = parse_cloudstack(&d).unwrap_err().to_string();
        assert!(e.contains("/dev/cs") && e.contains("vm-id"), "{e}");
    }

    #[test]
    fn merged_rules() {
        let d = drive(&[
            (
                "openstack/latest/meta_data.json",
                r#"{"uuid":"u-1","hostname":"os-host","admin_pass":"ospass","cloud-name":"c1"}"#,
            ),
            ("openstack/latest/user_data", "os user data"),
            ("cloudstack/metadata/vm-id.txt", "u-2"),
            ("cloudstack/metadata/local-hostname.txt", "cs-host"),
            ("cloudstack/metadata/service-offering.txt", "small"),
            ("cloudstack/userdata/user_data.txt", "cs user data"),
            ("cloudstack/password/vm_password.txt", "cspass"),
        ]);
        let (i, r) = parse_cloudstack(&d).unwrap();
        assert_eq!(i.format, Format::CloudStack);
        assert_eq!(i.version, "latest");
        assert_eq!(i.instance_id, "u-1");
        assert_eq!(i.hostname.as_deref(), Some("os-host"));
        assert_eq!(
            i.user_data.as_ref().map(|b| b.0.as_slice()),
            Some(&b"cs user data"[..])
        );
        assert_eq!(
            i.admin_pass.as_ref().map(|s| s.expose()),
            Some(&b"cspass"[..])
        );
        let cs = i.cloudstack.unwrap();
        assert_eq!(cs.cloud_name.as_deref(), Some("c1"));
        assert_eq!(cs.service_offering.as_deref(), Some("small"));
        let fields: Vec<&str> = r.warnings.iter().map(|w| w.field.as_str()).collect();
        assert!(fields.contains(&"vm-id"), "{fields:?}");
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    }
}
