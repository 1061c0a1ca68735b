//! Pool behaviour against the shared primary + streaming replica of the test harness.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Recorder, closed_port, recorded, replicated_db, settings_from};
use notify_db_config::Settings;
use notify_db_pool::{Bind, ConnectError, Databases, PoolError, connect_one};
use notify_db_testdb::TestDb;
use tokio_postgres::error::SqlState;

/// Environment overrides, then the expected value on default and on bulk.
type Case<'a> = (&'a [(&'a str, &'a str)], String, String);

fn settings(db: &TestDb, extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![("SQLALCHEMY_DATABASE_URI", db.primary_uri())];
    if let Some(r) = db.replica_uri() {
        vars.push(("SQLALCHEMY_DATABASE_URI_BULK", r));
    }
    for (k, v) in extra {
        vars.push((k, (*v).to_owned()));
    }
    settings_from(&vars)
}

/// `SHOW`-style value of a setting in its base unit (ms for timeouts).
async fn setting(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one("SELECT setting FROM pg_settings WHERE name = $1", &[&name])
        .await
        .expect("reading pg_settings")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_reaches_primary_and_bulk_reaches_replica_with_their_timeouts() {
    let db = replicated_db().await;
    let s = settings(
        &db,
        &[
            ("DATABASE_STATEMENT_TIMEOUT_MS", "4321"),
            ("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "8765"),
        ],
    );
    let dbs = Databases::connect(&s).await.expect("connecting both pools");

    let d = dbs.default().get().await.expect("default connection");
    let row = d
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("query on default");
    assert!(!row.get::<_, bool>(0), "default must be the primary");
    assert!(!d.in_recovery());
    assert_eq!(d.bind(), Bind::Default);
    assert_eq!(setting(&d, "statement_timeout").await, "4321");

    let b = dbs.bulk().get().await.expect("bulk connection");
    let row = b
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("query on bulk");
    assert!(row.get::<_, bool>(0), "bulk must be the replica");
    assert!(b.in_recovery());
    assert_eq!(b.bind(), Bind::Bulk);
    assert_eq!(setting(&b, "statement_timeout").await, "8765");

    let primary: IpAddr = "127.0.0.1".parse().expect("address");
    let replica: IpAddr = "127.0.0.2".parse().expect("address");
    assert_eq!(d.server_addr(), Some(primary));
    assert_eq!(b.server_addr(), Some(replica));
    assert_ne!(d.server_addr(), b.server_addr());
    assert_eq!(d.info().port, db.primary().port);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_longer_than_the_timeout_is_cancelled_on_each_bind() {
    let db = replicated_db().await;
    let s = settings(
        &db,
        &[
            ("DATABASE_STATEMENT_TIMEOUT_MS", "200"),
            ("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "300"),
        ],
    );
    let dbs = Databases::connect(&s).await.expect("connecting both pools");
    for pool in [dbs.default(), dbs.bulk()] {
        let c = pool.get().await.expect("connection");
        let err = c
            .simple_query("SELECT pg_sleep(3)")
            .await
            .expect_err("pg_sleep(3) must hit the statement timeout");
        assert_eq!(
            err.code(),
            Some(&SqlState::QUERY_CANCELED),
            "{} bind: {err}",
            pool.bind()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_bulk_fail_read_only_on_replica_and_on_fallback_primary() {
    let db = replicated_db().await;

    // Bulk on the replica.
    let dbs = Databases::connect(&settings(&db, &[]))
        .await
        .expect("connecting both pools");
    let b = dbs.bulk().get().await.expect("bulk connection");
    let err = b
        .batch_execute("CREATE TABLE bulk_write (x int)")
        .await
        .expect_err("a write on the replica must fail");
    assert_eq!(
        err.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err}"
    );

    // No replica configured: bulk falls back to the primary, still read-only.
    let s = settings_from(&[("SQLALCHEMY_DATABASE_URI", db.primary_uri())]);
    assert!(s.bulk_is_fallback);
    let dbs = Databases::connect(&s).await.expect("connecting both pools");
    let d = dbs.default().get().await.expect("default connection");
    d.batch_execute("CREATE TABLE default_write (x int); INSERT INTO default_write VALUES (1)")
        .await
        .expect("default bind can write");
    let b = dbs.bulk().get().await.expect("bulk connection");
    assert!(!b.in_recovery(), "fallback bulk is the primary");
    let err = b
        .batch_execute("INSERT INTO default_write VALUES (2)")
        .await
        .expect_err("a write on fallback bulk must fail");
    assert_eq!(
        err.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err}"
    );
    let n: i64 = b
        .query_one("SELECT count(*) FROM default_write", &[])
        .await
        .expect("fallback bulk can read")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_workers_set_when_configured_zero_when_disabled_untouched_otherwise() {
    let db = replicated_db().await;
    let plain = db.connect().await.expect("plain connection");
    let server_default = setting(&plain, "max_parallel_workers_per_gather").await;
    assert!(
        server_default != "3" && server_default != "1" && server_default != "0",
        "the test needs a server default other than 0, 1 and 3 (is {server_default})"
    );

    let cases: [Case<'_>; 4] = [
        (
            &[
                ("DATABASE_MAX_PARALLEL_WORKERS", "3"),
                ("DATABASE_MAX_PARALLEL_WORKERS_REPLICA", "1"),
            ],
            "3".into(),
            "1".into(),
        ),
        (
            &[("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", "true")],
            "0".into(),
            "0".into(),
        ),
        (
            &[
                ("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", "true"),
                ("DATABASE_MAX_PARALLEL_WORKERS_REPLICA", "1"),
            ],
            "0".into(),
            "1".into(),
        ),
        (&[], server_default.clone(), server_default.clone()),
    ];
    for (vars, want_default, want_bulk) in cases {
        let dbs = Databases::connect(&settings(&db, vars))
            .await
            .expect("connecting both pools");
        let d = dbs.default().get().await.expect("default connection");
        let b = dbs.bulk().get().await.expect("bulk connection");
        assert_eq!(
            setting(&d, "max_parallel_workers_per_gather").await,
            want_default,
            "default with {vars:?}"
        );
        assert_eq!(
            setting(&b, "max_parallel_workers_per_gather").await,
            want_bulk,
            "bulk with {vars:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_lifetime_is_replaced() {
    let db = replicated_db().await;
    let mut s = settings(&db, &[]);
    s.pool.max_lifetime = Duration::from_secs(1);
    s.pool.size = 1;
    let (dbs, recorder) = recorded(&s).await;
    let first = dbs
        .default()
        .get()
        .await
        .expect("connection")
        .info()
        .backend_pid;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = dbs.default().get().await.expect("connection after 2 s");
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(pid, c.info().backend_pid);
    assert_ne!(
        pid, first,
        "a connection older than its lifetime was handed out"
    );
    assert!(
        recorder
            .events()
            .contains(&format!("closed default 127.0.0.1 {first}")),
        "the expired connection was not reported closed: {:?}",
        recorder.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_survive_many_recycles() {
    let db = replicated_db().await;
    let mut s = settings(
        &db,
        &[
            ("DATABASE_STATEMENT_TIMEOUT_MS", "7777"),
            ("DATABASE_MAX_PARALLEL_WORKERS", "3"),
        ],
    );
    s.pool.size = 2;
    let dbs = Databases::connect(&s).await.expect("connecting both pools");
    let mut pids = HashSet::new();
    for i in 0..200 {
        let c = dbs.default().get().await.expect("connection");
        let row = c
            .query_one(
                "SELECT pg_backend_pid(), current_setting('statement_timeout'), \
                 current_setting('max_parallel_workers_per_gather')",
                &[],
            )
            .await
            .expect("query");
        pids.insert(row.get::<_, i32>(0));
        assert_eq!(row.get::<_, String>(1), "7777ms", "checkout {i}");
        assert_eq!(row.get::<_, String>(2), "3", "checkout {i}");
        let b = dbs.bulk().get().await.expect("bulk connection");
        let ro: String = b
            .query_one(
                "SELECT current_setting('default_transaction_read_only')",
                &[],
            )
            .await
            .expect("bulk query")
            .get(0);
        assert_eq!(ro, "on", "bulk checkout {i}");
    }
    assert!(pids.len() <= 2, "connections were reused: {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_fails_after_the_wait_timeout_with_a_typed_error() {
    let db = replicated_db().await;
    let mut s = settings(&db, &[]);
    s.pool.size = 1;
    s.pool.wait_timeout = Duration::from_millis(300);
    let (dbs, recorder) = recorded(&s).await;
    let held = dbs.default().get().await.expect("the only connection");
    let started = Instant::now();
    let err = dbs
        .default()
        .get()
        .await
        .expect_err("second get() must time out");
    assert!(started.elapsed() >= Duration::from_millis(300));
    match &err {
        PoolError::Exhausted {
            bind,
            size,
            waiting,
            timeout,
        } => {
            assert_eq!(*bind, Bind::Default);
            assert_eq!(*size, 1);
            assert!(*waiting >= 1, "waiting = {waiting}");
            assert_eq!(*timeout, Duration::from_millis(300));
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("pool exhausted") && text.contains("SQLALCHEMY_POOL_SIZE"),
        "{text}"
    );
    assert_eq!(recorder.count("wait_timed_out default"), 1);
    drop(held);
    dbs.default()
        .get()
        .await
        .expect("a connection once the held one is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_sees_connect_checkout_return_and_close() {
    let db = replicated_db().await;
    let recorder = Arc::new(Recorder::default());
    let s = settings(&db, &[]);
    let dbs = Databases::builder(&s)
        .observer(recorder.clone())
        .build()
        .await
        .expect("connecting both pools");
    {
        let c = dbs.default().get().await.expect("connection");
        let pid = c.info().backend_pid;
        // A holder that is cancelled still returns its connection.
        let pool = dbs.default().clone();
        let task = tokio::spawn(async move {
            let _c = pool.get().await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
        drop(c);
        let events = recorder.events();
        assert!(
            events.contains(&format!("returned default {pid} token_ok=true")),
            "{events:?}"
        );
    }
    assert_eq!(recorder.count("pool_created default 5"), 1);
    assert_eq!(recorder.count("pool_created bulk 5"), 1);
    assert_eq!(recorder.count("checked_out"), recorder.count("returned"));
    let connected = recorder.count("connected");
    assert!(connected >= 3, "{:?}", recorder.events());
    dbs.default().close();
    dbs.bulk().close();
    drop(dbs);
    assert_eq!(
        recorder.count("closed"),
        connected,
        "every connection must be reported closed: {:?}",
        recorder.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_host_and_never_the_password() {
    let db = replicated_db().await;
    let p = db.primary();
    let wrong = "not-the-password-4711";
    let uri = format!(
        "postgresql://{}:{wrong}@{}:{}/{}",
        p.user,
        p.host,
        p.port,
        db.name()
    );
    let s = settings_from(&[("SQLALCHEMY_DATABASE_URI", uri)]);
    let err = Databases::connect(&s)
        .await
        .expect_err("a wrong password must fail");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            PoolError::Connect(ConnectError::Connect {
                failure: notify_db_pool::ConnectFailure::Auth,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(text.contains(&format!("{}:{}", p.host, p.port)), "{text}");
    assert!(
        !text.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{text}"
    );

    let dead = closed_port();
    let s = settings_from(&[(
        "SQLALCHEMY_DATABASE_URI",
        format!("postgresql://u:{wrong}@127.0.0.1:{dead}/x"),
    )]);
    let err = Databases::connect(&s).await.expect_err("nothing listens");
    assert!(
        matches!(
            err,
            PoolError::Connect(ConnectError::Connect {
                failure: notify_db_pool::ConnectFailure::Refused,
                port,
                ..
            }) if port == dead
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains(wrong), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_one_sets_up_a_single_connection() {
    let db = replicated_db().await;
    let s = settings(&db, &[("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "9999")]);
    let (client, info) = connect_one(&s.bulk, &s, Bind::Bulk)
        .await
        .expect("one bulk connection");
    assert!(info.in_recovery);
    assert_eq!(setting(&client, "statement_timeout").await, "9999");
    assert_eq!(
        setting(&client, "default_transaction_read_only").await,
        "on"
    );
    let app: String = client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(app, s.pool.application_name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_cached_prepares_once_per_connection() {
    let db = replicated_db().await;
    let mut s = settings(&db, &[]);
    s.pool.size = 1;
    let dbs = Databases::connect(&s).await.expect("connecting both pools");
    let sql = "SELECT $1::int + 1";
    let first = {
        let c = dbs.default().get().await.expect("connection");
        let stmt = c.prepare_cached(sql).await.expect("prepare");
        let v: i32 = c.query_one(&stmt, &[&41]).await.expect("query").get(0);
        assert_eq!(v, 42);
        c.info().backend_pid
    };
    let c = dbs
        .default()
        .get()
        .await
        .expect("the same connection again");
    assert_eq!(c.info().backend_pid, first);
    let stmt = c.prepare_cached(sql).await.expect("cached statement");
    let v: i32 = c.query_one(&stmt, &[&1]).await.expect("query").get(0);
    assert_eq!(v, 2);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
            &[&sql],
        )
        .await
        .expect("pg_prepared_statements")
        .get(0);
    assert_eq!(n, 1);
}

/// Resumes a SIGSTOPped backend when dropped (also when the test fails), so that the shared
/// server can still shut down.
struct Stopped(i32);

impl Stopped {
    fn signal(pid: i32, sig: &str) -> bool {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        Stopped::signal(self.0, "-CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_whose_backend_stopped_answering_is_pinged_and_replaced() {
    let db = replicated_db().await;
    let mut s = settings(&db, &[]);
    s.pool.size = 1;
    s.pool.ping_idle_after = Duration::from_millis(400);
    s.pool.connect_timeout = Duration::from_secs(1);
    let (dbs, recorder) = recorded(&s).await;
    let first = dbs
        .default()
        .get()
        .await
        .expect("connection")
        .info()
        .backend_pid;
    // The backend stops answering while its socket stays open: nothing tells the client.
    assert!(Stopped::signal(first, "-STOP"), "kill -STOP {first}");
    let stopped = Stopped(first);
    // Checked out again at once: no ping, so no round trip (and here, the frozen connection).
    let t = Instant::now();
    let again = dbs.default().get().await.expect("connection");
    assert_eq!(again.info().backend_pid, first, "steady use must not ping");
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    drop(again);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Idle past ping_idle_after: the ping gets no answer within connect_timeout, the connection
    // is replaced, and the caller gets a working one.
    let t = Instant::now();
    let c = dbs.default().get().await.expect("a replacement connection");
    let took = t.elapsed();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("query on the replacement")
        .get(0);
    assert_ne!(pid, first, "the frozen connection was handed out");
    assert_eq!(pid, c.info().backend_pid);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "the ping waits connect_timeout (1 s), then a new connection: took {took:?}"
    );
    assert!(
        recorder
            .events()
            .contains(&format!("closed default 127.0.0.1 {first}")),
        "the frozen connection was not reported closed: {:?}",
        recorder.events()
    );
    drop(stopped);
    // Its socket is closed: once resumed the old backend sees that and exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&first],
            )
            .await
            .expect("query")
            .get(0);
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backend {first} still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
