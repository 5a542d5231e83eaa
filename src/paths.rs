//! Path safety shared by every layer: clean relative paths, resolution of a path inside a
//! target root (no escape through `..`, absolute paths or symlinks), and the names of primer's
//! temporary files. A leaf: it reads link targets and metadata but never writes, and imports
//! nothing of primer.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// Most symlinks followed while resolving one path (as the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Resolves `rel` (a `/`-separated path meant relative to `root`; a leading `/` is allowed)
/// to a host path inside `root`, as if `root` were `/`: `..` stops at the root, and symlinks,
/// absolute or relative, are followed but re-rooted, so nothing resolves outside `root`.
/// The last component may be missing (it is about to be created); missing middle components
/// are kept as they are.
pub fn resolve_in_root(root: &Path, rel: &str) -> io::Result<PathBuf> {
    Resolver::new(root).resolve(rel)
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

/// What one lookup (`lstat`) inside the root found at a host path: a memo entry of a
/// [`Resolver`]. Symlinks are never entries: a path through one is read again every time, so a
/// link that appears or changes is always seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A real directory; `setgid`: new entries in it may not get primer's own group without a
    /// `chown` — the directory is setgid, or its group is not primer's (a filesystem mounted
    /// with `grpid`/`bsdgroups` gives new entries their directory's group, setgid or not);
    /// `fresh`: the memo's owner made it (empty) in this run and put every entry it holds,
    /// so a name it does not know there is missing without a lookup (see `forget`).
    Dir { setgid: bool, fresh: bool },
    /// Something other than a directory or a symlink (a regular file, a device...).
    Other,
    /// Nothing there.
    Missing,
}

impl Kind {
    /// Whether new entries here take the directory's group (unknown counts as yes: the
    /// caller then sets the owner explicitly).
    pub(crate) fn setgid(self) -> bool {
        matches!(self, Kind::Dir { setgid: true, .. })
    }
}

/// What an uncached lookup found: a memo entry, or a symlink (never memoised).
enum Entry {
    Kind(Kind),
    Symlink,
}

/// Most memo entries a resolver keeps; past it the memo starts again empty (memory stays
/// bounded whatever the drive; only lookups are repeated).
const MAX_MEMO: usize = 1 << 16;

/// Resolution inside one root with a memo of what each component's lookup found, so a run
/// that resolves many paths below the same directories (`etc` alone about twenty times, the
/// missing `usr` or `sys` of a bare image again and again) looks each one up once. Only
/// directories, missing entries and other non-links are remembered, never symlinks (see
/// [`Kind`]); a caller that changes the tree keeps the memo true (`set`, `forget`): the writer
/// records the directories it creates, the files it renames into place and removes. The
/// read-only host facts share one resolver for their whole pass, and a run hands that resolver
/// on to its writers (a clone shares the memo): the writer then makes no lookup the facts
/// already made.
#[derive(Clone)]
pub struct Resolver {
    root: PathBuf,
    /// Keyed by the path's bytes, not by `Path`: `Path`'s hash and equality walk components
    /// (a quarter of a first run's hashing time went there), and every key here is built the
    /// same way from `root` (components pushed one by one), so equal paths are equal bytes.
    memo: Rc<RefCell<HashMap<OsString, Kind>>>,
    /// Whether a directory hands its group down to new entries (`Kind::Dir::setgid`): the
    /// platform's rule (mode bits and owner are OS API, which this leaf does not use).
    hands_group: fn(&fs::Metadata) -> bool,
}

impl Resolver {
    /// A resolver whose directories all count as handing their group down (the safe answer
    /// for a caller that does not create entries).
    pub fn new(root: &Path) -> Resolver {
        Resolver::with_group_rule(root, |_| true)
    }

