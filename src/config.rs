//! Configuration: `/etc/primer/primer.yaml` under the target root (or `--config FILE`), parsed
//! with serde-saphyr into typed settings with documented defaults. A missing default file means
//! defaults; an unreadable, oversized or invalid file is an error naming the file and field.
//! Holds the operator's choices only (probe rules, trust policy, wait deadline, SSH user); reads
//! nothing else and builds the planner's `plan::Policy` rather than replacing it.
//!
//! ```yaml
//! # /etc/primer/primer.yaml — every key optional; the values shown are the defaults.
//! ssh_user: root            # account that receives the drive's SSH keys (--user overrides);
//!                           # default: the default user's name when one is configured, else root
//! network_backend: ~        # networkd | networkmanager | eni | netplan (default: detected)
//! default_user: ~           # an account created on first boot, e.g.:
//! #  name: debian
//! #  gecos: Debian
//! #  groups: [adm, sudo]     # missing groups are created
//! #  shell: /bin/bash
//! #  sudo: "ALL=(ALL) NOPASSWD:ALL"   # sudoers rule (a drop-in in /etc/sudoers.d), or ~
//! #  lock_password: true     # no password login unless the drive sets a password
//! password:
//!   user: ~                 # who gets the drive's password (admin_pass, CloudStack, OVF):
//!                           # default: the drive's admin user name, else the default user, else root
//!   updates: auto           # a new password on a changed drive: auto (CloudStack resets only) |
//!                           # always | never
//! ssh_pwauth: keep          # SSH password login: keep (never touched) | yes | no |
//!                           # user-data (as #cloud-config ssh_pwauth says)
//! user_data: apply          # apply | ignore (leave user-data and vendor-data to another agent)
//! files_mode: 0o644         # mode of injected files (meta_data.json "files"): octal, written
//!                           # 0o644, 0644 or "0644"; at most 0o777
//! script_timeout_seconds: 600  # a user-data script or runcmd that runs longer is killed
//! admin_user:               # the drive's admin user (meta.admin_username, OVF username)
//!   create: true            # create it when the image lacks it (false: skipped, warned)
//!   groups: [adm, sudo]     # its supplementary groups (missing groups are created)
//!   shell: ~                # its shell (default: useradd's)
//!   sudo: ~                 # a sudoers rule for it when primer created it, e.g. "ALL=(ALL) ALL"
//! disable_root: off         # root's SSH keys: off (as given) | on (cloud-init's refusal
//!                           # options) | user-data (as #cloud-config disable_root says, on
//!                           # when it says nothing)
//! disable_root_opts: ~      # the options put before root's keys (default cloud-init's)
//! probe:
//!   wait_seconds: 3         # how long to wait for a late config drive (--wait overrides)
//!   early_end: true         # stop waiting once udev has settled with no drive in sight
//!   duplicates: refuse      # two drives of one kind: refuse (name both) | best (use the best-ranked)
//!   bind_dmi_uuid: false    # the instance id must equal /sys/class/dmi/id/product_uuid
//!   pin_first_boot: false   # record the drive used at first boot; later boots accept only it
//!   pin_allow_new: false    # with pinning: accept (and re-pin) a different drive
//!   gpt_names: [config-v2]  # GPT partition names that mark a config partition
//!   gpt_types: []           # GPT partition type GUIDs that mark a config partition
//!   mbr_types: []           # MBR partition type bytes (e.g. 0x99) that mark a config partition
//!   mount: false            # read drives by mounting them (--mount) instead of in user space
//! ssh_host_keys:            # README "SSH host keys"
//!   regenerate: true        # replace the image's host keys on an instance's first boot;
//!                           # false keeps them (#cloud-config ssh_deletekeys cannot override)
//!   types: [ed25519, ecdsa, rsa]  # generated (rsa: 3072 bits); ssh_genkeytypes overrides
//! reclaim:                  # primer reclaim / primer-reclaim.service (README "Reclaim")
//!   enabled: false          # delete the trailing config partition and grow root at boot
//!   delete_config_partition: true  # delete the config partition (once its data is applied)
//!   grow_root: true         # grow root to the end of the disk (also into plain free space)
//!   wipe_config: true       # zero the old config range (it held the clear admin password)
//! windows:                  # Windows only (windows/README.md)
//!   reboot: never           # never | when-required (after a run that set the computer name)
//!   create_admin: true      # create the drive's admin user when missing, set its password
//!   admin_user: Admin       # the admin user's name when the drive gives none
//!   extend_volume: false    # grow C: into the free space after it, every boot
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::users::{
    AdminUser, DefaultUser, DisableRoot, PasswordUpdates, SshPwauth, UserDataMode,
};
use crate::plan::Policy;
use crate::probe::trust::DuplicateRule;
use crate::probe::Rules;

/// Where the configuration lives, relative to the target root: `/etc/primer/primer.yaml`;
/// on Windows `%ProgramData%\primer\primer.yaml`, beside primer's state under a directory
/// only SYSTEM and Administrators may change (any user may create `C:\etc`).
#[cfg(not(windows))]
pub const CONFIG_PATH: &str = "etc/primer/primer.yaml";
#[cfg(windows)]
pub const CONFIG_PATH: &str = "ProgramData/primer/primer.yaml";

/// The configuration file under `root` ([`CONFIG_PATH`], joined component by component so a
/// Windows path carries no `/`).
pub fn config_path(root: &Path) -> PathBuf {
    CONFIG_PATH
        .split('/')
        .fold(root.to_path_buf(), |p, c| p.join(c))
}
/// Largest configuration file read.
const MAX_CONFIG: u64 = 64 * 1024;
/// Longest wait accepted (a boot must not stall on a typo).
const MAX_WAIT: f64 = 600.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_CONFIG} bytes")]
    TooLarge { path: String },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
    /// Windows: a file or directory of the configuration someone other than SYSTEM,
    /// Administrators or TrustedInstaller owns or may change.
    #[error("{path}: refused: {detail}")]
    Untrusted { path: String, detail: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Account that receives the drive's SSH keys.
    pub ssh_user: String,
    /// Network backend to render for instead of the detected one (`--network-backend`
    /// overrides): networkd, networkmanager, eni or netplan.
    pub network_backend: Option<crate::net::Backend>,
    pub probe: ProbeConfig,
    /// An account created on first boot (see `plan::users::DefaultUser`).
    pub default_user: Option<DefaultUser>,
    pub password: PasswordConfig,
    pub ssh_pwauth: SshPwauth,
    pub user_data: UserDataMode,
    /// Mode of injected files: octal, written `0o644`, `0644` or `"0644"` (see
    /// [`files_mode`]).
    #[serde(deserialize_with = "files_mode", serialize_with = "files_mode_text")]
    pub files_mode: u32,
    pub script_timeout_seconds: u64,
    /// The drive's administrator account (see `plan::users::AdminUser`).
    pub admin_user: AdminUser,
    /// cloud-init's `disable_root` for root's keys: off (default) | on | user-data.
    pub disable_root: DisableRoot,
    /// Options put before root's keys when `disable_root` applies (an `authorized_keys`
    /// options list; `$USER` is the default user, `$DISABLE_USER` root); default cloud-init's.
    pub disable_root_opts: Option<String>,
    pub reclaim: ReclaimConfig,
    pub ssh_host_keys: crate::plan::hostkeys::HostKeyPolicy,
    /// `windows:`: the Windows steps' choices (ignored on Linux).
    pub windows: crate::plan::windows::WindowsPolicy,
}

