//! The fault suite's results table: each durable scenario writes one JSON row into
//! [`results_dir`] (tests/common/durable.rs); `cargo xtask test` clears that folder before the
//! run and assembles the rows into a Markdown table after it ([`table`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why the rows could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// A row (or the folder) could not be read or removed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of the folder is not a results row.
    #[error("{}: not a results row", path.display())]
    NotARow {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// `<target>/fault-results`: `target` is `CARGO_TARGET_DIR` (relative to the workspace root) or
/// the workspace's `target`.
pub fn results_dir(workspace_root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace_root.join("target"), |d| workspace_root.join(d))
        .join("fault-results")
}

/// Removes the rows of an earlier run, so the table holds only this run's scenarios.
pub fn clear(dir: &Path) -> Result<(), ResultsError> {
    match std::fs::remove_dir_all(dir) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(ResultsError::Io {
            what: "removing",
            path: dir.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

/// The Markdown table of the rows in `dir`, one line per scenario by name; `None` when no
/// scenario ran (e.g. a filtered run).
pub fn table(dir: &Path) -> Result<Option<String>, ResultsError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    if paths.is_empty() {
        return Ok(None);
    }
    let mut table = String::from(
        "| scenario | acknowledged | failed | unknown (present) | lost | duplicated | client errors | \
         writes/s before / during / after | recovery to 80 % | commit |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for path in &paths {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
            what: "reading",
            path: path.clone(),
            source,
        })?;
        let row: Value = serde_json::from_str(&text).map_err(|source| ResultsError::NotARow {
            path: path.clone(),
            source,
        })?;
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
    Ok(Some(table))
}
