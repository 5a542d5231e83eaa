//! The local copy of the drive without its passwords: primer keeps a private copy of every
//! drive file, but a password is never stored in clear anywhere (only its crypt hash, in
//! /etc/shadow). Pure: decides, per drive file, the bytes the copy holds. Files that carry a
//! password are rewritten without it where the format allows (OpenStack `meta_data.json`) and
//! replaced by a short note otherwise (CloudStack's password file, an OVF environment or a
//! user-data blob holding a plain password). Never prints a password, not even in the note.

use crate::model::userdata::{PasswordValue, UserData};
use crate::model::Instance;
use crate::state;

/// The plain passwords the drive carries (drive password, `#cloud-config` `password`,
/// `chpasswd` plain entries, `users:` `plain_text_passwd`).
pub fn plain_passwords<'a>(instance: &'a Instance, ud: &'a UserData) -> Vec<&'a [u8]> {
    let cc = &ud.cloud_config;
    let mut v: Vec<&[u8]> = Vec::new();
    v.extend(instance.admin_pass.iter().map(|s| s.expose()));
    v.extend(cc.password.iter().map(|s| s.expose()));
    for (_, p) in &cc.chpasswd.users {
        if let PasswordValue::Plain(s) = p {
            v.push(s.expose());
        }
    }
    for u in cc.users.iter().chain(cc.user.iter()) {
        v.extend(u.plain_text_passwd.iter().map(|s| s.expose()));
    }
    v.retain(|p| !p.is_empty());
    v
}

fn note(path: &str, data: &[u8]) -> Vec<u8> {
    format!(
        "# primer: {path} held a password, which primer never keeps in clear; this copy stands \
         in for it. sha256 of the original: {}\n",
        state::sha256_hex(data)
    )
    .into_bytes()
}

fn is_user_data(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    matches!(name.as_str(), "user_data" | "user-data" | "user_data.txt")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The bytes the local copy keeps for drive file `path`.
pub fn copy_content(path: &str, data: &[u8], instance: &Instance, ud: &UserData) -> Vec<u8> {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    if matches!(name, "meta_data.json" | "meta-data.json") {
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(data) {
            let mut changed = m.remove("admin_pass").is_some();
            if let Some(serde_json::Value::Object(meta)) = m.get_mut("meta") {
                changed |= meta.remove("admin_pass").is_some();
            }
            if changed {
                let mut out = serde_json::to_vec_pretty(&m).unwrap_or_default();
                out.push(b'\n');
                return out;
            }
        }
    }
    let passwords = plain_passwords(instance, ud);
    let carries = name.starts_with("vm_password")
        || name.starts_with("vm-password")
        || (name.ends_with(".xml") && instance.admin_pass.is_some())
        || (is_user_data(path) && {
            let cc = &ud.cloud_config;
            cc.password.is_some()
                || cc
                    .chpasswd
                    .users
                    .iter()
                    .any(|(_, p)| matches!(p, PasswordValue::Plain(_)))
                || cc
                    .users
                    .iter()
                    .chain(cc.user.iter())
                    .any(|u| u.plain_text_passwd.is_some())
        })
        || passwords.iter().any(|p| contains(data, p));
    if carries {
        note(path, data)
    } else {
        data.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Format, Secret};
    use crate::source::userdata::{parse_user_data, UserDataLimits};

    fn inst(pass: Option<&str>) -> Instance {
        let mut i = Instance::new(Format::OpenStack, "latest", "i");
        i.admin_pass = pass.map(|p| Secret::new(p.as_bytes().to_vec()));
        i
    }

    #[test]
    fn meta_data_loses_its_passwords_only() {
        let i = inst(Some("pw-123456"));
        let ud = UserData::default();
        let md = br#"{"uuid":"i","admin_pass":"pw-123456","meta":{"admin_pass":"pw-123456","role":"web"}}"#;
        let out = copy_content("openstack/latest/meta_data.json", md, &i, &ud);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["uuid"], "i");
        assert_eq!(v["meta"]["role"], "web");
        assert!(v.get("admin_pass").is_none() && v["meta"].get("admin_pass").is_none());
        // Deterministic, and a file without a password is kept byte for byte.
        assert_eq!(
            out,
            copy_content("openstack/latest/meta_data.json", md, &i, &ud)
        );
        let plain = br#"{"uuid":"i"}"#;
        assert_eq!(
            copy_content("openstack/latest/meta_data.json", plain, &i, &ud),
            plain
        );
    }

    #[test]
    fn password_files_and_user_data_with_passwords_become_notes() {
        let i = inst(Some("cs-pass-77"));
        let ud = UserData::default();
        let out = copy_content(
            "cloudstack/password/vm_password.txt",
            b"cs-pass-77\n",
            &i,
            &ud,
        );
        assert!(String::from_utf8_lossy(&out).starts_with("# primer: "));
        assert!(!String::from_utf8_lossy(&out).contains("cs-pass-77"));
        // Any other file that holds the password verbatim.
        let out = copy_content(
            "openstack/latest/vendor_data.json",
            b"{\"x\":\"cs-pass-77\"}",
            &i,
            &ud,
        );
        assert!(!String::from_utf8_lossy(&out).contains("cs-pass-77"));

        let raw = b"#cloud-config\nchpasswd:\n  users:\n    - {name: a, password: zz-top-secret, type: text}\n";
        let (ud, _) = parse_user_data(Some(raw), &[], &UserDataLimits::default());
        let i = inst(None);
        let out = copy_content("openstack/latest/user_data", raw, &i, &ud);
        assert!(!String::from_utf8_lossy(&out).contains("zz-top-secret"));
        // User data without a plain password is kept.
        let raw = b"#!/bin/sh\necho hi\n";
        let (ud, _) = parse_user_data(Some(raw), &[], &UserDataLimits::default());
        assert_eq!(copy_content("user-data", raw, &i, &ud), raw);
    }
}
