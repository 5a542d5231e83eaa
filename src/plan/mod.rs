//! Plan: turns an `Instance`, the drive's files, the host facts and the policy into an ordered
//! list of steps, each with a one-line why. Pure and deterministic (sorted maps, no clock, no
//! randomness, no I/O): the same inputs give the same plan. Idempotence is decided here.

pub mod accounts;
pub mod hostkeys;
pub mod hostname;
pub mod inject;
pub mod keys;
pub mod network;
pub mod password;
pub mod placement;
pub mod scrub;
pub mod system;
pub mod userdata;
pub mod users;
pub mod windows;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};

pub use crate::facts::{FileFact, HostFacts, Meta, PasswdEntry, Wanted, WantedState};
use crate::media::DriveFiles;
use crate::model::grammar::{self, Esc};
use crate::model::userdata::{CcUser, ManageEtcHosts, UserData};
use crate::model::{Instance, Report};
use crate::plan::users::UserDataMode;
use crate::state::{self, PrettyDoc, Record};

/// Choices that are the operator's, not the drive's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The account whose `authorized_keys` receives the drive's SSH keys.
    pub ssh_user: String,
    /// `ssh_user` is root only because nothing chose an account (no `ssh_user`, no `--user`,
    /// no configured default user): a default user that user-data's `user:` names then takes
    /// the drive's keys, as cloud-init gives them to its default user.
    pub ssh_user_from_default: bool,
    pub network: network::NetPolicy,
    pub users: users::UserPolicy,
    /// Leave per-instance scripts to `primer scripts` (the boot unit does: scripts then run
    /// after the network is online, in `primer-scripts.service`).
    pub defer_scripts: bool,
    /// SSH host keys per instance (configuration `ssh_host_keys`).
    pub host_keys: hostkeys::HostKeyPolicy,
    /// Windows targets only (configuration `windows:`).
    pub windows: windows::WindowsPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ssh_user: "root".into(),
            ssh_user_from_default: true,
            network: Default::default(),
            users: Default::default(),
            defer_scripts: false,
            host_keys: Default::default(),
            windows: Default::default(),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    /// Write a whole file atomically.
    WriteFile {
        path: String,
        /// Shared with the instance when the bytes are a drive file's (`model::Bytes`).
        #[serde(skip)]
        content: crate::model::Bytes,
        bytes: usize,
        /// Printed as hex (`--json`); held as the digest: a plan may hold 10,000 of them.
        #[serde(serialize_with = "hex")]
        sha256: [u8; 32],
        #[serde(serialize_with = "octal")]
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Append `content` to `path` (a `write_files` `append`): the writer copies what the file
    /// holds (`base`, re-checked as it is copied) then `content` into a staged file, renamed
    /// over it as any write; neither is held. `bytes` and `sha256` are the appended text's.
    AppendFile {
        path: String,
        /// Boxed: appends are rare, and every step of a plan has the size of its largest action.
        #[serde(skip)]
        base: Box<AppendBase>,
        #[serde(skip)]
        content: crate::model::Bytes,
        bytes: usize,
        /// Printed as hex (`--json`); held as the digest: a plan may hold 10,000 of them.
        #[serde(serialize_with = "hex")]
        sha256: [u8; 32],
        #[serde(serialize_with = "octal")]
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Make sure a directory exists with this mode and owner.
    EnsureDir {
        path: String,
        #[serde(serialize_with = "octal")]
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Remove a file primer owns (a stale file of the local copy).
    RemoveFile { path: String },
    /// Set the running kernel's host name (live system only).
    SetHostname { name: String },
    /// Add the drive's random seed to the kernel's entropy pool (live system only).
    SeedEntropy {
        bytes: usize,
        #[serde(skip)]
        data: crate::model::Secret,
    },
    /// Run a stored script (live system only), after every file of the plan is in place.
    /// `marker` (per-instance scripts) is written, durably, just before the script starts: a
    /// script that was started counts as run for its instance, whatever its exit status and even
    /// if the machine reboots under it.
    RunScript {
        path: String,
        timeout_secs: u64,
        marker: Option<String>,
    },
    /// Write the per-instance record (content settled by apply: failed steps are left out).
    WriteRecord {
        path: String,
        /// Instance, format, version and drive digest; its `steps` map is left empty: the
        /// record's steps are the plan's own ids and inputs, borrowed when it is written
        /// ([`record_view`]), not a second copy of each (a plan may hold 10,000 steps). Boxed,
        /// as `AppendFile`'s base.
        #[serde(skip)]
        record: Box<Record>,
        /// The plan's steps the record keeps (an input, not an error), as indices in id order;
        /// of a repeated id, its last step (as a map built in plan order keeps it).
        #[serde(skip)]
        order: Vec<usize>,
    },
    /// Write account files (passwd, shadow, group, gshadow) under the shadow suite's lock,
    /// refusing if one changed since planning.
    EditAccounts {
        #[serde(serialize_with = "account_paths")]
        writes: Vec<accounts::AccountWrite>,
        /// Written durably to primer's state before the account files (`state::intent_path`):
        /// the accounts this instance sets out to create, so a run stopped between the two
        /// still knows them as its own (see `state::Intent`).
        #[serde(skip)]
        intent: Option<(String, Vec<u8>)>,
    },
    /// Write the pinning record (the drive used at first boot), after every other step
    /// landed: when one failed it is skipped, so a failed first boot is retried unpinned.
    WritePin {
        path: String,
        #[serde(skip)]
        content: Vec<u8>,
    },
    /// Replace the SSH host keys (live system only): generate `types` with the target's
    /// `ssh-keygen` under temporary names, then (when `delete`) remove the image's
    /// `etc/ssh/ssh_host_*key*`, rename the new keys in place and print their fingerprints.
    HostKeys {
        keygen: String,
        delete: bool,
        types: Vec<hostkeys::KeyType>,
    },
    /// Point `path` at `target` (a symbolic link, replaced atomically): `/etc/localtime`.
    Symlink { path: String, target: String },
    /// Make each missing directory (0755 root; existing ones are left as they are): mount
    /// points of user-data `mounts`.
    MakeDirs { paths: Vec<String> },
    /// Run the target's `update-ca-certificates` (live system only), after every file of the
    /// plan is in place.
    UpdateCaCertificates { tool: String },
    /// Windows: set the computer's DNS host name (`SetComputerNameExW`; Windows derives the
    /// NetBIOS name `netbios` from it). Takes effect at the next boot; `reboot`: primer reboots
    /// once the run is recorded (`windows.reboot: when-required`).
    SetComputerName {
        dns_host: String,
        netbios: String,
        reboot: bool,
    },
    /// Windows: make sure the local account `name` exists (`NetUserAdd`), set its password
    /// when the drive gives one (`NetUserSetInfo` level 1003) and, when `admin`, make it a
    /// member of the group whose SID is S-1-5-32-544 (Administrators, by whatever name).
    EnsureWindowsUser {
        name: String,
        #[serde(skip)]
        password: Option<crate::model::Secret>,
        admin: bool,
    },
    /// Windows: grow the volume of drive letter `drive` into the free space after it.
    ExtendVolume { drive: char },
    /// Nothing can be done (see the step's why).
    Nothing,
}

/// What an [`Action::AppendFile`] builds on: what the planner saw there, so a file changed
/// between planning and the write is not silently merged (the writer re-checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendBase {
    /// The file as the facts measured it: missing (it must still be), or of this length and
    /// SHA-256.
    Target(Option<(u64, [u8; 32])>),
    /// What step N of this plan staged at the same path (this run's own write, not yet
    /// renamed in): a `write_files` entry appended to by a later one.
    Step(usize),
}

/// The drive's own steps, whose paths the drive chose: (file, field, what) for warnings.
fn drive_chosen(id: &str) -> Option<(&'static str, &'static str, &'static str)> {
    if id.starts_with("file:") {
        Some(("meta_data.json", "files", "injected file"))
    } else if id.starts_with("write-file:") {
        Some(("user-data", "write_files", "write_files entry"))
    } else {
        None
    }
}

fn account_paths<S: Serializer>(w: &[accounts::AccountWrite], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(w.iter().map(|w| &w.path))
}

fn hex<S: Serializer>(digest: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&state::hex_lower(digest))
}

fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// What the step will change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Create,
    Update,
    Remove,
    Unchanged,
    /// Deliberately not done (e.g. local edits kept).
    Skip,
    /// Cannot be done (e.g. the SSH user does not exist); reported as failed by apply.
    Error,
}

impl Change {
    /// Whether apply has anything to do.
    pub fn acts(self) -> bool {
        matches!(self, Change::Create | Change::Update | Change::Remove)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Stable identifier (`hostname`, `hosts`, `ssh-keys`, `copy:openstack/latest/...`).
    pub id: String,
    pub change: Change,
    pub action: Action,
    /// Why the step is planned: read it with [`Step::why`] (a whole-file step's reason is
    /// rendered from its parts and the step's path).
    pub why: Why,
    /// Hash of the input this step applies, kept in the record (see `state::Record`). Not
    /// printed: for a password it is the crypt hash set.
    pub input: Option<state::Input>,
}

impl Step {
    /// The step's one-line reason, as printed (`--dry-run`, the report, the status).
    pub fn why(&self) -> std::borrow::Cow<'_, str> {
        match (&self.why, &self.action) {
            (Why::Text(t), _) => t.as_str().into(),
            (
                Why::File { what, found },
                Action::WriteFile {
                    path,
                    mode,
                    uid,
                    gid,
                    ..
                },
            ) => {
                let meta = Meta {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                };
                match what.strip_suffix(NAMED) {
                    Some(w) => found.render(&format!("{w} /{path}"), path, meta),
                    None => found.render(what, path, meta),
                }
                .into()
            }
            // Only whole-file steps hold their reason in parts; a `what` ending in NAMED is
            // made only for a `WriteFile` step (`file_step`), whose path completes it.
            (Why::File { what, .. }, _) => {
                debug_assert!(
                    !what.ends_with(NAMED),
                    "a named reason on a step with no path"
                );
                what.trim_end_matches(NAMED).into()
            }
        }
    }
}

impl Serialize for Step {
    /// As the fields were always printed (`--json`): the reason as its text.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Step", 4)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("change", &self.change)?;
        st.serialize_field("action", &self.action)?;
        st.serialize_field("why", &*self.why())?;
        st.end()
    }
}

/// Why a step is planned. A whole-file step (28,000 for 14,000 chained VLANs, 10,000 for as
/// many `write_files` entries) keeps what the file is (one shared text for all the steps of a
/// kind) and what the planner found there, not a text of its own: [`Step::why`] renders it
/// with the step's path, the same text the planner once formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    Text(String),
    File {
        /// Ending in [`NAMED`], the reason's `what` is the text before it then ` /PATH` (the
        /// step's path): a `write_files` entry's (`write_files /srv/x`), shared by every
        /// entry, not a text of its own each (10,000 entries: ~0.5 MB at the first run's
        /// peak; issue 15). A flag beside it would make every step 8 bytes larger.
        what: std::sync::Arc<str>,
        found: Found,
    },
}

/// The end of a shared [`Why::File`] `what` that the step's path follows: NUL, which no `what`
/// held in parts has of its own (`line_safe` refuses control characters).
const NAMED: char = '\0';

impl From<String> for Why {
    fn from(t: String) -> Why {
        Why::Text(t)
    }
}

impl From<&str> for Why {
    fn from(t: &str) -> Why {
        Why::Text(t.to_string())
    }
}

/// What a whole-file step found at its path (see [`Planner::file_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    UpToDate,
    /// Applied before for this instance and changed since: local edits kept.
    ChangedSince,
    /// Applied before for this instance and removed since: not re-created.
    RemovedSince,
    /// The content is right; mode and owner were these.
    Meta(Meta),
    Differs,
    Missing,
}

impl Found {
    fn render(self, what: &str, path: &str, meta: Meta) -> String {
        match self {
            Found::UpToDate => format!("{what}: /{path} is already up to date"),
            Found::ChangedSince => format!("{what}: already applied for this instance and /{path} was changed since; local edits kept"),
            Found::RemovedSince => format!("{what}: already applied for this instance and /{path} was removed since; not re-created"),
            Found::Meta(m) => format!(
                "{what}: /{path} mode/owner {:04o} {}:{} -> {:04o} {}:{}",
                m.mode, m.uid, m.gid, meta.mode, meta.uid, meta.gid
            ),
            Found::Differs => format!("{what}: /{path} differs"),
            Found::Missing => format!("{what}: /{path} does not exist"),
        }
    }
}

/// The record a [`Action::WriteRecord`] of `steps` writes: `record`'s head, and the ids and
/// inputs of the steps `order` names, borrowed from `steps`.
pub fn record_view<'a>(
    steps: &'a [Step],
    record: &'a Record,
    order: &[usize],
) -> state::RecordView<'a> {
    state::RecordView {
        head: record,
        steps: order
            .iter()
            .filter_map(|&i| steps.get(i))
            .filter_map(|s| Some((s.id.as_str(), s.input.as_ref()?)))
            .collect(),
    }
}

/// The step ids of the local copy: `copy:PATH` writes a file of it (PATH relative to the copy's
/// directory), `copy-remove:PATH` removes one no longer on the drive (apply rebuilds the copy
/// as one tree from these; the status printer groups them).
pub const COPY_STEP: &str = "copy:";
pub const COPY_REMOVE_STEP: &str = "copy-remove:";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub instance_id: String,
    pub steps: Vec<Step>,
    /// Warnings raised while planning (sanitised host name, refused keys...).
    pub warnings: Report,
    /// The drive's content hash as the record keeps it (`scrub::drive_hash`); `None` when the
    /// plan stopped before the drive was considered (an unusable instance id).
    pub drive_sha256: Option<String>,
}

impl Plan {
    pub fn count(&self, c: Change) -> usize {
        self.steps.iter().filter(|s| s.change == c).count()
    }
}

const FILE_META: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
};
const PRIVATE_FILE: Meta = Meta {
    mode: 0o600,
    uid: 0,
    gid: 0,
};
const PRIVATE_DIR: Meta = Meta {
    mode: 0o700,
    uid: 0,
    gid: 0,
};
/// Parents primer creates outside its own state (e.g. a missing `/etc`).
pub const PUBLIC_DIR: Meta = Meta {
    mode: 0o755,
    uid: 0,
    gid: 0,
};

/// Default `/etc/hosts` when the target has none.
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// The drive's user-data as the policy takes it (`userdata::user_data`: parsed when the policy
/// applies user-data, empty when it ignores it), with the parser's warnings. A run parses it
/// once, for [`wanted_parsed`] and [`plan_parsed`]: parsing is the costliest pure step of a run
/// with a large cloud-config.
pub fn parse_user_data(instance: &Instance, policy: &Policy) -> (UserData, Report) {
    userdata::user_data(instance, &policy.users)
}

/// Builds the plan. `drive` is the drive the instance was parsed from (its files are copied).
pub fn plan(instance: &Instance, drive: &DriveFiles, facts: &HostFacts, policy: &Policy) -> Plan {
    plan_inner(instance, drive, facts, policy, None, None)
}

/// [`plan`] with the user-data [`parse_user_data`] gave and the network input
/// [`network::parse_network_input`] gave (neither parsed again).
pub fn plan_parsed(
    instance: &Instance,
    drive: &DriveFiles,
    facts: &HostFacts,
    policy: &Policy,
    parsed: (UserData, Report),
    net: Option<network::NetworkInput>,
) -> Plan {
    plan_inner(instance, drive, facts, policy, Some(parsed), Some(net))
}

