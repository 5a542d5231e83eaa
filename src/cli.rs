//! CLI: the clap definitions of every command and the glue that runs the pipeline for each
//! (probe -> media -> source -> plan -> apply) and prints the result as text or JSON. Holds no
//! format or planning logic of its own; writes only through `apply`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::apply::{self, ApplyReport, Outcome, Target};
use crate::config::Config;
use crate::media::{self, DriveFiles, Limits};
use crate::model::{Instance, Report};
use crate::plan::{self, Plan};
use crate::probe::linux::{self, ProbeRoots};
use crate::probe::trust::{self, Pin, PinDecision, Refusal};
use crate::probe::{BlockDevice, Candidate};
use crate::source;
use crate::state::{self, Record};
use crate::status::{self, Status};
use crate::{Error, Exit};

const AFTER_HELP: &str = "\
Exit codes:
  0   success: changes applied (or printed, for probe/show/plan/--dry-run)
  1   error: the drive could not be read or parsed, or another fatal error
  2   usage error
  3   partial: some steps failed (the others were applied)
  10  nothing to do: everything was already applied (clean: nothing to remove)
  11  no config drive found (a normal boot without a drive); status: no run recorded yet
  12  refused by the trust policy (duplicate drives, DMI binding, pinning)
  13  reclaim: nothing to reclaim (done, no config partition, or disabled)
  14  reclaim: refused (a precondition failed); nothing written";

/// primer: first-boot agent for cloud config drives.
///
/// Finds the configuration volume the cloud attached (an OpenStack config drive: ISO9660
/// labelled config-2), reads it without mounting, and applies host name, SSH keys and a
/// private copy of the data to the target root. Re-running changes nothing.
#[derive(Debug, Parser)]
#[command(name = "primer", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level on stderr: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: LogLevel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List block devices and the ranked config-drive candidates, with why each matched.
    ///
    /// Reads sysfs, two small blocks per device and the partition tables of whole disks;
    /// mounts and writes nothing. Shows which candidate the trust policy selects or refuses.
    Probe(ProbeArgs),
    /// Parse a drive and print the instance it describes (secrets redacted).
    Show(SourceArgs),
    /// Print what `run` would do, step by step, with a why per step. Changes nothing.
    Plan(PlanArgs),
    /// Find the drive, parse it, plan, and apply: host name, SSH keys, network, local copy.
    ///
    /// What the systemd unit calls at boot. A second run with the same drive changes nothing
    /// (exit 10); no drive at all is a normal outcome (exit 11).
    Run(RunArgs),
    /// Network configuration tools.
    #[command(subcommand)]
    Net(NetCommand),
    /// Show what the last `run` did: when, the outcome, the drive, the instance, every step.
    ///
    /// Reads /var/lib/primer/status.json (written by every `run` that applied a drive or found
    /// none) and the record of its instance, under `--root`. Changes nothing. Exit 11 when no
    /// run has been recorded yet.
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Print one value of the current instance's data, by a dotted path into instance.json.
    ///
    /// The current instance is the one the last `run` applied (see `status`). A string prints
    /// as it is, anything else as JSON; a missing key is an error (exit 1) naming the key and
    /// the file. Secrets print as `<redacted N bytes>` unless `--sensitive`.
    #[command(after_help = QUERY_HELP)]
    Query(QueryArgs),
    /// Forget an instance's records so the next `run` applies its drive as a first boot.
    ///
    /// Removes /var/lib/primer/instance/<id>/ (applied.json, instance.json and the private copy
    /// of the drive) and status.json when it is about that instance. Never touches what a run
    /// applied: host name, SSH keys and network files stay as they are, and so does the pinning
    /// record. Prints every path it removed; exit 10 when there was nothing to remove.
    #[command(after_help = CLEAN_HELP)]
    Clean(CleanArgs),
    /// Run the current instance's user-data scripts that have not run yet (once per instance).
    ///
    /// `run --defer-scripts` (what the boot unit does) stores `#!` scripts and `runcmd` under
    /// /var/lib/primer/instance/<id>/scripts/ without running them; primer-scripts.service calls
    /// this once the network is online. Each script's marker (scripts-ran/) is written before it
    /// starts, so a script runs once per instance even if it reboots the machine. Output goes to
    /// the log line by line; a script running longer than `script_timeout_seconds` is killed.
    /// Exit 0: scripts ran and succeeded; 10: nothing to run; 3: a script failed.
    #[command(after_help = SCRIPTS_HELP)]
    Scripts(ScriptsArgs),
    /// Delete the trailing config partition and grow root into the disk (dry run unless --apply).
    ///
    /// The config partition must be the last partition, hold the drive primer applied (label
    /// config-2 and the same content hash) and follow root directly (a gap of free space is
    /// fine). One table write in crash-safe order; the kernel is told with BLKPG and the root
    /// filesystem (ext4, XFS, btrfs) grown online. Without --apply it prints what it found,
    /// every check, the table before and after, and changes nothing. Exit 13: nothing to
    /// reclaim; 14: refused, nothing written.
    #[command(after_help = RECLAIM_HELP)]
    Reclaim(ReclaimArgs),
}

