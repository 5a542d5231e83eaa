//! State: where primer keeps its private copy of the drive and its per-instance record of what
//! was applied, and the content hash that identifies a drive. Layout and types only; the files
//! are written by `apply` (the only writer) from steps that `plan` chose.

use std::io;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A path inside primer's state directory, relative to the target root, as a `&'static str`
/// constant: `state_path!()` is the directory itself, `state_path!("lock")` a file in it. The
/// base is the target system's: `var/lib/primer` on Linux; `ProgramData/primer` on Windows,
/// i.e. `%ProgramData%\primer` with the system drive (`C:\`) as the root, readable by SYSTEM
/// and Administrators only. Chosen by the target OS when primer is compiled, so it is data to
/// the planner (which stays pure and identical everywhere) and Linux keeps its exact layout.
/// Every state path derives from this one definition (the run lock, the growth request, the
/// reclaim record, the key, status, pin, instances).
macro_rules! state_path {
    () => {
        if cfg!(windows) {
            "ProgramData/primer"
        } else {
            "var/lib/primer"
        }
    };
    ($file:literal) => {
        if cfg!(windows) {
            concat!("ProgramData/primer/", $file)
        } else {
            concat!("var/lib/primer/", $file)
        }
    };
}
pub(crate) use state_path;

/// Root of primer's state, relative to the target root (see [`state_path`]).
pub const STATE_DIR: &str = state_path!();

/// primer's per-machine key for keyed digests of secrets (32 random bytes, mode 0600),
/// relative to the root.
pub const KEY_PATH: &str = state_path!("secret");

/// The directory holding one directory per instance (relative to the target root).
pub fn instances_dir() -> String {
    state_path!("instance").to_string()
}

/// The per-instance directory (relative to the target root).
pub fn instance_dir(instance_id: &str) -> String {
    in_instance(instance_id, "")
}

/// `<instances_dir>/<instance_id><rest>` in one allocation: every run builds a dozen of these
/// paths, and each `format!` of them (two for a nested one) cost ~1,000 instructions.
fn in_instance(instance_id: &str, rest: &str) -> String {
    const BASE: &str = state_path!("instance/");
    let mut p = String::with_capacity(BASE.len() + instance_id.len() + rest.len());
    p.push_str(BASE);
    p.push_str(instance_id);
    p.push_str(rest);
    p
}

/// The pinning record (the drive used at first boot), relative to the target root.
pub fn pin_path() -> String {
    state_path!("pinned.json").to_string()
}

/// What the last `primer run` did (see `status::Status`); relative to the target root.
pub fn status_path() -> String {
    state_path!("status.json").to_string()
}

/// Where the drive's files are copied.
pub fn drive_copy_dir(instance_id: &str) -> String {
    in_instance(instance_id, "/drive")
}

pub fn instance_json_path(instance_id: &str) -> String {
    in_instance(instance_id, "/instance.json")
}

pub fn record_path(instance_id: &str) -> String {
    in_instance(instance_id, "/applied.json")
}

/// What this instance set out to create, written durably before it is created (JSON object:
/// step id -> the input's hash, as in `Record::steps`). The record is written last, so without
/// it a run stopped after an account was made but before the record would leave an account the
/// next run takes for the image's (no home completed, no sudo rule). Only ever read as "this
/// instance's own, if it exists": an intent never makes anything count as done.
pub fn intent_path(instance_id: &str) -> String {
    in_instance(instance_id, "/intent.json")
}

/// An instance id is used as a directory name: it must be a single safe path component.
/// Returns why not, when it is not.
pub fn invalid_instance_id(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("empty")
    } else if id.len() > 128 {
        Some("longer than 128 bytes")
    } else if id == "." || id == ".." || id.starts_with('.') {
        Some("starts with a dot")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'+'))
    {
        Some("contains a character other than A-Z a-z 0-9 - _ . : @ +")
    } else {
        None
    }
}

/// Hex SHA-256 (lower case), in one allocation: formatting byte by byte cost ~30 allocations
/// per digest, and every step's input and every written file is digested.
pub fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&Sha256::digest(data))
}

/// `bytes` as lower-case hex, in one allocation.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A step's recorded input (a value of [`Record::steps`]): nearly always a SHA-256 as
/// lower-case hex, held as its 32 bytes (a plan may hold 28,000 inputs: as text each is 64
/// bytes and a heap block), else the text as it is (a crypt hash, an `append`'s two digests).
/// Compares and prints as its text: a digest is only made from the exact text it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Digest([u8; 32]),
    Text(Box<str>),
}

impl Input {
    /// The input as its text, written into `buf` when it is a digest.
    pub fn text<'b>(&'b self, buf: &'b mut [u8; 64]) -> &'b str {
        match self {
            Input::Text(t) => t,
            Input::Digest(d) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                for (pair, b) in buf.chunks_exact_mut(2).zip(d) {
                    pair[0] = DIGITS[usize::from(b >> 4)];
                    pair[1] = DIGITS[usize::from(b & 0xf)];
                }
                std::str::from_utf8(buf).unwrap_or_default()
            }
        }
    }

    /// Whether the input's text is `s`.
    pub fn is(&self, s: &str) -> bool {
        self.text(&mut [0; 64]) == s
    }
}

impl From<String> for Input {
    /// A digest when `s` is 64 lower-case hex digits (what `sha256_hex` gives), else the text.
    fn from(s: String) -> Input {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        if s.len() == 64 {
            let mut d = [0u8; 32];
            let ok = s
                .as_bytes()
                .chunks_exact(2)
                .zip(d.iter_mut())
                .all(|(p, o)| match (nibble(p[0]), nibble(p[1])) {
                    (Some(h), Some(l)) => {
                        *o = h << 4 | l;
                        true
                    }
                    _ => false,
                });
            if ok {
                return Input::Digest(d);
            }
        }
        Input::Text(s.into_boxed_str())
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text(&mut [0; 64]))
    }
}

/// A record value as text: an owned record's `String`, or a plan step's [`Input`].
pub trait InputText {
    fn input_text<'b>(&'b self, buf: &'b mut [u8; 64]) -> &'b str;
}

impl InputText for String {
    fn input_text<'b>(&'b self, _: &'b mut [u8; 64]) -> &'b str {
        self
    }
}

impl InputText for str {
    fn input_text<'b>(&'b self, _: &'b mut [u8; 64]) -> &'b str {
        self
    }
}

impl InputText for Input {
    fn input_text<'b>(&'b self, buf: &'b mut [u8; 64]) -> &'b str {
        self.text(buf)
    }
}

/// What was applied for one instance: read by the next run's planner (and `primer status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub instance_id: String,
    pub format: String,
    pub version: String,
    pub drive_sha256: String,
    /// Step id -> hash of the input the step applied (e.g. the hostname, the key list).
    /// A step whose input is unchanged since it was applied is not re-applied over local edits.
    pub steps: Steps,
}

