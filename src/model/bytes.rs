//! `Bytes`: an immutable byte buffer shared by reference count, and slices of it, so one drive
//! file is held at most once from the parse to the write: the instance, the script or
//! injected-file step and the local copy all point into one buffer. A large drive file is not
//! held at all: it stays on the device (its extents, its length and the SHA-256 the reader
//! computed while streaming it once) and is streamed again, its digest re-checked, wherever its
//! bytes are needed whole (the writer, the drive hash, the secret scrub). Content derived from a
//! byte range of such a file (a `write_files` block unindented and decoded, see [`Derive`]) is
//! kept the same way: its recipe, its length and its SHA-256, streamed again when needed. The
//! only I/O here is that read-only streaming through the reader's [`ReadAt`]; it must not expose
//! a way to change bytes others share.

use std::fmt;
use std::io::{self, Read};
use std::ops::{Deref, Range};
use std::sync::{Arc, OnceLock};

/// Bytes read from the device at a time when a file on the device is streamed.
pub const STREAM_CHUNK: usize = 64 << 10;

/// The first bytes of a file on the device kept while it is hashed: what [`Bytes::head`]
/// serves (a parser telling a script from a cloud-config looks at no more).
pub const HEAD_BYTES: usize = 4096;

/// Positioned, read-only access to the device a drive was read from, shared by every file kept
/// on it (a loop device, a partition behind an offset reader, an image file).
pub trait ReadAt: Send + Sync {
    /// Fills `buf` from byte `at` of the filesystem; a short device is an error.
    fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A device in memory whose bytes a test can change under what was measured (tests only).
#[cfg(test)]
pub(crate) struct MemDevice(pub std::sync::Mutex<Vec<u8>>);

#[cfg(test)]
impl ReadAt for MemDevice {
    fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let d = self.0.lock().unwrap();
        let src = d
            .get(at as usize..at as usize + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A drive file left on its device: where its bytes are, not the bytes.
struct OnDevice {
    dev: Arc<dyn ReadAt>,
    /// `(byte offset, length)` of each extent, in file order; lengths add up to `len`.
    extents: Vec<(u64, u64)>,
    len: usize,
    /// `device: path`, for errors (a drive path, never content).
    name: String,
    /// The first [`HEAD_BYTES`] (fewer when the file is shorter), captured while the file was
    /// hashed: a head read from the device later could differ from what the digest covers.
    head: Vec<u8>,
    /// The whole content, read only when a caller needs it as one slice (a parser that cannot
    /// stream); checked against the digest, so what it holds is what was hashed. A load that
    /// failed (read error, bytes changed since hashing) keeps its error, never an empty buffer:
    /// every later use of the bytes gets that error, so nothing takes the file as empty.
    loaded: OnceLock<Loaded>,
}

/// Makes content from a reader over a byte range of another buffer (a cloud-config block
/// unindented, chomped and decoded): the same source bytes must always give the same bytes, and
/// a source it cannot transform is a read error.
pub trait Derive: Send + Sync {
    fn open<'a>(&'a self, src: Box<dyn io::Read + 'a>) -> Box<dyn io::Read + 'a>;

    /// How much of the content to keep as its head while it is measured: what a classifier
    /// looks at without a read ([`HEAD_BYTES`]). Content no one classifies (a `write_files`
    /// block: a document may carve thousands) keeps none; [`Bytes::head`] then derives what
    /// it is asked for again.
    fn head_bytes(&self) -> usize {
        HEAD_BYTES
    }

    /// Whether the recipe gives its source bytes unchanged (a MIME part's body as it is): its
    /// content is then a plain range of the source, which [`Bytes::device_view`] can expose.
    fn identity(&self) -> bool {
        false
    }
}

/// What the source bytes of derived content must be when it is first measured: the SHA-256 of
/// `range` of the source (a range holding the derived range, e.g. a whole MIME part around its
/// body), taken by a pass that was itself checked against the drive file's digest (the MIME
/// splitter's, the carve's). The measure reads that range, hashes it and refuses a mismatch:
/// a device that changed between the file's hash and the measure cannot make the content (its
/// digest, then written and executed) differ from what the file's digest covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceCheck {
    pub range: Range<usize>,
    pub sha256: [u8; 32],
}

/// Content derived from a byte range of a buffer (usually a file kept on the device): the
/// recipe, never the bytes, unless a caller needs them as one slice.
struct Derived {
    src: Bytes,
    range: Range<usize>,
    derive: Box<dyn Derive>,
    len: usize,
    /// What the content is (`write_files[3].content`): its name for errors is its source's
    /// and this (`device: path (what)`, [`Derived::name`]), made when an error needs it, not
    /// held (a document may carve thousands of contents).
    what: Box<str>,
    /// The first [`HEAD_BYTES`], captured while the content was hashed (a boxed slice: a
    /// document may carve thousands of contents, each keeping none).
    head: Box<[u8]>,
    /// The SHA-256 state after the content (see [`Bytes::sha256_then`]); a fresh state only
    /// while the content is first measured.
    state: sha2::Sha256,
    /// As for [`OnDevice`]: the whole content, read at most once, or the load's error.
    loaded: OnceLock<Loaded>,
}

impl Derived {
    /// The recipe as the streaming code reads it.
    fn view(&self) -> View<'_> {
        View {
            src: &self.src,
            range: self.range.clone(),
            len: self.len,
            head: &self.head,
            loaded: &self.loaded,
            kind: Kind::Dyn(self),
        }
    }
}

/// Opens a reader of content made from a reader over its source range: `kind` is the
/// member's own recipe (a block's style and decoding, see [`DerivedSet`]), the function shared
/// by all members of a set.
pub type OpenFn = for<'a> fn(u8, Box<dyn io::Read + 'a>) -> Box<dyn io::Read + 'a>;

/// The SHA-256 state after the whole 64-byte blocks hashed so far (40 bytes: the chaining
/// value and the block count), the rest of a full state ([`sha2::Sha256`], 112 bytes) being
/// the last partial block, kept apart in a member's set ([`Group`]).
type Sha256Core = <sha2::Sha256 as sha2::digest::core_api::CoreProxy>::Core;

/// Many contents derived from ranges of one source by one recipe function (a document's
/// `write_files` blocks: 10,000 in a 64 MiB cloud-config), in one shared allocation: the
/// source, the recipe and every member's compact recipe (range, length, a one-byte kind, the
/// hash state), indexed by slot. A member costs no allocation of its own (a [`Derived`] with
/// its boxed recipe and name cost ~350 B each).
struct Group {
    src: Bytes,
    open: OpenFn,
    /// One slot per content the caller may derive (the number of blocks carved), each set
    /// once, when its content is measured.
    members: Box<[OnceLock<Member>]>,
    /// Per member, at its `at`: the bytes of its content's last partial SHA-256 block, then
    /// its `what` (read only to name errors and to finish a digest: copied out).
    arena: std::sync::Mutex<Vec<u8>>,
}

/// One member of a [`Group`]: what [`Derived`] holds, less what the group shares.
struct Member {
    range: Range<usize>,
    len: usize,
    /// The hash state after the content's whole blocks; the partial block is in the arena.
    core: Sha256Core,
    at: u32,
    what_len: u16,
    part_len: u8,
    kind: u8,
    /// As for [`Derived`]: the whole content, read at most once, or the load's error.
    loaded: OnceLock<Loaded>,
}

impl Group {
    fn member(&self, i: u32) -> Option<&Member> {
        self.members.get(i as usize)?.get()
    }

    /// `len` bytes of the arena at `at`, copied out (empty when out of bounds: never, as a
    /// member is set with its bytes).
    fn arena_bytes(&self, at: u32, len: usize) -> Vec<u8> {
        let a = self
            .arena
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        a.get(at as usize..at as usize + len)
            .unwrap_or_default()
            .to_vec()
    }

    fn what(&self, m: &Member) -> String {
        let b = self.arena_bytes(m.at + u32::from(m.part_len), usize::from(m.what_len));
        String::from_utf8_lossy(&b).into_owned()
    }

    /// The hash state after the member's content (see [`Bytes::sha256_then`]).
    fn state(&self, m: &Member) -> sha2::Sha256 {
        use sha2::Digest;
        let mut h = sha2::Sha256::from_core(m.core.clone());
        h.update(self.arena_bytes(m.at, usize::from(m.part_len)));
        h
    }

    fn digest(&self, m: &Member) -> [u8; 32] {
        use sha2::Digest;
        self.state(m).finalize().into()
    }

    fn view<'a>(&'a self, m: &'a Member) -> View<'a> {
        View {
            src: &self.src,
            range: m.range.clone(),
            len: m.len,
            head: &[],
            loaded: &m.loaded,
            kind: Kind::Member(self, m),
        }
    }
}

/// A set of contents derived from one source by one recipe function, each a [`Bytes`] sharing
/// the set's one allocation (see [`Group`]). Cheap to clone.
#[derive(Clone)]
pub struct DerivedSet(Arc<Group>);

impl DerivedSet {
    /// A set of at most `slots` contents of `src`, each made by `open` with its own kind.
    pub fn new(src: &Bytes, open: OpenFn, slots: usize) -> DerivedSet {
        DerivedSet(Arc::new(Group {
            src: src.clone(),
            open,
            members: (0..slots).map(|_| OnceLock::new()).collect(),
            arena: std::sync::Mutex::new(Vec::new()),
        }))
    }

