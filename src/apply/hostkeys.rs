//! Replaces the SSH host keys as the plan says (`Action::HostKeys`): runs the target's
//! `ssh-keygen` into temporary names inside `etc/ssh`, fixes mode and owner, syncs, then removes
//! the image's keys and renames the new ones in place, and prints the fingerprint block cloud
//! consoles parse. Never decides whether to do it (that is `plan::hostkeys`), never reads or
//! logs a private key.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::fs::{at, Writer};
use super::Target;
use crate::facts::Meta;
use crate::paths::{is_temp_name, resolve_in_root, temp_name};
use crate::plan::hostkeys::{KeyType, RSA_BITS, SSH_DIR};
use crate::plan::PUBLIC_DIR;

/// Longest wait for one `ssh-keygen` (early boot: key generation may wait for the kernel's
/// random pool).
const KEYGEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes of one `ssh-keygen` output kept (for an error message or a fingerprint line).
const MAX_OUTPUT: usize = 4096;
/// Most host keys printed.
const MAX_PRINTED: usize = 32;

const PRIVATE_KEY: Meta = Meta {
    mode: 0o600,
    uid: 0,
    gid: 0,
};
const PUBLIC_KEY: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
};

/// Generates `types` with the target's `keygen` (relative to the root), then, when `delete`,
/// removes every `ssh_host_*key*` of `etc/ssh`, then renames the new keys in place. A failure
/// before the renames leaves the image's keys as they were (the temporary keys are removed).
pub fn apply_host_keys(
    target: &Target,
    keygen: &str,
    delete: bool,
    types: &[KeyType],
) -> io::Result<()> {
    let keygen = resolve_in_root(&target.root, keygen)?;
    let mut w = Writer::new(&target.root);
    let dir = w.create_dirs(SSH_DIR, PUBLIC_DIR)?;
    remove_own_temps(&dir);
    let pid = std::process::id();
    // (temporary name, final name), private key first; each `.pub` follows its key.
    let mut made: Vec<(String, String)> = Vec::new();
    for (seq, t) in types.iter().enumerate() {
        let name = format!("ssh_host_{}_key", t.as_str());
        let tmp = temp_name(&name, pid, seq as u64);
        if let Err(e) = generate(&keygen, *t, &dir.join(&tmp)) {
            remove_own_temps(&dir);
            return Err(e);
        }
        made.push((tmp.clone(), name.clone()));
        made.push((format!("{tmp}.pub"), format!("{name}.pub")));
    }
    // Crash-test points: new keys only under temporary names; then, with `delete`, no key under
    // a real name at all (the record is not written yet, so the next run starts over).
    super::fault::point("ssh-host-keys: generated");
    if delete {
        for name in image_keys(&dir)? {
            let p = dir.join(&name);
            fs::remove_file(&p).map_err(|e| at(&p, e))?;
        }
    }
    super::fault::point("ssh-host-keys: image keys removed");
    for (tmp, name) in &made {
        let (from, to) = (dir.join(tmp), dir.join(name));
        fs::rename(&from, &to).map_err(|e| at(&to, e))?;
    }
    crate::platform::sync_dir(&dir).map_err(|e| at(&dir, e))?;
    let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    tracing::info!("{}: new SSH host keys: {}", dir.display(), names.join(", "));
    print_fingerprints(target, &keygen, &dir);
    Ok(())
}

