//! Hostile drives: network strings that reach rendered files.

#[allow(unused_imports)]
use crate::common::*;
