//! Windows planning: the steps a Windows target gets instead of the Linux `/etc` and account
//! files — computer name, the drive's admin user, `administrators_authorized_keys`, the
//! PowerShell network script and its run, user-data scripts by their Windows headers, the
//! system volume's extension. Pure (facts and policy in, steps out); never an OS call, never a
//! Linux account file.

use super::{
    check_windows_user, computer_name, script_kind, ScriptKind, WindowsPolicy, ADMINS_KEYS,
};
use crate::media::DriveFiles;
use crate::model::grammar::Esc;
use crate::model::userdata::{Origin, Script, UserData};
use crate::model::Instance;
use crate::net::render::powershell;
use crate::net::Backend;
use crate::plan::network::NetPolicy;
use crate::plan::{hostname, keys, password, unique_keys, Action, Change, Planner, Policy, Step};
use crate::plan::{Meta, PRIVATE_FILE};
use crate::state;

/// Mode of the administrators' key file: private, i.e. the protected SYSTEM + Administrators
/// DACL on Windows (`platform::windows::security`), the only ACL Win32-OpenSSH accepts there.
const ADMIN_KEYS_META: Meta = PRIVATE_FILE;

impl Planner<'_> {
    /// Every Windows step (the caller adds the local copy and the record, as on Linux).
    pub(in crate::plan) fn plan_windows(
        &mut self,
        instance: &Instance,
        drive: &DriveFiles,
        ud: &UserData,
        policy: &Policy,
    ) {
        let win = &policy.windows;
        self.plan_computer_name(instance, ud, win);
        self.plan_windows_user(instance, win);
        self.plan_windows_keys(instance, ud, policy);
        self.plan_windows_network(instance, drive, &policy.network);
        self.plan_injected_files(instance, policy.users.files_mode);
        self.plan_windows_scripts(instance, ud, policy);
        self.plan_extend_volume(win);
    }

    fn live_skip(&mut self, id: &str, action: Action, what: &str) {
        self.steps.push(Step {
            id: id.into(),
            change: Change::Skip,
            action,
            why: format!("{what}: not the running system (--root is another tree); not applied"),
            input: None,
        });
    }

    /// The computer name (`SetComputerNameExW`): user-data `fqdn`/`hostname`, else the drive's
    /// host name, through the NetBIOS rules of [`computer_name`].
    fn plan_computer_name(&mut self, instance: &Instance, ud: &UserData, win: &WindowsPolicy) {
        let cc = &ud.cloud_config;
        let md = hostname::meta_names(instance);
        let (raw, file, field) = match (cc.fqdn.as_deref(), cc.hostname.as_deref()) {
            (Some(f), _) => (f, "user-data", "fqdn"),
            (None, Some(h)) => (h, "user-data", "hostname"),
            (None, None) => match instance.hostname.as_deref() {
                Some(h) => (h, md.file, md.hostname),
                None => return,
            },
        };
        let name = match computer_name(raw) {
            Ok(n) => n,
            Err(e) => {
                self.warnings
                    .warn(file, field, format!("{e}; computer name left as it is"));
                return;
            }
        };
        for note in &name.notes {
            self.warnings.warn(file, field, note.clone());
        }
        let reboot = win.reboot == super::Reboot::WhenRequired;
        let action = Action::SetComputerName {
            dns_host: name.dns_host.clone(),
            netbios: name.netbios.clone(),
            reboot,
        };
        let what = format!("computer name {} (NetBIOS {})", name.dns_host, name.netbios);
        if cc.preserve_hostname == Some(true) {
            self.steps.push(Step {
                id: "computer-name".into(),
                change: Change::Skip,
                action,
                why: format!("user-data preserve_hostname: true: {what} not set"),
                input: None,
            });
            return;
        }
        if !self.facts.live {
            return self.live_skip("computer-name", action, &what);
        }
        let input = Some(state::sha256_hex(name.dns_host.as_bytes()));
        let now = self.facts.kernel_hostname.as_deref().unwrap_or("");
        let (change, why) = if now.eq_ignore_ascii_case(&name.dns_host) {
            (Change::Unchanged, format!("{what}: already set"))
        } else if input
            .as_deref()
            .is_some_and(|i| self.applied_before("computer-name", i))
        {
            (
                Change::Skip,
                format!("{what}: set before for this instance and changed since; kept"),
            )
        } else {
            let then = if reboot {
                "primer reboots the machine after this run (windows.reboot: when-required)"
            } else {
                "reboot required: takes effect at the next boot (windows.reboot: never)"
            };
            (
                Change::Update,
                format!("{what}: was {:?}; {then}", Esc(now).to_string()),
            )
        };
        self.steps.push(Step {
            id: "computer-name".into(),
            change,
            action,
            why,
            input,
        });
    }

    /// The admin user's name on Windows: the drive's `admin_username`, else the configured
    /// `windows.admin_user` (cloudbase-init's default "Admin").
    fn windows_admin(&self, instance: &Instance, win: &WindowsPolicy) -> String {
        instance
            .admin_username
            .clone()
            .unwrap_or_else(|| win.admin_user.clone())
    }

    /// The drive's admin user: created when missing, member of the group whose SID is
    /// S-1-5-32-544, its password the drive's (same length rule as Linux).
    fn plan_windows_user(&mut self, instance: &Instance, win: &WindowsPolicy) {
        if !win.create_admin {
            return;
        }
        let name = self.windows_admin(instance, win);
        if let Err(e) = check_windows_user(&name) {
            self.warnings.warn(
                "meta_data.json",
                "admin_username",
                format!("{}: {e}; no admin user created", Esc(&name)),
            );
            return;
        }
        let mut password = None;
        if let Some(p) = &instance.admin_pass {
            match password::accept(p.expose(), password::Kind::Clear) {
                Ok(_) => password = Some(p.clone()),
                Err(e) => self.warnings.warn(
                    "meta_data.json",
                    "admin_pass",
                    format!("password for {name:?} {e}; not set"),
                ),
            }
        }
        let action = Action::EnsureWindowsUser {
            name: name.clone(),
            password: password.clone(),
            admin: true,
        };
        let what = format!(
            "admin user {name} (group S-1-5-32-544{})",
            if password.is_some() {
                ", password from the drive"
            } else {
                ", no password on the drive"
            }
        );
        if !self.facts.live {
            return self.live_skip("windows-user", action, &what);
        }
        // What is recorded: a keyed digest of the name and password, never the password.
        let key = self.state_key();
        let secret = password.as_ref().map_or(&[][..], |p| p.expose());
        let input = password::keyed_hex(&key, &[b"windows-user", name.as_bytes(), secret]);
        let (change, why) = if self.applied_before("windows-user", &input) {
            (Change::Unchanged, format!("{what}: applied for this drive"))
        } else {
            (
                Change::Update,
                format!("{what}: created when missing, password set"),
            )
        };
        self.steps.push(Step {
            id: "windows-user".into(),
            change,
            action,
            why,
            input: Some(input),
        });
    }

    /// The drive's keys (and user-data `ssh_authorized_keys`) for the admin user go to
    /// `ProgramData/ssh/administrators_authorized_keys` (the only file Win32-OpenSSH reads for
    /// members of Administrators); a configured non-admin SSH user gets
    /// `Users/<name>/.ssh/authorized_keys`.
    fn plan_windows_keys(&mut self, instance: &Instance, ud: &UserData, policy: &Policy) {
        let md = hostname::meta_names(instance);
        let lines = unique_keys(
            instance
                .ssh_keys
                .iter()
                .chain(&ud.cloud_config.ssh_authorized_keys),
        );
        let mut valid = Vec::new();
        for (i, k) in lines.iter().enumerate() {
            match keys::validate_key_line(k) {
                Ok(k) => valid.push(k),
                Err(e) => self.warnings.warn(
                    md.file,
                    md.keys,
                    format!("key {} refused: {e}: {}", i + 1, Esc(k)),
                ),
            }
        }
        let admin = self.windows_admin(instance, &policy.windows);
        let user = (!policy.ssh_user_from_default && !policy.ssh_user.eq_ignore_ascii_case(&admin))
            .then(|| policy.ssh_user.clone());
        let (path, who) = match &user {
            None => (ADMINS_KEYS.to_string(), "the administrators".to_string()),
            Some(u) => {
                if let Err(e) = check_windows_user(u) {
                    self.steps.push(Step {
                        id: "ssh-keys".into(),
                        change: Change::Error,
                        action: Action::Nothing,
                        why: format!("SSH user {}: {e}", Esc(u)),
                        input: None,
                    });
                    return;
                }
                (format!("Users/{u}/.ssh/authorized_keys"), u.clone())
            }
        };
        let existing = self.facts.files.get(&path);
        let has_block = existing.is_some_and(|f| {
            String::from_utf8_lossy(&f.content)
                .lines()
                .any(|l| l.trim_end_matches('\r') == keys::BEGIN)
        });
        if valid.is_empty() && !has_block {
            return;
        }
        let text = existing
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .unwrap_or_default();
        let content = keys::render_authorized_keys(&text, &valid);
        let input = Some(state::sha256_hex(valid.join("\n").as_bytes()));
        let meta = match user {
            // The profile's own ACL (the user's) is inherited: a public file by primer's model.
            Some(_) => Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            None => ADMIN_KEYS_META,
        };
        self.file_step(
            "ssh-keys",
            &path,
            content.into_bytes(),
            meta,
            input,
            &format!("{} SSH key(s) for {who}", valid.len()),
            true,
        );
    }

    /// The PowerShell network script (`net::render::powershell`), written under primer's state
    /// and run once per network input (re-run when the drive's network changes).
    fn plan_windows_network(&mut self, instance: &Instance, drive: &DriveFiles, net: &NetPolicy) {
        let before = self.steps.len();
        let policy = NetPolicy {
            backend: Some(Backend::PowerShell),
            wait: net.wait,
        };
        if net.backend.is_some_and(|b| b != Backend::PowerShell) {
            self.warnings.warn(
                "primer.yaml",
                "network_backend",
                "only the powershell backend applies on Windows; the configured one is ignored",
            );
        }
        self.plan_network(instance, drive, &policy);
        let Some(file_step) = self.steps[before..]
            .iter()
            .find(|s| s.id == format!("net:{}", powershell::PATH))
        else {
            return;
        };
        let input = file_step.input.clone();
        let action = Action::RunScript {
            path: powershell::PATH.into(),
            timeout_secs: NETWORK_TIMEOUT_SECS,
            marker: None,
        };
        let what = format!("network script /{}", powershell::PATH);
        if !self.facts.live {
            return self.live_skip("network-script", action, &what);
        }
        let (change, why) = match &input {
            Some(i) if self.applied_before("network-script", i) => (
                Change::Unchanged,
                format!("{what}: ran for this network configuration"),
            ),
            _ => (
                Change::Update,
                format!(
                    "{what}: network configuration new or changed: powershell.exe -File, time-out {NETWORK_TIMEOUT_SECS} s"
                ),
            ),
        };
        self.steps.push(Step {
            id: "network-script".into(),
            change,
            action,
            why,
            input,
        });
    }

    /// User-data scripts by their Windows headers (`#ps1`, `#ps1_sysnative`, `#ps1_x86`,
    /// `rem cmd`, `#!`), stored with the extension their interpreter needs and run once per
    /// instance by the same steps as on Linux. `runcmd`/`bootcmd` are shell lines: warned, not
    /// run.
    fn plan_windows_scripts(&mut self, instance: &Instance, ud: &UserData, policy: &Policy) {
        let cc = &ud.cloud_config;
        if !cc.runcmd.is_empty() || !cc.bootcmd.is_empty() {
            self.warnings.warn(
                "user-data",
                "runcmd",
                "runcmd and bootcmd are shell commands: not run on Windows (use a #ps1 script)",
            );
        }
        let mut scripts: Vec<Script> = Vec::new();
        for s in &ud.scripts {
            match script_kind(&s.content) {
                Some(k) => scripts.push(Script {
                    name: with_extension(&s.name, &k),
                    origin: s.origin,
                    content: s.content.clone(),
                }),
                None => self.warnings.warn(
                    "user-data",
                    &s.name,
                    "no Windows script header (#ps1, #ps1_sysnative, #ps1_x86, rem cmd, #!): not run",
                ),
            }
        }
        // A whole user-data that is one Windows script: the parser knows `#!` only.
        if let Some(raw) = instance.user_data.as_ref().map(|b| b.0.as_slice()) {
            if let Some(k) = script_kind(raw).filter(|k| !matches!(k, ScriptKind::Shebang(_))) {
                scripts.push(Script {
                    name: with_extension("user-data", &k),
                    origin: Origin::UserData,
                    content: raw.to_vec(),
                });
            }
        }
        let win_ud = UserData {
            scripts,
            ..Default::default()
        };
        self.plan_scripts(instance, &win_ud, &policy.users, policy.defer_scripts);
    }

    /// Grow the system volume into the free space that follows it (`windows.extend_volume`,
    /// off by default): every boot of the running system, as cloudbase-init's ExtendVolumes.
    fn plan_extend_volume(&mut self, win: &WindowsPolicy) {
        if !win.extend_volume {
            return;
        }
        let action = Action::ExtendVolume { drive: 'C' };
        let what = "extend the system volume C: into the free space after it";
        if !self.facts.live {
            return self.live_skip("extend-volume", action, what);
        }
        self.steps.push(Step {
            id: "extend-volume".into(),
            change: Change::Update,
            action,
            why: format!(
                "{what} (windows.extend_volume: true; every boot; unchanged when already at its largest size)"
            ),
            input: None,
        });
    }
}

/// Longest run of the network script.
pub const NETWORK_TIMEOUT_SECS: u64 = 300;

/// `name` with the extension its interpreter requires (`powershell -File` needs `.ps1`,
/// `cmd /c` needs `.cmd`); a `#!` script keeps its name.
fn with_extension(name: &str, kind: &ScriptKind) -> String {
    let ext = match kind {
        ScriptKind::PowerShell { .. } => ".ps1",
        ScriptKind::Cmd => ".cmd",
        ScriptKind::Shebang(_) => return name.to_string(),
    };
    if name.to_ascii_lowercase().ends_with(ext) {
        name.to_string()
    } else {
        format!("{name}{ext}")
    }
}
