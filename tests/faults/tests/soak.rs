//! Item 6: soak. 32 tasks on pools of 5 (default and bulk) with random checkout durations and a
//! 1 s connection lifetime, for `FAULTS_SOAK_SECS` seconds (default 60, as the issue asks;
//! `cargo xtask soak --minutes N` sets it for a long run). Both pools are held at their maximum
//! the whole time. Zero errors other than pool wait timeouts, and those bounded; no leaked
//! connections (pool, `/metrics` and pg_stat_activity agree afterwards); RSS growth bounded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify_db_metrics::{MetricsHandle, names};
use notify_db_pool::{Databases, PoolError};
use notify_db_testdb::TestDb;

/// Connections per pool (both binds).
const POOL_SIZE: usize = 5;
/// At most one wait timeout per this many checkouts: a 2 s wait for pools whose checkouts last
/// at most 30 ms only times out when a connection is lost or stuck.
const CHECKOUTS_PER_TIMEOUT: u64 = 1000;
/// RSS growth allowed from the end of the first quarter (allocator and caches warm) to the end:
/// a fixed allowance for allocator noise, plus a rate that a real leak exceeds (with scrapes,
/// the trend here is 0-2 KiB/s). Over a window of at least TREND_WINDOW the trend (least-squares
/// slope of the samples) must stay under the same rate; shorter windows are too short to tell a
/// one-off allocator step from a trend.
const RSS_ALLOWANCE_KIB: u64 = 2 * 1024;
const RSS_RATE_KIB_PER_S: u64 = 8;
const TREND_WINDOW: u64 = 120;
/// Minimum share of the samples in which a pool has every connection checked out.
const SATURATED_SHARE: f64 = 0.5;
/// How often RSS is sampled after the first quarter.
const RSS_EVERY: Duration = Duration::from_secs(5);

/// Share of the samples in which each pool had all its connections checked out, and the
/// largest size each reached.
#[derive(Default)]
struct Saturation {
    samples: u64,
    full: [u64; 2],
    max_size: [usize; 2],
}