fn plan_inner(
    instance: &Instance,
    drive: &DriveFiles,
    facts: &HostFacts,
    policy: &Policy,
    parsed: Option<(UserData, Report)>,
    network: Option<Option<network::NetworkInput>>,
) -> Plan {
    let mut p = Planner {
        network,
        facts,
        steps: Vec::new(),
        warnings: Report::default(),
        accounts_now: BTreeMap::new(),
        created_users: Vec::new(),
        ssh_user: Some(policy.ssh_user.clone()),
        keys_for: BTreeMap::new(),
        default_user: None,
        salt: mixed_salt(facts, instance),
        drive_sha256: None,
        last_what: None,
    };
    let id = &instance.instance_id;
    if let Some(reason) = state::invalid_instance_id(id) {
        p.steps.push(Step {
            id: "instance".into(),
            change: Change::Error,
            action: Action::Nothing,
            why: format!(
                "instance id {} is not usable as a directory name: {reason}",
                Esc(id)
            )
            .into(),
            input: None,
        });
        return p.finish(id);
    }
    // Mutable: write_files contents and scripts are moved out of it into their steps.
    let mut ud = match parsed {
        // Ignored user-data is not parsed (the planner only warns that it is left alone).
        Some((ud, report)) if policy.users.user_data == UserDataMode::Apply => {
            p.warnings.warnings.extend(report.warnings);
            ud
        }
        _ => p.user_data(instance, &policy.users),
    };
    if facts.os == crate::facts::TargetOs::Windows {
        // No /etc, no Linux accounts: the Windows steps (`windows::steps`).
        p.plan_windows(instance, drive, &ud, policy);
    } else {
        p.plan_accounts(instance, &ud, &policy.users);
        p.plan_hostname(instance, &ud);
        p.plan_ssh_keys(instance, &ud, policy);
        p.plan_host_keys(&ud, &policy.host_keys);
        p.plan_system(id, &ud);
        p.plan_network(instance, drive, &policy.network);
        // The bulk of a large drive's steps (its injected files, `write_files` entries and the
        // local copy's files, 10,000 for 5,000 injected files) known now: room for them once,
        // not a doubling series whose last buffer is up to half unused (16,384 steps' room
        // for 10,000: 1.4 MB more at a re-run's peak; issue 15). A drive with fewer files than
        // the previous copy removes at least the difference (the common shrink: exactly); past
        // the room the vector would double it all.
        p.steps.reserve_exact(
            instance.files.len()
                + ud.cloud_config.write_files.len()
                + drive.files.len()
                + p.facts.copy_files.len().saturating_sub(drive.files.len())
                + 16,
        );
        p.plan_injected_files(instance, policy.users.files_mode);
        p.plan_write_files(instance, &mut ud);
        p.plan_entropy(instance);
        p.plan_scripts(instance, &mut ud, &policy.users, policy.defer_scripts);
    }
    // The copy and the drive hash leave out every password the drive carries, in user-data the
    // configuration ignores too.
    let ignored;
    let secrets = if policy.users.user_data == UserDataMode::Apply {
        &ud
    } else {
        ignored = scrub::secrets_user_data(instance);
        &ignored
    };
    // Each drive file is scrubbed once, for the drive hash and the local copy both.
    let kept = scrub::Scrub::new(instance, secrets).kept_drive(drive);
    p.plan_local_copy(instance, drive, kept.files, &kept.sha256);
    p.supersede_rewrites();
    p.refuse_shared_paths();
    p.plan_record(instance, &kept.sha256);
    p.drive_sha256 = Some(kept.sha256);
    p.finish(id)
}

/// The facts' random bytes mixed with the drive's `random_seed` (which the kernel only gets
/// when apply runs, after the facts were read).
fn mixed_salt(facts: &HostFacts, instance: &Instance) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(facts.salt);
    if let Some(seed) = &instance.random_seed {
        h.update(seed.expose());
    }
    h.finalize().into()
}

pub fn wanted(instance: &Instance, policy: &Policy) -> Wanted {
    let net = network::parse_network_input(instance, &DriveFiles::default());
    wanted_parsed(
        instance,
        policy,
        &parse_user_data(instance, policy).0,
        net.as_ref(),
    )
}

/// [`wanted`] with the user-data [`parse_user_data`] gave and the network input
/// [`network::parse_network_input`] gave (not parsed again).
pub fn wanted_parsed(
    instance: &Instance,
    policy: &Policy,
    ud: &UserData,
    net: Option<&network::NetworkInput>,
) -> Wanted {
    let mut w = Wanted {
        // Only compared with the drive's bytes: measured, not held.
        measured: instance
            .files
            .iter()
            .filter_map(|f| inject::injected_path(&f.path).ok())
            .collect(),
        key_users: vec![policy.ssh_user.clone()],
        homes: policy
            .users
            .default_user
            .iter()
            .map(|d| (d.name.clone(), None))
            .collect(),
        macs: net
            .map(network::NetworkInput::wanted_macs)
            .unwrap_or_default(),
        net_wait: policy.network.wait,
        state: state::invalid_instance_id(&instance.instance_id)
            .is_none()
            .then(|| WantedState {
                record: state::record_path(&instance.instance_id),
                files: vec![state::intent_path(&instance.instance_id)],
                // Only compared with the run's own (`plan_local_copy`): a large one measured,
                // not held beside it (5,000 injected files: 650 KB twice at a re-run's peak;
                // issue 15).
                compared: vec![state::instance_json_path(&instance.instance_id)],
                dirs: vec![userdata::ran_dir(&instance.instance_id)],
                measured_dirs: vec![userdata::scripts_dir(&instance.instance_id)],
                copy_dir: state::drive_copy_dir(&instance.instance_id),
            }),
        ..Default::default()
    };
    if users::wants_accounts(instance, &policy.users) {
        w.skel = Some(users::SKEL);
        w.files
            .extend(users::ACCOUNT_FACTS.iter().map(|s| s.to_string()));
        // A `write_files` target is only compared with the entry's content (length, then
        // digest): measured, not held, as injected files are, so a re-run of a 64 MiB entry
        // does not hold the file it wrote. An `append` target too (the writer copies it), and
        // searched for the entry's text (appended before?), neither held.
        // The planner refuses appends past `MAX_APPENDS` (counted alike): not searched.
        let cc = &ud.cloud_config;
        let mut appends = 0;
        for (n, f) in cc.write_files.iter().enumerate() {
            if let Ok(path) = inject::injected_path(&f.path) {
                if f.append {
                    appends += 1;
                    if appends <= userdata::MAX_APPENDS {
                        w.appends.push(crate::facts::WantedAppend {
                            step: userdata::write_file_step_id(n, &path),
                            path: path.clone(),
                            text: f.content.clone(),
                        });
                    }
                }
                w.measured.push(path);
            }
        }
        // The drive's admin user, when primer may create it (a refused name is never looked
        // up: its home would be a path the name chose).
        w.homes.extend(
            instance
                .admin_username
                .iter()
                .filter(|_| policy.users.admin_user.create)
                .filter(|n| accounts::check_name(n).is_ok())
                .map(|n| (n.clone(), None)),
        );
        w.homes.extend(
            cc.users
                .iter()
                .filter(|u| !u.is_default())
                // `user:` is always the default user, possibly renamed.
                .chain(cc.user.iter().filter(|u| u.name != CcUser::DEFAULT_NAME))
                .filter(|u| !u.name.is_empty())
                // A home the placement rules refuse is never looked at (nor created).
                .filter(|u| {
                    u.homedir
                        .as_deref()
                        .is_none_or(|h| placement::target_path(h, placement::Use::Home).is_ok())
                })
                .map(|u| (u.name.clone(), u.homedir.clone())),
        );
    }
    if crate::facts::TargetOs::HOST == crate::facts::TargetOs::Windows {
        // The Windows steps compare these (`windows::steps`).
        w.files.push(windows::ADMINS_KEYS.to_string());
        w.files
            .push(crate::net::render::powershell::PATH.to_string());
        if !policy.ssh_user_from_default && windows::check_windows_user(&policy.ssh_user).is_ok() {
            w.files
                .push(format!("Users/{}/.ssh/authorized_keys", policy.ssh_user));
            // Whether Windows made the user's profile yet (`windows::steps`).
            w.present.push(windows::profile_marker(&policy.ssh_user));
        }
    }
    w.files.extend(hostkeys::wanted_files(&policy.host_keys));
    // System keys of user data (README "Cloud-config keys").
    w.files.extend(system::wanted_files(&ud.cloud_config));
    w.present.extend(system::wanted_present(&ud.cloud_config));
    w.present
        .extend(hostkeys::wanted_present(&policy.host_keys));
    w.key_users
        .extend(w.homes.iter().map(|(name, _)| name.clone()));
    crate::sort::sort(&mut w.key_users);
    w.key_users.dedup();
    w
}

