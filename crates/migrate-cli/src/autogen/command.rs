//! `revision --autogenerate`: scratch databases on a server, the comparison, the
//! files, and what the command prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use notify_db_config::DatabaseUri;
use notify_db_connect::ConnectUri;
use tokio_postgres::Client;

use super::catalog;
use super::diff::plan;
use super::error::AutogenError;
use super::step::Plan;
use super::write::render_files;
use crate::FileKind;
use crate::cli::error::CliError;
use crate::cli::files::{checked_slug, write_new};
use crate::cli::project::Project;
use notify_db_migrate::{Migrator, Target};

/// Where the desired schema comes from.
#[derive(Debug, Clone)]
pub enum Desired {
    /// A development database, as it is.
    Database(DatabaseUri),
    /// A schema file applied to a scratch database.
    SqlFile(PathBuf),
}

/// A connection to `uri` with the TLS its `sslmode` asks for.
pub(crate) async fn connect(uri: &DatabaseUri) -> Result<Client, CliError> {
    let tls = uri.tls()?;
    tls.connect(&uri.to_pg_config())
        .await
        .map_err(|source| AutogenError::Sql {
            what: format!("connecting to {uri}"),
            source,
        })
        .map_err(CliError::from)
}

/// Scratch databases on one server, dropped by [`Scratch::drop_all`] (also used by `drift`).
pub(crate) struct Scratch {
    admin: Client,
    server: DatabaseUri,
    names: Vec<String>,
}

impl Scratch {
    /// Connects to `server`, where [`Scratch::create`] makes the databases.
    pub(crate) async fn open(server: &DatabaseUri) -> Result<Scratch, CliError> {
        Ok(Scratch {
            admin: connect(server).await?,
            server: server.clone(),
            names: Vec::new(),
        })
    }

    /// A new empty database named after `what`; returns its URI.
    pub(crate) async fn create(&mut self, what: &str) -> Result<DatabaseUri, CliError> {
        // Unique on the server: the process id, and a counter for runs inside one process.
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "notify_db_autogen_{}_{}_{what}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        self.admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|source| AutogenError::Sql {
                what: format!(
                    "creating the scratch database {name} on {} (the role needs CREATEDB)",
                    self.server
                ),
                source,
            })?;
        self.names.push(name.clone());
        Ok(self.server.with_dbname(&name))
    }

    /// Drops every database [`Scratch::create`] made.
    pub(crate) async fn drop_all(&self) {
        for name in &self.names {
            if let Err(e) = self
                .admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
            {
                tracing::warn!(database = %name, error = %e, "could not drop the scratch database");
            }
        }
    }
}

/// Compares the set's head (migrated into a scratch database on `server`) with `desired`.
pub async fn compare(
    project: &Project,
    server: &DatabaseUri,
    desired: &Desired,
) -> Result<Plan, CliError> {
    let mut scratch = Scratch::open(server).await?;
    let result = compare_in(project, &mut scratch, desired).await;
    scratch.drop_all().await;
    result
}

async fn compare_in(
    project: &Project,
    scratch: &mut Scratch,
    desired: &Desired,
) -> Result<Plan, CliError> {
    let head_uri = scratch.create("head").await?;
    Migrator::new(project.set.clone(), &head_uri)?
        .upgrade(&Target::Head)
        .await?;
    let head = catalog::read(&connect(&head_uri).await?, "the scratch database at head").await?;
    let want = match desired {
        Desired::Database(uri) => catalog::read(&connect(uri).await?, &uri.to_string()).await?,
        Desired::SqlFile(path) => {
            let sql = std::fs::read_to_string(path).map_err(|source| CliError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let uri = scratch.create("desired").await?;
            let client = connect(&uri).await?;
            // Statement by statement, so a file may hold CREATE INDEX CONCURRENTLY or a DO
            // block that commits (a migration set's `--sql` output does).
            for (i, stmt) in notify_db_migrate::lexer::split_statements(&sql)
                .iter()
                .enumerate()
            {
                client
                    .batch_execute(stmt)
                    .await
                    .map_err(|source| AutogenError::Sql {
                        what: format!(
                            "applying {} to a scratch database, statement {}",
                            path.display(),
                            i + 1
                        ),
                        source,
                    })?;
            }
            catalog::read(&client, &path.display().to_string()).await?
        }
    };
    Ok(plan(&head, &want))
}

/// Writes the plan's migrations next to the project's; returns the paths.
pub fn write_plan(project: &Project, plan: &Plan, message: &str) -> Result<Vec<PathBuf>, CliError> {
    let slug = checked_slug(message)?;
    let first: u32 = project
        .set
        .next_number()
        .parse()
        .map_err(|_| CliError::Refused("the next migration number is not a number".into()))?;
    let files = render_files(
        plan,
        &project.dir,
        project.kind == FileKind::Sql,
        first,
        project.set.parent_of_next(),
        &slug,
        message.trim().lines().next().unwrap_or(""),
    );
    let files: Vec<(PathBuf, String)> = files.into_iter().map(|f| (f.path, f.text)).collect();
    write_new(&files)?;
    let paths: Vec<PathBuf> = files.into_iter().map(|(path, _)| path).collect();
    if project.kind == FileKind::Rust {
        rustfmt(&paths);
    }
    Ok(paths)
}

/// Formats the written `.rs` files as `cargo fmt` would (long statements, multi-line SQL);
/// without rustfmt the files are still valid Rust, and a warning says to run `cargo fmt`.
fn rustfmt(paths: &[PathBuf]) {
    let status = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(paths)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!(%s, "rustfmt failed on the new files: run `cargo fmt`"),
        Err(e) => tracing::warn!(error = %e, "rustfmt not found: run `cargo fmt` on the new files"),
    }
}

fn line(out: &mut dyn Write, s: &str) -> Result<(), CliError> {
    writeln!(out, "{s}").map_err(|source| CliError::Io {
        path: "<output>".into(),
        source,
    })
}

/// The whole command: compare, write, report. Returns the exit status: 1 when something was
/// written only as a commented block (renames, type changes), 0 otherwise.
pub async fn run(
    project: &Project,
    server: &DatabaseUri,
    desired: &Desired,
    message: &str,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    checked_slug(message)?;
    let plan = compare(project, server, desired).await?;
    report(project, &plan, message, out)
}

fn report(
    project: &Project,
    plan: &Plan,
    message: &str,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    if plan.is_empty() {
        line(
            out,
            "no difference between the migrations' head and the desired schema: nothing written",
        )?;
    } else {
        for c in &plan.changes {
            line(out, c)?;
        }
        for path in write_plan(project, plan, message)? {
            line(out, &format!("created {}", display(&path)))?;
        }
    }
    line(out, "not compared:")?;
    for n in &plan.not_compared {
        line(out, &format!("  {n}"))?;
    }
    if plan.unresolved.is_empty() {
        return Ok(0);
    }
    for u in &plan.unresolved {
        tracing::warn!("not written, decide and write it yourself: {u}");
        line(out, &format!("NOT WRITTEN: {u}"))?;
    }
    Ok(1)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
