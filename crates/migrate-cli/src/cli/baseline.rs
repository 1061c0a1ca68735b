//! `revision --baseline --from-db URL`: writes the set's baseline migration from a database at
//! a known revision. The id is that revision; the SQL is `pg_dump --schema-only` of the database
//! without the bookkeeping tables (`alembic_version`, the journal), owners, privileges, pg_dump's
//! comments and its session preamble (`SET ...`, `SELECT pg_catalog.set_config(...)`, psql's
//! `\restrict`): those settings would outlive the migration on the runner's connection.
//! `--data TABLE...` appends the rows of reference tables as `INSERT`s (a migration's SQL runs
//! as plain statements, so no `COPY ... FROM stdin`).

use std::io::Write;
use std::path::{Path, PathBuf};

use notify_db_config::DatabaseUri;
use notify_db_migrate::lexer::{code_tokens, leading_words, split_statements};
use notify_db_migrate::{Migration, MigrationSet, VERSION_TABLE};

use super::drift::versions;
use super::error::{CliError, io};
use super::files::write_new;
use super::project::Project;
use crate::FileKind;
use crate::autogen::catalog::BOOKKEEPING;
use crate::autogen::command::connect;
use crate::rust_file::RustMigration;

/// The folder of a compiled set's baseline SQL, beside its `.rs` files (the `.rs` file
/// `include_str!`s it).
pub const BASELINE_DIR: &str = "baseline";

/// Writes the baseline of `source` into the project; returns 0.
pub(super) async fn run(
    project: &Project,
    source: &DatabaseUri,
    data: &[String],
    message: Option<&str>,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    if let Some(b) = project.set.baseline() {
        return Err(CliError::Refused(format!(
            "the set already has a baseline, {}: a set has at most one",
            b.id()
        )));
    }
    if let Some(t) = data.iter().find(|t| BOOKKEEPING.contains(&t.as_str())) {
        return Err(CliError::Refused(format!(
            "--data {t}: the bookkeeping tables are never part of a baseline"
        )));
    }
    let revision = revision_of(source).await?;
    if project.set.get(&revision).is_some() {
        return Err(CliError::Refused(format!(
            "{source} is at {revision}, which the set already has: a baseline is the revision \
             the set continues from"
        )));
    }
    let mut sql = session_free(&pg_dump(source, &schema_args()).await?);
    if !data.is_empty() {
        let mut args = vec![
            "--data-only".to_owned(),
            "--column-inserts".to_owned(),
            "--strict-names".to_owned(),
        ];
        args.extend(data.iter().map(|t| format!("--table={t}")));
        sql.push('\n');
        sql.push_str(&session_free(&pg_dump(source, &args).await?));
    }
    // The set with the baseline must still load: checked before anything is written.
    let mut all = project.set.migrations().to_vec();
    all.push(Migration::new(&revision).baseline().up(&sql));
    MigrationSet::new(all).map_err(notify_db_migrate::Error::from)?;
    let about = message.map_or_else(
        || format!("Baseline: the schema at revision {revision}."),
        |m| m.trim().replace('\n', " "),
    );
    for path in write(project, &revision, &about, &sql)? {
        writeln!(out, "created {}", path.display()).map_err(io(Path::new("<output>")))?;
    }
    Ok(0)
}

/// `pg_dump`'s arguments for the schema without the bookkeeping tables, owners or grants.
fn schema_args() -> Vec<String> {
    let mut args: Vec<String> = ["--schema-only", "--no-owner", "--no-privileges"]
        .map(str::to_owned)
        .to_vec();
    args.extend(BOOKKEEPING.iter().map(|t| format!("--exclude-table={t}")));
    args
}

/// The one revision `alembic_version` of `source` holds; refused otherwise.
async fn revision_of(source: &DatabaseUri) -> Result<String, CliError> {
    let client = connect(source).await?;
    let Some(versions) = versions(&client, source).await? else {
        return Err(CliError::Refused(format!(
            "{source} has no {VERSION_TABLE}: a baseline is written from a database at a known \
             revision (stamp it first if you know which)"
        )));
    };
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::Refused(format!(
            "{source}'s {VERSION_TABLE} is empty (base): there is no revision to continue from"
        ))),
        many => Err(CliError::Refused(format!(
            "{source}'s {VERSION_TABLE} holds several revisions ({}): a baseline continues one line",
            many.join(", ")
        ))),
    }
}

/// The `pg_dump` to run: `$PG_BIN/pg_dump` when `PG_BIN` is set, else `pg_dump` on `PATH`.
fn pg_dump_program() -> PathBuf {
    match std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(&dir).join("pg_dump"),
        None => PathBuf::from("pg_dump"),
    }
}

