//! `primer check`: validates a user-data file, primer's configuration (with its drop-ins) or a
//! whole drive with primer's own parsers, and prints every error and warning with
//! file:line:column (what `cloud-init schema` is for). Reads only what it is given; applies,
//! writes and runs nothing, and never prints a value from the file (secrets stay out).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use serde::Serialize;

use crate::agent;
use crate::model::grammar::log_safe;
use crate::model::Warning;
use crate::source::userdata::{parse_user_data, UserDataLimits, USER_DATA_FILE};
use crate::source::value::{MAX_DEPTH, MAX_USER_DATA_BYTES};
use crate::{Error, Exit};

mod positions;

/// Most problems printed.
const MAX_SHOWN: usize = 1000;
use positions::{Pos, Positions};

pub const CHECK_HELP: &str = "\
Severity:
  error    primer cannot use the file, or ignores part of what it asks for: YAML syntax (a tab
           in the indentation, an unclosed bracket), too large or too deeply nested, a value of
           the wrong type, an invalid `users` entry or user name, an unknown key in primer's
           own configuration (which primer refuses to load)
  warning  applied with a caveat, or a cloud-config key primer does not know (ignored, as
           cloud-init ignores the keys of modules it lacks), a repeated key

Exit codes (check):
  0   clean: no error, no warning
  1   at least one error (or the file or drive cannot be read)
  3   warnings only: the file is usable, some of it is ignored

Examples:
  primer check --user-data user-data.yaml
  primer check --config /etc/primer/primer.yaml      the file and its primer.yaml.d/ drop-ins
  primer check --source config.iso --root /mnt/image  parse and plan a drive, apply nothing
  primer check --user-data u.yaml --json | jq '.problems[] | select(.severity == \"error\")'";

/// Checks a file or a drive; exit 0 when clean, 1 on errors, 3 on warnings only.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["user_data", "config", "source"])))]
pub struct CheckArgs {
    /// A user-data file (`#cloud-config` YAML, a script, MIME multipart, gzip), read as primer
    /// reads a drive's user data.
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
    /// primer's configuration file; its drop-ins (FILE.d/*.yaml) are checked too, each on its
    /// own, then the merged settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A whole drive (block device, image file or directory): read, parse and plan against
    /// `--root`; nothing is applied.
    #[arg(long, value_name = "PATH")]
    pub source: Option<PathBuf>,
    /// With --source: the system the plan is made for (its facts and configuration).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Print JSON: `problems` (severity, file, line, column, field, message), `errors`,
    /// `warnings`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// The key (dotted path, `users[0].name`), empty for the whole file.
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(severity: Severity, file: &str, at: Option<Pos>, field: &str, message: &str) -> Self {
        // Drive and file strings leave here: one line each, bounded.
        Problem {
            severity,
            file: log_safe(file, 512).into_owned(),
            line: at.map(|p| p.line),
            column: at.map(|p| p.column),
            field: log_safe(field, 256).into_owned(),
            message: log_safe(message, 1024).into_owned(),
        }
    }
}

pub fn run(a: &CheckArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let (what, problems) = if let Some(f) = &a.user_data {
        (f.display().to_string(), check_user_data(f))
    } else if let Some(f) = &a.config {
        (f.display().to_string(), check_config(f)?)
    } else if let Some(s) = &a.source {
        (s.display().to_string(), check_source(s, &a.root))
    } else {
        return Err(Error::Unsupported(
            "check: give --user-data, --config or --source".into(),
        ));
    };
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = problems.len() - errors;
    // A file with a million unknown keys gets a bounded report: the first problems, then a
    // count (the totals above stay exact).
    let mut problems = problems;
    if problems.len() > MAX_SHOWN {
        let more = problems.len() - MAX_SHOWN;
        problems.truncate(MAX_SHOWN);
        problems.push(Problem::new(
            Severity::Warning,
            &what,
            None,
            "",
            &format!("{more} more problem(s) not shown"),
        ));
    }
    if a.json {
        super::print_json(
            out,
            &serde_json::json!({
                "checked": log_safe(&what, 512),
                "errors": errors,
                "warnings": warnings,
                "problems": problems,
            }),
        )?;
    } else {
        for p in &problems {
            let at = match (p.line, p.column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}", p.file),
                _ => p.file.clone(),
            };
            let sev = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            if p.field.is_empty() {
                writeln!(out, "{at}: {sev}: {}", p.message)?;
            } else {
                writeln!(out, "{at}: {sev}: {}: {}", p.field, p.message)?;
            }
        }
        writeln!(
            out,
            "{}: {errors} error(s), {warnings} warning(s)",
            log_safe(&what, 512)
        )?;
    }
    Ok(if errors > 0 {
        Exit::Error
    } else if warnings > 0 {
        Exit::Partial
    } else {
        Exit::Changed
    })
}

/// Reads at most `max` bytes (one more tells "too large").
fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut v = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| format!("cannot read: {e}"))?;
    if v.len() > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(v)
}

/// The positions of a cloud-config document's keys; empty for anything else (a script, MIME,
/// gzip), whose problems are then located at the start of the file.
fn cloud_config_positions(bytes: &[u8]) -> Positions {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(t) if t.starts_with("#cloud-config") => positions::walk(t, MAX_DEPTH),
        _ => Positions::default(),
    }
}

