//! A server at `max_connections` (SQLSTATE 53300): the pool's typed error names bind, host and
//! limit, the pool backs off instead of reconnecting in a tight loop, and
//! `db_connection_errors_total` counts it with `reason="limit"`. A private cluster with a low
//! `max_connections`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use notify_db_config::Settings;
use notify_db_metrics::names;
use notify_db_pool::{Bind, ConnectError, PoolError};
use notify_db_testdb::Cluster;

use common::{observed_pools, parse};

const NEED_CLUSTER: &str = "a private PostgreSQL cluster (notify-db-testdb needs PostgreSQL 15+ \
                            binaries; see crates/testdb)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_max_connections_gives_a_typed_error_a_back_off_and_reason_limit() {
    let cluster = Cluster::builder()
        .label("pool-limit")
        .setting("max_connections", "4")
        .setting("superuser_reserved_connections", "0")
        .start()
        .expect(NEED_CLUSTER);
    let ep = cluster.primary().endpoint().clone();
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert("SQLALCHEMY_DATABASE_URI".into(), ep.uri("postgres"));
    env.insert("SQLALCHEMY_POOL_SIZE".into(), "8".into());
    let settings = Settings::load(None, &|k| env.get(k).cloned()).expect("settings");
    let (handle, dbs) = observed_pools(&settings).await;

    // Every slot taken by other clients.
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(ep.connect("postgres").await.expect("a direct session"));
    }
    let limited = |e: &PoolError| {
        matches!(e, PoolError::Connect(ConnectError::ConnectionLimit { bind: Bind::Default, host, limit, .. })
            if host == "127.0.0.1" && limit.contains("max_connections"))
    };
    let err = tokio::time::timeout(Duration::from_secs(10), dbs.default().get())
        .await
        .expect("get() ends within 10 s")
        .expect_err("the server is full");
    assert!(limited(&err), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("default pool")
            && text.contains(&format!("127.0.0.1:{}", ep.port))
            && text.contains("max_connections (SQLSTATE 53300)")
            && text.contains("backs off"),
        "{text}"
    );
    assert!(!text.contains(&ep.password), "no password: {text}");

    // During the back-off, get() fails at once without opening a connection.
    let started = Instant::now();
    for _ in 0..20 {
        let again = dbs.default().get().await.expect_err("still in back-off");
        assert!(limited(&again), "{again:?}");
    }
    let burst = started.elapsed();
    let errors = |p: &common::Parsed| {
        p.counter(
            names::CONNECT_ERRORS,
            &[
                ("bind", "default"),
                ("host", &format!("127.0.0.1:{}", ep.port)),
                ("reason", "limit"),
            ],
        )
    };
    let counted = errors(&parse(&handle.render()));
    // 20 calls in the first back-off (100 ms) reach the server at most once more.
    assert!(
        matches!(counted, Some(n) if n <= 2.0) || burst > Duration::from_millis(100),
        "one attempt per back-off, not one per get(): {counted:?} in {burst:?}"
    );
    assert!(counted.is_some_and(|n| n >= 1.0), "reason=limit counted");

    // Slots free again: after the back-off the pool connects.
    drop(others);
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match dbs.default().get().await {
            Ok(c) => break c,
            Err(e) if limited(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the pool did not recover: {e}"),
        }
    };
    let one: i32 = conn
        .query_one("SELECT 1", &[])
        .await
        .expect("a query after recovery")
        .get(0);
    assert_eq!(one, 1);
}