/// `reclaim:`: what `primer reclaim --apply` may do (nothing unless `enabled`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReclaimConfig {
    pub enabled: bool,
    pub delete_config_partition: bool,
    pub grow_root: bool,
    pub wipe_config: bool,
}

impl Default for ReclaimConfig {
    fn default() -> Self {
        // Off unless enabled; once enabled, the whole job by default.
        ReclaimConfig {
            enabled: false,
            delete_config_partition: true,
            grow_root: true,
            wipe_config: true,
        }
    }
}

impl ReclaimConfig {
    pub fn settings(&self) -> crate::disk::plan::Settings {
        crate::disk::plan::Settings {
            delete_config: self.delete_config_partition,
            grow_root: self.grow_root,
            wipe_config: self.wipe_config,
        }
    }

    /// [`settings`](Self::settings) for the system under `root`, with the instance's
    /// `#cloud-config` growth setting applied: `growpart: {mode: off}` or
    /// `resize_rootfs: false` turns `grow_root` off (`primer run` records it in
    /// `plan::system::GROW_FILE`; README "Cloud-config keys"). User data can only turn growth
    /// off, never on: a missing or unreadable file leaves the configuration as it is.
    pub fn settings_at(&self, root: &std::path::Path) -> crate::disk::plan::Settings {
        let mut s = self.settings();
        if user_data_grow_off(root) {
            s.grow_root = false;
        }
        s
    }
}

/// Whether the instance's user data turned root growth off (see `ReclaimConfig::settings_at`).
fn user_data_grow_off(root: &std::path::Path) -> bool {
    use std::io::Read;
    let Ok(path) = crate::paths::resolve_in_root(root, crate::plan::system::GROW_FILE) else {
        return false;
    };
    let mut buf = Vec::new();
    let read = std::fs::File::open(&path).and_then(|f| f.take(4096).read_to_end(&mut buf));
    if read.is_err() {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&buf)
        .ok()
        .and_then(|v| v.get("grow_root").and_then(|g| g.as_bool()))
        == Some(false)
}

/// Largest `files_mode` accepted: permission bits only (no setuid, setgid or sticky bit).
const MAX_FILES_MODE: u32 = 0o777;

/// Reads `files_mode` from its text, so that the YAML 1.2 `0o644`, the YAML 1.1 `0644` and a
/// quoted `"0644"` all mean octal 644 (the parser's YAML 1.2 default would reject `0644`).
/// Only octal spellings are taken: a bare `644` would be decimal (0o1204) and `444` would
/// quietly be 0o674, so an unprefixed number other than 0 is refused rather than guessed.
/// Reading the field's text leaves every other key parsed as before.
fn files_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let text = String::deserialize(d)?;
    parse_files_mode(&text).map_err(serde::de::Error::custom)
}

/// `files_mode` as the text `files_mode` reads back (`0o644`): the layered loading merges
/// settings as data and reads the result again.
fn files_mode_text<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("0o{mode:o}"))
}

fn parse_files_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = match t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        Some(d) => d,
        None if t == "0" => "0",
        None => match t.strip_prefix('0') {
            Some(d) if !d.is_empty() => d,
            _ => {
                return Err(format!(
                    "files_mode: {t:?} is not an octal file mode: write it like 0o644"
                ))
            }
        },
    };
    let mode = (!digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| {
            format!("files_mode: {t:?} is not an octal file mode: write it like 0o644")
        })?;
    if mode > MAX_FILES_MODE {
        return Err(format!(
            "files_mode: {t} is more than 0o777 (permission bits only): write it like 0o644"
        ));
    }
    Ok(mode)
}

/// Test builds only: `PRIMER_TEST_HOSTKEYS_ROOT=1` lets `--root DIR` generate host keys as if
/// DIR were the running system (integration tests exercise the generation on a scratch root).
/// The release binary never reads the variable.
fn host_keys_scratch_root() -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var_os("PRIMER_TEST_HOSTKEYS_ROOT").is_some_and(|v| v == "1")
    }
    #[cfg(not(debug_assertions))]
    {
        false
    }
}

/// `ssh_user` when the file does not set it: marks "not set" so a default user can take over.
const SSH_USER_UNSET: &str = "";

impl Default for Config {
    fn default() -> Self {
        Config {
            ssh_user: SSH_USER_UNSET.into(),
            network_backend: None,
            probe: ProbeConfig::default(),
            default_user: None,
            password: PasswordConfig::default(),
            ssh_pwauth: SshPwauth::Keep,
            user_data: UserDataMode::Apply,
            files_mode: 0o644,
            script_timeout_seconds: 600,
            admin_user: AdminUser::default(),
            disable_root: DisableRoot::Off,
            disable_root_opts: None,
            reclaim: ReclaimConfig::default(),
            ssh_host_keys: Default::default(),
            windows: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    pub user: Option<String>,
    pub updates: PasswordUpdates,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    pub wait_seconds: f64,
    pub duplicates: DuplicateRule,
    pub bind_dmi_uuid: bool,
    pub pin_first_boot: bool,
    pub pin_allow_new: bool,
    pub gpt_names: Vec<String>,
    pub gpt_types: Vec<String>,
    pub mbr_types: Vec<u8>,
    pub mount: bool,
    /// End the wait for a late drive once udev has processed every device event and no
    /// candidate exists (a driveless boot does not wait out `wait_seconds`). Off for platforms
    /// whose media attach after udev has settled (a BMC's virtual media, slow SCSI scans).
    pub early_end: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        let rules = Rules::default();
        ProbeConfig {
            // Long enough for a CD-ROM or a hot-plugged disk that udev has not finished with,
            // short enough that a boot without a drive is not noticeably slower.
            wait_seconds: 3.0,
            duplicates: DuplicateRule::Refuse,
            bind_dmi_uuid: false,
            pin_first_boot: false,
            pin_allow_new: false,
            gpt_names: rules.gpt_names,
            gpt_types: rules.gpt_types,
            mbr_types: rules.mbr_types,
            mount: false,
            early_end: rules.early_end,
        }
    }
}

impl ProbeConfig {
    pub fn rules(&self) -> Rules {
        Rules {
            gpt_names: self.gpt_names.clone(),
            gpt_types: self.gpt_types.clone(),
            mbr_types: self.mbr_types.clone(),
            early_end: self.early_end,
        }
    }

