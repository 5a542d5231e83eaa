//! OVF environment transport (FORMATS.md §3, DMTF DSP0243): `ovf-env.xml` (or `ovf_env.xml`, any
//! case, level-1 mangled) parsed with quick-xml. The root must be `Environment` in the namespace
//! `http://schemas.dmtf.org/ovf/environment/1`, matched by URI, never by prefix; properties are
//! the `PropertySection/Property` children of that root with namespaced `key`/`value` attributes
//! (nested `Entity` sections describe other VMs and are skipped). Azure's provisioning
//! environment is a different schema and a clear error.
//!
//! Safety: a DOCTYPE is refused outright, so no entity can be declared, let alone expanded
//! (quick-xml never expands external entities; unknown references are errors); nesting is
//! bounded; the document size is capped. Pure: `seedfrom` is recorded, never fetched.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::XmlVersion;
use serde_json::Value;

use super::nocloud::network_config;
use super::value::{check_size, decode_base64, parse_yaml, YamlProfile, MAX_DEPTH, MAX_DOC_BYTES};
use super::SourceError;
use crate::media::DriveFiles;
use crate::model::{Blob, Format, Instance, Report, Secret};

/// The OVF environment namespace (DSP0243).
pub const OVF_ENV_NS: &str = "http://schemas.dmtf.org/ovf/environment/1";
/// Azure's provisioning namespace (its `ovf-env.xml` is not an OVF property environment).
const AZURE_NS: &str = "http://schemas.microsoft.com/windowsazure";

/// File names producers use; lookups are case-insensitive and accept level-1 names.
pub const ENV_FILE_NAMES: &[&str] = &["ovf-env.xml", "ovf_env.xml"];

/// cloud-init's instance id for an environment that names none.
pub const DEFAULT_INSTANCE_ID: &str = "iid-dsovf";

/// Key types that start an OpenSSH public key line, used to split keys that XML attribute
/// normalisation joined into one line (and by `make-drive` to check a description's keys).
pub(crate) const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ssh-ed448",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The stored path of the environment file at the top of the drive, when there is one.
pub fn env_file(drive: &DriveFiles) -> Option<String> {
    ENV_FILE_NAMES
        .iter()
        .find_map(|n| drive.resolve(n))
        .map(str::to_string)
}

/// Parses the OVF environment of a drive (or of a lone `ovf-env.xml` given as the source).
pub fn parse_ovf(drive: &DriveFiles) -> Result<(Instance, Report), SourceError> {
    let file = env_file(drive).ok_or_else(|| SourceError::Field {
        device: drive.device.clone(),
        file: "ovf-env.xml".into(),
        field: String::new(),
        detail: "missing".into(),
    })?;
    let bytes = drive.get(&file).unwrap_or_default();
    parse_ovf_env(&drive.device, &file, bytes)
}

/// One `Property` of the environment.
struct Property {
    key: String,
    value: String,
}

