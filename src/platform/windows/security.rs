//! Windows security calls: the private/public ACL model behind `Meta` (private: a protected
//! DACL granting SYSTEM and Administrators full control, as OpenSSH requires of
//! `administrators_authorized_keys`; public: the parent's inherited ACL), reading that model
//! back, a file handle's path, whether this process is elevated, and whether a configuration
//! file's owner and DACL leave it to SYSTEM and Administrators (`config_refusal`, pure). Private files get their
//! DACL when they are created (`create_private_file`), never after their content is in them;
//! their owner is repaired to Administrators when it is neither SYSTEM nor Administrators.
//! Decides nothing.

use std::fs::File;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, LocalFree, ERROR_ALREADY_EXISTS, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    GetNamedSecurityInfoW, SetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    CreateWellKnownSid, GetAce, GetSecurityDescriptorDacl, GetSecurityDescriptorOwner,
    GetTokenInformation, InitializeAcl, IsWellKnownSid, TokenElevation,
    WinBuiltinAdministratorsSid, WinLocalSystemSid, ACCESS_ALLOWED_ACE, ACE_HEADER, ACL,
    ACL_REVISION, DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    SECURITY_MAX_SID_SIZE, TOKEN_ELEVATION, TOKEN_QUERY, UNPROTECTED_DACL_SECURITY_INFORMATION,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, GetFinalPathNameByHandleW, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, FILE_GENERIC_WRITE,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_ALWAYS,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::{from_wide, wide};