    /// [`Bytes::derived_checked`] as slot `slot` of the set, made by the set's function with
    /// `kind`; the content keeps no head ([`Derive::head_bytes`] 0: [`Bytes::head`] derives
    /// what it is asked for). An error, as there, when it cannot be measured; also when the
    /// slot is out of range or taken.
    pub fn derive(
        &self,
        slot: usize,
        range: Range<usize>,
        check: Option<SourceCheck>,
        kind: u8,
        what: &str,
        max: usize,
    ) -> io::Result<Bytes> {
        let g = &*self.0;
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
        let index = u32::try_from(slot).map_err(|_| bad("derived slot out of range"))?;
        let cell = g
            .members
            .get(slot)
            .filter(|c| c.get().is_none())
            .ok_or_else(|| bad("derived slot out of range or taken"))?;
        check_ranges(&g.src, &range, check.as_ref())?;
        let what_len = u16::try_from(what.len()).map_err(|_| bad("name too long"))?;
        let empty = OnceLock::new();
        let v = View {
            src: &g.src,
            range: range.clone(),
            len: 0,
            head: &[],
            loaded: &empty,
            kind: Kind::Measure(g.open, kind, what),
        };
        let (len, _, state) =
            stream_derived_checked(&v, check.as_ref(), None, max, &mut |_| Ok(()))?;
        let (core, part) = state.decompose();
        let part = part.get_data();
        let mut a = g
            .arena
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = u32::try_from(a.len()).map_err(|_| bad("derived set too large"))?;
        a.extend_from_slice(part);
        a.extend_from_slice(what.as_bytes());
        drop(a);
        let m = Member {
            range,
            len,
            core,
            at,
            what_len,
            // A partial block is shorter than a block (64 bytes).
            part_len: u8::try_from(part.len()).map_err(|_| bad("hash block"))?,
            kind,
            loaded: OnceLock::new(),
        };
        cell.set(m).map_err(|_| bad("derived slot taken"))?;
        Ok(Bytes {
            buf: Buf::Member(Arc::clone(&self.0), index),
            range: 0..len,
        })
    }

    /// Gives back the arena's spare capacity once every member is derived.
    pub fn shrink(&self) {
        self.0
            .arena
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shrink_to_fit();
    }
}

/// Where a derived content's recipe is: its own [`Derived`], a member of a [`Group`], or a
/// member being measured (not yet in its group).
#[derive(Clone)]
enum Kind<'a> {
    Dyn(&'a Derived),
    Member(&'a Group, &'a Member),
    Measure(OpenFn, u8, &'a str),
}

/// Derived content as the streaming code reads it, whichever way it is held.
#[derive(Clone)]
struct View<'a> {
    src: &'a Bytes,
    range: Range<usize>,
    len: usize,
    head: &'a [u8],
    loaded: &'a OnceLock<Loaded>,
    kind: Kind<'a>,
}

impl<'a> View<'a> {
    /// `device: path (what)`, for errors and logs.
    fn name(&self) -> String {
        let member;
        let what = match self.kind {
            Kind::Dyn(d) => &*d.what,
            Kind::Member(g, m) => {
                member = g.what(m);
                &member
            }
            Kind::Measure(_, _, w) => w,
        };
        format!("{} ({what})", self.src.name())
    }

    fn open<'b>(&self, src: Box<dyn io::Read + 'b>) -> Box<dyn io::Read + 'b>
    where
        'a: 'b,
    {
        match self.kind {
            Kind::Dyn(d) => d.derive.open(src),
            Kind::Member(g, m) => (g.open)(m.kind, src),
            Kind::Measure(f, k, _) => f(k, src),
        }
    }

    fn identity(&self) -> bool {
        matches!(self.kind, Kind::Dyn(d) if d.derive.identity())
    }

    /// The hash state after the content (see [`Bytes::sha256_then`]).
    fn state(&self) -> sha2::Sha256 {
        match self.kind {
            Kind::Dyn(d) => d.state.clone(),
            Kind::Member(g, m) => g.state(m),
            Kind::Measure(..) => sha2::Sha256::default(),
        }
    }
}

/// Refuses a derived range (and a check range, which must hold it) outside its source.
fn check_ranges(src: &Bytes, range: &Range<usize>, check: Option<&SourceCheck>) -> io::Result<()> {
    let outside = |r: &Range<usize>| r.start > r.end || r.end > src.len();
    if outside(range)
        || check.is_some_and(|c| {
            outside(&c.range) || c.range.start > range.start || c.range.end < range.end
        })
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "derived range outside its source",
        ));
    }
    Ok(())
}

/// What a buffer is, borrowed from its [`Buf`].
#[derive(Clone)]
enum Data<'a> {
    Mem(&'a [u8]),
    Device(&'a OnDevice),
    Derived(View<'a>),
}

/// One kind of buffer with its SHA-256 computed at most once (a 64 MiB script is written to
/// two places and compared: hashing it for each would cost more than reading it). A file on
/// the device has its digest from the start (the reader hashed it while streaming it).
struct Shared<T> {
    data: T,
    sha256: OnceLock<[u8; 32]>,
}

impl<T> Shared<T> {
    fn new(data: T) -> Arc<Self> {
        Arc::new(Shared {
            data,
            sha256: OnceLock::new(),
        })
    }
}

/// Many small texts that each open with one fixed head, the rest of each a range of one shared
/// body (rendered network files, each starting with primer's header line: 3.2 MB of the
/// 5.2 MB of 14,000 VLANs' 28,000 files was that line again; issue 15). A member costs its
/// body's bytes and its end; it is made contiguous only if a caller needs it as one slice
/// (kept then: see [`Bytes::try_slice`]). See [`Bytes::headed`].
struct HeadedSet {
    head: &'static [u8],
    body: Box<[u8]>,
    /// Where each member's body ends in `body` (it starts where the one before ends).
    ends: Box<[usize]>,
    /// Members made contiguous, made when the first one is asked for.
    whole: OnceLock<Box<[Joined]>>,
}

/// A [`HeadedSet`] member joined into one slice, once.
type Joined = OnceLock<Box<[u8]>>;

impl HeadedSet {
    fn body(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0),
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.body.get(start..end).unwrap_or_default()
    }

    fn len(&self, i: u32) -> usize {
        self.head.len() + self.body(i).len()
    }

    /// The member as one slice, joined once.
    fn whole(&self, i: u32) -> &[u8] {
        let cells = self
            .whole
            .get_or_init(|| (0..self.ends.len()).map(|_| OnceLock::new()).collect());
        match cells.get(i as usize) {
            Some(c) => c.get_or_init(|| [self.head, self.body(i)].concat().into()),
            None => &[],
        }
    }

    fn digest(&self, i: u32) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::new()
            .chain_update(self.head)
            .chain_update(self.body(i))
            .finalize()
            .into()
    }
}

/// The shared buffer: one reference-counted allocation per kind, each of its own size. A
/// buffer in memory (each rendered network file: 28,000 for 14,000 VLANs) costs its bytes and
/// a small header, not the size of the largest kind (a derived content's recipe, ~250 B), and a
/// derived content is still one allocation (not a box inside a box: 10,000 `write_files`
/// entries).
#[derive(Clone)]
enum Buf {
    /// The bytes themselves, at their length (no spare capacity kept for the buffer's life).
    Mem(Arc<Shared<Box<[u8]>>>),
    Device(Arc<Shared<OnDevice>>),
    Derived(Arc<Shared<Derived>>),
    /// A member of a set of derived contents (see [`DerivedSet`]), by its slot.
    Member(Arc<Group>, u32),
    /// A member of a set of texts with one head (see [`HeadedSet`]), by its index.
    Headed(Arc<HeadedSet>, u32),
}

impl Buf {
    fn data(&self) -> Data<'_> {
        match self {
            Buf::Mem(s) => Data::Mem(&s.data),
            Buf::Device(s) => Data::Device(&s.data),
            Buf::Derived(s) => Data::Derived(s.data.view()),
            Buf::Member(g, i) => match g.member(*i) {
                Some(m) => Data::Derived(g.view(m)),
                // Never: a member's `Bytes` is made once its slot is set.
                None => Data::Mem(&[]),
            },
            // Joined here only for the callers that need one slice (not for writing,
            // hashing or comparing it: `for_each_chunk`, `sha256`, `equals`).
            Buf::Headed(h, i) => Data::Mem(h.whole(*i)),
        }
    }

    /// The digest's cell, for a buffer that keeps one (a member's is made from its state).
    fn cell(&self) -> Option<&OnceLock<[u8; 32]>> {
        match self {
            Buf::Mem(s) => Some(&s.sha256),
            Buf::Device(s) => Some(&s.sha256),
            Buf::Derived(s) => Some(&s.sha256),
            Buf::Member(..) | Buf::Headed(..) => None,
        }
    }

    /// The digest of the whole buffer when known (always, but for a buffer in memory not yet
    /// hashed).
    fn digest(&self) -> Option<[u8; 32]> {
        match self {
            Buf::Member(g, i) => g.member(*i).map(|m| g.digest(m)),
            // Small texts: hashed when asked (a plan asks once per file step).
            Buf::Headed(h, i) => Some(h.digest(*i)),
            _ => self.cell()?.get().copied(),
        }
    }

    fn ptr_eq(&self, other: &Buf) -> bool {
        match (self, other) {
            (Buf::Mem(a), Buf::Mem(b)) => Arc::ptr_eq(a, b),
            (Buf::Device(a), Buf::Device(b)) => Arc::ptr_eq(a, b),
            (Buf::Derived(a), Buf::Derived(b)) => Arc::ptr_eq(a, b),
            (Buf::Member(a, i), Buf::Member(b, j)) => Arc::ptr_eq(a, b) && i == j,
            (Buf::Headed(a, i), Buf::Headed(b, j)) => Arc::ptr_eq(a, b) && i == j,
            _ => false,
        }
    }

    fn len(&self) -> usize {
        // From the buffer itself (no view made: asked on every `is_whole`).
        match self {
            Buf::Mem(s) => s.data.len(),
            Buf::Device(s) => s.data.len,
            Buf::Derived(s) => s.data.len,
            Buf::Member(g, i) => g.member(*i).map_or(0, |m| m.len),
            Buf::Headed(h, i) => h.len(*i),
        }
    }

    /// The bytes as one slice: a file on the device is read whole here (once), the fallback
    /// for callers that cannot stream. A device that fails or changed gives the error (naming
    /// the file), the same one on every later call: the load is not retried, so every user of
    /// the file sees one outcome.
    fn try_slice(&self) -> io::Result<&[u8]> {
        match self.data() {
            Data::Mem(v) => Ok(v),
            Data::Device(d) => load_once(&d.loaded, &d.name, d.len, |f| {
                stream_device(d, self.digest(), f).map(|_| ())
            }),
            Data::Derived(d) => load_once(d.loaded, &d.name(), d.len, |f| {
                let want = self.digest().map(|s| (d.len, s));
                stream_derived(&d, want, d.len, f).map(|_| ())
            }),
        }
    }
}

