//! The SMBIOS system UUID from the raw table Windows hands out (`GetSystemFirmwareTable('RSMB')`:
//! a `RawSMBIOSData` header, then the structure table), formatted as Linux's
//! `/sys/class/dmi/id/product_uuid` shows it, so the trust policy's DMI binding compares the
//! same text on both systems. Pure and platform-free (compiled and tested everywhere): it
//! makes no system call, and the table is firmware bytes it treats as hostile — every offset
//! is bounds-checked, the walk is linear and stops after `MAX_STRUCTURES`.

/// Most structures walked before giving up (a real table has tens to a few hundred).
pub const MAX_STRUCTURES: usize = 4096;
/// Largest table accepted (`RawSMBIOSData.Length`; SMBIOS 3 tables are at most 4 GiB in
/// theory, a few KiB in practice).
pub const MAX_TABLE: usize = 1 << 20;

/// Size of `RawSMBIOSData`'s header: calling method, major, minor, DMI revision, `u32` length.
const RAW_HEADER: usize = 8;
/// Structure type of System Information, and of the end-of-table marker.
const TYPE_SYSTEM: u8 = 1;
const TYPE_END: u8 = 127;
/// Offset and size of the UUID in a System Information structure.
const UUID_AT: usize = 8;
const UUID_LEN: usize = 16;

/// The system UUID of a `RawSMBIOSData` buffer, lowercase, or `None`: no table, no System
/// Information structure, one too short to hold a UUID, or a UUID of all zeros ("not set") or
/// all 0xFF ("not present"), as Linux leaves `product_uuid` out for both.
pub fn system_uuid(raw: &[u8]) -> Option<String> {
    let header = raw.get(..RAW_HEADER)?;
    let (major, minor) = (header[1], header[2]);
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_TABLE {
        return None;
    }
    // A length larger than the buffer: walk what is there (every read is bounded anyway).
    let table = &raw[RAW_HEADER..raw.len().min(RAW_HEADER.saturating_add(len))];
    let s = structures(table).find(|s| s.kind == TYPE_SYSTEM)?;
    let uuid: [u8; UUID_LEN] = s
        .formatted
        .get(UUID_AT..UUID_AT + UUID_LEN)?
        .try_into()
        .ok()?;
    format_uuid(&uuid, (major, minor) >= (2, 6))
}

/// `uuid` as Linux prints it: SMBIOS 2.6 and later store the first three fields
/// little-endian (the kernel's `%pUl`), earlier versions in network order (`%pUb`).
pub fn format_uuid(uuid: &[u8; UUID_LEN], little_endian: bool) -> Option<String> {
    if uuid.iter().all(|&b| b == 0) || uuid.iter().all(|&b| b == 0xFF) {
        return None;
    }
    let mut b = *uuid;
    if little_endian {
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
    }
    let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some(format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    ))
}

/// One structure: its type and formatted area (header included, so offsets are the spec's).
#[derive(Debug, Clone, Copy)]
pub struct Structure<'a> {
    pub kind: u8,
    pub formatted: &'a [u8],
}

