//! primer's stand-in for the `charset` crate (0.1.5), used by `mailparse` to decode RFC 2047
//! encoded words and RFC 2231 parameters in MIME headers (the part's `filename`, `name`,
//! `boundary`). It must not grow into a general charset converter.
//!
//! Why: the real crate decodes through `encoding_rs`, whose decoders for Big5, EUC-JP,
//! ISO-2022-JP, Shift_JIS, EUC-KR and GB18030 and their tables (~160 KB of the ~4.5 MB static
//! binary, issue 15's 4 MiB goal) are all linked as soon as any label is decoded. primer
//! decodes no MIME body by its charset (transfer encodings only, `source/userdata/mime.rs`);
//! only header words go through here. The encodings kept are the ones user-data headers carry:
//! UTF-8, windows-1252 (which the Encoding Standard also names US-ASCII and ISO-8859-1), UTF-16
//! and raw Latin-1, each decoded exactly as `encoding_rs` does (WHATWG labels, lossy with
//! U+FFFD). Any other label is unknown here: mailparse then keeps the encoded word as it is
//! written (`=?koi8-r?B?...?=`), as it already does for labels it does not know, and as Python's
//! email package (cloud-init) leaves every encoded word in a parameter.
//!
//! Only the API mailparse 0.18 calls is provided.

use std::borrow::Cow;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum Variant {
    Utf8,
    Windows1252,
    Utf16Le,
    Utf16Be,
}

/// A character encoding this crate can decode.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Charset {
    variant: Variant,
}

/// The Encoding Standard's labels of the kept encodings (lower case, as compared).
const LABELS: &[(&str, Variant)] = &[
    ("unicode-1-1-utf-8", Variant::Utf8),
    ("unicode11utf8", Variant::Utf8),
    ("unicode20utf8", Variant::Utf8),
    ("utf-8", Variant::Utf8),
    ("utf8", Variant::Utf8),
    ("x-unicode20utf8", Variant::Utf8),
    ("ansi_x3.4-1968", Variant::Windows1252),
    ("ascii", Variant::Windows1252),
    ("cp1252", Variant::Windows1252),
    ("cp819", Variant::Windows1252),
    ("csisolatin1", Variant::Windows1252),
    ("ibm819", Variant::Windows1252),
    ("iso-8859-1", Variant::Windows1252),
    ("iso-ir-100", Variant::Windows1252),
    ("iso8859-1", Variant::Windows1252),
    ("iso88591", Variant::Windows1252),
    ("iso_8859-1", Variant::Windows1252),
    ("iso_8859-1:1987", Variant::Windows1252),
    ("l1", Variant::Windows1252),
    ("latin1", Variant::Windows1252),
    ("us-ascii", Variant::Windows1252),
    ("windows-1252", Variant::Windows1252),
    ("x-cp1252", Variant::Windows1252),
    ("unicodefffe", Variant::Utf16Be),
    ("utf-16be", Variant::Utf16Be),
    ("csunicode", Variant::Utf16Le),
    ("iso-10646-ucs-2", Variant::Utf16Le),
    ("ucs-2", Variant::Utf16Le),
    ("unicode", Variant::Utf16Le),
    ("unicodefeff", Variant::Utf16Le),
    ("utf-16", Variant::Utf16Le),
    ("utf-16le", Variant::Utf16Le),
];

/// windows-1252's bytes 0x80..=0x9F (the rest is Latin-1).
const W1252_HIGH: [u16; 32] = [
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
];

impl Charset {
    /// The Encoding Standard's "get an encoding" for the kept encodings: the label trimmed of
    /// ASCII whitespace, compared without case. `None` for any other label.
    pub fn for_label(label: &[u8]) -> Option<Charset> {
        let ws = |b: &u8| matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ');
        let start = label.iter().position(|b| !ws(b))?;
        let end = label.iter().rposition(|b| !ws(b))? + 1;
        let label = &label[start..end];
        LABELS
            .iter()
            .find(|(l, _)| l.as_bytes().eq_ignore_ascii_case(label))
            .map(|&(_, variant)| Charset { variant })
    }

    /// As `for_label`: none of the kept encodings is the replacement encoding.
    pub fn for_label_no_replacement(label: &[u8]) -> Option<Charset> {
        Self::for_label(label)
    }

    /// The encoding named by a byte order mark at the start of `buffer`, and the mark's length.
    pub fn for_bom(buffer: &[u8]) -> Option<(Charset, usize)> {
        let variant = match buffer {
            [0xEF, 0xBB, 0xBF, ..] => {
                return Some((
                    Charset {
                        variant: Variant::Utf8,
                    },
                    3,
                ))
            }
            [0xFF, 0xFE, ..] => Variant::Utf16Le,
            [0xFE, 0xFF, ..] => Variant::Utf16Be,
            _ => return None,
        };
        Some((Charset { variant }, 2))
    }

