//! Image files that are not a bare filesystem: an Ironic "packed" config drive (the gzip + base64
//! text operators hand to Ironic, or plain gzip) is unpacked in memory, bounded, and read as an
//! ISO9660 image; a lone XML file (an `ovf-env.xml` given as `--source`) becomes a one-file drive.
//! Read-only: never writes a temporary file, never inflates past the limit.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use base64::Engine;

use super::{iso9660, DriveFiles, LimitKind, Limits, MediaError};

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// gzip stream (magic `1f 8b`).
    Gzip,
    /// base64 text of a gzip stream (starts `H4sI`), whitespace allowed.
    Base64Gzip,
    /// An XML document (an OVF environment file).
    Xml,
}

/// Recognises a packed drive or an XML file from its first bytes; `None` for anything else (a
/// filesystem image is read as one).
pub fn sniff(head: &[u8]) -> Option<Packing> {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some(Packing::Gzip);
    }
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = &head[start..];
    if head.starts_with(b"H4sI") {
        Some(Packing::Base64Gzip)
    } else if head.starts_with(b"<") {
        Some(Packing::Xml)
    } else {
        None
    }
}

fn corrupt(device: &str, detail: String) -> MediaError {
    MediaError::Corrupt {
        device: device.to_string(),
        path: "(packed drive)".into(),
        detail,
    }
}

/// Unpacks a packed drive into the image bytes: base64 decoded (whitespace ignored) when
/// `packing` says so, then gunzipped (concatenated members too), never past
/// `limits.max_total_bytes`.
pub fn unpack(
    data: &[u8],
    packing: Packing,
    device: &str,
    limits: &Limits,
) -> Result<Vec<u8>, MediaError> {
    let decoded;
    let gz: &[u8] = match packing {
        Packing::Gzip => data,
        Packing::Base64Gzip => {
            use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
            use base64::engine::DecodePaddingMode;
            let compact: Vec<u8> = data
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let cfg = GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::Indifferent);
            decoded = GeneralPurpose::new(&base64::alphabet::STANDARD, cfg)
                .decode(&compact)
                .map_err(|e| corrupt(device, format!("not valid base64: {e}")))?;
            &decoded
        }
        Packing::Xml => return Err(corrupt(device, "an XML file is not a packed drive".into())),
    };
    let cap = limits.max_total_bytes;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| corrupt(device, format!("gzip: {e}")))?;
    if out.len() as u64 > cap {
        return Err(MediaError::Limit {
            device: device.to_string(),
            path: "(unpacked image)".into(),
            kind: LimitKind::TotalBytes,
            value: out.len() as u64,
            limit: cap,
        });
    }
    Ok(out)
}

/// Reads `path` when it is a packed drive or an XML file; `Ok(None)` when it is something else
/// (a filesystem image, a block device) for the caller to read as usual.
pub fn read_special_file(
    path: &Path,
    device: &str,
    limits: &Limits,
) -> Result<Option<DriveFiles>, MediaError> {
    let io = |e| MediaError::Io {
        device: device.to_string(),
        source: e,
    };
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Ok(None);
    }
    let mut file = File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(512);
    (&mut file).take(512).read_to_end(&mut head).map_err(io)?;
    let Some(packing) = sniff(&head) else {
        return Ok(None);
    };
    // base64 is 4/3 of its bytes; the unpacked image is bounded separately.
    let cap = match packing {
        Packing::Xml => limits.max_file_size,
        Packing::Gzip => limits.max_total_bytes,
        Packing::Base64Gzip => limits.max_total_bytes.saturating_mul(2),
    };
    let mut data = head;
    (&mut file)
        .take(cap.saturating_add(1).saturating_sub(data.len() as u64))
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() as u64 > cap {
        return Err(MediaError::Limit {
            device: device.to_string(),
            path: path.display().to_string(),
            kind: LimitKind::FileSize,
            value: data.len() as u64,
            limit: cap,
        });
    }
    if packing == Packing::Xml {
        let mut d = DriveFiles::new(device, "file");
        d.files.insert("ovf-env.xml".into(), data.into());
        return Ok(Some(d));
    }
    let image = unpack(&data, packing, device, limits)?;
    tracing::info!(
        "{device}: packed drive ({packing:?}) unpacked to {} bytes in memory",
        image.len()
    );
    let mut d = iso9660::read_iso9660(Cursor::new(image), device, limits)?;
    d.fstype = match packing {
        Packing::Gzip => "iso9660+gzip".into(),
        _ => "iso9660+gzip+base64".into(),
    };
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Some(Packing::Gzip));
        assert_eq!(sniff(b"\n H4sIAAAA"), Some(Packing::Base64Gzip));
        assert_eq!(sniff(b"\xef\xbb\xbf<?xml"), Some(Packing::Xml));
        assert_eq!(sniff(&[0u8; 512]), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn unpack_forms_and_cap() {
        let l = Limits::default();
        let gz = gzip(b"hello");
        assert_eq!(unpack(&gz, Packing::Gzip, "d", &l).unwrap(), b"hello");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        let wrapped: String = b64
            .as_bytes()
            .chunks(8)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        assert_eq!(
            unpack(wrapped.as_bytes(), Packing::Base64Gzip, "d", &l).unwrap(),
            b"hello"
        );
        let small = Limits {
            max_total_bytes: 1000,
            ..l
        };
        let bomb = gzip(&vec![0u8; 1 << 20]);
        let e = unpack(&bomb, Packing::Gzip, "dev", &small)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dev") && e.contains("total bytes limit"), "{e}");
        let e = unpack(b"H4sI!!!", Packing::Base64Gzip, "dev", &l)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dev") && e.contains("base64"), "{e}");
        let e = unpack(&gz[..gz.len() / 2], Packing::Gzip, "dev", &l)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gzip"), "{e}");
    }
}
