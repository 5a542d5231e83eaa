//! make-drive: builds a config drive primer (and cloud-init, nova's guests) can read, from a
//! description or a directory: the format's file tree (`tree`), an ISO9660 image (`iso`), and
//! the containers around it (`container`: Ironic's packed form, a trailing partition). Checks the
//! description with primer's own parsers before a byte is written. Never reads the host's state
//! and never writes anywhere but the output it is given.

pub mod container;
pub mod desc;
pub mod fat;
pub mod iso;
pub mod tree;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use desc::Description;

/// Why a drive could not be made. Every variant names the field, file or output it is about.
#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    /// The description is wrong: `field` is its dotted path (`public_keys[1]`, `network`).
    #[error("{file}: {field}: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
    /// The description file could not be parsed at all.
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// The drive tree would not read back as described through primer's own parsers.
    #[error("the {format} drive would not read back as described: {message}")]
    ReadBack { format: String, message: String },
    /// A limit of the filesystem (name length, depth, file size, label).
    #[error("{path}: {message}")]
    Limit { path: String, message: String },
    /// Reading an input or writing the output failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The disk image given to `--into` cannot take the partition.
    #[error("{path}: {message}")]
    Disk { path: String, message: String },
}

impl MakeError {
    pub(crate) fn field(file: &str, field: &str, message: impl Into<String>) -> MakeError {
        MakeError::Field {
            file: file.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> MakeError {
        MakeError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The drive formats make-drive writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveFormat {
    /// The tree nova writes: `openstack/<version>/...` for every known version plus `latest`.
    OpenStack,
    /// CloudStack's `cloudstack/` tree plus `openstack/latest/`.
    CloudStack,
    /// A NoCloud seed: `meta-data`, `user-data`, `vendor-data`, `network-config`.
    NoCloud,
    /// An OVF environment: `ovf-env.xml`.
    Ovf,
}

impl DriveFormat {
    pub fn name(self) -> &'static str {
        match self {
            DriveFormat::OpenStack => "openstack",
            DriveFormat::CloudStack => "cloudstack",
            DriveFormat::NoCloud => "nocloud",
            DriveFormat::Ovf => "ovf",
        }
    }

    /// The volume label readers look for (FORMATS.md): nova's `config-2`; cloud-init's NoCloud
    /// `cidata`; VMware's `OVF ENV` for the OVF transport. FAT labels are upper case (Ironic
    /// writes `CONFIG-2`), ISO9660 labels as the producers write them.
    pub fn label(self, fs: Filesystem) -> &'static str {
        match (self, fs) {
            (DriveFormat::OpenStack | DriveFormat::CloudStack, Filesystem::Iso9660) => "config-2",
            (DriveFormat::OpenStack | DriveFormat::CloudStack, Filesystem::Vfat) => "CONFIG-2",
            (DriveFormat::NoCloud, Filesystem::Iso9660) => "cidata",
            (DriveFormat::NoCloud, Filesystem::Vfat) => "CIDATA",
            (DriveFormat::Ovf, _) => "OVF ENV",
        }
    }
}

/// The filesystem of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    Iso9660,
    Vfat,
}

/// Where a file's bytes come from: built in memory (metadata, small inline values) or an input
/// file streamed at write time, so memory stays bounded by the largest in-memory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// An input file and the size it had when the tree was built (checked again when copied).
    File {
        path: PathBuf,
        size: u64,
    },
}

