//! Source: detects which format a drive holds and parses its files (`DriveFiles`) into the typed
//! `Instance` and a `Report` of warnings. Pure: no I/O, no clock, no network (a `seedfrom` URL is
//! recorded, never fetched); every problem names the device, file and field; hostile input gives
//! an error or a warning, never a panic.
//!
//! Detection order (first match wins), see FORMATS.md:
//! 1. `cloudstack/` tree → CloudStack (merged with `openstack/<version>` when present);
//! 2. `openstack/` tree → OpenStack;
//! 3. `ovf-env.xml` at the top (any spelling of FORMATS.md §3) → OVF;
//! 4. `meta-data` or `user-data` at the top → NoCloud;
//! 5. `ec2/` tree alone → OpenStack's legacy EC2 view (used only when `openstack/` is absent).

pub mod cloudstack;

pub mod nocloud;
pub mod openstack;
pub mod ovf;
pub mod userdata;
pub mod value;

use serde_json::Value;

use crate::media::DriveFiles;
use crate::model::{Instance, Report};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{device}: {}: missing (is this an OpenStack config drive? expected openstack/<version>/meta_data.json)", safe(file))]
    Missing { device: String, file: String },
    #[error(
        "{device}: {}: invalid JSON at line {line}, column {column}: {}",
        safe(file),
        safe(detail)
    )]
    Json {
        device: String,
        file: String,
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{device}: {}: invalid YAML: {}", safe(file), safe(detail))]
    Yaml {
        device: String,
        file: String,
        detail: String,
    },
    #[error(
        "{device}: {}: invalid XML at byte {position}: {}",
        safe(file),
        safe(detail)
    )]
    Xml {
        device: String,
        file: String,
        position: u64,
        detail: String,
    },
    #[error("{device}: {}{}: {}", safe(file), at(field), safe(detail))]
    Field {
        device: String,
        file: String,
        field: String,
        detail: String,
    },
    #[error(
        "{device}: {}{}: too large ({size} bytes > limit {limit})",
        safe(file),
        at(field)
    )]
    TooLarge {
        device: String,
        file: String,
        field: String,
        size: u64,
        limit: u64,
    },
    /// A drive file the parse needs (user-data kept on the device) could not be read again,
    /// or changed since it was read: `detail` names the device and the file.
    #[error("{}; the drive is not used", safe(detail))]
    Reread { detail: String },
    #[error("{device}: no known format found ({fstype} volume holding {files} file(s); expected an openstack/, cloudstack/ or ec2/ tree, an ovf-env.xml, or NoCloud meta-data/user-data at the top)")]
    UnknownFormat {
        device: String,
        /// What was read, so an empty or half-read volume shows as such.
        fstype: String,
        files: usize,
    },
}

/// `": field"`, or nothing for a message about the whole file.
fn at(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!(": {}", safe(field))
    }
}

/// A drive-derived part of an error message (a stored file name, a field path built from
/// drive keys, a parser's detail quoting the drive): log-safe, see `grammar::log_safe`.
fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    crate::model::grammar::log_safe(s, crate::model::grammar::LOG_MAX)
}

impl SourceError {
    /// The drive file the error is about, when it is about one.
    pub fn file(&self) -> Option<&str> {
        match self {
            SourceError::Missing { file, .. }
            | SourceError::Json { file, .. }
            | SourceError::Yaml { file, .. }
            | SourceError::Xml { file, .. }
            | SourceError::Field { file, .. }
            | SourceError::TooLarge { file, .. } => Some(file),
            SourceError::UnknownFormat { .. } | SourceError::Reread { .. } => None,
        }
    }

