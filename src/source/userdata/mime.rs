//! MIME pieces for user data: where an entity's header block ends, its headers (parsed by
//! mailparse: folding, encoded words, parameters), and the parts of a multipart body.
//!
//! mailparse's own `parse_mail` is not used to split: it builds the whole tree eagerly (up to
//! 100 levels) with no bound on the number of parts, so a 64 MiB body of boundary lines would be
//! millions of parsed parts in memory. Here one level is split at a time, into byte ranges, at
//! most `max` parts, and the caller walks the levels with an explicit stack and a depth limit.
//! The [`Splitter`] takes the body in pieces of any size (a message kept on the device is
//! streamed through it, keeping only each part's first bytes); no I/O here, and nothing grows
//! with the body but the bounded list of parts.

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
    match entity_bounds(data) {
        Some((end, body)) => (
            data.get(..end).unwrap_or_default(),
            data.get(body..).unwrap_or_default(),
        ),
        None => (data, &[]),
    }
}

/// Where [`split_entity`] ends the header block and starts the body, as offsets; `None` when no
/// line ends the block (the whole data is header block). Decided line by line, each line
/// complete: over a head of an entity cut after a line break, a `Some` is the whole entity's
/// answer (what a streamed part's kept head is read with).
pub(crate) fn entity_bounds(data: &[u8]) -> Option<(usize, usize)> {
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
            return Some((pos, next));
        }
        let continuation = pos > 0 && matches!(line[0], b' ' | b'\t');
        if !continuation && !is_field_line(line) {
            return Some((pos, pos));
        }
        pos = next;
    }
    None
}

/// [`entity_bounds`] over the first bytes of an entity of `len` bytes: `head` is the whole
/// entity, or only lines that end inside it count. `None` when the header block does not end
/// inside the head (a caller holding only the head cannot split it).
pub(crate) fn head_bounds(head: &[u8], len: usize) -> Option<(usize, usize)> {
    if head.len() >= len {
        let whole = head.get(..len).unwrap_or(head);
        return Some(entity_bounds(whole).unwrap_or((whole.len(), whole.len())));
    }
    let cut = head.iter().rposition(|&b| b == b'\n')? + 1;
    entity_bounds(head.get(..cut)?)
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
/// the delimiter. At most `max` parts; the flag says that more were there. (The [`Splitter`]
/// fed the whole body at once: one set of rules for a body in memory and a streamed one.)
#[cfg(test)]
pub(crate) fn split_multipart<'a>(
    body: &'a [u8],
    boundary: &str,
    max: usize,
) -> (Vec<&'a [u8]>, bool) {
    let mut s = Splitter::new(boundary, max, 0, 0);
    s.feed(body);
    let (parts, more) = s.finish();
    let parts = parts
        .into_iter()
        .map(|p| body.get(p.range).unwrap_or_default())
        .collect();
    (parts, more)
}

/// Largest part head a [`Splitter`] keeps (where a streamed part's header block must end).
pub(crate) const PART_HEAD: usize = 4096;

/// One part a [`Splitter`] found: its byte range (offsets of the whole stream) and its first
/// bytes (at most the splitter's head cap; empty when it keeps none).
#[derive(Debug)]
pub(crate) struct Part {
    pub range: std::ops::Range<usize>,
    pub head: Vec<u8>,
    /// The SHA-256 of the part's bytes, when the splitter hashes (see [`Splitter::hashing`]).
    pub sha256: Option<[u8; 32]>,
}

/// Where the current line stands against the delimiter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Line {
    /// This many bytes of `--boundary` matched so far.
    Prefix(usize),
    /// The delimiter matched; then nothing, `-`, or `--`.
    Dashes(u8),
    /// The delimiter (a close one when true), then transport padding only.
    Padding(bool),
    /// Not a delimiter line.
    Other,
}

