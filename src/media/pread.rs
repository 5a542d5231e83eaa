//! Positioned reads of a device or image file: a `Read + Seek` over a `File` whose position is
//! kept in user space, every read one positioned read (`pread`; `ReadFile` with an offset on
//! Windows) and every seek free. The readers (ISO9660, FAT, partition tables, the probe's
//! signature) seek before each read; over a plain `File` each seek is an `lseek` system call.
//! Reads only: nothing here writes, and the file's own position is never relied upon.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// A file read at positions kept here (see the module documentation).
#[derive(Debug)]
pub struct PosFile {
    file: File,
    pos: u64,
    /// The size, asked of the kernel the first time a seek from the end needs it (a block
    /// device's metadata says 0: `lseek(SEEK_END)` is what gives its size).
    len: Option<u64>,
}

impl PosFile {
    pub fn new(file: File) -> PosFile {
        PosFile {
            file,
            pos: 0,
            len: None,
        }
    }

    fn len(&mut self) -> io::Result<u64> {
        match self.len {
            Some(l) => Ok(l),
            None => {
                let l = self.file.seek(SeekFrom::End(0))?;
                self.len = Some(l);
                Ok(l)
            }
        }
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, at)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    // Moves the file's own position too, which nothing here uses.
    std::os::windows::fs::FileExt::seek_read(f, buf, at)
}

impl Read for PosFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = read_at(&self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PosFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len()?.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let p = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        self.pos = p;
        Ok(p)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_at_the_position_kept_here() {
        let mut t = tempfile::tempfile().unwrap();
        t.write_all(&(0..=255u8).cycle().take(10_000).collect::<Vec<_>>())
            .unwrap();
        let mut f = PosFile::new(t);
        let mut b = [0u8; 4];
        f.seek(SeekFrom::Start(300)).unwrap();
        f.read_exact(&mut b).unwrap();
        assert_eq!(b, [44, 45, 46, 47]);
        assert_eq!(f.stream_position().unwrap(), 304);
        f.seek(SeekFrom::Current(-4)).unwrap();
        f.read_exact(&mut b).unwrap();
        assert_eq!(b, [44, 45, 46, 47]);
        assert_eq!(f.seek(SeekFrom::End(-2)).unwrap(), 9_998);
        assert_eq!(f.read(&mut b).unwrap(), 2, "a short read at the end");
        assert_eq!(f.read(&mut b).unwrap(), 0);
        assert!(f.seek(SeekFrom::Current(-20_000)).is_err());
        f.seek(SeekFrom::Start(20_000)).unwrap();
        assert_eq!(f.read(&mut b).unwrap(), 0, "past the end reads nothing");
    }
}
