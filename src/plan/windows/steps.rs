//! Windows planning: the steps a Windows target gets instead of the Linux `/etc` and account
//! files — computer name, the drive's admin user, `administrators_authorized_keys`, the
//! PowerShell network script and its run, user-data scripts by their Windows headers, the
//! system volume's extension. Pure (facts and policy in, steps out); never an OS call, never a
//! Linux account file.

use super::{
    check_windows_user, computer_name, profile_marker, script_kind, ScriptKind, WindowsPolicy,
    ADMINS_KEYS,
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
            why: format!("{what}: not the running system (--root is another tree); not applied")
                .into(),
            input: None,
        });
    }

    /// The computer name (`SetComputerNameExW`): user-data `fqdn`/`hostname`, else the drive's
    /// host name, through the NetBIOS rules of [`computer_name`].
    fn plan_computer_name(&mut self, instance: &Instance, ud: &UserData, win: &WindowsPolicy) {
        let cc = &ud.cloud_config;
        let Some((raw, file, field)) = hostname::requested(instance, ud) else {
            return;
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
                why: format!("user-data preserve_hostname: true: {what} not set").into(),
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
            (Change::Update, format!("{what}: was {}; {then}", Esc(now)))
        };
        self.steps.push(Step {
            id: "computer-name".into(),
            change,
            action,
            why: why.into(),
            input: input.map(Into::into),
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
            why: why.into(),
            input: Some(input.into()),
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
                        why: format!("SSH user {}: {e}", Esc(u)).into(),
                        input: None,
                    });
                    return;
                }
                if !self.facts.present.contains(&profile_marker(u)) {
                    self.steps.push(Step {
                        id: "ssh-keys".into(),
                        change: Change::Skip,
                        action: Action::Nothing,
                        why: format!(
                            "SSH user {u}: no profile C:\\Users\\{u} yet (Windows makes it at the first logon, under another name if primer made the folder first): keys not written; log on once, or use the admin user ({})",
                            ADMINS_KEYS
                        ).into(),
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
            Some(i) if self.applied_before("network-script", i.text(&mut [0; 64])) => (
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
            why: why.into(),
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
        // `#!` parts (the parser's scripts) and the Windows-headed parts it kept aside (whole
        // user-data, MIME parts, gzip'd ones), each origin in document order.
        for s in ud.scripts.iter().chain(&ud.windows_scripts) {
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
        // Vendor scripts first, as on Linux (the sort is stable: document order within each).
        crate::sort::sort_by_key(&mut scripts, |s| s.origin != Origin::VendorData);
        if !ud.windows_scripts.is_empty() {
            // The parser, the same on every OS, warned that it ignores these Windows scripts:
            // on Windows they run (or get the warning above).
            self.warnings
                .warnings
                .retain(|w| !w.message.starts_with(WINDOWS_SCRIPT_IGNORED));
        }
        let mut win_ud = UserData {
            scripts,
            ..Default::default()
        };
        self.plan_scripts(instance, &mut win_ud, &policy.users, policy.defer_scripts);
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
            ).into(),
            input: None,
        });
    }
}