    /// The message without the device and file, for a warning that names the file itself.
    pub fn reason(&self) -> String {
        match self {
            SourceError::Missing { .. } => "missing".into(),
            SourceError::Json {
                line,
                column,
                detail,
                ..
            } => format!("invalid JSON at line {line}, column {column}: {detail}"),
            SourceError::Yaml { detail, .. } => format!("invalid YAML: {detail}"),
            SourceError::Xml {
                position, detail, ..
            } => format!("invalid XML at byte {position}: {detail}"),
            SourceError::Field { field, detail, .. } if field.is_empty() => detail.clone(),
            SourceError::Field { field, detail, .. } => format!("{field}: {detail}"),
            SourceError::TooLarge {
                field, size, limit, ..
            } => format!(
                "{}too large ({size} bytes > limit {limit})",
                if field.is_empty() {
                    String::new()
                } else {
                    format!("{field}: ")
                }
            ),
            SourceError::UnknownFormat { .. } | SourceError::Reread { .. } => self.to_string(),
        }
    }
}

/// The format a drive holds, by its layout alone (no parsing).
pub fn detect(drive: &DriveFiles) -> Option<crate::model::Format> {
    use crate::model::Format;
    let has_dir = |d: &str| !drive.subdirs(d).is_empty();
    if has_dir("cloudstack") {
        Some(Format::CloudStack)
    } else if has_dir("openstack") {
        Some(Format::OpenStack)
    } else if ovf::env_file(drive).is_some() {
        Some(Format::Ovf)
    } else if nocloud::is_seed(drive) {
        Some(Format::NoCloud)
    } else if has_dir("ec2") {
        Some(Format::OpenStack)
    } else {
        None
    }
}

/// Detects the format of a drive and parses it.
pub fn parse_drive(drive: &DriveFiles) -> Result<(Instance, Report), SourceError> {
    let has_dir = |d: &str| !drive.subdirs(d).is_empty();
    let parsed = if has_dir("cloudstack") {
        cloudstack::parse_cloudstack(drive)
    } else if has_dir("openstack") {
        openstack::parse_openstack(drive)
    } else if ovf::env_file(drive).is_some() {
        ovf::parse_ovf(drive)
    } else if nocloud::is_seed(drive) {
        nocloud::parse_nocloud(drive)
    } else if has_dir("ec2") {
        openstack::parse_ec2(drive)
    } else {
        return Err(SourceError::UnknownFormat {
            device: drive.device.clone(),
            fstype: drive.fstype.clone(),
            files: drive.files.len(),
        });
    };
    let parsed = parsed.map(|(i, mut r)| {
        log_safe_report(&mut r);
        (i, r)
    });
    // User-data kept on the device is read whole again here, once: a read that fails now must
    // not become an empty user-data later (the cloud-config silently not applied).
    if let Some(e) = parsed
        .as_ref()
        .ok()
        .and_then(|(i, _)| userdata::reread_error(i))
    {
        return Err(SourceError::Reread {
            detail: e.to_string(),
        });
    }
    if let Ok((i, r)) = &parsed {
        tracing::debug!(
            "{}: {} {} instance {} ({} warning(s))",
            drive.device,
            i.format,
            i.version,
            crate::model::grammar::Esc(&i.instance_id),
            r.warnings.len()
        );
    }
    parsed
}

/// Adds SSH keys from the shapes producers use for `public-keys`: a string of lines, a list of
/// strings, an object of name → string or list, EC2's `{"0": {"openssh-key": "..."}}`. Anything
/// else is a warning naming `file` and the field path. Depth is bounded by the value parser.
pub(crate) fn collect_keys(
    v: &Value,
    file: &str,
    field: &str,
    inst: &mut Instance,
    report: &mut Report,
) {
    // Explicit stack: the value came from the drive.
    let mut stack: Vec<(&Value, String)> = vec![(v, field.to_string())];
    while let Some((v, path)) = stack.pop() {
        match v {
            Value::Null => {}
            Value::String(s) => push_keys(inst, s),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate().rev() {
                    stack.push((x, format!("{path}[{i}]")));
                }
            }
            Value::Object(m) => {
                // Reverse so that the stack pops them in key order.
                for (k, x) in m.iter().rev() {
                    // nova's EC2 view labels each key with `_name: "0=keyname"`: not a key.
                    if k == "_name" {
                        continue;
                    }
                    stack.push((x, format!("{path}.{k}")));
                }
            }
            other => report.warn(
                file,
                &path,
                format!(
                    "expected a key (string), found {}; ignored",
                    value::kind(other)
                ),
            ),
        }
    }
}

