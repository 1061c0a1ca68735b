//! Issue 22 point 6, the storm: 32 tasks for 20 s on the default pool, about a fifth of the
//! checkouts abandoned at a random point (inside a query, between the statements of a
//! transaction, inside COPY). Afterwards no row is committed that its writer did not commit
//! (rows counted per writer), no checkout waited longer than the wait timeout, and every
//! connection is idle outside a transaction (pg_stat_activity).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Recorder, settings_from};
use futures_util::SinkExt;
use notify_db_pool::{Databases, Pool};
use notify_db_testdb::TestDb;

const NEED_PG: &str = "a test database on the shared primary/replica (notify-db-testdb needs \
                       PostgreSQL 15+ binaries; see crates/testdb)";
const TASKS: i32 = 32;
const RUN: Duration = Duration::from_secs(20);

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
                .map_err(|e| format!("insert: {e}"))?;
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
                    .map_err(|e| format!("insert: {e}"))?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_cancelled_checkouts_commits_nothing_abandoned_and_leaves_all_idle() {
    let db = TestDb::create().await.expect(NEED_PG);
    let admin = db.connect().await.expect(NEED_PG);
    admin
        .batch_execute("CREATE TABLE storm (writer int NOT NULL, committed bool NOT NULL)")
        .await
        .expect("table");
    let app = format!("pool-storm-{}", std::process::id());
    let uri = format!("{}?application_name={app}", db.primary_uri());
    let s = settings_from(&[("SQLALCHEMY_DATABASE_URI", uri)]);
    let wait = s.pool.wait_timeout;
    let recorder = Arc::new(Recorder::default());
    let dbs = Databases::builder(&s)
        .observer(recorder.clone())
        .build()
        .await
        .expect("pools");
    let deadline = Instant::now() + RUN;
    let tasks: Vec<_> = (0..TASKS)
        .map(|w| tokio::spawn(writer(dbs.default().clone(), w, deadline)))
        .collect();
    let mut tallies = Vec::new();
    for t in tasks {
        let tally = tokio::time::timeout(RUN + wait + Duration::from_secs(30), t)
            .await
            .expect("a writer hung")
            .expect("a writer panicked")
            .unwrap_or_else(|e| panic!("a writer failed: {e}"));
        tallies.push(tally);
    }
    let abandoned: u64 = tallies.iter().map(|t| t.abandoned).sum();
    let committed: i64 = tallies.iter().map(|t| t.committed).sum();
    assert!(
        abandoned > 100 && committed > 100,
        "{abandoned} abandoned, {committed} committed"
    );
    for t in &tallies {
        assert!(
            t.longest_wait < wait,
            "a checkout waited {:?}",
            t.longest_wait
        );
    }
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
        assert_eq!(bad, 0, "writer {w}: abandoned rows were committed");
        seen[w as usize] = ok;
    }
    for (w, t) in tallies.iter().enumerate() {
        assert_eq!(seen[w], t.committed, "writer {w}: committed rows");
    }
    // Resets run on their own tasks: give the last ones a moment, then every connection of this
    // pool must be idle outside a transaction.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let row = admin
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle' OR backend_xid IS NOT NULL) \
                 FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .expect("pg_stat_activity");
        let (all, busy): (i64, i64) = (row.get(0), row.get(1));
        if busy == 0 && all > 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{busy} of {all} connections not idle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resets = recorder.count("reset default");
    assert!(resets > 0, "the abandoned checkouts were reset");
    eprintln!(
        "storm: {committed} committed, {abandoned} abandoned, {resets} resets, {} discarded",
        recorder
            .events()
            .iter()
            .filter(|e| e.starts_with("reset default") && e.ends_with(" discard"))
            .count()
    );
}
