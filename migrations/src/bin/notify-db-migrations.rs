//! `notify-db-migrations`: the project's migration set compiled into the migration commands —
//! the small binary a deployment runs (`notify-db-migrations upgrade`, `current`, `check`, ...)
//! without the developer tooling of xtask. Database from SQLALCHEMY_DATABASE_URI or `--database-url`.

use std::process::ExitCode;

use clap::Parser;
use notify_db_migrate::MigrationSet;
use notify_db_migrate_cli::cli::{self, Command, FileKind, MigrateCli, Project};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = MigrateCli::parse();
    // Transaction control is a finding of the linter, not a load error.
    let lint = matches!(args.command, Some(Command::Lint(_)));
    cli::init_logging(std::io::stderr);
    let project = move || -> Result<Project, cli::CliError> {
        Ok(Project {
            set: if lint {
                MigrationSet::new_for_lint(notify_db_migrations::all())
            } else {
                notify_db_migrations::set()
            }
            .map_err(notify_db_migrate::Error::from)?,
            dir: notify_db_migrations::dir().to_path_buf(),
            kind: FileKind::Rust,
        })
    };
    cli::main(args, project, std::io::stdout().lock(), std::io::stderr()).await
}
