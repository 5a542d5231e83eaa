//! The re-run fast path: after a run that changed nothing, remembers what its outcome rested on
//! (a digest of the binary, the request, the configuration, the kernel command line and the
//! drive; the metadata of every path the host facts read, listed or found missing, and of every
//! path the plan acts on; the kernel's host name and the NICs by value) and the report it made;
//! a later run whose inputs all compare equal reports the same without reading the facts,
//! planning or applying — on an image root and on the running system after a reboot alike.
//! Reads metadata, sysfs and its own cache file only; the cache is written through `apply`'s
//! writer. Never decides anything the full path would decide differently: any doubt (a
//! missing, unreadable, oversized or mismatching cache, an input that changed after the run
//! that recorded it began, a NIC the drive names not yet named by udev) means the full path.

use std::borrow::Cow;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{Loaded, PlanRequest};
use crate::apply::{ApplyReport, Outcome, StepReport};
use crate::facts::{Inputs, Volatile};
use crate::model::{Report, Warning};
use crate::paths::{Found, Resolver};
use crate::plan::Plan;
use crate::probe::cmdline::KernelArgs;
use crate::state;

/// The cache, relative to the root: beside `status.json` in primer's private state directory.
pub fn cache_path() -> String {
    format!("{}/rerun.json", state::STATE_DIR)
}

/// Largest cache read: it is primer's own file, but a file is bounded whoever wrote it.
pub const MAX_CACHE: u64 = 8 << 20;
/// Most paths one cache holds (the facts walk at most 20,000 entries per directory kind).
const MAX_INPUTS: usize = 100_000;
/// How recent a change may be and still be trusted to show in the timestamps (two ticks of the
/// coarsest kernel clock, HZ=100).
const RACY_NS: i128 = 20_000_000;
/// Bumped whenever the cache's meaning changes.
const FORMAT: u32 = 4;

/// How a path is compared: its metadata (a file: content and metadata; a directory primer only
/// makes or reads the mode of: identity, mode and owner), a listed directory (its entries too:
/// every metadata field), or a link read as a link (`lstat`, never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Path,
    Listed,
    Link,
}

impl How {
    /// Its letter in the cache's input lines.
    fn letter(self) -> char {
        match self {
            How::Path => 'p',
            How::Listed => 'd',
            How::Link => 'l',
        }
    }
}

/// One input path and what `statx` gave right after the run: `None` when it was missing.
/// Borrows the path from the run's facts and plan: a cache of thousands of inputs is written
/// without a copy of each.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Input<'a> {
    path: &'a str,
    how: How,
    seen: Option<[i64; 10]>,
}

/// One input as the cache holds it: one string, `HOW SEEN PATH`, where HOW is a letter
/// ([`How::letter`]) and SEEN the ten numbers of `seen` or `-` (missing), separated by single
/// spaces; the path last (it may hold spaces). One string per input instead of an object of
/// three members and an array of ten numbers: the fast path's parse of the cache is a few
/// hundred JSON tokens, not thousands (issue 15).
fn input_line(i: &Input<'_>, line: &mut String) {
    use std::fmt::Write;
    line.clear();
    line.push(i.how.letter());
    match &i.seen {
        None => line.push_str(" -"),
        Some(v) => {
            for x in v {
                // Writing into a String cannot fail.
                let _ = write!(line, " {x}");
            }
        }
    }
    line.push(' ');
    line.push_str(i.path);
}

/// [`input_line`] read back; `None` when it is not one (a damaged cache: the full path).
/// Scanned by bytes (every separator is an ASCII space, so the path starts on a character
/// boundary): the fast path reads one line per input.
fn parse_input_line(line: &str) -> Option<Input<'_>> {
    let b = line.as_bytes();
    let how = match b.get(..2)? {
        b"p " => How::Path,
        b"d " => How::Listed,
        b"l " => How::Link,
        _ => return None,
    };
    if b.get(2..4) == Some(b"- ") {
        return Some(Input {
            path: line.get(4..)?,
            how,
            seen: None,
        });
    }
    let mut at = 2;
    let mut v = [0i64; 10];
    for x in &mut v {
        let neg = b.get(at) == Some(&b'-');
        at += usize::from(neg);
        let start = at;
        let mut n: i64 = 0;
        while let Some(d) = b.get(at).filter(|c| c.is_ascii_digit()) {
            let d = i64::from(d - b'0');
            // Built on the number's own side of zero: i64::MIN reads back too.
            n = n.checked_mul(10).and_then(|n| {
                if neg {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })?;
            at += 1;
        }
        if at == start || b.get(at) != Some(&b' ') {
            return None;
        }
        at += 1;
        *x = n;
    }
    Some(Input {
        path: line.get(at..)?,
        how,
        seen: Some(v),
    })
}

