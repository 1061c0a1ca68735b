//! Which migrations changed since a git ref: what `--since REF` narrows the linter and the
//! stairway test to in a pull request's CI. Asks `git` (it must be on `PATH`) in the migrations'
//! directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use notify_db_migrate::MigrationSet;

/// Why the changed migrations could not be found.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be started.
    #[error("running git in {dir}: {source}")]
    Spawn {
        /// The directory git was to run in.
        dir: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `git` ran and failed (an unknown ref, not a repository, ...).
    #[error("git {args} failed in {dir}: {stderr}")]
    Failed {
        /// The git arguments.
        args: String,
        /// The directory it ran in.
        dir: String,
        /// What git wrote to stderr.
        stderr: String,
    },
}

/// The ids of the migrations in `dir` whose files differ from `git_ref` (committed, staged or
/// not) or are new and untracked. When a `.rs` file that is not a migration changed (code the
/// migrations share, e.g. `migrations/src/lib.rs`, whose barrel helpers shape the SQL of many of
/// them), every migration of the set counts as changed.
pub fn since(dir: &Path, git_ref: &str, set: &MigrationSet) -> Result<BTreeSet<String>, GitError> {
    let git = |args: &[&str]| -> Result<String, GitError> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|source| GitError::Spawn {
                dir: dir.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(GitError::Failed {
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
