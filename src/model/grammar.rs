//! Grammar checks for drive strings that end up in a file or a log: one-line text, DNS names,
//! and a log-safe rendering of any drive string. Pure and leaf-level (every layer may use it);
//! it decides only whether a string fits, never rewrites one into a file.
//!
//! Drive strings come from tenants and control planes. Every renderer and planner that writes a
//! drive string into a file first checks it here against the grammar of what the string stands
//! for (a search domain is a DNS name, a comment is one line), so a newline can never add a line
//! to a configuration file. Renderers call [`line_safe`] again as their last line of defence.

use std::fmt;

/// Why a string does not fit its grammar. `Display` never prints the raw string (it may hold
/// control characters): it names the offending character by its code point and position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    #[error("is empty")]
    Empty,
    #[error("is {len} bytes long (at most {max})")]
    TooLong { len: usize, max: usize },
    #[error("holds the control character U+{code:04X} at byte {at} (a file line cannot carry it)")]
    Control { code: u32, at: usize },
    #[error("holds {ch:?} at byte {at}, which {why}")]
    Forbidden {
        ch: char,
        at: usize,
        why: &'static str,
    },
    #[error("label {label} is {problem}")]
    Label { label: usize, problem: &'static str },
}

/// Characters no line-oriented file can carry: C0 and C1 controls (newline, carriage return,
/// NUL, escape…), DEL, and the Unicode line and paragraph separators (some parsers, YAML and
/// Python's `splitlines` among them, end a line there).
pub fn is_line_breaking(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `s` fits on one line of a text file: no control character of any kind, no line separator.
pub fn line_safe(s: &str) -> Result<(), GrammarError> {
    // Nearly every string checked is printable ASCII: a byte test (eight bytes at a time)
    // settles it without decoding characters.
    if printable_ascii(s.as_bytes()) {
        return Ok(());
    }
    match s.char_indices().find(|(_, c)| is_line_breaking(*c)) {
        Some((at, c)) => Err(GrammarError::Control { code: c as u32, at }),
        None => Ok(()),
    }
}

/// Whether every byte is printable ASCII (0x20 to 0x7e). Eight bytes at a time: the size-
/// optimised build does not vectorise a byte loop, and every step reason, warning and
/// rendered line passes here.
pub fn printable_ascii(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    for chunk in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        let w = u64::from_le_bytes(a);
        // A byte of 0x80 or above; below 0x20 (exact as a yes/no, high bytes excluded
        // above); equal to 0x7f.
        let del = w ^ (ONES * 0x7f);
        if w & HIGH != 0
            || w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0
            || del.wrapping_sub(ONES) & !del & HIGH != 0
        {
            return false;
        }
    }
    words.remainder().iter().all(|b| matches!(b, 0x20..=0x7e))
}

/// [`line_safe`], and none of `forbidden` (for example `#` and `;` where they start a comment).
pub fn line_safe_without(
    s: &str,
    forbidden: &[char],
    why: &'static str,
) -> Result<(), GrammarError> {
    line_safe(s)?;
    if forbidden.iter().all(char::is_ascii)
        && s.is_ascii()
        && !s.bytes().any(|b| forbidden.contains(&char::from(b)))
    {
        return Ok(());
    }
    match s.char_indices().find(|(_, c)| forbidden.contains(c)) {
        Some((at, ch)) => Err(GrammarError::Forbidden { ch, at, why }),
        None => Ok(()),
    }
}

/// Longest DNS name in presentation form without the trailing dot (RFC 1035 §2.3.4).
pub const DNS_NAME_MAX: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
pub const DNS_LABEL_MAX: usize = 63;

