//! `cargo xtask doctor`: not built yet.

use anyhow::{Result, bail};

/// Arguments of `cargo xtask doctor`.
#[derive(clap::Args)]
pub struct DoctorArgs {}

/// Runs `cargo xtask doctor`.
pub fn run(_args: DoctorArgs) -> Result<()> {
    bail!("not built yet")
}
