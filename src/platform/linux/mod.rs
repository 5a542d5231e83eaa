//! Linux: block devices from sysfs (`sysfs`), `sethostname(2)`, `/dev/urandom`, POSIX mode and
//! uid/gid, `flock(2)`, DMI from sysfs, and scripts in their own process group. Each function
//! does one system-level thing and decides nothing: when to call it is the agent's or the
//! writer's choice.

mod at;
pub mod start;
pub mod sysfs;

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

pub use crate::probe::Probe;
pub use at::{
    create_final_dir, create_staged_dir, create_staged_file, creates_final, finish_staged_file,
    hands_group_down, is_own_group, mkdir_may_differ,
};
pub use sysfs::ProbeRoots;

use crate::facts::Meta;
use crate::probe::Rules;

/// Opens a `--source` or candidate device (or image file) for reading, with direct I/O where
/// the kernel allows it (`O_DIRECT`), behind a sector-aligned reader (`media::aligned`, 4 KiB
/// alignment, any logical block size divides it): the drive is read once, straight into
/// primer's buffer, so no page cache is filled at the read and dropped again when the last user
/// closes the device (a measured tenth of a first run's CPU went to that). Where direct I/O is
/// refused (tmpfs, some FUSE filesystems: `EINVAL` at the open or at the first read) the same
/// reader reads through the page cache.
pub fn open_device(path: &Path) -> io::Result<crate::media::aligned::AlignedReader<DirectFile>> {
    use std::io::Seek;
    let mut dev = DirectFile::open(path)?;
    // A block device's metadata says 0 bytes: its end is where `lseek` puts it.
    let len = dev.file.seek(io::SeekFrom::End(0))?;
    Ok(crate::media::aligned::AlignedReader::new(
        dev,
        crate::media::aligned::DEFAULT_SECTOR,
        len,
    ))
}

/// A file read at aligned offsets into aligned buffers (what `AlignedReader` asks), with direct
/// I/O until the kernel refuses it.
pub struct DirectFile {
    file: File,
    direct: bool,
}

impl DirectFile {
    /// Opens `path` read-only with direct I/O, or through the page cache where the kernel
    /// refuses direct I/O at the open (`EINVAL`). The probe (`sysfs`) puts it behind an
    /// `AlignedReader` with its own window and the size sysfs gave.
    fn open(path: &Path) -> io::Result<DirectFile> {
        match fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => Ok(DirectFile { file, direct: true }),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(DirectFile {
                file: File::open(path)?,
                direct: false,
            }),
            Err(e) => Err(e),
        }
    }
}

impl crate::media::aligned::SectorDevice for DirectFile {
    fn read_sectors(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Direct I/O refused at the read (the open accepted it): read through the page
                // cache from here on.
                Err(e) if self.direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    use nix::fcntl::{fcntl, FcntlArg, OFlag};
                    let flags = fcntl(&self.file, FcntlArg::F_GETFL).map_err(io::Error::from)?;
                    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_DIRECT;
                    fcntl(&self.file, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

/// Enumerates block devices and ranks the config-drive candidates, waiting up to `wait` for a
/// late device (inotify on /dev plus short polling).
pub fn probe_devices(roots: &ProbeRoots, rules: &Rules, wait: Duration) -> Probe {
    sysfs::probe_wait(roots, rules, wait)
}

/// The DMI system UUID under `root` (`sys/class/dmi/id/product_uuid`), bounded; `None` when
/// unreadable.
pub fn system_uuid(root: &Path) -> Option<String> {
    use std::io::Read;
    let p = crate::paths::resolve_in_root(root, "sys/class/dmi/id/product_uuid").ok()?;
    let mut s = String::new();
    File::open(p).ok()?.take(256).read_to_string(&mut s).ok()?;
    Some(s.trim().to_string())
}

/// The effective user id of this process (`--sensitive` queries are root's).
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Sets the running kernel's host name.
pub fn set_hostname(name: &str) -> io::Result<()> {
    nix::unistd::sethostname(name).map_err(io::Error::from)
}

/// Writes `seed` to `/dev/urandom`: mixed into the pool without being credited, which is the
/// only safe thing to do with bytes whose origin primer cannot vouch for.
pub fn seed_entropy(seed: &[u8]) -> io::Result<()> {
    let dev = Path::new("/dev/urandom");
    fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .and_then(|mut f| f.write_all(seed))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dev.display())))
}

