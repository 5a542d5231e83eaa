//! The local copy of the drive without its passwords: primer keeps a private copy of every
//! drive file, but a password is never stored in clear anywhere (only its crypt hash, in
//! /etc/shadow), nor any unkeyed digest of one. Pure: decides, per drive file, the bytes the copy
//! holds. Files that carry a password are rewritten without it where the format allows
//! (OpenStack `meta_data.json`) and replaced by a short note otherwise: CloudStack's password
//! file, an OVF environment with a password property, and every user-data or vendor-data file
//! (`user_data`, `vendor_data.json`, `vendor_data2.json`, NoCloud `user-data`/`vendor-data`, an
//! OVF environment's user-data) whose cloud-config sets a password (`password`, `chpasswd`, a
//! user's `passwd`, `hashed_passwd`, `plain_text_passwd`) or that mentions one. Never prints a
//! password, not even in the note, and the note holds no digest of the original.

use std::borrow::Cow;

use crate::media::DriveFiles;
use crate::model::userdata::{PasswordValue, UserData};
use crate::model::{Bytes, Instance};

/// The password values the drive carries, clear and hashed (drive password, `#cloud-config`
/// `password`, `chpasswd` entries, `users:` `plain_text_passwd`, `passwd`, `hashed_passwd`).
pub fn plain_passwords<'a>(instance: &'a Instance, ud: &'a UserData) -> Vec<&'a [u8]> {
    let cc = &ud.cloud_config;
    let mut v: Vec<&[u8]> = Vec::new();
    v.extend(instance.admin_pass.iter().map(|s| s.expose()));
    v.extend(cc.password.iter().map(|s| s.expose()));
    for (_, p) in &cc.chpasswd.users {
        match p {
            PasswordValue::Plain(s) => v.push(s.expose()),
            PasswordValue::Hash(h) => v.push(h.as_bytes()),
            PasswordValue::Random => {}
        }
    }
    for u in cc.users.iter().chain(cc.user.iter()) {
        v.extend(u.plain_text_passwd.iter().map(|s| s.expose()));
        v.extend(u.passwd.iter().map(|s| s.as_bytes()));
        v.extend(u.hashed_passwd.iter().map(|s| s.as_bytes()));
    }
    v.retain(|p| !p.is_empty());
    v
}

/// Whether the merged cloud-config sets any password.
fn sets_passwords(ud: &UserData) -> bool {
    let cc = &ud.cloud_config;
    cc.password.is_some()
        || !cc.chpasswd.users.is_empty()
        || cc.users.iter().chain(cc.user.iter()).any(|u| {
            u.plain_text_passwd.is_some() || u.passwd.is_some() || u.hashed_passwd.is_some()
        })
}

/// Whether JSON text `data` may hold a key that reads `admin_pass`: it holds those bytes, or a
/// `\u` escape (the only escape that can spell one of its letters). Exact as a filter: a
/// meta_data.json without either is never parsed (5,000 injected files make a 335 KB document,
/// parsed whole into a `serde_json::Value` of 3.2 MB: the peak of a re-run, issue 15).
fn may_name_admin_pass(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"admin_pass").is_some()
        || memchr::memmem::find(data, b"\\u").is_some()
}

#[cfg(test)]
thread_local! {
    /// How many meta_data.json documents [`Scrub::kept`] parsed (tests count them).
    static META_PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn note(path: &str) -> Vec<u8> {
    format!(
        "# primer: {path} held a password, which primer never keeps in clear; this copy stands \
         in for it.\n"
    )
    .into_bytes()
}

/// Files that hold user-data or vendor-data (the cloud-config that may set passwords), of
/// every format; an OVF environment carries user-data as a property.
fn is_user_or_vendor_data(name: &str) -> bool {
    matches!(
        name,
        "user_data"
            | "user-data"
            | "user_data.txt"
            | "userdata"
            | "vendor_data"
            | "vendor-data"
            | "vendor_data.json"
            | "vendor_data2.json"
    ) || name.ends_with(".xml")
}

/// Whether `hay` mentions a password key, in any case (`password`, `passwd`, `chpasswd`,
/// `hashed_passwd`, `plain_text_passwd` all contain `passw`).
fn mentions_password(hay: &[u8]) -> bool {
    // Only where a `p` or `P` is (found a vector at a time) is the rest compared: a window
    // compared at every byte cost ~35 instructions per byte of vendor-data (callgrind).
    let mut at = 0;
    while let Some(i) = hay.get(at..).and_then(|h| memchr::memchr2(b'p', b'P', h)) {
        let start = at + i;
        if hay
            .get(start..start + 5)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"passw"))
        {
            return true;
        }
        at = start + 1;
    }
    false
}

