//! cloud-config YAML into a generic [`Node`] tree, read the way PyYAML reads it for cloud-init:
//! legacy octal (`0644` is 420), YAML 1.1 booleans, `!!binary` as bytes, a repeated key keeps
//! its last value (and is recorded, so the caller can warn). Bounded: input size, nesting depth,
//! nodes, aliases and alias replay (no alias bomb); never recurses deeper than the depth limit.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::source::value::decode_base64;

/// A YAML value. Tags other than `!!binary` are dropped (their node kept).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Seq(Vec<Node>),
    Map(NodeMap),
}

/// A mapping's entries sorted by key, each key once, as a `BTreeMap` would give them: a B-tree
/// node keeps room for 11 entries (~630 bytes), so a document of 2,000 two-key `write_files`
/// entries held 1.2 MiB of them; a vector of its entries holds what it has.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct NodeMap(Vec<(String, Node)>);

impl NodeMap {
    /// The map of `pairs` (in document order) and the keys repeated in them: of a repeated
    /// key the last value is kept, as PyYAML keeps it. One sort, not an insertion each.
    fn from_pairs(mut pairs: Vec<(String, Node)>) -> (Self, Vec<String>) {
        // Stable: equal keys stay in document order, the last one is kept.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dups = Vec::new();
        let mut out: Vec<(String, Node)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == k => {
                    last.1 = v;
                    dups.push(k);
                }
                _ => out.push((k, v)),
            }
        }
        out.shrink_to_fit();
        (NodeMap(out), dups)
    }

    fn find(&self, k: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.as_str().cmp(k))
    }

    pub(crate) fn get(&self, k: &str) -> Option<&Node> {
        let i = self.find(k).ok()?;
        self.0.get(i).map(|e| &e.1)
    }

    pub(crate) fn remove(&mut self, k: &str) -> Option<Node> {
        let i = self.find(k).ok()?;
        Some(self.0.remove(i).1)
    }

    pub(crate) fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&String, &mut Node)> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub(crate) fn into_keys(self) -> impl DoubleEndedIterator<Item = String> {
        self.0.into_iter().map(|(k, _)| k)
    }

    pub(crate) fn keys(&self) -> impl DoubleEndedIterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
impl std::ops::Index<&str> for NodeMap {
    type Output = Node;
    fn index(&self, k: &str) -> &Node {
        self.get(k).expect("key in the map")
    }
}

impl IntoIterator for NodeMap {
    type Item = (String, Node);
    type IntoIter = std::vec::IntoIter<(String, Node)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(String, Node)> for NodeMap {
    fn from_iter<I: IntoIterator<Item = (String, Node)>>(items: I) -> Self {
        NodeMap::from_pairs(items.into_iter().collect()).0
    }
}

impl Node {
    /// What the node is, for messages (never its value: it may be a secret).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Str(_) => "a string",
            Node::Bytes(_) => "binary data",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// The bounds of one parse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct YamlLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_nodes: usize,
    pub max_aliases: usize,
    pub max_replayed_events: usize,
}

/// A parsed document and the keys that appeared more than once (path, sorted, deduplicated).
#[derive(Debug)]
pub(crate) struct Parsed {
    pub node: Node,
    pub duplicates: Vec<String>,
}

/// Parses one YAML document. `Err` is a one-line reason (no value from the document in it beyond
/// what the YAML library quotes of the position).
pub(crate) fn parse(text: &str, limits: &YamlLimits) -> Result<Parsed, String> {
    if text.len() > limits.max_bytes {
        return Err(format!(
            "too large ({} bytes > limit {})",
            text.len(),
            limits.max_bytes
        ));
    }
    if text.trim().is_empty() {
        return Ok(Parsed {
            node: Node::Null,
            duplicates: Vec::new(),
        });
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(limits.max_bytes),
            max_depth: limits.max_depth,
            max_documents: 1,
            max_aliases: limits.max_aliases,
            max_anchors: limits.max_aliases,
            max_nodes: limits.max_nodes,
            max_events: limits.max_nodes.saturating_mul(3),
            max_total_scalar_bytes: limits.max_bytes,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: limits.max_replayed_events,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: limits.max_aliases,
        },
        // PyYAML keeps the last of repeated keys; the visitor does the same and records them.
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        legacy_octal_numbers: true,
        // `!!binary` reaches the visitor as its base64 text with the tag; decoded here, so
        // binary that is not UTF-8 (gzip) survives.
        ignore_binary_tag_for_string: true,
        with_snippet: false,
    };
    let mut duplicates = Vec::new();
    let node = serde_saphyr::with_deserializer_from_str_with_options(text, options, |d| {
        Tagged {
            depth: 0,
            max_depth: limits.max_depth,
            path: String::new(),
            dups: &mut duplicates,
        }
        .deserialize(d)
    })
    .map_err(|e| one_line(&e.to_string()))?;
    crate::sort::sort(&mut duplicates);
    duplicates.dedup();
    Ok(Parsed { node, duplicates })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A node read with its tag (serde-saphyr's `Tagged` protocol), so `!!binary` is recognised.
struct Tagged<'p> {
    depth: usize,
    max_depth: usize,
    path: String,
    dups: &'p mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Tagged<'_> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_newtype_struct("__yaml_tagged", self)
    }
}

