//! The counted write workload of the durable scenarios: N tasks write rows through the
//! `default` pool, each row with a unique id and a payload checksum, and record the outcome of
//! every write; [`verify`] then reads what the server kept and checks the zero-loss promises.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify_db_pool::{ConnectError, Pool, PoolError};

/// Tasks writing at once (issue 23's default).
pub(crate) const TASKS: usize = 16;

/// The table every write goes to. `write_id` is deliberately not unique: a write applied twice
/// must show up as a duplicate, not be hidden by a constraint error.
pub(crate) const TABLE_SQL: &str = "CREATE TABLE fault_writes (\
     seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
     write_id bigint NOT NULL, \
     payload text NOT NULL, \
     checksum bigint NOT NULL)";

/// Pause between one task's writes: 16 tasks stay well below what 2 shared cores can fsync, so
/// throughput measures the fault, not the machine's other load.
const PAUSE: Duration = Duration::from_millis(5);
/// Pause after a write that did not succeed (no hot loop while the server is away).
const PAUSE_AFTER_ERROR: Duration = Duration::from_millis(50);
/// Bound on one write (checkout included): beyond every timeout of the scenarios' pools and
/// every fault they inject, so it only fires on a hang.
const WRITE_LIMIT: Duration = Duration::from_secs(30);

/// What happened to one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// COMMIT was answered OK: the row must be on the server.
    Acknowledged,
    /// An error before COMMIT was sent, or the server answered COMMIT with an ERROR: the row
    /// must not be on the server.
    Failed,
    /// COMMIT was sent and no answer came (connection lost, FATAL, timeout): either way.
    Unknown,
}

/// One attempted write.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    /// Unique id: task number in the high 32 bits, the task's sequence number in the low.
    pub id: i64,
    /// Checksum of the payload written.
    pub checksum: i64,
    /// Its outcome.
    pub outcome: Outcome,
    /// When the outcome was known, since the workload started.
    pub at: Duration,
    /// The error (SQLSTATE, or the kind of client error) when not acknowledged.
    pub error: Option<String>,
}

/// The payload of write `id`: 64 characters derived from it.
fn payload(id: i64) -> String {
    let mut x = id as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..4)
        .map(|_| {
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31);
            format!("{x:016x}")
        })
        .collect()
}

/// FNV-1a of the payload, as the signed 64-bit integer stored in `checksum`.
pub(crate) fn checksum(payload: &str) -> i64 {
    payload
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        .cast_signed()
}

/// A client error as a table label: the SQLSTATE when the server sent one, else its kind.
fn label(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(pg) = err.downcast_ref::<tokio_postgres::Error>() {
            return match pg.code() {
                Some(code) => code.code().to_owned(),
                None if pg.is_closed() => "connection closed".to_owned(),
                None => "connection error".to_owned(),
            };
        }
        cur = err.source();
    }
    match e.downcast_ref::<PoolError>() {
        Some(PoolError::Exhausted { .. }) => "pool exhausted".to_owned(),
        Some(PoolError::Connect(ConnectError::Connect { .. } | ConnectError::NoHost { .. })) => {
            "connect failed".to_owned()
        }
        _ => "other".to_owned(),
    }
}

/// The outcome of a write whose COMMIT returned `e`: the pool's typed error says when COMMIT
/// left and no answer came (the transaction may or may not have committed); any other error
/// means the server answered, or nothing was sent, so nothing was committed.
fn commit_error(e: &PoolError) -> Outcome {
    match e {
        PoolError::CommitOutcomeUnknown { .. } => Outcome::Unknown,
        _ => Outcome::Failed,
    }
}

