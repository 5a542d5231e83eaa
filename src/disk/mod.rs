//! Reclaim: delete the trailing config partition and grow root into the disk, crash-safe at
//! every write (notes/reclaim.md). `plan` decides from facts (pure), `table` computes the bytes,
//! `linux` and `fs` act on the kernel and the filesystem; this module reads the facts from the
//! disk on every run, re-checks them under the disk lock immediately before the one table
//! write, and never trusts a saved phase alone. Writes nothing unless `apply` is set.

pub mod fs;
// Reclaim is Linux by design (BLKPG, mountinfo, sysfs); elsewhere the same names refuse.
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
pub mod linux;
pub mod plan;
pub mod table;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::media::part::OffsetReader;
use crate::media::Limits;
use plan::{Check, Content, Decision, Settings};
use table::{GptCopy, Part, Raw, SectorWrite, Table};

/// The reclaim intent record, relative to the target root.
pub const RECORD_PATH: &str = crate::state::state_path!("reclaim.json");
/// How long to wait for the disk lock (udev holds it shortly while probing).
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{device}: {what}: {source}")]
    Io {
        device: String,
        what: String,
        #[source]
        source: io::Error,
    },
}

fn ioe(device: &str, what: &str) -> impl FnOnce(io::Error) -> DiskError {
    let (device, what) = (device.to_string(), what.to_string());
    move |source| DiskError::Io {
        device,
        what,
        source,
    }
}

/// What `primer reclaim` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The disk or image file; `None`: the disk holding the mounted `/`.
    pub disk: Option<PathBuf>,
    pub root_partition: Option<u32>,
    /// Where primer's state lives (the applied drive's record, the reclaim record).
    pub root: PathBuf,
    pub apply: bool,
    pub settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Dry run: the plan was printed.
    Planned,
    /// Something was written.
    Changed,
    /// Nothing to reclaim (or the remaining filesystem step waits for the next boot).
    Nothing,
    /// Refused, nothing written.
    Refused,
    /// The table was written but a later step failed (it is retried on the next run).
    Partial,
}

/// What a run found, decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub device: String,
    /// `device` or `image`.
    pub kind: &'static str,
    /// Where the disk stands: `old table`, `new table`, `torn primary, new backup`, ...
    pub position: String,
    pub checks: Vec<Check>,
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Table>,
    /// `sfdisk --dump` form of the two tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_dump: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_dump: Option<String>,
    /// Steps planned (dry run) or done, in order.
    pub steps: Vec<String>,
    /// The root filesystem and its growth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    pub outcome: Outcome,
    /// Why refused / nothing / partial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The intent record: the change primer set out to make, so that a re-run after a crash can
/// recognise its own half-written table (torn primary, new backup). The disk is the truth:
/// every run re-derives its position from the disk and uses this only to recognise `new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub schema: u32,
    pub device: String,
    pub old: Table,
    pub new: Table,
    #[serde(default)]
    pub config: Option<Part>,
    /// Sectors of the old config range to zero, while not done.
    #[serde(default)]
    pub wipe: Option<(u64, u64)>,
    #[serde(default)]
    pub wiped: bool,
    #[serde(default)]
    pub table_done: bool,
    /// Root's end before the change (the range past it is wiped only while the filesystem has
    /// not grown into it).
    #[serde(default)]
    pub old_root_last: u64,
}

