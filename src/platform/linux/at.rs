//! Creating the writer's staged files and directories with their final mode and owner in the
//! creating call itself where the kernel gives them (primer's own ids, no setgid parent, a mode
//! the umask keeps), so a first boot makes no `fchown`/`fchmod`/`lchown`/`chmod` per file; the
//! explicit calls remain for everything else. Creates only what the writer asks for, at the
//! path it names; never resolves paths and never changes an existing entry.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;

use super::{set_owner_mode, set_owner_mode_file};
use crate::facts::Meta;
use crate::platform::Fix;

/// The process's effective ids and umask, asked of the kernel once.
struct Ids {
    uid: u32,
    gid: u32,
    umask: u32,
}

fn ids() -> &'static Ids {
    static IDS: OnceLock<Ids> = OnceLock::new();
    IDS.get_or_init(|| {
        use nix::sys::stat::{umask, Mode};
        // umask(2) has no read-only form: set a strict value and put the old one back at once.
        // Read on the writer's first use, before it creates anything; no other thread of
        // primer creates files.
        let old = umask(Mode::from_bits_truncate(0o077));
        umask(old);
        Ids {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            umask: old.bits(),
        }
    })
}

/// Whether a directory with metadata `m` gives new entries a group other than primer's: it is
/// setgid, or its group is not primer's (a `grpid`/`bsdgroups` mount hands it down, setgid or
/// not). `paths::Resolver`'s rule for the writer.
pub fn hands_group_down(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.mode() & 0o2000 != 0 || m.gid() != ids().gid
}

/// Whether `gid` is primer's effective group (a directory with another group hands it to new
/// entries on a `grpid` mount).
pub fn is_own_group(gid: u32) -> bool {
    gid == ids().gid
}

/// What is still to be set on a new entry created for `meta` in a directory (`parent_setgid`:
/// new entries there take its group): the owner when it is not primer's own (or the group may
/// be the parent's), the mode when it holds more than permission bits (setuid, setgid, sticky:
/// `open` and `mkdir` do not reliably carry them, and a `chown` clears them) or bits the umask
/// takes away.
fn fix_for(meta: Meta, parent_setgid: bool) -> Fix {
    let ids = ids();
    let chown = parent_setgid || meta.uid != ids.uid || meta.gid != ids.gid;
    let chmod = chown || meta.mode & !0o777 != 0 || meta.mode & ids.umask != 0;
    Fix { chown, chmod }
}

/// Whether an entry created for `meta` in such a directory gets all of `meta` from the creating
/// call itself (no owner or mode to set afterwards): the writer then makes a directory under
/// its final name instead of a temporary one renamed into place.
pub fn creates_final(meta: Meta, parent_setgid: bool) -> bool {
    fix_for(meta, parent_setgid) == Fix::default()
}

/// Creates the new file `path` (it must not exist) for writing: with `meta`'s mode in `open`
/// when nothing else is to be set, else private (0600) until `finish_staged_file`. `verify`:
/// read back what the kernel gave (one `fstat`); the writer asks once per directory and mode,
/// as a directory's default ACL and its filesystem's owner rules give every new file there the
/// same result for the same request (5,000 files in a few directories: a few checks, not 5,000).
pub fn create_staged_file(
    path: &Path,
    meta: Meta,
    parent_setgid: bool,
    verify: bool,
) -> io::Result<(File, Fix)> {
    let fix = fix_for(meta, parent_setgid);
    let mode = if fix.chmod { 0o600 } else { meta.mode & 0o777 };
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // What the kernel gave may still differ (a default ACL on the parent replaces the umask;
    // NFS root squash, FUSE or vfat keep their own owner): one `fstat` says, and the explicit
    // calls then set it, or fail loudly as before.
    if verify && !fix.chown && !fix.chmod && !has_meta(path, &f.metadata()?, meta) {
        return Ok((
            f,
            Fix {
                chown: true,
                chmod: true,
            },
        ));
    }
    Ok((f, fix))
}

/// Whether the entry at `path` (metadata `m`) has exactly `meta`, read back as the host facts
/// read it.
fn has_meta(path: &Path, m: &fs::Metadata, meta: Meta) -> bool {
    crate::facts::meta_of(path, m) == meta
}

/// Sets on a staged file what `create_staged_file` could not: owner first (a `chown` clears
/// setuid and setgid), then the mode.
pub fn finish_staged_file(f: &File, meta: Meta, fix: Fix) -> io::Result<()> {
    if fix.chown {
        set_owner_mode_file(f, meta)
    } else if fix.chmod {
        f.set_permissions(fs::Permissions::from_mode(meta.mode))
    } else {
        Ok(())
    }
}

/// Whether `mkdir` in the directory `dir` may give other than `creates_final` promises, so a
/// new directory there is made under a temporary name instead of its final one: `dir` is on a
/// filesystem not known to give exactly the mode asked and the creator's ids (only ext2/3/4,
/// XFS, btrfs, tmpfs and ramfs are: NFS squashes root, FUSE and vfat choose their own owner or
/// mode, and a crash between `create_final_dir`'s `mkdir` and `rmdir` would leave such a
/// directory under its final name), or it has a default ACL (`system.posix_acl_default`: new
/// entries get their permissions from it instead of the umask). Any failure to tell counts as
/// "may" (the safe answer).
pub fn mkdir_may_differ(dir: &Path) -> bool {
    !super::fs_type(dir).is_some_and(|t| super::LOCAL_FS.contains(&t)) || has_default_acl(dir)
}

