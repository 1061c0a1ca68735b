//! The engine's locks against real PostgreSQL, through the `notify-db-migrate` binary: lock
//! contention with a blocker (logged, retried, given up), a migration's own lock_timeout, and
//! the advisory lock between runners.

mod common;

use std::time::Duration;

use common::{SqlDir, bin, col, db, exists, finish, run, small_set, text, version, wait_for};

/// A table `t` at 0001, a 0002 that alters it (`header` first: its directives), and a session
/// holding `t`'s ACCESS EXCLUSIVE lock in an open transaction.
async fn contention_setup(
    label: &str,
    header: &str,
) -> (notify_db_testdb::TestDb, SqlDir, tokio_postgres::Client) {
    let db = db().await;
    let dir = SqlDir::new(label);
    dir.add(
        "0001_t",
        "CREATE TABLE t (id bigint PRIMARY KEY)",
        Some("DROP TABLE t"),
    );
    dir.add(
        "0002_alter_t",
        &format!("{header}ALTER TABLE t ADD COLUMN x bigint"),
        Some("ALTER TABLE t DROP COLUMN x"),
    );
    let out = run(dir.path(), &db, &["upgrade", "0001"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let holder = db.connect().await.expect("connect");
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    (db, dir, holder)
}

#[tokio::test]
async fn lock_contention_logs_the_blocker_retries_and_succeeds_once_released() {
    let (db, dir, holder) = contention_setup("contention-ok", "").await;
    let child = bin(dir.path(), &db)
        .args([
            "--lock-timeout",
            "300ms",
            "--max-attempts",
            "6",
            "--retry-delay",
            "1s",
            "upgrade",
        ])
        .spawn()
        .expect("spawn");
    // Once the runner is seen blocked, its 300 ms lock_timeout fires at least once before the release.
    let watcher = db.connect().await.expect("connect");
    wait_for(
        &watcher,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'notify-db-migrate' \
         AND wait_event_type = 'Lock')",
        "the runner to block on the table lock",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    holder.batch_execute("COMMIT").await.expect("release");
    let out = finish(child).await;
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("lock timeout (55P03); retrying"), "{log}");
    assert!(
        log.contains("LOCK TABLE t IN ACCESS EXCLUSIVE MODE"),
        "the blocker's query is logged: {log}"
    );
    assert!(
        log.contains("idle in transaction"),
        "the blocker's state is logged: {log}"
    );
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, vec!["0002_alter_t"]);
}

#[tokio::test]
async fn a_migration_with_its_own_lock_timeout_waits_longer_without_retrying() {
    let (db, dir, holder) =
        contention_setup("own-timeout", "-- notify-db: lock_timeout=5s\n").await;
    let child = bin(dir.path(), &db)
        .args(["--lock-timeout", "200ms", "--max-attempts", "1", "upgrade"])
        .spawn()
        .expect("spawn");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    holder.batch_execute("COMMIT").await.expect("release");
    let out = finish(child).await;
    assert!(
        out.status.success(),
        "the migration's 5 s lock_timeout outlasts the 1 s lock: {}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn lock_never_released_gives_up_after_the_configured_attempts() {
    let (db, dir, holder) = contention_setup("contention-fail", "").await;
    let out = run(
        dir.path(),
        &db,
        &[
            "--lock-timeout",
            "200ms",
            "--max-attempts",
            "3",
            "--retry-delay",
            "1s",
            "upgrade",
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0002_alter_t could not get its locks within lock_timeout after 3 attempts"),
        "{err}"
    );
    assert_eq!(err.matches("retrying").count(), 2, "{err}");
    holder.batch_execute("ROLLBACK").await.expect("release");
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, vec!["0001_t"]);
}

#[tokio::test]
async fn a_second_runner_waits_for_the_advisory_lock_during_create_index_concurrently() {
    let db = db().await;
    let dir = SqlDir::new("advisory");
    dir.add(
        "0001_t",
        "CREATE TABLE t (id bigint PRIMARY KEY);\nINSERT INTO t SELECT generate_series(1, 20);\n\
         CREATE FUNCTION slow_id(bigint) RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $f$\n\
         BEGIN PERFORM pg_sleep(0.25); RETURN $1; END\n$f$",
        Some("DROP TABLE t"),
    );
    dir.add(
        "0002_index",
        "-- notify-db: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_t_slow ON t (slow_id(id))",
        Some("DROP INDEX CONCURRENTLY IF EXISTS ix_t_slow"),
    );
    let out = run(dir.path(), &db, &["upgrade", "0001"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let c = db.connect().await.expect("connect");
    let first = bin(dir.path(), &db).arg("upgrade").spawn().expect("spawn");
    wait_for(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'notify-db-migrate' \
         AND state = 'active' AND query LIKE '%CREATE INDEX CONCURRENTLY%')",
        "CREATE INDEX CONCURRENTLY to start",
    )
    .await;
    let second = bin(dir.path(), &db).arg("upgrade").spawn().expect("spawn");
    // Both under a time limit: a deadlock between the lock wait and CREATE INDEX CONCURRENTLY
    // fails the test instead of hanging it.
    let (a, b) = tokio::join!(finish(first), finish(second));
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let log = String::from_utf8_lossy(&b.stderr);
    assert!(
        log.contains("waiting for the migration advisory lock"),
        "{log}"
    );
    assert!(
        log.contains("application_name \"notify-db-migrate\""),
        "the holder is named: {log}"
    );
    assert_eq!(version(&c).await, vec!["0002_index"]);
    assert_eq!(
        col(&c, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await,
        vec![Some("0".to_owned())]
    );
}

#[tokio::test]
async fn advisory_lock_wait_limit_gives_up_naming_the_holder() {
    let db = db().await;
    let dir = small_set("advisory-limit", 1);
    let holder = db.connect().await.expect("connect");
    holder
        .batch_execute("SELECT pg_advisory_lock(7020097439640675072)")
        .await
        .expect("lock");
    let out = run(
        dir.path(),
        &db,
        &["--advisory-lock-wait", "500ms", "upgrade"],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("held the advisory lock for more than"),
        "{err}"
    );
    let c = db.connect().await.expect("connect");
    assert!(!exists(&c, "t_1").await);
}
