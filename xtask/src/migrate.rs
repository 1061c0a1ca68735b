//! `cargo xtask migrate`: filled by the migrate issue.

use anyhow::{Result, bail};

/// Arguments of `cargo xtask migrate`.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Arguments passed to the migration CLI.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs the migration CLI.
pub fn run(_args: MigrateArgs) -> Result<()> {
    bail!("migrate is not built yet")
}
