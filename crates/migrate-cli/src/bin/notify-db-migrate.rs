//! `notify-db-migrate`: the migration commands over a directory of `.sql` migrations
//! (`ID.up.sql`, optional `ID.down.sql`; ID is `NNNN_slug` or an imported Alembic revision id). Used by tests and benchmarks, and by
//! deployments that keep their migrations as SQL files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use notify_db_migrate::MigrationSet;
use notify_db_migrate_cli::cli::{self, Command, FileKind, MigrateCli, Project};

/// Arguments: the migrations directory, then the migration command line.
#[derive(Parser)]
#[command(
    name = "notify-db-migrate",
    version,
    about = "Run notify-db migrations from a directory of .sql files"
)]
struct Args {
    /// Directory of ID.up.sql / ID.down.sql files (ID: NNNN_slug, or an Alembic revision id).
    #[arg(long, env = "NOTIFY_DB_MIGRATIONS_DIR")]
    source: PathBuf,
    #[command(flatten)]
    cli: MigrateCli,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let source = args.source;
    // Only a downgrade and the stairway test run down files (and lint reads them): other
    // commands skip reading them.
    let command = args.cli.command.clone();
    cli::init_logging(std::io::stderr);
    let project = move || -> Result<Project, cli::CliError> {
        Ok(Project {
            set: match command {
                Some(Command::Downgrade { .. } | Command::TestDowngrade { .. }) => {
                    MigrationSet::from_dir(&source)?
                }
                // Transaction control is a finding of the linter, not a load error.
                Some(Command::Lint(_)) => {
                    MigrationSet::new_for_lint(MigrationSet::read_dir(&source)?)
                        .map_err(notify_db_migrate::Error::from)?
                }
                _ => MigrationSet::from_dir_without_downs(&source)?,
            },
            dir: source,
            kind: FileKind::Sql,
        })
    };
    cli::main(
        args.cli,
        project,
        std::io::stdout().lock(),
        std::io::stderr(),
    )
    .await
}
