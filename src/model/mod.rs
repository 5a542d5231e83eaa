//! Model: the one typed description of an instance that every source format produces, and the
//! report of warnings. Pure data: no I/O, no parsing of drive formats (that is `source/`).

pub mod network;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// Bytes that must never reach a log, the terminal or a world-readable file.
/// `Debug`, `Display` and `Serialize` all print `<redacted N bytes>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }
    /// The secret bytes; call only where they are consumed (apply), never to print.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("<redacted {} bytes>", self.0.len()))
    }
}

/// Raw bytes kept for later stages; serialised as a size and a short text preview only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("<{} bytes>", self.0.len()))
    }
}

/// Which format the instance came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    OpenStack,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::OpenStack => "openstack",
        })
    }
}

/// A file the cloud asks to place on the instance (OpenStack `files`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InjectedFile {
    /// Destination path on the instance, as given.
    pub path: String,
    /// Where its content is on the drive (`/content/0000`).
    pub content_path: String,
    /// The content, when the drive holds it.
    pub content: Option<Blob>,
}

/// The normalised description of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub format: Format,
    /// The version directory the data was read from (`2018-08-27`, `latest`).
    pub version: String,
    pub instance_id: String,
    /// As the drive gives it (may be an FQDN, may be invalid: planning sanitises).
    pub hostname: Option<String>,
    /// Display name (not a hostname).
    pub name: Option<String>,
    /// SSH public key lines, in drive order, deduplicated.
    pub ssh_keys: Vec<String>,
    pub meta: BTreeMap<String, serde_json::Value>,
    pub availability_zone: Option<String>,
    pub project_id: Option<String>,
    pub launch_index: Option<i64>,
    pub random_seed: Option<Secret>,
    pub admin_pass: Option<Secret>,
    pub files: Vec<InjectedFile>,
    pub user_data: Option<Blob>,
    /// `vendor_data.json`, `vendor_data2.json`: file name -> raw bytes.
    pub vendor_data: BTreeMap<String, Blob>,
    pub network_data: Option<Blob>,
    /// Keys of `meta_data.json` primer does not interpret, kept verbatim.
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl Instance {
    pub fn new(format: Format, version: impl Into<String>, instance_id: impl Into<String>) -> Self {
        Instance {
            format,
            version: version.into(),
            instance_id: instance_id.into(),
            hostname: None,
            name: None,
            ssh_keys: Vec::new(),
            meta: BTreeMap::new(),
            availability_zone: None,
            project_id: None,
            launch_index: None,
            random_seed: None,
            admin_pass: None,
            files: Vec::new(),
            user_data: None,
            vendor_data: BTreeMap::new(),
            network_data: None,
            unknown: BTreeMap::new(),
        }
    }
}

/// One warning, naming the file and field it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub file: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// Warnings gathered while reading and planning. Never fatal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub warnings: Vec<Warning>,
}

impl Report {
    pub fn warn(&mut self, file: &str, field: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: file.to_string(),
            field: field.to_string(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "<redacted 7 bytes>");
        assert_eq!(format!("{s}"), "<redacted 7 bytes>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted 7 bytes>\"");
        let mut i = Instance::new(Format::OpenStack, "latest", "id");
        i.admin_pass = Some(s);
        let json = serde_json::to_string(&i).unwrap();
        assert!(!json.contains("hunter2"));
        assert!(!format!("{i:?}").contains("hunter2"));
    }
}