/// The cache as it is read: strings borrowed from the file's bytes where they need no
/// unescaping. Steps and warnings are arrays of strings (`[id, "skipped" or "unchanged",
/// detail]`, `[file, field, message]`), not objects: fewer tokens to parse.
#[derive(Debug, serde::Deserialize)]
struct Cache<'a> {
    format: u32,
    #[serde(borrow)]
    key: Cow<'a, str>,
    instance_id: String,
    drive_sha256: Option<String>,
    /// What the facts read from the kernel (host name, NICs), compared by value: the JSON of
    /// [`Volatile`], as a string.
    #[serde(borrow)]
    volatile: Cow<'a, str>,
    #[serde(borrow)]
    inputs: Vec<Text<'a>>,
    /// The paths the plan acts on: the run's sweep of temporary files looks beside them.
    sweep: Vec<String>,
    warnings: Vec<(String, String, String)>,
    #[serde(borrow)]
    steps: Vec<(String, Text<'a>, String)>,
}

/// A string borrowed from the cache's bytes when it needs no unescaping. `#[serde(borrow)]`
/// borrows only a field that is a `Cow` itself: inside a `Vec` or a tuple serde's generic
/// `Cow` impl copies every string (review of h10-rerun).
#[derive(Debug, serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The cache as a run records it (the same document as [`Cache`] reads), written streamed
/// through `state`'s JSON writer: never held whole in memory (2,000 `write_files` entries make
/// a cache of ~0.5 MB). Each input is observed as its line is written ([`Snapshot::line`]), not
/// gathered first: a list of tens of thousands of observations (112 bytes each) was held on top
/// of the run's plan and report (issue 15: a re-run's peak).
struct CacheDoc<'a> {
    key: &'a str,
    snapshot: Snapshot<'a>,
    volatile: String,
    sweep: &'a [&'a str],
    plan: &'a Plan,
    report: &'a ApplyReport,
    /// Most bytes the cache may take (`MAX_CACHE`): a longer one is never read back.
    cap: u64,
}

/// A sink that refuses to take more than `left` bytes: the cache is not written past the bound
/// a run reads back (28,000 networkd files made an 11.6 MB cache, written on every unchanged
/// run and refused by every next one).
struct Capped<'o> {
    out: &'o mut dyn std::io::Write,
    left: u64,
    over: &'o std::cell::Cell<bool>,
}

impl std::io::Write for Capped<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.len() as u64 > self.left {
            self.over.set(true);
            return Err(std::io::Error::other(
                "larger than the most a run reads back",
            ));
        }
        let n = self.out.write(b)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The run's inputs (path -> how it is compared, sorted) and what vouches for them, observed
/// one by one while the cache is written; `refused` says why one was not vouched for (the
/// cache is then not written).
struct Snapshot<'a> {
    res: &'a Resolver,
    all: std::collections::BTreeMap<&'a str, How>,
    inputs: &'a Inputs,
    started: SystemTime,
    refused: std::cell::Cell<Option<String>>,
}

impl Snapshot<'_> {
    /// Observes `p` (`how`) now: its line, or `None` (and `refused` set) when the run cannot
    /// vouch for it.
    fn line(&self, obs: &mut Observer<'_>, p: &str, how: How, line: &mut String) -> Option<()> {
        let seen = obs.observe(p, how);
        let why = if seen.is_none() && self.inputs.found.contains(p) {
            Some("was removed since the run read it")
        } else if seen.is_some()
            // The mirror: missing when the facts looked (the resolver remembers each lookup;
            // `Observer` asks the filesystem afresh), there now — a directory's times are not
            // compared, so `racy` cannot tell: the plan was made without it.
            // Only paths the facts looked up: their answer is in the memo (no lookup again).
            && self.inputs.paths.contains(p)
            && matches!(self.res.resolve_found(p), Ok((_, Found::Missing)))
        {
            Some("was created since the run looked for it")
        } else if seen.as_ref().is_some_and(|v| racy(v, self.started)) {
            Some("changed since the run began")
        } else {
            None
        };
        if let Some(why) = why {
            self.refused
                .set(Some(format!("/{} {why}", crate::model::grammar::Esc(p))));
            return None;
        }
        input_line(&Input { path: p, how, seen }, line);
        Some(())
    }
}

