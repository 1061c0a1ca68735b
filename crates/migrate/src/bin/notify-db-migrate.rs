//! `notify-db-migrate`: the migration commands over a directory of `.sql` migrations
//! (`NNNN_slug.up.sql`, optional `NNNN_slug.down.sql`). Used by tests and benchmarks, and by
//! deployments that keep their migrations as SQL files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use notify_db_config::Settings;
use notify_db_migrate::MigrationSet;
use notify_db_migrate::cli::{self, FileKind, MigrateCli, Project};

/// Arguments: the migrations directory, then the migration command line.
#[derive(Parser)]
#[command(
    name = "notify-db-migrate",
    version,
    about = "Run notify-db migrations from a directory of .sql files"
)]
struct Args {
    /// Directory of NNNN_slug.up.sql / NNNN_slug.down.sql files.
    #[arg(long, env = "NOTIFY_DB_MIGRATIONS_DIR")]
    source: PathBuf,
    #[command(flatten)]
    cli: MigrateCli,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = async {
        let set = MigrationSet::from_dir(&args.source)?;
        let project = Project {
            set,
            dir: args.source.clone(),
            kind: FileKind::Sql,
        };
        let mut out = std::io::stdout().lock();
        cli::run(args.cli, &project, Settings::from_env(), &mut out).await
    }
    .await;
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
