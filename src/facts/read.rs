//! Reading the host facts: the operating-system side of `facts` (mode and owner from file
//! metadata — on Windows primer's private/public ACL model —, the kernel's host name, salt
//! bytes from the system RNG). Reads only, inside the root; what to read
//! comes from the planner's `Wanted`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::Path;

use super::{net, parse_passwd, FileFact, HostFacts, Inputs, Meta, StateKey, Wanted};
use crate::paths::{Found, Resolver};
use crate::state::{self, Record};

/// Largest host file read for comparison; larger ones are treated as different (rewritten).
const MAX_FACT_FILE: u64 = 64 << 20;
/// Bounds on walking primer's own copy directory.
const MAX_COPY_ENTRIES: usize = 20_000;
const MAX_COPY_DEPTH: usize = 32;

/// Reads the host facts the planner asked for (`wanted`) under `root`; `live`: the root is the
/// running system.
pub fn read_host_facts(root: &Path, wanted: &Wanted, live: bool) -> HostFacts {
    read_host_facts_in(&Resolver::new(root), wanted, live)
}

/// [`read_host_facts`] through `root`, a resolver the caller may hand on to the run's writer
/// afterwards (its memo then spares the writer the same lookups).
pub fn read_host_facts_in(root: &Resolver, wanted: &Wanted, live: bool) -> HostFacts {
    // One resolver for the whole read-only pass: each directory on the way (`etc`, the state
    // tree) is looked up once, and a missing one (`usr` of a bare image) once, not per file.
    let mut facts = HostFacts {
        live,
        os: super::TargetOs::HOST,
        ..Default::default()
    };
    // Every path looked at, found or not, for the re-run fast path (`HostFacts::inputs`).
    let mut inp = Inputs::default();
    if live {
        facts.kernel_hostname = os::hostname();
        inp.volatile.hostname = facts.kernel_hostname.clone();
    }
    inp.paths
        .extend(["etc/hostname", "etc/hosts", "etc/passwd"].map(String::from));
    for p in ["etc/hostname", "etc/hosts"] {
        read_file_fact(root, p, &mut facts);
    }
    if let Some(f) = read_file(root, "etc/passwd") {
        facts.passwd = parse_passwd(&String::from_utf8_lossy(&f.content));
    }
    let key_users = &wanted.key_users;
    for pw in facts
        .passwd
        .iter()
        .filter(|p| key_users.contains(&p.name))
        .cloned()
        .collect::<Vec<_>>()
    {
        let home = pw.home.trim_matches('/');
        let ssh_dir = if home.is_empty() {
            ".ssh".to_string()
        } else {
            format!("{home}/.ssh")
        };
        if let Some(m) = read_meta(root, &ssh_dir).filter(|(_, is_dir)| *is_dir) {
            facts.dirs.insert(ssh_dir.clone(), m.0);
        }
        let keys = format!("{ssh_dir}/authorized_keys");
        read_file_fact(root, &keys, &mut facts);
        inp.paths.insert(ssh_dir);
        inp.paths.insert(keys);
    }
    let (net, net_files) =
        net::read_net_facts_in(root, &wanted.macs, live, wanted.net_wait, &mut inp);
    facts.files.extend(net_files);
    facts.network = net;
    for rel in &wanted.files {
        read_file_fact(root, rel, &mut facts);
    }
    inp.paths.extend(wanted.files.iter().cloned());
    inp.paths.extend(wanted.present.iter().cloned());
    inp.paths.extend(wanted.measured.iter().cloned());
    for rel in &wanted.present {
        // A missing file (or a missing directory above it) is known without a lookup.
        let is_file = root
            .resolve_found(rel)
            .ok()
            .filter(|(_, found)| !matches!(found, Found::Missing | Found::Dir))
            .and_then(|(p, _)| fs::metadata(p).ok())
            .is_some_and(|m| m.is_file());
        if is_file {
            facts.present.insert(rel.clone());
        }
    }
    if let Some(skel) = wanted.skel {
        facts.skel = read_skel(root, skel, &mut inp);
        // Homes: whether each exists, its owner, and whether it is empty.
        for (name, homedir) in &wanted.homes {
            let home = homedir
                .clone()
                .or_else(|| {
                    facts
                        .passwd
                        .iter()
                        .find(|p| &p.name == name)
                        .map(|p| p.home.clone())
                })
                .unwrap_or_else(|| format!("/home/{name}"));
            let rel = home.trim_matches('/').to_string();
            if rel.is_empty() {
                continue;
            }
            inp.paths.insert(rel.clone());
            inp.listed.insert(rel.clone());
            if let Some((m, true)) = read_meta(root, &rel) {
                facts.dirs.insert(rel.clone(), m);
                let entries: Vec<String> = list_dir(root, &rel)
                    .map(|(_, rd)| {
                        rd.flatten()
                            .take(MAX_SKEL_FILES + 1)
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            // An interrupted run's temporary files: swept when the skeleton
                            // is written again.
                            .filter(|n| !crate::paths::is_temp_name(n))
                            .collect()
                    })
                    .unwrap_or_default();
                // What of the skeleton is already there (an interrupted run's work).
                let skel: Vec<String> = facts.skel.iter().map(|(sub, _)| sub.clone()).collect();
                for sub in skel {
                    let mut d = sub.as_str();
                    while let Some((parent, _)) = d.rsplit_once('/') {
                        let dir = format!("{rel}/{parent}");
                        inp.paths.insert(dir.clone());
                        if let Some((m, true)) = read_meta(root, &dir) {
                            facts.dirs.insert(dir, m);
                        }
                        d = parent;
                    }
                    let file = format!("{rel}/{sub}");
                    read_file_fact(root, &file, &mut facts);
                    inp.paths.insert(file);
                }
                facts.home_entries.insert(rel, entries);
            }
        }
        // Salts for password hashes; a failure leaves zeros, which only makes the salt
        // predictable (the hash is still correct), so it is logged, not fatal.
        if let Err(e) = os::random(&mut facts.salt) {
            tracing::warn!("{e}; password salts are not random");
        }
    }
    facts.state_key = read_state_key(root);
    inp.paths.insert(state::KEY_PATH.to_string());
    if let Some(st) = &wanted.state {
        inp.paths.insert(st.record.clone());
        inp.paths.extend(st.files.iter().cloned());
        read_file_fact(root, &st.record, &mut facts);
        if let Some(f) = facts.files.get_mut(&st.record) {
            facts.record = serde_json::from_slice::<Record>(&f.content).ok();
            // Otherwise only compared with the run's new record as a whole (`plan_record`):
            // kept as its length and digest, not held through planning beside its parse
            // (28,000 steps: 3.4 MB; issue 15).
            let content = std::mem::take(&mut f.content);
            f.measured = Some(super::Measured {
                len: content.len() as u64,
                sha256: <sha2::Sha256 as sha2::Digest>::digest(&content).into(),
            });
        }
        for rel in &st.files {
            read_file_fact(root, rel, &mut facts);
        }
        inp.paths.extend(st.compared.iter().cloned());
        for rel in &st.compared {
            if let Some(f) = read_or_measure(root, rel) {
                facts.files.insert(rel.clone(), f);
            }
        }
        for dir in &st.dirs {
            for rel in walk_files(root, dir, &mut inp) {
                read_file_fact(root, &rel, &mut facts);
            }
        }
        for dir in &st.measured_dirs {
            for rel in walk_files(root, dir, &mut inp) {
                measure_file_fact(root, &rel, &mut facts);
            }
        }
        for rel in walk_files(root, &st.copy_dir, &mut inp) {
            measure_file_fact(root, &rel, &mut facts);
            facts.copy_files.insert(rel);
        }
    }
    // Last: a path some parser wanted is already held, and stays so.
    for rel in &wanted.measured {
        measure_file_fact(root, rel, &mut facts);
    }
    // Each target opened once for all of its texts, in the entries' order. A text the record
    // vouches for (appended for this instance) is not looked for: a file grown since (a line
    // added by hand) would otherwise be scanned once per entry.
    let mut by_path: BTreeMap<&str, Vec<&crate::model::Bytes>> = BTreeMap::new();
    for a in &wanted.appends {
        let sha = a.text.sha256();
        let vouched = facts.record.as_ref().is_some_and(|r| {
            r.steps
                .get(&a.step)
                .is_some_and(|i| state::append_input_names(i, &sha))
        });
        if vouched {
            facts.appended.insert((a.path.clone(), sha));
        } else {
            by_path.entry(a.path.as_str()).or_default().push(&a.text);
        }
    }
    let mut budget = MAX_APPEND_SCAN_BYTES;
    for (rel, texts) in by_path {
        let (found, unsearched) = file_holds_texts(root, rel, &texts, &mut budget);
        for text in found {
            facts.appended.insert((rel.to_string(), text.sha256()));
        }
        for text in unsearched {
            facts
                .append_unsearched
                .insert((rel.to_string(), text.sha256()));
        }
    }
    // An append target's content was read (searched) too.
    inp.paths
        .extend(wanted.appends.iter().map(|a| a.path.clone()));
    // Whatever was found is an input too (walked files, files a parser asked for).
    inp.paths.extend(facts.files.keys().cloned());
    inp.paths.extend(facts.dirs.keys().cloned());
    inp.paths.extend(inp.listed.iter().cloned());
    inp.found.extend(facts.files.keys().cloned());
    inp.found.extend(facts.dirs.keys().cloned());
    inp.found.extend(facts.present.iter().cloned());
    let stand_in = FileFact::held(
        Vec::new(),
        Meta {
            mode: 0,
            uid: 0,
            gid: 0,
        },
    );
    compact_map(&mut facts.files, stand_in);
    compact_paths(&mut inp.paths);
    compact_paths(&mut inp.found);
    facts.inputs = inp;
    facts
}

