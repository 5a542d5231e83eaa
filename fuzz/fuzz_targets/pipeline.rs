//! Fuzz target: the whole read side on arbitrary image bytes: ISO9660 reader, format detection
//! and parsing, planning. Nothing may panic; every error names the device.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use primer::media::iso9660::read_iso9660;
use primer::media::Limits;
use primer::plan::{plan, HostFacts, Policy};
use primer::source::parse_drive;

const LIMITS: Limits = Limits {
    max_file_size: 1 << 20,
    max_total_bytes: 4 << 20,
    max_depth: 16,
    max_entries: 1000,
};

fuzz_target!(|data: &[u8]| {
    let Ok(drive) = read_iso9660(Cursor::new(data), "fuzz", &LIMITS) else {
        return;
    };
    if let Ok((instance, _)) = parse_drive(&drive) {
        let _ = plan(&instance, &drive, &HostFacts::default(), &Policy::default());
    }
});
