//! User-data on the target: `#cloud-config` `write_files`, `#!` scripts, `runcmd` and `bootcmd`,
//! planned once per instance (bootcmd: every boot). Pure: scripts are planned as files under
//! the instance's private state plus run steps that apply carries out on a live system only;
//! with `--root` they are staged, not run. Hostname, keys, users and passwords from
//! `#cloud-config` are planned by their own modules.

use std::collections::BTreeMap;

use super::inject::injected_path;
use super::users::{group_gid, GROUP};
use super::{Action, AppendBase, Change, Meta, Planner, Step, PRIVATE_FILE};
use crate::model::grammar::{self, Esc};
use crate::model::userdata::{Command, Origin, UserData};
use crate::model::{Bytes, Instance};
use crate::plan::users::{UserDataMode, UserPolicy};
use crate::source::userdata::{parse_instance_user_data, UserDataLimits};
use crate::state;

/// Where an instance's scripts are stored (0700 files in primer's private state).
pub fn scripts_dir(instance_id: &str) -> String {
    format!("{}/scripts", state::instance_dir(instance_id))
}

/// Where a marker per started script is written just before it starts (once per instance).
pub fn ran_dir(instance_id: &str) -> String {
    format!("{}/scripts-ran", state::instance_dir(instance_id))
}

/// The stored name of `bootcmd` (run every boot by `primer run`, never by `primer scripts`).
pub const BOOTCMD: &str = "00-bootcmd";

/// The user-data as primer applies it (empty when the configuration leaves it to another
/// agent).
pub fn user_data(instance: &Instance, policy: &UserPolicy) -> (UserData, crate::model::Report) {
    match policy.user_data {
        UserDataMode::Apply => parse_instance_user_data(instance, &UserDataLimits::default()),
        UserDataMode::Ignore => (UserData::default(), Default::default()),
    }
}