/// How serious one of the user-data parser's warnings is (see CHECK_HELP).
fn severity(w: &Warning) -> Severity {
    let m = &w.message;
    if m.contains("unsupported cloud-config key") || m.starts_with("repeated key") {
        Severity::Warning
    } else if m.contains("ignored")
        || m.contains("skipped")
        || m.contains("invalid YAML")
        || m.contains("not UTF-8")
        || m.contains("too large")
    {
        Severity::Error
    } else {
        Severity::Warning
    }
}

/// The user-data parser's warnings as problems in `file`, each at its key's position.
fn user_data_problems(file: &str, warnings: &[Warning], pos: &Positions) -> Vec<Problem> {
    let mut out = Vec::new();
    for w in warnings {
        let sev = severity(w);
        // One warning lists every unknown key (or repeated key): one problem per key, at it.
        let list = w.message.contains("unsupported cloud-config key")
            || w.message.starts_with("repeated key");
        if list && !w.field.is_empty() {
            let what = if w.message.starts_with("repeated key") {
                "repeated key: the last value is used, as cloud-init does"
            } else {
                "unknown key: primer does not support it; ignored"
            };
            for key in w.field.split(", ") {
                // Past the walker's bound a key has no known position: printed without one.
                let at = match pos.find(key) {
                    None if pos.at.is_empty() => Some(Pos::START),
                    at => at,
                };
                out.push(Problem::new(sev, file, at, key, what));
            }
            continue;
        }
        let at = if w.message.contains("invalid YAML") {
            pos.error.as_ref().map(|e| e.0)
        } else {
            pos.find(&w.field)
        };
        out.push(Problem::new(
            sev,
            file,
            Some(at.unwrap_or(Pos::START)),
            &w.field,
            &w.message,
        ));
    }
    out
}

fn check_user_data(path: &Path) -> Vec<Problem> {
    let file = path.display().to_string();
    let bytes = match read_bounded(path, MAX_USER_DATA_BYTES) {
        Ok(b) => b,
        Err(e) => return vec![Problem::new(Severity::Error, &file, None, "", &e)],
    };
    let pos = cloud_config_positions(&bytes);
    let (_, report) = parse_user_data(Some(&bytes), &[], &UserDataLimits::default());
    let mut problems = user_data_problems(&file, &report.warnings, &pos);
    // The reader stops at a syntax error it located; say where even if the parser's own
    // message did not (a limit primer's reader has and the walker does not, or the reverse).
    if let Some((p, m)) = &pos.error {
        if !problems.iter().any(|x| x.severity == Severity::Error) {
            problems.push(Problem::new(Severity::Error, &file, Some(*p), "", m));
        }
    }
    crate::sort::sort_by_key(&mut problems, |p| (p.line.is_none(), p.line, p.column));
    problems
}

fn check_config(path: &Path) -> Result<Vec<Problem>, Error> {
    // `--config FILE` names the file itself; the root is not used for it.
    let (_, issues) = crate::config::check(Some(path), Path::new("/"))?;
    let mut out = Vec::new();
    for i in issues {
        let at = match (i.position, &i.key) {
            (Some((l, c)), _) => Some(Pos { line: l, column: c }),
            (None, Some(k)) => {
                let text = read_bounded(Path::new(&i.file), 64 * 1024).unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                positions::walk(&text, MAX_DEPTH).find(k)
            }
            (None, None) => None,
        };
        // The position is printed in front: drop the reader's `at line N, column M` and the
        // key the checks repeat.
        let mut m = i.message.as_str();
        if let Some(cut) = m.rfind(" at line ") {
            m = &m[..cut];
        }
        let key = i.key.as_deref().unwrap_or("");
        if !key.is_empty() {
            m = m.strip_prefix(&format!("{key}: ")).unwrap_or(m);
        }
        out.push(Problem::new(
            Severity::Error,
            &i.file,
            at.or(Some(Pos::START)),
            key,
            m,
        ));
    }
    Ok(out)
}

fn check_source(source: &Path, root: &Path) -> Vec<Problem> {
    let req = agent::PlanRequest {
        locate: agent::Locate {
            source: Some(source.to_path_buf()),
            ..Default::default()
        },
        root: root.to_path_buf(),
        user: None,
        network_backend: None,
        defer_scripts: false,
    };
    let file = source.display().to_string();
    let (loaded, plan) = match agent::plan(&req) {
        Ok(Some(lp)) => lp,
        Ok(None) => {
            return vec![Problem::new(
                Severity::Error,
                &file,
                None,
                "",
                "no config drive found",
            )]
        }
        Err(e) => {
            return vec![Problem::new(
                Severity::Error,
                &file,
                None,
                "",
                &e.to_string(),
            )]
        }
    };
    let pos = loaded
        .instance
        .user_data
        .as_ref()
        .map(|b| cloud_config_positions(&b.0))
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for w in loaded.report.warnings.iter().chain(&plan.warnings.warnings) {
        if !seen.insert((w.file.clone(), w.field.clone(), w.message.clone())) {
            continue;
        }
        if w.file == USER_DATA_FILE {
            problems.extend(user_data_problems(
                USER_DATA_FILE,
                std::slice::from_ref(w),
                &pos,
            ));
        } else {
            // Drive metadata (JSON, XML, key=value files): named by file and field.
            problems.push(Problem::new(
                Severity::Warning,
                &w.file,
                None,
                &w.field,
                &w.message,
            ));
        }
    }
    problems
}
