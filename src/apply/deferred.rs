//! `primer scripts`: runs the stored per-instance scripts of an instance that have not run yet,
//! in their stored order (`10-vendor-…`, `20-user-…`, `30-runcmd`), each after writing its
//! marker (so it never runs twice, even across a reboot it causes). Called by
//! primer-scripts.service once the network is online. Runs nothing for a root that is not the
//! running system, never runs `bootcmd` (that is `primer run`'s, every boot), never logs a
//! script's content.

use super::{script, write_state, ApplyReport, Outcome, StepReport, Target};
use crate::paths::{is_temp_name, resolve_in_root};
use crate::plan::userdata::{ran_dir, scripts_dir, BOOTCMD};

/// Runs one script after writing its `marker` durably (when given): a script that reboots the
/// machine, or is killed with its unit, must not run again on the next boot. Returns whether
/// it was started and its outcome (an unwritable marker: not started).
pub(crate) fn run_marked(
    w: &mut super::fs::Writer,
    target: &Target,
    step: &str,
    path: &str,
    marker: Option<&str>,
    timeout_secs: u64,
) -> (bool, std::io::Result<()>) {
    if let Some(m) = marker {
        if let Err(e) = write_state(w, m, b"started\n") {
            return (
                false,
                Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot write /{m}: {e}; not run"),
                )),
            );
        }
    }
    let r = script::run_script(target, step, path, timeout_secs);
    // The script may have changed the tree anywhere (a root script can replace /var/lib): the
    // next marker is written from fresh lookups.
    w.forget_all();
    r
}

/// Most scripts taken from one instance's directory.
const MAX_SCRIPTS: usize = 1000;

/// Runs the pending scripts of `instance_id` under `target` (which must be live).
pub fn run_pending_scripts(target: &Target, instance_id: &str, timeout_secs: u64) -> ApplyReport {
    let mut report = ApplyReport::default();
    let dir = scripts_dir(instance_id);
    let names: Vec<String> = match resolve_in_root(&target.root, &dir).and_then(std::fs::read_dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != BOOTCMD && !n.starts_with('.') && !is_temp_name(n))
                .take(MAX_SCRIPTS)
                .collect();
            crate::sort::sort(&mut v);
            v
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            report.push(StepReport {
                id: "scripts".into(),
                outcome: Outcome::Failed,
                detail: format!("/{dir}: {e}"),
            });
            return report;
        }
    };
    let mut w = super::fs::Writer::new(&target.root);
    for name in names {
        let id = format!("script:{name}");
        let marker = format!("{}/{name}", ran_dir(instance_id));
        let ran = resolve_in_root(&target.root, &marker).is_ok_and(|p| p.exists());
        if ran {
            report.push(StepReport {
                id,
                outcome: Outcome::Unchanged,
                detail: format!("script {name}: already ran for this instance"),
            });
            continue;
        }
        if !target.live {
            report.push(StepReport {
                id,
                outcome: Outcome::Skipped,
                detail: format!("script {name}: not the running system; not run"),
            });
            continue;
        }
        let (_, r) = run_marked(
            &mut w,
            target,
            &id,
            &format!("{dir}/{name}"),
            Some(&marker),
            timeout_secs,
        );
        let (outcome, detail) = match r {
            Ok(()) => (
                Outcome::Changed,
                format!("script {name}: ran for this instance"),
            ),
            Err(e) => (Outcome::Failed, format!("script {name}: {e}")),
        };
        match outcome {
            Outcome::Failed => tracing::error!(step = %id, "{detail}"),
            _ => tracing::info!(step = %id, "{detail}"),
        }
        report.push(StepReport {
            id,
            outcome,
            detail,
        });
    }
    report
}
