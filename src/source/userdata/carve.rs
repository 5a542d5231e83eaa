//! Large block scalars carved out of a cloud-config before the YAML parse: a streaming line
//! pass over the document finds `key: |` and `key: >` blocks whose body exceeds a threshold,
//! gives the
//! parser a short placeholder in their place and keeps each block's byte range, not its value.
//! A document that is one flow collection (a JSON cloud-config, `jsonencode`) is read byte by
//! byte instead, and its large one-line double-quoted strings are carved the same way (their
//! escapes decoded as the parse decodes them, see [`Escapes`]). A long one-line plain value
//! (`content: <base64>`, cloud-init's documented binary form) is read without holding its line
//! and carved too: its text is its value ([`Plain`]). Once the text left for the
//! parser is long, smaller blocks and strings are carved too, so many files each below the
//! threshold leave a small text. A block that is a `write_files` content stays on the device:
//! its content is a [`Bytes::derived`] (unindented, folded, chomped or unescaped, and decoded as the
//! parse would, see [`BlockContent`]) streamed where it is written; any other block's value is
//! read back as a string. So a 64 MiB `write_files` entry is never held. It must not guess: any
//! line it cannot classify (tabs, a CR other than a CRLF line break's, quotes or brackets it cannot balance on one line, anchors,
//! tags, directives, explicit indentation indicators, control characters or invalid UTF-8 in
//! a carved body (valid UTF-8 passes through unchanged and is taken), a folded block whose
//! first line is not its least indented, an escape it does not know) leaves that value or the document uncarved, and the
//! caller parses the document whole as before (a carve that would leave more than
//! [`MAX_CARVED_TEXT`] is not used either: nothing a user wrote is dropped for memory's sake;
//! such a document is held, within the user-data cap). The caller also checks that every placeholder comes back exactly once as a whole
//! string, never as a key.

use super::yaml::Node;
use crate::model::bytes::{DerivedSet, SourceCheck};
use crate::model::Bytes;
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read};
use std::ops::Range;

/// Longest line looked at (a longer one is not classified: the document is parsed whole).
const MAX_LINE: usize = 1 << 20;

/// A cloud-config with its large literal blocks replaced by placeholders.
#[derive(Debug)]
pub(crate) struct Carved {
    /// The document given to the parser.
    pub text: String,
    /// `(placeholder, block)` in document order.
    pub values: Vec<(String, Literal)>,
}

/// A carved block: where its body lies in the document and how its value is made from it.
#[derive(Clone, Debug)]
pub(crate) struct Literal {
    /// The body's lines (each with its line break) in the document.
    pub range: Range<usize>,
    style: Style,
    /// Length of the value.
    pub len: usize,
    /// SHA-256 of `range` as the line pass read it (a pass checked against the file's digest):
    /// the first measure of the value reads the range again and must find these bytes
    /// ([`SourceCheck`]), so a device changed between the pass and the measure is refused.
    sha256: [u8; 32],
}

impl Literal {
    /// What the first measure of the value must find in its range: the bytes the line pass
    /// read there (the pass itself checked against the file's digest by `carve_blob`).
    fn check(&self) -> SourceCheck {
        SourceCheck {
            range: self.range.clone(),
            sha256: self.sha256,
        }
    }
}

/// How a carved value is made from its range: a literal block's body lines, or a one-line
/// double-quoted scalar's text between its quotes (escapes decoded, [`Escapes`]).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Style {
    Block(Chomp),
    /// A folded block (`>`): its lines as a literal's, the break between two lines that are
    /// not more indented read as a space ([`Lines::folded`]).
    Folded(Chomp),
    Double,
    /// A one-line plain scalar: its text is its value.
    Plain,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

/// A block scalar being read.
struct Block {
    /// Indentation of the node the block is the value of (its content is indented more).
    n: usize,
    /// A block without an indentation indicator: may be carved.
    candidate: bool,
    chomp: Chomp,
    /// The header line up to the indicator (kept when carved) and the whole line.
    prefix: String,
    header: String,
    /// The value's line rules, applied while reading (only for a candidate).
    lines: Lines,
    /// Body bytes as in the document, kept until the block is known to be large.
    verbatim: Option<String>,
    body_bytes: usize,
    /// The CRs of the body's CRLF line breaks: not counted against the thresholds, so a CRLF
    /// document is carved as its LF form is.
    body_crs: usize,
    /// Where the body starts in the document, and the value's length so far.
    start: usize,
    value_len: usize,
    /// The body's bytes hashed as read (while a candidate: only a candidate is carved).
    hash: Sha256,
}

/// A block's value made line by line (YAML 1.2 §8.1.2: the content indentation removed, empty
/// lines as line breaks; §8.1.3 for a folded block), the same at carve time (measured) and
/// where the value is streamed.
#[derive(Default)]
struct Lines {
    /// A folded block: the break between two text lines that do not start with a space or tab
    /// (after the indentation) is a space when no empty line lies between them, and dropped
    /// when some do (each empty line is a line break); around a more-indented ("spaced") line
    /// the breaks are kept as in a literal.
    folded: bool,
    /// The last text line was more indented (a folded block's "spaced" line).
    spaced: bool,
    /// Content indentation, from the first line with text.
    m: Option<usize>,
    /// Most spaces on a leading empty line (more than `m` is an error YAML reports).
    leading_max: usize,
    leading: usize,
    /// Empty lines since the last text line.
    pending: usize,
    any_text: bool,
}

impl Lines {
    /// The value bytes body line `raw` (without its line break) adds, pushed to `out`.
    fn line(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        let spaces = raw.iter().take_while(|&&c| c == b' ').count();
        let blank = spaces == raw.len();
        let m = match self.m {
            None if blank => {
                self.leading += 1;
                self.leading_max = self.leading_max.max(spaces);
                return Ok(());
            }
            None => {
                if self.leading_max > spaces {
                    return Err(());
                }
                self.m = Some(spaces);
                spaces
            }
            Some(m) => m,
        };
        if blank && raw.len() <= m {
            self.pending += 1;
            return Ok(());
        }
        let text = raw.get(m..).ok_or(())?;
        let spaced = self.folded && matches!(text.first(), Some(b' ' | b'\t'));
        if self.any_text {
            if self.folded && !spaced && !self.spaced {
                if self.pending == 0 {
                    out.push(b' ');
                }
            } else {
                out.push(b'\n');
            }
            push_breaks(out, self.pending);
        } else {
            push_breaks(out, self.leading);
        }
        self.pending = 0;
        self.any_text = true;
        self.spaced = spaced;
        out.extend_from_slice(text);
        Ok(())
    }

    /// The value's end as `chomp` has it; an error for a block without text (not carved).
    fn end(&self, chomp: Chomp, out: &mut Vec<u8>) -> Result<(), ()> {
        if !self.any_text {
            return Err(());
        }
        match chomp {
            Chomp::Strip => {}
            Chomp::Clip => out.push(b'\n'),
            Chomp::Keep => {
                out.push(b'\n');
                push_breaks(out, self.pending);
            }
        }
        Ok(())
    }
}

/// A document that is one flow collection, being read byte by byte ([`Carver::flow_feed`]).
#[derive(Default)]
struct Flow {
    /// The last byte outside strings that was not a space or line break.
    prev: Option<u8>,
    /// The double-quoted scalar being read.
    s: Option<Str>,
    /// Open brackets (`{` or `[`): a string after `{` or `,` in a mapping is a key, never
    /// carved (the parse confirms no placeholder is a key; a key carved would only make the
    /// document parsed whole).
    open: Vec<u8>,
}

/// Deepest flow nesting the pass follows (the parser's own limit is far lower).
const MAX_FLOW_DEPTH: usize = 1024;

/// A double-quoted scalar being read: its text (between the quotes) kept while small, its
/// value measured while every byte is one the pass decodes (`ok`).
struct Str {
    start: usize,
    esc: Escapes,
    /// After a `\\` that escapes the next byte: tracked whatever `ok` is, so an escaped quote
    /// never ends the scalar.
    escaped: bool,
    utf8: Utf8,
    verbatim: Option<Vec<u8>>,
    raw: usize,
    value_len: usize,
    ok: bool,
    key: bool,
    /// The text's bytes hashed as read ([`Carver::flow_feed`] hashes them a run at a time).
    hash: Sha256,
}

/// The escapes of a double-quoted scalar decoded byte by byte as the YAML parser decodes them
/// (YAML 1.2 §5.7, and JSON's surrogate pairs as serde-saphyr's scanner joins them), the same
/// at carve time (measured) and where the value is streamed. An escape it does not know (or a
/// lone surrogate) is an error: the scalar is then not carved.
#[derive(Default, Clone, Copy, PartialEq)]
enum Escapes {
    #[default]
    Idle,
    /// After `\`.
    Backslash,
    /// Reading `len` hex digits (`n` so far); `high`: the high surrogate this completes.
    Hex {
        len: u8,
        n: u8,
        v: u32,
        high: Option<u32>,
    },
    /// After a high surrogate: `\` then `u` must follow.
    Low(u32),
    LowU(u32),
}

impl Escapes {
    fn idle(&self) -> bool {
        *self == Escapes::Idle
    }

