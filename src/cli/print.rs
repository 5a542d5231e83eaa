//! Text printers of the CLI: the long human-readable forms of `show`, `plan`/`run`, `status`
//! and `reclaim`. Print only what they are given; decide nothing and read nothing.

use std::io::Write;

use serde::Serialize;

use super::print_json;
use crate::probe::trust::Refusal;
use crate::probe::{BlockDevice, Candidate};
use crate::Error;

use crate::agent;
use crate::apply::{ApplyReport, Outcome};
use crate::media;
use crate::model::{Instance, Report};
use crate::plan::Plan;
use crate::state::{self, Record};
use crate::status::Status;

/// `show` as text: one line per field of the instance.
pub(super) fn show(out: &mut impl Write, l: &agent::Loaded) -> std::io::Result<()> {
    let i = &l.instance;
    writeln!(out, "source:       {}", l.origin)?;
    writeln!(
        out,
        "drive:        {} ({}, label {}, {} files, {} bytes)",
        l.drive.device,
        l.drive.fstype,
        l.drive.label.as_deref().unwrap_or("-"),
        l.drive.files.len(),
        l.drive.total_bytes()
    )?;
    writeln!(out, "format:       {} {}", i.format, i.version)?;
    writeln!(out, "instance id:  {}", i.instance_id)?;
    writeln!(
        out,
        "hostname:     {}",
        i.hostname.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "name:         {}", i.name.as_deref().unwrap_or("-"))?;
    writeln!(out, "ssh keys:     {}", i.ssh_keys.len())?;
    for k in &i.ssh_keys {
        writeln!(out, "  {}", key_summary(k))?;
    }
    writeln!(
        out,
        "admin pass:   {}{}",
        i.admin_pass.as_ref().map_or("-".into(), |s| s.to_string()),
        i.admin_username
            .as_deref()
            .map_or(String::new(), |u| format!(" (user {u})"))
    )?;
    writeln!(
        out,
        "random seed:  {}",
        i.random_seed.as_ref().map_or("-".into(), |s| s.to_string())
    )?;
    writeln!(out, "meta:         {} key(s)", i.meta.len())?;
    if !i.devices.is_empty() || !i.dedicated_cpus.is_empty() {
        writeln!(
            out,
            "devices:      {} (dedicated cpus: {})",
            i.devices.len(),
            i.dedicated_cpus.len()
        )?;
    }
    writeln!(out, "files:        {}", i.files.len())?;
    for f in &i.files {
        writeln!(
            out,
            "  {} <- {}{}",
            f.path,
            f.content_path,
            if f.content.is_none() {
                " (missing)"
            } else {
                ""
            }
        )?;
    }
    writeln!(
        out,
        "user data:    {}",
        i.user_data
            .as_ref()
            .map_or("-".into(), |b| format!("{} bytes", b.0.len()))
    )?;
    writeln!(
        out,
        "vendor data:  {}{}",
        i.vendor_data.keys().cloned().collect::<Vec<_>>().join(", "),
        if i.vendor_user_data.is_empty() {
            String::new()
        } else {
            format!(" ({} user-data part(s))", i.vendor_user_data.len())
        }
    )?;
    let nets: Vec<String> = i
        .network
        .iter()
        .map(|n| {
            let kind = match n {
                crate::model::NetworkConfig::OpenStack { .. } => "network_data",
                crate::model::NetworkConfig::V1 { .. } => "v1",
                crate::model::NetworkConfig::V2 { .. } => "v2",
                crate::model::NetworkConfig::Eni { .. } => "eni",
                crate::model::NetworkConfig::Disabled { .. } => "disabled",
            };
            format!("{kind} ({})", n.file())
        })
        .collect();
    writeln!(
        out,
        "network:      {}",
        if nets.is_empty() {
            "-".to_string()
        } else {
            nets.join(", ")
        }
    )?;
    if let Some(s) = &i.seedfrom {
        writeln!(out, "seedfrom:     {s} (recorded, not fetched)")?;
    }
    if let Some(cs) = &i.cloudstack {
        writeln!(
            out,
            "cloudstack:   vm-id {}, instance {}, offering {}",
            cs.vm_id.as_deref().unwrap_or("-"),
            cs.instance_name.as_deref().unwrap_or("-"),
            cs.service_offering.as_deref().unwrap_or("-")
        )?;
    }
    writeln!(out, "warnings:     {}", l.report.warnings.len())?;
    print_warnings(out, &l.report)?;
    Ok(())
}

