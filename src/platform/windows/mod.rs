//! Windows: drive letters (`GetLogicalDrives` + `GetDriveTypeW`, raw `\\.\X:` reads by primer's
//! own signature reader), `SetComputerNameExW`, the private/public ACL model for `Meta`,
//! `LockFileEx`, Job Objects for scripts, and the durability calls Windows needs (a write
//! handle to flush a file, `FILE_FLAG_BACKUP_SEMANTICS` to flush a directory). The same names
//! as `linux/`; each function does one system-level thing and decides nothing. What is not done
//! yet fails with a typed "not supported on Windows yet: <what>" error, never a silent no-op.
//! Nothing here parses drive content beyond handing a raw handle to `probe::sig`.

pub mod accounts;
pub mod device;
pub mod drives;
pub mod security;
pub mod service;
pub mod volume;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use windows_sys::Win32::Foundation::{ERROR_LOCK_VIOLATION, HANDLE};
use windows_sys::Win32::Storage::FileSystem::{
    LockFileEx, MoveFileExW, FILE_FLAG_BACKUP_SEMANTICS, LOCKFILE_EXCLUSIVE_LOCK,
    LOCKFILE_FAIL_IMMEDIATELY, MOVEFILE_WRITE_THROUGH,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, TerminateJobObject,
};
use windows_sys::Win32::System::SystemInformation::{
    ComputerNamePhysicalDnsHostname, GetSystemFirmwareTable, SetComputerNameExW,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

pub use crate::probe::Probe;
pub use device::open_device;
pub use drives::ProbeRoots;

use crate::facts::Meta;
use crate::probe::Rules;

/// The error of a feature the Windows side does not have yet: typed (`Unsupported`) and named.
pub fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("not supported on Windows yet: {what}"),
    )
}

/// `s` as a NUL-terminated UTF-16 string for a `W` call.
pub(crate) fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// Enumerates drive letters (CD-ROM, fixed and removable), reads each raw volume's signature
/// and ranks the config-drive candidates with the same policy as Linux, polling up to `wait`
/// for a late drive.
pub fn probe_devices(roots: &ProbeRoots, rules: &Rules, wait: Duration) -> Probe {
    drives::probe_wait(roots, rules, wait)
}

/// The machine's SMBIOS system UUID (`GetSystemFirmwareTable('RSMB')`, parsed by
/// `platform::smbios`), as Linux's `product_uuid` shows it. Only for the running system's own
/// root: under another `--root` (an image being prepared) the firmware is not that system's,
/// and `None` is what Linux gives for a root without `sys/class/dmi`. `None` too when the
/// firmware has no table or no UUID ("no DMI identity to check" for the trust policy).
pub fn system_uuid(root: &Path) -> Option<String> {
    let norm = |p: &Path| {
        p.to_string_lossy()
            .trim_end_matches(['\\', '/'])
            .to_ascii_lowercase()
    };
    if norm(root) != norm(&system_root()) {
        return None;
    }
    crate::platform::smbios::system_uuid(&raw_smbios()?)
}

/// The raw SMBIOS table (`RawSMBIOSData`) from the firmware table provider `RSMB`; `None`
/// when the call fails or the table is larger than the parser accepts.
pub fn raw_smbios() -> Option<Vec<u8>> {
    let provider = u32::from_be_bytes(*b"RSMB");
    // SAFETY: a null buffer of size 0 asks for the size only.
    let need = unsafe { GetSystemFirmwareTable(provider, 0, std::ptr::null_mut(), 0) } as usize;
    if need == 0 || need > crate::platform::smbios::MAX_TABLE + 8 {
        return None;
    }
    let mut buf = vec![0u8; need];
    // SAFETY: `buf` holds `need` bytes.
    let got =
        unsafe { GetSystemFirmwareTable(provider, 0, buf.as_mut_ptr(), u32::try_from(need).ok()?) }
            as usize;
    if got == 0 || got > need {
        return None;
    }
    buf.truncate(got);
    Some(buf)
}

