//! Item 6: soak. 32 tasks on pools of 5 (default and bulk) with random checkout durations and a
//! 1 s connection lifetime, for `FAULTS_SOAK_SECS` seconds (default 60, as the issue asks).
//! Zero errors other than pool wait timeouts, no leaked connections (pool, `/metrics` and
//! pg_stat_activity agree afterwards), RSS flat.

mod common;

use std::time::{Duration, Instant};

use notify_db_metrics::{MetricsHandle, names};
use notify_db_pool::{Databases, PoolError};
use notify_db_testdb::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_32_tasks_on_pools_of_5() {
    let secs: u64 = std::env::var("FAULTS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let db = TestDb::create()
        .await
        .expect("test database on the shared cluster");
    let app = common::app_name("soak");
    let mut settings = common::settings(
        &db.primary_uri(),
        Some(&db.replica_uri().expect("shared replica")),
    );
    settings.pool.size = 5;
    settings.pool.max_lifetime = Duration::from_secs(1);
    settings.pool.wait_timeout = Duration::from_secs(2);
    settings.pool.application_name = app.clone();
    let metrics = MetricsHandle::new();
    let dbs = Databases::builder(&settings)
        .observer(metrics.observer())
        .build()
        .await
        .expect("pools");

    // Warm up (allocator, statement caches), then take the starting RSS.
    for _ in 0..50 {
        let c = dbs.default().get().await.expect("warm up");
        c.simple_query("SELECT 1").await.expect("warm up query");
    }
    let rss_start = common::rss_kib();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..32_u64 {
        let dbs = dbs.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = common::Rng::quiet(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
            let (mut ok, mut timeouts) = (0u64, 0u64);
            while Instant::now() < deadline {
                let pool = if rng.below(4) == 0 {
                    dbs.bulk()
                } else {
                    dbs.default()
                };
                match pool.get().await {
                    Ok(conn) => {
                        let hold = rng.below(30);
                        let stmt = conn
                            .prepare_cached("SELECT $1::bigint * 2")
                            .await
                            .expect("prepare");
                        let n = rng.below(1000) as i64;
                        let row = conn.query_one(&stmt, &[&n]).await.expect("soak query");
                        assert_eq!(row.get::<_, i64>(0), n * 2);
                        tokio::time::sleep(Duration::from_millis(hold)).await;
                        ok += 1;
                    }
                    Err(PoolError::Exhausted { .. }) => timeouts += 1,
                    Err(e) => panic!("soak: an error other than a pool wait timeout: {e}"),
                }
            }
            (ok, timeouts)
        }));
    }
    let (mut ok, mut timeouts) = (0, 0);
    for t in tasks {
        let (o, w) = t.await.expect("soak task");
        ok += o;
        timeouts += w;
    }
    let rss_end = common::rss_kib();

    // Leaks: nothing checked out, and the gauges, the pools and the servers agree (lifetime
    // expiry keeps closing and opening connections, so look until a quiet moment, at most 5 s).
    let primary = db.connect().await.expect("primary");
    let replica = db
        .replica()
        .expect("replica")
        .connect(db.name())
        .await
        .expect("replica");
    let settle = Instant::now();
    let (mut text, mut connected, mut on_primary, mut on_replica);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = metrics.render();
        connected = common::metric_sum(&text, names::CONNECTED);
        on_primary = common::backends(&primary, &app).await;
        on_replica = common::backends(&replica, &app).await;
        let sizes = dbs.default().status().size + dbs.bulk().status().size;
        let agree = connected == sizes as f64 && (on_primary + on_replica) as usize == sizes;
        if agree || settle.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let checked_out = common::metric_sum(&text, names::CHECKED_OUT);
    let (d, b) = (dbs.default().status(), dbs.bulk().status());
    println!(
        "soak {secs} s: {ok} checkouts, {timeouts} wait timeouts; RSS {rss_start} KiB at start, \
         {rss_end} KiB at end; pools {d:?} {b:?}; gauge connected {connected}, backends \
         {on_primary}+{on_replica}"
    );
    assert!(ok > secs * 100, "only {ok} checkouts in {secs} s");
    assert_eq!(checked_out, 0.0, "checked-out gauge after the soak");
    assert_eq!(
        d.size, d.available,
        "default pool: connections still checked out"
    );
    assert_eq!(
        b.size, b.available,
        "bulk pool: connections still checked out"
    );
    assert!(d.size <= 5 && b.size <= 5);
    assert_eq!(
        connected,
        (d.size + b.size) as f64,
        "gauge connected vs pool sizes"
    );
    assert_eq!(
        (on_primary + on_replica) as usize,
        d.size + b.size,
        "backends on the servers vs pool sizes (leaked or lost connections)"
    );
    assert!(
        rss_end < rss_start + 16 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB during the soak"
    );
}
