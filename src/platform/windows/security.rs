//! Windows security calls: the private/public ACL model behind `Meta` (private: a protected
//! DACL granting SYSTEM and Administrators full control, as OpenSSH requires of
//! `administrators_authorized_keys`; public: the parent's inherited ACL), reading that model
//! back, a file handle's path, and whether this process is elevated. Decides nothing.

use std::fs::File;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};

use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    GetSecurityDescriptorDacl, GetTokenInformation, InitializeAcl, TokenElevation, ACL,
    ACL_REVISION, DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, TOKEN_ELEVATION, TOKEN_QUERY, UNPROTECTED_DACL_SECURITY_INFORMATION,
};
use windows_sys::Win32::Storage::FileSystem::GetFinalPathNameByHandleW;
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
        r
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