    pub fn wait(&self) -> Duration {
        Duration::from_secs_f64(self.wait_seconds.clamp(0.0, MAX_WAIT))
    }
}

impl Config {
    /// The planner's policy from this configuration.
    pub fn policy(&self) -> Policy {
        let ssh_user = if self.ssh_user != SSH_USER_UNSET {
            self.ssh_user.clone()
        } else if let Some(d) = &self.default_user {
            d.name.clone()
        } else {
            "root".to_string()
        };
        Policy {
            ssh_user_from_default: self.ssh_user == SSH_USER_UNSET && self.default_user.is_none(),
            ssh_user,
            network: crate::plan::network::NetPolicy {
                backend: self.network_backend,
                // NICs the drive names get the same deadline as late config drives.
                wait: self.probe.wait(),
            },
            users: crate::plan::users::UserPolicy {
                default_user: self.default_user.clone(),
                admin_user: self.admin_user.clone(),
                disable_root: self.disable_root,
                disable_root_opts: self.disable_root_opts.clone(),
                password_user: self.password.user.clone(),
                password_updates: self.password.updates,
                ssh_pwauth: self.ssh_pwauth,
                user_data: self.user_data,
                files_mode: self.files_mode,
                script_timeout: Duration::from_secs(self.script_timeout_seconds),
            },
            // A command-line choice (`run --defer-scripts`, used by the boot unit).
            defer_scripts: false,
            host_keys: crate::plan::hostkeys::HostKeyPolicy {
                scratch_root: host_keys_scratch_root(),
                ..self.ssh_host_keys.clone()
            },
            windows: self.windows.clone(),
        }
    }

    /// Parses configuration text; `path` names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let c = Config::parse_unchecked(text, path)?;
        c.validate().map_err(|b| b.at(path))?;
        Ok(c)
    }

    fn parse_unchecked(text: &str, path: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            detail: e.to_string(),
        })
    }

    /// The checks a type cannot express; the error names the key, its caller the file.
    fn validate(&self) -> Result<(), Bad> {
        let c = self;
        if !c.probe.wait_seconds.is_finite() || !(0.0..=MAX_WAIT).contains(&c.probe.wait_seconds) {
            return Err(Bad {
                key: "probe.wait_seconds",
                detail: format!(
                    "probe.wait_seconds: {} is outside 0..={MAX_WAIT}",
                    c.probe.wait_seconds
                ),
            });
        }
        let bad_name = |n: &str| n.is_empty() || n.contains(['/', ':', '\n']);
        if let Some(d) = &c.default_user {
            if bad_name(&d.name) {
                return Err(Bad {
                    key: "default_user.name",
                    detail: format!("default_user.name: {:?} is not a user name", d.name),
                });
            }
        }
        if c.files_mode > MAX_FILES_MODE {
            return Err(Bad {
                key: "files_mode",
                detail: format!(
                    "files_mode: 0o{:o} is not a file mode (at most 0o777; e.g. 0o644)",
                    c.files_mode
                ),
            });
        }
        let types = &c.ssh_host_keys.types;
        if types.is_empty() || (1..types.len()).any(|i| types[..i].contains(&types[i])) {
            return Err(Bad {
                key: "ssh_host_keys.types",
                detail: "ssh_host_keys.types: list each key type once, at least one \
                         (regenerate: false keeps the image's keys)"
                    .into(),
            });
        }
        if let Some(o) = &c.disable_root_opts {
            crate::plan::keys::check_options_list(o).map_err(|e| Bad {
                key: "disable_root_opts",
                detail: format!("disable_root_opts: {e}"),
            })?;
        }
        if c.ssh_user != SSH_USER_UNSET && bad_name(&c.ssh_user) {
            return Err(Bad {
                key: "ssh_user",
                detail: format!("ssh_user: {:?} is not a user name", c.ssh_user),
            });
        }
        if c.script_timeout_seconds == 0 {
            return Err(Bad {
                key: "script_timeout_seconds",
                detail: "script_timeout_seconds: 0 is not a time-out: give the longest a \
                         user-data script may run, in seconds (default 600)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Loads `explicit` (must exist), else `<root>/etc/primer/primer.yaml` when present, else
    /// the defaults; then the drop-ins beside it (see [`load_layered`]).
    pub fn load(explicit: Option<&Path>, root: &Path) -> Result<Config, ConfigError> {
        load_layered_keyed(explicit, root, false)
            .map(|l| l.config)
            .map_err(|(e, _)| e)
    }
}

/// A setting that fails a check, by key.
struct Bad {
    key: &'static str,
    detail: String,
}

impl Bad {
    fn at(self, path: &str) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_string(),
            detail: self.detail,
        }
    }
}

/// Most drop-in files read from `primer.yaml.d/`.
pub const MAX_DROPINS: usize = 64;

/// The configuration as its files layer it: the main file, then every drop-in in name order.
#[derive(Debug, Clone)]
pub struct Layered {
    pub config: Config,
    /// The files read, in merge order (the main file first when it exists).
    pub files: Vec<String>,
    /// Per leaf key (dotted path, e.g. `probe.wait_seconds`), the file that set it last. A key
    /// not listed has its default.
    pub origins: BTreeMap<String, String>,
    /// The merged settings, every key present (what `primer config show` prints).
    pub merged: serde_json::Value,
}

/// Reads one configuration file: its typed settings (checked on their own, so an error names
/// this file) and the keys it sets (the shape of its YAML, values not used). `path` is what is
/// opened (resolved inside the target root: [`ConfigFile`]), `name` what messages call it.
fn read_layer(
    path: &Path,
    name: &Path,
    required: bool,
) -> Result<Option<(Config, serde_json::Value)>, ConfigError> {
    use std::io::Read;
    let name = name.display().to_string();
    let io = |e| ConfigError::Io {
        path: name.clone(),
        source: e,
    };
    // Opened once: its size from the open file, its text read from it (not a lookup for the
    // size, another for the open and a third in `read_to_string`).
    let (f, len) = match crate::platform::open_for_read(path) {
        Ok(f) => f,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if len > MAX_CONFIG {
        return Err(ConfigError::TooLarge { path: name });
    }
    let mut text = String::with_capacity(usize::try_from(len).unwrap_or(0));
    // Bounded even if it grew since: one byte over says so.
    f.take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(ConfigError::TooLarge { path: name });
    }
    // Typed (types, key names and syntax checked, errors at this file's line) but not
    // validated: a drop-in may set part of a section whose other keys another file holds.
    let config = Config::parse_unchecked(&text, &name)?;
    let shape = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_saphyr::from_str::<serde_json::Value>(&text).map_err(|e| ConfigError::Invalid {
            path: name.clone(),
            detail: e.to_string(),
        })?
    };
    tracing::debug!("{name}: loaded");
    Ok(Some((config, shape)))
}

/// One configuration file: `name`, the path messages and `config show` give (the target root
/// joined with [`CONFIG_PATH`], as before), and `open`, the host path read: `name` resolved
/// inside the root by [`crate::paths::Resolver`] (DESIGN.md rule 5), so a `primer.yaml` or a
/// drop-in that is a symlink to `/etc/hostname` under `--root /mnt/image` reads the image's
/// `/etc/hostname`, never the host's. `None`: resolution found it missing (a missing middle
/// directory: nothing is opened).
#[derive(Debug, Clone)]
struct ConfigFile {
    name: PathBuf,
    open: Option<PathBuf>,
}

