//! Probe: lists block devices and ranks the ones that look like a config drive, each with the
//! reason it matched. Reading is limited to sysfs attributes and a few small reads per device
//! (`sig`); nothing is mounted or written, and an unreadable device is skipped, never an error.
//! Matching and ranking here are pure; `trust` decides which candidate may be used.
//!
//! Ranking (best first, deterministic):
//! 1. how it matched: a filesystem label (`config-2`, `config`, `cidata`, OVF labels) beats a
//!    partition name or type code, which beats contents alone (an unlabelled OVF ISO);
//! 2. placement: read-only whole devices (CD-ROMs), then writable whole devices and the
//!    trailing partition of the boot disk (Ironic's layout), then partitions of other disks,
//!    then the boot disk's other partitions (a label there is the easiest to plant);
//! 3. kind (OpenStack, CloudStack, NoCloud, OVF), then device name.

pub mod cmdline;
pub mod image;

pub mod sig;
pub mod trust;

use serde::{Deserialize, Serialize};

use crate::media::part::Partition;

/// What kind of block device it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    /// Optical drive (`sr*`): read-only media, the classic config-drive attachment.
    CdRom,
    /// A whole disk (`vdb`, `sdb`, `nvme1n1`).
    Disk,
    /// A loop device with a backing file.
    Loop,
    /// A partition of a disk (a kernel node, or an entry primer read from the disk's table).
    Partition,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A block device as seen in sysfs, or a partition primer found in a disk's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name (`vdb`, `sr0`, `loop3`, `vda2`); for a partition read from the table by
    /// primer, the name the kernel would give it (`loop3p2`).
    pub name: String,
    /// Device node (`/dev/vdb`, or under a redirected dev root). For a partition read from the
    /// table by primer this is the whole disk's node; the filesystem is at `partition.start`.
    pub path: String,
    pub class: DeviceClass,
    pub size_bytes: u64,
    pub read_only: bool,
    pub removable: bool,
    /// For a partition, the whole disk it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a loop device, its backing file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    /// For a partition, its entry in the disk's partition table (when the table was readable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    /// The kernel shows no node for this partition (no partition support, or not rescanned):
    /// primer reads it at `partition.start` of `path`.
    #[serde(skip_serializing_if = "is_false")]
    pub table_only: bool,
    /// A partition of the disk holding the system (the root filesystem's disk, or a disk with
    /// an ext2/3/4 or XFS partition).
    #[serde(skip_serializing_if = "is_false")]
    pub on_boot_disk: bool,
    /// The partition that ends last on its disk.
    #[serde(skip_serializing_if = "is_false")]
    pub trailing: bool,
}

impl BlockDevice {
    /// A whole device with default flags (tests, benchmarks, fake sysfs).
    pub fn whole(name: &str, path: &str, class: DeviceClass, size_bytes: u64) -> BlockDevice {
        BlockDevice {
            name: name.to_string(),
            path: path.to_string(),
            class,
            size_bytes,
            read_only: class == DeviceClass::CdRom,
            removable: false,
            parent: None,
            backing_file: None,
            partition: None,
            table_only: false,
            on_boot_disk: false,
            trailing: false,
        }
    }

    /// The byte range to read within `path`: `Some` only for partitions read from the table.
    pub fn byte_range(&self) -> Option<(u64, u64)> {
        match (&self.partition, self.table_only) {
            (Some(p), true) => Some((p.start, p.size)),
            _ => None,
        }
    }

    /// How a person finds it: `/dev/vdb`, `/dev/vda2`, `/dev/loop3 partition 2`.
    pub fn display(&self) -> String {
        match (&self.partition, self.table_only) {
            (Some(p), true) => format!("{} partition {}", self.path, p.number),
            _ => self.path.clone(),
        }
    }

    fn is_whole(&self) -> bool {
        self.class != DeviceClass::Partition
    }
}

/// The config-drive kind a candidate was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriveKind {
    OpenStack,
    CloudStack,
    NoCloud,
    Ovf,
}

impl DriveKind {
    /// Kinds that compete for the same role: a CloudStack drive is labelled like an OpenStack
    /// one, so two `config-2` drives are duplicates whatever their trees hold.
    pub fn family(self) -> &'static str {
        match self {
            DriveKind::OpenStack | DriveKind::CloudStack => "config drive",
            DriveKind::NoCloud => "NoCloud seed",
            DriveKind::Ovf => "OVF environment",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DriveKind::OpenStack => "openstack",
            DriveKind::CloudStack => "cloudstack",
            DriveKind::NoCloud => "nocloud",
            DriveKind::Ovf => "ovf",
        }
    }
}

/// What was found on one device: filesystem type, label, and the root directory's names when
/// they were listed (ISO9660 and FAT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    pub fstype: String,
    pub label: Option<String>,
    pub root_names: Vec<String>,
}

