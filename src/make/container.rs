//! Containers around a made filesystem image: Ironic's packed form (gzip, then base64: what
//! nova hands Ironic in `configdrive`) and a trailing partition inside an existing disk image as
//! Ironic writes it. Writes only the output file or disk image it is given.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::MakeError;
use crate::media::part::{mbr_logical_used, MbrEntry, MbrHeader};

/// gzip (no file name, time 0: reproducible) then base64 (standard alphabet, no line breaks, as
/// Ironic's `base64.b64encode`), streamed from `input` to `out`.
pub fn pack(mut input: impl Read, out: impl Write) -> Result<(), MakeError> {
    use base64::engine::general_purpose::STANDARD;
    let enc = base64::write::EncoderWriter::new(out, &STANDARD);
    // GzEncoder writes a header with mtime 0 and no name: byte-identical output.
    let mut gz = flate2::write::GzEncoder::new(enc, flate2::Compression::default());
    std::io::copy(&mut input, &mut gz).map_err(|e| MakeError::io("packed output", e))?;
    let mut enc = gz.finish().map_err(|e| MakeError::io("packed output", e))?;
    enc.flush().map_err(|e| MakeError::io("packed output", e))?;
    let mut out = enc
        .finish()
        .map_err(|e| MakeError::io("packed output", e))?;
    out.flush().map_err(|e| MakeError::io("packed output", e))?;
    Ok(())
}

/// Runs `f` on a writer that packs what it is given into `out` (see [`pack`]).
pub fn pack_with(
    out: &mut dyn Write,
    f: impl FnOnce(&mut dyn Write) -> Result<(), MakeError>,
) -> Result<(), MakeError> {
    use base64::engine::general_purpose::STANDARD;
    let enc = base64::write::EncoderWriter::new(out, &STANDARD);
    let mut gz = flate2::write::GzEncoder::new(enc, flate2::Compression::default());
    f(&mut gz)?;
    let mut enc = gz.finish().map_err(|e| MakeError::io("packed output", e))?;
    enc.flush().map_err(|e| MakeError::io("packed output", e))?;
    let out = enc
        .finish()
        .map_err(|e| MakeError::io("packed output", e))?;
    out.flush().map_err(|e| MakeError::io("packed output", e))
}

/// Ironic's config partition size (`sgdisk -n 0:-64MB:0`).
pub const DEFAULT_PARTITION: u64 = 64 << 20;

/// Linux filesystem data (sgdisk's default type 8300, what Ironic's partition gets), in the
/// on-disk mixed-endian order of 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
const LINUX_DATA: [u8; 16] = [
    0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
];
/// MBR type of the config partition: FAT32 with LBA, as Ironic's MBR path writes it.
const MBR_TYPE: u8 = 0x0c;
/// Partition alignment: 1 MiB, as sgdisk and sfdisk align.
const ALIGN_BYTES: u64 = 1 << 20;

/// Where the config partition goes, decided before anything is written.
pub struct Placement {
    table: Table,
    /// First byte and length of the partition.
    pub start: u64,
    pub len: u64,
    /// The partition number it gets (1-based).
    pub number: u32,
    pub kind: &'static str,
}

enum Table {
    Gpt(Box<gptman::GPT>, gptman::GPTPartitionEntry, u32),
    /// The primary slot (1 to 4) and its new entry: only those 16 bytes of sector 0 change.
    Mbr(usize, MbrEntry),
}

fn disk_err(disk: &Path, message: impl Into<String>) -> MakeError {
    MakeError::Disk {
        path: disk.display().to_string(),
        message: message.into(),
    }
}

