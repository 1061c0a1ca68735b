//! Issue 22 point 6, the storm: 32 tasks, about a fifth of the checkouts abandoned at a random
//! point (inside a query, between the statements of a transaction, inside COPY). Afterwards no
//! row is committed that its writer did not commit (rows counted per writer), no checkout
//! waited longer than the wait timeout, every connection is idle outside a transaction
//! (pg_stat_activity), every reader read its own answers, and PgBouncer never got an answer
//! it could not route to a client.
//!
//! On both binds, directly and through PgBouncer in transaction mode. The default bind directly
//! storms for 20 s as the issue asks; the other variants for 8 s each (the bulk one directly,
//! and both binds through one PgBouncer at once), so that the suite stays fast.
mod common;

use std::time::{Duration, Instant};

use common::{NEED_PG, Recorder, recorded, settings_from, through_bouncer};
use futures_util::{SinkExt, StreamExt};
use notify_db_pool::{Bind, Databases, Pool};
use notify_db_testdb::TestDb;

const TASKS: i32 = 32;
/// The default bind, directly: the 20 s.
const RUN: Duration = Duration::from_secs(20);
/// Every other variant.
const SHORT_RUN: Duration = Duration::from_secs(8);
/// The statement timeout through PgBouncer (its connect_query and our settings agree on it).
const BOUNCER_TIMEOUT_MS: u32 = 20_000;

/// xorshift64: enough randomness for choosing where to cancel, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What one writer did.
#[derive(Default, Debug)]
struct Tally {
    committed: i64,
    abandoned: u64,
    longest_wait: Duration,
}

async fn writer(pool: Pool, writer: i32, deadline: Instant) -> Result<Tally, String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((writer as u64 + 1) * 0x1000_0001));
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let mut c = pool.get().await.map_err(|e| format!("get: {e}"))?;
        tally.longest_wait = tally.longest_wait.max(started.elapsed());
        let roll = rng.next() % 15;
        let within = Duration::from_micros(rng.next() % 3000);
        if roll >= 3 {
            let tx = c.transaction().await.map_err(|e| format!("BEGIN: {e}"))?;
            tx.execute("INSERT INTO storm VALUES ($1, true)", &[&writer])
                .await
                .map_err(|e| format!("insert: {}", notify_db_connect::error_text(&e)))?;
            tx.commit().await.map_err(|e| format!("commit: {e}"))?;
            tally.committed += 1;
            continue;
        }
        tally.abandoned += 1;
        let tx = c.transaction().await.map_err(|e| format!("BEGIN: {e}"))?;
        match roll {
            // Inside a query.
            0 => {
                let sql =
                    format!("INSERT INTO storm VALUES ({writer}, false); SELECT pg_sleep(0.002)");
                let _ = tokio::time::timeout(within, tx.batch_execute(&sql)).await;
            }
            // Between the statements of a transaction.
            1 => {
                tx.execute("INSERT INTO storm VALUES ($1, false)", &[&writer])
                    .await
                    .map_err(|e| format!("insert: {}", notify_db_connect::error_text(&e)))?;
            }
            // Inside COPY.
            _ => {
                let copy = async {
                    let sink = tx
                        .copy_in::<_, std::io::Cursor<Vec<u8>>>("COPY storm FROM STDIN")
                        .await?;
                    let mut sink = Box::pin(sink);
                    for _ in 0..50 {
                        sink.send(std::io::Cursor::new(format!("{writer}\tf\n").into_bytes()))
                            .await?;
                    }
                    Ok::<_, tokio_postgres::Error>(())
                };
                let _ = tokio::time::timeout(within, copy).await;
            }
        }
        drop(tx);
    }
    Ok(tally)
}