/// Appends the pinning step for `pin` (already decided by the trust policy): shown by a dry
/// run, written by apply once every other step of the run landed.
pub fn add_pin(plan: &mut Plan, pin: &crate::probe::trust::Pin) {
    // A plain struct of strings: serialising it cannot fail, but an empty record would only
    // be rejected as unreadable on the next boot, never trusted.
    // Strings and a unit variant only: written whole by the pretty writer (a unit test holds
    // it to serde_json's bytes), with no generic fallback linked in for it.
    let content = state::pretty_json_fast(pin).unwrap_or_default();
    // A step that cannot be done fails the run, and a failed run is never pinned: say so now.
    let refused = plan.steps.iter().find(|s| s.change == Change::Error);
    let (change, why) = match refused {
        Some(s) => (
            Change::Skip,
            format!(
                "not pinned: step {} cannot be done; the next boot retries unpinned",
                s.id
            ),
        ),
        None => (
            Change::Create,
            format!(
                "pinned {} drive {} for later boots",
                pin.kind.name(),
                grammar::log_safe(&pin.device, 200)
            ),
        ),
    };
    plan.steps.push(Step {
        id: "pin".into(),
        change,
        action: Action::WritePin {
            path: state::pin_path(),
            content,
        },
        why: why.into(),
        input: None,
    });
}

struct Planner<'a> {
    facts: &'a HostFacts,
    steps: Vec<Step>,
    warnings: Report,
    /// Account files as earlier steps of this plan leave them (path -> content, None: absent).
    accounts_now: BTreeMap<String, Option<String>>,
    /// Users this plan creates.
    created_users: Vec<PasswdEntry>,
    /// The user whose keys use the plain `ssh-dir`/`ssh-keys` step ids.
    ssh_user: Option<String>,
    /// Keys from user-data per user, planned together with the SSH user's (one block each).
    keys_for: BTreeMap<String, Vec<String>>,
    /// The default user's name as this plan uses it (configuration, adjusted by `user:`).
    default_user: Option<String>,
    /// Random bytes for password salts: the facts' mixed with the drive's random seed.
    salt: [u8; 32],
    drive_sha256: Option<String>,
    /// The network input as the caller parsed it (`Some(None)`: there is none); `None`: not
    /// parsed yet (`plan_network` parses it).
    network: Option<Option<network::NetworkInput>>,
    /// The `what` of the last whole-file step's reason, shared by the next ones that have the
    /// same (every network file, every file of the local copy).
    last_what: Option<std::sync::Arc<str>>,
}

