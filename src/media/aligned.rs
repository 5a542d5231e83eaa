//! A byte-granular `Read + Seek` over a device that takes only sector-aligned reads
//! ([`AlignedReader`]): Windows raw volumes and disks (which refuse unaligned reads) and, on
//! Linux, a config drive opened with direct I/O (`O_DIRECT`: read straight into primer's buffer,
//! no page cache filled at the read and dropped at the last close). Pure logic over a
//! [`SectorDevice`]: it opens nothing and parses nothing.

use std::io::{self, Read, Seek, SeekFrom};

/// Sector size assumed when the device does not report one: a multiple of every common sector
/// size (512, 2048 for CD-ROMs, 4096), so an aligned read on it is aligned on any of them.
pub const DEFAULT_SECTOR: u64 = 4096;
/// Largest sector size believed: anything larger (or not a power of two) is a driver's noise.
const MAX_SECTOR: u64 = 64 * 1024;
/// Bytes read from the device at once (a multiple of every accepted sector size): small
/// reads by the filesystem readers are served from this window. [`AlignedReader::with_window`]
/// takes a smaller one (the probe's: only a device's head decides).
pub const CHUNK: usize = 256 * 1024;
/// A [`CHUNK`] reader's first window: a config drive's metadata and small files lie within its
/// first 128 KiB (a config-2 ISO's directories and JSON files end near 80 KiB), so a re-run
/// reads and zeroes half as much; each window read right after the last doubles it, up to
/// [`CHUNK`], so a drive of large files is read in [`CHUNK`]s as before.
const FIRST_WINDOW: usize = 128 * 1024;