    /// The value bytes text byte `c` adds (a byte of the scalar's text, never its closing
    /// quote), pushed to `out`.
    fn byte(&mut self, c: u8, out: &mut Vec<u8>) -> Result<(), ()> {
        *self = match *self {
            Escapes::Idle if c == b'\\' => Escapes::Backslash,
            Escapes::Idle => {
                out.push(c);
                Escapes::Idle
            }
            Escapes::Backslash => {
                let ch = match c {
                    b'0' => '\0',
                    b'a' => '\x07',
                    b'b' => '\x08',
                    b't' => '\t',
                    b'n' => '\n',
                    b'v' => '\x0b',
                    b'f' => '\x0c',
                    b'r' => '\r',
                    b'e' => '\x1b',
                    b' ' => ' ',
                    b'"' => '"',
                    b'/' => '/',
                    b'\\' => '\\',
                    b'N' => '\u{85}',
                    b'_' => '\u{a0}',
                    b'L' => '\u{2028}',
                    b'P' => '\u{2029}',
                    b'x' | b'u' | b'U' => {
                        let len = match c {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        *self = Escapes::Hex {
                            len,
                            n: 0,
                            v: 0,
                            high: None,
                        };
                        return Ok(());
                    }
                    _ => return Err(()),
                };
                push_char(out, ch);
                Escapes::Idle
            }
            Escapes::Hex { len, n, v, high } => {
                let d = char::from(c).to_digit(16).ok_or(())?;
                let v = (v << 4) | d;
                if n + 1 < len {
                    Escapes::Hex {
                        len,
                        n: n + 1,
                        v,
                        high,
                    }
                } else {
                    match (high, len, v) {
                        (Some(h), _, 0xdc00..=0xdfff) => {
                            let v = 0x10000 + (((h - 0xd800) << 10) | (v - 0xdc00));
                            push_char(out, char::from_u32(v).ok_or(())?);
                            Escapes::Idle
                        }
                        (Some(_), _, _) => return Err(()),
                        (None, 4, 0xd800..=0xdbff) => Escapes::Low(v),
                        (None, 4, 0xdc00..=0xdfff) => return Err(()),
                        (None, _, v) => {
                            push_char(out, char::from_u32(v).ok_or(())?);
                            Escapes::Idle
                        }
                    }
                }
            }
            Escapes::Low(h) if c == b'\\' => Escapes::LowU(h),
            Escapes::LowU(h) if c == b'u' => Escapes::Hex {
                len: 4,
                n: 0,
                v: 0,
                high: Some(h),
            },
            Escapes::Low(_) | Escapes::LowU(_) => return Err(()),
        };
        Ok(())
    }
}

fn push_char(out: &mut Vec<u8>, ch: char) {
    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
}

/// Whether the parse takes `ch` inside a scalar as itself: printable ASCII, a tab, or a
/// non-ASCII character YAML calls printable that no YAML version reads as a line break or a
/// byte-order mark (NEL, U+2028, U+2029 and U+FEFF are left to the whole parse). UTF-8 passes
/// through a literal block and a double-quoted scalar unchanged, so the streamed value stays
/// byte-identical.
fn printable(ch: char) -> bool {
    matches!(ch, '\t' | ' '..='~')
        || (ch >= '\u{a0}'
            && !matches!(
                ch,
                '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            ))
}

/// A line's bytes all [`printable`] (and valid UTF-8).
fn printable_line(raw: &[u8]) -> bool {
    std::str::from_utf8(raw).is_ok_and(|s| s.chars().all(printable))
}

/// UTF-8 checked byte by byte (a double-quoted scalar is read a byte at a time): each
/// character complete and [`printable`], tabs excepted.
#[derive(Default, Clone, Copy)]
struct Utf8 {
    buf: [u8; 4],
    n: u8,
    need: u8,
}

impl Utf8 {
    fn idle(&self) -> bool {
        self.n == 0
    }

    fn byte(&mut self, c: u8) -> bool {
        if self.n == 0 {
            if c < 0x80 {
                return (0x20..0x7f).contains(&c);
            }
            self.need = match c {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return false,
            };
        }
        self.buf[usize::from(self.n)] = c;
        self.n += 1;
        if self.n < self.need {
            return true;
        }
        let ok = std::str::from_utf8(&self.buf[..usize::from(self.n)])
            .ok()
            .and_then(|s| s.chars().next())
            .is_some_and(printable);
        self.n = 0;
        ok
    }
}

/// The line pass, fed in chunks.
pub(crate) struct Carver {
    threshold: usize,
    max_text: usize,
    /// Once the text left for the parser is longer than `soft`, a candidate longer than
    /// `small` is carved too (below `threshold`): many blocks or strings each below the
    /// threshold (2,000 files of 30 KiB) then leave a small text, not a whole document.
    soft: usize,
    small: usize,
    /// Only blank and comment lines so far: a line starting with `{` or `[` makes the document
    /// one flow collection (JSON), read by [`Flow`] rather than line by line.
    header_only: bool,
    flow: Option<Flow>,
    token_base: String,
    line: Vec<u8>,
    /// Where the line being read starts in the document.
    pos: usize,
    block: Option<Block>,
    /// A long line's one-line plain value being read without holding the line ([`Plain`]).
    plain: Option<Plain>,
    /// The line being read was looked at for a plain value (and is not one).
    probed: bool,
    out: Carved,
    failed: bool,
    /// Scratch for a line's value bytes (measured, then dropped).
    scratch: Vec<u8>,
}

impl Carver {
    /// `threshold`: a body larger than this is carved; `max_text`: largest document left for the
    /// parser; `token_base`: the placeholders' unguessable prefix (letters and digits).
    pub(crate) fn new(threshold: usize, max_text: usize, token_base: String) -> Carver {
        Carver {
            threshold,
            max_text,
            // An eighth: 10,000 entries' placeholder lines (about 70 bytes each) then fit
            // the rest of `max_text`.
            soft: max_text / 8,
            small: threshold.min(SMALL),
            header_only: true,
            flow: None,
            token_base,
            line: Vec::new(),
            pos: 0,
            block: None,
            plain: None,
            probed: false,
            out: Carved {
                text: String::new(),
                values: Vec::new(),
            },
            failed: false,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        while !self.failed && !chunk.is_empty() {
            if self.flow.is_some() {
                return self.flow_feed(chunk);
            }
            let nl = chunk.iter().position(|&b| b == b'\n');
            if self.header_only && self.block.is_none() && self.plain.is_none() {
                let part = &chunk[..nl.unwrap_or(chunk.len())];
                let first = self.line.iter().chain(part).find(|&&c| c != b' ');
                if matches!(first, Some(b'{' | b'[')) {
                    // The line so far (spaces) and the rest: one flow collection.
                    let line = std::mem::take(&mut self.line);
                    self.flow = Some(Flow::default());
                    self.flow_feed(&line);
                    return self.flow_feed(chunk);
                }
            }
            let part = &chunk[..nl.unwrap_or(chunk.len())];
            if self.plain.is_some() {
                self.plain_bytes(part);
            } else {
                self.push_line_bytes(part);
                self.probe_plain();
            }
            match nl {
                Some(i) => {
                    if let Some(p) = self.plain.take() {
                        let len = p.prefix.len() + p.len + usize::from(p.cr);
                        self.end_plain(p);
                        self.pos += len + 1;
                    } else {
                        let line = std::mem::take(&mut self.line);
                        self.on_line(&line);
                        self.pos += line.len() + 1;
                        self.line = line;
                        self.line.clear();
                    }
                    self.probed = false;
                    chunk = &chunk[i + 1..];
                }
                None => chunk = &[],
            }
        }
    }

    /// A line outside a block longer than `small` whose value is a plain scalar: its value is
    /// read from here on without holding it (a base64 `content` on one line of 32 MiB), kept
    /// only while it is small enough to be given back to the line pass whole.
    fn probe_plain(&mut self) {
        if self.failed || self.probed || self.block.is_some() || self.line.len() <= self.small {
            return;
        }
        match plain_at(&self.line) {
            None => {}
            Some(None) => self.probed = true,
            Some(Some(v)) => {
                self.probed = true;
                let line = std::mem::take(&mut self.line);
                let Ok(prefix) = std::str::from_utf8(&line[..v]) else {
                    return self.fail();
                };
                self.plain = Some(Plain {
                    prefix: prefix.to_string(),
                    start: self.pos + v,
                    len: 0,
                    verbatim: Some(Vec::new()),
                    ok: true,
                    prev: b' ',
                    number: true,
                    hash: Sha256::new(),
                    cr: false,
                });
                self.plain_bytes(&line[v..]);
                self.line = line;
                self.line.clear();
            }
        }
    }

    /// Bytes of a plain value being read ([`Plain`]).
    fn plain_bytes(&mut self, bytes: &[u8]) {
        let Some(p) = &mut self.plain else {
            return self.fail();
        };
        // A CR is held back while it is the line's last byte: before the line feed it is the
        // CRLF line break ([`Carver::on_line`]), not the value's; anywhere else it is a byte
        // the value cannot take.
        if bytes.is_empty() {
            return;
        }
        let held: &[u8] = if std::mem::take(&mut p.cr) {
            b"\r"
        } else {
            b""
        };
        let (bytes, cr) = match bytes.split_last() {
            Some((b'\r', rest)) => (rest, true),
            _ => (bytes, false),
        };
        p.hash.update(held);
        p.hash.update(bytes);
        p.cr = cr;
        for &c in held.iter().chain(bytes) {
            p.len += 1;
            if let Some(v) = &mut p.verbatim {
                v.push(c);
            }
            // Printable ASCII without quotes or brackets, no comment (` #`), no `: ` (a key):
            // the value is then the text itself (YAML 1.2 §7.3.3, one line).
            let taken = (0x20..0x7f).contains(&c)
                && !matches!(c, b'"' | b'\'' | b'[' | b']' | b'{' | b'}')
                && !matches!((p.prev, c), (b' ', b'#') | (b':', b' '));
            p.ok &= taken;
            // Only what a number (of any base, with signs, dots, exponents) is made of: the
            // parse could read it as one, not as a string.
            p.number &= c.is_ascii_hexdigit() || b"xXoO+-._: ".contains(&c);
            p.prev = c;
        }
        if p.len > self.threshold {
            p.verbatim = None;
        }
        if !p.ok && p.verbatim.is_none() {
            // Past the threshold the value is the text the pass took: a byte it cannot take
            // would make it differ from the parse's.
            self.fail();
        }
    }

    /// The end of a plain value's line: carved when large (as a block), else given back to
    /// the line pass as the line it is.
    fn end_plain(&mut self, p: Plain) {
        // Longer than any word the parse reads as a boolean, null, infinity or NaN (`false`,
        // `-.inf`), and not made only of what a number is: the value is a string.
        let ok = p.ok && p.len > 5 && !matches!(p.prev, b' ' | b':') && !p.number;
        let carve = ok && (p.verbatim.is_none() || self.carve_small(p.len));
        match p.verbatim {
            Some(v) if !carve => {
                let mut line = p.prefix.into_bytes();
                line.extend_from_slice(&v);
                self.on_line(&line);
            }
            None if !carve => self.fail(),
            _ => {
                let token = self.token();
                let line = format!("{}{}", p.prefix, token);
                self.header_only = false;
                self.text_line(&line);
                let lit = Literal {
                    range: p.start..p.start + p.len,
                    style: Style::Plain,
                    len: p.len,
                    sha256: p.hash.finalize().into(),
                };
                self.out.values.push((token, lit));
            }
        }
    }

    fn push_line_bytes(&mut self, b: &[u8]) {
        if self.line.len() + b.len() > MAX_LINE {
            self.failed = true;
            return;
        }
        self.line.extend_from_slice(b);
    }

    /// The carved document, or `None` when nothing was carved or the document could not be
    /// read with certainty (then it is parsed whole).
    pub(crate) fn finish(mut self) -> Option<Carved> {
        // A last line without a line break: carving it would need YAML's end-of-input rules.
        if self.failed || !self.line.is_empty() || self.plain.is_some() {
            return None;
        }
        // A double-quoted scalar left open: the parse reports it, not carved.
        if self.flow.as_ref().is_some_and(|f| f.s.is_some()) {
            return None;
        }
        if let Some(b) = self.block.take() {
            self.end_block(b);
        }
        if self.failed || self.out.values.is_empty() {
            return None;
        }
        // The list lives through the parse and the conversion (10,000 entries: up to 0.6 MB
        // of spare capacity).
        self.out.values.shrink_to_fit();
        Some(self.out)
    }

    fn fail(&mut self) {
        self.failed = true;
    }

    /// One line of the document (`doc_line`, without its line feed). A CR before the line feed
    /// is a line break as the feed alone is (YAML 1.2 §5.4: a CRLF document, as Windows tools
    /// write it, reads as its LF form): the line is read without it, while ranges and digests
    /// cover the document's bytes. A CR anywhere else is not read here.
    fn on_line(&mut self, doc_line: &[u8]) {
        let (raw, cr) = match doc_line.split_last() {
            Some((b'\r', rest)) => (rest, true),
            _ => (doc_line, false),
        };
        if raw.contains(&b'\r') {
            return self.fail();
        }
        if let Some(mut b) = self.block.take() {
            match body_line(&b, raw) {
                Err(()) => return self.fail(),
                Ok(true) => {
                    if self.body(&mut b, raw, cr).is_err() {
                        return self.fail();
                    }
                    self.block = Some(b);
                    return;
                }
                Ok(false) => self.end_block(b),
            }
            if self.failed {
                return;
            }
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            return self.fail();
        };
        let t = line.trim_start_matches(' ');
        if !(t.is_empty() || t.starts_with('#')) {
            self.header_only = false;
        }
        match classify(line) {
            Err(()) => self.fail(),
            Ok(None) => self.text_line(line),
            Ok(Some(h)) => {
                self.block = Some(Block {
                    n: h.n,
                    candidate: true,
                    chomp: h.chomp,
                    prefix: line[..h.at].to_string(),
                    header: line.to_string(),
                    lines: Lines {
                        folded: h.folded,
                        ..Lines::default()
                    },
                    verbatim: Some(String::new()),
                    body_bytes: 0,
                    body_crs: 0,
                    start: self.pos + doc_line.len() + 1,
                    value_len: 0,
                    hash: Sha256::new(),
                })
            }
        }
    }

    fn text_line(&mut self, line: &str) {
        if self.out.text.len() + line.len() + 1 > self.max_text {
            return self.fail();
        }
        self.out.text.push_str(line);
        self.out.text.push('\n');
    }

    /// One line of a block's body (`raw`, without its line break; `cr`: the break is CRLF):
    /// kept verbatim while small, added to the value when a candidate.
    fn body(&mut self, b: &mut Block, raw: &[u8], cr: bool) -> Result<(), ()> {
        b.body_bytes += raw.len() + 1 + usize::from(cr);
        b.body_crs += usize::from(cr);
        if let Some(v) = &mut b.verbatim {
            v.push_str(std::str::from_utf8(raw).map_err(|_| ())?);
            v.push('\n');
        }
        if b.candidate {
            // The value is built from the body's own bytes: only printable characters and
            // tabs inside the content are taken without the parser's checks.
            if !printable_line(raw) {
                b.candidate = false;
            } else {
                b.hash.update(raw);
                b.hash.update(if cr { &b"\r\n"[..] } else { b"\n" });
                self.scratch.clear();
                b.lines.line(raw, &mut self.scratch)?;
                b.value_len += self.scratch.len();
            }
        }
        if !b.candidate && b.verbatim.is_none() {
            // Past the threshold the value is the lines the pass took: a line it cannot take
            // as it is would be lost from it (or make it disagree with its recorded length),
            // so the document goes to the whole parse.
            return Err(());
        }
        if b.body_bytes - b.body_crs > self.threshold && b.verbatim.is_some() {
            if !b.candidate {
                return Err(());
            }
            b.verbatim = None;
        }
        Ok(())
    }

    /// Whether a candidate of `raw` bytes, below the threshold, is carved: only once the
    /// text left for the parser is long (a small document stays as it is).
    fn carve_small(&self, raw: usize) -> bool {
        raw > self.small && self.out.text.len() > self.soft
    }

    fn end_block(&mut self, mut b: Block) {
        self.scratch.clear();
        let end = b.lines.end(b.chomp, &mut self.scratch);
        match b.verbatim.take() {
            Some(v)
                if !(b.candidate && end.is_ok() && self.carve_small(b.body_bytes - b.body_crs)) =>
            {
                let header = std::mem::take(&mut b.header);
                self.text_line(&header);
                if self.out.text.len() + v.len() > self.max_text {
                    return self.fail();
                }
                self.out.text.push_str(&v);
            }
            _ => {
                if end.is_err() {
                    return self.fail();
                }
                let token = self.token();
                let line = format!("{}{}", b.prefix, token);
                self.text_line(&line);
                let lit = Literal {
                    range: b.start..b.start + b.body_bytes,
                    style: if b.lines.folded {
                        Style::Folded(b.chomp)
                    } else {
                        Style::Block(b.chomp)
                    },
                    len: b.value_len + self.scratch.len(),
                    sha256: b.hash.finalize().into(),
                };
                self.out.values.push((token, lit));
            }
        }
    }

    fn token(&self) -> String {
        format!("{}x{}", self.token_base, self.out.values.len())
    }

    /// Bytes of a document that is one flow collection (JSON): passed to the text as they
    /// are, except a double-quoted scalar on one line that is large (as for blocks: past the
    /// threshold, or past `small` once the text is long), whose text between the quotes is
    /// carved when every byte is printable ASCII and every escape one [`Escapes`] decodes.
    /// Outside strings only what JSON has (brackets, commas, colons, numbers, words, spaces,
    /// line breaks) is taken: a quote anywhere else (inside a plain scalar, a comment, a
    /// single-quoted scalar) could be read otherwise by the parser, so the pass gives up.
    fn flow_feed(&mut self, bytes: &[u8]) {
        let Some(mut f) = self.flow.take() else {
            return self.fail();
        };
        // Where the open string's text starts in `bytes`: its bytes are hashed a run at a time
        // (at its closing quote, or at the end of `bytes`), not byte by byte.
        let mut run = 0;
        for (i, &c) in bytes.iter().enumerate() {
            if self.failed {
                break;
            }
            let at = self.pos;
            self.pos += 1;
            match f.s.take() {
                None => match c {
                    b'"' if matches!(f.prev, None | Some(b'{' | b'[' | b',' | b':')) => {
                        let key =
                            matches!(f.prev, Some(b'{' | b',')) && f.open.last() == Some(&b'{');
                        run = i + 1;
                        f.s = Some(Str {
                            key,
                            start: at + 1,
                            esc: Escapes::default(),
                            escaped: false,
                            utf8: Utf8::default(),
                            verbatim: Some(Vec::new()),
                            raw: 0,
                            value_len: 0,
                            ok: true,
                            hash: Sha256::new(),
                        });
                    }
                    // A CR is passed on as it is: the parser reads it as the line break (CRLF)
                    // or space it is in the whole document.
                    b' ' | b'\n' | b'\r' => self.push_text(c),
                    b'{' | b'[' if f.open.len() < MAX_FLOW_DEPTH => {
                        f.open.push(c);
                        f.prev = Some(c);
                        self.push_text(c);
                    }
                    b'}' | b']' => {
                        f.open.pop();
                        f.prev = Some(c);
                        self.push_text(c);
                    }
                    b',' | b':' | b'-' | b'+' | b'.' | b'_' => {
                        f.prev = Some(c);
                        self.push_text(c);
                    }
                    c if c.is_ascii_alphanumeric() => {
                        f.prev = Some(c);
                        self.push_text(c);
                    }
                    _ => self.fail(),
                },
                Some(mut s) if !s.escaped && c == b'"' => {
                    f.prev = Some(b'"');
                    s.hash.update(bytes.get(run..i).unwrap_or_default());
                    self.end_str(s);
                }
                Some(mut s) => {
                    // A CR is not counted against the thresholds (a CRLF document is carved as
                    // its LF form is); it is never taken into a carved value.
                    s.raw += usize::from(c != b'\r');
                    s.escaped = !s.escaped && c == b'\\';
                    if let Some(v) = &mut s.verbatim {
                        v.push(c);
                    }
                    if s.ok {
                        self.scratch.clear();
                        s.ok = s.utf8.byte(c) && s.esc.byte(c, &mut self.scratch).is_ok();
                        s.value_len += self.scratch.len();
                    }
                    if s.key && s.raw > MAX_LINE {
                        // A key that large: not carved, not held here.
                        self.fail();
                    } else if s.raw > self.threshold && !s.key {
                        s.verbatim = None;
                    }
                    if !s.ok && s.verbatim.is_none() {
                        // Past the threshold the value is what the pass decoded: a byte it
                        // cannot take would be lost from it.
                        self.fail();
                    }
                    f.s = Some(s);
                }
            }
        }
        if let Some(s) = &mut f.s {
            s.hash.update(bytes.get(run..).unwrap_or_default());
        }
        self.flow = Some(f);
    }

    fn push_text(&mut self, c: u8) {
        if self.out.text.len() >= self.max_text {
            return self.fail();
        }
        self.out.text.push(char::from(c));
    }

    fn end_str(&mut self, s: Str) {
        let carve = s.ok
            && !s.key
            && s.esc.idle()
            && s.utf8.idle()
            && (s.verbatim.is_none() || self.carve_small(s.raw));
        let text = match s.verbatim {
            Some(v) if !carve => match String::from_utf8(v) {
                Ok(v) => v,
                Err(_) => return self.fail(),
            },
            // Past the threshold and not taken (an escape left open): the value is not known.
            None if !carve => return self.fail(),
            _ => {
                let token = self.token();
                let lit = Literal {
                    range: s.start..s.start + s.raw,
                    style: Style::Double,
                    len: s.value_len,
                    sha256: s.hash.finalize().into(),
                };
                self.out.values.push((token.clone(), lit));
                token
            }
        };
        if self.out.text.len() + text.len() + 2 > self.max_text {
            return self.fail();
        }
        self.out.text.push('"');
        self.out.text.push_str(&text);
        self.out.text.push('"');
    }
}

fn push_breaks(s: &mut Vec<u8>, n: usize) {
    s.extend(std::iter::repeat_n(b'\n', n));
}

/// Whether `raw` belongs to the body of `b` (YAML 1.2 §8.1.1.1: the content indentation is
/// the first text line's; a line with text indented less ends the block; empty lines belong).
fn body_line(b: &Block, raw: &[u8]) -> Result<bool, ()> {
    let spaces = raw.iter().take_while(|&&c| c == b' ').count();
    match raw.get(spaces) {
        None => Ok(true),
        // A tab where indentation could be: not read here.
        Some(b'\t') if b.lines.m.is_none_or(|m| spaces < m) => Err(()),
        Some(_) => Ok(match b.lines.m {
            None => spaces > b.n,
            Some(m) => spaces >= m,
        }),
    }
}

/// Where a line's one-line value starts when it is a plain scalar that is a mapping value
/// (`key: VALUE`, after any `- `) or a sequence entry (`- VALUE`): `None` while the line so far
/// does not tell, `Some(None)` when it is not one.
fn plain_at(b: &[u8]) -> Option<Option<usize>> {
    // A CR last may be a CRLF's ([`Carver::on_line`]): the line so far is read without it.
    let b = b.strip_suffix(b"\r").unwrap_or(b);
    let mut i = b.iter().take_while(|&&c| c == b' ').count();
    if i == b.len() {
        return None;
    }
    let mut dash = false;
    while b[i] == b'-' {
        match b.get(i + 1) {
            None => return None,
            Some(b' ') => {}
            Some(_) => break,
        }
        dash = true;
        i += 1;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if i == b.len() {
            return None;
        }
    }
    let k = key_len(&b[i..]);
    if k > 0 && i + k == b.len() {
        return None;
    }
    let mut v = i;
    if k > 0 && b[i + k] == b':' {
        match b.get(i + k + 1) {
            None => return None,
            Some(b' ') => {
                v = i + k + 1;
                while b.get(v) == Some(&b' ') {
                    v += 1;
                }
            }
            Some(_) if dash => {}
            Some(_) => return Some(None),
        }
    } else if !dash {
        return Some(None);
    }
    let first = *b.get(v)?;
    Some((!b"-?:,[]{}#&*!|>'\"%@`".contains(&first) && (0x21..0x7f).contains(&first)).then_some(v))
}

/// A plain value read without holding its line ([`Carver::probe_plain`]).
struct Plain {
    /// The line up to the value (kept when carved).
    prefix: String,
    /// Where the value starts in the document, its length so far.
    start: usize,
    len: usize,
    /// The value as in the document, kept until it is known to be large.
    verbatim: Option<Vec<u8>>,
    /// Every byte one the value is taken verbatim with.
    ok: bool,
    prev: u8,
    /// Every byte one a number could have.
    number: bool,
    /// The value's bytes hashed as read.
    hash: Sha256,
    /// A CR read last, held back ([`Carver::plain_bytes`]).
    cr: bool,
}

/// A block scalar header: where its indicator starts, its node's indentation, its style.
struct Header {
    at: usize,
    n: usize,
    /// `>` rather than `|`.
    folded: bool,
    chomp: Chomp,
}

/// `Ok(None)`: a line the parser may have (blank, comment, `key: value`, `- value` with a
/// one-line value); `Ok(Some)`: a block scalar header; `Err`: not classified.
fn classify(line: &str) -> Result<Option<Header>, ()> {
    if line.contains('\t') {
        return Err(());
    }
    let b = line.as_bytes();
    let mut i = b.iter().take_while(|&&c| c == b' ').count();
    if i == b.len() || b[i] == b'#' {
        return Ok(None);
    }
    let mut dash = None;
    while b[i] == b'-' && b.get(i + 1).is_none_or(|&c| c == b' ') {
        dash = Some(i);
        i += 1;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if i == b.len() {
            return Ok(None);
        }
    }
    let key_len = key_len(&b[i..]);
    let (n, v) = if key_len > 0
        && b.get(i + key_len) == Some(&b':')
        && b.get(i + key_len + 1).is_none_or(|&c| c == b' ')
    {
        let mut v = i + key_len + 1;
        while b.get(v) == Some(&b' ') {
            v += 1;
        }
        (i, v)
    } else {
        match dash {
            Some(d) => (d, i),
            None => return Err(()),
        }
    };
    let value = &line[v..];
    value_kind(value).map(|h| {
        h.map(|(folded, chomp)| Header {
            at: v,
            n,
            folded,
            chomp,
        })
    })
}

fn key_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => b
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
            .count(),
        _ => 0,
    }
}

/// After a value: nothing, or spaces and a comment.
fn rest_ok(r: &str) -> bool {
    let t = r.trim_start_matches(' ');
    t.is_empty() || (t.starts_with('#') && t.len() < r.len())
}

/// `Ok(Some((folded, chomp)))` for a block header, `Ok(None)` for a one-line value.
fn value_kind(value: &str) -> Result<Option<(bool, Chomp)>, ()> {
    let Some(first) = value.chars().next() else {
        return Ok(None);
    };
    match first {
        '#' => Ok(None),
        '|' | '>' => {
            let (chomp, rest) = match value[1..].chars().next() {
                Some('-') => (Chomp::Strip, &value[2..]),
                Some('+') => (Chomp::Keep, &value[2..]),
                _ => (Chomp::Clip, &value[1..]),
            };
            if rest_ok(rest) {
                Ok(Some((first == '>', chomp)))
            } else {
                Err(())
            }
        }
        '\'' | '"' => {
            let body = &value[1..];
            let end = body.find(first).ok_or(())?;
            if first == '"' && body[..end].contains('\\') || !rest_ok(&body[end + 1..]) {
                return Err(());
            }
            Ok(None)
        }
        c if "-?:,[]{}&*!|>%@`".contains(c) => Err(()),
        _ => {
            // A plain scalar up to a comment: no quotes, brackets or `: ` the line pass would
            // have to understand.
            let end = value.find(" #").unwrap_or(value.len());
            let plain = &value[..end];
            if plain.contains(['[', ']', '{', '}', '"', '\''])
                || plain.contains(": ")
                || plain.trim_end().ends_with(':')
            {
                return Err(());
            }
            Ok(None)
        }
    }
}

/// Where a node lies, as far as [`restore`] cares: a `write_files[i].content` is left as its
/// placeholder when deferring.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Top,
    WriteFiles,
    WriteFile,
    Content,
    Other,
}

/// Puts each carved value back in place of its placeholder: every placeholder must be found
/// exactly once, as a whole string, and the token base nowhere else (not in a key, not inside a
/// longer string). With `defer`, a placeholder that is a top-level `write_files[i].content` is
/// left in place (that entry's content is streamed from the device, [`content`]); every other is
/// replaced by `value(i)` (the block read back). `None` when that fails: the document was
/// misread, or a value could not be read; it is parsed whole. Else the deferred placeholders'
/// indices.
pub(crate) fn restore(
    node: &mut Node,
    base: &str,
    tokens: &[String],
    defer: bool,
    value: &mut dyn FnMut(usize) -> Option<String>,
) -> Option<Vec<usize>> {
    struct Walk<'a> {
        base: &'a str,
        tokens: &'a [String],
        defer: bool,
        found: Vec<bool>,
        deferred: Vec<usize>,
        value: &'a mut dyn FnMut(usize) -> Option<String>,
    }
    impl Walk<'_> {
        fn walk(&mut self, node: &mut Node, at: At) -> bool {
            match node {
                Node::Str(s) if s.contains(self.base) => {
                    // A placeholder is `{base}x{index}` ([`Carver::token`]): its index read
                    // from it, then confirmed (no search over thousands of tokens per string).
                    let Some(i) = s
                        .strip_prefix(self.base)
                        .and_then(|r| r.strip_prefix('x'))
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&i| self.tokens.get(i).is_some_and(|t| t == s))
                    else {
                        return false;
                    };
                    if self.found.get(i).copied().unwrap_or(true) {
                        return false;
                    }
                    self.found[i] = true;
                    if self.defer && at == At::Content {
                        self.deferred.push(i);
                        return true;
                    }
                    match (self.value)(i) {
                        Some(v) => {
                            *s = v;
                            true
                        }
                        None => false,
                    }
                }
                Node::Seq(items) => {
                    let next = if at == At::WriteFiles {
                        At::WriteFile
                    } else {
                        At::Other
                    };
                    items.iter_mut().all(|n| self.walk(n, next))
                }
                Node::Map(m) => {
                    m.keys().all(|k| !k.contains(self.base))
                        && m.iter_mut().all(|(k, n)| {
                            let next = match (at, k.as_str()) {
                                (At::Top, "write_files") => At::WriteFiles,
                                (At::WriteFile, "content") => At::Content,
                                _ => At::Other,
                            };
                            self.walk(n, next)
                        })
                }
                _ => true,
            }
        }
    }
    let mut w = Walk {
        base,
        tokens,
        defer,
        found: vec![false; tokens.len()],
        deferred: Vec::new(),
        value,
    };
    (w.walk(node, At::Top) && w.found.iter().all(|&f| f)).then_some(w.deferred)
}

