//! Path safety shared by every layer: clean relative paths, resolution of a path inside a
//! target root (no escape through `..`, absolute paths or symlinks), and the names of primer's
//! temporary files. A leaf: it reads link targets and metadata but never writes, and imports
//! nothing of primer.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (as the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Resolves `rel` (a `/`-separated path meant relative to `root`; a leading `/` is allowed)
/// to a host path inside `root`, as if `root` were `/`: `..` stops at the root, and symlinks,
/// absolute or relative, are followed but re-rooted, so nothing resolves outside `root`.
/// The last component may be missing (it is about to be created); missing middle components
/// are kept as they are.
pub fn resolve_in_root(root: &Path, rel: &str) -> io::Result<PathBuf> {
    resolve_cached(root, rel, &HashSet::new())
}

/// `resolve_in_root`, skipping the `lstat` of directories already known to be real directories
/// (not symlinks) inside the root: a `Writer` resolves many paths below the same parents.
pub(crate) fn resolve_cached(
    root: &Path,
    rel: &str,
    known_dirs: &HashSet<PathBuf>,
) -> io::Result<PathBuf> {
    resolve_found(root, rel, known_dirs).map(|(p, _)| p)
}

/// What resolution learnt of the resolved path's last component, so a caller need not look
/// it up again (the writer checks that a file's target is not a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// It does not exist.
    Missing,
    /// A real directory.
    Dir,
    /// Something other than a directory or a symlink.
    Other,
    /// Not looked up (the root itself, after `..`, or the lookup failed otherwise).
    Unknown,
}

/// `resolve_cached`, also saying what the last component is.
pub(crate) fn resolve_found(
    root: &Path,
    rel: &str,
    known_dirs: &HashSet<PathBuf>,
) -> io::Result<(PathBuf, Found)> {
    let mut found = Found::Unknown;
    let mut pending: Vec<String> = split(rel);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    // Where a component was missing: nothing below it exists, so what follows is joined as it
    // is without a failing `lstat` per component, until a `..` climbs back above it (from there
    // on, components are looked at again: one may be a symlink).
    let mut missing_at: Option<usize> = None;
    while let Some(comp) = pending.pop() {
        match comp.as_str() {
            "" | "." => continue,
            ".." => {
                found = Found::Unknown;
                resolved.pop();
                if missing_at.is_some_and(|at| resolved.len() <= at) {
                    missing_at = None;
                }
                continue;
            }
            _ => {}
        }
        if missing_at.is_some() {
            found = Found::Missing;
            resolved.push(comp);
            continue;
        }
        let candidate = join(root, &resolved).join(&comp);
        if known_dirs.contains(&candidate) {
            found = Found::Dir;
            resolved.push(comp);
            continue;
        }
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                found = Found::Unknown;
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "{}: too many levels of symbolic links",
                        candidate.display()
                    )));
                }
                let target = fs::read_link(&candidate).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}", candidate.display()))
                })?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = split(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(m) => {
                found = if m.is_dir() { Found::Dir } else { Found::Other };
                resolved.push(comp);
            }
            Err(e) => {
                found = Found::Unknown;
                if e.kind() == io::ErrorKind::NotFound {
                    found = Found::Missing;
                    missing_at = Some(resolved.len());
                }
                resolved.push(comp);
            }
        }
    }
    Ok((join(root, &resolved), found))
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

/// Whether a directory entry is one of primer's temporary files (`.NAME.primer-tmp.PID.SEQ`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".primer-tmp.")
}

/// The temporary name primer writes beside `name` before renaming it in place (see
/// `is_temp_name`): `.NAME.primer-tmp.PID.SEQ`.
pub fn temp_name(name: &str, pid: u32, seq: u64) -> String {
    format!(".{name}.primer-tmp.{pid}.{seq}")
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Below a missing component nothing is looked up, but a `..` that climbs back above it
    /// looks again: a symlink there is still re-rooted.
    #[test]
    fn missing_components_and_climbing_back() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("etc")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        assert_eq!(
            resolve_in_root(root, "no/such/dir/file").unwrap(),
            root.join("no/such/dir/file")
        );
        assert_eq!(
            resolve_in_root(root, "no/such/../../abs/x").unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            resolve_in_root(root, "no/../abs/x").unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            resolve_in_root(root, "no/such/../abs").unwrap(),
            root.join("no/abs")
        );
    }
}