/// A kept file read whole, or the load's error: boxed, as few files are ever loaded and the
/// empty cell then costs a pointer in each of thousands (a carved `write_files` content).
type Loaded = Box<Result<Vec<u8>, String>>;

/// A kept file read whole once (see `Buf::try_slice`): what `stream` gives, or its error
/// kept as text, so every later caller gets the same outcome.
fn load_once<'a>(
    loaded: &'a OnceLock<Loaded>,
    name: &str,
    len: usize,
    stream: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>,
) -> io::Result<&'a [u8]> {
    loaded
        .get_or_init(|| {
            tracing::debug!("{name}: read whole into memory");
            let mut all = Vec::with_capacity(len);
            stream(&mut |c| {
                all.extend_from_slice(c);
                Ok(())
            })
            .map(|()| all)
            .map_err(|e| {
                tracing::error!("{e}");
                e.to_string()
            })
            .into()
        })
        .as_deref()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Streams derived content to `f` in [`STREAM_CHUNK`] pieces: the source range read again (the
/// recipe re-applied), at most `max` bytes, then checked against `want` (length and SHA-256)
/// when given. Errors name the content's file.
fn stream_derived(
    d: &View,
    want: Option<(usize, [u8; 32])>,
    max: usize,
    f: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(usize, [u8; 32], sha2::Sha256)> {
    stream_derived_checked(d, None, want, max, f)
}

/// [`stream_derived`], the source read through `check` when given: its range read and hashed
/// whole (the derived range handed to the recipe, the rest skipped and drained), the digest
/// compared at the end (an error naming the file on a mismatch).
fn stream_derived_checked(
    d: &View,
    check: Option<&SourceCheck>,
    want: Option<(usize, [u8; 32])>,
    max: usize,
    f: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(usize, [u8; 32], sha2::Sha256)> {
    use sha2::{Digest, Sha256};
    let name = d.name();
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{name}: cannot read: {e}"));
    let cell = match check {
        Some(c) => {
            let inner = d.src.range_reader(c.range.clone()).map_err(named)?;
            Some(std::cell::RefCell::new(Hashed {
                inner,
                h: Sha256::new(),
                pos: 0,
            }))
        }
        None => None,
    };
    let src: Box<dyn io::Read + '_> = match (&cell, check) {
        (Some(cell), Some(c)) => Box::new(Window {
            src: cell,
            start: d.range.start - c.range.start,
            end: d.range.end - c.range.start,
        }),
        _ => d.src.range_reader(d.range.clone()).map_err(named)?,
    };
    let mut r = d.open(src);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0usize;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(named(e)),
        };
        total += n;
        if total > max {
            // Longer than its measured length: the source changed (a gzip stream whose byte
            // changed can decompress to more); longer than a first measure allows: too large.
            return Err(match want {
                Some(_) => changed(&name),
                None => io::Error::new(
                    io::ErrorKind::InvalidData,
                    TooLarge {
                        name: name.clone(),
                        max,
                    },
                ),
            });
        }
        let chunk = buf.get(..n).unwrap_or_default();
        h.update(chunk);
        f(chunk)?;
    }
    drop(r);
    if let (Some(cell), Some(c)) = (&cell, check) {
        // The rest of the checked range (past the derived range, or what the recipe left
        // unread) drained into the hash, then the whole compared.
        let mut src = cell.borrow_mut();
        while src.read_hashed(&mut buf).map_err(named)? > 0 {}
        let sum: [u8; 32] = src.h.clone().finalize().into();
        if src.pos != c.range.len() || sum != c.sha256 {
            return Err(changed(&name));
        }
    }
    let state = h.clone();
    let got: [u8; 32] = h.finalize().into();
    if want.is_some_and(|w| w != (total, got)) {
        return Err(changed(&name));
    }
    Ok((total, got, state))
}

/// The source of a checked measure (see [`SourceCheck`]): every byte read is hashed and
/// counted.
struct Hashed<'a> {
    inner: Box<dyn io::Read + 'a>,
    h: sha2::Sha256,
    /// Bytes of the checked range read so far.
    pos: usize,
}

impl Hashed<'_> {
    fn read_hashed(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = read_retry(&mut self.inner, buf)?;
        self.h.update(buf.get(..n).unwrap_or_default());
        self.pos += n;
        Ok(n)
    }
}

/// The derived range inside a checked range: the bytes before it read (hashed) and skipped,
/// reading stops at its end; the rest is drained by the measure once the recipe is done.
struct Window<'c, 'a> {
    src: &'c std::cell::RefCell<Hashed<'a>>,
    /// The derived range, relative to the checked range's start.
    start: usize,
    end: usize,
}

impl io::Read for Window<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut src = self.src.borrow_mut();
        let mut skip = [0u8; 4096];
        while src.pos < self.start {
            let n = (self.start - src.pos).min(skip.len());
            if src.read_hashed(skip.get_mut(..n).unwrap_or_default())? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let n = buf.len().min(self.end.saturating_sub(src.pos));
        if n == 0 {
            return Ok(0);
        }
        src.read_hashed(buf.get_mut(..n).unwrap_or_default())
    }
}

/// The error of kept content whose bytes differ from those hashed when it was read.
fn changed(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{name}: changed on the device since it was read (its SHA-256 differs); not used"),
    )
}

/// Derived content that gave more than its cap (see [`Bytes::derived`]): a caller can tell it
/// from a read error (a gzip bomb is a warning of its own, a corrupt stream another).
#[derive(Debug, thiserror::Error)]
#[error("{name}: larger than {max} bytes")]
pub struct TooLarge {
    pub name: String,
    pub max: usize,
}

/// Reads a byte range of derived content: a recipe cannot seek, so the content is derived
/// again from its start and the bytes before the range are skipped; past the range the rest
/// is drained too, so the whole content is checked against its length and SHA-256 before the
/// reader says it is done (a changed device byte anywhere is an error naming the file, as for
/// a whole read). One full pass of the recipe per reader: linear per read, bounded by the
/// content's cap.
struct DerivedRange<'a> {
    inner: Box<dyn io::Read + 'a>,
    name: String,
    h: sha2::Sha256,
    want: Option<(usize, [u8; 32])>,
    /// Bytes of the content read so far, and the range handed out.
    pos: usize,
    start: usize,
    end: usize,
    /// Where skipped and drained bytes go (allocated at the first skip or drain).
    scratch: Vec<u8>,
    done: bool,
}

impl DerivedRange<'_> {
    fn changed(&self) -> io::Error {
        changed(&self.name)
    }

    /// Reads up to `n` bytes of the content into the scratch buffer, hashed and counted
    /// (skipping or draining); 0 at the end.
    fn discard(&mut self, n: usize) -> io::Result<usize> {
        use sha2::Digest;
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; STREAM_CHUNK];
        }
        let n = n.min(self.scratch.len());
        let buf = self.scratch.get_mut(..n).unwrap_or_default();
        let got = read_named(&mut self.inner, buf, &self.name)?;
        self.h.update(buf.get(..got).unwrap_or_default());
        self.pos += got;
        Ok(got)
    }
}

/// One read, retried when interrupted.
fn read_retry(r: &mut dyn io::Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// One read of a recipe's output ([`read_retry`]); errors name the content's file.
fn read_named(r: &mut dyn io::Read, buf: &mut [u8], name: &str) -> io::Result<usize> {
    read_retry(r, buf).map_err(|e| io::Error::new(e.kind(), format!("{name}: cannot read: {e}")))
}

impl io::Read for DerivedRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        while self.pos < self.start {
            if self.discard(self.start - self.pos)? == 0 {
                return Err(self.changed());
            }
        }
        if self.pos < self.end {
            let n = buf.len().min(self.end - self.pos);
            let out = buf.get_mut(..n).unwrap_or_default();
            let got = read_named(&mut self.inner, out, &self.name)?;
            if got == 0 {
                return Err(self.changed());
            }
            self.h.update(out.get(..got).unwrap_or_default());
            self.pos += got;
            return Ok(got);
        }
        // The range is out: the rest drained (bounded by the length the digest covers) and
        // the whole checked before the end is reported.
        while self.discard(STREAM_CHUNK)? > 0 {
            if self.want.is_some_and(|(len, _)| self.pos > len) {
                return Err(self.changed());
            }
        }
        let got: [u8; 32] = self.h.clone().finalize().into();
        if self.want.is_some_and(|w| w != (self.pos, got)) {
            return Err(self.changed());
        }
        self.done = true;
        Ok(0)
    }
}