/// A password as it appears inside a JSON string (escaped), when that differs.
fn json_escaped(p: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(p).ok()?;
    let j = serde_json::to_string(s).ok()?;
    let inner = j.get(1..j.len().saturating_sub(1))?.as_bytes().to_vec();
    (inner != p).then_some(inner)
}

/// Most distinct passwords searched for in other files, and the longest (a drive with more is
/// absurd; the cap keeps the searcher's memory bounded whatever the user-data holds).
const MAX_SEARCHED: usize = 4096;
const MAX_SEARCHED_LEN: usize = 4096;

/// Up to this many needles are searched for one by one (a linear substring search each); more
/// get one Aho-Corasick automaton. A first boot has one password or two (and their escaped
/// forms): building the automaton cost more instructions than every search of the drive's
/// small files (about 250,000 for one needle against 6,500 for a substring finder, callgrind),
/// and a search for one needle is what the automaton's prefilter does anyway.
const FEW_NEEDLES: usize = 4;

/// The searcher over the drive's passwords.
enum Finder {
    /// At most [`FEW_NEEDLES`]: one substring finder each (memchr's `memmem`: linear time).
    Few(Vec<memchr::memmem::Finder<'static>>),
    /// More: one automaton (one linear pass over the bytes whatever the number of needles).
    Many(aho_corasick::AhoCorasick),
}

impl Finder {
    fn is_match(&self, d: &[u8]) -> bool {
        match self {
            Finder::Few(fs) => fs.iter().any(|f| f.find(d).is_some()),
            Finder::Many(ac) => ac.is_match(d),
        }
    }

    fn max_pattern_len(&self) -> usize {
        match self {
            Finder::Few(fs) => fs.iter().map(|f| f.needle().len()).max().unwrap_or(0),
            Finder::Many(ac) => ac.max_pattern_len(),
        }
    }
}

/// The drive's passwords, found in any file by a linear search (substring finders for a few,
/// else Aho-Corasick over every password and its JSON-escaped form, built once per drive): a
/// drive with thousands of passwords and large files must not cost passwords × bytes.
pub struct Scrub<'a> {
    instance: &'a Instance,
    sets: bool,
    /// The needles, until the first search builds the automaton from them.
    needles: std::collections::BTreeSet<Vec<u8>>,
    /// Built on the first search only: a run whose files are all decided by name never pays
    /// for it.
    finder: std::sync::OnceLock<Option<Finder>>,
}