/// The bulk bind's storm task: read-only transactions, each checking that it reads its own
/// answer, a fifth of them abandoned inside a query, between statements or inside COPY TO.
async fn reader(pool: Pool, reader: i32, deadline: Instant) -> Result<Tally, String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((reader as u64 + 1) * 0x1000_0001));
    let mut tally = Tally::default();
    let mine = |rows: Vec<tokio_postgres::Row>| -> Result<(), String> {
        match rows.first().map(|r| r.get::<_, i32>(0)) {
            Some(got) if got == reader => Ok(()),
            other => Err(format!(
                "reader {reader} read {other:?}, not its own answer"
            )),
        }
    };
    while Instant::now() < deadline {
        let started = Instant::now();
        let mut c = pool.get().await.map_err(|e| format!("get: {e}"))?;
        tally.longest_wait = tally.longest_wait.max(started.elapsed());
        let roll = rng.next() % 15;
        let within = Duration::from_micros(rng.next() % 3000);
        let tx = c.transaction().await.map_err(|e| format!("BEGIN: {e}"))?;
        if roll >= 3 {
            mine(
                tx.query("SELECT $1::int", &[&reader])
                    .await
                    .map_err(|e| format!("select: {e}"))?,
            )?;
            tx.commit().await.map_err(|e| format!("commit: {e}"))?;
            tally.committed += 1;
            continue;
        }
        tally.abandoned += 1;
        match roll {
            0 => {
                let _ =
                    tokio::time::timeout(within, tx.batch_execute("SELECT pg_sleep(0.002)")).await;
            }
            1 => mine(
                tx.query("SELECT $1::int", &[&reader])
                    .await
                    .map_err(|e| format!("select: {e}"))?,
            )?,
            _ => {
                let copy = async {
                    let stream = tx
                        .copy_out("COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT")
                        .await?;
                    let mut stream = Box::pin(stream);
                    while let Some(row) = stream.next().await {
                        row?;
                    }
                    Ok::<_, tokio_postgres::Error>(())
                };
                let _ = tokio::time::timeout(within, copy).await;
            }
        }
        drop(tx);
    }
    Ok(tally)
}

/// Where a storm runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Direct,
    PgBouncer,
}

/// A storm of `TASKS` tasks on `bind` of `dbs` for `run`; then the checks of the module doc,
/// with `admin` on the server the bind's connections end on (the replica for bulk directly).
async fn storm(
    dbs: &Databases,
    recorder: &Recorder,
    bind: Bind,
    route: Route,
    run: Duration,
    wait: Duration,
    admin: &tokio_postgres::Client,
) {
    let what = format!("{bind} {route:?}");
    let pool = match bind {
        Bind::Default => dbs.default(),
        Bind::Bulk => dbs.bulk(),
    };
    let deadline = Instant::now() + run;
    let tasks: Vec<_> = (0..TASKS)
        .map(|w| match bind {
            Bind::Default => tokio::spawn(writer(pool.clone(), w, deadline)),
            Bind::Bulk => tokio::spawn(reader(pool.clone(), w, deadline)),
        })
        .collect();
    let mut tallies = Vec::new();
    for t in tasks {
        let tally = tokio::time::timeout(run + wait + Duration::from_secs(30), t)
            .await
            .unwrap_or_else(|_| panic!("{what}: a task hung"))
            .unwrap_or_else(|_| panic!("{what}: a task panicked"))
            .unwrap_or_else(|e| panic!("{what}: a task failed: {e}"));
        tallies.push(tally);
    }
    let abandoned: u64 = tallies.iter().map(|t| t.abandoned).sum();
    let committed: i64 = tallies.iter().map(|t| t.committed).sum();
    // About 5 of each per second of storm at the least, even on a loaded machine.
    let least = run.as_secs() * 5;
    assert!(
        abandoned > least && committed > least as i64,
        "{what}: {abandoned} abandoned, {committed} committed"
    );
    for t in &tallies {
        assert!(
            t.longest_wait < wait,
            "{what}: a checkout waited {:?}",
            t.longest_wait
        );
    }
    if bind == Bind::Default {
        let rows = admin
            .query(
                "SELECT writer, count(*) FILTER (WHERE committed), count(*) FILTER (WHERE NOT committed) \
                 FROM storm GROUP BY writer ORDER BY writer",
                &[],
            )
            .await
            .expect("counting rows");
        let mut seen = vec![0i64; TASKS as usize];
        for r in rows {
            let (w, ok, bad): (i32, i64, i64) = (r.get(0), r.get(1), r.get(2));
            assert_eq!(bad, 0, "{what}: writer {w}: abandoned rows were committed");
            seen[w as usize] = ok;
        }
        for (w, t) in tallies.iter().enumerate() {
            assert_eq!(seen[w], t.committed, "{what}: writer {w}: committed rows");
        }
    }
    // Resets run on their own tasks: give the last ones a moment, then every connection to this
    // test database (the pool's, or PgBouncer's server connections) must be idle outside a
    // transaction.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let row = admin
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle' OR backend_xid IS NOT NULL) \
                 FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                &[],
            )
            .await
            .expect("pg_stat_activity");
        let (all, busy): (i64, i64) = (row.get(0), row.get(1));
        if busy == 0 && all > 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{what}: {busy} of {all} connections not idle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let prefix = format!("reset {bind} ");
    let events = recorder.events();
    let resets = events.iter().filter(|e| e.starts_with(&prefix)).count();
    assert!(resets > 0, "{what}: the abandoned checkouts were reset");
    eprintln!(
        "storm {what}: {committed} committed, {abandoned} abandoned, {resets} resets, {} discarded",
        events
            .iter()
            .filter(|e| e.starts_with(&prefix) && e.ends_with(" discard"))
            .count()
    );
}

