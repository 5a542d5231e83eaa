//! Windows local accounts: create a user when missing (`NetUserAdd`), set its password
//! (`NetUserSetInfo` level 1003) and add it to the local group whose SID is S-1-5-32-544
//! (`CreateWellKnownSid` + `LookupAccountSidW`: the group's name differs by language, it is
//! never hard-coded). Decides nothing (the planner chose the name and validated it); never logs
//! or keeps a password beyond the call (its UTF-16 copy is zeroed).

use std::ffi::OsStr;
use std::io;

use windows_sys::Win32::Foundation::ERROR_MEMBER_IN_ALIAS;
use windows_sys::Win32::NetworkManagement::NetManagement::{
    NERR_Success, NERR_UserNotFound, NetApiBufferFree, NetLocalGroupAddMembers, NetUserAdd,
    NetUserGetInfo, NetUserSetInfo, LOCALGROUP_MEMBERS_INFO_3, UF_DONT_EXPIRE_PASSWD,
    UF_NORMAL_ACCOUNT, UF_SCRIPT, USER_INFO_1, USER_INFO_1003, USER_PRIV_USER,
};
use windows_sys::Win32::Security::{
    CreateWellKnownSid, LookupAccountSidW, WinBuiltinAdministratorsSid, SID_NAME_USE,
};

use super::wide;

/// A NET_API_STATUS as an error naming the call and the account.
fn net_error(call: &str, name: &str, status: u32) -> io::Error {
    io::Error::other(format!(
        "{call} for account {name:?}: status {status} ({})",
        io::Error::from_raw_os_error(status as i32)
    ))
}

/// A UTF-16 buffer zeroed when dropped (a password's copy).
struct SecretWide(Vec<u16>);

impl Drop for SecretWide {
    fn drop(&mut self) {
        for c in self.0.iter_mut() {
            // SAFETY: a valid, aligned element of the vector; volatile so it is not elided.
            unsafe { std::ptr::write_volatile(c, 0) };
        }
    }
}

fn secret_wide(password: &[u8]) -> io::Result<SecretWide> {
    let s = std::str::from_utf8(password).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the password is not UTF-8: Windows passwords are text",
        )
    })?;
    if s.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the password contains NUL, which Windows cannot carry",
        ));
    }
    Ok(SecretWide(s.encode_utf16().chain([0]).collect()))
}

/// Whether the local account `name` exists.
pub fn user_exists(name: &str) -> io::Result<bool> {
    let w = wide(OsStr::new(name));
    let mut buf: *mut u8 = std::ptr::null_mut();
    // SAFETY: `w` is NUL-terminated; `buf` receives a buffer freed below.
    let status = unsafe { NetUserGetInfo(std::ptr::null(), w.as_ptr(), 0, &mut buf) };
    if !buf.is_null() {
        // SAFETY: allocated by NetUserGetInfo.
        unsafe { NetApiBufferFree(buf as _) };
    }
    match status {
        s if s == NERR_Success => Ok(true),
        s if s == NERR_UserNotFound => Ok(false),
        s => Err(net_error("NetUserGetInfo", name, s)),
    }
}

/// The local name of the group whose SID is S-1-5-32-544 (BUILTIN\Administrators).
pub fn administrators_group() -> io::Result<String> {
    let mut sid = [0u8; 68]; // SECURITY_MAX_SID_SIZE
    let mut len = sid.len() as u32;
    // SAFETY: `sid` is a buffer of `len` bytes.
    if unsafe {
        CreateWellKnownSid(
            WinBuiltinAdministratorsSid,
            std::ptr::null_mut(),
            sid.as_mut_ptr() as _,
            &mut len,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut name = [0u16; 256];
    let mut name_len = name.len() as u32;
    let mut domain = [0u16; 256];
    let mut domain_len = domain.len() as u32;
    let mut use_: SID_NAME_USE = 0;
    // SAFETY: buffers and their lengths in characters; `sid` is a valid SID.
    if unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid.as_mut_ptr() as _,
            name.as_mut_ptr(),
            &mut name_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut use_,
        )
    } == 0
    {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("LookupAccountSidW(S-1-5-32-544): {e}"),
        ));
    }
    Ok(super::from_wide(&name).to_string_lossy().into_owned())
}

