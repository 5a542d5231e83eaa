//! Fuzz target: the ISO9660 reader and label probe over arbitrary bytes, with small limits so a
//! run spends its time on parsing rather than on copying large files.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use primer::media::iso9660::{read_iso9660, read_iso9660_label};
use primer::media::Limits;

const LIMITS: Limits = Limits {
    max_file_size: 1 << 20,
    max_total_bytes: 4 << 20,
    max_depth: 16,
    max_entries: 1000,
};

fuzz_target!(|data: &[u8]| {
    let _ = read_iso9660_label(&mut Cursor::new(data));
    if let Err(e) = read_iso9660(Cursor::new(data), "fuzz", &LIMITS) {
        // Every error names the device.
        assert!(e.to_string().contains("fuzz"));
    }
});