/// Longest warning text kept whole (lists of keys can be long; a drive value is cut sooner).
const WARNING_MAX: usize = 2000;

/// Makes every warning log-safe where it leaves the source stage: a file, field or message
/// that carries a drive string with a newline or another control character is shown in its
/// escaped form (`grammar::log_safe`), and none is longer than a log line should be. Field
/// names often are drive keys (`public_keys.<name>`, unknown keys), file names drive names.
pub fn log_safe_report(report: &mut Report) {
    use crate::model::grammar::{log_safe, LOG_MAX};
    for w in &mut report.warnings {
        for (s, max) in [
            (&mut w.file, LOG_MAX),
            (&mut w.field, LOG_MAX),
            (&mut w.message, WARNING_MAX),
        ] {
            if let std::borrow::Cow::Owned(safe) = log_safe(s, max) {
                *s = safe;
            }
        }
    }
}

/// Appends the key lines of `text` (blank lines and `#` comments skipped) without looking for
/// duplicates: each parser calls [`dedup_keys`] once at its end, so a drive listing 64k keys
/// costs n log n, not n² (`Instance::add_ssh_keys` compares each line with every kept one).
pub(crate) fn push_keys(inst: &mut Instance, text: &str) {
    inst.ssh_keys.extend(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string),
    );
}

/// The drive file at logical `path` as a [`Blob`](crate::model::Blob), registered in
/// [`Instance::held`] under its stored path: copied from the drive once, however many fields of
/// the instance (and the plan's local copy) hold it.
pub(crate) fn hold(
    inst: &mut Instance,
    drive: &DriveFiles,
    path: &str,
) -> Option<crate::model::Blob> {
    let stored = match drive.files.get_key_value(path) {
        Some((k, _)) => k.as_str(),
        None => drive.resolve(path)?,
    };
    if let Some(b) = inst.held.get(stored) {
        return Some(crate::model::Blob(b.clone()));
    }
    let bytes = drive.files.get(stored)?.clone();
    inst.held.insert(stored.to_string(), bytes.clone());
    Some(crate::model::Blob(bytes))
}

/// Drops repeated key lines, keeping the first of each in order. O(n log n).
pub(crate) fn dedup_keys(keys: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    keys.retain(|k| seen.insert(k.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Format;

    fn drive(paths: &[&str]) -> DriveFiles {
        let mut d = DriveFiles::new("/dev/t", "dir");
        for p in paths {
            d.files.insert(p.to_string(), b"x".to_vec().into());
        }
        d
    }

    #[test]
    fn detection_order() {
        let cases: &[(&[&str], Option<Format>)] = &[
            (&["cloudstack/metadata/vm-id.txt"], Some(Format::CloudStack)),
            (
                &[
                    "openstack/latest/meta_data.json",
                    "cloudstack/password/vm_password.txt",
                ],
                Some(Format::CloudStack),
            ),
            (
                &[
                    "openstack/latest/meta_data.json",
                    "ec2/latest/meta-data.json",
                ],
                Some(Format::OpenStack),
            ),
            (&["ec2/latest/meta-data.json"], Some(Format::OpenStack)),
            (&["ovf-env.xml"], Some(Format::Ovf)),
            (&["OVF_ENV.XML;1"], Some(Format::Ovf)),
            (&["ovf_env.xml"], Some(Format::Ovf)),
            (&["meta-data"], Some(Format::NoCloud)),
            (&["user-data"], Some(Format::NoCloud)),
            (&["META_DAT.;1"], Some(Format::NoCloud)),
            (&["openstack"], None),
            (&["random/file"], None),
            (&[], None),
        ];
        for (paths, want) in cases {
            assert_eq!(detect(&drive(paths)), *want, "{paths:?}");
        }
        let e = parse_drive(&drive(&["x"])).unwrap_err().to_string();
        assert!(e.starts_with("/dev/t: no known format"), "{e}");
    }
}
