//! Windows planning rules: the instance's host name into the DNS host name and the NetBIOS
//! name Windows gets (cloudbase-init's SetHostNamePlugin rules), Windows account names, user-data
//! script headers and their interpreters, the `windows:` policy. Pure; never an OS call here
//! (the steps are planned in `steps`, applied through the platform seam).
//!
//! Rules, as cloudbase-init applies them with its default `netbios_host_name_compatibility`
//! (`utils/hostname.py`; `../shared/notes/windows.md` §4): the first label of the host name;
//! cut to 15 characters (NetBIOS' limit) with a warning naming the original; a `-` the cut
//! leaves at the end becomes `0`; only letters, digits and `-` (the name is sanitised as on
//! Linux first: [`super::hostname::sanitize_hostname`]); a name made only of digits is refused,
//! as Windows refuses it.

pub mod steps;

use super::hostname::sanitize_hostname;
use crate::model::grammar::Esc;

/// NetBIOS computer names are at most 15 characters (the 16th byte is the service type).
pub const NETBIOS_MAX: usize = 15;

/// The names a Windows machine gets from the instance's host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputerName {
    /// The first label as sanitised, before any cut (for records and messages).
    pub label: String,
    /// What `SetComputerNameExW(ComputerNamePhysicalDnsHostname)` gets: the label cut to
    /// [`NETBIOS_MAX`] so the DNS host name and the NetBIOS name agree (cloudbase-init's
    /// default).
    pub dns_host: String,
    /// The NetBIOS name Windows derives from it, as it shows it (upper case).
    pub netbios: String,
    /// Warnings: what was changed, naming the original.
    pub notes: Vec<String>,
}

/// Why no computer name can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputerNameError {
    #[error("host name {0} has no letter, digit or '-' to make a computer name of")]
    Empty(String),
    #[error(
        "host name {0} gives the computer name {1:?}, made only of digits, which Windows refuses"
    )]
    AllDigits(String, String),
}