/// Private file: SYSTEM and Administrators, full control, nothing inherited.
const PRIVATE_FILE: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";
/// Private directory: the same, inherited by what is created inside.
const PRIVATE_DIR: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// A Win32 `BOOL` result as `io::Result`, with the thread's last error.
fn check(ok: i32, what: &str) -> io::Result<()> {
    if ok == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// A `WIN32_ERROR` return as `io::Result`.
fn check_err(code: u32, what: &str) -> io::Result<()> {
    if code != 0 {
        let e = io::Error::from_raw_os_error(code as i32);
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Gives `path` the private DACL (protected, SYSTEM + Administrators) or, for `private ==
/// false`, an unprotected empty DACL: only what it inherits from its parent.
pub fn set_private(path: &Path, private: bool) -> io::Result<()> {
    let name = wide(path.as_os_str());
    if private {
        let sddl = if path.is_dir() {
            PRIVATE_DIR
        } else {
            PRIVATE_FILE
        };
        let sddl = wide(std::ffi::OsStr::new(sddl));
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor freed below.
        check(
            unsafe {
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    sddl.as_ptr(),
                    SDDL_REVISION_1,
                    &mut sd,
                    std::ptr::null_mut(),
                )
            },
            "ConvertStringSecurityDescriptorToSecurityDescriptorW",
        )?;
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = std::ptr::null_mut();
        // SAFETY: `sd` is a valid descriptor; the DACL pointer points into it.
        // An owner other than SYSTEM or Administrators could rewrite the DACL: it becomes
        // Administrators in the same call that sets the DACL, so no moment has the private
        // DACL with the wrong owner or the new owner with the old DACL. An owner that cannot
        // be read is left alone (the platform does not say; nothing better can be done).
        let mut admins = match owner_is_system_or_admins(path) {
            Some(false) => Some(well_known_sid(WinBuiltinAdministratorsSid)?),
            _ => None,
        };
        let (owner_flag, owner_sid): (u32, PSID) = match &mut admins {
            Some(sid) => (OWNER_SECURITY_INFORMATION, sid.as_mut_ptr().cast()),
            None => (0, std::ptr::null_mut()),
        };
        // SAFETY: `sd` is a valid descriptor; the DACL pointer points into it.
        let r = check(
            unsafe { GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted) },
            "GetSecurityDescriptorDacl",
        )
        .and_then(|()| {
            // SAFETY: `name` is NUL-terminated; `dacl` lives in `sd`, freed after the call;
            // `owner_sid` is null or a valid SID in `admins`, alive until the end of scope.
            check_err(
                unsafe {
                    SetNamedSecurityInfoW(
                        name.as_ptr(),
                        SE_FILE_OBJECT,
                        owner_flag
                            | DACL_SECURITY_INFORMATION
                            | PROTECTED_DACL_SECURITY_INFORMATION,
                        owner_sid,
                        std::ptr::null_mut(),
                        dacl,
                        std::ptr::null(),
                    )
                },
                if owner_flag != 0 {
                    "SetNamedSecurityInfoW (owner Administrators, private DACL)"
                } else {
                    "SetNamedSecurityInfoW (private DACL)"
                },
            )
        });
        // SAFETY: allocated by ConvertStringSecurityDescriptor…W with LocalAlloc.
        unsafe { LocalFree(sd as _) };
        r.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    } else {
        // An ACL header with no entries: with UNPROTECTED, Windows adds the inherited entries.
        let mut buf = [0u64; 4];
        let acl = buf.as_mut_ptr().cast::<ACL>();
        // SAFETY: `buf` is 32 bytes, 8-aligned, enough for an empty ACL.
        check(
            unsafe { InitializeAcl(acl, 32, ACL_REVISION) },
            "InitializeAcl",
        )?;
        // SAFETY: `name` is NUL-terminated; `acl` outlives the call.
        check_err(
            unsafe {
                SetNamedSecurityInfoW(
                    name.as_ptr(),
                    SE_FILE_OBJECT,
                    DACL_SECURITY_INFORMATION | UNPROTECTED_DACL_SECURITY_INFORMATION,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    acl,
                    std::ptr::null(),
                )
            },
            "SetNamedSecurityInfoW",
        )
    }
}

/// The path an open file has now (`GetFinalPathNameByHandleW`, `\\?\` form).
pub fn path_of(f: &File) -> io::Result<PathBuf> {
    let mut buf = vec![0u16; 1024];
    loop {
        let cap = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: the handle is open; `buf` has `cap` elements.
        let n = unsafe {
            GetFinalPathNameByHandleW(f.as_raw_handle() as HANDLE, buf.as_mut_ptr(), cap, 0)
        };
        if n == 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < buf.len() {
            return Ok(from_wide(&buf));
        }
        if buf.len() >= 1 << 16 {
            return Err(io::Error::other("path longer than 64 Ki characters"));
        }
        buf.resize(n as usize + 1, 0);
    }
}

/// Whether this process runs with an elevated token (an administrator's full rights, SYSTEM).
pub fn is_elevated() -> bool {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of this process; `token` is closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return false;
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut len = 0u32;
    // SAFETY: the buffer is a TOKEN_ELEVATION of the size given.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast(),
            std::mem::size_of::<TOKEN_ELEVATION>() as u32,
            &mut len,
        )
    };
    // SAFETY: opened above.
    unsafe { CloseHandle(token) };
    ok != 0 && elevation.TokenIsElevated != 0
}

/// The private file descriptor (`PRIVATE_FILE`), converted once and kept for the process's
/// life (its address is handed to every `CreateFileW` of a private file). `None` when the
/// conversion failed (then creation fails: a private file is never created without its DACL).
fn private_file_sd() -> Option<PSECURITY_DESCRIPTOR> {
    static SD: OnceLock<Option<usize>> = OnceLock::new();
    let sd = SD.get_or_init(|| {
        let sddl = wide(std::ffi::OsStr::new(PRIVATE_FILE));
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated; the descriptor is never freed (kept for the
        // process's life, shared read-only).
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        (ok != 0 && !sd.is_null()).then_some(sd as usize)
    });
    sd.map(|p| p as PSECURITY_DESCRIPTOR)
}

/// Opens the run lock file `path` for writing, creating it private when missing (the DACL in
/// `CreateFileW`'s security attributes, as `create_private_file`); an existing one is opened
/// as it is and given the private DACL (it holds no secret: only its ACL is repaired).
/// Shared for reading, writing and deleting: a second run opens it to wait on `LockFileEx`.
pub fn open_private_lock(path: &Path) -> io::Result<File> {
    let (h, existed) = create_with_private_sd(path, OPEN_ALWAYS)?;
    // SAFETY: a fresh handle we own from here on.
    let f = unsafe { File::from_raw_handle(h as _) };
    if existed {
        set_private(path, true)?;
    }
    Ok(f)
}

/// `CreateFileW` for writing with the private descriptor in its security attributes (applied
/// only when the file is created) and `disposition`; whether the file already existed.
fn create_with_private_sd(path: &Path, disposition: u32) -> io::Result<(HANDLE, bool)> {
    let sd = private_file_sd().ok_or_else(|| {
        io::Error::other(format!(
            "{}: cannot build the private security descriptor",
            path.display()
        ))
    })?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd,
        bInheritHandle: 0,
    };
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated; `sa` and the descriptor it points to outlive the call.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            FILE_GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            &sa,
            disposition,
            FILE_ATTRIBUTE_NORMAL,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE || h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // OPEN_ALWAYS on an existing file succeeds with ERROR_ALREADY_EXISTS as the last error.
    // SAFETY: reads the thread's last error, set by the call above.
    let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
    Ok((h, existed))
}