    /// A resolver that tells directories handing their group down by `hands_group` (the
    /// writer passes the platform's rule, so it can skip `chown` where the result is right).
    pub fn with_group_rule(root: &Path, hands_group: fn(&fs::Metadata) -> bool) -> Resolver {
        Resolver {
            root: root.to_path_buf(),
            memo: Rc::new(RefCell::new(HashMap::new())),
            hands_group,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// [`resolve_in_root`] through the memo.
    pub fn resolve(&self, rel: &str) -> io::Result<PathBuf> {
        self.resolve_found(rel).map(|(p, _)| p)
    }

    /// What is at `host` (a resolved path inside the root), not following a final symlink:
    /// `None` for a symlink or a failed lookup. From the memo when it knows.
    pub(crate) fn kind(&self, host: &Path) -> Option<Kind> {
        if let Some(k) = self.known(host) {
            return Some(k);
        }
        match self.look(host) {
            Ok(Entry::Kind(k)) => Some(k),
            _ => None,
        }
    }

    /// Records what is now at `host` (the caller just made it so).
    pub(crate) fn set(&self, host: &Path, kind: Kind) {
        let mut memo = self.memo.borrow_mut();
        if memo.len() >= MAX_MEMO {
            memo.clear();
        }
        memo.insert(host.as_os_str().to_os_string(), kind);
    }

    /// Forgets what was learnt of `host` (changed outside the memo's knowledge); its
    /// directory is no longer one whose every entry the memo knows.
    pub(crate) fn forget(&self, host: &Path) {
        let mut memo = self.memo.borrow_mut();
        memo.remove(host.as_os_str());
        if let Some(Kind::Dir { fresh, .. }) =
            host.parent().and_then(|p| memo.get_mut(p.as_os_str()))
        {
            *fresh = false;
        }
    }

    /// What is known of `host` without a lookup: its memo entry, or missing when its
    /// directory is one the memo's owner made in this run (`Kind::Dir::fresh`) or is missing
    /// itself (nothing is below a missing directory, as `resolve_found` takes it).
    fn known(&self, host: &Path) -> Option<Kind> {
        let memo = self.memo.borrow();
        memo.get(host.as_os_str()).copied().or_else(|| {
            match host.parent().and_then(|p| memo.get(p.as_os_str())) {
                Some(Kind::Dir { fresh: true, .. } | Kind::Missing) => Some(Kind::Missing),
                _ => None,
            }
        })
    }

    /// What the memo holds of `host`, without any lookup (`None`: it does not know). For
    /// decisions that must not rest on a lookup through a path resolution did not check.
    pub(crate) fn cached(&self, host: &Path) -> Option<Kind> {
        self.known(host)
    }

    /// Forgets everything (the tree may have changed anywhere: a script ran).
    pub(crate) fn forget_all(&self) {
        self.memo.borrow_mut().clear();
    }

    /// One uncached `lstat` of `host`, memoised unless a symlink or a failure other than
    /// "not found".
    fn look(&self, host: &Path) -> io::Result<Entry> {
        let kind = match fs::symlink_metadata(host) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Entry::Symlink),
            Ok(m) if m.is_dir() => Kind::Dir {
                setgid: (self.hands_group)(&m),
                fresh: false,
            },
            Ok(_) => Kind::Other,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Kind::Missing,
            Err(e) => return Err(e),
        };
        self.set(host, kind);
        Ok(Entry::Kind(kind))
    }