impl<'a> Scrub<'a> {
    pub fn new(instance: &'a Instance, ud: &UserData) -> Scrub<'a> {
        let mut needles: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
        for p in plain_passwords(instance, ud) {
            if needles.len() >= MAX_SEARCHED {
                tracing::debug!(
                    "more than {MAX_SEARCHED} passwords: the rest are not searched for"
                );
                break;
            }
            if p.len() > MAX_SEARCHED_LEN {
                continue;
            }
            if let Some(e) = json_escaped(p) {
                needles.insert(e);
            }
            needles.insert(p.to_vec());
        }
        Scrub {
            instance,
            sets: sets_passwords(ud),
            needles,
            finder: std::sync::OnceLock::new(),
        }
    }

    /// The searcher over every needle; `None` without needles. Few needles: a substring
    /// finder each. More: a noncontiguous NFA (a drive has small files, where building a DFA,
    /// the crate's choice for few needles, costs more than every search it would speed up;
    /// its prefilter does the scanning either way). Linear in the bytes searched either way.
    fn finder(&self) -> Option<&Finder> {
        self.finder
            .get_or_init(|| {
                if self.needles.is_empty() {
                    None
                } else if self.needles.len() <= FEW_NEEDLES {
                    Some(Finder::Few(
                        self.needles
                            .iter()
                            .map(|n| memchr::memmem::Finder::new(n).into_owned())
                            .collect(),
                    ))
                } else {
                    aho_corasick::AhoCorasick::builder()
                        .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
                        .build(&self.needles)
                        .ok()
                        .map(Finder::Many)
                }
            })
            .as_ref()
    }

    fn holds_one(&self, d: &[u8]) -> bool {
        self.finder().is_some_and(|f| f.is_match(d))
    }

    /// The bytes the local copy keeps for drive file `path`.
    pub fn copy_content(&self, path: &str, data: &[u8]) -> Vec<u8> {
        self.kept(path, data).into_owned()
    }

    /// The bytes the local copy keeps for drive file `path`: `data` itself (borrowed, not
    /// copied) unless the file carries a password.
    pub fn kept<'d>(&self, path: &str, data: &'d [u8]) -> Cow<'d, [u8]> {
        let lower = path.to_ascii_lowercase();
        let name = lower.rsplit('/').next().unwrap_or(&lower);
        if matches!(name, "meta_data.json" | "meta-data.json") && may_name_admin_pass(data) {
            #[cfg(test)]
            META_PARSES.with(|n| n.set(n.get() + 1));
            if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(data) {
                let mut changed = m.remove("admin_pass").is_some();
                if let Some(serde_json::Value::Object(meta)) = m.get_mut("meta") {
                    changed |= meta.remove("admin_pass").is_some();
                }
                if changed {
                    let out = crate::state::pretty_json(&m);
                    // Another key may still hold the password (a drive is free to repeat it).
                    return Cow::Owned(if self.holds_one(&out) {
                        note(path)
                    } else {
                        out
                    });
                }
            }
        }
        let carries = self.carries_by_name(&lower, name)
            || (is_user_or_vendor_data(name) && (self.sets || mentions_password(data)))
            || self.holds_one(data);
        if carries {
            Cow::Owned(note(path))
        } else {
            Cow::Borrowed(data)
        }
    }

    /// The rules of [`kept`](Scrub::kept) that look at the name only.
    fn carries_by_name(&self, lower: &str, name: &str) -> bool {
        name.starts_with("vm_password")
            || name.starts_with("vm-password")
            || lower.contains("/password/")
            || (name.ends_with(".xml") && self.instance.admin_pass.is_some())
    }

    /// [`kept`](Scrub::kept) of a drive buffer: the buffer itself when kept as the drive has it
    /// (shared, not copied), else the stand-in. A file kept on the device is searched while
    /// streaming (never held); one that cannot be read again is replaced by the stand-in, so
    /// whatever it holds cannot reach the copy.
    pub fn kept_bytes<'d>(&self, path: &str, data: &'d Bytes) -> Kept<'d> {
        let lower = path.to_ascii_lowercase();
        let name = lower.rsplit('/').next().unwrap_or(&lower);
        if !data.is_on_device() || matches!(name, "meta_data.json" | "meta-data.json") {
            return match self.kept(path, data.as_slice()) {
                Cow::Borrowed(_) => Kept::Drive(data),
                Cow::Owned(v) => Kept::Other(v),
            };
        }
        let streamed = |found: &dyn Fn(&[u8]) -> bool, overlap: usize| {
            stream_find(data, found, overlap).unwrap_or_else(|e| {
                tracing::warn!("{e}; the local copy keeps a stand-in");
                true
            })
        };
        let carries = self.carries_by_name(&lower, name)
            || (is_user_or_vendor_data(name) && (self.sets || streamed(&mentions_password, 4)))
            || self.finder().is_some_and(|f| {
                streamed(&|d| f.is_match(d), f.max_pattern_len().saturating_sub(1))
            });
        if carries {
            Kept::Other(note(path))
        } else {
            Kept::Drive(data)
        }
    }

    /// Every drive file as the local copy keeps it, with the drive hash over them: each file is
    /// scrubbed once for both (the plan writes the copy from these bytes).
    pub fn kept_drive<'d>(&self, drive: &'d DriveFiles) -> KeptDrive<'d> {
        let files: Vec<(&'d str, Kept<'d>)> = drive
            .files
            .iter()
            .map(|(path, data)| (path.as_str(), self.kept_bytes(path, data)))
            .collect();
        KeptDrive {
            sha256: hash_kept(drive.label.as_deref(), &files),
            files,
        }
    }

    /// See [`drive_hash`].
    pub fn drive_hash(&self, drive: &DriveFiles) -> String {
        self.kept_drive(drive).sha256
    }

    /// See [`shown_sha256`].
    pub fn shown_sha256(&self, path: &str, data: &[u8]) -> String {
        if *self.kept(path, data) == *data {
            crate::state::sha256_hex(data)
        } else {
            "<redacted: holds a password>".to_string()
        }
    }
}