/// Why the configuration file or directory `path` must not be read: an owner other than
/// SYSTEM, Administrators or TrustedInstaller, or a DACL that lets anyone else change it (any
/// authenticated user may create `C:\etc`, or a file in a directory that grants Users write).
/// `None`: it may be read.
pub fn config_untrusted(path: &Path) -> Option<String> {
    security::config_untrusted(path)
}

/// 0 when this process runs elevated (an administrator's full token, or SYSTEM): the Windows
/// counterpart of root for `--sensitive` queries; `u32::MAX` otherwise.
pub fn effective_uid() -> u32 {
    if security::is_elevated() {
        0
    } else {
        u32::MAX
    }
}

/// Sets the computer's DNS host name (`ComputerNamePhysicalDnsHostname`: Windows derives the
/// NetBIOS name from it). Takes effect at the next boot.
pub fn set_hostname(name: &str) -> io::Result<()> {
    let w = wide(OsStr::new(name));
    // SAFETY: `w` is a NUL-terminated UTF-16 string that outlives the call.
    if unsafe { SetComputerNameExW(ComputerNamePhysicalDnsHostname, w.as_ptr()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Windows offers no way to mix caller bytes into the system RNG: a typed refusal.
pub fn seed_entropy(_seed: &[u8]) -> io::Result<()> {
    Err(unsupported("seeding the system entropy pool"))
}

/// Gives `path` the Windows form of `meta`: private (no group or other bits) is a protected
/// DACL for SYSTEM and Administrators only; anything else inherits its parent's ACL. Owner
/// ids are POSIX and not applied (the file belongs to the account running primer).
pub fn set_owner_mode(path: &Path, meta: Meta) -> io::Result<()> {
    security::set_private(path, is_private(meta))
}

/// As `set_owner_mode`, for an open file (applied by its path: the ACL calls take names).
pub fn set_owner_mode_file(f: &File, meta: Meta) -> io::Result<()> {
    let path = security::path_of(f)?;
    security::set_private(&path, is_private(meta))
}

/// Whether `meta` is private on Windows' model: no permission for group or others.
pub fn is_private(meta: Meta) -> bool {
    meta.mode & 0o077 == 0
}

/// Prepares `opts` to create a private file where `create_private_file` cannot be used (the
/// run lock, opened or created): a new file inside primer's private directory inherits its
/// protected ACL, and the ACL is set right after (`set_owner_mode_file`). Sharing stays the default: the run lock file is opened by a second run
/// to wait on `LockFileEx`, which a share mode of 0 would turn into an open error.
pub fn private_file(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts
}

/// Opens the run lock file `path` for writing, created private (the protected DACL in
/// `CreateFileW`'s security attributes) when missing; an existing one gets the private DACL.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    security::open_private_lock(path)
}

/// Creates the new file `path` (it must not exist) for writing, private from its creation:
/// the protected SYSTEM + Administrators DACL is in `CreateFileW`'s security attributes.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    security::create_private_file(path)
}

/// A new directory before its ACL is set (`set_owner_mode` follows at once).
pub fn private_dir(b: &mut fs::DirBuilder) -> &mut fs::DirBuilder {
    b
}

/// Flushes a whole filesystem in one call: not on Windows (`false`: the caller flushes each
/// file with `sync_file`).
pub fn sync_filesystem(_root: &Path) -> bool {
    false
}

/// Opens `path` read-only (see the Linux side: Windows has no FIFO a path could name, and a
/// final link is followed either way).
pub fn open_nonblocking(path: &Path, _follow: bool) -> io::Result<File> {
    File::open(path)
}

/// Opens the state or configuration file `path` for reading, with its length.
pub fn open_for_read(path: &Path) -> io::Result<(File, u64)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    Ok((f, len))
}

/// Makes a written file durable: `FlushFileBuffers` needs a handle with write access.
pub fn sync_file(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.sync_all()
}

