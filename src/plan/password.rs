//! Passwords: the one gate every password source passes before anything hashes or stores it
//! (length cap, and whether the value is a crypt hash set as given or a clear password to hash),
//! and the keyed digests primer records instead of any hash of a password. Pure: the key comes
//! from the host facts. Never logs, prints or returns a password; a refusal names the length.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::grammar;

/// Longest password accepted, in bytes. libxcrypt refuses passphrases of 512 bytes or more, and
/// SHA-crypt's cost grows with the square of the length (64 KiB: 17 s per hash), so a longer
/// value could only stall the boot.
pub const MAX_PASSWORD_BYTES: usize = 511;

/// What a source may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Always a clear password (the drive's administrator password, `plain_text_passwd`,
    /// `chpasswd` entries typed `text`).
    Clear,
    /// A crypt hash when it looks like one (as cloud-init decides), else a clear password
    /// (`#cloud-config` `password`, untyped `chpasswd` entries).
    ClearOrHash,
    /// Always a crypt hash (a user's `passwd`/`hashed_passwd`, `chpasswd` typed `hash`).
    Hash,
}

/// An accepted password: to hash, or to set as given.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Accepted<'a> {
    Clear(&'a [u8]),
    Hash(&'a str),
}

impl fmt::Debug for Accepted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accepted::Clear(p) => write!(f, "Clear(<redacted {} bytes>)", p.len()),
            Accepted::Hash(_) => f.write_str("Hash(<redacted>)"),
        }
    }
}

/// Why a password was refused. `Display` names the length or the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{len} bytes long (at most {MAX_PASSWORD_BYTES}): refused before any hashing")]
    TooLong { len: usize },
    #[error("given as a crypt hash but not one (expected $1$, $2a$/$2b$/$2x$/$2y$, $5$, $6$, $7$, $y$ or $gy$ followed by two '$'-separated fields, one line without ':')")]
    NotAHash,
}

/// The gate: every password of every source goes through here before it is hashed, compared
/// or stored. The length is checked first, on the raw bytes.
pub fn accept(raw: &[u8], kind: Kind) -> Result<Accepted<'_>, Refused> {
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(Refused::TooLong { len: raw.len() });
    }
    let as_hash = std::str::from_utf8(raw)
        .ok()
        .filter(|s| grammar::crypt_hash(s));
    match (kind, as_hash) {
        (Kind::Clear, _) => Ok(Accepted::Clear(raw)),
        (Kind::ClearOrHash | Kind::Hash, Some(h)) => Ok(Accepted::Hash(h)),
        (Kind::ClearOrHash, None) => Ok(Accepted::Clear(raw)),
        (Kind::Hash, None) => Err(Refused::NotAHash),
    }
}

pub use crate::facts::StateKey;
pub use crate::state::KEY_PATH;

/// HMAC-SHA256 of `parts` (each length-prefixed, so no two part lists collide) under `key`,
/// in hex. What primer records about a secret: without the machine's key it tells nothing,
/// and comparing two of them costs microseconds, unlike a crypt hash.
pub fn keyed_hex(key: &StateKey, parts: &[&[u8]]) -> String {
    match keyed_mac(key, parts) {
        Some(d) => crate::state::hex_lower(&d),
        None => String::new(),
    }
}

/// [`keyed_hex`] as the digest itself (what a plan holds; all zero in the fallback that is
/// never taken).
pub fn keyed_digest(key: &StateKey, parts: &[&[u8]]) -> [u8; 32] {
    keyed_mac(key, parts).unwrap_or_default()
}

fn keyed_mac(key: &StateKey, parts: &[&[u8]]) -> Option<[u8; 32]> {
    // new_from_slice accepts any key length for HMAC; the fallback is never taken.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.key).ok()?;
    for p in parts {
        mac.update(&(p.len() as u64).to_le_bytes());
        mac.update(p);
    }
    Some(mac.finalize().into_bytes().into())
}

/// The digest of what a source asks `user`'s password to be.
pub fn wanted_digest(key: &StateKey, user: &str, value: Accepted<'_>) -> String {
    match value {
        Accepted::Clear(p) => keyed_hex(key, &[b"password-clear", user.as_bytes(), p]),
        Accepted::Hash(h) => keyed_hex(key, &[b"password-hash", user.as_bytes(), h.as_bytes()]),
    }
}

