//! The pools through a real PgBouncer in transaction mode (started by notify-db-testdb; the
//! tests fail, never skip, when `pgbouncer` is not installed).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{NEED_BOUNCER, NEED_PG, settings_from};
use notify_db_config::Settings;
use notify_db_pool::{Bind, ConnectError, Databases, PoolError};
use notify_db_testdb::{Endpoint, PgBouncer, TestDb};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// The statement timeouts these tests configure (and the server enforces).
const PRIMARY_TIMEOUT_MS: &str = "7000";
const REPLICA_TIMEOUT_MS: &str = "9000";

/// What a check of the session reads, in one unnamed statement.
const SESSION_SQL: &str = "SELECT (SELECT setting FROM pg_settings WHERE name = \
                           'statement_timeout'), current_setting('transaction_read_only')";

async fn test_db() -> TestDb {
    let db = TestDb::create().await.expect(NEED_PG);
    db.sync_replica()
        .await
        .expect("replica to replay the new test database");
    db
}

fn replica(db: &TestDb) -> &Endpoint {
    db.replica().expect("the shared replica")
}

/// PgBouncer with `primary` (the test database on the primary) and `bulk` (on `bulk_server`),
/// each with an optional `connect_query`; few server connections, so clients share them.
fn bouncer(
    db: &TestDb,
    bulk_server: &Endpoint,
    primary_query: Option<&str>,
    bulk_query: Option<&str>,
) -> PgBouncer {
    let mut b = PgBouncer::builder()
        .pool_size(3)
        .database("primary", db.primary(), db.name());
    if let Some(q) = primary_query {
        b = b.connect_query(q);
    }
    b = b.database("bulk", bulk_server, db.name());
    if let Some(q) = bulk_query {
        b = b.connect_query(q);
    }
    b.start().expect(NEED_BOUNCER)
}

/// The connect queries that make the servers enforce what the settings below ask for.
fn enforced(db: &TestDb, bulk_server: &Endpoint) -> PgBouncer {
    bouncer(
        db,
        bulk_server,
        Some(&format!("SET statement_timeout = {PRIMARY_TIMEOUT_MS}")),
        Some(&format!(
            "SET statement_timeout = {}; SET default_transaction_read_only = on",
            if bulk_server == db.primary() {
                PRIMARY_TIMEOUT_MS
            } else {
                REPLICA_TIMEOUT_MS
            }
        )),
    )
}

/// Settings whose URIs go through `b` (flagged as a transaction pooler unless `flag` is false).
fn settings(db: &TestDb, b: &PgBouncer, flag: bool) -> Settings {
    let p = db.primary();
    let uri = |name: &str| b.endpoint(&p.user, &p.password).uri(name);
    let flag = flag.to_string();
    settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", uri("primary")),
        ("SQLALCHEMY_DATABASE_URI_BULK", uri("bulk")),
        ("DATABASE_URI_TRANSACTION_POOLER", flag.clone()),
        ("DATABASE_URI_BULK_TRANSACTION_POOLER", flag),
        (
            "DATABASE_STATEMENT_TIMEOUT_MS",
            PRIMARY_TIMEOUT_MS.to_owned(),
        ),
        (
            "DATABASE_STATEMENT_TIMEOUT_REPLICA_MS",
            REPLICA_TIMEOUT_MS.to_owned(),
        ),
        ("SQLALCHEMY_POOL_SIZE", "5".to_owned()),
    ])
}

