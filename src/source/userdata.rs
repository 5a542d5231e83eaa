//! User data and vendor data (FORMATS.md §5) into the typed [`UserData`]: scripts, the
//! cloud-config subset primer understands, boothooks. Pure: no I/O, nothing is fetched (an
//! `#include` URL is reported, never opened), no clock. Every size, depth and count is bounded;
//! hostile bytes give warnings, never a panic or an unbounded allocation.
//!
//! Pipeline for each blob (user data, then each vendor part, all through the same code):
//! 1. gzip (magic `1f 8b`): decompressed with a size cap; a bomb is a warning naming the file;
//! 2. MIME (`Content-Type`/`MIME-Version` header): one multipart level split at a time (explicit
//!    stack, depth and part-count limits); a part's `Content-Type` decides what it is, with
//!    `text/plain`, `text/x-not-multipart` or no type falling back to the starts-with rules (as
//!    cloud-init's `find_ctype`, which `text/x-shellscript` also goes through); a part with a gzip
//!    type or gzip magic is decompressed and then goes by the starts-with rules;
//! 3. starts-with rules (case-insensitive, after leading whitespace, longest prefix first):
//!    `#!` script, `#cloud-config` cloud-config, `#cloud-boothook` boothook; `#include`,
//!    `#include-once`, `#part-handler`, `## template: jinja`, `#cloud-config-archive`,
//!    `#cloud-config-jsonp`, `#upstart-job` and the Windows forms are unsupported (a warning
//!    naming the kind, the part ignored).
//!
//! Merge rules:
//! - cloud-config parts of one origin merge in document order: a top-level key a later part
//!   gives replaces the earlier value whole (lists are replaced, not appended), as cloud-init's
//!   default `dict(replace)+list()+str()` does; `merge_how` is not honoured (reported as an
//!   unsupported key). Several vendor files merge the same way, in the order given (so OpenStack
//!   `vendor_data2.json` wins over `vendor_data.json`, as in cloud-init).
//! - user data over vendor data, key by key: a key user data gives wins, vendor keys absent from
//!   user data still apply; `chpasswd` merges one level deeper (cloud-init's recursive merge).
//!   User data's `vendor_data: {enabled: false}` drops vendor data (scripts, boothooks and
//!   cloud-config) with a warning.
//! - scripts: vendor scripts first, then user scripts (cloud-init runs `scripts-vendor` before
//!   `scripts-user`); both are kept. Names are unique over scripts and boothooks; user data is
//!   named first, so vendor data never renames a user script.

mod carve;
mod cloud_config;
mod mime;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::model::userdata::{Origin, Script, UserData};
use crate::model::{Bytes, Instance, Report};

use self::cloud_config::{Ctx, Partial};
use super::value::{MAX_DEPTH, MAX_USER_DATA_BYTES};

/// The file name warnings about user data carry.
pub const USER_DATA_FILE: &str = "user-data";

/// Bounds of one parse. The defaults fit anything a real drive carries (Ironic allows 64 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserDataLimits {
    /// Largest user-data or vendor-data blob (before decompression); larger ones are ignored.
    pub max_blob_bytes: usize,
    /// Largest output of one gzip decompression (blob or part).
    pub max_decompressed_bytes: usize,
    /// All bytes produced by decompression and transfer decoding in one parse, together.
    pub max_total_bytes: usize,
    /// Deepest multipart nesting (the top-level multipart's parts are at depth 1).
    pub max_mime_depth: usize,
    /// Most MIME parts (at every level together) taken from one blob; the rest are ignored.
    pub max_mime_parts: usize,
    /// Most leaf parts (scripts, cloud-config, ...) over the whole parse, user and vendor data
    /// together (a vendor list can hold many blobs); the rest are ignored.
    pub max_total_parts: usize,
    /// Largest cloud-config document.
    pub max_yaml_bytes: usize,
    /// Deepest YAML nesting.
    pub max_yaml_depth: usize,
    /// Most YAML nodes in one document.
    pub max_yaml_nodes: usize,
    /// Most YAML aliases (and anchors) in one document.
    pub max_yaml_aliases: usize,
    /// Most events replayed through aliases in one document (alias bombs).
    pub max_yaml_alias_replay: usize,
    /// Largest `write_files` content, before and after decoding.
    pub max_file_bytes: usize,
}

impl Default for UserDataLimits {
    fn default() -> Self {
        UserDataLimits {
            max_blob_bytes: MAX_USER_DATA_BYTES,
            max_decompressed_bytes: MAX_USER_DATA_BYTES,
            max_total_bytes: 4 * MAX_USER_DATA_BYTES,
            max_mime_depth: 8,
            max_mime_parts: 1000,
            max_total_parts: 10_000,
            max_yaml_bytes: MAX_USER_DATA_BYTES,
            max_yaml_depth: MAX_DEPTH,
            max_yaml_nodes: 1_000_000,
            max_yaml_aliases: 1_000,
            max_yaml_alias_replay: 100_000,
            max_file_bytes: MAX_USER_DATA_BYTES,
        }
    }
}

