//! Users and passwords: the default user of the configuration, `#cloud-config` `users:`, the
//! drive's admin user (`meta.admin_username`, OVF `username`), the drive's password (admin_pass,
//! CloudStack, OVF) and cloud-config `password`/`chpasswd`, sudo rules, SSH password login and
//! `disable_root`'s options on root's keys, planned as edits of the target's account files. Pure: the salt
//! for new password hashes comes from the host facts; nothing here reads or writes files, and no
//! clear password ever reaches a step, a why or a warning.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The account created on first boot (configuration `default_user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultUser {
    /// Required; defaulted only so that a configuration drop-in can change one key of the
    /// section (the merged configuration is checked for a name).
    #[serde(default)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordUpdates {
    /// Only for CloudStack, whose password server resets passwords through the drive.
    #[default]
    Auto,
    Always,
    Never,
}

/// SSH password login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserDataMode {
    #[default]
    Apply,
    /// Leave them to another agent (e.g. cloud-init running after primer).
    Ignore,
}

/// The drive's administrator account (OpenStack `meta.admin_username`, also in the OpenStack
/// tree of a CloudStack drive; OVF `username`): created when the image lacks it, as
/// cloudbase-init does (configuration `admin_user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminUser {
    /// Create the account when the image lacks it; `false`: the step (and the drive's password
    /// for that account) is skipped with a warning.
    pub create: bool,
    /// Supplementary groups of a created account (missing groups are created).
    pub groups: Vec<String>,
    pub shell: Option<String>,
    /// A sudoers rule for an account primer created (never for one the image had).
    pub sudo: Option<String>,
}

impl Default for AdminUser {
    fn default() -> Self {
        // Debian's administrator groups: logs (adm) and sudo with the account's password.
        AdminUser {
            create: true,
            groups: vec!["adm".into(), "sudo".into()],
            shell: None,
            sudo: None,
        }
    }
}

/// Whether root's `authorized_keys` block gets cloud-init's `disable_root` options. Written
/// `off`/`on`/`user-data` (a YAML boolean is read as off/on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DisableRoot {
    /// Root's keys are installed as given (user-data `disable_root` is warned about).
    #[default]
    Off,
    On,
    /// As `#cloud-config` `disable_root` says; cloud-init's default (on) when it says nothing.
    UserData,
}

/// Written as it is read (`off`, `on`, `user-data`): the configuration's layers merge as data.
impl Serialize for DisableRoot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            DisableRoot::Off => "off",
            DisableRoot::On => "on",
            DisableRoot::UserData => "user-data",
        })
    }
}

impl<'de> Deserialize<'de> for DisableRoot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(b) => Ok(if b { DisableRoot::On } else { DisableRoot::Off }),
            Raw::Text(t) => match t.as_str() {
                "off" | "false" => Ok(DisableRoot::Off),
                "on" | "true" => Ok(DisableRoot::On),
                "user-data" => Ok(DisableRoot::UserData),
                _ => Err(serde::de::Error::custom(format!(
                    "disable_root: {:?} is not off, on or user-data",
                    grammar::log_safe(&t, 64)
                ))),
            },
        }
    }
}

/// cloud-init's `disable_root_opts` default (`$USER`: the default user, `NONE` when there is
/// none; `$DISABLE_USER`: root).
pub const DISABLE_ROOT_OPTS: &str = r#"no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo 'Please login as the user \"$USER\" rather than the user \"$DISABLE_USER\".';echo;sleep 10;exit 142""#;

/// The operator's choices about accounts, user-data, injected files and scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    pub default_user: Option<DefaultUser>,
    pub admin_user: AdminUser,
    pub disable_root: DisableRoot,
    /// Replaces `disable_root_opts` (user-data's and the default); validated by the
    /// configuration as an `authorized_keys` options list.
    pub disable_root_opts: Option<String>,
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
            admin_user: AdminUser::default(),
            disable_root: DisableRoot::Off,
            disable_root_opts: None,
            password_user: None,
            password_updates: PasswordUpdates::Auto,
            ssh_pwauth: SshPwauth::Keep,
            user_data: UserDataMode::Apply,
            files_mode: 0o644,
            script_timeout: Duration::from_secs(600),
        }
    }
}

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::accounts::AccountWrite;
use super::accounts::{self, AccountFiles, LoginDefs, UserSpec};
use super::keys;
use super::password;
use super::placement;
use super::{Action, Change, FileFact, Meta, PasswdEntry, Planner, Step};
use crate::model::grammar::{self, Esc};
use crate::model::userdata::{CcUser, PasswordValue, UserData};
use crate::model::{Format, Instance};
use crate::state;

/// Account files, as `HostFacts::files` keys.
pub const PASSWD: &str = "etc/passwd";
pub const SHADOW: &str = "etc/shadow";
pub const GROUP: &str = "etc/group";
pub const GSHADOW: &str = "etc/gshadow";
pub const SUBUID: &str = "etc/subuid";
pub const SUBGID: &str = "etc/subgid";
pub const LOGIN_DEFS: &str = "etc/login.defs";
pub const USERADD_DEFAULTS: &str = "etc/default/useradd";
pub const SUDOERS: &str = "etc/sudoers";
/// primer's sudoers drop-ins: the configuration's default user, and users from user-data.
pub const SUDOERS_DROPIN: &str = "etc/sudoers.d/90-primer";
pub const SUDOERS_USER_DATA_DROPIN: &str = "etc/sudoers.d/91-primer-user-data";
/// primer's sshd drop-in (Debian's sshd_config includes sshd_config.d/*.conf first).
pub const SSHD_DROPIN: &str = "etc/ssh/sshd_config.d/50-primer.conf";
pub const SKEL: &str = "etc/skel";

/// Header of the drop-ins primer owns.
const DROPIN_HEADER: &str = "# managed by primer: written from the configuration and the config drive's data; local edits are kept until that data changes";

/// Whether this instance may lead to account changes, so the host facts hold the account files.
pub fn wants_accounts(instance: &Instance, policy: &UserPolicy) -> bool {
    policy.default_user.is_some()
        || instance.admin_pass.is_some()
        || (instance.admin_username.is_some() && policy.admin_user.create)
        || (policy.user_data == UserDataMode::Apply
            && (instance.user_data.is_some() || !instance.vendor_user_data.is_empty()))
}

/// The files read for account planning (besides /etc/skel, walked separately).
pub const ACCOUNT_FACTS: &[&str] = &[
    PASSWD,
    SHADOW,
    GROUP,
    GSHADOW,
    SUBUID,
    SUBGID,
    LOGIN_DEFS,
    USERADD_DEFAULTS,
    SUDOERS,
    SUDOERS_DROPIN,
    SUDOERS_USER_DATA_DROPIN,
    SSHD_DROPIN,
];

/// A 12-byte salt for the `n`-th password hashed in this plan, from the facts' random bytes.
fn salt(random: &[u8; 32], n: usize, user: &str) -> [u8; 12] {
    let mut h = Sha256::new();
    h.update(random);
    h.update((n as u64).to_le_bytes());
    h.update(user.as_bytes());
    let d = h.finalize();
    let mut s = [0u8; 12];
    s.copy_from_slice(&d[..12]);
    s
}

/// The password field of `user` in shadow text.
fn shadow_field<'a>(shadow: &'a str, user: &str) -> Option<&'a str> {
    shadow.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(user)).then(|| f.next()).flatten()
    })
}

