//! Where a drive-named path may land on the target: one rule set for home directories, injected
//! files and `write_files`. Pure: decides from the path text alone (the writer additionally keeps
//! every write inside the root and refuses escaping symlinks). Never rewrites a path into a
//! usable one: a path that is not clean is refused, so what lands in /etc/passwd is what was
//! checked.

use crate::model::grammar::{self, Esc};
use crate::state;

/// Longest drive path accepted.
pub const MAX_PATH: usize = 4096;

/// What the path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A user's home directory (created and owned by the user, written into /etc/passwd).
    Home,
    /// A file primer writes for the drive (injected files, `write_files`).
    File,
}

/// Places nothing of the drive's may go: primer's own state (the pinning record, staged
/// scripts), the kernel's and udev's pseudo filesystems, and runtime state. `var/run` and
/// `var/lock` are links to `run` and `run/lock` on current systems.
const NEVER: &[&str] = &[
    state::STATE_DIR,
    "proc",
    "sys",
    "dev",
    "run",
    "var/run",
    "var/lock",
];

/// Trees a home may not lie in: a user owning its home would own part of the system.
const NOT_HOMES: &[&str] = &["boot", "etc", "usr", "bin", "sbin"];
/// Directories that may not be a home themselves (their children may be).
const NOT_HOME_ITSELF: &[&str] = &["var/lib", "var", "home", "tmp", "srv", "opt", "root"];

/// The account files (behind the shadow suite's lock, edited only by primer's account step),
/// their backups and lock files: never a drive file's destination.
const ACCOUNT_FILES: &[&str] = &["passwd", "shadow", "group", "gshadow", "subuid", "subgid"];

/// `t` as NTFS compares it on Windows (ASCII case folded); as it is elsewhere, uncopied.
fn fold(t: &str) -> std::borrow::Cow<'_, str> {
    if cfg!(windows) {
        t.to_ascii_lowercase().into()
    } else {
        t.into()
    }
}

fn inside(rel: &str, dir: &str) -> bool {
    rel == dir || rel.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// The path relative to the root for a drive path used as `what`, or why it is refused
/// (`"<path>" refused: <why>`, the path escaped for logs).
pub fn target_path(path: &str, what: Use) -> Result<String, String> {
    check(path, what).map_err(|why| format!("{} refused: {why}", Esc(path)))
}

fn check(path: &str, what: Use) -> Result<String, String> {
    if path.len() > MAX_PATH {
        return Err(format!("is longer than {MAX_PATH} bytes"));
    }
    grammar::line_safe(path).map_err(|e| e.to_string())?;
    if what == Use::Home {
        grammar::account_field(path).map_err(|e| e.to_string())?;
    }
    if !path.starts_with('/') {
        return Err("is not an absolute path".into());
    }
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return Err("is the root directory".into());
    }
    if path.starts_with("//")
        || rel.ends_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("is not a clean path (empty, '.' or '..' component)".into());
    }
    if !crate::paths::is_clean_relative(rel) {
        return Err("is not a clean path".into());
    }
    // NTFS reads a path more loosely than the text says: case-blind, `\\` a separator, a
    // trailing `.` or space dropped, `PROGRA~3` an alias, `x:y` a stream, `NUL` a device. On
    // Windows every such path is refused, so the prefix checks below see what NTFS will open.
    if cfg!(windows) {
        if let Some(why) = windows_refusal(rel) {
            return Err(why);
        }
    }
    // NTFS compares names case-blind: so does the check on Windows (no copies elsewhere: this
    // runs for every injected file).
    let rel_cmp = fold(rel);
    if let Some(d) = NEVER.iter().find(|d| inside(&rel_cmp, &fold(d))) {
        return Err(format!("is inside /{d}"));
    }
    match what {
        Use::Home => {
            let top = rel.split('/').next().unwrap_or(rel);
            if let Some(d) = NOT_HOMES.iter().find(|d| top == **d) {
                return Err(format!("is inside /{d}, which no user may own"));
            }
            if top.starts_with("lib") {
                return Err(format!("is inside /{top}, which no user may own"));
            }
            if NOT_HOME_ITSELF.contains(&rel) {
                return Err(format!("is /{rel} itself, which no user may own"));
            }
        }
        Use::File => {
            if let Some(name) = rel.strip_prefix("etc/") {
                let base = name
                    .strip_suffix(".lock")
                    .or_else(|| name.strip_suffix('-'))
                    .or_else(|| name.strip_suffix('+'))
                    .unwrap_or(name);
                if ACCOUNT_FILES.contains(&base) || name == ".pwd.lock" {
                    return Err(format!(
                        "is the account file /etc/{name}, which only primer's account step edits (under the shadow suite's lock)"
                    ));
                }
            }
        }
    }
    Ok(rel.to_string())
}