fn read_record(root: &Path) -> Option<Record> {
    let bytes = std::fs::read(root.join(RECORD_PATH)).ok()?;
    if bytes.len() > 1 << 20 {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

fn write_record(root: &Path, r: &Record) -> io::Result<()> {
    let mut w = crate::apply::fs::Writer::new(root);
    let mut v = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
    v.push(b'\n');
    crate::apply::write_state(&mut w, RECORD_PATH, &v)
}

/// The hash of the drive primer last applied under `root` (its per-instance record).
pub fn applied_hash(root: &Path) -> Option<String> {
    let status = crate::status::read_status(root).ok()??;
    let id = status.current_instance()?.to_string();
    let rec = crate::status::read_record(root, &id).ok()??;
    (!rec.drive_sha256.is_empty()).then_some(rec.drive_sha256)
}

/// Reads a partition's filesystem as a drive: label and content hash.
fn content_of(file: &mut File, device: &str, p: &Part, sector: u64) -> Content {
    let start = p.first * sector;
    let len = p.sectors() * sector;
    let name = format!("{device}:{}", p.number);
    let mut r = OffsetReader::new(&mut *file, start, len);
    let fsize = fs::fs_size(&mut r, 0);
    match crate::media::read_fs(
        OffsetReader::new(&mut *file, start, len),
        &name,
        &Limits::default(),
    ) {
        // Hashed as the record hashed the applied drive: parsed, passwords left out. A
        // partition that does not parse is not the drive that was applied.
        Ok(d) => match crate::source::parse_drive(&d) {
            Ok((instance, _)) => {
                let ud = crate::plan::scrub::secrets_user_data(&instance);
                Content {
                    fstype: Some(d.fstype.clone()),
                    label: d.label.clone(),
                    drive_sha256: Some(crate::plan::scrub::drive_hash(&d, &instance, &ud)),
                    error: None,
                }
            }
            Err(e) => Content {
                fstype: Some(d.fstype.clone()),
                label: d.label.clone(),
                drive_sha256: None,
                error: Some(format!("not a config drive primer can read: {e}")),
            },
        },
        Err(e) => Content {
            fstype: fsize.map(|f| f.fstype.to_string()),
            label: None,
            drive_sha256: None,
            error: Some(e.to_string()),
        },
    }
}

/// Where the disk stands, read from it.
enum Position {
    /// A valid primary table (old or new); the backup: matches / why not.
    Table { table: Table, backup: BackupState },
    /// Primary unusable, backup valid and equal to the recorded new table.
    Torn { backup: GptCopy, table: Table },
}

#[derive(Debug, Clone, PartialEq)]
enum BackupState {
    None,
    Same,
    /// Valid, describing this table.
    Other(Table),
    Invalid(String),
}

struct Disk {
    file: File,
    device: String,
    is_device: bool,
    len: u64,
    dev_sector: Option<u64>,
}

impl Disk {
    fn raw(&mut self) -> Result<Option<Raw>, String> {
        table::read_raw(&mut self.file, self.len, self.dev_sector)
    }
}

fn position(raw: &Raw, record: Option<&Record>) -> Result<(Position, Option<GptCopy>), String> {
    match raw {
        Raw::Mbr {
            sector,
            disk_sectors,
            header,
        } => Ok((
            Position::Table {
                table: table::mbr_table(header, *sector, *disk_sectors)?,
                backup: BackupState::None,
            },
            None,
        )),
        Raw::Gpt {
            sector,
            disk_sectors,
            primary,
            backup,
        } => match (primary, backup) {
            (Ok(p), b) => {
                let t = table::gpt_table(p, *sector, *disk_sectors);
                let bs = match b {
                    Ok(b) => {
                        let bt = table::gpt_table(b, *sector, *disk_sectors);
                        if bt == t {
                            BackupState::Same
                        } else {
                            BackupState::Other(bt)
                        }
                    }
                    Err(e) => BackupState::Invalid(e.clone()),
                };
                Ok((
                    Position::Table {
                        table: t,
                        backup: bs,
                    },
                    Some(p.clone()),
                ))
            }
            (Err(pe), Ok(b)) => {
                let bt = table::gpt_table(b, *sector, *disk_sectors);
                match record {
                    Some(r) if r.new == bt => Ok((
                        Position::Torn {
                            backup: b.clone(),
                            table: bt,
                        },
                        None,
                    )),
                    _ => Err(format!(
                        "primary GPT unusable ({pe}) and the backup is not the table primer \
                         set out to write: repair the table first (gdisk), nothing written"
                    )),
                }
            }
            (Err(pe), Err(be)) => Err(format!("no valid GPT: primary {pe}; backup {be}")),
        },
    }
}

fn open_disk(path: &Path, write: bool) -> Result<Disk, DiskError> {
    let device = path.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(ioe(&device, "open"))?;
    let meta = file.metadata().map_err(ioe(&device, "stat"))?;
    let is_device = linux::is_block_device(&meta);
    let (len, dev_sector) = if is_device {
        (
            linux::size_bytes(&file).map_err(ioe(&device, "BLKGETSIZE64"))?,
            Some(linux::sector_size(&file).map_err(ioe(&device, "BLKSSZGET"))?),
        )
    } else if meta.is_file() {
        (meta.len(), None)
    } else {
        return Err(DiskError::Io {
            device,
            what: "open".into(),
            source: io::Error::other("not a block device or an image file"),
        });
    };
    Ok(Disk {
        file,
        device,
        is_device,
        len,
        dev_sector,
    })
}

/// Finds the disk and root partition: the mounted `/` (sysfs), or what the options name.
fn locate(o: &Options) -> Result<(PathBuf, Option<u32>), String> {
    let mounts = linux::mounts();
    let root_part = mounts
        .iter()
        .rev()
        .find(|m| m.mountpoint == Path::new("/"))
        .and_then(linux::mount_dev)
        .and_then(|(a, b)| linux::sys_part(a, b));
    match &o.disk {
        Some(d) => Ok((d.clone(), o.root_partition)),
        None => {
            let p = root_part.ok_or_else(|| {
                "the mounted / is not on a disk partition (device mapper, LVM, md, or a \
                 whole-disk filesystem): not handled; give --disk and --root-partition for an image"
                    .to_string()
            })?;
            if let Some(n) = o.root_partition {
                if n != p.number {
                    return Err(format!(
                        "--root-partition {n} but / is mounted from {} (partition {})",
                        p.name, p.number
                    ));
                }
            }
            Ok((PathBuf::from("/dev").join(&p.disk), Some(p.number)))
        }
    }
}

/// The root partition on a block device given with `--disk`: the option, else the mounted `/`
/// when it lives on this disk.
fn root_on_device(disk: &Disk, o: &Options) -> Result<u32, String> {
    if let Some(n) = o.root_partition {
        return Ok(n);
    }
    let name = linux::sys_name(&disk.file);
    let mounts = linux::mounts();
    let p = mounts
        .iter()
        .rev()
        .find(|m| m.mountpoint == Path::new("/"))
        .and_then(linux::mount_dev)
        .and_then(|(a, b)| linux::sys_part(a, b));
    match (p, name) {
        (Some(p), Some(n)) if p.disk == n => Ok(p.number),
        _ => Err(format!(
            "/ is not mounted from {}: give --root-partition N",
            disk.device
        )),
    }
}

fn refused(mut r: Report, why: String) -> Report {
    tracing::warn!("reclaim refused: {why}; nothing written");
    r.outcome = Outcome::Refused;
    r.decision = "refuse".into();
    r.reason = Some(why);
    r
}

/// Fault injection for the torn-write test (debug builds only): `PRIMER_FAULT_TORN=header`
/// writes only the first sector of the commit, `entries` only the rest, then aborts.
fn torn(w: &SectorWrite, disk: &File, sector: u64) {
    #[cfg(debug_assertions)]
    if w.commit && w.bytes.len() as u64 > sector {
        if let Ok(how) = std::env::var("PRIMER_FAULT_TORN") {
            let s = sector as usize;
            let r = match how.as_str() {
                "header" => linux::write_at(disk, w.offset, &w.bytes[..s]),
                "entries" => linux::write_at(disk, w.offset + sector, &w.bytes[s..]),
                _ => Ok(()),
            };
            eprintln!("primer: PRIMER_FAULT_TORN={how}: aborting after a torn commit ({r:?})");
            std::process::abort();
        }
    }
    let _ = (w, disk, sector);
}

/// Runs reclaim: plans from the disk; with `apply`, writes. `progress` gets log lines.
pub fn reclaim(o: &Options) -> Result<Report, DiskError> {
    let mut r = Report {
        device: o
            .disk
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        kind: "device",
        position: String::new(),
        checks: Vec::new(),
        decision: String::new(),
        before: None,
        after: None,
        before_dump: None,
        after_dump: None,
        steps: Vec::new(),
        filesystem: None,
        outcome: Outcome::Nothing,
        reason: None,
    };
    if cfg!(not(target_os = "linux")) {
        return Ok(refused(
            r,
            "not supported on Windows yet: reclaim".to_string(),
        ));
    }
    let (path, root_hint) = match locate(o) {
        Ok(x) => x,
        Err(why) => return Ok(refused(r, why)),
    };
    r.device = path.display().to_string();
    let mut disk = open_disk(&path, o.apply)?;
    r.kind = if disk.is_device { "device" } else { "image" };
    let root_no = match (root_hint, disk.is_device) {
        (Some(n), _) => n,
        (None, true) => match root_on_device(&disk, o) {
            Ok(n) => n,
            Err(why) => return Ok(refused(r, why)),
        },
        (None, false) => {
            return Ok(refused(
                r,
                format!("{}: an image file needs --root-partition N", disk.device),
            ))
        }
    };
    let record = read_record(&o.root).filter(|rec| rec.device == r.device);
    let raw = match disk.raw() {
        Ok(Some(raw)) => raw,
        Ok(None) => return Ok(refused(r, "no partition table".into())),
        Err(why) => return Ok(refused(r, why)),
    };
    let (pos, primary) = match position(&raw, record.as_ref()) {
        Ok(p) => p,
        Err(why) => return Ok(refused(r, why)),
    };
    let sys_disk = if disk.is_device {
        linux::sys_name(&disk.file)
    } else {
        None
    };
    let (table, backup) = match pos {
        Position::Torn { backup, table } => {
            r.position = "torn primary GPT, backup holds the new table".into();
            r.before = Some(table.clone());
            r.before_dump = Some(table.dump(&r.device));
            let w = table::gpt_primary_from_backup(&mut disk.file, table.sector, &backup)
                .map_err(ioe(&r.device, "rebuild primary"))?;
            r.steps.push(format!(
                "{}: {} bytes at {}",
                w.what,
                w.bytes.len(),
                w.offset
            ));
            if !o.apply {
                r.outcome = Outcome::Planned;
                r.decision = "repair".into();
                return Ok(r);
            }
            linux::lock(&disk.file, LOCK_WAIT).map_err(ioe(&r.device, "flock"))?;
            // Under the lock: still a torn primary, and the backup still the recorded table.
            let still = matches!(
                disk.raw().ok().flatten().map(|raw| position(&raw, record.as_ref())),
                Some(Ok((Position::Torn { table: ref t, .. }, _))) if *t == table
            );
            if !still {
                return Ok(refused(r, "the table changed since planning".into()));
            }
            linux::write_at(&disk.file, w.offset, &w.bytes).map_err(ioe(&r.device, w.what))?;
            tracing::info!("{}: {} written from the backup", r.device, w.what);
            crate::apply::fault::point("reclaim: primary repaired");
            return after_table(o, &mut disk, sys_disk, table, record, r, true, root_no);
        }
        Position::Table { table, backup } => (table, backup),
    };
    r.before = Some(table.clone());
    r.before_dump = Some(table.dump(&r.device));
    // Content of the last partition, when it is not root (the config candidate).
    let mut contents = BTreeMap::new();
    if let Some(last) = table.parts.iter().max_by_key(|p| (p.last, p.first)) {
        if last.number != root_no {
            contents.insert(
                last.number,
                content_of(&mut disk.file, &r.device, last, table.sector),
            );
        }
    }
    let applied = applied_hash(&o.root);
    let mut busy = BTreeMap::new();
    if let Some(name) = &sys_disk {
        let mounts = linux::mounts();
        for p in linux::sys_children(name) {
            if let Some(how) = linux::in_use(&p, &mounts) {
                busy.insert(p.number, format!("{} {how}", p.name));
            }
        }
        busy.remove(&root_no);
    }
    let (checks, decision) = plan::plan(&plan::Input {
        table: &table,
        root: root_no,
        contents: &contents,
        applied: applied.as_deref(),
        busy: &busy,
        settings: o.settings,
    });
    r.checks = checks;
    let change = match decision {
        Decision::Refuse(why) => return Ok(refused(r, why)),
        Decision::Nothing(why) => {
            r.position = "new table (or nothing to reclaim)".into();
            r.reason = Some(why);
            // The backup must mirror the primary; primer rewrites it only for its own table.
            if backup != BackupState::Same && backup != BackupState::None {
                let ours = record.as_ref().is_some_and(|rec| rec.new == table);
                if !ours {
                    return Ok(refused(
                        r,
                        format!("backup GPT does not match the primary ({backup:?}); not written by primer"),
                    ));
                }
                let p = primary
                    .as_ref()
                    .map(|p| (p.header.clone(), p.entries.clone()));
                if let Some((h, e)) = p {
                    let ws = table::gpt_writes(&mut disk.file, table.sector, &h, &e)
                        .map_err(ioe(&r.device, "GPT"))?;
                    for w in &ws {
                        r.steps.push(format!(
                            "write {} ({} bytes at {})",
                            w.what,
                            w.bytes.len(),
                            w.offset
                        ));
                    }
                    if o.apply {
                        linux::lock(&disk.file, LOCK_WAIT).map_err(ioe(&r.device, "flock"))?;
                        // Under the lock: the primary is still the recorded new table.
                        let still = matches!(
                            disk.raw().ok().flatten().map(|raw| position(&raw, None)),
                            Some(Ok((Position::Table { table: ref t, .. }, _))) if *t == table
                        );
                        if !still {
                            return Ok(refused(r, "the table changed since planning".into()));
                        }
                        for w in ws.iter().filter(|w| !w.commit) {
                            linux::write_at(&disk.file, w.offset, &w.bytes)
                                .map_err(ioe(&r.device, w.what))?;
                        }
                    }
                }
            }
            if !o.apply {
                let done = after_table_plan(
                    &mut disk,
                    sys_disk.as_deref(),
                    &table,
                    record.as_ref(),
                    &mut r,
                    root_no,
                );
                r.outcome = if done {
                    Outcome::Planned
                } else {
                    Outcome::Nothing
                };
                r.decision = if done {
                    "finish".into()
                } else {
                    "nothing".into()
                };
                return Ok(r);
            }
            return after_table(o, &mut disk, sys_disk, table, record, r, false, root_no);
        }
        Decision::Change(ch) => ch,
    };
    r.position = "old table".into();
    r.decision = "change".into();
    match &backup {
        BackupState::Same | BackupState::None => {}
        BackupState::Invalid(e) => r.checks.push(Check {
            what: "backup GPT".into(),
            ok: true,
            detail: format!("invalid ({e}): an interrupted reclaim wrote part of it; rewritten"),
        }),
        BackupState::Other(t) if *t == change.new => r.checks.push(Check {
            what: "backup GPT".into(),
            ok: true,
            detail: "already holds the new table (an interrupted reclaim)".into(),
        }),
        BackupState::Other(_) => {
            return Ok(refused(
                r,
                "backup GPT differs from the primary and from the planned table".into(),
            ))
        }
    }
    r.after = Some(change.new.clone());
    r.after_dump = Some(change.new.dump(&r.device));
    let sector = table.sector;
    // The writes, computed now for the plan and again under the lock before writing.
    let writes = compute_writes(&mut disk, &raw, &change)?;
    if let (Some(cfg), Some(_)) = (&change.config, &sys_disk) {
        r.steps.push(format!(
            "BLKPG_DEL_PARTITION {} (remove the config partition from the kernel)",
            cfg.number
        ));
    }
    for w in &writes {
        r.steps.push(format!(
            "write {} ({} bytes at LBA {}){}",
            w.what,
            w.bytes.len(),
            w.offset / sector,
            if w.commit { " [commit]" } else { "" }
        ));
    }
    if sys_disk.is_some() && change.root_last != change.root.last {
        r.steps.push(format!(
            "BLKPG_RESIZE_PARTITION {} to {} sectors",
            change.root.number,
            change.root_last + 1 - change.root.first
        ));
    }
    if let Some((a, b)) = change.wipe {
        r.steps.push(format!(
            "zero the old config range, sectors {a}..{b} ({} bytes)",
            (b + 1 - a) * sector
        ));
    }
    r.filesystem = Some(fs_line(&mut disk, &change.root, change.root_last, sector));
    if !o.apply {
        r.outcome = Outcome::Planned;
        return Ok(r);
    }
    tracing::info!(
        "reclaim {}: table before:\n{}",
        r.device,
        table.dump(&r.device)
    );
    linux::lock(&disk.file, LOCK_WAIT).map_err(ioe(&r.device, "flock"))?;
    // Re-check every identity field under the lock, immediately before acting.
    let raw2 = match disk.raw() {
        Ok(Some(x)) => x,
        _ => return Ok(refused(r, "the table changed since planning".into())),
    };
    let now = match position(&raw2, None) {
        Ok((Position::Table { table: t, .. }, _)) => t,
        _ => return Ok(refused(r, "the table changed since planning".into())),
    };
    if now != table {
        return Ok(refused(
            r,
            "the table changed since planning (a field differs); nothing written".into(),
        ));
    }
    if let Some(cfg) = &change.config {
        let c = content_of(&mut disk.file, &r.device, cfg, sector);
        if c.drive_sha256 != applied {
            return Ok(refused(
                r,
                format!("partition {} changed since planning", cfg.number),
            ));
        }
    }
    let writes = compute_writes(&mut disk, &raw2, &change)?;
    // From here on the report lists what was done, not the plan.
    r.steps.clear();
    if let (Some(cfg), Some(name)) = (&change.config, &sys_disk) {
        if linux::sys_children(name)
            .iter()
            .any(|p| p.number == cfg.number)
        {
            let mut tries = 0;
            loop {
                match linux::del_partition(&disk.file, cfg.number) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(linux::EBUSY) && tries < 5 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) if e.raw_os_error() == Some(linux::EBUSY) => {
                        return Ok(refused(
                            r,
                            format!(
                            "config partition {} is busy in the kernel (EBUSY: open or mounted)",
                            cfg.number
                        ),
                        ))
                    }
                    Err(e) => return Err(ioe(&r.device, "BLKPG_DEL_PARTITION")(e)),
                }
            }
            tracing::info!(
                "{}: partition {} removed from the kernel",
                r.device,
                cfg.number
            );
            r.steps
                .push(format!("BLKPG_DEL_PARTITION {} (config)", cfg.number));
        }
        crate::apply::fault::point("reclaim: BLKPG_DEL_PARTITION");
    }
    // Intent before the first table write: a crash from here on is recognised by the next run
    // (a torn primary is repaired only towards the recorded new table).
    let rec = Record {
        schema: 1,
        device: r.device.clone(),
        old: table.clone(),
        new: change.new.clone(),
        config: change.config.clone(),
        wipe: change.wipe,
        wiped: false,
        table_done: false,
        old_root_last: change.root.last,
    };
    write_record(&o.root, &rec).map_err(ioe(&o.root.display().to_string(), RECORD_PATH))?;
    for w in &writes {
        torn(w, &disk.file, sector);
        linux::write_at(&disk.file, w.offset, &w.bytes).map_err(ioe(&r.device, w.what))?;
        r.steps.push(format!(
            "wrote {} ({} bytes at {})",
            w.what,
            w.bytes.len(),
            w.offset
        ));
        tracing::info!(
            "{}: wrote {} ({} bytes at {})",
            r.device,
            w.what,
            w.bytes.len(),
            w.offset
        );
        crate::apply::fault::point(w.what);
    }
    tracing::info!(
        "reclaim {}: table after:\n{}",
        r.device,
        change.new.dump(&r.device)
    );
    after_table(
        o,
        &mut disk,
        sys_disk,
        change.new.clone(),
        Some(rec),
        r,
        true,
        root_no,
    )
}