impl crate::model::bytes::WriteOut for CacheDoc<'_> {
    fn write_out(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let over = std::cell::Cell::new(false);
        let mut out = Capped {
            out,
            left: self.cap,
            over: &over,
        };
        let mut j = crate::state::PrettyJson::streaming(&mut out);
        j.open(b'{');
        j.key("format");
        j.number(u64::from(FORMAT));
        j.key("key");
        j.string(self.key);
        j.key("instance_id");
        j.string(&self.plan.instance_id);
        j.key("drive_sha256");
        j.opt_string(self.plan.drive_sha256.as_deref());
        j.key("volatile");
        j.string(&self.volatile);
        j.key("inputs");
        j.open(b'[');
        let mut line = String::new();
        let mut obs = Observer::new(self.snapshot.res);
        for (&p, &how) in &self.snapshot.all {
            // Past the bound: observing the rest would be for nothing.
            if over.get() {
                break;
            }
            if self.snapshot.line(&mut obs, p, how, &mut line).is_none() {
                // Not vouched for: no cache (the staged file is removed).
                return Err(std::io::Error::other("an input is not vouched for"));
            }
            j.item();
            j.string(&line);
            j.spill();
        }
        j.close(b']');
        j.key("sweep");
        j.open(b'[');
        for p in self.sweep {
            j.item();
            j.string(p);
            j.spill();
        }
        j.close(b']');
        j.key("warnings");
        j.open(b'[');
        for w in &self.plan.warnings.warnings {
            j.item();
            j.open(b'[');
            for s in [&w.file, &w.field, &w.message] {
                j.item();
                j.string(s);
            }
            j.close(b']');
            j.spill();
        }
        j.close(b']');
        j.key("steps");
        j.open(b'[');
        for (id, outcome, detail) in self.report.steps(&self.plan.steps) {
            j.item();
            j.open(b'[');
            j.item();
            j.string(id);
            j.item();
            j.string(if outcome == Outcome::Skipped {
                SKIPPED
            } else {
                UNCHANGED
            });
            j.item();
            j.string(&detail);
            j.close(b']');
            j.spill();
        }
        j.close(b']');
        j.close(b'}');
        j.finish_to()
    }
}

/// A cached step's outcome (only unchanged and skipped steps: a run that changed or failed
/// anything is never cached).
const SKIPPED: &str = "skipped";
const UNCHANGED: &str = "unchanged";

/// What a run that takes the fast path reports: the plan's warnings and drive hash (no steps:
/// nothing is planned), the report, and the paths its sweep looks beside.
pub struct Fast {
    pub plan: Plan,
    pub report: ApplyReport,
    pub sweep: Vec<String>,
}