/// Reserved DOS device names: a file of that name (any extension) opens the device.
const DOS_DEVICES: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9", "conin$",
    "conout$",
];

/// Why NTFS would not open `rel` (a clean `/`-separated relative path) as written, or `None`:
/// a `\\` (a second separator the checks above do not see), `:` (a drive or an alternate data
/// stream), `~` (an 8.3 alias such as `PROGRA~3` of `ProgramData`), a component ending in `.`
/// or a space (Windows drops them), or a DOS device name. Pure, tested on every platform;
/// applied on Windows.
pub fn windows_refusal(rel: &str) -> Option<String> {
    if let Some(c) = rel.chars().find(|c| matches!(c, '\\' | ':' | '~')) {
        return Some(format!(
            "holds {c:?}, which Windows reads as a separator, a drive or stream, or a short-name alias"
        ));
    }
    for comp in rel.split('/') {
        if comp.ends_with('.') || comp.ends_with(' ') {
            return Some(format!(
                "has the component {:?} ending in '.' or ' ', which Windows drops",
                Esc(comp)
            ));
        }
        let stem = comp.split('.').next().unwrap_or(comp).to_ascii_lowercase();
        if DOS_DEVICES.contains(&stem.as_str()) {
            return Some(format!("names the Windows device {}", Esc(comp)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_aliases_of_a_path_are_refused() {
        for bad in [
            "ProgramData\\primer\\pin",
            "PROGRA~3/primer/pin",
            "ProgramData/primer./key",
            "ProgramData/primer /key",
            "x/file.txt:stream",
            "C:/Windows/x",
            "tmp/NUL",
            "tmp/com1.txt",
        ] {
            assert!(windows_refusal(bad).is_some(), "{bad}");
        }
        for good in [
            "ProgramData/app/x.conf",
            "Users/a/.ssh/authorized_keys",
            "etc/x.d/y",
        ] {
            assert_eq!(windows_refusal(good), None, "{good}");
        }
    }

    #[test]
    fn homes() {
        for good in ["/home/x", "/srv/www", "/var/lib/app", "/opt/a/b", "/data"] {
            assert_eq!(
                target_path(good, Use::Home).as_deref(),
                Ok(&good[1..]),
                "{good}"
            );
        }
        for bad in [
            format!("/{}", state::STATE_DIR).as_str(),
            format!("/{}/instance", state::STATE_DIR).as_str(),
            "/var/lib",
            "/proc/self",
            "/../../../tmp/h",
            "/",
            "//",
            "/etc/x",
            "/etc",
            "home/x",
            "",
            "/usr/local/x",
            "/lib64/x",
            "/lib",
            "/boot/x",
            "/run/user/1",
            "/dev/shm/x",
            "/sys/x",
            "/home/x/",
            "/home/./x",
            "/home//x",
            "/home/x:y",
            "/home/x\ny",
            "/home/a\0b",
        ] {
            assert!(target_path(bad, Use::Home).is_err(), "{bad:?} accepted");
        }
        let e = target_path("/home/x\nroot::0:0::/:/bin/sh", Use::Home).unwrap_err();
        assert!(!e.contains('\n') && e.contains("\\n"), "{e}");
    }

    #[test]
    fn files() {
        for good in [
            "/etc/motd",
            "/etc/hosts",
            "/root/.ssh/config",
            "/etc/shadowsocks",
        ] {
            assert!(target_path(good, Use::File).is_ok(), "{good}");
        }
        for bad in [
            "/etc/shadow",
            "/etc/passwd",
            "/etc/group",
            "/etc/gshadow",
            "/etc/shadow-",
            "/etc/passwd.lock",
            "/etc/.pwd.lock",
            format!("/{}", state::KEY_PATH).as_str(),
            "/proc/sys/kernel/x",
            "/",
            "/etc/../x",
            "/etc/x\ny",
        ] {
            assert!(target_path(bad, Use::File).is_err(), "{bad:?} accepted");
        }
    }
}
