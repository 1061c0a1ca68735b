//! Item 2: the replica frozen with SIGSTOP (postmaster and every backend), then SIGCONT. Work on
//! it ends by the pool's wait timeout (the kernel still accepts its TCP traffic, so nothing else
//! fires), the default bind keeps serving, and the bulk bind recovers after SIGCONT.

mod common;

use std::time::{Duration, Instant};

use common::Frozen;
use notify_db_pool::{ConnectError, Databases, PoolError};
use notify_db_testdb::Cluster;

const WAIT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_replica_times_out_and_recovers() {
    let cluster = Cluster::builder()
        .label("faults-freeze")
        .replica(true)
        .start()
        .expect("private cluster (primary + replica) must start for this scenario");
    let primary = cluster.primary().endpoint().clone();
    let replica = cluster.replica().expect("replica");
    let mut settings = common::settings(
        &primary.uri("postgres"),
        Some(&replica.endpoint().uri("postgres")),
    );
    settings.pool.size = 2;
    settings.pool.wait_timeout = WAIT;
    settings.pool.connect_timeout = Duration::from_secs(2);
    settings.session.statement_timeout_replica = Duration::from_secs(2);
    let dbs = Databases::connect(&settings).await.expect("pools");

    // Both bulk connections open before the freeze.
    let a = dbs.bulk().get().await.expect("bulk connection");
    let b = dbs.bulk().get().await.expect("bulk connection");
    drop((a, b));

    let pid = replica.postmaster_pid().expect("replica postmaster pid");
    let frozen = Frozen::start(pid).expect("freezing the replica with SIGSTOP");

    // Two bulk queries: they hold both bulk connections and get no answer while frozen.
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let bulk = dbs.bulk().clone();
        stuck.push(tokio::spawn(async move {
            let started = Instant::now();
            let conn = bulk.get().await.map_err(|e| e.to_string())?;
            conn.simple_query("SELECT 1")
                .await
                .map_err(|e| e.to_string())?;
            Ok::<Duration, String>(started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Further bulk work times out by the pool's wait timeout (or, if a slot frees up, by the
    // connect timeout of a new connection), not later.
    let mut timeouts = 0;
    for _ in 0..3 {
        let t = Instant::now();
        match dbs.bulk().get().await {
            Err(PoolError::Exhausted { .. }) => {
                let took = t.elapsed();
                assert!(
                    took >= WAIT && took < WAIT + Duration::from_secs(1),
                    "bulk get gave up after {took:?} (wait timeout {WAIT:?})"
                );
                timeouts += 1;
            }
            Err(e @ PoolError::Connect(ConnectError::Connect { .. })) => {
                let took = t.elapsed();
                assert!(
                    took < WAIT + settings.pool.connect_timeout + Duration::from_secs(1),
                    "bulk get failed after {took:?}: {e}"
                );
                timeouts += 1;
            }
            other => panic!("bulk get on a frozen replica: expected a wait timeout, got {other:?}"),
        }
    }
    assert_eq!(timeouts, 3);

    // The default bind keeps serving, at normal speed.
    let t = Instant::now();
    for i in 0..50_i32 {
        let conn = dbs
            .default()
            .get()
            .await
            .expect("default get while the replica is frozen");
        let row = conn
            .query_one("SELECT $1::int + 1", &[&i])
            .await
            .expect("default query while the replica is frozen");
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
    let default_took = t.elapsed();
    assert!(
        default_took < Duration::from_secs(5),
        "50 default queries took {default_took:?} while the replica was frozen"
    );
    println!(
        "frozen for {:?}: 3 bulk gets timed out after the wait timeout, 50 default queries in {default_took:?}",
        frozen.elapsed()
    );

    // SIGCONT: the stuck queries complete, and new bulk work succeeds.
    drop(frozen);
    for task in stuck {
        let r = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a stuck bulk query must finish after SIGCONT")
            .expect("task");
        let took = r.expect("the stuck bulk query succeeds after SIGCONT");
        println!("stuck bulk query finished after {took:?}");
    }
    for _ in 0..10 {
        let conn = dbs.bulk().get().await.expect("bulk get after SIGCONT");
        let row = conn
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("bulk query after SIGCONT");
        assert!(
            row.get::<_, bool>(0),
            "bulk must still be served by the replica"
        );
    }
}
