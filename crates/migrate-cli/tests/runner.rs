//! The engine against real PostgreSQL, through the `notify-db-migrate` binary (separate
//! processes, as deployments run it): concurrency, SIGKILL, bad sets, CLI
//! (lock contention is in `locks.rs`).

mod common;

use std::time::Duration;

use common::{SLOW, SqlDir, bin, col, db, exists, finish, run, small_set, text, version, wait_for};

#[tokio::test]
async fn eight_runners_at_once_apply_each_migration_exactly_once() {
    let db = db().await;
    let dir = small_set("eight", 6);
    let children: Vec<_> = (0..8)
        .map(|_| {
            bin(dir.path(), &db)
                .arg("upgrade")
                .spawn()
                .expect("spawning a runner")
        })
        .collect();
    for child in children {
        let out = finish(child).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, vec!["0006_t_6"]);
    let applied = col(
        &c,
        "SELECT version_num || ':' || count(*) FROM notify_db_migration_journal \
         WHERE operation = 'upgrade' GROUP BY version_num ORDER BY version_num",
    )
    .await;
    let expected: Vec<Option<String>> = (1..=6).map(|i| Some(format!("{i:04}_t_{i}:1"))).collect();
    assert_eq!(applied, expected, "every migration applied exactly once");
}

#[tokio::test]
async fn sigkill_mid_transactional_migration_leaves_no_partial_schema_and_rerun_completes() {
    let db = db().await;
    let dir = SqlDir::new("kill-tx");
    dir.add(
        "0001_a",
        "CREATE TABLE a (id bigint PRIMARY KEY)",
        Some("DROP TABLE a"),
    );
    dir.add(
        "0002_slow",
        &format!("CREATE TABLE b (id bigint PRIMARY KEY);\n{SLOW};\nCREATE TABLE c (id bigint PRIMARY KEY)"),
        Some("DROP TABLE c; DROP TABLE b"),
    );
    let c = db.connect().await.expect("connect");
    c.batch_execute(&format!(
        "ALTER DATABASE {} SET notify.slow = '60'",
        db.name()
    ))
    .await
    .expect("set slow");
    let mut child = bin(dir.path(), &db).arg("upgrade").spawn().expect("spawn");
    wait_for(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'notify-db-migrate' \
         AND state = 'active' AND wait_event = 'PgSleep')",
        "the slow migration to start",
    )
    .await;
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    // The server notices the dead client within client_connection_check_interval and rolls back.
    wait_for(
        &c,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'notify-db-migrate')",
        "the killed runner's backend to go away",
    )
    .await;
    assert_eq!(
        version(&c).await,
        vec!["0001_a"],
        "0002 must not be recorded"
    );
    assert!(
        !exists(&c, "b").await,
        "no partial schema: table b rolled back"
    );
    c.batch_execute(&format!("ALTER DATABASE {} RESET notify.slow", db.name()))
        .await
        .expect("reset slow");
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&c).await, vec!["0002_slow"]);
    assert!(exists(&c, "b").await && exists(&c, "c").await);
}

