//! Reset on return (issue 22 point 1): every way a holder can leave its connection dirty, on
//! both binds, with a pool of one connection so the next holder gets the same one, directly and
//! through a real PgBouncer in transaction mode. The next holder must get an idle connection at
//! once (not behind the abandoned statement), outside any transaction, without the abandoned
//! writes; the reset is reported to the observer with its reason.

mod common;

use std::time::{Duration, Instant};

use common::{NEED_PG, Recorder, recorded, settings_from, through_bouncer};
use futures_util::{SinkExt, StreamExt};
use notify_db_pool::{Bind, Databases, Pool};
use notify_db_testdb::TestDb;
use tokio_postgres::error::SqlState;

/// The statement the cancelled cases abandon: far longer than any test may wait.
const SLOW: &str = "SELECT pg_sleep(30)";
/// The next holder must be served well before the abandoned statement would end (or, through
/// PgBouncer, before its statement_timeout of 7 s would end it).
const AT_ONCE: Duration = Duration::from_secs(4);

/// How a holder leaves its connection.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// A `Transaction` dropped without commit, after a write.
    DroppedTransaction,
    /// `BEGIN` and a write sent with `batch_execute`, then the connection dropped.
    RawBegin,
    /// A transaction failed (25P02 for anything but ROLLBACK) and was left so.
    FailedTransaction,
    /// A write in a transaction, then a slow query whose future is dropped by a timeout.
    CancelledQuery,
    /// A COPY FROM STDIN in a transaction whose sink is dropped half-way.
    CancelledCopyIn,
    /// A COPY TO STDOUT whose stream is dropped half-way.
    CancelledCopyOut,
    /// A holder that panicked inside a transaction.
    Panicked,
}

const ALL: [Case; 7] = [
    Case::DroppedTransaction,
    Case::RawBegin,
    Case::FailedTransaction,
    Case::CancelledQuery,
    Case::CancelledCopyIn,
    Case::CancelledCopyOut,
    Case::Panicked,
];

impl Case {
    /// The reasons the reset may report (a request still in flight when the holder left may
    /// be answered within the grace, or need the cancel). `none`: a dropped Transaction's own
    /// ROLLBACK may already be answered when the connection comes back, which is then clean.
    /// Through a pooler, a COPY TO with the Close + Sync of its statement queued behind it is
    /// closed, not cancelled (a CancelRequest then makes PgBouncer 1.18 exit).
    fn reasons(self, through_pooler: bool) -> &'static [&'static str] {
        match self {
            Case::CancelledCopyOut if through_pooler => &["discard"],
            Case::DroppedTransaction => &["rollback", "drained", "none"],
            Case::RawBegin | Case::FailedTransaction | Case::Panicked => &["rollback"],
            Case::CancelledQuery | Case::CancelledCopyOut => &["cancel"],
            Case::CancelledCopyIn => &["rollback"],
        }
    }

    /// Whether the case writes (not on the read-only bulk bind).
    fn writes(self) -> bool {
        !matches!(self, Case::CancelledCopyOut)
    }
}