/// `reclaim` as text: the disk, every check, the tables before and after, the steps.
pub(super) fn reclaim(out: &mut impl Write, report: &crate::disk::Report) -> std::io::Result<()> {
    use crate::disk::Outcome as R;
    writeln!(out, "disk     {} ({})", report.device, report.kind)?;
    if !report.position.is_empty() {
        writeln!(out, "position {}", report.position)?;
    }
    for c in &report.checks {
        writeln!(
            out,
            "check    {:<4} {:<30} {}",
            if c.ok { "ok" } else { "FAIL" },
            c.what,
            c.detail
        )?;
    }
    if let Some(d) = &report.before_dump {
        writeln!(out, "before:\n{d}")?;
    }
    if let (Some(d), true) = (&report.after_dump, report.before_dump != report.after_dump) {
        writeln!(out, "after:\n{d}")?;
    }
    for s in &report.steps {
        writeln!(out, "step     {s}")?;
    }
    if let Some(f) = &report.filesystem {
        writeln!(out, "fs       {f}")?;
    }
    let what = match report.outcome {
        R::Planned => "planned (dry run: nothing written; --apply to do it)",
        R::Changed => "changed",
        R::Nothing => "nothing to reclaim",
        R::Refused => "refused: nothing written",
        R::Partial => "partial: the table is done, a later step failed (retried next run)",
    };
    writeln!(out, "outcome  {what}")?;
    if let Some(r) = &report.reason {
        writeln!(out, "reason   {r}")?;
    }
    Ok(())
}

/// `ssh-ed25519 AAAA...last8 comment`: enough to recognise a key without a wall of base64.
pub(super) fn key_summary(k: &str) -> String {
    let t: Vec<&str> = k.split_whitespace().collect();
    match t.as_slice() {
        [ty, data, rest @ ..] if data.len() > 16 => {
            format!(
                "{ty} {}...{} {}",
                &data[..8],
                &data[data.len() - 8..],
                rest.join(" ")
            )
        }
        _ => k.to_string(),
    }
}

pub(super) fn print_warnings(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

/// Prints one line per step (status, id, why); the many `copy:` steps of the local copy are
/// folded into one line counting them by status.
pub(super) fn print_steps<'a>(
    out: &mut impl Write,
    l: &agent::Loaded,
    rows: impl Iterator<Item = (String, &'a str, impl std::fmt::Display)>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "drive: {} ({} {}, instance {})",
        l.origin, l.instance.format, l.instance.version, l.instance.instance_id
    )?;
    let mut copies: std::collections::BTreeMap<String, usize> = Default::default();
    for (status, id, detail) in rows {
        if id.starts_with("copy:") && status != "failed" && status != "error" {
            *copies.entry(status).or_default() += 1;
            continue;
        }
        writeln!(out, "  {status:<9} {id:<14} {detail}")?;
    }
    if !copies.is_empty() {
        let total: usize = copies.values().sum();
        let counts: Vec<String> = copies.iter().map(|(s, n)| format!("{n} {s}")).collect();
        // The line's status is what happened to any of the files, "unchanged" only if all were.
        let status = copies
            .keys()
            .find(|s| s.as_str() != "unchanged")
            .map_or("unchanged", |s| s.as_str());
        writeln!(
            out,
            "  {status:<9} {:<14} local copy of {total} drive file(s): {}",
            "copy:*",
            counts.join(", ")
        )?;
    }
    Ok(())
}

pub(super) fn print_plan(
    out: &mut impl Write,
    l: &agent::Loaded,
    plan: &Plan,
) -> std::io::Result<()> {
    let rows = plan.steps.iter().map(|s| {
        (
            format!("{:?}", s.change).to_lowercase(),
            s.id.as_str(),
            s.why(),
        )
    });
    print_steps(out, l, rows)?;
    print_warnings(out, &plan.warnings)
}

pub(super) fn print_run(
    out: &mut impl Write,
    l: &agent::Loaded,
    plan: &Plan,
    r: &ApplyReport,
    brief: bool,
) -> std::io::Result<()> {
    let rows = r
        .steps(&plan.steps)
        .map(|(id, outcome, detail)| (format!("{outcome:?}").to_lowercase(), id, detail));
    print_steps(out, l, rows)?;
    if brief {
        // The journal gets the plan's warnings as warning-priority events instead of lines.
        for w in &plan.warnings.warnings {
            tracing::warn!("{w}");
        }
    } else {
        print_warnings(out, &plan.warnings)?;
    }
    writeln!(
        out,
        "summary: {} changed, {} unchanged, {} skipped, {} failed",
        r.count(Outcome::Changed),
        r.count(Outcome::Unchanged),
        r.count(Outcome::Skipped),
        r.count(Outcome::Failed)
    )
}