/// The structures of a table, in order, up to the end marker (type 127), the first malformed
/// one (a formatted length under 4 or past the table, a string set without its double NUL),
/// or `MAX_STRUCTURES`.
pub fn structures(table: &[u8]) -> impl Iterator<Item = Structure<'_>> {
    let mut at = 0usize;
    let mut count = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || count >= MAX_STRUCTURES {
            return None;
        }
        count += 1;
        let kind = *table.get(at)?;
        let flen = usize::from(*table.get(at + 1)?);
        let Some(formatted) = (flen >= 4).then(|| table.get(at..at + flen)).flatten() else {
            done = true;
            return None;
        };
        // The string set: strings each ending in NUL, the set ending in one more NUL (two NULs
        // right after the formatted area when it has no string).
        let strings = &table[at + flen..];
        let Some(end) = strings.windows(2).position(|w| w == [0, 0]) else {
            done = true;
            return None;
        };
        at = at + flen + end + 2;
        if kind == TYPE_END {
            done = true;
        }
        Some(Structure { kind, formatted })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `RawSMBIOSData` buffer of SMBIOS `major.minor` holding `table`.
    fn raw(major: u8, minor: u8, table: &[u8]) -> Vec<u8> {
        let mut v = vec![0, major, minor, 0];
        v.extend_from_slice(&(table.len() as u32).to_le_bytes());
        v.extend_from_slice(table);
        v
    }

    /// A structure of `kind` with `body` after its 4-byte header and `strings` after it.
    fn structure(kind: u8, body: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut v = vec![kind, (4 + body.len()) as u8, 0x01, 0x00];
        v.extend_from_slice(body);
        if strings.is_empty() {
            v.extend_from_slice(&[0, 0]);
        } else {
            for s in strings {
                v.extend_from_slice(s.as_bytes());
                v.push(0);
            }
            v.push(0);
        }
        v
    }

    /// The UUID bytes QEMU stores for `-uuid 12345678-9abc-def0-1122-334455667788`.
    const QEMU: [u8; 16] = [
        0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        0x88,
    ];

    /// System Information (type 1, SMBIOS 2.4 layout, length 0x1B): manufacturer, product,
    /// version, serial (string numbers 1-4), UUID at 8, wake-up type, SKU, family.
    fn system(uuid: [u8; 16]) -> Vec<u8> {
        let mut body = vec![1, 2, 3, 4];
        body.extend_from_slice(&uuid);
        body.extend_from_slice(&[6, 0, 0]);
        structure(1, &body, &["QEMU", "Standard PC", "pc-q35", "serial"])
    }

    fn table(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn the_uuid_is_formatted_as_linux_product_uuid() {
        let bios = structure(
            0,
            &[1, 2, 0, 0xe8, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &["SeaBIOS", "1.16"],
        );
        let t = table(&[bios, system(QEMU), structure(127, &[], &[])]);
        // 2.6 and later: the first three fields little-endian, as the kernel's %pUl.
        assert_eq!(
            system_uuid(&raw(2, 8, &t)).as_deref(),
            Some("12345678-9abc-def0-1122-334455667788")
        );
        assert_eq!(
            system_uuid(&raw(3, 0, &t)).as_deref(),
            Some("12345678-9abc-def0-1122-334455667788")
        );
        // Before 2.6: the bytes in order (%pUb).
        assert_eq!(
            system_uuid(&raw(2, 5, &t)).as_deref(),
            Some("78563412-bc9a-f0de-1122-334455667788")
        );
        let upper = [0xAB; 16];
        let t = table(&[system(upper)]);
        assert_eq!(
            system_uuid(&raw(3, 2, &t)).as_deref(),
            Some("abababab-abab-abab-abab-abababababab")
        );
    }

    #[test]
    fn unset_uuids_and_missing_structures_are_none() {
        for uuid in [[0u8; 16], [0xFF; 16]] {
            assert_eq!(system_uuid(&raw(3, 0, &system(uuid))), None);
        }
        // No System Information; the end marker before it; an empty or absent table.
        let bios = structure(0, &[1, 2, 0, 0xe8], &["SeaBIOS"]);
        assert_eq!(system_uuid(&raw(3, 0, &bios)), None);
        let t = table(&[structure(127, &[], &[]), system(QEMU)]);
        assert_eq!(system_uuid(&raw(3, 0, &t)), None);
        assert_eq!(system_uuid(&raw(3, 0, &[])), None);
        assert_eq!(system_uuid(&[]), None);
        assert_eq!(system_uuid(&[0, 3, 0, 0]), None);
        // A System Information structure too short to hold a UUID (SMBIOS 2.0: length 8).
        let short = structure(1, &[1, 2, 3, 4], &["x"]);
        assert_eq!(system_uuid(&raw(2, 0, &short)), None);
    }

    #[test]
    fn hostile_tables_end_the_walk_without_reading_past_them() {
        let good = system(QEMU);
        // Truncated anywhere: never a panic, never a UUID read from bytes that are not there.
        for cut in 0..good.len() {
            assert_eq!(system_uuid(&raw(3, 0, &good[..cut])), None, "cut at {cut}");
        }
        // The header's length larger than the buffer: what is there is walked.
        let mut r = raw(3, 0, &good);
        r[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(system_uuid(&r), None, "a length past MAX_TABLE is refused");
        r[4..8].copy_from_slice(&((good.len() + 100) as u32).to_le_bytes());
        assert!(system_uuid(&r).is_some());
        // A formatted length under 4 (a walk that would never advance) or past the table.
        for flen in [0u8, 1, 3, 0xFF] {
            let mut t = structure(0, &[], &[]);
            t[1] = flen;
            t.extend_from_slice(&good);
            assert_eq!(system_uuid(&raw(3, 0, &t)), None, "length {flen}");
        }
        // A string set with no end.
        let mut t = structure(0, &[1, 2, 0, 0xe8], &[]);
        t.truncate(t.len() - 2);
        t.extend_from_slice(b"no end");
        assert_eq!(system_uuid(&raw(3, 0, &t)), None);
    }

    #[test]
    fn the_walk_is_bounded() {
        // More structures than MAX_STRUCTURES before the System Information: not reached.
        let filler = structure(200, &[], &[]);
        let mut t = filler.repeat(MAX_STRUCTURES);
        t.extend_from_slice(&system(QEMU));
        assert_eq!(structures(&t).count(), MAX_STRUCTURES);
        assert_eq!(system_uuid(&raw(3, 0, &t)), None);
        // Just under the bound: found.
        let mut t = filler.repeat(MAX_STRUCTURES - 1);
        t.extend_from_slice(&system(QEMU));
        assert!(system_uuid(&raw(3, 0, &t)).is_some());
    }
}
