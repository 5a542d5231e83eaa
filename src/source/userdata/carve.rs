//! Large literal block scalars carved out of a cloud-config before the YAML parse: a streaming
//! line pass over the document finds `key: |` blocks whose body exceeds a threshold, gives the
//! parser a short placeholder in their place and builds each value (unindented, chomped) once,
//! so a 64 MiB `write_files` entry is never held as the document text, the parser's buffer and
//! its scalar at once. It must not guess: any line it cannot classify (tabs, CR, quotes or
//! brackets it cannot balance on one line, anchors, tags, directives, explicit indentation
//! indicators, non-ASCII in a carved body) gives `None`, and the caller parses the document whole.
//! The caller also checks that every placeholder comes back exactly once as a whole string.

use super::yaml::Node;

/// Longest line looked at (a longer one is not classified: the document is parsed whole).
const MAX_LINE: usize = 1 << 20;

/// A cloud-config with its large literal blocks replaced by placeholders.
#[derive(Debug)]
pub(crate) struct Carved {
    /// The document given to the parser.
    pub text: String,
    /// `(placeholder, value)` in document order.
    pub values: Vec<(String, String)>,
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
    /// Literal without an indentation indicator: may be carved.
    candidate: bool,
    chomp: Chomp,
    /// The header line up to the indicator (kept when carved) and the whole line.
    prefix: String,
    header: String,
    /// Content indentation, from the first line with text.
    m: Option<usize>,
    /// Most spaces on a leading empty line (more than `m` is an error YAML reports).
    leading_max: usize,
    leading: usize,
    /// Empty lines since the last text line.
    pending: usize,
    any_text: bool,
    /// Body bytes as in the document, kept until the block is known to be large.
    verbatim: Option<String>,
    body_bytes: usize,
    /// The value, built while reading (only for a candidate).
    value: String,
}

/// The line pass, fed in chunks.
pub(crate) struct Carver {
    threshold: usize,
    max_text: usize,
    token_base: String,
    line: Vec<u8>,
    block: Option<Block>,
    out: Carved,
    failed: bool,
}

