//! CLI: the face of `agent`. The clap definitions of every command, one call into the agent per
//! command, and the printing of its outcome as text (long forms in `cli/print.rs`) or JSON.
//! Decides nothing, reads no drive and writes nothing itself.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::agent;
use crate::state;
use crate::status;
use crate::{Error, Exit};

mod check;
mod collect;
mod make;
mod print;
#[cfg(windows)]
mod service;
use print::{print_plan, print_run, print_status};

const AFTER_HELP: &str = "\
Exit codes:
  0   success: changes applied (or printed, for probe/show/plan/--dry-run)
  1   error: the drive could not be read or parsed, or another fatal error
  2   usage error
  3   partial: some steps failed (the others were applied); check: warnings only
  10  nothing to do: everything was already applied (clean: nothing to remove)
  11  no config drive found (a normal boot without a drive); status: no run recorded yet
  12  refused by the trust policy (duplicate drives, DMI binding, pinning)
  13  reclaim: nothing to reclaim (done, no config partition, or disabled)
  14  reclaim: refused (a precondition failed); nothing written
  15  status --wait: timed out before this boot's run (and scripts) finished";

/// First-boot agent for cloud config drives.
///
/// Finds the configuration volume the cloud attached: an OpenStack config drive (config-2), a
/// CloudStack config drive, a NoCloud seed (cidata) or an OVF environment, on ISO9660 or VFAT,
/// a whole device or a trailing partition of the disk. Reads it without mounting, then applies
/// network configuration, host name, SSH keys, users and passwords, user-data (cloud-config,
/// scripts), injected files and a private copy of the data to the target root, atomically.
/// Re-running changes nothing. `reclaim` deletes a trailing config partition and grows root;
/// `make-drive` builds drives; `check` validates user-data, configuration and drives.
#[derive(Debug, Parser)]
#[command(name = "primer", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level on stderr: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: LogLevel,
}