fn compute_writes(
    disk: &mut Disk,
    raw: &Raw,
    ch: &plan::Change,
) -> Result<Vec<SectorWrite>, DiskError> {
    let dev = disk.device.clone();
    match raw {
        Raw::Gpt {
            sector,
            primary: Ok(p),
            ..
        } => {
            let entries = table::edit_entries(
                &p.entries,
                ch.config.as_ref().map(|c| c.number),
                ch.root.number,
                ch.root_last,
            );
            table::gpt_writes(&mut disk.file, *sector, &p.header, &entries)
                .map_err(ioe(&dev, "GPT"))
        }
        Raw::Mbr { header, .. } => {
            let mut s0 = [0u8; 512];
            linux::read_exact_at(&disk.file, &mut s0, 0).map_err(ioe(&dev, "MBR"))?;
            Ok(vec![table::mbr_write(
                &s0,
                header,
                ch.config.as_ref().map(|c| c.number),
                ch.root.number,
                ch.root_last,
            )
            .map_err(ioe(&dev, "MBR"))?])
        }
        _ => Err(ioe(&dev, "GPT")(io::Error::other("no valid primary GPT"))),
    }
}

fn fs_line(disk: &mut Disk, root: &Part, root_last: u64, sector: u64) -> String {
    let part_bytes = (root_last + 1 - root.first) * sector;
    match fs::fs_size(&mut disk.file, root.first * sector) {
        Some(f) if f.bytes < part_bytes => format!(
            "{} {} -> {} bytes ({} blocks of {}){}",
            f.fstype,
            f.bytes,
            part_bytes / f.block.max(1) * f.block.max(1),
            part_bytes / f.block.max(1),
            f.block,
            if disk.is_device {
                ", online"
            } else {
                ", at the next boot"
            }
        ),
        Some(f) => format!("{} {} bytes: fills its partition", f.fstype, f.bytes),
        None => "no ext4, XFS or btrfs filesystem found on root: not grown".into(),
    }
}