/// The multipart splitter, fed a body in pieces of any size (a chunk of a file on the device,
/// or the whole body at once): one pass, line by line, holding only the line's match state,
/// the parts' ranges and each part's first `head_cap` bytes (bounded: at most `max` parts).
pub(crate) struct Splitter {
    delim: Vec<u8>,
    max: usize,
    head_cap: usize,
    parts: Vec<Part>,
    /// Start of the part being read (after a delimiter line), and its head so far.
    start: Option<usize>,
    head: Vec<u8>,
    more: bool,
    /// A close delimiter or the cap ended the split: later bytes are not looked at.
    done: bool,
    /// Offset of the next byte fed, and of the current line's start.
    pos: usize,
    line_start: usize,
    line: Line,
    /// The current line's last byte so far (for the `\r` before its `\n`), and the previous
    /// line's: whether it ended in `\r`.
    last: Option<u8>,
    prev_cr: bool,
    /// Hashing the parts (see [`Splitter::hashing`]): the part's bytes so far, all but the
    /// last two (`tail`: the line break before a delimiter is not the part's, known only when
    /// the delimiter line ends), and that state at the current line's start.
    hash: Option<PartHash>,
}

/// The running digest of the part being split (see [`Splitter::hashing`]).
#[derive(Clone, Default)]
struct PartHash {
    h: sha2::Sha256,
    tail: Vec<u8>,
    at_line: Option<(sha2::Sha256, Vec<u8>)>,
}

impl PartHash {
    fn update(&mut self, seg: &[u8]) {
        use sha2::Digest;
        if seg.len() >= 2 {
            self.h.update(&self.tail);
            let (body, last) = seg.split_at(seg.len() - 2);
            self.h.update(body);
            self.tail.clear();
            self.tail.extend_from_slice(last);
        } else {
            self.tail.extend_from_slice(seg);
            if self.tail.len() > 2 {
                let extra = self.tail.len() - 2;
                self.h.update(self.tail.get(..extra).unwrap_or_default());
                self.tail.drain(..extra);
            }
        }
    }

    /// The state now is the state at a line's start.
    fn mark_line(&mut self) {
        self.at_line = Some((self.h.clone(), self.tail.clone()));
    }

    /// The digest of the part's bytes up to `cut` bytes before the current line's start.
    fn at_line_minus(&self, cut: usize) -> [u8; 32] {
        use sha2::Digest;
        let (mut h, tail) = self.at_line.clone().unwrap_or_default();
        h.update(
            tail.get(..tail.len().saturating_sub(cut))
                .unwrap_or_default(),
        );
        h.finalize().into()
    }

    /// The digest of every byte fed.
    fn all(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = self.h.clone();
        h.update(&self.tail);
        h.finalize().into()
    }
}

impl Splitter {
    /// A splitter on `boundary` whose first byte is at offset `base`.
    pub(crate) fn new(boundary: &str, max: usize, head_cap: usize, base: usize) -> Splitter {
        Splitter {
            delim: format!("--{boundary}").into_bytes(),
            max,
            head_cap,
            parts: Vec::new(),
            start: None,
            head: Vec::new(),
            more: false,
            done: false,
            pos: base,
            line_start: base,
            line: Line::Prefix(0),
            last: None,
            prev_cr: false,
            hash: None,
        }
    }

    /// Also hashes each part's bytes ([`Part::sha256`]): a streamed pass whose bytes are then
    /// checked against the drive file's digest gives each part's digest, against which a part
    /// read again from the device is checked (`model::bytes::SourceCheck`).
    pub(crate) fn hashing(mut self) -> Splitter {
        self.hash = Some(PartHash::default());
        self
    }

