//! Issue 22 point 3: the default bind's primary turns read-only under a running pool
//! (`ALTER SYSTEM SET default_transaction_read_only = on` and a reload, as a managed failover
//! or a DNS switch leaves it), then back. Each stale connection attempts at most one write (its
//! 25006 gets it discarded on return), new connections refuse the read-only server, and the
//! pool recovers without a restart.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Recorder, settings_from};
use notify_db_pool::{ConnectError, Databases, PoolError};
use notify_db_testdb::Cluster;
use tokio_postgres::error::SqlState;

const NEED_CLUSTER: &str = "a private PostgreSQL cluster (notify-db-testdb needs PostgreSQL 15+ \
                            binaries; see crates/testdb)";

const SIZE: usize = 3;

async fn reload(admin: &tokio_postgres::Client, sql: &str) {
    // Two requests: ALTER SYSTEM cannot run in the implicit transaction of a multi-statement one.
    admin
        .batch_execute(sql)
        .await
        .expect("changing the setting");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reloading");
    // Backends apply a reload at their next command; give the postmaster time to signal them.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_turned_read_only_is_left_and_rejoined_without_a_restart() {
    let cluster = Cluster::builder()
        .label("pool-read-only")
        .replica(false)
        .start()
        .expect(NEED_CLUSTER);
    let uri = cluster.primary().uri("postgres");
    let (admin, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(conn);
    admin
        .batch_execute("CREATE TABLE notes (n int)")
        .await
        .expect("table");
    let s = settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", uri.clone()),
        ("SQLALCHEMY_POOL_SIZE", SIZE.to_string()),
    ]);
    let recorder = Arc::new(Recorder::default());
    let dbs = Databases::builder(&s)
        .observer(recorder.clone())
        .build()
        .await
        .expect("pools");
    let pool = dbs.default();
    // Open every slot: SIZE stale connections once the server turns read-only.
    let held: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..SIZE {
            v.push(pool.get().await.expect("warm connection"));
        }
        v
    };
    drop(held);
    assert_eq!(pool.status().size, SIZE);

    reload(
        &admin,
        "ALTER SYSTEM SET default_transaction_read_only = on",
    )
    .await;
    let mut read_only_errors = 0;
    let mut refused = 0;
    for _ in 0..3 * SIZE {
        match pool.get().await {
            Ok(c) => match c.execute("INSERT INTO notes VALUES (1)", &[]).await {
                Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                    read_only_errors += 1;
                }
                other => panic!("a write on the read-only server: {other:?}"),
            },
            Err(PoolError::Connect(ConnectError::Setup { cause, .. })) => {
                assert!(cause.contains("read-only"), "{cause}");
                refused += 1;
            }
            Err(e) => panic!("unexpected checkout error: {e}"),
        }
    }
    assert_eq!(
        read_only_errors, SIZE,
        "each stale connection attempts one write, then is discarded"
    );
    assert_eq!(
        refused,
        2 * SIZE,
        "new connections refuse the read-only server"
    );
    assert_eq!(
        recorder.count("reset default"),
        SIZE,
        "{:?}",
        recorder.events()
    );
    assert!(
        recorder
            .events()
            .iter()
            .filter(|e| e.starts_with("reset default"))
            .all(|e| e.ends_with(" read_only")),
        "{:?}",
        recorder.events()
    );

    reload(&admin, "ALTER SYSTEM RESET default_transaction_read_only").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pool.get().await {
            Ok(c) => {
                c.execute("INSERT INTO notes VALUES (2)", &[])
                    .await
                    .expect("writes work again");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = e;
            }
            Err(e) => panic!("the pool did not recover within 10 s: {e}"),
        }
    }
    let n: i64 = admin
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1, "only the write after the switch back landed");
}