/// A carved block's value read back from the document as a string (a block that is not a
/// streamed `write_files` content): its bytes are ASCII (checked by the line pass), the range
/// read again checked against the digest the line pass took ([`Literal::check`]).
pub(crate) fn value(doc: &Bytes, lit: &Literal) -> io::Result<String> {
    let b = content(doc, lit, Decode::Plain, "a literal block", lit.len, None)?;
    let mut v = Vec::with_capacity(b.len());
    b.for_each_chunk(&mut |c| {
        v.extend_from_slice(c);
        Ok(())
    })?;
    String::from_utf8(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// How a `write_files` content is decoded (`encoding`), as far as it is streamed.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Decode {
    Plain,
    Base64,
    GzipBase64,
}

/// A `write_files` content kept on the device: the block's value decoded as `decode`, at most
/// `max` bytes, as a [`Bytes::derived_checked`] (length and digest from one streaming pass that
/// also checks the range against the digest the line pass took: a device changed since is an
/// error naming the file, [`Literal::check`]). An error
/// when it cannot be made identically to the in-memory path (a rare base64 form, bad gzip, too
/// large, a read error): the caller then reads the value and decodes it as any other.
///
/// With `slot`, the content is that slot of the set (made by [`set`]: one allocation for all
/// of a document's contents, each a compact recipe, see [`DerivedSet`]); else the one slot of a
/// set of its own.
pub(crate) fn content(
    doc: &Bytes,
    lit: &Literal,
    decode: Decode,
    what: &str,
    max: usize,
    slot: Option<(&DerivedSet, usize)>,
) -> io::Result<Bytes> {
    let recipe = BlockContent {
        style: lit.style,
        decode,
    };
    let own;
    let (members, i) = match slot {
        Some(s) => s,
        None => {
            own = set(doc, 1);
            (&own, 0)
        }
    };
    members.derive(
        i,
        lit.range.clone(),
        Some(lit.check()),
        recipe.kind(),
        what,
        max,
    )
}

/// A set for up to `slots` `write_files` contents of `doc` (see [`content`]).
pub(crate) fn set(doc: &Bytes, slots: usize) -> DerivedSet {
    DerivedSet::new(doc, open_kind, slots)
}

/// The recipe of a carved block's value: its body lines unindented and chomped, then decoded.
/// It keeps no head ([`DerivedSet::derive`]): a carved value is never classified (a script's
/// head is its document's), and a document may carve thousands (2,000 × 4 KiB was half a
/// 59 MiB document's peak).
#[derive(Clone, Copy)]
struct BlockContent {
    style: Style,
    decode: Decode,
}

/// The styles and decodings, in the order of their codes (a member's kind, see
/// [`BlockContent::kind`]).
const STYLES: [Style; 8] = [
    Style::Block(Chomp::Clip),
    Style::Block(Chomp::Strip),
    Style::Block(Chomp::Keep),
    Style::Folded(Chomp::Clip),
    Style::Folded(Chomp::Strip),
    Style::Folded(Chomp::Keep),
    Style::Double,
    Style::Plain,
];
const DECODES: [Decode; 3] = [Decode::Plain, Decode::Base64, Decode::GzipBase64];

impl BlockContent {
    /// The recipe as one byte: the style's code, then the decoding's times 8.
    fn kind(self) -> u8 {
        let s = STYLES.iter().position(|&x| x == self.style).unwrap_or(0);
        let d = DECODES.iter().position(|&x| x == self.decode).unwrap_or(0);
        (s + 8 * d) as u8
    }

    fn from_kind(k: u8) -> BlockContent {
        BlockContent {
            style: STYLES[usize::from(k % 8)],
            decode: DECODES[usize::from(k / 8) % DECODES.len()],
        }
    }
}

/// A member's reader ([`crate::model::bytes::OpenFn`]): the recipe its kind names (a kind is
/// only ever made by [`BlockContent::kind`]).
fn open_kind<'a>(kind: u8, src: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
    BlockContent::from_kind(kind).open_reader(src)
}