/// `s` is a DNS host or domain name by RFC 1123 §2.1: dot-separated labels of ASCII letters,
/// digits and hyphens, each 1 to 63 bytes, not starting or ending with a hyphen, 253 bytes at
/// most. One trailing dot (a rooted name) is accepted. Labels may start with a digit (RFC 1123
/// relaxed RFC 952). Underscores are refused: resolvers and network managers accept them in
/// search lists, but no host name carries one and nothing on a drive needs them.
pub fn dns_name(s: &str) -> Result<(), GrammarError> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() {
        return Err(GrammarError::Empty);
    }
    if name.len() > DNS_NAME_MAX {
        return Err(GrammarError::TooLong {
            len: name.len(),
            max: DNS_NAME_MAX,
        });
    }
    line_safe(s)?;
    for (i, label) in name.split('.').enumerate() {
        let label_no = i + 1;
        if label.is_empty() {
            return Err(GrammarError::Label {
                label: label_no,
                problem: "empty",
            });
        }
        if label.len() > DNS_LABEL_MAX {
            return Err(GrammarError::Label {
                label: label_no,
                problem: "longer than 63 bytes",
            });
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(GrammarError::Label {
                label: label_no,
                problem: "not made of ASCII letters, digits and hyphens",
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(GrammarError::Label {
                label: label_no,
                problem: "starting or ending with a hyphen",
            });
        }
    }
    Ok(())
}

/// Longest drive string a log line carries before it is cut.
pub const LOG_MAX: usize = 200;

/// A drive string as it may appear in a log line or an error message: control characters and
/// line separators escaped (`\n`, `\u{1b}`), backslashes and quotes escaped, cut after
/// [`LOG_MAX`] characters with the original length noted, always in double quotes. A drive
/// cannot forge a log line through it.
///
/// ```
/// use primer::model::grammar::Esc;
/// assert_eq!(Esc("a\nb").to_string(), r#""a\nb""#);
/// ```
#[derive(Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for (n, c) in self.0.chars().enumerate() {
            if n == LOG_MAX {
                return write!(f, "…\" ({} bytes)", self.0.len());
            }
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if is_line_breaking(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Debug for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `s` as a log line or message may carry it: unchanged when it is one line (see
/// [`line_safe`]) of at most `max` characters; a longer clean text cut there with `…`; anything
/// holding a control character or line separator in its [`Esc`] form (escaped, quoted, cut).
/// For texts assembled from drive strings (warnings, step reasons) at the boundary where they
/// leave a stage.
pub fn log_safe(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if line_safe(s).is_err() {
        return Cow::Owned(Esc(s).to_string());
    }
    // At most one character per byte: a text this short is never cut (no decoding needed).
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((at, _)) => Cow::Owned(format!("{}… ({} bytes)", &s[..at], s.len())),
    }
}

/// `s` is a crypt(3) hash as cloud-init recognises one before it sets a password as given
/// (`^\$(1|2a|2y|5|6)(\$.+){2}$` in cc_set_passwords, widened to the ids current libxcrypt
/// writes: bcrypt `2b`/`2x`, scrypt `7`, yescrypt `y` and gost-yescrypt `gy`): `$ID$` and at
/// least two more non-empty `$`-separated fields. A hash lands in one shadow field, so it also
/// must be one line without `:` or whitespace; anything else is a clear-text password.
pub fn crypt_hash(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('$') else {
        return false;
    };
    let Some((id, tail)) = rest.split_once('$') else {
        return false;
    };
    matches!(
        id,
        "1" | "2a" | "2b" | "2x" | "2y" | "5" | "6" | "7" | "y" | "gy"
    ) && tail.split('$').filter(|f| !f.is_empty()).count() >= 2
        && !tail.starts_with('$')
        && !tail.ends_with('$')
        && !s
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || is_line_breaking(c))
}

/// A field of a colon-separated account file (`/etc/passwd`, `shadow`, `group`, `gshadow`):
/// one line, no `:` (the field separator).
pub fn account_field(s: &str) -> Result<(), GrammarError> {
    line_safe_without(s, &[':'], "separates the fields of an account file")
}

/// A sudoers rule primer writes after a user name, one line of a drop-in: no control character
/// (a newline would start a line of the drive's choosing), no trailing backslash (it continues
/// the line onto the next rule), not empty, and no directive (`@include`, `@includedir`,
/// `#include`, `#includedir`), which sudo reads only at the start of a line but which makes the
/// prefixed line invalid and so the whole sudoers policy unusable.
pub fn sudo_rule(s: &str) -> Result<(), GrammarError> {
    line_safe(s)?;
    let t = s.trim();
    if t.is_empty() {
        return Err(GrammarError::Empty);
    }
    if t.ends_with('\\') {
        return Err(GrammarError::Forbidden {
            ch: '\\',
            at: s.len() - 1,
            why: "continues the rule onto the next line of the drop-in",
        });
    }
    for (at, _) in s.match_indices(['@', '#']) {
        let rest = &s[at + 1..];
        if rest.starts_with("include") {
            return Err(GrammarError::Forbidden {
                ch: s[at..].chars().next().unwrap_or('@'),
                at,
                why: "starts an include directive, which a rule may not hold",
            });
        }
    }
    Ok(())
}

// ---- cloud-config system keys (timezone, locale, ntp, ca_certs, mounts) ----

/// Longest time zone name accepted (the longest in tzdata is 32 bytes).
pub const TZ_NAME_MAX: usize = 64;

/// `s` is a tz database zone name as `/usr/share/zoneinfo` names its files (`Europe/Paris`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+5`, `UTC`): `/`-separated components of ASCII
/// letters, digits, `.`, `_`, `-` and `+`, none empty, none starting with `.` or `-` (so no
/// `..`, no hidden file, no option), no leading `/`. The file's existence is the planner's
/// second check.
pub fn tz_name(s: &str) -> Result<(), GrammarError> {
    if s.is_empty() {
        return Err(GrammarError::Empty);
    }
    if s.len() > TZ_NAME_MAX {
        return Err(GrammarError::TooLong {
            len: s.len(),
            max: TZ_NAME_MAX,
        });
    }
    line_safe(s)?;
    let mut at = 0;
    for (i, comp) in s.split('/').enumerate() {
        let label = i + 1;
        if comp.is_empty() {
            return Err(GrammarError::Label {
                label,
                problem: "empty",
            });
        }
        if comp.starts_with('.') || comp.starts_with('-') {
            return Err(GrammarError::Label {
                label,
                problem: "starting with a dot or a hyphen",
            });
        }
        if let Some((off, ch)) = comp
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
        {
            return Err(GrammarError::Forbidden {
                ch,
                at: at + off,
                why: "is not in a time zone name",
            });
        }
        at += comp.len() + 1;
    }
    Ok(())
}

/// Longest locale name accepted.
pub const LOCALE_MAX: usize = 64;

/// `s` is a POSIX locale name as `/etc/default/locale` carries it: `C`, `POSIX`, `C.UTF-8`, or
/// `ll[_CC][.CHARSET][@modifier]`: a language of 2 or 3 ASCII lower-case letters, a territory
/// of 2 or 3 upper-case letters or digits, a charset of letters, digits and `-`, a modifier of
/// letters, digits and `_` (`sr_RS.UTF-8@latin`). Nothing a shell line could misread.
pub fn locale_name(s: &str) -> Result<(), GrammarError> {
    if s.is_empty() {
        return Err(GrammarError::Empty);
    }
    if s.len() > LOCALE_MAX {
        return Err(GrammarError::TooLong {
            len: s.len(),
            max: LOCALE_MAX,
        });
    }
    line_safe(s)?;
    let bad = |problem| Err(GrammarError::Label { label: 1, problem });
    let (rest, modifier) = match s.split_once('@') {
        Some((r, m)) => (r, Some(m)),
        None => (s, None),
    };
    let (rest, charset) = match rest.split_once('.') {
        Some((r, c)) => (r, Some(c)),
        None => (rest, None),
    };
    let (lang, territory) = match rest.split_once('_') {
        Some((l, t)) => (l, Some(t)),
        None => (rest, None),
    };
    let special = matches!(lang, "C" | "POSIX") && territory.is_none() && modifier.is_none();
    let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
    if !(special || lang_ok) {
        return bad("a language that is not 2 or 3 lower-case letters");
    }
    if let Some(t) = territory {
        if !((2..=3).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        {
            return bad("a territory that is not 2 or 3 upper-case letters or digits");
        }
    }
    if let Some(c) = charset {
        if c.is_empty()
            || c.len() > 32
            || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("a character set that is not letters, digits and hyphens");
        }
    }
    if let Some(m) = modifier {
        if m.is_empty()
            || m.len() > 32
            || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad("a modifier that is not letters, digits and underscores");
        }
    }
    Ok(())
}

