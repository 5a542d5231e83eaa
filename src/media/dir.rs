//! Directory source: reads a drive tree from a host directory (seed directories, image builders,
//! tests, primer's own local copy). Read-only and bounded; symlinks inside the tree are
//! reported, never followed, and never opened through.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{unsafe_component, DriveFiles, LimitKind, Limits, MediaError, Skipped};
use crate::model::grammar::Esc;

/// Reads every regular file below `root` into `DriveFiles`, each held in memory (a tree that is
/// unmounted once read: mount mode).
pub fn read_dir_tree(root: &Path, limits: &Limits) -> Result<DriveFiles, MediaError> {
    walk(root, &root.display().to_string(), limits, false)
}

/// [`read_dir_tree`] for a tree that stays in place while the drive is used: a file above
/// [`STREAM_THRESHOLD`](super::STREAM_THRESHOLD) is not read into memory but kept open and
/// left in its file ([`crate::model::Bytes::on_device`]: hashed by streaming it once here,
/// streamed again with its digest re-checked where it is written), as an ISO9660 drive's large
/// files are left on the device. Peak memory then stays small whatever the tree's files weigh.
pub fn read_dir_tree_shared(root: &Path, limits: &Limits) -> Result<DriveFiles, MediaError> {
    walk(root, &root.display().to_string(), limits, true)
}

/// [`read_dir_tree_shared`] naming `device` (not `root`) in the result, its errors and its
/// large files: a mounted drive, whose mount point is gone once it is read (the large files are
/// kept by open descriptor, never by path, so they stay readable after a lazy unmount).
pub fn read_dir_tree_shared_as(
    root: &Path,
    device: &str,
    limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    walk(root, device, limits, true)
}

fn walk(
    root: &Path,
    device: &str,
    limits: &Limits,
    stream: bool,
) -> Result<DriveFiles, MediaError> {
    let device = device.to_string();
    let mut out = DriveFiles::new(device.clone(), "dir");
    let mut entries = 0usize;
    let mut total = 0u64;
    // Explicit stack instead of recursion: depth is bounded by `limits.max_depth`.
    let mut stack: Vec<(std::path::PathBuf, String, usize)> =
        vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let io = |e| MediaError::Io {
            device: format!("{device} ({})", dir.display()),
            source: e,
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MediaError::Io {
                device: device.clone(),
                source: e,
            })?;
        crate::sort::sort_by_key(&mut names, |e| e.file_name());
        for entry in names {
            entries += 1;
            if entries > limits.max_entries {
                return Err(MediaError::Limit {
                    device,
                    path: rel,
                    kind: LimitKind::Entries,
                    value: entries as u64,
                    limit: limits.max_entries as u64,
                });
            }
            let raw = entry.file_name();
            let name = raw.to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if let Some(reason) = unsafe_component(&name) {
                out.skipped.push(Skipped::new(&path, reason));
                continue;
            }
            let ft = entry.file_type().map_err(|e| MediaError::Io {
                device: device.clone(),
                source: e,
            })?;
            if ft.is_symlink() {
                let target = std::fs::read_link(entry.path())
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.symlinks.insert(path, target);
            } else if ft.is_dir() {
                if depth + 1 > limits.max_depth {
                    return Err(MediaError::Limit {
                        device,
                        path,
                        kind: LimitKind::Depth,
                        value: (depth + 1) as u64,
                        limit: limits.max_depth as u64,
                    });
                }
                stack.push((entry.path(), path, depth + 1));
            } else if ft.is_file() {
                let io = |e| MediaError::Io {
                    device: format!("{device} ({path})"),
                    source: e,
                };
                let mut file = open_regular(&entry.path()).map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                check_size(&device, &path, len, total, limits)?;
                if stream && len > super::STREAM_THRESHOLD {
                    // `check_size` bounds `len` by the file size limit: it fits a usize.
                    let dev: Arc<dyn crate::model::bytes::ReadAt> =
                        Arc::new(super::SharedDevice::new(file));
                    let name = format!("{device}: {}", Esc(&path));
                    let bytes =
                        crate::model::Bytes::on_device(dev, vec![(0, len)], len as usize, name)
                            .map_err(io)?;
                    total += len;
                    out.files.insert(path, bytes);
                    continue;
                }
                // Read at most one byte past the limit: a file that grew since `fstat` is
                // refused by the check below, never read whole.
                let mut data = Vec::with_capacity(len as usize);
                file.by_ref()
                    .take(limits.max_file_size.saturating_add(1))
                    .read_to_end(&mut data)
                    .map_err(io)?;
                // The file may have grown since stat: check what was actually read.
                check_size(&device, &path, data.len() as u64, total, limits)?;
                total += data.len() as u64;
                out.files.insert(path, data.into());
            } else {
                out.skipped.push(Skipped::new(
                    &path,
                    "not a regular file, directory or symlink",
                ));
            }
        }
    }
    Ok(out)
}

