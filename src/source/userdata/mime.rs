//! MIME pieces for user data: where an entity's header block ends, its headers (parsed by
//! mailparse: folding, encoded words, parameters), and the parts of a multipart body.
//!
//! mailparse's own `parse_mail` is not used to split: it builds the whole tree eagerly (up to
//! 100 levels) with no bound on the number of parts, so a 64 MiB body of boundary lines would be
//! millions of parsed parts in memory. Here one level is split at a time, into borrowed slices,
//! at most `max` parts, and the caller walks the levels with an explicit stack and a depth limit.

use mailparse::{MailHeaderMap, ParsedContentType};

/// The headers of one entity that user-data processing uses.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    /// `Content-Type` (lower-case type/subtype), when present.
    pub content_type: Option<ParsedContentType>,
    /// `Content-Transfer-Encoding`, lower-case, when present.
    pub transfer_encoding: Option<String>,
    /// The part's file name: `Content-Disposition` `filename`, else `Content-Type` `name`.
    pub filename: Option<String>,
    /// `MIME-Version` was present.
    pub mime_version: bool,
}

/// Whether a line opens a header field (`Name:` with a printable, colon-free name).
pub(crate) fn is_field_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(i) => line[..i].iter().all(|&b| (33..=126).contains(&b)),
    }
}

/// Splits an entity into its header block and its body. The block ends at the first empty
/// line; a line that is neither a field nor a folded continuation ends it too, and starts the
/// body (as Python's email parser, which cloud-init uses, does).
pub(crate) fn split_entity(data: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| pos + i);
        let line = &data[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let next = (end + 1).min(data.len());
        if line.is_empty() {
            return (&data[..pos], &data[next..]);
        }
        let continuation = pos > 0 && matches!(line[0], b' ' | b'\t');
        if !continuation && !is_field_line(line) {
            return (&data[..pos], &data[pos..]);
        }
        pos = next;
    }
    (data, &[])
}

/// Whether a blob is a MIME message: it opens with a header field, and its header block has a
/// `Content-Type` or `MIME-Version` field. (cloud-init looks for `MIME-Version:` in the first
/// 4 KiB; primer also accepts a bare `Content-Type` header, and never takes a `#!` script or a
/// `#cloud-config` document that mentions MIME-Version for a message.)
pub(crate) fn looks_like_mime(data: &[u8]) -> bool {
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if !is_field_line(first) {
        return false;
    }
    let (block, _) = split_entity(data);
    let h = parse_headers(block);
    h.content_type.is_some() || h.mime_version
}

/// Parses a header block. Unparseable headers give no headers (the part falls back to the
/// starts-with rules).
pub(crate) fn parse_headers(block: &[u8]) -> Headers {
    let Ok((headers, _)) = mailparse::parse_headers(block) else {
        return Headers::default();
    };
    let content_type = headers
        .get_first_value("Content-Type")
        .map(|v| mailparse::parse_content_type(&v));
    let transfer_encoding = headers
        .get_first_value("Content-Transfer-Encoding")
        .map(|v| v.trim().to_ascii_lowercase());
    let disposition_name = headers
        .get_first_value("Content-Disposition")
        .map(|v| mailparse::parse_content_disposition(&v))
        .and_then(|d| d.params.get("filename").cloned());
    let filename = disposition_name
        .or_else(|| {
            content_type
                .as_ref()
                .and_then(|c| c.params.get("name").cloned())
        })
        .filter(|n| !n.trim().is_empty());
    Headers {
        content_type,
        transfer_encoding,
        filename,
        mime_version: headers.get_first_value("MIME-Version").is_some(),
    }
}

