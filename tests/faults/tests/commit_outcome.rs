//! Issue 23 point 3: a connection that fails after COMMIT was sent and before its answer gives
//! `PoolError::CommitOutcomeUnknown` (bind, host, port, backend pid), the connection is
//! discarded, and the row's real fate can then be read. COMMIT is held open on the server by a
//! deferred constraint trigger that sleeps, and the server is black-holed meanwhile.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use common::{BlackHole, TcLock};
use notify_db_pool::{Databases, PoolError, PoolObserver, ResetReason};
use notify_db_testdb::Cluster;

/// Records the reasons of resets.
#[derive(Default)]
struct Resets(std::sync::Mutex<Vec<(i32, ResetReason)>>);

impl PoolObserver for Resets {
    fn reset(&self, c: &notify_db_pool::ConnInfo, reason: ResetReason) {
        if let Ok(mut v) = self.0.lock() {
            v.push((c.backend_pid, reason));
        }
    }
}

/// How long COMMIT stays open on the server (the deferred trigger's sleep).
const COMMIT_HELD: &str = "3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_between_commit_and_its_answer_reports_an_unknown_outcome() {
    let cluster = Cluster::builder()
        .label("faults-commit-outcome")
        .replica(false)
        .start()
        .expect("a private cluster must start for this scenario");
    let primary = cluster.primary().endpoint().clone();
    let (admin, admin_conn) =
        tokio_postgres::connect(&primary.uri("postgres"), tokio_postgres::NoTls)
            .await
            .expect("admin connection");
    tokio::spawn(admin_conn);
    admin
        .batch_execute(&format!(
            "CREATE TABLE writes (id int PRIMARY KEY);
             CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep({COMMIT_HELD}); RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON writes
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();"
        ))
        .await
        .expect("the table and its deferred trigger");
    let mut settings = common::settings(&primary.uri("postgres"), None);
    settings.pool.size = 1;
    settings.pool.tcp_user_timeout = Duration::from_secs(2);
    let resets = Arc::new(Resets::default());
    let dbs = Databases::builder(&settings)
        .observer(resets.clone())
        .build()
        .await
        .expect("pools");

    let lock = tokio::task::spawn_blocking(TcLock::acquire)
        .await
        .expect("lock task")
        .expect("the tc lock (this suite runs as root with `tc`)");
    let port = primary.port;
    let mut c = dbs.default().get().await.expect("connection");
    let pid = c.info().backend_pid;
    let tx = c.transaction().await.expect("BEGIN");
    tx.execute("INSERT INTO writes VALUES (1)", &[])
        .await
        .expect("the insert (its trigger waits for COMMIT)");
    let hole = async {
        // COMMIT is on the server, sleeping in the trigger: cut the answer off.
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::spawn_blocking(move || BlackHole::start(lock, Ipv4Addr::LOCALHOST, port))
            .await
            .expect("black hole task")
            .expect("installing the black hole")
    };
    let (outcome, hole) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(tx.commit(), hole)
    })
    .await
    .expect("the commit must fail within tcp_user_timeout and keepalives, not hang");
    drop(c);
    drop(hole);
    match outcome {
        Err(PoolError::CommitOutcomeUnknown {
            bind,
            host,
            port: p,
            backend_pid,
            cause,
        }) => {
            assert_eq!(bind, notify_db_pool::Bind::Default);
            assert_eq!((host.as_str(), p), (primary.host.as_str(), port));
            assert_eq!(backend_pid, pid);
            assert!(!cause.is_empty());
        }
        other => panic!("expected CommitOutcomeUnknown, got {other:?}"),
    }
    // The row's real fate: the server finished the commit after the answer was lost.
    let c = tokio::time::timeout(Duration::from_secs(15), dbs.default().get())
        .await
        .expect("a new connection after the black hole")
        .expect("a new connection");
    assert_ne!(
        c.info().backend_pid,
        pid,
        "the broken connection is discarded"
    );
    // The old backend is still in its COMMIT (the trigger's sleep) when the client gives up:
    // its transaction ends on the server's own time. Wait for that, then read the fate.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let open: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND xact_start IS NOT NULL",
                    &[&pid],
                )
                .await
                .expect("reading the old backend's state")
                .get(0);
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the old backend's COMMIT must end on the server"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM writes WHERE id = 1", &[])
        .await
        .expect("reading the row's fate")
        .get(0);
    assert_eq!(n, 1, "the server committed; the client could not know");
    let seen = resets.0.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(
        seen.contains(&(pid, ResetReason::Broken)),
        "the connection is discarded as broken: {seen:?}"
    );
}
