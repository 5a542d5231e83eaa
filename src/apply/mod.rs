//! Apply: carries out a `Plan` on a `Target`. The only writer in primer: every file goes through
//! `fs::write_atomic` inside the target root. Never decides what to do (that is `plan`), never
//! logs file contents or secrets, and keeps going after a failed step so one failure does not
//! leave the rest undone.

pub mod accounts;
pub mod deferred;
pub mod fault;
pub mod fs;
pub mod hostkeys;
pub mod pin;
pub mod script;
pub mod system;

use std::borrow::Cow;
use std::path::PathBuf;

use serde::Serialize;

use crate::facts::Meta;
use crate::paths::Resolver;
use crate::plan::{Action, Change, Plan, COPY_REMOVE_STEP, COPY_STEP, PUBLIC_DIR};
use crate::state::STATE_DIR;

/// Where apply writes.
#[derive(Debug, Clone)]
pub struct Target {
    pub root: PathBuf,
    /// The root is the running system: live changes (sethostname) are made.
    pub live: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Changed,
    Unchanged,
    Skipped,
    Failed,
}

/// One step of a report with its own text: a step whose id and detail are not a plan step's
/// (a `scripts` run's, a re-run's cached step, the status), or a plan step's with its detail
/// (an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub id: String,
    pub outcome: Outcome,
    /// The plan's why, or the error.
    pub detail: String,
}

/// The report of a run: each step's outcome, its id and detail read from the plan it reports
/// on (the step's id and why, rendered when read) unless the step holds its own text (an
/// error, a step past the plan's). Rendering every why into a report of owned strings cost
/// ~1.7 MB at the end of a run of 5,000 injected files, held with the plan at its largest
/// (issue 15: the first run's peak).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    outcomes: Vec<Outcome>,
    /// The steps with their own text, by index (ascending): the index, the id (`None`: the
    /// plan step's) and the detail.
    own: Vec<(usize, Option<String>, String)>,
}

impl From<Vec<StepReport>> for ApplyReport {
    fn from(steps: Vec<StepReport>) -> ApplyReport {
        let mut r = ApplyReport::default();
        for s in steps {
            r.push(s);
        }
        r
    }
}

impl ApplyReport {
    pub fn count(&self, o: Outcome) -> usize {
        self.outcomes.iter().filter(|&&x| x == o).count()
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Step `i`'s outcome (`i < len()`).
    pub fn outcome(&self, i: usize) -> Outcome {
        self.outcomes[i]
    }

    /// An empty report with room for `n` steps with their own text.
    pub fn with_capacity(n: usize) -> ApplyReport {
        ApplyReport {
            outcomes: Vec::with_capacity(n),
            own: Vec::with_capacity(n),
        }
    }

    /// Appends a step with its own text.
    pub fn push(&mut self, s: StepReport) {
        self.own.push((self.outcomes.len(), Some(s.id), s.detail));
        self.outcomes.push(s.outcome);
    }

    /// Appends a step of the plan: its id from the plan, its detail `detail` or (`None`) the
    /// plan step's why.
    fn push_planned(&mut self, outcome: Outcome, id: Option<String>, detail: Option<String>) {
        if let Some(d) = detail {
            self.own.push((self.outcomes.len(), id, d));
        }
        self.outcomes.push(outcome);
    }

    /// Step `i`'s id, outcome and detail, its text read from `plan` (the steps this report is
    /// of; none for a report whose steps all hold their own text). `i < len()`.
    pub fn step<'a>(
        &'a self,
        plan: &'a [crate::plan::Step],
        i: usize,
    ) -> (&'a str, Outcome, std::borrow::Cow<'a, str>) {
        let detail = match self.own_at(i) {
            Ok(n) => Cow::Borrowed(self.own[n].2.as_str()),
            Err(_) => plan
                .get(i)
                .map_or(Cow::Borrowed(""), crate::plan::Step::why),
        };
        (self.id(plan, i), self.outcomes[i], detail)
    }

    /// Step `i`'s id alone (its detail not rendered). `i < len()`.
    pub fn id<'a>(&'a self, plan: &'a [crate::plan::Step], i: usize) -> &'a str {
        let own = self.own_at(i).ok().and_then(|n| self.own[n].1.as_deref());
        own.unwrap_or_else(|| plan.get(i).map_or("", |s| s.id.as_str()))
    }

    /// Where step `i`'s own text is in `own` (`Err`: where it would go).
    fn own_at(&self, i: usize) -> Result<usize, usize> {
        self.own.binary_search_by_key(&i, |o| o.0)
    }

    /// Every step as [`step`](ApplyReport::step) reads it.
    pub fn steps<'a>(
        &'a self,
        plan: &'a [crate::plan::Step],
    ) -> impl Iterator<Item = (&'a str, Outcome, std::borrow::Cow<'a, str>)> + 'a {
        (0..self.len()).map(move |i| self.step(plan, i))
    }

    /// Every step with its text owned (tests).
    pub fn to_vec(&self, plan: &[crate::plan::Step]) -> Vec<StepReport> {
        self.steps(plan)
            .map(|(id, outcome, detail)| StepReport {
                id: id.to_string(),
                outcome,
                detail: detail.into_owned(),
            })
            .collect()
    }

    /// The report read with the plan it reports on: a [`StepSource`], and serialised as the
    /// list of its steps (`id`, `outcome`, `detail`).
    pub fn of<'a>(&'a self, plan: &'a [crate::plan::Step]) -> Of<'a> {
        Of { report: self, plan }
    }

    /// Step `i`'s detail, owned from here on, to add to (`i < len()`).
    fn detail_mut(&mut self, plan: &[crate::plan::Step], i: usize) -> &mut String {
        let n = match self.own_at(i) {
            Ok(n) => n,
            Err(n) => {
                let why = plan
                    .get(i)
                    .map(|s| s.why().into_owned())
                    .unwrap_or_default();
                self.own.insert(n, (i, None, why));
                n
            }
        };
        &mut self.own[n].2
    }
}

/// An [`ApplyReport`] with the plan its steps' text is read from.
#[derive(Clone, Copy)]
pub struct Of<'a> {
    report: &'a ApplyReport,
    plan: &'a [crate::plan::Step],
}

impl StepSource for Of<'_> {
    fn step_count(&self) -> usize {
        self.report.len()
    }
    fn outcome_of(&self, i: usize) -> Outcome {
        self.report.outcomes[i]
    }
    fn step_at(&self, i: usize) -> (&str, Outcome, std::borrow::Cow<'_, str>) {
        self.report.step(self.plan, i)
    }
}

impl<'a> Of<'a> {
    /// The steps alone, serialised as a list (`Of` itself serialises as the report was, an
    /// object with the list as its `steps`).
    pub fn list(self) -> OfList<'a> {
        OfList(self)
    }
}

impl Serialize for Of<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ApplyReport", 1)?;
        st.serialize_field("steps", &OfList(*self))?;
        st.end()
    }
}

/// See [`Of::list`].
pub struct OfList<'a>(Of<'a>);

impl Serialize for OfList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        let Of { report, plan } = self.0;
        let mut seq = s.serialize_seq(Some(report.len()))?;
        for (id, outcome, detail) in report.steps(plan) {
            // As `StepReport` serialises.
            struct One<'x>(&'x str, Outcome, &'x str);
            impl Serialize for One<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let mut st = s.serialize_struct("StepReport", 3)?;
                    st.serialize_field("id", self.0)?;
                    st.serialize_field("outcome", &self.1)?;
                    st.serialize_field("detail", self.2)?;
                    st.end()
                }
            }
            seq.serialize_element(&One(id, outcome, &detail))?;
        }
        seq.end()
    }
}