/// Creates the new file `path` for writing (it must not exist) with the private DACL in place
/// from its first instant (`SECURITY_ATTRIBUTES` on `CreateFileW`): nothing written into it is
/// ever readable by anyone but SYSTEM and Administrators. Sharing as std's default, so a
/// second run can open the run lock to wait on it.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let (h, _) = create_with_private_sd(path, CREATE_NEW)?;
    // SAFETY: a fresh handle we own from here on.
    Ok(unsafe { File::from_raw_handle(h as _) })
}

/// A well-known SID in a buffer of the maximal size.
fn well_known_sid(kind: i32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut len = SECURITY_MAX_SID_SIZE;
    // SAFETY: `buf` holds `len` bytes; no domain SID for a builtin or local-system SID.
    check(
        unsafe {
            CreateWellKnownSid(
                kind,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        },
        "CreateWellKnownSid",
    )?;
    Ok(buf)
}

/// Whether `path`'s owner is SYSTEM or Administrators; `None` when it cannot be read.
pub fn owner_is_system_or_admins(path: &Path) -> Option<bool> {
    let name = wide(path.as_os_str());
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor, freed below.
    let r = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    if r != 0 || sd.is_null() {
        return None;
    }
    let mut owner: PSID = std::ptr::null_mut();
    let mut defaulted = 0;
    // SAFETY: `sd` is the descriptor just returned; `owner` points into it and is read before
    // it is freed.
    let ok = unsafe {
        GetSecurityDescriptorOwner(sd, &mut owner, &mut defaulted) != 0
            && !owner.is_null()
            && (IsWellKnownSid(owner, WinLocalSystemSid) != 0
                || IsWellKnownSid(owner, WinBuiltinAdministratorsSid) != 0)
    };
    // SAFETY: allocated by GetNamedSecurityInfoW.
    unsafe { LocalFree(sd as _) };
    Some(ok)
}

/// SIDs trusted to own or write primer's configuration: SYSTEM, Administrators and
/// TrustedInstaller (`NT SERVICE\TrustedInstaller`, owner of much of a stock Windows).
const TRUSTED_SIDS: [&str; 3] = [
    "S-1-5-18",
    "S-1-5-32-544",
    "S-1-5-80-956008885-3459058467-3233405555-2219165050-3181198888",
];

/// Rights that let a trustee change what primer reads: write/append data (add a file or a
/// subdirectory on a directory), delete a child, delete, rewrite the DACL, take ownership,
/// and the generic write/all rights. Writing attributes or extended attributes is left out:
/// it changes no byte primer reads (stock ProgramData grants it to Users).
const WRITE_RIGHTS: u32 = 0x0000_0002 // FILE_WRITE_DATA / FILE_ADD_FILE
    | 0x0000_0004 // FILE_APPEND_DATA / FILE_ADD_SUBDIRECTORY
    | 0x0000_0040 // FILE_DELETE_CHILD
    | 0x0001_0000 // DELETE
    | 0x0004_0000 // WRITE_DAC
    | 0x0008_0000 // WRITE_OWNER
    | 0x1000_0000 // GENERIC_ALL
    | 0x4000_0000; // GENERIC_WRITE

/// One entry of a DACL as the configuration check sees it: an allow entry (any of the allow
/// types) or not, its rights, and its trustee's SID in string form (`None`: an entry whose
/// SID could not be read, e.g. an object ACE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AceView {
    pub allow: bool,
    pub mask: u32,
    pub sid: Option<String>,
}

