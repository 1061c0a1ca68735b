//! `cargo xtask migrate`: a thin shell over `notify_db_migrate_cli::cli` with the project's migration
//! set (`migrations/`) and `Settings::from_env()` (SQLALCHEMY_DATABASE_URI, or `--database-url`).

use anyhow::{Context, Result};
use clap::Parser;
use notify_db_migrate_cli::cli::{self, FileKind, MigrateCli, Project};

use crate::util;

/// Arguments of `cargo xtask migrate` (all passed on, `--help` included, so it shows the migration CLI's help).
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct MigrateArgs {
    /// Arguments passed to the migration CLI.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs the migration CLI.
pub(crate) fn run(args: MigrateArgs) -> Result<()> {
    let cli = match MigrateCli::try_parse_from(
        std::iter::once("cargo xtask migrate".to_owned()).chain(args.args),
    ) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let set = notify_db_migrations::set().context("loading the migration set (migrations/)")?;
    let project = Project {
        set,
        dir: notify_db_migrations::dir().to_path_buf(),
        kind: FileKind::Rust,
    };
    let settings = notify_db_config::Settings::from_env();
    let code = util::runtime()?.block_on(async {
        let mut out = std::io::stdout().lock();
        cli::run(cli, &project, settings, &mut out).await
    })?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
