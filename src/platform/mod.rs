//! The platform seam: the one place that names what differs between operating systems —
//! device enumeration, live-system actions (host name, entropy), the file ownership and
//! permission model the writer applies, the run lock's primitive, the machine's DMI identity,
//! durability calls, and how a script is started and killed with everything it started. Linux
//! (`linux/`) and Windows (`windows/`) sit side by side behind their own `cfg`, with the same
//! names; only this module names `nix` and `windows_sys` (plus the metadata read-back in
//! `facts/read.rs`). Parsing, planning and rendering never import this module (they are the same
//! everywhere and compiled everywhere); only the agent, the writer and the disk code do.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(windows)]
pub mod windows;

/// The SMBIOS table parser behind Windows' `system_uuid`: pure, so compiled and tested on every
/// platform (Linux reads the kernel's own `product_uuid` instead).
#[path = "windows/smbios.rs"]
pub mod smbios;

/// What a whole disk without a drive letter holds (Windows' `\\.\PhysicalDriveN`): pure over
/// `Read + Seek`, so compiled and tested on every platform.
#[path = "windows/physical.rs"]
pub mod physical;
#[cfg(windows)]
pub use windows::*;

/// Creates the new file `path` (it must not exist) for writing, private from its first
/// instant: Linux mode 0600 in `open(2)` (`private_file`); Windows a protected DACL in
/// `CreateFileW`'s security attributes (`windows::security`).
#[cfg(not(windows))]
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    private_file(std::fs::OpenOptions::new().write(true).create_new(true)).open(path)
}

/// Windows has no per-volume flush primer uses: the writer flushes each file and directory on
/// its own (see the Linux `Filesystems`, whose names this mirrors).
#[cfg(windows)]
#[derive(Default)]
pub struct Filesystems {
    _nothing: (),
}

#[cfg(windows)]
impl Filesystems {
    pub fn made(&mut self, _dir: &std::path::Path) {}

    pub fn forget_all(&mut self) {}

    /// Always `false`: the caller flushes each file.
    pub fn sync_filesystems(&mut self, _dirs: &[&std::path::Path]) -> bool {
        false
    }

    /// Not reached (no filesystem flush): each of `dirs` is fsynced.
    pub fn sync_dirs_apart(
        &mut self,
        dirs: &[&std::path::Path],
        _keep: &[&std::path::Path],
    ) -> std::io::Result<()> {
        dirs.iter().try_for_each(|d| sync_dir(d))
    }

    /// Not reached (no filesystem flush, so every file and directory is flushed alone).
    pub fn sync_unordered(&mut self, _dirs: &[&std::path::Path]) -> std::io::Result<usize> {
        Ok(0)
    }
}

/// Why the configuration file or directory `path` must not be read, or `None`. Linux: `None`
/// (the file's mode and owner are the administrator's, as for every file under `/etc`).
/// Windows: refused unless SYSTEM, Administrators or TrustedInstaller own it and no one else
/// may change it (`windows::security::config_refusal`).
#[cfg(not(windows))]
pub fn config_untrusted(_path: &std::path::Path) -> Option<String> {
    None
}

/// Opens the run lock file `path` for writing, creating it private when missing: Linux mode
/// 0600 in `open(2)`; Windows the protected DACL in `CreateFileW`'s security attributes (a
/// lock file created by `OpenOptions` would inherit its directory's ACL).
#[cfg(not(windows))]
pub fn open_lock_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    private_file(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )
    .open(path)
}

/// What the writer still sets on a file or directory it just created for a wanted mode and
/// owner (`create_staged_file`, `create_staged_dir`): the kernel gives the mode in `open` and
/// `mkdir`, and primer's own ids, unless told otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fix {
    pub chown: bool,
    pub chmod: bool,
}

/// Windows: created private (a protected DACL from the first instant), then given `meta`'s
/// ACL model by `finish_staged_file`.
#[cfg(windows)]
pub fn create_staged_file(
    path: &std::path::Path,
    _meta: crate::facts::Meta,
    _parent_setgid: bool,
    _verify: bool,
) -> std::io::Result<(std::fs::File, Fix)> {
    let fix = Fix {
        chown: true,
        chmod: true,
    };
    Ok((create_private_file(path)?, fix))
}

#[cfg(windows)]
pub fn finish_staged_file(
    f: &std::fs::File,
    meta: crate::facts::Meta,
    _fix: Fix,
) -> std::io::Result<()> {
    set_owner_mode_file(f, meta)
}

/// Windows: no POSIX group; the staged-file seam sets every entry's ACL model anyway.
#[cfg(windows)]
pub fn hands_group_down(_m: &std::fs::Metadata) -> bool {
    false
}

/// Windows has no group handed down by a directory: always true.
#[cfg(windows)]
pub fn is_own_group(_gid: u32) -> bool {
    true
}

/// Windows: an entry is always created private and then given its ACL model, so a directory
/// is never made directly under its final name.
#[cfg(windows)]
pub fn creates_final(_meta: crate::facts::Meta, _parent_setgid: bool) -> bool {
    false
}

/// Windows: a private directory, then `meta`'s ACL model.
#[cfg(windows)]
pub fn create_staged_dir(
    path: &std::path::Path,
    meta: crate::facts::Meta,
    _parent_setgid: bool,
) -> std::io::Result<()> {
    private_dir(&mut std::fs::DirBuilder::new()).create(path)?;
    set_owner_mode(path, meta)
}

/// Windows: never called (`creates_final` is false); a directory is made private, then given
/// its ACL model, under a temporary name.
#[cfg(windows)]
pub fn create_final_dir(
    _path: &std::path::Path,
    _meta: crate::facts::Meta,
    _verify: bool,
) -> std::io::Result<bool> {
    Ok(false)
}

/// Windows: every directory is made under a temporary name and given its ACL model
/// explicitly (see the Linux `mkdir_may_differ`).
#[cfg(windows)]
pub fn mkdir_may_differ(_dir: &std::path::Path) -> bool {
    true
}

/// Windows has no atomic exchange of two names: the writer moves the old entry aside first.
#[cfg(windows)]
pub fn rename_exchange(_a: &std::path::Path, _b: &std::path::Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}
