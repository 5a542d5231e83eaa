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
//!    type or gzip magic is decompressed and then goes by the starts-with rules. A MIME user data
//!    kept on the device (gzip'd too, within a bound on re-decompressions) is walked the same
//!    way without being held (`kept_mime`): each level split by one streaming pass, each part a
//!    recipe over its byte range, a large cloud-config part carved as a whole one is;
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

use crate::model::bytes::{Derive, SourceCheck, TooLarge};
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

/// Nothing parsed: user data or vendor data kept on the device could not be read as it was
/// hashed (`e` names the file), so neither is applied, and the report says why.
fn not_applied(e: impl std::fmt::Display) -> (UserData, Report) {
    let mut report = Report::default();
    report.warn(
        USER_DATA_FILE,
        "",
        format!("{e}; user-data and vendor-data not applied"),
    );
    (UserData::default(), report)
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
    // User data the parse streams is not streamed a second time here (`parse_drive` checked
    // it): the parse's own passes turn a failed read into this same outcome (`not_applied`).
    if let Some(e) = reread(inst, false) {
        return not_applied(e);
    }
    // The instance's buffers: a script that is (a part of) one of them shares it.
    let owners: Vec<&Bytes> = inst
        .user_data
        .iter()
        .map(|b| &b.0)
        .chain(inst.vendor_user_data.iter().map(|p| &p.data.0))
        .collect();
    // Vendor data is parsed in memory: its load's outcome (made by `reread_error`, kept for
    // every later user) is used, never an empty blob for a failed read.
    let mut inputs: Vec<VendorInput> = Vec::with_capacity(inst.vendor_user_data.len());
    for p in &inst.vendor_user_data {
        match p.data.0.try_slice() {
            Ok(data) => inputs.push(VendorInput {
                file: &p.file,
                content_type: p.content_type.as_deref(),
                data,
            }),
            Err(e) => {
                return not_applied(e);
            }
        }
    }
    let raw = inst.user_data.as_ref().map(|b| &b.0);
    // Gzip'd user data kept on the device: decompressed as a recipe, never held (see
    // `gunzipped`); the decompressed content then goes the ways a plain blob does below.
    let (unzipped, refused) = match raw.and_then(|b| gunzipped(b, limits)) {
        Some(Gunzipped::Content(d)) => (Some(d), None),
        Some(Gunzipped::Refused(e)) => (None, Some(e)),
        None => (None, None),
    };
    let plain = unzipped.as_ref().or(raw);
    // A script kept on the device is taken whole, never read into memory: its head says what
    // it is (see `streamed_script`).
    let streamed = plain.filter(|b| streamed_script(b));
    // A large cloud-config kept on the device: its large literal blocks are carved out of the
    // parse (see `carve`), so the document is never held whole.
    let carvable = plain.filter(|b| {
        carve_candidate(b) && b.len() <= limits.max_blob_bytes.min(limits.max_yaml_bytes)
    });
    let carved = match carvable.map(|b| (b, carve::carve_blob(b))) {
        // Each carved block of decompressed content is derived again from the start: too many
        // for its size and it is parsed in memory, as before (see `MAX_REDERIVED_BYTES`).
        Some((b, Ok(Some(c))))
            if unzipped.is_none()
                || c.values.len().saturating_mul(b.len()) <= MAX_REDERIVED_BYTES =>
        {
            Some((b, c))
        }
        Some((_, Err(e))) => {
            return not_applied(e);
        }
        _ => None,
    };
    // A MIME user data kept on the device: split and decoded by streaming (see `kept_mime`);
    // a gzip'd one too, its decompressed content the message (each part is decompressed again
    // from the start: bounded there, else it goes the in-memory way, as before).
    let kept_mime = plain.filter(|b| mime_candidate(b));
    let user = match (streamed, &carved, &refused, kept_mime) {
        (None, None, None, None) => match raw.map(Bytes::try_slice).transpose() {
            Ok(u) => u,
            // Read whole only now (a gzip'd blob was checked by streaming): a failed read is
            // an error, never an empty user-data.
            Err(e) => {
                return not_applied(e);
            }
        },
        _ => None,
    };
    let mut run = Run::new(&owners, limits);
    if kept_mime.is_some() {
        if let Some(d) = &unzipped {
            run.kept_len = d.len();
        }
    }
    if let Some(e) = &refused {
        // What `blob` reports for the same bytes, and what `gunzip` charges.
        run.report.warn(USER_DATA_FILE, "", format!("gzip: {e}"));
        let limit = limits.max_decompressed_bytes.min(limits.max_total_bytes);
        run.budget.charge_refused(limit);
    }
    if let Some(d) = unzipped.as_ref().filter(|_| user.is_none()) {
        // What `gunzip` charges for the same bytes.
        run.budget.charge(d.len());
    }
    run.streamed = streamed;
    run.carved = carved;
    run.kept_mime = kept_mime;
    run.parse(user, &inputs)
}

/// The outcome of decompressing gzip'd user data kept on the device (see [`gunzipped`]).
enum Gunzipped {
    /// The decompressed content, a [`Bytes::derived`] of the blob: never held.
    Content(Bytes),
    /// More than the cap: the warning the in-memory path gives (a gzip bomb).
    Refused(GunzipError),
}