/// Maps smaller than this are left as they are: a few half-full leaves cost less than the
/// rebuild (an 11-NIC re-run's maps hold tens of entries: +35,000 instructions rebuilt).
const COMPACT_FROM: usize = 256;

/// A map built in key order (a walk's sorted files, keys copied from another map) rebuilt into
/// full nodes: such a map's leaves stay barely half full (a full leaf splits 6 + 5 and its left
/// half is never filled again), 1.8 MB of nodes for a re-run's 10,000 measured files (issue 15).
/// `append` into a map of one entry builds both maps' entries into full nodes, freeing the old
/// ones as it goes; the one entry is a copy of the first key with an empty `stand_in`, replaced
/// by the map's own (of equal keys, `append` keeps the appended one). Not `pop_first`: its
/// rebalancing code cost kilobytes of binary.
fn compact_map<V>(map: &mut BTreeMap<String, V>, stand_in: V) {
    if map.len() < COMPACT_FROM {
        return;
    }
    let Some(first) = map.keys().next().cloned() else {
        return;
    };
    let mut full = BTreeMap::new();
    full.insert(first, stand_in);
    full.append(map);
    *map = full;
}

/// [`compact_map`] for a set of paths.
fn compact_paths(set: &mut BTreeSet<String>) {
    if set.len() < COMPACT_FROM {
        return;
    }
    let Some(first) = set.first().cloned() else {
        return;
    };
    let mut full = BTreeSet::new();
    full.insert(first);
    full.append(set);
    *set = full;
}

/// Rabin-Karp over the Mersenne prime 2^61 - 1: two different windows of `m` bytes share a
/// fingerprint for at most `m - 1` of the ~2^61 bases, and the base is random per run.
const RK_PRIME: u64 = (1 << 61) - 1;

/// Fingerprint collisions checked (each costs re-reading and hashing one window) before the
/// search gives up (the text is then taken as not there, as a file past the cap is): with a
/// random base this is only reached by chance, at odds of about `m / 2^61` per window.
const MAX_FALSE_MATCHES: u32 = 8;
/// File bytes the run's `append` searches may scan in all (texts not found at their file's
/// end): 64 scans of a file at `MAX_FACT_FILE` (a first run of 40 appends to a 60 MiB file
/// scans it 40 times: no text is there yet). A text left unsearched is not appended unless
/// the record vouches for it.
const MAX_APPEND_SCAN_BYTES: u64 = 64 * MAX_FACT_FILE;

fn rk_mul(a: u64, b: u64) -> u64 {
    let x = u128::from(a) * u128::from(b);
    // 2^61 is 1 modulo the prime: the high part folds onto the low one.
    let r = (x as u64 & RK_PRIME) + (x >> 61) as u64;
    let r = (r & RK_PRIME) + (r >> 61);
    if r >= RK_PRIME {
        r - RK_PRIME
    } else {
        r
    }
}

fn rk_add(a: u64, b: u64) -> u64 {
    let r = a + b;
    if r >= RK_PRIME {
        r - RK_PRIME
    } else {
        r
    }
}

