//! The fault suite's results table: each durable scenario writes one JSON row into
//! `<target>/fault-results/` (tests/faults/tests/common/durable.rs); `cargo xtask test` clears
//! that folder before the run and assembles the rows into `<target>/fault-results.md` after it.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::util;

/// `CARGO_TARGET_DIR` (relative to the workspace root) or the workspace's `target`.
fn target() -> PathBuf {
    let root = util::root();
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root.join("target"), |d| root.join(d))
}

/// The folder the scenarios write their rows into.
pub fn rows_dir() -> PathBuf {
    target().join("fault-results")
}

/// Removes the rows of an earlier run, so the table holds only this run's scenarios.
pub fn clear() -> Result<()> {
    let dir = rows_dir();
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Prints the table of this run's rows and writes it to `<target>/fault-results.md`; nothing
/// when no scenario ran (e.g. a filtered run).
pub fn write() -> Result<()> {
    let dir = rows_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    if paths.is_empty() {
        return Ok(());
    }
    let mut table = String::from(
        "| scenario | acknowledged | failed | unknown (present) | lost | duplicated | client errors | \
         writes/s before / during / after | recovery to 80 % | commit |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for path in &paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let row: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a results row", path.display()))?;
        let field = |name: &str| match &row[name] {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let errors = row["errors"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} ×{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".to_owned());
        let recovery = row["recovery_s"]
            .as_f64()
            .map_or_else(|| "not reached".to_owned(), |s| format!("{s:.1} s"));
        let commit = field("commit");
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} ({}) | {} | {} | {errors} | {} / {} / {} | {recovery} | {} |",
            field("scenario"),
            field("acknowledged"),
            field("failed"),
            field("unknown"),
            field("unknown_present"),
            field("lost"),
            field("duplicated"),
            field("before_per_s"),
            field("during_per_s"),
            field("after_per_s"),
            commit.get(..12).unwrap_or(&commit),
        );
    }
    println!("\nfault suite results:\n\n{table}");
    let out = target().join("fault-results.md");
    std::fs::write(&out, &table).with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}