pub(super) fn print_status(
    out: &mut impl Write,
    s: &Status,
    id: Option<&str>,
    record: Option<&Record>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "last run:     {} (primer {}, {} ms)",
        s.time, s.primer_version, s.duration_ms
    )?;
    let summary = &s.summary;
    if s.drive.is_none() {
        writeln!(
            out,
            "outcome:      {} (exit {}): no config drive found, nothing changed",
            s.outcome, s.exit_code
        )?;
    } else {
        writeln!(
            out,
            "outcome:      {} (exit {}): {} changed, {} unchanged, {} skipped, {} failed",
            s.outcome,
            s.exit_code,
            summary.changed,
            summary.unchanged,
            summary.skipped,
            summary.failed
        )?;
    }
    match &s.drive {
        Some(d) => {
            writeln!(
                out,
                "drive:        {} ({}, label {}, {} files)",
                d.device,
                d.fstype,
                d.label.as_deref().unwrap_or("-"),
                d.files
            )?;
            writeln!(out, "found by:     {}", d.origin)?;
            writeln!(out, "drive sha256: {}", d.sha256)?;
        }
        None => writeln!(out, "drive:        -")?,
    }
    match &s.instance {
        Some(i) => writeln!(out, "instance:     {} ({} {})", i.id, i.format, i.version)?,
        None => writeln!(out, "instance:     -")?,
    }
    if let Some(l) = &s.last_applied {
        if s.instance.as_ref() != Some(&l.instance) {
            writeln!(
                out,
                "last applied: {} ({}): instance {} ({} {})",
                l.time, l.outcome, l.instance.id, l.instance.format, l.instance.version
            )?;
        }
    }
    match (id, record) {
        (Some(id), Some(r)) => writeln!(
            out,
            "record:       /{} ({} step input(s){})",
            state::record_path(id),
            r.steps.len(),
            if s.drive.as_ref().is_some_and(|d| d.sha256 != r.drive_sha256) {
                ", another drive"
            } else {
                ""
            }
        )?,
        (Some(id), None) => writeln!(
            out,
            "record:       none (/{} is missing: cleaned, or never written)",
            state::record_path(id)
        )?,
        (None, _) => {}
    }
    if let Some(e) = &s.error {
        writeln!(out, "error:        {e}")?;
    }
    for w in &s.warnings {
        writeln!(out, "warning:      {w}")?;
    }
    if s.steps.is_empty() {
        return Ok(());
    }
    writeln!(out, "steps:")?;
    writeln!(
        out,
        "  {:<9} {:<14} {:<20} DETAIL",
        "OUTCOME", "STEP", "TIME"
    )?;
    // The many `copy:` steps of the local copy fold into one line, as in `run`.
    let mut copies: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut copy_time = "";
    for st in &s.steps {
        if st.id.starts_with("copy:") && st.outcome != "failed" {
            *copies.entry(st.outcome.as_str()).or_default() += 1;
            copy_time = &st.time;
            continue;
        }
        writeln!(
            out,
            "  {:<9} {:<14} {:<20} {}",
            st.outcome, st.id, st.time, st.detail
        )?;
    }
    if !copies.is_empty() {
        let total: usize = copies.values().sum();
        let counts: Vec<String> = copies.iter().map(|(o, n)| format!("{n} {o}")).collect();
        let outcome = copies
            .keys()
            .find(|o| **o != "unchanged")
            .copied()
            .unwrap_or("unchanged");
        writeln!(
            out,
            "  {outcome:<9} {:<14} {copy_time:<20} local copy of {total} drive file(s): {}",
            "copy:*",
            counts.join(", ")
        )?;
    }
    Ok(())
}

