//! Build script: tells cargo that the static link's function order (packaging/hot-functions.txt,
//! which `cargo build-static` hands to the linker) is an input of the binary, so a new list
//! relinks it. It must not generate code, read the environment or probe the host.
fn main() {
    println!("cargo:rerun-if-changed=packaging/hot-functions.txt");
}