/// Leaves the one connection of `pool` as `case` says.
async fn abandon(pool: &Pool, case: Case, write: bool) {
    let insert = if write {
        "INSERT INTO abandoned VALUES (1)"
    } else {
        "SELECT 1"
    };
    let mut c = pool.get().await.expect("checkout");
    match case {
        Case::DroppedTransaction => {
            let tx = c.transaction().await.expect("BEGIN");
            tx.batch_execute(insert)
                .await
                .expect("write in the transaction");
            drop(tx);
        }
        Case::RawBegin => {
            c.batch_execute(&format!("BEGIN; {insert}"))
                .await
                .expect("BEGIN and a write");
        }
        Case::FailedTransaction => {
            c.batch_execute(&format!("BEGIN; {insert}"))
                .await
                .expect("BEGIN and a write");
            let err = c
                .batch_execute("SELECT 1/0")
                .await
                .expect_err("division by zero");
            assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
            let err = c
                .batch_execute("SELECT 1")
                .await
                .expect_err("a failed transaction refuses everything");
            assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
        }
        Case::CancelledQuery => {
            c.batch_execute(&format!("BEGIN; {insert}"))
                .await
                .expect("BEGIN and a write");
            let slow = tokio::time::timeout(Duration::from_millis(300), c.batch_execute(SLOW));
            assert!(slow.await.is_err(), "the slow query must still be running");
        }
        Case::CancelledCopyIn => {
            c.batch_execute("BEGIN").await.expect("BEGIN");
            let sink = c
                .copy_in::<_, bytes_of::Bytes>("COPY abandoned FROM STDIN")
                .await
                .expect("COPY FROM STDIN starts");
            let mut sink = Box::pin(sink);
            for _ in 0..100 {
                sink.send(bytes_of::row()).await.expect("a copy row");
            }
            drop(sink);
        }
        Case::CancelledCopyOut => {
            // Rows of 2 kB: the server flushes COPY data when its 8 kB output buffer fills,
            // so narrow rows at 10 ms each would arrive only after seconds (through PgBouncer,
            // racing its 7 s statement_timeout), while the test wants the COPY running.
            let stream = c
                .copy_out(
                    "COPY (SELECT g, repeat('x', 2000), pg_sleep(0.01) \
                     FROM generate_series(1, 100000) g) TO STDOUT",
                )
                .await
                .expect("COPY TO STDOUT starts");
            let mut stream = Box::pin(stream);
            for _ in 0..3 {
                stream
                    .next()
                    .await
                    .expect("a row")
                    .expect("a row without error");
            }
            drop(stream);
        }
        Case::Panicked => {
            let handle = tokio::spawn(async move {
                c.batch_execute(&format!("BEGIN; {insert}"))
                    .await
                    .expect("BEGIN and a write");
                panic!("the holder panics inside its transaction");
            });
            assert!(handle.await.is_err_and(|e| e.is_panic()));
            return;
        }
    }
    drop(c);
}

/// A COPY row as the sink's buffer type.
mod bytes_of {
    /// The buffer type of the copy sink.
    pub(crate) type Bytes = std::io::Cursor<Vec<u8>>;

    /// One row of `abandoned` in COPY text format.
    pub(crate) fn row() -> Bytes {
        std::io::Cursor::new(b"7\n".to_vec())
    }
}

/// Runs every case on `bind` of `dbs` (pool of one) and checks the next holder each time.
async fn every_case(
    dbs: &Databases,
    recorder: &Recorder,
    bind: Bind,
    counter: &TestDb,
    cases: &[Case],
    through_pooler: bool,
) {
    let pool = match bind {
        Bind::Default => dbs.default(),
        Bind::Bulk => dbs.bulk(),
    };
    for &case in cases {
        if bind == Bind::Bulk && matches!(case, Case::CancelledCopyIn) {
            // COPY FROM is refused on a read-only session before it starts.
            continue;
        }
        let write = bind == Bind::Default && case.writes();
        let before = recorder.count("reset ");
        let pid = pool.get().await.expect("checkout").info().backend_pid;
        tokio::time::timeout(Duration::from_secs(20), abandon(pool, case, write))
            .await
            .unwrap_or_else(|_| panic!("{bind} {case:?}: abandoning took over 20 s"));
        let started = Instant::now();
        let c = tokio::time::timeout(AT_ONCE, pool.get())
            .await
            .unwrap_or_else(|_| panic!("{bind} {case:?}: the next checkout waited"))
            .expect("the next checkout");
        let err = tokio::time::timeout(AT_ONCE, c.batch_execute("SAVEPOINT inside"))
            .await
            .unwrap_or_else(|_| panic!("{bind} {case:?}: the next holder's statement waited"))
            .expect_err("SAVEPOINT outside a transaction fails");
        assert_eq!(
            err.code(),
            Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION),
            "{bind} {case:?}: the next holder must be outside any transaction: {err}"
        );
        assert!(started.elapsed() < AT_ONCE, "{bind} {case:?}");
        let events = recorder.events();
        let resets: Vec<&String> = events
            .iter()
            .filter(|e| e.starts_with("reset "))
            .skip(before)
            .collect();
        // How many steps a reset reports depends on timing (a dropped Transaction's ROLLBACK
        // may be answered before the connection comes back, so nothing is reset; a request may
        // be drained and a later one cancelled). What matters: every step is one this case can
        // need, and every case but the dropped Transaction needed one.
        assert!(
            !resets.is_empty() || matches!(case, Case::DroppedTransaction),
            "{bind} {case:?}: a reset reported; the last events: {:?}",
            &events[events.len().saturating_sub(8)..]
        );
        let reasons = case.reasons(through_pooler);
        for r in &resets {
            let reason = r.rsplit(' ').next().unwrap_or_default();
            assert!(
                reason == "drained" || reasons.contains(&reason),
                "{bind} {case:?}: reason {reason}, expected one of {reasons:?}"
            );
        }
        let closed = resets.iter().any(|r| r.ends_with(" discard"));
        if let Some(r) = resets.first() {
            assert!(
                r.starts_with(&format!("reset {bind} {pid} ")),
                "{bind} {case:?}: the reset names the connection: {r}"
            );
        }
        assert_eq!(
            c.info().backend_pid == pid,
            !closed,
            "{bind} {case:?}: a reset connection is reused, a closed one replaced"
        );
        drop(c);
        if write {
            let n: i64 = counter
                .connect()
                .await
                .expect(NEED_PG)
                .query_one("SELECT count(*) FROM abandoned", &[])
                .await
                .expect("counting")
                .get(0);
            assert_eq!(
                n, 0,
                "{bind} {case:?}: abandoned writes must not be committed"
            );
        }
    }
}