/// Dry run of the steps after the table: which remain. Returns whether any does.
fn after_table_plan(
    disk: &mut Disk,
    sys_disk: Option<&str>,
    table: &Table,
    record: Option<&Record>,
    r: &mut Report,
    root_no: u32,
) -> bool {
    let mut any = false;
    if let Some(rec) = record.filter(|rec| rec.new == *table) {
        if let (Some((a, b)), false) = (rec.wipe, rec.wiped) {
            r.steps.push(format!(
                "zero the old config range, sectors {a}..{b} (not done yet)"
            ));
            any = true;
        }
    }
    if let Some(name) = sys_disk {
        let rec = record.filter(|rec| rec.new == *table);
        for op in kernel_ops(table, rec, root_no, &linux::sys_children(name)) {
            r.steps
                .push(format!("{op} (the kernel is behind the table)"));
            any = true;
        }
    }
    r.filesystem = table
        .part(root_no)
        .cloned()
        .map(|p| fs_line(disk, &p, p.last, table.sector));
    any
}

/// The steps after the table write (and of every re-run that finds the new table): the kernel's
/// view, the wipe of the old config range, the filesystem. Each derived from the disk.
// The run's state handed on from three places (change, repair, re-run); a struct for it would
// only rename these.
#[allow(clippy::too_many_arguments)]
fn after_table(
    o: &Options,
    disk: &mut Disk,
    sys_disk: Option<String>,
    table: Table,
    record: Option<Record>,
    mut r: Report,
    wrote: bool,
    root_no: u32,
) -> Result<Report, DiskError> {
    let mut changed = wrote;
    let mut partial: Option<String> = None;
    let sector = table.sector;
    // Verify the table on the disk is what it should be (both copies for GPT).
    if wrote {
        match disk.raw() {
            Ok(Some(Raw::Gpt {
                primary: Ok(p),
                backup: Ok(b),
                sector,
                disk_sectors,
            })) => {
                let (pt, bt) = (
                    table::gpt_table(&p, sector, disk_sectors),
                    table::gpt_table(&b, sector, disk_sectors),
                );
                if pt != table || bt != table {
                    return Err(ioe(&r.device, "verify")(io::Error::other(
                        "the table read back differs from the one written",
                    )));
                }
            }
            Ok(Some(Raw::Mbr {
                header,
                sector,
                disk_sectors,
            })) => {
                if table::mbr_table(&header, sector, disk_sectors)
                    .ok()
                    .as_ref()
                    != Some(&table)
                {
                    return Err(ioe(&r.device, "verify")(io::Error::other(
                        "the MBR read back differs from the one written",
                    )));
                }
            }
            _ => {
                return Err(ioe(&r.device, "verify")(io::Error::other(
                    "the table read back is not valid",
                )))
            }
        }
        r.steps
            .push("table written and verified (both copies)".into());
    }
    let mut rec = record.filter(|rec| rec.new == table);
    if let Some(rec) = rec.as_mut() {
        if !rec.table_done {
            rec.table_done = true;
            let _ = write_record(&o.root, rec);
        }
    }
    // The kernel's view (live devices only): only the partitions this change is about, each
    // matched by its identity (number and start).
    if let Some(name) = &sys_disk {
        for op in kernel_ops(&table, rec.as_ref(), root_no, &linux::sys_children(name)) {
            let res = match op {
                KernelOp::Del(n) => linux::del_partition(&disk.file, n),
                KernelOp::Resize(n, start, len) => {
                    linux::resize_partition(&disk.file, n, start, len)
                }
            };
            match res {
                Ok(()) => {
                    r.steps.push(op.to_string());
                    changed = true;
                }
                Err(e) => partial = Some(format!("{op}: {e}")),
            }
        }
        crate::apply::fault::point("reclaim: kernel view");
    }
    let root = table.part(root_no).cloned();
    // Wipe the old config range while the filesystem has not grown into it.
    if let Some(rec) = rec.as_mut() {
        if let (Some((a, b)), false) = (rec.wipe, rec.wiped) {
            let fs_end = root.as_ref().and_then(|p| {
                fs::fs_size(&mut disk.file, p.first * sector).map(|f| p.first * sector + f.bytes)
            });
            let start = a * sector;
            let len = (b + 1 - a) * sector;
            if fs_end.is_none_or(|e| e <= start) {
                tracing::info!(
                    "{}: zeroing the old config range ({len} bytes at {start})",
                    r.device
                );
                let dev = r.device.clone();
                let mut last_pct = u64::MAX;
                // One BLKZEROOUT chunk may block for seconds on a slow device.
                let _progress = crate::progress::Progress::start(format!(
                    "{}: zeroing the old config range",
                    r.device
                ));
                linux::zero_range(
                    &disk.file,
                    disk.is_device,
                    start,
                    len,
                    &mut |done, total| {
                        let pct = done * 100 / total.max(1);
                        if pct / 10 != last_pct / 10 || done == total {
                            last_pct = pct;
                            tracing::info!("{dev}: zeroing {done}/{total} bytes");
                        }
                    },
                )
                .map_err(ioe(&r.device, "zero the old config range"))?;
                r.steps
                    .push(format!("zeroed sectors {a}..{b} ({len} bytes)"));
                rec.wiped = true;
                let _ = write_record(&o.root, rec);
                changed = true;
                crate::apply::fault::point("reclaim: wipe");
            } else {
                r.steps
                    .push("old config range not zeroed: the filesystem already uses it".into());
                rec.wiped = true;
                let _ = write_record(&o.root, rec);
            }
        }
    }
    // The filesystem: grown while smaller than its partition (every boot until done). A
    // mounted filesystem is measured through itself (its superblock on the disk may lag behind
    // its log); an unmounted one from its superblock, and grows once mounted.
    if let Some(p) = &root {
        let part_bytes = p.sectors() * sector;
        let kp = sys_disk.as_ref().and_then(|name| {
            linux::sys_children(name)
                .into_iter()
                .find(|k| k.number == p.number)
        });
        let mounted = kp.as_ref().and_then(|k| {
            let dev = std::fs::read_to_string(format!("/sys/class/block/{}/dev", k.name)).ok()?;
            linux::mounts().into_iter().find(|m| {
                linux::mount_dev(m)
                    .map(|(a, b)| format!("{a}:{b}"))
                    .as_deref()
                    == Some(dev.trim())
            })
        });
        match (mounted, kp) {
            (Some(m), Some(k)) => {
                // The kernel's size bounds the growth (BLKPG_RESIZE may have failed).
                let bytes = part_bytes.min(k.size * 512);
                let node = PathBuf::from("/dev").join(&k.name);
                match fs::mounted_size(&m.mountpoint, &m.fstype, &node) {
                    Some(f) if f.bytes + f.block <= bytes => {
                        tracing::info!(
                            "{}: growing {} on {} from {} to {bytes} bytes",
                            r.device,
                            m.fstype,
                            m.mountpoint.display(),
                            f.bytes
                        );
                        // Timed: the online grow is the one step whose duration depends on
                        // the disk size (the figures in benches/README.md come from here).
                        let t0 = std::time::Instant::now();
                        let progress = crate::progress::Progress::start(format!(
                            "{}: growing {} on {}",
                            r.device,
                            m.fstype,
                            m.mountpoint.display()
                        ));
                        let grown = fs::grow(&m.mountpoint, &m.fstype, bytes, f.block);
                        drop(progress);
                        match grown {
                            Ok(what) => {
                                let ms = t0.elapsed().as_millis();
                                tracing::info!(
                                    "{}: {} on {} grown to {bytes} bytes in {ms} ms ({what})",
                                    r.device,
                                    m.fstype,
                                    m.mountpoint.display()
                                );
                                r.filesystem = Some(format!(
                                    "{} on {}: {} -> {bytes} bytes ({what}) in {ms} ms",
                                    m.fstype,
                                    m.mountpoint.display(),
                                    f.bytes
                                ));
                                r.steps.push(format!("{what} in {ms} ms"));
                                changed = true;
                            }
                            Err(e) => {
                                r.filesystem = Some(format!(
                                    "{} on {}: {} bytes, partition {bytes}: {e}",
                                    m.fstype,
                                    m.mountpoint.display(),
                                    f.bytes
                                ));
                                partial = Some(e.to_string());
                            }
                        }
                        crate::apply::fault::point("reclaim: filesystem grown");
                    }
                    Some(f) => {
                        r.filesystem = Some(format!(
                            "{} on {}: {} bytes, fills its partition",
                            m.fstype,
                            m.mountpoint.display(),
                            f.bytes
                        ))
                    }
                    None => {
                        r.filesystem = Some(format!(
                            "{} on {}: size unknown; not grown (ext4, xfs, btrfs only)",
                            m.fstype,
                            m.mountpoint.display()
                        ))
                    }
                }
            }
            _ => {
                r.filesystem = Some(match fs::fs_size(&mut disk.file, p.first * sector) {
                    Some(f) if f.bytes + f.block <= part_bytes => format!(
                    "{} {} bytes < partition {part_bytes} bytes: grows when mounted (next boot)",
                    f.fstype, f.bytes
                ),
                    Some(f) => format!("{} {} bytes: fills its partition", f.fstype, f.bytes),
                    None => "no ext4, XFS or btrfs filesystem found on root".into(),
                })
            }
        }
    }
    r.after = Some(table.clone());
    r.after_dump = Some(table.dump(&r.device));
    if let Some(why) = partial {
        r.outcome = Outcome::Partial;
        r.reason = Some(why);
    } else if changed {
        r.outcome = Outcome::Changed;
        r.decision = "change".into();
    } else {
        r.outcome = Outcome::Nothing;
        r.decision = "nothing".into();
    }
    Ok(r)
}