/// Reads from byte `at` of `f` until `buf` is full or the file ends; the bytes read.
fn read_at(f: &fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    use std::os::unix::fs::FileExt;
    #[cfg(windows)]
    use std::os::windows::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or_default();
        #[cfg(unix)]
        let r = f.read_at(rest, at + done as u64);
        #[cfg(windows)]
        let r = f.seek_read(rest, at + done as u64);
        match r {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A forward reader of one file by positioned reads (two of them walk one file apart).
struct Cursor<'a> {
    f: &'a fs::File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`, bytes valid in `buf`, and the next byte's offset.
    start: u64,
    len: usize,
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn new(f: &'a fs::File, at: u64) -> Cursor<'a> {
        Cursor {
            f,
            buf: vec![0; MEASURE_CHUNK],
            start: at,
            len: 0,
            pos: at,
        }
    }

    /// The next byte; `None` at the end of the file.
    fn next(&mut self) -> std::io::Result<Option<u8>> {
        let mut i = usize::try_from(self.pos - self.start).unwrap_or(usize::MAX);
        if i >= self.len {
            self.start = self.pos;
            self.len = read_at(self.f, &mut self.buf, self.pos)?;
            i = 0;
        }
        // Only what the last read gave: at the end of the file `len` is 0 and the buffer stale.
        let b = self.buf.get(..self.len).and_then(|v| v.get(i)).copied();
        if b.is_some() {
            self.pos += 1;
        }
        Ok(b)
    }
}

/// SHA-256 of the `len` bytes of `f` from `at`; `None` when the file is shorter.
fn window_sha256(f: &fs::File, at: u64, len: u64, buf: &mut [u8]) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = buf.get_mut(..want)?;
        let n = read_at(f, chunk, at + done).ok()?;
        if n < want {
            return None;
        }
        h.update(&*chunk);
        done += want as u64;
    }
    Some(h.finalize().into())
}

/// Texts of `append` entries, as `file_holds_texts` sorts them.
type Texts<'t> = Vec<&'t crate::model::Bytes>;

/// Which of `texts` (not empty) the regular file `rel` under the root holds anywhere: an
/// `append` whose text is there was appended before, even by a run stopped before its record.
/// Neither is held: the end of the file (where an append lands) is checked by digest first,
/// then every window by a rolling fingerprint, a match confirmed by the window's SHA-256. Both
/// within `MAX_FACT_FILE`; a text that cannot be read again is taken as not there (the write
/// reads it too, and fails there naming it).
///
/// `texts` are a path's `append` entries in order: a chain of appends lies at the file's end
/// in that order, so each text is first looked for where the texts after it end (one digest
/// of the text's length, walking back from the end); only a text not found there costs a scan
/// of the file (a re-run of 40 appends to a file whose time changed scanned it 39 times).
/// Scans are paid from `budget` (file bytes; the run's is `MAX_APPEND_SCAN_BYTES`): a text
/// not at the end once it is spent is not searched. Returns the texts found and those not
/// searched.
fn file_holds_texts<'t>(
    root: &Resolver,
    rel: &str,
    texts: &[&'t crate::model::Bytes],
    budget: &mut u64,
) -> (Texts<'t>, Texts<'t>) {
    let Some((_, f, meta)) = open_regular(root, rel) else {
        return Default::default();
    };
    let n = meta.len();
    if n > MAX_FACT_FILE {
        return Default::default();
    }
    let mut buf = vec![0u8; MEASURE_CHUNK];
    let mut found = Vec::new();
    let mut rest = Vec::new();
    // Where the texts after this one begin (the chain so far).
    let mut end = n;
    for &text in texts.iter().rev() {
        let m = text.len() as u64;
        if m == 0 || m > n {
            continue;
        }
        if m <= end && window_sha256(&f, end - m, m, &mut buf) == Some(text.sha256()) {
            end -= m;
            found.push(text);
        } else {
            rest.push(text);
        }
    }
    let mut unsearched = Vec::new();
    for text in rest {
        if *budget < n {
            tracing::warn!(
                "{rel}: an appended text of {} bytes not searched for (scan budget of {} MiB \
                 spent)",
                text.len(),
                MAX_APPEND_SCAN_BYTES >> 20
            );
            unsearched.push(text);
            continue;
        }
        *budget -= n;
        if file_holds_text(&f, n, rel, text, &mut buf) {
            found.push(text);
        }
    }
    (found, unsearched)
}

/// [`file_holds_texts`] for one `text` (not empty, not longer than the file's `n` bytes) in
/// the open file `f`: its end by digest, then every window.
fn file_holds_text(
    f: &fs::File,
    n: u64,
    rel: &str,
    text: &crate::model::Bytes,
    buf: &mut [u8],
) -> bool {
    let m = text.len() as u64;
    let want = text.sha256();
    // Where an append lands: one digest, and the whole answer when the text fills the file.
    if window_sha256(f, n - m, m, buf) == Some(want) {
        return true;
    }
    if n == m {
        return false;
    }
    let mut seed = [0u8; 8];
    if os::random(&mut seed).is_err() {
        seed = *b"primerRK";
    }
    let base = (u64::from_le_bytes(seed) % RK_PRIME).max(257);
    let mut goal = 0u64;
    let mut pow = 1u64;
    let read = text.for_each_chunk(&mut |c| {
        for &b in c {
            goal = rk_add(rk_mul(goal, base), u64::from(b));
        }
        Ok(())
    });
    if let Err(e) = read {
        tracing::debug!("{rel}: not searched for an appended text: {e}");
        return false;
    }
    for _ in 1..m {
        pow = rk_mul(pow, base);
    }
    let mut search = || -> std::io::Result<bool> {
        let mut lead = Cursor::new(f, 0);
        let mut trail = Cursor::new(f, 0);
        let mut h = 0u64;
        for _ in 0..m {
            let Some(b) = lead.next()? else {
                return Ok(false);
            };
            h = rk_add(rk_mul(h, base), u64::from(b));
        }
        let mut at = 0u64;
        let mut false_matches = 0;
        loop {
            if h == goal {
                if window_sha256(f, at, m, buf) == Some(want) {
                    return Ok(true);
                }
                false_matches += 1;
                if false_matches > MAX_FALSE_MATCHES {
                    tracing::debug!("{rel}: search for an appended text given up");
                    return Ok(false);
                }
            }
            let (Some(b), Some(out)) = (lead.next()?, trail.next()?) else {
                return Ok(false);
            };
            if lead.pos > MAX_FACT_FILE {
                return Ok(false);
            }
            let gone = RK_PRIME - rk_mul(u64::from(out), pow);
            h = rk_add(rk_mul(rk_add(h, gone), base), u64::from(b));
            at += 1;
        }
    };
    search().unwrap_or(false)
}

