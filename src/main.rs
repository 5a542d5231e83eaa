//! The `primer` binary: parse the command line, set up logging, call the library, map the
//! outcome to an exit code. No logic lives here.
fn main() {}
