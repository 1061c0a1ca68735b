//! `cargo xtask bench pool`: filled by the pool issue.

use super::Figure;
use anyhow::Result;

/// Runs the pool benchmarks.
pub fn run() -> Result<Vec<Figure>> {
    Ok(Vec::new())
}