/// Gives `path` (not following a final symlink for the owner) the owner and mode of `meta`.
pub fn set_owner_mode(path: &Path, meta: Meta) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
}

/// Gives an open file the owner and mode of `meta`.
pub fn set_owner_mode_file(f: &File, meta: Meta) -> io::Result<()> {
    std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))?;
    f.set_permissions(fs::Permissions::from_mode(meta.mode))
}

/// Prepares `opts` to create a file private from the start (0600; the final mode follows
/// before it is visible).
pub fn private_file(opts: &mut fs::OpenOptions) -> &mut fs::OpenOptions {
    opts.mode(0o600)
}

/// Prepares `b` to create a directory private from the start (0700).
pub fn private_dir(b: &mut fs::DirBuilder) -> &mut fs::DirBuilder {
    b.mode(0o700)
}

/// Opens `path` read-only without blocking (`O_NONBLOCK`: a FIFO or device planted there cannot
/// hang the run in `open`; it changes nothing for a regular file) and without taking a
/// terminal; `follow`: whether a final symbolic link is followed (`O_NOFOLLOW` otherwise, for a
/// path already resolved inside the root).
pub fn open_nonblocking(path: &Path, follow: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = if follow { 0 } else { nix::libc::O_NOFOLLOW };
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | nofollow)
        .open(path)
}

/// Opens the state or configuration file `path` for reading ([`open_nonblocking`], following
/// links as before), refusing what is not a file's bytes: a FIFO, socket or device
/// (`InvalidInput`; the caller names the path). With the file's length from the same `fstat`.
/// A directory opens, and fails at its read as before.
pub fn open_for_read(path: &Path) -> io::Result<(File, u64)> {
    use std::os::unix::fs::FileTypeExt;
    let f = open_nonblocking(path, true)?;
    let m = f.metadata()?;
    let t = m.file_type();
    if t.is_fifo() || t.is_socket() || t.is_char_device() || t.is_block_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((f, m.len()))
}

/// Makes a written file durable (`fsync`).
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Makes a directory's entries durable (`fsync` on the directory).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` unless `to` exists, atomically (`renameat2(RENAME_NOREPLACE)`) or not
/// at all: an error where the filesystem does not support the flag (NFS, 9p: `EINVAL`), never
/// the look-then-rename of [`rename_noreplace`], which another process can slip between. For
/// what must not replace another run's entry (the run lock).
pub fn rename_noreplace_atomic(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}

/// Renames `from` to `to` unless `to` exists (`renameat2(RENAME_NOREPLACE)`; a plain rename
/// where the filesystem does not support the flag and `to` is still missing).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS)
            if fs::symlink_metadata(to).is_err() =>
        {
            fs::rename(from, to)
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Swaps `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`): both must exist. How a
/// finished directory replaces a non-empty one, which no rename can overwrite.
pub fn rename_exchange(a: &Path, b: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(io::Error::from)
}

/// Most directories a [`Filesystems`] remembers; past it it starts again empty (memory stays
/// bounded whatever the plan; only `stat` calls are repeated).
const MAX_DEVS: usize = 1 << 16;

/// What the writer learns of the filesystems under its root in one run, so that each question
/// is put to the kernel once: the device of each directory it flushes (a directory the writer
/// made is on its parent's device: `mkdir` never makes a mount point, and a rename never moves
/// a directory to another filesystem), and whether each device's filesystem commits metadata
/// in order. A first run asked both of the same directories in up to four rounds (the flush,
/// the record's order check twice, the check of other filesystems). Decides nothing: which
/// directories to flush, and when, is the writer's choice.
#[derive(Default)]
pub struct Filesystems {
    /// Directory -> its device (`st_dev`), or `None`: the writer made it, its parent's.
    devs: std::collections::HashMap<std::path::PathBuf, Option<u64>>,
    /// Device -> whether its filesystem keeps a crash to a prefix of its metadata changes.
    ordered: Vec<(u64, bool)>,
}

