//! The man pages as packaging generates them (clap_mangen over primer's clap definitions, as
//! examples/gen-assets.rs does): every page renders with `man --warnings` silent, the NAME line
//! is not doubled, and every option shown has a description. The help texts name every format,
//! medium and step.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use primer::cli::Cli;

fn pages(dir: &Path) -> Vec<std::path::PathBuf> {
    clap_mangen::generate_to(Cli::command(), dir).unwrap();
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_man_page_renders_cleanly() {
    let have_man = Command::new("sh")
        .args(["-c", "command -v man"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_man,
        "man is not installed (Debian package man-db): run the README's test command"
    );
    let t = tempfile::tempdir().unwrap();
    let pages = pages(t.path());
    assert!(pages.len() >= 15, "{pages:?}");
    for p in &pages {
        let o = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(p)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {o:?}", p.display());
        assert!(
            o.stderr.is_empty(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let src = std::fs::read_to_string(p).unwrap();
        let name = src
            .lines()
            .skip_while(|l| *l != ".SH NAME")
            .nth(1)
            .unwrap_or_default();
        let cmd = name.split(" \\- ").next().unwrap_or_default();
        let about = name.split(" \\- ").nth(1).unwrap_or_default();
        assert!(
            !about.starts_with(&format!("{cmd}:")) && !about.starts_with("primer:"),
            "{}: NAME repeats the command: {name}",
            p.display()
        );
        // An option entry (`.TP` then the flag line) is followed by its description.
        let lines: Vec<&str> = src.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if *l == ".TP" && lines.get(i + 1).is_some_and(|f| f.starts_with("\\fB\\-")) {
                let desc = lines.get(i + 2).copied().unwrap_or_default();
                assert!(
                    !desc.trim().is_empty() && !desc.starts_with(".TP"),
                    "{}: option without a description: {}",
                    p.display(),
                    lines[i + 1]
                );
            }
        }
    }
}

#[test]
fn the_help_describes_the_product_as_it_is() {
    let help = Cli::command().render_long_help().to_string();
    for word in [
        "OpenStack",
        "CloudStack",
        "NoCloud",
        "OVF",
        "ISO9660",
        "VFAT",
        "partition",
        "network",
        "host name",
        "SSH keys",
        "users and passwords",
        "user-data",
        "injected files",
        "private copy",
        "reclaim",
        "make-drive",
        "check",
        "collect-logs",
    ] {
        assert!(help.contains(word), "--help lacks {word:?}:\n{help}");
    }
    assert!(!help.contains("ISO9660 labelled config-2"), "{help}");
}
