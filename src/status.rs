//! Status: the record of the last `primer run` (`var/lib/primer/status.json`), one value of the
//! current instance's data (`primer query`), and forgetting an instance's records (`primer
//! clean`). Writes and removes only primer's own private state below `var/lib/primer` — never a
//! file `run` applied to the system — and never logs a secret or prints one unless asked for it
//! (`--sensitive`, root only). Plans and applies nothing.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::apply::fs::Writer;
use crate::apply::{ApplyReport, Outcome, StepSource};
use crate::facts::Meta;
use crate::media::{DriveFiles, Limits};
use crate::model::Instance;
use crate::paths::{resolve_in_root, Found, Resolver};
use crate::state::{self, PrettyDoc, PrettyJson, Record};
use crate::{Error, Exit};

/// Version of the `status.json` layout; bumped when a field changes meaning.
pub const STATUS_SCHEMA: u32 = 1;

/// Largest state file read back (status.json lists every copied drive file; instance.json holds
/// network documents): far above what a drive within `media::Limits` produces.
const MAX_STATE_FILE: u64 = 64 << 20;

/// Why `status`, `query` or `clean` could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("invalid instance id {id:?}: {reason}")]
    InvalidInstanceId { id: String, reason: &'static str },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
    #[error("{key}: no such key in {file}")]
    MissingKey { key: String, file: String },
    #[error("no instance is recorded under {root} (primer has not applied a drive there, or it was cleaned)")]
    NoInstance { root: String },
    #[error(
        "several instances are recorded under {root} ({ids}) and no status names the current one: \
         choose one with --instance"
    )]
    Ambiguous { root: String, ids: String },
    #[error(
        "--sensitive needs root (effective uid 0; this process runs as uid {euid}): the secrets \
         are only in the private copy of the drive"
    )]
    NotRoot { euid: u32 },
    #[error("{path}: reached through a symbolic link; refusing to remove anything through it")]
    Symlink { path: String },
    #[error(
        "{key}: primer never keeps a password in clear (not even in its copy of the drive); only \
         its SHA-512 crypt hash is stored, in /etc/shadow"
    )]
    PasswordNotKept { key: String },
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC timestamp (`2024-02-29T12:00:00Z`).
pub fn rfc3339_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// The wall clock now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    rfc3339_utc(epoch_secs(SystemTime::now()))
}

fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// What the last `primer run` did: `var/lib/primer/status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`STATUS_SCHEMA`].
    pub schema: u32,
    /// When the run started, RFC 3339 UTC.
    pub time: String,
    /// Wall time of the whole run (probe, read, plan, apply), milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    pub primer_version: String,
    /// `changed`, `unchanged`, `partial` or `no-drive` (see `Exit::name`).
    pub outcome: String,
    pub exit_code: u8,
    #[serde(default)]
    pub summary: Summary,
    /// The drive this run read; `None` when no drive was found.
    #[serde(default)]
    pub drive: Option<DriveStatus>,
    /// The instance this run applied; `None` when no drive was found.
    #[serde(default)]
    pub instance: Option<InstanceRef>,
    /// Every step, in the order it ran.
    #[serde(default)]
    pub steps: Vec<StepStatus>,
    /// Warnings from reading the drive and planning (file and field, never a value of a secret).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The last run that applied a drive with a usable instance id: this one, or, after a boot
    /// without a drive, the one before. `query` and `clean` act on its instance by default.
    #[serde(default)]
    pub last_applied: Option<LastApplied>,
    /// The kernel's boot id of the boot this run belongs to (`status --wait` waits for a
    /// status of the current boot); absent where none could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Why the run stopped before planning (outcome `error` or `refused`): the message the
    /// run printed, naming the device, file and field. Absent for runs that got to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Steps by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub changed: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// The drive a run read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveStatus {
    /// Why this drive was used: `--source PATH`, or the probe's reason
    /// (`label config-2 on /dev/sr0 (iso9660)`).
    pub origin: String,
    /// Device, image file or directory it was read from.
    pub device: String,
    /// `iso9660`, `vfat`, `dir`, ...
    pub fstype: String,
    pub label: Option<String>,
    /// Content hash of the whole drive, passwords left out (`plan::scrub::drive_hash`).
    pub sha256: String,
    pub files: usize,
}

/// Which instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRef {
    pub id: String,
    pub format: String,
    pub version: String,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStatus {
    pub id: String,
    /// `changed`, `unchanged`, `skipped` or `failed`.
    pub outcome: SharedText,
    /// The plan's why, or the error.
    pub detail: String,
    /// When the step ran, RFC 3339 UTC: the time apply started for the plan's steps (apply does
    /// not time steps one by one), the time of the pinning for the `pin` step.
    pub time: SharedText,
}

/// A text many steps of a status hold alike (an outcome name, the run's time): one allocation
/// shared by all of them, not one per step (a run may record 10,000 steps). Written and read
/// as a plain JSON string.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedText(std::sync::Arc<str>);

impl SharedText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SharedText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedText {
    fn from(s: &str) -> Self {
        SharedText(s.into())
    }
}

impl From<String> for SharedText {
    fn from(s: String) -> Self {
        SharedText(s.into())
    }
}

impl PartialEq<str> for SharedText {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedText {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl std::fmt::Debug for SharedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for SharedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SharedText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SharedText::from)
    }
}

/// The last run that applied a drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApplied {
    pub time: String,
    pub outcome: String,
    pub instance: InstanceRef,
}

impl Status {
    /// The instance `query` and `clean` act on by default, when it is a usable id.
    pub fn current_instance(&self) -> Option<&str> {
        self.last_applied
            .as_ref()
            .map(|l| l.instance.id.as_str())
            .filter(|id| state::invalid_instance_id(id).is_none())
    }

    /// Whether this status is about `id` (this run's instance or the last applied one).
    pub fn refers_to(&self, id: &str) -> bool {
        self.instance.as_ref().is_some_and(|i| i.id == id)
            || self
                .last_applied
                .as_ref()
                .is_some_and(|l| l.instance.id == id)
    }

    /// The document, its steps from `self.steps` or, for a run's status, from `run`.
    fn fields_into(&self, j: &mut PrettyJson<'_>, run: Option<&RunSteps<'_>>) {
        j.open(b'{');
        j.key("schema");
        j.number(u64::from(self.schema));
        j.key("time");
        j.string(&self.time);
        j.key("duration_ms");
        j.number(self.duration_ms);
        j.key("primer_version");
        j.string(&self.primer_version);
        j.key("outcome");
        j.string(&self.outcome);
        j.key("exit_code");
        j.number(u64::from(self.exit_code));
        j.key("summary");
        j.open(b'{');
        for (k, n) in [
            ("changed", self.summary.changed),
            ("unchanged", self.summary.unchanged),
            ("skipped", self.summary.skipped),
            ("failed", self.summary.failed),
        ] {
            j.key(k);
            j.number(n as u64);
        }
        j.close(b'}');
        j.key("drive");
        match &self.drive {
            Some(d) => {
                j.open(b'{');
                for (k, v) in [
                    ("origin", &d.origin),
                    ("device", &d.device),
                    ("fstype", &d.fstype),
                ] {
                    j.key(k);
                    j.string(v);
                }
                j.key("label");
                j.opt_string(d.label.as_deref());
                j.key("sha256");
                j.string(&d.sha256);
                j.key("files");
                j.number(d.files as u64);
                j.close(b'}');
            }
            None => j.null(),
        }
        j.key("instance");
        match &self.instance {
            Some(i) => instance_ref_json(j, i),
            None => j.null(),
        }
        j.key("steps");
        j.open(b'[');
        let step = |j: &mut PrettyJson<'_>, fields: [(&str, &str); 4]| {
            j.item();
            j.open(b'{');
            for (k, v) in fields {
                j.key(k);
                j.string(v);
            }
            j.close(b'}');
            j.spill();
        };
        for st in &self.steps {
            step(
                j,
                [
                    ("id", st.id.as_str()),
                    ("outcome", st.outcome.as_str()),
                    ("detail", st.detail.as_str()),
                    ("time", st.time.as_str()),
                ],
            );
        }
        if let Some(run) = run {
            // Each step's texts borrowed from the report (scrubbed here, copied only when a
            // secret is in them).
            for i in 0..run.source.step_count() {
                let (id, outcome, detail) = run.source.step_at(i);
                let detail = scrub_cow(detail, &run.secrets);
                step(
                    j,
                    [
                        ("id", id),
                        ("outcome", outcome_str(outcome)),
                        ("detail", &detail),
                        ("time", run.time_of(i)),
                    ],
                );
            }
        }
        j.close(b']');
        j.key("warnings");
        j.open(b'[');
        for w in &self.warnings {
            j.item();
            j.string(w);
            j.spill();
        }
        j.close(b']');
        j.key("last_applied");
        match &self.last_applied {
            Some(l) => {
                j.open(b'{');
                j.key("time");
                j.string(&l.time);
                j.key("outcome");
                j.string(&l.outcome);
                j.key("instance");
                instance_ref_json(j, &l.instance);
                j.close(b'}');
            }
            None => j.null(),
        }
        if let Some(b) = &self.boot_id {
            j.key("boot_id");
            j.string(b);
        }
        if let Some(e) = &self.error {
            j.key("error");
            j.string(e);
        }
        j.close(b'}');
    }
}

