//! NoCloud seed (FORMATS.md §4): `meta-data` (YAML: `instance-id`, `local-hostname`,
//! `public-keys`, legacy `network-interfaces`), `user-data`, `vendor-data`, `network-config`
//! (version 1 or 2, optionally under a top-level `network:` key). Also the network-config
//! unwrapping shared with OVF. Pure: no I/O, and `seedfrom` is recorded, never fetched.
//!
//! YAML is read with serde-saphyr (see `value::parse_yaml`): serde_yaml is archived upstream;
//! its fork serde_yml reads `0644` as decimal and failed a cloud-config sample, and the
//! API-compatible forks (serde_norway, serde_yaml_ng) are thin-maintained wrappers of the old
//! libyaml port. serde-saphyr is maintained, has no unsafe C port, and bounds what hostile YAML
//! can cost (depth, alias replay, node and byte budgets) and refuses duplicate keys.

use serde_json::Value;

use super::value::{check_size, kind, parse_yaml, scalar_text, YamlProfile, MAX_USER_DATA_BYTES};
use super::{collect_keys, SourceError};
use crate::media::DriveFiles;
use crate::model::{Format, Instance, NetworkConfig, Report, VendorPart};

/// cloud-init's instance id for a seed whose meta-data names none.
pub const DEFAULT_INSTANCE_ID: &str = "nocloud";

/// Whether a drive looks like a NoCloud seed: `meta-data` or `user-data` at the top.
pub fn is_seed(drive: &DriveFiles) -> bool {
    drive.get("meta-data").is_some() || drive.get("user-data").is_some()
}

/// Parses a NoCloud seed.
pub fn parse_nocloud(drive: &DriveFiles) -> Result<(Instance, Report), SourceError> {
    let device = drive.device.clone();
    let mut report = Report::default();
    let stored = |name: &str| drive.resolve(name).unwrap_or(name).to_string();

    let md_file = stored("meta-data");
    let md = match drive.get("meta-data") {
        Some(b) => parse_yaml(&device, &md_file, b, YamlProfile::Data)?,
        None => {
            report.warn(
                &md_file,
                "",
                "missing (only user-data on the seed); defaults used",
            );
            Value::Null
        }
    };
    let obj = match md {
        Value::Object(o) => o,
        Value::Null => Default::default(),
        other => {
            return Err(SourceError::Field {
                device,
                file: md_file,
                field: String::new(),
                detail: format!("expected a mapping, found {}", kind(&other)),
            })
        }
    };

    let text = |key: &str, report: &mut Report| -> Option<String> {
        let v = obj.get(key)?;
        match v {
            Value::Null => None,
            _ => match scalar_text(v) {
                Some(s) => Some(s),
                None => {
                    report.warn(
                        &md_file,
                        key,
                        format!("expected a string, found {}; ignored", kind(v)),
                    );
                    None
                }
            },
        }
    };

    let id = match text("instance-id", &mut report) {
        Some(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            report.warn(
                &md_file,
                "instance-id",
                format!("missing; using cloud-init's default {DEFAULT_INSTANCE_ID:?}"),
            );
            DEFAULT_INSTANCE_ID.to_string()
        }
    };
    let mut inst = Instance::new(Format::NoCloud, "seed", id);
    inst.hostname = text("local-hostname", &mut report).or_else(|| text("hostname", &mut report));
    if let Some(pk) = obj.get("public-keys") {
        collect_keys(pk, &md_file, "public-keys", &mut inst, &mut report);
    }
    inst.seedfrom = text("seedfrom", &mut report);
    inst.availability_zone = text("availability-zone", &mut report);
    if let Some(dsmode) = text("dsmode", &mut report) {
        inst.meta.insert("dsmode".into(), Value::String(dsmode));
    }
    // network-interfaces is the legacy form: used only when network-config is absent, so it is
    // pushed after it.
    let eni = text("network-interfaces", &mut report).map(|t| NetworkConfig::Eni {
        file: md_file.clone(),
        text: t,
    });
    for (k, v) in &obj {
        let known = matches!(
            k.as_str(),
            "instance-id"
                | "local-hostname"
                | "hostname"
                | "public-keys"
                | "seedfrom"
                | "availability-zone"
                | "dsmode"
                | "network-interfaces"
        );
        if !known {
            report.warn(
                &md_file,
                k,
                "unknown key; kept in the model, not interpreted",
            );
            inst.unknown.insert(k.clone(), v.clone());
        }
    }

    if let Some(b) = drive.file("user-data") {
        let f = stored("user-data");
        check_size(&device, &f, "", b.len(), MAX_USER_DATA_BYTES)?;
        // An empty user-data file is how seeds say "none".
        if !b.is_empty() {
            inst.user_data = super::hold(&mut inst, drive, "user-data");
        }
    }
    if let Some(b) = drive.get("vendor-data") {
        let f = stored("vendor-data");
        check_size(&device, &f, "", b.len(), MAX_USER_DATA_BYTES)?;
        // `hold` finds what `get` found: the same lookup.
        let blob = super::hold(&mut inst, drive, "vendor-data").unwrap_or_default();
        inst.vendor_data.insert("vendor-data".into(), blob.clone());
        if !b.is_empty() {
            inst.vendor_user_data.push(VendorPart {
                file: f,
                content_type: None,
                data: blob,
            });
        }
    }
    if let Some(b) = drive.get("network-config") {
        let f = stored("network-config");
        match parse_yaml(&device, &f, b, YamlProfile::Data) {
            Ok(Value::Null) => {}
            Ok(v) => {
                if let Some(nc) = network_config(v, &f, &mut report) {
                    inst.network.push(nc);
                }
            }
            Err(e) => report.warn(&f, "", format!("{}; network config ignored", e.reason())),
        }
    }
    if let Some(eni) = eni {
        inst.network.push(eni);
    }
    super::dedup_keys(&mut inst.ssh_keys);
    Ok((inst, report))
}

