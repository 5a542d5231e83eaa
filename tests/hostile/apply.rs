//! Hostile drives: the writer: crashes, concurrent runs, leftovers and I/O errors.

#[allow(unused_imports)]
use crate::common::*;