/// `s` is a time server as timesyncd's `NTP=` and chrony's `server`/`pool` take it: an IPv4 or
/// IPv6 address, or a DNS name ([`dns_name`]).
pub fn ntp_server(s: &str) -> Result<(), GrammarError> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    dns_name(s)
}

/// Longest fstab field accepted.
pub const FSTAB_FIELD_MAX: usize = 1024;

/// `s` is one field of an `/etc/fstab` line: not empty, one line, no blank (space and tab
/// separate the fields; primer does not write fstab's `\040` escapes), no `#` (starts a
/// comment) and no `\` (starts an escape), at most [`FSTAB_FIELD_MAX`] bytes.
pub fn fstab_field(s: &str) -> Result<(), GrammarError> {
    if s.is_empty() {
        return Err(GrammarError::Empty);
    }
    if s.len() > FSTAB_FIELD_MAX {
        return Err(GrammarError::TooLong {
            len: s.len(),
            max: FSTAB_FIELD_MAX,
        });
    }
    line_safe_without(
        s,
        &[' ', '#', '\\', '\u{a0}'],
        "cannot be part of an fstab field (separator, comment or escape)",
    )?;
    match s.char_indices().find(|(_, c)| c.is_whitespace()) {
        Some((at, ch)) => Err(GrammarError::Forbidden {
            ch,
            at,
            why: "separates the fields of an fstab line",
        }),
        None => Ok(()),
    }
}

