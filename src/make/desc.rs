//! The description make-drive builds a drive from (`--from FILE`, JSON or YAML) and its checks.
//! Every value is checked against what the drive file it lands in can carry, and the network
//! input through primer's own network parsers, before anything is written. Reads only the input
//! files the description names; writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{DriveFormat, MakeError};
use crate::model::grammar;

/// Largest description file accepted.
pub const MAX_DESCRIPTION: u64 = 1 << 20;
/// Largest inline or file input read into memory (user data, vendor data, network input); an
/// injected file is streamed instead and bounded only by the filesystem.
pub const MAX_IN_MEMORY: u64 = 64 << 20;
/// Most SSH keys, meta entries and injected files (nova's own quotas are far lower).
pub const MAX_ITEMS: usize = 1000;

/// What the drive should say. Unknown keys are refused so a typo does not silently drop a value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// The instance id (nova's `uuid`).
    pub instance_id: String,
    /// The host name, possibly a FQDN.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Display name (OpenStack `name`).
    #[serde(default)]
    pub name: Option<String>,
    /// SSH public key lines, or an object name -> key line.
    #[serde(default)]
    pub public_keys: Keys,
    /// The administrator password (OpenStack top-level `admin_pass`, CloudStack's password file,
    /// the OVF `password` property).
    #[serde(default)]
    pub admin_pass: Option<String>,
    /// The account the password and keys are for (`meta.admin_username`, OVF `username`).
    #[serde(default)]
    pub admin_username: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Free-form user key/values (OpenStack `meta`, OVF properties).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// `network_data.json` or network config v1/v2: inline, or `{file: PATH}`.
    #[serde(default)]
    pub network: Option<Input>,
    #[serde(default)]
    pub user_data: Option<Data>,
    #[serde(default)]
    pub vendor_data: Option<Data>,
    /// Injected files (OpenStack `files`, content under `openstack/content/NNNN`).
    #[serde(default)]
    pub files: Vec<Injected>,
    /// The directory relative `file:` references are resolved against (the description's).
    #[serde(skip)]
    pub base: PathBuf,
    /// The description file, for error messages.
    #[serde(skip)]
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Keys {
    List(Vec<String>),
    Named(BTreeMap<String, String>),
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::List(Vec::new())
    }
}

/// Bytes given inline (a string), as base64, or by a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Data {
    Text(String),
    File { file: PathBuf },
    Base64 { base64: String },
}

/// A structured document given inline or by a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    File { file: PathBuf },
    Doc(serde_json::Value),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injected {
    /// Absolute path on the instance.
    pub path: String,
    pub content: Data,
}

/// Which network syntax the description holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    NetworkData,
    NetworkConfig,
}

impl Description {
    /// Reads a description file: JSON when it starts with `{`, else YAML (bounded by the YAML
    /// parser's budget: depth, events and alias expansion).
    pub fn load(path: &Path) -> Result<Description, MakeError> {
        let file = path.display().to_string();
        let md = std::fs::metadata(path).map_err(|e| MakeError::io(path, e))?;
        if md.len() > MAX_DESCRIPTION {
            return Err(MakeError::Parse {
                file,
                message: format!("larger than {MAX_DESCRIPTION} bytes"),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| MakeError::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| MakeError::Parse {
            file: file.clone(),
            message: format!("not UTF-8: {e}"),
        })?;
        let mut d: Description = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| MakeError::Parse {
                file: file.clone(),
                message: format!("invalid JSON: {e}"),
            })?
        } else {
            serde_saphyr::from_str(text).map_err(|e| MakeError::Parse {
                file: file.clone(),
                message: format!("invalid YAML: {e}"),
            })?
        };
        d.base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        d.source = file;
        Ok(d)
    }

    fn err(&self, field: &str, message: impl Into<String>) -> MakeError {
        MakeError::field(&self.source, field, message)
    }

    /// The key lines in order (named keys in name order).
    pub fn key_lines(&self) -> Vec<String> {
        match &self.public_keys {
            Keys::List(l) => l.clone(),
            Keys::Named(m) => m.values().cloned().collect(),
        }
    }

