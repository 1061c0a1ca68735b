//! Helpers for the command-line tests: SQL migration directories, the `notify-db-migrate` binary, queries.

#![allow(dead_code)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

pub(crate) use notify_db_testdb::SqlDir;
use notify_db_testdb::{TestDb, find_bin_dir};
use tokio::io::AsyncWriteExt;

/// A fresh database on the shared test cluster; fails with the harness's reason when PostgreSQL is unavailable.
pub(crate) async fn db() -> TestDb {
    match TestDb::create().await {
        Ok(db) => db,
        Err(e) => {
            panic!("these tests need PostgreSQL from notify-db-testdb and could not get it: {e}")
        }
    }
}

/// The `notify-db-migrate` binary, pointed at `dir` and `db`.
pub(crate) fn bin(dir: &Path, db: &TestDb) -> tokio::process::Command {
    bin_at(dir, &db.primary_uri())
}

/// The `notify-db-migrate` binary, pointed at `dir` and the database at `uri`.
pub(crate) fn bin_at(dir: &Path, uri: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrate"));
    c.arg("--source")
        .arg(dir)
        .arg("--database-url")
        .arg(uri)
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "info")
        .env_remove("SQLALCHEMY_DATABASE_URI")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

/// How long one run of the binary may take: a deadlock fails the test instead of hanging it.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Waits for a spawned binary to finish, at most [`RUN_LIMIT`]; past it the test fails and the
/// child is killed (`kill_on_drop`).
pub(crate) async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("notify-db-migrate did not finish within {RUN_LIMIT:?}"))
        .expect("waiting for notify-db-migrate")
}

/// Runs the binary with `args` to completion (at most [`RUN_LIMIT`]).
pub(crate) async fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    finish(
        bin(dir, db)
            .args(args)
            .spawn()
            .expect("running notify-db-migrate"),
    )
    .await
}

/// stdout + stderr as text, for assertion messages.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The first column of every row of `sql`, as text.
pub(crate) async fn col(c: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect()
}

/// What `alembic_version` holds.
pub(crate) async fn version(c: &tokio_postgres::Client) -> Vec<String> {
    col(c, "SELECT version_num FROM alembic_version")
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Whether a relation exists.
pub(crate) async fn exists(c: &tokio_postgres::Client, name: &str) -> bool {
    col(c, &format!("SELECT to_regclass('{name}') IS NOT NULL")).await == vec![Some("t".to_owned())]
}

/// Waits (up to 20 s) until `sql` returns `t`.
pub(crate) async fn wait_for(c: &tokio_postgres::Client, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if col(c, sql).await == vec![Some("t".to_owned())] {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A statement that sleeps for `notify.slow` seconds (a database-level setting the test sets and resets).
pub(crate) const SLOW: &str =
    "SELECT pg_sleep(coalesce(nullif(current_setting('notify.slow', true), ''), '0')::float8)";

/// Runs a psql script against `db` over one connection, stopping at the first error.
pub(crate) async fn psql(db: &TestDb, script: &str) {
    let bin = find_bin_dir().expect("the PostgreSQL binaries (psql) for the comparison run");
    let mut child = tokio::process::Command::new(bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
            &db.primary_uri(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running psql");
    let mut stdin = child.stdin.take().expect("psql's stdin");
    stdin
        .write_all(script.as_bytes())
        .await
        .expect("writing the script to psql");
    drop(stdin);
    let out = child.wait_with_output().await.expect("waiting for psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A set of `n` small migrations, each creating table `t_<i>` after a short sleep.
pub(crate) fn small_set(label: &str, n: usize) -> SqlDir {
    SqlDir::tables(label, n, |i| {
        format!("SELECT pg_sleep(0.05);\nCREATE TABLE t_{i} (id bigint PRIMARY KEY)")
    })
}
