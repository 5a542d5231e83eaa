//! Image files that are not a bare filesystem: an Ironic "packed" config drive (the gzip + base64
//! text operators hand to Ironic, or plain gzip) is unpacked while streamed into an anonymous
//! temporary file and read from there as an image; a lone XML file (an `ovf-env.xml` given as
//! `--source`) becomes a one-file drive. Never writes to the source, never writes a file anyone
//! can open by name (the temporary file has none, or loses it at once), never inflates past the
//! limit, and never holds the unpacked image in memory.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::rc::Rc;

use base64::Engine;

use super::{DriveFiles, LimitKind, Limits, MediaError};

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

/// The chunk the unpacked bytes move through: the only buffer that grows with the stream.
const CHUNK: usize = 64 << 10;

/// Decodes base64 text read from `inner` as it streams: whitespace ignored, padding optional,
/// nothing after the padding. Holds one chunk of text and one of bytes, whatever the length.
/// A decoding error is returned as an I/O error (gzip reads through this) and also kept in
/// `error`, so the caller reports it as a base64 error, not as the gzip error it surfaces as.
struct Base64Reader<R> {
    inner: R,
    /// Text read but not yet decoded (less than a 4-character group once a chunk is decoded,
    /// plus the padding, which must end the text).
    pending: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Characters decoded so far: error offsets count from the start of the text.
    decoded_chars: usize,
    padded: bool,
    eof: bool,
    error: Rc<RefCell<Option<base64::DecodeError>>>,
}

impl<R: Read> Base64Reader<R> {
    fn new(inner: R, error: Rc<RefCell<Option<base64::DecodeError>>>) -> Self {
        Base64Reader {
            inner,
            pending: Vec::with_capacity(CHUNK + 4),
            out: Vec::with_capacity(CHUNK),
            out_pos: 0,
            decoded_chars: 0,
            padded: false,
            eof: false,
            error,
        }
    }

    fn fail(&self, e: base64::DecodeError) -> std::io::Error {
        *self.error.borrow_mut() = Some(e.clone());
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    /// Decodes the next chunk into `out`; `out` stays empty only at the end of the text.
    fn refill(&mut self) -> std::io::Result<()> {
        use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
        use base64::engine::DecodePaddingMode;
        use base64::DecodeError;
        self.out.clear();
        self.out_pos = 0;
        while self.out.is_empty() && !self.eof {
            let mut raw = [0u8; 16 << 10];
            let n = match self.inner.read(&mut raw) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.eof = n == 0;
            for &b in &raw[..n] {
                if b.is_ascii_whitespace() {
                    continue;
                }
                // Text after the padding, or padding past its group (a `=` opening a new group
                // of four): the whole-text decode called either an invalid byte. Refused here, so
                // a flood of `=` is never gathered (it would grow without bound until the end).
                if self.padded && (b != b'=' || self.pending.len() % 4 == 0) {
                    let at = self.decoded_chars + self.pending.len();
                    return Err(self.fail(DecodeError::InvalidByte(at, b)));
                }
                self.padded |= b == b'=';
                self.pending.push(b);
            }
            // Decode whole groups of 4 before the padding; a short or padded last group waits for
            // the end of the text.
            let take = if self.eof {
                self.pending.len()
            } else {
                let unpadded = self
                    .pending
                    .iter()
                    .position(|&b| b == b'=')
                    .unwrap_or(self.pending.len());
                unpadded / 4 * 4
            };
            if take == 0 {
                continue;
            }
            let cfg = GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::Indifferent);
            let engine = GeneralPurpose::new(&base64::alphabet::STANDARD, cfg);
            let base = self.decoded_chars;
            let shift = |e: DecodeError| match e {
                DecodeError::InvalidByte(o, b) => DecodeError::InvalidByte(o + base, b),
                DecodeError::InvalidLastSymbol(o, b) => DecodeError::InvalidLastSymbol(o + base, b),
                DecodeError::InvalidLength(l) => DecodeError::InvalidLength(l + base),
                other => other,
            };
            let decoded = engine
                .decode_vec(&self.pending[..take], &mut self.out)
                .map_err(shift);
            if let Err(e) = decoded {
                return Err(self.fail(e));
            }
            self.pending.drain(..take);
            self.decoded_chars += take;
        }
        Ok(())
    }
}

