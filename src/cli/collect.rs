//! `primer collect-logs`: one tar.gz for a bug report — versions, the last run's status and
//! record, this boot's journal of primer's units, the instance data as `show` prints it
//! (secrets redacted), primer's configuration files and the probe's findings. Members in a fixed
//! order, mode 0600, no clock inside. Never includes the drive's files themselves (a password
//! may be in them), and writes nothing but the archive.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::agent;
use crate::state;
use crate::{Error, Exit};

/// The units whose journal is collected.
const UNITS: [&str; 3] = [
    "primer.service",
    "primer-scripts.service",
    "primer-reclaim.service",
];
/// The directory every member is under.
const TOP: &str = "primer-logs";

pub const COLLECT_HELP: &str = "\
Members (in this order, under primer-logs/):
  versions.txt        primer's version, the kernel's
  notes.txt           what could not be collected, and why
  status.json         the last run (/var/lib/primer/status.json)
  applied.json        the record of the last run's instance (steps, keyed digests)
  instance.json       the instance as recorded (secrets redacted)
  show.json           `primer show --json` of the private copy (secrets redacted)
  journal.txt         this boot's journal of primer, primer-scripts and primer-reclaim
  config/...          primer.yaml and its drop-ins, as they are
  probe.txt           `primer probe`: devices, candidates, the trust policy's choice

The drive's files are not included. Output of user-data scripts is in the journal: look
before you share the archive.

Examples:
  sudo primer collect-logs -o /tmp/primer-logs.tar.gz
  primer collect-logs -o logs.tar.gz --root /mnt/image --force";

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The archive to write (gzip-compressed tar, mode 0600).
    #[arg(short, long, value_name = "FILE.tar.gz")]
    pub output: PathBuf,
    /// Replace FILE when it exists.
    #[arg(long)]
    pub force: bool,
    /// The system whose records and configuration to collect (the journal only for `/`).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Configuration file [default: /etc/primer/primer.yaml under --root]; its drop-ins too.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON: `output`, `members`, `notes`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub roots: super::RootsArgs,
}

struct Members {
    list: Vec<(String, Vec<u8>)>,
    notes: Vec<String>,
}

impl Members {
    fn add(&mut self, name: &str, data: Vec<u8>) {
        self.list.push((format!("{TOP}/{name}"), data));
    }
    fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }
}

pub fn run(a: &CollectArgs, out: &mut impl Write) -> Result<Exit, Error> {
    // Refused before anything is gathered (checked again, atomically, when it is written).
    if !a.force && std::fs::symlink_metadata(&a.output).is_ok() {
        return Err(Error::Unsupported(format!(
            "{}: exists; give --force to replace it",
            a.output.display()
        )));
    }
    let mut m = Members {
        list: Vec::new(),
        notes: Vec::new(),
    };
    m.add(
        "versions.txt",
        format!(
            "primer {}\nkernel {}\n",
            env!("CARGO_PKG_VERSION"),
            agent::kernel_version().unwrap_or_else(|| "unknown (no /proc)".into())
        )
        .into_bytes(),
    );
    // Gathered first, written after: notes.txt comes second but is known last.
    let mut rest = Members {
        list: Vec::new(),
        notes: Vec::new(),
    };
    collect_state(a, &mut rest);
    match agent::journal(&a.root, &UNITS) {
        Ok(j) => rest.add("journal.txt", j),
        Err(e) => rest.note(format!("journal.txt: not collected: {e}")),
    }
    collect_config(a, &mut rest);
    let probe = agent::Locate {
        config: a.config.clone(),
        sys_root: a.roots.sys_root.clone(),
        dev_root: a.roots.dev_root.clone(),
        ..Default::default()
    };
    match agent::probe(&probe) {
        Ok(p) => {
            let mut v = Vec::new();
            super::print::probe(&mut v, &p, false)?;
            rest.add("probe.txt", v);
        }
        Err(e) => rest.note(format!("probe.txt: not collected: {e}")),
    }
    let mut notes = rest.notes.join("\n");
    if !notes.is_empty() {
        notes.push('\n');
    }
    m.add("notes.txt", notes.into_bytes());
    m.list.extend(rest.list);

    let archive = pack(&m.list)?;
    agent::write_private(&a.output, &archive, a.force)?;
    let names: Vec<&str> = m.list.iter().map(|(n, _)| n.as_str()).collect();
    if a.json {
        super::print_json(
            out,
            &serde_json::json!({"output": a.output.display().to_string(), "members": names,
                "notes": rest.notes}),
        )?;
    } else {
        writeln!(
            out,
            "wrote {} ({} members, {} bytes)",
            a.output.display(),
            names.len(),
            archive.len()
        )?;
        for n in &rest.notes {
            writeln!(out, "  note: {n}")?;
        }
    }
    Ok(Exit::Changed)
}