/// The digest of everything but the host files the outcome of a run rests on: this binary
/// (version and file identity: a replaced binary is a different one), the request, the kernel
/// command line, the configuration, the drive (every file's digest, its metadata, the origin)
/// and the pin to record. `None` where no fast path is possible (not a Unix system, the binary
/// unknown, or replaced so recently — at or after `started`, the run's start — that the process
/// may be an older binary than the file: its report must not stand for the new one's).
pub fn key(
    req: &PlanRequest,
    kernel: &KernelArgs,
    loaded: &Loaded,
    started: SystemTime,
) -> Option<String> {
    if !cfg!(unix) {
        return None;
    }
    // The running image itself on Linux (`/proc/self/exe` followed: its inode, even once the
    // file was replaced by another), without reading its path: the identity is the key's part.
    let exe = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().ok()?
    };
    let exe_seen = seen(&std::fs::metadata(&exe).ok()?, How::Listed)?;
    if racy(&exe_seen, started) {
        return None;
    }
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        // Length-prefixed: no two sequences of parts hash alike.
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(b"primer rerun");
    part(env!("CARGO_PKG_VERSION").as_bytes());
    for v in exe_seen {
        part(&v.to_le_bytes());
    }
    part(format!("{req:?}").as_bytes());
    part(format!("{kernel:?}").as_bytes());
    part(&serde_json::to_vec(&loaded.config).ok()?);
    // The policy as planning gets it, not only the file it comes from: it also holds what the
    // environment decides (a test build's `PRIMER_TEST_HOSTKEYS_ROOT`).
    part(format!("{:?}", loaded.config.policy()).as_bytes());
    part(&serde_json::to_vec(&loaded.drive).ok()?);
    part(loaded.origin.as_bytes());
    part(format!("{:?}", loaded.pin).as_bytes());
    part(loaded.instance.instance_id.as_bytes());
    for (p, b) in &loaded.drive.files {
        part(p.as_bytes());
        part(&b.sha256());
    }
    Some(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether a change at or after `since` could hide behind the recorded times `v` (a `seen`
/// array): file times come from the kernel's coarse clock (a tick, up to 10 ms, behind), so a
/// change within two ticks before `since` is counted too (as git does for its index).
fn racy(v: &[i64; 10], since: SystemTime) -> bool {
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    let ctime = i128::from(v[5]) * 1_000_000_000 + i128::from(v[6]);
    let mtime = i128::from(v[3]) * 1_000_000_000 + i128::from(v[4]);
    // Whole-second times: a filesystem keeping seconds (ext4 with small inodes, ext3) or two
    // (vfat): a change up to two seconds later reads alike.
    let tick = if v[4] == 0 && v[6] == 0 {
        2_000_000_000
    } else {
        0
    };
    ctime.max(mtime) + tick + RACY_NS >= since
}

/// The fast path's outcome when the cache under the root matches `key`, the kernel's host name
/// (`live`) and the NICs read as they did (and the NICs the drive names are named for good, as
/// a live run's wait requires), and every input path reads as it did; `None` (logged at debug
/// level, with the first difference) otherwise.
pub fn check(lookups: &Resolver, key: &str, live: bool) -> Option<Fast> {
    let bytes = match read_cache(lookups) {
        Ok(b) => b,
        Err(why) => {
            tracing::debug!("re-run fast path not taken: {why}");
            return None;
        }
    };
    let cache = match parse_cache(&bytes) {
        Ok(c) => c,
        Err(why) => {
            tracing::debug!("re-run fast path not taken: /{}: {why}", cache_path());
            return None;
        }
    };
    if cache.format != FORMAT || cache.key != key {
        tracing::debug!(
            "re-run fast path not taken: the binary, request, configuration, kernel command line \
             or drive changed"
        );
        return None;
    }
    let Ok(volatile) = serde_json::from_str::<Volatile>(&cache.volatile) else {
        tracing::debug!(
            "re-run fast path not taken: /{}: unreadable NICs",
            cache_path()
        );
        return None;
    };
    let (now, settled) = crate::facts::read_volatile(lookups, live, &volatile.macs);
    if !settled {
        tracing::debug!("re-run fast path not taken: a NIC the drive names is not named yet");
        return None;
    }
    if now != volatile {
        tracing::debug!("re-run fast path not taken: the host name or the NICs changed");
        return None;
    }
    let mut obs = Observer::new(lookups);
    for Text(line) in &cache.inputs {
        let Some(i) = parse_input_line(line) else {
            tracing::debug!(
                "re-run fast path not taken: /{}: a damaged input",
                cache_path()
            );
            return None;
        };
        if obs.observe(i.path, i.how) != i.seen {
            tracing::debug!(
                "re-run fast path not taken: /{} changed since the last run",
                crate::model::grammar::Esc(i.path)
            );
            return None;
        }
    }
    let mut report = ApplyReport::with_capacity(cache.steps.len());
    for (id, Text(outcome), detail) in cache.steps {
        let outcome = match &*outcome {
            SKIPPED => Outcome::Skipped,
            UNCHANGED => Outcome::Unchanged,
            _ => {
                tracing::debug!(
                    "re-run fast path not taken: /{}: a damaged step",
                    cache_path()
                );
                return None;
            }
        };
        report.push(StepReport {
            id,
            outcome,
            detail,
        });
    }
    tracing::debug!(
        "re-run fast path: {} inputs as the last run left them; facts, planning and apply skipped",
        cache.inputs.len()
    );
    let plan = Plan {
        instance_id: cache.instance_id,
        steps: Vec::new(),
        warnings: Report {
            warnings: cache
                .warnings
                .into_iter()
                .map(|(file, field, message)| Warning {
                    file,
                    field,
                    message,
                })
                .collect(),
        },
        drive_sha256: cache.drive_sha256,
    };
    Some(Fast {
        plan,
        report,
        sweep: cache.sweep,
    })
}

/// The cache file's bytes (bounded).
fn read_cache(lookups: &Resolver) -> Result<Vec<u8>, String> {
    let rel = cache_path();
    let (host, found) = lookups.resolve_found(&rel).map_err(|e| e.to_string())?;
    if found == Found::Missing {
        return Err("no cache".into());
    }
    let too_large = || format!("/{rel}: larger than {MAX_CACHE} bytes");
    let (f, len) = crate::platform::open_for_read(&host).map_err(|e| format!("/{rel}: {e}"))?;
    // Refused from the length its open gave, before a byte is read: a cache of more inputs
    // than fit (28,000 networkd files make 11 MB) was read up to the bound, 8 MiB, on every
    // run, only to be refused.
    if len > MAX_CACHE {
        return Err(too_large());
    }
    // Sized from the file (bounded): one read of the whole, one that finds its end.
    let v = crate::status::read_bounded(f, len, MAX_CACHE).map_err(|e| format!("/{rel}: {e}"))?;
    if v.len() as u64 > MAX_CACHE {
        return Err(too_large());
    }
    Ok(v)
}

/// The cache document parsed (its text checked as UTF-8 once, its strings borrowed from it).
fn parse_cache(bytes: &[u8]) -> Result<Cache<'_>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let c: Cache = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if c.inputs.len() > MAX_INPUTS {
        return Err(format!("more than {MAX_INPUTS} inputs"));
    }
    Ok(c)
}

