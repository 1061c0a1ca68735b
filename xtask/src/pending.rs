//! `cargo xtask check-if-migrations-to-run`: prints `yes` when the database is behind the
//! migration set's head, `no` when it is at head (the reference's output). An unreachable database,
//! or one at a revision this code does not know (ahead of it), is an error, never `no`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use notify_db_config::{DatabaseUri, Settings};
use notify_db_migrate::pending::migrations_pending;
use notify_db_migrate::{MigrationSet, Migrator};

use crate::util;

/// Arguments of `cargo xtask check-if-migrations-to-run`.
#[derive(clap::Args)]
#[command(
    after_long_help = "Exit status: 0 after printing yes or no; with --exit-code, 0 for \
    `no`, 1 for `yes`. An error (database unreachable, or ahead of this code) prints no answer and \
    exits 1, or 2 with --exit-code so that scripts can tell it from `yes`."
)]
pub(crate) struct PendingArgs {
    /// The database (default: SQLALCHEMY_DATABASE_URI, through the settings).
    #[arg(long, hide_env_values = true)]
    database_url: Option<String>,
    /// Exit 1 when migrations are pending, 0 when not (2 on error).
    #[arg(long)]
    exit_code: bool,
    /// Give up (an error) when the database has not answered within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    timeout: u64,
    /// Check against a directory of SQL migrations (`NNNN_slug.up.sql`) instead of migrations/.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
}

/// Runs `cargo xtask check-if-migrations-to-run`.
pub(crate) fn run(args: PendingArgs) -> Result<()> {
    match pending(&args) {
        Ok(pending) => {
            println!("{}", if pending { "yes" } else { "no" });
            if pending && args.exit_code {
                std::process::exit(1);
            }
            Ok(())
        }
        Err(e) if args.exit_code => {
            eprintln!("error: {}", util::one_line(&e));
            std::process::exit(2);
        }
        Err(e) => Err(e),
    }
}

/// Whether the database is behind the set's head.
fn pending(args: &PendingArgs) -> Result<bool> {
    let set = match &args.dir {
        Some(d) => MigrationSet::from_dir(d)
            .with_context(|| format!("loading SQL migrations from {}", d.display()))?,
        None => notify_db_migrations::set().context("loading the migration set (migrations/)")?,
    };
    let uri = match &args.database_url {
        Some(u) => DatabaseUri::parse(u, "--database-url")?,
        None => {
            Settings::from_env()
                .context("reading the settings (SQLALCHEMY_DATABASE_URI)")?
                .primary
        }
    };
    let migrator = Migrator::new(set, &uri)?;
    let limit = std::time::Duration::from_secs(args.timeout.max(1));
    Ok(util::runtime()?.block_on(migrations_pending(&migrator, Some(limit)))?)
}