/// The steps of a run's report as the status reads them, borrowed: the report itself, or
/// (for the status staged in the run's flush) the plan and its results before any report is
/// built, so that the status costs no copy of each step's id and why (28,000 steps: ~10 MiB).
pub trait StepSource {
    /// How many steps.
    fn step_count(&self) -> usize;
    /// Step `i`'s outcome (`i < step_count()`).
    fn outcome_of(&self, i: usize) -> Outcome;
    /// Step `i`'s id, outcome and detail (`i < step_count()`).
    fn step_at(&self, i: usize) -> (&str, Outcome, std::borrow::Cow<'_, str>);
    /// Steps with outcome `o`.
    fn count_of(&self, o: Outcome) -> usize {
        (0..self.step_count())
            .filter(|&i| self.outcome_of(i) == o)
            .count()
    }
}

/// The report [`build_report`] would build, read in place from the plan and the results.
struct ReportView<'a> {
    plan: &'a Plan,
    results: &'a [std::io::Result<()>],
    not_pinned: Option<usize>,
}

impl StepSource for ReportView<'_> {
    fn step_count(&self) -> usize {
        self.results.len()
    }
    fn outcome_of(&self, i: usize) -> Outcome {
        // The one account of a step's outcome, without its detail (a whole-file step's why is
        // rendered when asked for: the status counts outcomes six times per step).
        report_step(self.plan, self.results, self.not_pinned, i, false).0
    }
    fn step_at(&self, i: usize) -> (&str, Outcome, std::borrow::Cow<'_, str>) {
        let (outcome, detail) = report_step(self.plan, self.results, self.not_pinned, i, true);
        let step = self.plan.steps.get(i);
        let detail = detail.unwrap_or_else(|| step.map_or(SYNC_WHY.into(), |s| s.why()));
        (step.map_or(SYNC_ID, |s| s.id.as_str()), outcome, detail)
    }
}

/// Writes the run's status with a report's steps (`StatusDoc`) as the writer stages it.
struct StatusWith<'x> {
    doc: StatusDoc<'x>,
    steps: &'x dyn StepSource,
}

impl crate::model::bytes::WriteOut for StatusWith<'_> {
    fn write_out(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        (self.doc)(self.steps, out)
    }
}

/// Parents for a path: primer's state tree is private (0700), anything else public (0755).
fn parents_for(path: &str) -> Meta {
    if path.starts_with(STATE_DIR) {
        crate::plan::private_dir_meta()
    } else {
        PUBLIC_DIR
    }
}

/// Applies every step of `plan` in order, with the run lock held (taken before the host facts
/// were read, so the plan is still true). Directories and removals happen at once; file
/// writes are staged and committed together, then the record is written last with the steps
/// that really landed.
pub fn apply_plan(plan: &Plan, target: &Target, lock: &RunLock) -> ApplyReport {
    apply_plan_recorded(
        plan,
        target,
        lock,
        None,
        Resolver::with_group_rule(&target.root, crate::platform::hands_group_down),
    )
    .0
}

/// Writes the run's `status.json` from the run's steps (see `status::run_status`) as the
/// writer streams it into its staged file (never held as one buffer, nor its steps copied).
/// (A trait object: apply does not import `status`, which writes through apply.)
pub type StatusDoc<'a> =
    &'a dyn Fn(&dyn StepSource, &mut dyn std::io::Write) -> std::io::Result<()>;

/// The tag of the status file in the writer's batch (never a step's index).
const STATUS_TAG: usize = usize::MAX - 1;