impl Planner<'_> {
    fn finish(mut self, id: &str) -> Plan {
        self.log_safe_texts();
        // The plan lives through apply and recording: not at the doubled capacity it grew to
        // (2,047 `write_files` entries: 4,096 steps' room, ~470 KB of it unused).
        self.steps.shrink_to_fit();
        Plan {
            instance_id: id.to_string(),
            steps: self.steps,
            warnings: self.warnings,
            drive_sha256: self.drive_sha256,
        }
    }

    /// Every warning and step reason log-safe where it leaves the planner (drive paths, names
    /// and values are quoted into them): escaped when it holds a control character, cut when
    /// too long (`grammar::log_safe`).
    fn log_safe_texts(&mut self) {
        crate::source::log_safe_report(&mut self.warnings);
        for s in &mut self.steps {
            // A reason in parts was checked when it was made (`file_step`).
            if let Why::Text(t) = &s.why {
                if let std::borrow::Cow::Owned(safe) = grammar::log_safe(t, 2000) {
                    s.why = Why::Text(safe);
                }
            }
        }
    }

    /// Input recorded for `id` by the previous run, when it equals `input`.
    /// The uid and gid of the account a run of this instance recorded (`state::intent_path`)
    /// that it set out to create for step `id` with `input` (value `INPUT UID:GID`): that run
    /// may have stopped before its record was written.
    fn intent_ids(&self, instance_id: &str, id: &str, input: &str) -> Option<(u32, u32)> {
        let doc = self.facts.files.get(&state::intent_path(instance_id))?;
        let m = serde_json::from_slice::<BTreeMap<String, String>>(&doc.content).ok()?;
        let (recorded, ids) = m.get(id)?.split_once(' ')?;
        let (uid, gid) = ids.split_once(':')?;
        (recorded == input).then_some(())?;
        Some((uid.parse().ok()?, gid.parse().ok()?))
    }

    fn applied_before(&self, id: &str, input: &str) -> bool {
        self.facts
            .record
            .as_ref()
            .and_then(|r| r.steps.get(id))
            .is_some_and(|h| h == input)
    }

    /// Adds a whole-file step: unchanged when content, mode and owner already match; skipped
    /// (local edits kept) when `respect_local` and this same input was applied before.
    #[allow(clippy::too_many_arguments)]
    fn file_step(
        &mut self,
        id: &str,
        path: &str,
        content: impl Into<crate::model::Bytes>,
        meta: Meta,
        input: Option<String>,
        what: &str,
        respect_local: bool,
    ) {
        let content: crate::model::Bytes = content.into();
        let existing = self.facts.files.get(path);
        let applied = || input.as_deref().is_some_and(|i| self.applied_before(id, i));
        let (change, found) = match existing {
            Some(f) if f.holds(&content) && f.meta == meta => (Change::Unchanged, Found::UpToDate),
            Some(_) if respect_local && applied() => (Change::Skip, Found::ChangedSince),
            None if respect_local && applied() => (Change::Skip, Found::RemovedSince),
            Some(f) if f.holds(&content) => (Change::Update, Found::Meta(f.meta)),
            Some(_) => (Change::Update, Found::Differs),
            None => (Change::Create, Found::Missing),
        };
        let why = self.file_why(what, path, found, meta);
        self.steps.push(Step {
            id: id.to_string(),
            change,
            action: Action::WriteFile {
                path: path.to_string(),
                bytes: content.len(),
                // One allocation per digest (a plan may hold 10,000 file steps); a drive file
                // written twice (a script and its local copy) is hashed once.
                sha256: content.sha256(),
                content,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
            },
            why,
            input: input.map(Into::into),
        });
    }

    /// A whole-file step's reason: in parts when its text is log-safe as it is (what
    /// `log_safe_texts` would leave alone: one line, short), the `what` shared with the steps
    /// before that had the same; else the text made safe now.
    fn file_why(&mut self, what: &str, path: &str, found: Found, meta: Meta) -> Why {
        // The longest fixed text of a reason is under 100 bytes.
        let short = what.len() + path.len() + 200 <= 2000;
        if short && grammar::line_safe(what).is_ok() && grammar::line_safe(path).is_ok() {
            // `WHAT /PATH`: `WHAT` shared, the path read from the step when rendered.
            let what: std::borrow::Cow<'_, str> =
                match what.strip_suffix(path).and_then(|w| w.strip_suffix(" /")) {
                    Some(w) => format!("{w}{NAMED}").into(),
                    None => what.into(),
                };
            let what = match &self.last_what {
                Some(w) if **w == *what => std::sync::Arc::clone(w),
                _ => {
                    let w: std::sync::Arc<str> = what.into();
                    self.last_what = Some(std::sync::Arc::clone(&w));
                    w
                }
            };
            return Why::File { what, found };
        }
        let text = found.render(what, path, meta);
        match grammar::log_safe(&text, 2000) {
            std::borrow::Cow::Owned(safe) => Why::Text(safe),
            std::borrow::Cow::Borrowed(_) => Why::Text(text),
        }
    }

    /// The host name: `#cloud-config` `fqdn`, else its `hostname`, else the drive's metadata.
    fn plan_hostname(&mut self, instance: &Instance, ud: &UserData) {
        let cc = &ud.cloud_config;
        let Some((raw, file, field)) = hostname::requested(instance, ud) else {
            return;
        };
        let shown = Esc(raw);
        let Some(mut name) = hostname::sanitize_hostname(raw) else {
            self.warnings.warn(
                file,
                field,
                format!("{shown} has no usable host name characters; host name left as it is"),
            );
            return;
        };
        // A bare user-data `hostname` keeps the metadata's domain, as cloud-init keeps the
        // metadata FQDN in /etc/hosts: `hostname: web` with metadata `web.example.com` is
        // web.example.com, not a bare web.
        if field == "hostname" && file == "user-data" && !name.fqdn.contains('.') {
            let domain = instance
                .hostname
                .as_deref()
                .and_then(hostname::sanitize_hostname)
                .and_then(|m| m.fqdn.split_once('.').map(|(_, d)| d.to_string()));
            if let Some(full) = domain
                .and_then(|d| hostname::sanitize_hostname(&format!("{}.{d}", name.fqdn)))
                .filter(|f| f.short() == name.fqdn && f.fqdn.contains('.'))
            {
                name.fqdn = full.fqdn;
            }
        }
        // Last line of defence before /etc/hostname and the /etc/hosts line: a DNS name.
        if let Err(e) = grammar::dns_name(&name.fqdn) {
            self.warnings.warn(
                file,
                field,
                format!("{shown}: sanitised name {e}; host name left as it is"),
            );
            return;
        }
        for note in &name.notes {
            self.warnings.warn(
                file,
                field,
                format!("{shown}: {note}; using {:?}", name.fqdn),
            );
        }
        let input = Some(state::sha256_hex(name.fqdn.as_bytes()));
        let what = format!("host name {} from the drive", name.fqdn);
        // `preserve_hostname: true` and `manage_etc_hosts` (README "Cloud-config keys").
        let preserve = cc.preserve_hostname == Some(true);
        let skip = |id: &str, why: String| Step {
            id: id.to_string(),
            change: Change::Skip,
            action: Action::Nothing,
            why: why.into(),
            input: None,
        };
        if preserve {
            self.steps.push(skip(
                "hostname",
                format!("user-data preserve_hostname: true: /etc/hostname is the image's (drive name {} not set)", name.fqdn),
            ));
        } else {
            let meta = self
                .facts
                .files
                .get("etc/hostname")
                .map_or(FILE_META, |f| f.meta);
            self.file_step(
                "hostname",
                "etc/hostname",
                format!("{}\n", name.short()).into_bytes(),
                meta,
                input.clone(),
                &what,
                true,
            );
        }
        let (existing, meta) = match self.facts.files.get("etc/hosts") {
            Some(f) => (String::from_utf8_lossy(&f.content).into_owned(), f.meta),
            None => (DEFAULT_HOSTS.to_string(), FILE_META),
        };
        match cc.manage_etc_hosts {
            Some(ManageEtcHosts::Off) => self.steps.push(skip(
                "hosts",
                "user-data manage_etc_hosts: false: /etc/hosts left alone".into(),
            )),
            None if preserve => self.steps.push(skip(
                "hosts",
                "user-data preserve_hostname: true: /etc/hosts left alone (manage_etc_hosts \
                 not given)"
                    .into(),
            )),
            None => {
                let hosts = hostname::render_hosts(&existing, &name);
                self.file_step(
                    "hosts",
                    "etc/hosts",
                    hosts.into_bytes(),
                    meta,
                    input.clone(),
                    &what,
                    true,
                );
            }
            // Re-asserted on every run, as cloud-init renders it on every boot: local edits
            // are not kept.
            Some(ManageEtcHosts::Localhost) => {
                let hosts = hostname::render_hosts(&existing, &name);
                self.file_step(
                    "hosts",
                    "etc/hosts",
                    hosts.into_bytes(),
                    meta,
                    input.clone(),
                    &format!("{what} (manage_etc_hosts: localhost, every run)"),
                    false,
                );
            }
            Some(ManageEtcHosts::Template) => {
                let hosts = hostname::render_hosts_template(&name);
                self.file_step(
                    "hosts",
                    "etc/hosts",
                    hosts.into_bytes(),
                    meta,
                    input.clone(),
                    &format!("{what} (manage_etc_hosts: true, whole file, every run)"),
                    false,
                );
            }
        }
        if self.facts.live && preserve {
            self.steps.push(skip(
                "hostname-live",
                "user-data preserve_hostname: true: the kernel host name is left alone".into(),
            ));
        } else if self.facts.live {
            let short = name.short().to_string();
            let (change, why) = if self.facts.kernel_hostname.as_deref() == Some(short.as_str()) {
                (
                    Change::Unchanged,
                    format!("kernel host name is already {short}"),
                )
            } else if input
                .as_deref()
                .is_some_and(|i| self.applied_before("hostname-live", i))
            {
                (
                    Change::Skip,
                    "kernel host name applied before for this instance and changed since; kept"
                        .to_string(),
                )
            } else {
                (
                    Change::Update,
                    format!(
                        "kernel host name {:?} -> {short}",
                        self.facts.kernel_hostname.as_deref().unwrap_or("")
                    ),
                )
            };
            self.steps.push(Step {
                id: "hostname-live".into(),
                change,
                action: Action::SetHostname { name: short },
                why: why.into(),
                input: input.map(Into::into),
            });
        }
    }

    /// A user of the target, including those this plan creates.
    fn user(&self, name: &str) -> Option<PasswdEntry> {
        self.facts
            .passwd
            .iter()
            .chain(&self.created_users)
            .find(|p| p.name == name)
            .cloned()
    }

    /// The drive's keys (and `#cloud-config` `ssh_authorized_keys`) for the SSH user.
    fn plan_ssh_keys(&mut self, instance: &Instance, ud: &UserData, policy: &Policy) {
        // The default user under the name `user:` gives it, when the SSH user is the
        // configured default user or nothing chose one (`user:` alone names the default
        // user); then the user-data keys of every other account.
        let configured_default = policy.users.default_user.as_ref().map(|d| d.name.as_str());
        let ssh_user = match (&self.default_user, configured_default) {
            (Some(now), Some(conf)) if policy.ssh_user == conf => now.clone(),
            (Some(now), None) if policy.ssh_user_from_default => now.clone(),
            _ => policy.ssh_user.clone(),
        };
        self.ssh_user = Some(ssh_user.clone());
        let extra = self.keys_for.remove(&ssh_user).unwrap_or_default();
        // Root's may carry `disable_root`'s options (users.rs).
        let lines = self.owner_keys(instance, ud, &policy.users, &ssh_user, &extra);
        let md = hostname::meta_names(instance);
        // `users:` without `default` leaves the configured default user out (cloud-init's
        // rule). Where that account does not exist, the drive's keys have no owner: cloud-init
        // gives them to root behind `disable_root`'s refusal, which logs nobody in; primer
        // skips them with a warning rather than fail the boot or open root.
        let default_left_out = self.default_user.is_none()
            && configured_default == Some(policy.ssh_user.as_str())
            && self.user(&ssh_user).is_none();
        if default_left_out && !lines.is_empty() {
            let why = format!(
                "{} SSH key(s) of the drive not installed: user-data `users:` leaves out the \
                 default user {ssh_user:?}, which does not exist (list `default` in `users:`, or \
                 give the keys to a listed user)",
                lines.len()
            );
            self.warnings.warn(md.file, md.keys, why.clone());
            self.steps.push(Step {
                id: "ssh-keys".into(),
                change: Change::Skip,
                action: Action::Nothing,
                why: why.into(),
                input: None,
            });
        } else {
            self.plan_keys_for(&ssh_user, &lines, md.file, md.keys);
        }
        for (user, keys) in std::mem::take(&mut self.keys_for) {
            self.plan_keys_for(&user, &unique_keys(keys.iter()), "user-data", "users");
        }
    }

    /// An `authorized_keys` block of primer's for `user`. The SSH user's steps keep the ids
    /// `ssh-dir`/`ssh-keys`; other users' carry the name.
    fn plan_keys_for(&mut self, user: &str, lines: &[String], file: &str, field: &str) {
        let mut keys = Vec::new();
        for (i, k) in lines.iter().enumerate() {
            match keys::validate_key_line(k) {
                Ok(k) => keys.push(k),
                Err(e) => self.warnings.warn(
                    file,
                    field,
                    format!("key {} refused: {e}: {}", i + 1, Esc(k)),
                ),
            }
        }
        let (dir_id, keys_id) = if self.ssh_user.as_deref().is_none_or(|u| u == user) {
            self.ssh_user = Some(user.to_string());
            ("ssh-dir".to_string(), "ssh-keys".to_string())
        } else {
            (format!("ssh-dir:{user}"), format!("ssh-keys:{user}"))
        };
        let Some(pw) = self.user(user) else {
            if !keys.is_empty() {
                self.steps.push(Step {
                    id: keys_id,
                    change: Change::Error,
                    action: Action::Nothing,
                    why: format!(
                        "{} SSH key(s) for user {user:?}, but /etc/passwd has no such user",
                        keys.len()
                    )
                    .into(),
                    input: None,
                });
            }
            return;
        };
        let home = pw.home.trim_start_matches('/').trim_end_matches('/');
        let ssh_dir = if home.is_empty() {
            ".ssh".to_string()
        } else {
            format!("{home}/.ssh")
        };
        let path = format!("{ssh_dir}/authorized_keys");
        let existing = self.facts.files.get(&path);
        let has_block = existing.is_some_and(|f| {
            String::from_utf8_lossy(&f.content)
                .lines()
                .any(|l| l == keys::BEGIN)
        });
        if keys.is_empty() && !has_block {
            // Nothing to install and nothing of ours to remove: don't create an empty file.
            return;
        }
        let dir_meta = Meta {
            mode: 0o700,
            uid: pw.uid,
            gid: pw.gid,
        };
        let (change, why) = match self.facts.dirs.get(&ssh_dir) {
            Some(m) if *m == dir_meta => (
                Change::Unchanged,
                format!("/{ssh_dir} exists with mode 0700, owner {user}"),
            ),
            Some(m) => (
                Change::Update,
                format!(
                    "/{ssh_dir} mode/owner {:04o} {}:{} -> 0700 {}:{}",
                    m.mode, m.uid, m.gid, pw.uid, pw.gid
                ),
            ),
            None => (Change::Create, format!("/{ssh_dir} does not exist")),
        };
        self.steps.push(Step {
            id: dir_id,
            change,
            action: Action::EnsureDir {
                path: ssh_dir.clone(),
                mode: 0o700,
                uid: pw.uid,
                gid: pw.gid,
            },
            why: why.into(),
            input: None,
        });
        let text = existing
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .unwrap_or_default();
        let content = keys::render_authorized_keys(&text, &keys);
        let input = Some(state::sha256_hex(keys.join("\n").as_bytes()));
        let what = format!("{} SSH key(s) for {user}", keys.len());
        self.file_step(
            &keys_id,
            &path,
            content.into_bytes(),
            Meta {
                mode: 0o600,
                uid: pw.uid,
                gid: pw.gid,
            },
            input,
            &what,
            true,
        );
    }

    fn plan_local_copy(
        &mut self,
        instance: &Instance,
        drive: &DriveFiles,
        kept: Vec<(&str, scrub::Kept<'_>)>,
        drive_sha256: &str,
    ) {
        let dir = state::drive_copy_dir(&instance.instance_id);
        // The drive's paths (borrowed), only when a copy is there to find stale files in: a
        // re-run's 5,000 copy paths were each copied into this set at its peak.
        let mut wanted = BTreeSet::new();
        let find_stale = !self.facts.copy_files.is_empty();
        for (path, data) in kept {
            let dest = format!("{dir}/{path}");
            if find_stale {
                wanted.insert(path);
            }
            // A file kept as the drive has it is written from the drive's buffer (the one the
            // instance holds too): held once, hashed once, streamed when it is on the device.
            let content = match data {
                scrub::Kept::Drive(b) => b.clone(),
                scrub::Kept::Other(v) => v.into(),
            };
            self.file_step(
                &format!("{COPY_STEP}{path}"),
                &dest,
                content,
                PRIVATE_FILE,
                None,
                "local copy of the drive",
                false,
            );
        }
        let prefix = format!("{dir}/");
        for stale in &self.facts.copy_files {
            let under = stale.strip_prefix(prefix.as_str());
            if under.is_some_and(|rel| wanted.contains(rel)) {
                continue;
            }
            let rel = under.unwrap_or(stale);
            self.steps.push(Step {
                id: format!("{COPY_REMOVE_STEP}{rel}"),
                change: Change::Remove,
                action: Action::RemoveFile {
                    path: stale.clone(),
                },
                why: format!("local copy: {rel} is no longer on the drive").into(),
                input: None,
            });
        }
        let json = instance_json(instance, drive, drive_sha256);
        self.file_step(
            "instance-json",
            &state::instance_json_path(&instance.instance_id),
            json,
            PRIVATE_FILE,
            None,
            "normalised instance (secrets redacted)",
            false,
        );
    }

    /// Of the drive's whole-file writes to one path (injected files, `write_files` entries, in
    /// the order they apply), only the last is written: an earlier write, and an `append` onto
    /// it, would be replaced by it anyway. Planned each on its own, they did not converge: two
    /// injected files share one step id, so the record vouched only for the last, and a re-run
    /// wrote the first again over a file the plan had just found up to date for the second
    /// (each later run flipped the file between the two contents). The earlier steps are
    /// skipped, naming the write that replaces them, and keep their input: recorded as if
    /// applied, so should the drive drop the later entry, the file is not overwritten with the
    /// earlier one's content (it holds the later write or a local edit, which primer keeps, as
    /// it did when both were written). A later write that cannot be done (`Change::Error`)
    /// replaces nothing. One pass from the end: O(n log n).
    fn supersede_rewrites(&mut self) {
        let mut last: BTreeMap<&str, usize> = BTreeMap::new();
        let mut replaced: Vec<(usize, usize)> = Vec::new();
        for (i, s) in self.steps.iter().enumerate().rev() {
            if drive_chosen(&s.id).is_none() {
                continue;
            }
            let (path, whole) = match &s.action {
                Action::WriteFile { path, .. } => (path.as_str(), true),
                Action::AppendFile { path, .. } => (path.as_str(), false),
                _ => continue,
            };
            if let Some(&later) = last.get(path) {
                replaced.push((i, later));
            } else if whole && s.change != Change::Error {
                last.insert(path, i);
            }
        }
        drop(last);
        for (i, later) in replaced {
            let path = match &self.steps[i].action {
                Action::WriteFile { path, .. } | Action::AppendFile { path, .. } => path.as_str(),
                _ => "",
            };
            let msg = format!(
                "{}: written again by step {} later in this run (the last write of a path \
                 wins); not written",
                Esc(&format!("/{path}")),
                Esc(&self.steps[later].id)
            );
            let s = &mut self.steps[i];
            s.change = Change::Skip;
            s.why = msg.into();
        }
    }

    /// One pass over every path the plan writes, creates or removes: a path claimed by a step
    /// whose path the drive chose (an injected file, a `write_files` entry) and by one of
    /// primer's own steps (host name, hosts, SSH keys, network, accounts, homes, local copy...)
    /// stays primer's; the drive's step is skipped, with a warning naming both steps and the
    /// path. Whatever the order of the steps, primer's step wins, so a drive cannot override
    /// what primer manages. Of two drive steps on one path the last write wins
    /// (`supersede_rewrites`, cloud-init's order).
    fn refuse_shared_paths(&mut self) {
        /// Each path `a` writes, creates or removes, borrowed from the action (or from
        /// `host_keys`, the paths a host key step replaces).
        fn each_path<'a>(a: &'a Action, host_keys: &'a [String], f: &mut dyn FnMut(&'a str)) {
            match a {
                Action::WriteFile { path, .. }
                | Action::AppendFile { path, .. }
                | Action::EnsureDir { path, .. }
                | Action::RemoveFile { path }
                | Action::WriteRecord { path, .. }
                | Action::WritePin { path, .. }
                | Action::Symlink { path, .. } => f(path),
                Action::MakeDirs { paths } => paths.iter().for_each(|p| f(p)),
                Action::EditAccounts { writes, .. } => writes.iter().for_each(|w| f(&w.path)),
                // Generating host keys replaces every `ssh_host_*` key: a drive file written
                // there afterwards would silently replace the printed fingerprint's key.
                Action::HostKeys { .. } => host_keys.iter().for_each(|p| f(p)),
                _ => {}
            }
        }
        let host_keys: Vec<String> = hostkeys::KeyType::ALL
            .iter()
            .flat_map(|t| [t.key_path(), format!("{}.pub", t.key_path())])
            .collect();
        // Path -> the first of primer's steps claiming it (ordered map: deterministic, n log n),
        // both borrowed from the plan: a re-run's 5,000 local copy paths and their ids were
        // each copied into it at the run's peak (~0.6 MB; issue 15).
        let mut owned: BTreeMap<&str, &str> = BTreeMap::new();
        for s in &self.steps {
            if drive_chosen(&s.id).is_none() {
                each_path(&s.action, &host_keys, &mut |p| {
                    owned.entry(p.trim_end_matches('/')).or_insert(&s.id);
                });
            }
        }
        // The drive's steps refused (step, message), found first: the map borrows the steps.
        let mut refused: Vec<(usize, String)> = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let Some((_, _, what)) = drive_chosen(&s.id) else {
                continue;
            };
            let (mut first, mut owner) = (None, None);
            each_path(&s.action, &host_keys, &mut |p| {
                first = first.or(Some(p));
                owner = owner.or_else(|| owned.get(p.trim_end_matches('/')).copied());
            });
            let Some(owner) = owner else {
                continue;
            };
            let path = first.unwrap_or_default();
            refused.push((
                i,
                format!(
                    "/{path}: claimed by step {} ({what}) and by primer's step {owner}; \
                     primer's step wins, the {what} is not written",
                    Esc(&s.id)
                ),
            ));
        }
        drop(owned);
        for (i, msg) in refused {
            let Some(s) = self.steps.get_mut(i) else {
                continue;
            };
            let Some((file, field, _)) = drive_chosen(&s.id) else {
                continue;
            };
            self.warnings.warn(file, field, msg.clone());
            s.change = Change::Skip;
            s.why = msg.into();
            // Not applied, so not recorded as applied either.
            s.input = None;
        }
    }

    fn plan_record(&mut self, instance: &Instance, drive_sha256: &str) {
        // Indices, not copies of the ids and inputs: by id, of a repeated id the last step.
        let steps = &self.steps;
        let mut order: Vec<usize> = (0..steps.len())
            .filter(|&i| steps[i].change != Change::Error && steps[i].input.is_some())
            .collect();
        order.sort_unstable_by(|&a, &b| steps[a].id.cmp(&steps[b].id).then(b.cmp(&a)));
        order.dedup_by(|later, kept| steps[*later].id == steps[*kept].id);
        let record = Record {
            instance_id: instance.instance_id.clone(),
            format: instance.format.to_string(),
            version: instance.version.clone(),
            drive_sha256: drive_sha256.to_string(),
            steps: state::Steps::default(),
        };
        let path = state::record_path(&instance.instance_id);
        let (change, why) = match self.facts.files.get(&path) {
            // Compared as it is made: no copy of a document of thousands of steps.
            Some(f)
                if f.meta == PRIVATE_FILE
                    && f.holds_record(&record_view(steps, &record, &order)) =>
            {
                (
                    Change::Unchanged,
                    "record of this drive is up to date".to_string(),
                )
            }
            Some(_) => (
                Change::Update,
                "record: drive or applied steps changed".to_string(),
            ),
            None => (
                Change::Create,
                "record: first run for this instance".to_string(),
            ),
        };
        self.steps.push(Step {
            id: "record".into(),
            change,
            action: Action::WriteRecord {
                path,
                record: Box::new(record),
                order,
            },
            why: why.into(),
            input: None,
        });
    }
}

