//! Fuzz seed corpora: every file under `fuzz/seeds/<target>/` (and the committed iso9660 corpus)
//! runs through the same harness the cargo-fuzz target uses (`primer::harness`), so the
//! suite proves the seeds parse without a panic and keep the harness invariants.

use std::path::Path;

use primer::harness;

/// Runs one seed through a target's harness; `true` when it parsed, `false` when refused.
type Harness = fn(&[u8]) -> bool;

#[test]
fn every_seed_runs_through_its_target_harness() {
    let targets: &[(&str, Harness)] = &[
        ("openstack", |d| harness::openstack_meta_data(d).is_ok()),
        ("cloudstack", |d| harness::cloudstack(d).is_ok()),
        ("ovf", |d| harness::ovf_env(d).is_ok()),
        ("nocloud", |d| harness::nocloud(d).is_ok()),
        ("record", harness::record),
        // User data never refuses: problems are warnings. A seed "parses" when it yields
        // something (a script, a boothook or cloud-config).
        ("userdata", |d| !harness::userdata(d).0.is_empty()),
    ];
    // The planning target replays the user-data seeds (a plan always has its record steps).
    for seed in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/userdata"))
        .unwrap()
        .flatten()
    {
        assert!(harness::plan_user_data(&std::fs::read(seed.path()).unwrap()) > 0);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, run) in targets {
        let dir = root.join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "{target}: no seeds");
        let (mut ok, mut err) = (0, 0);
        for seed in &seeds {
            if run(&std::fs::read(seed).unwrap()) {
                ok += 1;
            } else {
                err += 1;
            }
        }
        println!(
            "{target}: {} seeds, {ok} parsed, {err} refused",
            seeds.len()
        );
        assert!(ok > 0, "{target}: no seed parses");
    }
}

/// The committed, minimised ISO9660 corpus (`fuzz/corpus/iso9660`, a finished campaign) through
/// the reader with the fuzz target's limits: no panic, and every refusal names the device.
#[test]
fn the_iso9660_corpus_replays_without_a_panic() {
    use primer::media::iso9660::{read_iso9660, read_iso9660_label};
    use primer::media::Limits;
    use std::io::Cursor;
    let limits = Limits {
        max_file_size: 1 << 20,
        max_total_bytes: 4 << 20,
        max_depth: 16,
        max_entries: 1000,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/iso9660");
    let (mut ok, mut refused) = (0, 0);
    for e in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let data = std::fs::read(e.path()).unwrap();
        let _ = read_iso9660_label(&mut Cursor::new(&data));
        match read_iso9660(Cursor::new(&data), "fuzz", &limits) {
            Ok(_) => ok += 1,
            Err(err) => {
                assert!(
                    err.to_string().contains("fuzz"),
                    "{}: {err}",
                    e.path().display()
                );
                refused += 1;
            }
        }
    }
    println!("iso9660 corpus: {ok} read, {refused} refused");
    assert!(ok + refused > 100, "{}: corpus missing", dir.display());
}
