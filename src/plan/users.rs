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

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::accounts::{self, AccountFiles, LoginDefs, UserSpec};
use super::{Action, Change, FileFact, Meta, PasswdEntry, Planner, Step};
use crate::apply::accounts::AccountWrite;
use crate::model::userdata::{CcUser, PasswordValue, UserData};
use crate::model::{Format, Instance};
use crate::state;

/// Account files, as `HostFacts::files` keys.
pub const PASSWD: &str = "etc/passwd";
pub const SHADOW: &str = "etc/shadow";
pub const GROUP: &str = "etc/group";
pub const GSHADOW: &str = "etc/gshadow";
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
        || (policy.user_data == UserDataMode::Apply
            && (instance.user_data.is_some() || !instance.vendor_user_data.is_empty()))
}

/// The files read for account planning (besides /etc/skel, walked separately).
pub const ACCOUNT_FACTS: &[&str] = &[
    PASSWD,
    SHADOW,
    GROUP,
    GSHADOW,
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

/// One password to set: who, from where, and the secret or hash.
struct Wanted<'a> {
    user: String,
    from: &'static str,
    value: WantedValue<'a>,
    /// Subject to the `password.updates` policy (the drive's admin password).
    drive: bool,
}

enum WantedValue<'a> {
    Plain(&'a [u8]),
    Hash(&'a str),
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
            action: Action::EditAccounts { writes },
            why,
            input,
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
                d.sudo.clone().map(|r| (r, false)),
                Vec::new(),
            )
        });
        // `user:` adjusts the default user (cloud-init: settings for the distribution's
        // default user); with no default user configured it names one.
        if let Some(u) = &cc.user {
            let d = default.get_or_insert_with(|| {
                (
                    UserSpec {
                        lock_password: true,
                        create_home: true,
                        ..Default::default()
                    },
                    None,
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
                d.1 = Some((u.sudo.join("\n"), true));
            }
            d.0.lock_password = u.lock_passwd;
            d.2 = u.ssh_authorized_keys.clone();
            if d.0.name.is_empty() {
                default = None;
            }
        }
        if let (Some(d), true) = (default, default_wanted) {
            self.default_user = Some(d.0.name.clone());
            specs.push(d);
        }
        for (n, u) in cc.users.iter().filter(|u| !u.is_default()).enumerate() {
            let mut hash = u.hashed_passwd.clone().or_else(|| u.passwd.clone());
            if hash.is_none() {
                if let Some(p) = &u.plain_text_passwd {
                    hash = Some(accounts::hash_password(
                        p.expose(),
                        &salt(&self.salt, 1000 + n, &u.name),
                    ));
                }
            }
            specs.push((
                UserSpec {
                    name: u.name.clone(),
                    gecos: u.gecos.clone(),
                    primary_group: u.primary_group.clone(),
                    groups: u.groups.clone(),
                    shell: u.shell.clone(),
                    home: u.homedir.clone(),
                    system: u.system,
                    uid: u.uid,
                    lock_password: u.lock_passwd,
                    password_hash: hash,
                    create_home: !u.no_create_home && !u.system,
                },
                (!u.sudo.is_empty()).then(|| (u.sudo.join("\n"), true)),
                u.ssh_authorized_keys.clone(),
            ));
        }

        if !specs.is_empty() {
            // An existing account keeps its password field: passwords are the password steps'
            // business, so a re-run never re-locks or re-hashes what was set before.
            let users: Vec<UserSpec> = specs
                .iter()
                .map(|s| {
                    let mut u = s.0.clone();
                    if self.user(&u.name).is_some() {
                        u.lock_password = false;
                        u.password_hash = None;
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
                    ),
                    input,
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
                    let k = self.keys_for.entry(spec.name.clone()).or_default();
                    for key in keys {
                        if !k.contains(key) {
                            k.push(key.clone());
                        }
                    }
                }
            }
            // Sudo rules of accounts that exist (or are created); the configuration's and
            // user-data's in two drop-ins, so a bad user-data rule cannot take the configured
            // default user's away.
            for from_user_data in [false, true] {
                let rules: Vec<String> = specs
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
                self.plan_sudoers(&rules, from_user_data);
            }
        }

        self.plan_passwords(instance, ud, policy);
        self.plan_pwauth(ud, policy);
    }

    /// The home directory and /etc/skel's files, owned by the user, as `useradd -m` makes them.
    /// A home that exists is never taken over: only one owned by the user and holding nothing
    /// but what primer puts there (left by an interrupted run) gets the missing skeleton files;
    /// any other existing home is left as it is (with a warning when the user is new).
    fn plan_home(&mut self, uid: u32, gid: u32, home: &str, mode: u32, new: bool) {
        let rel = home.trim_matches('/').to_string();
        if rel.is_empty() || !crate::apply::fs::is_clean_relative(&rel) {
            if new {
                self.warnings.warn(
                    "users",
                    "homedir",
                    format!("{home:?} is not usable; no home created"),
                );
            }
            return;
        }
        let skel_tops: BTreeSet<&str> = self
            .facts
            .skel
            .iter()
            .map(|(sub, _)| sub.split('/').next().unwrap_or(sub))
            .chain([".ssh"])
            .collect();
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
                why: format!("home directory /{rel}"),
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
                why: format!("/{SKEL}/{d} into the new home"),
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
                    sha256: state::sha256_hex(&f.content),
                    content: f.content.clone(),
                    mode: f.meta.mode,
                    uid,
                    gid,
                },
                why: format!("/{SKEL}/{sub} into the new home"),
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
            wanted.push(Wanted {
                user: target.clone(),
                from: "the drive's administrator password",
                value: WantedValue::Plain(p.expose()),
                drive: true,
            });
        }
        if let Some(p) = cc.password.as_ref().filter(|p| !p.is_empty()) {
            wanted.push(Wanted {
                user: target.clone(),
                from: "#cloud-config password",
                value: WantedValue::Plain(p.expose()),
                drive: false,
            });
        }
        for (user, v) in &cc.chpasswd.users {
            let value = match v {
                PasswordValue::Plain(p) => WantedValue::Plain(p.expose()),
                PasswordValue::Hash(h) => WantedValue::Hash(h),
                PasswordValue::Random => continue,
            };
            wanted.push(Wanted {
                user: user.clone(),
                from: "#cloud-config chpasswd",
                value,
                drive: false,
            });
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
        for (n, w) in wanted.iter().enumerate() {
            if last.get(&w.user) != Some(&n) {
                continue;
            }
            let id = format!("password:{}", w.user);
            if self.user(&w.user).is_none() {
                self.steps.push(Step {
                    id,
                    change: Change::Error,
                    action: Action::Nothing,
                    why: format!(
                        "{} for user {:?}, but there is no such user",
                        w.from, w.user
                    ),
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
            let recorded = self
                .facts
                .record
                .as_ref()
                .and_then(|r| r.steps.get(&id))
                .cloned();
            let matches = |hash: &str| match &w.value {
                WantedValue::Plain(p) => accounts::verify_password(p, hash),
                WantedValue::Hash(h) => *h == hash,
            };
            // What the step decides, and the hash it records (the record keeps the crypt hash
            // set, as /etc/shadow does, never the password).
            let (change, why, hash) = if matches(&current) {
                (
                    Change::Unchanged,
                    format!("{} for {}: already set", w.from, w.user),
                    Some(current.clone()),
                )
            } else if let Some(rec) = recorded.as_deref() {
                if matches(rec) {
                    (
                        Change::Skip,
                        format!(
                            "{} for {}: applied for this instance and changed since; kept",
                            w.from, w.user
                        ),
                        Some(rec.to_string()),
                    )
                } else if w.drive && !updates_allowed {
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
                        Some(rec.to_string()),
                    )
                } else {
                    (
                        Change::Update,
                        format!("{} for {}: a new password on the drive", w.from, w.user),
                        None,
                    )
                }
            } else {
                (Change::Update, format!("{} for {}", w.from, w.user), None)
            };
            if change != Change::Update {
                self.steps.push(Step {
                    id,
                    change,
                    action: Action::Nothing,
                    why,
                    input: hash,
                });
                continue;
            }
            let hash = match &w.value {
                WantedValue::Plain(p) => accounts::hash_password(p, &salt(&self.salt, n, &w.user)),
                WantedValue::Hash(h) => h.to_string(),
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
            self.accounts_step(&id, &edit, why, Some(hash));
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

const PUBLIC_FILE: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
};
