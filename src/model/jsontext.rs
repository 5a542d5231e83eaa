//! A JSON document kept as the drive's text ([`JsonText`]) instead of a `serde_json::Value`
//! tree (unless small): the source checks it once (well-formed, nesting bounded, no duplicate key) and the
//! stages that need it read it again from the text. Pure; never panics on its text, never
//! recurses deeper than the document's own nesting (which the source bounded).
//!
//! Why: a `Value` costs ~10 bytes of heap per byte of text (a map node per object, a `String`
//! per key and value); a `network_data.json` of 14,000 links held as one for the whole run was
//! 8.4 MiB, its text 0.9 MiB, which the drive holds anyway (issue 15).

use std::fmt;

use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::Bytes;

/// A JSON document the source checked (it parses as JSON with no duplicate key, its nesting
/// within the source's bound): a small one as its `serde_json::Value` (reading a few KiB twice
/// would cost more CPU than its tree costs memory), a larger one as the drive's text, read
/// again by the stage that needs the tree. Either serialises exactly as the value does (keys
/// sorted, numbers and strings re-written as `serde_json` writes them): the text without
/// building the tree.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonText(Held);

#[derive(Clone, PartialEq, Eq)]
enum Held {
    Tree(Value),
    Text(Bytes),
}

impl JsonText {
    /// Largest text a source keeps as its tree (~10 bytes of heap per byte of text: at most
    /// ~160 KiB). Real `network_data.json` files are a few KiB.
    pub const TREE_MAX: usize = 16 << 10;

    /// Text the caller checked (`source::value::check_json` accepted it, or `serde_json` wrote
    /// it).
    pub fn checked(text: Bytes) -> JsonText {
        JsonText(Held::Text(text))
    }

    /// A document already read (a small one, see [`JsonText::TREE_MAX`]).
    pub fn tree(v: Value) -> JsonText {
        JsonText(Held::Tree(v))
    }

    /// The document as a `serde_json::Value`, the very value the source's reader makes of it
    /// (for text without duplicate keys and within its nesting bound, `serde_json`'s own
    /// `Value` reading gives the same tree): the one held, or one read from the text for the
    /// stage that reads it, briefly.
    pub fn value(&self) -> Result<std::borrow::Cow<'_, Value>, String> {
        match &self.0 {
            Held::Tree(v) => Ok(std::borrow::Cow::Borrowed(v)),
            Held::Text(t) => {
                let text = t.try_slice().map_err(|e| e.to_string())?;
                serde_json::from_slice(text)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

impl From<Value> for JsonText {
    /// A document built in code (tests, `make-drive`).
    fn from(v: Value) -> JsonText {
        JsonText::tree(v)
    }
}

impl fmt::Debug for JsonText {
    /// As the value reads (what `Debug` of the tree showed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value() {
            Ok(v) => fmt::Debug::fmt(&*v, f),
            Err(_) => f.write_str("<unreadable JSON>"),
        }
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = match &self.0 {
            Held::Tree(v) => return v.serialize(s),
            Held::Text(t) => t.try_slice().map_err(S::Error::custom)?,
        };
        let doc = Scanned::new(text).ok_or_else(|| S::Error::custom("JSON text out of shape"))?;
        let at = skip_ws(text, 0);
        Node { doc: &doc, at }.serialize(s)
    }
}

/// The text with the extent of every object and array: where each opens (ascending, in text
/// order) and where it closes. Made in one pass, so writing the document is linear in its
/// size (finding a value's end by scanning it again at each level would be quadratic in the
/// nesting).
struct Scanned<'t> {
    text: &'t [u8],
    opens: Vec<u32>,
    closes: Vec<u32>,
}

impl<'t> Scanned<'t> {
    /// `None` when the text is not of JSON's shape (unbalanced, or beyond 4 GiB): never for
    /// checked text.
    fn new(text: &'t [u8]) -> Option<Scanned<'t>> {
        u32::try_from(text.len()).ok()?;
        let mut opens = Vec::new();
        let mut closes = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut i = 0;
        while let Some(&b) = text.get(i) {
            match b {
                // A string's body is skipped whole: brackets inside it are text.
                b'"' => {
                    i = string_end(text, i)?;
                    continue;
                }
                b'{' | b'[' => {
                    open.push(opens.len());
                    opens.push(i as u32);
                    closes.push(0);
                }
                b'}' | b']' => {
                    let k = open.pop()?;
                    let opener = if b == b'}' { b'{' } else { b'[' };
                    if text[opens[k] as usize] != opener {
                        return None;
                    }
                    closes[k] = i as u32;
                }
                _ => {}
            }
            i += 1;
        }
        open.is_empty().then_some(Scanned {
            text,
            opens,
            closes,
        })
    }

    /// One past the end of the value starting at `at`.
    fn value_end(&self, at: usize) -> Option<usize> {
        match self.text.get(at)? {
            b'{' | b'[' => {
                let k = self.opens.binary_search(&(at as u32)).ok()?;
                Some(self.closes[k] as usize + 1)
            }
            b'"' => string_end(self.text, at),
            _ => Some(
                self.text[at..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .map_or(self.text.len(), |n| at + n),
            ),
        }
    }
}

/// One past the closing quote of the string opening at `at`.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        let n = memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        match text[i + n] {
            b'"' => return Some(i + n + 1),
            // An escape: the next byte is never the closing quote.
            _ => i += n + 2,
        }
    }
}