/// gid of a group by name in group text.
pub fn group_gid(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

fn text(f: Option<&FileFact>) -> Option<String> {
    f.map(|f| String::from_utf8_lossy(&f.content).into_owned())
}

/// One account asked for: the account, its sudo rule (and whether it came from user-data, not
/// the configuration), and the SSH keys user-data gives it.
type Wish = (UserSpec, Option<(String, bool)>, Vec<String>);

/// One password to set: who, from where, and the secret or hash (past the gate).
struct Wanted<'a> {
    user: String,
    from: &'static str,
    value: password::Accepted<'a>,
    /// Subject to the `password.updates` policy (the drive's admin password).
    drive: bool,
}

impl Planner<'_> {
    /// The current account files (as changed by earlier steps of this plan).
    fn account_files(&self) -> AccountFiles {
        let f = |p: &str| {
            self.accounts_now
                .get(p)
                .cloned()
                .unwrap_or_else(|| text(self.facts.files.get(p)))
        };
        AccountFiles {
            passwd: f(PASSWD).unwrap_or_default(),
            shadow: f(SHADOW),
            group: f(GROUP).unwrap_or_default(),
            gshadow: f(GSHADOW),
            subuid: f(SUBUID),
            subgid: f(SUBGID),
        }
    }

    fn login_defs(&self) -> LoginDefs {
        let defs =
            accounts::parse_login_defs(&text(self.facts.files.get(LOGIN_DEFS)).unwrap_or_default());
        match text(self.facts.files.get(USERADD_DEFAULTS)) {
            Some(t) => accounts::parse_useradd_defaults(&t, defs),
            None => defs,
        }
    }

    /// Adds one account-editing step: the files of `edit` that change, each with the hash of
    /// the content it was planned from, so apply refuses if another tool changed it meanwhile.
    fn accounts_step(
        &mut self,
        id: &str,
        edit: &accounts::AccountsEdit,
        why: String,
        input: Option<String>,
    ) {
        let before = self.account_files();
        let mut writes = Vec::new();
        for (path, new, old) in [
            (PASSWD, &edit.passwd, Some(before.passwd.clone())),
            (SHADOW, &edit.shadow, before.shadow.clone()),
            (GROUP, &edit.group, Some(before.group.clone())),
            (GSHADOW, &edit.gshadow, before.gshadow.clone()),
            (SUBUID, &edit.subuid, before.subuid.clone()),
            (SUBGID, &edit.subgid, before.subgid.clone()),
        ] {
            let Some(new) = new else { continue };
            let existed = self.facts.files.get(path);
            let expect = match (existed, self.accounts_now.contains_key(path)) {
                (_, true) | (Some(_), false) => old.map(|o| state::sha256_hex(o.as_bytes())),
                (None, false) => None,
            };
            let meta = existed.map(|f| f.meta).unwrap_or(match path {
                SHADOW | GSHADOW => Meta {
                    mode: 0o640,
                    uid: 0,
                    gid: 0,
                },
                _ => PUBLIC_FILE,
            });
            writes.push(AccountWrite {
                path: path.to_string(),
                expect_sha256: expect,
                content: new.clone().into_bytes(),
                meta,
            });
            self.accounts_now
                .insert(path.to_string(), Some(new.clone()));
        }
        let change = if writes.is_empty() {
            Change::Unchanged
        } else {
            Change::Update
        };
        self.steps.push(Step {
            id: id.to_string(),
            change,
            action: Action::EditAccounts {
                writes,
                intent: None,
            },
            why: why.into(),
            input: input.map(Into::into),
        });
    }

    /// Users (default user, `#cloud-config` `users:`), their homes, sudo rules and passwords.
    /// Returns nothing; created users become visible to later steps through `user`.
    pub(super) fn plan_accounts(
        &mut self,
        instance: &Instance,
        ud: &UserData,
        policy: &UserPolicy,
    ) {
        if !wants_accounts(instance, policy) && ud.cloud_config == Default::default() {
            return;
        }
        if !self.facts.files.contains_key(PASSWD) {
            self.warnings.warn(
                "/etc/passwd",
                "",
                "missing in the target: no users or passwords applied",
            );
            return;
        }
        let defs = self.login_defs();
        let cc = &ud.cloud_config;

        // Who: the default user unless #cloud-config lists users without `default`.
        let mut specs: Vec<Wish> = Vec::new();
        // A clear password per spec (index-aligned), hashed only for an account this run
        // creates: an existing account's password field is the password steps' business.
        let mut clear: Vec<Option<(&[u8], usize)>> = Vec::new();
        let default_wanted = !cc.users_given || cc.users.iter().any(CcUser::is_default);
        let mut default = policy.default_user.as_ref().map(|d| {
            (
                UserSpec {
                    name: d.name.clone(),
                    gecos: d.gecos.clone(),
                    groups: d.groups.clone(),
                    shell: d.shell.clone(),
                    lock_password: d.lock_password,
                    create_home: true,
                    ..Default::default()
                },
                d.sudo.iter().cloned().collect::<Vec<_>>(),
                Vec::new(),
            )
        });
        let mut default_from = ("configuration", "default_user".to_string(), false);
        // `user:` adjusts the default user (cloud-init: settings for the distribution's
        // default user); with no default user configured it names one.
        if let Some(u) = &cc.user {
            default_from = ("user-data", "user".to_string(), true);
            let d = default.get_or_insert_with(|| {
                (
                    UserSpec {
                        lock_password: true,
                        create_home: true,
                        ..Default::default()
                    },
                    Vec::new(),
                    Vec::new(),
                )
            });
            if !u.name.is_empty() && u.name != CcUser::DEFAULT_NAME {
                d.0.name = u.name.clone();
            }
            if u.gecos.is_some() {
                d.0.gecos = u.gecos.clone();
            }
            if !u.groups.is_empty() {
                d.0.groups = u.groups.clone();
            }
            if u.shell.is_some() {
                d.0.shell = u.shell.clone();
            }
            if !u.sudo.is_empty() {
                d.1 = u.sudo.clone();
            }
            d.0.lock_password = u.lock_passwd;
            d.2 = u.ssh_authorized_keys.clone();
            if d.0.name.is_empty() {
                default = None;
            }
        }
        if let (Some(mut d), true) = (default, default_wanted) {
            let (file, at, from_ud) = &default_from;
            // The default user keeps its sudo rule's origin: the configuration's rule goes to
            // the configuration's drop-in unless `user:` replaced it.
            let sudo_from_ud = *from_ud && cc.user.as_ref().is_some_and(|u| !u.sudo.is_empty());
            if self.check_wish(&mut d.0, &mut d.1, file, at) {
                self.default_user = Some(d.0.name.clone());
                let rules = (!d.1.is_empty()).then(|| (d.1.join("\n"), sudo_from_ud));
                specs.push((d.0, rules, d.2));
                clear.push(None);
            }
        }
        for (n, u) in cc.users.iter().enumerate().filter(|(_, u)| !u.is_default()) {
            let at = format!("users[{n}]");
            let mut spec = UserSpec {
                name: u.name.clone(),
                gecos: u.gecos.clone(),
                primary_group: u.primary_group.clone(),
                groups: u.groups.clone(),
                shell: u.shell.clone(),
                home: u.homedir.clone(),
                system: u.system,
                uid: u.uid,
                lock_password: u.lock_passwd,
                password_hash: None,
                create_home: !u.no_create_home && !u.system,
            };
            let mut sudo = u.sudo.clone();
            if !self.check_wish(&mut spec, &mut sudo, "user-data", &at) {
                continue;
            }
            // Precedence as before: hashed_passwd, passwd, then plain_text_passwd; each value
            // given passes the gate (a refused one is warned and the next one used).
            let mut plain = None;
            let given = [
                (
                    "hashed_passwd",
                    u.hashed_passwd.as_deref().map(str::as_bytes),
                    password::Kind::Hash,
                ),
                (
                    "passwd",
                    u.passwd.as_deref().map(str::as_bytes),
                    password::Kind::Hash,
                ),
                (
                    "plain_text_passwd",
                    u.plain_text_passwd.as_ref().map(|p| p.expose()),
                    password::Kind::Clear,
                ),
            ];
            for (field, raw, kind) in given {
                let Some(raw) = raw else { continue };
                match self.gate("user-data", &format!("{at}.{field}"), raw, kind) {
                    Some(_) if spec.password_hash.is_some() || plain.is_some() => {}
                    Some(password::Accepted::Hash(h)) => spec.password_hash = Some(h.to_string()),
                    Some(password::Accepted::Clear(p)) => {
                        plain = Some((p, n));
                        // Stands for the hash until the account is known to be new (see
                        // `clear`); Debug output (and so the recorded input) shows only that
                        // a password was asked for.
                        spec.password_hash = Some(String::new());
                    }
                    None => {}
                }
            }
            specs.push((
                spec,
                (!sudo.is_empty()).then(|| (sudo.join("\n"), true)),
                u.ssh_authorized_keys.clone(),
            ));
            clear.push(plain);
        }
        if !specs.is_empty() {
            // An existing account keeps its password field: passwords are the password steps'
            // business, so a re-run never re-locks or re-hashes what was set before.
            let users: Vec<UserSpec> = specs
                .iter()
                .zip(&clear)
                .map(|(s, plain)| {
                    let mut u = s.0.clone();
                    if self.user(&u.name).is_some() {
                        u.lock_password = false;
                        u.password_hash = None;
                    } else if let Some((p, n)) = plain {
                        // The only hashing of an account's clear password: once, for the
                        // account this run creates.
                        u.password_hash = Some(accounts::hash_password(
                            p,
                            &salt(&self.salt, 1000 + n, &u.name),
                        ));
                    }
                    u
                })
                .collect();
            let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
            // The input is what was asked for (Debug redacts hashes), not what this run
            // still has to do.
            let asked: Vec<&UserSpec> = specs.iter().map(|s| &s.0).collect();
            let input = Some(state::sha256_hex(format!("{asked:?}").as_bytes()));
            let edit = accounts::plan_accounts(&self.account_files(), &defs, &users, &[]);
            for w in &edit.warnings {
                self.warnings.warn("users", "", w.clone());
            }
            let created: Vec<&str> = edit.created.iter().map(|c| c.name.as_str()).collect();
            if edit.changes()
                && input
                    .as_deref()
                    .is_some_and(|i| self.applied_before("users", i))
            {
                // Created for this instance before and removed since: not re-created.
                self.steps.push(Step {
                    id: "users".into(),
                    change: Change::Skip,
                    action: Action::Nothing,
                    why: format!(
                        "users {} already created for this instance and changed since; kept",
                        names.join(", ")
                    )
                    .into(),
                    input: input.map(Into::into),
                });
            } else {
                let refused = if edit.warnings.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} request(s) refused (see the warnings)",
                        edit.warnings.len()
                    )
                };
                let why = if created.is_empty() && !edit.changes() {
                    format!("users {}: nothing to change{refused}", names.join(", "))
                } else if created.is_empty() {
                    format!("users {}: group memberships{refused}", names.join(", "))
                } else {
                    format!("create users {}{refused}", created.join(", "))
                };
                self.accounts_step("users", &edit, why, input);
                for c in &edit.created {
                    self.created_users.push(PasswdEntry {
                        name: c.name.clone(),
                        uid: c.uid,
                        gid: c.gid,
                        home: c.home.clone(),
                    });
                }
            }
            // Homes: for new accounts, and for the requested accounts whose home is missing (a
            // run interrupted between writing the accounts and making the home).
            for (spec, _, _) in &specs {
                if !spec.create_home {
                    continue;
                }
                if let Some(pw) = self.user(&spec.name) {
                    let new = edit.created.iter().any(|c| c.name == spec.name);
                    self.plan_home(pw.uid, pw.gid, &pw.home, defs.home_mode, new);
                }
            }
            // Keys of #cloud-config users, planned with the SSH user's (one block per user).
            for (spec, _, keys) in &specs {
                if !keys.is_empty() {
                    // Duplicates are removed once, where the block is planned (linear).
                    let k = self.keys_for.entry(spec.name.clone()).or_default();
                    k.extend(keys.iter().cloned());
                }
            }
        }
        // The drive's administrator account, after the users above (it may be one of them).
        let asked: Vec<&str> = specs.iter().map(|s| s.0.name.as_str()).collect();
        let admin_rules = self.plan_admin_user(instance, policy, &defs, &asked);
        if !specs.is_empty() || !admin_rules.is_empty() {
            // Sudo rules of accounts that exist (or are created); the configuration's and
            // user-data's in two drop-ins, so a bad user-data rule cannot take the configured
            // default user's away.
            for from_user_data in [false, true] {
                let mut rules: Vec<String> = specs
                    .iter()
                    .filter(|(s, _, _)| self.user(&s.name).is_some())
                    .filter_map(|(s, sudo, _)| sudo.as_ref().map(|r| (s, r)))
                    .filter(|(_, (_, ud))| *ud == from_user_data)
                    .flat_map(|(s, (r, _))| {
                        r.lines()
                            .filter(|l| !l.trim().is_empty())
                            .map(|l| format!("{} {}", s.name, l.trim()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                if !from_user_data {
                    // The admin account's rule is the configuration's.
                    rules.extend(admin_rules.iter().cloned());
                }
                self.plan_sudoers(&rules, from_user_data);
            }
        }

        self.plan_passwords(instance, ud, policy);
        self.plan_pwauth(ud, policy);
    }

    /// The key lines of `owner`, the account that receives the drive's keys: the drive's and
    /// `#cloud-config` `ssh_authorized_keys`, then the `users:` keys given to that account. When
    /// the owner is root and `disable_root` applies, the first get cloud-init's options (the
    /// configuration's `disable_root_opts`, else user-data's, else cloud-init's default; `$USER`
    /// is the default user, `NONE` when there is none, `$DISABLE_USER` root), replacing a key's
    /// own options as cloud-init does; a `users:` entry for root keeps its keys as given, unless
    /// the same key also came from the drive (cloud-init's last write, the restricted one, wins).
    pub(super) fn owner_keys(
        &mut self,
        instance: &Instance,
        ud: &UserData,
        policy: &UserPolicy,
        owner: &str,
        extra: &[String],
    ) -> Vec<String> {
        let cc = &ud.cloud_config;
        let on = match policy.disable_root {
            DisableRoot::Off => {
                if cc.disable_root == Some(true) {
                    self.warnings.warn(
                        "user-data",
                        "disable_root",
                        "not applied: the configuration keeps root's keys as given (disable_root: off)",
                    );
                }
                false
            }
            DisableRoot::On => true,
            DisableRoot::UserData => cc.disable_root.unwrap_or(true),
        };
        let drive = super::unique_keys(instance.ssh_keys.iter().chain(&cc.ssh_authorized_keys));
        if owner != "root" || !on || drive.is_empty() {
            return super::unique_keys(drive.iter().chain(extra));
        }
        let from_user_data = match cc.disable_root_opts.as_deref() {
            Some(o) if policy.disable_root_opts.is_none() => match keys::check_options_list(o) {
                Ok(()) => Some(o),
                Err(e) => {
                    self.warnings.warn(
                        "user-data",
                        "disable_root_opts",
                        format!("{e}; cloud-init's default options used"),
                    );
                    None
                }
            },
            _ => None,
        };
        let template = policy
            .disable_root_opts
            .as_deref()
            .or(from_user_data)
            .unwrap_or(DISABLE_ROOT_OPTS);
        // The default user's name passed the account-name grammar: no quote, no space.
        let user = self.default_user.clone().unwrap_or_else(|| "NONE".into());
        let mut opts = template
            .replace("$USER", &user)
            .replace("$DISABLE_USER", "root");
        if let Err(e) = keys::check_options_list(&opts) {
            // Only a configured template can get here (checked when loaded, but `$USER`
            // stands in it); the default never fails.
            self.warnings.warn(
                "configuration",
                "disable_root_opts",
                format!("{e}; cloud-init's default options used"),
            );
            opts = DISABLE_ROOT_OPTS
                .replace("$USER", &user)
                .replace("$DISABLE_USER", "root");
        }
        let restricted: Vec<String> = drive.iter().map(|k| keys::with_options(k, &opts)).collect();
        let own = extra
            .iter()
            .filter(|k| !restricted.contains(&keys::with_options(k, &opts)));
        super::unique_keys(restricted.iter().chain(own))
    }

    /// The account the drive names as its administrator (`meta.admin_username`, OVF
    /// `username`), created as cloudbase-init does when the image lacks it: its own group, the
    /// configured groups, a home from /etc/skel, a locked password until the password step sets
    /// the drive's. One step `admin-user`; its input (the account asked for) is recorded, so a
    /// re-run knows the account is primer's and one removed since is not made again. Returns
    /// the sudoers lines for the account (only one primer created: a drive never gains sudo for
    /// an account the image already had).
    fn plan_admin_user(
        &mut self,
        instance: &Instance,
        policy: &UserPolicy,
        defs: &LoginDefs,
        asked: &[&str],
    ) -> Vec<String> {
        let Some(name) = instance.admin_username.as_deref() else {
            return Vec::new();
        };
        let (file, field) = admin_source(instance.format);
        let id = "admin-user";
        let skip = |why: String| Step {
            id: id.into(),
            change: Change::Skip,
            action: Action::Nothing,
            why: why.into(),
            input: None,
        };
        if let Err(e) = accounts::check_name(name) {
            let why = format!(
                "admin user {} {e}: not created, the drive's password not set",
                Esc(name)
            );
            self.warnings.warn(file, field, why.clone());
            self.steps.push(skip(format!("{field}: {why}")));
            return Vec::new();
        }
        let admin = &policy.admin_user;
        let mut spec = UserSpec {
            name: name.to_string(),
            groups: admin.groups.clone(),
            shell: admin.shell.clone(),
            lock_password: true,
            create_home: true,
            ..Default::default()
        };
        let mut sudo: Vec<String> = admin.sudo.iter().cloned().collect();
        // What was asked for, recorded: the configuration's settings and the name.
        let input = Some(state::sha256_hex(
            format!("admin-user {spec:?} {sudo:?}").as_bytes(),
        ));
        let ours = input.as_deref().is_some_and(|i| self.applied_before(id, i));
        // Also this instance's: what a run set out to create (its intent lands under the
        // account lock, just before the account files) and stopped before its record: the
        // account, its group, its home are completed — only with the very ids it planned, so
        // an account or group another tool made meanwhile is never taken for primer's.
        let intent = input
            .as_deref()
            .and_then(|i| self.intent_ids(&instance.instance_id, id, i));
        if let Some(pw) = self.user(name) {
            let intended = intent == Some((pw.uid, pw.gid));
            // An account of the image (or one the users step made) is left as it is; one this
            // instance created earlier keeps its record and its sudo rule.
            let (why, input) = if asked.contains(&name) {
                (
                    format!("admin user {name} ({field}): a user of this plan"),
                    None,
                )
            } else if ours || intended {
                (
                    format!("admin user {name} ({field}): created for this instance; exists"),
                    input,
                )
            } else {
                (
                    format!("admin user {name} ({field}) exists in the image; not changed"),
                    None,
                )
            };
            self.steps.push(Step {
                id: id.into(),
                change: Change::Unchanged,
                action: Action::Nothing,
                why: why.into(),
                input: input.clone().map(Into::into),
            });
            if intended && !ours {
                // The home an interrupted creation left unfinished is completed (`plan_home`
                // never takes over a home that holds anything else). Once recorded, a home or
                // skeleton file removed since is not made again.
                self.plan_home(pw.uid, pw.gid, &pw.home, defs.home_mode, false);
            }
            return if input.is_some()
                && name != "root"
                && self.check_wish(&mut spec, &mut sudo, "configuration", "admin_user")
            {
                admin_rule_lines(name, &sudo)
            } else {
                Vec::new()
            };
        }
        // A new account's primary group is its own, or an existing one of that name: a drive
        // naming its admin `sudo`, `wheel`, `disk` or `shadow` would get that group's rights
        // (useradd refuses such a name for the same reason).
        let group_gid = self.account_files().group.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1).and_then(|g| g.parse::<u32>().ok()))
        });
        // The group of an account this instance set out to create, with the gid it planned, is
        // its own (the account files are written group first): the editor adopts it.
        let intended_group =
            matches!((group_gid, intent), (Some(Some(g)), Some((_, want))) if g == want);
        if group_gid.is_some() && !intended_group {
            let why = format!(
                "admin user {name}: a group named {name} exists in the image, and an account of \
                 that name would join it as its primary group: not created, the drive's \
                 password not set"
            );
            self.warnings.warn(file, field, why.clone());
            self.steps.push(skip(format!("{field}: {why}")));
            return Vec::new();
        }
        if !admin.create {
            let why = format!(
                "user {name} does not exist in the image and admin_user.create is false: not \
                 created, the drive's password not set"
            );
            self.warnings.warn(file, field, why.clone());
            self.steps.push(skip(format!("{field}: {why}")));
            return Vec::new();
        }
        if ours {
            self.steps.push(Step {
                input: input.map(Into::into),
                ..skip(format!(
                    "admin user {name} ({field}): created for this instance and removed since; kept"
                ))
            });
            return Vec::new();
        }
        if !self.check_wish(&mut spec, &mut sudo, "configuration", "admin_user") {
            self.steps.push(skip(format!(
                "admin user {name} ({field}): the configuration's admin_user is refused (see \
                 the warnings)"
            )));
            return Vec::new();
        }
        let edit = accounts::plan_accounts(
            &self.account_files(),
            defs,
            std::slice::from_ref(&spec),
            &[],
        );
        for w in &edit.warnings {
            self.warnings.warn(file, field, w.clone());
        }
        let Some(c) = edit.created.first().cloned() else {
            // Refused by the editor (a uid range used up, a malformed file): warned above.
            self.steps.push(skip(format!(
                "admin user {name} ({field}): not created (see the warnings)"
            )));
            return Vec::new();
        };
        let groups = if spec.groups.is_empty() {
            String::new()
        } else {
            format!(", groups {}", spec.groups.join(", "))
        };
        let why = format!(
            "create admin user {name} named by the drive ({file} {field}): own group{groups}"
        );
        self.accounts_step(id, &edit, why, input.clone());
        if let (Some(i), None) = (&input, state::invalid_instance_id(&instance.instance_id)) {
            if let Some(Step {
                action: Action::EditAccounts { intent, .. },
                ..
            }) = self.steps.last_mut()
            {
                // The input and the ids the account gets: `Planner::intent_ids`.
                let value = format!("{i} {}:{}", c.uid, c.gid);
                let doc = BTreeMap::from([(id, value.as_str())]);
                // Strings only: written whole by the pretty writer (no fallback linked in).
                let json = state::pretty_json_fast(&doc).unwrap_or_default();
                *intent = Some((state::intent_path(&instance.instance_id), json));
            }
        }
        self.created_users.push(PasswdEntry {
            name: c.name.clone(),
            uid: c.uid,
            gid: c.gid,
            home: c.home.clone(),
        });
        self.plan_home(c.uid, c.gid, &c.home, defs.home_mode, true);
        admin_rule_lines(name, &sudo)
    }

    /// The home directory and /etc/skel's files, owned by the user, as `useradd -m` makes them.
    /// A home that exists is never taken over: only one owned by the user and holding nothing
    /// but what primer puts there (left by an interrupted run) gets the missing skeleton files;
    /// any other existing home is left as it is (with a warning when the user is new).
    fn plan_home(&mut self, uid: u32, gid: u32, home: &str, mode: u32, new: bool) {
        // The rules a requested home passed, applied again to the home /etc/passwd names (an
        // existing account's): primer makes no home it would refuse to assign.
        let rel = match placement::target_path(home, placement::Use::Home) {
            Ok(rel) => rel,
            Err(e) => {
                if new {
                    self.warnings
                        .warn("users", "homedir", format!("{e}; no home created"));
                }
                return;
            }
        };
        let skel_tops: BTreeSet<&str> = crate::sort::set(
            self.facts
                .skel
                .iter()
                .map(|(sub, _)| sub.split('/').next().unwrap_or(sub))
                .chain([".ssh"]),
        );
        match self.facts.dirs.get(&rel) {
            None => self.steps.push(Step {
                id: format!("home:{rel}"),
                change: Change::Create,
                action: Action::EnsureDir {
                    path: rel.clone(),
                    mode,
                    uid,
                    gid,
                },
                why: format!("home directory /{rel}").into(),
                input: None,
            }),
            Some(m)
                if m.uid == uid
                    && self
                        .facts
                        .home_entries
                        .get(&rel)
                        .is_some_and(|e| e.iter().all(|n| skel_tops.contains(n.as_str()))) => {}
            Some(m) => {
                if new {
                    self.warnings.warn(
                        "users",
                        "homedir",
                        format!(
                            "/{rel} exists (owner uid {}): not taken over, /etc/skel not copied",
                            m.uid
                        ),
                    );
                }
                return;
            }
        }
        let mut dirs = BTreeSet::new();
        for (sub, _) in &self.facts.skel {
            let mut d = sub.as_str();
            while let Some((parent, _)) = d.rsplit_once('/') {
                dirs.insert(parent.to_string());
                d = parent;
            }
        }
        // Parents first (BTreeSet order puts `a` before `a/b`), owned by the user; only what is
        // missing.
        for d in dirs {
            let path = format!("{rel}/{d}");
            if self.facts.dirs.contains_key(&path) {
                continue;
            }
            self.steps.push(Step {
                id: format!("skel-dir:{path}"),
                change: Change::Create,
                action: Action::EnsureDir {
                    path,
                    mode: 0o755,
                    uid,
                    gid,
                },
                why: format!("/{SKEL}/{d} into the new home").into(),
                input: None,
            });
        }
        for (sub, f) in &self.facts.skel {
            let dest = format!("{rel}/{sub}");
            if self.facts.files.contains_key(&dest) {
                continue;
            }
            self.steps.push(Step {
                id: format!("skel:{dest}"),
                change: Change::Create,
                action: Action::WriteFile {
                    path: dest.clone(),
                    bytes: f.content.len(),
                    sha256: <sha2::Sha256 as sha2::Digest>::digest(&f.content).into(),
                    content: f.content.clone().into(),
                    mode: f.meta.mode,
                    uid,
                    gid,
                },
                why: format!("/{SKEL}/{sub} into the new home").into(),
                input: None,
            });
        }
    }

    fn plan_sudoers(&mut self, rules: &[String], from_user_data: bool) {
        let (id, path) = if from_user_data {
            ("sudoers-user-data", SUDOERS_USER_DATA_DROPIN)
        } else {
            ("sudoers", SUDOERS_DROPIN)
        };
        if rules.is_empty() && !self.facts.files.contains_key(path) {
            return;
        }
        if !self.facts.files.contains_key(SUDOERS) {
            self.warnings.warn(
                "users",
                "sudo",
                "sudo is not installed in the target (no /etc/sudoers): sudo rules not written",
            );
            return;
        }
        let mut content = format!("{DROPIN_HEADER}\n");
        for r in rules {
            content.push_str(r);
            content.push('\n');
        }
        let input = Some(state::sha256_hex(content.as_bytes()));
        self.file_step(
            id,
            path,
            content.into_bytes(),
            Meta {
                mode: 0o440,
                uid: 0,
                gid: 0,
            },
            input,
            &format!("sudo rules for {} rule line(s)", rules.len()),
            true,
        );
    }

    /// Checks a requested account against the grammar of the files it lands in, before anything
    /// is planned: a refused name, gecos, shell, home or primary group drops the account; a
    /// refused supplementary group or sudo rule drops only that entry. Every refusal is a
    /// warning naming the source field (`users[2].gecos`) and the value, escaped.
    fn check_wish(
        &mut self,
        spec: &mut UserSpec,
        sudo: &mut Vec<String>,
        file: &str,
        at: &str,
    ) -> bool {
        let mut refused: Vec<(String, String)> = Vec::new();
        if let Err(why) = accounts::check_name(&spec.name) {
            refused.push(("name".into(), format!("{} {why}", Esc(&spec.name))));
        }
        if let Some(g) = &spec.gecos {
            if let Err(e) = bounded(g).and_then(|()| grammar::account_field(g)) {
                refused.push(("gecos".into(), format!("{} {e}", Esc(g))));
            }
        }
        if let Some(sh) = &spec.shell {
            if let Err(e) = shell_path(sh) {
                refused.push(("shell".into(), format!("{} {e}", Esc(sh))));
            }
        }
        if let Some(h) = &spec.home {
            if let Err(e) = placement::target_path(h, placement::Use::Home) {
                refused.push(("homedir".into(), e));
            }
        }
        if let Some(g) = &spec.primary_group {
            if let Err(e) = group_ref(g) {
                refused.push(("primary_group".into(), format!("{} {e}", Esc(g))));
            }
        }
        if !refused.is_empty() {
            for (field, why) in refused {
                self.warnings.warn(
                    file,
                    &format!("{at}.{field}"),
                    format!("{why}; user not created"),
                );
            }
            return false;
        }
        let mut groups = Vec::new();
        for g in std::mem::take(&mut spec.groups) {
            match group_ref(&g) {
                Ok(()) => groups.push(g),
                Err(e) => self.warnings.warn(
                    file,
                    &format!("{at}.groups"),
                    format!("{} {e}; group ignored", Esc(&g)),
                ),
            }
        }
        spec.groups = groups;
        let mut rules = Vec::new();
        for (i, r) in std::mem::take(sudo).into_iter().enumerate() {
            match grammar::sudo_rule(&r) {
                Ok(()) => rules.push(r),
                Err(e) => self.warnings.warn(
                    file,
                    &format!("{at}.sudo[{i}]"),
                    format!("{} {e}; rule not written", Esc(&r)),
                ),
            }
        }
        *sudo = rules;
        true
    }

    /// The gate every password passes (see `password::accept`): a refused one is a warning
    /// naming the source and the length, and is left out; everything else is applied.
    fn gate<'a>(
        &mut self,
        file: &str,
        field: &str,
        raw: &'a [u8],
        kind: password::Kind,
    ) -> Option<password::Accepted<'a>> {
        match password::accept(raw, kind) {
            Ok(a) => Some(a),
            Err(e) => {
                self.warnings.warn(
                    file,
                    field,
                    format!("password refused: {e}; everything else is applied"),
                );
                None
            }
        }
    }

    /// primer's per-machine digest key; planned to be stored when it is fresh (once per plan).
    pub(super) fn state_key(&mut self) -> password::StateKey {
        let key = self.facts.state_key.clone();
        let id = "state-key";
        // One step per plan whenever the key is used (unchanged once stored), so every run
        // of a drive lists the same steps.
        if !self.steps.iter().any(|s| s.id == id) {
            let path = password::KEY_PATH.to_string();
            let (change, why) = if key.stored {
                (
                    Change::Unchanged,
                    format!("/{path}: primer's per-machine digest key is in place"),
                )
            } else {
                (
                    Change::Create,
                    format!("/{path}: primer's per-machine key for keyed digests of secrets"),
                )
            };
            self.steps.push(Step {
                id: id.into(),
                change,
                action: Action::WriteFile {
                    path: path.clone(),
                    bytes: key.key.len(),
                    // Not the SHA-256 of the key: nothing unkeyed about a secret is printed.
                    sha256: password::keyed_digest(&key, &[b"state-key"]),
                    content: key.key.to_vec().into(),
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                },
                why: why.into(),
                input: None,
            });
        }
        key
    }

    fn plan_passwords(&mut self, instance: &Instance, ud: &UserData, policy: &UserPolicy) {
        let cc = &ud.cloud_config;
        let target = policy
            .password_user
            .clone()
            .or_else(|| instance.admin_username.clone())
            .or_else(|| self.default_user.clone())
            .unwrap_or_else(|| "root".to_string());
        let mut wanted: Vec<Wanted> = Vec::new();
        if let Some(p) = instance.admin_pass.as_ref().filter(|p| !p.is_empty()) {
            let (file, field) = match instance.format {
                Format::OpenStack => ("meta_data.json", "admin_pass"),
                Format::CloudStack => ("cloudstack password file", ""),
                Format::Ovf => ("ovf-env.xml", "password"),
                Format::NoCloud => ("meta-data", "password"),
            };
            if let Some(value) = self.gate(file, field, p.expose(), password::Kind::Clear) {
                wanted.push(Wanted {
                    user: target.clone(),
                    from: "the drive's administrator password",
                    value,
                    drive: true,
                });
            }
        }
        if let Some(p) = cc.password.as_ref().filter(|p| !p.is_empty()) {
            if let Some(value) = self.gate(
                "user-data",
                "password",
                p.expose(),
                password::Kind::ClearOrHash,
            ) {
                wanted.push(Wanted {
                    user: target.clone(),
                    from: "#cloud-config password",
                    value,
                    drive: false,
                });
            }
        }
        for (i, (user, v)) in cc.chpasswd.users.iter().enumerate() {
            let (raw, kind) = match v {
                PasswordValue::Plain(p) => (p.expose(), password::Kind::Clear),
                PasswordValue::Hash(h) => (h.as_bytes(), password::Kind::Hash),
                PasswordValue::Random => continue,
            };
            let field = format!("chpasswd.users[{i}] ({})", Esc(user));
            if let Some(value) = self.gate("user-data", &field, raw, kind) {
                wanted.push(Wanted {
                    user: user.clone(),
                    from: "#cloud-config chpasswd",
                    value,
                    drive: false,
                });
            }
        }
        // The last source for a user wins (user-data over the drive's metadata).
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        for (i, w) in wanted.iter().enumerate() {
            last.insert(w.user.clone(), i);
        }
        let updates_allowed = match policy.password_updates {
            PasswordUpdates::Always => true,
            PasswordUpdates::Never => false,
            PasswordUpdates::Auto => instance.format == Format::CloudStack,
        };
        if !wanted.is_empty() {
            // The key is needed below; drawn (and planned to be stored) once.
            self.state_key();
        }
        for (n, w) in wanted.iter().enumerate() {
            if last.get(&w.user) != Some(&n) {
                continue;
            }
            let id = format!("password:{}", w.user);
            let admin_named = policy.password_user.is_none()
                && instance.admin_username.as_deref() == Some(w.user.as_str());
            if self.user(&w.user).is_none() && admin_named {
                // The admin-user step said why the account is missing (refused name, creation
                // switched off, removed since): the password waits, the boot goes on.
                let (file, field) = admin_source(instance.format);
                self.steps.push(Step {
                    id,
                    change: Change::Skip,
                    action: Action::Nothing,
                    why: format!(
                        "{} for user {} ({file} {field}): no such user (see the admin-user step); not set",
                        w.from,
                        Esc(&w.user)
                    ).into(),
                    input: None,
                });
                continue;
            }
            if self.user(&w.user).is_none() {
                self.steps.push(Step {
                    id,
                    change: Change::Error,
                    action: Action::Nothing,
                    why: format!(
                        "{} for user {}, but there is no such user",
                        w.from,
                        Esc(&w.user)
                    )
                    .into(),
                    input: None,
                });
                continue;
            }
            let files = self.account_files();
            if files.shadow.is_none() {
                // A hash in world-readable /etc/passwd is never an option.
                self.warnings.warn(
                    "/etc/shadow",
                    "",
                    format!("missing in the target: {} for {} not set", w.from, w.user),
                );
                continue;
            }
            let current = files
                .shadow
                .as_deref()
                .and_then(|s| shadow_field(s, &w.user))
                .unwrap_or("")
                .to_string();
            let key = self.facts.state_key.clone();
            let wanted_d = password::wanted_digest(&key, &w.user, w.value);
            let field_d = password::field_digest(&key, &w.user, &current);
            let recorded = self
                .facts
                .record
                .as_ref()
                .and_then(|r| r.steps.get(&id))
                .map(str::to_string);
            let parsed = recorded.as_deref().and_then(password::Recorded::parse);
            let record = |kept: bool, field: String| {
                Some(
                    password::Recorded {
                        wanted: wanted_d.clone(),
                        field,
                        kept,
                    }
                    .render(),
                )
            };
            // Every boot after the first: neither the drive's password nor the shadow field
            // changed since the last decision, which therefore stands. Two HMACs; no crypt.
            if let Some(r) = parsed
                .as_ref()
                .filter(|r| r.wanted == wanted_d && r.field == field_d)
            {
                let why = if r.kept {
                    format!(
                        "{} for {}: applied for this instance and changed since; kept (keyed digests unchanged, no hash computed)",
                        w.from, w.user
                    )
                } else {
                    format!(
                        "{} for {}: already set (keyed digests unchanged, no hash computed)",
                        w.from, w.user
                    )
                };
                tracing::debug!(step = %id, "password step decided by keyed digests; no hash computed");
                self.steps.push(Step {
                    id,
                    change: if r.kept {
                        Change::Skip
                    } else {
                        Change::Unchanged
                    },
                    action: Action::Nothing,
                    why: why.into(),
                    input: recorded.map(Into::into),
                });
                continue;
            }
            // The first run, or something changed: the crypt hashes are compared (bounded:
            // the gate capped the password's length).
            let matches = |hash: &str| match w.value {
                // A hash with a huge `rounds=` (one a drive set earlier through chpasswd can
                // say 999,999,999) is not verified: it counts as different.
                password::Accepted::Clear(p) => {
                    crypt_rounds(hash) <= MAX_VERIFY_ROUNDS && accounts::verify_password(p, hash)
                }
                password::Accepted::Hash(h) => h == hash,
            };
            let drive_same = match (&parsed, recorded.as_deref()) {
                (Some(r), _) => r.wanted == wanted_d,
                // A record of an older primer holds the crypt hash it set.
                (None, Some(rec)) => matches(rec),
                (None, None) => false,
            };
            let (change, why, input) = if matches(&current) {
                (
                    Change::Unchanged,
                    format!("{} for {}: already set", w.from, w.user),
                    record(false, field_d.clone()),
                )
            } else if recorded.is_some() && drive_same {
                (
                    Change::Skip,
                    format!(
                        "{} for {}: applied for this instance and changed since; kept",
                        w.from, w.user
                    ),
                    record(true, field_d.clone()),
                )
            } else if recorded.is_some() && w.drive && !updates_allowed {
                (
                    Change::Skip,
                    format!(
                        "{} for {}: a new password on the drive; not applied (password.updates: {})",
                        w.from,
                        w.user,
                        match policy.password_updates {
                            PasswordUpdates::Never => "never",
                            _ => "auto, not CloudStack",
                        }
                    ),
                    recorded.clone(),
                )
            } else if recorded.is_some() {
                (
                    Change::Update,
                    format!("{} for {}: a new password on the drive", w.from, w.user),
                    None,
                )
            } else {
                (Change::Update, format!("{} for {}", w.from, w.user), None)
            };
            if change != Change::Update {
                self.steps.push(Step {
                    id,
                    change,
                    action: Action::Nothing,
                    why: why.into(),
                    input: input.map(Into::into),
                });
                continue;
            }
            let hash = match w.value {
                password::Accepted::Clear(p) => {
                    accounts::hash_password(p, &salt(&self.salt, n, &w.user))
                }
                password::Accepted::Hash(h) => h.to_string(),
            };
            let edit = accounts::plan_accounts(
                &files,
                &self.login_defs(),
                &[],
                &[(w.user.clone(), hash.clone())],
            );
            for x in &edit.warnings {
                self.warnings.warn("password", &w.user, x.clone());
            }
            // Recorded: the digests of the password and of the field as this step sets it.
            let set = password::field_digest(&key, &w.user, &hash);
            self.accounts_step(&id, &edit, why, record(false, set));
        }
    }

    fn plan_pwauth(&mut self, ud: &UserData, policy: &UserPolicy) {
        let want = match policy.ssh_pwauth {
            SshPwauth::Keep => None,
            SshPwauth::Yes => Some(true),
            SshPwauth::No => Some(false),
            SshPwauth::UserData => ud.cloud_config.ssh_pwauth,
        };
        if policy.ssh_pwauth == SshPwauth::Keep && ud.cloud_config.ssh_pwauth.is_some() {
            self.warnings.warn(
                "user-data",
                "ssh_pwauth",
                "not applied: the configuration keeps SSH password login as it is (ssh_pwauth: keep)",
            );
        }
        let Some(yes) = want else { return };
        let content = format!(
            "{DROPIN_HEADER}\nPasswordAuthentication {}\n",
            if yes { "yes" } else { "no" }
        );
        let input = Some(state::sha256_hex(content.as_bytes()));
        self.file_step(
            "ssh-pwauth",
            SSHD_DROPIN,
            content.into_bytes(),
            PUBLIC_FILE,
            input,
            &format!(
                "SSH password login {}",
                if yes { "enabled" } else { "disabled" }
            ),
            true,
        );
    }
}