/// `apply_plan`, writing the run's status (built by `status` from the report) in the same
/// flush as everything else: a run whose steps need nothing between their files and the record
/// (no script, no certificate tool, no reboot request) stages every file — the run's files,
/// then the record, the pin and the status — and commits them with one flush
/// (`fs::Writer::commit_run`, which gives the crash argument). The status is built from the
/// report as it will be when every rename succeeds; when one fails, the record is staged again
/// without the failed steps and committed with a second flush, and the status is left to the
/// caller. Returns the report and whether the status was written. Paths are resolved through
/// `lookups` (the run's resolver, whose memo the host facts filled: see
/// [`fs::Writer::with_resolver`]); its root must be `target.root`.
pub fn apply_plan_recorded(
    plan: &Plan,
    target: &Target,
    lock: &RunLock,
    status: Option<StatusDoc<'_>>,
    lookups: Resolver,
) -> (ApplyReport, bool) {
    let mut writer = fs::Writer::with_resolver(lookups);
    if lock.lock.is_none() && plan.steps.iter().any(|s| s.change.acts()) {
        // Only a plan that changes nothing may go without the lock.
        let mut report = ApplyReport::default();
        for s in &plan.steps {
            report.push_planned(
                if s.change.acts() {
                    Outcome::Failed
                } else {
                    Outcome::Unchanged
                },
                None,
                Some(format!(
                    "{}: not applied: the run lock /{LOCK_PATH} is not held",
                    s.why()
                )),
            );
        }
        return (report, false);
    }
    let copy = copy_rebuild(plan);
    let new_dirs = new_dir_trees(plan, &mut writer);
    let mut results: Vec<Result<(), std::io::Error>> = Vec::with_capacity(plan.steps.len());
    let mut record_step = None;
    let mut pin_step = None;
    let mut scripts = Vec::new();
    let mut tools = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let r = match (&step.change, &step.action) {
            // The local copy, when any of it changes: rebuilt whole, every file into a fresh
            // tree published by one rename (`fs::Writer::stage_tree_file`; an unchanged file
            // linked from the current copy, `keep_tree_file`); a file no longer on the drive
            // is simply not in it.
            (
                c,
                Action::WriteFile {
                    content,
                    mode,
                    uid,
                    gid,
                    ..
                },
            ) if copy
                .as_ref()
                .is_some_and(|_| step.id.starts_with(COPY_STEP)) =>
            {
                let dir = copy.as_deref().unwrap_or_default();
                let meta = Meta {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                };
                let rel = &step.id[COPY_STEP.len()..];
                ensure_state_parents(&mut writer, dir).and_then(|()| {
                    if c.acts() {
                        writer.stage_tree_file(i, dir, rel, content, meta, parents_for(dir))
                    } else {
                        // Unchanged: linked from the current copy (no device read, no write).
                        writer.keep_tree_file(i, dir, rel, content, meta, parents_for(dir))
                    }
                })
            }
            // A file into a directory this run creates with many files: that directory built
            // whole and renamed in once (`fs::Writer::stage_new_dir_file`).
            (
                c,
                Action::WriteFile {
                    path,
                    content,
                    mode,
                    uid,
                    gid,
                    ..
                },
            ) if c.acts() && new_dirs.get(i).is_some() => {
                let (dir, rel_in) = new_dirs.get(i).unwrap_or_default();
                let meta = Meta {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                };
                writer.stage_new_dir_file(i, dir, rel_in, content, meta, parents_for(path))
            }
            (c, Action::RemoveFile { .. })
                if c.acts() && copy.is_some() && step.id.starts_with(COPY_REMOVE_STEP) =>
            {
                Ok(())
            }
            (c, _) if !c.acts() => Ok(()),
            (_, Action::WriteRecord { .. }) => {
                record_step = Some(i);
                Ok(())
            }
            (_, Action::WritePin { .. }) => {
                // Written last, and only when everything else landed.
                pin_step = Some(i);
                Ok(())
            }
            (_, Action::RunScript { .. }) => {
                // Scripts see the finished system: they run after the commit below.
                scripts.push(i);
                Ok(())
            }
            (_, Action::UpdateCaCertificates { .. }) => {
                // Reads the certificate files staged above: runs after the commit below.
                tools.push(i);
                Ok(())
            }
            (_, action) => apply_action(action, target, &mut writer, i),
        };
        results.push(r);
        // The pin is written after everything else (its own point is there).
        if step.change.acts() && !matches!(step.action, Action::WritePin { .. }) {
            fault::point(&step.id);
        }
    }
    // Scripts and tools must see the run's files in place, and the record holds their
    // outcome; a reboot request waits for the record: those runs commit in two batches.
    let one_batch = scripts.is_empty()
        && tools.is_empty()
        && !plan.steps.iter().any(|s| {
            s.change.acts() && matches!(s.action, Action::SetComputerName { reboot: true, .. })
        });
    // Scripts that were started: recorded as run even when they fail (they run once per
    // instance; a script that half-worked must not run again on the next boot).
    let mut started = Vec::new();
    if !one_batch {
        // The run's files: durable data, renamed; their directories become durable with the
        // record's flush below (or `sync_dirs` at the end).
        for (i, e) in writer.commit_deferred() {
            set_error(&mut results, i, e);
        }
        for &i in &tools {
            if let Action::UpdateCaCertificates { tool } = &plan.steps[i].action {
                results[i] = system::update_ca_certificates(target, tool);
                fault::point(&plan.steps[i].id);
            }
        }
        for &i in &scripts {
            if let Action::RunScript {
                path,
                timeout_secs,
                marker,
            } = &plan.steps[i].action
            {
                let (ran, r) = deferred::run_marked(
                    &mut writer,
                    target,
                    &plan.steps[i].id,
                    path,
                    marker.as_deref(),
                    *timeout_secs,
                );
                if ran {
                    started.push(i);
                }
                results[i] = r;
                fault::point(&plan.steps[i].id);
            }
        }
        // Tools and scripts may have changed anything under the root: the writer looks again.
        writer.forget_all();
    }
    fail_copy_removes(plan, &mut results, copy.as_deref());
    let tail_from = writer.staged();
    let mut tail = stage_tail(
        &mut writer,
        plan,
        &mut results,
        record_step,
        pin_step,
        &started,
    );
    let mut status_written = false;
    if one_batch {
        // The status as the report will be when every rename succeeds.
        // Only with other files: alone, the caller writes it (without a flush when the run
        // changed nothing).
        let status_staged = match status {
            Some(doc) if writer.staged() > 0 => {
                // Read from the plan and the results in place (no report built for it).
                let view = ReportView {
                    plan,
                    results: &results,
                    not_pinned: tail.not_pinned,
                };
                let doc = StatusWith { doc, steps: &view };
                stage_state(&mut writer, STATUS_TAG, &crate::state::status_path(), &doc)
                    .map_err(|e| tracing::debug!("status not staged: {e}"))
                    .is_ok()
            }
            _ => false,
        };
        let errors = writer.commit_run(tail_from);
        let in_tail = |t: usize| t == STATUS_TAG || Some(t) == record_step || Some(t) == pin_step;
        let tail_dropped = errors.iter().any(|(t, _)| !in_tail(*t));
        let mut status_failed = !status_staged;
        for (i, e) in errors {
            if i == STATUS_TAG {
                status_failed = true;
            } else if !(tail_dropped && in_tail(i)) {
                set_error(&mut results, i, e);
            }
        }
        fail_copy_removes(plan, &mut results, copy.as_deref());
        if tail_dropped {
            // A file of the run did not land: the record and pin staged for the run as planned
            // were dropped unrenamed; the record is staged again without the failed steps and
            // committed in its own flush, which makes the renames that did land durable first.
            for i in [record_step, pin_step].into_iter().flatten() {
                results[i] = Ok(());
            }
            tail = stage_tail(
                &mut writer,
                plan,
                &mut results,
                record_step,
                pin_step,
                &started,
            );
            for (i, e) in writer.commit_chained() {
                set_error(&mut results, i, e);
            }
            status_failed = true;
        }
        status_written = !status_failed;
    } else {
        // The record and the pin in one batch, the run's second (and last) flush: it also
        // makes the renames of the run's files durable before the record's own rename, so the
        // record never says more than landed. In staging order or not at all: a record that
        // failed leaves the drive unpinned.
        for (i, e) in writer.commit_chained() {
            set_error(&mut results, i, e);
        }
    }
    if let Some(i) = tail.pin_staged {
        let record_failed = record_step.is_some_and(|r| results[r].is_err());
        if record_failed {
            results[i] = Ok(());
            tail.not_pinned = Some(i);
        } else {
            fault::point(&plan.steps[i].id);
        }
    }
    // Directories the first batch left, when no flush came after it (no record written).
    if let Err(e) = writer.sync_dirs() {
        results.push(Err(e));
    }
    fail_copy_removes(plan, &mut results, copy.as_deref());
    let mut report = build_report(plan, &results, tail.not_pinned);
    for i in 0..report.len() {
        // The detail rendered only for a line that is logged (`step` inside the event).
        let step = || report.step(&plan.steps, i);
        let id = report.id(&plan.steps, i);
        match report.outcome(i) {
            Outcome::Failed => tracing::error!(step = %id, "{}", step().2),
            // One line per copied file would drown the boot log: those are debug.
            Outcome::Changed if !id.starts_with("copy") => {
                tracing::info!(step = %id, "{}", step().2)
            }
            _ => tracing::debug!(step = %id, "{}", step().2),
        }
    }
    reboot_when_required(plan, &mut report);
    (report, status_written)
}

/// The local copy's directory (relative to the root) when any of its steps acts: the copy is
/// then written whole as one new tree (thousands of files, none with a temporary name and a
/// rename of its own). `None` when nothing in it changes, or when its steps do not name one
/// directory (then each file is written on its own, as any file).
///
/// Not on Windows: there the tree's subdirectories could not be made under the tree root's
/// protected ACL (`scripts/test-windows`' end-to-end run under wine: "Access denied" on the
/// second directory), so each file of the copy is written on its own there, as before.
fn copy_rebuild(plan: &Plan) -> Option<String> {
    if cfg!(windows) {
        return None;
    }
    let mut dir: Option<&str> = None;
    let mut acts = false;
    for s in &plan.steps {
        if s.id.starts_with(COPY_REMOVE_STEP) {
            acts |= s.change.acts();
            continue;
        }
        let Some(rel) = s.id.strip_prefix(COPY_STEP) else {
            continue;
        };
        let Action::WriteFile { path, .. } = &s.action else {
            return None;
        };
        let d = path.strip_suffix(rel)?.strip_suffix('/')?;
        if dir.is_some_and(|known| known != d) {
            return None;
        }
        dir = Some(d);
        acts |= s.change.acts();
    }
    dir.filter(|_| acts).map(str::to_string)
}

/// How many files a directory the run creates must receive to be built as one tree: below
/// it, a file's own temporary name and rename cost no more than the tree's, and small runs
/// keep the plain path.
const NEW_DIR_TREE_MIN: usize = 8;