impl BlockContent {
    fn open_reader<'a>(self, src: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
        let src = io::BufReader::with_capacity(crate::model::bytes::STREAM_CHUNK, src);
        let text: Box<dyn Read + 'a> = match self.style {
            Style::Block(chomp) | Style::Folded(chomp) => Box::new(Unfold {
                src,
                lines: Lines {
                    folded: matches!(self.style, Style::Folded(_)),
                    ..Lines::default()
                },
                chomp,
                line: Vec::new(),
                out: Vec::new(),
                at: 0,
                done: false,
            }),
            Style::Plain => Box::new(src),
            Style::Double => Box::new(Unescape {
                src,
                esc: Escapes::default(),
                utf8: Utf8::default(),
                out: Vec::new(),
                at: 0,
                done: false,
            }),
        };
        match self.decode {
            Decode::Plain => Box::new(text),
            Decode::Base64 => Box::new(B64::new(text)),
            // The decoder the in-memory path uses (`gunzip`), so the same bytes are accepted.
            Decode::GzipBase64 => {
                Box::new(GzThenEnd(flate2::read::MultiGzDecoder::new(B64::new(text))))
            }
        }
    }
}

/// The gzip decoder, then its input checked to be at its end (so the base64's own end rules
/// always run): input left after the last member is an error, never ignored.
struct GzThenEnd<R: Read>(flate2::read::MultiGzDecoder<R>);

