//! Fuzz target: the OpenStack source over arbitrary `meta_data.json` bytes, then the planner
//! over whatever instance comes out (host name sanitising, key validation, instance id checks).
#![no_main]

use libfuzzer_sys::fuzz_target;
use primer::media::DriveFiles;
use primer::plan::{plan, HostFacts, PasswdEntry, Policy};
use primer::source::parse_drive;

fuzz_target!(|data: &[u8]| {
    let mut drive = DriveFiles::new("fuzz", "iso9660");
    drive
        .files
        .insert("openstack/latest/meta_data.json".into(), data.to_vec().into());
    drive
        .files
        .insert("openstack/content/0000".into(), b"x".to_vec().into());
    match parse_drive(&drive) {
        Ok((instance, _)) => {
            let facts = HostFacts {
                passwd: vec![PasswdEntry {
                    name: "root".into(),
                    uid: 0,
                    gid: 0,
                    home: "/root".into(),
                }],
                ..Default::default()
            };
            let p = plan(&instance, &drive, &facts, &Policy::default());
            // Planning is deterministic.
            assert_eq!(p, plan(&instance, &drive, &facts, &Policy::default()));
        }
        Err(e) => assert!(e.to_string().contains("fuzz")),
    }
});
