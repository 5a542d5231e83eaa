//! Filesystem helpers under a target root: resolve paths inside the root (no escape through
//! `..`, absolute paths or symlinks) and write files atomically with explicit mode and owner.
//! The write helpers are the only code in primer that creates, replaces or removes files.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (as the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Resolves `rel` (a `/`-separated path meant relative to `root`; a leading `/` is allowed)
/// to a host path inside `root`, as if `root` were `/`: `..` stops at the root, and symlinks,
/// absolute or relative, are followed but re-rooted, so nothing resolves outside `root`.
/// The last component may be missing (it is about to be created); missing middle components
/// are kept as they are.
pub fn resolve_in_root(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let mut pending: Vec<String> = split(rel);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        match comp.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = join(root, &resolved).join(&comp);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "{}: too many levels of symbolic links",
                        candidate.display()
                    )));
                }
                let target = fs::read_link(&candidate)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = split(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(comp),
        }
    }
    Ok(join(root, &resolved))
}

fn split(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fn join(root: &Path, comps: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
    }
    p
}

/// A relative path is clean when it names something below the root without `..`.
pub fn is_clean_relative(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::RootDir))
}

/// Explicit ownership and permissions for a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Creates every missing directory of `rel_dir` (resolved inside the root first, so a symlinked
/// component leads to its re-rooted target) with `meta`. Existing directories are left as they are.
pub fn create_dirs(root: &Path, rel_dir: &str, meta: Meta) -> io::Result<PathBuf> {
    let host = resolve_in_root(root, rel_dir)?;
    // Every existing component of `host` is a real directory now (resolution followed the links);
    // what is missing is created one level at a time.
    let rel = host
        .strip_prefix(root)
        .map_err(io::Error::other)?
        .to_path_buf();
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{}: exists and is not a directory",
                    cur.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur)?;
                set_meta(&cur, meta)?;
                sync_parent(&cur)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(host)
}

/// Makes sure `rel_dir` exists with exactly `meta` (mode and owner), creating it if needed.
pub fn ensure_dir(root: &Path, rel_dir: &str, meta: Meta, parents: Meta) -> io::Result<()> {
    if let Some((parent, _)) = rel_dir.trim_end_matches('/').rsplit_once('/') {
        create_dirs(root, parent, parents)?;
    }
    let host = create_dirs(root, rel_dir, meta)?;
    set_meta(&host, meta)
}

/// Writes `content` to `rel` under `root` atomically: a temporary file in the same directory,
/// written, given `meta`, fsynced, renamed over the target, then the directory fsynced. A crash
/// leaves the old file or the new one, never a mix. Missing parents are created with `parents`.
pub fn write_atomic(
    root: &Path,
    rel: &str,
    content: &[u8],
    meta: Meta,
    parents: Meta,
) -> io::Result<()> {
    let target = resolve_in_root(root, rel)?;
    // Parents of the resolved target (a symlinked last component may point elsewhere in the root).
    if let Some(parent) = target.parent() {
        if let Ok(p) = parent.strip_prefix(root) {
            create_dirs(root, &p.to_string_lossy(), parents)?;
        }
    }
    if let Ok(m) = fs::symlink_metadata(&target) {
        if m.is_dir() {
            return Err(io::Error::other(format!(
                "{}: is a directory",
                target.display()
            )));
        }
    }
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::other("target has no parent"))?;
    let name = target
        .file_name()
        .unwrap_or(OsStr::new("file"))
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.primer-tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            // Created private; the final mode is set below before any content is visible.
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content)?;
        set_meta_file(&f, meta)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file under the root (never a directory), then fsyncs its directory.
pub fn remove_file(root: &Path, rel: &str) -> io::Result<()> {
    let target = resolve_in_root(root, rel)?;
    match fs::remove_file(&target) {
        Ok(()) => sync_parent(&target),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_meta(path: &Path, meta: Meta) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
}

fn set_meta_file(f: &File, meta: Meta) -> io::Result<()> {
    std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))?;
    f.set_permissions(fs::Permissions::from_mode(meta.mode))
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => sync_dir(p),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_stays_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("etc/up")).unwrap();
        symlink("/", root.join("etc/toroot")).unwrap();
        assert_eq!(
            resolve_in_root(root, "../../etc/hostname").unwrap(),
            root.join("etc/hostname")
        );
        assert_eq!(
            resolve_in_root(root, "/abs/hostname").unwrap(),
            root.join("etc/hostname")
        );
        assert_eq!(
            resolve_in_root(root, "etc/up/passwd").unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "etc/toroot/x").unwrap(),
            root.join("x")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, "loop/x").is_err());
    }

    #[test]
    fn atomic_write_modes_and_replace() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let m = Meta {
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        let d = Meta {
            mode: 0o700,
            uid: 0,
            gid: 0,
        };
        // Tests run as root in CI; as another user chown to 0 fails, so use our own ids.
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let m = Meta { uid, gid, ..m };
        let d = Meta { uid, gid, ..d };
        write_atomic(root, "var/lib/x/file", b"one", m, d).unwrap();
        write_atomic(root, "var/lib/x/file", b"two", m, d).unwrap();
        assert_eq!(fs::read(root.join("var/lib/x/file")).unwrap(), b"two");
        let mode = fs::metadata(root.join("var/lib/x"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let mode = fs::metadata(root.join("var/lib/x/file"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(root.join("var/lib/x")).unwrap().count(), 1);
        // A symlinked target directory pointing outside stays inside the root.
        symlink("/tmp", root.join("var/lib/out")).unwrap();
        write_atomic(root, "var/lib/out/f", b"x", m, d).unwrap();
        assert!(root.join("tmp/f").exists());
    }

    #[test]
    fn clean_relative() {
        assert!(is_clean_relative("etc/hostname"));
        assert!(!is_clean_relative("etc/../x"));
        assert!(!is_clean_relative(""));
    }
}