/// Reads a byte range of a file on the device, extent by extent (no digest: a reader of it
/// checks what it derives).
struct DeviceRange<'a> {
    d: &'a OnDevice,
    pos: u64,
    end: u64,
}

impl io::Read for DeviceRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let mut file_at = 0u64;
        for &(start, len) in &self.d.extents {
            if self.pos < file_at + len {
                let off = self.pos - file_at;
                let n = (len - off)
                    .min(self.end - self.pos)
                    .min(buf.len().min(STREAM_CHUNK) as u64) as usize;
                let chunk = buf.get_mut(..n).unwrap_or_default();
                self.d.dev.read_exact_at(start + off, chunk)?;
                self.pos += n as u64;
                return Ok(n);
            }
            file_at += len;
        }
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Streams a file on the device in [`STREAM_CHUNK`] pieces to `f`, then checks the digest
/// (when one is given): an error names the file when the device fails or changed under it.
/// `f` has seen the bytes by then: a caller that keeps them must drop them on an error.
fn stream_device(
    d: &OnDevice,
    want: Option<[u8; 32]>,
    f: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; STREAM_CHUNK.min(d.len.max(1))];
    let mut total = 0usize;
    for &(start, len) in &d.extents {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            d.dev
                .read_exact_at(start + done, chunk)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot read: {e}", d.name)))?;
            h.update(&*chunk);
            f(chunk)?;
            done += n as u64;
            total += n;
        }
    }
    let got: [u8; 32] = h.finalize().into();
    if total != d.len || want.is_some_and(|w| w != got) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: changed on the device since it was read (its SHA-256 differs); not used",
                d.name
            ),
        ));
    }
    Ok(got)
}

/// Cheap to clone (a reference count); compares, hashes and derefs as its bytes.
#[derive(Clone)]
pub struct Bytes {
    buf: Buf,
    range: Range<usize>,
}

impl Default for Bytes {
    /// The empty buffer, one for the process: a content moved out of its place
    /// (`std::mem::take`, thousands of `write_files` entries) leaves an empty `Bytes` behind,
    /// which must not cost a buffer of its own each.
    fn default() -> Self {
        static EMPTY: OnceLock<Arc<Shared<Box<[u8]>>>> = OnceLock::new();
        Bytes {
            buf: Buf::Mem(Arc::clone(
                EMPTY.get_or_init(|| Shared::new(Box::default())),
            )),
            range: 0..0,
        }
    }
}

impl Bytes {
    /// An empty buffer.
    pub fn new() -> Self {
        Bytes::default()
    }

    /// A drive file kept on its device: `extents` (offset, length) adding up to `len`, read
    /// through `dev`; streams it once to compute its SHA-256 and keep its first [`HEAD_BYTES`]
    /// (the reader's error when it cannot be read). `name` (`device: path`) is what errors
    /// show.
    pub fn on_device(
        dev: Arc<dyn ReadAt>,
        extents: Vec<(u64, u64)>,
        len: usize,
        name: String,
    ) -> io::Result<Bytes> {
        let mut d = OnDevice {
            dev,
            extents,
            len,
            name,
            head: Vec::new(),
            loaded: OnceLock::new(),
        };
        let mut head = Vec::with_capacity(HEAD_BYTES.min(len));
        let digest = stream_device(&d, None, &mut |c| {
            let take = (HEAD_BYTES - head.len()).min(c.len());
            head.extend_from_slice(&c[..take]);
            Ok(())
        })?;
        d.head = head;
        let shared = Shared::new(d);
        let _ = shared.sha256.set(digest);
        Ok(Bytes {
            buf: Buf::Device(shared),
            range: 0..len,
        })
    }

    /// Content derived from `range` of `src` by `derive` (a `write_files` block of a
    /// cloud-config kept on the device, unindented and decoded), never held: streamed once here
    /// for its length, SHA-256 and head (an error when it cannot be read or derived, or gives
    /// more than `max` bytes), and again, the recipe re-applied and the digest re-checked,
    /// wherever it is needed whole. `what` is added to the source's name in errors.
    ///
    /// A source that is a whole file kept on the device, derived whole (gzip'd user data), is
    /// checked against the file's digest while measured (see [`SourceCheck`]); for a part of
    /// such a file, [`derived_checked`](Bytes::derived_checked) takes the part's digest.
    pub fn derived(
        src: &Bytes,
        range: Range<usize>,
        derive: Box<dyn Derive>,
        what: &str,
        max: usize,
    ) -> io::Result<Bytes> {
        let whole = matches!(src.buf.data(), Data::Device(_)) && range == (0..src.len());
        let check = match src.buf.digest() {
            Some(s) if whole && src.is_whole() => Some(SourceCheck {
                range: range.clone(),
                sha256: s,
            }),
            _ => None,
        };
        Bytes::derived_checked(src, range, check, derive, what, max)
    }

    /// [`derived`](Bytes::derived) whose measure reads `check.range` of `src` (which must hold
    /// `range`) and refuses it unless its SHA-256 is `check.sha256`: an error naming the file.
    /// Derivations after the measure are checked against the digest measured (the same bytes
    /// as the checked source gave), so the check is made once. A source in memory or derived
    /// (checked by its own reader to its end) needs none.
    pub fn derived_checked(
        src: &Bytes,
        range: Range<usize>,
        check: Option<SourceCheck>,
        derive: Box<dyn Derive>,
        what: &str,
        max: usize,
    ) -> io::Result<Bytes> {
        check_ranges(src, &range, check.as_ref())?;
        let mut d = Derived {
            src: src.clone(),
            range,
            derive,
            len: 0,
            what: what.into(),
            head: Box::default(),
            state: sha2::Sha256::default(),
            loaded: OnceLock::new(),
        };
        let mut head = Vec::new();
        let keep = d.derive.head_bytes().min(HEAD_BYTES);
        let (len, digest, state) =
            stream_derived_checked(&d.view(), check.as_ref(), None, max, &mut |c| {
                let take = (keep - head.len()).min(c.len());
                head.extend_from_slice(c.get(..take).unwrap_or_default());
                Ok(())
            })?;
        d.len = len;
        d.head = head.into_boxed_slice();
        d.state = state;
        let shared = Shared::new(d);
        let _ = shared.sha256.set(digest);
        Ok(Bytes {
            buf: Buf::Derived(shared),
            range: 0..len,
        })
    }

    /// Content derived whole by an identity recipe (see [`Derive::identity`]) from a range of a
    /// whole file kept on the device, as a file kept on the device of its own: its extents
    /// those of the range, its length, head and SHA-256 the ones the measure took (checked
    /// there, see [`SourceCheck`]). A range of it then reads the device at once, where a range
    /// of the derived content derives it again from its start (a MIME part's `write_files`
    /// block would cost a pass over the whole part). `None` for anything else. No read.
    pub fn device_view(&self) -> Option<Bytes> {
        let Data::Derived(d) = self.buf.data() else {
            return None;
        };
        let Data::Device(f) = d.src.buf.data() else {
            return None;
        };
        if !self.is_whole()
            || !d.identity()
            || d.len != d.range.len()
            || d.head.len() != d.len.min(HEAD_BYTES)
        {
            return None;
        }
        let sha256 = self.buf.digest()?;
        // The range in the file, then clipped to each extent, in file order.
        let start = (d.src.range.start + d.range.start) as u64;
        let end = start + d.len as u64;
        let mut extents = Vec::new();
        let mut at = 0u64;
        for &(off, len) in &f.extents {
            let (lo, hi) = (start.max(at), end.min(at + len));
            if lo < hi {
                extents.push((off + (lo - at), hi - lo));
            }
            at += len;
        }
        if extents.iter().map(|&(_, l)| l).sum::<u64>() != d.len as u64 {
            return None;
        }
        let shared = Shared::new(OnDevice {
            dev: Arc::clone(&f.dev),
            extents,
            len: d.len,
            name: d.name(),
            head: d.head.to_vec(),
            loaded: OnceLock::new(),
        });
        let _ = shared.sha256.set(sha256);
        Some(Bytes {
            buf: Buf::Device(shared),
            range: 0..d.len,
        })
    }

