//! The migration command line: `upgrade [TARGET]` (the default), `downgrade
//! [TARGET|-N]`, `current`, `history`, `revision -m MSG [--autogenerate --from-db URL | --from-sql
//! FILE]`, `revision --baseline --from-db URL [--data TABLE...]`, `check [--exit-code]`,
//! `check-head`, `stamp REV [--force]`, `lint`, `test-downgrade [--to REV | --since GIT_REF]`,
//! `doctor [--max-lag-seconds S]`, `drift [--format text|json|github] [--scratch-url URL]`.
//!
//! A service embeds it by parsing [`MigrateCli`] and calling [`run`] with its own [`Project`].

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use notify_db_config::{ConfigError, DatabaseUri, Settings};

pub use crate::FileKind;
use notify_db_migrate::Prefetch;
use notify_db_migrate::{Direction, Error, Migrator, Options, Target};
use tokio::task::JoinHandle;

mod args;
mod baseline;
mod doctor;
mod drift;
pub(crate) mod error;
pub(crate) mod files;
mod import_sql;
mod lint;
pub(crate) mod project;
mod revision;
mod stairway;
mod wait;

pub use args::{Command, MigrateCli};
pub use baseline::{BASELINE_DIR, session_free};
pub use error::CliError;
use error::io;
pub use files::{checked_slug, slug};
pub use lint::LintArgs;
pub use project::Project;
pub use revision::{HEAD_FILE, LOCAL_DB_NAME, check_head, write_revision};
use revision::{autogenerate, write_head_if_local};

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
    use notify_db_migrate::{Migration, MigrationSet};

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
        // A run that finds the file already right leaves it untouched.
        let modified =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().modified().unwrap();
        let before = modified(&path);
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_head_if_local(&p, LOCAL_DB_NAME).unwrap();
        assert_eq!(
            modified(&path),
            before,
            "an unchanged head is not rewritten"
        );
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
            text.contains("pub(crate) fn define(m: Migration) -> Migration"),
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
