//! Lookup index of a drive's file paths: a tree of directory names with exact and case-folded
//! maps per directory, built once per drive, so each lookup costs O(components × log n) instead
//! of a scan of every path. Pure; it never reads the device and never changes `DriveFiles`.
//!
//! A drive may hold 10,000 entries and its metadata may name a file per entry (OpenStack
//! `files`, CloudStack metadata): scanning every path per lookup made planning quadratic.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{level1_name, strip_version};

/// One directory of the drive. Names are not copied per map: a file is its number in
/// [`Index::paths`] (its name is that path's last component), a subdirectory its position in
/// `dirs`; the lookup orders are those numbers sorted by the key they are found under. Why not
/// maps of owned names: three `BTreeMap<String, String>` per directory held six allocations per
/// file (1.5 MB of a 5,000-file drive's peak, live for the whole run).
#[derive(Debug, Default)]
struct Dir {
    /// Subdirectories: stored name and node, in stored-name order.
    dirs: Vec<(Box<str>, u32)>,
    /// Positions in `dirs` ordered by the `;N`-stripped name, and by that name ASCII-lowercased
    /// (stable sorts: among equal keys the first stored name comes first, and wins).
    dirs_exact: Vec<u32>,
    dirs_folded: Vec<u32>,
    /// Files (numbers in `Index::paths`) likewise.
    files_exact: Vec<u32>,
    files_folded: Vec<u32>,
}

/// The index of one `files` map.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Every file's stored full path, in `files` order.
    paths: Vec<Box<str>>,
    /// Where each path's `;N`-stripped name lies in it (start, end): the lookup key, found once
    /// rather than at every probe of a binary search.
    keys: Vec<(u32, u32)>,
    nodes: Vec<Dir>,
    /// What it was built from (count, first and last path): a changed map is re-indexed.
    len: usize,
    first: Option<String>,
    last: Option<String>,
}

/// `a` against `b` as their ASCII-lowercased bytes compare (a `String` map of lowercased keys'
/// order, without lowercasing into a new string).
fn cmp_folded(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// The first of `order` (sorted by `key` under `cmp`) whose key equals `wanted`.
fn find<'a>(
    order: &[u32],
    key: &dyn Fn(u32) -> &'a str,
    cmp: fn(&str, &str) -> Ordering,
    wanted: &str,
) -> Option<u32> {
    let i = order.partition_point(|&n| cmp(key(n), wanted) == Ordering::Less);
    order
        .get(i)
        .copied()
        .filter(|&n| cmp(key(n), wanted) == Ordering::Equal)
}

/// Picks one entry of a directory for a wanted name: exact (ignoring `;N`), else
/// case-insensitive, else the 8.3 level-1 form a producer gives the name.
fn pick<'a>(
    exact: &[u32],
    folded: &[u32],
    key: &dyn Fn(u32) -> &'a str,
    wanted: &str,
    is_dir: bool,
) -> Option<u32> {
    find(exact, key, str::cmp, wanted)
        .or_else(|| find(folded, key, cmp_folded, wanted))
        .or_else(|| find(folded, key, cmp_folded, &level1_name(wanted, is_dir)))
}

/// File `f`'s lookup key: its name without `;N`.
fn key_of<'a>(paths: &'a [Box<str>], keys: &[(u32, u32)], f: u32) -> &'a str {
    let (start, end) = keys[f as usize];
    paths[f as usize]
        .get(start as usize..end as usize)
        .unwrap_or_default()
}

/// The last component of a stored path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The positions of `keys` ordered by key exactly and case-folded (stable: equal keys keep their
/// order). Each key is computed once, not per comparison.
fn orders(keys: &[&str]) -> (Vec<u32>, Vec<u32>) {
    // A drive holds at most 10,000 entries (media::Limits): u32 numbers are ample.
    let mut exact: Vec<u32> = (0..keys.len() as u32).collect();
    let mut folded = exact.clone();
    crate::sort::sort_by(&mut exact, |&a, &b| keys[a as usize].cmp(keys[b as usize]));
    crate::sort::sort_by(&mut folded, |&a, &b| {
        cmp_folded(keys[a as usize], keys[b as usize])
    });
    (exact, folded)
}

