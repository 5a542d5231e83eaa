//! Filesystem helpers under a target root: resolve paths inside the root (no escape through
//! `..`, absolute paths or symlinks) and write files atomically with explicit mode and owner.
//! The write helpers are the only code in primer that creates, replaces or removes files.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use crate::facts::Meta;
use crate::paths::{is_temp_name, Found, Kind, Resolver};

/// The one writer under a target root. Every file is written atomically: a temporary file in
/// the same directory, written and given its mode and owner (`stage`), made durable, then renamed
/// over the target, and the directory fsynced (`commit`). Batching the flush and the directory
/// fsyncs over all staged files keeps a first boot to one journal commit instead of one per
/// file; a crash still leaves each file old or new, never partial.
pub struct Writer {
    root: PathBuf,
    /// Resolution inside the root with a memo of what each lookup found, kept true by every
    /// change the writer makes (directories created, files renamed into place or removed).
    res: Resolver,
    /// Directories with a created, renamed or removed entry, not yet fsynced.
    dirty_dirs: BTreeSet<PathBuf>,
    /// Staged files: (tag, temporary file, target), renamed by `commit`.
    pending: Vec<(usize, PathBuf, PathBuf)>,
    /// Staged trees (the local copy of the drive), published by `commit` before the files.
    trees: Vec<Tree>,
    /// Directory -> the modes a new file there was read back with and found exactly as asked:
    /// the kernel gives the next file with that mode there the same (see `stage`).
    verified: HashMap<PathBuf, Vec<u32>>,
    /// Directory -> whether it has a default ACL, asked once (see `make_dir`).
    default_acl: HashMap<PathBuf, bool>,
    /// Directories this writer made directly under their own names (`make_dir`): on a
    /// filesystem known to give `mkdir` and `open` exactly the mode asked and the creator's
    /// ids, with no default ACL (their parent had none), their group primer's. What a new entry
    /// there gets is not read back (`create_final_dir`, `create_file`).
    direct: HashSet<PathBuf>,
    /// New directories (`stage_new_dir_file`) whose tree could not be begun (a name too long
    /// for its temporary name, a parent others may write): their files go the per-file way.
    per_file_dirs: BTreeSet<String>,
    /// Appends staged by `stage_append` (tag -> the mode and owner its file was staged with):
    /// a later append to the same path with the same mode and owner extends that staged file
    /// in place instead of copying it again (a chain of appends costs one copy of the file).
    appends: HashMap<usize, Meta>,
    /// Tag -> the earlier tags whose staged file it took over (`stage_append` in place): a
    /// failed rename of that file fails them too (`spread`).
    folded: HashMap<usize, Vec<usize>>,
    /// The devices of the directories it flushes and whether their filesystems order their
    /// metadata, each asked of the kernel once per run (`platform::Filesystems`).
    fss: crate::platform::Filesystems,
    seq: u64,
}

/// A directory tree built whole under a temporary name beside its target and published by one
/// rename (`Writer::stage_tree_file`): its files and subdirectories are created under their own
/// names inside it — nothing in it is visible until the rename, so none needs a temporary name
/// of its own.
struct Tree {
    /// The target relative to the root, as the caller names it.
    rel: String,
    tmp: PathBuf,
    target: PathBuf,
    /// The steps whose files it holds (each reported with the tree's outcome).
    tags: Vec<usize>,
    /// The steps whose file could not be staged (each already given its own error): a tree
    /// missing any file is never published — the old copy stays whole (`commit_trees`).
    failed: Vec<usize>,
    /// Directories made inside it (relative).
    dirs: BTreeSet<PathBuf>,
    /// Every entry made in it, in creation order (the no-flush fallback fsyncs them), relative
    /// to `tmp`, with the tag of the step whose file it is ([`DIR_ENTRY`] for a directory): a
    /// new directory that appeared meanwhile gets the files one by one (`merge_tree`). One
    /// relative path per file (28,000 rendered network files), not its full temporary path
    /// and a second copy of its name.
    entries: Vec<(usize, Box<Path>)>,
    dir_meta: Meta,
    /// New entries in the tree's directories take a group other than primer's.
    setgid: bool,
    /// The tree replaces its whole target (the local copy): published only with every file.
    /// Otherwise a directory the run creates (`Writer::stage_new_dir_file`): published with the
    /// files that could be written, never over an existing entry.
    whole: bool,
}

/// The tag of a directory among a [`Tree`]'s entries (never a step's index).
const DIR_ENTRY: usize = usize::MAX;

impl Tree {
    /// Whether `commit_trees` publishes it: its temporary directory was made, and it is
    /// complete or need not be.
    fn publishable(&self) -> bool {
        !self.tmp.as_os_str().is_empty() && (self.failed.is_empty() || !self.whole)
    }
}

/// What an append stages: the current file (copied, its length and SHA-256 re-checked when
/// the planner measured it), then the text (streamed, its digest re-checked by `Bytes`).
/// The planned length and SHA-256 of a file (`None`: this run's own staged file).
type Planned = Option<(u64, [u8; 32])>;

/// A check of a staged file before it is kept (`Writer::stage_checked`).
pub type StagedCheck<'a> = &'a dyn Fn(&Path) -> io::Result<()>;

struct Appended<'a> {
    from: Option<(fs::File, Planned)>,
    text: &'a crate::model::Bytes,
}

impl crate::model::bytes::WriteOut for Appended<'_> {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        if let Some((f, want)) = &self.from {
            let mut h = Sha256::new();
            let mut total = 0u64;
            let mut buf = vec![0u8; crate::model::bytes::STREAM_CHUNK];
            let mut r = f;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let chunk = buf.get(..n).unwrap_or_default();
                total += n as u64;
                // Past the planned length: changed, and not copied on without bound.
                if want.is_some_and(|(len, _)| total > len) {
                    break;
                }
                if want.is_some() {
                    h.update(chunk);
                }
                out.write_all(chunk)?;
            }
            if let Some((len, sha256)) = want {
                let got: [u8; 32] = h.finalize().into();
                if total != *len || got != *sha256 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "changed since planning (its length or SHA-256 differs); not appended",
                    ));
                }
            }
        }
        self.text.write_out(out)
    }
}

/// Links the current file `old` (inside primer's private state, under the run lock) as `new`
/// when it is a regular file with exactly `meta`: an unchanged file of a rebuilt tree. `false`
/// (and nothing made) otherwise, or when the link fails (another filesystem, a link count at
/// its limit): the caller then writes it. `hard_link` does not follow a symbolic link.
fn link_kept(old: &Path, new: &Path, meta: Meta) -> bool {
    let Ok(m) = fs::symlink_metadata(old) else {
        return false;
    };
    if !m.is_file() || crate::facts::meta_of(old, &m) != meta {
        return false;
    }
    fs::hard_link(old, new).is_ok()
}

impl Writer {
    pub fn new(root: &Path) -> Writer {
        Writer::with_resolver(Resolver::with_group_rule(
            root,
            crate::platform::hands_group_down,
        ))
    }

    /// A writer resolving through `res` and sharing its memo (the run's host facts looked the
    /// same paths up: the writer repeats none of those lookups). `res` must tell directories
    /// handing their group down by the platform's rule (`platform::hands_group_down`).
    pub fn with_resolver(res: Resolver) -> Writer {
        Writer {
            root: res.root().to_path_buf(),
            res,
            dirty_dirs: BTreeSet::new(),
            pending: Vec::new(),
            trees: Vec::new(),
            verified: HashMap::new(),
            default_acl: HashMap::new(),
            direct: HashSet::new(),
            per_file_dirs: BTreeSet::new(),
            appends: HashMap::new(),
            folded: HashMap::new(),
            fss: crate::platform::Filesystems::default(),
            seq: 0,
        }
    }

    pub fn resolve(&self, rel: &str) -> io::Result<PathBuf> {
        self.res.resolve(rel)
    }

    /// Forgets what the writer learnt of `host` (a path inside the root that something other
    /// than the writer just changed: the `/etc/localtime` link).
    pub fn forget(&mut self, host: &Path) {
        self.res.forget(host);
    }

    /// Forgets everything the writer learnt of the tree: anything may have changed (a script
    /// ran: a directory may have a default ACL now, or another owner rule). Only lookups and
    /// the one-per-directory checks are repeated afterwards.
    pub fn forget_all(&mut self) {
        self.res.forget_all();
        self.verified.clear();
        self.default_acl.clear();
        self.direct.clear();
        self.fss.forget_all();
    }

    /// Whether this writer (or another sharing its resolver) made the directory `host` in
    /// this run, empty, with its mode and owner from the start: it holds only what the run put
    /// there. No lookup.
    pub fn made_here(&self, host: &Path) -> bool {
        matches!(self.res.cached(host), Some(Kind::Dir { fresh: true, .. }))
    }

    /// Creates the new file `path` (the run lock's, in the state directory this run made:
    /// `made_here` of its parent) locked before anyone else can open it: private (0600) under a
    /// temporary name, handed to `lock`, then renamed into place, never over an existing
    /// entry. `Some`: in place and locked; no other process can have held a lock on it, so
    /// nothing this run learnt before is stale. `None`: nothing made (another run created it
    /// meanwhile, or it could not be made; the temporary is removed, and an interruption
    /// leaves it for the state directory's sweep): the caller opens it as usual. Unix only (a
    /// file open on Windows cannot be renamed unless shared for deletion).
    pub fn create_locked<L>(
        &mut self,
        path: &Path,
        lock: impl FnOnce(fs::File) -> Option<L>,
    ) -> Option<L> {
        #[cfg(not(unix))]
        {
            let _ = (path, lock);
            None
        }
        #[cfg(unix)]
        {
            let tmp = self.temp_name(path);
            let f = crate::platform::create_private_file(&tmp).ok()?;
            // Atomic or not at all: where the filesystem cannot rename without replacing
            // (NFS), another run may create the lock between a look and a plain rename, which
            // would then replace the file it holds locked; the caller's open-and-lock follows.
            let locked = lock(f).and_then(|l| {
                crate::platform::rename_noreplace_atomic(&tmp, path)
                    .ok()
                    .map(|()| l)
            });
            match locked {
                Some(l) => {
                    self.res.set(path, Kind::Other);
                    Some(l)
                }
                None => {
                    let _ = fs::remove_file(&tmp);
                    None
                }
            }
        }
    }

    fn touched(&mut self, path: &Path) {
        // Looked up before it is copied: a batch of files in one directory copies it once.
        if let Some(p) = path.parent().filter(|p| !self.dirty_dirs.contains(*p)) {
            self.dirty_dirs.insert(p.to_path_buf());
        }
    }

    /// Creates every missing directory of `rel_dir` (resolved inside the root first, so a
    /// symlinked component leads to its re-rooted target) with `meta`. Existing directories are
    /// left as they are. Returns the resolved host path.
    pub fn create_dirs(&mut self, rel_dir: &str, meta: Meta) -> io::Result<PathBuf> {
        let host = self.resolve(rel_dir)?;
        // Every existing component of `host` is a real directory now (resolution followed the
        // links); what is missing is created one level at a time.
        let rel = host
            .strip_prefix(&self.root)
            .map_err(io::Error::other)?
            .to_path_buf();
        let mut cur = self.root.clone();
        let mut parent_setgid = self.res.kind(&cur).is_none_or(|k| k.setgid());
        for comp in rel.components() {
            cur.push(comp);
            match self.res.kind(&cur) {
                Some(Kind::Dir { setgid, .. }) => parent_setgid = setgid,
                Some(Kind::Missing) => {
                    let setgid = self.make_dir(&cur, meta, parent_setgid)?;
                    self.touched(&cur);
                    parent_setgid = setgid;
                }
                Some(Kind::Other) | None => {
                    // A symlink here, or a failed lookup: look again for the error's sake.
                    return Err(match fs::symlink_metadata(&cur) {
                        Err(e) => at(&cur, e),
                        Ok(_) => io::Error::other(format!(
                            "{}: exists and is not a directory",
                            cur.display()
                        )),
                    });
                }
            }
        }
        Ok(host)
    }

