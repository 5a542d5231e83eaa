//! Generates the man pages (one per command) and shell completions from primer's clap
//! definitions, for packaging: `cargo run --example gen-assets -- OUTDIR`. Writes only into
//! OUTDIR; kept out of the primer binary so it adds nothing to its size.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use primer::cli::Cli;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/assets".into()),
    );
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "primer", &comp)?;
    }
    println!("{}", out.display());
    Ok(())
}
