//! `cargo xtask lint-migrations`: the migration linter (`notify_db_migrate_cli::lint`, also
//! `notify-db-migrations lint`) on the project's migrations/ or on a directory of SQL migrations.

use std::path::PathBuf;

use anyhow::{Context, Result};
use notify_db_migrate::MigrationSet;
use notify_db_migrate_cli::FileKind;
use notify_db_migrate_cli::lint::{self, Source};

/// Arguments of `cargo xtask lint-migrations`.
#[derive(clap::Args)]
#[command(after_long_help = lint::HELP)]
pub(crate) struct LintMigrationsArgs {
    /// Lint a directory of SQL migrations (`NNNN_slug.up.sql` + `NNNN_slug.down.sql`) instead of
    /// the project's migrations/.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    lint: notify_db_migrate_cli::cli::LintArgs,
}

/// Runs `cargo xtask lint-migrations`: findings on stdout (file names relative to the workspace
/// root), failing when there are any.
pub(crate) fn run(args: LintMigrationsArgs) -> Result<()> {
    // Transaction control is a finding here, not a load error.
    let source = match &args.dir {
        Some(dir) => Source {
            set: MigrationSet::read_dir(dir)
                .map_err(anyhow::Error::from)
                .and_then(|ms| Ok(MigrationSet::new_for_lint(ms)?))
                .with_context(|| format!("loading SQL migrations from {}", dir.display()))?,
            dir: dir.clone(),
            kind: FileKind::Sql,
        },
        None => Source {
            set: MigrationSet::new_for_lint(notify_db_migrations::all())
                .context("loading the migration set (migrations/)")?,
            dir: notify_db_migrations::dir().to_path_buf(),
            kind: FileKind::Rust,
        },
    };
    lint::run(
        &source,
        args.lint.since.as_deref(),
        args.lint.format,
        &crate::util::root(),
        args.lint.pg_major().unwrap_or_default(),
        &mut std::io::stdout().lock(),
    )?;
    Ok(())
}