/// Makes a directory's entries durable: a directory handle needs `FILE_FLAG_BACKUP_SEMANTICS`
/// and write access to be flushed.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(dir)?
        .sync_all()
}

/// Renames `from` to `to` unless `to` exists (`MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`
/// refuses an existing target atomically).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (wide(from.as_os_str()), wide(to.as_os_str()));
    // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call.
    if unsafe { MoveFileExW(f.as_ptr(), t.as_ptr(), MOVEFILE_WRITE_THROUGH) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The system drive's root (`%SystemDrive%\`, `C:\` when unset): the target root of a live
/// Windows run (the service's `--root`), under which `state::STATE_DIR` is
/// `ProgramData\primer`.
pub fn system_root() -> PathBuf {
    std::env::var_os("SystemDrive")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || PathBuf::from(r"C:\"),
            |d| {
                let mut p = PathBuf::from(d);
                p.push(r"\");
                p
            },
        )
}

/// `C:\ProgramData\primer`: where primer's state lives on a running Windows system, the one
/// state base (`state::STATE_DIR`) under the system drive's root, i.e. `%ProgramData%\primer`
/// on every Windows that keeps ProgramData where setup puts it (Microsoft supports no other).
pub fn state_dir() -> PathBuf {
    system_root().join(crate::state::STATE_DIR.replace('/', "\\"))
}

/// An exclusive lock on an open file (`LockFileEx` on its first byte), held until dropped:
/// closing the handle releases it, also when the process dies.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Tries to take an exclusive lock on `file` without waiting. `Err((file, busy))`: the file
/// back, and whether another holder has it (`false`: another error, in the message).
pub fn try_lock(file: File) -> Result<FileLock, (File, bool, io::Error)> {
    // SAFETY: OVERLAPPED is plain data; zero is offset 0 with no event.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is open for the duration of the call; `ov` outlives it (the call is
    // synchronous: the file was not opened for overlapped I/O).
    let ok = unsafe {
        LockFileEx(
            file.as_raw_handle() as HANDLE,
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut ov,
        )
    };
    if ok != 0 {
        return Ok(FileLock { _file: file });
    }
    let e = io::Error::last_os_error();
    let busy = e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32);
    Err((file, busy, e))
}

/// The holder of a lock: Windows does not tell it.
pub fn lock_holder(_f: &File) -> Option<u32> {
    None
}

/// Makes a symbolic link: the Linux-by-design system links (`/etc/localtime`) have no Windows
/// meaning.
pub fn symlink(_target: &str, link: &Path) -> io::Result<()> {
    Err(unsupported(&format!("symbolic link {}", link.display())))
}

/// A command for a script at `path`, run from the system drive's root. `track` puts it in a
/// Job Object right after it starts, so `kill_tree` reaches whatever it starts.
pub fn script_command(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.current_dir(system_root());
    cmd
}

/// Job Objects of running scripts, by process id.
static JOBS: Mutex<Vec<(u32, OwnedHandle)>> = Mutex::new(Vec::new());

/// Puts a just-started script into its own Job Object, so `kill_tree` ends its descendants
/// too. A child that starts a process before this call returns escapes (std cannot start a
/// process suspended); logged, not fatal.
pub fn track(child: &Child) {
    // SAFETY: no attributes, no name: a new anonymous job.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        tracing::warn!("CreateJobObjectW: {}", io::Error::last_os_error());
        return;
    }
    // SAFETY: `job` is a fresh handle we own from here on.
    let job = unsafe { OwnedHandle::from_raw_handle(job as _) };
    // SAFETY: both handles are open.
    let ok = unsafe {
        AssignProcessToJobObject(
            job.as_raw_handle() as HANDLE,
            child.as_raw_handle() as HANDLE,
        )
    };
    if ok == 0 {
        tracing::warn!(
            "script pid {}: AssignProcessToJobObject: {}",
            child.id(),
            io::Error::last_os_error()
        );
        return;
    }
    if let Ok(mut jobs) = JOBS.lock() {
        jobs.push((child.id(), job));
    }
}

