//! Reclaim planning, pure: from a disk's table, the root partition, what the last partition
//! holds and the applied drive's hash, decide whether to delete the config partition and how far
//! root grows, or refuse with the reason. Reads and writes nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use super::table::TableKind;
use super::table::{Part, Table};

/// Labels of a config drive's filesystem (ISO9660 `config-2`, VFAT `CONFIG-2`).
pub const CONFIG_LABEL: &str = "config-2";
/// Root's end is aligned down to this (sgdisk -v warns about unaligned ends).
pub const ALIGN_BYTES: u64 = 1 << 20;

/// The operator's choices (`reclaim:` in primer.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub delete_config: bool,
    pub grow_root: bool,
    pub wipe_config: bool,
}

/// What a partition holds, as read by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Content {
    pub fstype: Option<String>,
    pub label: Option<String>,
    /// `state::drive_hash` of the files read from it; `None` when unreadable.
    pub drive_sha256: Option<String>,
    /// Why it could not be read as a drive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One check of the plan, printed whatever its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// The table change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The config partition deleted, when there is one (and deletion is enabled).
    pub config: Option<Part>,
    pub root: Part,
    pub root_last: u64,
    pub new: Table,
    /// Sectors (first, last) of the old config range to zero.
    pub wipe: Option<(u64, u64)>,
}

// One decision per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "detail", rename_all = "kebab-case")]
pub enum Decision {
    /// Nothing to change in the table (the reason).
    Nothing(String),
    /// Refused, nothing written (the reason).
    Refuse(String),
    Change(Change),
}

pub struct Input<'a> {
    pub table: &'a Table,
    /// Root's partition number.
    pub root: u32,
    /// Content of the last partition (when it is not root).
    pub contents: &'a BTreeMap<u32, Content>,
    /// Hash of the drive primer applied (from its record).
    pub applied: Option<&'a str>,
    /// Partitions in use (mounted, swap, holders), with how.
    pub busy: &'a BTreeMap<u32, String>,
    pub settings: Settings,
}

/// Last sector of a partition starting at `first` that ends at or before `limit` on a 1 MiB
/// boundary.
pub fn aligned_last(first: u64, limit: u64, sector: u64) -> u64 {
    let per = (ALIGN_BYTES / sector).max(1);
    let end = (limit + 1) / per * per;
    if end > first {
        end - 1
    } else {
        first
    }
}

fn check(checks: &mut Vec<Check>, what: &str, ok: bool, detail: String) -> bool {
    checks.push(Check {
        what: what.into(),
        ok,
        detail,
    });
    ok
}

/// Decides the table change. Every check is returned, passed or not.
pub fn plan(i: &Input<'_>) -> (Vec<Check>, Decision) {
    let mut c = Vec::new();
    let d = decide(i, &mut c);
    (c, d)
}