/// What a raw device needs from a reader: reads at `offset` into `buf`, where offset, length
/// and buffer address are multiples of the sector size. May return fewer bytes (end of medium).
pub trait SectorDevice {
    fn read_sectors(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// Any `Read + Seek` as a sector device (a raw handle is one: `File` seeks and reads it).
impl<T: Read + Seek> SectorDevice for T {
    fn read_sectors(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.seek(SeekFrom::Start(offset))?;
        let mut got = 0;
        while got < buf.len() {
            match self.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

/// A byte-granular `Read + Seek` over a device that only takes sector-aligned reads: every
/// device read starts on a sector boundary, is a whole number of sectors (clamped to the
/// device's end, rounded up to a sector) and lands in a buffer aligned to the sector size.
/// Reads are served from one cached window, so the readers' many small reads cost one device
/// read per `CHUNK`. Seeks past the end are allowed (reads there return 0), as for a file.
pub struct AlignedReader<D> {
    dev: D,
    sector: u64,
    len: u64,
    pos: u64,
    /// Backing store, at least `window + sector` bytes: the window starts at `off`, aligned to `sector`.
    buf: Vec<u8>,
    off: usize,
    /// Bytes read from the device at once: a multiple of `sector`, at most [`CHUNK`]; grows
    /// (doubling) up to `max_window` while reads go on where the last window ended.
    window: usize,
    max_window: usize,
    /// Device offset of the window and how many bytes of it are valid.
    win_start: u64,
    win_len: usize,
}

impl<D: SectorDevice> AlignedReader<D> {
    /// `sector`: the device's sector size (a power of two, 512..=64 KiB; anything else falls
    /// back to [`DEFAULT_SECTOR`]); `len`: the device's size in bytes.
    pub fn new(dev: D, sector: u64, len: u64) -> Self {
        Self::with_window(dev, sector, len, CHUNK)
    }

    /// As [`AlignedReader::new`], reading `window` bytes at once (rounded up to a whole number
    /// of sectors, at most [`CHUNK`]) instead of [`CHUNK`]: the probe reads each device's head
    /// (`window` bytes from 0) in one device read and holds no larger buffer than that, and a
    /// later read (a candidate's root directory) costs one more window where it falls.
    pub fn with_window(dev: D, sector: u64, len: u64, window: usize) -> Self {
        Self::with_buffer(dev, sector, len, window, Vec::new())
    }

    /// As [`AlignedReader::with_window`], in `buf`: a previous reader's
    /// ([`AlignedReader::into_buffer`]), so a probe over many devices allocates and zeroes one
    /// buffer, not one per device. Its old bytes are never served: only what this device read.
    pub fn with_buffer(dev: D, sector: u64, len: u64, window: usize, mut buf: Vec<u8>) -> Self {
        let sector = if sector.is_power_of_two() && (512..=MAX_SECTOR).contains(&sector) {
            sector
        } else {
            DEFAULT_SECTOR
        };
        // `sector` <= 64 KiB: fits usize; the window plus slack to align its start.
        let s = sector as usize;
        let max_window = window.clamp(1, CHUNK.max(s)).next_multiple_of(s);
        let window = if buf.is_empty() {
            max_window.min(FIRST_WINDOW.next_multiple_of(s))
        } else {
            max_window
        };
        if buf.is_empty() {
            // Zeroed by the allocator (`calloc`: fresh pages are known zero), not by a `memset`
            // that faults every page in before the first read: a first boot's drive reader paid
            // ~0.15 ms for that. Sized for the first window only: a config drive's reads fit
            // in it, and the buffer was the largest block of a first run's heap (sized for the
            // largest window, 264 KiB of which a small drive used half: the heap's high-water
            // mark, 392 KiB, was set while it was held). A drive that grows the window gets a
            // buffer for the largest one then, once (`fill`).
            buf = vec![0; window + s];
        } else if buf.len() < window + s {
            buf.resize(window + s, 0);
        }
        let off = buf.as_ptr().align_offset(s).min(s);
        AlignedReader {
            dev,
            sector,
            len,
            pos: 0,
            buf,
            off,
            window,
            max_window,
            win_start: 0,
            win_len: 0,
        }
    }

    /// The device size this reader was given.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the device is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sector size in use.
    pub fn sector(&self) -> u64 {
        self.sector
    }

    /// The buffer, for the next reader ([`AlignedReader::with_buffer`]).
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// The device read (for a question the reader cannot answer, such as an `ioctl`).
    pub fn get_ref(&self) -> &D {
        &self.dev
    }

    /// Loads the window holding `pos` (`pos < len`): starts at `pos` rounded down to a sector,
    /// at most `window` bytes, and not past the last sector the device has.
    fn fill(&mut self, pos: u64) -> io::Result<()> {
        let start = pos - pos % self.sector;
        if self.window < self.max_window
            && self.win_len > 0
            && start == self.win_start.saturating_add(self.win_len as u64)
        {
            // A read going on where the last window ended: a larger file; read more at once.
            // Only a reader made without a buffer grows; its buffer is replaced by one for the
            // largest window the first time (a fresh zeroed block, never a copy: the window's
            // bytes are read again below), so it grows once, not at every doubling.
            self.window = (self.window * 2).min(self.max_window);
            let s = self.sector as usize;
            if self.buf.len() < self.window + s {
                self.buf = Vec::new();
                self.buf = vec![0; self.max_window + s];
                self.off = self.buf.as_ptr().align_offset(s).min(s);
            }
        }
        let window = self.window as u64;
        let left = self.len - start;
        let want = window.min(left.div_ceil(self.sector).saturating_mul(self.sector));
        // `want` <= window <= buf.len(): fits usize.
        let want = want as usize;
        self.win_len = 0;
        let got = self
            .dev
            .read_sectors(start, &mut self.buf[self.off..self.off + want])?;
        self.win_start = start;
        self.win_len = got.min(want);
        Ok(())
    }
}

impl<D: SectorDevice> Read for AlignedReader<D> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let in_window = self.pos >= self.win_start
            && self.pos < self.win_start.saturating_add(self.win_len as u64);
        if !in_window {
            self.fill(self.pos)?;
            if self.pos >= self.win_start.saturating_add(self.win_len as u64) {
                // The device ended before its reported size: end of data.
                return Ok(0);
            }
        }
        // Both differences are bounded by the window (<= CHUNK + sector): fit usize.
        let at = (self.pos - self.win_start) as usize;
        let avail = (self.win_len - at).min((self.len - self.pos).min(usize::MAX as u64) as usize);
        let n = avail.min(out.len());
        out[..n].copy_from_slice(&self.buf[self.off + at..self.off + at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<D: SectorDevice> Seek for AlignedReader<D> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the device",
            )
        })?;
        self.pos = new;
        Ok(new)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An in-memory device that refuses what Windows refuses: an offset, length or buffer
    /// address that is not a multiple of its sector size, and a read crossing its end. Counts
    /// device reads.
    pub(crate) struct Strict {
        pub(crate) data: Vec<u8>,
        pub(crate) sector: usize,
        pub(crate) reads: usize,
    }

    impl SectorDevice for Strict {
        fn read_sectors(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let s = self.sector;
            assert_eq!(offset % s as u64, 0, "unaligned offset {offset}");
            assert_eq!(buf.len() % s, 0, "unaligned length {}", buf.len());
            assert_eq!(buf.as_ptr() as usize % s, 0, "unaligned buffer");
            let o = offset as usize;
            assert!(o + buf.len() <= self.data.len(), "read past the end");
            buf.copy_from_slice(&self.data[o..o + buf.len()]);
            Ok(buf.len())
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn reader(n: usize, sector: usize) -> AlignedReader<Strict> {
        let dev = Strict {
            data: pattern(n),
            sector,
            reads: 0,
        };
        AlignedReader::new(dev, sector as u64, n as u64)
    }

    #[test]
    fn byte_reads_anywhere_become_aligned_sector_reads() {
        for sector in [512usize, 2048, 4096] {
            let n = sector * 700; // larger than one window, not a multiple of it
            let want = pattern(n);
            let mut r = reader(n, sector);
            for (at, len) in [
                (0usize, 1usize),
                (1, 3),
                (sector - 1, 2),
                (16 * 2048 + 1, 5),
                (CHUNK - 3, 10),
                (n - 7, 7),
                (n - 1, 1),
                (12345, 70000),
            ] {
                r.seek(SeekFrom::Start(at as u64)).unwrap();
                let mut got = vec![0u8; len];
                r.read_exact(&mut got).unwrap();
                assert_eq!(got, want[at..at + len], "sector {sector} at {at} len {len}");
            }
            // The whole device in odd-sized pieces.
            r.seek(SeekFrom::Start(0)).unwrap();
            let mut all = Vec::new();
            let mut piece = vec![0u8; 1000];
            loop {
                let k = r.read(&mut piece).unwrap();
                if k == 0 {
                    break;
                }
                all.extend_from_slice(&piece[..k]);
            }
            assert_eq!(all, want);
        }
    }

    #[test]
    fn the_end_is_the_reported_size_and_reads_never_cross_it() {
        let mut r = reader(2048 * 3, 2048);
        assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), 6144);
        assert_eq!(r.read(&mut [0u8; 10]).unwrap(), 0);
        assert_eq!(r.seek(SeekFrom::End(-3)).unwrap(), 6141);
        let mut b = [0u8; 10];
        assert_eq!(r.read(&mut b).unwrap(), 3);
        assert_eq!(b[..3], pattern(6144)[6141..]);
        // Past the end: allowed, reads nothing; before the start: refused.
        assert_eq!(r.seek(SeekFrom::Start(1 << 40)).unwrap(), 1 << 40);
        assert_eq!(r.read(&mut b).unwrap(), 0);
        assert!(r.seek(SeekFrom::End(-6145)).is_err());
        assert!(r.seek(SeekFrom::Current(i64::MIN)).is_err());
    }

    /// A whole-drive reader starts with [`FIRST_WINDOW`] and doubles it while the reads go
    /// on where the last window ended, up to [`CHUNK`]; a read elsewhere keeps the window.
    #[test]
    fn the_window_grows_while_reads_go_on() {
        let n = CHUNK * 6 + 4096 * 3;
        let want = pattern(n);
        let mut r = reader(n, 4096);
        assert_eq!(r.window, FIRST_WINDOW);
        // The buffer holds the first window until the window grows (then the largest, once).
        assert_eq!(r.buf.len(), FIRST_WINDOW + 4096);
        let mut b = vec![0u8; FIRST_WINDOW];
        r.read_exact(&mut b).unwrap();
        assert_eq!(b, want[..FIRST_WINDOW]);
        assert_eq!(r.dev.reads, 1);
        r.read_exact(&mut b).unwrap();
        assert_eq!(b, want[FIRST_WINDOW..2 * FIRST_WINDOW]);
        assert_eq!(r.window, CHUNK);
        assert_eq!(r.buf.len(), CHUNK + 4096);
        let mut all = Vec::new();
        r.seek(SeekFrom::Start(0)).unwrap();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, want);
        assert!(r.window <= CHUNK && r.buf.len() <= CHUNK + 4096);
    }

    #[test]
    fn small_reads_are_served_from_one_window() {
        let mut r = reader(4096 * 16, 4096);
        let mut b = [0u8; 16];
        for i in 0..1000 {
            r.seek(SeekFrom::Start(i * 37)).unwrap();
            r.read_exact(&mut b).unwrap();
        }
        assert_eq!(
            r.dev.reads, 1,
            "one device read for reads inside one window"
        );
    }

    #[test]
    fn a_small_window_reads_the_head_once_then_one_window_where_a_read_falls() {
        let n = 4096 * 25;
        let want = pattern(n);
        let dev = Strict {
            data: want.clone(),
            sector: 4096,
            reads: 0,
        };
        let mut r = AlignedReader::with_window(dev, 4096, n as u64, 36 * 1024);
        // The probe's first read (34 KiB from 0) and any read inside the head: one device read.
        let mut head = vec![0u8; 34 * 1024];
        r.read_exact(&mut head).unwrap();
        assert_eq!(head, want[..34 * 1024]);
        r.seek(SeekFrom::Start(100)).unwrap();
        r.read_exact(&mut [0u8; 4000]).unwrap();
        assert_eq!(r.get_ref().reads, 1);
        // Past the head: one window where the read falls, clamped to the device's end.
        let mut b = vec![0u8; 2048];
        r.seek(SeekFrom::Start(57_344 + 10)).unwrap();
        r.read_exact(&mut b).unwrap();
        assert_eq!(b, want[57_354..57_354 + 2048]);
        assert_eq!(r.get_ref().reads, 2);
        r.seek(SeekFrom::End(-5)).unwrap();
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, want[n - 5..]);
        assert_eq!(r.get_ref().reads, 3);
        // The next device in the same buffer: only its own bytes are served.
        let buf = r.into_buffer();
        let dev = Strict {
            data: vec![0xa5; 4096 * 2],
            sector: 4096,
            reads: 0,
        };
        let mut r = AlignedReader::with_buffer(dev, 4096, 4096 * 2, 36 * 1024, buf);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, vec![0xa5; 4096 * 2]);
        // A window that is no whole number of sectors is rounded up to one; none is larger
        // than `CHUNK`.
        let r = AlignedReader::with_window(std::io::Cursor::new(vec![0u8; 16]), 4096, 16, 1000);
        assert_eq!(r.window, 4096);
        let r = AlignedReader::with_window(std::io::Cursor::new(vec![0u8; 16]), 512, 16, 1 << 30);
        assert_eq!((r.window, r.max_window), (FIRST_WINDOW, CHUNK));
    }

    #[test]
    fn an_implausible_sector_size_falls_back_to_the_default() {
        for bad in [0u64, 100, 3000, 1 << 20] {
            let r = AlignedReader::new(std::io::Cursor::new(vec![0u8; 16]), bad, 16);
            assert_eq!(r.sector(), DEFAULT_SECTOR, "{bad}");
        }
    }

    #[test]
    fn a_device_shorter_than_reported_ends_early() {
        // The driver said 8 KiB; the medium holds 4 KiB (a `Read + Seek` short read).
        let mut r = AlignedReader::new(std::io::Cursor::new(pattern(4096)), 512, 8192);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, pattern(4096));
    }
}
