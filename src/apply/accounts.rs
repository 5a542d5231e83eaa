//! Apply accounts: writes planned `/etc/passwd`, `/etc/shadow`, `/etc/group` and `/etc/gshadow`
//! contents under the shadow suite's lock (`/etc/.pwd.lock`, as `lckpwdf(3)` takes it), after
//! checking that no file changed since it was planned. Never decides content (that is
//! `plan::accounts`), writes the account files only through `fs::Writer` (the other files it
//! writes are the empty lock file, as `lckpwdf` does, and the plan's intent in primer's state),
//! and never logs file contents.

use std::fs::File;
#[cfg(unix)]
use std::fs::OpenOptions;
use std::io::{self, Read};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
#[cfg(unix)]
use std::thread;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

#[cfg(unix)]
use nix::errno::Errno;
#[cfg(unix)]
use nix::fcntl::{fcntl, FcntlArg};
#[cfg(unix)]
use nix::libc;

use super::fs::Writer;
use crate::paths::is_clean_relative;
pub use crate::plan::accounts::AccountWrite;
use crate::plan::PUBLIC_DIR;
use crate::state::sha256_hex;

/// The lock file of `lckpwdf(3)`, relative to the root. `useradd`, `passwd`, `chpasswd`, `vipw`
/// and glibc's `lckpwdf` all take a write lock on it while they edit the account files.
pub const LOCK_PATH: &str = "etc/.pwd.lock";

/// How long `apply_accounts` waits for the lock: glibc's `lckpwdf` gives up after 15 s too.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// Pause between two attempts to take the lock.
#[cfg(unix)]
const LOCK_POLL: Duration = Duration::from_millis(100);

/// Largest account file re-read for the change check (larger: treated as changed).
const MAX_ACCOUNT_FILE: u64 = 64 << 20;