fn decide(i: &Input<'_>, c: &mut Vec<Check>) -> Decision {
    let t = i.table;
    let Some(root) = t.part(i.root) else {
        check(
            c,
            "root",
            false,
            format!("partition {} is not in the table", i.root),
        );
        return Decision::Refuse(format!("root partition {} is not in the table", i.root));
    };
    check(
        c,
        "root",
        true,
        format!(
            "partition {} sectors {}..{}",
            root.number, root.first, root.last
        ),
    );
    if t.kind == TableKind::Gpt {
        let end = t.disk_sectors - 1;
        let at = t.backup_lba.unwrap_or(end);
        if !check(
            c,
            "backup GPT at the disk's end",
            at == end,
            format!("backup header at LBA {at}, last LBA {end}"),
        ) {
            return Decision::Refuse(format!(
                "backup GPT header at LBA {at}, not at the disk's last LBA {end} (the image was \
                 written to a larger disk): move it first as a separate step (sgdisk -e), then run again"
            ));
        }
    }
    let Some(last) = t.parts.iter().max_by_key(|p| (p.last, p.first)) else {
        return Decision::Refuse("empty table".into());
    };
    let limit = t.last_usable;
    if last.number == root.number {
        check(
            c,
            "config partition",
            true,
            "none: root is the last partition".into(),
        );
        if !i.settings.grow_root {
            return Decision::Nothing("no config partition after root; grow_root is off".into());
        }
        let new_last = aligned_last(root.first, limit, t.sector);
        if new_last <= root.last {
            return Decision::Nothing(format!(
                "root (partition {}) already reaches the usable end of the disk (sector {}, \
                 aligned {new_last}); no config partition",
                root.number, limit
            ));
        }
        return Decision::Change(change(t, None, root, new_last, None));
    }
    // The last partition must be the config drive primer applied, root directly before it.
    let cfg = last;
    let content = i.contents.get(&cfg.number).cloned().unwrap_or_default();
    let label = content.label.clone().unwrap_or_default();
    let label_ok = label.eq_ignore_ascii_case(CONFIG_LABEL);
    if !check(
        c,
        "config label",
        label_ok,
        format!(
            "{} label {:?}{}",
            content.fstype.as_deref().unwrap_or("no filesystem"),
            label,
            content
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    ) {
        return Decision::Refuse(format!(
            "the last partition {} is not a config drive (label {label:?}, want config-2): \
             root is not followed by a config partition",
            cfg.number
        ));
    }
    // The last partition must be the config drive primer applied, root directly before it.
    for p in t.parts.iter().filter(|p| p.number != cfg.number) {
        if p.last >= cfg.first {
            check(
                c,
                "config is last",
                false,
                format!(
                    "partition {} overlaps or follows partition {}",
                    p.number, cfg.number
                ),
            );
            return Decision::Refuse(format!(
                "partition {} ends at {} past the start {} of the last partition {}",
                p.number, p.last, cfg.first, cfg.number
            ));
        }
        if p.number != root.number && p.last > root.last {
            check(
                c,
                "root directly before config",
                false,
                format!("partition {} lies between root and config", p.number),
            );
            return Decision::Refuse(format!(
                "partition {} (sectors {}..{}) lies between root (partition {}) and the last \
                 partition {}",
                p.number, p.first, p.last, root.number, cfg.number
            ));
        }
    }
    check(
        c,
        "config is last",
        true,
        format!("partition {} ends at {}", cfg.number, cfg.last),
    );
    check(
        c,
        "root directly before config",
        true,
        format!("no partition between {} and {}", root.number, cfg.number),
    );
    let Some(applied) = i.applied else {
        check(
            c,
            "config content = applied drive",
            false,
            "no applied drive recorded".into(),
        );
        return Decision::Refuse(
            "no drive applied by primer is recorded (run `primer run` first): the config \
             partition is kept until its data is copied"
                .into(),
        );
    };
    let same = content.drive_sha256.as_deref() == Some(applied);
    if !check(
        c,
        "config content = applied drive",
        same,
        format!(
            "partition {}: {} (applied {})",
            cfg.number,
            content.drive_sha256.as_deref().unwrap_or("unreadable"),
            applied
        ),
    ) {
        return Decision::Refuse(format!(
            "partition {} does not hold the drive primer applied (hash {} != {applied})",
            cfg.number,
            content.drive_sha256.as_deref().unwrap_or("unreadable")
        ));
    }
    if let Some(how) = i.busy.get(&cfg.number) {
        check(c, "config not in use", false, how.clone());
        return Decision::Refuse(format!("config partition {} is in use: {how}", cfg.number));
    }
    check(
        c,
        "config not in use",
        true,
        "not mounted, no swap, no holders".into(),
    );
    if !i.settings.delete_config {
        if !i.settings.grow_root {
            return Decision::Nothing("delete_config_partition and grow_root are off".into());
        }
        // Grow into the gap before the config only (as growpart does).
        let new_last = aligned_last(root.first, cfg.first - 1, t.sector);
        if new_last <= root.last {
            return Decision::Nothing(
                "delete_config_partition is off and root reaches the config partition".into(),
            );
        }
        return Decision::Change(change(t, None, root, new_last, None));
    }
    let new_last = if i.settings.grow_root {
        aligned_last(root.first, limit, t.sector).max(root.last)
    } else {
        root.last
    };
    let wipe = i.settings.wipe_config.then_some((cfg.first, cfg.last));
    Decision::Change(change(t, Some(cfg), root, new_last, wipe))
}

fn change(
    t: &Table,
    cfg: Option<&Part>,
    root: &Part,
    root_last: u64,
    wipe: Option<(u64, u64)>,
) -> Change {
    let mut new = t.clone();
    if let Some(cfg) = cfg {
        new.parts.retain(|p| p.number != cfg.number);
    }
    for p in new.parts.iter_mut().filter(|p| p.number == root.number) {
        p.last = root_last;
    }
    Change {
        config: cfg.cloned(),
        root: root.clone(),
        root_last,
        new,
        wipe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32, first: u64, last: u64) -> Part {
        Part {
            number: n,
            first,
            last,
            type_code: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
            guid: Some(format!("guid-{n}")),
            name: None,
            attrs: 0,
        }
    }

    fn table(parts: Vec<Part>) -> Table {
        Table {
            kind: TableKind::Gpt,
            sector: 512,
            disk_sectors: 1445888,
            disk_id: "d".into(),
            first_usable: 34,
            last_usable: 1445854,
            backup_lba: Some(1445887),
            parts,
        }
    }

    const ON: Settings = Settings {
        delete_config: true,
        grow_root: true,
        wipe_config: true,
    };

    fn run(t: &Table, root: u32, label: &str, hash: &str) -> Decision {
        let mut contents = BTreeMap::new();
        for p in &t.parts {
            contents.insert(
                p.number,
                Content {
                    fstype: Some("iso9660".into()),
                    label: Some(label.into()),
                    drive_sha256: Some(hash.into()),
                    error: None,
                },
            );
        }
        let busy = BTreeMap::new();
        plan(&Input {
            table: t,
            root,
            contents: &contents,
            applied: Some("h"),
            busy: &busy,
            settings: ON,
        })
        .1
    }

    #[test]
    fn test_vm_layout() {
        // The figures of notes/reclaim.md §6.
        let t = table(vec![part(1, 2048, 1312767), part(2, 1312768, 1445854)]);
        let Decision::Change(ch) = run(&t, 1, "config-2", "h") else {
            panic!()
        };
        assert_eq!(ch.root_last, 1443839);
        assert_eq!(ch.config.unwrap().number, 2);
        assert_eq!(ch.new.parts.len(), 1);
        assert_eq!(ch.wipe, Some((1312768, 1445854)));
    }

    #[test]
    fn refusals() {
        let t = table(vec![part(1, 2048, 1312767), part(2, 1312768, 1445854)]);
        assert!(matches!(run(&t, 1, "other", "h"), Decision::Refuse(_)));
        assert!(matches!(run(&t, 1, "CONFIG-2", "x"), Decision::Refuse(_)));
        assert!(matches!(run(&t, 3, "config-2", "h"), Decision::Refuse(_)));
        // A partition between root and config.
        let t = table(vec![
            part(1, 2048, 1000000),
            part(3, 1000001, 1100000),
            part(2, 1312768, 1445854),
        ]);
        assert!(matches!(run(&t, 1, "config-2", "h"), Decision::Refuse(_)));
        // Backup not at the end.
        let mut t = table(vec![part(1, 2048, 1312767), part(2, 1312768, 1445854)]);
        t.backup_lba = Some(1000);
        assert!(matches!(run(&t, 1, "config-2", "h"), Decision::Refuse(_)));
    }

    #[test]
    fn nothing_when_root_is_last_and_full() {
        let t = table(vec![part(1, 2048, 1443839)]);
        assert!(matches!(run(&t, 1, "", ""), Decision::Nothing(_)));
        let t = table(vec![part(1, 2048, 1000000)]);
        assert!(matches!(run(&t, 1, "", ""), Decision::Change(_)));
    }

    #[test]
    fn alignment() {
        assert_eq!(aligned_last(2048, 1445854, 512), 1443839);
        assert_eq!(aligned_last(256, 180000, 4096), 179967);
    }
}