impl PrettyDoc for Status {
    fn json_into(&self, j: &mut PrettyJson<'_>) {
        self.fields_into(j, None)
    }

    fn json_size(&self) -> usize {
        let text: usize = self
            .steps
            .iter()
            .map(|s| s.id.len() + s.detail.len() + 160)
            .chain(self.warnings.iter().map(|w| w.len() + 8))
            .sum();
        text + 1024
    }
}

impl crate::model::bytes::WriteOut for Status {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        self.write_json(out)
    }
}

/// An [`InstanceRef`] as `serde_json` writes it.
fn instance_ref_json(j: &mut PrettyJson<'_>, i: &InstanceRef) {
    j.open(b'{');
    for (k, v) in [
        ("id", &i.id),
        ("format", &i.format),
        ("version", &i.version),
    ] {
        j.key(k);
        j.string(v);
    }
    j.close(b'}');
}

/// A step outcome's name, as `ApplyReport` serialises it (`rename_all = "lowercase"`; a unit
/// test holds the two together), without a `serde_json::Value` per step.
fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Changed => "changed",
        Outcome::Unchanged => "unchanged",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "failed",
    }
}

/// A run's status as it is written: [`Status`] without its steps, which are read from the
/// run's report as the document is written (a report of 28,000 steps copied into
/// `StepStatus` values cost ~6 MiB more). A status without a report (no drive, a run that
/// stopped) is a plain [`Status`].
pub struct RunStatus<'a> {
    /// Everything but the report's steps (`steps` empty for a run's status).
    pub status: Status,
    run: Option<RunSteps<'a>>,
}

/// The steps of a run's status: the report's, with their times and the texts to scrub.
struct RunSteps<'a> {
    source: &'a dyn StepSource,
    /// Steps before this index came from the plan: time `applied`; later ones `finished`.
    plan_steps: usize,
    applied: String,
    finished: String,
    secrets: Vec<String>,
}

impl RunSteps<'_> {
    fn time_of(&self, i: usize) -> &str {
        if i < self.plan_steps {
            &self.applied
        } else {
            &self.finished
        }
    }
}

impl From<Status> for RunStatus<'_> {
    fn from(status: Status) -> Self {
        RunStatus { status, run: None }
    }
}

impl RunStatus<'_> {
    /// The whole status, its steps copied out of the report (what `status` reads back).
    pub fn to_status(&self) -> Status {
        let mut s = self.status.clone();
        if let Some(run) = &self.run {
            let names = [
                Outcome::Changed,
                Outcome::Unchanged,
                Outcome::Skipped,
                Outcome::Failed,
            ]
            .map(|o| (o, SharedText::from(outcome_str(o))));
            let (applied, finished) = (
                SharedText::from(run.applied.as_str()),
                SharedText::from(run.finished.as_str()),
            );
            s.steps.extend((0..run.source.step_count()).map(|i| {
                let (id, o, detail) = run.source.step_at(i);
                StepStatus {
                    id: id.to_string(),
                    outcome: names
                        .iter()
                        .find(|(n, _)| *n == o)
                        .map(|(_, t)| t.clone())
                        .unwrap_or_default(),
                    detail: scrub_cow(detail, &run.secrets).into_owned(),
                    time: if i < run.plan_steps {
                        applied.clone()
                    } else {
                        finished.clone()
                    },
                }
            }));
        }
        s
    }
}

impl PrettyDoc for RunStatus<'_> {
    fn json_into(&self, j: &mut PrettyJson<'_>) {
        self.status.fields_into(j, self.run.as_ref())
    }

    fn json_size(&self) -> usize {
        // A capacity hint: each step's texts estimated, not rendered (a whole-file step's why is
        // made when asked for; rendering each twice cost 5 % of a first run's instructions).
        let run = self.run.as_ref().map_or(0, |r| r.source.step_count() * 320);
        self.status.json_size() + run
    }
}

impl crate::model::bytes::WriteOut for RunStatus<'_> {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        self.write_json(out)
    }
}

/// Everything `run` knows when it records a run that applied a drive.
pub struct RunFacts<'a> {
    /// When the run started.
    pub started: SystemTime,
    /// When apply started (the time of every plan step).
    pub applied: SystemTime,
    /// When the extra steps after apply (pinning) ran.
    pub finished: SystemTime,
    pub duration_ms: u64,
    pub exit: Exit,
    pub origin: &'a str,
    pub drive: &'a DriveFiles,
    /// The drive's content hash as the plan computed it (`plan::scrub::drive_hash`).
    pub drive_sha256: &'a str,
    pub instance: &'a Instance,
    /// How many steps came from the plan (the pin included); a later one (the status record)
    /// ran after apply.
    pub plan_steps: usize,
    pub report: &'a dyn StepSource,
    pub warnings: &'a [String],
    /// The last applied run before this one (carried over when this instance id is unusable).
    pub previous: Option<LastApplied>,
}