    /// Creates the missing directory `dir` (its parent exists) with `meta` already in place when
    /// it appears. When `mkdir` itself gives the mode and owner (primer's own ids, a mode the
    /// umask keeps, no group handed down: `platform::creates_final`, and no default ACL on the
    /// parent, which would replace the umask) it is made under its name directly — `mkdir` is
    /// atomic, and that spares a rename per directory. Otherwise it is made under a temporary
    /// name beside it, given its owner and mode, then renamed (never over an existing entry). A
    /// crash leaves either no directory or the finished one; the empty temporary directory it
    /// may leave is swept by the next run (`sweep_temps`). A directory made directly whose
    /// metadata still came out different (a filesystem's own owner rules) is removed at once
    /// and made the other way: never corrected in place, where a failed correction or a crash
    /// before it would leave it under its final name, taken as it is by the next run.
    /// `parent_setgid`: its parent gives new entries its group. Returns whether the new
    /// directory is setgid in turn.
    fn make_dir(&mut self, dir: &Path, meta: Meta, parent_setgid: bool) -> io::Result<bool> {
        // Its mode is exactly `meta.mode`: under a setgid parent (which it would inherit the
        // bit from) `create_staged_dir` always sets the mode. Its group is `meta.gid`: one
        // other than primer's own hands itself down on a `grpid` mount (`Kind::Dir::setgid`).
        let setgid = meta.mode & 0o2000 != 0 || !crate::platform::is_own_group(meta.gid);
        let made = |w: &mut Writer, direct: bool| {
            w.fss.made(dir);
            // Empty and made by this writer: its entries are the ones the writer adds.
            w.res.set(
                dir,
                Kind::Dir {
                    setgid,
                    fresh: true,
                },
            );
            // `mkdir` gives a new directory its parent's default ACL, and a direct one's
            // parent had none.
            if direct {
                w.default_acl.insert(dir.to_path_buf(), false);
                w.direct.insert(dir.to_path_buf());
            }
            Ok(setgid)
        };
        if crate::platform::creates_final(meta, parent_setgid) && !self.mkdir_may_differ(dir) {
            // Read back unless its parent is one this writer made directly (see `direct`).
            let verify = !dir.parent().is_some_and(|p| self.direct.contains(p));
            match crate::platform::create_final_dir(dir, meta, verify) {
                Ok(true) => {
                    crate::apply::fault::point("mkdir");
                    return made(self, true);
                }
                // Removed again: made under a temporary name below.
                Ok(false) => {}
                // Created meanwhile by someone else: an existing directory is left as it is.
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) =>
                {
                    self.res.forget(dir);
                    return Ok(self.res.kind(dir).is_none_or(|k| k.setgid()));
                }
                Err(e) => return Err(at(dir, e)),
            }
        }
        let tmp = self.temp_name(dir);
        let r = crate::platform::create_staged_dir(&tmp, meta, parent_setgid)
            .map_err(|e| at(&tmp, e))
            .and_then(|()| {
                crate::apply::fault::point("mkdir");
                rename_noreplace(&tmp, dir)
            });
        match r {
            Ok(()) => made(self, false),
            // Created meanwhile by someone else: an existing directory is left as it is.
            Err(_) if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) => {
                let _ = fs::remove_dir(&tmp);
                self.res.forget(dir);
                Ok(self.res.kind(dir).is_none_or(|k| k.setgid()))
            }
            Err(e) => {
                let _ = fs::remove_dir(&tmp);
                Err(e)
            }
        }
    }

    /// Whether `mkdir` under the parent of `dir` may give other than asked
    /// (`platform::mkdir_may_differ`: a filesystem not known to give exactly what is asked, or
    /// a default ACL): asked of the kernel once per directory (a directory this writer made
    /// directly is on a known filesystem and has no default ACL).
    fn mkdir_may_differ(&mut self, dir: &Path) -> bool {
        let Some(parent) = dir.parent() else {
            return true;
        };
        if let Some(&known) = self.default_acl.get(parent) {
            return known;
        }
        let acl = crate::platform::mkdir_may_differ(parent);
        self.default_acl.insert(parent.to_path_buf(), acl);
        acl
    }

    /// A fresh temporary name beside `target`: `.NAME.primer-tmp.PID.SEQ` (see `is_temp_name`).
    fn temp_name(&mut self, target: &Path) -> PathBuf {
        let name = target
            .file_name()
            .unwrap_or(OsStr::new("file"))
            .to_string_lossy();
        self.seq += 1;
        let tmp = crate::paths::temp_name(&name, pid(), self.seq);
        match target.parent() {
            Some(d) => d.join(tmp),
            None => PathBuf::from(tmp),
        }
    }

    /// Makes sure `rel_dir` exists with exactly `meta` (mode and owner); missing parents are
    /// created with `parents`.
    pub fn ensure_dir(&mut self, rel_dir: &str, meta: Meta, parents: Meta) -> io::Result<()> {
        let host = self.resolve(rel_dir)?;
        // A directory made now gets `meta` as it is made: set again only on an existing one.
        let existed = self.res.kind(&host) != Some(Kind::Missing);
        if let Some(parent) = host.parent().and_then(|p| p.strip_prefix(&self.root).ok()) {
            self.create_dirs(&parent.to_string_lossy(), parents)?;
        }
        let host = self.create_dirs(rel_dir, meta)?;
        // Made by this call only if the memo says this writer made it (someone else may have
        // created it meanwhile: `make_dir` then forgets it).
        let made_here = matches!(self.res.cached(&host), Some(Kind::Dir { fresh: true, .. }));
        if existed || !made_here {
            set_meta(&host, meta)?;
            // Its mode and group may have changed: what it hands down to new entries too.
            self.res.set(
                &host,
                Kind::Dir {
                    setgid: meta.mode & 0o2000 != 0 || !crate::platform::is_own_group(meta.gid),
                    fresh: false,
                },
            );
        }
        Ok(())
    }

    /// `stage`, then `check` on the staged temporary file (its final bytes, mode and owner,
    /// inside the root beside the target) before it is kept for `commit`; a refused file is
    /// removed at once. Used for the sudoers drop-in, which `visudo -cf` checks in place.
    pub fn stage_checked(
        &mut self,
        tag: usize,
        rel: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        parents: Meta,
        check: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        self.stage(tag, rel, content, meta, parents)?;
        let Some((_, tmp, _)) = self.pending.last() else {
            return Err(io::Error::other(format!("{rel}: not staged")));
        };
        let tmp = tmp.clone();
        if let Err(e) = check(&tmp) {
            self.pending.pop();
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Stages `rel` as what it holds followed by `text` (a `write_files` `append`), neither
    /// held: the current file (`base`: as the planner measured it, re-checked by length and
    /// SHA-256 while it is copied, so a file changed since planning is not silently merged; or
    /// what step N of this run staged there) is copied into the staged file, then `text`
    /// streams in; `commit` renames it over the file as any staged write. `check`, when given,
    /// is run on the staged file as `stage_checked` does.
    #[allow(clippy::too_many_arguments)]
    pub fn stage_append(
        &mut self,
        tag: usize,
        rel: &str,
        base: &crate::plan::AppendBase,
        text: &crate::model::Bytes,
        meta: Meta,
        parents: Meta,
        check: Option<StagedCheck<'_>>,
    ) -> io::Result<()> {
        use crate::plan::AppendBase;
        let from = match base {
            AppendBase::Step(k) => {
                let at_k = self
                    .pending
                    .iter()
                    .rposition(|(t, _, _)| t == k)
                    .ok_or_else(|| {
                        io::Error::other(format!(
                            "{rel}: not appended: the write it builds on did not land"
                        ))
                    })?;
                // An append onto this run's own append with the same mode and owner: the text
                // goes onto that staged file (no copy; 40 appends to a 60 MiB file staged
                // 2.4 GB before).
                if self.appends.get(k) == Some(&meta) {
                    return self.extend_staged(at_k, tag, text, check);
                }
                let tmp = self.pending[at_k].1.clone();
                Some((fs::File::open(&tmp).map_err(|e| at(&tmp, e))?, None))
            }
            AppendBase::Target(want) => {
                let (host, found) = self.res.resolve_found(rel)?;
                // The same file staged by an earlier step of this run under another name (a
                // link to it, or it through a link): copying the file as it is now would drop
                // that step's content at the renames. Refused, naming it, never lost silently.
                if self.pending.iter().any(|(_, _, t)| *t == host) {
                    return Err(io::Error::other(format!(
                        "{}: written by an earlier step of this run under another name (a \
                         link); not appended",
                        host.display()
                    )));
                }
                let now = match found {
                    Found::Missing => None,
                    // Opened without blocking, following no final link, taking no terminal:
                    // whatever sits there now (a FIFO would block the run until a writer
                    // came); a file that is not regular is refused below.
                    _ => match crate::platform::open_nonblocking(&host, false) {
                        Ok(f) => Some(f),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(e) => return Err(at(&host, e)),
                    },
                };
                if let Some(f) = &now {
                    if !f.metadata().map_err(|e| at(&host, e))?.is_file() {
                        return Err(io::Error::other(format!(
                            "{}: not a regular file; not appended",
                            host.display()
                        )));
                    }
                }
                match (now, want) {
                    (None, None) => None,
                    (Some(f), Some(w)) => Some((f, Some(*w))),
                    (Some(_), None) => {
                        return Err(io::Error::other(format!(
                            "{}: created since planning; not appended",
                            host.display()
                        )))
                    }
                    (None, Some(_)) => {
                        return Err(io::Error::other(format!(
                            "{}: removed since planning; not appended",
                            host.display()
                        )))
                    }
                }
            }
        };
        let content = Appended { from, text };
        match check {
            Some(check) => self.stage_checked(tag, rel, &content, meta, parents, check)?,
            None => self.stage(tag, rel, &content, meta, parents)?,
        }
        self.appends.insert(tag, meta);
        Ok(())
    }

    /// Appends `text` to the file staged at `pending[at_k]` (an earlier append of this run to
    /// the same path, with the same mode and owner), which step `tag` then owns: renamed once
    /// for both, a failed rename failing both (`spread`). A text that fails to stream (or a
    /// `check` that refuses the result) is cut off again: the earlier append stays as staged.
    fn extend_staged(
        &mut self,
        at_k: usize,
        tag: usize,
        text: &crate::model::Bytes,
        check: Option<StagedCheck<'_>>,
    ) -> io::Result<()> {
        let (k, tmp, _) = self.pending[at_k].clone();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&tmp)
            .map_err(|e| at(&tmp, e))?;
        let before = f.metadata().map_err(|e| at(&tmp, e))?.len();
        let written = crate::model::bytes::WriteOut::write_out(text, &mut f)
            .map_err(|e| at(&tmp, e))
            .and_then(|()| check.map_or(Ok(()), |c| c(&tmp)));
        if let Err(e) = written {
            // Back to the earlier append's bytes. If even that fails, neither lands: the file
            // is removed, so its rename fails and reports the earlier step too.
            if let Err(cut) = f.set_len(before) {
                let _ = fs::remove_file(&tmp);
                return Err(at(&tmp, cut));
            }
            return Err(e);
        }
        let meta = self.appends.remove(&k);
        if let Some(m) = meta {
            self.appends.insert(tag, m);
        }
        let mut earlier = self.folded.remove(&k).unwrap_or_default();
        earlier.push(k);
        self.folded.insert(tag, earlier);
        self.pending[at_k].0 = tag;
        Ok(())
    }

    /// Writes `content` to `rel` atomically with `meta` (missing parents get `parents`) and
    /// makes it durable: `stage` + `commit` for a single file.
    pub fn write_atomic(
        &mut self,
        rel: &str,
        content: &[u8],
        meta: Meta,
        parents: Meta,
    ) -> io::Result<()> {
        // Only this file: files other steps staged stay pending for their own commit (and
        // their errors stay theirs).
        let others = std::mem::take(&mut self.pending);
        let trees = std::mem::take(&mut self.trees);
        let r = self.stage(0, rel, content, meta, parents).and_then(|()| {
            match self.commit().into_iter().next() {
                Some((_, e)) => Err(e),
                None => Ok(()),
            }
        });
        self.pending = others;
        self.trees = trees;
        r
    }

    /// Writes `content` to a temporary file beside `rel` (same directory, so the rename is
    /// atomic) with `meta`; `commit` makes every staged file durable and renames it into place.
    /// `tag` identifies the caller's step in `commit`'s errors.
    pub fn stage(
        &mut self,
        tag: usize,
        rel: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        parents: Meta,
    ) -> io::Result<()> {
        let (target, found) = self.res.resolve_found(rel)?;
        // Parents of the resolved target (a symlinked last component may point elsewhere),
        // unless resolution just saw the parent as a directory (the memo says so).
        let parent = target.parent().filter(|p| p.starts_with(&self.root));
        let mut parent_setgid = true;
        if let Some(p) = parent {
            // Only what the memo holds from the resolution: a fresh `lstat` of `p` would
            // follow a link below a component remembered as missing; `create_dirs` checks
            // every component.
            match self.res.cached(p) {
                Some(Kind::Dir { setgid, .. }) => parent_setgid = setgid,
                _ => {
                    if let Ok(rel_parent) = p.strip_prefix(&self.root) {
                        self.create_dirs(&rel_parent.to_string_lossy(), parents)?;
                    }
                    parent_setgid = self.res.kind(p).is_none_or(|k| k.setgid());
                }
            }
        }
        // Resolution looked the target up already: a second lookup only when it could not say
        // (a new file costs no failing lookup beyond the one resolution made).
        let is_dir = match found {
            Found::Dir => true,
            Found::Missing | Found::Other => false,
            Found::Unknown => fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()),
        };
        if is_dir {
            return Err(io::Error::other(format!(
                "{}: is a directory",
                target.display()
            )));
        }
        let tmp = self.temp_name(&target);
        let result = self.write_staged(&tmp, content, meta, parent_setgid);
        match result {
            Ok(()) => {
                self.pending.push((tag, tmp, target));
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Creates the new file `path` for `meta` (`platform::create_staged_file`), reading back
    /// what the kernel gave only for the first file of each mode in each directory: the same
    /// request in the same directory gets the same answer (its default ACL, its filesystem's
    /// owner rules), so 5,000 files in one directory cost one check, not 5,000.
    fn create_file(
        &mut self,
        path: &Path,
        meta: Meta,
        parent_setgid: bool,
    ) -> io::Result<(fs::File, crate::platform::Fix)> {
        let dir = path.parent().unwrap_or(Path::new(""));
        // Not in a directory this writer made directly (see `direct`).
        let verify = !self.direct.contains(dir)
            && !self
                .verified
                .get(dir)
                .is_some_and(|modes| modes.contains(&meta.mode));
        let (f, fix) = crate::platform::create_staged_file(path, meta, parent_setgid, verify)?;
        if verify && fix == crate::platform::Fix::default() {
            self.verified
                .entry(dir.to_path_buf())
                .or_default()
                .push(meta.mode);
        }
        Ok((f, fix))
    }

    /// Writes `content` as `rel_in` (a clean relative path) of the tree `tree_rel`, which is
    /// built whole under a temporary name beside its target (made on the first call, its
    /// missing parents with `dir_meta`) and published by `commit` with one rename: the local
    /// copy of the drive, thousands of files that would otherwise each need a temporary name
    /// and a rename of their own. Directories inside the tree get `dir_meta`. Every file of
    /// the tree must be staged (unchanged ones too): the tree replaces the whole target
    /// directory. `tag` identifies the caller's step in `commit`'s errors.
    pub fn stage_tree_file(
        &mut self,
        tag: usize,
        tree_rel: &str,
        rel_in: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        dir_meta: Meta,
    ) -> io::Result<()> {
        self.tree_file(tag, tree_rel, rel_in, content, meta, dir_meta, false, true)
    }

    /// Where the file `rel` would go into a directory this run creates: the first missing
    /// directory on its resolved path (relative to the root) and the file's path inside it, or
    /// `None` when its parent exists (or resolution fails: `stage` reports that). Such a
    /// directory can be built whole under a temporary name and renamed in once
    /// ([`Writer::stage_new_dir_file`]) instead of one temporary name and rename per file.
    pub fn new_dir_of(&mut self, rel: &str) -> Option<(String, String)> {
        let host = self.resolve(rel).ok()?;
        let inside = host.strip_prefix(&self.root).ok()?.to_path_buf();
        let comps: Vec<_> = inside.components().collect();
        let mut cur = self.root.clone();
        for (n, c) in comps[..comps.len().saturating_sub(1)].iter().enumerate() {
            cur.push(c);
            match self.res.kind(&cur) {
                Some(Kind::Dir { .. }) => continue,
                Some(Kind::Missing) => {
                    let dir: PathBuf = comps[..=n].iter().collect();
                    let rest: PathBuf = comps[n + 1..].iter().collect();
                    return Some((dir.to_str()?.to_string(), rest.to_str()?.to_string()));
                }
                _ => return None,
            }
        }
        None
    }

    /// Writes `content` as `rel_in` of the directory `tree_rel`, which does not exist yet
    /// (`new_dir_of`): the directory is built under a temporary name beside it with every file
    /// the run puts there (their own names, no rename each; its directories with `dir_meta`)
    /// and renamed in once by `commit`, after the flush that makes their data durable. Nothing
    /// in it is visible under a target name before that rename, so a crash leaves no partial
    /// file; a file that cannot be written is left out (its step fails), the others are
    /// published. If the directory appeared meanwhile, each file is renamed into it on its own.
    pub fn stage_new_dir_file(
        &mut self,
        tag: usize,
        tree_rel: &str,
        rel_in: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        dir_meta: Meta,
    ) -> io::Result<()> {
        self.tree_file(tag, tree_rel, rel_in, content, meta, dir_meta, false, false)
    }

    /// As [`Writer::stage_tree_file`], for a file the plan found unchanged in the current
    /// target (same bytes, mode and owner): the new tree gets a hard link to the current file
    /// instead of a copy (no bytes read from the drive or written again, its inode and times
    /// kept), when that file is still a regular file with `meta`; else it is written.
    pub fn keep_tree_file(
        &mut self,
        tag: usize,
        tree_rel: &str,
        rel_in: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        dir_meta: Meta,
    ) -> io::Result<()> {
        self.tree_file(tag, tree_rel, rel_in, content, meta, dir_meta, true, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn tree_file(
        &mut self,
        tag: usize,
        tree_rel: &str,
        rel_in: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        dir_meta: Meta,
        keep: bool,
        whole: bool,
    ) -> io::Result<()> {
        if !whole && self.per_file_dirs.contains(tree_rel) {
            return self.stage_in_new_dir(tag, tree_rel, rel_in, content, meta, dir_meta);
        }
        let t = match self.trees.iter().position(|t| t.rel == tree_rel) {
            Some(t) => t,
            None => {
                let r = self.begin_tree(tree_rel, dir_meta, whole);
                let t = self.trees.len() - 1;
                if let (Err(e), false) = (&r, whole) {
                    // A new directory is only a faster way to the same files: where its tree
                    // cannot be made (`.NAME.primer-tmp.PID.SEQ` longer than a name may be, a
                    // parent others may write) its files are staged one by one, as they would
                    // be without it — never failed for the tree's sake (the run would never
                    // converge). No temporary directory was made: nothing to remove.
                    tracing::debug!("{tree_rel}: not built whole ({e}): file by file");
                    self.trees.pop();
                    self.per_file_dirs.insert(tree_rel.to_string());
                    return self.stage_in_new_dir(tag, tree_rel, rel_in, content, meta, dir_meta);
                }
                if let Err(e) = r {
                    self.trees[t].tags.push(tag);
                    self.trees[t].failed.push(tag);
                    return Err(e);
                }
                t
            }
        };
        self.trees[t].tags.push(tag);
        let r = self.stage_in_tree(t, tag, tree_rel, rel_in, content, meta, keep);
        if r.is_err() {
            self.trees[t].failed.push(tag);
        }
        r
    }

    /// A file of the new directory `tree_rel` staged beside its target on its own (`stage`),
    /// its missing directories made with `dir_meta`: where that directory is not built whole.
    fn stage_in_new_dir(
        &mut self,
        tag: usize,
        tree_rel: &str,
        rel_in: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        dir_meta: Meta,
    ) -> io::Result<()> {
        if Path::new(rel_in).is_absolute() || !crate::paths::is_clean_relative(rel_in) {
            return Err(io::Error::other(format!(
                "{tree_rel}/{rel_in}: not a clean relative path"
            )));
        }
        self.stage(
            tag,
            &format!("{tree_rel}/{rel_in}"),
            content,
            meta,
            dir_meta,
        )
    }

    /// `stage_tree_file` into the begun tree `t`.
    #[allow(clippy::too_many_arguments)]
    fn stage_in_tree(
        &mut self,
        t: usize,
        tag: usize,
        tree_rel: &str,
        rel_in: &str,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        keep: bool,
    ) -> io::Result<()> {
        // Relative, and nothing but plain names: `tmp.join` of an absolute path would drop
        // the tree's prefix and write outside it.
        if Path::new(rel_in).is_absolute() || !crate::paths::is_clean_relative(rel_in) {
            return Err(io::Error::other(format!(
                "{tree_rel}/{rel_in}: not a clean relative path"
            )));
        }
        // Its temporary directory could not be made: refused (an empty `tmp` would make the
        // paths below relative to the working directory).
        if self.trees[t].tmp.as_os_str().is_empty() {
            return Err(io::Error::other(format!(
                "{tree_rel}/{rel_in}: not written: its directory could not be made"
            )));
        }
        // Its directories, made under their own names inside the unpublished tree.
        let rel_in = Path::new(rel_in);
        let mut sub = PathBuf::new();
        let comps: Vec<_> = rel_in.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            sub.push(c);
            if self.trees[t].dirs.contains(&sub) {
                continue;
            }
            let tree = &self.trees[t];
            let host = tree.tmp.join(&sub);
            crate::platform::create_staged_dir(&host, tree.dir_meta, tree.setgid)
                .map_err(|e| at(&host, e))?;
            self.fss.made(&host);
            let tree = &mut self.trees[t];
            tree.dirs.insert(sub.clone());
            tree.entries.push((DIR_ENTRY, sub.as_path().into()));
        }
        let host = self.trees[t].tmp.join(rel_in);
        if keep && link_kept(&self.trees[t].target.join(rel_in), &host, meta) {
            self.trees[t].entries.push((tag, rel_in.into()));
            return Ok(());
        }
        let setgid = self.trees[t].setgid;
        match self.write_new(&host, content, meta, setgid) {
            Ok(()) => {
                self.trees[t].entries.push((tag, rel_in.into()));
                Ok(())
            }
            Err((e, created)) => {
                // Only a file this call created is removed: one already there (the same path
                // staged twice, or `A` and `a` in a case-insensitive directory) belongs to an
                // earlier step, whose success the record keeps.
                if created {
                    let _ = fs::remove_file(&host);
                }
                Err(e)
            }
        }
    }

    /// Creates the not-yet-visible file `path` and writes `content` into it, mode and owner
    /// final: created with them when the kernel gives them at creation (primer's own ids, no
    /// setgid parent, a mode the umask keeps); otherwise private, and the owner and mode are
    /// set after the write, before anything renames it into view. Errors name `path`.
    fn write_staged(
        &mut self,
        path: &Path,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        setgid: bool,
    ) -> io::Result<()> {
        self.write_new(path, content, meta, setgid)
            .map_err(|(e, _)| e)
    }

    /// `write_staged`, telling with an error whether `path` was created by this call (so the
    /// caller removes only its own file).
    fn write_new(
        &mut self,
        path: &Path,
        content: &(impl crate::model::bytes::WriteOut + ?Sized),
        meta: Meta,
        setgid: bool,
    ) -> Result<(), (io::Error, bool)> {
        // Created exclusively: "exists" means another's file, untouched; any other error may
        // come after the creation (reading back what the kernel gave), so the file is ours.
        let (mut f, fix) = self.create_file(path, meta, setgid).map_err(|e| {
            let created = e.kind() != io::ErrorKind::AlreadyExists;
            (at(path, e), created)
        })?;
        // A drive file on the device streams in, its digest checked (model::Bytes).
        content
            .write_out(&mut f)
            .and_then(|()| crate::platform::finish_staged_file(&f, meta, fix))
            .map_err(|e| (at(path, e), true))
    }

    /// Makes the temporary directory of a new tree beside `tree_rel`'s target. The tree is
    /// listed even when that fails (with no temporary directory): its later files are then
    /// refused, and it is never published.
    fn begin_tree(&mut self, tree_rel: &str, dir_meta: Meta, whole: bool) -> io::Result<()> {
        self.trees.push(Tree {
            rel: tree_rel.to_string(),
            tmp: PathBuf::new(),
            target: PathBuf::new(),
            tags: Vec::new(),
            failed: Vec::new(),
            dirs: BTreeSet::new(),
            entries: Vec::new(),
            dir_meta,
            setgid: dir_meta.mode & 0o2000 != 0 || !crate::platform::is_own_group(dir_meta.gid),
            whole,
        });
        let (tmp, target) = self.make_tree_dir(tree_rel, dir_meta, whole)?;
        if let Some(tree) = self.trees.last_mut() {
            tree.tmp = tmp;
            tree.target = target;
        }
        Ok(())
    }

    /// The temporary directory of a new tree and its target (see `begin_tree`).
    /// A new directory (`!whole`) is refused where others than root may write its parent.
    fn make_tree_dir(
        &mut self,
        tree_rel: &str,
        dir_meta: Meta,
        whole: bool,
    ) -> io::Result<(PathBuf, PathBuf)> {
        let target = self.resolve(tree_rel)?;
        let parent = target
            .parent()
            .filter(|p| p.starts_with(&self.root))
            .ok_or_else(|| io::Error::other(format!("{tree_rel}: no parent inside the root")))?;
        let rel_parent = parent
            .strip_prefix(&self.root)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .into_owned();
        self.create_dirs(&rel_parent, dir_meta)?;
        // A new directory's name stays free from now to the commit (a file staged on its own
        // makes its directory at once): in a parent others may write (`/tmp`, `/var/tmp`, a
        // shared directory) a user could take the name meanwhile — a symbolic link to
        // `/etc/cron.d` — and have root's files land there. Only a parent no one but root (or
        // primer's own user) may write gets a tree; elsewhere its files go one by one
        // (`tree_file`), each directory made at once as before.
        if !whole && !only_root_writes(parent) {
            return Err(io::Error::other(format!(
                "{}: others may write it",
                parent.display()
            )));
        }
        let parent_setgid = self.res.kind(parent).is_none_or(|k| k.setgid());
        let tmp = self.temp_name(&target);
        crate::platform::create_staged_dir(&tmp, dir_meta, parent_setgid)
            .map_err(|e| at(&tmp, e))?;
        self.fss.made(&tmp);
        crate::apply::fault::point("mkdir");
        Ok((tmp, target))
    }

    /// Publishes every staged tree (`flushed`: its data is durable already; otherwise each of
    /// its entries is fsynced first). A missing target gets the tree by one rename (never over
    /// an entry made meanwhile); an existing one is swapped with it atomically
    /// (`renameat2(RENAME_EXCHANGE)`: a non-empty directory cannot be renamed over) and the
    /// old tree, now under the temporary name, removed. A crash leaves the old tree or the new
    /// one under the target's name, and at most a temporary tree beside it, which the next
    /// run's sweep removes. The swap is one metadata change like a file's rename, so the run's
    /// one-flush argument (`commit_run`) holds for it as for the files. Where the filesystem
    /// has no exchange (Windows; `EINVAL`) the old tree is first renamed aside: a crash between
    /// the two renames leaves no copy at all, which the next run writes again.
    fn commit_trees(&mut self, flushed: bool) -> Vec<(usize, io::Error)> {
        let mut errors = Vec::new();
        for tree in std::mem::take(&mut self.trees) {
            if !tree.publishable() {
                // A file of it is missing: publishing it would replace the whole old copy
                // with an incomplete one (and a file left unchanged on the drive would vanish
                // without a word). Thrown away; the old copy stays, and every step of the tree
                // fails (the failed ones kept their own error), so the record leaves them out
                // and the next run builds the tree again.
                if !tree.tmp.as_os_str().is_empty() {
                    let _ = fs::remove_dir_all(&tree.tmp);
                }
                for tag in tree.tags.iter().filter(|t| !tree.failed.contains(t)) {
                    errors.push((
                        *tag,
                        at(
                            &tree.target,
                            io::Error::other(
                                "not written: another file of the copy failed; the old copy is kept",
                            ),
                        ),
                    ));
                }
                continue;
            }
            let r = (|| {
                if !flushed {
                    for (_, rel) in tree.entries.iter().rev() {
                        let e = tree.tmp.join(rel);
                        crate::platform::sync_file(&e).map_err(|err| at(&e, err))?;
                    }
                    sync_dir(&tree.tmp).map_err(|e| at(&tree.tmp, e))?;
                }
                if tree.whole {
                    self.publish_tree(&tree.tmp, &tree.target)?;
                    // The tree made in the target's parent is there now.
                    self.fss.made(&tree.target);
                    return Ok(());
                }
                match crate::platform::rename_noreplace(&tree.tmp, &tree.target) {
                    Err(_) if fs::symlink_metadata(&tree.target).is_ok() => {
                        self.res.forget_all();
                        errors.extend(self.merge_tree(&tree));
                        Ok(())
                    }
                    Ok(()) => {
                        self.fss.made(&tree.target);
                        Ok(())
                    }
                    Err(e) => Err(at(&tree.target, e)),
                }
            })();
            crate::apply::fault::point("rename");
            match r {
                Ok(()) => {
                    self.touched(&tree.target);
                    // What the memo knew below the old tree is gone with it.
                    self.res.forget_all();
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&tree.tmp);
                    // A file that failed to stage keeps its own error.
                    for tag in tree.tags.iter().filter(|t| !tree.failed.contains(t)) {
                        errors.push((*tag, io::Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
        errors
    }

    /// The files of the new-directory tree `tree` renamed one by one into its target, which
    /// appeared since the run looked (another step made it): each file's data is durable (the
    /// run's flush), so each lands whole, as a file staged beside its target would; missing
    /// directories are made as `create_dirs` makes them. The rest of the temporary tree is
    /// removed. Returns the errors by tag.
    ///
    /// Only into a real directory: whatever else took the name (a symbolic link planted there,
    /// a file) fails every file of the tree, and nothing is renamed through it. Each file goes
    /// to its path resolved inside the root (`create_dirs`), never to the kernel's reading of
    /// `target/rel`: with `--root` a link below the target is re-rooted, not followed out.
    fn merge_tree(&mut self, tree: &Tree) -> Vec<(usize, io::Error)> {
        let mut errors = Vec::new();
        let is_dir = fs::symlink_metadata(&tree.target).is_ok_and(|m| m.is_dir());
        for (tag, rel_in) in tree.entries.iter().filter(|(t, _)| *t != DIR_ENTRY) {
            let r = (|| {
                if !is_dir {
                    return Err(io::Error::other(format!(
                        "{}: appeared meanwhile and is not a directory",
                        tree.target.display()
                    )));
                }
                let rel = Path::new(&tree.rel).join(rel_in);
                let (Some(rel_parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                    return Err(io::Error::other(format!("{}: no file name", rel.display())));
                };
                let dest = self
                    .create_dirs(&rel_parent.to_string_lossy(), tree.dir_meta)?
                    .join(name);
                fs::rename(tree.tmp.join(rel_in), &dest).map_err(|e| at(&dest, e))?;
                Ok(dest)
            })();
            match r {
                Ok(dest) => {
                    self.touched(&dest);
                    self.res.set(&dest, Kind::Other);
                }
                Err(e) => errors.push((*tag, e)),
            }
            crate::apply::fault::point("rename");
        }
        if let Err(e) = fs::remove_dir_all(&tree.tmp) {
            tracing::debug!("{}: not removed: {e}", tree.tmp.display());
        }
        errors
    }

    fn publish_tree(&mut self, tmp: &Path, target: &Path) -> io::Result<()> {
        match crate::platform::rename_noreplace(tmp, target) {
            Ok(()) => return Ok(()),
            Err(_) if fs::symlink_metadata(target).is_err() => {
                return rename_noreplace(tmp, target)
            }
            Err(_) => {}
        }
        // The target exists: swapped with the new tree, then the old one removed.
        let old = match crate::platform::rename_exchange(tmp, target) {
            Ok(()) => tmp.to_path_buf(),
            Err(_) => {
                let aside = self.temp_name(target);
                fs::rename(target, &aside).map_err(|e| at(target, e))?;
                crate::apply::fault::point("rename");
                rename_noreplace(tmp, target)?;
                aside
            }
        };
        crate::apply::fault::point("rename");
        let removed = match fs::symlink_metadata(&old) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&old),
            Ok(_) => fs::remove_file(&old),
            Err(e) => Err(e),
        };
        // The new tree is in place: an old one left behind is swept by the next run.
        if let Err(e) = removed {
            tracing::debug!("{}: not removed: {e}", old.display());
        }
        Ok(())
    }

    /// Makes every staged file durable with one filesystem flush (`syncfs`; per-file `fsync`
    /// where that fails), then renames each over its target in staging order and fsyncs the
    /// directories that changed. A crash at any point leaves every target old or new, never
    /// partial. Returns the errors by the tag given to `stage`.
    pub fn commit(&mut self) -> Vec<(usize, io::Error)> {
        let errors = self.commit_with(false, false);
        let errors = self.finished(errors);
        self.spread(errors)
    }

    /// `commit` with the directory fsyncs left for later: every staged file's data is durable
    /// and renamed into place, but the renames themselves become durable only with the next
    /// `commit` (whose flush covers them) or `sync_dirs`. For a batch that is always followed
    /// by another durable write (the run's files, then the record): one flush instead of a flush
    /// plus the directory fsyncs. A crash before that later flush leaves each target old or
    /// new, never partial, and the record (written after it) still old: the next run redoes it.
    pub fn commit_deferred(&mut self) -> Vec<(usize, io::Error)> {
        let errors = self.commit_with(false, false);
        self.spread(errors)
    }

    /// `commit` for files that must land in staging order or not at all (the record, then the
    /// pin): after the first failed rename, the files staged after it are removed unrenamed and
    /// reported failed.
    pub fn commit_chained(&mut self) -> Vec<(usize, io::Error)> {
        let errors = self.commit_with(true, false);
        let errors = self.finished(errors);
        self.spread(errors)
    }

    /// Renames every staged file into place without any flush or fsync: for a file whose loss
    /// or tearing in a crash is harmless (a reader takes a torn or missing one for "none", and
    /// no later decision reads it). The kernel writes it back in its own time.
    pub fn commit_unsynced(&mut self) -> Vec<(usize, io::Error)> {
        let errors = self.commit_with(false, true);
        // Nothing was made durable: the directories stay as they are (no fsync).
        self.dirty_dirs.clear();
        self.spread(errors)
    }

    /// `errors` with each error of a file that earlier appends were folded into
    /// (`stage_append` in place) repeated for each of them: their text did not land either.
    fn spread(&self, errors: Vec<(usize, io::Error)>) -> Vec<(usize, io::Error)> {
        if self.folded.is_empty() {
            return errors;
        }
        let mut out = Vec::with_capacity(errors.len());
        for (tag, e) in errors {
            for &k in self.folded.get(&tag).into_iter().flatten() {
                out.push((k, io::Error::new(e.kind(), e.to_string())));
            }
            out.push((tag, e));
        }
        out
    }

    /// How many files are staged: where a `commit_run` tail starts.
    pub fn staged(&self) -> usize {
        self.pending.len()
    }

    /// The run's one flush. Every staged file — the run's files, then from index `tail_from`
    /// on the tail (the record, the pin, the status) — is made durable by one flush per
    /// filesystem (`syncfs`), then renamed in staging order; the tail only when every file
    /// before it was renamed (otherwise its files are removed unrenamed and reported failed:
    /// the caller stages a corrected record and commits again). No directory is fsynced when
    /// the run's files and the tail share one filesystem:
    ///
    /// - a journaled filesystem (ext4, XFS, btrfs) commits metadata changes in the order they
    ///   were made, so a power loss at any instant keeps a prefix of the renames: every file
    ///   old or new (its data was flushed before any rename), and the record never without the
    ///   files it says were applied. Those are the states a crash between two renames already
    ///   left with a flush per batch; the next run sweeps the temporaries and applies what the
    ///   record does not hold.
    /// - the renames become durable with the filesystem's next journal commit (seconds), not
    ///   before this returns: a later durable write on the same filesystem (a script's marker,
    ///   `primer scripts`) commits them first. Reclaim, the one later step that relies on
    ///   them (it deletes the config partition once the record names it), writes its intent
    ///   record durably on the state filesystem before its first table write.
    ///
    /// Run's files on another filesystem than the tail (a separate `/var`): their directories
    /// are fsynced before the tail is renamed, as journal order holds only within one
    /// filesystem. Where the flush fails (or on Windows, which has none), this is a
    /// `commit_deferred` of the run's files, their directories fsynced, then a `commit_chained`
    /// of the tail: the two-batch commit.
    pub fn commit_run(&mut self, tail_from: usize) -> Vec<(usize, io::Error)> {
        let errors = self.commit_run_inner(tail_from);
        self.spread(errors)
    }

    fn commit_run_inner(&mut self, tail_from: usize) -> Vec<(usize, io::Error)> {
        let mut head = std::mem::take(&mut self.pending);
        let tail = head.split_off(tail_from.min(head.len()));
        if head.is_empty() && tail.is_empty() && self.trees.is_empty() {
            return Vec::new();
        }
        let flushed = {
            let dirs: BTreeSet<&Path> = crate::sort::set(
                head.iter()
                    .chain(&tail)
                    .filter_map(|(_, t, _)| t.parent())
                    .chain(
                        self.trees
                            .iter()
                            .filter(|t| t.publishable())
                            .map(|t| t.tmp.as_path()),
                    )
                    .chain(self.dirty_dirs.iter().map(PathBuf::as_path)),
            );
            self.fss
                .sync_filesystems(&dirs.into_iter().collect::<Vec<_>>())
        };
        if !flushed {
            self.pending = head;
            let mut errors = self.commit_with(false, false);
            if let Err(e) = self.finish() {
                errors.push((usize::MAX, e));
            }
            return self.commit_tail(tail, errors, false);
        }
        // The flush made every earlier directory change (directories created while staging)
        // durable: only this batch's renames are left.
        self.dirty_dirs.clear();
        // Where the renames land, for a second flush on a filesystem that does not keep them
        // in order (below).
        let landing: Vec<PathBuf> = {
            let dirs: BTreeSet<&Path> = crate::sort::set(
                head.iter()
                    .chain(&tail)
                    .filter_map(|(_, _, t)| t.parent())
                    .chain(
                        self.trees
                            .iter()
                            .filter(|t| t.publishable())
                            .filter_map(|t| t.target.parent()),
                    ),
            );
            dirs.into_iter().map(Path::to_path_buf).collect()
        };
        let mut errors = self.commit_trees(true);
        for (tag, tmp, target) in head {
            match fs::rename(&tmp, &target) {
                Ok(()) => {
                    self.touched(&target);
                    self.res.set(&target, Kind::Other);
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    errors.push((tag, at(&target, e)));
                }
            }
            crate::apply::fault::point("rename");
        }
        let head_ok = errors.is_empty();
        let mut dirs_failed = false;
        if head_ok && !tail.is_empty() {
            // Journal order holds within one filesystem only: the run's files elsewhere are
            // made durable before the record that says they were applied is renamed.
            let keep: Vec<&Path> = tail.iter().filter_map(|(_, t, _)| t.parent()).collect();
            let dirs: Vec<PathBuf> = std::mem::take(&mut self.dirty_dirs)
                .into_iter()
                .rev()
                .collect();
            let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
            let r = self.fss.sync_dirs_apart(&dirs, &keep);
            if let Err(e) = r {
                errors.push((usize::MAX, io::Error::new(e.kind(), format!("fsync: {e}"))));
                // Listed again: the caller's next commit (the record staged again) must make
                // them durable before it renames anything that says they were applied.
                self.dirty_dirs.extend(dirs.iter().map(|d| d.to_path_buf()));
                dirs_failed = true;
            }
        }
        // The crash argument above needs a filesystem that commits metadata in order (a
        // journal). Elsewhere (ext2, ext4 without a journal, vfat) a power loss may keep a
        // later rename (the record) without an earlier one (a file it names), and writeback
        // may even persist the record's rename first: there the run's renames are flushed
        // before the tail's (a failed flush keeps the tail unrenamed, as a failed directory
        // fsync does), and everything once more before the run ends, as each batch was before.
        let dirs: Vec<&Path> = landing.iter().map(PathBuf::as_path).collect();
        if errors.is_empty() && !tail.is_empty() {
            if let Err(e) = self.fss.sync_unordered(&dirs) {
                errors.push((usize::MAX, io::Error::new(e.kind(), format!("syncfs: {e}"))));
            }
        }
        let mut errors = self.commit_tail(tail, errors, true);
        if let Err(e) = self.fss.sync_unordered(&dirs) {
            errors.push((usize::MAX, io::Error::new(e.kind(), format!("syncfs: {e}"))));
        }
        if head_ok && !dirs_failed {
            // Nothing left to fsync: the journal orders the renames (see above). After a
            // failed rename the directories stay listed: the caller's next commit (a corrected
            // record) makes them durable before its own renames.
            self.dirty_dirs.clear();
        }
        errors
    }

    /// Renames the tail of `commit_run` in order, unless `errors` already holds one (then its
    /// files are removed unrenamed and reported failed). `flushed`: their data is durable.
    fn commit_tail(
        &mut self,
        tail: Vec<(usize, PathBuf, PathBuf)>,
        mut errors: Vec<(usize, io::Error)>,
        flushed: bool,
    ) -> Vec<(usize, io::Error)> {
        if !errors.is_empty() {
            for (tag, tmp, target) in tail {
                let _ = fs::remove_file(&tmp);
                errors.push((
                    tag,
                    at(
                        &target,
                        io::Error::other("not written: an earlier file of its batch failed"),
                    ),
                ));
            }
            return errors;
        }
        if flushed {
            let mut broken = false;
            for (tag, tmp, target) in tail {
                let r = if broken {
                    Err(at(
                        &target,
                        io::Error::other("not written: an earlier file of its batch failed"),
                    ))
                } else {
                    fs::rename(&tmp, &target).map_err(|e| at(&target, e))
                };
                match r {
                    Ok(()) => {
                        self.touched(&target);
                        self.res.set(&target, Kind::Other);
                    }
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        errors.push((tag, e));
                        broken = true;
                    }
                }
                crate::apply::fault::point("rename");
            }
            return errors;
        }
        self.pending = tail;
        let e = self.commit_with(true, false);
        self.finished(e)
    }

    /// Fsyncs the directories `commit_deferred` left (a no-op when a later `commit` flushed).
    pub fn sync_dirs(&mut self) -> io::Result<()> {
        self.finish()
    }

    fn finished(&mut self, mut errors: Vec<(usize, io::Error)>) -> Vec<(usize, io::Error)> {
        if let Err(e) = self.finish() {
            errors.push((usize::MAX, e));
        }
        errors
    }

    fn commit_with(&mut self, chained: bool, unsynced: bool) -> Vec<(usize, io::Error)> {
        let mut errors = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() && self.trees.is_empty() {
            return errors;
        }
        // Every filesystem the staged files are on (a separate /var, say), each flushed once,
        // and those of the directories changed earlier (so the flush covers them, below).
        let flushed = unsynced || {
            let dirs: BTreeSet<&Path> = crate::sort::set(
                pending
                    .iter()
                    .filter_map(|(_, t, _)| t.parent())
                    .chain(
                        self.trees
                            .iter()
                            .filter(|t| t.publishable())
                            .map(|t| t.tmp.as_path()),
                    )
                    .chain(self.dirty_dirs.iter().map(PathBuf::as_path)),
            );
            self.fss
                .sync_filesystems(&dirs.into_iter().collect::<Vec<_>>())
        };
        let mut broken = false;
        if flushed && !unsynced {
            // The filesystem flush made every earlier directory change durable too (directories
            // created before staging, renames a `commit_deferred` left): only the renames below
            // still need their directories fsynced.
            self.dirty_dirs.clear();
        } else if !unsynced {
            // No filesystem flush (Windows; a failed syncfs): the earlier changes become durable
            // by their directories' fsyncs, and they must be before this batch's renames (the
            // record may claim nothing that could still vanish in a crash). If that fails, a
            // chained batch (the record, the pin) is not renamed at all.
            if let Err(e) = self.finish() {
                errors.push((usize::MAX, e));
                broken = chained;
            }
        }
        // Trees first (the local copy: never part of a chained batch).
        if !broken {
            errors.extend(self.commit_trees(flushed || unsynced));
        }
        for (tag, tmp, target) in pending {
            let r = if broken {
                Err(at(
                    &target,
                    io::Error::other("not written: an earlier file of its batch failed"),
                ))
            } else {
                (|| {
                    if !flushed {
                        crate::platform::sync_file(&tmp).map_err(|e| at(&tmp, e))?;
                    }
                    fs::rename(&tmp, &target).map_err(|e| at(&target, e))
                })()
            };
            if let Err(e) = r {
                let _ = fs::remove_file(&tmp);
                errors.push((tag, e));
                broken = chained;
            } else {
                self.touched(&target);
                self.res.set(&target, Kind::Other);
            }
            crate::apply::fault::point("rename");
        }
        errors
    }

    /// Removes a file under the root (never a directory).
    pub fn remove_file(&mut self, rel: &str) -> io::Result<()> {
        let target = self.resolve(rel)?;
        match fs::remove_file(&target) {
            Ok(()) => {
                self.touched(&target);
                self.res.set(&target, Kind::Missing);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(at(&target, e)),
        }
    }

    /// Fsyncs every directory whose entries changed (part of `commit`).
    fn finish(&mut self) -> io::Result<()> {
        // Deepest first, so a new directory's own entries are durable before its parent's entry.
        let dirs: Vec<PathBuf> = std::mem::take(&mut self.dirty_dirs)
            .into_iter()
            .rev()
            .collect();
        for d in dirs {
            sync_dir(&d).map_err(|e| at(&d, io::Error::new(e.kind(), format!("fsync: {e}"))))?;
        }
        Ok(())
    }
}

impl Writer {
    /// Removes temporary files and (empty) temporary directories an interrupted run left in
    /// every directory on the way to each of `rels`, the root included (a crash between staging
    /// and renaming leaves them; the targets themselves are untouched). Returns how many were
    /// removed. Call with the run lock held: another run's temporary files are not stale.
    pub fn sweep_temps<'a>(&self, rels: impl IntoIterator<Item = &'a str>) -> usize {
        self.sweep_temps_below(&self.root, rels)
    }

    /// [`Writer::sweep_temps`] in the directories from `top` (a resolved directory inside the
    /// root) down to each of `rels` only: its ancestors are not listed.
    pub fn sweep_temps_below<'a>(
        &self,
        top: &Path,
        rels: impl IntoIterator<Item = &'a str>,
    ) -> usize {
        // The directories on the way, each once, then listed in path order (as an ordered set
        // of paths would give them). Kept by their bytes: a plan's paths share few directories
        // (a network's files all sit in one), and comparing or hashing paths component by
        // component cost more than listing the directories (callgrind, issue 15).
        let mut seen: HashSet<std::ffi::OsString> = HashSet::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        // Directory -> the names on the way from it to a swept path: a temporary directory
        // named after one of them is a directory the run was building (`stage_new_dir_file`).
        let mut toward: HashMap<std::ffi::OsString, BTreeSet<std::ffi::OsString>> = HashMap::new();
        // The directory of the path before: a path beside it adds nothing (its first step
        // names no way, and that directory and its ancestors are in already).
        let mut last: Option<PathBuf> = None;
        // The directory part of the path before, as given, while that very directory is known
        // missing: a name beside it resolves into it too (nothing below a missing directory
        // can be a link), so it is not resolved again (a first run's network files all go
        // into one directory that does not exist yet). Only when the path resolved where it
        // reads: a link's target directory is not its siblings' directory.
        let mut last_missing: Option<&str> = None;
        for rel in rels {
            let (dir_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            if last_missing == Some(dir_rel) && !matches!(name, "" | "." | "..") {
                continue;
            }
            let Ok(p) = self.resolve(rel) else { continue };
            let parent = p.parent();
            last_missing = parent
                .filter(|d| self.known_missing(d))
                .filter(|d| d.as_os_str() == self.root.join(dir_rel).as_os_str())
                .map(|_| dir_rel);
            if let (Some(a), Some(b)) = (parent, last.as_deref()) {
                if a.as_os_str() == b.as_os_str() {
                    continue;
                }
            }
            // Only directories name a way (a tree is a directory, never the path itself).
            let mut child: Option<&Path> = None;
            let mut d = parent;
            while let Some(dir) = d.filter(|d| d.starts_with(top)) {
                let new_dir = !seen.contains(dir.as_os_str());
                if new_dir {
                    seen.insert(dir.as_os_str().to_os_string());
                    dirs.push(dir.to_path_buf());
                }
                let name_new = child.and_then(Path::file_name).is_some_and(|n| {
                    let names = match toward.get_mut(dir.as_os_str()) {
                        Some(names) => names,
                        None => toward.entry(dir.as_os_str().to_os_string()).or_default(),
                    };
                    !names.contains(n) && names.insert(n.to_os_string())
                });
                if !new_dir && !name_new {
                    break; // its ancestors are in already, with this way to them
                }
                child = Some(dir);
                d = dir.parent();
            }
            last = parent.map(Path::to_path_buf);
        }
        dirs.sort();
        dirs.dedup();
        let instances = self.resolve(&crate::state::instances_dir()).ok();
        // The name of the local copy's directory in each instance directory (`drive`).
        let copy_name = crate::state::drive_copy_dir("i");
        let copy_name = copy_name.rsplit('/').next().unwrap_or_default();
        // `Some(true)`: an instance directory (where a temporary tree is swept whole);
        // `Some(false)`: inside a local copy (built as one tree: nothing in it has a temporary
        // name of primer's, and a name looking like one is the drive's own: never swept).
        let place = |d: &Path| {
            let below = d.strip_prefix(instances.as_deref()?).ok()?;
            match below.components().count() {
                1 => Some(true),
                n if n >= 2 => Some(false).filter(|_| {
                    below.components().nth(1).map(|c| c.as_os_str()) == Some(OsStr::new(copy_name))
                }),
                _ => None,
            }
        };
        let mut n = 0;
        for d in dirs {
            // A directory resolution found missing (or one inside it) holds nothing to sweep:
            // no failing open. Nor does one this run made (the run lock's state directory on a
            // first run): no interrupted run ever wrote there.
            if self.known_missing(&d) || self.made_here(&d) {
                continue;
            }
            let place = place(&d);
            if place == Some(false) {
                continue;
            }
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                if !is_temp_name(&e.file_name().to_string_lossy()) {
                    continue;
                }
                let removed = match e.file_type() {
                    // A temporary symbolic link (`/etc/localtime` is replaced through one)
                    // is removed as a link: never followed.
                    Ok(t) if t.is_file() || t.is_symlink() => fs::remove_file(e.path()).is_ok(),
                    // Nothing is put in a temporary directory before its rename: only an empty
                    // one is primer's (remove_dir refuses anything else) — except a temporary
                    // tree of the local copy (being built, or the old copy it replaced) right
                    // in an instance directory, named exactly as `begin_tree` names it: removed
                    // whole; `remove_dir_all` never follows a link inside it.
                    // Or a directory a run was building whole (`stage_new_dir_file`), named
                    // exactly after the next component on the way to a planned path.
                    Ok(t) if t.is_dir() => {
                        let name = e.file_name().to_string_lossy().into_owned();
                        // Only one no one but root (or primer's user) owns or may write:
                        // a directory a user made under such a name (`~/.ssh.primer-tmp.1.1`)
                        // is theirs, whatever it is called.
                        let of_new_dir = || {
                            let named = place.is_none()
                                && toward.get(d.as_os_str()).is_some_and(|names| {
                                    names.iter().any(|n| {
                                        crate::paths::is_temp_name_of(&name, &n.to_string_lossy())
                                    })
                                });
                            // Left otherwise (and named below).
                            named && only_root_writes(&e.path())
                        };
                        let gone = fs::remove_dir(e.path()).is_ok()
                            || ((place == Some(true)
                                && crate::paths::is_temp_name_of(&name, copy_name))
                                || of_new_dir())
                                && fs::remove_dir_all(e.path()).is_ok();
                        // Kept, not empty: it may be a new directory a run killed before its
                        // rename was building (its files, secrets among them, under their
                        // final names), named after a directory no planned path goes through
                        // now. Not removed (nothing tells it from a user's own), but named,
                        // so an administrator can.
                        if !gone && crate::paths::is_temp_name_of(&name, name_of(&name)) {
                            tracing::info!(
                                "{}: left: a directory an interrupted run may have been \
                                 building; remove it if it is not yours",
                                e.path().display()
                            );
                        }
                        gone
                    }
                    _ => false,
                };
                if removed {
                    tracing::debug!("removed {} left by an interrupted run", e.path().display());
                    n += 1;
                }
            }
        }
        n
    }
}

impl Writer {
    /// Whether the memo knows `dir` or one of its ancestors is missing (nothing below a
    /// missing directory exists: the run lock keeps others from making it meanwhile, and the
    /// memo follows the writer's own changes). No lookup.
    fn known_missing(&self, dir: &Path) -> bool {
        // The memo holds paths inside the root only: its ancestors are not asked about.
        let top = self.root.as_os_str().len();
        dir.ancestors()
            .take_while(|a| a.as_os_str().len() > top)
            .any(|a| self.res.cached(a) == Some(crate::paths::Kind::Missing))
    }
}

/// The target a temporary name `.NAME.primer-tmp.PID.SEQ` stands for (`NAME`), or `""`.
fn name_of(temp: &str) -> &str {
    temp.strip_prefix('.')
        .and_then(|n| n.rsplit_once(".primer-tmp."))
        .map_or("", |(name, _)| name)
}

/// `e` with the path it is about (every I/O error names its path).
pub fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Renames `from` to `to` unless `to` exists (`renameat2(RENAME_NOREPLACE)`; a plain rename
/// where the filesystem does not support the flag and `to` is still missing).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    crate::platform::rename_noreplace(from, to).map_err(|e| at(to, e))
}

fn set_meta(path: &Path, meta: Meta) -> io::Result<()> {
    crate::platform::set_owner_mode(path, meta).map_err(|e| at(path, e))
}

/// primer's process id, asked of the kernel once (every temporary name carries it).
fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::platform::sync_dir(dir)
}

/// Whether `dir` (not followed if a link: a link is never trusted) is a directory owned by
/// root or primer's own user that no one else may write: neither world-writable nor writable
/// by a group other than root's. `false` when it cannot be looked at.
#[cfg(unix)]
fn only_root_writes(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = fs::symlink_metadata(dir) else {
        return false;
    };
    let own = nix::unistd::geteuid().as_raw();
    m.is_dir()
        && (m.uid() == 0 || m.uid() == own)
        && m.mode() & 0o002 == 0
        && (m.mode() & 0o020 == 0 || m.gid() == 0)
}

/// No new directory is built whole on Windows (`apply::new_dir_trees`), and none is swept
/// whole there.
#[cfg(not(unix))]
fn only_root_writes(_dir: &Path) -> bool {
    false
}

/// Gives `dir` and every directory below it (not following symlinks; at most `max_dirs`) `meta`
/// where mode or owner differ: primer's private state tree, which an older version's crash
/// between mkdir and chmod could leave 0755. Returns the directories changed.
pub fn repair_tree(dir: &Path, meta: Meta, max_dirs: usize) -> io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        seen += 1;
        if seen > max_dirs {
            break;
        }
        if repair_dir(&d, meta)? {
            changed.push(d.clone());
        }
        for e in fs::read_dir(&d).map_err(|e| at(&d, e))?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    Ok(changed)
}

/// Gives an existing directory `meta` when its mode or owner differ. Returns whether it changed.
pub fn repair_dir(dir: &Path, meta: Meta) -> io::Result<bool> {
    let m = fs::symlink_metadata(dir).map_err(|e| at(dir, e))?;
    if !m.is_dir() {
        return Err(at(dir, io::Error::other("not a directory")));
    }
    if crate::facts::meta_of(dir, &m) == meta {
        return Ok(false);
    }
    set_meta(dir, meta)?;
    Ok(true)
}

// POSIX modes, owners and symlinks: these tests run where they exist.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::paths::{is_clean_relative, resolve_in_root};
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::PermissionsExt;

    /// An append copies the file (re-checked against what was planned) then the text into a
    /// staged file; a file changed, created or removed since planning is refused with nothing
    /// staged and the file untouched; a chained append copies this run's staged write.
    #[test]
    fn an_append_copies_the_checked_file_then_the_text() {
        use crate::model::Bytes;
        use crate::plan::AppendBase;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("srv")).unwrap();
        fs::write(root.join("srv/log"), b"old\n").unwrap();
        let planned =
            |c: &[u8]| AppendBase::Target(Some((c.len() as u64, Bytes::from(c).sha256())));
        let text = Bytes::from(&b"new\n"[..]);
        let mut w = Writer::new(root);
        w.stage_append(
            1,
            "srv/log",
            &planned(b"old\n"),
            &text,
            own(0o640),
            own(0o755),
            None,
        )
        .unwrap();
        // A later append builds on the staged write, not on the file.
        let more = Bytes::from(&b"more\n"[..]);
        w.stage_append(
            2,
            "srv/log",
            &AppendBase::Step(1),
            &more,
            own(0o640),
            own(0o755),
            None,
        )
        .unwrap();
        assert!(w
            .stage_append(
                3,
                "srv/log",
                &AppendBase::Step(9),
                &more,
                own(0o640),
                own(0o755),
                None
            )
            .is_err());
        assert!(w.commit().is_empty());
        assert_eq!(fs::read(root.join("srv/log")).unwrap(), b"old\nnew\nmore\n");
        assert_eq!(
            fs::metadata(root.join("srv/log"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );

        // Changed since planning (same length, other bytes; longer): refused, untouched.
        for now in [&b"0ld\nnew\nmore\n"[..], b"old\nnew\nmore\nx\n"] {
            fs::write(root.join("srv/log"), now).unwrap();
            let mut w = Writer::new(root);
            let e = w
                .stage_append(
                    1,
                    "srv/log",
                    &planned(b"old\nnew\nmore\n"),
                    &text,
                    own(0o640),
                    own(0o755),
                    None,
                )
                .unwrap_err();
            assert!(e.to_string().contains("changed since planning"), "{e}");
            assert!(w.commit().is_empty());
            assert_eq!(fs::read(root.join("srv/log")).unwrap(), now);
        }
        // Created or removed since planning.
        let mut w = Writer::new(root);
        let e = w
            .stage_append(
                1,
                "srv/log",
                &AppendBase::Target(None),
                &text,
                own(0o640),
                own(0o755),
                None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("created since planning"), "{e}");
        let e = w
            .stage_append(
                1,
                "srv/gone",
                &planned(b"x"),
                &text,
                own(0o640),
                own(0o755),
                None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("removed since planning"), "{e}");
        // Missing as planned: the text alone.
        w.stage_append(
            1,
            "srv/new",
            &AppendBase::Target(None),
            &text,
            own(0o640),
            own(0o755),
            None,
        )
        .unwrap();
        assert!(w.commit().is_empty());
        assert_eq!(fs::read(root.join("srv/new")).unwrap(), b"new\n");
        let left: Vec<_> = fs::read_dir(root.join("srv"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    /// A chain of appends with one mode and owner stages one file (the text of each later one
    /// goes onto it, no copy); a text refused by its check is cut off again, the earlier ones
    /// kept; another mode copies. A failed rename of the shared file fails every step in it.
    #[test]
    fn a_chain_of_appends_extends_one_staged_file() {
        use crate::model::Bytes;
        use crate::plan::AppendBase;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("srv")).unwrap();
        fs::write(root.join("srv/log"), b"old\n").unwrap();
        let planned = AppendBase::Target(Some((4, Bytes::from(&b"old\n"[..]).sha256())));
        let mut w = Writer::new(root);
        let text = |i: usize| Bytes::from(format!("t{i}\n").into_bytes());
        w.stage_append(
            0,
            "srv/log",
            &planned,
            &text(0),
            own(0o640),
            own(0o755),
            None,
        )
        .unwrap();
        for i in 1..40 {
            w.stage_append(
                i,
                "srv/log",
                &AppendBase::Step(i - 1),
                &text(i),
                own(0o640),
                own(0o755),
                None,
            )
            .unwrap();
        }
        assert_eq!(w.staged(), 1, "one staged file for the chain");
        let refuse = |_: &Path| Err(io::Error::other("refused"));
        let e = w
            .stage_append(
                40,
                "srv/log",
                &AppendBase::Step(39),
                &text(40),
                own(0o640),
                own(0o755),
                Some(&refuse),
            )
            .unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        // Another mode: a copy of the chain so far.
        w.stage_append(
            41,
            "srv/log",
            &AppendBase::Step(39),
            &text(41),
            own(0o600),
            own(0o755),
            None,
        )
        .unwrap();
        assert_eq!(w.staged(), 2);
        assert!(w.commit().is_empty());
        let want: String = std::iter::once("old\n".to_string())
            .chain((0..40).chain([41]).map(|i| format!("t{i}\n")))
            .collect();
        assert_eq!(fs::read_to_string(root.join("srv/log")).unwrap(), want);

        // The rename of the shared file fails (its directory replaced by a file): each of the
        // steps whose text it holds is reported.
        fs::create_dir(root.join("d")).unwrap();
        let mut w = Writer::new(root);
        w.stage_append(
            0,
            "d/log",
            &AppendBase::Target(None),
            &text(0),
            own(0o640),
            own(0o755),
            None,
        )
        .unwrap();
        for i in 1..3 {
            w.stage_append(
                i,
                "d/log",
                &AppendBase::Step(i - 1),
                &text(i),
                own(0o640),
                own(0o755),
                None,
            )
            .unwrap();
        }
        let tmp = w.pending[0].1.clone();
        fs::remove_file(&tmp).unwrap();
        let mut tags: Vec<usize> = w.commit().into_iter().map(|(t, _)| t).collect();
        tags.sort_unstable();
        assert_eq!(tags, [0, 1, 2]);
    }

    /// `mode` with the test process's own owner.
    fn own(mode: u32) -> Meta {
        Meta {
            mode,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    /// The run lock's file in a state directory this run made is created locked under a
    /// temporary name and renamed into place; never over an existing file (nothing left
    /// behind then), and never outside a directory the writer made. A directory the run made
    /// is not swept.
    #[test]
    fn a_lock_file_is_made_locked_and_fresh_directories_are_not_swept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let mut w = Writer::new(root);
        let dir = w.create_dirs("var/lib/p", own(0o700)).unwrap();
        assert!(w.made_here(&dir) && w.made_here(&root.join("var")));
        assert!(!w.made_here(root));
        let path = dir.join("lock");
        let locked = w.create_locked(&path, |f| crate::platform::try_lock(f).ok());
        assert!(locked.is_some());
        assert!(path.is_file());
        // Held: another open of the same file cannot take it.
        let other = fs::File::options().write(true).open(&path).unwrap();
        assert!(crate::platform::try_lock(other).is_err());
        // Never over an existing one; the temporary is removed.
        assert!(w
            .create_locked(&path, |f| crate::platform::try_lock(f).ok())
            .is_none());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        // The memo knows the lock file; the directory still knows all its entries.
        assert_eq!(w.res.cached(&path), Some(Kind::Other));
        assert!(w.made_here(&dir));
        // Swept: only directories this run did not make (the root); a stale-looking name in
        // a made one cannot be an interrupted run's.
        fs::write(dir.join(".x.primer-tmp.1.1"), b"").unwrap();
        fs::write(root.join(".y.primer-tmp.1.1"), b"").unwrap();
        assert_eq!(w.sweep_temps(["var/lib/p/x"]), 1);
        assert!(dir.join(".x.primer-tmp.1.1").exists());
        drop(locked);
    }

    /// Directories whose mode and owner `mkdir` gives are made under their own name (no
    /// temporary name, no rename); under a default ACL that changes what `mkdir` gives, and with
    /// a mode the umask would cut (made under a temporary name), each still ends up exactly as
    /// asked, and nothing temporary is left.
    #[test]
    fn created_directories_get_exactly_their_meta() {
        use std::os::unix::fs::MetadataExt;
        // On the repository's filesystem (the test machine's /tmp may lack ACLs).
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        fs::create_dir_all(&base).unwrap();
        let t = tempfile::tempdir_in(&base).unwrap();
        fs::create_dir(t.path().join("acl")).unwrap();
        let ok = std::process::Command::new("setfacl")
            .args(["-d", "-m", "o::---"])
            .arg(t.path().join("acl"))
            .status()
            .expect("setfacl (package acl; scripts/test installs it)");
        assert!(ok.success());
        let mut w = Writer::new(t.path());
        for (rel, mode) in [("plain/a/b", 0o755), ("acl/c/d", 0o755), ("odd/e", 0o777)] {
            w.create_dirs(rel, own(mode)).unwrap();
            let mut p = t.path().to_path_buf();
            for c in rel.split('/') {
                p.push(c);
                if c == "acl" {
                    continue;
                }
                let m = fs::symlink_metadata(&p).unwrap();
                assert_eq!(m.mode() & 0o7777, mode, "{}", p.display());
                let left: Vec<_> = fs::read_dir(p.parent().unwrap())
                    .unwrap()
                    .flatten()
                    .filter(|e| is_temp_name(&e.file_name().to_string_lossy()))
                    .collect();
                assert!(left.is_empty(), "{left:?}");
            }
        }
    }

    /// A tree (the local copy) is built under a temporary name and published by one rename;
    /// a rebuilt tree replaces a non-empty one whole (a file no longer staged is gone); no
    /// temporary entry is left, and each file and directory has exactly its meta.
    #[test]
    fn an_unchanged_file_of_a_rebuilt_tree_is_linked_not_written() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o600), own(0o700));
        let mut w = Writer::new(root);
        w.stage_tree_file(1, "s/copy", "a/kept", b"same", f, d)
            .unwrap();
        w.stage_tree_file(2, "s/copy", "a/meta", b"m", f, d)
            .unwrap();
        w.stage_tree_file(3, "s/copy", "top", b"old", f, d).unwrap();
        assert!(w.commit_run(w.staged()).is_empty());
        let ino = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().ino();
        let (kept, meta) = (ino("s/copy/a/kept"), ino("s/copy/a/meta"));
        // The current file of `a/meta` no longer has the planned mode: written, not linked.
        fs::set_permissions(
            root.join("s/copy/a/meta"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let mut w = Writer::new(root);
        w.keep_tree_file(1, "s/copy", "a/kept", b"same", f, d)
            .unwrap();
        w.keep_tree_file(2, "s/copy", "a/meta", b"m", f, d).unwrap();
        w.stage_tree_file(3, "s/copy", "top", b"new", f, d).unwrap();
        assert!(w.commit_run(w.staged()).is_empty());
        assert_eq!(
            ino("s/copy/a/kept"),
            kept,
            "an unchanged file was written again"
        );
        assert_ne!(ino("s/copy/a/meta"), meta);
        let m = fs::symlink_metadata(root.join("s/copy/a/meta")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert_eq!(m.nlink(), 1);
        // The old tree is gone: the kept file has one name again.
        assert_eq!(
            fs::symlink_metadata(root.join("s/copy/a/kept"))
                .unwrap()
                .nlink(),
            1
        );
        assert_eq!(fs::read(root.join("s/copy/a/kept")).unwrap(), b"same");
        assert_eq!(fs::read(root.join("s/copy/top")).unwrap(), b"new");
    }

    #[test]
    fn a_tree_is_published_whole_and_replaces_the_old_one() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o600), own(0o700));
        let mut w = Writer::new(root);
        w.stage_tree_file(1, "s/copy", "a/x", b"1", f, d).unwrap();
        w.stage_tree_file(2, "s/copy", "a/y", b"2", f, d).unwrap();
        w.stage_tree_file(3, "s/copy", "top", b"3", f, d).unwrap();
        assert!(!root.join("s/copy").exists(), "visible before the commit");
        w.stage(4, "s/record", b"r", f, d).unwrap();
        let tail = w.staged() - 1;
        assert!(w.commit_run(tail).is_empty());
        assert_eq!(fs::read(root.join("s/copy/a/x")).unwrap(), b"1");
        assert_eq!(fs::read(root.join("s/copy/top")).unwrap(), b"3");
        for (p, mode) in [
            ("s/copy", 0o700),
            ("s/copy/a", 0o700),
            ("s/copy/a/y", 0o600),
        ] {
            assert_eq!(
                fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777,
                mode,
                "{p}"
            );
        }
        let mut w = Writer::new(root);
        w.stage_tree_file(1, "s/copy", "a/x", b"one", f, d).unwrap();
        w.stage_tree_file(3, "s/copy", "b/new", b"n", f, d).unwrap();
        assert!(w.commit_run(w.staged()).is_empty());
        assert_eq!(fs::read(root.join("s/copy/a/x")).unwrap(), b"one");
        assert_eq!(fs::read(root.join("s/copy/b/new")).unwrap(), b"n");
        assert!(!root.join("s/copy/a/y").exists());
        assert!(!root.join("s/copy/top").exists());
        let names: Vec<_> = fs::read_dir(root.join("s"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A path that could leave the tree is refused (an absolute one would drop the
        // tree's prefix in `join`), and the tree missing it is not published.
        let mut w = Writer::new(root);
        for bad in ["../x", "/x", "/etc/x"] {
            let e = w.stage_tree_file(1, "s/copy", bad, b"", f, d).unwrap_err();
            assert!(
                e.to_string().contains("not a clean relative path"),
                "{bad}: {e}"
            );
        }
        assert!(w.commit_run(w.staged()).is_empty());
        assert!(!root.join("x").exists() && !root.join("etc/x").exists());
        assert_eq!(fs::read(root.join("s/copy/a/x")).unwrap(), b"one");
    }

    /// Content whose writing fails (a device read error, a digest that no longer matches).
    struct Failing;

    impl crate::model::bytes::WriteOut for Failing {
        fn write_out(&self, _: &mut dyn io::Write) -> io::Result<()> {
            Err(io::Error::other("the device changed"))
        }
    }

    /// Review finding 1: a tree missing a file is never published. The old copy stays whole,
    /// the file that failed keeps its own error, every other file of the tree (an unchanged
    /// one too) is reported failed, and no temporary tree is left.
    #[test]
    fn a_tree_with_a_failed_file_is_thrown_away_and_the_old_one_kept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o600), own(0o700));
        let mut w = Writer::new(root);
        w.stage_tree_file(1, "s/copy", "meta", b"old", f, d)
            .unwrap();
        w.stage_tree_file(2, "s/copy", "big/user_data", b"u", f, d)
            .unwrap();
        assert!(w.commit_run(w.staged()).is_empty());

        let mut w = Writer::new(root);
        w.stage_tree_file(1, "s/copy", "meta", b"new", f, d)
            .unwrap();
        let e = w
            .stage_tree_file(2, "s/copy", "big/user_data", &Failing, f, d)
            .unwrap_err();
        assert!(e.to_string().contains("the device changed"), "{e}");
        // Later files are still staged (each one that fails with its own error, which a
        // refusal would hide), but the tree will not be published.
        w.stage_tree_file(3, "s/copy", "later", b"l", f, d).unwrap();
        w.stage(4, "s/record", b"r", f, d).unwrap();
        let tail = w.staged() - 1;
        let errors = w.commit_run(tail);
        let tags: Vec<usize> = errors.iter().map(|(t, _)| *t).collect();
        // Steps 1 and 3 fail too; the record (tail) is dropped after a failed file of the run.
        assert!(
            errors
                .iter()
                .any(|(t, e)| *t == 1 && e.to_string().contains("old copy is kept")),
            "{errors:?}"
        );
        assert!(
            tags.contains(&1) && !tags.contains(&2) && tags.contains(&3),
            "{errors:?}"
        );
        assert_eq!(fs::read(root.join("s/copy/meta")).unwrap(), b"old");
        assert_eq!(fs::read(root.join("s/copy/big/user_data")).unwrap(), b"u");
        assert!(!root.join("s/copy/later").exists());
        let names: Vec<_> = fs::read_dir(root.join("s"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["copy"], "temporary tree left");
    }

    /// A temporary tree a crash left in primer's state directory (the copy being built, or
    /// the old copy being removed) is swept whole; elsewhere only an empty temporary
    /// directory is primer's.
    #[test]
    fn a_temporary_tree_in_the_state_directory_is_swept_whole() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let inst = root.join(crate::state::instance_dir("i-1"));
        fs::create_dir_all(inst.join(".drive.primer-tmp.9.9/openstack/latest")).unwrap();
        fs::write(inst.join(".drive.primer-tmp.9.9/openstack/latest/x"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", inst.join(".drive.primer-tmp.9.9/l")).unwrap();
        fs::create_dir_all(root.join("etc/.d.primer-tmp.1.3/keep")).unwrap();
        let copy = crate::state::drive_copy_dir("i-1") + "/f";
        let w = Writer::new(root);
        assert_eq!(w.sweep_temps([copy.as_str(), "etc/f"]), 1);
        assert!(!inst.join(".drive.primer-tmp.9.9").exists());
        assert!(Path::new("/etc/passwd").exists());
        assert!(root.join("etc/.d.primer-tmp.1.3/keep").exists());
    }

    /// Review finding 4: names inside the local copy are the drive's, even when they look
    /// like primer's temporary names: never swept. Beside the copy only a tree named exactly
    /// as the copy's temporary tree is removed whole.
    #[test]
    fn a_new_directory_is_built_whole_and_renamed_in_once() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("srv")).unwrap();
        let (f, d) = (own(0o640), own(0o751));
        let mut w = Writer::new(root);
        assert_eq!(w.new_dir_of("srv/x"), None);
        assert_eq!(
            w.new_dir_of("srv/new/a/b"),
            Some(("srv/new".to_string(), "a/b".to_string()))
        );
        for (i, rel) in ["a/b", "a/c", "top"].into_iter().enumerate() {
            w.stage_new_dir_file(i, "srv/new", rel, rel.as_bytes(), f, d)
                .unwrap();
        }
        // Nothing under the target name before the commit, and no temporary file per file.
        assert!(!root.join("srv/new").exists());
        assert!(w.commit_run(w.staged()).is_empty());
        for rel in ["a/b", "a/c", "top"] {
            let p = root.join("srv/new").join(rel);
            assert_eq!(fs::read(&p).unwrap(), rel.as_bytes());
            assert_eq!(fs::symlink_metadata(&p).unwrap().mode() & 0o7777, 0o640);
        }
        for dir in ["srv/new", "srv/new/a"] {
            let m = fs::symlink_metadata(root.join(dir)).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o751, "{dir}");
        }
        let left: Vec<_> = fs::read_dir(root.join("srv")).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "a temporary directory was left");
    }

    #[test]
    fn a_new_directory_made_meanwhile_gets_the_files_one_by_one() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o644), own(0o755));
        let mut w = Writer::new(root);
        w.stage_new_dir_file(1, "new", "a/b", b"1", f, d).unwrap();
        w.stage_new_dir_file(2, "new", "c", b"2", f, d).unwrap();
        // Another step (a mount point, a home) made it before the commit: its entries stay.
        fs::create_dir_all(root.join("new/a")).unwrap();
        fs::write(root.join("new/theirs"), b"t").unwrap();
        fs::write(root.join("new/c"), b"old").unwrap();
        assert!(w.commit_run(w.staged()).is_empty());
        assert_eq!(fs::read(root.join("new/a/b")).unwrap(), b"1");
        assert_eq!(fs::read(root.join("new/c")).unwrap(), b"2");
        assert_eq!(fs::read(root.join("new/theirs")).unwrap(), b"t");
        let names: Vec<_> = fs::read_dir(root).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "the temporary tree was left");
    }

    #[test]
    fn a_new_directory_with_a_failed_file_is_published_without_it() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o644), own(0o755));
        let mut w = Writer::new(root);
        w.stage_new_dir_file(1, "new", "ok", b"1", f, d).unwrap();
        assert!(w.stage_new_dir_file(2, "new", "../x", b"2", f, d).is_err());
        assert!(w.commit_run(w.staged()).is_empty());
        assert_eq!(fs::read(root.join("new/ok")).unwrap(), b"1");
        assert!(!root.join("x").exists());
    }

    #[test]
    fn a_new_directory_left_by_a_crash_is_swept_whole_only_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join(".srv.primer-tmp.9.9/injected")).unwrap();
        fs::write(root.join(".srv.primer-tmp.9.9/injected/f1"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join(".srv.primer-tmp.9.9/l")).unwrap();
        // Named after no directory on the way to a planned path: not primer's to remove.
        fs::create_dir_all(root.join(".opt.primer-tmp.1.2/keep")).unwrap();
        fs::create_dir_all(root.join("etc/.f1.primer-tmp.1.2/keep")).unwrap();
        let w = Writer::new(root);
        assert_eq!(w.sweep_temps(["srv/injected/f1", "etc/f1"]), 1);
        assert!(!root.join(".srv.primer-tmp.9.9").exists());
        assert!(Path::new("/etc/passwd").exists());
        assert!(root.join(".opt.primer-tmp.1.2/keep").exists());
        assert!(root.join("etc/.f1.primer-tmp.1.2/keep").exists());
    }

    /// Review finding 1 (of 4356b289): a second file at a path already in a new directory's
    /// tree fails on its own; the first step's file, which it reported written, stays.
    #[test]
    fn a_path_staged_twice_in_a_new_directory_keeps_the_first_file() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o644), own(0o755));
        let mut w = Writer::new(root);
        w.stage_new_dir_file(0, "new", "c", b"A".as_slice(), f, d)
            .unwrap();
        assert!(w
            .stage_new_dir_file(1, "new", "c", b"AB".as_slice(), f, d)
            .is_err());
        let errs = w.commit_run(w.staged());
        assert!(errs.iter().all(|(t, _)| *t == 1), "{errs:?}");
        assert_eq!(fs::read(root.join("new/c")).unwrap(), b"A");
    }

    /// Review finding 2: a symbolic link planted at a new directory's name between staging
    /// and commit: nothing is renamed through it (out of the root), and its files fail.
    #[test]
    fn a_link_planted_at_a_new_directory_gets_nothing() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("tmp")).unwrap();
        let (f, d) = (own(0o644), own(0o755));
        let mut w = Writer::new(&root);
        w.stage_new_dir_file(0, "tmp/x", "a", b"1".as_slice(), f, d)
            .unwrap();
        w.stage_new_dir_file(1, "tmp/x", "sub/b", b"2".as_slice(), f, d)
            .unwrap();
        symlink(outside.path(), root.join("tmp/x")).unwrap();
        let errs = w.commit_run(w.staged());
        let mut tags: Vec<_> = errs.iter().map(|(t, _)| *t).collect();
        tags.sort();
        assert_eq!(tags, [0, 1], "{errs:?}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // The temporary tree is gone; the link is left as it is.
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 1);
        assert!(fs::symlink_metadata(root.join("tmp/x"))
            .unwrap()
            .is_symlink());
    }

    /// Review finding 2: in a parent others may write (sticky `/tmp`), a new directory is not
    /// built under a temporary name (its name would stay free to take until the commit): it is
    /// made at once, as a file staged on its own makes it.
    #[test]
    fn a_new_directory_in_a_parent_others_may_write_is_made_at_once() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("tmp")).unwrap();
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        let (f, d) = (own(0o644), own(0o755));
        let mut w = Writer::new(root);
        for (i, rel) in ["a", "s/b"].into_iter().enumerate() {
            w.stage_new_dir_file(i, "tmp/x", rel, rel.as_bytes(), f, d)
                .unwrap();
        }
        assert!(fs::symlink_metadata(root.join("tmp/x")).unwrap().is_dir());
        assert!(w.commit_run(w.staged()).is_empty());
        assert_eq!(fs::read(root.join("tmp/x/s/b")).unwrap(), b"s/b");
        let names: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "a temporary entry was left");
    }

    /// Review finding 3: a directory name too long for its temporary name
    /// (`.NAME.primer-tmp.PID.SEQ` over `NAME_MAX`) gets its files one by one.
    #[test]
    fn a_new_directory_with_a_long_name_gets_its_files_one_by_one() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o644), own(0o755));
        let name = "n".repeat(240);
        let mut w = Writer::new(root);
        for (i, rel) in ["a", "s/b", "c"].into_iter().enumerate() {
            w.stage_new_dir_file(i, &name, rel, rel.as_bytes(), f, d)
                .unwrap();
        }
        assert!(w.commit_run(w.staged()).is_empty());
        for rel in ["a", "s/b", "c"] {
            assert_eq!(
                fs::read(root.join(&name).join(rel)).unwrap(),
                rel.as_bytes()
            );
        }
        assert_eq!(fs::read_dir(root).unwrap().count(), 1);
    }

    /// Review finding 5: a directory named as a new directory's temporary tree but owned by a
    /// user, or writable by others, is not removed whole by the sweep.
    #[test]
    fn a_user_directory_named_as_a_new_directory_tree_is_not_swept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let user = root.join("home/alice/.ssh.primer-tmp.1.1");
        let open = root.join("home/alice/.cfg.primer-tmp.1.1");
        for d in [&user, &open] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("id"), b"k").unwrap();
        }
        nix::unistd::chown(&user, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let w = Writer::new(root);
        assert_eq!(
            w.sweep_temps(["home/alice/.ssh/authorized_keys", "home/alice/.cfg/x"]),
            0
        );
        assert!(user.join("id").exists());
        assert!(open.join("id").exists());
    }

    /// Review finding 6: when a new directory's rename fails, a file that failed to stage
    /// keeps its own error (reported once).
    #[test]
    fn a_failed_file_keeps_its_own_error_when_the_tree_fails() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (f, d) = (own(0o644), own(0o755));
        let mut w = Writer::new(root);
        w.stage_new_dir_file(0, "p/new", "ok", b"1".as_slice(), f, d)
            .unwrap();
        assert!(w
            .stage_new_dir_file(1, "p/new", "../x", b"2".as_slice(), f, d)
            .is_err());
        // The rename fails with other than "exists": its parent is gone.
        let tmp = w.trees[0].tmp.clone();
        fs::rename(root.join("p"), root.join("q")).unwrap();
        let errs = w.commit_run(w.staged());
        let tags: Vec<_> = errs.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [0], "{errs:?}");
        assert!(!tmp.exists());
    }

    #[test]
    fn names_inside_the_copy_are_never_swept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let inst = root.join(crate::state::instance_dir("i-1"));
        let content = inst.join("drive/openstack/content");
        fs::create_dir_all(content.join(".x.primer-tmp.a")).unwrap();
        fs::write(content.join(".x.primer-tmp.a/f"), b"f").unwrap();
        fs::create_dir_all(content.join(".e.primer-tmp.1.2")).unwrap();
        fs::write(content.join(".y.primer-tmp.1.2"), b"y").unwrap();
        fs::create_dir_all(inst.join(".other.primer-tmp.1.2/keep")).unwrap();
        fs::create_dir_all(inst.join(".drive.primer-tmp.1.x/keep")).unwrap();
        fs::create_dir_all(inst.join(".drive.primer-tmp.3.4/a")).unwrap();
        let copy = crate::state::drive_copy_dir("i-1") + "/openstack/content/.x.primer-tmp.a/f";
        let w = Writer::new(root);
        assert_eq!(w.sweep_temps([copy.as_str()]), 1);
        assert!(!inst.join(".drive.primer-tmp.3.4").exists());
        for kept in [
            content.join(".x.primer-tmp.a/f"),
            content.join(".e.primer-tmp.1.2"),
            content.join(".y.primer-tmp.1.2"),
            inst.join(".other.primer-tmp.1.2/keep"),
            inst.join(".drive.primer-tmp.1.x/keep"),
        ] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }

    /// Review finding: a directory is made under its final name only where `mkdir` gives
    /// exactly the wanted meta; under a parent with a default ACL it is made under a temporary
    /// name (so a failed correction or a crash never leaves it under its final name with the
    /// ACL's mode), and `create_final_dir` removes a directory whose meta came out different.
    #[test]
    fn no_directory_is_made_in_place_under_a_default_acl() {
        use std::os::unix::fs::MetadataExt;
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        fs::create_dir_all(&base).unwrap();
        let t = tempfile::tempdir_in(&base).unwrap();
        let acl = t.path().join("acl");
        fs::create_dir(&acl).unwrap();
        let ok = std::process::Command::new("setfacl")
            .args(["-d", "-m", "o::---"])
            .arg(&acl)
            .status()
            .expect("setfacl (package acl; scripts/test installs it)");
        assert!(ok.success());
        assert!(crate::platform::mkdir_may_differ(&acl));
        assert!(!crate::platform::mkdir_may_differ(t.path()));
        // Review: a filesystem not known to give exactly what `mkdir` asks (procfs, sysfs
        // here; NFS, FUSE, vfat in life) is never used for a directory made in place.
        assert!(crate::platform::mkdir_may_differ(Path::new("/proc")));
        assert!(crate::platform::mkdir_may_differ(Path::new("/sys")));
        // Made in place, the ACL's mode (0750) is found and the directory removed again.
        assert!(!crate::platform::create_final_dir(&acl.join("d"), own(0o755), true).unwrap());
        assert!(!acl.join("d").exists());
        let mut w = Writer::new(t.path());
        assert!(w.mkdir_may_differ(&acl.join("d")));
        w.create_dirs("acl/d/e", own(0o755)).unwrap();
        for p in ["acl/d", "acl/d/e"] {
            let m = fs::symlink_metadata(t.path().join(p)).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o755, "{p}");
        }
        // Review finding 8: what the writer learnt of a directory goes with `forget_all` (a
        // script may have given it a default ACL meanwhile).
        fs::create_dir(t.path().join("plain")).unwrap();
        assert!(!w.mkdir_may_differ(&t.path().join("plain/x")));
        w.stage(1, "plain/f", b"f", own(0o644), own(0o755)).unwrap();
        assert!(w.commit().is_empty());
        assert!(!w.verified.is_empty());
        let ok = std::process::Command::new("setfacl")
            .args(["-d", "-m", "o::---"])
            .arg(t.path().join("plain"))
            .status()
            .unwrap();
        assert!(ok.success());
        assert!(
            !w.mkdir_may_differ(&t.path().join("plain/x")),
            "asked again"
        );
        w.forget_all();
        assert!(w.verified.is_empty());
        assert!(w.mkdir_may_differ(&t.path().join("plain/x")));
    }

    #[test]
    fn write_atomic_leaves_other_staged_files_pending() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Writer::new(t.path());
        let m = own(0o644);
        w.stage(7, "a", b"staged", m, m).unwrap();
        w.write_atomic("b", b"now", m, m).unwrap();
        assert_eq!(fs::read(t.path().join("b")).unwrap(), b"now");
        assert!(
            !t.path().join("a").exists(),
            "a staged file was committed early"
        );
        assert!(w.commit().is_empty());
        assert_eq!(fs::read(t.path().join("a")).unwrap(), b"staged");
    }

    /// A chained batch lands in staging order or not at all: after a failed rename, the files
    /// staged later are not renamed and their temporary files are gone.
    #[test]
    fn chained_commit_stops_at_the_first_failure() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let m = own(0o600);
        let mut w = Writer::new(root);
        w.stage(1, "first", b"1", m, m).unwrap();
        w.stage(2, "record", b"2", m, m).unwrap();
        w.stage(3, "pin", b"3", m, m).unwrap();
        // The record's target becomes a non-empty directory: its rename fails.
        fs::create_dir_all(root.join("record/x")).unwrap();
        let errors = w.commit_chained();
        let tags: Vec<usize> = errors.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [2, 3]);
        assert!(
            errors[1].1.to_string().contains("an earlier file"),
            "{}",
            errors[1].1
        );
        assert_eq!(fs::read(root.join("first")).unwrap(), b"1");
        assert!(!root.join("pin").exists());
        let left: Vec<_> = fs::read_dir(root)
            .unwrap()
            .flatten()
            .filter(|e| is_temp_name(&e.file_name().to_string_lossy()))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    /// The run's one commit renames the run's files, then the tail in order; a run's file
    /// that fails to land drops the whole tail unrenamed (the record must not claim it), and
    /// leaves no temporary file.
    #[test]
    fn run_commit_renames_the_tail_only_after_every_file_of_the_run() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let m = own(0o600);
        let mut w = Writer::new(root);
        w.stage(1, "etc/a", b"a", m, m).unwrap();
        w.stage(2, "etc/b", b"b", m, m).unwrap();
        let tail = w.staged();
        w.stage(3, "record", b"r", m, m).unwrap();
        w.stage(4, "status", b"s", m, m).unwrap();
        assert!(w.commit_run(tail).is_empty());
        for (f, want) in [
            ("etc/a", "a"),
            ("etc/b", "b"),
            ("record", "r"),
            ("status", "s"),
        ] {
            assert_eq!(fs::read_to_string(root.join(f)).unwrap(), want);
        }

        let mut w = Writer::new(root);
        w.stage(1, "etc/a", b"a2", m, m).unwrap();
        w.stage(2, "etc/c", b"c", m, m).unwrap();
        let tail = w.staged();
        w.stage(3, "record", b"r2", m, m).unwrap();
        w.stage(4, "status", b"s2", m, m).unwrap();
        // A run's file whose target became a non-empty directory: its rename fails.
        fs::create_dir_all(root.join("etc/c/x")).unwrap();
        let errors = w.commit_run(tail);
        let tags: Vec<usize> = errors.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [2, 3, 4]);
        assert!(
            errors[1].1.to_string().contains("an earlier file"),
            "{}",
            errors[1].1
        );
        assert_eq!(fs::read_to_string(root.join("etc/a")).unwrap(), "a2");
        assert_eq!(fs::read_to_string(root.join("record")).unwrap(), "r");
        assert_eq!(fs::read_to_string(root.join("status")).unwrap(), "s");
        for d in [root.to_path_buf(), root.join("etc")] {
            let left: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .flatten()
                .filter(|e| is_temp_name(&e.file_name().to_string_lossy()))
                .collect();
            assert!(left.is_empty(), "temporary files left: {left:?}");
        }
        // The corrected record goes in a commit of its own, which still works.
        w.stage(3, "record", b"r3", m, m).unwrap();
        assert!(w.commit_chained().is_empty());
        assert_eq!(fs::read_to_string(root.join("record")).unwrap(), "r3");
    }

    /// `commit_deferred` renames without fsyncing the directories; the next `commit` (or
    /// `sync_dirs`) does, and an unsynced commit renames too.
    #[test]
    fn deferred_and_unsynced_commits_rename() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let m = own(0o644);
        let mut w = Writer::new(root);
        w.stage(0, "a/f", b"a", m, m).unwrap();
        assert!(w.commit_deferred().is_empty());
        assert_eq!(fs::read(root.join("a/f")).unwrap(), b"a");
        assert!(
            !w.dirty_dirs.is_empty(),
            "the renamed file's directory is left for later"
        );
        w.stage(0, "b/f", b"b", m, m).unwrap();
        assert!(w.commit().is_empty());
        assert!(w.dirty_dirs.is_empty());
        w.stage(0, "a/f", b"c", m, m).unwrap();
        assert!(w.commit_unsynced().is_empty());
        assert_eq!(fs::read(root.join("a/f")).unwrap(), b"c");
        assert!(w.sync_dirs().is_ok());
    }

    #[test]
    fn resolve_stays_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("etc/up")).unwrap();
        symlink("/", root.join("etc/toroot")).unwrap();
        assert_eq!(
            resolve_in_root(root, "../../etc/hostname").unwrap(),
            root.join("etc/hostname")
        );
        assert_eq!(
            resolve_in_root(root, "/abs/hostname").unwrap(),
            root.join("etc/hostname")
        );
        assert_eq!(
            resolve_in_root(root, "etc/up/passwd").unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "etc/toroot/x").unwrap(),
            root.join("x")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, "loop/x").is_err());
    }

    #[test]
    fn atomic_write_modes_and_replace() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let m = Meta {
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        let d = Meta {
            mode: 0o700,
            uid: 0,
            gid: 0,
        };
        // Tests run as root in CI; as another user chown to 0 fails, so use our own ids.
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let m = Meta { uid, gid, ..m };
        let d = Meta { uid, gid, ..d };
        let mut w = Writer::new(root);
        w.write_atomic("var/lib/x/file", b"one", m, d).unwrap();
        w.write_atomic("var/lib/x/file", b"two", m, d).unwrap();
        w.finish().unwrap();
        assert_eq!(fs::read(root.join("var/lib/x/file")).unwrap(), b"two");
        let mode = fs::metadata(root.join("var/lib/x"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let mode = fs::metadata(root.join("var/lib/x/file"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(root.join("var/lib/x")).unwrap().count(), 1);
        // A symlinked target directory pointing outside stays inside the root.
        symlink("/tmp", root.join("var/lib/out")).unwrap();
        let mut w = Writer::new(root);
        w.write_atomic("var/lib/out/f", b"x", m, d).unwrap();
        w.finish().unwrap();
        assert!(root.join("tmp/f").exists());
    }

    #[test]
    fn new_directories_appear_finished_and_temporaries_are_swept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let me = own(0o710);
        let mut w = Writer::new(root);
        w.create_dirs("a/b", me).unwrap();
        for d in ["a", "a/b"] {
            let m = fs::metadata(root.join(d)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o710, "{d}");
        }
        // Nothing but the finished directories: the temporary names were renamed away.
        assert_eq!(fs::read_dir(root).unwrap().count(), 1);
        assert_eq!(fs::read_dir(root.join("a")).unwrap().count(), 1);
        // What a crash leaves: an empty temporary directory and a temporary file, swept; a
        // non-empty directory with a look-alike name is not primer's and stays.
        fs::create_dir(root.join("a/.c.primer-tmp.1.1")).unwrap();
        fs::write(root.join(".x.primer-tmp.1.2"), b"half").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/.l.primer-tmp.1.4")).unwrap();
        fs::create_dir_all(root.join("a/.d.primer-tmp.1.3/keep")).unwrap();
        let w = Writer::new(root);
        assert_eq!(w.sweep_temps(["a/b/file"]), 3);
        assert!(fs::symlink_metadata(root.join("a/.l.primer-tmp.1.4")).is_err());
        assert!(!root.join("a/.c.primer-tmp.1.1").exists());
        assert!(!root.join(".x.primer-tmp.1.2").exists());
        assert!(root.join("a/.d.primer-tmp.1.3/keep").exists());
        // An existing directory is never replaced; a file in the way is an error naming it.
        fs::write(root.join("a/b/f"), b"x").unwrap();
        let mut w = Writer::new(root);
        w.create_dirs("a/b", Meta { mode: 0o700, ..me }).unwrap();
        assert!(root.join("a/b/f").exists());
        let e = w.create_dirs("a/b/f/g", me).unwrap_err().to_string();
        assert!(e.contains(&root.join("a/b/f").display().to_string()), "{e}");
    }

    /// What the writer learnt stays true for its own changes (a directory it made, a file it
    /// renamed over a link is a file now), and a link put in place by someone else is followed
    /// once the writer is told (`forget`), as `system::symlink` does.
    /// Paths beside each other and paths below a missing directory: every directory on the
    /// way that exists is swept once, whatever the order of the paths; nothing is looked for
    /// below a directory the memo knows missing, and a link beside such paths is still
    /// followed to where it points.
    #[test]
    fn the_sweep_sees_every_existing_directory_on_the_way_once() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc/net")).unwrap();
        fs::create_dir_all(root.join("run/real")).unwrap();
        fs::write(root.join("etc/.hostname.primer-tmp.1.1"), b"x").unwrap();
        fs::write(root.join("etc/net/.a.primer-tmp.1.2"), b"x").unwrap();
        fs::write(root.join("run/real/.r.primer-tmp.1.3"), b"x").unwrap();
        fs::write(root.join(".top.primer-tmp.1.4"), b"x").unwrap();
        std::os::unix::fs::symlink("../../run/real/r", root.join("etc/net/link")).unwrap();
        // A link into a missing directory, then a name beside the link (review of h10-first:
        // the link's target directory was taken for its siblings', and `opt/app` never swept).
        fs::create_dir_all(root.join("opt/app")).unwrap();
        std::os::unix::fs::symlink("../../missing/x", root.join("opt/app/link")).unwrap();
        fs::write(root.join("opt/app/.conf.primer-tmp.1.5"), b"x").unwrap();
        let res = Resolver::new(root);
        // The memo learns `etc/systemd` and `missing` are missing.
        res.resolve("etc/systemd/network/x").unwrap();
        res.resolve("opt/app/link").unwrap();
        let w = Writer::with_resolver(res);
        let rels = [
            "etc/systemd/network/a",
            "etc/systemd/network/b",
            "etc/net/a",
            "etc/net/link",
            "etc/systemd/network/c",
            "etc/hostname",
            "opt/app/link",
            "opt/app/conf",
        ];
        assert_eq!(w.sweep_temps(rels), 5);
        for gone in [
            "etc/.hostname.primer-tmp.1.1",
            "etc/net/.a.primer-tmp.1.2",
            "run/real/.r.primer-tmp.1.3",
            ".top.primer-tmp.1.4",
            "opt/app/.conf.primer-tmp.1.5",
        ] {
            assert!(fs::symlink_metadata(root.join(gone)).is_err(), "{gone}");
        }
        assert!(!root.join("etc/systemd").exists());
    }

    #[test]
    fn the_writer_memo_follows_its_own_changes_and_forgets_others() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let m = own(0o644);
        let mut w = Writer::new(root);
        w.write_atomic("etc/lt", b"file", m, m).unwrap();
        assert_eq!(fs::read(root.join("etc/lt")).unwrap(), b"file");
        // Replaced by a link outside the writer, which is told.
        fs::create_dir_all(root.join("usr/zone")).unwrap();
        fs::remove_file(root.join("etc/lt")).unwrap();
        symlink("/usr/zone/UTC", root.join("etc/lt")).unwrap();
        w.forget(&root.join("etc/lt"));
        w.write_atomic("etc/lt", b"through", m, m).unwrap();
        assert_eq!(fs::read(root.join("usr/zone/UTC")).unwrap(), b"through");
        assert!(fs::symlink_metadata(root.join("etc/lt"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A directory the writer made is used at once; a file it removed is missing.
        w.write_atomic("a/b/c", b"1", m, m).unwrap();
        w.write_atomic("a/b/d", b"2", m, m).unwrap();
        w.remove_file("a/b/c").unwrap();
        assert!(!root.join("a/b/c").exists());
        w.write_atomic("a/b/c", b"3", m, m).unwrap();
        assert_eq!(fs::read(root.join("a/b/c")).unwrap(), b"3");
        // A new file gets its mode at creation (primer's own ids): nothing else to set.
        let mode = fs::metadata(root.join("a/b/d"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn repair_tree_fixes_modes_below() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("state");
        fs::create_dir_all(top.join("x/y")).unwrap();
        for d in ["", "x", "x/y"] {
            fs::set_permissions(top.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let me = own(0o700);
        assert_eq!(repair_tree(&top, me, 100).unwrap().len(), 3);
        assert_eq!(
            fs::metadata(top.join("x/y")).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(repair_tree(&top, me, 100).unwrap().is_empty());
    }

    #[test]
    fn temp_names_of_a_target() {
        assert!(crate::paths::is_temp_name_of(
            ".drive.primer-tmp.12.3",
            "drive"
        ));
        for not in [
            ".drive.primer-tmp.12",
            ".drive.primer-tmp.1.x",
            ".drive.primer-tmp..3",
            ".drivex.primer-tmp.1.2",
            "drive.primer-tmp.1.2",
            ".drive.primer-tmp.1.2.3",
        ] {
            assert!(!crate::paths::is_temp_name_of(not, "drive"), "{not}");
        }
    }

    #[test]
    fn clean_relative() {
        assert!(is_clean_relative("etc/hostname"));
        assert!(!is_clean_relative("etc/../x"));
        assert!(!is_clean_relative(""));
    }
}