const SCRIPTS_HELP: &str = "\
Examples:
  primer scripts                      run what `run --defer-scripts` stored (as the unit does)
  primer status                       the last run's steps; scripts show as `script:NAME`
  ls /var/lib/primer/instance/*/scripts-ran/   which scripts have run";

const STATUS_HELP: &str = "\
Examples:
  primer status                       last run, outcome, drive, instance, step table
  primer status --json | jq .summary  the same as JSON (the status.json fields plus `record`)
  primer status --root /mnt/image     the record inside a mounted image";

const QUERY_HELP: &str = "\
Examples:
  primer query hostname               web-1 (a string prints raw)
  primer query meta.role              a key of the user metadata
  primer query network.0.kind         array elements by index
  primer query ssh_keys               a list prints as JSON
  primer query drive.sha256           keys outside the instance: drive.*, instance.*
  sudo primer query admin_pass --sensitive
                                      the real password, parsed again from the private copy
  primer query hostname --instance i-0000002a --root /mnt/image";

const CLEAN_HELP: &str = "\
Examples:
  primer clean                        forget the instance of the last run
  primer clean --instance i-0000002a  forget that instance
  primer clean --all                  forget every instance and the status
  primer clean --root /mnt/image      inside a mounted image (before sealing it)";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The system whose record to read: `/` for the running machine, or a mounted image.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScriptsArgs {
    /// The running system (`/`); any other root is refused: scripts run only on a live system.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The instance whose scripts to run [default: the one the last `run` applied].
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Configuration file [default: /etc/primer/primer.yaml under --root] (script time-out).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Dotted path into the instance data: `hostname`, `meta.role`, `network.0.kind`.
    #[arg(value_name = "KEY")]
    pub key: String,
    /// Print secrets (admin_pass; random_seed as base64) in the clear, parsed again from the
    /// private copy of the drive. Root only.
    #[arg(long)]
    pub sensitive: bool,
    /// Query this instance instead of the one the last run applied.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// The system whose record to read.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Forget this instance instead of the one the last run applied.
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub instance: Option<String>,
    /// Forget every recorded instance and the status.
    #[arg(long)]
    pub all: bool,
    /// The system whose records to remove.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Print the network files one backend would get, each after a `# file: PATH` line.
    ///
    /// The input is the drive's network data (`--source`, or the probed drive), or one network
    /// file (`--input`: network_data.json, or network config v1/v2 YAML). Interfaces are named
    /// against `--root`'s /sys/class/net. Changes nothing.
    Render(NetRenderArgs),
}

#[derive(Debug, Args)]
pub struct NetRenderArgs {
    /// Backend to render for.
    #[arg(long, value_enum)]
    pub backend: crate::net::Backend,
    /// A network file instead of a drive: OpenStack network_data.json (JSON with links or
    /// networks) or network config version 1 or 2.
    #[arg(long, value_name = "FILE", conflicts_with = "source")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// The system whose interfaces (sys/class/net) name the links.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub roots: RootsArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Where the operator's settings come from, and how long to wait for a late drive.
#[derive(Debug, Args, Clone)]
pub struct PolicyArgs {
    /// Configuration file [default: <root>/etc/primer/primer.yaml when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Wait up to SECONDS for a config drive to appear when none is found at once
    /// [default: probe.wait_seconds from the configuration (3); `probe`: 0].
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<f64>,
}

/// Where the probe looks (redirect for tests).
#[derive(Debug, Args, Clone)]
pub struct RootsArgs {
    /// sysfs mount to enumerate block devices from.
    #[arg(
        long,
        default_value = "/sys",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub sys_root: PathBuf,
    /// Directory holding the device nodes.
    #[arg(
        long,
        default_value = "/dev",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub dev_root: PathBuf,
}

impl RootsArgs {
    fn roots(&self, root: &Path) -> ProbeRoots {
        ProbeRoots {
            sys: self.sys_root.clone(),
            dev: self.dev_root.clone(),
            root: root.to_path_buf(),
        }
    }
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The drive: a block device (/dev/sr0), an image file (config.iso) or a directory holding
    /// a drive tree. Without it, primer probes block devices and uses the best candidate.
    #[arg(long, value_name = "PATH")]
    pub source: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Read the drive by mounting it (read-only, nosuid, nodev, noexec, on a private temporary
    /// mount point) instead of with primer's own readers. For comparison; needs the kernel's
    /// filesystem driver and a device node.
    #[arg(long)]
    pub mount: bool,
    #[command(flatten)]
    pub roots: RootsArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The system to configure: `/` for the running machine, or a mounted image.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Account that receives the drive's SSH keys [default: ssh_user from the configuration,
    /// root].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Network backend to render for, instead of the configured or detected one.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub network_backend: Option<crate::net::Backend>,
    /// Store per-instance user-data scripts and `runcmd` but leave running them to
    /// `primer scripts` (the boot unit does this: scripts then run after the network is up).
    #[arg(long)]
    pub defer_scripts: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Print the plan and stop: change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs one parsed command; returns the exit status.
pub fn execute(cli: &Cli) -> Result<Exit, Error> {
    let mut out = std::io::stdout().lock();
    let r = match &cli.command {
        Command::Probe(a) => cmd_probe(a, &mut out),
        Command::Show(a) => cmd_show(a, &mut out),
        Command::Plan(a) => cmd_plan(a, &mut out),
        Command::Run(a) => cmd_run(a, &mut out),
        Command::Net(NetCommand::Render(a)) => cmd_net_render(a, &mut out),
        Command::Status(a) => cmd_status(a, &mut out),
        Command::Query(a) => cmd_query(a, &mut out),
        Command::Clean(a) => cmd_clean(a, &mut out),
        Command::Scripts(a) => cmd_scripts(a, &mut out),
        Command::Reclaim(a) => cmd_reclaim(a, &mut out),
    };
    match r {
        // A refusal is its own outcome (exit 12), already logged with the rule that fired.
        Err(Error::Refused(r)) => {
            eprintln!("primer: {r}");
            Ok(Exit::Refused)
        }
        r => r,
    }
}

fn print_json<T: Serialize>(out: &mut impl Write, v: &T) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, v).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

fn cmd_probe(a: &ProbeArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let root = Path::new("/");
    let config = Config::load(a.policy.config.as_deref(), root)?;
    let wait = a.policy.wait.map_or(std::time::Duration::ZERO, secs);
    let probe = linux::probe_wait(&a.roots.roots(root), &config.probe.rules(), wait);
    let (devices, candidates) = (&probe.devices, &probe.candidates);
    let decision = trust::select(candidates, config.probe.duplicates);
    if let Err(r) = &decision {
        tracing::warn!(rule = r.rule, "{r}");
    }
    if a.json {
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
                    .and_then(|c| c.map(|c| c.device.name.as_str())),
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
        match &decision {
            Ok(Some(c)) => writeln!(out, "selected: {}", c.device.display())?,
            Ok(None) => {}
            Err(r) => writeln!(out, "{r}")?,
        }
    }
    Ok(if candidates.is_empty() {
        Exit::NoDrive
    } else {
        Exit::Changed
    })
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

fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.0, 600.0)
    } else {
        0.0
    })
}

/// Logs a refusal with the rule that fired and turns it into the error that ends the command.
fn refuse(r: Refusal) -> Error {
    tracing::error!(rule = r.rule, "{r}");
    Error::Refused(r)
}

/// Reads a probe candidate: user-space readers (through an offset reader for a partition read
/// from the table), or mount mode.
fn read_candidate(c: &Candidate, limits: &Limits, mount: bool) -> Result<DriveFiles, Error> {
    let device = c.device.display();
    if mount {
        if c.device.table_only {
            return Err(media::MediaError::Mount {
                device,
                detail: "the kernel shows no node for this partition; mount mode needs one".into(),
            }
            .into());
        }
        return Ok(media::mount::read_mounted(
            Path::new(&c.device.path),
            &c.fstype,
            c.label.clone(),
            &media::mount::default_base(),
            limits,
        )?);
    }
    let file = std::fs::File::open(&c.device.path).map_err(|e| media::MediaError::Io {
        device: device.clone(),
        source: e,
    })?;
    Ok(match c.device.byte_range() {
        Some((start, len)) => media::read_fs(
            media::part::OffsetReader::new(file, start, len),
            &device,
            limits,
        )?,
        None => media::read_fs(file, &device, limits)?,
    })
}

/// `--source PATH --mount`: the filesystem type comes from the device's signature.
fn read_source_mounted(p: &Path, limits: &Limits) -> Result<DriveFiles, Error> {
    let device = p.display().to_string();
    let mount_err = |detail: String| media::MediaError::Mount {
        device: device.clone(),
        detail,
    };
    if media::source_kind(p)? != media::SourceKind::BlockDevice {
        return Err(mount_err("needs a block device (attach an image with losetup)".into()).into());
    }
    let mut f = std::fs::File::open(p).map_err(|e| media::MediaError::Io {
        device: device.clone(),
        source: e,
    })?;
    match crate::probe::sig::read_signature(&mut f, &device) {
        crate::probe::sig::Found::Fs(s) => Ok(media::mount::read_mounted(
            p,
            &s.fstype,
            s.label,
            &media::mount::default_base(),
            limits,
        )?),
        _ => Err(mount_err("no filesystem recognised to mount".into()).into()),
    }
}

/// The DMI system UUID under `root`, bounded; `None` when unreadable.
fn read_product_uuid(root: &Path) -> Option<String> {
    use std::io::Read;
    let p = crate::paths::resolve_in_root(root, "sys/class/dmi/id/product_uuid").ok()?;
    let mut s = String::new();
    std::fs::File::open(p)
        .ok()?
        .take(256)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim().to_string())
}

/// The pinning record under `root`, when there is a readable one.
fn read_pin(root: &Path) -> Option<Pin> {
    use std::io::Read;
    let p = crate::paths::resolve_in_root(root, &apply::pin::pin_path()).ok()?;
    let mut v = Vec::new();
    std::fs::File::open(p)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut v)
        .ok()?;
    match serde_json::from_slice(&v) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("{}: unreadable pinning record: {e}", apply::pin::pin_path());
            None
        }
    }
}

/// A drive that was read and parsed.
pub struct Loaded {
    pub drive: DriveFiles,
    pub instance: Instance,
    pub report: Report,
    /// Why this drive was used (`--source` or the probe's reason).
    pub origin: String,
    pub config: Config,
    /// The drive to pin after a successful run (first-boot pinning on, no pin yet or a new
    /// drive allowed).
    pub pin: Option<Pin>,
}

/// Reads the drive named by `--source`, or the best probe candidate the trust policy accepts
/// (waiting for a late device up to the deadline). `Ok(None)`: no drive. `root` is the target
/// system: its configuration, DMI data and pinning record are used.
pub fn load(a: &SourceArgs, root: &Path) -> Result<Option<Loaded>, Error> {
    let config = Config::load(a.policy.config.as_deref(), root)?;
    let limits = Limits::default();
    let rules = config.probe.rules();
    let mount = a.mount || config.probe.mount;
    let (drive, origin, candidate) = match &a.source {
        Some(p) => {
            let drive = if mount {
                read_source_mounted(p, &limits)?
            } else {
                crate::probe::image::read_source_with(p, &limits, &rules, config.probe.duplicates)?
            };
            (drive, format!("--source {}", p.display()), None)
        }
        None => {
            let wait = a.policy.wait.map_or(config.probe.wait(), secs);
            let probe = linux::probe_wait(&a.roots.roots(root), &rules, wait);
            let best = match trust::select(&probe.candidates, config.probe.duplicates) {
                Ok(Some(b)) => b.clone(),
                Ok(None) => return Ok(None),
                Err(r) => return Err(refuse(r)),
            };
            tracing::info!("using {}", best.reason);
            (
                read_candidate(&best, &limits, mount)?,
                best.reason.clone(),
                Some(best),
            )
        }
    };
    for s in &drive.skipped {
        tracing::warn!("{}: {}: skipped: {}", drive.device, s.path, s.reason);
    }
    let (instance, report) = source::parse_drive(&drive)?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if config.probe.bind_dmi_uuid {
        let uuid = read_product_uuid(root);
        trust::check_dmi(&instance.instance_id, uuid.as_deref()).map_err(refuse)?;
        tracing::info!("DMI binding: instance id is this machine's system UUID");
    }
    let mut pin = None;
    if config.probe.pin_first_boot {
        match &candidate {
            Some(c) => {
                let current = Pin::of(c, &instance.instance_id);
                match trust::check_pin(
                    &current,
                    read_pin(root).as_ref(),
                    config.probe.pin_allow_new,
                )
                .map_err(refuse)?
                {
                    PinDecision::Same => tracing::info!("pinning: the drive pinned at first boot"),
                    PinDecision::Record => {
                        tracing::info!("pinning: first boot, pinning {}", c.device.display());
                        pin = Some(current);
                    }
                    PinDecision::Replace => {
                        tracing::warn!(
                            rule = "pinning",
                            "a new drive {} is allowed by pin_allow_new; re-pinning",
                            c.device.display()
                        );
                        pin = Some(current);
                    }
                }
            }
            // The operator named the drive: pinning guards the probe's choice only.
            None => tracing::info!("pinning: not checked for an explicit --source"),
        }
    }
    Ok(Some(Loaded {
        drive,
        instance,
        report,
        origin,
        config,
        pin,
    }))
}

fn no_drive(out: &mut impl Write, json: bool) -> Result<Exit, Error> {
    if json {
        print_json(out, &serde_json::json!({ "outcome": "no-drive" }))?;
    } else {
        writeln!(out, "no config drive found")?;
    }
    tracing::info!("no config drive found; nothing to do");
    Ok(Exit::NoDrive)
}

fn cmd_show(a: &SourceArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let Some(l) = load(a, Path::new("/"))? else {
        return no_drive(out, a.json);
    };
    if a.json {
        // Parsed whatever `user_data:` says: only to know which files carry a password.
        let (ud, _) = crate::source::userdata::parse_instance_user_data(
            &l.instance,
            &crate::source::userdata::UserDataLimits::default(),
        );
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
                file_sha256: l
                    .drive
                    .files
                    .iter()
                    // A file that carries a password shows no digest of it (a bare SHA-256 of a
                    // short password file is a password hash anyone can brute-force).
                    .map(|(p, d)| {
                        (
                            p.as_str(),
                            crate::plan::scrub::shown_sha256(p, d, &l.instance, &ud),
                        )
                    })
                    .collect(),
                symlinks: &l.drive.symlinks,
                skipped: &l.drive.skipped,
                instance: &l.instance,
                warnings: &l.report,
            },
        )?;
    } else {
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
    }
    Ok(Exit::Changed)
}

/// `ssh-ed25519 AAAA...last8 comment`: enough to recognise a key without a wall of base64.
fn key_summary(k: &str) -> String {
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

fn print_warnings(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

fn make_plan(a: &PlanArgs, l: &Loaded) -> (Plan, bool) {
    // Reads host facts: a run that will apply takes the run lock before calling this.
    let live = std::fs::canonicalize(&a.root).is_ok_and(|p| p == Path::new("/"));
    let mut policy = l.config.policy();
    if let Some(u) = &a.user {
        policy.ssh_user = u.clone();
    }
    if a.network_backend.is_some() {
        policy.network.backend = a.network_backend;
    }
    policy.defer_scripts = a.defer_scripts;
    let facts = crate::facts::read_host_facts(&a.root, &plan::wanted(&l.instance, &policy), live);
    (plan::plan(&l.instance, &l.drive, &facts, &policy), live)
}

/// Prints one line per step (status, id, why); the many `copy:` steps of the local copy are
/// folded into one line counting them by status.
fn print_steps<'a>(
    out: &mut impl Write,
    l: &Loaded,
    rows: impl Iterator<Item = (String, &'a str, &'a str)>,
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

fn print_plan(out: &mut impl Write, l: &Loaded, plan: &Plan) -> std::io::Result<()> {
    let rows = plan.steps.iter().map(|s| {
        (
            format!("{:?}", s.change).to_lowercase(),
            s.id.as_str(),
            s.why.as_str(),
        )
    });
    print_steps(out, l, rows)?;
    print_warnings(out, &plan.warnings)
}

fn cmd_plan(a: &PlanArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let Some(l) = load(&a.source, &a.root)? else {
        return no_drive(out, a.source.json);
    };
    let (plan, _) = make_plan(a, &l);
    if a.source.json {
        print_json(out, &plan)?;
    } else {
        print_plan(out, &l, &plan)?;
    }
    Ok(Exit::Changed)
}

fn cmd_run(a: &RunArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let started = (std::time::SystemTime::now(), std::time::Instant::now());
    let json = a.plan.source.json;
    let Some(l) = load(&a.plan.source, &a.plan.root)? else {
        if !a.dry_run {
            let ms = elapsed_ms(started.1);
            // Only a root primer already keeps state in gets a status (and so the lock).
            let lock = a
                .plan
                .root
                .join(state::STATE_DIR)
                .is_dir()
                .then(|| take_lock(&a.plan.root))
                .transpose()?;
            let previous = previous_status(&a.plan.root);
            if let Some(lock) = &lock {
                lock.sweep([]);
            }
            if record_status(
                &a.plan.root,
                &status::no_drive_status(started.0, ms, previous),
            )
            .is_err()
            {
                // Logged (naming the file) by record_status: the run is partial.
                return Ok(Exit::Partial);
            }
        }
        return no_drive(out, json);
    };
    if a.dry_run {
        let (plan, _) = make_plan(&a.plan, &l);
        if json {
            print_json(out, &plan)?;
        } else {
            print_plan(out, &l, &plan)?;
        }
        return Ok(Exit::Changed);
    }
    // The lock before the facts: a second run waits for the first, then plans against the
    // finished state (a plan made before the other run wrote would be stale).
    // A drive whose instance id cannot name primer's state changes nothing (the planner refuses
    // every step): it takes no lock, so it writes nothing.
    let lock = if state::invalid_instance_id(&l.instance.instance_id).is_none() {
        take_lock(&a.plan.root)?
    } else {
        apply::RunLock::none(&a.plan.root)
    };
    let (plan, live) = make_plan(&a.plan, &l);
    lock.sweep(
        plan.steps
            .iter()
            .filter_map(|s| apply::action_path(&s.action)),
    );
    let target = Target {
        root: a.plan.root.clone(),
        live,
    };
    let applied_at = std::time::SystemTime::now();
    let mut report = apply::apply_plan(&plan, &target, &lock);
    let plan_steps = report.steps.len();
    if let Some(pin) = &l.pin {
        // Pin only a drive whose steps all landed: a failed first boot is retried unpinned.
        if report.count(Outcome::Failed) == 0 {
            let r = apply::pin::apply_pin(&target.root, pin);
            let (outcome, detail) = match r {
                Ok(()) => (
                    Outcome::Changed,
                    format!(
                        "pinned {} drive {} for later boots",
                        pin.kind.name(),
                        pin.device
                    ),
                ),
                Err(e) => (
                    Outcome::Failed,
                    format!("cannot write /{}: {e}", apply::pin::pin_path()),
                ),
            };
            report.steps.push(apply::StepReport {
                id: "pin".into(),
                outcome,
                detail,
            });
        }
    }
    let refused = state::invalid_instance_id(&l.instance.instance_id).is_some();
    let mut exit = if refused {
        // The drive is refused whole (its plan is that one error step): nothing was applied.
        Exit::Error
    } else {
        run_exit(&report)
    };
    let previous = if refused {
        previous_status(&target.root)
    } else {
        None
    };
    let status = status::run_status(status::RunFacts {
        started: started.0,
        applied: applied_at,
        finished: std::time::SystemTime::now(),
        duration_ms: elapsed_ms(started.1),
        exit,
        origin: &l.origin,
        drive: &l.drive,
        instance: &l.instance,
        plan_steps,
        report: &report,
        warnings: l
            .report
            .warnings
            .iter()
            .chain(&plan.warnings.warnings)
            .map(|w| w.to_string())
            .collect(),
        previous,
    });
    if let Err(e) = record_status(&target.root, &status) {
        // The status is part of the run: a run whose status was not written is partial.
        report.steps.push(apply::StepReport {
            id: "status".into(),
            outcome: Outcome::Failed,
            detail: e,
        });
        if !matches!(exit, Exit::Error) {
            exit = run_exit(&report);
        }
    }
    drop(lock);
    if json {
        #[derive(Serialize)]
        struct Doc<'a> {
            origin: &'a str,
            instance_id: &'a str,
            outcome: &'static str,
            steps: &'a ApplyReport,
            warnings: Vec<&'a crate::model::Warning>,
        }
        let warnings = l
            .report
            .warnings
            .iter()
            .chain(&plan.warnings.warnings)
            .collect();
        print_json(
            out,
            &Doc {
                origin: &l.origin,
                instance_id: &l.instance.instance_id,
                outcome: exit.name(),
                steps: &report,
                warnings,
            },
        )?;
    } else {
        print_run(out, &l, &plan, &report)?;
    }
    tracing::info!(
        "{}: {} changed, {} unchanged, {} skipped, {} failed",
        exit.name(),
        report.count(Outcome::Changed),
        report.count(Outcome::Unchanged),
        report.count(Outcome::Skipped),
        report.count(Outcome::Failed)
    );
    Ok(exit)
}

fn print_run(
    out: &mut impl Write,
    l: &Loaded,
    plan: &Plan,
    r: &ApplyReport,
) -> std::io::Result<()> {
    let rows = r.steps.iter().map(|s| {
        (
            format!("{:?}", s.outcome).to_lowercase(),
            s.id.as_str(),
            s.detail.as_str(),
        )
    });
    print_steps(out, l, rows)?;
    print_warnings(out, &plan.warnings)?;
    writeln!(
        out,
        "summary: {} changed, {} unchanged, {} skipped, {} failed",
        r.count(Outcome::Changed),
        r.count(Outcome::Unchanged),
        r.count(Outcome::Skipped),
        r.count(Outcome::Failed)
    )
}

/// `primer net render`: the files of one backend on stdout, each after `# file: /PATH`.
fn cmd_net_render(a: &NetRenderArgs, out: &mut impl Write) -> Result<Exit, Error> {
    use crate::net::{self, naming, render, InputFormat};
    let (config, report) = match &a.input {
        Some(p) => {
            let bytes = std::fs::read(p)?;
            let file = p.display().to_string();
            // JSON with links/networks is network_data.json; anything else network config.
            let fmt = match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(serde_json::Value::Object(o))
                    if !o.contains_key("version")
                        && !o.contains_key("network")
                        && (o.is_empty()
                            || o.contains_key("links")
                            || o.contains_key("networks")) =>
                {
                    InputFormat::NetworkData
                }
                _ => InputFormat::NetworkConfig,
            };
            net::parse_network(&bytes, fmt, &file)?
        }
        None => {
            let Some(l) = load(&a.source, &a.root)? else {
                return no_drive(out, false);
            };
            match plan::network::instance_network(&l.instance, &l.drive)? {
                Some((c, r, _)) => (c, r),
                None => {
                    writeln!(out, "# the drive has no network data")?;
                    return Ok(Exit::Unchanged);
                }
            }
        }
    };
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let (facts, _) = crate::facts::net::read_net_facts(&a.root, &[], false, Default::default());
    let names = naming::assign_names(&config, &facts.interfaces);
    let opts = render::RenderOptions {
        netplan_renderer: facts.nm_enabled.then(|| "NetworkManager".to_string()),
        eni_resolv_conf: !facts.resolvconf && !facts.resolv_conf_symlink,
    };
    let r = render::try_render(a.backend, &config, &names, &opts)?;
    for w in &r.warnings {
        tracing::warn!("{}: {w}", a.backend);
    }
    if a.source.json {
        let files: Vec<serde_json::Value> = r
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": format!("/{}", f.path),
                    "mode": format!("{:04o}", f.mode),
                    "content": f.content,
                })
            })
            .collect();
        print_json(
            out,
            &serde_json::json!({"backend": a.backend, "files": files, "warnings": r.warnings}),
        )?;
        return Ok(Exit::Changed);
    }
    for f in &r.files {
        writeln!(out, "# file: /{} (mode {:04o})", f.path, f.mode)?;
        out.write_all(f.content.as_bytes())?;
    }
    Ok(Exit::Changed)
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The status before this run, when it is readable (a broken one is replaced, with a warning).
fn previous_status(root: &Path) -> Option<Status> {
    status::read_status(root).unwrap_or_else(|e| {
        tracing::warn!("{e}; replacing it");
        None
    })
}

/// Writes `status.json`; a failure is logged and returned (the message names the file): the
/// caller counts it as a failed step.
fn record_status(root: &Path, s: &Status) -> Result<(), String> {
    match status::write_status(root, s) {
        Ok(()) => {
            tracing::debug!("{}: {}", state::status_path(), s.outcome);
            Ok(())
        }
        Err(e) => {
            let msg = format!("cannot write /{}: {e}", state::status_path());
            tracing::error!(step = "status", "{msg}");
            Err(msg)
        }
    }
}

/// The exit code of a run from its steps: failed > changed > unchanged.
fn run_exit(report: &ApplyReport) -> Exit {
    if report.count(Outcome::Failed) > 0 {
        Exit::Partial
    } else if report.count(Outcome::Changed) == 0 {
        Exit::Unchanged
    } else {
        Exit::Changed
    }
}

/// Takes the run lock under `root` (waiting for another run, bounded).
fn take_lock(root: &Path) -> Result<apply::RunLock, Error> {
    // The error names the lock file (or the directory that could not be made).
    Ok(apply::RunLock::take(root, apply::LOCK_WAIT)?)
}

/// `primer status`: the last run, its drive and instance, and a table of its steps.
fn cmd_scripts(a: &ScriptsArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let live = std::fs::canonicalize(&a.root).is_ok_and(|p| p == Path::new("/"));
    if !live {
        return Err(Error::Unsupported(format!(
            "--root {}: scripts run only on the running system (--root /)",
            a.root.display()
        )));
    }
    let config = Config::load(a.config.as_deref(), &a.root)?;
    let id = match status::chosen_instance(&a.root, a.instance.as_deref()) {
        Ok(id) => id,
        Err(status::StatusError::NoInstance { .. }) => {
            writeln!(out, "no instance recorded: nothing to run")?;
            return Ok(Exit::Unchanged);
        }
        Err(e) => return Err(e.into()),
    };
    let target = Target {
        root: a.root.clone(),
        live,
    };
    let report =
        apply::deferred::run_pending_scripts(&target, &id, config.script_timeout_seconds.max(1));
    for s in &report.steps {
        writeln!(
            out,
            "  {:<9} {:<14} {}",
            format!("{:?}", s.outcome).to_lowercase(),
            s.id,
            s.detail
        )?;
    }
    Ok(if report.count(Outcome::Failed) > 0 {
        Exit::Partial
    } else if report.count(Outcome::Changed) == 0 {
        writeln!(out, "instance {id}: no script left to run")?;
        Exit::Unchanged
    } else {
        Exit::Changed
    })
}

fn cmd_status(a: &StatusArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let Some(s) = status::read_status(&a.root)? else {
        let msg = format!(
            "no run recorded under {}: /{} does not exist (primer has not run there, or the \
             status was cleaned)",
            a.root.display(),
            state::status_path()
        );
        if a.json {
            print_json(
                out,
                &serde_json::json!({ "outcome": "none", "message": msg }),
            )?;
        } else {
            writeln!(out, "{msg}")?;
        }
        return Ok(Exit::NoDrive);
    };
    // The record of this run's instance; for a run without a drive (or with an id primer keeps
    // no state for), the last applied one.
    let id = s
        .instance
        .as_ref()
        .map(|i| i.id.as_str())
        .filter(|id| state::invalid_instance_id(id).is_none())
        .or_else(|| s.current_instance())
        .map(str::to_string);
    let record = match id.as_deref() {
        Some(id) => status::read_record(&a.root, id).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            None
        }),
        _ => None,
    };
    if a.json {
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
        let record = record.as_ref().map(|r| RecordDoc {
            path: format!("/{}", state::record_path(&r.instance_id)),
            drive_sha256: &r.drive_sha256,
            steps: r.steps.keys().map(String::as_str).collect(),
        });
        print_json(out, &Doc { status: &s, record })?;
    } else {
        print_status(out, &s, id.as_deref(), record.as_ref())?;
    }
    Ok(Exit::Changed)
}

fn print_status(
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

/// `primer query KEY`: one value of the current instance's data.
fn cmd_query(a: &QueryArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let euid = nix::unistd::geteuid().as_raw();
    let r = status::query(&a.root, &a.key, a.instance.as_deref(), a.sensitive, euid)?;
    // Only the key and the file: never the value, which may be a secret.
    tracing::debug!("{}: {} (instance {})", a.key, r.file, r.instance_id);
    match &r.value {
        serde_json::Value::String(s) => writeln!(out, "{s}")?,
        v => print_json(out, v)?,
    }
    Ok(Exit::Changed)
}

/// `primer clean`: forget instance records; prints what was removed.
fn cmd_clean(a: &CleanArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let r = status::clean(&a.root, a.instance.as_deref(), a.all)?;
    if r.removed.is_empty() {
        if r.instances.is_empty() {
            writeln!(
                out,
                "no instance recorded under {}: nothing to remove",
                a.root.display()
            )?;
        } else {
            writeln!(
                out,
                "nothing recorded for instance {}: nothing to remove",
                r.instances.join(", ")
            )?;
        }
        return Ok(Exit::Unchanged);
    }
    for p in &r.removed {
        writeln!(out, "removed {p}")?;
    }
    writeln!(
        out,
        "kept: every file the runs applied (host name, SSH keys, network files) and the pinning \
         record; the next run applies the drive as a first boot"
    )?;
    Ok(Exit::Changed)
}

const RECLAIM_HELP: &str = "\
Examples:
  primer reclaim                      the plan for the disk holding / (changes nothing)
  primer reclaim --apply              do it (needs reclaim.enabled: true in primer.yaml)
  primer reclaim --disk disk.img --root-partition 1 --root /mnt/image --apply
                                      on an image file: table and wipe only";

#[derive(Debug, Args)]
pub struct ReclaimArgs {
    /// The disk or image file [default: the disk holding the mounted /].
    #[arg(long, value_name = "DEV|IMAGE")]
    pub disk: Option<PathBuf>,
    /// Root's partition number (required for an image file).
    #[arg(long, value_name = "N")]
    pub root_partition: Option<u32>,
    /// Write: without it, only the plan is printed.
    #[arg(long)]
    pub apply: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The system whose state (the applied drive's record) and configuration to use.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Configuration file [default: /etc/primer/primer.yaml under --root].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn cmd_reclaim(a: &ReclaimArgs, out: &mut impl Write) -> Result<Exit, Error> {
    use crate::disk::{Options, Outcome as R};
    let config = Config::load(a.config.as_deref(), &a.root)?;
    if a.apply && !config.reclaim.enabled {
        writeln!(
            out,
            "reclaim is disabled (reclaim.enabled: false in primer.yaml): nothing to do"
        )?;
        return Ok(Exit::NothingToReclaim);
    }
    let report = crate::disk::reclaim(&Options {
        disk: a.disk.clone(),
        root_partition: a.root_partition,
        root: a.root.clone(),
        apply: a.apply,
        settings: config.reclaim.settings(),
    })?;
    if a.json {
        print_json(out, &report)?;
    } else {
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
    }
    Ok(match report.outcome {
        R::Planned | R::Changed => Exit::Changed,
        R::Nothing => Exit::NothingToReclaim,
        R::Refused => Exit::ReclaimRefused,
        R::Partial => Exit::Partial,
    })
}
