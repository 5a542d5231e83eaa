//! Whole disks without a drive letter (`\\.\PhysicalDriveN`): which numbers to try, and what a
//! disk holds — its own signature, or its GPT/MBR table read by primer's reader and each
//! partition's signature through an offset reader — as the probe's `BlockDevice`s, the way the
//! Linux scan reaches partitions the kernel does not show. Pure over any `Read + Seek` (the
//! Windows side hands in the sector-aligned raw reader), so compiled and tested everywhere; it
//! opens nothing, ranks nothing (`probe::rank_scan` does) and never writes.

use std::collections::BTreeSet;
use std::io::{Read, Seek};

use crate::media::part::{read_partition_table, OffsetReader};
use crate::probe::sig::{read_signature, Found};
use crate::probe::{BlockDevice, DeviceClass};

/// Highest disk number tried (`\\.\PhysicalDrive0` .. `63`).
pub const MAX_DISKS: u32 = 64;
/// Consecutive numbers that do not open before the enumeration stops (numbers have gaps after
/// a disk is removed; a run this long means there are no more).
pub const MISS_RUN: u32 = 8;

/// The disks `open` opens, by number: 0, 1, ... up to [`MAX_DISKS`], stopping after
/// [`MISS_RUN`] numbers in a row that do not open.
pub fn enumerate<T>(mut open: impl FnMut(u32) -> Option<T>) -> Vec<(u32, T)> {
    let mut out = Vec::new();
    let mut misses = 0;
    for n in 0..MAX_DISKS {
        match open(n) {
            Some(t) => {
                misses = 0;
                out.push((n, t));
            }
            None => {
                misses += 1;
                if misses >= MISS_RUN {
                    break;
                }
            }
        }
    }
    out
}

/// The device name of disk `n` (`PhysicalDrive1`) and its path (`\\.\PhysicalDrive1`).
pub fn disk_name(n: u32) -> (String, String) {
    let name = format!("PhysicalDrive{n}");
    let path = format!(r"\\.\{name}");
    (name, path)
}