/// Turns a parsed network-config document into a `NetworkConfig`: a top-level `network:` wrapper
/// is removed, `config: disabled` is honoured, `version` must be 1 or 2. Anything else is a
/// warning naming `file` and the field, and no network config.
pub(crate) fn network_config(v: Value, file: &str, report: &mut Report) -> Option<NetworkConfig> {
    let v = match v {
        Value::Object(mut o) if o.contains_key("network") && !o.contains_key("version") => {
            o.remove("network").unwrap_or(Value::Null)
        }
        other => other,
    };
    let Value::Object(o) = &v else {
        report.warn(
            file,
            "",
            format!(
                "expected a mapping, found {}; network config ignored",
                kind(&v)
            ),
        );
        return None;
    };
    if o.get("config").and_then(Value::as_str) == Some("disabled") {
        return Some(NetworkConfig::Disabled {
            file: file.to_string(),
        });
    }
    let version = o.get("version").and_then(scalar_text);
    match version.as_deref().map(str::trim) {
        Some("1") => {
            if !matches!(o.get("config"), Some(Value::Array(_))) {
                report.warn(file, "config", "version 1 without a `config` list");
            }
            Some(NetworkConfig::V1 {
                file: file.to_string(),
                config: v,
            })
        }
        Some("2") => Some(NetworkConfig::V2 {
            file: file.to_string(),
            config: v,
        }),
        Some(other) => {
            report.warn(
                file,
                "version",
                format!("unknown version {other:?} (1 or 2 expected); network config ignored"),
            );
            None
        }
        None => {
            report.warn(
                file,
                "version",
                "missing (1 or 2 expected); network config ignored",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(files: &[(&str, &str)]) -> DriveFiles {
        let mut d = DriveFiles::new("/dev/nc", "dir");
        for (p, c) in files {
            d.files.insert(p.to_string(), c.as_bytes().to_vec().into());
        }
        d
    }

    #[test]
    fn seed_with_every_file() {
        let d = drive(&[
            (
                "meta-data",
                "instance-id: iid-1\nlocal-hostname: h1\npublic-keys:\n  - ssh-ed25519 AAAA a@b\nseedfrom: http://x/\n",
            ),
            ("user-data", "#cloud-config\n"),
            ("vendor-data", "#cloud-config\n{}\n"),
            ("network-config", "network:\n  version: 2\n  ethernets: {}\n"),
        ]);
        let (i, r) = parse_nocloud(&d).unwrap();
        assert_eq!(i.instance_id, "iid-1");
        assert_eq!(i.hostname.as_deref(), Some("h1"));
        assert_eq!(i.ssh_keys, vec!["ssh-ed25519 AAAA a@b"]);
        assert_eq!(i.seedfrom.as_deref(), Some("http://x/"));
        assert!(
            matches!(&i.network[0], NetworkConfig::V2 { config, .. } if config["version"] == 2)
        );
        assert_eq!(i.vendor_user_data.len(), 1);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn defaults_and_eni() {
        let d = drive(&[
            (
                "meta-data",
                "network-interfaces: |\n  auto eth0\n  iface eth0 inet dhcp\n",
            ),
            ("user-data", ""),
        ]);
        let (i, r) = parse_nocloud(&d).unwrap();
        assert_eq!(i.instance_id, DEFAULT_INSTANCE_ID);
        assert!(i.user_data.is_none());
        assert!(
            matches!(&i.network[0], NetworkConfig::Eni { text, .. } if text.contains("iface eth0"))
        );
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].field, "instance-id");
    }

    #[test]
    fn network_config_shapes() {
        let mut r = Report::default();
        let v = |s: &str| parse_yaml("d", "n", s.as_bytes(), YamlProfile::Data).unwrap();
        assert!(matches!(
            network_config(v("version: 1\nconfig: []\n"), "n", &mut r),
            Some(NetworkConfig::V1 { .. })
        ));
        assert!(matches!(
            network_config(v("network: {config: disabled}\n"), "n", &mut r),
            Some(NetworkConfig::Disabled { .. })
        ));
        assert!(network_config(v("version: 3\n"), "n", &mut r).is_none());
        assert!(network_config(v("ethernets: {}\n"), "n", &mut r).is_none());
        assert!(network_config(v("[1]\n"), "n", &mut r).is_none());
        assert_eq!(r.warnings.len(), 3);
        assert!(r.warnings.iter().all(|w| w.file == "n"));
    }

    #[test]
    fn bad_meta_data_is_an_error_naming_the_file() {
        let d = drive(&[("meta-data", "a: 1\na: 2\n")]);
        let e = parse_nocloud(&d).unwrap_err().to_string();
        assert!(e.starts_with("/dev/nc: meta-data: invalid YAML"), "{e}");
        let d = drive(&[("meta-data", "- a\n")]);
        assert!(parse_nocloud(&d)
            .unwrap_err()
            .to_string()
            .contains("expected a mapping"));
    }
}