async fn storm_db() -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::create().await.expect(NEED_PG);
    let admin = db.connect().await.expect(NEED_PG);
    admin
        .batch_execute("CREATE TABLE storm (writer int NOT NULL, committed bool NOT NULL)")
        .await
        .expect("table");
    (db, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_on_the_bulk_bind_directly_leaves_all_idle_and_reads_its_own_answers() {
    let (db, _) = storm_db().await;
    db.sync_replica()
        .await
        .expect("replica to replay the new test database");
    let replica = db.replica_uri().expect("the shared cluster has a replica");
    let s = settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
        ("SQLALCHEMY_DATABASE_URI_BULK", replica),
    ]);
    let (dbs, recorder) = recorded(&s).await;
    let admin = db.connect_replica().await.expect(NEED_PG);
    storm(
        &dbs,
        &recorder,
        Bind::Bulk,
        Route::Direct,
        SHORT_RUN,
        s.pool.wait_timeout,
        &admin,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_on_both_binds_through_pgbouncer_commits_nothing_abandoned_and_leaves_all_idle() {
    let (db, admin) = storm_db().await;
    let (bouncer, s) = through_bouncer(&db, 8, BOUNCER_TIMEOUT_MS, &[]);
    let (dbs, recorder) = recorded(&s).await;
    let wait = s.pool.wait_timeout;
    // Both binds at once: one PgBouncer, twice the load, the time of one.
    tokio::join!(
        storm(
            &dbs,
            &recorder,
            Bind::Default,
            Route::PgBouncer,
            SHORT_RUN,
            wait,
            &admin
        ),
        storm(
            &dbs,
            &recorder,
            Bind::Bulk,
            Route::PgBouncer,
            SHORT_RUN,
            wait,
            &admin
        ),
    );
    // No request was pipelined behind the end of a transaction: PgBouncer would have released
    // the server at the first ReadyForQuery and dropped the next answer, or handed it to the
    // next client of that server (whose requests and answers would then no longer match).
    let log = std::fs::read_to_string(bouncer.log_file()).expect("PgBouncer's log");
    let stray: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("when not linked"))
        .collect();
    assert!(
        stray.is_empty(),
        "answers PgBouncer could not route:\n{}",
        stray.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_cancelled_checkouts_commits_nothing_abandoned_and_leaves_all_idle() {
    let (db, admin) = storm_db().await;
    let s = settings_from(&[("SQLALCHEMY_DATABASE_URI", db.primary_uri())]);
    let (dbs, recorder) = recorded(&s).await;
    let wait = s.pool.wait_timeout;
    storm(
        &dbs,
        &recorder,
        Bind::Default,
        Route::Direct,
        RUN,
        wait,
        &admin,
    )
    .await;
}