/// One piece of vendor data: the file it came from (warnings name it), the MIME type its
/// producer gave (OpenStack `{content, type}` list elements), its bytes.
#[derive(Debug, Clone, Copy)]
pub struct VendorInput<'a> {
    pub file: &'a str,
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}

/// Parses user data and vendor data (`(file, bytes)` in order) into [`UserData`] and warnings.
pub fn parse_user_data(
    user: Option<&[u8]>,
    vendor: &[(String, Vec<u8>)],
    limits: &UserDataLimits,
) -> (UserData, Report) {
    let inputs: Vec<VendorInput> = vendor
        .iter()
        .map(|(file, data)| VendorInput {
            file,
            content_type: None,
            data,
        })
        .collect();
    parse_user_data_inputs(user, &inputs, limits)
}

/// [`parse_user_data`] over an instance's `user_data` and `vendor_user_data` (with the MIME
/// types producers gave). User-data or vendor-data kept on the device that cannot be read
/// whole again (see [`reread_error`]) is not parsed as empty: nothing is parsed, and the
/// report says why (`parse_drive` refuses such a drive before this runs).
pub fn parse_instance_user_data(inst: &Instance, limits: &UserDataLimits) -> (UserData, Report) {
    if let Some(e) = reread_error(inst) {
        let mut report = Report::default();
        report.warn(
            USER_DATA_FILE,
            "",
            format!("{e}; user-data and vendor-data not applied"),
        );
        return (UserData::default(), report);
    }
    // The instance's buffers: a script that is (a part of) one of them shares it.
    let owners: Vec<&Bytes> = inst
        .user_data
        .iter()
        .map(|b| &b.0)
        .chain(inst.vendor_user_data.iter().map(|p| &p.data.0))
        .collect();
    let inputs: Vec<VendorInput> = inst
        .vendor_user_data
        .iter()
        .map(|p| VendorInput {
            file: &p.file,
            content_type: p.content_type.as_deref(),
            data: &p.data.0,
        })
        .collect();
    // A script kept on the device is taken whole, never read into memory: its head says what
    // it is (see `streamed_script`).
    let streamed = inst
        .user_data
        .as_ref()
        .map(|b| &b.0)
        .filter(|b| streamed_script(b));
    // A large cloud-config kept on the device: its large literal blocks are carved out of the
    // parse (see `carve`), so the document is never held whole.
    let carvable = inst.user_data.as_ref().map(|b| &b.0).filter(|b| {
        carve_candidate(b) && b.len() <= limits.max_blob_bytes.min(limits.max_yaml_bytes)
    });
    let carved = match carvable.map(|b| (b, carve::carve_blob(b))) {
        Some((b, Ok(Some(c)))) => Some((b, c)),
        Some((_, Err(e))) => {
            let mut report = Report::default();
            report.warn(
                USER_DATA_FILE,
                "",
                format!("{e}; user-data and vendor-data not applied"),
            );
            return (UserData::default(), report);
        }
        _ => None,
    };
    // Not carved and too large to parse whole within the memory bound: not applied.
    let refused = carvable.filter(|b| carved.is_none() && b.len() > carve::MAX_CARVED_TEXT);
    let user = match (streamed, &carved, refused) {
        (None, None, None) => inst.user_data.as_ref().map(|b| b.0.as_slice()),
        _ => None,
    };
    let mut run = Run::new(&owners, limits);
    if let Some(b) = refused {
        run.report
            .warn(USER_DATA_FILE, "", carve::residue_warning(b.len()));
    }
    run.streamed = streamed;
    run.carved = carved;
    run.parse(user, &inputs)
}

/// The error of the first user-data or vendor-data file kept on the device that the parse
/// needs whole and that cannot be read again or changed since it was hashed (the message names
/// the device and the file). The whole file is loaded here (once: the parse then uses that
/// load), so a failed read is an error, never an empty blob; a `#!` script kept on the device
/// is not loaded (it is streamed, its digest re-checked, where it is written).
pub fn reread_error(inst: &Instance) -> Option<std::io::Error> {
    let user = inst
        .user_data
        .iter()
        .map(|b| &b.0)
        .filter(|b| !streamed_script(b));
    user.chain(inst.vendor_user_data.iter().map(|p| &p.data.0))
        .filter(|b| b.is_on_device())
        .find_map(|b| {
            if carve_candidate(b) {
                // Checked by streaming, not loaded: the parse carves it without holding it.
                b.for_each_chunk(&mut |_| Ok(())).err()
            } else {
                b.try_slice().err()
            }
        })
}