/// Undoes the transfer encoding: base64 (mailparse, whitespace ignored), quoted-printable (as
/// Python's `quopri`, which cloud-init uses: line breaks stay `\n`); others are identity.
///
/// A body that needs no decoding is borrowed, not copied: a script part of tens of MiB then
/// stays a slice of the drive file's buffer (`model::Bytes::slice_ref`).
pub(crate) fn decode_body<'b>(
    body: &'b [u8],
    headers: &Headers,
) -> Result<std::borrow::Cow<'b, [u8]>, String> {
    use mailparse::body::Body;
    use std::borrow::Cow;
    match headers.transfer_encoding.as_deref() {
        Some("quoted-printable") => return Ok(Cow::Owned(decode_quoted_printable(body))),
        Some("base64") => {}
        _ => return Ok(Cow::Borrowed(body)),
    }
    // The content type only matters for charset decoding, which is not done here.
    let ctype = ParsedContentType::default();
    match Body::new(body, &ctype, &headers.transfer_encoding) {
        Body::Base64(b) | Body::QuotedPrintable(b) => {
            b.get_decoded().map(Cow::Owned).map_err(|e| e.to_string())
        }
        Body::SevenBit(b) | Body::EightBit(b) => Ok(Cow::Owned(b.get_raw().to_vec())),
        Body::Binary(b) => Ok(Cow::Owned(b.get_raw().to_vec())),
    }
}

/// Quoted-printable as Python's `quopri.decodestring` reads it: trailing whitespace (and `\r`)
/// of each line dropped, `=` at the end of a line joins it to the next, `=XX` is a byte, any
/// other `=` stays as it is; each line break is `\n`.
fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    fn hex(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut lines = body.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let has_break = lines.peek().is_some();
        let n = line
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r'))
            .map_or(0, |i| i + 1);
        let line = &line[..n];
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(l) => (l, true),
            None => (line, false),
        };
        let mut i = 0;
        while i < line.len() {
            if line[i] == b'=' {
                if let (Some(h), Some(l)) = (
                    line.get(i + 1).copied().and_then(hex),
                    line.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(line[i]);
            i += 1;
        }
        if has_break && !soft {
            out.push(b'\n');
        }
    }
    out
}

