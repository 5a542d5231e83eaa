//! Users and passwords: the default user of the configuration, `#cloud-config` `users:`, the
//! drive's password (admin_pass, CloudStack, OVF) and cloud-config `password`/`chpasswd`, sudo
//! rules and SSH password login, planned as edits of the target's account files. Pure: the salt
//! for new password hashes comes from the host facts; nothing here reads or writes files, and no
//! clear password ever reaches a step, a why or a warning.

use std::time::Duration;

use serde::Deserialize;

/// The account created on first boot (configuration `default_user`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultUser {
    pub name: String,
    #[serde(default)]
    pub gecos: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub shell: Option<String>,
    /// A sudoers rule such as `ALL=(ALL) NOPASSWD:ALL`; none when absent.
    #[serde(default)]
    pub sudo: Option<String>,
    #[serde(default = "yes")]
    pub lock_password: bool,
}

fn yes() -> bool {
    true
}

/// Whether a new password on a changed drive (same instance) is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordUpdates {
    /// Only for CloudStack, whose password server resets passwords through the drive.
    #[default]
    Auto,
    Always,
    Never,
}

/// SSH password login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SshPwauth {
    /// Never touched by primer.
    #[default]
    Keep,
    Yes,
    No,
    /// As `#cloud-config` `ssh_pwauth` says (untouched when it says nothing).
    UserData,
}

/// Whether primer handles user-data and vendor-data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserDataMode {
    #[default]
    Apply,
    /// Leave them to another agent (e.g. cloud-init running after primer).
    Ignore,
}

/// The operator's choices about accounts, user-data, injected files and scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    pub default_user: Option<DefaultUser>,
    /// Who receives the drive's password; `None`: the drive's admin user name, else the default
    /// user, else root.
    pub password_user: Option<String>,
    pub password_updates: PasswordUpdates,
    pub ssh_pwauth: SshPwauth,
    pub user_data: UserDataMode,
    pub files_mode: u32,
    pub script_timeout: Duration,
}

impl Default for UserPolicy {
    fn default() -> Self {
        UserPolicy {
            default_user: None,
            password_user: None,
            password_updates: PasswordUpdates::Auto,
            ssh_pwauth: SshPwauth::Keep,
            user_data: UserDataMode::Apply,
            files_mode: 0o644,
            script_timeout: Duration::from_secs(600),
        }
    }
}