/// The computer name for the host name `raw` (as the drive gives it), or why there is none.
pub fn computer_name(raw: &str) -> Result<ComputerName, ComputerNameError> {
    let shown = || Esc(raw).to_string();
    let h = sanitize_hostname(raw).ok_or_else(|| ComputerNameError::Empty(shown()))?;
    let mut notes = h.notes.clone();
    let label = h.short().to_string();
    if h.fqdn.contains('.') {
        notes.push(format!(
            "host name {}: Windows takes the first label {label:?} as computer name (the domain is the DNS suffix's business)",
            shown()
        ));
    }
    // Sanitised names are ASCII: a byte cut is a character cut.
    let mut name = label.clone();
    if name.len() > NETBIOS_MAX {
        name.truncate(NETBIOS_MAX);
        if name.ends_with('-') {
            // cloudbase-init: a cut that ends in `-` would give an invalid DNS label.
            name.pop();
            name.push('0');
        }
        notes.push(format!(
            "host name {}: computer name cut to {NETBIOS_MAX} characters for NetBIOS: {label:?} becomes {name:?}",
            shown()
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ComputerNameError::AllDigits(shown(), name));
    }
    Ok(ComputerName {
        label,
        netbios: name.to_ascii_uppercase(),
        dns_host: name,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_pass_unchanged() {
        let c = computer_name("web-01").unwrap();
        assert_eq!(c.dns_host, "web-01");
        assert_eq!(c.netbios, "WEB-01");
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        let c = computer_name("exactly15chars0").unwrap();
        assert_eq!(c.dns_host, "exactly15chars0");
        assert!(c.notes.is_empty());
    }

    #[test]
    fn first_label_only_with_a_note() {
        let c = computer_name("db1.example.com").unwrap();
        assert_eq!(c.dns_host, "db1");
        assert_eq!(c.label, "db1");
        assert!(c.notes[0].contains("\"db1.example.com\""), "{:?}", c.notes);
    }

    #[test]
    fn long_names_are_cut_to_15_with_a_warning_naming_the_original() {
        let c = computer_name("my-very-long-instance-name.example").unwrap();
        assert_eq!(c.dns_host, "my-very-long-in");
        assert_eq!(c.netbios, "MY-VERY-LONG-IN");
        assert_eq!(c.label, "my-very-long-instance-name");
        let n = c.notes.iter().find(|n| n.contains("cut to 15")).unwrap();
        assert!(n.contains("\"my-very-long-instance-name.example\""), "{n}");
        assert!(n.contains("\"my-very-long-in\""), "{n}");
    }

    #[test]
    fn a_cut_ending_in_a_hyphen_ends_in_zero() {
        // 14 characters, then `-` at position 15.
        let c = computer_name("abcdefghijklmn-rest").unwrap();
        assert_eq!(c.dns_host, "abcdefghijklmn0");
        assert_eq!(c.dns_host.len(), 15);
    }

    #[test]
    fn characters_windows_does_not_allow_are_replaced() {
        let c = computer_name("Web_01 Prod").unwrap();
        assert_eq!(c.dns_host, "web-01-prod");
        assert!(!c.notes.is_empty());
        let c = computer_name("a\\b/c:d*e?f\"g<h>i|j").unwrap();
        assert!(
            c.dns_host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{}",
            c.dns_host
        );
        assert!(c.dns_host.len() <= NETBIOS_MAX);
    }

    #[test]
    fn all_digit_and_empty_names_are_refused() {
        assert!(matches!(
            computer_name("12345"),
            Err(ComputerNameError::AllDigits(_, n)) if n == "12345"
        ));
        // Only the cut name counts: 15 digits after a long digit run.
        assert!(matches!(
            computer_name("1234567890123456789a"),
            Err(ComputerNameError::AllDigits(..))
        ));
        assert!(computer_name("12345.example.com").is_err());
        assert!(computer_name("1a").is_ok());
        assert!(matches!(
            computer_name("..."),
            Err(ComputerNameError::Empty(_))
        ));
        let e = computer_name("\n$'\u{2019}").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
    }

    /// A hostile drive host name: 4 MiB with NUL, newlines and control characters in it. The
    /// name is at most 15 safe characters, and the notes carry no raw control character.
    #[test]
    fn a_huge_name_with_control_characters_gives_a_short_safe_name() {
        let raw = "web\0\n\r\u{1b}[2J-".repeat(4 << 18);
        let t = std::time::Instant::now();
        let r = computer_name(&raw);
        // Linear work on 44 MB takes well under a second optimised, a few seconds unoptimised
        // under wine on a loaded 2-core machine (scripts/test-windows builds tests at opt-level
        // 0: 7 s seen); anything quadratic would take hours. The bound tells the two apart
        // without failing on a busy CI machine.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{:?}",
            t.elapsed()
        );
        match r {
            Ok(c) => {
                assert!(c.dns_host.len() <= NETBIOS_MAX, "{}", c.dns_host);
                assert!(c
                    .dns_host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                assert!(c.notes.iter().all(|n| !n.chars().any(char::is_control)));
            }
            Err(e) => assert!(!e.to_string().chars().any(char::is_control)),
        }
    }
}

/// Where Win32-OpenSSH's default `sshd_config` (`Match Group administrators`) reads the keys
/// of every member of Administrators, relative to the system drive's root.
pub const ADMINS_KEYS: &str = "ProgramData/ssh/administrators_authorized_keys";

/// The file every loaded Windows profile has (the user's registry hive), relative to the root:
/// its presence says `Users\NAME` is that user's profile. Windows creates the profile at the
/// first logon, and under another name (`NAME.COMPUTER`) when `Users\NAME` already exists, so
/// primer never creates it: keys for a user without a profile are not written.
pub fn profile_marker(user: &str) -> String {
    format!("Users/{user}/NTUSER.DAT")
}

/// Whether primer reboots Windows after a run that set the computer name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reboot {
    /// Never: the step says "reboot required" and the name takes effect at the next boot.
    #[default]
    Never,
    /// Reboot once the run is recorded, when a step requires it (the computer name changed).
    WhenRequired,
}

/// The `windows:` section of the configuration (ignored on Linux).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowsPolicy {
    pub reboot: Reboot,
    /// Create the drive's admin user when missing and set its password.
    pub create_admin: bool,
    /// The admin user's name when the drive names none (cloudbase-init's default "Admin").
    pub admin_user: String,
    /// Grow the system volume into the free space after it, every boot (off by default, like
    /// reclaim on Linux).
    pub extend_volume: bool,
}

impl Default for WindowsPolicy {
    fn default() -> Self {
        WindowsPolicy {
            reboot: Reboot::Never,
            create_admin: true,
            admin_user: "Admin".into(),
            extend_volume: false,
        }
    }
}

/// Longest local account name Windows accepts (`NetUserAdd`: 20 characters).
pub const MAX_USER_NAME: usize = 20;

/// Why a name cannot be a Windows local account (the rules of `NetUserAdd`'s documentation:
/// at most 20 characters, none of `"/\[]:;|=,+*?<>@`, no control character, not only dots and
/// spaces).
pub fn check_windows_user(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty account name".into());
    }
    if name.chars().count() > MAX_USER_NAME {
        return Err(format!(
            "account name longer than {MAX_USER_NAME} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || "\"/\\[]:;|=,+*?<>@%".contains(*c))
    {
        return Err(format!(
            "account name has the character {:?}, which Windows (or a path) cannot carry",
            c
        ));
    }
    if name.chars().all(|c| c == '.' || c == ' ') {
        return Err("account name made only of dots and spaces".into());
    }
    Ok(())
}

/// How a user-data script is run on Windows, from its first line (cloudbase-init's headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptKind {
    /// `#ps1`, `#ps1_sysnative` (the 64-bit PowerShell), `#ps1_x86` (the 32-bit one).
    PowerShell { x86: bool },
    /// `rem cmd`: `cmd.exe /c`.
    Cmd,
    /// `#!interpreter [one argument]`: the named program (its file name, found on `PATH`),
    /// `#!/usr/bin/env NAME` giving NAME.
    Shebang(Vec<String>),
}

/// Longest first line looked at.
const MAX_HEADER: usize = 256;

/// The kind of the script `content`, or `None` when its first line is no Windows header.
pub fn script_kind(content: &[u8]) -> Option<ScriptKind> {
    let head = &content[..content.len().min(MAX_HEADER)];
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let line = line.trim_start_matches('\u{feff}');
    let lower = line.to_ascii_lowercase();
    let word = lower.split_whitespace().next().unwrap_or_default();
    match word {
        "#ps1" | "#ps1_sysnative" => return Some(ScriptKind::PowerShell { x86: false }),
        "#ps1_x86" => return Some(ScriptKind::PowerShell { x86: true }),
        _ => {}
    }
    if lower.split_whitespace().take(2).eq(["rem", "cmd"]) {
        return Some(ScriptKind::Cmd);
    }
    let rest = line.strip_prefix("#!")?;
    let mut words = rest.split_whitespace();
    let program = words.next()?;
    let base = |p: &str| p.rsplit(['/', '\\']).next().unwrap_or(p).to_string();
    let mut argv = vec![base(program)];
    argv.extend(words.map(str::to_string));
    if argv[0] == "env" {
        argv.remove(0);
    }
    // The interpreter is looked up by name: a plain token, not a path or an option.
    let token = |w: &String| {
        !w.is_empty()
            && w.len() <= 64
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    };
    if argv.is_empty() || argv.len() > 2 || !argv.iter().all(token) || argv[0].starts_with('-') {
        return None;
    }
    Some(ScriptKind::Shebang(argv))
}

/// The command line that runs the script at `script` (Windows path text): `windir` is
/// `%windir%`. A `.ps1` without a header is PowerShell, a `.cmd`/`.bat` without one is cmd.
pub fn script_argv(
    kind: Option<&ScriptKind>,
    file_name: &str,
    windir: &str,
    script: &str,
) -> Option<Vec<String>> {
    let lower = file_name.to_ascii_lowercase();
    let kind = match kind {
        Some(k) => k.clone(),
        None if lower.ends_with(".ps1") => ScriptKind::PowerShell { x86: false },
        None if lower.ends_with(".cmd") || lower.ends_with(".bat") => ScriptKind::Cmd,
        None => return None,
    };
    let mut argv = match kind {
        ScriptKind::PowerShell { x86 } => vec![
            format!(
                "{windir}\\{}\\WindowsPowerShell\\v1.0\\powershell.exe",
                if x86 { "SysWOW64" } else { "System32" }
            ),
            "-NoProfile".into(),
            "-NonInteractive".into(),
            "-ExecutionPolicy".into(),
            "Bypass".into(),
            "-File".into(),
        ],
        ScriptKind::Cmd => vec![format!("{windir}\\System32\\cmd.exe"), "/c".into()],
        ScriptKind::Shebang(v) => v,
    };
    argv.push(script.to_string());
    Some(argv)
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn script_headers_as_cloudbase_init_reads_them() {
        assert_eq!(
            script_kind(b"#ps1\nWrite-Host hi"),
            Some(ScriptKind::PowerShell { x86: false })
        );
        assert_eq!(
            script_kind(b"#PS1_SYSNATIVE\r\n"),
            Some(ScriptKind::PowerShell { x86: false })
        );
        assert_eq!(
            script_kind(b"#ps1_x86\n"),
            Some(ScriptKind::PowerShell { x86: true })
        );
        assert_eq!(script_kind(b"rem cmd\r\necho hi"), Some(ScriptKind::Cmd));
        assert_eq!(script_kind(b"REM CMD\n"), Some(ScriptKind::Cmd));
        assert_eq!(
            script_kind(b"#!/usr/bin/env python3\nprint(1)"),
            Some(ScriptKind::Shebang(vec!["python3".into()]))
        );
        assert_eq!(
            script_kind(b"#!/bin/bash -e\n"),
            Some(ScriptKind::Shebang(vec!["bash".into(), "-e".into()]))
        );
        assert_eq!(script_kind(b"echo hi\n"), None);
        assert_eq!(script_kind(b"#cloud-config\n"), None);
        assert_eq!(script_kind(b"#!\n"), None);
        // A hostile interpreter: quotes, options, paths with spaces are refused.
        assert_eq!(script_kind(b"#!/bin/sh \"-c\" x y\n"), None);
        assert_eq!(script_kind(b"#!-x\n"), None);
        assert_eq!(script_kind(b"#!c:\\a b\\x.exe \"&calc\"\n"), None);
        assert_eq!(script_kind(&[0xff, 0xfe, b'#']), None);
    }

    #[test]
    fn command_lines() {
        let ps = script_argv(
            script_kind(b"#ps1_x86\n").as_ref(),
            "20-user-user-data.ps1",
            "C:\\Windows",
            "C:\\s.ps1",
        )
        .unwrap();
        assert_eq!(
            ps.join(" "),
            "C:\\Windows\\SysWOW64\\WindowsPowerShell\\v1.0\\powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File C:\\s.ps1"
        );
        // The network script has no header: its extension decides.
        let net = script_argv(None, "network.ps1", "C:\\Windows", "n.ps1").unwrap();
        assert!(net[0].ends_with("System32\\WindowsPowerShell\\v1.0\\powershell.exe"));
        let cmd = script_argv(Some(&ScriptKind::Cmd), "x.cmd", "C:\\W", "x.cmd").unwrap();
        assert_eq!(cmd, ["C:\\W\\System32\\cmd.exe", "/c", "x.cmd"]);
        assert_eq!(script_argv(None, "x", "C:\\W", "x"), None);
    }

    #[test]
    fn account_names() {
        assert!(check_windows_user("Admin").is_ok());
        assert!(check_windows_user("cloud admin").is_ok());
        assert!(check_windows_user("").is_err());
        assert!(check_windows_user("a234567890123456789012").is_err());
        for bad in ["a/b", "a\\b", "..", "a\nb", "a:b", "x@y", "%USERPROFILE%"] {
            assert!(check_windows_user(bad).is_err(), "{bad:?}");
        }
    }
}
