//! Model: the one typed description of an instance that every source format produces, and the
//! report of warnings. Pure data: no I/O, no parsing of drive formats (that is `source/`).

pub mod bytes;
pub mod grammar;
pub mod network;
pub mod userdata;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

pub use bytes::Bytes;

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

/// Raw bytes kept for later stages; serialised as a size and a short text preview only. Shared
/// ([`Bytes`]): a drive file is held once, whoever uses it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Bytes);

impl Blob {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Blob(bytes.into())
    }
}

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
    /// OpenStack config drive (`openstack/<version>/`), or its legacy `ec2/` view.
    OpenStack,
    /// CloudStack config drive (`cloudstack/`, merged with `openstack/` when both exist).
    CloudStack,
    /// OVF environment transport (`ovf-env.xml`, DMTF DSP0243).
    Ovf,
    /// NoCloud seed (`meta-data`, `user-data`, `vendor-data`, `network-config`).
    NoCloud,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::OpenStack => "openstack",
            Format::CloudStack => "cloudstack",
            Format::Ovf => "ovf",
            Format::NoCloud => "nocloud",
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

/// One entry of OpenStack `devices` (2016-06-30+): a NIC, disk or share with its tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Device {
    /// `nic`, `disk` or `share` (kept as given when unknown, with a warning).
    #[serde(rename = "type")]
    pub kind: String,
    pub bus: Option<String>,
    pub address: Option<String>,
    pub mac: Option<String>,
    pub serial: Option<String>,
    pub path: Option<String>,
    pub tags: Vec<String>,
    pub vlan: Option<u32>,
    pub vf_trusted: Option<bool>,
    /// Keys primer does not interpret, kept verbatim.
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Network configuration as the drive gives it, with the file it came from. The `net` stage turns
/// it into the typed network model; here it is only parsed, unwrapped and checked for shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NetworkConfig {
    /// OpenStack `network_data.json` (`links`, `networks`, `services`), held as its text.
    OpenStack {
        file: String,
        data: network::JsonDoc,
    },
    /// Network config version 1 (a list of `physical`, `bond`, `vlan`, ... entries): `config`
    /// is the whole document, a top-level `network:` wrapper removed.
    V1 {
        file: String,
        config: serde_json::Value,
    },
    /// Network config version 2 (netplan YAML), a top-level `network:` wrapper removed.
    V2 {
        file: String,
        config: serde_json::Value,
    },
    /// ifupdown (`/etc/network/interfaces`) text: OpenStack's legacy `network_config`, NoCloud's
    /// `network-interfaces`.
    Eni { file: String, text: String },
    /// `config: disabled`: the drive asks that networking be left alone.
    Disabled { file: String },
}

impl NetworkConfig {
    /// The drive file the configuration came from.
    pub fn file(&self) -> &str {
        match self {
            NetworkConfig::OpenStack { file, .. }
            | NetworkConfig::V1 { file, .. }
            | NetworkConfig::V2 { file, .. }
            | NetworkConfig::Eni { file, .. }
            | NetworkConfig::Disabled { file } => file,
        }
    }
}

/// One piece of vendor user-data: what OpenStack `vendor_data*.json` carries under `cloud-init`
/// (a string, or each element of a list), or NoCloud's `vendor-data` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorPart {
    /// The drive file it came from.
    pub file: String,
    /// MIME type when the producer named one (`{content, type}` list elements).
    pub content_type: Option<String>,
    pub data: Blob,
}

/// What a CloudStack drive says beyond the common fields (FORMATS.md §2), from
/// `cloudstack/metadata/*.txt` and the hyphenated keys CloudStack adds to `meta_data.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CloudStackInfo {
    /// `instance-id`: CloudStack's internal instance name (`i-2-34-VM`).
    pub instance_name: Option<String>,
    /// `vm-id`: the VM's UUID (what `meta_data.json` calls `uuid`).
    pub vm_id: Option<String>,
    pub service_offering: Option<String>,
    pub local_ipv4: Option<String>,
    pub public_ipv4: Option<String>,
    pub public_hostname: Option<String>,
    pub cloud_identifier: Option<String>,
    pub cloud_name: Option<String>,
    pub cloud_domain: Option<String>,
    pub hypervisor_host_name: Option<String>,
}

impl CloudStackInfo {
    pub fn is_empty(&self) -> bool {
        *self == CloudStackInfo::default()
    }
}

