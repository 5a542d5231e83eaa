//! primer: a first-boot agent. This crate holds all logic; `main.rs` only parses the command
//! line, sets up logging and maps the outcome to an exit code.
//!
//! The pipeline, module by module (see DESIGN.md):
//! - [`probe`]: which block devices look like a config drive, ranked, each with a reason;
//! - [`media`]: read a device, image file or directory into [`media::DriveFiles`] without mounting;
//! - [`source`]: parse one format into the typed [`model::Instance`] and a warnings report;
//! - [`plan`]: a pure, deterministic list of steps from the instance, host facts and policy;
//! - [`apply`]: the only writer, atomic and confined to the target root;
//! - [`state`]: the local copy and the per-instance record that make re-runs idempotent;
//! - [`status`]: what the last run did (`status.json`), `query` of the instance data, `clean`;
//! - [`config`]: the operator's settings (`/etc/primer/primer.yaml`): probe rules, trust policy;
//! - [`cli`]: the commands that drive the pipeline.

pub mod agent;
pub mod apply;
pub mod cli;
pub mod config;
pub mod disk;
pub mod facts;
pub mod harness;
pub mod make;
pub mod media;
pub mod model;
pub mod net;
pub mod paths;
pub mod plan;
pub mod platform;
pub mod probe;
pub mod progress;
pub mod sort;
pub mod source;
pub mod state;
pub mod status;

/// Errors that stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Media(#[from] media::MediaError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A candidate drive was refused by the trust policy (duplicates, DMI binding, pinning).
    #[error(transparent)]
    Refused(#[from] probe::trust::Refusal),
    #[error(transparent)]
    Network(#[from] net::NetError),
    /// A renderer refused a value it cannot write (the last line of defence behind the model's
    /// checks): nothing is printed or written for that backend.
    #[error("{0}")]
    Render(#[from] net::render::RenderError),
    /// `status`, `query` or `clean` could not do what was asked.
    #[error(transparent)]
    Status(#[from] status::StatusError),
    /// A command was asked for something it does not do (e.g. `scripts` for a non-live root).
    #[error("{0}")]
    Unsupported(String),
    /// `reclaim` could not read or write the disk.
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    /// `make-drive` could not build the drive (the message names the field, file or path).
    #[error(transparent)]
    Make(#[from] make::MakeError),
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

/// Process exit statuses (documented in the README and `primer --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success: changes applied, or output printed.
    Changed = 0,
    /// A fatal error.
    Error = 1,
    /// Some steps failed; the others were applied.
    Partial = 3,
    /// Everything was already applied.
    Unchanged = 10,
    /// No config drive was found: a normal boot, not a failure.
    NoDrive = 11,
    /// A drive was found but refused by the trust policy; nothing was applied.
    Refused = 12,
    /// `reclaim`: nothing to reclaim (done, no config partition, or disabled): a normal boot.
    NothingToReclaim = 13,
    /// `reclaim`: refused (a precondition failed); nothing was written.
    ReclaimRefused = 14,
    /// `status --wait`: the time-out passed before this boot's run (and scripts) finished.
    Timeout = 15,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
    /// The exit of a `run` from its code (recorded in status.json, or returned by the
    /// pipeline): one of the outcomes a run can have; any other code is an error.
    pub fn of_run(code: u8) -> Exit {
        [
            Exit::Changed,
            Exit::Partial,
            Exit::Unchanged,
            Exit::NoDrive,
            Exit::Refused,
        ]
        .into_iter()
        .find(|e| e.code() == code)
        .unwrap_or(Exit::Error)
    }
    pub fn name(self) -> &'static str {
        match self {
            Exit::Changed => "changed",
            Exit::Error => "error",
            Exit::Partial => "partial",
            Exit::Unchanged => "unchanged",
            Exit::NoDrive => "no-drive",
            Exit::Refused => "refused",
            Exit::NothingToReclaim => "nothing-to-reclaim",
            Exit::ReclaimRefused => "reclaim-refused",
            Exit::Timeout => "timeout",
        }
    }
}