/// The recipe of a gzip'd blob kept on the device: the decoder [`gunzip`] uses, over the blob
/// streamed, so the same streams are accepted and the same bytes come out.
struct GunzipRecipe;

impl Derive for GunzipRecipe {
    fn open<'a>(&'a self, src: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
        tracing::debug!("{USER_DATA_FILE}: gzip stream decompressed (one pass)");
        Box::new(flate2::read::MultiGzDecoder::new(src))
    }
}

/// Most bytes of decompressed user data derived again for its carved blocks (each block read
/// derives the content again from its start, see `Bytes::derived`): blocks times the content's
/// length. Past it the document is decompressed and parsed in memory, as before.
const MAX_REDERIVED_BYTES: usize = 128 << 20;

/// Gzip'd user data (magic `1f 8b` in the head the reader kept, within the blob cap), kept on
/// the device or small enough to be held (a few KiB of gzip can be a 64 MiB script or a bomb),
/// decompressed as a recipe in one streaming pass that measures it (length, digest, head) and
/// holds at most a chunk: the same decoder, cap and budget as [`gunzip`] at the start of a
/// parse (user data is the first blob), so a bomb is the same warning. `None` (the blob goes
/// the in-memory path, which decides as before) for anything else: not gzip, a corrupt stream
/// or a read error (whose warning or error that path gives), content over the blob cap.
fn gunzipped(blob: &Bytes, limits: &UserDataLimits) -> Option<Gunzipped> {
    if blob.len() > limits.max_blob_bytes {
        return None;
    }
    if !is_gzip(&blob.head(2).ok()?) {
        return None;
    }
    let cap = limits.max_decompressed_bytes;
    let left = limits.max_total_bytes;
    let limit = cap.min(left);
    match Bytes::derived(blob, 0..blob.len(), Box::new(GunzipRecipe), "gunzip", limit) {
        Ok(d) if d.len() <= limits.max_blob_bytes => Some(Gunzipped::Content(d)),
        Ok(_) => None,
        Err(e) if e.get_ref().is_some_and(|i| i.is::<TooLarge>()) => {
            Some(Gunzipped::Refused(if limit < cap {
                GunzipError::Budget(left)
            } else {
                GunzipError::TooLarge(cap)
            }))
        }
        Err(e) => {
            tracing::debug!("{e}; decompressed in memory");
            None
        }
    }
}

/// The error of the first user-data or vendor-data file kept on the device that the parse
/// needs whole and that cannot be read again or changed since it was hashed (the message names
/// the device and the file). The whole file is loaded here (once: the parse then uses that
/// load), so a failed read is an error, never an empty blob; a `#!` script kept on the device
/// is not loaded (it is streamed, its digest re-checked, where it is written).
pub fn reread_error(inst: &Instance) -> Option<std::io::Error> {
    reread(inst, true)
}