/// The digest of `user`'s shadow password field as it is.
pub fn field_digest(key: &StateKey, user: &str, field: &str) -> String {
    keyed_hex(key, &[b"shadow-field", user.as_bytes(), field.as_bytes()])
}

/// What a password step records: the digests of the wanted password and of the shadow field
/// after the step, and the decision taken (`set`: the field holds the password; `kept`: the
/// field was changed on the machine since and is kept). Same digests on a later run: the same
/// decision, without hashing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub wanted: String,
    pub field: String,
    pub kept: bool,
}

const RECORD_TAG: &str = "hmac-sha256";

impl Recorded {
    pub fn render(&self) -> String {
        format!(
            "{RECORD_TAG}:{}:{}:{}",
            self.wanted,
            self.field,
            if self.kept { "kept" } else { "set" }
        )
    }

    /// `None` for anything else (a record of an older primer kept the crypt hash set).
    pub fn parse(s: &str) -> Option<Recorded> {
        let mut it = s.split(':');
        if it.next() != Some(RECORD_TAG) {
            return None;
        }
        let wanted = it.next()?.to_string();
        let field = it.next()?.to_string();
        let kept = match it.next()? {
            "kept" => true,
            "set" => false,
            _ => return None,
        };
        Some(Recorded {
            wanted,
            field,
            kept,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_caps_first_and_decides_hash_or_clear() {
        let long = vec![b'a'; 512];
        assert_eq!(
            accept(&long, Kind::Clear),
            Err(Refused::TooLong { len: 512 })
        );
        let mut long_hash = b"$6$salt$".to_vec();
        long_hash.resize(600, b'x');
        assert_eq!(
            accept(&long_hash, Kind::Hash),
            Err(Refused::TooLong { len: 600 })
        );
        assert!(Refused::TooLong { len: 65536 }
            .to_string()
            .contains("65536"));
        assert_eq!(
            accept(&[b'a'; 511], Kind::Clear),
            Ok(Accepted::Clear(&[b'a'; 511][..]))
        );
        for h in [
            "$1$s$h",
            "$2a$10$abc",
            "$2b$12$x$y",
            "$2x$10$abc",
            "$2y$10$abc",
            "$5$rounds=7000$xyz$abc",
            "$6$s$h",
            "$y$j9T$salt$hash",
            "$gy$j9T$salt$hash",
            "$7$CU..../....$hash",
        ] {
            assert_eq!(
                accept(h.as_bytes(), Kind::ClearOrHash),
                Ok(Accepted::Hash(h))
            );
            assert_eq!(accept(h.as_bytes(), Kind::Hash), Ok(Accepted::Hash(h)));
            // plain_text_passwd is never a hash.
            assert_eq!(
                accept(h.as_bytes(), Kind::Clear),
                Ok(Accepted::Clear(h.as_bytes()))
            );
        }
        for clear in [
            "$6$", "$6$only", "$9$a$b", "secret", "$6$a$b:c", "$6$a$b\n", "$6$a b$c",
        ] {
            assert_eq!(
                accept(clear.as_bytes(), Kind::ClearOrHash),
                Ok(Accepted::Clear(clear.as_bytes())),
                "{clear:?}"
            );
            assert_eq!(accept(clear.as_bytes(), Kind::Hash), Err(Refused::NotAHash));
        }
    }

    #[test]
    fn digests_are_keyed_and_records_round_trip() {
        let k1 = StateKey {
            key: [1; 32],
            stored: true,
        };
        let k2 = StateKey {
            key: [2; 32],
            stored: true,
        };
        let a = wanted_digest(&k1, "root", Accepted::Clear(b"pw"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, wanted_digest(&k2, "root", Accepted::Clear(b"pw")));
        assert_ne!(a, wanted_digest(&k1, "bob", Accepted::Clear(b"pw")));
        assert_ne!(a, crate::state::sha256_hex(b"pw"));
        // Parts are length-prefixed: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            keyed_hex(&k1, &[b"ab", b"c"]),
            keyed_hex(&k1, &[b"a", b"bc"])
        );
        let r = Recorded {
            wanted: a.clone(),
            field: field_digest(&k1, "root", "$6$x$y"),
            kept: true,
        };
        assert_eq!(Recorded::parse(&r.render()), Some(r));
        assert_eq!(Recorded::parse("$6$salt$hash"), None);
        assert!(!format!("{k1:?}").contains('1'));
    }
}
