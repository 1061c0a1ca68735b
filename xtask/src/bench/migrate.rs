//! `cargo xtask bench migrate`: filled by the migrate issue.

use super::Figure;
use anyhow::Result;

/// Runs the migration benchmarks.
pub fn run() -> Result<Vec<Figure>> {
    Ok(Vec::new())
}
