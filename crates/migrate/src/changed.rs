//! Which migrations changed since a git ref: what CI lints or steps through on a pull request.
//! Asks the `git` command line of the machine, run in the migrations' directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::MigrationSet;

/// Why the changed migrations could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ChangedError {
    /// `git` could not be started.
    #[error("running git in {dir}: {source}")]
    Spawn {
        /// The directory git was run in.
        dir: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `git` failed (e.g. an unknown ref, or not a git checkout).
    #[error("git {args} failed in {dir}: {stderr}")]
    Git {
        /// The git arguments.
        args: String,
        /// The directory git was run in.
        dir: String,
        /// What git said.
        stderr: String,
    },
}

/// Ids of the migrations of `set` whose files in `dir` changed since `git_ref` (committed,
/// staged, unstaged, untracked). When code shared by the migrations changed (e.g.
/// `migrations/src/lib.rs`, whose barrel helpers shape the SQL of many of them), every
/// migration of the set counts as changed.
pub fn changed_since(
    dir: &Path,
    git_ref: &str,
    set: &MigrationSet,
) -> Result<BTreeSet<String>, ChangedError> {
    let git = |args: &[&str]| -> Result<String, ChangedError> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|source| ChangedError::Spawn {
                dir: dir.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(ChangedError::Git {
                args: args.join(" "),
                dir: dir.display().to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut names = git(&["diff", "--name-only", "--relative", git_ref, "--", "."])?;
    names.push_str(&git(&[
        "ls-files",
        "--others",
        "--exclude-standard",
        "--",
        ".",
    ])?);
    let mut ids = BTreeSet::new();
    for line in names.lines() {
        let Some(name) = Path::new(line.trim()).file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let stem = [".up.sql", ".down.sql", ".rs"]
            .iter()
            .find_map(|s| name.strip_suffix(s));
        match stem {
            Some(stem) if set.get(stem).is_some() => {
                ids.insert(stem.to_owned());
            }
            Some(_) if name.ends_with(".rs") => {
                tracing::warn!(
                    file = line.trim(),
                    "code shared by the migrations changed: checking every migration"
                );
                return Ok(set.migrations().iter().map(|m| m.id().to_owned()).collect());
            }
            _ => {}
        }
    }
    Ok(ids)
}