impl Cli {
    /// The command line of this process, parsed. `primer run ...` (what every boot runs) is
    /// read without clap when it is plain ([`Cli::parse_run_plain`]): building clap's command
    /// tree (every subcommand's arguments and help) cost a measurable share of a boot's CPU.
    /// It gives the values clap gives (tests compare them); anything else — another command, a
    /// global option before `run`, help, version, a parse error — goes through clap's whole
    /// tree, so its output (help text, error messages) is clap's as before.
    pub fn from_env() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        Cli::parse_run_plain(&args).unwrap_or_else(|| Cli::parse_from(args))
    }

    /// The plainest `run` command lines (every boot's: `run --log-level error --source DEV
    /// --root DIR`) read without clap: each argument once, as `--name VALUE`, `--name=VALUE` or
    /// a bare flag, every value UTF-8, non-empty and not starting with `-`, parsed by the same
    /// parsers clap uses (`ValueEnum`, `f64`). Anything else — a repeated, unknown or
    /// abbreviated argument, help, version, a positional — is `None`: clap's whole tree then
    /// decides it, so no message or error changes. Even clap's `run` subcommand alone cost
    /// ~0.2 M instructions of the ~3 M of an unchanged re-run (issue 15); a test compares the
    /// two parses.
    pub fn parse_run_plain(args: &[std::ffi::OsString]) -> Option<Cli> {
        use clap::ValueEnum;
        if args.get(1).map(|a| a.as_os_str()) != Some("run".as_ref()) {
            return None;
        }
        let mut run = RunArgs {
            plan: PlanArgs {
                source: SourceArgs {
                    source: None,
                    json: false,
                    mount: false,
                    roots: RootsArgs {
                        sys_root: "/sys".into(),
                        dev_root: "/dev".into(),
                    },
                    policy: PolicyArgs {
                        config: None,
                        wait: None,
                    },
                },
                root: "/".into(),
                user: None,
                network_backend: None,
                defer_scripts: false,
            },
            dry_run: false,
        };
        let mut log_level = LogLevel::Info;
        // Which arguments were given (each at most once, as clap requires).
        let mut seen: u16 = 0;
        let mut rest = args[2..].iter();
        while let Some(a) = rest.next() {
            let a = a.to_str()?.strip_prefix("--")?;
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (a, None),
            };
            let (bit, flag) = match name {
                "json" => (0, true),
                "mount" => (1, true),
                "defer-scripts" => (2, true),
                "dry-run" => (3, true),
                "source" => (4, false),
                "sys-root" => (5, false),
                "dev-root" => (6, false),
                "config" => (7, false),
                "wait" => (8, false),
                "root" => (9, false),
                "user" => (10, false),
                "network-backend" => (11, false),
                "log-level" => (12, false),
                _ => return None,
            };
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            if flag {
                if inline.is_some() {
                    return None;
                }
                match bit {
                    0 => run.plan.source.json = true,
                    1 => run.plan.source.mount = true,
                    2 => run.plan.defer_scripts = true,
                    _ => run.dry_run = true,
                }
                continue;
            }
            let v = match inline {
                Some(v) => v,
                None => rest.next()?.to_str()?,
            };
            if v.is_empty() || v.starts_with('-') {
                return None;
            }
            let p = &mut run.plan;
            match bit {
                4 => p.source.source = Some(v.into()),
                5 => p.source.roots.sys_root = v.into(),
                6 => p.source.roots.dev_root = v.into(),
                7 => p.source.policy.config = Some(v.into()),
                8 => p.source.policy.wait = Some(v.parse().ok()?),
                9 => p.root = v.into(),
                10 => p.user = Some(v.into()),
                11 => p.network_backend = Some(crate::net::Backend::from_str(v, false).ok()?),
                _ => log_level = LogLevel::from_str(v, false).ok()?,
            }
        }
        Some(Cli {
            command: Command::Run(run),
            log_level,
        })
    }

    /// The command installs its own logger (the Windows service: the event log and a file, as
    /// the global default so every thread's events reach them): the binary sets up none.
    pub fn logs_itself(&self) -> bool {
        #[cfg(windows)]
        if matches!(self.command, Command::Service(service::ServiceCommand::Run)) {
            return true;
        }
        false
    }
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
    /// Exit 0: a candidate is selected; 11: no candidate; 12: the trust policy refuses (as
    /// `run` would).
    Probe(ProbeArgs),
    /// Parse a drive and print the instance it describes (secrets redacted).
    ///
    /// The drive: a block device, an image file (ISO9660, VFAT, a disk image with a config
    /// partition) or a directory holding a drive tree; without --source, the probe's choice.
    /// Reads only; the JSON form adds a digest of every file that carries no password.
    Show(SourceArgs),
    /// Print what `run` would do, step by step, with a why per step. Changes nothing.
    Plan(PlanArgs),
    /// Find the drive, parse it, plan, and apply: network, host name, SSH keys, users and
    /// passwords, user-data, injected files, local copy.
    ///
    /// What the systemd unit calls at boot. A second run with the same drive changes nothing
    /// (exit 10); no drive at all is a normal outcome (exit 11).
    Run(RunArgs),
    /// Network configuration tools: `net render` prints one backend's files.
    #[command(subcommand)]
    Net(NetCommand),
    /// primer's own configuration: `config show` prints it with where each value came from.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    /// Build a config drive (ISO9660 or VFAT) from a description or a directory: an image file,
    /// a trailing partition of a disk image, or Ironic's packed form.
    ///
    /// Formats: openstack (nova's tree), cloudstack, nocloud, ovf. The description is checked
    /// field by field and the drive read back with primer's own parsers before it is written;
    /// with SOURCE_DATE_EPOCH or --deterministic the same input gives byte-identical output.
    /// --packed writes Ironic's gzip+base64 form.
    #[command(after_help = make::MAKE_HELP)]
    MakeDrive(make::MakeDriveArgs),
    /// Check a user-data file, primer's configuration or a whole drive: every error and
    /// warning with file:line:column.
    ///
    /// Uses primer's own parsers (what `run` would read), so a clean check means `run` reads
    /// the file without a warning. Applies, writes and runs nothing; never prints a value (a
    /// password in the file stays out of the output).
    #[command(after_help = check::CHECK_HELP)]
    Check(check::CheckArgs),
    /// Write one tar.gz for a bug report: versions, status, journal, redacted instance data,
    /// configuration, probe.
    ///
    /// The journal is this boot's, of primer, primer-scripts and primer-reclaim (when
    /// journalctl exists and --root is /). Secrets are redacted as `show` redacts them; the
    /// drive's own files are not included. The archive is created 0600 and an existing one is
    /// kept unless --force.
    #[command(after_help = collect::COLLECT_HELP)]
    CollectLogs(collect::CollectArgs),
    /// The Windows service: install, uninstall, or run as the service (the SCM's entry).
    #[cfg(windows)]
    #[command(subcommand)]
    Service(service::ServiceCommand),
}

