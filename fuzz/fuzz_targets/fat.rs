//! Fuzz target: the FAT reader (fatfs behind primer's read-only, budgeted stream) and the
//! probe's FAT summary, with small limits. Checks: no panic, errors name the device, no write
//! is ever attempted.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use primer::media::fat::{read_fat_counting_writes, read_fat_summary};
use primer::media::Limits;

const LIMITS: Limits = Limits {
    max_file_size: 1 << 20,
    max_total_bytes: 4 << 20,
    max_depth: 16,
    max_entries: 1000,
};

fuzz_target!(|data: &[u8]| {
    let _ = read_fat_summary(Cursor::new(data), "fuzz");
    match read_fat_counting_writes(Cursor::new(data), "fuzz", &LIMITS) {
        Ok((_, writes)) => assert_eq!(writes, 0, "fatfs attempted a write"),
        Err(e) => assert!(e.to_string().contains("fuzz")),
    }
});
