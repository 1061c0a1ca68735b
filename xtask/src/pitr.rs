//! `cargo xtask pitr-drill`: not built yet.

use anyhow::{Result, bail};

/// Arguments of `cargo xtask pitr-drill`.
#[derive(clap::Args)]
pub struct PitrArgs {}

/// Runs `cargo xtask pitr-drill`.
pub fn run(_args: PitrArgs) -> Result<()> {
    bail!("not built yet")
}