const SCRIPTS_HELP: &str = "\
Examples:
  primer scripts                      run what `run --defer-scripts` stored (as the unit does)
  primer status                       the last run's steps; scripts show as `script:NAME`
  ls /var/lib/primer/instance/*/scripts-ran/   which scripts have run";

const STATUS_HELP: &str = "\
Examples:
  primer status                       last run, outcome, drive, instance, step table
  primer status --wait --timeout 300  block until this boot's run and scripts are done
                                      (exit: the run's code, 3 if a script failed, 15 on
                                      time-out): for tools that ssh in early
  primer status --json | jq .summary  the same as JSON (the status.json fields plus `record`)
  primer status --root /mnt/image     the record inside a mounted image";

const QUERY_HELP: &str = "\
Examples:
  primer query hostname               web-1 (a string prints raw)
  primer query meta.role              a key of the user metadata
  primer query network.0.kind         array elements by index
  primer query ssh_keys               a list prints as JSON
  primer query --list-keys            every key, sorted (values are not printed)
  primer query meta.role --json       {\"instance_id\", \"key\", \"value\"}
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
    /// Wait until this boot's run has finished (and this boot's user-data scripts, when
    /// primer-scripts.service is enabled and an instance was applied), then print the outcome.
    /// Exit: the run's own code (a failed script: 3); 15 on time-out.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after SECONDS (exit 1) [default: 600].
    #[arg(long, value_name = "SECONDS", requires = "wait", default_value = "600")]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct ScriptsArgs {
    /// The running system (`/`); any other root is refused: scripts run only on a live system.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The instance whose scripts to run [default: the one the last `run` applied].
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Configuration file [default: /etc/primer/primer.yaml under --root; Windows:
    /// %ProgramData%\primer\primer.yaml] (script time-out).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON: `instance_id`, `steps` (id, outcome, detail), `outcome`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Dotted path into the instance data: `hostname`, `meta.role`, `network.0.kind`.
    #[arg(value_name = "KEY", required_unless_present = "list_keys")]
    pub key: Option<String>,
    /// Print every key KEY may be, one per line, sorted (values are not printed).
    #[arg(long, conflicts_with_all = ["key", "sensitive"])]
    pub list_keys: bool,
    /// Print JSON: `{instance_id, key, value}` (with --list-keys: `{instance_id, keys}`).
    #[arg(long)]
    pub json: bool,
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
    /// Print JSON: `instances` (looked for), `removed` (paths), `outcome`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration every command uses, key by key, with the file that set each
    /// value (`default` when no file did).
    ///
    /// Reads /etc/primer/primer.yaml (or `--config FILE`), then every `*.yaml` in the
    /// directory beside it named like it plus `.d` (/etc/primer/primer.yaml.d/), in name order:
    /// maps merge key by key, a list or a value replaces the earlier one. An invalid file is an
    /// error naming it (exit 1). Changes nothing. On Windows the file is
    /// %ProgramData%\primer\primer.yaml, and it and its drop-ins are refused (exit 1, naming
    /// the trustee) unless SYSTEM, Administrators or TrustedInstaller own them and no one else
    /// may change them.
    Show(ConfigShowArgs),
}

#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// The main configuration file [default: /etc/primer/primer.yaml under --root; Windows:
    /// %ProgramData%\primer\primer.yaml, read only when SYSTEM or Administrators own it and no
    /// one else may change it]; its
    /// drop-ins are FILE.d/*.yaml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The system whose configuration to read.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Print JSON: `config` (every key), `origins` (key -> file) and `files` (merge order).
    #[arg(long)]
    pub json: bool,
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
    /// Configuration file [default: <root>/etc/primer/primer.yaml when present; Windows:
    /// %ProgramData%\primer\primer.yaml, read only when SYSTEM or Administrators own it and no
    /// one else may change it].
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
    ///
    /// sysfs mount to enumerate block devices from (tests point it at a fixture tree).
    #[arg(
        long,
        default_value = "/sys",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub sys_root: PathBuf,
    /// Directory holding the device nodes.
    ///
    /// Directory holding the device nodes that sysfs names (tests point it at a fixture tree).
    #[arg(
        long,
        default_value = "/dev",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub dev_root: PathBuf,
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
/// Runs one command. `brief`: stdout is the journal (primer under systemd), where `run`'s
/// warnings are logged as warning-priority events rather than printed as plain lines.
pub fn execute(cli: &Cli, brief: bool) -> Result<Exit, Error> {
    // Every command computes first and prints its report at the end (nothing is printed while a
    // child process or a long step runs), so the report is buffered: one `write` per 64 KiB
    // instead of one per line (std's stdout is line-buffered). Flushed before the outcome is
    // returned or a refusal is printed on stderr, so the two streams keep their order.
    let mut out = std::io::BufWriter::with_capacity(
        64 * 1024,
        ClosedPipeQuiet {
            inner: std::io::stdout().lock(),
            closed: false,
        },
    );
    let r = match &cli.command {
        Command::Probe(a) => cmd_probe(a, &mut out),
        Command::Show(a) => cmd_show(a, &mut out),
        Command::Plan(a) => cmd_plan(a, &mut out),
        Command::Run(a) => cmd_run(a, brief, &mut out),
        Command::Net(NetCommand::Render(a)) => cmd_net_render(a, &mut out),
        Command::Config(ConfigCommand::Show(a)) => cmd_config_show(a, &mut out),
        Command::Status(a) => cmd_status(a, &mut out),
        Command::Query(a) => cmd_query(a, &mut out),
        Command::Clean(a) => cmd_clean(a, &mut out),
        Command::Scripts(a) => cmd_scripts(a, &mut out),
        Command::Reclaim(a) => cmd_reclaim(a, &mut out),
        Command::MakeDrive(a) => make::run(a, &mut out),
        Command::Check(a) => check::run(a, &mut out),
        Command::CollectLogs(a) => collect::run(a, &mut out),
        #[cfg(windows)]
        Command::Service(c) => service::execute(c, &mut out),
    };
    // A closed pipe is already quiet (`ClosedPipeQuiet`); any other failure to print the
    // report (a full disk behind a redirection) is the command's error, as an unbuffered
    // `writeln!` failure was.
    let flushed = out.flush();
    let r = match (r, flushed) {
        (Ok(_), Err(e)) => Err(Error::from(e)),
        (r, _) => r,
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

/// stdout that a reader may close early (`primer show | head`): the rest of the output is
/// dropped and the command ends with its own outcome, never an error or an abort. Ignoring
/// SIGPIPE (Rust's default) rather than dying of it keeps a `run` whose journal stream closes
/// from stopping between two writes.
struct ClosedPipeQuiet<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> Write for ClosedPipeQuiet<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r,
        }
    }
}

pub(super) fn print_json<T: Serialize>(out: &mut impl Write, v: &T) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, v).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

fn cmd_probe(a: &ProbeArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let p = agent::probe(&locate_probe(a))?;
    print::probe(out, &p, a.json)?;
    Ok(p.exit)
}

fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.0, 600.0)
    } else {
        0.0
    })
}

impl SourceArgs {
    fn locate(&self) -> agent::Locate {
        agent::Locate {
            source: self.source.clone(),
            mount: self.mount,
            config: self.policy.config.clone(),
            wait: self.policy.wait.map(secs),
            sys_root: self.roots.sys_root.clone(),
            dev_root: self.roots.dev_root.clone(),
        }
    }
}

impl PlanArgs {
    fn request(&self) -> agent::PlanRequest {
        agent::PlanRequest {
            locate: self.source.locate(),
            root: self.root.clone(),
            user: self.user.clone(),
            network_backend: self.network_backend,
            defer_scripts: self.defer_scripts,
        }
    }
}

fn locate_probe(a: &ProbeArgs) -> agent::Locate {
    agent::Locate {
        config: a.policy.config.clone(),
        wait: a.policy.wait.map(secs),
        sys_root: a.roots.sys_root.clone(),
        dev_root: a.roots.dev_root.clone(),
        ..Default::default()
    }
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
    let Some(shown) = agent::show(&a.locate(), a.json)? else {
        return no_drive(out, a.json);
    };
    let l = &shown.loaded;
    if a.json {
        print::show_json(out, &shown)?;
    } else {
        print::show(out, l)?;
    }
    Ok(Exit::Changed)
}

fn cmd_plan(a: &PlanArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let Some((l, plan)) = agent::plan(&a.request())? else {
        return no_drive(out, a.source.json);
    };
    if a.source.json {
        print_json(out, &plan)?;
    } else {
        print_plan(out, &l, &plan)?;
    }
    Ok(Exit::Changed)
}

fn cmd_run(a: &RunArgs, brief: bool, out: &mut impl Write) -> Result<Exit, Error> {
    let json = a.plan.source.json;
    // The heap pre-fault (`main`) at once for a run that takes the full path anyway (a first
    // run, a dry run: the drive is read into the pre-faulted heap); a root with a re-run cache
    // (a later boot: the fast path allocates little) leaves it to the run, which pre-faults
    // when it takes the full path. A hint only (the cache is not read here).
    #[cfg(target_os = "linux")]
    if a.dry_run {
        crate::platform::start::prefault_heap_for_full_run();
    } else {
        crate::platform::start::prefault_heap_unless_cached(
            &a.plan.root.join(agent::rerun::cache_path()),
        );
    }
    match agent::run(&a.plan.request(), a.dry_run)? {
        // The status could not be written (logged, naming the file): nothing more to print.
        agent::RunOutcome::NoDrive {
            exit: Exit::Partial,
        } => Ok(Exit::Partial),
        agent::RunOutcome::NoDrive { .. } => no_drive(out, json),
        agent::RunOutcome::Off => {
            if json {
                print_json(out, &serde_json::json!({ "outcome": "off" }))?;
            } else {
                writeln!(out, "primer=off on the kernel command line: nothing done")?;
            }
            Ok(Exit::Changed)
        }
        agent::RunOutcome::Planned { loaded, plan } => {
            if json {
                print_json(out, &plan)?;
            } else {
                print_plan(out, &loaded, &plan)?;
            }
            Ok(Exit::Changed)
        }
        agent::RunOutcome::Applied {
            loaded,
            plan,
            report,
            exit,
        } => {
            if json {
                print::run_json(out, &loaded, &plan, &report, exit)?;
            } else if brief {
                print_run_brief(out, &loaded, &plan, &report)?;
            } else {
                print_run(out, &loaded, &plan, &report, false)?;
            }
            // The process ends right after the report (`main`, and the Windows service, which
            // runs the pipeline once and then ends): freeing the drive, its parse and the
            // report block by block is work for nothing (~0.1 M instructions of an unchanged
            // re-run's ~3 M, issue 15). The memory goes back with the process; nothing
            // forgotten here has a `Drop` with an effect outside the process.
            std::mem::forget((loaded, plan, report));
            Ok(exit)
        }
    }
}

/// `run` when stdout is the journal: each event once. The writer logs every changed and failed
/// step as an event of its own (with its priority and PRIMER_STEP), and the agent the summary:
/// stdout adds only what no event carries (the drive line, unchanged and skipped steps, the
/// local copy's count); the plan's warnings go out as warning-priority events.
fn print_run_brief(
    out: &mut impl Write,
    l: &agent::Loaded,
    plan: &crate::plan::Plan,
    r: &crate::apply::ApplyReport,
) -> Result<(), Error> {
    use crate::apply::Outcome;
    let rows = r
        .steps(&plan.steps)
        .filter(|(id, outcome, _)| match outcome {
            Outcome::Failed => false,
            Outcome::Changed => id.starts_with("copy"),
            _ => true,
        })
        .map(|(id, outcome, detail)| (format!("{outcome:?}").to_lowercase(), id, detail));
    print::print_steps(out, l, rows)?;
    for w in &plan.warnings.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// `primer net render`: the files of one backend on stdout, each after `# file: /PATH`.
fn cmd_net_render(a: &NetRenderArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let locate = a.source.locate();
    let input = match &a.input {
        Some(p) => agent::NetInput::File(p),
        None => agent::NetInput::Drive(&locate),
    };
    let r = match agent::net_render(input, &a.root, a.backend)? {
        agent::NetRendered::NoDrive => return no_drive(out, false),
        // Nothing to render is "nothing to do" (exit 10), in either output form.
        agent::NetRendered::NoNetwork => {
            if a.source.json {
                print_json(
                    out,
                    &serde_json::json!({"backend": a.backend, "files": [], "warnings": [],
                        "network": false}),
                )?;
            } else {
                writeln!(out, "# the drive has no network data")?;
            }
            return Ok(Exit::Unchanged);
        }
        agent::NetRendered::Files(r) => r,
    };
    if a.source.json {
        let files: Vec<serde_json::Value> = r
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": format!("/{}", f.path),
                    "mode": format!("{:04o}", f.mode),
                    "content": f.content.as_str(),
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

/// `primer config show`: the layered configuration, one `key: value  # file` line per setting.
fn cmd_config_show(a: &ConfigShowArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let l = agent::config(a.config.as_deref(), &a.root)?;
    if a.json {
        print_json(
            out,
            &serde_json::json!({"config": l.merged, "origins": l.origins, "files": l.files}),
        )?;
        return Ok(Exit::Changed);
    }
    if l.files.is_empty() {
        writeln!(out, "# no configuration file: every value is the default")?;
    } else {
        writeln!(out, "# files, in merge order: {}", l.files.join(", "))?;
    }
    print::config_leaves(out, "", &l.merged, &l.origins)?;
    Ok(Exit::Changed)
}

/// `primer scripts`: the instance's scripts that have not run yet.
fn cmd_scripts(a: &ScriptsArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let (id, report, exit) =
        match agent::scripts(&a.root, a.config.as_deref(), a.instance.as_deref())? {
            agent::ScriptsOutcome::NoInstance => {
                if a.json {
                    print_json(
                        out,
                        &serde_json::json!({"instance_id": null, "steps": [],
                            "outcome": Exit::Unchanged.name()}),
                    )?;
                    return Ok(Exit::Unchanged);
                }
                writeln!(out, "no instance recorded: nothing to run")?;
                return Ok(Exit::Unchanged);
            }
            agent::ScriptsOutcome::Ran {
                instance_id,
                report,
                exit,
            } => (instance_id, report, exit),
        };
    if a.json {
        print_json(
            out,
            &serde_json::json!({"instance_id": id, "steps": report.of(&[]).list(),
                "outcome": exit.name()}),
        )?;
        return Ok(exit);
    }
    // A `scripts` run's steps hold their own text (no plan).
    for (id, outcome, detail) in report.steps(&[]) {
        writeln!(
            out,
            "  {:<9} {:<14} {}",
            format!("{outcome:?}").to_lowercase(),
            id,
            detail
        )?;
    }
    if exit == Exit::Unchanged {
        writeln!(out, "instance {id}: no script left to run")?;
    }
    Ok(exit)
}

/// `primer status --wait`: waits for this boot's run (and scripts), then prints as `status`.
fn cmd_status_wait(a: &StatusArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let timeout = std::time::Duration::from_secs_f64(if a.timeout.is_finite() {
        a.timeout.clamp(0.0, 86_400.0)
    } else {
        0.0
    });
    let (last, scripts, exit) = match agent::wait_for_boot(&a.root, timeout)? {
        agent::Waited::Off => {
            if a.json {
                print_json(out, &serde_json::json!({ "outcome": "off" }))?;
            } else {
                writeln!(
                    out,
                    "primer is off (primer=off on the kernel command line, or \
                     /etc/primer/disabled): no run this boot"
                )?;
            }
            return Ok(Exit::Changed);
        }
        agent::Waited::TimedOut { last, waiting_for } => {
            let msg = format!(
                "timed out after {:.0} s waiting for {waiting_for} to finish this boot",
                timeout.as_secs_f64()
            );
            tracing::error!("{msg}");
            if a.json {
                print_json(
                    out,
                    &serde_json::json!({ "outcome": "timeout", "message": msg,
                        "waiting_for": waiting_for,
                        "last": last.as_ref().map(|l| &l.status) }),
                )?;
            } else {
                writeln!(out, "{msg}")?;
            }
            // A time-out is not the run's outcome: a code of its own.
            return Ok(Exit::Timeout);
        }
        agent::Waited::Done {
            last,
            scripts,
            exit,
        } => (last, scripts, exit),
    };
    if a.json {
        print_json(
            out,
            &serde_json::json!({ "outcome": exit.name(), "exit_code": exit.code(),
                "run": last.status, "record": last.record, "scripts": scripts }),
        )?;
        return Ok(exit);
    }
    print_status(out, &last.status, last.id.as_deref(), last.record.as_ref())?;
    match &scripts {
        Some(s) => writeln!(
            out,
            "scripts:      {} (exit {}) at {}: {} changed, {} unchanged, {} failed",
            s.outcome,
            s.exit_code,
            s.time,
            s.summary.changed,
            s.summary.unchanged,
            s.summary.failed
        )?,
        None => writeln!(out, "scripts:      - (not run on this system this boot)")?,
    }
    writeln!(out, "boot outcome: {} (exit {})", exit.name(), exit.code())?;
    Ok(exit)
}

/// `primer status`: the last run, its drive and instance, and a table of its steps.
fn cmd_status(a: &StatusArgs, out: &mut impl Write) -> Result<Exit, Error> {
    if a.wait {
        return cmd_status_wait(a, out);
    }
    let Some(agent::LastRun {
        status: s,
        id,
        record,
    }) = agent::last_run(&a.root)?
    else {
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
    if a.json {
        print::status_json(out, &s, record.as_ref())?;
    } else {
        print_status(out, &s, id.as_deref(), record.as_ref())?;
    }
    Ok(Exit::Changed)
}

/// `primer query KEY`: one value of the current instance's data; `--list-keys`: every key.
fn cmd_query(a: &QueryArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let key = match (&a.key, a.list_keys) {
        (Some(k), false) => k,
        _ => {
            let (id, keys) = agent::query_keys(&a.root, a.instance.as_deref())?;
            if a.json {
                print_json(out, &serde_json::json!({"instance_id": id, "keys": keys}))?;
            } else {
                for k in &keys {
                    // A drive's metadata key may hold a newline: one line per key, always.
                    writeln!(out, "{}", crate::model::grammar::log_safe(k, usize::MAX))?;
                }
            }
            return Ok(Exit::Changed);
        }
    };
    let r = agent::query(&a.root, key, a.instance.as_deref(), a.sensitive)?;
    // Only the key and the file: never the value, which may be a secret.
    tracing::debug!("{}: {} (instance {})", key, r.file, r.instance_id);
    if a.json {
        print_json(
            out,
            &serde_json::json!({"instance_id": r.instance_id, "key": key, "value": r.value}),
        )?;
        return Ok(Exit::Changed);
    }
    match &r.value {
        serde_json::Value::String(s) => writeln!(out, "{s}")?,
        v => print_json(out, v)?,
    }
    Ok(Exit::Changed)
}

/// `primer clean`: forget instance records; prints what was removed.
fn cmd_clean(a: &CleanArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let r = status::clean(&a.root, a.instance.as_deref(), a.all)?;
    if a.json {
        let exit = if r.removed.is_empty() {
            Exit::Unchanged
        } else {
            Exit::Changed
        };
        print_json(
            out,
            &serde_json::json!({"instances": r.instances, "removed": r.removed,
                "outcome": exit.name()}),
        )?;
        return Ok(exit);
    }
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
    /// Configuration file [default: /etc/primer/primer.yaml under --root; Windows:
    /// %ProgramData%\primer\primer.yaml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn cmd_reclaim(a: &ReclaimArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let req = agent::ReclaimRequest {
        disk: a.disk.clone(),
        root_partition: a.root_partition,
        apply: a.apply,
        root: a.root.clone(),
        config: a.config.clone(),
    };
    let (report, exit) = match agent::reclaim(&req)? {
        agent::ReclaimOutcome::Disabled => {
            writeln!(
                out,
                "reclaim is disabled (reclaim.enabled: false in primer.yaml): nothing to do"
            )?;
            return Ok(Exit::NothingToReclaim);
        }
        agent::ReclaimOutcome::Done { report, exit } => (report, exit),
    };
    if a.json {
        print_json(out, &report)?;
    } else {
        print::reclaim(out, &report)?;
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<std::ffi::OsString> {
        std::iter::once("primer")
            .chain(a.iter().copied())
            .map(Into::into)
            .collect()
    }

    #[test]
    fn a_run_command_line_parses_alone_as_the_whole_tree_parses_it() {
        for a in [
            &["run"][..],
            &[
                "run",
                "--log-level",
                "error",
                "--source",
                "/dev/sr0",
                "--root",
                "/mnt",
            ],
            &[
                "run",
                "--log-level=debug",
                "--network-backend",
                "networkd",
                "--dry-run",
            ],
            &[
                "run",
                "--json",
                "--mount",
                "--user",
                "debian",
                "--defer-scripts",
            ],
            &[
                "run",
                "--config",
                "/c.yaml",
                "--wait",
                "2.5",
                "--sys-root",
                "/s",
            ],
            &[
                "run",
                "--dev-root=/d",
                "--network-backend=eni",
                "--log-level",
                "trace",
            ],
        ] {
            let full = Cli::try_parse_from(argv(a)).unwrap();
            let plain =
                Cli::parse_run_plain(&argv(a)).unwrap_or_else(|| panic!("{a:?}: not plain"));
            assert_eq!(format!("{plain:?}"), format!("{full:?}"), "{a:?}");
        }
    }

    /// The plain reader takes only what clap takes, as clap reads it; whatever it declines
    /// (repeats, abbreviations, hyphen or empty values, flags with values, bad values), clap
    /// decides.
    #[test]
    fn the_plain_run_reader_agrees_with_clap_or_declines() {
        for a in [
            &["run", "--root", "/r", "--root", "/s"][..],
            &["run", "--json", "--json"],
            &["run", "--json=true"],
            &["run", "--roo", "/r"],
            &["run", "--root", "-r"],
            &["run", "--root="],
            &["run", "--root", ""],
            &["run", "--root"],
            &["run", "--wait", "x"],
            &["run", "--wait", "inf"],
            &["run", "--wait", "1e3"],
            &["run", "--wait=0.25", "--log-level=debug"],
            &["run", "--log-level", "ERROR"],
            &["run", "--network-backend", "NetworkManager"],
            &["run", "--network-backend", "networkmanager"],
            &["run", "--network-backend", "netplan", "--user=a=b"],
            &["run", "-j"],
            &["run", "x"],
            &[
                "run",
                "--source",
                "/dev/sr0",
                "--mount",
                "--dry-run",
                "--defer-scripts",
            ],
        ] {
            if let Some(plain) = Cli::parse_run_plain(&argv(a)) {
                let full = Cli::try_parse_from(argv(a))
                    .unwrap_or_else(|e| panic!("{a:?}: plain read, clap: {e}"));
                assert_eq!(format!("{plain:?}"), format!("{full:?}"), "{a:?}");
            }
        }
        // A plain boot line is read without clap.
        assert!(
            Cli::parse_run_plain(&argv(&["run", "--log-level", "error", "--root", "/"])).is_some()
        );
    }

    #[test]
    fn help_version_errors_and_other_commands_go_through_the_whole_tree() {
        for a in [
            &["run", "--help"][..],
            &["run", "-h"],
            &["run", "--version"],
            &["run", "-V"],
            &["run", "--bogus"],
            &["run", "--network-backend", "nope"],
            &["run", "extra"],
            &["run", "--", "x"],
            &["--log-level", "debug", "run"],
            &["plan"],
            &["status"],
            &[],
        ] {
            assert!(Cli::parse_run_plain(&argv(a)).is_none(), "{a:?}");
        }
    }
}
