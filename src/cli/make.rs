//! `primer make-drive`: the clap arguments and the one call into `make`. Decides nothing
//! itself: every check and every write is in `src/make/`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::make;
use crate::{Error, Exit};

pub const MAKE_HELP: &str = "\
Examples:
  primer make-drive --from node.yaml --output config-2.iso
        an OpenStack config drive (ISO9660, label config-2) for a bare-metal machine
  primer make-drive --from node.yaml --format nocloud --output seed.iso
        a NoCloud seed (label cidata) for cloud-init or primer
  primer make-drive --from node.yaml --packed --output configdrive.b64
        Ironic's packed form (gzip, then base64) for `baremetal node deploy --config-drive`
  primer make-drive --from node.yaml --filesystem vfat --output config-2.img
        the same as VFAT (label CONFIG-2; --sector-size 4096 for 4Kn disks)
  primer make-drive --from node.yaml --into disk.img
        into a new 64 MiB partition at the end of disk.img's largest free block (as Ironic)
  primer make-drive --dir ./tree --label config-2 --output drive.iso
        an existing drive tree, used as is
  SOURCE_DATE_EPOCH=1700000000 primer make-drive --from node.yaml --output a.iso
        byte-identical output for the same input (all times from SOURCE_DATE_EPOCH)

A description (JSON or YAML; relative `file:` paths are relative to it):
  instance_id: 0a1b2c3d-0000-4000-8000-000000000001
  hostname: node-1.example.org
  public_keys: [\"ssh-ed25519 AAAA... admin@example\"]   # or {name: key}
  admin_pass: s3cret                  # openstack, cloudstack, ovf
  meta: {role: web}
  network: {file: network_data.json}  # openstack/cloudstack: network_data.json;
                                      # nocloud/ovf: network config v1/v2
  user_data: {file: user-data.yaml}   # or an inline string, or {base64: ...}
  vendor_data: \"#cloud-config\\n...\"
  files: [{path: /etc/motd, content: \"hello\\n\"}]   # openstack only
Everything is checked before anything is written (errors name the field), and the drive is
read back with primer's own parsers: it must say exactly what the description says.";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// nova's tree: openstack/<every known version>/ and latest/ (label config-2).
    Openstack,
    /// CloudStack's cloudstack/ tree plus openstack/latest/ (label config-2).
    Cloudstack,
    /// A NoCloud seed: meta-data, user-data, vendor-data, network-config (label cidata).
    Nocloud,
    /// An OVF environment: ovf-env.xml (label "OVF ENV").
    Ovf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FsArg {
    /// ISO9660 with Rock Ridge and Joliet, names as nova's genisoimage writes them.
    Iso9660,
    /// FAT12, FAT16 or FAT32 (by size) with long names; label upper case (CONFIG-2, CIDATA).
    Vfat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CloudStackNames {
    /// instance-id.txt (current CloudStack).
    Hyphen,
    /// instance_id.txt (the original design page, older consumers).
    Underscore,
}

#[derive(Debug, Args)]
pub struct MakeDriveArgs {
    /// A description of the instance (JSON or YAML): what the drive should say.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "dir",
        required_unless_present = "dir"
    )]
    pub from: Option<PathBuf>,
    /// A directory holding a drive tree, used as is (no format tree is built).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The drive format to build from the description.
    #[arg(long, value_enum, default_value = "openstack")]
    pub format: FormatArg,
    /// The filesystem of the image.
    #[arg(long, value_enum, default_value = "iso9660", value_name = "FS")]
    pub filesystem: FsArg,
    /// Volume label [default: the format's: config-2, cidata, "OVF ENV"].
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// OpenStack: also write the legacy ec2/ view (nova's guidance: do not depend on it).
    #[arg(long)]
    pub ec2: bool,
    /// CloudStack: which spelling of the metadata file names.
    #[arg(long, value_enum, default_value = "hyphen")]
    pub cloudstack_names: CloudStackNames,
    /// No random values and every time stamp 1970-01-01 (SOURCE_DATE_EPOCH, when set, gives the
    /// time and implies this).
    #[arg(long)]
    pub deterministic: bool,
    /// Write Ironic's packed form (gzip, then base64) instead of the raw image.
    #[arg(long)]
    pub packed: bool,
    /// Image size (bytes, or with K, M, G suffix: 64M) [default: the smallest that fits].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
    /// FAT logical sector size: 512 or 4096 (for 4Kn disks).
    #[arg(long, default_value = "512", value_name = "BYTES")]
    pub sector_size: u32,
    /// The output file, or `-` for standard output.
    #[arg(
        long,
        short = 'o',
        value_name = "FILE",
        required_unless_present = "into",
        conflicts_with = "into"
    )]
    pub output: Option<PathBuf>,
    /// Write the drive into a new trailing partition of this disk image, as Ironic does: at the
    /// end of the largest free block; GPT (backup header moved to the end first; random
    /// partition GUID unless --deterministic/SOURCE_DATE_EPOCH) or MBR (a primary of type 0x0c;
    /// refused when four primaries exist).
    #[arg(long, value_name = "DISK.img")]
    pub into: Option<PathBuf>,
    /// Size of the partition `--into` creates.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub partition_size: u64,
}

/// Runs `make-drive`; prints one line saying what was made (to stderr when the image goes to
/// standard output).
pub fn run(a: &MakeDriveArgs, out: &mut impl Write) -> Result<Exit, Error> {
    let req = make::Request {
        from: match (&a.from, &a.dir) {
            (Some(f), _) => make::From::Description(f.clone()),
            (None, Some(d)) => make::From::Dir(d.clone()),
            (None, None) => return Err(Error::Unsupported("give --from FILE or --dir DIR".into())),
        },
        format: match a.format {
            FormatArg::Openstack => make::DriveFormat::OpenStack,
            FormatArg::Cloudstack => make::DriveFormat::CloudStack,
            FormatArg::Nocloud => make::DriveFormat::NoCloud,
            FormatArg::Ovf => make::DriveFormat::Ovf,
        },
        filesystem: match a.filesystem {
            FsArg::Iso9660 => make::Filesystem::Iso9660,
            FsArg::Vfat => make::Filesystem::Vfat,
        },
        label: a.label.clone(),
        tree: make::tree::TreeOptions {
            ec2: a.ec2,
            cloudstack_underscores: matches!(a.cloudstack_names, CloudStackNames::Underscore),
        },
        repro: make::Reproducible::from_env(a.deterministic)?,
        packed: a.packed,
        size: a.size,
        sector_size: a.sector_size,
        target: match (&a.into, &a.output) {
            (Some(disk), _) => make::Target::Into {
                disk: disk.clone(),
                partition: a.partition_size,
            },
            (None, Some(o)) if o.as_os_str() == "-" => make::Target::Stdout,
            (None, Some(o)) => make::Target::File(o.clone()),
            (None, None) => {
                return Err(Error::Unsupported(
                    "give --output FILE or --into DISK".into(),
                ))
            }
        },
    };
    let made = make::make(&req, out)?;
    let line = format!(
        "{}: {} file(s), label {}, {} bytes{}",
        a.into
            .as_ref()
            .or(a.output.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        made.files,
        made.label,
        made.image_bytes,
        if a.packed { " (packed)" } else { "" }
    );
    if matches!(req.target, make::Target::Stdout) {
        eprintln!("{line}");
    } else {
        writeln!(out, "{line}")?;
    }
    Ok(Exit::Changed)
}

/// `64M`, `1G`, `4096`, `512K` (binary multiples).
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (bytes, or a number with K, M or G)"))
}