/// A file's DACL: `Null` (absent or NULL: everyone has every right) or its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaclView {
    Null,
    Entries(Vec<AceView>),
}

/// A readable name for a SID in a refusal: the well-known ones by name, always with the SID.
pub fn trustee_name(sid: &str) -> String {
    let name = match sid {
        "S-1-1-0" => "Everyone",
        "S-1-3-0" => "CREATOR OWNER",
        "S-1-3-1" => "CREATOR GROUP",
        "S-1-5-11" => "Authenticated Users",
        "S-1-5-32-545" => "Users",
        "S-1-5-32-546" => "Guests",
        "S-1-5-4" => "INTERACTIVE",
        "S-1-5-18" => "SYSTEM",
        "S-1-5-32-544" => "Administrators",
        s if s == TRUSTED_SIDS[2] => "TrustedInstaller",
        _ => return sid.to_string(),
    };
    format!("{name} ({sid})")
}

/// Why a configuration file or directory with this owner and DACL must not be read, or
/// `None` when only SYSTEM, Administrators and TrustedInstaller own it and may change it.
/// Pure (tested over constructed ACEs). Deny entries are ignored and inherit-only entries are
/// judged like the others: the check errs on the side of refusing (a protected SYSTEM +
/// Administrators DACL, what `install.ps1` sets, always passes).
pub fn config_refusal(owner: Option<&str>, dacl: &DaclView) -> Option<String> {
    match owner {
        Some(o) if TRUSTED_SIDS.contains(&o) => {}
        Some(o) => {
            return Some(format!(
                "owner {} is not SYSTEM, Administrators or TrustedInstaller",
                trustee_name(o)
            ))
        }
        None => return Some("its owner cannot be read".into()),
    }
    let aces = match dacl {
        DaclView::Null => {
            return Some("it has no DACL (Everyone has full control)".into());
        }
        DaclView::Entries(a) => a,
    };
    aces.iter()
        .filter(|a| a.allow && a.mask & WRITE_RIGHTS != 0)
        .find_map(|a| match a.sid.as_deref() {
            Some(s) if TRUSTED_SIDS.contains(&s) => None,
            Some(s) => Some(format!(
                "its DACL grants {} write access (rights 0x{:08x})",
                trustee_name(s),
                a.mask
            )),
            None => Some(format!(
                "its DACL grants write access (rights 0x{:08x}) to an entry primer cannot read",
                a.mask
            )),
        })
}

/// A SID in string form (`S-1-5-18`).
fn sid_string(sid: PSID) -> Option<String> {
    let mut s: windows_sys::core::PWSTR = std::ptr::null_mut();
    // SAFETY: `sid` points to a SID inside a live descriptor; `s` receives a LocalAlloc'd
    // string, freed below.
    if unsafe { ConvertSidToStringSidW(sid, &mut s) } == 0 || s.is_null() {
        return None;
    }
    let mut len = 0;
    // SAFETY: `s` is NUL-terminated (the call's contract); only read up to the NUL.
    while unsafe { *s.add(len) } != 0 && len < 512 {
        len += 1;
    }
    // SAFETY: `len` u16s were just read from `s`.
    let text = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(s, len) });
    // SAFETY: allocated by ConvertSidToStringSidW.
    unsafe { LocalFree(s as _) };
    Some(text)
}

