//! Issue 23, failover: the counted write workload on a durable primary with a streaming
//! replica; the primary is stopped `-m immediate` (its WAL senders die with it), the replica
//! promoted, and the `default` bind (`target_session_attrs=read-write` over both hosts) moves
//! to it.
//!
//! - Synchronous replication (`synchronous_standby_names = '*'`, `synchronous_commit = on`):
//!   a COMMIT is answered only once the replica has flushed it, so no acknowledged row is lost.
//! - Asynchronous replication: acknowledged rows the replica had not received are lost. The
//!   bound asserted is the replication lag read just before the fault, in rows: the
//!   acknowledged writes that were not visible on the replica at that reading (the replica
//!   keeps everything it has replayed), including those acknowledged between the reading and
//!   the primary's death. The lag in bytes (primary's WAL position minus the replica's replay
//!   position at that reading) is reported beside it.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::durable::{self, AFTER, BEFORE};
use common::workload::{Outcome, Workload};
use notify_db_testdb::StopMode;

async fn failover(scenario: &str, synchronous: bool) {
    let cluster = Arc::new(durable::cluster(&format!("faults-{scenario}"), true));
    let primary = cluster.primary().endpoint().clone();
    let replica = cluster.replica().expect("the replica").endpoint().clone();
    durable::create_table(&primary).await;
    let admin = primary
        .connect("postgres")
        .await
        .expect("admin connection to the primary");
    if synchronous {
        // On the primary only (not in the replica's copied configuration): the promoted
        // replica has no standby to wait for.
        admin
            .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .await
            .expect("synchronous_standby_names");
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reload");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state: Option<String> = admin
                .query_one(
                    "SELECT max(sync_state) FROM pg_stat_replication WHERE sync_state = 'sync'",
                    &[],
                )
                .await
                .expect("pg_stat_replication")
                .get(0);
            if state.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replica did not become a synchronous standby within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let c = cluster.clone();
    common::blocking(move || c.wait_for_replica())
        .await
        .expect("the replica has the table");
    let uri = common::multi_host_uri(
        &[&primary, &replica],
        "postgres",
        "target_session_attrs=read-write",
    );
    let dbs = durable::pools(&durable::settings(&uri, scenario)).await;
    let load = Workload::start(dbs.default());
    tokio::time::sleep(BEFORE).await;

    // The lag reading, as close to the fault as it can be: what the replica has replayed (the
    // rows it shows and its replay position, in one statement), then how far the primary's WAL
    // is ahead of that position.
    let standby = replica
        .connect("postgres")
        .await
        .expect("connection to the replica");
    let reading = standby
        .query_one(
            "SELECT pg_last_wal_replay_lsn()::text, \
             coalesce(array_agg(write_id), '{}') FROM fault_writes",
            &[],
        )
        .await
        .expect("the replica's replay position and rows");
    let replay_lsn: String = reading.get(0);
    let replayed: HashSet<i64> = reading.get::<_, Vec<i64>>(1).into_iter().collect();
    let lag_bytes: f64 = admin
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
            &[&replay_lsn],
        )
        .await
        .expect("the primary's WAL position")
        .get(0);
    let from = load.now();
    let c = cluster.clone();
    common::blocking(move || c.primary().stop(StopMode::Immediate))
        .await
        .expect("stopping the primary -m immediate");
    let dead = load.now();
    let c = cluster.clone();
    common::blocking(move || c.replica().expect("the replica").promote())
        .await
        .expect("promoting the replica");
    let to = load.now();
    tokio::time::sleep(AFTER).await;
    let writes = load.stop().await;

    // Acknowledged by the old primary (before it was dead) and not on the replica at the reading.
    let lagging: HashSet<i64> = writes
        .all
        .iter()
        .filter(|w| w.outcome == Outcome::Acknowledged && w.at <= dead)
        .map(|w| w.id)
        .filter(|id| !replayed.contains(id))
        .collect();
    let allowed = if synchronous { 0 } else { lagging.len() };
    let note = format!(
        "{} replication; lag at the last reading before the fault: {lag_bytes:.0} bytes, {} \
         acknowledged rows not yet on the replica",
        if synchronous {
            "synchronous"
        } else {
            "asynchronous"
        },
        lagging.len()
    );
    println!("{scenario}: {note}");
    let verdict = durable::finish(scenario, &replica, &writes, (from, to), allowed, &note).await;
    let outside: Vec<&i64> = verdict
        .lost
        .iter()
        .filter(|id| !lagging.contains(id))
        .collect();
    assert!(
        outside.is_empty(),
        "{scenario}: acknowledged rows lost that the replica had already replayed before the \
         fault: {outside:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_with_synchronous_replication_loses_no_acknowledged_row() {
    failover("failover-sync", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_with_asynchronous_replication_loses_at_most_the_lag() {
    failover("failover-async", false).await;
}