/// Step index -> (the missing directory, the path inside it) for the run's file writes that go
/// into a directory the run creates, grouped by that directory, where it receives at least
/// `NEW_DIR_TREE_MIN` files (5,000 injected files into `/srv/injected`: one rename instead of
/// 5,000). Not primer's state (the local copy has its own tree; the rest are few files), not the
/// sudoers drop-ins (checked in place beside their target), and not on Windows (as
/// `copy_rebuild`: a tree's subdirectories under the root's protected ACL).
fn new_dir_trees<'p>(plan: &'p Plan, writer: &mut fs::Writer) -> NewDirs<'p> {
    let mut found: Vec<(usize, NewDirSplit<'p>)> = Vec::new();
    if cfg!(windows) {
        return NewDirs::default();
    }
    // An `append` copies what an earlier step staged at its path (`Writer::stage_append`),
    // which a tree would hold under another name: its directory goes the per-file way.
    let mut appended = std::collections::HashSet::new();
    for (i, s) in plan.steps.iter().enumerate() {
        let path = match &s.action {
            Action::WriteFile { path, .. } => path,
            Action::AppendFile { path, .. } => {
                appended.insert(i);
                path
            }
            _ => continue,
        };
        if !s.change.acts()
            || path.starts_with(STATE_DIR)
            || path.starts_with("etc/sudoers.d/")
            || s.id.starts_with(COPY_STEP)
        {
            continue;
        }
        if let Some((dir, rel_in)) = writer.new_dir_of(path) {
            found.push((i, NewDirSplit::of(path, dir, rel_in)));
        }
    }
    // A path written twice (two `write_files` entries, an `append:` on a written file), or
    // twice up to case (`A` and `a` are one file in a case-insensitive directory): its whole
    // directory goes the per-file way, where each write lands in plan order (the last wins, an
    // append builds on the earlier content); a tree holds one file per name.
    // Paths are borrowed from the plan, and lower-cased copies made only of those that change
    // (10,000 `write_files` entries: ~1.5 MB of copies at the first run's peak; issue 15).
    let mut seen = std::collections::HashSet::new();
    let mut repeated = std::collections::HashSet::new();
    let mut count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    // Directories inside it by their lower-case name -> their spelling: `A/x` and `a/y` are
    // one directory there too.
    let mut subdirs: std::collections::HashMap<Cow<'_, str>, &str> =
        std::collections::HashMap::new();
    for (i, split) in &found {
        let (dir, rel_in) = split.parts();
        if appended.contains(i) {
            repeated.insert(dir);
        }
        *count.entry(dir).or_default() += 1;
        if !seen.insert(lower(split.joined(rel_in.len()))) {
            repeated.insert(dir);
        }
        let ends = rel_in.match_indices('/').map(|(n, _)| n);
        for sub in ends.map(|n| &rel_in[..n]) {
            let spelt = subdirs.entry(lower(split.joined(sub.len()))).or_insert(sub);
            if *spelt != sub {
                repeated.insert(dir);
            }
        }
    }
    drop((seen, subdirs));
    let big: std::collections::HashSet<&str> = count
        .into_iter()
        .filter(|&(d, n)| n >= NEW_DIR_TREE_MIN && !repeated.contains(d))
        .map(|(d, _)| d)
        .collect();
    // Each directory's name once, each file's index into them: the map lives through apply,
    // one entry per file (10,000 `write_files` entries into one new directory), its path
    // inside the directory borrowed from the step's.
    let mut out = NewDirs::default();
    // Sized once: grown by doubling, 5,000 files got room for 8,192 (~130 KB unused through
    // the staging of the run's files, its peak).
    let n = found
        .iter()
        .filter(|(_, s)| big.contains(s.parts().0))
        .count();
    out.files.reserve_exact(n);
    let mut ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, split) in &found {
        let (dir, _) = split.parts();
        if !big.contains(dir) {
            continue;
        }
        let n = *ids.entry(dir).or_insert_with(|| {
            out.dirs.push(dir.to_string());
            out.dirs.len() - 1
        });
        out.files.push((*i, n, split.rel_in()));
    }
    out
}

/// `s` lower-cased, copied only when that changes it (a name with no upper-case letter, the
/// common case, is all ASCII lower-case or not: only the former is taken as it is).
fn lower(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        s
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Where a file of [`new_dir_trees`] goes, as `Writer::new_dir_of` found it: the missing
/// directory and the path inside it. Almost always the two sides of a `/` of the step's own
/// path (`At`: nothing copied); as the writer resolved them when they are not (a symbolic
/// link on the way).
enum NewDirSplit<'p> {
    At(&'p str, usize),
    Resolved(Box<(String, String)>),
}

impl<'p> NewDirSplit<'p> {
    fn of(path: &'p str, dir: String, rel_in: String) -> NewDirSplit<'p> {
        let at = dir.len();
        if path.len() == at + 1 + rel_in.len()
            && path.starts_with(dir.as_str())
            && path.get(at..at + 1) == Some("/")
            && path.ends_with(rel_in.as_str())
        {
            NewDirSplit::At(path, at)
        } else {
            NewDirSplit::Resolved(Box::new((dir, rel_in)))
        }
    }

    /// The directory and the path inside it.
    fn parts(&self) -> (&str, &str) {
        match self {
            NewDirSplit::At(path, at) => (
                path.get(..*at).unwrap_or_default(),
                path.get(at + 1..).unwrap_or_default(),
            ),
            NewDirSplit::Resolved(b) => (b.0.as_str(), b.1.as_str()),
        }
    }

    /// `DIR/` and the first `len` bytes of the path inside it.
    fn joined(&self, len: usize) -> Cow<'_, str> {
        match self {
            NewDirSplit::At(path, at) => Cow::Borrowed(path.get(..at + 1 + len).unwrap_or(path)),
            NewDirSplit::Resolved(b) => {
                Cow::Owned(format!("{}/{}", b.0, b.1.get(..len).unwrap_or(&b.1)))
            }
        }
    }

    /// The path inside the directory, borrowed from the plan when it is the step's.
    fn rel_in(&self) -> Cow<'p, str> {
        match self {
            NewDirSplit::At(path, at) => Cow::Borrowed(path.get(at + 1..).unwrap_or_default()),
            NewDirSplit::Resolved(b) => Cow::Owned(b.1.clone()),
        }
    }
}

/// The files [`new_dir_trees`] builds into new directories: `(step, directory, path inside
/// it)`, in step order.
#[derive(Default)]
struct NewDirs<'p> {
    dirs: Vec<String>,
    files: Vec<(usize, usize, Cow<'p, str>)>,
}

impl NewDirs<'_> {
    /// Step `i`'s new directory and its path inside it, if it goes into one.
    fn get(&self, i: usize) -> Option<(&str, &str)> {
        let n = self.files.binary_search_by_key(&i, |f| f.0).ok()?;
        let (_, d, rel_in) = self.files.get(n)?;
        Some((self.dirs.get(*d)?.as_str(), rel_in))
    }
}

/// When a file of the rebuilt local copy failed, its tree was not published (the old copy is
/// kept): the removals it stood for (`copy-remove:PATH`) did not happen either.
fn fail_copy_removes(plan: &Plan, results: &mut [std::io::Result<()>], copy: Option<&str>) {
    if copy.is_none() {
        return;
    }
    let copy_failed = plan
        .steps
        .iter()
        .zip(results.iter())
        .any(|(s, r)| r.is_err() && s.id.starts_with(COPY_STEP));
    if !copy_failed {
        return;
    }
    for (s, r) in plan.steps.iter().zip(results.iter_mut()) {
        if s.id.starts_with(COPY_REMOVE_STEP) && s.change.acts() && r.is_ok() {
            *r = Err(std::io::Error::other(
                "not removed: another file of the copy failed; the old copy is kept",
            ));
        }
    }
}

/// `e` as the result of step `i` (or an extra result: a directory fsync of no step).
fn set_error(results: &mut Vec<std::io::Result<()>>, i: usize, e: std::io::Error) {
    match results.get_mut(i) {
        Some(r) => *r = Err(e),
        None => results.push(Err(e)),
    }
}

