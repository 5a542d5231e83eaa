//! The process start primer does itself on Linux (`platform::linux::start`, `no_main`): what
//! the standard library's runtime did that operators can see is still done. Runs the real
//! binary. (A closed pipe on stdout: `tests/cli.rs`.)

#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

use common::*;

/// Started with its standard streams closed (a careless service manager, `primer … >&-`):
/// primer opens them on /dev/null first, so no drive or state file it opens later takes fd 0-2
/// and receives a report or a log line; the command runs as it would with them open.
#[test]
fn closed_standard_streams_are_reopened_on_dev_null() {
    let t = tempfile::tempdir().unwrap();
    write_drive_tree(t.path(), &sample_meta("start-host", &[]));
    let src = t.path().to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_primer");
    let open = Command::new(bin)
        .args(["show", "--source", src])
        .output()
        .unwrap();
    assert!(open.status.success(), "{open:?}");
    assert!(!open.stdout.is_empty(), "{open:?}");
    for redirect in ["<&- >&-", "<&- >&- 2>&-", ">&- 2>&-"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" show --source \"$1\" {redirect}"))
            .args([bin, src])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), open.status.code(), "{redirect}: {out:?}");
        assert!(out.stdout.is_empty(), "{redirect}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("error"), "{redirect}: {err}");
    }
}

/// The reopening itself, seen by `strace` (the test above cannot tell /dev/null from a closed
/// descriptor: primer ignores a failed report write either way): descriptors 0, 1 and 2 are
/// opened on /dev/null before anything else is opened. Skipped without `strace`.
#[test]
fn closed_standard_streams_get_dev_null_first() {
    let t = tempfile::tempdir().unwrap();
    let trace = t.path().join("trace");
    let Ok(out) = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat,open", "-o"])
        .arg(&trace)
        .args(["sh", "-c", "exec \"$0\" --version <&- >&- 2>&-"])
        .arg(env!("CARGO_BIN_EXE_primer"))
        .output()
    else {
        eprintln!("strace not found: skipped");
        return;
    };
    assert!(out.status.success(), "{out:?}");
    let trace = std::fs::read_to_string(&trace).unwrap();
    // The shell's own opens come first; primer's start at the last execve (the exec).
    let primer = &trace[trace.rfind("execve").unwrap_or(0)..];
    let opens: Vec<&str> = primer
        .lines()
        .filter(|l| l.contains("open"))
        .filter(|l| !l.contains(".so") && !l.contains("ld.so.cache"))
        .take(3)
        .collect();
    assert_eq!(opens.len(), 3, "{trace}");
    for (fd, line) in opens.iter().enumerate() {
        assert!(
            line.contains("\"/dev/null\", O_RDWR") && line.ends_with(&format!("= {fd}")),
            "{fd}: {line}\n{trace}"
        );
    }
}

/// The exit code is the command's (the C `main` returns it) and what was printed reaches stdout
/// (std's runtime flushed it at exit; primer's `main` now does).
#[test]
fn exit_code_and_output_survive_the_own_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_primer"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("primer "),
        "{out:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["show", "--source", "/nonexistent-source"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(out.status.code().is_some(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("primer: error"),
        "{out:?}"
    );
}
