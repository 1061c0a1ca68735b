//! Item 5: the crash matrix. 20 runs of the starter set plus a multi-statement non-transactional
//! migration (the `faults-migrate-runner` binary), each SIGKILLed at a random moment. After each
//! kill the schema is exactly the one of the revision in `alembic_version` (or, inside a
//! non-transactional migration, that revision plus the statements the journal says completed,
//! give or take the one statement running at the kill; an INVALID index left by a killed
//! CREATE INDEX CONCURRENTLY is allowed), and a rerun finishes at head with the head schema.
//! One more run each time is killed for certain inside the non-transactional migration, after
//! its first statement is journaled, whatever the seed.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use notify_db_faults::{EXTRA_ID, crash_matrix_set};
use notify_db_migrate::{MigrationSet, Migrator, Target};
use notify_db_migrate_cli::schema;
use notify_db_testdb::TestDb;

const RUNS: usize = 20;
const RUNNER: &str = env!("CARGO_BIN_EXE_faults-migrate-runner");

/// A schema as comparable text, without the migration bookkeeping tables and without INVALID
/// indexes (leftovers of a killed CREATE INDEX CONCURRENTLY, dropped by the next run).
async fn shape(client: &tokio_postgres::Client) -> (BTreeMap<String, String>, usize) {
    let s = schema::capture(client)
        .await
        .expect("schema capture")
        .without_table("alembic_version")
        .without_table(notify_db_migrate::JOURNAL_TABLE);
    let mut invalid = 0;
    let map = s
        .objects()
        .filter(|(_, def)| {
            let bad = def.contains("(INVALID)");
            invalid += usize::from(bad);
            !bad
        })
        .map(|(id, def)| (id.to_string(), def.to_owned()))
        .collect();
    (map, invalid)
}

/// Reference shapes: after each revision, and after each statement prefix of non-transactional
/// migrations (keyed by (revision before, completed statements)).
struct Reference {
    at: BTreeMap<Option<String>, BTreeMap<String, String>>,
    prefix: BTreeMap<(String, usize), BTreeMap<String, String>>,
}

/// The URI of test database `db` (the migration engine connects from a URI).
fn test_uri(db: &TestDb) -> notify_db_config::DatabaseUri {
    notify_db_config::DatabaseUri::parse(&db.primary_uri(), "the test database")
        .expect("test database URI")
}

async fn reference(set: &MigrationSet) -> Reference {
    let db = TestDb::create().await.expect("reference database");
    let client = db.connect().await.expect("connect reference");
    let migrator = Migrator::new(set.clone(), &test_uri(&db)).expect("migrator");
    let mut at = BTreeMap::new();
    let mut prefix = BTreeMap::new();
    at.insert(None, shape(&client).await.0);
    for m in set.migrations() {
        if !m.is_transactional() {
            for (j, stmt) in m.up_statements().iter().enumerate() {
                client
                    .batch_execute(stmt)
                    .await
                    .expect("reference statement");
                prefix.insert((m.id().to_owned(), j + 1), shape(&client).await.0);
            }
        }
        migrator
            .upgrade(&Target::Revision(m.id().to_owned()))
            .await
            .expect("reference upgrade");
        at.insert(Some(m.id().to_owned()), shape(&client).await.0);
    }
    Reference { at, prefix }
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("- {k}: {v}")),
            Some(w) if w != v => out.push(format!("~ {k}: {v} -> {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("+ {k}: {v}"));
        }
    }
    out.join("\n")
}