/// The normalised `instance.json`: the model (secrets redacted), where it came from and the
/// drive's content hash. Deterministic (no device name, no time), so a re-run is byte-identical.
/// `serde_json`'s pretty bytes, written by [`state::pretty_json`]'s writer.
///
/// Sized before it is written: a first pass streams the document into a counter, keeping it
/// when it is small (every ordinary drive: one pass); a larger one is written again into a
/// buffer of its exact size. Grown by doubling, the buffer of 14,000 VLANs' document (2.2 MB)
/// reached 4 MiB, with the 2 MiB it was copied from, at the run's peak (issue 15).
pub fn instance_json(instance: &Instance, drive: &DriveFiles, drive_sha256: &str) -> Vec<u8> {
    let doc = instance_doc(instance, drive, drive_sha256);
    let mut counted = Counted::default();
    let mut j = state::PrettyJson::streaming_sized(&mut counted, 4096);
    // The counter never fails; a refused part leaves the document to `serde_json`.
    if j.value(&doc) && j.finish_to().is_ok() {
        if counted.len <= Counted::KEEP {
            // Held by the plan until the run ends: its slack given back (in place).
            counted.kept.shrink_to_fit();
            return counted.kept;
        }
        let mut j = state::PrettyJson::with_capacity(counted.len);
        if j.value(&doc) {
            return j.finish();
        }
    }
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A document's length, and its bytes while it is small ([`instance_json`]'s first pass).
#[derive(Default)]
struct Counted {
    kept: Vec<u8>,
    len: usize,
}

