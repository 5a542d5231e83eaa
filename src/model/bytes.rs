//! `Bytes`: an immutable byte buffer shared by reference count, and slices of it, so one drive
//! file (a user-data script of tens of MiB) is held once from the parse to the write: the
//! instance, the script or injected-file step and the local copy all point into one buffer.
//! Pure data: no I/O. It must not expose a way to change bytes others share.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::{Arc, OnceLock};

/// The shared buffer, with its SHA-256 computed at most once (a 64 MiB script is written to two
/// places and compared: hashing it for each would cost more than reading it).
#[derive(Default)]
struct Shared {
    data: Vec<u8>,
    sha256: OnceLock<[u8; 32]>,
}

/// Cheap to clone (a reference count); compares, hashes and derefs as its bytes.
#[derive(Clone, Default)]
pub struct Bytes {
    buf: Arc<Shared>,
    range: Range<usize>,
}

impl Bytes {
    /// An empty buffer.
    pub fn new() -> Self {
        Bytes::default()
    }

    pub fn as_slice(&self) -> &[u8] {
        // The range is only ever built inside `buf.data`'s bounds (see `slice_ref`).
        self.buf.data.get(self.range.clone()).unwrap_or_default()
    }

    /// `sub` as a `Bytes` sharing this buffer, when `sub` lies inside it (a MIME part of a
    /// user-data blob, a script that is the whole blob); `None` when it is memory elsewhere.
    /// Compares addresses only: no bytes are read.
    pub fn slice_ref(&self, sub: &[u8]) -> Option<Bytes> {
        let whole = self.as_slice();
        let base = whole.as_ptr() as usize;
        let at = (sub.as_ptr() as usize).checked_sub(base)?;
        let end = at.checked_add(sub.len())?;
        if end > whole.len() {
            return None;
        }
        let start = self.range.start + at;
        Some(Bytes {
            buf: Arc::clone(&self.buf),
            range: start..start + sub.len(),
        })
    }

    /// SHA-256 of the bytes. For a whole buffer it is computed once, whoever asks (every clone
    /// shares it); a part of a buffer is hashed on each call.
    pub fn sha256(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        if self.range == (0..self.buf.data.len()) {
            *self
                .buf
                .sha256
                .get_or_init(|| Sha256::digest(&self.buf.data).into())
        } else {
            Sha256::digest(self.as_slice()).into()
        }
    }

    /// Whether `self` and `other` are the same bytes of the same buffer (no byte read).
    pub fn same(&self, other: &Bytes) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf) && self.range == other.range
    }
}

impl From<Vec<u8>> for Bytes {
    /// Takes the vector as the buffer: no copy.
    fn from(data: Vec<u8>) -> Self {
        let range = 0..data.len();
        Bytes {
            buf: Arc::new(Shared {
                data,
                sha256: OnceLock::new(),
            }),
            range,
        }
    }
}

impl From<&[u8]> for Bytes {
    fn from(data: &[u8]) -> Self {
        data.to_vec().into()
    }
}

impl From<String> for Bytes {
    fn from(s: String) -> Self {
        s.into_bytes().into()
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Self {
        s.as_bytes().into()
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.same(other) || self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for Bytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<&[u8]> for Bytes {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Bytes {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Bytes {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<Bytes> for Vec<u8> {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Bytes {
    /// A size only: drive bytes may be secrets or megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_the_buffer_and_compare_as_bytes() {
        let whole = Bytes::from(b"#!/bin/sh\necho hi\n".to_vec());
        let part = whole.slice_ref(&whole[10..]).unwrap();
        assert_eq!(part.as_slice(), b"echo hi\n");
        assert!(Arc::ptr_eq(&whole.buf, &part.buf));
        // A slice of a slice stays inside the buffer.
        let word = part.slice_ref(&part[5..7]).unwrap();
        assert_eq!(word.as_slice(), b"hi");
        // Memory elsewhere, or reaching past the end, is not a slice of it.
        let other = b"echo hi\n".to_vec();
        assert!(whole.slice_ref(&other).is_none());
        assert!(part.slice_ref(&whole[..4]).is_none());
        assert_eq!(part, Bytes::from("echo hi\n"));
        assert_eq!(format!("{part:?}"), "<8 bytes>");
    }

    #[test]
    fn the_digest_is_computed_once_and_right() {
        use sha2::{Digest, Sha256};
        let b = Bytes::from(vec![7u8; 100_000]);
        let want: [u8; 32] = Sha256::digest(vec![7u8; 100_000]).into();
        assert_eq!(b.sha256(), want);
        assert!(b.clone().buf.sha256.get().is_some());
        let part = b.slice_ref(&b[1..]).unwrap();
        assert_eq!(part.sha256(), <[u8; 32]>::from(Sha256::digest(&b[1..])));
    }
}