/// `path`'s owner and DACL as the pure check reads them (`GetNamedSecurityInfoW`).
pub fn read_owner_dacl(path: &Path) -> io::Result<(Option<String>, DaclView)> {
    let name = wide(path.as_os_str());
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; `owner` and `dacl` point into `sd`, a LocalAlloc'd
    // descriptor freed below after they are read.
    check_err(
        unsafe {
            GetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                &mut owner,
                std::ptr::null_mut(),
                &mut dacl,
                std::ptr::null_mut(),
                &mut sd,
            )
        },
        "GetNamedSecurityInfoW",
    )?;
    let owner_sid = (!owner.is_null()).then(|| sid_string(owner)).flatten();
    let view = if dacl.is_null() {
        DaclView::Null
    } else {
        // SAFETY: `dacl` points to a valid ACL inside `sd`.
        let count = unsafe { (*dacl).AceCount };
        let mut aces = Vec::with_capacity(usize::from(count));
        for i in 0..u32::from(count) {
            let mut ace: *mut std::ffi::c_void = std::ptr::null_mut();
            // SAFETY: `i` < AceCount; `ace` points into the ACL.
            if unsafe { GetAce(dacl, i, &mut ace) } == 0 || ace.is_null() {
                aces.push(AceView {
                    allow: true,
                    mask: WRITE_RIGHTS,
                    sid: None,
                });
                continue;
            }
            // SAFETY: every ACE starts with an ACE_HEADER.
            let header = unsafe { &*(ace as *const ACE_HEADER) };
            // The allow types: ACCESS_ALLOWED (0), _OBJECT (5), _CALLBACK (9),
            // _CALLBACK_OBJECT (0xB). Types 0 and 9 hold Mask then the SID at offset 8; the
            // object types' SID sits after optional GUIDs: not read, judged by the mask.
            let allow = matches!(header.AceType, 0 | 5 | 9 | 0xB);
            // SAFETY: every access ACE has a 4-byte mask right after the 4-byte header.
            let mask = unsafe { (*(ace as *const ACCESS_ALLOWED_ACE)).Mask };
            let sid = if matches!(header.AceType, 0 | 1 | 9 | 0xA) && header.AceSize >= 12 {
                // SAFETY: `SidStart` is where the SID begins in these types.
                let p =
                    unsafe { std::ptr::addr_of_mut!((*(ace as *mut ACCESS_ALLOWED_ACE)).SidStart) };
                sid_string(p.cast())
            } else {
                None
            };
            aces.push(AceView { allow, mask, sid });
        }
        DaclView::Entries(aces)
    };
    // SAFETY: allocated by GetNamedSecurityInfoW; nothing points into it any more.
    unsafe { LocalFree(sd as _) };
    Ok((owner_sid, view))
}

