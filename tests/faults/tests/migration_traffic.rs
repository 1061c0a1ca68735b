//! Item 4: a migration that needs an ACCESS EXCLUSIVE lock on `notifications` waits behind a
//! long-running transaction while small transactions keep hitting the table. With our
//! lock_timeout (1 s) the migration gives way and retries, so the traffic's worst latency stays
//! about 1 s; without it, the traffic queues behind the waiting ALTER until the blocker ends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify_db_migrate::{Migration, MigrationSet, Migrator, Options, Target};
use notify_db_pool::Databases;
use notify_db_testdb::TestDb;

const BLOCKER: Duration = Duration::from_secs(5);

fn set() -> MigrationSet {
    let mut all = notify_db_migrations::set()
        .expect("starter set")
        .migrations()
        .to_vec();
    all.push(
        Migration::new("0011_notifications_add_marker")
            .up("ALTER TABLE notifications ADD COLUMN faults_marker text")
            .down("ALTER TABLE notifications DROP COLUMN faults_marker"),
    );
    MigrationSet::new(all).expect("set with the extra migration")
}

/// Runs the scenario once; returns (worst traffic latency during the migration, migration time).
async fn run(lock_timeout: Duration) -> (Duration, Duration) {
    let db = TestDb::create()
        .await
        .expect("test database on the shared cluster");
    let uri = notify_db_config::DatabaseUri::parse(&db.primary_uri(), "the test database")
        .expect("test database URI");
    let migrator = Migrator::new(set(), &uri)
        .expect("migrator")
        .with_options(Options {
            lock_timeout,
            max_attempts: 100,
            retry_delay: Duration::from_millis(200),
            ..Options::default()
        });
    migrator
        .upgrade(&Target::Revision("0010".into()))
        .await
        .expect("starter set up to 0010");

    let settings = common::settings(&db.primary_uri(), None);
    let dbs = Databases::connect(&settings).await.expect("pools");
    // Traffic: 4 tasks of small transactions on notifications.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..4_i64 {
        let pool = dbs.default().clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let conn = pool.get().await.expect("traffic get");
                conn.query_one("SELECT count(*) FROM notifications WHERE id = $1", &[&i])
                    .await
                    .expect("traffic query");
                drop(conn);
                latencies.push((t0, t0.elapsed()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The blocker: a transaction holding ACCESS SHARE on notifications for BLOCKER.
    let blocker = db.connect().await.expect("blocker connection");
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM notifications;")
        .await
        .expect("blocker begins");
    let blocker_task = tokio::spawn(async move {
        tokio::time::sleep(BLOCKER).await;
        blocker
            .batch_execute("COMMIT")
            .await
            .expect("blocker commits");
    });

    let t0 = Instant::now();
    let report = migrator
        .upgrade(&Target::Head)
        .await
        .expect("the migration succeeds after the blocker finishes");
    let migration_took = t0.elapsed();
    assert_eq!(report.to.as_deref(), Some("0011_notifications_add_marker"));
    blocker_task.await.expect("blocker");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut worst = Duration::ZERO;
    let mut samples = 0;
    for t in tasks {
        for (at, latency) in t.await.expect("traffic task") {
            if at >= t0 {
                samples += 1;
                worst = worst.max(latency);
            }
        }
    }
    assert!(
        samples > 20,
        "only {samples} traffic samples during the migration"
    );
    (worst, migration_took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_under_traffic_gives_way() {
    let (with_ours, took_ours) = run(Duration::from_secs(1)).await;
    // lock_timeout 0 disables it: the ALTER queues, and the traffic queues behind it.
    let (without, took_without) = run(Duration::ZERO).await;
    println!(
        "worst traffic latency during the migration (blocker held {BLOCKER:?}): with lock_timeout 1 s \
         {with_ours:?} (migration {took_ours:?}); without lock_timeout {without:?} (migration {took_without:?})"
    );
    assert!(
        with_ours < Duration::from_millis(1800),
        "with lock_timeout 1 s the traffic waited up to {with_ours:?}"
    );
    assert!(
        with_ours * 2 < BLOCKER,
        "with lock_timeout the worst latency {with_ours:?} is not far below the blocker's {BLOCKER:?}"
    );
    assert!(
        without > BLOCKER / 2,
        "without lock_timeout the traffic should queue behind the ALTER (worst {without:?})"
    );
    assert!(took_ours >= BLOCKER - Duration::from_millis(500));
}