/// A record's steps, step id -> input, in id order: every id and input in one buffer, found by
/// binary search over an index of their offsets. Not a `BTreeMap<String, String>`: a re-run
/// holds the previous record through planning, and 10,000 steps in a map were two allocations
/// each plus half-full nodes, 2 MB at the re-run's peak (issue 15); here 12 B per step beside
/// the text itself. Read as a JSON map (of a repeated id the last input wins, as a map's did)
/// and written as one, in id order.
#[derive(Clone, Default)]
pub struct Steps {
    /// Each step's id then its input, one after the other.
    text: String,
    /// `[id start, input start, input end]` into `text`, in id order, each id once.
    index: Vec<[u32; 3]>,
}

impl Steps {
    /// The input recorded for step `id`.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.index
            .binary_search_by(|e| self.id(e).cmp(id))
            .ok()
            .map(|i| self.input(&self.index[i]))
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// `(id, input)` in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.index.iter().map(|e| (self.id(e), self.input(e)))
    }

    /// The ids, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.index.iter().map(|e| self.id(e))
    }

    /// Sets the input of step `id`, as a map's `insert` (tests only: a record is read whole
    /// by its deserialiser, which refuses one past 4 GiB rather than drop a step).
    #[cfg(test)]
    pub fn insert(&mut self, id: String, input: String) {
        if self.push(&id, &input) {
            self.settle();
        }
    }

    fn id(&self, e: &[u32; 3]) -> &str {
        self.text
            .get(e[0] as usize..e[1] as usize)
            .unwrap_or_default()
    }

    fn input(&self, e: &[u32; 3]) -> &str {
        self.text
            .get(e[1] as usize..e[2] as usize)
            .unwrap_or_default()
    }

    /// Appends one step, unordered; false (nothing kept) past 4 GiB of text.
    fn push(&mut self, id: &str, input: &str) -> bool {
        let start = self.text.len();
        self.text.push_str(id);
        self.text.push_str(input);
        self.mark(start, start + id.len())
    }

    /// Indexes the step whose id starts at `start`, whose input starts at `mid` and ends at the
    /// text's end; false (the text cut back to `start`) when an offset passes `u32`.
    fn mark(&mut self, start: usize, mid: usize) -> bool {
        match (
            u32::try_from(start),
            u32::try_from(mid),
            u32::try_from(self.text.len()),
        ) {
            (Ok(a), Ok(b), Ok(c)) => {
                self.index.push([a, b, c]);
                true
            }
            _ => {
                self.text.truncate(start);
                false
            }
        }
    }

    /// Puts the index in id order, each id once, of a repeated id the last one pushed. A record
    /// primer wrote is in order already: one pass checks it.
    fn settle(&mut self) {
        if self
            .index
            .windows(2)
            .all(|w| self.id(&w[0]) < self.id(&w[1]))
        {
            return;
        }
        let mut index = std::mem::take(&mut self.index);
        // Latest first, then a stable sort: of equal ids the one kept (the first) is the last.
        index.reverse();
        crate::sort::sort_by(&mut index, |a, b| self.id(a).cmp(self.id(b)));
        index.dedup_by(|later, kept| self.id(later) == self.id(kept));
        self.index = index;
    }
}

/// A plan's own record (`RecordView::to_record`) and tests. Its ids and inputs come from one
/// drive, capped far below the 4 GiB where `push` would refuse a step: asserted in debug builds.
impl FromIterator<(String, String)> for Steps {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(items: I) -> Steps {
        let mut s = Steps::default();
        for (id, input) in items {
            let kept = s.push(&id, &input);
            debug_assert!(kept, "a record past 4 GiB of text");
        }
        s.settle();
        s
    }
}

impl PartialEq for Steps {
    fn eq(&self, other: &Steps) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Steps {}

impl std::fmt::Debug for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Steps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Steps {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Steps, D::Error> {
        d.deserialize_map(StepsVisitor)
    }
}

/// Reads a JSON map of strings straight into a [`Steps`]' buffer: no string of its own per id
/// or input. Accepts and refuses what a `BTreeMap<String, String>` did.
struct StepsVisitor;

impl<'de> serde::de::Visitor<'de> for StepsVisitor {
    type Value = Steps;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Steps, A::Error> {
        let mut s = Steps::default();
        // The index's length after the last settle: settled again once it has doubled (and
        // grown by at least `SETTLE_EVERY`), so a record that repeats a few ids millions of
        // times (a hostile edit: `"":""` 11 million times in 64 MiB) holds an index of its
        // distinct ids, not one entry per repeat (12 B each, plus the sort's scratch: 289 MB
        // for 64 MiB). Doubling keeps the settles O(n log n) in all.
        let mut settled = 0usize;
        loop {
            let start = s.text.len();
            if m.next_key_seed(AppendStr(&mut s.text))?.is_none() {
                break;
            }
            let mid = s.text.len();
            m.next_value_seed(AppendStr(&mut s.text))?;
            if !s.mark(start, mid) {
                return Err(serde::de::Error::custom("record too large"));
            }
            if s.index.len() >= settled.saturating_mul(2).max(SETTLE_EVERY) {
                s.settle();
                settled = s.index.len();
            }
            #[cfg(test)]
            PEAK_INDEX.with(|p| p.set(p.get().max(s.index.len())));
        }
        s.settle();
        // Grown by doubling: a large buffer's untouched tail is not resident, but a small
        // one's spare capacity would stay on the heap through planning.
        s.text.shrink_to_fit();
        s.index.shrink_to_fit();
        Ok(s)
    }
}

/// How many entries a record's index takes before it is first settled while being read.
const SETTLE_EVERY: usize = 4096;

#[cfg(test)]
thread_local! {
    /// The longest index a read of a record held on this thread (tests of the bound above).
    static PEAK_INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A string appended to a buffer as it is read.
struct AppendStr<'b>(&'b mut String);

impl<'de> serde::de::DeserializeSeed<'de> for AppendStr<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_string(self)
    }
}

impl serde::de::Visitor<'_> for AppendStr<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
}

/// A document primer writes as `serde_json::to_vec_pretty` would, and a newline (byte for byte:
/// unit tests hold the two together), by [`PrettyJson`] directly (every run writes its record
/// and status; the generic serializer cost more than the rest of recording the run): buffered,
/// or streamed into its staged file, never held whole (thousands of steps: hundreds of KiB).
pub(crate) trait PrettyDoc {
    /// The document, field by field, into `j`.
    fn json_into(&self, j: &mut PrettyJson<'_>);

    /// About how many bytes the document takes (the buffer's first size).
    fn json_size(&self) -> usize;

    /// The whole document.
    fn to_json(&self) -> Vec<u8> {
        let mut j = PrettyJson::with_capacity(self.json_size());
        self.json_into(&mut j);
        j.finish()
    }

    /// [`to_json`](PrettyDoc::to_json)'s bytes written to `out` as they are made.
    fn write_json(&self, out: &mut dyn io::Write) -> io::Result<()> {
        // A small document's buffer no larger than the document (a first run's status: a few
        // KiB, not a whole chunk of heap).
        let mut j = PrettyJson::streaming_sized(out, self.json_size());
        self.json_into(&mut j);
        j.finish_to()
    }
}

impl PrettyDoc for Record {
    fn json_into(&self, j: &mut PrettyJson<'_>) {
        self.fields_into(j)
    }