/// Why the configuration file or directory `path` must not be read (see `config_refusal`),
/// or `None`. A descriptor that cannot be read is a refusal too: primer does not run on a
/// configuration it cannot vouch for.
pub fn config_untrusted(path: &Path) -> Option<String> {
    match read_owner_dacl(path) {
        Ok((owner, dacl)) => config_refusal(owner.as_deref(), &dacl),
        Err(e) => Some(format!("cannot read its owner and DACL: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_created_new_and_writable() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("secret");
        let mut f = create_private_file(&p).unwrap();
        f.write_all(b"s3cret").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"s3cret");
        // Never over an existing file.
        let e = create_private_file(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"s3cret");
    }

    #[test]
    fn the_run_lock_file_is_created_private_and_reopened() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("lock");
        let first = open_private_lock(&p).unwrap();
        assert!(p.is_file());
        // Opened again while held (a second run waits on it): shared, not refused.
        let second = open_private_lock(&p).unwrap();
        drop((first, second));
        let e = create_private_file(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn well_known_sids_are_recognised() {
        let mut sy = well_known_sid(WinLocalSystemSid).unwrap();
        let mut ba = well_known_sid(WinBuiltinAdministratorsSid).unwrap();
        // SAFETY: both buffers hold valid SIDs.
        unsafe {
            assert!(IsWellKnownSid(sy.as_mut_ptr().cast(), WinLocalSystemSid) != 0);
            assert!(IsWellKnownSid(ba.as_mut_ptr().cast(), WinBuiltinAdministratorsSid) != 0);
            assert!(IsWellKnownSid(ba.as_mut_ptr().cast(), WinLocalSystemSid) == 0);
        }
    }

    fn allow(mask: u32, sid: &str) -> AceView {
        AceView {
            allow: true,
            mask,
            sid: Some(sid.into()),
        }
    }

    const SY: &str = "S-1-5-18";
    const BA: &str = "S-1-5-32-544";
    /// FILE_ALL_ACCESS, what `icacls` shows as (F).
    const FA: u32 = 0x001F_01FF;
    /// Read and execute, (RX).
    const RX: u32 = 0x0012_00A9;

    #[test]
    fn the_install_dacl_passes_the_configuration_check() {
        let d = DaclView::Entries(vec![allow(FA, SY), allow(FA, BA)]);
        assert_eq!(config_refusal(Some(SY), &d), None);
        assert_eq!(config_refusal(Some(BA), &d), None);
        assert_eq!(config_refusal(Some(TRUSTED_SIDS[2]), &d), None);
        // Reading is not writing: Users may read the configuration.
        let d = DaclView::Entries(vec![
            allow(FA, SY),
            allow(FA, BA),
            allow(RX, "S-1-5-32-545"),
        ]);
        assert_eq!(config_refusal(Some(BA), &d), None);
    }

    #[test]
    fn a_configuration_another_trustee_may_change_is_refused_by_name() {
        let user = "S-1-5-21-1004336348-1177238915-682003330-1001";
        for (sid, mask, name) in [
            ("S-1-5-32-545", 0x0000_0002, "Users (S-1-5-32-545)"),
            ("S-1-5-32-545", 0x0000_0004, "Users"),
            ("S-1-5-11", 0x0001_0000, "Authenticated Users"),
            ("S-1-1-0", 0x0004_0000, "Everyone"),
            ("S-1-3-0", 0x1000_0000, "CREATOR OWNER"),
            (user, 0x0008_0000, user),
            (user, 0x4000_0000, user),
            (user, 0x0000_0040, user),
            (user, FA, user),
        ] {
            let d = DaclView::Entries(vec![allow(FA, SY), allow(FA, BA), allow(mask, sid)]);
            let why = config_refusal(Some(BA), &d).unwrap_or_else(|| panic!("{sid} {mask:x}"));
            assert!(why.contains(name) && why.contains("write"), "{why}");
        }
        // An owner outside the three, even with a clean DACL: an owner may rewrite the DACL.
        let d = DaclView::Entries(vec![allow(FA, SY), allow(FA, BA)]);
        let why = config_refusal(Some(user), &d).unwrap();
        assert!(why.contains("owner") && why.contains(user), "{why}");
        assert!(config_refusal(None, &d).unwrap().contains("owner"));
        // No DACL at all is Everyone full control.
        assert!(config_refusal(Some(SY), &DaclView::Null)
            .unwrap()
            .contains("Everyone"));
        // An allow entry whose trustee cannot be read is refused when it may write, and a
        // deny entry or a write-attributes-only grant is no reason to refuse.
        let d = DaclView::Entries(vec![AceView {
            allow: true,
            mask: 0x0000_0002,
            sid: None,
        }]);
        assert!(config_refusal(Some(SY), &d)
            .unwrap()
            .contains("cannot read"));
        let d = DaclView::Entries(vec![
            AceView {
                allow: false,
                mask: FA,
                sid: Some("S-1-1-0".into()),
            },
            allow(0x0000_0110, "S-1-5-32-545"),
        ]);
        assert_eq!(config_refusal(Some(SY), &d), None);
    }

    #[test]
    fn the_private_dacl_reads_back_as_trusted_where_the_platform_keeps_it() {
        // Under wine 8, a Unix-backed drive keeps no security descriptor: record what comes
        // back; on NTFS the private DACL must pass the configuration check.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("primer.yaml");
        std::fs::write(&p, "").unwrap();
        set_private(&p, true).unwrap();
        let (owner, dacl) = read_owner_dacl(&p).expect("GetNamedSecurityInfoW");
        eprintln!(
            "owner {owner:?} dacl {dacl:?} -> {:?}",
            config_refusal(owner.as_deref(), &dacl)
        );
        if let DaclView::Entries(aces) = &dacl {
            if aces.iter().any(|a| a.sid.as_deref() == Some(SY))
                && aces.len() == 2
                && owner.as_deref().is_some_and(|o| TRUSTED_SIDS.contains(&o))
            {
                assert_eq!(config_untrusted(&p), None);
            }
        }
        assert!(config_untrusted(&t.path().join("missing")).is_some());
    }
}
