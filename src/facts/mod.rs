//! Host facts: reads, once and read-only, what the planner compares against under the target
//! root (host name files, passwd, the SSH user's keys, homes and /etc/skel, NICs and network
//! files, primer's own state for this instance) and hands it to planning as data. What to read
//! comes from the planner as data too (`Wanted`). Never writes; every path is resolved inside
//! the root; imports no planning and no writer.

pub mod net;
mod read;

pub(crate) use read::read_file_capped;
pub use read::{meta_of, read_host_facts, read_host_facts_in};

use std::collections::{BTreeMap, BTreeSet};

use crate::state::Record;

/// Explicit ownership and permissions for a file or directory: as read from the target, or as
/// a plan wants it written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// An existing file under the target root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    /// The bytes, for a file the planner parses or compares in memory; empty when the file was
    /// only measured (`measured` is then set).
    pub content: Vec<u8>,
    pub meta: Meta,
    /// Set for a file the planner only compares with drive bytes (a stored script, an injected
    /// file, the local copy, `Wanted::measured`): its length and SHA-256, computed while reading
    /// it in fixed chunks, so a 64 MiB script is compared without being held.
    pub measured: Option<Measured>,
}

/// Length and SHA-256 of a file read in chunks and not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub len: u64,
    pub sha256: [u8; 32],
}

impl FileFact {
    /// A file held in memory.
    pub fn held(content: Vec<u8>, meta: Meta) -> FileFact {
        FileFact {
            content,
            meta,
            measured: None,
        }
    }

    /// Whether the file holds exactly `bytes`: compared in memory when held; when measured, by
    /// length then digest (`Bytes::sha256` is computed once per buffer, so comparing a script
    /// and its local copy hashes the drive file once).
    pub fn holds(&self, bytes: &crate::model::Bytes) -> bool {
        match &self.measured {
            None => bytes.equals(&self.content),
            Some(m) => m.len == bytes.len() as u64 && m.sha256 == bytes.sha256(),
        }
    }

    /// Whether the file holds exactly the record `view` writes: compared as it is made, with
    /// the bytes when held, by length and digest when measured (the record of the previous run:
    /// `read_host_facts_in`).
    pub fn holds_record(&self, view: &crate::state::RecordView<'_>) -> bool {
        match &self.measured {
            None => view.json_equals(&self.content),
            Some(m) => view.json_digest_is(m.len, &m.sha256),
        }
    }
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// primer's per-machine key for keyed digests of secrets (`state::KEY_PATH`), read with the
/// host facts. `stored`: it was read from that file; otherwise these are fresh random bytes the
/// plan writes there when it uses them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StateKey {
    pub key: [u8; 32],
    pub stored: bool,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateKey(<redacted>, stored: {})", self.stored)
    }
}

/// The operating system of the target: planning branches on it as data (Windows gets computer
/// name, Windows accounts and `administrators_authorized_keys` instead of `/etc` files), so a
/// Windows plan is computed and tested on Linux too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetOs {
    /// The default: every plan made before the target OS was data is a Linux plan.
    #[default]
    Linux,
    Windows,
}

impl TargetOs {
    /// The OS primer was built for: the target of a run on this machine (an image mounted
    /// under `--root` is of the same kind: a Linux primer does not plan Windows images).
    pub const HOST: TargetOs = if cfg!(windows) {
        TargetOs::Windows
    } else {
        TargetOs::Linux
    };
}

/// What the planner knows about the target, read once before planning (`read_host_facts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The target's operating system (`TargetOs::HOST` for a real run).
    pub os: TargetOs,
    /// The target root is the running system (`/`): live changes (sethostname) apply.
    pub live: bool,
    pub kernel_hostname: Option<String>,
    /// Files the planner may compare against, by path relative to the root. Absent = missing.
    pub files: BTreeMap<String, FileFact>,
    /// Directories the planner may compare against (mode and owner).
    pub dirs: BTreeMap<String, Meta>,
    pub passwd: Vec<PasswdEntry>,
    /// Every file currently in the instance's local drive copy (relative to the root).
    pub copy_files: BTreeSet<String>,
    /// The record of the previous run for this instance, when there is one.
    pub record: Option<Record>,
    /// Interfaces, network backend and primer's network files on the target.
    pub network: net::NetFacts,
    /// Random bytes for password salts (read with the facts so planning stays pure).
    pub salt: [u8; 32],
    /// Files of /etc/skel (path below it, content and meta), for new homes.
    pub skel: Vec<(String, FileFact)>,
    /// Entries of the existing homes the planner may fill (top-level names, bounded): a home
    /// holding only what primer puts there was left by an interrupted run.
    pub home_entries: BTreeMap<String, Vec<String>>,
    /// primer's per-machine key for keyed digests of secrets (`read_state_key`).
    pub state_key: StateKey,
    /// Which of `Wanted::present` exist as regular files (tools looked for, never read).
    pub present: BTreeSet<String>,
    /// Every path (relative to the root) these facts were read from or found missing at, for a
    /// later run to tell by metadata alone whether they could read differently (the re-run fast
    /// path in `agent`).
    pub inputs: Inputs,
    /// `(path, SHA-256 of a text)` for each `Wanted::appends` text the file already holds
    /// somewhere (searched while the file streams, neither held), or that the record vouches
    /// was appended for this instance (`WantedAppend::step`): an `append` appended before.
    pub appended: BTreeSet<(String, [u8; 32])>,
    /// `(path, SHA-256 of a text)` for each `Wanted::appends` text not searched for: not at
    /// the end of its file, and the run's scan budget (`MAX_APPEND_SCAN_BYTES`) spent. Whether
    /// it is there is not known (the planner does not append it unless the record vouches).
    pub append_unsearched: BTreeSet<(String, [u8; 32])>,
}