/// primer's per-machine key (`/var/lib/primer/secret`, 32 bytes), for keyed digests of secrets.
/// Missing or not 32 bytes: fresh random bytes, which the plan writes there when it uses them.
/// Reading it here keeps planning pure.
fn read_state_key(root: &Resolver) -> StateKey {
    let mut key = StateKey::default();
    if let Some(f) = read_file_capped(root, state::KEY_PATH, 64) {
        if let Ok(k) = <[u8; 32]>::try_from(f.content.as_slice()) {
            key.key = k;
            key.stored = true;
            return key;
        }
    }
    if let Err(e) = os::random(&mut key.key) {
        // Zeros still give correct digests; they are only guessable. Logged, not fatal.
        tracing::warn!("{e}; primer's digest key is not random");
    }
    key
}

/// Most files taken from /etc/skel, and the deepest level walked.
const MAX_SKEL_FILES: usize = 200;
const MAX_SKEL_DEPTH: usize = 4;

/// Regular files under /etc/skel (path below it), for new homes. Bounded; symlinks skipped.
fn read_skel(root: &Resolver, skel: &str, inp: &mut Inputs) -> Vec<(String, FileFact)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), 0usize)];
    while let Some((sub, depth)) = stack.pop() {
        let rel = if sub.is_empty() {
            skel.to_string()
        } else {
            format!("{skel}/{sub}")
        };
        inp.listed.insert(rel.clone());
        let Some((_, rd)) = list_dir(root, &rel) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        crate::sort::sort_by_key(&mut entries, |e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if sub.is_empty() {
                name
            } else {
                format!("{sub}/{name}")
            };
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() && depth + 1 < MAX_SKEL_DEPTH {
                stack.push((child, depth + 1));
            } else if t.is_file() && out.len() < MAX_SKEL_FILES {
                let file = format!("{skel}/{child}");
                inp.paths.insert(file.clone());
                if let Some(f) = read_file(root, &file) {
                    out.push((child, f));
                }
            }
        }
    }
    crate::sort::sort_by(&mut out, |a, b| a.0.cmp(&b.0));
    out
}

fn read_meta(root: &Resolver, rel: &str) -> Option<(Meta, bool)> {
    let (host, found) = root.resolve_found(rel).ok()?;
    if found == Found::Missing {
        return None;
    }
    let m = fs::metadata(&host).ok()?;
    Some((meta_of(&host, &m), m.is_dir()))
}

/// The `Meta` of an existing file or directory at `path` (its metadata `m` already read).
/// Unix: mode bits, uid and gid. Windows: primer's two-state ACL model read back — a protected
/// DACL is private (0600 / 0700), anything else public (0644 / 0755), owner ids 0 — which is
/// exactly what the writer's `set_owner_mode` can produce, so a second run compares equal.
pub fn meta_of(path: &Path, m: &fs::Metadata) -> Meta {
    os::meta_of(path, m)
}

/// The kernel's host name, as the facts of a live root read it.
pub(crate) fn kernel_hostname() -> Option<String> {
    os::hostname()
}

fn read_file(root: &Resolver, rel: &str) -> Option<FileFact> {
    read_file_capped(root, rel, MAX_FACT_FILE)
}

/// Reads a regular file under the root (resolved inside it) with its mode and owner, at most
/// `max` bytes; `None` when it is missing, unreadable or not a regular file.
pub(crate) fn read_file_capped(root: &Resolver, rel: &str, max: u64) -> Option<FileFact> {
    let (host, f, m) = open_regular(root, rel)?;
    hold_opened(&host, f, &m, max)
}

/// [`read_file_capped`] of a file opened.
fn hold_opened(
    host: &std::path::Path,
    f: fs::File,
    m: &fs::Metadata,
    max: u64,
) -> Option<FileFact> {
    // Sized from the file's length (within the cap): one read and the read that sees its end,
    // not a doubling series from 32 bytes (about six reads for a 300-byte network file). The
    // length is only a hint: a file that grew meanwhile is still read to the cap.
    let hint = usize::try_from(m.len().min(max)).unwrap_or(0);
    let mut content = Vec::with_capacity(hint.saturating_add(1));
    f.take(max).read_to_end(&mut content).ok()?;
    Some(FileFact::held(content, meta_of(host, m)))
}

/// Opens the regular file `rel` under the root (resolved inside it) with its metadata; `None`
/// when it is missing, unreadable or not a regular file.
fn open_regular(
    root: &Resolver,
    rel: &str,
) -> Option<(std::path::PathBuf, fs::File, fs::Metadata)> {
    if let Some(opened) = os::open_leaf(root, rel) {
        return opened;
    }
    let (host, found) = root.resolve_found(rel).ok()?;
    // Resolution saw it missing (or a directory): no failing `open` to learn it again.
    if matches!(found, Found::Missing | Found::Dir) {
        return None;
    }
    let f = fs::File::open(&host).ok()?;
    let m = f.metadata().ok()?;
    m.is_file().then_some((host, f, m))
}

/// Chunk of a measured file read at a time: the only memory a measured file costs.
const MEASURE_CHUNK: usize = 64 << 10;

/// Measures a regular file under the root: its length and SHA-256 computed while reading it in
/// `MEASURE_CHUNK` pieces, nothing kept (`FileFact::measured`); `None` as `read_file_capped`.
/// A file larger than `MAX_FACT_FILE` is not read: treated as different, as when held.
pub(crate) fn measure_file(root: &Resolver, rel: &str) -> Option<FileFact> {
    let (host, f, m) = open_regular(root, rel)?;
    measure_opened(&host, f, &m)
}

/// A file held when it fits one read chunk (compared byte for byte: no digest computed),
/// else measured (`measure_file`); `None` as `read_file_capped`.
fn read_or_measure(root: &Resolver, rel: &str) -> Option<FileFact> {
    let (host, f, m) = open_regular(root, rel)?;
    if m.len() > MEASURE_CHUNK as u64 {
        return measure_opened(&host, f, &m);
    }
    hold_opened(&host, f, &m, MAX_FACT_FILE)
}

/// [`measure_file`] of a file opened.
fn measure_opened(host: &std::path::Path, f: fs::File, m: &fs::Metadata) -> Option<FileFact> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut len = 0u64;
    // Sized to the file when it is smaller than a chunk: a re-run measures thousands of small
    // injected files, and zeroing 64 KiB for each would cost more than reading them.
    let size = usize::try_from(m.len()).unwrap_or(MEASURE_CHUNK);
    let mut buf = vec![0u8; size.saturating_add(1).min(MEASURE_CHUNK)];
    let mut r = f.take(MAX_FACT_FILE + 1);
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(FileFact {
        content: Vec::new(),
        meta: meta_of(host, m),
        measured: Some(super::Measured {
            // Past the cap (only its start was read): a length no buffer has, so it compares
            // different, never equal on a shared prefix.
            len: if len > MAX_FACT_FILE { u64::MAX } else { len },
            sha256: h.finalize().into(),
        }),
    })
}