/// The status of a run that applied a drive. Any step detail or warning that would contain the
/// drive's password is redacted (none does: details are the plan's whys and I/O errors).
pub fn run_status(f: RunFacts<'_>) -> RunStatus<'_> {
    let secrets = secret_texts(f.instance);
    let instance = InstanceRef {
        id: f.instance.instance_id.clone(),
        format: f.instance.format.to_string(),
        version: f.instance.version.clone(),
    };
    let time = rfc3339_utc(epoch_secs(f.started));
    let last_applied = if state::invalid_instance_id(&instance.id).is_none() {
        Some(LastApplied {
            time: time.clone(),
            outcome: f.exit.name().to_string(),
            instance: instance.clone(),
        })
    } else {
        // No record was kept for this id: the current instance stays the previous one.
        f.previous
    };
    let status = Status {
        schema: STATUS_SCHEMA,
        time,
        duration_ms: f.duration_ms,
        primer_version: env!("CARGO_PKG_VERSION").to_string(),
        outcome: f.exit.name().to_string(),
        exit_code: f.exit.code(),
        summary: Summary {
            changed: f.report.count_of(Outcome::Changed),
            unchanged: f.report.count_of(Outcome::Unchanged),
            skipped: f.report.count_of(Outcome::Skipped),
            failed: f.report.count_of(Outcome::Failed),
        },
        drive: Some(DriveStatus {
            origin: f.origin.to_string(),
            device: f.drive.device.clone(),
            fstype: f.drive.fstype.clone(),
            label: f.drive.label.clone(),
            sha256: f.drive_sha256.to_string(),
            files: f.drive.files.len(),
        }),
        instance: Some(instance),
        // Written from the report (`RunStatus`).
        steps: Vec::new(),
        warnings: f.warnings.iter().map(|w| scrub(w, &secrets)).collect(),
        last_applied,
        boot_id: None,
        error: None,
    };
    RunStatus {
        status,
        run: Some(RunSteps {
            source: f.report,
            plan_steps: f.plan_steps,
            applied: rfc3339_utc(epoch_secs(f.applied)),
            finished: rfc3339_utc(epoch_secs(f.finished)),
            secrets,
        }),
    }
}

/// The status of a run that found no drive: nothing changed; the last applied instance is
/// carried over from `previous`.
pub fn no_drive_status(
    started: SystemTime,
    duration_ms: u64,
    previous: Option<LastApplied>,
) -> Status {
    Status {
        schema: STATUS_SCHEMA,
        time: rfc3339_utc(epoch_secs(started)),
        duration_ms,
        primer_version: env!("CARGO_PKG_VERSION").to_string(),
        outcome: Exit::NoDrive.name().to_string(),
        exit_code: Exit::NoDrive.code(),
        summary: Summary::default(),
        drive: None,
        instance: None,
        steps: Vec::new(),
        warnings: Vec::new(),
        last_applied: previous,
        boot_id: None,
        error: None,
    }
}

/// The status of a run that stopped before planning: the configuration or the drive could not
/// be read, or the trust policy refused the drive (`exit` is `Error` or `Refused`). Nothing was
/// applied; the last applied instance is carried over from `previous`. Recorded so that
/// `status --wait` reports this boot's outcome instead of waiting out its time-out.
pub fn failed_status(
    started: SystemTime,
    duration_ms: u64,
    exit: Exit,
    error: String,
    previous: Option<LastApplied>,
) -> Status {
    Status {
        outcome: exit.name().to_string(),
        exit_code: exit.code(),
        error: Some(error),
        ..no_drive_status(started, duration_ms, previous)
    }
}

/// Texts that must not appear in the status: the password (as text; a random seed is binary).
/// Very short ones are left out: replacing every `ab` in the details would only garble them.
fn secret_texts(i: &Instance) -> Vec<String> {
    i.admin_pass
        .iter()
        .filter_map(|s| std::str::from_utf8(s.expose()).ok())
        .filter(|s| s.len() >= 6)
        .map(str::to_string)
        .collect()
}

fn scrub(text: &str, secrets: &[String]) -> String {
    scrub_cow(std::borrow::Cow::Borrowed(text), secrets).into_owned()
}

/// [`scrub`], copying `text` only when a secret is in it (the status writes each step's
/// detail as it is, borrowed from the report).
fn scrub_cow<'t>(text: std::borrow::Cow<'t, str>, secrets: &[String]) -> std::borrow::Cow<'t, str> {
    let mut t = text;
    for s in secrets {
        if t.contains(s.as_str()) {
            t = t
                .replace(s.as_str(), &format!("<redacted {} bytes>", s.len()))
                .into();
        }
    }
    t
}

/// `/path` as the target system sees it.
fn shown(rel: &str) -> String {
    format!("/{}", rel.trim_start_matches('/'))
}

/// Reads one of primer's state files under `root` (resolved inside it), at most
/// `MAX_STATE_FILE` bytes. `Ok(None)` when it does not exist.
fn read_state_file(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, StatusError> {
    open_state_file(root, rel)?
        .map(|(f, len)| read_opened(rel, f, len))
        .transpose()
}

/// One of primer's state files under `root` (resolved inside it), opened, with its length
/// from the open's `fstat`; refused when that is over `MAX_STATE_FILE`. `Ok(None)` when it
/// does not exist.
fn open_state_file(root: &Path, rel: &str) -> Result<Option<(fs::File, u64)>, StatusError> {
    let host = resolve_in_root(root, rel).map_err(|source| StatusError::Io {
        path: shown(rel),
        source,
    })?;
    open_state_host(&host, rel)
}

/// [`open_state_file`] through the run's resolver (`lookups`): the directories on the way,
/// which the host facts and the writer already looked up, are not looked up again.
fn open_state_file_in(
    lookups: &Resolver,
    rel: &str,
) -> Result<Option<(fs::File, u64)>, StatusError> {
    let (host, found) = lookups
        .resolve_found(rel)
        .map_err(|source| StatusError::Io {
            path: shown(rel),
            source,
        })?;
    if found == Found::Missing {
        return Ok(None);
    }
    open_state_host(&host, rel)
}

/// Opens the state file `rel`, already resolved to `host`. A file longer than
/// `MAX_STATE_FILE` is refused from the length its open's `fstat` gave, before a byte is read
/// (a sparse 64 GiB file was read up to the bound, 64 MiB, before it was refused).
fn open_state_host(host: &Path, rel: &str) -> Result<Option<(fs::File, u64)>, StatusError> {
    let (f, len) = match crate::platform::open_for_read(host) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StatusError::Io {
                path: shown(rel),
                source,
            })
        }
    };
    if len > MAX_STATE_FILE {
        return Err(too_large(rel));
    }
    Ok(Some((f, len)))
}

fn too_large(rel: &str) -> StatusError {
    StatusError::Invalid {
        path: shown(rel),
        detail: format!("larger than {MAX_STATE_FILE} bytes"),
    }
}

/// The whole of the opened state file `rel` (`len`: its length from the open), bounded as
/// `read_state_file` says (a file grown past the bound since its open is refused too).
fn read_opened(rel: &str, f: fs::File, len: u64) -> Result<Vec<u8>, StatusError> {
    let v = read_bounded(f, len, MAX_STATE_FILE).map_err(|source| StatusError::Io {
        path: shown(rel),
        source,
    })?;
    if v.len() as u64 > MAX_STATE_FILE {
        return Err(too_large(rel));
    }
    Ok(v)
}

/// The opened state file `rel` (`len` from its open) read whole and parsed as `T`, with
/// [`parse_state`]'s errors. (A long status was once parsed as it was read, through a small
/// buffer: serde_json's reader instantiated for it cost 45 KB of binary and 11 % more CPU on a
/// 7 MiB status, to save a buffer that is not at any run's peak.)
fn parse_opened<T: serde::de::DeserializeOwned>(
    rel: &str,
    f: fs::File,
    len: u64,
) -> Result<T, StatusError> {
    parse_state(rel, &read_opened(rel, f, len)?)
}

