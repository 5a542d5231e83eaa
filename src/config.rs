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
//! probe:
//!   wait_seconds: 3         # how long to wait for a late config drive (--wait overrides)
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
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::plan::users::{DefaultUser, PasswordUpdates, SshPwauth, UserDataMode};
use crate::plan::Policy;
use crate::probe::trust::DuplicateRule;
use crate::probe::Rules;

/// Where the configuration lives, relative to the target root.
pub const CONFIG_PATH: &str = "etc/primer/primer.yaml";
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
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    #[serde(deserialize_with = "files_mode")]
    pub files_mode: u32,
    pub script_timeout_seconds: u64,
    pub reclaim: ReclaimConfig,
    pub ssh_host_keys: crate::plan::hostkeys::HostKeyPolicy,
}

/// `reclaim:`: what `primer reclaim --apply` may do (nothing unless `enabled`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
            reclaim: ReclaimConfig::default(),
            ssh_host_keys: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    pub user: Option<String>,
    pub updates: PasswordUpdates,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
        }
    }
}

impl ProbeConfig {
    pub fn rules(&self) -> Rules {
        Rules {
            gpt_names: self.gpt_names.clone(),
            gpt_types: self.gpt_types.clone(),
            mbr_types: self.mbr_types.clone(),
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
            ssh_user,
            network: crate::plan::network::NetPolicy {
                backend: self.network_backend,
                // NICs the drive names get the same deadline as late config drives.
                wait: self.probe.wait(),
            },
            users: crate::plan::users::UserPolicy {
                default_user: self.default_user.clone(),
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
        }
    }

    /// Parses configuration text; `path` names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let c: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            detail: e.to_string(),
        })?;
        if !c.probe.wait_seconds.is_finite() || !(0.0..=MAX_WAIT).contains(&c.probe.wait_seconds) {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                detail: format!(
                    "probe.wait_seconds: {} is outside 0..={MAX_WAIT}",
                    c.probe.wait_seconds
                ),
            });
        }
        let bad_name = |n: &str| n.is_empty() || n.contains(['/', ':', '\n']);
        if let Some(d) = &c.default_user {
            if bad_name(&d.name) {
                return Err(ConfigError::Invalid {
                    path: path.to_string(),
                    detail: format!("default_user.name: {:?} is not a user name", d.name),
                });
            }
        }
        if c.files_mode > MAX_FILES_MODE {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                detail: format!(
                    "files_mode: 0o{:o} is not a file mode (at most 0o777; e.g. 0o644)",
                    c.files_mode
                ),
            });
        }
        let types = &c.ssh_host_keys.types;
        if types.is_empty() || (1..types.len()).any(|i| types[..i].contains(&types[i])) {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                detail: "ssh_host_keys.types: list each key type once, at least one \
                         (regenerate: false keeps the image's keys)"
                    .into(),
            });
        }
        if c.ssh_user != SSH_USER_UNSET && bad_name(&c.ssh_user) {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                detail: format!("ssh_user: {:?} is not a user name", c.ssh_user),
            });
        }
        Ok(c)
    }

    /// Loads `explicit` (must exist), else `<root>/etc/primer/primer.yaml` when present, else
    /// the defaults.
    pub fn load(explicit: Option<&Path>, root: &Path) -> Result<Config, ConfigError> {
        let (path, required): (PathBuf, bool) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (root.join(CONFIG_PATH), false),
        };
        let name = path.display().to_string();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!("{name}: not present; using defaults");
                return Ok(Config::default());
            }
            Err(e) => {
                return Err(ConfigError::Io {
                    path: name,
                    source: e,
                })
            }
        };
        if meta.len() > MAX_CONFIG {
            return Err(ConfigError::TooLarge { path: name });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Io {
            path: name.clone(),
            source: e,
        })?;
        let c = Config::parse(&text, &name)?;
        tracing::debug!("{name}: loaded");
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn load_missing_default_is_defaults_but_explicit_must_exist() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(None, t.path()).unwrap(), Config::default());
        assert!(Config::load(Some(&t.path().join("nope.yaml")), t.path()).is_err());
        std::fs::create_dir_all(t.path().join("etc/primer")).unwrap();
        std::fs::write(t.path().join(CONFIG_PATH), "ssh_user: admin\n").unwrap();
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
}
