//! Windows computer name planning: the instance's host name into the DNS host name and the
//! NetBIOS name Windows gets (cloudbase-init's SetHostNamePlugin rules). Pure; not wired into
//! apply yet (the Windows platform work calls it and `SetComputerNameExW` later), never an OS
//! call here.
//!
//! Rules, as cloudbase-init applies them with its default `netbios_host_name_compatibility`
//! (`utils/hostname.py`; `../shared/notes/windows.md` §4): the first label of the host name;
//! cut to 15 characters (NetBIOS' limit) with a warning naming the original; a `-` the cut
//! leaves at the end becomes `0`; only letters, digits and `-` (the name is sanitised as on
//! Linux first: [`super::hostname::sanitize_hostname`]); a name made only of digits is refused,
//! as Windows refuses it.

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