    /// The next bytes of the body.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && !self.done {
            let nl = chunk.iter().position(|&b| b == b'\n');
            let seg_len = nl.map_or(chunk.len(), |i| i + 1);
            let (seg, rest) = chunk.split_at(seg_len);
            self.keep_head(seg);
            if let (Some(s), Some(h)) = (self.start, self.hash.as_mut()) {
                if self.pos >= s {
                    h.update(seg);
                }
            }
            let text = if nl.is_some() {
                seg.get(..seg.len() - 1).unwrap_or_default()
            } else {
                seg
            };
            self.scan(text);
            self.pos += seg.len();
            if nl.is_some() {
                self.end_line(self.pos);
            }
            chunk = rest;
        }
    }

    /// The parts, and whether more than `max` were there.
    pub(crate) fn finish(mut self) -> (Vec<Part>, bool) {
        let len = self.pos;
        if !self.done && self.line_start < len {
            // The last line, without a line break.
            self.end_line(len);
        }
        if !self.done {
            if let Some(s) = self.start {
                if self.parts.len() == self.max {
                    self.more = true;
                } else {
                    let head = std::mem::take(&mut self.head);
                    self.parts.push(Part {
                        range: s..len.max(s),
                        head,
                        sha256: self.hash.as_ref().map(PartHash::all),
                    });
                }
            }
        }
        (self.parts, self.more)
    }

    fn keep_head(&mut self, seg: &[u8]) {
        let Some(s) = self.start else { return };
        let room = self.head_cap.saturating_sub(self.head.len());
        if room == 0 || self.pos < s {
            return;
        }
        let take = room.min(seg.len());
        self.head
            .extend_from_slice(seg.get(..take).unwrap_or_default());
    }

    /// Moves the line's match state over `text` (line bytes, no `\n`).
    fn scan(&mut self, text: &[u8]) {
        if let Some(&b) = text.last() {
            self.last = Some(b);
        }
        let mut i = 0;
        while i < text.len() {
            match self.line {
                Line::Other => return,
                Line::Prefix(m) => {
                    let want = self.delim.get(m..).unwrap_or_default();
                    let n = want.len().min(text.len() - i);
                    if text.get(i..i + n) == want.get(..n) {
                        self.line = if m + n == self.delim.len() {
                            Line::Dashes(0)
                        } else {
                            Line::Prefix(m + n)
                        };
                        i += n;
                    } else {
                        self.line = Line::Other;
                    }
                }
                Line::Dashes(d) => {
                    let c = text[i];
                    self.line = match (d, c) {
                        (0 | 1, b'-') => Line::Dashes(d + 1),
                        (0, b' ' | b'\t' | b'\r') => Line::Padding(false),
                        (2, b' ' | b'\t' | b'\r') => Line::Padding(true),
                        _ => Line::Other,
                    };
                    i += 1;
                }
                Line::Padding(_) => {
                    if !matches!(text[i], b' ' | b'\t' | b'\r') {
                        self.line = Line::Other;
                    }
                    i += 1;
                }
            }
        }
    }

    /// The current line ended; the next one starts at `next`.
    fn end_line(&mut self, next: usize) {
        let line_start = self.line_start;
        let ended_cr = self.last == Some(b'\r');
        let kind = match self.line {
            Line::Dashes(0) | Line::Padding(false) => Some(false),
            Line::Dashes(2) | Line::Padding(true) => Some(true),
            _ => None,
        };
        self.line_start = next;
        self.line = Line::Prefix(0);
        self.last = None;
        let prev_cr = std::mem::replace(&mut self.prev_cr, ended_cr);
        let Some(close) = kind else {
            if let Some(h) = self.hash.as_mut() {
                h.mark_line();
            }
            return;
        };
        if let Some(s) = self.start {
            if self.parts.len() == self.max {
                self.more = true;
                self.done = true;
                return;
            }
            // The line break before the delimiter belongs to it.
            let mut end = line_start.max(s);
            if end > s {
                end -= 1;
                if end > s && prev_cr {
                    end -= 1;
                }
            }
            let mut head = std::mem::take(&mut self.head);
            head.truncate(end - s);
            let sha256 = self
                .hash
                .as_ref()
                .map(|h| h.at_line_minus(line_start - end));
            self.parts.push(Part {
                range: s..end,
                head,
                sha256,
            });
        }
        if close {
            self.done = true;
            return;
        }
        self.start = Some(next);
        self.head.clear();
        if let Some(h) = self.hash.as_mut() {
            *h = PartHash::default();
            h.mark_line();
        }
    }
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