impl Content {
    pub fn size(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File { size, .. } => *size,
        }
    }

    /// Copies the content to `out`, refusing a file whose size changed since the tree was built
    /// (the layout was computed from the old size).
    pub fn copy_to(&self, out: &mut impl Write) -> Result<(), MakeError> {
        match self {
            Content::Bytes(b) => out.write_all(b).map_err(|e| MakeError::io("output", e)),
            Content::File { path, size } => {
                let f = std::fs::File::open(path).map_err(|e| MakeError::io(path, e))?;
                let mut r = std::io::Read::take(f, *size + 1);
                let n = std::io::copy(&mut r, out).map_err(|e| MakeError::io(path, e))?;
                if n != *size {
                    return Err(MakeError::Limit {
                        path: path.display().to_string(),
                        message: format!(
                            "changed while the drive was written ({size} -> {n} bytes)"
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// The bytes, read whole (metadata files, for the read-back check).
    pub fn load(&self) -> Result<Vec<u8>, MakeError> {
        match self {
            Content::Bytes(b) => Ok(b.clone()),
            Content::File { path, .. } => std::fs::read(path).map_err(|e| MakeError::io(path, e)),
        }
    }
}

/// A drive's files: relative path (`/`-separated, no `.`/`..`) -> content. Sorted, so every
/// writer lays the tree out in the same order and the output is reproducible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub files: BTreeMap<String, Content>,
}

impl Tree {
    pub fn add(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), Content::Bytes(bytes.into()));
    }

    /// Reads a directory used as is: regular files only (a symlink, device or socket is
    /// refused, naming it), names checked with the reader's own rule, depth bounded.
    pub fn from_dir(dir: &Path) -> Result<Tree, MakeError> {
        let mut tree = Tree::default();
        let mut stack = vec![(dir.to_path_buf(), String::new(), 0usize)];
        while let Some((d, rel, depth)) = stack.pop() {
            if depth > iso::MAX_DEPTH {
                return Err(MakeError::Limit {
                    path: d.display().to_string(),
                    message: format!("deeper than {} levels", iso::MAX_DEPTH),
                });
            }
            let rd = std::fs::read_dir(&d).map_err(|e| MakeError::io(&d, e))?;
            for e in rd {
                let e = e.map_err(|e| MakeError::io(&d, e))?;
                let p = e.path();
                let name = e.file_name();
                let Some(name) = name.to_str() else {
                    return Err(MakeError::Limit {
                        path: p.display().to_string(),
                        message: "name is not UTF-8".into(),
                    });
                };
                if let Some(why) = crate::media::unsafe_component(name) {
                    return Err(MakeError::Limit {
                        path: p.display().to_string(),
                        message: why.into(),
                    });
                }
                let r = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                let md = std::fs::symlink_metadata(&p).map_err(|e| MakeError::io(&p, e))?;
                if md.is_dir() {
                    stack.push((p, r, depth + 1));
                } else if md.is_file() {
                    tree.files.insert(
                        r,
                        Content::File {
                            path: p,
                            size: md.len(),
                        },
                    );
                } else {
                    return Err(MakeError::Limit {
                        path: p.display().to_string(),
                        message: "not a regular file or directory (symlinks are not copied)".into(),
                    });
                }
            }
        }
        if tree.files.is_empty() {
            return Err(MakeError::Limit {
                path: dir.display().to_string(),
                message: "no files".into(),
            });
        }
        Ok(tree)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(Content::size).sum()
    }
}

/// The time stamped on every entry and descriptor and whether random values are allowed:
/// `SOURCE_DATE_EPOCH` or `--deterministic` make the output a function of the input alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reproducible {
    /// Seconds since 1970 (UTC).
    pub epoch: i64,
    /// No random values (partition GUIDs derived from the content instead).
    pub deterministic: bool,
}

impl Reproducible {
    /// From `SOURCE_DATE_EPOCH` (its value, deterministic), else `deterministic` (time 0), else
    /// the current time with random values allowed.
    pub fn from_env(deterministic: bool) -> Result<Reproducible, MakeError> {
        if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
            let s = v.to_string_lossy();
            let epoch: i64 = s.trim().parse().map_err(|_| {
                MakeError::field(
                    "environment",
                    "SOURCE_DATE_EPOCH",
                    "not a number of seconds since 1970",
                )
            })?;
            if !(0..=253_402_300_799).contains(&epoch) {
                return Err(MakeError::field(
                    "environment",
                    "SOURCE_DATE_EPOCH",
                    "outside the years 1970 to 9999",
                ));
            }
            return Ok(Reproducible {
                epoch,
                deterministic: true,
            });
        }
        if deterministic {
            return Ok(Reproducible {
                epoch: 0,
                deterministic: true,
            });
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Ok(Reproducible {
            epoch: now,
            deterministic: false,
        })
    }
}

/// Builds the tree of `format` from a description (validated first) and checks that primer
/// reads it back as described. `base` resolves relative `file:` references.
pub fn build(
    desc: &Description,
    format: DriveFormat,
    opts: &tree::TreeOptions,
) -> Result<Tree, MakeError> {
    desc.validate(format)?;
    let tree = tree::build_tree(desc, format, opts)?;
    read_back(&tree, desc, format)?;
    Ok(tree)
}

/// Parses the tree with primer's own source parsers (as the agent would read the drive) and
/// refuses any warning or any difference in what the description set: a drive make-drive
/// writes reads back exactly.
pub fn read_back(tree: &Tree, desc: &Description, format: DriveFormat) -> Result<(), MakeError> {
    let err = |message: String| MakeError::ReadBack {
        format: format.name().to_string(),
        message,
    };
    let mut drive = crate::media::DriveFiles::new("make-drive", "dir");
    // Every OpenStack version directory holds the same files (by construction), and the
    // parser reads the newest: load that one only, so user data is held once, not eleven times.
    let newest = tree::OPENSTACK_VERSIONS.last().copied().unwrap_or("latest");
    for (p, c) in &tree.files {
        let other_version = format == DriveFormat::OpenStack
            && (p.starts_with("ec2/")
                || p.strip_prefix("openstack/").is_some_and(|r| {
                    !r.starts_with("content/") && !r.starts_with(&format!("{newest}/"))
                }));
        if !other_version {
            drive.files.insert(p.clone(), c.load()?.into());
        }
    }
    let (inst, report) = crate::source::parse_drive(&drive).map_err(|e| err(e.to_string()))?;
    if let Some(w) = report.warnings.first() {
        return Err(err(w.to_string()));
    }
    if inst.instance_id != desc.instance_id {
        return Err(err(format!(
            "instance id reads as {:?}",
            crate::model::grammar::Esc(&inst.instance_id).to_string()
        )));
    }
    if inst.hostname != desc.hostname {
        return Err(err("hostname reads differently".into()));
    }
    let want: Vec<String> = desc.key_lines();
    let mut want_dedup: Vec<String> = Vec::new();
    for k in want {
        if !want_dedup.contains(&k) {
            want_dedup.push(k);
        }
    }
    if inst.ssh_keys != want_dedup {
        return Err(err(format!(
            "{} SSH key(s) read back, {} described",
            inst.ssh_keys.len(),
            want_dedup.len()
        )));
    }
    let pass = inst.admin_pass.as_ref().map(|s| s.expose().to_vec());
    if pass != desc.admin_pass.as_ref().map(|p| p.as_bytes().to_vec()) {
        return Err(err("admin password reads differently".into()));
    }
    Ok(())
}

/// What to build the drive from.
#[derive(Debug, Clone)]
pub enum From {
    /// A description file (`--from`), checked and turned into the format's tree.
    Description(PathBuf),
    /// A directory used as is (`--dir`): its files become the drive's.
    Dir(PathBuf),
}

/// Where the image goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A new image file (replaced atomically when it exists).
    File(PathBuf),
    /// The caller's output stream (`-`).
    Stdout,
    /// A trailing partition of this many bytes in an existing disk image (`--into`), placed as
    /// Ironic places its config partition.
    Into { disk: PathBuf, partition: u64 },
}

/// One make-drive request, as the CLI builds it.
#[derive(Debug, Clone)]
pub struct Request {
    pub from: From,
    pub format: DriveFormat,
    pub filesystem: Filesystem,
    /// The volume label; `None`: the format's (see [`DriveFormat::label`]).
    pub label: Option<String>,
    pub tree: tree::TreeOptions,
    pub repro: Reproducible,
    /// Ironic's packed form (gzip, then base64) instead of the raw image.
    pub packed: bool,
    /// Image size in bytes; `None`: the smallest that fits (ISO9660: exactly the volume).
    pub size: Option<u64>,
    /// FAT logical sector size (512 or 4096).
    pub sector_size: u32,
    pub target: Target,
}

/// What was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub label: String,
    pub files: usize,
    /// Bytes of the filesystem image (before packing).
    pub image_bytes: u64,
}

