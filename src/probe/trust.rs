//! Trust policy: which of the ranked candidates may be used. Pure: the caller reads the inputs
//! (candidates, DMI system UUID, the pinning record) and logs each refusal with the rule that
//! fired. Three rules: duplicates (two drives of one kind), DMI binding (the instance id must be
//! the machine's system UUID), first-boot pinning (later boots accept only the drive seen first).

use serde::{Deserialize, Serialize};

use super::{Candidate, DriveKind};

/// What to do when two candidates of the same kind are present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicateRule {
    /// Refuse both, naming them (Ironic's behaviour; the default).
    #[default]
    Refuse,
    /// Use the best-ranked one and log the others.
    Best,
}

/// A candidate refused by a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by trust rule {rule}: {detail}")]
pub struct Refusal {
    /// `duplicates`, `dmi-binding` or `pinning`.
    pub rule: &'static str,
    pub detail: String,
}

/// Picks the candidate to use from a ranked list. `Ok(None)`: no candidate. Candidates of the
/// chosen one's family (OpenStack and CloudStack are one family: both use `config-2`) beyond
/// the first are duplicates.
pub fn select(ranked: &[Candidate], rule: DuplicateRule) -> Result<Option<&Candidate>, Refusal> {
    let Some(best) = ranked.first() else {
        return Ok(None);
    };
    let same: Vec<&Candidate> = ranked
        .iter()
        .filter(|c| c.kind.family() == best.kind.family())
        .collect();
    if same.len() > 1 {
        let names: Vec<String> = same.iter().map(|c| c.device.display()).collect();
        match rule {
            DuplicateRule::Refuse => {
                return Err(Refusal {
                    rule: "duplicates",
                    detail: format!(
                        "{} {} candidates: {} (set probe.duplicates: best in primer.yaml to use the best-ranked one)",
                        same.len(),
                        best.kind.family(),
                        names.join(" and ")
                    ),
                })
            }
            DuplicateRule::Best => {
                for other in &same[1..] {
                    tracing::warn!(
                        rule = "duplicates",
                        "ignored duplicate {} (using {})",
                        other.reason,
                        best.device.display()
                    );
                }
            }
        }
    }
    for other in ranked
        .iter()
        .filter(|c| c.kind.family() != best.kind.family())
    {
        tracing::warn!(
            "another candidate ignored: {} (using {})",
            other.reason,
            best.device.display()
        );
    }
    Ok(Some(best))
}

/// Normalises a UUID's text: lower case, no braces, no surrounding space.
fn norm_uuid(s: &str) -> String {
    s.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase()
}

/// The SMBIOS byte-swapped form of a UUID (first three fields little-endian, as firmware
/// before SMBIOS 2.6 and some hypervisors present it). `None` when not a UUID.
pub fn byte_swapped(uuid: &str) -> Option<String> {
    let u = norm_uuid(uuid);
    let parts: Vec<&str> = u.split('-').collect();
    if parts.len() != 5
        || [8, 4, 4, 4, 12]
            != [
                parts[0].len(),
                parts[1].len(),
                parts[2].len(),
                parts[3].len(),
                parts[4].len(),
            ]
        || !u.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
    {
        return None;
    }
    let swap = |s: &str| -> String {
        let bytes: Vec<&str> = (0..s.len()).step_by(2).map(|i| &s[i..i + 2]).collect();
        bytes.into_iter().rev().collect()
    };
    Some(format!(
        "{}-{}-{}-{}-{}",
        swap(parts[0]),
        swap(parts[1]),
        swap(parts[2]),
        parts[3],
        parts[4]
    ))
}

/// Whether an instance id names the machine's DMI system UUID, directly or byte-swapped.
pub fn uuid_matches(instance_id: &str, product_uuid: &str) -> bool {
    let (a, b) = (norm_uuid(instance_id), norm_uuid(product_uuid));
    !a.is_empty() && (a == b || byte_swapped(&b).is_some_and(|s| s == a))
}

/// DMI binding: the instance id must equal the system UUID. `product_uuid` is `None` when the
/// file could not be read, which refuses too (a binding that cannot be checked is not met).
pub fn check_dmi(instance_id: &str, product_uuid: Option<&str>) -> Result<(), Refusal> {
    match product_uuid {
        Some(u) if uuid_matches(instance_id, u) => Ok(()),
        Some(u) => Err(Refusal {
            rule: "dmi-binding",
            detail: format!(
                "instance id {} is not this machine's DMI system UUID {}",
                crate::model::grammar::Esc(instance_id),
                crate::model::grammar::Esc(u.trim())
            ),
        }),
        None => Err(Refusal {
            rule: "dmi-binding",
            detail: "the DMI system UUID (sys/class/dmi/id/product_uuid) cannot be read"
                .to_string(),
        }),
    }
}

/// The identity of the drive used at first boot: kind, where it was attached, and the
/// instance it described. Content is not part of it: a drive rebuilt for the same instance
/// (CloudStack rebuilds on a password change) is the same drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub kind: DriveKind,
    /// Kernel name of the device (`sr0`, `vdb`), or of the partition (`vda3`, `loop3p2`).
    pub device: String,
    /// GPT unique partition GUID, when the drive is a GPT partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_guid: Option<String>,
    pub fstype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub instance_id: String,
}