/// One write in its own transaction; `commit_sent` is set just before COMMIT goes out, so a
/// caller that gives up on the future still knows which side of COMMIT it was.
async fn write(
    pool: &Pool,
    id: i64,
    payload: &str,
    sum: i64,
    commit_sent: &AtomicBool,
) -> (Outcome, Option<String>) {
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return (Outcome::Failed, Some(label(&e))),
    };
    // Literal values in a simple query: no named statement, so it works through a
    // transaction pooler too; every value is a number or hex text.
    let insert = format!(
        "INSERT INTO fault_writes (write_id, payload, checksum) VALUES ({id}, '{payload}', {sum})"
    );
    let tx = match conn.transaction().await {
        Ok(tx) => tx,
        Err(e) => return (Outcome::Failed, Some(label(&e))),
    };
    if let Err(e) = tx.batch_execute(&insert).await {
        // Dropping the transaction sends ROLLBACK.
        return (Outcome::Failed, Some(label(&e)));
    }
    commit_sent.store(true, Ordering::SeqCst);
    match tx.commit().await {
        Ok(()) => (Outcome::Acknowledged, None),
        Err(e) => (commit_error(&e), Some(label(&e))),
    }
}

/// One writing task: writes until stopped, recording every outcome.
async fn task(pool: Pool, n: usize, start: Instant, stop: Arc<AtomicBool>) -> Vec<Write> {
    let mut out = Vec::new();
    let mut seq: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let id = ((n as i64) << 32) | i64::from(seq);
        let payload = payload(id);
        let sum = checksum(&payload);
        let commit_sent = AtomicBool::new(false);
        let (outcome, error) =
            tokio::time::timeout(WRITE_LIMIT, write(&pool, id, &payload, sum, &commit_sent))
                .await
                .unwrap_or_else(|_| {
                    let outcome = if commit_sent.load(Ordering::SeqCst) {
                        Outcome::Unknown
                    } else {
                        Outcome::Failed
                    };
                    (outcome, Some("client timeout".to_owned()))
                });
        out.push(Write {
            id,
            checksum: sum,
            outcome,
            at: start.elapsed(),
            error,
        });
        let ok = outcome == Outcome::Acknowledged;
        tokio::time::sleep(if ok { PAUSE } else { PAUSE_AFTER_ERROR }).await;
    }
    out
}

/// The running workload.
pub(crate) struct Workload {
    start: Instant,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Write>>>,
}

impl Workload {
    /// Starts [`TASKS`] writing tasks on `pool` (the `default` bind).
    pub(crate) fn start(pool: &Pool) -> Workload {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..TASKS)
            .map(|n| tokio::spawn(task(pool.clone(), n, start, stop.clone())))
            .collect();
        Workload { start, stop, tasks }
    }

    /// Time since the workload started (to mark the fault's start and end).
    pub(crate) fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops the tasks and collects every write; an error when a task panicked.
    pub(crate) async fn stop(self) -> Writes {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("a workload task panicked"));
        }
        Writes {
            all,
            end: self.start.elapsed(),
        }
    }
}

/// Every write of a run.
pub(crate) struct Writes {
    /// Every attempted write, task by task.
    pub all: Vec<Write>,
    /// When the workload stopped, since it started.
    pub end: Duration,
}

impl Writes {
    /// How many writes had this outcome.
    pub(crate) fn count(&self, outcome: Outcome) -> usize {
        self.all.iter().filter(|w| w.outcome == outcome).count()
    }