impl<R: Read> Read for GzThenEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() && self.0.get_mut().read(&mut [0u8; 1])? != 0 {
            return Err(invalid("data after the gzip stream"));
        }
        Ok(n)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A block's body lines read as its value ([`Lines`]), one line at a time.
struct Unfold<R> {
    src: R,
    lines: Lines,
    chomp: Chomp,
    line: Vec<u8>,
    out: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: BufRead> Read for Unfold<R> {
    /// Fills `buf` from as many lines as it takes (one line per call would hand a caller
    /// writing a file one short write per line).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at > 0 {
            self.out.drain(..self.at);
            self.at = 0;
        }
        while self.out.len() < buf.len() && !self.done {
            self.line.clear();
            let n = (&mut self.src)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.line)?;
            if n == 0 {
                self.done = true;
                self.lines
                    .end(self.chomp, &mut self.out)
                    .map_err(|()| invalid("block without text"))?;
                break;
            }
            // Every body line ends with a line break (the line pass saw it so), LF or CRLF
            // (the pass read the line without its CR: [`Carver::on_line`]).
            if self.line.pop() != Some(b'\n') {
                return Err(invalid("block line without a line break"));
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            self.lines
                .line(&self.line, &mut self.out)
                .map_err(|()| invalid("block lines"))?;
        }
        let n = buf.len().min(self.out.len());
        buf[..n].copy_from_slice(&self.out[..n]);
        self.at = n;
        Ok(n)
    }
}

/// A double-quoted scalar's text read as its value ([`Escapes`]).
struct Unescape<R> {
    src: R,
    esc: Escapes,
    utf8: Utf8,
    out: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: BufRead> Read for Unescape<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at > 0 {
            self.out.drain(..self.at);
            self.at = 0;
        }
        while self.out.len() < buf.len() && !self.done {
            let chunk = self.src.fill_buf()?;
            if chunk.is_empty() {
                self.done = true;
                if !self.esc.idle() {
                    return Err(invalid("escape cut short"));
                }
                break;
            }
            let n = chunk.len();
            for &c in chunk {
                // The line pass took only printable UTF-8 (checked again: the device may have
                // changed, though the digest would also tell).
                if !self.utf8.byte(c) {
                    return Err(invalid("quoted scalar byte"));
                }
                self.esc
                    .byte(c, &mut self.out)
                    .map_err(|()| invalid("quoted scalar escape"))?;
            }
            self.src.consume(n);
        }
        let n = buf.len().min(self.out.len());
        buf[..n].copy_from_slice(&self.out[..n]);
        self.at = n;
        Ok(n)
    }
}