/// Parses `ovf-env.xml` bytes.
pub fn parse_ovf_env(
    device: &str,
    file: &str,
    bytes: &[u8],
) -> Result<(Instance, Report), SourceError> {
    check_size(device, file, "", bytes.len(), MAX_DOC_BYTES)?;
    let mut report = Report::default();
    let props = read_properties(device, file, bytes, &mut report)?;

    let mut last: std::collections::BTreeMap<&str, &str> = Default::default();
    for p in &props {
        if let Some(prev) = last.insert(&p.key, &p.value) {
            // Several public-keys properties are normal (one key each); all are used.
            if prev != p.value && p.key != "public-keys" {
                report.warn(file, &p.key, "property given twice; the last value wins");
            }
        }
    }
    let get = |k: &str| last.get(k).copied().filter(|v| !v.trim().is_empty());

    let id = match get("instance-id") {
        Some(v) => v.trim().to_string(),
        None => {
            report.warn(
                file,
                "instance-id",
                format!("missing; using cloud-init's default {DEFAULT_INSTANCE_ID:?}"),
            );
            DEFAULT_INSTANCE_ID.to_string()
        }
    };
    let mut inst = Instance::new(Format::Ovf, "environment/1", id);

    // cloud-init treats `hostname` as `local-hostname`; local-hostname is the precise key.
    inst.hostname = match (get("local-hostname"), get("hostname")) {
        (Some(l), Some(h)) if l.trim() != h.trim() => {
            report.warn(
                file,
                "hostname",
                "differs from local-hostname; local-hostname wins",
            );
            Some(l.trim().to_string())
        }
        (Some(v), _) | (None, Some(v)) => Some(v.trim().to_string()),
        (None, None) => None,
    };
    for p in props.iter().filter(|p| p.key == "public-keys") {
        for line in p.value.lines() {
            for key in split_joined_keys(line) {
                super::push_keys(&mut inst, &key);
            }
        }
    }
    if let Some(ud) = get("user-data") {
        // Base64 by convention; cloud-init falls back to the raw value, and so does primer.
        inst.user_data = Some(Blob::new(match decode_base64(ud) {
            Some(b) => b,
            None => ud.as_bytes().to_vec(),
        }));
    }
    if let Some(p) = last.get("password").filter(|p| !p.is_empty()) {
        inst.admin_pass = Some(Secret::new(p.as_bytes().to_vec()));
    }
    inst.admin_username = get("username").map(|s| s.trim().to_string());
    inst.seedfrom = get("seedfrom").map(|s| s.trim().to_string());
    if let Some(nc) = get("network-config") {
        let yaml = match decode_base64(nc) {
            Some(b) => b,
            None => {
                report.warn(
                    file,
                    "network-config",
                    "not base64 (the OVF convention); read as plain YAML",
                );
                nc.as_bytes().to_vec()
            }
        };
        let at = format!("{file}#network-config");
        match parse_yaml(device, &at, &yaml, YamlProfile::Data) {
            Ok(Value::Null) => {}
            Ok(v) => {
                if let Some(c) = network_config(v, &at, &mut report) {
                    inst.network.push(c);
                }
            }
            Err(e) => report.warn(file, "network-config", format!("{}; ignored", e.reason())),
        }
    }
    for (k, v) in &last {
        let known = matches!(
            *k,
            "instance-id"
                | "hostname"
                | "local-hostname"
                | "public-keys"
                | "user-data"
                | "password"
                | "username"
                | "network-config"
                | "seedfrom"
        );
        if !known {
            // Vendor and appliance properties (vSphere `fqdn`, `app_*`): user data of a kind,
            // as OpenStack `meta` is. Kept verbatim, no warning.
            inst.meta
                .insert(k.to_string(), Value::String(v.to_string()));
        }
    }
    super::dedup_keys(&mut inst.ssh_keys);
    Ok((inst, report))
}

/// Splits a line holding several keys (XML attribute normalisation turns line breaks into
/// spaces) at each token that is a key type.
fn split_joined_keys(line: &str) -> Vec<String> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for tok in line.split_whitespace() {
        match out.last_mut() {
            Some(cur) if !KEY_TYPES.contains(&tok) => cur.push(tok),
            _ => out.push(vec![tok]),
        }
    }
    out.into_iter().map(|t| t.join(" ")).collect()
}

fn is_ns(r: &ResolveResult, ns: &str) -> bool {
    matches!(r, ResolveResult::Bound(n) if n.into_inner() == ns)
}

