//! Hostile drives: drive readers, messages, lookups and steps that claim one path.

#[allow(unused_imports)]
use crate::common::*;