/// Whether `blob`, a whole user-data file kept on the device, is a cloud-config (not gzip, not
/// MIME, no byte-order mark), decided from its head as [`streamed_script`] does: its large
/// literal blocks may be carved out of the parse (`carve`).
fn carve_candidate(blob: &Bytes) -> bool {
    if !blob.is_on_device() {
        return false;
    }
    let Ok(head) = blob.head(STREAM_HEAD) else {
        return false;
    };
    let Some(nl) = head.iter().position(|&c| c == b'\n') else {
        return false;
    };
    let Some(first) = head.get(..nl) else {
        return false;
    };
    if is_gzip(&head) || mime::is_field_line(first) || head.starts_with(b"\xef\xbb\xbf") {
        return false;
    }
    let Some(start) = head.iter().position(|c| !c.is_ascii_whitespace()) else {
        return false;
    };
    start + 32 <= head.len() && sniff(&head) == Some(Kind::CloudConfig)
}

/// Bytes of a blob kept on the device that are looked at to tell what it is: the head kept
/// while the reader hashed it (`Bytes::head`), never bytes read again later.
const STREAM_HEAD: usize = crate::model::bytes::HEAD_BYTES;

/// Whether `blob`, a whole user-data file kept on the device, is a plain `#!` script, decided
/// from its head exactly as the whole would be: not gzip, not MIME (its first line, complete in
/// the head, is no header field), and the starts-with rules, whose 32-byte window lies inside
/// the head, say script. Anything else (or a head that cannot be read) is parsed from the
/// whole buffer as before.
fn streamed_script(blob: &Bytes) -> bool {
    if !blob.is_on_device() {
        return false;
    }
    let Ok(head) = blob.head(STREAM_HEAD) else {
        return false;
    };
    let whole = head.len() == blob.len();
    let Some(nl) = head.iter().position(|&c| c == b'\n') else {
        return false;
    };
    let Some(first) = head.get(..nl) else {
        return false;
    };
    if is_gzip(&head) || mime::is_field_line(first) {
        return false;
    }
    let b = strip_bom(&head);
    let Some(start) = b.iter().position(|c| !c.is_ascii_whitespace()) else {
        return false;
    };
    (whole || start + 32 <= b.len()) && sniff(b) == Some(Kind::Script)
}

/// [`parse_user_data`] with vendor parts that may carry a MIME type.
pub fn parse_user_data_inputs(
    user: Option<&[u8]>,
    vendor: &[VendorInput],
    limits: &UserDataLimits,
) -> (UserData, Report) {
    parse_inputs(user, vendor, limits, &[])
}

/// [`parse_user_data_inputs`], with the shared buffers the inputs lie in (`owners`): a script
/// whose bytes are a slice of one of them (not decoded or decompressed) shares that buffer
/// instead of being copied.
fn parse_inputs(
    user: Option<&[u8]>,
    vendor: &[VendorInput],
    limits: &UserDataLimits,
    owners: &[&Bytes],
) -> (UserData, Report) {
    Run::new(owners, limits).parse(user, vendor)
}

impl<'l> Run<'l> {
    fn new(owners: &'l [&'l Bytes], limits: &'l UserDataLimits) -> Run<'l> {
        Run {
            owners,
            streamed: None,
            carved: None,
            limits,
            report: Report::default(),
            budget: Budget::new(limits.max_total_bytes),
            names: BTreeSet::new(),
            next_suffix: BTreeMap::new(),
            leaves: 0,
            leaves_capped: false,
        }
    }

    fn parse(mut self, user: Option<&[u8]>, vendor: &[VendorInput]) -> (UserData, Report) {
        let run = &mut self;
        let user_inputs: Vec<VendorInput> = user
            .map(|data| VendorInput {
                file: USER_DATA_FILE,
                content_type: None,
                data,
            })
            .into_iter()
            .collect();
        let user = run.origin(Origin::UserData, &user_inputs);
        let mut vendor = run.origin(Origin::VendorData, vendor);

        if user.config.vendor_data_enabled == Some(Some(false)) {
            let had = !vendor.scripts.is_empty()
                || !vendor.boothooks.is_empty()
                || !vendor.windows_scripts.is_empty()
                || vendor.config_parts > 0;
            if had {
                run.report.warn(
                USER_DATA_FILE,
                "vendor_data.enabled",
                format!(
                    "false: vendor data ignored ({} script(s), {} boothook(s), {} cloud-config part(s))",
                    vendor.scripts.len(),
                    vendor.boothooks.len(),
                    vendor.config_parts
                ),
            );
            }
            vendor = Collected::default();
        }

        let mut scripts = vendor.scripts;
        scripts.extend(user.scripts);
        let mut boothooks = vendor.boothooks;
        boothooks.extend(user.boothooks);
        let mut windows_scripts = vendor.windows_scripts;
        windows_scripts.extend(user.windows_scripts);
        let ud = UserData {
            scripts,
            cloud_config: Partial::user_over_vendor(vendor.config, user.config).finish(),
            boothooks,
            windows_scripts,
        };
        tracing::debug!(
            "user data: {} script(s), {} boothook(s), {} warning(s)",
            ud.scripts.len(),
            ud.boothooks.len(),
            run.report.warnings.len()
        );
        (ud, self.report)
    }
}

