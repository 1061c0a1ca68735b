//! `cargo xtask test-migration-downgrade`: the stairway test ([`notify_db_migrate_cli::stairway`],
//! also `notify-db-migrations test-downgrade`) on the database of `--database-url` /
//! SQLALCHEMY_DATABASE_URI, or on a throwaway test database of the harness clusters.

use std::path::PathBuf;

use anyhow::{Context, Result};
use notify_db_config::DatabaseUri;
use notify_db_migrate::MigrationSet;
use notify_db_migrate_cli::stairway::{self, Mode};
use notify_db_testdb::TestDb;

use crate::util;

/// Arguments of `cargo xtask test-migration-downgrade`.
#[derive(clap::Args)]
pub(crate) struct StairwayArgs {
    /// An EMPTY database to run on (refused when it has tables or applied migrations). Default:
    /// SQLALCHEMY_DATABASE_URI when set, else a throwaway test database on the harness clusters.
    #[arg(long, env = "SQLALCHEMY_DATABASE_URI", hide_env_values = true)]
    database_url: Option<String>,
    /// Use a throwaway test database even when SQLALCHEMY_DATABASE_URI is set.
    #[arg(long)]
    fresh: bool,
    /// Test a directory of SQL migrations (`NNNN_slug.up.sql` + `.down.sql`) instead of migrations/.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Only the migrations added or changed since this git ref (and the ones after them).
    #[arg(long, value_name = "GIT_REF", conflicts_with = "to")]
    since: Option<String>,
    /// The reference's shape: upgrade to head, downgrade to REV, upgrade to head again.
    #[arg(long, value_name = "REV")]
    to: Option<String>,
}

/// Runs `cargo xtask test-migration-downgrade`.
pub(crate) fn run(args: StairwayArgs) -> Result<()> {
    let (set, dir) = match &args.dir {
        Some(d) => (
            MigrationSet::from_dir(d)
                .with_context(|| format!("loading SQL migrations from {}", d.display()))?,
            d.clone(),
        ),
        None => (
            notify_db_migrations::set().context("loading the migration set (migrations/)")?,
            notify_db_migrations::dir().to_path_buf(),
        ),
    };
    let mode = Mode::from_flags(args.to.as_deref(), args.since.as_deref(), &dir);
    let database_url = if args.fresh {
        None
    } else {
        args.database_url.clone()
    };
    util::runtime()?.block_on(async {
        // Keep the throwaway database alive until the end; it is dropped afterwards.
        let (uri, _db) = match &database_url {
            // The URI's sslmode, as the service and the migration CLI connect.
            Some(u) => (DatabaseUri::parse(u, "SQLALCHEMY_DATABASE_URI")?, None),
            None => {
                let db = TestDb::create()
                    .await
                    .context("creating a throwaway test database on the harness clusters")?;
                // The harness clusters serve no TLS.
                let uri = format!("{}?sslmode=disable", db.primary_uri());
                (
                    DatabaseUri::parse(&uri, "the throwaway test database")?,
                    Some(db),
                )
            }
        };
        Ok(stairway::run(&uri, set, &mode, &mut std::io::stdout().lock()).await?)
    })
}