impl Pin {
    pub fn of(c: &Candidate, instance_id: &str) -> Pin {
        Pin {
            kind: c.kind,
            device: c.device.name.clone(),
            partition_guid: c.device.partition.as_ref().and_then(|p| p.guid.clone()),
            fstype: c.fstype.clone(),
            label: c.label.clone(),
            instance_id: instance_id.to_string(),
        }
    }

    /// Same drive: same kind family, same instance, same place (a GPT partition by its GUID,
    /// which survives renumbered devices; anything else by device name).
    fn same_drive(&self, other: &Pin) -> bool {
        self.kind.family() == other.kind.family()
            && self.instance_id == other.instance_id
            && match (&self.partition_guid, &other.partition_guid) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => self.device == other.device,
            }
    }
}

/// What pinning decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinDecision {
    /// The drive is the pinned one.
    Same,
    /// No pin yet: record this drive.
    Record,
    /// Another drive, allowed by policy: record it instead.
    Replace,
}

/// First-boot pinning: accept only the pinned drive, unless `allow_new`.
pub fn check_pin(
    current: &Pin,
    pinned: Option<&Pin>,
    allow_new: bool,
) -> Result<PinDecision, Refusal> {
    match pinned {
        None => Ok(PinDecision::Record),
        Some(p) if p.same_drive(current) => Ok(PinDecision::Same),
        Some(_) if allow_new => Ok(PinDecision::Replace),
        Some(p) => Err(Refusal {
            rule: "pinning",
            detail: format!(
                "{} drive on {} (instance {}) is not the drive pinned at first boot ({} drive on {}, instance {}); set probe.pin_allow_new: true to accept a new drive",
                current.kind.name(),
                current.device,
                crate::model::grammar::Esc(&current.instance_id),
                p.kind.name(),
                p.device,
                crate::model::grammar::Esc(&p.instance_id)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{BlockDevice, DeviceClass, MatchedBy};

    fn cand(name: &str, kind: DriveKind) -> Candidate {
        Candidate {
            kind,
            device: BlockDevice::whole(name, &format!("/dev/{name}"), DeviceClass::Disk, 1),
            fstype: "iso9660".into(),
            label: Some("config-2".into()),
            matched: MatchedBy::Label,
            reason: format!("label config-2 on /dev/{name} (iso9660)"),
        }
    }

    #[test]
    fn duplicates_refused_naming_both() {
        let c = vec![
            cand("vdb", DriveKind::OpenStack),
            cand("vdc", DriveKind::CloudStack),
        ];
        let e = select(&c, DuplicateRule::Refuse).unwrap_err();
        assert_eq!(e.rule, "duplicates");
        assert!(e.detail.contains("/dev/vdb and /dev/vdc"), "{e}");
        assert_eq!(
            select(&c, DuplicateRule::Best)
                .unwrap()
                .unwrap()
                .device
                .name,
            "vdb"
        );
        // Different families are not duplicates.
        let c = vec![
            cand("vdb", DriveKind::OpenStack),
            cand("vdc", DriveKind::NoCloud),
        ];
        assert_eq!(
            select(&c, DuplicateRule::Refuse)
                .unwrap()
                .unwrap()
                .device
                .name,
            "vdb"
        );
        assert_eq!(select(&[], DuplicateRule::Refuse).unwrap(), None);
    }

    #[test]
    fn dmi_uuid_direct_and_byte_swapped() {
        let id = "4c4c4544-0051-3310-8051-b4c04f4c4d32";
        assert!(uuid_matches(id, "4C4C4544-0051-3310-8051-B4C04F4C4D32\n"));
        assert!(uuid_matches(id, "44454c4c-5100-1033-8051-b4c04f4c4d32"));
        assert!(!uuid_matches(id, "44454c4c-5100-1033-8051-b4c04f4c4d33"));
        assert!(!uuid_matches("", ""));
        assert!(check_dmi(id, Some(id)).is_ok());
        let e = check_dmi("other", Some(id)).unwrap_err();
        assert_eq!(e.rule, "dmi-binding");
        assert!(check_dmi(id, None).is_err());
        assert_eq!(byte_swapped("not-a-uuid"), None);
    }

    #[test]
    fn pinning() {
        let a = Pin::of(&cand("sr0", DriveKind::OpenStack), "i-1");
        let b = Pin::of(&cand("vdb", DriveKind::OpenStack), "i-1");
        assert_eq!(check_pin(&a, None, false), Ok(PinDecision::Record));
        assert_eq!(check_pin(&a, Some(&a), false), Ok(PinDecision::Same));
        let e = check_pin(&b, Some(&a), false).unwrap_err();
        assert_eq!(e.rule, "pinning");
        assert!(e.detail.contains("vdb") && e.detail.contains("sr0"), "{e}");
        assert_eq!(check_pin(&b, Some(&a), true), Ok(PinDecision::Replace));
        let mut other_instance = a.clone();
        other_instance.instance_id = "i-2".into();
        assert!(check_pin(&other_instance, Some(&a), false).is_err());
    }
}