/// `probe`: every device's count, the ranked candidates and the decision (text or JSON).
pub(super) fn probe(out: &mut impl Write, p: &agent::Probed, json: bool) -> Result<(), Error> {
    let (devices, candidates, decision) = (&p.devices, &p.candidates, &p.decision);
    if json {
        #[derive(Serialize)]
        struct Doc<'a> {
            devices: &'a [BlockDevice],
            candidates: &'a [Candidate],
            selected: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            refused: Option<&'a Refusal>,
        }
        print_json(
            out,
            &Doc {
                devices,
                candidates,
                selected: decision
                    .as_ref()
                    .ok()
                    .and_then(|c| c.as_ref().map(|c| c.device.name.as_str())),
                refused: decision.as_ref().err(),
            },
        )?;
    } else {
        writeln!(out, "{} block device(s) examined", devices.len())?;
        if candidates.is_empty() {
            writeln!(out, "no config drive found")?;
        }
        for (i, c) in candidates.iter().enumerate() {
            writeln!(
                out,
                "{}. {:<10} {:<22} {:<8} {:<10} {}",
                i + 1,
                c.kind.name(),
                c.device.display(),
                c.fstype,
                c.label.as_deref().unwrap_or("-"),
                c.reason
            )?;
        }
        match decision {
            Ok(Some(c)) => writeln!(out, "selected: {}", c.device.display())?,
            Ok(None) => {}
            Err(r) => writeln!(out, "{r}")?,
        }
    }
    Ok(())
}

impl Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Refusal", 2)?;
        st.serialize_field("rule", self.rule)?;
        st.serialize_field("detail", &self.detail)?;
        st.end()
    }
}

/// `show --json`: the drive, its files with the digests it may show, the instance, warnings.
pub(super) fn show_json(out: &mut impl Write, shown: &agent::Shown) -> Result<(), Error> {
    let l = &shown.loaded;
    #[derive(Serialize)]
    struct Doc<'a> {
        origin: &'a str,
        device: &'a str,
        fstype: &'a str,
        label: Option<&'a str>,
        files: Vec<&'a str>,
        /// Content hash of every file: lets a reader be compared with another (`--mount`).
        file_sha256: std::collections::BTreeMap<&'a str, String>,
        symlinks: &'a std::collections::BTreeMap<String, String>,
        skipped: &'a [media::Skipped],
        instance: &'a Instance,
        warnings: &'a Report,
    }
    print_json(
        out,
        &Doc {
            origin: &l.origin,
            device: &l.drive.device,
            fstype: &l.drive.fstype,
            label: l.drive.label.as_deref(),
            files: l.drive.files.keys().map(String::as_str).collect(),
            file_sha256: crate::sort::map(
                shown
                    .file_sha256
                    .iter()
                    .map(|(p, d)| (p.as_str(), d.clone())),
            ),
            symlinks: &l.drive.symlinks,
            skipped: &l.drive.skipped,
            instance: &l.instance,
            warnings: &l.report,
        },
    )?;
    Ok(())
}

/// `run --json`: origin, instance, outcome, every step and the warnings.
pub(super) fn run_json(
    out: &mut impl Write,
    loaded: &agent::Loaded,
    plan: &Plan,
    report: &ApplyReport,
    exit: crate::Exit,
) -> Result<(), Error> {
    #[derive(Serialize)]
    struct Doc<'a> {
        origin: &'a str,
        instance_id: &'a str,
        outcome: &'static str,
        steps: crate::apply::Of<'a>,
        warnings: Vec<&'a crate::model::Warning>,
    }
    let warnings = loaded
        .report
        .warnings
        .iter()
        .chain(&plan.warnings.warnings)
        .collect();
    print_json(
        out,
        &Doc {
            origin: &loaded.origin,
            instance_id: &loaded.instance.instance_id,
            outcome: exit.name(),
            steps: report.of(&plan.steps),
            warnings,
        },
    )?;
    Ok(())
}

/// `status --json`: the status as written, and which steps its instance's record holds.
pub(super) fn status_json(
    out: &mut impl Write,
    s: &Status,
    record: Option<&Record>,
) -> Result<(), Error> {
    #[derive(Serialize)]
    struct RecordDoc<'a> {
        path: String,
        drive_sha256: &'a str,
        /// The steps whose input is recorded (their hashes stay in the file).
        steps: Vec<&'a str>,
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        #[serde(flatten)]
        status: &'a Status,
        record: Option<RecordDoc<'a>>,
    }
    let record = record.map(|r| RecordDoc {
        path: format!("/{}", state::record_path(&r.instance_id)),
        drive_sha256: &r.drive_sha256,
        steps: r.steps.keys().collect(),
    });
    print_json(out, &Doc { status: s, record })?;
    Ok(())
}

/// One `key: value  # origin` line per leaf of the merged configuration (maps are walked; a
/// list or a value is one leaf, printed as JSON).
pub(super) fn config_leaves(
    out: &mut impl Write,
    prefix: &str,
    v: &serde_json::Value,
    origins: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<()> {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                config_leaves(out, &path, child, origins)?;
            }
            Ok(())
        }
        _ => {
            let from = origins.get(prefix).map_or("default", String::as_str);
            writeln!(out, "{prefix}: {v}  # {from}")
        }
    }
}
