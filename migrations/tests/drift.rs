//! `notify-db-migrations drift` (the shipped binary, this project's own migrations) against real
//! PostgreSQL: no drift at head nor at a middle revision; a hand change is drift (exit 1); a
//! database without `alembic_version` cannot be told (exit 2).

use std::time::Duration;

use notify_db_config::DatabaseUri;
use notify_db_migrate::{Migrator, Target};
use notify_db_migrations::{set, test_db};
use notify_db_testdb::TestDb;

/// The set rebuilds in seconds; a hang fails instead of blocking the run.
const LIMIT: Duration = Duration::from_secs(180);

/// Runs `notify-db-migrations --database-url URI drift ARGS`: (exit code, stdout, stderr).
async fn drift(db: &TestDb, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrations"));
    cmd.args(["--database-url", &db.primary_uri(), "drift"])
        .args(args)
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "warn")
        .env_remove("SQLALCHEMY_DATABASE_URI")
        .env_remove("DATABASE_MIGRATION_URI")
        .kill_on_drop(true);
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("drift finished in time")
        .expect("run notify-db-migrations");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !stdout.contains(&db.primary().password) && !stderr.contains(&db.primary().password),
        "the password was printed:\n{stdout}\n{stderr}"
    );
    (out.status.code(), stdout, stderr)
}

#[tokio::test]
async fn the_projects_migrations_at_head_show_no_drift_until_a_hand_change() {
    let db = test_db().await.expect("a test database at head");
    let head = set().expect("the set").head().expect("a head").to_owned();
    let (code, out, err) = drift(&db, &[]).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&format!("revision {head}")), "{out}");
    let c = db.connect().await.expect("connect");
    c.batch_execute(
        "ALTER TABLE services ADD COLUMN hotfix text; DROP INDEX ix_notifications_job_id",
    )
    .await
    .expect("hand changes");
    let (code, out, err) = drift(&db, &["--format", "github"]).await;
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().any(
            |l| l.starts_with("::error title=schema drift%3A table services::")
                && l.ends_with("+ column hotfix: hotfix text")
        ),
        "{out}"
    );
    assert!(
        lines.iter().any(
            |l| l.starts_with("::error title=schema drift%3A table notifications::")
                && l.contains("- index ix_notifications_job_id: CREATE INDEX")
        ),
        "{out}"
    );
}

#[tokio::test]
async fn a_database_at_a_middle_revision_shows_no_drift() {
    let db = TestDb::create().await.expect("an empty test database");
    let (code, out, err) = drift(&db, &["--format", "json"]).await;
    assert_eq!(
        code,
        Some(2),
        "no alembic_version yet:\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("\"status\": \"unknown\""), "{out}");
    let uri = DatabaseUri::parse(&db.primary_uri(), "the test database").expect("test URI");
    Migrator::new(set().expect("the set"), &uri)
        .expect("migrator")
        .upgrade(&Target::Revision("0006".into()))
        .await
        .expect("upgrade to 0006");
    let (code, out, err) = drift(&db, &["--format", "json"]).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("\"status\": \"equal\"")
            && out.contains("\"revision\": \"0006_create_notifications\""),
        "{out}"
    );
}