/// Measures `rel` into the facts unless it is already there (held: read for a parser).
fn measure_file_fact(root: &Resolver, rel: &str, facts: &mut HostFacts) {
    if facts.files.contains_key(rel) {
        return;
    }
    if let Some(f) = measure_file(root, rel) {
        facts.files.insert(rel.to_string(), f);
    }
}

fn read_file_fact(root: &Resolver, rel: &str, facts: &mut HostFacts) {
    if let Some(f) = read_file(root, rel) {
        facts.files.insert(rel.to_string(), f);
    }
}

/// The directory `rel` under the root (resolved inside it) and its listing; `None` when it
/// cannot be listed. A directory resolution saw missing (or not a directory) is not opened:
/// the failing `open` would only say so again (a bare image lacks most of those the facts
/// list: `etc/systemd/system`, `etc/netplan`, `sys/class/net`, `etc/skel`...).
pub(crate) fn list_dir(root: &Resolver, rel: &str) -> Option<(std::path::PathBuf, fs::ReadDir)> {
    let (host, found) = root.resolve_found(rel).ok()?;
    if matches!(found, Found::Missing | Found::Other) {
        return None;
    }
    let rd = fs::read_dir(&host).ok()?;
    Some((host, rd))
}

/// Every regular file below `rel_dir` (relative to the root), bounded, not following symlinks;
/// each directory walked is noted in `inp` as listed.
fn walk_files(root: &Resolver, rel_dir: &str, inp: &mut Inputs) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    inp.listed.insert(rel_dir.to_string());
    let Ok((start, Found::Dir | Found::Unknown)) = root.resolve_found(rel_dir) else {
        return out;
    };
    let mut stack = vec![(start, rel_dir.to_string(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            seen += 1;
            if seen > MAX_COPY_ENTRIES {
                return out;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let child = format!("{rel}/{name}");
            match e.file_type() {
                Ok(t) if t.is_dir() && depth < MAX_COPY_DEPTH => {
                    inp.listed.insert(child.clone());
                    stack.push((e.path(), child, depth + 1))
                }
                Ok(t) if t.is_file() || t.is_symlink() => {
                    out.insert(child);
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(unix)]
mod os {
    use std::fs;
    use std::io::{self, Read};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    use super::Meta;
    use crate::paths::{Found, Kind, Resolver};

    /// Opens `rel`'s last component without looking it up first: its directory is resolved
    /// through the memo (usually known), then the file is opened with `O_NOFOLLOW` and its
    /// metadata read from the open file, which is what a lookup (`lstat`) before the open
    /// would have told, minus one system call per file. `None`: this way cannot tell (the last
    /// component is a symlink, which `ELOOP` reports, or `.`/`..`, or the open failed
    /// otherwise): the caller resolves the whole path as before, so a link is still followed
    /// re-rooted. `Some(None)`: missing, a directory or not a regular file (a FIFO or device
    /// is opened non-blocking and without becoming a controlling terminal, then closed).
    /// What the open found is recorded in the memo, as the lookup would have.
    #[allow(clippy::type_complexity)]
    pub fn open_leaf(
        root: &Resolver,
        rel: &str,
    ) -> Option<Option<(PathBuf, fs::File, fs::Metadata)>> {
        let rel = rel.trim_end_matches('/');
        let (dir, leaf) = match rel.rsplit_once('/') {
            Some((d, l)) => (Some(d), l),
            None => (None, rel),
        };
        if leaf.is_empty() || leaf == "." || leaf == ".." {
            return None;
        }
        let mut host = match dir {
            Some(d) => match root.resolve_found(d).ok()? {
                (_, Found::Missing) => return Some(None),
                (p, Found::Dir) => p,
                // Not a directory, or not known to be one (after `..` or a link): the whole
                // path's resolution decides.
                _ => return None,
            },
            None => root.root().to_path_buf(),
        };
        host.push(leaf);
        if let Some(Kind::Missing | Kind::Dir { .. }) = root.cached(&host) {
            return Some(None);
        }
        // Opened as `platform::open_nonblocking(host, false)` opens (facts sit below the
        // platform seam and may not call it).
        let f = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(&host)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                root.set(&host, Kind::Missing);
                return Some(None);
            }
            // ELOOP (a symlink) or anything else: resolved the long way.
            Err(_) => return None,
        };
        let m = f.metadata().ok()?;
        if m.is_dir() {
            // Its group rule is not known here: left for a lookup to record.
            return Some(None);
        }
        root.set(&host, Kind::Other);
        if !m.is_file() {
            return Some(None);
        }
        Some(Some((host, f, m)))
    }

    pub fn meta_of(_path: &Path, m: &fs::Metadata) -> Meta {
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }
    }

    /// The running kernel's host name.
    pub fn hostname() -> Option<String> {
        nix::unistd::gethostname()
            .ok()
            .map(|h| h.to_string_lossy().into_owned())
    }

    /// Fills `buf` from the kernel's random pool, never blocking: one `getrandom(GRND_NONBLOCK)`
    /// call once the pool is initialised (nearly always by the time primer runs). Before that
    /// (`EAGAIN`), on a kernel without the call, or on a short read, `/dev/urandom` is read
    /// instead (three calls), as before: since Linux 5.18 that read first tries to seed the pool
    /// from CPU timing jitter, which `GRND_INSECURE` would skip — these bytes become the
    /// machine's lifelong state key and password salts.
    pub fn random(buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which is borrowed
        // mutably for the call.
        let n = unsafe {
            nix::libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), nix::libc::GRND_NONBLOCK)
        };
        if usize::try_from(n).is_ok_and(|n| n == buf.len()) {
            return Ok(());
        }
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(buf))
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/urandom: {e}")))
    }
}

#[cfg(windows)]
mod os {
    use std::fs;
    use std::io;
    use std::os::windows::ffi::{OsStrExt, OsStringExt};
    use std::path::Path;

    use windows_sys::Win32::Foundation::{LocalFree, GENERIC_ALL};
    use windows_sys::Win32::Security::Authorization::{GetNamedSecurityInfoW, SE_FILE_OBJECT};
    use windows_sys::Win32::Security::Cryptography::{
        BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG,
    };
    use windows_sys::Win32::Security::{
        AclSizeInformation, GetAce, GetAclInformation, GetSecurityDescriptorControl,
        GetSecurityDescriptorDacl, GetSecurityDescriptorOwner, IsWellKnownSid,
        WinBuiltinAdministratorsSid, WinLocalSystemSid, ACCESS_ALLOWED_ACE, ACE_HEADER, ACL,
        ACL_SIZE_INFORMATION, DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION,
        PSECURITY_DESCRIPTOR, PSID, SE_DACL_PROTECTED,
    };
    use windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS;
    use windows_sys::Win32::System::SystemInformation::{
        ComputerNamePhysicalDnsHostname, GetComputerNameExW,
    };