/// Whether the directory `dir` has a default ACL. A filesystem without ACLs has none; any other
/// failure counts as one.
fn has_default_acl(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: both strings are NUL-terminated and outlive the call; a zero-sized buffer only
    // asks for the value's size.
    let n = unsafe {
        nix::libc::lgetxattr(
            c.as_ptr(),
            c"system.posix_acl_default".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if n >= 0 {
        return true;
    }
    let e = io::Error::last_os_error().raw_os_error();
    !matches!(e, Some(nix::libc::ENODATA) | Some(nix::libc::EOPNOTSUPP))
}

/// Makes the new directory `path` under its final name with `meta`, for an entry
/// `creates_final` says `mkdir` gives exactly (the parent checked for a default ACL by the
/// caller). `verify`: read back what the kernel gave (one `lstat`); the writer asks for the
/// first directory in each directory it did not make itself (one it made directly is on the
/// same known filesystem, with no default ACL, its group primer's: `mkdir` there gives what
/// it gave in its parent). `Ok(false)`: the kernel gave something else after all (a
/// filesystem's own owner: NFS root squash, FUSE, vfat); the directory is removed again at
/// once, never corrected in place (a correction that fails, or a crash before it, would leave
/// a directory under its final name that the next run takes as it is), and the caller makes
/// it under a temporary name instead.
pub fn create_final_dir(path: &Path, meta: Meta, verify: bool) -> io::Result<bool> {
    fs::DirBuilder::new().mode(meta.mode & 0o777).create(path)?;
    if !verify || has_meta(path, &fs::symlink_metadata(path)?, meta) {
        return Ok(true);
    }
    fs::remove_dir(path)?;
    Ok(false)
}

/// Creates the new directory `path` with `meta`: its mode in `mkdir` when nothing else is to
/// be set, else private (0700), then owner and mode. When the owner or mode cannot be set (a
/// default ACL and `EPERM`), the directory is removed again: it never stays with other
/// metadata than asked.
pub fn create_staged_dir(path: &Path, meta: Meta, parent_setgid: bool) -> io::Result<()> {
    let fix = fix_for(meta, parent_setgid);
    let mode = if fix.chmod { 0o700 } else { meta.mode & 0o777 };
    fs::DirBuilder::new().mode(mode).create(path)?;
    // As for files: what the kernel gave is checked (a default ACL, a filesystem's own owner).
    let fix = if !fix.chown && !fix.chmod && !has_meta(path, &fs::symlink_metadata(path)?, meta) {
        Fix {
            chown: true,
            chmod: true,
        }
    } else {
        fix
    };
    let r = if fix.chown {
        set_owner_mode(path, meta)
    } else if fix.chmod {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
    } else {
        Ok(())
    };
    if r.is_err() {
        let _ = fs::remove_dir(path);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn me(mode: u32) -> Meta {
        Meta {
            mode,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    /// Whatever is left to set, the result is exactly the wanted mode and owner.
    #[test]
    fn staged_entries_get_exactly_their_meta() {
        let t = tempfile::tempdir().unwrap();
        let umask = ids().umask;
        for (i, mode) in [0o644, 0o600, 0o755, 0o4755, 0o1777, 0o666, 0o640]
            .into_iter()
            .enumerate()
        {
            let m = me(mode);
            let fix = fix_for(m, false);
            assert!(!fix.chown);
            assert_eq!(
                fix.chmod,
                mode & !0o777 != 0 || mode & umask != 0,
                "{mode:o}"
            );
            let p = t.path().join(format!("f{i}"));
            let (f, fix) = create_staged_file(&p, m, false, true).unwrap();
            finish_staged_file(&f, m, fix).unwrap();
            let md = fs::metadata(&p).unwrap();
            assert_eq!(md.mode() & 0o7777, mode, "file {mode:o}");
            assert_eq!((md.uid(), md.gid()), (m.uid, m.gid));
            let d = t.path().join(format!("d{i}"));
            create_staged_dir(&d, m, false).unwrap();
            assert_eq!(
                fs::metadata(&d).unwrap().mode() & 0o7777,
                mode,
                "dir {mode:o}"
            );
            // Under a setgid parent the owner is always set explicitly.
            assert!(fix_for(m, true).chown && fix_for(m, true).chmod);
        }
        // An existing entry is never reused.
        assert!(create_staged_file(&t.path().join("f0"), me(0o644), false, true).is_err());
        assert!(create_staged_dir(&t.path().join("d0"), me(0o755), false).is_err());
    }

    /// A default ACL on the parent replaces the umask (`d:o::---` makes `open(0644)` give
    /// 0640): the created entry is checked and given its mode explicitly.
    #[test]
    fn a_default_acl_does_not_change_the_wanted_mode() {
        // On the repository's filesystem (the test machine's /tmp may lack ACLs).
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        fs::create_dir_all(&base).unwrap();
        let t = tempfile::tempdir_in(&base).unwrap();
        let ok = std::process::Command::new("setfacl")
            .args(["-d", "-m", "o::---"])
            .arg(t.path())
            .status()
            .expect("setfacl (package acl; scripts/test installs it)");
        assert!(ok.success(), "setfacl -d on {}", t.path().display());
        let (f, fix) = create_staged_file(&t.path().join("f"), me(0o644), false, true).unwrap();
        finish_staged_file(&f, me(0o644), fix).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o7777, 0o644);
        create_staged_dir(&t.path().join("d"), me(0o755), false).unwrap();
        assert_eq!(
            fs::metadata(t.path().join("d")).unwrap().mode() & 0o7777,
            0o755
        );
    }
}