/// Largest PEM text of one `ca_certs.trusted` entry.
pub const PEM_MAX: usize = 64 * 1024;

/// `s` is one or more PEM `CERTIFICATE` blocks and nothing else but blank lines: every block
/// `-----BEGIN CERTIFICATE-----`, lines of base64, `-----END CERTIFICATE-----`, with a body
/// that decodes. Returns the number of blocks. Linear in `s`; at most [`PEM_MAX`] bytes.
pub fn pem_certificates(s: &str) -> Result<usize, GrammarError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if s.len() > PEM_MAX {
        return Err(GrammarError::TooLong {
            len: s.len(),
            max: PEM_MAX,
        });
    }
    let bad = |label, problem| Err(GrammarError::Label { label, problem });
    let mut blocks = 0;
    let mut body: Option<String> = None;
    for (i, raw) in s.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw
            .strip_suffix('\r')
            .unwrap_or(raw)
            .trim_end_matches([' ', '\t']);
        line_safe(line)?;
        match body.as_mut() {
            None if line.is_empty() => {}
            None if line == BEGIN => body = Some(String::new()),
            None => return bad(line_no, "outside a BEGIN/END CERTIFICATE block"),
            Some(b) if line == END => {
                use base64::Engine;
                let ok = !b.is_empty()
                    && base64::engine::general_purpose::STANDARD
                        .decode(b.as_bytes())
                        .is_ok_and(|d| d.first() == Some(&0x30));
                if !ok {
                    return bad(
                        line_no,
                        "the end of a block whose body is not DER in base64",
                    );
                }
                blocks += 1;
                body = None;
            }
            Some(b) => {
                if !line
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
                {
                    return bad(line_no, "not base64 inside a certificate block");
                }
                b.push_str(line);
            }
        }
    }
    if body.is_some() {
        return bad(0, "an unterminated certificate block");
    }
    if blocks == 0 {
        return Err(GrammarError::Empty);
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time test says what the byte loop says, whatever the offending byte's
    /// place.
    #[test]
    fn printable_ascii_is_the_byte_test() {
        for n in 0..24 {
            for bad in [0u8, 0x09, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xc3, 0xff, b'a'] {
                for at in 0..=n {
                    let mut v = vec![b'x'; n];
                    if at < n {
                        v[at] = bad;
                    }
                    let want = v.iter().all(|b| matches!(b, 0x20..=0x7e));
                    assert_eq!(printable_ascii(&v), want, "{v:?}");
                }
            }
        }
        assert_eq!(log_safe("abc", 3), "abc");
        assert_eq!(log_safe("abcd", 3), "abc… (4 bytes)");
        assert_eq!(log_safe("ééé", 3), "ééé");
        assert_eq!(log_safe("éééé", 3), "ééé… (8 bytes)");
    }

    #[test]
    fn line_safety() {
        assert!(line_safe("example.com").is_ok());
        assert!(line_safe("x ü y").is_ok());
        for bad in [
            "a\nb",
            "a\rb",
            "a\0b",
            "a\u{1b}[31m",
            "a\u{7f}",
            "a\u{85}",
            "a\u{2028}",
        ] {
            assert!(line_safe(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            line_safe("ab\n").unwrap_err().to_string(),
            "holds the control character U+000A at byte 2 (a file line cannot carry it)"
        );
        assert!(line_safe_without("a#b", &['#', ';'], "starts a comment").is_err());
        assert!(line_safe_without("a.b", &['#', ';'], "starts a comment").is_ok());
        // Past the ASCII fast paths: a non-ASCII string, a non-ASCII forbidden character.
        assert!(line_safe_without("ü#", &['#'], "starts a comment").is_err());
        assert!(line_safe_without("aüb", &['ü'], "is refused").is_err());
        assert!(line_safe_without("aüb", &['#'], "starts a comment").is_ok());
        assert!(line_safe("tab\there").is_err());
    }

    #[test]
    fn dns_names() {
        for good in [
            "example.com",
            "example.com.",
            "a",
            "1a.2b",
            "xn--bcher-kva.example",
            &format!("{}.x", "a".repeat(63)),
        ] {
            assert_eq!(dns_name(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "a b",
            "a\nup rm -rf /",
            "ex#ample",
            "bücher.example",
            &format!("{}.x", "a".repeat(64)),
            &["abcdefghi"; 26].join("."),
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaped_for_logs() {
        assert_eq!(Esc("plain").to_string(), "\"plain\"");
        assert_eq!(
            Esc("a\nWARN forged\u{1b}\"\\").to_string(),
            r#""a\nWARN forged\u{1b}\"\\""#
        );
        let long = "x".repeat(1000);
        let s = Esc(&long).to_string();
        assert!(s.ends_with("…\" (1000 bytes)"), "{s}");
        assert!(s.len() < 220);
    }

    #[test]
    fn log_safe_texts() {
        assert_eq!(log_safe("plain", 10), "plain");
        assert_eq!(log_safe("a\nb", 10), r#""a\nb""#);
        assert_eq!(log_safe("abcdef", 3), "abc… (6 bytes)");
    }

    #[test]
    fn account_fields_sudo_rules_and_crypt_hashes() {
        assert!(account_field("Ada Lovelace,,,").is_ok());
        assert!(account_field("a:b").is_err() && account_field("a\nb").is_err());
        assert!(sudo_rule("ALL=(ALL) NOPASSWD:ALL").is_ok());
        assert!(sudo_rule("ALL=(#1000) ALL").is_ok());
        for bad in [
            "",
            "  ",
            "ALL=(ALL) ALL\nroot ALL=(ALL) ALL",
            "@includedir /tmp",
            "@include /tmp/x",
            "#includedir /tmp",
            "ALL=(ALL) ALL #include /x",
            "ALL=(ALL) ALL \\",
        ] {
            assert!(sudo_rule(bad).is_err(), "{bad:?}");
        }
        assert!(crypt_hash("$5$salt$hash") && crypt_hash("$2x$10$abc"));
        assert!(!crypt_hash("$5$") && !crypt_hash("$5$$x") && !crypt_hash("plain"));
    }
    #[test]
    fn system_key_grammars() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
        ] {
            assert_eq!(tz_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/shadow",
            "../x",
            "Europe/../../x",
            "a//b",
            "Europe/Ber lin",
            "a\nb",
            ".hidden",
            "-x",
        ] {
            assert!(tz_name(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "C",
            "POSIX",
            "C.UTF-8",
            "en_US.UTF-8",
            "de_DE",
            "sr_RS.UTF-8@latin",
            "ast_ES.UTF-8",
        ] {
            assert_eq!(locale_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "en US",
            "en_US.UTF-8\nX=1",
            "EN_us",
            "en_US.UTF-8;x",
            "e",
            "en_US.",
            "en@",
        ] {
            assert!(locale_name(bad).is_err(), "{bad:?}");
        }
        assert!(ntp_server("192.0.2.1").is_ok() && ntp_server("2001:db8::1").is_ok());
        assert!(ntp_server("a b").is_err() && ntp_server("x\nNTP=y").is_err());
        assert!(fstab_field("defaults,nofail").is_ok() && fstab_field("UUID=ab-12").is_ok());
        for bad in ["", "a b", "a\tb", "a\nb", "a#b", "a\\040b"] {
            assert!(fstab_field(bad).is_err(), "{bad:?}");
        }
        let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(pem), Ok(1));
        assert_eq!(pem_certificates(&format!("{pem}\n{pem}")), Ok(2));
        for bad in [
            "",
            "x",
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n",
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(pem_certificates(bad).is_err(), "{bad:?}");
        }
    }
}