#[tokio::test]
async fn sigkill_mid_create_index_concurrently_resumes_and_leaves_no_invalid_index() {
    let db = db().await;
    let dir = SqlDir::new("kill-cic");
    dir.add(
        "0001_t",
        "CREATE TABLE t (id bigint PRIMARY KEY);\nINSERT INTO t SELECT generate_series(1, 20);\n\
         CREATE FUNCTION slow_id(bigint) RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $f$\n\
         BEGIN PERFORM pg_sleep(coalesce(nullif(current_setting('notify.slow', true), ''), '0')::float8); RETURN $1; END\n$f$",
        Some("DROP TABLE t; DROP FUNCTION slow_id(bigint)"),
    );
    dir.add(
        "0002_index",
        "-- notify-db: no-transaction\nCREATE TABLE IF NOT EXISTS before_index (id bigint PRIMARY KEY);\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_t_slow ON t (slow_id(id));\n\
         CREATE TABLE IF NOT EXISTS after_index (id bigint PRIMARY KEY)",
        Some("DROP TABLE IF EXISTS after_index; DROP INDEX CONCURRENTLY IF EXISTS ix_t_slow; DROP TABLE IF EXISTS before_index"),
    );
    let out = run(dir.path(), &db, &["upgrade", "0001_t"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let c = db.connect().await.expect("connect");
    c.batch_execute(&format!(
        "ALTER DATABASE {} SET notify.slow = '0.5'",
        db.name()
    ))
    .await
    .expect("set slow");
    let mut child = bin(dir.path(), &db).arg("upgrade").spawn().expect("spawn");
    wait_for(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'notify-db-migrate' \
         AND state = 'active' AND query LIKE '%ix_t_slow%')",
        "CREATE INDEX CONCURRENTLY to start",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    wait_for(
        &c,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'notify-db-migrate')",
        "the killed runner's backend to go away",
    )
    .await;
    assert_eq!(version(&c).await, vec!["0001_t"]);
    assert!(
        exists(&c, "before_index").await,
        "statement 0 completed before the kill"
    );
    assert!(!exists(&c, "after_index").await);
    let invalid_before = col(
        &c,
        "SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid = 'ix_t_slow'::regclass",
    )
    .await;
    assert_eq!(
        invalid_before,
        vec![Some("1".to_owned())],
        "the killed CREATE INDEX CONCURRENTLY left an INVALID index"
    );
    c.batch_execute(&format!("ALTER DATABASE {} RESET notify.slow", db.name()))
        .await
        .expect("reset slow");
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("resuming"), "{log}");
    assert!(log.contains("dropping the INVALID index"), "{log}");
    assert_eq!(version(&c).await, vec!["0002_index"]);
    assert!(exists(&c, "after_index").await);
    assert_eq!(
        col(&c, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await,
        vec![Some("0".to_owned())]
    );
    assert_eq!(
        col(
            &c,
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'ix_t_slow'::regclass"
        )
        .await,
        vec![Some("true".to_owned())]
    );
    // Statement 0 ran once: it was journaled before the kill and skipped on the rerun.
    assert_eq!(
        col(&c, "SELECT string_agg(step::text, ',' ORDER BY id) FROM notify_db_migration_journal WHERE operation = 'step'").await,
        vec![Some("0,1,2".to_owned())]
    );
}

#[tokio::test]
async fn bad_sets_are_refused_with_clear_errors_and_nothing_applied() {
    let db = db().await;
    let c = db.connect().await.expect("connect");

    // Duplicate number: refused before connecting.
    let dup = SqlDir::new("dup");
    dup.add("0001_a", "CREATE TABLE a (id bigint)", None).add(
        "0001_b",
        "CREATE TABLE b (id bigint)",
        None,
    );
    let out = run(dup.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("duplicate migration number 0001"),
        "{}",
        text(&out)
    );
    assert!(
        !exists(&c, "alembic_version").await,
        "nothing applied, not even the version table"
    );

    // Database ahead of the code.
    let three = small_set("ahead3", 3);
    assert!(run(three.path(), &db, &["upgrade"]).await.status.success());
    let two = small_set("ahead2", 2);
    let out = run(two.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database is ahead of this code"),
        "{}",
        text(&out)
    );
    let out = run(two.path(), &db, &["current"]).await;
    assert!(!out.status.success(), "current refuses too: {}", text(&out));
    assert_eq!(version(&c).await, vec!["0003_t_3"]);

    // A changed checksum: refused unless allowed.
    three.add(
        "0002_t_2",
        "SELECT pg_sleep(0.05);\nCREATE TABLE t_2 (id bigint PRIMARY KEY, x int)",
        None,
    );
    three.add("0004_t_4", "CREATE TABLE t_4 (id bigint)", None);
    let out = run(three.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migration 0002_t_2 was applied with checksum"),
        "{err}"
    );
    assert!(!exists(&c, "t_4").await, "nothing applied");
    let out = run(three.path(), &db, &["upgrade", "--allow-changed-checksums"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(exists(&c, "t_4").await);
}

#[tokio::test]
async fn a_failing_statement_is_reported_with_migration_statement_and_position_and_rolled_back() {
    let db = db().await;
    let dir = SqlDir::new("fail");
    dir.add("0001_ok", "CREATE TABLE ok (id bigint)", None);
    dir.add(
        "0002_bad",
        "CREATE TABLE half (id bigint);\nSELECT * FROM no_such_table",
        None,
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migration 0002_bad failed at character 15 of its statement"),
        "{err}"
    );
    assert!(
        err.contains("relation \"no_such_table\" does not exist [SQLSTATE 42P01]"),
        "{err}"
    );
    assert!(
        err.contains("statement: SELECT * FROM no_such_table"),
        "{err}"
    );
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, vec!["0001_ok"]);
    assert!(
        !exists(&c, "half").await,
        "the failed migration's first statement rolled back"
    );

    // No position from the server ("already exists"): the statement is still the right one.
    dir.add(
        "0002_bad",
        "-- notify-db: lock_timeout=2s\nCREATE TABLE half (id bigint);\nCREATE TABLE ok (id bigint);\nCREATE TABLE never (id bigint)",
        None,
    );
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migration 0002_bad failed: relation \"ok\" already exists [SQLSTATE 42P07]"),
        "{err}"
    );
    assert!(
        err.contains("statement: CREATE TABLE ok (id bigint)\n"),
        "{err}"
    );
    assert!(!exists(&c, "half").await);
}