    /// `resolve`, also saying what the last component is.
    pub(crate) fn resolve_found(&self, rel: &str) -> io::Result<(PathBuf, Found)> {
        let root = &self.root;
        let mut found = Found::Unknown;
        // Components still to resolve, last first (link targets are pushed as owned strings).
        let mut pending: Vec<Cow<str>> = rel
            .split('/')
            .rev()
            .filter(|c| !c.is_empty())
            .map(Cow::Borrowed)
            .collect();
        let mut resolved: Vec<Cow<str>> = Vec::new();
        // `root` joined with `resolved`, kept in step (rebuilt only after a `..` or a link).
        let mut cur = root.to_path_buf();
        let mut hops = 0;
        // Where a component was missing: nothing below it exists, so what follows is joined as
        // it is without a failing lookup per component, until a `..` climbs back above it (from
        // there on, components are looked at again: one may be a symlink).
        let mut missing_at: Option<usize> = None;
        while let Some(comp) = pending.pop() {
            match &*comp {
                "." => continue,
                ".." => {
                    found = Found::Unknown;
                    if resolved.pop().is_some() {
                        cur = join(root, &resolved);
                    }
                    if missing_at.is_some_and(|at| resolved.len() <= at) {
                        missing_at = None;
                    }
                    continue;
                }
                _ => {}
            }
            cur.push(&*comp);
            if missing_at.is_some() {
                found = Found::Missing;
                resolved.push(comp);
                continue;
            }
            let entry = match self.known(&cur) {
                Some(k) => Ok(Entry::Kind(k)),
                None => self.look(&cur),
            };
            match entry {
                Ok(Entry::Symlink) => {
                    found = Found::Unknown;
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(io::Error::other(format!(
                            "{}: too many levels of symbolic links",
                            cur.display()
                        )));
                    }
                    let target = fs::read_link(&cur)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", cur.display())))?;
                    let (absolute, more) = link_target(&target)?;
                    if absolute {
                        resolved.clear();
                    }
                    cur = join(root, &resolved);
                    pending.extend(more.into_iter().rev().map(Cow::Owned));
                }
                Ok(Entry::Kind(k)) => {
                    found = match k {
                        Kind::Dir { .. } => Found::Dir,
                        Kind::Other => Found::Other,
                        Kind::Missing => {
                            missing_at = Some(resolved.len());
                            Found::Missing
                        }
                    };
                    resolved.push(comp);
                }
                Err(_) => {
                    found = Found::Unknown;
                    resolved.push(comp);
                }
            }
        }
        Ok((cur, found))
    }
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

fn join(root: &Path, comps: &[Cow<str>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(&**c);
    }
    p
}

/// A relative path is clean when it names something below the root without `..`.
///
/// On Unix by bytes, with the answer `Path::components` gives (the reference below): empty
/// components and `.` after the first are skipped there, a leading `.` is `CurDir`, `..`
/// anywhere is `ParentDir`, and `/` is the only separator. Every input path of the re-run fast
/// path is checked (issue 15).
#[cfg(unix)]
pub fn is_clean_relative(rel: &str) -> bool {
    !rel.is_empty() && rel != "." && !rel.starts_with("./") && rel.split('/').all(|c| c != "..")
}

/// A relative path is clean when it names something below the root without `..`.
#[cfg(not(unix))]
pub fn is_clean_relative(rel: &str) -> bool {
    is_clean_relative_by_components(rel)
}

/// [`is_clean_relative`] by `Path::components`: the reference (and the rule off Unix, where a
/// prefix and a backslash count too).
#[cfg_attr(unix, allow(dead_code))]
fn is_clean_relative_by_components(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::RootDir))
}

/// Whether a directory entry is one of primer's temporary files (`.NAME.primer-tmp.PID.SEQ`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".primer-tmp.")
}

/// Whether `name` is exactly a temporary name primer gives beside `target`
/// (`.TARGET.primer-tmp.PID.SEQ`, digits only): the one pattern a whole temporary tree (the
/// local copy being built, or the old one it replaced) is removed by.
pub fn is_temp_name_of(name: &str, target: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(target))
        .and_then(|n| n.strip_prefix(".primer-tmp."))
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(pid, seq)| digits(pid) && digits(seq))
}

