//! Shared parsing helpers for the source parsers: JSON and YAML documents into
//! `serde_json::Value` with a nesting limit and duplicate keys refused, size caps, lenient
//! base64, and small value coercions. Pure; never panics on hostile bytes and never recurses
//! deeper than [`MAX_DEPTH`].

use std::fmt;

use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::SourceError;

/// Deepest nesting of arrays/objects accepted in any JSON or YAML document from a drive. Real
/// documents stay below 10; the limit keeps the parse stack small and the error clear.
pub const MAX_DEPTH: usize = 64;

/// Largest structured document (JSON, YAML, XML) parsed from a drive. Metadata is kilobytes; the
/// cap only has to leave room for user data embedded in an OVF environment.
pub const MAX_DOC_BYTES: usize = 16 << 20;

/// Largest user data (or vendor data) accepted. Ironic allows 64 MiB drives, so the whole drive
/// could be user data; the media layer applies the same bound per file.
pub const MAX_USER_DATA_BYTES: usize = 64 << 20;

/// Refuses `len` above `limit` with an error naming device, file and field.
pub fn check_size(
    device: &str,
    file: &str,
    field: &str,
    len: usize,
    limit: usize,
) -> Result<(), SourceError> {
    if len > limit {
        return Err(SourceError::TooLarge {
            device: device.to_string(),
            file: file.to_string(),
            field: field.to_string(),
            size: len as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

/// A `serde_json::Value` built by [`ValueSeed`]: nesting bounded, duplicate keys refused.
struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { depth: self.depth })
    }
}

struct ValueVisitor {
    depth: usize,
}

impl ValueVisitor {
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(self.depth + 1)
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON/YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        // Beyond 64 bits: keep the digits rather than lose precision.
        Ok(Value::String(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        // YAML `!!binary`: metadata never needs raw bytes; keep them readable.
        Ok(Value::String(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        ValueSeed { depth: self.depth }.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed { depth })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            // One search of the map per key: its place is kept while the value is read.
            match out.entry(k) {
                serde_json::map::Entry::Occupied(o) => {
                    // serde_json keeps the last silently; a drive that says two things is
                    // suspect. Refused at the key, before its value is read.
                    return Err(de::Error::custom(format!("duplicate key {:?}", o.key())));
                }
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(map.next_value_seed(ValueSeed { depth })?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parses a JSON document: nesting bounded by [`MAX_DEPTH`], duplicate keys refused, size
/// bounded by [`MAX_DOC_BYTES`]. Errors name device, file, line and column.
pub fn parse_json(device: &str, file: &str, bytes: &[u8]) -> Result<Value, SourceError> {
    check_size(device, file, "", bytes.len(), MAX_DOC_BYTES)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = ValueSeed { depth: 0 }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            // serde_json appends the position to its message; the error shows it already.
            let msg = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            SourceError::Json {
                device: device.to_string(),
                file: file.to_string(),
                line: e.line(),
                column: e.column(),
                detail: msg.strip_suffix(&suffix).unwrap_or(&msg).to_string(),
            }
        })?;
    Ok(v)
}

/// How YAML scalars are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlProfile {
    /// Metadata and network config: identifiers keep their spelling (`0123` stays a string);
    /// YAML 1.1 booleans (`yes`, `on`) are booleans, as netplan reads them.
    Data,
    /// cloud-config: numbers with a leading zero are octal (`0644` is 420), as PyYAML reads them.
    CloudConfig,
}

/// Parses one YAML document (JSON is accepted, it is YAML) into a value: nesting bounded by
/// [`MAX_DEPTH`], aliases bounded (no alias bomb), duplicate keys refused, one document only.
pub fn parse_yaml(
    device: &str,
    file: &str,
    bytes: &[u8],
    profile: YamlProfile,
) -> Result<Value, SourceError> {
    check_size(device, file, "", bytes.len(), MAX_DOC_BYTES)?;
    let err = |detail: String| SourceError::Yaml {
        device: device.to_string(),
        file: file.to_string(),
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_DOC_BYTES),
            max_depth: MAX_DEPTH,
            max_documents: 1,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: 200_000,
            max_events: 500_000,
            max_total_scalar_bytes: MAX_DOC_BYTES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: 1_000,
        },
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        legacy_octal_numbers: profile == YamlProfile::CloudConfig,
        leading_zero_numbers_as_strings: profile == YamlProfile::Data,
        // One-line errors: the message goes to a log line naming file and position.
        with_snippet: false,
    };
    let v: CheckedValue = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        // The crate's hint names its own API, which means nothing to an operator.
        let msg = e
            .to_string()
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        err(one_line(&msg))
    })?;
    Ok(v.0)
}

/// Top-level entry for [`ValueSeed`] where an API wants a `Deserialize` type.
struct CheckedValue(Value);