/// Kills a script started by `script_command` with everything in its Job Object (the script
/// alone when `track` could not assign it), then reaps it.
pub fn kill_tree(child: &mut Child) {
    let job = JOBS.lock().ok().and_then(|mut jobs| {
        let i = jobs.iter().position(|(pid, _)| *pid == child.id())?;
        Some(jobs.swap_remove(i).1)
    });
    let had_job = job.is_some();
    // SAFETY: the job handle is open; exit code 1 as `taskkill /f` gives.
    let ended =
        job.is_some_and(|j| unsafe { TerminateJobObject(j.as_raw_handle() as HANDLE, 1) } != 0);
    if !ended {
        // No job, or the job could not be ended: at least the script itself, so the wait
        // below cannot block on it forever.
        if had_job {
            tracing::warn!(
                "TerminateJobObject: {}; killing the script alone",
                io::Error::last_os_error()
            );
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Forgets a finished script's Job Object.
pub fn untrack(child: &Child) {
    if let Ok(mut jobs) = JOBS.lock() {
        jobs.retain(|(pid, _)| *pid != child.id());
    }
}

/// systemd's journal stream: never on Windows.
pub fn journal_stream(_fd: i32) -> bool {
    false
}

/// The path a wide-string buffer holds (up to its first NUL).
pub(crate) fn from_wide(buf: &[u16]) -> PathBuf {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    PathBuf::from(OsString::from_wide(&buf[..end]))
}

/// No kernel command line on Windows.
pub fn kernel_cmdline() -> Option<String> {
    None
}

/// No boot id on Windows: `status --wait` compares nothing and waits for the last run.
pub fn boot_id() -> Option<String> {
    None
}

/// Asks Windows to reboot in `delay_secs` (`InitiateSystemShutdownExW` after enabling
/// `SeShutdownPrivilege` on primer's token), reason "operating system: reconfiguration,
/// planned". The delay lets the run finish recording.
pub fn reboot(message: &str, delay_secs: u32) -> io::Result<()> {
    use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, ERROR_SUCCESS, LUID};
    use windows_sys::Win32::Security::{
        AdjustTokenPrivileges, LookupPrivilegeValueW, LUID_AND_ATTRIBUTES, SE_PRIVILEGE_ENABLED,
        TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES, TOKEN_QUERY,
    };
    use windows_sys::Win32::System::Shutdown::{
        InitiateSystemShutdownExW, SHTDN_REASON_FLAG_PLANNED, SHTDN_REASON_MAJOR_OPERATINGSYSTEM,
        SHTDN_REASON_MINOR_RECONFIG,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo handle of this process; `token` receives a handle closed below.
    if unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY,
            &mut token,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let name = wide(OsStr::new("SeShutdownPrivilege"));
    let mut luid = LUID {
        LowPart: 0,
        HighPart: 0,
    };
    // SAFETY: NUL-terminated name; `luid` is writable.
    let found = unsafe { LookupPrivilegeValueW(std::ptr::null(), name.as_ptr(), &mut luid) } != 0;
    let adjusted = found && {
        let tp = TOKEN_PRIVILEGES {
            PrivilegeCount: 1,
            Privileges: [LUID_AND_ATTRIBUTES {
                Luid: luid,
                Attributes: SE_PRIVILEGE_ENABLED,
            }],
        };
        // SAFETY: `token` is open; `tp` is one privilege.
        unsafe {
            AdjustTokenPrivileges(token, 0, &tp, 0, std::ptr::null_mut(), std::ptr::null_mut()) != 0
                && GetLastError() == ERROR_SUCCESS
        }
    };
    let e = io::Error::last_os_error();
    // SAFETY: opened above.
    unsafe { CloseHandle(token) };
    if !adjusted {
        return Err(io::Error::new(
            e.kind(),
            format!("SeShutdownPrivilege not held: {e}"),
        ));
    }
    let msg = wide(OsStr::new(message));
    // SAFETY: NUL-terminated message; the local machine.
    if unsafe {
        InitiateSystemShutdownExW(
            std::ptr::null(),
            msg.as_ptr(),
            delay_secs,
            0,
            1,
            SHTDN_REASON_MAJOR_OPERATINGSYSTEM
                | SHTDN_REASON_MINOR_RECONFIG
                | SHTDN_REASON_FLAG_PLANNED,
        )
    } == 0
    {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("InitiateSystemShutdownExW: {e}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_lock_is_exclusive_until_dropped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("lock");
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&p)
                .unwrap()
        };
        let first = try_lock(open()).expect("first lock");
        let Err((_f, busy, e)) = try_lock(open()) else {
            panic!("second lock taken while the first is held");
        };
        assert!(busy, "busy expected, got {e}");
        drop(first);
        assert!(try_lock(open()).is_ok(), "lock free after drop");
    }

    #[test]
    fn rename_noreplace_refuses_an_existing_target() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        fs::write(&a, "new").unwrap();
        fs::write(&b, "old").unwrap();
        assert!(rename_noreplace(&a, &b).is_err());
        assert_eq!(fs::read_to_string(&b).unwrap(), "old");
        rename_noreplace(&a, &c).unwrap();
        assert_eq!(fs::read_to_string(&c).unwrap(), "new");
        assert!(!a.exists());
    }

    #[test]
    fn files_and_directories_can_be_flushed() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        fs::write(&f, "x").unwrap();
        sync_file(&f).unwrap();
        sync_dir(t.path()).unwrap();
    }

    #[test]
    fn what_is_not_done_yet_is_a_typed_refusal() {
        let e = seed_entropy(b"seed").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().starts_with("not supported on Windows yet: "));
        let e = symlink("/usr/share/zoneinfo/UTC", Path::new("localtime")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn private_meta_is_no_group_or_other_bits() {
        let m = |mode| Meta {
            mode,
            uid: 0,
            gid: 0,
        };
        assert!(is_private(m(0o600)) && is_private(m(0o700)) && is_private(m(0o400)));
        assert!(!is_private(m(0o644)) && !is_private(m(0o640)) && !is_private(m(0o755)));
    }

    #[test]
    fn the_state_directory_is_programdata_primer_on_the_system_drive() {
        let d = state_dir();
        assert!(d.starts_with(system_root()), "{}", d.display());
        assert!(d.ends_with(r"ProgramData\primer"), "{}", d.display());
        if let Some(pd) = std::env::var_os("ProgramData").filter(|v| !v.is_empty()) {
            let pd = PathBuf::from(pd).join("primer");
            assert!(
                d.to_string_lossy()
                    .eq_ignore_ascii_case(&pd.to_string_lossy()),
                "{} vs %ProgramData% {}",
                d.display(),
                pd.display()
            );
        }
    }
    #[test]
    fn the_firmware_table_parses_or_is_absent() {
        // Recorded by scripts/test-windows: what GetSystemFirmwareTable('RSMB') gives here
        // (wine builds a table from the host's /sys/class/dmi/id).
        let raw = raw_smbios();
        let uuid = raw
            .as_deref()
            .and_then(crate::platform::smbios::system_uuid);
        eprintln!(
            "RSMB: {} bytes, SMBIOS {:?}, {} structures, uuid {uuid:?}",
            raw.as_ref().map_or(0, Vec::len),
            raw.as_ref().and_then(|r| Some((*r.get(1)?, *r.get(2)?))),
            raw.as_ref()
                .map_or(0, |r| crate::platform::smbios::structures(
                    r.get(8..).unwrap_or_default()
                )
                .count())
        );
        if let Some(u) = &uuid {
            assert_eq!(u.len(), 36, "{u}");
            assert_eq!(u, &u.to_ascii_lowercase());
        }
        assert_eq!(system_uuid(&system_root()), uuid);
        assert_eq!(system_uuid(Path::new(r"Z:\some\image")), None);
    }
}