impl<R: Read> Read for Base64Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.out_pos == self.out.len() {
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Counts the bytes read through it (the packed input's size, checked after the stream).
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Unpacks a packed drive read from `input` into `out`, a chunk at a time: base64 decoded
/// (whitespace ignored) when `packing` says so, then gunzipped (concatenated members too), never
/// past `limits.max_total_bytes` (the bytes past it are never written). The unpacked length.
pub fn unpack_into<'a, R: Read + 'a, W: Write>(
    input: R,
    packing: Packing,
    device: &str,
    limits: &Limits,
    out: &mut W,
) -> Result<u64, MediaError> {
    let b64_error = Rc::new(RefCell::new(None));
    let source: Box<dyn Read + 'a> = match packing {
        Packing::Gzip => Box::new(input),
        Packing::Base64Gzip => Box::new(Base64Reader::new(input, b64_error.clone())),
        Packing::Xml => return Err(corrupt(device, "an XML file is not a packed drive".into())),
    };
    let cap = limits.max_total_bytes;
    let mut gz = flate2::read::MultiGzDecoder::new(source);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        // One byte past the cap at most: a bomb is known for one without inflating further.
        let want = (buf.len() as u64).min(cap.saturating_add(1) - total) as usize;
        let n = match gz.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if let Some(d) = b64_error.borrow_mut().take() {
                    return Err(corrupt(device, format!("not valid base64: {d}")));
                }
                return Err(corrupt(device, format!("gzip: {e}")));
            }
        };
        total += n as u64;
        if total > cap {
            return Err(MediaError::Limit {
                device: device.to_string(),
                path: "(unpacked image)".into(),
                kind: LimitKind::TotalBytes,
                value: total,
                limit: cap,
            });
        }
        out.write_all(&buf[..n]).map_err(|e| MediaError::Io {
            device: format!("{device} (unpacking to a temporary file)"),
            source: e,
        })?;
    }
    Ok(total)
}

/// [`unpack_into`] a vector, from bytes in memory.
pub fn unpack(
    data: &[u8],
    packing: Packing,
    device: &str,
    limits: &Limits,
) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    unpack_into(data, packing, device, limits, &mut out)?;
    Ok(out)
}

/// Where the unpacked image goes: the temporary directory (`$TMPDIR`, else `/var/tmp`, else
/// the system's temporary directory). It comes
/// from primer's environment, which the operator or init sets, never from the drive; it is
/// meant for scratch files of this size and may be on disk (`/run`, a small tmpfs sized from
/// memory, may not hold a 64 MiB image). Sharing a world-writable `/tmp` is safe: the file has
/// no name there ([`anonymous_file`]).
pub fn unpack_dir() -> std::path::PathBuf {
    // `/var/tmp` before `/tmp` when `$TMPDIR` is not set: `/tmp` is a tmpfs on many systems
    // (Debian 13, Fedora), where the image would sit in memory, only not counted as primer's.
    match std::env::var_os("TMPDIR") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d),
        _ if cfg!(unix) && Path::new("/var/tmp").is_dir() => std::path::PathBuf::from("/var/tmp"),
        _ => std::env::temp_dir(),
    }
}

/// A new file in `dir` that no one else can open: `O_TMPFILE` (never has a name, mode 0600),
/// or where the filesystem lacks it, a fresh name created exclusively (never through a planted
/// file or link) and unlinked at once. It disappears when its last handle closes, with the
/// process at the latest.
#[cfg(unix)]
pub fn anonymous_file(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_TMPFILE)
            .open(dir)
        {
            Ok(f) => return Ok(f),
            // The filesystem (or an old kernel, which sees a directory opened for writing)
            // does not support it: fall back to a name removed at once.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EOPNOTSUPP) | Some(nix::libc::EISDIR) | Some(nix::libc::EINVAL)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for i in 0..100u32 {
        let path = dir.join(format!(".primer-unpack.{}.{stamp}.{i}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary file name"))
}