    fn json_size(&self) -> usize {
        256 + self.steps.len() * 112
    }
}

/// The record input of a `write_files` `append` step: its text's SHA-256, `:`, the SHA-256 of
/// the rest of the entry (`rest`: mode, owner). The text's half stands alone so that the facts
/// can see, before the plan resolves the entry's owner, that the record vouches for the text
/// ([`append_input_names`]) and need not search a grown file for it.
pub fn append_input(text: &[u8; 32], rest: &[u8]) -> String {
    format!("{}:{}", hex_lower(text), sha256_hex(rest))
}

/// Whether the record `input` of an `append` step names the text whose SHA-256 is `text`
/// (an [`append_input`]; a record from before the form holds one joined digest: no).
pub fn append_input_names(input: &str, text: &[u8; 32]) -> bool {
    input
        .split_once(':')
        .is_some_and(|(t, _)| t.len() == 64 && t == hex_lower(text))
}

impl Record {
    /// Whether [`to_json`](PrettyDoc::to_json) would give exactly `bytes`, compared as it is
    /// made (the planner's up-to-date check, without a copy of the document).
    pub fn json_equals(&self, bytes: &[u8]) -> bool {
        let mut cmp = SameAs {
            rest: bytes,
            same: true,
        };
        self.write_json(&mut cmp).is_ok() && cmp.same && cmp.rest.is_empty()
    }

    fn fields_into(&self, j: &mut PrettyJson<'_>) {
        self.fields_with(self.steps.iter(), j)
    }

    /// The document with `steps` (in id order, each id once) in place of `self.steps`.
    fn fields_with<'s, V: InputText + ?Sized + 's>(
        &self,
        steps: impl Iterator<Item = (&'s str, &'s V)>,
        j: &mut PrettyJson<'_>,
    ) {
        j.open(b'{');
        j.key("instance_id");
        j.string(&self.instance_id);
        j.key("format");
        j.string(&self.format);
        j.key("version");
        j.string(&self.version);
        j.key("drive_sha256");
        j.string(&self.drive_sha256);
        j.key("steps");
        j.open(b'{');
        let mut buf = [0; 64];
        for (k, v) in steps {
            j.key(k);
            j.string(v.input_text(&mut buf));
            j.spill();
        }
        j.close(b'}');
        j.close(b'}');
    }
}

impl crate::model::bytes::WriteOut for Record {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        self.write_json(out)
    }
}

/// A record whose steps are borrowed (from the plan: its step ids and inputs), not copied into
/// a map of their own: written and compared as [`Record`] is, byte for byte. The plan keeps one
/// per run, beside thousands of steps: a copy of each id and input would double them.
pub struct RecordView<'a> {
    /// Instance, format, version and drive digest (its `steps` are not used).
    pub head: &'a Record,
    /// `(step id, input)` in id order, each id once.
    pub steps: Vec<(&'a str, &'a Input)>,
}

impl RecordView<'_> {
    /// As [`Record::json_equals`].
    pub fn json_equals(&self, bytes: &[u8]) -> bool {
        let mut cmp = SameAs {
            rest: bytes,
            same: true,
        };
        self.write_json(&mut cmp).is_ok() && cmp.same && cmp.rest.is_empty()
    }

    /// Whether [`to_json`](PrettyDoc::to_json) would give a document of `len` bytes whose
    /// SHA-256 is `sha256`: the record on disk as the host facts keep it (its bytes are not
    /// held through planning: 28,000 steps make 3.4 MB). Hashed as it is made.
    pub fn json_digest_is(&self, len: u64, sha256: &[u8; 32]) -> bool {
        let mut h = Hashing {
            len: 0,
            sha: Sha256::new(),
        };
        self.write_json(&mut h).is_ok() && h.len == len && h.sha.finalize()[..] == sha256[..]
    }

    /// The record as an owned [`Record`] (what the next run reads back).
    pub fn to_record(&self) -> Record {
        Record {
            instance_id: self.head.instance_id.clone(),
            format: self.head.format.clone(),
            version: self.head.version.clone(),
            drive_sha256: self.head.drive_sha256.clone(),
            steps: self
                .steps
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl PrettyDoc for RecordView<'_> {
    fn json_into(&self, j: &mut PrettyJson<'_>) {
        self.head.fields_with(self.steps.iter().copied(), j)
    }

    fn json_size(&self) -> usize {
        256 + self.steps.len() * 112
    }
}

impl crate::model::bytes::WriteOut for RecordView<'_> {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        self.write_json(out)
    }
}

/// A sink that hashes what is written and counts its bytes, keeping none.
struct Hashing {
    len: u64,
    sha: Sha256,
}

impl io::Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.len += buf.len() as u64;
        self.sha.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that compares what is written with `rest` (the bytes already there) instead of
/// keeping it.
struct SameAs<'b> {
    rest: &'b [u8],
    same: bool,
}

impl io::Write for SameAs<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(r) if self.same => self.rest = r,
            _ => self.same = false,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends `s` JSON-escaped (without the quotes) as `serde_json` escapes it: `"` and `\\`,
/// the control characters as `\b \f \n \r \t` or `\u00xx`, everything else (DEL and
/// non-ASCII included) as it is. Eight bytes at a time while none needs an escape.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `w` is zero (exact as a yes/no).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let b = s.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < b.len() {
        if let Some(chunk) = b.get(i..i + 8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            let w = u64::from_le_bytes(a);
            // A byte below 0x20 (bytes of 0x80 and above never match), `"` or `\\`.
            let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
            if !control && !has_zero(w ^ (ONES * 0x22)) && !has_zero(w ^ (ONES * 0x5c)) {
                i += 8;
                continue;
            }
        }
        let c = b[i];
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&b[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
}

/// Hands `v`'s JSON text, as `serde_json::to_writer` writes it (compact), to `sink` in pieces
/// of up to 8 KiB: for hashing a decoded document's text without holding it. Recursive like
/// `serde_json`'s writer; the sources' JSON reader bounds the nesting.
pub(crate) fn compact_json(v: &serde_json::Value, sink: &mut dyn FnMut(&[u8])) {
    fn go(v: &serde_json::Value, out: &mut Vec<u8>, sink: &mut dyn FnMut(&[u8])) {
        use serde_json::Value;
        if out.len() >= 8192 {
            sink(out);
            out.clear();
        }
        match v {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            // Numbers as serde_json writes them (integers and floats alike): never fails.
            Value::Number(n) => {
                let _ = serde_json::to_writer(&mut *out, n);
            }
            Value::String(s) => {
                out.push(b'"');
                escape_into(out, s);
                out.push(b'"');
            }
            Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    go(x, out, sink);
                }
                out.push(b']');
            }
            Value::Object(o) => {
                out.push(b'{');
                for (i, (k, x)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    escape_into(out, k);
                    out.extend_from_slice(b"\":");
                    go(x, out, sink);
                }
                out.push(b'}');
            }
        }
    }
    let mut out = Vec::with_capacity(8192 + 256);
    go(v, &mut out, sink);
    if !out.is_empty() {
        sink(&out);
    }
}

