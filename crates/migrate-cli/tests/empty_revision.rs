//! Empty revisions (issue 24, point 3): a migration whose up (or down) has no statements is a
//! valid step, as an Alembic revision whose `upgrade()` does nothing. Applying it moves
//! `alembic_version` and writes a journal row; the offline `--sql` script, the linter, the
//! stairway test and the `.sql` pack all take it.

mod common;

use std::time::Duration;

use common::{SqlDir, col, db, run, text, version};
use notify_db_migrate::{MigrationSet, PACK_FILE};

/// A set with an empty revision in every form: an empty file (with an empty down), comments
/// only, and an empty no-transaction one, between two that change the schema.
fn set_with_empty_revisions(label: &str) -> SqlDir {
    let dir = SqlDir::new(label);
    dir.add("0001_a", "CREATE TABLE a (id bigint)", Some("DROP TABLE a"))
        .add("0002_nothing", "", Some(""))
        .add(
            "0003_comments",
            "-- This revision only documents a decision.\n/* nothing to run */\n",
            Some("-- nothing to undo"),
        )
        .add(
            "0004_no_tx",
            "-- notify-db: no-transaction\n",
            Some("-- notify-db: no-transaction\n"),
        )
        .add("0005_b", "CREATE TABLE b (id bigint)", Some("DROP TABLE b"));
    dir
}

#[tokio::test]
async fn empty_revisions_move_alembic_version_and_are_journaled_both_ways() {
    let db = db().await;
    let dir = set_with_empty_revisions("empty-apply");
    let c = db.connect().await.expect("connect");

    let out = run(dir.path(), &db, &["upgrade", "0003"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&c).await, ["0003_comments"]);
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&c).await, ["0005_b"]);
    let journaled = col(
        &c,
        "SELECT string_agg(version_num, ',' ORDER BY id) FROM notify_db_migration_journal \
         WHERE operation = 'upgrade'",
    )
    .await;
    assert_eq!(
        journaled,
        [Some(
            "0001_a,0002_nothing,0003_comments,0004_no_tx,0005_b".to_owned()
        )]
    );
    let history = run(dir.path(), &db, &["history"]).await;
    assert!(
        String::from_utf8_lossy(&history.stdout)
            .lines()
            .any(|l| l.starts_with("0002_nothing ") && l.contains(" applied ")),
        "{}",
        text(&history)
    );

    // Down through the empty downs to the first migration.
    let out = run(dir.path(), &db, &["downgrade", "0001_a"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&c).await, ["0001_a"]);
    let reverted = col(
        &c,
        "SELECT string_agg(version_num, ',' ORDER BY id) FROM notify_db_migration_journal \
         WHERE operation = 'downgrade'",
    )
    .await;
    assert_eq!(
        reverted,
        [Some(
            "0005_b,0004_no_tx,0003_comments,0002_nothing".to_owned()
        )]
    );
    assert_eq!(
        col(
            &c,
            "SELECT to_regclass('b') IS NULL AND to_regclass('a') IS NOT NULL"
        )
        .await,
        [Some("t".to_owned())]
    );
}

#[tokio::test]
async fn a_missing_down_file_still_refuses_the_downgrade_an_empty_one_does_not() {
    let db = db().await;
    let dir = SqlDir::new("empty-missing-down");
    dir.add("0001_a", "CREATE TABLE a (id bigint)", Some("DROP TABLE a"))
        .add("0002_nothing", "", None);
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(dir.path(), &db, &["downgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0002_nothing"),
        "{}",
        text(&out)
    );
    std::fs::write(dir.path().join("0002_nothing.down.sql"), "").expect("write");
    let out = run(dir.path(), &db, &["downgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, ["0001_a"]);
}

#[tokio::test]
async fn the_offline_script_of_empty_revisions_runs_in_psql_to_the_same_version() {
    let dir = set_with_empty_revisions("empty-offline");
    let db = db().await;
    let out = run(dir.path(), &db, &["upgrade", "--sql"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let sql = String::from_utf8_lossy(&out.stdout).into_owned();
    for (from, to) in [
        ("0001_a", "0002_nothing"),
        ("0002_nothing", "0003_comments"),
        ("0004_no_tx", "0005_b"),
    ] {
        assert!(
            sql.contains(&format!("'{to}', '{from}'"))
                || sql.contains(&format!(
                    "SET version_num = '{to}' WHERE version_num = '{from}'"
                )),
            "{from} -> {to} is not in the script:\n{sql}"
        );
    }
    let c = db.connect().await.expect("connect");
    c.batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("the offline script fails: {e}\n{sql}"));
    assert_eq!(version(&c).await, ["0005_b"]);
    assert_eq!(
        col(
            &c,
            "SELECT count(*)::text FROM notify_db_migration_journal WHERE operation = 'upgrade'"
        )
        .await,
        [Some("5".to_owned())]
    );
}

#[tokio::test]
async fn the_linter_and_the_stairway_test_take_empty_revisions() {
    let dir = set_with_empty_revisions("empty-lint");
    let db = db().await;
    let out = run(dir.path(), &db, &["lint"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(dir.path(), &db, &["test-downgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("0002_nothing") && shown.contains("0004_no_tx"),
        "{}",
        text(&out)
    );
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, ["0005_b"]);
}

#[test]
fn the_pack_keeps_an_empty_revision_empty() {
    let dir = set_with_empty_revisions("empty-pack");
    let first = MigrationSet::from_dir(dir.path()).expect("loads");
    // Longer than the pack's "settled" age (2 s, counted in whole seconds).
    std::thread::sleep(Duration::from_millis(3100));
    MigrationSet::from_dir_without_downs(dir.path()).expect("loads and packs");
    let pack = std::fs::read_to_string(dir.path().join(PACK_FILE)).expect("the pack is written");
    assert!(
        pack.contains("\n0002_nothing ") && pack.contains("\n0004_no_tx "),
        "{pack}"
    );
    let packed = MigrationSet::from_dir(dir.path()).expect("loads from the pack");
    assert_eq!(packed.fingerprint(), first.fingerprint());
    assert!(packed.migrations()[1].up_statements().is_empty());
    assert!(!packed.migrations()[3].is_transactional());
    assert!(packed.migrations()[3].up_statements().is_empty());
}