    /// What errors call the buffer: the drive file's `device: path`.
    fn name(&self) -> std::borrow::Cow<'_, str> {
        match self.buf.data() {
            Data::Mem(_) => "in memory".into(),
            Data::Device(d) => d.name.as_str().into(),
            Data::Derived(d) => d.name().into(),
        }
    }

    /// A reader over `range` of the bytes: a file on the device read extent by extent (not
    /// loaded), derived content derived again and skipped to the range (not loaded, its
    /// digest checked: see [`DerivedRange`]), anything else from its slice. Once loaded whole
    /// (or failed to), the load's outcome is used: one outcome for every user.
    fn range_reader(&self, range: Range<usize>) -> io::Result<Box<dyn io::Read + '_>> {
        if range.start > range.end || range.end > self.len() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        match self.buf.data() {
            Data::Device(d) if d.loaded.get().is_none() => Ok(Box::new(DeviceRange {
                d,
                pos: (self.range.start + range.start) as u64,
                end: (self.range.start + range.end) as u64,
            })),
            Data::Derived(d) if d.loaded.get().is_none() => {
                use sha2::Digest;
                let name = d.name();
                let src = d
                    .src
                    .range_reader(d.range.clone())
                    .map_err(|e| io::Error::new(e.kind(), format!("{name}: cannot read: {e}")))?;
                Ok(Box::new(DerivedRange {
                    inner: d.open(src),
                    name,
                    h: sha2::Sha256::new(),
                    want: self.buf.digest().map(|s| (d.len, s)),
                    pos: 0,
                    start: self.range.start + range.start,
                    end: self.range.start + range.end,
                    scratch: Vec::new(),
                    done: false,
                }))
            }
            _ => Ok(Box::new(self.try_slice()?.get(range).unwrap_or_default())),
        }
    }

    /// Whether the bytes stay on the device (not held in memory unless a caller asks for
    /// them as one slice): a file kept there, or content derived from one.
    pub fn is_on_device(&self) -> bool {
        !matches!(self.buf, Buf::Mem(_) | Buf::Headed(..)) && self.is_whole()
    }

    fn is_whole(&self) -> bool {
        self.range == (0..self.buf.len())
    }

    /// Length, without reading a file on the device.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The bytes as one slice; empty when a file on the device cannot be read again or changed
    /// since it was hashed (logged, naming the file). A caller that must not take such a file as
    /// empty uses [`try_slice`](Bytes::try_slice); streaming and writing return the error.
    pub fn as_slice(&self) -> &[u8] {
        self.try_slice().unwrap_or_default()
    }

    /// The bytes as one slice, or the error (naming the file) when a file on the device cannot
    /// be read again or changed since it was hashed (see [`as_slice`](Bytes::as_slice)).
    pub fn try_slice(&self) -> io::Result<&[u8]> {
        // The range is only ever built inside the buffer's bounds (see `slice_ref`).
        Ok(self
            .buf
            .try_slice()?
            .get(self.range.clone())
            .unwrap_or_default())
    }

    /// At most the first `n` bytes (what a parser looks at to tell a script from a
    /// cloud-config). A file on the device gives at most its first [`HEAD_BYTES`], kept while
    /// it was hashed: no read, and what the caller classifies is what the digest covers (a
    /// device returning other bytes on a later read cannot make a hashed cloud-config look like
    /// a script). The error of a failed whole load (see [`try_slice`](Bytes::try_slice)).
    pub fn head(&self, n: usize) -> io::Result<std::borrow::Cow<'_, [u8]>> {
        match (self.buf.data(), self.is_whole()) {
            (Data::Device(d), true) => {
                if let Some(Err(e)) = d.loaded.get().map(|l| &**l) {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
                }
                Ok(d.head.get(..n).unwrap_or(&d.head).into())
            }
            (Data::Derived(d), true) => {
                if let Some(Err(e)) = d.loaded.get().map(|l| &**l) {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
                }
                if n <= d.head.len() || d.head.len() == d.len {
                    return Ok(d.head.get(..n).unwrap_or(d.head).into());
                }
                // More than the recipe kept (see `Derive::head_bytes`): derived again up to
                // there (and checked to the content's end).
                let mut out = Vec::with_capacity(n.min(d.len));
                self.range_reader(0..n.min(d.len))?.read_to_end(&mut out)?;
                Ok(out.into())
            }
            (Data::Derived(d), false) if d.loaded.get().is_none() => {
                let want = self.range.start..self.range.start + n.min(self.len());
                // Inside the head kept while hashing: no read.
                if let Some(h) = d.head.get(want.clone()) {
                    return Ok(h.to_vec().into());
                }
                // Else derived again up to the head's end (and checked to the content's end).
                let mut out = Vec::with_capacity(want.len());
                let mut r = self.range_reader(0..want.len())?;
                r.read_to_end(&mut out)?;
                Ok(out.into())
            }
            _ => {
                let all = self.try_slice()?;
                Ok(all.get(..n).unwrap_or(all).into())
            }
        }
    }

    /// Hands the bytes to `f` in order: a file on the device streamed in [`STREAM_CHUNK`]
    /// pieces with its digest checked at the end (an error naming the file when the device
    /// changed or failed; `f` has seen bytes by then, so a caller drops what it kept), else one
    /// slice (the load's error when the file was read whole and that failed).
    pub fn for_each_chunk(&self, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        if let (Buf::Headed(h, i), true) = (&self.buf, self.is_whole()) {
            // Its two pieces, never joined and kept.
            f(h.head)?;
            return f(h.body(*i));
        }
        match self.buf.data() {
            // Once loaded whole (or failed to), the load's outcome is used: one outcome for all.
            Data::Device(d) if self.is_whole() && d.loaded.get().is_none() => {
                stream_device(d, self.buf.digest(), f).map(|_| ())
            }
            Data::Derived(d) if self.is_whole() && d.loaded.get().is_none() => {
                let want = self.buf.digest().map(|s| (d.len, s));
                stream_derived(&d, want, d.len, f).map(|_| ())
            }
            // A part of derived content: derived again, skipped to the part, never loaded.
            Data::Derived(d) if d.loaded.get().is_none() => {
                let mut r = self.range_reader(0..self.len())?;
                let mut buf = vec![0u8; STREAM_CHUNK.min(d.len.max(1))];
                loop {
                    // The reader's errors name the file already.
                    match read_retry(&mut r, &mut buf)? {
                        0 => return Ok(()),
                        n => f(buf.get(..n).unwrap_or_default())?,
                    }
                }
            }
            _ => f(self.try_slice()?),
        }
    }

    /// Writes the bytes to `out` (see [`for_each_chunk`](Bytes::for_each_chunk)): a file on
    /// the device never held whole, its digest re-checked while streaming.
    pub fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
        self.for_each_chunk(&mut |c| out.write_all(c))
    }

    /// `sub` as a `Bytes` sharing this buffer, when `sub` lies inside it (a MIME part of a
    /// user-data blob, a script that is the whole blob); `None` when it is memory elsewhere.
    /// Compares addresses only: no bytes are read. A buffer on the device or derived that is
    /// not loaded cannot hold `sub` (memory it never had), so it is not loaded to find out
    /// (a 30 MiB kept user data would be read whole for every shared script).
    pub fn slice_ref(&self, sub: &[u8]) -> Option<Bytes> {
        let loaded = match &self.buf {
            Buf::Mem(_) => true,
            Buf::Device(s) => s.data.loaded.get().is_some_and(|l| l.is_ok()),
            Buf::Derived(s) => s.data.loaded.get().is_some_and(|l| l.is_ok()),
            Buf::Member(g, i) => g
                .member(*i)
                .is_some_and(|m| m.loaded.get().is_some_and(|l| l.is_ok())),
            // Never joined for this: not memory a caller could hold a part of.
            Buf::Headed(..) => false,
        };
        if !loaded {
            return None;
        }
        let whole = self.as_slice();
        let base = whole.as_ptr() as usize;
        let at = (sub.as_ptr() as usize).checked_sub(base)?;
        let end = at.checked_add(sub.len())?;
        if end > whole.len() {
            return None;
        }
        let start = self.range.start + at;
        Some(Bytes {
            buf: self.buf.clone(),
            range: start..start + sub.len(),
        })
    }

    /// SHA-256 of the bytes. For a whole buffer it is computed once, whoever asks (every clone
    /// shares it; a file on the device has it from its read); a part of a buffer is hashed on
    /// each call.
    pub fn sha256(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        match (self.buf.cell(), self.is_whole()) {
            (Some(c), true) => *c.get_or_init(|| Sha256::digest(self.as_slice()).into()),
            // A member's digest, made from the state it keeps.
            (None, true) => self.buf.digest().unwrap_or_default(),
            _ => Sha256::digest(self.as_slice()).into(),
        }
    }

    /// SHA-256 of the bytes followed by `tail` (a record's input digest). Derived content uses
    /// the hash state kept when it was measured (not read again: what is written is checked
    /// against that same digest); other bytes are streamed into the hasher, never joined.
    pub fn sha256_then(&self, tail: &[u8]) -> io::Result<[u8; 32]> {
        use sha2::{Digest, Sha256};
        // (A headed text is streamed below: `data` would join it.)
        if !matches!(self.buf, Buf::Headed(..)) {
            if let (Data::Derived(d), true) = (self.buf.data(), self.is_whole()) {
                let mut h = d.state();
                h.update(tail);
                return Ok(h.finalize().into());
            }
        }
        let mut h = Sha256::new();
        self.for_each_chunk(&mut |c| {
            h.update(c);
            Ok(())
        })?;
        h.update(tail);
        Ok(h.finalize().into())
    }

    /// Texts that each start with `head`, the rest of text `i` the part of `body` from the end
    /// of the one before (0 for the first) to `ends[i]`: one [`Bytes`] each, sharing one
    /// allocation (see [`HeadedSet`]). An end past the body or before the one before gives
    /// that text no body of its own.
    pub fn headed(head: &'static [u8], body: Vec<u8>, ends: Vec<usize>) -> Vec<Bytes> {
        let n = ends.len();
        let mut last = 0;
        let ends: Box<[usize]> = ends
            .into_iter()
            .map(|e| {
                last = e.clamp(last, body.len());
                last
            })
            .collect();
        let set = Arc::new(HeadedSet {
            head,
            body: body.into_boxed_slice(),
            ends,
            whole: OnceLock::new(),
        });
        (0..n)
            .filter_map(|i| u32::try_from(i).ok())
            .map(|i| Bytes {
                range: 0..set.len(i),
                buf: Buf::Headed(Arc::clone(&set), i),
            })
            .collect()
    }

    /// Whether the bytes are `other`'s: a headed text compared piece by piece (not joined),
    /// anything else as [`as_slice`](Bytes::as_slice) gives it.
    pub fn equals(&self, other: &[u8]) -> bool {
        match (&self.buf, self.is_whole()) {
            (Buf::Headed(h, i), true) => {
                let body = h.body(*i);
                other.len() == h.head.len() + body.len()
                    && other.starts_with(h.head)
                    && other.ends_with(body)
            }
            _ => self.as_slice() == other,
        }
    }

    /// Whether `self` and `other` are parts of one shared buffer (no byte read).
    pub fn shares(&self, other: &Bytes) -> bool {
        match (&self.buf, &other.buf) {
            (Buf::Headed(a, _), Buf::Headed(b, _)) => Arc::ptr_eq(a, b),
            (Buf::Member(a, _), Buf::Member(b, _)) => Arc::ptr_eq(a, b),
            (a, b) => a.ptr_eq(b),
        }
    }

    /// Whether `self` and `other` are the same bytes of the same buffer (no byte read).
    pub fn same(&self, other: &Bytes) -> bool {
        self.buf.ptr_eq(&other.buf) && self.range == other.range
    }
}