/// Records, after a run that changed nothing, what a later run needs to take the fast path.
/// `inputs`: the facts'; `plan` and `report`: the run's; `started`: when the run began, before
/// it read anything. Not recorded (and `false`) when the run is not one the fast path may stand
/// for: a step changed, failed or acted (`bootcmd`, every boot: the run is then "changed"), a
/// NIC the drive names was missing on the running system (`live`: a later boot would wait for
/// it; an image root waits for nothing), or an input changed at or after `started` (the plan
/// may rest on what it was before). At most `cap` bytes ([`MAX_CACHE`], the most a run reads
/// back): a longer cache is not written (an error; the one there is left as it was). Written
/// without a flush: a lost or torn cache only means the full path next time.
#[allow(clippy::too_many_arguments)]
pub fn save(
    res: &Resolver,
    key: &str,
    inputs: &Inputs,
    plan: &Plan,
    report: &ApplyReport,
    started: SystemTime,
    live: bool,
    cap: u64,
) -> Result<bool, String> {
    let v = &inputs.volatile;
    if (live && v.macs.iter().any(|m| !v.interfaces.contains_key(m)))
        || report.count(Outcome::Changed) + report.count(Outcome::Failed) > 0
        || report.len() != plan.steps.len()
    {
        return Ok(false);
    }
    let mut all: std::collections::BTreeMap<&str, How> = std::collections::BTreeMap::new();
    for p in &inputs.paths {
        all.insert(p, How::Path);
    }
    // Borrowed from the plan: written as they are, never changed.
    let sweep: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| crate::apply::action_path(&s.action))
        .collect();
    for s in &plan.steps {
        match &s.action {
            // A link is compared as a link: a dangling one retargeted still differs.
            // Unless the facts read the file through it: then it is compared as the file
            // it leads to (its content is an input; a retargeted link leads elsewhere).
            crate::plan::Action::Symlink { path, .. } => {
                all.entry(path).or_insert(How::Link);
            }
            a => {
                if let Some(p) = crate::apply::action_path(a) {
                    all.entry(p).or_insert(How::Path);
                }
            }
        }
    }
    for p in &inputs.listed {
        all.insert(p, How::Listed);
    }
    for p in &inputs.links {
        all.insert(p, How::Link);
    }
    if all.len() > MAX_INPUTS {
        return Ok(false);
    }
    // The snapshot is taken now, after the facts were read: an input changed in between (by
    // anyone) would be recorded as it is now, with a report made from what it was. So every
    // input must be older than the run (`racy`, which also covers the coarse clock: a file
    // changed within a tick of the snapshot could change again in that tick and read alike).
    // Such an input is not vouched for: no cache this time (the next run records one).
    // Each input is observed as the cache is written (`CacheDoc`), in the same order.
    let doc = CacheDoc {
        key,
        snapshot: Snapshot {
            res,
            all,
            inputs,
            started,
            refused: std::cell::Cell::new(None),
        },
        volatile: serde_json::to_string(v).map_err(|e| e.to_string())?,
        sweep: &sweep,
        plan,
        report,
        cap,
    };
    let mut w = crate::apply::fs::Writer::with_resolver(res.clone());
    let private = crate::plan::private_dir_meta();
    let staged = w.stage(
        0,
        &cache_path(),
        &doc,
        crate::facts::Meta {
            mode: 0o600,
            ..private
        },
        private,
    );
    if let Some(why) = doc.snapshot.refused.take() {
        tracing::debug!("re-run fast path not recorded: {why}");
        return Ok(false);
    }
    staged.map_err(|e| format!("/{}: {e}", cache_path()))?;
    match w.commit_unsynced().into_iter().next() {
        None => Ok(true),
        Some((_, e)) => Err(format!("/{}: {e}", cache_path())),
    }
}

/// What `path` is now, as `save` records it: resolved inside the root as the facts resolve it
/// (`How::Link`: its directory only), `None` when missing or unreadable. The path is resolved
/// component by component (`Resolver`): the reference that [`Observer`] takes a shortcut to.
fn observe(res: &Resolver, path: &str, how: How) -> Option<[i64; 10]> {
    let m = if how == How::Link {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let host = if dir.is_empty() {
            res.root().to_path_buf()
        } else {
            match res.resolve_found(dir).ok()? {
                (_, Found::Missing) => return None,
                (h, _) => h,
            }
        };
        std::fs::symlink_metadata(host.join(name)).ok()?
    } else {
        match res.resolve_found(path).ok()? {
            (_, Found::Missing) => return None,
            (h, _) => std::fs::symlink_metadata(h).ok()?,
        }
    };
    seen(&m, how)
}

/// `path`'s directory and last component (`""` and `path` when it has no `/`): as
/// `rsplit_once('/')`, by a byte search (the generic pattern search costs more than the lookup
/// it prepares on the fast path).
#[cfg(unix)]
fn split_last(path: &str) -> (&str, &str) {
    match path.as_bytes().iter().rposition(|&c| c == b'/') {
        // An ASCII byte's position: a character boundary on both sides.
        Some(at) => (&path[..at], &path[at + 1..]),
        None => ("", path),
    }
}