/// What disk `n` holds, as scan entries: the whole disk with its signature and, when that is
/// a partition table, each partition (`table_only`: read at its offset within the disk) with
/// its own. `covered`: byte offsets of partitions that already have a drive letter (read
/// through it instead; listing them twice would make one drive look like two). `sector`: the
/// disk's logical sector size, for an MBR's sector numbers.
pub fn scan_disk<R: Read + Seek>(
    n: u32,
    mut disk: R,
    size: u64,
    sector: u64,
    covered: &BTreeSet<u64>,
) -> Vec<(BlockDevice, Found)> {
    let (name, path) = disk_name(n);
    let whole = BlockDevice::whole(&name, &path, DeviceClass::Disk, size);
    let found = read_signature(&mut disk, &path);
    let mut out = Vec::new();
    if found == Found::Table {
        let table = read_partition_table(&mut disk, &path, sector)
            .map_err(|e| tracing::debug!(device = %path, "partition table: {e}"))
            .ok()
            .flatten();
        if let Some(t) = table {
            let trailing = t.trailing().map(|p| p.number);
            for p in t.partitions.iter().filter(|p| !covered.contains(&p.start)) {
                let mut d = BlockDevice::whole(
                    &format!("{name}p{}", p.number),
                    &path,
                    DeviceClass::Partition,
                    p.size,
                );
                d.parent = Some(name.clone());
                d.partition = Some(p.clone());
                d.table_only = true;
                d.trailing = trailing == Some(p.number);
                let mut r = OffsetReader::new(&mut disk, p.start, p.size);
                let f = read_signature(&mut r, &d.display());
                out.push((d, f));
            }
        }
    } else if covered.contains(&0) {
        // A filesystem on the whole disk that has a letter: the letter's entry stands for it.
        return out;
    }
    out.insert(0, (whole, found));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn enumeration_stops_after_a_run_of_misses() {
        // Disks 0, 1, 3 and 10: the gap 4..=9 is shorter than MISS_RUN, so 10 is found.
        let present = [0u32, 1, 3, 10];
        let mut tried = Vec::new();
        let got = enumerate(|n| {
            tried.push(n);
            present.contains(&n).then_some(n)
        });
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), present);
        assert_eq!(
            *tried.last().unwrap(),
            10 + MISS_RUN,
            "stops MISS_RUN after the last"
        );
        // Nothing at all: MISS_RUN tries.
        let mut count = 0;
        assert!(enumerate(|_| {
            count += 1;
            None::<()>
        })
        .is_empty());
        assert_eq!(count, MISS_RUN);
        // Every number present: bounded by MAX_DISKS.
        assert_eq!(enumerate(Some).len(), MAX_DISKS as usize);
    }

    /// A 4 MiB disk with an MBR: partition 1 at 1 MiB (1 MiB long, type 0x83, content not a
    /// filesystem) and partition 2 at 2 MiB holding `fs` (a trailing config partition).
    fn mbr_disk(fs: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 4 << 20];
        let entry = |i: usize, kind: u8, lba: u32, count: u32, d: &mut Vec<u8>| {
            let e = 446 + 16 * i;
            d[e + 4] = kind;
            d[e + 8..e + 12].copy_from_slice(&lba.to_le_bytes());
            d[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
        };
        entry(0, 0x83, 2048, 2048, &mut d);
        entry(1, 0x0c, 4096, 4096, &mut d);
        d[510] = 0x55;
        d[511] = 0xAA;
        d[2 << 20..(2 << 20) + fs.len()].copy_from_slice(fs);
        d
    }

    /// A minimal FAT12 volume labelled `label` (boot sector and root directory label entry).
    fn fat(label: &[u8; 11]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[3..11].copy_from_slice(b"mkfs.fat");
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 4;
        b[14..16].copy_from_slice(&1u16.to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&512u16.to_le_bytes());
        b[19..21].copy_from_slice(&4096u16.to_le_bytes());
        b[21] = 0xF8;
        b[22..24].copy_from_slice(&3u16.to_le_bytes());
        b[38] = 0x29;
        b[43..54].copy_from_slice(label);
        b[54..62].copy_from_slice(b"FAT12   ");
        b[510] = 0x55;
        b[511] = 0xAA;
        // The root directory (after 1 reserved and 2 × 3 FAT sectors) with the label entry.
        b.resize(8 * 512, 0);
        b[7 * 512..7 * 512 + 11].copy_from_slice(label);
        b[7 * 512 + 11] = 0x08;
        b
    }

    #[test]
    fn a_disk_without_a_letter_shows_its_partitions_by_offset() {
        let disk = mbr_disk(&fat(b"CONFIG-2   "));
        let size = disk.len() as u64;
        let got = scan_disk(1, Cursor::new(disk), size, 512, &BTreeSet::new());
        let names: Vec<&str> = got.iter().map(|(d, _)| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["PhysicalDrive1", "PhysicalDrive1p1", "PhysicalDrive1p2"]
        );
        assert_eq!(got[0].1, Found::Table);
        let (p2, f2) = &got[2];
        assert_eq!(p2.path, r"\\.\PhysicalDrive1");
        assert_eq!(p2.byte_range(), Some((2 << 20, 2 << 20)));
        assert!(p2.trailing && p2.table_only);
        assert_eq!(p2.parent.as_deref(), Some("PhysicalDrive1"));
        match f2 {
            Found::Fs(s) => assert_eq!(s.label.as_deref(), Some("CONFIG-2")),
            other => panic!("partition 2: {other:?}"),
        }
        assert_eq!(got[1].1, Found::Nothing);
    }

    #[test]
    fn partitions_and_disks_with_a_letter_are_not_listed_twice() {
        let disk = mbr_disk(&fat(b"CONFIG-2   "));
        let size = disk.len() as u64;
        let covered: BTreeSet<u64> = [2u64 << 20].into();
        let got = scan_disk(2, Cursor::new(disk), size, 512, &covered);
        let names: Vec<&str> = got.iter().map(|(d, _)| d.name.as_str()).collect();
        assert_eq!(names, ["PhysicalDrive2", "PhysicalDrive2p1"]);
        // A whole-disk filesystem with a letter: nothing from the disk itself.
        let mut img = fat(b"CONFIG-2   ");
        img.resize(1 << 20, 0);
        let got = scan_disk(3, Cursor::new(img.clone()), 1 << 20, 512, &[0u64].into());
        assert!(got.is_empty(), "{got:?}");
        // Without one: the disk, its label read.
        let got = scan_disk(3, Cursor::new(img), 1 << 20, 512, &BTreeSet::new());
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0].1, Found::Fs(s) if s.label.as_deref() == Some("CONFIG-2")));
    }

    #[test]
    fn hostile_or_short_disks_give_entries_not_panics() {
        for disk in [Vec::new(), vec![0u8; 100], {
            // An MBR whose entries point past the disk's end.
            let mut d = mbr_disk(&[]);
            d.truncate(3 << 20);
            d
        }] {
            let size = disk.len() as u64;
            let got = scan_disk(0, Cursor::new(disk), size, 512, &BTreeSet::new());
            assert_eq!(got[0].0.name, "PhysicalDrive0");
            assert!(got.len() <= 3);
        }
    }
}