/// Counts per kind of outcome of the load test.
#[derive(Default)]
struct Tally {
    transactions: AtomicU64,
    bulk: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_tasks_for_ten_seconds_through_pgbouncer_keep_every_session_setting() {
    let db = test_db().await;
    db.connect()
        .await
        .expect(NEED_PG)
        .batch_execute("CREATE TABLE hits (task bigint NOT NULL, n bigint NOT NULL)")
        .await
        .expect("creating the table");
    db.sync_replica().await.expect("replica replays the table");
    let b = enforced(&db, replica(&db));
    let dbs = Databases::connect(&settings(&db, &b, true))
        .await
        .expect("both pools through PgBouncer");
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for task in 0..32i64 {
        let (dbs, tally) = (dbs.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            while Instant::now() < deadline {
                n += 1;
                let bulk = (task + n) % 3 == 0;
                let pool = if bulk { dbs.bulk() } else { dbs.default() };
                let mut c = pool.get().await.map_err(|e| format!("get: {e}"))?;
                let tx = c.transaction().await.map_err(|e| format!("BEGIN: {e}"))?;
                let row = tx
                    .query_typed(SESSION_SQL, &[])
                    .await
                    .map_err(|e| format!("reading the session: {e}"))?;
                let (timeout, read_only): (String, String) = (row[0].get(0), row[0].get(1));
                let want = if bulk {
                    REPLICA_TIMEOUT_MS
                } else {
                    PRIMARY_TIMEOUT_MS
                };
                if timeout != want {
                    return Err(format!(
                        "task {task}: statement_timeout {timeout}, want {want} (bulk: {bulk})"
                    ));
                }
                if bulk != (read_only == "on") {
                    return Err(format!(
                        "task {task}: transaction_read_only {read_only} on bind {}",
                        pool.bind()
                    ));
                }
                if !bulk {
                    tx.execute_typed(
                        "INSERT INTO hits VALUES ($1, $2)",
                        &[(&task, Type::INT8), (&n, Type::INT8)],
                    )
                    .await
                    .map_err(|e| format!("insert: {e}"))?;
                } else {
                    tally.bulk.fetch_add(1, Ordering::Relaxed);
                }
                tx.commit().await.map_err(|e| format!("COMMIT: {e}"))?;
                tally.transactions.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut errors = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(format!("task panicked: {e}")),
            }
        }
        errors
    })
    .await
    .expect("the 32 tasks end within 60 s");
    assert!(all.is_empty(), "errors through PgBouncer: {all:?}");
    let total = tally.transactions.load(Ordering::Relaxed);
    let bulk = tally.bulk.load(Ordering::Relaxed);
    eprintln!("through PgBouncer in 10 s: {total} transactions, {bulk} of them on bulk");
    assert!(
        total > 320 && bulk > 32,
        "too little traffic to show anything: {total} transactions, {bulk} on bulk"
    );
    let c = db.connect().await.expect(NEED_PG);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .expect("counting")
        .get(0);
    assert_eq!(
        rows as u64,
        total - bulk,
        "every default transaction wrote one row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_bulk_through_pgbouncer_fails_with_25006_also_on_the_primary() {
    let db = test_db().await;
    // Bulk on the primary: only the server-side default_transaction_read_only protects it.
    let b = enforced(&db, db.primary());
    let dbs = Databases::connect(&settings(&db, &b, true))
        .await
        .expect("both pools through PgBouncer");
    let c = dbs.bulk().get().await.expect("a bulk connection");
    assert!(!c.in_recovery(), "bulk must be on the primary here");
    let err = c
        .execute_typed("CREATE TABLE nope (id int)", &[])
        .await
        .expect_err("a write on bulk");
    assert_eq!(
        err.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_refuses_to_start_when_the_server_behind_the_pooler_does_not_enforce_its_settings() {
    let db = test_db().await;
    let b = bouncer(&db, replica(&db), None, None);
    let err = Databases::connect(&settings(&db, &b, true))
        .await
        .expect_err("no server-side statement_timeout");
    let text = err.to_string();
    match &err {
        PoolError::Connect(ConnectError::PoolerSettingNotEnforced {
            bind,
            setting,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(*bind, Bind::Default);
            assert_eq!(*setting, "statement_timeout");
            assert_eq!(expected, PRIMARY_TIMEOUT_MS);
            assert_eq!(actual, "0");
        }
        other => panic!("expected PoolerSettingNotEnforced, got {other:?}"),
    }
    for part in [
        "statement_timeout = 7000",
        "ALTER ROLE postgres SET statement_timeout = 7000",
        "connect_query='SET statement_timeout = 7000'",
        "DATABASE_URI_TRANSACTION_POOLER=true",
    ] {
        assert!(text.contains(part), "missing {part:?} in: {text}");
    }
    assert!(
        !text.contains(&db.primary().password),
        "no password: {text}"
    );

    // The primary enforced, bulk (on the primary, so not read-only by recovery) not read-only.
    let b = bouncer(
        &db,
        db.primary(),
        Some(&format!("SET statement_timeout = {PRIMARY_TIMEOUT_MS}")),
        Some(&format!("SET statement_timeout = {PRIMARY_TIMEOUT_MS}")),
    );
    let err = Databases::connect(&settings(&db, &b, true))
        .await
        .expect_err("bulk not read-only");
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            PoolError::Connect(ConnectError::PoolerSettingNotEnforced {
                bind: Bind::Bulk,
                setting: "default_transaction_read_only",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        text.contains("DATABASE_URI_BULK_TRANSACTION_POOLER=true")
            && text.contains("SET default_transaction_read_only = on"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_made_with_alter_role_satisfy_the_check() {
    let db = test_db().await;
    let admin = db.connect().await.expect(NEED_PG);
    let role = format!("{}_app", db.name());
    let password = format!("pw{}", std::process::id());
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'; \
             ALTER ROLE \"{role}\" SET statement_timeout = {PRIMARY_TIMEOUT_MS}; \
             ALTER ROLE \"{role}\" IN DATABASE \"{}\" SET default_transaction_read_only = on",
            db.name()
        ))
        .await
        .expect("creating the role");
    let checked = async {
        let b = PgBouncer::builder()
            .database("primary", db.primary(), db.name())
            .user(&role, &password)
            .start()
            .expect(NEED_BOUNCER);
        let uri = b.endpoint(&role, &password).uri("primary");
        // Only bulk here: the role is read-only in this database, as a reporting role would be.
        let s = settings_from(&[
            ("SQLALCHEMY_DATABASE_URI", uri),
            ("DATABASE_URI_TRANSACTION_POOLER", "true".to_owned()),
            (
                "DATABASE_STATEMENT_TIMEOUT_MS",
                PRIMARY_TIMEOUT_MS.to_owned(),
            ),
        ]);
        let dbs = Databases::connect(&s).await.map_err(|e| e.to_string())?;
        let c = dbs.bulk().get().await.map_err(|e| e.to_string())?;
        let row = c
            .query_typed(SESSION_SQL, &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(String, String), String>((row[0].get(0), row[0].get(1)))
    }
    .await;
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ))
        .await
        .expect("ending the role's sessions");
    // The role's sessions may take a moment to go; retry the drop briefly.
    let mut dropped = Err(String::new());
    for _ in 0..50 {
        dropped = admin
            .batch_execute(&format!("DROP ROLE \"{role}\""))
            .await
            .map_err(|e| e.to_string());
        if dropped.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dropped.expect("dropping the role");
    let (timeout, read_only) = checked.expect("pools with ALTER ROLE settings");
    assert_eq!(
        (timeout.as_str(), read_only.as_str()),
        (PRIMARY_TIMEOUT_MS, "on")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_pooler_setting_pgbouncer_refuses_the_startup_options() {
    let db = test_db().await;
    let b = enforced(&db, replica(&db));
    let err = Databases::connect(&settings(&db, &b, false))
        .await
        .expect_err("PgBouncer's default refuses `options`");
    let text = err.to_string();
    assert!(
        text.contains("unsupported startup parameter: options")
            && text.contains("set DATABASE_URI_TRANSACTION_POOLER=true")
            && text.contains("docs/operations.md, section \"Behind PgBouncer\""),
        "{text}"
    );
    // Only bulk undeclared: its own setting is named.
    let mut bulk_only = settings(&db, &b, true);
    bulk_only.pooler.bulk = false;
    let err = Databases::connect(&bulk_only)
        .await
        .expect_err("the bulk pool sends `options` to PgBouncer");
    let text = err.to_string();
    assert!(
        text.contains("bulk pool")
            && text.contains("set DATABASE_URI_BULK_TRANSACTION_POOLER=true")
            && !text.contains("set DATABASE_URI_TRANSACTION_POOLER"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_cached_is_refused_through_a_pooler_and_query_typed_works() {
    let db = test_db().await;
    let b = enforced(&db, replica(&db));
    let dbs = Databases::connect(&settings(&db, &b, true))
        .await
        .expect("both pools through PgBouncer");
    let c = dbs.default().get().await.expect("a connection");
    let err = c
        .prepare_cached("SELECT 1")
        .await
        .expect_err("a named statement through a transaction pooler");
    assert!(
        matches!(
            err,
            PoolError::NamedStatementThroughPooler {
                bind: Bind::Default,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("query_typed"), "{err}");
    let n: i64 = c
        .query_typed("SELECT $1::int8 * 2", &[(&21i64, Type::INT8)])
        .await
        .expect("query_typed through PgBouncer")[0]
        .get(0);
    assert_eq!(n, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_refusing_clients_is_a_connection_limit_error() {
    let db = test_db().await;
    let b = PgBouncer::builder()
        .database("primary", db.primary(), db.name())
        .connect_query(&format!("SET statement_timeout = {PRIMARY_TIMEOUT_MS}"))
        .setting("max_client_conn", "2")
        .start()
        .expect(NEED_BOUNCER);
    let p = db.primary();
    // Fill PgBouncer's client slots.
    let mut clients = Vec::new();
    for _ in 0..10 {
        match b.endpoint(&p.user, &p.password).connect("primary").await {
            Ok(c) => clients.push(c),
            Err(e) if format!("{e:?}").contains("no more connections allowed") => break,
            Err(e) => panic!("a client through PgBouncer: {e}"),
        }
    }
    assert!(clients.len() < 10, "PgBouncer never refused a client");
    let s = settings_from(&[
        (
            "SQLALCHEMY_DATABASE_URI",
            b.endpoint(&p.user, &p.password).uri("primary"),
        ),
        ("DATABASE_URI_TRANSACTION_POOLER", "true".to_owned()),
        (
            "DATABASE_STATEMENT_TIMEOUT_MS",
            PRIMARY_TIMEOUT_MS.to_owned(),
        ),
    ]);
    let err = tokio::time::timeout(Duration::from_secs(10), Databases::connect(&s))
        .await
        .expect("ends within 10 s")
        .expect_err("PgBouncer is full");
    assert!(
        matches!(
            &err,
            PoolError::Connect(ConnectError::ConnectionLimit { bind: Bind::Default, limit, .. })
                if limit.contains("max_client_conn")
        ),
        "{err:?}"
    );
}