/// The normalised description of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub format: Format,
    /// What was read: the OpenStack version directory (`2018-08-27`, `latest`, `ec2/latest` for
    /// the EC2 fallback); for CloudStack the OpenStack version merged in, or `cloudstack` alone;
    /// `environment/1` for OVF; `seed` for NoCloud.
    pub version: String,
    pub instance_id: String,
    /// As the drive gives it (may be an FQDN, may be invalid: planning sanitises).
    pub hostname: Option<String>,
    /// Display name (not a hostname).
    pub name: Option<String>,
    /// SSH public key lines, in drive order, deduplicated.
    pub ssh_keys: Vec<String>,
    /// Free-form user key/values (OpenStack `meta` without the secrets, OVF properties primer
    /// does not interpret).
    pub meta: BTreeMap<String, serde_json::Value>,
    pub availability_zone: Option<String>,
    pub project_id: Option<String>,
    pub launch_index: Option<i64>,
    pub random_seed: Option<Secret>,
    /// The administrator password: OpenStack `admin_pass` (top level or in `meta`), the CloudStack
    /// password file, the OVF `password` property.
    pub admin_pass: Option<Secret>,
    /// The account the password (and keys) are meant for: OpenStack `meta.admin_username`, the
    /// OVF `username` property.
    pub admin_username: Option<String>,
    /// OpenStack `devices` (2016-06-30+).
    pub devices: Vec<Device>,
    /// OpenStack `dedicated_cpus` (2020-10-14+).
    pub dedicated_cpus: Vec<u32>,
    pub files: Vec<InjectedFile>,
    pub user_data: Option<Blob>,
    /// Raw vendor data files (`vendor_data.json`, `vendor_data2.json`, `vendor-data`).
    pub vendor_data: BTreeMap<String, Blob>,
    /// The vendor user-data extracted from them, in file order.
    pub vendor_user_data: Vec<VendorPart>,
    /// Network inputs, the preferred one first (e.g. `network_data.json` before the legacy ENI).
    pub network: Vec<NetworkConfig>,
    /// NoCloud/OVF `seedfrom`: recorded only; primer never fetches it.
    pub seedfrom: Option<String>,
    /// CloudStack specifics; `None` for other formats.
    pub cloudstack: Option<CloudStackInfo>,
    /// Keys of the metadata primer does not interpret, kept verbatim.
    pub unknown: BTreeMap<String, serde_json::Value>,
    /// The drive files this instance holds whole (user-data, vendor-data, injected files), by
    /// their stored drive path: the local copy writes these very buffers, so a file of tens of
    /// MiB is not held once more for it.
    #[serde(skip)]
    pub held: BTreeMap<String, Bytes>,
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
            admin_username: None,
            devices: Vec::new(),
            dedicated_cpus: Vec::new(),
            files: Vec::new(),
            user_data: None,
            vendor_data: BTreeMap::new(),
            vendor_user_data: Vec::new(),
            network: Vec::new(),
            seedfrom: None,
            cloudstack: None,
            unknown: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    /// Adds SSH key lines from a text holding one or several (one per line), skipping blanks,
    /// `#` comments and keys already present.
    pub fn add_ssh_keys(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if !line.is_empty()
                && !line.starts_with('#')
                && !self.ssh_keys.iter().any(|k| k == line)
            {
                self.ssh_keys.push(line.to_string());
            }
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

/// Most warnings one report keeps: a drive with a million bad list entries must not become a
/// million journal entries and a status file of that size. The last kept one says so.
pub const MAX_WARNINGS: usize = 1000;

impl Report {
    pub fn warn(&mut self, file: &str, field: &str, message: impl Into<String>) {
        match self.warnings.len() {
            n if n + 1 < MAX_WARNINGS => {}
            n if n + 1 == MAX_WARNINGS => {
                self.warnings.push(Warning {
                    file: file.to_string(),
                    field: String::new(),
                    message: format!("more than {MAX_WARNINGS} warnings: the rest are left out"),
                });
                return;
            }
            _ => return,
        }
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
    fn warnings_are_capped_with_a_last_word() {
        let mut r = Report::default();
        for n in 0..100_000 {
            r.warn("user-data", "mounts", format!("entry {n} ignored"));
        }
        assert_eq!(r.warnings.len(), MAX_WARNINGS);
        assert!(r.warnings[MAX_WARNINGS - 1].message.contains("left out"));
        assert_eq!(r.warnings[MAX_WARNINGS - 2].message, "entry 998 ignored");
    }

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
