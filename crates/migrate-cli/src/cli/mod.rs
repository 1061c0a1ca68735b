//! The migration command line: `upgrade [TARGET]` (the default), `downgrade
//! [TARGET|-N]`, `current`, `history`, `revision -m MSG [--autogenerate --from-db URL | --from-sql
//! FILE]`, `revision --baseline --from-db URL [--data TABLE...]`, `check [--exit-code]`,
//! `check-head`, `stamp REV [--force]`, `lint`, `test-downgrade [--to REV | --since GIT_REF]`,
//! `doctor [--max-lag-seconds S]`, `drift [--format text|json|github] [--scratch-url URL]`.
//!
//! A service embeds it by parsing [`MigrateCli`] and calling [`run`] with its own [`Project`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_db_config::{ConfigError, DatabaseUri, Settings};

pub use crate::FileKind;
use notify_db_migrate::Prefetch;
use notify_db_migrate::{Direction, Error, MigrationSet, Migrator, Options, Target};
use tokio::task::JoinHandle;

mod baseline;
mod doctor;
mod drift;
mod import_sql;
mod lint;
mod revision;
mod stairway;
mod wait;

pub use baseline::{BASELINE_DIR, session_free};
pub use lint::LintArgs;
use revision::{autogenerate, write_head_if_local};
pub use revision::{check_head, checked_slug, slug, write_revision};

/// Name of the file holding the head revision, next to the migrations.
pub const HEAD_FILE: &str = ".current-alembic-head";

/// The database whose runs update [`HEAD_FILE`].
pub const LOCAL_DB_NAME: &str = "notification_api";