impl Counted {
    /// Largest document kept from the first pass (a buffer of this size, grown by doubling,
    /// costs little; a larger one is written again at its size).
    const KEEP: usize = 64 << 10;
}

impl std::io::Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.len = self.len.saturating_add(b.len());
        if self.len <= Counted::KEEP {
            self.kept.extend_from_slice(b);
        } else if self.kept.capacity() > 0 {
            self.kept = Vec::new();
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Serialize)]
struct InstanceDoc<'a> {
    instance: &'a Instance,
    drive: DriveDoc<'a>,
}

#[derive(Serialize)]
struct DriveDoc<'a> {
    fstype: &'a str,
    label: Option<&'a str>,
    sha256: &'a str,
    files: usize,
    symlinks: &'a BTreeMap<String, String>,
}

fn instance_doc<'a>(
    instance: &'a Instance,
    drive: &'a DriveFiles,
    drive_sha256: &'a str,
) -> InstanceDoc<'a> {
    InstanceDoc {
        instance,
        drive: DriveDoc {
            fstype: &drive.fstype,
            label: drive.label.as_deref(),
            sha256: drive_sha256,
            files: drive.files.len(),
            symlinks: &drive.symlinks,
        },
    }
}

/// The key lines in order, each once: one ordered-set pass, O(n log n) for a drive's 64k keys.
fn unique_keys<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    keys.filter(|k| seen.insert(k.as_str())).cloned().collect()
}

/// The host facts a run of `plan` leaves when every acting step lands: files and the record
/// written, directories made, the computer name set, per-instance script markers written.
/// Pure; what the idempotence tests plan against the second time (a second plan over these
/// facts must change nothing), here once for the unit tests and `tests/windows_plan.rs`.
#[doc(hidden)]
pub fn facts_after(plan: &Plan, mut f: HostFacts) -> HostFacts {
    for s in plan.steps.iter().filter(|s| s.change.acts()) {
        match &s.action {
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
                f.files.insert(
                    path.clone(),
                    FileFact {
                        content: content.to_vec(),
                        meta,
                        measured: None,
                    },
                );
                if path.contains("/drive/") {
                    f.copy_files.insert(path.clone());
                }
            }
            Action::AppendFile {
                path,
                content,
                mode,
                uid,
                gid,
                ..
            } => {
                // The file as held plus the text (a measured file's bytes are not known here:
                // only the text, which the next plan finds there).
                let mut all = f
                    .files
                    .get(path)
                    .map(|x| x.content.clone())
                    .unwrap_or_default();
                all.extend_from_slice(content);
                let meta = Meta {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                };
                f.files.insert(path.clone(), FileFact::held(all, meta));
                f.appended.insert((path.clone(), content.sha256()));
            }
            Action::EnsureDir {
                path,
                mode,
                uid,
                gid,
            } => {
                f.dirs.insert(
                    path.clone(),
                    Meta {
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                    },
                );
            }
            Action::WriteRecord {
                path,
                record,
                order,
            } => {
                let view = record_view(&plan.steps, record, order);
                f.files.insert(
                    path.clone(),
                    FileFact {
                        content: view.to_json(),
                        meta: PRIVATE_FILE,
                        measured: None,
                    },
                );
                f.record = Some(view.to_record());
            }
            Action::SetComputerName { dns_host, .. } => {
                f.kernel_hostname = Some(dns_host.to_ascii_uppercase())
            }
            Action::RunScript {
                marker: Some(m), ..
            } => {
                f.files.insert(
                    m.clone(),
                    FileFact {
                        content: b"started\n".to_vec(),
                        meta: PRIVATE_FILE,
                        measured: None,
                    },
                );
            }
            _ => {}
        }
    }
    f
}

