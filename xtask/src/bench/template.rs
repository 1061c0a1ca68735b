//! `cargo xtask bench template`: not built yet.

use super::Figure;
use anyhow::Result;

/// Runs the template database benchmark.
pub fn run() -> Result<Vec<Figure>> {
    Ok(Vec::new())
}