impl Carver {
    /// `threshold`: a body larger than this is carved; `max_text`: largest document left for the
    /// parser; `token_base`: the placeholders' unguessable prefix (letters and digits).
    pub(crate) fn new(threshold: usize, max_text: usize, token_base: String) -> Carver {
        Carver {
            threshold,
            max_text,
            token_base,
            line: Vec::new(),
            block: None,
            out: Carved {
                text: String::new(),
                values: Vec::new(),
            },
            failed: false,
        }
    }

    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        while !self.failed && !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push_line_bytes(&chunk[..i]);
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&line);
                    self.line = line;
                    self.line.clear();
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.push_line_bytes(chunk);
                    chunk = &[];
                }
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
        if self.failed || !self.line.is_empty() {
            return None;
        }
        if let Some(b) = self.block.take() {
            self.end_block(b);
        }
        if self.failed || self.out.values.is_empty() {
            return None;
        }
        Some(self.out)
    }

    fn fail(&mut self) {
        self.failed = true;
    }

    fn on_line(&mut self, raw: &[u8]) {
        if raw.contains(&b'\r') {
            return self.fail();
        }
        if let Some(mut b) = self.block.take() {
            match body_line(&b, raw) {
                Err(()) => return self.fail(),
                Ok(true) => {
                    if self.body(&mut b, raw).is_err() {
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
        match classify(line) {
            Err(()) => self.fail(),
            Ok(None) => self.text_line(line),
            Ok(Some(h)) => {
                self.block = Some(Block {
                    n: h.n,
                    candidate: h.literal,
                    chomp: h.chomp,
                    prefix: line[..h.at].to_string(),
                    header: line.to_string(),
                    m: None,
                    leading_max: 0,
                    leading: 0,
                    pending: 0,
                    any_text: false,
                    verbatim: Some(String::new()),
                    body_bytes: 0,
                    value: String::new(),
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

    /// One line of a block's body: kept verbatim while small, added to the value when a
    /// candidate.
    fn body(&mut self, b: &mut Block, raw: &[u8]) -> Result<(), ()> {
        b.body_bytes += raw.len() + 1;
        if let Some(v) = &mut b.verbatim {
            v.push_str(std::str::from_utf8(raw).map_err(|_| ())?);
            v.push('\n');
        }
        if b.candidate {
            // The value is built from the body's own bytes: only printable ASCII and tabs
            // inside the content are taken without the parser's checks.
            if raw
                .iter()
                .any(|&c| !(c == b'\t' || (0x20..0x7f).contains(&c)))
            {
                b.candidate = false;
            } else {
                add_value_line(b, raw)?;
            }
        }
        if b.body_bytes > self.threshold && b.verbatim.is_some() {
            if !b.candidate {
                return Err(());
            }
            b.verbatim = None;
        }
        Ok(())
    }

    fn end_block(&mut self, mut b: Block) {
        match b.verbatim.take() {
            Some(v) => {
                let header = std::mem::take(&mut b.header);
                self.text_line(&header);
                if self.out.text.len() + v.len() > self.max_text {
                    return self.fail();
                }
                self.out.text.push_str(&v);
            }
            None => {
                if !b.any_text {
                    return self.fail();
                }
                match b.chomp {
                    Chomp::Strip => {}
                    Chomp::Clip => b.value.push('\n'),
                    Chomp::Keep => {
                        b.value.push('\n');
                        push_breaks(&mut b.value, b.pending);
                    }
                }
                let token = format!("{}x{}", self.token_base, self.out.values.len());
                let line = format!("{}{}", b.prefix, token);
                self.text_line(&line);
                b.value.shrink_to_fit();
                self.out.values.push((token, b.value));
            }
        }
    }
}

fn push_breaks(s: &mut String, n: usize) {
    s.extend(std::iter::repeat_n('\n', n));
}

/// Whether `raw` belongs to the body of `b` (YAML 1.2 §8.1.1.1: the content indentation is
/// the first text line's; a line with text indented less ends the block; empty lines belong).
fn body_line(b: &Block, raw: &[u8]) -> Result<bool, ()> {
    let spaces = raw.iter().take_while(|&&c| c == b' ').count();
    match raw.get(spaces) {
        None => Ok(true),
        // A tab where indentation could be: not read here.
        Some(b'\t') if b.m.is_none_or(|m| spaces < m) => Err(()),
        Some(_) => Ok(match b.m {
            None => spaces > b.n,
            Some(m) => spaces >= m,
        }),
    }
}

fn add_value_line(b: &mut Block, raw: &[u8]) -> Result<(), ()> {
    let spaces = raw.iter().take_while(|&&c| c == b' ').count();
    let blank = spaces == raw.len();
    let m = match b.m {
        None if blank => {
            b.leading += 1;
            b.leading_max = b.leading_max.max(spaces);
            return Ok(());
        }
        None => {
            if b.leading_max > spaces {
                return Err(());
            }
            b.m = Some(spaces);
            spaces
        }
        Some(m) => m,
    };
    if blank && raw.len() <= m {
        b.pending += 1;
        return Ok(());
    }
    // The line's content: ASCII checked by the caller.
    let text = std::str::from_utf8(raw.get(m..).ok_or(())?).map_err(|_| ())?;
    if b.any_text {
        b.value.push('\n');
        push_breaks(&mut b.value, b.pending);
    } else {
        push_breaks(&mut b.value, b.leading);
    }
    b.pending = 0;
    b.any_text = true;
    b.value.push_str(text);
    Ok(())
}

/// A block scalar header: where its indicator starts, its node's indentation, its style.
struct Header {
    at: usize,
    n: usize,
    literal: bool,
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
        h.map(|(literal, chomp)| Header {
            at: v,
            n,
            literal,
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

/// `Ok(Some((literal, chomp)))` for a block header, `Ok(None)` for a one-line value.
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
                Ok(Some((first == '|', chomp)))
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

/// Puts each carved value back in place of its placeholder: every placeholder must be found
/// exactly once, as a whole string, and the token base nowhere else (not in a key, not inside a
/// longer string). `false` when that fails: the document was misread; it is parsed whole.
pub(crate) fn restore(
    node: &mut Node,
    base: &str,
    values: &mut [(String, Option<String>)],
) -> bool {
    fn walk(node: &mut Node, base: &str, values: &mut [(String, Option<String>)]) -> bool {
        match node {
            Node::Str(s) if s.contains(base) => match values.iter_mut().find(|(t, _)| t == s) {
                Some((_, v)) => match v.take() {
                    Some(v) => {
                        *s = v;
                        true
                    }
                    None => false,
                },
                None => false,
            },
            Node::Seq(items) => items.iter_mut().all(|n| walk(n, base, values)),
            Node::Map(m) => {
                m.keys().all(|k| !k.contains(base)) && m.values_mut().all(|n| walk(n, base, values))
            }
            _ => true,
        }
    }
    walk(node, base, values) && values.iter().all(|(_, v)| v.is_none())
}

/// Bodies larger than this are carved.
pub(crate) const CARVE_THRESHOLD: usize = 64 << 10;

/// Largest document left for the parser once carved (else it is parsed whole).
pub(crate) const MAX_CARVED_TEXT: usize = 1 << 20;

/// The placeholders' prefix: derived from the file's SHA-256, so a document cannot contain it
/// (it would have to contain a digest of itself) and the parse stays deterministic.
pub(crate) fn token_base(digest: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"primer carved block scalar\0");
    h.update(digest);
    let d: [u8; 32] = h.finalize().into();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("primercarved{hex}")
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

    const LIMITS: YamlLimits = YamlLimits {
        max_bytes: 1 << 20,
        max_depth: 16,
        max_nodes: 10_000,
        max_aliases: 100,
        max_replayed_events: 10_000,
    };

    /// What the parse gives with carving (`threshold` small so every candidate is carved),
    /// falling back to the whole parse as `carved_leaf` does; and whether it carved.
    fn carved_parse(doc: &str, threshold: usize, chunk: usize) -> (Result<Node, String>, bool) {
        let base = token_base(&[7; 32]);
        let mut c = Carver::new(threshold, 1 << 20, base.clone());
        for part in doc.as_bytes().chunks(chunk.max(1)) {
            c.feed(part);
        }
        if let Some(carved) = c.finish() {
            let mut values: Vec<(String, Option<String>)> = carved
                .values
                .into_iter()
                .map(|(t, v)| (t, Some(v)))
                .collect();
            if let Ok(mut p) = parse(&carved.text, &LIMITS) {
                if restore(&mut p.node, &base, &mut values) {
                    return (Ok(p.node), true);
                }
            }
        }
        (parse(doc, &LIMITS).map(|p| p.node), false)
    }

    fn check(doc: &str) -> bool {
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

    #[test]
    fn the_token_is_never_in_a_document_by_chance() {
        let base = token_base(&[1; 32]);
        assert!(base.starts_with("primercarved") && base.len() == 44);
        assert!(base.bytes().all(|c| c.is_ascii_alphanumeric()));
        // The placeholder found elsewhere too (a key, inside a string, twice): not restored.
        let mut n = parse(&format!("a: {base}x0\nb: {base}x0\n"), &LIMITS)
            .unwrap()
            .node;
        let mut v = vec![(format!("{base}x0"), Some("v".to_string()))];
        assert!(!restore(&mut n, &base, &mut v));
        let mut n = parse(&format!("a: {base}x0\n{base}: 1\n"), &LIMITS)
            .unwrap()
            .node;
        let mut v = vec![(format!("{base}x0"), Some("v".to_string()))];
        assert!(!restore(&mut n, &base, &mut v));
        let mut n = parse(&format!("a: {base}x0\nb: x {base}x1\n"), &LIMITS)
            .unwrap()
            .node;
        let mut v = vec![(format!("{base}x0"), Some("v".to_string()))];
        assert!(!restore(&mut n, &base, &mut v));
        let mut n = parse(&format!("a: {base}x0\n"), &LIMITS).unwrap().node;
        let mut v = vec![(format!("{base}x0"), Some("v".to_string()))];
        assert!(restore(&mut n, &base, &mut v));
    }
}
