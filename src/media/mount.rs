//! Mount mode (`--mount`): the comparison path to the user-space readers. Mounts a device
//! read-only with `nosuid,nodev,noexec` on a private temporary mount point (a fresh 0700
//! directory, propagation private), reads it through the directory reader (files above the
//! streaming threshold kept open, not read), then detaches the mount (`MNT_DETACH`) and removes
//! the mount point — on every path, errors included (a guard does it on drop). The kernel keeps
//! the detached filesystem only while those open files hold it, and frees it with the last.
//! Never mounts anything writable, never leaves a visible mount behind, never follows a symlink
//! out of it.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{dir, DriveFiles, Limits, MediaError};

/// Where mount points are created when the caller does not say: `/run/primer` (tmpfs, root
/// only) when `/run` exists, else the temporary directory.
pub fn default_base() -> PathBuf {
    if Path::new("/run").is_dir() {
        PathBuf::from("/run/primer")
    } else {
        std::env::temp_dir()
    }
}

/// A mount point that detaches its mount and is removed when dropped.
struct MountPoint {
    dir: PathBuf,
    mounted: bool,
}

impl MountPoint {
    fn create(base: &Path) -> std::io::Result<MountPoint> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(base)?;
        // A fresh name each time: `create` (not `recursive`) fails if it exists, so a planted
        // directory or symlink is never used.
        for i in 0..100u32 {
            let dir = base.join(format!("mnt.{}.{i}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    return Ok(MountPoint {
                        dir,
                        mounted: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free mount point name"))
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        // Detached, not unmounted: the large files read are still open on it (a plain unmount
        // would be refused as busy). Nothing open (an error path, a drive of small files): the
        // filesystem goes at once, as with a plain unmount. Either way no one can reach it by a
        // path from here on, and the mount point is free to remove.
        if self.mounted {
            if let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH) {
                tracing::error!("{}: cannot detach: {e}", self.dir.display());
                return;
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!("{}: cannot remove mount point: {e}", self.dir.display());
        }
    }
}

/// Mounts `device` (filesystem type `fstype`) read-only under `base`, reads every file with
/// `limits` (a large file kept open, left in place: [`dir::read_dir_tree_shared_as`]), detaches
/// the mount and removes the mount point. The result carries `device` as its name,
/// `fstype` and `label` (the kernel does not report the label; the probe's is used).
pub fn read_mounted(
    device: &Path,
    fstype: &str,
    label: Option<String>,
    base: &Path,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    let name = device.display().to_string();
    let fail = |what: &str, e: &dyn std::fmt::Display| MediaError::Mount {
        device: name.clone(),
        detail: format!("{what}: {e}"),
    };
    let mut mp = MountPoint::create(base).map_err(|e| fail("mount point", &e))?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(device), &mp.dir, Some(fstype), flags, None::<&str>)
        .map_err(|e| fail(&format!("mount -t {fstype} -o ro,nosuid,nodev,noexec"), &e))?;
    mp.mounted = true;
    // Keep the mount out of other mount namespaces (a shared /run would propagate it).
    if let Err(e) = mount(
        None::<&str>,
        &mp.dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        tracing::debug!("{}: cannot make private: {e}", mp.dir.display());
    }
    tracing::debug!(device = %name, fstype, mount_point = %mp.dir.display(), "mounted read-only");
    // Named for the device, not the temporary directory (errors, and the large files' reads
    // at write time, when the directory is gone).
    let mut files = dir::read_dir_tree_shared_as(&mp.dir, &name, limits).map_err(|e| match e {
        e @ MediaError::Limit { .. } => e,
        other => fail("reading the mounted tree", &other),
    })?;
    drop(mp);
    files.device = name.clone();
    files.fstype = fstype.to_string();
    files.label = label;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_point_removed_when_mount_fails() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("mnt");
        let e = read_mounted(
            &t.path().join("no-such-device"),
            "iso9660",
            None,
            &base,
            &Limits::default(),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("no-such-device") && s.contains("mount"), "{s}");
        assert_eq!(
            std::fs::read_dir(&base).unwrap().count(),
            0,
            "mount point left behind"
        );
    }

    #[test]
    fn mount_points_are_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let a = MountPoint::create(t.path()).unwrap();
        let b = MountPoint::create(t.path()).unwrap();
        assert_ne!(a.dir, b.dir);
        let mode = std::fs::metadata(&a.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (da, db) = (a.dir.clone(), b.dir.clone());
        drop(a);
        drop(b);
        assert!(!da.exists() && !db.exists());
    }
}