/// Least-squares slope of (seconds, KiB) samples, in KiB/s (0 for fewer than two).
fn slope(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_k = samples.iter().map(|(_, k)| *k as f64).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (t, k) in samples {
        cov += (t - mean_t) * (*k as f64 - mean_k);
        var += (t - mean_t) * (t - mean_t);
    }
    if var == 0.0 { 0.0 } else { cov / var }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_32_tasks_on_pools_of_5() {
    let secs: u64 = std::env::var("FAULTS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // The test bounds itself on every machine: its duration plus setup and drain.
    let limit = Duration::from_secs(secs + 90);
    tokio::time::timeout(limit, soak(secs))
        .await
        .unwrap_or_else(|_| panic!("the {secs} s soak did not finish within {limit:?}"));
}

async fn soak(secs: u64) {
    let db = TestDb::create()
        .await
        .expect("test database on the shared cluster");
    let app = common::app_name("soak");
    let mut settings = common::settings(
        &db.primary_uri(),
        Some(&db.replica_uri().expect("shared replica")),
    );
    settings.pool.size = POOL_SIZE;
    settings.pool.max_lifetime = Duration::from_secs(1);
    settings.pool.wait_timeout = Duration::from_secs(2);
    settings.pool.application_name = app.clone();
    let metrics = MetricsHandle::new();
    let dbs = Databases::builder(&settings)
        .observer(metrics.observer())
        .build()
        .await
        .expect("pools");

    // Warm up (allocator, statement caches).
    for _ in 0..50 {
        let c = dbs.default().get().await.expect("warm up");
        c.simple_query("SELECT 1").await.expect("warm up query");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));

    // The monitor: how full the pools are, RSS once the first quarter is over, and a Prometheus
    // scrape every RSS_EVERY, as a service has: the exporter keeps histogram samples until a
    // render (or its upkeep) folds them in, so without scrapes they would pile up like a leak.
    let monitor = {
        let (dbs, stop, metrics) = (dbs.clone(), stop.clone(), metrics.clone());
        let quarter = Duration::from_secs(secs) / 4;
        tokio::spawn(async move {
            let mut sat = Saturation::default();
            // (seconds since the start, KiB) every RSS_EVERY from the end of the first quarter.
            let mut rss = Vec::new();
            let mut next_rss = started + RSS_EVERY;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                sat.samples += 1;
                for (i, pool) in [dbs.default(), dbs.bulk()].into_iter().enumerate() {
                    let s = pool.status();
                    sat.max_size[i] = sat.max_size[i].max(s.size);
                    sat.full[i] += u64::from(s.size - s.available.min(s.size) == POOL_SIZE);
                }
                if Instant::now() >= next_rss {
                    metrics.render();
                    if started.elapsed() >= quarter {
                        rss.push((started.elapsed().as_secs_f64(), common::rss_kib()));
                    }
                    next_rss += RSS_EVERY;
                }
            }
            (sat, rss)
        })
    };

    // 32 tasks: 24 on the default pool and 8 on the bulk pool, so that both have more takers
    // than connections at every moment.
    let mut tasks = Vec::new();
    for i in 0..32_u64 {
        let pool = if i % 4 == 0 {
            dbs.bulk()
        } else {
            dbs.default()
        }
        .clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = common::Rng::quiet(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
            let (mut ok, mut timeouts) = (0u64, 0u64);
            while Instant::now() < deadline {
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
    let (rss_end, rss_end_at) = (common::rss_kib(), started.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    let (sat, rss) = monitor.await.expect("monitor");
    let rss_warm = *rss.first().expect("an RSS sample after the first quarter");

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
    let share = |i: usize| sat.full[i] as f64 / sat.samples.max(1) as f64;
    let measured = (rss_end_at - rss_warm.0) as u64;
    let rss_limit = rss_warm.1 + RSS_ALLOWANCE_KIB + RSS_RATE_KIB_PER_S * measured;
    let rate = slope(&rss);
    let series: Vec<String> = rss
        .iter()
        .map(|(t, kib)| format!("{t:.0}s:{kib}"))
        .collect();
    println!(
        "soak {secs} s: {ok} checkouts, {timeouts} wait timeouts; both pools full in {:.0}% / \
         {:.0}% of {} samples (max sizes {:?}); RSS {} KiB after the first quarter, {} KiB at the \
         end ({measured} s later, limit {rss_limit} KiB; trend {rate:.1} KiB/s; series {}); pools \
         {d:?} {b:?}; gauge \
         connected {connected}, backends {on_primary}+{on_replica}",
        share(0) * 100.0,
        share(1) * 100.0,
        sat.samples,
        sat.max_size,
        rss_warm.1,
        rss_end,
        series.join(" "),
    );
    assert!(ok > secs * 100, "only {ok} checkouts in {secs} s");
    assert!(
        timeouts * CHECKOUTS_PER_TIMEOUT <= ok,
        "{timeouts} pool wait timeouts for {ok} checkouts: more than one per {CHECKOUTS_PER_TIMEOUT}"
    );
    for (i, bind) in ["default", "bulk"].into_iter().enumerate() {
        assert_eq!(
            sat.max_size[i], POOL_SIZE,
            "the {bind} pool never reached its {POOL_SIZE} connections"
        );
        assert!(
            share(i) >= SATURATED_SHARE,
            "the {bind} pool had every connection checked out in only {:.0}% of the samples",
            share(i) * 100.0
        );
    }
    assert_eq!(checked_out, 0.0, "checked-out gauge after the soak");
    assert_eq!(
        d.size, d.available,
        "default pool: connections still checked out"
    );
    assert_eq!(
        b.size, b.available,
        "bulk pool: connections still checked out"
    );
    assert!(d.size <= POOL_SIZE && b.size <= POOL_SIZE);
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
        measured < TREND_WINDOW || rate <= RSS_RATE_KIB_PER_S as f64,
        "RSS grew by {rate:.1} KiB/s after the first quarter (a leak; allowed: \
         {RSS_RATE_KIB_PER_S} KiB/s)"
    );
    assert!(
        rss_end <= rss_limit,
        "RSS grew from {} KiB to {rss_end} KiB in {measured} s (allowed: {RSS_ALLOWANCE_KIB} KiB + \
         {RSS_RATE_KIB_PER_S} KiB/s)",
        rss_warm.1,
    );
}