    /// Decodes with BOM sniffing: the encoding used, and whether anything was malformed.
    pub fn decode(self, bytes: &[u8]) -> (Cow<'_, str>, Charset, bool) {
        let (charset, rest) = match Charset::for_bom(bytes) {
            Some((charset, n)) => (charset, &bytes[n..]),
            None => (self, bytes),
        };
        let (text, malformed) = charset.decode_without_bom_handling(rest);
        (text, charset, malformed)
    }

    /// Decodes all of `bytes`, malformed sequences replaced with U+FFFD (the same maximal
    /// subparts as `encoding_rs`); the flag says whether there were any.
    pub fn decode_without_bom_handling(self, bytes: &[u8]) -> (Cow<'_, str>, bool) {
        match self.variant {
            Variant::Utf8 => {
                let text = String::from_utf8_lossy(bytes);
                let malformed = matches!(text, Cow::Owned(_));
                (text, malformed)
            }
            Variant::Windows1252 => match std::str::from_utf8(bytes) {
                Ok(s) if s.is_ascii() => (Cow::Borrowed(s), false),
                _ => {
                    let text = bytes
                        .iter()
                        .map(|&b| match b {
                            0x80..=0x9F => {
                                char::from_u32(u32::from(W1252_HIGH[usize::from(b - 0x80)]))
                                    .unwrap_or('\u{FFFD}')
                            }
                            _ => char::from(b),
                        })
                        .collect();
                    (Cow::Owned(text), false)
                }
            },
            Variant::Utf16Le | Variant::Utf16Be => {
                let le = self.variant == Variant::Utf16Le;
                let units = bytes.chunks_exact(2).map(|p| {
                    let p = [p[0], p[1]];
                    if le {
                        u16::from_le_bytes(p)
                    } else {
                        u16::from_be_bytes(p)
                    }
                });
                let mut malformed = false;
                let mut text: String = char::decode_utf16(units)
                    .map(|c| {
                        c.unwrap_or_else(|_| {
                            malformed = true;
                            '\u{FFFD}'
                        })
                    })
                    .collect();
                // An odd last byte is one error, and only one with an unpaired lead
                // surrogate before it (the Encoding Standard's end of stream).
                let lead_before = bytes.len() >= 3 && {
                    let n = bytes.len() - 1;
                    let hi = if le { bytes[n - 1] } else { bytes[n - 2] };
                    (0xD8..=0xDB).contains(&hi)
                };
                if bytes.len() % 2 == 1 && !lead_before {
                    malformed = true;
                    text.push('\u{FFFD}');
                }
                (Cow::Owned(text), malformed)
            }
        }
    }
}

/// Bytes as code points U+0000..=U+00FF (borrowed when all ASCII).
pub fn decode_latin1(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => Cow::Borrowed(s),
        _ => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// ASCII as it is, any other byte U+FFFD (borrowed when all ASCII).
pub fn decode_ascii(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => Cow::Borrowed(s),
        _ => Cow::Owned(
            bytes
                .iter()
                .map(|&b| {
                    if b.is_ascii() {
                        char::from(b)
                    } else {
                        '\u{FFFD}'
                    }
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_as_the_encoding_standard() {
        assert!(Charset::for_label(b" UTF-8\t").is_some());
        assert_eq!(
            Charset::for_label(b"us-ascii"),
            Charset::for_label(b"windows-1252")
        );
        assert!(Charset::for_label(b"shift_jis").is_none());
        assert!(Charset::for_label(b"").is_none());
    }

    #[test]
    fn decodes_as_encoding_rs() {
        let w = Charset::for_label(b"iso-8859-1").unwrap();
        assert_eq!(
            w.decode_without_bom_handling(b"\x80\xe9a").0,
            "\u{20ac}\u{e9}a"
        );
        let u = Charset::for_label(b"utf8").unwrap();
        assert_eq!(
            u.decode_without_bom_handling(b"a\xffb"),
            ("a\u{fffd}b".into(), true)
        );
        let le = Charset::for_label(b"utf-16le").unwrap();
        assert_eq!(
            le.decode_without_bom_handling(b"a\0\0\xd8b"),
            ("a\u{fffd}".into(), true)
        );
        assert_eq!(decode_latin1(b"\x80"), "\u{80}");
        assert_eq!(decode_ascii(b"a\x80"), "a\u{fffd}");
    }

    /// Hostile header words: control characters pass through as characters (the caller
    /// sanitises names), and a million bytes of garbage decode in one linear pass to one
    /// replacement character per bad unit, never more.
    #[test]
    fn control_bytes_and_huge_garbage() {
        let u = Charset::for_label(b"utf-8").unwrap();
        assert_eq!(u.decode_without_bom_handling(b"a\n\x1b\0").0, "a\n\u{1b}\0");
        let junk = vec![0xffu8; 1_000_000];
        let (d, bad) = u.decode_without_bom_handling(&junk);
        assert!(bad);
        assert_eq!(d.chars().count(), 1_000_000);
        let le = Charset::for_label(b"utf-16le").unwrap();
        let zeros = vec![0u8; 1_000_001];
        let (d, _) = le.decode_without_bom_handling(&zeros);
        assert_eq!(d.chars().count(), 500_001);
    }
}