/// Bytes that decompression and decoding may still produce in this parse.
#[derive(Debug)]
pub(crate) struct Budget {
    left: usize,
}

impl Budget {
    pub(crate) fn new(total: usize) -> Self {
        Budget { left: total }
    }

    fn charge(&mut self, n: usize) -> bool {
        match self.left.checked_sub(n) {
            Some(l) => {
                self.left = l;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GunzipError {
    #[error("decompresses to more than {0} bytes (limit); ignored as a possible gzip bomb")]
    TooLarge(usize),
    #[error("the parse's decompression budget is spent ({0} bytes left)")]
    Budget(usize),
    #[error("not valid gzip: {0}")]
    Corrupt(String),
}

/// Decompresses gzip (several members allowed), at most `cap` bytes and what the budget allows.
pub(crate) fn gunzip(data: &[u8], cap: usize, budget: &mut Budget) -> Result<Vec<u8>, GunzipError> {
    let limit = cap.min(budget.left);
    let mut out = Vec::new();
    let mut r = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    if let Err(e) = r.read_to_end(&mut out) {
        return Err(GunzipError::Corrupt(e.to_string()));
    }
    if out.len() > limit {
        return Err(if limit < cap {
            GunzipError::Budget(budget.left)
        } else {
            GunzipError::TooLarge(cap)
        });
    }
    budget.charge(out.len());
    Ok(out)
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// MIME types cloud-init decompresses before looking at the content.
const GZIP_TYPES: &[&str] = &[
    "application/gzip",
    "application/gzip-compressed",
    "application/gzipped",
    "application/x-compress",
    "application/x-compressed",
    "application/x-gunzip",
    "application/x-gzip",
    "application/x-gzip-compressed",
];

/// What a leaf part is.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Empty,
    Script,
    CloudConfig,
    Boothook,
    /// Recognised, not supported: what it is, and why it is ignored.
    Unsupported(&'static str),
    /// A type primer (and cloud-init) has no handler for.
    Unknown(String),
}

const INCLUDE: &str = "#include / text/x-include-url: primer never fetches URLs; part ignored";
const INCLUDE_ONCE: &str =
    "#include-once / text/x-include-once-url: primer never fetches URLs; part ignored";
const PART_HANDLER: &str =
    "#part-handler / text/part-handler (Python code): not supported; part ignored";
const JINJA: &str = "## template: jinja / text/jinja2: templates are not supported; part ignored";
const ARCHIVE: &str =
    "#cloud-config-archive / text/cloud-config-archive: not supported; part ignored";
const JSONP: &str = "#cloud-config-jsonp / text/cloud-config-jsonp: not supported; part ignored";
const UPSTART: &str = "#upstart-job / text/upstart-job: not supported; part ignored";
const WINDOWS: &str =
    "Windows script (#ps1, rem cmd, <powershell>, <script>): not supported; part ignored";
const PER_BOOT: &str =
    "text/x-shellscript-per-boot: per-boot scripts are not supported; part ignored";
const PER_ONCE: &str =
    "text/x-shellscript-per-once: per-once scripts are not supported; part ignored";
const RFC822: &str = "message/rfc822: attached messages are not supported; part ignored";

/// The starts-with rules, longest prefix first (`#cloud-config-archive` before `#cloud-config`).
const PREFIXES: &[(&str, Kind)] = &[
    ("## template: jinja", Kind::Unsupported(JINJA)),
    ("#cloud-config-archive", Kind::Unsupported(ARCHIVE)),
    ("#cloud-config-jsonp", Kind::Unsupported(JSONP)),
    ("#cloud-boothook", Kind::Boothook),
    ("#include-once", Kind::Unsupported(INCLUDE_ONCE)),
    ("#cloud-config", Kind::CloudConfig),
    ("#part-handler", Kind::Unsupported(PART_HANDLER)),
    ("#upstart-job", Kind::Unsupported(UPSTART)),
    ("<powershell>", Kind::Unsupported(WINDOWS)),
    ("#include", Kind::Unsupported(INCLUDE)),
    ("<script>", Kind::Unsupported(WINDOWS)),
    ("rem cmd", Kind::Unsupported(WINDOWS)),
    ("#ps1", Kind::Unsupported(WINDOWS)),
    ("#!", Kind::Script),
];

/// The content without a UTF-8 byte-order mark.
fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b)
}

/// The starts-with rules; `None` when no prefix matches.
fn sniff(body: &[u8]) -> Option<Kind> {
    let b = strip_bom(body);
    let start = b.iter().position(|c| !c.is_ascii_whitespace())?;
    let head: Vec<u8> = b[start..]
        .iter()
        .take(32)
        .map(u8::to_ascii_lowercase)
        .collect();
    PREFIXES
        .iter()
        .find(|(p, _)| head.starts_with(p.as_bytes()))
        .map(|(_, k)| k.clone())
}

fn is_blank(b: &[u8]) -> bool {
    strip_bom(b).iter().all(u8::is_ascii_whitespace)
}

/// What a leaf is, from its declared type (lower-case) and content.
fn classify(ctype: Option<&str>, body: &[u8]) -> Kind {
    if is_blank(body) {
        return Kind::Empty;
    }
    match ctype {
        None | Some("text/plain") | Some("text/x-not-multipart") => {
            sniff(body).unwrap_or_else(|| Kind::Unknown(ctype.unwrap_or("text/plain").into()))
        }
        Some("text/x-shellscript") | Some("text/x-shellscript-per-instance") => {
            sniff(body).unwrap_or(Kind::Script)
        }
        Some("text/cloud-config") => Kind::CloudConfig,
        Some("text/cloud-boothook") => Kind::Boothook,
        Some("text/x-include-url") => Kind::Unsupported(INCLUDE),
        Some("text/x-include-once-url") => Kind::Unsupported(INCLUDE_ONCE),
        Some("text/part-handler") => Kind::Unsupported(PART_HANDLER),
        Some("text/jinja2") => Kind::Unsupported(JINJA),
        Some("text/cloud-config-archive") => Kind::Unsupported(ARCHIVE),
        Some("text/cloud-config-jsonp") => Kind::Unsupported(JSONP),
        Some("text/upstart-job") => Kind::Unsupported(UPSTART),
        Some("text/x-shellscript-per-boot") => Kind::Unsupported(PER_BOOT),
        Some("text/x-shellscript-per-once") => Kind::Unsupported(PER_ONCE),
        Some("message/rfc822") => Kind::Unsupported(RFC822),
        Some(other) => Kind::Unknown(other.to_string()),
    }
}

/// A safe file name from a MIME filename: its last path component, `[A-Za-z0-9._-]` only (other
/// characters become `_`), no leading dot or dash, at most 56 bytes (room for a `-N` suffix).
fn sanitize(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mapped: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(['.', '-']);
    trimmed.chars().take(56).collect()
}

/// What one origin (user data, or all vendor parts) gave.
#[derive(Debug, Default)]
struct Collected {
    scripts: Vec<Script>,
    boothooks: Vec<Script>,
    windows_scripts: Vec<Script>,
    config: Partial,
    config_parts: usize,
}

/// One leaf part, ready to classify.
struct Leaf<'b> {
    ctype: Option<String>,
    filename: Option<String>,
    body: std::borrow::Cow<'b, [u8]>,
    /// `""` for a whole blob, `part 3 "x.sh"` for a MIME part.
    locator: String,
}

/// State of one parse.
struct Run<'l> {
    /// Buffers the inputs lie in (see [`parse_inputs`]).
    owners: &'l [&'l Bytes],
    /// User data kept on the device and known to be a whole `#!` script (`streamed_script`):
    /// taken as the user-data origin's one part, never read here.
    streamed: Option<&'l Bytes>,
    /// User data kept on the device, a cloud-config whose large literal blocks were carved
    /// out (`carve`): taken as the user-data origin's one part, parsed from its carved text.
    carved: Option<(&'l Bytes, carve::Carved)>,
    limits: &'l UserDataLimits,
    report: Report,
    budget: Budget,
    /// Script and boothook names given out so far.
    names: BTreeSet<String>,
    /// For a base name already taken: the next `-N` suffix to try.
    next_suffix: BTreeMap<String, usize>,
    /// Leaf parts seen in this parse (bounded by `max_total_parts`).
    leaves: usize,
    leaves_capped: bool,
}

impl Run<'_> {
    /// A part's bytes as kept: a slice of an input's buffer when they lie in one (no copy),
    /// else the decoded bytes themselves.
    fn share(&self, body: std::borrow::Cow<'_, [u8]>) -> Bytes {
        match body {
            std::borrow::Cow::Borrowed(b) => self
                .owners
                .iter()
                .find_map(|o| o.slice_ref(b))
                .unwrap_or_else(|| Bytes::from(b)),
            std::borrow::Cow::Owned(v) => Bytes::from(v),
        }
    }

