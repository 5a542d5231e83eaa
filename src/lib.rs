//! primer: a first-boot agent. This crate holds all logic; `main.rs` only parses the command
//! line and maps outcomes to exit codes.

pub mod media;