/// Creates `name` when missing, sets its password when given, and adds it to Administrators
/// when `admin` (already a member: fine).
pub fn ensure_user(name: &str, password: Option<&[u8]>, admin: bool) -> io::Result<()> {
    let wname = wide(OsStr::new(name));
    let pw = password.map(secret_wide).transpose()?;
    if !user_exists(name)? {
        // A new account needs a password that meets the policy; without the drive's, a random
        // one nobody knows (the account is reachable by SSH key only).
        let random;
        let pw_ptr = match &pw {
            Some(p) => p.0.as_ptr(),
            None => {
                random = random_password()?;
                random.0.as_ptr()
            }
        };
        let info = USER_INFO_1 {
            usri1_name: wname.as_ptr() as *mut u16,
            usri1_password: pw_ptr as *mut u16,
            usri1_priv: USER_PRIV_USER,
            usri1_flags: UF_SCRIPT | UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD,
            ..Default::default()
        };
        let mut parm = 0u32;
        // SAFETY: `info` points at NUL-terminated strings that outlive the call.
        let status = unsafe {
            NetUserAdd(
                std::ptr::null(),
                1,
                &info as *const _ as *const u8,
                &mut parm,
            )
        };
        if status != NERR_Success {
            return Err(net_error("NetUserAdd", name, status));
        }
    } else if let Some(p) = &pw {
        let info = USER_INFO_1003 {
            usri1003_password: p.0.as_ptr() as *mut u16,
        };
        let mut parm = 0u32;
        // SAFETY: as above.
        let status = unsafe {
            NetUserSetInfo(
                std::ptr::null(),
                wname.as_ptr(),
                1003,
                &info as *const _ as *const u8,
                &mut parm,
            )
        };
        if status != NERR_Success {
            return Err(net_error("NetUserSetInfo(1003)", name, status));
        }
    }
    if admin {
        let group = administrators_group()?;
        let wgroup = wide(OsStr::new(&group));
        let member = LOCALGROUP_MEMBERS_INFO_3 {
            lgrmi3_domainandname: wname.as_ptr() as *mut u16,
        };
        // SAFETY: one entry pointing at a NUL-terminated name that outlives the call.
        let status = unsafe {
            NetLocalGroupAddMembers(
                std::ptr::null(),
                wgroup.as_ptr(),
                3,
                &member as *const _ as *const u8,
                1,
            )
        };
        if status != NERR_Success && status != ERROR_MEMBER_IN_ALIAS {
            return Err(net_error(
                &format!("NetLocalGroupAddMembers({group})"),
                name,
                status,
            ));
        }
    }
    Ok(())
}

/// 24 random characters from the four classes Windows' complexity rule counts.
fn random_password() -> io::Result<SecretWide> {
    const SETS: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#$%()*+-./:;=?@[]^_{}~",
    ];
    let mut bytes = [0u8; 24];
    getrandom(&mut bytes)?;
    let mut out: Vec<u16> = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set = SETS[i % SETS.len()];
            set[*b as usize % set.len()] as u16
        })
        .collect();
    out.push(0);
    bytes.fill(0);
    Ok(SecretWide(out))
}

fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    use windows_sys::Win32::Security::Cryptography::{
        BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG,
    };
    // SAFETY: `buf` is writable for its length.
    let status = unsafe {
        BCryptGenRandom(
            std::ptr::null_mut(),
            buf.as_mut_ptr(),
            buf.len() as u32,
            BCRYPT_USE_SYSTEM_PREFERRED_RNG,
        )
    };
    if status != 0 {
        return Err(io::Error::other(format!(
            "BCryptGenRandom: status {status:#x}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under wine (scripts/test-windows) and on Windows: the group of S-1-5-32-544 has a name.
    #[test]
    fn administrators_group_is_found_by_sid() {
        let g = administrators_group().unwrap();
        assert!(!g.is_empty());
        assert!(!g.contains('\0'));
    }

    #[test]
    fn passwords_are_text_without_nul() {
        assert!(secret_wide(b"s3cret!").is_ok());
        assert!(secret_wide(b"a\0b").is_err());
        assert!(secret_wide(&[0xff, 0xfe]).is_err());
        let r = random_password().unwrap();
        assert_eq!(r.0.len(), 25);
        assert!(r.0[..24].iter().all(|&c| c > 32 && c < 127));
    }
}

/// API smoke tests of what wine implements (scripts/test-windows runs the library's tests under
/// wine64; on a real Windows they need an elevated shell and change the machine).
#[cfg(test)]
mod smoke {
    /// `SetComputerNameExW(ComputerNamePhysicalDnsHostname)` is accepted (wine stores it in its
    /// registry; Windows applies it at the next boot).
    #[test]
    fn set_computer_name_is_accepted() {
        let r = super::super::set_hostname("primer-smoke");
        assert!(r.is_ok(), "SetComputerNameExW: {r:?}");
    }

    /// `ensure_user` for a missing account: `NetUserAdd` with the drive's password, then the
    /// group of S-1-5-32-544, twice (already a member is fine). Not the password change of an
    /// existing account: wine 8 does not implement `NetUserSetInfo` (its stub raises an
    /// unhandled exception that ends the test process); that is manual test 3.
    #[test]
    fn ensure_user_creates_and_group_add_is_idempotent() {
        let name = "primersmoke";
        let r1 = super::ensure_user(name, Some(b"Sm0ke-Test-Pw!"), true);
        assert!(r1.is_ok(), "first: {r1:?}");
        assert!(super::user_exists(name).unwrap());
        // No password: only the existence check and the group membership again.
        let r2 = super::ensure_user(name, None, true);
        assert!(r2.is_ok(), "second: {r2:?}");
    }
}
