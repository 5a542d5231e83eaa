//! The pipeline as a library call: locate (probe or an explicit source) -> read -> parse ->
//! trust (duplicates, DMI binding, pinning) -> host facts -> plan -> apply -> status record ->
//! exit decision. `run`, `show`, `plan`, `probe`, `net_render`, `scripts` and `reclaim` are
//! what the CLI (and the Windows service) call. No argument parsing and no printing here: every
//! outcome is returned as data for the face to print. Writes only through `apply`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::apply::{self, ApplyReport, Outcome, Target};
use crate::config::Config;
use crate::media::{self, DriveFiles, Limits};
use crate::model::{Instance, Report};
use crate::net::{self, naming, render, Backend, InputFormat};
use crate::plan::{self, Plan};
use crate::platform::{self, ProbeRoots};
use crate::probe::cmdline::{self, KernelArgs};
use crate::probe::trust::{self, Pin, PinDecision, Refusal};
use crate::probe::{BlockDevice, Candidate};
use crate::source;
use crate::state;
use crate::status::{self, Status};
use crate::{Error, Exit};

pub(crate) mod rerun;

/// Where the drive comes from and which settings apply: the part of every command that
/// locates and reads a drive.
#[derive(Debug, Clone)]
pub struct Locate {
    /// An explicit drive (block device, image file or directory); `None`: probe for one.
    pub source: Option<PathBuf>,
    /// Read by mounting instead of with primer's own readers.
    pub mount: bool,
    /// The configuration file [default: `<root>/etc/primer/primer.yaml` when present].
    pub config: Option<PathBuf>,
    /// How long to wait for a late drive [default: the configuration's].
    pub wait: Option<Duration>,
    /// Where the probe enumerates block devices (sysfs and the device nodes).
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
}

impl Default for Locate {
    fn default() -> Self {
        Locate {
            source: None,
            mount: false,
            config: None,
            wait: None,
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
        }
    }
}

impl Locate {
    fn probe_roots(&self, root: &Path) -> ProbeRoots {
        ProbeRoots {
            sys: self.sys_root.clone(),
            dev: self.dev_root.clone(),
            root: root.to_path_buf(),
        }
    }
}

/// What to plan for: the drive, the target root and the operator's overrides.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub locate: Locate,
    /// The system to configure: `/` for the running machine, or a mounted image.
    pub root: PathBuf,
    /// Account that receives the drive's SSH keys [default: the configuration's].
    pub user: Option<String>,
    /// Network backend to render for, instead of the configured or detected one.
    pub network_backend: Option<Backend>,
    /// Store per-instance scripts but leave running them to `scripts`.
    pub defer_scripts: bool,
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
    // Through the platform: on Windows a raw volume needs sector-aligned reads.
    let file = crate::platform::open_device(Path::new(&c.device.path)).map_err(|e| {
        media::MediaError::Io {
            device: device.clone(),
            source: e,
        }
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

/// The pinning record under `root`, when there is a readable one.
fn read_pin(root: &Path) -> Option<Pin> {
    use std::io::Read;
    let p = crate::paths::resolve_in_root(root, &state::pin_path()).ok()?;
    let mut v = Vec::new();
    std::fs::File::open(p)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut v)
        .ok()?;
    match serde_json::from_slice(&v) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("{}: unreadable pinning record: {e}", state::pin_path());
            None
        }
    }
}

/// The running kernel's command line as primer reads it (`primer=off`, `primer.source=`,
/// `ds=nocloud;...`); what it ignores is logged as warnings. Empty when there is none.
pub fn kernel_args() -> KernelArgs {
    let a = platform::kernel_cmdline()
        .map(|t| cmdline::parse_cmdline(&t))
        .unwrap_or_default();
    for w in &a.warnings {
        tracing::warn!("kernel command line: {w}");
    }
    a
}

