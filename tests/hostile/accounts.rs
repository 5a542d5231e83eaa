//! Hostile drives: users, passwords, homes, sudo rules, write_files and secrets at rest.

#[allow(unused_imports)]
use crate::common::*;
