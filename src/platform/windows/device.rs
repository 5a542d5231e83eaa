//! Raw device reads on Windows: opens `\\.\X:` / `\\.\PhysicalDriveN` read-only and wraps the
//! handle in an [`AlignedReader`], because Windows refuses a raw volume or disk read whose
//! offset or length is not a multiple of the sector size (ERROR_INVALID_PARAMETER) and, without
//! the cache, one whose buffer is not aligned. The size comes from `IOCTL_DISK_GET_LENGTH_INFO`
//! (a raw handle's `SetFilePointerEx(FILE_END)` is not the device size), the sector size from
//! `IOCTL_DISK_GET_DRIVE_GEOMETRY_EX` or `IOCTL_STORAGE_QUERY_PROPERTY`. Read-only: never
//! locks, writes or dismounts; parses nothing (the readers above get plain `Read + Seek`).

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::windows::io::AsRawHandle;
use std::path::Path;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Storage::FileSystem::IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS;
use windows_sys::Win32::System::Ioctl::{
    PropertyStandardQuery, StorageAccessAlignmentProperty, DISK_EXTENT, DISK_GEOMETRY_EX,
    GET_LENGTH_INFORMATION, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, IOCTL_DISK_GET_LENGTH_INFO,
    IOCTL_STORAGE_QUERY_PROPERTY, STORAGE_ACCESS_ALIGNMENT_DESCRIPTOR, STORAGE_PROPERTY_QUERY,
};
use windows_sys::Win32::System::IO::DeviceIoControl;

pub use crate::media::aligned::{AlignedReader, SectorDevice, DEFAULT_SECTOR};

/// `DeviceIoControl` with no input and a fixed-size output structure; `None` on failure.
fn ioctl_out<T: Copy>(f: &File, code: u32, input: &[u8], out: &mut T) -> Option<()> {
    let mut got = 0u32;
    let in_len = u32::try_from(input.len()).ok()?;
    // SAFETY: the handle is open; `input` and `out` are valid for the sizes given, and the
    // call is synchronous (the handle is not overlapped).
    let ok = unsafe {
        DeviceIoControl(
            f.as_raw_handle() as HANDLE,
            code,
            if input.is_empty() {
                std::ptr::null()
            } else {
                input.as_ptr().cast()
            },
            in_len,
            (out as *mut T).cast(),
            std::mem::size_of::<T>() as u32,
            &mut got,
            std::ptr::null_mut(),
        )
    };
    (ok != 0 && got as usize >= std::mem::size_of::<T>().min(8)).then_some(())
}

/// The size of an open raw volume or disk (`IOCTL_DISK_GET_LENGTH_INFO`); `None` when the
/// driver does not answer.
pub fn length(f: &File) -> Option<u64> {
    let mut info = GET_LENGTH_INFORMATION { Length: 0 };
    ioctl_out(f, IOCTL_DISK_GET_LENGTH_INFO, &[], &mut info)?;
    u64::try_from(info.Length).ok()
}

/// The sector size of an open raw device: the logical sector size from
/// `IOCTL_DISK_GET_DRIVE_GEOMETRY_EX`, else from the storage access alignment property; `None`
/// when neither answers.
pub fn sector_size(f: &File) -> Option<u64> {
    // SAFETY: plain data; all-zero is a valid value.
    let mut g: DISK_GEOMETRY_EX = unsafe { std::mem::zeroed() };
    if ioctl_out(f, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], &mut g).is_some()
        && g.Geometry.BytesPerSector != 0
    {
        return Some(u64::from(g.Geometry.BytesPerSector));
    }
    let q = STORAGE_PROPERTY_QUERY {
        PropertyId: StorageAccessAlignmentProperty,
        QueryType: PropertyStandardQuery,
        AdditionalParameters: [0],
    };
    // SAFETY: STORAGE_PROPERTY_QUERY is plain `repr(C)` data: viewing it as bytes is sound.
    let input = unsafe {
        std::slice::from_raw_parts(
            (&q as *const STORAGE_PROPERTY_QUERY).cast::<u8>(),
            std::mem::size_of::<STORAGE_PROPERTY_QUERY>(),
        )
    };
    // SAFETY: plain data; all-zero is a valid value.
    let mut a: STORAGE_ACCESS_ALIGNMENT_DESCRIPTOR = unsafe { std::mem::zeroed() };
    ioctl_out(f, IOCTL_STORAGE_QUERY_PROPERTY, input, &mut a)?;
    (a.BytesPerLogicalSector != 0).then_some(u64::from(a.BytesPerLogicalSector))
}

/// The disk extents of an open raw volume (`IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS`): disk
/// number and byte offset of each (one for a basic volume; at most 8 read). Empty when the
/// driver does not answer (wine's file-backed drives).
pub fn volume_extents(f: &File) -> Vec<(u32, u64)> {
    /// `VOLUME_DISK_EXTENTS` with room for 8 extents.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Extents {
        count: u32,
        extents: [DISK_EXTENT; 8],
    }
    // SAFETY: plain data; all-zero is a valid value.
    let mut x: Extents = unsafe { std::mem::zeroed() };
    if ioctl_out(f, IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS, &[], &mut x).is_none() {
        return Vec::new();
    }
    let n = (x.count as usize).min(x.extents.len());
    x.extents[..n]
        .iter()
        .filter_map(|e| Some((e.DiskNumber, u64::try_from(e.StartingOffset).ok()?)))
        .collect()
}