/// Waits (bounded by `wait`) for a path named on the kernel command line to appear: at early
/// boot the device node of `primer.source=/dev/vdb` may not exist yet.
fn wait_for_path(p: &Path, wait: Duration) {
    if p.exists() || wait.is_zero() {
        return;
    }
    let _progress = crate::progress::Progress::start(format!("waiting for {}", p.display()));
    let start = Instant::now();
    while !p.exists() && start.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The NoCloud meta-data the command line gives (`ds=nocloud;h=...;i=...`) as a drive of its
/// own: what is used when no seed and no drive exist. JSON is YAML, and serde escapes every
/// character: the values reach the parser as the strings they are, never as YAML syntax.
fn cmdline_drive(k: &KernelArgs) -> DriveFiles {
    let mut md = serde_json::Map::new();
    if let Some(i) = &k.instance_id {
        md.insert("instance-id".into(), i.clone().into());
    }
    if let Some(h) = &k.hostname {
        md.insert("local-hostname".into(), h.clone().into());
    }
    let mut d = DriveFiles::new("kernel command line", "cmdline");
    d.files.insert(
        "meta-data".into(),
        serde_json::Value::Object(md)
            .to_string()
            .into_bytes()
            .into(),
    );
    d
}

/// Reads the drive named by `locate.source`, or the best probe candidate the trust policy
/// accepts (waiting for a late device up to the deadline). `Ok(None)`: no drive. `root` is the
/// target system: its configuration, DMI data and pinning record are used. Without
/// `--source`, the kernel command line may name the drive (see [`load_with`]).
pub fn load(locate: &Locate, root: &Path) -> Result<Option<Loaded>, Error> {
    let kernel = if locate.source.is_none() {
        kernel_args()
    } else {
        KernelArgs::default()
    };
    load_with(locate, root, &kernel)
}

/// [`load`] with the kernel command line already read. Precedence: `--source` >
/// `primer.source=PATH` > `ds=nocloud;s=SEED` > probing. `ds=nocloud;h=HOST;i=ID` (cloud-init's
/// short keys for `local-hostname` and `instance-id`) override a NoCloud drive's values, and
/// make a drive of their own when nothing else is found. `--source` ignores the command line.
pub fn load_with(
    locate: &Locate,
    root: &Path,
    kernel: &KernelArgs,
) -> Result<Option<Loaded>, Error> {
    let config = Config::load(locate.config.as_deref(), root)?;
    let limits = Limits::default();
    let rules = config.probe.rules();
    let mount = locate.mount || config.probe.mount;
    let wait = locate.wait.unwrap_or(config.probe.wait());
    let named = match &locate.source {
        Some(p) => Some((p.clone(), format!("--source {}", p.display()))),
        None => match (&kernel.source, &kernel.seed) {
            (Some(p), _) => Some((
                PathBuf::from(p),
                format!("kernel command line primer.source={p}"),
            )),
            (None, Some(p)) => Some((
                PathBuf::from(p),
                format!("kernel command line ds=nocloud;s={p}"),
            )),
            (None, None) => None,
        },
    };
    let from_kernel = locate.source.is_none();
    let mut from_cmdline_data = false;
    let (drive, origin, candidate) = match &named {
        Some((p, origin)) => {
            if from_kernel {
                tracing::info!("using the drive named on the {origin}");
                wait_for_path(p, wait);
            }
            let drive = if mount {
                read_source_mounted(p, &limits)?
            } else {
                crate::probe::image::read_source_opened(
                    p,
                    &limits,
                    &rules,
                    config.probe.duplicates,
                    platform::open_device,
                )?
            };
            (drive, origin.clone(), None)
        }
        None => {
            let probe = platform::probe_devices(&locate.probe_roots(root), &rules, wait);
            match trust::select(&probe.candidates, config.probe.duplicates) {
                Ok(Some(b)) => {
                    let best = b.clone();
                    tracing::info!("using {}", best.reason);
                    (
                        read_candidate(&best, &limits, mount)?,
                        best.reason.clone(),
                        Some(best),
                    )
                }
                Ok(None) if kernel.nocloud && kernel.names_data() => {
                    tracing::info!(
                        "no drive: using the NoCloud meta-data of the kernel command line"
                    );
                    // Through the same checks as a drive below (DMI binding, pinning).
                    from_cmdline_data = true;
                    (
                        cmdline_drive(kernel),
                        "kernel command line ds=nocloud".into(),
                        None,
                    )
                }
                Ok(None) => return Ok(None),
                Err(r) => return Err(refuse(r)),
            }
        }
    };
    for s in &drive.skipped {
        tracing::warn!("{}: {}: skipped: {}", drive.device, s.path, s.reason);
    }
    let (mut instance, report) = source::parse_drive(&drive)?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let dmi_uuid = config
        .probe
        .bind_dmi_uuid
        .then(|| platform::system_uuid(root));
    if let Some(uuid) = &dmi_uuid {
        // The drive's own id first: a command line `i=` may not stand in for a drive that is
        // not bound to this machine (the final id is checked again below).
        trust::check_dmi(&instance.instance_id, uuid.as_deref()).map_err(refuse)?;
    }
    if from_kernel
        && !from_cmdline_data
        && (kernel.hostname.is_some() || kernel.instance_id.is_some())
    {
        if instance.format == crate::model::Format::NoCloud {
            // The command line's values win over the seed's, as in cloud-init. Checked where
            // they land, as the drive's own are (planning: the host name; state: the id).
            if let Some(h) = &kernel.hostname {
                instance.hostname = Some(h.clone());
            }
            if let Some(i) = &kernel.instance_id {
                instance.instance_id = i.clone();
            }
            tracing::info!(
                "NoCloud meta-data from the kernel command line applied over the drive's"
            );
        } else {
            tracing::warn!(
                "kernel command line: ds=nocloud host name or instance id ignored: the drive is \
                 {} ({}), not NoCloud",
                drive.device,
                instance.format
            );
        }
    }
    if let Some(uuid) = &dmi_uuid {
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
            // The operator named the drive with --source: pinning guards the probe's choice.
            None if !from_kernel => {
                tracing::info!("pinning: not checked for an explicit --source")
            }
            // Named by the kernel command line (a drive path, a seed directory or meta-data):
            // not a probe candidate, so it cannot be pinned; once a drive is pinned it is a new
            // drive like any other, refused unless pin_allow_new.
            None => match read_pin(root) {
                Some(p) if !config.probe.pin_allow_new => {
                    return Err(refuse(trust::Refusal {
                        rule: "pinning",
                        detail: format!(
                            "{origin} is not the drive pinned at first boot ({} drive on {}, \
                             instance {}); set probe.pin_allow_new: true to accept a new drive",
                            p.kind.name(),
                            p.device,
                            crate::model::grammar::Esc(&p.instance_id)
                        ),
                    }))
                }
                _ => tracing::warn!(
                    rule = "pinning",
                    "pinning: {origin} is named on the kernel command line, not probed: not pinned"
                ),
            },
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

/// What `probe` found: every device, the ranked candidates and the trust policy's decision.
pub struct Probed {
    pub devices: Vec<BlockDevice>,
    pub candidates: Vec<Candidate>,
    /// The candidate the trust policy selects (`None`: no candidate), or its refusal.
    pub decision: Result<Option<Candidate>, Refusal>,
    pub exit: Exit,
}

/// `probe`: enumerates block devices and ranks the candidates (waiting up to `locate.wait`,
/// default no wait). Reads two small blocks per device; mounts and writes nothing.
pub fn probe(locate: &Locate) -> Result<Probed, Error> {
    let root = Path::new("/");
    let config = Config::load(locate.config.as_deref(), root)?;
    let wait = locate.wait.unwrap_or(Duration::ZERO);
    let probe = platform::probe_devices(&locate.probe_roots(root), &config.probe.rules(), wait);
    let decision = trust::select(&probe.candidates, config.probe.duplicates).map(|c| c.cloned());
    if let Err(r) = &decision {
        tracing::warn!(rule = r.rule, "{r}");
    }
    // The trust policy's refusal is the outcome `run` would have: exit 12.
    let exit = if probe.candidates.is_empty() {
        Exit::NoDrive
    } else if decision.is_err() {
        Exit::Refused
    } else {
        Exit::Changed
    };
    Ok(Probed {
        devices: probe.devices,
        candidates: probe.candidates,
        decision,
        exit,
    })
}

/// A drive as `show` presents it: the parsed drive and the digest it may show of each file.
pub struct Shown {
    pub loaded: Loaded,
    /// SHA-256 of every file, except that a file carrying a password shows none (a bare SHA-256
    /// of a short password file is a password hash anyone can brute-force).
    pub file_sha256: BTreeMap<String, String>,
}

/// `config show`: the configuration as every command loads it, with where each value came from.
pub fn config(explicit: Option<&Path>, root: &Path) -> Result<crate::config::Layered, Error> {
    Ok(crate::config::load_layered(explicit, root)?)
}

/// `show`: reads and parses the drive (`Ok(None)`: no drive); with `digests`, the digest of
/// each file it may show (an empty map otherwise: the text form shows none). Changes nothing.
pub fn show(locate: &Locate, digests: bool) -> Result<Option<Shown>, Error> {
    let Some(loaded) = load(locate, Path::new("/"))? else {
        return Ok(None);
    };
    if !digests {
        return Ok(Some(Shown {
            loaded,
            file_sha256: BTreeMap::new(),
        }));
    }
    // Parsed whatever `user_data:` says: only to know which files carry a password.
    let (ud, _) = source::userdata::parse_instance_user_data(
        &loaded.instance,
        &source::userdata::UserDataLimits::default(),
    );
    let scrubber = plan::scrub::Scrub::new(&loaded.instance, &ud);
    let file_sha256 = crate::sort::map(
        loaded
            .drive
            .files
            .iter()
            .map(|(p, d)| (p.clone(), scrubber.shown_sha256(p, d))),
    );
    Ok(Some(Shown {
        loaded,
        file_sha256,
    }))
}

/// Whether `root` is the running system (`/`): live actions (host name, entropy, scripts)
/// apply only there.
pub fn is_live(root: &Path) -> bool {
    // Linux: `/`. Windows: the system drive's root (`%SystemDrive%\`, what the service passes);
    // both sides canonicalised, as `\\?\C:\`.
    #[cfg(windows)]
    let system = std::fs::canonicalize(platform::system_root()).ok();
    #[cfg(not(windows))]
    let system = Some(std::path::PathBuf::from("/"));
    // A root that is not the same directory as `/` (device and inode) is not `/`: two lookups
    // instead of one per component of its canonical path. The same one (or a bind mount of
    // it) is told apart by canonicalising, as before.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        if root != Path::new("/") && id(root) != id(Path::new("/")) {
            return false;
        }
    }
    std::fs::canonicalize(root).is_ok_and(|p| Some(p) == system)
}

/// Reads the host facts and plans `loaded` for `req.root`; the pin, when there is one to
/// record, is the plan's last step. A run that will apply takes the run lock before this.
pub fn make_plan(req: &PlanRequest, loaded: &Loaded) -> Plan {
    make_plan_live(
        req,
        loaded,
        is_live(&req.root),
        &crate::paths::Resolver::new(&req.root),
    )
}

/// [`make_plan`] for a root already known to be the running system (`live`) or not: `run`
/// resolves the root once (canonicalising it costs a lookup per path component). The host facts
/// are read through `lookups` (rooted at `req.root`), which `run` hands on to its writers.
fn make_plan_live(
    req: &PlanRequest,
    loaded: &Loaded,
    live: bool,
    lookups: &crate::paths::Resolver,
) -> Plan {
    make_plan_inputs(req, loaded, live, lookups).0
}

/// [`make_plan_live`], also giving what the host facts rested on (for the re-run fast path).
fn make_plan_inputs(
    req: &PlanRequest,
    loaded: &Loaded,
    live: bool,
    lookups: &crate::paths::Resolver,
) -> (Plan, crate::facts::Inputs) {
    let mut policy = loaded.config.policy();
    if let Some(u) = &req.user {
        policy.ssh_user = u.clone();
        policy.ssh_user_from_default = false;
    }
    if req.network_backend.is_some() {
        policy.network.backend = req.network_backend;
    }
    policy.defer_scripts = req.defer_scripts;
    // User-data is parsed once per run: the facts it names and the plan share the parse.
    let parsed = plan::parse_user_data(&loaded.instance, &policy);
    // The network input too: its MACs name facts, its configuration the plan's steps.
    let net = plan::network::parse_network_input(&loaded.instance, &loaded.drive);
    let facts = crate::facts::read_host_facts_in(
        lookups,
        &plan::wanted_parsed(&loaded.instance, &policy, &parsed.0, net.as_ref()),
        live,
    );
    let mut plan = plan::plan_parsed(
        &loaded.instance,
        &loaded.drive,
        &facts,
        &policy,
        parsed,
        net,
    );
    // A drive refused whole (its instance id cannot name primer's state) is never pinned.
    if let Some(pin) = loaded
        .pin
        .as_ref()
        .filter(|_| state::invalid_instance_id(&loaded.instance.instance_id).is_none())
    {
        plan::add_pin(&mut plan, pin);
    }
    (plan, facts.inputs)
}

/// `plan`: the drive and its plan (`Ok(None)`: no drive). Changes nothing.
pub fn plan(req: &PlanRequest) -> Result<Option<(Loaded, Plan)>, Error> {
    let Some(loaded) = load(&req.locate, &req.root)? else {
        return Ok(None);
    };
    let plan = make_plan(req, &loaded);
    Ok(Some((loaded, plan)))
}

/// What a run did.
pub enum RunOutcome {
    /// `primer=off` on the kernel command line: nothing read, nothing written.
    Off,
    /// No drive was found. `exit` is `NoDrive`, or `Partial` when the status could not be
    /// written (logged, naming the file).
    NoDrive { exit: Exit },
    /// `--dry-run`: the plan, nothing applied.
    Planned { loaded: Loaded, plan: Plan },
    /// The plan was applied; `report` has a line per step (and `status` when the status
    /// record failed).
    Applied {
        loaded: Loaded,
        plan: Plan,
        report: ApplyReport,
        exit: Exit,
    },
}

impl RunOutcome {
    pub fn exit(&self) -> Exit {
        match self {
            RunOutcome::NoDrive { exit } | RunOutcome::Applied { exit, .. } => *exit,
            RunOutcome::Planned { .. } | RunOutcome::Off => Exit::Changed,
        }
    }
}

/// `run`: the whole pipeline. With `dry_run` it stops after planning.
pub fn run(req: &PlanRequest, dry_run: bool) -> Result<RunOutcome, Error> {
    let started = (SystemTime::now(), Instant::now());
    let root = &req.root;
    let kernel = kernel_args();
    // `primer=off` switches the units off by their condition; a run started another way (by
    // hand, from a script) honours it too. A dry run changes nothing anyway: it goes on.
    if kernel.off && !dry_run {
        tracing::info!("primer=off on the kernel command line: nothing done this boot");
        return Ok(RunOutcome::Off);
    }
    // A root that is not there is the caller's mistake: said so, naming the option, instead of
    // the first temporary file primer fails to create inside it.
    if !dry_run {
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Unsupported(format!(
                    "--root {}: not a directory",
                    root.display()
                )))
            }
            Err(e) => {
                return Err(Error::Unsupported(format!(
                    "--root {}: {e}",
                    root.display()
                )))
            }
        }
    }
    let kernel = if req.locate.source.is_none() {
        kernel
    } else {
        KernelArgs::default()
    };
    let loaded = match load_with(&req.locate, root, &kernel) {
        Ok(l) => l,
        Err(e) => {
            if !dry_run {
                record_stop(root, started, &e);
            }
            return Err(e);
        }
    };
    let Some(loaded) = loaded else {
        if dry_run {
            return Ok(RunOutcome::NoDrive {
                exit: Exit::NoDrive,
            });
        }
        let ms = elapsed_ms(started.1);
        // Only a root primer already keeps state in gets a status (and so the lock).
        let lock = root
            .join(state::STATE_DIR)
            .is_dir()
            .then(|| take_lock(root))
            .transpose()?;
        let previous = previous_applied(root);
        if let Some(lock) = &lock {
            lock.sweep([]);
        }
        let exit = match record_status(
            root,
            status::no_drive_status(started.0, ms, previous).into(),
            false,
        ) {
            Ok(()) => Exit::NoDrive,
            // Logged (naming the file) by record_status: the run is partial.
            Err(_) => Exit::Partial,
        };
        return Ok(RunOutcome::NoDrive { exit });
    };
    if dry_run {
        let plan = make_plan(req, &loaded);
        return Ok(RunOutcome::Planned { loaded, plan });
    }
    // A drive whose instance id cannot name primer's state changes nothing (the planner refuses
    // every step): it takes no lock, so it writes nothing. Decided once.
    let refused = state::invalid_instance_id(&loaded.instance.instance_id).is_some();
    // One resolver for the run: the lock, the host facts, the sweep and the writer share its
    // memo (no path looked up once is looked up again; nothing changes the tree in between
    // but primer, which holds the lock). The writer's group rule is the platform's.
    let lookups = crate::paths::Resolver::with_group_rule(root, platform::hands_group_down);
    // The lock before the facts: a second run waits for the first, then plans against the
    // finished state (a plan made before the other run wrote would be stale).
    let lock = if refused {
        apply::RunLock::none(root)
    } else {
        // The error names the lock file (or the directory that could not be made).
        apply::RunLock::take_in(&lookups, apply::LOCK_WAIT)?
    };
    let live = is_live(root);
    // The instance the status on disk names, for a run that ends up writing nothing else
    // (`record_status_in`). Read now, before the facts and the plan, not once the run is
    // done: the whole status is read for it (7 MiB for 28,000 steps), and at the end it was
    // held on top of the plan and the report at their largest (issue 15: a re-run's peak RSS).
    // The same answer: the lock is held, and nothing but this run's own status write replaces
    // the file.
    let recorded = (!refused).then(|| status::recorded_instance_in(&lookups));
    // The re-run fast path (`rerun`): after a run that changed nothing, with every input as
    // that run left it (files by their metadata, the kernel's host name and NICs read again),
    // its report stands for this run's (checked under the lock, so no other run changes the
    // state in between). Any doubt: the full path.
    let key = (!refused)
        .then(|| rerun::key(req, &kernel, &loaded, started.0))
        .flatten();
    let fast = key.as_deref().and_then(|k| rerun::check(&lookups, k, live));
    let (plan, inputs, fast_report) = match fast {
        Some(f) => {
            lock.sweep_in(&lookups, f.sweep.iter().map(String::as_str), false);
            (f.plan, None, Some(f.report))
        }
        None => {
            // The full path allocates enough for the heap pre-fault to pay (`main`).
            #[cfg(target_os = "linux")]
            platform::start::prefault_heap_for_full_run();
            let (plan, inputs) = make_plan_inputs(req, &loaded, live, &lookups);
            lock.sweep_in(
                &lookups,
                plan.steps
                    .iter()
                    .filter_map(|s| apply::action_path(&s.action)),
                plan.steps.iter().any(|s| s.change.acts()),
            );
            (plan, Some(inputs), None)
        }
    };
    // This boot's id, read once for the status whichever way it is written.
    let boot_id = if refused { None } else { platform::boot_id() };
    let target = Target {
        root: root.clone(),
        live,
    };
    let applied_at = SystemTime::now();
    let warnings: Vec<String> = loaded
        .report
        .warnings
        .iter()
        .chain(&plan.warnings.warnings)
        .map(|w| w.to_string())
        .collect();
    let facts = StatusFacts {
        started,
        applied: applied_at,
        loaded: &loaded,
        drive_sha256: plan.drive_sha256.as_deref().unwrap_or_default(),
        warnings: &warnings,
    };
    let (mut report, status_written) = if let Some(report) = fast_report {
        // What apply logs of a plan that changes nothing: a debug line per step.
        for (id, _, detail) in report.steps(&plan.steps) {
            tracing::debug!(step = %id, "{}", detail);
        }
        (report, false)
    } else if refused {
        apply::apply_plan_recorded(&plan, &target, &lock, None, lookups.clone())
    } else {
        // The status goes into the flush of the run's files (see `apply_plan_recorded`).
        // Streamed into its staged file by the writer (never one buffer), its steps read
        // from the plan and the results as it is written (never copied).
        let doc = |steps: &dyn apply::StepSource, out: &mut dyn std::io::Write| {
            let mut s = facts.status(steps, run_exit(steps), None);
            s.status.boot_id = boot_id.clone();
            crate::model::bytes::WriteOut::write_out(&s, out)
        };
        apply::apply_plan_recorded(&plan, &target, &lock, Some(&doc), lookups.clone())
    };
    let mut exit = if refused {
        // The drive is refused whole (its plan is that one error step): nothing was applied.
        Exit::Error
    } else {
        run_exit(&report.of(&plan.steps))
    };
    if !status_written {
        let previous = if refused {
            previous_applied(root)
        } else {
            None
        };
        let changed = report.count(Outcome::Changed) > 0;
        let boot = if refused {
            platform::boot_id()
        } else {
            boot_id
        };
        // Through the run's resolver (its memo kept true by the writer): the state directories
        // are not looked up again.
        if let Err(e) = record_status_in(
            root,
            facts.status(&report.of(&plan.steps), exit, previous),
            changed,
            boot,
            Some(&lookups),
            recorded,
        ) {
            // The status is part of the run: a run whose status was not written is partial.
            report.push(apply::StepReport {
                id: "status".into(),
                outcome: Outcome::Failed,
                detail: e,
            });
            if !matches!(exit, Exit::Error) {
                exit = run_exit(&report.of(&plan.steps));
            }
        }
    }
    // A full run that changed nothing: what the next one needs to take the fast path.
    if let (Some(k), Some(inputs), Exit::Unchanged) = (&key, &inputs, exit) {
        match rerun::save(
            &lookups,
            k,
            inputs,
            &plan,
            &report,
            started.0,
            live,
            rerun::MAX_CACHE,
        ) {
            Ok(saved) => tracing::debug!("re-run fast path recorded: {saved}"),
            // Only the next run's speed depends on it.
            Err(e) => tracing::debug!("re-run fast path not recorded: {e}"),
        }
    }
    // A run with a failed step (its status included) may have left something: the marker
    // stays as it is (`RunLock`).
    lock.finish(report.count(Outcome::Failed) == 0);
    // The run's one summary line (stdout under the journal does not repeat it).
    tracing::info!(
        outcome = exit.name(),
        "summary: {} changed, {} unchanged, {} skipped, {} failed",
        report.count(Outcome::Changed),
        report.count(Outcome::Unchanged),
        report.count(Outcome::Skipped),
        report.count(Outcome::Failed)
    );
    Ok(RunOutcome::Applied {
        loaded,
        plan,
        report,
        exit,
    })
}

