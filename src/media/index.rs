//! Lookup index of a drive's file paths: a tree of directory names with exact and case-folded
//! maps per directory, built once per drive, so each lookup costs O(components × log n) instead
//! of a scan of every path. Pure; it never reads the device and never changes `DriveFiles`.
//!
//! A drive may hold 10,000 entries and its metadata may name a file per entry (OpenStack
//! `files`, CloudStack metadata): scanning every path per lookup made planning quadratic.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{level1_name, strip_version};

/// One directory of the drive.
#[derive(Debug, Default)]
struct Dir {
    /// Subdirectories by stored name -> node.
    dirs: BTreeMap<String, usize>,
    /// Regular files by stored name -> stored full path.
    files: BTreeMap<String, String>,
    /// Subdirectories by `;N`-stripped name, and by that name ASCII-lowercased (first stored
    /// name in sorted order wins a tie).
    dirs_exact: BTreeMap<String, usize>,
    dirs_folded: BTreeMap<String, usize>,
    /// Files likewise, to their stored full path.
    files_exact: BTreeMap<String, String>,
    files_folded: BTreeMap<String, String>,
}

/// The index of one `files` map.
#[derive(Debug, Default)]
pub(super) struct Index {
    nodes: Vec<Dir>,
    /// What it was built from (count, first and last path): a changed map is re-indexed.
    len: usize,
    first: Option<String>,
    last: Option<String>,
}

/// Picks one entry of a directory for a wanted name: exact (ignoring `;N`), else
/// case-insensitive, else the 8.3 level-1 form a producer gives the name.
fn pick<'a, V>(
    exact: &'a BTreeMap<String, V>,
    folded: &'a BTreeMap<String, V>,
    wanted: &str,
    is_dir: bool,
) -> Option<&'a V> {
    exact
        .get(wanted)
        .or_else(|| folded.get(&wanted.to_ascii_lowercase()))
        .or_else(|| folded.get(&level1_name(wanted, is_dir).to_ascii_lowercase()))
}

impl Index {
    fn build(files: &BTreeMap<String, crate::model::Bytes>) -> Index {
        let mut nodes = vec![Dir::default()];
        for path in files.keys() {
            let mut parts: Vec<&str> = path.split('/').collect();
            let Some(name) = parts.pop() else { continue };
            let mut at = 0;
            for d in parts {
                at = match nodes[at].dirs.get(d) {
                    Some(&n) => n,
                    None => {
                        nodes.push(Dir::default());
                        let n = nodes.len() - 1;
                        nodes[at].dirs.insert(d.to_string(), n);
                        n
                    }
                };
            }
            nodes[at].files.insert(name.to_string(), path.clone());
        }
        for node in &mut nodes {
            for (name, &n) in &node.dirs {
                let plain = strip_version(name);
                node.dirs_exact.entry(plain.to_string()).or_insert(n);
                node.dirs_folded
                    .entry(plain.to_ascii_lowercase())
                    .or_insert(n);
            }
            for (name, path) in &node.files {
                let plain = strip_version(name);
                node.files_exact
                    .entry(plain.to_string())
                    .or_insert_with(|| path.clone());
                node.files_folded
                    .entry(plain.to_ascii_lowercase())
                    .or_insert_with(|| path.clone());
            }
        }
        Index {
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
            at = *pick(&d.dirs_exact, &d.dirs_folded, w, true)?;
        }
        Some(at)
    }

    /// The stored path of the file the components name.
    pub(super) fn resolve(&self, wanted: &[&str]) -> Option<String> {
        let (name, dirs) = wanted.split_last()?;
        let d = &self.nodes[self.dir(dirs)?];
        pick(&d.files_exact, &d.files_folded, name, false).cloned()
    }

    /// The names (`;N` stripped) of the subdirectories of the directory the components name.
    pub(super) fn subdirs(&self, wanted: &[&str]) -> Vec<String> {
        self.dir(wanted).map_or_else(Vec::new, |n| {
            self.nodes[n]
                .dirs
                .keys()
                .map(|k| strip_version(k).to_string())
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