/// A change of the kernel's partition view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelOp {
    Del(u32),
    /// Number, start and length in bytes.
    Resize(u32, u64, u64),
}

impl std::fmt::Display for KernelOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelOp::Del(n) => write!(f, "BLKPG_DEL_PARTITION {n}"),
            KernelOp::Resize(n, _, len) => write!(f, "BLKPG_RESIZE_PARTITION {n} -> {len} bytes"),
        }
    }
}

/// What the kernel still needs once the table is new: the recorded config partition removed
/// (when the kernel has a partition with its number and start), root resized (same start).
/// Partitions the change is not about are left alone.
fn kernel_ops(
    table: &Table,
    rec: Option<&Record>,
    root_no: u32,
    kernel: &[linux::SysPart],
) -> Vec<KernelOp> {
    let ss = table.sector;
    let mut ops = Vec::new();
    for k in kernel {
        let cfg = rec.and_then(|r| r.config.as_ref());
        if let Some(c) = cfg.filter(|c| c.number == k.number && table.part(k.number).is_none()) {
            if c.first * ss / 512 == k.start {
                ops.push(KernelOp::Del(k.number));
            }
        }
        if k.number == root_no {
            if let Some(p) = table.part(root_no) {
                if p.first * ss / 512 == k.start && p.sectors() * ss / 512 != k.size {
                    ops.push(KernelOp::Resize(k.number, p.first * ss, p.sectors() * ss));
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32, first: u64, last: u64) -> Part {
        Part {
            number: n,
            first,
            last,
            type_code: "T".into(),
            guid: None,
            name: None,
            attrs: 0,
        }
    }

    fn sys(n: u32, start: u64, size: u64) -> linux::SysPart {
        linux::SysPart {
            name: format!("vda{n}"),
            disk: "vda".into(),
            number: n,
            start,
            size,
        }
    }

    #[test]
    fn kernel_ops_touch_only_the_recorded_change() {
        let old = Table {
            kind: table::TableKind::Gpt,
            sector: 512,
            disk_sectors: 1445888,
            disk_id: "d".into(),
            first_usable: 34,
            last_usable: 1445854,
            backup_lba: Some(1445887),
            parts: vec![part(1, 2048, 1312767), part(2, 1312768, 1445854)],
        };
        let mut new = old.clone();
        new.parts = vec![part(1, 2048, 1443839)];
        let rec = Record {
            schema: 1,
            device: "/dev/vda".into(),
            old: old.clone(),
            new: new.clone(),
            config: Some(part(2, 1312768, 1445854)),
            wipe: None,
            wiped: true,
            table_done: true,
            old_root_last: 1312767,
        };
        let kernel = [
            sys(1, 2048, 1310720),
            sys(2, 1312768, 133087),
            sys(3, 99, 1),
        ];
        assert_eq!(
            kernel_ops(&new, Some(&rec), 1, &kernel),
            vec![
                KernelOp::Resize(1, 2048 * 512, 1441792 * 512),
                KernelOp::Del(2)
            ]
        );
        // Without the record, the kernel's extra partitions are not primer's to remove.
        assert_eq!(
            kernel_ops(&new, None, 1, &kernel),
            vec![KernelOp::Resize(1, 2048 * 512, 1441792 * 512)]
        );
        // A partition 2 at another start is someone else's.
        let kernel = [sys(1, 2048, 1441792), sys(2, 4096, 10)];
        assert!(kernel_ops(&new, Some(&rec), 1, &kernel).is_empty());
    }
}