/// Where a drive names its administrator account: file and field, for warnings and whys.
fn admin_source(format: Format) -> (&'static str, &'static str) {
    match format {
        // A CloudStack drive carries it in the OpenStack tree beside its own files.
        Format::OpenStack | Format::CloudStack => ("meta_data.json", "meta.admin_username"),
        Format::Ovf => ("ovf-env.xml", "username"),
        Format::NoCloud => ("meta-data", "admin_username"),
    }
}

/// The sudoers lines of the admin account (rules already checked by `check_wish`).
fn admin_rule_lines(name: &str, rules: &[String]) -> Vec<String> {
    rules
        .iter()
        .flat_map(|r| r.lines())
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{name} {}", l.trim()))
        .collect()
}

/// Most SHA-crypt rounds primer spends verifying a password against an existing hash (the
/// default is 5000; a bigger value could stall the boot).
const MAX_VERIFY_ROUNDS: usize = 100_000;

/// The `rounds=` of a SHA-crypt hash (5000 when absent; unparsable counts as too many).
fn crypt_rounds(hash: &str) -> usize {
    match hash
        .split('$')
        .nth(2)
        .and_then(|f| f.strip_prefix("rounds="))
    {
        Some(n) => n.parse().unwrap_or(usize::MAX),
        None => 5000,
    }
}