/// A JSON document written as `serde_json`'s pretty printer writes it (two-space indent,
/// `"key": value`, `[]`/`{}` when empty, the same string escapes), for primer's own state
/// documents, which a run writes every time: the generic serializer, built for size, spends
/// ~36 instructions per string byte; this one a few. Only what those documents hold: objects,
/// arrays, strings, unsigned numbers and `null`. The caller keeps the nesting balanced.
///
/// Either into one buffer (`with_capacity`, `finish`) or streamed (`streaming`, `finish_to`):
/// the buffer is then handed to the sink in [`STREAM_CHUNK`] pieces, so a document with
/// thousands of steps is never held whole (issue 15: 2,000 `write_files` entries).
pub(crate) struct PrettyJson<'a> {
    out: Vec<u8>,
    depth: usize,
    /// The innermost open object or array has no element yet.
    empty: bool,
    /// Where a streamed document goes, and the first error it gave (later writes are dropped).
    sink: Option<&'a mut dyn io::Write>,
    error: Option<io::Error>,
}

/// How much of a streamed document is buffered before it is written (one `write` each).
const STREAM_CHUNK: usize = 16 << 10;

impl<'a> PrettyJson<'a> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        PrettyJson {
            out: Vec::with_capacity(n),
            depth: 0,
            empty: false,
            sink: None,
            error: None,
        }
    }

    /// A document written to `sink` as it is built, [`STREAM_CHUNK`] bytes at a time.
    pub(crate) fn streaming(sink: &'a mut dyn io::Write) -> Self {
        PrettyJson {
            out: Vec::with_capacity(STREAM_CHUNK + 512),
            depth: 0,
            empty: false,
            sink: Some(sink),
            error: None,
        }
    }

    /// As [`streaming`](PrettyJson::streaming), for a document of about `size` bytes: its
    /// buffer is first sized for it (at most a chunk), and grows if it was a low guess.
    pub(crate) fn streaming_sized(sink: &'a mut dyn io::Write, size: usize) -> Self {
        PrettyJson {
            out: Vec::with_capacity(size.min(STREAM_CHUNK) + 512),
            ..PrettyJson::streaming_empty(sink)
        }
    }

    fn streaming_empty(sink: &'a mut dyn io::Write) -> Self {
        PrettyJson {
            out: Vec::new(),
            depth: 0,
            empty: false,
            sink: Some(sink),
            error: None,
        }
    }

    /// Hands what is buffered to the sink once it holds a chunk (streamed documents only):
    /// called between elements, so a chunk may run over by one element.
    pub(crate) fn spill(&mut self) {
        if self.out.len() >= STREAM_CHUNK {
            self.drain();
        }
    }

    fn drain(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            if self.error.is_none() {
                if let Err(e) = sink.write_all(&self.out) {
                    self.error = Some(e);
                }
            }
            self.out.clear();
        }
    }

    /// A streamed document's end: its final newline written, or the sink's first error.
    pub(crate) fn finish_to(mut self) -> io::Result<()> {
        self.out.push(b'\n');
        self.drain();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Opens an object (`{`) or an array (`[`).
    pub(crate) fn open(&mut self, b: u8) {
        self.out.push(b);
        self.depth += 1;
        self.empty = true;
    }

    /// Closes the innermost object (`}`) or array (`]`).
    pub(crate) fn close(&mut self, b: u8) {
        self.depth = self.depth.saturating_sub(1);
        if !self.empty {
            self.newline();
        }
        self.out.push(b);
        self.empty = false;
    }

    /// Starts the next element of the innermost array.
    pub(crate) fn item(&mut self) {
        // A streamed document never held whole, whatever writes it (a value serialised
        // through `serde`, see [`value`](PrettyJson::value), does not call `spill`).
        if self.sink.is_some() && self.out.len() >= STREAM_CHUNK {
            self.drain();
        }
        if !self.empty {
            self.out.push(b',');
        }
        self.newline();
        self.empty = false;
    }

    /// Starts the next member of the innermost object: its key, then the value's place.
    pub(crate) fn key(&mut self, k: &str) {
        self.item();
        self.string(k);
        self.out.extend_from_slice(b": ");
    }

    fn newline(&mut self) {
        const SPACES: &[u8; 32] = b"                                ";
        self.out.push(b'\n');
        let mut n = self.depth * 2;
        while n > 0 {
            let k = n.min(SPACES.len());
            self.out.extend_from_slice(&SPACES[..k]);
            n -= k;
        }
    }

    pub(crate) fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    pub(crate) fn number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            // A digit: always below 10.
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[i..]);
    }

    pub(crate) fn opt_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.null(),
        }
    }

    /// A JSON string: `"` and `\\` escaped, the control characters as `\b \f \n \r \t` or
    /// `\u00xx`, everything else (DEL and non-ASCII included) as it is, as `serde_json` does.
    pub(crate) fn string(&mut self, s: &str) {
        self.out.reserve(s.len() + 2);
        self.out.push(b'"');
        escape_into(&mut self.out, s);
        self.out.push(b'"');
    }

    /// `v` written as `serde_json`'s pretty printer writes it ([`pretty_json`]); `false` when
    /// a part of it is not one this writer takes (the caller then uses `serde_json`).
    pub(crate) fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> bool {
        v.serialize(PrettySer { j: self }).is_ok()
    }

    /// The document and its final newline.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.push(b'\n');
        self.out
    }
}

/// `v` as `serde_json::to_vec_pretty(v)` writes it, and a newline, byte for byte, through
/// [`PrettyJson`] (the generic pretty printer spent ~330,000 instructions on a first run's
/// `instance.json`, ~36 per string byte). What [`PrettySer`] does not write as `serde_json`
/// does (floats, non-string map keys other than integers, raw bytes, 128-bit integers) it
/// refuses, and the document is then made by `serde_json` itself: the same bytes either way.
pub(crate) fn pretty_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    pretty_json_fast(v).unwrap_or_else(|| {
        let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
        out.push(b'\n');
        out
    })
}

/// [`pretty_json`] when [`PrettySer`] writes all of `v` itself; `None` when it refused a part.
pub(crate) fn pretty_json_fast<T: Serialize + ?Sized>(v: &T) -> Option<Vec<u8>> {
    let mut j = PrettyJson::with_capacity(4096);
    v.serialize(PrettySer { j: &mut j }).ok()?;
    // Held by the plan until the run ends: its slack given back (in place, no copy).
    let mut out = j.finish();
    out.shrink_to_fit();
    Some(out)
}

/// Why [`PrettySer`] refused a value (the caller falls back to `serde_json`); never shown.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct PrettyRefused(String);

impl serde::ser::Error for PrettyRefused {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        PrettyRefused(msg.to_string())
    }
}

