//! The replica lag gauge, on a private primary + replica (pausing replay on the shared replica
//! would stall every other test's `sync_replica`).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use notify_db_config::Settings;
use notify_db_metrics::{MetricsHandle, ReplicaLagSampler, names};
use notify_db_testdb::Cluster;

use common::parse;

fn lag(handle: &MetricsHandle, server: &str) -> Option<f64> {
    parse(&handle.render()).gauge(names::REPLICA_LAG, &[("bind", "bulk"), ("host", server)])
}

/// Waits until the lag of `server` satisfies `check`; returns it.
async fn wait_lag(
    handle: &MetricsHandle,
    server: &str,
    what: &str,
    check: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = lag(handle, server);
        if let Some(v) = value.filter(|v| check(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last value {value:?}\n{}",
            handle.render()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_positive_while_replay_is_paused_and_zero_when_caught_up() {
    let cluster = Cluster::builder()
        .label("metrics-lag")
        .replica(true)
        .start()
        .unwrap_or_else(|e| {
            panic!("this test needs a private PostgreSQL cluster from the test harness: {e}")
        });
    let replica_server = cluster.replica().expect("a replica");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert(
        "SQLALCHEMY_DATABASE_URI".into(),
        cluster.primary().uri("postgres"),
    );
    env.insert(
        "SQLALCHEMY_DATABASE_URI_BULK".into(),
        replica_server.uri("postgres"),
    );
    let settings = Settings::load(None, &|k| env.get(k).cloned()).expect("settings");
    let host = &settings.bulk.hosts()[0];
    let server = format!("{}:{}", host.host, host.port);

    let primary = cluster
        .primary()
        .endpoint()
        .connect("postgres")
        .await
        .expect("primary");
    let replica = replica_server
        .endpoint()
        .connect("postgres")
        .await
        .expect("replica");
    primary
        .batch_execute(
            "CREATE TABLE lag_probe (id serial primary key, at timestamptz default now())",
        )
        .await
        .expect("table");

    let handle = MetricsHandle::new();
    let _sampler =
        ReplicaLagSampler::spawn(&settings, Duration::from_millis(100), handle.observer());

    // Caught up and idle: exactly 0.
    wait_lag(&handle, &server, "0 while caught up", |v| v == 0.0).await;

    // A transaction replayed first, as on any replica in service.
    primary
        .batch_execute("INSERT INTO lag_probe DEFAULT VALUES")
        .await
        .expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The table itself may not have been replayed yet: an error means "not yet".
        let rows = replica
            .query_one("SELECT count(*) FROM lag_probe", &[])
            .await
            .map(|r| r.get::<_, i64>(0));
        if rows.is_ok_and(|n| n > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never replayed the first write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Replay paused while the primary keeps writing: the gauge grows.
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let stop = Instant::now() + Duration::from_secs(20);
    let mut grown = None;
    while Instant::now() < stop {
        primary
            .batch_execute("INSERT INTO lag_probe DEFAULT VALUES")
            .await
            .expect("write on the primary");
        if let Some(v) = lag(&handle, &server).filter(|v| *v >= 1.0) {
            grown = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown =
        grown.unwrap_or_else(|| panic!("lag never reached 1 s while paused:\n{}", handle.render()));
    assert!(
        grown.is_finite() && grown < 60.0,
        "a plausible lag: {grown}"
    );

    // Resumed: it catches up and the gauge is back to 0.
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    let back = wait_lag(&handle, &server, "back to ~0 after resume", |v| v < 0.5).await;
    assert!(back >= 0.0);
    common::promtool_check(&handle.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bulk_server_reads_nan_not_a_stale_value() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").port()
    };
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert(
        "SQLALCHEMY_DATABASE_URI".into(),
        format!("postgresql://u:secret-pw@127.0.0.1:{port}/x"),
    );
    env.insert(
        "SQLALCHEMY_DATABASE_URI_BULK".into(),
        format!("postgresql://u:secret-pw@127.0.0.1:{port}/x"),
    );
    let settings = Settings::load(None, &|k| env.get(k).cloned()).expect("settings");
    let handle = MetricsHandle::new();
    let _sampler =
        ReplicaLagSampler::spawn(&settings, Duration::from_millis(100), handle.observer());
    let server = format!("127.0.0.1:{port}");
    let v = wait_lag(
        &handle,
        &server,
        "NaN for a refused connection",
        f64::is_nan,
    )
    .await;
    assert!(v.is_nan());
    assert!(
        !handle.render().contains("secret-pw"),
        "no password in the metrics"
    );
}