impl<'de> Visitor<'de> for Tagged<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML node")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(Any(self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let node = seq
            .next_element_seed(AnySeed(self))?
            .ok_or_else(|| de::Error::invalid_length(0, &"a tagged node"))?;
        let tag: Option<String> = seq.next_element::<String>()?;
        match (tag.as_deref(), node) {
            (Some("tag:yaml.org,2002:binary"), Node::Str(s)) => match decode_base64(&s) {
                Some(b) => Ok(Node::Bytes(b)),
                None if s.trim().is_empty() => Ok(Node::Bytes(Vec::new())),
                None => Err(de::Error::custom("!!binary value is not base64")),
            },
            (_, node) => Ok(node),
        }
    }
}

struct AnySeed<'p>(Tagged<'p>);

impl<'de> DeserializeSeed<'de> for AnySeed<'_> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(Any(self.0))
    }
}

struct Any<'p>(Tagged<'p>);

impl Any<'_> {
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        if self.0.depth >= self.0.max_depth {
            return Err(E::custom(format!(
                "nesting deeper than {}",
                self.0.max_depth
            )));
        }
        Ok(self.0.depth + 1)
    }
}

impl<'de> Visitor<'de> for Any<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(i128::try_from(v).map_or_else(|_| Node::Str(v.to_string()), Node::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Node, E> {
        Ok(Node::Bytes(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let depth = self.enter()?;
        let Tagged {
            max_depth,
            path,
            dups,
            ..
        } = self.0;
        let mut out = Vec::new();
        loop {
            let seed = Tagged {
                depth,
                max_depth,
                path: format!("{path}[{}]", out.len()),
                dups: &mut *dups,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let depth = self.enter()?;
        let Tagged {
            max_depth,
            path,
            dups,
            ..
        } = self.0;
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let v = map.next_value_seed(Tagged {
                depth,
                max_depth,
                path: child,
                dups: &mut *dups,
            })?;
            out.push((k, v));
        }
        let (map, repeated) = NodeMap::from_pairs(out);
        dups.extend(repeated.into_iter().map(|k| {
            if path.is_empty() {
                k
            } else {
                format!("{path}.{k}")
            }
        }));
        Ok(Node::Map(map))
    }
}

/// Limits for tests of the YAML reader and of what parses through it.
#[cfg(test)]
pub(super) const TEST_LIMITS: YamlLimits = YamlLimits {
    max_bytes: 1 << 20,
    max_depth: 16,
    max_nodes: 10_000,
    max_aliases: 100,
    max_replayed_events: 10_000,
};

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: YamlLimits = TEST_LIMITS;

    fn map(text: &str) -> NodeMap {
        match parse(text, &LIMITS).unwrap().node {
            Node::Map(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars_as_pyyaml_reads_them() {
        let m = map("#cloud-config\na: 0644\nb: '0644'\nc: 0o644\nd: yes\ne: off\nf: 644\ng: ~\nh: 1.5\ni: !!str 12\nj: !foo [1]\nk: 0x1f\n");
        assert_eq!(m["a"], Node::Int(420));
        assert_eq!(m["b"], Node::Str("0644".into()));
        assert_eq!(m["c"], Node::Int(420));
        assert_eq!(m["d"], Node::Bool(true));
        assert_eq!(m["e"], Node::Bool(false));
        assert_eq!(m["f"], Node::Int(644));
        assert_eq!(m["g"], Node::Null);
        assert_eq!(m["h"], Node::Float(1.5));
        assert_eq!(m["i"], Node::Str("12".into()));
        assert_eq!(m["j"], Node::Seq(vec![Node::Int(1)]));
        assert_eq!(m["k"], Node::Int(31));
    }

    #[test]
    fn binary_is_bytes_even_when_not_utf8() {
        let m = map("x: !!binary |\n  H4sIAAAAAAAAA0tMSgYAwkEkNQMAAAA=\ny: !!binary aGk=\n");
        assert!(matches!(&m["x"], Node::Bytes(b) if b.starts_with(&[0x1f, 0x8b])));
        assert_eq!(m["y"], Node::Bytes(b"hi".to_vec()));
        assert!(parse("x: !!binary '*not base64*'\n", &LIMITS).is_err());
    }

    #[test]
    fn duplicates_keep_the_last_and_are_recorded() {
        let p = parse("a: 1\nb: {c: 1, c: 2}\na: 2\nl: [{d: 1, d: 2}]\n", &LIMITS).unwrap();
        let Node::Map(m) = p.node else { panic!() };
        assert_eq!(m["a"], Node::Int(2));
        assert_eq!(p.duplicates, vec!["a", "b.c", "l[0].d"]);
    }

    #[test]
    fn bounds() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(parse(&deep, &LIMITS).unwrap_err().contains("Depth"));
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        for (i, c) in "bcdefgh".chars().enumerate() {
            let p = (b'a' + i as u8) as char;
            bomb.push_str(&format!(
                "{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
            ));
        }
        assert!(parse(&bomb, &LIMITS).is_err());
        let big = "a".repeat(LIMITS.max_bytes + 1);
        assert!(parse(&big, &LIMITS).unwrap_err().contains("too large"));
        assert!(parse("a: 1\n---\nb: 2\n", &LIMITS).is_err());
        assert_eq!(parse(" \n", &LIMITS).unwrap().node, Node::Null);
    }
}