/// The resolver confining the configuration's paths to `root`, none where the kernel's own
/// resolution already is confined to it: the root `/` (a boot's own configuration: no lookup
/// more than before) on Unix.
fn confinement(root: &Path) -> Option<crate::paths::Resolver> {
    let host_root = cfg!(unix) && root == Path::new("/");
    (!host_root).then(|| crate::paths::Resolver::new(root))
}

/// Resolves `rel` (below the root) through `res`, or joins it to `root` when there is no
/// resolver (see [`confinement`]).
fn confined(
    res: Option<&crate::paths::Resolver>,
    root: &Path,
    rel: &str,
    name: PathBuf,
) -> Result<ConfigFile, ConfigError> {
    use crate::paths::Found;
    let Some(res) = res else {
        let open = rel.split('/').fold(root.to_path_buf(), |p, c| p.join(c));
        return Ok(ConfigFile {
            name,
            open: Some(open),
        });
    };
    match res.resolve_found(rel) {
        Ok((_, Found::Missing)) => Ok(ConfigFile { name, open: None }),
        Ok((open, _)) => Ok(ConfigFile {
            name,
            open: Some(open),
        }),
        Err(source) => Err(ConfigError::Io {
            path: name.display().to_string(),
            source,
        }),
    }
}

/// The main configuration file: `explicit` (the caller's own path, read as given) or
/// [`CONFIG_PATH`] under `root`, resolved inside it; and the resolver its drop-ins go through.
fn main_file(
    explicit: Option<&Path>,
    root: &Path,
) -> Result<(ConfigFile, Option<crate::paths::Resolver>), ConfigError> {
    match explicit {
        Some(p) => Ok((
            ConfigFile {
                name: p.to_path_buf(),
                open: Some(p.to_path_buf()),
            },
            None,
        )),
        None => {
            let res = confinement(root);
            let main = confined(res.as_ref(), root, CONFIG_PATH, config_path(root))?;
            Ok((main, res))
        }
    }
}

/// The drop-in files of `main`: `<main>.d/*.yaml` (regular files, hidden ones skipped), in
/// byte order of their names, at most [`MAX_DROPINS`]. A missing directory is none. Under a
/// target root (`res`) the directory and each entry that is a symlink are resolved inside it.
fn dropins(
    main: &ConfigFile,
    res: Option<&crate::paths::Resolver>,
) -> Result<Vec<ConfigFile>, ConfigError> {
    let with_d = |p: &Path| {
        let mut d = p.as_os_str().to_owned();
        d.push(".d");
        PathBuf::from(d)
    };
    let name_dir = with_d(&main.name);
    let rel_dir = format!("{CONFIG_PATH}.d");
    let dir = match res {
        Some(r) => match confined(Some(r), r.root(), &rel_dir, name_dir.clone())?.open {
            Some(d) => d,
            None => return Ok(Vec::new()),
        },
        // `main.open` is `main.name` here (an explicit file, or the root `/`).
        None => with_d(&main.name),
    };
    let listing = |source| ConfigError::Io {
        path: name_dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(listing(e)),
    };
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(listing)?;
        let file = e.file_name();
        let n = file.to_string_lossy();
        if n.starts_with('.') || !n.ends_with(".yaml") {
            continue;
        }
        let name = name_dir.join(&file);
        let open = match res {
            // A link is followed inside the root; anything else is the entry itself.
            Some(r) if e.file_type().is_ok_and(|t| t.is_symlink()) => {
                // A name that is not UTF-8 cannot be resolved by name: not read.
                let Some(n) = file.to_str() else { continue };
                let rel = format!("{rel_dir}/{n}");
                // A link that is dangling, loops or cannot be followed is skipped, as an entry
                // that is not a file is (and as at root `/`, where the kernel follows it).
                match confined(Some(r), r.root(), &rel, name.clone()) {
                    Ok(ConfigFile { open: Some(p), .. }) => p,
                    _ => continue,
                }
            }
            _ => e.path(),
        };
        if !open.is_file() {
            continue;
        }
        files.push(ConfigFile {
            name,
            open: Some(open),
        });
        if files.len() > MAX_DROPINS {
            return Err(ConfigError::Invalid {
                path: name_dir.display().to_string(),
                detail: format!("more than {MAX_DROPINS} drop-in files"),
            });
        }
    }
    crate::sort::sort_by(&mut files, |a, b| {
        a.name.file_name().cmp(&b.name.file_name())
    });
    Ok(files)
}

/// Refuses a configuration file or directory the platform cannot vouch for
/// (`platform::config_untrusted`: Windows only), naming it and the offending trustee.
fn trusted(path: &Path) -> Result<(), ConfigError> {
    match crate::platform::config_untrusted(path) {
        Some(detail) => Err(ConfigError::Untrusted {
            path: path.display().to_string(),
            detail,
        }),
        None => Ok(()),
    }
}

/// Loads the configuration the way every command sees it: `explicit` (must exist) or
/// `<root>/etc/primer/primer.yaml` (optional), then each `*.yaml` of the directory beside it
/// named like it plus `.d` (`/etc/primer/primer.yaml.d/`), in name order. Maps merge key by
/// key; any other value (a list, a scalar, `~`) replaces the earlier one whole. Each file is
/// checked on its own first, so an error names the file that holds it; the merged result is
/// checked again.
pub fn load_layered(explicit: Option<&Path>, root: &Path) -> Result<Layered, ConfigError> {
    load_layered_keyed(explicit, root, true).map_err(|(e, _)| e)
}