/// Longest error message a status records, in characters.
const MAX_STOP_MESSAGE: usize = 1024;

/// Records the status of a run that stopped before planning (`error`: the configuration or
/// the drive could not be read; `refused`: the trust policy refused the drive), so that
/// `status --wait` and `status` report this boot's outcome. Best effort: the run fails with
/// `e` anyway, and a status that cannot be written is logged by `record_status`.
fn record_stop(root: &Path, started: (SystemTime, Instant), e: &Error) {
    let exit = match e {
        Error::Refused(_) => Exit::Refused,
        _ => Exit::Error,
    };
    // As for a boot without a drive: only a root primer already keeps state in takes the
    // lock (a second run must not see a half-written status).
    let lock = match root
        .join(state::STATE_DIR)
        .is_dir()
        .then(|| take_lock(root))
    {
        Some(Ok(l)) => Some(l),
        Some(Err(le)) => {
            tracing::warn!("no status recorded for this run: {le}");
            return;
        }
        None => None,
    };
    let previous = previous_applied(root);
    // One line, bounded (`grammar::log_safe`): an error quotes drive strings and paths, and
    // `status` prints it on its `error:` line.
    let msg = crate::model::grammar::log_safe(&e.to_string(), MAX_STOP_MESSAGE).into_owned();
    let s = status::failed_status(started.0, elapsed_ms(started.1), exit, msg, previous);
    let _ = record_status(root, s.into(), false);
    drop(lock);
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The last applied run the status before this run names, when it is readable (a broken one
/// is replaced, with a warning). Only that field is kept of it (`status::read_last_applied`).
fn previous_applied(root: &Path) -> Option<status::LastApplied> {
    status::read_last_applied(root).unwrap_or_else(|e| {
        tracing::warn!("{e}; replacing it");
        None
    })
}

/// What a run's status is made of besides its report's steps.
struct StatusFacts<'a> {
    started: (SystemTime, Instant),
    /// When apply started (the time of every plan step).
    applied: SystemTime,
    loaded: &'a Loaded,
    drive_sha256: &'a str,
    warnings: &'a [String],
}

impl StatusFacts<'_> {
    /// The run's status, its steps read from `report` as it is written.
    fn status<'r>(
        &'r self,
        report: &'r dyn apply::StepSource,
        exit: Exit,
        previous: Option<status::LastApplied>,
    ) -> status::RunStatus<'r> {
        status::run_status(status::RunFacts {
            started: self.started.0,
            applied: self.applied,
            finished: SystemTime::now(),
            duration_ms: elapsed_ms(self.started.1),
            exit,
            origin: &self.loaded.origin,
            drive: &self.loaded.drive,
            drive_sha256: self.drive_sha256,
            instance: &self.loaded.instance,
            // Every step of the report came from the plan (the status step comes later).
            plan_steps: report.step_count(),
            report,
            warnings: self.warnings,
            previous,
        })
    }
}

