//! Source: parses the files of one drive (`DriveFiles`) into the typed `Instance` and a `Report`
//! of warnings. Pure: no I/O, no clock; every problem names the file and field.

pub mod openstack;

use crate::media::DriveFiles;
use crate::model::{Instance, Report};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{device}: {file}: missing (is this an OpenStack config drive? expected openstack/<version>/meta_data.json)")]
    Missing { device: String, file: String },
    #[error("{device}: {file}: invalid JSON at line {line}, column {column}: {detail}")]
    Json {
        device: String,
        file: String,
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{device}: {file}: {field}: {detail}")]
    Field {
        device: String,
        file: String,
        field: String,
        detail: String,
    },
    #[error("{device}: no known format found (no openstack/ tree)")]
    UnknownFormat { device: String },
}

/// Detects the format of a drive and parses it.
pub fn parse_drive(drive: &DriveFiles) -> Result<(Instance, Report), SourceError> {
    if !drive.subdirs("openstack").is_empty() {
        return openstack::parse_openstack(drive);
    }
    Err(SourceError::UnknownFormat {
        device: drive.device.clone(),
    })
}