/// Reads the `Property` elements of the root's `PropertySection`s.
fn read_properties(
    device: &str,
    file: &str,
    bytes: &[u8],
    report: &mut Report,
) -> Result<Vec<Property>, SourceError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let xml_err = |position: u64, detail: String| SourceError::Xml {
        device: device.to_string(),
        file: file.to_string(),
        position,
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        xml_err(
            e.valid_up_to() as u64,
            "not UTF-8 (the OVF environment is UTF-8)".into(),
        )
    })?;
    let mut reader = NsReader::from_str(text);
    // Element path from the root: (in the OVF namespace, local name).
    let mut path: Vec<(bool, String)> = Vec::new();
    let mut seen_root = false;
    let mut azure = false;
    let mut props = Vec::new();
    // Every Property element seen, for warnings (accepted or not).
    let mut seen_props = 0usize;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| xml_err(reader.error_position(), e.to_string()))?;
        let pos = reader.buffer_position();
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(_) => {
                path.pop();
                continue;
            }
            Event::DocType(_) => {
                return Err(xml_err(
                    pos,
                    "DOCTYPE refused: entity declarations are never expanded".into(),
                ))
            }
            Event::GeneralRef(r) => {
                // Character references are fine; anything else would be an entity.
                if r.is_char_ref() {
                    continue;
                }
                let name: &str = r.as_ref();
                if !matches!(name, "lt" | "gt" | "amp" | "apos" | "quot") {
                    return Err(xml_err(pos, format!("entity reference &{name}; refused")));
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let Some(e) = start else { continue };
        let (ns, local) = reader.resolver().resolve_element(e.name());
        let in_ovf = is_ns(&ns, OVF_ENV_NS);
        let local = local.into_inner().to_string();
        if !seen_root {
            seen_root = true;
            if !(in_ovf && local == "Environment") {
                let found = match &ns {
                    ResolveResult::Bound(n) => format!("{{{}}}{local}", n.into_inner()),
                    _ => local.clone(),
                };
                return Err(SourceError::Field {
                    device: device.to_string(),
                    file: file.to_string(),
                    field: "Environment".into(),
                    detail: format!(
                        "root element is {found}, not Environment in namespace {OVF_ENV_NS}: not an OVF environment"
                    ),
                });
            }
        } else if path.is_empty() {
            return Err(xml_err(pos, "content after the root element".into()));
        }
        let depth = path.len() + 1;
        if depth > MAX_DEPTH {
            return Err(xml_err(pos, format!("nesting deeper than {MAX_DEPTH}")));
        }
        if depth == 2 && is_ns(&ns, AZURE_NS) && local == "ProvisioningSection" {
            azure = true;
        }
        let parent_is_section = depth == 3
            && path
                .get(1)
                .is_some_and(|(o, n)| *o && n == "PropertySection");
        if parent_is_section && in_ovf && local == "Property" {
            seen_props += 1;
            if let Some(p) =
                property(&reader, e, file, seen_props - 1, report).map_err(|d| xml_err(pos, d))?
            {
                props.push(p);
            }
        }
        if !empty {
            path.push((in_ovf, local));
        }
    }
    if !seen_root {
        return Err(xml_err(0, "no root element".into()));
    }
    if azure && props.is_empty() {
        return Err(SourceError::Field {
            device: device.to_string(),
            file: file.to_string(),
            field: "ProvisioningSection".into(),
            detail: format!(
                "an Azure provisioning environment ({AZURE_NS}), not OVF properties: not supported"
            ),
        });
    }
    Ok(props)
}

