//! `cargo xtask test-migration-downgrade`: not built yet.

use anyhow::{Result, bail};

/// Arguments of `cargo xtask test-migration-downgrade`.
#[derive(clap::Args)]
pub struct StairwayArgs {}

/// Runs `cargo xtask test-migration-downgrade`.
pub fn run(_args: StairwayArgs) -> Result<()> {
    bail!("not built yet")
}