/// status.json, the record and instance.json of the current instance, and `show` of its copy.
fn collect_state(a: &CollectArgs, m: &mut Members) {
    let status_rel = state::status_path();
    match agent::read_state_raw(&a.root, &status_rel) {
        Ok(Some(b)) => m.add("status.json", b),
        Ok(None) => m.note(format!(
            "status.json: /{status_rel} does not exist (no run yet)"
        )),
        Err(e) => m.note(format!("status.json: {e}")),
    }
    let id = match agent::last_run(&a.root) {
        Ok(Some(l)) => l.id,
        Ok(None) => None,
        Err(e) => {
            m.note(format!("status: {e}"));
            None
        }
    };
    let Some(id) = id else {
        m.note("applied.json, instance.json, show.json: no instance recorded");
        return;
    };
    for (name, rel) in [
        ("applied.json", state::record_path(&id)),
        ("instance.json", state::instance_json_path(&id)),
    ] {
        match agent::read_state_raw(&a.root, &rel) {
            Ok(Some(b)) => m.add(name, b),
            Ok(None) => m.note(format!("{name}: /{rel} does not exist")),
            Err(e) => m.note(format!("{name}: {e}")),
        }
    }
    // `show` of the private copy: the same redaction `primer show` applies.
    // Resolved inside the root: an image's symlink cannot point `show` at a host directory.
    let copy = match crate::paths::resolve_in_root(&a.root, &state::drive_copy_dir(&id)) {
        Ok(p) => p,
        Err(e) => {
            m.note(format!("show.json: the private copy: {e}"));
            return;
        }
    };
    let locate = agent::Locate {
        source: Some(copy),
        config: a.config.clone(),
        ..Default::default()
    };
    match agent::show(&locate, true) {
        Ok(Some(shown)) => {
            let mut v = Vec::new();
            match super::print::show_json(&mut v, &shown) {
                Ok(()) => m.add("show.json", v),
                Err(e) => m.note(format!("show.json: {e}")),
            }
        }
        Ok(None) => m.note("show.json: no copy of the drive"),
        Err(e) => m.note(format!("show.json: the private copy: {e}")),
    }
}

/// primer.yaml and its drop-ins, by the names `config show` reports.
fn collect_config(a: &CollectArgs, m: &mut Members) {
    let files = match agent::config(a.config.as_deref(), &a.root) {
        Ok(l) => l.files,
        Err(e) => {
            // An invalid file is worth seeing: the main file as it is.
            m.note(format!("config: {e}"));
            let main = a
                .config
                .clone()
                .unwrap_or_else(|| crate::config::config_path(&a.root));
            vec![main.display().to_string()]
        }
    };
    if files.is_empty() {
        m.note("config: no configuration file (every value is the default)");
    }
    for f in files {
        let p = Path::new(&f);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let member = match p.parent().and_then(Path::file_name) {
            Some(d) if d.to_string_lossy().ends_with(".yaml.d") => {
                format!("config/{}/{name}", d.to_string_lossy())
            }
            _ => format!("config/{name}"),
        };
        match agent::read_file_raw(&a.root, p) {
            Ok(b) => m.add(&member, b),
            Err(e) => m.note(format!("{member}: {e}")),
        }
    }
}

/// The members as a gzip-compressed tar: regular files, mode 0600, owner 0, time 0.
fn pack(members: &[(String, Vec<u8>)]) -> Result<Vec<u8>, Error> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data.as_slice())?;
    }
    Ok(tar.into_inner()?.finish()?)
}
