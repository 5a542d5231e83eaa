//! Fuzz seed corpora: every file under `fuzz/seeds/<target>/` (committed; `fuzz/corpus` is not)
//! runs through the same harness the cargo-fuzz target uses (`primer::source::harness`), so the
//! suite proves the seeds parse without a panic and keep the harness invariants.

use std::path::Path;

use primer::source::harness;

type Harness =
    fn(
        &[u8],
    )
        -> Result<(primer::model::Instance, primer::model::Report), primer::source::SourceError>;

#[test]
fn every_seed_runs_through_its_target_harness() {
    let targets: &[(&str, Harness)] = &[
        ("openstack", harness::openstack_meta_data),
        ("cloudstack", harness::cloudstack),
        ("ovf", harness::ovf_env),
        ("nocloud", harness::nocloud),
    ];
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
            match run(&std::fs::read(seed).unwrap()) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
        println!(
            "{target}: {} seeds, {ok} parsed, {err} refused",
            seeds.len()
        );
        assert!(ok > 0, "{target}: no seed parses");
    }
}