/// How a candidate matched, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchedBy {
    Label,
    PartitionName,
    PartitionType,
    Contents,
}

/// A device that looks like a config drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub kind: DriveKind,
    pub device: BlockDevice,
    pub fstype: String,
    pub label: Option<String>,
    pub matched: MatchedBy,
    /// Why it matched: "label CONFIG-2 on /dev/loop3 (iso9660)".
    pub reason: String,
}

/// Operator-configured ways to recognise a config partition besides its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// GPT partition names (case-insensitive) that mark a config partition.
    pub gpt_names: Vec<String>,
    /// GPT partition type GUIDs (case-insensitive) that mark a config partition.
    pub gpt_types: Vec<String>,
    /// MBR partition type bytes that mark a config partition.
    pub mbr_types: Vec<u8>,
    /// The wait for a late drive may end once udev has settled with no candidate
    /// (`probe.early_end`); off, it always runs to its deadline.
    pub early_end: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            gpt_names: vec!["config-v2".into()],
            gpt_types: Vec::new(),
            mbr_types: Vec::new(),
            early_end: true,
        }
    }
}

/// OVF environment volume labels seen in the wild (compared case-insensitively).
const OVF_LABELS: [&str; 3] = ["OVF ENV", "OVF-TRANSPORT", "ovfenv"];

/// Whether a root directory name is `wanted`: case-insensitive, `;N` ignored, `-` and `_`
/// alike (ISO9660 level 1 has no `-`), and the 8.3 form a level-1 producer writes.
pub fn root_has(names: &[String], wanted: &str, is_dir: bool) -> bool {
    let fold = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    names.iter().any(|n| {
        let n = crate::media::strip_version(n);
        fold(n) == fold(wanted) || crate::media::name_matches(n, wanted, is_dir)
    })
}

/// The kind a label names, if any.
pub fn kind_for_label(label: &str) -> Option<DriveKind> {
    if label.eq_ignore_ascii_case("config-2") {
        Some(DriveKind::OpenStack)
    } else if label.eq_ignore_ascii_case("config") {
        Some(DriveKind::CloudStack)
    } else if label.eq_ignore_ascii_case("cidata") {
        Some(DriveKind::NoCloud)
    } else if OVF_LABELS.iter().any(|l| l.eq_ignore_ascii_case(label)) {
        Some(DriveKind::Ovf)
    } else {
        None
    }
}

/// The kind a root directory suggests, for partitions matched by name or type.
fn kind_from_contents(names: &[String]) -> Option<DriveKind> {
    if root_has(names, "cloudstack", true) {
        Some(DriveKind::CloudStack)
    } else if root_has(names, "openstack", true) {
        Some(DriveKind::OpenStack)
    } else if root_has(names, "meta-data", false) {
        Some(DriveKind::NoCloud)
    } else if root_has(names, "ovf-env.xml", false) {
        Some(DriveKind::Ovf)
    } else {
        None
    }
}

/// Recognises one device's signature; `None` when it is not a config drive.
pub fn match_signature(dev: &BlockDevice, sig: &Signature, rules: &Rules) -> Option<Candidate> {
    let label = sig.label.as_deref().filter(|l| !l.is_empty());
    let what = match label {
        // Any label the drive gives (only known ones match below): escaped for the reason.
        Some(l) => format!("{}, label {}", sig.fstype, crate::model::grammar::Esc(l)),
        None => format!("{}, no label", sig.fstype),
    };
    let has_ovf_env = root_has(&sig.root_names, "ovf-env.xml", false);
    let (kind, matched, reason) = match label.and_then(kind_for_label) {
        Some(DriveKind::OpenStack) if root_has(&sig.root_names, "cloudstack", true) => (
            DriveKind::CloudStack,
            MatchedBy::Label,
            format!(
                "label {} on {} ({}) with a cloudstack/ tree",
                label.unwrap_or_default(),
                dev.display(),
                sig.fstype
            ),
        ),
        // OVF labels count only on ISO9660 that holds the environment file.
        Some(DriveKind::Ovf) if !(sig.fstype == "iso9660" && has_ovf_env) => return None,
        Some(kind) => (
            kind,
            MatchedBy::Label,
            format!(
                "label {} on {} ({})",
                label.unwrap_or_default(),
                dev.display(),
                sig.fstype
            ),
        ),
        None => {
            let part = dev.partition.as_ref();
            let by_name = part
                .and_then(|p| p.name.as_deref())
                .filter(|n| rules.gpt_names.iter().any(|w| w.eq_ignore_ascii_case(n)));
            let by_type = part.filter(|p| {
                p.mbr_type.is_some_and(|t| rules.mbr_types.contains(&t))
                    || (p.mbr_type.is_none()
                        && rules
                            .gpt_types
                            .iter()
                            .any(|t| t.eq_ignore_ascii_case(&p.type_code)))
            });
            let kind = kind_from_contents(&sig.root_names).unwrap_or(DriveKind::OpenStack);
            if let Some(n) = by_name {
                (
                    kind,
                    MatchedBy::PartitionName,
                    format!("GPT partition name {n} on {} ({what})", dev.display()),
                )
            } else if let Some(p) = by_type {
                (
                    kind,
                    MatchedBy::PartitionType,
                    format!(
                        "partition type {} on {} ({what})",
                        p.type_code,
                        dev.display()
                    ),
                )
            } else if label.is_none() && dev.is_whole() && sig.fstype == "iso9660" && has_ovf_env {
                (
                    DriveKind::Ovf,
                    MatchedBy::Contents,
                    format!("ovf-env.xml on {} ({what})", dev.display()),
                )
            } else {
                return None;
            }
        }
    };
    Some(Candidate {
        kind,
        device: dev.clone(),
        fstype: sig.fstype.clone(),
        label: label.map(str::to_string),
        matched,
        reason,
    })
}