    fn origin(&mut self, origin: Origin, inputs: &[VendorInput]) -> Collected {
        let mut out = Collected::default();
        // Leaf parts numbered over the origin's blobs, from 1 (script names `part-NNN`).
        let mut leaf_no = 0usize;
        if origin == Origin::UserData {
            if let Some(b) = self.streamed.take() {
                self.streamed_leaf(b, &mut out, &mut leaf_no);
            }
            if let Some((b, c)) = self.carved.take() {
                self.carved_leaf(b, c, &mut out, &mut leaf_no);
            }
        }
        for input in inputs {
            self.blob(origin, input, &mut out, &mut leaf_no);
        }
        out
    }

    /// What `blob` then `leaf` do for a whole-blob `#!` script without a MIME type, on a
    /// buffer that is not read: the size check, the part count, the name, the shared bytes.
    fn streamed_leaf(&mut self, b: &Bytes, out: &mut Collected, leaf_no: &mut usize) {
        let file = USER_DATA_FILE;
        if b.len() > self.limits.max_blob_bytes {
            self.report.warn(
                file,
                "",
                format!(
                    "too large ({} bytes > limit {}); ignored",
                    b.len(),
                    self.limits.max_blob_bytes
                ),
            );
            return;
        }
        *leaf_no += 1;
        if !self.admit_leaf(file, "") {
            return;
        }
        let name = self.name(None, *leaf_no);
        out.scripts.push(Script {
            name,
            origin: Origin::UserData,
            content: b.clone(),
        });
    }