/// Builds the tree (checked), then streams the image to the target.
pub fn make(req: &Request, stdout: &mut dyn Write) -> Result<Made, MakeError> {
    let tree = match &req.from {
        From::Description(p) => {
            let d = Description::load(p)?;
            build(&d, req.format, &req.tree)?
        }
        From::Dir(p) => Tree::from_dir(p)?,
    };
    let label = req
        .label
        .clone()
        .unwrap_or_else(|| req.format.label(req.filesystem).to_string());
    // Into a partition: plan it first (reads only); a FAT volume fills it.
    let placement = match &req.target {
        Target::Into { disk, partition } => Some(container::plan_partition(
            disk,
            *partition,
            req.repro.deterministic,
        )?),
        _ => None,
    };
    let mut req = req.clone();
    if let Some(p) = &placement {
        if req.packed {
            return Err(MakeError::field(
                "arguments",
                "--packed",
                "cannot go into a partition",
            ));
        }
        if req.filesystem == Filesystem::Vfat {
            req.size = Some(p.len);
        }
    }
    let req = &req;
    let (fs_name, image_bytes) = match req.filesystem {
        Filesystem::Iso9660 => {
            iso::check_label(&label)?;
            let n = iso::image_size(&tree)?;
            match req.size {
                Some(s) if s < n => {
                    return Err(MakeError::Limit {
                        path: "--size".into(),
                        message: format!("{s} bytes; the ISO9660 volume needs {n}"),
                    })
                }
                Some(s) => ("iso9660", s),
                None => ("iso9660", n),
            }
        }
        Filesystem::Vfat => {
            fat::check_label(&label)?;
            ("vfat", fat::image_size(&tree, req.sector_size, req.size)?)
        }
    };
    let image = |w: &mut dyn Write| -> Result<(), MakeError> {
        match req.filesystem {
            Filesystem::Iso9660 => {
                let n = iso::write(&tree, &label, req.repro.epoch, &mut *w)?;
                // --size larger than the volume: zeros after it (the volume size says where
                // the filesystem ends).
                let zero = [0u8; 4096];
                let mut left = image_bytes - n;
                while left > 0 {
                    let k = left.min(zero.len() as u64) as usize;
                    w.write_all(&zero[..k])
                        .map_err(|e| MakeError::io("output", e))?;
                    left -= k as u64;
                }
                Ok(())
            }
            Filesystem::Vfat => {
                fat::write(&tree, &label, req.repro.epoch, req.sector_size, req.size, w).map(|_| ())
            }
        }
    };
    let write_to = |w: &mut dyn Write| -> Result<(), MakeError> {
        if req.packed {
            container::pack_with(w, image)
        } else {
            image(w)
        }
    };
    match (&req.target, placement) {
        (Target::Stdout, _) => write_to(stdout)?,
        (Target::File(p), _) => write_atomic(p, write_to)?,
        (Target::Into { disk, .. }, Some(p)) => {
            if image_bytes > p.len {
                return Err(MakeError::Disk {
                    path: disk.display().to_string(),
                    message: format!(
                        "the image ({image_bytes} bytes) is larger than the partition ({} bytes)",
                        p.len
                    ),
                });
            }
            tracing::info!(
                "{}: {} partition {} at byte {}, {} bytes",
                disk.display(),
                p.kind,
                p.number,
                p.start,
                p.len
            );
            container::write_partition(disk, p, write_to)?
        }
        (Target::Into { .. }, None) => unreachable!("planned above"),
    }
    tracing::info!(
        "made a {} {fs_name} drive labelled {label}: {} file(s), {image_bytes} bytes",
        req.format.name(),
        tree.files.len()
    );
    Ok(Made {
        label,
        files: tree.files.len(),
        image_bytes,
    })
}

/// Writes `path` through a temporary file in the same directory, renamed over it at the end:
/// a failed run never leaves half an image under the asked name.
fn write_atomic(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<(), MakeError>,
) -> Result<(), MakeError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "drive".into());
    let tmp = dir.join(format!(".{name}.primer-tmp-{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(|e| MakeError::io(&tmp, e))?;
    let mut w = std::io::BufWriter::new(file);
    let r = f(&mut w).and_then(|()| {
        let file = w
            .into_inner()
            .map_err(|e| MakeError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| MakeError::io(&tmp, e))
    });
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| MakeError::io(path, e))
}