fn refused<T>(what: &str) -> Result<T, PrettyRefused> {
    Err(PrettyRefused(what.to_string()))
}

/// serde's data model written as `serde_json`'s pretty printer writes it, into a
/// [`PrettyJson`] (see [`pretty_json`]). The nesting follows the value's own (primer's types
/// and the drive's documents, whose depth the sources' JSON reader bounds).
pub(crate) struct PrettySer<'j, 'a> {
    j: &'j mut PrettyJson<'a>,
}

impl PrettyJson<'_> {
    fn signed(&mut self, n: i64) {
        if n < 0 {
            self.out.push(b'-');
        }
        self.number(n.unsigned_abs());
    }

    fn boolean(&mut self, b: bool) {
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
    }
}

/// An open object or array of [`PrettySer`]; `variant`: it sits inside a `{"Variant": ...}`
/// object that closes with it.
pub(crate) struct PrettyCompound<'j, 'a> {
    j: &'j mut PrettyJson<'a>,
    close: u8,
    variant: bool,
}

impl<'j, 'a> PrettyCompound<'j, 'a> {
    fn end(self) -> Result<(), PrettyRefused> {
        self.j.close(self.close);
        if self.variant {
            self.j.close(b'}');
        }
        Ok(())
    }

    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PrettyRefused> {
        self.j.item();
        v.serialize(PrettySer { j: &mut *self.j })
    }

    fn field<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) -> Result<(), PrettyRefused> {
        self.j.key(k);
        v.serialize(PrettySer { j: &mut *self.j })
    }
}

