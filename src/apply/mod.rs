//! Apply: carries out a `Plan` on a `Target`. The only writer in primer: every file goes through
//! `fs::write_atomic` inside the target root. Never decides what to do (that is `plan`), never
//! logs file contents or secrets, and keeps going after a failed step so one failure does not
//! leave the rest undone.

pub mod fs;

use std::path::PathBuf;

use serde::Serialize;

use crate::plan::{Action, Change, Plan, PUBLIC_DIR};
use crate::state::STATE_DIR;
use fs::Meta;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub id: String,
    pub outcome: Outcome,
    /// The plan's why, or the error.
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub steps: Vec<StepReport>,
}

impl ApplyReport {
    pub fn count(&self, o: Outcome) -> usize {
        self.steps.iter().filter(|s| s.outcome == o).count()
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

/// Applies every step of `plan` in order.
pub fn apply_plan(plan: &Plan, target: &Target) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut failed_ids: Vec<String> = Vec::new();
    for step in &plan.steps {
        let (outcome, detail) = match step.change {
            Change::Unchanged => (Outcome::Unchanged, step.why.clone()),
            Change::Skip => (Outcome::Skipped, step.why.clone()),
            Change::Error => (Outcome::Failed, step.why.clone()),
            Change::Create | Change::Update | Change::Remove => {
                match apply_action(&step.action, target, &failed_ids).map_err(
                    |e| match action_path(&step.action) {
                        Some(p) => std::io::Error::new(e.kind(), format!("/{p}: {e}")),
                        None => e,
                    },
                ) {
                    Ok(()) => (Outcome::Changed, step.why.clone()),
                    Err(e) => (Outcome::Failed, format!("{}: {e}", step.why)),
                }
            }
        };
        match outcome {
            Outcome::Failed => {
                tracing::error!(step = %step.id, "{detail}");
                failed_ids.push(step.id.clone());
            }
            // One line per copied file would drown the boot log: those are debug.
            Outcome::Changed if !step.id.starts_with("copy") => {
                tracing::info!(step = %step.id, "{detail}")
            }
            _ => tracing::debug!(step = %step.id, "{detail}"),
        }
        report.steps.push(StepReport {
            id: step.id.clone(),
            outcome,
            detail,
        });
    }
    report
}

fn action_path(action: &Action) -> Option<&str> {
    match action {
        Action::WriteFile { path, .. }
        | Action::EnsureDir { path, .. }
        | Action::RemoveFile { path }
        | Action::WriteRecord { path, .. } => Some(path),
        _ => None,
    }
}

fn apply_action(action: &Action, target: &Target, failed: &[String]) -> std::io::Result<()> {
    let root = &target.root;
    let touches_state = match action {
        Action::WriteFile { path, .. }
        | Action::EnsureDir { path, .. }
        | Action::WriteRecord { path, .. } => path.starts_with(STATE_DIR),
        _ => false,
    };
    if touches_state {
        // `var/lib` is public; only primer's own tree below it is private.
        if let Some((public, _)) = STATE_DIR.rsplit_once('/') {
            fs::create_dirs(root, public, PUBLIC_DIR)?;
        }
    }
    match action {
        Action::WriteFile {
            path,
            content,
            mode,
            uid,
            gid,
            ..
        } => fs::write_atomic(
            root,
            path,
            content,
            Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            parents_for(path),
        ),
        Action::EnsureDir {
            path,
            mode,
            uid,
            gid,
        } => fs::ensure_dir(
            root,
            path,
            Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            parents_for(path),
        ),
        Action::RemoveFile { path } => fs::remove_file(root, path),
        Action::SetHostname { name } => {
            if !target.live {
                return Err(std::io::Error::other("not a live system"));
            }
            nix::unistd::sethostname(name).map_err(std::io::Error::from)
        }
        Action::WriteRecord { path, record } => {
            // A failed step did not apply its input: leave it out so the next run retries it.
            let mut record = record.clone();
            record.steps.retain(|id, _| !failed.contains(id));
            let private = crate::plan::private_dir_meta();
            fs::write_atomic(
                root,
                path,
                &record.to_json(),
                Meta {
                    mode: 0o600,
                    ..private
                },
                parents_for(path),
            )
        }
        Action::Nothing => Ok(()),
    }
}
