//! Issue 23: the counted write workload (`common::workload`) through every server-side fault,
//! on durable servers (`fsync`, `full_page_writes` on): `kill -9` of the primary's postmaster
//! then crash recovery, a fast restart, a black hole longer than the timeouts, SIGSTOP,
//! PgBouncer killed and restarted, a migration with CREATE INDEX CONCURRENTLY and a
//! lock_timeout retry on the written table. Each asserts that every acknowledged row is there
//! with its checksum, no failed write is, and nothing is duplicated; each writes its results
//! row. Failover is in `durable_failover.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::durable::{self, AFTER, BEFORE, TIMEOUT};
use common::workload::{TABLE_SQL, Workload};
use common::{BlackHole, Frozen, TcLock};
use notify_db_migrate::{Migration, MigrationSet, Migrator, Options, Target};
use notify_db_testdb::{PRIMARY_ADDR, PgBouncer, StopMode};

/// The scenarios that break the primary itself: a private durable primary, the workload on it,
/// `fault` run between [`BEFORE`] and [`AFTER`] (it returns once the server is repaired), then
/// the verdict.
async fn on_the_primary<F, Fut>(scenario: &str, note: &str, fault: F)
where
    F: FnOnce(Arc<notify_db_testdb::Cluster>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cluster = Arc::new(durable::cluster(&format!("faults-{scenario}"), false));
    let primary = cluster.primary().endpoint().clone();
    durable::create_table(&primary).await;
    let dbs = durable::pools(&durable::settings(&primary.uri("postgres"), scenario)).await;
    let load = Workload::start(dbs.default());
    tokio::time::sleep(BEFORE).await;
    let from = load.now();
    fault(cluster.clone()).await;
    let to = load.now();
    tokio::time::sleep(AFTER).await;
    let writes = load.stop().await;
    durable::finish(scenario, &primary, &writes, (from, to), 0, note).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_primary_postmaster_then_crash_recovery() {
    on_the_primary(
        "kill-9-crash-recovery",
        "kill -9 of the postmaster, children exit, start (crash recovery)",
        |cluster| async move {
            let c = cluster.clone();
            common::blocking(move || common::kill_postmaster(c.primary()))
                .await
                .unwrap_or_else(|e| panic!("kill -9 of the primary's postmaster: {e}"));
            common::blocking(move || cluster.primary().start())
                .await
                .expect("the primary starts again after kill -9 (crash recovery)");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_restart_of_the_primary() {
    on_the_primary(
        "fast-restart",
        "pg_ctl restart -m fast",
        |cluster| async move {
            common::blocking(move || cluster.primary().restart(StopMode::Fast))
                .await
                .expect("fast restart of the primary");
        },
    )
    .await;
}

/// How long the primary stays black-holed: beyond the pools' connect, TCP user and wait
/// timeouts, so in-flight work fails by them and new connects time out.
const HOLE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_on_the_primary_longer_than_the_timeouts() {
    assert!(HOLE > TIMEOUT * 2);
    on_the_primary(
        "black-hole",
        "every packet from the primary dropped for 6 s (timeouts 2 s)",
        |cluster| async move {
            let port = cluster.primary().endpoint().port;
            let lock = common::blocking(TcLock::acquire)
                .await
                .unwrap_or_else(|e| panic!("cannot take the tc lock: {e}"));
            let hole = BlackHole::start(lock, PRIMARY_ADDR, port).unwrap_or_else(|e| {
                panic!(
                    "cannot black-hole the primary with tc (needs root and the htb/pfifo/u32 \
                     modules): {e}"
                )
            });
            tokio::time::sleep(HOLE).await;
            let dropped = hole.dropped();
            drop(hole);
            assert!(
                dropped > 0,
                "tc dropped no packet: the black hole did not work"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_the_primary() {
    on_the_primary(
        "sigstop",
        "postmaster and every backend stopped for 4 s, then SIGCONT",
        |cluster| async move {
            let pid = cluster
                .primary()
                .postmaster_pid()
                .expect("the primary's postmaster pid");
            let frozen = Frozen::start(pid)
                .unwrap_or_else(|e| panic!("freezing the primary with SIGSTOP: {e}"));
            tokio::time::sleep(Duration::from_secs(4)).await;
            drop(frozen);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_killed_and_restarted_in_front_of_the_primary() {
    let scenario = "pgbouncer-kill";
    let cluster = durable::cluster("faults-pgbouncer", false);
    let primary = cluster.primary().endpoint().clone();
    durable::create_table(&primary).await;
    // Through a transaction pooler the server must enforce the session settings itself.
    let timeout_ms = durable::settings(&primary.uri("postgres"), scenario)
        .session
        .statement_timeout_primary
        .as_millis();
    let bouncer = Arc::new(
        PgBouncer::builder()
            .pool_size(5)
            .database("primary", &primary, "postgres")
            .connect_query(&format!("SET statement_timeout = {timeout_ms}"))
            .start()
            .unwrap_or_else(|e| panic!("PgBouncer must start in front of the primary: {e}")),
    );
    let uri = bouncer
        .endpoint(&primary.user, &primary.password)
        .uri("primary");
    let mut settings = durable::settings(&uri, scenario);
    settings.pooler.default = true;
    settings.pooler.bulk = true;
    let dbs = durable::pools(&settings).await;
    let load = Workload::start(dbs.default());
    tokio::time::sleep(BEFORE).await;
    let from = load.now();
    let b = bouncer.clone();
    common::blocking(move || b.kill())
        .await
        .unwrap_or_else(|e| panic!("kill -9 of PgBouncer: {e}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = bouncer.clone();
    common::blocking(move || b.restart())
        .await
        .unwrap_or_else(|e| panic!("PgBouncer restarts on its port: {e}"));
    let to = load.now();
    tokio::time::sleep(AFTER).await;
    let writes = load.stop().await;
    durable::finish(
        scenario,
        &primary,
        &writes,
        (from, to),
        0,
        "PgBouncer (transaction mode) kill -9, down 1 s, started again",
    )
    .await;
}

/// The migrations of the migration scenario: the workload's table, an index built
/// CONCURRENTLY while it is written, and a column whose ACCESS EXCLUSIVE lock waits behind a
/// reader (lock_timeout, then retried).
fn migrations() -> MigrationSet {
    MigrationSet::new(vec![
        Migration::new("0001_fault_writes")
            .up(TABLE_SQL)
            .down("DROP TABLE fault_writes"),
        Migration::new("0002_fault_writes_write_id_index")
            .no_transaction()
            .up("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_fault_writes_write_id ON fault_writes (write_id)")
            .down("DROP INDEX CONCURRENTLY IF EXISTS ix_fault_writes_write_id"),
        Migration::new("0003_fault_writes_note")
            .up("ALTER TABLE fault_writes ADD COLUMN note text")
            .down("ALTER TABLE fault_writes DROP COLUMN note"),
    ])
    .expect("the migration scenario's set")
}

/// How long a reader holds ACCESS SHARE on the table while the ALTER of 0003 waits: beyond
/// lock_timeout, so at least one attempt times out (55P03) and is retried.
const READER: Duration = Duration::from_millis(2500);
const LOCK_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_with_create_index_concurrently_and_a_lock_timeout_retry_under_writes() {
    let scenario = "migration-cic-retry";
    let cluster = durable::cluster("faults-migration", false);
    let primary = cluster.primary().endpoint().clone();
    let uri = notify_db_config::DatabaseUri::parse(&primary.uri("postgres"), "the durable primary")
        .expect("the primary's URI");
    let migrator = Migrator::new(migrations(), &uri)
        .expect("migrator")
        .with_options(Options {
            lock_timeout: LOCK_TIMEOUT,
            max_attempts: 10,
            retry_delay: Duration::from_millis(200),
            ..Options::default()
        });
    migrator
        .upgrade(&Target::Revision("0001".into()))
        .await
        .expect("0001 creates the workload's table");
    let dbs = durable::pools(&durable::settings(&primary.uri("postgres"), scenario)).await;
    let load = Workload::start(dbs.default());
    tokio::time::sleep(BEFORE).await;
    let from = load.now();
    migrator
        .upgrade(&Target::Revision("0002".into()))
        .await
        .expect("CREATE INDEX CONCURRENTLY under the writes");
    let reader = primary
        .connect("postgres")
        .await
        .expect("reader connection");
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM fault_writes;")
        .await
        .expect("the reader takes ACCESS SHARE");
    let reader = tokio::spawn(async move {
        tokio::time::sleep(READER).await;
        reader
            .batch_execute("COMMIT")
            .await
            .expect("reader commits");
        std::time::Instant::now()
    });
    let report = migrator
        .upgrade(&Target::Head)
        .await
        .expect("0003 succeeds once the reader is gone, after lock_timeout retries");
    let finished = std::time::Instant::now();
    let to = load.now();
    let committed = reader.await.expect("reader task");
    let alter = report
        .applied
        .iter()
        .find(|a| a.id == "0003_fault_writes_note")
        .expect("0003 applied");
    // One attempt waits at most lock_timeout; longer means it timed out and was retried, and
    // it could only succeed once the reader had let go of the table.
    assert!(
        alter.duration > LOCK_TIMEOUT && committed <= finished,
        "0003 took {:?} and ended {:?} after the reader committed: with the reader holding the \
         table for {READER:?} and lock_timeout {LOCK_TIMEOUT:?} it must have timed out, been \
         retried, and succeeded after the reader's COMMIT",
        alter.duration,
        finished.checked_duration_since(committed)
    );
    let valid: bool = primary
        .connect("postgres")
        .await
        .expect("checking the index")
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_fault_writes_write_id'::regclass",
            &[],
        )
        .await
        .expect("the index built concurrently exists")
        .get(0);
    assert!(valid, "CREATE INDEX CONCURRENTLY left an INVALID index");
    tokio::time::sleep(AFTER).await;
    let writes = load.stop().await;
    durable::finish(
        scenario,
        &primary,
        &writes,
        (from, to),
        0,
        &format!(
            "CIC, then ALTER behind a {READER:?} reader (lock_timeout 1 s): {:?} with retries",
            alter.duration
        ),
    )
    .await;
}
