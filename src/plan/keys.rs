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

/// Splits an `authorized_keys` options list off the start of `line` the way sshd does
/// (`auth_parse_options`): the list ends at the first space or tab outside double quotes, and
/// `\"` inside quotes is a literal quote. Each option is a name (`no-pty`) or `name="value"`;
/// anything else (an unterminated quote, a bare value, an empty option) is refused, so sshd and
/// primer never disagree on where the options end and the key begins.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let b = line.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < b.len() && (quoted || (b[i] != b' ' && b[i] != b'\t')) {
        if quoted && b[i] == b'\\' && b.get(i + 1) == Some(&b'"') {
            i += 2;
            continue;
        }
        if b[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    if quoted {
        return Err("options: unterminated double quote".into());
    }
    let (opts, rest) = line.split_at(i);
    check_options(opts)?;
    Ok((opts, rest.trim_start_matches([' ', '\t'])))
}

/// Checks an options list: comma-separated `name` or `name="value"` (value: any text, `\"`
/// escaped), names made of ASCII letters, digits, `-`, `_` and `@`/`.` (vendor options).
fn check_options(opts: &str) -> Result<(), String> {
    let b = opts.as_bytes();
    let mut i = 0;
    let mut n = 0;
    loop {
        n += 1;
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b"-_@.".contains(&b[i])) {
            i += 1;
        }
        if i == start {
            return Err(format!("options: option {n} has no name"));
        }
        if b.get(i) == Some(&b'=') {
            if b.get(i + 1) != Some(&b'"') {
                return Err(format!(
                    "options: option {n} has a value outside double quotes"
                ));
            }
            i += 2;
            loop {
                match b.get(i) {
                    None => return Err("options: unterminated double quote".into()),
                    Some(b'\\') if b.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
        }
        match b.get(i) {
            None => return Ok(()),
            Some(b',') => i += 1,
            Some(_) => {
                return Err(format!(
                    "options: option {n} is followed by something other than a comma"
                ))
            }
        }
    }
}

/// Longest options list accepted for `disable_root_opts` (cloud-init's default is ~150 bytes).
const MAX_OPTIONS: usize = 1024;

/// Checks an `authorized_keys` options list given on its own (`disable_root_opts`): one line,
/// bounded, parsed as sshd parses options (see [`split_options`]): the whole text must be the
/// options, so nothing of it can be read as a key.
pub fn check_options_list(opts: &str) -> Result<(), String> {
    if opts.len() > MAX_OPTIONS {
        return Err(format!("longer than {MAX_OPTIONS} bytes"));
    }
    crate::model::grammar::line_safe(opts).map_err(|e| format!("options {e}"))?;
    let (list, rest) = split_options(opts)?;
    if !rest.is_empty() || list.is_empty() {
        return Err("not one options list (a space or tab outside double quotes)".into());
    }
    Ok(())
}

/// `line` (a key line, possibly with its own options) with `opts` in place of its options, as
/// cloud-init's `setup_user_keys(.., options)` writes it. A line whose key type cannot be found
/// is returned as it is (validation refuses it).
pub fn with_options(line: &str, opts: &str) -> String {
    let line = line.trim();
    let first = line.split([' ', '\t']).next().unwrap_or("");
    if KEY_TYPES.contains(&first) {
        return format!("{opts} {line}");
    }
    match split_options(line) {
        Ok((_, rest)) if KEY_TYPES.contains(&rest.split([' ', '\t']).next().unwrap_or("")) => {
            format!("{opts} {rest}")
        }
        _ => line.to_string(),
    }
}

/// Validates one key line per sshd's `authorized_keys` format: no control characters; an
/// optional options list (double quotes honoured, see [`split_options`]); a known key type;
/// base64 key data whose embedded type names the same type; an optional comment. Returns the
/// line verbatim (surrounding white space removed) or why it was refused.
pub fn validate_key_line(line: &str) -> Result<String, String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("empty".into());
    }
    if line.len() > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    // One line of the file: no control character (newline, NUL, escape...), no line separator.
    crate::model::grammar::line_safe(line).map_err(|e| format!("key line {e}"))?;
    let first = line.split([' ', '\t']).next().unwrap_or("");
    // The type is the first token, or the first after an options list (sshd tries the line as
    // a key first, then skips the options).
    let body = if KEY_TYPES.contains(&first) {
        line
    } else {
        let (_, rest) = split_options(line)?;
        let ty = rest.split([' ', '\t']).next().unwrap_or("");
        if !KEY_TYPES.contains(&ty) {
            return Err(
                "no known key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*, *-cert-v01)"
                    .to_string(),
            );
        }
        rest
    };
    let mut tokens = body.split([' ', '\t']).filter(|t| !t.is_empty());
    let ty = tokens.next().unwrap_or("");
    let data = tokens.next().ok_or("key type without key data")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| "key data is not base64".to_string())?;
    // The blob starts with a length-prefixed copy of the key type.
    let inner = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4usize.checked_add(n)?))
        .ok_or("key data is truncated")?;
    if inner != ty.as_bytes() {
        return Err(format!(
            "key data is for {}, not {ty}",
            crate::model::grammar::Esc(&String::from_utf8_lossy(inner))
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
        assert!(validate_key_line(&format!("{ED}\u{2028}x")).is_err());
    }

    #[test]
    fn options_follow_sshd_quoting() {
        for good in [
            format!("command=\"a b\",no-pty {ED}"),
            format!("no-pty,from=\"10.0.0.0/8\" {ED}"),
            format!("command=\"echo \\\"x y\\\"\",restrict {ED}"),
            format!("environment=\"A=b c\"  {ED}"),
        ] {
            assert_eq!(validate_key_line(&good), Ok(good.clone()), "{good}");
        }
        for (bad, why) in [
            (format!("command=\"a b {ED}"), "unterminated"),
            (format!("command=x {ED}"), "outside double quotes"),
            (format!("no-pty,,x {ED}"), "no name"),
            (format!("command=\"a\"x {ED}"), "other than a comma"),
            ("no-pty ssh-foo AAAA".to_string(), "no known key type"),
        ] {
            let e = validate_key_line(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
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

    #[test]
    fn options_lists_and_replacing_a_key_s_options() {
        let ed =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl c";
        for ok in [
            "no-pty",
            r#"no-pty,command="echo \"hi\"; exit 1",from="10.0.0.1""#,
            crate::plan::users::DISABLE_ROOT_OPTS,
        ] {
            assert_eq!(check_options_list(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "no-pty ssh-rsa",
            "command=\"x",
            "command=x",
            "no-pty,",
            "a\nb",
            &"x".repeat(2000),
        ] {
            assert!(check_options_list(bad).is_err(), "{bad:?}");
        }
        for (line, want) in [
            (ed.to_string(), format!("no-pty {ed}")),
            (format!("  {ed}  "), format!("no-pty {ed}")),
            (
                format!("restrict,command=\"a b\" {ed}"),
                format!("no-pty {ed}"),
            ),
            ("not a key".to_string(), "not a key".to_string()),
        ] {
            let got = with_options(&line, "no-pty");
            assert_eq!(got, want);
        }
        // The default options in front of a key make a line sshd's grammar accepts.
        let line = with_options(ed, crate::plan::users::DISABLE_ROOT_OPTS);
        assert_eq!(validate_key_line(&line), Ok(line.clone()));
    }
}