    use super::Meta;
    use crate::paths::Resolver;

    /// Windows resolves every path the long way (`open_regular`): no `O_NOFOLLOW` there.
    #[allow(clippy::type_complexity)]
    pub fn open_leaf(
        _root: &Resolver,
        _rel: &str,
    ) -> Option<Option<(std::path::PathBuf, fs::File, fs::Metadata)>> {
        None
    }

    /// `ACCESS_ALLOWED_ACE_TYPE` (winnt.h), kept here rather than pulling the large
    /// `Win32_System_SystemServices` feature for one number.
    const ACCESS_ALLOWED: u8 = 0;

    /// Whether `sid` is SYSTEM or BUILTIN\Administrators.
    fn system_or_admins(sid: PSID) -> bool {
        // SAFETY: `sid` points into a live security descriptor (checked non-null by callers).
        unsafe {
            IsWellKnownSid(sid, WinLocalSystemSid) != 0
                || IsWellKnownSid(sid, WinBuiltinAdministratorsSid) != 0
        }
    }

    /// Whether the security descriptor `sd` is primer's "private": owned by SYSTEM or
    /// Administrators, a protected DACL (nothing inherited), and that DACL grants only SYSTEM
    /// and Administrators, both with full control (what `platform::windows::security`
    /// writes). Anything else (another owner, an inherited or extra entry, a deny entry, a
    /// null DACL, which grants everyone) is not, so the planner repairs it.
    pub(crate) fn sd_is_private(sd: PSECURITY_DESCRIPTOR) -> bool {
        if sd.is_null() {
            return false;
        }
        let (mut control, mut rev) = (0u16, 0u32);
        // SAFETY: `sd` is a valid descriptor for every call below; the pointers it hands out
        // (owner, DACL, ACEs) point into it and are only read while it lives.
        unsafe {
            if GetSecurityDescriptorControl(sd, &mut control, &mut rev) == 0
                || control & SE_DACL_PROTECTED == 0
            {
                return false;
            }
            let mut owner: PSID = std::ptr::null_mut();
            let mut defaulted = 0;
            if GetSecurityDescriptorOwner(sd, &mut owner, &mut defaulted) == 0
                || owner.is_null()
                || !system_or_admins(owner)
            {
                return false;
            }
            let (mut present, mut dacl) = (0, std::ptr::null_mut::<ACL>());
            if GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted) == 0
                || present == 0
                || dacl.is_null()
            {
                return false;
            }
            let mut info: ACL_SIZE_INFORMATION = std::mem::zeroed();
            if GetAclInformation(
                dacl,
                (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
                std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                AclSizeInformation,
            ) == 0
            {
                return false;
            }
            let (mut system, mut admins) = (false, false);
            // An ACL holds at most 64 KiB: the count is bounded by the kernel's own format.
            for i in 0..info.AceCount {
                let mut ace: *mut core::ffi::c_void = std::ptr::null_mut();
                if GetAce(dacl, i, &mut ace) == 0 || ace.is_null() {
                    return false;
                }
                let header = &*ace.cast::<ACE_HEADER>();
                if header.AceType != ACCESS_ALLOWED {
                    return false;
                }
                let allowed = &*ace.cast::<ACCESS_ALLOWED_ACE>();
                let sid: PSID = std::ptr::addr_of!(allowed.SidStart).cast_mut().cast();
                let full = allowed.Mask & FILE_ALL_ACCESS == FILE_ALL_ACCESS
                    || allowed.Mask & GENERIC_ALL != 0;
                if IsWellKnownSid(sid, WinLocalSystemSid) != 0 {
                    system |= full;
                } else if IsWellKnownSid(sid, WinBuiltinAdministratorsSid) != 0 {
                    admins |= full;
                } else {
                    return false;
                }
            }
            system && admins
        }
    }

    /// Whether `path` is private (`sd_is_private`); `None` when its security cannot be read.
    fn private_acl(path: &Path) -> Option<bool> {
        let name: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor, freed below.
        let r = unsafe {
            GetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut sd,
            )
        };
        if r != 0 || sd.is_null() {
            return None;
        }
        let private = sd_is_private(sd);
        // SAFETY: allocated by GetNamedSecurityInfoW.
        unsafe { LocalFree(sd as _) };
        Some(private)
    }

    pub fn meta_of(path: &Path, m: &fs::Metadata) -> Meta {
        let private = private_acl(path).unwrap_or(false);
        let mode = match (private, m.is_dir()) {
            (true, true) => 0o700,
            (true, false) => 0o600,
            (false, true) => 0o755,
            (false, false) => 0o644,
        };
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// The computer's DNS host name (`ComputerNamePhysicalDnsHostname`).
    pub fn hostname() -> Option<String> {
        let mut buf = [0u16; 256];
        let mut len = buf.len() as u32;
        // SAFETY: `buf` holds `len` UTF-16 units; `len` receives the length written.
        let ok = unsafe {
            GetComputerNameExW(ComputerNamePhysicalDnsHostname, buf.as_mut_ptr(), &mut len)
        };
        let len = usize::try_from(len).ok()?.min(buf.len());
        (ok != 0).then(|| {
            std::ffi::OsString::from_wide(&buf[..len])
                .to_string_lossy()
                .into_owned()
        })
    }

    /// Fills `buf` from the system RNG (`BCryptGenRandom`).
    pub fn random(buf: &mut [u8]) -> io::Result<()> {
        let len = u32::try_from(buf.len()).map_err(io::Error::other)?;
        // SAFETY: `buf` holds `len` bytes; no algorithm handle with the system-preferred flag.
        let status = unsafe {
            BCryptGenRandom(
                std::ptr::null_mut(),
                buf.as_mut_ptr(),
                len,
                BCRYPT_USE_SYSTEM_PREFERRED_RNG,
            )
        };
        if status != 0 {
            return Err(io::Error::other(format!(
                "BCryptGenRandom: NTSTATUS {status:#x}"
            )));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
        };

        fn private(sddl: &str) -> bool {
            let w: Vec<u16> = std::ffi::OsStr::new(sddl)
                .encode_wide()
                .chain([0])
                .collect();
            let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
            // SAFETY: `w` is NUL-terminated; `sd` is freed below.
            let ok = unsafe {
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    w.as_ptr(),
                    SDDL_REVISION_1,
                    &mut sd,
                    std::ptr::null_mut(),
                )
            };
            assert!(ok != 0, "{sddl}");
            let r = sd_is_private(sd);
            // SAFETY: allocated by the conversion.
            unsafe { LocalFree(sd as _) };
            r
        }

        #[test]
        fn only_a_protected_system_and_administrators_dacl_with_such_an_owner_is_private() {
            // What the writer sets, for files and directories, owned by either.
            assert!(private("O:SYD:P(A;;FA;;;SY)(A;;FA;;;BA)"));
            assert!(private("O:BAD:P(A;;FA;;;BA)(A;;FA;;;SY)"));
            assert!(private("O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"));
            assert!(private("O:BAD:P(A;;GA;;;SY)(A;;GA;;;BA)"));
            // Needs repair: another owner, not protected, someone else granted, a deny entry,
            // one of the two missing or not full control, an empty or null DACL.
            assert!(!private("O:BUD:P(A;;FA;;;SY)(A;;FA;;;BA)"));
            assert!(!private("O:WDD:P(A;;FA;;;SY)(A;;FA;;;BA)"));
            assert!(!private("O:BAD:(A;;FA;;;SY)(A;;FA;;;BA)"));
            assert!(!private("O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;BU)"));
            assert!(!private("O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;WD)"));
            assert!(!private("O:BAD:P(D;;FA;;;BU)(A;;FA;;;SY)(A;;FA;;;BA)"));
            assert!(!private("O:BAD:P(A;;FA;;;SY)"));
            assert!(!private("O:BAD:P(A;;FA;;;SY)(A;;FR;;;BA)"));
            assert!(!private("O:BAD:P"));
            assert!(!private("O:BAD:NO_ACCESS_CONTROL"));
            assert!(!private_acl_null());
        }

        fn private_acl_null() -> bool {
            sd_is_private(std::ptr::null_mut())
        }
    }
}

