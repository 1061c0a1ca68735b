//! `notify-db-migrations test-downgrade` (the stairway test in the shipped binary) against real
//! PostgreSQL: the set passes on an empty database, which it leaves at head; a database that is
//! not empty is refused and left alone.

use std::process::Output;
use std::time::Duration;

use notify_db_migrations::{assert_stairway_passed, set};
use notify_db_testdb::{ENV_PRIMARY, ENV_REPLICA, TestDb};

/// The whole set steps through in seconds; a hang fails instead of blocking the run.
const LIMIT: Duration = Duration::from_secs(240);

/// Runs the built `notify-db-migrations test-downgrade --database-url URI` with a time limit.
async fn test_downgrade(uri: &str) -> (Option<i32>, String, String) {
    let shared = notify_db_testdb::shared()
        .expect("the shared PostgreSQL clusters (PostgreSQL >= 15 server binaries are needed)");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrations"));
    cmd.args(["test-downgrade", "--database-url", uri])
        .env(ENV_PRIMARY, shared.primary.uri("postgres"))
        .env(ENV_REPLICA, shared.replica.uri("postgres"))
        .env("RUST_LOG", "warn")
        .env_remove("SQLALCHEMY_DATABASE_URI")
        .env_remove("DATABASE_MIGRATION_URI")
        .kill_on_drop(true);
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("test-downgrade finished in time")
        .expect("run notify-db-migrations");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_binary_runs_the_stairway_on_an_empty_database_and_leaves_it_at_head() {
    let db = TestDb::create().await.expect("an empty test database");
    let uri = format!("{}?sslmode=disable", db.primary_uri());
    let (code, out, err) = test_downgrade(&uri).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert_stairway_passed(&out);
    let at: String = db
        .connect()
        .await
        .expect("connect")
        .query_one("SELECT version_num::text FROM alembic_version", &[])
        .await
        .expect("alembic_version")
        .get(0);
    assert_eq!(Some(at.as_str()), set().expect("the migration set").head());
}

#[tokio::test]
async fn the_binary_refuses_a_database_that_is_not_empty() {
    let db = TestDb::create().await.expect("a test database");
    let c = db.connect().await.expect("connect");
    c.batch_execute(
        "CREATE TABLE precious (id bigint PRIMARY KEY); INSERT INTO precious VALUES (1)",
    )
    .await
    .expect("create a table");
    let uri = format!("{}?sslmode=disable", db.primary_uri());
    let (code, out, err) = test_downgrade(&uri).await;
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("error: the database is not empty (revision base, "),
        "{err}"
    );
    assert!(
        !err.contains(&db.primary().password),
        "no password in errors"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM precious", &[])
        .await
        .expect("the table is still there")
        .get(0);
    assert_eq!(n, 1);
}