impl Index {
    fn build(files: &BTreeMap<String, crate::model::Bytes>) -> Index {
        // Directories by their full stored path while building (node 0 is the root). Sibling
        // paths share their parent's prefix, so in this map's order each directory's
        // subdirectories come in stored-name order (`b.c/x` sorts before `b/x`, but `b` before
        // `b.c`).
        let mut dirs: BTreeMap<&str, usize> = BTreeMap::new();
        let mut parent: Vec<usize> = vec![0];
        let mut files_of: Vec<Vec<u32>> = vec![Vec::new()];
        let mut paths = Vec::with_capacity(files.len());
        let mut keys = Vec::with_capacity(files.len());
        for path in files.keys() {
            let mut at = 0;
            for (end, _) in path.match_indices('/') {
                let next = files_of.len();
                at = *dirs.entry(&path[..end]).or_insert_with(|| {
                    parent.push(at);
                    files_of.push(Vec::new());
                    next
                });
            }
            // A drive holds at most 10,000 entries (media::Limits): u32 numbers are ample.
            files_of[at].push(paths.len() as u32);
            let key = strip_version(file_name(path));
            // `key` is a slice of `path`: its offset and length (paths are far below 4 GiB).
            let start = key.as_ptr() as usize - path.as_ptr() as usize;
            keys.push((start as u32, (start + key.len()) as u32));
            paths.push(Box::<str>::from(path.as_str()));
        }
        let mut nodes: Vec<Dir> = (0..files_of.len()).map(|_| Dir::default()).collect();
        for (dir, n) in dirs {
            nodes[parent[n]]
                .dirs
                .push((file_name(dir).into(), n as u32));
        }
        for (node, files) in nodes.iter_mut().zip(files_of) {
            let subdirs = &node.dirs;
            (node.dirs_exact, node.dirs_folded) = orders(
                &subdirs
                    .iter()
                    .map(|(n, _)| strip_version(n))
                    .collect::<Vec<_>>(),
            );
            // A directory's files are in stored-name order already (same prefix, sorted paths).
            let key = |f: u32| key_of(&paths, &keys, f);
            let (exact, folded) = orders(&files.iter().map(|&f| key(f)).collect::<Vec<_>>());
            node.files_exact = exact.iter().map(|&i| files[i as usize]).collect();
            node.files_folded = folded.iter().map(|&i| files[i as usize]).collect();
        }
        Index {
            paths,
            keys,
            nodes,
            len: files.len(),
            first: files.keys().next().cloned(),
            last: files.keys().next_back().cloned(),
        }
    }

    fn fits(&self, files: &BTreeMap<String, crate::model::Bytes>) -> bool {
        self.len == files.len()
            && self.first.as_ref() == files.keys().next()
            && self.last.as_ref() == files.keys().next_back()
    }

    /// The directory node the components lead to.
    fn dir(&self, wanted: &[&str]) -> Option<usize> {
        let mut at = 0;
        for w in wanted {
            let d = &self.nodes[at];
            let key = |i: u32| strip_version(&d.dirs[i as usize].0);
            let i = pick(&d.dirs_exact, &d.dirs_folded, &key, w, true)?;
            at = d.dirs[i as usize].1 as usize;
        }
        Some(at)
    }

    /// The stored path of the file the components name.
    pub(super) fn resolve(&self, wanted: &[&str]) -> Option<&str> {
        let (name, dirs) = wanted.split_last()?;
        let d = &self.nodes[self.dir(dirs)?];
        let key = |f: u32| key_of(&self.paths, &self.keys, f);
        let f = pick(&d.files_exact, &d.files_folded, &key, name, false)?;
        Some(&self.paths[f as usize])
    }

    /// The names (`;N` stripped) of the subdirectories of the directory the components name.
    pub(super) fn subdirs(&self, wanted: &[&str]) -> Vec<String> {
        self.dir(wanted).map_or_else(Vec::new, |n| {
            self.nodes[n]
                .dirs
                .iter()
                .map(|(k, _)| strip_version(k).to_string())
                .collect()
        })
    }
}

/// The index of a `DriveFiles`, built on first use and rebuilt when `files` changed since.
/// Invisible to comparison, cloning and serialisation: it is derived data.
#[derive(Default)]
pub(super) struct Cache(Mutex<Option<Arc<Index>>>);

impl Cache {
    pub(super) fn get(&self, files: &BTreeMap<String, crate::model::Bytes>) -> Arc<Index> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(i) if i.fits(files) => i.clone(),
            _ => {
                let i = Arc::new(Index::build(files));
                *slot = Some(i.clone());
                i
            }
        }
    }
}

impl Clone for Cache {
    fn clone(&self) -> Self {
        Cache::default()
    }
}

impl PartialEq for Cache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Cache {}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule the index implements, as maps of owned keys (the index's earlier form): per
    /// directory, the first stored name (in sorted order) wins each exact and folded key.
    fn reference(names: &[String], wanted: &str) -> Option<String> {
        let mut exact = BTreeMap::new();
        let mut folded = BTreeMap::new();
        for n in names {
            let plain = strip_version(n);
            exact.entry(plain.to_string()).or_insert_with(|| n.clone());
            folded
                .entry(plain.to_ascii_lowercase())
                .or_insert_with(|| n.clone());
        }
        exact
            .get(wanted)
            .or_else(|| folded.get(&wanted.to_ascii_lowercase()))
            .or_else(|| folded.get(&level1_name(wanted, false).to_ascii_lowercase()))
            .cloned()
    }

    #[test]
    fn picks_as_maps_of_owned_keys_would() {
        // Names that collide exactly, by case, by `;N` and by their level-1 form.
        let stems = [
            "a",
            "A",
            "a.b",
            "A.B",
            "meta_data.json",
            "META_DAT.JSO",
            "user_data",
            "USER_DAT",
            "b~",
            "B_",
        ];
        let mut names: Vec<String> = Vec::new();
        for s in stems {
            for v in ["", ";1", ";2", "."] {
                names.push(format!("{s}{v}"));
            }
        }
        names.sort();
        names.dedup();
        let files: BTreeMap<String, crate::model::Bytes> = names
            .iter()
            .map(|n| (format!("d/{n}"), b"x".to_vec().into()))
            .collect();
        let index = Index::build(&files);
        for s in stems
            .iter()
            .chain(&["a.B", "META_DATA.JSON", "nothing", "User_Data", "b~;1"])
        {
            let got = index
                .resolve(&["D", s])
                .map(|p| p.trim_start_matches("d/").to_string());
            assert_eq!(got, reference(&names, s), "wanted {s}");
        }
    }
}