/// Runs `ssh-keygen -q -N '' -t TYPE [-b 3072] -f PATH` (PATH and PATH.pub must not exist),
/// bounded in time, then gives both files their mode and owner and syncs them.
fn generate(keygen: &Path, t: KeyType, path: &Path) -> io::Result<()> {
    let mut cmd = Command::new(keygen);
    cmd.args(["-q", "-N", "", "-t", t.as_str()]);
    if t == KeyType::Rsa {
        cmd.args(["-b", &RSA_BITS.to_string()]);
    }
    cmd.arg("-f").arg(path);
    let out = run_bounded(cmd, keygen)?;
    if !out.0 {
        return Err(io::Error::other(format!(
            "{}: ssh-keygen -t {} failed: {}",
            keygen.display(),
            t.as_str(),
            out.1
        )));
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    for (p, meta) in [
        (path.to_path_buf(), PRIVATE_KEY),
        (PathBuf::from(pub_path), PUBLIC_KEY),
    ] {
        let f = File::open(&p).map_err(|e| at(&p, e))?;
        crate::platform::set_owner_mode_file(&f, meta)
            .and_then(|()| f.sync_all())
            .map_err(|e| at(&p, e))?;
    }
    Ok(())
}

/// Runs `cmd` (stdin empty) for at most [`KEYGEN_TIMEOUT`]. Returns whether it succeeded, and
/// its standard output on success or the first line of its diagnostics on failure (escaped,
/// cut at [`MAX_OUTPUT`] bytes).
fn run_bounded(mut cmd: Command, program: &Path) -> io::Result<(bool, String)> {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| at(program, e))?;
    let pipes: Vec<_> = super::script::take_streams(&mut child)
        .into_iter()
        .map(|r| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.take(MAX_OUTPUT as u64).read_to_end(&mut buf);
                buf
            })
        })
        .collect();
    let deadline = Instant::now() + KEYGEN_TIMEOUT;
    // One tool, not a process group of its own: only it is killed.
    let kill = |c: &mut std::process::Child| {
        let _ = c.kill();
        let _ = c.wait();
    };
    let Some(status) =
        super::script::wait_until(&mut child, deadline, kill).map_err(|e| at(program, e))?
    else {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{}: killed after {} s",
                program.display(),
                KEYGEN_TIMEOUT.as_secs()
            ),
        ));
    };
    let mut outs = pipes.into_iter().map(|h| h.join().unwrap_or_default());
    let stdout = String::from_utf8_lossy(&outs.next().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&outs.next().unwrap_or_default()).into_owned();
    if status.success() {
        Ok((true, stdout))
    } else {
        let first = stderr.lines().next().unwrap_or("").to_string();
        Ok((
            false,
            format!(
                "{status}: {}",
                crate::model::grammar::log_safe(&first, MAX_OUTPUT)
            ),
        ))
    }
}

/// The image's host key files: `ssh_host_*key*` (cloud-init's pattern: keys, public keys and
/// certificates), regular files and symlinks, sorted.
fn image_keys(dir: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map_err(|e| at(dir, e))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_") && n["ssh_host_".len()..].contains("key"))
        .collect();
    crate::sort::sort(&mut v);
    Ok(v)
}

/// Removes the temporary keys of this or an interrupted run (`.ssh_host_*.primer-tmp.*`):
/// `ssh-keygen` refuses to write over a file, and a half key must never stay behind.
fn remove_own_temps(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".ssh_host_")
            && is_temp_name(&n)
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The host key block cloud consoles parse (cloud-init's `write-ssh-key-fingerprints`): each
/// `ssh_host_*key.pub` as `ssh-keygen -l` prints it, then the public keys themselves.
pub fn fingerprint_block(keygen: &Path, dir: &Path) -> String {
    let mut pubs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("ssh_host_") && n.ends_with("key.pub")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    crate::sort::sort(&mut pubs);
    pubs.truncate(MAX_PRINTED);
    let mut fps = Vec::new();
    let mut keys = Vec::new();
    for p in &pubs {
        let mut cmd = Command::new(keygen);
        cmd.arg("-l").arg("-f").arg(p);
        if let Ok((true, out)) = run_bounded(cmd, keygen) {
            fps.extend(out.lines().next().and_then(printable));
        }
        if let Ok(text) = fs::read(p) {
            let text = String::from_utf8_lossy(&text[..text.len().min(MAX_OUTPUT)]).into_owned();
            // cloud-init leaves DSA keys out of this block by default; so does primer.
            keys.extend(
                text.lines()
                    .next()
                    .and_then(printable)
                    .filter(|l| !l.starts_with("ssh-dss ")),
            );
        }
    }
    let rule = "#".repeat(61);
    let mut s = String::from("\n");
    s += &format!("{rule}\n-----BEGIN SSH HOST KEY FINGERPRINTS-----\n");
    for l in fps {
        s += &format!("{l}\n");
    }
    s += &format!("-----END SSH HOST KEY FINGERPRINTS-----\n{rule}\n");
    s += "-----BEGIN SSH HOST KEY KEYS-----\n";
    for l in keys {
        s += &format!("{l}\n");
    }
    s += "-----END SSH HOST KEY KEYS-----\n";
    s
}

/// A line fit for the console: trimmed, non-empty, no control character.
fn printable(l: &str) -> Option<String> {
    let l = l.trim();
    (!l.is_empty() && !l.chars().any(char::is_control)).then(|| l.to_string())
}

/// Writes the block to `/dev/console` on the running system (stderr when it cannot be opened,
/// and for a root that is not the running system).
fn print_fingerprints(target: &Target, keygen: &Path, dir: &Path) {
    let block = fingerprint_block(keygen, dir);
    let console = if target.live {
        fs::OpenOptions::new().write(true).open("/dev/console").ok()
    } else {
        None
    };
    let r = match console {
        Some(mut c) => c.write_all(block.as_bytes()),
        None => io::stderr().write_all(block.as_bytes()),
    };
    if let Err(e) = r {
        tracing::warn!("SSH host key fingerprints not printed: {e}");
    }
}