/// The key and value of one `Property`: the attributes in the OVF namespace; unqualified ones are
/// accepted with a warning (some generators drop the prefix). `Ok(None)` with a warning when the
/// key is missing.
fn property(
    reader: &NsReader<&[u8]>,
    e: &BytesStart,
    file: &str,
    index: usize,
    report: &mut Report,
) -> Result<Option<Property>, String> {
    let mut key = None;
    let mut value = None;
    let mut bare_key = None;
    let mut bare_value = None;
    let field = format!("Property[{index}]");
    for attr in e.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let (ns, local) = reader.resolver().resolve_attribute(attr.key);
        let v = || {
            attr.normalized_value(XmlVersion::Implicit1_0)
                .map(|c| c.into_owned())
                .map_err(|e| e.to_string())
        };
        match (
            is_ns(&ns, OVF_ENV_NS),
            matches!(ns, ResolveResult::Unbound),
            local.into_inner(),
        ) {
            (true, _, "key") => key = Some(v()?),
            (true, _, "value") => value = Some(v()?),
            (_, true, "key") => bare_key = Some(v()?),
            (_, true, "value") => bare_value = Some(v()?),
            _ => {
                if let ResolveResult::Unknown(prefix) = &ns {
                    report.warn(
                        file,
                        &field,
                        format!("attribute prefix {prefix:?} is not declared; attribute ignored"),
                    );
                }
            }
        }
    }
    if key.is_none() && bare_key.is_some() {
        report.warn(
            file,
            &field,
            "key/value attributes without the OVF namespace; accepted",
        );
    }
    let Some(key) = key.or(bare_key) else {
        report.warn(file, &field, "no key attribute; ignored");
        return Ok(None);
    };
    let value = value.or(bare_value).unwrap_or_else(|| {
        report.warn(file, &key, "no value attribute; taken as empty");
        String::new()
    });
    Ok(Some(Property { key, value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(props: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:o="http://schemas.dmtf.org/ovf/environment/1">
  <PropertySection>{props}</PropertySection>
  <Entity o:id="other"><PropertySection><Property o:key="instance-id" o:value="not-me"/></PropertySection></Entity>
</Environment>"#
        )
    }

    #[test]
    fn properties_by_namespace_uri() {
        let x = env(r#"<Property o:key="instance-id" o:value="i-1"/>
               <Property o:key="hostname" o:value="h"/>
               <Property o:key="public-keys" o:value="ssh-ed25519 AAAA a@b&#10;ssh-rsa BBBB c@d"/>
               <Property o:key="public-keys" o:value="ssh-ed25519 CCCC e@f ssh-rsa DDDD g@h"/>
               <Property o:key="user-data" o:value="IyEvYmluL3NoCg=="/>
               <Property o:key="password" o:value="pw"/>
               <Property o:key="username" o:value="admin"/>
               <Property o:key="seedfrom" o:value="http://x/"/>
               <Property o:key="app_role" o:value="web"/>"#);
        let (i, r) = parse_ovf_env("d", "ovf-env.xml", x.as_bytes()).unwrap();
        assert_eq!(i.instance_id, "i-1");
        assert_eq!(i.hostname.as_deref(), Some("h"));
        assert_eq!(i.ssh_keys.len(), 4, "{:?}", i.ssh_keys);
        assert_eq!(i.user_data.unwrap().0, b"#!/bin/sh\n");
        assert_eq!(i.admin_pass.unwrap().expose(), b"pw");
        assert_eq!(i.admin_username.as_deref(), Some("admin"));
        assert_eq!(i.seedfrom.as_deref(), Some("http://x/"));
        assert_eq!(i.meta["app_role"], "web");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn refusals() {
        let doctype = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"/>"#;
        let e = parse_ovf_env("d", "f", doctype.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("DOCTYPE refused"), "{e}");
        let azure = r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure"><wa:ProvisioningSection/></Environment>"#;
        let e = parse_ovf_env("d", "f", azure.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("Azure"), "{e}");
        let other = r#"<Environment xmlns="urn:other"><PropertySection/></Environment>"#;
        let e = parse_ovf_env("d", "f", other.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an OVF environment"), "{e}");
        let deep = format!(
            "<Environment xmlns=\"{OVF_ENV_NS}\">{}{}</Environment>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        let e = parse_ovf_env("d", "f", deep.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nesting"), "{e}");
        let e = parse_ovf_env("d", "f", b"<Environment \xff/>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let bad = env(r#"<Property o:key="x" o:value="&foo;"/>"#);
        assert!(parse_ovf_env("d", "f", bad.as_bytes()).is_err());
    }

    #[test]
    fn defaults_and_prefix_free_attributes() {
        let x = env(r#"<Property key="hostname" value="h"/>"#);
        let (i, r) = parse_ovf_env("d", "f", x.as_bytes()).unwrap();
        assert_eq!(i.instance_id, DEFAULT_INSTANCE_ID);
        assert_eq!(i.hostname.as_deref(), Some("h"));
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    }
}