/// Most directory descriptors an [`Observer`] keeps open (the inputs are sorted, so a
/// directory's entries come together, interleaved with a few subdirectories' at most).
#[cfg(unix)]
const OPEN_DIRS: usize = 8;

/// [`observe`] for a run of paths, with one lookup per path: each path's directory is resolved
/// (through the resolver) and opened once while it is among the last [`OPEN_DIRS`] used, and
/// the last component is looked up in it (`fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`), instead
/// of a lookup for the resolution's last step and another for the metadata, each walking the
/// whole path again. The same answer as [`observe`]: a last component that is not a symlink is
/// what resolution would stop at; one that is (followed unless `How::Link`), or a path that is
/// not clean, takes [`observe`] itself.
struct Observer<'a> {
    res: &'a Resolver,
    /// Directories recently used, the last used last, with their descriptor (`None`: missing
    /// or unreadable, so every entry in it is too).
    #[cfg(unix)]
    dirs: Vec<(String, Option<std::os::fd::OwnedFd>)>,
}

impl<'a> Observer<'a> {
    fn new(res: &'a Resolver) -> Self {
        Observer {
            res,
            #[cfg(unix)]
            dirs: Vec::new(),
        }
    }

    #[cfg(unix)]
    fn observe(&mut self, path: &str, how: How) -> Option<[i64; 10]> {
        use nix::sys::stat::{fstatat, SFlag};
        let (dir, name) = split_last(path);
        if !crate::paths::is_clean_relative(path) || name.is_empty() {
            return observe(self.res, path, how);
        }
        if let Some(at) = self.dirs.iter().position(|(d, _)| d == dir) {
            let used = self.dirs.remove(at);
            self.dirs.push(used);
        } else {
            let fd = self.open_dir(dir);
            if self.dirs.len() == OPEN_DIRS {
                self.dirs.remove(0);
            }
            self.dirs.push((dir.to_string(), fd));
        }
        let fd = self.dirs.last()?.1.as_ref()?;
        let st = fstatat(fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFLNK && how != How::Link {
            return observe(self.res, path, how);
        }
        let bits = |v: u64| i64::from_ne_bytes(v.to_ne_bytes());
        let times = !(kind == SFlag::S_IFDIR && how == How::Path);
        let t = |v: i64| if times { v } else { 0 };
        // As `seen` reads a `Metadata`: the same fields, the same encoding.
        Some([
            bits(st.st_dev),
            bits(st.st_ino),
            t(st.st_size),
            t(st.st_mtime),
            t(st.st_mtime_nsec),
            t(st.st_ctime),
            t(st.st_ctime_nsec),
            i64::from(st.st_mode),
            i64::from(st.st_uid),
            i64::from(st.st_gid),
        ])
    }

    /// `dir` (a clean relative path, or empty: the root) opened (`O_PATH`), resolved inside the
    /// root; `None` when it is missing or not a directory. A directory whose parent is open
    /// is opened in it (`openat`, not following a symlink: a missing name is missing, and
    /// anything else but a directory — a symlink, a file — is left to the resolver); any other
    /// through the resolver's memo.
    #[cfg(unix)]
    fn open_dir(&self, dir: &str) -> Option<std::os::fd::OwnedFd> {
        use nix::errno::Errno;
        use nix::fcntl::{open, openat, OFlag};
        use nix::sys::stat::Mode;
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let (parent, name) = split_last(dir);
        if let Some(Some(pfd)) = (!dir.is_empty())
            .then(|| self.dirs.iter().find(|(d, _)| d == parent))
            .flatten()
            .map(|(_, fd)| fd.as_ref())
        {
            match openat(pfd, name, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
                Ok(fd) => return Some(fd),
                Err(Errno::ENOENT) => return None,
                Err(_) => {}
            }
        }
        let host = if dir.is_empty() {
            self.res.root().to_path_buf()
        } else {
            match self.res.resolve_found(dir) {
                Ok((_, Found::Missing)) | Err(_) => return None,
                Ok((h, _)) => h,
            }
        };
        open(&host, flags, Mode::empty()).ok()
    }

    #[cfg(not(unix))]
    fn observe(&mut self, path: &str, how: How) -> Option<[i64; 10]> {
        observe(self.res, path, how)
    }
}

/// dev, ino, size, mtime (s, ns), ctime (s, ns), mode, uid, gid: ctime moves on every write,
/// chmod, chown and rename. A directory compared as a plain path keeps identity, type, mode and
/// owner only (its entries are not an input; primer's own files landing in it are not a change).
#[cfg(unix)]
fn seen(m: &std::fs::Metadata, how: How) -> Option<[i64; 10]> {
    use std::os::unix::fs::MetadataExt;
    let bits = |v: u64| i64::from_ne_bytes(v.to_ne_bytes());
    let times = !(m.is_dir() && how == How::Path);
    let t = |v: i64| if times { v } else { 0 };
    Some([
        bits(m.dev()),
        bits(m.ino()),
        t(bits(m.size())),
        t(m.mtime()),
        t(m.mtime_nsec()),
        t(m.ctime()),
        t(m.ctime_nsec()),
        i64::from(m.mode()),
        i64::from(m.uid()),
        i64::from(m.gid()),
    ])
}

/// No file identity that ctime-grade metadata vouches for: no fast path.
#[cfg(not(unix))]
fn seen(_m: &std::fs::Metadata, _how: How) -> Option<[i64; 10]> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache's input lines and step outcomes are read as borrowed strings, not copies.
    #[test]
    fn cache_strings_are_borrowed() {
        let doc = r#"{"format":4,"key":"k","instance_id":"i","drive_sha256":null,"volatile":"v","inputs":["p - a b"],"sweep":[],"warnings":[],"steps":[["id","unchanged","d"]]}"#;
        let c: Cache = serde_json::from_str(doc).unwrap();
        assert!(matches!(c.inputs[0].0, Cow::Borrowed("p - a b")));
        assert!(matches!(c.steps[0].1 .0, Cow::Borrowed("unchanged")));
    }
    use std::time::{Duration, UNIX_EPOCH};