impl Filesystems {
    /// Records that the writer made the directory `dir` in its parent (or renamed one it made
    /// there into place): on the parent's device. No system call.
    pub fn made(&mut self, dir: &Path) {
        if self.devs.len() >= MAX_DEVS {
            self.devs.clear();
        }
        self.devs.insert(dir.to_path_buf(), None);
    }

    /// Forgets everything learnt (anything may have changed: a script ran, and could have
    /// mounted something).
    pub fn forget_all(&mut self) {
        self.devs.clear();
        self.ordered.clear();
    }

    /// The device of the directory `dir`: known, its parent's for a directory the writer made,
    /// or asked (`stat`, following a link as the flush's `open` does) and remembered.
    fn dev(&mut self, dir: &Path) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let mut d = dir;
        let mut made = Vec::new();
        let dev = loop {
            match (self.devs.get(d), d.parent()) {
                (Some(Some(dev)), _) => break *dev,
                (Some(None), Some(parent)) => {
                    made.push(d);
                    d = parent;
                }
                _ => {
                    let dev = fs::metadata(d)?.dev();
                    made.push(d);
                    break dev;
                }
            }
        };
        if self.devs.len() + made.len() >= MAX_DEVS {
            self.devs.clear();
        }
        for m in made {
            self.devs.insert(m.to_path_buf(), Some(dev));
        }
        Ok(dev)
    }

    /// Whether the filesystem holding `dir` (device `dev`) orders its metadata: asked once per
    /// device (`orders_metadata`). A filesystem that cannot be told (`statfs` fails) counts as
    /// unordered, and that answer is not kept: the next directory on it asks again.
    fn orders(&mut self, dir: &Path, dev: u64) -> bool {
        if let Some(&(_, o)) = self.ordered.iter().find(|(d, _)| *d == dev) {
            return o;
        }
        let Some(t) = fs_type(dir) else {
            return false;
        };
        let o = orders_metadata(t, dev);
        self.ordered.push((dev, o));
        o
    }

    /// Flushes each filesystem holding one of `dirs` once (`syncfs` on the first directory
    /// seen on each device): files staged under a target root may sit on several filesystems
    /// (a separate `/var`), and `syncfs` flushes only the one its descriptor is on. `false`
    /// when any flush failed and the caller must flush each file.
    pub fn sync_filesystems(&mut self, dirs: &[&Path]) -> bool {
        let mut devices = Vec::new();
        for d in dirs {
            let Ok(dev) = self.dev(d) else { return false };
            if devices.contains(&dev) {
                continue;
            }
            if !File::open(d).is_ok_and(|f| nix::unistd::syncfs(&f).is_ok()) {
                return false;
            }
            devices.push(dev);
        }
        true
    }

    /// Fsyncs each of `dirs` (in the order given) that sits on a filesystem holding none of
    /// `keep`: renames made on one filesystem reach its journal in order, but nothing orders
    /// them against another filesystem's journal (a separate `/var`). Used between the run's
    /// files and its record when they are on different filesystems. A directory whose
    /// filesystem cannot be told is fsynced.
    pub fn sync_dirs_apart(&mut self, dirs: &[&Path], keep: &[&Path]) -> io::Result<()> {
        let kept: Vec<u64> = keep.iter().filter_map(|d| self.dev(d).ok()).collect();
        for d in dirs {
            let same = self.dev(d).is_ok_and(|dev| kept.contains(&dev));
            if !same {
                sync_dir(d)?;
            }
        }
        Ok(())
    }

    /// Flushes again (`syncfs`) each filesystem holding one of `dirs` that does not commit
    /// metadata changes in the order they were made, so that renames made after the run's
    /// one flush are durable before primer exits there. Ordered: XFS, btrfs, ext4 with a
    /// journal (its `jbd2` entry under `/proc/fs/jbd2`), and tmpfs/ramfs (never durable
    /// anyway). Everything else — ext2, ext4 without a journal, vfat, a filesystem that cannot
    /// be told — is flushed. Returns how many filesystems were flushed.
    pub fn sync_unordered(&mut self, dirs: &[&Path]) -> io::Result<usize> {
        let mut seen = Vec::new();
        let mut flushed = 0;
        for d in dirs {
            let Ok(dev) = self.dev(d) else { continue };
            if seen.contains(&dev) {
                continue;
            }
            // A directory gone since it was staged into (its device remembered) is skipped:
            // another on its filesystem flushes it.
            let f = if self.orders(d, dev) {
                None
            } else {
                match File::open(d) {
                    Ok(f) => Some(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            };
            seen.push(dev);
            if let Some(f) = f {
                nix::unistd::syncfs(&f).map_err(io::Error::from)?;
                flushed += 1;
            }
        }
        Ok(flushed)
    }
}

/// `statfs`'s magic of ext2, ext3 and ext4 alike.
const EXT_MAGIC: i64 = 0xEF53;

/// The local filesystems primer knows the behaviour of: ext2/3/4, then XFS, btrfs, tmpfs and
/// ramfs (each of the last four orders its metadata: `orders_metadata`; all five give `mkdir`
/// exactly the mode asked and the creator's ids: `at::mkdir_may_differ`).
const LOCAL_FS: [i64; 5] = [
    EXT_MAGIC,
    0x5846_5342, // XFS
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0x8584_58f6, // ramfs
];

/// The `statfs` magic of the filesystem holding `dir`; `None` when it cannot be asked.
fn fs_type(dir: &Path) -> Option<i64> {
    #[allow(clippy::unnecessary_cast)] // the type of `f_type` differs between libcs
    nix::sys::statfs::statfs(dir)
        .ok()
        .map(|st| st.filesystem_type().0 as i64)
}

/// Whether the filesystem of type `t` (its `statfs` magic) on device `dev` keeps a crash to a
/// prefix of its metadata changes (see `Filesystems::sync_unordered`).
fn orders_metadata(t: i64, dev: u64) -> bool {
    if LOCAL_FS[1..].contains(&t) {
        return true;
    }
    if t != EXT_MAGIC {
        return false;
    }
    // ext2/3/4 share the magic; a mount with a journal has `/proc/fs/jbd2/NAME-8` (NAME the
    // block device's, from sysfs; an external journal is named after its own device, which
    // `NAME-` still prefixes for the common internal one only: such a mount is flushed again).
    let link = format!(
        "/sys/dev/block/{}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let Some(name) = fs::read_link(link)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    else {
        return false;
    };
    fs::symlink_metadata(format!("/proc/fs/jbd2/{name}-8")).is_ok()
}

/// Makes a symbolic link `link` pointing to `target`.
pub fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// `/var/lib/primer`: where primer's state lives on a running Linux system.
pub fn state_dir() -> std::path::PathBuf {
    std::path::PathBuf::from("/var/lib/primer")
}

/// An exclusive lock on an open file, held until dropped (or the process dies).
pub type FileLock = nix::fcntl::Flock<File>;

/// Tries to take an exclusive lock on `file` without waiting. `Err((file, busy))`: the file
/// back, and whether another holder has it (`false`: another error, in the message).
pub fn try_lock(file: File) -> Result<FileLock, (File, bool, io::Error)> {
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        // The errno's own text (`EAGAIN: Try again`), as the lock's messages always showed.
        Err((f, e)) => Err((
            f,
            e == nix::errno::Errno::EWOULDBLOCK,
            io::Error::new(io::Error::from(e).kind(), e.to_string()),
        )),
    }
}

