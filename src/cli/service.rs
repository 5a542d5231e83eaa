//! `primer service install|uninstall|run` (Windows only): the clap face of
//! `platform::windows::service`. `run` is what the Service Control Manager starts: the same
//! pipeline as `primer run` (parsed from the same command line, so every default is the same),
//! with the system drive as the root and logging to the event log and primer's log file.
//! Nothing here talks to Windows directly.

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;

use crate::platform::windows::service as svc;
use crate::{Error, Exit};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Install primer as a service: automatic start as LocalSystem, restart on failure
    /// (10 s, 60 s, 5 min), the event log source `primer`. Run elevated.
    Install,
    /// Stop and remove the service and its event log source (nothing to remove: exit 10).
    Uninstall,
    /// The service's entry point (the SCM starts it; not for a shell): runs `primer run
    /// --root %SystemDrive%\` once and reports its exit code to the SCM.
    Run,
}

fn io(e: std::io::Error) -> Error {
    Error::Io(e)
}

/// Runs one `service` subcommand.
pub fn execute(c: &ServiceCommand, out: &mut impl Write) -> Result<Exit, Error> {
    match c {
        ServiceCommand::Install => {
            let exe = std::env::current_exe().map_err(io)?;
            svc::install(&exe).map_err(io)?;
            writeln!(
                out,
                "service {}: installed ({} service run), automatic start, LocalSystem",
                svc::SERVICE_NAME,
                exe.display()
            )?;
            Ok(Exit::Changed)
        }
        ServiceCommand::Uninstall => {
            if svc::uninstall().map_err(io)? {
                writeln!(out, "service {}: removed", svc::SERVICE_NAME)?;
                Ok(Exit::Changed)
            } else {
                writeln!(out, "service {}: not installed", svc::SERVICE_NAME)?;
                Ok(Exit::Unchanged)
            }
        }
        ServiceCommand::Run => {
            let code = svc::run_as_service(pipeline).map_err(io)?;
            Ok(exit_of(code))
        }
    }
}

/// primer's exit for a code `pipeline` returned.
fn exit_of(code: u8) -> Exit {
    Exit::of_run(code)
}

/// The service's run: `primer run --root <system drive>` with the service's log layer as the
/// process's global subscriber, so the threads the run starts (progress lines, script output
/// readers) log to the event log and the file too. When the binary already installed a global
/// logger (its stderr one, which reaches nobody under the SCM), the layer can only be this
/// thread's default: said in the log, and the run goes on.
fn pipeline() -> u8 {
    let open = || {
        tracing_subscriber::registry()
            .with(svc::ServiceLog::open(&svc::log_dir(), tracing::Level::INFO))
    };
    if tracing::subscriber::set_global_default(open()).is_ok() {
        return run_service_pipeline();
    }
    tracing::subscriber::with_default(open(), || {
        tracing::warn!(
            "service: a global logger was already set: only the service thread's events \
             reach this log"
        );
        run_service_pipeline()
    })
}

/// `primer run --root <system drive>`, logged at its start and end.
fn run_service_pipeline() -> u8 {
    let root = crate::platform::system_root();
    let args: Vec<OsString> = vec![
        "primer".into(),
        "run".into(),
        "--root".into(),
        root.into_os_string(),
    ];
    let cli = match super::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("service: {e}");
            return Exit::Error.code();
        }
    };
    tracing::info!("service: primer run started");
    let code = match super::execute(&cli, true) {
        Ok(exit) => exit.code(),
        Err(e) => {
            tracing::error!("service: {e}");
            Exit::Error.code()
        }
    };
    tracing::info!("service: primer run ended with exit code {code}");
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_back() {
        for e in [Exit::Changed, Exit::Partial, Exit::Unchanged, Exit::NoDrive] {
            assert_eq!(exit_of(e.code()).code(), e.code());
        }
        assert_eq!(exit_of(200).code(), Exit::Error.code());
    }

    #[test]
    fn the_service_command_line_parses() {
        let cli = super::super::Cli::try_parse_from(["primer", "service", "install"]).unwrap();
        assert!(matches!(
            cli.command,
            super::super::Command::Service(ServiceCommand::Install)
        ));
        assert!(super::super::Cli::try_parse_from(["primer", "run", "--root", r"C:\"]).is_ok());
    }
}
