//! Items 3 and 3b: servers going away under load. Replica immediate shutdown and restart, then a
//! fast primary restart, under 32 tasks on pools of 5 (errors only around the faults, throughput
//! back within seconds, `/metrics` gauges matching pg_stat_activity afterwards); and a failover
//! (primary stopped `-m immediate`, replica promoted) reached by the default bind through
//! `target_session_attrs=read-write`, never handing out a read-only connection.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify_db_metrics::{MetricsHandle, names};
use notify_db_pool::{Bind, Databases, Pool};
use notify_db_testdb::{Cluster, StopMode};
use tokio::sync::Mutex;

/// One finished unit of work: when (since the start), which bind, whether it succeeded.
type Outcome = (Duration, Bind, Result<(), String>);

async fn worker(pool: Pool, start: Instant, stop: Arc<AtomicBool>, log: Arc<Mutex<Vec<Outcome>>>) {
    let mut local = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let r = async {
            let conn = pool.get().await.map_err(|e| format!("get: {e}"))?;
            conn.simple_query("SELECT 1")
                .await
                .map_err(|e| format!("query: {e}"))?;
            Ok(())
        }
        .await;
        let failed = r.is_err();
        local.push((start.elapsed(), pool.bind(), r));
        tokio::time::sleep(Duration::from_millis(if failed { 50 } else { 2 })).await;
    }
    log.lock().await.extend(local);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_load() {
    let cluster = Arc::new(
        Cluster::builder()
            .label("faults-restart")
            .replica(true)
            .start()
            .expect("private cluster (primary + replica) must start for this scenario"),
    );
    let primary = cluster.primary().endpoint().clone();
    let replica = cluster.replica().expect("replica").endpoint().clone();
    let app = common::app_name("restart");
    let bulk_uri = common::multi_host_uri(&[&replica, &primary], "postgres", "");
    let mut settings = common::settings(&primary.uri("postgres"), Some(&bulk_uri));
    settings.pool.size = 5;
    settings.pool.wait_timeout = Duration::from_secs(2);
    settings.pool.connect_timeout = Duration::from_secs(2);
    settings.pool.host_backoff = Duration::from_secs(1);
    settings.pool.application_name = app.clone();
    let metrics = MetricsHandle::new();
    let dbs = Databases::builder(&settings)
        .observer(metrics.observer())
        .build()
        .await
        .expect("pools");

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let pool = if i < 24 { dbs.default() } else { dbs.bulk() }.clone();
        tasks.push(tokio::spawn(worker(pool, start, stop.clone(), log.clone())));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = cluster.clone();
    let replica_down = start.elapsed();
    common::blocking(move || c.replica().expect("replica").stop(StopMode::Immediate))
        .await
        .expect("replica immediate shutdown");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = cluster.clone();
    common::blocking(move || c.replica().expect("replica").start())
        .await
        .expect("replica start");
    let replica_up = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = cluster.clone();
    let primary_down = start.elapsed();
    common::blocking(move || c.primary().restart(StopMode::Fast))
        .await
        .expect("primary fast restart");
    let primary_up = start.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker");
    }
    let end = start.elapsed();
    let log = log.lock().await.clone();

    let grace = Duration::from_secs(3);
    let in_window = |at: Duration, from: Duration, to: Duration| at >= from && at <= to + grace;
    let mut errors = [0usize; 2];
    for (at, bind, r) in &log {
        let Err(e) = r else { continue };
        let allowed = match bind {
            Bind::Default => in_window(*at, primary_down, primary_up),
            Bind::Bulk => {
                in_window(*at, replica_down, replica_up) || in_window(*at, primary_down, primary_up)
            }
        };
        assert!(
            allowed,
            "{bind} error at {at:?} outside the fault windows (replica {replica_down:?}..{replica_up:?}, \
             primary {primary_down:?}..{primary_up:?}): {e}"
        );
        errors[usize::from(*bind == Bind::Bulk)] += 1;
    }
    let rate = |bind: Bind, from: Duration, to: Duration| {
        let n = log
            .iter()
            .filter(|(at, b, r)| *b == bind && r.is_ok() && *at >= from && *at < to)
            .count();
        n as f64 / (to - from).as_secs_f64()
    };
    for bind in [Bind::Default, Bind::Bulk] {
        let before = rate(bind, Duration::from_millis(500), replica_down);
        let after = rate(bind, end - Duration::from_secs(2), end);
        println!(
            "{bind}: {before:.0}/s before the faults, {after:.0}/s in the last 2 s, {} errors",
            errors[usize::from(bind == Bind::Bulk)]
        );
        assert!(
            after >= before * 0.25,
            "{bind} throughput did not come back: {before:.0}/s before, {after:.0}/s at the end"
        );
    }
    println!(
        "faults: replica down {replica_down:?}..{replica_up:?}, primary restart {primary_down:?}..{primary_up:?}"
    );

    // Afterwards the gauges match the server: connected == our backends on both servers, and
    // nothing is checked out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let on_primary =
        common::backends(&primary.connect("postgres").await.expect("primary"), &app).await;
    let on_replica =
        common::backends(&replica.connect("postgres").await.expect("replica"), &app).await;
    let text = metrics.render();
    let connected = common::metric_sum(&text, names::CONNECTED);
    let checked_out = common::metric_sum(&text, names::CHECKED_OUT);
    let sizes = dbs.default().status().size + dbs.bulk().status().size;
    println!(
        "after: gauge connected {connected}, backends {on_primary} on the primary + {on_replica} on \
         the replica, pool sizes {sizes}, checked out {checked_out}"
    );
    assert_eq!(
        checked_out, 0.0,
        "checked-out gauge after all work returned:\n{text}"
    );
    assert_eq!(
        connected,
        (on_primary + on_replica) as f64,
        "db_connection_total_connected ({connected}) differs from the real backends for \
         application_name {app} ({on_primary} on the primary + {on_replica} on the replica)"
    );
    drop(dbs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_promoted_replica() {
    let cluster = Arc::new(
        Cluster::builder()
            .label("faults-failover")
            .replica(true)
            .start()
            .expect("private cluster (primary + replica) must start for this scenario"),
    );
    let primary = cluster.primary().endpoint().clone();
    let replica = cluster.replica().expect("replica").endpoint().clone();
    let default_uri = common::multi_host_uri(
        &[&primary, &replica],
        "postgres",
        "target_session_attrs=read-write",
    );
    let mut settings = common::settings(&default_uri, Some(&replica.uri("postgres")));
    settings.pool.size = 3;
    settings.pool.connect_timeout = Duration::from_secs(2);
    settings.pool.wait_timeout = Duration::from_secs(2);
    settings.pool.host_backoff = Duration::from_secs(1);
    let dbs = Databases::connect(&settings).await.expect("pools");
    {
        let conn = dbs.default().get().await.expect("default");
        assert_eq!(conn.server_addr(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        conn.batch_execute("CREATE TABLE failover_probe (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz DEFAULT now())")
            .await
            .expect("create table on the primary");
    }
    common::blocking({
        let c = cluster.clone();
        move || c.wait_for_replica()
    })
    .await
    .expect("replica caught up");

    common::blocking({
        let c = cluster.clone();
        move || c.primary().stop(StopMode::Immediate)
    })
    .await
    .expect("primary immediate stop");

    // Before the promotion: the default bind has no server to offer, and never offers the
    // read-only replica.
    let mut refused = 0;
    for _ in 0..5 {
        match dbs.default().get().await {
            Ok(conn) => {
                assert!(
                    !conn.in_recovery(),
                    "the default bind handed out a read-only server"
                );
                let r = conn
                    .batch_execute("INSERT INTO failover_probe DEFAULT VALUES")
                    .await;
                assert!(
                    r.is_err(),
                    "a write succeeded with the primary stopped and no promotion"
                );
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused >= 1, "no get() failed while there was no primary");

    common::blocking({
        let c = cluster.clone();
        move || c.replica().expect("replica").promote()
    })
    .await
    .expect("promote the replica");
    let promoted = Instant::now();
    let limit = settings.pool.connect_timeout + Duration::from_secs(3);
    let mut written_after = None;
    let mut handed_out = 0;
    while promoted.elapsed() < limit {
        if let Ok(conn) = dbs.default().get().await {
            handed_out += 1;
            assert!(
                !conn.in_recovery(),
                "the default bind handed out a read-only server"
            );
            // A connection handed out must work: an error here is a broken connection, not
            // a pass.
            let ro: String = conn
                .query_one("SHOW transaction_read_only", &[])
                .await
                .map(|r| r.get(0))
                .unwrap_or_else(|e| {
                    panic!(
                        "the default bind handed out a broken connection after the failover: {e}"
                    )
                });
            assert_eq!(ro, "off", "the default bind handed out a read-only session");
            if conn
                .batch_execute("INSERT INTO failover_probe DEFAULT VALUES")
                .await
                .is_ok()
            {
                assert_eq!(
                    conn.server_addr(),
                    Some(IpAddr::V4(notify_db_testdb::REPLICA_ADDR))
                );
                written_after = Some(promoted.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = written_after.unwrap_or_else(|| {
        panic!("no write succeeded on the promoted replica within {limit:?} of the promotion")
    });
    println!(
        "failover: first write on the new primary {took:?} after promotion ({handed_out} connections handed out, all read-write)"
    );
    for _ in 0..10 {
        let conn = dbs.default().get().await.expect("default after failover");
        conn.batch_execute("INSERT INTO failover_probe DEFAULT VALUES")
            .await
            .expect("writes keep succeeding on the new primary");
    }
}