/// What `stage_tail` staged of the pin.
struct Tail {
    /// The pin step, when it was left out because a step failed.
    not_pinned: Option<usize>,
    /// The pin step, when it was staged.
    pin_staged: Option<usize>,
}

/// Stages the record (without the steps that failed: the next run retries them) and, when
/// every other step landed, the pin.
fn stage_tail(
    writer: &mut fs::Writer,
    plan: &Plan,
    results: &mut [std::io::Result<()>],
    record_step: Option<usize>,
    pin_step: Option<usize>,
    started: &[usize],
) -> Tail {
    if let Some(i) = record_step {
        // A set, and `started` (pushed in step order) searched by halves: thousands of failing
        // steps each scanned against the others were quadratic (20,000 failing entries: 3.4 s).
        let failed: std::collections::HashSet<&str> = plan
            .steps
            .iter()
            .enumerate()
            .zip(results.iter())
            .filter(|((n, s), r)| {
                (r.is_err() && started.binary_search(n).is_err()) || s.change == Change::Error
            })
            .map(|((_, s), _)| s.id.as_str())
            .collect();
        if let Action::WriteRecord {
            path,
            record,
            order,
        } = &plan.steps[i].action
        {
            // A failed step did not apply its input: leave it out so the next run retries it.
            // Streamed into the staged file (thousands of steps: never held as one buffer),
            // from the plan's own ids and inputs.
            let mut view = crate::plan::record_view(&plan.steps, record, order);
            if !failed.is_empty() {
                view.steps.retain(|(id, _)| !failed.contains(id));
            }
            results[i] = stage_state(writer, i, path, &view);
        }
    }
    // Pin only a drive whose steps all landed: a failed first boot is retried unpinned.
    let mut tail = Tail {
        not_pinned: None,
        pin_staged: None,
    };
    if let Some(i) = pin_step {
        let failed = plan
            .steps
            .iter()
            .zip(results.iter())
            .enumerate()
            .any(|(n, (s, r))| n != i && (r.is_err() || s.change == Change::Error))
            || results.len() > plan.steps.len();
        if failed {
            tail.not_pinned = Some(i);
        } else if let Action::WritePin { path, content } = &plan.steps[i].action {
            results[i] = pin::stage_pin(writer, i, path, content);
            tail.pin_staged = Some(i);
        }
    }
    tail
}

/// Most plan steps whose report holds each why as text (see [`build_report`]).
const OWN_TEXT_UP_TO: usize = 256;

/// The id and why of a result past the plan's steps: the final sync.
const SYNC_ID: &str = "sync";
const SYNC_WHY: &str = "making the changes durable";

/// The report of the run from each step's result: outcomes, and the text of the steps whose
/// detail is not their why (errors); the rest is read from the plan when printed.
fn build_report(
    plan: &Plan,
    results: &[std::io::Result<()>],
    not_pinned: Option<usize>,
) -> ApplyReport {
    // Sized once: pushed one by one, 2,047 steps would get room for 4,096.
    let mut report = ApplyReport {
        outcomes: Vec::with_capacity(results.len()),
        own: Vec::new(),
    };
    // A small plan's whys rendered once here, as before: printed, recorded in the status and
    // the re-run cache, each would otherwise be rendered three times (+7 % instructions on an
    // 11-NIC re-run); a large plan's are read from it (memory, issue 15).
    let own_all = plan.steps.len() <= OWN_TEXT_UP_TO;
    for i in 0..results.len() {
        let (outcome, detail) = report_step(plan, results, not_pinned, i, true);
        let past = i >= plan.steps.len();
        // A step past the plan's has no plan step to read its id and why from.
        let detail = detail.map(std::borrow::Cow::into_owned).or_else(|| {
            if past {
                Some(SYNC_WHY.to_string())
            } else {
                own_all.then(|| plan.steps[i].why().into_owned())
            }
        });
        report.push_planned(outcome, past.then(|| SYNC_ID.to_string()), detail);
    }
    report
}

/// Step `i` of the report: its outcome, and its detail when that is not the plan step's why
/// (`None`): the error, or why the pin was not written; with `detail` false an error is not
/// rendered. A result past the plan's steps is the final sync.
fn report_step<'p>(
    plan: &'p Plan,
    results: &[std::io::Result<()>],
    not_pinned: Option<usize>,
    i: usize,
    detail: bool,
) -> (Outcome, Option<std::borrow::Cow<'p, str>>) {
    let step = plan.steps.get(i);
    let change = step.map_or(Change::Update, |s| s.change);
    match (change, &results[i]) {
        _ if not_pinned == Some(i) => (
            Outcome::Skipped,
            Some(Cow::Borrowed(
                "not pinned: a step of this run failed; the next boot retries unpinned",
            )),
        ),
        (Change::Error, _) => (Outcome::Failed, None),
        // Before the planned change: a step planned unchanged may still fail (a file of
        // the local copy, rewritten with the rest of it).
        (_, Err(_)) if !detail => (Outcome::Failed, None),
        (_, Err(e)) => {
            let why = step.map_or(Cow::Borrowed(SYNC_WHY), |s| s.why());
            let e = match step.and_then(|s| action_path(&s.action)) {
                Some(p) if !e.to_string().contains(p) => format!("/{p}: {e}"),
                _ => e.to_string(),
            };
            (Outcome::Failed, Some(Cow::Owned(format!("{why}: {e}"))))
        }
        (Change::Unchanged, _) => (Outcome::Unchanged, None),
        (Change::Skip, _) => (Outcome::Skipped, None),
        (_, Ok(())) => (Outcome::Changed, None),
    }
}

/// Seconds between the reboot request and the reboot: the run finishes recording meanwhile.
const REBOOT_DELAY_SECS: u32 = 30;

/// `windows.reboot: when-required`: a computer name set by this run takes effect only after a
/// reboot, which is asked for once every step landed (the record is written by then). The
/// outcome is added to the step's detail.
fn reboot_when_required(plan: &Plan, report: &mut ApplyReport) {
    let wanted = plan.steps.iter().position(|s| {
        matches!(s.action, Action::SetComputerName { reboot: true, .. }) && s.change.acts()
    });
    let Some(i) = wanted else { return };
    // Every other step landed (the record included): a reboot after a failed step would come
    // back to a machine the next run must still finish, under a new name.
    let failed = (0..report.len())
        .find(|&j| j != i && report.outcome(j) == Outcome::Failed)
        .map(|j| report.id(&plan.steps, j).to_string());
    if i >= report.len() || report.outcome(i) != Outcome::Changed {
        return;
    }
    let step_id = plan.steps[i].id.as_str();
    let detail = report.detail_mut(&plan.steps, i);
    if let Some(id) = failed {
        detail.push_str(&format!("; reboot not requested: step {id} failed"));
        tracing::warn!(step = %step_id, "reboot not requested: step {id} failed");
        return;
    }
    #[cfg(windows)]
    let r = crate::platform::reboot("primer: the computer name changed", REBOOT_DELAY_SECS);
    #[cfg(not(windows))]
    let r: std::io::Result<()> = Err(std::io::Error::other("not Windows"));
    match r {
        Ok(()) => {
            detail.push_str(&format!("; reboot requested in {REBOOT_DELAY_SECS} s"));
            tracing::warn!("rebooting in {REBOOT_DELAY_SECS} s: the computer name changed");
        }
        Err(e) => {
            detail.push_str(&format!("; reboot not requested: {e}"));
            tracing::error!(step = %step_id, "reboot not requested: {e}");
        }
    }
}