/// The first byte at or after `i` that is not JSON white space.
fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A JSON string's text (quotes included) as a `str`: borrowed when it holds no escape.
fn string_text(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let inner = raw.get(1..raw.len().checked_sub(1)?)?;
    if memchr::memchr(b'\\', inner).is_none() {
        std::str::from_utf8(inner).ok().map(Into::into)
    } else {
        serde_json::from_slice::<String>(raw).ok().map(Into::into)
    }
}

/// The value starting at `at` of a scanned document, serialised as its `serde_json::Value`
/// would be (the same calls in the same order: a map with its length and its entries by key,
/// a sequence with its length, scalars as the value serialises them).
struct Node<'d, 't> {
    doc: &'d Scanned<'t>,
    at: usize,
}

impl Serialize for Node<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let shape = || S::Error::custom("JSON text out of shape");
        let text = self.doc.text;
        let end = self.doc.value_end(self.at).ok_or_else(shape)?;
        match text[self.at] {
            b'{' => {
                let mut entries = Vec::new();
                let mut i = skip_ws(text, self.at + 1);
                while text.get(i) == Some(&b'"') {
                    let key_end = string_end(text, i).ok_or_else(shape)?;
                    let key = string_text(&text[i..key_end]).ok_or_else(shape)?;
                    i = skip_ws(text, key_end);
                    if text.get(i) != Some(&b':') {
                        return Err(shape());
                    }
                    let v = skip_ws(text, i + 1);
                    entries.push((key, v));
                    i = skip_ws(text, self.doc.value_end(v).ok_or_else(shape)?);
                    if text.get(i) == Some(&b',') {
                        i = skip_ws(text, i + 1);
                    }
                }
                if i + 1 != end {
                    return Err(shape());
                }
                // `Value`'s map is ordered by key; the source refused duplicates.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in &entries {
                    m.serialize_entry(
                        k.as_ref(),
                        &Node {
                            doc: self.doc,
                            at: *v,
                        },
                    )?;
                }
                m.end()
            }
            b'[' => {
                let mut items = Vec::new();
                let mut i = skip_ws(text, self.at + 1);
                while i + 1 < end {
                    items.push(i);
                    i = skip_ws(text, self.doc.value_end(i).ok_or_else(shape)?);
                    if text.get(i) == Some(&b',') {
                        i = skip_ws(text, i + 1);
                    }
                }
                let mut q = s.serialize_seq(Some(items.len()))?;
                for at in items {
                    q.serialize_element(&Node { doc: self.doc, at })?;
                }
                q.end()
            }
            b'"' => s.serialize_str(&string_text(&text[self.at..end]).ok_or_else(shape)?),
            b't' => s.serialize_bool(true),
            b'f' => s.serialize_bool(false),
            b'n' => s.serialize_unit(),
            // A number: read as the value reads it (integer or float, `serde_json`'s rules).
            _ => serde_json::from_slice::<Value>(&text[self.at..end])
                .map_err(S::Error::custom)?
                .serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(text: &str) {
        let v: Value = serde_json::from_str(text).unwrap();
        let t = JsonText::checked(text.as_bytes().to_vec().into());
        assert_eq!(
            serde_json::to_vec(&t).unwrap(),
            serde_json::to_vec(&v).unwrap(),
            "{text}"
        );
        assert_eq!(
            serde_json::to_vec_pretty(&t).unwrap(),
            serde_json::to_vec_pretty(&v).unwrap(),
            "{text}"
        );
        assert_eq!(*t.value().unwrap(), v);
        let tree = JsonText::tree(v.clone());
        assert_eq!(
            serde_json::to_vec_pretty(&tree).unwrap(),
            serde_json::to_vec_pretty(&t).unwrap()
        );
        assert_eq!(format!("{t:?}"), format!("{v:?}"));
    }

    /// Written as the value it parses to would be, whatever the text's spacing, key order,
    /// escapes and number spellings.
    #[test]
    fn writes_as_its_value() {
        for t in [
            "{}",
            "[]",
            " { } ",
            "\n[ ]\t",
            "null",
            "true",
            "-0",
            "-0.0",
            "1e2",
            "1E+2",
            "0.1",
            "12345678901234567890",
            "123456789012345678901234567890",
            "-9223372036854775808",
            "-9223372036854775809",
            "2.5e-308",
            r#""a\"b\\c\u00e9\ud83d\ude00\n\/""#,
            r#"{"b":1,"a":[1,2,{"z":null,"y":true,"x":false}],"\u0061a":"x","":{}}"#,
            r#"{ "links" : [ { "id" : "t" , "mtu":1500 } , {"id":"v\"]}","type":"vlan"} ] ,
                "networks":[[[]]], "services" :[ "a" , 1.5 ,-2 ] }"#,
            "{\"é\":1,\"e\":2,\"z\":3,\"\u{1f600}\":4,\"E\":5}",
        ] {
            same(t);
        }
        let deep = format!("{}1{}", "[{\"a\":".repeat(32), "}]".repeat(32));
        same(&deep);
    }

    #[test]
    fn text_out_of_shape_is_an_error_not_a_panic() {
        for t in ["{", "]", "[1,", "{\"a\"", "{\"a\" 1}", "\"abc", "{\"a\":1]"] {
            let j = JsonText::checked(t.as_bytes().to_vec().into());
            assert!(serde_json::to_vec(&j).is_err(), "{t}");
        }
    }
}
