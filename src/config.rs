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
//! files_mode: 0o644         # mode of injected files (meta_data.json "files")
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
    /// Mode of injected files.
    pub files_mode: u32,
    pub script_timeout_seconds: u64,
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
        if c.files_mode > 0o7777 {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                detail: format!("files_mode: {:o} is not a file mode", c.files_mode),
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
    fn load_missing_default_is_defaults_but_explicit_must_exist() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(None, t.path()).unwrap(), Config::default());
        assert!(Config::load(Some(&t.path().join("nope.yaml")), t.path()).is_err());
        std::fs::create_dir_all(t.path().join("etc/primer")).unwrap();
        std::fs::write(t.path().join(CONFIG_PATH), "ssh_user: admin\n").unwrap();
        assert_eq!(Config::load(None, t.path()).unwrap().ssh_user, "admin");
    }
}
