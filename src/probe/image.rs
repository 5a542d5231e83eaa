//! Locating the config volume inside a source named on the command line (`--source`, `show`,
//! `plan`): a directory tree, a packed Ironic drive, a bare filesystem, or a partitioned image
//! whose partitions are matched and ranked with the probe's rules and trust policy. Reads only;
//! the media readers do the reading of the chosen volume.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use super::sig::Found;
use super::trust::DuplicateRule;
use super::Rules;
use crate::media::{
    dir, packed, part, read_fs_shared, source_kind, DriveFiles, Limits, MediaError, SourceKind,
};

/// Reads a source given on the command line: a directory tree, or a block device / image file
/// holding ISO9660 or FAT, or a partition table with a config partition inside (default
/// matching rules; duplicates refused).
pub fn read_source(path: &Path, limits: &Limits) -> Result<DriveFiles, MediaError> {
    read_source_with(path, limits, &Rules::default(), DuplicateRule::Refuse)
}

/// `read_source` with the operator's matching rules and duplicate rule. A device or image whose
/// start is not a filesystem is looked into: its partition table is read (the kernel may show
/// no partitions), each partition's signature matched like the probe does, and the best
/// candidate read through an offset reader.
pub fn read_source_with(
    path: &Path,
    limits: &Limits,
    rules: &Rules,
    duplicates: DuplicateRule,
) -> Result<DriveFiles, MediaError> {
    read_source_opened(path, limits, rules, duplicates, |p: &Path| {
        File::open(p).map(crate::media::pread::PosFile::new)
    })
}

/// [`read_source_with`], opening a device or image with `open`: the caller passes
/// `platform::open_device` (probe may not name the platform), which on Windows puts a raw
/// `\\.\X:` or `\\.\PhysicalDriveN` behind a sector-aligned reader (a CD-ROM or a 4Kn disk
/// refuses unaligned reads); `File::open` elsewhere.
pub fn read_source_opened<R, F>(
    path: &Path,
    limits: &Limits,
    rules: &Rules,
    duplicates: DuplicateRule,
    open: F,
) -> Result<DriveFiles, MediaError>
where
    R: Read + Seek + Send + 'static,
    F: FnOnce(&Path) -> std::io::Result<R>,
{
    let device = path.display().to_string();
    match source_kind(path)? {
        SourceKind::Directory => dir::read_dir_tree_shared(path, limits),
        kind @ (SourceKind::BlockDevice | SourceKind::ImageFile) => {
            // Ironic packed drives (gzip, gzip + base64) and a lone ovf-env.xml are files that
            // hold no filesystem: unpack them into a temporary file read as an image, or wrap
            // the XML (media::packed); anything else is an image. A block device is never one
            // (`read_special_file` reads regular files only): not asked, not stat'ed again.
            if kind == SourceKind::ImageFile {
                if let Some(d) = packed::read_special_file(path, &device, limits)? {
                    return Ok(d);
                }
            }
            let io = |e| MediaError::Io {
                device: device.clone(),
                source: e,
            };
            let mut file = open(path).map_err(io)?;
            // The signature names the filesystem: its reader is called directly, without
            // `read_fs` reading the same first sectors again to tell.
            match super::sig::read_signature(&mut file, &device) {
                Found::Fs(s) if s.fstype == "iso9660" => {
                    crate::media::iso9660::read_iso9660_shared(file, &device, limits)
                }
                Found::Fs(s) if s.fstype == "vfat" => {
                    crate::media::fat::read_fat_shared(file, &device, limits)
                }
                Found::Table => read_from_table(file, &device, limits, rules, duplicates),
                _ => read_fs_shared(file, &device, limits),
            }
        }
    }
}

/// Reads the config partition of a partitioned device or image (see `read_source_with`).
fn read_from_table<R: Read + Seek + Send + 'static>(
    mut file: R,
    device: &str,
    limits: &Limits,
    rules: &Rules,
    duplicates: DuplicateRule,
) -> Result<DriveFiles, MediaError> {
    use super::{match_signature, rank_candidates, trust, BlockDevice, DeviceClass};
    let table = part::read_partition_table(&mut file, device, 512)?.ok_or_else(|| {
        MediaError::Unrecognised {
            device: device.to_string(),
        }
    })?;
    let trailing = table.trailing().map(|p| p.number);
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for p in &table.partitions {
        let mut d = BlockDevice::whole(
            &format!("{device}:{}", p.number),
            device,
            DeviceClass::Partition,
            p.size,
        );
        d.partition = Some(p.clone());
        d.table_only = true;
        d.trailing = trailing == Some(p.number);
        let mut r = part::OffsetReader::new(&mut file, p.start, p.size);
        let sig = super::sig::read_signature(&mut r, &d.display());
        match &sig {
            Found::Fs(s) => seen.push(format!(
                "{}: {}{}",
                p.number,
                s.fstype,
                s.label
                    .as_deref()
                    .map(|l| format!(" {}", crate::model::grammar::Esc(l)))
                    .unwrap_or_default()
            )),
            _ => seen.push(format!("{}: unrecognised", p.number)),
        }
        if let Found::Fs(s) = sig {
            found.extend(match_signature(&d, &s, rules));
        }
    }
    seen.extend(
        table
            .dropped
            .iter()
            .map(|d| format!("{}: ignored ({})", d.number, d.reason)),
    );
    let ranked = rank_candidates(found);
    let best = trust::select(&ranked, duplicates)
        .map_err(|r| MediaError::Refused {
            device: device.to_string(),
            detail: r.to_string(),
        })?
        .ok_or_else(|| MediaError::NoConfigPartition {
            device: device.to_string(),
            detail: format!("{:?} table, partitions {}", table.kind, seen.join(", ")),
        })?;
    let p = best
        .device
        .partition
        .clone()
        .ok_or_else(|| MediaError::Unrecognised {
            device: device.to_string(),
        })?;
    tracing::info!("{device}: using {}", best.reason);
    let name = best.device.display();
    read_fs_shared(
        part::OffsetReader::new(file, p.start, p.size),
        &name,
        limits,
    )
}