/// [`load_layered`], and the key a failed check names (`check --config` shows its line).
/// Without `merge` (every run: [`Config::load`] wants the settings alone), no file or one file
/// gives the settings without the merged document and the keys' origins, which are then
/// empty: with fewer than two files there is nothing to merge, and the check of the settings
/// names the same file either way.
fn load_layered_keyed(
    explicit: Option<&Path>,
    root: &Path,
    merge: bool,
) -> Result<Layered, (ConfigError, Option<&'static str>)> {
    let required = explicit.is_some();
    let (main, res) = main_file(explicit, root).map_err(|e| (e, None))?;
    let mut layers = Vec::new();
    // Windows: the directory holding the file, then the file, are vouched for before a byte
    // is read. Linux vouches for nothing (`platform::config_untrusted`): `read_layer`'s own
    // open tells whether the file is there, without a lookup before it.
    let absent = match &main.open {
        // Resolution found it missing: no open to fail.
        None => true,
        Some(open) => {
            cfg!(windows) && {
                let probe = std::fs::metadata(open);
                if probe.is_ok() {
                    if let Some(dir) = open.parent().filter(|d| !d.as_os_str().is_empty()) {
                        trusted(dir).map_err(|e| (e, None))?;
                    }
                    trusted(open).map_err(|e| (e, None))?;
                }
                // An optional file already known missing is not looked up a second time.
                !required && matches!(&probe, Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            }
        }
    };
    let layer = match &main.open {
        Some(open) if !absent => read_layer(open, &main.name, required).map_err(|e| (e, None))?,
        _ => None,
    };
    if let Some(l) = layer {
        layers.push((main.name.display().to_string(), l));
    } else {
        tracing::debug!("{}: not present; using defaults", main.name.display());
    }
    let extra = dropins(&main, res.as_ref()).map_err(|e| (e, None))?;
    if let Some(first) = extra.first().and_then(|f| f.open.as_deref()) {
        // The drop-in directory and the one holding it, as for the main file.
        for dir in [first.parent().and_then(Path::parent), first.parent()]
            .into_iter()
            .flatten()
        {
            if !dir.as_os_str().is_empty() {
                trusted(dir).map_err(|e| (e, None))?;
            }
        }
    }
    for f in extra {
        let Some(open) = &f.open else { continue };
        trusted(open).map_err(|e| (e, None))?;
        if let Some(l) = read_layer(open, &f.name, true).map_err(|e| (e, None))? {
            layers.push((f.name.display().to_string(), l));
        }
    }
    if !merge && layers.len() < 2 {
        // What the merge below gives for these: the one file's own reading (checked, an
        // error naming that file, the only one that set a key), or the defaults (which pass
        // the check) without writing them out as a document and reading them back.
        let (config, files) = match layers.pop() {
            Some((file, (config, _))) => {
                config.validate().map_err(|b| {
                    let key = b.key;
                    (b.at(&file), Some(key))
                })?;
                (config, vec![file])
            }
            None => (Config::default(), Vec::new()),
        };
        return Ok(Layered {
            config,
            files,
            origins: BTreeMap::new(),
            merged: serde_json::Value::Null,
        });
    }
    let to_value = |c: &Config| {
        serde_json::to_value(c).map_err(|e| ConfigError::Invalid {
            path: main.name.display().to_string(),
            detail: format!("cannot merge: {e}"),
        })
    };
    let mut merged = to_value(&Config::default()).map_err(|e| (e, None))?;
    let mut origins = BTreeMap::new();
    for (file, (config, shape)) in &layers {
        overlay(
            &mut merged,
            shape,
            &to_value(config).map_err(|e| (e, None))?,
            "",
            file,
            &mut origins,
        );
    }
    let only = (layers.len() == 1).then(|| layers[0].1 .0.clone());
    let files: Vec<String> = layers.into_iter().map(|(f, _)| f).collect();
    let what = files.join(" + ");
    let config = match only {
        // One file: its own reading, as before drop-ins existed.
        Some(c) => c,
        // The merged document read back by the YAML reader each file went through (its JSON
        // text is YAML): `serde_json::from_value` would compile a second copy of every
        // settings type's deserializer (~50 KB of the static binary, issue 15's 4 MiB) for a
        // document made of values those types wrote themselves.
        None => serde_json::to_string_pretty(&merged)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_saphyr::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|detail| ConfigError::Invalid {
                path: what.clone(),
                detail,
            })
            .map_err(|e| (e, None))?,
    };
    // Named by the file that set the key (all files when it kept its default).
    config.validate().map_err(|b| {
        let file = origins.get(b.key).cloned().unwrap_or(what);
        let key = b.key;
        (b.at(&file), Some(key))
    })?;
    Ok(Layered {
        config,
        files,
        origins,
        merged,
    })
}

/// Lays the keys `shape` sets (a file's YAML) over `merged`, taking their values from `typed`
/// (the same file read as settings, so every value is in its checked form).
fn overlay(
    merged: &mut serde_json::Value,
    shape: &serde_json::Value,
    typed: &serde_json::Value,
    prefix: &str,
    file: &str,
    origins: &mut BTreeMap<String, String>,
) {
    let serde_json::Value::Object(keys) = shape else {
        return;
    };
    for (k, set) in keys {
        let Some(value) = typed.get(k) else { continue };
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let slot = match merged {
            serde_json::Value::Object(m) => m.entry(k.clone()).or_insert(serde_json::Value::Null),
            _ => return,
        };
        if set.is_object() && value.is_object() {
            // A map over a map: key by key. Over anything else (an absent optional section),
            // the file's whole section with its defaults.
            if !slot.is_object() {
                *slot = value.clone();
            }
            overlay(slot, set, value, &path, file, origins);
        } else {
            *slot = value.clone();
            let inner = format!("{path}.");
            origins.retain(|p, _| !p.starts_with(&inner));
            origins.insert(path, file.to_string());
        }
    }
}

/// One problem `primer check --config` reports about a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    /// The file (main or drop-in) the problem is in.
    pub file: String,
    /// 1-based line and column, when the YAML reader located the problem.
    pub position: Option<(u64, u64)>,
    /// The dotted key a semantic check names, for the caller to locate in the file's text.
    pub key: Option<String>,
    pub message: String,
}

