//! `cargo xtask check-if-migrations-to-run`: not built yet.

use anyhow::{Result, bail};

/// Arguments of `cargo xtask check-if-migrations-to-run`.
#[derive(clap::Args)]
pub struct PendingArgs {}

/// Runs `cargo xtask check-if-migrations-to-run`.
pub fn run(_args: PendingArgs) -> Result<()> {
    bail!("not built yet")
}