/// Where a device sits, lower is more trusted (see the module documentation).
pub fn placement(dev: &BlockDevice) -> u8 {
    match dev.class {
        DeviceClass::CdRom => 0,
        DeviceClass::Disk | DeviceClass::Loop if dev.read_only => 0,
        DeviceClass::Disk | DeviceClass::Loop => 1,
        DeviceClass::Partition if dev.on_boot_disk && dev.trailing => 1,
        DeviceClass::Partition if !dev.on_boot_disk => 2,
        DeviceClass::Partition => 3,
    }
}

/// Orders candidates best first, deterministically (see the module documentation).
pub fn rank_candidates(mut found: Vec<Candidate>) -> Vec<Candidate> {
    let key = |c: &Candidate| {
        (
            c.matched,
            placement(&c.device),
            c.kind,
            !c.device.read_only,
            c.device.name.clone(),
        )
    };
    crate::sort::sort_by_key(&mut found, key);
    found
}

/// What one probe saw.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// Every device examined, partitions found in tables included, sorted by name.
    pub devices: Vec<BlockDevice>,
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
}

/// What the platform's device enumeration saw, before any ranking.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Every device with its signature (partitions found in tables included).
    pub devices: Vec<(BlockDevice, sig::Found)>,
    /// Disks holding the running root file system (by device number).
    pub root_disks: std::collections::BTreeSet<String>,
}