/// The whole of `f`, or its first `max + 1` bytes when it is longer (the caller refuses it).
/// Sized from the file's length: one read of the whole file and one that finds its end, where
/// `read_to_end` through `Take` read in 8 KiB steps (a 12 KiB status or an 18 KiB re-run
/// cache took three reads, on every boot).
/// `len`: the file's length from the `fstat` of its open (`platform::open_for_read`), not asked
/// again.
pub(crate) fn read_bounded(mut f: fs::File, len: u64, max: u64) -> io::Result<Vec<u8>> {
    let hint = len.min(max);
    // One byte more than the file: a read that returns 0 there is its end.
    let mut v = vec![0u8; usize::try_from(hint).unwrap_or(0) + 1];
    let mut n = 0;
    loop {
        if n == v.len() {
            if n as u64 > max {
                break;
            }
            // Grown since its length was read: on in doubling steps, still bounded.
            let more = v
                .len()
                .saturating_mul(2)
                .min(usize::try_from(max + 1).unwrap_or(usize::MAX));
            v.resize(more.max(n + 1), 0);
        }
        match f.read(&mut v[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    v.truncate(n);
    Ok(v)
}

fn parse_state<T: serde::de::DeserializeOwned>(rel: &str, bytes: &[u8]) -> Result<T, StatusError> {
    // XFS (and ext4 with `data=writeback`) may show a file whose size landed before its data
    // as NUL bytes: that is a torn file too, not a malformed one.
    let blank = bytes.iter().all(|b| b.is_ascii_whitespace() || *b == 0);
    if blank || bytes.contains(&0) {
        // Either is refused before parsing: the parser's error would not say why.
        return Err(state_error(rel, blank, true, None));
    }
    serde_json::from_slice(bytes).map_err(|e| state_error(rel, false, false, Some(e)))
}

/// Why the state file `rel` could not be parsed: it is `blank` (white space and NUL bytes), it
/// holds a `nul` byte, or the parser's error `e`.
fn state_error(rel: &str, blank: bool, nul: bool, e: Option<serde_json::Error>) -> StatusError {
    // A report replaced without a flush (`write_status_unsynced`) may be found empty or cut
    // short after a power loss: said so, and what puts it right.
    const AGAIN: &str = "a crash while it was replaced? the next `primer run` writes it again";
    let detail = if blank {
        format!("empty ({AGAIN})")
    } else if nul {
        format!("torn: NUL bytes where its content should be ({AGAIN})")
    } else {
        match e {
            Some(e) if e.is_eof() => format!("torn: it ends early ({AGAIN}): {e}"),
            Some(e) => format!("not a valid primer state file: {e}"),
            None => "not a valid primer state file".to_string(),
        }
    };
    StatusError::Invalid {
        path: shown(rel),
        detail,
    }
}

/// The current instance (`last_applied`) the status under `root` names, parsing only that
/// field: `None` when there is no status, or it is unreadable, empty or torn.
pub fn recorded_instance(root: &Path) -> Option<String> {
    let rel = state::status_path();
    instance_of_status(&rel, open_state_file(root, &rel).ok()??)
}

/// [`recorded_instance`] through the run's resolver (`lookups`, rooted at the target root).
pub fn recorded_instance_in(lookups: &Resolver) -> Option<String> {
    let rel = state::status_path();
    instance_of_status(&rel, open_state_file_in(lookups, &rel).ok()??)
}

/// The current instance the opened status `rel` names, parsing only that field.
fn instance_of_status(rel: &str, (f, len): (fs::File, u64)) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    #[derive(Deserialize)]
    struct Applied {
        instance: Id,
    }
    #[derive(Deserialize)]
    struct Top {
        #[serde(default)]
        last_applied: Option<Applied>,
    }
    // No check beyond the parse: an unreadable status names no instance.
    let top: Top = serde_json::from_slice(&read_opened(rel, f, len).ok()?).ok()?;
    top.last_applied
        .map(|a| a.instance.id)
        .filter(|id| state::invalid_instance_id(id).is_none())
}

/// The status of the last run under `root`; `Ok(None)` when there is none.
pub fn read_status(root: &Path) -> Result<Option<Status>, StatusError> {
    let rel = state::status_path();
    read_state_file(root, &rel)?
        .map(|b| parse_state(&rel, &b))
        .transpose()
}

/// The last applied run (`last_applied`) of the status under `root`: `Ok(None)` when there is
/// no status or it names none. A status that is torn, empty, holds NUL bytes or is not JSON
/// is refused with [`read_status`]'s error; of a well-formed one only `schema` and
/// `last_applied` are read (a status of 28,000 steps, parsed into `Status`, cost ~15 MiB on a
/// boot without a drive), so a step or field of another shape (a newer primer's) does not lose
/// the decision `last_applied` carries.
pub fn read_last_applied(root: &Path) -> Result<Option<LastApplied>, StatusError> {
    #[derive(Deserialize)]
    struct Top {
        #[serde(rename = "schema")]
        _schema: u32,
        #[serde(default)]
        last_applied: Option<LastApplied>,
    }
    let rel = state::status_path();
    let Some((f, len)) = open_state_file(root, &rel)? else {
        return Ok(None);
    };
    let s: Top = parse_opened(&rel, f, len)?;
    Ok(s.last_applied)
}

/// The record (`applied.json`) of one instance; `Ok(None)` when there is none.
pub fn read_record(root: &Path, id: &str) -> Result<Option<Record>, StatusError> {
    valid_id(id)?;
    let rel = state::record_path(id);
    read_state_file(root, &rel)?
        .map(|b| parse_state(&rel, &b))
        .transpose()
}

/// Writes `status.json` (0600, root) atomically and durably in primer's private state
/// directory (0700), through the one writer, after the record. Durable because decisions read
/// it: its `last_applied` names the current instance for `primer scripts` (the deferred
/// scripts), `query` and reclaim, and a boot without a drive carries it forward; a status lost
/// or torn in a crash after the record landed would leave those on the previous instance.
/// (A run that writes other files stages its status in their flush: `apply_plan_recorded`.)
pub fn write_status(root: &Path, status: &RunStatus<'_>) -> io::Result<()> {
    write_status_as(Writer::new(root), status, true)
}

/// `write_status` without a flush or a directory fsync: only for a run that wrote nothing else
/// and whose status names the same current instance as the status it replaces (the caller
/// checks both). Then the file is a report, not state: a power loss may leave the previous
/// report, the new one, or (on a filesystem that does not flush a replaced file's data before
/// the rename) an empty or torn one, which readers report as such and treat as no status
/// (`query`, `primer scripts` and reclaim fall back to the only recorded instance, the next run
/// writes it again). No decision is lost: the one it carried is the previous one's.
pub fn write_status_unsynced(root: &Path, status: &RunStatus<'_>) -> io::Result<()> {
    write_status_as(Writer::new(root), status, false)
}

/// [`write_status`] (`durable`) or [`write_status_unsynced`] through the run's resolver
/// (`lookups`, sharing its memo): the state directories the run already looked up or made are
/// not looked up again.
pub fn write_status_in(
    lookups: &Resolver,
    status: &RunStatus<'_>,
    durable: bool,
) -> io::Result<()> {
    write_status_as(Writer::with_resolver(lookups.clone()), status, durable)
}

fn write_status_as(mut w: Writer, status: &RunStatus<'_>, durable: bool) -> io::Result<()> {
    if let Some((public, _)) = state::STATE_DIR.rsplit_once('/') {
        w.create_dirs(public, crate::plan::PUBLIC_DIR)?;
    }
    let private = crate::plan::private_dir_meta();
    w.stage(
        0,
        &state::status_path(),
        status,
        Meta {
            mode: 0o600,
            ..private
        },
        private,
    )?;
    let errors = if durable {
        w.commit()
    } else {
        w.commit_unsynced()
    };
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn valid_id(id: &str) -> Result<(), StatusError> {
    match state::invalid_instance_id(id) {
        Some(reason) => Err(StatusError::InvalidInstanceId {
            id: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `rel` under `root`, refused when any component is a symbolic link (resolution inside the
/// root would land somewhere else): removal must never be redirected to an applied file.
fn real_path(root: &Path, rel: &str) -> Result<PathBuf, StatusError> {
    let host = resolve_in_root(root, rel).map_err(|source| StatusError::Io {
        path: shown(rel),
        source,
    })?;
    if host != root.join(rel) {
        return Err(StatusError::Symlink { path: shown(rel) });
    }
    Ok(host)
}

/// Every instance with a state directory under `root`, sorted. Entries that are not real
/// directories with a valid instance id are skipped (logged).
pub fn list_instances(root: &Path) -> Result<Vec<String>, StatusError> {
    let rel = state::instances_dir();
    let host = real_path(root, &rel)?;
    let io = |source| StatusError::Io {
        path: shown(&rel),
        source,
    };
    let entries = match fs::read_dir(&host) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut ids = Vec::new();
    for e in entries {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        match state::invalid_instance_id(&name) {
            None if is_dir => ids.push(name),
            None => tracing::warn!("{}/{name}: not a directory; skipped", shown(&rel)),
            Some(why) => tracing::warn!("{}/{name}: not an instance ({why}); skipped", shown(&rel)),
        }
    }
    crate::sort::sort(&mut ids);
    Ok(ids)
}

/// The instance of the last run (`status.json`), or the only one recorded.
pub fn current_instance(root: &Path, status: Option<&Status>) -> Result<String, StatusError> {
    if let Some(id) = status.and_then(Status::current_instance) {
        return Ok(id.to_string());
    }
    let ids = list_instances(root)?;
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(StatusError::NoInstance {
            root: root.display().to_string(),
        }),
        _ => Err(StatusError::Ambiguous {
            root: root.display().to_string(),
            ids: ids.join(", "),
        }),
    }
}

/// The instance named by `--instance` (validated), or the current one: the one the status
/// names, or the only one recorded. `primer scripts` (which runs code) and `clean` (which
/// removes state) use it: with several instances and no status naming one, they ask for
/// `--instance` rather than guess.
pub fn chosen_instance(root: &Path, instance: Option<&str>) -> Result<String, StatusError> {
    match instance {
        Some(id) => valid_id(id).map(|()| id.to_string()),
        None => {
            // An unreadable status is no reason to refuse: fall back to the instance list.
            let status = read_status(root).unwrap_or_else(|e| {
                tracing::warn!("{e}");
                None
            });
            current_instance(root, status.as_ref())
        }
    }
}

/// As [`chosen_instance`], for `query`, which only reads: where several instances are recorded
/// and no status names one, the one whose record (`applied.json`) was written last.
///
/// The status is a report replaced without a flush when nothing changed, so a power loss can
/// leave it empty or torn, and the next boot without a drive then writes one that names no
/// instance. A new instance's first run writes its record, and so does every run that changes
/// something for it, so the newest record is the current instance's, except after a drive
/// switched back to an older instance with nothing to change, or a clock set back between the
/// two: a guess good enough to read a value, not to run scripts or remove state by.
pub fn chosen_instance_to_read(root: &Path, instance: Option<&str>) -> Result<String, StatusError> {
    match chosen_instance(root, instance) {
        Err(StatusError::Ambiguous {
            root: shown_root,
            ids,
        }) => newest_record(root).ok_or(StatusError::Ambiguous {
            root: shown_root,
            ids,
        }),
        other => other,
    }
}

/// The instance whose record was modified last, when exactly one was (a tie, or any record
/// that cannot be looked at, decides nothing).
fn newest_record(root: &Path) -> Option<String> {
    let mut newest: Option<(SystemTime, String)> = None;
    let mut tie = false;
    for id in list_instances(root).ok()? {
        let rel = state::record_path(&id);
        let host = real_path(root, &rel).ok()?;
        let modified = fs::symlink_metadata(&host)
            .and_then(|m| m.modified())
            .ok()?;
        match &newest {
            Some((t, _)) if modified < *t => {}
            Some((t, _)) if modified == *t => tie = true,
            _ => {
                tie = false;
                newest = Some((modified, id));
            }
        }
    }
    let (time, id) = newest.filter(|_| !tie)?;
    tracing::info!(
        "no status names the current instance; reading {id}, whose record {} was written last ({})",
        shown(&state::record_path(&id)),
        rfc3339_utc(epoch_secs(time))
    );
    Some(id)
}

/// A value found by `query`, and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub instance_id: String,
    /// `/var/lib/primer/instance/<id>/instance.json`, or the drive copy for `--sensitive`.
    pub file: String,
    pub value: serde_json::Value,
}

/// Looks up `key` (a dotted path: `hostname`, `meta.role`, `network.0.kind`, `drive.sha256`)
/// in the `instance.json` of `instance` (default: the current instance). Paths are tried inside
/// the instance first, then from the top of the file (`drive.*`, `instance.*`). A key holding
/// dots is matched whole (`meta.a.b` finds `meta["a.b"]`).
///
/// With `sensitive` (only when `euid` is 0) the instance is parsed again from the private copy
/// of its drive, so the secrets it keeps hold their real values (the random seed as base64).
/// Passwords are not among them: the copy never holds one (`plan::scrub`), so asking for
/// `admin_pass` says so. The caller prints the value; nothing here logs it.
pub fn query(
    root: &Path,
    key: &str,
    instance: Option<&str>,
    sensitive: bool,
    euid: u32,
) -> Result<QueryResult, Error> {
    if sensitive && euid != 0 {
        return Err(StatusError::NotRoot { euid }.into());
    }
    let id = chosen_instance_to_read(root, instance)?;
    let rel = state::instance_json_path(&id);
    let mut doc: serde_json::Value = match read_state_file(root, &rel)? {
        Some(b) => parse_state(&rel, &b)?,
        None => {
            return Err(StatusError::Invalid {
                path: shown(&rel),
                detail: format!("no such file (no record of instance {id})"),
            }
            .into())
        }
    };
    let mut file = shown(&rel);
    if sensitive && key == "admin_pass" {
        return Err(StatusError::PasswordNotKept {
            key: key.to_string(),
        }
        .into());
    }
    if sensitive {
        let (inst, copy) = reparse_copy(root, &id)?;
        if let Some(o) = doc.as_object_mut() {
            o.insert("instance".into(), exposed(&inst));
        }
        file = format!("{} (re-read from {}/)", file, shown(&copy));
    }
    let segs: Vec<&str> = key.split('.').collect();
    let value = doc
        .get("instance")
        .and_then(|i| lookup(i, &segs))
        .or_else(|| lookup(&doc, &segs))
        .cloned()
        .ok_or_else(|| StatusError::MissingKey {
            key: key.to_string(),
            file: file.clone(),
        })?;
    Ok(QueryResult {
        instance_id: id,
        file,
        value,
    })
}

/// Parses the private copy of an instance's drive again (a directory source).
fn reparse_copy(root: &Path, id: &str) -> Result<(Instance, String), Error> {
    let copy = state::drive_copy_dir(id);
    let host = real_path(root, &copy)?;
    let drive = crate::media::dir::read_dir_tree_shared(&host, &Limits::default())?;
    let (inst, _report) = crate::source::parse_drive(&drive)?;
    if inst.instance_id != id {
        tracing::warn!(
            "{}: the copy describes instance {}, not {id}",
            shown(&copy),
            inst.instance_id
        );
    }
    Ok((inst, copy))
}

/// The instance as JSON with its secrets in the clear: for `query --sensitive` only.
fn exposed(inst: &Instance) -> serde_json::Value {
    use base64::Engine;
    let mut v = serde_json::to_value(inst).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        if let Some(p) = &inst.admin_pass {
            let text = match std::str::from_utf8(p.expose()) {
                Ok(s) => s.to_string(),
                Err(_) => base64::engine::general_purpose::STANDARD.encode(p.expose()),
            };
            o.insert("admin_pass".into(), text.into());
        }
        if let Some(s) = &inst.random_seed {
            o.insert(
                "random_seed".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(s.expose())
                    .into(),
            );
        }
    }
    v
}

/// Follows a dotted path: object keys (the longest key matching the next segments wins, so a key
/// holding dots is reachable) and array indices.
pub fn lookup<'v>(v: &'v serde_json::Value, segs: &[&str]) -> Option<&'v serde_json::Value> {
    let mut cur = v;
    let mut rest = segs;
    while let Some(first) = rest.first() {
        match cur {
            serde_json::Value::Object(m) => {
                let n = (1..=rest.len())
                    .rev()
                    .find(|&n| m.contains_key(&rest[..n].join(".")))?;
                cur = m.get(&rest[..n].join("."))?;
                rest = &rest[n..];
            }
            serde_json::Value::Array(a) => {
                let i: usize = first.parse().ok()?;
                cur = a.get(i)?;
                rest = &rest[1..];
            }
            _ => return None,
        }
    }
    Some(cur)
}

/// What `clean` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanReport {
    /// The instances whose records were looked for.
    pub instances: Vec<String>,
    /// What was removed, as paths on the target (`/var/lib/primer/...`; directories end in `/`).
    pub removed: Vec<String>,
}

/// Forgets instance records so the next run applies the drive as a first boot: removes the
/// instance's state directory (`applied.json`, `instance.json`, the drive copy), and
/// `status.json` when it refers to a removed instance. `instance`: that one (validated);
/// `all`: every instance (and the status); neither: the current instance. Files the runs
/// applied (host name, keys, network files) and the pinning record are left alone. Nothing is
/// removed through a symbolic link.
pub fn clean(root: &Path, instance: Option<&str>, all: bool) -> Result<CleanReport, Error> {
    let status = read_status(root).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        None
    });
    let ids = if all {
        list_instances(root)?
    } else {
        match instance {
            Some(id) => {
                valid_id(id)?;
                vec![id.to_string()]
            }
            None => match current_instance(root, status.as_ref()) {
                Ok(id) => vec![id],
                Err(StatusError::NoInstance { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            },
        }
    };
    let mut report = CleanReport {
        instances: ids.clone(),
        removed: Vec::new(),
    };
    for id in &ids {
        report
            .removed
            .extend(remove_instance_dir(root, &state::instance_dir(id))?);
    }
    let status_rel = state::status_path();
    let forget_status = if all {
        // Everything is forgotten, the status too (even when unreadable).
        real_path(root, &status_rel)
            .map(|p| fs::symlink_metadata(p).is_ok())
            .unwrap_or(false)
    } else {
        status
            .as_ref()
            .is_some_and(|s| ids.iter().any(|id| s.refers_to(id)))
    };
    if forget_status {
        let host = real_path(root, &status_rel)?;
        match fs::remove_file(&host) {
            Ok(()) => {
                sync_parent(&host);
                report.removed.push(shown(&status_rel));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StatusError::Io {
                    path: shown(&status_rel),
                    source,
                }
                .into())
            }
        }
    }
    for r in &report.removed {
        tracing::debug!("removed {r}");
    }
    Ok(report)
}

/// Removes one instance's state directory, entry by entry, never following a symbolic link
/// (a link is removed as a link). `apply::fs::Writer` removes files only, so the directories of
/// primer's private state are removed here. Returns the lines to print: each top-level file,
/// each top-level directory with its file count, then the directory itself.
fn remove_instance_dir(root: &Path, rel: &str) -> Result<Vec<String>, StatusError> {
    let host = real_path(root, rel)?;
    let io = |path: &Path, source| StatusError::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::symlink_metadata(&host) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(StatusError::Invalid {
                path: shown(rel),
                detail: "not a directory; not removing it".into(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&host, e)),
    }
    let mut top: Vec<fs::DirEntry> = fs::read_dir(&host)
        .and_then(|d| d.collect::<Result<_, _>>())
        .map_err(|e| io(&host, e))?;
    crate::sort::sort_by_key(&mut top, |e| e.file_name());
    let mut lines = Vec::new();
    for e in top {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let is_dir = e.file_type().map_err(|x| io(&path, x))?.is_dir();
        if is_dir {
            let n = remove_tree_nofollow(&path)?;
            lines.push(format!("{}/{name}/ ({n} file(s))", shown(rel)));
        } else {
            fs::remove_file(&path).map_err(|x| io(&path, x))?;
            lines.push(format!("{}/{name}", shown(rel)));
        }
    }
    fs::remove_dir(&host).map_err(|e| io(&host, e))?;
    sync_parent(&host);
    lines.push(format!("{}/", shown(rel)));
    Ok(lines)
}

/// Removes a directory tree without following links (`DirEntry::file_type` does not); returns
/// how many non-directories it removed. Iterative: the depth of the tree costs no stack.
fn remove_tree_nofollow(dir: &Path) -> Result<usize, StatusError> {
    let io = |path: &Path, source| StatusError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut dirs = vec![dir.to_path_buf()];
    let mut files = 0;
    let mut i = 0;
    while let Some(d) = dirs.get(i).cloned() {
        i += 1;
        for e in fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let e = e.map_err(|x| io(&d, x))?;
            let p = e.path();
            if e.file_type().map_err(|x| io(&p, x))?.is_dir() {
                dirs.push(p);
            } else {
                fs::remove_file(&p).map_err(|x| io(&p, x))?;
                files += 1;
            }
        }
    }
    // Deepest first: every directory is empty by the time it is removed.
    for d in dirs.iter().rev() {
        fs::remove_dir(d).map_err(|e| io(d, e))?;
    }
    Ok(files)
}