async fn run_runner(db: &TestDb, kill_after: Option<Duration>) -> (bool, Duration) {
    let mut child = tokio::process::Command::new(RUNNER)
        .env("FAULTS_DATABASE_URI", db.primary_uri())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the migration runner");
    let started = Instant::now();
    let Some(after) = kill_after else {
        let out = child.wait_with_output().await.expect("runner output");
        assert!(
            out.status.success(),
            "the migration runner failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return (false, started.elapsed());
    };
    tokio::select! {
        status = child.wait() => {
            assert!(status.expect("runner status").success(), "runner failed before the kill");
            (false, started.elapsed())
        }
        () = tokio::time::sleep(after) => {
            child.start_kill().expect("SIGKILL the runner");
            let _ = child.wait().await;
            (true, started.elapsed())
        }
    }
}

/// Waits until the killed runner's backends are gone (a running statement only notices the
/// dead client when it ends).
async fn wait_for_backends(client: &tokio_postgres::Client, db: &str) {
    let t = Instant::now();
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db],
            )
            .await
            .expect("count backends")
            .get(0);
        if n == 0 {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the killed runner's backends are still there after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Statements of `migration` the journal says completed (its `step` rows), read after a kill.
async fn journaled_steps(client: &tokio_postgres::Client, migration: &str) -> Result<i64, String> {
    client
        .query_one(
            &format!(
                "SELECT coalesce(max(step) + 1, 0)::bigint FROM {} WHERE version_num = $1 AND operation = 'step'",
                notify_db_migrate::JOURNAL_TABLE
            ),
            &[&migration],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| format!("reading the journal of {migration}: {e}"))
}

/// Runs the runner and SIGKILLs it for certain inside the non-transactional migration: once
/// its first statement is journaled, a lock on `notifications` (taken by the test) holds its
/// next CREATE INDEX CONCURRENTLY, and the kill lands while it waits.
async fn kill_inside_non_transactional(db: &TestDb, client: &tokio_postgres::Client) {
    let mut child = tokio::process::Command::new(RUNNER)
        .env("FAULTS_DATABASE_URI", db.primary_uri())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the migration runner");
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the runner did not reach {EXTRA_ID} within 60 s"
        );
        if let Some(status) = child.try_wait().expect("runner status") {
            panic!("the runner ended ({status}) before its kill inside {EXTRA_ID}");
        }
        // Before the first migration commits there is no journal yet.
        if journal_exists(client).await {
            let steps = journaled_steps(client, EXTRA_ID)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if steps >= 1 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let holder = db.connect().await.expect("connect the lock holder");
    holder
        .batch_execute(
            "SET lock_timeout = '20s'; BEGIN; LOCK TABLE notifications IN SHARE UPDATE EXCLUSIVE MODE",
        )
        .await
        .expect("lock notifications against the next CREATE INDEX CONCURRENTLY");
    let steps = journaled_steps(client, EXTRA_ID).await.expect("journal");
    let at: Option<String> = client
        .query_opt("SELECT version_num::text FROM alembic_version", &[])
        .await
        .expect("alembic_version")
        .map(|r| r.get(0));
    assert!(
        at.as_deref() != Some(EXTRA_ID) && steps < 5,
        "the runner finished {EXTRA_ID} before the lock was taken ({steps} steps journaled)"
    );
    child.start_kill().expect("SIGKILL the runner");
    let _ = child.wait().await;
    holder
        .batch_execute("ROLLBACK")
        .await
        .expect("release the lock");
}

async fn journal_exists(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&notify_db_migrate::JOURNAL_TABLE],
        )
        .await
        .expect("look for the journal table")
        .get(0)
}

/// After a kill: the schema matches a consistent state (the revision in `alembic_version`, or
/// inside a non-transactional migration that revision plus the journaled statements, give or
/// take the one running). Returns the state's label and whether the kill was inside a
/// non-transactional migration after a journaled statement.
async fn check_killed(
    set: &MigrationSet,
    reference: &Reference,
    db: &TestDb,
    client: &tokio_postgres::Client,
    run: &str,
) -> (String, bool, usize) {
    wait_for_backends(client, db.name()).await;
    let current = Migrator::new(set.clone(), &test_uri(db))
        .expect("migrator")
        .current()
        .await
        .expect("current revision after the kill");
    let (got, invalid) = shape(client).await;
    let next = match &current {
        None => set.migrations().first(),
        Some(id) => {
            let i = set
                .migrations()
                .iter()
                .position(|m| m.id() == id)
                .expect("the current revision is one of the set");
            set.migrations().get(i + 1)
        }
    };
    let mut candidates = vec![(
        format!("at {}", current.as_deref().unwrap_or("base")),
        &reference.at[&current],
    )];
    let mut inside = false;
    if let Some(next) = next.filter(|m| !m.is_transactional()) {
        // The revision before a non-transactional one was committed with its journal row: the
        // journal exists, and an error reading it is a failure.
        let j = journaled_steps(client, next.id())
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}")) as usize;
        for k in [j, j + 1] {
            if let Some(p) = reference.prefix.get(&(next.id().to_owned(), k)) {
                candidates.push((format!("{} + {k} statement(s)", next.id()), p));
            }
        }
        inside = j > 0;
    }
    let matched = candidates.iter().find(|(_, want)| **want == got);
    let Some((label, _)) = matched else {
        panic!(
            "run {run}: alembic_version {current:?}: the schema matches no consistent state; \
             diff to the revision's capture:\n{}",
            diff(candidates[0].1, &got)
        );
    };
    (label.clone(), inside, invalid)
}

