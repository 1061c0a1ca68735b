//! `db_statement_timeouts_total` counts real 57014 statement timeouts and nothing else;
//! `db_connections_opened_total` / `_closed_total` count the pool's connects and closes.

mod common;

use std::time::Duration;

use notify_db_metrics::{MetricsHandle, names};
use notify_db_pool::{Bind, ConnInfo, PoolObserver};
use notify_db_testdb::TestDb;

use common::{parse, promtool_check};

#[tokio::test]
async fn statement_timeouts_are_counted_per_bind_and_other_errors_are_not() {
    let db = TestDb::create().await.expect("test database");
    let client = db.connect().await.expect("connect");
    let handle = MetricsHandle::new();
    let obs = handle.observer();

    client
        .batch_execute("SET statement_timeout = 50")
        .await
        .expect("set statement_timeout");
    let timed_out = tokio::time::timeout(
        Duration::from_secs(30),
        client.query("SELECT pg_sleep(5)", &[]),
    )
    .await
    .expect("the statement timeout ends the query within 30 s")
    .expect_err("pg_sleep(5) must hit statement_timeout = 50ms");
    assert!(obs.statement_error(Bind::Default, &timed_out));
    assert!(obs.statement_error(Bind::Default, &timed_out));
    assert!(obs.statement_error(Bind::Bulk, &timed_out));

    // Not a timeout: a syntax error, and a statement cancelled by pg_cancel_backend (also 57014).
    let syntax = client
        .query("SELEC 1", &[])
        .await
        .expect_err("a syntax error");
    assert!(!obs.statement_error(Bind::Default, &syntax));
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .expect("reset statement_timeout");
    let cancel = client.cancel_token();
    let sleeper = client.query("SELECT pg_sleep(30)", &[]);
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("send the cancel request");
    };
    let (cancelled, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(sleeper, canceller)
    })
    .await
    .expect("the cancel ends the query within 30 s");
    let cancelled = cancelled.expect_err("the cancelled statement fails");
    assert_eq!(
        cancelled.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert!(!obs.statement_error(Bind::Default, &cancelled));

    let text = handle.render();
    let p = parse(&text);
    assert_eq!(
        p.counter(names::STATEMENT_TIMEOUTS, &[("bind", "default")]),
        Some(2.0)
    );
    assert_eq!(
        p.counter(names::STATEMENT_TIMEOUTS, &[("bind", "bulk")]),
        Some(1.0)
    );
    promtool_check(&text);
}

#[test]
fn connections_opened_and_closed_are_counted_per_bind() {
    let handle = MetricsHandle::new();
    let obs = handle.observer();
    let conn = |id: u64, bind: Bind| ConnInfo {
        id,
        bind,
        host: "db.internal".to_owned(),
        port: 5432,
        server_addr: None,
        in_recovery: false,
        backend_pid: 1000 + id as i32,
    };
    let (a, b, c) = (
        conn(1, Bind::Default),
        conn(2, Bind::Default),
        conn(3, Bind::Bulk),
    );
    for info in [&a, &b, &c] {
        obs.connected(info);
    }
    obs.closed(&a);
    let text = handle.render();
    let p = parse(&text);
    let default = [("bind", "default")];
    let bulk = [("bind", "bulk")];
    assert_eq!(p.counter(names::CONNECTIONS_OPENED, &default), Some(2.0));
    assert_eq!(p.counter(names::CONNECTIONS_CLOSED, &default), Some(1.0));
    assert_eq!(p.counter(names::CONNECTIONS_OPENED, &bulk), Some(1.0));
    assert_eq!(p.counter(names::CONNECTIONS_CLOSED, &bulk), Some(0.0));
    promtool_check(&text);
}