/// [`reread_error`]; `stream_user` false skips the streamed check of user data the parse
/// streams itself (each of its passes is checked, a failed one is `not_applied`): the check
/// `parse_drive` made is not made twice (a 64 MiB user data was streamed once more for it).
fn reread(inst: &Instance, stream_user: bool) -> Option<std::io::Error> {
    let user = inst
        .user_data
        .iter()
        .map(|b| (&b.0, true))
        .filter(|(b, _)| !streamed_script(b));
    user.chain(inst.vendor_user_data.iter().map(|p| (&p.data.0, false)))
        .filter(|(b, _)| b.is_on_device())
        .find_map(|(b, is_user)| {
            // User data is checked by streaming, not loaded: the parse carves it, splits it
            // (MIME), or decompresses it while streaming it (gzip'd user data, see
            // `gunzipped`), without holding it; when it then needs it whole after all, a
            // failed read is an error there too. Vendor data is always parsed in memory: loaded
            // here, so the parse uses this load (a later failed read cannot make it empty).
            if is_user
                && (carve_candidate(b) || mime_candidate(b) || b.head(2).is_ok_and(|h| is_gzip(&h)))
            {
                if !stream_user {
                    return None;
                }
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
            kept_mime: None,
            kept_len: 0,
            unread: None,
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
        if let Some(e) = run.unread.take() {
            return not_applied(e);
        }
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

    /// Charges a refused decompression what it produced before it was stopped (`limit + 1`
    /// bytes, see [`gunzip`]): its work counts, so a flood of gzip bombs spends the budget
    /// after a few and the rest are refused at once.
    fn charge_refused(&mut self, limit: usize) {
        self.left = self.left.saturating_sub(limit.saturating_add(1));
    }

    /// The error of a decompression over `limit` (`cap` or what is left), charged.
    fn refuse(&mut self, limit: usize, cap: usize) -> GunzipError {
        let e = if limit < cap {
            GunzipError::Budget(self.left)
        } else {
            GunzipError::TooLarge(cap)
        };
        self.charge_refused(limit);
        e
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
        return Err(budget.refuse(limit, cap));
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
    /// User data kept on the device, a MIME message (`mime_candidate`): split and decoded by
    /// streaming (`kept_mime`), taken as the user-data origin's parts.
    kept_mime: Option<&'l Bytes>,
    /// When that message is itself derived (gzip'd user data decompressed as a recipe), its
    /// length: what deriving one of its parts again costs (the whole message decompressed
    /// again from its start); 0 for a message on the device.
    kept_len: usize,
    /// The error of a MIME user data kept on the device that could be neither split nor read
    /// whole: the parse is then not applied (see [`not_applied`]).
    unread: Option<std::io::Error>,
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
            if let Some(b) = self.kept_mime.take() {
                self.kept_mime(b, &mut out, &mut leaf_no);
            }
        }
        for input in inputs {
            self.blob(origin, input, &mut out, &mut leaf_no);
        }
        out
    }

    /// Whether a blob of `len` bytes is over the blob cap: then warned about, naming `file`
    /// (the same words on every path that takes a whole blob).
    fn too_large(&mut self, file: &str, len: usize) -> bool {
        let over = len > self.limits.max_blob_bytes;
        if over {
            let limit = self.limits.max_blob_bytes;
            self.report.warn(
                file,
                "",
                format!("too large ({len} bytes > limit {limit}); ignored"),
            );
        }
        over
    }

    /// What `blob` then `leaf` do for a whole-blob `#!` script without a MIME type, on a
    /// buffer that is not read: the size check, the part count, the name, the shared bytes.
    fn streamed_leaf(&mut self, b: &Bytes, out: &mut Collected, leaf_no: &mut usize) {
        let file = USER_DATA_FILE;
        if self.too_large(file, b.len()) {
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
        if let Some(p) = self.carved_config(file, "", String::new(), b, c) {
            out.config.overlay(p);
        }
    }

    /// The parse of a cloud-config kept on the device from its carved text (`c`), each carved
    /// value put back in its place (`write_files` contents stay on the device). When a
    /// placeholder does not come back exactly once as a whole string (the line pass misread
    /// the document) or the carved text does not parse, the document is read and parsed whole,
    /// as any other: the carve never decides an outcome.
    fn carved_config(
        &mut self,
        file: &str,
        locator: &str,
        at: String,
        b: &Bytes,
        c: carve::Carved,
    ) -> Option<Partial> {
        let base = carve::token_base(&b.sha256());
        let carve::Carved { text, mut values } = c;
        // The placeholders moved out for the walk and back (10,000 entries: not copied).
        let tokens: Vec<String> = values.iter_mut().map(|(t, _)| std::mem::take(t)).collect();
        // `write_files` contents stay placeholders (streamed from the device when converted);
        // any other carved value is read back as its string.
        let restored = yaml::parse(&text, &self.yaml_limits())
            .ok()
            .and_then(|mut p| {
                carve::restore(&mut p.node, &base, &tokens, true, &mut |i| {
                    values.get(i).and_then(|(_, l)| carve::value(b, l).ok())
                })
                .map(|deferred| (p, deferred))
            });
        drop(text);
        for ((t, _), token) in values.iter_mut().zip(tokens) {
            *t = token;
        }
        match restored {
            Some((parsed, deferred)) => {
                tracing::debug!("{file}{at}: large literal blocks carved out of the YAML parse");
                // The list handed on whole, not a copy of the deferred blocks (10,000 of
                // them): the placeholders of the others are no longer in the document (each
                // was found once and replaced by its value), so no entry asks for them.
                drop(deferred);
                Some(self.convert_with(file, at, parsed, Some((b.clone(), values))))
            }
            None => {
                tracing::debug!("{file}{at}: carved parse not confirmed; parsed whole");
                match b.try_slice() {
                    Ok(whole) => self.cloud_config(file, locator, at, whole),
                    Err(e) => {
                        self.report
                            .warn(file, locator, format!("{e}; part ignored"));
                        None
                    }
                }
            }
        }
    }

    /// A cloud-config part of a MIME user data kept on the device (`b`, its decoded content):
    /// carved as a whole cloud-config kept on the device is (see [`Run::carved_config`]) when
    /// it is large, else read (that part alone) and parsed whole.
    ///
    /// The carve reads ranges of the document. A part as it is on the device is carved as a
    /// file of its own ([`Bytes::device_view`]): a block is one read of its range. A decoded
    /// part (base64, gzip, a part of a gzip'd message) cannot seek: each carved block is
    /// derived again from the start of what `b` is made from (`rederive` bytes a pass), when
    /// measured and where written; past [`MAX_REDERIVED_BYTES`] (blocks times a pass) the part
    /// is parsed in memory, as before.
    fn kept_cloud_config(
        &mut self,
        file: &str,
        locator: &str,
        at: String,
        b: &Bytes,
        rederive: usize,
    ) -> Option<Partial> {
        if let Some((doc, c)) = self.carve_part(b, rederive) {
            return self.carved_config(file, locator, at, &doc, c);
        }
        match b.try_slice() {
            Ok(body) => self.cloud_config(file, locator, at, body),
            Err(e) => {
                self.report
                    .warn(file, locator, format!("{e}; part ignored"));
                None
            }
        }
    }

    /// The carve of a large cloud-config part kept on the device (see
    /// [`Run::kept_cloud_config`]) and the document its blocks are read from; `None` (parsed
    /// whole) when small, over the caps a whole parse applies, with a byte-order mark (the
    /// carve reads none), nothing carved, too costly to re-derive, or not read (the whole read
    /// then gives the error).
    fn carve_part(&self, b: &Bytes, rederive: usize) -> Option<(Bytes, carve::Carved)> {
        let cap = self.limits.max_blob_bytes.min(self.limits.max_yaml_bytes);
        if b.len() <= carve::CARVE_THRESHOLD || b.len() > cap {
            return None;
        }
        if b.head(3).ok()?.starts_with(b"\xef\xbb\xbf") {
            return None;
        }
        let view = b.device_view();
        let doc = view.clone().unwrap_or_else(|| b.clone());
        match carve::carve_blob(&doc) {
            Ok(Some(c))
                if view.is_some()
                    || c.values.len().saturating_mul(rederive) <= MAX_REDERIVED_BYTES =>
            {
                Some((doc, c))
            }
            Ok(Some(c)) => {
                tracing::debug!(
                    "{} carved blocks of a decoded part: parsed whole",
                    c.values.len()
                );
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("{e}");
                None
            }
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
        if self.too_large(file, input.data.len()) {
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

    /// Walks a MIME message held in memory: its structure from [`mime_steps`] (the walk the
    /// streamed path shares), each leaf decoded here.
    fn mime(
        &mut self,
        origin: Origin,
        file: &str,
        data: &[u8],
        out: &mut Collected,
        leaf_no: &mut usize,
    ) {
        let Some(steps) = mime_steps(&mut MemSource(data), self.limits) else {
            return;
        };
        for step in steps {
            let (headers, range) = match step {
                Step::Warn(w) => {
                    self.report.warn(file, "", w);
                    continue;
                }
                Step::Leaf { headers, body, .. } => (headers, body),
            };
            *leaf_no += 1;
            let locator = part_locator(&headers, *leaf_no);
            let body = data.get(range).unwrap_or_default();
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
                ctype: headers.content_type.map(|c| c.mimetype),
                filename: headers.filename,
                body,
                locator,
            };
            self.leaf(origin, file, leaf, out, *leaf_no);
        }
    }

    /// What `blob` then `mime` do for a MIME user data kept on the device, without holding it:
    /// the structure found by streaming it ([`KeptSource`]: each level one pass, the parts'
    /// header blocks from their heads), each leaf a recipe over its byte range ([`PartRecipe`]:
    /// the range as it is, or base64-decoded, then maybe gunzipped), measured once and streamed
    /// again where written. A header block the heads do not hold sends the whole blob the
    /// in-memory way; a quoted-printable part, or a part the streamed decoders refuse, is
    /// decoded in memory (that part alone held), so every outcome and warning is the in-memory
    /// path's.
    fn kept_mime(&mut self, b: &Bytes, out: &mut Collected, leaf_no: &mut usize) {
        let (origin, file) = (Origin::UserData, USER_DATA_FILE);
        if self.too_large(file, b.len()) {
            return;
        }
        let mut source = KeptSource::new(b, self.kept_len);
        let steps = mime_steps(&mut source, self.limits);
        let left = source.rederive_left;
        let steps = steps.filter(|steps| {
            // A decompressed message: each leaf is derived again from the message's start when
            // measured and where used (about two passes a leaf), so few leaves stream; what the
            // nested splits derived is charged to the same bound.
            let leaves = steps
                .iter()
                .filter(|s| matches!(s, Step::Leaf { .. }))
                .count();
            left.is_none_or(|left| leaves.saturating_mul(self.kept_len) <= left)
        });
        let Some(steps) = steps else {
            tracing::debug!("{file}: MIME structure not found by streaming, or too many parts to derive again; read whole");
            self.kept_len = 0;
            match b.try_slice() {
                Ok(data) => self.mime(origin, file, data, out, leaf_no),
                // Neither the split nor the whole read: no user data, never an empty one.
                Err(e) => self.unread = Some(e),
            }
            return;
        };
        for step in steps {
            let (headers, range, check) = match step {
                Step::Warn(w) => {
                    self.report.warn(file, "", w);
                    continue;
                }
                Step::Leaf {
                    headers,
                    body,
                    part,
                } => (headers, body, source.check(&part)),
            };
            *leaf_no += 1;
            let locator = part_locator(&headers, *leaf_no);
            let Some(content) =
                self.kept_part(b, range.clone(), check.clone(), &headers, file, &locator)
            else {
                continue;
            };
            let len = match &content {
                PartContent::Mem(v) => v.len(),
                PartContent::Kept(k) => k.len(),
            };
            if !self.budget.charge(len) {
                self.report.warn(
                    file,
                    &locator,
                    "the parse's decoding budget is spent; part ignored",
                );
                continue;
            }
            let ctype = headers.content_type.map(|c| c.mimetype);
            match content {
                PartContent::Mem(v) => {
                    let leaf = Leaf {
                        ctype,
                        filename: headers.filename,
                        body: v.into(),
                        locator,
                    };
                    self.leaf(origin, file, leaf, out, *leaf_no);
                }
                PartContent::Kept(bytes) => {
                    let base64 = headers.transfer_encoding.as_deref() == Some("base64");
                    let part = KeptPart {
                        src: b,
                        range,
                        check,
                        base64,
                        bytes,
                    };
                    let leaf = Part {
                        ctype,
                        filename: headers.filename,
                        locator,
                        content: Content::Mem(Default::default()),
                    };
                    self.kept_leaf(origin, file, leaf, part, out, *leaf_no);
                }
            }
        }
    }

    /// A leaf of a MIME user data kept on the device, transfer-decoded: a recipe over its range
    /// when the streamed decoder gives it, else decoded in memory exactly as [`Run::mime`] does
    /// (same bytes, same warning). `None`: warned, part ignored.
    fn kept_part(
        &mut self,
        b: &Bytes,
        range: std::ops::Range<usize>,
        check: Option<SourceCheck>,
        headers: &mime::Headers,
        file: &str,
        locator: &str,
    ) -> Option<PartContent> {
        let enc = headers.transfer_encoding.as_deref();
        let max = range.len();
        let recipe = match enc {
            Some("quoted-printable") => None,
            Some("base64") => Some(PartRecipe {
                base64: true,
                gunzip: false,
            }),
            _ => Some(PartRecipe::default()),
        };
        if let Some(r) = recipe {
            match Bytes::derived_checked(b, range.clone(), check.clone(), Box::new(r), locator, max)
            {
                Ok(k) => return Some(PartContent::Kept(k)),
                Err(e) if !r.base64 => {
                    self.report
                        .warn(file, locator, format!("{e}; part ignored"));
                    return None;
                }
                Err(_) => {}
            }
        }
        // Quoted-printable, or base64 the streamed decoder refused: the raw part in memory.
        let raw = Bytes::derived_checked(
            b,
            range,
            check,
            Box::new(PartRecipe::default()),
            locator,
            max,
        )
        .and_then(|raw| {
            raw.try_slice()
                .map(|r| mime::decode_body(r, headers).map(|d| d.into_owned()))
        });
        match raw {
            Ok(Ok(v)) => Some(PartContent::Mem(v)),
            Ok(Err(e)) => {
                self.report.warn(
                    file,
                    locator,
                    format!("transfer encoding cannot be decoded ({e}); part ignored"),
                );
                None
            }
            Err(e) => {
                self.report
                    .warn(file, locator, format!("{e}; part ignored"));
                None
            }
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
        let part = Part {
            ctype,
            filename,
            locator,
            content: Content::Mem(body),
        };
        self.classified(origin, file, part, out, n);
    }

    /// [`leaf`](Run::leaf) for a part kept on the device (`part.bytes`, its transfer-decoded
    /// content): a gzip part becomes a recipe that also gunzips (the decompressed bytes never
    /// held), or, when that recipe fails, is decompressed in memory as `leaf` does (the same
    /// warning).
    fn kept_leaf(
        &mut self,
        origin: Origin,
        file: &str,
        mut leaf: Part,
        part: KeptPart,
        out: &mut Collected,
        n: usize,
    ) {
        if !self.admit_leaf(file, &leaf.locator) {
            return;
        }
        let KeptPart {
            src,
            range,
            check,
            base64,
            bytes,
        } = part;
        let head = match bytes.head(2) {
            Ok(h) => h.into_owned(),
            Err(e) => {
                self.report
                    .warn(file, &leaf.locator, format!("{e}; part ignored"));
                return;
            }
        };
        let gzip_type = leaf
            .ctype
            .as_deref()
            .is_some_and(|t| GZIP_TYPES.contains(&t));
        if !(gzip_type || is_gzip(&head)) {
            leaf.content = Content::Kept(bytes);
            return self.classified(origin, file, leaf, out, n);
        }
        let cap = self.limits.max_decompressed_bytes;
        let limit = cap.min(self.budget.left);
        let recipe = PartRecipe {
            base64,
            gunzip: true,
        };
        let what = format!("{} gzip", leaf.locator);
        leaf.ctype = None;
        match Bytes::derived_checked(src, range, check, Box::new(recipe), &what, limit) {
            Ok(g) => {
                self.budget.charge(g.len());
                leaf.content = Content::Kept(g);
            }
            // A bomb: `gunzip`'s warning and charge at once, never decompressed again in
            // memory (a flood of bombs would cost two decompressions each).
            Err(e) if e.get_ref().is_some_and(|i| i.is::<TooLarge>()) => {
                let e = self.budget.refuse(limit, cap);
                self.report.warn(file, &leaf.locator, format!("gzip: {e}"));
                return;
            }
            Err(_) => {
                // The error in the in-memory path's words: decompressed there.
                let data = match bytes.try_slice() {
                    Ok(d) => d,
                    Err(e) => {
                        self.report
                            .warn(file, &leaf.locator, format!("{e}; part ignored"));
                        return;
                    }
                };
                match gunzip(data, cap, &mut self.budget) {
                    Ok(v) => leaf.content = Content::Mem(v.into()),
                    Err(e) => {
                        self.report.warn(file, &leaf.locator, format!("gzip: {e}"));
                        return;
                    }
                }
            }
        }
        self.classified(origin, file, leaf, out, n)
    }

    /// A leaf, admitted and decompressed: classified, then kept as what it is. A part kept on
    /// the device is classified from its head when the head decides it (as `streamed_script`),
    /// else read whole; a script stays on the device; a cloud-config is read (that part alone).
    fn classified(
        &mut self,
        origin: Origin,
        file: &str,
        part: Part,
        out: &mut Collected,
        n: usize,
    ) {
        let Part {
            ctype,
            filename,
            locator,
            content,
        } = part;
        let at = if locator.is_empty() {
            String::new()
        } else {
            format!(" ({locator})")
        };
        let kind = match &content {
            Content::Mem(body) => classify(ctype.as_deref(), body),
            Content::Kept(b) => match kept_kind(ctype.as_deref(), b) {
                Ok(k) => k,
                Err(e) => {
                    self.report
                        .warn(file, &locator, format!("{e}; part ignored"));
                    return;
                }
            },
        };
        let share = |run: &Self, content: Content| match content {
            Content::Mem(body) => run.share(body),
            Content::Kept(b) => b,
        };
        match kind {
            Kind::Empty => {}
            Kind::Script => {
                let name = self.name(filename.as_deref(), n);
                out.scripts.push(Script {
                    name,
                    origin,
                    content: share(self, content),
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
                    content: share(self, content),
                });
            }
            Kind::CloudConfig => {
                out.config_parts += 1;
                let p = match &content {
                    Content::Mem(body) => self.cloud_config(file, &locator, at, body),
                    Content::Kept(b) => {
                        let rederive = self.kept_len.max(b.len());
                        self.kept_cloud_config(file, &locator, at, b, rederive)
                    }
                };
                if let Some(p) = p {
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
                        content: share(self, content),
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
        let p = cloud_config::convert(parsed.node, &mut ctx);
        ctx.done();
        p
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

/// `part N` or `part N "file.sh"`: how warnings and derived bytes name a MIME leaf.
fn part_locator(headers: &mime::Headers, n: usize) -> String {
    match &headers.filename {
        Some(f) => format!("part {} {:?}", n, f.chars().take(64).collect::<String>()),
        None => format!("part {n}"),
    }
}

/// One step of a MIME walk, in document order: a warning about the structure (no locator), or
/// a leaf entity (its headers, its body's byte range).
enum Step {
    Warn(String),
    Leaf {
        headers: mime::Headers,
        body: std::ops::Range<usize>,
        /// The whole entity (header block and body).
        part: std::ops::Range<usize>,
    },
}

/// Where a MIME walk reads its entities: a message in memory, or one kept on the device.
/// Ranges are offsets in the whole message.
trait MimeSource {
    fn len(&self) -> usize;
    /// The header block of the entity at `at`, and its body's range; `None` when this source
    /// cannot find the block (the walk gives up; the caller takes the in-memory way).
    fn entity(
        &mut self,
        at: std::ops::Range<usize>,
    ) -> Option<(Cow<'_, [u8]>, std::ops::Range<usize>)>;
    /// The parts of the multipart body at `body` (at most `max`; the flag says more were there).
    fn split(
        &mut self,
        at: std::ops::Range<usize>,
        body: std::ops::Range<usize>,
        boundary: &str,
        max: usize,
    ) -> Option<(Vec<std::ops::Range<usize>>, bool)>;
}

/// The MIME walk, one for both sources: an explicit stack of entities, each multipart level
/// split once, depth and part count bounded. Pure: what it finds comes back as steps, so a
/// source that gives up (`None`) has changed nothing.
fn mime_steps(src: &mut dyn MimeSource, limits: &UserDataLimits) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut stack = vec![(0..src.len(), 0usize)];
    let mut parts = 0usize;
    let mut capped = false;
    while let Some((at, depth)) = stack.pop() {
        let (headers, body) = {
            let (block, body) = src.entity(at.clone())?;
            (mime::parse_headers(&block), body)
        };
        let mimetype = headers.content_type.as_ref().map(|c| c.mimetype.as_str());
        if let Some(mt) = mimetype.filter(|m| m.starts_with("multipart/")) {
            let boundary = headers
                .content_type
                .as_ref()
                .and_then(|c| c.params.get("boundary"))
                .filter(|b| !b.is_empty());
            let Some(boundary) = boundary else {
                steps.push(Step::Warn(format!(
                    "{mt} without a boundary (at MIME depth {depth}); ignored"
                )));
                continue;
            };
            if depth >= limits.max_mime_depth {
                steps.push(Step::Warn(format!(
                    "multipart nested deeper than {} levels; the nested parts are ignored",
                    limits.max_mime_depth
                )));
                continue;
            }
            let room = limits.max_mime_parts.saturating_sub(parts);
            let (children, more) = src.split(at, body, boundary, room)?;
            parts += children.len();
            if more && !capped {
                capped = true;
                steps.push(Step::Warn(format!(
                    "more than {} MIME parts; the rest are ignored",
                    limits.max_mime_parts
                )));
            }
            for child in children.into_iter().rev() {
                stack.push((child, depth + 1));
            }
            continue;
        }
        steps.push(Step::Leaf {
            headers,
            body,
            part: at,
        });
    }
    Some(steps)
}

use std::borrow::Cow;

/// A MIME message in memory.
struct MemSource<'a>(&'a [u8]);

impl MimeSource for MemSource<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn entity(
        &mut self,
        at: std::ops::Range<usize>,
    ) -> Option<(Cow<'_, [u8]>, std::ops::Range<usize>)> {
        let data = self.0.get(at.clone())?;
        let (end, body) = mime::entity_bounds(data).unwrap_or((data.len(), data.len()));
        Some((data.get(..end)?.into(), at.start + body..at.end))
    }

    fn split(
        &mut self,
        _at: std::ops::Range<usize>,
        body: std::ops::Range<usize>,
        boundary: &str,
        max: usize,
    ) -> Option<(Vec<std::ops::Range<usize>>, bool)> {
        let mut s = mime::Splitter::new(boundary, max, 0, body.start);
        s.feed(self.0.get(body)?);
        let (parts, more) = s.finish();
        Some((parts.into_iter().map(|p| p.range).collect(), more))
    }
}

/// A MIME message kept on the device, never held: each multipart level is one streaming pass
/// (the [`mime::Splitter`]), which keeps each part's first [`mime::PART_HEAD`] bytes, where
/// its header block must end (the message's own block must end in its kept head).
struct KeptSource<'a> {
    blob: &'a Bytes,
    /// Heads of the parts found and not yet walked, by start offset (at most
    /// `max_mime_parts` of them, each at most `PART_HEAD` bytes).
    heads: BTreeMap<usize, Vec<u8>>,
    /// The end and SHA-256 of each part found, by start offset, hashed by the split's pass,
    /// which was checked against the file's digest (or a part's): what a part read again from
    /// the device must be (see [`SourceCheck`]).
    sums: BTreeMap<usize, (usize, [u8; 32])>,
    /// For a message derived from the device (decompressed), the bytes it may still be
    /// derived again in all (`MAX_REDERIVED_BYTES`): each nested multipart's split derives it
    /// twice from the start to the nested part's end, and the leaves are charged after the walk. A
    /// hostile message of 900 empty nested multiparts behind 60 MiB of preamble cost 900 passes
    /// (223 s) before this bound. `None` for bytes read straight from the device (a nested
    /// range is one read).
    rederive_left: Option<usize>,
}

impl<'a> KeptSource<'a> {
    fn new(blob: &'a Bytes, derived_len: usize) -> Self {
        KeptSource {
            blob,
            heads: BTreeMap::new(),
            sums: BTreeMap::new(),
            rederive_left: (derived_len > 0).then_some(MAX_REDERIVED_BYTES),
        }
    }

    /// What the bytes of entity `at` must be when read again: the file's digest for the whole
    /// message, a part's from the split that found it.
    fn check(&self, at: &std::ops::Range<usize>) -> Option<SourceCheck> {
        if *at == (0..self.blob.len()) {
            return Some(SourceCheck {
                range: at.clone(),
                sha256: self.blob.sha256(),
            });
        }
        let &(end, sha256) = self.sums.get(&at.start)?;
        (end == at.end).then(|| SourceCheck {
            range: at.clone(),
            sha256,
        })
    }
}

impl MimeSource for KeptSource<'_> {
    fn len(&self) -> usize {
        self.blob.len()
    }

    fn entity(
        &mut self,
        at: std::ops::Range<usize>,
    ) -> Option<(Cow<'_, [u8]>, std::ops::Range<usize>)> {
        let head: Vec<u8> = if at.start == 0 {
            self.blob.head(STREAM_HEAD).ok()?.into_owned()
        } else {
            self.heads.remove(&at.start)?
        };
        let (end, body) = mime::head_bounds(&head, at.len())?;
        let mut block = head;
        block.truncate(end);
        Some((block.into(), at.start + body..at.end))
    }

    fn split(
        &mut self,
        at: std::ops::Range<usize>,
        body: std::ops::Range<usize>,
        boundary: &str,
        max: usize,
    ) -> Option<(Vec<std::ops::Range<usize>>, bool)> {
        let mut s = mime::Splitter::new(boundary, max, mime::PART_HEAD, body.start).hashing();
        let fed = if body.end == self.blob.len() {
            // The message's tail: the file streamed, the bytes before `body` skipped.
            let mut at = 0usize;
            self.blob.for_each_chunk(&mut |c| {
                let skip = body.start.saturating_sub(at).min(c.len());
                at += c.len();
                s.feed(c.get(skip..).unwrap_or_default());
                Ok(())
            })
        } else {
            // A nested multipart: its range alone, read from the device (or, for a derived
            // message, derived again from its start to the range's end: charged, bounded).
            // Two passes: the checked measure, then the split's.
            if let Some(left) = self.rederive_left.as_mut() {
                let cost = body.end.saturating_mul(2);
                if cost > *left {
                    tracing::debug!(
                        "MIME: nested multiparts would derive the message again past {} MiB; \
                         read whole",
                        MAX_REDERIVED_BYTES >> 20
                    );
                    return None;
                }
                *left -= cost;
            }
            Bytes::derived_checked(
                self.blob,
                body.clone(),
                self.check(&at),
                Box::new(PartRecipe::default()),
                "multipart",
                body.len(),
            )
            .and_then(|b| {
                b.for_each_chunk(&mut |c| {
                    s.feed(c);
                    Ok(())
                })
            })
        };
        if let Err(e) = fed {
            tracing::debug!("{e}");
            return None;
        }
        let (parts, more) = s.finish();
        let mut ranges = Vec::with_capacity(parts.len());
        for p in parts {
            self.heads.insert(p.range.start, p.head);
            if let Some(sum) = p.sha256 {
                self.sums.insert(p.range.start, (p.range.end, sum));
            }
            ranges.push(p.range);
        }
        Some((ranges, more))
    }
}

/// Whether `blob`, a whole user-data file kept on the device, is a MIME message, decided from
/// its head as `blob` decides with `looks_like_mime` (not gzip; its first line, complete in the
/// head, a header field; its header block ending in the head with a `Content-Type` or
/// `MIME-Version`): it is then split and decoded by streaming (`kept_mime`).
fn mime_candidate(blob: &Bytes) -> bool {
    if !blob.is_on_device() {
        return false;
    }
    let Ok(head) = blob.head(STREAM_HEAD) else {
        return false;
    };
    let Some(first) = head
        .iter()
        .position(|&c| c == b'\n')
        .and_then(|nl| head.get(..nl))
    else {
        return false;
    };
    if is_gzip(&head) || !mime::is_field_line(first) {
        return false;
    }
    let Some((end, _)) = mime::head_bounds(&head, blob.len()) else {
        return false;
    };
    let h = mime::parse_headers(head.get(..end).unwrap_or_default());
    h.content_type.is_some() || h.mime_version
}

/// What a part kept on the device is, from its head when the head decides it (the whole part,
/// or a head whose 32-byte starts-with window lies inside it), else from the whole part.
fn kept_kind(ctype: Option<&str>, b: &Bytes) -> std::io::Result<Kind> {
    let head = b.head(STREAM_HEAD)?;
    let h = strip_bom(&head);
    let decided = head.len() == b.len()
        || h.iter()
            .position(|c| !c.is_ascii_whitespace())
            .is_some_and(|s| s + 32 <= h.len());
    if decided {
        Ok(classify(ctype, &head))
    } else {
        Ok(classify(ctype, b.try_slice()?))
    }
}

/// A leaf's content: bytes in memory, or kept on the device.
enum Content<'b> {
    Mem(Cow<'b, [u8]>),
    Kept(Bytes),
}

/// A leaf, ready to classify (see [`Run::classified`]).
struct Part<'b> {
    ctype: Option<String>,
    filename: Option<String>,
    locator: String,
    content: Content<'b>,
}

/// A transfer-decoded part of a MIME message kept on the device: the message, the part's
/// body range, whether it is base64, and its content (a recipe over that range).
struct KeptPart<'a> {
    src: &'a Bytes,
    range: std::ops::Range<usize>,
    /// The digest of the part around `range`, from the checked split (see `KeptSource`).
    check: Option<SourceCheck>,
    base64: bool,
    bytes: Bytes,
}

/// A part's content after transfer decoding: kept on the device, or decoded in memory.
enum PartContent {
    Kept(Bytes),
    Mem(Vec<u8>),
}

/// The recipe of a MIME part kept on the device: its body range, base64-decoded when
/// `base64`, then gunzipped when `gunzip` (several members, as `gunzip`).
#[derive(Debug, Clone, Copy, Default)]
struct PartRecipe {
    base64: bool,
    gunzip: bool,
}

impl crate::model::bytes::Derive for PartRecipe {
    fn identity(&self) -> bool {
        !self.base64 && !self.gunzip
    }

    fn open<'a>(&'a self, src: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
        let src: Box<dyn Read + 'a> = if self.base64 {
            Box::new(Base64Reader::new(src))
        } else {
            src
        };
        if self.gunzip {
            Box::new(flate2::read::MultiGzDecoder::new(src))
        } else {
            src
        }
    }
}

/// Streamed base64 that gives exactly what `mime::decode_body` gives (mailparse: ASCII
/// whitespace dropped, then `BASE64_MIME_PERMISSIVE`): whole 4-symbol groups are decoded by the
/// same decoder as they come, the last group held back to the end (padding is only valid
/// there). Anything else it cannot decode the same way (padding before the end) is an error:
/// the caller then decodes in memory, where the outcome is decided.
struct Base64Reader<'a> {
    src: Box<dyn Read + 'a>,
    /// Symbols read and not yet decoded (fewer than a chunk, plus one group).
    pending: Vec<u8>,
    out: Vec<u8>,
    at: usize,
    eof: bool,
    /// The read buffer (one chunk).
    chunk: Vec<u8>,
}

impl<'a> Base64Reader<'a> {
    fn new(src: Box<dyn Read + 'a>) -> Self {
        Base64Reader {
            src,
            pending: Vec::new(),
            out: Vec::new(),
            at: 0,
            eof: false,
            chunk: vec![0u8; crate::model::bytes::STREAM_CHUNK],
        }
    }

    fn decode(symbols: &[u8]) -> std::io::Result<Vec<u8>> {
        let h = mime::Headers {
            transfer_encoding: Some("base64".into()),
            ..Default::default()
        };
        mime::decode_body(symbols, &h)
            .map(Cow::into_owned)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl Read for Base64Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.at < self.out.len() {
                let n = buf.len().min(self.out.len() - self.at);
                buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            let n = loop {
                match self.src.read(&mut self.chunk) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            self.at = 0;
            if n == 0 {
                self.eof = true;
                self.out = Self::decode(&self.pending)?;
                self.pending.clear();
                continue;
            }
            self.pending.extend(
                self.chunk
                    .get(..n)
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| !c.is_ascii_whitespace()),
            );
            // Whole groups, the last one (maybe padded) held back.
            let ready = self.pending.len().saturating_sub(1) / 4 * 4;
            let groups = self.pending.get(..ready).unwrap_or_default();
            if groups.contains(&b'=') {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "base64 padding before the end",
                ));
            }
            self.out = Self::decode(groups)?;
            self.pending.drain(..ready);
        }
    }
}

#[cfg(test)]
mod tests;
