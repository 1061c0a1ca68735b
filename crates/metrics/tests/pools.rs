//! Real pools on the harness' shared primary + replica, observed by `DbMetrics`; the rendered
//! text is parsed and checked with promtool.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use notify_db_config::Settings;
use notify_db_metrics::{
    MetricsHandle, RequestContext, names, with_job_context, with_request_context,
};
use notify_db_testdb::{PRIMARY_ADDR, REPLICA_ADDR, TestDb};

use common::{Parsed, observed_pools, parse, promtool_check, replicated_db};

fn settings(db: &TestDb) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert("SQLALCHEMY_DATABASE_URI".into(), db.primary_uri());
    let replica = db.replica_uri().expect("the shared cluster has a replica");
    env.insert("SQLALCHEMY_DATABASE_URI_BULK".into(), replica);
    Settings::load(None, &|k| env.get(k).cloned()).expect("settings from the test environment")
}

fn primary() -> String {
    PRIMARY_ADDR.to_string()
}

fn replica() -> String {
    REPLICA_ADDR.to_string()
}

/// Polls the rendered metrics until `check` holds (the pool closes connections in background
/// tasks), panicking with the last payload after `within`.
async fn eventually(
    handle: &MetricsHandle,
    within: Duration,
    what: &str,
    check: impl Fn(&Parsed) -> bool,
) -> Parsed {
    let deadline = Instant::now() + within;
    loop {
        let text = handle.render();
        let parsed = parse(&text);
        if check(&parsed) {
            return parsed;
        }
        if Instant::now() > deadline {
            panic!("{what}: not reached within {within:?}; last payload:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_sequence_on_real_pools() {
    let db = replicated_db().await;
    let mut s = settings(&db);
    s.pool.size = 4;
    let (handle, dbs) = observed_pools(&s).await;
    let (p, r) = (primary(), replica());
    let lbl_d = [("bind", "default"), ("inet_server_addr", p.as_str())];
    let lbl_b = [("bind", "bulk"), ("inet_server_addr", r.as_str())];

    // A request holding 3 default connections at once, then a job holding 2 bulk ones.
    let ctx = RequestContext::new("POST", "api.notify.test", "/v2/notifications/sms");
    let mid = with_request_context(ctx, async {
        let mut held = Vec::new();
        for _ in 0..3 {
            let c = dbs.default().get().await.expect("default connection");
            c.simple_query("SELECT 1")
                .await
                .expect("query on the primary");
            held.push(c);
        }
        let mid = parse(&handle.render());
        drop(held);
        mid
    })
    .await;
    assert_eq!(mid.gauge(names::CONNECTED, &lbl_d), Some(3.0));
    assert_eq!(mid.gauge(names::CHECKED_OUT, &lbl_d), Some(3.0));

    let mid = with_job_context("notify-celery", "create-nightly-billing", async {
        let a = dbs.bulk().get().await.expect("bulk connection");
        let b = dbs.bulk().get().await.expect("bulk connection");
        assert!(
            a.in_recovery() && b.in_recovery(),
            "bulk connections are on the replica"
        );
        parse(&handle.render())
    })
    .await;
    assert_eq!(mid.gauge(names::CONNECTED, &lbl_b), Some(2.0));
    assert_eq!(mid.gauge(names::CHECKED_OUT, &lbl_b), Some(2.0));

    // One more request reuses an idle default connection.
    let ctx = RequestContext::new(
        "GET",
        "api.notify.test",
        "/v2/notifications/{notification_id}",
    );
    with_request_context(ctx, async {
        let c = dbs.default().get().await.expect("default connection");
        c.simple_query("SELECT 1").await.expect("query");
    })
    .await;

    let text = handle.render();
    let m = parse(&text);
    assert_eq!(
        m.names(),
        [
            names::OPEN_DURATION,
            names::CHECKED_OUT,
            names::CONNECTED,
            names::CONNECTIONS_CLOSED,
            names::CONNECTIONS_OPENED,
            names::LONGEST_CHECKOUT,
            names::POOL_MAX_SIZE,
            names::POOL_TIMEOUTS,
            names::POOL_WAIT,
        ]
        .map(String::from)
        .to_vec()
    );
    assert_eq!(m.label_sets(names::CONNECTED).len(), 2);
    assert_eq!(m.gauge(names::CONNECTED, &lbl_d), Some(3.0));
    assert_eq!(m.gauge(names::CONNECTED, &lbl_b), Some(2.0));
    assert_eq!(m.gauge(names::CHECKED_OUT, &lbl_d), Some(0.0));
    assert_eq!(m.gauge(names::CHECKED_OUT, &lbl_b), Some(0.0));
    assert_eq!(
        m.gauge(names::POOL_MAX_SIZE, &[("bind", "default")]),
        Some(4.0)
    );
    assert_eq!(
        m.gauge(names::POOL_MAX_SIZE, &[("bind", "bulk")]),
        Some(4.0)
    );
    assert_eq!(
        m.counter(names::POOL_TIMEOUTS, &[("bind", "default")]),
        Some(0.0)
    );
    let post = with("POST", "api.notify.test", "/v2/notifications/sms", &lbl_d);
    let get = with(
        "GET",
        "api.notify.test",
        "/v2/notifications/{notification_id}",
        &lbl_d,
    );
    let job = with("celery", "notify-celery", "create-nightly-billing", &lbl_b);
    assert_eq!(m.label_sets(names::OPEN_DURATION).len(), 3);
    assert_eq!(m.hist_count(names::OPEN_DURATION, &post), Some(3.0));
    assert_eq!(m.hist_count(names::OPEN_DURATION, &get), Some(1.0));
    assert_eq!(m.hist_count(names::OPEN_DURATION, &job), Some(2.0));
    assert!(
        m.hist_sum(names::OPEN_DURATION, &post)
            .is_some_and(|s| s > 0.0)
    );
    assert_eq!(
        m.hist_count(names::POOL_WAIT, &[("bind", "default")]),
        Some(4.0)
    );
    assert_eq!(
        m.hist_count(names::POOL_WAIT, &[("bind", "bulk")]),
        Some(2.0)
    );
    promtool_check(&text);

    // Dropping the pools closes every connection: connected returns to 0, never below.
    drop(dbs);
    let m = eventually(
        &handle,
        Duration::from_secs(10),
        "connected back to 0 after pool drop",
        |m| m.gauge_total(names::CONNECTED) == 0.0,
    )
    .await;
    assert_eq!(m.gauge(names::CONNECTED, &lbl_d), Some(0.0));
    assert_eq!(m.gauge(names::CONNECTED, &lbl_b), Some(0.0));
    m.assert_no_negative(names::CONNECTED);
    m.assert_no_negative(names::CHECKED_OUT);
}

fn with<'a>(
    method: &'a str,
    host: &'a str,
    path: &'a str,
    bind: &[(&'a str, &'a str); 2],
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("method", method),
        ("host", host),
        ("path", path),
        bind[0],
        bind[1],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_expiry_closes_and_counts_down() {
    let db = replicated_db().await;
    let mut s = settings(&db);
    s.pool.max_lifetime = Duration::from_secs(1);
    let (handle, dbs) = observed_pools(&s).await;
    let p = primary();
    let lbl_d = [("bind", "default"), ("inet_server_addr", p.as_str())];
    with_job_context("test", "expiry", async {
        let a = dbs.default().get().await.expect("connection");
        let b = dbs.default().get().await.expect("connection");
        drop((a, b));
    })
    .await;
    assert_eq!(
        parse(&handle.render()).gauge(names::CONNECTED, &lbl_d),
        Some(2.0)
    );
    // Idle past their lifetime, the pool's reaper closes them.
    let m = eventually(
        &handle,
        Duration::from_secs(10),
        "expired connections closed",
        |m| m.gauge(names::CONNECTED, &lbl_d) == Some(0.0),
    )
    .await;
    m.assert_no_negative(names::CONNECTED);
    // A new checkout opens a fresh one.
    with_job_context("test", "expiry", async {
        let c = dbs.default().get().await.expect("connection");
        c.simple_query("SELECT 1").await.expect("query");
    })
    .await;
    let m = parse(&handle.render());
    assert_eq!(m.gauge(names::CONNECTED, &lbl_d), Some(1.0));
    assert_eq!(m.gauge(names::CHECKED_OUT, &lbl_d), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_or_panicking_holders_leave_checked_out_correct() {
    let db = replicated_db().await;
    let s = settings(&db);
    let (handle, dbs) = observed_pools(&s).await;
    let p = primary();
    let lbl_d = [("bind", "default"), ("inet_server_addr", p.as_str())];

    // A task holding a connection in a long query is aborted.
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let pool = dbs.default().clone();
    let task = tokio::spawn(with_request_context(
        RequestContext::new("GET", "h", "/slow"),
        async move {
            let c = pool.get().await.expect("connection");
            let _ = got_tx.send(());
            let _ = c.simple_query("SELECT pg_sleep(60)").await;
        },
    ));
    got_rx.await.expect("the task checked out");
    assert_eq!(
        parse(&handle.render()).gauge(names::CHECKED_OUT, &lbl_d),
        Some(1.0)
    );
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());

    // A task panicking while holding one.
    let pool = dbs.default().clone();
    let task = tokio::spawn(with_request_context(
        RequestContext::new("GET", "h", "/panics"),
        async move {
            let _c = pool.get().await.expect("connection");
            panic!("handler bug while holding a connection");
        },
    ));
    assert!(task.await.expect_err("panicked").is_panic());

    // A future dropped by a timeout while waiting on its query.
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        with_request_context(RequestContext::new("GET", "h", "/timeout"), async {
            let c = dbs.default().get().await.expect("connection");
            c.simple_query("SELECT pg_sleep(60)").await.map(|_| ())
        }),
    )
    .await;
    assert!(r.is_err(), "the timeout fired");

    let m = parse(&handle.render());
    assert_eq!(m.gauge(names::CHECKED_OUT, &lbl_d), Some(0.0));
    m.assert_no_negative(names::CHECKED_OUT);
    for path in ["/slow", "/panics", "/timeout"] {
        let labels = [
            ("method", "GET"),
            ("host", "h"),
            ("path", path),
            lbl_d[0],
            lbl_d[1],
        ];
        assert_eq!(
            m.hist_count(names::OPEN_DURATION, &labels),
            Some(1.0),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_counts_a_timeout_and_its_wait() {
    let db = replicated_db().await;
    let mut s = settings(&db);
    s.pool.size = 1;
    s.pool.wait_timeout = Duration::from_millis(300);
    let (handle, dbs) = observed_pools(&s).await;
    with_job_context("test", "exhaust", async {
        let held = dbs.default().get().await.expect("the only connection");
        let err = dbs
            .default()
            .get()
            .await
            .expect_err("the pool is exhausted");
        assert!(
            err.to_string().contains("default"),
            "the error names the bind: {err}"
        );
        drop(held);
    })
    .await;
    let m = parse(&handle.render());
    assert_eq!(
        m.counter(names::POOL_TIMEOUTS, &[("bind", "default")]),
        Some(1.0)
    );
    assert_eq!(
        m.hist_count(names::POOL_WAIT, &[("bind", "default")]),
        Some(2.0)
    );
    let waited = m
        .hist_sum(names::POOL_WAIT, &[("bind", "default")])
        .expect("wait sum");
    assert!(
        (0.3..5.0).contains(&waited),
        "the timed-out wait is recorded: {waited}"
    );
    let p = primary();
    assert_eq!(
        m.gauge(
            names::CHECKED_OUT,
            &[("bind", "default"), ("inet_server_addr", p.as_str())]
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bulk_host_is_counted_by_host_and_reason() {
    let db = replicated_db().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("probe port")
        .local_addr()
        .expect("addr")
        .port();
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert("SQLALCHEMY_DATABASE_URI".into(), db.primary_uri());
    env.insert(
        "SQLALCHEMY_DATABASE_URI_BULK".into(),
        format!("postgresql://postgres:pw@127.0.0.1:{port}/x"),
    );
    let s = Settings::load(None, &|k| env.get(k).cloned()).expect("settings");
    let (handle, dbs) = observed_pools(&s).await;
    with_job_context("test", "refused", async {
        dbs.bulk().get().await.expect_err("nothing listens there");
    })
    .await;
    let m = parse(&handle.render());
    let host = format!("127.0.0.1:{port}");
    let refused = m.counter(
        names::CONNECT_ERRORS,
        &[
            ("bind", "bulk"),
            ("host", host.as_str()),
            ("reason", "refused"),
        ],
    );
    assert!(
        refused.is_some_and(|n| n >= 1.0),
        "connect errors:\n{}",
        handle.render()
    );
    assert_eq!(m.gauge_total(names::CONNECTED), 0.0);
    assert_eq!(m.gauge_total(names::CHECKED_OUT), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_falling_back_to_the_primary_is_labelled_with_the_primary_address() {
    let db = replicated_db().await;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert("SQLALCHEMY_DATABASE_URI".into(), db.primary_uri());
    let s = Settings::load(None, &|k| env.get(k).cloned()).expect("settings");
    assert!(s.bulk_is_fallback);
    let (handle, dbs) = observed_pools(&s).await;
    with_job_context("test", "fallback", async {
        let c = dbs.bulk().get().await.expect("bulk on the primary");
        c.simple_query("SELECT 1").await.expect("read");
    })
    .await;
    let m = parse(&handle.render());
    let p = primary();
    assert_eq!(
        m.gauge(
            names::CONNECTED,
            &[("bind", "bulk"), ("inet_server_addr", p.as_str())]
        ),
        Some(1.0)
    );
    assert_eq!(m.label_sets(names::CONNECTED).len(), 1);
}