/// Content the writer puts into a staged file: a slice written at once, a [`Bytes`] on the
/// device streamed (never held whole) with its digest re-checked.
pub trait WriteOut {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()>;
}

impl WriteOut for [u8] {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(self)
    }
}

impl<const N: usize> WriteOut for [u8; N] {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(self)
    }
}

impl WriteOut for str {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(self.as_bytes())
    }
}

impl WriteOut for String {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(self.as_bytes())
    }
}

impl WriteOut for Vec<u8> {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(self)
    }
}

impl WriteOut for Bytes {
    fn write_out(&self, out: &mut dyn io::Write) -> io::Result<()> {
        self.write_to(out)
    }
}

impl From<Vec<u8>> for Bytes {
    /// Takes the vector as the buffer: no copy.
    fn from(data: Vec<u8>) -> Self {
        let range = 0..data.len();
        Bytes {
            buf: Buf::Mem(Shared::new(data.into_boxed_slice())),
            range,
        }
    }
}

impl From<&[u8]> for Bytes {
    fn from(data: &[u8]) -> Self {
        data.to_vec().into()
    }
}

impl From<String> for Bytes {
    fn from(s: String) -> Self {
        s.into_bytes().into()
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Self {
        s.as_bytes().into()
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        // Two whole buffers with digests compare by digest: a file on the device is not read.
        self.same(other)
            || (self.len() == other.len()
                && if self.is_on_device() || other.is_on_device() {
                    self.sha256() == other.sha256()
                } else {
                    self.as_slice() == other.as_slice()
                })
    }
}

impl Eq for Bytes {}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for Bytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<&[u8]> for Bytes {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Bytes {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Bytes {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<Bytes> for Vec<u8> {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Bytes {
    /// A size only: drive bytes may be secrets or megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts with one head: each reads, hashes, writes and compares as its head and body
    /// joined, and none is joined (held twice) for that; only `as_slice` joins, once.
    #[test]
    fn headed_texts_are_their_head_and_body() {
        let head: &'static [u8] = b"# head\n";
        let big = "z".repeat(10_000);
        let bodies = ["a\n", "", "bc\n", big.as_str()];
        let mut body = Vec::new();
        let mut ends = Vec::new();
        for b in bodies {
            body.extend_from_slice(b.as_bytes());
            ends.push(body.len());
        }
        let texts = Bytes::headed(head, body, ends);
        assert_eq!(texts.len(), bodies.len());
        for (t, b) in texts.iter().zip(bodies) {
            let want = [head, b.as_bytes()].concat();
            assert_eq!(t.len(), want.len());
            assert!(t.equals(&want));
            assert!(!t.equals(&want[1..]) && !t.equals(b"# head\nxx"));
            assert_eq!(t.sha256(), Bytes::from(want.clone()).sha256());
            assert_eq!(
                t.sha256_then(b"t").unwrap(),
                Bytes::from(want.clone()).sha256_then(b"t").unwrap()
            );
            let mut out = Vec::new();
            t.write_to(&mut out).unwrap();
            assert_eq!(out, want);
            assert!(!t.is_on_device());
            assert!(t.shares(&texts[0]) && t.same(&t.clone()));
        }
        let Buf::Headed(set, _) = &texts[0].buf else {
            panic!("not headed")
        };
        assert!(
            set.whole.get().is_none(),
            "joined to write, hash or compare"
        );
        assert_eq!(texts[2].as_slice(), b"# head\nbc\n");
        assert!(set.whole.get().is_some());
        assert_eq!(texts[2], Bytes::from(&b"# head\nbc\n"[..]));
        // Ends out of order or past the body: no body, never a panic.
        let odd = Bytes::headed(head, b"xyz".to_vec(), vec![2, 1, 9]);
        let got: Vec<Vec<u8>> = odd.iter().map(|t| t.as_slice().to_vec()).collect();
        assert_eq!(
            got,
            [
                b"# head\nxy".to_vec(),
                b"# head\n".to_vec(),
                b"# head\nz".to_vec()
            ]
        );
    }

    #[test]
    fn slices_share_the_buffer_and_compare_as_bytes() {
        let whole = Bytes::from(b"#!/bin/sh\necho hi\n".to_vec());
        let part = whole.slice_ref(&whole[10..]).unwrap();
        assert_eq!(part.as_slice(), b"echo hi\n");
        assert!(whole.buf.ptr_eq(&part.buf));
        // A slice of a slice stays inside the buffer.
        let word = part.slice_ref(&part[5..7]).unwrap();
        assert_eq!(word.as_slice(), b"hi");
        // Memory elsewhere, or reaching past the end, is not a slice of it.
        let other = b"echo hi\n".to_vec();
        assert!(whole.slice_ref(&other).is_none());
        assert!(part.slice_ref(&whole[..4]).is_none());
        assert_eq!(part, Bytes::from("echo hi\n"));
        assert_eq!(format!("{part:?}"), "<8 bytes>");
    }

    use super::MemDevice as Mem;

    #[test]
    fn a_file_on_the_device_streams_checks_its_digest_and_is_never_held() {
        use sha2::{Digest, Sha256};
        // Two extents, the second before the first on the device, crossing chunk boundaries.
        let dev_bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(dev_bytes.clone())));
        let extents = vec![(200_000u64, 70_000u64), (1_000, 100_000)];
        let mut want = dev_bytes[200_000..270_000].to_vec();
        want.extend_from_slice(&dev_bytes[1_000..101_000]);
        let b =
            Bytes::on_device(dev.clone(), extents.clone(), want.len(), "dev: f".into()).unwrap();
        assert!(b.is_on_device());
        assert_eq!(b.len(), want.len());
        assert_eq!(b.sha256(), <[u8; 32]>::from(Sha256::digest(&want)));
        assert_eq!(&*b.head(10).unwrap(), &want[..10]);
        // No more than the head kept while hashing.
        assert_eq!(&*b.head(80_000).unwrap(), &want[..HEAD_BYTES]);
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert!(out == want);
        assert_eq!(b, Bytes::from(want.clone()), "compares by digest");
        if let Data::Device(d) = b.buf.data() {
            assert!(d.loaded.get().is_none(), "streaming held nothing whole");
        }
        // Same length, one byte changed on the device: the write fails naming the file.
        dev.0.lock().unwrap()[250_000] ^= 1;
        let e = b.write_to(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("dev: f") && e.to_string().contains("changed"));
        // A length that lies (past the device) fails at once.
        let e = Bytes::on_device(dev, vec![(290_000, 20_000)], 20_000, "dev: g".into());
        assert!(e.is_err());
    }

    /// A device whose reads fail once `fail` is set (a transient read error).
    struct Flaky {
        mem: Mem,
        fail: std::sync::atomic::AtomicBool,
    }

    impl ReadAt for Flaky {
        fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::other("medium error"));
            }
            self.mem.read_exact_at(at, buf)
        }
    }

