//! Lag-aware bulk routing over two replicas of a private cluster (pausing replay on the shared
//! replica would stall the other tests): a replica paused with `pg_wal_replay_pause()` while the
//! primary writes gets no new bulk session once the sampler reports its lag over the limit; when
//! both lag, bulk falls back to the primary (read-only) and says so in a metric; after resuming,
//! the replicas serve again. `db_replica_lag_seconds` is reported per replica host.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use notify_db_config::Settings;
use notify_db_metrics::{MetricsHandle, names};
use notify_db_pool::Databases;
use notify_db_testdb::{Cluster, Endpoint};
use tokio_postgres::error::SqlState;

use common::parse;

const NEED_CLUSTER: &str = "a private primary with two replicas (notify-db-testdb needs \
                            PostgreSQL 15+ binaries; see crates/testdb)";
const LIMIT: Duration = Duration::from_secs(2);
const PERIOD: Duration = Duration::from_millis(200);

/// The servers 5 bulk checkouts held at the same time land on, 10 times over.
async fn landing(dbs: &Databases) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let mut held = Vec::new();
        for _ in 0..5 {
            let c = tokio::time::timeout(Duration::from_secs(10), dbs.bulk().get())
                .await
                .expect("a bulk checkout within 10 s")
                .expect("a bulk connection");
            seen.insert(c.server_addr().map(|a| a.to_string()).unwrap_or_default());
            held.push(c);
        }
    }
    seen
}

async fn replay(replica: &Endpoint, pause: bool) {
    let c = replica
        .connect("postgres")
        .await
        .expect("a replica session");
    let sql = if pause {
        "SELECT pg_wal_replay_pause()"
    } else {
        "SELECT pg_wal_replay_resume()"
    };
    c.batch_execute(sql).await.expect("pausing/resuming replay");
}

fn lag(handle: &MetricsHandle, r: &Endpoint) -> Option<f64> {
    parse(&handle.render()).gauge(
        names::REPLICA_LAG,
        &[
            ("bind", "bulk"),
            ("host", &format!("{}:{}", r.host, r.port)),
        ],
    )
}

fn fallback(handle: &MetricsHandle) -> Option<f64> {
    parse(&handle.render()).gauge(names::BULK_FALLBACK, &[])
}

/// Waits until the lag sampler has reported `r`'s lag over the limit: after the pause it takes
/// the limit plus a sampling period, and more on a loaded machine (at most 30 s here).
async fn sampled_over_limit(handle: &MetricsHandle, r: &Endpoint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lag(handle, r).is_some_and(|l| l > LIMIT.as_secs_f64()) {
        assert!(
            Instant::now() < deadline,
            "the sampler never reported {}:{} over {LIMIT:?}:\n{}",
            r.host,
            r.port,
            handle.render()
        );
        tokio::time::sleep(PERIOD / 2).await;
    }
    // The metric is set just before the routing flag, in the same sampling step.
    tokio::time::sleep(PERIOD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_gets_no_new_bulk_sessions_and_all_lagging_falls_back_to_the_primary() {
    let cluster = Cluster::builder()
        .label("lag-routing")
        .replicas(2)
        .start()
        .expect(NEED_CLUSTER);
    let p = cluster.primary().endpoint().clone();
    let (r1, r2) = (
        cluster.replicas()[0].endpoint().clone(),
        cluster.replicas()[1].endpoint().clone(),
    );
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert("SQLALCHEMY_DATABASE_URI".into(), p.uri("postgres"));
    env.insert(
        "SQLALCHEMY_DATABASE_URI_BULK".into(),
        p.uri_over(&[(&r1.host, r1.port), (&r2.host, r2.port)], "postgres"),
    );
    let mut settings = Settings::load(None, &|k| env.get(k).cloned()).expect("settings");
    settings.pool.max_replica_lag = LIMIT;
    settings.pool.replica_lag_interval = PERIOD;
    let handle = MetricsHandle::new();
    let dbs = Databases::builder(&settings)
        .observer(handle.observer())
        .build()
        .await
        .expect("both pools");

    // The primary writes all along, so a paused replica falls behind.
    let writer = {
        let c = p.connect("postgres").await.expect("a primary session");
        c.batch_execute("CREATE TABLE ticks (at timestamptz DEFAULT now())")
            .await
            .expect("creating the table");
        tokio::spawn(async move {
            loop {
                if c.batch_execute("INSERT INTO ticks DEFAULT VALUES")
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    cluster.wait_for_replica().expect("both replicas streaming");
    let both: BTreeSet<String> = [r1.host.clone(), r2.host.clone()].into();
    assert_eq!(landing(&dbs).await, both, "bulk uses both replicas");

    replay(&r2, true).await;
    let paused = Instant::now();
    sampled_over_limit(&handle, &r2).await;
    let only_r1: BTreeSet<String> = [r1.host.clone()].into();
    assert_eq!(
        landing(&dbs).await,
        only_r1,
        "no new bulk session on the paused replica once its lag is over the limit ({}s after the pause; limit {LIMIT:?}, period {PERIOD:?})",
        paused.elapsed().as_secs_f64()
    );
    let l1 = lag(&handle, &r1);
    assert!(
        l1.is_some_and(|l| l < LIMIT.as_secs_f64()),
        "db_replica_lag_seconds of the replica still replaying: {l1:?}"
    );

    replay(&r1, true).await;
    sampled_over_limit(&handle, &r1).await;
    let only_primary: BTreeSet<String> = [p.host.clone()].into();
    assert_eq!(
        landing(&dbs).await,
        only_primary,
        "every replica lags: the primary"
    );
    assert_eq!(fallback(&handle), Some(1.0), "{}", handle.render());
    let c = dbs.bulk().get().await.expect("a bulk connection");
    assert!(!c.in_recovery());
    let err = c
        .batch_execute("CREATE TABLE nope (id int)")
        .await
        .expect_err("bulk stays read-only on the primary");
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    drop(c);

    replay(&r1, false).await;
    replay(&r2, false).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = landing(&dbs).await;
        if seen == both && fallback(&handle) == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not serve again: {seen:?}\n{}",
            handle.render()
        );
        tokio::time::sleep(PERIOD).await;
    }
    writer.abort();
}