/// Writes `status.json`; a failure is logged and returned (the message names the file): the
/// caller counts it as a failed step. `changed`: the run wrote something. A run that did not,
/// whose status names the instance the status on disk already names, replaces it without a
/// flush (`status::write_status_unsynced`: a report then, not a decision): a re-run that
/// changes nothing makes no flush.
fn record_status(root: &Path, s: status::RunStatus<'_>, changed: bool) -> Result<(), String> {
    record_status_in(root, s, changed, platform::boot_id(), None, None)
}

/// [`record_status`] with this boot's id already read (`boot_id`) and, for a run, its
/// resolver (`lookups`, rooted at `root`) and the instance the status on disk named when it
/// took the lock (`recorded`: `status::recorded_instance_in`), read now when not given.
fn record_status_in(
    root: &Path,
    mut s: status::RunStatus<'_>,
    changed: bool,
    boot_id: Option<String>,
    lookups: Option<&crate::paths::Resolver>,
    recorded: Option<Option<String>>,
) -> Result<(), String> {
    // The boot it belongs to: `status --wait` tells this boot's run from the last boot's.
    s.status.boot_id = boot_id;
    let recorded = match (recorded, lookups) {
        (Some(r), _) => r,
        (None, Some(l)) => status::recorded_instance_in(l),
        (None, None) => status::recorded_instance(root),
    };
    let quiet = !changed && s.status.current_instance().map(str::to_string) == recorded;
    let r = match lookups {
        Some(l) => status::write_status_in(l, &s, !quiet),
        None if quiet => status::write_status_unsynced(root, &s),
        None => status::write_status(root, &s),
    };
    match r {
        Ok(()) => {
            tracing::debug!("{}: {}", state::status_path(), s.status.outcome);
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
fn run_exit(report: &dyn apply::StepSource) -> Exit {
    if report.count_of(Outcome::Failed) > 0 {
        Exit::Partial
    } else if report.count_of(Outcome::Changed) == 0 {
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

/// Where `net_render` takes the network from.
pub enum NetInput<'a> {
    /// One network file: network_data.json, or network config v1/v2.
    File(&'a Path),
    /// The drive's network data.
    Drive(&'a Locate),
}

/// What `net_render` produced.
pub enum NetRendered {
    NoDrive,
    /// The drive has no network data.
    NoNetwork,
    Files(render::Rendered),
}

/// `net render`: one backend's files for the network of `input`, links named against `root`'s
/// interfaces. Changes nothing.
pub fn net_render(
    input: NetInput<'_>,
    root: &Path,
    backend: Backend,
) -> Result<NetRendered, Error> {
    let (config, report) = match input {
        NetInput::File(p) => {
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
        NetInput::Drive(locate) => {
            let Some(l) = load(locate, root)? else {
                return Ok(NetRendered::NoDrive);
            };
            match plan::network::instance_network(&l.instance, &l.drive)? {
                Some((c, r, _)) => (c, r),
                None => return Ok(NetRendered::NoNetwork),
            }
        }
    };
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let (facts, _) = crate::facts::net::read_net_facts(root, &[], false, Duration::ZERO);
    let names = naming::assign_names_with_drivers(&config, &facts.interfaces, &facts.drivers);
    let opts = render::RenderOptions {
        netplan_renderer: facts.nm_enabled.then(|| "NetworkManager".to_string()),
        eni_resolv_conf: !facts.resolvconf && !facts.resolv_conf_symlink,
    };
    let r = render::try_render(backend, &config, &names, &opts)?;
    for w in &r.warnings {
        tracing::warn!("{backend}: {w}");
    }
    Ok(NetRendered::Files(r))
}

/// What `scripts` did.
pub enum ScriptsOutcome {
    /// No instance is recorded under the root.
    NoInstance,
    Ran {
        instance_id: String,
        report: ApplyReport,
        exit: Exit,
    },
}

/// `scripts`: runs the instance's stored scripts that have not run yet (live system only).
pub fn scripts(
    root: &Path,
    config: Option<&Path>,
    instance: Option<&str>,
) -> Result<ScriptsOutcome, Error> {
    if !is_live(root) {
        return Err(Error::Unsupported(format!(
            "--root {}: scripts run only on the running system (--root /)",
            root.display()
        )));
    }
    let started = Instant::now();
    let config = Config::load(config, root)?;
    let id = match status::chosen_instance(root, instance) {
        Ok(id) => id,
        Err(status::StatusError::NoInstance { .. }) => {
            record_scripts(root, None, None, Exit::Unchanged, started);
            return Ok(ScriptsOutcome::NoInstance);
        }
        Err(e) => return Err(e.into()),
    };
    let target = Target {
        root: root.to_path_buf(),
        live: true,
    };
    let report =
        apply::deferred::run_pending_scripts(&target, &id, config.script_timeout_seconds.max(1));
    let exit = if report.count(Outcome::Failed) > 0 {
        Exit::Partial
    } else if report.count(Outcome::Changed) == 0 {
        Exit::Unchanged
    } else {
        Exit::Changed
    };
    record_scripts(root, Some(&id), Some(&report), exit, started);
    Ok(ScriptsOutcome::Ran {
        instance_id: id,
        report,
        exit,
    })
}

/// Records how `scripts` ended (for `status --wait`). A failure is logged, naming the file; it
/// does not change the scripts' own outcome.
fn record_scripts(
    root: &Path,
    id: Option<&str>,
    report: Option<&ApplyReport>,
    exit: Exit,
    started: Instant,
) {
    let s = status::ScriptsStatus::new(id, report, exit, elapsed_ms(started), platform::boot_id());
    if let Err(e) = status::write_scripts_status(root, &s) {
        tracing::warn!("cannot write /{}: {e}", status::scripts_status_path());
    }
}

/// What `status --wait` saw.
pub enum Waited {
    /// `primer=off` on the running kernel's command line, or `/etc/primer/disabled`: no run
    /// comes this boot.
    Off,
    /// This boot's run has finished (and its scripts, when they run on this system).
    Done {
        last: LastRun,
        scripts: Option<status::ScriptsStatus>,
        exit: Exit,
    },
    /// The time-out passed first; what was there meanwhile (possibly an earlier boot's).
    TimedOut {
        last: Option<LastRun>,
        waiting_for: &'static str,
    },
}

/// Whether `primer-scripts.service` runs on the system under `root` (enabled by its preset or
/// by hand): then this boot's scripts are part of what `status --wait` waits for.
fn scripts_unit_enabled(root: &Path) -> bool {
    [
        "etc/systemd/system/multi-user.target.wants/primer-scripts.service",
        "usr/lib/systemd/system/multi-user.target.wants/primer-scripts.service",
        "lib/systemd/system/multi-user.target.wants/primer-scripts.service",
    ]
    .iter()
    .any(|p| crate::paths::resolve_in_root(root, p).is_ok_and(|p| p.exists()))
}

/// Exit from a recorded exit code (an unknown one is an error).
fn exit_of(code: u8) -> Exit {
    Exit::of_run(code)
}

/// How often `status --wait` looks at the state files: cheap reads, and a provisioning tool
/// learns the outcome within this much.
pub const WAIT_POLL: Duration = Duration::from_millis(200);

/// `status --wait`: returns once this boot's run has recorded its status (its boot id is the
/// running kernel's) and, when primer-scripts.service is enabled and the run recorded an
/// instance, once this boot's scripts have too; or when `timeout` passes. Where no boot id can
/// be read, any recorded run counts. Reads only.
pub fn wait_for_boot(root: &Path, timeout: Duration) -> Result<Waited, Error> {
    let live = is_live(root);
    // Switched off for this boot (kernel command line) or for good (the units' condition
    // file): no run is coming, so there is nothing to wait for.
    let disabled =
        crate::paths::resolve_in_root(root, "etc/primer/disabled").is_ok_and(|p| p.exists());
    if live && (disabled || kernel_args().off) {
        return Ok(Waited::Off);
    }
    let boot = if live { platform::boot_id() } else { None };
    let this_boot = |b: &Option<String>| boot.is_none() || b == &boot;
    let start = Instant::now();
    let mut _progress = None;
    loop {
        // A status being replaced is read whole or not at all (atomic rename); a broken one
        // is waited past like a missing one. One that cannot be read (not root: the state is
        // private) ends the wait at once, naming the file, rather than waiting out the time-out.
        // (Only the error's kind is looked at here; the reads below resolve inside the root.)
        for rel in [state::status_path(), status::scripts_status_path()] {
            let p = root.join(&rel);
            if let Err(e) = std::fs::File::open(&p) {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    return Err(Error::Unsupported(format!(
                        "{}: {e} (primer's state is private: run status --wait as root)",
                        p.display()
                    )));
                }
            }
        }
        let last = last_run(root).ok().flatten();
        let outcome = match &last {
            Some(l) if this_boot(&l.status.boot_id) => {
                let scripts = status::read_scripts_status(root).ok().flatten();
                let scripts = scripts.filter(|s| this_boot(&s.boot_id));
                let expected = l.status.current_instance().is_some() && scripts_unit_enabled(root);
                if scripts.is_some() || !expected {
                    let run = exit_of(l.status.exit_code);
                    // A failed script makes the whole boot's outcome partial.
                    let exit = match scripts.as_ref().map(|s| exit_of(s.exit_code)) {
                        Some(e @ (Exit::Partial | Exit::Error)) => e,
                        _ => run,
                    };
                    Ok((scripts, exit))
                } else {
                    Err("primer-scripts.service")
                }
            }
            _ => Err("primer.service"),
        };
        let waiting_for = match (outcome, last) {
            (Ok((scripts, exit)), Some(last)) => {
                return Ok(Waited::Done {
                    last,
                    scripts,
                    exit,
                })
            }
            (Err(w), l) => {
                if start.elapsed() >= timeout {
                    return Ok(Waited::TimedOut {
                        last: l,
                        waiting_for: w,
                    });
                }
                w
            }
            // An outcome is only made from a recorded run.
            (Ok(_), None) => "primer.service",
        };
        _progress.get_or_insert_with(|| {
            crate::progress::Progress::start(format!("waiting for {waiting_for}"))
        });
        std::thread::sleep(WAIT_POLL.min(timeout.saturating_sub(start.elapsed())));
    }
}

/// What to reclaim.
#[derive(Debug, Clone)]
pub struct ReclaimRequest {
    /// The disk or image file [default: the disk holding the mounted /].
    pub disk: Option<PathBuf>,
    /// Root's partition number (required for an image file).
    pub root_partition: Option<u32>,
    /// Write; without it only the plan is made.
    pub apply: bool,
    /// The system whose state and configuration to use.
    pub root: PathBuf,
    pub config: Option<PathBuf>,
}

/// What `reclaim` did.
pub enum ReclaimOutcome {
    /// `--apply` with `reclaim.enabled: false`: nothing done (exit 13).
    Disabled,
    Done {
        report: Box<crate::disk::Report>,
        exit: Exit,
    },
}

/// `reclaim`: deletes the trailing config partition and grows root (a dry run unless `apply`).
pub fn reclaim(req: &ReclaimRequest) -> Result<ReclaimOutcome, Error> {
    use crate::disk::{Options, Outcome as R};
    let config = Config::load(req.config.as_deref(), &req.root)?;
    if req.apply && !config.reclaim.enabled {
        return Ok(ReclaimOutcome::Disabled);
    }
    let report = crate::disk::reclaim(&Options {
        disk: req.disk.clone(),
        root_partition: req.root_partition,
        root: req.root.clone(),
        apply: req.apply,
        // User-data `growpart`/`resize_rootfs` may turn growth off (never on).
        settings: config.reclaim.settings_at(&req.root),
    })?;
    let exit = match report.outcome {
        R::Planned | R::Changed => Exit::Changed,
        R::Nothing => Exit::NothingToReclaim,
        R::Refused => Exit::ReclaimRefused,
        R::Partial => Exit::Partial,
    };
    Ok(ReclaimOutcome::Done {
        report: Box::new(report),
        exit,
    })
}

/// The last run recorded under a root, with the record of its instance.
pub struct LastRun {
    pub status: Status,
    /// The instance whose record is shown: this run's, or for a run without a drive (or with
    /// an id primer keeps no state for) the last applied one.
    pub id: Option<String>,
    pub record: Option<state::Record>,
}

/// `status`: the last run under `root` (`Ok(None)`: no run recorded). Reads only.
pub fn last_run(root: &Path) -> Result<Option<LastRun>, Error> {
    let Some(status) = status::read_status(root)? else {
        return Ok(None);
    };
    let id = status
        .instance
        .as_ref()
        .map(|i| i.id.as_str())
        .filter(|id| state::invalid_instance_id(id).is_none())
        .or_else(|| status.current_instance())
        .map(str::to_string);
    let record = match id.as_deref() {
        Some(id) => status::read_record(root, id).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            None
        }),
        None => None,
    };
    Ok(Some(LastRun { status, id, record }))
}

/// `query`: one value of the current instance's data (`--sensitive`: root only, checked
/// against this process's effective user).
pub fn query(
    root: &Path,
    key: &str,
    instance: Option<&str>,
    sensitive: bool,
) -> Result<status::QueryResult, Error> {
    status::query(root, key, instance, sensitive, platform::effective_uid())
}

/// Most keys `query --list-keys` lists (a drive's metadata may hold millions).
const MAX_QUERY_KEYS: usize = 100_000;

/// `query --list-keys`: every dotted key `query` answers for an instance (default: the current
/// one), sorted: the instance's own (`hostname`, `meta.role`, `network.0.kind`), then the rest
/// of instance.json under its name (`drive.sha256`). Keys only; values are not returned.
pub fn query_keys(root: &Path, instance: Option<&str>) -> Result<(String, Vec<String>), Error> {
    // `instance` and `drive` are the document's top-level keys: asking for each returns the
    // part `query` itself looks in, so the list matches what `query` finds.
    let id = status::chosen_instance_to_read(root, instance)?;
    let mut keys = Vec::new();
    let mut bytes = 0usize;
    for top in ["instance", "drive"] {
        let v = match status::query(root, top, Some(&id), false, platform::effective_uid()) {
            Ok(r) => r.value,
            Err(Error::Status(status::StatusError::MissingKey { .. })) => continue,
            Err(e) => return Err(e),
        };
        let prefix = if top == "instance" { "" } else { top };
        if !prefix.is_empty() {
            keys.push(prefix.to_string());
        }
        json_keys(&v, prefix, 0, &mut keys, &mut bytes);
    }
    crate::sort::sort(&mut keys);
    keys.dedup();
    Ok((id, keys))
}

/// Total bytes of the listed keys: each key carries its whole dotted path, so a deep chain of
/// long keys (drive meta-data is kept as it came) would cost memory quadratic in the document
/// without this bound.
const MAX_QUERY_KEY_BYTES: usize = 16 << 20;

fn json_keys(
    v: &serde_json::Value,
    prefix: &str,
    depth: usize,
    out: &mut Vec<String>,
    bytes: &mut usize,
) {
    let full = |out: &Vec<String>, bytes: usize| {
        out.len() >= MAX_QUERY_KEYS || bytes >= MAX_QUERY_KEY_BYTES
    };
    if depth > 64 || full(out, *bytes) {
        return;
    }
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let children: Box<dyn Iterator<Item = (String, &serde_json::Value)>> = match v {
        serde_json::Value::Object(m) => Box::new(m.iter().map(|(k, c)| (k.clone(), c))),
        serde_json::Value::Array(a) => {
            Box::new(a.iter().enumerate().map(|(i, c)| (i.to_string(), c)))
        }
        _ => return,
    };
    for (k, c) in children {
        if full(out, *bytes) {
            return;
        }
        let p = join(&k);
        *bytes += p.len();
        out.push(p.clone());
        json_keys(c, &p, depth + 1, out, bytes);
    }
}

/// Largest state or configuration file `collect-logs` copies, and largest journal excerpt.
pub const MAX_COLLECTED_FILE: u64 = 16 << 20;

/// A file of primer's state under `root` (`rel`: `var/lib/primer/...`), read inside the root
/// and bounded; `Ok(None)`: not there. For `collect-logs`.
pub fn read_state_raw(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    let p = crate::paths::resolve_in_root(root, rel).map_err(|e| format!("/{rel}: {e}"))?;
    let f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("/{rel}: {e}")),
    };
    let mut v = Vec::new();
    f.take(MAX_COLLECTED_FILE)
        .read_to_end(&mut v)
        .map_err(|e| format!("/{rel}: {e}"))?;
    Ok(Some(v))
}

/// A file read as it is (configuration files named by `config show`), bounded. A path under
/// `root` is resolved inside it (symlinks re-rooted: an image's link to `/etc/shadow` reads the
/// image's own file, never the host's), and only a regular file is read.
pub fn read_file_raw(root: &Path, path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let path = match path.strip_prefix(root) {
        Ok(rel) if root != Path::new("/") => {
            crate::paths::resolve_in_root(root, &rel.to_string_lossy())
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        _ => path.to_path_buf(),
    };
    let path = path.as_path();
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(format!("{}: not a regular file", path.display())),
        _ => {}
    }
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = Vec::new();
    f.take(MAX_COLLECTED_FILE)
        .read_to_end(&mut v)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v)
}

/// The running kernel's release and version lines (`/proc/sys/kernel/osrelease`, `version`).
pub fn kernel_version() -> Option<String> {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let v = std::fs::read_to_string("/proc/sys/kernel/version").unwrap_or_default();
    Some(format!("{} {}", r.trim(), v.trim()))
}

/// This boot's journal of `units` (`journalctl -b -u U ...`), bounded; `Err`: why there is
/// none (no journalctl, not the running system, journalctl failed).
pub fn journal(root: &Path, units: &[&str]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if !is_live(root) {
        return Err(format!(
            "{} is not the running system: its journal is not this boot's",
            root.display()
        ));
    }
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(["-b", "--no-pager", "-o", "short-iso-precise"]);
    for u in units {
        cmd.args(["-u", u]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("journalctl: {e}"))?;
    let mut v = Vec::new();
    if let Some(o) = child.stdout.take() {
        let _ = o.take(MAX_COLLECTED_FILE).read_to_end(&mut v);
    }
    // A journal past the bound: stop reading and end journalctl.
    let _ = child.kill();
    let status = child.wait().map_err(|e| format!("journalctl: {e}"))?;
    if v.is_empty() && !status.success() {
        return Err(format!("journalctl: {status}"));
    }
    Ok(v)
}

/// Writes `data` to `path` as a new private file (0600 from its creation): through a temporary
/// file beside it, renamed into place; an existing `path` is an error unless `force`.
pub fn write_private(path: &Path, data: &[u8], force: bool) -> Result<(), Error> {
    use std::io::Write;
    let at = |e| crate::apply::fs::at(path, e);
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::Unsupported(format!(
            "{}: exists; give --force to replace it",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // primer's one temporary-name scheme (`paths::temp_name`), which its sweeps recognise.
    let tmp = dir.join(crate::paths::temp_name(&name, std::process::id(), 0));
    // Private from its first instant on every system (Windows: a protected DACL at creation).
    let mut f = platform::create_private_file(&tmp).map_err(|e| crate::apply::fs::at(&tmp, e))?;
    let written = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(at)
        .and_then(|()| {
            if force {
                std::fs::rename(&tmp, path).map_err(at)
            } else {
                platform::rename_noreplace(&tmp, path).map_err(at)
            }
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_stay_within_the_byte_budget() {
        // A 60-level chain of 13 KB keys ending in a 100,000-element list: each element's
        // path is ~800 KB, so without the byte budget the list would take ~80 GB.
        let mut v = serde_json::Value::Array(vec![serde_json::Value::Null; 100_000]);
        for i in 0..60 {
            let mut m = serde_json::Map::new();
            m.insert(format!("{i}{}", "k".repeat(13_000)), v);
            v = serde_json::Value::Object(m);
        }
        let (mut keys, mut bytes) = (Vec::new(), 0usize);
        json_keys(&v, "", 0, &mut keys, &mut bytes);
        let total: usize = keys.iter().map(String::len).sum();
        assert!(total < MAX_QUERY_KEY_BYTES + 1_000_000, "{total}");
        assert!(!keys.is_empty());
    }
}