/// A command line for `sh`: a shell string as is, an argv quoted word by word.
fn shell_line(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Argv(v) => v
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn script_of(cmds: &[Command]) -> Vec<u8> {
    let mut s = String::from("#!/bin/sh\n# written by primer from #cloud-config\n");
    for c in cmds {
        s.push_str(&shell_line(c));
        s.push('\n');
    }
    s.into_bytes()
}

/// The input digest of a `write_files` entry: SHA-256 over its content then `tail` (mode,
/// owner and `append`), the same digest as over the two joined, without joining them.
///
/// The content is streamed into the hasher, never joined (a content kept on the device is not
/// even read again: `Bytes::sha256_then`); an error names the drive file.
fn write_file_input(content: &crate::model::Bytes, tail: &[u8]) -> std::io::Result<String> {
    Ok(super::inject::hex_lower(&content.sha256_then(tail)?))
}

/// The step id of `write_files[n]` (target `rel`): one per entry, as the same path may be
/// listed twice.
pub(super) fn write_file_step_id(n: usize, rel: &str) -> String {
    format!("write-file:{n}:{rel}")
}

/// `write_files` `append` entries per run: the later ones are refused with a warning naming
/// each (the facts search no more either). Each costs the facts a digest (a scan when its
/// text is not at its file's end) and the writer a streamed text.
pub const MAX_APPENDS: usize = 1_000;

/// File bytes the run's appends may copy in all (an append copies the current file, then
/// streams its text; a chain of appends to one path with one mode and owner copies it once):
/// an append past it is refused with a warning naming it. Four copies of a file at the facts'
/// cap (64 MiB).
pub const MAX_APPEND_COPY_BYTES: u64 = 256 << 20;

/// What the run's appends have cost so far (against `MAX_APPENDS`, `MAX_APPEND_COPY_BYTES`).
#[derive(Default)]
struct AppendBudget {
    entries: usize,
    copied: u64,
}

/// What a path holds after this plan's earlier acting `write_files` steps on it.
struct Chain {
    /// The last of those steps (an index into the plan's steps): an `append` copies what it
    /// staged.
    step: usize,
    /// The steps build on the file as the facts saw it (appends only); otherwise the first
    /// step replaced it.
    on_target: bool,
    /// What those steps write, in order (a whole content, then appended texts).
    parts: Vec<Bytes>,
    /// The bytes the file holds after those steps (`u64::MAX`: not known).
    len: u64,
    /// The mode and owner of the last step when it is an append: a next append with the same
    /// extends its staged file, copying nothing (`apply::fs::Writer::stage_append`).
    append_meta: Option<Meta>,
}

/// Whether `part` holds `text` (not empty): compared in memory when both are there, as
/// before; a content kept on the device only when it is the very text (by digest): it is not
/// loaded to be searched.
fn part_holds(part: &Bytes, text: &Bytes) -> bool {
    if text.is_empty() || text.len() > part.len() {
        return false;
    }
    if part.is_on_device() || text.is_on_device() {
        return part.len() == text.len() && part == text;
    }
    part.windows(text.len()).any(|x| x == text.as_slice())
}

impl Planner<'_> {
    pub(super) fn user_data(&mut self, instance: &Instance, policy: &UserPolicy) -> UserData {
        let (ud, report) = user_data(instance, policy);
        self.warnings.warnings.extend(report.warnings);
        if policy.user_data == UserDataMode::Ignore
            && (instance.user_data.is_some() || !instance.vendor_user_data.is_empty())
        {
            self.warnings.warn(
                "user-data",
                "",
                "left to another agent (configuration user_data: ignore)",
            );
        }
        ud
    }

    /// `write_files`: inside the root only, owner and mode as given, once per instance (an
    /// `append` too). Entries are applied in order, so two for one path build on each other; an
    /// `append` whose text the file already holds (appended before, even by a run interrupted
    /// before its record) is not appended again.
    ///
    /// Each entry's content is moved out of `ud` into its step (held once, not copied: an entry
    /// may be tens of MiB), and the caller's `write_files` is left empty: nothing after this
    /// reads it, and its entries' paths and owners are freed before the rest of the plan is
    /// made (10,000 entries: ~1.6 MB). An `append` is not built here: the writer copies the
    /// file, then the text (`AppendFile`).
    pub(super) fn plan_write_files(&mut self, _instance: &Instance, ud: &mut UserData) {
        // What each path holds after this plan's earlier acting steps on it: an `append`
        // builds on what that step stages.
        let mut planned: BTreeMap<String, Chain> = BTreeMap::new();
        // Only a path an `append` names is looked up there: no chain is kept for the others
        // (2,000 whole-file entries: no map of 2,000 paths and contents).
        let append_paths: std::collections::BTreeSet<String> = ud
            .cloud_config
            .write_files
            .iter()
            .filter(|w| w.append)
            .filter_map(|w| injected_path(&w.path).ok())
            .collect();
        // An injected file (planned before) is an earlier write of its path too: an `append`
        // onto it builds on what that step stages, as onto a `write_files` write. Without
        // this the append was planned onto the file as the facts saw it (missing), and the
        // writer, finding the injected file there, refused it: a failed first boot.
        if !append_paths.is_empty() {
            for (i, s) in self.steps.iter().enumerate() {
                let Action::WriteFile { path, content, .. } = &s.action else {
                    continue;
                };
                if super::drive_chosen(&s.id).is_none() || !append_paths.contains(path) {
                    continue;
                }
                if s.change.acts() {
                    let chain = Chain {
                        step: i,
                        on_target: false,
                        len: content.len() as u64,
                        parts: vec![content.clone()],
                        append_meta: None,
                    };
                    planned.insert(path.clone(), chain);
                } else {
                    planned.remove(path);
                }
            }
        }
        let mut budget = AppendBudget::default();
        for (n, w) in ud.cloud_config.write_files.iter_mut().enumerate() {
            let rel = match injected_path(&w.path) {
                Ok(r) => r,
                Err(e) => {
                    self.warnings
                        .warn("user-data", &format!("write_files[{n}].path"), e);
                    continue;
                }
            };
            // Counted as `plan::wanted` counts them (the facts searched the first ones only).
            if w.append {
                budget.entries += 1;
                if budget.entries > MAX_APPENDS {
                    self.warnings.warn(
                        "user-data",
                        &format!("write_files[{n}]"),
                        format!(
                            "{}: more than {MAX_APPENDS} append entries; not appended",
                            Esc(&w.path)
                        ),
                    );
                    w.content = Bytes::new();
                    continue;
                }
            }
            let owner = w.owner.as_deref().unwrap_or("root:root");
            // `user[:group]`, each a name or a number: one field of the account files each.
            if let Err(e) = owner
                .split_once(':')
                .map_or(grammar::account_field(owner), |(u, g)| {
                    grammar::account_field(u).and_then(|()| grammar::account_field(g))
                })
            {
                self.warnings.warn(
                    "user-data",
                    &format!("write_files[{n}].owner"),
                    format!("{} refused: {e}; {} not written", Esc(owner), Esc(&w.path)),
                );
                continue;
            }
            let Some((uid, gid)) = self.owner(owner) else {
                self.warnings.warn(
                    "user-data",
                    &format!("write_files[{n}].owner"),
                    format!(
                        "{}: owner {} is not a user or group of the target; not written",
                        Esc(&w.path),
                        Esc(owner)
                    ),
                );
                continue;
            };
            let meta = Meta {
                mode: w.permissions.unwrap_or(0o644) & 0o7777,
                uid,
                gid,
            };
            // One id per entry: the same path may be listed twice.
            let id = write_file_step_id(n, &rel);
            // The digest of content then mode/owner/append, hashed in place (no joined copy).
            let tail = format!("{meta:?}{}", w.append);
            if w.append {
                let input = state::append_input(&w.content.sha256(), tail.as_bytes());
                // A record written before the text's digest stood alone in the input holds
                // the joined digest (`write_file_input`): it vouches as well (an upgrade must
                // not append again a text the user removed), and the record takes the new form.
                let legacy = self
                    .facts
                    .record
                    .as_ref()
                    .and_then(|r| r.steps.get(&id))
                    .is_some_and(|i| {
                        !i.contains(':')
                            && write_file_input(&w.content, tail.as_bytes()).is_ok_and(|j| *i == j)
                    });
                let vouched = legacy || self.applied_before(&id, &input);
                self.append_step(
                    id,
                    rel,
                    w,
                    meta,
                    Some(input),
                    vouched,
                    &mut planned,
                    &mut budget,
                );
                continue;
            }
            let input = match write_file_input(&w.content, tail.as_bytes()) {
                Ok(i) => Some(i),
                Err(e) => {
                    self.warnings.warn(
                        "user-data",
                        &format!("write_files[{n}].content"),
                        format!("{e}; {} not written", Esc(&w.path)),
                    );
                    continue;
                }
            };
            let content = std::mem::take(&mut w.content);
            self.file_step(
                &id,
                &rel,
                content,
                meta,
                input,
                &format!("write_files {}", w.path),
                true,
            );
            // A step that writes nothing (already there, local edits kept) leaves the file as
            // the facts saw it: a later `append` builds on that.
            if !append_paths.contains(&rel) {
                continue;
            }
            match self.steps.last() {
                Some(Step {
                    change,
                    action: Action::WriteFile { content, .. },
                    ..
                }) if change.acts() => {
                    let chain = Chain {
                        step: self.steps.len() - 1,
                        on_target: false,
                        len: content.len() as u64,
                        parts: vec![content.clone()],
                        append_meta: None,
                    };
                    planned.insert(rel, chain);
                }
                _ => {
                    planned.remove(&rel);
                }
            }
        }
        ud.cloud_config.write_files = Vec::new();
    }

    /// The step of an `append` entry `w` (its `id`, target `rel`, `meta` and `input`; `vouched`
    /// when the record holds it): nothing when its text was appended before (the record says so, or what the file will hold before
    /// it already holds the text); otherwise `AppendFile`, which copies the file (re-checked
    /// against what the facts measured, or what an earlier step of this plan stages) then the
    /// text. Neither is held: the facts searched the file for the text (`HostFacts::appended`).
    #[allow(clippy::too_many_arguments)]
    fn append_step(
        &mut self,
        id: String,
        rel: String,
        w: &mut crate::model::userdata::WriteFile,
        meta: Meta,
        input: Option<String>,
        vouched: bool,
        planned: &mut BTreeMap<String, Chain>,
        budget: &mut AppendBudget,
    ) {
        let text = std::mem::take(&mut w.content);
        let fact = self.facts.files.get(&rel);
        // The file as it is now holds the text: searched by the facts, or in memory when a
        // test's facts hold it.
        let target_holds = || {
            self.facts.appended.contains(&(rel.clone(), text.sha256()))
                || fact.is_some_and(|f| {
                    f.measured.is_none() && part_holds(&Bytes::from(f.content.as_slice()), &text)
                })
        };
        let chain = planned.get(&rel);
        let holds = match chain {
            Some(c) => {
                (c.on_target && target_holds()) || c.parts.iter().any(|p| part_holds(p, &text))
            }
            None => target_holds(),
        };
        let done = vouched || holds;
        let shown = &w.path;
        // Not searched (the facts' scan budget spent) and the record does not vouch: whether
        // the file holds it is not known, so it is not appended (twice, maybe).
        let unknown = !done
            && chain.is_none_or(|c| c.on_target)
            && self
                .facts
                .append_unsearched
                .contains(&(rel.clone(), text.sha256()));
        if unknown {
            self.warnings.warn(
                "user-data",
                &id,
                format!(
                    "{}: /{rel} not searched for the text (too many texts to search); not \
                     appended",
                    Esc(shown)
                ),
            );
            self.steps.push(Step {
                id,
                change: Change::Error,
                action: Action::Nothing,
                why: format!("write_files {shown}: /{rel} not searched for the text; not appended")
                    .into(),
                input: input.map(Into::into),
            });
            return;
        }
        if done {
            self.steps.push(Step {
                id,
                change: Change::Unchanged,
                action: Action::Nothing,
                why: format!("write_files {shown}: appended before for this instance").into(),
                input: input.map(Into::into),
            });
            return;
        }
        let base = match chain {
            Some(c) => AppendBase::Step(c.step),
            None => match fact {
                None => AppendBase::Target(None),
                Some(f) => match f.measured {
                    Some(m) => AppendBase::Target(Some((m.len, m.sha256))),
                    None => AppendBase::Target(Some((
                        f.content.len() as u64,
                        Bytes::from(f.content.as_slice()).sha256(),
                    ))),
                },
            },
        };
        // What the writer copies: nothing onto its own append with this mode and owner,
        // otherwise the file as it is before this step.
        let copies = match (chain, &base) {
            (Some(c), _) if c.append_meta == Some(meta) => 0,
            (Some(c), _) => c.len,
            (None, AppendBase::Target(Some((len, _)))) => *len,
            (None, _) => 0,
        };
        let over = budget.copied.saturating_add(copies) > MAX_APPEND_COPY_BYTES;
        let start = match &base {
            AppendBase::Target(Some((len, _))) => *len,
            _ => 0,
        };
        let (change, why) = match (&base, fact) {
            _ if over && copies != u64::MAX => {
                self.warnings.warn(
                    "user-data",
                    &id,
                    format!(
                        "{}: appending would copy /{rel} ({copies} bytes) past the run's \
                         {} MiB of copies; not appended",
                        Esc(shown),
                        MAX_APPEND_COPY_BYTES >> 20
                    ),
                );
                (
                    Change::Error,
                    format!("write_files {shown}: the run's appends copy too much; not appended"),
                )
            }
            // Past the facts' cap (measured as `u64::MAX`): not read, so not copied either.
            (AppendBase::Target(Some((u64::MAX, _))), _) => (
                Change::Error,
                format!("write_files {shown}: /{rel} is too large to append to; not appended"),
            ),
            (AppendBase::Target(None), _) => (
                Change::Create,
                format!("write_files {shown}: /{rel} does not exist"),
            ),
            // Nothing to append, and the mode and owner already as asked.
            (AppendBase::Target(Some(_)), Some(f)) if text.is_empty() && f.meta == meta => (
                Change::Unchanged,
                format!("write_files {shown}: /{rel} is already up to date"),
            ),
            _ => (
                Change::Update,
                format!(
                    "write_files {shown}: {} bytes appended to /{rel}",
                    text.len()
                ),
            ),
        };
        let action = if change.acts() {
            Action::AppendFile {
                path: rel.clone(),
                base: Box::new(base),
                bytes: text.len(),
                sha256: text.sha256(),
                content: text.clone(),
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
            }
        } else {
            Action::Nothing
        };
        let acts = change.acts();
        self.steps.push(Step {
            id,
            change,
            action,
            why: why.into(),
            input: input.map(Into::into),
        });
        if acts {
            budget.copied += copies;
            let mut c = planned.remove(&rel).unwrap_or(Chain {
                step: 0,
                on_target: true,
                parts: Vec::new(),
                len: start,
                append_meta: None,
            });
            c.step = self.steps.len() - 1;
            c.len = c.len.saturating_add(text.len() as u64);
            c.append_meta = Some(meta);
            c.parts.push(text);
            planned.insert(rel, c);
        }
    }

    /// `user:group` (or `user`) to ids, with users and groups this plan creates.
    fn owner(&self, spec: &str) -> Option<(u32, u32)> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let num = |s: &str| s.parse::<u32>().ok();
        let (uid, primary) = match num(u) {
            Some(n) => (n, n),
            None => {
                let pw = self.user(u)?;
                (pw.uid, pw.gid)
            }
        };
        let gid = match g {
            None | Some("") => primary,
            Some(g) => match num(g) {
                Some(n) => n,
                None => {
                    let groups = self
                        .accounts_now
                        .get(GROUP)
                        .cloned()
                        .flatten()
                        .or_else(|| {
                            self.facts
                                .files
                                .get(GROUP)
                                .map(|f| String::from_utf8_lossy(&f.content).into_owned())
                        })
                        .unwrap_or_default();
                    group_gid(&groups, g)?
                }
            },
        };
        Some((uid, gid))
    }

    /// Scripts (vendor first, then user, then `runcmd`), once per instance, and `bootcmd`, every
    /// boot. Stored names carry their run order and origin (`10-vendor-…`, `20-user-…`,
    /// `30-runcmd`, `00-bootcmd`), so a part named like primer's own scripts never collides.
    pub(super) fn plan_scripts(
        &mut self,
        instance: &Instance,
        ud: &mut UserData,
        policy: &UserPolicy,
        defer: bool,
    ) {
        let dir = scripts_dir(&instance.instance_id);
        let ran_dir = ran_dir(&instance.instance_id);
        let timeout = policy.script_timeout.as_secs().max(1);
        let cc = &ud.cloud_config;
        let mut all: Vec<(String, Bytes, bool)> = Vec::new();
        if !cc.bootcmd.is_empty() {
            all.push((BOOTCMD.into(), script_of(&cc.bootcmd).into(), true));
        }
        for origin in [Origin::VendorData, Origin::UserData] {
            for s in ud.scripts.iter_mut().filter(|s| s.origin == origin) {
                let prefix = match origin {
                    Origin::VendorData => "10-vendor-",
                    Origin::UserData => "20-user-",
                };
                // Moved into its step, not copied (user-data may be tens of MiB).
                let content = std::mem::take(&mut s.content);
                all.push((format!("{prefix}{}", s.name), content, false));
            }
        }
        if !cc.runcmd.is_empty() {
            all.push(("30-runcmd".into(), script_of(&cc.runcmd).into(), false));
        }
        for b in &ud.boothooks {
            self.warnings.warn(
                "user-data",
                &b.name,
                "#cloud-boothook parts are not run by primer",
            );
        }
        for (name, content, every_boot) in all {
            let path = format!("{dir}/{name}");
            self.file_step(
                &format!("script-file:{name}"),
                &path,
                content,
                Meta {
                    mode: 0o700,
                    ..PRIVATE_FILE
                },
                None,
                &format!("user-data script {name} (stored)"),
                false,
            );
            // Staged when the stored file already holds these very bytes (compared, not hashed
            // again: the content may be tens of MiB).
            let staged = match self.steps.last().map(|s| &s.action) {
                Some(Action::WriteFile { content, .. }) => self
                    .facts
                    .files
                    .get(&path)
                    .is_some_and(|f| f.holds(content)),
                _ => false,
            };
            let id = format!("script:{name}");
            let marker = format!("{ran_dir}/{name}");
            let ran = self.facts.files.contains_key(&marker);
            let (change, why) = if !self.facts.live {
                (
                    if staged {
                        Change::Unchanged
                    } else {
                        Change::Skip
                    },
                    format!("script {name}: staged at /{path}, not run (not the running system)"),
                )
            } else if every_boot {
                (
                    Change::Update,
                    format!("bootcmd: runs every boot (/{path})"),
                )
            } else if ran {
                (
                    Change::Unchanged,
                    format!("script {name}: already ran for this instance"),
                )
            } else if defer {
                (
                    if staged {
                        Change::Unchanged
                    } else {
                        Change::Skip
                    },
                    format!(
                        "script {name}: staged; runs once in primer-scripts.service (`primer scripts`), after the network is online"
                    ),
                )
            } else {
                (
                    Change::Update,
                    format!("script {name}: runs once for this instance"),
                )
            };
            self.steps.push(Step {
                id,
                change,
                action: Action::RunScript {
                    path: path.clone(),
                    timeout_secs: timeout,
                    marker: (!every_boot).then_some(marker),
                },
                why: why.into(),
                input: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user-data script is one buffer from the parse to the write: the instance, the stored
    /// script's step and the local copy's step share it (issue 15: a 64 MiB script was held
    /// four times), and a MIME part undecoded shares it too.
    #[test]
    fn a_script_drive_file_is_held_once() {
        use crate::media::DriveFiles;
        let boundary = "==b==";
        let mime = format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n--{boundary}\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"a.sh\"\n\n#!/bin/sh\necho a\n--{boundary}--\n"
        );
        for (ud, whole) in [
            (b"#!/bin/sh\ntrue\n".to_vec(), true),
            (mime.into_bytes(), false),
        ] {
            let mut d = DriveFiles::new("/dev/x", "iso9660");
            d.files.insert(
                "openstack/latest/meta_data.json".into(),
                br#"{"uuid": "i-1"}"#.to_vec().into(),
            );
            d.files
                .insert("openstack/latest/user_data".into(), ud.into());
            let (inst, _) = crate::source::parse_drive(&d).unwrap();
            let held = inst.held["openstack/latest/user_data"].clone();
            assert!(held.same(&inst.user_data.as_ref().unwrap().0));
            let facts = crate::facts::HostFacts::default();
            let p = super::super::plan(&inst, &d, &facts, &super::super::Policy::default());
            let content = |prefix: &str| {
                p.steps
                    .iter()
                    .find_map(|s| match &s.action {
                        Action::WriteFile { content, .. } if s.id.starts_with(prefix) => {
                            Some(content.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("no {prefix} step"))
            };
            let copy = content("copy:openstack/latest/user_data");
            assert!(
                copy.same(&held),
                "the local copy shares the drive file's buffer"
            );
            let script = content("script-file:20-user-");
            if whole {
                assert!(script.same(&held), "the script is the whole buffer");
            } else {
                // The line break before the boundary belongs to the boundary.
                assert_eq!(script, b"#!/bin/sh\necho a");
                assert!(
                    held.slice_ref(&script).is_some(),
                    "the part is a slice of it"
                );
            }
        }
    }

    /// An `append` is planned as a copy of the file then the text (`AppendFile`), never the
    /// two joined: onto the file as the facts measured it, onto an earlier step's write of the
    /// same path, and not at all when the file (or what this plan writes before it) already
    /// holds the text.
    #[test]
    fn an_append_builds_on_what_the_file_or_an_earlier_step_holds() {
        use crate::facts::{FileFact, PasswdEntry};
        use crate::media::DriveFiles;
        let plan_for = |ud: &str, facts: &crate::facts::HostFacts| {
            let mut d = DriveFiles::new("/dev/x", "iso9660");
            d.files.insert(
                "openstack/latest/meta_data.json".into(),
                br#"{"uuid": "i-1"}"#.to_vec().into(),
            );
            d.files.insert(
                "openstack/latest/user_data".into(),
                ud.as_bytes().to_vec().into(),
            );
            let (inst, _) = crate::source::parse_drive(&d).unwrap();
            let p = super::super::plan(&inst, &d, facts, &super::super::Policy::default());
            p.steps
                .into_iter()
                .filter(|s| s.id.starts_with("write-file:"))
                .map(|s| (s.change, s.action))
                .collect::<Vec<_>>()
        };
        let mut facts = crate::facts::HostFacts {
            passwd: vec![PasswdEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
            }],
            ..Default::default()
        };
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        facts
            .files
            .insert(GROUP.into(), FileFact::held(b"root:x:0:\n".to_vec(), meta));
        let cc =
            "#cloud-config\nwrite_files:\n  - {path: /srv/log, content: \"b\\n\", append: true}\n";
        // Missing: created with the text.
        let steps = plan_for(cc, &facts);
        assert!(
            matches!(
                &steps[..],
                [(
                    Change::Create,
                    Action::AppendFile {
                        base,
                        bytes: 2,
                        ..
                    }
                )] if **base == AppendBase::Target(None)
            ),
            "{steps:?}"
        );
        // Measured: appended onto exactly that file.
        let m = crate::facts::Measured {
            len: 2,
            sha256: Bytes::from("a\n").sha256(),
        };
        facts.files.insert(
            "srv/log".into(),
            FileFact {
                content: Vec::new(),
                meta,
                measured: Some(m),
            },
        );
        let steps = plan_for(cc, &facts);
        assert!(
            matches!(
                &steps[..],
                [(Change::Update, Action::AppendFile { base, .. })]
                    if **base == AppendBase::Target(Some((2, m.sha256)))
            ),
            "{steps:?}"
        );
        // The facts found the text there: nothing.
        facts
            .appended
            .insert(("srv/log".into(), Bytes::from("b\n").sha256()));
        let steps = plan_for(cc, &facts);
        assert!(
            matches!(&steps[..], [(Change::Unchanged, Action::Nothing)]),
            "{steps:?}"
        );
        // Not there (the user removed it), but a record from before the text's digest stood
        // alone in the input (one joined digest) vouches for it: not appended again after an
        // upgrade; another text's joined digest does not.
        facts.appended.clear();
        let tail = format!("{meta:?}true");
        for (text, unchanged) in [("b\n", true), ("z\n", false)] {
            let old = write_file_input(&Bytes::from(text), tail.as_bytes()).unwrap();
            facts.record = Some(crate::state::Record {
                steps: [("write-file:0:srv/log".to_string(), old)]
                    .into_iter()
                    .collect(),
                ..Default::default()
            });
            let steps = plan_for(cc, &facts);
            assert_eq!(
                matches!(&steps[..], [(Change::Unchanged, Action::Nothing)]),
                unchanged,
                "{text:?}: {steps:?}"
            );
        }
        facts.record = None;
        facts
            .appended
            .insert(("srv/log".into(), Bytes::from("b\n").sha256()));
        // After a write of the same path: onto that step's write; a text that write holds is
        // not appended; two appends chain.
        let cc = "#cloud-config\nwrite_files:\n  - {path: /srv/log, content: \"x\\nb\\n\"}\n  - {path: /srv/log, content: \"b\\n\", append: true}\n  - {path: /srv/log, content: \"c\\n\", append: true}\n  - {path: /srv/log, content: \"d\\n\", append: true}\n";
        let p = plan_for(cc, &facts);
        assert!(
            matches!(p[0], (Change::Update, Action::WriteFile { .. })),
            "{p:?}"
        );
        assert!(
            matches!(p[1], (Change::Unchanged, Action::Nothing)),
            "{p:?}"
        );
        let (Action::AppendFile { base: a, .. }, Action::AppendFile { base: b, .. }) =
            (&p[2].1, &p[3].1)
        else {
            panic!("{p:?}");
        };
        let (AppendBase::Step(a), AppendBase::Step(b)) = (&**a, &**b) else {
            panic!("{p:?}");
        };
        assert!(a < b, "{p:?}");

        // Bounded: a text the facts did not search (their budget spent) is not appended; past
        // `MAX_APPEND_COPY_BYTES` of copies an append is refused, naming it; a chain with one
        // mode and owner copies its file once.
        facts.appended.clear();
        let mut unsearched = facts.clone();
        unsearched
            .append_unsearched
            .insert(("srv/log".into(), Bytes::from("b\n").sha256()));
        let one =
            "#cloud-config\nwrite_files:\n  - {path: /srv/log, content: \"b\\n\", append: true}\n";
        let steps = plan_for(one, &unsearched);
        assert!(
            matches!(&steps[..], [(Change::Error, Action::Nothing)]),
            "{steps:?}"
        );
        let big = crate::facts::Measured {
            len: MAX_APPEND_COPY_BYTES / 2 + 1,
            sha256: [0; 32],
        };
        for f in ["srv/a", "srv/b"] {
            facts.files.insert(
                f.into(),
                FileFact {
                    content: Vec::new(),
                    meta,
                    measured: Some(big),
                },
            );
        }
        let cc = "#cloud-config\nwrite_files:\n  - {path: /srv/a, content: \"1\", append: true}\n  - {path: /srv/a, content: \"2\", append: true}\n  - {path: /srv/b, content: \"3\", append: true}\n";
        let steps = plan_for(cc, &facts);
        assert!(
            matches!(
                &steps[..],
                [
                    (Change::Update, Action::AppendFile { .. }),
                    (Change::Update, Action::AppendFile { base: second, .. }),
                    (Change::Error, Action::Nothing),
                ] if matches!(**second, AppendBase::Step(_))
            ),
            "{steps:?}"
        );
    }

    /// Past `MAX_APPENDS` append entries, each later one is refused with a warning naming it.
    #[test]
    fn append_entries_past_the_cap_are_refused_by_name() {
        use crate::media::DriveFiles;
        let mut cc = String::from("#cloud-config\nwrite_files:\n");
        for i in 0..MAX_APPENDS + 2 {
            cc.push_str(&format!(
                "  - {{path: /srv/log, content: \"{i}\\n\", append: true}}\n"
            ));
        }
        let mut d = DriveFiles::new("/dev/x", "iso9660");
        d.files.insert(
            "openstack/latest/meta_data.json".into(),
            br#"{"uuid": "i-1"}"#.to_vec().into(),
        );
        d.files
            .insert("openstack/latest/user_data".into(), cc.into_bytes().into());
        let (inst, _) = crate::source::parse_drive(&d).unwrap();
        let policy = super::super::Policy::default();
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let mut facts = crate::facts::HostFacts {
            passwd: vec![crate::facts::PasswdEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
            }],
            ..Default::default()
        };
        facts.files.insert(
            GROUP.into(),
            crate::facts::FileFact::held(b"root:x:0:\n".to_vec(), meta),
        );
        let p = super::super::plan(&inst, &d, &facts, &policy);
        let appends = p
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::AppendFile { .. }))
            .count();
        assert_eq!(appends, MAX_APPENDS);
        let refused: Vec<_> = p
            .warnings
            .warnings
            .iter()
            .filter(|w| w.to_string().contains("append entries; not appended"))
            .collect();
        assert_eq!(refused.len(), 2, "{:?}", p.warnings);
        assert!(
            refused[0]
                .to_string()
                .contains(&format!("write_files[{MAX_APPENDS}]")),
            "{refused:?}"
        );
    }

    /// The digest hashed in place is the one recorded before (over content and tail joined):
    /// records of earlier runs keep matching, so nothing is re-applied after an upgrade.
    #[test]
    fn an_append_input_names_its_text_for_the_facts() {
        let text = Bytes::from(b"appended\n".to_vec());
        let input = state::append_input(&text.sha256(), b"mode");
        assert!(state::append_input_names(&input, &text.sha256()));
        let other = Bytes::from(b"other\n".to_vec());
        assert!(!state::append_input_names(&input, &other.sha256()));
        // The rest (mode, owner) changes the input, not what it names.
        assert_ne!(input, state::append_input(&text.sha256(), b"other mode"));
    }

    #[test]
    fn write_file_input_is_the_joined_digest() {
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let tail = format!("{meta:?}{}", true);
        for content in [&b""[..], b"x", &[7u8; 100_000][..]] {
            let mut joined = content.to_vec();
            joined.extend_from_slice(tail.as_bytes());
            assert_eq!(
                write_file_input(&content.into(), tail.as_bytes()).unwrap(),
                state::sha256_hex(&joined)
            );
        }
    }
}