    /// `(name, line)` pairs: the given names, or `key-N` for a list.
    pub fn named_keys(&self) -> Vec<(String, String)> {
        match &self.public_keys {
            Keys::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("key-{i}"), k.clone()))
                .collect(),
            Keys::Named(m) => m.iter().map(|(n, k)| (n.clone(), k.clone())).collect(),
        }
    }

    /// Resolves a `file:` reference against the description's directory.
    pub fn path_of(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The bytes of a data value, bounded by [`MAX_IN_MEMORY`].
    pub fn bytes_of(&self, field: &str, d: &Data) -> Result<Vec<u8>, MakeError> {
        match d {
            Data::Text(s) => Ok(s.as_bytes().to_vec()),
            Data::Base64 { base64 } => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(base64.trim())
                    .map_err(|e| self.err(field, format!("not valid base64: {e}")))
            }
            Data::File { file } => {
                let p = self.path_of(file);
                let md = std::fs::metadata(&p)
                    .map_err(|e| self.err(field, format!("{}: {e}", p.display())))?;
                if md.len() > MAX_IN_MEMORY {
                    return Err(self.err(
                        field,
                        format!("{}: larger than {MAX_IN_MEMORY} bytes", p.display()),
                    ));
                }
                std::fs::read(&p).map_err(|e| self.err(field, format!("{}: {e}", p.display())))
            }
        }
    }

    /// The network document and its syntax, parsed and checked by primer's network parsers
    /// (a warning is an error here: the drive should say exactly what was meant).
    pub fn network_doc(&self) -> Result<Option<(serde_json::Value, NetKind)>, MakeError> {
        let Some(input) = &self.network else {
            return Ok(None);
        };
        let bytes = match input {
            Input::Doc(v) => {
                serde_json::to_vec(v).map_err(|e| self.err("network", e.to_string()))?
            }
            Input::File { file } => self.bytes_of("network", &Data::File { file: file.clone() })?,
        };
        // Which syntax: network config has a `version` (possibly under `network:`);
        // network_data.json has `links`/`networks`/`services`.
        let value: serde_json::Value = match input {
            Input::Doc(v) => v.clone(),
            Input::File { .. } => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|e| self.err("network", format!("not UTF-8: {e}")))?;
                serde_saphyr::from_str(text)
                    .map_err(|e| self.err("network", format!("invalid YAML/JSON: {e}")))?
            }
        };
        let Some(obj) = value.as_object() else {
            return Err(self.err(
                "network",
                "expected an object (network_data.json or network config v1/v2)",
            ));
        };
        let kind = if obj.contains_key("version") || obj.contains_key("network") {
            NetKind::NetworkConfig
        } else {
            NetKind::NetworkData
        };
        let format = match kind {
            NetKind::NetworkData => crate::net::InputFormat::NetworkData,
            NetKind::NetworkConfig => crate::net::InputFormat::NetworkConfig,
        };
        let canonical =
            serde_json::to_vec(&value).map_err(|e| self.err("network", e.to_string()))?;
        let (cfg, report) =
            crate::net::parse_network(&canonical, format, "network").map_err(|e| {
                self.err(
                    format!("network.{}", e.field).trim_end_matches('.'),
                    e.message,
                )
            })?;
        if let Some(w) = report.warnings.first() {
            let f = if w.field.is_empty() {
                "network".to_string()
            } else {
                format!("network.{}", w.field)
            };
            return Err(self.err(&f, w.message.clone()));
        }
        crate::net::validate(&cfg, "network")
            .map_err(|e| self.err(&format!("network.{}", e.field), e.message))?;
        Ok(Some((value, kind)))
    }

    /// Checks every field against what the drive files of `format` can carry.
    pub fn validate(&self, format: DriveFormat) -> Result<(), MakeError> {
        let id = &self.instance_id;
        if id.is_empty() || id.len() > 255 {
            return Err(self.err("instance_id", "must be 1 to 255 bytes"));
        }
        grammar::line_safe(id).map_err(|e| self.err("instance_id", e.to_string()))?;
        // It names a directory under /var/lib/primer/instance.
        if id == "." || id == ".." || id.contains('/') || id.contains('\\') {
            return Err(self.err(
                "instance_id",
                "must not be . or .. or contain a path separator",
            ));
        }
        if let Some(h) = &self.hostname {
            grammar::dns_name(h).map_err(|e| self.err("hostname", e.to_string()))?;
        }
        for (f, v) in [
            ("name", &self.name),
            ("admin_username", &self.admin_username),
            ("availability_zone", &self.availability_zone),
        ] {
            if let Some(v) = v {
                grammar::line_safe(v).map_err(|e| self.err(f, e.to_string()))?;
                if v.is_empty() || v.len() > 255 {
                    return Err(self.err(f, "must be 1 to 255 bytes"));
                }
            }
        }
        if let Some(p) = &self.admin_pass {
            grammar::line_safe(p).map_err(|e| self.err("admin_pass", e.to_string()))?;
            if p.is_empty() || p.len() > 1024 {
                return Err(self.err("admin_pass", "must be 1 to 1024 bytes"));
            }
        }
        let keys = self.named_keys();
        if keys.len() > MAX_ITEMS {
            return Err(self.err("public_keys", format!("more than {MAX_ITEMS} keys")));
        }
        for (i, (name, line)) in keys.iter().enumerate() {
            let field = match &self.public_keys {
                Keys::List(_) => format!("public_keys[{i}]"),
                Keys::Named(_) => format!("public_keys.{name}"),
            };
            check_key(line).map_err(|m| self.err(&field, m))?;
            grammar::line_safe(name).map_err(|e| self.err(&field, format!("name: {e}")))?;
        }
        if self.meta.len() > MAX_ITEMS {
            return Err(self.err("meta", format!("more than {MAX_ITEMS} entries")));
        }
        for (k, v) in &self.meta {
            let field = format!("meta.{k}");
            if k.is_empty() || k.len() > 255 {
                return Err(self.err(&field, "key must be 1 to 255 bytes"));
            }
            grammar::line_safe(k).map_err(|e| self.err(&field, format!("key: {e}")))?;
            // nova limits meta values to 255 bytes; OVF carries them in one attribute.
            if v.len() > 255 {
                return Err(self.err(&field, "value longer than 255 bytes (nova's limit)"));
            }
            grammar::line_safe(v).map_err(|e| self.err(&field, e.to_string()))?;
            if matches!(k.as_str(), "admin_pass" | "admin_username") {
                return Err(self.err(&field, format!("use the top-level `{k}`")));
            }
        }
        if self.files.len() > MAX_ITEMS {
            return Err(self.err("files", format!("more than {MAX_ITEMS} injected files")));
        }
        for (i, f) in self.files.iter().enumerate() {
            let field = format!("files[{i}].path");
            grammar::line_safe(&f.path).map_err(|e| self.err(&field, e.to_string()))?;
            if !f.path.starts_with('/')
                || f.path.len() > 4096
                || f.path.split('/').any(|c| c == "." || c == "..")
            {
                return Err(self.err(
                    &field,
                    "must be an absolute path without . or .. components",
                ));
            }
            if let Data::File { file } = &f.content {
                let p = self.path_of(file);
                let md = std::fs::metadata(&p).map_err(|e| {
                    self.err(
                        &format!("files[{i}].content"),
                        format!("{}: {e}", p.display()),
                    )
                })?;
                if !md.is_file() {
                    return Err(self.err(
                        &format!("files[{i}].content"),
                        format!("{}: not a regular file", p.display()),
                    ));
                }
            }
        }
        // What each format can carry (FORMATS.md): refuse rather than drop.
        let only = |what: &str, ok: &[DriveFormat]| -> Result<(), MakeError> {
            if ok.contains(&format) {
                Ok(())
            } else {
                Err(self.err(
                    what,
                    format!(
                        "a {} drive cannot carry it (only {})",
                        format.name(),
                        ok.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        use DriveFormat::*;
        if !self.files.is_empty() {
            only("files", &[OpenStack])?;
        }
        if self.vendor_data.is_some() {
            only("vendor_data", &[OpenStack, CloudStack, NoCloud])?;
        }
        if self.admin_pass.is_some() {
            only("admin_pass", &[OpenStack, CloudStack, Ovf])?;
        }
        if self.admin_username.is_some() {
            only("admin_username", &[OpenStack, Ovf])?;
        }
        if self.name.is_some() {
            only("name", &[OpenStack, CloudStack])?;
        }
        if !self.meta.is_empty() {
            only("meta", &[OpenStack, CloudStack, Ovf])?;
        }
        if let Some((_, kind)) = self.network_doc()? {
            match (format, kind) {
                (OpenStack | CloudStack, NetKind::NetworkConfig) => {
                    return Err(self.err(
                        "network",
                        "OpenStack and CloudStack drives carry network_data.json (links, networks, services), not network config v1/v2",
                    ))
                }
                (NoCloud | Ovf, NetKind::NetworkData) => {
                    return Err(self.err(
                        "network",
                        "NoCloud and OVF drives carry network config v1/v2 (with `version`), not network_data.json",
                    ))
                }
                _ => {}
            }
        }
        if let Some(u) = &self.user_data {
            self.bytes_of("user_data", u)?;
        }
        if let Some(v) = &self.vendor_data {
            self.bytes_of("vendor_data", v)?;
        }
        for (i, f) in self.files.iter().enumerate() {
            if !matches!(f.content, Data::File { .. }) {
                self.bytes_of(&format!("files[{i}].content"), &f.content)?;
            }
        }
        Ok(())
    }
}

/// Key types an OpenSSH `authorized_keys` line may start with: the ones the OVF reader splits
/// keys on, so that what make-drive writes reads back whole.
use crate::source::ovf::KEY_TYPES;

/// One public key line: a known type, base64 key data, an optional comment; one line.
fn check_key(line: &str) -> Result<(), String> {
    grammar::line_safe(line).map_err(|e| e.to_string())?;
    if line.len() > 16 * 1024 {
        return Err("longer than 16 KiB".into());
    }
    let mut parts = line.split_whitespace();
    let ty = parts.next().unwrap_or("");
    if !KEY_TYPES.contains(&ty) {
        return Err(format!(
            "key type {:?} is not one of {}",
            grammar::Esc(ty).to_string(),
            KEY_TYPES.join(", ")
        ));
    }
    let data = parts.next().unwrap_or("");
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(data) {
        Ok(b) if b.len() > 4 => {
            // The blob starts with its own type name (RFC 4253 §6.6).
            let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if b.get(4..4 + n) != Some(ty.as_bytes()) {
                return Err(format!("key data does not hold a {ty} key"));
            }
            Ok(())
        }
        _ => Err("key data is not base64".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo@test";

    fn desc() -> Description {
        Description {
            instance_id: "i-1".into(),
            hostname: Some("web-1".into()),
            public_keys: Keys::List(vec![ED.into()]),
            source: "d.yaml".into(),
            ..Default::default()
        }
    }

    #[test]
    fn fields_are_checked_and_named() {
        assert!(desc().validate(DriveFormat::OpenStack).is_ok());
        type Case = (Box<dyn Fn(&mut Description)>, &'static str);
        let cases: Vec<Case> = vec![
            (Box::new(|d| d.instance_id = "a\nb".into()), "instance_id"),
            (Box::new(|d| d.instance_id = "../x".into()), "instance_id"),
            (
                Box::new(|d| d.hostname = Some("bad_host".into())),
                "hostname",
            ),
            (
                Box::new(|d| d.public_keys = Keys::List(vec![ED.into(), "ssh-rsa AAAA".into()])),
                "public_keys[1]",
            ),
            (
                Box::new(|d| {
                    d.public_keys = Keys::List(vec![ED.replace("ssh-ed25519 ", "ssh-rsa ")])
                }),
                "public_keys[0]",
            ),
            (
                Box::new(|d| d.admin_pass = Some("x\ny".into())),
                "admin_pass",
            ),
            (
                Box::new(|d| {
                    d.meta.insert("k".into(), "v\r".into());
                }),
                "meta.k",
            ),
            (
                Box::new(|d| {
                    d.files.push(Injected {
                        path: "etc/x".into(),
                        content: Data::Text("x".into()),
                    })
                }),
                "files[0].path",
            ),
            (
                Box::new(|d| {
                    d.network = Some(Input::Doc(
                        serde_json::json!({"version": 2, "ethernets": {"e": {"addresses": ["nope"]}}}),
                    ))
                }),
                "network",
            ),
        ];
        for (f, field) in cases {
            let mut d = desc();
            f(&mut d);
            match d.validate(DriveFormat::OpenStack) {
                Err(MakeError::Field { field: got, .. }) => {
                    assert!(got.starts_with(field), "{got} for {field}")
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn formats_refuse_what_they_cannot_carry() {
        let mut d = desc();
        d.admin_pass = Some("pw".into());
        assert!(
            matches!(d.validate(DriveFormat::NoCloud), Err(MakeError::Field { field, .. }) if field == "admin_pass")
        );
        let mut d = desc();
        d.network = Some(Input::Doc(
            serde_json::json!({"links": [], "networks": [], "services": []}),
        ));
        assert!(d.validate(DriveFormat::OpenStack).is_ok());
        assert!(
            matches!(d.validate(DriveFormat::NoCloud), Err(MakeError::Field { field, .. }) if field == "network")
        );
    }
}