/// The streamed MIME path (`Run::kept_mime`) against the in-memory one, over generated
/// messages: the same user data and the same warnings, whatever the chunking.
#[cfg(test)]
mod stream_tests {
    use super::super::*;
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    /// The splitter as it was before it streamed (the reference the chunked one must match).
    fn reference_split<'a>(body: &'a [u8], boundary: &str, max: usize) -> (Vec<&'a [u8]>, bool) {
        fn trim_end(b: &[u8]) -> &[u8] {
            let n = b
                .iter()
                .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r'))
                .map_or(0, |i| i + 1);
            &b[..n]
        }
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
            parts.push(&body[s..]);
        }
        (parts, false)
    }

    /// xorshift: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
            &from[self.below(from.len())]
        }
    }

    #[test]
    fn the_chunked_splitter_matches_the_reference_whatever_the_chunks() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let pieces: &[&[u8]] = &[
            b"--b",
            b"--b--",
            b"--bc",
            b"\n",
            b"\r\n",
            b"\r",
            b" ",
            b"\t",
            b"-",
            b"--",
            b"x",
            b"text",
            b"--b  \r",
            b"--b--\t ",
        ];
        for _ in 0..3000 {
            let mut body = Vec::new();
            for _ in 0..rng.below(40) {
                let piece = pieces[rng.below(pieces.len())];
                body.extend_from_slice(piece);
            }
            let max = rng.below(6);
            let (want, want_more) = reference_split(&body, "b", max);
            let mut s = Splitter::new("b", max, 3, 100).hashing();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(7));
                s.feed(&rest[..n]);
                rest = &rest[n..];
            }
            let (got, more) = s.finish();
            let got_parts: Vec<&[u8]> = got
                .iter()
                .map(|p| &body[p.range.start - 100..p.range.end - 100])
                .collect();
            assert_eq!(got_parts, want, "{:?}", String::from_utf8_lossy(&body));
            assert_eq!(more, want_more);
            for (p, w) in got.iter().zip(&want) {
                assert_eq!(p.head, &w[..w.len().min(3)]);
                // Each part's digest is its bytes', whatever the chunks and line breaks.
                let d: [u8; 32] =
                    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(w))
                        .into();
                assert_eq!(p.sha256, Some(d), "{:?}", String::from_utf8_lossy(&body));
            }
            assert_eq!(split_multipart(&body, "b", max), (want, want_more));
        }
    }

    struct Mem(Vec<u8>);

    impl crate::model::bytes::ReadAt for Mem {
        fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
            let at = at as usize;
            let src = self
                .0
                .get(at..at + buf.len())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    /// A message as a file kept on a device.
    pub(crate) fn on_device(doc: &[u8]) -> Bytes {
        Bytes::on_device(
            Arc::new(Mem(doc.to_vec())),
            vec![(0, doc.len() as u64)],
            doc.len(),
            "dev: user_data".into(),
        )
        .unwrap()
    }

    std::thread_local! {
        /// Documents `both` found were no streaming candidates.
        static CANDIDATES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Both paths over `doc`: (in memory, streamed).
    pub(crate) fn both(
        doc: &[u8],
        limits: &UserDataLimits,
    ) -> ((UserData, Report), (UserData, Report)) {
        let mem = parse_user_data(Some(doc), &[], limits);
        let b = on_device(doc);
        // A header block longer than the head is no candidate; streamed anyway, the walk
        // gives up at once and reads it whole.
        if !mime_candidate(&b) {
            CANDIDATES.with(|c| c.set(c.get() + 1));
        }
        let owners: [&Bytes; 0] = [];
        let mut run = Run::new(&owners, limits);
        run.kept_mime = Some(&b);
        let kept = run.parse(None, &[]);
        (mem, kept)
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn b64(data: &[u8], width: usize, nl: &str) -> Vec<u8> {
        use base64::Engine;
        let s = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = Vec::new();
        for (i, c) in s.as_bytes().chunks(width.max(4)).enumerate() {
            if i > 0 {
                out.extend_from_slice(nl.as_bytes());
            }
            out.extend_from_slice(c);
        }
        out
    }

    fn body(rng: &mut Rng, n: usize) -> Vec<u8> {
        let kinds: &[&[u8]] = &[
            b"#!/bin/sh\necho hi\n",
            b"#cloud-config\nhostname: gen\nruncmd:\n - [ls]\n",
            b"#cloud-config\nhostname: [unclosed\n",
            b"#cloud-boothook\necho\n",
            b"#include http://x\n",
            b"",
            b"  \n",
            b"plain words\n",
            b"\xef\xbb\xbf#!/bin/bash\n",
        ];
        let mut b = rng.pick(kinds).to_vec();
        if !b.is_empty() && b.starts_with(b"#!") {
            // Long enough, sometimes, to cross heads and chunks.
            let lines = *rng.pick(&[0usize, 10, 200, 3000]);
            for i in 0..lines {
                b.extend_from_slice(format!("echo line {i} {n}\n").as_bytes());
            }
        }
        b
    }

    fn message(rng: &mut Rng, depth: usize, n: &mut usize) -> Vec<u8> {
        let nl = *rng.pick(&["\n", "\r\n"]);
        let boundary = format!("==b{depth}x{}==", rng.below(3));
        let mut m = format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"{nl}MIME-Version: 1.0{nl}"
        )
        .into_bytes();
        if rng.below(8) == 0 {
            // A header block longer than a kept head: the streamed path reads it whole.
            m.extend_from_slice(format!("X-Pad: {}{nl}", "p".repeat(5000)).as_bytes());
        }
        m.extend_from_slice(nl.as_bytes());
        if rng.below(2) == 0 {
            m.extend_from_slice(format!("preamble{nl}").as_bytes());
        }
        for _ in 0..rng.below(6) {
            *n += 1;
            let pad = *rng.pick(&["", "  ", "\t"]);
            m.extend_from_slice(format!("--{boundary}{pad}{nl}").as_bytes());
            if depth < 3 && rng.below(6) == 0 {
                m.extend_from_slice(&message(rng, depth + 1, n));
                m.extend_from_slice(nl.as_bytes());
                continue;
            }
            let ctype = *rng.pick(&[
                "text/x-shellscript",
                "text/cloud-config",
                "text/plain",
                "application/x-gzip",
                "text/x-unknown",
                "multipart/mixed",
            ]);
            let mut content = body(rng, *n);
            if ctype == "application/x-gzip" || rng.below(8) == 0 {
                content = gz(&content);
            }
            let enc = *rng.pick(&["", "base64", "quoted-printable", "7bit", "base64-bad"]);
            let (enc_header, encoded) = match enc {
                "base64" => ("base64", b64(&content, *rng.pick(&[4, 76, 1 << 30]), nl)),
                "base64-bad" => {
                    let mut e = b64(&content, 76, nl);
                    let at = rng.below(e.len() + 1);
                    e.insert(at, *rng.pick(b"=%A"));
                    ("base64", e)
                }
                "quoted-printable" => ("quoted-printable", content.clone()),
                other => (other, content.clone()),
            };
            m.extend_from_slice(format!("Content-Type: {ctype}{nl}").as_bytes());
            if !enc_header.is_empty() {
                m.extend_from_slice(
                    format!("Content-Transfer-Encoding: {enc_header}{nl}").as_bytes(),
                );
            }
            if rng.below(3) == 0 {
                m.extend_from_slice(
                    format!(
                        "Content-Disposition: attachment; filename=\"f{}.sh\"{nl}",
                        rng.below(3)
                    )
                    .as_bytes(),
                );
            }
            if rng.below(10) == 0 {
                m.extend_from_slice(format!("X-Long: {}{nl}", "h".repeat(5000)).as_bytes());
            }
            m.extend_from_slice(nl.as_bytes());
            m.extend_from_slice(&encoded);
            m.extend_from_slice(nl.as_bytes());
        }
        if rng.below(5) != 0 {
            m.extend_from_slice(format!("--{boundary}--{nl}epilogue{nl}").as_bytes());
        }
        m
    }

    #[test]
    fn streamed_and_in_memory_mime_give_the_same_user_data_and_warnings() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let small = UserDataLimits {
            max_mime_parts: 5,
            max_mime_depth: 2,
            max_total_bytes: 200_000,
            ..UserDataLimits::default()
        };
        for i in 0..400 {
            let mut n = 0;
            let doc = message(&mut rng, 0, &mut n);
            for limits in [UserDataLimits::default(), small] {
                let ((mu, mr), (ku, kr)) = both(&doc, &limits);
                assert_eq!(mr, kr, "doc {i}: warnings differ");
                assert_eq!(mu, ku, "doc {i}: user data differs");
            }
        }
        // Most are streamed; a header block longer than the head (about one in eight) is not.
        let refused = CANDIDATES.with(|c| c.get());
        assert!(
            (20..200).contains(&refused),
            "{refused} of 800 not streamed"
        );
    }

    #[test]
    fn a_kept_script_part_stays_on_the_device() {
        let script = {
            let mut s = b"#!/bin/sh\n".to_vec();
            while s.len() < 300_000 {
                s.extend_from_slice(b"echo streamed\n");
            }
            s
        };
        for enc in ["", "base64", "gzip"] {
            let (h, body) = match enc {
                "base64" => (
                    "Content-Transfer-Encoding: base64\n",
                    b64(&script, 76, "\n"),
                ),
                "gzip" => (
                    "Content-Transfer-Encoding: base64\n",
                    b64(&gz(&script), 76, "\n"),
                ),
                _ => ("", script.clone()),
            };
            let mut doc = b"Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n--B\nContent-Type: text/cloud-config\n\n#cloud-config\nhostname: kept\n--B\nContent-Type: text/x-shellscript\n".to_vec();
            doc.extend_from_slice(h.as_bytes());
            doc.extend_from_slice(b"\n");
            doc.extend_from_slice(&body);
            doc.extend_from_slice(b"\n--B--\n");
            let ((mu, mr), (ku, kr)) = both(&doc, &UserDataLimits::default());
            assert_eq!((&mu, &mr), (&ku, &kr), "{enc}");
            assert_eq!(ku.scripts.len(), 1);
            assert!(
                ku.scripts[0].content.is_on_device(),
                "{enc}: the script is kept"
            );
            assert!(ku.scripts[0].content == script, "{enc}");
        }
    }

    #[test]
    fn hostile_multiparts_streamed_give_the_in_memory_outcome() {
        let pad = "#".repeat(300_000);
        let mut many = b"Content-Type: multipart/mixed; boundary=b\n\n".to_vec();
        for _ in 0..10_000 {
            many.extend_from_slice(b"--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n");
        }
        let mut deep = Vec::new();
        for d in 0..12 {
            deep.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{d}\n\n--b{d}\n").as_bytes(),
            );
        }
        deep.extend_from_slice(
            format!("Content-Type: text/x-shellscript\n\n#!/bin/sh\n{pad}").as_bytes(),
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                format!("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n{pad}\n").into_bytes(),
                "",
            ),
            (many, "more than 1000 MIME parts"),
            (
                format!("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\nX-Long: {pad}\n\n#!/bin/sh\ntrue\n--b--\n").into_bytes(),
                "",
            ),
            (deep, "nested deeper than 8 levels"),
            (
                format!(
                    "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\nContent-Transfer-Encoding: base64\n\nIyEvYmluL3NoCg==\n--b\n{}\n--b--\n",
                    "QUFB\n".repeat(60_000)
                )
                .into_bytes(),
                "content not recognised",
            ),
            (
                format!(
                    "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\n{}IyEv\n--b--\n",
                    "QUFB==\n".repeat(60_000)
                )
                .into_bytes(),
                "transfer encoding cannot be decoded",
            ),
        ];
        for (i, (doc, warning)) in cases.into_iter().enumerate() {
            let ((mu, mr), (ku, kr)) = both(&doc, &UserDataLimits::default());
            assert_eq!(mr, kr, "case {i}");
            assert_eq!(mu, ku, "case {i}");
            assert!(
                warning.is_empty() || kr.warnings.iter().any(|w| w.message.contains(warning)),
                "case {i}: {kr:?}"
            );
        }
    }

    /// A message with a cloud-config part (`enc`: as it is, base64, gzip'd then base64)
    /// whose `write_files` has a large literal block, a small one and a large non-file block.
    fn config_message(enc: &str, lines: usize) -> Vec<u8> {
        let block: String = (0..lines)
            .map(|i| format!("      line {i} of the big file\n"))
            .collect();
        let config = format!(
            "#cloud-config\nhostname: carved-part\nbootcmd:\n  - |\n{block}write_files:\n  - path: /etc/big\n    content: |\n{block}  - path: /etc/small\n    content: |\n      small\n"
        )
        .into_bytes();
        let (h, body) = match enc {
            "base64" => (
                "Content-Transfer-Encoding: base64\n",
                b64(&config, 76, "\n"),
            ),
            "gzip" => (
                "Content-Transfer-Encoding: base64\n",
                b64(&gz(&config), 76, "\n"),
            ),
            _ => ("", config),
        };
        let mut doc = b"Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n--B\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho first\n--B\nContent-Type: text/cloud-config\n".to_vec();
        doc.extend_from_slice(h.as_bytes());
        doc.extend_from_slice(b"\n");
        doc.extend_from_slice(&body);
        doc.extend_from_slice(b"\n--B--\n");
        doc
    }

    /// A large cloud-config part of a MIME user data kept on the device is carved (its
    /// `write_files` block stays on the device) and gives exactly the whole parse: as it is,
    /// base64, gzip'd; and inside a gzip'd message, decompressed as a recipe.
    #[test]
    fn a_large_cloud_config_part_is_carved_and_agrees_with_the_whole_parse() {
        let limits = UserDataLimits::default();
        for enc in ["", "base64", "gzip"] {
            let doc = config_message(enc, 5000);
            let ((mu, mr), (ku, kr)) = both(&doc, &limits);
            assert_eq!((&mu, &mr), (&ku, &kr), "{enc}");
            let files = &ku.cloud_config.write_files;
            assert_eq!(files.len(), 2, "{enc}");
            assert!(
                files[0].content.is_on_device(),
                "{enc}: the block is carved"
            );
            assert!(files[0].content.len() > 100_000, "{enc}");
            assert_eq!(ku.cloud_config.hostname.as_deref(), Some("carved-part"));
            assert_eq!(ku.scripts.len(), 1);
        }
        // A small part is parsed whole, as before.
        let doc = config_message("", 10);
        let ((mu, mr), (ku, kr)) = both(&doc, &limits);
        assert_eq!((&mu, &mr), (&ku, &kr));
        assert!(!ku.cloud_config.write_files[0].content.is_on_device());
        // The whole message gzip'd, kept on the device: split and carved from the recipe.
        for enc in ["", "base64"] {
            let data = gz(&config_message(enc, 5000));
            let want = parse_user_data(Some(&data), &[], &limits);
            let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
            inst.user_data = Some(crate::model::Blob(on_device(&data)));
            let got = parse_instance_user_data(&inst, &limits);
            assert_eq!(got, want, "gzip'd message, part {enc:?}");
            let files = &got.0.cloud_config.write_files;
            assert!(files[0].content.is_on_device(), "{enc}: carved");
            assert!(got.0.scripts[0].content.is_on_device(), "{enc}: kept");
        }
    }

    /// A gzip'd message of many parts: each would be decompressed again from the message's
    /// start (leaves times its length over `MAX_REDERIVED_BYTES`), so it is decompressed and
    /// split in memory, as before: the same outcome, the parts held.
    #[test]
    fn a_gzipped_message_of_many_parts_goes_the_in_memory_way() {
        let limits = UserDataLimits::default();
        let mut m = b"Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n".to_vec();
        for i in 0..900 {
            m.extend_from_slice(
                format!(
                    "--B\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho {i}\n{}\n",
                    "#".repeat(200)
                )
                .as_bytes(),
            );
        }
        m.extend_from_slice(b"--B--\n");
        assert!(900 * m.len() > super::super::MAX_REDERIVED_BYTES);
        let data = gz(&m);
        let want = parse_user_data(Some(&data), &[], &limits);
        let mut inst = crate::model::Instance::new(crate::model::Format::NoCloud, "seed", "i");
        inst.user_data = Some(crate::model::Blob(on_device(&data)));
        let got = parse_instance_user_data(&inst, &limits);
        assert_eq!(got, want);
        assert_eq!(got.0.scripts.len(), 900);
        assert!(!got.0.scripts[0].content.is_on_device(), "held");
    }

    /// An identity part's view on the device is its range of the file: same bytes, digest and
    /// head, its ranges read at once.
    #[test]
    fn an_identity_part_is_viewed_as_its_range_of_the_file() {
        let doc = config_message("", 3000);
        let b = on_device(&doc);
        let start = doc
            .windows(14)
            .position(|w| w == b"#cloud-config\n")
            .unwrap();
        let end = doc.len() - "\n--B--\n".len();
        let part = Bytes::derived(
            &b,
            start..end,
            Box::new(PartRecipe::default()),
            "part 2",
            end - start,
        )
        .unwrap();
        let view = part.device_view().expect("an identity part has a view");
        assert!(view.is_on_device());
        assert_eq!(view.sha256(), part.sha256());
        assert_eq!(view.head(64).unwrap(), &doc[start..start + 64]);
        assert!(view == doc[start..end]);
        // A decoded part has none: its ranges are not the file's.
        let b64 = PartRecipe {
            base64: true,
            gunzip: false,
        };
        let d = on_device(b"aGVsbG8K");
        let decoded = Bytes::derived(&d, 0..8, Box::new(b64), "x", 8).unwrap();
        assert!(decoded == b"hello\n"[..]);
        assert!(decoded.device_view().is_none());
        // Nor does a part of a part.
        assert!(
            Bytes::derived(&part, 0..10, Box::new(PartRecipe::default()), "y", 10)
                .unwrap()
                .device_view()
                .is_none()
        );
    }
}