/// Ranks a scan: marks boot disks (the root's, and any disk holding a Linux system
/// filesystem: its ordinary partitions are the easiest place to plant a label, so they rank
/// last), matches each filesystem signature against `rules`, ranks the candidates and sorts
/// the devices by name. Pure.
pub fn rank_scan(scan: Scan, rules: &Rules) -> Probe {
    let mut boot_disks = scan.root_disks;
    for (d, f) in &scan.devices {
        if let (Some(p), sig::Found::Fs(Signature { fstype, .. })) = (&d.parent, f) {
            if fstype == "ext4" || fstype == "xfs" {
                boot_disks.insert(p.clone());
            }
        }
    }
    let mut found = Vec::new();
    let mut out = Vec::new();
    for (mut d, f) in scan.devices {
        d.on_boot_disk = d.parent.as_ref().is_some_and(|p| boot_disks.contains(p));
        if let sig::Found::Fs(sig) = &f {
            if let Some(c) = match_signature(&d, sig, rules) {
                found.push(c);
            }
        }
        out.push(d);
    }
    crate::sort::sort_by(&mut out, |a, b| a.name.cmp(&b.name));
    Probe {
        devices: out,
        candidates: rank_candidates(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::part::Partition;

    fn dev(name: &str, class: DeviceClass) -> BlockDevice {
        BlockDevice::whole(name, &format!("/dev/{name}"), class, 1 << 20)
    }

    fn sig(label: &str) -> Signature {
        Signature {
            fstype: "iso9660".into(),
            label: Some(label.into()),
            root_names: vec![],
        }
    }

    fn part(name: &str, number: u32, gpt_name: Option<&str>, mbr: Option<u8>) -> BlockDevice {
        let mut d = dev(name, DeviceClass::Partition);
        d.partition = Some(Partition {
            number,
            start: 1 << 20,
            size: 1 << 20,
            type_code: mbr.map_or("0fc63daf-8483-4772-8e79-3d69d8477de4".into(), |t| {
                format!("{t:#04x}")
            }),
            name: gpt_name.map(str::to_string),
            guid: None,
            mbr_type: mbr,
        });
        d
    }

    #[test]
    fn labels_and_kinds() {
        let d = dev("loop3", DeviceClass::Loop);
        let r = Rules::default();
        let c = match_signature(&d, &sig("CONFIG-2"), &r).unwrap();
        assert_eq!(c.kind, DriveKind::OpenStack);
        assert_eq!(c.matched, MatchedBy::Label);
        assert_eq!(c.reason, "label CONFIG-2 on /dev/loop3 (iso9660)");
        assert_eq!(
            match_signature(&d, &sig("config"), &r).unwrap().kind,
            DriveKind::CloudStack
        );
        assert_eq!(
            match_signature(&d, &sig("CIDATA"), &r).unwrap().kind,
            DriveKind::NoCloud
        );
        let mut cs = sig("config-2");
        cs.root_names = vec!["CLOUDSTA".into(), "OPENSTAC".into()];
        assert_eq!(
            match_signature(&d, &cs, &r).unwrap().kind,
            DriveKind::CloudStack
        );
        assert!(match_signature(&d, &sig("other"), &r).is_none());
        let none = Signature {
            fstype: "iso9660".into(),
            label: None,
            root_names: vec![],
        };
        assert!(match_signature(&d, &none, &r).is_none());
    }

    #[test]
    fn ovf_needs_the_environment_file() {
        let d = dev("sr0", DeviceClass::CdRom);
        let r = Rules::default();
        assert!(match_signature(&d, &sig("OVF ENV"), &r).is_none());
        let mut s = sig("ovf env");
        s.root_names = vec!["OVF_ENV.XML;1".into()];
        let c = match_signature(&d, &s, &r).unwrap();
        assert_eq!((c.kind, c.matched), (DriveKind::Ovf, MatchedBy::Label));
        s.label = None;
        let c = match_signature(&d, &s, &r).unwrap();
        assert_eq!((c.kind, c.matched), (DriveKind::Ovf, MatchedBy::Contents));
        assert_eq!(c.reason, "ovf-env.xml on /dev/sr0 (iso9660, no label)");
        // Not on a partition, not on FAT.
        let p = part("vda3", 3, None, None);
        assert!(match_signature(&p, &s, &r).is_none());
        s.fstype = "vfat".into();
        assert!(match_signature(&d, &s, &r).is_none());
    }

    #[test]
    fn partition_name_and_type() {
        let mut r = Rules::default();
        let other = Signature {
            fstype: "vfat".into(),
            label: Some("OTHER".into()),
            root_names: vec!["openstack".into()],
        };
        let p = part("loop3p2", 2, Some("Config-V2"), None);
        let c = match_signature(&p, &other, &r).unwrap();
        assert_eq!(c.matched, MatchedBy::PartitionName);
        assert_eq!(c.kind, DriveKind::OpenStack);
        assert!(c.reason.starts_with("GPT partition name Config-V2 on"));
        let m = part("loop3p2", 2, None, Some(0x99));
        assert!(match_signature(&m, &other, &r).is_none());
        r.mbr_types.push(0x99);
        let c = match_signature(&m, &other, &r).unwrap();
        assert_eq!(c.matched, MatchedBy::PartitionType);
        assert!(
            c.reason.starts_with("partition type 0x99 on"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn ranking_is_deterministic() {
        let s = sig("config-2");
        let r = Rules::default();
        let c = |d: BlockDevice| match_signature(&d, &s, &r).unwrap();
        let mut boot_part = part("vda1", 1, None, None);
        boot_part.on_boot_disk = true;
        let mut trailing = part("vda3", 3, None, None);
        trailing.on_boot_disk = true;
        trailing.trailing = true;
        let ranked = rank_candidates(vec![
            c(boot_part),
            c(part("vdc1", 1, None, None)),
            c(dev("vdb", DeviceClass::Disk)),
            c(trailing),
            c(dev("sr0", DeviceClass::CdRom)),
            c(dev("loop1", DeviceClass::Loop)),
            c(dev("loop0", DeviceClass::Loop)),
        ]);
        let names: Vec<_> = ranked.iter().map(|c| c.device.name.as_str()).collect();
        assert_eq!(
            names,
            ["sr0", "loop0", "loop1", "vda3", "vdb", "vdc1", "vda1"]
        );
        // A label beats a partition name wherever it is.
        let named = match_signature(
            &part("vdd1", 1, Some("config-v2"), None),
            &Signature {
                fstype: "vfat".into(),
                label: None,
                root_names: vec![],
            },
            &r,
        )
        .unwrap();
        let mut labelled = part("vda1", 1, None, None);
        labelled.on_boot_disk = true;
        let ranked = rank_candidates(vec![named, c(labelled)]);
        assert_eq!(ranked[0].device.name, "vda1");
    }
}