impl<'de> serde::Deserialize<'de> for CheckedValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ValueSeed { depth: 0 }.deserialize(d).map(CheckedValue)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes base64 leniently: whitespace ignored, padding optional, standard or URL-safe
/// alphabet. `None` when it is not base64.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.split_whitespace().collect();
    decode_compact(compact.as_bytes())
}

/// Base64 without whitespace, padding optional, standard then URL-safe alphabet; `None` when
/// empty or not base64.
fn decode_compact(compact: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    if compact.is_empty() {
        return None;
    }
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::STANDARD, cfg)
        .decode(compact)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg).decode(compact))
        .ok()
}

/// [`decode_base64`] of bytes the caller gives up: the whitespace is removed in place rather
/// than into a second copy (a `write_files` content may be tens of MiB). Text that is not ASCII
/// goes through `decode_base64` (its Unicode whitespace rule), with the same result.
pub fn decode_base64_owned(mut raw: Vec<u8>) -> Option<Vec<u8>> {
    if !raw.is_ascii() {
        return std::str::from_utf8(&raw).ok().and_then(decode_base64);
    }
    // ASCII whitespace as `char::is_whitespace` has it (with vertical tab, unlike
    // `u8::is_ascii_whitespace`).
    raw.retain(|b| !matches!(b, b' ' | b'\t'..=b'\r'));
    decode_compact(&raw)
}

/// A value as a message shows it: scalars as short JSON text, containers by kind.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => kind(v).to_string(),
        _ => {
            let t = v.to_string();
            if t.chars().count() > 40 {
                format!("{}...", t.chars().take(40).collect::<String>())
            } else {
                t
            }
        }
    }
}

/// What a JSON value is, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A scalar as text: strings as they are, numbers in their decimal form (YAML types `1234` as a
/// number; a host name or id of digits is still text). `None` for anything else.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Drive bytes as UTF-8 text with a trailing line break removed (one-value files such as
/// CloudStack's `*.txt`). `None` when not UTF-8.
pub fn text_value(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    Some(s.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decoded_in_place_as_from_text() {
        for t in [
            "aGk=",
            "aGk",
            " aG\nk=\r\n",
            "a\x0bGk=",
            "_-8=",
            "+/8=",
            "",
            " \n",
            "not base64!",
            "aG\u{a0}k=",
            "\u{e9}",
        ] {
            assert_eq!(
                decode_base64_owned(t.as_bytes().to_vec()),
                decode_base64(t),
                "{t:?}"
            );
        }
        assert_eq!(decode_base64_owned(b"aGk=".to_vec()).unwrap(), b"hi");
        assert_eq!(decode_base64_owned(vec![0xff, b'a']), None);
    }

    #[test]
    fn json_duplicates_and_depth() {
        let e = parse_json("d", "f.json", br#"{"a":1,"a":2}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("d: f.json: invalid JSON") && e.contains("duplicate key \"a\""),
            "{e}"
        );
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let e = parse_json("d", "f.json", deep.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nesting deeper than 64"), "{e}");
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_json("d", "f.json", ok.as_bytes()).is_ok());
        // Nested duplicates too, and trailing garbage.
        assert!(parse_json("d", "f", br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_json("d", "f", br#"{} x"#).is_err());
    }

    #[test]
    fn yaml_profiles_duplicates_aliases() {
        let v = parse_yaml(
            "d",
            "m",
            b"id: 0123\nmode: 0644\non: yes\n",
            YamlProfile::Data,
        )
        .unwrap();
        assert_eq!(v["id"], "0123");
        assert_eq!(v["mode"], "0644");
        let v = parse_yaml("d", "m", b"mode: 0644\n", YamlProfile::CloudConfig).unwrap();
        assert_eq!(v["mode"], 420);
        let e = parse_yaml("d", "meta-data", b"a: 1\na: 2\n", YamlProfile::Data)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d: meta-data: invalid YAML"), "{e}");
        assert!(e.to_lowercase().contains("duplicate"), "{e}");
        // Billion laughs: nine levels of nine aliases.
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, c) in "bcdefghi".chars().enumerate() {
            let prev = (b'a' + i as u8) as char;
            bomb.push_str(&format!("{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        assert!(parse_yaml("d", "m", bomb.as_bytes(), YamlProfile::Data).is_err());
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_yaml("d", "m", deep.as_bytes(), YamlProfile::Data).is_err());
        assert!(parse_yaml("d", "m", b"a: 1\n---\nb: 2\n", YamlProfile::Data).is_err());
        assert!(parse_yaml("d", "m", b"\xff\xfe: x", YamlProfile::Data)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
        assert_eq!(
            parse_yaml("d", "m", b"  \n", YamlProfile::Data).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn base64_lenient() {
        assert_eq!(decode_base64("QUJD REVG").unwrap(), b"ABCDEF");
        assert_eq!(decode_base64("QUI").unwrap(), b"AB");
        assert_eq!(decode_base64("QUI=").unwrap(), b"AB");
        assert_eq!(decode_base64("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_base64("not base64!").is_none());
        assert!(decode_base64("").is_none());
    }
}