    /// What `blob` then `leaf` do for a whole-blob cloud-config kept on the device whose large
    /// literal blocks were carved out: the part count, then the parse of the carved text with
    /// each value put back in its place. When a placeholder does not come back exactly once as
    /// a whole string (the line pass misread the document) or the carved text does not parse,
    /// the document is read and parsed whole, as any other: the carve never decides an outcome.
    fn carved_leaf(
        &mut self,
        b: &Bytes,
        c: carve::Carved,
        out: &mut Collected,
        leaf_no: &mut usize,
    ) {
        let file = USER_DATA_FILE;
        *leaf_no += 1;
        if !self.admit_leaf(file, "") {
            return;
        }
        out.config_parts += 1;
        let base = carve::token_base(&b.sha256());
        let tokens: Vec<String> = c.values.iter().map(|(t, _)| t.clone()).collect();
        // `write_files` contents stay placeholders (streamed from the device when converted);
        // any other carved value is read back as its string.
        let restored = yaml::parse(&c.text, &self.yaml_limits())
            .ok()
            .and_then(|mut p| {
                carve::restore(&mut p.node, &base, &tokens, true, &mut |i| {
                    c.values.get(i).and_then(|(_, l)| carve::value(b, l).ok())
                })
                .map(|deferred| (p, deferred))
            });
        let partial = match restored {
            Some((parsed, deferred)) => {
                tracing::debug!("{file}: large literal blocks carved out of the YAML parse");
                let kept: Vec<(String, carve::Literal)> = deferred
                    .into_iter()
                    .filter_map(|i| c.values.get(i).cloned())
                    .collect();
                Some(self.convert_with(file, String::new(), parsed, Some((b.clone(), kept))))
            }
            None if b.len() > carve::MAX_CARVED_TEXT => {
                self.report.warn(file, "", carve::residue_warning(b.len()));
                None
            }
            None => {
                tracing::debug!("{file}: carved parse not confirmed; parsed whole");
                match b.try_slice() {
                    Ok(whole) => self.cloud_config(file, "", String::new(), whole),
                    Err(e) => {
                        self.report.warn(file, "", format!("{e}; part ignored"));
                        None
                    }
                }
            }
        };
        if let Some(p) = partial {
            out.config.overlay(p);
        }
    }

    fn blob(
        &mut self,
        origin: Origin,
        input: &VendorInput,
        out: &mut Collected,
        leaf_no: &mut usize,
    ) {
        let file = input.file;
        if input.data.len() > self.limits.max_blob_bytes {
            self.report.warn(
                file,
                "",
                format!(
                    "too large ({} bytes > limit {}); ignored",
                    input.data.len(),
                    self.limits.max_blob_bytes
                ),
            );
            return;
        }
        let data: std::borrow::Cow<[u8]> = if is_gzip(input.data) {
            match gunzip(
                input.data,
                self.limits.max_decompressed_bytes,
                &mut self.budget,
            ) {
                Ok(v) => v.into(),
                Err(e) => {
                    self.report.warn(file, "", format!("gzip: {e}"));
                    return;
                }
            }
        } else {
            input.data.into()
        };
        if input.content_type.is_none() && mime::looks_like_mime(&data) {
            self.mime(origin, file, &data, out, leaf_no);
        } else {
            *leaf_no += 1;
            let leaf = Leaf {
                // `text/x-shellscript; charset=utf-8` is `text/x-shellscript`.
                ctype: input
                    .content_type
                    .map(|t| mailparse::parse_content_type(t).mimetype.trim().to_string()),
                filename: None,
                body: data,
                locator: String::new(),
            };
            self.leaf(origin, file, leaf, out, *leaf_no);
        }
    }