/// Path of the run lock, relative to the root.
pub const LOCK_PATH: &str = crate::state::state_path!("lock");

/// Most directories of primer's state tree checked (and repaired) per run.
const MAX_STATE_DIRS: usize = 20_000;

/// Longest wait for another run holding the lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The lock file's access time when the run lock's clean marker is set (see [`RunLock`]): this
/// exact instant, 1970-01-01T00:00:01.271828182Z, which no access gives and a filesystem with
/// coarser timestamps cannot keep (there the marker is never set). Any other time is not set: a
/// new lock file, a reset marker, an older primer's, one read since (`relatime` updates an
/// access time older than the modification time). The access time: `futimens` alone, a
/// metadata change with no data block to write; the lock file's bytes and modification time
/// (which tests compare across re-runs) stay as they are, and nothing else reads or writes it.
#[cfg(unix)]
fn clean_atime() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::new(1, 271_828_182)
}

/// The exclusive run lock (`flock` on [`LOCK_PATH`] inside the root), held from before the host
/// facts are read until the run's status is written: a second run waits, then plans against
/// the finished state. Released when dropped (or when the process dies).
///
/// It also carries the clean marker, which lets a re-run skip listing every directory its plan
/// touches for temporary files (`sweep_in`) and primer's whole state tree for modes (`take`).
/// Set, it says: no run since the last full sweep (which found nothing) has written anything
/// outside primer's state directory. How it stays true against a crash at any point:
/// - only a run whose plan changes nothing sets it (`finish`), after a full sweep that removed
///   nothing, with no step failed and its status written: such a run wrote nothing but its
///   status, in the state directory;
/// - a run whose plan changes something resets it (the lock file's access time set to now)
///   and makes that durable (`fsync`) before it writes anything (`sweep_in`): killed or cut by
///   a power loss at any later point, on any filesystem, it leaves the marker reset, and the
///   next run sweeps and repairs everything as before;
/// - primer's state directory, where a run's status and the writers that take no lock
///   (`primer scripts`' status, the reclaim record) stage their files, is swept by every run.
pub struct RunLock {
    /// `None`: no lock (`RunLock::none`), for a plan that changes nothing.
    lock: Option<crate::platform::FileLock>,
    root: PathBuf,
    /// The marker was set when the lock was taken.
    clean: bool,
    /// `finish` may set the marker: the state tree was checked whole, the full sweep removed
    /// nothing and the plan changes nothing (cleared by `sweep_in` otherwise).
    may_mark: std::cell::Cell<bool>,
}

impl RunLock {
    /// Takes the lock under `root`, waiting up to `wait` for another run (logged once, naming
    /// the holder's pid when the kernel tells it). Creates primer's state directory (0700) when
    /// missing and repairs its mode and owner when they differ.
    pub fn take(root: &std::path::Path, wait: std::time::Duration) -> std::io::Result<RunLock> {
        let lookups = Resolver::with_group_rule(root, crate::platform::hands_group_down);
        RunLock::take_in(&lookups, wait)
    }

    /// [`RunLock::take`] through the run's resolver (`lookups`, the platform's group rule):
    /// what it looks up and makes (the state directory) the run's facts, sweep and writer
    /// know without a lookup, and a state directory it made this run is neither listed for
    /// repair nor swept.
    pub fn take_in(lookups: &Resolver, wait: std::time::Duration) -> std::io::Result<RunLock> {
        let mut w = fs::Writer::with_resolver(lookups.clone());
        ensure_state_parents(&mut w, LOCK_PATH)?;
        let dir = w.create_dirs(STATE_DIR, crate::plan::private_dir_meta())?;
        let path = dir.join("lock");
        // In a state directory made just now (empty, private from its creation) the lock file
        // is made locked and then renamed into place (`Writer::create_locked`): no other run
        // can ever have held it, so what this run learnt before taking it is still true.
        let made = if w.made_here(&dir) {
            w.create_locked(&path, |f| crate::platform::try_lock(f).ok())
        } else {
            None
        };
        let fresh = made.is_some();
        let lock = match made {
            Some(l) => l,
            None => {
                // Another run may have held it meanwhile and changed the tree.
                lookups.forget_all();
                RunLock::wait_for(&path, wait)?
            }
        };
        // A lock file made just now carries no marker.
        let clean = !fresh && marker_set(&lock);
        // An older version's crash could leave the state directory 0755: primer's state is
        // private whatever happened before. With the marker set only the top is checked: the
        // run that set it checked the whole tree, primer makes its directories with their mode
        // from the start, and the top's 0700 alone keeps the tree private.
        // A state directory made just now needs no repair.
        let repaired = if fresh {
            Ok(Vec::new())
        } else if clean {
            fs::repair_dir(&dir, crate::plan::private_dir_meta()).map(|c| {
                if c {
                    vec![dir.clone()]
                } else {
                    Vec::new()
                }
            })
        } else {
            fs::repair_tree(&dir, crate::plan::private_dir_meta(), MAX_STATE_DIRS)
        };
        let repaired = match repaired {
            Ok(fixed) => {
                for d in fixed {
                    tracing::warn!("{}: mode and owner repaired (0700, root)", d.display());
                }
                true
            }
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        };
        Ok(RunLock {
            lock: Some(lock),
            root: lookups.root().to_path_buf(),
            clean,
            may_mark: std::cell::Cell::new(repaired && !clean),
        })
    }