/// Opens a file the walk saw as regular without following a symlink put in its place since,
/// and checks it still is a regular file (a FIFO swapped in would block the read).
fn open_regular(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Checks one file's size and the running total against the limits.
pub(crate) fn check_size(
    device: &str,
    path: &str,
    len: u64,
    total_before: u64,
    limits: &Limits,
) -> Result<(), MediaError> {
    if len > limits.max_file_size {
        return Err(MediaError::Limit {
            device: device.to_string(),
            path: path.to_string(),
            kind: LimitKind::FileSize,
            value: len,
            limit: limits.max_file_size,
        });
    }
    if total_before + len > limits.max_total_bytes {
        return Err(MediaError::Limit {
            device: device.to_string(),
            path: path.to_string(),
            kind: LimitKind::TotalBytes,
            value: total_before + len,
            limit: limits.max_total_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Bytes;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn collect(b: &Bytes) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        b.for_each_chunk(&mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn a_large_file_stays_in_its_file_and_a_small_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = content((super::super::STREAM_THRESHOLD + 4097) as usize);
        std::fs::write(dir.path().join("big"), &big).unwrap();
        std::fs::write(dir.path().join("small"), b"small\n").unwrap();
        let files = read_dir_tree_shared(dir.path(), &Limits::default()).unwrap();
        let b = &files.files["big"];
        assert!(b.is_on_device());
        assert_eq!(b.len(), big.len());
        assert_eq!(b.sha256(), Bytes::from(big.clone()).sha256());
        assert_eq!(&*b.head(16).unwrap(), &big[..16]);
        assert_eq!(collect(b).unwrap(), big);
        assert!(!files.files["small"].is_on_device());
        assert_eq!(files.files["small"].as_slice(), b"small\n");
        // Mount mode reads the tree before unmounting it: everything held.
        let held = read_dir_tree(dir.path(), &Limits::default()).unwrap();
        assert!(!held.files["big"].is_on_device());
        assert_eq!(held.files["big"].as_slice(), &big[..]);
    }

    #[test]
    fn a_large_file_changed_after_the_read_fails_its_stream_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut big = content((super::super::STREAM_THRESHOLD * 2) as usize);
        let path = dir.path().join("user_data");
        std::fs::write(&path, &big).unwrap();
        let files = read_dir_tree_shared(dir.path(), &Limits::default()).unwrap();
        big[12345] ^= 1;
        std::fs::write(&path, &big).unwrap();
        let e = collect(&files.files["user_data"]).unwrap_err().to_string();
        assert!(e.contains("user_data"), "{e}");
    }

    #[test]
    fn file_limits_hold_for_streamed_files() {
        let dir = tempfile::tempdir().unwrap();
        let big = content((super::super::STREAM_THRESHOLD + 1) as usize);
        std::fs::write(dir.path().join("a"), &big).unwrap();
        std::fs::write(dir.path().join("b"), &big).unwrap();
        let limits = Limits {
            max_total_bytes: big.len() as u64 + 10,
            ..Limits::default()
        };
        match read_dir_tree_shared(dir.path(), &limits) {
            Err(MediaError::Limit {
                kind: LimitKind::TotalBytes,
                path,
                ..
            }) => assert_eq!(path, "b"),
            other => panic!("{other:?}"),
        }
    }

    /// A link in the tree (to a large file outside it, or `..`-ward) is listed with its target,
    /// never opened or streamed; a name with a newline is skipped, never a path.
    #[cfg(unix)]
    #[test]
    fn links_are_listed_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let big = content((super::super::STREAM_THRESHOLD + 1) as usize);
        std::fs::write(outside.path().join("secret"), &big).unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), tree.join("user_data")).unwrap();
        std::os::unix::fs::symlink("../../etc", tree.join("up")).unwrap();
        std::fs::write(tree.join("line\nbreak"), b"x").unwrap();
        let files = read_dir_tree_shared(&tree, &Limits::default()).unwrap();
        assert!(!files.files.contains_key("user_data"));
        assert_eq!(files.symlinks.len(), 2);
        assert_eq!(files.symlinks["up"], "../../etc");
        assert!(files.files.keys().all(|k| !k.contains('\n')));
        assert_eq!(files.skipped.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_skipped_not_read() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let files = read_dir_tree_shared(dir.path(), &Limits::default()).unwrap();
        assert!(files.files.is_empty());
        assert_eq!(files.skipped.len(), 1);
    }
}
