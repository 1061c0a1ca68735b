//! Item 1: a bulk server black-holed (every packet it sends dropped, see `common::BlackHole`)
//! while connections to it are open. In-flight queries fail within about tcp_user_timeout,
//! broken connections are replaced, new bulk queries go to the other host, and a `get()` pays
//! the dead host's connect timeout at most once per back-off period.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BlackHole, Event, Recorder, TcLock};
use notify_db_pool::{Bind, Databases};
use notify_db_testdb::{Cluster, REPLICA_ADDR};

const TCP_USER_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF: Duration = Duration::from_secs(4);

/// What both scenarios start from: a private primary + replica, a bulk pool over both hosts
/// with short timeouts, and four bulk connections held, spread over the two hosts.
struct Fault {
    cluster: Cluster,
    replica: notify_db_testdb::Endpoint,
    recorder: Arc<Recorder>,
    dbs: Databases,
    bulk: notify_db_pool::Pool,
    held: Vec<notify_db_pool::PooledConnection>,
    /// How many of `held` are on the replica.
    on_replica: usize,
}

impl Fault {
    async fn start() -> Fault {
        let cluster = Cluster::builder()
            .label("faults-blackhole")
            .replica(true)
            .start()
            .expect("private cluster (primary + replica) must start for this scenario");
        let primary = cluster.primary().endpoint().clone();
        let replica = cluster.replica().expect("replica").endpoint().clone();
        let bulk_uri = common::multi_host_uri(&[&replica, &primary], "postgres", "");
        let mut settings = common::settings(&primary.uri("postgres"), Some(&bulk_uri));
        settings.pool.size = 4;
        settings.pool.tcp_user_timeout = TCP_USER_TIMEOUT;
        settings.pool.connect_timeout = CONNECT_TIMEOUT;
        settings.pool.host_backoff = BACKOFF;
        settings.pool.wait_timeout = Duration::from_secs(15);
        // Short lifetime: connections are replaced every second, so new connects keep happening.
        settings.pool.max_lifetime = Duration::from_secs(1);
        let recorder = Arc::new(Recorder::default());
        let dbs = Databases::builder(&settings)
            .observer(recorder.clone())
            .check_on_build(false)
            .build()
            .await
            .expect("pools build");
        let bulk = dbs.bulk().clone();

        // Open four bulk connections at once: the bulk bind spreads them over both hosts.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(bulk.get().await.expect("bulk connection before the fault"));
        }
        let on_replica = held
            .iter()
            .filter(|c| c.server_addr() == Some(IpAddr::V4(REPLICA_ADDR)))
            .count();
        assert!(
            (1..4).contains(&on_replica),
            "the bulk bind should spread connections over both hosts, {on_replica}/4 on the replica"
        );
        Fault {
            cluster,
            replica,
            recorder,
            dbs,
            bulk,
            held,
            on_replica,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_queries_on_a_black_holed_server_fail_within_tcp_user_timeout() {
    let Fault {
        cluster: _cluster,
        replica,
        recorder: _recorder,
        dbs: _dbs,
        bulk: _bulk,
        held,
        on_replica: _,
    } = Fault::start().await;

    let tc_lock = common::blocking(TcLock::acquire)
        .await
        .unwrap_or_else(|e| panic!("cannot take the tc lock: {e}"));
    // A query in flight on one replica connection when the network dies (the server sleeps,
    // so the request was sent and acknowledged before the drop); the other replica connections
    // sit idle and are used after the drop (their request is never acknowledged).
    let mut in_flight = None;
    let mut idle_on_replica = Vec::new();
    let mut others = Vec::new();
    for conn in held {
        if conn.server_addr() != Some(IpAddr::V4(REPLICA_ADDR)) {
            others.push(conn);
        } else if in_flight.is_none() {
            in_flight = Some(tokio::spawn(timed_query(conn, "SELECT pg_sleep(1)")));
        } else {
            idle_on_replica.push(conn);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hole = BlackHole::start(tc_lock, REPLICA_ADDR, replica.port).unwrap_or_else(|e| {
        panic!(
            "cannot black-hole the replica with tc (needs root and the htb/pfifo/u32 modules): {e}"
        )
    });

    // The other host's connections keep working while the replica is unreachable.
    for conn in &others {
        conn.simple_query("SELECT 1")
            .await
            .expect("a bulk connection to the healthy host keeps working");
    }
    drop(others);
    let after_drop: Vec<_> = idle_on_replica
        .into_iter()
        .map(|conn| tokio::spawn(timed_query(conn, "SELECT 1")))
        .collect();
    let limit = TCP_USER_TIMEOUT * 3 + Duration::from_secs(3);
    let mut report = Vec::new();
    for task in after_drop {
        let (result, took) = task.await.expect("query task");
        report.push(("sent after the drop", result.clone(), took));
        assert!(
            matches!(result, Some(Err(_))) && took < limit,
            "a query sent on a replica connection after the drop should fail within about \
             tcp_user_timeout ({TCP_USER_TIMEOUT:?}); got {result:?} after {took:?}"
        );
    }
    let (result, took) = in_flight
        .expect("one connection on the replica")
        .await
        .expect("in-flight task");
    report.push(("in flight at the drop", result.clone(), took));
    println!(
        "black hole: queries on the replica {report:?}; packets dropped {}",
        hole.dropped()
    );
    drop(hole);
    match result {
        None => panic!(
            "a query in flight when the replica was black-holed was still waiting after \
             {QUERY_LIMIT:?}, far beyond tcp_user_timeout ({TCP_USER_TIMEOUT:?}): tcp_user_timeout \
             only bounds unacknowledged data, and a connection waiting for a reply has none, so \
             the pool's connections need keepalive probes well within tcp_user_timeout \
             (keepalives_idle and keepalives_interval in crates/pool/src/connect.rs, host_config; \
             the kernel defaults are 2 h and 75 s)"
        ),
        Some(Ok(())) => panic!("a query in flight on the black-holed replica succeeded"),
        Some(Err(_)) => assert!(
            took < limit,
            "the in-flight query failed only after {took:?} (tcp_user_timeout {TCP_USER_TIMEOUT:?})"
        ),
    }
}

const QUERY_LIMIT: Duration = Duration::from_secs(15);

/// Runs `sql` on `conn`, bounded by [`QUERY_LIMIT`]: `None` when still waiting then.
async fn timed_query(
    conn: notify_db_pool::PooledConnection,
    sql: &'static str,
) -> (Option<Result<(), String>>, Duration) {
    let started = Instant::now();
    let r = tokio::time::timeout(QUERY_LIMIT, conn.simple_query(sql)).await;
    (
        r.ok().map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_bulk_server_is_avoided_and_recovers() {
    let Fault {
        cluster: _cluster,
        replica,
        recorder,
        dbs,
        bulk,
        held,
        on_replica,
    } = Fault::start().await;

    let tc_lock = common::blocking(TcLock::acquire)
        .await
        .unwrap_or_else(|e| panic!("cannot take the tc lock: {e}"));
    let hole = BlackHole::start(tc_lock, REPLICA_ADDR, replica.port).unwrap_or_else(|e| {
        panic!(
            "cannot black-hole the replica with tc (needs root and the htb/pfifo/u32 modules): {e}"
        )
    });
    let holed_at = Instant::now();
    for conn in held
        .iter()
        .filter(|c| c.server_addr() != Some(IpAddr::V4(REPLICA_ADDR)))
    {
        conn.simple_query("SELECT 1")
            .await
            .expect("a bulk connection to the healthy host keeps working");
    }
    // The connections to the dead host go back to the pool; their next use fails and they
    // are replaced (lifetime 1 s).
    drop(held);

    // New bulk work: every query succeeds on the other host; the dead host's connect timeout is
    // paid at most once per back-off period.
    let window_start = Instant::now();
    let mut slow_gets = Vec::new();
    let mut served = 0;
    let mut broken = 0;
    while window_start.elapsed() < BACKOFF * 2 + Duration::from_secs(1) {
        let t = Instant::now();
        let conn = bulk
            .get()
            .await
            .expect("bulk get while one host is black-holed");
        let waited = t.elapsed();
        if waited >= CONNECT_TIMEOUT / 2 {
            slow_gets.push((window_start.elapsed(), waited));
        }
        // A connection opened to the dead host before the fault may still be handed out once:
        // its query fails (tcp_user_timeout) and it is discarded. Every other query succeeds on
        // the healthy host.
        match conn.query_one("SELECT host(inet_server_addr())", &[]).await {
            Ok(row) => {
                let addr: String = row.get(0);
                assert_eq!(
                    addr, "127.0.0.1",
                    "new bulk queries must go to the healthy host"
                );
            }
            Err(e) => {
                assert_eq!(
                    conn.server_addr(),
                    Some(IpAddr::V4(REPLICA_ADDR)),
                    "a bulk query on the healthy host failed: {e}"
                );
                broken += 1;
                continue;
            }
        }
        served += 1;
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window = window_start.elapsed();
    let dead_timeouts: Vec<Instant> = recorder
        .snapshot()
        .into_iter()
        .filter_map(|e| match e {
            Event::ConnectFailed {
                at,
                bind: Bind::Bulk,
                host,
                ..
            } if host == REPLICA_ADDR.to_string() && at >= window_start => Some(at),
            _ => None,
        })
        .collect();
    let allowed = (window.as_secs_f64() / BACKOFF.as_secs_f64()).ceil() as usize + 1;
    println!(
        "black hole: {served} bulk queries in {window:?}, {broken} failed on pre-fault \
         connections to the dead host, slow gets {slow_gets:?}, connect \
         timeouts on the dead host {}, packets dropped {}, {:?} since the fault",
        dead_timeouts.len(),
        hole.dropped(),
        holed_at.elapsed()
    );
    assert!(served > 20, "only {served} bulk queries were served");
    assert!(
        broken <= on_replica,
        "{broken} queries failed on connections to the dead host, but only {on_replica} were open \
         before the fault: broken connections were handed out again"
    );
    assert!(
        slow_gets.len() <= allowed,
        "{} gets waited on the dead host's connect timeout in {window:?} (back-off {BACKOFF:?}, \
         at most {allowed} allowed): {slow_gets:?}",
        slow_gets.len()
    );
    assert!(
        dead_timeouts.len() <= allowed,
        "{} connects to the dead host in {window:?}, at most {allowed} allowed with back-off {BACKOFF:?}",
        dead_timeouts.len()
    );
    assert!(
        hole.dropped() > 0,
        "tc dropped no packet: the black hole did not work"
    );

    // Recovery: once the network is back and the back-off has passed, the replica serves again.
    drop(hole);
    let back = Instant::now();
    let mut on_replica_again = false;
    while back.elapsed() < BACKOFF * 3 {
        let conn = bulk
            .get()
            .await
            .expect("bulk get after the network is back");
        if conn.server_addr() == Some(IpAddr::V4(REPLICA_ADDR)) {
            conn.simple_query("SELECT 1")
                .await
                .expect("query on the replica after recovery");
            on_replica_again = true;
            break;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        on_replica_again,
        "the replica got no new bulk connection within {:?} of the network coming back",
        BACKOFF * 3
    );
    drop(dbs);
    drop(bulk);
}