async fn test_db() -> TestDb {
    let db = TestDb::create().await.expect(NEED_PG);
    db.connect()
        .await
        .expect(NEED_PG)
        .batch_execute("CREATE TABLE abandoned (v int)")
        .await
        .expect("creating the table");
    db.sync_replica()
        .await
        .expect("replica to replay the new test database");
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dirty_return_is_reset_on_both_binds_directly() {
    let db = test_db().await;
    let mut vars = vec![
        ("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
        ("SQLALCHEMY_POOL_SIZE", "1".to_owned()),
    ];
    if let Some(r) = db.replica_uri() {
        vars.push(("SQLALCHEMY_DATABASE_URI_BULK", r));
    }
    let (dbs, recorder) = recorded(&settings_from(&vars)).await;
    for bind in [Bind::Default, Bind::Bulk] {
        every_case(&dbs, &recorder, bind, &db, &ALL, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dirty_return_is_reset_on_both_binds_through_pgbouncer() {
    let db = test_db().await;
    let (_bouncer, s) = through_bouncer(&db, 2, 7000, &[("SQLALCHEMY_POOL_SIZE", "1".to_owned())]);
    let (dbs, recorder) = recorded(&s).await;
    // Every case, the cancelled ones too: PgBouncer forwards the CancelRequest (sent to it,
    // with the key it gave this client) to the server connection the client is linked to. The
    // COPY TO, with a request queued behind it, is closed instead (see `Case::reasons`).
    let cases = ALL;
    for bind in [Bind::Default, Bind::Bulk] {
        every_case(&dbs, &recorder, bind, &db, &cases, true).await;
    }
}

/// A return right after `query(&str)` is clean: the statement tokio-postgres prepared for the
/// string is closed on drop with a Close + Sync that may still be in flight when the connection
/// comes back. It runs nothing, and the next holder's request queues behind its answer, so it
/// must not send the connection down the reset path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_right_after_a_query_from_a_str_is_not_reset() {
    let db = test_db().await;
    let (dbs, recorder) = recorded(&settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
        ("SQLALCHEMY_POOL_SIZE", "1".to_owned()),
    ]))
    .await;
    let pool = dbs.default();
    let pid = pool.get().await.expect("checkout").info().backend_pid;
    let run = async {
        for i in 0..300_i32 {
            let c = pool.get().await.expect("checkout");
            assert_eq!(c.info().backend_pid, pid, "the one connection is reused");
            let rows = c
                .query("SELECT $1::int + 1", &[&i])
                .await
                .expect("a query from a &str");
            let got: i32 = rows[0].get(0);
            assert_eq!(got, i + 1, "each holder reads its own answer");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("300 checkouts within 60 s");
    let resets: Vec<String> = recorder
        .events()
        .into_iter()
        .filter(|e| e.starts_with("reset ") || e.starts_with("closed "))
        .collect();
    assert!(
        resets.is_empty(),
        "no return after query(&str) is reset or closed: {resets:?}"
    );
}
