//! `revision` (the next numbered migration file, from a template or `--autogenerate`), the head
//! file that records the set's head, and `check-head`.

use std::io::Write;
use std::path::PathBuf;

use notify_db_config::{ConfigError, DatabaseUri, Settings};

use super::args::MigrateCli;
use super::error::{CliError, io};
use super::files::{checked_slug, write_new};
use super::project::Project;
use crate::FileKind;
use crate::rust_file::{RustMigration, literal};

/// Name of the file holding the head revision, next to the migrations.
pub const HEAD_FILE: &str = ".current-alembic-head";

/// The database whose runs update [`HEAD_FILE`].
pub const LOCAL_DB_NAME: &str = "notification_api";

/// `revision --autogenerate`: scratch databases go on the server of `--database-url`, else of
/// `--from-db` (the development server), else (`--from-sql`) of `SQLALCHEMY_DATABASE_URI`.
pub(super) async fn autogenerate(
    cli: &MigrateCli,
    project: &Project,
    settings: Result<Settings, ConfigError>,
    message: &str,
    from_db: &Option<String>,
    from_sql: &Option<PathBuf>,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    use crate::autogen::command::{self, Desired};
    let desired = match (from_db, from_sql) {
        (Some(u), _) => Desired::Database(DatabaseUri::parse(u, "--from-db")?),
        (None, Some(p)) => Desired::SqlFile(p.clone()),
        (None, None) => {
            return Err(CliError::Refused(
                "revision --autogenerate needs --from-db URL or --from-sql FILE".into(),
            ));
        }
    };
    // The development server by default, never the configured primary when there is one.
    let server = match (&cli.database_url, &desired, settings) {
        (Some(u), _, _) => DatabaseUri::parse(u, "--database-url")?,
        (None, Desired::Database(uri), _) => uri.clone(),
        (None, Desired::SqlFile(_), settings) => settings?.primary,
    };
    command::run(project, &server, &desired, message, out).await
}

/// Writes the set's head and `\n` to [`HEAD_FILE`] when the database is `notification_api` and
/// the file does not already say so.
pub(super) fn write_head_if_local(project: &Project, dbname: &str) -> Result<(), CliError> {
    if dbname != LOCAL_DB_NAME {
        return Ok(());
    }
    let Some(head) = project.set.head() else {
        return Ok(());
    };
    let path = project.dir.join(HEAD_FILE);
    let text = format!("{head}\n");
    // Left untouched when it already names the head: rewriting it would change the migration
    // directory's mtime, which rebuilds everything built from that directory.
    if std::fs::read_to_string(&path).is_ok_and(|recorded| recorded == text) {
        return Ok(());
    }
    std::fs::write(&path, text).map_err(io(&path))?;
    tracing::info!(file = %path.display(), head, "head file written");
    Ok(())
}

/// Checks [`HEAD_FILE`] against the set's head; returns the head.
pub fn check_head(project: &Project) -> Result<String, CliError> {
    let path = project.dir.join(HEAD_FILE);
    let recorded = std::fs::read_to_string(&path).map_err(io(&path))?;
    let head = project.set.head().unwrap_or("");
    if recorded.trim_end_matches('\n') != head {
        return Err(CliError::Refused(format!(
            "{} says {:?} but the migration set's head is {head:?}: two branches probably both \
             added a migration; renumber yours after the other and run the upgrade against \
             {LOCAL_DB_NAME} to update the file",
            path.display(),
            recorded.trim_end()
        )));
    }
    Ok(head.to_owned())
}

/// Writes the next numbered migration file(s); returns the (first) path.
pub fn write_revision(project: &Project, message: &str) -> Result<PathBuf, CliError> {
    let slug = checked_slug(message)?;
    let id = format!("{}_{slug}", project.set.next_number());
    let one_line = message.trim().replace('\n', " ");
    let parent = project.set.parent_of_next();
    let files: Vec<(PathBuf, String)> = match project.kind {
        FileKind::Rust => vec![(
            project.dir.join(format!("{id}.rs")),
            RustMigration {
                about: vec![one_line.clone()],
                doc: one_line,
                calls: parent
                    .map(|p| format!(".parent({})", literal(p)))
                    .into_iter()
                    .chain([
                        format!(".up({})", literal("-- write the upgrade SQL here")),
                        format!(".down({})", literal("-- write the downgrade SQL here")),
                    ])
                    .collect(),
                ..RustMigration::default()
            }
            .text(),
        )],
        FileKind::Sql => vec![
            (
                project.dir.join(format!("{id}.up.sql")),
                format!(
                    "{}-- {one_line}\n-- write the upgrade SQL here\n",
                    parent.map_or(String::new(), |p| format!("-- notify-db: parent={p}\n"))
                ),
            ),
            (
                project.dir.join(format!("{id}.down.sql")),
                format!("-- {one_line}\n-- write the downgrade SQL here\n"),
            ),
        ],
    };
    write_new(&files)?;
    Ok(files[0].0.clone())
}