/// A new file in `dir`, deleted by the system when its handle closes (Windows keeps the name
/// while it is open; the handle is not shared).
#[cfg(windows)]
pub fn anonymous_file(dir: &Path) -> std::io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    // FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE (winnt.h).
    const TEMPORARY_DELETE_ON_CLOSE: u32 = 0x0000_0100 | 0x0400_0000;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for i in 0..100u32 {
        let path = dir.join(format!("primer-unpack.{}.{stamp}.{i}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .share_mode(0)
            .custom_flags(TEMPORARY_DELETE_ON_CLOSE)
            .open(&path)
        {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary file name"))
}

/// An anonymous file in memory (`memfd_create`), for when no temporary directory takes one.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn memory_file() -> std::io::Result<File> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create("primer-unpack", MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
    Ok(File::from(fd))
}

/// No anonymous memory file here: the temporary directory's error stands.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn memory_file() -> std::io::Result<File> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Reads `path` when it is a packed drive or an XML file; `Ok(None)` when it is something else
/// (a filesystem image, a block device) for the caller to read as usual. A packed drive is
/// unpacked into an [`anonymous_file`] in [`unpack_dir`] and read there like an image file
/// (ISO9660 or FAT): its large files stay in that file, which lives as long as they do.
pub fn read_special_file(
    path: &Path,
    device: &str,
    limits: &Limits,
) -> Result<Option<DriveFiles>, MediaError> {
    let io = |e| MediaError::Io {
        device: device.to_string(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
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
    let too_big = |value| MediaError::Limit {
        device: device.to_string(),
        path: path.display().to_string(),
        kind: LimitKind::FileSize,
        value,
        limit: cap,
    };
    // Refused before anything is read or written; the count below catches a file that grows.
    if meta.len() > cap {
        return Err(too_big(meta.len()));
    }
    let mut input = (&mut file).take(cap.saturating_add(1).saturating_sub(head.len() as u64));
    if packing == Packing::Xml {
        let mut data = head;
        input.read_to_end(&mut data).map_err(io)?;
        if data.len() as u64 > cap {
            return Err(too_big(data.len() as u64));
        }
        let mut d = DriveFiles::new(device, "file");
        d.files.insert("ovf-env.xml".into(), data.into());
        return Ok(Some(d));
    }
    let dir = unpack_dir();
    let tmp = match anonymous_file(&dir) {
        Ok(f) => f,
        // No temporary file there (a read-only root early in boot, `primer show` as a user
        // who may not write /var/tmp): the image in memory instead, named in the log, rather
        // than the drive refused. Bounded as the file is (the unpacked cap).
        Err(e) => match memory_file() {
            Ok(f) => {
                tracing::warn!(
                    "{device}: no temporary file in {}: {e}; the unpacked image is held in \
                     memory (set TMPDIR to a writable directory to avoid it)",
                    dir.display()
                );
                f
            }
            Err(_) => {
                return Err(MediaError::Io {
                    device: format!("{device} (a temporary file in {})", dir.display()),
                    source: e,
                })
            }
        },
    };
    let count = Rc::new(Cell::new(0u64));
    let counted = Counted {
        inner: Cursor::new(head).chain(input),
        count: count.clone(),
    };
    let len = unpack_into(counted, packing, device, limits, &mut &tmp).map_err(|e| match e {
        // A write that failed (a full or read-only temporary directory) names where it wrote
        // and says what to change, rather than blaming the drive.
        MediaError::Io { source, .. } => MediaError::Refused {
            device: device.to_string(),
            detail: format!(
                "cannot write the unpacked image to a temporary file in {}: {source} (set \
                 TMPDIR to a directory with room)",
                dir.display()
            ),
        },
        other => other,
    })?;
    if count.get() > cap {
        return Err(too_big(count.get()));
    }
    tracing::info!(
        "{device}: packed drive ({packing:?}) unpacked to {len} bytes in a temporary file in {}",
        dir.display()
    );
    let mut d = super::read_fs_shared(super::pread::PosFile::new(tmp), device, limits)?;
    d.fstype = match packing {
        Packing::Gzip => format!("{}+gzip", d.fstype),
        _ => format!("{}+gzip+base64", d.fstype),
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

    /// The text decoded in chunks (lines across the reader's 16 KiB reads) gives the bytes a
    /// whole-text decode gives; text after the padding is refused as today.
    #[test]
    fn base64_streams_across_chunks_and_ends_at_the_padding() {
        let l = Limits::default();
        // Pseudo-random bytes: gzip leaves them about their size (a text of some 400,000).
        let mut x = 0x2545_f491_u32;
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let gz = gzip(&data);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        let wrapped: String = b64
            .as_bytes()
            .chunks(61)
            .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
            .collect();
        assert_eq!(
            unpack(wrapped.as_bytes(), Packing::Base64Gzip, "d", &l).unwrap(),
            data
        );
        assert!(
            b64.ends_with('='),
            "the unpadded case needs padding to strip"
        );
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(
            unpack(unpadded.as_bytes(), Packing::Base64Gzip, "d", &l).unwrap(),
            data
        );
        let small = base64::engine::general_purpose::STANDARD.encode(gzip(b"hello"));
        assert!(small.ends_with('='), "{small}");
        let e = unpack(
            format!("{small}QUJD").as_bytes(),
            Packing::Base64Gzip,
            "dev",
            &l,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dev") && e.contains("not valid base64"), "{e}");
        // An invalid byte deep in the text: its offset counts from the start of the text.
        let mut bad = b64.clone().into_bytes();
        bad[100_001] = b'!';
        let e = unpack(&bad, Packing::Base64Gzip, "dev", &l)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not valid base64") && e.contains("100001"),
            "{e}"
        );
        // A flood of `=` after the padding is refused at the first one past its group, not
        // gathered to the end of the text: the decoder's buffer stays bounded.
        let flood = format!("{small}{}", "=".repeat(1 << 20));
        let mut r = Base64Reader::new(flood.as_bytes(), Rc::default());
        let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        let at = format!("offset {}", small.len());
        assert!(e.to_string().contains(&at), "{e}");
        assert!(
            r.pending.len() <= small.len(),
            "{} pending",
            r.pending.len()
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_temporary_file_has_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = anonymous_file(dir.path()).unwrap();
        f.write_all(b"image").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut back = [0u8; 5];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, 0).unwrap();
        assert_eq!(&back, b"image");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }
}
