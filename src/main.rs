//! The `primer` binary: parse the command line, set up logging to stderr, call the library, map
//! the outcome to an exit code. No logic lives here.

use std::io::IsTerminal;
use std::process::ExitCode;

use primer::cli::{Cli, LogLevel};
use primer::Exit;

fn main() -> ExitCode {
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
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .init();
    }
    // Warnings go to the journal as events with their priority, not as plain stdout lines.
    let brief = journal && primer::platform::journal_stream(1);
    match primer::cli::execute(&cli, brief) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("primer: error: {}", chain(&e));
            ExitCode::from(Exit::Error.code())
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
