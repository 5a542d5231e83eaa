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
                let (absolute, mut more) = link_target(&target)?;
                if absolute {
                    resolved.clear();
                }
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

/// A link's target as components to resolve, and whether it starts at the root (then it is
/// re-rooted under the target root). Linux: `/`-separated, absolute when it starts with `/`.
/// Windows: `\\` separates too, and a drive (`C:`), a `\\?\` or `\\??\` prefix or a leading
/// `\\` makes it absolute: a junction to `C:\ProgramData` inside an image resolves to the
/// image's `ProgramData`, never to the host's.
fn link_target(target: &Path) -> io::Result<(bool, Vec<String>)> {
    let t = target.to_string_lossy();
    if cfg!(windows) {
        windows_link_target(&t).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("link target {t:?} names a drive or stream inside the path"),
            )
        })
    } else {
        Ok((t.starts_with('/'), split(&t)))
    }
}

/// [`link_target`]'s Windows reading of `t` (pure, tested everywhere); `None` when a component
/// past the prefix still holds a `:` (a drive or an alternate stream `PathBuf::push` would
/// jump to).
fn windows_link_target(t: &str) -> Option<(bool, Vec<String>)> {
    let mut comps: Vec<String> = t
        .split(['/', '\\'])
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut absolute = t.starts_with(['/', '\\']);
    // `\\?\C:\x`, `\\??\C:\x` (junctions), `C:\x`, `C:x`: drop the prefix and the drive.
    if comps.first().is_some_and(|c| c == "?" || c == "??") {
        comps.remove(0);
        absolute = true;
    }
    if let Some(first) = comps.first_mut() {
        let b = first.as_bytes();
        if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
            absolute = true;
            let rest = first[2..].to_string();
            if rest.is_empty() {
                comps.remove(0);
            } else {
                *first = rest;
            }
        }
    }
    if comps.iter().any(|c| c.contains(':')) {
        return None;
    }
    Some((absolute, comps))
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

    #[test]
    fn windows_link_targets_are_re_rooted() {
        let w = |t: &str| windows_link_target(t);
        let v = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(w(r"C:\ProgramData"), Some((true, v(&["ProgramData"]))));
        assert_eq!(
            w(r"\??\C:\ProgramData\x"),
            Some((true, v(&["ProgramData", "x"])))
        );
        assert_eq!(w(r"\\?\D:\a"), Some((true, v(&["a"]))));
        assert_eq!(w(r"\Windows"), Some((true, v(&["Windows"]))));
        assert_eq!(
            w(r"..\..\Windows"),
            Some((false, v(&["..", "..", "Windows"])))
        );
        assert_eq!(w("a/b"), Some((false, v(&["a", "b"]))));
        assert_eq!(w(r"a\x:stream"), None);
        assert_eq!(w(r"\??\UNC\host\C:"), None);
    }
}
