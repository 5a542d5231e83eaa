//! The platform seam: the one place that names what differs between operating systems —
//! device enumeration, live-system actions (host name, entropy), the file ownership and
//! permission model the writer applies, the run lock's primitive, the machine's DMI identity,
//! and how a script is started and killed with everything it started. Linux (`linux/`) is the
//! implementation today; a second one goes beside it behind its own `cfg`, with the same
//! names. Parsing, planning and rendering never import this module (they are the same
//! everywhere and compiled everywhere); only the agent, the writer and the disk code do.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