    #[test]
    fn a_failed_whole_load_is_an_error_everywhere_never_empty_bytes() {
        // Changed on the device after hashing: loading it whole fails, naming the file.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        let b =
            Bytes::on_device(dev.clone(), vec![(0, 100_000)], 100_000, "dev: ud".into()).unwrap();
        dev.0.lock().unwrap()[70_000] ^= 1;
        let e = b.try_slice().unwrap_err();
        assert!(e.to_string().contains("dev: ud") && e.to_string().contains("changed"));
        assert!(b.as_slice().is_empty());
        // The device back as it was: the failed load stays the outcome (one for every user),
        // and streaming, writing and the head give its error, never empty bytes.
        dev.0.lock().unwrap()[70_000] ^= 1;
        let mut out = Vec::new();
        let e = b.write_to(&mut out).unwrap_err();
        assert!(e.to_string().contains("dev: ud"), "{e}");
        assert!(out.is_empty());
        let e = b.write_out(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("dev: ud"), "{e}");
        assert!(b.for_each_chunk(&mut |_| Ok(())).is_err());
        assert!(b.head(10).unwrap_err().to_string().contains("dev: ud"));

        // A read error on the second read (the first one hashed it).
        let dev = Arc::new(Flaky {
            mem: Mem(std::sync::Mutex::new(data.clone())),
            fail: false.into(),
        });
        let b =
            Bytes::on_device(dev.clone(), vec![(0, 100_000)], 100_000, "dev: ud2".into()).unwrap();
        dev.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = b.try_slice().unwrap_err();
        assert!(e.to_string().contains("dev: ud2") && e.to_string().contains("medium error"));
        dev.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let e = b.write_to(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("dev: ud2"), "{e}");
        // A part of the buffer (a MIME part) fails too.
        let part = Bytes {
            buf: b.buf.clone(),
            range: 10..20,
        };
        assert!(part.try_slice().is_err());
        assert!(part.write_to(&mut Vec::new()).is_err());

        // A load that worked is used by every later caller, as loaded.
        let b = Bytes::on_device(dev, vec![(0, 100_000)], 100_000, "dev: ud3".into()).unwrap();
        assert!(b.try_slice().unwrap() == &data[..]);
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert!(out == data);
    }

