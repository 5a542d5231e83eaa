//! The `primer` binary: parse the command line, set up logging to stderr, call the library, map
//! the outcome to an exit code. No logic lives here.
//!
//! On Linux the process starts at a C `main` (`no_main`): the standard library's runtime start
//! (a `/proc/self/maps` read, a signal stack, `sched_getaffinity`...) is skipped and
//! `platform::start` does the part of it primer's behaviour depends on (issue 15).

// Not in the bin's own test build: the test harness brings its main there.
#![cfg_attr(all(target_os = "linux", not(test)), no_main)]

use primer::cli::{Cli, LogLevel};
use primer::Exit;

/// The process's entry point on Linux, called by glibc's start code (`std::env::args` still
/// works: the standard library takes argv from glibc's `.init_array` call).
#[cfg(all(target_os = "linux", not(test)))]
#[no_mangle]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    primer::platform::start::init();
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        // The pre-fault itself waits until the run knows it takes the full path (`cli`).
        primer::platform::start::want_heap_prefault();
    }
    // A panic in a test build (which unwinds) ends with std's code 101, not an abort across
    // the C frame; the shipped build aborts at the panic either way.
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    // std's runtime flushes stdout at exit; without it, this does.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::ffi::c_int::from(code)
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(run())
}

/// The command line parsed, logging set up, the command run: its exit code.
#[cfg_attr(all(target_os = "linux", test), allow(dead_code))]
fn run() -> u8 {
    let cli = Cli::from_env();
    let level = match cli.log_level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    // Under systemd (stderr is the journal stream): native journal entries, so journald keeps
    // each event's priority (`journalctl -p warning -u primer`) and primer's fields
    // (PRIMER_STEP, PRIMER_DEVICE, PRIMER_INSTANCE). Plain text otherwise.
    // The Windows service logs to the event log and its file itself (`Cli::logs_itself`).
    let own = cli.logs_itself();
    let journal = !own
        && primer::platform::journal_stream(2)
        && tracing_journald::layer()
            .map(|layer| {
                use tracing_subscriber::layer::SubscriberExt;
                use tracing_subscriber::util::SubscriberInitExt;
                tracing_subscriber::registry()
                    .with(
                        layer
                            .with_field_prefix(Some("PRIMER".into()))
                            .with_syslog_identifier("primer".into()),
                    )
                    .with(tracing_subscriber::filter::LevelFilter::from_level(level))
                    .init();
            })
            .is_ok();
    if !journal && !own {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(level)
            .with_target(false)
            // Plain text, no colours: tracing-subscriber's `ansi` feature cost 4.9 KB of the
            // static binary's 4 MiB (issue 15); control characters in logged values are still
            // escaped (its sanitisation does not depend on the feature).
            .with_ansi(false)
            .without_time()
            .init();
    }
    // Warnings go to the journal as events with their priority, not as plain stdout lines.
    let brief = journal && primer::platform::journal_stream(1);
    match primer::cli::execute(&cli, brief) {
        Ok(exit) => exit.code(),
        Err(e) => {
            eprintln!("primer: error: {}", chain(&e));
            Exit::Error.code()
        }
    }
}

/// The error and its causes on one line, `error: cause: cause`, a cause left out when the text
/// before it already says it (primer's errors often name their source's message themselves).
///
/// Not through `anyhow`: converting into `anyhow::Error` captures a backtrace when
/// `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` is set, and the shipped binary has no unwind tables
/// (packaging/discard-unwind-tables.ld): the unwinder then aborts the process before the
/// message is printed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}