/// Longest account field primer writes from a drive (gecos, shell, group names).
const MAX_FIELD: usize = 1024;

fn bounded(s: &str) -> Result<(), grammar::GrammarError> {
    if s.len() > MAX_FIELD {
        return Err(grammar::GrammarError::TooLong {
            len: s.len(),
            max: MAX_FIELD,
        });
    }
    Ok(())
}

/// A login shell: a clean absolute path (no empty, `.` or `..` component) that fits a passwd
/// field.
fn shell_path(s: &str) -> Result<(), String> {
    bounded(s).map_err(|e| e.to_string())?;
    grammar::account_field(s).map_err(|e| e.to_string())?;
    let Some(rel) = s.strip_prefix('/') else {
        return Err("is not an absolute path".into());
    };
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.chars().any(char::is_whitespace))
    {
        return Err("is not a clean path to a program".into());
    }
    Ok(())
}

/// A group named by the drive (it may exist already with a name older than useradd's rules):
/// one group-file field, not a member-list separator.
fn group_ref(g: &str) -> Result<(), grammar::GrammarError> {
    if g.is_empty() {
        return Err(grammar::GrammarError::Empty);
    }
    bounded(g)?;
    grammar::account_field(g)?;
    grammar::line_safe_without(
        g,
        &[',', ' ', '\t'],
        "separates the members of a group line",
    )
}

