//! Fuzz target: GPT/MBR partition table reading (gptman and primer's own MBR reader, behind
//! primer's guards), the probe's signature reader, and reading each partition found through the
//! offset reader.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use primer::media::part::{read_partition_table, OffsetReader};
use primer::probe::sig::read_signature;

fuzz_target!(|data: &[u8]| {
    let _ = read_signature(&mut Cursor::new(data), "fuzz");
    for sector in [512u64, 4096] {
        match read_partition_table(&mut Cursor::new(data), "fuzz", sector) {
            Ok(Some(t)) => {
                for p in &t.partitions {
                    assert!(p.start + p.size <= data.len() as u64, "partition past the end");
                    let mut r = OffsetReader::new(Cursor::new(data), p.start, p.size);
                    let _ = read_signature(&mut r, "fuzz");
                }
            }
            Ok(None) => {}
            Err(e) => assert!(e.to_string().contains("fuzz")),
        }
    }
});