/// The pid holding an flock on `f`, from `/proc/locks` (matched by device and inode).
pub fn lock_holder(f: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().ok()?;
    let want = (
        nix::sys::stat::major(m.dev()),
        nix::sys::stat::minor(m.dev()),
        m.ino(),
    );
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (major and minor in hex)
        let f: Vec<&str> = l.split_whitespace().collect();
        let i = f.iter().position(|x| *x == "FLOCK")?;
        let pid: u32 = f.get(i + 3)?.parse().ok()?;
        let mut id = f.get(i + 4)?.split(':');
        let major = u64::from_str_radix(id.next()?, 16).ok()?;
        let minor = u64::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        ((major, minor, ino) == want).then_some(pid)
    })
}

/// A command for a script at `path`: run from `/`, in its own process group (so `kill_tree`
/// reaches whatever it starts), with a default PATH when primer has none (systemd gives one;
/// an initramfs hook may not).
pub fn script_command(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.current_dir("/").process_group(0);
    if std::env::var_os("PATH").is_none() {
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    cmd
}

/// Nothing to do on Linux once a script has started: its process group is its own
/// (`script_command`). On Windows this puts it in a Job Object.
pub fn track(_child: &Child) {}

/// Nothing to forget on Linux (Windows drops the script's Job Object).
pub fn untrack(_child: &Child) {}

/// Kills a script started by `script_command` and its process group (a process that left the
/// group, such as a `setsid` grandchild, escapes), then reaps it.
pub fn kill_tree(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
}

/// Whether file descriptor `fd` is the journal stream systemd connected (`JOURNAL_STREAM` is
/// `DEVICE:INODE` of that stream; it is inherited, so it is compared, not just tested).
pub fn journal_stream(fd: i32) -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    // SAFETY: fstat on a raw fd number only reads its metadata; an invalid fd is an error.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match nix::sys::stat::fstat(fd) {
        Ok(st) => dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino),
        Err(_) => false,
    }
}