/// What the facts rest on, path by path: files and directories looked at, directories whose
/// entries were listed, links read as links; and what no file metadata vouches for (the
/// kernel's host name, the NICs in sysfs), kept as the values the facts read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Paths looked up (read, measured, checked for existence): their content and metadata.
    pub paths: BTreeSet<String>,
    /// Directories whose entries were read: their entry list matters too (mtime tracks it).
    pub listed: BTreeSet<String>,
    /// Paths whose final symlink itself was looked at (`lstat`, never followed).
    pub links: BTreeSet<String>,
    /// Of `paths`, those found when read: one missing later was removed since (a snapshot
    /// taken then would record it missing beside a plan made from its content).
    pub found: BTreeSet<String>,
    /// The facts read from the kernel rather than from files: compared by value, read again.
    pub volatile: Volatile,
}

/// What the facts read from the running kernel, not from files whose metadata could vouch for
/// them: the host name (a live root) and the NICs under `sys/class/net` (sysfs: its inodes and
/// times say nothing across boots). The re-run fast path reads these again ([`read_volatile`])
/// and compares them by value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volatile {
    /// The kernel's host name (a live root only).
    pub hostname: Option<String>,
    /// Lower-case MAC -> interface name.
    pub interfaces: BTreeMap<String, String>,
    /// Interface name -> kernel driver.
    pub drivers: BTreeMap<String, String>,
    /// The MACs the drive names (a live run waits for them and for udev to name them).
    pub macs: Vec<String>,
}

/// [`Volatile`] as it reads now under `root` (`live`: the kernel's host name too), and whether
/// the NICs `macs` names are present and named for good (`net`'s udev rule, as a live run's
/// wait decides it; always true off a live root). Reads sysfs and one system call; no waiting.
pub fn read_volatile(
    root: &crate::paths::Resolver,
    live: bool,
    macs: &[String],
) -> (Volatile, bool) {
    let interfaces = net::interfaces_now(root);
    let settled = !live
        || (macs.iter().all(|m| interfaces.contains_key(m))
            && net::names_settled(root, &interfaces, macs));
    let v = Volatile {
        hostname: if live { read::kernel_hostname() } else { None },
        drivers: net::drivers_now(root, &interfaces),
        interfaces,
        macs: macs.to_vec(),
    };
    (v, settled)
}

/// What the planner asks to be read (made by `plan::wanted`): the facts layer knows how to
/// read, the planner knows what matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Files under the root (injected files, `write_files`, the account files).
    pub files: Vec<String>,
    /// Files the planner only compares with drive bytes (injected files): measured (length and
    /// digest, `FileFact::measured`), not held. A path also in `files` (or read for another
    /// reason) is held.
    pub measured: Vec<String>,
    /// Files whose existence alone matters (a tool such as `ssh-keygen`): looked up, not read.
    pub present: Vec<String>,
    /// Users whose `~/.ssh` matters: the SSH user and every account asked for.
    pub key_users: Vec<String>,
    /// Home directories the planner may create, by user: the `homedir` user-data gives, else
    /// `None` (the account's home from /etc/passwd, or /home/NAME for a new one).
    pub homes: Vec<(String, Option<String>)>,
    /// Accounts are managed: read /etc/skel (at this path), the homes and salt bytes.
    pub skel: Option<&'static str>,
    /// primer's state for this instance (none for an instance id that cannot name it).
    pub state: Option<WantedState>,
    /// MACs of the NICs the drive names, and how long a live run waits for them.
    pub macs: Vec<String>,
    pub net_wait: std::time::Duration,
    /// `write_files` `append` targets (also in `measured`) and the text each appends: the
    /// file is searched for the text (`HostFacts::appended`), the text streamed, never held.
    pub appends: Vec<WantedAppend>,
}

/// One `write_files` `append` entry the facts look for in its target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WantedAppend {
    /// The target, relative to the root.
    pub path: String,
    /// The text the entry appends.
    pub text: crate::model::Bytes,
    /// The entry's step id in the record: a record whose input for it names this text
    /// (`state::append_input`) vouches that it was appended for this instance, and the file is not
    /// searched (a re-run after the file grew would otherwise scan it per entry).
    pub step: String,
}

/// primer's own files for one instance, relative to the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WantedState {
    /// The per-instance record (parsed into `HostFacts::record`).
    pub record: String,
    /// Other single files compared by the plan.
    pub files: Vec<String>,
    /// Single files only compared with the run's own as a whole: held when small (compared
    /// byte for byte, nothing to hash), measured when larger than a read chunk (never held
    /// beside the run's own copy: 5,000 injected files make a 650 KB instance.json).
    pub compared: Vec<String>,
    /// Directories whose every file is read (markers).
    pub dirs: Vec<String>,
    /// Directories whose every file is measured, not held (stored scripts).
    pub measured_dirs: Vec<String>,
    /// The local copy of the drive (its files also listed in `HostFacts::copy_files`), measured.
    pub copy_dir: String,
}

/// Parses `/etc/passwd` text; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd() {
        let p = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbad\ndebian:x:1000:1000::/home/debian:/bin/sh\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].uid, 1000);
        assert_eq!(p[1].home, "/home/debian");
    }
}