    /// Writes not acknowledged, by error label.
    pub(crate) fn errors(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for e in self.all.iter().filter_map(|w| w.error.as_ref()) {
            *out.entry(e.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Acknowledged writes per second in `[from, to)`.
    fn rate(&self, from: Duration, to: Duration) -> f64 {
        let n = self
            .all
            .iter()
            .filter(|w| w.outcome == Outcome::Acknowledged && w.at >= from && w.at < to)
            .count();
        n as f64 / to.saturating_sub(from).as_secs_f64().max(0.001)
    }

    /// Throughput before `fault.0`, between `fault.0` and `fault.1`, after `fault.1`, and the
    /// recovery time: from the fault's start to the start of the first 500 ms window (in steps
    /// of 100 ms) at 80 % or more of the rate before; `None` when it never got there.
    pub(crate) fn throughput(&self, fault: (Duration, Duration)) -> Throughput {
        let warm_up = Duration::from_millis(500).min(fault.0);
        let before = self.rate(warm_up, fault.0);
        let window = Duration::from_millis(500);
        let mut t = fault.0;
        let mut recovery = None;
        while t + window <= self.end {
            if self.rate(t, t + window) >= 0.8 * before {
                recovery = Some(t - fault.0);
                break;
            }
            t += Duration::from_millis(100);
        }
        Throughput {
            before,
            during: self.rate(fault.0, fault.1),
            after: self.rate(fault.1, self.end),
            recovery,
        }
    }
}

/// Acknowledged writes per second around a fault.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Throughput {
    /// Before the fault (after a short warm-up).
    pub before: f64,
    /// While the fault lasted.
    pub during: f64,
    /// From the repair to the end.
    pub after: f64,
    /// From the fault's start until back to 80 % of before.
    pub recovery: Option<Duration>,
}

/// What the server kept, compared with what the client was told.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Writes failed.
    pub failed: usize,
    /// Writes with an unknown outcome.
    pub unknown: usize,
    /// Unknown writes found on the server (the rest are absent).
    pub unknown_present: usize,
    /// Acknowledged writes missing on the server.
    pub lost: Vec<i64>,
    /// Rows whose payload or checksum differs from what was written.
    pub corrupted: Vec<i64>,
    /// Failed writes found on the server.
    pub failed_present: Vec<i64>,
    /// Write ids found more than once.
    pub duplicated: Vec<i64>,
    /// Rows with an id no task wrote.
    pub unexpected: Vec<i64>,
}

/// Reads `fault_writes` on `server` (the primary after the fault) and compares it with `writes`.
pub(crate) async fn verify(server: &tokio_postgres::Client, writes: &Writes) -> Verdict {
    let rows = server
        .query("SELECT write_id, payload, checksum FROM fault_writes", &[])
        .await
        .expect("reading fault_writes on the server after the fault");
    let mut found: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for r in rows {
        found
            .entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2)));
    }
    let mut v = Verdict::default();
    let mut seen = HashSet::new();
    for w in &writes.all {
        seen.insert(w.id);
        let rows = found.get(&w.id);
        if rows.is_some_and(|r| r.len() > 1) {
            v.duplicated.push(w.id);
        }
        if let Some(rows) = rows
            && rows
                .iter()
                .any(|(p, sum)| *sum != w.checksum || checksum(p) != w.checksum)
        {
            v.corrupted.push(w.id);
        }
        match w.outcome {
            Outcome::Acknowledged => {
                v.acknowledged += 1;
                if rows.is_none() {
                    v.lost.push(w.id);
                }
            }
            Outcome::Failed => {
                v.failed += 1;
                if rows.is_some() {
                    v.failed_present.push(w.id);
                }
            }
            Outcome::Unknown => {
                v.unknown += 1;
                v.unknown_present += usize::from(rows.is_some());
            }
        }
    }
    v.unexpected = found
        .keys()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    v
}

impl Verdict {
    /// The zero-loss promises, with at most `lost_allowed` acknowledged rows lost (0 but for
    /// asynchronous failover): every other acknowledged row present with its checksum, no failed
    /// row present, no duplicate, nothing nobody wrote.
    pub(crate) fn assert_intact(&self, scenario: &str, lost_allowed: usize) {
        assert!(
            self.acknowledged > 0,
            "{scenario}: no write was acknowledged at all"
        );
        assert!(
            self.lost.len() <= lost_allowed,
            "{scenario}: {} acknowledged rows lost (allowed {lost_allowed}), e.g. {:?}",
            self.lost.len(),
            &self.lost[..self.lost.len().min(10)]
        );
        for (what, ids) in [
            ("rows with a wrong payload or checksum", &self.corrupted),
            ("failed writes present on the server", &self.failed_present),
            ("duplicated write ids", &self.duplicated),
            ("rows nobody wrote", &self.unexpected),
        ] {
            assert!(
                ids.is_empty(),
                "{scenario}: {} {what}, e.g. {:?}",
                ids.len(),
                &ids[..ids.len().min(10)]
            );
        }
    }
}
