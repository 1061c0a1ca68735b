//! `cargo xtask lint-migrations`: not built yet.

use anyhow::{Result, bail};

/// Arguments of `cargo xtask lint-migrations`.
#[derive(clap::Args)]
pub struct LintArgs {}

/// Runs `cargo xtask lint-migrations`.
pub fn run(_args: LintArgs) -> Result<()> {
    bail!("not built yet")
}