    /// Opens (creating it when missing) the lock file `path` and locks it, waiting up to `wait`
    /// for another run (logged once, naming the holder's pid when the kernel tells it).
    fn wait_for(
        path: &std::path::Path,
        wait: std::time::Duration,
    ) -> std::io::Result<crate::platform::FileLock> {
        // Private from its creation (Windows: a protected DACL, not the directory's).
        let mut file = crate::platform::open_lock_file(path).map_err(|e| fs::at(path, e))?;
        let deadline = std::time::Instant::now() + wait;
        let mut told = false;
        let lock = loop {
            match crate::platform::try_lock(file) {
                Ok(l) => break l,
                Err((f, true, _)) if std::time::Instant::now() < deadline => {
                    if !told {
                        told = true;
                        let holder = crate::platform::lock_holder(&f).map_or_else(
                            || "another primer run".to_string(),
                            |p| format!("primer run pid {p}"),
                        );
                        tracing::info!(
                            "waiting up to {} s for {holder}, which holds {}",
                            wait.as_secs(),
                            path.display()
                        );
                    }
                    file = f;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err((_, _, e)) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "{}: another primer run holds the lock ({} s): {e}",
                            path.display(),
                            wait.as_secs()
                        ),
                    ))
                }
            }
        };
        if told {
            tracing::info!(
                "{}: lock taken; planning against the finished run",
                path.display()
            );
        }
        Ok(lock)
    }

    /// Releases the lock; with `ok` (no step failed, the status was written) it first sets the
    /// clean marker when the run may (see [`RunLock`]), so the next run skips the full sweep.
    pub fn finish(self, ok: bool) {
        #[cfg(unix)]
        if let (true, true, Some(lock)) = (ok, self.may_mark.get(), &self.lock) {
            let f: &std::fs::File = lock;
            let t = std::fs::FileTimes::new().set_accessed(clean_atime());
            if let Err(e) = f.set_times(t) {
                // Left reset: the next run sweeps in full, as now.
                tracing::debug!("{LOCK_PATH}: {e}");
            }
        }
        #[cfg(not(unix))]
        let _ = ok;
    }

    /// No lock, and nothing written to take it: for a run whose plan cannot change anything
    /// (a drive whose instance id cannot name primer's state). `apply_plan` refuses any step
    /// that would act under it.
    pub fn none(root: &std::path::Path) -> RunLock {
        RunLock {
            lock: None,
            root: root.to_path_buf(),
            clean: false,
            may_mark: std::cell::Cell::new(false),
        }
    }

    /// Removes the temporary files and directories an interrupted run left on the way to each
    /// of `rels` (and in primer's state directory: `status.json`, the pin). Only with the lock
    /// held: another run's temporary files are never swept. For a run that writes nothing but
    /// its status (never sets the clean marker).
    pub fn sweep<'a>(&self, rels: impl IntoIterator<Item = &'a str>) -> usize {
        self.may_mark.set(false);
        self.sweep_in(
            &Resolver::with_group_rule(&self.root, crate::platform::hands_group_down),
            rels,
            false,
        )
    }

    /// [`RunLock::sweep`] through the run's resolver (`lookups`, rooted at the lock's root):
    /// the paths the host facts looked up are not looked up again. `acts`: the plan changes
    /// something; called before it writes anything. With the clean marker set only primer's
    /// state directory is swept, and a plan that acts resets the marker durably first.
    pub fn sweep_in<'a>(
        &self,
        lookups: &Resolver,
        rels: impl IntoIterator<Item = &'a str>,
        acts: bool,
    ) -> usize {
        let Some(lock) = &self.lock else {
            return 0;
        };
        if acts {
            self.may_mark.set(false);
            if self.clean {
                reset_marker(lock);
            }
        }
        let status = crate::state::status_path();
        let pin = crate::state::pin_path();
        let w = fs::Writer::with_resolver(lookups.clone());
        let state = [status.as_str(), pin.as_str(), LOCK_PATH];
        let swept = match w.resolve(STATE_DIR) {
            Ok(top) if self.clean => w.sweep_temps_below(&top, state),
            _ => {
                let mut all: Vec<&str> = rels.into_iter().collect();
                all.extend(state);
                w.sweep_temps(all)
            }
        };
        if swept > 0 {
            // Removals are not flushed: the marker waits for a run that finds nothing.
            self.may_mark.set(false);
            tracing::info!("removed {swept} temporary file(s) left by an interrupted run");
        }
        swept
    }
}

/// Whether the clean marker of the lock file just locked is set.
#[cfg(unix)]
fn marker_set(lock: &crate::platform::FileLock) -> bool {
    let f: &std::fs::File = lock;
    f.metadata()
        .and_then(|m| m.accessed())
        .is_ok_and(|t| t == clean_atime())
}

/// Windows: no marker (every run sweeps and checks the whole state tree).
#[cfg(not(unix))]
fn marker_set(_lock: &crate::platform::FileLock) -> bool {
    false
}

/// Resets the clean marker durably, before a run that acts writes anything. A reset that fails
/// (the state's filesystem failing) is logged: the run goes on, and its writes fail there too.
#[cfg(unix)]
fn reset_marker(lock: &crate::platform::FileLock) {
    let f: &std::fs::File = lock;
    let now = std::fs::FileTimes::new().set_accessed(std::time::SystemTime::now());
    // `fsync`, not `fdatasync`: a time is not data.
    if let Err(e) = f.set_times(now).and_then(|()| f.sync_all()) {
        tracing::warn!("{LOCK_PATH}: clean marker not reset: {e}");
    }
}

#[cfg(not(unix))]
fn reset_marker(_lock: &crate::platform::FileLock) {}

/// A file of primer's private state: 0600, root, in the 0700 tree.
fn state_file_meta() -> Meta {
    Meta {
        mode: 0o600,
        ..crate::plan::private_dir_meta()
    }
}

/// Writes one file of primer's private state (0600, root) and commits it.
pub(crate) fn write_state(w: &mut fs::Writer, path: &str, content: &[u8]) -> std::io::Result<()> {
    ensure_state_parents(w, path)?;
    w.write_atomic(path, content, state_file_meta(), parents_for(path))
}

/// Stages one file of primer's private state (0600, root) for the writer's next commit.
pub(crate) fn stage_state(
    w: &mut fs::Writer,
    tag: usize,
    path: &str,
    content: &(impl crate::model::bytes::WriteOut + ?Sized),
) -> std::io::Result<()> {
    ensure_state_parents(w, path)?;
    w.stage(tag, path, content, state_file_meta(), parents_for(path))
}

/// `var/lib` is public; only primer's own tree below it is private.
fn ensure_state_parents(w: &mut fs::Writer, path: &str) -> std::io::Result<()> {
    if path.starts_with(STATE_DIR) {
        if let Some((public, _)) = STATE_DIR.rsplit_once('/') {
            w.create_dirs(public, PUBLIC_DIR)?;
        }
    }
    Ok(())
}

/// The path a step writes or removes, relative to the root.
pub fn action_path(action: &Action) -> Option<&str> {
    match action {
        Action::WriteFile { path, .. }
        | Action::AppendFile { path, .. }
        | Action::EnsureDir { path, .. }
        | Action::RemoveFile { path }
        | Action::WriteRecord { path, .. }
        | Action::WritePin { path, .. }
        | Action::Symlink { path, .. } => Some(path),
        _ => None,
    }
}