/// Copy of the private directory meta for apply (state directories).
pub fn private_dir_meta() -> Meta {
    PRIVATE_DIR
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Format;

    /// Every project fixture's `instance.json` is written by primer's pretty writer (no
    /// fallback to `serde_json`), byte for byte as `serde_json::to_vec_pretty` writes it.
    #[test]
    fn instance_json_is_serde_jsons_for_every_fixture() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut seen = 0;
        for format in ["openstack", "cloudstack", "nocloud", "ovf", "userdata"] {
            let Ok(dirs) = std::fs::read_dir(base.join(format)) else {
                continue;
            };
            for d in dirs.flatten() {
                let root = d.path();
                let Ok(drive) =
                    crate::media::dir::read_dir_tree(&root, &crate::media::Limits::default())
                else {
                    continue;
                };
                let Ok((instance, _)) = crate::source::parse_drive(&drive) else {
                    continue;
                };
                let doc = instance_doc(&instance, &drive, "00ff");
                let fast = state::pretty_json_fast(&doc)
                    .unwrap_or_else(|| panic!("{}: fell back to serde_json", root.display()));
                let mut want = serde_json::to_vec_pretty(&doc).unwrap();
                want.push(b'\n');
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&want),
                    "{}",
                    root.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 20, "only {seen} fixtures parsed");
    }

    /// A planner with nothing planned yet, over `facts`.
    fn bare_planner(facts: &HostFacts) -> Planner<'_> {
        Planner {
            network: None,
            facts,
            steps: Vec::new(),
            warnings: Report::default(),
            accounts_now: BTreeMap::new(),
            created_users: Vec::new(),
            ssh_user: None,
            keys_for: BTreeMap::new(),
            default_user: None,
            salt: [0; 32],
            drive_sha256: None,
            last_what: None,
        }
    }

    /// A `write_files` entry's reason (`write_files /PATH ...`) holds no text of its own: one
    /// `what` shared by every entry, the path read from the step (10,000 entries held 10,000
    /// texts), rendered as before; and the reason no larger for it.
    #[test]
    fn write_files_reasons_share_their_what() {
        let facts = HostFacts::default();
        let mut p = bare_planner(&facts);
        for path in ["srv/a", "srv/b/c"] {
            let what = format!("write_files /{path}");
            p.file_step(path, path, b"x".to_vec(), FILE_META, None, &what, true);
        }
        let whats: Vec<_> = p
            .steps
            .iter()
            .map(|s| match &s.why {
                Why::File { what, .. } => std::sync::Arc::clone(what),
                w => panic!("{w:?}"),
            })
            .collect();
        assert!(std::sync::Arc::ptr_eq(&whats[0], &whats[1]));
        assert_eq!(&*whats[0], "write_files\0");
        assert_eq!(
            p.steps[0].why(),
            "write_files /srv/a: /srv/a does not exist"
        );
        assert_eq!(
            p.steps[1].why(),
            "write_files /srv/b/c: /srv/b/c does not exist"
        );
        assert!(
            std::mem::size_of::<Why>() <= 32,
            "{}",
            std::mem::size_of::<Why>()
        );
    }

    /// A `write_files` path with a newline, a NUL, an escape or 2,100 bytes never gets a
    /// shared reason (the NUL marker cannot be forged, nothing unsafe is deferred to printing):
    /// its reason is made safe text at once, one line, no control character, bounded.
    #[test]
    fn hostile_write_files_paths_get_safe_text_not_a_shared_reason() {
        let facts = HostFacts::default();
        let mut p = bare_planner(&facts);
        let long = format!("srv/{}", "x".repeat(2_100));
        let paths = ["srv/a\nb", "srv/a\0b", "srv/\x1b[31mred", long.as_str()];
        for path in paths {
            let what = format!("write_files /{path}");
            p.file_step(path, path, b"x".to_vec(), FILE_META, None, &what, true);
        }
        for s in &p.steps {
            assert!(matches!(s.why, Why::Text(_)), "{:?}", s.id);
            let why = s.why();
            assert!(!why.chars().any(char::is_control), "{why:?}");
            assert!(why.len() <= 2_100, "{} bytes", why.len());
        }
    }

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";

    fn inputs() -> (Instance, DriveFiles, HostFacts) {
        let mut i = Instance::new(Format::OpenStack, "latest", "id-1");
        i.hostname = Some("web.example".into());
        i.ssh_keys = vec![ED.into(), "ssh-rsa broken".into()];
        let mut d = DriveFiles::new("/dev/x", "iso9660");
        d.files.insert(
            "openstack/latest/meta_data.json".into(),
            b"{}".to_vec().into(),
        );
        let facts = HostFacts {
            passwd: vec![PasswdEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
            }],
            ..Default::default()
        };
        (i, d, facts)
    }

    fn change(p: &Plan, id: &str) -> Change {
        p.steps
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.change)
            .unwrap()
    }

    #[test]
    fn first_run_then_idempotent() {
        let (i, d, f) = inputs();
        let p1 = plan(&i, &d, &f, &Policy::default());
        assert_eq!(p1, plan(&i, &d, &f, &Policy::default()), "deterministic");
        assert_eq!(change(&p1, "hostname"), Change::Create);
        assert_eq!(change(&p1, "ssh-keys"), Change::Create);
        assert_eq!(p1.warnings.warnings.len(), 1, "the broken key is refused");
        let f2 = facts_after(&p1, f);
        let p2 = plan(&i, &d, &f2, &Policy::default());
        assert!(
            p2.steps.iter().all(|s| s.change == Change::Unchanged),
            "{:#?}",
            p2.steps
        );
    }

    /// The previous run's `instance.json` is held when small (compared byte for byte) and read
    /// as its length and digest when large (never held: it is only compared with the run's
    /// own); either way a re-run finds it up to date.
    #[test]
    fn a_large_instance_json_is_measured_not_held() {
        let (mut i, d, f) = inputs();
        let rel = state::instance_json_path(&i.instance_id);
        for (ssh_keys, held) in [(0, true), (2_000, false)] {
            i.ssh_keys = (0..ssh_keys).map(|n| format!("{ED} key-{n}")).collect();
            let p1 = plan(&i, &d, &f, &Policy::default());
            let Some(Action::WriteFile { content, .. }) = p1
                .steps
                .iter()
                .find(|s| s.id == "instance-json")
                .map(|s| &s.action)
            else {
                panic!("no instance-json step");
            };
            assert_eq!(content.len() < 64 << 10, held, "{}", content.len());
            let t = tempfile::tempdir().unwrap();
            let host = t.path().join(&rel);
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(&host, content.as_slice()).unwrap();
            let w = wanted(&i, &Policy::default());
            let facts = crate::facts::read_host_facts(t.path(), &w, false);
            let fact = facts.files.get(&rel).expect("instance.json read");
            assert_eq!(fact.content.is_empty(), !held, "instance.json held");
            assert_eq!(fact.measured.is_none(), held);
            assert!(fact.holds(content));
        }
    }

    #[test]
    fn local_edit_kept_until_drive_changes() {
        let (mut i, d, f) = inputs();
        let p1 = plan(&i, &d, &f, &Policy::default());
        let mut f2 = facts_after(&p1, f);
        f2.files.get_mut("etc/hostname").unwrap().content = b"mine\n".to_vec();
        let p2 = plan(&i, &d, &f2, &Policy::default());
        assert_eq!(change(&p2, "hostname"), Change::Skip);
        i.hostname = Some("other".into());
        let p3 = plan(&i, &d, &f2, &Policy::default());
        assert_eq!(change(&p3, "hostname"), Change::Update);
        assert_eq!(change(&p3, "ssh-keys"), Change::Unchanged);
    }

    #[test]
    fn missing_user_and_bad_id() {
        let (i, d, f) = inputs();
        let p = plan(
            &i,
            &d,
            &f,
            &Policy {
                ssh_user: "debian".into(),
                ..Default::default()
            },
        );
        assert_eq!(change(&p, "ssh-keys"), Change::Error);
        let mut bad = i.clone();
        bad.instance_id = "../../etc".into();
        let p = plan(&bad, &d, &f, &Policy::default());
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].change, Change::Error);
    }

    #[test]
    fn stale_copy_files_removed() {
        let (i, d, mut f) = inputs();
        f.copy_files
            .insert(format!("{}/old", state::drive_copy_dir("id-1")));
        let p = plan(&i, &d, &f, &Policy::default());
        assert_eq!(change(&p, "copy-remove:old"), Change::Remove);
    }
}
