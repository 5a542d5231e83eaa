//! Directory source: reads a drive tree from a host directory (seed directories, image builders,
//! tests). Read-only and bounded; symlinks inside the tree are reported, never followed.

use std::path::Path;

use super::{unsafe_component, DriveFiles, LimitKind, Limits, MediaError, Skipped};

/// Reads every regular file below `root` into `DriveFiles`.
pub fn read_dir_tree(root: &Path, limits: &Limits) -> Result<DriveFiles, MediaError> {
    let device = root.display().to_string();
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
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                check_size(&device, &path, len, total, limits)?;
                let data = std::fs::read(entry.path()).map_err(|e| MediaError::Io {
                    device: format!("{device} ({path})"),
                    source: e,
                })?;
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