/// Why account files were not written. Carried inside the `io::Error` that `apply_accounts`
/// returns (`io::Error::get_ref` + `downcast_ref`).
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(
        "/{path}: held by another process (useradd, passwd, vipw...); gave up after {waited:?}"
    )]
    Locked { path: String, waited: Duration },
    #[error("/{path}: changed since planning; re-run")]
    Changed { path: String },
    #[error("{path:?}: not a path inside the root")]
    BadPath { path: String },
    #[error("/{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl From<AccountsError> for io::Error {
    fn from(e: AccountsError) -> io::Error {
        let kind = match &e {
            AccountsError::Locked { .. } => io::ErrorKind::TimedOut,
            AccountsError::BadPath { .. } => io::ErrorKind::InvalidInput,
            AccountsError::Io { source, .. } => source.kind(),
            AccountsError::Changed { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Writes `edits` under the account lock, waiting up to `LOCK_TIMEOUT` for it.
pub fn apply_accounts(w: &mut Writer, edits: &[AccountWrite]) -> io::Result<()> {
    write_accounts(w, edits, None, LOCK_TIMEOUT)
}

/// `apply_accounts`, first writing `intent` (a file of primer's state: path, content) durably
/// under the lock, once the change check passed and just before the first account file: an
/// intent exists only for an edit that was about to land (see `state::intent_path`).
pub fn apply_accounts_with_intent(
    w: &mut Writer,
    edits: &[AccountWrite],
    intent: Option<(&str, &[u8])>,
) -> io::Result<()> {
    write_accounts(w, edits, intent, LOCK_TIMEOUT)
}

/// `apply_accounts` with the lock wait given. Takes the lock, re-reads every target and refuses
/// all writes when one differs from what was planned (another tool edited it meanwhile: the plan
/// would undo that edit), then writes each file atomically and releases the lock. Files are
/// written group, gshadow, subuid/subgid, shadow, passwd: a user appears (passwd) only after its
/// group, subordinate id and shadow lines exist, so a crash in between leaves lines the next plan
/// adopts, never a user without its group.
pub fn apply_accounts_with_timeout(
    w: &mut Writer,
    edits: &[AccountWrite],
    timeout: Duration,
) -> io::Result<()> {
    write_accounts(w, edits, None, timeout)
}

fn write_accounts(
    w: &mut Writer,
    edits: &[AccountWrite],
    intent: Option<(&str, &[u8])>,
    timeout: Duration,
) -> io::Result<()> {
    if edits.is_empty() {
        return Ok(());
    }
    for e in edits {
        if !is_clean_relative(&e.path) {
            return Err(AccountsError::BadPath {
                path: e.path.clone(),
            }
            .into());
        }
    }
    let _lock = PwdLock::acquire(w, timeout)?;
    for e in edits {
        let rel = e.path.trim_start_matches('/');
        let current = read_current(w, rel)?;
        let current = current.as_deref().map(sha256_hex);
        if current != e.expect_sha256 {
            return Err(AccountsError::Changed {
                path: rel.to_string(),
            }
            .into());
        }
    }
    if let Some((path, content)) = intent {
        super::write_state(w, path, content).map_err(|source| AccountsError::Io {
            path: path.to_string(),
            source,
        })?;
    }
    let mut ordered: Vec<&AccountWrite> = edits.iter().collect();
    crate::sort::sort_by_key(&mut ordered, |e| write_rank(&e.path));
    for e in ordered {
        let rel = e.path.trim_start_matches('/');
        w.write_atomic(rel, &e.content, e.meta, PUBLIC_DIR)
            .map_err(|source| AccountsError::Io {
                path: rel.to_string(),
                source,
            })?;
        tracing::debug!(path = %rel, bytes = e.content.len(), "account file written");
    }
    Ok(())
}

/// Write order (see `apply_accounts_with_timeout`); other files go last, in the given order.
fn write_rank(path: &str) -> u8 {
    match path.trim_start_matches('/') {
        "etc/group" => 0,
        "etc/gshadow" => 1,
        "etc/subuid" | "etc/subgid" => 2,
        "etc/shadow" => 3,
        "etc/passwd" => 4,
        _ => 5,
    }
}

/// The file's current bytes (`None`: absent), read inside the root.
fn read_current(w: &Writer, rel: &str) -> Result<Option<Vec<u8>>, AccountsError> {
    let io_err = |source| AccountsError::Io {
        path: rel.to_string(),
        source,
    };
    let host = w.resolve(rel).map_err(io_err)?;
    let f = match File::open(&host) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut buf = Vec::new();
    f.take(MAX_ACCOUNT_FILE)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    Ok(Some(buf))
}

/// The `lckpwdf(3)` lock: a POSIX write lock (fcntl, whole file) on `/etc/.pwd.lock`, created
/// 0600. Released when dropped (unlocked, then closed).
struct PwdLock {
    #[cfg_attr(not(unix), allow(dead_code))]
    file: File,
}

/// `lckpwdf` is a POSIX lock on a file of the shadow suite: Linux by design. Windows accounts
/// are not edited through `/etc` files (NetUser* calls, not done yet).
#[cfg(not(unix))]
impl PwdLock {
    fn acquire(_w: &mut Writer, _timeout: Duration) -> Result<PwdLock, AccountsError> {
        Err(AccountsError::Io {
            path: LOCK_PATH.to_string(),
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "not supported on Windows yet: editing the account files",
            ),
        })
    }
}

#[cfg(unix)]
fn whole_file(l_type: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

#[cfg(unix)]
impl PwdLock {
    fn acquire(w: &mut Writer, timeout: Duration) -> Result<PwdLock, AccountsError> {
        let io_err = |source| AccountsError::Io {
            path: LOCK_PATH.to_string(),
            source,
        };
        w.create_dirs("etc", PUBLIC_DIR).map_err(io_err)?;
        let host = w.resolve(LOCK_PATH).map_err(io_err)?;
        // As glibc: O_WRONLY|O_CREAT, 0600 (std adds O_CLOEXEC). O_NOFOLLOW: the resolved path
        // is inside the root; a symlink swapped in since must not lead out of it.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&host)
            .map_err(io_err)?;
        let start = Instant::now();
        let lock = whole_file(libc::F_WRLCK);
        let mut told = false;
        loop {
            // F_SETLK in a loop rather than F_SETLKW: lckpwdf bounds its wait with SIGALRM,
            // which a library must not install; polling bounds it without signals.
            match fcntl(&file, FcntlArg::F_SETLK(&lock)) {
                Ok(_) => return Ok(PwdLock { file }),
                Err(Errno::EACCES | Errno::EAGAIN) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(AccountsError::Locked {
                            path: LOCK_PATH.to_string(),
                            waited,
                        });
                    }
                    if !told {
                        told = true;
                        tracing::info!(
                            "waiting for /{LOCK_PATH}: another tool is editing the account files"
                        );
                    }
                    thread::sleep(LOCK_POLL.min(timeout.saturating_sub(waited)));
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(io_err(io::Error::from(e))),
            }
        }
    }
}

#[cfg(unix)]
impl Drop for PwdLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first says so explicitly.
        let _ = fcntl(&self.file, FcntlArg::F_SETLK(&whole_file(libc::F_UNLCK)));
    }
}