    /// Walks a MIME message: an explicit stack of entities (slices of `data`), each level split
    /// once, depth and part count bounded.
    fn mime(
        &mut self,
        origin: Origin,
        file: &str,
        data: &[u8],
        out: &mut Collected,
        leaf_no: &mut usize,
    ) {
        let limits = self.limits;
        let mut stack: Vec<(&[u8], usize)> = vec![(data, 0)];
        let mut parts = 0usize;
        let mut capped = false;
        while let Some((entity, depth)) = stack.pop() {
            let (block, body) = mime::split_entity(entity);
            let headers = mime::parse_headers(block);
            let mimetype = headers.content_type.as_ref().map(|c| c.mimetype.clone());
            if let Some(mt) = mimetype.as_deref().filter(|m| m.starts_with("multipart/")) {
                let boundary = headers
                    .content_type
                    .as_ref()
                    .and_then(|c| c.params.get("boundary"))
                    .filter(|b| !b.is_empty());
                let Some(boundary) = boundary else {
                    self.report.warn(
                        file,
                        "",
                        format!("{mt} without a boundary (at MIME depth {depth}); ignored"),
                    );
                    continue;
                };
                if depth >= limits.max_mime_depth {
                    self.report.warn(
                        file,
                        "",
                        format!(
                            "multipart nested deeper than {} levels; the nested parts are ignored",
                            limits.max_mime_depth
                        ),
                    );
                    continue;
                }
                let room = limits.max_mime_parts.saturating_sub(parts);
                let (children, more) = mime::split_multipart(body, boundary, room);
                parts += children.len();
                if more && !capped {
                    capped = true;
                    self.report.warn(
                        file,
                        "",
                        format!(
                            "more than {} MIME parts; the rest are ignored",
                            limits.max_mime_parts
                        ),
                    );
                }
                for child in children.into_iter().rev() {
                    stack.push((child, depth + 1));
                }
                continue;
            }
            *leaf_no += 1;
            let locator = match &headers.filename {
                Some(f) => format!(
                    "part {} {:?}",
                    leaf_no,
                    f.chars().take(64).collect::<String>()
                ),
                None => format!("part {leaf_no}"),
            };
            let body = match mime::decode_body(body, &headers) {
                Ok(b) => b,
                Err(e) => {
                    self.report.warn(
                        file,
                        &locator,
                        format!("transfer encoding cannot be decoded ({e}); part ignored"),
                    );
                    continue;
                }
            };
            if !self.budget.charge(body.len()) {
                self.report.warn(
                    file,
                    &locator,
                    "the parse's decoding budget is spent; part ignored",
                );
                continue;
            }
            let leaf = Leaf {
                ctype: mimetype,
                filename: headers.filename.clone(),
                body,
                locator,
            };
            self.leaf(origin, file, leaf, out, *leaf_no);
        }
    }

    /// Counts one more part against the cap on parts in user and vendor data together: false
    /// when the cap is reached (warned once, naming where the first part over it is).
    fn admit_leaf(&mut self, file: &str, locator: &str) -> bool {
        if self.leaves >= self.limits.max_total_parts {
            if !self.leaves_capped {
                self.leaves_capped = true;
                self.report.warn(
                    file,
                    locator,
                    format!(
                        "more than {} parts in user and vendor data together; the rest are ignored",
                        self.limits.max_total_parts
                    ),
                );
            }
            return false;
        }
        self.leaves += 1;
        true
    }