/// What the local copy keeps of one drive file.
pub enum Kept<'d> {
    /// The drive's bytes as they are: the drive's buffer (on the device when large).
    Drive(&'d Bytes),
    /// A stand-in (or a scrubbed document) in place of the drive's bytes.
    Other(Vec<u8>),
}

impl Kept<'_> {
    pub fn len(&self) -> usize {
        match self {
            Kept::Drive(b) => b.len(),
            Kept::Other(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The drive's files as the local copy keeps them (path order) and the drive hash over them.
pub struct KeptDrive<'d> {
    pub sha256: String,
    pub files: Vec<(&'d str, Kept<'d>)>,
}

/// Whether `found` holds for some window of `data`, seen chunk by chunk with the last
/// `overlap` bytes of each chunk carried into the next, so a match across a chunk boundary (a
/// needle of at most `overlap + 1` bytes) is seen as it is in the whole. Stops at the first.
fn stream_find(
    data: &Bytes,
    found: &dyn Fn(&[u8]) -> bool,
    overlap: usize,
) -> std::io::Result<bool> {
    let mut seams = Seams::default();
    let r = data.for_each_chunk(&mut |c| {
        if seams.feed(c, found, overlap) {
            // Not an error: the rest need not be read.
            return Err(std::io::Error::other("found"));
        }
        Ok(())
    });
    match r {
        _ if seams.hit => Ok(true),
        Ok(()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The search state of [`stream_find`]: the last `overlap` bytes seen.
#[derive(Default)]
struct Seams {
    carry: Vec<u8>,
    hit: bool,
}

impl Seams {
    /// Looks at one chunk (and the seam with the one before); whether `found` held.
    fn feed(&mut self, c: &[u8], found: &dyn Fn(&[u8]) -> bool, overlap: usize) -> bool {
        let at_seam = &c[..c.len().min(overlap)];
        let mut seam = std::mem::take(&mut self.carry);
        seam.extend_from_slice(at_seam);
        if found(&seam) || found(c) {
            self.hit = true;
            return true;
        }
        // The carry: the last `overlap` bytes seen, across short chunks too.
        seam.extend_from_slice(&c[at_seam.len()..]);
        let keep = seam.len().saturating_sub(overlap);
        self.carry = seam.split_off(keep);
        false
    }
}

/// [`stream_find`] over chunks given (tests: every seam a device stream could cut).
#[cfg(test)]
fn chunked_find(chunks: &[&[u8]], found: &dyn Fn(&[u8]) -> bool, overlap: usize) -> bool {
    let mut seams = Seams::default();
    chunks.iter().any(|c| seams.feed(c, found, overlap))
}

/// The drive hash ([`drive_hash`]) of the kept files. A file on the device is hashed while
/// streaming; one that cannot be read again (or changed) gives a hash that cannot match.
fn hash_kept(label: Option<&str>, files: &[(&str, Kept<'_>)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(label.unwrap_or("").as_bytes());
    h.update([0]);
    for (path, kept) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((kept.len() as u64).to_le_bytes());
        match kept {
            Kept::Drive(b) => {
                if let Err(e) = b.for_each_chunk(&mut |c| {
                    h.update(c);
                    Ok(())
                }) {
                    tracing::warn!("{e}");
                    h.update(b"\xffunreadable");
                }
            }
            Kept::Other(v) => h.update(v),
        }
    }
    crate::state::hex_lower(&h.finalize())
}

/// The bytes the local copy keeps for drive file `path` (one file; [`Scrub`] for many).
pub fn copy_content(path: &str, data: &[u8], instance: &Instance, ud: &UserData) -> Vec<u8> {
    Scrub::new(instance, ud).copy_content(path, data)
}

/// Content hash of the drive as primer keeps it: the label, then every file's path and the bytes
/// its local copy holds (`copy_content`), in path order. Password carriers enter as their
/// stand-in, so the record, `instance.json`, `status.json` and reclaim's content check hold no
/// unkeyed digest of a password (a CloudStack password file *is* the password), while any other
/// change to the drive still changes the hash. The device name is not part of it: the same
/// drive on another device hashes the same. `ud` must be the user-data parsed whatever the
/// configuration says about applying it (a password in ignored user-data is still a secret).
pub fn drive_hash(drive: &DriveFiles, instance: &Instance, ud: &UserData) -> String {
    Scrub::new(instance, ud).drive_hash(drive)
}

/// The user-data whose passwords the scrub leaves out: the planner's when it applies user-data,
/// else parsed here (only to find its passwords).
pub fn secrets_user_data(instance: &Instance) -> UserData {
    crate::source::userdata::parse_instance_user_data(
        instance,
        &crate::source::userdata::UserDataLimits::default(),
    )
    .0
}

/// What a listing of the drive (`show --json`'s `file_sha256`) may print for drive file `path`:
/// its SHA-256 when the file holds no password, else a placeholder. The SHA-256 of a password
/// carrier is an unkeyed digest of the password (a CloudStack password file is the password).
pub fn shown_sha256(path: &str, data: &[u8], instance: &Instance, ud: &UserData) -> String {
    Scrub::new(instance, ud).shown_sha256(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Format, Secret};
    use crate::source::userdata::{parse_user_data, UserDataLimits};
    use crate::state;

    fn inst(pass: Option<&str>) -> Instance {
        let mut i = Instance::new(Format::OpenStack, "latest", "i");
        i.admin_pass = pass.map(|p| Secret::new(p.as_bytes().to_vec()));
        i
    }

    #[test]
    fn meta_data_is_parsed_only_when_it_may_name_the_password() {
        let i = inst(Some("pw-123456"));
        let ud = UserData::default();
        let scrub = Scrub::new(&i, &ud);
        let parses = || META_PARSES.with(std::cell::Cell::get);
        // 5,000 injected files and no password key: kept as it is, never parsed.
        let mut md = String::from(r#"{"uuid":"i","files":["#);
        for n in 0..5_000 {
            md.push_str(&format!(
                r#"{{"path":"/srv/f{n}","content_path":"/content/{n}"}},"#
            ));
        }
        md.push_str(r#"{"path":"/srv/last","content_path":"/content/last"}]}"#);
        let before = parses();
        let out = scrub.kept("openstack/latest/meta_data.json", md.as_bytes());
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(
            parses(),
            before,
            "a document that cannot name admin_pass was parsed"
        );
        // A key spelled with escapes is still found and removed (the filter lets it through).
        let escaped =
            br#"{"uuid":"i","admin\u005fpass":"pw-123456","meta":{"\u0061dmin_pass":"pw-123456"}}"#;
        let out = scrub.kept("openstack/latest/meta_data.json", escaped);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["uuid"], "i");
        assert!(v.get("admin_pass").is_none() && v["meta"].get("admin_pass").is_none());
        assert_eq!(parses(), before + 1);
    }

    #[test]
    fn meta_data_loses_its_passwords_only() {
        let i = inst(Some("pw-123456"));
        let ud = UserData::default();
        let md = br#"{"uuid":"i","admin_pass":"pw-123456","meta":{"admin_pass":"pw-123456","role":"web"}}"#;
        let out = copy_content("openstack/latest/meta_data.json", md, &i, &ud);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["uuid"], "i");
        assert_eq!(v["meta"]["role"], "web");
        assert!(v.get("admin_pass").is_none() && v["meta"].get("admin_pass").is_none());
        // Deterministic, and a file without a password is kept byte for byte.
        assert_eq!(
            out,
            copy_content("openstack/latest/meta_data.json", md, &i, &ud)
        );
        let plain = br#"{"uuid":"i"}"#;
        assert_eq!(
            copy_content("openstack/latest/meta_data.json", plain, &i, &ud),
            plain
        );
    }

    #[test]
    fn password_files_and_user_data_with_passwords_become_notes() {
        let i = inst(Some("cs-pass-77"));
        let ud = UserData::default();
        let out = copy_content(
            "cloudstack/password/vm_password.txt",
            b"cs-pass-77\n",
            &i,
            &ud,
        );
        assert!(String::from_utf8_lossy(&out).starts_with("# primer: "));
        assert!(!String::from_utf8_lossy(&out).contains("cs-pass-77"));
        // Any other file that holds the password verbatim.
        let out = copy_content(
            "openstack/latest/vendor_data.json",
            b"{\"x\":\"cs-pass-77\"}",
            &i,
            &ud,
        );
        assert!(!String::from_utf8_lossy(&out).contains("cs-pass-77"));

        let raw = b"#cloud-config\nchpasswd:\n  users:\n    - {name: a, password: zz-top-secret, type: text}\n";
        let (ud, _) = parse_user_data(Some(raw), &[], &UserDataLimits::default());
        let i = inst(None);
        let out = copy_content("openstack/latest/user_data", raw, &i, &ud);
        assert!(!String::from_utf8_lossy(&out).contains("zz-top-secret"));
        // User data without a plain password is kept.
        let raw = b"#!/bin/sh\necho hi\n";
        let (ud, _) = parse_user_data(Some(raw), &[], &UserDataLimits::default());
        assert_eq!(copy_content("user-data", raw, &i, &ud), raw);
    }

    #[test]
    fn vendor_data_and_hashes_are_scrubbed_and_notes_hold_no_digest() {
        use crate::model::{Blob, VendorPart};
        let vd = br##"{"cloud-init": "#cloud-config\nchpasswd:\n  list: |\n    root:vd-\"secret\"-9\n"}"##;
        let mut i = inst(None);
        let inner = b"#cloud-config\nchpasswd:\n  list: |\n    root:vd-\"secret\"-9\n".to_vec();
        i.vendor_user_data.push(VendorPart {
            file: "openstack/latest/vendor_data.json".into(),
            content_type: None,
            data: Blob::new(inner),
        });
        let (ud, _) =
            crate::source::userdata::parse_instance_user_data(&i, &UserDataLimits::default());
        for name in ["vendor_data.json", "vendor_data2.json"] {
            let out = copy_content(&format!("openstack/latest/{name}"), vd, &i, &ud);
            let t = String::from_utf8_lossy(&out);
            assert!(t.starts_with("# primer: ") && !t.contains("secret"), "{t}");
            assert!(!t.contains(&state::sha256_hex(vd)), "{t}");
            assert!(!t.contains("sha256"), "{t}");
        }
        // A hash in users: is a password carrier too.
        let raw = b"#cloud-config\nusers: [{name: bob, passwd: '$6$s$hashhash'}]\n";
        let (ud, _) = parse_user_data(Some(raw), &[], &UserDataLimits::default());
        let out = copy_content("user-data", raw, &inst(None), &ud);
        assert!(!String::from_utf8_lossy(&out).contains("hashhash"));
        // The password escaped inside another JSON file.
        let i = inst(Some("a\"b\\c-pw"));
        let out = copy_content(
            "openstack/latest/network_data.json",
            br#"{"x": "a\"b\\c-pw"}"#,
            &i,
            &UserData::default(),
        );
        assert!(String::from_utf8_lossy(&out).starts_with("# primer: "));
    }

    #[test]
    fn listings_show_no_digest_of_a_password_carrier() {
        let i = inst(Some("cs-pass-77"));
        let ud = UserData::default();
        let shown = shown_sha256(
            "cloudstack/password/vm_password.txt",
            b"cs-pass-77",
            &i,
            &ud,
        );
        assert_eq!(shown, "<redacted: holds a password>");
        assert_eq!(
            shown_sha256("cloudstack/metadata/vm-id.txt", b"x", &i, &ud),
            state::sha256_hex(b"x")
        );
    }

    #[test]
    fn drive_hash_leaves_passwords_out_and_sees_everything_else() {
        let drive = |pass: &[u8], host: &str, dev: &str| {
            let mut d = DriveFiles::new(dev, "iso9660");
            d.label = Some("config-2".into());
            d.files.insert(
                "cloudstack/password/vm_password.txt".into(),
                pass.to_vec().into(),
            );
            d.files
                .insert("cloudstack/metadata/local-hostname.txt".into(), host.into());
            d
        };
        let hash = |pass: &str, host: &str, dev: &str| {
            let i = inst(Some(pass));
            drive_hash(&drive(pass.as_bytes(), host, dev), &i, &UserData::default())
        };
        let base = hash("pw-one-1", "web", "/dev/sr0");
        // Only the password differs: the hash tells nothing about it.
        assert_eq!(base, hash("pw-two-2", "web", "/dev/sr0"));
        // The device is not part of the drive.
        assert_eq!(base, hash("pw-one-1", "web", "/dev/loop3"));
        // Any other change is seen.
        assert_ne!(base, hash("pw-one-1", "db", "/dev/sr0"));
        // And it is not the plain SHA-256 of the files (which would digest the password).
        let mut h = sha2::Sha256::new();
        use sha2::Digest;
        h.update(b"pw-one-1");
        let plain: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(base, plain);
    }

    /// The substring finders for a few needles and the automaton for many agree on every
    /// haystack: a needle anywhere, at either end, across needles, or none.
    #[test]
    fn few_needles_search_as_the_automaton_does() {
        let needles: Vec<&[u8]> = vec![b"pw-1", b"p\\w\"2", b"xyz", b"pw-1x"];
        let few = Finder::Few(
            needles
                .iter()
                .map(|n| memchr::memmem::Finder::new(n).into_owned())
                .collect(),
        );
        let many = Finder::Many(
            aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
                .build(&needles)
                .unwrap(),
        );
        assert_eq!(few.max_pattern_len(), many.max_pattern_len());
        for hay in [
            &b""[..],
            b"pw-",
            b"pw-1",
            b"..pw-1",
            b"xy",
            b"zzxyz",
            b"p\\w\"2 at the start",
            b"nothing here at all",
            b"pw-pw-1x",
        ] {
            assert_eq!(few.is_match(hay), many.is_match(hay), "{hay:?}");
        }
    }

    /// 30,000 passwords and an 8 MiB file of near-misses: one linear pass, not passwords x
    /// bytes (the naive search took hours on such a drive), and the password is still found.
    #[test]
    fn a_streamed_search_sees_a_match_across_chunk_seams() {
        // A buffer in memory is searched whole; the chunked search must agree on every seam a
        // device stream could cut (chunks of 64 KiB: a needle straddling each boundary).
        use crate::model::bytes::STREAM_CHUNK;
        let needle = b"s3cret-pa55";
        let finder = aho_corasick::AhoCorasick::new([needle]).unwrap();
        for cut in [1usize, 5, needle.len() - 1] {
            let mut data = vec![b'x'; 3 * STREAM_CHUNK];
            let at = STREAM_CHUNK - cut;
            data[at..at + needle.len()].copy_from_slice(needle);
            let overlap = finder.max_pattern_len() - 1;
            let chunks: Vec<&[u8]> = data.chunks(STREAM_CHUNK).collect();
            assert!(
                chunked_find(&chunks, &|d| finder.is_match(d), overlap),
                "cut {cut}"
            );
            let mut none = data.clone();
            none[at] = b'y';
            let chunks: Vec<&[u8]> = none.chunks(STREAM_CHUNK).collect();
            assert!(!chunked_find(&chunks, &|d| finder.is_match(d), overlap));
        }
        // `passw` over a seam, in any case.
        let mut data = vec![b'x'; 2 * STREAM_CHUNK];
        data[STREAM_CHUNK - 2..STREAM_CHUNK + 3].copy_from_slice(b"PaSsW");
        let chunks: Vec<&[u8]> = data.chunks(STREAM_CHUNK).collect();
        assert!(chunked_find(&chunks, &mentions_password, 4));
    }

    /// The search for `passw` finds exactly what a window at every byte finds: any case,
    /// at the start, at the end, after a lone `p`, overlapping candidates.
    #[test]
    fn mentions_password_is_the_window_search() {
        let window = |h: &[u8]| h.windows(5).any(|w| w.eq_ignore_ascii_case(b"passw"));
        for h in [
            &b""[..],
            b"p",
            b"pass",
            b"passw",
            b"PASSW",
            b"xpAsSwd",
            b"ppassw",
            b"pPpassW",
            b"p a s s w",
            b"password: x",
            b"the end: pass",
            b"x passw",
            b"\xffPaSsWoRd",
            b"upasswpasxw",
        ] {
            assert_eq!(
                mentions_password(h),
                window(h),
                "{}",
                String::from_utf8_lossy(h)
            );
        }
    }

    #[test]
    fn many_passwords_and_a_large_file_stay_linear() {
        let i = inst(None);
        let mut ud = UserData::default();
        for n in 0..30_000 {
            let pw = format!("{}b{n}", "a".repeat(40));
            ud.cloud_config.chpasswd.users.push((
                format!("u{n}"),
                PasswordValue::Plain(Secret::new(pw.into_bytes())),
            ));
        }
        let mut big = vec![b'a'; 8 << 20];
        let t = std::time::Instant::now();
        let s = Scrub::new(&i, &ud);
        assert_eq!(s.copy_content("openstack/content/0000", &big), big);
        let tail = format!("{}b17", "a".repeat(40));
        big.extend_from_slice(tail.as_bytes());
        let out = s.copy_content("openstack/content/0000", &big);
        assert!(String::from_utf8_lossy(&out).starts_with("# primer: "));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
    }
}
