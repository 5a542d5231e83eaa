//! The platform seam: the one place that names what differs between operating systems —
//! device enumeration, live-system actions (host name, entropy), the file ownership and
//! permission model the writer applies, the run lock's primitive, the machine's DMI identity,
//! durability calls, and how a script is started and killed with everything it started. Linux
//! (`linux/`) and Windows (`windows/`) sit side by side behind their own `cfg`, with the same
//! names; only this module names `nix` and `windows_sys` (plus the metadata read-back in
//! `facts/read.rs`). Parsing, planning and rendering never import this module (they are the same
//! everywhere and compiled everywhere); only the agent, the writer and the disk code do.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
pub use windows::*;