/// Base64 decoded while streamed, accepting only what `value::decode_base64_owned` surely
/// decodes to the same bytes: ASCII whitespace skipped, one alphabet (standard or URL-safe, not
/// both), canonical or no padding at the very end, no leftover bits, not empty. Anything else
/// is an error (the caller then decodes the value in memory, with its exact rules and warnings).
struct B64<R> {
    src: R,
    inbuf: Vec<u8>,
    /// Sextets of the group being read.
    acc: u32,
    n: usize,
    chars: usize,
    pad: usize,
    standard: bool,
    url: bool,
    out: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: Read> B64<R> {
    fn new(src: R) -> Self {
        B64 {
            src,
            inbuf: vec![0; 16 << 10],
            acc: 0,
            n: 0,
            chars: 0,
            pad: 0,
            standard: false,
            url: false,
            out: Vec::new(),
            at: 0,
            done: false,
        }
    }

    fn char(&mut self, c: u8) -> io::Result<()> {
        if matches!(c, b' ' | b'\t'..=b'\r') {
            return Ok(());
        }
        if c == b'=' {
            self.pad += 1;
            return Ok(());
        }
        if self.pad > 0 {
            return Err(invalid("base64 padding before the end"));
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'/' => {
                self.standard = true;
                if c == b'+' {
                    62
                } else {
                    63
                }
            }
            b'-' | b'_' => {
                self.url = true;
                if c == b'-' {
                    62
                } else {
                    63
                }
            }
            _ => return Err(invalid("not base64")),
        };
        if self.standard && self.url {
            return Err(invalid("two base64 alphabets"));
        }
        self.chars += 1;
        self.acc = (self.acc << 6) | u32::from(v);
        self.n += 1;
        if self.n == 4 {
            self.out.extend_from_slice(&[
                (self.acc >> 16) as u8,
                (self.acc >> 8) as u8,
                self.acc as u8,
            ]);
            self.acc = 0;
            self.n = 0;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let canonical_pad = (4 - self.n) % 4;
        if self.chars == 0 || self.n == 1 || (self.pad != 0 && self.pad != canonical_pad) {
            return Err(invalid("base64 end"));
        }
        match self.n {
            2 if self.acc & 0xf == 0 => self.out.push((self.acc >> 4) as u8),
            3 if self.acc & 0x3 == 0 => self
                .out
                .extend_from_slice(&[(self.acc >> 10) as u8, (self.acc >> 2) as u8]),
            0 => {}
            _ => return Err(invalid("base64 leftover bits")),
        }
        Ok(())
    }
}

impl<R: Read> Read for B64<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.out.clear();
            self.at = 0;
            let mut inbuf = std::mem::take(&mut self.inbuf);
            let n = self.src.read(&mut inbuf);
            let r = match n {
                Ok(0) => {
                    self.done = true;
                    self.finish()
                }
                Ok(n) => inbuf[..n].iter().try_for_each(|&c| self.char(c)),
                Err(e) => Err(e),
            };
            self.inbuf = inbuf;
            r?;
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Bodies larger than this are carved.
pub(crate) const CARVE_THRESHOLD: usize = 64 << 10;

/// Once the text left for the parser is long, bodies larger than this are carved too (a
/// placeholder line is about 60 bytes: carving less would not shrink the text much).
const SMALL: usize = 256;

/// Largest document left for the parser once carved: the parse adds about four times its
/// text to the peak (measured: a 1 MiB cloud-config parsed whole peaks at 8.5 MiB, a small one
/// at 4.2 MiB), so 1 MiB keeps a carved parse near the 8 MiB goal. A carve that would leave
/// more is not used: the document is parsed whole, as one the carve cannot read.
pub(crate) const MAX_CARVED_TEXT: usize = 1 << 20;

/// The placeholders' prefix: derived from the file's SHA-256, so a document cannot contain it
/// (it would have to contain a digest of itself) and the parse stays deterministic. 64 bits of
/// it: a document that held it anyway would only be parsed whole (`restore` refuses a base
/// found anywhere but in its placeholders), and a short placeholder keeps the carved text of
/// 10,000 entries (a line each) under [`MAX_CARVED_TEXT`].
pub(crate) fn token_base(digest: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"primer carved block scalar\0");
    h.update(digest);
    let d: [u8; 32] = h.finalize().into();
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("primer{hex}")
}

/// The line pass over a blob kept on the device, streamed (its digest re-checked: an error
/// names the file when the device changed or failed).
pub(crate) fn carve_blob(blob: &crate::model::Bytes) -> std::io::Result<Option<Carved>> {
    let mut c = Carver::new(CARVE_THRESHOLD, MAX_CARVED_TEXT, token_base(&blob.sha256()));
    blob.for_each_chunk(&mut |chunk| {
        c.feed(chunk);
        Ok(())
    })?;
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::super::yaml::{parse, YamlLimits};
    use super::*;

    const LIMITS: YamlLimits = super::super::yaml::TEST_LIMITS;

    /// What the parse gives with carving (`threshold` small so every candidate is carved),
    /// falling back to the whole parse as `carved_leaf` does; and whether it carved.
    fn carved_parse(doc: &str, threshold: usize, chunk: usize) -> (Result<Node, String>, bool) {
        let base = token_base(&[7; 32]);
        let mut c = Carver::new(threshold, 1 << 20, base.clone());
        for part in doc.as_bytes().chunks(chunk.max(1)) {
            c.feed(part);
        }
        if let Some(carved) = c.finish() {
            let src = Bytes::from(doc.as_bytes().to_vec());
            let tokens: Vec<String> = carved.values.iter().map(|(t, _)| t.clone()).collect();
            if let Ok(mut p) = parse(&carved.text, &LIMITS) {
                let mut read = |i: usize| value(&src, &carved.values[i].1).ok();
                if restore(&mut p.node, &base, &tokens, false, &mut read).is_some() {
                    return (Ok(p.node), true);
                }
            }
        }
        (parse(doc, &LIMITS).map(|p| p.node), false)
    }

    /// `check_form` of the document and of its CRLF form (a CRLF document carves as its LF
    /// form does, except a carved one-line plain value, whose line is not read with its CR).
    fn check(doc: &str) -> bool {
        let lf = check_form(doc);
        let crlf = check_form(&doc.replace('\n', "\r\n"));
        if !doc.contains('\r') {
            assert_eq!(lf, crlf, "LF / CRLF carved differently: {doc:?}");
        }
        lf
    }

    fn check_form(doc: &str) -> bool {
        let whole = parse(doc, &LIMITS).map(|p| p.node);
        let mut carved_any = false;
        for (threshold, chunk) in [(0, 1), (0, 7), (3, 4096), (40, 13)] {
            let (got, carved) = carved_parse(doc, threshold, chunk);
            carved_any |= carved;
            match (&whole, &got) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "threshold {threshold}, doc:\n{doc}"),
                (Err(_), Err(_)) => {}
                _ => panic!("whole {whole:?} carved {got:?} for:\n{doc}"),
            }
        }
        carved_any
    }

    #[test]
    fn carved_values_equal_the_whole_parse() {
        let headers = [
            "    content: |",
            "    content: |-",
            "    content: |+",
            "    content: | # note",
            "    content:   |+  # note",
            "  - |",
            "  - |-",
            "    content: >",
        ];
        let bodies: [&[&str]; 10] = [
            &["      line one", "      line two"],
            &["", "      after an empty line", "", "", "      x"],
            &[
                "   ",
                "      a",
                "        more indented",
                "      b",
                "      ",
                "        ",
            ],
            &["      a", "", "   ", ""],
            &[
                "      # not a comment",
                "      key: not a key",
                "      - not a list",
            ],
            &["      a\tb", "      'quote", "      [bracket {"],
            &["      a", "          ", "      b", "  ", " "],
            &["        deeper first", "      less"],
            &["      only"],
            &["      ends", "", "    # comment less indented", ""],
        ];
        let tails = [
            "",
            "    permissions: '0644'\n",
            "  - path: /y\n    content: x\n",
            "# top comment\nb: 2\n",
            "  # comment\n",
            "runcmd:\n  - echo hi # c\n",
        ];
        let mut carved = 0;
        let mut total = 0;
        for h in headers {
            for body in bodies {
                for tail in tails {
                    let mut doc = String::from("#cloud-config\nwrite_files:\n  - path: /srv/a\n");
                    if h.starts_with("  - ") {
                        doc = String::from("#cloud-config\nlist:\n");
                    }
                    doc.push_str(h);
                    doc.push('\n');
                    for l in body {
                        doc.push_str(l);
                        doc.push('\n');
                    }
                    doc.push_str(tail);
                    total += 1;
                    carved += usize::from(check(&doc));
                }
            }
        }
        assert!(carved * 2 > total, "{carved} of {total} carved");
    }

    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// JSON (and JSON-like flow) documents with double-quoted strings of every escape YAML
    /// has, raw bytes the pass refuses, and forms around strings that could be misread
    /// (quotes in plain scalars, comments, single quotes, tags, anchors, keys): carved or not,
    /// the parse gives the whole parse's nodes (or both fail).
    #[test]
    fn flow_documents_agree_with_the_whole_parse() {
        let pieces = [
            "abc",
            "x y",
            "\\n",
            "\\t",
            "\\\"",
            "\\\\",
            "\\/",
            "\\r\\n",
            "\\b\\f",
            "\\u00e9",
            "\\u0041",
            "\\u0000",
            "\\ud83d\\ude00",
            "\\ud83d",
            "\\ud83dx",
            "\\udc00",
            "\\ud83d\\u0041",
            "\\x41",
            "\\xe9",
            "\\U0001F600",
            "\\U00110000",
            "\\u12",
            "\\xZZ",
            "\\q",
            "\\0\\a\\v\\e",
            "\\N\\_\\L\\P",
            "\\ ",
            "\\\t",
            "caf\u{e9}",
            "caf\u{e9} \\\"q\\\" x",
            "\u{a9}\u{1f600}",
            "\u{85}",
            "\u{2028}",
            "\t",
            "'",
            " # no comment",
            "\n  ",
            "{[,:]}",
            "  ",
        ];
        let seps = [
            "", " ", "\n", "\n  ", " \n", "\t", " # c\n", ",", "x", "!!str ", "&a ", "a",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut carved = 0;
        for round in 0..3000 {
            let string = |next: &mut dyn FnMut() -> u64| {
                let n = (next() % 6) as usize;
                let body: String = (0..n)
                    .map(|_| {
                        // Mostly strings the pass takes.
                        let k = if next() % 10 == 0 { pieces.len() } else { 13 };
                        pieces[(next() % k as u64) as usize]
                    })
                    .collect();
                format!("\"{body}\"")
            };
            let sep = |next: &mut dyn FnMut() -> u64| {
                if next() % 16 == 0 {
                    seps[(next() % seps.len() as u64) as usize]
                } else {
                    ["", " ", "\n  "][(next() % 3) as usize]
                }
            };
            let a = string(&mut next);
            let b = string(&mut next);
            let c = string(&mut next);
            let k = string(&mut next);
            let doc = format!(
                "#cloud-config\n{}{{{}\"a\":{}{a},{}{k}: [1,{}{b}{}, true, null, -1.5e3],\"write_files\": [{{\"path\": \"/x\", \"content\":{}{c}{}}}]}}\n",
                ["", "  ", "# c\n", "\n"][round % 4],
                sep(&mut next),
                sep(&mut next),
                sep(&mut next),
                sep(&mut next),
                sep(&mut next),
                sep(&mut next),
                sep(&mut next),
            );
            carved += usize::from(check(&doc));
        }
        assert!(carved > 1000, "{carved} carved");
    }

    /// Many blocks and strings each below the threshold in a long document: once the text
    /// left for the parser is long, they are carved too, and the parse still agrees.
    #[test]
    fn small_blocks_are_carved_once_the_text_is_long() {
        let base = token_base(&[9; 32]);
        let carve = |doc: &str| {
            let mut c = Carver::new(CARVE_THRESHOLD, MAX_CARVED_TEXT, base.clone());
            for chunk in doc.as_bytes().chunks(4096) {
                c.feed(chunk);
            }
            c.finish()
        };
        let body = "      0123456789 abcdefghij\n".repeat(1200);
        let mut doc = String::from("#cloud-config\nwrite_files:\n");
        for i in 0..200 {
            doc.push_str(&format!("  - path: /srv/f{i}\n    content: |\n{body}"));
        }
        let c = carve(&doc).expect("carved");
        assert!(c.text.len() < MAX_CARVED_TEXT / 2, "{}", c.text.len());
        assert!(c.values.len() > 180, "{}", c.values.len());
        // A small document is left as it is.
        let small: String = doc.chars().take(100_000).collect();
        let small = &small[..small.rfind('\n').unwrap() + 1];
        assert!(carve(small).is_none());
        // The same in JSON.
        let s = "0123456789 abcdefghij\\n".repeat(1200);
        let files: Vec<String> = (0..200)
            .map(|i| format!("{{\"path\": \"/srv/f{i}\", \"content\": \"{s}\"}}"))
            .collect();
        let json = format!(
            "#cloud-config\n{{\"write_files\": [{}]}}\n",
            files.join(",")
        );
        let c = carve(&json).expect("carved");
        assert!(c.text.len() < MAX_CARVED_TEXT / 2, "{}", c.text.len());
        assert!(c.values.len() > 180, "{}", c.values.len());
        // Node for node as the whole parse (limits large enough for the whole document).
        let limits = YamlLimits {
            max_bytes: 64 << 20,
            ..LIMITS
        };
        for d in [&doc, &json] {
            let c = carve(d).unwrap();
            let src = Bytes::from(d.as_bytes().to_vec());
            let tokens: Vec<String> = c.values.iter().map(|(t, _)| t.clone()).collect();
            let mut p = parse(&c.text, &limits).unwrap();
            let mut read = |i: usize| value(&src, &c.values[i].1).ok();
            assert!(restore(&mut p.node, &base, &tokens, false, &mut read).is_some());
            assert_eq!(p.node, parse(d, &limits).unwrap().node);
        }
    }

    #[test]
    fn misread_documents_are_parsed_whole() {
        for doc in [
            // A header inside a quoted scalar, a flow collection, an anchor, a tag.
            "a: \"x\n  content: |\n    body\n\"\n",
            "a: [\n  content: |\n    body\n  ]\n",
            "a: {\n  b: |\n    body\n  }\n",
            "a: &x |\n  body\nb: *x\n",
            "a: !!binary |\n  aGk=\n",
            "a: 'x\n  content: |\n    body\n  '\n",
            // A plain scalar continued over the header.
            "- a\n  - |\n    body\n",
            "a: b\n  c: |\n    body\n",
            // Duplicate keys: the first placeholder is dropped by the parser.
            "a: |\n  one\na: |\n  two\n",
            // Tabs, CR, explicit indentation, directives, documents.
            "a: |\n\tbody\n",
            "a: |\r\n  body\r\n",
            "a: |2\n   body\n",
            "%YAML 1.2\n---\na: |\n  body\n",
            "---\na: |\n  body\n",
            "a: |\n  body\n---\nb: 1\n",
            // Leading empty lines more indented than the content (an error).
            "a: |\n      \n  body\n",
            // No line break at the end.
            "a: |\n  body",
            // Non-ASCII or control bytes in the body.
            "a: |\n  caf\u{e9}\n",
            "a: |\n  bell\u{7}\n",
            // ... also after the value was committed to (past the threshold): the line would
            // be lost from the value.
            "a: |\n  x\n  caf\u{e9}\n  y\n",
            "a: |\n  x\n  b\u{7}\n",
            "a: |\n  x\n  \u{7f}\n  y\nb: 1\n",
            // An empty block (no text) and a block less indented than its key.
            "a: |\n\n\nb: 1\n",
            "  a: |\n  b\n",
        ] {
            check(doc);
        }
    }

    #[test]
    fn generated_documents_agree_with_the_whole_parse() {
        let pieces = [
            "a: |\n",
            "a: |-\n",
            "a: |+\n",
            "b: >\n",
            "- |\n",
            "  - |\n",
            "  c: |\n",
            "  body\n",
            "    body\n",
            "      body\n",
            "\n",
            "  \n",
            "      \n",
            "# c\n",
            "  # c\n",
            "d: 1\n",
            "  e: 'x'\n",
            "- f\n",
            "  - g\n",
            "h:\n",
            "  i: \"y\"\n",
            "j: [1]\n",
            "  k: \"z\n",
            "\t\n",
            "   x: |\n",
            "     y\n",
            "l: a #b\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut carved = 0;
        for _ in 0..3000 {
            let n = 2 + (next() % 10) as usize;
            let doc: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            carved += usize::from(check(&doc));
        }
        assert!(carved > 100, "{carved} carved");
    }

    /// Folded blocks (`>`, `>-`, `>+`) of text lines, more-indented lines (spaces or a tab
    /// after the indentation), empty lines and lines of spaces shorter or longer than the
    /// indentation, in every order: each is carved and its value is the whole parse's (the
    /// folding of YAML 1.2 §8.1.3 as the parser applies it).
    #[test]
    fn folded_blocks_are_carved_and_equal_the_whole_parse() {
        let lines = [
            "      text one",
            "      text two words",
            "        more indented",
            "      \tafter a tab",
            "",
            "    ",
            "      ",
            "         ",
            "      # not a comment",
            "      end.",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut carved, mut total) = (0, 0);
        for i in 0..4000 {
            let header = ["    content: >", "    content: >-", "    content: >+"][i % 3];
            let mut doc = format!("#cloud-config\nwrite_files:\n  - path: /srv/a\n{header}\n");
            // The first line sets the indentation (a deeper first line, or a longer line of
            // spaces before it, is another document: not carved, checked by the test above).
            if i % 5 != 0 {
                doc.push_str("      first\n");
            }
            let n = 1 + (next() % 9) as usize;
            let mut text = i % 5 != 0;
            for _ in 0..n {
                let l = lines[(next() % lines.len() as u64) as usize];
                text |= !l.trim_start().is_empty();
                doc.push_str(l);
                doc.push('\n');
            }
            if i % 2 == 0 {
                doc.push_str("    permissions: '0644'\n");
            }
            if !text {
                continue;
            }
            let c = check(&doc);
            if i % 5 != 0 {
                // A block whose first line sets the indentation is always carved.
                assert!(c, "not carved:\n{doc}");
                total += 1;
                carved += usize::from(c);
            }
        }
        assert!(
            total > 3000 && carved == total,
            "{carved} of {total} carved"
        );
    }

    /// One-line plain values among blocks, comments and forms the pass must not misread (a
    /// comment, `: `, trailing spaces, numbers and booleans, a continuation line): carved or
    /// not, the whole parse's nodes.
    #[test]
    fn plain_values_agree_with_the_whole_parse() {
        let pieces = [
            "a: |\n",
            "  body\n",
            "# c\n",
            "d: 1\n",
            "- f\n",
            "h:\n",
            "m: aGVsbG8gd29ybGQ=\n",
            "- a+/b=\n",
            "  - n: x:y\n",
            "  o: a: b\n",
            "p: a # b\n",
            "q: 12345\n",
            "r: 0x1f\n",
            "s: abc \n",
            "t: abc:\n",
            "u: a b%c@d`e!f&g*h|i>j\n",
            "v: -a\n",
            "w: ?a\n",
            "  more\n",
            "x: true\n",
            "x: false\n",
            "x: -.inf\n",
            "x: 1_000.5e+3\n",
            "x: 12:30:45.5\n",
            "y: a#b\n",
        ];
        let mut next = xorshift(0x1234_5678_9abc_def1);
        let mut carved = 0;
        for _ in 0..3000 {
            let n = 1 + (next() % 5) as usize;
            let doc: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            carved += usize::from(check(&doc));
        }
        assert!(carved > 50, "{carved} carved");
    }

    /// 10,000 `write_files` entries (what a 64 MiB document of 6 KiB files holds): every
    /// block past the first eighth of the text cap carved, the placeholders' lines within the
    /// cap (with the 44-byte base of before they were not: the document was parsed whole).
    #[test]
    fn ten_thousand_entries_are_carved_within_the_text_cap() {
        let body = format!("      {}\n", "w".repeat(72)).repeat(8);
        // Literal blocks, folded blocks, and folded blocks with CRLF line ends.
        for (style, crlf) in [("|", false), (">", false), (">", true)] {
            let mut doc = String::from("#cloud-config\nwrite_files:\n");
            for i in 0..10_000 {
                doc.push_str(&format!(
                    "  - path: /srv/many/f{i:05}\n    content: {style}\n{body}"
                ));
            }
            if crlf {
                doc = doc.replace('\n', "\r\n");
            }
            let mut c = Carver::new(CARVE_THRESHOLD, MAX_CARVED_TEXT, token_base(&[5; 32]));
            for chunk in doc.as_bytes().chunks(64 << 10) {
                c.feed(chunk);
            }
            let c = c.finish().expect("carved");
            assert!(c.values.len() > 9_500, "{style} {crlf}: {}", c.values.len());
            assert!(c.text.len() < MAX_CARVED_TEXT, "{}", c.text.len());
        }
    }

    #[test]
    fn the_token_is_never_in_a_document_by_chance() {
        let base = token_base(&[1; 32]);
        assert!(base.starts_with("primer") && base.len() == 22);
        assert!(base.bytes().all(|c| c.is_ascii_alphanumeric()));
        // The placeholder found elsewhere too (a key, inside a string, twice): not restored.
        let tokens = vec![format!("{base}x0")];
        let mut v = |_: usize| Some("v".to_string());
        let mut n = parse(&format!("a: {base}x0\nb: {base}x0\n"), &LIMITS)
            .unwrap()
            .node;
        assert!(restore(&mut n, &base, &tokens, false, &mut v).is_none());
        let mut n = parse(&format!("a: {base}x0\n{base}: 1\n"), &LIMITS)
            .unwrap()
            .node;
        assert!(restore(&mut n, &base, &tokens, false, &mut v).is_none());
        let mut n = parse(&format!("a: {base}x0\nb: x {base}x1\n"), &LIMITS)
            .unwrap()
            .node;
        assert!(restore(&mut n, &base, &tokens, false, &mut v).is_none());
        let mut n = parse(&format!("a: {base}x0\n"), &LIMITS).unwrap().node;
        assert_eq!(restore(&mut n, &base, &tokens, false, &mut v), Some(vec![]));
        // Deferred: only a top-level `write_files[i].content` stays a placeholder.
        let tokens = vec![
            format!("{base}x0"),
            format!("{base}x1"),
            format!("{base}x2"),
        ];
        let doc = format!(
            "write_files:\n  - path: /a\n    content: {base}x0\nruncmd:\n  - {base}x1\nx:\n  write_files:\n    - content: {base}x2\n"
        );
        let mut n = parse(&doc, &LIMITS).unwrap().node;
        assert_eq!(restore(&mut n, &base, &tokens, true, &mut v), Some(vec![0]));
        let want = parse(
            &format!("write_files:\n  - path: /a\n    content: {base}x0\nruncmd:\n  - v\nx:\n  write_files:\n    - content: v\n"),
            &LIMITS,
        )
        .unwrap()
        .node;
        assert_eq!(n, want);
    }

    /// The whole parse's `write_files[0].content`, decoded as `decode_content` does (`None`:
    /// refused).
    fn whole_content(doc: &str, decode: Decode) -> Option<Vec<u8>> {
        let node = parse(doc, &LIMITS).ok()?.node;
        let Node::Map(mut top) = node else {
            return None;
        };
        let Some(Node::Seq(mut files)) = top.remove("write_files") else {
            return None;
        };
        let Node::Map(mut f) = files.swap_remove(0) else {
            return None;
        };
        let Some(Node::Str(raw)) = f.remove("content") else {
            return None;
        };
        let raw = raw.into_bytes();
        match decode {
            Decode::Plain => Some(raw),
            Decode::Base64 => crate::source::value::decode_base64_owned(raw),
            Decode::GzipBase64 => {
                let inner = crate::source::value::decode_base64_owned(raw)?;
                let mut budget = super::super::Budget::new(1 << 30);
                super::super::gunzip(&inner, 1 << 20, &mut budget).ok()
            }
        }
    }

    /// The streamed content of the document's one carved block (`None`: not streamed).
    fn streamed_content(doc: &str, decode: Decode) -> Option<Vec<u8>> {
        let base = token_base(&[3; 32]);
        let mut c = Carver::new(0, 1 << 20, base.clone());
        c.feed(doc.as_bytes());
        let carved = c.finish()?;
        let src = Bytes::from(doc.as_bytes().to_vec());
        // As the parse confirms a carve: the carved text parses and the block is the content.
        let tokens: Vec<String> = carved.values.iter().map(|(t, _)| t.clone()).collect();
        let mut p = parse(&carved.text, &LIMITS).ok()?;
        let deferred = restore(&mut p.node, &base, &tokens, true, &mut |i| {
            value(&src, &carved.values[i].1).ok()
        })?;
        let [d] = deferred[..] else {
            return None;
        };
        // As a member of a set (what a carved document's entries are).
        let members = set(&src, 1);
        let b = content(
            &src,
            &carved.values[d].1,
            decode,
            "t",
            1 << 20,
            Some((&members, 0)),
        )
        .ok()?;
        let mut out = Vec::new();
        b.for_each_chunk(&mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len(), b.len());
        Some(out)
    }

    fn doc_with(header: &str, lines: &[String], tail: &str) -> String {
        let mut doc = String::from("#cloud-config\nwrite_files:\n  - path: /srv/a\n");
        doc.push_str(header);
        doc.push('\n');
        for l in lines {
            doc.push_str(l);
            doc.push('\n');
        }
        doc.push_str(tail);
        doc
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Hostile sizes: a line longer than [`MAX_LINE`] (no newline for over a MiB), a carved
    /// text over the parser's cap, and thousands of small blocks each under the threshold are
    /// never carved (the document goes to the whole parse, within its own caps); the pass holds
    /// at most one line.
    #[test]
    fn over_long_lines_and_texts_are_not_carved() {
        let base = token_base(&[5; 32]);
        let carve = |doc: &str, threshold: usize, max_text: usize| {
            let mut c = Carver::new(threshold, max_text, base.clone());
            for chunk in doc.as_bytes().chunks(4096) {
                c.feed(chunk);
            }
            c.finish()
        };
        let long = format!("a: |\n  {}\n", "x".repeat(MAX_LINE + 1));
        assert!(carve(&long, 0, 1 << 20).is_none());
        let no_newline = format!("a: |\n  x\n{}", "y".repeat(MAX_LINE + 1));
        assert!(carve(&no_newline, 0, 1 << 20).is_none());
        let big_text = format!("b: '{}'\na: |\n  x\n", "y".repeat(4096));
        assert!(carve(&big_text, 0, 1024).is_none());
        let many: String = (0..20_000).map(|i| format!("k{i}: |\n  v\n")).collect();
        assert!(carve(&many, 64 << 10, 1 << 20).is_none());
    }

    /// A line the pass cannot take as it is (a control byte, a character some YAML reads as a
    /// line break), after the block was already committed to (past the threshold), sends the
    /// document to the whole parse: the streamed value never loses it. UTF-8 text is taken.
    #[test]
    fn a_line_not_taken_past_the_threshold_leaves_the_document_whole() {
        let lines: Vec<String> = ["      x", "      caf\u{e9} \u{a9} \u{1f600}", "      y"]
            .iter()
            .map(|l| l.to_string())
            .collect();
        let doc = doc_with("    content: |", &lines, "    permissions: '0644'\n");
        assert_eq!(
            streamed_content(&doc, Decode::Plain),
            Some("x\ncaf\u{e9} \u{a9} \u{1f600}\ny\n".as_bytes().to_vec())
        );
        for bad in [
            "      bell\u{7}",
            "      \u{7f}",
            "      \u{85}",
            "      a\u{2028}b",
            "      \u{feff}",
        ] {
            let lines: Vec<String> = ["      x", bad, "      y"]
                .iter()
                .map(|l| l.to_string())
                .collect();
            let doc = doc_with("    content: |", &lines, "    permissions: '0644'\n");
            let got = streamed_content(&doc, Decode::Plain);
            assert!(got.is_none(), "streamed {got:?} for:\n{doc}");
        }
    }

    #[test]
    fn streamed_contents_equal_the_whole_decode() {
        use base64::Engine;
        let std = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut streamed = 0;
        let mut plain = 0;
        let mut total = 0;
        for round in 0..400 {
            let len = (next() % 300) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let gz = gzip(&data);
            let mut two = gz.clone();
            two.extend_from_slice(&gzip(b"second member"));
            let encoded = [
                (
                    Decode::Plain,
                    String::from_utf8_lossy(&data).replace(['\r', '\n'], "x"),
                ),
                (Decode::Base64, std.encode(&data)),
                (Decode::Base64, url.encode(&data)),
                (Decode::GzipBase64, std.encode(&gz)),
                (Decode::GzipBase64, std.encode(&two)),
                (Decode::GzipBase64, format!("{}AAAA", std.encode(&gz))),
                (Decode::GzipBase64, std.encode(&data)),
            ];
            for (decode, text) in encoded {
                // Plain text that is not one printable ASCII line is not carved: keep it so.
                let text: String = text
                    .chars()
                    .map(|c| if (' '..='~').contains(&c) { c } else { 'q' })
                    .collect();
                let width = [76usize, 60, 7, 1000][round % 4];
                let mut lines: Vec<String> = text
                    .as_bytes()
                    .chunks(width)
                    .map(|c| format!("      {}", std::str::from_utf8(c).unwrap()))
                    .collect();
                if round % 5 == 1 {
                    lines.insert(0, String::new());
                    lines.push("  ".into());
                }
                if round % 7 == 2 && lines.len() > 1 {
                    lines.insert(1, "       ".into());
                }
                let header = ["    content: |", "    content: |-", "    content: |+"][round % 3];
                let tail = ["", "    permissions: '0644'\n", "runcmd:\n  - x\n"][round % 3];
                let doc = doc_with(header, &lines, tail);
                total += 1;
                // The document and its CRLF form (as a Windows editor saves it): the same
                // content, streamed in both or in neither.
                let stream = |doc: &str| {
                    let whole = whole_content(doc, decode);
                    let crlf = doc.replace('\n', "\r\n");
                    assert_eq!(whole, whole_content(&crlf, decode), "CRLF doc:\n{doc}");
                    let got = streamed_content(doc, decode);
                    let got_crlf = streamed_content(&crlf, decode);
                    assert_eq!(got, got_crlf, "{decode:?} LF / CRLF, doc:\n{doc}");
                    if let Some(got) = got {
                        assert!(whole.as_deref() == Some(&got[..]), "{decode:?} doc:\n{doc}");
                    }
                    got_crlf.is_some()
                };
                streamed += usize::from(stream(&doc));
                // The same text as a one-line plain scalar (`filebase64()` + `yamlencode`).
                let key = ["    content: ", "    content:   "][round % 2];
                let doc = doc_with(&format!("{key}{text}"), &[], tail);
                plain += usize::from(stream(&doc));
            }
        }
        // Two of the seven encodings are not gzip+base64 the whole decode accepts.
        assert!(streamed * 2 > total, "{streamed} of {total} streamed");
        assert!(
            plain * 2 > total,
            "{plain} of {total} plain values streamed"
        );
    }

    /// A JSON cloud-config's `write_files` content (as `jsonencode` writes it: control
    /// characters, quotes and backslashes escaped), streamed: the whole decode's bytes.
    #[test]
    fn streamed_json_contents_equal_the_whole_decode() {
        use base64::Engine;
        let std = base64::engine::general_purpose::STANDARD;
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut streamed = 0;
        for round in 0..600 {
            let len = (next() % 300) as usize;
            // ASCII with control characters, quotes, backslashes and slashes among it.
            let data: Vec<u8> = (0..len)
                .map(|_| match next() % 8 {
                    0 => b"\n\t\"\\/\r\x01\x7f"[(next() % 8) as usize],
                    _ => 0x20 + (next() % 95) as u8,
                })
                .collect();
            let (decode, text) = match round % 3 {
                0 => (Decode::Plain, String::from_utf8(data.clone()).unwrap()),
                1 => (Decode::Base64, std.encode(&data)),
                _ => (Decode::GzipBase64, std.encode(gzip(&data))),
            };
            let mut quoted = serde_json::to_string(&text).unwrap();
            if round % 5 == 0 {
                // `\/` and `\u` escapes of plain characters, as some encoders write them.
                quoted = quoted.replace('/', "\\/").replace('A', "\\u0041");
            }
            let enc = ["", "\"encoding\": \"b64\", ", "\"encoding\": \"gz+b64\", "][round % 3];
            let doc = format!(
                "#cloud-config\n{{\"write_files\": [{{\"path\": \"/srv/a\", {enc}\"content\": {quoted}}}]}}\n"
            );
            // Every other document in its CRLF form: streamed as its LF form.
            let doc = if round % 2 == 1 {
                doc.replace('\n', "\r\n")
            } else {
                doc
            };
            let whole = whole_content(&doc, decode);
            if let Some(got) = streamed_content(&doc, decode) {
                streamed += 1;
                assert!(whole.as_deref() == Some(&got[..]), "{decode:?} doc:\n{doc}");
            }
        }
        // Only contents with a DEL byte (not printable) are left to the whole parse.
        assert!(streamed > 300, "{streamed} streamed");
    }

    #[test]
    fn base64_streamed_only_as_the_whole_decode_reads_it() {
        // Characters and forms around the acceptance rules: whatever is streamed decodes to the
        // whole decode's bytes; what the whole decode refuses is never streamed.
        let alphabet = b"AQgw+/-_=  \tz09";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut streamed = 0;
        for _ in 0..20_000 {
            let n = (next() % 12) as usize;
            let text: String = (0..n)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                .collect();
            let text = format!("A{}", text.trim_end());
            let doc = doc_with("    content: |", &[format!("      {text}")], "");
            let whole = whole_content(&doc, Decode::Base64);
            if let Some(got) = streamed_content(&doc, Decode::Base64) {
                streamed += 1;
                assert!(whole.as_deref() == Some(&got[..]), "{text:?}");
            }
        }
        assert!(streamed > 1000, "{streamed}");
    }

    use crate::model::bytes::MemDevice as Dev;

    #[test]
    fn a_device_changed_after_the_read_fails_the_stream_naming_the_file() {
        use base64::Engine;
        // Bytes gzip cannot shrink much: the block is larger than the carve threshold.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text = base64::engine::general_purpose::STANDARD.encode(gzip(&data));
        let lines: Vec<String> = text
            .as_bytes()
            .chunks(76)
            .map(|c| format!("      {}", std::str::from_utf8(c).unwrap()))
            .collect();
        let doc = doc_with("    content: |", &lines, "");
        let dev = std::sync::Arc::new(Dev(std::sync::Mutex::new(doc.clone().into_bytes())));
        // Two extents, split inside the block.
        let split = 1000u64;
        let blob = Bytes::on_device(
            dev.clone(),
            vec![(0, split), (split, doc.len() as u64 - split)],
            doc.len(),
            "dev: user-data".into(),
        )
        .unwrap();
        let carved = carve_blob(&blob).unwrap().unwrap();
        let lit = &carved.values[0].1;
        let members = set(&blob, 3);
        let b = content(
            &blob,
            lit,
            Decode::GzipBase64,
            "write_files[0].content",
            1 << 20,
            Some((&members, 2)),
        )
        .unwrap();
        assert!(b.is_on_device());
        assert_eq!(b.len(), data.len());
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert!(out == data);
        // A base64 character inside the block changed on the device: the write fails, naming
        // the drive file and the entry.
        let at = lit.range.start + 5000;
        {
            let mut d = dev.0.lock().unwrap();
            d[at] = if d[at] == b'A' { b'B' } else { b'A' };
        }
        let e = b.write_to(&mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("dev: user-data (write_files[0].content)"), "{e}");
    }
    /// The first measure of a carved value checks its range against the digest the line pass
    /// took: a device changed between the pass (checked against the file's digest) and the
    /// measure is refused naming the file, for each style of carved value, whichever byte of
    /// the range changed; unchanged, the value is what the pass saw.
    #[test]
    fn a_device_changed_between_the_pass_and_the_measure_is_refused_naming_the_file() {
        let body = "q".repeat(72);
        let block: Vec<String> = (0..2_000).map(|_| format!("      {body}")).collect();
        let block = doc_with("    content: |", &block, "    permissions: '0644'\n");
        let plain = format!(
            "#cloud-config\nwrite_files:\n  - path: /srv/a\n    content: {}\n    owner: root\n",
            "QUFB".repeat(40_000)
        );
        let json = format!(
            "{{\"write_files\": [{{\"path\": \"/srv/a\", \"content\": \"{}\"}}]}}\n",
            "a\\nb\\u00e9".repeat(20_000)
        );
        for doc in [block, plain, json] {
            let dev = std::sync::Arc::new(Dev(std::sync::Mutex::new(doc.clone().into_bytes())));
            let blob = Bytes::on_device(
                dev.clone(),
                vec![(0, 777), (777, doc.len() as u64 - 777)],
                doc.len(),
                "dev: user-data".into(),
            )
            .unwrap();
            let carved = carve_blob(&blob).unwrap().unwrap();
            let [(_, lit)] = &carved.values[..] else {
                panic!("{:?}", carved.values);
            };
            let want = value(&blob, lit).unwrap();
            let what = "write_files[0].content";
            let got = content(&blob, lit, Decode::Plain, what, 1 << 20, None).unwrap();
            assert!(got.try_slice().unwrap() == want.as_bytes());
            // A letter of the value (not an escape's, not a line break or indentation), near
            // the range's start, middle and end: a byte still one the value could have, so
            // unchecked the measure would take it.
            let letter = |i: &usize| {
                let d = dev.0.lock().unwrap();
                b"qQUFBab".contains(&d[*i]) && d[*i - 1] != b'\\'
            };
            let r = lit.range.clone();
            let first = r.clone().find(letter).unwrap();
            let middle = (r.start + 5_000..r.end).find(letter).unwrap();
            let last = r.clone().rev().find(letter).unwrap();
            for at in [first, middle, last] {
                let old = dev.0.lock().unwrap()[at];
                let new = if old == b'q' { b'r' } else { b'q' };
                dev.0.lock().unwrap()[at] = new;
                // Alone and as a member of a set: the same error.
                let e = content(&blob, lit, Decode::Plain, what, 1 << 20, None)
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains("dev: user-data (write_files[0].content)") && e.contains("changed"),
                    "{e}"
                );
                let members = set(&blob, 1);
                let e = content(
                    &blob,
                    lit,
                    Decode::Plain,
                    what,
                    1 << 20,
                    Some((&members, 0)),
                )
                .unwrap_err()
                .to_string();
                assert!(
                    e.contains("dev: user-data (write_files[0].content)") && e.contains("changed"),
                    "{e}"
                );
                let e = value(&blob, lit).unwrap_err().to_string();
                assert!(e.contains("dev: user-data") && e.contains("changed"), "{e}");
                dev.0.lock().unwrap()[at] = old;
            }
        }
    }
}