/// The temporary name primer writes beside `name` before renaming it in place (see
/// `is_temp_name`): `.NAME.primer-tmp.PID.SEQ`.
pub fn temp_name(name: &str, pid: u32, seq: u64) -> String {
    format!(".{name}.primer-tmp.{pid}.{seq}")
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// The byte check answers as `Path::components` does.
    #[test]
    fn clean_relative_by_bytes_is_by_components() {
        for p in [
            "", ".", "./", "./a", ".//a", "a/.", "a/./b", "a//b", "/", "//", "/a", "/./a", "..",
            "../a", "a/..", "a/../b", "a/..b", "..a", "...", "a/.../b", ".a", "a/", "a\\..\\b",
            " ", "a/ ..", "a/.. ",
        ] {
            assert_eq!(
                is_clean_relative(p),
                is_clean_relative_by_components(p),
                "{p:?}"
            );
        }
    }
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

    /// A clone shares the memo (the run hands the facts' resolver on to its writer): what one
    /// looked up or learnt, the other knows without a lookup; forgetting is shared too.
    #[test]
    fn clones_share_what_was_looked_up() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("etc")).unwrap();
        let facts = Resolver::new(root);
        let writer = facts.clone();
        assert_eq!(writer.cached(&root.join("etc")), None);
        assert_eq!(
            facts.resolve_found("etc/hostname").unwrap().1,
            Found::Missing
        );
        assert!(matches!(
            writer.cached(&root.join("etc")),
            Some(Kind::Dir { .. })
        ));
        assert_eq!(
            writer.cached(&root.join("etc/hostname")),
            Some(Kind::Missing)
        );
        writer.forget_all();
        assert_eq!(facts.cached(&root.join("etc")), None);
    }

    /// The memo remembers directories and missing entries (one lookup for a missing top-level
    /// directory, none below it), never symlinks: a link changed between two resolutions is
    /// followed to its new target, still re-rooted; what the caller changes it forgets.
    #[test]
    fn the_memo_never_holds_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::create_dir(root.join("srv")).unwrap();
        symlink("/etc", root.join("l")).unwrap();
        // (`new` counts every directory as handing its group down; a rule says otherwise.)
        assert_eq!(
            Resolver::new(root).kind(&root.join("etc")),
            Some(Kind::Dir {
                setgid: true,
                fresh: false
            })
        );
        let r = Resolver::with_group_rule(root, |_| false);
        assert_eq!(r.resolve("l/ssh/x").unwrap(), root.join("etc/ssh/x"));
        assert_eq!(
            r.kind(&root.join("etc")),
            Some(Kind::Dir {
                setgid: false,
                fresh: false
            })
        );
        assert!(!r.memo.borrow().contains_key(root.join("l").as_os_str()));
        fs::remove_file(root.join("l")).unwrap();
        symlink("../../srv", root.join("l")).unwrap();
        assert_eq!(r.resolve("l/x").unwrap(), root.join("srv/x"));
        // A missing directory: looked up once, nothing below it.
        assert_eq!(
            r.resolve_found("usr/sbin/netplan").unwrap(),
            (root.join("usr/sbin/netplan"), Found::Missing)
        );
        assert_eq!(
            r.memo.borrow().get(root.join("usr").as_os_str()),
            Some(&Kind::Missing)
        );
        assert!(!r
            .memo
            .borrow()
            .contains_key(root.join("usr/sbin").as_os_str()));
        // Below it, an entry is missing without a lookup too.
        assert_eq!(r.cached(&root.join("usr/sbin")), Some(Kind::Missing));
        // Created (or replaced by a link) behind the memo's back: seen once forgotten.
        symlink("/srv", root.join("usr")).unwrap();
        assert_eq!(r.resolve("usr/x").unwrap(), root.join("usr/x"));
        r.forget(&root.join("usr"));
        assert_eq!(r.resolve("usr/x").unwrap(), root.join("srv/x"));
        r.forget_all();
        assert!(r.memo.borrow().is_empty());
        // A directory the memo's owner made knows its entries: a name it does not know there
        // is missing without a lookup, until something else is said to have changed in it.
        fs::create_dir(root.join("new")).unwrap();
        r.set(
            &root.join("new"),
            Kind::Dir {
                setgid: false,
                fresh: true,
            },
        );
        symlink("/srv", root.join("new/l")).unwrap();
        assert_eq!(r.kind(&root.join("new/l")), Some(Kind::Missing));
        r.forget(&root.join("new/l"));
        assert_eq!(r.kind(&root.join("new/l")), None);
        assert_eq!(r.resolve("new/l/z").unwrap(), root.join("srv/z"));
        // `..` and absolute links clamp at the root through the memo too.
        assert_eq!(r.resolve("etc/../../../l/y").unwrap(), root.join("srv/y"));
        assert_eq!(
            r.resolve_found("etc/ssh").unwrap(),
            (root.join("etc/ssh"), Found::Dir)
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
