//! Taking over a database Alembic manages, through the `notify-db-migrate` binary: an imported
//! history shaped like the reference's (odd ids, repeated numbers, parent links, autocommit and
//! explicitly committed revisions), a baseline, `stamp`, and Alembic carrying on afterwards.
//!
//! Alembic itself is played by [`alembic_upgrade`], a stand-in written from Alembic's behaviour
//! with the reference's `env.py` (`transaction_per_migration=True`): it takes the same session
//! advisory lock (blocking `pg_advisory_lock(7020097439640675072)`), sets `lock_timeout = 1000`,
//! runs each revision in its own transaction (autocommit revisions outside one) and moves
//! `alembic_version` with the same `UPDATE ... WHERE alembic_version.version_num = ...`, failing
//! as Alembic does unless it matches exactly one row.

mod common;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use common::{SqlDir, col, db, psql, run, text, version};
use notify_db_migrate_cli::schema;
use notify_db_testdb::TestDb;
use notify_db_testdb::history::{self, Revision};

/// Length of the generated history (the issue asks for at least 30).
const N: usize = 40;

/// Every test here finishes well within this; a hang fails instead of blocking the run.
const LIMIT: Duration = Duration::from_secs(180);

async fn limited<F: Future<Output = ()>>(what: &str, f: F) {
    if tokio::time::timeout(LIMIT, f).await.is_err() {
        panic!("{what} did not finish within {LIMIT:?}");
    }
}

fn shaped() -> Vec<Revision> {
    history::reference_shaped(N)
}

fn sql_dir(label: &str, revisions: &[Revision]) -> SqlDir {
    let dir = SqlDir::new(label);
    history::write_sql_dir(revisions, dir.path()).expect("writing the history's .sql files");
    dir
}

/// The schema without our journal (Alembic has none).
async fn schema_of(db: &TestDb) -> schema::Schema {
    let c = db.connect().await.expect("connect");
    schema::capture(&c)
        .await
        .expect("capturing the schema")
        .without_table(notify_db_migrate::JOURNAL_TABLE)
}

async fn assert_same_schema(ours: &TestDb, theirs: &TestDb, what: &str) {
    let (a, b) = (schema_of(theirs).await, schema_of(ours).await);
    assert!(
        a.len() > N,
        "the reference schema has only {} objects",
        a.len()
    );
    let diff = a.diff(&b);
    assert!(diff.is_empty(), "{what}:\n{}", schema::render_diff(&diff));
}

/// Upgrade journal rows, in order.
async fn upgraded(db: &TestDb) -> Vec<String> {
    let c = db.connect().await.expect("connect");
    col(
        &c,
        "SELECT version_num FROM notify_db_migration_journal WHERE operation = 'upgrade' ORDER BY id",
    )
    .await
    .into_iter()
    .flatten()
    .collect()
}

/// Alembic's `upgrade head` with `revisions` as its history (see the module docs).
async fn alembic_upgrade(db: &TestDb, revisions: &[Revision]) -> Vec<String> {
    let c = db.connect().await.expect("connect");
    c.batch_execute(&format!(
        "SELECT pg_advisory_lock({}); SET lock_timeout = 1000",
        notify_db_migrate::ADVISORY_LOCK_ID
    ))
    .await
    .expect("Alembic's advisory lock");
    let current = version(&c).await;
    assert!(
        current.len() <= 1,
        "Alembic stand-in: several heads {current:?}"
    );
    let start = match current.first() {
        None => 0,
        Some(v) => {
            revisions
                .iter()
                .position(|r| &r.id == v)
                .unwrap_or_else(|| panic!("Alembic: Can't locate revision identified by '{v}'"))
                + 1
        }
    };
    let mut previous = current.first().cloned();
    let mut ran = Vec::new();
    for r in &revisions[start..] {
        let update = history::alembic_version_update(previous.as_deref(), &r.id);
        if r.is_transactional() {
            c.batch_execute("BEGIN").await.expect("BEGIN");
        }
        for stmt in &r.up {
            c.batch_execute(stmt)
                .await
                .unwrap_or_else(|e| panic!("Alembic running {}: {e}", r.id));
        }
        if !r.is_transactional() {
            c.batch_execute("BEGIN").await.expect("BEGIN");
        }
        let matched = c
            .execute(update.as_str(), &[])
            .await
            .expect("version update");
        assert_eq!(
            matched, 1,
            "Alembic: Online migration expected to match one row when updating to {}",
            r.id
        );
        c.batch_execute("COMMIT").await.expect("COMMIT");
        ran.push(r.id.clone());
        previous = Some(r.id.clone());
    }
    ran
}