#[tokio::test]
async fn check_history_downgrade_and_offline_sql_through_the_binary() {
    let db = db().await;
    let dir = small_set("cli", 3);
    std::fs::remove_file(dir.path().join("0003_t_3.down.sql")).expect("remove a down");
    let out = run(dir.path(), &db, &["check"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "yes\n",
        "{}",
        text(&out)
    );
    let out = run(dir.path(), &db, &["check", "--exit-code"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let c = db.connect().await.expect("connect");
    assert!(
        !exists(&c, "alembic_version").await,
        "check creates nothing"
    );

    let out = run(dir.path(), &db, &[]).await;
    assert!(
        out.status.success(),
        "no subcommand means upgrade: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("upgrade: base -> 0003_t_3 (3 migrations"),
        "{}",
        text(&out)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("migration applied").count(),
        3,
        "a progress line per migration: {log}"
    );
    let out = run(dir.path(), &db, &["check", "--exit-code"]).await;
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
        ),
        (Some(0), "no\n".into())
    );

    let out = run(dir.path(), &db, &["downgrade"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migration 0003_t_3 has no down"),
        "{}",
        text(&out)
    );
    std::fs::write(dir.path().join("0003_t_3.down.sql"), "DROP TABLE t_3").expect("write down");
    let out = run(dir.path(), &db, &["downgrade", "-2"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&c).await, vec!["0001_t_1"]);
    let out = run(dir.path(), &db, &["history"]).await;
    let hist = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines.len(), 3, "{hist}");
    assert!(lines[0].starts_with("0003_t_3  pending"), "{hist}");
    assert!(
        lines[2].starts_with("0001_t_1  applied  20"),
        "applied with a timestamp: {hist}"
    );
    assert!(lines[2].ends_with("(current)"), "{hist}");
    let out = run(dir.path(), &db, &["downgrade", "base"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&run(dir.path(), &db, &["current"]).await.stdout),
        "base\n"
    );
    let out = run(dir.path(), &db, &["upgrade", "nope"]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown or unusable target \"nope\""),
        "{}",
        text(&out)
    );

    // Offline: no connection at all (port 1 would refuse).
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrate"));
    let out = cmd
        .args(["--source"])
        .arg(dir.path())
        .args([
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
            "--sql",
            "upgrade",
        ])
        .output()
        .await
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let sql = String::from_utf8_lossy(&out.stdout);
    assert_eq!(sql.matches("BEGIN;").count(), 3, "{sql}");
    assert!(
        sql.contains("INSERT INTO alembic_version (version_num) VALUES ('0001_t_1');"),
        "{sql}"
    );
    assert!(
        sql.contains("EXECUTE notify_db_version_update('0003_t_3', '0002_t_2');"),
        "{sql}"
    );
}

#[tokio::test]
async fn revision_writes_the_next_file_and_refuses_an_empty_message() {
    let db = db().await;
    let dir = small_set("revision", 2);
    let out = run(dir.path(), &db, &["revision", "-m", "  "]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revision needs a message"),
        "{}",
        text(&out)
    );
    let out = run(dir.path(), &db, &["revision", "-m", "Add jobs index!"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let up =
        std::fs::read_to_string(dir.path().join("0003_add_jobs_index.up.sql")).expect("written");
    assert!(up.starts_with("-- Add jobs index!"), "{up}");
    assert!(dir.path().join("0003_add_jobs_index.down.sql").exists());
    // The template has no SQL yet: like an Alembic revision whose upgrade() is `pass`, it
    // applies as an empty revision that only moves alembic_version.
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, ["0003_add_jobs_index"]);
}

#[tokio::test]
async fn offline_sql_run_by_psql_matches_an_engine_run_even_after_a_deallocate() {
    // The offline output is what the engine sends: PREPAREd bookkeeping, EXECUTEd per
    // migration, plain statements after a migration that may DEALLOCATE them.
    let dir = SqlDir::new("offline-psql");
    dir.add(
        "0001_a",
        "CREATE TABLE a (id bigint PRIMARY KEY)",
        Some("DROP TABLE a"),
    );
    dir.add(
        "0002_b",
        "DEALLOCATE ALL;\nCREATE TABLE b (id bigint PRIMARY KEY)",
        Some("DROP TABLE b"),
    );
    dir.add(
        "0003_c",
        "CREATE TABLE c (id bigint PRIMARY KEY, x int)",
        Some("DROP TABLE c"),
    );
    dir.add(
        "0004_c_x",
        "-- notify-db: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_c_x ON c (x)",
        Some("-- notify-db: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS ix_c_x"),
    );
    dir.add(
        "0005_d",
        "CREATE TABLE d (id bigint PRIMARY KEY)",
        Some("DROP TABLE d"),
    );

    let engine = db().await;
    let out = run(dir.path(), &engine, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let offline = db().await;
    let out = run(dir.path(), &offline, &["--sql", "upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let sql = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        sql.matches("EXECUTE notify_db_journal(").count(),
        1,
        "{sql}"
    );
    assert_eq!(
        sql.lines()
            .filter(|l| l.starts_with("INSERT INTO notify_db_migration_journal"))
            .count(),
        5,
        "0002 onwards journal with plain INSERTs (4 rows + the index step): {sql}"
    );
    let file = std::env::temp_dir().join(format!("notify-db-offline-{}.sql", std::process::id()));
    std::fs::write(&file, &sql).expect("writing the offline SQL");
    let ep = &notify_db_testdb::shared()
        .expect("the shared cluster")
        .primary;
    let psql = notify_db_testdb::find_bin_dir()
        .expect("finding psql")
        .join("psql");
    let out = std::process::Command::new(psql)
        .env("PGPASSWORD", &ep.password)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", &ep.host])
        .args([
            "-p",
            &ep.port.to_string(),
            "-U",
            &ep.user,
            "-d",
            offline.name(),
            "-f",
        ])
        .arg(&file)
        .output()
        .expect("running psql");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "psql -f of the offline SQL: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let journal = "SELECT version_num || ' ' || operation || ' ' || coalesce(step::text, '-') || ' ' || coalesce(checksum, '-') \
                   FROM notify_db_migration_journal ORDER BY id";
    let (a, b) = (
        engine.connect().await.expect("connect"),
        offline.connect().await.expect("connect"),
    );
    assert_eq!(version(&a).await, vec!["0005_d"]);
    assert_eq!(version(&b).await, vec!["0005_d"]);
    let (ja, jb) = (col(&a, journal).await, col(&b, journal).await);
    assert_eq!(ja.len(), 6, "{ja:?}");
    assert_eq!(
        ja, jb,
        "the engine and the offline SQL journal the same rows"
    );
    for t in ["a", "b", "c", "d", "ix_c_x"] {
        assert!(exists(&b, t).await, "{t} after the offline run");
    }
    // Durations are real numbers in both.
    let d = "SELECT count(*) FROM notify_db_migration_journal WHERE duration_ms IS NULL OR duration_ms < 0";
    assert_eq!(col(&a, d).await, vec![Some("0".to_owned())]);
    assert_eq!(col(&b, d).await, vec![Some("0".to_owned())]);
}