/// Arguments of the migration commands.
#[derive(Debug, clap::Parser)]
#[command(
    name = "migrate",
    about = "Run or inspect notify-db migrations (Alembic-compatible)"
)]
pub struct MigrateCli {
    /// Database URI (default: DATABASE_MIGRATION_URI, else SQLALCHEMY_DATABASE_URI).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Print the SQL an upgrade or downgrade would run, without connecting.
    #[arg(long, global = true)]
    pub sql: bool,
    /// With --sql: the revision to start from (default: base for upgrade, head for downgrade).
    #[arg(long, global = true)]
    pub from: Option<String>,
    /// lock_timeout for migrations (e.g. 1s, 500ms; default from the settings).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// statement_timeout for migrations that set none of their own (e.g. 2h; 0: none, the
    /// default from the settings).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub statement_timeout: Option<Duration>,
    /// Attempts in all at a migration that hits lock timeouts (default from the settings: 10).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Delay between attempts (default from the settings: 10s).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub retry_delay: Option<Duration>,
    /// Give up waiting for another runner's advisory lock after this long (default: wait).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub advisory_lock_wait: Option<Duration>,
    /// Run even if an applied migration's SQL changed since it was applied.
    #[arg(long, global = true)]
    pub allow_changed_checksums: bool,
    /// Before a command that connects, wait up to this long (e.g. 60s) for the database to
    /// accept connections (refused, starting up, host not resolving yet).
    #[arg(long, global = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait_for_db: Option<Duration>,
    /// The command (default: upgrade to head).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One migration command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Upgrade to head, or to TARGET (a revision id, a unique prefix like 0004, or +N).
    Upgrade {
        /// Target revision (default: head).
        target: Option<String>,
    },
    /// Downgrade one step, to TARGET (a revision id or `base`), or -N steps.
    Downgrade {
        /// Target revision, `base` or -N (default: -1).
        #[arg(allow_hyphen_values = true)]
        target: Option<String>,
    },
    /// Print the revision the database is at.
    Current,
    /// List the migrations with applied/pending marks and timestamps.
    History,
    /// Write the next numbered migration file from a template, or with --autogenerate from the
    /// difference between the migrations' head and a desired schema.
    Revision {
        /// What the migration does (becomes the file name's slug; with --baseline, only the
        /// file's comment).
        #[arg(short = 'm', long, required_unless_present = "baseline")]
        message: Option<String>,
        /// Write the migration(s) from a schema difference (needs --from-db or --from-sql).
        #[arg(long, requires = "desired")]
        autogenerate: bool,
        /// The desired schema: a development database (URI); with --baseline, the database at
        /// the revision the set continues from.
        #[arg(long, group = "desired")]
        from_db: Option<String>,
        /// The desired schema: an SQL file, applied to a scratch database.
        #[arg(
            long,
            group = "desired",
            requires = "autogenerate",
            value_name = "FILE"
        )]
        from_sql: Option<PathBuf>,
        /// Write the set's baseline from --from-db: id = its revision, SQL = its schema
        /// (pg_dump, without alembic_version, the journal and pg_dump's session preamble).
        #[arg(long, requires = "from_db", conflicts_with = "autogenerate")]
        baseline: bool,
        /// With --baseline: also the rows of these (reference) tables, as INSERTs.
        #[arg(long, value_name = "TABLE", num_args = 1.., requires = "baseline")]
        data: Vec<String>,
    },
    /// Print `yes` when migrations are pending, `no` otherwise.
    Check {
        /// Exit with status 1 when migrations are pending (0 otherwise).
        #[arg(long)]
        exit_code: bool,
    },
    /// Fail when the head file does not match the set's head (two branches added the same number).
    CheckHead,
    /// Stairway test on an EMPTY database: each migration upgraded, downgraded (the schema must
    /// be as before) and upgraded again (as after the first upgrade). Leaves it at head.
    TestDowngrade {
        /// The reference's shape instead: upgrade to head, downgrade to REV, upgrade to head.
        #[arg(long, value_name = "REV", conflicts_with = "since")]
        to: Option<String>,
        /// Only the migrations changed since this git ref (and the ones after them).
        #[arg(long, value_name = "GIT_REF")]
        since: Option<String>,
    },
    /// Check the configured servers, settings and migration state the way the service would
    /// use them (one line per check, a suggested fix under every failure).
    Doctor {
        /// Replica lag (seconds) above which the lag check fails.
        #[arg(long, default_value_t = 30.0)]
        max_lag_seconds: f64,
        /// Print the outcome, the migration lock and the journal as Prometheus metrics instead
        /// of the report (for a textfile collector).
        #[arg(long)]
        metrics: bool,
    },
    /// Write REV into alembic_version without running anything (as Alembic's stamp).
    Stamp {
        /// A revision of the set (or a unique prefix), `head` or `base`.
        revision: String,
        /// Stamp a revision this set does not know (e.g. to hand the database back to Alembic).
        #[arg(long)]
        force: bool,
    },
    /// Compare the database's schema with the one the migrations produce at its revision
    /// (rebuilt in a scratch database). Read-only on the database. Exit status: 0 equal, 1
    /// drift, 2 cannot tell.
    Drift {
        /// Output: text (grouped by object), json, or github (workflow annotations).
        #[arg(long, value_enum, default_value_t = crate::drift::Format::Text)]
        format: crate::drift::Format,
        /// Server for the scratch database (default: the database's own server; the role needs
        /// CREATEDB there).
        #[arg(long, value_name = "URL")]
        scratch_url: Option<String>,
    },
    /// Lint the migrations' SQL, up and down (squawk's rules and ours; see --help).
    #[command(after_long_help = crate::lint::HELP)]
    Lint(LintArgs),
    /// Write one linked .sql migration per revision of Alembic's offline SQL (`alembic upgrade
    /// --sql A:B`, `flask db upgrade --sql`); A must be the directory's head (or base).
    ImportAlembicSql {
        /// The offline SQL file.
        file: PathBuf,
    },
}