#[tokio::test]
async fn a_reference_shaped_history_applies_from_empty_like_psql_in_chain_order() {
    limited("applying the shaped history", async {
        let revisions = shaped();
        let dir = sql_dir("shaped", &revisions);
        let (ours, theirs) = (db().await, db().await);
        let out = run(dir.path(), &ours, &["upgrade"]).await;
        assert!(out.status.success(), "{}", text(&out));
        psql(&theirs, &history::psql_script(&revisions, None)).await;
        let c = ours.connect().await.expect("connect");
        let head = revisions.last().map(|r| r.id.clone()).expect("a head");
        assert_eq!(version(&c).await, vec![head]);
        let ids: Vec<String> = revisions.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            upgraded(&ours).await,
            ids,
            "applied once each, in chain order"
        );
        assert_same_schema(&ours, &theirs, "ours vs psql in chain order").await;
        let history = run(dir.path(), &ours, &["history"]).await;
        let listing = String::from_utf8_lossy(&history.stdout);
        assert_eq!(
            listing.matches("[no transaction]").count(),
            revisions.iter().filter(|r| !r.is_transactional()).count(),
            "{listing}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_database_in_the_middle_of_an_imported_history_is_adopted() {
    limited("adopting in the middle", async {
        let revisions = shaped();
        let dir = sql_dir("middle", &revisions);
        let (ours, theirs) = (db().await, db().await);
        // Alembic got this database to the revision after the second `0014_` one.
        let k = revisions
            .iter()
            .position(|r| r.id == "0014_drop_monthly_billing_cols")
            .expect("the repeated number")
            + 2;
        psql(&ours, &history::psql_script(&revisions[..k], None)).await;
        let out = run(dir.path(), &ours, &["upgrade"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let rest: Vec<String> = revisions[k..].iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            upgraded(&ours).await,
            rest,
            "only the revisions after the adopted one ran"
        );
        psql(&theirs, &history::psql_script(&revisions, None)).await;
        assert_same_schema(&ours, &theirs, "adopted in the middle vs psql").await;
    })
    .await;
}

/// A set that continues from the history's head: the baseline (its schema) and one of ours.
async fn baseline_set(label: &str, revisions: &[Revision], at_head: &TestDb) -> (SqlDir, String) {
    let head = revisions.last().map(|r| r.id.clone()).expect("a head");
    let dir = SqlDir::new(label);
    // Written by the tool (`revision --baseline`), as docs/operations.md tells users to.
    let uri = at_head.primary_uri();
    let out = run(
        dir.path(),
        at_head,
        &["revision", "--baseline", "--from-db", &uri],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join(format!("{head}.up.sql")).is_file());
    let ours = format!("{:04}_ours_add_flag", N + 1);
    dir.add(
        &ours,
        "ALTER TABLE t_1 ADD COLUMN flag boolean",
        Some("ALTER TABLE t_1 DROP COLUMN flag"),
    );
    (dir, ours)
}

#[tokio::test]
async fn a_baseline_adopts_a_database_at_its_revision_and_builds_a_fresh_one() {
    limited("adopting at the baseline", async {
        let revisions = shaped();
        let at_head = db().await;
        psql(&at_head, &history::psql_script(&revisions, None)).await;
        let (dir, ours) = baseline_set("baseline", &revisions, &at_head).await;
        let out = run(dir.path(), &at_head, &["upgrade"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            upgraded(&at_head).await,
            vec![ours.clone()],
            "nothing before our own migration ran"
        );
        let c = at_head.connect().await.expect("connect");
        assert_eq!(version(&c).await, vec![ours.clone()]);

        let fresh = db().await;
        let out = run(dir.path(), &fresh, &["upgrade"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let head = revisions.last().map(|r| r.id.clone()).expect("a head");
        assert_eq!(upgraded(&fresh).await, vec![head, ours]);
        assert_same_schema(&fresh, &at_head, "fresh from the baseline vs adopted").await;
    })
    .await;
}

#[tokio::test]
async fn a_database_older_than_the_baseline_is_refused_and_left_alone() {
    limited("refusing an older database", async {
        let revisions = shaped();
        let at_head = db().await;
        psql(&at_head, &history::psql_script(&revisions, None)).await;
        let (dir, _) = baseline_set("older", &revisions, &at_head).await;
        let older = db().await;
        let k = N / 2;
        psql(&older, &history::psql_script(&revisions[..k], None)).await;
        let out = run(dir.path(), &older, &["upgrade"]).await;
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let (theirs, head) = (&revisions[k - 1].id, &revisions[N - 1].id);
        assert!(
            err.contains(&format!("revision {theirs}"))
                && err.contains(&format!("baseline {head}"))
                && err.contains("older")
                && err.contains("Alembic"),
            "{}",
            text(&out)
        );
        let c = older.connect().await.expect("connect");
        assert_eq!(
            version(&c).await,
            vec![theirs.clone()],
            "alembic_version untouched"
        );
        assert!(
            col(&c, "SELECT to_regclass('t_40')::text").await == vec![None],
            "nothing ran"
        );
    })
    .await;
}

async fn stamp(dir: &Path, db: &TestDb, args: &[&str]) -> std::process::Output {
    let mut all = vec!["stamp"];
    all.extend_from_slice(args);
    run(dir, db, &all).await
}

#[tokio::test]
async fn stamp_moves_the_version_forwards_backwards_and_to_unknown_ids_only_when_forced() {
    limited("stamping", async {
        let revisions = shaped();
        let dir = sql_dir("stamp", &revisions);
        let db = db().await;
        let out = run(dir.path(), &db, &["upgrade"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let c = db.connect().await.expect("connect");
        let id = |i: usize| revisions[i].id.clone();

        // Backwards: the later revisions become pending again, nothing runs.
        let out = stamp(dir.path(), &db, &["84c3b6eb16b3"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{} -> 84c3b6eb16b3", id(N - 1))));
        assert_eq!(version(&c).await, vec!["84c3b6eb16b3".to_owned()]);
        let check = run(dir.path(), &db, &["check"]).await;
        assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "yes", "{}", text(&check));
        assert_eq!(upgraded(&db).await.len(), N, "stamp ran no migration");

        // Forwards, by a unique prefix.
        let out = stamp(dir.path(), &db, &["0468"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(version(&c).await, vec!["0468".to_owned()]);
        let out = stamp(dir.path(), &db, &["head"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(version(&c).await, vec![id(N - 1)]);

        // Unknown: refused without --force, written with it.
        let out = stamp(dir.path(), &db, &["ffffffffffff"]).await;
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ffffffffffff") && err.contains("--force"), "{err}");
        assert_eq!(version(&c).await, vec![id(N - 1)], "a refused stamp changes nothing");
        let out = stamp(dir.path(), &db, &["ffffffffffff", "--force"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(version(&c).await, vec!["ffffffffffff".to_owned()]);
        let current = run(dir.path(), &db, &["current"]).await;
        assert!(
            !current.status.success() && String::from_utf8_lossy(&current.stderr).contains("ffffffffffff"),
            "{}",
            text(&current)
        );
        let out = stamp(dir.path(), &db, &["base"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert!(version(&c).await.is_empty());

        let stamps = col(
            &c,
            "SELECT version_num FROM notify_db_migration_journal WHERE operation = 'stamp' ORDER BY id",
        )
        .await;
        let expected: Vec<Option<String>> = ["84c3b6eb16b3", "0468", &id(N - 1), "ffffffffffff", "base"]
            .iter()
            .map(|s| Some((*s).to_owned()))
            .collect();
        assert_eq!(stamps, expected, "every stamp journaled, refused ones not");
    })
    .await;
}

#[tokio::test]
async fn a_journal_from_before_stamp_existed_accepts_stamp_rows() {
    limited("stamping with an old journal", async {
        let db = db().await;
        let dir = SqlDir::new("old-journal");
        dir.add("0001_a", "CREATE TABLE a (id bigint)", None);
        let c = db.connect().await.expect("connect");
        // The journal as the engine created it before `stamp`: the same check without 'stamp'.
        c.batch_execute(
            "CREATE TABLE notify_db_migration_journal (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             version_num varchar(32) NOT NULL, operation text NOT NULL CHECK (operation IN ('upgrade', 'downgrade', 'step')), \
             step integer, checksum text, applied_at timestamptz NOT NULL DEFAULT now(), duration_ms double precision, \
             applied_by text NOT NULL DEFAULT current_setting('application_name'), runner_host text, \
             client_addr inet DEFAULT inet_client_addr())",
        )
        .await
        .expect("an old journal");
        let out = run(dir.path(), &db, &["stamp", "0001_a"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(version(&c).await, vec!["0001_a".to_owned()]);
    })
    .await;
}

#[tokio::test]
async fn alembic_carries_on_after_a_stamp() {
    limited("Alembic after stamp", async {
        let revisions = shaped();
        let k = 30;
        // The Rust service knows the history up to revision k; Alembic's code knows all of it.
        let dir = sql_dir("alembic-after", &revisions[..k]);
        let db = db().await;
        // A database restored from a schema dump: the schema at revision k, no alembic_version.
        psql(&db, &history::psql_script(&revisions[..k], None)).await;
        let c = db.connect().await.expect("connect");
        c.batch_execute("DROP TABLE alembic_version")
            .await
            .expect("drop version table");
        let out = run(dir.path(), &db, &["stamp", "head"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let check = run(dir.path(), &db, &["check"]).await;
        assert_eq!(
            String::from_utf8_lossy(&check.stdout).trim(),
            "no",
            "{}",
            text(&check)
        );

        let ran = alembic_upgrade(&db, &revisions).await;
        let rest: Vec<String> = revisions[k..].iter().map(|r| r.id.clone()).collect();
        assert_eq!(ran, rest, "Alembic carried on from the stamped revision");
        let head = revisions.last().map(|r| r.id.clone()).expect("a head");
        assert_eq!(version(&c).await, vec![head.clone()]);
        let theirs = self::db().await;
        psql(&theirs, &history::psql_script(&revisions, None)).await;
        assert_same_schema(&db, &theirs, "stamped then Alembic vs psql").await;

        // And the Rust service with the whole history finds it at head.
        let full = sql_dir("alembic-after-full", &revisions);
        let current = run(full.path(), &db, &["current"]).await;
        assert_eq!(
            String::from_utf8_lossy(&current.stdout).trim(),
            format!("{head} (head)"),
            "{}",
            text(&current)
        );
    })
    .await;
}

#[tokio::test]
async fn stamp_waits_for_the_advisory_lock_like_a_run() {
    limited("stamp under the advisory lock", async {
        let db = db().await;
        let dir = SqlDir::new("stamp-lock");
        dir.add("0001_a", "CREATE TABLE a (id bigint)", None);
        let holder = db.connect().await.expect("connect");
        holder
            .batch_execute(&format!(
                "SELECT pg_advisory_lock({})",
                notify_db_migrate::ADVISORY_LOCK_ID
            ))
            .await
            .expect("holding the migration lock, as a running Alembic would");
        let out = run(
            dir.path(),
            &db,
            &["--advisory-lock-wait", "1s", "stamp", "0001_a"],
        )
        .await;
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("advisory lock"),
            "{}",
            text(&out)
        );
        let c = db.connect().await.expect("connect");
        assert!(
            col(&c, "SELECT to_regclass('alembic_version')::text").await == vec![None],
            "nothing written while another runner holds the lock"
        );
        drop(holder);
        let out = run(dir.path(), &db, &["stamp", "0001_a"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(version(&c).await, vec!["0001_a".to_owned()]);
    })
    .await;
}