/// Makes a removal durable (best effort: the removal itself already happened).
fn sync_parent(path: &Path) {
    if let Some(p) = path.parent() {
        if let Err(e) = crate::platform::sync_dir(p) {
            tracing::warn!("{}: fsync: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::StepReport;
    use crate::model::{Format, Secret};
    use serde_json::json;

    /// A FIFO planted where a state file belongs is refused at once, naming the file: opened
    /// plainly, `open` would wait for a writer forever and hang every later run.
    #[cfg(unix)]
    #[test]
    fn a_fifo_in_place_of_a_state_file_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let rel = state::status_path();
        let host = root.join(&rel);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        nix::unistd::mkfifo(&host, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_state_file(&root, &rel).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO state file hung");
        let e = got.expect_err("a FIFO read as a state file");
        assert!(
            e.contains("status.json") && e.contains("not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn outcome_names_are_the_serialised_ones() {
        for o in [
            Outcome::Changed,
            Outcome::Unchanged,
            Outcome::Skipped,
            Outcome::Failed,
        ] {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::String(outcome_str(o).to_string())
            );
        }
    }

    #[test]
    fn rfc3339() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
            (-86_400, "1969-12-31T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339_utc(secs), want, "{secs}");
        }
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z') && now.starts_with("20"), "{now}");
    }

    #[test]
    fn lookups() {
        let v = json!({
            "hostname": "web",
            "meta": {"role": "db", "a.b": {"c": 1}},
            "network": [{"kind": "openstack"}, {"kind": "eni"}],
        });
        let q = |k: &str| lookup(&v, &k.split('.').collect::<Vec<_>>()).cloned();
        assert_eq!(q("hostname"), Some(json!("web")));
        assert_eq!(q("meta.role"), Some(json!("db")));
        assert_eq!(q("meta.a.b.c"), Some(json!(1)));
        assert_eq!(q("network.1.kind"), Some(json!("eni")));
        assert_eq!(q("network.2.kind"), None);
        assert_eq!(q("network.x"), None);
        assert_eq!(q("hostname.x"), None);
        assert_eq!(q("nope"), None);
        assert_eq!(q("meta"), Some(v["meta"].clone()));
    }

    /// A state file longer than the bound is refused from its length (the open's `fstat`),
    /// before a byte of it is read: a sparse file of 64 MiB + 1 costs no 64 MiB read.
    #[test]
    fn a_state_file_past_the_bound_is_refused_before_reading() {
        let t = tempfile::tempdir().unwrap();
        let rel = state::status_path();
        let host = t.path().join(&rel);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        let f = fs::File::create(&host).unwrap();
        f.set_len(MAX_STATE_FILE + 1).unwrap();
        drop(f);
        let started = std::time::Instant::now();
        for e in [
            read_status(t.path()).unwrap_err(),
            read_last_applied(t.path()).unwrap_err(),
        ] {
            assert!(e.to_string().contains("larger than"), "{e}");
        }
        assert_eq!(recorded_instance(t.path()), None);
        // Refused from its length: nothing read, so nothing to wait for either.
        let (f, len) = crate::platform::open_for_read(&host).unwrap();
        assert_eq!(len, MAX_STATE_FILE + 1);
        drop(f);
        assert!(open_state_host(&host, &rel).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // At the bound: opened (and read).
        fs::OpenOptions::new()
            .write(true)
            .open(&host)
            .unwrap()
            .set_len(MAX_STATE_FILE)
            .unwrap();
        assert!(open_state_host(&host, &rel).unwrap().is_some());
    }

    /// A long status parsed for `last_applied` alone (each other field checked and dropped):
    /// the same `last_applied` and current instance as the whole status gives, and the same
    /// errors for one that is torn, holds NUL bytes, is blank or is malformed.
    #[test]
    fn a_long_status_parsed_for_last_applied_is_the_whole_one() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let rel = state::status_path();
        let host = root.join(&rel);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        let mut s = no_drive_status(UNIX_EPOCH, 1, None);
        s.last_applied = Some(LastApplied {
            time: "t".into(),
            outcome: "changed".into(),
            instance: InstanceRef {
                id: "i-1".into(),
                format: "openstack".into(),
                version: "latest".into(),
            },
        });
        s.steps = write_file_steps(4000);
        let json = s.to_json();
        assert!(json.len() > 256 << 10);
        fs::write(&host, &json).unwrap();
        assert_eq!(read_status(root).unwrap().unwrap(), s);
        assert_eq!(read_last_applied(root).unwrap(), s.last_applied);
        assert_eq!(recorded_instance(root).as_deref(), Some("i-1"));
        // Broken ways: the error the whole file parsed gives.
        let mut nul = json.clone();
        nul[json.len() / 2] = 0;
        let mut bad_step = json.clone();
        let at = json.len() / 2;
        let q = at + bad_step[at..].iter().position(|b| *b == b'"').unwrap();
        bad_step[q] = b'7';
        let blank = vec![b' '; json.len()];
        let mut nul_blank = blank.clone();
        nul_blank[10] = 0;
        // A step of the wrong type: `read_status` refuses it, `last_applied` is still read.
        let wrong = String::from_utf8(json.clone())
            .unwrap()
            .replacen("\"id\": \"write-file", "\"id\": 7, \"x\": \"write-file", 1)
            .into_bytes();
        for (name, bytes) in [
            ("cut", json[..json.len() - 100].to_vec()),
            ("nul", nul),
            ("bad", bad_step),
            ("blank", blank),
            ("nul-blank", nul_blank),
            ("wrong", wrong),
        ] {
            fs::write(&host, &bytes).unwrap();
            let want = parse_state::<Status>(&rel, &bytes).unwrap_err().to_string();
            // Only `last_applied` is looked at there (a step of the wrong type is no matter).
            if name == "wrong" {
                assert_eq!(read_last_applied(root).unwrap(), s.last_applied);
            } else {
                let got = read_last_applied(root).unwrap_err().to_string();
                assert_eq!(got, want, "{name}");
            }
            let id = (name == "wrong").then(|| "i-1".to_string());
            assert_eq!(recorded_instance(root), id, "{name}");
        }
    }

    /// A state file is read whole, or cut one byte past the bound (which the caller refuses).
    #[test]
    fn state_files_are_read_whole_within_the_bound() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        for len in [0usize, 1, 4095, 4096, 12_050] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            fs::write(&p, &data).unwrap();
            let read = |max| {
                let (f, n) = crate::platform::open_for_read(&p).unwrap();
                read_bounded(f, n, max).unwrap()
            };
            assert_eq!(read(1 << 20), data, "{len}");
            assert_eq!(read(len as u64), data, "{len}");
            if len > 0 {
                let cut = read(len as u64 - 1);
                assert_eq!(cut, data, "{len}: one past the bound");
            }
            if len > 2 {
                assert_eq!(read(1), data[..2], "{len}");
            }
        }
    }

    fn report() -> ApplyReport {
        ApplyReport::from(vec![
            StepReport {
                id: "hostname".into(),
                outcome: Outcome::Changed,
                detail: "host name web (was: -) hunter2-secret".into(),
            },
            StepReport {
                id: "record".into(),
                outcome: Outcome::Unchanged,
                detail: "record of this drive is up to date".into(),
            },
            StepReport {
                id: "pin".into(),
                outcome: Outcome::Failed,
                detail: "cannot write".into(),
            },
        ])
    }

    #[test]
    fn run_status_counts_times_and_scrubs() {
        let mut inst = Instance::new(Format::OpenStack, "latest", "i-1");
        inst.admin_pass = Some(Secret::new(b"hunter2-secret".to_vec()));
        let mut drive = DriveFiles::new("/dev/sr0", "iso9660");
        drive.label = Some("config-2".into());
        drive.files.insert("a".into(), b"x".to_vec().into());
        let t0 = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let t1 = t0 + std::time::Duration::from_secs(1);
        let owned = report();
        let report = owned.of(&[]);
        let warnings = ["meta_data.json: x: odd hunter2-secret".to_string()];
        let rs = run_status(RunFacts {
            started: t0,
            applied: t0,
            finished: t1,
            duration_ms: 1200,
            exit: Exit::Partial,
            origin: "label config-2 on /dev/sr0 (iso9660)",
            drive: &drive,
            drive_sha256: "abc123",
            instance: &inst,
            plan_steps: 2,
            report: &report,
            warnings: &warnings,
            previous: None,
        });
        let s = rs.to_status();
        // Written from the report as it is: what the whole status would be.
        assert_eq!(rs.to_json(), s.to_json());
        let mut streamed = Vec::new();
        rs.write_json(&mut streamed).unwrap();
        assert_eq!(streamed, s.to_json());
        assert_eq!(s.time, "2023-11-14T22:13:20Z");
        assert_eq!(s.outcome, "partial");
        assert_eq!(s.exit_code, 3);
        assert_eq!(
            s.summary,
            Summary {
                changed: 1,
                unchanged: 1,
                skipped: 0,
                failed: 1
            }
        );
        assert_eq!(s.steps[0].outcome, "changed");
        assert_eq!(s.steps[1].time, "2023-11-14T22:13:20Z");
        assert_eq!(s.steps[2].time, "2023-11-14T22:13:21Z");
        let json = String::from_utf8(s.to_json()).unwrap();
        assert!(!json.contains("hunter2-secret"), "{json}");
        assert!(json.contains("<redacted 14 bytes>"));
        assert!(json.contains("odd <redacted 14 bytes>"), "{json}");
        assert_eq!(s.current_instance(), Some("i-1"));
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_same_json(&s);

        // No drive: nothing changed, the last applied instance carried over.
        let n = no_drive_status(t1, 3, s.last_applied.clone());
        assert_eq!(n.outcome, "no-drive");
        assert_eq!(n.exit_code, 11);
        assert!(n.drive.is_none() && n.steps.is_empty());
        assert_eq!(n.current_instance(), Some("i-1"));
        assert!(n.refers_to("i-1") && !n.refers_to("i-2"));

        // An unusable instance id keeps the previous current instance.
        let bad = Instance::new(Format::OpenStack, "latest", "../x");
        let b = run_status(RunFacts {
            started: t1,
            applied: t1,
            finished: t1,
            duration_ms: 1,
            exit: Exit::Partial,
            origin: "o",
            drive: &drive,
            drive_sha256: "",
            instance: &bad,
            plan_steps: 3,
            report: &report,
            warnings: &[],
            previous: s.last_applied.clone(),
        });
        assert_eq!(b.to_json(), b.to_status().to_json());
        let b = b.to_status();
        assert_eq!(b.current_instance(), Some("i-1"));
        assert_same_json(&b);
        assert_same_json(&n);
    }

    /// `Status::to_json` writes what `serde_json` writes of it.
    fn assert_same_json(s: &Status) {
        let mut want = serde_json::to_vec_pretty(s).unwrap();
        want.push(b'\n');
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            String::from_utf8(want.clone()).unwrap()
        );
        // Streamed, the same bytes (`write_json`, what the writer stages).
        let mut streamed = Vec::new();
        s.write_json(&mut streamed).unwrap();
        assert_eq!(streamed, want);
    }

    /// `n` steps of a large `write_files` run, as a status holds them.
    fn write_file_steps(n: usize) -> Vec<StepStatus> {
        (0..n)
            .map(|i| StepStatus {
                id: format!("write-file:/srv/many/f{i:05}"),
                outcome: "changed".into(),
                detail: format!("write /srv/many/f{i:05} (32 KiB) \"q\""),
                time: "2023-11-14T22:13:20Z".into(),
            })
            .collect()
    }

    /// Thousands of steps streamed across many chunks: the same bytes as the buffered form.
    #[test]
    fn status_streams_as_it_buffers() {
        let mut s = no_drive_status(UNIX_EPOCH, 1, None);
        s.steps = write_file_steps(3000);
        s.warnings = vec!["w".repeat(40_000)];
        assert_same_json(&s);
    }

    /// Byte for byte as `serde_json` writes it, with every optional part absent or present and
    /// strings that need escapes.
    #[test]
    fn status_json_is_serde_jsons() {
        let odd = "q\"b\\n\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é\u{2028}😀 /";
        let inst = InstanceRef {
            id: odd.into(),
            format: "openstack".into(),
            version: "latest".into(),
        };
        let full = Status {
            schema: STATUS_SCHEMA,
            time: "2023-11-14T22:13:20Z".into(),
            duration_ms: u64::MAX,
            primer_version: "0.1.0".into(),
            outcome: "partial".into(),
            exit_code: 255,
            summary: Summary {
                changed: 1,
                unchanged: 20,
                skipped: 300,
                failed: 0,
            },
            drive: Some(DriveStatus {
                origin: odd.into(),
                device: "/dev/sr0".into(),
                fstype: "iso9660".into(),
                label: Some(odd.into()),
                sha256: "ab".repeat(32),
                files: 3,
            }),
            instance: Some(inst.clone()),
            steps: vec![
                StepStatus {
                    id: "a".into(),
                    outcome: "changed".into(),
                    detail: odd.into(),
                    time: SharedText::default(),
                },
                StepStatus {
                    id: String::new(),
                    outcome: "failed".into(),
                    detail: "x".into(),
                    time: "t".into(),
                },
            ],
            warnings: vec![odd.into(), String::new()],
            last_applied: Some(LastApplied {
                time: "t".into(),
                outcome: "changed".into(),
                instance: inst,
            }),
            boot_id: Some(odd.into()),
            error: Some(odd.into()),
        };
        assert_same_json(&full);
        let mut bare = full.clone();
        bare.drive.as_mut().unwrap().label = None;
        bare.steps.clear();
        bare.warnings.clear();
        bare.boot_id = None;
        assert_same_json(&bare);
        bare.drive = None;
        bare.instance = None;
        bare.last_applied = None;
        bare.error = None;
        assert_same_json(&bare);
    }

    #[test]
    fn sensitive_needs_root_before_reading_anything() {
        let t = tempfile::tempdir().unwrap();
        let e = query(t.path(), "admin_pass", None, true, 1000).unwrap_err();
        assert!(e.to_string().contains("needs root"), "{e}");
        assert!(e.to_string().contains("uid 1000"), "{e}");
    }

    #[test]
    #[cfg(unix)]
    fn clean_refuses_bad_ids_and_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for bad in ["..", "../etc", "a/b", ""] {
            assert!(clean(r, Some(bad), false).is_err(), "{bad}");
        }
        // Nothing recorded: nothing removed.
        assert_eq!(clean(r, None, false).unwrap().removed, Vec::<String>::new());
        // An instance directory that is a link into the system is not followed.
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/hostname"), "web\n").unwrap();
        fs::create_dir_all(r.join("var/lib/primer/instance")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("var/lib/primer/instance/i-1")).unwrap();
        let e = clean(r, Some("i-1"), false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(r.join("etc/hostname").exists());
        // --all skips it (not a directory) and removes nothing through it.
        clean(r, None, true).unwrap();
        assert!(r.join("etc/hostname").exists());
    }

    #[test]
    #[cfg(unix)]
    fn clean_removes_the_tree_not_following_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/hostname"), "web\n").unwrap();
        let dir = r.join("var/lib/primer/instance/i-1");
        fs::create_dir_all(dir.join("drive/openstack/latest")).unwrap();
        fs::write(dir.join("drive/openstack/latest/meta_data.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("drive/link")).unwrap();
        fs::write(dir.join("applied.json"), "{}").unwrap();
        fs::write(dir.join("instance.json"), "{}").unwrap();
        let rep = clean(r, None, false).unwrap();
        assert_eq!(rep.instances, ["i-1"]);
        assert_eq!(
            rep.removed,
            [
                "/var/lib/primer/instance/i-1/applied.json",
                "/var/lib/primer/instance/i-1/drive/ (2 file(s))",
                "/var/lib/primer/instance/i-1/instance.json",
                "/var/lib/primer/instance/i-1/",
            ]
        );
        assert!(!dir.exists());
        assert_eq!(fs::read_to_string(r.join("etc/hostname")).unwrap(), "web\n");
    }
}

/// Where `primer scripts` records its last run (beside `status.json`).
pub fn scripts_status_path() -> String {
    format!("{}/scripts-status.json", state::STATE_DIR)
}

/// What the last `primer scripts` did: `var/lib/primer/scripts-status.json`. Written when it
/// ends, so that `status --wait` knows this boot's scripts are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptsStatus {
    pub schema: u32,
    /// When it finished, RFC 3339 UTC.
    pub time: String,
    pub duration_ms: u64,
    /// The instance whose scripts ran; `None`: no instance recorded.
    pub instance: Option<String>,
    /// `changed` (scripts ran), `unchanged` (none left), `partial` (one failed).
    pub outcome: String,
    pub exit_code: u8,
    #[serde(default)]
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl ScriptsStatus {
    /// The record of a `scripts` run that ended now.
    pub fn new(
        instance: Option<&str>,
        report: Option<&ApplyReport>,
        exit: Exit,
        duration_ms: u64,
        boot_id: Option<String>,
    ) -> ScriptsStatus {
        let count = |o| report.map_or(0, |r| r.count(o));
        ScriptsStatus {
            schema: STATUS_SCHEMA,
            time: now_rfc3339(),
            duration_ms,
            instance: instance.map(str::to_string),
            outcome: exit.name().to_string(),
            exit_code: exit.code(),
            summary: Summary {
                changed: count(Outcome::Changed),
                unchanged: count(Outcome::Unchanged),
                skipped: count(Outcome::Skipped),
                failed: count(Outcome::Failed),
            },
            boot_id,
        }
    }
}

/// The last `scripts` run under `root`; `Ok(None)` when there is none.
pub fn read_scripts_status(root: &Path) -> Result<Option<ScriptsStatus>, StatusError> {
    let rel = scripts_status_path();
    read_state_file(root, &rel)?
        .map(|b| parse_state(&rel, &b))
        .transpose()
}

/// Writes `scripts-status.json` (0600) atomically in primer's private state directory.
pub fn write_scripts_status(root: &Path, status: &ScriptsStatus) -> io::Result<()> {
    let mut w = Writer::new(root);
    if let Some((public, _)) = state::STATE_DIR.rsplit_once('/') {
        w.create_dirs(public, crate::plan::PUBLIC_DIR)?;
    }
    let private = crate::plan::private_dir_meta();
    let mut json = serde_json::to_vec_pretty(status).unwrap_or_default();
    json.push(b'\n');
    w.write_atomic(
        &scripts_status_path(),
        &json,
        Meta {
            mode: 0o600,
            ..private
        },
        private,
    )
}