#[cfg(test)]
mod tests {

    /// Compacting keeps every entry with its own value (not the stand-in) and its order, for a
    /// map built in key order as the facts build theirs, at the size of a large re-run.
    #[test]
    fn compacted_maps_keep_every_entry() {
        let mut map = BTreeMap::new();
        let mut set = BTreeSet::new();
        for i in 0..10_000 {
            map.insert(format!("etc/f{i:05}"), format!("v{i}"));
            set.insert(format!("etc/f{i:05}"));
        }
        let (before, paths) = (map.clone(), set.clone());
        compact_map(&mut map, "stand-in".to_string());
        compact_paths(&mut set);
        assert_eq!(map, before);
        assert_eq!(map.len(), 10_000);
        assert_eq!(set, paths);
        assert_eq!(map.get("etc/f00000").map(String::as_str), Some("v0"));
        let mut empty = BTreeMap::<String, String>::new();
        compact_map(&mut empty, String::new());
        assert!(empty.is_empty());
        let mut one = BTreeMap::from([("a".to_string(), 1)]);
        compact_map(&mut one, 0);
        assert_eq!(one, BTreeMap::from([("a".to_string(), 1)]));
    }
    use super::*;
    use crate::facts::WantedState;
    use crate::model::Bytes;

    #[test]
    fn compared_files_are_measured_and_parsed_ones_held() {
        let t = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for (p, c) in [
            ("st/copy/user_data", &big[..]),
            ("st/scripts/20-user-x", &big[..]),
            ("st/ran/20-user-x", b"started\n"),
            ("etc/injected", b"inj\n"),
            ("etc/both", b"parsed\n"),
        ] {
            let p = t.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, c).unwrap();
        }
        let wanted = Wanted {
            files: vec!["etc/both".into()],
            measured: vec!["etc/injected".into(), "etc/both".into(), "etc/none".into()],
            state: Some(WantedState {
                record: "st/applied.json".into(),
                dirs: vec!["st/ran".into()],
                measured_dirs: vec!["st/scripts".into()],
                copy_dir: "st/copy".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let facts = read_host_facts(t.path(), &wanted, false);
        let f = |p: &str| facts.files.get(p).unwrap();
        let big = Bytes::from(big);
        for p in ["st/copy/user_data", "st/scripts/20-user-x"] {
            assert!(f(p).content.is_empty(), "{p} held");
            assert_eq!(f(p).measured.unwrap().len, 200_000);
            assert!(f(p).holds(&big), "{p}");
            let mut other = big.to_vec();
            other[199_999] ^= 1;
            assert!(
                !f(p).holds(&Bytes::from(other)),
                "{p}: same length, other bytes"
            );
            assert!(!f(p).holds(&Bytes::from(&big[1..])), "{p}: other length");
        }
        assert!(facts.copy_files.contains("st/copy/user_data"));
        assert!(f("etc/injected").measured.is_some());
        assert!(f("etc/injected").holds(&Bytes::from("inj\n")));
        // Wanted by a parser too: held, and compared in memory the same way.
        assert_eq!(f("etc/both").content, b"parsed\n");
        assert!(f("etc/both").measured.is_none());
        assert!(f("etc/both").holds(&Bytes::from("parsed\n")));
        assert_eq!(f("st/ran/20-user-x").content, b"started\n");
        assert!(!facts.files.contains_key("etc/none"));
    }

    /// The leaf opened without a lookup before it (`open_leaf`) reads what a lookup would:
    /// a symlink is still followed re-rooted inside the root, a directory, FIFO or missing
    /// file is no file (and a FIFO does not block the read), a missing directory above stops
    /// there, and a read sized from the file's length still reads a file to its end.
    #[cfg(unix)]
    #[test]
    fn files_opened_without_a_lookup_read_as_before() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("etc/dir")).unwrap();
        fs::create_dir_all(r.join("real")).unwrap();
        fs::write(r.join("etc/plain"), "plain\n").unwrap();
        fs::write(r.join("real/target"), "inside\n").unwrap();
        // Absolute: re-rooted under `r`, never the host's /real/target.
        symlink("/real/target", r.join("etc/link")).unwrap();
        symlink("/real", r.join("linkdir")).unwrap();
        nix::unistd::mkfifo(&r.join("etc/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let res = Resolver::new(r);
        let read = |rel: &str| read_file_capped(&res, rel, MAX_FACT_FILE).map(|f| f.content);
        assert_eq!(read("etc/plain").unwrap(), b"plain\n");
        assert_eq!(read("etc/link").unwrap(), b"inside\n");
        assert_eq!(read("linkdir/target").unwrap(), b"inside\n");
        assert_eq!(read("etc/dir"), None);
        assert_eq!(read("etc/fifo"), None);
        assert_eq!(read("etc/none"), None);
        assert_eq!(read("none/below/file"), None);
        assert_eq!(read("etc/../etc/plain").unwrap(), b"plain\n");
        // Read again through the memo the first pass filled: the same answers.
        assert_eq!(read("etc/plain").unwrap(), b"plain\n");
        assert_eq!(read("etc/link").unwrap(), b"inside\n");
        assert_eq!(read("etc/none"), None);
        // The cap still holds with a length hint.
        assert_eq!(
            read_file_capped(&res, "etc/plain", 3).unwrap().content,
            b"pla"
        );
        // A file that changes under the memo is read as it is now.
        fs::write(r.join("etc/plain"), "longer than before\n").unwrap();
        assert_eq!(read("etc/plain").unwrap(), b"longer than before\n");
        // Measured the same way.
        let m = measure_file(&res, "etc/link").unwrap();
        assert_eq!(m.measured.unwrap().len, 7);
    }

    /// An `append`'s text is found wherever the file holds it (the end by digest, elsewhere by
    /// the rolling fingerprint), across chunk boundaries, and not when one byte differs.
    #[test]
    fn an_appended_text_is_found_anywhere_in_the_file_neither_held() {
        let t = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let other: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
        let join = |parts: &[&[u8]]| parts.concat();
        let mut near = text.clone();
        near[100_000] ^= 1;
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("end", join(&[&other, &text]), true),
            ("whole", text.clone(), true),
            ("start", join(&[&text, &other]), true),
            (
                "middle",
                join(&[&other[..70_001], &text, &other[..3]]),
                true,
            ),
            ("absent", other.clone(), false),
            ("near", join(&[&other, &near, &other]), false),
            ("shorter", text[1..].to_vec(), false),
        ];
        let mut wanted = Wanted::default();
        for (name, content, _) in &cases {
            fs::write(t.path().join(name), content).unwrap();
            wanted.measured.push(name.to_string());
            wanted.appends.push(append(name, &text));
        }
        // An empty text is never "there"; a missing file holds nothing.
        wanted.appends.push(append("end", b""));
        wanted.appends.push(append("missing", &text));
        let facts = read_host_facts(t.path(), &wanted, false);
        let sha = Bytes::from(text.clone()).sha256();
        for (name, content, found) in &cases {
            assert_eq!(
                facts.appended.contains(&(name.to_string(), sha)),
                *found,
                "{name}"
            );
            let f = &facts.files[*name];
            assert!(f.content.is_empty(), "{name} held");
            assert!(f.holds(&Bytes::from(content.clone())));
        }
        assert_eq!(facts.appended.len(), 4);
    }

    fn append(path: &str, text: &[u8]) -> crate::facts::WantedAppend {
        crate::facts::WantedAppend {
            path: path.into(),
            text: Bytes::from(text.to_vec()),
            step: format!("write-file:0:{path}"),
        }
    }

    /// The previous run's record is parsed, then kept as its length and digest, not its bytes
    /// (only compared as a whole with the run's new record); a malformed one parses to no
    /// record and is still compared (never equal to a record primer writes).
    #[test]
    fn the_record_is_parsed_and_kept_as_its_digest() {
        let t = tempfile::tempdir().unwrap();
        let record = Record {
            instance_id: "i-1".into(),
            steps: (0..100)
                .map(|i| (format!("write-file:/srv/f{i:03}"), "ab".repeat(32)))
                .collect(),
            ..Default::default()
        };
        let json = crate::state::PrettyDoc::to_json(&record);
        fs::create_dir_all(t.path().join("st")).unwrap();
        let wanted = Wanted {
            state: Some(WantedState {
                record: "st/applied.json".into(),
                copy_dir: "st/copy".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        // The record as the plan's view of it (its steps' ids and inputs).
        let inputs: Vec<(&str, crate::state::Input)> = record
            .steps
            .iter()
            .map(|(k, v)| (k, v.to_string().into()))
            .collect();
        let view = crate::state::RecordView {
            head: &record,
            steps: inputs.iter().map(|(k, v)| (*k, v)).collect(),
        };
        for (bytes, parsed) in [
            (json.clone(), true),
            (json[..json.len() - 10].to_vec(), false),
            (b"\0\0\0".to_vec(), false),
        ] {
            fs::write(t.path().join("st/applied.json"), &bytes).unwrap();
            let facts = read_host_facts(t.path(), &wanted, false);
            let f = facts.files.get("st/applied.json").unwrap();
            assert!(f.content.is_empty(), "the record's bytes held");
            assert_eq!(f.measured.unwrap().len, bytes.len() as u64);
            assert_eq!(facts.record.as_ref() == Some(&record), parsed);
            assert_eq!(f.holds_record(&view), parsed);
        }
    }

    /// A text the record vouches for (its step's input names the text) is taken as appended
    /// without a look at the file; a step whose input names another text (or an input from
    /// before the text's part stood alone) leaves the file searched.
    #[test]
    fn a_text_the_record_vouches_for_is_not_searched() {
        let t = tempfile::tempdir().unwrap();
        let text = b"line the record vouches for\n".to_vec();
        let sha = Bytes::from(text.clone()).sha256();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let names = format!("{}:{}", hex(&sha), hex(&[7; 32]));
        let other = format!("{}:{}", hex(&[1; 32]), hex(&[7; 32]));
        let old_form = hex(&sha);
        let record = Record {
            steps: [
                ("write-file:0:vouched".to_string(), names.clone()),
                ("write-file:0:other".to_string(), other),
                ("write-file:0:old".to_string(), old_form),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        fs::create_dir_all(t.path().join("st")).unwrap();
        let json = crate::state::PrettyDoc::to_json(&record);
        fs::write(t.path().join("st/applied.json"), json).unwrap();
        // "vouched" does not hold the text (edited since): the record is believed, unread.
        for name in ["vouched", "other", "old"] {
            fs::write(t.path().join(name), b"something else\n").unwrap();
        }
        let mut wanted = Wanted {
            state: Some(WantedState {
                record: "st/applied.json".into(),
                copy_dir: "st/copy".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for name in ["vouched", "other", "old"] {
            wanted.measured.push(name.into());
            wanted.appends.push(append(name, &text));
        }
        let facts = read_host_facts(t.path(), &wanted, false);
        assert!(facts.appended.contains(&("vouched".to_string(), sha)));
        assert!(!facts.appended.contains(&("other".to_string(), sha)));
        assert!(!facts.appended.contains(&("old".to_string(), sha)));
        assert!(state::append_input_names(&names, &sha));
        assert!(!state::append_input_names(&hex(&sha), &sha));
        assert!(!state::append_input_names("", &sha));
    }
}
