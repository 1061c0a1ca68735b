//! `lint`: the migration linter ([`crate::lint`]) on the project's migrations.

use std::io::Write;
use std::path::Path;

use super::error::{CliError, io};
use super::project::Project;
use crate::lint::{self, Format, PgMajor, Source};

/// Arguments of `lint`.
#[derive(Debug, Clone, clap::Args)]
pub struct LintArgs {
    /// CI mode: lint only the migrations whose files were added or changed since this git ref.
    #[arg(long, value_name = "GIT_REF")]
    pub since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The PostgreSQL major whose rules apply (default: the server's, when `--database-url` is
    /// given, else 15, the oldest supported).
    #[arg(long, value_name = "MAJOR", env = "NOTIFY_DB_LINT_PG_VERSION")]
    pub pg_version: Option<u32>,
}

impl LintArgs {
    /// The major set by `--pg-version` / `NOTIFY_DB_LINT_PG_VERSION`, if any.
    pub fn pg_major(&self) -> Option<PgMajor> {
        self.pg_version.map(PgMajor)
    }
}

/// Lints `project`'s migrations, writing the findings to `out`; file names are shown relative
/// to the current directory. Fails with [`lint::LintError::Findings`] when anything is found.
pub(super) fn run(
    args: &LintArgs,
    project: &Project,
    pg: PgMajor,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let source = Source {
        set: project.set.clone(),
        dir: project.dir.clone(),
        kind: project.kind,
    };
    let base = std::env::current_dir().map_err(io(Path::new(".")))?;
    lint::run(&source, args.since.as_deref(), args.format, &base, pg, out)?;
    Ok(())
}