/// Reads a small text file whole, at most `max` bytes (longer: the first `max`), lossily.
fn read_bounded(path: &Path, max: u64) -> Option<String> {
    use std::io::Read;
    /// The first read's size: a command line or a boot id fits.
    const FIRST: u64 = 4096;
    let mut f = File::open(path).ok()?;
    let first = usize::try_from(max.min(FIRST)).ok()?;
    let mut v = vec![0; first];
    let n = loop {
        match f.read(&mut v) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    };
    v.truncate(n);
    // The kernel's files (`/proc/cmdline`, `boot_id`) are one line given whole by one read: a
    // short read ending the line is all there is (one read, not a series of doubling ones).
    // Anything else is read on to the end, bounded.
    if n == 0 || (n < first && v.ends_with(b"\n")) {
        return Some(String::from_utf8_lossy(&v).into_owned());
    }
    f.take(max - n as u64).read_to_end(&mut v).ok()?;
    Some(String::from_utf8_lossy(&v).into_owned())
}

/// The running kernel's command line (`/proc/cmdline`), bounded; `None` when unreadable. The
/// hidden `PRIMER_CMDLINE_FILE` names another file to read instead, so tests can give a command
/// line to the real binary.
pub fn kernel_cmdline() -> Option<String> {
    let path = std::env::var_os("PRIMER_CMDLINE_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/proc/cmdline".into());
    // One byte over the parser's limit, so that it sees (and reports) a longer text.
    read_bounded(&path, crate::probe::cmdline::CMDLINE_MAX as u64 + 1)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, a UUID the kernel draws at each boot);