/// Runs `pg_dump args` against `source`. The connection goes in libpq's environment variables,
/// so the password is on no command line (`ps` shows those) and in no message.
async fn pg_dump(source: &DatabaseUri, args: &[String]) -> Result<String, CliError> {
    let program = pg_dump_program();
    let hosts = source.hosts();
    let join = |f: &dyn Fn(&notify_db_config::HostPort) -> String| {
        hosts.iter().map(f).collect::<Vec<_>>().join(",")
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(args)
        .env("PGHOST", join(&|h| h.host.clone()))
        .env("PGPORT", join(&|h| h.port.to_string()))
        .env("PGDATABASE", source.dbname())
        .env_remove("PGSERVICE")
        .env_remove("PGPASSWORD")
        .kill_on_drop(true);
    if let Some(user) = source.user() {
        cmd.env("PGUSER", user);
    }
    if let Some(password) = source.password() {
        cmd.env("PGPASSWORD", password);
    }
    for (param, var) in [
        ("sslmode", "PGSSLMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("connect_timeout", "PGCONNECT_TIMEOUT"),
        ("target_session_attrs", "PGTARGETSESSIONATTRS"),
        ("options", "PGOPTIONS"),
    ] {
        if let Some(v) = source.param(param) {
            cmd.env(var, v);
        }
    }
    let failed =
        |why: String| CliError::Refused(format!("{} against {source}: {why}", program.display()));
    let output = cmd.output().await.map_err(|e| {
        failed(format!(
            "{e} (install the PostgreSQL client tools of the server's major version, or set PG_BIN to their folder)"
        ))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut why = stderr.trim().replace('\n', "; ");
        if let Some(p) = source.password().filter(|p| !p.is_empty()) {
            why = why.replace(p, "****");
        }
        return Err(failed(format!("{} ({})", why, output.status)));
    }
    String::from_utf8(output.stdout).map_err(|e| failed(format!("output is not UTF-8: {e}")))
}

/// `dump` without pg_dump's comments, its session preamble and psql meta-commands: each
/// statement, its leading comments cut, ending in `;`, a blank line between two.
pub fn session_free(dump: &str) -> String {
    // psql meta-commands (`\restrict KEY` first, `\unrestrict KEY` last, since 15.14): lines of
    // their own, never inside a statement pg_dump writes.
    let sql: String = dump
        .lines()
        .filter(|l| !(l.starts_with("\\restrict ") || l.starts_with("\\unrestrict ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out: Vec<&str> = Vec::new();
    let statements = split_statements(&sql);
    for stmt in &statements {
        let start = code_tokens(stmt).next().map_or(0, |t| t.start);
        let stmt = &stmt[start..];
        let words = leading_words(stmt, 1);
        if words.first().is_some_and(|w| w == "SET")
            || stmt.starts_with("SELECT pg_catalog.set_config(")
        {
            continue;
        }
        out.push(stmt);
    }
    out.iter()
        .map(|s| format!("{s};\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes the baseline's file(s); refuses to overwrite. Returns the paths.
fn write(project: &Project, id: &str, about: &str, sql: &str) -> Result<Vec<PathBuf>, CliError> {
    let files: Vec<(PathBuf, String)> = match project.kind {
        FileKind::Sql => vec![(
            project.dir.join(format!("{id}.up.sql")),
            format!("-- notify-db: baseline\n-- {about}\n\n{sql}"),
        )],
        FileKind::Rust => vec![
            (
                project.dir.join(BASELINE_DIR).join(format!("{id}.sql")),
                sql.to_owned(),
            ),
            (
                project.dir.join(format!("{id}.rs")),
                RustMigration {
                    about: vec![about.to_owned()],
                    doc: about.to_owned(),
                    calls: vec![
                        ".baseline()".to_owned(),
                        format!(".up(include_str!(\"{BASELINE_DIR}/{id}.sql\"))"),
                    ],
                    ..RustMigration::default()
                }
                .text(),
            ),
        ],
    };
    write_new(&files)?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_preamble_comments_and_meta_commands_go() {
        let dump = "\\restrict abc123\n--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\
                    SET lock_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
                    SET default_table_access_method = heap;\n\n--\n-- Name: t; Type: TABLE; Schema: public\n--\n\n\
                    CREATE TABLE public.t (\n    id bigint -- the key\n);\n\n\
                    CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  SET LOCAL x = 1;\nEND $$;\n\n\
                    SELECT pg_catalog.setval('public.s', 3, true);\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n";
        assert_eq!(
            session_free(dump),
            "CREATE TABLE public.t (\n    id bigint -- the key\n);\n\n\
             CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  SET LOCAL x = 1;\nEND $$;\n\n\
             SELECT pg_catalog.setval('public.s', 3, true);\n"
        );
    }
}
