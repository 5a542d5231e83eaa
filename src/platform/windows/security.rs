//! Windows security calls: the private/public ACL model behind `Meta` (private: a protected
//! DACL granting SYSTEM and Administrators full control, as OpenSSH requires of
//! `administrators_authorized_keys`; public: the parent's inherited ACL), reading that model
//! back, a file handle's path, and whether this process is elevated. Private files get their
//! DACL when they are created (`create_private_file`), never after their content is in them;
//! their owner is repaired to Administrators when it is neither SYSTEM nor Administrators.
//! Decides nothing.

use std::fs::File;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW,
    SetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    CreateWellKnownSid, GetSecurityDescriptorDacl, GetSecurityDescriptorOwner, GetTokenInformation,
    InitializeAcl, IsWellKnownSid, TokenElevation, WinBuiltinAdministratorsSid, WinLocalSystemSid,
    ACL, ACL_REVISION, DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    SECURITY_MAX_SID_SIZE, TOKEN_ELEVATION, TOKEN_QUERY, UNPROTECTED_DACL_SECURITY_INFORMATION,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, GetFinalPathNameByHandleW, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, FILE_GENERIC_WRITE,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
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
        let r = check(
            unsafe { GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted) },
            "GetSecurityDescriptorDacl",
        )
        .and_then(|()| {
            // SAFETY: `name` is NUL-terminated; `dacl` lives in `sd`, freed after the call.
            check_err(
                unsafe {
                    SetNamedSecurityInfoW(
                        name.as_ptr(),
                        SE_FILE_OBJECT,
                        DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        dacl,
                        std::ptr::null(),
                    )
                },
                "SetNamedSecurityInfoW",
            )
        });
        // SAFETY: allocated by ConvertStringSecurityDescriptor…W with LocalAlloc.
        unsafe { LocalFree(sd as _) };
        r?;
        repair_owner(path)
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

/// Creates the new file `path` for writing (it must not exist) with the private DACL in place
/// from its first instant (`SECURITY_ATTRIBUTES` on `CreateFileW`): nothing written into it is
/// ever readable by anyone but SYSTEM and Administrators. Sharing as std's default, so a
/// second run can open the run lock to wait on it.
pub fn create_private_file(path: &Path) -> io::Result<File> {
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
            CREATE_NEW,
            FILE_ATTRIBUTE_NORMAL,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE || h.is_null() {
        return Err(io::Error::last_os_error());
    }
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

/// Makes Administrators the owner of a private `path` whose owner is anyone else (an owner
/// can always rewrite the DACL, so a private file owned by a user is not private). Leaves an
/// owner it cannot read alone: the platform does not say, and nothing better can be done.
fn repair_owner(path: &Path) -> io::Result<()> {
    if owner_is_system_or_admins(path) != Some(false) {
        return Ok(());
    }
    let mut sid = well_known_sid(WinBuiltinAdministratorsSid)?;
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated; `sid` is a valid SID that outlives the call.
    check_err(
        unsafe {
            SetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION,
                sid.as_mut_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        },
        "SetNamedSecurityInfoW (owner Administrators)",
    )
    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
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
}