/// `None` when unreadable. `PRIMER_BOOT_ID_FILE` names another file (tests).
pub fn boot_id() -> Option<String> {
    let path = std::env::var_os("PRIMER_BOOT_ID_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/proc/sys/kernel/random/boot_id".into());
    let s = read_bounded(&path, 64)?;
    let id = s.trim();
    // A UUID: anything else is not a boot id (and never reaches the status file).
    (id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .then(|| id.to_ascii_lowercase())
}

/// `read_bounded`: one read for a kernel line, the whole of anything else, never over `max`.
#[cfg(test)]
mod read_bounded_tests {
    use super::read_bounded;

    #[test]
    fn whole_lines_short_reads_and_the_bound() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        let cases: [(Vec<u8>, u64, usize); 5] = [
            (b"a line\n".to_vec(), 64, 7),
            (b"no newline".to_vec(), 64, 10),
            (Vec::new(), 64, 0),
            // Longer than the first read: read on to the end.
            (
                [b'x'; 9000].iter().chain(b"\n").copied().collect(),
                64 << 10,
                9001,
            ),
            // Longer than the bound: the first `max` bytes.
            (vec![b'y'; 9000], 5000, 5000),
        ];
        for (content, max, want) in cases {
            std::fs::write(&p, &content).unwrap();
            let got = read_bounded(&p, max).unwrap();
            assert_eq!(got.len(), want);
            assert_eq!(got.as_bytes(), &content[..want]);
        }
    }
}

/// `Filesystems`: each directory's device and each device's order asked once per run.
#[cfg(test)]
mod filesystems_tests {
    use super::Filesystems;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn devices_are_asked_once_and_made_directories_take_their_parents() {
        let t = tempfile::tempdir().unwrap();
        let dev = std::fs::metadata(t.path()).unwrap().dev();
        let mut f = Filesystems::default();
        // Made by the writer (as far as `f` knows): its device is its parent's, no lookup of
        // its own (it does not even exist here).
        let made = t.path().join("a/b");
        f.made(&t.path().join("a"));
        f.made(&made);
        assert_eq!(f.dev(&made).unwrap(), dev);
        assert_eq!(f.devs.get(t.path()), Some(&Some(dev)));
        assert_eq!(f.devs.get(&made), Some(&Some(dev)));
        // Asked once per device: the answer is kept for every directory on it.
        assert!(f.sync_unordered(&[t.path(), &made]).is_ok());
        assert_eq!(f.ordered.len(), 1);
        // A directory that cannot be looked at is skipped, as before.
        let gone = t.path().join("gone");
        let mut g = Filesystems::default();
        assert_eq!(g.sync_unordered(&[&gone]).unwrap(), 0);
        assert!(g.ordered.is_empty());
        // Everything learnt goes with `forget_all` (a script may have mounted something).
        f.forget_all();
        assert!(f.devs.is_empty() && f.ordered.is_empty());
        assert!(f.sync_filesystems(&[t.path()]));
    }
}

#[cfg(test)]
mod direct_read_tests {
    use super::open_device;
    use std::io::{Read, Seek, SeekFrom};
    use std::path::Path;

    /// An image whose size is no multiple of any sector, on a filesystem with direct I/O (the
    /// repository's) and on one without it (tmpfs: `O_DIRECT` refused at the open, read through
    /// the page cache): byte-granular reads anywhere, across windows, at and past the end, give
    /// the file's bytes, and nothing past it.
    #[test]
    fn direct_and_fallback_reads_equal_the_file() {
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 + i / 4093) as u8).collect();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&repo).unwrap();
        for dir in [repo.as_path(), Path::new("/dev/shm")] {
            let t = tempfile::tempdir_in(dir).unwrap();
            let p = t.path().join("drive.img");
            std::fs::write(&p, &data).unwrap();
            let mut r = open_device(&p).unwrap();
            for (at, len) in [
                (0usize, 1usize),
                (4095, 2),
                (262_143, 10),
                (100_000, 200_001),
                (299_990, 50),
            ] {
                r.seek(SeekFrom::Start(at as u64)).unwrap();
                let mut got = Vec::new();
                (&mut r).take(len as u64).read_to_end(&mut got).unwrap();
                let end = (at + len).min(data.len());
                assert_eq!(got, data[at..end], "{} at {at}+{len}", dir.display());
            }
            r.seek(SeekFrom::Start(400_000)).unwrap();
            assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0, "past the end");
            assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), data.len() as u64);
        }
    }
}