impl<'j, 'a> serde::Serializer for PrettySer<'j, 'a> {
    type Ok = ();
    type Error = PrettyRefused;
    type SerializeSeq = PrettyCompound<'j, 'a>;
    type SerializeTuple = PrettyCompound<'j, 'a>;
    type SerializeTupleStruct = PrettyCompound<'j, 'a>;
    type SerializeTupleVariant = PrettyCompound<'j, 'a>;
    type SerializeMap = PrettyCompound<'j, 'a>;
    type SerializeStruct = PrettyCompound<'j, 'a>;
    type SerializeStructVariant = PrettyCompound<'j, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), PrettyRefused> {
        self.j.boolean(v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), PrettyRefused> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), PrettyRefused> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), PrettyRefused> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), PrettyRefused> {
        self.j.signed(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), PrettyRefused> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), PrettyRefused> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), PrettyRefused> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), PrettyRefused> {
        self.j.number(v);
        Ok(())
    }
    // Floats: serde_json's shortest round-trip form (ryu) is not reproduced here.
    fn serialize_f32(self, _v: f32) -> Result<(), PrettyRefused> {
        refused("float")
    }
    fn serialize_f64(self, _v: f64) -> Result<(), PrettyRefused> {
        refused("float")
    }
    fn serialize_char(self, v: char) -> Result<(), PrettyRefused> {
        self.j.string(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), PrettyRefused> {
        self.j.string(v);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), PrettyRefused> {
        refused("bytes")
    }
    fn serialize_none(self) -> Result<(), PrettyRefused> {
        self.j.null();
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), PrettyRefused> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), PrettyRefused> {
        self.j.null();
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), PrettyRefused> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), PrettyRefused> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<(), PrettyRefused> {
        // serde_json's private tokens (raw values, arbitrary-precision numbers): its own.
        if name.starts_with("$serde_json") {
            return refused(name);
        }
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), PrettyRefused> {
        self.j.open(b'{');
        self.j.key(variant);
        v.serialize(PrettySer { j: &mut *self.j })?;
        self.j.close(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<PrettyCompound<'j, 'a>, PrettyRefused> {
        self.j.open(b'[');
        Ok(PrettyCompound {
            j: self.j,
            close: b']',
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<PrettyCompound<'j, 'a>, PrettyRefused> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<PrettyCompound<'j, 'a>, PrettyRefused> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<PrettyCompound<'j, 'a>, PrettyRefused> {
        self.j.open(b'{');
        self.j.key(variant);
        self.j.open(b'[');
        Ok(PrettyCompound {
            j: self.j,
            close: b']',
            variant: true,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<PrettyCompound<'j, 'a>, PrettyRefused> {
        self.j.open(b'{');
        Ok(PrettyCompound {
            j: self.j,
            close: b'}',
            variant: false,
        })
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<PrettyCompound<'j, 'a>, PrettyRefused> {
        if name.starts_with("$serde_json") {
            return refused(name);
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<PrettyCompound<'j, 'a>, PrettyRefused> {
        self.j.open(b'{');
        self.j.key(variant);
        self.j.open(b'{');
        Ok(PrettyCompound {
            j: self.j,
            close: b'}',
            variant: true,
        })
    }
}

impl serde::ser::SerializeSeq for PrettyCompound<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PrettyRefused> {
        self.element(v)
    }
    fn end(self) -> Result<(), PrettyRefused> {
        PrettyCompound::end(self)
    }
}

impl serde::ser::SerializeTuple for PrettyCompound<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PrettyRefused> {
        self.element(v)
    }
    fn end(self) -> Result<(), PrettyRefused> {
        PrettyCompound::end(self)
    }
}

impl serde::ser::SerializeTupleStruct for PrettyCompound<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PrettyRefused> {
        self.element(v)
    }
    fn end(self) -> Result<(), PrettyRefused> {
        PrettyCompound::end(self)
    }
}

impl serde::ser::SerializeTupleVariant for PrettyCompound<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PrettyRefused> {
        self.element(v)
    }
    fn end(self) -> Result<(), PrettyRefused> {
        PrettyCompound::end(self)
    }
}

impl serde::ser::SerializeMap for PrettyCompound<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), PrettyRefused> {
        k.serialize(PrettyKey { j: &mut *self.j })
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PrettyRefused> {
        v.serialize(PrettySer { j: &mut *self.j })
    }
    fn end(self) -> Result<(), PrettyRefused> {
        PrettyCompound::end(self)
    }
}

impl serde::ser::SerializeStruct for PrettyCompound<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), PrettyRefused> {
        self.field(k, v)
    }
    fn end(self) -> Result<(), PrettyRefused> {
        PrettyCompound::end(self)
    }
}

impl serde::ser::SerializeStructVariant for PrettyCompound<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), PrettyRefused> {
        self.field(k, v)
    }
    fn end(self) -> Result<(), PrettyRefused> {
        PrettyCompound::end(self)
    }
}

/// A map key, as `serde_json` writes one: a string (a unit variant's name, a newtype's
/// string) or an integer in quotes; anything else refused (the `serde_json` fallback decides).
struct PrettyKey<'j, 'a> {
    j: &'j mut PrettyJson<'a>,
}

impl PrettyKey<'_, '_> {
    fn quoted(self, n: i128) -> Result<(), PrettyRefused> {
        self.j.item();
        self.j.out.push(b'"');
        if n < 0 {
            self.j.out.push(b'-');
        }
        match u64::try_from(n.unsigned_abs()) {
            Ok(u) => self.j.number(u),
            Err(_) => return refused("128-bit key"),
        }
        self.j.out.extend_from_slice(b"\": ");
        Ok(())
    }
}

impl serde::Serializer for PrettyKey<'_, '_> {
    type Ok = ();
    type Error = PrettyRefused;
    type SerializeSeq = serde::ser::Impossible<(), PrettyRefused>;
    type SerializeTuple = serde::ser::Impossible<(), PrettyRefused>;
    type SerializeTupleStruct = serde::ser::Impossible<(), PrettyRefused>;
    type SerializeTupleVariant = serde::ser::Impossible<(), PrettyRefused>;
    type SerializeMap = serde::ser::Impossible<(), PrettyRefused>;
    type SerializeStruct = serde::ser::Impossible<(), PrettyRefused>;
    type SerializeStructVariant = serde::ser::Impossible<(), PrettyRefused>;

    fn serialize_str(self, v: &str) -> Result<(), PrettyRefused> {
        self.j.key(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), PrettyRefused> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), PrettyRefused> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<(), PrettyRefused> {
        if name.starts_with("$serde_json") {
            return refused(name);
        }
        v.serialize(self)
    }
    fn serialize_i8(self, v: i8) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), PrettyRefused> {
        self.quoted(v.into())
    }
    fn serialize_bool(self, _v: bool) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_f32(self, _v: f32) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_f64(self, _v: f64) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_none(self) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_unit(self) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _v: &T,
    ) -> Result<(), PrettyRefused> {
        refused("key")
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, PrettyRefused> {
        refused("key")
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, PrettyRefused> {
        refused("key")
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, PrettyRefused> {
        refused("key")
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, PrettyRefused> {
        refused("key")
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, PrettyRefused> {
        refused("key")
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, PrettyRefused> {
        refused("key")
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, PrettyRefused> {
        refused("key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A record of thousands of steps streams (many chunks) as it buffers, and compares
    /// equal only to exactly its bytes.
    #[test]
    fn record_streams_and_compares() {
        let r = Record {
            instance_id: "i-1".into(),
            steps: (0..3000)
                .map(|i| (format!("write-file:/srv/many/f{i:05}"), "ab".repeat(32)))
                .collect(),
            ..Record::default()
        };
        let want = r.to_json();
        let mut streamed = Vec::new();
        r.write_json(&mut streamed).unwrap();
        assert_eq!(streamed, want);
        assert!(r.json_equals(&want));
        assert!(!r.json_equals(&want[..want.len() - 1]));
        let mut longer = want.clone();
        longer.push(b'\n');
        assert!(!r.json_equals(&longer));
        let mut other = want.clone();
        other[want.len() / 2] ^= 1;
        assert!(!r.json_equals(&other));
        assert!(!r.json_equals(b""));
    }

    /// The record compared by length and digest (as the host facts keep the previous one)
    /// gives the answer the byte comparison gives: equal to exactly its own document.
    #[test]
    fn record_view_compares_by_digest_as_by_bytes() {
        let r = Record {
            instance_id: "i-1".into(),
            steps: (0..3000)
                .map(|i| (format!("write-file:/srv/many/f{i:05}"), "ab".repeat(32)))
                .chain([("password:root".to_string(), "$6$salt$hash".to_string())])
                .collect(),
            ..Record::default()
        };
        let inputs: Vec<(&str, Input)> = r
            .steps
            .iter()
            .map(|(k, v)| (k, Input::from(v.to_string())))
            .collect();
        let view = RecordView {
            head: &r,
            steps: inputs.iter().map(|(k, v)| (*k, v)).collect(),
        };
        let want = r.to_json();
        let digest = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        let mut other = want.clone();
        other[want.len() / 2] ^= 1;
        for (bytes, same) in [
            (&want[..], true),
            (&want[..want.len() - 1], false),
            (&other[..], false),
            (&b""[..], false),
        ] {
            assert_eq!(view.json_equals(bytes), same);
            assert_eq!(
                view.json_digest_is(bytes.len() as u64, &digest(bytes)),
                same
            );
        }
        // The right digest with a wrong length (or the reverse) is not the document.
        assert!(!view.json_digest_is(want.len() as u64 + 1, &digest(&want)));
        assert!(!view.json_digest_is(want.len() as u64, &digest(&other)));
    }

    #[test]
    fn hex_digests() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let d = Sha256::digest(b"abc");
        let formatted: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sha256_hex(b"abc"), formatted);
    }

    /// The record's steps read as a `BTreeMap<String, String>` read them: the same entries
    /// and order, of a repeated id the last input, escapes decoded, and the same documents
    /// refused (a value not a string, non-UTF-8, cut short, not a map).
    #[test]
    fn steps_read_as_a_map_did() {
        let docs: [&[u8]; 12] = [
            br#"{"b":"2","a":"1","c":"3"}"#,
            br#"{"a":"1","b":"2","a":"3","b":"","a":"4"}"#,
            br#"{"x\"y\u00e9":"\n\u2028","":""}"#,
            br#"{}"#,
            br#"{"a":1}"#,
            br#"{"a":null}"#,
            br#"{"a":["b"]}"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":"1""#,
            br#"["a","b"]"#,
            br#""a""#,
            br#"{"a":"1",}"#,
        ];
        for doc in docs {
            let want = serde_json::from_slice::<BTreeMap<String, String>>(doc).ok();
            let got = serde_json::from_slice::<Steps>(doc).ok();
            assert_eq!(
                got.as_ref().map(|s| s
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()),
                want.as_ref()
                    .map(|m| m.clone().into_iter().collect::<Vec<_>>()),
                "{}",
                String::from_utf8_lossy(doc)
            );
            if let (Some(s), Some(m)) = (&got, &want) {
                for (k, v) in m {
                    assert_eq!(s.get(k), Some(v.as_str()));
                }
                assert_eq!(s.get("zz-missing"), None);
                // Written back as the map would be.
                assert_eq!(
                    serde_json::to_string(s).unwrap(),
                    serde_json::to_string(m).unwrap()
                );
            }
        }
    }

    /// A record that repeats a few ids 200,000 times (a hostile edit of the file) is read with
    /// an index of about its distinct ids, never one entry per repeat, and reads as the map did.
    #[test]
    fn repeated_ids_never_grow_the_index_past_a_settle() {
        let mut doc = String::from("{");
        for i in 0..200_000usize {
            doc.push_str(&format!("\"{}\":\"v{i}\",", ["", "a", "b"][i % 3]));
        }
        doc.pop();
        doc.push('}');
        PEAK_INDEX.with(|p| p.set(0));
        let s: Steps = serde_json::from_str(&doc).unwrap();
        let peak = PEAK_INDEX.with(|p| p.get());
        assert!(peak <= SETTLE_EVERY + 3, "index reached {peak} entries");
        let m: BTreeMap<String, String> = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>()
        );
        assert_eq!(s.get("a"), Some("v199999"));
    }

    /// 20,000 steps out of order, half of them repeated: ordered once (a sort per step would
    /// take minutes here), the last input of each id kept, each found.
    #[test]
    fn many_steps_unordered_and_repeated() {
        let n = 20_000usize;
        let mut doc = String::from("{");
        for i in 0..n {
            // A permutation of 0..n (7919 is prime to n), each id then again for odd i.
            let k = (i * 7919) % n;
            doc.push_str(&format!("\"s{k:05}\":\"first{k}\","));
            if k % 2 == 1 {
                doc.push_str(&format!("\"s{k:05}\":\"last{k}\","));
            }
        }
        doc.pop();
        doc.push('}');
        let s: Steps = serde_json::from_str(&doc).unwrap();
        assert_eq!(s.len(), n);
        for k in 0..n {
            let want = if k % 2 == 1 { "last" } else { "first" };
            assert_eq!(
                s.get(&format!("s{k:05}")),
                Some(format!("{want}{k}").as_str())
            );
        }
        assert!(s.keys().zip(s.keys().skip(1)).all(|(a, b)| a < b));
        // A record in order (as primer writes it) is taken as it is, not sorted again.
        let ordered: Steps = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(ordered, s);
    }

    /// The hand-written record is the one `serde_json` writes, escapes and all.
    #[test]
    fn record_json_is_serde_jsons() {
        let odd = "q\"b\\n\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é\u{2028}😀 /";
        let mut steps = Steps::default();
        for r in [Record::default(), {
            steps.insert("hostname".to_string(), "ab".repeat(32));
            steps.insert(odd.to_string(), odd.to_string());
            steps.insert(String::new(), String::new());
            Record {
                instance_id: odd.into(),
                format: "openstack".into(),
                version: "latest".into(),
                drive_sha256: "00ff".into(),
                steps,
            }
        }] {
            let mut want = serde_json::to_vec_pretty(&r).unwrap();
            want.push(b'\n');
            assert_eq!(
                String::from_utf8(r.to_json()).unwrap(),
                String::from_utf8(want.clone()).unwrap()
            );
            let mut streamed = Vec::new();
            r.write_json(&mut streamed).unwrap();
            assert_eq!(streamed, want);
            assert!(r.json_equals(&want));
        }
        let mut j = PrettyJson::with_capacity(0);
        j.open(b'[');
        for n in [0, 7, 10, 99, 1234567890, u64::MAX] {
            j.item();
            j.number(n);
        }
        j.item();
        j.open(b'[');
        j.close(b']');
        j.item();
        j.opt_string(None);
        j.close(b']');
        let mut want = serde_json::to_vec_pretty(&serde_json::json!([
            0,
            7,
            10,
            99,
            1234567890u64,
            u64::MAX,
            [],
            null
        ]))
        .unwrap();
        want.push(b'\n');
        assert_eq!(j.finish(), want);
    }

    /// A value written through `serde` into a streamed document reaches the sink in chunks
    /// (`instance.json`'s counting pass): never held whole, the same bytes as `serde_json`'s.
    #[test]
    fn streamed_value_is_never_held_whole() {
        struct Sink {
            out: Vec<u8>,
            largest: usize,
        }
        impl io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.largest = self.largest.max(b.len());
                self.out.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let v: Vec<serde_json::Value> = (0..50_000)
            .map(|k| serde_json::json!({"id": format!("l{k}"), "n": k}))
            .collect();
        let mut sink = Sink {
            out: Vec::new(),
            largest: 0,
        };
        let mut j = PrettyJson::streaming(&mut sink);
        assert!(j.value(&v));
        j.finish_to().unwrap();
        let mut want = serde_json::to_vec_pretty(&v).unwrap();
        want.push(b'\n');
        assert!(sink.out == want);
        assert!(want.len() > 2 << 20);
        assert!(sink.largest < STREAM_CHUNK + 1024, "{}", sink.largest);
    }

    /// Drive values at their extremes through the fast serializer: a 1 MiB string of every
    /// control character and escape, a map with 100,000 keys, nesting 64 deep (the readers'
    /// cap), a key holding `..` and `/` — byte for byte what serde_json writes, without falling
    /// back.
    #[test]
    fn pretty_json_is_serde_jsons_for_huge_and_deep_values() {
        let controls: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\\u{7f}\u{2028}".chars())
            .collect();
        let huge = controls.repeat((1 << 20) / controls.len());
        let mut map = serde_json::Map::new();
        for i in 0..100_000 {
            map.insert(format!("k{i}"), serde_json::Value::from(i));
        }
        map.insert("../../etc/passwd".into(), serde_json::Value::String(huge));
        let mut deep = serde_json::Value::Object(map);
        for i in 0..64 {
            deep = if i % 2 == 0 {
                serde_json::json!([deep])
            } else {
                serde_json::json!({ "a\nb": deep })
            };
        }
        let fast =
            pretty_json_fast(&deep).expect("no fallback for strings, integers, maps, arrays");
        // A document ends with a newline (`PrettyJson::finish`); serde_json's does not.
        let mut want = serde_json::to_vec_pretty(&deep).unwrap();
        want.push(b'\n');
        assert_eq!(fast.len(), want.len());
        assert!(fast == want, "differs from serde_json's bytes");
    }

    /// The serializer gives `serde_json::to_vec_pretty`'s bytes for every shape of serde's
    /// data model primer's documents use, escapes and empty containers included, without
    /// falling back; what it does not write itself (floats, bool keys) still comes out as
    /// `serde_json`'s.
    #[test]
    fn pretty_json_is_serde_jsons() {
        use serde::Serialize;
        let odd = "q\"b\\n\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é\u{2028}😀 /";
        #[derive(Serialize)]
        struct Unit;
        #[derive(Serialize)]
        struct Newtype<'a>(&'a str);
        #[derive(Serialize)]
        struct Tuple(u8, i64, ());
        #[derive(Serialize)]
        enum Plain {
            A,
            B(u32),
            C(i8, String),
            D { x: Option<u16>, y: Vec<u8> },
            E(),
            F {},
        }
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        enum Tagged {
            One { a: String },
            Two(BTreeMap<String, u64>),
            Three,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Untagged {
            S(String),
            N(i32),
            L(Vec<Untagged>),
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            s: &'a str,
            c: char,
            t: bool,
            f: bool,
            none: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            unit: (),
            unit_struct: Unit,
            newtype: Newtype<'a>,
            tuple: Tuple,
            min: i64,
            max: u64,
            plain: Vec<Plain>,
            tagged: Vec<Tagged>,
            untagged: Vec<Untagged>,
            int_keys: BTreeMap<i32, &'a str>,
            variant_keys: BTreeMap<u8, Vec<()>>,
            empty_map: BTreeMap<String, String>,
            empty_seq: Vec<u8>,
            nested_empty: Vec<Vec<BTreeMap<String, u8>>>,
            value: serde_json::Value,
            #[serde(flatten)]
            flat: BTreeMap<String, Option<i16>>,
        }
        let doc = Doc {
            s: odd,
            c: '"',
            t: true,
            f: false,
            none: None,
            skipped: None,
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(odd),
            tuple: Tuple(255, -1, ()),
            min: i64::MIN,
            max: u64::MAX,
            plain: vec![
                Plain::A,
                Plain::B(7),
                Plain::C(-128, odd.into()),
                Plain::D {
                    x: Some(0),
                    y: vec![],
                },
                Plain::D {
                    x: None,
                    y: vec![1, 2],
                },
                Plain::E(),
                Plain::F {},
            ],
            tagged: vec![
                Tagged::One { a: odd.into() },
                Tagged::Two(BTreeMap::from([(odd.to_string(), 3)])),
                Tagged::Two(BTreeMap::new()),
                Tagged::Three,
            ],
            untagged: vec![
                Untagged::S(String::new()),
                Untagged::N(-5),
                Untagged::L(vec![]),
                Untagged::L(vec![
                    Untagged::N(0),
                    Untagged::L(vec![Untagged::S("x".into())]),
                ]),
            ],
            int_keys: BTreeMap::from([(-3, "a"), (0, ""), (i32::MAX, odd)]),
            variant_keys: BTreeMap::from([(1, vec![]), (2, vec![(), ()])]),
            empty_map: BTreeMap::new(),
            empty_seq: Vec::new(),
            nested_empty: vec![vec![], vec![BTreeMap::new()]],
            value: serde_json::json!({odd: [odd, 1, -2, true, false, null, [], {}],
                "u": u64::MAX, "i": i64::MIN, "nested": {"a": {"b": [[1], [2, 3]]}}}),
            flat: BTreeMap::from([("flat".to_string(), Some(-1)), (odd.to_string(), None)]),
        };
        let want = |v: &dyn erased::Ser| v.serde_pretty();
        for v in [
            &doc as &dyn erased::Ser,
            &serde_json::json!({}),
            &serde_json::json!([]),
            &serde_json::json!(null),
            &serde_json::json!("x"),
            &Plain::A,
            &Plain::F {},
        ] {
            let mut j = PrettyJson::with_capacity(0);
            assert!(v.fast(&mut j), "no fallback");
            let got = j.finish();
            assert_eq!(
                String::from_utf8(got.clone()).unwrap(),
                String::from_utf8(want(v)).unwrap()
            );
            assert_eq!(got, v.pretty());
        }
        // The pin record (strings and a unit variant), whole, as serde_json writes it.
        for guid in [None, Some(odd.to_string())] {
            let pin = crate::probe::trust::Pin {
                kind: crate::probe::DriveKind::CloudStack,
                device: "sr0".into(),
                partition_guid: guid.clone(),
                fstype: "iso9660".into(),
                label: guid,
                instance_id: odd.into(),
            };
            assert_eq!(pretty_json_fast(&pin), Some(want(&pin)));
        }
        // Refused here, written by serde_json: the same bytes.
        for v in [
            &serde_json::json!({"f": 1.5, "g": [1e300, -0.0]}) as &dyn erased::Ser,
            &BTreeMap::from([(true, 1)]),
        ] {
            let mut j = PrettyJson::with_capacity(0);
            assert!(!v.fast(&mut j));
            assert_eq!(v.pretty(), want(v));
        }
    }

    /// The test's view of a value of any type: serde_json's bytes, ours, and whether ours
    /// needed no fallback.
    mod erased {
        use super::super::{pretty_json, PrettyJson, PrettySer};
        pub trait Ser {
            fn serde_pretty(&self) -> Vec<u8>;
            fn pretty(&self) -> Vec<u8>;
            fn fast(&self, j: &mut PrettyJson<'_>) -> bool;
        }
        impl<T: serde::Serialize> Ser for T {
            fn serde_pretty(&self) -> Vec<u8> {
                let mut v = serde_json::to_vec_pretty(self).unwrap();
                v.push(b'\n');
                v
            }
            fn pretty(&self) -> Vec<u8> {
                pretty_json(self)
            }
            fn fast(&self, j: &mut PrettyJson<'_>) -> bool {
                self.serialize(PrettySer { j }).is_ok()
            }
        }
    }

    /// The compact writer gives `serde_json`'s text, numbers and escapes included, whatever
    /// the pieces.
    #[test]
    fn compact_json_is_serde_jsons() {
        let odd = "q\"b\\n\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é\u{2028}😀 /0123456789abcdef\"";
        let big: Vec<serde_json::Value> = (0..2000)
            .map(|i| serde_json::json!({"i": i, "s": odd, "f": f64::from(i) / 7.0}))
            .collect();
        for v in [
            serde_json::json!(null),
            serde_json::json!({}),
            serde_json::json!([]),
            serde_json::json!({odd: [odd, 1, -2, 1.5, 1e300, -0.0, true, false, null, [], {}],
                "u": u64::MAX, "i": i64::MIN, "nested": {"a": {"b": [[1], [2, 3]]}}}),
            serde_json::Value::Array(big),
        ] {
            let mut got = Vec::new();
            let mut pieces = 0;
            compact_json(&v, &mut |b| {
                pieces += 1;
                got.extend_from_slice(b)
            });
            assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
            assert!(pieces >= 1);
        }
        for n in 0..40 {
            for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '\u{7f}', 'é'] {
                let s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..n]
                    .chars()
                    .chain(std::iter::once(c))
                    .chain("xyz".chars())
                    .collect();
                let mut got = Vec::new();
                escape_into(&mut got, &s);
                let want = serde_json::to_string(&s).unwrap();
                assert_eq!(
                    format!("\"{}\"", String::from_utf8(got).unwrap()),
                    want,
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn instance_ids() {
        assert!(invalid_instance_id("83679162-1378-4288-a2d4-70e13ec132aa").is_none());
        assert!(invalid_instance_id("i-0000002a").is_none());
        assert!(invalid_instance_id("../etc").is_some());
        assert!(invalid_instance_id("a/b").is_some());
        assert!(invalid_instance_id("..").is_some());
        assert!(invalid_instance_id("").is_some());
    }

    #[test]
    fn layout() {
        let base = if cfg!(windows) {
            "ProgramData/primer"
        } else {
            "var/lib/primer"
        };
        assert_eq!(STATE_DIR, base);
        assert_eq!(instance_dir("i-1"), format!("{base}/instance/i-1"));
        assert_eq!(drive_copy_dir("i-1"), format!("{base}/instance/i-1/drive"));
        assert_eq!(status_path(), format!("{base}/status.json"));
        assert_eq!(KEY_PATH, format!("{base}/secret"));
        assert_eq!(state_path!("lock"), format!("{base}/lock"));
    }

    /// Linux's layout is the one every Linux image and tool knows: byte for byte.
    #[cfg(not(windows))]
    #[test]
    fn linux_state_stays_under_var_lib_primer() {
        assert_eq!(STATE_DIR, "var/lib/primer");
        assert_eq!(KEY_PATH, "var/lib/primer/secret");
        assert_eq!(status_path(), "var/lib/primer/status.json");
        assert_eq!(pin_path(), "var/lib/primer/pinned.json");
    }
}