fn apply_action(
    action: &Action,
    target: &Target,
    w: &mut fs::Writer,
    tag: usize,
) -> std::io::Result<()> {
    if let Some(p) = action_path(action) {
        ensure_state_parents(w, p)?;
    }
    match action {
        Action::WriteFile {
            path,
            content,
            mode,
            uid,
            gid,
            ..
        } => {
            let meta = Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
            };
            if path.starts_with("etc/sudoers.d/") {
                // visudo checks the staged file itself: inside the root, beside its target,
                // never a copy in the host's /tmp.
                return w.stage_checked(tag, path, content, meta, parents_for(path), |tmp| {
                    script::check_sudoers(tmp, content)
                });
            }
            w.stage(tag, path, content, meta, parents_for(path))
        }
        Action::AppendFile {
            path,
            base,
            content,
            mode,
            uid,
            gid,
            ..
        } => {
            let meta = Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
            };
            // A sudoers drop-in is checked as a whole write is (its text passed so visudo's
            // echo of it stays out of the log; a drop-in is small, loaded here only).
            let sudoers = |tmp: &std::path::Path| {
                script::check_sudoers(tmp, content.try_slice().unwrap_or_default())
            };
            let check: Option<fs::StagedCheck<'_>> = if path.starts_with("etc/sudoers.d/") {
                Some(&sudoers)
            } else {
                None
            };
            w.stage_append(tag, path, base, content, meta, parents_for(path), check)
        }
        Action::EnsureDir {
            path,
            mode,
            uid,
            gid,
        } => w.ensure_dir(
            path,
            Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            parents_for(path),
        ),
        Action::RemoveFile { path } => w.remove_file(path),
        Action::SetHostname { name } => {
            if !target.live {
                return Err(std::io::Error::other("not a live system"));
            }
            crate::platform::set_hostname(name)
        }
        Action::EditAccounts { writes, intent } => {
            let intent = intent.as_ref().map(|(p, c)| (p.as_str(), c.as_slice()));
            accounts::apply_accounts_with_intent(w, writes, intent)
        }
        Action::SeedEntropy { data, .. } => {
            if !target.live {
                return Err(std::io::Error::other("not a live system"));
            }
            crate::platform::seed_entropy(data.expose())
        }
        // Planned for the running system only (or a test's scratch root, see
        // `plan::hostkeys::HostKeyPolicy::scratch_root`).
        Action::HostKeys {
            keygen,
            delete,
            types,
        } => hostkeys::apply_host_keys(target, keygen, *delete, types),
        Action::SetComputerName { dns_host, .. } => {
            if !target.live {
                return Err(std::io::Error::other("not a live system"));
            }
            system::set_computer_name(dns_host)
        }
        Action::EnsureWindowsUser {
            name,
            password,
            admin,
        } => {
            if !target.live {
                return Err(std::io::Error::other("not a live system"));
            }
            system::ensure_windows_user(name, password.as_ref(), *admin)
        }
        Action::ExtendVolume { drive } => {
            if !target.live {
                return Err(std::io::Error::other("not a live system"));
            }
            system::extend_volume(*drive)
        }
        Action::Symlink { path, target } => system::symlink(w, path, target),
        Action::MakeDirs { paths } => system::make_dirs(w, paths),
        // Written or run by apply_plan after everything else.
        Action::UpdateCaCertificates { .. }
        | Action::WriteRecord { .. }
        | Action::WritePin { .. }
        | Action::RunScript { .. }
        | Action::Nothing => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Step, Why};

    fn plan(n: usize) -> Plan {
        Plan {
            steps: (0..n)
                .map(|i| Step {
                    id: format!("rm:{i}"),
                    change: Change::Remove,
                    action: Action::RemoveFile {
                        path: format!("srv/f{i}"),
                    },
                    why: Why::Text(format!("file {i} is no longer wanted")),
                    input: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Step `i`: an empty file created at `path`, as a `write_files` entry plans it.
    fn empty_write(i: usize, path: String) -> Step {
        Step {
            id: format!("write-file:{i}:{path}"),
            change: Change::Create,
            action: Action::WriteFile {
                path,
                content: Default::default(),
                bytes: 0,
                sha256: [0; 32],
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            why: Why::Text(String::new()),
            input: None,
        }
    }

    /// The files of the directories a run creates are grouped from the plan's own paths: each
    /// path inside its directory borrowed from its step's (10,000 `write_files` entries were
    /// each copied, and lower-cased once more, at the first run's peak; issue 15), with the
    /// same decisions: a name repeated up to case, or too few files, leave a directory to the
    /// per-file way.
    #[test]
    fn new_dir_trees_borrow_the_plans_paths() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("srv")).unwrap();
        let write = empty_write;
        let mut steps: Vec<Step> = (0..20)
            .map(|i| write(i, format!("srv/new/d{}/f{i}", i % 3)))
            .collect();
        steps.extend((20..30).map(|i| write(i, format!("srv/case/F{i}"))));
        steps.push(write(30, "srv/case/f25".into()));
        steps.push(write(31, "srv/few/x".into()));
        let plan = Plan {
            steps,
            ..Default::default()
        };
        let mut w = fs::Writer::new(t.path());
        let dirs = new_dir_trees(&plan, &mut w);
        if cfg!(windows) {
            // No tree on Windows (`new_dir_trees`): every file goes the per-file way.
            assert!((0..plan.steps.len()).all(|i| dirs.get(i).is_none()));
            assert!(dirs.dirs.is_empty());
            return;
        }
        for (i, s) in plan.steps.iter().enumerate() {
            let Action::WriteFile { path, .. } = &s.action else {
                unreachable!()
            };
            match dirs.get(i) {
                Some((dir, rel_in)) => {
                    assert!(i < 20, "{path} in a tree");
                    assert_eq!(dir, "srv/new");
                    assert_eq!(rel_in, &path["srv/new/".len()..]);
                    assert_eq!(
                        rel_in.as_ptr(),
                        path["srv/new/".len()..].as_ptr(),
                        "{path}: copied"
                    );
                }
                None => assert!(i >= 20, "{path} not in a tree"),
            }
        }
        assert_eq!(dirs.dirs, ["srv/new"]);
    }

    /// A drive path that reaches its new directory through a symbolic link (`srv/l` ->
    /// `real`) is grouped under the directory the writer resolved, as before the paths were
    /// borrowed: the split is the writer's own, not a slice of the step's path; a path that
    /// names the same place through the link and directly is one tree, never two.
    #[test]
    #[cfg(unix)]
    fn new_dir_trees_group_a_linked_path_by_its_resolved_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("srv/real")).unwrap();
        std::os::unix::fs::symlink("real", t.path().join("srv/l")).unwrap();
        let write = empty_write;
        let mut steps: Vec<Step> = (0..10)
            .map(|i| write(i, format!("srv/l/new/f{i}")))
            .collect();
        steps.extend((10..20).map(|i| write(i, format!("srv/real/new/g{i}"))));
        let plan = Plan {
            steps,
            ..Default::default()
        };
        let mut w = fs::Writer::new(t.path());
        let dirs = new_dir_trees(&plan, &mut w);
        assert_eq!(dirs.dirs, ["srv/real/new"]);
        for (i, s) in plan.steps.iter().enumerate() {
            let Action::WriteFile { path, .. } = &s.action else {
                unreachable!()
            };
            let name = path.rsplit('/').next().unwrap();
            assert_eq!(dirs.get(i), Some(("srv/real/new", name)), "{path}");
        }
    }

    /// A run's report holds no text of its own for steps that went as planned (20,000 steps:
    /// none), reads each id and why from the plan, and owns only the errors, the pin left out
    /// and a result past the plan's steps.
    #[test]
    fn report_reads_its_text_from_the_plan() {
        let n = 20_000;
        let p = plan(n);
        let mut results: Vec<std::io::Result<()>> = (0..n).map(|_| Ok(())).collect();
        let report = build_report(&p, &results, None);
        assert_eq!(report.len(), n);
        assert_eq!(
            report.own.len(),
            0,
            "text copied for steps that went as planned"
        );
        assert_eq!(report.count(Outcome::Changed), n);
        let (id, outcome, detail) = report.step(&p.steps, 7);
        assert_eq!(
            (id, outcome, &*detail),
            ("rm:7", Outcome::Changed, "file 7 is no longer wanted")
        );

        results[3] = Err(std::io::Error::other("disk on fire"));
        results.push(Err(std::io::Error::other("sync failed")));
        let report = build_report(&p, &results, Some(5));
        assert_eq!(report.own.len(), 3);
        let (id, outcome, detail) = report.step(&p.steps, 3);
        assert_eq!((id, outcome), ("rm:3", Outcome::Failed));
        assert_eq!(detail, "file 3 is no longer wanted: /srv/f3: disk on fire");
        assert_eq!(report.step(&p.steps, 5).1, Outcome::Skipped);
        assert!(report.step(&p.steps, 5).2.starts_with("not pinned"));
        let (id, outcome, detail) = report.step(&p.steps, n);
        assert_eq!((id, outcome), ("sync", Outcome::Failed));
        assert_eq!(detail, "making the changes durable: sync failed");
        // As the view of the plan and results in place (the status staged in the flush) reads it.
        let view = ReportView {
            plan: &p,
            results: &results,
            not_pinned: Some(5),
        };
        for i in [0, 3, 5, n] {
            assert_eq!(view.step_at(i), report.of(&p.steps).step_at(i), "{i}");
        }
        // Serialised as the owned steps were: the list, and the report an object holding it.
        let owned = serde_json::to_string(&report.to_vec(&p.steps)).unwrap();
        assert_eq!(
            serde_json::to_string(&report.of(&p.steps).list()).unwrap(),
            owned
        );
        assert_eq!(
            serde_json::to_string(&report.of(&p.steps)).unwrap(),
            format!("{{\"steps\":{owned}}}")
        );
    }
}