    /// The observer's shortcut (directories opened once, the entry by `fstatat`) answers as
    /// resolution does, path by path: plain entries, links followed (relative, absolute and
    /// so re-rooted, climbing above the root) or read as links, directories through links,
    /// missing entries and directories, a file used as a directory, a path that is not clean.
    #[cfg(unix)]
    #[test]
    fn the_observer_sees_what_resolution_sees() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/file"), "x").unwrap();
        std::fs::write(r.join("plain"), "y").unwrap();
        symlink("file", r.join("etc/link")).unwrap();
        symlink("/etc/file", r.join("etc/abslink")).unwrap();
        symlink("/etc", r.join("dirlink")).unwrap();
        symlink("/nowhere", r.join("etc/dangling")).unwrap();
        symlink("../../..", r.join("etc/up")).unwrap();
        let paths = [
            "etc",
            "etc/file",
            "etc/link",
            "etc/abslink",
            "etc/dangling",
            "etc/missing",
            "etc/sub",
            "dirlink",
            "dirlink/file",
            "dirlink/link",
            "dirlink/sub",
            "etc/up/etc/file",
            "etc/up/plain",
            "missing/x",
            "missing/x/y",
            "plain/x",
            "plain",
            "etc/sub/../file",
        ];
        for how in [How::Path, How::Listed, How::Link] {
            let res = Resolver::new(r);
            let mut obs = Observer::new(&res);
            for p in paths {
                let want = observe(&Resolver::new(r), p, how);
                assert_eq!(obs.observe(p, how), want, "{p} {how:?}");
            }
            assert!(obs.observe("etc/file", how).is_some());
            assert!(obs.observe("dirlink/link", how).is_some());
        }
    }

    /// A path the facts looked for and found missing, there by the time the run records (a
    /// directory: its times are not compared, so `racy` cannot tell), is not vouched for: no
    /// cache (review of h8-rerun: the observer no longer asks the resolver's memo).
    #[cfg(unix)]
    #[test]
    fn an_input_created_since_the_facts_found_it_missing_is_not_recorded() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        let inputs = Inputs {
            paths: ["etc/d".to_string()].into_iter().collect(),
            ..Default::default()
        };
        let started = SystemTime::now() - Duration::from_secs(60);
        let plan = Plan::default();
        let report = ApplyReport::default();
        // Still missing: recorded.
        let res = Resolver::new(r);
        let _ = res.resolve_found("etc/d");
        assert_eq!(
            save(&res, "k", &inputs, &plan, &report, started, false, MAX_CACHE),
            Ok(true)
        );
        // As written: each input's line as it was observed.
        let cache = r.join(cache_path());
        let before = std::fs::read(&cache).unwrap();
        let c = parse_cache(&before).unwrap();
        let lines: Vec<_> = c.inputs.iter().map(|t| parse_input_line(&t.0)).collect();
        assert_eq!(
            lines,
            [Some(Input {
                path: "etc/d",
                how: How::Path,
                seen: None
            })]
        );
        // Created after the facts looked: not recorded, the cache there left as it was and
        // no staged file left beside it.
        let res = Resolver::new(r);
        let _ = res.resolve_found("etc/d");
        std::fs::create_dir(r.join("etc/d")).unwrap();
        assert_eq!(
            save(&res, "k", &inputs, &plan, &report, started, false, MAX_CACHE),
            Ok(false)
        );
        assert_eq!(std::fs::read(&cache).unwrap(), before);
        assert_only_the_cache_beside(&cache);
    }

    /// The cache's directory holds the cache alone: no staged file left beside it.
    #[cfg(unix)]
    fn assert_only_the_cache_beside(cache: &std::path::Path) {
        let names: Vec<_> = std::fs::read_dir(cache.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["rerun.json"]);
    }

    /// A cache that would be longer than the bound a run reads back is not written: the one
    /// there is left as it was and no staged file is left beside it.
    #[cfg(unix)]
    #[test]
    fn a_cache_over_the_bound_is_not_written() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        let inputs = Inputs {
            paths: (0..200).map(|i| format!("etc/f{i:04}")).collect(),
            ..Default::default()
        };
        let started = SystemTime::now() - Duration::from_secs(60);
        let (plan, report) = (Plan::default(), ApplyReport::default());
        let res = Resolver::new(r);
        assert_eq!(
            save(&res, "k", &inputs, &plan, &report, started, false, 1 << 20),
            Ok(true)
        );
        let cache = r.join(cache_path());
        let before = std::fs::read(&cache).unwrap();
        assert!(before.len() > 4096, "{}", before.len());
        let res = Resolver::new(r);
        let e = save(&res, "k", &inputs, &plan, &report, started, false, 4096).unwrap_err();
        assert!(e.contains("the most a run reads back"), "{e}");
        assert_eq!(std::fs::read(&cache).unwrap(), before);
        assert_only_the_cache_beside(&cache);
    }

    /// A cache longer than the bound is refused from its length, without a byte read (a cache
    /// of more inputs than fit was read up to the bound, 8 MiB, on every run).
    #[cfg(target_os = "linux")]
    #[test]
    fn an_oversized_cache_is_refused_unread() {
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join(cache_path());
        std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&cache).unwrap();
        f.set_len(MAX_CACHE + 1).unwrap();
        // What this thread read so far (the test harness runs others beside it).
        let read = || {
            let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let res = Resolver::new(t.path());
        let before = read();
        let e = read_cache(&res).unwrap_err();
        let bytes = read() - before;
        assert!(e.ends_with("larger than 8388608 bytes"), "{e}");
        assert!(bytes < 4096, "{bytes} bytes read");
        // At the bound: read.
        f.set_len(MAX_CACHE).unwrap();
        assert_eq!(read_cache(&res).unwrap().len() as u64, MAX_CACHE);
    }

    /// An input line reads back as it was written (missing, extreme numbers, a path with
    /// spaces); a damaged one does not read.
    #[test]
    fn input_lines_read_back() {
        let mut line = String::new();
        for i in [
            Input {
                path: "etc/hostname",
                how: How::Path,
                seen: Some([1793, 32777, 24, -5, 0, i64::MAX, i64::MIN, 33188, 0, 0]),
            },
            Input {
                path: "etc/my dir/a b ",
                how: How::Listed,
                seen: None,
            },
            Input {
                path: "etc/resolv.conf",
                how: How::Link,
                seen: Some([0; 10]),
            },
        ] {
            input_line(&i, &mut line);
            assert_eq!(parse_input_line(&line), Some(i));
        }
        for bad in [
            "",
            "p",
            "x - a",
            "p 1 2 3 a",
            "p 1 2 3 4 5 6 7 8 9 10",
            "p 1 2 3 4 5 6 7 8 9 99999999999999999999 a",
            "p 1 2 3 4 5 6 7 8 9 -x a",
            "p 1  2 3 4 5 6 7 8 9 10 a",
        ] {
            assert_eq!(parse_input_line(bad), None, "{bad:?}");
        }
    }

    fn at(secs: i64, nanos: i64) -> [i64; 10] {
        [0, 0, 0, secs, nanos, secs, nanos, 0, 0, 0]
    }

    /// An input changed at or after the run began, or within two coarse-clock ticks before it,
    /// is not vouched for; one older than that is.
    #[test]
    fn racy_inputs_are_those_changed_since_just_before_the_run() {
        let started = UNIX_EPOCH + Duration::new(1_000, 500_000_000);
        assert!(racy(&at(1_000, 500_000_000), started));
        assert!(racy(&at(1_001, 0), started));
        assert!(racy(&at(1_000, 490_000_000), started));
        assert!(racy(&at(1_000, 480_000_000), started));
        assert!(!racy(&at(1_000, 479_999_999), started));
        // Whole-second times (a coarse filesystem): two seconds more are racy.
        assert!(racy(&at(999, 0), started));
        assert!(!racy(&at(998, 0), started));
        assert!(!racy(&at(999, 1), started));
        // The change time alone (a chmod keeps the modification time) counts too.
        let mut v = at(999, 0);
        v[5] = 1_000;
        v[6] = 499_000_000;
        assert!(racy(&v, started));
    }
}
