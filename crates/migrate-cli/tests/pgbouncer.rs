//! Migrations and a transaction pooler: the advisory lock never stays held by a pooled server
//! connection. Through a real PgBouncer (transaction mode) from notify-db-testdb; these tests
//! fail, never skip, when `pgbouncer` is not installed.

mod common;

use std::time::Duration;

use common::{SqlDir, col, db, exists, text, version};
use notify_db_migrate::ADVISORY_LOCK_ID;
use notify_db_testdb::{PgBouncer, PgBouncerBuilder, TestDb};

const NEED_BOUNCER: &str = "a PgBouncer from notify-db-testdb (install the Debian package \
                            `pgbouncer`, or point PGBOUNCER at the binary)";

/// Three migrations, one of them non-transactional (statement by statement).
fn migrations(label: &str) -> SqlDir {
    let dir = SqlDir::new(label);
    dir.add(
        "0001_create_a",
        "CREATE TABLE a (id bigint PRIMARY KEY, v text)",
        Some("DROP TABLE a"),
    )
    .add(
        "0002_index_a",
        "-- notify-db: no-transaction\nCREATE INDEX CONCURRENTLY a_v ON a (v)",
        Some("-- notify-db: no-transaction\nDROP INDEX CONCURRENTLY a_v"),
    )
    .add(
        "0003_create_b",
        "CREATE TABLE b (id bigint PRIMARY KEY)",
        Some("DROP TABLE b"),
    );
    dir
}

/// A PgBouncer with the database `primary` leading to `db`.
fn bouncer(db: &TestDb, extra: impl FnOnce(PgBouncerBuilder) -> PgBouncerBuilder) -> PgBouncer {
    extra(
        PgBouncer::builder()
            .pool_size(2)
            .database("primary", db.primary(), db.name()),
    )
    .start()
    .expect(NEED_BOUNCER)
}

/// Its URI for the superuser.
fn bouncer_uri(db: &TestDb, b: &PgBouncer) -> String {
    let p = db.primary();
    b.endpoint(&p.user, &p.password).uri("primary")
}

/// `notify-db-migrate upgrade` through `uri` (the environment holds no database settings).
async fn upgrade(dir: &SqlDir, uri: &str) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrate"))
        .arg("--source")
        .arg(dir.path())
        .arg("--database-url")
        .arg(uri)
        .arg("upgrade")
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "info")
        .env_remove("SQLALCHEMY_DATABASE_URI")
        .env_remove("DATABASE_MIGRATION_URI")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the migration run ends within 120 s")
        .expect("running notify-db-migrate")
}

/// No session holds Alembic's lock, and a plain blocking `pg_advisory_lock` (as Alembic takes
/// it) gets it at once.
async fn assert_lock_free(db: &TestDb) {
    let c = db.connect().await.expect("a direct session");
    let holders = col(
        &c,
        &format!(
            // Advisory locks are per database: other tests' runs on the shared cluster hold
            // the same lock in theirs.
            "SELECT pid::text FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid = {} AND objid = {} AND objsubid = 1",
            (ADVISORY_LOCK_ID >> 32) as u32,
            (ADVISORY_LOCK_ID & 0xffff_ffff) as u32
        ),
    )
    .await;
    assert!(holders.is_empty(), "the lock is still held by {holders:?}");
    let took = tokio::time::timeout(
        Duration::from_secs(5),
        c.simple_query(&format!("SELECT pg_advisory_lock({ADVISORY_LOCK_ID})")),
    )
    .await;
    assert!(
        matches!(took, Ok(Ok(_))),
        "pg_advisory_lock did not return at once: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_upgrade_through_pgbouncer_leaves_no_lock_held() {
    let db = db().await;
    let b = bouncer(&db, |b| b);
    let dir = migrations("bouncer-upgrade");
    let out = upgrade(&dir, &bouncer_uri(&db, &b)).await;
    // One client alone reuses the same server connection (PgBouncer's default LIFO): the run
    // completes and releases the lock explicitly, since closing our client closes nothing on
    // the server.
    assert!(out.status.success(), "{}", text(&out));
    let c = db.connect().await.expect("a direct session");
    assert_eq!(version(&c).await, ["0003_create_b"]);
    assert_lock_free(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moved_by_the_pooler_stops_the_run_and_ends_the_orphaned_holder() {
    let db = db().await;
    // Round robin over two open server connections: every statement lands on the other one.
    let b = bouncer(&db, |b| b.setting("server_round_robin", "1"));
    let uri = bouncer_uri(&db, &b);
    // Open both server connections: two clients in a transaction at the same time.
    let (c1, c2) = {
        let ep = b.endpoint(&db.primary().user, &db.primary().password);
        (
            ep.connect("primary").await.expect("client 1"),
            ep.connect("primary").await.expect("client 2"),
        )
    };
    c1.batch_execute("BEGIN; SELECT 1").await.expect("c1 BEGIN");
    c2.batch_execute("BEGIN; SELECT 1").await.expect("c2 BEGIN");
    c1.batch_execute("COMMIT").await.expect("c1 COMMIT");
    c2.batch_execute("COMMIT").await.expect("c2 COMMIT");
    drop((c1, c2));

    let dir = migrations("bouncer-moved");
    let out = upgrade(&dir, &uri).await;
    let all = text(&out);
    assert!(!out.status.success(), "the run must stop: {all}");
    for part in [
        "moved from server process",
        "transaction pooler",
        "DATABASE_MIGRATION_URI",
        "were ended",
    ] {
        assert!(all.contains(part), "missing {part:?}: {all}");
    }
    let c = db.connect().await.expect("a direct session");
    assert!(
        !exists(&c, "a").await,
        "nothing may be applied after the session moved: {all}"
    );
    assert_lock_free(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_primary_uri_is_refused_for_migrations_naming_the_direct_variable() {
    let db = db().await;
    let b = bouncer(&db, |b| b);
    let dir = migrations("bouncer-refused");
    let command = |migration_uri: Option<String>| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrate"));
        c.arg("--source")
            .arg(dir.path())
            .arg("upgrade")
            .env("NOTIFY_ENVIRONMENT", "test")
            .env("SQLALCHEMY_DATABASE_URI", bouncer_uri(&db, &b))
            .env("DATABASE_URI_TRANSACTION_POOLER", "true")
            .env_remove("DATABASE_MIGRATION_URI")
            .kill_on_drop(true);
        if let Some(u) = migration_uri {
            c.env("DATABASE_MIGRATION_URI", u);
        }
        c
    };
    let out = tokio::time::timeout(Duration::from_secs(60), command(None).output())
        .await
        .expect("ends within 60 s")
        .expect("running notify-db-migrate");
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("DATABASE_MIGRATION_URI")
            && all.contains("DATABASE_URI_TRANSACTION_POOLER=true"),
        "{all}"
    );
    assert!(!all.contains(&db.primary().password), "no password: {all}");
    let c = db.connect().await.expect("a direct session");
    assert!(!exists(&c, "a").await, "nothing ran: {all}");

    let out = tokio::time::timeout(
        Duration::from_secs(120),
        command(Some(db.primary_uri())).output(),
    )
    .await
    .expect("ends within 120 s")
    .expect("running notify-db-migrate");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&c).await, ["0003_create_b"]);
    assert_lock_free(&db).await;
}
