//! `notify-db-migrations`: the project's migration set compiled into the migration commands —
//! the small binary a deployment runs (`notify-db-migrations upgrade`, `current`, `check`, ...)
//! without the developer tooling of xtask. Database from SQLALCHEMY_DATABASE_URI or `--database-url`.

use std::process::ExitCode;

use clap::Parser;
use notify_db_config::Settings;
use notify_db_migrate::cli::{self, FileKind, MigrateCli, Project};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = MigrateCli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = async {
        let set = notify_db_migrations::set().map_err(notify_db_migrate::Error::from)?;
        let project = Project {
            set,
            dir: notify_db_migrations::dir().to_path_buf(),
            kind: FileKind::Rust,
        };
        let mut out = std::io::stdout().lock();
        cli::run(args, &project, Settings::from_env(), &mut out).await
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
