//! Applies the system steps of `plan::system` that are not plain file writes: the
//! `/etc/localtime` link (replaced atomically), mount point directories, and the target's
//! `update-ca-certificates`; on Windows the computer name, the admin account and the volume
//! extension through the platform seam (refused, typed, on any other OS). Never decides what
//! to do; every path is resolved inside the root.

use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::fs::{at, Writer};
use super::Target;
use crate::paths::{resolve_in_root, temp_name};
use crate::plan::PUBLIC_DIR;

/// Longest run of `update-ca-certificates` (it rehashes a few hundred certificates).
const UPDATE_CA_TIMEOUT: Duration = Duration::from_secs(120);

/// Points `rel` at `target`: a new link under a temporary name beside it, renamed over the
/// old entry (a file or link; a directory is refused by `rename`), then the directory synced.
/// The link's own parent is resolved inside the root; its target is not followed.
pub fn symlink(w: &mut Writer, rel: &str, target: &str) -> io::Result<()> {
    let (dir_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = w.create_dirs(dir_rel, PUBLIC_DIR)?;
    let tmp = dir.join(temp_name(name, std::process::id(), 0));
    let _ = fs::remove_file(&tmp);
    crate::platform::symlink(target, &tmp).map_err(|e| at(&tmp, e))?;
    let dest = dir.join(name);
    // A link now stands where the writer may have seen a file or nothing.
    w.forget(&dest);
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_file(&tmp);
        return Err(at(&dest, e));
    }
    crate::platform::sync_dir(&dir).map_err(|e| at(&dir, e))
}

/// Makes every missing directory of `paths` (and its parents) 0755 root; existing ones keep
/// their mode and owner.
pub fn make_dirs(w: &mut Writer, paths: &[String]) -> io::Result<()> {
    for p in paths {
        w.create_dirs(p, PUBLIC_DIR)?;
    }
    Ok(())
}

/// Runs the target's `update-ca-certificates` (`tool`, relative to the root) with an empty
/// stdin, bounded in time; only on the running system (the tool writes the host's store).
pub fn update_ca_certificates(target: &Target, tool: &str) -> io::Result<()> {
    if !target.live {
        return Err(io::Error::other("not a live system"));
    }
    let program = resolve_in_root(&target.root, tool)?;
    run_bounded(&program)
}

fn run_bounded(program: &Path) -> io::Result<()> {
    use std::io::Read;
    let mut child = Command::new(program)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| at(program, e))?;
    let pipes: Vec<std::thread::JoinHandle<Vec<u8>>> = super::script::take_streams(&mut child)
        .into_iter()
        .map(|r| {
            std::thread::spawn(move || {
                let mut r = r;
                let mut v = Vec::new();
                let _ = (&mut r).take(64 * 1024).read_to_end(&mut v);
                // Drained to the end, so a chatty tool never blocks on a full pipe.
                let _ = io::copy(&mut r, &mut io::sink());
                v
            })
        })
        .collect();
    let kill = |c: &mut std::process::Child| {
        let _ = c.kill();
        let _ = c.wait();
    };
    let status = super::script::wait_until(&mut child, Instant::now() + UPDATE_CA_TIMEOUT, kill)
        .map_err(|e| at(program, e))?;
    let outs: Vec<Vec<u8>> = pipes
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    match status {
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{}: killed after {} s",
                program.display(),
                UPDATE_CA_TIMEOUT.as_secs()
            ),
        )),
        Some(s) if s.success() => Ok(()),
        Some(s) => {
            let err = outs.get(1).map(|e| String::from_utf8_lossy(e).into_owned());
            let first = err.as_deref().and_then(|e| e.lines().next()).unwrap_or("");
            Err(io::Error::other(format!(
                "{}: {s}: {}",
                program.display(),
                crate::model::grammar::log_safe(first, 200)
            )))
        }
    }
}

/// A Windows step planned for a target that is not this OS (a Windows plan applied by a Linux
/// build): refused, never half-done.
#[cfg(not(windows))]
fn not_windows(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what}: a Windows step; this primer is not running on Windows"),
    )
}

/// `SetComputerNameExW` (takes effect at the next boot).
pub fn set_computer_name(dns_host: &str) -> io::Result<()> {
    #[cfg(windows)]
    return crate::platform::set_hostname(dns_host);
    #[cfg(not(windows))]
    Err(not_windows(&format!("computer name {dns_host}")))
}

/// The local account `name`: created when missing, its password set, in Administrators.
pub fn ensure_windows_user(
    name: &str,
    password: Option<&crate::model::Secret>,
    admin: bool,
) -> io::Result<()> {
    #[cfg(windows)]
    return crate::platform::accounts::ensure_user(name, password.map(|p| p.expose()), admin);
    #[cfg(not(windows))]
    {
        let _ = (password, admin);
        Err(not_windows(&format!("account {name}")))
    }
}

/// Grows the volume of `drive` into the free space after it.
pub fn extend_volume(drive: char) -> io::Result<()> {
    #[cfg(windows)]
    return crate::platform::volume::extend(drive);
    #[cfg(not(windows))]
    Err(not_windows(&format!("extend volume {drive}:")))
}