/// The parts of a multipart body (RFC 2046): the text between delimiter lines `--boundary`, up
/// to the close delimiter `--boundary--` (or the end when it is missing, as Python's parser
/// accepts). The preamble and epilogue are dropped; the line break before a delimiter belongs to
/// the delimiter. At most `max` parts; the flag says that more were there.
pub(crate) fn split_multipart<'a>(
    body: &'a [u8],
    boundary: &str,
    max: usize,
) -> (Vec<&'a [u8]>, bool) {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    let finish = |s: usize, line_start: usize, parts: &mut Vec<&'a [u8]>| {
        let mut end = line_start.max(s);
        if end > s && body[end - 1] == b'\n' {
            end -= 1;
            if end > s && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        parts.push(&body[s..end]);
    };
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i);
        let next = (end + 1).min(body.len());
        let line = &body[pos..end];
        if let Some(rest) = line.strip_prefix(delim) {
            let rest = trim_end(rest);
            let close = rest == b"--";
            if rest.is_empty() || close {
                if let Some(s) = start {
                    if parts.len() == max {
                        return (parts, true);
                    }
                    finish(s, pos, &mut parts);
                }
                if close {
                    return (parts, false);
                }
                start = Some(next);
            }
        }
        pos = next;
    }
    if let Some(s) = start {
        if parts.len() == max {
            return (parts, true);
        }
        if s < body.len() {
            parts.push(&body[s..]);
        } else {
            parts.push(&[]);
        }
    }
    (parts, false)
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r'))
        .map_or(0, |i| i + 1);
    &b[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_header_block() {
        let (h, b) = split_entity(b"Content-Type: text/plain\r\nX: y\r\n\r\nbody\r\n");
        assert_eq!(h, b"Content-Type: text/plain\r\nX: y\r\n");
        assert_eq!(b, b"body\r\n");
        // No headers at all: the body starts at once.
        let (h, b) = split_entity(b"#!/bin/sh\necho\n");
        assert!(h.is_empty());
        assert_eq!(b, b"#!/bin/sh\necho\n");
        // Folded header, then a non-header line without the blank separator.
        let (h, b) =
            split_entity(b"Content-Type: text/x-shellscript;\n charset=us-ascii\n#!/bin/sh\n");
        assert_eq!(h, b"Content-Type: text/x-shellscript;\n charset=us-ascii\n");
        assert_eq!(b, b"#!/bin/sh\n");
        let (h, b) = split_entity(b"");
        assert!(h.is_empty() && b.is_empty());
    }

    #[test]
    fn mime_detection() {
        assert!(looks_like_mime(
            b"Content-Type: multipart/mixed; boundary=x\n\n--x\n"
        ));
        assert!(looks_like_mime(b"MIME-Version: 1.0\nX: y\n\nz"));
        assert!(!looks_like_mime(b"#!/bin/sh\nMIME-Version: 1.0\n"));
        assert!(!looks_like_mime(b"#cloud-config\nhostname: a\n"));
        assert!(!looks_like_mime(b"hostname: a\n"));
        assert!(!looks_like_mime(b""));
    }

    #[test]
    fn headers_and_filenames() {
        let h = parse_headers(
            b"Content-Type: Text/X-ShellScript; charset=\"us-ascii\"; name=\"a.sh\"\nContent-Transfer-Encoding: BASE64\nContent-Disposition: attachment; filename=\"setup.sh\"\n",
        );
        assert_eq!(h.content_type.unwrap().mimetype, "text/x-shellscript");
        assert_eq!(h.transfer_encoding.as_deref(), Some("base64"));
        assert_eq!(h.filename.as_deref(), Some("setup.sh"));
        let h = parse_headers(b"Content-Type: text/plain; name=b.txt\n");
        assert_eq!(h.filename.as_deref(), Some("b.txt"));
        assert!(!h.mime_version);
    }

    #[test]
    fn transfer_decoding() {
        let h = parse_headers(b"Content-Transfer-Encoding: base64\n");
        assert_eq!(&*decode_body(b"aGVs\r\nbG8=\r\n", &h).unwrap(), b"hello");
        assert!(decode_body(b"%%%", &h).is_err());
        let h = parse_headers(b"Content-Transfer-Encoding: quoted-printable\n");
        assert_eq!(&*decode_body(b"a=3Db=\r\nc", &h).unwrap(), b"a=bc");
        assert_eq!(
            &*decode_body(b"#!/bin/sh\necho =E9 =zz=\n  \t\nx=4", &h).unwrap(),
            b"#!/bin/sh\necho \xe9 =zz\nx=4"
        );
        assert_eq!(&*decode_body(b"crlf \r\nend=", &h).unwrap(), b"crlf\nend");
        let h = parse_headers(b"");
        assert_eq!(&*decode_body(b"\xff raw", &h).unwrap(), b"\xff raw");
    }

    #[test]
    fn multipart_split() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b  \r\n\r\ntwo\n--b--\r\nepilogue\n--b\nthree\n";
        let (parts, more) = split_multipart(body, "b", 10);
        assert_eq!(parts, vec![&b"A: 1\r\n\r\none"[..], &b"\r\ntwo"[..]]);
        assert!(!more);
        // Missing close delimiter: the last part runs to the end.
        let (parts, _) = split_multipart(b"--b\nx\n--b\ny\n", "b", 10);
        assert_eq!(parts, vec![&b"x"[..], &b"y\n"[..]]);
        // Lines that only start with the delimiter are content.
        let (parts, _) = split_multipart(b"--b\n--bc\n--b--x\n--b--\n", "b", 10);
        assert_eq!(parts, vec![&b"--bc\n--b--x"[..]]);
        // Empty parts, the cap, no delimiter at all.
        let (parts, more) = split_multipart(b"--b\n--b\n--b\n--b--", "b", 2);
        assert_eq!(parts.len(), 2);
        assert!(more);
        assert_eq!(split_multipart(b"no parts", "b", 10), (vec![], false));
        assert_eq!(split_multipart(b"--b", "b", 10), (vec![&b""[..]], false));
    }
}
