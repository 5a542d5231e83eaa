//! The Debian package as an operator meets it: `packaging/test-package.sh` builds it, runs
//! lintian (no error, no warning), checks that a rebuild is byte-identical, and installs,
//! upgrades over an edited configuration without a terminal, and purges it in a Debian chroot.
//! Needs root (chroot), like the rest of the suite.

mod common;

use std::process::Command;

#[test]
fn package_is_lintian_clean_reproducible_and_upgrades_without_a_prompt() {
    common::require_root();
    let dir = env!("CARGO_MANIFEST_DIR");
    let o = Command::new("sh")
        .arg(format!("{dir}/packaging/test-package.sh"))
        .current_dir(dir)
        .output()
        .expect("run packaging/test-package.sh");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    println!("{out}");
    assert!(
        o.status.success(),
        "packaging/test-package.sh failed:\n{out}\n{err}"
    );
    for check in [
        "lintian: clean",
        "reproducible:",
        "upgrade over an edited configuration: both settings hold",
        "purge: primer's files removed",
    ] {
        assert!(out.contains(check), "missing {check:?}:\n{out}");
    }
}