const PUBLIC_FILE: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
};

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::media::DriveFiles;
    use crate::plan::{plan, FileFact, HostFacts, Policy};

    fn fact(text: &str, mode: u32) -> FileFact {
        FileFact {
            content: text.as_bytes().to_vec(),
            meta: Meta {
                mode,
                uid: 0,
                gid: 0,
            },
            measured: None,
        }
    }

    /// The password step of a boot after the first: decided by two HMACs, no crypt hash; the
    /// timings are printed (`--nocapture`) for the record of the password step's budget.
    #[test]
    fn rerun_decides_the_password_by_keyed_digests() {
        let mut i = Instance::new(Format::OpenStack, "latest", "id-pw");
        let pw = "p".repeat(password::MAX_PASSWORD_BYTES);
        i.admin_pass = Some(crate::model::Secret::new(pw.as_bytes().to_vec()));
        let drive = DriveFiles::new("/dev/x", "iso9660");
        let mut facts = HostFacts {
            passwd: vec![PasswdEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
            }],
            state_key: password::StateKey {
                key: [7; 32],
                stored: true,
            },
            ..Default::default()
        };
        facts.files.insert(
            PASSWD.into(),
            fact("root:x:0:0:root:/root:/bin/bash\n", 0o644),
        );
        facts
            .files
            .insert(SHADOW.into(), fact("root:*:19800:0:99999:7:::\n", 0o640));
        let policy = Policy::default();
        let t = Instant::now();
        let first = plan(&i, &drive, &facts, &policy);
        let first_took = t.elapsed();
        let step = first
            .steps
            .iter()
            .find(|s| s.id == "password:root")
            .unwrap();
        assert_eq!(step.change, Change::Update);
        let Action::EditAccounts { writes, .. } = &step.action else {
            panic!("{step:?}")
        };
        let shadow = String::from_utf8(writes[0].content.clone()).unwrap();
        facts.files.insert(SHADOW.into(), fact(&shadow, 0o640));
        let mut record = state::Record::default();
        for s in &first.steps {
            if let Some(input) = &s.input {
                record.steps.insert(s.id.clone(), input.to_string());
            }
        }
        // The record holds keyed digests only: no crypt hash, no plain digest of the password.
        let recorded = record.steps.get("password:root").unwrap_or_default();
        assert!(password::Recorded::parse(recorded).is_some(), "{recorded}");
        assert!(!recorded.contains("$6$") && !recorded.contains(&state::sha256_hex(pw.as_bytes())));
        facts.record = Some(record);
        let t = Instant::now();
        let second = plan(&i, &drive, &facts, &policy);
        let second_took = t.elapsed();
        let step = second
            .steps
            .iter()
            .find(|s| s.id == "password:root")
            .unwrap();
        assert_eq!(step.change, Change::Unchanged, "{step:?}");
        assert!(step.why().contains("no hash computed"), "{}", step.why());
        let t = Instant::now();
        let hash = shadow_field(&shadow, "root").unwrap();
        assert!(accounts::verify_password(pw.as_bytes(), hash));
        let verify_took = t.elapsed();
        eprintln!(
            "511-byte password: first plan {first_took:?} (hashes), rerun plan {second_took:?} (keyed digests), one SHA-512 crypt verify {verify_took:?}"
        );
    }

    /// A run that stopped after creating the drive's admin user but before its record: the
    /// intent it wrote first makes the next plan treat the account as this instance's (home
    /// completed, sudo rule kept); without it the account is the image's, and an intent alone
    /// never counts as done.
    #[test]
    fn admin_user_intent_survives_a_stop_before_the_record() {
        let mut i = Instance::new(Format::OpenStack, "latest", "id-admin");
        i.admin_username = Some("ops".into());
        let drive = DriveFiles::new("/dev/x", "iso9660");
        let mut facts = HostFacts {
            passwd: vec![PasswdEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
            }],
            ..Default::default()
        };
        facts.files.insert(
            PASSWD.into(),
            fact("root:x:0:0:root:/root:/bin/bash\n", 0o644),
        );
        facts
            .files
            .insert(SHADOW.into(), fact("root:*:19800:0:99999:7:::\n", 0o640));
        facts
            .files
            .insert(GROUP.into(), fact("root:x:0:\nsudo:x:27:\n", 0o644));
        let policy = Policy::default();
        let first = plan(&i, &drive, &facts, &policy);
        let step = |p: &crate::plan::Plan, id: &str| p.steps.iter().find(|s| s.id == id).cloned();
        let admin = step(&first, "admin-user").unwrap();
        assert_eq!(admin.change, Change::Update, "{admin:?}");
        let Action::EditAccounts { writes, intent } = &admin.action else {
            panic!("{admin:?}")
        };
        let (path, content) = intent.clone().unwrap();
        assert_eq!(path, state::intent_path("id-admin"));
        let input = admin.input.clone().unwrap().to_string();
        assert!(String::from_utf8_lossy(&content).contains(&format!("{input} 1000:1000")));
        assert!(step(&first, "home:home/ops").is_some());

        // Stopped after the intent only: the account is still created (not "removed since").
        let mut only_intent = facts.clone();
        only_intent.files.insert(
            path.clone(),
            fact(&String::from_utf8_lossy(&content), 0o600),
        );
        let again = plan(&i, &drive, &only_intent, &policy);
        assert_eq!(step(&again, "admin-user").unwrap().change, Change::Update);

        // Stopped after the account files: with the intent, this instance's (home planned,
        // input kept for the record); without it, the image's (nothing planned).
        let mut made = facts.clone();
        for w in writes {
            let text = String::from_utf8_lossy(&w.content).into_owned();
            if w.path == PASSWD {
                made.passwd = crate::facts::parse_passwd(&text);
            }
            made.files.insert(w.path.clone(), fact(&text, w.meta.mode));
        }
        let image = plan(&i, &drive, &made, &policy);
        let a = step(&image, "admin-user").unwrap();
        assert!(
            a.input.is_none() && a.why().contains("exists in the image"),
            "{a:?}"
        );
        assert!(step(&image, "home:home/ops").is_none());
        made.files
            .insert(path, fact(&String::from_utf8_lossy(&content), 0o600));
        let ours = plan(&i, &drive, &made, &policy);
        let a = step(&ours, "admin-user").unwrap();
        assert_eq!(a.change, Change::Unchanged);
        assert_eq!(
            a.input.as_ref().map(ToString::to_string).as_deref(),
            Some(input.as_str())
        );
        assert!(a.why().contains("created for this instance"), "{a:?}");
        assert_eq!(step(&ours, "home:home/ops").unwrap().change, Change::Create);

        // The intent names the ids it planned: an account of that name with other ids (another
        // tool made it meanwhile) is not taken for primer's.
        let mut other = made.clone();
        for p in other.passwd.iter_mut().filter(|p| p.name == "ops") {
            p.uid += 1;
        }
        let a = step(&plan(&i, &drive, &other, &policy), "admin-user").unwrap();
        assert!(
            a.input.is_none() && a.why().contains("exists in the image"),
            "{a:?}"
        );

        // Recorded: this instance's, and a home removed since is not made again.
        let mut recorded = made.clone();
        let mut record = state::Record::default();
        record.steps.insert("admin-user".into(), input.clone());
        recorded.record = Some(record);
        let later = plan(&i, &drive, &recorded, &policy);
        let a = step(&later, "admin-user").unwrap();
        assert_eq!(
            a.input.as_ref().map(ToString::to_string).as_deref(),
            Some(input.as_str())
        );
        assert!(step(&later, "home:home/ops").is_none());
    }
}
