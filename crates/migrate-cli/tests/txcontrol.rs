//! Transaction control inside migrations, and the migrations' statement_timeout, against real
//! PostgreSQL: refusals leave schema and `alembic_version` as they were.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{SqlDir, col, db, exists, text, version};
use notify_db_migrate::{Error, Migration, MigrationSet, Migrator, Target};
use notify_db_testdb::TestDb;

/// Longest a single run of the binary may take in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary with `args`, failing the test when it takes longer than [`RUN_LIMIT`].
async fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    tokio::time::timeout(RUN_LIMIT, common::run(dir, db, args))
        .await
        .unwrap_or_else(|_| panic!("notify-db-migrate {args:?} ran longer than {RUN_LIMIT:?}"))
}

/// The columns of table `t`, in order.
async fn columns(c: &tokio_postgres::Client, t: &str) -> Vec<String> {
    col(
        c,
        &format!(
            "SELECT attname FROM pg_attribute WHERE attrelid = '{t}'::regclass AND attnum > 0 \
             AND NOT attisdropped ORDER BY attnum"
        ),
    )
    .await
    .into_iter()
    .flatten()
    .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn transaction_control_in_a_transactional_migration_is_refused_before_anything_runs() {
    let db = db().await;
    let c = db.connect().await.expect("connect");
    let dir = SqlDir::new("txcontrol-refused");
    dir.add("0001_a", "CREATE TABLE a (id bigint)", Some("DROP TABLE a"));
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));

    // The migration: COMMIT in the middle, then a failure.
    dir.add(
        "0002_commit_inside",
        "ALTER TABLE a ADD COLUMN b int;\nCOMMIT;\nALTER TABLE a ADD COLUMN c int;\nSELECT 1/0;",
        Some("ALTER TABLE a DROP COLUMN b"),
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    for part in [
        "migration 0002_commit_inside: upgrade statement 2 `COMMIT` is transaction control",
        "mark the migration no-transaction",
        "Remove the statement",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }
    assert_eq!(version(&c).await, vec!["0001_a"]);
    assert_eq!(columns(&c, "a").await, vec!["id"], "nothing applied");

    // Savepoints stay allowed and work inside the runner's transaction.
    dir.add(
        "0002_commit_inside",
        "SAVEPOINT s;\nALTER TABLE a ADD COLUMN dropped int;\nROLLBACK TO SAVEPOINT s;\n\
         RELEASE SAVEPOINT s;\nALTER TABLE a ADD COLUMN b int",
        // In a down, and spelled differently: refused when a downgrade loads the set (an
        // upgrade does not read the down files).
        Some("/* undo */ begin;\nALTER TABLE a DROP COLUMN b;\nend"),
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&c).await, vec!["0002_commit_inside"]);
    assert_eq!(columns(&c, "a").await, vec!["id", "b"]);
    let out = run(dir.path(), &db, &["downgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains(
            "migration 0002_commit_inside: downgrade statement 1 `/* undo */ begin` is transaction control (BEGIN)"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(version(&c).await, vec!["0002_commit_inside"]);
    assert_eq!(columns(&c, "a").await, vec!["id", "b"], "nothing reverted");
}

#[test]
fn a_rust_migration_with_transaction_control_is_refused_when_the_set_loads() {
    let err = MigrationSet::new(vec![
        Migration::new("0001_a").up("CREATE TABLE a (id bigint)"),
        Migration::new("0002_b").up("CREATE TABLE b (id bigint); ROLLBACK WORK"),
    ])
    .expect_err("a transactional migration with ROLLBACK");
    let shown = err.to_string();
    assert!(
        shown.contains("migration 0002_b: upgrade statement 2 `ROLLBACK WORK` is transaction control (ROLLBACK)"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_transaction_state_warning_fails_a_non_transactional_migration() {
    let db = db().await;
    let c = db.connect().await.expect("connect");
    let dir = SqlDir::new("txcontrol-warning");
    dir.add("0001_a", "CREATE TABLE a (id bigint)", None);
    // No transaction to end: the server answers COMMIT with WARNING 25P01.
    dir.add(
        "0002_stray_commit",
        "-- notify-db: no-transaction\nCREATE TABLE n1 (id bigint);\nCOMMIT;\nCREATE TABLE n2 (id bigint)",
        None,
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "migration 0002_stray_commit: the server said WARNING: there is no transaction in progress [SQLSTATE 25P01] running `COMMIT`"
        ),
        "{err}"
    );
    assert_eq!(version(&c).await, vec!["0001_a"]);
    assert!(!exists(&c, "n2").await, "the run stopped at the statement");

    // SET LOCAL outside a transaction block does nothing but warn (25P01): fails too. (Another
    // id: a rerun of 0002_stray_commit would resume after its journaled first statement.)
    std::fs::remove_file(dir.path().join("0002_stray_commit.up.sql")).expect("remove");
    dir.add(
        "0002_set_local",
        "-- notify-db: no-transaction\nSET LOCAL lock_timeout = '5s';\nCREATE TABLE n3 (id bigint)",
        None,
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains("SET LOCAL can only be used in transaction blocks [SQLSTATE 25P01]"),
        "{}",
        text(&out)
    );
    assert_eq!(version(&c).await, vec!["0001_a"]);
    assert!(!exists(&c, "n3").await);
}

#[tokio::test]
async fn a_transaction_state_warning_fails_a_transactional_migration_that_slipped_past() {
    // A set built without the load-time check (as the linter loads it): the runtime check is
    // what is left, and it must still stop the run with the right error.
    let db = db().await;
    let c = db.connect().await.expect("connect");
    let uri = notify_db_config::DatabaseUri::parse(&db.primary_uri(), "the test database")
        .expect("test database URI");
    let first = Migration::new("0001_a").up("CREATE TABLE a (id bigint)");
    let ok = MigrationSet::new(vec![first.clone()]).expect("set");
    let migrator = Migrator::new(ok, &uri).expect("migrator");
    tokio::time::timeout(RUN_LIMIT, migrator.upgrade(&Target::Head))
        .await
        .expect("time limit")
        .expect("0001 applies");
    let bad = MigrationSet::new_for_lint(vec![
        first,
        Migration::new("0002_b").up(
            "ALTER TABLE a ADD COLUMN b int; COMMIT; ALTER TABLE a ADD COLUMN c int; SELECT 1/0",
        ),
    ])
    .expect("set without the check");
    let migrator = Migrator::new(bad, &uri).expect("migrator");
    let err = tokio::time::timeout(RUN_LIMIT, migrator.upgrade(&Target::Head))
        .await
        .expect("time limit")
        .expect_err("the migration ended the runner's transaction");
    match &err {
        Error::TransactionState { id, code, .. } => {
            assert_eq!((id.as_str(), code.as_str()), ("0002_b", "25P01"), "{err}");
        }
        other => panic!("expected a transaction-state error, got {other}"),
    }
    assert_eq!(version(&c).await, vec!["0001_a"]);
    assert!(
        !columns(&c, "a").await.contains(&"c".to_owned()),
        "after the failure nothing more committed"
    );
}

#[tokio::test]
async fn migrations_run_without_a_statement_timeout_unless_the_run_or_the_migration_sets_one() {
    let db = db().await;
    let c = db.connect().await.expect("connect");
    let dir = SqlDir::new("statement-timeout");
    // The application's statement_timeout does not apply to migrations.
    dir.add(
        "0001_record",
        "CREATE TABLE seen AS SELECT 'default'::text AS what, current_setting('statement_timeout') AS v;\n\
         SELECT pg_sleep(0.3)",
        None,
    );
    let out = run(dir.path(), &db, &["--sql", "upgrade"]).await;
    let sql = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        sql.contains("-- timeouts: lock_timeout 1000ms, statement_timeout none")
            && sql.contains("SET statement_timeout = '0ms'"),
        "{}",
        text(&out)
    );
    let out = common::bin(dir.path(), &db)
        .env("DATABASE_STATEMENT_TIMEOUT_MS", "100")
        .arg("upgrade")
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, out)
        .await
        .expect("time limit")
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        col(&c, "SELECT v FROM seen WHERE what = 'default'").await,
        vec![Some("0".to_owned())]
    );

    // A migration's own: transactional (SET LOCAL) ...
    dir.add(
        "0002_own",
        "-- notify-db: statement_timeout=200ms\nSELECT pg_sleep(2)",
        None,
    );
    let out = run(
        dir.path(),
        &db,
        &["--sql", "--from", "0001_record", "upgrade"],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SET LOCAL statement_timeout = '200ms'"),
        "{}",
        text(&out)
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("[SQLSTATE 57014]"), "{}", text(&out));
    assert_eq!(version(&c).await, vec!["0001_record"]);

    // ... and non-transactional (set for its statements, then the runner's again).
    dir.add(
        "0002_own",
        "-- notify-db: no-transaction, statement_timeout=5s\n\
         INSERT INTO seen SELECT 'own', current_setting('statement_timeout')",
        None,
    );
    dir.add(
        "0003_after",
        "-- notify-db: no-transaction\nINSERT INTO seen SELECT 'after', current_setting('statement_timeout')",
        None,
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        col(
            &c,
            "SELECT what || '=' || v FROM seen WHERE what <> 'default' ORDER BY what"
        )
        .await,
        vec![Some("after=0".to_owned()), Some("own=5s".to_owned())]
    );

    // One run's: applies to every migration without its own.
    dir.add("0004_slow", "SELECT pg_sleep(2)", None);
    let out = run(
        dir.path(),
        &db,
        &["--statement-timeout", "300ms", "upgrade"],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("migration 0004_slow failed") && err.contains("[SQLSTATE 57014]"),
        "{err}"
    );
    assert_eq!(version(&c).await, vec!["0003_after"]);
}