    fn leaf(&mut self, origin: Origin, file: &str, leaf: Leaf, out: &mut Collected, n: usize) {
        if !self.admit_leaf(file, &leaf.locator) {
            return;
        }
        let Leaf {
            mut ctype,
            filename,
            mut body,
            locator,
        } = leaf;
        let gzip_type = ctype.as_deref().is_some_and(|t| GZIP_TYPES.contains(&t));
        if gzip_type || is_gzip(&body) {
            match gunzip(&body, self.limits.max_decompressed_bytes, &mut self.budget) {
                Ok(v) => {
                    body = v.into();
                    // cloud-init: the type of decompressed content is found by its start.
                    ctype = None;
                }
                Err(e) => {
                    self.report.warn(file, &locator, format!("gzip: {e}"));
                    return;
                }
            }
        }
        let at = if locator.is_empty() {
            String::new()
        } else {
            format!(" ({locator})")
        };
        match classify(ctype.as_deref(), &body) {
            Kind::Empty => {}
            Kind::Script => {
                let name = self.name(filename.as_deref(), n);
                out.scripts.push(Script {
                    name,
                    origin,
                    content: self.share(body),
                });
            }
            Kind::Boothook => {
                let name = self.name(filename.as_deref(), n);
                self.report.warn(
                    file,
                    &locator,
                    format!(
                        "cloud-boothook {name:?}: recognised, not supported (primer does not run boothooks)"
                    ),
                );
                out.boothooks.push(Script {
                    name,
                    origin,
                    content: self.share(body),
                });
            }
            Kind::CloudConfig => {
                out.config_parts += 1;
                if let Some(p) = self.cloud_config(file, &locator, at, &body) {
                    out.config.overlay(p);
                }
            }
            Kind::Unsupported(what) => {
                self.report.warn(file, &locator, what);
                if what == WINDOWS {
                    // Kept for a Windows target (its plan runs it; the warning is Linux's).
                    let name = self.name(filename.as_deref(), n);
                    out.windows_scripts.push(Script {
                        name,
                        origin,
                        content: self.share(body),
                    });
                }
            }
            Kind::Unknown(t) => self.report.warn(
                file,
                &locator,
                if t == "text/plain" {
                    "content not recognised (not #!, #cloud-config or another known form); ignored"
                        .to_string()
                } else {
                    format!(
                        "part type {:?} is not supported; part ignored",
                        t.chars().take(64).collect::<String>()
                    )
                },
            ),
        }
    }

    fn cloud_config(
        &mut self,
        file: &str,
        locator: &str,
        at: String,
        body: &[u8],
    ) -> Option<Partial> {
        let text = match std::str::from_utf8(strip_bom(body)) {
            Ok(t) => t,
            Err(e) => {
                self.report.warn(
                    file,
                    locator,
                    format!(
                        "cloud-config is not UTF-8 (invalid byte at {}); part ignored",
                        e.valid_up_to()
                    ),
                );
                return None;
            }
        };
        let parsed = match yaml::parse(text, &self.yaml_limits()) {
            Ok(p) => p,
            Err(e) => {
                self.report.warn(
                    file,
                    locator,
                    format!("cloud-config: invalid YAML: {e}; part ignored"),
                );
                return None;
            }
        };
        Some(self.convert(file, at, parsed))
    }

    fn yaml_limits(&self) -> yaml::YamlLimits {
        yaml::YamlLimits {
            max_bytes: self.limits.max_yaml_bytes,
            max_depth: self.limits.max_yaml_depth,
            max_nodes: self.limits.max_yaml_nodes,
            max_aliases: self.limits.max_yaml_aliases,
            max_replayed_events: self.limits.max_yaml_alias_replay,
        }
    }

    /// A parsed cloud-config into its settings, repeated keys reported.
    fn convert(&mut self, file: &str, at: String, parsed: yaml::Parsed) -> Partial {
        self.convert_with(file, at, parsed, None)
    }

    /// [`convert`](Run::convert), with the `write_files` contents carved out of the parse (the
    /// document and each content's placeholder and block).
    fn convert_with(
        &mut self,
        file: &str,
        at: String,
        parsed: yaml::Parsed,
        carved: Option<(Bytes, Vec<(String, carve::Literal)>)>,
    ) -> Partial {
        if !parsed.duplicates.is_empty() {
            self.report.warn(
                file,
                &parsed.duplicates.join(", "),
                format!("repeated key(s): the last value is used, as cloud-init does{at}"),
            );
        }
        let mut ctx = Ctx::new(
            file,
            at,
            &mut self.report,
            &mut self.budget,
            self.limits.max_file_bytes,
        );
        ctx.carved = carved;
        cloud_config::convert(parsed.node, &mut ctx)
    }

    /// A unique, safe, deterministic name: the sanitised MIME filename, else `part-NNN`; a name
    /// already given gets `-2`, `-3`, ...
    fn name(&mut self, filename: Option<&str>, n: usize) -> String {
        let base = filename
            .map(sanitize)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("part-{n:03}"));
        if self.names.insert(base.clone()) {
            return base;
        }
        // Suffixes resume where the last one for this base stopped: linear over a parse.
        let next = self.next_suffix.entry(base.clone()).or_insert(2);
        loop {
            let name = format!("{base}-{next}");
            *next += 1;
            if self.names.insert(name.clone()) {
                return name;
            }
        }
    }
}

#[cfg(test)]
mod tests;