    #[test]
    fn the_head_is_what_was_hashed_across_empty_extents() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        // Zero-length extents (which the reader allows) before and between the data: the head
        // is not cut short at them.
        let extents = vec![(0u64, 0u64), (100, 1_000), (5_000, 0), (2_000, 5_000)];
        let mut want = data[100..1_100].to_vec();
        want.extend_from_slice(&data[2_000..7_000]);
        let b = Bytes::on_device(dev.clone(), extents, want.len(), "dev: h".into()).unwrap();
        assert_eq!(&*b.head(HEAD_BYTES).unwrap(), &want[..HEAD_BYTES]);
        assert_eq!(&*b.head(10).unwrap(), &want[..10]);
        // The device now returns other bytes: the head is still the hashed one (no read), and
        // the whole file, read again, is refused.
        dev.0.lock().unwrap()[100..110].copy_from_slice(b"#!/bin/sh\n");
        assert_eq!(&*b.head(HEAD_BYTES).unwrap(), &want[..HEAD_BYTES]);
        assert!(b.write_to(&mut Vec::new()).is_err());
        // A file shorter than the head is kept whole.
        let b = Bytes::on_device(dev, vec![(0, 0), (7, 30)], 30, "dev: s".into()).unwrap();
        assert_eq!(&*b.head(HEAD_BYTES).unwrap(), &data[7..37]);
    }

    /// Upper-cases its source: the smallest recipe.
    struct Upper;

    impl Derive for Upper {
        fn open<'a>(&'a self, src: Box<dyn io::Read + 'a>) -> Box<dyn io::Read + 'a> {
            struct R<'a>(Box<dyn io::Read + 'a>);
            impl io::Read for R<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let n = self.0.read(buf)?;
                    buf[..n].make_ascii_uppercase();
                    Ok(n)
                }
            }
            Box::new(R(src))
        }
    }

    /// [`Upper`] keeping no head, as a carved `write_files` value does.
    struct UpperNoHead;

    impl Derive for UpperNoHead {
        fn open<'a>(&'a self, src: Box<dyn io::Read + 'a>) -> Box<dyn io::Read + 'a> {
            Upper.open(src)
        }

        fn head_bytes(&self) -> usize {
            0
        }
    }

    #[test]
    fn a_recipe_keeping_no_head_derives_the_head_asked_for() {
        let data: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        let src =
            Bytes::on_device(dev.clone(), vec![(0, 20_000)], 20_000, "dev: f".into()).unwrap();
        let b = Bytes::derived(&src, 10..15_010, Box::new(UpperNoHead), "v", 1 << 20).unwrap();
        if let Data::Derived(d) = b.buf.data() {
            assert!(d.head.is_empty(), "no head kept");
        }
        let want = data[10..15_010].to_ascii_uppercase();
        assert_eq!(&*b.head(0).unwrap(), b"");
        assert_eq!(&*b.head(100).unwrap(), &want[..100]);
        assert_eq!(&*b.head(HEAD_BYTES).unwrap(), &want[..HEAD_BYTES]);
        assert_eq!(&*b.head(1 << 20).unwrap(), &want[..]);
        // A changed source byte past the head is still caught (the pass reads to the end).
        dev.0.lock().unwrap()[14_000] ^= 1;
        assert!(b.head(100).is_err());
    }

    /// A set's recipe function for the tests: kind 1 upper-cases, any other gives the source.
    /// `e` says the device changed under the content named `what` of the file `dev: ud`.
    fn assert_change_named(e: &str, what: &str) {
        assert!(
            e.contains(&format!("dev: ud ({what})")) && e.contains("changed"),
            "{e}"
        );
    }

    fn open_test<'a>(kind: u8, src: Box<dyn io::Read + 'a>) -> Box<dyn io::Read + 'a> {
        match kind {
            1 => Upper.open(src),
            _ => src,
        }
    }

    /// The source's bytes as a set's member does them.
    struct Same;

    impl Derive for Same {
        fn open<'a>(&'a self, src: Box<dyn io::Read + 'a>) -> Box<dyn io::Read + 'a> {
            src
        }
    }

    #[test]
    fn a_set_member_is_what_the_same_recipe_alone_gives_without_an_allocation_of_its_own() {
        use sha2::{Digest, Sha256};
        // What a member holds (range, length, hash state, arena place, kind, load cell): no
        // boxed recipe, name or head of its own (a `Derived` in its `Arc` was ~290 B, plus
        // its boxed recipe and name).
        assert!(
            std::mem::size_of::<OnceLock<Member>>() <= 96,
            "{}",
            std::mem::size_of::<OnceLock<Member>>()
        );
        assert_eq!(std::mem::size_of::<Bytes>(), 32);
        let data: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        let src =
            Bytes::on_device(dev.clone(), vec![(0, 300_000)], 300_000, "dev: ud".into()).unwrap();
        let set = DerivedSet::new(&src, open_test, 9);
        let ranges = [0..0, 5..69, 100..163, 1_000..151_001, 0..300_000];
        for (i, r) in ranges.iter().enumerate() {
            for kind in [0u8, 1] {
                let slot = i * 2 + usize::from(kind);
                if slot >= 8 {
                    continue;
                }
                let what = format!("write_files[{slot}].content");
                let alone: Box<dyn Derive> = if kind == 1 {
                    Box::new(Upper)
                } else {
                    Box::new(Same)
                };
                let a = Bytes::derived(&src, r.clone(), alone, &what, 1 << 20).unwrap();
                let m = set
                    .derive(slot, r.clone(), None, kind, &what, 1 << 20)
                    .unwrap();
                assert!(m.is_on_device() && m.head(0).unwrap().is_empty());
                assert_eq!(m.len(), a.len(), "{r:?}");
                assert_eq!(m.sha256(), a.sha256(), "{r:?}");
                assert_eq!(m, a);
                assert_eq!(
                    m.sha256_then(b"0644\n").unwrap(),
                    a.sha256_then(b"0644\n").unwrap()
                );
                let mut out = Vec::new();
                m.write_to(&mut out).unwrap();
                let want = a.try_slice().unwrap();
                assert!(out == want, "{r:?}");
                assert_eq!(&*m.head(100).unwrap(), &want[..want.len().min(100)]);
                if let Data::Derived(d) = m.buf.data() {
                    assert!(d.loaded.get().is_none(), "streaming held nothing whole");
                    assert_eq!(d.name(), format!("dev: ud ({what})"));
                }
                assert!(m.try_slice().unwrap() == want);
                assert!(m.same(&m.clone()) && (m.is_empty() || !m.same(&a)));
                // A slot is set once.
                let e = set.derive(slot, r.clone(), None, kind, &what, 1 << 20);
                assert!(e.is_err());
            }
        }
        // Out of the set, out of the source, over `max`: refused.
        assert!(set.derive(9, 0..1, None, 0, "x", 10).is_err());
        assert!(set.derive(8, 0..300_001, None, 0, "x", 1 << 20).is_err());
        assert!(set.derive(8, 0..1_000, None, 0, "x", 999).is_err());
        // The measure's check: a source changed since the pass is refused, naming the entry.
        let check = SourceCheck {
            range: 10..2_000,
            sha256: Sha256::digest(&data[10..2_000]).into(),
        };
        dev.0.lock().unwrap()[1_500] ^= 1;
        let e = set
            .derive(
                8,
                20..1_990,
                Some(check.clone()),
                1,
                "write_files[8].content",
                1 << 20,
            )
            .unwrap_err()
            .to_string();
        assert_change_named(&e, "write_files[8].content");
        dev.0.lock().unwrap()[1_500] ^= 1;
        let m = set
            .derive(
                8,
                20..1_990,
                Some(check),
                1,
                "write_files[8].content",
                1 << 20,
            )
            .unwrap();
        // Changed after the measure: its write fails, naming the file and entry.
        dev.0.lock().unwrap()[1_500] ^= 1;
        let e = m.write_to(&mut Vec::new()).unwrap_err().to_string();
        assert_change_named(&e, "write_files[8].content");
    }

    #[test]
    fn ten_thousand_members_share_one_allocation() {
        let data = vec![b'q'; 700_000];
        let dev = Arc::new(Mem(std::sync::Mutex::new(data)));
        let src = Bytes::on_device(dev, vec![(0, 700_000)], 700_000, "dev: ud".into()).unwrap();
        let set = DerivedSet::new(&src, open_test, 10_000);
        let all: Vec<Bytes> = (0..10_000)
            .map(|i| {
                let what = format!("write_files[{i}].content");
                set.derive(i, i * 70..i * 70 + 65, None, 1, &what, 100)
                    .unwrap()
            })
            .collect();
        set.shrink();
        // One group, referenced by the set and each member: no allocation per member.
        assert_eq!(Arc::strong_count(&set.0), 10_001);
        let arena = set.0.arena.lock().unwrap().len();
        // Each: its partial block (1 byte of 65) and its name, nothing more.
        assert_eq!(
            arena,
            (0..10_000)
                .map(|i| 1 + format!("write_files[{i}].content").len())
                .sum::<usize>()
        );
        assert!(all
            .iter()
            .all(|b| b.len() == 65 && b.sha256() == all[0].sha256()));
    }

    #[test]
    fn derived_content_is_measured_once_streamed_again_and_never_held() {
        use sha2::{Digest, Sha256};
        let data: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        // The source in two extents; the range crosses them.
        let src = Bytes::on_device(
            dev.clone(),
            vec![(150_000, 150_000), (0, 150_000)],
            300_000,
            "dev: ud".into(),
        )
        .unwrap();
        let mut want = data[150_000..].to_vec();
        want.extend_from_slice(&data[..150_000]);
        let want = want[100_000..250_000].to_ascii_uppercase();
        let b = Bytes::derived(&src, 100_000..250_000, Box::new(Upper), "block", 1 << 20).unwrap();
        assert!(b.is_on_device());
        assert_eq!(b.len(), want.len());
        assert_eq!(b.sha256(), <[u8; 32]>::from(Sha256::digest(&want)));
        assert_eq!(&*b.head(10).unwrap(), &want[..10]);
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert!(out == want);
        if let Data::Derived(d) = b.buf.data() {
            assert!(d.loaded.get().is_none(), "streaming held nothing whole");
        }
        assert!(b.try_slice().unwrap() == &want[..]);
        let mut joined = want.clone();
        joined.extend_from_slice(b"tail");
        let d: [u8; 32] = Sha256::digest(&joined).into();
        assert_eq!(b.sha256_then(b"tail").unwrap(), d);
        assert_eq!(Bytes::from(want.clone()).sha256_then(b"tail").unwrap(), d);
        // More than `max`: refused at once.
        assert!(Bytes::derived(&src, 0..1000, Box::new(Upper), "block", 999).is_err());
        // A byte of the range changed on the device: the stream fails, naming file and block.
        let b = Bytes::derived(&src, 100_000..250_000, Box::new(Upper), "block", 1 << 20).unwrap();
        dev.0.lock().unwrap()[10_000] ^= 1;
        let e = b.write_to(&mut Vec::new()).unwrap_err().to_string();
        assert_change_named(&e, "block");
    }

    #[test]
    fn parts_of_derived_content_stream_as_slices_of_the_whole_never_loaded() {
        let data: Vec<u8> = (0..400_000u32).map(|i| b'a' + (i % 23) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        let src =
            Bytes::on_device(dev.clone(), vec![(0, 400_000)], 400_000, "dev: ud".into()).unwrap();
        let b = Bytes::derived(&src, 1_000..391_000, Box::new(Upper), "gunzip", 1 << 20).unwrap();
        let whole = data[1_000..391_000].to_ascii_uppercase();
        let part = |r: Range<usize>| Bytes {
            buf: b.buf.clone(),
            range: r,
        };
        let not_loaded = || match b.buf.data() {
            Data::Derived(d) => d.loaded.get().is_none(),
            _ => false,
        };
        // Empty, inside the head, across it, across chunks, to the end.
        for r in [
            0..0,
            0..10,
            100..HEAD_BYTES,
            4_000..5_000,
            70_000..200_001,
            300_000..390_000,
            389_999..390_000,
        ] {
            let p = part(r.clone());
            let mut out = Vec::new();
            p.for_each_chunk(&mut |c| {
                out.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
            assert!(out == whole[r.clone()], "for_each_chunk {r:?}");
            let mut out = Vec::new();
            p.write_to(&mut out).unwrap();
            assert!(out == whole[r.clone()], "write_to {r:?}");
            let mut out = Vec::new();
            b.range_reader(r.clone())
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == whole[r.clone()], "range_reader {r:?}");
            let h = p.head(100).unwrap();
            assert_eq!(&*h, &whole[r.start..r.end.min(r.start + 100)], "head {r:?}");
            assert!(not_loaded(), "{r:?} loaded the whole");
        }
        // Content derived from a part of derived content (a carved block of a gzip'd
        // cloud-config): the slice of the slice, streamed, measured, never loaded.
        let inner = Bytes::derived(&b, 50_000..250_000, Box::new(Upper), "block", 1 << 20).unwrap();
        let mut out = Vec::new();
        inner.write_to(&mut out).unwrap();
        assert!(out == whole[50_000..250_000]);
        assert!(not_loaded());
        // Out of bounds: refused.
        assert!(b.range_reader(10..390_001).is_err());
        // A byte changed on the device, outside the part: the part's read still fails, naming
        // the file (the whole content is checked against its digest), and so does the block.
        dev.0.lock().unwrap()[380_000] ^= 1;
        let e = part(0..10)
            .write_to(&mut Vec::new())
            .unwrap_err()
            .to_string();
        assert_change_named(&e, "gunzip");
        let e = inner.write_to(&mut Vec::new()).unwrap_err().to_string();
        assert_change_named(&e, "gunzip");
        // Inside the kept head: no read, so the head is what was hashed.
        assert_eq!(&*part(5..15).head(10).unwrap(), &whole[5..15]);
        // A device shorter now: an error, never short bytes.
        dev.0.lock().unwrap().truncate(200_000);
        assert!(part(300_000..300_010).write_to(&mut Vec::new()).is_err());
    }

    #[test]
    fn the_measure_checks_its_source_against_the_digest_taken_when_it_was_read() {
        use sha2::{Digest, Sha256};
        let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        let src =
            Bytes::on_device(dev.clone(), vec![(0, 100_000)], 100_000, "dev: ud".into()).unwrap();
        // The file derived whole: checked against the file's digest, as it was.
        let whole = Bytes::derived(&src, 0..100_000, Box::new(Upper), "gunzip", 1 << 20).unwrap();
        assert_eq!(whole.len(), 100_000);
        // A part inside a checked range (a MIME body inside its part).
        let check = SourceCheck {
            range: 1_000..60_000,
            sha256: Sha256::digest(&data[1_000..60_000]).into(),
        };
        let part = |c: Option<SourceCheck>| {
            Bytes::derived_checked(&src, 2_000..50_000, c, Box::new(Upper), "part 1", 1 << 20)
        };
        let p = part(Some(check.clone())).unwrap();
        assert!(p.try_slice().unwrap() == &data[2_000..50_000].to_ascii_uppercase()[..]);
        // A check range not holding the derived range: refused.
        let bad = SourceCheck {
            range: 3_000..60_000,
            ..check.clone()
        };
        assert!(part(Some(bad)).is_err());
        // The device changed after the file was hashed, inside the range, before it, after
        // it: the measure fails naming the file; the whole file too.
        for at in [10_000, 1_500, 55_000] {
            dev.0.lock().unwrap()[at] ^= 1;
            let e = part(Some(check.clone())).unwrap_err().to_string();
            assert_change_named(&e, "part 1");
            let e = Bytes::derived(&src, 0..100_000, Box::new(Upper), "gunzip", 1 << 20)
                .unwrap_err()
                .to_string();
            assert_change_named(&e, "gunzip");
            dev.0.lock().unwrap()[at] ^= 1;
        }
        // Unchecked, a part measures whatever the device returns (what the check is for).
        dev.0.lock().unwrap()[10_000] ^= 1;
        assert!(part(None).is_ok());
    }

    #[test]
    fn slice_ref_never_loads_a_kept_buffer() {
        let data = vec![b'x'; 100_000];
        let dev = Arc::new(Mem(std::sync::Mutex::new(data.clone())));
        let src = Bytes::on_device(dev, vec![(0, 100_000)], 100_000, "dev: ud".into()).unwrap();
        let d = Bytes::derived(&src, 0..100_000, Box::new(Upper), "gunzip", 1 << 20).unwrap();
        let other = vec![b'x'; 10];
        assert!(src.slice_ref(&other).is_none());
        assert!(d.slice_ref(&other).is_none());
        if let Data::Device(d) = src.buf.data() {
            assert!(d.loaded.get().is_none(), "slice_ref loaded the file");
        }
        if let Data::Derived(d) = d.buf.data() {
            assert!(d.loaded.get().is_none(), "slice_ref loaded the content");
        }
        // Once loaded, a slice of the load is a slice of the buffer.
        let all = src.try_slice().unwrap();
        assert!(src.slice_ref(&all[10..20]).is_some());
    }

    #[test]
    fn the_digest_is_computed_once_and_right() {
        use sha2::{Digest, Sha256};
        let b = Bytes::from(vec![7u8; 100_000]);
        let want: [u8; 32] = Sha256::digest(vec![7u8; 100_000]).into();
        assert_eq!(b.sha256(), want);
        assert!(b.clone().buf.digest().is_some());
        let part = b.slice_ref(&b[1..]).unwrap();
        assert_eq!(part.sha256(), <[u8; 32]>::from(Sha256::digest(&b[1..])));
    }
}