/// A GUID from 16 random bytes (`/dev/urandom`) or, when deterministic, from `seed`; marked as
/// a version 4 (random) GUID either way.
fn partition_guid(deterministic: bool, seed: &[u8]) -> Result<[u8; 16], MakeError> {
    let mut g = [0u8; 16];
    if deterministic {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(seed);
        g.copy_from_slice(&d[..16]);
    } else {
        let mut f =
            std::fs::File::open("/dev/urandom").map_err(|e| MakeError::io("/dev/urandom", e))?;
        f.read_exact(&mut g)
            .map_err(|e| MakeError::io("/dev/urandom", e))?;
    }
    // On-disk order: the version sits in the high nibble of byte 7 (little-endian field 3).
    g[7] = (g[7] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    Ok(g)
}

/// Plans a `size`-byte partition at the end of the largest free block of `disk` (GPT: after
/// moving the backup header to the end of a grown image; MBR: a primary of type 0x0c, refused
/// when four primaries exist). Reads only.
pub fn plan_partition(disk: &Path, size: u64, deterministic: bool) -> Result<Placement, MakeError> {
    let mut f = std::fs::File::open(disk).map_err(|e| MakeError::io(disk, e))?;
    if let Ok(mut gpt) = gptman::GPT::find_from(&mut f) {
        let ss = gpt.sector_size;
        // The image may have grown (qemu-img resize): the backup header belongs at the end.
        gpt.header
            .update_from(&mut f, ss)
            .map_err(|e| disk_err(disk, format!("GPT: {e}")))?;
        gpt.align = (ALIGN_BYTES / ss).max(1);
        let Some((bstart, blen)) = gpt.find_free_sectors().into_iter().max_by_key(|(_, l)| *l)
        else {
            return Err(disk_err(disk, "no free space in the GPT"));
        };
        let want = size.div_ceil(ss);
        let end = bstart + blen - 1;
        let start = (end + 1)
            .checked_sub(want)
            .map(|s| s / gpt.align * gpt.align);
        let Some(start) = start.filter(|s| *s >= bstart) else {
            return Err(disk_err(
                disk,
                format!(
                    "the largest free block ({} bytes) cannot hold a {size}-byte partition",
                    blen * ss
                ),
            ));
        };
        let Some((number, _)) = gpt.iter().find(|(_, p)| p.is_unused()) else {
            return Err(disk_err(disk, "every GPT entry is in use"));
        };
        let mut seed = gpt.header.disk_guid.to_vec();
        seed.extend_from_slice(&start.to_le_bytes());
        let entry = gptman::GPTPartitionEntry {
            partition_type_guid: LINUX_DATA,
            unique_partition_guid: partition_guid(deterministic, &seed)?,
            starting_lba: start,
            ending_lba: end,
            attribute_bits: 0,
            // Ironic sets no name.
            partition_name: "".into(),
        };
        return Ok(Placement {
            start: start * ss,
            len: (end + 1 - start) * ss,
            number,
            kind: "gpt",
            table: Table::Gpt(Box::new(gpt), entry, number),
        });
    }
    let mut s0 = [0u8; 512];
    let header = f
        .seek(SeekFrom::Start(0))
        .and_then(|_| f.read_exact(&mut s0))
        .map_err(|e| e.to_string())
        .and_then(|_| MbrHeader::parse(&s0).map_err(str::to_string))
        .map_err(|e| {
            disk_err(
                disk,
                format!("neither a GPT nor an MBR partition table: {e}"),
            )
        })?;
    let Some(slot) = (1..=4).find(|i| header.get(*i).is_some_and(|p| p.is_unused())) else {
        // Logical partitions counted too (the message says how full the table is).
        let used = 4 + mbr_logical_used(&mut f, &header, 512);
        return Err(disk_err(
            disk,
            format!("all four MBR primary partitions are in use ({used}); Ironic refuses this too"),
        ));
    };
    // Free blocks between primaries only (not inside an extended partition).
    let mut positions = vec![0u64];
    for (_, p) in header.iter().filter(|(_, p)| p.is_used()) {
        positions.push(p.starting_lba as u64);
        positions.push(p.starting_lba as u64 + p.sectors as u64 - 1);
    }
    let len_sectors = std::fs::metadata(disk)
        .map_err(|e| MakeError::io(disk, e))?
        .len()
        / 512;
    // MBR cannot address past 2 TiB: the partition ends there at the latest (as Ironic's does).
    positions.push(len_sectors.min(u32::MAX as u64));
    crate::sort::sort(&mut positions);
    let block = positions
        .chunks(2)
        .filter(|c| c.len() == 2 && c[1] > c[0] + 1)
        .map(|c| (c[0] + 1, c[1] - c[0] - 1))
        .max_by_key(|(_, l)| *l);
    let Some((bstart, blen)) = block else {
        return Err(disk_err(disk, "no free space outside the MBR partitions"));
    };
    let want = size.div_ceil(512);
    let end = bstart + blen - 1;
    let align = ALIGN_BYTES / 512;
    let start = (end + 1)
        .checked_sub(want)
        .map(|s| s / align * align)
        .filter(|s| *s >= bstart.max(align));
    let Some(start) = start else {
        return Err(disk_err(
            disk,
            format!(
                "the largest free block ({} bytes) cannot hold a {size}-byte partition",
                blen * 512
            ),
        ));
    };
    // Inactive, no CHS (LBA only), as Ironic's partition gets.
    let entry = MbrEntry {
        sys: MBR_TYPE,
        starting_lba: start as u32,
        sectors: (end + 1 - start) as u32,
        ..MbrEntry::default()
    };
    Ok(Placement {
        start: start * 512,
        len: (end + 1 - start) * 512,
        number: slot as u32,
        kind: "mbr",
        table: Table::Mbr(slot, entry),
    })
}

/// Writes the filesystem (`image`, at most `p.len` bytes; zeros after it to the partition's
/// end) into the planned partition, then the table: a failure before the table write leaves
/// the disk's partitions as they were.
pub fn write_partition(
    disk: &Path,
    p: Placement,
    image: impl FnOnce(&mut dyn Write) -> Result<(), MakeError>,
) -> Result<(), MakeError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|e| MakeError::io(disk, e))?;
    f.seek(SeekFrom::Start(p.start))
        .map_err(|e| MakeError::io(disk, e))?;
    {
        let mut w = Bounded {
            w: std::io::BufWriter::new(&mut f),
            left: p.len,
        };
        image(&mut w)?;
        let zero = [0u8; 65536];
        while w.left > 0 {
            let n = w.left.min(zero.len() as u64) as usize;
            w.write_all(&zero[..n])
                .map_err(|e| MakeError::io(disk, e))?;
        }
        w.flush().map_err(|e| MakeError::io(disk, e))?;
    }
    f.sync_data().map_err(|e| MakeError::io(disk, e))?;
    match p.table {
        Table::Gpt(mut gpt, entry, n) => {
            gpt[n] = entry;
            gpt.write_into(&mut f)
                .map_err(|e| disk_err(disk, format!("writing the GPT: {e}")))?;
            // A grown image's protective MBR still covers the old size: refresh it, but only
            // a plain one (one 0xEE entry), never a hybrid MBR.
            let mut s0 = [0u8; 512];
            f.seek(SeekFrom::Start(0))
                .map_err(|e| MakeError::io(disk, e))?;
            f.read_exact(&mut s0).map_err(|e| MakeError::io(disk, e))?;
            if s0[450] == 0xEE && s0[462..510].iter().all(|b| *b == 0) {
                gptman::GPT::write_protective_mbr_into(&mut f, gpt.sector_size)
                    .map_err(|e| disk_err(disk, format!("writing the protective MBR: {e}")))?;
            }
        }
        Table::Mbr(slot, entry) => {
            // The one entry that changes: boot code, disk signature, the other entries and
            // any EBR stay byte for byte.
            f.seek(SeekFrom::Start(446 + 16 * (slot as u64 - 1)))
                .and_then(|_| f.write_all(&entry.to_bytes()))
                .map_err(|e| disk_err(disk, format!("writing the MBR: {e}")))?;
        }
    }
    f.sync_all().map_err(|e| MakeError::io(disk, e))
}

/// A writer that refuses to go past the partition's end.
struct Bounded<W: Write> {
    w: W,
    left: u64,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the image is larger than the partition",
            ));
        }
        let n = self.w.write(b)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_form_is_gzip_then_base64_and_reproducible() {
        let data = b"config drive bytes".repeat(100);
        let mut a = Vec::new();
        pack(&data[..], &mut a).expect("pack");
        let mut b = Vec::new();
        pack(&data[..], &mut b).expect("pack");
        assert_eq!(a, b);
        use base64::Engine;
        let gz = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .expect("base64");
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, data);
    }
}
