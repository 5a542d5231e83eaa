//! SSH public key rules: validate one `authorized_keys` line from the drive and merge primer's
//! marked block into an existing file. Pure; never lets a control character or an unknown key
//! type through, never touches lines outside its block.

use base64::Engine;

/// Key types OpenSSH accepts in `authorized_keys` (plain keys, security keys, certificates).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// Longest key line accepted (an 16384-bit RSA key is ~2.8 KB of base64; options add some).
const MAX_LINE: usize = 8192;

pub const BEGIN: &str =
    "# BEGIN primer: keys from the config drive (edits inside this block are replaced)";
pub const END: &str = "# END primer";

/// Validates one key line: no control characters; an optional options prefix; a known key type;
/// base64 key data whose embedded type names the same type. Returns the normalised line
/// (surrounding white space removed) or why it was refused.
pub fn validate_key_line(line: &str) -> Result<String, String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("empty".into());
    }
    if line.len() > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    if line.chars().any(|c| c.is_control()) {
        return Err("contains a control character".into());
    }
    let tokens: Vec<&str> = line.split_whitespace().collect();
    // The type is the first token, or the second when the first is an options list.
    let pos = tokens
        .iter()
        .take(2)
        .position(|t| KEY_TYPES.contains(t))
        .ok_or_else(|| {
            "no known key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*, *-cert-v01)".to_string()
        })?;
    let ty = tokens[pos];
    let data = tokens.get(pos + 1).ok_or("key type without key data")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| "key data is not base64".to_string())?;
    // The blob starts with a length-prefixed copy of the key type.
    let inner = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .ok_or("key data is truncated")?;
    if inner != ty.as_bytes() {
        return Err(format!(
            "key data is for {:?}, not {ty}",
            String::from_utf8_lossy(inner)
        ));
    }
    if line.contains(BEGIN) || line.contains(END) {
        return Err("contains primer's block marker".into());
    }
    Ok(line.to_string())
}

/// Returns the `authorized_keys` content: `existing` with primer's block replaced by `keys`
/// (or appended when absent, or removed when `keys` is empty). Lines outside the block are kept.
pub fn render_authorized_keys(existing: &str, keys: &[String]) -> String {
    let mut before: Vec<&str> = Vec::new();
    let mut after: Vec<&str> = Vec::new();
    let mut state = 0; // 0 before block, 1 inside, 2 after
    for l in existing.lines() {
        match state {
            0 if l == BEGIN => state = 1,
            0 => before.push(l),
            1 if l == END => state = 2,
            1 => {}
            _ => {
                if l == BEGIN || l == END {
                    // A second block (a crash of another tool?) is dropped too.
                    continue;
                }
                after.push(l)
            }
        }
    }
    let mut out = String::new();
    for l in &before {
        out.push_str(l);
        out.push('\n');
    }
    if !keys.is_empty() {
        out.push_str(BEGIN);
        out.push('\n');
        for k in keys {
            out.push_str(k);
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    for l in &after {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@example";

    #[test]
    fn validate_table() {
        assert!(validate_key_line(ED).is_ok());
        assert!(validate_key_line(&format!("no-pty,command=\"x\" {ED}")).is_ok());
        assert!(validate_key_line("ssh-rsa notbase64!!").is_err());
        assert!(validate_key_line("ssh-foo AAAA").is_err());
        assert!(validate_key_line(&format!("{ED}\u{7}")).is_err());
        // ssh-rsa label but ed25519 data.
        let wrong = ED.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(validate_key_line(&wrong)
            .unwrap_err()
            .contains("not ssh-rsa"));
        assert!(validate_key_line("").is_err());
        assert!(validate_key_line("ssh-ed25519").is_err());
        assert!(validate_key_line("ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn block_merge_keeps_user_lines() {
        let keys = vec![ED.to_string()];
        let user = "ssh-rsa AAAAuser mine\n";
        let once = render_authorized_keys(user, &keys);
        assert!(once.starts_with(user));
        assert!(once.contains(ED));
        let twice = render_authorized_keys(&once, &keys);
        assert_eq!(once, twice);
        let with_after = format!("{once}# added later\n");
        let again = render_authorized_keys(&with_after, &keys);
        assert_eq!(again, with_after);
        let removed = render_authorized_keys(&with_after, &[]);
        assert_eq!(removed, format!("{user}# added later\n"));
    }
}