/// The rerun finishes at head with the head schema, and no INVALID index remains.
async fn check_rerun(
    set: &MigrationSet,
    head_shape: &BTreeMap<String, String>,
    db: &TestDb,
    client: &tokio_postgres::Client,
    run: &str,
) {
    run_runner(db, None).await;
    let (after, invalid_after) = shape(client).await;
    assert_eq!(
        invalid_after, 0,
        "run {run}: an INVALID index survived the rerun"
    );
    assert!(
        after == *head_shape,
        "run {run}: after the rerun the schema differs from head:\n{}",
        diff(head_shape, &after)
    );
    let now = Migrator::new(set.clone(), &test_uri(db))
        .expect("migrator")
        .current()
        .await
        .expect("current");
    assert_eq!(
        now.as_deref(),
        set.head(),
        "run {run}: rerun did not reach head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments() {
    let set = crash_matrix_set().expect("the crash matrix set");
    let head = set.head().expect("head").to_owned();
    let reference = reference(&set).await;
    let head_shape = reference.at[&Some(head.clone())].clone();

    // The certain kill inside the non-transactional migration.
    {
        let db = TestDb::create().await.expect("test database");
        let client = db.connect().await.expect("connect");
        kill_inside_non_transactional(&db, &client).await;
        let (label, inside, _) = check_killed(&set, &reference, &db, &client, "certain").await;
        assert!(
            inside,
            "the certain kill did not land inside {EXTRA_ID} after a journaled statement ({label})"
        );
        println!("crash matrix: the certain kill left {label}");
        check_rerun(&set, &head_shape, &db, &client, "certain").await;
    }

    // Full runs, to know how long a run takes: the fastest of three, since the first run after
    // setup can be several times slower than the rest (measured: 210 ms, then most under 100 ms),
    // and kills drawn over a slow run's span would mostly land after the runner finished.
    let mut full = Duration::MAX;
    for _ in 0..3 {
        let db = TestDb::create().await.expect("test database");
        full = full.min(run_runner(&db, None).await.1);
    }
    let mut rng = common::Rng::from_env("crash matrix");
    let span_ms = (full.as_millis() as u64 * 9 / 10).max(50);
    let mut killed = 0;
    let mut mid_non_tx = 0;
    let mut invalid_seen = 0;
    let mut states = BTreeMap::<String, usize>::new();
    for run in 0..RUNS {
        let db = TestDb::create().await.expect("test database");
        let client = db.connect().await.expect("connect");
        let delay = Duration::from_millis(rng.below(span_ms));
        let (was_killed, _) = run_runner(&db, Some(delay)).await;
        killed += usize::from(was_killed);
        let name = format!("{run} (killed after {delay:?})");
        let (label, inside, invalid) = check_killed(&set, &reference, &db, &client, &name).await;
        mid_non_tx += usize::from(inside);
        invalid_seen += usize::from(invalid > 0);
        *states.entry(label).or_default() += 1;
        check_rerun(&set, &head_shape, &db, &client, &name).await;
    }
    println!(
        "crash matrix: {RUNS} runs (full run {full:?}), {killed} killed mid-run, {mid_non_tx} inside \
         {EXTRA_ID} after a journaled statement, {invalid_seen} with an INVALID index left; states \
         after the kill: {states:?}"
    );
    assert!(
        killed >= RUNS / 2,
        "only {killed} of {RUNS} runs were killed before they finished"
    );
}