/// Whether `path` names a raw device (`\\.\X:`, `\\.\PhysicalDriveN`, `\\?\GLOBALROOT\…`)
/// rather than a file.
pub fn is_raw_device(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|s| s.starts_with(r"\\.\") || s.starts_with(r"\\?\GLOBALROOT\"))
}

/// The size of an open raw device as its driver tells it: `IOCTL_DISK_GET_LENGTH_INFO`, else
/// the disk size of `IOCTL_DISK_GET_DRIVE_GEOMETRY_EX`; `None` when neither answers.
pub fn driver_length(f: &File) -> Option<u64> {
    if let Some(n) = length(f) {
        return Some(n);
    }
    // SAFETY: plain data; all-zero is a valid value.
    let mut g: DISK_GEOMETRY_EX = unsafe { std::mem::zeroed() };
    ioctl_out(f, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], &mut g)?;
    u64::try_from(g.DiskSize).ok().filter(|&n| n > 0)
}

/// Opens `path` read-only behind an [`AlignedReader`]. A raw device gets its size from its
/// driver (`driver_length`: `IOCTL_DISK_GET_LENGTH_INFO`, a raw handle's end-of-file is not
/// the device size on Windows) and its sector size from the driver ([`DEFAULT_SECTOR`] when it
/// does not say). Only a device whose driver answers neither size request (wine's file-backed
/// drives, which serve no disk IOCTLs) is sized by seeking to its end, with a debug line
/// saying so; an image file by its metadata (the alignment then costs nothing and keeps one
/// type for both).
pub fn open_device(path: &Path) -> io::Result<AlignedReader<File>> {
    let mut f = File::open(path)?;
    if !is_raw_device(path) {
        let len = f.metadata()?.len();
        return Ok(AlignedReader::new(f, DEFAULT_SECTOR, len));
    }
    let len = match driver_length(&f) {
        Some(n) => n,
        None => {
            let e = io::Error::last_os_error();
            let n = f.seek(SeekFrom::End(0)).map_err(|se| {
                io::Error::new(
                    se.kind(),
                    format!(
                        "{}: size unknown: IOCTL_DISK_GET_LENGTH_INFO: {e}; seek to the end: {se}",
                        path.display()
                    ),
                )
            })?;
            tracing::debug!(device = %path.display(), "the driver tells no size ({e}); {n} bytes by seeking to the end");
            n
        }
    };
    let sector = sector_size(&f).unwrap_or(DEFAULT_SECTOR);
    tracing::debug!(device = %path.display(), len, sector, "raw device opened");
    Ok(AlignedReader::new(f, sector, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::aligned::tests::Strict;
    use std::io::Read;
    #[test]
    fn raw_device_paths() {
        assert!(is_raw_device(Path::new(r"\\.\D:")));
        assert!(is_raw_device(Path::new(r"\\.\PhysicalDrive1")));
        assert!(!is_raw_device(Path::new(r"C:\drive.iso")));
    }

    #[test]
    fn wine_raw_volumes_tell_their_size_and_sector() {
        // Only where a raw volume exists (scripts/test-windows maps D: to an ISO).
        let Ok(f) = File::open(r"\\.\D:") else { return };
        let mut r = open_device(Path::new(r"\\.\D:")).expect("open D:");
        if let Some(len) = driver_length(&f) {
            assert_eq!(r.len(), len);
        }
        let len = r.len();
        assert!(r.sector().is_power_of_two());
        let mut pvd = [0u8; 6];
        r.seek(SeekFrom::Start(16 * 2048)).unwrap();
        if r.read_exact(&mut pvd).is_ok() && &pvd[1..6] == b"CD001" {
            assert_eq!(len % 2048, 0);
        }
    }

    #[test]
    fn a_source_read_through_aligned_reads_equals_the_plain_file_read() {
        use crate::media::Limits;
        use crate::probe::image::{read_source_opened, read_source_with};
        use crate::probe::trust::DuplicateRule;
        use crate::probe::Rules;
        let iso = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/sample/config-2.iso");
        let data = std::fs::read(&iso).expect("the sample ISO");
        let limits = Limits::default();
        let plain = read_source_with(&iso, &limits, &Rules::default(), DuplicateRule::Refuse)
            .expect("plain read");
        // A CD-ROM as Windows serves it: 2048-byte sectors, every unaligned read refused.
        let strict = |_: &Path| {
            let len = data.len() as u64;
            let dev = Strict {
                data: data.clone(),
                sector: 2048,
                reads: 0,
            };
            Ok(AlignedReader::new(dev, 2048, len))
        };
        let aligned = read_source_opened(
            &iso,
            &limits,
            &Rules::default(),
            DuplicateRule::Refuse,
            strict,
        )
        .expect("aligned read");
        assert_eq!(aligned.files, plain.files);
        assert_eq!((aligned.fstype, aligned.label), (plain.fstype, plain.label));
        // And the raw volume itself, where scripts/test-windows maps D: to that ISO.
        if File::open(r"\\.\D:").is_ok() {
            let raw = read_source_opened(
                Path::new(r"\\.\D:"),
                &limits,
                &Rules::default(),
                DuplicateRule::Refuse,
                open_device,
            )
            .expect(r"\\.\D: through open_device");
            assert_eq!(raw.files, plain.files);
        }
    }
}