/// How the user-data parser's warning about a Windows script it does not run begins.
const WINDOWS_SCRIPT_IGNORED: &str = "Windows script (";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{HostFacts, TargetOs};
    use crate::model::{Blob, Format, Secret};
    use crate::plan::{plan, Plan};

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";

    fn inputs(live: bool) -> (Instance, DriveFiles, HostFacts) {
        let mut i = Instance::new(Format::OpenStack, "latest", "id-w");
        i.hostname = Some("my-very-long-windows-name.example".into());
        i.ssh_keys = vec![ED.into(), "ssh-rsa AAAA\nbroken".into()];
        i.admin_pass = Some(Secret::new(b"Passw0rd!".to_vec()));
        i.user_data = Some(Blob::new(b"#ps1_sysnative\r\nWrite-Host hi\r\n".to_vec()));
        i.network = vec![crate::model::NetworkConfig::OpenStack {
            file: "openstack/latest/network_data.json".into(),
            data: serde_json::json!({
                "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}],
                "networks": [{"id": "n0", "link": "tap0", "type": "ipv4",
                              "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
                              "gateway": "192.0.2.1"}],
                "services": []
            })
            .into(),
        }];
        let mut d = DriveFiles::new("/dev/x", "iso9660");
        d.files.insert(
            "openstack/latest/meta_data.json".into(),
            b"{}".to_vec().into(),
        );
        let f = HostFacts {
            os: TargetOs::Windows,
            live,
            kernel_hostname: Some("WIN-BUILD01".into()),
            ..Default::default()
        };
        (i, d, f)
    }

    /// cloudbase-init runs Windows scripts from MIME parts and gzip'd user-data too: a
    /// multipart with a `#ps1` part, a `rem cmd` part gzip'd, and a `#cloud-config` part.
    #[test]
    fn windows_scripts_in_mime_parts_and_gzip_run() {
        use std::io::Write;
        let (mut i, d, f) = inputs(true);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"rem cmd\r\necho from-cmd\r\n").unwrap();
        let gz = gz.finish().unwrap();
        let mut mime = b"Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"first.ps1\"\n\n#ps1\nWrite-Host first\n--b\nContent-Type: application/x-gzip\nContent-Disposition: attachment; filename=\"second\"\nContent-Transfer-Encoding: base64\n\n".to_vec();
        mime.extend(
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &gz).as_bytes(),
        );
        mime.extend(
            b"\n--b\nContent-Type: text/cloud-config\n\n#cloud-config\nhostname: x\n--b--\n",
        );
        i.user_data = Some(Blob::new(mime));
        let p = plan(&i, &d, &f, &Policy::default());
        assert_eq!(
            step(&p, "script:20-user-first.ps1").change,
            Change::Update,
            "{:#?}",
            p.steps
        );
        assert_eq!(
            step(&p, "script:20-user-second.cmd").change,
            Change::Update,
            "{:#?}",
            p.steps
        );
        assert!(
            !p.warnings
                .warnings
                .iter()
                .any(|w| w.message.starts_with(WINDOWS_SCRIPT_IGNORED)),
            "{:?}",
            p.warnings
        );
    }

    fn step<'a>(p: &'a Plan, id: &str) -> &'a Step {
        p.steps
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no step {id}: {:#?}", p.steps))
    }

    #[test]
    fn a_windows_plan_writes_no_linux_file() {
        let (i, d, f) = inputs(true);
        let p = plan(&i, &d, &f, &Policy::default());
        for s in &p.steps {
            let path = match &s.action {
                Action::WriteFile { path, .. }
                | Action::EnsureDir { path, .. }
                | Action::RemoveFile { path }
                | Action::WriteRecord { path, .. }
                | Action::WritePin { path, .. }
                | Action::RunScript { path, .. }
                | Action::Symlink { path, .. } => Some(path),
                _ => None,
            };
            if let Some(path) = path {
                // primer's state base is the build's (`state::STATE_DIR`, a constant): the
                // Windows build's is ProgramData/primer.
                assert!(
                    path.starts_with("ProgramData/") || path.starts_with(state::STATE_DIR),
                    "{} writes /{path}",
                    s.id
                );
            }
            assert!(!matches!(
                s.action,
                Action::EditAccounts { .. } | Action::SetHostname { .. }
            ));
        }
        // Linux facts, same inputs: the Linux plan, untouched.
        let linux = plan(
            &i,
            &d,
            &HostFacts {
                os: TargetOs::Linux,
                ..f.clone()
            },
            &Policy::default(),
        );
        assert!(linux.steps.iter().all(|s| s.id != "computer-name"));
    }

    #[test]
    fn live_first_run_then_idempotent() {
        let (i, d, f) = inputs(true);
        let p1 = plan(&i, &d, &f, &Policy::default());
        let cn = step(&p1, "computer-name");
        assert_eq!(cn.change, Change::Update);
        assert_eq!(
            cn.action,
            Action::SetComputerName {
                dns_host: "my-very-long-wi".into(),
                netbios: "MY-VERY-LONG-WI".into(),
                reboot: false
            }
        );
        assert!(cn.why().contains("reboot required"), "{}", cn.why());
        assert!(p1
            .warnings
            .warnings
            .iter()
            .any(|w| w.message.contains("cut to 15")));
        let keys = step(&p1, "ssh-keys");
        match &keys.action {
            Action::WriteFile {
                path,
                mode,
                content,
                ..
            } => {
                assert_eq!(path, super::ADMINS_KEYS);
                assert_eq!(*mode, 0o600, "private: the SYSTEM + Administrators DACL");
                let text = String::from_utf8_lossy(content);
                assert!(text.contains(ED));
                assert!(!text.contains("broken"), "{text}");
            }
            a => panic!("{a:?}"),
        }
        let user = step(&p1, "windows-user");
        assert_eq!(user.change, Change::Update);
        assert!(matches!(
            &user.action,
            Action::EnsureWindowsUser { name, password: Some(_), admin: true } if name == "Admin"
        ));
        // The recorded input is a keyed digest: no plain hash of the password.
        let pw_sha = state::sha256_hex(b"Passw0rd!");
        assert_ne!(
            user.input.as_ref().map(ToString::to_string).as_deref(),
            Some(pw_sha.as_str())
        );
        assert_eq!(step(&p1, "network-script").change, Change::Update);
        assert!(matches!(
            &step(&p1, "network-script").action,
            Action::RunScript { path, marker: None, .. } if path == powershell::PATH
        ));
        let script = step(&p1, "script:20-user-part-001.ps1");
        assert_eq!(script.change, Change::Update);
        // The plan's JSON carries no secret.
        let json = serde_json::to_string(&p1).unwrap();
        assert!(!json.contains("Passw0rd"), "{json}");

        let mut f2 = crate::plan::facts_after(&p1, f);
        // The state key written by run 1 is read by run 2.
        f2.state_key.stored = true;
        let p1b = plan(&i, &d, &f2, &Policy::default());
        for s in &p1b.steps {
            assert!(
                !s.change.acts(),
                "second run changes {}: {} ({:?})",
                s.id,
                s.why(),
                s.change
            );
        }
    }

    #[test]
    fn not_live_skips_the_system_steps_and_stages_files() {
        let (i, d, f) = inputs(false);
        let p = plan(&i, &d, &f, &Policy::default());
        for id in ["computer-name", "windows-user", "network-script"] {
            let s = step(&p, id);
            assert_eq!(s.change, Change::Skip, "{id}");
            assert!(s.why().contains("not the running system"), "{}", s.why());
        }
        assert_eq!(step(&p, "ssh-keys").change, Change::Create);
        assert_eq!(
            step(&p, &format!("net:{}", powershell::PATH)).change,
            Change::Create
        );
    }

    #[test]
    fn reboot_and_extend_volume_follow_the_policy() {
        let (i, d, f) = inputs(true);
        let policy = Policy {
            windows: WindowsPolicy {
                reboot: super::super::Reboot::WhenRequired,
                extend_volume: true,
                create_admin: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let p = plan(&i, &d, &f, &policy);
        assert!(matches!(
            step(&p, "computer-name").action,
            Action::SetComputerName { reboot: true, .. }
        ));
        assert!(p.steps.iter().all(|s| s.id != "windows-user"));
        assert_eq!(
            step(&p, "extend-volume").action,
            Action::ExtendVolume { drive: 'C' }
        );
    }

    #[test]
    fn a_named_non_admin_ssh_user_gets_its_profile_keys() {
        let (i, d, mut f) = inputs(true);
        let policy = Policy {
            ssh_user: "deploy".into(),
            ssh_user_from_default: false,
            ..Default::default()
        };
        // No profile yet: primer makes none (Windows would then put the real one elsewhere).
        let p = plan(&i, &d, &f, &policy);
        assert_eq!(step(&p, "ssh-keys").change, Change::Skip);
        assert!(
            step(&p, "ssh-keys").why().contains("first logon"),
            "{:?}",
            step(&p, "ssh-keys")
        );
        assert!(!p.steps.iter().any(|s| matches!(
            &s.action,
            Action::WriteFile { path, .. } | Action::EnsureDir { path, .. } if path.starts_with("Users/")
        )));
        // The profile exists: its keys file.
        f.present.insert(profile_marker("deploy"));
        let p = plan(&i, &d, &f, &policy);
        assert!(matches!(
            &step(&p, "ssh-keys").action,
            Action::WriteFile { path, .. } if path == "Users/deploy/.ssh/authorized_keys"
        ));
        let bad = Policy {
            ssh_user: "../x".into(),
            ssh_user_from_default: false,
            ..Default::default()
        };
        let p = plan(&i, &d, &f, &bad);
        assert_eq!(step(&p, "ssh-keys").change, Change::Error);
    }

    #[test]
    fn hostile_admin_names_and_scripts_are_refused() {
        let (mut i, d, f) = inputs(true);
        i.admin_username = Some("a\\..\\b\nc".into());
        i.user_data = Some(Blob::new(b"#!c:\\evil path\\x.exe \"&calc\"\n".to_vec()));
        let p = plan(&i, &d, &f, &Policy::default());
        assert!(p.steps.iter().all(|s| s.id != "windows-user"));
        assert!(p.steps.iter().all(|s| !s.id.starts_with("script:")));
        assert!(p
            .warnings
            .warnings
            .iter()
            .all(|w| !w.message.contains('\n')));
    }
}