/// A project's migrations: the set, the directory its files live in, their kind.
#[derive(Debug, Clone)]
pub struct Project {
    /// The migration set. For `lint`, build it with [`MigrationSet::new_for_lint`] (and with
    /// its downs), so that transaction control is a finding rather than a load error.
    pub set: MigrationSet,
    /// The directory of the migration files (and of the head file).
    pub dir: PathBuf,
    /// The kind of file `revision` writes.
    pub kind: FileKind,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The engine failed.
    #[error(transparent)]
    Migrate(#[from] Error),
    /// The settings could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A refused command, with the reason.
    #[error("{0}")]
    Refused(String),
    /// The TLS connector for the URI's `sslmode` could not be built.
    #[error(transparent)]
    Tls(#[from] notify_db_connect::TlsError),
    /// The pending check had no answer.
    #[error(transparent)]
    Pending(Box<notify_db_migrate::pending::PendingError>),
    /// The doctor report could not be written.
    #[error(transparent)]
    Doctor(#[from] crate::doctor::DoctorError),
    /// `revision --autogenerate` failed.
    #[error(transparent)]
    Autogen(#[from] crate::autogen::AutogenError),
    /// `lint` found something, or could not lint.
    #[error(transparent)]
    Lint(#[from] crate::lint::LintError),
    /// `test-downgrade` failed or could not run.
    #[error(transparent)]
    Stairway(#[from] crate::stairway::StairwayError),
    /// `import-alembic-sql` could not read the offline SQL.
    #[error(transparent)]
    Import(#[from] crate::alembic_sql::ImportError),
    /// `--wait-for-db`: the database did not accept a connection in time.
    #[error(
        "the database at {hosts} did not accept a connection within {waited:?} (--wait-for-db, \
         {attempts} attempts); last cause: {cause}"
    )]
    DatabaseNotReady {
        /// The hosts waited for (`host:port`, comma separated).
        hosts: String,
        /// How long it waited.
        waited: Duration,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        cause: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Sets up the `tracing` output of a migration binary on `writer` (the binaries pass stderr):
/// `RUST_LOG` filters, default `info`. The library itself never picks an output.
pub fn init_logging<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .init();
}

/// The `main` of a migration binary: runs the command on the set `project` gives, writes its
/// output to `out`, a failure as one `error:` line to `err`, and returns the exit code (the
/// binaries pass stdout and stderr, after [`init_logging`]).
pub async fn main(
    args: MigrateCli,
    project: impl FnOnce() -> Result<Project, CliError> + Send + 'static,
    mut out: impl Write,
    mut err: impl Write,
) -> std::process::ExitCode {
    let result = async {
        let settings = Settings::from_env();
        // An upgrade's or downgrade's connection and first read need no set: they go on while
        // the set loads (a large `.sql` directory takes about as long as connecting).
        // With --wait-for-db, the run waits for the server first (in `run_with`).
        let prefetch = (runs_migrations(&args) && args.wait_for_db.is_none())
            .then(|| database_uri(&args, &settings).ok())
            .flatten()
            .map(|uri| tokio::spawn(async move { Prefetch::start(&uri).await }));
        let loaded = tokio::task::spawn_blocking(project).await;
        let project = match loaded {
            Ok(Ok(project)) => project,
            Ok(Err(e)) => {
                prefetch.inspect(JoinHandle::abort);
                return Err(e);
            }
            Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
        };
        run_with(args, &project, settings, &mut out, prefetch).await
    }
    .await;
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // Nothing more can be said if stderr itself fails.
            let _ = writeln!(err, "error: {}", notify_db_migrate::one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs one command. `settings` supplies the database URI and migration options (not needed by
/// `revision`, `check-head` and `--sql`); output goes to `out`, progress to `tracing`.
/// Returns the process exit status (non-zero only for `check --exit-code` with pending migrations).
pub async fn run(
    cli: MigrateCli,
    project: &Project,
    settings: Result<Settings, ConfigError>,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    run_with(cli, project, settings, out, None).await
}

/// Whether the command upgrades or downgrades a database (not `--sql`).
fn runs_migrations(cli: &MigrateCli) -> bool {
    !cli.sql
        && matches!(
            cli.command,
            None | Some(Command::Upgrade { .. } | Command::Downgrade { .. })
        )
}

/// Whether `command` connects to the database (what `--wait-for-db` waits for).
fn connects(sql: bool, command: &Command) -> bool {
    !sql && !matches!(
        command,
        Command::Revision {
            autogenerate: false,
            ..
        } | Command::CheckHead
            | Command::Lint(_)
            | Command::ImportAlembicSql { .. }
    )
}

/// The database the commands run against: `--database-url`, else DATABASE_MIGRATION_URI, else
/// the primary unless that goes through a transaction pooler.
fn database_uri(
    cli: &MigrateCli,
    settings: &Result<Settings, ConfigError>,
) -> Result<DatabaseUri, CliError> {
    Ok(match (&cli.database_url, settings) {
        (Some(u), _) => DatabaseUri::parse(u, "--database-url")?,
        (None, Ok(s)) => s.migration_uri()?.clone(),
        (None, Err(e)) => return Err(e.clone().into()),
    })
}

/// [`run`], with an upgrade's or downgrade's connection already under way (see [`main`]).
async fn run_with(
    cli: MigrateCli,
    project: &Project,
    settings: Result<Settings, ConfigError>,
    out: &mut dyn Write,
    prefetch: Option<JoinHandle<Prefetch>>,
) -> Result<i32, CliError> {
    let command = cli
        .command
        .clone()
        .unwrap_or(Command::Upgrade { target: None });
    if let Some(within) = cli.wait_for_db
        && connects(cli.sql, &command)
        && let Ok(uri) = database_uri(&cli, &settings)
    {
        wait::wait_for_db(&uri, within).await?;
    }
    let stdout = |out: &mut dyn Write, s: String| -> Result<(), CliError> {
        writeln!(out, "{s}").map_err(io(Path::new("<output>")))
    };
    match &command {
        Command::Revision {
            message,
            from_db: Some(from_db),
            baseline: true,
            data,
            ..
        } => {
            let source = DatabaseUri::parse(from_db, "--from-db")?;
            return baseline::run(project, &source, data, message.as_deref(), out).await;
        }
        Command::Revision {
            message,
            autogenerate: true,
            from_db,
            from_sql,
            ..
        } => {
            let message = message.as_deref().unwrap_or_default();
            return autogenerate(&cli, project, settings, message, from_db, from_sql, out).await;
        }
        Command::Revision {
            from_db: Some(_), ..
        } => {
            return Err(CliError::Refused(
                "revision --from-db needs --autogenerate or --baseline".into(),
            ));
        }
        Command::Revision { message, .. } => {
            let path = write_revision(project, message.as_deref().unwrap_or_default())?;
            stdout(out, format!("created {}", path.display()))?;
            return Ok(0);
        }
        Command::Doctor {
            max_lag_seconds,
            metrics,
        } => {
            return doctor::run(project, settings, *max_lag_seconds, *metrics, out).await;
        }
        Command::CheckHead => {
            let head = check_head(project)?;
            stdout(out, format!("ok: {HEAD_FILE} matches the head {head}"))?;
            return Ok(0);
        }
        Command::Lint(args) => {
            // The linter's PostgreSQL version: the setting, else the server's when a URI was
            // given on the command line, else the oldest supported.
            let pg = match (args.pg_major(), &cli.database_url) {
                (Some(pg), _) => pg,
                (None, Some(_)) => {
                    crate::lint::server_major(&database_uri(&cli, &settings)?).await?
                }
                (None, None) => crate::lint::PgMajor::default(),
            };
            lint::run(args, project, pg, out)?;
            return Ok(0);
        }
        Command::Drift {
            format,
            scratch_url,
        } => {
            let target = database_uri(&cli, &settings);
            return drift::run(project, target, scratch_url.as_deref(), *format, out).await;
        }
        Command::ImportAlembicSql { file } => {
            import_sql::run(file, project, out)?;
            return Ok(0);
        }
        _ => {}
    }
    let mut options = match &settings {
        Ok(s) => Options::from_settings(&s.migrations),
        Err(_) => Options::default(),
    };
    if let Some(v) = cli.lock_timeout {
        options.lock_timeout = v;
    }
    if let Some(v) = cli.statement_timeout {
        options.statement_timeout = Some(v).filter(|d| !d.is_zero());
    }
    if let Some(v) = cli.max_attempts {
        options.max_attempts = v;
    }
    if let Some(v) = cli.retry_delay {
        options.retry_delay = v;
    }
    if let Some(v) = cli.advisory_lock_wait {
        options.advisory_lock_wait = Some(v);
    }
    options.allow_changed_checksums = cli.allow_changed_checksums;
    if cli.sql {
        let (direction, target) = match &command {
            Command::Upgrade { target } => (Direction::Up, target.as_deref().unwrap_or("head")),
            Command::Downgrade { target } => (Direction::Down, target.as_deref().unwrap_or("-1")),
            _ => {
                return Err(CliError::Refused(
                    "--sql works with upgrade and downgrade only".into(),
                ));
            }
        };
        let from = match (&cli.from, direction) {
            (Some(f), _) if f == "base" => None,
            (Some(f), _) => Some(f.clone()),
            (None, Direction::Up) => None,
            (None, Direction::Down) => project.set.head().map(str::to_owned),
        };
        let migrator = Migrator::offline(project.set.clone()).with_options(options);
        let sql = migrator.render_sql(from.as_deref(), &target.parse()?, direction)?;
        out.write_all(sql.as_bytes())
            .map_err(io(Path::new("<output>")))?;
        return Ok(0);
    }

    let uri = database_uri(&cli, &settings)?;
    let migrator = Migrator::new(project.set.clone(), &uri)?.with_options(options);
    match command {
        Command::Upgrade { ref target } | Command::Downgrade { ref target } => {
            let direction = match command {
                Command::Upgrade { .. } => Direction::Up,
                _ => Direction::Down,
            };
            let default = match direction {
                Direction::Up => "head",
                Direction::Down => "-1",
            };
            let target: Target = target.as_deref().unwrap_or(default).parse()?;
            // A prefetch that panicked or was cancelled: the run connects itself.
            let report = match prefetch {
                Some(handle) => match handle.await {
                    Ok(p) => migrator.run_prefetched(p, &target, direction).await?,
                    Err(_) => migrate(&migrator, &target, direction).await?,
                },
                None => migrate(&migrator, &target, direction).await?,
            };
            summary(out, &report, direction.as_str())?;
            write_head_if_local(project, uri.dbname())?;
        }
        Command::Current => {
            let current = migrator.current().await?;
            let line = match current {
                None => "base".to_owned(),
                Some(c) if project.set.head() == Some(c.as_str()) => format!("{c} (head)"),
                Some(c) => c,
            };
            stdout(out, line)?;
        }
        Command::History => {
            let status = migrator.status().await?;
            let width = status.history.iter().map(|h| h.id.len()).max().unwrap_or(0);
            for h in status.history.iter().rev() {
                let mut line = format!(
                    "{:<width$}  {:<7}",
                    h.id,
                    if h.applied { "applied" } else { "pending" }
                );
                match (&h.applied_at, h.applied) {
                    (Some(at), _) => line.push_str(&format!("  {at}")),
                    (None, true) => line.push_str("  (applied before the journal)"),
                    (None, false) => {}
                }
                if status.current.as_deref() == Some(h.id.as_str()) {
                    line.push_str("  (current)");
                }
                if h.no_transaction {
                    line.push_str("  [no transaction]");
                }
                if h.checksum_matches == Some(false) {
                    line.push_str("  CHECKSUM CHANGED");
                }
                stdout(out, line.trim_end().to_owned())?;
            }
        }
        Command::Stamp { revision, force } => {
            let r = migrator.stamp(&revision.parse()?, force).await?;
            stdout(
                out,
                format!(
                    "stamp: {} -> {} (no migration run)",
                    r.from.as_deref().unwrap_or("base"),
                    r.to.as_deref().unwrap_or("base")
                ),
            )?;
        }
        Command::Check { exit_code } => {
            use notify_db_migrate::pending::{PendingError, PendingFailure, migrations_pending};
            let pending = match migrations_pending(&migrator, None).await {
                Ok(pending) => pending,
                // The engine's own error, as every other command reports it.
                Err(PendingError {
                    source: PendingFailure::Migrate(e),
                    ..
                }) => return Err(e.into()),
                Err(e) => return Err(CliError::Pending(Box::new(e))),
            };
            stdout(out, if pending { "yes" } else { "no" }.to_owned())?;
            if pending && exit_code {
                return Ok(1);
            }
        }
        Command::TestDowngrade { to, since } => {
            stairway::test_downgrade(project, &uri, to.as_deref(), since.as_deref(), out).await?;
        }
        Command::Revision { .. }
        | Command::CheckHead
        | Command::Lint(_)
        | Command::Drift { .. }
        | Command::Doctor { .. }
        | Command::ImportAlembicSql { .. } => {}
    }
    Ok(0)
}

fn summary(
    out: &mut dyn Write,
    r: &notify_db_migrate::RunReport,
    what: &str,
) -> Result<(), CliError> {
    let total: Duration = r.applied.iter().map(|a| a.duration).sum();
    writeln!(
        out,
        "{what}: {} -> {} ({} migration{}, {:.1} ms)",
        r.from.as_deref().unwrap_or("base"),
        r.to.as_deref().unwrap_or("base"),
        r.applied.len(),
        if r.applied.len() == 1 { "" } else { "s" },
        total.as_secs_f64() * 1000.0
    )
    .map_err(io(Path::new("<output>")))
}

/// An upgrade or a downgrade to `target`, connecting itself.
async fn migrate(
    migrator: &Migrator,
    target: &Target,
    direction: Direction,
) -> Result<notify_db_migrate::RunReport, Error> {
    match direction {
        Direction::Up => migrator.upgrade(target).await,
        Direction::Down => migrator.downgrade(target).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_db_migrate::Migration;

    fn project(label: &str) -> Project {
        let dir =
            std::env::temp_dir().join(format!("notify-db-head-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = MigrationSet::new(vec![
            Migration::new("0001_a").up("SELECT 1"),
            Migration::new("0002_b").up("SELECT 2"),
        ])
        .unwrap();
        Project {
            set,
            dir,
            kind: FileKind::Rust,
        }
    }

    #[test]
    fn head_file_is_written_only_for_the_local_database_and_checked() {
        let p = project("write");
        let path = p.dir.join(HEAD_FILE);
        let _ = std::fs::remove_file(&path);
        write_head_if_local(&p, "test_notification_api_gw1").unwrap();
        assert!(
            !path.exists(),
            "only runs against notification_api write the file"
        );
        assert!(
            check_head(&p).is_err(),
            "a missing head file fails check-head"
        );
        write_head_if_local(&p, LOCAL_DB_NAME).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0002_b\n");
        assert_eq!(check_head(&p).unwrap(), "0002_b");
        std::fs::write(&path, "0002_other\n").unwrap();
        let err = check_head(&p).unwrap_err().to_string();
        assert!(
            err.contains("\"0002_other\"") && err.contains("\"0002_b\""),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&p.dir);
    }

    #[test]
    fn rust_revision_template_is_the_next_number() {
        let p = project("revision");
        let path = write_revision(&p, "Add the foo column").unwrap();
        assert_eq!(path.file_name().unwrap(), "0003_add_the_foo_column.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("pub fn define(m: Migration) -> Migration"),
            "{text}"
        );
        let again = write_revision(&p, "Add the foo column")
            .unwrap_err()
            .to_string();
        assert!(again.contains("already exists"), "{again}");
        let _ = std::fs::remove_dir_all(&p.dir);
    }

    #[test]
    fn revision_names_the_parent_in_an_imported_history() {
        let dir = std::env::temp_dir().join(format!("notify-db-linked-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = MigrationSet::new(vec![
            Migration::new("0013_a").up("SELECT 1"),
            Migration::new("0014_b").up("SELECT 2").parent("0013_a"),
            Migration::new("db6d9d9f06bc")
                .up("SELECT 3")
                .parent("0014_b"),
        ])
        .unwrap();
        let p = Project {
            set,
            dir,
            kind: FileKind::Sql,
        };
        let path = write_revision(&p, "Add bar").unwrap();
        assert_eq!(path.file_name().unwrap(), "0015_add_bar.up.sql");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("-- notify-db: parent=db6d9d9f06bc\n"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&p.dir);
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Add jobs index!"), "add_jobs_index");
        assert_eq!(slug("  --  "), "");
        assert_eq!(
            slug("a very long message that goes on and on forever").len(),
            27
        );
    }
}
