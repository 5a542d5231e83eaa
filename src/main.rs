//! The `primer` binary: parse the command line, set up logging to stderr, call the library, map
//! the outcome to an exit code. No logic lives here.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use primer::cli::{Cli, LogLevel};
use primer::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.log_level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    match primer::cli::execute(&cli).map_err(anyhow::Error::from) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("primer: error: {e:#}");
            ExitCode::from(Exit::Error.code())
        }
    }
}