/// What `primer check --config` reads: every file in merge order (main, then drop-ins) and
/// every problem, each typed file on its own (syntax, key names, types, with positions), then
/// the merged settings' checks (naming the key and the file that set it). `Err`: the drop-in
/// directory cannot be listed. Nothing is written; no value is echoed beyond the reader's
/// messages.
pub fn check(
    explicit: Option<&Path>,
    root: &Path,
) -> Result<(Vec<String>, Vec<ConfigIssue>), ConfigError> {
    let (main, res) = main_file(explicit, root)?;
    let mut files = Vec::new();
    if explicit.is_some() || main.open.as_deref().is_some_and(Path::exists) {
        files.push(main.clone());
    }
    files.extend(dropins(&main, res.as_ref())?);
    let mut issues = Vec::new();
    let issue = |file: &str, position, message: String| ConfigIssue {
        file: file.to_string(),
        position,
        key: None,
        message,
    };
    for file in &files {
        let name = file.name.display().to_string();
        // Every listed file has a path to open (`main_file` and `dropins` keep no other).
        let f = file.open.as_deref().unwrap_or(&file.name);
        let text = match std::fs::metadata(f) {
            Ok(m) if m.len() > MAX_CONFIG => {
                issues.push(issue(
                    &name,
                    None,
                    format!("larger than {MAX_CONFIG} bytes"),
                ));
                continue;
            }
            Ok(_) => match std::fs::read(f) {
                Ok(b) => b,
                Err(e) => {
                    issues.push(issue(&name, None, format!("cannot read: {e}")));
                    continue;
                }
            },
            Err(e) => {
                issues.push(issue(&name, None, format!("cannot read: {e}")));
                continue;
            }
        };
        let text = match String::from_utf8(text) {
            Ok(t) => t,
            Err(e) => {
                issues.push(issue(
                    &name,
                    None,
                    format!(
                        "not UTF-8 (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                ));
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        if let Err(e) = serde_saphyr::from_str::<Config>(&text) {
            let position = e.location().map(|l| (l.line(), l.column()));
            let message = e.without_snippet().to_string();
            // The reader's message may repeat the position; keep it on one line.
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            issues.push(issue(&name, position, message));
        }
    }
    if issues.is_empty() {
        if let Err((e, key)) = load_layered_keyed(explicit, root, true) {
            let (file, message) = match &e {
                ConfigError::Invalid { path, detail } => (path.clone(), detail.clone()),
                other => (main.name.display().to_string(), other.to_string()),
            };
            issues.push(ConfigIssue {
                file,
                position: None,
                key: key.map(str::to_string),
                message,
            });
        }
    }
    Ok((
        files.iter().map(|f| f.name.display().to_string()).collect(),
        issues,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO in place of the configuration file is refused at once, naming it (a plain open
    /// would wait for a writer and hang the boot).
    #[cfg(unix)]
    #[test]
    fn a_fifo_configuration_file_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("primer.yaml");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(
                read_layer(&p, &p, true)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO configuration hung");
        let e = got.expect_err("a FIFO read as configuration");
        assert!(
            e.contains("primer.yaml") && e.contains("not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn defaults() {
        let c = Config::parse("", "x").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.probe.duplicates, DuplicateRule::Refuse);
        assert_eq!(c.probe.wait(), Duration::from_secs(3));
        assert_eq!(c.probe.rules(), Rules::default());
        assert_eq!(c.policy(), Policy::default());
    }

    #[test]
    fn full_file() {
        let c = Config::parse(
            "ssh_user: debian\nprobe:\n  wait_seconds: 0.5\n  duplicates: best\n  bind_dmi_uuid: true\n  pin_first_boot: yes\n  mbr_types: [0x99, 0x0c]\n  gpt_names: [config-v2, cfg]\n",
            "primer.yaml",
        )
        .unwrap();
        assert_eq!(c.ssh_user, "debian");
        assert_eq!(c.probe.duplicates, DuplicateRule::Best);
        assert!(c.probe.bind_dmi_uuid && c.probe.pin_first_boot && !c.probe.pin_allow_new);
        assert_eq!(c.probe.mbr_types, vec![0x99, 0x0c]);
        assert_eq!(c.probe.wait(), Duration::from_millis(500));
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = Config::parse("probe:\n  dupes: refuse\n", "/etc/primer/primer.yaml").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("/etc/primer/primer.yaml") && s.contains("dupes"),
            "{s}"
        );
        let e = Config::parse("probe:\n  wait_seconds: 9999\n", "p.yaml").unwrap_err();
        assert!(e.to_string().contains("probe.wait_seconds"), "{e}");
        let e = Config::parse("probe:\n  duplicates: maybe\n", "p.yaml").unwrap_err();
        assert!(e.to_string().contains("p.yaml"), "{e}");
        let e = Config::parse("ssh_user: a\nssh_user: b\n", "p.yaml").unwrap_err();
        assert!(e.to_string().contains("p.yaml"), "{e}");
    }

    #[test]
    fn files_mode_spellings() {
        for text in [
            "files_mode: 0o644\n",
            "files_mode: 0644\n",
            "files_mode: \"0644\"\n",
            "files_mode: '0o644'\n",
        ] {
            let c = Config::parse(text, "p.yaml").unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.files_mode, 0o644, "{text}");
            assert_eq!(c.policy().users.files_mode, 0o644, "{text}");
        }
        assert_eq!(
            Config::parse("files_mode: 0600\n", "p").unwrap().files_mode,
            0o600
        );
        assert_eq!(
            Config::parse("files_mode: 0o777\n", "p")
                .unwrap()
                .files_mode,
            0o777
        );
        assert_eq!(Config::parse("files_mode: 0\n", "p").unwrap().files_mode, 0);
        assert_eq!(
            Config::parse("ssh_user: a\n", "p").unwrap().files_mode,
            0o644
        );
    }

    #[test]
    fn files_mode_rejections_name_file_and_field() {
        for text in [
            "files_mode: 0o1777\n", // above 0o777
            "files_mode: 01644\n",
            "files_mode: 644\n", // decimal: 0o1204
            "files_mode: 444\n", // decimal: would be 0o674
            "files_mode: 0o648\n",
            "files_mode: 0x1a4\n",
            "files_mode: rw-r--r--\n",
            "files_mode: 0o\n",
            "files_mode: -0644\n",
            "files_mode: 0o77777777777777777777\n",
            "files_mode: ~\n",
        ] {
            let e = Config::parse(text, "/etc/primer/primer.yaml")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("/etc/primer/primer.yaml") && e.contains("files_mode"),
                "{text}: {e}"
            );
            if text != "files_mode: ~\n" {
                assert!(e.contains("0o644"), "{text}: {e}");
            }
        }
    }

    #[test]
    fn files_mode_leaves_other_numbers_alone() {
        // Hex bytes stay hex; a zero-prefixed number elsewhere is still refused (YAML 1.2),
        // not read as octal.
        let c = Config::parse(
            "files_mode: 0644\nscript_timeout_seconds: 60\nprobe:\n  mbr_types: [0x99, 0x0c, 12]\n",
            "p",
        )
        .unwrap();
        assert_eq!(c.probe.mbr_types, vec![0x99, 0x0c, 12]);
        assert_eq!(c.script_timeout_seconds, 60);
        assert!(Config::parse("script_timeout_seconds: 0600\n", "p").is_err());
        assert!(Config::parse("probe:\n  mbr_types: [010]\n", "p").is_err());
    }

    // Windows: files a test creates belong to the user running it, which the configuration
    // check refuses (`a_configuration_the_user_owns_is_refused_on_windows`).
    #[cfg(not(windows))]
    #[test]
    fn load_missing_default_is_defaults_but_explicit_must_exist() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(None, t.path()).unwrap(), Config::default());
        assert!(Config::load(Some(&t.path().join("nope.yaml")), t.path()).is_err());
        std::fs::create_dir_all(config_path(t.path()).parent().unwrap()).unwrap();
        std::fs::write(config_path(t.path()), "ssh_user: admin\n").unwrap();
        assert_eq!(Config::load(None, t.path()).unwrap().ssh_user, "admin");
    }

    #[test]
    fn reclaim_section() {
        let c = Config::parse("", "p").unwrap();
        assert!(!c.reclaim.enabled);
        assert!(c.reclaim.delete_config_partition && c.reclaim.grow_root && c.reclaim.wipe_config);
        let c = Config::parse("reclaim:\n  enabled: true\n  wipe_config: false\n", "p").unwrap();
        assert!(c.reclaim.enabled && !c.reclaim.wipe_config && c.reclaim.grow_root);
        let e = Config::parse("reclaim:\n  enable: true\n", "p.yaml").unwrap_err();
        assert!(e.to_string().contains("enable"), "{e}");
    }

    #[test]
    fn ssh_host_keys_section() {
        use crate::plan::hostkeys::KeyType;
        let c = Config::parse("", "p").unwrap();
        assert!(c.ssh_host_keys.regenerate);
        assert_eq!(c.ssh_host_keys.types, KeyType::ALL.to_vec());
        let c = Config::parse(
            "ssh_host_keys:\n  regenerate: false\n  types: [rsa, ed25519]\n",
            "p",
        )
        .unwrap();
        let p = c.policy();
        assert!(!p.host_keys.regenerate);
        assert_eq!(p.host_keys.types, vec![KeyType::Rsa, KeyType::Ed25519]);
        for bad in [
            "ssh_host_keys:\n  types: []\n",
            "ssh_host_keys:\n  types: [rsa, rsa]\n",
            "ssh_host_keys:\n  types: [dsa]\n",
            "ssh_host_keys:\n  regen: false\n",
        ] {
            let e = Config::parse(bad, "p.yaml").unwrap_err().to_string();
            assert!(e.contains("p.yaml"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_merged_document_reads_back_as_the_settings_it_was_written_from() {
        // The merge writes settings out as JSON and reads them back through the YAML reader:
        // strings YAML would otherwise take as other types or syntax keep their value.
        let text = "probe:\n  wait_seconds: 2.5\n  mbr_types: [0x0c]\n  duplicates: best\n\
                    default_user:\n  name: \"yes\"\n  groups: [\"0755\", \"a: b\", \"#x\", \"~\", \"\\u0001\\\\ \\\"q\\\"\", \"null\", \"1e3\"]\n\
                    files_mode: 0600\n";
        let c = Config::parse_unchecked(text, "t.yaml").unwrap();
        let json = serde_json::to_string_pretty(&serde_json::to_value(&c).unwrap()).unwrap();
        let back: Config = serde_saphyr::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.default_user.as_ref().unwrap().groups.len(), 7);
    }

    // Windows: files a test creates belong to the user running it, which the configuration
    // check refuses (`a_configuration_the_user_owns_is_refused_on_windows`).
    #[cfg(not(windows))]
    #[test]
    fn drop_ins_merge_over_the_main_file_in_name_order() {
        let t = tempfile::tempdir().unwrap();
        let etc = config_path(t.path()).parent().unwrap().to_path_buf();
        std::fs::create_dir_all(etc.join("primer.yaml.d")).unwrap();
        std::fs::write(
            etc.join("primer.yaml"),
            "probe:\n  wait_seconds: 25\n  mbr_types: [0x99]\ndefault_user:\n  name: debian\n  groups: [adm]\n",
        )
        .unwrap();
        let d = etc.join("primer.yaml.d");
        std::fs::write(
            d.join("20-b.yaml"),
            "probe:\n  wait_seconds: 5\nfiles_mode: 0600\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-a.yaml"),
            "probe:\n  duplicates: best\n  mbr_types: [0x0c, 0x12]\ndefault_user:\n  groups: [sudo]\n",
        )
        .unwrap();
        // Not drop-ins: hidden, another suffix.
        std::fs::write(d.join(".30-hidden.yaml"), "bogus: 1\n").unwrap();
        std::fs::write(d.join("40-note.yaml.dpkg-old"), "bogus: 1\n").unwrap();
        let l = load_layered(None, t.path()).unwrap();
        let c = &l.config;
        assert_eq!(c.probe.wait_seconds, 5.0);
        assert_eq!(c.probe.duplicates, DuplicateRule::Best);
        // Lists replace, maps merge.
        assert_eq!(c.probe.mbr_types, vec![0x0c, 0x12]);
        let du = c.default_user.as_ref().unwrap();
        assert_eq!(du.name, "debian");
        assert_eq!(du.groups, vec!["sudo".to_string()]);
        assert_eq!(c.files_mode, 0o600);
        assert_eq!(l.files.len(), 3);
        assert!(l.files[1].ends_with("10-a.yaml") && l.files[2].ends_with("20-b.yaml"));
        let from = |k: &str| {
            l.origins
                .get(k)
                // The file name on any platform (`\\` separates on Windows).
                .and_then(|f| std::path::Path::new(f).file_name())
                .map(|n| n.to_string_lossy().into_owned())
        };
        assert_eq!(from("probe.wait_seconds").as_deref(), Some("20-b.yaml"));
        assert_eq!(from("probe.duplicates").as_deref(), Some("10-a.yaml"));
        assert_eq!(from("default_user.name").as_deref(), Some("primer.yaml"));
        assert_eq!(from("files_mode").as_deref(), Some("20-b.yaml"));
        assert_eq!(from("ssh_user"), None);

        // A later `~` removes a whole section, and its keys' origins.
        std::fs::write(d.join("50-c.yaml"), "default_user: ~\n").unwrap();
        let l = load_layered(None, t.path()).unwrap();
        assert_eq!(l.config.default_user, None);
        assert_eq!(from_of(&l, "default_user"), Some("50-c.yaml".into()));
        assert!(!l.origins.keys().any(|k| k.starts_with("default_user.")));

        // An invalid drop-in is an error naming that file and key.
        std::fs::write(d.join("60-bad.yaml"), "probe:\n  wait_seconds: 9999\n").unwrap();
        let e = load_layered(None, t.path()).unwrap_err().to_string();
        assert!(
            e.contains("60-bad.yaml") && e.contains("probe.wait_seconds"),
            "{e}"
        );
        std::fs::write(d.join("60-bad.yaml"), "no_such_key: 1\n").unwrap();
        let e = load_layered(None, t.path()).unwrap_err().to_string();
        assert!(
            e.contains("60-bad.yaml") && e.contains("no_such_key"),
            "{e}"
        );
    }

    #[cfg(not(windows))]
    fn from_of(l: &Layered, k: &str) -> Option<String> {
        l.origins
            .get(k)
            .and_then(|f| std::path::Path::new(f).file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }

    // Windows: files a test creates belong to the user running it, which the configuration
    // check refuses (`a_configuration_the_user_owns_is_refused_on_windows`).
    #[cfg(not(windows))]
    #[test]
    fn no_files_and_one_file_read_as_before() {
        let t = tempfile::tempdir().unwrap();
        let l = load_layered(None, t.path()).unwrap();
        assert_eq!(l.config, Config::default());
        assert!(l.files.is_empty() && l.origins.is_empty());
        let f = t.path().join("p.yaml");
        std::fs::write(&f, "files_mode: 0o640\nscript_timeout_seconds: 7\n").unwrap();
        let l = load_layered(Some(&f), t.path()).unwrap();
        assert_eq!(l.config.files_mode, 0o640);
        assert_eq!(l.merged["files_mode"], "0o640");
        assert_eq!(l.config.script_timeout_seconds, 7);
        // And a zero time-out is refused, naming the key.
        std::fs::write(&f, "script_timeout_seconds: 0\n").unwrap();
        let e = load_layered(Some(&f), t.path()).unwrap_err().to_string();
        assert!(e.contains("script_timeout_seconds"), "{e}");
    }

    /// DESIGN.md rule 5: under a target root, `primer.yaml` and its drop-ins are read through
    /// the root's resolver. A link to an absolute path reads that path inside the root (the
    /// image's file), never the host's; a link climbing out with `..` stops at the root.
    #[cfg(unix)]
    #[test]
    fn configuration_links_resolve_inside_the_root() {
        use std::os::unix::fs::symlink;
        let host = tempfile::tempdir().unwrap();
        let host_file = host.path().join("host.yaml");
        std::fs::write(&host_file, "ssh_user: fromhost\n").unwrap();
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc/primer");
        std::fs::create_dir_all(etc.join("primer.yaml.d")).unwrap();
        symlink(&host_file, etc.join("primer.yaml")).unwrap();
        // The host's file is not read: inside the root the link names nothing.
        assert_eq!(Config::load(None, t.path()).unwrap(), Config::default());
        let (files, issues) = check(None, t.path()).unwrap();
        assert!(
            files.is_empty() && issues.is_empty(),
            "{files:?} {issues:?}"
        );
        // The same path inside the root is the one read.
        let inside = t.path().join(host_file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, "ssh_user: fromimage\n").unwrap();
        let l = load_layered(None, t.path()).unwrap();
        assert_eq!(l.config.ssh_user, "fromimage");
        // Named as the configuration file, not as where its link led.
        assert_eq!(l.files, vec![config_path(t.path()).display().to_string()]);
        // A drop-in linking to the host's file (absolute, or climbing out with `..`) reads
        // the image's file too, or nothing.
        std::fs::remove_file(&inside).unwrap();
        symlink(&host_file, etc.join("primer.yaml.d/10-abs.yaml")).unwrap();
        let up = format!("../../../..{}", host_file.display());
        symlink(&up, etc.join("primer.yaml.d/20-up.yaml")).unwrap();
        let l = load_layered(None, t.path()).unwrap();
        assert_eq!(
            l.config.ssh_user,
            Config::default().ssh_user,
            "{:?}",
            l.files
        );
        assert!(l.files.is_empty(), "{:?}", l.files);
        std::fs::write(&inside, "ssh_user: dropin\n").unwrap();
        let l = load_layered(None, t.path()).unwrap();
        assert_eq!(l.config.ssh_user, "dropin");
        assert_eq!(l.files.len(), 3, "{:?}", l.files);
        assert!(
            l.files[1].ends_with("primer.yaml.d/10-abs.yaml"),
            "{:?}",
            l.files
        );
        // An explicit `--config` is the caller's own path, read as given.
        let c = Config::load(Some(&host_file), t.path()).unwrap();
        assert_eq!(c.ssh_user, "fromhost");
        // A drop-in link that loops (alone, or two into each other) is skipped as a non-file
        // entry is, as at root `/`: the rest of the configuration is read.
        symlink("30-loop.yaml", etc.join("primer.yaml.d/30-loop.yaml")).unwrap();
        symlink("41-b.yaml", etc.join("primer.yaml.d/40-a.yaml")).unwrap();
        symlink("40-a.yaml", etc.join("primer.yaml.d/41-b.yaml")).unwrap();
        let l = load_layered(None, t.path()).unwrap();
        assert_eq!(l.config.ssh_user, "dropin");
        assert_eq!(l.files.len(), 3, "{:?}", l.files);
    }

    /// `Config::load` skips the merge with fewer than two files: the same settings and the
    /// same errors as the merged reading, for no file, one file (good or refused) and two.
    #[cfg(not(windows))]
    #[test]
    fn load_without_merge_is_the_merged_reading() {
        let t = tempfile::tempdir().unwrap();
        let same = |t: &Path| match (Config::load(None, t), load_layered(None, t)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b.config),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("{a:?} / {:?}", b.map(|l| l.config)),
        };
        same(t.path());
        let main = config_path(t.path());
        std::fs::create_dir_all(main.parent().unwrap()).unwrap();
        std::fs::write(&main, "ssh_user: admin\nfiles_mode: 0o600\n").unwrap();
        same(t.path());
        std::fs::write(&main, "script_timeout_seconds: 0\n").unwrap();
        same(t.path());
        std::fs::write(&main, "ssh_user: admin\n").unwrap();
        let d = t.path().join("etc/primer/primer.yaml.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("10-x.yaml"), "files_mode: 0o640\n").unwrap();
        same(t.path());
        assert_eq!(Config::load(None, t.path()).unwrap().files_mode, 0o640);
    }

    #[test]
    fn admin_user_and_disable_root_keys() {
        let p = Config::parse("", "p").unwrap().policy();
        assert!(p.users.admin_user.create);
        assert_eq!(p.users.admin_user.groups, ["adm", "sudo"]);
        assert_eq!(p.users.admin_user.sudo, None);
        assert_eq!(p.users.disable_root, DisableRoot::Off);
        let c = Config::parse(
            "admin_user:\n  create: false\n  groups: [wheel]\n  sudo: \"ALL=(ALL) ALL\"\ndisable_root: user-data\ndisable_root_opts: 'no-pty,command=\"echo $USER\"'\n",
            "p",
        )
        .unwrap();
        let p = c.policy();
        assert!(!p.users.admin_user.create);
        assert_eq!(p.users.admin_user.groups, ["wheel"]);
        assert_eq!(p.users.disable_root, DisableRoot::UserData);
        assert_eq!(
            p.users.disable_root_opts.as_deref(),
            Some("no-pty,command=\"echo $USER\"")
        );
        for (text, want) in [
            ("disable_root: on\n", DisableRoot::On),
            ("disable_root: true\n", DisableRoot::On),
            ("disable_root: false\n", DisableRoot::Off),
            ("disable_root: off\n", DisableRoot::Off),
        ] {
            assert_eq!(
                Config::parse(text, "p").unwrap().disable_root,
                want,
                "{text}"
            );
        }
        for bad in [
            "disable_root: maybe\n",
            "disable_root_opts: 'no-pty ssh-ed25519 AAAA'\n",
            "disable_root_opts: 'command=\"x'\n",
            "disable_root_opts: ''\n",
            "disable_root_opts: \"no-pty\\nssh-rsa\"\n",
            "admin_user:\n  make: true\n",
        ] {
            let e = Config::parse(bad, "p.yaml").unwrap_err().to_string();
            assert!(e.contains("p.yaml"), "{bad}: {e}");
        }
    }

    #[cfg(windows)]
    #[test]
    fn a_configuration_the_user_owns_is_refused_on_windows() {
        // A test's files belong to the user running it (under wine, every file does: wine keeps
        // no owner or DACL on a Unix-backed drive): refused before a byte is read, naming the
        // file or directory and the trustee. Where it passes (an elevated run on NTFS whose
        // files are owned by Administrators), the settings are read.
        let t = tempfile::tempdir().unwrap();
        let main = config_path(t.path());
        assert!(
            main.ends_with(r"ProgramData\primer\primer.yaml"),
            "{}",
            main.display()
        );
        std::fs::create_dir_all(main.parent().unwrap()).unwrap();
        std::fs::write(&main, "ssh_user: attacker\n").unwrap();
        match load_layered(None, t.path()) {
            Err(ConfigError::Untrusted { path, detail }) => {
                assert!(path.ends_with("primer"), "{path}");
                assert!(
                    detail.contains("owner") || detail.contains("DACL"),
                    "{detail}"
                );
                assert!(detail.contains("S-1-"), "the trustee is named: {detail}");
            }
            Ok(l) => assert_eq!(l.config.ssh_user, "attacker"),
            Err(e) => panic!("{e}"),
        }
        // An explicit --config is checked the same way.
        let f = t.path().join("p.yaml");
        std::fs::write(&f, "ssh_user: attacker\n").unwrap();
        match load_layered(Some(&f), t.path()) {
            Err(e @ ConfigError::Untrusted { .. }) => {
                assert!(e.to_string().contains("refused"), "{e}")
            }
            Ok(l) => assert_eq!(l.config.ssh_user, "attacker"),
            Err(e) => panic!("{e}"),
        }
        // Nothing there: the defaults, nothing to vouch for.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(None, empty.path()).unwrap(), Config::default());
    }
}
