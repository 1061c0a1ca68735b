//! `drift`: compares the live database's schema with the schema the migration set produces at
//! the database's own revision, rebuilt in a scratch database. Read-only on the target: its
//! revision and catalog are read in one `READ ONLY` repeatable-read transaction.

use std::io::Write;

use notify_db_config::DatabaseUri;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::error::{CliError, io};
use super::project::Project;
use crate::autogen::AutogenError;
use crate::autogen::catalog::{self, Catalog};
use crate::autogen::command::{Scratch, connect};
use crate::drift::{Format, Outcome, compare};
use notify_db_migrate::{Migrator, Target, VERSION_TABLE};

/// Runs the check against `target`, scratch databases on `scratch_url`'s server (default: the
/// target's); writes the outcome in `format`. Returns 0 equal, 1 drift, 2 cannot tell (a
/// missing or bad URI included).
pub(super) async fn run(
    project: &Project,
    target: Result<DatabaseUri, CliError>,
    scratch_url: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    let shown = target
        .as_ref()
        .map_or_else(|_| "the database".to_owned(), ToString::to_string);
    let checked = async {
        let target = target?;
        let scratch = match scratch_url {
            Some(u) => DatabaseUri::parse(u, "--scratch-url")?,
            None => target.clone(),
        };
        check(project, &target, &scratch).await
    };
    let outcome = match checked.await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::CannotTell {
            reason: notify_db_migrate::one_line(&e),
        },
    };
    if let Outcome::CannotTell { reason } = &outcome {
        tracing::error!(database = %shown, "cannot tell whether the schema drifted: {reason}");
    }
    out.write_all(outcome.render(format, &shown).as_bytes())
        .map_err(io(std::path::Path::new("<output>")))?;
    Ok(outcome.exit_code())
}

async fn check(
    project: &Project,
    target: &DatabaseUri,
    scratch_server: &DatabaseUri,
) -> Result<Outcome, CliError> {
    // The engine's own read of the revision: its errors name an unknown revision, one before
    // the baseline, or several rows.
    let status = Migrator::new(project.set.clone(), target)?.status().await?;
    let (revision, found) = snapshot(target).await?;
    let Some(revision) = revision else {
        return Ok(Outcome::CannotTell {
            reason: format!(
                "it has no {VERSION_TABLE} table, so no revision to compare with: stamp it at \
                 the revision its schema is at first"
            ),
        });
    };
    if revision != status.current {
        return Ok(Outcome::CannotTell {
            reason: "its revision changed while it was read (a migration ran): run again".into(),
        });
    }
    let expected = rebuilt(project, scratch_server, revision.as_deref()).await?;
    let differences = compare(&expected, &found);
    Ok(if differences.is_empty() {
        Outcome::Equal { revision }
    } else {
        Outcome::Drift {
            revision,
            differences,
        }
    })
}

/// The target's revision (`None`: no version table; `Some(None)`: base) and its catalog, read
/// in one read-only snapshot.
async fn snapshot(target: &DatabaseUri) -> Result<(Option<Option<String>>, Catalog), CliError> {
    let client = connect(target).await?;
    let sql_err = |what: &str| {
        let what = format!("{what} of {target}");
        move |source| CliError::from(AutogenError::Sql { what, source })
    };
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(sql_err("starting a read-only transaction"))?;
    let revision = versions(&client, target)
        .await?
        .map(|v| v.into_iter().next());
    let found = catalog::read(&client, &target.to_string()).await?;
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(sql_err("ending the read-only transaction"))?;
    Ok((revision, found))
}

/// What `alembic_version` of the database `client` is connected to holds (`None`: no such
/// table). Simple queries only: nothing prepared, so it also works through a pooler.
pub(super) async fn versions(
    client: &Client,
    database: &DatabaseUri,
) -> Result<Option<Vec<String>>, CliError> {
    let sql_err = |what: &str| {
        let what = format!("{what} of {database}");
        move |source| CliError::from(AutogenError::Sql { what, source })
    };
    let first_column = |msgs: Vec<SimpleQueryMessage>| -> Vec<String> {
        msgs.iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect()
    };
    let exists = client
        .simple_query(&format!(
            "SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL"
        ))
        .await
        .map_err(sql_err("looking for alembic_version"))?;
    if first_column(exists) != ["t"] {
        return Ok(None);
    }
    let rows = client
        .simple_query(&format!("SELECT version_num FROM {VERSION_TABLE}"))
        .await
        .map_err(sql_err("reading alembic_version"))?;
    Ok(Some(first_column(rows)))
}

/// The catalog of a scratch database on `server` migrated to `revision` (`None`: base).
async fn rebuilt(
    project: &Project,
    server: &DatabaseUri,
    revision: Option<&str>,
) -> Result<Catalog, CliError> {
    let mut scratch = Scratch::open(server).await?;
    let result = async {
        let uri = scratch.create("drift").await?;
        tracing::info!(
            scratch = uri.dbname(),
            revision = revision.unwrap_or("base"),
            "rebuilding the set's schema in a scratch database (the migrations below run there)"
        );
        if let Some(rev) = revision {
            Migrator::new(project.set.clone(), &uri)?
                .upgrade(&Target::Revision(rev.to_owned()))
                .await?;
        }
        let what = format!("the scratch database at {}", revision.unwrap_or("base"));
        Ok(catalog::read(&connect(&uri).await?, &what).await?)
    }
    .await;
    scratch.drop_all().await;
    result
}
